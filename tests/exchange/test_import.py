"""import_bundle: the demo cohort loads; every broken bundle is refused whole."""

import shutil
import zipfile
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Site
from audit.models import AuditEvent
from outcomes.models import FollowUp, Medication
from patients.models import Consent, Patient
from procedures.models import Leakage, Procedure
from tests.conftest import DEMO_BUNDLE

pytestmark = pytest.mark.django_db


def counts():
    return {m.__name__: m.objects.count() for m in (Site, Patient, Consent, Procedure, Leakage, FollowUp, Medication)}


@pytest.fixture
def bundle(tmp_path):
    """An editable copy of the demo bundle."""
    target = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, target)
    return target


def edit(path, old, new, count=1):
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def refused(path):
    before = counts()
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_bundle", str(path), stderr=err)
    assert counts() == before, "a refused bundle wrote something"
    return err.getvalue()


def test_demo_cohort_imports_every_row_with_derived_values():
    out = StringIO()
    call_command("import_bundle", str(DEMO_BUNDLE), stdout=out)
    assert counts() == {
        "Site": 1,
        "Patient": 10,
        "Consent": 10,
        "Procedure": 10,
        "Leakage": 3,
        "FollowUp": 20,
        "Medication": 33,
    }
    visit = FollowUp.objects.get(patient__study_id="PSP-0002", timepoint="baseline")
    assert (visit.odi_score, visit.opioid_count, visit.mme_per_day) == (76.0, 2, 80.0)
    assert Patient.objects.get(study_id="PSP-0003").age_at_enrolment == 72
    assert "10 patients" in out.getvalue()


def test_import_writes_an_audit_entry_per_row_and_one_for_the_bundle():
    call_command("import_bundle", str(DEMO_BUNDLE), stdout=StringIO())
    created = AuditEvent.objects.filter(action="create")
    assert created.filter(model="patients.Patient").count() == 10
    assert created.filter(model="outcomes.Medication").count() == 33
    assert created.filter(study_id="PSP-0001", model="outcomes.FollowUp").count() == 2
    assert AuditEvent.objects.filter(action="import").count() == 1


def test_reimporting_the_same_bundle_is_refused_and_duplicates_nothing():
    call_command("import_bundle", str(DEMO_BUNDLE), stdout=StringIO())
    report = refused(DEMO_BUNDLE)
    assert "patients.csv, row 2, study_id = 'PSP-0001': this study ID is already in the registry" in report


def test_a_zip_with_the_csvs_inside_one_folder_imports(bundle, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in bundle.iterdir():
            zf.write(f, f"paper_cohort/{f.name}")
    call_command("import_bundle", str(archive), stdout=StringIO())
    assert Patient.objects.count() == 10


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (
            "patients.csv",
            "2017-03-14,Demo Patient 01",
            "2017-02-30,Demo Patient 01",
            "patients.csv, row 2, enrolment_date = '2017-02-30': is not a real calendar date",
        ),
        (
            "followups.csv",
            "PSP-0001,post,2017-03-17,completed,1.0",
            "PSP-0001,post,2017-03-17,completed,11",
            "followups.csv, row 3, vas = '11': above the maximum 10",
        ),
        (
            "procedures.csv",
            "interpedicular,fluoro_biplane",
            "interpedicluar,fluoro_biplane",
            "procedures.csv, row 2, approach = 'interpedicluar': unknown code",
        ),
        (
            "medications.csv",
            "PSP-0001,baseline,tramadol,200",
            "PSP-0099,baseline,tramadol,200",
            "medications.csv, row 2, study_id = 'PSP-0099': orphan row",
        ),
        (
            "followups.csv",
            "PSP-0001,post,",
            "PSP-0001,baseline,",
            "followups.csv, row 3, timepoint = 'baseline': duplicate visit",
        ),
        (
            "procedures.csv",
            "2017-03-14,2017-03-20",
            "2017-03-14,2017-03-10",
            "procedures.csv, row 2, discharge_date = '2017-03-10': Discharge cannot be before admission",
        ),
        (
            "followups.csv",
            "PSP-0001,post,2017-03-17",
            "PSP-0001,post,2017-03-27",
            "followups.csv, row 3, deviation_note: The Post-procedure visit (2017-03-27) is outside its window "
            "(2017-03-15 to 2017-03-18, from the index procedure of 2017-03-15)",
        ),
        (
            "consents.csv",
            "PSP-0001,1.0,2017-03-14",
            "PSP-0001,1.0,2016-03-14",
            "consents.csv, row 2, signed_date = '2016-03-14': Consent version 1.0 is in force from 2017-01-01",
        ),
        (
            "patients.csv",
            ",M,lung,,",
            ",M,other,,",
            "patients.csv, row 2, primary_tumour_other: is required (if primary_tumour=other)",
        ),
        (
            "leakages.csv",
            "PSP-0002,1,presacral",
            "PSP-0002,2,presacral",
            "leakages.csv, row 2, procedure_number = '2': orphan row: no such procedure",
        ),
    ],
)
def test_a_bad_cell_refuses_the_whole_bundle_naming_file_row_variable(bundle, file, old, new, expected):
    edit(bundle / file, old, new)
    report = refused(bundle)
    assert expected in report


def test_leakage_rows_must_agree_with_the_procedure(bundle):
    edit(bundle / "leakages.csv", "PSP-0002,1,presacral,no,no", "PSP-0001,1,presacral,no,no")
    report = refused(bundle)
    assert "leakages.csv, row 2, site = 'presacral': procedures.csv says this procedure had no leakage" in report
    assert "procedures.csv, row 3, leakage = 'yes': leakage = yes needs one row per leakage site" in report


def test_a_missing_column_is_named(bundle):
    path = bundle / "followups.csv"
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("vas")
    path.write_text("\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != col) for line in lines) + "\n")
    assert "followups.csv, row 1, vas: required column is missing" in refused(bundle)


def test_a_file_that_is_not_utf8_is_named(bundle):
    path = bundle / "patients.csv"
    path.write_bytes(path.read_text().replace("Demo Patient 01", "Démo Patient 01").encode("latin-1"))
    assert "patients.csv: the file is not UTF-8" in refused(bundle)


def test_every_problem_is_reported_at_once(bundle):
    edit(bundle / "followups.csv", "completed,1.0", "completed,11")
    edit(bundle / "procedures.csv", "interpedicular", "sideways")
    report = refused(bundle)
    assert "vas = '11'" in report and "approach = 'sideways'" in report


def test_clinical_rows_without_consent_are_refused(bundle):
    lines = (bundle / "consents.csv").read_text().splitlines()
    (bundle / "consents.csv").write_text("\n".join(lines[:1] + lines[2:]) + "\n")
    assert "procedures.csv, row 2, study_id = 'PSP-0001': no consent to registry use" in refused(bundle)


def test_buprenorphine_gives_unknown_mme_and_skipped_odi_section_still_scores(bundle):
    edit(bundle / "medications.csv", "PSP-0001,baseline,tramadol,200", "PSP-0001,baseline,buprenorphine,20")
    edit(
        bundle / "followups.csv",
        "PSP-0001,baseline,2017-03-14,completed,6.0,3,4,5,4,4,3,3,4,2,3",
        "PSP-0001,baseline,2017-03-14,completed,6.0,3,4,5,4,4,3,3,,2,3",
    )
    call_command("import_bundle", str(bundle), stdout=StringIO())
    visit = FollowUp.objects.get(patient__study_id="PSP-0001", timepoint="baseline")
    assert visit.mme_per_day is None
    assert visit.opioid_count == 1
    assert visit.odi_score == pytest.approx(31 / 45 * 100)
