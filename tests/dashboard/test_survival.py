"""Kaplan-Meier survival (dashboard.stats) on cohorts worked by hand, and against an
independent exact implementation written differently (summary.md "Survival")."""

import math
import random
from fractions import Fraction

import pytest

from dashboard import stats

Z = 1.959963984540054


def loglog(s, g):
    """The summary.md interval, written out from S and Greenwood's sum computed by hand."""
    s, g = float(s), float(g)
    h = Z * math.sqrt(g) / abs(math.log(s))
    return [s ** math.exp(h), s ** math.exp(-h)]


def approx(values):
    return pytest.approx(values, rel=1e-12, abs=1e-15)


# Eight patients (days, died?): ties at 150 (two deaths and one censored at that very
# time), at 250 (a death and a censoring), and the last patient dies, so S reaches 0.
#   t = 100: n = 8 (everyone), d = 1  S = 7/8            G = 1/(8*7)            = 1/56
#   t = 150: n = 7 (the one censored at 150 is still at risk), d = 2
#                                     S = 7/8 * 5/7 = 5/8   G = 1/56 + 2/(7*5)   = 3/40
#   t = 250: n = 4 (250, 250, 350, 400), d = 1
#                                     S = 5/8 * 3/4 = 15/32 G = 3/40 + 1/(4*3)   = 19/120
#   t = 400: n = 1, d = 1              S = 0                 interval [0, 0]
# Day 91: before any death, S = 1 [1, 1], at risk 8. Day 183: S(150) = 5/8, at risk 4
# (250, 250, 350, 400). Day 365: S(250) = 15/32, at risk 1 (400).
# Median: first S <= 0.5 is 15/32 at day 250. Its interval: the lower bound at day 100 is
# 0.875^exp(h) with h = 1.96 * sqrt(1/56) / |ln 0.875| = 1.961, i.e. 0.875^7.11 = 0.39 <= 0.5,
# so the lower end is 100; the upper bound is 0.98, 0.86, 0.76 at 100, 150, 250 and 0 at
# 400, so the upper end is 400.
TIES_TIMES = [100, 150, 150, 150, 250, 250, 350, 400]
TIES_EVENTS = [True, True, True, False, True, False, False, True]


def test_ties_and_censoring_at_an_event_time_worked_by_hand():
    steps = stats.kaplan_meier(TIES_TIMES, TIES_EVENTS)
    assert [(s["days"], s["at_risk"], s["deaths"]) for s in steps] == [
        (100, 8, 1),
        (150, 7, 2),
        (250, 4, 1),
        (400, 1, 1),
    ]
    assert [s["survival"] for s in steps] == [7 / 8, 5 / 8, 15 / 32, 0.0]
    assert steps[0]["ci95"] == approx(loglog(Fraction(7, 8), Fraction(1, 56)))
    assert steps[1]["ci95"] == approx(loglog(Fraction(5, 8), Fraction(3, 40)))
    assert steps[2]["ci95"] == approx(loglog(Fraction(15, 32), Fraction(19, 120)))
    assert steps[3]["ci95"] == [0.0, 0.0]
    assert 0.38 < steps[0]["ci95"][0] < 0.40  # the figure quoted in the comment above

    summary = stats.survival_summary(TIES_TIMES, TIES_EVENTS)
    assert (summary["n"], summary["deaths"], summary["censored"]) == (8, 5, 3)
    assert summary["at"]["m3"] == {"days": 91, "survival": 1.0, "ci95": [1.0, 1.0], "at_risk": 8}
    assert summary["at"]["m6"]["survival"] == 5 / 8 and summary["at"]["m6"]["at_risk"] == 4
    assert summary["at"]["m6"]["ci95"] == approx(loglog(Fraction(5, 8), Fraction(3, 40)))
    assert summary["at"]["m12"]["survival"] == 15 / 32 and summary["at"]["m12"]["at_risk"] == 1
    assert summary["median_days"] == 250
    assert summary["median_ci95"] == [100, 400]


def test_a_death_on_the_day_of_the_procedure_is_an_event_at_time_0():
    # t = 0: n = 4 (the patient censored at 0 is at risk), d = 1: S = 3/4, G = 1/(4*3) = 1/12
    # t = 100: n = 2 (100, 200), d = 1: S = 3/8, G = 1/12 + 1/(2*1) = 7/12
    times, events = [0, 0, 100, 200], [True, False, True, False]
    steps = stats.kaplan_meier(times, events)
    assert [(s["days"], s["at_risk"], s["deaths"], s["survival"]) for s in steps] == [
        (0, 4, 1, 0.75),
        (100, 2, 1, 0.375),
    ]
    assert steps[1]["ci95"] == approx(loglog(Fraction(3, 8), Fraction(7, 12)))
    summary = stats.survival_summary(times, events)
    assert summary["at"]["m3"]["survival"] == 0.75 and summary["at"]["m3"]["at_risk"] == 2  # 100, 200 >= 91
    assert summary["at"]["m6"]["survival"] == 0.375 and summary["at"]["m6"]["at_risk"] == 1  # 200 >= 183
    assert summary["at"]["m12"] == {"days": 365, "survival": None, "ci95": None, "at_risk": 0}
    assert summary["median_days"] == 100


def test_all_censored_survival_stays_1_and_the_median_is_not_reached():
    summary = stats.survival_summary([5, 100, 200], [False, False, False])
    assert (summary["n"], summary["deaths"], summary["censored"]) == (3, 0, 3)
    assert summary["at"]["m3"] == {"days": 91, "survival": 1.0, "ci95": [1.0, 1.0], "at_risk": 2}
    assert summary["at"]["m6"] == {"days": 183, "survival": 1.0, "ci95": [1.0, 1.0], "at_risk": 1}
    assert summary["at"]["m12"] == {"days": 365, "survival": None, "ci95": None, "at_risk": 0}
    assert summary["median_days"] is None and summary["median_ci95"] == [None, None]


