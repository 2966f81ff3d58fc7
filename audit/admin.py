from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from accounts.permissions import scope_to_sites
from audit.models import AuditEvent


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """Records that are written by the application only (trail, logs): viewable, never editable."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyModelAdmin):
    """Read-only: the trail is append-only for everyone, admins included."""

    list_display = ("at", "username", "action", "model", "object_repr", "study_id", "reason")
    list_filter = ("action", "model", "site_code")
    search_fields = ("username", "study_id", "object_repr", "reason")
    date_hierarchy = "at"

    def get_queryset(self, request: HttpRequest) -> Any:
        """A site admin reads the entries about her sites' records only (as on the trail pages)."""
        events = super().get_queryset(request)
        user = request.user
        if user.sees_all_sites:  # type: ignore[union-attr]
            return events
        return events.filter(site_code__in=[s.code for s in user.sites.all()])  # type: ignore[union-attr]


class ScopedReadOnlyAdmin(ReadOnlyModelAdmin):
    """Clinical records in the Django admin: browse and search the rows of the user's sites only.

    Every write of clinical data goes through the registry's own pages and
    services (validation, derived values, consent, case rules, concurrency,
    audit), so the admin edits nothing here; "View on site" opens the record's
    page in the registry, where it is edited.
    """

    site_path = "site"  # how a row reaches its site, e.g. "patient__site"

    def get_queryset(self, request: HttpRequest) -> Any:
        return scope_to_sites(super().get_queryset(request), request.user, self.site_path)  # type: ignore[arg-type]


from audit import admin_accounts  # noqa: E402, F401  (users, sites, lockouts: registered there)
