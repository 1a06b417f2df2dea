"""Thermal resistance by system identification over a whole run's telemetry.

Model (the one the simulated card runs, gpuhealth/measure/backends/simphysics.py), board power P(t):

    T(t) = T_amb + F(t) + S(t)
    dF/dt = (R_fast * P - F) / tau_fast     die to spreader: tenths of a second to a second
    dS/dt = (R_slow * P - S) / tau          heat sink: seconds to minutes

Thermal resistance is R_fast + R_slow (°C per W at steady state). S(0) is a free parameter, so a
card still warm from an earlier load is explained by stored heat, not by a hot ambient; F starts
settled (it forgets its start within seconds).

Power is piecewise constant between samples: the energy counter's increase over the interval where
it is there (the exact mean power; NVML's power reading is a ~1 s average that lags a step), else
the reading. Each stage is stepped exactly: x_i = a x_(i-1) + (1 - a) R P_i, a = exp(-dt / tau).
For fixed time constants the temperature is linear in (T_amb, R_fast, R_slow, S(0)), so each
(tau_fast, tau) is one small linear least-squares solve (variable projection): tau is scanned on a
log grid and polished by a bounded scalar search, tau_fast by a bounded search at the best tau. No
starting point to guess; no local minimum in the linear parameters.

Fail closed. T_amb, R_slow and S(0) separate only when the run holds two power levels, each for
about the slow time constant; a warm start followed by one long load fits any R between wide
limits equally well (more stored heat and a cooler ambient, or the reverse). So the fit carries a
95 % profile interval for R: the union, over every tau whose fit is statistically as good as the
best, of the linear confidence range of R_fast + R_slow. It refuses (None) when that interval is
wider than the tolerance, when the residual is too large or the fit unphysical, or when the power
range is too narrow. Pure functions of samples: no backend, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize

from gpuhealth.models import TelemetrySample

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MAX_REL_UNCERTAINTY = 0.10  # the policy flags at 1.25x: a wider interval cannot tell such a card
MAX_RMS_RESIDUAL_C = 2.0  # worse than this, the card is not following the model we assume
MIN_POWER_RANGE_W = 150.0  # power spread needed to see a resistance at all
MIN_SAMPLES = 30
AMBIENT_RANGE_C = (0.0, 70.0)  # the sensor's zero-power temperature: inlet air plus a few °C
TAU_MIN_S = 0.5
TAU_MAX_S = 3600.0  # a longer slow stage is a ramp within any run: such a run is refused
TAU_GRID_POINTS = 32
TAU_FAST_MAX_S = 3.0
GAP_MIN_S = 2.0  # an interval longer than this (and 5x the usual one) is a gap between tests
MAX_SEGMENTS = 8
QUANTISATION_VAR_C2 = 1.0 / 12.0  # NVML reports whole °C: the noise floor of any fit
DELTA_CHI2 = 4.0  # about 95 % for the one parameter R, profiled over the others
LADDER_STEPS = (-6, -4, -3, -2, -1, 1, 2, 3, 4, 6)
MAX_EXP = 500.0  # exp() range per block of the lag filter (float64 overflows near 709)


@dataclass(frozen=True)
class ThermalFit:
    c_per_w: float  # R_fast + R_slow: steady-state °C per W
    c_per_w_low: float  # 95 % profile interval of c_per_w
    c_per_w_high: float
    c_per_w_fast: float
    c_per_w_slow: float
    tau_fast_s: float
    tau_s: float  # slow stage time constant
    ambient_c: float
    initial_excess_c: float  # S(0) - R_slow * P(first sample): > 0 when the run started warm
    rms_residual_c: float
    n_samples: int
    power_range_w: float

    @property
    def rel_uncertainty(self) -> float:
        """Half-width of the interval relative to the estimate (inf when it is not positive)."""
        if self.c_per_w <= 0:
            return math.inf
        return (self.c_per_w_high - self.c_per_w_low) / 2.0 / self.c_per_w


@dataclass(frozen=True)
class ThermalEstimate:
    """The best fit (None when nothing could be fitted) and why it is refused (None = trusted)."""

    fit: ThermalFit | None
    refusal: str | None


@dataclass(frozen=True)
class _Series:
    t: FloatArray  # sample times, s, increasing
    temp: FloatArray  # °C, NaN where missing
    power: FloatArray  # mean power over (t[i-1], t[i]], W; 0 at a segment's first sample
    fast_power: FloatArray  # power just before t[i] (not a gap's mean), NaN where unknown
    starts: tuple[int, ...]  # first index of each stretch of unbroken power knowledge
    rows: BoolArray  # samples the residual counts: temperature and fast power known
    y: FloatArray  # temp[rows]
    all_rows: bool


@dataclass(frozen=True)
class _Solve:
    tau: float
    rss: float
    beta: FloatArray  # T_amb, R_fast, R_slow, then S(0) of each segment
    r_var: float  # (X'X)^-1 projected on R_fast + R_slow
    residual: FloatArray


def fit_thermal_response(
    samples: Sequence[TelemetrySample],
    *,
    max_rel_uncertainty: float = MAX_REL_UNCERTAINTY,
    max_rms_c: float = MAX_RMS_RESIDUAL_C,
    min_power_range_w: float = MIN_POWER_RANGE_W,
) -> ThermalFit | None:
    """Thermal resistance from a run's telemetry (every test, one time base), None if unmeasured."""
    estimate = estimate_thermal_response(
        samples,
        max_rel_uncertainty=max_rel_uncertainty,
        max_rms_c=max_rms_c,
        min_power_range_w=min_power_range_w,
    )
    return estimate.fit if estimate.refusal is None else None


