"""gpuhealth.judge.soak against the recorded soak telemetry of real cards (golden numbers), on the
simulated card (whose thermal resistance is known), and on synthetic series with a known answer."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from simkit import H100, REFERENCE, run_stress

from gpuhealth.judge import soak
from gpuhealth.measure.backends.sim import SimBackend
from gpuhealth.measure.backends.simcards import load_card
from gpuhealth.measure.stresstests import SoakTest
from gpuhealth.models import Metric, SoakSummary, TelemetrySample, TestResult, Verification


def recording(name: str) -> list[TelemetrySample]:
    with (REFERENCE / name).open(encoding="utf-8") as handle:
        return [
            TelemetrySample(
                t_s=float(r["t"]),
                temperature_c=float(r["temp_c"]),
                memory_temperature_c=float(r["mem_temp_c"]),
                power_w=float(r["power_w"]),
                sm_clock_mhz=float(r["sm_mhz"]),
                memory_clock_mhz=float(r["mem_mhz"]),
                utilization_pct=float(r["util"]),
                clocks_event_reasons=int(r["reasons"]),
                energy_j=float(r["energy_j"]),
            )
            for r in csv.DictReader(handle)
        ]


def summarize_recording(name: str) -> SoakSummary:
    samples = recording(name)
    result = TestResult(name="soak", status="passed", telemetry=tuple(samples))
    return soak.summarize(result, samples, 89.0, 0.05, 95.0)


# --- golden numbers from the recorded cards ------------------------------------------------------
# Worked out once with gpuhealth.judge.soak and checked against the CSVs by eye: the long H100 file
# idles at 34 °C / 73 W, then holds an FP32 load at ~659 W for 200 s and levels off just above 61
# °C.


def test_h100_long_recording() -> None:
    s = summarize_recording("soak-telemetry-h100-sxm5-80gb-long.csv")
    assert s.idle_temperature_c == 34.0
    assert s.max_temperature_c == 62.0
    # the fitted plateau, not the maximum (62) nor the mean of the last fifth (60.7)
    assert s.plateau_temperature_c == pytest.approx(61.2, abs=0.25)
    assert s.time_constant_s == pytest.approx(12.7, abs=1.5)
    assert s.mean_power_w == pytest.approx(658.7, abs=1.0)
    # One load level from idle: (61.19 - 34) / (658.65 - 72.83) = 0.0464 read the old rise-over-idle
    # ratio; the whole-run fit finds 0.036-0.044 °C/W equally good (ambient against R) and refuses.
    assert s.thermal_resistance_c_per_w is None
    assert s.thermal_resistance_refusal is not None
    assert "not identified" in s.thermal_resistance_refusal
    assert s.thermal_resistance_low_c_per_w == pytest.approx(0.0356, abs=0.001)
    assert s.thermal_resistance_high_c_per_w == pytest.approx(0.0437, abs=0.001)
    assert s.reference_c_per_w == 0.05
    assert s.max_memory_temperature_c == 54.0
    assert s.memory_temperature_headroom_c == 41.0  # 95 °C limit
    assert s.slowdown_margin_c == 27.0
    assert s.sm_clock_mean_mhz == 1980.0 and s.sm_clock_cv == 0.0
    assert s.throttle_share == {"power cap": 0.0, "thermal": 0.0, "hardware slowdown": 0.0}


def test_h100_short_recording_is_power_capped() -> None:
    s = summarize_recording("soak-telemetry-h100-sxm5-80gb.csv")
    assert s.plateau_temperature_c == pytest.approx(69.2, abs=0.5)
    # Load, 13 s idle, load: the idle hold identifies R (the rise-over-idle ratio read 0.0470).
    assert s.thermal_resistance_refusal is None
    assert s.thermal_resistance_c_per_w == pytest.approx(0.0510, abs=0.001)
    low, high = s.thermal_resistance_low_c_per_w, s.thermal_resistance_high_c_per_w
    assert low is not None and high is not None and low < 0.0510 < high
    assert s.thermal_fit_time_constant_s == pytest.approx(15.2, abs=1.5)
    assert s.throttle_share["power cap"] == pytest.approx(0.30, abs=0.02)
    assert s.throttle_share["thermal"] == 0.0
    assert s.sm_clock_cv is not None and s.sm_clock_cv > 0.05  # tensor load drops the clock


def test_h200_recording() -> None:
    s = summarize_recording("soak-telemetry-h200-sxm-141gb.csv")
    assert s.plateau_temperature_c == pytest.approx(59.3, abs=0.5)
    # the sim's H200 (0.0379 °C/W) was fitted to this recording (the rise over idle read 0.0402)
    assert s.thermal_resistance_c_per_w == pytest.approx(0.0377, abs=0.001)
    assert s.throttle_share["power cap"] == pytest.approx(0.34, abs=0.02)


def test_only_loaded_samples_count() -> None:
    samples = recording("soak-telemetry-h100-sxm5-80gb-long.csv")
    loaded = soak.load_samples(samples)
    assert 0 < len(loaded) < len(samples)
    assert all(s.utilization_pct is not None and s.utilization_pct >= 50 for s in loaded)
    # idle samples (util 0) would pull the mean power far down
    assert np.mean([s.power_w for s in loaded]) > 600


def test_simulated_card_resistance_is_measured_by_the_soak_alone() -> None:
    """The sim's thermal model is fitted to the long H100 recording (R = 0.0458 °C/W, fast +
    slow stage): the soak's two held power levels (GEMMs at the cap, then the memory phase) are
    enough for the fit, without the other tests' telemetry."""
    card = SimBackend(load_card(H100))
    result = run_stress(card, SoakTest(), "standard").result
    s = soak.summarize(result, result.telemetry, 89.0, 0.05)
    assert s.iterations > 100 and s.mismatched_iterations == 0
    assert s.thermal_resistance_refusal is None
    assert s.thermal_resistance_c_per_w == pytest.approx(0.02769 + 0.01810, rel=0.05)
    assert s.throughput_drift_pct is not None and abs(s.throughput_drift_pct) < 1.0
    assert s.stopped_early is None


