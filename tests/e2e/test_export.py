import io
import zipfile

import pytest
from playwright.sync_api import expect


@pytest.mark.django_db(transaction=True)
def test_an_investigator_downloads_a_deidentified_zip(page, log_in, investigator, demo_cohort):
    log_in("investigator")
    page.get_by_role("link", name="Exports").click()
    expect(page.get_by_role("heading", name="Export data")).to_be_visible()
    expect(page.get_by_label("Identified (names, MRNs, dates)")).to_have_count(0)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download zip").click()
    download = info.value
    assert download.suggested_filename.startswith("psp-registry-deidentified-")
    zf = zipfile.ZipFile(io.BytesIO(open(download.path(), "rb").read()))
    assert "analysis_wide.csv" in zf.namelist() and "manifest.json" in zf.namelist()
    patients = zf.read("patients.csv").decode()
    assert patients.count("\n") == 11 and "Demo Patient" not in patients
