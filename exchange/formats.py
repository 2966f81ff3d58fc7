"""Statistics-package files of an export: SPSS (.sav), Stata (.dta) and an R script.

Built from the CSV bytes the export has already written and the export's own
data dictionary (its `Column`s: name, label, type, unit, choices), so each
package file holds the same cells as its CSV:

- SPSS: one `.sav` per CSV. Numbers are numeric (integer as F.0, decimal as
  F.n with the CSV's places), dates (identified exports only) SPSS dates,
  every other cell the CSV's text. Variable labels are the dictionary's label
  and unit; choice and yes/no variables carry their codes with the
  dictionary's labels as value labels (string value labels); measurement
  levels: scale for measurements, ordinal for ordered codes (visits, small
  integer scales such as ECOG or an ODI section), nominal otherwise. A blank
  text cell is declared user-missing (""), a blank number is system-missing.
- Stata: one `.dta` per CSV. Stata labels only integers, so a choice or
  yes/no variable is stored as an integer: the code itself when every code is
  a whole number (needle gauge 10, 11...), yes = 1 / no = 0, otherwise 1..n
  in the dictionary's order; its value label names the code and its label
  ("M: Male"), so the CSV code is recovered from the label text before ":".
  Blank = missing (.).
- R: `read_registry.R`, base R only, reads each CSV with its column types,
  choice and yes/no columns as factors with the dictionary's levels and
  labels, dates as `Date`, and sets a "label" attribute per column.

`Package` collects the CSVs while the export writes them (a tee over the rows,
written with the same CSV guard) and checks that its copy hashes like the
member in the zip before building anything from it. Each CSV is then read
twice in chunks of CHUNK_ROWS (`survey`: the widths, places and codes the
headers need; then the rows), and the .sav and .dta are written from the same
parsed chunk by `exchange/statwriters.py` (NumPy records, not a Python call
per cell): memory is a chunk whatever the export's size.
"""

import csv
import dataclasses
import datetime
import hashlib
import io
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from exchange.dictionary import parse_choices
from registry.csv_safety import neutralise

SPOOL_BYTES = 16 * 1024 * 1024  # a CSV copy bigger than this goes to a temporary file
STATA_NAME_MAX = 32
STATA_LABEL_MAX = 80
R_SCRIPT = "read_registry.R"
ORDERED_CHOICES = frozenset({"timepoint", "cement_viscosity", "needle_gauge"})
CHOICE_TYPES = ("choice", "yesno")
YESNO = (("yes", "Yes"), ("no", "No"))


class Described(Protocol):
    """A column as the export describes it (exchange.exporter.Column)."""

    name: str
    label: str
    type: str
    unit: str
    choices: str
    max: str


def choices_of(column: Described) -> tuple[tuple[str, str], ...]:
    if column.type == "yesno":
        return YESNO
    if column.type == "choice":
        return parse_choices(column.choices)
    return ()


def variable_label(column: Described) -> str:
    return f"{column.label} ({column.unit})" if column.unit else column.label


def measure(column: Described) -> str:
    if column.type in ("choice", "yesno", "multichoice", "text"):
        base = column.name.rsplit("_", 1)[0] if column.name.startswith("status_") else column.name
        return "ordinal" if column.type == "choice" and base in ORDERED_CHOICES else "nominal"
    if column.type == "integer" and not column.unit and column.max and float(column.max) <= 10:
        return "ordinal"  # ECOG 0-4, an ODI section 0-5, CIRSE grade 1-6, procedure number
    return "scale"


CHUNK_ROWS = 20_000  # rows of a CSV parsed, converted and written at a time: the bound on memory


def _chunks(spool: Any, usecols: Sequence[str] | None = None, numbers: Sequence[str] = ()) -> Iterator[Any]:
    """The CSV in frames of CHUNK_ROWS rows, every cell as the text written (no NA guessing:
    "" stays "", "nan" stays "nan"), but the `numbers` columns parsed as float64 by pandas'
    C parser ("" and "nan" are NaN; any other text is refused with a ValueError)."""
    import pandas as pd

    types = {name: "float64" if name in numbers else str for name in _header(spool)}
    spool.seek(0)
    yield from pd.read_csv(
        spool,
        dtype=types,
        keep_default_na=False,
        na_values={name: ["", "nan"] for name in numbers},
        na_filter=bool(numbers),
        encoding="utf-8",
        chunksize=CHUNK_ROWS,
        usecols=usecols,
    )


