import datetime
import hashlib
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import AuditEvent
from patients.models import Consent, Patient
from tests.factories import (
    ConsentFactory,
    ConsentVersionFactory,
    FollowUpFactory,
    PatientFactory,
    ProcedureFactory,
)
from tests.pdfs import real_pdf

MARIA_PDF = real_pdf("signed by Maria")

pytestmark = pytest.mark.django_db
TODAY = datetime.date.today()


def treated(site, days_ago: int, **patient_kwargs) -> Patient:
    """A consented patient whose index procedure was `days_ago` days ago."""
    patient = PatientFactory(site=site, enrolment_date=TODAY - datetime.timedelta(days=days_ago + 5), **patient_kwargs)
    ConsentFactory(patient=patient)
    ProcedureFactory(patient=patient, procedure_date=TODAY - datetime.timedelta(days=days_ago))
    return patient


def test_worklist_lists_due_and_overdue_visits_of_the_nurses_sites_only(client, nurse, site, other_site):
    due = treated(site, 30, full_name="Due Dora")  # m1 window open, baseline..w1 overdue
    FollowUpFactory(patient=due, timepoint="baseline", visit_date=TODAY - datetime.timedelta(days=31))
    dead = treated(site, 30, full_name="Dead Dan")
    dead.death_date = TODAY
    dead.save()
    withdrawn = treated(site, 30, full_name="Withdrawn Wendy")
    Consent.objects.filter(patient=withdrawn).update(withdrawn_date=TODAY, withdrawal_scope="no_new_data")
    removed = treated(site, 30, full_name="Removed Ron")
    Consent.objects.filter(patient=removed).update(withdrawn_date=TODAY, withdrawal_scope="remove_data")
    no_contact = treated(site, 30, full_name="Quiet Quentin")
    Consent.objects.filter(patient=no_contact).update(withdrawn_date=TODAY, withdrawal_scope="no_contact")
    treated(other_site, 30, full_name="Elsewhere Ed")
    client.force_login(nurse)

    page = client.get(reverse("patients:worklist")).content.decode()

    assert "Due Dora" in page and "Quiet Quentin" in page
    for hidden in ("Dead Dan", "Withdrawn Wendy", "Removed Ron", "Elsewhere Ed"):
        assert hidden not in page
    assert page.count(f"/visits/{due.study_id}/") == 3  # post and w1 overdue, m1 due; baseline recorded
    assert "Overdue" in page and "Due now" in page and "Due (window opens" in page


def test_worklist_query_count_does_not_grow_with_patients(client, nurse, site, django_assert_num_queries):
    client.force_login(nurse)
    treated(site, 30)
    # session, user, the user's sites, the group counts with the first page of visits (one
    # statement), the awaiting list, and the session save (SESSION_SAVE_EVERY_REQUEST: 3); the
    # monitoring section at the top: open queries (a page of them, their count), visits long past
    # their window (one LIMIT query); the self-reports to review
    with django_assert_num_queries(12) as first:
        client.get(reverse("patients:worklist"))
    for _ in range(4):
        FollowUpFactory(patient=treated(site, 100), timepoint="m3", visit_date=TODAY)
    with django_assert_num_queries(len(first.captured_queries)):
        response = client.get(reverse("patients:worklist"))
    assert response.content.decode().count("Record visit") >= 5


def test_patient_list_searches_own_sites_by_mrn_name_and_study_id(client, nurse, site, other_site):
    mine = PatientFactory(site=site, full_name="Ada Lovelace", mrn="H12345")
    PatientFactory(site=site, full_name="Grace Hopper", mrn="H99999")
    PatientFactory(site=other_site, full_name="Ada Elsewhere", mrn="H12346")
    client.force_login(nurse)
    url = reverse("patients:list")

    by_name = client.post(url, {"q": "ada"}, follow=True).content.decode()
    by_mrn = client.post(url, {"q": "H1234"}, follow=True).content.decode()
    by_id = client.post(url, {"q": mine.study_id}, follow=True).content.decode()

    for page in (by_name, by_mrn, by_id):
        assert "Ada Lovelace" in page and "1 patient " in page
        assert "Elsewhere" not in page and "Grace Hopper" not in page


def test_patient_list_is_paginated_with_a_fixed_number_of_queries(client, nurse, site, django_assert_num_queries):
    PatientFactory.create_batch(3, site=site)
    client.force_login(nurse)
    with django_assert_num_queries(7) as few:  # session, user, count, page, session save (3)
        client.get(reverse("patients:list"))
    PatientFactory.create_batch(30, site=site)
    with django_assert_num_queries(len(few.captured_queries)):
        page = client.get(reverse("patients:list")).content.decode()
    assert "33 patients" in page and "Page 1 of 2" in page


