"""Cross-record rules: an anchor date that would strand another record is refused, whichever record moves."""

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from audit.models import AuditEvent
from outcomes.models import FollowUp
from outcomes.services import record_visit
from patients.models import Patient
from patients.services import update_patient, withdraw_consent
from procedures.models import Procedure
from procedures.services import record_procedure
from tests.factories import ConsentFactory, FollowUpFactory, PatientFactory, ProcedureFactory

pytestmark = pytest.mark.django_db
JAN = datetime.date(2024, 1, 1)


@pytest.fixture
def case(site):
    """Enrolled 1 Jan 2024, procedure 1 on 3 Jan, a completed post-procedure visit on 4 Jan."""
    patient = PatientFactory(site=site, enrolment_date=JAN)
    ConsentFactory(patient=patient, signed_date=JAN)
    ProcedureFactory(patient=patient, procedure_date=JAN + datetime.timedelta(days=2), admission_date=JAN)
    FollowUpFactory(patient=patient, timepoint="post", visit_date=JAN + datetime.timedelta(days=3))
    return patient


def test_moving_the_index_procedure_after_a_post_visit_is_refused(case, nurse):
    procedure = Procedure.objects.get(patient=case)
    procedure.procedure_date = datetime.date(2024, 1, 20)
    procedure.discharge_date = datetime.date(2024, 1, 25)
    before = AuditEvent.objects.count()
    with pytest.raises(ValidationError) as refused:
        record_procedure(procedure=procedure, user=nurse, reason="date typo", expected_version=1)
    assert "The Post-procedure visit (2024-01-04) is before the index procedure (2024-01-20)." in str(refused.value)
    assert Procedure.objects.get(patient=case).procedure_date == datetime.date(2024, 1, 3)
    assert AuditEvent.objects.count() == before  # nothing half-written


def test_a_death_date_before_a_completed_visit_is_refused_on_the_patient_form(case, client, nurse):
    client.force_login(nurse)
    url = reverse("patients:edit", args=[case.study_id])
    form = client.get(url).context["form"]
    data = {k: v for k, v in form.initial.items() if v is not None and k != "site"}
    data |= {"denis_zones": case.denis_zones.split("|"), "death_date": "2024-01-03", "reason": "death reported"}
    data |= {k: str(data[k]) for k in ("enrolment_date", "date_of_birth", "symptom_onset_date", "imaging_date")}
    page = client.post(url, data | {"version": "1"}).content.decode()
    assert "The patient died on 2024-01-03; the Post-procedure visit (2024-01-04) cannot be a completed visit" in page
    assert Patient.objects.get().death_date is None


def test_a_later_enrolment_date_that_leaves_the_procedure_before_it_is_refused(case, nurse):
    patient = Patient.objects.get()
    patient.enrolment_date = datetime.date(2024, 1, 10)
    with pytest.raises(ValidationError, match=r"Procedure 1 \(2024-01-03\) is before the enrolment \(2024-01-10\)"):
        update_patient(patient=patient, user=nurse, reason="enrolment date corrected", expected_version=1)
    assert Patient.objects.get().enrolment_date == JAN


def test_a_visit_before_enrolment_is_refused(site, nurse):
    patient = PatientFactory(site=site, enrolment_date=JAN)
    ConsentFactory(patient=patient, signed_date=JAN)
    visit = FollowUp(patient=patient, timepoint="baseline", visit_date=datetime.date(2023, 12, 30), vas=Decimal(6))
    with pytest.raises(ValidationError, match=r"Baseline visit \(2023-12-30\) is before the enrolment"):
        record_visit(visit=visit, user=nurse)
    assert not FollowUp.objects.exists()


def test_a_withdrawal_dated_before_a_completed_visit_is_refused(case, nurse):
    consent = case.consents.get()
    with pytest.raises(ValidationError, match="is after the consent was withdrawn from new data"):
        withdraw_consent(consent=consent, scope="no_new_data", reason="asked", user=nurse, on=JAN)
    consent.refresh_from_db()
    assert consent.withdrawn_date is None
    withdraw_consent(consent=consent, scope="no_new_data", reason="asked", user=nurse, on=datetime.date(2024, 1, 5))


def test_after_a_no_new_data_withdrawal_and_a_re_consent_the_worklist_lists_the_patient_again(client, nurse, site):
    from registry.dates import today

    day = today()
    patient = PatientFactory(site=site, enrolment_date=day - datetime.timedelta(days=60))
    first = ConsentFactory(patient=patient, signed_date=day - datetime.timedelta(days=60))
    ProcedureFactory(patient=patient, procedure_date=day - datetime.timedelta(days=30))
    withdraw_consent(
        consent=first, scope="no_new_data", reason="tired", user=nurse, on=day - datetime.timedelta(days=20)
    )
    client.force_login(nurse)
    assert patient.study_id not in client.get(reverse("patients:worklist")).content.decode()
    ConsentFactory(patient=patient, signed_date=day - datetime.timedelta(days=5))  # she consents again
    assert patient.study_id in client.get(reverse("patients:worklist")).content.decode()
