"""The export's SQL engine (COPY per file, cells formatted and guarded in PostgreSQL) against
the Python writer it replaces on PostgreSQL: the CSV guard of registry/csv_safety.py and Python's
csv module are the oracle, cell by cell on hostile values and file by file on a messy cohort."""

import csv
import datetime
import io
import threading
import zipfile
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from exchange import exporter
from exchange.exporter import ExportSpec, export_zip, plain_decimal, sql_cell
from patients.models import Patient
from registry.csv_safety import neutralise, stream_csv
from tests.bundles import write_bundle
from tests.factories import ConsentFactory, FollowUpFactory, PatientFactory, ProcedureFactory

pytestmark = pytest.mark.django_db

HOSTILE_TEXT = [
    "=1+1",
    '=HYPERLINK("http://evil.example","click")',
    "+41 79 000",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1",
    "\n=1",
    "\r\n=1",
    "'=already quoted",
    " =1 (a space first)",
    "=",
    "-",
    "",
    "plain",
    "a,b",
    'say "hi"',
    '"',
    "line 1\nline 2",
    "line 1\r\nline 2",
    "\\.",
    "NULL",
    "１=1 (full-width digit)",
    "＝1 (full-width equals: not in the guard, in either)",
    "\u200b=1 (zero-width space first)",
    "é=1",
    "🩻=1",
    "cmd|' /C calc'!A0",
]
# A carriage return with no line feed, comma or quote: Python's writer (line terminator "\n")
# leaves the cell unquoted, which no CSV reader reads back as one cell; COPY quotes it (RFC 4180).
LONE_CR = ["a\rb", "\r=1"]

FLOATS = [
    0.0,
    -0.0,
    1.0,
    2.5,
    -3.0,
    100.0,
    14.000000000000002,
    0.1 + 0.2,
    1 / 3,
    200 / 3,
    0.15 * 30,
    1e-5,
    1.5e-7,
    123456.789,
    1e15,
    2.5e15,
    9007199254740992.0,
    9999999999999998.0,
    1e16,
    -1e16,
    1e22,
    -1e22,
    -1.5,
    5e-324,
    float("inf"),
    float("-inf"),
    float("nan"),
]


def copy_csv(select: str) -> str:
    out = io.BytesIO()
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER true)", out)
    return out.getvalue().decode("utf-8")


def python_csv(values: list) -> str:
    return "".join(stream_csv(["v", "n"], [[v, i] for i, v in enumerate(values)]))


def sql_csv(kind: str, literals: list[str], sql_type: str) -> str:
    rows = ", ".join(f"({lit}::{sql_type}, {i})" for i, lit in enumerate(literals))
    return copy_csv(f'SELECT {sql_cell(kind, "x.v")} AS "v", x.n AS "n" FROM (VALUES {rows}) AS x(v, n) ORDER BY x.n')


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def test_the_sql_guard_writes_every_hostile_cell_byte_for_byte_as_the_python_guard():
    assert sql_csv("text", [literal(t) for t in HOSTILE_TEXT], "text") == python_csv(HOSTILE_TEXT)
    assert sql_csv("text", ["NULL"], "text") == python_csv([None])


def test_a_lone_carriage_return_is_guarded_alike_and_quoted_by_copy_so_that_it_reads_back():
    got = sql_csv("text", [literal(t) for t in LONE_CR], "text")
    assert got == 'v,n\n"a\rb",0\n"\'\r=1",1\n'
    assert [r[0] for r in csv.reader(io.StringIO(got, newline=""))][1:] == [neutralise(t) for t in LONE_CR]


def test_floats_are_written_as_python_repr():
    assert sql_csv("float", [literal(repr(f)) for f in FLOATS], "float8") == python_csv(FLOATS)
    assert sql_csv("float", ["NULL"], "float8") == python_csv([None])


def test_decimals_booleans_dates_and_integers_are_written_as_python_writes_them():
    decimals = ["200.000", "12.50", "0.000", "6.5", "0.150", "39.999"]
    assert sql_csv("decimal_trim", decimals, "numeric(6,3)") == python_csv(
        [plain_decimal(Decimal(d)) for d in decimals]
    )
    assert sql_csv("decimal", ["6.0", "0.0", "10.0"], "numeric(3,1)") == python_csv(
        [Decimal("6.0"), Decimal("0.0"), Decimal("10.0")]
    )
    assert sql_csv("bool", ["true", "false", "NULL"], "boolean") == python_csv([True, False, None])
    dates = [datetime.date(2019, 2, 28), datetime.date(1, 1, 1), datetime.date(9999, 12, 31)]
    assert sql_csv("date", [literal(d.isoformat()) for d in dates], "date") == python_csv(dates)
    assert sql_csv("int", ["-14", "0", "32767"], "int") == python_csv([-14, 0, 32767])


