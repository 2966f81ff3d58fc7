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

import datetime
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connections

from accounts.models import Site, User
from outcomes.cohort import filtered_patients, population_counts
from outcomes.models import FollowUp, Timepoint
from patients.models import Consent, Patient
from procedures.models import LEVELS, Complication, Leakage, Procedure
from registry.replica import read_alias

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

# The patient rows: (name, SQL expression); every value an int4, NULL as NONE.
_INDEX_COLUMNS = [
    ("has_index", "(ix.id IS NOT NULL)::int"),
    ("levels_mask", "coalesce(ix.levels_mask, {none})"),
    ("technical_success", "coalesce(ix.technical_success::int, {none})"),
    ("operation_time_min", "coalesce(ix.operation_time_min::int, {none})"),
    ("cement10", "coalesce(round(ix.cement_volume_ml * 10)::int, {none})"),
    ("stay_days", "coalesce(ix.discharge_date - ix.admission_date, {none})"),
    ("imaging_days", "coalesce(ix.procedure_date - pop.imaging_date, {none})"),
    ("symptom_days", "coalesce(ix.procedure_date - pop.symptom_onset_date, {none})"),
    ("leakage", "coalesce(ix.leakage::int, {none})"),
    ("approach", "coalesce(array_position(%(approaches)s::text[], ix.approach::text) - 1, {none})"),
    ("leak_mask", "coalesce(lk.mask, 0)"),
    ("leak_symptomatic", "coalesce(lk.symptomatic::int, 0)"),
    ("complication_mask", "coalesce(cx.mask, 0)"),
    ("major", "coalesce(cx.major::int, 0)"),
    ("minor", "coalesce(cx.minor::int, 0)"),
]
_PATIENT_COLUMNS = [
    ("id", "pop.id::int"),
    ("age", "pop.age_at_enrolment::int"),
    ("sex", "array_position(%(sexes)s::text[], pop.sex::text) - 1"),
    ("tumour", "array_position(%(tumours)s::text[], pop.primary_tumour::text) - 1"),
    ("procedures", "coalesce(pp.n, 0)::int"),
    *_INDEX_COLUMNS,
    ("event", "(pop.death_date IS NOT NULL)::int"),
    ("index_day", "coalesce(ix.procedure_date - DATE '1970-01-01', {none})"),
    ("death_days", "coalesce(pop.death_date - ix.procedure_date, {none})"),
    # last known alive from procedures, discharges and consents (visits are added from the visit rows)
    (
        "known_days",
        "coalesce(greatest(pp.last_known, pop.last_signed, pop.last_withdrawn) - ix.procedure_date, {none})",
    ),
]
# The completed visits: patient, timepoint number (1 = baseline), day, values in exact units; mme float8.
_VISIT_COLUMNS = [("patient_id", "i"), ("t", "i"), ("day", "i"), ("vas10", "i"), ("odiu", "i"), ("opioids", "i"),
                  ("mme", "f")]  # fmt: skip
MEASURES = (("vas10", "i"), ("odiu", "i"), ("opioids", "i"), ("mme", "f"))
_MEASURE_COLUMNS = [(f"{measure}_{tp}", kind) for tp in TIMEPOINTS for measure, kind in MEASURES]
DTYPE = np.dtype(
    [(name, np.int32) for name, _ in _PATIENT_COLUMNS if name not in ("id", "index_day", "death_days", "known_days")]
    + [("time_days", np.int32)]
    + [(name, np.int32 if kind == "i" else np.float64) for name, kind in _MEASURE_COLUMNS]
)

# ODI = 20 x sum / answered, so ODI x 126 = sum x 2520 / answered is an integer: the stored score
# times 126, rounded, is that integer exactly (the float's error is far below 0.5).
_VISITS = f"""
    SELECT f.patient_id::int, array_position(%(timepoints)s::text[], f.timepoint::text) AS t,
           f.visit_date - DATE '1970-01-01' AS day, coalesce(round(f.vas * 10)::int, {NONE}) AS vas10,
           coalesce(round(f.odi_score * {ODI_UNITS})::int, {NONE}) AS odiu,
           coalesce(f.opioid_count::int, {NONE}) AS opioids, coalesce(f.mme_per_day, 'NaN'::float8) AS mme
    FROM outcomes_followup f
    WHERE f.status = %(completed)s {{scope}}
"""


