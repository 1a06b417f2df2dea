"""Evidence, not claims (gpuhealth/judge/evidence.py): genuine records have no problems, and each
way of marking a test passed with its evidence removed or thinned out is caught, as exactly one
test_not_measured finding for that test."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from recordkit import edit, get
from simkit import EXAMPLES, GradedRuns

from gpuhealth import __version__
from gpuhealth.judge.evidence import (
    LEGACY_TESTS,
    LEGACY_VERSIONS,
    MEMORY_CHUNK_S,
    MIN_REPETITIONS,
    MIN_TENSOR_CC,
    SIM_PRODUCT_BLOCK,
    STANDARD_TESTS,
    evidence_findings,
    evidence_problems,
)
from gpuhealth.measure.backends import sim
from gpuhealth.measure.stresstests import TEST_NAMES, base, fp16_tensor, soak
from gpuhealth.models import Metric, RunRecord, Scalar, TestResult, record_from_json
from gpuhealth.presets import PRESETS

RUNS = Path(__file__).resolve().parent / "data" / "runs"
REAL_STANDARD = RUNS / "h100-second-card-standard-2026-11-26.json"  # real H100, passes + phase
REAL_STUCK = RUNS / "sim-stuck-bit-quick.json"
PRESET_ARGS = {"quick": ("--quick",), "standard": (), "thorough": ("--thorough",)}
CARDS = {
    "healthy": ("--demo",),
    **{
        name: ("--sim-card", str(EXAMPLES / f"{name}.toml"))
        for name in ("stuck-bit", "slow-memory", "worn", "lost-in-soak")
    },
}


def load(path: Path) -> RunRecord:
    return record_from_json(path.read_text(encoding="utf-8"), str(path))


def grade_args(card: str, preset: str) -> tuple[str, ...]:
    args = (*CARDS[card], *PRESET_ARGS[preset])
    # the same command as other test files, so that the session runs it once
    return (*args, "--json") if args == ("--demo", "--quick") else args


def graded_record(graded: GradedRuns, *args: str) -> RunRecord:
    run = graded.grade(*args)
    path = run.out_dir / "run.json"
    assert path.is_file(), run.result.output
    return load(path)


def describe(record: RunRecord) -> list[tuple[str, str]]:
    return [(p.test, p.problem) for p in evidence_problems(record)]


# --- genuine records --------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(RUNS.glob("*.json")), ids=lambda p: p.stem)
def test_recorded_runs_have_their_evidence(path: Path) -> None:
    record = load(path)
    assert record.tool_version in LEGACY_VERSIONS  # internal consistency only
    assert describe(record) == []
    assert evidence_findings(record) == []


@pytest.mark.parametrize("preset", list(PRESET_ARGS))
@pytest.mark.parametrize("card", list(CARDS))
def test_fresh_sim_grades_have_their_evidence(graded: GradedRuns, card: str, preset: str) -> None:
    record = graded_record(graded, *grade_args(card, preset))
    assert record.tool_version == __version__ not in LEGACY_VERSIONS  # the preset tier applies
    assert record.preset == preset
    if card == "healthy":
        assert [t.status for t in record.tests] == ["passed"] * len(TEST_NAMES)
    assert describe(record) == []
    assert evidence_findings(record) == []


def test_a_test_that_ran_out_of_its_budget_keeps_fewer_repetitions(
    graded: GradedRuns, write_card: Callable[..., Path]
) -> None:
    """repeat() ends a test with at least MIN_REPETITIONS when its time budget is spent: a
    genuine pass with fewer repetitions than the preset's."""
    card = write_card("fp32_scale = 0.01")
    record = graded_record(graded, "--sim-card", str(card), "--quick")
    fp32 = record.test("fp32")
    assert fp32 is not None and fp32.status == "passed"
    timed = fp32.metric("fp32_tflops")
    assert timed is not None
    assert MIN_REPETITIONS <= len(timed.values) < PRESETS["quick"].fp32.repetitions
    assert describe(record) == []


