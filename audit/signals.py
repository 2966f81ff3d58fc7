"""Log-ins, failed log-ins and log-outs go into the audit trail.

Django announces these through signals only, so receivers are the one place to
catch them; they do nothing but record the event.
"""

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from audit.models import AuditEvent
from audit.services import record_event


def _client(request: HttpRequest | None) -> dict[str, str]:
    if request is None:
        return {}
    return {"ip": request.META.get("REMOTE_ADDR", ""), "user_agent": request.META.get("HTTP_USER_AGENT", "")[:200]}


@receiver(user_logged_in, dispatch_uid="audit_user_logged_in")
def on_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    record_event(action=AuditEvent.Action.LOGIN, user=user, extra=_client(request))


@receiver(user_login_failed, dispatch_uid="audit_user_login_failed")
def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Only the username as typed: `credentials` has the password masked, but it is not worth keeping.
    username = str(credentials.get("username", ""))[:150]
    record_event(action=AuditEvent.Action.LOGIN_FAILED, username=username, extra=_client(request))


@receiver(user_logged_out, dispatch_uid="audit_user_logged_out")
def on_logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:  # a log-out without a session has nobody to record
        record_event(action=AuditEvent.Action.LOGOUT, user=user, extra=_client(request))