def test_another_sites_patient_is_not_found_anywhere(client, nurse, other_site):
    theirs = treated(other_site, 10)
    client.force_login(nurse)
    urls = [
        reverse("patients:detail", args=[theirs.study_id]),
        reverse("patients:edit", args=[theirs.study_id]),
        reverse("patients:consent", args=[theirs.study_id]),
        reverse("procedures:create", args=[theirs.study_id]),
        reverse("procedures:edit", args=[theirs.procedures.get().pk]),
        reverse("outcomes:visit", args=[theirs.study_id, "post"]),
    ]
    assert [client.get(u).status_code for u in urls] == [404] * len(urls)
    assert client.post(urls[1], {"full_name": "x"}).status_code == 404


def test_investigators_get_403_and_no_identifiers(client, investigator, site):
    patient = treated(site, 10, full_name="Secret Sally", mrn="MRN-SECRET")
    client.force_login(investigator)
    for url in (
        reverse("patients:list"),
        reverse("patients:worklist"),
        reverse("patients:detail", args=[patient.study_id]),
    ):
        response = client.get(url)
        assert response.status_code == 403
        assert b"Secret Sally" not in response.content and b"MRN-SECRET" not in response.content


def enrol_data(site, **overrides):
    data = {
        "site": site.pk,
        "enrolment_date": TODAY.isoformat(),
        "full_name": "Maria Example",
        "mrn": "A-778",
        "date_of_birth": "1955-04-02",
        "sex": "F",
        "primary_tumour": "breast",
        "lesion_character": "osteolytic",
        "pathological_fracture": "True",
        "denis_zones": ["I", "II"],
        "neurological_deficit": "False",
        "symptom_onset_date": (TODAY - datetime.timedelta(days=40)).isoformat(),
        "imaging_date": (TODAY - datetime.timedelta(days=10)).isoformat(),
        "imaging_modality": "mri",
        "prior_radiotherapy": "False",
        "prior_chemotherapy": "True",
        "ecog": "2",
    }
    return data | overrides


def test_enrolment_then_consent_with_the_signed_pdf(client, nurse, site):
    version = ConsentVersionFactory(version="2.0", effective_from=datetime.date(2020, 1, 1))
    client.force_login(nurse)
    response = client.post(reverse("patients:enrol"), enrol_data(site))
    patient = Patient.objects.get(mrn="A-778")
    assert response.url == reverse("patients:consent", args=[patient.study_id])
    assert patient.study_id == "PSP-0001" and patient.denis_zones == "I|II" and patient.pathological_fracture

    blocked = client.get(reverse("procedures:create", args=[patient.study_id])).content.decode()
    assert "No consent is recorded" in blocked

    form = client.get(response.url).content.decode()
    assert re.search(r'<option value="\d+" selected>v2.0</option>', form)  # the version in force is proposed
    pdf = SimpleUploadedFile("signed.pdf", MARIA_PDF, content_type="application/pdf")
    consent_data = {
        "consent_version": version.pk,
        "signed_date": TODAY.isoformat(),
        "obtained_by": "RN07",
        "scope_registry": "True",
        "scope_future_contact": "False",
        "document": pdf,
    }
    client.post(response.url, consent_data)
    consent = Consent.objects.get(patient=patient)
    assert consent.document_sha256 == hashlib.sha256(MARIA_PDF).hexdigest()
    page = client.get(reverse("patients:detail", args=[patient.study_id])).content.decode()
    assert "Valid consent" in page and "RN07" in page
    document = client.get(reverse("patients:consent_document", args=[consent.pk]))
    assert b"".join(document.streaming_content) == MARIA_PDF


def test_a_consent_upload_that_is_not_a_pdf_is_refused(client, nurse, site):
    patient = PatientFactory(site=site)
    version = ConsentVersionFactory()
    client.force_login(nurse)
    data = {
        "consent_version": version.pk,
        "signed_date": TODAY.isoformat(),
        "obtained_by": "RN07",
        "scope_registry": "True",
        "scope_future_contact": "True",
        "document": SimpleUploadedFile("x.pdf", b"MZ not a pdf"),
    }
    page = client.post(reverse("patients:consent", args=[patient.study_id]), data).content.decode()
    assert "This file is not a PDF" in page and 'value="RN07"' in page
    assert not Consent.objects.exists()


def test_enrolment_refuses_impossible_values_and_keeps_what_was_typed(client, nurse, site):
    client.force_login(nurse)
    data = enrol_data(site, date_of_birth=(TODAY + datetime.timedelta(days=3)).isoformat())
    page = client.post(reverse("patients:enrol"), data).content.decode()
    assert 'role="alert"' in page and "Date cannot be in the future" in page
    assert 'value="Maria Example"' in page and 'value="A-778"' in page
    assert not Patient.objects.exists()


def test_an_edit_needs_a_reason_and_shows_in_the_history(client, nurse, site):
    patient = treated(site, 10)
    client.force_login(nurse)
    url = reverse("patients:edit", args=[patient.study_id])
    data = enrol_data(
        site,
        full_name=patient.full_name,
        mrn=patient.mrn,
        ecog="3",
        version="1",
        enrolment_date=str(patient.enrolment_date),
    )
    data.pop("site")

    no_reason = client.post(url, data).content.decode()
    assert "This field is required" in no_reason and Patient.objects.get().ecog is None

    client.post(url, data | {"reason": "ECOG re-assessed by the oncologist"})
    page = client.get(reverse("patients:detail", args=[patient.study_id])).content.decode()
    assert "ECOG re-assessed by the oncologist" in page
    assert AuditEvent.objects.filter(action="update", study_id=patient.study_id).exists()