def _header(spool: Any) -> list[str]:
    spool.seek(0)
    return next(csv.reader([spool.readline().decode("utf-8")]))


def _by_name(columns: Sequence[Described], header: Sequence[str]) -> list[Described]:
    named = {c.name: c for c in columns}
    if list(named) != list(header):
        raise ValueError(f"CSV header {list(header)[:5]}... does not match the export's columns")
    return [named[name] for name in header]


NUMBER_TYPES = ("integer", "decimal")


def _is_text(column: Described) -> bool:
    return column.type not in (*NUMBER_TYPES, "date")


@dataclasses.dataclass
class Survey:
    """What the header of a statistics file needs from its CSV, read in one pass before the data:
    the rows, each text column's longest value in UTF-8 bytes, each decimal column's places."""

    rows: int
    widths: dict[str, int]
    places: dict[str, int]
    values: dict[str, set[str]]  # every value of each choice column


def survey(spool: Any, cols: Sequence[Described]) -> Survey:
    from exchange.statwriters import Cells

    wanted = [c for c in cols if _is_text(c) or c.type == "decimal"] or list(cols[:1])
    widths = {c.name: 0 for c in cols if _is_text(c)}
    places = {c.name: 0 for c in cols if c.type == "decimal"}
    values: dict[str, set[str]] = {c.name: set() for c in cols if choices_of(c)}
    rows = 0
    for frame in _chunks(spool, [c.name for c in wanted]):
        rows += len(frame)
        for name in widths:
            lengths = Cells.of(frame[name].tolist()).lengths
            widths[name] = max(widths[name], int(lengths.max()) if len(lengths) else 0)
        for name in places:
            places[name] = max(places[name], Cells.of(frame[name].tolist()).places())
        for name, seen in values.items():
            seen.update(frame[name].unique())
    return Survey(rows, widths, places, values)


def _days(values: Any) -> Any:
    """ISO dates as float days since 1970-01-01, NaN for a blank."""
    import numpy as np

    days = values.to_numpy(dtype=str).astype("datetime64[D]")
    return np.where(np.isnat(days), np.nan, days.astype(np.int64).astype(np.float64))


def sav_variables(cols: Sequence[Described], found: Survey) -> list[Any]:
    """The .sav's variables (module docstring): the CSV's names, numbers with the CSV's places,
    dates, and every other column as text with its choices as value labels, "" user-missing."""
    from exchange.statwriters import DATE, NUMBER, SAV_MAX_WIDTH, STRING, Variable

    out = []
    for c in cols:
        common = {"name": c.name, "label": variable_label(c), "measure": measure(c)}
        if c.type in NUMBER_TYPES:
            places = 0 if c.type == "integer" else max(found.places[c.name], 1)
            out.append(Variable(kind=NUMBER, decimals=places, **common))
        elif c.type == "date":
            out.append(Variable(kind=DATE, **common))
        else:
            pairs = choices_of(c)
            width = max([found.widths[c.name], 1, *(len(code.encode()) for code, _ in pairs)])
            if width > SAV_MAX_WIDTH:  # SPSS holds no longer string: cut there, and the label says so
                width = SAV_MAX_WIDTH
                common["label"] += f" [cut at {SAV_MAX_WIDTH:,} bytes in SPSS; whole in the CSV]"
            out.append(Variable(kind=STRING, width=width, value_labels=dict(pairs), blank_is_missing=True, **common))
    return out


def chunk_columns(frame: Any, cols: Sequence[Described]) -> list[Any]:
    """One chunk's columns for the writers: numbers as parsed (float64), dates as days, text as
    `Cells` (encoded once for both files)."""
    from exchange.statwriters import Cells

    return [
        frame[c.name].to_numpy(dtype="float64")
        if c.type in NUMBER_TYPES
        else _days(frame[c.name])
        if c.type == "date"
        else Cells.of(frame[c.name].tolist())
        for c in cols
    ]


def stata_codes(column: Described) -> dict[str, int]:
    """CSV code -> the integer Stata stores (module docstring)."""
    pairs = choices_of(column)
    if column.type == "yesno":
        return {"yes": 1, "no": 0}
    if all(re.fullmatch(r"\d+", code) for code, _ in pairs):
        return {code: int(code) for code, _ in pairs}
    return {code: i for i, (code, _) in enumerate(pairs, start=1)}


