"""Audit pages: the trail, patient timelines, consent versions, records and register.

Everything here is for registry admins, except a consent record (its page, its
PDF, its withdrawal), which the nurses of the patient's site work with too.
"""

import datetime
from collections.abc import Iterator
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from accounts.models import User
from accounts.permissions import admin_required, data_entry_required, scope_to_sites
from audit import selectors
from audit.forms import ConsentVersionForm, DeletePatientForm, RegisterFilterForm, TrailFilterForm, WithdrawalForm
from audit.models import AuditEvent
from audit.services import delete_audited, owner_keys, record_access, record_event, save_audited
from outcomes.models import FollowUp
from patients.models import Consent, ConsentVersion, Patient
from patients.services import current_version, delete_patient, document_matches, withdraw_consent
from procedures.models import Procedure
from registry.csv_safety import stream_csv

PAGE_SIZE = 50


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _csv_response(filename: str, lines: Iterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


# --- the trail -------------------------------------------------------------


@admin_required
def index(request: HttpRequest) -> HttpResponse:
    """Search over the whole trail, newest first."""
    form = TrailFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    events = selectors.search_trail(_user(request), filters)
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "audit/index.html", {"form": form, "page": page, "query": query.urlencode()})


TRAIL_HEADER = [
    "event_id",
    "at_utc",
    "username",
    "action",
    "model",
    "object_pk",
    "object",
    "study_id",
    "site",
    "field",
    "old_value",
    "new_value",
    "reason",
]


def _trail_rows(events: QuerySet[AuditEvent]) -> Iterator[list[Any]]:
    """One row per changed field; an event without changes (a log-in) is one row with no field."""
    for e in events.iterator(chunk_size=2000):
        head = [e.pk, e.at.astimezone(datetime.UTC).isoformat(), e.username, e.action, e.model, e.object_pk]
        head += [e.object_repr, e.study_id, e.site_code]
        for change in e.field_changes() or [None]:
            if change is None:
                yield [*head, "", "", "", e.reason]
            else:
                yield [*head, change.field, change.old, change.new, e.reason]


@admin_required
def trail_csv(request: HttpRequest) -> HttpResponse:
    form = TrailFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    events = selectors.search_trail(_user(request), filters)
    record_event(
        action=AuditEvent.Action.EXPORT,
        user=request.user,
        reason="Audit trail CSV",
        extra={"filters": {k: str(v) for k, v in filters.items() if v}},
    )
    return _csv_response("audit-trail.csv", stream_csv(TRAIL_HEADER, _trail_rows(events)))


@admin_required
def patient_history(request: HttpRequest, study_id: str) -> HttpResponse:
    """A patient's timeline; it outlives the patient, since events keep the study ID."""
    user = _user(request)
    events = list(selectors.patient_history(user, study_id))
    patient = scope_to_sites(Patient.objects.select_related("site"), user).filter(study_id=study_id).first()
    if patient is None and not events:
        raise Http404("No such patient in the registry or its trail.")
    return render(request, "audit/patient_history.html", {"study_id": study_id, "patient": patient, "events": events})


@admin_required
def patient_delete(request: HttpRequest, study_id: str) -> HttpResponse:
    patient = get_object_or_404(
        scope_to_sites(Patient.objects.select_related("site"), _user(request)), study_id=study_id
    )
    form = DeletePatientForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        delete_patient(patient=patient, user=request.user, reason=form.cleaned_data["reason"])
        messages.success(request, f"{study_id} was deleted; its values stay in the audit trail.")
        return redirect("audit:patient_history", study_id=study_id)
    counts = {
        "consent records": patient.consents.count(),
        "procedures": patient.procedures.count(),
        "follow-up visits": patient.followups.count(),
    }
    return render(request, "audit/patient_delete.html", {"patient": patient, "form": form, "counts": counts})


# Single records an admin may delete (with a reason), by the name used in the URL.
DELETABLE = {
    "procedure": (Procedure, "patient__site"),
    "visit": (FollowUp, "patient__site"),
    "consent": (Consent, "patient__site"),
}


