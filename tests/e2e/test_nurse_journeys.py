"""A research nurse's journeys in a real browser (headless Chromium)."""

import datetime
import re

import pytest
from playwright.sync_api import Page, expect

from tests.factories import ConsentFactory, ConsentVersionFactory, PatientFactory, ProcedureFactory
from tests.pdfs import real_pdf

pytestmark = pytest.mark.django_db(transaction=True)
TODAY = datetime.date.today()


def yes_no(page: Page, question: str, answer: str) -> None:
    page.get_by_role("group", name=question).get_by_label(answer, exact=True).check()


def odi_score(score: int) -> re.Pattern:
    """An ODI answer's label: the score, then its statement ("3 – I walk a few hundred metres")."""
    return re.compile(rf"^\s*{score} – ")  # Playwright tests a pattern against the label's raw text


def answer_odi(page: Page, answers: list[int]) -> None:
    for fieldset in page.locator("#odi fieldset").all()[: len(answers)]:
        fieldset.get_by_label(odi_score(answers.pop(0))).check()


def test_enrol_consent_procedure_and_two_visits(page: Page, log_in, live_server, nurse):
    ConsentVersionFactory(version="3.1", effective_from=datetime.date(2020, 1, 1))
    log_in("nurse")
    expect(page.get_by_role("heading", name="Follow-up worklist")).to_be_visible()

    page.get_by_role("link", name="Enrol a patient").click()
    page.get_by_label("Patient full name").fill("Rosa Tester")
    page.get_by_label("Hospital medical record number").fill("MRN-4711")
    page.get_by_label("Date of birth").fill("1950-06-01")
    yes_no(page, "Sex", "Female")
    page.get_by_label("Primary tumour").select_option("breast")
    page.get_by_label("Lesion character on imaging").select_option("osteolytic")
    page.get_by_label("Zone II (foramina)").check()
    yes_no(page, "Pathological fracture present", "Yes")
    yes_no(page, "Neurological deficit at presentation", "No")
    page.get_by_label("Date sacral symptoms began").fill((TODAY - datetime.timedelta(days=60)).isoformat())
    page.get_by_label("Date of diagnostic imaging (CT/MRI)").fill((TODAY - datetime.timedelta(days=7)).isoformat())
    page.get_by_label("Imaging modality").select_option("ct")
    yes_no(page, "Prior radiotherapy to the sacrum", "No")
    yes_no(page, "Prior systemic therapy", "Yes")
    page.get_by_role("button", name="Enrol").click()

    expect(page.get_by_role("heading", name="Record consent")).to_be_visible()
    expect(page.get_by_role("status").or_(page.locator(".alert-success"))).to_contain_text("PSP-0001 enrolled")
    expect(page.get_by_label("Consent form version")).to_have_value(re.compile(r"\d+"))
    page.get_by_label("Staff member who obtained consent").fill("RN Kim")
    yes_no(page, "Consents to registry data use", "Yes")
    yes_no(page, "Consents to future contact", "No")
    page.get_by_label("Signed consent document (PDF)").set_input_files(
        {"name": "consent.pdf", "mimeType": "application/pdf", "buffer": real_pdf("signed by Rosa")}
    )
    page.get_by_role("button", name="Save consent").click()
    expect(page.locator("#consent-status")).to_contain_text("Valid consent")

    page.get_by_role("link", name="Record the procedure").click()
    for label, value in (
        ("Procedure date", TODAY),
        ("Admission date", TODAY),
        ("Discharge date", TODAY + datetime.timedelta(days=0)),
    ):
        page.get_by_label(label).fill(value.isoformat())
    page.get_by_label("Operator code").fill("IR7")
    page.get_by_label("Approach").select_option("interpedicular")
    page.get_by_label("Image guidance").select_option("ct")
    page.get_by_label("Anaesthesia").select_option("local")
    page.get_by_label("Needle gauge").select_option("13")
    page.get_by_label("Number of needles").fill("2")
    page.locator('.sacrum-map [data-level="S1"]').click()  # the picture toggles the checkboxes
    page.locator('.sacrum-map [data-level="S2"]').click()
    expect(page.get_by_label("S1", exact=True)).to_be_checked()
    expect(page.get_by_label("S2", exact=True)).to_be_checked()
    expect(page.locator('.sacrum-map [data-level="S1"]')).to_have_class(re.compile("selected"))
    page.get_by_label("Cement volume injected (mL)").fill("6")
    page.get_by_label("Procedure duration (min)").fill("45")
    yes_no(page, "Technical success", "Yes")
    leak = page.locator("#leak-set")
    leak.get_by_label("Leakage site").first.select_option("presacral")
    leak.get_by_label("Leakage symptomatic").first.select_option("False")
    leak.get_by_label("Leakage required treatment").first.select_option("False")
    page.get_by_role("button", name="Save procedure").click()
    expect(page.locator("#levels-1")).to_have_text("S1–S2")
    expect(page.get_by_text("Presacral soft tissue (asymptomatic)")).to_be_visible()

    for timepoint, vas, odi in (("Baseline", "8", [4] * 10), ("Post-procedure", "3.5", [2] * 10)):
        page.get_by_role("link", name=f"Record {timepoint}").click()
        page.get_by_label("Visit date").fill(TODAY.isoformat())
        page.get_by_label("Pain, visual analogue scale (0-10)").fill(vas)
        answer_odi(page, list(odi))
        # ODI with two decimals (registry/measures.py), and its band's neutral name
        expect(page.locator("#odi-score")).to_contain_text(f"{odi[0] * 20:.2f} %")
        meds = page.locator("#med-set")
        meds.get_by_label("Opioid").nth(0).select_option("morphine")
        meds.get_by_label("Total daily dose").nth(0).fill("30")
        meds.get_by_label("Opioid").nth(1).select_option("oxycodone")
        meds.get_by_label("Total daily dose").nth(1).fill("10")
        expect(page.locator("#opioid-count")).to_have_text("2")
        expect(page.locator("#mme")).to_have_text("45.0")
        page.get_by_role("button", name="Save visit").click()
        expect(page.locator(".alert-success")).to_contain_text("visit of PSP-0001 saved")

    visits = page.locator("#visits")
    expect(visits.get_by_role("row", name=re.compile("^Baseline"))).to_contain_text("80.0")
    expect(visits.get_by_role("row", name=re.compile("^Post-procedure"))).to_contain_text("3.5")
    expect(visits.get_by_role("row", name=re.compile("^Post-procedure"))).to_contain_text("45.0")
    assert page.evaluate("typeof window.Chart") == "function"
    expect(page.locator("#history")).to_contain_text("Created")

    page.goto(f"{live_server.url}/patients/worklist/")
    expect(page.locator("#worklist")).to_contain_text("PSP-0001")
    expect(page.locator("#worklist").get_by_role("row", name=re.compile("PSP-0001"))).to_contain_text("1 week")


