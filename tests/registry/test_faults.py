"""Faults and odd input: the database unreachable, a connection killed under a
worker, NUL bytes and undecodable parameters, impossible dates."""

import contextlib
import http.cookiejar
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import OperationalError, connection

from patients.models import Patient
from registry.middleware import DatabaseUnavailableMiddleware
from tests.factories import PASSWORD, PatientFactory

ROOT = Path(__file__).resolve().parent.parent.parent


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


# --- bad input answers 400 with a message naming the parameter ---------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("/patients/%00/", "the address contains a NUL character"),
        ("/patients/?q=%00", "'q' contains a NUL character"),
        ("/patients/?q=abc%00def", "'q' contains a NUL character"),
        ("/patients/?q=%FF%FE", "'q' contains bytes that are not valid UTF-8"),
        ("/patients/?x%00y=1", "contains a NUL character"),
    ],
)
def test_nul_and_undecodable_parameters_answer_400(client, nurse, url, named):
    client.force_login(nurse)
    response = client.get(url)
    assert response.status_code == 400
    assert named in response.content.decode().replace("&#x27;", "'")


@pytest.mark.django_db
def test_a_nul_in_a_form_field_is_refused_and_nothing_is_written(client, nurse, site):
    client.force_login(nurse)
    fields = {"study_id": "PSP-2001", "full_name": "Ann\x00Lee", "site": site.pk}
    multipart = client.post("/patients/enrol/", fields)
    urlencoded = client.post(
        "/patients/enrol/", urllib.parse.urlencode(fields), content_type="application/x-www-form-urlencoded"
    )
    latin1 = client.post(
        "/patients/enrol/", b"study_id=PSP-2001&full_name=Ren%E9", content_type="application/x-www-form-urlencoded"
    )
    for response, what in ((multipart, "NUL"), (urlencoded, "NUL"), (latin1, "not valid UTF-8")):
        assert response.status_code == 400
        assert "full_name" in response.content.decode().replace("&#x27;", "'") and what in response.content.decode()
    assert not Patient.objects.exists()


@pytest.mark.django_db
def test_ordinary_non_ascii_input_passes(client, nurse):
    client.force_login(nurse)
    assert client.get("/patients/?q=M%C3%BCller%20%E5%BC%A0").status_code == 200


@pytest.mark.django_db
def test_impossible_dates_are_form_errors_not_500(client, admin_user):
    client.force_login(admin_user)
    trail = client.get("/audit/?date_to=9999-12-31")
    assert trail.status_code == 200 and "Enter a date before 9999-12-31." in trail.content.decode()
    assert client.get("/dashboard/?procedure_to=9999-12-31").status_code in (200, 400)
    assert client.get("/dashboard/?procedure_from=99999-01-01").status_code == 400


# --- the database unreachable: the 503 page, never a traceback ---------------------


@contextlib.contextmanager
def database_down():
    """The default connection pointed at a closed port for the duration of the block."""
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=closed_port())
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


@pytest.mark.django_db(transaction=True)
def test_database_down_gives_the_503_page_then_recovers(client, nurse, site):
    if connection.vendor != "postgresql":
        pytest.skip("needs a server to be away from")
    patient = PatientFactory(site=site)
    client.force_login(nurse)
    client.raise_request_exception = False  # handler500 answers, as in production
    with database_down():
        down = client.post(f"/patients/{patient.study_id}/edit/", {"ecog": "1", "reason": "re-assessed"})
    page = down.content.decode()
    assert down.status_code == 503
    assert "The database is unavailable" in page and "still there" in page and "Try again in a minute" in page
    assert "Traceback" not in page and "OperationalError" not in page and "Connection refused" not in page
    assert down["Retry-After"] == "60" and "no-store" in down["Cache-Control"]
    again = client.get(f"/patients/{patient.study_id}/")  # the database is back: so is the page
    assert again.status_code == 200 and patient.study_id in again.content.decode()
    patient.refresh_from_db()
    assert patient.ecog is None  # nothing half-written


@pytest.mark.django_db
def test_a_view_that_loses_the_database_gets_the_503_page(rf):
    # A real OperationalError from a real failed connection, as a view would see it.
    from django.db import connections

    wrapper = connections.create_connection("default")
    wrapper.settings_dict = {**wrapper.settings_dict, "HOST": "127.0.0.1", "PORT": closed_port()}
    if wrapper.vendor != "postgresql":
        pytest.skip("needs a server to be away from")
    with pytest.raises(OperationalError) as err:
        wrapper.ensure_connection()
    request = rf.post("/visits/1/edit/")
    response = DatabaseUnavailableMiddleware(lambda r: None).process_exception(request, err.value)
    assert response.status_code == 503 and "The database is unavailable" in response.content.decode()
    assert DatabaseUnavailableMiddleware(lambda r: None).process_exception(request, ValueError("x")) is None


# --- a terminated connection costs no request (CONN_HEALTH_CHECKS) ------------------


class Worker:
    """One gunicorn sync worker (the production server) on the test database."""

    def __init__(self, port: int, database: str) -> None:
        url = urllib.parse.urlsplit(os.environ.get("DATABASE_URL", "postgres://registry:registry@127.0.0.1:5432/x"))
        self.app_name = f"trust_worker_{secrets.token_hex(4)}"
        env = {
            **os.environ,
            "DATABASE_URL": f"{url.scheme}://{url.netloc}/{database}?application_name={self.app_name}",
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DJANGO_DEBUG": "True",
        }
        env.pop("TEST_DATABASE_NAME", None)
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [
                Path(sys.executable).with_name("gunicorn"),
                "registry.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--worker-class",
                "sync",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        self.jar = jar
        for _ in range(100):
            try:
                self.get("/accounts/login/")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError(
            self.proc.stderr.read().decode() if self.proc.poll() is not None else "gunicorn did not start"
        )

    def get(self, path: str):
        return self.opener.open(self.base + path, timeout=20)

    def post(self, path: str, data: dict):
        token = next(c.value for c in self.jar if c.name == "csrftoken")
        body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(self.base + path, data=body, headers={"Referer": self.base + path})
        return self.opener.open(request, timeout=20)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.mark.django_db(transaction=True)
def test_a_worker_survives_its_connection_being_terminated(nurse, site):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    patient = PatientFactory(site=site)
    nurse.password = PBKDF2PasswordHasher().encode(
        PASSWORD, PBKDF2PasswordHasher().salt()
    )  # the worker has the real hashers
    nurse.save()
    page = f"/patients/{patient.study_id}/"
    worker = Worker(closed_port(), connection.settings_dict["NAME"])
    try:
        worker.post("/accounts/login/", {"username": nurse.username, "password": PASSWORD})
        opened = worker.get(page)
        assert opened.url.endswith(page) and patient.mrn in opened.read().decode()  # logged in, not redirected

        def backends():
            with connection.cursor() as cur:
                cur.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [worker.app_name])
                return [pid for (pid,) in cur.fetchall()]

        (first,) = backends()  # the worker keeps its connection between requests (CONN_MAX_AGE)
        with connection.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", [first])
        for _ in range(50):
            if not backends():
                break
            time.sleep(0.1)
        assert backends() == []
        response = worker.get(page)  # the very next request, on the same worker
        assert response.status == 200 and response.url.endswith(page) and patient.mrn in response.read().decode()
        assert re.fullmatch(r"\[\d+\]", str(backends())) and backends() != [first]
    finally:
        worker.stop()
