"""The case report form (data_dictionary.csv shipped with the app), parsed once.

One source of truth for variable names, types, choices and ranges: the
importer validates against it, the exporter describes its columns with it, and
a contract test checks the models against it.
"""

import csv
import datetime
import functools
import re
from dataclasses import dataclass, fields
from pathlib import Path

DICTIONARY_PATH = Path(__file__).with_name("data_dictionary.csv")

# Bundle files in dependency order (parents before children).
FILES = (
    "sites",
    "consent_versions",
    "patients",
    "consents",
    "procedures",
    "leakages",
    "complications",
    "followups",
    "medications",
)
OPTIONAL_FILES = frozenset({"sites", "consent_versions"})

# Files whose rows carry the registry's row key and version in an identified
# export (sites and consent versions are keyed by their own code / label and
# never updated by an import).
KEYED_FILES = ("patients", "consents", "procedures", "leakages", "complications", "followups", "medications")
KEY_COLUMNS = ("record_id", "record_version")
# Columns added to the dictionary after its first version: a bundle may lack them (read as blank).
LATER_COLUMNS = frozenset({("patients", "email"), ("medications", "route")})

# Columns an export adds to a bundle file beside the CRF's own, as
# (name, label, type, unit). An import ignores them (it recomputes everything).
EXPORT_EXTRA_COLUMNS: dict[str, list[tuple[str, str, str, str]]] = {
    "patients": [
        ("enrolment_year", "Year of enrolment", "integer", ""),
        ("imaging_to_procedure_days", "Imaging to index procedure", "integer", "days"),
        ("symptoms_to_procedure_months", "Symptom onset to index procedure (days / 30.4375)", "decimal", "months"),
    ],
    "consents": [("day", "Days from the index procedure to signing", "integer", "days")],
    "procedures": [
        ("day", "Days from the index procedure", "integer", "days"),
        ("hospital_stay_days", "Hospital stay (discharge - admission)", "integer", "days"),
        ("lesion_count", "Lesions treated (one per level)", "integer", ""),
    ],
    "complications": [("day", "Days from the index procedure to onset", "integer", "days")],
    "followups": [
        ("day", "Days from the index procedure to the visit", "integer", "days"),
        ("in_window", "Visit date inside its window", "yesno", ""),
        ("mme_factor_table", "MME conversion factors used", "text", ""),
    ],
    "medications": [("mme_factor", "MME conversion factor (blank: none)", "decimal", "MME per unit of dose")],
}
EXPORT_ONLY_COLUMNS: dict[str, frozenset[str]] = {
    file: frozenset(name for name, *_ in columns) for file, columns in EXPORT_EXTRA_COLUMNS.items()
}


@dataclass(frozen=True)
class Variable:
    file: str
    name: str
    label: str
    type: str
    choices: tuple[tuple[str, str], ...]
    choices_text: str
    unit: str
    min: str
    max: str
    required: str
    identifier: str
    note: str

    def __hash__(self) -> int:
        # Computed once: the import's cell parser looks a variable up by it for every cell (a frozen
        # dataclass would hash its twelve fields, the choices among them, on each call).
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash(tuple(getattr(self, f.name) for f in fields(self)))
            object.__setattr__(self, "_hash", cached)
        return cached

    @property
    def is_derived(self) -> bool:
        return self.required == "derived"

    @property
    def is_key(self) -> bool:
        """The registry's row key or version (identified exports; import_bundle --update)."""
        return self.name in KEY_COLUMNS

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(code for code, _ in self.choices)


def parse_choices(text: str) -> tuple[tuple[str, str], ...]:
    """ "M, Male | F, Female" -> (("M", "Male"), ("F", "Female")); text without codes -> ()."""
    if "," not in text:
        return ()
    pairs = []
    for part in text.split("|"):
        code, _, label = part.partition(",")
        pairs.append((code.strip(), label.strip()))
    return tuple(pairs)


@functools.cache
def variables() -> tuple[Variable, ...]:
    with DICTIONARY_PATH.open(newline="", encoding="utf-8") as fh:
        return tuple(
            Variable(
                file=row["file"],
                name=row["variable"],
                label=row["label"],
                type=row["type"],
                choices=parse_choices(row["choices"]),
                choices_text=row["choices"],
                unit=row["unit"],
                min=row["min"],
                max=row["max"],
                required=row["required"],
                identifier=row["identifier"],
                note=row["note"],
            )
            for row in csv.DictReader(fh)
        )


@functools.cache
def variables_for(file: str) -> tuple[Variable, ...]:
    """The CRF variables of one bundle file, in dictionary (= column) order."""
    result = tuple(v for v in variables() if v.file == file)
    if file == "medications":  # "same codes as followups.timepoint"
        timepoint = variable("followups", "timepoint")
        result = tuple(v if v.name != "timepoint" else _with_choices(v, timepoint.choices) for v in result)
    return result


def _with_choices(v: Variable, choices: tuple[tuple[str, str], ...]) -> Variable:
    return Variable(**{**v.__dict__, "choices": choices})


def dictionary_labels() -> list[str]:
    """Every label meant for people, once each, in dictionary order: variables', choices' and the export's
    own columns' (exchange/dictionary_labels.py marks them for translation)."""
    seen: dict[str, None] = {}
    for v in variables():
        seen.setdefault(v.label)
        for _code, label in v.choices:
            seen.setdefault(label)
    for columns in EXPORT_EXTRA_COLUMNS.values():
        for _name, label, _type, _unit in columns:
            seen.setdefault(label)
    return [label for label in seen if label]


def variable(file: str, name: str) -> Variable:
    for v in variables():
        if v.file == file and v.name == name:
            return v
    raise KeyError(f"{file}.{name}")


def bound(text: str, today: datetime.date | None = None) -> object:
    """A dictionary min/max as a value: number, date, "today", or None."""
    if not text:
        return None
    if text == "today":
        return today or today()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return datetime.date.fromisoformat(text)
    return float(text)
