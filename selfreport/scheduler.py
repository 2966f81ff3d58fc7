"""One pass of the schedule: invitations, reminders, digests, alerts and the weekly re-consent note.

Run by `manage.py run_scheduler_once` (cron, or the loop in scripts/run.sh and
docker-compose) or as the `run_schedule` task. Each message has a key naming
its purpose, so running the pass twice queues nothing twice.
"""

import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit.models import AuditEvent
from outcomes import selectors as case_selectors
from patients.models import Consent, Patient
from patients.services import current_version
from registry import dates
from selfreport import messaging
from selfreport.models import Kind, Message, ScanCursor, SelfReportLink, TokenFailure
from selfreport.services import SELF_REPORT_TIMEPOINTS, contact_block_reason, create_link, window_of

PERIOPERATIVE_DAYS = 30


def _invitations(today: datetime.date) -> int:
    """A link and an invitation for every visit whose window is open, for patients with an e-mail address."""
    queued = 0
    patients = Patient.objects.exclude(email="").filter(death_date__isnull=True, follow_up_ended__isnull=True)
    patients = patients.select_related("site")
    for patient in patients.prefetch_related("consents"):
        if contact_block_reason(patient):
            continue
        for timepoint in SELF_REPORT_TIMEPOINTS:
            window = window_of(patient, timepoint)
            if window is None or not window[0] <= today <= window[1]:
                continue
            link = SelfReportLink.objects.filter(patient=patient, timepoint=timepoint, revoked_at__isnull=True).first()
            if link is None:
                if patient.followups.filter(timepoint=timepoint).exists():
                    continue
                link = create_link(patient=patient, timepoint=timepoint, user=None, today=today)
            if link.is_usable():
                queued += bool(
                    messaging.queue(
                        key=f"invitation:{link.pk}", kind=Kind.INVITATION, to_address=patient.email, link=link
                    )
                )
    return queued


def _reminders(today: datetime.date) -> int:
    queued = 0
    invited = Message.objects.filter(kind=Kind.INVITATION, status=Message.Status.SENT).values("link")
    soon = today + datetime.timedelta(days=settings.SELFREPORT_REMINDER_DAYS)
    for link in SelfReportLink.objects.filter(pk__in=invited, revoked_at__isnull=True, submitted_at__isnull=True):
        closes = timezone.localtime(link.expires_at).date() - datetime.timedelta(days=1)
        if link.is_usable() and closes <= soon and link.patient.email:
            queued += bool(
                messaging.queue(key=f"reminder:{link.pk}", kind=Kind.REMINDER, to_address=link.patient.email, link=link)
            )
    return queued


def _visit(v: Any) -> dict[str, str]:
    return {
        "study_id": v.study_id,
        "visit": v.label,
        "timepoint": v.timepoint,  # the e-mail names the visit in its reader's language
        "closes": v.closes.isoformat(),
        "url": settings.SITE_URL + reverse("outcomes:visit", args=[v.study_id, v.timepoint]),
    }


def _digests(today: datetime.date) -> int:
    queued = 0
    week = today + datetime.timedelta(days=case_selectors.WEEK_DAYS)
    for nurse in User.objects.filter(role=User.Role.NURSE, is_active=True).exclude(email=""):
        if messaging.opted_out(nurse, Kind.DIGEST):
            continue
        names = {"overdue": "overdue", "today": "due_now", "week": "due_week"}
        groups: dict[str, list[dict[str, str]]] = {name: [] for name in names.values()}
        rows = case_selectors.worklist(nurse, today).visits
        for v in rows[: len(rows)]:
            if v.group in names and v.opens <= week:
                groups[names[v.group]].append(_visit(v))
        if any(groups.values()):
            queued += bool(
                messaging.queue(
                    key=f"digest:{nurse.pk}:{today.isoformat()}",
                    kind=Kind.DIGEST,
                    to_address=nurse.email,
                    user=nurse,
                    context={
                        "date": today.isoformat(),
                        "worklist": settings.SITE_URL + reverse("patients:worklist"),
                        **groups,
                    },
                )
            )
    return queued