def test_a_landmark_on_the_last_patients_day_is_still_estimated():
    # 183 is the last time: at risk 1 (>= 183), S after the death at 50 (n = 2, d = 1) = 1/2.
    summary = stats.survival_summary([50, 183], [True, False])
    assert summary["at"]["m6"]["at_risk"] == 1 and summary["at"]["m6"]["survival"] == 0.5
    assert summary["median_days"] == 50  # S = 0.5 counts: "S <= 0.5"
    assert summary["at"]["m12"]["survival"] is None


def test_everyone_dying_at_once_takes_s_to_0_with_a_0_0_interval():
    summary = stats.survival_summary([30, 30, 30], [True, True, True])
    assert stats.kaplan_meier([30, 30, 30], [True] * 3) == [
        {"days": 30, "at_risk": 3, "deaths": 3, "survival": 0.0, "ci95": [0.0, 0.0]}
    ]
    assert summary["median_days"] == 30 and summary["median_ci95"] == [30, 30]
    assert summary["at"]["m3"] == {"days": 91, "survival": None, "ci95": None, "at_risk": 0}


def test_no_patients_gives_nulls_and_zero_at_risk():
    summary = stats.survival_summary([], [])
    assert summary == {
        "n": 0,
        "deaths": 0,
        "censored": 0,
        "median_days": None,
        "median_ci95": [None, None],
        "at": {
            key: {"days": day, "survival": None, "ci95": None, "at_risk": 0}
            for key, day in (("m3", 91), ("m6", 183), ("m12", 365))
        },
    }


def test_the_median_threshold_is_exact_not_float_noise():
    # Deaths at 10 (n = 4) and 20 (n = 3): S = 3/4 * 2/3 = 1/2 exactly, so the median is 20.
    times, events = [10, 20, 30, 40], [True, True, False, False]
    assert stats.survival_summary(times, events)["median_days"] == 20


# ---- an independent implementation: patients walked one by one in time order, exact fractions


def reference_km(times, events):
    """Walk the patients sorted by time; at each time, deaths leave with the censored after the step."""
    patients = sorted(zip(times, events, strict=True))
    remaining = len(patients)
    s, g = Fraction(1), Fraction(0)
    table = []
    i = 0
    while i < len(patients):
        day = patients[i][0]
        end = i
        while end < len(patients) and patients[end][0] == day:  # sorted: the patients at `day` are a run
            end += 1
        group = [e for _, e in patients[i:end]]
        deaths = sum(group)
        if deaths:
            s = s * Fraction(remaining - deaths, remaining)
            g = None if g is None or remaining == deaths else g + Fraction(deaths, remaining * (remaining - deaths))
            table.append((day, remaining, deaths, s, g))
        remaining -= len(group)
        i += len(group)
    return table


def reference_interval(s, g):
    if s == 1:
        return [1.0, 1.0]
    if s == 0:
        return [0.0, 0.0]
    log_s = math.log(s.numerator) - math.log(s.denominator)  # ln S without rounding S first
    h = Z * math.sqrt(g.numerator / g.denominator) / -log_s
    return [math.exp(log_s * math.exp(h)), math.exp(log_s * math.exp(-h))]


def reference_summary(times, events):
    table = reference_km(times, events)
    at = {}
    for key, day in (("m3", 91), ("m6", 183), ("m12", 365)):
        at_risk = sum(t >= day for t in times)
        before = [row for row in table if row[0] <= day]
        s, g = (before[-1][3], before[-1][4]) if before else (Fraction(1), Fraction(0))
        at[key] = {
            "days": day,
            "survival": float(s) if at_risk else None,
            "ci95": reference_interval(s, g) if at_risk else None,
            "at_risk": at_risk,
        }
    intervals = [(row[0], reference_interval(row[3], row[4])) for row in table]
    return {
        "n": len(times),
        "deaths": sum(events),
        "censored": len(times) - sum(events),
        "median_days": next((row[0] for row in table if row[3] * 2 <= 1), None),
        "median_ci95": [
            next((day for day, ci in intervals if ci[0] <= 0.5), None),
            next((day for day, ci in intervals if ci[1] <= 0.5), None),
        ],
        "at": at,
    }


@pytest.mark.parametrize("seed", range(40))
def test_the_summary_equals_an_independent_exact_implementation(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 120)
    horizon = rng.choice([60, 200, 500, 900])
    grain = rng.choice([1, 7, 30])  # weeks or months of follow-up: many ties
    times = [rng.randint(0, horizon) // grain * grain for _ in range(n)]
    events = [rng.random() < rng.choice([0.1, 0.4, 0.8]) for _ in range(n)]
    actual, expected = stats.survival_summary(times, events), reference_summary(times, events)
    assert {k: actual[k] for k in ("n", "deaths", "censored", "median_days", "median_ci95")} == {
        k: expected[k] for k in ("n", "deaths", "censored", "median_days", "median_ci95")
    }
    for key, block in expected["at"].items():
        assert actual["at"][key]["at_risk"] == block["at_risk"]
        if block["survival"] is None:
            assert actual["at"][key] == block
        else:
            assert actual["at"][key]["survival"] == block["survival"]  # exact fractions rounded once
            assert actual["at"][key]["ci95"] == pytest.approx(block["ci95"], rel=1e-9, abs=1e-12)
