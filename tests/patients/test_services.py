import datetime
import hashlib

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import AuditEvent
from patients import services
from patients.models import Patient
from registry.errors import StaleEditError
from tests.factories import ConsentFactory, ConsentVersionFactory, PatientFactory, SiteFactory

pytestmark = pytest.mark.django_db


def test_enrolment_allocates_the_next_study_id_of_the_site(nurse):
    site = SiteFactory(code="BJ")
    PatientFactory(site=site, study_id="BJ-0007")
    patient = PatientFactory.build(site=site, study_id="")
    services.enrol_patient(patient=patient, user=nurse)
    assert patient.study_id == "BJ-0008"
    assert patient.age_at_enrolment == 63
    event = AuditEvent.objects.get(action="create", model="patients.Patient")
    assert event.username == "nurse" and event.study_id == "BJ-0008"


def test_an_edit_needs_a_reason_and_keeps_old_and_new_values(nurse):
    patient = PatientFactory(ecog=1)
    patient.ecog = 2
    with pytest.raises(ValidationError):
        services.update_patient(patient=patient, user=nurse, reason=" ", expected_version=1)
    services.update_patient(patient=patient, user=nurse, reason="typo on the CRF", expected_version=1)
    event = AuditEvent.objects.get(action="update")
    assert event.changes == {"ecog": [1, 2]}
    assert event.reason == "typo on the CRF"
    assert Patient.objects.get(pk=patient.pk).version == 2


def test_a_second_concurrent_edit_is_refused_not_overwritten(nurse):
    patient = PatientFactory(ecog=1)
    first, second = Patient.objects.get(pk=patient.pk), Patient.objects.get(pk=patient.pk)
    first.ecog = 2
    services.update_patient(patient=first, user=nurse, reason="r1", expected_version=1)
    second.ecog = 3
    with pytest.raises(StaleEditError):
        services.update_patient(patient=second, user=nurse, reason="r2", expected_version=1)
    assert Patient.objects.get(pk=patient.pk).ecog == 2


def test_consent_document_hash_is_computed_and_rechecked(nurse):
    patient = PatientFactory()
    consent = ConsentFactory.build(patient=patient, consent_version=ConsentVersionFactory())
    pdf = SimpleUploadedFile("signed.pdf", b"%PDF-1.4 signed", content_type="application/pdf")
    services.record_consent(consent=consent, user=nurse, document=pdf)
    assert consent.document_sha256 == hashlib.sha256(b"%PDF-1.4 signed").hexdigest()
    assert services.document_matches(consent) is True
    with open(consent.document.path, "ab") as fh:
        fh.write(b"tampered")
    assert services.document_matches(consent) is False


def test_signing_outside_the_version_period_is_refused(nurse):
    version = ConsentVersionFactory(version="2.0", effective_from=datetime.date(2024, 6, 1))
    consent = ConsentFactory.build(
        patient=PatientFactory(), consent_version=version, signed_date=datetime.date(2024, 5, 1)
    )
    with pytest.raises(ValidationError) as exc:
        services.record_consent(consent=consent, user=nurse)
    assert "signed_date" in exc.value.message_dict


def test_withdrawal_with_remove_data_takes_the_patient_out_of_analysis(nurse):
    consent = ConsentFactory()
    services.withdraw_consent(consent=consent, scope="remove_data", reason="patient request", user=nurse)
    assert not Patient.objects.in_analysis().filter(pk=consent.patient_id).exists()
    assert consent.patient.data_entry_block_reason().startswith("Consent was withdrawn")


def test_deleting_a_patient_keeps_every_deleted_value_in_the_trail(admin_user):
    consent = ConsentFactory()
    patient = consent.patient
    services.delete_patient(patient=patient, user=admin_user, reason="enrolled in error")
    assert not Patient.objects.filter(pk=patient.pk).exists()
    deleted = AuditEvent.objects.filter(action="delete", study_id=patient.study_id)
    assert {e.model for e in deleted} == {"patients.Patient", "patients.Consent"}
    assert deleted.get(model="patients.Patient").changes["mrn"] == [patient.mrn, None]
