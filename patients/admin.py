from typing import Any

from django import forms
from django.contrib import admin
from django.core.files.uploadedfile import UploadedFile

from audit.admin import AuditedModelAdmin, ReasonForm
from patients.models import Consent, ConsentVersion, Patient
from registry.uploads import validate_pdf


def _checked(form: forms.ModelForm, field: str) -> Any:
    """The admin checks a new upload exactly as the data-entry forms do (registry.uploads)."""
    upload = form.cleaned_data.get(field)
    return validate_pdf(upload) if isinstance(upload, UploadedFile) else upload


class ConsentVersionAdminForm(ReasonForm):
    def clean_blank_form(self) -> Any:
        return _checked(self, "blank_form")


class ConsentAdminForm(ReasonForm):
    def clean_document(self) -> Any:
        return _checked(self, "document")


@admin.register(ConsentVersion)
class ConsentVersionAdmin(AuditedModelAdmin):
    form = ConsentVersionAdminForm
    list_display = ("version", "effective_from", "effective_to")


class ConsentInline(admin.TabularInline):
    model = Consent
    extra = 0
    can_delete = False
    fields = ("consent_version", "signed_date", "obtained_by", "scope_registry", "withdrawn_date", "withdrawal_scope")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Patient)
class PatientAdmin(AuditedModelAdmin):
    list_display = ("study_id", "site", "enrolment_date", "sex", "primary_tumour", "death_date")
    list_filter = ("site", "sex", "primary_tumour")
    search_fields = ("study_id", "mrn", "full_name")
    readonly_fields = ("age_at_enrolment",)
    inlines = [ConsentInline]


@admin.register(Consent)
class ConsentAdmin(AuditedModelAdmin):
    form = ConsentAdminForm
    list_display = ("patient", "consent_version", "signed_date", "obtained_by", "withdrawn_date", "withdrawal_scope")
    list_filter = ("consent_version", "withdrawal_scope")
    search_fields = ("patient__study_id",)
    readonly_fields = ("document_sha256",)