def test_a_second_concurrent_edit_is_refused_with_a_message(client, nurse, site):
    patient = treated(site, 10)
    client.force_login(nurse)
    url = reverse("patients:edit", args=[patient.study_id])
    data = enrol_data(
        site, full_name=patient.full_name, mrn=patient.mrn, version="1", enrolment_date=str(patient.enrolment_date)
    )
    data.pop("site")
    client.post(url, data | {"ecog": "1", "reason": "first"})
    page = client.post(url, data | {"ecog": "4", "reason": "second"}).content.decode()
    assert "changed by someone else" in page
    assert Patient.objects.get().ecog == 1


def test_the_same_mrn_twice_at_one_site_is_refused(client, nurse, site):
    PatientFactory(site=site, mrn="A-778")
    client.force_login(nurse)
    page = client.post(reverse("patients:enrol"), enrol_data(site)).content.decode()
    assert "already exists" in page and 'value="Maria Example"' in page
    assert Patient.objects.count() == 1


def test_the_patient_page_makes_a_fixed_number_of_queries(client, nurse, site, django_assert_num_queries):
    from tests.factories import ComplicationFactory, LeakageFactory, MedicationFactory, ProcedureFactory

    def page_queries(patient) -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse("patients:detail", args=[patient.study_id])).status_code == 200
        return len(ctx.captured_queries)

    client.force_login(nurse)
    small = ConsentFactory(patient=PatientFactory(site=site)).patient  # one of everything
    first = ProcedureFactory(patient=small, leakage=True)
    LeakageFactory(procedure=first)
    ComplicationFactory(procedure=first)
    MedicationFactory(followup=FollowUpFactory(patient=small, visit_date=first.procedure_date))
    large = ConsentFactory(patient=PatientFactory(site=site)).patient
    procedure = ProcedureFactory(patient=large, leakage=True)
    LeakageFactory(procedure=procedure)
    LeakageFactory(procedure=procedure, site="venous")
    ComplicationFactory(procedure=procedure)
    ProcedureFactory(
        patient=large, procedure_number=2, procedure_date=procedure.procedure_date + datetime.timedelta(days=40)
    )
    for timepoint, day in (("baseline", 0), ("post", 1), ("w1", 7), ("m1", 30)):
        visit = FollowUpFactory(
            patient=large, timepoint=timepoint, visit_date=procedure.procedure_date + datetime.timedelta(days=day)
        )
        MedicationFactory(followup=visit)
        MedicationFactory(followup=visit, drug="tramadol")
    expected = page_queries(small)
    with django_assert_num_queries(expected):
        client.get(reverse("patients:detail", args=[large.study_id]))


def test_reads_of_identified_records_and_search_terms_are_in_the_trail_not_in_urls(client, nurse, site):
    from audit.models import AuditEvent
    from tests.factories import ProcedureFactory

    patient = PatientFactory(site=site, full_name="Ada Lovelace", mrn="H12345")
    consent = ConsentFactory(patient=patient)
    procedure = ProcedureFactory(patient=patient)
    client.force_login(nurse)
    response = client.post(reverse("patients:list"), {"q": "H12345"})
    assert response.status_code == 302 and "H12345" not in response["Location"]
    assert "Ada Lovelace" in client.get(response["Location"]).content.decode()  # the result, from the session
    for url in (
        reverse("patients:detail", args=[patient.study_id]),
        reverse("patients:edit", args=[patient.study_id]),
        reverse("patients:consent_record", args=[consent.pk]),
        reverse("procedures:edit", args=[procedure.pk]),
        reverse("outcomes:visit", args=[patient.study_id, "post"]),
    ):
        assert client.get(url).status_code == 200
    search = AuditEvent.objects.get(action="search")
    assert (search.username, search.extra["term"]) == (nurse.username, "H12345")
    views = AuditEvent.objects.filter(action="view", study_id=patient.study_id).order_by("id")
    assert [e.extra["page"] for e in views] == [
        "patient page",
        "patient record form",
        "consent record",
        f"procedure {procedure.procedure_number} form",
        "post visit form",
    ]
    assert {e.username for e in views} == {nurse.username}


def test_an_admin_sees_who_opened_a_record_on_its_timeline(client, nurse, admin_user, site):
    patient = PatientFactory(site=site)
    client.force_login(nurse)
    client.get(reverse("patients:detail", args=[patient.study_id]))
    client.get(reverse("patients:detail", args=[patient.study_id]))
    client.force_login(admin_user)
    page = client.get(reverse("oversight:patient_history", args=[patient.study_id])).content.decode()
    readers = page[page.index('id="readers"') :]
    assert f"<td>{nurse.username}</td><td>2</td>" in readers and "patient page" in readers
