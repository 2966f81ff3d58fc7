"""Queries on a field, verification, signatures and locks, through the pages and the services."""

import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from audit.models import AuditEvent
from outcomes.models import FollowUp
from outcomes.services import record_visit
from oversight import services
from oversight.models import DataQuery, QueryMessage, Verification
from patients.models import CaseLock
from patients.services import update_patient
from procedures.services import record_procedure
from tests.accounts.totp import totp
from tests.conftest import confirmed_totp
from tests.factories import PASSWORD, ConsentFactory, FollowUpFactory, PatientFactory, ProcedureFactory

pytestmark = pytest.mark.django_db
TODAY = datetime.date.today()


@pytest.fixture
def case(site):
    patient = PatientFactory(site=site, enrolment_date=TODAY - datetime.timedelta(days=60))
    ConsentFactory(patient=patient)
    procedure = ProcedureFactory(patient=patient, procedure_date=TODAY - datetime.timedelta(days=40))
    visit = FollowUpFactory(patient=patient, timepoint="m1", visit_date=TODAY - datetime.timedelta(days=10))
    return patient, procedure, visit


def _trail(patient):
    return list(AuditEvent.objects.filter(study_id=patient.study_id, model="oversight.DataQuery").order_by("id"))


def test_query_lifecycle_through_the_pages_with_every_step_in_the_trail(client, case, monitor, nurse):
    patient, _procedure, visit = case
    client.force_login(monitor)
    page = client.get(f"/patients/{patient.study_id}/")
    assert page.status_code == 200 and patient.full_name in page.content.decode()  # identified, for SDV
    response = client.post(
        f"/audit/queries/new/{patient.study_id}/",
        {"record": f"outcomes.FollowUp:{visit.pk}", "field": "vas", "question": "Source says 6.0, not 7.0?"},
    )
    query = DataQuery.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/audit/queries/{query.pk}/"
    assert (query.field, query.value_when_raised, query.state) == ("vas", "7.0", "open")
    assert "1 open query" in client.get(f"/patients/{patient.study_id}/").content.decode()

    client.force_login(nurse)
    worklist = client.get("/patients/worklist/").content.decode()
    assert f"/audit/queries/{query.pk}/" in worklist and "Source says 6.0" in worklist
    assert client.post(f"/audit/queries/{query.pk}/", {"action": "close", "text": "x"}).status_code == 403
    client.post(f"/audit/queries/{query.pk}/", {"action": "answer", "text": "Transcription error, corrected."})
    visit.vas = Decimal("6.0")
    record_visit(visit=visit, user=nurse, reason=f"query #{query.pk}: source 6.0", expected_version=visit.version)
    query.refresh_from_db()
    assert query.state == "answered"
    assert f"/audit/queries/{query.pk}/" not in client.get("/patients/worklist/").content.decode()  # no longer open

    client.force_login(monitor)
    assert client.post(f"/audit/queries/{query.pk}/", {"action": "answer", "text": "x"}).status_code == 403
    client.post(f"/audit/queries/{query.pk}/", {"action": "close", "text": "Confirmed against source."})
    query.refresh_from_db()
    assert query.state == "closed"
    assert "0 open queries" in client.get(f"/patients/{patient.study_id}/").content.decode()
    steps = [(e.username, e.action, e.changes.get("state")) for e in _trail(patient)]
    assert steps == [
        ("monitor", "create", [None, "open"]),
        ("nurse", "update", ["open", "answered"]),
        ("monitor", "update", ["answered", "closed"]),
    ]
    assert AuditEvent.objects.filter(model="outcomes.FollowUp", reason__startswith=f"query #{query.pk}").count() == 1
    assert [m.kind for m in QueryMessage.objects.filter(query=query)] == ["question", "answer", "close"]


def test_the_monitor_never_edits_a_value(client, case, monitor):
    patient, procedure, visit = case
    client.force_login(monitor)
    for url in (
        f"/visits/{patient.study_id}/m1/",
        f"/procedures/{procedure.pk}/edit/",
        f"/patients/{patient.study_id}/edit/",
        "/patients/enrol/",
    ):
        assert client.get(url).status_code == 403, url
        assert client.post(url, {"vas": "1", "reason": "x"}).status_code == 403, url
    visit.refresh_from_db()
    assert visit.vas == Decimal("7.0")


