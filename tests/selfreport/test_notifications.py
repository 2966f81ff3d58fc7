"""Invitations, reminders, digests and alerts: queued by the scheduler, sent by the real database worker."""

import datetime
import socket
import time

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.core.management import call_command
from django_tasks_db.models import DBTaskResult

from audit.services import save_audited
from procedures.models import Complication
from selfreport import scheduler, services
from selfreport.models import Message, NotificationOptOut
from tests.factories import UserFactory
from tests.selfreport.conftest import TODAY, make_patient, run_worker

# The worker commits and checks its connection like a real process: these tests need real transactions.
pytestmark = pytest.mark.django_db(transaction=True)


def with_email(user, address):
    user.email = address
    user.save()
    return user


def test_the_invitation_reaches_the_patient_with_a_link_that_opens_her_page(client, patient):
    counts = scheduler.run_once()
    assert counts["invitations"] == 1  # only the 1-month window is open (30 days after the procedure)
    assert mail.outbox == []  # nothing is sent until the worker runs
    run_worker()
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["rosa@example.org"] and sent.subject == "Your 1 month questionnaire"
    assert "Hello Rosa," in sent.body and "Tester" not in sent.body
    url = next(word for word in sent.body.split() if word.startswith("http://testserver/r/"))
    page = client.get(url.removeprefix("http://testserver"))
    assert page.status_code == 200 and "Hello Rosa" in page.content.decode()
    # The log says who, what, when and delivered, and never holds the link.
    message = Message.objects.get()
    assert (message.kind, message.status, message.attempts, message.to_address) == (
        "invitation",
        "sent",
        1,
        "rosa@example.org",
    )
    assert message.sent_at is not None and url not in message.body and "withheld" in message.body
    # A second pass queues nothing twice.
    assert scheduler.run_once()["invitations"] == 0


def test_chinese_site_patients_get_the_chinese_template(settings, site):
    settings.SELFREPORT_SITE_LANGUAGES = {"PSP": "zh-hans"}
    make_patient(site, full_name="Li Wei")
    scheduler.run_once()
    run_worker()
    assert mail.outbox[0].subject == "您的1个月随访问卷"
    assert "Li，您好" in mail.outbox[0].body


def test_a_reminder_before_the_window_closes_and_nothing_once_submitted(site, nurse):
    closing = make_patient(site, days_since_procedure=43, full_name="Closing Soon")  # 1 month closes on day 45
    open_long = make_patient(site, days_since_procedure=25, full_name="Plenty Time")
    submitted = make_patient(site, days_since_procedure=44, full_name="Already Done")
    scheduler.run_once()
    run_worker()
    assert {m.to[0] for m in mail.outbox} == {"rosa@example.org"} and len(mail.outbox) == 3
    link = services.SelfReportLink.objects.get(patient=submitted)
    services.submit_report(link=link, vas=1, odi=[0] * 10, medications=[])
    mail.outbox.clear()
    assert scheduler.run_once()["reminders"] == 1
    run_worker()
    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith("Reminder")
    reminded = Message.objects.get(kind="reminder")
    assert reminded.link.patient == closing
    assert not Message.objects.filter(kind="reminder", link__patient__in=[open_long, submitted]).exists()


def test_the_digest_reaches_the_nurses_of_the_site_only_and_honours_opt_out(patient, nurse, other_nurse, site):
    with_email(nurse, "nurse@example.org")
    with_email(other_nurse, "other@example.org")
    quiet = with_email(UserFactory(role="nurse", username="quiet"), "quiet@example.org")
    quiet.sites.add(site)
    NotificationOptOut.objects.create(user=quiet, kind="digest")
    scheduler.run_once()
    run_worker()
    digests = [m for m in mail.outbox if "Visits due" in m.subject]
    assert [m.to for m in digests] == [["nurse@example.org"]]
    body = digests[0].body
    # 30 days after the procedure: baseline (-14..0), post (0..3) and 1 week (5..10) are overdue, 1 month is due now.
    assert digests[0].subject == f"Visits due: 3 overdue, 1 today, 0 this week ({TODAY.isoformat()})"
    assert f"{patient.study_id} 1 month" in body and f"/visits/{patient.study_id}/m1/" in body
    assert Message.objects.get(kind="digest").user == nurse


def test_a_major_complication_alerts_the_sites_investigators_once(patient, nurse, investigator, site, other_site):
    with_email(investigator, "pi@example.org")
    elsewhere = with_email(UserFactory(role="investigator", username="pi2"), "pi2@example.org")
    elsewhere.sites.add(other_site)
    procedure = patient.procedures.get()
    scheduler.run_once()  # the scan starts from here
    run_worker()
    mail.outbox.clear()
    save_audited(
        Complication(
            procedure=procedure, onset_date=procedure.procedure_date, type="cauda_equina", cirse_grade=3, resolved=False
        ),
        user=nurse,
    )
    save_audited(
        Complication(
            procedure=procedure, onset_date=procedure.procedure_date, type="infection", cirse_grade=1, resolved=True
        ),
        user=nurse,
    )
    assert scheduler.run_once()["alerts"] == 1
    run_worker()
    alerts = [m for m in mail.outbox if m.subject.startswith("Registry alert")]
    assert [m.to for m in alerts] == [["pi@example.org"]]
    assert "major complication" in alerts[0].body and patient.study_id in alerts[0].body
    assert scheduler.run_once()["alerts"] == 0
    logged = Message.objects.get(kind="alert")
    assert logged.user == investigator and logged.status == "sent"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self):
        self.received = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append(envelope)
        return "250 OK"


