"""The chain trigger remembers the head within its transaction.

It holds the advisory lock until commit, so no other transaction can extend
the chain meanwhile. The head (seq and hash) it last wrote is kept in a
transaction-local setting, `audit.chain_head`. Savepoint rollbacks undo it
along with the rows. Only the first event of a transaction looks the head up
in the table. Without this, a bulk insert into a small table (planned as a
sequential scan) cost O(n) per row: 20,000 rows took 94 s, not 0.7 s.
"""

from django.db import migrations

LOCK_KEY = 418581342580

CHAIN = """
CREATE OR REPLACE FUNCTION audit_trail_chain() RETURNS trigger
LANGUAGE plpgsql SET search_path = {schema}, pg_temp AS $$
DECLARE
    head text := current_setting('audit.chain_head', true);
    last_seq bigint;
    last_hash text;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'audit trail events are written in READ COMMITTED transactions only (not %)',
            current_setting('transaction_isolation') USING ERRCODE = 'serialization_failure';
    END IF;
    IF head IS NULL OR head = '' THEN
        PERFORM pg_advisory_xact_lock({lock});
        SELECT seq, hash INTO last_seq, last_hash FROM audit_auditevent
            WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1;
    ELSE
        last_seq := split_part(head, ':', 1)::bigint;
        last_hash := split_part(head, ':', 2);
    END IF;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.hash := audit_trail_digest(coalesce(last_hash, ''), NEW);
    PERFORM set_config('audit.chain_head', NEW.seq::text || ':' || NEW.hash, true);
    RETURN NEW;
END
$$;
"""

PREVIOUS = """
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


def _run(sql):  # type: ignore[no-untyped-def]
    def apply(apps, schema_editor):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT quote_ident(current_schema())")
            schema = cursor.fetchone()[0]
            cursor.execute(sql.replace("{schema}", schema).replace("{lock}", str(LOCK_KEY)))

    return apply


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_chain_fields")]
    operations = [migrations.RunPython(_run(CHAIN), _run(PREVIOUS))]
