"""Role checks and site scoping shared by every view.

Lookups outside a user's sites give 404 (the object's existence is not leaked);
a role that may see but not do something gets 403.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from accounts.models import Site, User


def visible_sites(user: User) -> QuerySet[Site]:
    if user.sees_all_sites:
        return Site.objects.all()
    return user.sites.all()


def scope_to_sites(queryset: QuerySet[Any], user: User, site_field: str = "site") -> QuerySet[Any]:
    """Filter any queryset to the user's sites through `site_field` (e.g. "patient__site")."""
    if user.sees_all_sites:
        return queryset
    return queryset.filter(**{f"{site_field}__in": user.sites.all()})


def role_required(*roles: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """login_required plus a role check (403 for a logged-in user of another role)."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = request.user
            assert isinstance(user, User)
            if not (user.is_superuser or user.role in roles):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


NURSE, INVESTIGATOR, ADMIN = User.Role.NURSE, User.Role.INVESTIGATOR, User.Role.ADMIN
MONITOR = User.Role.MONITOR
data_entry_required = role_required(NURSE, ADMIN)  # never the monitor: she reads and queries, never edits
case_read_required = role_required(NURSE, MONITOR, ADMIN)  # the identified case: patient page and records
admin_required = role_required(ADMIN)
analysis_required = role_required(NURSE, INVESTIGATOR, MONITOR, ADMIN)
