from django.contrib import admin

from audit.admin import AuditedModelAdmin
from outcomes.models import FollowUp, Medication


@admin.register(FollowUp)
class FollowUpAdmin(AuditedModelAdmin):
    list_display = ("patient", "timepoint", "visit_date", "status", "vas", "odi_score", "opioid_count", "mme_per_day")
    list_filter = ("timepoint", "status", "patient__site")
    search_fields = ("patient__study_id",)
    readonly_fields = ("odi_score", "opioid_count", "mme_per_day", "mme_factor_table")


@admin.register(Medication)
class MedicationAdmin(AuditedModelAdmin):
    list_display = ("followup", "drug", "daily_dose")
    list_filter = ("drug",)
