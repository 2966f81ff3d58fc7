import datetime
import re
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from audit.models import AuditEvent
from outcomes.models import FollowUp, Medication
from outcomes.services import record_visit
from registry.errors import StaleEditError
from tests.factories import ConsentFactory, FollowUpFactory, MedicationFactory, PatientFactory, ProcedureFactory

pytestmark = pytest.mark.django_db
TODAY = datetime.date.today()
PROCEDURE_DAY = TODAY - datetime.timedelta(days=2)


@pytest.fixture
def patient(site):
    patient = PatientFactory(site=site, enrolment_date=TODAY - datetime.timedelta(days=10))
    ConsentFactory(patient=patient)
    ProcedureFactory(patient=patient, procedure_date=PROCEDURE_DAY)
    return patient


def med(drug: str, dose: str, route: str = "") -> Medication:
    return Medication(drug=drug, daily_dose=Decimal(dose), route=route)


def test_record_visit_saves_the_opioids_and_their_derived_values(nurse, patient):
    visit = FollowUp(patient=patient, timepoint="post", visit_date=TODAY, vas=Decimal("4.5"), odi_q1=3, odi_q2=2)
    for n in range(3, 11):
        setattr(visit, f"odi_q{n}", 1)
    record_visit(visit=visit, medications=[med("morphine", "30"), med("oxycodone", "10")], user=nurse)
    saved = FollowUp.objects.get()
    assert saved.opioid_count == 2 and saved.mme_per_day == 45.0 and saved.mme_factor_table == "CDC-2022"
    assert saved.odi_score == pytest.approx(13 / 50 * 100)
    assert [m.drug for m in saved.medications.all()] == ["morphine", "oxycodone"]

    saved.vas = Decimal("3")
    record_visit(
        visit=saved,
        medications=[med("buprenorphine", "0.2")],
        removed=list(saved.medications.all()),
        user=nurse,
        reason="pharmacy list",
        expected_version=1,
    )
    saved.refresh_from_db()
    assert saved.opioid_count == 1 and saved.mme_per_day is None  # no factor: unknown, never a partial sum
    deleted = AuditEvent.objects.filter(action="delete", model="outcomes.Medication", reason="pharmacy list")
    assert deleted.count() == 2


def test_record_visit_refuses_a_stale_edit_and_opioids_at_a_missed_visit(nurse, patient):
    visit = FollowUpFactory(patient=patient, timepoint="post", visit_date=TODAY)
    MedicationFactory(followup=visit)
    first, second = FollowUp.objects.get(), FollowUp.objects.get()
    first.vas = Decimal("2")
    retyped = Medication.objects.get()
    retyped.daily_dose = Decimal("30.0")  # the same dose typed again
    record_visit(visit=first, medications=[retyped], user=nurse, reason="r1", expected_version=1)
    assert not AuditEvent.objects.filter(model="outcomes.Medication").exists()  # same dose: nothing rewritten
    assert Medication.objects.get().version == 1
    second.vas = Decimal("9")
    with pytest.raises(StaleEditError):
        record_visit(visit=second, medications=[], user=nurse, reason="r2", expected_version=1)
    missed = FollowUp(patient=patient, timepoint="w1", status="missed")
    with pytest.raises(ValidationError, match="completed visit"):
        record_visit(visit=missed, medications=[med("morphine", "5")], user=nurse)
    assert FollowUp.objects.get().vas == Decimal("2")


def visit_data(**overrides) -> dict:
    data = {
        "status": "completed",
        "visit_date": TODAY.isoformat(),
        "vas": "6.5",
        **{f"odi_q{n}": "2" for n in range(1, 11)},
        "med-TOTAL_FORMS": "2",
        "med-INITIAL_FORMS": "0",
        "med-MIN_NUM_FORMS": "0",
        "med-MAX_NUM_FORMS": "1000",
        "med-0-drug": "morphine",
        "med-0-daily_dose": "20",
        "med-1-drug": "tramadol",
        "med-1-daily_dose": "100",
    }
    return data | overrides


def test_the_visit_form_saves_scores_and_opioids(client, nurse, patient):
    client.force_login(nurse)
    response = client.post(reverse("outcomes:visit", args=[patient.study_id, "post"]), visit_data())
    assert response.status_code == 302
    page = client.get(response.url).content.decode()
    visit = FollowUp.objects.get()
    assert (visit.odi_score, visit.opioid_count, visit.mme_per_day) == (40.0, 2, 40.0)
    assert "6.5" in page and "40.0" in page


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"vas": "11"}, "Ensure this value is less than or equal to 10."),
        (
            {"visit_date": (PROCEDURE_DAY - datetime.timedelta(days=1)).isoformat()},
            f"visit ({(PROCEDURE_DAY - datetime.timedelta(days=1)).isoformat()}) is before the index procedure",
        ),
        ({"visit_date": (TODAY + datetime.timedelta(days=1)).isoformat()}, "Date cannot be in the future."),
        ({"med-1-daily_dose": "-5"}, "Ensure this value is greater than or equal to 0."),
    ],
)
def test_impossible_values_are_refused_and_the_typed_data_stays(client, nurse, patient, overrides, message):
    client.force_login(nurse)
    page = client.post(
        reverse("outcomes:visit", args=[patient.study_id, "post"]), visit_data(**overrides)
    ).content.decode()
    assert message in page and 'role="alert"' in page
    assert 'value="tramadol" selected' in page
    assert re.search(r'name="odi_q7" value="2"[^>]*checked', page)
    assert not FollowUp.objects.exists()


