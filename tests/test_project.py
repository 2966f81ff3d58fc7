"""Project-level gates: migrations match the models; production settings are safe."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_no_missing_migrations():
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exc:  # --check exits 1 when a migration is missing
        pytest.fail(f"models changed without a migration:\n{out.getvalue()}")
        raise exc


def run_manage(*args, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")} | env
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True)


def test_check_deploy_is_clean_when_debug_is_off():
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="False",
        SECRET_KEY="x" * 60 + "production-like-secret",
        ALLOWED_HOSTS="registry.example.org",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = run_manage("check", DJANGO_DEBUG="False", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_migration_commands_run_without_a_secret_but_nothing_else_does():
    """makemigrations --check (a pre-commit hook, CI) needs no secret and no debug mode; serving and
    checking commands still refuse to start without one."""
    env = {"DJANGO_DEBUG": "False", "SECRET_KEY": "", "DJANGO_SETTINGS_MODULE": "registry.settings"}
    keyless = run_manage("makemigrations", "--check", "--dry-run", **env)
    assert keyless.returncode == 0 and "No changes detected" in keyless.stdout, keyless.stderr
    for command in (["check"], ["migrate", "--plan"], ["load_demo"], ["import_bundle", "exchange/demo/paper_cohort"]):
        refused = run_manage(*command, **env)
        assert refused.returncode != 0 and "SECRET_KEY" in refused.stderr, command
