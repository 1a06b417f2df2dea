"""Performance per watt: throughput divided by the board power NVML reported while it was measured.

Derived from a record's tests as one more "test" (named `efficiency`), so that its metrics are
compared with the model's reference like any other (stats.compare, Holm) and a profile built from
trusted runs gets them too.

NVML's power reading settles over a fraction of a second and the telemetry is sampled every
0.1-0.25 s, so only a load that lasts seconds gives a power figure worth dividing by:
- soak_tflops_per_w: every soak iteration's TFLOP/s over the mean power of the samples taken
  during that iteration (one value per iteration, so the estimate has repetitions);
- memory_phase_gbs_per_w: the soak's memory phase (triads back to back for a minute or more),
  every ~1 s chunk's GB/s over the mean power of the samples taken during that chunk; the first
  chunk is left out, while the power still falls from the GEMM phase's. (The memory test is too
  short for the power reading to settle.)
"""

from __future__ import annotations

import statistics
from bisect import bisect_right
from collections.abc import Sequence

from gpuhealth.models import Metric, TelemetrySample, TestResult

EFFICIENCY_TEST = "efficiency"


def efficiency_test(tests: Sequence[TestResult]) -> TestResult | None:
    """The record's performance-per-watt metrics as a test result; None when none can be had."""
    metrics = [m for m in (_soak(tests), _memory_phase(tests)) if m is not None]
    if not metrics:
        return None
    return TestResult(
        name=EFFICIENCY_TEST,
        status="passed",
        message="throughput per watt of board power (NVML), derived from the tests above",
        metrics=tuple(metrics),
    )


def _soak(tests: Sequence[TestResult]) -> Metric | None:
    soak = _passed(tests, "soak")
    if soak is None:
        return None
    rates, ends = soak.metric("iteration_tflops"), soak.metric("iteration_end_s")
    if rates is None or ends is None or len(rates.values) != len(ends.values):
        return None
    values = []
    window = _Windows(soak.telemetry)
    starts = (soak.started_s, *ends.values[:-1])  # an iteration starts where the last one ended
    for rate, start_s, end_s in zip(rates.values, starts, ends.values, strict=True):
        power = _mean_power(window.between(start_s, end_s))
        if power is not None:
            values.append(round(rate / power, 6))
    if len(values) < 2:
        return None
    return Metric("soak_tflops_per_w", "TFLOP/s/W", tuple(values))


def _memory_phase(tests: Sequence[TestResult]) -> Metric | None:
    soak = _passed(tests, "soak")
    if soak is None:
        return None
    rates, ends = soak.metric("memory_phase_gbs"), soak.metric("memory_phase_chunk_end_s")
    start = soak.parameters.get("memory_phase_start_s")
    if rates is None or ends is None or len(rates.values) != len(ends.values):
        return None
    if isinstance(start, bool) or not isinstance(start, int | float):
        return None
    values = []
    window = _Windows(soak.telemetry)
    starts = (float(start), *ends.values[:-1])  # a chunk starts where the last one ended
    for rate, start_s, end_s in list(zip(rates.values, starts, ends.values, strict=True))[1:]:
        power = _mean_power(window.between(start_s, end_s))
        if power is not None:
            values.append(round(rate / power, 6))
    if len(values) < 2:
        return None
    return Metric("memory_phase_gbs_per_w", "GB/s/W", tuple(values))


class _Windows:
    """The samples in (start, end], by binary search over the samples in time order (a soak
    has hundreds of iterations and samples: a scan per iteration took most of the analysis)."""

    def __init__(self, samples: Sequence[TelemetrySample]) -> None:
        self._samples = sorted(samples, key=lambda s: s.t_s)
        self._times = [s.t_s for s in self._samples]

    def between(self, start_s: float, end_s: float) -> Sequence[TelemetrySample]:
        low = bisect_right(self._times, start_s)
        return self._samples[low : bisect_right(self._times, end_s, lo=low)]


def _passed(tests: Sequence[TestResult], name: str) -> TestResult | None:
    return next((t for t in tests if t.name == name and t.status == "passed"), None)


def _mean_power(samples: Sequence[TelemetrySample]) -> float | None:
    powers = [s.power_w for s in samples if s.power_w is not None and s.power_w > 0]
    return statistics.fmean(powers) if powers else None
