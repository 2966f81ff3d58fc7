"""The trail cannot be erased by the application's database role, and an edit
made around it (as owner or superuser, trigger off) is found by verify_trail.

The application's role is the one scripts/ensure_pg.sh creates (registry_app,
or DB_APP_ROLE), of which the test's owner role is a member. Its rights on the
test database come from grant_app_role inside the test's transaction. If the
role does not exist and the test's role may create roles, one is created
inside the transaction, so it disappears with the rollback."""

import datetime
import hashlib
import os

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.utils import DatabaseError

from audit.models import AuditEvent
from audit.services import record_event
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db

APP_ROLE = os.environ.get("DB_APP_ROLE", "registry_app")


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("roles, grants and the hash chain are PostgreSQL's")


@pytest.fixture
def app_role():
    q = connection.ops.quote_name
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [APP_ROLE])
        if cur.fetchone() is None:
            cur.execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
            if not cur.fetchone()[0]:
                pytest.fail(f"no role {APP_ROLE!r} and no right to create one: run scripts/ensure_pg.sh")
            cur.execute(f"CREATE ROLE {q(APP_ROLE)} NOLOGIN")  # rolled back with the test
            cur.execute(f"GRANT {q(APP_ROLE)} TO current_user")
    call_command("grant_app_role", APP_ROLE, stdout=open(os.devnull, "w"))
    return APP_ROLE


def as_role(role, sql, params=()):
    """Run one statement as `role` in a savepoint; return rows or raise the database's error."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(f"SET LOCAL ROLE {connection.ops.quote_name(role)}")
        cur.execute(sql, params)  # an error rolls the savepoint back, and the SET LOCAL with it
        result = cur.fetchall() if cur.description else None
        cur.execute("RESET ROLE")
        return result


def verify():
    try:
        call_command("verify_trail", stdout=open(os.devnull, "w"))
    except CommandError as e:
        return str(e)
    return None


def stored(pk):
    with connection.cursor() as cur:
        cur.execute("SELECT seq, hash FROM audit_auditevent WHERE id = %s", [pk])
        return cur.fetchone()


def test_first_event_hash_is_sha256_of_the_documented_content():
    at = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)
    event = AuditEvent.objects.create(
        username="nurse", action="login", reason="Grüße", changes={"vas": [7, 2]}, extra={"ip": "10.0.0.1"}
    )
    with connection.cursor() as cur:  # a second event with a known timestamp, through raw SQL
        cur.execute(
            "INSERT INTO audit_auditevent (at, username, action, model, object_pk, object_repr, study_id,"
            " site_code, changes, reason, extra, hash) VALUES (%s, 'nurse', 'view', 'patients.Patient', '7',"
            " 'PSP-1001', 'PSP-1001', 'PSP', '{}', '', '{}', 'forged') RETURNING id",
            [at],
        )
        pk = cur.fetchone()[0]
    first_hash = stored(event.pk)[1]
    # Hand-built from the module docstring of audit/chain.py: <len>:<text>; per part.
    parts = ["audit-chain-v1", first_hash, "2", str(pk), "2026-01-02T03:04:05.678901Z", "", "nurse", "view",
             "patients.Patient", "7", "PSP-1001", "PSP-1001", "PSP", "{}", "", "{}"]  # fmt: skip
    content = "".join(f"{len(p)}:{p};" for p in parts)
    assert stored(pk) == (2, hashlib.sha256(content.encode()).hexdigest())
    assert stored(event.pk)[0] == 1
    assert verify() is None


def test_every_writer_is_chained_in_order_and_verify_trail_is_clean(capsys):
    record_event(action=AuditEvent.Action.LOGIN, username="nurse")
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(action="create", model="patients.Patient", object_pk=str(i), changes={"n": [None, i]})
            for i in range(50)
        ]
    )
    record_event(action=AuditEvent.Action.LOGOUT, username="nurse")
    with connection.cursor() as cur:
        cur.execute("SELECT seq, hash FROM audit_auditevent ORDER BY id")
        chain = cur.fetchall()
    assert [s for s, _ in chain] == list(range(1, 53))
    assert all(len(h) == 64 for _, h in chain) and len({h for _, h in chain}) == 52
    call_command("verify_trail")
    assert "intact: 52 event(s)" in capsys.readouterr().out


def test_a_sessions_temporary_types_cannot_change_what_the_chain_hashes():
    """A session's temporary schema is searched for type names before pg_catalog: a domain
    pg_temp.text of three characters would cut every `::text` of an unqualified trigger. The
    trigger names its types with their schema, so the event's hash is still that of its content."""
    record_event(action=AuditEvent.Action.LOGIN, username="before")
    with connection.cursor() as cur:
        cur.execute("CREATE DOMAIN pg_temp.text AS varchar(3)")
        cur.execute("CREATE DOMAIN pg_temp.int8 AS int2")
        cur.execute("SELECT 'abcdef'::text")
        assert cur.fetchone() == ("abc",)  # the shadowing is real in this session
    event = record_event(action=AuditEvent.Action.LOGIN, username="a long user name", extra={"ip": "10.0.0.1"})
    with connection.cursor() as cur:
        cur.execute("DROP DOMAIN pg_temp.text; DROP DOMAIN pg_temp.int8")
    assert stored(event.pk)[0] == 2
    assert verify() is None


