"""findings: the soak, performance, VBIOS, stored history, readiness, memory clear and a partial
or shortened run, one fault at a time.

Fast unit tests (no grade, no sim card; bench/mutation.py runs them per mutant): hand-built
model objects and a stored H100 record (tests/data/runs/) changed by dataclasses.replace. The
whole-grade tests (test_grade_scenarios.py, test_thermal_grading.py, test_every_rule.py) show
the same findings graded; these pin each finding's code, severity, words and numbers, on both
sides of every bound.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gpuhealth.judge.findings import (
    CLEAR_MIN_FRACTION,
    card_history_findings,
    memory_clear_findings,
    performance_findings,
    readiness_findings,
    selection_findings,
    soak_findings,
    soak_length_findings,
    vbios_findings,
)
from gpuhealth.judge.findings import test_findings as findings_of
from gpuhealth.models import (
    Finding,
    HealthCounters,
    HistoryFact,
    MemoryClear,
    ProcessInfo,
    ReadinessItem,
    ReadinessStatus,
    RunRecord,
    SoakSummary,
    StoredHistory,
    SubsystemScore,
    TestResult,
    UnclearedWord,
    Verification,
    WrongResult,
    record_from_json,
)

RECORD_PATH = Path(__file__).resolve().parent / "data" / "runs" / "h100-quick-2026-11-26.json"


@pytest.fixture(scope="module")
def record() -> RunRecord:
    return record_from_json(RECORD_PATH.read_text(encoding="utf-8"), str(RECORD_PATH))


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


# --- a failed pcie copy check (test_findings) -----------------------------------------------------


def test_a_pcie_copy_that_arrived_wrong_is_its_own_finding() -> None:
    wrong = WrongResult("host to device copy at byte 0x40", 1.0, 0.0)
    check = Verification("host", False, 100, 3, None, None, (), (wrong,))
    assert findings_of((TestResult("pcie", "failed", verifications=(check,)),)) == [
        Finding(
            "pcie_copy_corrupt",
            "critical",
            "pcie",
            "3 word(s) arrived wrong over PCIe, first in the host to device copy at byte 0x40",
            value="3",
            reference="0",
        )
    ]


def test_tests_left_out_by_the_selection_are_not_not_run() -> None:
    tests = (TestResult("gemm", "not_run"), TestResult("fp32", "not_run"))
    assert findings_of(tests, selected=("fp32",))[0].message == "not run: fp32 (not started)"
    assert findings_of(tests, selected=()) == []


# --- performance ----------------------------------------------------------------------------------


def subsystem(deficit: float, deficit_low: float, verdict: str = "low") -> SubsystemScore:
    return SubsystemScore(
        "memory",
        ("bandwidth.copy_gbs", "bandwidth.triad_gbs"),
        deficit,
        deficit_low,
        -4.26,
        0.00123,
        0.021,
        0.0056,
        0.012,
        0.004,
        5,
        verdict,  # type: ignore[arg-type]
    )


def test_a_slow_subsystem_is_judged_at_its_lower_bound() -> None:
    (found,) = performance_findings((subsystem(0.12, 0.08),), "H100 80GB HBM3")
    assert found == Finding(
        "performance_deficit",
        "major",
        "memory",
        "memory bandwidth 12% below healthy H100 80GB HBM3 cards",
        value="-12.0%",
        reference="healthy spread 2.1%, reference centre ±0.6%, run to run ±1.2%",
        measure=-0.08,
        detail="at least 8% below (one-sided 95%); 2 metric(s); t = -4.3, Holm-adjusted "
        "p = 0.0012; the reference from 5 card(s)",
    )
    # 7% at least is major, less is minor
    assert performance_findings((subsystem(0.1, 0.07),))[0].severity == "major"
    assert performance_findings((subsystem(0.1, 0.0699),))[0].severity == "minor"
    unsure = performance_findings((subsystem(0.05, -0.01),))[0]
    assert (unsure.severity, unsure.measure) == ("minor", 0.01)
    assert unsure.detail is not None and unsure.detail.startswith("at least 0% below")
    assert unsure.message == "memory bandwidth 5% below healthy cards of the model"
    # only "low" subsystems are findings
    assert performance_findings((subsystem(0.12, 0.08, "ok"),)) == []
    two = performance_findings((subsystem(0.12, 0.08, "ok"), subsystem(0.2, 0.1)))
    assert [f.value for f in two] == ["-20.0%"]


# --- the soak -------------------------------------------------------------------------------------


def soak(**changed: object) -> SoakSummary:
    return replace(SoakSummary(600.0, 100, 0, max_temperature_c=84.0), **changed)  # type: ignore[arg-type]


COUNTERS = HealthCounters(memory_temperature_max_c=95.0)


def test_no_soak_no_soak_finding() -> None:
    assert soak_findings(None, COUNTERS, 1.15) == []
    assert soak_findings(soak(), COUNTERS, 1.15) == []


def test_a_soak_the_thermal_guard_stopped() -> None:
    stopped = soak(stopped_early="GPU temperature reached 88 C (slowdown at 90 C)")
    assert soak_findings(stopped, COUNTERS) == [
        Finding(
            "thermal_guard",
            "major",
            "soak",
            "soak stopped before the slowdown threshold: GPU temperature reached 88 C "
            "(slowdown at 90 C)",
            value="84.0 °C",
        )
    ]
    assert soak_findings(soak(stopped_early="the driver lost the card"), COUNTERS) == []


def test_thermal_and_hardware_slowdown_under_load() -> None:
    assert soak_findings(soak(throttle_share={"thermal": 0.25}), COUNTERS) == [
        Finding(
            "thermal_slowdown",
            "critical",
            "soak",
            "the driver slowed the card down for temperature under load",
            value="25% of samples",
            reference="0%",
        )
    ]
    assert soak_findings(soak(throttle_share={"thermal": 0.0, "power": 0.9}), COUNTERS) == []
    # a soak stopped by the slowdown itself: both the guard and the slowdown
    stopped = soak(stopped_early="temperature: thermal slowdown at 87 C")
    assert codes(soak_findings(stopped, COUNTERS)) == ["thermal_guard", "thermal_slowdown"]
    assert soak_findings(stopped, COUNTERS)[1].value == "0% of samples"
    slowed_only = soak(stopped_early="thermal slowdown")  # no "temperature" in the words
    assert codes(soak_findings(slowed_only, COUNTERS)) == ["thermal_slowdown"]
    assert soak_findings(soak(throttle_share={"hardware slowdown": 0.125}), COUNTERS) == [
        Finding(
            "hardware_slowdown",
            "major",
            "soak",
            "the board or its power supply forced the clocks down (hardware slowdown or "
            "power brake) under load",
            value="12% of samples",
            reference="0%",
            measure=0.125,
        )
    ]
    assert soak_findings(soak(throttle_share={"hardware slowdown": 0.0}), COUNTERS) == []


def test_thermal_resistance_refused_or_judged() -> None:
    refused = soak(thermal_resistance_refusal="the temperature never settled")
    assert soak_findings(refused, COUNTERS) == [
        Finding(
            "thermal_resistance_unmeasured",
            "info",
            "soak",
            "thermal resistance not measured: the temperature never settled",
        )
    ]
    measured = replace(refused, thermal_resistance_c_per_w=0.05, reference_c_per_w=0.05)
    assert soak_findings(measured, COUNTERS) == []
    hot = soak(
        thermal_resistance_c_per_w=0.08,
        reference_c_per_w=0.05,
        thermal_ratio_low=1.5,
        thermal_reference="h100 model reference",
    )
    assert [(f.code, f.severity) for f in soak_findings(hot, COUNTERS, 1.15)] == [
        ("thermal_resistance", "major")
    ]
    # the policy's flag ratio is passed on: above the estimate, the bound below it: unproven
    unsure = replace(hot, thermal_ratio_low=1.1)
    assert codes(soak_findings(unsure, COUNTERS, 1.15)) == ["thermal_resistance_unproven"]
    assert codes(soak_findings(unsure, COUNTERS, None)) == ["thermal_resistance"]


def test_memory_within_five_degrees_of_its_limit() -> None:
    near = soak(max_memory_temperature_c=90.4)
    assert soak_findings(near, COUNTERS) == [
        Finding(
            "memory_temperature_high",
            "major",
            "soak",
            "memory reached 90 °C, 5 °C from its 95 °C limit",
            value="90 °C",
            reference="< 90 °C",
        )
    ]
    assert soak_findings(soak(max_memory_temperature_c=90.0), COUNTERS) == []  # 5 °C: fine
    assert soak_findings(soak(max_memory_temperature_c=80.0), COUNTERS) == []
    assert soak_findings(near, None) == []
    assert soak_findings(near, HealthCounters()) == []  # no limit read
    assert soak_findings(soak(max_memory_temperature_c=None), COUNTERS) == []


# --- VBIOS and the stored history -----------------------------------------------------------------


def test_a_vbios_no_healthy_card_was_seen_with(record: RunRecord) -> None:
    assert record.identity.vbios == "96.00.DA.00.0C"
    known = ("96.00.CF.00.01", "96.00.A5.00.1A")
    assert vbios_findings(record, known) == [
        Finding(
            "vbios_unrecognised",
            "info",
            "identity",
            "VBIOS 96.00.DA.00.0C is not one that healthy cards of this model were seen with "
            "(96.00.CF.00.01, 96.00.A5.00.1A)",
            value="96.00.DA.00.0C",
            reference="96.00.CF.00.01, 96.00.A5.00.1A",
        )
    ]
    assert vbios_findings(record, ("96.00.DA.00.0C", *known)) == []
    assert vbios_findings(record, ()) == []  # nothing known: nothing to compare
    unread = replace(record, identity=replace(record.identity, vbios=None))
    assert vbios_findings(unread, known) == []


def test_what_the_stored_history_contradicts() -> None:
    identity = HistoryFact("identity", "identity.uuid", "GPU-aaaa", "GPU-bbbb", "run-1")
    counter = HistoryFact("counter", "ecc_aggregate_uncorrected", "4", "0", "run-2")
    history = StoredHistory(True, "sqlite:///x.db", 2, (identity, counter))
    assert card_history_findings(history) == [
        Finding(
            "card_identity_changed",
            "major",
            "history",
            "identity.uuid is GPU-bbbb, but stored run run-1 of this card had GPU-aaaa: the "
            "history does not match the card; check it is the card you think",
            value="GPU-bbbb",
            reference="GPU-aaaa",
        ),
        Finding(
            "card_counters_decreased",
            "major",
            "history",
            "ecc_aggregate_uncorrected went down from 4 (stored run run-2) to 0: it never goes "
            "down on one card (an InfoROM reset or another card)",
            value="0",
            reference=">= 4",
        ),
    ]
    assert card_history_findings(None) == []
    assert card_history_findings(replace(history, checked=False)) == []
    assert card_history_findings(StoredHistory(True)) == []


# --- readiness ------------------------------------------------------------------------------------


def item(key: str, value: str | None, status: ReadinessStatus = "not_default") -> ReadinessItem:
    return ReadinessItem(
        key, key.replace("_", " "), value, f"{key} default", status, f"reset {key}"
    )


def readiness(record: RunRecord, *items: ReadinessItem) -> list[Finding]:
    return readiness_findings(replace(record, readiness=items))


def test_settings_away_from_their_defaults_are_listed_with_their_reset(record: RunRecord) -> None:
    found = readiness(
        record,
        item("mig_mode", "enabled"),
        item("compute_mode", "exclusive process"),
        item("persistence_mode", "enabled", "ok"),
    )
    assert found == [
        Finding(
            "settings_not_default",
            "info",
            "readiness",
            "not at factory defaults: mig mode enabled (reset: reset mig_mode); compute mode "
            "exclusive process (reset: reset compute_mode)",
            value="mig mode: enabled, compute mode: exclusive process",
            reference="mig mode: mig_mode default, compute mode: compute_mode default",
            measure=2.0,
        )
    ]
    assert readiness_findings(replace(record, readiness=None)) == []
    settled: tuple[ReadinessStatus, ...] = ("ok", "unreadable", "not_applicable", "site_policy")
    for status in settled:
        assert readiness(record, item("mig_mode", "enabled", status)) == [], status
    # ECC mode has findings of its own (ecc_disabled, ecc_mode_pending)
    assert readiness(record, item("ecc_mode", "disabled")) == []


def test_a_lowered_power_limit_is_health_a_raised_one_a_setting(record: RunRecord) -> None:
    assert record.identity.power_limit_default_w == 700.0
    assert readiness(record, item("power_limit", "450 W")) == []  # power_limit_reduced's
    assert readiness(record, item("power_limit", "699.5 W")) == []
    raised = readiness(record, item("power_limit", "700 W"))
    assert [(f.code, f.value) for f in raised] == [("settings_not_default", "power limit: 700 W")]
    assert codes(readiness(record, item("power_limit", "750 W"))) == ["settings_not_default"]
    # a value that is no number of watts, or none, or no default to hold it to: a setting
    assert codes(readiness(record, item("power_limit", "unlimited"))) == ["settings_not_default"]
    assert codes(readiness(record, item("power_limit", None))) == ["settings_not_default"]
    no_default = replace(record, identity=replace(record.identity, power_limit_default_w=None))
    assert codes(readiness(no_default, item("power_limit", "450 W"))) == ["settings_not_default"]
    # the limit is the only key held to the default in watts
    assert codes(readiness(record, item("locked_clocks", "450 W"))) == ["settings_not_default"]


# --- the memory clear -----------------------------------------------------------------------------


def clear(record: RunRecord, memory_clear: MemoryClear | None, **changed: object) -> list[Finding]:
    return memory_clear_findings(replace(record, memory_clear=memory_clear, **changed))  # type: ignore[arg-type]


def test_words_left_non_zero_by_the_clear_are_memory_errors(record: RunRecord) -> None:
    words = (UnclearedWord(0x7F00, 0xDEAD), UnclearedWord(0x8000, 0x1))
    failed = MemoryClear("failed", "cuda", words_not_zero=2, first_not_zero=words)
    assert clear(record, failed) == [
        Finding(
            "memory_errors",
            "critical",
            "memory_clear",
            "2 word(s) read back non-zero after the memory clear wrote zeros, first at address "
            "0x7F00 (0x0000DEAD): the card keeps data there, or that memory is faulty",
            value="2",
            reference="0",
        )
    ]
    unplaced = clear(record, replace(failed, first_not_zero=()))
    assert unplaced[0].message == (
        "2 word(s) read back non-zero after the memory clear wrote zeros: the card keeps data "
        "there, or that memory is faulty"
    )
    # a failed clear is a fault even where the run did not complete
    assert codes(clear(record, failed, complete=False)) == ["memory_errors"]
    assert clear(record, None) == []  # a record from before the clear


def test_a_clear_not_made_is_listed_in_a_complete_run_only(record: RunRecord) -> None:
    skipped = MemoryClear("not_cleared", "cuda", note="--no-clear")
    assert clear(record, skipped) == [
        Finding(
            "memory_not_cleared",
            "info",
            "memory_clear",
            "memory not cleared (--no-clear)",
            value="not cleared",
            reference="cleared",
        )
    ]
    unsaid = clear(record, replace(skipped, note=None))
    assert unsaid[0].message == "memory not cleared (no reason recorded)"
    assert clear(record, skipped, complete=False) == []


def test_a_partial_clear_names_what_held_the_rest(record: RunRecord) -> None:
    assert CLEAR_MIN_FRACTION == 0.98
    partial = MemoryClear("cleared", "cuda", fraction=0.9712)
    held = (ProcessInfo(4242, "python3"), ProcessInfo(77))
    assert clear(record, partial, processes=held) == [
        Finding(
            "memory_not_cleared",
            "info",
            "memory_clear",
            "memory only partly cleared: 97.1% of it overwritten and read back; the rest was "
            "held by 4242 (python3), 77 (unnamed): clear it again with the card idle",
            value="97.1%",
            reference=">= 98%",
        )
    ]
    alone = clear(record, partial, processes=())
    assert alone[0].message == (
        "memory only partly cleared: 97.1% of it overwritten and read back; the rest was held "
        "by the driver or another process: clear it again with the card idle"
    )
    assert [f.value for f in clear(record, replace(partial, fraction=0.9799))] == ["98.0%"]
    assert clear(record, replace(partial, fraction=0.98)) == []
    assert clear(record, replace(partial, fraction=0.994)) == []
    assert clear(record, replace(partial, fraction=None)) == []


# --- a partial run and a shortened soak -----------------------------------------------------------


def test_tests_left_out_with_tests_are_not_measured(record: RunRecord) -> None:
    names = [t.name for t in record.tests]
    assert names == ["bandwidth", "memtest", "fp32", "fp16_tensor", "gemm", "soak"]
    partial = replace(record, tests_selected=("memtest", "gemm"))
    assert selection_findings(partial) == [
        Finding(
            "test_not_measured",
            "major",
            "selection",
            "not measured: bandwidth, fp32, fp16_tensor, soak (not selected with --tests); the "
            "grade covers memtest, gemm only",
            value="not selected",
            reference="every test",
        )
    ]
    assert selection_findings(replace(record, tests_selected=tuple(names))) == []
    assert selection_findings(replace(record, tests_selected=None)) == []


def test_a_soak_shorter_than_its_preset_s(record: RunRecord) -> None:
    assert record.preset == "quick"
    short = replace(record, soak_duration_s=90.0)
    assert soak_length_findings(short, 120.0) == [
        Finding(
            "soak_shortened",
            "minor",
            "soak",
            "the soak ran 90 s (--soak), shorter than the quick preset's 120 s: less thermal "
            "evidence",
            value="90 s",
            reference=">= 120 s",
            measure=90.0,
        )
    ]
    assert soak_length_findings(replace(record, soak_duration_s=119.5), 120.0)[0].value == (
        "119.5 s"
    )
    assert soak_length_findings(replace(record, soak_duration_s=120.0), 120.0) == []
    assert soak_length_findings(replace(record, soak_duration_s=3600.0), 120.0) == []  # burn-in
    assert soak_length_findings(short, None) == []
    assert soak_length_findings(replace(record, soak_duration_s=None), 120.0) == []
