"""Import a CSV bundle (folder or zip) all or nothing.

Three passes: read every file and check its columns; parse every cell against
the data dictionary and check the rows against each other and the registry;
then build the model instances, `full_clean` them (the models' own rules:
age, visit windows, discharge after admission...) and write them in one
transaction. Any problem in any pass writes nothing; the report names file,
row (line of the file, the header being row 1), variable, value and message.
"""

import csv
import datetime
import io
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

from accounts.models import Site
from audit.models import AuditEvent
from audit.services import (
    change_event,
    has_version_token,
    owner_keys,
    record_deleted,
    record_event,
    record_updated,
    snapshot,
)
from exchange import dictionary
from exchange.dictionary import Variable
from outcomes.models import FollowUp, Medication
from patients.models import Consent, ConsentVersion, Patient
from procedures.models import Complication, Leakage, Procedure
from registry import dates
from registry.fields import join_codes

MAX_UNCOMPRESSED_BYTES = 2 * 1024**3  # refuse zip bombs before reading them
INTEGER = re.compile(r"[+-]?\d+")
DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Problem:
    file: str
    row: int | None
    variable: str
    value: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}.csv" + (f", row {self.row}" if self.row else "")
        what = f", {self.variable}" if self.variable else ""
        value = f" = {self.value!r}" if self.value else ""
        return f"{where}{what}{value}: {self.message}"


class BundleError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the bundle; nothing was imported")


@dataclass
class Row:
    file: str
    line: int
    raw: dict[str, str]
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportResult:
    counts: dict[str, int]  # rows created per file
    created_sites: list[str]
    created_versions: list[str]
    updated: dict[str, int] = field(default_factory=dict)  # rows changed per file (--update)


# --------------------------------------------------------------------------- reading


def _decode(name: str, data: bytes, problems: list[Problem]) -> str | None:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(
            Problem(
                name,
                None,
                "",
                "",
                f"the file is not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8 CSV",
            )
        )
        return None


def read_sources(path: Path) -> dict[str, bytes]:
    """The raw bytes of each bundle file found in a folder or a zip (root or one folder)."""
    wanted = {f"{name}.csv" for name in dictionary.FILES}
    found: dict[str, bytes] = {}
    if path.is_dir():
        candidates = [p for p in path.iterdir() if p.name in wanted]
        if not candidates:
            subdirs = [p for p in path.iterdir() if p.is_dir()]
            if len(subdirs) == 1:
                candidates = [p for p in subdirs[0].iterdir() if p.name in wanted]
        for p in candidates:
            found[p.name[:-4]] = p.read_bytes()
        return found
    if not zipfile.is_zipfile(path):
        raise BundleError([Problem(path.name, None, "", "", "not a folder or a zip file")])
    with zipfile.ZipFile(path) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
        if sum(i.file_size for i in infos) > MAX_UNCOMPRESSED_BYTES:
            raise BundleError([Problem(path.name, None, "", "", "the zip expands to more than 2 GiB; refused")])
        by_folder: dict[str, list[zipfile.ZipInfo]] = defaultdict(list)
        for info in infos:
            parts = info.filename.split("/")
            if len(parts) <= 2 and parts[-1] in wanted:
                by_folder["/".join(parts[:-1])].append(info)
        if len(by_folder) > 1:
            raise BundleError(
                [
                    Problem(
                        path.name,
                        None,
                        "",
                        "",
                        f"bundle files are in several folders ({', '.join(sorted(by_folder))}); use one",
                    )
                ]
            )
        for info in next(iter(by_folder.values()), []):
            found[info.filename.split("/")[-1][:-4]] = zf.read(info)
    return found


