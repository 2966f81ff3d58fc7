"""Oversight pages for registry admins: the audit trail (search, CSV, patient
timelines), deletions with a reason, and the consent register."""

import datetime
from collections.abc import Iterator
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext, ngettext

from accounts.models import User
from accounts.permissions import admin_required, scope_to_sites
from audit import display
from audit.models import AuditEvent
from audit.services import delete_audited, owner_keys, record_event
from outcomes.models import FollowUp
from oversight import selectors
from oversight.forms import DeletePatientForm, RegisterFilterForm, TrailFilterForm
from oversight.services import record_label, shown_label
from patients.models import Consent, Patient
from patients.services import delete_patient, ensure_not_locked
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
    entries = display.readable(page.object_list, filters.get("field", ""))
    context = {"form": form, "page": page, "entries": entries, "query": query.urlencode()}
    return render(request, "oversight/index.html", context)


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
    context = {
        "study_id": study_id,
        "patient": patient,
        "entries": display.readable(events),
        "readers": _readers(events),
    }
    return render(request, "oversight/patient_history.html", context)


def _readers(events: list[AuditEvent]) -> list[dict[str, Any]]:
    """Who opened this patient's identified pages: each user with how often, when last and which pages."""
    readers: dict[str, dict[str, Any]] = {}
    for event in events:  # newest first
        if event.action != AuditEvent.Action.VIEW:
            continue
        reader = readers.setdefault(
            event.username, {"username": event.username, "count": 0, "last": event.at, "pages": set()}
        )
        reader["count"] += 1
        reader["pages"].add(event.extra.get("page") or event.model)
    return [{**r, "pages": sorted(r["pages"])} for r in readers.values()]


@admin_required
def patient_delete(request: HttpRequest, study_id: str) -> HttpResponse:
    patient = get_object_or_404(
        scope_to_sites(Patient.objects.select_related("site"), _user(request)), study_id=study_id
    )
    form = DeletePatientForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            delete_patient(patient=patient, user=request.user, reason=form.cleaned_data["reason"])
        except ValidationError as exc:
            form.add_error(None, exc.messages)
        else:
            messages.success(
                request, gettext("%(what)s was deleted; its values stay in the audit trail.") % {"what": study_id}
            )
            return redirect("oversight:patient_history", study_id=study_id)
    consents, procedures, visits = patient.consents.count(), patient.procedures.count(), patient.followups.count()
    counts = [
        ngettext("%(n)d consent record", "%(n)d consent records", consents) % {"n": consents},
        ngettext("%(n)d procedure", "%(n)d procedures", procedures) % {"n": procedures},
        ngettext("%(n)d follow-up visit", "%(n)d follow-up visits", visits) % {"n": visits},
    ]
    return render(request, "oversight/patient_delete.html", {"patient": patient, "form": form, "counts": counts})


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
    # "Procedure 1 of PSP-0001", in the reader's language (the model's own name for it is English)
    named = gettext("%(record)s of %(study_id)s") % {"record": shown_label(record_label(record)), "study_id": study_id}
    context = {"record": named, "study_id": study_id}
    form = DeletePatientForm(request.POST or None, what=kind)
    if request.method == "POST" and form.is_valid():
        try:
            ensure_not_locked(record.patient, getattr(record, "timepoint", ""))
        except ValidationError as exc:
            form.add_error(None, exc.messages)
            return render(request, "oversight/record_delete.html", {**context, "form": form})
        delete_audited(record, user=request.user, reason=form.cleaned_data["reason"])
        messages.success(
            request, gettext("%(what)s was deleted; its values stay in the audit trail.") % {"what": named}
        )
        return redirect("oversight:patient_history", study_id=study_id)
    return render(request, "oversight/record_delete.html", {**context, "form": form})


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
    return render(request, "oversight/consent_register.html", context)


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
