"""The simulated card as a model: its thermal model against measured telemetry, its virtual clock,
and an observable effect of every fault a card spec can inject."""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest
from simkit import EXAMPLES, H100, H200, REFERENCE, run_stress

from gpuhealth.errors import DeviceLost
from gpuhealth.judge import soak
from gpuhealth.measure.backends.sim import SimBackend
from gpuhealth.measure.backends.simcards import Faults, load_card, load_model
from gpuhealth.measure.backends.simphysics import (
    REASON_CLOCK_SETTING,
    REASON_HW_SLOWDOWN,
    REASON_SW_POWER_CAP,
    CardPhysics,
)
from gpuhealth.measure.stresstests import (
    BandwidthTest,
    Fp16TensorTest,
    Fp32Test,
    GemmTest,
    MemtestTest,
    SoakTest,
)
from gpuhealth.measure.stresstests.base import Executed
from gpuhealth.models import ProcessInfo, TestResult
from gpuhealth.pcieerrors import PCIE_ERROR_COUNTERS

Sim = Callable[..., SimBackend]
GIB = 1 << 30


def median(result: TestResult, metric: str) -> float:
    found = result.metric(metric)
    assert found is not None, f"{result.name} has no metric {metric}"
    return statistics.median(found.values)


def passed(executed: Executed) -> TestResult:
    assert executed.result.status == "passed", executed.result.message
    return executed.result


# --- the thermal model against the measured soak -------------------------------------------------


def load_csv(name: str) -> dict[str, np.ndarray]:
    with (REFERENCE / name).open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([float(r[key]) for r in rows]) for key in rows[0]}


