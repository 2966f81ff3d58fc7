"""SPSS, Stata and R files of an export: read back independently and compared
cell by cell with the CSVs of the same zip, with the labels a user expects."""

import csv
import datetime
import hashlib
import io
import json
import math
import re
import shutil
import subprocess
import zipfile
from io import StringIO

import pyreadstat
import pytest
from django.core.management import call_command

from tests.bundles import write_bundle
from tests.exchange.zips import export, package_names, table

pytestmark = pytest.mark.django_db
DATA_FILES = (
    "consent_versions",
    "patients",
    "consents",
    "procedures",
    "leakages",
    "complications",
    "followups",
    "medications",
    "analysis_wide",
)


def read_sav(zf, stem, tmp_path, **kw):
    path = tmp_path / f"{stem}.sav"
    path.write_bytes(zf.read(f"spss/{stem}.sav"))
    return pyreadstat.read_sav(str(path), user_missing=True, **kw)


def read_dta(zf, stem, tmp_path, **kw):
    path = tmp_path / f"{stem}.dta"
    path.write_bytes(zf.read(f"stata/{stem}.dta"))
    return pyreadstat.read_dta(str(path), **kw)


def dictionary_of(zf):
    """(file, variable) -> row of the export's own data_dictionary.csv."""
    return {(r["file"], r["variable"]): r for r in table(zf, "data_dictionary")}


def blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def same_cell(csv_cell: str, value, type_: str) -> bool:
    if csv_cell == "":
        return blank(value)
    if type_ in ("integer", "decimal"):
        return float(csv_cell) == value
    if type_ == "date":
        return isinstance(value, datetime.date) and value.isoformat()[:10] == csv_cell
    return value == csv_cell


def assert_sav_equals_csv(zf, tmp_path):
    words = dictionary_of(zf)
    for stem in DATA_FILES:
        rows = table(zf, stem)
        frame, meta = read_sav(zf, stem, tmp_path)
        header = next(csv.reader(io.StringIO(zf.read(f"{stem}.csv").decode())))
        assert list(frame.columns) == header, stem
        assert len(frame) == len(rows), stem
        for name in header:
            spec = words[(stem, name)]
            expected_label = f"{spec['label']} ({spec['unit']})" if spec["unit"] else spec["label"]
            assert meta.column_names_to_labels[name] == expected_label, (stem, name)
            for i, row in enumerate(rows):
                assert same_cell(row[name], frame[name].iloc[i], spec["type"]), (stem, name, i, row[name])


def test_every_deidentified_csv_has_an_spss_file_with_the_same_cells_and_labels(tmp_path):
    folder = write_bundle(tmp_path / "bundle", patients=40, seed=5)
    call_command("import_bundle", str(folder), stdout=StringIO())
    zf = export()
    assert_sav_equals_csv(zf, tmp_path)

    _, meta = read_sav(zf, "patients", tmp_path)
    # value labels written from the dictionary (hand-copied from data_dictionary.csv)
    assert meta.variable_value_labels["sex"] == {"M": "Male", "F": "Female"}
    assert meta.variable_value_labels["pathological_fracture"] == {"yes": "Yes", "no": "No"}
    assert meta.variable_value_labels["lesion_character"]["osteolytic"] == "Osteolytic"
    assert meta.variable_measure["sex"] == "nominal"
    assert meta.variable_measure["ecog"] == "ordinal"
    assert meta.variable_measure["age_at_enrolment"] == "scale"
    assert meta.missing_ranges["sex"] == [{"lo": "", "hi": ""}]  # a blank answer is declared missing
    assert meta.column_names_to_labels["age_at_enrolment"] == "Age at enrolment (years)"

    _, meta = read_sav(zf, "followups", tmp_path)
    assert meta.variable_measure["timepoint"] == "ordinal"
    assert meta.variable_measure["vas"] == "scale"
    assert meta.variable_value_labels["status"]["deceased"] == "Patient deceased"
    assert meta.column_names_to_labels["vas"] == "Pain, visual analogue scale (0-10)"

    _, meta = read_sav(zf, "analysis_wide", tmp_path)
    assert meta.variable_value_labels["status_m3"]["lost"] == "Lost to follow-up"
    assert meta.column_names_to_labels["vas_m1"] == "Pain, visual analogue scale (m1) (0-10)"


def test_the_spss_files_of_an_identified_export_hold_the_dates_names_and_guarded_text_of_the_csv(tmp_path):
    folder = write_bundle(tmp_path / "bundle", patients=30, seed=11)
    call_command("import_bundle", str(folder), stdout=StringIO())
    zf = export(level="identified", reason="test")
    assert_sav_equals_csv(zf, tmp_path)
    frame, meta = read_sav(zf, "patients", tmp_path)
    first = table(zf, "patients")[0]
    assert frame["full_name"].iloc[0] == first["full_name"]
    assert frame["date_of_birth"].iloc[0] == datetime.date.fromisoformat(first["date_of_birth"])
    assert meta.original_variable_types["date_of_birth"].startswith("SDATE")


