import csv
import datetime
import io

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import record_event
from patients.services import delete_patient, update_patient
from tests.factories import PASSWORD, ConsentFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db


def _csv(response):
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def edited_patient(site, nurse):
    """A patient whose ECOG the nurse corrected, with a reason, through the service."""
    patient = PatientFactory(site=site, ecog=1)
    patient.ecog = 2
    update_patient(patient=patient, user=nurse, reason="ECOG re-assessed at clinic", expected_version=1)
    return patient


# --- who may open the trail ---------------------------------------------------


@pytest.mark.parametrize("url", ["/audit/", "/audit/trail.csv", "/audit/consents/", "/patients/consent-versions/"])
@pytest.mark.parametrize("role", ["nurse", "investigator"])
def test_only_admins_open_the_audit_pages(client, url, role, request):
    client.force_login(request.getfixturevalue(role))
    assert client.get(url).status_code == 403


def test_anonymous_users_are_sent_to_log_in(client):
    response = client.get("/audit/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


# --- log-ins ------------------------------------------------------------------


def test_log_ins_failed_log_ins_and_log_outs_are_in_the_trail(client, nurse):
    client.post("/accounts/login/", {"username": "nurse", "password": "wrong"})
    client.post("/accounts/login/", {"username": "nurse", "password": PASSWORD})
    client.post("/accounts/logout/")
    events = list(AuditEvent.objects.order_by("id").values_list("action", "username", "user"))
    assert events == [("login_failed", "nurse", None), ("login", "nurse", nurse.pk), ("logout", "nurse", nurse.pk)]


# --- the search ---------------------------------------------------------------


def test_an_admin_sees_a_change_with_old_and_new_value_and_its_reason(client, admin_user, edited_patient):
    client.force_login(admin_user)
    page = client.get("/audit/", {"action": "update", "study_id": edited_patient.study_id}).content.decode()
    assert "ECOG re-assessed at clinic" in page
    assert "ECOG performance status" in page  # the field's label, old 1, new 2
    event = AuditEvent.objects.get(action="update")
    assert event.username == "nurse" and event.changes == {"ecog": [1, 2]}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"username": "NURSE"}, {"update"}),
        ({"action": "create"}, {"create"}),
        ({"model": "patients.Patient"}, {"create", "update"}),
        ({"model": "patients.Consent"}, set()),
        ({"field": "ecog"}, {"create", "update"}),
        ({"field": "mrn"}, {"create"}),
        ({"study_id": "nobody"}, set()),
    ],
)
def test_the_search_filters(client, admin_user, params, expected):
    patient = PatientFactory(ecog=1)
    from audit.services import record_created

    record_created(patient, user=None, study_id=patient.study_id, site_code="PSP")
    nurse = UserFactory(username="nurse", role="nurse")
    patient.ecog = 2
    update_patient(patient=patient, user=nurse, reason="typo", expected_version=1)
    client.force_login(admin_user)
    page = client.get("/audit/", params).context["page"]
    assert {e.action for e in page if e.action != "login"} == expected


def test_the_date_range_is_whole_utc_days(client, admin_user):
    client.force_login(admin_user)
    today = timezone.now().astimezone(datetime.UTC).date()
    assert client.get("/audit/", {"date_from": today, "date_to": today}).context["page"].paginator.count == 1
    assert client.get("/audit/", {"date_to": today - datetime.timedelta(days=1)}).context["page"].paginator.count == 0


def test_the_search_takes_a_fixed_number_of_queries(client, admin_user, django_assert_num_queries):
    for n in range(120):
        record_event(action="login", username=f"user{n}")
    client.force_login(admin_user)
    # session, user, the admin's second-factor device, count, one page of events,
    # session save (savepoint, update, release)
    with django_assert_num_queries(8):
        response = client.get("/audit/", {"action": "login", "page": 2})
    assert len(response.context["page"]) == 50


# --- the CSV --------------------------------------------------------------------


def test_the_trail_csv_has_one_row_per_changed_field_and_is_neutralised(client, admin_user, nurse, site):
    patient = PatientFactory(site=site, notes="fine")
    patient.notes, patient.ecog = '=HYPERLINK("http://evil")', 3
    update_patient(patient=patient, user=nurse, reason="-clinic letter", expected_version=1)
    client.force_login(admin_user)
    response = client.get("/audit/trail.csv", {"action": "update"})
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = _csv(response)
    assert {(r["field"], r["old_value"], r["new_value"]) for r in rows} == {
        ("notes", "fine", '\'=HYPERLINK("http://evil")'),
        ("ecog", "", "3"),
    }
    assert {r["reason"] for r in rows} == {"'-clinic letter"}
    assert rows[0]["at_utc"].endswith("+00:00")
    assert AuditEvent.objects.filter(action="export", username="admin", reason="Audit trail CSV").exists()


