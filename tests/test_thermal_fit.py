"""Thermal resistance by system identification (gpuhealth/judge/thermal_fit.py).

Synthetic runs come from the model itself (a fast and a slow first-order stage, 1 °C readings,
noise), the simulated card's physics, and real telemetry. A run's estimate must not depend on the
card starting warm, and where the run cannot tell R apart from stored heat the fit must refuse.
"""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gpuhealth.judge.thermal_fit import estimate_thermal_response, fit_thermal_response
from gpuhealth.measure.backends.simcards import load_model
from gpuhealth.measure.backends.simphysics import CardPhysics
from gpuhealth.models import TelemetrySample, record_from_json

DATA = Path(__file__).resolve().parent / "data" / "runs"
REFERENCE = Path(__file__).resolve().parent.parent / "gpuhealth" / "data" / "reference"
H100_RUNS = (
    "h100-quick-2026-11-26.json",
    "h100-quick-second-2026-11-26.json",
    "h100-standard-2026-11-26.json",
)
H200_RUNS = ("h200-standard-2026-11-26.json", "h200-quick-second-card-2026-11-26.json")

IDLE_W = 80.0
# A grading run's tests (bandwidth, memtest, fp32, tensor, gemm) as (watts, seconds), then the soak.
TESTS = ((400.0, 0.4), (380.0, 1.0), (445.0, 1.2), (430.0, 1.8), (662.0, 0.4))


def schedule(soak_s: float, cool_s: float) -> list[tuple[float, float]]:
    return [(IDLE_W, 0.2), *TESTS, (700.0, soak_s), (IDLE_W, cool_s)]


def model_run(
    r_fast: float = 0.027,
    r_slow: float = 0.019,
    tau_s: float = 15.0,
    ambient_c: float = 31.0,
    warm_c: float = 0.0,
    soak_s: float = 30.0,
    cool_s: float = 60.0,
    noise_c: float = 0.4,
    seed: int = 1,
) -> list[TelemetrySample]:
    """The model stepped exactly at 0.2 s (jittered): warm_c of stored heat above idle at t = 0."""
    rng = np.random.default_rng(seed)
    slow = r_slow * IDLE_W + warm_c
    t, energy, samples = 0.0, 0.0, []
    for watts, seconds in schedule(soak_s, cool_s):
        end = t + seconds
        while t < end - 1e-9:
            dt = min(0.2 + 0.01 * float(rng.standard_normal()), end - t)
            slow += (r_slow * watts - slow) * -math.expm1(-dt / tau_s)
            t, energy = t + dt, energy + watts * dt
            temp = ambient_c + r_fast * watts + slow + noise_c * float(rng.standard_normal())
            samples.append(
                TelemetrySample(
                    t_s=round(t, 4),
                    temperature_c=float(round(temp)),
                    power_w=watts,
                    energy_j=round(energy, 3),
                )
            )
    return samples


def sim_run(model: str, scale: float, warm_s: float, cool_s: float = 60.0) -> list[TelemetrySample]:
    """The simulated card's physics (simphysics.CardPhysics): a run, then an idle cool-down."""
    physics = CardPhysics(load_model(model), scale, None)
    for _ in range(int(warm_s / 0.2)):  # an earlier run, not recorded
        physics.advance(0.2, 1555.0)
    for _ in range(25):  # a few seconds between runs
        physics.advance(0.2, None)
    t, energy, samples = 0.0, 0.0, []
    steps = [(None, 0.2), *TESTS, (1555.0, 30.0), (None, cool_s)]
    for demand, seconds in steps:
        for _ in range(round(seconds / 0.2)):
            physics.advance(0.2, demand)
            t, energy = t + 0.2, energy + physics.power_w * 0.2
            samples.append(
                TelemetrySample(
                    t_s=round(t, 4),
                    temperature_c=float(round(physics.gpu_temperature_c)),
                    power_w=round(physics.power_w, 2),
                    energy_j=round(energy, 3),
                )
            )
    return samples


def sim_true_c_per_w(model: str, scale: float) -> float:
    thermal = load_model(model).thermal
    return (thermal.gpu_r_fast_c_per_w + thermal.gpu_r_slow_c_per_w) * scale


def run_samples(name: str) -> list[TelemetrySample]:
    record = record_from_json((DATA / name).read_text(encoding="utf-8"), name)
    return [s for test in record.tests for s in test.telemetry]


def reference_csv(name: str, until_s: float | None = None) -> list[TelemetrySample]:
    with (REFERENCE / name).open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        TelemetrySample(
            t_s=float(r["t"]),
            temperature_c=float(r["temp_c"]),
            power_w=float(r["power_w"]),
            energy_j=float(r["energy_j"]),
        )
        for r in rows
        if until_s is None or float(r["t"]) <= until_s
    ]


