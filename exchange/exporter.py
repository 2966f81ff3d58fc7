"""Export the registry as a zip, streamed: the CSV bundle, a wide analysis file,
the data dictionary of the exported columns and a manifest.

On PostgreSQL every file is one `COPY (SELECT ...) TO STDOUT WITH CSV HEADER`
whose SELECT formats each cell exactly as the Python writer would (`sql_cell`:
de-identification, yes/no, ISO dates, Python's float repr, and the formula
guard of `registry.csv_safety` as a CASE on the first character); the exported
patients are read once (the cohort's rules) and joined by each file in study ID
order. The COPY's bytes are deflated into the zip, hashed as they pass and
yielded chunk by chunk, so memory stays flat whatever the number of patients.
Elsewhere (SQLite, the local demo) the same files come from rows read with
`.iterator()` and written through `registry.csv_safety.stream_csv`; the tests
check that both engines write the same bytes. The view and the `export_bundle`
command use the same `export_zip` generator; `export_members` is the list of
CSV files written.

De-identified (the default), so that no value, alone or combined with the
filters (whole calendar years only, see `exchange.services`), places a date
finer than a year: `direct` and `free_text` variables are dropped, and so are
the other typed texts (`obtained_by`, `document_sha256`, `cement_product`) and
the registry's row keys; every `date` about a person becomes `<name>_day`
(days since the index procedure), except the three whose offset would be a
second calendar anchor beside a year: enrolment (its year is kept instead),
the consent's signing (bounded by the version's period) and the date of birth
(the capped age is enough); consent version periods are given as years; ages
over 89 are shown as 90.

Identified: every CRF column, plus each row's registry key and version
(`record_id`, `record_version`), which `import_bundle --update` matches on.
"""

