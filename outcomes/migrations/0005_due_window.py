"""The worklist's due windows (outcomes.DueWindow), kept current by PostgreSQL triggers.

outcomes_refresh_due(ids) recomputes the rows of the given patients by the worklist's rules
(outcomes.selectors: alive, follow-up not ended, no "remove data", no visit deceased or withdrawn,
the latest consent (signed date, then id) allows registry use and is not withdrawn from new data;
one row per timepoint not recorded, window = index procedure + registry.scoring.VISIT_WINDOWS).
Statement-level triggers on the four tables those rules read call it once per statement with the
patients the statement touched (transition tables), so a bulk COPY of 2,000 patients is one
set-based refresh and a service's save of one visit refreshes one patient, in the same transaction.
The windows are written into the function here: a change of VISIT_WINDOWS needs a migration that
recreates it (tests/outcomes/test_worklist.py compares the rows with the Python rules).
SQLite (the local demo) has neither table rows nor triggers: its worklist is computed in Python.
"""

import django.db.models.deletion
from django.db import migrations, models

from registry.scoring import VISIT_WINDOWS

WINDOWS = ", ".join(
    f"('{name}', {low}, {high}, {rank})" for rank, (name, (low, high)) in enumerate(VISIT_WINDOWS.items())
)
ROWS = f"""
    SELECT p.id, p.site_id, p.study_id, tp.timepoint, tp.rank, pr.procedure_date + tp.low, pr.procedure_date + tp.high
    FROM patients_patient p
    JOIN procedures_procedure pr ON pr.patient_id = p.id AND pr.procedure_number = 1
    CROSS JOIN (VALUES {WINDOWS}) tp(timepoint, low, high, rank)
    WHERE {{patients}} AND p.death_date IS NULL AND p.follow_up_ended IS NULL
      AND NOT EXISTS (SELECT 1 FROM patients_consent r WHERE r.patient_id = p.id AND r.withdrawal_scope = 'remove_data')
      AND NOT EXISTS (SELECT 1 FROM outcomes_followup e
                      WHERE e.patient_id = p.id AND e.status IN ('deceased', 'withdrawn'))
      AND NOT EXISTS (SELECT 1 FROM outcomes_followup f WHERE f.patient_id = p.id AND f.timepoint = tp.timepoint)
      AND (SELECT c.scope_registry AND coalesce(c.withdrawal_scope, '') NOT IN ('no_new_data', 'remove_data')
           FROM patients_consent c WHERE c.patient_id = p.id ORDER BY c.signed_date DESC, c.id DESC LIMIT 1)
"""
COLUMNS = "patient_id, site_id, study_id, timepoint, rank, opens, closes"
TABLES = {"patients_patient": "id", "patients_consent": "patient_id", "procedures_procedure": "patient_id",
          "outcomes_followup": "patient_id"}  # fmt: skip
CREATE = (
    f"""
-- The lock makes concurrent refreshes of one patient take turns: the second one's statements (a
-- VOLATILE function: a fresh snapshot each) then see what the first committed. A row lock, not an
-- advisory lock: it does not conflict with the foreign-key checks' KEY SHARE locks, and a bulk
-- import of 100,000 patients does not fill the shared lock table.
CREATE FUNCTION outcomes_refresh_due(ids bigint[]) RETURNS void LANGUAGE sql AS $$
    SELECT 1 FROM patients_patient WHERE id = ANY(ids) ORDER BY id FOR NO KEY UPDATE;
    DELETE FROM outcomes_duewindow WHERE patient_id = ANY(ids);
    INSERT INTO outcomes_duewindow ({COLUMNS}) {ROWS.format(patients="p.id = ANY(ids)")};
$$;
-- TG_ARGV[0]: the column naming the patient in the table the trigger is on.
CREATE FUNCTION outcomes_due_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ids bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('SELECT array_agg(DISTINCT %I) FROM new_rows', TG_ARGV[0]) INTO ids;
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format('SELECT array_agg(DISTINCT %I) FROM old_rows', TG_ARGV[0]) INTO ids;
    ELSE
        EXECUTE format('SELECT array_agg(DISTINCT x) FROM (SELECT %1$I AS x FROM new_rows UNION SELECT %1$I FROM old_rows) u',
                       TG_ARGV[0]) INTO ids;
    END IF;
    IF ids IS NOT NULL THEN
        PERFORM outcomes_refresh_due(ids);
    END IF;
    RETURN NULL;
END
$$;
"""
    + "".join(
        f"""
CREATE TRIGGER {table}_due_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outcomes_due_changed('{column}');
CREATE TRIGGER {table}_due_update AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outcomes_due_changed('{column}');
CREATE TRIGGER {table}_due_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outcomes_due_changed('{column}');
"""
        for table, column in TABLES.items()
    )
    + f"INSERT INTO outcomes_duewindow ({COLUMNS}) {ROWS.format(patients='true')};"
)
DROP = (
    "".join(
        f"DROP TRIGGER IF EXISTS {table}_due_{op} ON {table};"
        for table in TABLES
        for op in ("insert", "update", "delete")
    )
    + "DROP FUNCTION IF EXISTS outcomes_due_changed(); DROP FUNCTION IF EXISTS outcomes_refresh_due(bigint[]);"
)


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:  # no parameters: "%" in format() stays literal
            cursor.execute(CREATE)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("outcomes", "0004_oditext_moved_from_selfreport"),
        ("patients", "0003_case_lock_follow_up_end"),
        ("procedures", "0002_row_versions"),  # the triggers and the function read its table
    ]

    operations = [
        migrations.CreateModel(
            name="DueWindow",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("site_id", models.BigIntegerField()),
                ("study_id", models.CharField(max_length=32)),
                (
                    "timepoint",
                    models.CharField(
                        choices=[
                            ("baseline", "Baseline (0-14 days before)"),
                            ("post", "Post-procedure (0-3 days)"),
                            ("w1", "1 week (5-10 days)"),
                            ("m1", "1 month (21-45 days)"),
                            ("m3", "3 months (75-105 days)"),
                            ("m6", "6 months (150-210 days)"),
                            ("m12", "12 months (330-400 days)"),
                        ],
                        max_length=10,
                    ),
                ),
                ("rank", models.SmallIntegerField()),
                ("opens", models.DateField()),
                ("closes", models.DateField()),
                (
                    "patient",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="patients.patient",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["closes", "study_id", "rank"], name="duewindow_closes"),
                    models.Index(fields=["opens", "study_id", "rank"], name="duewindow_opens"),
                ],
                "constraints": [
                    models.UniqueConstraint(fields=("patient", "timepoint"), name="duewindow_one_per_timepoint")
                ],
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
