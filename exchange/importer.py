"""Import a CSV bundle (folder or zip) all or nothing, streamed in bounded memory.

1. Stream: every file is read once, checked while it is read against
   `Limits` (uncompressed size declared and actually inflated, per file and in
   all; rows per file; NUL bytes; strict UTF-8; line and cell lengths; zip
   entries), its header checked, and its rows copied with COPY into a
   temporary staging table of the import's transaction. A hostile file is
   refused at once with one message; sites and consent versions (small, capped)
   stay in memory.
2. Check, chunk by chunk: the patients are taken in chunks of study IDs with all
   their rows from the staging tables; each cell is parsed against the data
   dictionary; the model instances are checked with the models' own rules (the
   field rules of `full_clean`, prepared once per model, and `clean()`: age,
   discharge after admission...), against each other (duplicates, orphans,
   consent, leakage rows) and the registry, and each case as it will be against
   the cross-record rules (`patients.rules.case_problems`: visit windows, visits
   and procedures against enrolment, death and withdrawal...).
3. Write: a chunk without problems is written with COPY, each row with the
   CREATE entry of the audit trail that `save_audited` would write (the chain
   trigger links them). After the first problem nothing more is written, the
   remaining chunks are still checked, and the transaction is rolled back: any
   problem writes nothing. The report names file, row (line of the file, the
   header being row 1), variable, value and message; it lists the first
   `Limits.max_problems` and counts the rest.

New patients are written in bulk. `--update` changes the registry's patients
through the clinical services (update_patient, record_procedure, record_visit,
save_audited), matching rows by the `record_id` an identified export carries
and refusing rows whose `record_version` is no longer the registry's.
"""

import codecs
import contextlib
import csv
import dataclasses
import datetime
import functools
import gc
import io
import itertools
import json
import operator
import re
import threading
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.core.validators import BaseValidator, MaxLengthValidator, MaxValueValidator, MinValueValidator
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext, ngettext

from accounts.models import Site
from audit.models import AuditEvent
from audit.services import (
    _actor,
    _field_value,
    _plain,
    change_event,
    delete_audited,
    has_version_token,
    owner_keys,
    record_event,
    row_values,
    save_audited,
)
from exchange import dictionary, export_cache
from exchange.dictionary import Variable
from exchange.models import ExportRow
from outcomes import derived
from outcomes.models import AnalysisRow, AwaitingProcedure, DueWindow, FollowUp, Medication
from outcomes.services import record_visit
from patients import rules as case_rules
from patients.models import Consent, ConsentVersion, Patient
from patients.rules import case_problems, check_case
from patients.services import record_consent, update_patient
from procedures.models import Complication, Leakage, Procedure
from procedures.services import record_procedure
from registry import dates
from registry.csv_safety import DANGEROUS_FIRST
from registry.errors import StaleEditError
from registry.fields import join_codes, not_in_future

INTEGER = re.compile(r"[+-]?\d+")
DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _postgres() -> bool:
    """PostgreSQL (production, tests) stages and writes with COPY; SQLite (the local demo) with plain inserts."""
    return connection.vendor == "postgresql"


def _temp_schema() -> str:
    return "pg_temp" if _postgres() else "temp"


@dataclass(frozen=True)
class Problem:
    file: str
    row: int | None
    variable: str
    value: str
    message: str

    def __str__(self) -> str:
        name = f"{self.file}.csv" if self.file in dictionary.FILES else self.file  # else: the bundle itself
        where = gettext("%(file)s, row %(row)s") % {"file": name, "row": self.row} if self.row else name
        if self.variable:
            where = gettext("%(where)s, %(variable)s") % {"where": where, "variable": self.variable}
        if self.value:
            where = f"{where} = {self.value!r}"
        return gettext("%(where)s: %(message)s") % {"where": where, "message": self.message}


class BundleError(Exception):
    """The bundle is refused. `problems` lists the first of them (a readable number), `total` counts all."""

    def __init__(self, problems: list[Problem], total: int | None = None) -> None:
        self.problems = list(problems)
        self.total = total if total is not None else getattr(problems, "total", len(self.problems))
        super().__init__(
            ngettext(
                "%(n)s problem in the bundle; nothing was imported",
                "%(n)s problems in the bundle; nothing was imported",
                self.total,
            )
            % {"n": self.total}
        )

    @property
    def unlisted(self) -> int:
        return self.total - len(self.problems)


@dataclass
class Row:
    file: str
    line: int
    raw: dict[str, str]
    values: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, int | None] = field(default_factory=dict)  # record_id / record_version (identified exports)


@dataclass
class ImportResult:
    counts: dict[str, int]  # rows created per file
    created_sites: list[str]
    created_versions: list[str]
    updated: dict[str, int] = field(default_factory=dict)  # rows changed per file (--update)
    removed: dict[str, int] = field(default_factory=dict)  # rows deleted per file (--update --remove-missing)
    trail_entries: int = 0  # audit trail entries this import wrote


# --------------------------------------------------------------------------- reading (streamed)


@dataclass(frozen=True)
class Limits:
    """What a bundle may hold. Every limit is checked while the bundle is streamed, before it can cost memory;
    each can be set in the settings (IMPORT_MAX_*) or per call."""

    max_total_bytes: int = 2 * 1024**3  # uncompressed, all bundle files together
    max_file_bytes: int = 1024**3  # uncompressed, one file
    max_rows: int = 1_000_000  # data rows of one file
    max_small_rows: int = 10_000  # rows of sites.csv / consent_versions.csv (held in memory)
    max_line_chars: int = 1024**2  # one physical line
    max_cell_chars: int = 65_536  # one cell
    max_zip_entries: int = 10_000
    max_rows_per_patient: int = 1_000  # rows of one study ID (or none) in one file: a chunk stays bounded
    max_problems: int = 200  # problems listed in a report (the rest are counted)

    @classmethod
    def from_settings(cls, **overrides: Any) -> "Limits":
        values = {
            name: getattr(settings, f"IMPORT_{name.upper()}", default)
            for name, default in ((f.name, f.default) for f in dataclasses.fields(cls))
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class Problems(list):
    """The problems of a bundle: the first `cap` are kept (for the report), the rest only counted."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap
        self.total = 0

    def append(self, problem: Problem) -> None:  # type: ignore[override]
        self.total += 1
        if len(self) < self.cap:
            super().append(problem)


def _refuse(file: str, message: str, row: int | None = None) -> "BundleError":
    return BundleError([Problem(file, row, "", "", message)])


def _mib(n: int) -> str:
    return f"{n / 1024**2:,.0f} MiB"


@dataclass
class _Source:
    name: str  # bundle file name without .csv
    declared: int  # uncompressed size the folder or the zip's directory gives
    open: Any  # () -> binary stream


def open_sources(path: Path, limits: Limits, stack: contextlib.ExitStack) -> dict[str, _Source]:
    """The bundle files found in a folder or a zip (root or one folder), checked against the size limits
    by what they declare (the bytes actually read are counted again while streaming)."""
    wanted = {f"{name}.csv" for name in dictionary.FILES}
    found: dict[str, _Source] = {}
    if path.is_dir():
        candidates = [p for p in path.iterdir() if p.name in wanted]
        if not candidates:
            subdirs = [p for p in path.iterdir() if p.is_dir()]
            if len(subdirs) == 1:
                candidates = [p for p in subdirs[0].iterdir() if p.name in wanted]
        for p in candidates:
            found[p.name[:-4]] = _Source(p.name[:-4], p.stat().st_size, functools.partial(p.open, "rb"))
    else:
        found = _zip_sources(path, wanted, limits, stack)
    for source in found.values():
        if source.declared > limits.max_file_bytes:
            raise _refuse(
                source.name,
                gettext("the file is %(size)s uncompressed, more than the limit of %(limit)s per file; refused")
                % {"size": _mib(source.declared), "limit": _mib(limits.max_file_bytes)},
            )
    total = sum(s.declared for s in found.values())
    if total > limits.max_total_bytes:
        raise _refuse(
            path.name,
            gettext("the bundle expands to %(size)s, more than the limit of %(limit)s; refused")
            % {"size": _mib(total), "limit": _mib(limits.max_total_bytes)},
        )
    return found


def _too_many_entries(limits: Limits) -> str:
    return gettext("the zip lists more than %(n)s entries; refused") % {"n": f"{limits.max_zip_entries:,}"}


def _zip_sources(path: Path, wanted: set[str], limits: Limits, stack: contextlib.ExitStack) -> dict[str, _Source]:
    name = path.name
    try:
        with path.open("rb") as fh:
            end = zipfile._EndRecData(fh)  # type: ignore[attr-defined]  # the directory's entry count, before it is read
    except OSError as exc:
        raise _refuse(name, gettext("the bundle cannot be read: %(error)s") % {"error": exc.strerror or exc}) from exc
    if not end:
        raise _refuse(name, gettext("not a folder or a zip file"))
    if end[zipfile._ECD_ENTRIES_TOTAL] > limits.max_zip_entries:  # type: ignore[attr-defined]
        raise _refuse(name, _too_many_entries(limits))
    try:
        zf = stack.enter_context(zipfile.ZipFile(path))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise _refuse(name, gettext("the zip is corrupt: %(error)s") % {"error": exc}) from exc
    infos = [i for i in zf.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
    if len(infos) > limits.max_zip_entries:
        raise _refuse(name, _too_many_entries(limits))
    declared = sum(i.file_size for i in infos)
    if declared > limits.max_total_bytes:
        raise _refuse(
            name,
            gettext("the zip expands to %(size)s, more than the limit of %(limit)s; refused")
            % {"size": _mib(declared), "limit": _mib(limits.max_total_bytes)},
        )
    by_folder: dict[str, list[zipfile.ZipInfo]] = defaultdict(list)
    for info in infos:
        parts = info.filename.split("/")
        if len(parts) <= 2 and parts[-1] in wanted:
            by_folder["/".join(parts[:-1])].append(info)
    if len(by_folder) > 1:
        folders = ", ".join(sorted(by_folder))
        raise _refuse(
            name, gettext("bundle files are in several folders (%(folders)s); use one") % {"folders": folders}
        )
    found = {}
    for info in next(iter(by_folder.values()), []):
        file = info.filename.split("/")[-1][:-4]
        if info.flag_bits & 0x1:
            raise _refuse(file, gettext("the file is encrypted in the zip; export the bundle without a password"))
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _refuse(file, gettext("the file is compressed with a method other than deflate; zip it again"))
        found[file] = _Source(file, info.file_size, functools.partial(zf.open, info))
    return found


class _Budget:
    """Uncompressed bytes read, per file and in all, against the limits."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total = 0

    def take(self, file: str, read_in_file: int, n: int) -> None:
        self.total += n
        if read_in_file > self.limits.max_file_bytes:
            raise _refuse(
                file,
                gettext(
                    "the file expands to more than %(limit)s (the limit per file); refused while reading (a zip bomb?)"
                )
                % {"limit": _mib(self.limits.max_file_bytes)},
            )
        if self.total > self.limits.max_total_bytes:
            raise _refuse(
                file,
                gettext("the bundle expands to more than %(limit)s (the limit); refused while reading (a zip bomb?)")
                % {"limit": _mib(self.limits.max_total_bytes)},
            )


_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError)


