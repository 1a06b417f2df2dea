"""Statistics on numbers only (scipy.stats): no I/O, no GPU.

- estimate(): a card's metric from its repetitions: the median, with a distribution-free confidence
  interval from order statistics (binomial), and the standard error that interval implies.
- compare(): the card's estimate against healthy cards of its model: a standardised distance that
  includes both the healthy spread and the card's own measurement error, the card's percentile
  among healthy cards, a one-sided p-value (how likely a healthy card measures this badly or
  worse) and the relative deviation from the healthy centre.
- holm(): Holm's step-down adjustment, so that the chance of failing a healthy card on any of its
  many metrics stays at alpha (family-wise), not alpha per metric; holm_log() does the same on
  log p-values, which do not underflow: a card 50 spreads below its model has p = e^-1254, not 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as sps

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    n: int
    value: float
    ci_low: float
    ci_high: float
    standard_error: float


@dataclass(frozen=True)
class Comparison:
    z: float  # negative = worse than the healthy centre, whatever the metric's direction
    percentile: float  # 0-100: share of healthy cards that measure worse than this card
    p_value: float  # one-sided: P(a healthy card measures this badly or worse)
    relative_deviation: float  # signed (estimate - centre) / centre; negative = worse


def estimate(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Median of the repetitions with an order-statistic confidence interval."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("no repetitions to estimate from")
    median = float(sps.scoreatpercentile(ordered, 50)) if n > 1 else ordered[0]
    low_rank, high_rank = _median_ci_ranks(n, confidence)
    ci_low, ci_high = ordered[low_rank], ordered[high_rank]
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    return Estimate(n, median, ci_low, ci_high, (ci_high - ci_low) / (2 * z))


def _median_ci_ranks(n: int, confidence: float) -> tuple[int, int]:
    """0-based ranks (j, k) with P(X(j) <= median <= X(k)) >= confidence, B ~ Binomial(n, 1/2).

    With too few values for the requested confidence the interval is the full range."""
    alpha = 1 - confidence
    j = int(sps.binom.ppf(alpha / 2, n, 0.5))  # smallest j with P(B <= j) >= alpha/2
    j = max(j - 1, 0)
    k = n - 1 - j
    return j, max(j, k)


def compare(
    card: Estimate, center: float, spread: float, higher_is_better: bool = True
) -> Comparison:
    """The card against the healthy distribution N(center, spread²), with its own error added."""
    sigma = math.sqrt(spread**2 + card.standard_error**2)
    sign = 1.0 if higher_is_better else -1.0
    delta = sign * (card.value - center)
    z = delta / sigma if sigma > 0 else (0.0 if delta == 0 else math.copysign(math.inf, delta))
    p = float(sps.norm.cdf(z))
    relative = sign * (card.value - center) / abs(center) if center else 0.0
    return Comparison(z=z, percentile=100.0 * p, p_value=p, relative_deviation=relative)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (monotone, capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def log_p_lower(z: float) -> float:
    """log of the one-sided p-value P(Z <= z): finite for any finite z (norm.cdf(-40) is 0.0,
    norm.logcdf(-40) is -804.6), -inf only for z = -inf."""
    return float(sps.norm.logcdf(z))


def holm_log(log_p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted log p-values, in the input order (monotone, capped at log 1 = 0)."""
    m = len(log_p_values)
    order = sorted(range(m), key=lambda i: log_p_values[i])
    adjusted = [0.0] * m
    running = -math.inf
    for rank, i in enumerate(order):
        running = max(running, min(0.0, math.log(m - rank) + log_p_values[i]))
        adjusted[i] = running
    return adjusted


def robust_center_spread(values: Sequence[float]) -> tuple[float, float]:
    """Median and MAD scaled to a normal SD: one bad card cannot move either much."""
    center = float(sps.scoreatpercentile(values, 50))
    mad = float(sps.median_abs_deviation(values, scale="normal"))
    return center, mad
