"""gpuhealth.judge.stats: estimates with confidence intervals, comparison with healthy
cards, Holm."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from gpuhealth.judge.stats import Estimate, compare, estimate, holm, holm_log, robust_center_spread

# --- estimate ------------------------------------------------------------------------------------


def test_estimate_median_and_interval_by_hand() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 7.0, 8.0, 6.0, 10.0]
    est = estimate(values)
    assert est.n == 10
    assert est.value == 5.5  # median of 1..10
    # n = 10, 95%: the interval runs from the 2nd to the 9th smallest value
    # (P(2 <= B <= 8) = 1 - 2 * P(B <= 1) = 0.979 for B ~ Binomial(10, 1/2))
    assert (est.ci_low, est.ci_high) == (2.0, 9.0)
    assert est.standard_error == pytest.approx((9.0 - 2.0) / (2 * 1.959964), rel=1e-5)


def test_estimate_single_and_small_samples() -> None:
    one = estimate([3.5])
    assert (one.n, one.value, one.ci_low, one.ci_high) == (1, 3.5, 3.5, 3.5)
    three = estimate([3.0, 1.0, 2.0])
    assert three.value == 2.0
    # too few values for 95%: the interval is the whole range
    assert (three.ci_low, three.ci_high) == (1.0, 3.0)
    with pytest.raises(ValueError):
        estimate([])


def test_estimate_interval_always_contains_the_median() -> None:
    rng = np.random.default_rng(3)
    for n in (2, 5, 8, 13, 30, 101):
        values = rng.normal(10, 2, n).tolist()
        est = estimate(values)
        assert est.ci_low <= est.value <= est.ci_high
        assert min(values) <= est.ci_low and est.ci_high <= max(values)


@pytest.mark.parametrize("n", [10, 20, 50])
def test_estimate_interval_covers_the_true_median_about_95_percent(n: int) -> None:
    rng = np.random.default_rng(n)
    trials = 3000
    samples = rng.normal(100.0, 5.0, size=(trials, n))
    covered = 0
    for row in samples:
        est = estimate(row.tolist())
        covered += est.ci_low <= 100.0 <= est.ci_high
    coverage = covered / trials
    # order-statistic intervals are conservative (discrete): at least 95%, not far above
    assert 0.93 <= coverage <= 0.99, coverage


def test_estimate_narrows_with_more_repetitions() -> None:
    rng = np.random.default_rng(5)
    few = estimate(rng.normal(0, 1, 10).tolist())
    many = estimate(rng.normal(0, 1, 1000).tolist())
    assert many.ci_high - many.ci_low < (few.ci_high - few.ci_low) / 3


# --- compare -------------------------------------------------------------------------------------


def _point(value: float, se: float = 0.0) -> Estimate:
    return Estimate(n=10, value=value, ci_low=value, ci_high=value, standard_error=se)


def test_compare_higher_is_better_signs() -> None:
    low = compare(_point(90.0), center=100.0, spread=5.0, higher_is_better=True)
    assert low.z == pytest.approx(-2.0)
    assert low.relative_deviation == pytest.approx(-0.10)
    assert low.p_value == pytest.approx(0.02275, abs=1e-4)  # Phi(-2)
    assert low.percentile == pytest.approx(100 * low.p_value)
    high = compare(_point(110.0), center=100.0, spread=5.0, higher_is_better=True)
    assert high.z == pytest.approx(2.0) and high.relative_deviation == pytest.approx(0.10)
    assert high.p_value == pytest.approx(1 - 0.02275, abs=1e-4)


def test_compare_lower_is_better_signs() -> None:
    # a latency 10% above the healthy centre is worse: negative z, negative deviation
    slow = compare(_point(110.0), center=100.0, spread=5.0, higher_is_better=False)
    assert slow.z == pytest.approx(-2.0)
    assert slow.relative_deviation == pytest.approx(-0.10)
    assert slow.p_value < 0.05
    fast = compare(_point(90.0), center=100.0, spread=5.0, higher_is_better=False)
    assert fast.z == pytest.approx(2.0) and fast.relative_deviation == pytest.approx(0.10)


def test_compare_includes_the_cards_own_error() -> None:
    exact = compare(_point(90.0, se=0.0), 100.0, 5.0)
    noisy = compare(_point(90.0, se=5.0), 100.0, 5.0)
    assert noisy.z == pytest.approx(-10.0 / math.sqrt(50.0))
    assert abs(noisy.z) < abs(exact.z) and noisy.p_value > exact.p_value


def test_compare_at_the_centre_and_with_no_spread() -> None:
    same = compare(_point(100.0), 100.0, 5.0)
    assert same.z == 0.0 and same.p_value == pytest.approx(0.5)
    assert compare(_point(100.0), 100.0, 0.0).z == 0.0
    assert compare(_point(99.0), 100.0, 0.0).z == -math.inf
    assert compare(_point(99.0), 100.0, 0.0).p_value == 0.0


def test_compare_percentile_is_monotone_in_the_value() -> None:
    percentiles = [compare(_point(v), 100.0, 5.0).percentile for v in range(80, 121, 5)]
    assert percentiles == sorted(percentiles)
    assert 0 < percentiles[0] < 1 and 99 < percentiles[-1] < 100


# --- holm ----------------------------------------------------------------------------------------


def test_holm_by_hand() -> None:
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_handles_edges() -> None:
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([]) == []
    assert holm([0.02]) == [0.02]


def test_holm_is_monotone_and_never_below_the_raw_p() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        p = rng.uniform(0, 0.2, rng.integers(1, 12)).tolist()
        adjusted = holm(p)
        assert all(a >= raw for a, raw in zip(adjusted, p, strict=True))
        assert all(a <= 1.0 for a in adjusted)
        order = sorted(range(len(p)), key=lambda i: p[i])
        in_order = [adjusted[i] for i in order]
        assert all(x <= y for x, y in itertools.pairwise(in_order))
        # Holm is never more lenient than Bonferroni's m * p for the smallest p
        assert min(adjusted) == pytest.approx(min(1.0, len(p) * min(p)))


def test_holm_controls_family_wise_error() -> None:
    """Under the null (uniform p-values) the chance of any rejection at 0.05 stays <= 0.05."""
    rng = np.random.default_rng(12)
    families = 4000
    rejected = sum(min(holm(rng.uniform(0, 1, 10).tolist())) < 0.05 for _ in range(families))
    assert rejected / families <= 0.06


# --- robust centre and spread --------------------------------------------------------------------


def test_robust_center_spread_ignores_one_outlier() -> None:
    healthy = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8]
    center, spread = robust_center_spread(healthy)
    bad_center, bad_spread = robust_center_spread([*healthy, 10.0])
    assert center == pytest.approx(100.0, abs=0.3)
    assert bad_center == pytest.approx(center, abs=0.3)
    assert bad_spread < 2 * spread
    # the mean and standard deviation would have moved a lot
    assert abs(np.mean([*healthy, 10.0]) - center) > 10
    assert np.std([*healthy, 10.0]) > 20 * spread


def test_robust_spread_estimates_a_normal_sd() -> None:
    rng = np.random.default_rng(13)
    center, spread = robust_center_spread(rng.normal(50.0, 3.0, 20000).tolist())
    assert center == pytest.approx(50.0, abs=0.1)
    assert spread == pytest.approx(3.0, rel=0.05)


# --- found untested by the mutation benchmark (bench/mutation.py) ------------------------------


def test_estimate_of_nothing_says_so() -> None:
    with pytest.raises(ValueError, match=r"^no repetitions to estimate from$"):
        estimate([])


def test_estimate_of_two_is_their_midpoint() -> None:
    assert estimate([3.0, 1.0]).value == 2.0


@pytest.mark.parametrize("n", range(6, 80))
def test_median_interval_is_the_tightest_that_covers_95_percent(n: int) -> None:
    """Ranks (j, n-1-j): P(X(j) <= median <= X(n-1-j)) = 1 - 2 P(B <= j) with B ~ Bin(n, 1/2);
    the largest j whose coverage is still >= 95%."""
    est = estimate([float(i) for i in range(n)])
    j = int(est.ci_low)
    assert est.ci_high == n - 1 - j

    def coverage(rank: int) -> float:
        return 1 - 2 * math.fsum(math.comb(n, i) for i in range(rank + 1)) / 2**n

    assert coverage(j) >= 0.95 > coverage(j + 1)


def test_compare_with_a_small_spread_is_finite() -> None:
    """Spreads below 1 (metrics in TB/s or ratios) divide like any other."""
    card = Estimate(n=3, value=0.9, ci_low=0.9, ci_high=0.9, standard_error=0.0)
    assert compare(card, center=1.0, spread=0.05).z == pytest.approx(-2.0)


def test_compare_against_a_zero_centre_has_no_relative_deviation() -> None:
    card = Estimate(n=3, value=0.5, ci_low=0.5, ci_high=0.5, standard_error=0.0)
    assert compare(card, center=0.0, spread=1.0).relative_deviation == 0.0


def test_holm_log_by_hand_in_any_order() -> None:
    """The log form gives the log of holm(), whatever order the p-values come in, capped at 0."""
    p_values = [0.5, 0.01, 0.6, 0.4]  # Holm: 0.01 x 4, then 0.4 x 3 = 1.2, capped at 1
    adjusted = holm_log([math.log(p) for p in p_values])
    assert adjusted == pytest.approx([math.log(p) for p in holm(p_values)])
    assert adjusted == pytest.approx([0.0, math.log(0.04), 0.0, 0.0])
    uncapped = holm_log([math.log(p) for p in (0.04, 0.01, 0.5, 0.03)])
    assert uncapped == pytest.approx([math.log(p) for p in (0.09, 0.04, 0.5, 0.09)])


def test_robust_centre_of_an_even_count_is_the_midpoint() -> None:
    assert robust_center_spread([1.0, 2.0, 3.0, 4.0])[0] == 2.5
