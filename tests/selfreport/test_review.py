"""The nurse's review: nothing counts until she accepts; corrections need a reason; the trail tells the story."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditEvent
from outcomes.models import FollowUp
from selfreport import services
from selfreport.models import SelfReport

pytestmark = pytest.mark.django_db

ODI = [2, 3, None, 1, 2, 2, 1, 0, 2, 3]  # section 3 skipped


@pytest.fixture
def report(patient, nurse):
    link = services.create_link(patient=patient, timepoint="m1", user=nurse)
    return services.submit_report(
        link=link,
        vas=Decimal("6.5"),
        odi=ODI,
        medications=[("morphine", Decimal("30")), ("oxycodone", Decimal("10"))],
    )


def review_data(**changes):
    data = {"vas": "6.5", "reason": "", "action": "accept"}
    data.update({f"odi_q{i}": "" if a is None else str(a) for i, a in enumerate(ODI, 1)})
    data.update({"drug_1": "morphine", "dose_1": "30", "drug_2": "oxycodone", "dose_2": "10"})
    data.update(changes)
    return data


def test_a_pending_report_is_no_visit_and_waits_on_the_worklist(client, nurse, other_nurse, report):
    assert not FollowUp.objects.exists()
    client.force_login(nurse)
    page = client.get("/patients/worklist/").content.decode()
    assert "Self-reports to review" in page and f"/selfreport/reports/{report.pk}/" in page
    client.force_login(other_nurse)  # another site's nurse neither sees it nor opens it
    assert f"/selfreport/reports/{report.pk}/" not in client.get("/patients/worklist/").content.decode()
    assert client.get(f"/selfreport/reports/{report.pk}/").status_code == 404


def test_a_correction_without_a_reason_is_refused_and_writes_nothing(client, nurse, report):
    client.force_login(nurse)
    response = client.post(f"/selfreport/reports/{report.pk}/", review_data(vas="5.5"))
    assert response.status_code == 400
    assert "give the reason" in response.content.decode()
    assert not FollowUp.objects.exists()
    report.refresh_from_db()
    assert report.status == SelfReport.Status.PENDING


def test_acceptance_makes_the_visit_with_the_nurses_values_and_the_trail_tells_it(client, nurse, report):
    client.force_login(nurse)
    response = client.post(
        f"/selfreport/reports/{report.pk}/", review_data(vas="5.5", reason="Patient confirmed 5.5 by phone")
    )
    assert response.status_code == 302
    visit = FollowUp.objects.get()
    assert visit.timepoint == "m1" and visit.status == "completed" and visit.vas == Decimal("5.5")
    # ODI by hand: nine sections answered, 2+3+1+2+2+1+0+2+3 = 16 of 9*5 = 45 -> 35.6 %
    assert visit.odi_q3 is None and round(visit.odi_score, 1) == 35.6
    assert sorted((m.drug, m.daily_dose) for m in visit.medications.all()) == [
        ("morphine", Decimal("30")),
        ("oxycodone", Decimal("10")),
    ]
    assert visit.opioid_count == 2
    report.refresh_from_db()
    assert report.status == "accepted" and report.followup == visit and report.vas == Decimal("6.5")

    trail = AuditEvent.objects.filter(study_id=report.link.patient.study_id).order_by("pk")
    entry = trail.get(model="selfreport.SelfReport", action="create")
    assert entry.reason == f"Entered by the patient via link {report.link_id}"
    assert entry.username == f"patient via link {report.link_id}" and entry.user is None
    correction = trail.get(model="selfreport.SelfReport", extra__correction="vas")
    assert correction.changes == {"vas": ["6.5", "5.5"]} and correction.reason == "Patient confirmed 5.5 by phone"
    assert correction.user == nurse
    review = trail.get(model="selfreport.SelfReport", extra__review="accepted")
    assert review.changes["status"] == ["pending", "accepted"] and review.user == nurse
    created = trail.get(model="outcomes.FollowUp", action="create")
    assert created.user == nurse and f"link {report.link_id}" in created.reason


def test_an_unchanged_acceptance_needs_no_reason_and_a_second_review_is_refused(nurse, report):
    services.accept_report(
        report=report,
        user=nurse,
        vas=Decimal("6.5"),
        odi=ODI,
        medications=[("oxycodone", Decimal("10.0")), ("morphine", Decimal("30"))],
    )
    assert FollowUp.objects.count() == 1
    with pytest.raises(ValidationError):
        services.accept_report(report=report, user=nurse, vas=Decimal("6.5"), odi=ODI, medications=[])
    assert not AuditEvent.objects.filter(extra__correction__isnull=False).exists()


def test_a_rejected_report_never_becomes_a_visit(client, nurse, report):
    client.force_login(nurse)
    assert client.post(f"/selfreport/reports/{report.pk}/", {"action": "reject", "reason": ""}).status_code == 400
    response = client.post(f"/selfreport/reports/{report.pk}/", {"action": "reject", "reason": "Not the patient"})
    assert response.status_code == 302
    report.refresh_from_db()
    assert report.status == "rejected" and not FollowUp.objects.exists()


def test_admins_read_the_message_log_and_links_in_the_django_admin_without_editing(client, admin_user, report):
    from selfreport.messaging import queue
    from selfreport.models import Kind, Message

    queue(key="invitation:test", kind=Kind.INVITATION, to_address="rosa@example.org", link=report.link)
    client.force_login(admin_user)
    page = client.get("/admin/selfreport/message/")
    assert page.status_code == 200 and "rosa@example.org" in page.content.decode()
    assert client.get(f"/admin/selfreport/message/{Message.objects.get().pk}/delete/").status_code == 403
    assert client.get("/admin/selfreport/selfreportlink/").status_code == 200
    assert client.get("/admin/selfreport/message/add/").status_code == 403
