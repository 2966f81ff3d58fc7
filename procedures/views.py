from django.contrib import messages
from django.forms.formsets import all_valid
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _

from accounts.permissions import data_entry_required, scope_to_sites
from audit.services import record_read
from patients.selectors import get_patient_for_user
from procedures import services
from procedures.forms import SEVERITY_BY_TYPE, ComplicationFormSet, LeakageFormSet, ProcedureForm
from procedures.models import Procedure
from registry.forms import error_summary, service_saved


@data_entry_required
def create(request: HttpRequest, study_id: str) -> HttpResponse:
    patient = get_patient_for_user(request.user, study_id)
    number = max((p.procedure_number for p in patient.procedures.all()), default=0) + 1
    return procedure_form(request, Procedure(patient=patient, procedure_number=number))


@data_entry_required
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    procedures = scope_to_sites(Procedure.objects.select_related("patient__site"), request.user, "patient__site")  # type: ignore[arg-type]
    return procedure_form(request, get_object_or_404(procedures, pk=pk))


def procedure_form(request: HttpRequest, procedure: Procedure) -> HttpResponse:
    """One page for a new procedure and for an edit (which needs a reason and the loaded version)."""
    patient = procedure.patient
    record_read(request, patient, f"procedure {procedure.procedure_number} form")
    if block := patient.data_entry_block_reason():
        return render(
            request, "patients/blocked.html", {"patient": patient, "reason": block, "what": _("Record a procedure")}
        )
    data = request.POST if request.method == "POST" else None
    form = ProcedureForm(data, instance=procedure)
    leaks = LeakageFormSet(data, prefix="leak", instance=procedure)
    comps = ComplicationFormSet(data, prefix="comp", instance=procedure)
    if data is not None and all_valid([form, leaks, comps]):  # the procedure first: rows check against its dates
        form.instance.leakage = bool(leaks.rows())  # the yes/no follows the rows, so they cannot disagree
        if service_saved(
            form,
            lambda: services.record_procedure(
                procedure=form.instance,
                leakages=leaks.rows(),
                complications=comps.rows(),
                removed=[*leaks.removed(), *comps.removed()],
                user=request.user,
                **form.edit_kwargs(),
            ),
        ):
            messages.success(
                request,
                _("Procedure %(number)s of %(study_id)s saved.")
                % {"number": procedure.procedure_number, "study_id": patient.study_id},
            )
            return redirect("patients:detail", study_id=patient.study_id)
    context = {
        "form": form,
        "leaks": leaks,
        "comps": comps,
        "patient": patient,
        "procedure": procedure,
        "severity_by_type": SEVERITY_BY_TYPE,
        "errors": error_summary(form, leaks, comps),
    }
    return render(request, "procedures/procedure_form.html", context)
