"""The registry's statistics, as the source study (SPSS 16) computed them.

Pure functions over plain Python/numpy values; nothing here imports Django, so
the page, the JSON endpoint and the management command share one
implementation (shapes and rules: shared/crf/summary.md).

Exactness: VAS is a one-decimal number and ODI a fraction of 100, so in floats
8.2 - 5.2 is 2.9999999999999996. Differences are rounded to `EXACT_DECIMALS`
before they are compared with a threshold or ranked for Wilcoxon, so that
they behave as exact arithmetic on the stored values (equal differences tie).
"""

import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TypedDict

import numpy as np
from scipy import stats as sps

EXACT_DECIMALS = 9

Number = float | int


class Descriptives(TypedDict):
    n: int
    mean: float | None
    sd: float | None
    min: Number | None
    max: Number | None


class Location(TypedDict):
    mean: float | None
    sd: float | None
    median: float | None
    q1: float | None
    q3: float | None


class Difference(TypedDict):
    mean: float | None
    sd: float | None
    ci95: list[float] | None


class PairedComparison(TypedDict):
    n: int
    baseline: Location
    followup: Location
    diff: Difference
    t: float | None
    p_ttest: float | None
    p_wilcoxon: float | None


class Responders(TypedDict):
    vas_drop_ge_3: int
    vas_drop_ge_30pct: int
    odi_drop_ge_10: int
    vas_of: int
    odi_of: int


class OpioidChange(TypedDict):
    stopped: int
    decreased: int
    unchanged: int
    increased: int
    of: int


def exact(value: float) -> float:
    """A difference or threshold as exact arithmetic on the stored values would give it."""
    return round(value, EXACT_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def _array(values: Sequence[Number] | np.ndarray) -> np.ndarray:
    return values if isinstance(values, np.ndarray) else np.asarray(values, dtype=float)


def _item(value: np.generic) -> Number:
    return value.item()  # type: ignore[no-any-return]


def mean(values: Sequence[Number] | np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def sd(values: Sequence[Number] | np.ndarray) -> float | None:
    """Sample standard deviation (n - 1); None below two values."""
    return float(np.std(values, ddof=1)) if len(values) >= 2 else None


def quartiles(values: Sequence[Number] | np.ndarray) -> tuple[float, float, float] | tuple[None, None, None]:
    """(Q1, median, Q3) by SPSS's weighted-average definition (numpy "weibull")."""
    if not len(values):
        return None, None, None
    q1, median, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75], method="weibull")
    return float(q1), float(median), float(q3)


def descriptives(values: Sequence[Number] | np.ndarray) -> Descriptives:
    """n, mean, sample SD, min and max (min/max keep the values' own type: int or float)."""
    if not len(values):
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None}
    if isinstance(values, np.ndarray):
        low, high = _item(values.min()), _item(values.max())
    else:
        low, high = min(values), max(values)
    return {"n": len(values), "mean": mean(values), "sd": sd(values), "min": low, "max": high}


def location(values: Sequence[Number] | np.ndarray) -> Location:
    q1, median, q3 = quartiles(values)
    return {"mean": mean(values), "sd": sd(values), "median": median, "q1": q1, "q3": q3}


def complete_pairs(
    baseline: Mapping[Hashable, Number | None], followup: Mapping[Hashable, Number | None]
) -> tuple[list[Number], list[Number]]:
    """Values of the subjects who have both (complete cases; nothing carried forward), in a stable order."""
    keys = sorted(
        (k for k, v in followup.items() if v is not None and baseline.get(k) is not None),
        key=repr,
    )
    return [baseline[k] for k in keys], [followup[k] for k in keys]  # type: ignore[misc]


