"""Background work on Django's Tasks framework (database backend, `manage.py db_worker`).

Nothing is sent from a request: pages and the scheduler only queue a Message
and enqueue `deliver`. A failed send is logged on the Message and retried
with a doubling delay, up to SELFREPORT_SEND_ATTEMPTS attempts.
"""

import datetime

from django.conf import settings
from django.core.mail import EmailMessage
from django.tasks import task
from django.utils import timezone

from selfreport.models import Message


@task()
def deliver(message_id: int) -> str:
    from selfreport import messaging

    message = Message.objects.select_related("link__patient__site", "user").get(pk=message_id)
    if message.status in (Message.Status.SENT, Message.Status.CANCELLED, Message.Status.GAVE_UP):
        return message.status
    rendered = messaging.render(message)
    if rendered is None:  # the link closed meanwhile (submitted, revoked, expired) or the patient may not be contacted
        message.status = Message.Status.CANCELLED
        message.save(update_fields=["status"])
        return message.status
    subject, body, logged_body = rendered
    message.attempts += 1
    try:
        EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [message.to_address]).send()
    except Exception as exc:
        message.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        retry = message.attempts < settings.SELFREPORT_SEND_ATTEMPTS
        message.status = Message.Status.FAILED if retry else Message.Status.GAVE_UP
        message.subject, message.body = subject, logged_body
        message.save()
        if retry:
            delay = settings.SELFREPORT_RETRY_SECONDS * 2 ** (message.attempts - 1)
            deliver.using(run_after=timezone.now() + datetime.timedelta(seconds=delay)).enqueue(message.pk)
        raise
    message.status, message.sent_at, message.last_error = Message.Status.SENT, timezone.now(), ""
    message.subject, message.body = subject, logged_body
    message.save()
    return message.status


@task()
def run_schedule() -> dict[str, int]:
    from selfreport import scheduler

    return scheduler.run_once()
