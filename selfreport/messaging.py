"""What each message says, and queueing it (one Message per purpose, keyed, then the `deliver` task)."""

import re
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext, ngettext

from outcomes.models import Timepoint
from selfreport.models import Kind, Message, NotificationOptOut, SelfReportLink

WITHHELD = "[personal link withheld from the log: only its hash is stored]"


def _alert_text(context: dict[str, Any]) -> str:
    """The alert's sentence in the active language (scheduler._alert_of gives its code and values; a message
    queued before the codes holds its English sentence, shown as it is)."""
    what = context.get("what", "")
    if what == "major_complication":
        return gettext("A major complication was recorded.")
    if what == "perioperative_death":
        days = int(context.get("days", 0))
        return ngettext(
            "A perioperative death was recorded (%(days)s day after the procedure).",
            "A perioperative death was recorded (%(days)s days after the procedure).",
            days,
        ) % {"days": days}
    if what == "remove_data":
        return gettext("The patient withdrew consent and asked for the data to be removed.")
    return what


def _visit_label(visit: dict[str, str]) -> str:
    """A digest row's visit in the active language (rows queued before they held their timepoint: as queued)."""
    if visit.get("timepoint") in Timepoint.values:
        return re.split(r"\s*[(（]", str(Timepoint(visit["timepoint"]).label), maxsplit=1)[0]
    return visit.get("visit", "")


def staff_language(user: Any) -> str:
    """A staff e-mail's language: the one its reader chose for the pages, else the registry's default."""
    return getattr(user, "language", "") or settings.LANGUAGE_CODE


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
        with translation.override(language):  # the visit's name too, from the timepoint's translated label
            ctx = {
                "first_name": link.patient.full_name.split()[0] if link.patient.full_name.split() else "",
                "visit": link.visit_name,
                "closes": link.expires_at,
                "url": url,
            }
            subject = render_to_string(f"selfreport/email/{message.kind}_subject.{language}.txt", ctx).strip()
            body = render_to_string(f"selfreport/email/{message.kind}.{language}.txt", ctx)
        return subject, body, body.replace(url, WITHHELD)
    with translation.override(staff_language(message.user)):
        ctx = {**message.context, "site_url": settings.SITE_URL, "user": message.user}
        if message.kind == Kind.ALERT:
            ctx["what"] = _alert_text(message.context)
        if message.kind == Kind.DIGEST:
            for group in ("overdue", "due_now", "due_week"):
                ctx[group] = [{**v, "visit": _visit_label(v)} for v in ctx.get(group, [])]
        subject = render_to_string(f"selfreport/email/{message.kind}_subject.txt", ctx).strip()
        body = render_to_string(f"selfreport/email/{message.kind}.txt", ctx)
    return subject, body, body
