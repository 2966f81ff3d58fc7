"""Hostile bundles are refused early, with a clear message, in bounded memory.

The bundles are made here: a real zip bomb of highly compressible data, a
CSV of more than a million lines written lazily, NUL bytes, corrupt zips,
bytes that are not UTF-8, overlong cells and lines. The big ones are imported
by a child process (`manage.py import_bundle` against this test database)
whose address space is capped with RLIMIT_AS and whose peak RSS it reports.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import zipfile
from io import StringIO
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from exchange.importer import BundleError, Limits, import_bundle
from patients.models import Patient
from tests.conftest import DEMO_BUNDLE

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024**2
ADDRESS_SPACE_CAP = 2048 * MiB  # the child cannot grow past this whatever the bundle holds
RSS_CEILING_MB = 400  # what a refused hostile bundle may cost the importing process at most

CHILD = """
import json, os, sys
sys.path.insert(0, os.getcwd())
import django
django.setup()
from io import StringIO
from django.core.management import CommandError, call_command
err = StringIO()
try:
    call_command("import_bundle", sys.argv[1], stdout=StringIO(), stderr=err)
    outcome = "imported"
except CommandError:
    outcome = "refused"
# VmHWM, not getrusage: ru_maxrss would carry the forking parent's peak over exec
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"outcome": outcome, "report": err.getvalue(), "max_rss_mb": int(hwm.split()[1]) / 1024}))
"""


def _database_url() -> str:
    db = settings.DATABASES["default"]
    return (
        f"postgres://{quote(db['USER'])}:{quote(str(db['PASSWORD']))}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


def import_in_child(path: Path) -> dict:
    """import_bundle in a fresh process under an address-space cap; its outcome, report and peak RSS."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))

    env = {**os.environ, "DATABASE_URL": _database_url(), "DJANGO_DEBUG": "True"}
    env.pop("TEST_DATABASE_NAME", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=cap,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def demo_zip(tmp_path: Path, replace: dict[str, bytes] | None = None) -> Path:
    """The demo bundle as a zip, with some of its files replaced."""
    target = tmp_path / "bundle.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(DEMO_BUNDLE.glob("*.csv")):
            data = (replace or {}).get(path.name)
            zf.writestr(path.name, data if data is not None else path.read_bytes())
    return target


def refused(path: Path, **kwargs) -> BundleError:
    before = (Patient.objects.count(), AuditEvent.objects.count())
    with pytest.raises(BundleError) as caught:
        import_bundle(path, **kwargs)
    assert (Patient.objects.count(), AuditEvent.objects.count()) == before, "a refused bundle wrote something"
    return caught.value


def report(exc: BundleError) -> str:
    return "\n".join(str(p) for p in exc.problems)


def header(name: str) -> bytes:
    return (DEMO_BUNDLE / name).read_bytes().splitlines(keepends=True)[0]


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """A real zip bomb: 10 MB on disk, 2.1 GiB of newlines once inflated (more than the 2 GiB limit)."""
    target = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(DEMO_BUNDLE.glob("*.csv")):
            if path.name != "followups.csv":
                zf.write(path, path.name)
        with zf.open("followups.csv", "w", force_zip64=True) as fh:
            fh.write(header("followups.csv"))
            block = b"\n" * MiB
            for _ in range(2150):
                fh.write(block)
    assert target.stat().st_size < 20 * MiB
    return target


def test_a_zip_bomb_is_refused_by_its_declared_size_in_bounded_memory(zip_bomb):
    result = import_in_child(zip_bomb)
    assert result["outcome"] == "refused"
    assert (
        "the zip expands to 2,1" in result["report"] and "more than the limit of 2,048 MiB; refused" in result["report"]
    )
    assert result["max_rss_mb"] < RSS_CEILING_MB


def test_a_bomb_within_the_total_is_stopped_at_the_per_file_limit_while_streaming(tmp_path, settings):
    """A smaller bomb under tighter limits: the declared size of the file refuses it before reading."""
    settings.IMPORT_MAX_FILE_BYTES = 64 * MiB
    target = tmp_path / "bomb.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(DEMO_BUNDLE.glob("*.csv")):
            if path.name != "medications.csv":
                zf.write(path, path.name)
        with zf.open("medications.csv", "w") as fh:
            fh.write(header("medications.csv") + b"\n" * (100 * MiB))
    exc = refused(target)
    assert "medications.csv: the file is 100 MiB uncompressed, more than the limit of 64 MiB per file" in report(exc)


def test_a_zip_whose_directory_understates_a_file_is_refused_as_corrupt(tmp_path):
    """The central directory claims 100 bytes for a file that inflates to megabytes: the reader stops at
    the declared size and the checksum refuses it."""
    target = demo_zip(tmp_path, {"medications.csv": header("medications.csv") + b"\n" * (8 * MiB)})
    data = bytearray(target.read_bytes())
    with zipfile.ZipFile(target) as zf:
        info = zf.getinfo("medications.csv")
    name = b"medications.csv"
    at = data.index(b"PK\x01\x02")  # the central directory's records: size at +24, name at +46
    while data[at + 46 : at + 46 + len(name)] != name:
        at = data.index(b"PK\x01\x02", at + 4)
    assert int.from_bytes(data[at + 24 : at + 28], "little") == info.file_size
    data[at + 24 : at + 28] = (100).to_bytes(4, "little")
    target.write_bytes(bytes(data))
    exc = refused(target)
    assert "medications.csv: the file cannot be read from the bundle (corrupt zip?)" in report(exc)


def test_a_million_line_csv_is_refused_at_the_row_limit_in_bounded_memory(tmp_path):
    """1,200,000 visit rows written lazily into the zip; the importer refuses the file past 1,000,000 rows
    without holding it."""
    target = tmp_path / "million.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(DEMO_BUNDLE.glob("*.csv")):
            if path.name != "followups.csv":
                zf.write(path, path.name)
        cells = header("followups.csv").count(b",")
        with zf.open("followups.csv", "w", force_zip64=True) as fh:
            fh.write(header("followups.csv"))
            for i in range(1_200):
                fh.write(
                    b"".join(b"PSP-%07d,baseline" % (i * 1000 + j) + b"," * (cells - 1) + b"\n" for j in range(1000))
                )
    result = import_in_child(target)
    assert result["outcome"] == "refused"
    assert "followups.csv: the file has more than 1,000,000 rows, the limit per file" in result["report"]
    assert result["max_rss_mb"] < RSS_CEILING_MB


def test_the_row_limit_is_configurable(tmp_path):
    exc = refused(DEMO_BUNDLE, limits=Limits(max_rows=5))
    assert "the file has more than 5 rows, the limit per file" in report(exc)
    with pytest.raises(CommandError):
        call_command("import_bundle", str(DEMO_BUNDLE), "--max-rows", "5", stdout=StringIO(), stderr=StringIO())


def test_a_nul_byte_is_refused_naming_the_file_and_offset(tmp_path):
    data = (DEMO_BUNDLE / "patients.csv").read_bytes()
    at = data.index(b"Demo Patient 01")
    target = demo_zip(tmp_path, {"patients.csv": data[:at] + b"\x00" + data[at:]})
    exc = refused(target)
    assert f"patients.csv: the file contains a NUL byte (offset {at})" in report(exc)


def test_bytes_that_are_not_utf8_are_refused_with_their_offset(tmp_path):
    data = (DEMO_BUNDLE / "consents.csv").read_bytes()
    at = len(data) - 5
    target = demo_zip(tmp_path, {"consents.csv": data[:at] + b"\xff" + data[at:]})
    exc = refused(target)
    assert f"consents.csv: the file is not UTF-8 (byte 0xff at offset {at})" in report(exc)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not a zip at all", "bundle.zip: not a folder or a zip file"),
        (None, "the zip is corrupt"),  # a real zip cut in half
    ],
)
def test_a_corrupt_zip_is_refused(tmp_path, content, expected):
    target = demo_zip(tmp_path)
    if content is None:
        whole = target.read_bytes()
        content = whole[: len(whole) // 2] + whole[-22:]  # the end record survives, the directory does not
    target.write_bytes(content)
    assert expected in report(refused(target))


def test_a_huge_cell_and_a_huge_line_are_refused(tmp_path):
    data = (DEMO_BUNDLE / "patients.csv").read_text(encoding="utf-8")
    cell = data.replace("Demo Patient 01", '"' + "x" * 70_000 + '"', 1).encode()
    exc = refused(demo_zip(tmp_path, {"patients.csv": cell}))
    assert "patients.csv, row 2: unreadable CSV: a cell is longer than 65,536 characters" in report(exc)
    line = (data.rstrip("\n") + "," * (2 * MiB) + "\n").encode()
    exc = refused(demo_zip(tmp_path, {"patients.csv": line}))
    assert "patients.csv: a line is longer than 1,048,576 characters; refused" in report(exc)


def test_the_report_lists_200_problems_and_counts_the_rest(tmp_path):
    folder = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, folder)
    path = folder / "medications.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    bad = [",".join(["PSP-0001", "baseline", "aspirin", "1"] + [""] * (lines[0].count(",") - 3))] * 450
    path.write_text("\n".join([lines[0], *lines[1:], *bad]) + "\n", encoding="utf-8")
    exc = refused(folder)
    assert len(exc.problems) == 200 and exc.total >= 450
    assert all(p.file == "medications" and p.variable == "drug" for p in exc.problems)
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_bundle", str(folder), stdout=StringIO(), stderr=err)
    assert f"... and {exc.total - 200} more problems, not listed" in err.getvalue()


def test_a_file_of_one_patient_repeated_is_refused_before_any_chunk_is_read(tmp_path):
    """One study ID on 5,000 rows would make one unbounded chunk: refused after staging, naming it."""
    folder = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, folder)
    path = folder / "medications.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], *[lines[1]] * 5000]) + "\n", encoding="utf-8")
    exc = refused(folder)
    assert "medications.csv: 5,000 rows have study ID 'PSP-0001', more than the limit of 1,000 rows per patient" in (
        report(exc)
    )
