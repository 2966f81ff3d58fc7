from django.contrib import admin
from django.urls import reverse

from audit.admin import ScopedReadOnlyAdmin
from outcomes.models import FollowUp, Medication


@admin.register(FollowUp)
class FollowUpAdmin(ScopedReadOnlyAdmin):
    site_path = "patient__site"
    list_display = ("patient", "timepoint", "visit_date", "status", "vas", "odi_score", "opioid_count", "mme_per_day")
    list_filter = ("timepoint", "status")
    search_fields = ("patient__study_id",)

    def view_on_site(self, obj: FollowUp) -> str:
        return reverse("outcomes:visit", args=[obj.patient.study_id, obj.timepoint])


@admin.register(Medication)
class MedicationAdmin(ScopedReadOnlyAdmin):
    site_path = "followup__patient__site"
    list_display = ("followup", "drug", "daily_dose", "route")
    list_filter = ("drug", "route")
    search_fields = ("followup__patient__study_id",)

    def view_on_site(self, obj: Medication) -> str:
        return reverse("outcomes:visit", args=[obj.followup.patient.study_id, obj.followup.timepoint])