def _read_table(name: str, text: str, problems: list[Problem]) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        problems.append(Problem(name, 1, "", "", "the file is empty: it needs at least the header row"))
        return []
    except csv.Error as exc:
        problems.append(Problem(name, 1, "", "", f"unreadable CSV: {exc}"))
        return []
    known = {v.name for v in dictionary.variables_for(name)}
    allowed = known | dictionary.EXPORT_ONLY_COLUMNS.get(name, frozenset())
    seen: set[str] = set()
    for col in header:
        if col in seen:
            problems.append(Problem(name, 1, col, "", "the column appears twice"))
        seen.add(col)
        if col not in allowed:
            problems.append(Problem(name, 1, col, "", "unknown column (not in the data dictionary for this file)"))
    for v in dictionary.variables_for(name):
        if not v.is_derived and v.name not in seen:
            problems.append(Problem(name, 1, v.name, "", "required column is missing"))
    rows = []
    try:
        for line, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                problems.append(
                    Problem(name, line, "", "", f"the row has {len(cells)} cells; the header has {len(header)}")
                )
                continue
            rows.append(Row(name, line, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        problems.append(Problem(name, reader.line_num, "", "", f"unreadable CSV: {exc}"))
    return rows


# --------------------------------------------------------------------------- cells


def parse_cell(var: Variable, raw: str, today: datetime.date) -> tuple[Any, str]:
    """(value, "") or (None, message). Blank is None."""
    text = raw.strip()
    if text == "":
        return None, ""
    kind = var.type
    if kind == "text":
        return text, ""
    if kind == "yesno":
        if text.lower() not in ("yes", "no"):
            return None, "must be yes or no"
        return text.lower() == "yes", ""
    if kind == "choice":
        if var.choices and text not in var.codes:
            return None, f"unknown code; expected one of {', '.join(var.codes)}"
        return text, ""
    if kind == "multichoice":
        codes = text.split("|")
        if len(set(codes)) != len(codes):
            return None, "a code is listed twice"
        try:
            return join_codes(codes, var.choices), ""
        except ValueError as exc:
            return None, str(exc)
    value: Any
    if kind == "integer":
        if not INTEGER.fullmatch(text):
            return None, "must be a whole number"
        value = int(text)
    elif kind == "decimal":
        if not DECIMAL.fullmatch(text):
            return None, "must be a number with a dot as decimal separator"
        try:
            value = Decimal(text)
        except InvalidOperation:
            return None, "must be a number"
    elif kind == "date":
        if not ISO_DATE.fullmatch(text):
            return None, "must be a date written YYYY-MM-DD"
        try:
            value = datetime.date.fromisoformat(text)
        except ValueError:
            return None, "is not a real calendar date"
    else:  # pragma: no cover - the dictionary has no other type
        return text, ""
    low, high = dictionary.bound(var.min, today), dictionary.bound(var.max, today)
    if low is not None and value < low:  # type: ignore[operator]
        return None, f"below the minimum {var.min}"
    if high is not None and value > high:  # type: ignore[operator]
        return None, "in the future" if var.max == "today" else f"above the maximum {var.max}"
    return value, ""


CONDITION = re.compile(r"if (\w+)(?:\s*=\s*(\w+)|\s+in\s+\(([^)]*)\))?$")


def is_required(var: Variable, values: dict[str, Any]) -> bool:
    if var.required == "y":
        return True
    match = CONDITION.fullmatch(var.required)
    if not match:
        return False
    other, equals, among = match.groups()
    current = values.get(other)
    if equals is not None:
        return current == equals
    if among is not None:
        return current in {c.strip() for c in among.split(",")}
    return current not in (None, "")


def _parse_rows(rows: list[Row], today: datetime.date, problems: list[Problem]) -> None:
    for row in rows:
        variables = [v for v in dictionary.variables_for(row.file) if not v.is_derived]
        for var in variables:
            raw = row.raw.get(var.name, "")
            value, message = parse_cell(var, raw, today)
            if message:
                problems.append(Problem(row.file, row.line, var.name, raw, message))
            row.values[var.name] = value
        for var in variables:
            if (
                row.values.get(var.name) is None
                and not row.raw.get(var.name, "").strip()
                and is_required(var, row.values)
            ):
                condition = "" if var.required == "y" else f" ({var.required})"
                problems.append(Problem(row.file, row.line, var.name, "", f"is required{condition}"))


# --------------------------------------------------------------------------- the importer


class _Import:
    def __init__(self, tables: dict[str, list[Row]], *, user: Any, source: str, update_reason: str = "") -> None:
        self.tables = tables
        self.user = user
        self.source = source
        self.update_reason = update_reason  # non-empty: study IDs already in the registry are updated
        self.problems: list[Problem] = []
        self.sites: dict[str, Site] = {s.code: s for s in Site.objects.all()}
        self.versions: dict[str, ConsentVersion] = {v.version: v for v in ConsentVersion.objects.all()}
        self.new_sites: list[Site] = []
        self.new_versions: list[ConsentVersion] = []
        self.patients: dict[str, Patient] = {}
        self.procedures: dict[tuple[str, int], Procedure] = {}
        self.procedure_rows: dict[tuple[str, int], Row] = {}
        self.followups: dict[tuple[str, str], FollowUp] = {}
        self.children: dict[str, list[tuple[Row, models.Model]]] = defaultdict(list)
        self.bundle_ids = {r.values.get("study_id") for r in tables.get("patients", [])}

    def problem(self, row: Row, variable: str, message: str) -> None:
        self.problems.append(Problem(row.file, row.line, variable, row.raw.get(variable, ""), message))

    def clean(
        self, row: Row, instance: models.Model, renames: dict[str, str] | None = None, exclude: Iterable[str] = ()
    ) -> bool:
        try:
            instance.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            for field_name, messages in exc.message_dict.items():
                variable = (renames or {}).get(field_name, field_name)
                if variable == "__all__":
                    variable = ""
                for message in messages:
                    self.problem(row, variable, message.rstrip("."))
            return False
        return True

    def unique(self, rows: list[Row], key_vars: tuple[str, ...], what: str) -> list[Row]:
        seen: dict[tuple[Any, ...], int] = {}
        kept = []
        for row in rows:
            key = tuple(row.values.get(k) for k in key_vars)
            if None in key:
                continue
            if key in seen:
                self.problem(row, key_vars[-1], f"duplicate {what}: already given in row {seen[key]}")
                continue
            seen[key] = row.line
            kept.append(row)
        return kept

    # Each step builds and checks the instances of one file.

    def load_sites(self) -> None:
        for row in self.unique(self.tables.get("sites", []), ("code",), "site code"):
            code = row.values["code"]
            if code in self.sites:
                continue
            site = Site(code=code, name=row.values["name"] or "")
            if self.clean(row, site, exclude=["id"]):
                self.sites[code] = site
                self.new_sites.append(site)

    def load_versions(self) -> None:
        for row in self.unique(self.tables.get("consent_versions", []), ("version",), "consent version"):
            v = row.values
            existing = self.versions.get(v["version"])
            if existing is not None:
                if (existing.effective_from, existing.effective_to) != (v["effective_from"], v["effective_to"]):
                    self.problem(
                        row,
                        "effective_from",
                        f"version {existing.version} is already in the registry with a different period",
                    )
                continue
            version = ConsentVersion(
                version=v["version"], effective_from=v["effective_from"], effective_to=v["effective_to"]
            )
            if self.clean(row, version, exclude=["blank_form"]):
                self.versions[version.version] = version
                self.new_versions.append(version)

    def load_patients(self) -> None:
        rows = self.unique(self.tables.get("patients", []), ("study_id",), "study ID")
        existing = set(
            Patient.objects.filter(study_id__in=[r.values["study_id"] for r in rows]).values_list("study_id", flat=True)
        )
        mrns = {(site, mrn): sid for site, mrn, sid in Patient.objects.values_list("site__code", "mrn", "study_id")}
        seen_mrn: dict[tuple[str, str], int] = {}
        for row in rows:
            v = row.values
            if v["study_id"] in existing and not self.update_reason:
                self.problem(
                    row,
                    "study_id",
                    "this study ID is already in the registry; the bundle is refused as a whole "
                    "(import_bundle --update --reason ... updates existing patients)",
                )
                continue
            site = self.sites.get(v["site"] or "")
            if site is None:
                if v["site"]:
                    self.problem(row, "site", "unknown site code: not in sites.csv nor in the registry")
                continue
            key = (site.code, v["mrn"])
            if mrns.get(key, v["study_id"]) != v["study_id"]:
                self.problem(row, "mrn", f"a patient of site {site.code} with this MRN is already in the registry")
                continue
            if key in seen_mrn:
                self.problem(row, "mrn", f"the same MRN is used by row {seen_mrn[key]} of the same site")
                continue
            seen_mrn[key] = row.line
            fields = {k: val for k, val in v.items() if k != "site"}
            for name in ("primary_tumour_other", "notes"):
                fields[name] = fields[name] or ""
            patient = Patient(site=site, **fields)
            if self.clean(row, patient, exclude=["id", "site"]):
                self.patients[patient.study_id] = patient

    def patient_for(self, row: Row) -> Patient | None:
        """The bundle's patient a row belongs to; an orphan row is a problem."""
        study_id = row.values.get("study_id")
        patient = self.patients.get(study_id or "")
        if patient is None and study_id is not None and study_id not in self.bundle_ids:
            self.problem(row, "study_id", "orphan row: this study ID is not in patients.csv")
        return patient

    def load_consents(self) -> set[str]:
        consented: set[str] = set()
        for row in self.tables.get("consents", []):
            patient = self.patient_for(row)
            v = row.values
            version = self.versions.get(v["consent_version"] or "")
            if v["consent_version"] and version is None:
                self.problem(
                    row, "consent_version", "unknown consent version: not in consent_versions.csv nor in the registry"
                )
            if patient is None or version is None:
                continue
            fields = {k: val for k, val in v.items() if k not in ("study_id", "consent_version")}
            for name in ("document_sha256", "withdrawal_scope", "withdrawal_reason"):
                fields[name] = fields[name] or ""
            consent = Consent(patient=patient, consent_version=version, **fields)
            if self.clean(
                row,
                consent,
                {"consent_version": "consent_version"},
                exclude=["id", "patient", "consent_version", "document"],
            ):
                self.children["consents"].append((row, consent))
                if consent.scope_registry:
                    consented.add(patient.study_id)
        return consented

    def load_procedures(self) -> None:
        for row in self.unique(
            self.tables.get("procedures", []), ("study_id", "procedure_number"), "procedure number for this patient"
        ):
            patient = self.patient_for(row)
            if patient is None:
                continue
            fields = {k: val for k, val in row.values.items() if k != "study_id"}
            for name in ("cement_product", "cement_viscosity"):
                fields[name] = fields[name] or ""
            fields["needle_gauge"] = int(fields["needle_gauge"]) if fields["needle_gauge"] else None
            procedure = Procedure(patient=patient, **fields)
            if self.clean(row, procedure, exclude=["id", "patient"]):
                self.procedures[(patient.study_id, procedure.procedure_number)] = procedure
                self.procedure_rows[(patient.study_id, procedure.procedure_number)] = row
                if procedure.procedure_number == 1:
                    patient.index_procedure_date = procedure.procedure_date

    def procedure_for(self, row: Row) -> Procedure | None:
        if self.patient_for(row) is None:
            return None
        key = (row.values["study_id"], row.values.get("procedure_number"))
        procedure = self.procedures.get(key)  # type: ignore[arg-type]
        if procedure is None and key[1] is not None:
            self.problem(row, "procedure_number", "orphan row: no such procedure for this patient in procedures.csv")
        return procedure

    def load_procedure_children(self) -> None:
        for row in self.unique(
            self.tables.get("leakages", []), ("study_id", "procedure_number", "site"), "leakage site"
        ):
            procedure = self.procedure_for(row)
            if procedure is None:
                continue
            leakage = Leakage(
                procedure=procedure,
                site=row.values["site"],
                symptomatic=row.values["symptomatic"],
                treatment_required=row.values["treatment_required"],
            )
            if not procedure.leakage:
                self.problem(row, "site", "procedures.csv says this procedure had no leakage (leakage = no)")
            elif self.clean(row, leakage, exclude=["id", "procedure"]):
                self.children["leakages"].append((row, leakage))
        leaked = {(r.values["study_id"], r.values["procedure_number"]) for r in self.tables.get("leakages", [])}
        for key, procedure in self.procedures.items():
            if procedure.leakage and key not in leaked:
                row = self.procedure_rows[key]
                self.problem(row, "leakage", "leakage = yes needs one row per leakage site in leakages.csv")
        for row in self.tables.get("complications", []):
            procedure = self.procedure_for(row)
            if procedure is None:
                continue
            fields = {k: val for k, val in row.values.items() if k not in ("study_id", "procedure_number")}
            for name in ("severity", "description"):
                fields[name] = fields[name] or ""
            complication = Complication(procedure=procedure, **fields)
            if self.clean(row, complication, exclude=["id", "procedure"]):
                self.children["complications"].append((row, complication))

    def load_followups(self) -> None:
        meds: dict[tuple[str, str], list[tuple[Row, Medication]]] = defaultdict(list)
        for row in self.tables.get("medications", []):
            key = (row.values.get("study_id"), row.values.get("timepoint"))
            meds[key].append((row, Medication(drug=row.values["drug"], daily_dose=row.values["daily_dose"])))  # type: ignore[index]
        for row in self.unique(
            self.tables.get("followups", []), ("study_id", "timepoint"), "visit for this patient and timepoint"
        ):
            patient = self.patient_for(row)
            if patient is None:
                continue
            if "index_procedure_date" not in patient.__dict__:
                patient.index_procedure_date = None
            fields = {k: val for k, val in row.values.items() if k != "study_id"}
            fields["deviation_note"] = fields["deviation_note"] or ""
            visit = FollowUp(patient=patient, **fields)
            visit_meds = meds.pop((patient.study_id, visit.timepoint), [])
            if visit_meds and visit.status != FollowUp.Status.COMPLETED:
                for med_row, _ in visit_meds:
                    self.problem(
                        med_row,
                        "timepoint",
                        f"medications can only be recorded for a completed visit (this one is {visit.status})",
                    )
            visit.compute_derived((m.drug, m.daily_dose) for _, m in visit_meds)
            if self.clean(row, visit, exclude=["id", "patient"]):
                self.followups[(patient.study_id, visit.timepoint)] = visit
                for med_row, med in visit_meds:
                    med.followup = visit
                    if self.clean(med_row, med, exclude=["id", "followup"]):
                        self.children["medications"].append((med_row, med))
        for (study_id, timepoint), orphans in meds.items():
            for row, _ in orphans:
                if study_id is not None and timepoint is not None and self.patient_for(row) is not None:
                    self.problem(row, "timepoint", "orphan row: no such visit for this patient in followups.csv")

    def check_consent(self, consented: set[str]) -> None:
        clinical = [*self.tables.get("procedures", []), *self.tables.get("followups", [])]
        for row in clinical:
            study_id = row.values.get("study_id")
            if study_id in self.patients and study_id not in consented:
                self.problem(row, "study_id", "no consent to registry use is recorded for this patient in consents.csv")

    def run(self) -> None:
        self.load_sites()
        self.load_versions()
        self.load_patients()
        consented = self.load_consents()
        self.load_procedures()
        self.load_procedure_children()
        self.load_followups()
        self.check_consent(consented)

    def write(self) -> tuple[dict[str, int], dict[str, int]]:
        """Insert the new rows (and, when updating, change the existing ones); (created, updated) per file."""
        batches: list[tuple[str, list[models.Model]]] = [
            ("sites", self.new_sites),
            ("consent_versions", self.new_versions),
            ("patients", list(self.patients.values())),
            ("consents", [i for _, i in self.children["consents"]]),
            ("procedures", list(self.procedures.values())),
            ("leakages", [i for _, i in self.children["leakages"]]),
            ("complications", [i for _, i in self.children["complications"]]),
            ("followups", list(self.followups.values())),
            ("medications", [i for _, i in self.children["medications"]]),
        ]
        existing = _existing_rows(list(self.patients)) if self.update_reason else {}
        created: dict[str, int] = {}
        updated: dict[str, int] = {}
        events: list[AuditEvent] = []
        reason = f"Imported from bundle {self.source}"
        for name, instances in batches:
            if name == "medications" and existing:
                instances = self._replace_changed_medications(instances, existing["medications"])
            new = []
            for instance in instances:
                _refresh_foreign_keys(instance)
                current = existing.get(name, {}).get(_natural_key(name, instance))
                if current is None:
                    new.append(instance)
                elif self._update(instance, current):
                    updated[name] = updated.get(name, 0) + 1
            if new:
                type(new[0]).objects.bulk_create(new, batch_size=1000)
            created[name] = len(new)
            for instance in new:
                study_id, site_code = owner_keys(instance)
                events.append(
                    change_event(
                        action=AuditEvent.Action.CREATE,
                        instance=instance,
                        user=self.user,
                        changes={k: [None, v] for k, v in snapshot(instance).items()},
                        reason=reason,
                        study_id=study_id,
                        site_code=site_code,
                    )
                )
        AuditEvent.objects.bulk_create(events, batch_size=2000)
        return created, updated

    def _update(self, instance: models.Model, current: models.Model) -> bool:
        """Give `instance` the identity of the registry's row; save and audit it if a value changed."""
        instance.pk = current.pk
        for name in KEPT_ON_UPDATE.get(type(instance), ()):
            setattr(instance, name, getattr(current, name))
        before = snapshot(current)
        if before == snapshot(instance):
            return False
        if has_version_token(current):
            instance.version = current.version + 1  # type: ignore[attr-defined]
        instance.save(force_update=True)
        study_id, site_code = owner_keys(instance)
        record_updated(
            instance, before, user=self.user, reason=self.update_reason, study_id=study_id, site_code=site_code
        )
        return True

    def _replace_changed_medications(
        self, medications: list[models.Model], current: dict[tuple[str, str], list[Medication]]
    ) -> list[models.Model]:
        """A visit's opioid list is replaced when it differs from the registry's; an equal one is left alone."""
        by_visit: dict[tuple[str, str], list[Medication]] = {key: [] for key in self.followups}
        for med in medications:
            assert isinstance(med, Medication)
            by_visit[(med.followup.patient.study_id, med.followup.timepoint)].append(med)
        keep: list[models.Model] = []
        for key, new in by_visit.items():  # every visit of the bundle, also those now without opioids
            old = current.get(key, [])
            if sorted((m.drug, m.daily_dose) for m in old) == sorted((m.drug, m.daily_dose) for m in new):
                continue
            for med in old:
                record_deleted(
                    med,
                    user=self.user,
                    reason=self.update_reason,
                    study_id=key[0],
                    site_code=med.followup.patient.site.code,
                )
                med.delete()
            keep.extend(new)
        return keep


# Fields a bundle does not carry, so an update keeps the registry's value.
KEPT_ON_UPDATE: dict[type, tuple[str, ...]] = {Consent: ("document",)}


def _refresh_foreign_keys(instance: models.Model) -> None:
    """Copy parents' primary keys into the *_id fields (bulk_create does this itself, save() does not)."""
    for f in instance._meta.concrete_fields:
        if f.is_relation and f.is_cached(instance):  # type: ignore[attr-defined]
            setattr(instance, f.name, getattr(instance, f.name))


def _natural_key(file: str, obj: Any) -> tuple[Any, ...] | None:
    """How a bundle row and a registry row are recognised as the same record."""
    keys = {
        "patients": lambda: (obj.study_id,),
        "consents": lambda: (obj.patient.study_id, obj.consent_version.version, obj.signed_date),
        "procedures": lambda: (obj.patient.study_id, obj.procedure_number),
        "leakages": lambda: (obj.procedure.patient.study_id, obj.procedure.procedure_number, obj.site),
        "complications": lambda: (
            obj.procedure.patient.study_id,
            obj.procedure.procedure_number,
            obj.onset_date,
            obj.type,
        ),
        "followups": lambda: (obj.patient.study_id, obj.timepoint),
    }
    return keys[file]() if file in keys else None


def _existing_rows(study_ids: list[str]) -> dict[str, dict[Any, Any]]:
    """The registry's rows of the bundle's patients, by natural key (one query per table)."""
    sids = {"patient__study_id__in": study_ids}
    deep = {"procedure__patient__study_id__in": study_ids}
    tables = {
        "patients": Patient.objects.filter(study_id__in=study_ids).select_related("site"),
        "consents": Consent.objects.filter(**sids).select_related("patient", "consent_version"),
        "procedures": Procedure.objects.filter(**sids).select_related("patient"),
        "leakages": Leakage.objects.filter(**deep).select_related("procedure__patient"),
        "complications": Complication.objects.filter(**deep).select_related("procedure__patient"),
        "followups": FollowUp.objects.filter(**sids).select_related("patient"),
    }
    rows: dict[str, dict[Any, Any]] = {name: {_natural_key(name, o): o for o in qs} for name, qs in tables.items()}
    medications: dict[tuple[str, str], list[Medication]] = defaultdict(list)
    for med in Medication.objects.filter(followup__patient__study_id__in=study_ids).select_related(
        "followup__patient__site"
    ):
        medications[(med.followup.patient.study_id, med.followup.timepoint)].append(med)
    rows["medications"] = medications
    return rows


def read_bundle(path: Path) -> dict[str, list[Row]]:
    """Read and parse every file; raises BundleError with every problem found."""
    problems: list[Problem] = []
    sources = read_sources(path)
    tables: dict[str, list[Row]] = {}
    if "patients" not in sources:
        problems.append(Problem("patients", None, "", "", "the bundle has no patients.csv"))
    for name in dictionary.FILES:
        if name not in sources:
            if name not in dictionary.OPTIONAL_FILES and name != "patients":
                problems.append(
                    Problem(
                        name, None, "", "", f"the bundle has no {name}.csv (a file with only its header row is fine)"
                    )
                )
            continue
        text = _decode(name, sources[name], problems)
        if text is not None:
            tables[name] = _read_table(name, text, problems)
    if problems:
        raise BundleError(problems)
    today = dates.today()
    for rows in tables.values():
        _parse_rows(rows, today, problems)
    if problems:
        raise BundleError(problems)
    return tables


def import_bundle(path: Path | str, *, user: Any = None, update_reason: str = "") -> ImportResult:
    """Validate the whole bundle, then write it in one transaction (or nothing).

    A study ID already in the registry refuses the bundle, unless `update_reason`
    is given: then the registry's rows of those patients are updated where the
    bundle differs (each change audited with the reason), matched by their
    natural keys (procedure number, time point, ...). Rows the bundle does not
    mention are left as they are: an update never deletes, except a visit's
    opioid list, which the bundle's list replaces.
    """
    path = Path(path)
    tables = read_bundle(path)
    job = _Import(tables, user=user, source=path.name, update_reason=update_reason.strip())
    job.run()
    if job.problems:
        raise BundleError(
            sorted(
                job.problems,
                key=lambda p: (dictionary.FILES.index(p.file) if p.file in dictionary.FILES else 99, p.row or 0),
            )
        )
    try:
        with transaction.atomic():
            counts, updated = job.write()
            record_event(
                action=AuditEvent.Action.IMPORT,
                user=user,
                reason=f"Imported from bundle {path.name}" + (f"; update: {update_reason}" if update_reason else ""),
                extra={"counts": counts, "updated": updated},
            )
    except IntegrityError as exc:  # a rule the checks above missed; the database still refused it
        raise BundleError([Problem(path.name, None, "", "", f"the database refused the bundle: {exc}")]) from exc
    return ImportResult(counts, [s.code for s in job.new_sites], [v.version for v in job.new_versions], updated)
