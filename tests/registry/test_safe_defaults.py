"""Production defaults, read from registry.settings in a fresh interpreter with a clean environment."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
KEY = "k" * 60
SHOW = (
    "import json; from django.conf import settings as s; print(json.dumps({'debug': s.DEBUG,"
    " 'proxy': getattr(s, 'SECURE_PROXY_SSL_HEADER', None), 'preload': getattr(s, 'SECURE_HSTS_PRELOAD', False),"
    " 'health': s.DATABASES['default']['CONN_HEALTH_CHECKS'], 'tz': s.TIME_ZONE, 'upload': s.UPLOAD_MAX_MB}))"
)


def settings_with(**env):
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {SHOW}"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "registry.settings", **env},
        capture_output=True,
        text=True,
    )
    return result


def test_nothing_set_means_no_debug_and_no_start_without_a_secret():
    result = settings_with()
    assert result.returncode != 0 and "SECRET_KEY (or SECRET_KEY_FILE) must be set" in result.stderr
    shown = json.loads(settings_with(SECRET_KEY=KEY).stdout)
    assert shown == {"debug": False, "proxy": None, "preload": False, "health": True, "tz": "UTC", "upload": 20.0}


def test_the_demo_opts_into_debug_and_production_opts_into_proxy_preload_and_zone():
    assert json.loads(settings_with(DJANGO_DEBUG="True").stdout)["debug"] is True
    shown = json.loads(
        settings_with(
            SECRET_KEY=KEY,
            SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https",
            SECURE_HSTS_PRELOAD="True",
            TIME_ZONE="Asia/Shanghai",
            UPLOAD_MAX_MB="5",
        ).stdout
    )
    assert shown["proxy"] == ["HTTP_X_FORWARDED_PROTO", "https"] and shown["preload"] is True
    assert shown["tz"] == "Asia/Shanghai" and shown["upload"] == 5.0
    assert json.loads(settings_with(SECRET_KEY=KEY, SECURE_PROXY_SSL_HEADER="X-Forwarded-Ssl: on").stdout)["proxy"] == [
        "HTTP_X_FORWARDED_SSL",
        "on",
    ]


@pytest.mark.django_db
def test_pages_for_a_logged_in_user_are_never_stored(client, nurse):
    client.force_login(nurse)
    for url in ("/patients/", "/patients/worklist/"):
        response = client.get(url)
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"], url


@pytest.mark.django_db
def test_the_proxy_header_is_not_trusted_unless_configured(client, nurse, settings):
    settings.SECURE_SSL_REDIRECT = True
    client.force_login(nurse)
    # Without SECURE_PROXY_SSL_HEADER a client's own X-Forwarded-Proto does not make the request secure.
    assert client.get("/patients/", headers={"X-Forwarded-Proto": "https"}).status_code == 301
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert client.get("/patients/", headers={"X-Forwarded-Proto": "https"}).status_code == 200


def test_the_image_gets_runtime_requirements_only_and_runs_unprivileged():
    runtime = {line.split("==")[0].lower() for line in (ROOT / "requirements.txt").read_text().split() if "==" in line}
    assert runtime.isdisjoint({"pytest", "pytest-django", "pytest-xdist", "pytest-playwright", "ruff", "factory-boy"})
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in dev and "pytest==" in dev and "playwright" in dev
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "-r requirements-dev" not in dockerfile and "pip install --no-cache-dir -r requirements.txt" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