def test_a_rolled_back_savepoint_leaves_no_gap_in_the_chain():
    record_event(action=AuditEvent.Action.LOGIN, username="a")
    with pytest.raises(RuntimeError), transaction.atomic():
        record_event(action=AuditEvent.Action.LOGIN, username="rolled back")
        raise RuntimeError
    record_event(action=AuditEvent.Action.LOGOUT, username="a")
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", "username")) == [(1, "a"), (2, "a")]
    assert verify() is None


def test_application_role_cannot_erase_or_rewrite_the_trail(app_role):
    event = record_event(action=AuditEvent.Action.LOGIN, username="nurse")
    refused = {
        "UPDATE": "UPDATE audit_auditevent SET username = 'mallory'",
        "DELETE": "DELETE FROM audit_auditevent",
        "TRUNCATE": "TRUNCATE audit_auditevent",
        "DISABLE TRIGGER": "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only",
        "DISABLE chain": "ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_chain",
        "DROP TRIGGER": "DROP TRIGGER audit_auditevent_append_only ON audit_auditevent",
        "replace function": "CREATE OR REPLACE FUNCTION audit_trail_chain()"
        " RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "DROP TABLE": "DROP TABLE audit_auditevent",
        "clinical TRUNCATE": "TRUNCATE patients_patient CASCADE",
    }
    for what, sql in refused.items():
        with pytest.raises(DatabaseError, match=r"permission denied|must be owner|must be the owner") as err:
            as_role(app_role, sql)
            pytest.fail(f"{what} was allowed")
        assert err.value.__cause__ is not None, what
    # A GRANT by a role that holds no grant option only warns "no privileges were granted": check the effect.
    as_role(app_role, f"GRANT UPDATE, DELETE, TRUNCATE ON audit_auditevent TO {app_role}")
    rights = "SELECT has_table_privilege(%s, 'audit_auditevent', %s)"
    for right, held in {"UPDATE": False, "DELETE": False, "TRUNCATE": False, "TRIGGER": False, "INSERT": True}.items():
        assert as_role(app_role, rights, [app_role, right]) == [(held,)], right
    # What it needs still works: read and append to the trail (chained), write clinical rows.
    assert as_role(app_role, "SELECT count(*) FROM audit_auditevent") == [(1,)]
    as_role(
        app_role,
        "INSERT INTO audit_auditevent (at, username, action, model, object_pk, object_repr, study_id, site_code,"
        " changes, reason, extra, hash) VALUES (now(), 'nurse', 'logout', '', '', '', '', '', '{}', '', '{}', '')",
    )
    patient = PatientFactory()
    assert as_role(app_role, "UPDATE patients_patient SET sex = 'M' WHERE id = %s RETURNING sex", [patient.pk]) == [
        ("M",)
    ]
    event.refresh_from_db()
    assert event.username == "nurse" and AuditEvent.objects.count() == 2
    assert verify() is None


def test_owner_edit_with_the_trigger_off_is_found_by_verify_trail():
    events = [record_event(action=AuditEvent.Action.LOGIN, username=f"user{i}") for i in range(5)]
    assert verify() is None
    with connection.cursor() as cur:
        cur.execute(
            "SET CONSTRAINTS ALL IMMEDIATE; ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only"
        )
        cur.execute("UPDATE audit_auditevent SET username = 'mallory' WHERE id = %s", [events[2].pk])
        cur.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only")
    message = verify()
    assert message is not None
    assert f"seq 3 (id {events[2].pk})" in message and "changed" in message and "last good seq 2" in message


def test_deleted_or_smuggled_events_are_found_by_verify_trail():
    events = [record_event(action=AuditEvent.Action.LOGIN, username=f"user{i}") for i in range(4)]
    with connection.cursor() as cur:
        cur.execute(
            "SET CONSTRAINTS ALL IMMEDIATE; ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only"
        )
        cur.execute("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])
    message = verify()
    assert f"seq 3 (id {events[2].pk})" in message and "2..2 are missing" in message
    with connection.cursor() as cur:
        cur.execute("DELETE FROM audit_auditevent")  # the whole trail erased by the owner
        cur.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only")
    after = record_event(action=AuditEvent.Action.LOGIN, username="a")  # the chain goes on from its head
    assert f"seq 5 (id {after.pk})" in verify() and "1..4 are missing" in verify()


def test_an_event_smuggled_in_with_the_chain_trigger_off_is_found():
    record_event(action=AuditEvent.Action.LOGIN, username="a")
    with connection.cursor() as cur:
        cur.execute(
            "SET CONSTRAINTS ALL IMMEDIATE; ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_chain"
        )
        cur.execute(
            "INSERT INTO audit_auditevent (at, username, action, model, object_pk, object_repr, study_id, site_code,"
            " changes, reason, extra, hash) VALUES (now(), 'ghost', 'login', '', '', '', '', '', '{}', '', '{}', '')"
            " RETURNING id"
        )
        ghost = cur.fetchone()[0]
    assert f"id {ghost}: has no place in the chain" in verify()