def test_stata_files_hold_the_csv_codes_as_labelled_integers(tmp_path):
    folder = write_bundle(tmp_path / "bundle", patients=40, seed=5)
    call_command("import_bundle", str(folder), stdout=StringIO())
    zf = export()
    words = dictionary_of(zf)
    for stem in DATA_FILES:
        rows = table(zf, stem)
        raw, meta = read_dta(zf, stem, tmp_path)
        labelled, _ = read_dta(zf, stem, tmp_path, apply_value_formats=True)
        assert len(raw) == len(rows)
        for name in raw.columns:
            spec = words[(stem, name)]
            for i, row in enumerate(rows):
                if name in meta.variable_to_label:
                    value = labelled[name].iloc[i]
                    # a label reads "code: label": the CSV's code before the colon
                    got = "" if blank(value) else str(value).split(":", 1)[0]
                    assert got == row[name], (stem, name, i)
                else:
                    assert same_cell(row[name], raw[name].iloc[i], spec["type"]), (stem, name, i)
    raw, meta = read_dta(zf, "patients", tmp_path)
    labels = meta.value_labels[meta.variable_to_label["sex"]]
    assert set(labels.values()) == {"M: Male", "F: Female"}
    assert meta.value_labels[meta.variable_to_label["pathological_fracture"]] == {1: "yes: Yes", 0: "no: No"}
    raw, meta = read_dta(zf, "procedures", tmp_path)
    gauges = {float(r["needle_gauge"]) for r in table(zf, "procedures")}
    assert set(raw["needle_gauge"]) == gauges  # whole-number codes stored as themselves
    assert meta.column_names_to_labels["cement_volume_ml"] == "Cement volume injected (mL)"


def test_the_package_files_are_in_the_manifest_with_their_hashes(demo_cohort):
    zf = export()
    manifest = json.loads(zf.read("manifest.json"))
    names = package_names(zf)
    assert len(names) == 2 * 10 + 1  # 9 bundle files + the wide file, each as .sav and .dta; the R script
    for name in names:
        assert manifest["files"][name]["sha256"] == hashlib.sha256(zf.read(name)).hexdigest()


def test_an_export_without_the_package_files_has_the_same_csvs_and_says_so(demo_cohort):
    full, csv_only = export(), export(packages=False)
    assert len(package_names(full)) == 21 and package_names(csv_only) == []
    assert [n for n in full.namelist() if n not in package_names(full)] == csv_only.namelist()
    for name in csv_only.namelist():
        if name.endswith(".csv"):
            assert csv_only.read(name) == full.read(name), name
    manifests = [json.loads(zf.read("manifest.json")) for zf in (full, csv_only)]
    assert [m["statistics_packages"] for m in manifests] == [True, False]
    assert set(manifests[1]["files"]) == {n for n in csv_only.namelist() if n != "manifest.json"}


def test_the_page_and_the_command_add_the_package_files_on_request_only(client, admin_user, demo_cohort, tmp_path):
    client.force_login(admin_user)
    page = client.get("/exports/").content.decode()
    assert re.search(r'<input type="checkbox" name="packages"', page)
    assert not re.search(r'<input type="checkbox" name="packages"[^>]* checked', page)  # off unless ticked
    base = {"shape": "both", "level": "deidentified"}
    for data, expected in (({**base, "packages": "on"}, 21), (base, 0)):  # an unticked box is not sent
        response = client.post("/exports/", data)
        assert len(package_names(zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))))) == expected
    out = tmp_path / "export.zip"
    call_command("export_bundle", "--out", str(out), stdout=StringIO())
    assert package_names(zipfile.ZipFile(out)) == [] and "patients.csv" in zipfile.ZipFile(out).namelist()
    call_command("export_bundle", "--out", str(out), "--packages", stdout=StringIO())
    assert len(package_names(zipfile.ZipFile(out))) == 21


def test_a_long_only_export_has_no_wide_package_file(demo_cohort):
    zf = export(shape="long")
    assert "spss/analysis_wide.sav" not in zf.namelist()
    assert "spss/followups.sav" in zf.namelist()


