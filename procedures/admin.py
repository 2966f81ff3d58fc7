from django.contrib import admin
from django.urls import reverse

from audit.admin import ScopedReadOnlyAdmin
from procedures.models import Complication, Leakage, Procedure


@admin.register(Procedure)
class ProcedureAdmin(ScopedReadOnlyAdmin):
    site_path = "patient__site"
    list_display = ("patient", "procedure_number", "procedure_date", "approach", "levels_treated", "cement_volume_ml")
    list_filter = ("approach",)
    search_fields = ("patient__study_id",)

    def view_on_site(self, obj: Procedure) -> str:
        return reverse("procedures:edit", args=[obj.pk])


class ProcedureChildAdmin(ScopedReadOnlyAdmin):
    site_path = "procedure__patient__site"
    search_fields = ("procedure__patient__study_id",)

    def view_on_site(self, obj: Leakage | Complication) -> str:
        return reverse("procedures:edit", args=[obj.procedure_id])


@admin.register(Leakage)
class LeakageAdmin(ProcedureChildAdmin):
    list_display = ("procedure", "site", "symptomatic", "treatment_required")
    list_filter = ("site",)


@admin.register(Complication)
class ComplicationAdmin(ProcedureChildAdmin):
    list_display = ("procedure", "type", "severity", "cirse_grade", "resolved")
    list_filter = ("type", "severity")