def _long_line(limits: Limits) -> str:
    return gettext("a line is longer than %(n)s characters; refused") % {"n": f"{limits.max_line_chars:,}"}


def _unreadable(exc: Exception) -> str:
    return gettext("the file cannot be read from the bundle (corrupt zip?): %(error)s") % {"error": exc}


def _lines(source: _Source, limits: Limits, budget: _Budget) -> Iterator[str]:
    """The file's text, one physical line at a time (ends kept), decoded strictly as UTF-8, streamed:
    refused at the first NUL byte, byte that is not UTF-8, overlong line, or byte past a size limit."""
    file = source.name
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    read = 0
    pending = ""
    try:
        stream = source.open()
    except _CORRUPT as exc:
        raise _refuse(file, _unreadable(exc)) from exc
    with stream:
        while True:
            try:
                chunk = stream.read(1 << 16)
            except _CORRUPT as exc:
                raise _refuse(file, _unreadable(exc)) from exc
            read += len(chunk)
            budget.take(file, read, len(chunk))
            nul = chunk.find(b"\x00")
            if nul != -1:
                raise _refuse(
                    file,
                    gettext(
                        "the file contains a NUL byte (offset %(offset)s); a CSV file is text: save it as UTF-8 CSV"
                    )
                    % {"offset": read - len(chunk) + nul},
                )
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                offset = read - len(exc.object) + exc.start
                raise _refuse(
                    file,
                    gettext("the file is not UTF-8 (byte %(byte)s at offset %(offset)s); save it as UTF-8 CSV")
                    % {"byte": f"0x{exc.object[exc.start]:02x}", "offset": offset},
                ) from exc
            if pending:
                text = pending + text
            start = 0
            while (end := text.find("\n", start)) != -1:
                if end - start >= limits.max_line_chars:
                    raise _refuse(file, _long_line(limits))
                yield text[start : end + 1]
                start = end + 1
            pending = text[start:]
            if len(pending) > limits.max_line_chars:
                raise _refuse(file, _long_line(limits))
            if not chunk:
                if pending:
                    yield pending
                return


@contextlib.contextmanager
def _cell_limit(chars: int) -> Iterator[None]:
    old = csv.field_size_limit(chars)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _check_header(name: str, header: list[str], problems: list[Problem]) -> bool:
    before = len(problems) if not isinstance(problems, Problems) else problems.total
    known = {v.name for v in dictionary.variables_for(name)}
    allowed = known | dictionary.EXPORT_ONLY_COLUMNS.get(name, frozenset())
    seen: set[str] = set()
    for col in header:
        if col in seen:
            problems.append(Problem(name, 1, col, "", gettext("the column appears twice")))
        seen.add(col)
        if col not in allowed:
            problems.append(
                Problem(name, 1, col[:80], "", gettext("unknown column (not in the data dictionary for this file)"))
            )
    for v in dictionary.variables_for(name):
        if not v.is_derived and v.name not in seen and (name, v.name) not in dictionary.LATER_COLUMNS:
            problems.append(Problem(name, 1, v.name, "", gettext("required column is missing")))
    after = len(problems) if not isinstance(problems, Problems) else problems.total
    return after == before


def _records(
    source: _Source, limits: Limits, budget: _Budget, problems: list[Problem]
) -> Iterator[tuple[list[str], Iterator[tuple[int, list[str]]]]]:
    """(header, rows as (row number, cells)) of one file; nothing if the header is unusable."""
    name = source.name
    cap = limits.max_small_rows if name in dictionary.OPTIONAL_FILES else limits.max_rows
    reader = csv.reader(_lines(source, limits, budget))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        problems.append(Problem(name, 1, "", "", gettext("the file is empty: it needs at least the header row")))
        return
    except csv.Error as exc:
        problems.append(Problem(name, 1, "", "", _unreadable_csv(exc, limits)))
        return
    if not _check_header(name, header, problems):
        return

    def rows() -> Iterator[tuple[int, list[str]]]:
        count = 0
        line = 1
        try:
            for line, cells in enumerate(reader, start=2):
                count += 1  # blank rows count too: a million empty lines is no bundle either
                if count > cap:
                    raise _refuse(
                        name,
                        gettext(
                            "the file has more than %(n)s rows, the limit per file%(setting)s; refused "
                            "(split the bundle, or raise the limit)"
                        )
                        % {"n": f"{cap:,}", "setting": " (IMPORT_MAX_ROWS)" if cap == limits.max_rows else ""},
                    )
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    problems.append(
                        Problem(
                            name,
                            line,
                            "",
                            "",
                            gettext("the row has %(cells)s cells; the header has %(header)s")
                            % {"cells": len(cells), "header": len(header)},
                        )
                    )
                    continue
                yield line, cells
        except csv.Error as exc:
            problems.append(Problem(name, line + 1, "", "", _unreadable_csv(exc, limits)))

    yield header, rows()


def _unreadable_csv(exc: csv.Error, limits: Limits) -> str:
    if "field larger than field limit" in str(exc):
        why = gettext("a cell is longer than %(n)s characters") % {"n": f"{limits.max_cell_chars:,}"}
    else:
        why = str(exc)
    return gettext("unreadable CSV: %(why)s") % {"why": why}


class _StreamReader:
    """A file-like view of an iterator of str blocks, for COPY ... FROM STDIN."""

    def __init__(self, blocks: Iterator[str]) -> None:
        self.blocks = blocks
        self.buffer = ""
        self.error: BundleError | None = None  # raised by the caller once COPY has returned

    def read(self, size: int = -1) -> str:
        while (size < 0 or len(self.buffer) < size) and self.error is None:
            try:
                block = next(self.blocks, None)
            except BundleError as exc:  # psycopg2 would turn it into QueryCanceled; what is buffered ends its line
                self.error = exc
                break
            if block is None:
                break
            self.buffer += block
        if size < 0:
            out, self.buffer = self.buffer, ""
        else:
            out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    readline = read


def _csv_blocks(rows: Iterable[list[Any]], per_block: int = 2000) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    n = 0
    for row in rows:
        writer.writerow(row)
        n += 1
        if n == per_block:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            n = 0
    if n:
        yield out.getvalue()


@dataclass
class _Staged:
    """A patient file copied into a temporary table of the import's transaction: its row numbers, the study
    ID of each row (stripped, as the cells are parsed) and its cells, one text column each."""

    name: str
    table: str
    header: list[str]
    rows: int = 0


def stage_bundle(
    sources: dict[str, _Source], limits: Limits, problems: list[Problem]
) -> tuple[dict[str, list[Row]], dict[str, _Staged]]:
    """Stream every file once: sites and consent versions into memory (they are small, and capped),
    every patient file into a staging table with COPY. Row problems (cell counts, unreadable CSV) are
    collected; a hostile file (too big, too many rows, NUL bytes, not UTF-8...) is refused at once."""
    budget = _Budget(limits)
    small: dict[str, list[Row]] = {}
    staged: dict[str, _Staged] = {}
    if "patients" not in sources:
        problems.append(Problem("patients", None, "", "", gettext("the bundle has no patients.csv")))
    with _cell_limit(limits.max_cell_chars), connection.cursor() as cursor:
        for name in dictionary.FILES:
            source = sources.get(name)
            if source is None:
                if name not in dictionary.OPTIONAL_FILES and name != "patients":
                    problems.append(
                        Problem(
                            name,
                            None,
                            "",
                            "",
                            gettext("the bundle has no %(file)s.csv (a file with only its header row is fine)")
                            % {"file": name},
                        )
                    )
                continue
            for header, rows in _records(source, limits, budget, problems):
                if name in dictionary.OPTIONAL_FILES:
                    small[name] = [Row(name, line, dict(zip(header, cells, strict=True))) for line, cells in rows]
                    continue
                stage = _Staged(name, f"import_stage_{name}", header)
                sid = header.index("study_id")
                columns = ", ".join(f"c{i} text" for i in range(len(header)))
                cursor.execute(
                    f"DROP TABLE IF EXISTS {_temp_schema()}.{stage.table}"
                )  # an earlier import of this transaction
                cursor.execute(
                    f"CREATE TEMPORARY TABLE {stage.table} (line integer, sid text, {columns})"
                    + (" ON COMMIT DROP" if _postgres() else "")
                )

                def tagged(rows: Iterator[tuple[int, list[str]]] = rows, sid: int = sid, stage: _Staged = stage):
                    for line, cells in rows:
                        stage.rows += 1
                        yield [line, cells[sid].strip(), *cells]

                if _postgres():
                    reader = _StreamReader(_csv_blocks(tagged()))
                    cursor.copy_expert(f"COPY {stage.table} FROM STDIN WITH (FORMAT csv)", reader, 1 << 16)
                    if reader.error is not None:
                        raise reader.error
                else:  # SQLite (the local demo): the same rows, inserted in batches
                    marks = ", ".join(["%s"] * (len(header) + 2))
                    for batch in itertools.batched(tagged(), 500):
                        cursor.executemany(f"INSERT INTO {stage.table} VALUES ({marks})", batch)
                cursor.execute(f"CREATE INDEX {stage.table}_sid ON {stage.table} (sid)")
                cursor.execute(f"ANALYZE {stage.table}")
                cursor.execute(
                    f"SELECT sid, count(*) FROM {stage.table} GROUP BY sid HAVING count(*) > %s ORDER BY 2 DESC LIMIT 1",
                    [limits.max_rows_per_patient],
                )
                crowded = cursor.fetchone()
                if crowded is not None:
                    who = gettext("study ID %(id)r") % {"id": crowded[0]} if crowded[0] else gettext("no study_id")
                    raise _refuse(
                        name,
                        gettext(
                            "%(n)s rows have %(who)s, more than the limit of %(limit)s rows per patient in one file; "
                            "refused"
                        )
                        % {"n": f"{crowded[1]:,}", "who": who, "limit": f"{limits.max_rows_per_patient:,}"},
                    )
                staged[name] = stage
    return small, staged


def _stage_keys(staged: dict[str, _Staged]) -> list[str]:
    """Every study ID the staged files name, in order: the chunks of the import are slices of it."""
    if not staged:
        return []
    union = " UNION ".join(f"SELECT sid FROM {s.table}" for s in staged.values())
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT sid FROM ({union}) AS ids ORDER BY sid")
        return [r[0] or "" for r in cursor.fetchall()]


