"""Export the registry as a zip, streamed: the CSV bundle, a wide analysis file,
the data dictionary of the exported columns and a manifest.

Every file is a generator of rows read with `.iterator()` (one query per file,
a server-side cursor on PostgreSQL), written through the one CSV guard
(`registry.csv_safety`) into a zip that is itself yielded chunk by chunk, so
memory stays flat whatever the number of patients. The view and the
`export_bundle` command use the same `export_zip` generator.

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
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, DecimalField, F, IntegerField, OuterRef, QuerySet, Subquery, Value, When
from django.utils import timezone

from accounts.models import Site
from exchange import dictionary, formats
from exchange.dictionary import Variable
from outcomes.cohort import filtered_patients
from outcomes.models import FollowUp, Medication, Timepoint
from patients.models import Consent, ConsentVersion, Patient
from procedures.models import Complication, Leakage, Procedure
from registry.csv_safety import stream_csv
from registry.scoring import FACTOR_ROUTE, MME_FACTORS, days_between, in_window, months_between

IDENTIFIED, DEIDENTIFIED = "identified", "deidentified"
SHAPE_BOTH, SHAPE_LONG, SHAPE_WIDE = "both", "long", "wide"
AGE_CAP = 90
CHUNK = 2000  # rows per server-side cursor fetch
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
        out.append(Column(name, _extra_getter(file, name), label, type_, unit, note="Added by the export"))
    return out


def year_name(variable: str) -> str:
    return variable[: -len("_date")] + "_year" if variable.endswith("_date") else variable + "_year"


def _columns_for(var: Variable, spec: ExportSpec) -> list[Column]:
    def described(name: str, get: Callable[[dict[str, Any]], Any], **kw: Any) -> Column:
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
        return Column(name, get, **{**base, **kw})

    key = var.name
    if var.is_key:
        if not spec.identified:
            return []
        source = "id" if key == "record_id" else "version"
        return [described(key, lambda r: r[source])]
    if spec.identified:
        return [described(key, lambda r: r[key])]
    if var.identifier in ("direct", "free_text") or (var.file, key) in DEIDENTIFIED_DROPPED_TEXT:
        return []
    if var.type == "date" and not var.identifier:  # a date about the registry (consent version periods)
        return [
            described(
                year_name(key),
                lambda r: r[key].year if r[key] else None,
                type="integer",
                unit="year",
                min="",
                max="",
                note=f"De-identified from {key}: the calendar year only",
            )
        ]
    if not var.identifier:
        if key == "age_at_enrolment":
            return [described(key, lambda r: _capped_age(r[key]), note="Ages over 89 shown as 90")]
        return [described(key, lambda r: r[key])]
    if (var.file, key) in DEIDENTIFIED_DROPPED_OFFSETS:
        return []
    # a date about a person: days since the index procedure
    return [
        described(
            day_name(key),
            lambda r: _offset(r[key], r["index_date"]),
            type="integer",
            unit="days since the index procedure",
            min="",
            max="",
            identifier="",
            note=f"De-identified from {key}",
        )
    ]


def _extra_getter(file: str, name: str) -> Callable[[dict[str, Any]], Any]:
    dated = {
        "consents": "signed_date",
        "procedures": "procedure_date",
        "complications": "onset_date",
        "followups": "visit_date",
    }
    if name == "day":
        return lambda r: _offset(r[dated[file]], r["index_date"])
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


def _sources(spec: ExportSpec) -> dict[str, Callable[[], Iterator[dict[str, Any]]]]:
    patients = filtered_patients(spec.user, spec.filters)
    ids = patients.values("pk")
    return {
        "sites": lambda: _rows(Site.objects.filter(pk__in=patients.values("site_id")), ["code"]),
        "consent_versions": lambda: _rows(
            ConsentVersion.objects.filter(consents__patient__in=ids).distinct(), ["version"]
        ),
        "patients": lambda: _rows(patients, ["study_id"], site_code=F("site__code"), index_date=_index_date("pk")),
        "consents": lambda: _rows(
            Consent.objects.filter(patient__in=ids),
            ["patient__study_id", "signed_date", "id"],
            study_id=F("patient__study_id"),
            version_label=F("consent_version__version"),
            index_date=_index_date("patient_id"),
        ),
        "procedures": lambda: _rows(
            Procedure.objects.filter(patient__in=ids),
            ["patient__study_id", "procedure_number"],
            study_id=F("patient__study_id"),
            index_date=_index_date("patient_id"),
        ),
        "leakages": lambda: _rows(
            Leakage.objects.filter(procedure__patient__in=ids),
            ["procedure__patient__study_id", "procedure__procedure_number", "site"],
            study_id=F("procedure__patient__study_id"),
            procedure_number=F("procedure__procedure_number"),
        ),
        "complications": lambda: _rows(
            Complication.objects.filter(procedure__patient__in=ids),
            ["procedure__patient__study_id", "procedure__procedure_number", "onset_date", "type", "id"],
            study_id=F("procedure__patient__study_id"),
            procedure_number=F("procedure__procedure_number"),
            index_date=_index_date("procedure__patient_id"),
        ),
        "followups": lambda: _rows(
            FollowUp.objects.filter(patient__in=ids),
            ["patient__study_id", "timepoint_order"],
            study_id=F("patient__study_id"),
            index_date=_index_date("patient_id"),
            timepoint_order=_timepoint_order(),
        ),
        "medications": lambda: _rows(
            Medication.objects.filter(followup__patient__in=ids),
            ["followup__patient__study_id", "timepoint_order", "id"],
            study_id=F("followup__patient__study_id"),
            timepoint=F("followup__timepoint"),
            timepoint_order=_timepoint_order("followup__timepoint"),
        ),
    }


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


def wide_table(spec: ExportSpec) -> tuple[list[Column], Iterator[list[Any]]]:
    """One row per patient: characteristics, index procedure, then each measure at each time point."""
    sources = _sources(spec)
    patient_cols = [
        c
        for c in crf_columns("patients", spec)
        if c.identifier not in ("direct", "free_text") and c.name not in dictionary.KEY_COLUMNS
    ]
    procedure_keep = (
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
    procedure_cols = [c for c in crf_columns("procedures", spec) if c.name in procedure_keep]
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
            )
            for c in procedure_cols
        ],
    ]
    for tp in Timepoint.values:
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
                )
            )

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


@contextlib.contextmanager
def snapshot() -> Iterator[None]:
    """Read every file from one snapshot, so the files agree while nurses keep entering data.

    On PostgreSQL the outermost export transaction is REPEATABLE READ, READ ONLY;
    inside a transaction its server-side cursors also stream rows as they are
    fetched instead of being materialised WITH HOLD. JIT is off for it: compiling
    each export query cost seconds and saved nothing on these plain scans. An
    abandoned download (GeneratorExit) just rolls the read-only transaction back.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL jit = off")
        yield


