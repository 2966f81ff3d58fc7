"""The dashboard's analysis rows (outcomes.AnalysisRow), refreshed by the triggers of migration 0005.

outcomes_refresh_due(ids) now also recomputes the given patients' analysis rows, and leakages and
complications get the same statement-level triggers (their patient through the procedure). The
packed layout is dashboard.selectors.DTYPE, big-endian (int4send / float8send), written out here:
age, sex, tumour, procedures, the index procedure's columns, event, time_days, then per timepoint
VAS in tenths, ODI in 1/126 points, opioids (int4) and MME/day (float8); -1 for a missing integer,
NaN for a missing MME. The codes are positions in the models' choice lists at the time of this
migration: reordering a list needs a migration that recreates the function
(tests/dashboard/test_reference.py compares every summary number with an independent reference).
"""

import importlib

import django.db.models.deletion
from django.db import migrations, models

from outcomes.models import Timepoint
from patients.models import Patient
from procedures.models import LEVELS, Complication, Leakage, Procedure

NONE = -1


def _array(values) -> str:  # type: ignore[no-untyped-def]
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]::text[]"


SEXES, TUMOURS = _array(Patient.Sex.values), _array(Patient.PrimaryTumour.values)
APPROACHES, LEAK_SITES = _array(Procedure.Approach.values), _array(Leakage.Site.values)
TYPES, TIMEPOINTS = _array(Complication.Type.values), list(Timepoint.values)
LEVELS_MASK = " + ".join(
    f"(CASE WHEN position('|{code}|' in '|' || pr.levels_treated || '|') > 0 THEN {1 << i} ELSE 0 END)"
    for i, (code, _label) in enumerate(LEVELS)
)
INTS = [
    "p.age_at_enrolment::int",
    f"array_position({SEXES}, p.sex::text) - 1",
    f"array_position({TUMOURS}, p.primary_tumour::text) - 1",
    "coalesce(pp.n, 0)::int",
    "(ix.id IS NOT NULL)::int",
    f"coalesce(ix.levels_mask, {NONE})",
    f"coalesce(ix.technical_success::int, {NONE})",
    f"coalesce(ix.operation_time_min::int, {NONE})",
    f"coalesce(round(ix.cement_volume_ml * 10)::int, {NONE})",
    f"coalesce(ix.discharge_date - ix.admission_date, {NONE})",
    f"coalesce(ix.procedure_date - p.imaging_date, {NONE})",
    f"coalesce(ix.procedure_date - p.symptom_onset_date, {NONE})",
    f"coalesce(ix.leakage::int, {NONE})",
    f"coalesce(array_position({APPROACHES}, ix.approach::text) - 1, {NONE})",
    "coalesce(lk.mask, 0)",
    "coalesce(lk.symptomatic::int, 0)",
    "coalesce(cx.mask, 0)",
    "coalesce(cx.major::int, 0)",
    "coalesce(cx.minor::int, 0)",
    "(p.death_date IS NOT NULL)::int",
    # survival: to death, else to the last date known alive (procedures, discharges, consents,
    # completed visits); none without an index procedure
    f"""CASE WHEN ix.id IS NULL THEN {NONE} WHEN p.death_date IS NOT NULL THEN p.death_date - ix.procedure_date
        ELSE coalesce(greatest(pp.last_known, cons.last_signed, cons.last_withdrawn, vv.last_visit)
                      - ix.procedure_date, {NONE}) END""",
]
MEASURES = []
for tp in TIMEPOINTS:
    MEASURES += [
        f"int4send(coalesce(vv.vas10_{tp}, {NONE}))",
        f"int4send(coalesce(vv.odiu_{tp}, {NONE}))",
        f"int4send(coalesce(vv.opioids_{tp}, {NONE}))",
        f"float8send(coalesce(vv.mme_{tp}, 'NaN'::float8))",
    ]