def _staged_rows(staged: dict[str, _Staged], keys: list[str]) -> dict[str, list[Row]]:
    """The rows of the staged files that belong to the study IDs `keys`, in file order."""
    tables: dict[str, list[Row]] = {}
    with connection.cursor() as cursor:
        for name, stage in staged.items():
            cols = ", ".join(f"c{i}" for i in range(len(stage.header)))
            if _postgres():
                cursor.execute(f"SELECT line, {cols} FROM {stage.table} WHERE sid = ANY(%s) ORDER BY line", [keys])
            else:
                marks = ", ".join(["%s"] * len(keys)) or "NULL"
                cursor.execute(f"SELECT line, {cols} FROM {stage.table} WHERE sid IN ({marks}) ORDER BY line", keys)
            header = stage.header
            tables[name] = [
                Row(name, rec[0], {h: (c if c is not None else "") for h, c in zip(header, rec[1:], strict=True)})
                for rec in cursor.fetchall()
            ]
    return tables


# --------------------------------------------------------------------------- cells


def parse_cell(var: Variable, raw: str, today: datetime.date) -> tuple[Any, str]:
    """(value, "") or (None, message). Blank is None."""
    text = raw.strip()
    if text == "":
        return None, ""
    kind = var.type
    if kind == "text":
        if len(text) > 1 and text[0] == "'" and text[1] in DANGEROUS_FIRST:
            text = text[1:]  # the apostrophe an export puts before =, +, -, @ (CSV injection guard)
        return text, ""
    if kind == "yesno":
        if text.lower() not in ("yes", "no"):
            return None, gettext("must be yes or no")
        return text.lower() == "yes", ""
    if kind == "choice":
        if var.choices and text not in _codes(var):
            return None, gettext("unknown code; expected one of %(codes)s") % {"codes": ", ".join(var.codes)}
        return text, ""
    if kind == "multichoice":
        codes = text.split("|")
        if len(set(codes)) != len(codes):
            return None, gettext("a code is listed twice")
        try:
            return join_codes(codes, var.choices), ""
        except ValueError as exc:
            return None, str(exc)
    value: Any
    if kind == "integer":
        if not INTEGER.fullmatch(text):
            return None, gettext("must be a whole number")
        value = int(text)
    elif kind == "decimal":
        if not DECIMAL.fullmatch(text):
            return None, gettext("must be a number with a dot as decimal separator")
        try:
            value = Decimal(text)
        except InvalidOperation:
            return None, gettext("must be a number")
    elif kind == "date":
        if not ISO_DATE.fullmatch(text):
            return None, gettext("must be a date written YYYY-MM-DD")
        try:
            value = datetime.date.fromisoformat(text)
        except ValueError:
            return None, gettext("is not a real calendar date")
    else:  # pragma: no cover - the dictionary has no other type
        return text, ""
    low, high = _bound(var.min, today), _bound(var.max, today)
    if low is not None and value < low:  # type: ignore[operator]
        return None, gettext("below the minimum %(min)s") % {"min": var.min}
    if high is not None and value > high:  # type: ignore[operator]
        if var.max == "today":
            return None, gettext("in the future")
        return None, gettext("above the maximum %(max)s") % {"max": var.max}
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


@functools.cache
def _codes(var: Variable) -> frozenset[str]:
    return frozenset(var.codes)


@functools.cache
def _bound(text: str, today: datetime.date) -> object:
    return dictionary.bound(text, today)


@functools.cache
def _parse_plan(file: str) -> tuple[Variable, ...]:
    return tuple(v for v in dictionary.variables_for(file) if not v.is_derived)


def _parse_rows(rows: list[Row], today: datetime.date, problems: list[Problem]) -> None:
    """Parse every cell (parse_cell's rules, blank cells short-cut), then check what is required."""
    for row in rows:
        variables = _parse_plan(row.file)
        raw_cells, values = row.raw, row.values
        blank = []
        for var in variables:
            raw = raw_cells.get(var.name, "")
            if not raw or raw.isspace():
                values[var.name] = None
                blank.append(var)
                continue
            value, message = parse_cell(var, raw, today)
            if message:
                problems.append(Problem(row.file, row.line, var.name, raw, message))
            values[var.name] = value
        for var in blank:
            if var.required and is_required(var, values):
                if var.required == "y":
                    message = gettext("is required")
                else:  # the dictionary's condition, e.g. "if leakage = yes", as written there
                    message = gettext("is required (%(condition)s)") % {"condition": var.required}
                problems.append(Problem(row.file, row.line, var.name, "", message))
        for name in dictionary.KEY_COLUMNS:
            text = raw_cells.get(name, "").strip()
            if not text:
                row.keys[name] = None
            elif not text.isdigit() or int(text) < 1:
                problems.append(
                    Problem(
                        row.file,
                        row.line,
                        name,
                        text,
                        gettext("must be a whole number from 1 (the registry's row key)"),
                    )
                )
            else:
                row.keys[name] = int(text)


# --------------------------------------------------------------------------- the importer


@functools.cache
def _blueprint(model: type[models.Model]) -> tuple[dict[str, Any], list[Any], frozenset[str], dict[str, Any]]:
    """(constant defaults by attname, fields with a callable default, plain attnames, foreign keys by name)."""
    constant: dict[str, Any] = {}
    dynamic = []
    for f in model._meta.concrete_fields:
        if getattr(f, "generated", False):
            continue
        if f.has_default() and callable(f.default):
            dynamic.append(f)
        else:
            constant[f.attname] = f.get_default()
    fields = model._meta.concrete_fields
    plain = frozenset(f.attname for f in fields if not f.is_relation and not getattr(f, "generated", False))
    return constant, dynamic, plain, {f.name: f for f in fields if f.is_relation}


def _new(model: type[models.Model], values: dict[str, Any], **parents: models.Model) -> Any:
    """`model(**parents, **values)` for a bundle row: the same attributes (defaults, values, each parent's
    key and the parent cached as the foreign key's descriptor caches it), built without Model.__init__'s
    keyword handling per field, which cost a fifth of the checks (the project has no pre/post_init
    receivers). Anything but plain field names goes through the constructor."""
    constant, dynamic, plain, foreign = _blueprint(model)
    if not values.keys() <= plain or not parents.keys() <= foreign.keys():
        return model(**parents, **values)
    obj = model.__new__(model)
    state = obj._state = models.base.ModelState()
    attrs = obj.__dict__
    attrs.update(constant)
    for f in dynamic:
        attrs[f.attname] = f.get_default()
    attrs.update(values)
    for name, parent in parents.items():
        f = foreign[name]
        attrs[f.attname] = getattr(parent, f.target_field.attname)
        state.fields_cache[name] = parent
    return obj


def _leakage_rows_needed() -> str:  # one message, two places
    return gettext("leakage = yes needs one row per leakage site in leakages.csv")


