"""The publication report: the dashboard's numbers as one HTML page and one PDF.

Table 1, the outcomes table, responders, opioid change, leakage and
complications, the survival table, Figure 4 of the source study redrawn (VAS,
ODI and number of opioids before and after the procedure, one line per patient
and the mean ± SD) and the Kaplan-Meier curve, all as SVG built here (vector
graphics in the HTML, the PDF and the separate downloads), the methods
paragraph, and a footer naming the registry version, the time the data were
read, the filters and the SHA-256 of the analysed data.

The analysed data's SHA-256 (`data_sha256`): the summary is a function of the
cohort's columns (`dashboard.selectors.cohort_columns`: one row per analysed
patient, the values every statistic is computed from). Each row becomes a JSON
object {column: value} (integers as integers, the missing-integer marker -1 as
it is, a missing float as null, other floats with Python's repr); the rows are
sorted by their own canonical text (the query returns them in no fixed order);
the list is serialised as JSON with sorted keys, "," and ":" separators and
ASCII only, encoded UTF-8, and hashed. The same data under the same filters
give the same hash; any changed value, added or removed patient changes it.
"""

import csv
import datetime
import hashlib
import io
import json
import math
from typing import Any

import numpy as np
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.functional import Promise
from django.utils.html import escape
from django.utils.translation import gettext as _

from accounts.models import User
from dashboard.selectors import ODI_UNITS, Cohort, cohort_columns, complication_rows, vas_lines
from dashboard.summary import (
    build_summary,
    chart_data,
    complication_grades,
    headline_timepoint,
    methods_paragraph,
    outcome_rows,
    paired,
    timepoint_labels,
)
from patients.models import Patient
from procedures.models import Leakage, Procedure

FIGURES = ("vas", "odi", "opioids", "survival")
TABLES = ("table1", "outcomes", "responders", "opioid_change", "leakage", "complications", "survival")


def canonical_rows(cohort: Cohort) -> list[dict[str, Any]]:
    names = cohort.columns.dtype.names or ()
    rows = []
    for record in cohort.columns:
        row: dict[str, Any] = {}
        for name in names:
            value = record[name].item()
            row[name] = None if isinstance(value, float) and math.isnan(value) else value
        rows.append(row)
    return rows


def data_sha256(cohort: Cohort) -> str:
    """SHA-256 of the analysed data (module docstring)."""
    rows = [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in canonical_rows(cohort)]
    rows.sort()
    return hashlib.sha256(("[" + ",".join(rows) + "]").encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- figures (SVG)

W, H = 300, 260
# Noto Sans CJK (Debian's fonts-noto-cjk) draws the Chinese labels. It comes first in Chinese: the SVG
# text's fallback for a glyph DejaVu Sans lacks would otherwise take the Japanese forms of the same font.
FONT_FAMILY = "DejaVu Sans, Noto Sans CJK SC, sans-serif"
FONT_FAMILY_ZH = "Noto Sans CJK SC, DejaVu Sans, sans-serif"
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 28, 40


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    font = FONT_FAMILY_ZH if (translation.get_language() or "").startswith("zh") else FONT_FAMILY
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" font-family="{font}" font-size="10">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "middle", size: int = 10, weight: str = "normal") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'font-weight="{weight}">{escape(text)}</text>'
    )


def _nice_max(value: float) -> float:
    for top in (1, 2, 3, 4, 5, 6, 8, 10, 20, 25, 40, 50, 100):
        if value <= top:
            return float(top)
    return float(math.ceil(value / 100) * 100)


