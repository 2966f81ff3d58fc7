"""Log-in throttling per account and per address (django-axes).

Axes counts failures for each lockout parameter (username, address) but
compares them with a single limit. This handler gives each its own limit: a
username is locked after AXES_USERNAME_FAILURE_LIMIT failures from any
address, an address after AXES_ADDRESS_FAILURE_LIMIT failures for any
usernames. A successful log-in clears only the failures of that account from
that address, never another account's.
"""

from datetime import datetime, timedelta
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone


def client_ip(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or the one the outermost of TRUSTED_PROXY_COUNT proxies saw.

    Each trusted proxy appends the address it received the request from to
    X-Forwarded-For, so with N proxies the client is the N-th entry from the
    right; anything further left was written by the client and is ignored.
    """
    remote = request.META.get("REMOTE_ADDR", "") or ""
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    entries = [e.strip() for e in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if e.strip()]
    if not entries:
        return remote
    return entries[-count] if len(entries) >= count else entries[0]


def _failures(**filters: Any) -> int:
    total = AccessAttempt.objects.filter(**filters).aggregate(n=Sum("failures_since_start"))["n"]
    return total or 0


class AccountAndAddressHandler(AxesDatabaseHandler):
    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        """Failures as axes compares them with AXES_FAILURE_LIMIT (= the username limit).

        The address count is mapped onto that scale: an address over its own
        limit reports the username limit, so either one locks.
        """
        by_username, by_address = (
            qs.aggregate(n=Sum("failures_since_start"))["n"] or 0 for qs in self.get_user_attempts(request, credentials)
        )
        address_locked = by_address >= settings.AXES_ADDRESS_FAILURE_LIMIT
        return max(by_username, settings.AXES_FAILURE_LIMIT if address_locked else 0)

    def user_logged_in(self, sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
        super().user_logged_in(sender, request, user, **kwargs)  # AXES_RESET_ON_SUCCESS is off
        # Only this account's own failures from this address: a colleague's stay counted.
        self.reset_attempts(username=user.get_username(), ip_address=request.axes_ip_address)


def retry_at(request: HttpRequest, credentials: dict[str, Any] | None) -> datetime | None:
    """When the lock that refused this request ends (the last counted failure plus the cool-off)."""
    cool_off = get_cool_off(request)
    if cool_off is None:
        return None
    since = timezone.now() - cool_off
    username = get_client_username(request, credentials)
    ip = getattr(request, "axes_ip_address", None) or client_ip(request)
    latest = None
    if _failures(username=username, attempt_time__gte=since) >= settings.AXES_FAILURE_LIMIT:
        latest = AccessAttempt.objects.filter(username=username).order_by("-attempt_time").first()
    if _failures(ip_address=ip, attempt_time__gte=since) >= settings.AXES_ADDRESS_FAILURE_LIMIT:
        by_ip = AccessAttempt.objects.filter(ip_address=ip).order_by("-attempt_time").first()
        if by_ip and (latest is None or by_ip.attempt_time > latest.attempt_time):
            latest = by_ip
    return (latest.attempt_time if latest else timezone.now()) + cool_off


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    cool_off = get_cool_off(request) or timedelta(0)
    context = {
        "retry_at": retry_at(request, credentials),
        "cool_off_minutes": int(cool_off.total_seconds() // 60),
    }
    return render(request, "accounts/locked.html", context, status=429)