def estimate_thermal_response(
    samples: Sequence[TelemetrySample],
    *,
    max_rel_uncertainty: float = MAX_REL_UNCERTAINTY,
    max_rms_c: float = MAX_RMS_RESIDUAL_C,
    min_power_range_w: float = MIN_POWER_RANGE_W,
) -> ThermalEstimate:
    """The fit with its interval, and the reason it is refused if it is (for reports and tests)."""
    series = _series(samples)
    if series is None:
        return ThermalEstimate(None, "fewer than two samples")
    n = int(series.rows.sum())
    if n < MIN_SAMPLES:
        return ThermalEstimate(None, f"{n} samples with temperature and power (need {MIN_SAMPLES})")
    if len(series.starts) > MAX_SEGMENTS:
        return ThermalEstimate(None, f"telemetry broken into {len(series.starts)} stretches")
    # Third lowest to third highest: one glitch does not make a range.
    ranked = np.sort(series.fast_power[series.rows])
    power_range = float(ranked[-3] - ranked[2])
    if power_range < min_power_range_w:
        return ThermalEstimate(
            None, f"power range {power_range:.0f} W (need {min_power_range_w:.0f} W)"
        )

    taus = np.geomspace(TAU_MIN_S, TAU_MAX_S, TAU_GRID_POINTS)
    # tau_fast is found at the slow stage's best tau (instantaneous fast stage first), then held:
    # it shapes the first second after a step, hardly the steady state R.
    instant = _fast_column(series, 0.0)
    coarse = min((_solve(series, instant, float(tau)) for tau in taus[::2]), key=_rss)
    tau_fast = _best_tau_fast(series, coarse.tau)
    fast = _fast_column(series, tau_fast)
    grid = [_solve(series, fast, float(tau)) for tau in taus]
    best = _refine(series, fast, grid)
    p = len(best.beta)
    if n <= p + 2:
        return ThermalEstimate(None, f"{n} samples for {p} parameters")

    # Residuals are correlated (slow quantisation steps, load patterns): fewer independent samples
    # than rows, so the noise variance is inflated by (1 + rho) / (1 - rho).
    rho = _lag1_autocorrelation(best.residual)
    variance = max(best.rss / (n - p), QUANTISATION_VAR_C2) * (1.0 + rho) / (1.0 - rho)
    threshold = best.rss + DELTA_CHI2 * variance
    # The grid is coarse (x1.33 per step) where the data pin tau down: a fine ladder around the best
    # tau carries its uncertainty into the interval.
    ladder = [_solve(series, fast, best.tau * math.exp(0.04 * k)) for k in LADDER_STEPS]
    low, high = math.inf, -math.inf
    for solve in [*grid, best, *ladder]:
        if solve.rss <= threshold:
            half = math.sqrt((threshold - solve.rss) * max(solve.r_var, 0.0))
            low, high = min(low, _total(solve) - half), max(high, _total(solve) + half)

    ambient, r_fast, r_slow, s0 = (float(v) for v in best.beta[:4])
    fit = ThermalFit(
        c_per_w=r_fast + r_slow,
        c_per_w_low=low,
        c_per_w_high=high,
        c_per_w_fast=r_fast,
        c_per_w_slow=r_slow,
        tau_fast_s=tau_fast,
        tau_s=best.tau,
        ambient_c=ambient,
        initial_excess_c=s0 - r_slow * _first_finite(series.fast_power),
        rms_residual_c=math.sqrt(best.rss / n),
        n_samples=n,
        power_range_w=power_range,
    )
    return ThermalEstimate(fit, _refusal(fit, max_rel_uncertainty, max_rms_c))


