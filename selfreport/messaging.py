"""What each message says, and queueing it (one Message per purpose, keyed, then the `deliver` task)."""

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from selfreport.models import Kind, Message, NotificationOptOut, SelfReportLink

# Visit names for the Chinese templates (the registry's timepoint labels are English).
ZH_VISITS = {"w1": "1周", "m1": "1个月", "m3": "3个月", "m6": "6个月", "m12": "12个月"}
WITHHELD = "[personal link withheld from the log: only its hash is stored]"


def opted_out(user: Any, kind: str) -> bool:
    return NotificationOptOut.objects.filter(user=user, kind=kind).exists()


def queue(
    *,
    key: str,
    kind: str,
    to_address: str,
    user: Any = None,
    link: SelfReportLink | None = None,
    context: dict[str, Any] | None = None,
) -> Message | None:
    """Log a message to send and enqueue its delivery; None if it was already queued or the user opted out."""
    from selfreport.tasks import deliver

    if user is not None and opted_out(user, kind):
        return None
    if not to_address or Message.objects.filter(key=key).exists():
        return None
    try:
        with transaction.atomic():
            message = Message.objects.create(
                key=key, kind=kind, to_address=to_address, user=user, link=link, context=context or {}
            )
    except IntegrityError:  # queued by a concurrent run
        return None
    # The task row is written in the same transaction: a rolled-back page queues nothing.
    deliver.enqueue(message.pk)
    return message


def link_url(raw_token: str) -> str:
    return settings.SITE_URL + reverse("selfreport:patient", args=[raw_token])


def render(message: Message) -> tuple[str, str, str] | None:
    """(subject, body as sent, body as logged); None when the message is no longer needed."""
    if message.kind in (Kind.INVITATION, Kind.REMINDER):
        from selfreport.services import contact_block_reason, language_for

        link = message.link
        if link is None or not link.is_usable() or contact_block_reason(link.patient):
            return None
        language = language_for(link.patient)
        url = link_url(link.new_token())
        ctx = {
            "first_name": link.patient.full_name.split()[0] if link.patient.full_name.split() else "",
            "visit": ZH_VISITS.get(link.timepoint, link.visit_name) if language == "zh-hans" else link.visit_name,
            "closes": link.expires_at,
            "url": url,
        }
        with translation.override(language):
            subject = render_to_string(f"selfreport/email/{message.kind}_subject.{language}.txt", ctx).strip()
            body = render_to_string(f"selfreport/email/{message.kind}.{language}.txt", ctx)
        return subject, body, body.replace(url, WITHHELD)
    ctx = {**message.context, "site_url": settings.SITE_URL, "user": message.user}
    subject = render_to_string(f"selfreport/email/{message.kind}_subject.txt", ctx).strip()
    body = render_to_string(f"selfreport/email/{message.kind}.txt", ctx)
    return subject, body, body
