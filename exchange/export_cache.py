"""The de-identified export's CSV rows, kept written per patient (PostgreSQL).

An export used to format every cell of 1.3 million rows in its COPY queries: at 100,000 patients
that was 9 s of the database's CPU for 1.4 s of reading the tables (BENCHMARKS.md). Instead, the
rows each patient contributes to each file are kept as CSV text in `exchange_exportrow` (one row
per patient and file: her lines in the file's order, and how many), written by the same SELECTs the
export ran (`exporter.file_sql` / `wide_sql` in their `cache` form), so the bytes are the same. An
export then reads the population's rows of each file in study ID order and writes their text.

Never stale: statement triggers on every table an exported cell reads (patients, consents,
procedures, leakages, complications, visits, opioids, sites, consent versions) recompute the rows
of the patients a statement touched, in the same statement (a bulk writer defers them to once per
chunk, as `outcomes.derived` does for the worklist's tables). The population (consent, filters,
sites of the user) is not in the cache: each export still chooses it, from the analysis rows.

The SQL comes from the exporter's code, so `install` (run after every `migrate`) recreates the
functions from the running code, and, if their text changed, rewrites every patient's rows. The
function's comment holds a hash of that text: an export uses the cache only if it matches the
running code's (`usable`), and otherwise runs the direct queries, slower but never wrong.
Identified exports always run the direct queries (no second copy of names and dates is kept).
"""

import csv
import functools
import hashlib
import io
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.db import connections, transaction

from exchange import dictionary
from exchange.exporter import (
    CACHE_ORDER,
    CACHE_PATIENT,
    CACHE_STUDY_ID,
    DEIDENTIFIED,
    GUARD_PREFIX,
    WIDE_FILE,
    Column,
    ExportSpec,
    Population,
    _source_queries,
    _sql_literal,
    _wide_parts,
    crf_columns,
    file_sql,
    wide_sql,
)

TABLE = "exchange_exportrow"
REFRESH_NOW = "exchange_refresh_export_now"
SIGNATURE = f"{REFRESH_NOW}(bigint[], text[])"
# the export's cell settings (exporter.SNAPSHOT_SETTINGS: floats as Python writes them); DateStyle
# and IntervalStyle do not reach a cell (dates go through to_char, offsets are integers) but are fixed
# A custom plan for each call: a cached generic plan does not know `ids` holds one patient, and
# scanned whole tables (over a second per save).
# The planner's own choices, whatever the calling transaction set (an export's READ_SETTINGS), but
# for random_page_cost: 1.1, as for solid-state storage, instead of the 4 of spinning disks. At 4 the
# refresh of an import chunk's 2,000 patients hash-joined whole tables (0.58-0.66 s at 100,000
# patients); at 1.1 it follows their indexes (0.31 s). A rebuild of every patient's rows keeps its
# hash joins, a little slower (14.8 s, 16.1 s at 1.1), but it runs only after a migrate that changed
# this SQL, where saves and import chunks refresh at every write.
SETTINGS = (
    "SET extra_float_digits = 1 SET jit = off SET \"DateStyle\" = 'ISO, MDY' SET plan_cache_mode = force_custom_plan"
    " SET enable_sort = on SET enable_bitmapscan = on SET enable_hashjoin = on SET enable_mergejoin = on"
    " SET random_page_cost = 1.1"
)

# How a changed row names its patients (a column, or a join), and the files whose rows it can change
# (None: all of them; a patient's study ID or index procedure date is in every file).
PATIENT_OF: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "patients_patient": ("SELECT id FROM {rows}", None),
    "patients_consent": ("SELECT patient_id FROM {rows}", ("consents.csv",)),
    "procedures_procedure": ("SELECT patient_id FROM {rows}", None),
    "outcomes_followup": ("SELECT patient_id FROM {rows}", ("followups.csv", "medications.csv", WIDE_FILE)),
    "procedures_leakage": (
        "SELECT pr.patient_id FROM {rows} r JOIN procedures_procedure pr ON pr.id = r.procedure_id",
        ("leakages.csv",),
    ),
    "procedures_complication": (
        "SELECT pr.patient_id FROM {rows} r JOIN procedures_procedure pr ON pr.id = r.procedure_id",
        ("complications.csv",),
    ),
    "outcomes_medication": (
        "SELECT f.patient_id FROM {rows} r JOIN outcomes_followup f ON f.id = r.followup_id",
        ("medications.csv",),
    ),
    "accounts_site": ("SELECT p.id FROM {rows} r JOIN patients_patient p ON p.site_id = r.id", None),
    "patients_consentversion": (
        "SELECT c.patient_id FROM {rows} r JOIN patients_consent c ON c.consent_version_id = r.id",
        ("consents.csv",),
    ),
}

