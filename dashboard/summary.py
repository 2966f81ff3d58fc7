"""The registry summary (shared/crf/summary.md) and the page's chart data, from cohort rows.

`selectors.cohort_rows` pulls the rows; this module turns them into value
lists (intervals through `registry.scoring`, the one place for derived values)
and hands those to `dashboard.stats`. The page, `summary.json` and
`manage.py registry_summary` all call `registry_summary`.
"""

import datetime
import platform
from collections import Counter, defaultdict
from typing import Any

import numpy
import scipy
from django.conf import settings
from django.utils.translation import gettext, ngettext

from accounts.models import User
from dashboard import stats
from dashboard.selectors import CohortRows, Row, cohort_rows
from outcomes.models import Timepoint
from procedures.models import LEVELS, Complication, Procedure
from registry.scoring import days_between, months_between

MEASURES = ("vas", "odi", "opioid_count", "mme_per_day")
FIELD = {"vas": "vas", "odi": "odi_score", "opioid_count": "opioid_count", "mme_per_day": "mme_per_day"}
FOLLOWUP_TIMEPOINTS = [tp for tp in Timepoint.values if tp != Timepoint.BASELINE]
LEVEL_ORDER = [code for code, _ in LEVELS]


def registry_summary(user: User | None, filters: dict[str, Any]) -> dict[str, Any]:
    """The summary for `user`'s sites (None = study-wide); `filters` as CohortFilterForm.as_filters() gives them."""
    return build_summary(cohort_rows(user, filters), filters)


def build_summary(rows: CohortRows, filters: dict[str, Any], now: datetime.datetime | None = None) -> dict[str, Any]:
    now = now or datetime.datetime.now(datetime.UTC)
    visits = _visits_by_timepoint(rows.followups)
    return {
        "generated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "filters": dict(filters),
        "cohort": {
            "patients": len(rows.patients),
            "excluded_withdrawn": rows.excluded_withdrawn,
            "awaiting_consent": rows.awaiting_consent,
            "procedures": len(rows.procedures),
        },
        "table1": _table1(rows),
        "outcomes": {
            measure: {tp: stats.paired_comparison(*_pairs(visits, measure, tp)) for tp in FOLLOWUP_TIMEPOINTS}
            for measure in MEASURES
        },
        "responders": {
            tp: stats.responders(*_pairs(visits, "vas", tp), *_pairs(visits, "odi", tp)) for tp in FOLLOWUP_TIMEPOINTS
        },
        "opioid_change": {
            tp: stats.opioid_change(*_pairs(visits, "opioid_count", tp))  # type: ignore[arg-type]
            for tp in FOLLOWUP_TIMEPOINTS
        },
        "survival": stats.survival_summary(*survival_times(rows)),
    }


def survival_times(rows: CohortRows) -> tuple[list[int], list[bool]]:
    """Days from the index procedure to death (event) or to the last date known alive (censored)."""
    times, events = [], []
    for index_date, death_date, last_alive in rows.survival_dates():
        times.append(days_between(index_date, death_date or last_alive))
        events.append(death_date is not None)
    return times, events


def _visits_by_timepoint(followups: list[Row]) -> dict[str, dict[int, Row]]:
    visits: dict[str, dict[int, Row]] = defaultdict(dict)
    for visit in followups:
        visits[visit["timepoint"]][visit["patient_id"]] = visit
    return visits


def _values(visits: dict[str, dict[int, Row]], measure: str, timepoint: str) -> dict[int, Any]:
    return {pid: v[FIELD[measure]] for pid, v in visits.get(timepoint, {}).items()}


def _pairs(visits: dict[str, dict[int, Row]], measure: str, timepoint: str) -> tuple[list[Any], list[Any]]:
    return stats.complete_pairs(_values(visits, measure, "baseline"), _values(visits, measure, timepoint))


def _levels_pattern(levels: str) -> str:
    codes = [c for c in levels.split("|") if c]
    return "|".join(sorted(codes, key=LEVEL_ORDER.index))


def _patients_with(rows: list[Row], key: str) -> dict[str, int]:
    """Patients having at least one row of each `key` value."""
    return stats.count_map(value for _, value in {(r["patient_id"], r[key]) for r in rows})