def replay(model: str, t: np.ndarray, power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drive the card's physics with a recorded power series; its temperatures at each sample."""
    physics = CardPhysics(load_model(model), 1.0, None)
    gpu, memory = [], []
    previous = t[0]
    for now, watts in zip(t, power, strict=True):
        physics.advance(now - previous, float(watts))
        previous = now
        gpu.append(physics.gpu_temperature_c)
        memory.append(physics.memory_temperature_c)
    return np.array(gpu), np.array(memory)


@pytest.mark.parametrize(
    ("model", "recording", "bound_c"),
    [
        (H100, "soak-telemetry-h100-sxm5-80gb-long.csv", 1.5),
        # the H200's recording is short and starts 1 °C warm: a looser bound
        (H200, "soak-telemetry-h200-sxm-141gb.csv", 2.0),
    ],
)
def test_thermal_model_reproduces_the_measured_soak(
    model: str, recording: str, bound_c: float
) -> None:
    data = load_csv(recording)
    gpu, memory = replay(model, data["t"], data["power_w"])
    rms_gpu = float(np.sqrt(np.mean((gpu - data["temp_c"]) ** 2)))
    rms_memory = float(np.sqrt(np.mean((memory - data["mem_temp_c"]) ** 2)))
    assert rms_gpu < bound_c, f"GPU temperature RMS error {rms_gpu:.2f} °C"
    assert rms_memory < bound_c, f"memory temperature RMS error {rms_memory:.2f} °C"
    # and the rise is really there (a flat model would not reach the measured peak)
    assert gpu.max() - gpu.min() > 0.8 * (data["temp_c"].max() - data["temp_c"].min())


def test_thermal_model_is_not_fitted_to_anything() -> None:
    """The same comparison with twice the thermal resistance fails: the check can fail."""
    data = load_csv("soak-telemetry-h100-sxm5-80gb-long.csv")
    physics = CardPhysics(load_model(H100), 2.0, None)
    temps, previous = [], data["t"][0]
    for now, watts in zip(data["t"], data["power_w"], strict=True):
        physics.advance(now - previous, float(watts))
        previous = now
        temps.append(physics.gpu_temperature_c)
    assert float(np.sqrt(np.mean((np.array(temps) - data["temp_c"]) ** 2))) > 5.0


# --- the virtual clock ---------------------------------------------------------------------------


def test_ten_minute_soak_runs_on_the_virtual_clock(sim: Sim) -> None:
    card = sim()
    start = time.perf_counter()
    result = passed(run_stress(card, SoakTest(), "thorough"))
    wall = time.perf_counter() - start
    assert result.parameters["duration_s"] == 600
    assert float(result.parameters["soaked_s"]) >= 600.0
    assert result.duration_s >= 600.0
    # The virtual clock, not a speed target: a real-time soak would take 600 s (a loaded CI
    # machine must not fail this, so the bound is generous).
    assert wall < 60.0, f"a 600 s soak took {wall:.2f} s of wall time"
    # telemetry was sampled on the virtual clock throughout (5 Hz)
    assert len(result.telemetry) >= 0.9 * 600 / 0.2


def test_same_card_same_numbers(sim: Sim) -> None:
    """A seeded card is deterministic; another seed gives other noise."""
    first = run_stress(sim(), BandwidthTest()).result.metric("copy_gbs")
    again = run_stress(sim(), BandwidthTest()).result.metric("copy_gbs")
    other = run_stress(sim(header="seed = 99"), BandwidthTest()).result.metric("copy_gbs")
    assert first is not None and again is not None and other is not None
    assert first.values == again.values
    assert first.values != other.values


# --- every fault field has an observable effect --------------------------------------------------

COVERED: dict[str, str] = {}


def covers(*fields: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def mark(test: Callable[..., None]) -> Callable[..., None]:
        for name in fields:
            COVERED[name] = test.__name__
        return test

    return mark


@covers("stuck_bits")
@pytest.mark.parametrize(
    ("address", "bit", "value"),
    [
        (0x1F000, 3, 0),  # inside the sim's dense window
        (40 * GIB, 17, 1),  # far beyond it: the described-tail path
        (40 * GIB + 0x1234, 0, 0),
        (78 * GIB, 31, 1),  # near the end of the tested memory
    ],
)
def test_stuck_bit_is_found_at_its_address_and_bit(
    sim: Sim, address: int, bit: int, value: int
) -> None:
    card = sim(f"stuck_bits = [{{ address = {address}, bit = {bit}, value = {value} }}]")
    result = run_stress(card, MemtestTest()).result
    assert result.status == "failed"
    (check,) = result.verifications
    assert not check.passed and check.mismatches > 0
    assert [e.address for e in check.memory_errors] == [address]
    (error,) = check.memory_errors
    assert error.bits == (bit,)
    assert (error.actual >> bit) & 1 == value  # the cell holds its stuck value
    assert (error.expected >> bit) & 1 != value


def test_healthy_memtest_finds_nothing(sim: Sim) -> None:
    result = passed(run_stress(sim(), MemtestTest()))
    (check,) = result.verifications
    assert check.mismatches == 0 and check.memory_errors == ()
    assert float(result.parameters["coverage"]) >= 0.95


@covers("flaky_bits")
@pytest.mark.parametrize("address", [0x2000, 20 * GIB + 8])
def test_flaky_bit_with_probability_one(sim: Sim, address: int) -> None:
    card = sim(f"flaky_bits = [{{ address = {address}, bit = 9, probability = 1.0 }}]")
    result = run_stress(card, MemtestTest()).result
    assert result.status == "failed"
    (check,) = result.verifications
    (error,) = check.memory_errors
    assert (error.address, error.bits) == (address, (9,))
    # it flips on every read: every check of every pattern sees it
    assert check.mismatches == 2 * int(result.parameters["patterns_done"])


@pytest.fixture(scope="module")
def healthy_rates() -> dict[str, float]:
    """Median rates of the healthy H100 (same seed as the faulty cards below)."""
    rates: dict[str, float] = {}
    for test in (BandwidthTest(), MemtestTest(), Fp32Test(), Fp16TensorTest(), GemmTest()):
        result = passed(run_stress(SimBackend(load_card(H100)), test))
        for metric in result.metrics:
            rates[f"{test.name}.{metric.name}"] = statistics.median(metric.values)
    return rates


def ratios(
    card: SimBackend, tests: tuple[object, ...], healthy: dict[str, float]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for test in tests:
        result = passed(run_stress(card, test))  # type: ignore[arg-type]
        for metric in result.metrics:
            key = f"{result.name}.{metric.name}"
            out[key] = statistics.median(metric.values) / healthy[key]
    return out


NOISE = 0.02  # median of >= 5 repetitions at 0.4% noise, and a little clock drift


@covers("bandwidth_scale")
def test_bandwidth_scale(sim: Sim, healthy_rates: dict[str, float]) -> None:
    got = ratios(sim("bandwidth_scale = 0.8"), (BandwidthTest(), MemtestTest()), healthy_rates)
    assert set(got) == {
        "bandwidth.copy_gbs",
        "bandwidth.scale_gbs",
        "bandwidth.add_gbs",
        "bandwidth.triad_gbs",
        "bandwidth.read_gbs",
        "memtest.pass_gbs",
    }
    for key, ratio in got.items():
        assert ratio == pytest.approx(0.8, abs=NOISE), key


@covers("fp32_scale")
def test_fp32_scale(sim: Sim, healthy_rates: dict[str, float]) -> None:
    got = ratios(sim("fp32_scale = 0.7"), (Fp32Test(), GemmTest()), healthy_rates)
    assert got["fp32.fp32_tflops"] == pytest.approx(0.7, abs=NOISE)
    assert got["gemm.fp32_tflops"] == pytest.approx(0.7, abs=NOISE)
    assert got["gemm.fp16_tflops"] == pytest.approx(1.0, abs=NOISE)  # fp16 untouched


@covers("fp16_scale")
def test_fp16_scale(sim: Sim, healthy_rates: dict[str, float]) -> None:
    got = ratios(sim("fp16_scale = 0.6"), (Fp16TensorTest(), GemmTest(), Fp32Test()), healthy_rates)
    for key in ("fp16_tensor.mma_tflops", "fp16_tensor.tensor_gemm_tflops", "gemm.fp16_tflops"):
        assert got[key] == pytest.approx(0.6, abs=NOISE), key
    assert got["fp32.fp32_tflops"] == pytest.approx(1.0, abs=NOISE)
    assert got["gemm.fp32_tflops"] == pytest.approx(1.0, abs=NOISE)


@covers("card_offset_rel")
def test_card_offset_moves_every_rate(sim: Sim, healthy_rates: dict[str, float]) -> None:
    got = ratios(sim("card_offset_rel = 0.05"), (BandwidthTest(), Fp32Test()), healthy_rates)
    for key, ratio in got.items():
        assert ratio == pytest.approx(1.05, abs=NOISE), key


@covers("working_sm_count")
def test_fewer_working_sms_than_reported_slow_every_compute_rate(
    sim: Sim, healthy_rates: dict[str, float]
) -> None:
    """A cut-down die that reports the full SM count: it says 132, computes with 114."""
    card = sim("working_sm_count = 114")
    assert card.identity().sm_count == card.device_info().sm_count == 132
    tests = (Fp32Test(), Fp16TensorTest(), GemmTest(), BandwidthTest())
    got = ratios(card, tests, healthy_rates)
    for key in (
        "fp32.fp32_tflops",
        "fp16_tensor.mma_tflops",
        "fp16_tensor.tensor_gemm_tflops",
        "gemm.fp16_tflops",
        "gemm.fp32_tflops",
    ):
        assert got[key] == pytest.approx(114 / 132, abs=NOISE), key
    assert got["bandwidth.triad_gbs"] == pytest.approx(1.0, abs=NOISE)  # memory untouched


IDENTITY_OVERRIDES = """[identity]
pci_device_id = "0x233110de"
pci_subsystem_id = "0x16C210DE"
board_part_number = "699-2G520-0200-999"
vbios = "96.00.DA.00.FF"
sm_count = 114
memory_bus_width_bits = 4096
max_sm_clock_mhz = 2100
max_memory_clock_mhz = 2000
power_limit_default_w = 600
power_limit_max_w = 800
"""


def test_card_spec_identity_is_what_the_card_reports(
    sim: Sim, healthy_rates: dict[str, float]
) -> None:
    """A card spec's [identity] (not a fault: CardSpec.identity) changes what the card reports;
    a reported SM count is also what computes, so an honest cut-down card measures like it."""
    healthy = sim().identity()
    assert (healthy.pci_device_id, healthy.pci_subsystem_id) == ("0x233010DE", "0x16C110DE")
    assert (healthy.sm_count, healthy.power_limit_max_w) == (132, 700.0)
    card = sim(header=IDENTITY_OVERRIDES)
    ident = card.identity()
    assert ident.pci_device_id == "0x233110de"  # as written; the registry compares any case
    assert ident.pci_subsystem_id == "0x16C210DE"
    assert (ident.board_part_number, ident.vbios) == ("699-2G520-0200-999", "96.00.DA.00.FF")
    assert (ident.sm_count, ident.memory_bus_width_bits) == (114, 4096)
    assert (ident.max_sm_clock_mhz, ident.max_memory_clock_mhz) == (2100, 2000)
    assert (ident.power_limit_default_w, ident.power_limit_max_w) == (600, 800)
    assert card.device_info().sm_count == 114
    # everything else is the model's
    assert (ident.name, ident.memory_total_bytes, ident.inforom) == (
        healthy.name,
        healthy.memory_total_bytes,
        healthy.inforom,
    )
    got = ratios(card, (Fp32Test(), BandwidthTest()), healthy_rates)
    assert got["fp32.fp32_tflops"] == pytest.approx(114 / 132, abs=NOISE)
    assert got["bandwidth.triad_gbs"] == pytest.approx(1.0, abs=NOISE)  # reports only
    # telemetry shows the clocks the card runs at, not what it reports as its maximum
    card.start_telemetry(0.2)
    assert card.telemetry().memory_clock_mhz == 2619


def test_identity_fields_can_be_unreadable(sim: Sim) -> None:
    card = sim('unreadable = ["pci_device_id", "pci_subsystem_id", "power_limit_max_w"]')
    ident = card.identity()
    assert ident.pci_device_id is None and ident.pci_subsystem_id is None
    assert ident.power_limit_max_w is None
    assert ident.power_limit_default_w == 700 and ident.board_part_number is not None


@covers("wrong_results")
def test_wrong_results_are_caught_and_name_the_sm(sim: Sim) -> None:
    card = sim("wrong_results = { rate = 1.0, sm = 17 }")
    for test in (Fp32Test(), Fp16TensorTest(), GemmTest()):
        result = run_stress(card, test).result
        assert result.status == "failed", test.name
        bad = [v for v in result.verifications if not v.passed]
        assert bad and all(v.mismatches > 0 for v in bad)
    fp32 = run_stress(card, Fp32Test()).result
    locations = {w.location.split(" (")[0] for v in fp32.verifications for w in v.wrong_results}
    assert locations == {"SM 17"}


def test_healthy_compute_is_verified_clean(sim: Sim) -> None:
    card = sim()
    for test in (Fp32Test(), Fp16TensorTest(), GemmTest(), BandwidthTest()):
        result = passed(run_stress(card, test))
        assert all(v.passed and v.mismatches == 0 for v in result.verifications)


@covers("remapped_rows")
def test_remapped_rows_in_counters(sim: Sim) -> None:
    healthy = sim().counters()
    card = sim(
        "remapped_rows = { correctable = 3, uncorrectable = 2, pending = true, failure = true }"
    )
    c = card.counters()
    assert (healthy.remapped_rows_correctable, healthy.remapped_rows_uncorrectable) == (0, 0)
    assert (c.remapped_rows_correctable, c.remapped_rows_uncorrectable) == (3, 2)
    assert (c.remapped_rows_pending, c.remapped_rows_failure) == (True, True)
    hist, base = c.row_remap_histogram, healthy.row_remap_histogram
    assert hist is not None and base is not None
    assert hist.none == 1 and base.none == 0
    assert hist.max < base.max
    banks = load_model(H100).device.row_remap_banks
    assert hist.max + hist.high + hist.partial + hist.low + hist.none == banks


@covers("ecc_uncorrected", "ecc_corrected")
def test_ecc_errors_appear_while_memory_is_exercised(sim: Sim) -> None:
    card = sim("ecc_uncorrected = 2\necc_corrected = 5")
    before = card.counters()
    assert (before.ecc_volatile_uncorrected, before.ecc_volatile_corrected) == (0, 0)
    run_stress(card, MemtestTest())
    after = card.counters()
    assert after.ecc_volatile_uncorrected == 2 and after.ecc_volatile_corrected == 5
    assert after.ecc_aggregate_uncorrected == 2


@covers("ecc_enabled")
def test_ecc_disabled(sim: Sim) -> None:
    c = sim("ecc_enabled = false").counters()
    assert c.ecc_enabled is False
    assert c.ecc_volatile_uncorrected is None and c.ecc_aggregate_corrected is None
    assert sim().counters().ecc_enabled is True


@covers("ecc_pending_enabled")
def test_ecc_mode_change_waiting_for_a_reboot(sim: Sim) -> None:
    healthy = sim().counters()
    assert (healthy.ecc_enabled, healthy.ecc_pending_enabled) == (True, True)
    off_later = sim("ecc_pending_enabled = false").counters()
    assert (off_later.ecc_enabled, off_later.ecc_pending_enabled) == (True, False)
    on_later = sim("ecc_enabled = false\necc_pending_enabled = true").counters()
    assert (on_later.ecc_enabled, on_later.ecc_pending_enabled) == (False, True)
    assert on_later.ecc_aggregate_uncorrected_sram is None  # no counts with ECC off


@covers("sram_uncorrected")
def test_sram_uncorrectable_history(sim: Sim) -> None:
    healthy = sim().counters()
    assert healthy.ecc_aggregate_uncorrected_sram == 0
    assert healthy.ecc_aggregate_uncorrected_dram == 0
    card = sim("sram_uncorrected = 3\necc_uncorrected = 2")
    before = card.counters()
    assert before.ecc_aggregate_uncorrected_sram == 3 and before.ecc_aggregate_uncorrected == 3
    assert before.ecc_volatile_uncorrected == 0  # history, not this boot's errors
    run_stress(card, MemtestTest())
    after = card.counters()
    assert after.ecc_aggregate_uncorrected_dram == 2  # the run's errors are in card memory
    assert after.ecc_aggregate_uncorrected == 5 and after.ecc_aggregate_uncorrected_sram == 3


@covers("retired_pages")
def test_retired_pages_on_a_card_before_ampere(sim: Sim) -> None:
    healthy = sim().counters()  # Ampere and later: NVML does not report page retirement
    assert (healthy.retired_pages_sbe, healthy.retired_pages_dbe) == (None, None)
    assert healthy.retired_pages_pending is None
    card = sim(
        "retired_pages = { sbe = 4, dbe = 2, pending = true }\n"
        'unreadable = ["remapped_rows_correctable", "remapped_rows_uncorrectable", '
        '"remapped_rows_pending", "remapped_rows_failure", "row_remap_histogram"]'
    )
    c = card.counters()
    assert (c.retired_pages_sbe, c.retired_pages_dbe, c.retired_pages_pending) == (4, 2, True)
    assert c.remapped_rows_correctable is None and c.row_remap_histogram is None


@covers("unreadable")
def test_unreadable_readings_are_none_and_only_those(sim: Sim) -> None:
    card = sim('unreadable = ["remapped_rows_pending", "clocks_event_reasons"]')
    counters, healthy = card.counters(), sim().counters()
    assert counters.remapped_rows_pending is None and healthy.remapped_rows_pending is False
    assert counters.remapped_rows_failure is not None and counters.ecc_enabled is True
    card.start_telemetry(0.2)
    sample = card.telemetry()
    assert sample.clocks_event_reasons is None and sample.memory_temperature_c is not None


@covers("pcie_width", "pcie_gen")
def test_pcie_link(sim: Sim) -> None:
    card = sim("pcie_width = 8\npcie_gen = 3")
    c, ident = card.counters(), card.identity()
    assert (c.pcie_width_current, c.pcie_gen_current) == (8, 3)
    assert (ident.pcie_width_max, ident.pcie_gen_max) == (16, 5)
    healthy = sim().counters()
    assert (healthy.pcie_width_current, healthy.pcie_gen_current) == (16, 5)


@covers("pcie_replays")
def test_pcie_replays_are_counted_while_memory_is_exercised(sim: Sim) -> None:
    card = sim("pcie_replays = 4")
    assert card.counters().pcie_replay_count == 0
    run_stress(card, MemtestTest())
    assert card.counters().pcie_replay_count == 4
    healthy = sim()
    run_stress(healthy, MemtestTest())
    assert healthy.counters().pcie_replay_count == 0


@covers("hardware_slowdown")
def test_hardware_slowdown_sets_its_reason_bit_under_load_only(sim: Sim) -> None:
    def reasons(card: SimBackend) -> list[int]:
        result = run_stress(card, Fp32Test()).result
        return [s.clocks_event_reasons or 0 for s in result.telemetry if s.utilization_pct == 100]

    slowed, healthy = reasons(sim("hardware_slowdown = true")), reasons(sim())
    assert slowed and all(r & REASON_HW_SLOWDOWN for r in slowed)
    assert healthy and not any(r & REASON_HW_SLOWDOWN for r in healthy)


@covers("memory_thermal_resistance_scale")
def test_memory_thermal_resistance_scales_the_memory_temperature_rise(sim: Sim) -> None:
    def rise_c(card: SimBackend) -> float:
        result = run_stress(card, SoakTest()).result
        temps = [s.memory_temperature_c for s in result.telemetry if s.memory_temperature_c]
        return max(temps) - min(temps)

    base, hot = rise_c(sim()), rise_c(sim("memory_thermal_resistance_scale = 2"))
    assert base > 5
    assert hot / base == pytest.approx(2, rel=0.2)


# --- PCIe copies and NVLink (issue 14) -----------------------------------------------------------


def _one_copy(card: SimBackend, direction: str) -> tuple[float, np.ndarray, np.ndarray]:
    """One 1 MiB copy each way: (seconds, what was sent, what arrived)."""
    nbytes = 1 << 20
    host = card.host_alloc(nbytes)
    host.data[:] = np.arange(nbytes, dtype=np.uint64).astype(np.uint8)
    device = card.alloc(nbytes)
    copy = card.link_copy(nbytes, h2d=(device, host))
    if direction == "h2d":
        arrived = np.asarray(card.download(device, np.uint8, nbytes))
        return copy.elapsed_s, host.data.copy(), arrived
    landing = card.host_alloc(nbytes)
    back = card.link_copy(nbytes, d2h=(landing, device))
    return back.elapsed_s, host.data.copy(), landing.data.copy()


@covers("pcie_copy_scale")
def test_pcie_copy_scale_slows_copies_at_full_width(sim: Sim) -> None:
    healthy, _, _ = _one_copy(sim(), "h2d")
    slow, sent, arrived = _one_copy(sim("pcie_copy_scale = 0.5"), "h2d")
    assert slow / healthy == pytest.approx(2.0, rel=0.05)
    assert np.array_equal(sent, arrived)  # slow, not wrong
    assert sim("pcie_copy_scale = 0.5").counters().pcie_width_current == 16


@covers("pcie_corrupt_byte", "pcie_corrupt_direction")
@pytest.mark.parametrize("direction", ["h2d", "d2h"])
def test_pcie_corrupt_byte_lands_flipped_in_its_direction(sim: Sim, direction: str) -> None:
    card = sim(f'pcie_corrupt_byte = 777\npcie_corrupt_direction = "{direction}"')
    _, sent, arrived = _one_copy(card, direction)
    assert np.flatnonzero(sent != arrived).tolist() == [777]
    other = "d2h" if direction == "h2d" else "h2d"
    if other == "h2d":  # the other way is clean (the d2h case checks it through its h2d leg)
        _, sent, arrived = _one_copy(card, other)
        assert np.array_equal(sent, arrived)


@covers("nvlink_links", "nvlink_down", "nvlink_errors")
def test_nvlink_links_down_and_errors(sim: Sim) -> None:
    assert sim().counters().nvlink_status == "none"  # the models: no NVLink readable
    card = sim("nvlink_links = 18\nnvlink_down = [3]\nnvlink_errors = 9")
    before = card.counters()
    assert before.nvlink_status == "read" and len(before.nvlink) == 18
    assert [link.link for link in before.nvlink if not link.active] == [3]
    assert before.nvlink[0].crc_flit_errors == 0  # they appear once the card is at work
    card.begin_test("pcie")
    card.end_test()
    after = card.counters()
    assert after.nvlink[0].crc_flit_errors == 9
    assert sum(link.crc_flit_errors or 0 for link in after.nvlink) == 9


@covers("pcie_errors", "pcie_errors_supported")
def test_pcie_errors_rise_once_at_work_or_are_not_supported(sim: Sim) -> None:
    zero = dict.fromkeys(PCIE_ERROR_COUNTERS, 0)
    healthy = sim().counters()
    assert (healthy.pcie_errors_status, healthy.pcie_errors) == ("read", zero)
    card = sim("pcie_errors = { bad_tlp = 3, fatal = 1 }")
    assert card.counters().pcie_errors == zero  # they appear once the card is at work
    card.begin_test("pcie")
    card.end_test()
    after = card.counters()
    assert (after.pcie_errors_status, after.pcie_errors) == (
        "read",
        {**zero, "bad_tlp": 3, "fatal": 1},
    )
    old = sim("pcie_errors_supported = false").counters()
    assert old.pcie_errors_status == "not_supported"
    assert old.pcie_errors == dict.fromkeys(PCIE_ERROR_COUNTERS)  # None each: never a healthy 0
    failed = sim('unreadable = ["pcie_errors"]').counters()
    assert (failed.pcie_errors_status, failed.pcie_errors) == ("unreadable", None)


def soak_summary(card: SimBackend) -> tuple[TestResult, object]:
    result = run_stress(card, SoakTest()).result
    return result, soak.summarize(result, result.telemetry, 89.0, None)


@covers("thermal_resistance_scale")
def test_thermal_resistance_raises_the_plateau(sim: Sim) -> None:
    base_result, base = soak_summary(sim())
    hot_result, hot = soak_summary(sim("thermal_resistance_scale = 1.4"))
    assert base_result.status == hot_result.status == "passed"
    assert base.plateau_temperature_c is not None and hot.plateau_temperature_c is not None
    assert base.idle_temperature_c is not None and hot.idle_temperature_c is not None
    rise = base.plateau_temperature_c - base.idle_temperature_c
    hot_rise = hot.plateau_temperature_c - hot.idle_temperature_c
    assert rise > 15
    # the rise over idle grows with the resistance (the idle level a little too)
    assert hot_rise / rise == pytest.approx(1.4, rel=0.1)
    assert hot.thermal_resistance_c_per_w / base.thermal_resistance_c_per_w == pytest.approx(
        1.4, rel=0.1
    )


def test_cooling_gone_stops_the_soak_at_the_guard(sim: Sim) -> None:
    result = run_stress(sim("thermal_resistance_scale = 3.0"), SoakTest()).result
    assert "stopped_early" in result.parameters
    assert "guard" in str(result.parameters["stopped_early"])
    assert float(result.parameters["soaked_s"]) < 10.0  # of a 30 s soak
    temps = [s.temperature_c for s in result.telemetry if s.temperature_c is not None]
    # the guard (slowdown 89 - 3 °C) reads telemetry after each ~0.5 s iteration, so a card
    # this hot overshoots it a little, but it is stopped before its shutdown temperature
    assert 86.0 <= max(temps) < 95.0


@covers("power_limit_w")
def test_power_limit(sim: Sim, healthy_rates: dict[str, float]) -> None:
    capped = sim("power_limit_w = 400")
    assert capped.counters().power_limit_w == 400
    assert sim().counters().power_limit_w == 700
    gemm = passed(run_stress(capped, GemmTest()))
    assert median(gemm, "fp16_tflops") < 0.9 * healthy_rates["gemm.fp16_tflops"]
    loaded = [s for s in gemm.telemetry if s.utilization_pct == 100.0]
    assert loaded
    assert all(s.clocks_event_reasons is not None for s in loaded)
    assert all(s.clocks_event_reasons & REASON_SW_POWER_CAP for s in loaded)  # type: ignore[operator]
    assert all(s.power_w is not None and s.power_w <= 400.5 for s in loaded)


def test_power_capping_follows_dvfs(sim: Sim, healthy_rates: dict[str, float]) -> None:
    """FMA draws 560 W at full clock: free under 700 W, capped under 400 W, where the clock
    drops so that power meets the limit (power ~ clock^3)."""
    healthy = passed(run_stress(sim(), Fp32Test()))
    capped = passed(run_stress(sim("power_limit_w = 400"), Fp32Test()))

    def reasons(result: TestResult) -> set[int]:
        return {s.clocks_event_reasons or 0 for s in result.telemetry if s.utilization_pct == 100.0}

    assert not any(r & REASON_SW_POWER_CAP for r in reasons(healthy))
    assert all(r & REASON_SW_POWER_CAP for r in reasons(capped))
    power = load_model(H100).power
    clock = ((400 - power.idle_w) / (power.fma_w - power.idle_w)) ** (1 / 3)
    ratio = median(capped, "fp32_tflops") / median(healthy, "fp32_tflops")
    assert ratio == pytest.approx(clock, abs=NOISE)


@covers("lost_at")
def test_lost_at_loses_the_card_in_that_test_only(sim: Sim) -> None:
    card = sim('lost_at = "fp32"')
    for test in (BandwidthTest(), MemtestTest()):
        executed = run_stress(card, test)
        assert executed.result.status == "passed" and not executed.card_lost
    lost = run_stress(card, Fp32Test())
    assert lost.card_lost and lost.result.status == "error"
    assert "fallen off the bus" in (lost.result.message or "")
    with pytest.raises(DeviceLost):
        card.counters()
    with pytest.raises(DeviceLost):
        card.alloc(1 << 20)
    assert [x.code for x in card.xid_events()] == [79]


@covers("hang_at")
def test_hang_at_never_returns_in_that_test_only(sim: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    class Hung(Exception):
        pass

    def sleep(seconds: float) -> None:
        raise Hung(seconds)  # instead of sleeping forever

    card = sim('hang_at = "fp32"')
    monkeypatch.setattr("gpuhealth.measure.backends.sim.time.sleep", sleep)
    for test in (BandwidthTest(), MemtestTest()):
        assert run_stress(card, test).result.status == "passed"
    with pytest.raises(Hung):
        run_stress(card, Fp32Test())


@covers("other_process")
def test_other_process(sim: Sim) -> None:
    healthy = sim()
    assert healthy.processes() == ()
    busy = sim('other_process = { pid = 31337, name = "miner", used_memory_mib = 4096 }')
    assert busy.processes() == (ProcessInfo(31337, "miner", 4096 << 20),)
    assert healthy.memory_free_bytes() - busy.memory_free_bytes() == 4096 << 20
    default = sim("other_process = true")
    (proc,) = default.processes()
    assert proc.pid > 0 and (proc.used_memory_bytes or 0) > 0
    assert sim("other_process = false").processes() == ()


@covers("xid")
def test_xid_at_a_test(sim: Sim) -> None:
    card = sim('xid = [{ test = "gemm", code = 48 }]')
    card.begin_test("bandwidth")
    card.end_test()
    assert card.xid_events() == ()
    card.begin_test("gemm")
    events = card.xid_events()
    assert [e.code for e in events] == [48]
    assert card.xid_events() == ()  # events are handed out once


@covers("settings")
def test_settings_away_from_defaults_read_as_such(sim: Sim) -> None:
    healthy = sim().settings()
    assert healthy["mig_mode"].value == "disabled"
    assert healthy["applications_clocks"].value == healthy["applications_clocks"].default
    card = sim(
        'settings = { mig_enabled = true, compute_mode = "prohibited", '
        "applications_clocks_mhz = [1500, 2619], locked_memory_clocks_mhz = [1000, 1000], "
        'persistence_mode = false, confidential_computing = "not supported" }'
    ).settings()
    assert card["mig_mode"].value == "enabled"
    assert card["compute_mode"].value == "prohibited"
    assert card["applications_clocks"].value == "sm 1500 MHz, memory 2619 MHz"
    assert card["locked_clocks"].value == "memory 1000-1000 MHz"
    assert card["persistence_mode"].value == "disabled"
    assert card["confidential_computing"].state == "not_supported"


def test_clock_settings_hold_the_clocks_under_load(
    sim: Sim, healthy_rates: dict[str, float]
) -> None:
    """A locked or application SM clock holds FP32 at the clock's share, with NVML's "application
    clocks setting" reason; a locked memory clock holds the bandwidth; a lock above the card's
    clock, or its minimum, changes nothing."""

    def loaded(result: TestResult) -> list[tuple[float | None, float | None, int | None]]:
        return [
            (s.sm_clock_mhz, s.memory_clock_mhz, s.clocks_event_reasons)
            for s in result.telemetry
            if s.utilization_pct == 100.0
        ]

    for setting in ("locked_sm_clocks_mhz = [990, 990]", "applications_clocks_mhz = [990, 2619]"):
        held = passed(run_stress(sim(f"settings = {{ {setting} }}"), Fp32Test()))
        ratio = median(held, "fp32_tflops") / healthy_rates["fp32.fp32_tflops"]
        assert ratio == pytest.approx(0.5, abs=NOISE), setting
        assert loaded(held) and all(
            x == (990.0, 2619.0, REASON_CLOCK_SETTING) for x in loaded(held)
        )
    memory = passed(run_stress(sim("settings = { locked_memory_clocks_mhz = [1309.5, 1309.5] }"),
                               BandwidthTest()))  # fmt: skip
    ratio = median(memory, "copy_gbs") / healthy_rates["bandwidth.copy_gbs"]
    assert ratio == pytest.approx(0.5, abs=NOISE)
    fp32 = passed(run_stress(sim("settings = { locked_memory_clocks_mhz = [1309.5, 1309.5] }"),
                             Fp32Test()))  # fmt: skip
    assert all(clock == 1309.5 and r == REASON_CLOCK_SETTING for _, clock, r in loaded(fp32))
    assert median(fp32, "fp32_tflops") == pytest.approx(healthy_rates["fp32.fp32_tflops"],
                                                        rel=NOISE)  # fmt: skip
    free = passed(run_stress(sim("settings = { locked_sm_clocks_mhz = [1500, 2100] }"), Fp32Test()))
    assert all(x == (1980.0, 2619.0, 0) for x in loaded(free))
    assert median(free, "fp32_tflops") == pytest.approx(
        healthy_rates["fp32.fp32_tflops"], rel=NOISE
    )


@covers("uncleared")
def test_uncleared_region_keeps_stale_data_only_when_the_clear_writes(sim: Sim) -> None:
    from gpuhealth.measure.backends.base import MEMORY_CLEAR_STEP
    from gpuhealth.patterns import MemPattern

    card = sim("uncleared = { address = 0x100, nbytes = 8 }")
    zero = MemPattern("constant", 0)
    buffer = card.alloc(64 << 20)
    card.begin_test("memtest")  # a memory test's zeros land: the fault is the clear's only
    card.memtest_write(buffer, buffer.nbytes // 4, zero)
    assert card.memtest_check(buffer, buffer.nbytes // 4, zero, None, 8).mismatches == 0
    card.end_test()
    card.begin_test(MEMORY_CLEAR_STEP)
    card.memtest_write(buffer, buffer.nbytes // 4, zero)
    check = card.memtest_check(buffer, buffer.nbytes // 4, zero, None, 8)
    assert check.mismatches == 2
    assert [address for address, _, _ in check.first] == [0x100, 0x104]
    card.end_test()


def test_every_fault_field_has_an_observable_effect_test() -> None:
    assert set(Faults.model_fields) == set(COVERED), "fault fields without a test: " + ", ".join(
        sorted(set(Faults.model_fields) - set(COVERED))
    )
    names = {name for name in globals() if name.startswith("test_")}
    assert set(COVERED.values()) <= names


def test_example_cards_load() -> None:
    paths = sorted(EXAMPLES.glob("*.toml"))
    assert len(paths) >= 5
    for path in paths:
        card = load_card(str(path))
        assert card.source == str(path)