def differences(baseline: Sequence[Number] | np.ndarray, followup: Sequence[Number] | np.ndarray) -> np.ndarray:
    """Follow-up minus baseline, rounded for comparisons and ranking (see module docstring).

    numpy's rounding to 9 decimals gives the same float as Python's round() here: the differences
    of stored values are never within float noise of a half at the 10th decimal."""
    if len(baseline) != len(followup):
        raise ValueError("baseline and followup differ in length")
    return np.round(_array(followup) - _array(baseline), EXACT_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def ci95_mean(values: Sequence[float] | np.ndarray) -> list[float] | None:
    """95 % confidence interval of a mean, from the t distribution."""
    n = len(values)
    if n < 2:
        return None
    m, s = float(np.mean(values)), float(np.std(values, ddof=1))
    half = float(sps.t.ppf(0.975, n - 1)) * s / math.sqrt(n)
    return [m - half, m + half]


def _all_equal(values: np.ndarray) -> bool:
    return bool(len(values) == 0 or np.all(values == values[0]))


def paired_t(
    baseline: Sequence[Number] | np.ndarray,
    followup: Sequence[Number] | np.ndarray,
    exact_diffs: np.ndarray | None = None,
) -> tuple[float | None, float | None]:
    """(t, p) of the paired t test; None when n < 2 or every difference is the same."""
    diffs = differences(baseline, followup) if exact_diffs is None else exact_diffs
    if len(baseline) < 2 or _all_equal(diffs):
        return None, None
    # scipy.stats.ttest_rel's statistic and two-sided p, written out: its array-API wrapper costs
    # more than the arithmetic, 24 times per summary.
    d = _array(followup).astype(float) - _array(baseline).astype(float)
    n = len(d)
    t = float(np.mean(d)) / math.sqrt(float(np.var(d, ddof=1)) / n)
    return t, float(2 * sps.t.sf(abs(t), n - 1))


def wilcoxon_p(
    baseline: Sequence[Number] | np.ndarray,
    followup: Sequence[Number] | np.ndarray,
    exact_diffs: np.ndarray | None = None,
) -> float | None:
    """Wilcoxon signed-rank p as SPSS computes it: zero differences dropped, normal
    approximation with tie correction, no continuity correction. None when every
    difference is zero (or n < 2). `exact_diffs`: the differences as exact numbers
    (e.g. integers in a finer unit); only their signs, order and ties matter."""
    diffs = differences(baseline, followup) if exact_diffs is None else np.asarray(exact_diffs)
    if len(diffs) < 2 or not np.any(diffs != 0):
        return None
    return _signed_rank_p(diffs)


def _signed_rank_p(diffs: np.ndarray) -> float:
    """scipy.stats.wilcoxon(zero_method="wilcox", correction=False, method="approx")'s p for exact
    differences (integers, or floats rounded by `differences`: equal values tie), from the counts of
    each absolute value (average ranks of ties) instead of a rank sort."""
    d = diffs[diffs != 0]
    d = d.astype(np.int64) if d.dtype.kind in "iu" else d.astype(np.float64)
    n = len(d)
    magnitude = np.abs(d)
    if d.dtype.kind == "i" and n and int(magnitude.max()) <= 4 * n + 100_000:
        # small integers (VAS tenths, ODI in 1/126 points, opioid counts): count each value, no sort
        counts = np.bincount(magnitude)
        positives = np.bincount(magnitude[d > 0], minlength=len(counts))
    else:
        _values, inverse, counts = np.unique(magnitude, return_inverse=True, return_counts=True)
        positives = np.bincount(inverse[d > 0], minlength=len(counts))
    average_rank = np.cumsum(counts) - (counts - 1) / 2  # of each value present (absent values weigh 0)
    r_plus = float(np.dot(average_rank, positives))
    t = counts.astype(np.float64)
    variance = (n * (n + 1) * (2 * n + 1) - 0.5 * float(np.sum(t * (t * t - 1)))) / 24
    z = (r_plus - n * (n + 1) / 4) / math.sqrt(variance)
    return float(2 * sps.norm.sf(abs(z)))


def paired_comparison(
    baseline: Sequence[Number] | np.ndarray,
    followup: Sequence[Number] | np.ndarray,
    exact_diffs: np.ndarray | None = None,
) -> PairedComparison:
    """A follow-up compared with baseline over complete pairs (summary.md outcome block).

    `exact_diffs` (optional): follow-up minus baseline as exact numbers in any unit (integer
    tenths of VAS, ODI in 1/126 points), used for ties, equal and zero differences."""
    n = len(baseline)
    if n < 2:
        # One pair still has its values (mean, median, quartiles; summary.md: "with n = 1, sd is null"),
        # so the key results read the same as the chart's table; a comparison needs two pairs.
        return {
            "n": n,
            "baseline": location(_array(baseline).astype(float)),
            "followup": location(_array(followup).astype(float)),
            "diff": {"mean": None, "sd": None, "ci95": None},
            "t": None,
            "p_ttest": None,
            "p_wilcoxon": None,
        }
    base, follow = _array(baseline).astype(float), _array(followup).astype(float)
    raw_diffs = follow - base
    exact_d = differences(base, follow) if exact_diffs is None else exact_diffs
    t, p_ttest = paired_t(base, follow, exact_d)
    return {
        "n": n,
        "baseline": location(base),
        "followup": location(follow),
        "diff": {"mean": mean(raw_diffs), "sd": sd(raw_diffs), "ci95": ci95_mean(raw_diffs)},
        "t": t,
        "p_ttest": p_ttest,
        "p_wilcoxon": wilcoxon_p(base, follow, exact_d),
    }


def effect_size_dz(t: float | None, n: int) -> float | None:
    """Cohen's dz for paired data: t / sqrt(n)."""
    return None if t is None or n < 1 else t / math.sqrt(n)


def responders(
    vas_baseline: Sequence[Number],
    vas_followup: Sequence[Number],
    odi_baseline: Sequence[Number],
    odi_followup: Sequence[Number],
) -> Responders:
    """Clinically important improvement, each over its own pairs: VAS drop >= 3 points and
    VAS drop >= 30 % of baseline over `vas_of` (patients with both VAS values), ODI drop
    >= 10 points over `odi_of` (patients with both ODI scores). A baseline of 0 cannot
    drop, so it is never a 30 % responder (a drop of 0 is not a drop). Floats: differences
    rounded (module docstring); `responders_exact` does the same on integers."""
    vas_drops = -differences(vas_baseline, vas_followup)
    odi_drops = -differences(odi_baseline, odi_followup)
    vas_b = _array(vas_baseline)
    thirty = np.round(0.3 * vas_b, EXACT_DECIMALS)
    return {
        "vas_drop_ge_3": int(np.count_nonzero(vas_drops >= 3)),
        "vas_drop_ge_30pct": int(np.count_nonzero((vas_drops > 0) & (vas_drops >= thirty))),
        "odi_drop_ge_10": int(np.count_nonzero(odi_drops >= 10)),
        "vas_of": len(vas_drops),
        "odi_of": len(odi_drops),
    }


def responders_exact(
    vas_baseline10: np.ndarray,
    vas_followup10: np.ndarray,
    odi_baseline: np.ndarray,
    odi_followup: np.ndarray,
    odi_unit: int,
) -> Responders:
    """`responders` on exact integers: VAS in tenths of a point, ODI in 1/`odi_unit` points."""
    vas_drop = vas_baseline10.astype(np.int64) - vas_followup10
    odi_drop = odi_baseline.astype(np.int64) - odi_followup
    return {
        "vas_drop_ge_3": int(np.count_nonzero(vas_drop >= 30)),
        "vas_drop_ge_30pct": int(np.count_nonzero((vas_drop > 0) & (10 * vas_drop >= 3 * vas_baseline10))),
        "odi_drop_ge_10": int(np.count_nonzero(odi_drop >= 10 * odi_unit)),
        "vas_of": len(vas_drop),
        "odi_of": len(odi_drop),
    }


def opioid_change_category(baseline: int, followup: int) -> str:
    if followup < baseline:
        return "stopped" if followup == 0 else "decreased"
    return "unchanged" if followup == baseline else "increased"


def opioid_change(baseline: Sequence[int] | np.ndarray, followup: Sequence[int] | np.ndarray) -> OpioidChange:
    """Number of opioids after vs before: stopped / decreased (not to 0) / unchanged / increased."""
    b, f = np.asarray(baseline, dtype=np.int64), np.asarray(followup, dtype=np.int64)
    if b.shape != f.shape:
        raise ValueError("baseline and followup differ in length")
    lower = f < b
    return {
        "stopped": int(np.count_nonzero(lower & (f == 0))),
        "decreased": int(np.count_nonzero(lower & (f != 0))),
        "unchanged": int(np.count_nonzero(f == b)),
        "increased": int(np.count_nonzero(f > b)),
        "of": len(b),
    }


def count_map(values: Iterable[Hashable]) -> dict[str, int]:
    """Occurrences per value, most frequent first (zero entries are simply absent)."""
    return {str(k): v for k, v in Counter(values).most_common()}


# Overall survival (summary.md "Survival"): Kaplan-Meier with Greenwood log(-log) intervals.

Z95 = 1.959963984540054  # the 97.5 % point of the standard normal
LANDMARK_DAYS = {"m3": 91, "m6": 183, "m12": 365}


class SurvivalAt(TypedDict):
    days: int
    survival: float | None
    ci95: list[float] | None
    at_risk: int


class Survival(TypedDict):
    n: int
    deaths: int
    censored: int
    median_days: float | None
    median_ci95: list[float | None]
    at: dict[str, SurvivalAt]


class KaplanMeierStep(TypedDict):
    """The estimate from event time `days` on (until the next event time)."""

    days: int
    at_risk: int
    deaths: int
    survival: float
    ci95: list[float]


def loglog_ci95(s: float, greenwood: float) -> list[float]:
    """[S^exp(h), S^exp(-h)] with h = z * sqrt(G) / |ln S|; S = 1 gives [1, 1], S = 0 gives [0, 0]."""
    if s >= 1.0:
        return [1.0, 1.0]
    if s <= 0.0:
        return [0.0, 0.0]
    h = Z95 * math.sqrt(greenwood) / abs(math.log(s))
    return [s ** math.exp(h), s ** math.exp(-h)]


def _km_table(times: Sequence[int], events: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct event times, n at risk, deaths) in time order: n(t) counts the patients whose time
    is >= t (censored at t: still at risk), d(t) the deaths at t."""
    t = np.asarray(times, dtype=np.int64)
    dead = np.asarray(events, dtype=bool)
    if t.shape != dead.shape:
        raise ValueError("times and events differ in length")
    event_times, deaths = np.unique(t[dead], return_counts=True)
    at_risk = len(t) - np.searchsorted(np.sort(t), event_times, side="left")
    return event_times, at_risk.astype(np.int64), deaths.astype(np.int64)


def _product(values: list[int]) -> int:
    """The product of many integers, multiplied as a balanced tree: far fewer operations on huge
    numbers than math.prod's left-to-right product."""
    if len(values) <= 16:
        return math.prod(values)
    middle = len(values) // 2
    return _product(values[:middle]) * _product(values[middle:])


class _ExactSurvival:
    """S after the k-th event time as an exact ratio of integer products, for the few steps where
    an exact value is needed (a landmark, the median's "S <= 0.5"): prod (n - d) / prod n."""

    def __init__(self, at_risk: np.ndarray, deaths: np.ndarray) -> None:
        self._survivors, self._at_risk = (at_risk - deaths).tolist(), at_risk.tolist()

    def ratio(self, k: int) -> tuple[int, int]:
        return _product(self._survivors[: k + 1]), _product(self._at_risk[: k + 1])

    def value(self, k: int) -> float:
        numerator, denominator = self.ratio(k)
        return numerator / denominator  # int / int is correctly rounded: the exact fraction rounded once

    def at_most_half(self, k: int) -> bool:
        numerator, denominator = self.ratio(k)
        return 2 * numerator <= denominator


def _km(
    times: Sequence[int], events: Sequence[bool], exact: bool
) -> tuple[list[KaplanMeierStep], list[float], _ExactSurvival]:
    event_times, at_risk, deaths = _km_table(times, events)
    survivors = at_risk - deaths
    increments = deaths / (at_risk * np.maximum(survivors, 1))  # no term once S is 0 (its interval is [0, 0])
    greenwood = np.cumsum(np.where(survivors > 0, increments, 0.0)).tolist()
    if exact:
        survival, numerator, denominator = [], 1, 1
        for n, d in zip(at_risk.tolist(), deaths.tolist(), strict=True):
            numerator, denominator = numerator * (n - d), denominator * n
            survival.append(numerator / denominator)  # correctly rounded, without a Fraction's gcd at every step
    else:
        survival = np.cumprod(survivors / at_risk).tolist() if len(at_risk) else []
    steps: list[KaplanMeierStep] = []
    for u, n, d, s, g in zip(event_times.tolist(), at_risk.tolist(), deaths.tolist(), survival, greenwood, strict=True):
        ci95 = [0.0, 0.0] if s == 0 else loglog_ci95(s, g)
        steps.append({"days": u, "at_risk": n, "deaths": d, "survival": s, "ci95": ci95})
    return steps, greenwood, _ExactSurvival(at_risk, deaths)


def kaplan_meier(times: Sequence[int], events: Sequence[bool], exact: bool = True) -> list[KaplanMeierStep]:
    """One step per distinct event (death) time, in time order.

    n(t) counts the patients whose time is >= t (censored at t: still at risk),
    d(t) the deaths at t; S(t) = prod (1 - d/n) and Greenwood's
    G(t) = sum d / (n (n - d)) over event times <= t. With `exact`, S is the exact
    product (integers, no rounding on the way) rounded once to a float; without, a
    float running product (within a few units in the last place, about 1e-14: for
    drawing a curve). G is a float sum (relative error about 1e-15, far below what the
    interval shows). Once S reaches 0 (every patient at risk died) G is infinite and
    the interval is [0, 0].
    """
    return _km(times, events, exact)[0]


def _first_day(steps: list[KaplanMeierStep], value: Callable[[KaplanMeierStep], float]) -> float | None:
    return next((float(step["days"]) for step in steps if value(step) <= 0.5), None)


def _median_day(steps: list[KaplanMeierStep], exact: _ExactSurvival) -> float | None:
    """The first event time with S <= 0.5, decided exactly: the float running product is within
    1e-12 of S, so only the steps whose float is that close to 0.5 are computed exactly."""
    near = 1e-9
    for k, step in enumerate(steps):
        if step["survival"] < 0.5 - near:
            return float(step["days"])
        if step["survival"] <= 0.5 + near and exact.at_most_half(k):
            return float(step["days"])
    return None


def survival_summary(times: Sequence[int], events: Sequence[bool]) -> Survival:
    """The summary's survival block from each patient's time (days) and event flag (True = died).

    The landmark estimates are the exact products rounded once and the median is decided
    exactly; the other steps need only floats (see kaplan_meier)."""
    t = np.asarray(times, dtype=np.int64)
    steps, greenwood, exact = _km(times, events, exact=False)
    deaths = int(np.count_nonzero(np.asarray(events, dtype=bool)))
    days = np.asarray([step["days"] for step in steps], dtype=np.int64)
    at: dict[str, SurvivalAt] = {}
    for key, day in LANDMARK_DAYS.items():
        at_risk = int(np.count_nonzero(t >= day))
        if at_risk == 0:  # beyond every patient's time (or nobody at all)
            at[key] = {"days": day, "survival": None, "ci95": None, "at_risk": 0}
            continue
        k = int(np.searchsorted(days, day, side="right")) - 1  # the last step on or before the day
        if k < 0:
            survival, ci95 = 1.0, [1.0, 1.0]
        else:
            survival = exact.value(k)
            ci95 = [0.0, 0.0] if survival == 0 else loglog_ci95(survival, greenwood[k])
        at[key] = {"days": day, "survival": survival, "ci95": ci95, "at_risk": at_risk}
    return {
        "n": len(t),
        "deaths": deaths,
        "censored": len(t) - deaths,
        "median_days": _median_day(steps, exact),
        "median_ci95": [
            _first_day(steps, lambda step: step["ci95"][0]),
            _first_day(steps, lambda step: step["ci95"][1]),
        ],
        "at": at,
    }


def at_risk_on(times: Sequence[int], days: Iterable[int]) -> list[int]:
    """Patients whose time is >= each day (the number at risk printed under a curve)."""
    t = np.asarray(times, dtype=np.int64)
    return [int(np.count_nonzero(t >= day)) for day in days]