def stata_names(header: Sequence[str]) -> dict[str, str]:
    """CSV name -> a Stata name (at most 32 characters, unique)."""
    out: dict[str, str] = {}
    for name in header:
        short = name[:STATA_NAME_MAX]
        n = 1
        while short in out.values():
            suffix = f"_{n}"
            short = name[: STATA_NAME_MAX - len(suffix)] + suffix
            n += 1
        out[name] = short
    return out


def dta_variables(cols: Sequence[Described], found: Survey) -> list[Any]:
    """The .dta's variables (module docstring): Stata names, codes as labelled whole numbers."""
    from exchange.statwriters import DATE, NUMBER, STRING, Variable

    names = stata_names([c.name for c in cols])
    out = []
    for c in cols:
        common = {"name": names[c.name], "label": variable_label(c)[:STATA_LABEL_MAX]}
        codes = stata_codes(c) if choices_of(c) else {}
        if codes:
            unknown = found.values[c.name] - set(codes) - {""}
            if unknown:
                raise ValueError(f"{c.name}: values {sorted(unknown)} are not codes of the dictionary")
            labels = {float(codes[code]): f"{code}: {label}" for code, label in choices_of(c)}
            out.append(Variable(kind=NUMBER, value_labels=labels, **common))
        elif c.type in NUMBER_TYPES:
            out.append(Variable(kind=NUMBER, **common))
        elif c.type == "date":
            out.append(Variable(kind=DATE, **common))
        else:
            out.append(Variable(kind=STRING, width=found.widths[c.name], **common))
    return out


def dta_columns(frame: Any, cols: Sequence[Described], columns: list[Any]) -> list[Any]:
    """`columns` (chunk_columns) with each choice column as its Stata codes."""
    import numpy as np
    import pandas as pd

    out = list(columns)
    for i, c in enumerate(cols):
        codes = stata_codes(c) if choices_of(c) else {}
        if codes:
            index, uniques = pd.factorize(frame[c.name])  # a lookup per distinct code, not per cell
            mapping = {**{k: float(v) for k, v in codes.items()}, "": float("nan")}
            out[i] = np.array([mapping[u] for u in uniques] + [np.nan], dtype=np.float64)[index]
    return out


def _r_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _r_vector(items: Iterable[str]) -> str:
    return "c(" + ", ".join(_r_string(i) for i in items) + ")"


R_CLASSES = {"integer": "integer", "decimal": "numeric"}


def r_script(files: Sequence[tuple[str, Sequence[Described]]]) -> bytes:
    """read_registry.R: `registry <- read_registry("folder of the unzipped export")` (module docstring)."""
    lines = [
        "# Reads the CSV files of a sacroplasty registry export into R data frames",
        "# with their types, factor labels and variable labels (base R only).",
        '# Usage: source("read_registry.R"); registry <- read_registry("path/to/unzipped/export")',
        "#        registry$patients, registry$followups, ...",
        "",
        'read_registry <- function(dir = ".") {',
        "  out <- list()",
    ]
    for file, columns in files:
        classes = [R_CLASSES.get(c.type, "character") for c in columns]
        lines += [
            f"  path <- file.path(dir, {_r_string(file + '.csv')})",
            "  if (file.exists(path)) {",
            "    d <- utils::read.csv(path, colClasses = "
            + _r_vector(classes)
            + ', na.strings = "", encoding = "UTF-8", check.names = FALSE)',
        ]
        for c in columns:
            ref = f"d[[{_r_string(c.name)}]]"
            pairs = choices_of(c)
            if pairs:
                lines.append(
                    f"    {ref} <- factor({ref}, levels = {_r_vector(p[0] for p in pairs)}, "
                    f"labels = {_r_vector(p[1] for p in pairs)})"
                )
            elif c.type == "date":
                lines.append(f"    {ref} <- as.Date({ref})")
            lines.append(f'    attr({ref}, "label") <- {_r_string(variable_label(c))}')
        lines += [f"    out[[{_r_string(file)}]] <- d", "  }"]
    lines += ["  out", "}", ""]
    return "\n".join(lines).encode("utf-8")