# --- fit -----------------------------------------------------------------------------------------


def test_fit_plateau_on_a_synthetic_rise() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(0, 200, 0.5)
    temps = 80 - 40 * np.exp(-t / 20) + rng.normal(0, 0.3, t.size)
    plateau, tau = soak.fit_plateau((t + 1000).tolist(), temps.tolist())  # any time origin
    assert plateau == pytest.approx(80, abs=0.3)
    assert tau is not None and tau == pytest.approx(20, rel=0.05)


def test_fit_plateau_extrapolates_a_rise_cut_short() -> None:
    t = np.arange(0, 30, 0.5)
    temps = 80 - 40 * np.exp(-t / 20)
    plateau, _ = soak.fit_plateau(t.tolist(), temps.tolist())
    assert temps.max() < 72 and plateau == pytest.approx(80, abs=0.5)


def test_fit_plateau_without_a_rise() -> None:
    flat = [50.0, 50.2, 49.9, 50.1, 50.0, 50.1, 49.8, 50.0, 50.2, 50.1]
    plateau, tau = soak.fit_plateau(list(range(10)), flat)
    assert tau is None and plateau == pytest.approx(np.mean(flat[-2:]))
    few_plateau, few_tau = soak.fit_plateau([0, 1, 2], [40.0, 50.0, 60.0])
    assert few_tau is None and few_plateau == 60.0


# --- drift ---------------------------------------------------------------------------------------


def test_drift_of_a_declining_series() -> None:
    t = np.arange(100, dtype=float)
    values = 100.0 - 0.1 * t  # loses 9.9 over the soak; median 95.05
    assert soak.drift_pct(t.tolist(), values.tolist()) == pytest.approx(-100 * 9.9 / 95.05)


def test_drift_is_robust_to_one_outlier() -> None:
    t = np.arange(100, dtype=float)
    values = 100.0 - 0.1 * t
    values[50] = 10.0  # one iteration that stalled
    assert soak.drift_pct(t.tolist(), values.tolist()) == pytest.approx(-10.4, abs=0.2)


def test_drift_of_a_steady_series_and_edges() -> None:
    t = list(range(20))
    assert soak.drift_pct(t, [5.0] * 20) == 0.0
    rising = soak.drift_pct(t, [100.0 + i for i in t])
    assert rising is not None and rising > 0
    assert soak.drift_pct([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0]) is None  # too short
    assert soak.drift_pct([0, 1, 2, 3, 4], [1.0] * 4) is None  # lengths differ


# --- throttle share ------------------------------------------------------------------------------


def test_throttle_share() -> None:
    reasons = [0x4, 0x4, 0x0, 0x40, 0x80 | 0x4, None, 0x8 | 0x20]
    samples = [TelemetrySample(t_s=i, clocks_event_reasons=r) for i, r in enumerate(reasons)]
    share = soak.throttle_share(samples)
    # six samples with a known mask: software power cap in 3, thermal in 2, hardware slowdown
    # or power brake (0x8, 0x80) in 2
    assert share == {
        "power cap": pytest.approx(3 / 6, abs=1e-4),
        "thermal": pytest.approx(2 / 6, abs=1e-4),
        "hardware slowdown": pytest.approx(2 / 6, abs=1e-4),
    }
    assert soak.throttle_share([TelemetrySample(t_s=0.0)]) == {}
    assert soak.throttle_share([]) == {}


# --- summarize on a soak result ------------------------------------------------------------------


