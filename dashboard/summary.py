"""The registry summary (shared/crf/summary.md) and the page's chart data, from the cohort's columns.

`selectors.cohort_columns` reads one row per analysed patient as numpy
columns; this module selects the complete pairs, categories and intervals with
vectorised numpy and hands the value arrays to `dashboard.stats`. Thresholds,
ties and equal differences are decided on integers (VAS in tenths, ODI in
1/126 points). The page, `summary.json` and `manage.py registry_summary` all
call `build_summary` on the same columns.
"""

import datetime
import platform
import re
from collections import Counter
from typing import Any

import numpy
import numpy as np
import scipy
from django.conf import settings
from django.utils.translation import gettext, gettext_lazy, ngettext

from accounts.models import User
from dashboard import stats
from dashboard.selectors import (
    APPROACHES,
    COMPLICATION_TYPES,
    LEAK_SITES,
    LEVEL_CODES,
    NONE,
    ODI_UNITS,
    SEXES,
    TUMOURS,
    Cohort,
    cohort_columns,
)
from outcomes.models import Timepoint
from procedures.models import Complication, Procedure
from registry.measures import statistic_decimals
from registry.scoring import DAYS_PER_MONTH

MEASURES = ("vas", "odi", "opioid_count", "mme_per_day")
COLUMN = {"vas": "vas10", "odi": "odiu", "opioid_count": "opioids", "mme_per_day": "mme"}
FOLLOWUP_TIMEPOINTS = [tp for tp in Timepoint.values if tp != Timepoint.BASELINE]


def registry_summary(user: User | None, filters: dict[str, Any]) -> dict[str, Any]:
    """The summary for `user`'s sites (None = study-wide); `filters` as CohortFilterForm.as_filters() gives them."""
    return build_summary(cohort_columns(user, filters), filters)


def _raw(cohort: Cohort, measure: str, timepoint: str) -> tuple[np.ndarray, np.ndarray]:
    """(values as stored units, present?) of one measure at one timepoint."""
    values = cohort[f"{COLUMN[measure]}_{timepoint}"]
    present = ~np.isnan(values) if measure == "mme_per_day" else values != NONE
    return values, present


def _as_float(measure: str, values: np.ndarray) -> np.ndarray:
    if measure == "vas":
        return values / 10.0
    if measure == "odi":
        return values / float(ODI_UNITS)
    return values.astype(float)


def paired(cohort: Cohort, measure: str, timepoint: str) -> tuple[np.ndarray, np.ndarray]:
    """(baseline, follow-up) in stored units over the patients who have both (complete cases);
    computed once per cohort (the comparisons, responders and opioid changes share them)."""

    def compute() -> tuple[np.ndarray, np.ndarray]:
        base, has_base = _raw(cohort, measure, "baseline")
        follow, has_follow = _raw(cohort, measure, timepoint)
        both = has_base & has_follow
        return base[both], follow[both]

    return cohort.memo(f"paired:{measure}:{timepoint}", compute)  # type: ignore[no-any-return]


def _comparison(cohort: Cohort, measure: str, timepoint: str) -> stats.PairedComparison:
    base, follow = paired(cohort, measure, timepoint)
    exact = None if measure == "mme_per_day" else follow - base  # integers: exact differences
    return stats.paired_comparison(_as_float(measure, base), _as_float(measure, follow), exact)


def build_summary(cohort: Cohort, filters: dict[str, Any], now: datetime.datetime | None = None) -> dict[str, Any]:
    now = now or datetime.datetime.now(datetime.UTC)
    return {
        "generated_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "filters": dict(filters),
        "cohort": {
            "patients": len(cohort),
            "excluded_withdrawn": cohort.excluded_withdrawn,
            "awaiting_consent": cohort.awaiting_consent,
            "procedures": int(cohort["procedures"].sum()),
        },
        "table1": _table1(cohort),
        "outcomes": {
            measure: {tp: _comparison(cohort, measure, tp) for tp in FOLLOWUP_TIMEPOINTS} for measure in MEASURES
        },
        "responders": {
            tp: stats.responders_exact(*paired(cohort, "vas", tp), *paired(cohort, "odi", tp), ODI_UNITS)
            for tp in FOLLOWUP_TIMEPOINTS
        },
        "opioid_change": {tp: stats.opioid_change(*paired(cohort, "opioid_count", tp)) for tp in FOLLOWUP_TIMEPOINTS},
        "survival": stats.survival_summary(*survival_times(cohort)),
    }


def survival_times(cohort: Cohort) -> tuple[np.ndarray, np.ndarray]:
    """Days from the index procedure to death (event) or to the last date known alive (censored)."""
    index = cohort["has_index"] == 1
    return cohort["time_days"][index], cohort["event"][index] == 1


