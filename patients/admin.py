from django.contrib import admin
from django.urls import reverse

from audit.admin import ScopedReadOnlyAdmin
from patients.models import Consent, ConsentVersion, Patient


@admin.register(ConsentVersion)
class ConsentVersionAdmin(admin.ModelAdmin):
    """Read-only here: versions are created and edited on the registry's consent-version pages
    (with a reason, audited, and the period checked against the consents already signed)."""

    list_display = ("version", "effective_from", "effective_to")

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def view_on_site(self, obj: ConsentVersion) -> str:
        return reverse("patients:version_edit", args=[obj.pk])


class ConsentInline(admin.TabularInline):
    model = Consent
    extra = 0
    can_delete = False
    fields = ("consent_version", "signed_date", "obtained_by", "scope_registry", "withdrawn_date", "withdrawal_scope")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Patient)
class PatientAdmin(ScopedReadOnlyAdmin):
    list_display = ("study_id", "site", "enrolment_date", "sex", "primary_tumour", "death_date")
    list_filter = ("sex", "primary_tumour")
    search_fields = ("study_id", "mrn", "full_name")
    inlines = [ConsentInline]

    def view_on_site(self, obj: Patient) -> str:
        return reverse("patients:detail", args=[obj.study_id])


@admin.register(Consent)
class ConsentAdmin(ScopedReadOnlyAdmin):
    site_path = "patient__site"
    list_display = ("patient", "consent_version", "signed_date", "obtained_by", "withdrawn_date", "withdrawal_scope")
    list_filter = ("consent_version", "withdrawal_scope")
    search_fields = ("patient__study_id",)

    def view_on_site(self, obj: Consent) -> str:
        return reverse("patients:consent_record", args=[obj.pk])