def _table1(rows: CohortRows) -> dict[str, Any]:
    index = rows.index_procedures
    by_patient = {p["id"]: p for p in rows.patients}
    procs = list(index.values())
    major_minor = Counter(sev for _, sev in {(c["patient_id"], c["severity"]) for c in rows.complications})
    return {
        "age": stats.descriptives([p["age_at_enrolment"] for p in rows.patients]),
        "sex": stats.count_map(p["sex"] for p in rows.patients),
        "primary_tumour": stats.count_map(p["primary_tumour"] for p in rows.patients),
        "levels_pattern": stats.count_map(_levels_pattern(p["levels_treated"]) for p in procs),
        "lesions_total": sum(len(_levels_pattern(p["levels_treated"]).split("|")) for p in procs),
        "technical_success": {"n": sum(bool(p["technical_success"]) for p in procs), "of": len(procs)},
        "operation_time_min": stats.descriptives([p["operation_time_min"] for p in procs]),
        "cement_volume_ml": stats.descriptives([p["cement_volume_ml"] for p in procs]),
        "hospital_stay_days": stats.descriptives(
            [days_between(p["admission_date"], p["discharge_date"]) for p in procs]
        ),
        "imaging_to_procedure_days": stats.descriptives(
            [days_between(by_patient[p["patient_id"]]["imaging_date"], p["procedure_date"]) for p in procs]
        ),
        "symptoms_to_procedure_months": stats.descriptives(
            [months_between(by_patient[p["patient_id"]]["symptom_onset_date"], p["procedure_date"]) for p in procs]
        ),
        "leakage": {
            "patients": sum(bool(p["leakage"]) for p in procs),
            "of": len(procs),
            "by_site": _patients_with(rows.leakages, "site"),
            "symptomatic": len({r["patient_id"] for r in rows.leakages if r["symptomatic"]}),
        },
        "complications": {
            "major": major_minor["major"],
            "minor": major_minor["minor"],
            "by_type": _patients_with(rows.complications, "type"),
        },
    }


# The page: chart data and the methods paragraph (not part of the summary shape).


def chart_data(rows: CohortRows) -> dict[str, Any]:
    """Per-timepoint mean ± SD, each patient's VAS line, opioid counts, leakage by approach."""
    visits = _visits_by_timepoint(rows.followups)
    timepoints = [tp for tp in Timepoint.values if visits.get(tp)]
    labels = {tp: str(label).split(" (")[0] for tp, label in Timepoint.choices}
    return {
        "timepoints": [{"code": tp, "label": labels[tp]} for tp in timepoints],
        "course": {measure: [_course_point(visits, measure, tp) for tp in timepoints] for measure in ("vas", "odi")},
        "spaghetti": [
            {
                "label": p["study_id"],
                "vas": [visits.get(tp, {}).get(p["id"], {}).get("vas") for tp in timepoints],
            }
            for p in rows.patients
            if any(p["id"] in visits.get(tp, {}) for tp in timepoints)
        ],
        "opioids": _opioid_distribution(visits),
        "leakage_by_approach": _leakage_by_approach(rows),
        "survival": survival_curve(rows),
    }


def _axis_step(last_day: int) -> int:
    """Days between ticks of the survival axis: months for a short follow-up, quarters, then half years."""
    return 30 if last_day <= 180 else 91 if last_day <= 730 else 182


def survival_curve(rows: CohortRows) -> dict[str, Any]:
    """The Kaplan-Meier curve as steps from (0, 1), censoring marks and the number at risk per axis tick."""
    times, events = survival_times(rows)
    steps = stats.kaplan_meier(times, events)
    last_day = max(times, default=0)
    step = _axis_step(last_day)
    ticks = list(range(0, last_day + step, step))
    survival_at = [(s["days"], s["survival"]) for s in steps]

    def s_at(day: int) -> float:
        return next((s for d, s in reversed(survival_at) if d <= day), 1.0)

    censored = sorted({t for t, e in zip(times, events, strict=True) if not e})
    return {
        "steps": [{"days": 0, "survival": 1.0, "low": 1.0, "high": 1.0}]
        + [{"days": s["days"], "survival": s["survival"], "low": s["ci95"][0], "high": s["ci95"][1]} for s in steps],
        "last_day": last_day,
        "censored": [{"days": t, "survival": s_at(t)} for t in censored],
        "ticks": [{"days": d, "at_risk": n} for d, n in zip(ticks, stats.at_risk_on(times, ticks), strict=True)],
    }


def _course_point(visits: dict[str, dict[int, Row]], measure: str, timepoint: str) -> dict[str, Any]:
    values = [v for v in _values(visits, measure, timepoint).values() if v is not None]
    d = stats.descriptives(values)
    return {"n": d["n"], "mean": d["mean"], "sd": d["sd"]}


def _opioid_distribution(visits: dict[str, dict[int, Row]]) -> dict[str, Any]:
    """Patients by number of opioids, at baseline and post-procedure (the paper's comparison)."""
    counts = {tp: Counter(_values(visits, "opioid_count", tp).values()) for tp in ("baseline", "post")}
    for c in counts.values():
        c.pop(None, None)
    top = max((k for c in counts.values() for k in c), default=0)
    return {
        "counts": list(range(top + 1)),
        "baseline": [counts["baseline"][k] for k in range(top + 1)],
        "post": [counts["post"][k] for k in range(top + 1)],
    }