import contextlib
import datetime
import functools
import hashlib
import io
import json
import os
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import (
    BooleanField,
    Case,
    DecimalField,
    F,
    Func,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.utils import timezone
from isal import isal_zlib

from accounts.models import Site
from exchange import dictionary, formats
from exchange.dictionary import Variable
from outcomes.cohort import analysis_rows_where, filtered_patients
from outcomes.models import FollowUp, Medication, Timepoint
from patients.models import Consent, ConsentVersion, Patient
from procedures.models import Complication, Leakage, Procedure
from registry.csv_safety import DANGEROUS_FIRST, stream_csv
from registry.replica import read_alias
from registry.scoring import (
    DAYS_PER_MONTH,
    FACTOR_ROUTE,
    MME_FACTORS,
    VISIT_WINDOWS,
    days_between,
    in_window,
    months_between,
)

IDENTIFIED, DEIDENTIFIED = "identified", "deidentified"
SHAPE_BOTH, SHAPE_LONG, SHAPE_WIDE = "both", "long", "wide"
AGE_CAP = 90
CHUNK = 2000  # rows per server-side cursor fetch
# Deflate level of the CSV members, by ISA-L (`csv_compressor`): its level 1 deflates this CSV at
# ~530 MiB/s, zlib's level 1 at ~145 and its default 6 at ~29, into a zip a little smaller than
# zlib's level 1 (the export's largest cost after the database at 100,000 patients).
CSV_COMPRESSLEVEL = 1
FLUSH_CHARS = 64 * 1024  # CSV text deflated per zip write; the zip bytes are yielded then
WIDE_FILE = "analysis_wide.csv"
WIDE_MEASURES = ("status", "day", "vas", "odi_score", "opioid_count", "mme_per_day")


@dataclass
class ExportSpec:
    """What to export, for whom (None: study-wide, the command line)."""

    user: Any = None
    filters: dict[str, Any] = field(default_factory=dict)
    level: str = DEIDENTIFIED
    shape: str = SHAPE_BOTH
    reason: str = ""
    username: str = ""
    started_at: datetime.datetime = field(default_factory=timezone.now)
    # the SPSS, Stata and R files of the same CSVs (exchange/formats.py), asked for: built after the
    # CSVs, they take several times the CSVs' time at 100,000 patients (BENCHMARKS.md)
    packages: bool = False

    @property
    def identified(self) -> bool:
        return self.level == IDENTIFIED


@dataclass
class Column:
    name: str
    get: Callable[[dict[str, Any]], Any]
    label: str
    type: str
    unit: str = ""
    choices: str = ""
    min: str = ""
    max: str = ""
    identifier: str = ""
    note: str = ""
    # The same cell in SQL, as the text COPY writes (NULL: an empty cell), given how to name a
    # source column (`col("visit_date")` -> 't."visit_date"'); None where only Python computes it.
    sql: "Callable[[Callable[[str], str]], str] | None" = None


def day_name(variable: str) -> str:
    return variable[: -len("_date")] + "_day" if variable.endswith("_date") else variable + "_day"


def _offset(day: datetime.date | None, index: datetime.date | None) -> int | None:
    return days_between(index, day) if day and index else None


def _capped_age(age: int | None) -> int | None:
    return min(age, AGE_CAP) if age is not None else None


# Typed text a de-identified export leaves out although the CRF does not mark it
# free text: a staff name or code, a hash of the identified PDF, a product name typed freely.
DEIDENTIFIED_DROPPED_TEXT = frozenset(
    {("consents", "obtained_by"), ("consents", "document_sha256"), ("procedures", "cement_product")}
)
# Dates about a person whose day offset a de-identified export leaves out (module docstring).
DEIDENTIFIED_DROPPED_OFFSETS = frozenset(
    {("patients", "enrolment_date"), ("patients", "date_of_birth"), ("consents", "signed_date")}
)
DEIDENTIFIED_DROPPED_EXTRAS = frozenset({("consents", "day")})  # = signed_date's offset


def crf_columns(file: str, spec: ExportSpec) -> list[Column]:
    """The dictionary's variables of `file`, as this export level writes them."""
    out: list[Column] = []
    for var in dictionary.variables_for(file):
        out.extend(_columns_for(var, spec))
    for name, label, type_, unit in dictionary.EXPORT_EXTRA_COLUMNS.get(file, []):
        if not spec.identified and (file, name) in DEIDENTIFIED_DROPPED_EXTRAS:
            continue
        out.append(
            Column(
                name,
                _extra_getter(file, name),
                label,
                type_,
                unit,
                note="Added by the export",
                sql=_extra_sql(file, name),
            )
        )
    return out


def year_name(variable: str) -> str:
    return variable[: -len("_date")] + "_year" if variable.endswith("_date") else variable + "_year"


def _columns_for(var: Variable, spec: ExportSpec) -> list[Column]:
    def described(name: str, get: Callable[[dict[str, Any]], Any], sql: Any, **kw: Any) -> Column:
        base = {
            "label": var.label,
            "type": var.type,
            "unit": var.unit,
            "choices": var.choices_text,
            "min": var.min,
            "max": var.max,
            "identifier": var.identifier,
            "note": var.note,
        }
        return Column(name, get, sql=sql, **{**base, **kw})

    key, file = var.name, var.file
    if var.is_key:
        if not spec.identified:
            return []
        source = "id" if key == "record_id" else "version"
        return [described(key, lambda r: r[source], _sql_value(file, source))]
    if spec.identified:
        return [described(key, lambda r: r[key], _sql_value(file, key))]
    if var.identifier in ("direct", "free_text") or (file, key) in DEIDENTIFIED_DROPPED_TEXT:
        return []
    if var.type == "date" and not var.identifier:  # a date about the registry (consent version periods)
        return [
            described(
                year_name(key),
                lambda r: r[key].year if r[key] else None,
                lambda col: f"extract(year from {col(key)})::int::text",
                type="integer",
                unit="year",
                min="",
                max="",
                note=f"De-identified from {key}: the calendar year only",
            )
        ]
    if not var.identifier:
        if key == "age_at_enrolment":
            return [
                described(
                    key,
                    lambda r: _capped_age(r[key]),
                    lambda col: f"least({col(key)}, {AGE_CAP})::text",
                    note="Ages over 89 shown as 90",
                )
            ]
        return [described(key, lambda r: r[key], _sql_value(file, key))]
    if (file, key) in DEIDENTIFIED_DROPPED_OFFSETS:
        return []
    # a date about a person: days since the index procedure
    return [
        described(
            day_name(key),
            lambda r: _offset(r[key], r["index_date"]),
            _sql_offset(key, "index_date"),
            type="integer",
            unit="days since the index procedure",
            min="",
            max="",
            identifier="",
            note=f"De-identified from {key}",
        )
    ]


DATED = {
    "consents": "signed_date",
    "procedures": "procedure_date",
    "complications": "onset_date",
    "followups": "visit_date",
}


def _extra_getter(file: str, name: str) -> Callable[[dict[str, Any]], Any]:
    if name == "day":
        return lambda r: _offset(r[DATED[file]], r["index_date"])
    getters: dict[str, Callable[[dict[str, Any]], Any]] = {
        "enrolment_year": lambda r: r["enrolment_date"].year,
        "imaging_to_procedure_days": lambda r: _offset(r["index_date"], r["imaging_date"]),
        "symptoms_to_procedure_months": lambda r: (
            months_between(r["symptom_onset_date"], r["index_date"]) if r["index_date"] else None
        ),
        "hospital_stay_days": lambda r: days_between(r["admission_date"], r["discharge_date"]),
        "lesion_count": lambda r: len([c for c in r["levels_treated"].split("|") if c]),
        "in_window": lambda r: (
            in_window(r["timepoint"], r["index_date"], r["visit_date"]) if r["visit_date"] and r["index_date"] else None
        ),
        "mme_factor_table": lambda r: r["mme_factor_table"],
        "mme_factor": lambda r: MME_FACTORS.get(r["drug"]) if FACTOR_ROUTE.get(r["drug"]) == r["route"] else None,
    }
    return getters[name]


# ----------------------------------------------------------------------------- cells in SQL
#
# Each column's cell as PostgreSQL text, exactly as `registry.csv_safety.stream_csv` writes
# the Python value: NULL for None (COPY writes it as an empty, unquoted cell), yes/no for
# booleans, ISO dates, numbers as Python prints them, and text through the same formula guard.
# tests/exchange/test_export_sql.py checks each rule against the Python writer on hostile values.


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# The risky first characters by their code points: ascii(x) (the first character's code point, 0 for
# '') is an integer compared without building a one-character string per cell (about half the cost).
# Every risky one is below SAFE_ABOVE, so a cell that starts with a letter (most do) is told safe by
# one comparison instead of seven.
DANGEROUS_FIRST_SQL = "(" + ", ".join(str(ord(c)) for c in DANGEROUS_FIRST) + ")"
SAFE_ABOVE = max(ord(c) for c in DANGEROUS_FIRST)


GUARD_PREFIX = "(CASE WHEN ascii("  # how every guarded text cell's SQL starts (export_cache quotes those)


def sql_guard(expr: str) -> str:
    """`neutralise` of a text value: a leading ' before a risky first character; '' as NULL (an
    empty cell: COPY would quote an empty string, the Python writer does not)."""
    return (
        f"{GUARD_PREFIX}{expr}) > {SAFE_ABOVE} THEN {expr}"
        f" WHEN ascii({expr}) IN {DANGEROUS_FIRST_SQL} THEN '''' || {expr} ELSE nullif({expr}, '') END)"
    )


def sql_float(expr: str) -> str:
    """A float8 as Python's repr writes it: the same shortest digits (PostgreSQL 12+), but
    "2.0" not "2" for whole numbers under 1e16, "-0.0", "inf", "nan". The common cases are
    tested first: a fraction (NaN and the infinities equal their own trunc()), then a whole
    number; only a zero is printed twice, to tell -0.0 from 0.0."""
    return (
        f"(CASE WHEN {expr} <> trunc({expr}) THEN ({expr})::text"
        f" WHEN abs({expr}) < 1e16 THEN (CASE WHEN {expr} <> 0 THEN ({expr})::bigint::text || '.0'"
        f" WHEN ({expr})::text = '-0' THEN '-0.0' ELSE '0.0' END)"
        f" WHEN {expr} = 'NaN'::float8 THEN 'nan' WHEN {expr} = 'Infinity'::float8 THEN 'inf'"
        f" WHEN {expr} = '-Infinity'::float8 THEN '-inf' ELSE ({expr})::text END)"
    )


def sql_cell(kind: str, expr: str) -> str:
    """The text of a value of `kind` (see `_kind`) as the CSV writer prints it."""
    if kind == "bool":  # the simple CASE evaluates `expr` once (NULL matches neither)
        return f"(CASE {expr} WHEN true THEN 'yes' WHEN false THEN 'no' END)"
    if kind in ("int", "decimal"):  # COPY writes the number's own text (a ::text cast converts it twice)
        return f"({expr})"
    if kind == "decimal_trim":  # plain_decimal: 200.000 -> 200, 12.50 -> 12.5
        return f"trim_scale({expr})::text"
    if kind == "float":
        return sql_float(expr)
    if kind == "date":
        return f"to_char({expr}, 'YYYY-MM-DD')"
    return sql_guard(expr)


def _kind(field: Any) -> str:
    from django.db import models

    if isinstance(field, models.ForeignKey):
        return _kind(field.target_field)
    if isinstance(field, models.BooleanField):
        return "bool"
    if isinstance(field, DecimalField):
        return "decimal_trim" if field.decimal_places > 1 else "decimal"
    if isinstance(field, models.FloatField):
        return "float"
    if isinstance(field, models.DateTimeField):
        raise NotImplementedError(f"{field}: no SQL cell for a date-time (Python's isoformat)")
    if isinstance(field, models.DateField):
        return "date"
    if isinstance(field, (models.IntegerField, models.AutoField)):
        return "int"
    return "text"


# Values the export's queries add beside each model's own fields (annotations).
ANNOTATION_KINDS = {
    "site_code": "text",
    "version_label": "text",
    "study_id": "text",
    "index_date": "date",
    "procedure_number": "int",
    "timepoint": "text",
    "timepoint_order": "int",
}


@functools.cache
def _kinds(file: str) -> dict[str, str]:
    return {**ANNOTATION_KINDS, **{f.attname: _kind(f) for f in MODELS[file]._meta.concrete_fields}}


def _sql_value(file: str, key: str) -> Callable[[Callable[[str], str]], str]:
    """A row value unchanged (after `_normalise`: a key's code, trimmed decimals) as SQL text."""
    source = KEY_SOURCES.get((file, key), key)
    kind = _kinds(file)[source]
    return lambda col: sql_cell(kind, col(source))


def _sql_offset(day: str, index: str) -> Callable[[Callable[[str], str]], str]:
    """days_between(index, day) (date - date is whole days in PostgreSQL, an integer COPY
    writes as it is); NULL if either is."""
    return lambda col: f"({col(day)} - {col(index)})"


def _extra_sql(file: str, name: str) -> Callable[[Callable[[str], str]], str]:
    if name == "day":
        return _sql_offset(DATED[file], "index_date")
    if name == "enrolment_year":
        return lambda col: f"extract(year from {col('enrolment_date')})::int"
    if name == "imaging_to_procedure_days":
        return _sql_offset("index_date", "imaging_date")
    if name == "symptoms_to_procedure_months":  # months_between: int days / 30.4375, a float
        return lambda col: sql_float(
            f"(({col('index_date')} - {col('symptom_onset_date')})::float8 / {DAYS_PER_MONTH}::float8)"
        )
    if name == "hospital_stay_days":
        return _sql_offset("discharge_date", "admission_date")
    if name == "lesion_count":
        return lambda col: f"cardinality(array_remove(string_to_array({col('levels_treated')}, '|'), ''))"
    if name == "in_window":

        def window(col: Callable[[str], str]) -> str:
            visit, index, timepoint = col("visit_date"), col("index_date"), col("timepoint")
            cases = " ".join(
                f"WHEN {_sql_literal(tp)} THEN {visit} BETWEEN {index} + {low} AND {index} + {high}"
                for tp, (low, high) in VISIT_WINDOWS.items()
            )
            return sql_cell(
                "bool", f"(CASE WHEN {visit} IS NOT NULL AND {index} IS NOT NULL THEN CASE {timepoint} {cases} END END)"
            )

        return window
    if name == "mme_factor_table":
        return _sql_value(file, "mme_factor_table")
    if name == "mme_factor":

        def factor(col: Callable[[str], str]) -> str:
            # one simple CASE on the drug (each drug has one route), its route checked after
            cases = " ".join(
                f"WHEN {_sql_literal(drug)} THEN (CASE WHEN {col('route')} = {_sql_literal(FACTOR_ROUTE[drug])}"
                f" THEN {_sql_literal(str(value))} END)"
                for drug, value in MME_FACTORS.items()
            )
            return f"(CASE {col('drug')} {cases} END)"

        return factor
    raise KeyError(f"{file}.{name}: no SQL for this export column")


# ----------------------------------------------------------------------------- rows


def _index_date(patient_path: str) -> Subquery:
    return Subquery(
        Procedure.objects.filter(patient=OuterRef(patient_path), procedure_number=1)
        .order_by()  # unique per patient: no sort (the default ordering would join patients)
        .values("procedure_date")[:1]
    )


def _fields(model: Any) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def _rows(queryset: QuerySet[Any], order: Iterable[str], **names: Any) -> Iterator[dict[str, Any]]:
    """Plain dicts in a fixed order, one query, read in chunks."""
    values = queryset.annotate(**names).order_by(*order).values(*_fields(queryset.model), *names)
    return values.iterator(chunk_size=CHUNK)


@dataclass
class Source:
    """One file's rows: a queryset, its order (Django paths) and the same order by the names of its values."""

    queryset: QuerySet[Any]
    order: list[str]
    sql_order: list[str]
    names: dict[str, Any] = field(default_factory=dict)
    patient_key: str = ""  # the value naming the row's patient (SQL: joined to the index procedure)

    def rows(self) -> Iterator[dict[str, Any]]:
        return _rows(self.queryset, self.order, **self.names)

    def sql(self, mogrify: Callable[[str, Any], bytes]) -> str:
        """The unordered SELECT of the same values, its parameters inlined (for COPY)."""
        values = self.queryset.annotate(**self.names).order_by().values(*_fields(self.queryset.model), *self.names)
        sql, params = values.query.sql_with_params()
        return mogrify(sql, params).decode()


def _source_queries(spec: ExportSpec, population: "Population | None" = None) -> dict[str, Source]:
    """Each bundle file's rows. `population`: the exported patients fetched once (the SQL engine:
    the consent rules then run once per export, not once per file; the index date comes from a
    join and the study ID from the population itself, see `file_sql`). None: the cohort's
    queryset as a subquery of each file, the study ID a join and the index date a subquery per row."""
    if population is None:
        patients = filtered_patients(spec.user, spec.filters)
        ids: Any = patients.values("pk")

        def index(path: str) -> dict[str, Any]:
            return {"index_date": _index_date(path)}

    else:

        def index(path: str) -> dict[str, Any]:
            return {}

    def of_population(model: Any, path: str) -> QuerySet[Any]:
        """The rows of the exported patients (SQL engine: all rows; `file_sql` joins the population)."""
        return model.objects.filter(**{f"{path}__in": ids}) if population is None else model.objects.all()

    def patient_ref(path: str) -> dict[str, Any]:
        return {} if population is None else {"patient_ref": F(f"{path}_id")}

    def study_id(path: str) -> dict[str, Any]:
        """The row's study ID: a join to the patient (Python engine), or nothing (SQL: `pop.study_id`)."""
        return {"study_id": F(path)} if population is None else {}

    if population is None:
        sites = Site.objects.filter(pk__in=patients.values("site_id"))
        versions = ConsentVersion.objects.filter(consents__patient__in=ids).distinct()
    else:  # read with the population (`population_literal`): no look-up of 100,000 ids per file
        sites = Site.objects.filter(_InArray(F("pk"), Value(population.site_ids)))
        versions = ConsentVersion.objects.filter(_InArray(F("pk"), Value(population.version_ids)))
    return {
        "sites": Source(sites, ["code"], ["code"]),
        "consent_versions": Source(versions, ["version"], ["version"]),
        "patients": Source(
            patients if population is None else Patient.objects.all(),
            ["study_id"],
            ["study_id"],
            {"site_code": F("site__code"), **index("pk")},
            patient_key="id",
        ),
        "consents": Source(
            of_population(Consent, "patient"),
            ["patient__study_id", "signed_date", "id"],
            ["study_id", "signed_date", "id"],
            {
                **study_id("patient__study_id"),
                "version_label": F("consent_version__version"),
                **index("patient_id"),
            },
            patient_key="patient_id",
        ),
        "procedures": Source(
            of_population(Procedure, "patient"),
            ["patient__study_id", "procedure_number"],
            ["study_id", "procedure_number"],
            {**study_id("patient__study_id"), **index("patient_id")},
            patient_key="patient_id",
        ),
        "leakages": Source(
            of_population(Leakage, "procedure__patient"),
            ["procedure__patient__study_id", "procedure__procedure_number", "site"],
            ["study_id", "procedure_number", "site"],
            {
                **study_id("procedure__patient__study_id"),
                "procedure_number": F("procedure__procedure_number"),
                **patient_ref("procedure__patient"),
            },
            patient_key="patient_ref",
        ),
        "complications": Source(
            of_population(Complication, "procedure__patient"),
            ["procedure__patient__study_id", "procedure__procedure_number", "onset_date", "type", "id"],
            ["study_id", "procedure_number", "onset_date", "type", "id"],
            {
                **study_id("procedure__patient__study_id"),
                "procedure_number": F("procedure__procedure_number"),
                **index("procedure__patient_id"),
                **patient_ref("procedure__patient"),
            },
            patient_key="patient_ref",
        ),
        "followups": Source(
            of_population(FollowUp, "patient"),
            ["patient__study_id", "timepoint_order"],
            ["study_id", "timepoint_order"],
            {
                **study_id("patient__study_id"),
                **index("patient_id"),
                "timepoint_order": _timepoint_order(),
            },
            patient_key="patient_id",
        ),
        "medications": Source(
            of_population(Medication, "followup__patient"),
            ["followup__patient__study_id", "timepoint_order", "id"],
            ["study_id", "timepoint_order", "id"],
            {
                **study_id("followup__patient__study_id"),
                "timepoint": F("followup__timepoint"),
                "timepoint_order": _timepoint_order("followup__timepoint"),
                **patient_ref("followup__patient"),
            },
            patient_key="patient_ref",
        ),
    }


class _InArray(Func):
    """`column = ANY(array)`: a hashed look-up in a small array (the population's sites and consent
    versions; an array of 100,000 ids costs the planner 30 ms of selectivity estimates)."""

    arg_joiner = " = ANY("
    template = "(%(expressions)s::bigint[]))"
    output_field = BooleanField()


@dataclass(frozen=True)
class Population:
    """The exported patients in study ID order, as PostgreSQL array literals: ids and study IDs, and
    the sites and consent versions the export lists."""

    ids: str
    study_ids: str
    site_ids: str = "{}"  # the sites of these patients
    version_ids: str = "{}"  # the consent versions of their consent records
    # or the patients as a FROM item `pop(id, study_id, rank)` (the export cache's refresh of a few
    # patients, exchange/export_cache.py); `ids` and `study_ids` are then unused
    from_sql: str = ""
    ids_sql: str = ""  # with from_sql: the same patients as an array expression (the wide file's pivot)


def population_literal(spec: ExportSpec, ordered: bool = True) -> Population:
    """The exported patients (ids and study IDs) in study ID order (the database's collation, sorted
    once): one query over the analysis rows the triggers keep (outcomes.cohort.analysis_rows_where,
    the rules of `filtered_patients`), which returns both array literals as PostgreSQL writes them.
    Each file joins them `WITH ORDINALITY`, sorts by that integer rank instead of comparing study IDs
    by collation again, and takes the study ID from it instead of joining every row to its patient.
    `ordered=False` (an export reading the cache, whose rows hold their study IDs): the ids in any
    order and no study IDs, from the analysis rows alone (0.05 s instead of 0.4 s at 100,000)."""
    where, params = analysis_rows_where(spec.user, spec.filters)
    versions = (
        "(SELECT coalesce(array_agg(DISTINCT c.consent_version_id)::text, '{}') FROM patients_consent c"
        f" WHERE c.patient_id IN (SELECT a.patient_id FROM outcomes_analysisrow a WHERE {where}))"
    )
    if ordered:
        sql = (
            "SELECT coalesce(array_agg(p.id ORDER BY p.study_id)::text, '{}'),"
            " coalesce(array_agg(p.study_id ORDER BY p.study_id)::text, '{}'),"
            f" coalesce(array_agg(DISTINCT p.site_id)::text, '{{}}'), {versions}"
            f" FROM outcomes_analysisrow a JOIN patients_patient p ON p.id = a.patient_id WHERE {where}"
        )
    else:
        sql = (
            f"SELECT coalesce(array_agg(a.patient_id)::text, '{{}}'), '{{}}',"
            f" coalesce(array_agg(DISTINCT a.site_id)::text, '{{}}'), {versions}"
            f" FROM outcomes_analysisrow a WHERE {where}"
        )
    with connections[read_alias()].cursor() as cursor:
        cursor.execute(sql, params)
        return Population(*cursor.fetchone())


def _sources(spec: ExportSpec) -> dict[str, Callable[[], Iterator[dict[str, Any]]]]:
    return {file: source.rows for file, source in _source_queries(spec).items()}


def _timepoint_order(path: str = "timepoint") -> Case:
    """Visits in protocol order (baseline, post, w1 ... m12), not alphabetical."""
    return Case(
        *[When(**{path: tp}, then=Value(i)) for i, tp in enumerate(Timepoint.values)], output_field=IntegerField()
    )


# Bundle keys whose value comes from an annotation rather than the row's own field.
KEY_SOURCES = {("patients", "site"): "site_code", ("consents", "consent_version"): "version_label"}


MODELS = {
    "sites": Site,
    "consent_versions": ConsentVersion,
    "patients": Patient,
    "consents": Consent,
    "procedures": Procedure,
    "leakages": Leakage,
    "complications": Complication,
    "followups": FollowUp,
    "medications": Medication,
}


@functools.cache
def _trimmed_decimals(file: str) -> tuple[str, ...]:
    """Decimal fields stored with more places than the CRF writes (a dose of 200 is stored 200.000)."""
    return tuple(
        f.attname for f in MODELS[file]._meta.concrete_fields if isinstance(f, DecimalField) and f.decimal_places > 1
    )


def plain_decimal(value: Decimal | None) -> Decimal | None:
    """200.000 -> 200, 12.50 -> 12.5 (one-decimal CRF values such as VAS keep their "6.0").

    Still a number, so the CSV guard never mistakes a value for text.
    """
    return None if value is None else Decimal(format(value.normalize(), "f"))


def _normalise(file: str, row: dict[str, Any]) -> dict[str, Any]:
    for (f, key), source in KEY_SOURCES.items():
        if f == file:
            row[key] = row[source]
    for name in _trimmed_decimals(file):
        row[name] = plain_decimal(row[name])
    return row


def table(
    file: str, spec: ExportSpec, source: Callable[[], Iterator[dict[str, Any]]]
) -> tuple[list[Column], Iterator[list[Any]]]:
    columns = crf_columns(file, spec)

    def rows() -> Iterator[list[Any]]:
        for row in source():
            row = _normalise(file, row)
            yield [c.get(row) for c in columns]

    return columns, rows()


# ----------------------------------------------------------------------------- wide file


WIDE_PROCEDURE_COLUMNS = (
    "approach",
    "guidance",
    "levels_treated",
    "cement_volume_ml",
    "operation_time_min",
    "technical_success",
    "leakage",
    "hospital_stay_days",
    "lesion_count",
)


def _joined(col: Callable[[str], str], alias: str) -> Callable[[str], str]:
    """Names in a joined row `alias`, except the index date, which is the patient row's."""
    return lambda name: col(name) if name == "index_date" else f'{alias}."{name}"'


def _pivoted(col: Callable[[str], str], i: int) -> Callable[[str], str]:
    """Names of the visit at time point `i` in the wide file's pivot `w` (see `wide_sql`)."""
    return lambda name: col(name) if name == "index_date" else f'w."{name}__{i}"'


def _wide_parts(spec: ExportSpec) -> tuple[list[Column], list[Column], list[Column], dict[str, Column]]:
    """(all columns, patient columns, index procedure columns, visit columns by name)."""
    patient_cols = [
        c
        for c in crf_columns("patients", spec)
        if c.identifier not in ("direct", "free_text") and c.name not in dictionary.KEY_COLUMNS
    ]
    procedure_cols = [c for c in crf_columns("procedures", spec) if c.name in WIDE_PROCEDURE_COLUMNS]
    visit_cols = {c.name: c for c in crf_columns("followups", spec)}
    columns = [
        *patient_cols,
        *[
            Column(
                f"index_{c.name}",
                c.get,
                f"Index procedure: {c.label}",
                c.type,
                c.unit,
                c.choices,
                c.min,
                c.max,
                c.identifier,
                c.note,
                sql=lambda col, s=c.sql: s(_joined(col, "ix")),
            )
            for c in procedure_cols
        ],
    ]
    for i, tp in enumerate(Timepoint.values):
        for measure in WIDE_MEASURES:
            base = visit_cols.get(measure) or visit_cols["day"]
            columns.append(
                Column(
                    f"{measure}_{tp}",
                    lambda r, m=measure, t=tp: r["visits"].get(t, {}).get(m),
                    f"{base.label} ({tp})",
                    base.type,
                    base.unit,
                    base.choices,
                    base.min,
                    base.max,
                    note=f"From followups.csv, timepoint {tp}",
                    sql=lambda col, s=visit_cols[measure].sql, i=i: s(_pivoted(col, i)),
                )
            )
    return columns, patient_cols, procedure_cols, visit_cols


def wide_table(spec: ExportSpec) -> tuple[list[Column], Iterator[list[Any]]]:
    """One row per patient: characteristics, index procedure, then each measure at each time point."""
    sources = _sources(spec)
    columns, patient_cols, procedure_cols, visit_cols = _wide_parts(spec)
    day, no_visit = visit_cols["day"], [None] * len(WIDE_MEASURES)

    def rows() -> Iterator[list[Any]]:
        procedures = (r for r in sources["procedures"]() if r["procedure_number"] == 1)
        for patient, index, visits in merge_by_study_id(sources["patients"](), procedures, sources["followups"]()):
            patient = _normalise("patients", patient)
            row = [c.get(patient) for c in patient_cols]
            row += [c.get(index) if index else None for c in procedure_cols]
            # the same cells as the columns' getters, without a lookup per cell (100 000 rows x 42 cells)
            by_tp = {v["timepoint"]: [day.get(v) if m == "day" else v[m] for m in WIDE_MEASURES] for v in visits}
            for tp in Timepoint.values:
                row += by_tp.get(tp, no_visit)
            yield row

    return columns, rows()


def _names_used(column: Column) -> set[str]:
    """The source values a column's SQL reads (its `col` names)."""
    names: set[str] = set()
    assert column.sql is not None
    column.sql(lambda name: names.add(name) or f'"{name}"')
    return names


def wide_sql(
    spec: ExportSpec,
    columns: list[Column],
    mogrify: Callable[[str, Any], bytes],
    population: "Population",
    cache: bool = False,
) -> str:
    """The wide file in one SELECT: each patient row (as patients.csv selects it) joined to its
    index procedure and to its visits pivoted in one pass (`w`: the values the visit cells read, one
    column per time point; at most one visit per patient and time point, a unique constraint, so
    `max` is that visit's value), rather than one scan of the visits per time point. `cache`: the
    form the export cache stores (see `file_sql`)."""
    patients = _source_queries(spec, population)["patients"].sql(mogrify)
    visit_cols = {c.name: c for c in crf_columns("followups", spec)}
    names = sorted(set().union(*(_names_used(visit_cols[m]) for m in WIDE_MEASURES)) - {"index_date"})
    # each visit's time point as its index, computed once per visit (OFFSET 0 keeps the planner from
    # inlining the CASE into each of the 42 filters), so a filter compares integers, not text:
    # 1.55 -> 1.40 s for the wide file at 100,000 patients
    position = " ".join(f"WHEN {_sql_literal(tp)} THEN {i}" for i, tp in enumerate(Timepoint.values))
    only = f' WHERE v."patient_id" = ANY({population.ids_sql})' if population.ids_sql else ""  # a few patients
    visits = (
        f'SELECT v."patient_id", {", ".join(f'v."{name}"' for name in names)},'
        f' CASE v."timepoint" {position} END AS tp FROM {FollowUp._meta.db_table} v{only} OFFSET 0'
    )
    pivot = ", ".join(
        f'max(f."{name}") FILTER (WHERE f.tp = {i}) AS "{name}__{i}"'
        for i, _ in enumerate(Timepoint.values)
        for name in names
    )
    joins = [
        f'JOIN ({patients}) p ON p."id" = pop.id',
        f'LEFT JOIN {Procedure._meta.db_table} ix ON ix."patient_id" = pop.id AND ix."procedure_number" = 1',
        f'LEFT JOIN (SELECT f."patient_id", {pivot} FROM ({visits}) f GROUP BY f."patient_id") w'
        ' ON w."patient_id" = pop.id',
    ]
    if cache:  # one row per patient: no order within her rows
        return (
            f'SELECT pop.id AS "{CACHE_PATIENT}", pop.study_id AS "{CACHE_STUDY_ID}",'
            f" {_select_list(columns, _with_index_date('p', 'ix'))}"
            f" FROM {_population_rows(mogrify, population)} {' '.join(joins)}"
        )
    return (
        f"SELECT {_select_list(columns, _with_index_date('p', 'ix'))} FROM {_population_rows(mogrify, population)}"
        f" {' '.join(joins)} ORDER BY pop.rank"
    )


def _with_index_date(alias: str, index_alias: str) -> Callable[[str], str]:
    """Names in row `alias`; the index date is the joined index procedure's date."""
    return lambda name: f'{index_alias}."procedure_date"' if name == "index_date" else f'{alias}."{name}"'


def _select_list(columns: list[Column], col: Callable[[str], str]) -> str:
    return ", ".join(f'{c.sql(col)} AS "{c.name}"' for c in columns if c.sql is not None)


CACHE_PATIENT = "__patient"  # the patient of a row, in a cache form of a file's SELECT
CACHE_STUDY_ID = "__study_id"  # and her study ID, as stored (the order of an export)
CACHE_ORDER = "__order"  # the keys sorting one patient's rows: "__order0", "__order1"...


def file_sql(
    file: str,
    spec: ExportSpec,
    columns: list[Column],
    mogrify: Callable[[str, Any], bytes],
    population: "Population",
    cache: bool = False,
) -> str:
    """One bundle file in one SELECT: the cells of `columns` over the rows `table` reads, in its order.

    A file of patient rows joins the population (its ids in study ID order, see `population_literal`)
    and the index procedure; it is sorted by the population's rank, then as `table` sorts. `cache`
    (a file of patient rows): unsorted, each row with its patient (CACHE_PATIENT) and the keys that
    sort one patient's rows (CACHE_ORDER + 0, 1...), the form exchange/export_cache.py stores."""
    source = _source_queries(spec, population)[file]
    if source.patient_key:  # the study ID is the population's (`population_literal`), not a join per row
        named = _with_index_date("t", "ix")
        select = _select_list(columns, lambda name: "pop.study_id" if name == "study_id" else named(name))
    else:
        select = _select_list(columns, _with_index_date("t", "ix"))
    base = source.sql(mogrify)
    if not source.patient_key:
        order = ", ".join(f't."{name}"' for name in source.sql_order)
        return f"SELECT {select} FROM ({base}) t ORDER BY {order}"
    assert source.sql_order[0] == "study_id", file  # unique per patient, so ordered as the rank
    own_order = [f't."{name}"' for name in source.sql_order[1:]]
    index = ""
    if 'ix."procedure_date"' in select:  # some cell needs the index date (see `_with_index_date`)
        index = f' LEFT JOIN {Procedure._meta.db_table} ix ON ix."patient_id" = pop.id AND ix."procedure_number" = 1'
    rows = f'{_population_rows(mogrify, population)} JOIN ({base}) t ON t."{source.patient_key}" = pop.id{index}'
    if cache:
        keys = "".join(f', {key} AS "{CACHE_ORDER}{i}"' for i, key in enumerate(own_order))
        return f'SELECT pop.id AS "{CACHE_PATIENT}", pop.study_id AS "{CACHE_STUDY_ID}"{keys}, {select} FROM {rows}'
    return f"SELECT {select} FROM {rows} ORDER BY {', '.join(['pop.rank', *own_order])}"


def _population_rows(mogrify: Callable[[str, Any], bytes], population: "Population") -> str:
    if population.from_sql:
        return population.from_sql
    return mogrify(
        "unnest(%s::bigint[], %s::text[]) WITH ORDINALITY AS pop(id, study_id, rank)",
        [population.ids, population.study_ids],
    ).decode()


def merge_by_study_id(
    patients: Iterable[dict[str, Any]], procedures: Iterable[dict[str, Any]], visits: Iterable[dict[str, Any]]
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]]]:
    """(patient, index procedure or None, visits) per patient, from three streams in the same order.

    The streams come from one snapshot and are sorted by the database on the same
    column, so the study IDs follow each other identically: rows are matched by
    equality only. Comparing with Python's `<` would trust Python to sort like the
    database's collation, which (en_US and the like) it does not ("A0-0001" vs "A-0001").
    """
    procedures, visits = iter(procedures), iter(visits)
    index_row, visit = next(procedures, None), next(visits, None)
    for patient in patients:
        sid = patient["study_id"]
        index = None
        if index_row is not None and index_row["study_id"] == sid:
            index, index_row = index_row, next(procedures, None)
        own = []
        while visit is not None and visit["study_id"] == sid:
            own.append(visit)
            visit = next(visits, None)
        yield patient, index, own
    if index_row is not None or visit is not None:  # cannot happen within one snapshot; never drop data silently
        raise RuntimeError("export streams out of step: a procedure or visit belongs to no exported patient")


