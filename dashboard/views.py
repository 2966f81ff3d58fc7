from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from accounts.permissions import analysis_required, visible_sites
from dashboard.selectors import cohort_columns, complication_rows, vas_lines
from dashboard.summary import (
    build_summary,
    chart_data,
    complication_grades,
    headline_timepoint,
    methods_paragraph,
    outcome_rows,
    timepoint_labels,
)
from outcomes.cohort import CohortFilterForm
from patients.models import Patient
from procedures.models import Leakage, Procedure
from registry.replica import reporting_view

ANALYSIS_ROLES = (User.Role.NURSE, User.Role.INVESTIGATOR, User.Role.MONITOR, User.Role.ADMIN)
SURVIVAL_LABELS = {"m3": _("3 months"), "m6": _("6 months"), "m12": _("12 months")}


@analysis_required
@reporting_view
def index(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)
    form = CohortFilterForm(request.GET or None, user=user)
    for field in form.fields.values():
        field.widget.attrs["class"] = "form-select" if isinstance(field.widget, forms.Select) else "form-control"
    context: dict[str, Any] = {"form": form}
    if form.is_bound and not form.is_valid():
        return render(request, "dashboard/index.html", context, status=400)
    filters = form.as_filters() if form.is_bound else {}
    cohort = cohort_columns(user, filters)
    summary = build_summary(cohort, filters)
    lines, lines_total = vas_lines(user, filters, cohort=cohort)
    headline = headline_timepoint(summary)
    context.update(
        summary=summary,
        headline=headline
        and {
            "label": timepoint_labels()[headline],
            **{measure: summary["outcomes"][measure][headline] for measure in ("vas", "odi", "opioid_count")},
            "responders": summary["responders"][headline],
            "opioid_change": summary["opioid_change"][headline],
        },
        t1=summary["table1"],
        outcome_rows=outcome_rows(summary),
        timepoints=timepoint_labels(),
        complications=complication_grades(complication_rows(user, filters, cohort=cohort)),
        charts=chart_data(cohort, lines, lines_total),
        survival_labels=SURVIVAL_LABELS,
        methods=methods_paragraph(summary, _describe(filters, user)),
        labels={
            "tumour": dict(Patient.PrimaryTumour.choices),
            "leakage": dict(Leakage.Site.choices),
            "approach": dict(Procedure.Approach.choices),
        },
        query=request.GET.urlencode(),
        chart_text=_chart_text(),
    )
    return render(request, "dashboard/index.html", context)


def _chart_text() -> dict[str, str]:
    """The charts' words in the user's language (dashboard.js reads them; it has no catalogue)."""
    return {
        "mean": gettext("Mean"),
        "mean_minus_sd": gettext("Mean − SD"),
        "mean_plus_sd": gettext("Mean + SD"),
        "vas_axis": gettext("VAS (0-10)"),
        "odi_axis": gettext("ODI (%)"),
        "baseline": gettext("Baseline"),
        "post": gettext("Post-procedure"),
        "opioid_count": gettext("Number of opioids"),
        "patients": gettext("Patients"),
        "leakage_rate": gettext("Leakage rate (%)"),
        # xgettext:no-python-format
        "percent_patients": gettext("% of patients"),
    }


@reporting_view
def summary_json(request: HttpRequest) -> JsonResponse:
    """The summary as JSON; an API, so 403 JSON rather than a login redirect."""
    user = request.user
    if not isinstance(user, User) or not (user.is_superuser or user.role in ANALYSIS_ROLES):
        return JsonResponse({"error": gettext("Log in as a nurse, investigator or administrator.")}, status=403)
    form = CohortFilterForm(request.GET, user=user)
    if not form.is_valid():
        return JsonResponse({"error": gettext("Invalid filters."), "fields": form.errors}, status=400)
    filters = form.as_filters()
    return JsonResponse(
        build_summary(cohort_columns(user, filters), filters), json_dumps_params={"ensure_ascii": False}
    )