@pytest.fixture
def treated(site):
    patient = PatientFactory(site=site, full_name="Olga Case", enrolment_date=TODAY - datetime.timedelta(days=8))
    ConsentFactory(patient=patient)
    ProcedureFactory(patient=patient, procedure_date=TODAY - datetime.timedelta(days=1))
    return patient


def test_a_bad_value_is_refused_and_the_typed_data_survives(page: Page, log_in, live_server, nurse, treated):
    log_in("nurse")
    page.goto(f"{live_server.url}/visits/{treated.study_id}/post/")
    page.get_by_label("Visit date").fill((TODAY - datetime.timedelta(days=3)).isoformat())  # before the procedure
    expect(page.locator("#window-warning")).to_contain_text("outside the visit window")
    page.get_by_label("Pain, visual analogue scale (0-10)").fill("11")
    answer_odi(page, [1, 2, 3])
    page.locator("#med-set").get_by_label("Opioid").first.select_option("tramadol")
    page.locator("#med-set").get_by_label("Total daily dose").first.fill("100")
    page.get_by_role("button", name="Save visit").click()

    summary = page.get_by_role("alert").filter(has_text="Nothing was saved")
    expect(summary).to_contain_text("less than or equal to 10")
    expect(summary).to_contain_text("is before the index procedure")
    expect(page.get_by_label("Pain, visual analogue scale (0-10)")).to_have_value("11")
    expect(page.get_by_label("Pain, visual analogue scale (0-10)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("group", name="3. Lifting").get_by_label(odi_score(3))).to_be_checked()
    expect(page.locator("#med-set").get_by_label("Opioid").first).to_have_value("tramadol")
    expect(page.locator("#mme")).to_have_text("20.0")


def test_a_missed_visit_hides_the_scores_and_saves_without_them(page: Page, log_in, live_server, nurse, treated):
    log_in("nurse")
    page.goto(f"{live_server.url}/visits/{treated.study_id}/post/")
    page.get_by_label("Pain, visual analogue scale (0-10)").fill("4")
    page.get_by_label("Missed").check()
    expect(page.locator("#odi")).to_be_hidden()
    expect(page.locator("#med-set")).to_be_hidden()
    page.get_by_label("Completed").check()  # back again: what was typed is still there
    expect(page.get_by_label("Pain, visual analogue scale (0-10)")).to_have_value("4")
    page.get_by_label("Missed").check()
    page.get_by_role("button", name="Save visit").click()
    expect(page.get_by_role("status").filter(has_text="saved")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("^Post-procedure"))).to_contain_text("Missed")


def test_an_edit_asks_for_a_reason_and_a_concurrent_edit_is_refused(page: Page, log_in, live_server, nurse, treated):
    log_in("nurse")
    other = page.context.new_page()  # the same record open in a second tab
    edit_url = f"{live_server.url}/patients/{treated.study_id}/edit/"
    page.goto(edit_url)
    other.goto(edit_url)

    page.get_by_label("ECOG performance status").select_option("2")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("alert")).to_contain_text("Reason for change")
    expect(page.get_by_label("ECOG performance status")).to_have_value("2")
    page.get_by_label("Reason for change").fill("ECOG assessed at clinic")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#history")).to_contain_text("ECOG assessed at clinic")

    other.get_by_label("ECOG performance status").select_option("3")
    other.get_by_label("Reason for change").fill("late second edit")
    other.get_by_role("button", name="Save changes").click()
    expect(other.get_by_role("alert")).to_contain_text("changed by someone else")
    other.goto(f"{live_server.url}/patients/{treated.study_id}/")
    expect(other.locator("#history")).not_to_contain_text("late second edit")


def test_another_sites_patient_cannot_be_reached(page: Page, log_in, live_server, nurse, other_site):
    theirs = PatientFactory(site=other_site, full_name="Zed Elsewhere")
    log_in("nurse")
    response = page.goto(f"{live_server.url}/patients/{theirs.study_id}/")
    assert response is not None and response.status == 404
    page.goto(f"{live_server.url}/patients/")
    page.get_by_label("Search by study ID, MRN or name").fill("Zed")
    page.get_by_role("button", name="Search").click()
    assert "Zed" not in page.url  # the term is never in a URL (nor in access logs)
    expect(page.get_by_role("status")).to_have_text("0 patients matching “Zed”")
    expect(page.locator("body")).not_to_contain_text(theirs.study_id)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