class _Import:
    def __init__(
        self,
        tables: dict[str, list[Row]],
        *,
        user: Any,
        source: str,
        update_reason: str = "",
        remove_missing: bool = False,
        problems: list[Problem] | None = None,
        head: "_Import | None" = None,
    ) -> None:
        """`head`: the import's first job (sites and consent versions); a job per chunk of patients shares
        its sites, versions and problems, and the MRNs seen so far."""
        self.tables = tables
        self.today = dates.today()
        self.user = user
        self.source = source
        self.update_reason = update_reason  # non-empty: study IDs already in the registry are updated
        self.remove_missing = remove_missing
        if head is not None:
            self.problems = head.problems
            self.sites, self.versions = head.sites, head.versions
            self.new_sites, self.new_versions, self.seen_mrn = head.new_sites, head.new_versions, head.seen_mrn
        else:
            self.problems = problems if problems is not None else []
            self.sites = {s.code: s for s in Site.objects.all()}
            self.versions = {v.version: v for v in ConsentVersion.objects.all()}
            self.new_sites: list[Site] = []
            self.new_versions: list[ConsentVersion] = []
            self.seen_mrn: dict[tuple[str, str], int] = {}  # (site, MRN) -> bundle row, over all chunks
        self.patients: dict[str, Patient] = {}
        self.existing: dict[str, Patient] = {}  # the registry's patients the bundle updates, by study ID
        self.procedures: dict[tuple[str, int], Procedure] = {}
        self.procedure_rows: dict[tuple[str, int], Row] = {}
        self.followups: dict[tuple[str, str], FollowUp] = {}
        self.children: dict[str, list[tuple[Row, models.Model]]] = defaultdict(list)
        self.accepted: dict[str, list[tuple[Row, models.Model]]] = defaultdict(list)  # every checked instance
        self.row_of: dict[int, Row] = {}  # id(instance) -> its bundle row
        # --update: the registry's rows of the updated patients, and what becomes of them
        self.current: dict[str, dict[int, models.Model]] = {}
        self.matched: dict[str, set[int]] = defaultdict(set)
        self.kept: dict[str, list[models.Model]] = defaultdict(list)  # registry rows the bundle leaves out
        self.removed: dict[str, list[models.Model]] = defaultdict(list)  # ... and --remove-missing deletes

    @functools.cached_property
    def bundle_ids(self) -> set[Any]:
        """This job's study IDs (read once its rows are parsed)."""
        return {r.values.get("study_id") for r in self.tables.get("patients", [])}

    def problem(self, row: Row, variable: str, message: str) -> None:
        self.problems.append(Problem(row.file, row.line, variable, row.raw.get(variable, ""), message))

    def accept(self, row: Row, instance: models.Model) -> None:
        self.accepted[row.file].append((row, instance))
        self.row_of[id(instance)] = row

    def clean(
        self, row: Row, instance: models.Model, renames: dict[str, str] | None = None, exclude: Iterable[str] = ()
    ) -> bool:
        if _passes_full_clean(instance, tuple(exclude), self.today):
            return True  # (else full_clean below gives the messages)
        try:
            instance.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            # The model's clean() also runs the cross-record rules on this one record against the saved case,
            # which for a bundle is the wrong case (its other rows are not saved yet): those are checked
            # on the whole case as it will be, in check_cases, and left out here.
            isolated = _isolated_case_errors(instance)
            reported = 0
            for field_name, messages in exc.message_dict.items():
                variable = (renames or {}).get(field_name, field_name)
                if variable == "__all__":
                    variable = ""
                for message in messages:
                    if message in isolated.get(field_name, ()):
                        continue
                    self.problem(row, variable, message.rstrip("."))
                    reported += 1
            return not reported
        return True

    def unique(self, rows: list[Row], key_vars: tuple[str, ...], what: str) -> list[Row]:
        seen: dict[tuple[Any, ...], int] = {}
        kept = []
        for row in rows:
            key = tuple(row.values.get(k) for k in key_vars)
            if None in key:
                continue
            if key in seen:
                message = gettext("duplicate %(what)s: already given in row %(row)s") % {"what": what, "row": seen[key]}
                self.problem(row, key_vars[-1], message)
                continue
            seen[key] = row.line
            kept.append(row)
        return kept

    # Each step builds and checks the instances of one file.

    def load_sites(self) -> None:
        for row in self.unique(self.tables.get("sites", []), ("code",), gettext("site code")):
            code = row.values["code"]
            if code in self.sites:
                continue
            site = Site(code=code, name=row.values["name"] or "")
            if self.clean(row, site, exclude=["id"]):
                self.sites[code] = site
                self.new_sites.append(site)

    def load_versions(self) -> None:
        for row in self.unique(self.tables.get("consent_versions", []), ("version",), gettext("consent version")):
            v = row.values
            existing = self.versions.get(v["version"])
            if existing is not None:
                if (existing.effective_from, existing.effective_to) != (v["effective_from"], v["effective_to"]):
                    self.problem(
                        row,
                        "effective_from",
                        gettext("version %(version)s is already in the registry with a different period")
                        % {"version": existing.version},
                    )
                continue
            version = ConsentVersion(
                version=v["version"], effective_from=v["effective_from"], effective_to=v["effective_to"]
            )
            if self.clean(row, version, exclude=["blank_form"]):
                self.versions[version.version] = version
                self.new_versions.append(version)

    def prefetch(self) -> None:
        """The registry's patients this chunk's study IDs and MRNs meet, read before the checks (which then
        make no query, so the previous chunk's rows can be written meanwhile). The two cells are parsed
        here by parse_cell's rules, so this may run before the chunk is parsed."""
        rows = self.tables.get("patients", [])
        study_id, mrn = dictionary.variable("patients", "study_id"), dictionary.variable("patients", "mrn")

        def cells(var: Variable) -> set[Any]:
            return {parse_cell(var, r.raw.get(var.name, ""), self.today)[0] for r in rows} - {None}

        self.in_registry = {
            p.study_id: p for p in Patient.objects.filter(study_id__in=cells(study_id)).select_related("site")
        }
        self.registry_mrns = {
            (site, number): sid
            for site, number, sid in Patient.objects.filter(mrn__in=cells(mrn)).values_list(
                "site__code", "mrn", "study_id"
            )
        }

    def load_patients(self) -> None:
        if not hasattr(self, "in_registry"):
            self.prefetch()
        rows = self.unique(self.tables.get("patients", []), ("study_id",), gettext("study ID"))
        in_registry, mrns = self.in_registry, self.registry_mrns
        seen_mrn = self.seen_mrn
        for row in rows:
            v = row.values
            if v["study_id"] in in_registry and not self.update_reason:
                self.problem(
                    row,
                    "study_id",
                    gettext(
                        "this study ID is already in the registry; the bundle is refused as a whole "
                        "(import_bundle --update --reason ... --user ... updates existing patients)"
                    ),
                )
                continue
            if self.update_reason and v["study_id"] not in in_registry and row.keys.get("record_id") is not None:
                self.problem(
                    row,
                    "record_id",
                    gettext(
                        "this patient was record %(record)s of the registry when exported but is no longer in it "
                        "(deleted since the export?); an update does not bring deleted patients back"
                    )
                    % {"record": row.keys["record_id"]},
                )
                continue
            site = self.sites.get(v["site"] or "")
            if site is None:
                if v["site"]:
                    self.problem(row, "site", gettext("unknown site code: not in sites.csv nor in the registry"))
                continue
            key = (site.code, v["mrn"])
            if key in seen_mrn:  # (before the registry: an earlier chunk of this bundle may be written already)
                self.problem(
                    row, "mrn", gettext("the same MRN is used by row %(row)s of the same site") % {"row": seen_mrn[key]}
                )
                continue
            if mrns.get(key, v["study_id"]) != v["study_id"]:
                self.problem(
                    row,
                    "mrn",
                    gettext("a patient of site %(site)s with this MRN is already in the registry")
                    % {"site": site.code},
                )
                continue
            seen_mrn[key] = row.line
            fields = {k: val for k, val in v.items() if k != "site"}
            for name in ("primary_tumour_other", "notes", "email"):
                fields[name] = fields.get(name) or ""
            patient = _new(Patient, fields, site=site)
            if self.clean(row, patient, exclude=["id", "site"]):
                self.patients[patient.study_id] = patient
                self.accept(row, patient)
                if patient.study_id in in_registry:
                    self.existing[patient.study_id] = in_registry[patient.study_id]

    def patient_for(self, row: Row) -> Patient | None:
        """The bundle's patient a row belongs to; an orphan row is a problem."""
        study_id = row.values.get("study_id")
        patient = self.patients.get(study_id or "")
        if patient is None and study_id is not None and study_id not in self.bundle_ids:
            self.problem(row, "study_id", gettext("orphan row: this study ID is not in patients.csv"))
        return patient

    def load_consents(self) -> set[str]:
        consented: set[str] = set()
        for row in self.tables.get("consents", []):
            patient = self.patient_for(row)
            v = row.values
            version = self.versions.get(v["consent_version"] or "")
            if v["consent_version"] and version is None:
                self.problem(
                    row,
                    "consent_version",
                    gettext("unknown consent version: not in consent_versions.csv nor in the registry"),
                )
            if patient is None or version is None:
                continue
            fields = {k: val for k, val in v.items() if k not in ("study_id", "consent_version")}
            for name in ("document_sha256", "withdrawal_scope", "withdrawal_reason"):
                fields[name] = fields[name] or ""
            consent = _new(Consent, fields, patient=patient, consent_version=version)
            if self.clean(
                row,
                consent,
                {"consent_version": "consent_version"},
                exclude=["id", "patient", "consent_version", "document"],
            ):
                self.children["consents"].append((row, consent))
                self.accept(row, consent)
                if consent.scope_registry:
                    consented.add(patient.study_id)
        return consented

    def load_procedures(self) -> None:
        for row in self.unique(
            self.tables.get("procedures", []),
            ("study_id", "procedure_number"),
            gettext("procedure number for this patient"),
        ):
            patient = self.patient_for(row)
            if patient is None:
                continue
            fields = {k: val for k, val in row.values.items() if k != "study_id"}
            for name in ("cement_product", "cement_viscosity"):
                fields[name] = fields[name] or ""
            fields["needle_gauge"] = int(fields["needle_gauge"]) if fields["needle_gauge"] else None
            procedure = _new(Procedure, fields, patient=patient)
            if self.clean(row, procedure, exclude=["id", "patient"]):
                self.procedures[(patient.study_id, procedure.procedure_number)] = procedure
                self.procedure_rows[(patient.study_id, procedure.procedure_number)] = row
                self.accept(row, procedure)

    def procedure_for(self, row: Row) -> Procedure | None:
        if self.patient_for(row) is None:
            return None
        key = (row.values["study_id"], row.values.get("procedure_number"))
        procedure = self.procedures.get(key)  # type: ignore[arg-type]
        if procedure is None and key[1] is not None:
            self.problem(
                row, "procedure_number", gettext("orphan row: no such procedure for this patient in procedures.csv")
            )
        return procedure

    def load_procedure_children(self) -> None:
        for row in self.unique(
            self.tables.get("leakages", []), ("study_id", "procedure_number", "site"), gettext("leakage site")
        ):
            procedure = self.procedure_for(row)
            if procedure is None:
                continue
            leakage = _new(
                Leakage,
                {
                    "site": row.values["site"],
                    "symptomatic": row.values["symptomatic"],
                    "treatment_required": row.values["treatment_required"],
                },
                procedure=procedure,
            )
            if not procedure.leakage:
                self.problem(row, "site", gettext("procedures.csv says this procedure had no leakage (leakage = no)"))
            elif self.clean(row, leakage, exclude=["id", "procedure"]):
                self.children["leakages"].append((row, leakage))
                self.accept(row, leakage)
        leaked = {(r.values["study_id"], r.values["procedure_number"]) for r in self.tables.get("leakages", [])}
        for key, procedure in self.procedures.items():
            if procedure.leakage and key not in leaked and key[0] not in self.existing:  # (--update: see below)
                row = self.procedure_rows[key]
                self.problem(row, "leakage", _leakage_rows_needed())
        for row in self.tables.get("complications", []):
            procedure = self.procedure_for(row)
            if procedure is None:
                continue
            fields = {k: val for k, val in row.values.items() if k not in ("study_id", "procedure_number")}
            for name in ("severity", "description"):
                fields[name] = fields[name] or ""
            complication = _new(Complication, fields, procedure=procedure)
            if self.clean(row, complication, exclude=["id", "procedure"]):
                self.children["complications"].append((row, complication))
                self.accept(row, complication)

    def load_followups(self) -> None:
        meds: dict[tuple[str, str], list[tuple[Row, Medication]]] = defaultdict(list)
        for row in self.tables.get("medications", []):
            key = (row.values.get("study_id"), row.values.get("timepoint"))
            med = _new(
                Medication,
                {
                    "drug": row.values["drug"],
                    "daily_dose": row.values["daily_dose"],
                    "route": row.values.get("route") or "",
                },
            )
            meds[key].append((row, med))  # type: ignore[index]
        for row in self.unique(
            self.tables.get("followups", []), ("study_id", "timepoint"), gettext("visit for this patient and timepoint")
        ):
            patient = self.patient_for(row)
            if patient is None:
                continue
            fields = {k: val for k, val in row.values.items() if k != "study_id"}
            fields["deviation_note"] = fields["deviation_note"] or ""
            visit = _new(FollowUp, fields, patient=patient)
            visit_meds = meds.pop((patient.study_id, visit.timepoint), [])
            if visit_meds and visit.status != FollowUp.Status.COMPLETED:
                for med_row, _ in visit_meds:
                    self.problem(
                        med_row,
                        "timepoint",
                        gettext("medications can only be recorded for a completed visit (this one is %(status)s)")
                        % {"status": visit.status},
                    )
            for _, med in visit_meds:
                med.compute_derived()  # a blank route is the drug's usual one, before MME is derived
            visit.compute_derived([m for _, m in visit_meds])
            if self.clean(row, visit, exclude=["id", "patient"]):
                self.followups[(patient.study_id, visit.timepoint)] = visit
                self.accept(row, visit)
                for med_row, med in visit_meds:
                    med.followup = visit
                    if self.clean(med_row, med, exclude=["id", "followup"]):
                        self.children["medications"].append((med_row, med))
                        self.accept(med_row, med)
        for (study_id, timepoint), orphans in meds.items():
            for row, _ in orphans:
                if study_id is not None and timepoint is not None and self.patient_for(row) is not None:
                    self.problem(
                        row, "timepoint", gettext("orphan row: no such visit for this patient in followups.csv")
                    )

    def check_consent(self, consented: set[str]) -> None:
        clinical = [*self.tables.get("procedures", []), *self.tables.get("followups", [])]
        for row in clinical:
            study_id = row.values.get("study_id")
            if study_id in self.patients and study_id not in consented:
                self.problem(
                    row, "study_id", gettext("no consent to registry use is recorded for this patient in consents.csv")
                )

    def run(self) -> None:
        """Check the rows of this job's patients (its chunk of the bundle)."""
        self.load_patients()
        consented = self.load_consents()
        self.load_procedures()
        self.load_procedure_children()
        self.load_followups()
        self.check_consent(consented)
        if self.existing:
            self.match_registry_rows()
        self.check_cases()

    # ------------------------------------------------------------------ --update: rows with identity

    def match_registry_rows(self) -> None:
        """Give each bundle row of an updated patient the identity of its registry row (by record_id).

        A row without record_id is new; a row whose registry version moved on
        since the export is refused (stale); a registry row the bundle leaves out
        is kept, or removed with --remove-missing.
        """
        self.current = _registry_rows(self.existing)
        for file in dictionary.KEYED_FILES:
            entries = [(r, i) for r, i in self.accepted.get(file, []) if _owner(i).study_id in self.existing]
            if entries and not all(name in entries[0][0].raw for name in dictionary.KEY_COLUMNS):
                self.problems.append(
                    Problem(
                        file,
                        1,
                        "record_id",
                        "",
                        gettext(
                            "--update needs the record_id and record_version columns of an identified export "
                            "(export the patients from the registry, correct that bundle, then import it)"
                        ),
                    )
                )
                continue
            seen: dict[int, int] = {}
            for row, instance in entries:
                self._match(file, row, instance, seen)
        for file in dictionary.KEYED_FILES:
            for pk, current in self.current[file].items():
                if pk in self.matched[file] or _is_removed_with_parent(current, self.removed):
                    continue
                if not self.remove_missing or file == "patients":
                    self.kept[file].append(current)
                elif file == "consents":
                    self.problems.append(
                        Problem(
                            file,
                            None,
                            "record_id",
                            str(pk),
                            gettext(
                                "the consent of %(study_id)s signed %(signed)s is not in the bundle; --remove-missing "
                                "never removes a consent record (withdraw it in the registry)"
                            )
                            % {"study_id": _owner(current).study_id, "signed": current.signed_date},
                        )
                    )
                else:
                    self.removed[file].append(current)
        self.check_leakage_flags()

    def _match(self, file: str, row: Row, instance: models.Model, seen: dict[int, int]) -> None:
        record_id, loaded = row.keys.get("record_id"), row.keys.get("record_version")
        if file == "patients":
            current: models.Model | None = self.existing[instance.study_id]  # type: ignore[attr-defined]
            if record_id is not None and record_id != current.pk:  # type: ignore[union-attr]
                message = gettext("study ID %(id)s is record %(record)s in the registry")
                self.problem(row, "record_id", message % {"id": instance, "record": current.pk})  # type: ignore[union-attr]
                return
            record_id = current.pk  # type: ignore[union-attr]
        elif record_id is None:
            if loaded is not None:
                self.problem(row, "record_version", gettext("a row with a record_version needs its record_id"))
            return  # a new row
        else:
            current = self.current[file].get(record_id)
            if current is None or _owner(current).pk != _owner(instance).pk:
                self.problem(
                    row,
                    "record_id",
                    gettext(
                        "no such row of this patient in the registry (removed since the export?); "
                        "leave record_id blank to add a new row"
                    ),
                )
                return
            parent = _PARENT.get(file)
            if parent in ("procedure", "followup"):
                current_parent, bundle_parent = getattr(current, parent), getattr(instance, parent)
                if current_parent.pk != bundle_parent.pk:
                    if parent == "procedure":
                        what = gettext("procedure %(n)s") % {"n": current_parent.procedure_number}
                    else:
                        what = gettext("the %(timepoint)s visit") % {"timepoint": current_parent.timepoint}
                    self.problem(
                        row,
                        "procedure_number" if parent == "procedure" else "timepoint",
                        gettext(
                            "this row belongs to %(what)s in the registry; an update does not move rows (leave its "
                            "record_id blank to add it here, and remove the old one with --remove-missing)"
                        )
                        % {"what": what},
                    )
                    return
        if loaded is None:
            self.problem(
                row, "record_version", gettext("is required to update a registry row (an identified export carries it)")
            )
            return
        if record_id in seen:
            message = gettext("the same registry row is already given in row %(row)s") % {"row": seen[record_id]}
            self.problem(row, "record_id", message)
            return
        seen[record_id] = row.line
        assert current is not None
        if current.version != loaded:  # type: ignore[attr-defined]
            self.problem(
                row,
                "record_version",
                gettext("changed in the registry since the export: version %(then)s now %(now)s")
                % {"then": loaded, "now": current.version},  # type: ignore[attr-defined]
            )
            return
        instance.pk = current.pk
        instance.version = loaded  # type: ignore[attr-defined]
        instance._state.adding = False
        bundle = _bundle_fields(file)
        for f in instance._meta.concrete_fields:
            if f.name not in bundle and f.name not in ("id", "version") and f.name != _PARENT.get(file):
                setattr(instance, f.attname, getattr(current, f.attname))  # derived and non-CRF values
        self.matched[file].add(current.pk)
        _refresh_foreign_keys(instance)

    def changed(self, file: str, instance: models.Model) -> bool:
        """Whether a matched bundle row differs from its registry row in a CRF value (normalised: 3.0 = 3)."""
        if instance.pk is None:
            return True
        current = self.current[file][instance.pk]
        before, after = row_values(current), row_values(instance)
        return any(before[name] != after[name] for name in _bundle_fields(file))

    def check_leakage_flags(self) -> None:
        """The leakage flag must agree with the rows that remain after the update (bundle rows + kept rows)."""
        for key, procedure in self.procedures.items():
            if procedure.pk is None or key[0] not in self.existing:
                continue
            kept = [leak for leak in self.kept["leakages"] if leak.procedure_id == procedure.pk]  # type: ignore[attr-defined]
            listed = [leak for _, leak in self.accepted.get("leakages", []) if leak.procedure is procedure]  # type: ignore[attr-defined]
            if procedure.leakage and not kept and not listed:
                self.problem(self.procedure_rows[key], "leakage", _leakage_rows_needed())
            if kept and not procedure.leakage:
                self.problem(
                    self.procedure_rows[key],
                    "leakage",
                    ngettext(
                        "leakage = no, but the registry keeps %(n)s leakage row of this procedure that leakages.csv "
                        "leaves out (%(sites)s): rows left out of a bundle are kept unless --remove-missing is given",
                        "leakage = no, but the registry keeps %(n)s leakage rows of this procedure that leakages.csv "
                        "leaves out (%(sites)s): rows left out of a bundle are kept unless --remove-missing is given",
                        len(kept),
                    )
                    % {"n": len(kept), "sites": ", ".join(leak.site for leak in kept)},  # type: ignore[attr-defined]
                )

    # ------------------------------------------------------------------ cross-record rules

    def check_cases(self) -> None:
        """patients.rules.case_problems on each case as it will be: the bundle's rows, and on --update
        the registry's rows the bundle leaves out; each problem reported at its bundle row."""
        case: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        for file in ("consents", "procedures", "complications", "followups"):
            for _, instance in self.accepted.get(file, []):
                case[_owner(instance).study_id][file].append(instance)
        merged_procedures: dict[int, Any] = {}
        for file in ("consents", "procedures", "followups"):
            for current in self.kept.get(file, []):
                case[_owner(current).study_id][file].append(current)
        for procedures in (c["procedures"] for c in case.values()):
            merged_procedures.update({p.pk: p for p in procedures if p.pk is not None})
        for current in self.kept.get("complications", []):
            if current.procedure_id in merged_procedures:  # type: ignore[attr-defined]
                current.procedure = merged_procedures[current.procedure_id]  # type: ignore[attr-defined]
                case[_owner(current).study_id]["complications"].append(current)
        for study_id, patient in self.patients.items():
            rows = case.get(study_id, {})
            for p in case_problems(
                patient,
                procedures=rows.get("procedures", []),
                visits=rows.get("followups", []),
                complications=rows.get("complications", []),
                consents=rows.get("consents", []),
            ):
                row = self.row_of.get(id(p.record))
                if row is not None:
                    self.problems.append(Problem(row.file, row.line, p.field, row.raw.get(p.field, ""), p.message))
                else:  # a registry row the bundle leaves out
                    self.problems.append(
                        Problem(
                            MODEL_FILES[type(p.record)],
                            None,
                            p.field,
                            f"record_id {p.record.pk}",
                            gettext("%(problem)s (a registry row this bundle does not list)") % {"problem": p.message},
                        )
                    )

    # ------------------------------------------------------------------ writing

    def is_new(self, instance: models.Model) -> bool:
        return _owner(instance).study_id not in self.existing

    def write_heads(self) -> None:
        """Insert the bundle's new sites and consent versions (before any patient), each with its trail entry."""
        events = []
        reason = f"Imported from bundle {self.source}"
        for new in (self.new_sites, self.new_versions):
            if new:
                type(new[0]).objects.bulk_create(new)
            for instance in new:
                events.append(
                    change_event(
                        action=AuditEvent.Action.CREATE,
                        instance=instance,
                        user=self.user,
                        changes={k: [None, v] for k, v in row_values(instance).items()},
                        reason=reason,
                    )
                )
        AuditEvent.objects.bulk_create(events)

    def new_batches(self) -> list[list[models.Model]]:
        """This job's new rows, one list per model, parents first."""
        if not self.existing:
            return [[i for _, i in self.accepted.get(file, [])] for file in dictionary.KEYED_FILES]
        return [[i for _, i in self.accepted.get(file, []) if self.is_new(i)] for file in dictionary.KEYED_FILES]

    @property
    def reason(self) -> str:
        return f"Imported from bundle {self.source}"

    def write(self) -> None:
        """Insert this job's new patients with all their rows (COPY, a trail entry each); change the updated
        patients through the services."""
        copy_created(self.new_batches(), user=self.user, reason=self.reason)
        if self.existing:
            self.write_updates()

    def update_operations(self) -> list["_Operation"]:
        """One service call per changed record of the updated patients (nothing for an unchanged one)."""
        ops: list[_Operation] = []
        user, reason = self.user, self.update_reason
        mine = {
            file: [i for _, i in self.accepted.get(file, []) if not self.is_new(i)] for file in dictionary.KEYED_FILES
        }
        for patient in mine["patients"]:
            if self.changed("patients", patient):
                ops.append(
                    _Operation(
                        self.row_of[id(patient)],
                        [patient],
                        lambda p=patient: update_patient(
                            patient=p, user=user, reason=reason, expected_version=p.version
                        ),
                    )
                )
        for consent in mine["consents"]:
            if consent.pk is None:
                ops.append(
                    _Operation(
                        self.row_of[id(consent)], [consent], lambda c=consent: record_consent(consent=c, user=user)
                    )
                )
            elif self.changed("consents", consent):
                ops.append(
                    _Operation(self.row_of[id(consent)], [consent], lambda c=consent: _update_consent(c, user, reason))
                )
        for file, parent_file, record in (
            ("procedures", ("leakages", "complications"), _record_procedure),
            ("followups", ("medications",), _record_visit),
        ):
            for parent in mine[file]:
                children = {
                    child_file: [
                        c
                        for c in mine[child_file]
                        if getattr(c, _PARENT[child_file]) is parent and self.changed(child_file, c)
                    ]
                    for child_file in parent_file
                }
                gone = [
                    c
                    for child_file in parent_file
                    for c in self.removed.get(child_file, [])
                    if parent.pk is not None and getattr(c, f"{_PARENT[child_file]}_id") == parent.pk
                ]
                if self.changed(file, parent) or gone or any(children.values()):
                    rows = [c for cs in children.values() for c in cs]
                    ops.append(
                        _Operation(
                            self.row_of[id(parent)],
                            [parent, *rows],
                            lambda p=parent, ch=children, g=gone, r=record: r(p, ch, g, user, reason),
                        )
                    )
        for file in ("procedures", "followups"):
            for current in self.removed.get(file, []):
                ops.append(_Operation(None, [], lambda c=current: _delete(c, user, reason), file=file, record=current))
        return ops

    def write_updates(self) -> None:
        """Run the operations, each in its own savepoint; one refused only because another correction
        must land first (a procedure date and the visits counted from it) is retried after the others."""
        for file in dictionary.KEYED_FILES:
            for _, instance in self.accepted.get(file, []):
                if not self.is_new(instance):
                    _refresh_foreign_keys(instance)  # new sites and consent versions now have their keys
        try:
            with case_rules.deferred_case_checks():  # corrections that are consistent only together land together
                self._run_operations(self.update_operations())
        except ValidationError as exc:  # the cases as a whole, checked once every correction is in
            for name, messages in _messages(exc).items():
                for message in messages:
                    self.problems.append(Problem("", None, "" if name == NON_FIELD_ERRORS else name, "", message))
            raise BundleError(self.problems) from exc

    def _run_operations(self, pending: list["_Operation"]) -> None:
        while pending:
            failed: list[tuple[_Operation, ValidationError]] = []
            for op in pending:
                state = [(obj, obj.pk, getattr(obj, "version", None), obj._state.adding) for obj in op.touched]
                try:
                    with transaction.atomic():
                        op.run()
                except ValidationError as exc:
                    for obj, pk, version, adding in state:
                        obj.pk, obj._state.adding = pk, adding
                        if version is not None:
                            obj.version = version  # type: ignore[attr-defined]
                    failed.append((op, exc))
                except StaleEditError as exc:
                    message = gettext("changed in the registry meanwhile: %(error)s") % {"error": exc}
                    self.problems.append(op.problem("record_version", message))
                    raise BundleError(self.problems) from exc
            if len(failed) == len(pending):
                for op, exc in failed:
                    for name, messages in _messages(exc).items():
                        for message in messages:
                            self.problems.append(op.problem("" if name == NON_FIELD_ERRORS else name, message))
                raise BundleError(self.problems)
            pending = [op for op, _ in failed]


