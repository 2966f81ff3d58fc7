from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.forms.formsets import all_valid
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import Site, User
from accounts.permissions import case_read_required, data_entry_required
from audit import display
from audit.services import record_read
from outcomes import odi, selectors, services
from outcomes.forms import MedicationFormSet, VisitForm
from outcomes.models import FollowUp, Timepoint
from patients.selectors import get_patient_for_user
from registry import dates
from registry.forms import error_summary, service_saved
from registry.scoring import FACTOR_ROUTE, MME_FACTORS, odi_band, usual_route, visit_window


@data_entry_required
def visit(request: HttpRequest, study_id: str, timepoint: str) -> HttpResponse:
    """The visit of one timepoint: recorded the first time, edited (with a reason) afterwards."""
    patient = get_patient_for_user(request.user, study_id)
    if timepoint not in Timepoint.values:
        raise Http404
    label = selectors.visit_label(timepoint)
    if block := patient.data_entry_block_reason():
        what = gettext("Record the %(visit)s visit") % {"visit": label}
        return render(request, "patients/blocked.html", {"patient": patient, "reason": block, "what": what})
    followup = patient.followups.filter(timepoint=timepoint).first() or FollowUp(patient=patient, timepoint=timepoint)
    record_read(request, patient, f"{timepoint} visit form")
    followup.patient = patient  # one Patient object, so its index date is looked up once
    index = patient.index_procedure_date
    window = visit_window(timepoint, index) if index else None
    data = request.POST if request.method == "POST" else None
    odi_text = odi.text_for(odi.text_language(get_language()))
    form = VisitForm(data, instance=followup, window=window, odi_text=odi_text)
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
            messages.success(
                request,
                gettext("%(visit)s visit of %(study_id)s saved.") % {"visit": label, "study_id": patient.study_id},
            )
            return redirect("patients:detail", study_id=patient.study_id)
    context = {
        "form": form,
        "meds": meds,
        "patient": patient,
        "visit": followup,
        "label": label,
        "mme_factors": {drug: float(f) for drug, f in MME_FACTORS.items()},
        "mme_unknown": mme_unknown(followup.medications.all()) if followup.pk else "",
        "odi_min_sections": followup.odi_min_sections or settings.ODI_MIN_SECTIONS,
        "odi_notice": PLACEHOLDER_NOTICE if odi_text.get("placeholder") else "",
        "band": odi.BAND_LABELS.get(odi_band(followup.odi_score), ""),
        "visit_strings": visit_strings(),
        "errors": error_summary(form, meds),
    }
    return render(request, "outcomes/visit_form.html", context)


def visit_strings() -> dict[str, Any]:
    """The sentences static/js/visit.js writes, translated here ("%(name)s" marks a value)."""
    return {
        "odi_unscored": gettext("not scored (%(answered)s of 10 sections answered)"),
        "odi_scored": gettext("%(score)s %% (%(band)s)"),
        "bands": {code: str(label) for code, label in odi.BAND_LABELS.items()},
        "outside_window": gettext(
            "This date is outside the visit window (%(opens)s to %(closes)s): explain the deviation in the note "
            "below to save it."
        ),
        **{key: str(text) for key, text in MME_REASONS.items()},
        "mme_unknown": gettext("unknown (%(reasons)s)"),
        "separator": gettext("; "),
    }


# The staff's words for the shipped wording (the file's own notice is written for patients).
PLACEHOLDER_NOTICE = _(
    "Placeholder statements written for this software, not the licensed ODI wording: an administrator "
    "installs the site's licensed text with manage.py install_odi_text."
)
MME_REASONS = {
    "no_factor": _("%(drug)s: the CDC 2022 guideline gives no conversion factor"),
    "oral_only": _("%(drug)s, %(route)s: the CDC factors are for oral doses"),
    "patch_only": _("%(drug)s, %(route)s: the CDC factors are for fentanyl patches"),
}


def mme_unknown(medications: Any) -> str:
    """Why a saved visit's MME/day is unknown, in the words visit.js uses (registry.scoring's rule:
    a drug without a CDC factor, or a route the factor is not for), or "" when it is known."""
    reasons = []
    for med in medications:
        route = med.route or usual_route(med.drug)
        args = {"drug": med.get_drug_display(), "route": med.get_route_display()}
        if med.drug not in MME_FACTORS:
            reasons.append(str(MME_REASONS["no_factor"]) % args)
        elif FACTOR_ROUTE[med.drug] != route:
            key = "oral_only" if FACTOR_ROUTE[med.drug] == "oral" else "patch_only"
            reasons.append(str(MME_REASONS[key]) % args)
    return gettext("; ").join(reasons)