# ----------------------------------------------------------------------------- the zip


class _Sink(io.RawIOBase):
    """A write-only stream whose bytes are taken out as they come (for a streaming zip)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


@dataclass
class ExportResult:
    """Filled while the zip streams: row counts and hashes per file."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def row_counts(self) -> dict[str, int]:
        return {name: info["rows"] for name, info in self.files.items() if "rows" in info}


def dictionary_rows(described: list[tuple[str, list[Column]]]) -> Iterator[list[Any]]:
    for file, columns in described:
        for c in columns:
            yield [file, c.name, c.label, c.type, c.choices, c.unit, c.min, c.max, c.identifier, c.note]


DICTIONARY_HEADER = ["file", "variable", "label", "type", "choices", "unit", "min", "max", "identifier", "note"]


# The export transaction's settings. JIT off: compiling each export query cost seconds and saved
# nothing on these plain scans; floats as Python's repr writes them (shortest exact, the default);
# the sorts by study ID in memory, not on disk.
SNAPSHOT_SETTINGS = "SET LOCAL jit = off; SET LOCAL extra_float_digits = 1; SET LOCAL work_mem = '64MB'; SET LOCAL max_parallel_workers_per_gather = 0"


@contextlib.contextmanager
def snapshot() -> Iterator[str | None]:
    """Read every file from one snapshot, so the files agree while nurses keep entering data.

    On PostgreSQL the outermost export transaction is REPEATABLE READ, READ ONLY;
    inside a transaction its server-side cursors also stream rows as they are
    fetched instead of being materialised WITH HOLD. It yields the snapshot's
    exported name (`pg_export_snapshot`, also on a hot standby), with which a
    second connection reads the same rows (`_Prefetch`); None elsewhere. An
    abandoned download (GeneratorExit) just rolls the read-only transaction back.
    """
    connection = connections[read_alias()]  # the replica when the export runs in `reporting_stream`
    outermost = not connection.in_atomic_block
    with transaction.atomic(using=connection.alias):
        name = None
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY; {SNAPSHOT_SETTINGS}")
                cursor.execute("SELECT pg_export_snapshot()")
                name = cursor.fetchone()[0]
        yield name