class Package:
    """Collects an export's CSVs as they are written, then yields the statistics-package files."""

    def __init__(self, when: datetime.datetime) -> None:
        self.files: list[tuple[str, Sequence[Described], Any]] = []
        self.when = when.astimezone(datetime.UTC)

    def tee(self, name: str, columns: Sequence[Described], rows: Iterable[list[Any]]) -> Iterator[list[Any]]:
        """The rows unchanged, while a copy of the CSV is written (the same guard and dialect)."""
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b")
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="", write_through=True)
        self.files.append((name, columns, text))
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow([c.name for c in columns])
        for row in rows:
            writer.writerow([neutralise(v) for v in row])
            yield row

    def members(self, hashes: dict[str, dict[str, Any]]) -> Iterator[tuple[str, Any]]:
        """(file name, an open binary file of its bytes) of every .sav and .dta, then the R script.
        Each CSV is read twice in chunks (`survey`, then the rows), and both files are written from
        the same parsed chunk: memory is a chunk, whatever the export's size."""
        from exchange.statwriters import DtaWriter, SavWriter

        described = []
        for name, columns, text in self.files:
            text.flush()
            spool = text.detach()
            spool.seek(0)
            digest = hashlib.sha256()
            while block := spool.read(1 << 20):
                digest.update(block)
            if digest.hexdigest() != hashes[name]["sha256"]:
                raise RuntimeError(f"{name}: the copy for the statistics files differs from the CSV written")
            stem = name[: -len(".csv")]
            label = f"Sacroplasty registry: {stem}"
            described.append((stem, columns))
            with spool:
                cols = _by_name(columns, _header(spool))
                found = survey(spool, cols)
                sav, dta = tempfile.TemporaryFile(), tempfile.TemporaryFile()
                sav_writer = SavWriter(sav, sav_variables(cols, found), found.rows, label[:64], self.when)
                dta_writer = DtaWriter(dta, dta_variables(cols, found), found.rows, label[:80], self.when)
                for frame in _chunks(spool, numbers=[c.name for c in cols if c.type in NUMBER_TYPES]):
                    cells = chunk_columns(frame, cols)
                    sav_writer.write(cells)
                    dta_writer.write(dta_columns(frame, cols, cells))
                sav_writer.close()
                dta_writer.close()
            for member, out in ((f"spss/{stem}.sav", sav), (f"stata/{stem}.dta", dta)):
                with out:
                    out.seek(0)
                    yield member, out
        yield R_SCRIPT, io.BytesIO(r_script(described))


def write_members(
    zf: zipfile.ZipFile,
    take: Any,
    package: Package,
    files: dict[str, dict[str, Any]],
    open_member: Any,
) -> Iterator[bytes]:
    """Add the package files to the export zip (hashed into `files`, i.e. the manifest), each
    copied in blocks into `open_member(zf, name)`; yield the zip's bytes as they come."""
    for name, source in package.members(files):
        digest = hashlib.sha256()
        with open_member(zf, name) as member:
            while block := source.read(1 << 20):
                digest.update(block)
                member.write(block)
                chunk = take()
                if chunk:
                    yield chunk
        files[name] = {"sha256": digest.hexdigest()}
        chunk = take()
        if chunk:
            yield chunk


# ----------------------------------------------------------------------------- CDISC ODM 1.3.2

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
ODM_FILE = "cdisc_odm.xml"
ODM_TYPES = {"integer": "integer", "decimal": "float", "date": "date"}
# (file, its study event, repeating event?, repeating item group?, keys linking a row to its event)
ODM_FORMS = (
    ("patients", "SE.ENROLMENT", False, False),
    ("consents", "SE.ENROLMENT", False, True),
    ("procedures", "SE.PROCEDURE", True, False),
    ("leakages", "SE.PROCEDURE", True, True),
    ("complications", "SE.PROCEDURE", True, True),
    ("followups", "SE.VISIT", True, False),
    ("medications", "SE.VISIT", True, True),
)
ODM_EVENTS = (
    ("SE.ENROLMENT", "Enrolment and consent", False),
    ("SE.PROCEDURE", "Procedure (repeat key: procedure_number)", True),
    ("SE.VISIT", "Follow-up visit (repeat key: timepoint)", True),
)


def _oid(*parts: str) -> str:
    return ".".join(re.sub(r"[^A-Za-z0-9_]", "_", p) for p in parts)


def _event_key(file: str, row: dict[str, str]) -> str:
    if file in ("procedures", "leakages", "complications"):
        return row.get("procedure_number", "")
    if file in ("followups", "medications"):
        return row.get("timepoint", "")
    return ""