class WorklistFilter(forms.Form):
    """The worklist's filters (GET); choices are the user's own sites, the timepoints and the groups."""

    site = forms.TypedChoiceField(label=_("Site"), required=False, coerce=int, empty_value=None)
    timepoint = forms.ChoiceField(label=_("Visit"), required=False)
    group = forms.ChoiceField(label=_("Show"), required=False)
    kind = forms.ChoiceField(label=_("Kind of work"), required=False)

    def __init__(self, data: Any, sites: list[Site]) -> None:
        super().__init__(data)
        self.fields["site"].choices = [("", _("All my sites"))] + [(s.pk, f"{s.code} – {s.name}") for s in sites]
        self.fields["timepoint"].choices = [("", _("All visits"))] + [
            (t, selectors.visit_label(t)) for t in Timepoint.values
        ]
        self.fields["group"].choices = [("", _("All")), *WORKLIST_GROUP_LABELS.items()]
        self.fields["kind"].choices = [("", _("All work")), *WORKLIST_KINDS.items()]


WORKLIST_KINDS = {
    "visits": _("Visits due"),
    "queries": _("Open queries"),
    "selfreports": _("Self-reports to review"),
}
WORKLIST_GROUP_LABELS = {
    selectors.OVERDUE: _("Overdue"),
    selectors.DUE_TODAY: _("Due today"),
    selectors.THIS_WEEK: _("Due this week"),
    selectors.LATER: _("Due later"),
}


@data_entry_required
def worklist(request: HttpRequest) -> HttpResponse:
    """The nurse's home page: due visits grouped and counted, filtered by site, visit and group, paged."""
    user = request.user
    assert isinstance(user, User)
    sites = list(Site.objects.all() if user.sees_all_sites else user.sites.all())
    form = WorklistFilter(request.GET, sites)
    filters = form.cleaned_data if form.is_valid() else {}
    today = dates.today()
    kind = filters.get("kind") or ""
    query = request.GET.copy()
    query.pop("page", None)
    kinds = []
    for key, label in [("", _("All work")), *WORKLIST_KINDS.items()]:
        q = query.copy()
        q.pop("group", None)
        q["kind"] = key
        kinds.append({"key": key, "label": label, "query": q.urlencode()})
    if kind and kind != "visits":  # only the chosen section: the visits are not computed at all
        context = {"form": form, "kind": kind, "kinds": kinds, "today": today, "show_visits": False}
        return render(request, "outcomes/worklist.html", context)
    result = selectors.worklist(
        user,
        today,
        site_id=filters.get("site"),
        timepoint=filters.get("timepoint") or None,
        group=filters.get("group") or None,
    )
    page = Paginator(result.visits, selectors.PAGE_SIZE).get_page(request.GET.get("page"))
    group_links = []
    for key, label in WORKLIST_GROUP_LABELS.items():
        q = query.copy()
        q["group"] = key
        group_links.append({"key": key, "label": label, "count": result.counts[key], "query": q.urlencode()})
    q = query.copy()
    q.pop("group", None)
    context = {
        "form": form,
        "worklist": result,
        "page": page,
        "groups": group_links,
        "all_query": q.urlencode(),
        "query": query.urlencode(),
        "group": filters.get("group") or "",
        "group_labels": WORKLIST_GROUP_LABELS,
        "today": today,
        "horizon": selectors.DUE_HORIZON_DAYS,
        "week": selectors.WEEK_DAYS,
        "kind": kind,
        "kinds": kinds,
        "show_visits": True,
    }
    return render(request, "outcomes/worklist.html", context, status=200 if form.is_valid() else 400)


@case_read_required
def detail(request: HttpRequest, study_id: str) -> HttpResponse:
    patient = selectors.case_for(request.user, study_id)  # type: ignore[arg-type]
    record_read(request, patient, "patient page")
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
        "history": display.readable(selectors.history_of(patient)),
        "can_edit": request.user.role in (User.Role.NURSE, User.Role.ADMIN) or request.user.is_superuser,  # type: ignore[union-attr]
    }
    return render(request, "outcomes/patient_detail.html", context)