@dataclass
class _Operation:
    """One service call of an update, with the bundle row it comes from (for the report)."""

    row: Row | None
    touched: list[models.Model]
    run: Any
    file: str = ""
    record: Any = None

    def problem(self, variable: str, message: str) -> Problem:
        if self.row is None:
            return Problem(
                self.file, None, variable, f"record_id {self.record.pk}", message
            )  # (a column and its value)
        return Problem(self.row.file, self.row.line, variable, self.row.raw.get(variable, ""), message)


_SIMPLE_FIELDS: dict[type, tuple[type, ...]] = {
    models.CharField: (str,),
    models.TextField: (str,),
    models.EmailField: (str,),
    models.IntegerField: (int,),
    models.SmallIntegerField: (int,),
    models.PositiveIntegerField: (int,),
    models.PositiveSmallIntegerField: (int,),
    models.BigIntegerField: (int,),
    models.BooleanField: (bool,),
    models.DecimalField: (Decimal,),
    models.DateField: (datetime.date,),
}


@functools.cache
def _field_checks(model: type[models.Model], exclude: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Model.clean_fields's checks of each field, prepared once: (field, attname, types it needs no
    conversion for, choice keys, validators, whether it may be empty); types None: the field's own clean()
    is called."""
    checks = []
    for f in model._meta.fields:
        if f.name in exclude or getattr(f, "generated", False):
            continue
        types = _SIMPLE_FIELDS.get(type(f))
        keys = None
        if f.choices is not None and f.editable:
            keys = frozenset(k for k, _ in f.flatchoices)  # type: ignore[attr-defined]
        validators = tuple(_prepared_validator(v) for v in f.validators)
        # Field.validate (null, blank, choices) skips a field that is not editable (a derived value), so an
        # empty one passes; its validators still run on a value.
        checks.append((f, f.attname, types, keys, validators, f.blank or not f.editable))
    return checks


_FUTURE = object()


def _prepared_validator(validator: Any) -> Any:
    """A validator as the screen runs it: not_in_future against the import's today; a limit validator
    (max_length, min/max value) as its own clean and compare on its fixed limit (no message built)."""
    if validator is not_in_future:
        return _FUTURE
    if isinstance(validator, BaseValidator) and not callable(validator.limit_value):
        kind = _LIMITS.get(type(validator))
        if kind is not None:  # Django's own: the comparison written out (two calls fewer per value)
            return (kind, validator.limit_value)
        return (validator.clean, validator.compare, validator.limit_value)
    return validator


_ABOVE, _BELOW, _LONGER = 1, 2, 3
_LIMITS = {MaxValueValidator: _ABOVE, MinValueValidator: _BELOW, MaxLengthValidator: _LONGER}


def _passes_full_clean(instance: models.Model, exclude: tuple[str, ...], today: datetime.date) -> bool:
    """True if `instance.full_clean(exclude, validate_unique=False, validate_constraints=False)` would pass:
    the same field checks (null, blank, choices, validators such as max_length and ranges) and the model's
    clean(), without building error lists. On False the caller runs full_clean itself for the messages."""
    for f, attname, types, keys, validators, may_be_empty in _field_checks(type(instance), exclude):
        value = getattr(instance, attname)
        if value is None or value == "" or (type(value) in (list, tuple, dict) and not value):
            if may_be_empty:
                continue
            return False  # null or blank where the field allows neither
        if types is None or type(value) not in types:
            try:
                f.clean(value, instance)
            except ValidationError:
                return False
            continue
        if keys is not None and value not in keys:
            return False
        try:
            for validator in validators:
                if validator is _FUTURE:
                    if value > today:  # registry.fields.not_in_future, with today read once per import
                        return False
                elif type(validator) is tuple:
                    if len(validator) == 2:
                        kind, limit = validator
                        if (
                            (value > limit)
                            if kind == _ABOVE
                            else (value < limit)
                            if kind == _BELOW
                            else (len(value) > limit)
                        ):
                            return False
                    else:
                        clean, compare, limit = validator
                        if compare(clean(value), limit):
                            return False
                else:
                    validator(value)
        except ValidationError:
            return False
    try:
        instance.clean()
    except ValidationError:
        return False
    return True


def _messages(exc: ValidationError) -> dict[str, list[str]]:
    return exc.message_dict if hasattr(exc, "error_dict") else {NON_FIELD_ERRORS: exc.messages}


def _update_consent(consent: Consent, user: Any, reason: str) -> None:
    with transaction.atomic():
        save_audited(consent, user=user, reason=reason, expected_version=consent.version)
        check_case(consent.patient, editing=consent)


def _record_procedure(
    procedure: Procedure, children: dict[str, list[Any]], gone: list[Any], user: Any, reason: str
) -> None:
    record_procedure(
        procedure=procedure,
        leakages=children["leakages"],
        complications=children["complications"],
        removed=gone,
        user=user,
        reason=reason,
        expected_version=procedure.version if procedure.pk else None,
    )


def _record_visit(visit: FollowUp, children: dict[str, list[Any]], gone: list[Any], user: Any, reason: str) -> None:
    record_visit(
        visit=visit,
        medications=children["medications"],
        removed=gone,
        user=user,
        reason=reason,
        expected_version=visit.version if visit.pk else None,
    )


def _delete(record: Any, user: Any, reason: str) -> None:
    """A procedure or visit the bundle leaves out, with --remove-missing; the case must still hold."""
    with transaction.atomic():
        current = type(record)._default_manager.select_for_update().filter(pk=record.pk).first()
        if current is None or current.version != record.version:
            raise StaleEditError(record)
        delete_audited(current, user=user, reason=reason)
        check_case(record.patient)


def _isolated_case_errors(instance: models.Model) -> dict[str, list[str]]:
    """The cross-record problems a model's clean() reports for `instance` alone (patients.rules.errors_for)."""
    errors_for = getattr(case_rules, "errors_for", None)
    if errors_for is None:
        return {}
    try:
        patient = instance if isinstance(instance, Patient) else _owner(instance)
    except (AttributeError, StopIteration, ValueError):
        return {}
    return errors_for(instance, patient)


