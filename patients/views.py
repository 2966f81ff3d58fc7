import datetime

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from accounts.permissions import data_entry_required
from outcomes.scoring import odi_band
from patients import selectors, services
from patients.forms import ConsentForm, PatientForm, PatientSearchForm, error_summary, service_saved
from patients.models import Consent, Patient

PAGE_SIZE = 25


def get_patient_for_user(user: object, study_id: str) -> Patient:
    """The patient if the user's sites include it; 404 otherwise, so other sites' IDs are not confirmed."""
    return get_object_or_404(selectors.patients_for(user), study_id=study_id)  # type: ignore[arg-type]


@data_entry_required
def worklist(request: HttpRequest) -> HttpResponse:
    context = {
        "worklist": selectors.worklist(request.user),  # type: ignore[arg-type]
        "today": datetime.date.today(),
        "horizon": selectors.DUE_HORIZON_DAYS,
    }
    return render(request, "patients/worklist.html", context)


@data_entry_required
def patient_list(request: HttpRequest) -> HttpResponse:
    form = PatientSearchForm(request.GET)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    page = Paginator(selectors.search_patients(request.user, query), PAGE_SIZE).get_page(request.GET.get("page"))  # type: ignore[arg-type]
    return render(request, "patients/patient_list.html", {"form": form, "page": page, "query": query})


@data_entry_required
def enrol(request: HttpRequest) -> HttpResponse:
    form = PatientForm(request.POST or None, user=request.user)  # type: ignore[arg-type]
    if request.method == "POST" and form.is_valid():
        patient = services.enrol_patient(patient=form.instance, user=request.user)
        messages.success(request, f"{patient.study_id} enrolled. Now record the signed consent.")
        return redirect("patients:consent", study_id=patient.study_id)
    return render(request, "patients/patient_form.html", {"form": form, "errors": error_summary(form)})


@data_entry_required
def edit(request: HttpRequest, study_id: str) -> HttpResponse:
    patient = get_patient_for_user(request.user, study_id)
    form = PatientForm(request.POST or None, instance=patient, user=request.user)  # type: ignore[arg-type]
    if request.method == "POST" and form.is_valid():
        if service_saved(
            form, lambda: services.update_patient(patient=form.instance, user=request.user, **form.edit_kwargs())
        ):
            messages.success(request, f"{patient.study_id} saved.")
            return redirect("patients:detail", study_id=patient.study_id)
    context = {"form": form, "patient": patient, "errors": error_summary(form)}
    return render(request, "patients/patient_form.html", context)


@data_entry_required
def consent(request: HttpRequest, study_id: str) -> HttpResponse:
    """A new consent record; re-consent to a new version adds another, nothing is overwritten."""
    patient = get_patient_for_user(request.user, study_id)
    form = ConsentForm(request.POST or None, request.FILES or None, instance=Consent(patient=patient))
    if request.method == "POST" and form.is_valid():
        services.record_consent(consent=form.instance, user=request.user, document=form.cleaned_data["document"])
        messages.success(request, f"Consent of {patient.study_id} recorded.")
        return redirect("patients:detail", study_id=patient.study_id)
    context = {"form": form, "patient": patient, "errors": error_summary(form)}
    return render(request, "patients/consent_form.html", context)


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
    return render(request, "patients/patient_detail.html", context)