# --- a patient's timeline and deletion -----------------------------------------


def test_a_patients_timeline_survives_the_patients_deletion(client, admin_user, edited_patient):
    client.force_login(admin_user)
    url = f"/audit/patients/{edited_patient.study_id}/"
    assert "ECOG re-assessed at clinic" in client.get(url).content.decode()

    delete_url = f"/audit/patients/{edited_patient.study_id}/delete/"
    response = client.post(delete_url, {"reason": "  ", "confirm": "on"})
    assert response.status_code == 200 and "Give the reason" in response.content.decode()
    response = client.post(delete_url, {"reason": "Enrolled twice by mistake", "confirm": "on"})
    assert response.status_code == 302 and response["Location"] == url

    page = client.get(url).content.decode()
    assert "has been deleted" in page and "Enrolled twice by mistake" in page and "ECOG re-assessed" in page
    deleted = AuditEvent.objects.get(action="delete", model="patients.Patient")
    assert deleted.changes["mrn"] == [edited_patient.mrn, None] and deleted.username == "admin"


def test_a_deleted_patients_consent_values_stay_in_the_trail(admin_user, site):
    consent = ConsentFactory(patient__site=site, obtained_by="RN07")
    delete_patient(patient=consent.patient, user=admin_user, reason="Duplicate")
    event = AuditEvent.objects.get(action="delete", model="patients.Consent")
    assert event.changes["obtained_by"] == ["RN07", None] and event.study_id == consent.patient.study_id


@pytest.mark.parametrize("role", ["nurse", "investigator"])
def test_only_admins_delete_patients(client, request, role, site):
    patient = PatientFactory(site=site)
    client.force_login(request.getfixturevalue(role))
    response = client.post(f"/audit/patients/{patient.study_id}/delete/", {"reason": "x", "confirm": "on"})
    assert response.status_code == 403
    assert patient.__class__.objects.filter(pk=patient.pk).exists()


def test_an_unknown_study_id_has_no_timeline(client, admin_user):
    client.force_login(admin_user)
    assert client.get("/audit/patients/PSP-9999/").status_code == 404


def test_the_django_admin_cannot_change_or_delete_the_trail(client, admin_user):
    event = record_event(action="login", username="nurse")
    client.force_login(admin_user)
    assert client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    response = client.post(f"/admin/audit/auditevent/{event.pk}/change/", {"username": "mallory"})
    assert response.status_code == 403
    event.refresh_from_db()
    assert event.username == "nurse"


def test_an_admin_deletes_one_visit_with_a_reason_and_its_values_stay_in_the_trail(client, admin_user, site):
    from outcomes.models import FollowUp, Medication
    from tests.factories import FollowUpFactory, MedicationFactory

    visit = FollowUpFactory(patient=ConsentFactory(patient__site=site).patient)
    MedicationFactory(followup=visit, drug="tramadol")
    client.force_login(admin_user)
    url = f"/audit/records/visit/{visit.pk}/delete/"
    response = client.post(url, {"reason": "", "confirm": "on"})
    assert "Give the reason for deleting this visit" in response.content.decode()
    response = client.post(url, {"reason": "Entered for the wrong patient", "confirm": "on"})
    assert response["Location"] == f"/audit/patients/{visit.patient.study_id}/"
    assert not FollowUp.objects.filter(pk=visit.pk).exists() and not Medication.objects.exists()
    events = AuditEvent.objects.filter(action="delete", reason="Entered for the wrong patient")
    assert {e.model for e in events} == {"outcomes.FollowUp", "outcomes.Medication"}
    assert events.get(model="outcomes.FollowUp").changes["vas"] == ["7.0", None]


@pytest.mark.parametrize("role", ["nurse", "investigator"])
def test_only_admins_delete_records(client, request, role, site):
    from procedures.models import Procedure
    from tests.factories import ProcedureFactory

    procedure = ProcedureFactory(patient__site=site)
    client.force_login(request.getfixturevalue(role))
    response = client.post(f"/audit/records/procedure/{procedure.pk}/delete/", {"reason": "x", "confirm": "on"})
    assert response.status_code == 403 and Procedure.objects.filter(pk=procedure.pk).exists()


def test_unknown_record_kinds_are_not_found(client, admin_user):
    client.force_login(admin_user)
    assert client.get("/audit/records/patient/1/delete/").status_code == 404