def test_a_soak_the_thermal_guard_stopped_is_not_missing_evidence(
    graded: GradedRuns, write_card: Callable[..., Path]
) -> None:
    """Shorter than the preset's soak, but that is what was measured (graded D by thermal_guard)."""
    card = write_card("thermal_resistance_scale = 1.9")
    record = graded_record(graded, "--sim-card", str(card), "--quick")
    soaked = record.test("soak")
    assert soaked is not None and soaked.status == "passed"
    assert "guard" in str(soaked.parameters["stopped_early"])
    assert float(soaked.parameters["soaked_s"]) < PRESETS["quick"].soak.duration_s
    assert describe(record) == []


def test_the_numbers_are_those_the_stress_tests_write() -> None:
    assert TEST_NAMES == STANDARD_TESTS
    assert set(LEGACY_TESTS) < set(STANDARD_TESTS)
    assert MIN_REPETITIONS == base.MIN_REPETITIONS
    assert MIN_TENSOR_CC == fp16_tensor.MIN_TENSOR_CC
    assert SIM_PRODUCT_BLOCK == sim.GEMM_BLOCK
    assert MEMORY_CHUNK_S == soak.MEMORY_CHUNK_S


# --- attacks on a genuine passed record ---------------------------------------------------------


@pytest.fixture(params=["current", "real"])
def genuine(request: pytest.FixtureRequest, graded: GradedRuns) -> RunRecord:
    """A fresh sim grade of this version (both tiers) and a real H100's record (tier 1)."""
    if request.param == "current":
        record = graded_record(graded, *grade_args("healthy", "quick"))
    else:
        record = load(REAL_STANDARD)
    assert record.complete and all(t.status == "passed" for t in record.tests)
    assert describe(record) == []
    return record


@pytest.fixture(params=["current", "legacy"])
def stuck(request: pytest.FixtureRequest, graded: GradedRuns) -> RunRecord:
    if request.param == "current":
        record = graded_record(graded, *grade_args("stuck-bit", "standard"))
    else:
        record = load(REAL_STUCK)
    memtest = record.test("memtest")
    assert memtest is not None and memtest.status == "failed"
    assert describe(record) == []
    return record


def with_params(record: RunRecord, name: str, **params: Scalar) -> RunRecord:
    return edit(record, name, parameters={**get(record, name).parameters, **params})


def with_values(
    test: TestResult, keep: Callable[[tuple[float, ...]], tuple[float, ...]]
) -> tuple[Metric, ...]:
    return tuple(replace(m, values=keep(m.values)) for m in test.metrics)


def assert_caught(record: RunRecord, test: str, text: str, claim: str = "passed") -> None:
    problems = evidence_problems(record)
    assert any(p.test == test and text in p.problem for p in problems), describe(record)
    assert {p.test for p in problems} == {test}, describe(record)
    findings = evidence_findings(record)
    assert len(findings) == 1, findings
    finding = findings[0]
    assert (finding.code, finding.severity, finding.source) == ("test_not_measured", "major", test)
    assert finding.value == "no evidence"
    assert finding.message.startswith(f"{test}: marked {claim} without its evidence: ")
    assert text in finding.message


def test_a_dropped_memtest_verification(genuine: RunRecord) -> None:
    assert_caught(edit(genuine, "memtest", verifications=()), "memtest", "no verification")


def test_fewer_memtest_patterns_than_claimed(genuine: RunRecord) -> None:
    memtest = get(genuine, "memtest")
    thinned = edit(
        with_params(genuine, "memtest", patterns_done=2),
        "memtest",
        metrics=with_values(memtest, lambda v: v[:2]),
    )
    patterns = memtest.parameters["patterns"]
    assert_caught(thinned, "memtest", f"2 of {patterns} patterns were run")


def test_memtest_thinned_out_consistently_is_below_the_preset(graded: GradedRuns) -> None:
    record = graded_record(graded, *grade_args("healthy", "quick"))
    memtest = get(record, "memtest")
    words = int(memtest.parameters["tested_bytes"]) // 4
    check = replace(memtest.verifications[0], checked=words * 2 * 2)
    thinned = edit(
        with_params(record, "memtest", patterns=2, patterns_done=2),
        "memtest",
        metrics=with_values(memtest, lambda v: v[:2]),
        verifications=(check,),
    )
    assert_caught(thinned, "memtest", "2 of the quick preset's 8 memtest patterns were run")


