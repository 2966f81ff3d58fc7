"""Issue 13's journey in a real browser: a nurse sends a 1-month link, the patient answers on a phone,
the nurse corrects one value with a reason and accepts, the dashboard counts it and the trail tells it."""

import datetime
import re
from decimal import Decimal

import pytest
from django.core import mail
from playwright.sync_api import Browser, Page, expect

from outcomes.models import FollowUp
from outcomes.services import record_visit
from tests.factories import ConsentFactory, PatientFactory, ProcedureFactory
from tests.selfreport.conftest import run_worker

pytestmark = pytest.mark.django_db(transaction=True)
TODAY = datetime.date.today()
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
# The patient's answers per ODI section (shipped placeholder statements); None = she skips the section.
ODI = {
    1: "Moderate pain",
    2: "I manage, but it hurts",
    3: None,
    4: "I walk a few hundred metres",
    5: "I sit for up to an hour",
    6: "I stand for up to an hour",
    7: "Pain sometimes wakes me",
    8: "Normal, no extra pain",
    9: "Pain stops my more active interests",
    10: "I manage journeys of two hours",
}


@pytest.fixture
def case(site, nurse, investigator, admin_user):
    patient = PatientFactory(site=site, full_name="Rosa Maria Tester", email="rosa@example.org")
    ConsentFactory(patient=patient)
    procedure_date = TODAY - datetime.timedelta(days=30)
    ProcedureFactory(patient=patient, procedure_date=procedure_date)
    baseline = FollowUp(
        patient=patient,
        timepoint="baseline",
        visit_date=procedure_date - datetime.timedelta(days=1),
        vas=Decimal("8.0"),
        **{f"odi_q{i}": 4 for i in range(1, 11)},
    )
    record_visit(visit=baseline, user=nurse)
    # A second patient whose visits a nurse typed in: the dashboard's pairs need two patients.
    other = PatientFactory(site=site, full_name="Ann Typed")
    ConsentFactory(patient=other)
    ProcedureFactory(patient=other, procedure_date=procedure_date)
    for timepoint, day, vas in (("baseline", -1, "7.0"), ("m1", 28, "4.5")):
        visit = FollowUp(
            patient=other,
            timepoint=timepoint,
            visit_date=procedure_date + datetime.timedelta(days=day),
            vas=Decimal(vas),
            **{f"odi_q{i}": 3 for i in range(1, 11)},
        )
        record_visit(visit=visit, user=nurse)
    return patient


