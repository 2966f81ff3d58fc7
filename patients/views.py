from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _

from accounts.permissions import admin_required, case_read_required, data_entry_required, scope_to_sites
from audit.models import AuditEvent
from audit.services import record_access, record_read, record_search, save_audited
from patients import selectors, services
from patients.forms import ConsentForm, ConsentVersionForm, PatientForm, PatientSearchForm, WithdrawalForm
from patients.models import Consent, ConsentVersion
from patients.services import current_version, document_matches, withdraw_consent
from registry.forms import error_summary, service_saved
from registry.uploads import inert_download

PAGE_SIZE = 25
SEARCH_SESSION_KEY = "patient_search"


@case_read_required
def patient_list(request: HttpRequest) -> HttpResponse:
    """The patient list and search. A search is POSTed and its term kept in the session, so names and
    MRNs never appear in a URL (nor in the web server's or a proxy's access log); each term is in the trail."""
    if request.method == "POST":
        form = PatientSearchForm(request.POST)
        query = form.cleaned_data["q"].strip() if form.is_valid() else ""
        request.session[SEARCH_SESSION_KEY] = query
        if query:
            record_search(user=request.user, term=query)
        return redirect("patients:list")
    query = request.session.get(SEARCH_SESSION_KEY, "")
    form = PatientSearchForm(initial={"q": query})
    page = Paginator(selectors.search_patients(request.user, query), PAGE_SIZE).get_page(request.GET.get("page"))  # type: ignore[arg-type]
    return render(request, "patients/patient_list.html", {"form": form, "page": page, "query": query})


@data_entry_required
def enrol(request: HttpRequest) -> HttpResponse:
    form = PatientForm(request.POST or None, user=request.user)  # type: ignore[arg-type]
    if request.method == "POST" and form.is_valid():
        patient = services.enrol_patient(patient=form.instance, user=request.user)
        messages.success(
            request, _("%(study_id)s enrolled. Now record the signed consent.") % {"study_id": patient.study_id}
        )
        return redirect("patients:consent", study_id=patient.study_id)
    return render(request, "patients/patient_form.html", {"form": form, "errors": error_summary(form)})


@data_entry_required
def edit(request: HttpRequest, study_id: str) -> HttpResponse:
    patient = selectors.get_patient_for_user(request.user, study_id)
    record_read(request, patient, "patient record form")
    form = PatientForm(request.POST or None, instance=patient, user=request.user)  # type: ignore[arg-type]
    if request.method == "POST" and form.is_valid():
        if service_saved(
            form, lambda: services.update_patient(patient=form.instance, user=request.user, **form.edit_kwargs())
        ):
            messages.success(request, _("%(study_id)s saved.") % {"study_id": patient.study_id})
            return redirect("patients:detail", study_id=patient.study_id)
    context = {"form": form, "patient": patient, "errors": error_summary(form)}
    return render(request, "patients/patient_form.html", context)


@data_entry_required
def consent(request: HttpRequest, study_id: str) -> HttpResponse:
    """A new consent record; re-consent to a new version adds another, nothing is overwritten."""
    patient = selectors.get_patient_for_user(request.user, study_id)
    form = ConsentForm(request.POST or None, request.FILES or None, instance=Consent(patient=patient))
    if request.method == "POST" and form.is_valid():
        services.record_consent(consent=form.instance, user=request.user, document=form.cleaned_data["document"])
        messages.success(request, _("Consent of %(study_id)s recorded.") % {"study_id": patient.study_id})
        return redirect("patients:detail", study_id=patient.study_id)
    context = {"form": form, "patient": patient, "errors": error_summary(form)}
    return render(request, "patients/consent_form.html", context)


# --- consent versions ------------------------------------------------------


@admin_required
def version_list(request: HttpRequest) -> HttpResponse:
    versions = ConsentVersion.objects.all()
    current = current_version()
    return render(request, "patients/version_list.html", {"versions": versions, "current": current})


@admin_required
def version_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    version = get_object_or_404(ConsentVersion, pk=pk) if pk else ConsentVersion()
    form = ConsentVersionForm(request.POST or None, request.FILES or None, instance=version)
    if request.method == "POST" and form.is_valid():
        try:
            save_audited(form.instance, user=request.user, reason=form.cleaned_data.get("reason_for_change", ""))
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Consent version %(version)s saved.") % {"version": form.instance.version})
            return redirect("patients:versions")
    return render(request, "patients/version_form.html", {"form": form, "version": version})


@data_entry_required
def version_form_download(request: HttpRequest, pk: int) -> HttpResponse:
    """The blank form of a version, for printing; only to staff who obtain consent."""
    version = get_object_or_404(ConsentVersion, pk=pk)
    if not version.blank_form:
        raise Http404(_("This version has no blank form on file."))
    return inert_download(
        FileResponse(
            version.blank_form.open("rb"),
            as_attachment=True,
            content_type="application/pdf",
            filename=f"consent-form-v{version.version}.pdf",
        )
    )


# --- consent records -------------------------------------------------------


def _get_consent_for_user(request: HttpRequest, pk: int) -> Consent:
    """A consent of the user's sites (404 outside them); the role check is the decorator's."""
    consents = Consent.objects.select_related("patient__site", "consent_version")
    return get_object_or_404(scope_to_sites(consents, request.user, "patient__site"), pk=pk)


@case_read_required
def consent_detail(request: HttpRequest, pk: int) -> HttpResponse:
    consent = _get_consent_for_user(request, pk)
    record_read(request, consent, "consent record")
    others = consent.patient.consents.select_related("consent_version").exclude(pk=consent.pk)
    context = {"consent": consent, "document_ok": document_matches(consent), "others": others}
    return render(request, "patients/consent_detail.html", context)


@case_read_required
def consent_document(request: HttpRequest, pk: int) -> HttpResponse:
    """The signed PDF, only through this permission check (MEDIA_URL is never served)."""
    consent = _get_consent_for_user(request, pk)
    if not consent.document:
        raise Http404(_("No signed document is on file for this consent."))
    matches = document_matches(consent)
    record_access(
        action=AuditEvent.Action.VIEW, instance=consent, user=request.user, extra={"document_matches_sha256": matches}
    )
    try:
        fh = consent.document.open("rb")
    except FileNotFoundError:
        raise Http404(_("The signed document is missing from storage.")) from None
    response = inert_download(
        FileResponse(
            fh,
            as_attachment=True,
            content_type="application/pdf",
            filename=f"{consent.patient.study_id}-consent-{consent.pk}.pdf",
        )
    )
    response["Cache-Control"] = "private, no-store"
    response["X-Document-SHA256-Matches"] = "yes" if matches else "no"
    return response


@data_entry_required
def consent_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    consent = _get_consent_for_user(request, pk)
    if consent.withdrawn_date:
        messages.info(request, _("This consent is already withdrawn."))
        return redirect("patients:consent_record", pk=pk)
    form = WithdrawalForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            withdraw_consent(
                consent=consent,
                scope=data["withdrawal_scope"],
                reason=data["withdrawal_reason"],
                on=data["withdrawn_date"],
                user=request.user,
            )
        except ValidationError as exc:
            errors = exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}
            for field, msgs in errors.items():
                form.add_error(field if field in form.fields else None, msgs)
        else:
            messages.success(
                request,
                _("The withdrawal of %(study_id)s is recorded and in effect.") % {"study_id": consent.patient.study_id},
            )
            return redirect("patients:consent_record", pk=pk)
    return render(request, "patients/consent_withdraw.html", {"consent": consent, "form": form})