def _binary_dtype(fields: list[tuple[str, str]]) -> np.dtype:
    """One row of COPY ... (FORMAT binary) whose fields are all non-NULL int4 ('i') or float8 ('f')."""
    layout: list[tuple[str, str]] = [("_count", ">i2")]
    for name, kind in fields:
        layout += [(f"_len_{name}", ">i4"), (name, ">i4" if kind == "i" else ">f8")]
    return np.dtype(layout)


def _copy_rows(cursor: Any, sql: str, params: dict[str, Any], fields: list[tuple[str, str]]) -> np.ndarray:
    """Run `sql` as a binary COPY (one logged query) and read its rows without a Python object per value."""
    statement = cursor.cursor.mogrify(sql, params).decode()
    sink = io.BytesIO()
    cursor.copy_expert(f"COPY ({statement}) TO STDOUT (FORMAT binary)", sink)
    data = sink.getbuffer()
    dtype = _binary_dtype(fields)
    header = 19  # signature, flags, extension length
    n = (len(data) - header - 2) // dtype.itemsize
    return np.frombuffer(data, dtype=dtype, count=n, offset=header)


# The consents of each patient in one pass: removed, the latest consent's answer (signed date, then id:
# packed into one sortable bigint whose lowest bit is the answer), the dates.
_CONSENTS = """
    SELECT c.patient_id,
           bool_or(c.withdrawal_scope = %(remove)s) AS removed,
           (max((((c.signed_date - DATE '1970-01-01')::bigint << 32) | c.id::bigint) << 1
                | c.scope_registry::int) & 1) = 1 AS consented,
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
    if str(filters.get("locked_only") or "").lower() in ("true", "1", "yes", "on"):  # outcomes.cohort's locked_only
        where += " AND EXISTS (SELECT 1 FROM patients_caselock k WHERE k.patient_id = p.id AND k.timepoint = ''"
        where += " AND k.unlocked_at IS NULL)"
    params["remove"] = Consent.WithdrawalScope.REMOVE_DATA
    sql = f"""
        WITH cons AS MATERIALIZED ({_CONSENTS}),
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
    """The population as numpy columns (one entry per patient; see DTYPE), and the counts left out."""

    columns: np.ndarray  # structured array of DTYPE
    excluded_withdrawn: int
    awaiting_consent: int
    ids: np.ndarray | None = None  # the patients' primary keys, in the order of `columns`

    def __len__(self) -> int:
        return len(self.columns)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]