def odm_bytes(
    tables: dict[str, tuple[Sequence[Described], list[dict[str, str]]]],
    when: datetime.datetime,
    file_oid: str = "PSP-REGISTRY-EXPORT",
) -> bytes:
    """CDISC ODM 1.3.2 (Snapshot): the study's metadata from the export's dictionary and each
    subject's data, per event (enrolment, each procedure, each visit), from the export's CSV cells."""
    from xml.etree import ElementTree as ET

    ET.register_namespace("", ODM_NS)

    def el(parent: Any, tag: str, **attrs: str) -> Any:
        return ET.SubElement(parent, f"{{{ODM_NS}}}{tag}", {k: v for k, v in attrs.items()})

    def text(parent: Any, tag: str, value: str) -> None:
        node = el(el(parent, tag), "TranslatedText", **{"{http://www.w3.org/XML/1998/namespace}lang": "en"})
        node.text = value

    stamp = when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    root = ET.Element(
        f"{{{ODM_NS}}}ODM",
        {"ODMVersion": "1.3.2", "FileType": "Snapshot", "FileOID": file_oid, "CreationDateTime": stamp},
    )
    study = el(root, "Study", OID="PSP")
    glob = el(study, "GlobalVariables")
    el(glob, "StudyName").text = "Percutaneous sacroplasty registry"
    el(glob, "StudyDescription").text = "Prospective registry of percutaneous sacroplasty for sacral metastases"
    el(glob, "ProtocolName").text = "PSP registry"
    mdv = el(study, "MetaDataVersion", OID="MDV.1", Name="Registry data dictionary")
    protocol = el(mdv, "Protocol")
    forms = [f for f in ODM_FORMS if f[0] in tables]
    for i, (event, _name, _rep) in enumerate(ODM_EVENTS, start=1):
        el(protocol, "StudyEventRef", StudyEventOID=event, OrderNumber=str(i), Mandatory="No")
    for event, name, repeating in ODM_EVENTS:
        se = el(mdv, "StudyEventDef", OID=event, Name=name, Repeating="Yes" if repeating else "No", Type="Common")
        for file, form_event, _, _ in forms:
            if form_event == event:
                el(se, "FormRef", FormOID=_oid("F", file), Mandatory="No")
    for file, _, _, _ in forms:
        form = el(mdv, "FormDef", OID=_oid("F", file), Name=file, Repeating="No")
        el(form, "ItemGroupRef", ItemGroupOID=_oid("IG", file), Mandatory="No")
    for file, _, _, repeating_group in forms:
        group = el(mdv, "ItemGroupDef", OID=_oid("IG", file), Name=file, Repeating="Yes" if repeating_group else "No")
        for c in tables[file][0]:
            el(group, "ItemRef", ItemOID=_oid("I", file, c.name), Mandatory="No")
    code_lists: list[tuple[str, Described]] = []
    for file, _, _, _ in forms:
        for c in tables[file][0]:
            item = el(mdv, "ItemDef", OID=_oid("I", file, c.name), Name=c.name, DataType=ODM_TYPES.get(c.type, "text"))
            text(item, "Question", variable_label(c))
            if choices_of(c):
                el(item, "CodeListRef", CodeListOID=_oid("CL", file, c.name))
                code_lists.append((file, c))
    for file, c in code_lists:
        cl = el(mdv, "CodeList", OID=_oid("CL", file, c.name), Name=f"{file}.{c.name}", DataType="text")
        for code, label in choices_of(c):
            text(el(cl, "CodeListItem", CodedValue=code), "Decode", label)

    clinical = el(root, "ClinicalData", StudyOID="PSP", MetaDataVersionOID="MDV.1")
    subjects = [r["study_id"] for r in tables["patients"][1]] if "patients" in tables else []
    by_subject: dict[str, dict[tuple[str, str], list[tuple[str, dict[str, str]]]]] = {s: {} for s in subjects}
    for file, event, _, _ in forms:
        for row in tables[file][1]:
            events = by_subject.setdefault(row["study_id"], {})
            events.setdefault((event, _event_key(file, row)), []).append((file, row))
    for subject in by_subject:
        sd = el(clinical, "SubjectData", SubjectKey=subject)
        for (event, key), rows in by_subject[subject].items():
            attrs = {"StudyEventOID": event}
            if key:
                attrs["StudyEventRepeatKey"] = key
            se = el(sd, "StudyEventData", **attrs)
            forms_here: dict[str, Any] = {}
            counts: dict[str, int] = {}
            for file, row in rows:
                if file not in forms_here:
                    forms_here[file] = el(se, "FormData", FormOID=_oid("F", file))
                repeating = next(f[3] for f in forms if f[0] == file)
                group_attrs = {"ItemGroupOID": _oid("IG", file)}
                if repeating:
                    counts[file] = counts.get(file, 0) + 1
                    group_attrs["ItemGroupRepeatKey"] = str(counts[file])
                group = el(forms_here[file], "ItemGroupData", **group_attrs)
                for c in tables[file][0]:
                    if row.get(c.name, "") != "":
                        el(group, "ItemData", ItemOID=_oid("I", file, c.name), Value=row[c.name])
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# ----------------------------------------------------------------------------- REDCap