_PARENT = {
    "consents": "patient",
    "procedures": "patient",
    "followups": "patient",
    "leakages": "procedure",
    "complications": "procedure",
    "medications": "followup",
}
MODEL_FILES: dict[type, str] = {
    Patient: "patients",
    Consent: "consents",
    Procedure: "procedures",
    Leakage: "leakages",
    Complication: "complications",
    FollowUp: "followups",
    Medication: "medications",
}


def _owner(instance: Any) -> Patient:
    """The patient a clinical row belongs to."""
    while not isinstance(instance, Patient):
        instance = next(getattr(instance, a) for a in ("patient", "procedure", "followup") if hasattr(instance, a))
    return instance


def _is_removed_with_parent(row: Any, removed: dict[str, list[models.Model]]) -> bool:
    """A leakage, complication or opioid row of a procedure or visit being removed goes with it."""
    for parent, file in (("procedure_id", "procedures"), ("followup_id", "followups")):
        if hasattr(row, parent) and getattr(row, parent) in {r.pk for r in removed.get(file, [])}:
            return True
    return False


@functools.cache
def _bundle_fields(file: str) -> frozenset[str]:
    """The model fields a bundle row sets (its CRF variables, without parent keys and derived values)."""
    names = {f.name for f in MODELS_BY_FILE[file]._meta.concrete_fields}
    return frozenset(
        v.name for v in dictionary.variables_for(file) if not v.is_derived and v.name in names and v.name != "study_id"
    ) | ({"study_id"} if file == "patients" else frozenset())


MODELS_BY_FILE = {file: model for model, file in MODEL_FILES.items()}


def _refresh_foreign_keys(instance: models.Model) -> None:
    """Copy parents' primary keys into the *_id fields (bulk_create does this itself, save() does not)."""
    for f in instance._meta.concrete_fields:
        if f.is_relation and f.is_cached(instance):  # type: ignore[attr-defined]
            setattr(instance, f.name, getattr(instance, f.name))