def export_zip(
    spec: ExportSpec, result: ExportResult | None = None, on_done: Callable[[ExportResult], None] | None = None
) -> Iterator[bytes]:
    """Yield the export zip chunk by chunk; `result` is filled as files complete."""
    result = result if result is not None else ExportResult()
    sink = _Sink()
    described: list[tuple[str, list[Column]]] = []
    with snapshot(), zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        plan: list[tuple[str, list[Column], Iterator[list[Any]]]] = []
        if spec.shape in (SHAPE_BOTH, SHAPE_LONG):
            sources = _sources(spec)
            for file in dictionary.FILES:
                columns, rows = table(file, spec, sources[file])
                plan.append((f"{file}.csv", columns, rows))
        if spec.shape in (SHAPE_BOTH, SHAPE_WIDE):
            columns, rows = wide_table(spec)
            plan.append((WIDE_FILE, columns, rows))
        package = formats.Package(spec.started_at)  # SPSS, Stata and R files of the same CSVs (exchange/formats.py)
        for name, columns, rows in plan:
            described.append((name[:-4], columns))
            rows = package.tee(name, columns, rows)
            yield from _write_member(zf, sink, name, [c.name for c in columns], rows, result, spec.started_at)
        yield from _write_member(
            zf, sink, "data_dictionary.csv", DICTIONARY_HEADER, dictionary_rows(described), result, spec.started_at
        )
        when = spec.started_at.astimezone(datetime.UTC).timetuple()[:6]
        yield from formats.write_members(zf, sink.take, package, result.files, when)
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
            "files": result.files,
        }
        info = zipfile.ZipInfo("manifest.json", date_time=spec.started_at.astimezone(datetime.UTC).timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w") as member:
            member.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
    yield sink.take()
    if on_done is not None:
        on_done(result)


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

    info = zipfile.ZipInfo(name, date_time=when.astimezone(datetime.UTC).timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    pending: list[str] = []
    size = 0
    with zf.open(info, "w", force_zip64=True) as member:
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