@dataclass
class Member:
    """One CSV of the zip: its columns, and either its rows (Python) or its SELECT (COPY)."""

    name: str
    columns: list[Column]
    rows: Iterator[list[Any]] | None = None
    sql: Callable[[], str] | None = None  # built when the file is written (the population is read then)
    cached: bool = False  # `sql` reads the export cache's text (exchange/export_cache.py), not cells

    def copy_statement(self) -> str:
        assert self.sql is not None
        if self.cached:  # COPY's text format: the stored CSV text, escaped (export_cache.CachedText)
            return f"COPY ({self.sql()}) TO STDOUT"
        return f"COPY ({self.sql()}) TO STDOUT WITH (FORMAT csv, HEADER true)"

    def settings(self) -> tuple[str, str]:
        """Planner settings for this file's COPY, and their reset (SET LOCAL in the snapshot). The
        cache's reads have theirs once per connection (`export_cache.READ_SETTINGS`)."""
        if self.name in NESTED_LOOP_FILES and not self.cached:
            return NESTED_LOOPS, JOINS_BACK
        return "", ""


def export_members(
    spec: ExportSpec, engine: str, mogrify: Callable[[str, Any], bytes] | None = None, cache: bool = True
) -> list[Member]:
    """The CSV files an export writes, in order: each bundle file, then the wide file.

    `engine` "sql" (PostgreSQL): each file is one `COPY (SELECT ...) TO STDOUT`, its cells
    formatted and guarded in SQL; "python" (SQLite, and a second method in the tests): rows
    read with `.iterator()` and written by `registry.csv_safety.stream_csv`. Both give the
    same bytes (tests/exchange/test_export_sql.py). With `cache` (the SQL engine, a
    de-identified export, the cache installed by this code: `export_cache.usable`), the files
    of patient rows are read from the export cache's stored text, the same bytes again.
    """
    from exchange import export_cache  # it builds its rows with this module's queries

    members: list[Member] = []
    sql = engine == ENGINE_SQL
    if sql and mogrify is None:
        raise ValueError("the SQL engine needs the connection's mogrify")
    cached = (
        set(export_cache.cached_files())
        if sql and cache and not spec.identified and export_cache.usable(read_alias())
        else set()
    )
    # at the first COPY, not before the first byte
    population = functools.cache(lambda: population_literal(spec, ordered=not cached))
    bits = functools.cache(lambda: export_cache.population_bits(population().ids))
    if spec.shape in (SHAPE_BOTH, SHAPE_LONG):
        sources = None if sql else _sources(spec)
        for file in dictionary.FILES:
            if f"{file}.csv" in cached:
                name = f"{file}.csv"
                members.append(
                    Member(
                        name,
                        crf_columns(file, spec),
                        sql=lambda n=name: export_cache.member_sql(n, bits()),
                        cached=True,
                    )
                )
            elif sql:
                columns = crf_columns(file, spec)
                members.append(
                    Member(
                        f"{file}.csv",
                        columns,
                        sql=lambda f=file, c=columns: file_sql(f, spec, c, mogrify, population()),
                    )
                )
            else:
                columns, rows = table(file, spec, sources[file])
                members.append(Member(f"{file}.csv", columns, rows=rows))
    if spec.shape in (SHAPE_BOTH, SHAPE_WIDE):
        if WIDE_FILE in cached:
            columns = _wide_parts(spec)[0]
            members.append(
                Member(WIDE_FILE, columns, sql=lambda: export_cache.member_sql(WIDE_FILE, bits()), cached=True)
            )
        elif sql:
            columns = _wide_parts(spec)[0]
            members.append(Member(WIDE_FILE, columns, sql=lambda c=columns: wide_sql(spec, c, mogrify, population())))
        else:
            columns, rows = wide_table(spec)
            members.append(Member(WIDE_FILE, columns, rows=rows))
    return members