def _code_counts(codes: np.ndarray, labels: list[str]) -> dict[str, int]:
    """Occurrences per code (an index into `labels`), most frequent first; zero entries absent."""
    counts = np.bincount(codes[codes >= 0], minlength=len(labels))
    order = sorted((int(i) for i in np.nonzero(counts)[0]), key=lambda i: -counts[i])
    return {labels[i]: int(counts[i]) for i in order}


def _bit_counts(masks: np.ndarray, labels: list[str]) -> dict[str, int]:
    """Patients with each bit (label) set, most frequent first; zero entries absent."""
    counts = {label: int(np.count_nonzero(masks & (1 << i))) for i, label in enumerate(labels)}
    return {k: v for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v}


def _pattern(mask: int) -> str:
    return "|".join(code for i, code in enumerate(LEVEL_CODES) if mask & (1 << i))


def _table1(cohort: Cohort) -> dict[str, Any]:
    index = cohort["has_index"] == 1

    def of_index(name: str) -> np.ndarray:
        return cohort[name][index]

    masks = of_index("levels_mask")
    patterns, pattern_counts = np.unique(masks, return_counts=True)
    n_index = int(np.count_nonzero(index))
    lesions = sum(bin(int(m)).count("1") * int(c) for m, c in zip(patterns, pattern_counts, strict=True))
    return {
        "age": stats.descriptives(cohort["age"]),
        "sex": _code_counts(cohort["sex"], SEXES),
        "primary_tumour": _code_counts(cohort["tumour"], TUMOURS),
        "levels_pattern": {
            _pattern(int(m)): int(c)
            for m, c in sorted(zip(patterns, pattern_counts, strict=True), key=lambda mc: -mc[1])
        },
        "lesions_total": lesions,
        "technical_success": {"n": int(of_index("technical_success").sum()), "of": n_index},
        "operation_time_min": stats.descriptives(of_index("operation_time_min")),
        "cement_volume_ml": stats.descriptives(of_index("cement10") / 10.0),
        "hospital_stay_days": stats.descriptives(of_index("stay_days")),
        "imaging_to_procedure_days": stats.descriptives(of_index("imaging_days")),
        "symptoms_to_procedure_months": stats.descriptives(of_index("symptom_days") / DAYS_PER_MONTH),
        "leakage": {
            "patients": int(of_index("leakage").sum()),
            "of": n_index,
            "by_site": _bit_counts(of_index("leak_mask"), LEAK_SITES),
            "symptomatic": int(of_index("leak_symptomatic").sum()),
        },
        "complications": {
            "major": int(of_index("major").sum()),
            "minor": int(of_index("minor").sum()),
            "by_type": _bit_counts(of_index("complication_mask"), COMPLICATION_TYPES),
        },
    }


# The page: chart data and the methods paragraph (not part of the summary shape).


def chart_data(cohort: Cohort, vas_lines: list[tuple[str, dict[str, float]]], lines_total: int) -> dict[str, Any]:
    """Per-timepoint mean ± SD, the first patients' VAS lines, opioid counts, leakage by approach, survival."""
    timepoints = [tp for tp in Timepoint.values if _raw(cohort, "vas", tp)[1].any()]
    labels = timepoint_labels()
    return {
        "timepoints": [{"code": tp, "label": labels[tp]} for tp in timepoints],
        "course": {measure: [_course_point(cohort, measure, tp) for tp in timepoints] for measure in ("vas", "odi")},
        "spaghetti": [{"label": sid, "vas": [vas.get(tp) for tp in timepoints]} for sid, vas in vas_lines],
        "spaghetti_total": lines_total,
        "opioids": _opioid_distribution(cohort),
        "leakage_by_approach": _leakage_by_approach(cohort),
        "survival": survival_curve(cohort),
    }


def _axis_step(last_day: int) -> int:
    """Days between ticks of the survival axis: months for a short follow-up, quarters, then half years."""
    return 30 if last_day <= 180 else 91 if last_day <= 730 else 182