# A bulk writer's chunk (exchange.importer): the triggers note the patients, REFRESH writes their
# rows once, in the same transaction (as outcomes.derived.DEFER/REFRESH, whose setting it shares).
DEFER = "CREATE TEMPORARY TABLE IF NOT EXISTS exchange_deferred_export (patient_id bigint) ON COMMIT DROP"
REFRESH = (
    f"SELECT {REFRESH_NOW}(array_agg(DISTINCT patient_id), NULL) FROM pg_temp.exchange_deferred_export"
    " HAVING count(*) > 0; TRUNCATE pg_temp.exchange_deferred_export"
)


@functools.cache
def cached_files() -> tuple[str, ...]:
    """The member names kept in the cache: every file of patient rows, and the wide file (fixed by
    the code: worked out once per process, not at every export)."""
    sources = _source_queries(_spec(), Population("{}", "{}"))
    return (*(f"{f}.csv" for f in dictionary.FILES if sources[f].patient_key), WIDE_FILE)


def _spec() -> ExportSpec:
    return ExportSpec(level=DEIDENTIFIED, packages=False, reason="export cache")


def _cell(column: Column, ref: str) -> str:
    """A cell as COPY's CSV writes it: a text cell in quotes (its quotes doubled) if it holds a
    delimiter, a quote or a line break. Other cells (numbers, dates, yes/no) never do, and a text
    cell is never '' (the guard makes it NULL, which `concat` writes as nothing, as COPY does)."""
    probe = column.sql(lambda name: f'"{name}"') if column.sql else ""
    if not probe.startswith(GUARD_PREFIX):
        return ref
    return f"""(CASE WHEN {ref} ~ '[",\\r\\n]' THEN '"' || replace({ref}, '"', '""') || '"' ELSE {ref} END)"""


def _line(columns: list[Column]) -> str:
    """The row's CSV line; `concat` writes NULL as nothing and takes at most 100 arguments."""
    parts: list[str] = []
    for column in columns:
        if column.sql is not None:
            parts += ["','", _cell(column, f's."{column.name}"')] if parts else [_cell(column, f's."{column.name}"')]
    parts.append("E'\\n'")
    while len(parts) > 100:
        parts = [f"concat({', '.join(parts[i : i + 100])})" for i in range(0, len(parts), 100)]
    return f"concat({', '.join(parts)})"


def _rows_sql(member: str, mogrify: Callable[[str, Any], bytes], ids: str) -> str:
    """INSERT of the cache rows of `member` for the patients in the array expression `ids`."""
    spec = _spec()
    population = Population(
        "{}",
        "{}",
        from_sql=f"(SELECT p.id, p.study_id, 0::bigint AS rank FROM patients_patient p WHERE p.id = ANY({ids})) pop",
        ids_sql=ids,
    )
    if member == WIDE_FILE:
        columns = _wide_parts(spec)[0]
        select, keys = wide_sql(spec, columns, mogrify, population, cache=True), 0
    else:
        file = member.removesuffix(".csv")
        columns = crf_columns(file, spec)
        select = file_sql(file, spec, columns, mogrify, population, cache=True)
        keys = len(_source_queries(spec, population)[file].sql_order) - 1
    order = ", ".join(f's."{CACHE_ORDER}{i}"' for i in range(keys))
    # in study ID order, as an export reads them: a rebuild's rows lie in that order on disk
    return (
        f"INSERT INTO {TABLE} (file, patient_id, study_id, rows, body)"
        f' SELECT {_sql_literal(member)}, s."{CACHE_PATIENT}", s."{CACHE_STUDY_ID}", count(*),'
        f" string_agg({_line(columns)}, ''{' ORDER BY ' + order if order else ''})"
        f' FROM ({select} OFFSET 0) s GROUP BY s."{CACHE_PATIENT}", s."{CACHE_STUDY_ID}"'
        f' ORDER BY s."{CACHE_STUDY_ID}"'
    )


