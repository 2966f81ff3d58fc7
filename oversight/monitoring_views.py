"""Study monitoring pages: queries, verification, signatures and locks, data-quality rules,
completeness by site, end of follow-up and closing long-missed visits."""

import datetime
import os
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from accounts.models import User
from accounts.permissions import (
    ADMIN,
    INVESTIGATOR,
    MONITOR,
    admin_required,
    role_required,
    scope_to_sites,
    visible_sites,
)
from outcomes import selectors
from outcomes.models import FollowUp, Timepoint
from outcomes.services import record_visit
from oversight import completeness, quality, services
from oversight.models import DataQuery, Verification
from patients.models import CaseLock, FollowUpEndReason, Patient
from patients.selectors import patients_for
from patients.services import end_follow_up
from registry import dates
from registry.csv_safety import stream_csv
from registry.scoring import visit_window

monitoring_required = role_required(MONITOR, INVESTIGATOR, ADMIN)
case_staff_required = role_required(User.Role.NURSE, MONITOR, INVESTIGATOR, ADMIN)
nurse_or_admin_required = role_required(User.Role.NURSE, ADMIN)


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


def _errors(exc: ValidationError) -> list[str]:
    return [m for msgs in (exc.message_dict.values() if hasattr(exc, "error_dict") else [exc.messages]) for m in msgs]


def _queries_for(user: User) -> Any:
    return scope_to_sites(DataQuery.objects.select_related("patient__site", "raised_by"), user, "patient__site")


@monitoring_required
def monitoring(request: HttpRequest) -> HttpResponse:
    """Open-query counts per site, cases verified and awaiting signature, and the queries themselves."""
    user = _user(request)
    sites = list(visible_sites(user))
    queries = _queries_for(user)
    per_site = {
        r["patient__site"]: r
        for r in queries.values("patient__site").annotate(
            open=Count("id", filter=Q(state=DataQuery.State.OPEN)),
            answered=Count("id", filter=Q(state=DataQuery.State.ANSWERED)),
            closed=Count("id", filter=Q(state=DataQuery.State.CLOSED)),
        )
    }
    locked = set(CaseLock.objects.active().filter(timepoint="").values_list("patient_id", flat=True))
    rows = [
        {
            "site": s,
            "open": per_site.get(s.pk, {}).get("open", 0),
            "answered": per_site.get(s.pk, {}).get("answered", 0),
            "closed": per_site.get(s.pk, {}).get("closed", 0),
            "locked": Patient.objects.filter(site=s, pk__in=locked).count(),
        }
        for s in sites
    ]
    state = request.GET.get("state", "active")
    listed = queries.exclude(state=DataQuery.State.CLOSED) if state == "active" else queries
    verified = (
        scope_to_sites(Verification.objects.filter(scope=Verification.Scope.CASE), user, "patient__site")
        .exclude(patient_id__in=locked)
        .select_related("patient")
        .order_by("patient__study_id")
    )
    awaiting = list({v.patient.study_id: v for v in verified}.values())
    context = {"rows": rows, "queries": listed[:200], "state": state, "awaiting_signature": awaiting}
    return render(request, "oversight/monitoring.html", context)


# --- queries -----------------------------------------------------------------


