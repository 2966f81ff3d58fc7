"""The dashboard's reads: one row per analysed patient, in a fixed number of queries, as numpy columns.

The statistics need, per patient of the population (`outcomes.cohort` rules:
latest consent says yes to registry use, never withdrawn with "remove data";
the cohort filters), a handful of values: Table 1 attributes, the index
procedure's columns, which leakage sites and complication types it had, the
survival time, and at every timepoint the VAS, ODI, number of opioids and
MME/day of a completed visit. One SQL statement computes them (conditional
aggregation over the visits, one aggregate per patient over the consents) and
returns them packed as one binary string of fixed-width big-endian columns
(`int4send`/`float8send`), read with `numpy.frombuffer`: no model instances,
no Python object per value. A second query counts the visible patients left
out (removed, awaiting consent); the page adds two small ones (complications
by grade, the first patients' VAS lines).

Exact values: VAS comes as integer tenths; ODI as an integer number of
1/126 points (ODI = 20 x sum / answered, and 2520 / answered is an integer for
1..10 sections), so thresholds and ranks compare integers. Nothing is cached:
every read sees the last saved visit.
"""

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection

from accounts.models import Site, User
from outcomes.models import FollowUp, Timepoint
from patients.models import Consent, Patient
from procedures.models import LEVELS, Complication, Leakage, Procedure

TIMEPOINTS = list(Timepoint.values)  # baseline first
SEXES = list(Patient.Sex.values)
TUMOURS = list(Patient.PrimaryTumour.values)
APPROACHES = list(Procedure.Approach.values)
LEVEL_CODES = [code for code, _ in LEVELS]
LEAK_SITES = list(Leakage.Site.values)
COMPLICATION_TYPES = list(Complication.Type.values)
ODI_UNITS = 126  # ODI points are multiples of 1/126 (see module docstring)
NONE = -1  # a missing integer value
SPAGHETTI_MAX = 100  # patients drawn one line each on the page (the first by study ID)

# (name, SQL expression, kind): kind i = int4, f = float8. NULL ints become NONE, NULL floats NaN.
_INDEX_COLUMNS = [
    ("has_index", "(ix.id IS NOT NULL)::int", "i"),
    ("levels_mask", "coalesce(ix.levels_mask, {none})", "i"),
    ("technical_success", "coalesce(ix.technical_success::int, {none})", "i"),
    ("operation_time_min", "coalesce(ix.operation_time_min, {none})", "i"),
    ("cement10", "coalesce(round(ix.cement_volume_ml * 10)::int, {none})", "i"),
    ("stay_days", "coalesce(ix.discharge_date - ix.admission_date, {none})", "i"),
    ("imaging_days", "coalesce(ix.procedure_date - pop.imaging_date, {none})", "i"),
    ("symptom_days", "coalesce(ix.procedure_date - pop.symptom_onset_date, {none})", "i"),
    ("leakage", "coalesce(ix.leakage::int, {none})", "i"),
    ("approach", "coalesce(array_position(%(approaches)s::text[], ix.approach::text) - 1, {none})", "i"),
    ("leak_mask", "coalesce(lk.mask, 0)", "i"),
    ("leak_symptomatic", "coalesce(lk.symptomatic::int, 0)", "i"),
    ("complication_mask", "coalesce(cx.mask, 0)", "i"),
    ("major", "coalesce(cx.major::int, 0)", "i"),
    ("minor", "coalesce(cx.minor::int, 0)", "i"),
]
_PATIENT_COLUMNS = [
    ("age", "pop.age_at_enrolment", "i"),
    ("sex", "array_position(%(sexes)s::text[], pop.sex::text) - 1", "i"),
    ("tumour", "array_position(%(tumours)s::text[], pop.primary_tumour::text) - 1", "i"),
    ("procedures", "coalesce(pp.n, 0)::int", "i"),
    *_INDEX_COLUMNS,
    ("event", "(pop.death_date IS NOT NULL)::int", "i"),
    (
        "time_days",
        "coalesce(coalesce(pop.death_date, greatest(pp.last_known, fu.last_visit, pop.last_signed,"
        " pop.last_withdrawn)) - ix.procedure_date, {none})",
        "i",
    ),
]
_MEASURE_COLUMNS = [
    (f"{measure}_{tp}", f"coalesce(fu.{measure}_{tp}, {default})", kind)
    for tp in TIMEPOINTS
    for measure, kind, default in (
        ("vas10", "i", "{none}"),
        ("odiu", "i", "{none}"),
        ("opioids", "i", "{none}"),
        ("mme", "f", "'NaN'::float8"),
    )
]
COLUMNS = _PATIENT_COLUMNS + _MEASURE_COLUMNS
DTYPE = np.dtype([(name, ">i4" if kind == "i" else ">f8") for name, _, kind in COLUMNS])

_ODI_SUM = " + ".join(f"coalesce(f.odi_q{i}, 0)" for i in range(1, 11))
_ODI_ANSWERED = ", ".join(f"f.odi_q{i}" for i in range(1, 11))