def survival_curve(cohort: Cohort) -> dict[str, Any]:
    """The Kaplan-Meier curve as steps from (0, 1), censoring marks and the number at risk per axis tick."""
    times, events = survival_times(cohort)
    steps = stats.kaplan_meier(times, events, exact=False)  # drawn: floats suffice
    last_day = int(times.max()) if len(times) else 0
    step = _axis_step(last_day)
    ticks = list(range(0, last_day + step, step))
    step_days = np.asarray([s["days"] for s in steps], dtype=np.int64)
    step_survival = [s["survival"] for s in steps]

    def s_at(day: int) -> float:
        i = int(np.searchsorted(step_days, day, side="right"))
        return step_survival[i - 1] if i else 1.0

    censored = np.unique(times[~events]).tolist()
    return {
        "steps": [{"days": 0, "survival": 1.0, "low": 1.0, "high": 1.0}]
        + [{"days": s["days"], "survival": s["survival"], "low": s["ci95"][0], "high": s["ci95"][1]} for s in steps],
        "last_day": last_day,
        "censored": [{"days": t, "survival": s_at(t)} for t in censored],
        "ticks": [{"days": d, "at_risk": n} for d, n in zip(ticks, stats.at_risk_on(times, ticks), strict=True)],
    }


def _course_point(cohort: Cohort, measure: str, timepoint: str) -> dict[str, Any]:
    values, present = _raw(cohort, measure, timepoint)
    d = stats.descriptives(_as_float(measure, values[present]))
    return {"n": d["n"], "mean": d["mean"], "sd": d["sd"]}


def _opioid_distribution(cohort: Cohort) -> dict[str, Any]:
    """Patients by number of opioids, at baseline and post-procedure (the paper's comparison)."""
    counts = {}
    for tp in ("baseline", "post"):
        values, present = _raw(cohort, "opioid_count", tp)
        counts[tp] = np.bincount(values[present]) if present.any() else np.zeros(0, dtype=np.int64)
    top = max((len(c) for c in counts.values()), default=0)
    return {
        "counts": list(range(top)) if top else [0],
        "baseline": [int(counts["baseline"][k]) if k < len(counts["baseline"]) else 0 for k in range(max(top, 1))],
        "post": [int(counts["post"][k]) if k < len(counts["post"]) else 0 for k in range(max(top, 1))],
    }


def _leakage_by_approach(cohort: Cohort) -> list[dict[str, Any]]:
    labels = dict(Procedure.Approach.choices)
    index = cohort["has_index"] == 1
    approach, leaked = cohort["approach"][index], cohort["leakage"][index] == 1
    rows = []
    for code in sorted(set(np.unique(approach).tolist()) - {NONE}, key=lambda i: APPROACHES[i]):
        mine = approach == code
        n, patients = int(np.count_nonzero(mine)), int(np.count_nonzero(leaked & mine))
        rows.append(
            {
                "approach": labels.get(APPROACHES[code], APPROACHES[code]),
                "patients": patients,
                "of": n,
                "rate": 100 * patients / n,
            }
        )
    return rows


def complication_grades(rows: list[tuple[str, str, int, int, int]]) -> list[dict[str, Any]]:
    """Index-procedure complications by type: patients, severity, and events per CIRSE grade
    (from `selectors.complication_rows`)."""
    labels, severities = dict(Complication.Type.choices), dict(Complication.Severity.choices)
    per: dict[str, dict[str, Any]] = {}
    for code, severity, grade, events, patients in rows:
        entry = per.setdefault(code, {"patients": patients, "severity": severity, "grades": Counter()})
        entry["grades"][grade] += events
    return [
        {
            "type": labels.get(code, code),
            "severity": entry["severity"],
            "severity_label": severities.get(entry["severity"], entry["severity"]),
            "patients": entry["patients"],
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
            # xgettext:no-python-format
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
    # (registry.measures: the one number rule; opioid counts' medians are whole, as the paper prints them)
    "vas": (gettext_lazy("VAS pain (0-10)"), statistic_decimals("vas"), statistic_decimals("vas")),
    "odi": (gettext_lazy("ODI (%)"), statistic_decimals("odi"), statistic_decimals("odi")),
    "opioid_count": (gettext_lazy("Number of opioids"), statistic_decimals("opioid_count"), 0),
    "mme_per_day": (gettext_lazy("Oral MME/day"), statistic_decimals("mme_per_day"), statistic_decimals("mme_per_day")),
}

# "3 months (75-105 days)" -> "3 months"; the Chinese labels use full-width brackets.
WINDOW = re.compile(r"\s*[(（]")


def _short(label: object) -> str:
    return WINDOW.split(str(label), maxsplit=1)[0]


def outcome_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One display row per measure and follow-up time point that has paired data."""
    labels = timepoint_labels()
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
    """Time points without their windows, in the active language."""
    return {tp: _short(label) for tp, label in Timepoint.choices}


def headline_timepoint(summary: dict[str, Any]) -> str | None:
    """The earliest follow-up with paired VAS (the paper's 'after PSP'), for the key results."""
    return next((tp for tp, block in summary["outcomes"]["vas"].items() if block["n"]), None)