def test_a_visit_outside_its_window_needs_a_deviation_note(client, nurse, site):
    patient = PatientFactory(site=site, enrolment_date=TODAY - datetime.timedelta(days=40))
    ConsentFactory(patient=patient)
    ProcedureFactory(patient=patient, procedure_date=TODAY - datetime.timedelta(days=20))
    client.force_login(nurse)
    url = reverse("outcomes:visit", args=[patient.study_id, "post"])
    page = client.post(url, visit_data()).content.decode()
    assert "Post-procedure visit" in page and "is outside its window" in page and "explain the deviation" in page
    assert client.post(url, visit_data(deviation_note="Patient readmitted, seen late")).status_code == 302


def test_changing_one_dose_writes_one_change_of_one_field_and_recomputes_mme(client, nurse, patient):
    visit = FollowUpFactory(patient=patient, timepoint="post", visit_date=TODAY)
    morphine = MedicationFactory(followup=visit, drug="morphine", daily_dose=Decimal("30"))
    tramadol = MedicationFactory(followup=visit, drug="tramadol", daily_dose=Decimal("100"))
    visit.compute_derived(visit.medications.all())  # as saved by the service: 30 + 100 x 0.2 = 50
    visit.save()
    client.force_login(nurse)
    url = reverse("outcomes:visit", args=[patient.study_id, "post"])
    form = client.get(url).context["meds"]
    data = visit_data(
        vas=str(visit.vas),
        **{
            f"odi_q{n}": "" if getattr(visit, f"odi_q{n}") is None else str(getattr(visit, f"odi_q{n}"))
            for n in range(1, 11)
        },
        version=str(visit.version),
        reason="dose corrected from the chart",
        **{"med-TOTAL_FORMS": "2", "med-INITIAL_FORMS": "2"},
        **{
            "med-0-id": str(form.forms[0].instance.pk),
            "med-0-version": "1",
            "med-0-drug": "morphine",
            "med-0-daily_dose": "60",
        },
        **{
            "med-1-id": str(form.forms[1].instance.pk),
            "med-1-version": "1",
            "med-1-drug": "tramadol",
            "med-1-daily_dose": "100.0",
        },
    )
    assert client.post(url, data).status_code == 302
    med_events = AuditEvent.objects.filter(model="outcomes.Medication")
    assert [(e.action, e.object_pk, e.changes) for e in med_events] == [
        ("update", str(morphine.pk), {"daily_dose": ["30.000", "60.000"]})
    ]
    assert set(Medication.objects.values_list("pk", flat=True)) == {morphine.pk, tramadol.pk}  # same rows, kept
    visit.refresh_from_db()
    # hand-worked: morphine 60 mg x 1.0 + tramadol 100 mg x 0.2 = 80 MME/day
    assert visit.mme_per_day == 80.0 and visit.opioid_count == 2
    visit_event = AuditEvent.objects.get(model="outcomes.FollowUp", action="update")
    assert visit_event.changes["mme_per_day"] == [50.0, 80.0] and visit_event.reason == "dose corrected from the chart"


def test_an_iv_dose_makes_mme_unknown_and_a_patch_keeps_its_factor(client, nurse, patient):
    visit = FollowUp(patient=patient, timepoint="post", visit_date=TODAY, vas=Decimal("5"))
    record_visit(visit=visit, medications=[med("fentanyl_td", "25"), med("morphine", "10")], user=nurse)
    visit.refresh_from_db()
    assert visit.mme_per_day == 25 * 2.4 + 10  # CDC 2022: fentanyl patch 2.4 per mcg/h, oral morphine 1.0
    assert sorted(visit.medications.values_list("route", flat=True)) == ["oral", "transdermal"]
    iv = FollowUp(patient=patient, timepoint="w1", visit_date=TODAY, vas=Decimal("5"), deviation_note="seen early")
    record_visit(visit=iv, medications=[med("morphine", "10", route="iv")], user=nurse)
    iv.refresh_from_db()
    assert iv.mme_per_day is None and iv.opioid_count == 1
    client.force_login(nurse)
    page = client.get(reverse("outcomes:visit", args=[patient.study_id, "w1"])).content.decode()
    # the drug and route by their labels, as the form names them, not their codes
    assert "unknown (Morphine, Intravenous (including PCA): the CDC factors are for oral doses)" in page
