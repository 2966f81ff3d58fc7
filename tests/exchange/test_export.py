"""Exports: complete, de-identified by default, neutralised, consistent, streamed, logged."""

import csv
import datetime
import hashlib
import io
import json
import re
import shutil
import subprocess
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from exchange import dictionary
from exchange.exporter import ExportSpec, export_zip
from exchange.models import ExportLog
from patients.models import Patient
from patients.services import withdraw_consent
from tests.conftest import DEMO_BUNDLE
from tests.exchange.zips import assert_round_trip, export, table
from tests.factories import ConsentFactory, FollowUpFactory, PatientFactory, ProcedureFactory, SiteFactory

pytestmark = pytest.mark.django_db
BUNDLE_FILES = dictionary.FILES
PERSON_FILES = [
    "patients.csv",
    "consents.csv",
    "procedures.csv",
    "complications.csv",
    "followups.csv",
    "analysis_wide.csv",
]
ISO_DATE = re.compile(r"\b(19|20)\d\d-\d\d-\d\d\b")


def source_rows(name: str) -> list[dict[str, str]]:
    with (DEMO_BUNDLE / f"{name}.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_identified_export_of_the_demo_cohort_has_every_row_and_value_of_the_source(demo_cohort):
    zf = export(level="identified", reason="audit")
    for name in BUNDLE_FILES:
        exported, source = table(zf, f"{name}.csv"), source_rows(name)
        assert len(exported) == len(source), name
        for got, want in zip(exported, source, strict=True):
            assert {k: got[k] for k in want} == want, name  # derived columns too (odi_score, mme_per_day...)


def test_deidentified_export_has_no_identifier_free_text_or_date(demo_cohort):
    zf = export()
    everything = "".join(
        zf.read(n).decode() for n in zf.namelist() if n.endswith(".csv") and n != "data_dictionary.csv"
    )
    assert "Demo Patient" not in everything and "DEMO-0" not in everything
    assert "Fictional demo case" not in everything  # notes: free text
    for name in PERSON_FILES:
        assert not ISO_DATE.search(zf.read(name).decode()), f"a date in {name}"
    patients = table(zf, "patients.csv")
    assert {"full_name", "mrn", "notes", "primary_tumour_other", "date_of_birth"}.isdisjoint(patients[0])
    first = next(p for p in patients if p["study_id"] == "PSP-0001")
    # enrolment: its year, not its offset (a year and an offset from the index would bound the index date)
    assert (first["enrolment_year"], first["symptom_onset_day"]) == ("2017", "-15")
    assert {"enrolment_day", "date_of_birth_day", "record_id", "record_version"}.isdisjoint(first)
    post = next(v for v in table(zf, "followups.csv") if v["study_id"] == "PSP-0001" and v["timepoint"] == "post")
    assert post["visit_day"] == post["day"] == "2"


def test_ages_over_89_are_shown_as_90_and_no_birth_offset_is_exported(site):
    old = ProcedureFactory(patient=PatientFactory(site=site, date_of_birth=datetime.date(1930, 1, 1))).patient
    ConsentFactory(patient=old)
    assert old.age_at_enrolment == 94
    row = table(export(), "patients.csv")[0]
    assert row["age_at_enrolment"] == "90" and "date_of_birth_day" not in row
    assert table(export(level="identified", reason="r"), "patients.csv")[0]["age_at_enrolment"] == "94"


def test_withdrawn_remove_data_patients_are_in_no_file(demo_cohort, admin_user):
    patient = Patient.objects.get(study_id="PSP-0004")
    withdraw_consent(consent=patient.consents.get(), scope="remove_data", reason="asked", user=admin_user)
    for level in ("identified", "deidentified"):
        zf = export(level=level, reason="r")
        for name in zf.namelist():  # the CSVs and the statistics-package files made from them
            assert b"PSP-0004" not in zf.read(name), f"{level} {name}"
        assert len(table(zf, "patients.csv")) == 9


def test_formula_like_text_is_neutralised_and_numbers_stay_numbers(site):
    patient = PatientFactory(site=site, notes='=HYPERLINK("http://evil")', full_name="@Bob", mrn="+441")
    ConsentFactory(patient=patient, obtained_by="-RN1")
    procedure = ProcedureFactory(patient=patient)
    FollowUpFactory(
        patient=patient, timepoint="baseline", visit_date=procedure.procedure_date - datetime.timedelta(days=3)
    )
    zf = export(level="identified", reason="r")
    row = table(zf, "patients.csv")[0]
    assert (row["notes"], row["full_name"], row["mrn"]) == ('\'=HYPERLINK("http://evil")', "'@Bob", "'+441")
    assert table(zf, "consents.csv")[0]["obtained_by"] == "'-RN1"
    assert table(zf, "followups.csv")[0]["day"] == "-3"  # a negative number, not text


def test_the_manifest_hashes_and_counts_are_true(demo_cohort):
    zf = export(username="tester", filters={"site": "PSP"})
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["level"] == "deidentified" and manifest["filters"] == {"site": "PSP"}
    assert manifest["exported_at"].endswith("Z") and manifest["exported_by"] == "tester"
    assert sorted(manifest["files"]) == sorted(n for n in zf.namelist() if n != "manifest.json")
    for name in manifest["files"]:
        assert manifest["files"][name]["sha256"] == hashlib.sha256(zf.read(name)).hexdigest(), name
    for name in [n for n in zf.namelist() if n.endswith(".csv") and "/" not in n]:  # the bundle's own
        assert manifest["files"][name]["rows"] == len(list(csv.reader(io.StringIO(zf.read(name).decode())))) - 1


@pytest.mark.skipif(shutil.which("unzip") is None, reason="Info-ZIP's unzip is not installed")
def test_another_unzip_reads_every_member_with_its_crc(demo_cohort, tmp_path):
    """The CSV members are deflated by ISA-L, not by the zlib that Python's zipfile would read them
    with: Info-ZIP's own inflater checks every member's CRC and size."""
    path = tmp_path / "export.zip"
    path.write_bytes(b"".join(export_zip(ExportSpec(shape="both", level="identified", reason="r"))))
    tested = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "No errors detected" in tested.stdout
    with zipfile.ZipFile(path) as zf:
        members = [n for n in zf.namelist() if n.endswith(".csv")]
        assert {"patients.csv", "followups.csv", "analysis_wide.csv"} <= set(members)
        assert all(f"testing: {name}" in tested.stdout for name in members)


def test_the_data_dictionary_describes_every_exported_column(demo_cohort):
    zf = export()
    described = {(r["file"], r["variable"]) for r in table(zf, "data_dictionary.csv")}
    for name in zf.namelist():
        if name.endswith(".csv") and "/" not in name and name != "data_dictionary.csv":
            header = zf.read(name).decode().splitlines()[0].split(",")
            assert {(name[:-4], col) for col in header} <= described, name
    rows = {(r["file"], r["variable"]): r for r in table(zf, "data_dictionary.csv")}
    assert rows[("patients", "symptom_onset_day")]["unit"] == "days since the index procedure"
    assert rows[("consent_versions", "effective_from_year")]["unit"] == "year"
    assert "lung, Lung" in rows[("patients", "primary_tumour")]["choices"]


def test_round_trip_identified_export_import_export_is_identical(demo_cohort, tmp_path):
    assert_round_trip(tmp_path)


# ---------------------------------------------------------------------------- the page and the command


def post(client, **data):
    """The export form as a browser sends it untouched (the package files' box is ticked)."""
    return client.post("/exports/", {"shape": "both", "level": "deidentified", "packages": "on", **data})


def test_nurses_cannot_export(client, nurse):
    client.force_login(nurse)
    assert client.get("/exports/").status_code == 403


def test_an_investigator_gets_a_deidentified_zip_of_his_sites_only(client, investigator, demo_cohort):
    other = SiteFactory(code="ZZ")
    ConsentFactory(patient=PatientFactory(site=other))
    client.force_login(investigator)
    response = post(client)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response.streaming
    zf = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert {p["site"] for p in table(zf, "patients.csv")} == {"PSP"}
    log = ExportLog.objects.get()
    assert log.username == "investigator" and log.row_counts["patients.csv"] == 10 and log.completed_at
    assert AuditEvent.objects.filter(action="export", username="investigator").exists()


def test_an_investigator_cannot_choose_an_identified_export(client, investigator, demo_cohort):
    client.force_login(investigator)
    response = post(client, level="identified", reason="curious")
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not ExportLog.objects.exists()


def test_an_identified_export_needs_a_reason_and_is_logged(client, admin_user, demo_cohort):
    client.force_login(admin_user)
    response = post(client, level="identified", reason="")
    assert "Give the reason for an identified export" in response.content.decode()
    response = post(client, level="identified", reason="data monitoring visit")
    zf = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert "Demo Patient 01" in zf.read("patients.csv").decode()
    assert ExportLog.objects.get().reason == "data monitoring visit"
    page = client.get("/exports/log/").content.decode()
    assert "data monitoring visit" in page and "patients.csv 10" in page


def test_filters_apply_as_on_the_dashboard(client, admin_user, demo_cohort):
    client.force_login(admin_user)
    response = post(client, procedure_from="2017-08-01", level="identified", reason="monitoring", shape="wide")
    zf = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert [n for n in zf.namelist() if n.endswith((".csv", ".json"))] == [
        "analysis_wide.csv",
        "data_dictionary.csv",
        "manifest.json",
    ]
    assert (
        len(table(zf, "analysis_wide.csv"))
        == Patient.objects.filter(procedures__procedure_date__gte="2017-08-01").count()
    )
    response = post(client, procedure_from="2017-01-01", procedure_to="2017-12-31", shape="wide")
    zf = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert (
        len(table(zf, "analysis_wide.csv"))
        == Patient.objects.filter(procedures__procedure_number=1, procedures__procedure_date__year=2017).count()
    )


def test_the_command_writes_the_same_files_as_the_page(client, admin_user, demo_cohort, tmp_path):
    out = tmp_path / "export.zip"
    call_command("export_bundle", "--out", str(out), "--site", "PSP", "--packages", stdout=StringIO())
    client.force_login(admin_user)
    web = zipfile.ZipFile(io.BytesIO(b"".join(post(client, site="PSP").streaming_content)))
    cli = zipfile.ZipFile(out)
    assert web.namelist() == cli.namelist()
    for name in web.namelist():
        if name.endswith((".csv", ".R")):  # (an SPSS file's header carries the time it was written)
            assert web.read(name) == cli.read(name), name
    assert not Path(str(out) + ".part").exists()
    assert ExportLog.objects.filter(via="command").count() == 1


def test_visits_are_ordered_by_protocol_time_point_not_alphabetically(demo_cohort):
    patient = Patient.objects.get(study_id="PSP-0001")
    FollowUpFactory(patient=patient, timepoint="m1", visit_date=datetime.date(2017, 4, 14))
    FollowUpFactory(patient=patient, timepoint="w1", visit_date=datetime.date(2017, 3, 22))
    timepoints = [v["timepoint"] for v in table(export(), "followups.csv") if v["study_id"] == "PSP-0001"]
    assert timepoints == ["baseline", "post", "w1", "m1"]


def test_the_query_count_is_pinned_for_a_small_and_a_larger_cohort(demo_cohort, django_assert_num_queries):
    # the population (once), whether the export cache is this code's, one COPY per bundle file and one for the
    # wide file, the snapshot (a savepoint and its release inside the test's transaction), and the cache's
    # planner settings and their reset
    with django_assert_num_queries(16):
        b"".join(export_zip(ExportSpec()))
    site = Patient.objects.first().site
    for _ in range(30):
        patient = PatientFactory(site=site)
        ConsentFactory(patient=patient)
        FollowUpFactory(patient=patient, visit_date=ProcedureFactory(patient=patient).procedure_date)
    with django_assert_num_queries(16):
        b"".join(export_zip(ExportSpec()))


def test_the_wide_file_matches_rows_by_study_id_in_the_database_order_not_pythons():
    from exchange.exporter import merge_by_study_id

    # en_US-like collations sort "A0-0001" before "A-0001" (punctuation ignored); Python does not
    patients = [{"study_id": "A0-0001"}, {"study_id": "A-0001"}, {"study_id": "B-0001"}]
    procedures = [{"study_id": "A0-0001", "n": 1}, {"study_id": "B-0001", "n": 3}]
    visits = [{"study_id": "A0-0001", "tp": "baseline"}, {"study_id": "A-0001", "tp": "post"}]
    merged = [
        (p["study_id"], i and i["n"], [v["tp"] for v in vs])
        for p, i, vs in merge_by_study_id(patients, procedures, visits)
    ]
    assert merged == [("A0-0001", 1, ["baseline"]), ("A-0001", None, ["post"]), ("B-0001", 3, [])]


def test_the_export_log_is_read_only_in_the_django_admin(client, admin_user, demo_cohort):
    b"".join(post_as(client, admin_user).streaming_content)
    entry = ExportLog.objects.get()
    assert client.get("/admin/exchange/exportlog/").status_code == 200
    assert client.get(f"/admin/exchange/exportlog/{entry.pk}/change/").status_code == 200  # a view, no save
    assert client.get("/admin/exchange/exportlog/add/").status_code == 403
    assert client.post(f"/admin/exchange/exportlog/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert ExportLog.objects.filter(pk=entry.pk).exists()


def test_the_export_log_page_is_for_admins_only(client, investigator):
    client.force_login(investigator)
    assert client.get("/exports/log/").status_code == 403


def post_as(client, user, **data):
    client.force_login(user)
    return post(client, **data)


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_export_reads_one_read_only_snapshot(demo_cohort):
    with CaptureQueriesContext(connection) as ctx:
        zf = zipfile.ZipFile(io.BytesIO(b"".join(export_zip(ExportSpec()))))
    sqls = [q["sql"] for q in ctx.captured_queries if q["sql"] != "BEGIN"]
    assert "REPEATABLE READ READ ONLY" in sqls[0]
    assert len(table(zf, "patients.csv")) == 10 and len(table(zf, "analysis_wide.csv")) == 10
    assert not connection.in_atomic_block  # the snapshot ended with the stream