@pytest.mark.skipif(not shutil.which("pspp"), reason="Debian's pspp is not installed")
def test_pspp_reads_the_sav_with_its_labels(demo_cohort, tmp_path):
    zf = export()
    (tmp_path / "patients.sav").write_bytes(zf.read("spss/patients.sav"))
    syntax = tmp_path / "read.sps"
    syntax.write_text(
        f"GET FILE='{tmp_path / 'patients.sav'}'.\nDISPLAY DICTIONARY.\n"
        "FREQUENCIES VARIABLES=sex /FORMAT=NOTABLE.\nCROSSTABS /TABLES=sex BY pathological_fracture.\n"
    )
    out = subprocess.run(
        ["pspp", "-O", "format=txt", "-O", "width=250", str(syntax)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "error" not in text.lower(), text
    assert "|Primary tumour " in text and "|Age at enrolment (years) " in text  # variable labels
    assert re.search(r"\|Sex\s+F\s+\|Female\s+\|", text)  # value labels
    assert re.search(r"\|sex\s+\|\s+\d+\|Sex\s+\|Nominal", text)
    assert re.search(r"\|age_at_enrolment\s+\|\s+\d+\|Age at enrolment \(years\)\s+\|Scale", text)
    rows = table(zf, "patients")
    males = sum(r["sex"] == "M" for r in rows)
    fractured = sum(r["sex"] == "M" and r["pathological_fracture"] == "yes" for r in rows)
    cross = re.search(r"Male\s+Count\|\s+(\d+)\|\s+(\d+)\|\s+(\d+)\|", text)  # Sex x fracture: No, Yes, Total
    assert cross and (int(cross[2]), int(cross[3])) == (fractured, males), text


@pytest.mark.skipif(not shutil.which("Rscript"), reason="R is not installed")
def test_the_r_script_reads_every_csv_with_factors_and_types(demo_cohort, tmp_path):
    zf = export()
    zf.extractall(tmp_path)
    program = (
        'source("read_registry.R"); r <- read_registry(".");'
        'cat(levels(r$patients$sex), sep=",", "\\n");'
        'cat(class(r$followups$vas), class(r$followups$day), nrow(r$followups), "\\n");'
        'cat(attr(r$followups$vas, "label"), "\\n");'
        'cat(as.character(r$patients$primary_tumour[1]), "\\n");'
        "cat(sum(r$patients$pathological_fracture == 'Yes'), '\\n')"
    )
    out = subprocess.run(["Rscript", "-e", program], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].strip().rstrip(",") == "Male,Female"
    followups, patients = table(zf, "followups"), table(zf, "patients")
    assert lines[1].split() == ["numeric", "integer", str(len(followups))]
    assert lines[2].strip() == "Pain, visual analogue scale (0-10)"
    tumours = {"lung": "Lung", "liver": "Liver (hepatocellular)", "breast": "Breast", "kidney": "Kidney"}
    assert lines[3].strip() == tumours.get(patients[0]["primary_tumour"], lines[3].strip())
    assert int(lines[4]) == sum(p["pathological_fracture"] == "yes" for p in patients)


def test_a_note_longer_than_spss_holds_is_cut_there_and_said_so_while_stata_and_the_csv_keep_it(demo_cohort, tmp_path):
    from patients.models import Patient

    long_note = "é" * 20_000 + "!"  # 40,001 bytes: SPSS strings hold 32,767
    first = Patient.objects.order_by("study_id").first()
    Patient.objects.filter(pk=first.pk).update(notes=long_note)
    zf = export(level="identified", reason="test")
    row = next(r for r in table(zf, "patients") if r["study_id"] == first.study_id)
    assert row["notes"] == long_note
    frame, meta = read_sav(zf, "patients", tmp_path)
    cut = frame.loc[frame["study_id"] == first.study_id, "notes"].iloc[0]
    assert cut == "é" * 16_383  # 32,766 bytes: the next character would not fit whole
    assert meta.column_names_to_labels["notes"].endswith("[cut at 32,767 bytes in SPSS; whole in the CSV]")
    frame, _ = read_dta(zf, "patients", tmp_path)
    assert frame.loc[frame["study_id"] == first.study_id, "notes"].iloc[0] == long_note


@pytest.mark.skipif(not shutil.which("pspp-convert"), reason="Debian's pspp is not installed")
def test_pspp_reads_every_sav_of_an_identified_export_without_a_warning(demo_cohort, tmp_path):
    zf = export(level="identified", reason="test")
    for stem in DATA_FILES:
        (tmp_path / f"{stem}.sav").write_bytes(zf.read(f"spss/{stem}.sav"))
        out = subprocess.run(
            ["pspp-convert", str(tmp_path / f"{stem}.sav"), str(tmp_path / f"{stem}.csv")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and not out.stderr, (stem, out.stderr)
        rows = list(csv.reader((tmp_path / f"{stem}.csv").open(encoding="utf-8")))
        assert rows[0] == next(csv.reader(io.StringIO(zf.read(f"{stem}.csv").decode()))), stem
        assert len(rows) - 1 == len(table(zf, stem)), stem