def _leakage_by_approach(rows: CohortRows) -> list[dict[str, Any]]:
    labels = dict(Procedure.Approach.choices)
    per: dict[str, list[bool]] = defaultdict(list)
    for proc in rows.index_procedures.values():
        per[proc["approach"]].append(bool(proc["leakage"]))
    return [
        {
            "approach": labels.get(code, code),
            "patients": sum(flags),
            "of": len(flags),
            "rate": 100 * sum(flags) / len(flags),
        }
        for code, flags in sorted(per.items())
    ]


def complication_grades(rows: CohortRows) -> list[dict[str, Any]]:
    """Index-procedure complications by type: patients, severity, and events per CIRSE grade."""
    labels = dict(Complication.Type.choices)
    per: dict[str, dict[str, Any]] = {}
    for c in rows.complications:
        entry = per.setdefault(c["type"], {"patients": set(), "severity": c["severity"], "grades": Counter()})
        entry["patients"].add(c["patient_id"])
        entry["grades"][c["cirse_grade"]] += 1
    return [
        {
            "type": labels.get(code, code),
            "severity": entry["severity"],
            "patients": len(entry["patients"]),
            "grades": sorted(entry["grades"].items()),
        }
        for code, entry in sorted(per.items())
    ]


def software_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "registry": settings.REGISTRY_VERSION,
    }


def methods_paragraph(summary: dict[str, Any], filter_text: str) -> str:
    """A methods section for a manuscript, describing what the page computed (translation-ready)."""
    v = software_versions()
    n = summary["cohort"]["patients"]
    excluded = summary["cohort"]["excluded_withdrawn"]
    awaiting = summary["cohort"]["awaiting_consent"]
    parts = [
        ngettext(
            "We analysed %(n)d patient from the percutaneous sacroplasty registry (%(filters)s).",
            "We analysed %(n)d patients from the percutaneous sacroplasty registry (%(filters)s).",
            n,
        )
        % {"n": n, "filters": filter_text}
    ]
    if excluded:
        parts.append(
            ngettext(
                "%(n)d patient who withdrew consent with removal of data was excluded.",
                "%(n)d patients who withdrew consent with removal of data were excluded.",
                excluded,
            )
            % {"n": excluded}
        )
    if awaiting:
        parts.append(
            ngettext(
                "%(n)d patient without a registry-use consent in force was not analysed.",
                "%(n)d patients without a registry-use consent in force were not analysed.",
                awaiting,
            )
            % {"n": awaiting}
        )
    parts.append(
        gettext(
            "Continuous variables are reported as mean ± standard deviation (sample SD) "
            "and as median with interquartile range (quartiles by the weighted-average definition used by SPSS); "
            "categorical variables as counts and percentages. Each follow-up time point was compared with baseline "
            "over the patients with both values (complete cases; no imputation or last observation carried forward) "
            "using the paired t test, with the 95% confidence interval of the mean difference from the t "
            "distribution and the effect size dz = t/√n, and the Wilcoxon signed-rank test (zero differences "
            "discarded, normal approximation with tie correction and without continuity correction). A clinically "
            "important pain response was a VAS decrease of at least 3 points (and, alternatively, at least 30% of "
            "baseline), over the patients with both VAS values; a disability response an ODI decrease of at least "
            "10 points, over the patients with both ODI scores. Overall survival was measured from the index "
            "procedure to death, censoring at the last date the patient was known alive, and estimated by the "
            "Kaplan-Meier method with 95% confidence intervals from Greenwood's variance on the log(-log) scale. "
            "Tests were two-sided."
        )
    )
    parts.append(
        gettext(
            "Analyses used Python %(python)s with NumPy %(numpy)s and SciPy %(scipy)s "
            "(sacroplasty registry version %(registry)s)."
        )
        % v
    )
    return " ".join(parts)


MEASURE_DISPLAY = {
    # label, decimals for mean ± SD, decimals for median [IQR]
    "vas": ("VAS pain (0-10)", 2, 2),
    "odi": ("ODI (%)", 2, 2),
    "opioid_count": ("Number of opioids", 2, 0),
    "mme_per_day": ("Oral MME/day", 1, 1),
}


def outcome_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One display row per measure and follow-up time point that has paired data."""
    labels = {tp: str(label).split(" (")[0] for tp, label in Timepoint.choices}
    rows = []
    for measure, (label, decimals, iqr_decimals) in MEASURE_DISPLAY.items():
        for timepoint, block in summary["outcomes"][measure].items():
            if block["n"]:
                rows.append(
                    {
                        "measure": label,
                        "timepoint": labels[timepoint],
                        "block": block,
                        "dz": stats.effect_size_dz(block["t"], block["n"]),
                        "decimals": decimals,
                        "iqr_decimals": iqr_decimals,
                    }
                )
    return rows


def timepoint_labels() -> dict[str, str]:
    return {tp: str(label).split(" (")[0] for tp, label in Timepoint.choices}


def headline_timepoint(summary: dict[str, Any]) -> str | None:
    """The earliest follow-up with paired VAS (the paper's 'after PSP'), for the key results."""
    return next((tp for tp, block in summary["outcomes"]["vas"].items() if block["n"]), None)
