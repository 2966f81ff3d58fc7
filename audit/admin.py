from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest

from audit import services
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


class ReasonForm(forms.ModelForm):
    reason_for_change = forms.CharField(
        label="Reason for change", widget=forms.Textarea(attrs={"rows": 2}), required=False
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk and self.has_changed() and not (data.get("reason_for_change") or "").strip():
            self.add_error("reason_for_change", "Give the reason for this change; it goes into the audit trail.")
        return data


class AuditedModelAdmin(admin.ModelAdmin):
    """Admin edits of clinical data: a reason is required and the change is audited.

    Deletion is not offered here: it goes through the deletion service, which
    asks for a reason and keeps the deleted values in the trail.
    """

    form = ReasonForm

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = [f for f in super().get_fields(request, obj) if f != "reason_for_change"]
        return [*fields, "reason_for_change"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        with transaction.atomic():
            before = services.snapshot(type(obj).objects.get(pk=obj.pk)) if change else None
            if services.has_version_token(obj) and change:
                obj.version += 1
            if hasattr(obj, "compute_derived"):
                obj.compute_derived()
            super().save_model(request, obj, form, change)
            study_id, site = services.owner_keys(obj)
            reason = form.cleaned_data.get("reason_for_change", "")
            if before is None:
                services.record_created(obj, user=request.user, reason=reason, study_id=study_id, site_code=site)
            else:
                services.record_updated(
                    obj, before, user=request.user, reason=reason, study_id=study_id, site_code=site
                )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


from audit import admin_accounts  # noqa: E402, F401  (users, sites, lockouts: registered there)
