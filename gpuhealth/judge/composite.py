"""One score per subsystem: the card's performance judged by cause, not metric by metric.

The six memory metrics share one cause (the memory), as do the soak's throughput and its
throughput per watt at the power cap: judging them one by one counts one cause many times and
makes the grade hinge on the noisiest of them. Per subsystem:

  L      = mean over its judged metrics of log(estimate / reference centre)
  deficit = 1 − e^L                        (positive: slower than the model)

and four sources of uncertainty, each relative:

  between  healthy cards of the model differ (the mean of the metrics' relative spreads: the
           metrics of one subsystem move together, so their spreads do not average out)
  centre   the reference centre is itself an estimate, from n cards: between / √n
  run      one card graded twice differs (RUN_TO_RUN: one H100 graded three times differed by up
           to 1.4–1.6%, bench/RESULTS.md)
  measure  this run's own measurement error: the metrics' standard errors, averaged

Healthy or not: T = L / √(between² + centre² + run² + measure²), with Student-t tails of
`tail_dof` degrees of freedom (healthy populations have heavier tails than a normal, and the
spreads are priors); one-sided log p, Holm over the subsystems.
How slow at least: the deficit's one-sided `bound_confidence` lower bound uses
√(centre² + run² + measure²): what is known about this card's level against the model's true
centre. A grade C or D is given on that bound, never on the point estimate alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as sps

from gpuhealth.judge import stats
from gpuhealth.models import MetricComparison, SubsystemScore

SUBSYSTEMS: dict[str, tuple[str, ...]] = {
    "memory": (
        "bandwidth.copy_gbs",
        "bandwidth.scale_gbs",
        "bandwidth.add_gbs",
        "bandwidth.triad_gbs",
        "bandwidth.read_gbs",
        "memtest.pass_gbs",
    ),
    "fp32": ("fp32.fp32_tflops", "gemm.fp32_tflops"),
    "tensor": (
        "fp16_tensor.mma_tflops",
        "fp16_tensor.tensor_gemm_tflops",
        "gemm.fp16_tflops",
    ),
    "sustained": ("soak.iteration_tflops", "efficiency.soak_tflops_per_w"),
}
TITLES = {
    "memory": "memory bandwidth",
    "fp32": "FP32 throughput",
    "tensor": "tensor-core throughput",
    "sustained": "sustained throughput at the power cap",
}


@dataclass(frozen=True)
class Settings:
    """The policy's [statistics] that the composite uses."""

    alpha: float
    min_relative_deficit: float
    run_to_run: float
    tail_dof: float
    bound_confidence: float


def score_subsystems(
    comparisons: Sequence[MetricComparison], settings: Settings
) -> tuple[SubsystemScore, ...]:
    """A score for each subsystem with at least one judged metric, Holm-adjusted together."""
    by_key = {f"{c.test}.{c.metric}": c for c in comparisons if c.reference is not None}
    raw = [
        _score(name, [by_key[k] for k in keys if k in by_key], settings)
        for name, keys in SUBSYSTEMS.items()
        if any(k in by_key for k in keys)
    ]
    adjusted = stats.holm_log([s.log_p for s in raw])
    return tuple(
        _with_verdict(s, log_p_adj, settings) for s, log_p_adj in zip(raw, adjusted, strict=True)
    )


@dataclass(frozen=True)
class _Raw:
    name: str
    metrics: tuple[str, ...]
    log_ratio: float
    between: float
    centre: float
    measure: float
    run: float
    t: float
    log_p: float
    deficit_low: float
    cards: int


def _score(name: str, rows: list[MetricComparison], settings: Settings) -> _Raw:
    references = [c.reference for c in rows if c.reference is not None]
    assert len(references) == len(rows)  # only judged metrics are scored
    # estimates are positive (evidence.py refuses others) and centres too (profiles.py)
    pairs = zip(rows, references, strict=True)
    log_ratio = sum(math.log(c.estimate / r.center) for c, r in pairs) / len(rows)
    between = sum(r.spread / r.center for r in references) / len(rows)
    cards = max(1, min(r.n for r in references))
    centre = between / math.sqrt(cards)
    measure = math.sqrt(sum(_relative_se(c) ** 2 for c in rows)) / len(rows)
    run = settings.run_to_run
    healthy_sd = math.sqrt(between**2 + centre**2 + run**2 + measure**2)
    t = log_ratio / healthy_sd if healthy_sd > 0 else math.copysign(math.inf, log_ratio)
    log_p = float(sps.t.logcdf(t, settings.tail_dof))
    known_sd = math.sqrt(centre**2 + run**2 + measure**2)
    q = float(sps.t.ppf(settings.bound_confidence, settings.tail_dof))
    deficit_low = 1.0 - math.exp(log_ratio + q * known_sd)
    return _Raw(
        name,
        tuple(f"{c.test}.{c.metric}" for c in rows),
        log_ratio,
        between,
        centre,
        measure,
        run,
        t,
        log_p,
        deficit_low,
        cards,
    )


def _relative_se(row: MetricComparison) -> float:
    """The estimate's standard error as a share of it, from its 95% interval."""
    half = (row.ci_high - row.ci_low) / 2
    return half / 1.959963984540054 / row.estimate


def _with_verdict(raw: _Raw, log_p_adjusted: float, settings: Settings) -> SubsystemScore:
    deficit = 1.0 - math.exp(raw.log_ratio)
    significant = log_p_adjusted < math.log(settings.alpha)
    slow = significant and deficit >= settings.min_relative_deficit
    return SubsystemScore(
        name=raw.name,
        metrics=raw.metrics,
        deficit=deficit,
        deficit_low=raw.deficit_low,
        t=raw.t,
        p_adjusted=math.exp(log_p_adjusted),
        between_rel=raw.between,
        centre_rel=raw.centre,
        run_rel=raw.run,
        measure_rel=raw.measure,
        reference_cards=raw.cards,
        verdict="low" if slow else "ok",
    )