def before_after_svg(
    title: str, axis: str, before: np.ndarray, after: np.ndarray, labels: tuple[str, str], top: float
) -> str:
    """Figure 4 style: each patient's value before and after (thin lines), the mean ± SD (thick)."""
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    xs = (LEFT + plot_w * 0.25, LEFT + plot_w * 0.75)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / top)

    body = [_text(W / 2, 16, title, size=12, weight="bold")]
    body.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="#000"/>')
    body.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{W - RIGHT}" y2="{TOP + plot_h}" stroke="#000"/>')
    ticks = int(top) if top <= 6 else 5  # whole numbers for a count of opioids
    for i in range(ticks + 1):
        v = top * i / ticks
        body.append(f'<line x1="{LEFT - 4}" y1="{y(v):.1f}" x2="{LEFT}" y2="{y(v):.1f}" stroke="#000"/>')
        body.append(_text(LEFT - 6, y(v) + 3, f"{v:g}", anchor="end"))
    body.append(
        f'<text transform="translate(12 {TOP + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">{escape(axis)}</text>'
    )
    for x, label in zip(xs, labels, strict=True):
        body.append(_text(x, TOP + plot_h + 16, label))
    body.append('<g class="patients" stroke="#888" stroke-width="0.8" fill="#888">')
    for b, a in zip(before.tolist(), after.tolist(), strict=True):
        body.append(f'<line x1="{xs[0]:.1f}" y1="{y(b):.1f}" x2="{xs[1]:.1f}" y2="{y(a):.1f}"/>')
        body.append(
            f'<circle cx="{xs[0]:.1f}" cy="{y(b):.1f}" r="1.8"/><circle cx="{xs[1]:.1f}" cy="{y(a):.1f}" r="1.8"/>'
        )
    body.append("</g>")
    if len(before):
        means = (float(before.mean()), float(after.mean()))
        sds = tuple(float(v.std(ddof=1)) if len(v) > 1 else 0.0 for v in (before, after))
        body.append('<g class="mean" stroke="#000" stroke-width="2.2" fill="#000">')
        body.append(f'<line x1="{xs[0]:.1f}" y1="{y(means[0]):.1f}" x2="{xs[1]:.1f}" y2="{y(means[1]):.1f}"/>')
        for x, m, sd in zip(xs, means, sds, strict=True):
            low, high = max(m - sd, 0), min(m + sd, top)
            body.append(f'<line x1="{x - 8:.1f}" y1="{y(m):.1f}" x2="{x + 8:.1f}" y2="{y(m):.1f}"/>')
            body.append(f'<line x1="{x:.1f}" y1="{y(low):.1f}" x2="{x:.1f}" y2="{y(high):.1f}" stroke-width="1.2"/>')
        body.append("</g>")
        body.append(_text(xs[0] - 12, y(means[0]) + 3, f"{means[0]:.2f}", anchor="end", weight="bold"))
        body.append(_text(xs[1] + 12, y(means[1]) + 3, f"{means[1]:.2f}", anchor="start", weight="bold"))
    body.append(
        _text(W / 2, H - 6, _("n = %(n)d; thin lines: patients; thick: mean ± SD") % {"n": len(before)}, size=8)
    )
    return _svg(W, H, title, body)


def survival_svg(curve: dict[str, Any]) -> str:
    """Kaplan-Meier steps with the 95% band (dashed), censoring ticks, and the number at risk under the axis."""
    width, height = 560, 300
    left, right, top, plot_h = 56, 20, 24, 190
    plot_w = width - left - right
    last = max(curve["ticks"][-1]["days"] if curve["ticks"] else 1, 1)

    def x(d: float) -> float:
        return left + plot_w * d / last

    def y(s: float) -> float:
        return top + plot_h * (1 - s)

    title = _("Kaplan–Meier curve of overall survival")
    body = [_text(width / 2, 14, title, size=12, weight="bold")]
    body.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#000"/>')
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#000"/>')
    for i in range(6):
        s = i / 5
        body.append(f'<line x1="{left - 4}" y1="{y(s):.1f}" x2="{left}" y2="{y(s):.1f}" stroke="#000"/>')
        body.append(_text(left - 6, y(s) + 3, f"{s:.1f}", anchor="end"))
    body.append(
        f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
        f"{escape(_('Proportion surviving'))}</text>"
    )
    steps = curve["steps"]

    def path(key: str) -> str:
        points = [f"M{x(0):.1f},{y(steps[0][key]):.1f}"]
        for step in steps[1:]:
            points.append(f"H{x(step['days']):.1f}V{y(step[key]):.1f}")
        points.append(f"H{x(curve['last_day']):.1f}")
        return "".join(points)

    body.append(f'<path class="ci" d="{path("low")}" fill="none" stroke="#666" stroke-dasharray="3,2"/>')
    body.append(f'<path class="ci" d="{path("high")}" fill="none" stroke="#666" stroke-dasharray="3,2"/>')
    body.append(f'<path class="km" d="{path("survival")}" fill="none" stroke="#000" stroke-width="1.8"/>')
    for mark in curve["censored"]:
        cx, cy = x(mark["days"]), y(mark["survival"])
        body.append(
            f'<line class="censor" x1="{cx:.1f}" y1="{cy - 4:.1f}" x2="{cx:.1f}" y2="{cy + 4:.1f}" stroke="#000"/>'
        )
    axis_y = top + plot_h
    for tick in curve["ticks"]:
        tx = x(tick["days"])
        body.append(f'<line x1="{tx:.1f}" y1="{axis_y}" x2="{tx:.1f}" y2="{axis_y + 4}" stroke="#000"/>')
        body.append(_text(tx, axis_y + 15, str(tick["days"])))
        body.append(_text(tx, axis_y + 50, str(tick["at_risk"])))
    body.append(_text(left + plot_w / 2, axis_y + 30, _("Days since the index procedure")))
    body.append(_text(left - 6, axis_y + 50, _("At risk"), anchor="end"))
    body.append(_text(width - right, 28, _("dashed: 95% CI; ticks: censored"), anchor="end", size=8))
    return _svg(width, height, title, body)


