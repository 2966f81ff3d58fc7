"""Reading export zips in tests, and the checks both the demo and the messy cohort run."""

import csv
import io
import zipfile
from io import StringIO
from pathlib import Path

from django.core.management import call_command

from exchange.exporter import ExportSpec, export_zip
from patients.models import Patient

TIMEPOINTS = ("baseline", "post", "w1", "m1", "m3", "m6", "m12")
WIDE_MEASURES = ("status", "day", "vas", "odi_score", "opioid_count", "mme_per_day")


def export(**kwargs) -> zipfile.ZipFile:
    """An export zip; with the statistics-package files unless `packages=False` (asked for in the app)."""
    return zipfile.ZipFile(io.BytesIO(b"".join(export_zip(ExportSpec(**{"packages": True, **kwargs})))))


def package_names(zf: zipfile.ZipFile) -> list[str]:
    """The statistics-package members of an export zip: SPSS, Stata and the R script."""
    return [n for n in zf.namelist() if n.startswith(("spss/", "stata/")) or n == "read_registry.R"]


def table(zf: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    """The rows of one CSV of the zip ("followups" or "followups.csv")."""
    name = name if name.endswith(".csv") else f"{name}.csv"
    return list(csv.DictReader(io.StringIO(zf.read(name).decode("utf-8"))))


def assert_wide_agrees_with_long(zf: zipfile.ZipFile) -> None:
    """One wide row per patient, each visit cell equal to followups.csv, index columns equal to procedures.csv."""
    long = {(v["study_id"], v["timepoint"]): v for v in table(zf, "followups")}
    wide = table(zf, "analysis_wide")
    assert [w["study_id"] for w in wide] == [p["study_id"] for p in table(zf, "patients")]
    seen = 0
    for row in wide:
        for tp in TIMEPOINTS:
            visit = long.get((row["study_id"], tp))
            seen += visit is not None
            for measure in WIDE_MEASURES:
                assert row[f"{measure}_{tp}"] == (visit[measure] if visit else ""), (row["study_id"], tp, measure)
    assert seen == len(long)
    index = {p["study_id"]: p for p in table(zf, "procedures") if p["procedure_number"] == "1"}
    for row in wide:
        if row["study_id"] in index:
            assert row["index_cement_volume_ml"] == index[row["study_id"]]["cement_volume_ml"]


def without_record_ids(data: bytes) -> list[list[str]]:
    """A CSV's cells with the record_id column blanked (a new registry gives its rows new keys)."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    if rows and "record_id" in rows[0]:
        col = rows[0].index("record_id")
        for row in rows[1:]:
            row[col] = ""
    return rows


def assert_round_trip(tmp_path: Path) -> None:
    """Identified export -> import into an empty registry -> export: the same files, byte for byte
    except the registry's own row keys (record_id), which a new registry assigns afresh; every
    record_version is 1 again, as in a fresh registry."""
    first = export(level="identified", reason="round trip")
    first.extractall(tmp_path / "exported")
    Patient.objects.all().delete()
    call_command("import_bundle", str(tmp_path / "exported"), stdout=StringIO())
    second = export(level="identified", reason="round trip")
    names = [n for n in first.namelist() if n.endswith(".csv") and "/" not in n]  # the bundle an import reads
    assert names == [n for n in second.namelist() if n.endswith(".csv") and "/" not in n]
    for name in names:
        a, b = first.read(name), second.read(name)
        if name in ("sites.csv", "consent_versions.csv", "analysis_wide.csv", "data_dictionary.csv"):
            assert a == b, name  # no row keys in these
        else:
            assert without_record_ids(a) == without_record_ids(b), name
            assert len(a) > 0 and b"record_id" in b.split(b"\n", 1)[0], name


def assert_update_round_trip(tmp_path: Path, username: str) -> int:
    """Identified export -> import --update of the unchanged bundle -> export: byte-identical files
    (keys and versions included); returns the number of trail entries the update wrote (must be 0)."""
    from audit.models import AuditEvent

    first = export(level="identified", reason="round trip")
    first.extractall(tmp_path / "unchanged")
    before = AuditEvent.objects.count()
    call_command(
        "import_bundle",
        str(tmp_path / "unchanged"),
        "--update",
        "--reason",
        "re-sent",
        "--user",
        username,
        stdout=StringIO(),
    )
    written = AuditEvent.objects.count() - before
    second = export(level="identified", reason="round trip")
    for name in first.namelist():
        if name.endswith(".csv"):  # (an SPSS file's header carries the time it was written)
            assert first.read(name) == second.read(name), name
    return written
