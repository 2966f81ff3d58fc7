"""A bulk writer may refresh the derived tables once per chunk instead of once per statement.

import_bundle and generate_synthetic send a chunk of 2,000 patients as seven COPY statements (patients,
consents, procedures, leakages, complications, visits, opioids); each fired the statement trigger, so
the chunk's due windows, awaiting rows and analysis rows were computed seven times (12% of an import's
wall time on a quiet machine). outcomes_refresh_due(ids), which every trigger calls, now notes the ids
in a temporary table while the transaction-local setting `outcomes.defer_refresh` is 'on', and the
writer refreshes them once (`outcomes.derived`: DEFER before the chunk, REFRESH after it, in the same
transaction). Unset, as for every service, admin and ORM write, it refreshes at once, as before.
outcomes_refresh_now(ids) is 0007's refresh, unchanged: a later change of the rules replaces that one.
"""

import importlib

from django.db import migrations

_0007 = importlib.import_module("outcomes.migrations.0007_analysis_row")
REFRESH_0007 = _0007.REFRESH.split("$$;")[0] + "$$;"
assert REFRESH_0007.lstrip().startswith("CREATE OR REPLACE FUNCTION outcomes_refresh_due(ids bigint[])")

FORWARD = (
    REFRESH_0007.replace("FUNCTION outcomes_refresh_due(", "FUNCTION outcomes_refresh_now(", 1)
    + """
CREATE OR REPLACE FUNCTION outcomes_refresh_due(ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('outcomes.defer_refresh', true) = 'on' THEN
        INSERT INTO pg_temp.outcomes_deferred_refresh (patient_id) SELECT unnest(ids);
    ELSE
        PERFORM outcomes_refresh_now(ids);
    END IF;
END
$$;
"""
)
BACKWARD = (
    "DROP FUNCTION IF EXISTS outcomes_refresh_due(bigint[]);"
    + REFRESH_0007.replace("CREATE OR REPLACE FUNCTION", "CREATE FUNCTION", 1)
    + "DROP FUNCTION IF EXISTS outcomes_refresh_now(bigint[]);"
)


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(FORWARD)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("outcomes", "0008_verbose_names")]

    operations = [migrations.RunPython(forwards, backwards)]
