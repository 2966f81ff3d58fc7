from typing import Any

from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest

from audit.admin import ReadOnlyModelAdmin, ScopedReadOnlyAdmin
from selfreport.models import Message, SelfReportLink


class RegistryAdminsView:
    """Viewable by the registry's admins (accounts.backends.RoleBackend covers the clinical apps only)."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_registry_admin)  # type: ignore[union-attr]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)


@admin.register(Message)
class MessageAdmin(RegistryAdminsView, ReadOnlyModelAdmin):
    """The message log: who, what kind, when, delivered or failed (written by the worker only)."""

    list_display = ("created_at", "kind", "to_address", "user", "status", "attempts", "sent_at", "last_error")
    list_filter = ("kind", "status")
    search_fields = ("to_address", "user__username", "subject")
    date_hierarchy = "created_at"
    exclude = ("context",)

    def get_queryset(self, request: HttpRequest) -> Any:
        messages = super().get_queryset(request).select_related("user", "link__patient")
        user = request.user
        if user.sees_all_sites:  # type: ignore[union-attr]
            return messages
        sites = user.sites.all()  # type: ignore[union-attr]
        return messages.filter(Q(link__patient__site__in=sites) | Q(user__sites__in=sites)).distinct()


@admin.register(SelfReportLink)
class SelfReportLinkAdmin(RegistryAdminsView, ScopedReadOnlyAdmin):
    site_path = "patient__site"
    list_display = (
        "pk",
        "patient",
        "timepoint",
        "created_by",
        "created_at",
        "expires_at",
        "opened_at",
        "submitted_at",
        "revoked_at",
    )
    list_filter = ("timepoint",)
    search_fields = ("patient__study_id",)