ENGINE_SQL, ENGINE_PYTHON = "sql", "python"


def export_zip(
    spec: ExportSpec,
    result: ExportResult | None = None,
    on_done: Callable[[ExportResult], None] | None = None,
    engine: str | None = None,
    cache: bool = True,
) -> Iterator[bytes]:
    """Yield the export zip chunk by chunk; `result` is filled as files complete.

    `engine`: None picks "sql" on PostgreSQL and "python" elsewhere (see `export_members`);
    `cache=False` makes the SQL engine format every cell again instead of reading the export cache.
    """
    from exchange import export_cache  # it builds its rows with this module's queries

    result = result if result is not None else ExportResult()
    sink = _Sink()
    described: list[tuple[str, list[Column]]] = []
    with (
        snapshot() as snapshot_name,
        contextlib.ExitStack() as cleanup,
        zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf,
    ):
        connection = connections[read_alias()]
        engine = engine or (ENGINE_SQL if connection.vendor == "postgresql" else ENGINE_PYTHON)
        mogrify = None
        if engine == ENGINE_SQL:
            connection.ensure_connection()
            mogrify = connection.connection.cursor().mogrify
        package = formats.Package(spec.started_at) if spec.packages else None  # see ExportSpec.packages
        members = export_members(spec, engine, mogrify, cache)
        if any(m.cached for m in members):
            with connection.cursor() as cursor:
                cursor.execute(export_cache.READ_SETTINGS)
        prefetch: _Prefetch | None = None
        for member in members:
            described.append((member.name[:-4], member.columns))
            header = [c.name for c in member.columns]
            if member.sql is not None:
                tap = _package_tap(package, member.name, member.columns) if package else None
                if prefetch is None and snapshot_name and result.files:
                    # after the first file (the population is read by then, the first bytes are out)
                    later = [m for m in members if m.name in PREFETCHED and m.sql is not None]
                    prefetch = cleanup.enter_context(_Prefetch(connection, snapshot_name, later))
                source = prefetch.take(member.name) if prefetch and member.name in PREFETCHED else None
                yield from _copy_member(zf, sink, member, result, spec.started_at, tap, source, connection)
            else:
                rows = package.tee(member.name, member.columns, member.rows) if package else member.rows
                yield from _write_member(zf, sink, member.name, header, rows, result, spec.started_at)
        if any(m.cached for m in members):
            with connection.cursor() as cursor:
                cursor.execute(export_cache.READ_RESET)
        yield from _write_member(
            zf, sink, "data_dictionary.csv", DICTIONARY_HEADER, dictionary_rows(described), result, spec.started_at
        )
        if package is not None:
            yield from formats.write_members(
                zf, sink.take, package, result.files, lambda zf, name: _open_csv(zf, name, spec.started_at)
            )
        manifest = {
            "registry": "Sacroplasty registry",
            "registry_version": settings.REGISTRY_VERSION,
            "exported_by": spec.username,
            "exported_at": spec.started_at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
            "level": spec.level,
            "shape": spec.shape,
            "filters": {k: str(v) for k, v in spec.filters.items() if v},
            "reason": spec.reason,
            "day_reference": "days since the index procedure (procedure_number 1)",
            "statistics_packages": spec.packages,
            "files": result.files,
        }
        info = zipfile.ZipInfo("manifest.json", date_time=spec.started_at.astimezone(datetime.UTC).timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w") as member:
            member.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
    yield sink.take()
    if on_done is not None:
        on_done(result)


def _package_tap(package: Any, name: str, columns: list[Column]) -> Callable[[bytes], None]:
    """Hand a COPY's CSV bytes to the statistics package (exchange/formats.py), which otherwise
    tees Python rows: its tee writes the header (the same line COPY writes first), the bytes after
    that header go to the same spool."""
    for _ in package.tee(name, columns, iter(())):
        pass
    spool = package.files[-1][2].buffer
    skip = len(",".join(c.name for c in columns).encode() + b"\n")

    def write(data: bytes) -> None:
        nonlocal skip
        if skip:
            cut = min(skip, len(data))
            data, skip = data[cut:], skip - cut
        spool.write(data)

    return write


COPY_BLOCK = 256 * 1024  # bytes of COPY output handed over (deflated, hashed, yielded) at a time, and the pipe's size


class _CopyOut:
    """The bytes of `COPY (sql) TO STDOUT WITH CSV HEADER`, streamed in blocks.

    psycopg2's `copy_expert` pushes rows into a file until the COPY ends; a thread runs it
    on the export's own connection (inside its snapshot transaction; the main thread does not
    touch the connection meanwhile) into a pipe, which the export reads block by block. The
    pipe is the bound on memory (a full pipe blocks the COPY until the zip has taken its
    bytes), and each row is written by C code (a buffered file), not a Python call. An
    abandoned download cancels the COPY and drains the pipe until the thread ends; the
    snapshot then rolls back.
    """

    def __init__(self, statement: str, connection: Any = None) -> None:
        self.sql = statement  # the whole COPY ... TO STDOUT
        self.rows = 0
        self.connection = connection or connections[read_alias()]  # the snapshot's

    def __iter__(self) -> Iterator[bytes]:
        connection = self.connection
        raw = connection.connection
        cursor = raw.cursor()
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(AttributeError, OSError):  # Linux: a pipe of one block
            import fcntl

            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, COPY_BLOCK)
        writer = open(write_fd, "wb", buffering=COPY_BLOCK)  # closed by the thread
        reader = open(read_fd, "rb", buffering=0)  # closed below
        errors: list[BaseException] = []

        def run() -> None:
            try:
                cursor.copy_expert(self.sql, writer)
            except BaseException as exc:  # handed to the main thread
                errors.append(exc)
            finally:
                with contextlib.suppress(OSError):
                    writer.close()  # flushes; the reader sees the end

        started = time.monotonic()
        thread = threading.Thread(target=run, name="export-copy", daemon=True)
        thread.start()
        finished = False
        try:
            pending: list[bytes] = []
            size = 0
            while data := reader.read(COPY_BLOCK):
                pending.append(data)
                size += len(data)
                if size >= COPY_BLOCK:
                    yield b"".join(pending)
                    pending.clear()
                    size = 0
            thread.join()
            if errors:
                with connection.wrap_database_errors:
                    raise errors[0]
            if pending:
                yield b"".join(pending)
            finished = True
        finally:
            if not finished and thread.is_alive():  # abandoned mid-file: stop the COPY, drain the pipe
                raw.cancel()
                while reader.read(COPY_BLOCK):
                    pass
            thread.join()
            reader.close()
            self.rows = max(cursor.rowcount, 0) if not errors else 0
            cursor.close()
            if connection.queries_logged:
                connection.queries_log.append({"sql": self.sql, "time": f"{time.monotonic() - started:.3f}"})