def test_a_patient_answers_on_her_phone_and_the_nurse_accepts_it(
    page: Page, browser: Browser, live_server, log_in, settings, case
):
    settings.SITE_URL = live_server.url
    log_in("nurse")
    expect(page.get_by_role("heading", name="Self-reports to review")).to_be_visible()
    page.get_by_role("link", name="Send a self-report link").click()
    page.get_by_label("Study ID").fill(case.study_id)
    page.get_by_label("Visit").select_option("m1")
    expect(page.get_by_label("Also e-mail the link to the patient")).to_be_checked()
    page.get_by_role("button", name="Create link").click()
    expect(page.locator("#emailed")).to_contain_text("e-mail with the link is queued")
    expect(page.locator("#qr svg")).to_be_visible()
    assert mail.outbox == []  # the page only queued it

    run_worker()  # the real database worker sends it
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["rosa@example.org"] and email.subject == "Your 1 month questionnaire"
    assert email.body.startswith("Hello Rosa,") and "Tester" not in email.body
    url = re.search(r"http://\S+/r/\S+/", email.body).group(0)
    assert url.startswith(live_server.url)

    phone = browser.new_context(**PHONE)
    patient_page = phone.new_page()
    patient_page.set_default_timeout(10_000)
    patient_page.goto(url)
    expect(patient_page.get_by_role("heading", name="Hello Rosa")).to_be_visible()
    expect(patient_page.get_by_text("Questions for your 1 month visit.")).to_be_visible()
    expect(patient_page.locator("#sr-step-label")).to_have_text("Step 1 of 13")
    patient_page.get_by_label("Pain now").fill("6.5")
    patient_page.get_by_role("button", name="Next").click()
    for number in range(1, 6):
        section = patient_page.get_by_role("group", name=re.compile(f"^Section {number}:"))
        expect(section).to_be_visible()
        section.get_by_label(ODI[number] or "Skip this section", exact=True).check()
        patient_page.get_by_role("button", name="Next").click()
    # The phone locks and the page reloads: nothing is lost, she is where she was.
    patient_page.reload()
    expect(patient_page.locator("#sr-step-label")).to_have_text("Step 7 of 13")
    patient_page.get_by_role("button", name="Back").click()
    expect(patient_page.get_by_role("group", name=re.compile("^Section 5:")).get_by_label(ODI[5])).to_be_checked()
    patient_page.get_by_role("button", name="Next").click()
    for number in range(6, 11):
        patient_page.get_by_role("group", name=re.compile(f"^Section {number}:")).get_by_label(
            ODI[number], exact=True
        ).check()
        patient_page.get_by_role("button", name="Next").click()
    patient_page.get_by_label("Opioid 1").select_option("morphine")
    patient_page.get_by_label("Daily dose 1").fill("30")
    patient_page.get_by_label("Opioid 2").select_option("oxycodone")
    patient_page.get_by_label("Daily dose 2").fill("10")
    patient_page.get_by_role("button", name="Next").click()
    button = patient_page.get_by_role("button", name="Send my answers")
    box = button.bounding_box()
    assert box["height"] >= 44 and box["width"] >= 300  # a large target on a phone
    button.click()
    expect(patient_page.get_by_role("heading", name="Thank you")).to_be_visible()
    # The link is spent: opening it again says only that it cannot be used.
    patient_page.goto(url)
    expect(patient_page.locator("#refused")).to_contain_text("This link cannot be used")
    phone.close()

    assert not FollowUp.objects.filter(patient=case, timepoint="m1").exists()  # nothing counts before review
    before = page.request.get(f"{live_server.url}/dashboard/summary.json").json()
    assert before["outcomes"]["vas"]["m1"]["n"] == 1
    page.goto(f"{live_server.url}/patients/worklist/")
    pending = page.locator("#selfreport-list")
    expect(pending).to_contain_text(f"{case.study_id} · 1 month")
    pending.get_by_role("link", name=re.compile("Review")).click()
    answers = page.locator("#patient-answers")
    expect(answers).to_contain_text("6.5")
    expect(answers).to_contain_text("skipped")
    expect(answers).to_contain_text("Morphine 30; Oxycodone 10")
    expect(page.get_by_label("ODI section 3: Lifting things")).to_have_value("")
    page.get_by_label("Pain now").fill("5.5")
    page.get_by_role("button", name="Accept as the visit").click()
    expect(page.locator("#errors")).to_contain_text("give the reason")
    page.get_by_label("Reason for changing the patient's answers").fill("Patient corrected her pain score by phone")
    page.get_by_role("button", name="Accept as the visit").click()
    expect(page.locator(".alert-success")).to_contain_text("Self-report accepted")

    visit = FollowUp.objects.get(patient=case, timepoint="m1")
    # ODI worked by hand from the statements chosen (0-based): 2+1+2+2+2+1+0+2+2 = 14 of 9 x 5 -> 31.1 %
    assert visit.vas == Decimal("5.5") and visit.odi_q3 is None and round(visit.odi_score, 1) == 31.1
    assert visit.opioid_count == 2

    summary = page.request.get(f"{live_server.url}/dashboard/summary.json").json()
    vas_m1 = summary["outcomes"]["vas"]["m1"]
    # Two pairs now: follow-up mean (5.5 + 4.5) / 2 = 5.0; change ((5.5 - 8) + (4.5 - 7)) / 2 = -2.5
    assert vas_m1["n"] == 2 and vas_m1["followup"]["mean"] == 5.0 and vas_m1["diff"]["mean"] == -2.5

    history = page.locator("#history")
    expect(history).to_contain_text(f"Entered by the patient via link {visit.selfreport.link_id}")
    expect(history).to_contain_text(f"patient via link {visit.selfreport.link_id}")
    expect(history).to_contain_text("Reviewed and accepted (1 correction(s))")
    correction = history.locator("tr", has_text="Patient corrected her pain score by phone")
    expect(correction).to_contain_text("Pain (0-10): 6.5 → 5.5")  # the field by its label (audit/display.py)
    expect(correction).to_contain_text("nurse")
