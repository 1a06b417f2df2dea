"""findings.test_findings: how each test's end and each failed check becomes a finding.

Unit tests on hand-made test results (no grade, no sim card): the whole-grade tests
(test_grade_scenarios.py, test_verifications.py) show the same through a run; these pin the
decisions and the buyer's words one by one (the survivors bench/mutation.py found).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gpuhealth.judge.findings import _thermal_resistance_findings, run_findings
from gpuhealth.judge.findings import test_findings as findings_of
from gpuhealth.models import (
    Finding,
    MemoryMismatch,
    Precheck,
    RunRecord,
    SoakSummary,
    TestResult,
    Verification,
    WrongResult,
    record_from_json,
)


def failed(
    mismatches: int,
    memory_errors: tuple[MemoryMismatch, ...] = (),
    wrong_results: tuple[WrongResult, ...] = (),
) -> Verification:
    return Verification("host", False, 100, mismatches, None, None, memory_errors, wrong_results)


def only(tests: tuple[TestResult, ...]) -> Finding:
    (finding,) = findings_of(tests)
    return finding


def test_tests_not_run_are_one_finding_naming_them_all() -> None:
    tests = (
        TestResult("bandwidth", "passed"),
        TestResult("fp32", "not_run", message="the run was stopped"),
        TestResult("gemm", "not_run"),
    )
    assert only(tests) == Finding(
        "test_not_measured",
        "major",
        "run",
        "not run: fp32, gemm (the run was stopped)",
        value="not_run",
    )
    assert only((TestResult("gemm", "not_run"),)).message == "not run: gemm (not started)"


def test_a_skipped_test_is_not_applicable_and_says_why() -> None:
    said = only((TestResult("fp16_tensor", "skipped", message="no tensor cores"),))
    assert said == Finding(
        "test_not_applicable",
        "info",
        "fp16_tensor",
        "fp16_tensor: skipped (no tensor cores)",
        value="skipped",
    )
    unsaid = only((TestResult("fp16_tensor", "skipped"),))
    assert unsaid.message == "fp16_tensor: skipped (not applicable to this card)"


def test_an_error_is_not_measured_with_its_message() -> None:
    said = only((TestResult("gemm", "error", message="out of memory"),))
    assert said == Finding(
        "test_not_measured", "major", "gemm", "gemm: error (out of memory)", value="error"
    )
    assert only((TestResult("gemm", "error"),)).message == "gemm: error"


def test_a_soak_the_thermal_guard_stopped_is_not_an_error_finding() -> None:
    guard = {"stopped_early": "GPU temperature reached 88 C (slowdown at 90 C)"}
    assert findings_of((TestResult("soak", "error", parameters=guard),)) == []
    other = {"stopped_early": "the driver lost the card"}
    assert only((TestResult("soak", "error", parameters=other),)).code == "test_not_measured"
    # the guard's words excuse the soak only
    assert only((TestResult("fp32", "error", parameters=guard),)).code == "test_not_measured"


def test_every_failed_check_is_a_finding_and_passed_ones_are_not() -> None:
    checks = (Verification("host", True, 100, 0), failed(2), failed(3))
    found = findings_of((TestResult("gemm", "failed", verifications=checks),))
    assert [(f.code, f.value) for f in found] == [("wrong_results", "2"), ("wrong_results", "3")]


def test_a_memtest_mismatch_is_a_memory_error_with_its_first_address() -> None:
    word = MemoryMismatch(0x1F000, 0xFFFFFFFF, 0xFFFFFFF7, "moving-inversions")
    f = only((TestResult("memtest", "failed", verifications=(failed(2, memory_errors=(word,)),)),))
    assert f == Finding(
        "memory_errors",
        "critical",
        "memtest",
        "2 memory error(s) in memtest; first at address 0x1F000 bit(s) 3 (moving-inversions)",
        value="2",
        reference="0",
    )
    # memtest's own failed check is a memory error even without a word to show
    assert only((TestResult("memtest", "failed", verifications=(failed(1),)),)).code == (
        "memory_errors"
    )
    # and a word that read back wrong in another test is one too
    other = only(
        (TestResult("bandwidth", "failed", verifications=(failed(1, memory_errors=(word,)),)),)
    )
    assert other.code == "memory_errors"


def test_a_wrong_result_elsewhere_names_its_place() -> None:
    wrong = WrongResult("C[12, 40]", 1.0, 2.0)
    f = only((TestResult("gemm", "failed", verifications=(failed(1, wrong_results=(wrong,)),)),))
    assert f == Finding(
        "wrong_results",
        "critical",
        "gemm",
        "1 wrong result(s) in gemm, first at C[12, 40]",
        value="1",
        reference="0",
    )
    soak = only((TestResult("soak", "failed", verifications=(failed(4, wrong_results=(wrong,)),)),))
    assert soak == Finding(
        "silent_data_corruption",
        "critical",
        "soak",
        "4 soak iteration(s) gave a different result under load, first at C[12, 40]",
        value="4",
        reference="0",
    )
    unplaced = only((TestResult("soak", "failed", verifications=(failed(2),)),))
    assert unplaced.message == "2 soak iteration(s) gave a different result under load"
    nowhere = only((TestResult("fp32", "failed", verifications=(failed(3),)),))
    assert nowhere.message == "3 wrong result(s) in fp32, first at unknown"


def test_a_memory_error_names_every_flipped_bit_and_none_without_a_word() -> None:
    word = MemoryMismatch(0x40, 0x0, 0x5, "walking-ones")
    f = only((TestResult("memtest", "failed", verifications=(failed(1, memory_errors=(word,)),)),))
    assert (
        f.message
        == "1 memory error(s) in memtest; first at address 0x40 bit(s) 0, 2 (walking-ones)"
    )
    bare = only((TestResult("memtest", "failed", verifications=(failed(5),)),))
    assert bare.message == "5 memory error(s) in memtest"


RECORD = Path(__file__).resolve().parent / "data" / "runs" / "h100-quick-2026-11-26.json"


def with_memtest_coverage(record: RunRecord, coverage: float) -> RunRecord:
    tests = tuple(
        replace(t, parameters={**t.parameters, "coverage": coverage}) if t.name == "memtest" else t
        for t in record.tests
    )
    return replace(record, tests=tests)


def test_run_conditions_other_processes_and_memtest_coverage() -> None:
    record = record_from_json(RECORD.read_text(encoding="utf-8"), str(RECORD))
    busy = Precheck("other processes", "warn", "2 other processes use the card")
    quiet = Precheck("other processes", "ok", "no other process")
    elsewhere = Precheck("driver", "warn", "old driver")
    record = replace(record, prechecks=(quiet, elsewhere, busy))
    assert run_findings(with_memtest_coverage(record, 0.95)) == [
        Finding("other_processes", "minor", "precheck", "2 other processes use the card")
    ]
    no_memtest = replace(record, tests=tuple(t for t in record.tests if t.name != "memtest"))
    assert run_findings(replace(no_memtest, prechecks=())) == []
    low = run_findings(with_memtest_coverage(replace(record, prechecks=()), 0.9449))
    assert low == [
        Finding(
            "memtest_coverage_low",
            "minor",
            "memtest",
            "the memory test covered 94.5% of memory (the rest was in use)",
            value="94.5%",
            reference=">= 95%",
            measure=0.9449,
        )
    ]


def thermal(measured: float, reference: float, ratio_low: float | None) -> list[Finding]:
    summary = SoakSummary(
        600.0,
        100,
        0,
        thermal_resistance_c_per_w=measured,
        reference_c_per_w=reference,
        thermal_ratio_low=ratio_low,
        thermal_reference="h100 model reference",
    )
    return _thermal_resistance_findings(summary, flag_ratio=1.15)


def test_thermal_resistance_at_its_lower_bound_and_the_unproven_band() -> None:
    assert thermal(0.05, 0.05, 1.0) == []  # exactly the reference: nothing to say
    assert thermal(0.05, 0.0, 1.0) == [] and thermal(0.0, 0.05, 1.0) == []  # nothing to judge
    assert thermal(0.06, 0.05, None) == []
    proven = thermal(0.08, 0.05, 1.5)  # at least 1.5x: major
    assert [(f.code, f.severity, f.measure) for f in proven] == [
        ("thermal_resistance", "major", 1.5)
    ]
    assert (
        proven[0].message
        == "the card runs at least 50% hotter per watt than healthy cards of its model"
    )
    mild = thermal(0.07, 0.05, 1.15)  # the lower bound reaches the flag: proven, not major
    assert [(f.code, f.severity, f.measure) for f in mild] == [("thermal_resistance", "info", 1.15)]
    assert mild[0].message.startswith("the card runs at least 15% hotter")
    unproven = thermal(0.0575, 0.05, 1.0)  # 1.15x exactly, the bound below the flag: unproven
    assert [(f.code, f.measure) for f in unproven] == [("thermal_resistance_unproven", 1.15)]
    assert unproven[0].message.startswith("the card may run up to 15% hotter per watt")
    assert thermal(0.05749, 0.05, 1.0)[0].code == "thermal_resistance"  # below the flag
    assert thermal(0.06, 0.05, 1.163456)[0].measure == 1.1635
    # the percentages are the ratios' excess over 1, rounded: 1.8x is 80%, 1.18x 18%
    assert thermal(0.09, 0.05, 1.8)[0].message.startswith("the card runs at least 80% hotter")
    assert thermal(0.059, 0.05, 1.0)[0].message.startswith("the card may run up to 18% hotter")
    assert thermal(0.08, 0.05, 1.0)[0].message.startswith("the card may run up to 60% hotter")
