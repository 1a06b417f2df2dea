"""Thermal-soak analysis: plateau, time constant, °C/W, throttling, clocks, drift, consistency.

Pure functions of telemetry samples and the soak's metrics; no backend, no I/O. The temperature
under the soak's GEMM load is fitted with T(t) = T_plateau - (T_plateau - T_0) * exp(-t / tau)
(scipy curve_fit) for the plateau shown. Thermal resistance is not read off that plateau: a card
that starts warm biases any rise-over-idle ratio. It is fitted to the whole run's telemetry
(gpuhealth/judge/thermal_fit.py), which the soak's memory phase (a second held power level) makes
identifiable, and it is left unmeasured, with the reason, when the fit refuses.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np
from scipy import optimize
from scipy import stats as sps

from gpuhealth.judge.thermal_fit import estimate_thermal_response
from gpuhealth.models import Scalar, SoakSummary, TelemetrySample, TestResult
from gpuhealth.throttle import HARDWARE_REASON_BITS, SW_POWER_CAP_BIT, THERMAL_REASON_BITS

LOAD_UTILIZATION_PCT = 50.0
# The software power cap is how a healthy card holds its limit under sustained load; hardware
# slowdown and the power brake are signals from the board or its supply that something is wrong.
THROTTLE_GROUPS = {
    "power cap": SW_POWER_CAP_BIT,
    "thermal": THERMAL_REASON_BITS,
    "hardware slowdown": HARDWARE_REASON_BITS,
}


def load_samples(samples: Sequence[TelemetrySample]) -> list[TelemetrySample]:
    return [
        s
        for s in samples
        if s.utilization_pct is not None and s.utilization_pct >= LOAD_UTILIZATION_PCT
    ]


def fit_plateau(times_s: Sequence[float], temps_c: Sequence[float]) -> tuple[float, float | None]:
    """(plateau °C, time constant s) of a first-order rise; the last fifth's mean if no fit."""
    t = np.asarray(times_s, dtype=float) - times_s[0]
    y = np.asarray(temps_c, dtype=float)
    tail = float(np.mean(y[-max(1, len(y) // 5) :]))
    if len(y) < 8 or float(np.ptp(y)) < 1.0:
        return tail, None

    def rise(x: np.ndarray, plateau: float, start: float, tau: float) -> np.ndarray:
        result: np.ndarray = plateau - (plateau - start) * np.exp(-x / tau)
        return result

    try:
        params, _ = optimize.curve_fit(
            rise,
            t,
            y,
            p0=(float(y.max()), float(y[0]), max(float(t[-1]) / 4, 1.0)),
            bounds=([0.0, 0.0, 0.5], [150.0, 150.0, 3600.0]),
            maxfev=5000,
        )
    except (RuntimeError, ValueError):
        return tail, None
    plateau, _, tau = (float(p) for p in params)
    if not math.isfinite(plateau) or plateau > float(y.max()) + 25.0:
        return tail, None  # a fit that extrapolates far beyond what was seen is not a plateau
    return plateau, tau


def throttle_share(samples: Sequence[TelemetrySample]) -> dict[str, float]:
    """Share of samples (0-1) in which each group of clocks-event reasons was active."""
    known = [s.clocks_event_reasons for s in samples if s.clocks_event_reasons is not None]
    if not known:
        return {}
    return {
        group: round(sum(1 for r in known if r & bits) / len(known), 4)
        for group, bits in THROTTLE_GROUPS.items()
    }


def drift_pct(times_s: Sequence[float], values: Sequence[float]) -> float | None:
    """Change of throughput over the soak (robust Theil-Sen slope), in % of the median."""
    if len(values) < 5 or len(times_s) != len(values):
        return None
    slope = float(sps.theilslopes(values, times_s).slope)
    span = times_s[-1] - times_s[0]
    median = statistics.median(values)
    return 100.0 * slope * span / median if median else None


def gemm_phase(soak: TestResult, samples: Sequence[TelemetrySample]) -> list[TelemetrySample]:
    """The samples of the soak's GEMM phase: those before its memory phase (all, in records
    from before the memory phase)."""
    start = _number(soak.parameters.get("memory_phase_start_s"))
    return [s for s in samples if start is None or s.t_s <= start]


def summarize(
    soak: TestResult,
    run_telemetry: Sequence[TelemetrySample],
    slowdown_c: float | None,
    reference_c_per_w: float | None,
    memory_limit_c: float | None = None,
) -> SoakSummary:
    """The soak's summary. run_telemetry is every test's samples on the run's time base: the
    thermal fit needs the whole run, its first sample is the card at idle. Plateau, mean power,
    clocks and throttling are the GEMM phase's (what they meant before the memory phase); maximum
    temperatures the whole soak's (the thermal guard watches both phases)."""
    loaded = load_samples(soak.telemetry)
    gemm = gemm_phase(soak, loaded)
    temps = [(s.t_s, s.temperature_c) for s in gemm if s.temperature_c is not None]
    plateau = tau = None
    if temps:
        plateau, tau = fit_plateau([t for t, _ in temps], [c for _, c in temps])
    powers = [s.power_w for s in gemm if s.power_w is not None]
    mean_power = statistics.fmean(powers) if powers else None
    estimate = estimate_thermal_response(run_telemetry)
    fit = estimate.fit
    idle = min(run_telemetry, key=lambda s: s.t_s, default=None)
    max_temp = max((s.temperature_c for s in loaded if s.temperature_c is not None), default=None)
    mem_temps = [s.memory_temperature_c for s in loaded if s.memory_temperature_c is not None]
    max_mem = max(mem_temps, default=None)
    clocks = [s.sm_clock_mhz for s in gemm if s.sm_clock_mhz is not None]
    clock_mean = statistics.fmean(clocks) if clocks else None
    iteration = soak.metric("iteration_tflops")
    ends = soak.metric("iteration_end_s")
    verification = soak.verifications[0] if soak.verifications else None
    stopped = soak.parameters.get("stopped_early")
    return SoakSummary(
        duration_s=soak.duration_s,
        iterations=len(iteration.values) if iteration else 0,
        mismatched_iterations=verification.mismatches if verification else 0,
        idle_temperature_c=idle.temperature_c if idle else None,
        max_temperature_c=max_temp,
        plateau_temperature_c=_round(plateau, 2),
        time_constant_s=_round(tau, 2),
        mean_power_w=_round(mean_power, 2),
        thermal_resistance_c_per_w=_round(fit.c_per_w, 5)
        if fit is not None and estimate.refusal is None
        else None,
        reference_c_per_w=reference_c_per_w,
        max_memory_temperature_c=max_mem,
        slowdown_margin_c=None if slowdown_c is None or max_temp is None else slowdown_c - max_temp,
        sm_clock_mean_mhz=_round(clock_mean, 1),
        sm_clock_cv=_round(statistics.pstdev(clocks) / clock_mean, 5)
        if clocks and clock_mean
        else None,
        throttle_share=throttle_share(gemm),
        throughput_drift_pct=_round(
            drift_pct(ends.values, iteration.values) if iteration and ends else None, 3
        ),
        stopped_early=str(stopped) if stopped is not None else None,
        thermal_resistance_low_c_per_w=_round(fit.c_per_w_low, 5) if fit else None,
        thermal_resistance_high_c_per_w=_round(fit.c_per_w_high, 5) if fit else None,
        thermal_fit_time_constant_s=_round(fit.tau_s, 2) if fit else None,
        thermal_fit_rms_c=_round(fit.rms_residual_c, 3) if fit else None,
        thermal_resistance_refusal=estimate.refusal,
        memory_temperature_headroom_c=None
        if memory_limit_c is None or max_mem is None
        else memory_limit_c - max_mem,
    )


def _number(value: Scalar | None) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)
