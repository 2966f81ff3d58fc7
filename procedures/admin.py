from django.contrib import admin

from audit.admin import AuditedModelAdmin
from procedures.models import Complication, Leakage, Procedure


@admin.register(Procedure)
class ProcedureAdmin(AuditedModelAdmin):
    list_display = ("patient", "procedure_number", "procedure_date", "approach", "levels_treated", "cement_volume_ml")
    list_filter = ("approach", "patient__site")
    search_fields = ("patient__study_id",)


@admin.register(Leakage)
class LeakageAdmin(AuditedModelAdmin):
    list_display = ("procedure", "site", "symptomatic", "treatment_required")
    list_filter = ("site",)


@admin.register(Complication)
class ComplicationAdmin(AuditedModelAdmin):
    list_display = ("procedure", "type", "severity", "cirse_grade", "resolved")
    list_filter = ("type", "severity")
    readonly_fields = ()