def _visit_aggregates() -> str:
    parts = []
    for i, tp in enumerate(TIMEPOINTS):
        where = f"FILTER (WHERE v.t = {i + 1})"
        parts += [
            f"max(v.vas10) {where} AS vas10_{tp}",
            f"max(v.odiu) {where} AS odiu_{tp}",
            f"max(v.opioids) {where} AS opioids_{tp}",
            f"max(v.mme) {where} AS mme_{tp}",
        ]
    return ",\n".join(parts)


# Each completed visit's values in exact units, its timepoint as a number (1 = baseline).
_VISITS = f"""
    SELECT f.patient_id, f.visit_date, array_position(%(timepoints)s::text[], f.timepoint::text) AS t,
           round(f.vas * 10)::int AS vas10,
           CASE WHEN f.odi_score IS NOT NULL THEN ({_ODI_SUM}) * (2520 / num_nonnulls({_ODI_ANSWERED})) END AS odiu,
           f.opioid_count AS opioids, f.mme_per_day AS mme
    FROM outcomes_followup f WHERE f.status = %(completed)s
"""


# The consents of each patient in one pass: removed, latest consent's answer (signed date, then id), dates.
_CONSENTS = """
    SELECT c.patient_id,
           bool_or(c.withdrawal_scope = %(remove)s) AS removed,
           (array_agg(c.scope_registry ORDER BY c.signed_date DESC, c.id DESC))[1] AS consented,
           max(c.signed_date) AS last_signed, max(c.withdrawn_date) AS last_withdrawn
    FROM patients_consent c GROUP BY c.patient_id
"""


def _scope(user: User | None) -> tuple[str, dict[str, Any]]:
    if user is None or user.sees_all_sites:
        return "", {}
    return (
        " AND p.site_id IN (SELECT us.site_id FROM accounts_user_sites us WHERE us.user_id = %(user)s)",
        {"user": user.pk},
    )


def _population_sql(user: User | None, filters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """WITH cons, pop: the analysed patients of the user's sites matching `filters` (outcomes.cohort rules)."""
    scope, params = _scope(user)
    where = scope
    site = filters.get("site")
    if site:
        where += " AND p.site_id = (SELECT s.id FROM accounts_site s WHERE s.code = %(site)s)"
        params["site"] = site.code if isinstance(site, Site) else site
    if filters.get("primary_tumour"):
        where += " AND p.primary_tumour = %(tumour)s"
        params["tumour"] = filters["primary_tumour"]
    index = []
    if filters.get("approach"):
        index.append("x.approach = %(approach)s")
        params["approach"] = filters["approach"]
    if filters.get("procedure_from"):
        index.append("x.procedure_date >= %(from)s::date")
        params["from"] = str(filters["procedure_from"])
    if filters.get("procedure_to"):
        index.append("x.procedure_date <= %(to)s::date")
        params["to"] = str(filters["procedure_to"])
    if index:
        where += (
            " AND EXISTS (SELECT 1 FROM procedures_procedure x WHERE x.patient_id = p.id AND x.procedure_number = 1"
            f" AND {' AND '.join(index)})"
        )
    params["remove"] = Consent.WithdrawalScope.REMOVE_DATA
    sql = f"""
        WITH cons AS ({_CONSENTS}),
        pop AS (
            SELECT p.id, p.study_id, p.age_at_enrolment, p.sex, p.primary_tumour, p.symptom_onset_date,
                   p.imaging_date, p.death_date, cons.last_signed, cons.last_withdrawn
            FROM patients_patient p JOIN cons ON cons.patient_id = p.id
            WHERE cons.consented AND NOT cons.removed {where}
        )
    """
    return sql, params


def _levels_mask_sql() -> str:
    return " + ".join(
        f"(CASE WHEN position('|{code}|' in '|' || pr.levels_treated || '|') > 0 THEN {1 << i} ELSE 0 END)"
        for i, code in enumerate(LEVEL_CODES)
    )


@dataclass(frozen=True)
class Cohort:
    """The population as numpy columns (one entry per patient; see COLUMNS), and the counts left out."""

    columns: np.ndarray  # structured array of DTYPE
    excluded_withdrawn: int
    awaiting_consent: int

    def __len__(self) -> int:
        return len(self.columns)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name].astype(np.float64 if self.columns.dtype[name].kind == "f" else np.int64)