def _alert_of(event: AuditEvent) -> tuple[str, dict[str, Any]]:
    """What an audit event alerts investigators to: (a code of messaging.ALERTS, its values), or ("", {}).
    A code, not a sentence: the e-mail is written in its reader's language when it is sent."""
    changes = event.changes or {}
    if event.model == "procedures.Complication" and event.action in ("create", "update"):
        severity = changes.get("severity")
        if severity and severity[1] == "major":
            return "major_complication", {}
    if event.model == "patients.Patient" and event.action in ("create", "update"):
        death = changes.get("death_date")
        if death and death[1] and not death[0]:
            patient = Patient.objects.filter(study_id=event.study_id).first()
            index = patient.index_procedure_date if patient else None
            died = datetime.date.fromisoformat(death[1])
            if index and 0 <= (died - index).days <= PERIOPERATIVE_DAYS:
                return "perioperative_death", {"days": (died - index).days}
    if event.model == "patients.Consent" and event.action == "update":
        scope = changes.get("withdrawal_scope")
        if scope and scope[1] == Consent.WithdrawalScope.REMOVE_DATA:
            return "remove_data", {}
    return "", {}


def _alerts() -> int:
    """Scan the audit trail for new events since the last run (the clinical apps need no hook)."""
    queued = 0
    with transaction.atomic():
        cursor = ScanCursor.objects.select_for_update().filter(name="alerts").first()
        if cursor is None:  # the first run starts from now: history (e.g. an imported cohort) alerts nobody
            newest = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            ScanCursor.objects.create(name="alerts", last_event_id=newest)
            return 0
        events = list(AuditEvent.objects.filter(pk__gt=cursor.last_event_id).order_by("pk")[:5000])
        for event in events:
            what, values = _alert_of(event)
            if not what or not event.site_code:
                continue
            investigators = User.objects.filter(
                role=User.Role.INVESTIGATOR, is_active=True, sites__code=event.site_code
            ).exclude(email="")
            url = settings.SITE_URL + reverse("dashboard:index")
            for user in investigators:
                queued += bool(
                    messaging.queue(
                        key=f"alert:{event.pk}:{user.pk}",
                        kind=Kind.ALERT,
                        to_address=user.email,
                        user=user,
                        context={
                            "what": what,
                            **values,
                            "study_id": event.study_id,
                            "site": event.site_code,
                            "at": event.at.isoformat(timespec="minutes"),
                            "url": url,
                        },
                    )
                )
        if events:
            cursor.last_event_id = events[-1].pk
            cursor.save()
    return queued


def needing_reconsent() -> list[str]:
    """Study IDs whose latest consent is not withdrawn and is on an older version than the one in force."""
    version = current_version()
    if version is None:
        return []
    out = []
    for patient in Patient.objects.filter(death_date__isnull=True).prefetch_related("consents"):
        latest = patient.current_consent()
        if latest and not latest.withdrawn_date and latest.consent_version_id != version.pk:
            out.append(patient.study_id)
    return out


def _reconsent(today: datetime.date) -> int:
    if today.weekday() != 0:  # Mondays
        return 0
    study_ids = needing_reconsent()
    if not study_ids:
        return 0
    year, week, _ = today.isocalendar()
    queued = 0
    for admin in User.objects.filter(role=User.Role.ADMIN, is_active=True).exclude(email=""):
        queued += bool(
            messaging.queue(
                key=f"reconsent:{admin.pk}:{year}-W{week:02d}",
                kind=Kind.RECONSENT,
                to_address=admin.email,
                user=admin,
                context={"study_ids": study_ids, "url": settings.SITE_URL + "/audit/consents/"},
            )
        )
    return queued


def run_once(today: datetime.date | None = None) -> dict[str, int]:
    today = today or dates.today()
    # The rate limit counts the last hour; older failed-token rows serve nothing.
    TokenFailure.objects.filter(at__lt=timezone.now() - datetime.timedelta(days=1)).delete()
    return {
        "invitations": _invitations(today),
        "reminders": _reminders(today),
        "digests": _digests(today),
        "alerts": _alerts(),
        "reconsent": _reconsent(today),
    }