def _refusal(fit: ThermalFit, max_rel_uncertainty: float, max_rms_c: float) -> str | None:
    if fit.rms_residual_c > max_rms_c:
        return f"fit residual {fit.rms_residual_c:.2f} °C RMS (limit {max_rms_c:.2f} °C)"
    if fit.c_per_w_low <= 0 or fit.rel_uncertainty > max_rel_uncertainty:
        return (
            f"resistance not identified: fits as good as the best give {fit.c_per_w_low:.4f} to "
            f"{fit.c_per_w_high:.4f} °C/W (limit ±{100 * max_rel_uncertainty:.0f} %); the run "
            "needs two power levels, each held for about the time constant"
        )
    if fit.c_per_w_fast < 0 or fit.c_per_w_slow < 0:
        return (
            f"unphysical fit: a negative stage (fast {fit.c_per_w_fast:.4f}, "
            f"slow {fit.c_per_w_slow:.4f} °C/W)"
        )
    if not AMBIENT_RANGE_C[0] <= fit.ambient_c <= AMBIENT_RANGE_C[1]:
        return f"implausible ambient {fit.ambient_c:.1f} °C"
    return None


def _series(samples: Sequence[TelemetrySample]) -> _Series | None:
    """Time-ordered samples with each interval's mean power and the breaks in power knowledge."""
    ordered = sorted((s for s in samples if math.isfinite(s.t_s)), key=lambda s: s.t_s)
    kept: list[TelemetrySample] = []
    for s in ordered:
        if not kept or s.t_s > kept[-1].t_s:  # a repeated time adds no interval
            kept.append(s)
    if len(kept) < 2:
        return None
    t = np.array([s.t_s for s in kept])
    temp = np.array([_num(s.temperature_c) for s in kept])
    reading = np.array([_num(s.power_w) for s in kept])
    energy = np.array([_num(s.energy_j) for s in kept])
    dt = np.diff(t)
    gap = dt > max(GAP_MIN_S, 5.0 * float(np.median(dt)))
    known = reading[np.isfinite(reading)]
    ceiling = 2.0 * float(known.max()) + 100.0 if known.size else 5000.0
    with np.errstate(invalid="ignore"):
        from_energy = np.diff(energy) / dt
    # A counter that went back or jumped (reset, wrap) is not trusted for that interval.
    energy_ok = np.isfinite(from_energy) & (from_energy >= 0.0) & (from_energy <= ceiling)
    reading_held = np.where(np.isfinite(reading[1:]), reading[1:], reading[:-1])
    interval = np.where(energy_ok, from_energy, np.where(gap, np.nan, reading_held))
    # Across a gap only the energy counter knows the mean power, and not what came last.
    fast = np.concatenate([[reading[0]], np.where(gap, reading[1:], interval)])
    broken = ~np.isfinite(interval)  # unknown power: the slow state's history starts again
    starts = (0, *(int(i) + 1 for i in np.flatnonzero(broken)))
    power = np.concatenate([[0.0], np.where(broken, 0.0, interval)])
    rows = np.isfinite(temp) & np.isfinite(fast)
    return _Series(t, temp, power, fast, starts, rows, temp[rows], bool(rows.all()))


def _first_finite(values: FloatArray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[0]) if finite.size else math.nan


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _segments(series: _Series) -> list[slice]:
    ends = (*series.starts[1:], len(series.t))
    return [slice(a, b) for a, b in zip(series.starts, ends, strict=True)]