def cohort_columns(user: User | None, filters: dict[str, Any]) -> Cohort:
    """The population (shared cohort filters; `user=None` = study-wide) as columns. Two queries."""
    pop_sql, params = _population_sql(user, filters)
    params.update(
        {
            "completed": FollowUp.Status.COMPLETED,
            "sexes": SEXES,
            "tumours": TUMOURS,
            "approaches": APPROACHES,
            "leak_sites": LEAK_SITES,
            "types": COMPLICATION_TYPES,
            "major": Complication.Severity.MAJOR,
            "minor": Complication.Severity.MINOR,
            "timepoints": TIMEPOINTS,
        }
    )
    packed = " || ".join(
        ("int4send(" if kind == "i" else "float8send(") + expr.format(none=NONE) + ")" for _, expr, kind in COLUMNS
    )
    sql = f"""
        {pop_sql},
        pp AS (
            SELECT pr.patient_id, count(*) AS n, max(greatest(pr.procedure_date, pr.discharge_date)) AS last_known
            FROM procedures_procedure pr GROUP BY pr.patient_id
        ),
        ix AS (
            SELECT pr.*, ({_levels_mask_sql()}) AS levels_mask
            FROM procedures_procedure pr WHERE pr.procedure_number = 1
        ),
        lk AS (
            SELECT l.procedure_id, bit_or(1 << (array_position(%(leak_sites)s::text[], l.site::text) - 1)) AS mask,
                   bool_or(l.symptomatic) AS symptomatic
            FROM procedures_leakage l GROUP BY l.procedure_id
        ),
        cx AS (
            SELECT c.procedure_id, bit_or(1 << (array_position(%(types)s::text[], c.type::text) - 1)) AS mask,
                   bool_or(c.severity = %(major)s) AS major, bool_or(c.severity = %(minor)s) AS minor
            FROM procedures_complication c GROUP BY c.procedure_id
        ),
        fu AS (
            SELECT v.patient_id, max(v.visit_date) AS last_visit, {_visit_aggregates()}
            FROM ({_VISITS}) v GROUP BY v.patient_id
        )
        SELECT string_agg({packed}, ''::bytea), count(*)
        FROM pop
        LEFT JOIN pp ON pp.patient_id = pop.id
        LEFT JOIN ix ON ix.patient_id = pop.id
        LEFT JOIN lk ON lk.procedure_id = ix.id
        LEFT JOIN cx ON cx.procedure_id = ix.id
        LEFT JOIN fu ON fu.patient_id = pop.id
    """
    scope, scope_params = _scope(user)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        blob, n = cursor.fetchone()
        cursor.execute(
            f"""WITH cons AS ({_CONSENTS})
            SELECT count(*) FILTER (WHERE coalesce(cons.removed, false)),
                   count(*) FILTER (WHERE NOT coalesce(cons.removed, false) AND NOT coalesce(cons.consented, false))
            FROM patients_patient p LEFT JOIN cons ON cons.patient_id = p.id WHERE true {scope}""",
            {"remove": Consent.WithdrawalScope.REMOVE_DATA, **scope_params},
        )
        removed, awaiting = cursor.fetchone()
    columns = np.frombuffer(bytes(blob) if blob is not None else b"", dtype=DTYPE)
    assert len(columns) == n
    return Cohort(columns, excluded_withdrawn=removed, awaiting_consent=awaiting)


def complication_rows(user: User | None, filters: dict[str, Any]) -> list[tuple[str, str, int, int, int]]:
    """(type, severity of its first record, CIRSE grade, events, patients of the type) of the
    population's index-procedure complications. One query (the page's complications table)."""
    pop_sql, params = _population_sql(user, filters)
    sql = f"""{pop_sql},
        c AS (
            SELECT c.id, c.type, c.severity, c.cirse_grade, pr.patient_id
            FROM procedures_complication c JOIN procedures_procedure pr ON pr.id = c.procedure_id
            JOIN pop ON pop.id = pr.patient_id WHERE pr.procedure_number = 1
        ),
        t AS (
            SELECT type, (array_agg(severity ORDER BY id))[1] AS severity, count(DISTINCT patient_id) AS patients
            FROM c GROUP BY type
        )
        SELECT c.type, t.severity, c.cirse_grade, count(*), t.patients
        FROM c JOIN t ON t.type = c.type GROUP BY c.type, t.severity, c.cirse_grade, t.patients
        ORDER BY c.type, c.cirse_grade"""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def vas_lines(user: User | None, filters: dict[str, Any], limit: int = SPAGHETTI_MAX) -> tuple[list[Any], int]:
    """The first `limit` patients by study ID with a completed visit: (study ID, {timepoint: VAS}), and how
    many patients have one. One query (the page's per-patient VAS chart)."""
    pop_sql, params = _population_sql(user, filters)
    params.update({"completed": FollowUp.Status.COMPLETED, "limit": limit})
    sql = f"""{pop_sql},
        v AS (
            SELECT pop.study_id, json_object_agg(f.timepoint, f.vas) AS vas
            FROM pop JOIN outcomes_followup f ON f.patient_id = pop.id AND f.status = %(completed)s
            GROUP BY pop.study_id
        )
        SELECT study_id, vas::text, count(*) OVER () FROM v ORDER BY study_id LIMIT %(limit)s"""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [(sid, json.loads(vas)) for sid, vas, _ in rows], (rows[0][2] if rows else 0)
