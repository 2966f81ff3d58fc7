"""dashboard.stats on hand-made cases whose answers are known (and on scipy directly)."""

import math
from decimal import Decimal

import numpy as np
import pytest
from scipy import stats as sps

from dashboard import stats


def test_quartiles_are_spss_weighted_averages():
    counts = [1, 1, 1, 1, 2, 2, 2, 3, 4, 4]  # the paper's baseline opioid counts
    assert stats.quartiles(counts) == (1.0, 2.0, 3.25)
    assert stats.quartiles([5, 7]) == (5.0, 6.0, 7.0)  # positions outside 1..n clamp to min and max
    assert stats.quartiles([]) == (None, None, None)


def test_descriptives_of_one_value_have_no_sd():
    assert stats.descriptives([4]) == {"n": 1, "mean": 4.0, "sd": None, "min": 4, "max": 4}
    assert stats.descriptives([]) == {"n": 0, "mean": None, "sd": None, "min": None, "max": None}


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_pairs_give_no_comparison(n):
    block = stats.paired_comparison([7.0] * n, [3.5] * n)
    assert block["n"] == n
    assert block["diff"] == {"mean": None, "sd": None, "ci95": None}
    assert block["t"] is block["p_ttest"] is block["p_wilcoxon"] is None
    assert block["baseline"]["sd"] is None and block["followup"]["sd"] is None


def test_one_pair_keeps_its_values():
    # summary.md: with n = 1 only sd is null; the one patient's values are the mean, median and quartiles.
    block = stats.paired_comparison([7.0], [3.5])
    assert block["baseline"] == {"mean": 7.0, "sd": None, "median": 7.0, "q1": 7.0, "q3": 7.0}
    assert block["followup"] == {"mean": 3.5, "sd": None, "median": 3.5, "q1": 3.5, "q3": 3.5}
    assert stats.paired_comparison([], [])["baseline"]["mean"] is None


def test_equal_differences_have_no_t_test_but_a_wilcoxon():
    # 8.2 - 5.2 and 7.1 - 4.1 are both exactly 3, though not in floats.
    block = stats.paired_comparison([8.2, 7.1, 6.0], [5.2, 4.1, 3.0])
    assert block["t"] is None and block["p_ttest"] is None
    assert block["diff"]["mean"] == pytest.approx(-3)
    z = (0 - 3 * 4 / 4) / math.sqrt(3 * 4 * 7 / 24 - (27 - 3) / 48)
    assert block["p_wilcoxon"] == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-12)


def test_all_zero_differences_give_no_p_values():
    block = stats.paired_comparison([5.0, 6.0, 7.0], [5.0, 6.0, 7.0])
    assert block["diff"]["mean"] == 0 and block["diff"]["sd"] == 0
    assert block["diff"]["ci95"] == [0, 0]
    assert block["t"] is block["p_ttest"] is block["p_wilcoxon"] is None


def test_the_paired_t_test_and_interval_agree_with_scipy():
    base, follow = [6.0, 7.0, 7.0, 8.0, 6.0], [1.0, 3.0, 2.0, 4.0, 2.5]
    block = stats.paired_comparison(base, follow)
    expected = sps.ttest_rel(follow, base)
    assert block["t"] == pytest.approx(expected.statistic, rel=1e-12)
    assert block["p_ttest"] == pytest.approx(expected.pvalue, rel=1e-12)
    low, high = expected.confidence_interval(0.95)
    assert block["diff"]["ci95"] == pytest.approx([low, high], rel=1e-12)
    assert stats.effect_size_dz(block["t"], 5) == pytest.approx(expected.statistic / math.sqrt(5))
    assert block["p_wilcoxon"] == pytest.approx(
        sps.wilcoxon(np.subtract(follow, base), zero_method="wilcox", correction=False, method="approx").pvalue
    )


def test_wilcoxon_ranks_float_noise_as_ties():
    # 8.2-5.2, 7.1-4.1 and 3 are one tie group of |d| = 3 once rounded.
    base, follow = [8.2, 7.1, 6.0, 5.0], [5.2, 4.1, 3.0, 4.0]
    rounded = [-3.0, -3.0, -3.0, -1.0]
    expected = sps.wilcoxon(rounded, zero_method="wilcox", correction=False, method="approx").pvalue
    assert stats.paired_comparison(base, follow)["p_wilcoxon"] == pytest.approx(expected, rel=1e-12)


def test_responder_thresholds_use_exact_arithmetic():
    vas_b = [float(Decimal("8.2")), 7.0, 7.0, 5.0]
    vas_f = [float(Decimal("5.2")), 4.9, 5.0, 3.0]
    odi_b, odi_f = [70.0, 68.88888888888889], [60.0, 58.88888888888889]
    assert stats.responders(vas_b, vas_f, odi_b, odi_f) == {
        "vas_drop_ge_3": 1,  # 8.2 -> 5.2
        "vas_drop_ge_30pct": 3,  # 8.2 -> 5.2, 7 -> 4.9 (exactly 30 %), 5 -> 3; not 7 -> 5
        "odi_drop_ge_10": 2,
        "vas_of": 4,
        "odi_of": 2,  # its own denominator: only two patients have both ODI scores
    }


def test_a_vas_baseline_of_zero_is_never_a_30_percent_responder():
    # 0 -> 0 is a "drop" of 0 >= 30 % of 0, but nothing dropped; 0 -> 1 rose.
    vas_b, vas_f = [0.0, 0.0, 10.0], [0.0, 1.0, 7.0]
    result = stats.responders(vas_b, vas_f, [], [])
    assert result == {"vas_drop_ge_3": 1, "vas_drop_ge_30pct": 1, "odi_drop_ge_10": 0, "vas_of": 3, "odi_of": 0}


def test_opioid_change_categories():
    assert stats.opioid_change([2, 3, 1, 0, 2], [0, 1, 1, 0, 4]) == {
        "stopped": 1,
        "decreased": 1,
        "unchanged": 2,
        "increased": 1,
        "of": 5,
    }


def test_complete_pairs_leave_out_missing_values():
    base = {1: 7.0, 2: None, 3: 6.0, 4: 5.0}
    follow = {1: 3.0, 2: 4.0, 3: None, 5: 1.0}
    assert stats.complete_pairs(base, follow) == ([7.0], [3.0])


def test_the_signed_rank_p_of_integer_differences_is_scipys():
    rng = np.random.default_rng(4)
    for size in (2, 3, 17, 500):
        base = rng.integers(0, 100, size)
        follow = np.clip(base + rng.integers(-30, 10, size), 0, 100)
        if not np.any(follow != base):
            continue
        expected = sps.wilcoxon((follow - base) / 10, zero_method="wilcox", correction=False, method="approx").pvalue
        block = stats.paired_comparison(base / 10, follow / 10, follow - base)
        assert block["p_wilcoxon"] == pytest.approx(expected, rel=1e-12, abs=1e-300)