def cohort_columns(user: User | None, filters: dict[str, Any]) -> Cohort:
    """The population (shared cohort filters; `user=None` = study-wide) as columns. Three queries:
    the patient rows and the completed visits (binary COPY), the counts of those left out."""
    if connections[read_alias()].vendor != "postgresql":
        return portable_cohort_columns(user, filters)
    pop_sql, params = _population_sql(user, filters)
    scope, scope_params = _scope(user)
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
    columns = ", ".join(f"{expr.format(none=NONE)} AS {name}" for name, expr in _PATIENT_COLUMNS)
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
        )
        SELECT {columns}
        FROM pop
        LEFT JOIN pp ON pp.patient_id = pop.id
        LEFT JOIN ix ON ix.patient_id = pop.id
        LEFT JOIN lk ON lk.procedure_id = ix.id
        LEFT JOIN cx ON cx.procedure_id = ix.id
    """
    with connections[read_alias()].cursor() as cursor:
        patients = _copy_rows(cursor, sql, params, [(name, "i") for name, _ in _PATIENT_COLUMNS])
        visit_scope = f" AND f.patient_id IN (SELECT p.id FROM patients_patient p WHERE true {scope})" if scope else ""
        visits = _copy_rows(cursor, _VISITS.format(scope=visit_scope), {**params, **scope_params}, _VISIT_COLUMNS)
        cursor.execute(
            f"""WITH cons AS MATERIALIZED ({_CONSENTS})
            SELECT count(*) FILTER (WHERE coalesce(cons.removed, false)),
                   count(*) FILTER (WHERE NOT coalesce(cons.removed, false) AND NOT coalesce(cons.consented, false))
            FROM patients_patient p LEFT JOIN cons ON cons.patient_id = p.id WHERE true {scope}""",
            {"remove": Consent.WithdrawalScope.REMOVE_DATA, **scope_params},
        )
        removed, awaiting = cursor.fetchone()
    columns, ids = _pivot(patients, visits)
    return Cohort(columns, excluded_withdrawn=removed, awaiting_consent=awaiting, ids=ids)


def portable_cohort_columns(user: User | None, filters: dict[str, Any]) -> Cohort:
    """cohort_columns through the ORM, for SQLite (the local demo, which has no COPY, arrays or date
    arithmetic): the same rows from the shared cohort rules (outcomes.cohort), built in Python.
    A test compares it with the SQL path on PostgreSQL."""
    epoch = datetime.date(1970, 1, 1)
    patients = list(
        filtered_patients(user, filters)
        .order_by("pk")
        .prefetch_related("consents", "procedures__leakages", "procedures__complications")
    )
    prows, vrows = [], []
    for p in patients:
        procs = list(p.procedures.all())
        ix = next((x for x in procs if x.procedure_number == 1), None)
        consents = list(p.consents.all())
        known = [d for x in procs for d in (x.procedure_date, x.discharge_date)]
        known += [d for c in consents for d in (c.signed_date, c.withdrawn_date) if d]
        row = {
            "id": p.pk,
            "age": p.age_at_enrolment,
            "sex": SEXES.index(p.sex),
            "tumour": TUMOURS.index(p.primary_tumour),
        }
        row |= {"procedures": len(procs), "has_index": int(ix is not None), "event": int(p.death_date is not None)}
        if ix is None:
            row |= {name: NONE for name, _ in _INDEX_COLUMNS[1:]}
            row |= {"leak_mask": 0, "leak_symptomatic": 0, "complication_mask": 0, "major": 0, "minor": 0}
            row |= {"index_day": NONE, "death_days": NONE, "known_days": NONE}
        else:
            levels = set(ix.levels_treated.split("|"))
            leaks, comps = list(ix.leakages.all()), list(ix.complications.all())
            row |= {
                "levels_mask": sum(1 << i for i, code in enumerate(LEVEL_CODES) if code in levels),
                "technical_success": int(ix.technical_success),
                "operation_time_min": ix.operation_time_min,
                "cement10": int((ix.cement_volume_ml * 10).to_integral_value()),
                "stay_days": (ix.discharge_date - ix.admission_date).days,
                "imaging_days": (ix.procedure_date - p.imaging_date).days,
                "symptom_days": (ix.procedure_date - p.symptom_onset_date).days,
                "leakage": int(ix.leakage),
                "approach": APPROACHES.index(ix.approach),
                "leak_mask": sum({1 << LEAK_SITES.index(lk.site) for lk in leaks}),
                "leak_symptomatic": int(any(lk.symptomatic for lk in leaks)),
                "complication_mask": sum({1 << COMPLICATION_TYPES.index(c.type) for c in comps}),
                "major": int(any(c.severity == Complication.Severity.MAJOR for c in comps)),
                "minor": int(any(c.severity == Complication.Severity.MINOR for c in comps)),
                "index_day": (ix.procedure_date - epoch).days,
                "death_days": (p.death_date - ix.procedure_date).days if p.death_date else NONE,
                "known_days": (max(known) - ix.procedure_date).days if known else NONE,
            }
        prows.append(tuple(row[name] for name, _ in _PATIENT_COLUMNS))
    visits = FollowUp.objects.filter(patient__in=[p.pk for p in patients], status=FollowUp.Status.COMPLETED)
    for f in visits.order_by("pk"):
        vrows.append(
            (
                f.patient_id,
                TIMEPOINTS.index(f.timepoint) + 1,
                (f.visit_date - epoch).days,
                NONE if f.vas is None else int((f.vas * 10).to_integral_value()),
                NONE if f.odi_score is None else round(f.odi_score * ODI_UNITS),
                NONE if f.opioid_count is None else f.opioid_count,
                np.nan if f.mme_per_day is None else f.mme_per_day,
            )
        )
    patient_dtype = np.dtype([(name, np.int32) for name, _ in _PATIENT_COLUMNS])
    visit_dtype = np.dtype([(name, np.int32 if kind == "i" else np.float64) for name, kind in _VISIT_COLUMNS])
    columns, ids = _pivot(np.array(prows, dtype=patient_dtype), np.array(vrows, dtype=visit_dtype))
    counts = population_counts(user)
    return Cohort(columns, counts["excluded_withdrawn"], counts["awaiting_consent"], ids=ids)


def _native(rows: np.ndarray) -> np.ndarray:
    return rows.astype(np.dtype([(name, rows.dtype[name].newbyteorder("=")) for name in rows.dtype.names or ()]))


def _pivot(patients: np.ndarray, visits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One structured row per patient (ordered by id): the patient columns, the survival time and, per
    timepoint, the completed visit's values (NONE / NaN without one)."""
    patients = _native(patients)
    patients = patients[np.argsort(patients["id"], kind="stable")]
    visits = _native(visits)
    ids = patients["id"]
    n, k = len(ids), len(TIMEPOINTS)
    out = np.empty(n, dtype=DTYPE)
    for name in DTYPE.names or ():
        if name in (patients.dtype.names or ()):
            out[name] = patients[name]
    pos = np.searchsorted(ids, visits["patient_id"])
    mine = pos < n
    mine[mine] = ids[pos[mine]] == visits["patient_id"][mine]
    cell = pos[mine] * k + (visits["t"][mine] - 1)  # (patient, timepoint) as one flat index
    for measure, kind in MEASURES:
        grid = np.full(n * k, NONE if kind == "i" else np.nan, dtype=np.int32 if kind == "i" else np.float64)
        grid[cell] = visits[measure][mine]
        grid = grid.reshape(n, k)
        for i, tp in enumerate(TIMEPOINTS):
            out[f"{measure}_{tp}"] = grid[:, i]
    # last known alive: the latest of the procedure/consent dates and every completed visit
    last_visit = np.full(n * k, np.iinfo(np.int32).min, dtype=np.int64)
    last_visit[cell] = visits["day"][mine]
    last_visit_day = last_visit.reshape(n, k).max(axis=1)
    with_visit = last_visit_day > np.iinfo(np.int32).min
    known = patients["known_days"].astype(np.int64)
    has_index = patients["has_index"] == 1
    visit_days = last_visit_day - patients["index_day"]
    update = with_visit & has_index
    known[update] = np.maximum(known[update], visit_days[update])
    out["time_days"] = np.where(patients["event"] == 1, patients["death_days"], known)
    out["time_days"][~has_index] = NONE
    return out, ids


