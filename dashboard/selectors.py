"""The dashboard's reads: one row per analysed patient, in a fixed number of queries, as numpy columns.

The statistics need, per patient of the population (`outcomes.cohort` rules:
latest consent says yes to registry use, never withdrawn with "remove data";
the cohort filters), a handful of values: Table 1 attributes, the index
procedure's columns, which leakage sites and complication types it had, the
survival time, and at every timepoint the VAS, ODI, number of opioids and
MME/day of a completed visit. outcomes.AnalysisRow holds them per patient, packed
as one binary string of fixed-width big-endian columns (`int4send`/`float8send`),
recomputed by database triggers in the statement that changes the patient or any
of her records (outcomes migrations 0005 and 0007), so one binary COPY of the
population's rows reads them, parsed with `numpy.frombuffer`: no join, no
aggregate, no model instances, no Python object per value. A second query counts
the visible patients left out (removed, awaiting consent); the page adds two
small ones (complications by grade, the first patients' VAS lines).

Exact values: VAS comes as integer tenths; ODI as an integer number of
1/126 points (ODI = 20 x sum / answered, and 2520 / answered is an integer for
1..10 sections), so thresholds and ranks compare integers. Nothing is cached:
the rows are rewritten in the transaction that saves a visit, so every read sees
the last saved visit.
"""

import datetime
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import connections

from accounts.models import User
from outcomes.cohort import analysis_rows_where, filtered_patients, population_counts, site_scope_sql
from outcomes.models import FollowUp, Timepoint
from patients.models import Patient
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

# outcomes.AnalysisRow.packed holds DTYPE's fields big-endian, in DTYPE's order (outcomes migration
# 0007 writes them: ODI x 126 = sum x 2520 / answered is an integer, so the stored score times 126,
# rounded, is that integer exactly). A binary COPY of (id, packed) has a fixed-width row: a field
# count, each field's length, the id, the packed bytes.
_ROW = np.dtype(
    [("_count", ">i2"), ("_len_id", ">i4"), ("id", ">i4"), ("_len_packed", ">i4")]
    + [(name, ">" + DTYPE[name].str[1:]) for name in DTYPE.names or ()]
)
_PACKED_OFFSET = _ROW.fields["_len_packed"][1] + 4  # type: ignore[index]
# The packed fields as they lie in a COPY row: converted to DTYPE in one pass (astype).
_PACKED = np.dtype(
    {
        "names": list(DTYPE.names or ()),
        "formats": [">" + DTYPE[name].str[1:] for name in DTYPE.names or ()],
        "offsets": [_PACKED_OFFSET + DTYPE.fields[name][1] for name in DTYPE.names or ()],  # type: ignore[index]
        "itemsize": _ROW.itemsize,
    }
)
_COPY_HEADER = 19  # signature, flags, extension length


def _copy_rows(cursor: Any, sql: str, params: dict[str, Any]) -> np.ndarray:
    """Run `sql` (id, packed) as a binary COPY (one logged query) and read its rows without a Python
    object per value."""
    statement = cursor.cursor.mogrify(sql, params).decode()
    sink = io.BytesIO()
    cursor.copy_expert(f"COPY ({statement}) TO STDOUT (FORMAT binary)", sink)
    data = sink.getbuffer()
    n = (len(data) - _COPY_HEADER - 2) // _ROW.itemsize
    rows = np.frombuffer(data, dtype=_ROW, count=n, offset=_COPY_HEADER)
    if n and (rows["_len_packed"] != DTYPE.itemsize).any():  # a layout the migration did not write
        raise RuntimeError("outcomes_analysisrow.packed does not have dashboard.selectors.DTYPE's layout")
    return rows


def _population_sql(user: User | None, filters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The analysed patients' packed rows (outcomes.cohort.analysis_rows_where)."""
    where, params = analysis_rows_where(user, filters)
    return f"SELECT a.patient_id::int, a.packed FROM outcomes_analysisrow a WHERE {where}", params


@dataclass(frozen=True)
class Cohort:
    """The population as numpy columns (one entry per patient; see DTYPE), and the counts left out."""

    columns: np.ndarray  # structured array of DTYPE
    excluded_withdrawn: int
    awaiting_consent: int
    ids: np.ndarray | None = None  # the patients' primary keys, in the order of `columns`
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.columns)

    def __getitem__(self, name: str) -> np.ndarray:
        """One column as a contiguous array (copied once: the summary reads each column many times,
        and a field of the structured rows is a strided view)."""
        return self.memo(name, lambda: np.ascontiguousarray(self.columns[name]))  # type: ignore[no-any-return]

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` once per key for this cohort (the columns never change once read)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


def cohort_columns(user: User | None, filters: dict[str, Any]) -> Cohort:
    """The population (shared cohort filters; `user=None` = study-wide) as columns. Two queries: the
    analysis rows (outcomes.AnalysisRow, kept current by triggers: never stale) as a binary COPY,
    and the counts of those left out."""
    if connections[read_alias()].vendor != "postgresql":
        return portable_cohort_columns(user, filters)
    sql, params = _population_sql(user, filters)
    scope, scope_params = site_scope_sql(user, "a")
    with connections[read_alias()].cursor() as cursor:
        rows = _copy_rows(cursor, sql, params)
        cursor.execute(
            f"""SELECT count(*) FILTER (WHERE a.removed), count(*) FILTER (WHERE NOT a.removed AND NOT a.consented)
            FROM outcomes_analysisrow a WHERE true {scope}""",
            scope_params,
        )
        removed, awaiting = cursor.fetchone()
    order = np.argsort(rows["id"], kind="stable")
    columns = rows.view(_PACKED).astype(DTYPE)[order]
    return Cohort(
        columns, excluded_withdrawn=removed, awaiting_consent=awaiting, ids=rows["id"][order].astype(np.int64)
    )


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
    `cohort` already read, it reads only the complications and keeps those of the cohort's patients.
    The cohort is the user's sites' already, so the query has no site scope of its own: with one (a
    join to the patients and the user's sites) the planner started from every patient of those sites
    and probed their procedures, 0.29 s at 100,000 patients for 7,452 complications; read whole, the
    index-procedure complications of every site take a hash join (nothing of another site is kept)."""
    if cohort is None:
        cohort = cohort_columns(user, filters)
    sql = """SELECT c.id, c.type, c.severity, c.cirse_grade, pr.patient_id
        FROM procedures_complication c JOIN procedures_procedure pr ON pr.id = c.procedure_id
        WHERE pr.procedure_number = 1 ORDER BY c.id"""
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(sql)
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
