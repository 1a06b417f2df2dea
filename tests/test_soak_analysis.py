"""gpuhealth.soak against the recorded soak telemetry of real cards (golden numbers), and on
synthetic series whose answer is known."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from simkit import H100, REFERENCE, run_stress

from gpuhealth import soak
from gpuhealth.backends.sim import SimBackend
from gpuhealth.backends.simcards import load_card
from gpuhealth.models import Metric, SoakSummary, TelemetrySample, TestResult, Verification
from gpuhealth.stresstests import SoakTest


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
    return soak.summarize(result, samples[0], 89.0, 0.05)


# --- golden numbers from the recorded cards ------------------------------------------------------
# Worked out once with gpuhealth.soak and checked against the CSVs by eye: the long H100 file idles
# at 34 °C / 73 W, then holds an FP32 load at ~659 W for 200 s and levels off just above 61 °C.


def test_h100_long_recording() -> None:
    s = summarize_recording("soak-telemetry-h100-sxm5-80gb-long.csv")
    assert s.idle_temperature_c == 34.0
    assert s.max_temperature_c == 62.0
    # the fitted plateau, not the maximum (62) nor the mean of the last fifth (60.7)
    assert s.plateau_temperature_c == pytest.approx(61.2, abs=0.25)
    assert s.time_constant_s == pytest.approx(12.7, abs=1.5)
    assert s.mean_power_w == pytest.approx(658.7, abs=1.0)
    # (61.19 - 34) / (658.65 - 72.83)
    assert s.thermal_resistance_c_per_w == pytest.approx(0.0464, abs=0.0005)
    assert s.reference_c_per_w == 0.05
    assert s.max_memory_temperature_c == 54.0
    assert s.slowdown_margin_c == 27.0
    assert s.sm_clock_mean_mhz == 1980.0 and s.sm_clock_cv == 0.0
    assert s.throttle_share == {"power cap": 0.0, "thermal": 0.0, "hardware slowdown": 0.0}


def test_h100_short_recording_is_power_capped() -> None:
    s = summarize_recording("soak-telemetry-h100-sxm5-80gb.csv")
    assert s.plateau_temperature_c == pytest.approx(69.2, abs=0.5)
    assert s.thermal_resistance_c_per_w == pytest.approx(0.0470, abs=0.001)
    assert s.throttle_share["power cap"] == pytest.approx(0.30, abs=0.02)
    assert s.throttle_share["thermal"] == 0.0
    assert s.sm_clock_cv is not None and s.sm_clock_cv > 0.05  # tensor load drops the clock


def test_h200_recording() -> None:
    s = summarize_recording("soak-telemetry-h200-sxm-141gb.csv")
    assert s.plateau_temperature_c == pytest.approx(59.3, abs=0.5)
    assert s.thermal_resistance_c_per_w == pytest.approx(0.0402, abs=0.001)
    assert s.throttle_share["power cap"] == pytest.approx(0.34, abs=0.02)


def test_only_loaded_samples_count() -> None:
    samples = recording("soak-telemetry-h100-sxm5-80gb-long.csv")
    loaded = soak.load_samples(samples)
    assert 0 < len(loaded) < len(samples)
    assert all(s.utilization_pct is not None and s.utilization_pct >= 50 for s in loaded)
    # idle samples (util 0) would pull the mean power far down
    assert np.mean([s.power_w for s in loaded]) > 600


def test_simulated_card_matches_the_recorded_resistance() -> None:
    """The sim's thermal model is fitted to the long H100 recording: a soak on it gives the
    same °C/W as the recording does."""
    card = SimBackend(load_card(H100))
    idle = card.telemetry()
    result = run_stress(card, SoakTest(), "standard").result
    s = soak.summarize(result, idle, 89.0, 0.05)
    assert s.iterations > 100 and s.mismatched_iterations == 0
    assert s.thermal_resistance_c_per_w == pytest.approx(0.0464, rel=0.05)
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
    idle = TelemetrySample(t_s=0.0, temperature_c=35.0, power_w=80.0)
    s = soak.summarize(result, idle, 89.0, 0.05)
    assert (s.iterations, s.mismatched_iterations) == (n, 2)
    assert s.throughput_drift_pct == pytest.approx(-100 * 39 / 480.5, abs=0.01)
    assert s.stopped_early is not None and "guard" in s.stopped_early
    assert s.plateau_temperature_c == pytest.approx(70.0, abs=0.2)
    assert s.thermal_resistance_c_per_w == pytest.approx((70.0 - 35.0) / 520.0, rel=0.01)
    # below 50 W of extra power there is no honest °C/W
    low = soak.summarize(result, TelemetrySample(0.0, temperature_c=35.0, power_w=580.0), 89, 0.05)
    assert low.thermal_resistance_c_per_w is None
