"""The worklist's patients awaiting their index procedure (outcomes.AwaitingProcedure), refreshed by
the triggers of migration 0005: outcomes_refresh_due now also recomputes the given patients' row
here (alive, follow-up not ended, no "remove data", no visit deceased or withdrawn, the latest
consent not withdrawn from new data, no procedure 1), so the list is one index range instead of a
look-up of every living patient's procedures, consents and visits. SQLite: nothing (see 0005).
"""

import django.db.models.deletion
from django.db import migrations, models

from registry.scoring import VISIT_WINDOWS

WINDOWS = ", ".join(
    f"('{name}', {low}, {high}, {rank})" for rank, (name, (low, high)) in enumerate(VISIT_WINDOWS.items())
)
IN_FOLLOW_UP = """p.death_date IS NULL AND p.follow_up_ended IS NULL
      AND NOT EXISTS (SELECT 1 FROM patients_consent r WHERE r.patient_id = p.id AND r.withdrawal_scope = 'remove_data')
      AND NOT EXISTS (SELECT 1 FROM outcomes_followup e
                      WHERE e.patient_id = p.id AND e.status IN ('deceased', 'withdrawn'))"""
LATEST = """(SELECT c.scope_registry, c.withdrawal_scope FROM patients_consent c
                                 WHERE c.patient_id = p.id ORDER BY c.signed_date DESC, c.id DESC LIMIT 1)"""
DUE = f"""
    INSERT INTO outcomes_duewindow (patient_id, site_id, study_id, timepoint, rank, opens, closes)
    SELECT p.id, p.site_id, p.study_id, tp.timepoint, tp.rank, pr.procedure_date + tp.low, pr.procedure_date + tp.high
    FROM patients_patient p
    JOIN procedures_procedure pr ON pr.patient_id = p.id AND pr.procedure_number = 1
    CROSS JOIN (VALUES {WINDOWS}) tp(timepoint, low, high, rank)
    JOIN LATERAL {LATEST} l ON true
    WHERE {{patients}} AND {IN_FOLLOW_UP}
      AND l.scope_registry AND coalesce(l.withdrawal_scope, '') NOT IN ('no_new_data', 'remove_data')
      AND NOT EXISTS (SELECT 1 FROM outcomes_followup f WHERE f.patient_id = p.id AND f.timepoint = tp.timepoint)
"""
AWAITING = f"""
    INSERT INTO outcomes_awaitingprocedure (patient_id, site_id, study_id, enrolment_date, consented)
    SELECT p.id, p.site_id, p.study_id, p.enrolment_date, coalesce(l.scope_registry, false)
    FROM patients_patient p
    LEFT JOIN LATERAL {LATEST} l ON true
    WHERE {{patients}} AND {IN_FOLLOW_UP}
      AND coalesce(l.withdrawal_scope, '') NOT IN ('no_new_data', 'remove_data')
      AND NOT EXISTS (SELECT 1 FROM procedures_procedure x WHERE x.patient_id = p.id AND x.procedure_number = 1)
"""
# As in 0005: the row lock makes concurrent refreshes of one patient take turns.
REFRESH = f"""
CREATE OR REPLACE FUNCTION outcomes_refresh_due(ids bigint[]) RETURNS void LANGUAGE sql AS $$
    SELECT 1 FROM patients_patient WHERE id = ANY(ids) ORDER BY id FOR NO KEY UPDATE;
    DELETE FROM outcomes_duewindow WHERE patient_id = ANY(ids);
    DELETE FROM outcomes_awaitingprocedure WHERE patient_id = ANY(ids);
    {DUE.format(patients="p.id = ANY(ids)")};
    {AWAITING.format(patients="p.id = ANY(ids)")};
$$;
{AWAITING.format(patients="true")};
"""
BACK = f"""
CREATE OR REPLACE FUNCTION outcomes_refresh_due(ids bigint[]) RETURNS void LANGUAGE sql AS $$
    SELECT 1 FROM patients_patient WHERE id = ANY(ids) ORDER BY id FOR NO KEY UPDATE;
    DELETE FROM outcomes_duewindow WHERE patient_id = ANY(ids);
    {DUE.format(patients="p.id = ANY(ids)")};
$$;
"""


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(REFRESH)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":  # 0005's function: the due windows only
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(BACK)


class Migration(migrations.Migration):
    dependencies = [
        ("outcomes", "0005_due_window"),
        ("patients", "0003_case_lock_follow_up_end"),
    ]

    operations = [
        migrations.CreateModel(
            name="AwaitingProcedure",
            fields=[
                (
                    "patient",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="patients.patient",
                    ),
                ),
                ("site_id", models.BigIntegerField()),
                ("study_id", models.CharField(max_length=32)),
                ("enrolment_date", models.DateField()),
                ("consented", models.BooleanField()),
            ],
            options={
                "indexes": [models.Index(fields=["enrolment_date", "study_id"], name="awaiting_enrolment")],
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