def _describe(filters: dict[str, str], user: User) -> str:
    """The applied filters in words, for the methods paragraph (in the reader's language)."""
    parts = []
    if filters.get("site"):
        parts.append(gettext("site %(site)s") % {"site": filters["site"]})
    elif not user.sees_all_sites:
        parts.append(
            gettext("sites %(sites)s") % {"sites": ", ".join(visible_sites(user).values_list("code", flat=True))}
        )
    else:
        parts.append(gettext("all sites"))
    if filters.get("approach"):
        approach = str(dict(Procedure.Approach.choices)[filters["approach"]]).lower()
        parts.append(gettext("%(approach)s approach") % {"approach": approach})
    if filters.get("primary_tumour"):
        tumour = str(dict(Patient.PrimaryTumour.choices)[filters["primary_tumour"]]).lower()
        parts.append(gettext("primary tumour %(tumour)s") % {"tumour": tumour})
    start, end = filters.get("procedure_from"), filters.get("procedure_to")
    if start and end:
        parts.append(gettext("index procedure from %(start)s to %(end)s") % {"start": start, "end": end})
    elif start:
        parts.append(gettext("index procedure from %(start)s") % {"start": start})
    elif end:
        parts.append(gettext("index procedure to %(end)s") % {"end": end})
    return "; ".join(parts)


# ----------------------------------------------------------------------------- the publication report


def _report_request(request: HttpRequest) -> tuple[User, dict[str, Any]] | HttpResponse:
    user = request.user
    assert isinstance(user, User)
    form = CohortFilterForm(request.GET, user=user)
    if not form.is_valid():
        problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())
        return HttpResponse(
            gettext("Invalid filters: %(problems)s") % {"problems": problems},
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    return user, form.as_filters()


def _report(request: HttpRequest) -> tuple[dict[str, Any], str] | HttpResponse:
    from django.urls import reverse

    from dashboard import report

    parsed = _report_request(request)
    if isinstance(parsed, HttpResponse):
        return parsed
    user, filters = parsed
    context = report.report_context(user, filters, _describe(filters, user))
    query = f"?{request.GET.urlencode()}" if request.GET else ""
    links = {
        "pdf": reverse("dashboard:report_pdf") + query,
        "dashboard": reverse("dashboard:index") + query,
        "figures": {name: reverse("dashboard:report_figure", args=[name]) + query for name in report.FIGURES},
        "tables": {name: reverse("dashboard:report_table", args=[name]) + query for name in report.TABLES},
    }
    return context, report.render_html(context, links)


@analysis_required
@reporting_view
def report_html(request: HttpRequest) -> HttpResponse:
    made = _report(request)
    return made if isinstance(made, HttpResponse) else HttpResponse(made[1])


@analysis_required
@reporting_view
def report_pdf(request: HttpRequest) -> HttpResponse:
    from dashboard import report

    made = _report(request)
    if isinstance(made, HttpResponse):
        return made
    response = HttpResponse(report.render_pdf(made[1]), content_type="application/pdf")
    response["Content-Disposition"] = 'attachment; filename="registry_report.pdf"'
    return response


@analysis_required
@reporting_view
def report_figure(request: HttpRequest, name: str) -> HttpResponse:
    from dashboard import report

    made = _report(request)
    if isinstance(made, HttpResponse):
        return made
    if name not in report.FIGURES:
        return HttpResponse(
            gettext("No figure %(name)s.") % {"name": name}, status=404, content_type="text/plain; charset=utf-8"
        )
    response = HttpResponse(made[0]["figures"][name], content_type="image/svg+xml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="figure_{name}.svg"'
    return response


@analysis_required
@reporting_view
def report_table(request: HttpRequest, name: str) -> HttpResponse:
    from dashboard import report

    made = _report(request)
    if isinstance(made, HttpResponse):
        return made
    if name not in report.TABLES:
        return HttpResponse(
            gettext("No table %(name)s.") % {"name": name}, status=404, content_type="text/plain; charset=utf-8"
        )
    response = HttpResponse(report.table_csv(made[0]["tables"][name]), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="table_{name}.csv"'
    return response
