"""Hash chain of the audit trail (PostgreSQL only).

A BEFORE INSERT trigger gives every new event `seq` (its place in the chain)
and `hash` = SHA-256 of its canonical content, which includes the previous
event's hash. Every writer gets it, including bulk_create and raw SQL.
Inserts are serialised with a transaction-level advisory lock, so two
transactions never take the same place. Events that already exist are chained
in id order.

The canonical content is described in `audit/chain.py`. `manage.py
verify_trail` computes it again in Python, on its own, and reports the first
broken link. On SQLite nothing is chained: `seq` stays NULL and `hash` empty.
"""

from django.db import migrations, models

# 0x6175646974 = "audit": the advisory lock key that serialises trail inserts.
LOCK_KEY = 418581342580

FUNCTIONS = """
CREATE OR REPLACE FUNCTION audit_trail_digest(prev text, e audit_auditevent) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = {schema}, pg_temp AS $$
DECLARE
    parts text[] := ARRAY[
        'audit-chain-v1', prev, e.seq::text, e.id::text,
        to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        coalesce(e.user_id::text, ''), e.username, e.action, e.model, e.object_pk, e.object_repr,
        e.study_id, e.site_code, e.changes::text, e.reason, e.extra::text];
    content text := '';
    p text;
BEGIN
    FOREACH p IN ARRAY parts LOOP
        content := content || length(p)::text || ':' || p || ';';
    END LOOP;
    RETURN encode(sha256(convert_to(content, 'UTF8')), 'hex');
END
$$;

CREATE OR REPLACE FUNCTION audit_trail_chain() RETURNS trigger
LANGUAGE plpgsql SET search_path = {schema}, pg_temp AS $$
DECLARE
    last_seq bigint;
    last_hash text;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'audit trail events are written in READ COMMITTED transactions only (not %)',
            current_setting('transaction_isolation') USING ERRCODE = 'serialization_failure';
    END IF;
    PERFORM pg_advisory_xact_lock({lock});
    SELECT seq, hash INTO last_seq, last_hash FROM audit_auditevent
        WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.hash := audit_trail_digest(coalesce(last_hash, ''), NEW);
    RETURN NEW;
END
$$;
"""

BACKFILL = """
ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only;
DO $$
DECLARE
    e audit_auditevent;
    prev text := '';
    n bigint := 0;
BEGIN
    FOR e IN SELECT * FROM audit_auditevent ORDER BY id LOOP
        n := n + 1;
        e.seq := n;
        prev := audit_trail_digest(prev, e);
        UPDATE audit_auditevent SET seq = n, hash = prev WHERE id = e.id;
    END LOOP;
END
$$;
ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only;
CREATE TRIGGER audit_auditevent_chain
    BEFORE INSERT ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_trail_chain();
"""

DROP = """
DROP TRIGGER IF EXISTS audit_auditevent_chain ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_trail_chain();
DROP FUNCTION IF EXISTS audit_trail_digest(text, audit_auditevent);
"""


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT quote_ident(current_schema())")
        schema = cursor.fetchone()[0]
        # no parameters: "%" in the SQL stays literal
        cursor.execute(FUNCTIONS.replace("{schema}", schema).replace("{lock}", str(LOCK_KEY)))
        cursor.execute(BACKFILL)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_trigger")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="SHA-256 over the previous event's hash and this content",
                max_length=64,
            ),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(
                blank=True,
                editable=False,
                help_text="Position in the hash chain (PostgreSQL)",
                null=True,
                unique=True,
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
