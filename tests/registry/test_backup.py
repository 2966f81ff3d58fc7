"""Backup and restore, end to end: a small cohort backed up, restored into a new database, compared."""

import hashlib
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection

from audit.services import record_event
from patients.models import ConsentVersion
from tests.factories import ConsentFactory, FollowUpFactory, PatientFactory, ProcedureFactory
from tests.pdfs import real_pdf

ROOT = Path(__file__).resolve().parent.parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("pg_dump and pg_restore need PostgreSQL")


@pytest.fixture
def new_database():
    """An empty database beside the test database, dropped afterwards."""
    name = f"{connection.settings_dict['NAME']}_restored"
    q = connection.ops.quote_name
    with connection.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {q(name)}")
        cur.execute(f"CREATE DATABASE {q(name)}")
    yield name
    with connection.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {q(name)} WITH (FORCE)")


def manage(*args, database, media):
    s = connection.settings_dict
    url = f"postgres://{urllib.parse.quote(s['USER'])}:{urllib.parse.quote(s['PASSWORD'] or '')}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{database}"
    env = {**os.environ, "DATABASE_URL": url, "MEDIA_ROOT": str(media), "DJANGO_SETTINGS_MODULE": "tests.settings"}
    env.pop("TEST_DATABASE_NAME", None)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def every_row(dsn_kwargs):
    """{table: sorted rows as text} for every table, read with a plain psycopg2 connection."""
    with psycopg2.connect(**dsn_kwargs) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")
        tables = [t for (t,) in cur.fetchall()]
        out = {}
        for table in tables:
            cur.execute(f'SELECT t::text FROM "{table}" t')
            out[table] = sorted(r for (r,) in cur.fetchall())
    return out


def dsn(name):
    s = connection.settings_dict
    return {
        "dbname": name,
        "user": s["USER"],
        "password": s["PASSWORD"],
        "host": s["HOST"] or "127.0.0.1",
        "port": s["PORT"] or 5432,
    }


def file_hashes(root: Path):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_backup_then_restore_into_a_new_database_gives_the_same_rows_trail_and_documents(tmp_path, new_database, nurse):
    version = ConsentVersion.objects.create(
        version="2.0", effective_from="2020-01-01", blank_form=SimpleUploadedFile("v2.pdf", real_pdf("blank v2"))
    )
    for i in range(3):
        patient = PatientFactory(site=nurse.sites.get())
        ConsentFactory(
            patient=patient, consent_version=version, document=SimpleUploadedFile("c.pdf", real_pdf(f"consent {i}"))
        )
        ProcedureFactory(patient=patient)
        FollowUpFactory(patient=patient)
    record_event(action="login", user=nurse)
    call_command("verify_trail", stdout=open(os.devnull, "w"))

    out = tmp_path / "backup"
    call_command("backup", "--out", str(out), stdout=open(os.devnull, "w"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["documents"] == 4 and manifest["rows"]["patients_patient"] == 3
    assert {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in manifest["sha256"]} == manifest["sha256"]

    media = tmp_path / "restored_media"
    restored = manage("restore", str(out), database=new_database, media=media)
    assert restored.returncode == 0, restored.stderr
    assert every_row(dsn(new_database)) == every_row(dsn(connection.settings_dict["NAME"]))
    trail = manage("verify_trail", database=new_database, media=media)
    assert trail.returncode == 0 and "intact" in trail.stdout, trail.stderr
    source_trail = manage("verify_trail", database=connection.settings_dict["NAME"], media=media).stdout
    assert trail.stdout.split("intact:")[1] == source_trail.split("intact:")[1]  # same count and head hash
    assert file_hashes(media) == file_hashes(Path(settings.MEDIA_ROOT)) and len(file_hashes(media)) == 4

    again = manage("restore", str(out), database=new_database, media=tmp_path / "other")
    assert again.returncode != 0 and "is not empty" in again.stderr


def test_a_damaged_backup_is_refused_before_anything_is_written(tmp_path, new_database):
    ConsentFactory(document=SimpleUploadedFile("c.pdf", real_pdf("consent")))
    out = tmp_path / "backup"
    call_command("backup", "--out", str(out), stdout=open(os.devnull, "w"))
    (document,) = (out / "media").rglob("*.pdf")
    document.write_bytes(document.read_bytes() + b"tampered")
    result = manage("restore", str(out), database=new_database, media=tmp_path / "m")
    assert result.returncode != 0 and "does not match its SHA-256" in result.stderr
    assert every_row(dsn(new_database)) == {} and not (tmp_path / "m").exists()
    with pytest.raises(CommandError, match="not empty"):
        call_command("backup", "--out", str(out))