def test_summarize_reports_iterations_drift_and_early_stop() -> None:
    n = 40
    ends = tuple(float(i) for i in range(n))
    tflops = tuple(500.0 - 1.0 * i for i in range(n))
    telemetry = tuple(
        TelemetrySample(
            t_s=float(i),
            temperature_c=70.0 - 30.0 * math.exp(-i / 8),
            power_w=600.0,
            utilization_pct=100.0,
            sm_clock_mhz=1800.0,
            clocks_event_reasons=0,
        )
        for i in range(n)
    )
    result = TestResult(
        name="soak",
        status="passed",
        duration_s=40.0,
        parameters={"stopped_early": "GPU temperature 86 °C reached the guard 86 °C"},
        metrics=(
            Metric("iteration_tflops", "TFLOP/s", tflops),
            Metric("iteration_end_s", "s", ends, False),
        ),
        verifications=(Verification("digests", passed=False, checked=n, mismatches=2),),
        telemetry=telemetry,
    )
    idle = TelemetrySample(t_s=-1.0, temperature_c=35.0, power_w=80.0)
    s = soak.summarize(result, (idle, *telemetry), 89.0, 0.05)
    assert (s.iterations, s.mismatched_iterations) == (n, 2)
    assert s.throughput_drift_pct == pytest.approx(-100 * 39 / 480.5, abs=0.01)
    assert s.stopped_early is not None and "guard" in s.stopped_early
    assert s.plateau_temperature_c == pytest.approx(70.0, abs=0.2)
    assert s.idle_temperature_c == 35.0  # the run's first sample
    # One idle sample and one load level: no power range to fit a resistance to. The rise over
    # idle, (70 - 35) / 520, is not offered in its place.
    assert s.thermal_resistance_c_per_w is None
    assert (
        s.thermal_resistance_refusal is not None and "power range" in s.thermal_resistance_refusal
    )


def two_level_soak(
    r_c_per_w: float, warm_c: float, gemm_s: float = 60.0, memory_s: float = 60.0
) -> TestResult:
    """A soak as the stress test records it, after 2 s at idle: GEMMs at 700 W, then the memory
    phase at 400 W, on a card of the model (fast stage 60 % of R, slow stage 15 s) that starts
    warm_c above idle."""
    rng = np.random.default_rng(3)
    r_fast, r_slow, tau, ambient = 0.6 * r_c_per_w, 0.4 * r_c_per_w, 15.0, 30.0
    slow, t, energy = r_slow * 80.0 + warm_c, 0.0, 0.0
    samples = [TelemetrySample(t_s=0.0, temperature_c=float(round(ambient + 80.0 * r_c_per_w)))]
    phases = ((80.0, 2.0, 345.0), (700.0, gemm_s, 1500.0), (400.0, memory_s, 1980.0))
    for watts, seconds, clock in phases:
        for _ in range(round(seconds / 0.2)):
            slow += (r_slow * watts - slow) * -math.expm1(-0.2 / tau)
            t, energy = round(t + 0.2, 4), energy + watts * 0.2
            temp = ambient + r_fast * watts + slow + 0.3 * float(rng.standard_normal())
            samples.append(
                TelemetrySample(
                    t_s=t,
                    temperature_c=float(round(temp)),
                    memory_temperature_c=50.0 if watts > 500 else 55.0,
                    power_w=watts,
                    sm_clock_mhz=clock,
                    utilization_pct=100.0 if watts > 100 else 0.0,
                    clocks_event_reasons=0x4 if watts > 500 else 0,
                    energy_j=round(energy, 3),
                )
            )
    return TestResult(
        name="soak",
        status="passed",
        duration_s=2.0 + gemm_s + memory_s,
        parameters={
            "memory_phase_start_s": 2.0 + gemm_s,
            "memory_phase_end_s": 2.0 + gemm_s + memory_s,
        },
        metrics=(Metric("iteration_tflops", "TFLOP/s", (600.0,) * 3),),
        telemetry=tuple(samples),
    )


@pytest.mark.parametrize("warm_c", [0.0, 10.0], ids=["cold", "warm"])
def test_summarize_fits_the_resistance_over_both_phases(warm_c: float) -> None:
    result = two_level_soak(0.046, warm_c)
    s = soak.summarize(result, result.telemetry, 89.0, 0.05, 95.0)
    assert s.thermal_resistance_refusal is None
    assert s.thermal_resistance_c_per_w == pytest.approx(0.046, rel=0.03)
    low, high = s.thermal_resistance_low_c_per_w, s.thermal_resistance_high_c_per_w
    assert low is not None and high is not None and low <= 0.046 <= high
    assert s.thermal_fit_time_constant_s == pytest.approx(15.0, rel=0.3)
    assert s.thermal_fit_rms_c is not None and s.thermal_fit_rms_c < 0.6
    # Plateau, mean power, clocks: the GEMM phase's; maxima and throttling: the whole soak's.
    assert s.mean_power_w == 700.0
    assert s.sm_clock_mean_mhz == 1500.0 and s.sm_clock_cv == 0.0
    assert s.plateau_temperature_c == pytest.approx(30.0 + 0.046 * 700.0, abs=0.6)
    assert s.max_memory_temperature_c == 55.0 and s.memory_temperature_headroom_c == 40.0
    assert s.throttle_share["power cap"] == 1.0


def test_summarize_refuses_one_load_level_from_a_warm_start() -> None:
    """Without the memory phase a warm card's R is not identified: no number, and the reason."""
    result = two_level_soak(0.046, 12.0, gemm_s=120.0, memory_s=0.0)
    s = soak.summarize(result, result.telemetry, 89.0, 0.05)
    assert s.thermal_resistance_c_per_w is None
    assert s.thermal_resistance_refusal is not None
    assert "not identified" in s.thermal_resistance_refusal