def complication_rows(
    user: User | None, filters: dict[str, Any], cohort: Cohort | None = None
) -> list[tuple[str, str, int, int, int]]:
    """(type, severity of its first record, CIRSE grade, events, patients of the type) of the
    population's index-procedure complications. One query (the page's complications table); given the
    `cohort` already read, it reads only the complications and keeps those of the cohort's patients."""
    if cohort is None:
        cohort = cohort_columns(user, filters)
    scope, params = _scope(user)
    sql = f"""SELECT c.id, c.type, c.severity, c.cirse_grade, pr.patient_id
        FROM procedures_complication c JOIN procedures_procedure pr ON pr.id = c.procedure_id
        JOIN patients_patient p ON p.id = pr.patient_id
        WHERE pr.procedure_number = 1 {scope} ORDER BY c.id"""
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    members = set((cohort.ids if cohort.ids is not None else np.zeros(0, dtype=np.int64)).tolist())
    severity: dict[str, str] = {}
    patients: dict[str, set[int]] = {}
    events: dict[tuple[str, int], int] = {}
    for _, kind, sev, grade, patient in rows:
        if patient not in members:
            continue
        severity.setdefault(kind, sev)
        patients.setdefault(kind, set()).add(patient)
        events[(kind, grade)] = events.get((kind, grade), 0) + 1
    return [(kind, severity[kind], grade, n, len(patients[kind])) for (kind, grade), n in sorted(events.items())]


def vas_lines(
    user: User | None, filters: dict[str, Any], limit: int = SPAGHETTI_MAX, cohort: Cohort | None = None
) -> tuple[list[Any], int]:
    """The first `limit` patients recorded (by registry key) with a completed VAS: (study ID, {timepoint: VAS}),
    and how many patients have one. One query (their study IDs), given the `cohort` already read."""
    if cohort is None:
        cohort = cohort_columns(user, filters)
    vas = np.stack([cohort[f"vas10_{tp}"] for tp in TIMEPOINTS], axis=1) if len(cohort) else np.zeros((0, 7))
    with_vas = np.nonzero((vas != NONE).any(axis=1))[0]
    chosen = with_vas[:limit]
    ids = cohort.ids[chosen].tolist() if cohort.ids is not None else []
    with connections[read_alias()].cursor() as cursor:
        marks = ", ".join(["%s"] * len(ids)) or "NULL"
        cursor.execute(f"SELECT id, study_id FROM patients_patient WHERE id IN ({marks})", ids)
        study_ids = dict(cursor.fetchall())
    lines = [
        (study_ids[pid], {tp: int(v) / 10 for tp, v in zip(TIMEPOINTS, vas[i].tolist(), strict=True) if v != NONE})
        for pid, i in zip(ids, chosen.tolist(), strict=True)
    ]
    return lines, len(with_vas)