def _registry_rows(patients: dict[str, Patient]) -> dict[str, dict[int, models.Model]]:
    """The registry's rows of the updated patients by primary key, parents attached (one query per table)."""
    by_pk = {p.pk: p for p in patients.values()}
    rows: dict[str, dict[int, models.Model]] = {"patients": dict(by_pk)}
    for file, model in (("consents", Consent), ("procedures", Procedure), ("followups", FollowUp)):
        rows[file] = {}
        for obj in model.objects.filter(patient_id__in=by_pk):
            obj.patient = by_pk[obj.patient_id]
            rows[file][obj.pk] = obj
    for file, model, parent, parents in (
        ("leakages", Leakage, "procedure", rows["procedures"]),
        ("complications", Complication, "procedure", rows["procedures"]),
        ("medications", Medication, "followup", rows["followups"]),
    ):
        rows[file] = {}
        for obj in model.objects.filter(**{f"{parent}_id__in": list(parents)}):
            setattr(obj, parent, parents[getattr(obj, f"{parent}_id")])
            rows[file][obj.pk] = obj
    return rows


# --------------------------------------------------------------------------- writing (COPY)

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_NEEDS_ESCAPE = re.compile(r"[\\\n\r\t]").search


def _copy_text(value: Any) -> str:
    """A value in COPY's text format (\\N is NULL)."""
    if value is None:
        return "\\N"
    kind = type(value)
    if kind is str:
        return value.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE(value) else value
    if kind is bool:
        return "t" if value else "f"
    if kind is int or kind is Decimal:
        return str(value)
    if kind is datetime.date or kind is datetime.datetime:
        return value.isoformat()
    return str(value).translate(_COPY_ESCAPES)