def zip_of(**kwargs) -> zipfile.ZipFile:
    engine = kwargs.pop("engine")
    return zipfile.ZipFile(io.BytesIO(b"".join(export_zip(ExportSpec(**kwargs), engine=engine))))


def assert_engines_agree(**kwargs) -> None:
    by_sql, by_python = zip_of(engine="sql", **kwargs), zip_of(engine="python", **kwargs)
    names = [n for n in by_python.namelist() if n.endswith(".csv")]
    assert names == [n for n in by_sql.namelist() if n.endswith(".csv")]
    for name in names:
        assert by_sql.read(name) == by_python.read(name), name
    import json

    files = {k: v for k, v in json.loads(by_sql.read("manifest.json"))["files"].items() if k.endswith(".csv")}
    assert files == {k: v for k, v in json.loads(by_python.read("manifest.json"))["files"].items() if k in files}


@pytest.fixture
def messy(tmp_path):
    folder = write_bundle(tmp_path / "bundle", patients=120, seed=5)
    call_command("import_bundle", str(folder), stdout=StringIO())
    site = Patient.objects.first().site
    hostile = PatientFactory(site=site, notes="=cmd|' /C calc'!A0\r\n@x", primary_tumour_other="-1+1")
    ConsentFactory(patient=hostile, obtained_by="+RN")
    FollowUpFactory(
        patient=hostile, visit_date=ProcedureFactory(patient=hostile, cement_product="=HYPERLINK(1)").procedure_date
    )


@pytest.mark.parametrize("level", ["identified", "deidentified"])
@pytest.mark.parametrize("shape", ["both", "wide"])
def test_the_sql_engine_writes_the_same_bytes_as_the_python_one(messy, level, shape):
    assert_engines_agree(level=level, shape=shape, reason="comparison")


def test_the_engines_agree_under_filters(messy):
    year = Patient.objects.order_by("enrolment_date").first().enrolment_date.year
    filters = {"procedure_from": f"{year}-01-01", "procedure_to": f"{year + 3}-12-31", "approach": "interpedicular"}
    assert_engines_agree(filters=filters)
    patient = Patient.objects.order_by("study_id").last()
    assert_engines_agree(filters={"site": patient.site.code, "primary_tumour": patient.primary_tumour})
    assert_engines_agree(filters={"site": patient.site.code, "locked_only": "true"})  # no locked case: no one


def copy_threads() -> int:
    return sum(t.name == "export-copy" for t in threading.enumerate())


def test_an_abandoned_copy_is_cancelled_and_the_connection_stays_usable(monkeypatch):
    monkeypatch.setattr(exporter, "COPY_BLOCK", 4096)  # a one-page pipe: the COPY waits for the zip

    class Abandoned(Exception):
        pass

    copy = exporter._CopyOut(
        "COPY (SELECT g, repeat('x', 100) FROM generate_series(1, 2000000) g) TO STDOUT WITH (FORMAT csv, HEADER true)"
    )
    with pytest.raises(Abandoned), transaction.atomic():  # the export's snapshot is an atomic block too
        blocks = iter(copy)
        assert next(blocks).startswith(b"g,repeat\n1,xxx")
        assert copy_threads() == 1
        blocks.close()  # what an abandoned StreamingHttpResponse does to the generator
        assert copy_threads() == 0
        raise Abandoned
    assert copy.rows == 0  # cancelled, not read to the end
    assert Patient.objects.count() == 0  # the connection answers


def test_an_abandoned_download_leaves_no_copy_running(messy):
    stream = export_zip(ExportSpec(), engine="sql")
    assert next(stream).startswith(b"PK")  # the first entry's header, before any table is read
    stream.close()
    assert copy_threads() == 0
    assert Patient.objects.count() > 100


def test_the_python_engine_query_count_is_pinned(demo_cohort, django_assert_num_queries):
    # one query per bundle file, three for the wide file, the snapshot's savepoint and its release
    with django_assert_num_queries(14):
        b"".join(export_zip(ExportSpec(), engine="python"))