def test_a_monitor_of_another_site_cannot_raise_and_bad_input_is_a_400(client, case, other_site):
    patient, _p, visit = case
    from tests.factories import UserFactory

    stranger = UserFactory(role="monitor")
    stranger.sites.add(other_site)
    client.force_login(stranger)
    assert client.get(f"/audit/queries/new/{patient.study_id}/").status_code == 404
    with pytest.raises(PermissionDenied):
        services.raise_query(record=visit, field="vas", question="?", user=stranger)
    client.force_login(UserFactory(role="monitor", username="m2"))
    client.force_login(type(stranger).objects.get(username="m2"))
    type(stranger).objects.get(username="m2").sites.add(patient.site)
    response = client.post(
        f"/audit/queries/new/{patient.study_id}/",
        {"record": f"outcomes.FollowUp:{visit.pk}", "field": "no_such_field", "question": "?"},
    )
    assert response.status_code == 400 and "is not a value of this record" in response.content.decode()
    assert not DataQuery.objects.exists()


def test_reopen_after_close(case, monitor, nurse):
    _patient, _p, visit = case
    q = services.raise_query(record=visit, field="visit_date", question="Date?", user=monitor)
    services.close_query(query=q, user=monitor, text="fine")
    with pytest.raises(ValidationError):
        services.answer_query(query=q, user=nurse, text="late answer")
    q = services.reopen_query(query=q, user=monitor, text="Actually, check again")
    assert q.state == "open"
    assert services.answer_query(query=q, user=nurse, text="checked").state == "answered"


# --- verification and locks -------------------------------------------------------