def _lag(t: FloatArray, power: FloatArray, tau: float) -> FloatArray:
    """State from zero at t[0]: x_i = a_i x_(i-1) + (1 - a_i) P_i with a_i = exp(-dt_i / tau).

    Vectorised as exp(-u_i) * sum_j (1 - a_j) P_j exp(u_j), u = (t - t_block) / tau, in blocks
    short enough for exp(); the sum has positive terms only, so it loses no precision."""
    n = len(t)
    out = np.zeros(n)
    gain = -np.expm1(-np.diff(t) / tau) * power[1:]
    state, start = 0.0, 1
    while start < n:
        end = int(np.searchsorted(t, t[start - 1] + MAX_EXP * tau, side="right"))
        end = min(max(end, start + 1), n)
        weight = np.exp(np.minimum((t[start:end] - t[start - 1]) / tau, MAX_EXP))
        out[start:end] = (state + np.cumsum(gain[start - 1 : end - 1] * weight)) / weight
        state, start = float(out[end - 1]), end
    return out


def _fast_column(series: _Series, tau_fast: float) -> FloatArray:
    """The fast stage per watt of R_fast: the power itself, or its lag settled at the start."""
    if tau_fast <= 0.0:
        return np.where(np.isfinite(series.fast_power), series.fast_power, 0.0)
    column = np.zeros(len(series.t))
    for part in _segments(series):
        t = series.t[part]
        first = series.fast_power[part][0]
        settled = float(first) * np.exp(-(t - t[0]) / tau_fast) if math.isfinite(first) else 0.0
        column[part] = _lag(t, series.power[part], tau_fast) + settled
    return column


def _solve(series: _Series, fast: FloatArray, tau: float) -> _Solve:
    """Least squares of T on 1, fast stage, slow lag, and each segment's decaying S(0)."""
    parts = _segments(series)
    x = np.empty((len(series.t), 3 + len(parts)))
    x[:, 0] = 1.0
    x[:, 1] = fast
    if len(parts) > 1:
        x[:, 3:] = 0.0
    for k, part in enumerate(parts):
        t = series.t[part]
        x[part, 2] = _lag(t, series.power[part], tau)
        x[part, 3 + k] = np.exp(-(t - t[0]) / tau)
    if not series.all_rows:
        x = x[series.rows]
    y = series.y
    # Normal equations on scaled columns: a 4x4 solve, far cheaper than an SVD of the whole design.
    scale = np.maximum(np.sqrt(np.einsum("ij,ij->j", x, x)), 1e-12)
    xs = x / scale
    gram = xs.T @ xs
    try:
        gram_inv = np.linalg.inv(gram)
    except np.linalg.LinAlgError:
        gram_inv = np.linalg.pinv(gram)
    beta = gram_inv @ (xs.T @ y) / scale
    residual = y - x @ beta
    g = np.zeros(x.shape[1])
    g[1] = g[2] = 1.0
    g = g / scale
    return _Solve(tau, float(residual @ residual), beta, float(g @ gram_inv @ g), residual)


def _rss(solve: _Solve) -> float:
    return solve.rss


def _best_tau_fast(series: _Series, tau: float) -> float:
    def rss(tau_fast: float) -> float:
        return _solve(series, _fast_column(series, tau_fast), tau).rss

    result = optimize.minimize_scalar(
        rss, bounds=(0.05, TAU_FAST_MAX_S), method="bounded", options={"xatol": 0.05}
    )
    found = float(result.x)
    return found if rss(found) < rss(0.0) else 0.0


def _refine(series: _Series, fast: FloatArray, grid: list[_Solve]) -> _Solve:
    """The grid's best tau, polished by a bounded search on log tau between its neighbours."""
    i = min(range(len(grid)), key=lambda k: grid[k].rss)
    lo, hi = grid[max(i - 1, 0)].tau, grid[min(i + 1, len(grid) - 1)].tau
    result = optimize.minimize_scalar(
        lambda log_tau: _solve(series, fast, math.exp(log_tau)).rss,
        bounds=(math.log(lo), math.log(hi)),
        method="bounded",
        options={"xatol": 1e-3},
    )
    refined = _solve(series, fast, math.exp(float(result.x)))
    return refined if refined.rss < grid[i].rss else grid[i]


def _total(solve: _Solve) -> float:
    return float(solve.beta[1] + solve.beta[2])


def _lag1_autocorrelation(residual: FloatArray) -> float:
    if len(residual) < 3 or float(np.std(residual)) == 0.0:
        return 0.0
    rho = float(np.corrcoef(residual[:-1], residual[1:])[0, 1])
    return min(max(rho if math.isfinite(rho) else 0.0, 0.0), 0.9)