REDCAP_DICTIONARY = "redcap/data_dictionary.csv"
REDCAP_RECORDS = "redcap/records.csv"
REDCAP_HEADER = [
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note", "Text Validation Type OR Show Slider Number",
    "Text Validation Min", "Text Validation Max", "Identifier?", "Branching Logic (Show field only if...)",
    "Required Field?", "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name",
    "Matrix Ranking?", "Field Annotation",
]  # fmt: skip
REDCAP_FORMS = ("patients", "consents", "procedures", "leakages", "complications", "followups", "medications")
REDCAP_VALIDATION = {"integer": "integer", "decimal": "number", "date": "date_ymd"}


def redcap_name(file: str, name: str) -> str:
    """A REDCap field name (lower case, letters, digits and _); study_id stays the record ID."""
    return "study_id" if name == "study_id" else re.sub(r"[^a-z0-9_]", "_", f"{file[:4]}_{name}".lower())


def redcap_dictionary(tables: dict[str, tuple[Sequence[Described], list[dict[str, str]]]]) -> bytes:
    """REDCap's data dictionary: one instrument per registry file (repeating instruments in REDCap)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REDCAP_HEADER)
    writer.writerow(
        ["study_id", "patients", "", "text", "Study ID", "", "", "", "", "", "", "", "y", "", "", "", "", ""]
    )
    for file in REDCAP_FORMS:
        if file not in tables:
            continue
        for c in tables[file][0]:
            if c.name == "study_id":
                continue
            pairs = choices_of(c)
            kind = (
                "yesno"
                if c.type == "yesno"
                else "checkbox"
                if c.type == "multichoice"
                else "dropdown"
                if pairs
                else "text"
            )
            if c.type == "multichoice":
                pairs = parse_choices(c.choices)
            choices = (
                " | ".join(f"{code}, {label}" for code, label in pairs) if kind in ("dropdown", "checkbox") else ""
            )
            validation = REDCAP_VALIDATION.get(c.type, "") if kind == "text" else ""
            writer.writerow(
                [redcap_name(file, c.name), file, "", kind, variable_label(c), choices, c.unit, validation,
                 "", "", "", "", "", "", "", "", "", f"registry: {file}.{c.name}"]
            )  # fmt: skip
    return out.getvalue().encode("utf-8")


def redcap_records(tables: dict[str, tuple[Sequence[Described], list[dict[str, str]]]]) -> bytes:
    """REDCap's flat import layout: one row per record and instrument instance
    (study_id, redcap_repeat_instrument, redcap_repeat_instance, fields...); yes/no as 1/0,
    checkboxes as field___code columns."""
    fields: list[str] = []
    for file in REDCAP_FORMS:
        for c in tables.get(file, ((), []))[0]:
            if c.name == "study_id":
                continue
            if c.type == "multichoice":
                fields += [f"{redcap_name(file, c.name)}___{code.lower()}" for code, _ in parse_choices(c.choices)]
            else:
                fields.append(redcap_name(file, c.name))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["study_id", "redcap_repeat_instrument", "redcap_repeat_instance", *fields])
    index = {f: i for i, f in enumerate(fields)}
    for file in REDCAP_FORMS:
        if file not in tables:
            continue
        columns, rows = tables[file]
        instance: dict[str, int] = {}
        for row in rows:
            cells = [""] * len(fields)
            for c in columns:
                value = row.get(c.name, "")
                if c.name == "study_id" or value == "":
                    continue
                if c.type == "multichoice":
                    ticked = set(value.split("|"))
                    for code, _ in parse_choices(c.choices):
                        cells[index[f"{redcap_name(file, c.name)}___{code.lower()}"]] = "1" if code in ticked else "0"
                elif c.type == "yesno":
                    cells[index[redcap_name(file, c.name)]] = {"yes": "1", "no": "0"}.get(value, value)
                else:
                    cells[index[redcap_name(file, c.name)]] = value
            sid = row["study_id"]
            if file == "patients":
                writer.writerow([sid, "", "", *cells])
            else:
                instance[sid] = instance.get(sid, 0) + 1
                writer.writerow([sid, file, instance[sid], *cells])
    return out.getvalue().encode("utf-8")


# ----------------------------------------------------------------------------- from a finished export


@dataclasses.dataclass(frozen=True)
class DictionaryColumn:
    """A column as the export's data_dictionary.csv describes it."""

    name: str
    label: str
    type: str
    unit: str
    choices: str
    max: str