class RaiseQueryForm(forms.Form):
    record = forms.ChoiceField(label=gettext_lazy("Record"))
    field = forms.CharField(label=gettext_lazy("Value (field name)"), max_length=100)
    question = forms.CharField(label=gettext_lazy("Question for the site"), widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: Any, records: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["record"].choices = records


def _case_records(patient: Patient) -> list[Any]:
    return [patient, *patient.consents.all(), *patient.procedures.all(), *patient.followups.all()]


@monitoring_required
def query_raise(request: HttpRequest, study_id: str) -> HttpResponse:
    user = _user(request)
    patient = get_object_or_404(patients_for(user).select_related("site"), study_id=study_id)
    records = _case_records(patient)
    choices = [(f"{r._meta.label}:{r.pk}", services.shown_label(services.record_label(r))) for r in records]
    fields = {f"{r._meta.label}:{r.pk}": services.queryable_fields(r, user) for r in records}
    initial = {"record": request.GET.get("record", ""), "field": request.GET.get("field", "")}
    form = RaiseQueryForm(request.POST or None, records=choices, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            label, pk = form.cleaned_data["record"].rsplit(":", 1)
            try:
                record = services.load_record(label, int(pk))
                if services.patient_of(record).pk != patient.pk:
                    raise ValidationError({"record": _("That record is not part of this case.")})
                query = services.raise_query(
                    record=record, field=form.cleaned_data["field"], question=form.cleaned_data["question"], user=user
                )
            except ValidationError as exc:
                for field, msgs in (exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}).items():
                    form.add_error(field if field in form.fields else None, msgs)
            else:
                messages.success(request, _("Query #%(n)s raised on %(sid)s.") % {"n": query.pk, "sid": study_id})
                return redirect("oversight:query", pk=query.pk)
        status = 400
    context = {"patient": patient, "form": form, "fields": fields}
    return render(request, "oversight/query_raise.html", context, status=status)


@case_staff_required
def query_detail(request: HttpRequest, pk: int) -> HttpResponse:
    user = _user(request)
    query = get_object_or_404(_queries_for(user), pk=pk)
    errors: list[str] = []
    if request.method == "POST":
        action = request.POST.get("action", "")
        text = request.POST.get("text", "")
        actions = {"answer": services.answer_query, "close": services.close_query, "reopen": services.reopen_query}
        if action not in actions:
            errors = [_("Choose answer, close or re-open.")]
        else:
            try:
                actions[action](query=query, user=user, text=text)
            except PermissionDenied:
                raise
            except ValidationError as exc:
                errors = _errors(exc)
            else:
                messages.success(request, _("Query #%(n)s updated.") % {"n": query.pk})
                return redirect("oversight:query", pk=query.pk)
    record = services.QUERYABLE[query.record_model]._default_manager.filter(pk=query.record_pk).first()
    current = None
    shown = query.field not in services.IDENTIFYING or user.can_see_identifiers
    if record is not None and shown:
        current = getattr(record, query.field, None)
    edit_url = ""
    if isinstance(record, FollowUp):
        edit_url = f"/visits/{query.patient.study_id}/{record.timepoint}/"
    elif record is not None and record._meta.label == "procedures.Procedure":
        edit_url = f"/procedures/{record.pk}/edit/"
    elif isinstance(record, Patient):
        edit_url = f"/patients/{record.study_id}/edit/"
    context = {
        "query": query,
        "thread": query.messages.select_related("author"),
        "current": current,
        "raised_value": query.value_when_raised if shown else "…",
        "errors": errors,
        "may_answer": user.is_superuser or user.role in services.ANSWERERS,
        "may_close": user.is_superuser or user.role in services.RAISERS,
        "edit_url": edit_url if user.can_enter_data else "",
    }
    return render(request, "oversight/query_detail.html", context, status=400 if errors else 200)


# --- verification and signatures -------------------------------------------------


@require_POST
@role_required(MONITOR, ADMIN)
def verify(request: HttpRequest, study_id: str) -> HttpResponse:
    user = _user(request)
    patient = get_object_or_404(patients_for(user), study_id=study_id)
    scope, _sep, pk = request.POST.get("target", "").partition(":")
    try:
        v = services.mark_verified(patient=patient, scope=scope, record_pk=int(pk) if pk else None, user=user)
    except (ValidationError, ValueError) as exc:
        messages.error(request, " ".join(_errors(exc)) if isinstance(exc, ValidationError) else _("Bad record."))
        return redirect("patients:detail", study_id=study_id)
    what = services.shown_label(v.record_label)
    messages.success(request, _("%(what)s of %(sid)s marked verified.") % {"what": what, "sid": study_id})
    return redirect("patients:detail", study_id=study_id)


class SignForm(forms.Form):
    timepoint = forms.ChoiceField(label=gettext_lazy("What you sign"), required=False)
    password = forms.CharField(
        label=gettext_lazy("Your password"), widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    code = forms.CharField(label=gettext_lazy("Authenticator code (if you have one)"), required=False, max_length=20)
    meaning = forms.BooleanField(label=CaseLock.MEANING, required=True)


@role_required(INVESTIGATOR)
def sign(request: HttpRequest, study_id: str) -> HttpResponse:
    """An investigator signs and locks the case or one visit (no identifiers shown: she never sees them)."""
    user = _user(request)
    patient = get_object_or_404(patients_for(user).select_related("site"), study_id=study_id)
    form = SignForm(request.POST or None)
    recorded = list(patient.followups.values_list("timepoint", flat=True))
    form.fields["timepoint"].choices = [("", _("The whole case"))] + [
        (t, label) for t, label in Timepoint.choices if t in recorded
    ]
    if request.method == "POST" and form.is_valid():
        try:
            services.sign_lock(
                patient=patient,
                user=user,
                password=form.cleaned_data["password"],
                code=form.cleaned_data["code"],
                meaning=CaseLock.MEANING,
                timepoint=form.cleaned_data["timepoint"],
            )
        except ValidationError as exc:
            for field, msgs in (exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}).items():
                form.add_error(field if field in form.fields else None, msgs)
        else:
            messages.success(request, _("%(sid)s signed and locked.") % {"sid": study_id})
            return redirect("oversight:monitoring")
    context = {
        "patient": patient,
        "form": form,
        "locks": patient.locks.select_related("signed_by", "unlocked_by"),
        "verifications": patient.verifications.select_related("verified_by"),
    }
    return render(request, "oversight/sign.html", context, status=400 if form.errors else 200)


class UnlockForm(forms.Form):
    reason = forms.CharField(label=gettext_lazy("Reason for unlocking"), widget=forms.Textarea(attrs={"rows": 2}))


@admin_required
def unlock(request: HttpRequest, pk: int) -> HttpResponse:
    user = _user(request)
    lock = get_object_or_404(
        scope_to_sites(CaseLock.objects.select_related("patient__site"), user, "patient__site"), pk=pk
    )
    form = UnlockForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.unlock(lock=lock, user=user, reason=form.cleaned_data["reason"])
        except ValidationError as exc:
            form.add_error(None, _errors(exc))
        else:
            messages.success(request, _("%(sid)s unlocked.") % {"sid": lock.patient.study_id})
            return redirect("patients:detail", study_id=lock.patient.study_id)
    return render(request, "oversight/unlock.html", {"lock": lock, "form": form}, status=400 if form.errors else 200)


# --- end of follow-up and long-missed visits ---------------------------------------


class EndFollowUpForm(forms.Form):
    on = forms.DateField(label=gettext_lazy("Follow-up ended on"), widget=forms.DateInput(attrs={"type": "date"}))
    reason = forms.ChoiceField(label=gettext_lazy("Reason"), choices=FollowUpEndReason.choices)
    note = forms.CharField(label=gettext_lazy("Note"), required=False, widget=forms.Textarea(attrs={"rows": 2}))


@nurse_or_admin_required
def end_follow_up_view(request: HttpRequest, study_id: str) -> HttpResponse:
    user = _user(request)
    patient = get_object_or_404(patients_for(user), study_id=study_id)
    form = EndFollowUpForm(request.POST or None, initial={"on": dates.today()})
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            end_follow_up(
                patient=patient,
                on=d["on"],
                reason=d["reason"],
                note=d["note"],
                user=user,
                expected_version=patient.version,
            )
        except ValidationError as exc:
            form.add_error(None, _errors(exc))
        else:
            messages.success(request, _("Follow-up of %(sid)s ended.") % {"sid": study_id})
            return redirect("patients:detail", study_id=study_id)
    return render(
        request, "oversight/end_follow_up.html", {"patient": patient, "form": form}, status=400 if form.errors else 200
    )


def missed_after_days() -> int:
    """WORKLIST_MISSED_AFTER_DAYS (a setting, else the environment variable; default 30)."""
    value = getattr(settings, "WORKLIST_MISSED_AFTER_DAYS", None) or os.environ.get("WORKLIST_MISSED_AFTER_DAYS", "30")
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 30


def long_missed(user: User, today: datetime.date, limit: int = 50) -> list[dict[str, Any]]:
    """Visits not recorded whose window closed more than WORKLIST_MISSED_AFTER_DAYS ago (patients in
    follow-up, by the worklist's own rules), the longest overdue first, at most `limit`: one LIMIT
    query of the worklist's due windows, whatever the number of overdue visits."""
    cutoff = today - datetime.timedelta(days=missed_after_days())
    old = selectors.closed_before(user, cutoff, limit, today)
    return [
        {
            "study_id": v.study_id,
            "site_code": v.site_code,
            "timepoint": v.timepoint,
            "label": v.label,
            "closes": v.closes,
        }
        for v in old
    ]


@require_POST
@nurse_or_admin_required
def close_missed(request: HttpRequest) -> HttpResponse:
    """Close a long-overdue visit as missed, in one action with a reason (through record_visit: audited)."""
    user = _user(request)
    patient = get_object_or_404(patients_for(user), study_id=request.POST.get("study_id", ""))
    timepoint = request.POST.get("timepoint", "")
    reason = request.POST.get("reason", "").strip()
    problem = ""
    index = patient.index_procedure_date
    if timepoint not in Timepoint.values or index is None:
        problem = _("Choose a visit of a patient with an index procedure.")
    elif not reason:
        problem = _("Give the reason the visit was missed.")
    elif patient.followups.filter(timepoint=timepoint).exists():
        problem = _("This visit is already recorded.")
    elif visit_window(timepoint, index)[1] >= dates.today() - datetime.timedelta(days=missed_after_days()):
        problem = _("The window of this visit closed less than %(n)s days ago.") % {"n": missed_after_days()}
    if not problem:
        try:
            record_visit(
                visit=FollowUp(
                    patient=patient,
                    timepoint=timepoint,
                    status=FollowUp.Status.MISSED,
                    deviation_note=f"Closed as missed from the worklist: {reason}",
                ),
                user=user,
                reason=f"Closed as missed: {reason}",
            )
        except ValidationError as exc:
            problem = " ".join(_errors(exc))
    if problem:
        messages.error(request, f"{patient.study_id}: {problem}")
        return redirect("patients:worklist")
    messages.success(request, _("%(sid)s: visit closed as missed.") % {"sid": patient.study_id})
    return redirect("patients:worklist")


# --- data-quality rules and completeness ---------------------------------------------


@monitoring_required
def quality_page(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    hits = quality.run_rules(visible_sites(user))
    if request.method == "POST":
        opened = quality.open_queries(hits, user=None if request.POST.get("as_rule") else user)
        messages.success(request, ngettext("%(n)s query opened.", "%(n)s queries opened.", opened) % {"n": opened})
        return redirect("oversight:quality")
    table = quality.counts_by_site(hits)
    context = {"hits": hits, "table": table, "rules": quality.RULES}
    return render(request, "oversight/quality.html", context)


@monitoring_required
def quality_csv(request: HttpRequest) -> HttpResponse:
    hits = quality.run_rules(visible_sites(_user(request)))
    header = ["rule", "site", "study_id", "record", "field", "message"]
    rows = ([h.rule, h.site_code, h.study_id, h.record_label, h.field, h.message] for h in hits)
    response = HttpResponse(
        b"".join(line.encode() for line in stream_csv(header, rows)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = 'attachment; filename="data-quality.csv"'
    return response


@monitoring_required
def completeness_page(request: HttpRequest) -> HttpResponse:
    table = completeness.by_site(visible_sites(_user(request)), dates.today())
    return render(request, "oversight/completeness.html", {"table": table, "chart": completeness.chart(table)})


@monitoring_required
def completeness_json(request: HttpRequest) -> JsonResponse:
    table = completeness.by_site(visible_sites(_user(request)), dates.today())
    return JsonResponse({"today": dates.today().isoformat(), "sites": table})