def test_verify_then_sign_and_every_write_path_is_refused_until_unlocked(
    client, case, monitor, investigator, nurse, admin_user
):
    patient, procedure, visit = case
    client.force_login(monitor)
    client.post(f"/audit/patients/{patient.study_id}/verify/", {"target": f"visit:{visit.pk}"})
    client.post(f"/audit/patients/{patient.study_id}/verify/", {"target": "case:"})
    assert sorted(Verification.objects.values_list("record_label", flat=True)) == ["1 month visit", "Whole case"]
    assert AuditEvent.objects.filter(model="oversight.Verification", username="monitor").count() == 2

    client.force_login(investigator)
    assert patient.study_id in client.get("/audit/monitoring/").content.decode()  # awaiting her signature
    wrong = client.post(f"/audit/patients/{patient.study_id}/sign/", {"password": "nope", "meaning": "on"})
    assert wrong.status_code == 400 and "password is not correct" in wrong.content.decode()
    unsigned = client.post(f"/audit/patients/{patient.study_id}/sign/", {"password": PASSWORD})
    assert unsigned.status_code == 400 and not CaseLock.objects.exists()  # the statement of meaning is required
    signed = client.post(f"/audit/patients/{patient.study_id}/sign/", {"password": PASSWORD, "meaning": "on"})
    assert signed.status_code == 302
    lock = CaseLock.objects.get()
    assert (lock.signed_by, lock.meaning, lock.timepoint) == (
        investigator,
        "I approve these data as complete and accurate.",
        "",
    )
    event = AuditEvent.objects.get(model="patients.CaseLock", action="create")
    assert event.username == "investigator" and event.changes["meaning"][1] == CaseLock.MEANING

    # every write path refuses, with a message naming the signature
    client.force_login(nurse)
    page = client.get(f"/patients/{patient.study_id}/").content.decode()
    assert "Case locked" in page and lock.signed_by_name in page
    response = client.post(
        f"/visits/{patient.study_id}/m1/",
        {
            "status": "completed",
            "visit_date": visit.visit_date.isoformat(),
            "vas": "2",
            "reason": "x",
            "version": visit.version,
            "med-TOTAL_FORMS": "0",
            "med-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code in (200, 400) and "is locked" in response.content.decode()
    visit.vas = Decimal("1.0")
    with pytest.raises(ValidationError, match="is locked"):
        record_visit(visit=visit, user=nurse, reason="x", expected_version=visit.version)
    with pytest.raises(ValidationError, match="is locked"):
        record_procedure(procedure=procedure, user=nurse, reason="x", expected_version=procedure.version)
    patient.notes = "changed"
    with pytest.raises(ValidationError, match="is locked"):
        update_patient(patient=patient, user=nurse, reason="x", expected_version=patient.version)
    client.force_login(admin_user)
    deleted = client.post(f"/audit/records/visit/{visit.pk}/delete/", {"reason": "dup", "confirm": "on"})
    assert deleted.status_code == 200 and "is locked" in deleted.content.decode()
    assert FollowUp.objects.filter(pk=visit.pk, vas=Decimal("7.0")).exists()

    # the admin unlocks with a reason; then the nurse can correct
    assert client.post(f"/audit/locks/{lock.pk}/unlock/", {"reason": ""}).status_code == 400
    client.post(f"/audit/locks/{lock.pk}/unlock/", {"reason": "Late lab correction"})
    lock.refresh_from_db()
    assert lock.unlocked_by == admin_user and lock.unlock_reason == "Late lab correction"
    assert AuditEvent.objects.filter(
        model="patients.CaseLock", action="update", reason="Unlocked: Late lab correction"
    ).exists()
    visit = FollowUp.objects.get(pk=visit.pk)
    visit.vas = Decimal("1.0")
    record_visit(visit=visit, user=nurse, reason="after unlock", expected_version=visit.version)


def test_a_visit_lock_leaves_the_rest_of_the_case_editable(case, investigator, nurse):
    patient, procedure, visit = case
    services.sign_lock(patient=patient, user=investigator, password=PASSWORD, meaning=CaseLock.MEANING, timepoint="m1")
    visit.vas = Decimal("1.0")
    with pytest.raises(ValidationError, match="the 1 month visit is locked"):
        record_visit(visit=visit, user=nurse, reason="x", expected_version=visit.version)
    procedure.operator = "IR09"
    record_procedure(procedure=procedure, user=nurse, reason="typo", expected_version=procedure.version)


def test_the_signature_needs_the_second_factor_when_she_has_one(case, investigator):
    patient, _p, _v = case
    device = confirmed_totp(investigator)
    code = totp(bytes(device.bin_key), step=device.step, digits=device.digits)  # what her phone shows (RFC 6238)
    lock = services.sign_lock(
        patient=patient, user=investigator, password=PASSWORD, meaning=CaseLock.MEANING, code=code, timepoint="m1"
    )
    assert lock.second_factor is True and lock.signed_at <= timezone.now()
    with pytest.raises(ValidationError, match="authenticator code"):
        services.sign_lock(patient=patient, user=investigator, password=PASSWORD, meaning=CaseLock.MEANING, code="")
    assert CaseLock.objects.count() == 1


def test_only_investigators_sign_and_only_admins_unlock(case, monitor, nurse, investigator):
    patient, _p, _v = case
    with pytest.raises(PermissionDenied):
        services.sign_lock(patient=patient, user=monitor, password=PASSWORD, meaning=CaseLock.MEANING)
    lock = services.sign_lock(patient=patient, user=investigator, password=PASSWORD, meaning=CaseLock.MEANING)
    with pytest.raises(PermissionDenied):
        services.unlock(lock=lock, user=nurse, reason="please")


def test_rules_run_from_the_page_and_the_task_open_queries_once(client, case, monitor):
    from oversight.tasks import run_quality_rules

    patient, procedure, _visit = case
    procedure.__class__.objects.filter(pk=procedure.pk).update(cement_volume_ml=Decimal("25.0"))  # 12.5 mL per level
    client.force_login(monitor)
    page = client.get("/audit/quality/").content.decode()
    assert "12.5 mL per level" in page and patient.study_id in page
    client.post("/audit/quality/", {"as_rule": "1"})
    queries = DataQuery.objects.filter(rule_code="cement_implausible")
    assert [(q.patient, q.field, q.raised_by) for q in queries] == [(patient, "cement_volume_ml", None)]
    assert run_quality_rules.call() >= 1  # the nightly task: same rules, no second query on the same value
    assert DataQuery.objects.filter(rule_code="cement_implausible").count() == 1