@pytest.mark.parametrize("warm_c", [0.0, 12.0], ids=["cold", "warm"])
def test_known_resistance_is_recovered_whatever_the_start(warm_c: float) -> None:
    fit = fit_thermal_response(model_run(warm_c=warm_c))
    assert fit is not None
    assert fit.c_per_w == pytest.approx(0.046, rel=0.03)
    assert fit.c_per_w_low <= 0.046 <= fit.c_per_w_high
    assert fit.rel_uncertainty < 0.05
    assert fit.tau_s == pytest.approx(15.0, rel=0.3)
    assert fit.ambient_c == pytest.approx(31.0, abs=1.5)
    assert fit.initial_excess_c == pytest.approx(warm_c, abs=1.5)  # the warm start is seen as such
    assert fit.rms_residual_c < 0.7


def test_warm_start_with_one_load_level_is_refused() -> None:
    """No hold at a second power level: ambient and stored heat trade off against R. Fail closed."""
    samples = model_run(warm_c=12.0, soak_s=120.0, cool_s=0.0)
    assert fit_thermal_response(samples) is None
    estimate = estimate_thermal_response(samples)
    assert estimate.fit is not None and estimate.refusal is not None
    assert "not identified" in estimate.refusal
    assert estimate.fit.rel_uncertainty > 0.10


def test_flat_power_is_refused() -> None:
    samples = [
        TelemetrySample(t_s=0.2 * i, temperature_c=60.0 + (i % 2), power_w=700.0)
        for i in range(300)
    ]
    estimate = estimate_thermal_response(samples)
    assert fit_thermal_response(samples) is None
    assert estimate.refusal is not None and "power range" in estimate.refusal


def test_too_few_samples_are_refused() -> None:
    assert fit_thermal_response(model_run()[:20]) is None
    assert fit_thermal_response([]) is None


def test_missing_values_gaps_and_order_are_handled() -> None:
    samples = model_run(warm_c=8.0)
    holes = [
        replace(s, temperature_c=None) if i % 7 == 0 else s
        for i, s in enumerate(samples)
        if i % 11 != 5  # dropped samples: longer intervals, the energy counter covers them
    ]
    holes = [replace(s, power_w=None) if i % 5 == 0 else s for i, s in enumerate(holes)]
    # Telemetry paused for 5 s in the cool-down: a gap the energy counter bridges.
    bridged = [s for s in holes if not 50.0 < s.t_s < 55.0]
    fit = fit_thermal_response(list(reversed(bridged)))
    assert fit is not None and fit.c_per_w == pytest.approx(0.046, rel=0.03)
    # Without energy readings the gap breaks the history: the stretch after it gets its own
    # initial state, and the estimate still stands on what each stretch shows.
    no_energy = [replace(s, energy_j=None) for s in bridged]
    estimate = estimate_thermal_response(no_energy)
    assert estimate.fit is not None
    assert estimate.fit.c_per_w == pytest.approx(0.046, rel=0.05)


@pytest.mark.parametrize("model", ["h100-sxm5-80gb", "h200-sxm-141gb"])
def test_sim_card_resistance_and_its_worn_twin(model: str) -> None:
    """The sim's R (fast + slow, scaled) from a warm start; a 1.5x card reads 1.5x its twin."""
    healthy = fit_thermal_response(sim_run(model, 1.0, warm_s=300.0))
    worn = fit_thermal_response(sim_run(model, 1.5, warm_s=300.0))
    assert healthy is not None and worn is not None
    assert healthy.c_per_w == pytest.approx(sim_true_c_per_w(model, 1.0), rel=0.03)
    assert worn.c_per_w == pytest.approx(sim_true_c_per_w(model, 1.5), rel=0.03)
    assert worn.c_per_w / healthy.c_per_w == pytest.approx(1.5, rel=0.04)
    assert worn.c_per_w_low > healthy.c_per_w_high  # separated, not just different


def test_sim_estimate_does_not_depend_on_the_start() -> None:
    cold = fit_thermal_response(sim_run("h100-sxm5-80gb", 1.0, warm_s=0.0))
    warm = fit_thermal_response(sim_run("h100-sxm5-80gb", 1.0, warm_s=600.0))
    assert cold is not None and warm is not None
    assert warm.c_per_w == pytest.approx(cold.c_per_w, rel=0.03)
    assert warm.initial_excess_c > cold.initial_excess_c + 5.0


@pytest.mark.parametrize("name", H100_RUNS + H200_RUNS)
def test_real_runs_without_a_second_power_level_are_refused(name: str) -> None:
    """The recorded runs (tests of a few seconds, then one soak level, no idle hold) cannot separate
    R from the heat the card held at the start: the old method read 0.032-0.055 °C/W on one H100.
    No number is better than one of those."""
    estimate = estimate_thermal_response(run_samples(name))
    assert estimate.refusal is not None
    assert fit_thermal_response(run_samples(name)) is None


def test_real_h100_with_an_idle_hold_is_identified() -> None:
    """A real H100 recording: load, 13 s idle, load. The idle hold is what identifies R."""
    fit = fit_thermal_response(reference_csv("soak-telemetry-h100-sxm5-80gb.csv"))
    assert fit is not None
    assert 0.045 < fit.c_per_w < 0.057
    assert fit.rel_uncertainty < 0.10
    # The same recording cut before the idle hold: one load level only, refused.
    assert fit_thermal_response(reference_csv("soak-telemetry-h100-sxm5-80gb.csv", 60.0)) is None