@admin_required
def record_delete(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    """Delete one procedure, visit or consent record; the deleted values stay in the trail."""
    if kind not in DELETABLE:
        raise Http404
    model, site_path = DELETABLE[kind]
    record = get_object_or_404(scope_to_sites(model.objects.all(), _user(request), site_path), pk=pk)
    study_id = owner_keys(record)[0]
    form = DeletePatientForm(request.POST or None, what=kind)
    if request.method == "POST" and form.is_valid():
        delete_audited(record, user=request.user, reason=form.cleaned_data["reason"])
        messages.success(request, f"{record} was deleted; its values stay in the audit trail.")
        return redirect("audit:patient_history", study_id=study_id)
    return render(request, "audit/record_delete.html", {"record": record, "study_id": study_id, "form": form})


# --- consent versions ------------------------------------------------------


@admin_required
def version_list(request: HttpRequest) -> HttpResponse:
    versions = ConsentVersion.objects.all()
    current = current_version()
    return render(request, "audit/version_list.html", {"versions": versions, "current": current})


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
            messages.success(request, f"Consent version {form.instance.version} saved.")
            return redirect("audit:versions")
    return render(request, "audit/version_form.html", {"form": form, "version": version})


@data_entry_required
def version_form_download(request: HttpRequest, pk: int) -> HttpResponse:
    """The blank form of a version, for printing; only to staff who obtain consent."""
    version = get_object_or_404(ConsentVersion, pk=pk)
    if not version.blank_form:
        raise Http404("This version has no blank form on file.")
    return FileResponse(
        version.blank_form.open("rb"), as_attachment=True, filename=f"consent-form-v{version.version}.pdf"
    )


# --- consent records -------------------------------------------------------


def _get_consent_for_user(request: HttpRequest, pk: int) -> Consent:
    """A consent of the user's sites (404 outside them); the role check is the decorator's."""
    consents = Consent.objects.select_related("patient__site", "consent_version")
    return get_object_or_404(scope_to_sites(consents, _user(request), "patient__site"), pk=pk)


@data_entry_required
def consent_detail(request: HttpRequest, pk: int) -> HttpResponse:
    consent = _get_consent_for_user(request, pk)
    others = consent.patient.consents.select_related("consent_version").exclude(pk=consent.pk)
    context = {"consent": consent, "document_ok": document_matches(consent), "others": others}
    return render(request, "audit/consent_detail.html", context)


@data_entry_required
def consent_document(request: HttpRequest, pk: int) -> HttpResponse:
    """The signed PDF, only through this permission check (MEDIA_URL is never served)."""
    consent = _get_consent_for_user(request, pk)
    if not consent.document:
        raise Http404("No signed document is on file for this consent.")
    matches = document_matches(consent)
    record_access(
        action=AuditEvent.Action.VIEW, instance=consent, user=request.user, extra={"document_matches_sha256": matches}
    )
    try:
        fh = consent.document.open("rb")
    except FileNotFoundError:
        raise Http404("The signed document is missing from storage.") from None
    response = FileResponse(
        fh, content_type="application/pdf", filename=f"{consent.patient.study_id}-consent-{consent.pk}.pdf"
    )
    response["Cache-Control"] = "private, no-store"
    response["X-Document-SHA256-Matches"] = "yes" if matches else "no"
    return response


@data_entry_required
def consent_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    consent = _get_consent_for_user(request, pk)
    if consent.withdrawn_date:
        messages.info(request, "This consent is already withdrawn.")
        return redirect("audit:consent", pk=pk)
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
            messages.success(request, f"The withdrawal of {consent.patient.study_id} is recorded and in effect.")
            return redirect("audit:consent", pk=pk)
    return render(request, "audit/consent_withdraw.html", {"consent": consent, "form": form})


# --- the consent register --------------------------------------------------

REGISTER_HEADER = [
    "study_id",
    "site",
    "state",
    "needs_reconsent",
    "consent_version",
    "signed_date",
    "obtained_by",
    "scope_registry",
    "scope_future_contact",
    "withdrawn_date",
    "withdrawal_scope",
    "document_sha256",
]


def _register_filters(request: HttpRequest) -> tuple[RegisterFilterForm, dict[str, Any]]:
    form = RegisterFilterForm(request.GET or None, user=_user(request))
    return form, (form.cleaned_data if form.is_valid() else {})


@admin_required
def consent_register(request: HttpRequest) -> HttpResponse:
    form, filters = _register_filters(request)
    current, rows = selectors.consent_register(_user(request), **filters)
    rows = list(rows)
    context = {
        "form": form,
        "current": current,
        "rows": rows,
        "reconsent": [r for r in rows if r.needs_reconsent],
        "lacking": sum(r.lacks_valid_consent for r in rows),
        "query": request.GET.urlencode(),
    }
    return render(request, "audit/consent_register.html", context)


def _register_csv_rows(rows: Iterator[selectors.RegisterRow]) -> Iterator[list[Any]]:
    for row in rows:
        c = row.consent
        yield [
            row.patient.study_id,
            row.patient.site.code,
            row.state.value,
            row.needs_reconsent,
            c and c.consent_version.version,
            c and c.signed_date,
            c and c.obtained_by,
            c and c.scope_registry,
            c and c.scope_future_contact,
            c and c.withdrawn_date,
            c and c.withdrawal_scope,
            c and c.document_sha256,
        ]


@admin_required
def consent_register_csv(request: HttpRequest) -> HttpResponse:
    _, filters = _register_filters(request)
    _, rows = selectors.consent_register(_user(request), **filters)
    record_event(
        action=AuditEvent.Action.EXPORT,
        user=request.user,
        reason="Consent register CSV",
        extra={"filters": {k: str(v) for k, v in filters.items() if v}},
    )
    return _csv_response("consent-register.csv", stream_csv(REGISTER_HEADER, _register_csv_rows(rows)))
