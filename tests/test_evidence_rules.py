"""Each rule of gpuhealth/judge/evidence.py, one tampered field at a time, on stored records only
(fast: no sim grade; the mutation benchmark runs this file per mutant, bench/mutation.py).

Each test takes a genuine record (no evidence problem), changes what one claim rests on, and
asserts the exact problems found: which test, which words and numbers, in which order, on both
sides of every bound. The records: tests/data/current/ (simulated H100 graded quick and thorough
by this version: both tiers, pcie, readiness, memory clear; tests/data/current/regenerate.py),
a real H100's standard record and a sim stuck-bit record from tests/data/runs/ (0.1.0: the first
tier only). A current record relabelled 0.1.0 is checked by the first tier only, so that a
tampered count shows the first tier's words alone.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from recordkit import edit, get

from gpuhealth.judge.evidence import (
    CUDA_TOTAL_MIN_SHARE,
    LEGACY_VERSIONS,
    PCIE_COPY_MIN_BYTES,
    TELEMETRY_MIN_TEST_S,
    TELEMETRY_RATE_MIN_TEST_S,
    TIME_TOLERANCE_S,
    evidence_findings,
    evidence_problems,
)
from gpuhealth.models import (
    Metric,
    RunRecord,
    Scalar,
    TelemetrySample,
    TestResult,
    Verification,
    WrongResult,
    record_from_json,
)

DATA = Path(__file__).resolve().parent / "data"
QUICK = DATA / "current" / "sim-h100-quick.json"
THOROUGH = DATA / "current" / "sim-h100-thorough.json"
REAL = DATA / "runs" / "h100-second-card-standard-2026-11-26.json"  # cuda, 0.1.0
STUCK = DATA / "runs" / "sim-stuck-bit-quick.json"  # memtest failed, 0.1.0

Problems = list[tuple[str, str]]


@functools.cache
def stored(path: Path) -> RunRecord:
    return record_from_json(path.read_text(encoding="utf-8"), str(path))


def quick() -> RunRecord:
    return stored(QUICK)


def thorough() -> RunRecord:
    return stored(THOROUGH)


def real() -> RunRecord:
    return stored(REAL)


def first_tier(record: RunRecord) -> RunRecord:
    """The record relabelled 0.1.0: internal consistency only, no preset minimums."""
    return replace(record, tool_version=LEGACY_VERSIONS[0])


def sim() -> RunRecord:
    """The quick sim record, first tier only (its products are the sim's corner block)."""
    return first_tier(quick())


def problems(record: RunRecord) -> Problems:
    return [(p.test, p.problem) for p in evidence_problems(record)]


def with_params(record: RunRecord, name: str, **params: Scalar | None) -> RunRecord:
    """Parameters set; one set to None is removed."""
    merged = {**get(record, name).parameters, **params}
    return edit(record, name, parameters={k: v for k, v in merged.items() if v is not None})


def with_metric(record: RunRecord, name: str, metric: str, values: tuple[float, ...]) -> RunRecord:
    test = get(record, name)
    metrics = tuple(replace(m, values=values) if m.name == metric else m for m in test.metrics)
    return edit(record, name, metrics=metrics)


def cut_metrics(record: RunRecord, name: str, count: int) -> RunRecord:
    """Every metric of the test cut to its first count values."""
    test = get(record, name)
    return edit(
        record, name, metrics=tuple(replace(m, values=m.values[:count]) for m in test.metrics)
    )


def with_checked(record: RunRecord, name: str, *checked: int) -> RunRecord:
    test = get(record, name)
    checks = tuple(replace(v, checked=c) for v, c in zip(test.verifications, checked, strict=True))
    return edit(record, name, verifications=checks)


def values(record: RunRecord, name: str, metric: str) -> tuple[float, ...]:
    found = get(record, name).metric(metric)
    assert found is not None
    return found.values


def lasting(record: RunRecord, name: str, duration_s: float, time_budget_s: float) -> RunRecord:
    """The test made to last duration_s, with a sample every 0.2 s of it."""
    start_s = get(record, name).started_s
    samples = tuple(TelemetrySample(start_s + 0.2 * i) for i in range(int(duration_s / 0.2)))
    return edit(record, name, duration_s=duration_s, time_budget_s=time_budget_s, telemetry=samples)


def param(record: RunRecord, name: str, key: str) -> int:
    value = get(record, name).parameters[key]
    assert isinstance(value, int | float)
    return int(value)


def test_the_stored_records_are_genuine() -> None:
    for record in (quick(), thorough()):
        assert record.tool_version not in LEGACY_VERSIONS and record.complete
        assert record.readiness is not None and record.memory_clear is not None
        assert [t.status for t in record.tests] == ["passed"] * 7
        assert problems(record) == [] and evidence_findings(record) == []
    for record in (real(), stored(STUCK), sim()):
        assert record.tool_version in LEGACY_VERSIONS
        assert problems(record) == [] and evidence_findings(record) == []


# --- the whole record ---------------------------------------------------------------------------


def test_findings_one_per_test_in_order_with_every_problem() -> None:
    record = replace(quick(), readiness=None, memory_clear=None)
    record = with_checked(record, "gemm", 511, 510)
    findings = evidence_findings(record)
    assert [(f.code, f.severity, f.source, f.value) for f in findings] == [
        ("test_not_measured", "major", "run", "no evidence"),
        ("test_not_measured", "major", "gemm", "no evidence"),
    ]
    assert findings[0].message == (
        "run: marked complete without its evidence: complete, but its readiness is missing "
        "(every grade since 0.2.0 records it); complete, but its memory clear is missing "
        "(every grade since 0.2.0 records it)"
    )
    assert findings[1].message == (
        "gemm: marked passed without its evidence: checked 511 FP16 GEMM elements, 512 "
        "required; checked 510 FP32 GEMM elements, 512 required"
    )


def test_an_incomplete_record_is_claimed_graded() -> None:
    record = replace(quick(), complete=False)
    doubled = replace(record, tests=(*record.tests, get(record, "gemm")))
    assert problems(doubled) == [("run", "test gemm recorded 2 times, once required")]
    (finding,) = evidence_findings(doubled)
    assert finding.message == (
        "run: marked graded without its evidence: test gemm recorded 2 times, once required"
    )
    # an incomplete record need not hold every test, readiness or clear
    cut = replace(record, tests=record.tests[:2], readiness=None, memory_clear=None)
    assert problems(cut) == []


def test_a_failed_test_is_claimed_failed_and_a_skipped_one_skipped() -> None:
    stuck = stored(STUCK)
    memtest = get(stuck, "memtest")
    clean = replace(memtest.verifications[0], passed=True, mismatches=0, memory_errors=())
    forged = edit(stuck, "memtest", verifications=(clean,))
    assert problems(forged) == [("memtest", "failed without a failed verification")]
    (finding,) = evidence_findings(forged)
    assert finding.message == (
        "memtest: marked failed without its evidence: failed without a failed verification"
    )
    skipped = edit(quick(), "gemm", status="skipped")
    (finding,) = evidence_findings(skipped)
    assert finding.message == (
        "gemm: marked skipped without its evidence: skipped, but gemm applies to every card"
    )


def test_problems_come_run_first_then_in_test_order() -> None:
    record = replace(quick(), tests=(*quick().tests, get(quick(), "pcie")), preset="tiny")
    record = with_checked(record, "gemm", 1, 512)
    record = with_checked(record, "fp32", 1)
    per_launch = 1056 * 256 * 8
    assert problems(record) == [
        ("run", "test pcie recorded 2 times, once required"),
        ("run", "preset 'tiny' is not one of quick, standard, thorough"),
        (
            "fp32",
            f"checked 1 thread chains, a multiple of {per_launch} per launch over at least 10 "
            "launches required",
        ),
        ("gemm", "checked 1 FP16 GEMM elements, 512 required"),
    ]


@pytest.mark.parametrize(("record", "count"), [(quick, 7), (real, 6)], ids=["current", "legacy"])
def test_tests_missing_from_a_complete_record(record: Callable[[], RunRecord], count: int) -> None:
    genuine = record()
    cut = replace(genuine, tests=tuple(t for t in genuine.tests if t.name not in ("gemm", "fp32")))
    assert problems(cut) == [
        ("run", f"complete, but 2 of the {count} tests are missing (fp32, gemm)")
    ]


def test_a_current_record_needs_pcie_readiness_and_clear_a_legacy_one_none() -> None:
    cut = replace(quick(), tests=quick().tests[1:])
    assert problems(cut) == [("run", "complete, but 1 of the 7 tests are missing (pcie)")]
    for field, what in (("readiness", "readiness"), ("memory_clear", "memory clear")):
        assert problems(replace(quick(), **{field: None})) == [  # type: ignore[arg-type]
            ("run", f"complete, but its {what} is missing (every grade since 0.2.0 records it)")
        ]
    legacy = replace(first_tier(cut), readiness=None, memory_clear=None)
    assert problems(legacy) == []


@pytest.mark.parametrize(
    ("field", "what"),
    [("nvlink_status", "NVLink reading"), ("pcie_errors_status", "PCIe error counter reading")],
)
@pytest.mark.parametrize("reading", ["counters_before", "counters_after"])
def test_an_erased_link_reading_is_missing_evidence(field: str, what: str, reading: str) -> None:
    """A seller who deletes a reading that held NVLink or PCIe errors (status set to null, the
    record signed again with their key) gets INCOMPLETE, not a card without those checks; a
    legacy record never had them."""
    record = quick()
    counters = getattr(record, reading)
    assert counters is not None and getattr(counters, field) is not None
    erased = replace(record, **{reading: replace(counters, **{field: None})})
    assert problems(erased) == [
        ("run", f"complete, but its {what} is missing (every grade since 0.2.0 records it)")
    ]
    assert problems(first_tier(erased)) == []


def test_an_unknown_preset_and_a_soak_length_out_of_range() -> None:
    assert problems(replace(quick(), preset="tiny")) == [
        ("run", "preset 'tiny' is not one of quick, standard, thorough")
    ]
    # no minimums then: a soak cut short is not held to a preset
    short = with_params(replace(quick(), preset="tiny"), "soak", soaked_s=10.0)
    assert problems(short) == [("run", "preset 'tiny' is not one of quick, standard, thorough")]
    assert problems(first_tier(replace(quick(), preset="tiny"))) == []
    assert problems(replace(quick(), soak_duration_s=5.0)) == [
        ("run", "soak_duration_s: expected seconds from 10 to 86400, got 5")
    ]


def test_the_soak_length_asked_for_is_the_minimum() -> None:
    assert problems(replace(quick(), soak_duration_s=20.0)) == []
    assert problems(replace(quick(), soak_duration_s=40.0)) == [
        ("soak", "duration_s is 30, the quick preset's is 40"),
        ("soak", "soaked_s is 30.363, at least 39.2 s of the quick preset's 40 s required"),
        ("soak", "the iterations end 30.4 s into the soak, at least 39.2 s"),
    ]


# --- tier 1: the claim of each test -------------------------------------------------------------


@pytest.mark.parametrize("status", ["error", "not_run"])
def test_a_test_that_did_not_finish_claims_nothing(status: str) -> None:
    assert problems(edit(quick(), "gemm", status=status, verifications=(), metrics=())) == []


def test_only_the_tensor_test_may_be_skipped_and_only_before_7_5() -> None:
    assert problems(edit(quick(), "gemm", status="skipped")) == [
        ("gemm", "skipped, but gemm applies to every card")
    ]
    skipped = edit(quick(), "fp16_tensor", status="skipped")
    for cc, found in (
        ("9.0", "9.0"),
        ("7.5", "7.5"),
        ("10.0", "10.0"),
        ("8.0", "8.0"),
        ("7.4", None),
        ("6.9", None),
        ("7", None),
        ("7.x", None),
        (None, None),
    ):
        record = replace(skipped, identity=replace(skipped.identity, compute_capability=cc))
        expected = f"skipped on compute capability {found}, which is 7.5 or newer"
        assert problems(record) == ([("fp16_tensor", expected)] if found else []), cc


def test_an_unknown_test_needs_only_the_generic_evidence() -> None:
    extra = TestResult(
        "extra",
        "passed",
        started_s=0.0,
        duration_s=0.1,
        verifications=(Verification("host", True, 1, 0),),
    )
    assert problems(replace(quick(), tests=(*quick().tests, extra))) == []
    assert problems(replace(quick(), tests=(*quick().tests, replace(extra, verifications=())))) == [
        ("extra", "no verification recorded")
    ]


def test_verification_count() -> None:
    fp32 = get(real(), "fp32")
    assert problems(edit(real(), "fp32", verifications=())) == [
        ("fp32", "no verification recorded")
    ]
    doubled = edit(real(), "fp32", verifications=fp32.verifications * 2)
    assert problems(doubled) == [("fp32", "2 verification(s) recorded, 1 required")]
    gemm = get(real(), "gemm")
    assert problems(edit(real(), "gemm", verifications=gemm.verifications[:1])) == [
        ("gemm", "1 verification(s) recorded, 2 required")
    ]


def test_each_verification_must_pass_check_something_and_find_nothing() -> None:
    gemm = get(real(), "gemm")
    first, second = gemm.verifications

    def second_is(**changes: object) -> Problems:
        changed = replace(second, **changes)  # type: ignore[arg-type]
        return problems(edit(real(), "gemm", verifications=(first, changed)))

    assert second_is(passed=False) == [("gemm", "verification 2 did not pass")]
    assert second_is(mismatches=3) == [("gemm", "verification 2 found 3 mismatch(es), 0 allowed")]
    assert second_is(mismatches=-1) == [("gemm", "verification 2 found -1 mismatch(es), 0 allowed")]
    wrong = (WrongResult("row 0"), WrongResult("row 1"))
    assert second_is(wrong_results=wrong[:1]) == [
        ("gemm", "verification 2 lists 1 wrong result(s)")
    ]
    assert second_is(wrong_results=wrong) == [("gemm", "verification 2 lists 2 wrong result(s)")]
    bandwidth = get(real(), "bandwidth")
    arrays, read = bandwidth.verifications
    zero = edit(real(), "bandwidth", verifications=(arrays, replace(read, checked=0)))
    assert problems(zero) == [
        ("bandwidth", "verification 2 checked 0 values, at least 1"),
        ("bandwidth", "checked 0 read sums, 1 required"),
    ]
    negative = edit(real(), "bandwidth", verifications=(arrays, replace(read, checked=-1)))
    assert problems(negative)[0] == ("bandwidth", "verification 2 checked -1 values, at least 1")


def test_a_memtest_marked_passed_keeps_its_mismatches() -> None:
    stuck = stored(STUCK)
    memtest = get(stuck, "memtest")
    check = memtest.verifications[0]
    forged = edit(stuck, "memtest", status="passed", verifications=(replace(check, passed=True),))
    assert problems(forged) == [
        ("memtest", f"verification 1 found {check.mismatches} mismatch(es), 0 allowed"),
        ("memtest", "verification 1 lists 1 memory error(s)"),
    ]
    untouched = edit(stuck, "memtest", status="passed")
    assert problems(untouched)[0] == ("memtest", "verification 1 did not pass")


def test_metrics_present_with_values_all_finite_and_positive() -> None:
    fp32 = get(real(), "fp32")
    assert problems(edit(real(), "fp32", metrics=())) == [("fp32", "metric fp32_tflops missing")]
    assert problems(with_metric(real(), "fp32", "fp32_tflops", ())) == [
        ("fp32", "metric fp32_tflops has no values, at least 1 required")
    ]
    timed = values(real(), "fp32", "fp32_tflops")
    bad = (0.0, -1.0, math.nan, math.inf, *timed[4:])
    assert problems(with_metric(real(), "fp32", "fp32_tflops", bad)) == [
        ("fp32", "metric fp32_tflops has 4 value(s) not finite and positive")
    ]
    tiny = (1e-9, *timed[1:])
    assert problems(with_metric(real(), "fp32", "fp32_tflops", tiny)) == []
    extra = Metric("extra_s", "s", (1.0, -math.inf))
    assert problems(edit(real(), "fp32", metrics=(*fp32.metrics, extra))) == [
        ("fp32", "metric extra_s has 1 value(s) not finite and positive")
    ]


def test_telemetry_present_when_the_test_was_long_enough_and_none_late() -> None:
    fp32 = get(real(), "fp32")
    assert problems(edit(real(), "fp32", telemetry=())) == [
        ("fp32", "no telemetry sample in 1.4 s, at least 1 required")
    ]
    at_least = TELEMETRY_MIN_TEST_S
    assert problems(edit(real(), "fp32", telemetry=(), duration_s=at_least)) == [
        ("fp32", "no telemetry sample in 0.4 s, at least 1 required")
    ]
    assert problems(edit(real(), "fp32", telemetry=(), duration_s=at_least - 0.01)) == []
    # the soak holds samples however short (its thermal guard reads them)
    short_soak = edit(real(), "soak", telemetry=(), duration_s=0.3)
    assert ("soak", "no telemetry sample in 0.3 s, at least 1 required") in problems(short_soak)
    end_s = fp32.started_s + fp32.duration_s + TIME_TOLERANCE_S
    last = fp32.telemetry[-1]
    for t_s, late in ((end_s, 0), (end_s - 0.0009, 0), (end_s + 0.0001, 1), (end_s + 5, 1)):
        record = edit(real(), "fp32", telemetry=(*fp32.telemetry, replace(last, t_s=t_s)))
        expected = [("fp32", f"1 telemetry sample(s) taken after the test ended at {end_s:.1f} s")]
        assert problems(record) == (expected if late else []), t_s
    two = (*fp32.telemetry, TelemetrySample(end_s + 1), TelemetrySample(end_s + 2))
    assert problems(edit(real(), "fp32", telemetry=two)) == [
        ("fp32", f"2 telemetry sample(s) taken after the test ended at {end_s:.1f} s")
    ]


def test_parameters_as_whole_numbers() -> None:
    assert problems(with_params(real(), "gemm", n=8192.0)) == []
    for value, shown in ((None, "missing"), (8192.5, "8192.5"), (True, "True"), ("8192", "'8192'")):
        assert problems(with_params(real(), "gemm", n=value)) == [
            ("gemm", f"parameter n is {shown}, a whole number required")
        ], value
    # the first parameter that is not one is named
    assert problems(with_params(real(), "gemm", n=None, warmup=None)) == [
        ("gemm", "parameter n is missing, a whole number required")
    ]
    assert problems(with_params(real(), "gemm", warmup=None)) == [
        ("gemm", "parameter warmup is missing, a whole number required")
    ]


def test_parameters_as_finite_numbers() -> None:
    for value, shown, kind in (
        ("x", "'x'", "a number"),
        (True, "True", "a number"),
        (None, "missing", "a number"),
        (math.nan, "nan", "a finite number"),
        (math.inf, "inf", "a finite number"),
    ):
        record = with_params(real(), "soak", memory_phase_end_s=value)
        assert problems(record) == [
            ("soak", f"parameter memory_phase_end_s is {shown}, {kind} required")
        ], value
    assert problems(with_params(real(), "soak", memory_phase_end_s=192)) == []


def test_every_stored_run_has_its_evidence() -> None:
    for path in sorted((DATA / "runs").glob("*.json")):
        record = stored(path)
        assert record.tool_version in LEGACY_VERSIONS, path
        assert problems(record) == [], path


def test_the_numbers_are_those_the_stress_tests_write() -> None:
    from gpuhealth.judge.evidence import (
        LEGACY_TESTS,
        MEMORY_CHUNK_S,
        MIN_REPETITIONS,
        MIN_TENSOR_CC,
        SIM_PRODUCT_BLOCK,
        STANDARD_TESTS,
    )
    from gpuhealth.measure.backends import sim as sim_backend
    from gpuhealth.measure.stresstests import TEST_NAMES, base, fp16_tensor, pcie, soak

    assert TEST_NAMES == STANDARD_TESTS == ("pcie", *LEGACY_TESTS)
    assert MIN_REPETITIONS == base.MIN_REPETITIONS
    assert MIN_TENSOR_CC == fp16_tensor.MIN_TENSOR_CC
    assert SIM_PRODUCT_BLOCK == sim_backend.GEMM_BLOCK
    assert MEMORY_CHUNK_S == soak.MEMORY_CHUNK_S
    assert PCIE_COPY_MIN_BYTES == pcie.COPY_MIN_BYTES


# --- tier 1: the counts that tie a test's results together --------------------------------------


def test_repetitions_one_value_each_fewer_only_when_the_budget_ran_out() -> None:
    gemm = get(real(), "gemm")  # 10 repetitions, 60 s budget
    fp16 = values(real(), "gemm", "fp16_tflops")
    more = with_metric(real(), "gemm", "fp16_tflops", (*fp16, fp16[0]))
    assert problems(more) == [("gemm", "metric fp16_tflops has 11 values for 10 repetitions")]
    fewer = with_metric(real(), "gemm", "fp16_tflops", fp16[:9])
    assert problems(fewer) == [("gemm", "metric fp16_tflops has 9 values, 10 required")]
    spent = edit(fewer, "gemm", duration_s=gemm.time_budget_s)
    assert problems(spent) == []
    three = with_metric(spent, "gemm", "fp16_tflops", fp16[:3])
    assert problems(three) == []
    two = with_metric(spent, "gemm", "fp16_tflops", fp16[:2])
    assert problems(two) == [("gemm", "metric fp16_tflops has 2 values, 10 required")]
    not_spent = edit(three, "gemm", duration_s=gemm.time_budget_s - 0.01)
    assert problems(not_spent) == [("gemm", "metric fp16_tflops has 3 values, 10 required")]


def test_gemm_checks_every_element_of_the_product() -> None:
    n = param(real(), "gemm", "n")
    assert problems(with_checked(real(), "gemm", n * n, n * n - 1)) == [
        ("gemm", f"checked {n * n - 1} FP32 GEMM elements, {n * n} required")
    ]
    # the sim computes the 8 × 64 corner block, of a smaller product too
    assert problems(with_checked(sim(), "gemm", 512, 511)) == [
        ("gemm", "checked 511 FP32 GEMM elements, 512 required")
    ]
    assert problems(with_params(sim(), "gemm", n=32)) == [
        ("gemm", "checked 512 FP16 GEMM elements, 256 required"),
        ("gemm", "checked 512 FP32 GEMM elements, 256 required"),
    ]
    assert problems(with_checked(with_params(sim(), "gemm", n=32), "gemm", 256, 256)) == []
    assert problems(with_checked(with_params(sim(), "gemm", n=4), "gemm", 16, 16)) == []


def test_fp32_checks_whole_launches_at_least_the_timed() -> None:
    per_launch = param(real(), "fp32", "blocks") * 256 * 8
    timed = len(values(real(), "fp32", "fp32_tflops"))
    assert timed == 20

    def checked(count: int) -> Problems:
        return problems(with_checked(real(), "fp32", count))

    def wrong(count: int) -> Problems:
        text = (
            f"checked {count} thread chains, a multiple of {per_launch} per launch over at least "
            f"{timed} launches required"
        )
        return [("fp32", text)]

    assert checked(per_launch * timed) == []
    assert checked(per_launch * (timed - 1)) == wrong(per_launch * (timed - 1))
    assert checked(per_launch * 23 + 1) == wrong(per_launch * 23 + 1)
    assert checked(per_launch * 23 - 1) == wrong(per_launch * 23 - 1)
    zero = with_params(real(), "fp32", blocks=0)
    assert problems(zero) == [
        (
            "fp32",
            f"checked {per_launch * 23} thread chains, a multiple of 0 per launch over at least "
            f"{timed} launches required",
        )
    ]
    assert problems(with_params(real(), "fp32", iterations=None)) == [
        ("fp32", "parameter iterations is missing, a whole number required")
    ]


def test_the_tensor_test_checks_its_mma_launches_and_its_product() -> None:
    test = get(real(), "fp16_tensor")
    mma, product = test.verifications
    per_launch = param(real(), "fp16_tensor", "mma_blocks") * param(
        real(), "fp16_tensor", "mma_threads"
    )
    assert mma.checked % per_launch == 0
    assert problems(with_checked(real(), "fp16_tensor", mma.checked + 1, product.checked)) == [
        (
            "fp16_tensor",
            f"checked {mma.checked + 1} mma threads, a multiple of {per_launch} per launch over "
            "at least 20 launches required",
        )
    ]
    n = param(real(), "fp16_tensor", "gemm_n")
    assert problems(with_checked(real(), "fp16_tensor", mma.checked, n * n - 1)) == [
        ("fp16_tensor", f"checked {n * n - 1} GEMM elements, {n * n} required")
    ]
    assert problems(with_checked(sim(), "fp16_tensor", 3244032, 511)) == [
        ("fp16_tensor", "checked 511 GEMM elements, 512 required")
    ]
    assert problems(with_params(real(), "fp16_tensor", mma_accumulators=None)) == [
        ("fp16_tensor", "parameter mma_accumulators is missing, a whole number required")
    ]


def test_bandwidth_arrays_larger_than_l2_and_every_element_checked() -> None:
    size = param(real(), "bandwidth", "array_bytes")
    elements = size // 4
    l2_bytes = param(real(), "bandwidth", "l2_bytes")
    assert problems(with_params(real(), "bandwidth", elements=elements - 1)) == [
        ("bandwidth", f"{elements - 1} elements in arrays of {size} bytes, not bytes / 4"),
        ("bandwidth", f"checked {3 * elements} array elements, 3 × {elements - 1} required"),
    ]
    assert problems(with_params(real(), "bandwidth", l2_bytes=size // 8)) == []
    assert problems(with_params(real(), "bandwidth", l2_bytes=size // 8 + 1)) == [
        ("bandwidth", f"arrays of {size} bytes, at least 8 × L2 = {size + 8}")
    ]
    assert l2_bytes * 8 < size
    arrays = get(real(), "bandwidth").verifications[0]
    assert problems(with_checked(real(), "bandwidth", arrays.checked - 1, 1)) == [
        ("bandwidth", f"checked {arrays.checked - 1} array elements, 3 × {elements} required")
    ]
    assert problems(with_checked(real(), "bandwidth", arrays.checked, 2)) == [
        ("bandwidth", "checked 2 read sums, 1 required")
    ]
    assert problems(with_params(real(), "bandwidth", l2_bytes=None)) == [
        ("bandwidth", "parameter l2_bytes is missing, a whole number required")
    ]
    reps = with_params(real(), "bandwidth", repetitions=29)
    assert problems(reps) == [
        ("bandwidth", f"metric {name} has 30 values for 29 repetitions")
        for name in ("copy_gbs", "scale_gbs", "add_gbs", "triad_gbs", "read_gbs")
    ]


def test_memtest_every_pattern_run_and_every_word_read_twice() -> None:
    words = param(real(), "memtest", "tested_bytes") // 4
    checked = words * 2 * 64
    assert get(real(), "memtest").verifications[0].checked == checked

    def fewer_done(done: int) -> Problems:
        return problems(with_params(real(), "memtest", patterns_done=done))

    assert fewer_done(63) == [
        ("memtest", "63 of 64 patterns were run"),
        ("memtest", "metric pass_gbs has 64 values for 63 patterns"),
        (
            "memtest",
            f"checked {checked} words, {words * 2 * 63} required (63 patterns × 2 reads "
            f"of {words} words)",
        ),
    ]
    cut = with_metric(real(), "memtest", "pass_gbs", values(real(), "memtest", "pass_gbs")[:63])
    assert problems(cut) == [("memtest", "metric pass_gbs has 63 values for 64 patterns")]
    assert problems(with_checked(real(), "memtest", checked - 2)) == [
        (
            "memtest",
            f"checked {checked - 2} words, {checked} required (64 patterns × 2 reads of "
            f"{words} words)",
        )
    ]
    # a bit-fade pass reads every word twice more, when its parameter says it ran
    faded = with_checked(real(), "memtest", words * 130)
    assert problems(with_params(faded, "memtest", bit_fade_s=60)) == []
    assert problems(with_params(faded, "memtest", bit_fade_s=0.001)) == []
    assert problems(faded) == [
        (
            "memtest",
            f"checked {words * 130} words, {checked} required (64 patterns × 2 reads of "
            f"{words} words)",
        )
    ]
    assert problems(with_params(real(), "memtest", total_bytes=None)) == [
        ("memtest", "parameter total_bytes is missing, a whole number required")
    ]
    assert problems(with_params(real(), "memtest", coverage="all")) == [
        ("memtest", "parameter coverage is 'all', a number required")
    ]


def test_memtest_passes_within_the_patterns() -> None:
    for passes, ok in ((64, True), (16, True), (1, True), (65, False), (0, False), (-1, False)):
        found = problems(with_params(real(), "memtest", passes=passes))
        assert found == ([] if ok else [("memtest", f"{passes} passes over 64 patterns")]), passes
    assert problems(with_params(real(), "memtest", passes="16")) == []


def test_memtest_tested_bytes_whole_words_within_the_total() -> None:
    tested = param(real(), "memtest", "tested_bytes")
    total = param(real(), "memtest", "total_bytes")
    for bad in (tested + 2, 0, -4, total + 4):
        assert problems(with_params(real(), "memtest", tested_bytes=bad)) == [
            ("memtest", f"tested_bytes {bad} is not whole words within total_bytes {total}")
        ], bad
    # the early return keeps what was found before it
    assert problems(with_params(real(), "memtest", tested_bytes=0, patterns_done=63)) == [
        ("memtest", "63 of 64 patterns were run"),
        ("memtest", "metric pass_gbs has 64 values for 63 patterns"),
        ("memtest", f"tested_bytes 0 is not whole words within total_bytes {total}"),
    ]
    whole = with_checked(
        with_params(real(), "memtest", tested_bytes=total, coverage=1.0), "memtest", total // 2 * 64
    )
    assert problems(whole) == []


def test_memtest_coverage_is_tested_over_total() -> None:
    tested = param(real(), "memtest", "tested_bytes")
    total = param(real(), "memtest", "total_bytes")
    share = f"{tested / total:.4f}"
    assert share == "0.9872"
    for coverage in (0.9871, 0.9873, 0.98716, 1.0):
        assert problems(with_params(real(), "memtest", coverage=coverage)) == [
            ("memtest", f"coverage {coverage} is not tested / total = {share}")
        ], coverage


def test_memtest_total_is_the_cards_memory_less_the_drivers() -> None:
    total = param(real(), "memtest", "total_bytes")

    def on_card(card: int | None) -> Problems:
        record = replace(real(), identity=replace(real().identity, memory_total_bytes=card))
        return problems(record)

    def wrong(card: int) -> Problems:
        text = f"total_bytes {total} is not within 95% to 100% of the card's {card} bytes"
        return [("memtest", text)]

    assert on_card(total) == []
    assert on_card(total - 1) == wrong(total - 1)
    largest = math.floor(total / CUDA_TOTAL_MIN_SHARE)
    assert on_card(largest) == []
    assert on_card(largest + 2) == wrong(largest + 2)
    assert on_card(None) == [] and on_card(0) == []


def test_soak_one_value_and_one_digest_check_per_iteration() -> None:
    soak = get(real(), "soak")
    assert param(real(), "soak", "iterations") == 206
    tflops = values(real(), "soak", "iteration_tflops")
    cut = with_metric(real(), "soak", "iteration_tflops", tflops[:205])
    assert problems(cut) == [("soak", "metric iteration_tflops has 205 values for 206 iterations")]
    fewer = with_params(real(), "soak", iterations=205)
    assert problems(fewer) == [
        ("soak", "metric iteration_tflops has 206 values for 205 iterations"),
        ("soak", "metric iteration_end_s has 206 values for 205 iterations"),
        ("soak", "the digest check covered 206 of 205 iterations"),
    ]
    assert problems(with_checked(real(), "soak", 205)) == [
        ("soak", "the digest check covered 205 of 206 iterations")
    ]
    assert problems(with_params(real(), "soak", iterations=None)) == [
        ("soak", "parameter iterations is missing, a whole number required")
    ]
    assert soak.verifications[0].checked == 206


def test_soak_iterations_end_in_order_within_the_test() -> None:
    soak = get(real(), "soak")
    ends = values(real(), "soak", "iteration_end_s")
    start_s, end_s = soak.started_s, soak.started_s + soak.duration_s
    wrong = [
        (
            "soak",
            f"iteration_end_s does not increase within the test's {start_s:.1f} to {end_s:.1f} s",
        )
    ]

    def with_ends(changed: tuple[float, ...]) -> Problems:
        return problems(with_metric(real(), "soak", "iteration_end_s", changed))

    assert with_ends((*ends[:10], ends[11], ends[10], *ends[12:])) == wrong
    assert with_ends((*ends[:10], ends[10], ends[10], *ends[12:])) == wrong
    assert with_ends((start_s - 0.002, *ends[1:])) == wrong
    assert with_ends((start_s - 0.0009, *ends[1:])) == []
    assert with_ends((start_s + 0.0009, *ends[1:])) == []
    # the memory phase starts after the last iteration: the phase moved along with it
    late = with_params(
        real(), "soak", memory_phase_start_s=end_s + 0.0009, memory_phase_end_s=end_s + 0.001
    )
    late = with_metric(late, "soak", "memory_phase_chunk_end_s", (end_s + 0.001,))
    late = with_metric(late, "soak", "memory_phase_gbs", (1.0,))
    assert (
        problems(with_metric(late, "soak", "iteration_end_s", (*ends[:-1], end_s + 0.0009))) == []
    )
    assert problems(with_metric(late, "soak", "iteration_end_s", (*ends[:-1], end_s + 0.002))) == [
        *wrong,
        (
            "soak",
            f"the memory phase {end_s:.1f} to {end_s:.1f} s does not follow the GEMM phase "
            f"(ended {end_s:.1f} s)",
        ),
    ]


def test_soak_memory_phase_checked_when_any_trace_of_it_is_there() -> None:
    soak = get(real(), "soak")
    phase = {k: None for k in soak.parameters if k.startswith("memory_phase")}
    no_params = with_params(real(), "soak", **phase)
    assert problems(no_params) == [
        ("soak", "parameter memory_phase_s is missing, a number required")
    ]
    metrics = tuple(m for m in soak.metrics if not m.name.startswith("memory_phase"))
    assert problems(edit(no_params, "soak", metrics=metrics)) == []
    only_param = edit(with_params(no_params, "soak", memory_phase_s=60), "soak", metrics=metrics)
    assert problems(only_param) == [
        ("soak", "parameter memory_phase_start_s is missing, a number required")
    ]
    one_metric = edit(no_params, "soak", metrics=(*metrics, soak.metrics[-1]))
    assert problems(one_metric)[0] == (
        "soak",
        "parameter memory_phase_s is missing, a number required",
    )
    assert problems(with_params(real(), "soak", memory_phase_launches=None)) == [
        ("soak", "parameter memory_phase_launches is missing, a whole number required")
    ]


def test_soak_memory_phase_values_and_chunk_ends() -> None:
    soak = get(real(), "soak")
    start_s = float(soak.parameters["memory_phase_start_s"])
    end_s = float(soak.parameters["memory_phase_end_s"])
    rates = values(real(), "soak", "memory_phase_gbs")
    chunk_ends = values(real(), "soak", "memory_phase_chunk_end_s")
    chunks = len(rates)
    assert chunks == len(chunk_ends) == 61
    without = edit(
        real(), "soak", metrics=tuple(m for m in soak.metrics if m.name != "memory_phase_gbs")
    )
    assert problems(without) == [
        ("soak", "metric memory_phase_gbs missing"),
        ("soak", f"0 memory-phase rates for {chunks} chunk ends"),
        ("soak", "the memory phase has no values, at least 1 required"),
    ]
    neither = edit(
        real(), "soak", metrics=tuple(m for m in soak.metrics if not m.name.startswith("memory"))
    )
    assert problems(neither) == [
        ("soak", "metric memory_phase_gbs, memory_phase_chunk_end_s missing"),
        ("soak", "the memory phase has no values, at least 1 required"),
    ]
    assert problems(with_params(neither, "soak", stopped_early="lost")) == [
        ("soak", "metric memory_phase_gbs, memory_phase_chunk_end_s missing"),
    ]
    fewer_ends = with_metric(real(), "soak", "memory_phase_chunk_end_s", chunk_ends[:-1])
    assert problems(fewer_ends) == [("soak", f"{chunks} memory-phase rates for 60 chunk ends")]
    wrong_ends = [
        (
            "soak",
            f"memory-phase chunk ends do not increase within {start_s:.1f} to {end_s:.1f} s",
        )
    ]
    swapped = (*chunk_ends[:5], chunk_ends[6], chunk_ends[5], *chunk_ends[7:])
    assert problems(with_metric(real(), "soak", "memory_phase_chunk_end_s", swapped)) == wrong_ends
    past = (*chunk_ends[:-1], end_s + 0.002)
    assert problems(with_metric(real(), "soak", "memory_phase_chunk_end_s", past)) == wrong_ends
    launches = param(real(), "soak", "memory_phase_launches")
    assert launches > chunks
    assert problems(with_params(real(), "soak", memory_phase_launches=chunks + 1)) == []
    for few in (chunks, 0):
        assert problems(with_params(real(), "soak", memory_phase_launches=few)) == [
            ("soak", f"{few} memory-phase launches for {chunks} chunks")
        ]


def test_soak_memory_phase_follows_the_gemm_phase() -> None:
    soak = get(real(), "soak")
    gemm_end_s = values(real(), "soak", "iteration_end_s")[-1]
    start_s = float(soak.parameters["memory_phase_start_s"])
    end_s = float(soak.parameters["memory_phase_end_s"])
    first_chunk_s = values(real(), "soak", "memory_phase_chunk_end_s")[0]

    def starting(at_s: float, until_s: float = end_s) -> Problems:
        return problems(
            with_params(real(), "soak", memory_phase_start_s=at_s, memory_phase_end_s=until_s)
        )

    def wrong(at_s: float, until_s: float = end_s) -> Problems:
        text = (
            f"the memory phase {at_s:.1f} to {until_s:.1f} s does not follow the GEMM phase "
            f"(ended {gemm_end_s:.1f} s)"
        )
        return [("soak", text)]

    assert start_s >= gemm_end_s
    assert starting(gemm_end_s) == [] and starting(gemm_end_s - 0.0009) == []
    assert starting(gemm_end_s - 0.002) == wrong(gemm_end_s - 0.002)
    assert first_chunk_s > gemm_end_s
    # ending before it starts: the chunk ends cannot lie within it either
    assert starting(end_s + 1)[0] == wrong(end_s + 1)[0]
    assert starting(end_s, end_s) == [
        (
            "soak",
            f"memory-phase chunk ends do not increase within {end_s:.1f} to {end_s:.1f} s",
        )
    ]


def pcie_checked(copy_bytes: int, timed: int, warmup: int, both: int) -> int:
    """Words a pcie test checks per direction: each timed, warm-up and two-way copy."""
    return copy_bytes // 4 * (timed + warmup + both + warmup)


def test_pcie_every_copy_checked_warm_ups_and_two_way_copies_included() -> None:
    words = PCIE_COPY_MIN_BYTES // 4
    checked = pcie_checked(PCIE_COPY_MIN_BYTES, 5, 1, 5)
    assert get(sim(), "pcie").verifications[0].checked == checked
    detail = f"({words} per copy, warm-ups and two-way copies included)"
    assert problems(with_checked(sim(), "pcie", checked - 1, checked)) == [
        ("pcie", f"checked {checked - 1} host-to-device words, {checked} required {detail}")
    ]
    assert problems(with_checked(sim(), "pcie", checked, checked + words)) == [
        ("pcie", f"checked {checked + words} device-to-host words, {checked} required {detail}")
    ]
    both = with_metric(sim(), "pcie", "both_gbs", values(sim(), "pcie", "both_gbs")[:4])
    fewer = pcie_checked(PCIE_COPY_MIN_BYTES, 5, 1, 4)
    assert problems(both) == [
        ("pcie", "metric both_gbs has 4 values, 5 required"),
        ("pcie", f"checked {checked} host-to-device words, {fewer} required {detail}"),
        ("pcie", f"checked {checked} device-to-host words, {fewer} required {detail}"),
    ]
    assert problems(with_checked(both, "pcie", fewer, fewer)) == [
        ("pcie", "metric both_gbs has 4 values, 5 required")
    ]
    h2d = with_metric(sim(), "pcie", "h2d_gbs", values(sim(), "pcie", "h2d_gbs")[:4])
    h2d_fewer = pcie_checked(PCIE_COPY_MIN_BYTES, 4, 1, 5)
    assert problems(with_checked(h2d, "pcie", h2d_fewer, checked)) == [
        ("pcie", "metric h2d_gbs has 4 values, 5 required")
    ]
    warm = pcie_checked(PCIE_COPY_MIN_BYTES, 5, 2, 5)
    assert problems(with_checked(with_params(sim(), "pcie", warmup=2), "pcie", warm, warm)) == []
    assert problems(with_params(sim(), "pcie", warmup=None)) == [
        ("pcie", "parameter warmup is missing, a whole number required")
    ]


def test_pcie_copies_whole_16_byte_units_of_at_least_the_minimum() -> None:
    def copies(copy_bytes: int) -> Problems:
        checked = pcie_checked(copy_bytes, 5, 1, 5)
        record = with_checked(
            with_params(sim(), "pcie", copy_bytes=copy_bytes), "pcie", checked, checked
        )
        return problems(record)

    def wrong(copy_bytes: int) -> Problems:
        text = (
            f"copies of {copy_bytes} bytes, whole 16-byte units of at least {PCIE_COPY_MIN_BYTES}"
        )
        return [("pcie", text)]

    assert copies(PCIE_COPY_MIN_BYTES) == [] and copies(PCIE_COPY_MIN_BYTES + 16) == []
    assert copies(PCIE_COPY_MIN_BYTES - 16) == wrong(PCIE_COPY_MIN_BYTES - 16)
    assert copies(PCIE_COPY_MIN_BYTES + 8) == wrong(PCIE_COPY_MIN_BYTES + 8)
    assert copies(PCIE_COPY_MIN_BYTES + 4) == wrong(PCIE_COPY_MIN_BYTES + 4)


# --- tier 2: what the record's preset asks of a passed test -------------------------------------


def test_telemetry_at_half_the_presets_rate_in_tests_longer_than_2_s() -> None:
    soak = get(quick(), "soak")
    samples = soak.telemetry
    assert soak.duration_s > 75 and len(samples) == 377
    # 75.4 s at one sample per 0.2 s: at least ceil(188.6) = 189 samples
    assert problems(edit(quick(), "soak", telemetry=samples[:189])) == []
    assert problems(edit(quick(), "soak", telemetry=samples[:188])) == [
        (
            "soak",
            "188 telemetry samples in 75.4 s, at least 189 required (one per 0.2 s, 50% allowed "
            "lost)",
        )
    ]
    # a sample before the test started does not count
    before = replace(samples[0], t_s=soak.started_s - 0.002)
    assert problems(edit(quick(), "soak", telemetry=(before, *samples[1:189])))[0][1].startswith(
        "188 telemetry samples"
    )
    edge = replace(samples[0], t_s=soak.started_s - 0.0009)
    assert problems(edit(quick(), "soak", telemetry=(edge, *samples[1:189]))) == []
    # 76 s: exactly 190 required
    exact = edit(quick(), "soak", duration_s=76.0)
    assert problems(edit(exact, "soak", telemetry=samples[:190])) == []
    assert problems(edit(exact, "soak", telemetry=samples[:189])) == [
        (
            "soak",
            "189 telemetry samples in 76.0 s, at least 190 required (one per 0.2 s, 50% allowed "
            "lost)",
        )
    ]
    # up to 2 s a test is not held to a rate
    one = get(quick(), "fp32").telemetry
    assert len(one) == 1
    assert problems(edit(quick(), "fp32", duration_s=TELEMETRY_RATE_MIN_TEST_S)) == []
    assert problems(edit(quick(), "fp32", duration_s=2.01)) == [
        (
            "fp32",
            "1 telemetry samples in 2.0 s, at least 6 required (one per 0.2 s, 50% allowed lost)",
        )
    ]


def test_samples_in_the_test_count_up_to_its_end() -> None:
    fp32 = get(quick(), "fp32")
    end_s = fp32.started_s + 2.4
    at_end = tuple(TelemetrySample(end_s - 0.1 * i) for i in range(6))
    record = edit(quick(), "fp32", duration_s=2.4, telemetry=at_end)
    assert problems(record) == []
    last = (TelemetrySample(end_s + TIME_TOLERANCE_S), *at_end[1:])
    assert problems(edit(record, "fp32", telemetry=last)) == []


def test_minimum_parameters_of_the_preset() -> None:
    """bandwidth: warmup 2 in the quick preset."""
    for value, shown in (
        (1, "1"),
        (1.5, "1.5"),
        (True, "True"),
        ("2", "'2'"),
        (None, "missing"),
    ):
        assert problems(with_params(quick(), "bandwidth", warmup=value)) == [
            ("bandwidth", f"warmup is {shown}, the quick preset's is 2")
        ], value
    for value in (2, 2.0, 3, 9.5):
        assert problems(with_params(quick(), "bandwidth", warmup=value)) == [], value


def test_bandwidth_repetitions_below_the_presets() -> None:
    names = ("copy_gbs", "scale_gbs", "add_gbs", "triad_gbs", "read_gbs")
    cut = cut_metrics(with_params(quick(), "bandwidth", repetitions=9), "bandwidth", 9)
    assert problems(cut) == [
        ("bandwidth", "repetitions is 9, the quick preset's is 10"),
        *(("bandwidth", f"metric {name} has 9 values, 10 required") for name in names),
    ]
    # the time budget spent (the preset's: 30 s): 3 values are what was measured
    three = cut_metrics(quick(), "bandwidth", 3)
    spent = lasting(three, "bandwidth", 30.0, 30.0)
    assert problems(spent) == []
    # the record's own budget spent, the preset's not: the second tier still asks for 10
    own = lasting(three, "bandwidth", 29.9, 20.0)
    assert problems(own) == [
        ("bandwidth", f"metric {name} has 3 values, 10 required") for name in names
    ]


def test_exact_parameters_of_the_preset() -> None:
    assert problems(with_params(quick(), "gemm", n=4096)) == [
        ("gemm", "n is 4096, the quick preset's is 8192")
    ]
    assert problems(with_params(quick(), "gemm", n=16384)) == [
        ("gemm", "n is 16384, the quick preset's is 8192")
    ]
    assert problems(with_params(quick(), "gemm", n=8192.0)) == []
    assert problems(with_params(quick(), "fp16_tensor", gemm_n=True)) == [
        ("fp16_tensor", "parameter gemm_n is True, a whole number required"),
        ("fp16_tensor", "gemm_n is True, the quick preset's is 4096"),
    ]
    assert problems(with_params(quick(), "soak", gemm_n=1)) == [
        ("soak", "gemm_n is 1, the quick preset's is 8192")
    ]


def test_gemm_below_the_presets() -> None:
    assert problems(with_params(quick(), "gemm", warmup=1)) == [
        ("gemm", "warmup is 1, the quick preset's is 2")
    ]
    cut = cut_metrics(with_params(quick(), "gemm", repetitions=4), "gemm", 4)
    assert problems(cut) == [
        ("gemm", "repetitions is 4, the quick preset's is 5"),
        ("gemm", "metric fp16_tflops has 4 values, 5 required"),
        ("gemm", "metric fp32_tflops has 4 values, 5 required"),
    ]


def test_memtest_patterns_and_passes_of_the_preset() -> None:
    memtest = get(quick(), "memtest")
    words = param(quick(), "memtest", "tested_bytes") // 4
    # quick: 2 patterns, each and its inverse, 4 passes: 8
    assert param(quick(), "memtest", "patterns_done") == 8
    seven = with_params(quick(), "memtest", patterns=7, patterns_done=7)
    seven = with_checked(cut_metrics(seven, "memtest", 7), "memtest", words * 14)
    assert problems(seven) == [("memtest", "7 of the quick preset's 8 memtest patterns were run")]
    nine = with_params(quick(), "memtest", patterns=9, patterns_done=9)
    nine = with_metric(nine, "memtest", "pass_gbs", (*values(quick(), "memtest", "pass_gbs"), 9.0))
    assert problems(with_checked(nine, "memtest", words * 18)) == []
    assert problems(with_params(quick(), "memtest", passes=3)) == [
        ("memtest", "passes is 3, the quick preset's is 4")
    ]
    assert memtest.parameters["bit_fade_s"] == 0


def test_the_thorough_memtest_holds_its_bit_fade_pass() -> None:
    memtest = get(thorough(), "memtest")
    done = param(thorough(), "memtest", "patterns_done")
    words = param(thorough(), "memtest", "tested_bytes") // 4
    with_fade = words * (2 * done + 2)
    assert done == 4 * 32 + 31 and memtest.verifications[0].checked == with_fade
    assert problems(with_params(thorough(), "memtest", bit_fade_s=30)) == [
        ("memtest", "bit_fade_s is 30, the thorough preset's is 60")
    ]
    assert problems(with_params(thorough(), "memtest", bit_fade_s=0)) == [
        (
            "memtest",
            f"checked {with_fade} words, {words * 2 * done} required ({done} patterns × "
            f"2 reads of {words} words)",
        ),
        ("memtest", "bit_fade_s is 0, the thorough preset's is 60"),
    ]
    no_reads = with_checked(thorough(), "memtest", words * 2 * done)
    assert problems(no_reads) == [
        (
            "memtest",
            f"checked {words * 2 * done} words, {with_fade} required with the thorough "
            "preset's bit-fade pass",
        )
    ]
    assert problems(edit(thorough(), "memtest", verifications=())) == [
        ("memtest", "no verification recorded"),
        (
            "memtest",
            f"checked 0 words, {with_fade} required with the thorough preset's bit-fade pass",
        ),
    ]
    assert problems(with_params(thorough(), "memtest", tested_bytes=None)) == [
        ("memtest", "parameter tested_bytes is missing, a whole number required"),
        ("memtest", "parameter tested_bytes is missing, a whole number required"),
    ]


def test_the_bit_fade_wait_is_in_the_memtests_time() -> None:
    memtest = get(thorough(), "memtest")

    def lasting(duration_s: float) -> Problems:
        end_s = memtest.started_s + duration_s
        samples = tuple(s for s in memtest.telemetry if s.t_s <= end_s)
        return problems(edit(thorough(), "memtest", duration_s=duration_s, telemetry=samples))

    assert lasting(60.0) == []
    assert lasting(59.9) == [
        ("memtest", "ran 59.9 s, less than the bit-fade wait of 60 s"),
    ]


def test_fp32_checked_after_each_warm_up_and_timed_launch_of_the_preset() -> None:
    per_launch = 1056 * 256 * 8
    assert get(quick(), "fp32").verifications[0].checked == per_launch * 12

    def wrong(checked: int, timed: int = 10) -> tuple[str, str]:
        required = per_launch * (2 + timed)
        text = (
            f"checked {checked} results, {required} required (2 warm-up and {timed} timed "
            "launches of the quick preset)"
        )
        return ("fp32", text)

    assert problems(with_checked(quick(), "fp32", per_launch * 11)) == [wrong(per_launch * 11)]
    assert problems(with_checked(quick(), "fp32", per_launch * 13)) == [wrong(per_launch * 13)]
    nine = with_metric(quick(), "fp32", "fp32_tflops", values(quick(), "fp32", "fp32_tflops")[:9])
    assert problems(nine) == [
        ("fp32", "metric fp32_tflops has 9 values, 10 required"),
        wrong(per_launch * 12, 9),
    ]
    assert problems(with_checked(nine, "fp32", per_launch * 11)) == [
        ("fp32", "metric fp32_tflops has 9 values, 10 required")
    ]
    assert problems(edit(quick(), "fp32", verifications=())) == [
        ("fp32", "no verification recorded"),
        wrong(0),
    ]
    assert problems(with_params(quick(), "fp32", chains=None)) == [
        ("fp32", "parameter chains is missing, a whole number required"),
        ("fp32", "parameter chains is missing, a whole number required"),
    ]


def test_the_tensor_test_of_the_preset() -> None:
    per_launch = 1056 * 256
    mma, product = get(quick(), "fp16_tensor").verifications
    assert mma.checked == per_launch * 12
    assert problems(with_checked(quick(), "fp16_tensor", per_launch * 11, product.checked)) == [
        (
            "fp16_tensor",
            f"checked {per_launch * 11} results, {per_launch * 12} required (2 warm-up and 10 "
            "timed launches of the quick preset)",
        )
    ]
    for name in ("mma_tflops", "tensor_gemm_tflops"):
        cut = with_metric(quick(), "fp16_tensor", name, values(quick(), "fp16_tensor", name)[:9])
        if name == "mma_tflops":
            cut = with_checked(cut, "fp16_tensor", per_launch * 11, product.checked)
        assert problems(cut) == [("fp16_tensor", f"metric {name} has 9 values, 10 required")]
    assert problems(with_params(quick(), "fp16_tensor", mma_threads=None)) == [
        ("fp16_tensor", "parameter mma_threads is missing, a whole number required"),
        ("fp16_tensor", "parameter mma_threads is missing, a whole number required"),
    ]
    assert problems(with_params(quick(), "fp16_tensor", gemm_n=2048)) == [
        ("fp16_tensor", "gemm_n is 2048, the quick preset's is 4096")
    ]


def test_pcie_of_the_preset() -> None:
    words = PCIE_COPY_MIN_BYTES // 4
    assert words == 67108864
    reps = cut_metrics(with_params(quick(), "pcie", repetitions=4), "pcie", 4)
    checked = pcie_checked(PCIE_COPY_MIN_BYTES, 4, 1, 4)
    assert problems(with_checked(reps, "pcie", checked, checked)) == [
        ("pcie", "repetitions is 4, the quick preset's is 5"),
        *(
            ("pcie", f"metric {name} has 4 values, 5 required")
            for name in ("h2d_gbs", "d2h_gbs", "both_gbs")
        ),
    ]
    cold = pcie_checked(PCIE_COPY_MIN_BYTES, 5, 0, 5)
    assert problems(with_checked(with_params(quick(), "pcie", warmup=0), "pcie", cold, cold)) == [
        ("pcie", "warmup is 0, the quick preset's is 1")
    ]
    # thorough: 1 GiB copies; 512 MiB ones, all checked, are below its minimum
    half = 512 << 20
    test = get(thorough(), "pcie")
    timed, warmup = len(values(thorough(), "pcie", "h2d_gbs")), int(test.parameters["warmup"])
    small = pcie_checked(half, timed, warmup, timed)
    record = with_checked(with_params(thorough(), "pcie", copy_bytes=half), "pcie", small, small)
    assert problems(record) == [
        ("pcie", f"copy_bytes is {half}, the thorough preset's is {1 << 30}")
    ]


def test_the_soak_lasts_the_presets_length() -> None:
    assert param(quick(), "soak", "duration_s") == 30
    assert problems(with_params(quick(), "soak", duration_s=29)) == [
        ("soak", "duration_s is 29, the quick preset's is 30")
    ]

    def soaked(value: Scalar | None) -> Problems:
        return problems(with_params(quick(), "soak", soaked_s=value))

    assert soaked(29.4) == [] and soaked(30) == []
    for value, shown in (
        (29.39, "29.39"),
        (10, "10"),
        (True, "True"),
        (None, "missing"),
        ("30", "'30'"),
    ):
        assert soaked(value) == [
            ("soak", f"soaked_s is {shown}, at least 29.4 s of the quick preset's 30 s required")
        ], value


def test_the_soaks_iterations_reach_its_end() -> None:
    soak = get(quick(), "soak")
    ends = values(quick(), "soak", "iteration_end_s")
    assert ends[-1] - soak.started_s == pytest.approx(30.365)

    def iterations(count: int) -> RunRecord:
        cut = cut_metrics(with_params(quick(), "soak", iterations=count), "soak", count)
        kept = tuple(m for m in get(quick(), "soak").metrics if m.name.startswith("memory"))
        cut = edit(cut, "soak", metrics=(*get(cut, "soak").metrics[:2], *kept))
        return with_checked(cut, "soak", count)

    # the quick soak: 30 s of 0.5 s iterations, at least a quarter of them
    span_s = ends[14] - soak.started_s
    assert problems(iterations(15)) == [
        ("soak", f"the iterations end {span_s:.1f} s into the soak, at least 29.4 s"),
    ]
    assert problems(iterations(14)) == [
        (
            "soak",
            f"the iterations end {ends[13] - soak.started_s:.1f} s into the soak, at least 29.4 s",
        ),
        ("soak", "14 soak iterations, at least 15 required"),
    ]
    late = with_metric(iterations(15), "soak", "iteration_end_s", (*ends[:14], ends[-1]))
    assert problems(late) == []
    short = with_metric(
        iterations(15), "soak", "iteration_end_s", (*ends[:14], soak.started_s + 29.39)
    )
    assert problems(short) == [("soak", "the iterations end 29.4 s into the soak, at least 29.4 s")]
    reach = with_metric(
        iterations(15), "soak", "iteration_end_s", (*ends[:14], soak.started_s + 29.4)
    )
    assert problems(reach) == []


def test_only_the_thermal_guards_words_excuse_a_short_soak() -> None:
    short = with_params(quick(), "soak", soaked_s=10.0)
    expected = [("soak", "soaked_s is 10.0, at least 29.4 s of the quick preset's 30 s required")]
    for reason in ("thermal", "stopped", "Temperature", 86):
        assert problems(with_params(short, "soak", stopped_early=reason)) == expected, reason
    for reason in (
        "GPU temperature 86 °C reached the guard 86 °C (89 °C slowdown − 3)",
        "thermal slowdown for 5 s",
    ):
        assert problems(with_params(short, "soak", stopped_early=reason)) == [], reason
    # a guard stop is what was measured: no memory phase, few iterations
    soak = get(quick(), "soak")
    phase = {k: None for k in soak.parameters if k.startswith("memory_phase")}
    metrics = tuple(m for m in soak.metrics if m.name.startswith("iteration"))
    guard = with_params(short, "soak", stopped_early="GPU temperature 87 °C", **phase)
    assert problems(edit(guard, "soak", metrics=metrics)) == []
    # but not its length or product size
    smaller = with_params(guard, "soak", duration_s=20, gemm_n=4096)
    assert problems(edit(smaller, "soak", metrics=metrics)) == [
        ("soak", "duration_s is 20, the quick preset's is 30"),
        ("soak", "gemm_n is 4096, the quick preset's is 8192"),
    ]


def test_the_memory_phase_of_the_preset() -> None:
    start_s = 32.5  # after the last iteration (32.26 s), exact in binary: 40.5 s held is 40.5
    rates = values(quick(), "soak", "memory_phase_gbs")
    chunk_ends = values(quick(), "soak", "memory_phase_chunk_end_s")
    assert len(chunk_ends) == 45
    assert problems(with_params(quick(), "soak", memory_phase_s=44)) == [
        ("soak", "memory_phase_s is 44, the quick preset's is 45")
    ]

    def phase(held_s: float, ends: tuple[float, ...]) -> Problems:
        record = with_params(
            quick(), "soak", memory_phase_start_s=start_s, memory_phase_end_s=start_s + held_s
        )
        record = with_metric(record, "soak", "memory_phase_chunk_end_s", ends)
        return problems(with_metric(record, "soak", "memory_phase_gbs", rates[: len(ends)]))

    # 45 s asked: at least 40.5 s held, values to 40.5 s into it, at least 23 of them
    ends = tuple(start_s + 40.5 * (i + 1) / 23 for i in range(23))
    assert phase(40.5, ends) == []
    assert phase(40.4, tuple(e - 0.1 for e in ends)) == [
        ("soak", "the memory phase held 40.4 s, at least 40.5 s required"),
        ("soak", "the memory phase's values end 40.4 s into it, at least 40.5 s"),
    ]
    assert phase(45.0, (*ends[:-1], start_s + 40.4)) == [
        ("soak", "the memory phase's values end 40.4 s into it, at least 40.5 s"),
    ]
    assert phase(45.0, ends[1:]) == [("soak", "22 memory-phase values, at least 23 required")]
    assert phase(45.0, ends[:1]) == [
        (
            "soak",
            f"the memory phase's values end {ends[0] - start_s:.1f} s into it, at least 40.5 s",
        ),
        ("soak", "1 memory-phase values, at least 23 required"),
    ]
    assert problems(with_params(quick(), "soak", memory_phase_start_s=None)) == [
        ("soak", "parameter memory_phase_start_s is missing, a number required"),
        ("soak", "parameter memory_phase_start_s is missing, a number required"),
    ]
    assert problems(with_params(quick(), "soak", memory_phase_end_s=None))[1] == (
        "soak",
        "parameter memory_phase_end_s is missing, a number required",
    )


# --- the edges of each bound ----------------------------------------------------------------------


def test_bandwidth_elements_are_whole_floats_of_the_array() -> None:
    size = param(real(), "bandwidth", "array_bytes")
    # two stray bytes hold no float: still size // 4 elements
    assert problems(with_params(real(), "bandwidth", array_bytes=size + 2)) == []


def test_the_tensor_test_names_each_missing_parameter() -> None:
    assert problems(with_params(real(), "fp16_tensor", mma_iterations=None)) == [
        ("fp16_tensor", "parameter mma_iterations is missing, a whole number required")
    ]


def test_a_launch_of_one_thread_chain() -> None:
    one = with_params(real(), "fp32", blocks=1, threads=1, chains=1)
    assert problems(one) == []
    assert problems(with_checked(one, "fp32", 19)) == [
        (
            "fp32",
            "checked 19 thread chains, a multiple of 1 per launch over at least 20 launches "
            "required",
        )
    ]


def test_times_exactly_at_the_tolerance_are_inside() -> None:
    soak = get(real(), "soak")
    ends = values(real(), "soak", "iteration_end_s")
    first = (soak.started_s - TIME_TOLERANCE_S, *ends[1:])
    assert problems(with_metric(real(), "soak", "iteration_end_s", first)) == []
    start_s = float(soak.parameters["memory_phase_start_s"])
    end_s = float(soak.parameters["memory_phase_end_s"])
    chunk_ends = values(real(), "soak", "memory_phase_chunk_end_s")
    edges = (start_s - TIME_TOLERANCE_S, *chunk_ends[1:-1], end_s + TIME_TOLERANCE_S)
    assert problems(with_metric(real(), "soak", "memory_phase_chunk_end_s", edges)) == []
    follows = with_params(real(), "soak", memory_phase_start_s=ends[-1] - TIME_TOLERANCE_S)
    assert problems(follows) == []
    quick_soak = get(quick(), "soak")
    samples = quick_soak.telemetry
    edge = replace(samples[0], t_s=quick_soak.started_s - TIME_TOLERANCE_S)
    assert problems(edit(quick(), "soak", telemetry=(edge, *samples[1:189]))) == []


def test_a_total_at_exactly_the_smallest_share_of_the_card() -> None:
    card = 89_491_898_440  # 0.95 × card is 85017303518 exactly, in binary floating point too
    total = 85_017_303_518
    assert CUDA_TOTAL_MIN_SHARE * card == total
    record = replace(real(), identity=replace(real().identity, memory_total_bytes=card))
    assert problems(with_params(record, "memtest", total_bytes=total)) == []
    assert problems(with_params(record, "memtest", total_bytes=total - 4)) == [
        (
            "memtest",
            f"total_bytes {total - 4} is not within 95% to 100% of the card's {card} bytes",
        )
    ]


def test_a_soak_without_iteration_ends() -> None:
    assert problems(with_metric(real(), "soak", "iteration_end_s", ())) == [
        ("soak", "metric iteration_end_s has no values, at least 1 required"),
        ("soak", "metric iteration_end_s has 0 values for 206 iterations"),
    ]
    assert problems(with_metric(quick(), "soak", "iteration_end_s", ())) == [
        ("soak", "metric iteration_end_s has no values, at least 1 required"),
        ("soak", "metric iteration_end_s has 0 values for 53 iterations"),
        ("soak", "the iterations end 0.0 s into the soak, at least 29.4 s"),
    ]


def test_a_memory_phase_without_values_in_a_current_record() -> None:
    empty = with_metric(quick(), "soak", "memory_phase_chunk_end_s", ())
    empty = with_metric(empty, "soak", "memory_phase_gbs", ())
    assert problems(empty) == [
        ("soak", "the memory phase has no values, at least 1 required"),
        ("soak", "the memory phase's values end 0.0 s into it, at least 40.5 s"),
        ("soak", "0 memory-phase values, at least 23 required"),
    ]


def test_memtest_patterns_done_must_be_a_number() -> None:
    assert problems(with_params(quick(), "memtest", patterns_done="8")) == [
        ("memtest", "parameter patterns_done is '8', a whole number required"),
        ("memtest", "'8' of the quick preset's 8 memtest patterns were run"),
    ]


def test_the_thorough_memtest_counts_its_walking_shifts_and_passes() -> None:
    words = param(thorough(), "memtest", "tested_bytes") // 4
    pass_gbs = values(thorough(), "memtest", "pass_gbs")
    # 4 patterns × 32 passes + 31 walking shifts = 159
    fewer = with_params(thorough(), "memtest", patterns=158, patterns_done=158)
    fewer = with_checked(fewer, "memtest", words * (2 * 158 + 2))
    assert problems(with_metric(fewer, "memtest", "pass_gbs", pass_gbs[:158])) == [
        ("memtest", "158 of the thorough preset's 159 memtest patterns were run")
    ]
    assert problems(with_params(thorough(), "memtest", passes=31)) == [
        ("memtest", "passes is 31, the thorough preset's is 32")
    ]