def interchange_files(export: bytes, when: datetime.datetime) -> dict[str, bytes]:
    """CDISC ODM 1.3.2 and REDCap files (name -> bytes) of an export zip (long or both shapes),
    built from its CSVs and its own data dictionary: the same cells, the same de-identification."""
    zf = zipfile.ZipFile(io.BytesIO(export))
    described: dict[str, list[DictionaryColumn]] = {}
    for r in csv.DictReader(io.StringIO(zf.read("data_dictionary.csv").decode("utf-8"), newline="")):
        described.setdefault(r["file"], []).append(
            DictionaryColumn(r["variable"], r["label"], r["type"], r["unit"], r["choices"], r["max"])
        )
    tables: dict[str, tuple[Sequence[Described], list[dict[str, str]]]] = {}
    for file in REDCAP_FORMS:
        if f"{file}.csv" in zf.namelist():
            rows = list(csv.DictReader(io.StringIO(zf.read(f"{file}.csv").decode("utf-8"), newline="")))
            tables[file] = (described[file], rows)
    if "patients" not in tables:
        raise ValueError("the export has no long files (patients.csv): export the long or both shapes")
    return {
        ODM_FILE: odm_bytes(tables, when),
        REDCAP_DICTIONARY: redcap_dictionary(tables),
        REDCAP_RECORDS: redcap_records(tables),
    }


def redcap_to_bundle(dictionary_csv: bytes, records_csv: bytes) -> dict[str, bytes]:
    """The inverse of `redcap_dictionary`/`redcap_records`: REDCap's flat records back into the
    registry's bundle files ({"patients.csv": bytes, ...}), columns named by each field's
    annotation ("registry: file.column"); yes/no 1/0 -> yes/no, checkboxes -> codes joined by |."""
    fields: dict[str, list[tuple[str, str, str, tuple[tuple[str, str], ...]]]] = {}
    for row in csv.DictReader(io.StringIO(dictionary_csv.decode("utf-8-sig"), newline="")):
        note = row["Field Annotation"]
        if not note.startswith("registry: "):
            continue
        file, _, column = note[len("registry: ") :].partition(".")
        choices = parse_choices(row["Choices, Calculations, OR Slider Labels"])
        fields.setdefault(file, []).append((row["Variable / Field Name"], column, row["Field Type"], choices))
    out: dict[str, list[list[str]]] = {f: [["study_id", *(c for _, c, _, _ in cols)]] for f, cols in fields.items()}
    for record in csv.DictReader(io.StringIO(records_csv.decode("utf-8-sig"), newline="")):
        file = record.get("redcap_repeat_instrument") or "patients"
        if file not in fields:
            raise ValueError(f"REDCap records: instrument {file!r} is not in the data dictionary")
        cells = [record["study_id"]]
        for name, _, kind, choices in fields[file]:
            if kind == "checkbox":
                ticked = [code for code, _ in choices if record.get(f"{name}___{code.lower()}") == "1"]
                cells.append("|".join(ticked))
            elif kind == "yesno":
                cells.append({"1": "yes", "0": "no"}.get(record.get(name, ""), record.get(name, "")))
            else:
                cells.append(record.get(name, ""))
        out[file].append(cells)
    files = {}
    for file, rows in out.items():
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        files[f"{file}.csv"] = text.getvalue().encode("utf-8")
    return files