class _ModelSpec:
    """How the rows of one model are written with COPY and described in the trail (row_values' rules)."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        self.table = model._meta.db_table
        self.label = model._meta.label
        self.fields = list(model._meta.concrete_fields)
        self.columns = ", ".join(connection.ops.quote_name(f.column) for f in self.fields)
        self.relations = [(f, f.target_field.attname) for f in self.fields if f.is_relation]
        self.parent = next((f for f, _ in self.relations if f.name in ("patient", "procedure", "followup")), None)
        self.auto = [f for f in self.fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)]
        self.values = operator.attrgetter(*(f.attname for f in self.fields))
        self.prepared = [
            (i, f)
            for i, f in enumerate(self.fields)
            if isinstance(f, (models.FileField, models.JSONField))
            or f.get_internal_type() in ("DurationField", "UUIDField", "BinaryField", "FloatField")
        ]
        skip = {"id", "version"}
        if not has_version_token(model):  # type: ignore[arg-type]
            skip.discard("version")
        self.trail = [
            (f.name, f.attname, not isinstance(f, (models.DecimalField, models.FloatField, models.FileField)), f)
            for f in self.fields
            if f.name not in skip
        ]
        position = {f.attname: i for i, f in enumerate(self.fields)}
        self.sequence: str | None = None
        self.trail_json = [(_json_key(name), position[attname], plain, f) for name, attname, plain, f in self.trail]

    def sequence_ids(self, cursor: Any, n: int) -> list[int]:
        # (the sequence named in its own query: pg_get_serial_sequence() beside nextval() ran for every row,
        # five times the cost; a constant regclass is resolved once)
        if self.sequence is None:  # (named once per process: a table keeps its sequence)
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [self.table])
            self.sequence = cursor.fetchone()[0]
        cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [self.sequence, n])
        return [r[0] for r in cursor.fetchall()]

    def row(self, obj: models.Model) -> tuple[str, str]:
        """(the row's COPY line, its `changes` as JSON text): the field values read once for both."""
        values = self.values(obj)
        out = changes_json(self.trail_json, values)
        if self.prepared:
            values = list(values)
            for i, f in self.prepared:
                values[i] = f.get_db_prep_save(values[i], connection)
                if isinstance(f, models.JSONField) and values[i] is not None:
                    values[i] = json.dumps(getattr(obj, f.attname), cls=f.encoder)
        return "\t".join([_copy_text(v) for v in values]) + "\n", out

    def changes(self, obj: models.Model) -> dict[str, list[Any]]:
        """{field: [None, value]} exactly as audit.services.row_values gives the created row."""
        return {
            name: [None, _trail_value(f, plain_kind, getattr(obj, attname))]
            for name, attname, plain_kind, f in self.trail
        }


_JSON_TEXT = json.encoder.encode_basestring_ascii  # (json.dumps's own string encoder, in C)
_DUMPS = json.JSONEncoder().encode


def _json_key(name: str) -> str:
    return _JSON_TEXT(name) + ": [null, "


def changes_json(entries: list[tuple[str, int, bool, Any]], values: tuple[Any, ...]) -> str:
    """`json.dumps({name: [None, value], ...})` of a created row's trail values (`_trail_value` of each
    (key, position in `values`, plain kind, field) of `entries`), the same text: each key's text made once
    per model (`_json_key`) and the plain kinds written here. At 1.6 million trail entries, JSONEncoder's
    per-call set-up and its walk of the dicts and lists cost more than the rest of the entry."""
    parts = []
    for key, i, plain_kind, f in entries:
        value = values[i]
        kind = type(value)
        if value is None:
            text = "null"
        elif plain_kind and kind is str:
            text = _JSON_TEXT(value)
        elif plain_kind and kind is int:
            text = int.__repr__(value)
        elif plain_kind and kind is bool:
            text = "true" if value else "false"
        elif plain_kind and kind is datetime.date:
            text = '"' + value.isoformat() + '"'  # (digits and dashes: nothing to escape)
        else:
            text = _DUMPS(_trail_value(f, plain_kind, value))
        parts.append(key + text + "]")
    return "{" + ", ".join(parts) + "}"


def _trail_value(f: models.Field, plain_kind: bool, value: Any) -> Any:
    """A created row's value as the trail keeps it: `_plain(_field_value(f, value))`, the common plain
    kinds without the calls."""
    kind = type(value)
    if plain_kind and (value is None or kind is str or kind is int or kind is bool):
        return value
    if plain_kind and kind is datetime.date:
        return value.isoformat()
    return _plain(_field_value(f, value))


@functools.cache
def _spec(model: type[models.Model]) -> _ModelSpec:
    return _ModelSpec(model)


def _copy(cursor: Any, table: str, columns: str, lines: Iterable[str]) -> None:
    blocks = ("".join(batch) for batch in itertools.batched(lines, 2000))
    reader = _StreamReader(blocks)
    cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", reader, 1 << 16)
    if reader.error is not None:
        raise reader.error


_EVENT_COLUMNS = (
    "at, user_id, username, action, model, object_pk, object_repr, study_id, site_code, changes, reason, extra, hash"
)


def reserve_ids(cursor: Any, tables: dict[str, list[Any]]) -> dict[type[models.Model], Iterator[int]]:
    """Primary keys from the tables' sequences for at most one new row per staged row of a chunk, taken
    before its checks: `created_payloads` then makes no query, so it runs while the writer sends the previous
    chunk. (Keys the checks leave unused are a gap in the sequence, as a rolled-back insert leaves one.)"""
    return {
        MODELS_BY_FILE[file]: iter(_spec(MODELS_BY_FILE[file]).sequence_ids(cursor, len(rows)))
        for file, rows in tables.items()
        if file in MODELS_BY_FILE and rows
    }


def _keys_for(batch: list[models.Model], spec: "_ModelSpec", cursor: Any, ids: Any) -> list[int]:
    if ids is None:
        return spec.sequence_ids(cursor, len(batch))
    keys = list(itertools.islice(ids.get(spec.model, ()), len(batch)))
    if len(keys) != len(batch):  # more new rows than staged ones: a bug, never a silently shortened chunk
        raise RuntimeError(f"{len(batch)} new {spec.label} rows but {len(keys)} reserved keys")
    return keys


def created_payloads(
    batches: list[list[models.Model]],
    *,
    user: Any,
    reason: str,
    cursor: Any = None,
    ids: dict[type[models.Model], Iterator[int]] | None = None,
) -> list[tuple[str, str]]:
    """The COPY statements (and their text) that insert new rows (parents first) and one trail entry each:
    the entries save_audited would write for each created row (the chain trigger links them). Primary keys
    come from `ids` (`reserve_ids`) or else are taken from the tables' sequences with `cursor`, so the rows
    can be sent later (by `CopyWriter`)."""
    actor, username = _actor(user)
    user_id = _copy_text(actor.pk if actor is not None else None)
    head = "\t".join((user_id, _copy_text(username), AuditEvent.Action.CREATE))
    tail = "\t".join((_copy_text(reason), "{}", ""))
    now = timezone.now().isoformat()
    alias = connection.alias  # (once: each read of the connection proxy's attribute is a lookup)
    payloads: list[tuple[str, str]] = []
    events: list[str] = []
    owners: dict[int, tuple[str, str]] = {}  # id(parent) -> (study ID, site code), parents coming first
    for batch in batches:
        if not batch:
            continue
        spec = _spec(type(batch[0]))
        label = _copy_text(spec.label)
        lines = []
        for obj, pk in zip(batch, _keys_for(batch, spec, cursor, ids), strict=True):
            obj.pk = pk
            state = obj._state
            for f, target in spec.relations:
                parent = state.fields_cache.get(f.name)
                if parent is not None:  # the parent's new key; the cache keeps the parent (as setattr would)
                    obj.__dict__[f.attname] = getattr(parent, target)
            for f in spec.auto:
                f.pre_save(obj, True)
            state.adding = False
            state.db = alias
            line, changes = spec.row(obj)
            lines.append(line)
            parent = state.fields_cache.get(spec.parent.name) if spec.parent is not None else None
            keys = owners.get(id(parent)) if parent is not None else None
            if keys is None:
                keys = owner_keys(obj)  # (a patient, or a parent from elsewhere)
            owners[id(obj)] = keys
            events.append(
                "\t".join(
                    (
                        now,
                        head,
                        label,
                        str(pk),
                        _copy_text(str(obj)[:200]),
                        _copy_text(keys[0]),
                        _copy_text(keys[1]),
                        _copy_text(changes),
                        tail,
                    )
                )
                + "\n"
            )
        payloads.append((f"COPY {spec.table} ({spec.columns}) FROM STDIN", "".join(lines)))
    if events:
        payloads.append((f"COPY {AuditEvent._meta.db_table} ({_EVENT_COLUMNS}) FROM STDIN", "".join(events)))
    return payloads


def copy_created(batches: list[list[models.Model]], *, user: Any, reason: str) -> int:
    """Insert new rows (parents first) and one trail entry each, with COPY, in the caller's transaction.
    The trail entries are those save_audited would write for each created row (the chain trigger links them)."""
    if not _postgres():
        return _bulk_created(batches, user=user, reason=reason)
    with connection.cursor() as cursor:
        send_payloads(cursor, created_payloads(batches, user=user, reason=reason, cursor=cursor))
    return sum(len(b) for b in batches)


def send_payloads(cursor: Any, payloads: list[tuple[str, str]], *, analyze: bool = False) -> None:
    """One chunk's COPY statements, the derived tables refreshed once after them (outcomes.derived,
    and the export cache's rows: exchange.export_cache).

    The foreign keys (all DEFERRABLE INITIALLY DEFERRED, as Django makes them) are checked as each
    COPY ends rather than at COMMIT: the same checks, but in the writer, while the next chunk is
    checked, where they were 10 s of the commit at 100,000 patients. `analyze`: the tables written
    are ANALYZEd first (`CopyWriter`)."""
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cursor.execute(derived.DEFER)
    cursor.execute(export_cache.DEFER)
    for sql, text in payloads:
        cursor.copy_expert(sql, io.StringIO(text), 1 << 20)
    if analyze:
        cursor.execute(f"ANALYZE {', '.join(_analyzed_tables(payloads))}")
    cursor.execute(derived.REFRESH)
    cursor.execute(export_cache.REFRESH)
    cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # (as they began: every constraint is initially deferred)


def _analyzed_tables(payloads: list[tuple[str, str]]) -> list[str]:
    """The clinical tables a chunk's COPYs wrote and the derived tables its refresh reads (not the trail:
    nothing in the refresh reads it)."""
    written = [sql.split()[1] for sql, _ in payloads]
    derived_tables = [m._meta.db_table for m in (DueWindow, AwaitingProcedure, AnalysisRow, ExportRow)]
    return [t for t in written if t != AuditEvent._meta.db_table] + derived_tables


class CopyWriter:
    """Sends one chunk's COPY statements on the import's own connection (so in its transaction) from a
    thread: PostgreSQL inserts those rows (the chain trigger hashes each trail entry, the indexes) on another
    core while this process checks the next chunk. psycopg2 releases the GIL while it sends and waits.
    The connection serves one statement at a time: a query of the main thread meanwhile (`guard`, an
    execute wrapper) first waits for the writer."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.sent = 0

    def start(self, payloads: list[tuple[str, str]]) -> None:
        self.join()
        raw = connection.connection  # the psycopg2 connection of this thread's Django connection
        self.sent += 1
        # The tables this transaction fills have no statistics of its rows (autovacuum's ANALYZE sees only
        # committed ones), so the refreshes' plans were made for small tables: seq scans and hash joins over
        # every row written so far, for each chunk's 2,000 patients. ANALYZEd after chunks 1, 2, 4, 8...
        # (0.1-0.9 s a round, 4.7 s in all at 100,000 patients): never more than half the table behind.
        analyze = self.sent & (self.sent - 1) == 0

        def send() -> None:
            try:
                with raw.cursor() as cursor:
                    send_payloads(cursor, payloads, analyze=analyze)
            except BaseException as exc:  # raised in the main thread by join()
                self.error = exc

        self.thread = threading.Thread(target=send, name="import-writer", daemon=True)
        self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            with connection.wrap_database_errors:  # psycopg2's errors as Django's (IntegrityError...)
                raise error

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def guard(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.join()
        return execute(sql, params, many, context)


def _bulk_created(batches: list[list[models.Model]], *, user: Any, reason: str) -> int:
    """copy_created for SQLite (the local demo, where COPY does not exist): bulk inserts, the same trail entries."""
    events: list[AuditEvent] = []
    for batch in batches:
        if not batch:
            continue
        spec = _spec(type(batch[0]))
        for obj in batch:
            for f, _ in spec.relations:
                if f.is_cached(obj):  # type: ignore[attr-defined]
                    setattr(obj, f.name, f.get_cached_value(obj))  # type: ignore[attr-defined]
        type(batch[0])._default_manager.bulk_create(batch, batch_size=500)
        for obj in batch:
            study_id, site_code = owner_keys(obj)
            events.append(
                change_event(
                    action=AuditEvent.Action.CREATE,
                    instance=obj,
                    user=user,
                    changes=spec.changes(obj),
                    reason=reason,
                    study_id=study_id,
                    site_code=site_code,
                )
            )
    AuditEvent.objects.bulk_create(events, batch_size=500)
    return len(events)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(
        problems, key=lambda p: (dictionary.FILES.index(p.file) if p.file in dictionary.FILES else 99, p.row or 0)
    )


@contextlib.contextmanager
def _bulk_collection() -> Iterator[None]:
    """Python's cycle collector during an import: the objects there before it (Django's, the modules')
    frozen out of its full passes, and a young generation ten times the default before a pass. At
    100,000 patients its passes cost 13.8 s of CPU (74 full ones over every object of the process);
    the chunks' rows and instances are freed by their reference counts, and the collector still runs.
    Both are set back after (a process that froze objects itself keeps them frozen)."""
    thresholds = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(max(thresholds[0], 20_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if freeze:
            gc.unfreeze()


def import_bundle(
    path: Path | str,
    *,
    user: Any = None,
    update_reason: str = "",
    remove_missing: bool = False,
    limits: Limits | None = None,
    chunk_patients: int = 2000,
) -> ImportResult:
    """Validate the whole bundle and write it in one transaction (or nothing), streamed in bounded memory.

    The files are streamed once, checked against `limits` as they are read
    (sizes declared and actual, rows per file, NUL bytes, UTF-8, line and cell
    lengths: a hostile bundle is refused at once) and copied into temporary
    staging tables. The patients are then taken in chunks of `chunk_patients`
    study IDs with all their rows: parsed against the data dictionary, checked
    by the models' rules, against each other, the registry and the cross-record
    rules (`patients.rules.case_problems`, per case), and written with COPY,
    each row with its trail entry. After the first problem nothing more is
    written but every chunk is still checked, so the report is complete (its
    first `limits.max_problems` problems listed, the rest counted); then the
    transaction is rolled back.

    A study ID already in the registry refuses the bundle, unless `update_reason`
    is given (with the acting `user`): then the registry's rows of those
    patients are matched by their `record_id` (an identified export carries
    it; a row without one is new), refused if their registry version moved on
    since the export, and changed through the clinical services only where a
    normalised value differs (an unchanged bundle writes nothing, not even a
    trail entry). Registry rows the bundle leaves out are kept, or deleted
    when `remove_missing` is given (never a consent).
    """
    path = Path(path)
    update_reason = update_reason.strip()
    if update_reason and not getattr(user, "is_authenticated", False):
        raise ValueError("an update needs the acting user")
    limits = limits or Limits.from_settings()
    if not path.exists():
        raise _refuse(path.name, "no such file or folder")
    problems = Problems(limits.max_problems)
    start = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    try:
        with contextlib.ExitStack() as stack, transaction.atomic():
            stack.enter_context(_bulk_collection())
            sources = open_sources(path, limits, stack)
            small, staged = stage_bundle(sources, limits, problems)
            if problems.total:
                raise BundleError(problems)
            today = dates.today()
            for rows in small.values():
                _parse_rows(rows, today, problems)
            if problems.total:
                raise BundleError(problems)
            head = _Import(
                small,
                user=user,
                source=path.name,
                update_reason=update_reason,
                remove_missing=remove_missing,
                problems=problems,
            )
            head.load_sites()
            head.load_versions()
            keys = _stage_keys(staged)
            heads_written = False
            # Plain imports on PostgreSQL: chunk k's rows are sent (a thread, the same connection) while
            # chunk k+1 is checked, which needs no query; reads and sequence numbers happen between.
            writer = CopyWriter() if _postgres() and not update_reason else None
            pending: list[tuple[str, str]] = []
            try:
                with connection.execute_wrapper(writer.guard) if writer else contextlib.nullcontext():
                    for first in range(0, len(keys), chunk_patients):
                        # (the first query here waits for the writer: the connection serves one statement)
                        tables = _staged_rows(staged, keys[first : first + chunk_patients])
                        job = _Import(
                            tables,
                            user=user,
                            source=path.name,
                            update_reason=update_reason,
                            remove_missing=remove_missing,
                            head=head,
                        )
                        job.prefetch()
                        ids = None
                        if writer and not problems.total:
                            with connection.cursor() as cursor:
                                ids = reserve_ids(cursor, tables)
                        if pending:
                            # the previous chunk's rows go in while this chunk is parsed, checked and its COPY
                            # text built (none of which makes a query)
                            writer.start(pending)  # type: ignore[union-attr]
                            pending = []
                        before = problems.total
                        for rows in tables.values():
                            _parse_rows(rows, today, problems)
                        if problems.total == before:  # (cells that do not parse: the rows are not checked further)
                            job.run()
                        if problems.total:
                            continue  # nothing more is written; the other chunks are still checked
                        if not heads_written:  # (the first chunk: the writer has nothing yet)
                            head.write_heads()
                            heads_written = True
                        if writer:
                            pending = created_payloads(job.new_batches(), user=user, reason=job.reason, ids=ids)
                        else:
                            job.write()
                        del job, tables
                    if writer:
                        if pending:
                            writer.start(pending)
                        writer.join()
            finally:
                if writer:
                    writer.wait()  # (an error elsewhere: the connection is free before the rollback)
            if problems.total:
                raise BundleError(problems)
            with connection.cursor() as cursor:
                for stage in staged.values():
                    cursor.execute(f"DROP TABLE {_temp_schema()}.{stage.table}")
            if not heads_written:
                head.write_heads()
            tally: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            written = 0
            for model, action, n in (
                AuditEvent.objects.filter(pk__gt=start)
                .values_list("model", "action")
                .annotate(n=Count("id"))
                .order_by()
            ):  # what this import changed, read back from the trail
                tally[action][_FILE_OF_LABEL.get(model, model)] += n
                written += n
            counts = {name: tally["create"].get(name, 0) for name in dictionary.FILES}
            updated, removed = dict(tally["update"]), dict(tally["delete"])
            if written:
                record_event(
                    action=AuditEvent.Action.IMPORT,
                    user=user,
                    reason=f"Imported from bundle {path.name}"
                    + (f"; update: {update_reason}" if update_reason else ""),
                    extra={"counts": counts, "updated": updated, "removed": removed},
                )
    except BundleError as exc:
        raise BundleError(_sorted(exc.problems), total=exc.total) from exc
    except IntegrityError as exc:  # a rule the checks above missed; the database still refused it
        raise BundleError([Problem(path.name, None, "", "", f"the database refused the bundle: {exc}")]) from exc
    return ImportResult(
        counts,
        [s.code for s in head.new_sites],
        [v.version for v in head.new_versions],
        updated,
        removed,
        trail_entries=written + (1 if written else 0),
    )


_FILE_OF_LABEL = {
    "accounts.Site": "sites",
    "patients.ConsentVersion": "consent_versions",
    "patients.Patient": "patients",
    "patients.Consent": "consents",
    "procedures.Procedure": "procedures",
    "procedures.Leakage": "leakages",
    "procedures.Complication": "complications",
    "outcomes.FollowUp": "followups",
    "outcomes.Medication": "medications",
}
