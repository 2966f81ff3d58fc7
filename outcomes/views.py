from django.conf import settings
from django.contrib import messages
from django.forms.formsets import all_valid
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.permissions import data_entry_required
from outcomes import selectors, services
from outcomes.forms import MedicationFormSet, VisitForm
from outcomes.models import FollowUp, Timepoint
from patients.selectors import get_patient_for_user
from registry import dates
from registry.forms import error_summary, service_saved
from registry.scoring import MME_FACTORS, mme_unknown_reason, odi_band, visit_window


@data_entry_required
def visit(request: HttpRequest, study_id: str, timepoint: str) -> HttpResponse:
    """The visit of one timepoint: recorded the first time, edited (with a reason) afterwards."""
    patient = get_patient_for_user(request.user, study_id)
    if timepoint not in Timepoint.values:
        raise Http404
    label = Timepoint(timepoint).label.split(" (")[0]
    if block := patient.data_entry_block_reason():
        return render(
            request, "patients/blocked.html", {"patient": patient, "reason": block, "what": f"the {label} visit"}
        )
    followup = patient.followups.filter(timepoint=timepoint).first() or FollowUp(patient=patient, timepoint=timepoint)
    followup.patient = patient  # one Patient object, so its index date is looked up once
    index = patient.index_procedure_date
    window = visit_window(timepoint, index) if index else None
    data = request.POST if request.method == "POST" else None
    form = VisitForm(data, instance=followup, window=window)
    meds = MedicationFormSet(data, prefix="med", instance=followup)
    if data is not None and all_valid([form, meds]):
        if service_saved(
            form,
            lambda: services.record_visit(
                visit=form.instance,
                medications=meds.rows(),
                removed=meds.removed(),
                user=request.user,
                **form.edit_kwargs(),
            ),
        ):
            messages.success(request, f"{label} visit of {patient.study_id} saved.")
            return redirect("patients:detail", study_id=patient.study_id)
    context = {
        "form": form,
        "meds": meds,
        "patient": patient,
        "visit": followup,
        "label": label,
        "mme_factors": {drug: float(f) for drug, f in MME_FACTORS.items()},
        "mme_unknown": mme_unknown_reason((m.drug, m.route) for m in followup.medications.all()) if followup.pk else "",
        "odi_min_sections": followup.odi_min_sections or settings.ODI_MIN_SECTIONS,
        "errors": error_summary(form, meds),
    }
    return render(request, "outcomes/visit_form.html", context)


@data_entry_required
def worklist(request: HttpRequest) -> HttpResponse:
    context = {
        "worklist": selectors.worklist(request.user),  # type: ignore[arg-type]
        "today": dates.today(),
        "horizon": selectors.DUE_HORIZON_DAYS,
    }
    return render(request, "outcomes/worklist.html", context)


@data_entry_required
def detail(request: HttpRequest, study_id: str) -> HttpResponse:
    patient = selectors.case_for(request.user, study_id)  # type: ignore[arg-type]
    rows = selectors.visit_rows(patient)
    timeline = [
        {"label": r.label, "vas": float(r.visit.vas), "odi": r.visit.odi_score}
        for r in rows
        if r.visit and r.visit.vas is not None
    ]
    context = {
        "patient": patient,
        "consent": patient.current_consent(),
        "block_reason": patient.data_entry_block_reason(),
        "visit_rows": rows,
        "timeline": timeline,
        "bands": {r.timepoint: odi_band(r.visit.odi_score) for r in rows if r.visit},
        "history": selectors.history_of(patient),
    }
    return render(request, "outcomes/patient_detail.html", context)