def figures(cohort: Cohort, summary: dict[str, Any], charts: dict[str, Any]) -> dict[str, str]:
    tp = headline_timepoint(summary) or "post"
    after = timepoint_labels()[tp]
    labels = (_("Before"), _("After (%(timepoint)s)") % {"timepoint": after.lower()})
    # stored units (VAS in tenths, ODI in 1/126 points: dashboard.selectors) to the scales' own
    vas = tuple(v / 10.0 for v in paired(cohort, "vas", tp))
    odi = tuple(v / float(ODI_UNITS) for v in paired(cohort, "odi", tp))
    opioids = tuple(v.astype(float) for v in paired(cohort, "opioid_count", tp))
    opioid_top = _nice_max(float(max(opioids[0].max(initial=0), opioids[1].max(initial=0), 1)))
    return {
        "vas": before_after_svg(_("VAS pain"), _("VAS (0-10)"), *vas, labels, 10),
        "odi": before_after_svg(_("Oswestry Disability Index"), _("ODI (%)"), *odi, labels, 100),
        "opioids": before_after_svg(_("Number of opioids"), _("Opioids"), *opioids, labels, opioid_top),
        "survival": survival_svg(charts["survival"]),
    }


# ----------------------------------------------------------------------------- tables (CSV)


def _r(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{value:.{decimals}f}"


def tables(summary: dict[str, Any], complications: list[dict[str, Any]]) -> dict[str, list[list[Any]]]:
    """Each table of the report as rows (header first), full precision, for the CSV downloads."""
    t1 = summary["table1"]
    tumours, leak_sites = dict(Patient.PrimaryTumour.choices), dict(Leakage.Site.choices)
    table1: list[list[Any]] = [["characteristic", "n", "mean", "sd", "min", "max", "count", "of"]]
    n = summary["cohort"]["patients"]
    for key in (
        "age",
        "operation_time_min",
        "cement_volume_ml",
        "hospital_stay_days",
        "imaging_to_procedure_days",
        "symptoms_to_procedure_months",
    ):
        b = t1[key]
        table1.append([key, b["n"], b["mean"], b["sd"], b["min"], b["max"], "", ""])
    for code, count in t1["sex"].items():
        table1.append([f"sex: {code}", "", "", "", "", "", count, n])
    for code, count in t1["primary_tumour"].items():
        table1.append([f"primary tumour: {tumours.get(code, code)}", "", "", "", "", "", count, n])
    for pattern, count in t1["levels_pattern"].items():
        table1.append([f"levels treated: {pattern}", "", "", "", "", "", count, t1["technical_success"]["of"]])
    table1.append(["lesions treated", "", "", "", "", "", t1["lesions_total"], ""])
    table1.append(
        ["technical success", "", "", "", "", "", t1["technical_success"]["n"], t1["technical_success"]["of"]]
    )
    outcomes = [["measure", "timepoint", "n", "baseline_mean", "baseline_sd", "baseline_median", "baseline_q1",
                 "baseline_q3", "followup_mean", "followup_sd", "followup_median", "followup_q1", "followup_q3",
                 "diff_mean", "diff_ci95_low", "diff_ci95_high", "p_ttest", "p_wilcoxon"]]  # fmt: skip
    for measure, blocks in summary["outcomes"].items():
        for tp, b in blocks.items():
            if b["n"]:
                ci = b["diff"]["ci95"] or [None, None]
                outcomes.append(
                    [measure, tp, b["n"]]
                    + [b["baseline"][k] for k in ("mean", "sd", "median", "q1", "q3")]
                    + [b["followup"][k] for k in ("mean", "sd", "median", "q1", "q3")]
                    + [b["diff"]["mean"], ci[0], ci[1], b["p_ttest"], b["p_wilcoxon"]]
                )
    responders = [["timepoint", "vas_drop_ge_3", "vas_drop_ge_30pct", "vas_of", "odi_drop_ge_10", "odi_of"]]
    for tp, r in summary["responders"].items():
        if r["vas_of"] or r["odi_of"]:
            responders.append(
                [tp, r["vas_drop_ge_3"], r["vas_drop_ge_30pct"], r["vas_of"], r["odi_drop_ge_10"], r["odi_of"]]
            )
    opioid = [["timepoint", "stopped", "decreased", "unchanged", "increased", "of"]]
    for tp, c in summary["opioid_change"].items():
        if c["of"]:
            opioid.append([tp, c["stopped"], c["decreased"], c["unchanged"], c["increased"], c["of"]])
    leak = t1["leakage"]
    leakage = [["leakage", "patients", "of"], ["any", leak["patients"], leak["of"]]]
    leakage += [[leak_sites.get(code, code), count, leak["of"]] for code, count in leak["by_site"].items()]
    leakage.append(["symptomatic", leak["symptomatic"], leak["of"]])
    comp = [["complication", "severity", "patients", "events_by_cirse_grade"]]
    comp += [
        [c["type"], c["severity"], c["patients"], "; ".join(f"{g}:{e}" for g, e in c["grades"])] for c in complications
    ]
    comp.append(["any major", "major", t1["complications"]["major"], ""])
    comp.append(["any minor", "minor", t1["complications"]["minor"], ""])
    sv = summary["survival"]
    survival = [["time", "days", "survival", "ci95_low", "ci95_high", "at_risk"]]
    for key, at in sv["at"].items():
        ci = at["ci95"] or [None, None]
        survival.append([key, at["days"], at["survival"], ci[0], ci[1], at["at_risk"]])
    mci = sv["median_ci95"] or [None, None]
    survival.append(["median", sv["median_days"], "", mci[0], mci[1], ""])
    survival.append(["patients/deaths/censored", sv["n"], sv["deaths"], sv["censored"], "", ""])
    return {
        "table1": table1,
        "outcomes": outcomes,
        "responders": responders,
        "opioid_change": opioid,
        "leakage": leakage,
        "complications": comp,
        "survival": survival,
    }


def _english_tables(summary: dict[str, Any], complications: list[dict[str, Any]]) -> dict[str, list[list[Any]]]:
    """The CSV tables are files: the same English labels and codes whatever the reader's language."""
    with translation.override("en"):
        made = tables(summary, complications)
        return {
            name: [[str(v) if isinstance(v, Promise) else v for v in row] for row in rows]
            for name, rows in made.items()
        }


def table_csv(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue().encode("utf-8")


# ----------------------------------------------------------------------------- the report


def report_context(user: User | None, filters: dict[str, Any], filter_text: str) -> dict[str, Any]:
    """Everything the report shows, read once (`user=None`: study-wide, the command)."""
    cohort = cohort_columns(user, filters)
    read_at = datetime.datetime.now(datetime.UTC)
    summary = build_summary(cohort, filters, now=read_at)
    lines, total = vas_lines(user, filters)
    charts = chart_data(cohort, lines, total)
    complications = complication_grades(complication_rows(user, filters))
    headline = headline_timepoint(summary)
    return {
        "summary": summary,
        "t1": summary["table1"],
        "outcome_rows": outcome_rows(summary),
        "timepoints": timepoint_labels(),
        "headline": headline and timepoint_labels()[headline],
        "complications": complications,
        "charts": charts,
        "figures": figures(cohort, summary, charts),
        "tables": _english_tables(summary, complications),
        "methods": methods_paragraph(summary, filter_text),
        "labels": {
            "tumour": dict(Patient.PrimaryTumour.choices),
            "leakage": dict(Leakage.Site.choices),
            "approach": dict(Procedure.Approach.choices),
        },
        "survival_labels": {"m3": _("3 months"), "m6": _("6 months"), "m12": _("12 months")},
        "table_labels": {
            "table1": _("Table 1"),
            "outcomes": _("Outcomes"),
            "responders": _("Responders"),
            "opioid_change": _("Opioid change"),
            "leakage": _("Leakage"),
            "complications": _("Complications"),
            "survival": _("Survival"),
        },
        "footer": {
            "registry_version": settings.REGISTRY_VERSION,
            "read_at": read_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "filters": filter_text,
            "sha256": data_sha256(cohort),
        },
    }


def render_html(context: dict[str, Any], links: dict[str, str] | None = None) -> str:
    return render_to_string("dashboard/report.html", {**context, "links": links or {}})


def render_pdf(html: str) -> bytes:
    from weasyprint import HTML

    return HTML(string=html).write_pdf()