def test_a_failed_send_is_logged_and_retried_by_the_worker_over_real_smtp(settings, patient):
    port = _free_port()
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5},
        }
    }
    settings.SELFREPORT_RETRY_SECONDS = 1
    scheduler.run_once()
    run_worker()  # nothing listens on the port yet: the send fails
    message = Message.objects.get()
    assert message.status == "failed" and message.attempts == 1 and "Connection" in message.last_error
    assert DBTaskResult.objects.filter(status="FAILED").count() == 1
    assert DBTaskResult.objects.filter(status="READY").count() == 1  # the retry, due a second later

    inbox = Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=port)
    server.start()
    try:
        time.sleep(1.2)
        run_worker()
    finally:
        server.stop()
    message.refresh_from_db()
    assert message.status == "sent" and message.attempts == 2 and message.last_error == ""
    assert [e.rcpt_tos for e in inbox.received] == [["rosa@example.org"]]
    assert b"Hello Rosa," in inbox.received[0].original_content


def test_show_queue_lists_what_waits(capsys, patient):
    scheduler.run_once()
    call_command("show_queue")
    out = capsys.readouterr().out
    assert "READY" in out and "selfreport.tasks.deliver" in out and "invitation" in out
    run_worker()
    call_command("show_queue")
    out = capsys.readouterr().out
    assert "Tasks (0)" in out and "Messages (0)" in out


def test_the_reconsent_note_goes_to_admins_on_mondays(admin_user, patient):
    from tests.factories import ConsentVersionFactory

    with_email(admin_user, "admin@example.org")
    ConsentVersionFactory(version="2.0", effective_from=TODAY - datetime.timedelta(days=5))
    monday = TODAY - datetime.timedelta(days=TODAY.weekday())
    tuesday = monday + datetime.timedelta(days=1)
    assert scheduler.run_once(tuesday)["reconsent"] == 0
    assert scheduler.run_once(monday)["reconsent"] == 1
    run_worker()
    note = next(m for m in mail.outbox if "re-consent" in m.subject)
    assert note.to == ["admin@example.org"] and patient.study_id in note.body


def test_a_perioperative_death_and_a_remove_data_withdrawal_alert_the_investigators(
    patient, nurse, investigator, settings
):
    from patients.models import Consent
    from patients.services import update_patient, withdraw_consent

    with_email(investigator, "pi@example.org")
    scheduler.run_once()
    run_worker()
    mail.outbox.clear()
    late = make_patient(patient.site, days_since_procedure=60, full_name="Late Death", email="")
    # Died 12 days after the procedure: perioperative (within 30 days).
    patient.death_date = TODAY - datetime.timedelta(days=18)
    update_patient(patient=patient, user=nurse, reason="Death reported by family", expected_version=patient.version)
    # Died 59 days after: no alert.
    late.death_date = TODAY - datetime.timedelta(days=1)
    update_patient(patient=late, user=nurse, reason="Death reported", expected_version=late.version)
    other = make_patient(patient.site, full_name="Removed Data", email="")
    withdraw_consent(
        consent=other.consents.get(), scope=Consent.WithdrawalScope.REMOVE_DATA, reason="asked", user=nurse
    )
    assert scheduler.run_once()["alerts"] == 2
    run_worker()
    bodies = sorted(m.body for m in mail.outbox if m.subject.startswith("Registry alert"))
    assert len(bodies) == 2
    assert any("perioperative death" in b and "12 days after" in b and patient.study_id in b for b in bodies)
    assert any("remove" in b.lower() and other.study_id in b for b in bodies)
    assert not any(late.study_id in b for b in bodies)


def test_each_user_turns_each_kind_off_on_her_page(client, nurse):
    client.force_login(nurse)
    page = client.get("/selfreport/notifications/").content.decode()
    assert page.count('type="checkbox"') == 3 and page.count("checked") == 3
    client.post("/selfreport/notifications/", {"kind": ["alert", "reconsent"]})
    assert list(NotificationOptOut.objects.filter(user=nurse).values_list("kind", flat=True)) == ["digest"]
    client.post("/selfreport/notifications/", {"kind": ["digest", "alert", "reconsent"]})
    assert not NotificationOptOut.objects.filter(user=nurse).exists()


def test_the_first_scan_starts_from_now_so_history_alerts_nobody(patient, nurse, investigator):
    with_email(investigator, "pi@example.org")
    procedure = patient.procedures.get()
    save_audited(
        Complication(
            procedure=procedure, onset_date=procedure.procedure_date, type="cauda_equina", cirse_grade=3, resolved=False
        ),
        user=nurse,
    )
    assert scheduler.run_once()["alerts"] == 0
    assert not Message.objects.filter(kind="alert").exists()