def test_a_smaller_memtest_check_count(genuine: RunRecord) -> None:
    memtest = get(genuine, "memtest")
    check = replace(memtest.verifications[0], checked=memtest.verifications[0].checked // 2)
    assert_caught(edit(genuine, "memtest", verifications=(check,)), "memtest", "words,")


def test_a_removed_soak_iteration(genuine: RunRecord) -> None:
    soaked = get(genuine, "soak")
    iterations = soaked.parameters["iterations"]
    metrics = tuple(
        replace(m, values=m.values[:-1]) if m.name.startswith("iteration_") else m
        for m in soaked.metrics
    )
    assert_caught(
        edit(genuine, "soak", metrics=metrics),
        "soak",
        f"iteration_tflops has {int(iterations) - 1} values for {iterations} iterations",
    )


def test_a_test_deleted_from_a_complete_record(genuine: RunRecord) -> None:
    cut = replace(genuine, tests=tuple(t for t in genuine.tests if t.name != "gemm"))
    count = len(genuine.tests)  # 6 in a 0.1.0 record (the real one), 7 since pcie
    assert_caught(cut, "run", f"1 of the {count} tests are missing (gemm)", claim="complete")


@pytest.fixture
def current(graded: GradedRuns) -> RunRecord:
    record = graded_record(graded, *grade_args("healthy", "quick"))
    assert record.tool_version not in LEGACY_VERSIONS and describe(record) == []
    return record


def test_the_pcie_test_deleted_to_hide_a_slow_link(current: RunRecord) -> None:
    """A seller hiding a riser: no record since 0.2.0 is complete without its pcie test."""
    cut = replace(current, tests=tuple(t for t in current.tests if t.name != "pcie"))
    assert_caught(cut, "run", "1 of the 7 tests are missing (pcie)", claim="complete")


@pytest.mark.parametrize("field", ["readiness", "memory_clear"])
def test_readiness_or_clear_deleted_from_a_complete_record(current: RunRecord, field: str) -> None:
    what = field.replace("_", " ")
    assert_caught(
        replace(current, **{field: None}), "run", f"its {what} is missing", claim="complete"
    )


def test_a_legacy_record_needs_none_of_them() -> None:
    legacy = load(REAL_STANDARD)
    assert legacy.tool_version in LEGACY_VERSIONS and legacy.memory_clear is None
    assert legacy.test("pcie") is None and describe(legacy) == []


def test_bandwidth_repetitions_cut_below_the_presets(genuine: RunRecord) -> None:
    bandwidth = get(genuine, "bandwidth")
    cut = edit(genuine, "bandwidth", metrics=with_values(bandwidth, lambda v: v[:3]))
    required = PRESETS[genuine.preset].bandwidth.repetitions
    assert_caught(cut, "bandwidth", f"metric copy_gbs has 3 values, {required} required")


def test_bandwidth_repetitions_cut_with_the_parameter(graded: GradedRuns) -> None:
    record = graded_record(graded, *grade_args("healthy", "quick"))
    bandwidth = get(record, "bandwidth")
    cut = edit(
        with_params(record, "bandwidth", repetitions=3),
        "bandwidth",
        metrics=with_values(bandwidth, lambda v: v[:3]),
    )
    assert_caught(cut, "bandwidth", "repetitions is 3, the quick preset's is 10")


def test_removed_telemetry(genuine: RunRecord) -> None:
    assert_caught(edit(genuine, "soak", telemetry=()), "soak", "no telemetry sample in")


def test_thinned_telemetry_is_below_the_sampling_rate(graded: GradedRuns) -> None:
    record = graded_record(graded, *grade_args("healthy", "quick"))
    soaked = get(record, "soak")
    thinned = edit(record, "soak", telemetry=soaked.telemetry[::4])
    assert_caught(thinned, "soak", "telemetry samples in 75.")


def test_a_shortened_soak(graded: GradedRuns) -> None:
    record = graded_record(graded, *grade_args("healthy", "quick"))
    assert_caught(
        with_params(record, "soak", soaked_s=10.0), "soak", "soaked_s is 10.0, at least 29.4 s"
    )


def test_a_removed_memory_phase(graded: GradedRuns) -> None:
    record = graded_record(graded, *grade_args("healthy", "quick"))
    soaked = get(record, "soak")
    parameters = {k: v for k, v in soaked.parameters.items() if not k.startswith("memory_phase")}
    metrics = tuple(m for m in soaked.metrics if not m.name.startswith("memory_phase"))
    cut = edit(record, "soak", parameters=parameters, metrics=metrics)
    assert_caught(cut, "soak", "memory_phase_s is missing, the quick preset's is 45")


def test_a_failed_memtest_marked_passed_keeps_its_mismatches(stuck: RunRecord) -> None:
    memtest = get(stuck, "memtest")
    mismatches = memtest.verifications[0].mismatches
    assert mismatches > 0
    checks = (replace(memtest.verifications[0], passed=True), *memtest.verifications[1:])
    forged = edit(stuck, "memtest", status="passed", verifications=checks)
    assert_caught(forged, "memtest", f"found {mismatches} mismatch(es), 0 allowed")
    assert_caught(forged, "memtest", "lists 1 memory error(s)")
    # the verification left failed: the test is still not passed
    untouched = edit(stuck, "memtest", status="passed")
    assert_caught(untouched, "memtest", "verification 1 did not pass")


def test_a_failed_test_without_a_failed_verification(stuck: RunRecord) -> None:
    memtest = get(stuck, "memtest")
    clean = replace(memtest.verifications[0], passed=True, mismatches=0, memory_errors=())
    forged = edit(stuck, "memtest", verifications=(clean,))
    assert_caught(forged, "memtest", "failed without a failed verification", claim="failed")


# --- claims about the test itself ---------------------------------------------------------------


def test_only_the_tensor_test_may_be_skipped_and_only_on_old_cards(genuine: RunRecord) -> None:
    skipped = edit(genuine, "fp16_tensor", status="skipped")
    assert_caught(skipped, "fp16_tensor", "skipped on compute capability 9.0", claim="skipped")
    old = replace(skipped, identity=replace(skipped.identity, compute_capability="7.0"))
    assert describe(old) == []
    assert_caught(
        edit(genuine, "gemm", status="skipped"), "gemm", "applies to every card", "skipped"
    )


def test_a_test_recorded_twice(genuine: RunRecord) -> None:
    doubled = replace(genuine, tests=(*genuine.tests, get(genuine, "gemm")))
    assert_caught(doubled, "run", "test gemm recorded 2 times", claim="complete")


def test_an_unknown_preset_has_no_minimums_to_meet(graded: GradedRuns) -> None:
    record = graded_record(graded, *grade_args("healthy", "quick"))
    assert_caught(replace(record, preset="tiny"), "run", "preset 'tiny' is not one of", "complete")
    legacy = replace(record, preset="tiny", tool_version=LEGACY_VERSIONS[0])
    assert describe(legacy) == []


def test_a_short_test_may_fall_between_two_samples(genuine: RunRecord) -> None:
    """The sampler reads every 0.2 s: a test shorter than 0.4 s may hold no sample; the soak
    always holds some (its thermal guard reads them)."""
    short = edit(genuine, "fp32", telemetry=(), duration_s=0.3)
    assert describe(short) == []
    assert_caught(edit(short, "fp32", duration_s=0.5), "fp32", "no telemetry sample in 0.5 s")
    assert_caught(edit(genuine, "soak", telemetry=(), duration_s=0.3), "soak", "no telemetry")


def test_only_the_guards_own_words_excuse_a_short_soak(graded: GradedRuns) -> None:
    """A soak stopped by the thermal guard is graded D or F (findings.soak_findings matches
    "temperature" and "thermal slowdown"); any other reason does not excuse a short soak."""
    record = graded_record(graded, *grade_args("healthy", "quick"))
    short = with_params(record, "soak", soaked_s=10.0, stopped_early="thermal")
    assert_caught(short, "soak", "soaked_s is 10.0")
    guard = "GPU temperature 86 °C reached the guard 86 °C (89 °C slowdown − 3)"
    assert describe(with_params(short, "soak", stopped_early=guard)) == []