# A second connection COPYs these (in the same snapshot) into spool files while the export's own
# connection streams the others, so two database processes work at once; the zip still takes the
# members in order. The two largest after the visits, and the leakages and complications, which
# even out the two connections' work (at 100,000 patients: 2.7 and 2.9 s, BENCHMARKS.md).
PREFETCHED = frozenset({"leakages.csv", "complications.csv", "medications.csv", WIDE_FILE})


class _Spooled:
    """A prefetched member's CSV bytes, read back from its spool file block by block."""

    def __init__(self, spool: Any, rows: int) -> None:
        self.spool, self.rows = spool, rows

    def __iter__(self) -> Iterator[bytes]:
        self.spool.seek(0)
        while block := self.spool.read(COPY_BLOCK):
            yield block


class _Prefetch:
    """COPY `jobs` (members with their SELECT) on a second connection that imports the export's
    snapshot (`SET TRANSACTION SNAPSHOT`: the same rows, whatever was saved since), each into a
    temporary file: the disk holds them, not memory. `take(name)` waits for that file. Closing
    (the export's end, or an abandoned download) cancels the COPY and removes the files."""

    def __init__(self, connection: Any, snapshot_name: str, jobs: list["Member"]) -> None:
        from exchange import export_cache

        self.connection, self.snapshot_name = connection, snapshot_name
        self.jobs = [(m.name, m.copy_statement(), *m.settings()) for m in jobs]  # built here, in the export's thread
        self.settings = SNAPSHOT_SETTINGS + (f"; {export_cache.READ_SETTINGS}" if any(m.cached for m in jobs) else "")
        self.done = {name: threading.Event() for name, *_ in self.jobs}
        self.spooled: dict[str, _Spooled] = {}
        self.error: BaseException | None = None
        self.raw: Any = None
        self.stopping = False

    def __enter__(self) -> "_Prefetch":
        self.raw = self.connection.Database.connect(**self.connection.get_connection_params())
        self.thread = threading.Thread(target=self._run, name="export-prefetch", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            with self.raw.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cursor.execute("SET TRANSACTION SNAPSHOT %s", [self.snapshot_name])
                cursor.execute(self.settings)
                for name, statement, before, after in self.jobs:
                    spool = tempfile.TemporaryFile(prefix="export-")
                    if before:
                        cursor.execute(before)
                    cursor.copy_expert(statement, spool)
                    if after:
                        cursor.execute(after)
                    self.spooled[name] = _Spooled(spool, max(cursor.rowcount, 0))
                    self.done[name].set()
        except BaseException as exc:  # handed to the export's thread by take()
            self.error = exc
        finally:
            for event in self.done.values():
                event.set()

    def take(self, name: str) -> Callable[[], _Spooled]:
        def wait() -> _Spooled:
            self.done[name].wait()
            if name not in self.spooled:
                with self.connection.wrap_database_errors:
                    raise self.error or RuntimeError(f"{name}: not prefetched")
            return self.spooled[name]

        return wait

    def __exit__(self, *exc: Any) -> None:
        if self.thread.is_alive():
            self.raw.cancel()  # an abandoned download: stop the second COPY
        self.thread.join()
        self.raw.close()
        for spooled in self.spooled.values():
            spooled.spool.close()


def csv_compressor() -> Any:
    """The raw deflate stream (wbits -15, as zipfile writes) of a CSV member: ISA-L's, the format
    every unzip reads, made ~3.5x faster than by zlib (BENCHMARKS.md)."""
    return isal_zlib.compressobj(CSV_COMPRESSLEVEL, zlib.DEFLATED, -15)


def _open_csv(zf: zipfile.ZipFile, name: str, when: datetime.datetime) -> Any:
    """A CSV member of the zip open for writing, deflated by `csv_compressor`. zipfile has no hook
    for another deflater; its writer calls `_compressor.compress()` and `.flush()` only (CPython
    3.13's zipfile), and computes the CRC itself."""
    info = zipfile.ZipInfo(name, date_time=when.astimezone(datetime.UTC).timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.compress_level = CSV_COMPRESSLEVEL
    member = zf.open(info, "w", force_zip64=True)
    member._compressor = csv_compressor()
    return member


# The visits file is planned as nested loops in the population's order: its rows come out already
# by rank (a function scan WITH ORDINALITY is sorted by its ordinality, which the planner knows), so
# the ORDER BY is an incremental sort of each patient's few visits, not a sort of 500,000 rows that
# spills to disk; 1.66 -> 1.40 s at 100,000 patients (BENCHMARKS.md). The other files are faster as
# hash joins (the opioids 1.0 -> 1.7 s, the small files 1.5-2.5x slower as nested loops). SET LOCAL
# in the export's snapshot transaction, back to the defaults after the file.
NESTED_LOOP_FILES = frozenset({"followups.csv"})
NESTED_LOOPS = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
JOINS_BACK = "SET LOCAL enable_hashjoin TO DEFAULT; SET LOCAL enable_mergejoin TO DEFAULT"


def _copy_member(
    zf: zipfile.ZipFile,
    sink: _Sink,
    file: Member,
    result: ExportResult,
    when: datetime.datetime,
    tap: Callable[[bytes], None] | None = None,
    source: "Callable[[], _Spooled] | None" = None,
    connection: Any = None,
) -> Iterator[bytes]:
    """One CSV member: COPYed on the export's connection as it is zipped, or, with `source`, read
    from the file the second connection spooled meanwhile (`_Prefetch`)."""
    from exchange import export_cache  # it builds its rows with this module's queries

    digest = hashlib.sha256()
    connection = connection or connections[read_alias()]
    before, after = file.settings() if source is None else ("", "")
    with _open_csv(zf, file.name, when) as member:
        chunk = sink.take()  # the entry's header: the download starts before the database is read
        if chunk:
            yield chunk
        if before:
            with connection.cursor() as cursor:
                cursor.execute(before)
        copy: _CopyOut | _Spooled | export_cache.CachedText
        copy = source() if source is not None else _CopyOut(file.copy_statement(), connection)
        if file.cached:
            copy = export_cache.CachedText(copy, (",".join(c.name for c in file.columns) + "\n").encode())
        for block in copy:
            digest.update(block)
            member.write(block)
            if tap is not None:
                tap(block)
            chunk = sink.take()
            if chunk:
                yield chunk
        if after:
            with connection.cursor() as cursor:
                cursor.execute(after)
    result.files[file.name] = {"rows": copy.rows, "sha256": digest.hexdigest()}
    chunk = sink.take()
    if chunk:
        yield chunk


def _write_member(
    zf: zipfile.ZipFile,
    sink: _Sink,
    name: str,
    header: list[str],
    rows: Iterable[list[Any]],
    result: ExportResult,
    when: datetime.datetime,
) -> Iterator[bytes]:
    digest = hashlib.sha256()
    count = 0

    def counted() -> Iterator[list[Any]]:
        nonlocal count
        for row in rows:
            count += 1
            yield row

    pending: list[str] = []
    size = 0
    with _open_csv(zf, name, when) as member:
        for line in stream_csv(header, counted()):
            pending.append(line)
            size += len(line)
            if size >= FLUSH_CHARS:  # one deflate call per batch, not per line
                data = "".join(pending).encode("utf-8")
                digest.update(data)
                member.write(data)
                pending.clear()
                size = 0
                chunk = sink.take()
                if chunk:
                    yield chunk
        data = "".join(pending).encode("utf-8")
        digest.update(data)
        member.write(data)
    result.files[name] = {"rows": count, "sha256": digest.hexdigest()}
    chunk = sink.take()
    if chunk:
        yield chunk
