import pytest
from playwright.sync_api import expect

from patients.services import update_patient
from tests.factories import PatientFactory


@pytest.mark.django_db(transaction=True)
def test_an_admin_finds_a_change_and_its_reason_in_the_patients_timeline(
    page, log_in, live_server, site, nurse, admin_user
):
    patient = PatientFactory(site=site, ecog=1)
    patient.ecog = 3
    update_patient(patient=patient, user=nurse, reason="Re-assessed after fall", expected_version=1)

    log_in("admin")
    page.get_by_role("link", name="Audit", exact=True).click()
    page.get_by_label("Study ID").fill(patient.study_id)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=patient.study_id).first.click()

    expect(page.get_by_role("heading", name=f"History of {patient.study_id}")).to_be_visible()
    change = page.get_by_role("listitem").filter(has_text="Re-assessed after fall")
    expect(change).to_contain_text("by nurse")
    row = change.get_by_role("row").filter(has_text="ECOG performance status")
    expect(row.get_by_role("cell")).to_have_text(["ECOG performance status", "1", "3"])


@pytest.mark.django_db(transaction=True)
def test_a_nurse_is_refused_the_audit_trail(page, log_in, live_server, nurse):
    log_in("nurse")
    expect(page.get_by_role("link", name="Audit", exact=True)).to_have_count(0)
    response = page.goto(f"{live_server.url}/audit/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