PACKED = " || ".join([f"int4send(({expr})::int)" for expr in INTS] + MEASURES)
VISIT_COLUMNS = ", ".join(
    f"""max(round(f.vas * 10)::int) FILTER (WHERE f.timepoint = '{tp}') AS vas10_{tp},
        max(round(f.odi_score * 126)::int) FILTER (WHERE f.timepoint = '{tp}') AS odiu_{tp},
        max(f.opioid_count::int) FILTER (WHERE f.timepoint = '{tp}') AS opioids_{tp},
        max(f.mme_per_day) FILTER (WHERE f.timepoint = '{tp}') AS mme_{tp}"""
    for tp in TIMEPOINTS
)
# {mine}: a condition on a patient id column, e.g. "= ANY(ids)" or "IS NOT NULL" (every patient).
ROWS = f"""
    WITH cons AS (
        SELECT c.patient_id, bool_or(c.withdrawal_scope = 'remove_data') AS removed,
               (max((((c.signed_date - DATE '1970-01-01')::bigint << 32) | c.id::bigint) << 1
                    | c.scope_registry::int) & 1) = 1 AS consented,
               max(c.signed_date) AS last_signed, max(c.withdrawn_date) AS last_withdrawn
        FROM patients_consent c WHERE c.patient_id {{mine}} GROUP BY c.patient_id
    ),
    pp AS (
        SELECT pr.patient_id, count(*) AS n, max(greatest(pr.procedure_date, pr.discharge_date)) AS last_known
        FROM procedures_procedure pr WHERE pr.patient_id {{mine}} GROUP BY pr.patient_id
    ),
    ix AS (
        SELECT pr.*, ({LEVELS_MASK}) AS levels_mask
        FROM procedures_procedure pr WHERE pr.procedure_number = 1 AND pr.patient_id {{mine}}
    ),
    lk AS (
        SELECT l.procedure_id, bit_or(1 << (array_position({LEAK_SITES}, l.site::text) - 1)) AS mask,
               bool_or(l.symptomatic) AS symptomatic
        FROM procedures_leakage l JOIN ix ON ix.id = l.procedure_id GROUP BY l.procedure_id
    ),
    cx AS (
        SELECT c.procedure_id, bit_or(1 << (array_position({TYPES}, c.type::text) - 1)) AS mask,
               bool_or(c.severity = 'major') AS major, bool_or(c.severity = 'minor') AS minor
        FROM procedures_complication c JOIN ix ON ix.id = c.procedure_id GROUP BY c.procedure_id
    ),
    vv AS (
        SELECT f.patient_id, max(f.visit_date) AS last_visit, {VISIT_COLUMNS}
        FROM outcomes_followup f WHERE f.status = 'completed' AND f.patient_id {{mine}} GROUP BY f.patient_id
    )
    INSERT INTO outcomes_analysisrow (patient_id, site_id, primary_tumour, approach, index_date, consented, removed,
                                      packed)
    SELECT p.id, p.site_id, p.primary_tumour, coalesce(ix.approach, ''), ix.procedure_date,
           coalesce(cons.consented, false), coalesce(cons.removed, false), {PACKED}
    FROM patients_patient p
    LEFT JOIN cons ON cons.patient_id = p.id
    LEFT JOIN pp ON pp.patient_id = p.id
    LEFT JOIN ix ON ix.patient_id = p.id
    LEFT JOIN lk ON lk.procedure_id = ix.id
    LEFT JOIN cx ON cx.procedure_id = ix.id
    LEFT JOIN vv ON vv.patient_id = p.id
    WHERE p.id {{mine}}
"""


_0006 = importlib.import_module("outcomes.migrations.0006_awaiting_procedure")
REFRESH = (
    f"""
CREATE OR REPLACE FUNCTION outcomes_refresh_due(ids bigint[]) RETURNS void LANGUAGE sql AS $$
    SELECT 1 FROM patients_patient WHERE id = ANY(ids) ORDER BY id FOR NO KEY UPDATE;
    DELETE FROM outcomes_duewindow WHERE patient_id = ANY(ids);
    DELETE FROM outcomes_awaitingprocedure WHERE patient_id = ANY(ids);
    DELETE FROM outcomes_analysisrow WHERE patient_id = ANY(ids);
    {_0006.DUE.format(patients="p.id = ANY(ids)")};
    {_0006.AWAITING.format(patients="p.id = ANY(ids)")};
    {ROWS.format(mine="= ANY(ids)")};
$$;
-- Leakages and complications name their procedure: the patient is the procedure's.
CREATE FUNCTION outcomes_due_changed_via_procedure() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ids bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT pr.patient_id) INTO ids
        FROM new_rows n JOIN procedures_procedure pr ON pr.id = n.procedure_id;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT pr.patient_id) INTO ids
        FROM old_rows o JOIN procedures_procedure pr ON pr.id = o.procedure_id;
    ELSE
        SELECT array_agg(DISTINCT pr.patient_id) INTO ids FROM procedures_procedure pr
        WHERE pr.id IN (SELECT procedure_id FROM new_rows UNION SELECT procedure_id FROM old_rows);
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
    FOR EACH STATEMENT EXECUTE FUNCTION outcomes_due_changed_via_procedure();
CREATE TRIGGER {table}_due_update AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outcomes_due_changed_via_procedure();
CREATE TRIGGER {table}_due_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outcomes_due_changed_via_procedure();
"""
        for table in ("procedures_leakage", "procedures_complication")
    )
    + ROWS.format(mine="IS NOT NULL")
    + ";"
)
BACK = (
    "".join(
        f"DROP TRIGGER IF EXISTS {table}_due_{op} ON {table};"
        for table in ("procedures_leakage", "procedures_complication")
        for op in ("insert", "update", "delete")
    )
    + "DROP FUNCTION IF EXISTS outcomes_due_changed_via_procedure();"
    + _0006.REFRESH.split("$$;")[0]
    + "$$;"
)


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(REFRESH)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(BACK)


class Migration(migrations.Migration):
    dependencies = [
        ("outcomes", "0006_awaiting_procedure"),
        ("patients", "0003_case_lock_follow_up_end"),
    ]

    operations = [
        migrations.CreateModel(
            name="AnalysisRow",
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
                ("primary_tumour", models.CharField(max_length=20)),
                ("approach", models.CharField(blank=True, max_length=20)),
                ("index_date", models.DateField(null=True)),
                ("consented", models.BooleanField()),
                ("removed", models.BooleanField()),
                ("packed", models.BinaryField()),
            ],
        ),
        migrations.RunPython(forwards, backwards),
    ]