def functions_sql(mogrify: Callable[[str, Any], bytes]) -> tuple[str, str]:
    """(the SQL creating the refresh functions and triggers, its hash). `files` NULL: every file."""
    inserts = "".join(
        f"    IF files IS NULL OR {_sql_literal(member)} = ANY(files) THEN\n"
        f"        {_rows_sql(member, mogrify, 'ids')};\n    END IF;\n"
        for member in cached_files()
    )
    every = "ARRAY[" + ", ".join(map(_sql_literal, cached_files())) + "]"
    now = (
        f"CREATE OR REPLACE FUNCTION {REFRESH_NOW}(ids bigint[], files text[]) RETURNS void LANGUAGE plpgsql"
        f" {SETTINGS} AS $fn$\nBEGIN\n"
        # concurrent refreshes of one patient take turns, as outcomes_refresh_due's do (a row lock; each
        # statement of the function then sees what the first one committed, and inserts no duplicate)
        "    PERFORM 1 FROM patients_patient WHERE id = ANY(ids) ORDER BY id FOR NO KEY UPDATE;\n"
        # (by the primary key, file first: `files IS NULL OR ...` left the planner a scan of the whole
        # table, 0.25 s for each chunk of an import at 100,000 patients)
        f"    DELETE FROM {TABLE} WHERE file = ANY(coalesce(files, {every})) AND patient_id = ANY(ids);\n"
        f"{inserts}END\n$fn$;\n"
    )
    patients = " ".join(f"WHEN '{table}' THEN {_sql_literal(sql)}" for table, (sql, _) in PATIENT_OF.items())
    files = " ".join(
        f"WHEN '{table}' THEN {'NULL' if f is None else 'ARRAY[' + ', '.join(map(_sql_literal, f)) + ']'}"
        for table, (_, f) in PATIENT_OF.items()
    )
    changed = f"""
CREATE OR REPLACE FUNCTION exchange_export_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    ids bigint[];
    patients text := CASE TG_TABLE_NAME {patients} END;
    files text[] := CASE TG_TABLE_NAME {files} END;
BEGIN
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('SELECT array_agg(DISTINCT x) FROM (%s) u(x)', replace(patients, '{{rows}}', 'new_rows')) INTO ids;
    ELSIF TG_OP = 'DELETE' THEN
        EXECUTE format('SELECT array_agg(DISTINCT x) FROM (%s) u(x)', replace(patients, '{{rows}}', 'old_rows')) INTO ids;
    ELSE
        EXECUTE format('SELECT array_agg(DISTINCT x) FROM (%s UNION %s) u(x)',
                       replace(patients, '{{rows}}', 'new_rows'), replace(patients, '{{rows}}', 'old_rows')) INTO ids;
    END IF;
    IF ids IS NULL THEN
        RETURN NULL;
    ELSIF current_setting('outcomes.defer_refresh', true) = 'on'
          AND to_regclass('pg_temp.exchange_deferred_export') IS NOT NULL THEN  -- a bulk writer's chunk
        INSERT INTO pg_temp.exchange_deferred_export (patient_id) SELECT unnest(ids);
    ELSE
        PERFORM {REFRESH_NOW}(ids, files);
    END IF;
    RETURN NULL;
END
$fn$;
"""
    triggers = "".join(
        f"DROP TRIGGER IF EXISTS {table}_export_{op} ON {table};"
        f"CREATE TRIGGER {table}_export_{op} AFTER {op.upper()} ON {table} REFERENCING {refs}"
        " FOR EACH STATEMENT EXECUTE FUNCTION exchange_export_changed();\n"
        for table in PATIENT_OF
        for op, refs in (
            ("insert", "NEW TABLE AS new_rows"),
            ("update", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
            ("delete", "OLD TABLE AS old_rows"),
        )
    )
    sql = now + changed + triggers
    digest = hashlib.sha256(sql.encode()).hexdigest()
    return sql + f"COMMENT ON FUNCTION {SIGNATURE} IS '{digest}';\n", digest


@functools.cache
def _definition(alias: str) -> tuple[str, str]:
    connection = connections[alias]
    connection.ensure_connection()
    return functions_sql(connection.connection.cursor().mogrify)


def installed_digest(cursor: Any) -> str | None:
    cursor.execute(f"SELECT obj_description(to_regprocedure('{SIGNATURE}'), 'pg_proc')")
    return cursor.fetchone()[0]


def install(alias: str = "default") -> bool:
    """Create the functions and triggers from the running code and rewrite every patient's rows, if
    their definition changed. True if it rewrote them. PostgreSQL only."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return False
    sql, digest = _definition(alias)
    with transaction.atomic(using=alias), connection.cursor() as cursor:  # the functions with their rows
        if installed_digest(cursor) == digest:
            return False
        cursor.execute(sql)
        cursor.execute(f"TRUNCATE {TABLE}")
        cursor.execute(f"SELECT {REFRESH_NOW}(array(SELECT id FROM patients_patient), NULL)")
    return True


def usable(alias: str) -> bool:
    """Whether an export may read the cache on `alias`: PostgreSQL, installed by this code."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        return installed_digest(cursor) == _definition(alias)[1]


# ----------------------------------------------------------------------------- reading


# Past this many bits per exported patient (ids far apart: a sequence moved on, most patients
# deleted), the population goes as an array instead: slower to plan, but never a huge literal.
BITS_PER_PATIENT = 64


def population_bits(ids_literal: str) -> tuple[int, str]:
    """The population (`Population.ids`, an array literal) as a bit string: (its length in bits,
    a bytea literal), bit n set for patient n (get_bit's order: least significant bit first). A
    test per row costs nothing and nothing to plan, where `= ANY` of 100,000 ids cost the planner
    70 ms of estimates per file. (0, the array literal) for no one, or ids too far apart for bits."""
    import numpy as np

    inner = ids_literal.strip("{}")
    ids = np.array(inner.split(",") if inner else [], dtype=np.int64)
    top = int(ids.max()) + 1 if ids.size else 0
    if not top or top > BITS_PER_PATIENT * ids.size + 1_000_000:  # no one, or ids far apart
        return 0, ids_literal
    bits = np.zeros(top, dtype=bool)
    bits[ids] = True
    return bits.size, "'\\x" + np.packbits(bits, bitorder="little").tobytes().hex() + "'::bytea"


def member_sql(member: str, bits: tuple[int, str]) -> str:
    """The population's rows of one cached file, in study ID order (the index on file and study ID,
    which READ_SETTINGS make the planner follow), each patient's text one row of COPY's text format."""
    size, literal = bits
    if size:
        member_of = f"e.patient_id < {size} AND get_bit({literal}, e.patient_id) = 1"
    else:
        member_of = f"e.patient_id = ANY({_sql_literal(literal)}::bigint[])"
    return f"SELECT e.body FROM {TABLE} e WHERE e.file = {_sql_literal(member)} AND {member_of} ORDER BY e.study_id"


# The planner would sort the file's text by study ID (it guesses a handful of rows pass the bit
# test): 0.25 s of the visits file's 0.36 s at 100,000 patients; the index gives that order.
# Set once in an export's snapshot on each connection that reads the cache (its other files there are
# the few sites and consent versions).
READ_SETTINGS = "SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off"
# and reset after them: an export inside a caller's transaction (a savepoint) would leave them set
READ_RESET = "SET LOCAL enable_sort TO DEFAULT; SET LOCAL enable_bitmapscan TO DEFAULT"

_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v", b"\\": b"\\"}
_ESCAPE = re.compile(rb"\\(.)", re.S)


def unescape(lines: bytes) -> bytes:
    """Whole rows of COPY's text format (one column: a patient's CSV text) back to that text: each
    row ends in a newline COPY added, and the text's own newlines, tabs and backslashes come
    escaped. Most blocks escape nothing but the newlines: once every "\\n" is a newline again, no
    backslash is left (one left means another escape, or an escaped backslash before an "n", was
    there); then a regular expression reads every escape from the start."""
    text = lines.replace(b"\n", b"")
    plain = text.replace(b"\\n", b"\n")
    if b"\\" not in plain:
        return plain
    return _ESCAPE.sub(lambda m: _ESCAPES[m.group(1)], text)


def csv_records(text: bytes) -> int:
    """How many CSV records whole lines of CSV hold (a quoted cell may hold a line break)."""
    if b'"' not in text:
        return text.count(b"\n")
    return sum(1 for _ in csv.reader(io.StringIO(text.decode("utf-8"), newline="")))


class CachedText:
    """A cached file's CSV bytes (header first) from the blocks of its COPY (`member_sql`); `rows`
    counts its records as they pass."""

    def __init__(self, blocks: Iterable[bytes], header: bytes) -> None:
        self.blocks, self.header, self.rows = blocks, header, 0

    def __iter__(self) -> Iterator[bytes]:
        yield self.header
        carry = b""
        for block in self.blocks:
            if carry:
                block = carry + block
            cut = block.rfind(b"\n") + 1  # COPY's rows are whole lines: keep a cut row for the next block
            carry = block[cut:]
            if cut:
                text = unescape(block[:cut])
                self.rows += csv_records(text)
                yield text
        if carry:
            raise RuntimeError("the export cache's COPY ended inside a row")
