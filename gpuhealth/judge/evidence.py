"""Evidence, not claims: a stress test counts as passed only with the evidence that proves it.

A record says a test passed; this module checks that the record also holds what the test writes
when it really passes: its verifications (all passed, nothing found, something checked), its
metrics with every repetition, the counts that tie them together (a memtest verification covers
every word under every pattern, a soak's digest check every iteration), and telemetry. Records of
this version must also hold what their preset asks for (repetitions, patterns, soak duration).

Pure: no GPU, no backend. The numbers below are those the stress tests write
(gpuhealth/measure/stresstests/*.py); tests/test_evidence.py keeps them equal.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from gpuhealth.errors import InputError
from gpuhealth.judge.evidence_labels import (
    clear_problems,
    link_reading_problems,
    pcie_rate_problems,
    readiness_problems,
)
from gpuhealth.models import Finding, Metric, RunRecord, TestResult
from gpuhealth.patterns import standard_sequence
from gpuhealth.presets import PRESETS, Preset, with_soak

# Records written before these minimums existed (the presets changed during 0.1.0): internal
# consistency only.
LEGACY_VERSIONS = ("0.1.0",)
RUN = "run"  # the problem's test for what concerns the whole record
MEMORY_CLEAR = "memory_clear"  # ... for the memory clear (evidence_labels.py)
READINESS = "readiness"  # ... for the readiness items
# stresstests.TEST_NAMES, in order (that module imports the backends: this one stays pure): the
# tests a complete record must hold. A legacy record (0.1.0) had no pcie test, no readiness and
# no memory clear; from 0.2.0 on a complete record lacking any of them had it deleted (a seller
# hiding a slow link or an uncleared card): evidence missing, never "made before it existed".
LEGACY_TESTS = ("bandwidth", "memtest", "fp32", "fp16_tensor", "gemm", "soak")
STANDARD_TESTS = ("pcie", *LEGACY_TESTS)
MIN_REPETITIONS = 3  # stresstests.base.MIN_REPETITIONS: enough when the time budget ran out
MIN_TENSOR_CC = (7, 5)  # stresstests.fp16_tensor.MIN_TENSOR_CC: the only test that may skip
# The sim computes a corner block of a matrix product (backends/sim.py GEMM_BLOCK), not all n².
SIM_BACKEND = "sim"
SIM_PRODUCT_BLOCK = (8, 64)
MEMORY_CHUNK_S = 1.0  # stresstests.soak.MEMORY_CHUNK_S: one memory-phase value per ~1 s

TIME_TOLERANCE_S = 1e-3  # times are stored rounded to 0.1 ms
# CUDA's total memory is NVML's less what the driver keeps (H100 0.59 %, H200 0.43 %, consumer
# cards ~1.5 %): the memtest's total must be within this share of the identity's.
CUDA_TOTAL_MIN_SHARE = 0.95
# A test shorter than two sampling intervals can fall between two samples.
TELEMETRY_MIN_TEST_S = 0.4
TELEMETRY_RATE_MIN_TEST_S = 2.0  # tests longer than this are held to a sampling rate
# The thresholds below, against genuine runs (real H100/H200 and sim records, fresh sim grades
# of every preset): telemetry 0.957 to 1.03 of duration / interval; soaked_s, the last iteration's
# end, the memory phase's length and its last value 1.000 to 1.02 of the preset's (the loops run
# until the time is up); memory-phase values 1.00 to 1.02 per MEMORY_CHUNK_S; iterations 0.84 to
# 0.88 of duration / iteration_s.
TELEMETRY_MIN_SHARE = 0.5  # of duration / interval
SOAK_MIN_SHARE = 0.98  # of the preset's duration
MEMORY_PHASE_MIN_SHARE = 0.9  # of the preset's memory phase
MEMORY_CHUNKS_MIN_SHARE = 0.5  # of memory_phase_s / MEMORY_CHUNK_S values
# An iteration is sized to iteration_s at the first product's (cold, fastest) speed: a card
# throttled to a quarter of that speed still reaches this share of duration / iteration_s.
SOAK_ITERATIONS_MIN_SHARE = 0.25

EXPECTED_METRICS: dict[str, tuple[str, ...]] = {
    "bandwidth": ("copy_gbs", "scale_gbs", "add_gbs", "triad_gbs", "read_gbs"),
    "memtest": ("pass_gbs",),
    "fp32": ("fp32_tflops",),
    "fp16_tensor": ("mma_tflops", "tensor_gemm_tflops"),
    "gemm": ("fp16_tflops", "fp32_tflops"),
    "soak": ("iteration_tflops", "iteration_end_s"),
    "pcie": ("h2d_gbs", "d2h_gbs", "both_gbs"),
}
MEMORY_PHASE_METRICS = ("memory_phase_gbs", "memory_phase_chunk_end_s")
EXPECTED_VERIFICATIONS = {
    "bandwidth": 2,  # every array element; the read kernel's sum
    "memtest": 1,
    "fp32": 1,
    "fp16_tensor": 2,  # mma.sync residues; the tensor-core GEMM
    "gemm": 2,  # FP16; FP32
    "soak": 1,
    "pcie": 2,  # every host-to-device copy's words; every device-to-host copy's words
}
PCIE_COPY_MIN_BYTES = 256 << 20  # stresstests.pcie.COPY_MIN_BYTES


@dataclass(frozen=True)
class EvidenceProblem:
    test: str  # the test's name ("memtest"), or "run" for what concerns the whole record
    problem: str  # one line: the number found and the number required


def evidence_problems(record: RunRecord) -> tuple[EvidenceProblem, ...]:
    """Every claim in the record that its evidence does not back, in test order."""
    found = [EvidenceProblem(RUN, text) for text in _run_problems(record)]
    found += [EvidenceProblem(RUN, text) for text in link_reading_problems(record)]
    # issue 14's labels against their own numbers (evidence_labels.py)
    found += [EvidenceProblem(MEMORY_CLEAR, text) for text in clear_problems(record)]
    found += [EvidenceProblem(READINESS, text) for text in readiness_problems(record)]
    chosen = _preset_for(record)
    if isinstance(chosen, str):
        found.append(EvidenceProblem(RUN, chosen))
    for test in record.tests:
        texts = _test_problems(record, test)
        if test.status == "passed" and isinstance(chosen, Preset):
            texts += _preset_problems(test, chosen)
        found += [EvidenceProblem(test.name, text) for text in texts]
    return tuple(found)


def evidence_findings(record: RunRecord) -> list[Finding]:
    """One test_not_measured finding per test whose claim lacks its evidence (INCOMPLETE by the
    default policy). A finding can only make a grade worse, never better."""
    by_test: dict[str, list[str]] = {}
    for problem in evidence_problems(record):
        by_test.setdefault(problem.test, []).append(problem.problem)
    return [
        Finding(
            "test_not_measured",
            "major",
            name,
            f"{name}: marked {_claim(record, name)} without its evidence: {'; '.join(texts)}",
            value="no evidence",
        )
        for name, texts in by_test.items()
    ]


def _claim(record: RunRecord, name: str) -> str:
    if name == RUN:
        return "complete" if record.complete else "graded"
    if name == MEMORY_CLEAR:
        return record.memory_clear.status if record.memory_clear else "cleared"
    if name == READINESS:
        return "read"
    test = record.test(name)
    return test.status if test is not None else "passed"


def _preset_for(record: RunRecord) -> Preset | str | None:
    """The preset whose minimums apply, a problem text, or None for a legacy record."""
    if record.tool_version in LEGACY_VERSIONS:
        return None
    chosen = PRESETS.get(record.preset)
    if chosen is None:
        return f"preset {record.preset!r} is not one of {', '.join(PRESETS)}"
    try:  # --soak: the soak is held to the length asked for (a shorter one: soak_shortened)
        return with_soak(chosen, record.soak_duration_s)
    except InputError as error:
        return f"soak_duration_s: {error.expected}"


# --- the whole record -----------------------------------------------------------------------------


def _run_problems(record: RunRecord) -> list[str]:
    names = [t.name for t in record.tests]
    found = [
        f"test {name} recorded {names.count(name)} times, once required"
        for name in dict.fromkeys(names)
        if names.count(name) > 1
    ]
    if record.complete:
        legacy = record.tool_version in LEGACY_VERSIONS
        required = LEGACY_TESTS if legacy else STANDARD_TESTS
        missing = [name for name in required if name not in names]
        if missing:
            found.append(
                f"complete, but {len(missing)} of the {len(required)} tests are missing "
                f"({', '.join(missing)})"
            )
        if not legacy:
            readings = [c for c in (record.counters_before, record.counters_after) if c]
            found += [
                f"complete, but its {what} is missing (every grade since 0.2.0 records it)"
                for what, missing in (
                    ("readiness", record.readiness is None),
                    ("memory clear", record.memory_clear is None),
                    # an erased reading would hide the errors it held: "none" or "unreadable"
                    # is what NVML said, None is that nothing was said
                    ("NVLink reading", any(c.nvlink_status is None for c in readings)),
                    (
                        "PCIe error counter reading",
                        any(c.pcie_errors_status is None for c in readings),
                    ),
                )
                if missing
            ]
    return found


# --- tier 1: what a test writes when it passes ---------------------------------------------------


def _test_problems(record: RunRecord, test: TestResult) -> list[str]:
    if test.status == "failed" and not any(not v.passed for v in test.verifications):
        return ["failed without a failed verification"]
    if test.status == "skipped":
        return _skip_problems(record, test)
    if test.status != "passed":
        return []
    found = _verification_problems(test) + _metric_problems(test) + _telemetry_problems(test)
    check = _TIER1.get(test.name)
    if check is not None and len(test.verifications) == EXPECTED_VERIFICATIONS[test.name]:
        found += check(record, test)
    return found


def _skip_problems(record: RunRecord, test: TestResult) -> list[str]:
    """Only the tensor-core test may be skipped, and only on a card older than 7.5."""
    if test.name != "fp16_tensor":
        return [f"skipped, but {test.name} applies to every card"]
    cc = _compute_capability(record.identity.compute_capability)
    if cc is not None and cc >= MIN_TENSOR_CC:
        return [f"skipped on compute capability {cc[0]}.{cc[1]}, which is 7.5 or newer"]
    return []


def _compute_capability(text: str | None) -> tuple[int, int] | None:
    try:
        major, minor = (text or "").split(".")
        return int(major), int(minor)
    except ValueError:
        return None


def _verification_problems(test: TestResult) -> list[str]:
    checks = test.verifications
    if not checks:
        return ["no verification recorded"]
    found: list[str] = []
    expected = EXPECTED_VERIFICATIONS.get(test.name)
    if expected is not None and len(checks) != expected:
        found.append(f"{len(checks)} verification(s) recorded, {expected} required")
    for number, check in enumerate(checks, 1):
        if not check.passed:
            found.append(f"verification {number} did not pass")
        if check.mismatches != 0:
            found.append(f"verification {number} found {check.mismatches} mismatch(es), 0 allowed")
        if check.checked <= 0:
            found.append(f"verification {number} checked {check.checked} values, at least 1")
        if check.memory_errors:
            found.append(f"verification {number} lists {len(check.memory_errors)} memory error(s)")
        if check.wrong_results:
            found.append(f"verification {number} lists {len(check.wrong_results)} wrong result(s)")
    return found


def _metric_problems(test: TestResult) -> list[str]:
    found: list[str] = []
    for name in EXPECTED_METRICS.get(test.name, ()):
        metric = test.metric(name)
        if metric is None:
            found.append(f"metric {name} missing")
        elif not metric.values:
            found.append(f"metric {name} has no values, at least 1 required")
    for metric in test.metrics:
        bad = _not_positive(metric)
        if bad:
            found.append(f"metric {metric.name} has {bad} value(s) not finite and positive")
    return found


def _not_positive(metric: Metric) -> int:
    """Values no measurement gives: every rate, and every time since the run's start, is > 0."""
    return sum(1 for v in metric.values if not (math.isfinite(v) and v > 0))


def _telemetry_problems(test: TestResult) -> list[str]:
    found: list[str] = []
    # The soak always has some: its thermal guard reads them (and the soak analysis needs them).
    if not test.telemetry and (test.duration_s >= TELEMETRY_MIN_TEST_S or test.name == "soak"):
        found.append(f"no telemetry sample in {test.duration_s:.1f} s, at least 1 required")
    end_s = test.started_s + test.duration_s + TIME_TOLERANCE_S
    late = sum(1 for s in test.telemetry if s.t_s > end_s)
    if late:
        found.append(f"{late} telemetry sample(s) taken after the test ended at {end_s:.1f} s")
    return found


def _ints(test: TestResult, *names: str) -> dict[str, int] | str:
    """The named parameters as whole numbers, or the problem with the first that is not one."""
    values: dict[str, int] = {}
    for name in names:
        value = test.parameters.get(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return f"parameter {name} is {_shown(value)}, a whole number required"
        values[name] = value
    return values


def _floats(test: TestResult, *names: str) -> dict[str, float] | str:
    values: dict[str, float] = {}
    for name in names:
        value = test.parameters.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"parameter {name} is {_shown(value)}, a number required"
        if not math.isfinite(value):
            return f"parameter {name} is {_shown(value)}, a finite number required"
        values[name] = float(value)
    return values


def _shown(value: object) -> str:
    return "missing" if value is None else repr(value)


def _count(test: TestResult, name: str) -> int:
    metric = test.metric(name)
    return len(metric.values) if metric is not None else 0


def _budget_spent(test: TestResult, budget_s: float) -> bool:
    """repeat() stops early, with at least MIN_REPETITIONS, once the time budget is spent."""
    return test.duration_s >= budget_s


def _too_few(test: TestResult, name: str, required: int, budget_s: float) -> list[str]:
    found = _count(test, name)
    if found >= required or (_budget_spent(test, budget_s) and found >= MIN_REPETITIONS):
        return []
    return [f"metric {name} has {found} values, {required} required"]


def _repetitions(test: TestResult, names: tuple[str, ...], repetitions: int) -> list[str]:
    """Each metric holds one value per repetition the test says it ran (fewer only when the time
    budget ran out, and never fewer than MIN_REPETITIONS)."""
    found: list[str] = []
    for name in names:
        count = _count(test, name)
        if count > repetitions:
            found.append(f"metric {name} has {count} values for {repetitions} repetitions")
        else:
            found += _too_few(test, name, repetitions, test.time_budget_s)
    return found


def _product_elements(record: RunRecord, n: int) -> int:
    if record.backend == SIM_BACKEND:
        return min(SIM_PRODUCT_BLOCK[0], n) * min(SIM_PRODUCT_BLOCK[1], n)
    return n * n


def _launches(checked: int, per_launch: int, timed: int, what: str) -> list[str]:
    """A kernel checked after every launch (warm-ups too): whole launches, at least the timed."""
    if per_launch > 0 and checked % per_launch == 0 and checked // per_launch >= timed:
        return []
    return [
        f"checked {checked} {what}, a multiple of {per_launch} per launch over at least "
        f"{timed} launches required"
    ]


def _bandwidth(record: RunRecord, test: TestResult) -> list[str]:
    p = _ints(test, "array_bytes", "elements", "l2_bytes", "repetitions")
    if isinstance(p, str):
        return [p]
    found = _repetitions(test, EXPECTED_METRICS["bandwidth"], p["repetitions"])
    elements = p["elements"]
    if elements != p["array_bytes"] // 4:
        found.append(f"{elements} elements in arrays of {p['array_bytes']} bytes, not bytes / 4")
    if p["array_bytes"] < 8 * p["l2_bytes"]:
        found.append(f"arrays of {p['array_bytes']} bytes, at least 8 × L2 = {8 * p['l2_bytes']}")
    arrays, read = test.verifications
    if arrays.checked != 3 * elements:
        found.append(f"checked {arrays.checked} array elements, 3 × {elements} required")
    if read.checked != 1:
        found.append(f"checked {read.checked} read sums, 1 required")
    return found


def _memtest(record: RunRecord, test: TestResult) -> list[str]:
    p = _ints(test, "tested_bytes", "total_bytes", "patterns", "patterns_done")
    q = _floats(test, "coverage", "bit_fade_s")
    if isinstance(p, str) or isinstance(q, str):
        return [p if isinstance(p, str) else str(q)]
    tested, total, done = p["tested_bytes"], p["total_bytes"], p["patterns_done"]
    found: list[str] = []
    if done != p["patterns"]:
        found.append(f"{done} of {p['patterns']} patterns were run")
    if _count(test, "pass_gbs") != done:
        found.append(f"metric pass_gbs has {_count(test, 'pass_gbs')} values for {done} patterns")
    if not 0 < tested <= total or tested % 4:
        return [*found, f"tested_bytes {tested} is not whole words within total_bytes {total}"]
    if q["coverage"] != round(tested / total, 4):
        found.append(f"coverage {q['coverage']} is not tested / total = {tested / total:.4f}")
    card = record.identity.memory_total_bytes
    if card and not CUDA_TOTAL_MIN_SHARE * card <= total <= card:
        found.append(
            f"total_bytes {total} is not within {CUDA_TOTAL_MIN_SHARE:.0%} to 100% of the card's "
            f"{card} bytes"
        )
    words = tested // 4
    allowed = {words * 2 * done}  # each pattern is read back twice (p, then ~p)
    if q["bit_fade_s"] > 0:  # the bit-fade pass reads every word twice more, when it ran
        allowed.add(words * (2 * done + 2))
    checked = test.verifications[0].checked
    if checked not in allowed:
        found.append(
            f"checked {checked} words, {words * 2 * done} required ({done} patterns × 2 reads "
            f"of {words} words)"
        )
    passes = test.parameters.get("passes")
    if isinstance(passes, int) and not 0 < passes <= done:
        found.append(f"{passes} passes over {done} patterns")
    return found


def _fp32(record: RunRecord, test: TestResult) -> list[str]:
    p = _ints(test, "blocks", "threads", "chains", "iterations")
    if isinstance(p, str):
        return [p]
    per_launch = p["blocks"] * p["threads"] * p["chains"]
    timed = _count(test, "fp32_tflops")
    return _launches(test.verifications[0].checked, per_launch, timed, "thread chains")


def _fp16_tensor(record: RunRecord, test: TestResult) -> list[str]:
    p = _ints(test, "mma_blocks", "mma_threads", "mma_iterations", "mma_accumulators", "gemm_n")
    if isinstance(p, str):
        return [p]
    mma, product = test.verifications
    per_launch = p["mma_blocks"] * p["mma_threads"]
    found = _launches(mma.checked, per_launch, _count(test, "mma_tflops"), "mma threads")
    elements = _product_elements(record, p["gemm_n"])
    if product.checked != elements:
        found.append(f"checked {product.checked} GEMM elements, {elements} required")
    return found


def _gemm(record: RunRecord, test: TestResult) -> list[str]:
    p = _ints(test, "n", "warmup", "repetitions")
    if isinstance(p, str):
        return [p]
    found = _repetitions(test, EXPECTED_METRICS["gemm"], p["repetitions"])
    elements = _product_elements(record, p["n"])
    for dtype, check in zip(("FP16", "FP32"), test.verifications, strict=True):
        if check.checked != elements:
            found.append(f"checked {check.checked} {dtype} GEMM elements, {elements} required")
    return found


def _increasing_within(values: tuple[float, ...], low_s: float, high_s: float) -> bool:
    inside = all(low_s - TIME_TOLERANCE_S <= v <= high_s + TIME_TOLERANCE_S for v in values)
    return inside and all(a < b for a, b in itertools.pairwise(values))


def _soak(record: RunRecord, test: TestResult) -> list[str]:
    p = _ints(test, "iterations")
    if isinstance(p, str):
        return [p]
    iterations = p["iterations"]
    found = [
        f"metric {name} has {_count(test, name)} values for {iterations} iterations"
        for name in EXPECTED_METRICS["soak"]
        if _count(test, name) != iterations
    ]
    checked = test.verifications[0].checked
    if checked != iterations:
        found.append(f"the digest check covered {checked} of {iterations} iterations")
    ends = _values(test, "iteration_end_s")
    end_s = test.started_s + test.duration_s
    if not _increasing_within(ends, test.started_s, end_s):
        found.append(
            f"iteration_end_s does not increase within the test's {test.started_s:.1f} to "
            f"{end_s:.1f} s"
        )
    if "memory_phase_s" in test.parameters or any(test.metric(n) for n in MEMORY_PHASE_METRICS):
        found += _memory_phase(test, ends[-1] if ends else test.started_s)
    return found


def _values(test: TestResult, name: str) -> tuple[float, ...]:
    metric = test.metric(name)
    return metric.values if metric is not None else ()


def _stopped_by_guard(test: TestResult) -> bool:
    """The thermal guard stopped the soak: a shorter soak is then what was measured, and
    findings.soak_findings grades it D or F (thermal_guard on "temperature", thermal_slowdown on
    "thermal slowdown": the same words, so that this exemption never comes without one)."""
    stopped = test.parameters.get("stopped_early")
    return isinstance(stopped, str) and ("temperature" in stopped or "thermal slowdown" in stopped)


def _memory_phase(test: TestResult, gemm_end_s: float) -> list[str]:
    p = _floats(test, "memory_phase_s", "memory_phase_start_s", "memory_phase_end_s")
    q = _ints(test, "memory_phase_launches")
    if isinstance(p, str) or isinstance(q, str):
        return [p if isinstance(p, str) else str(q)]
    start_s, end_s = p["memory_phase_start_s"], p["memory_phase_end_s"]
    found: list[str] = []
    missing = [n for n in MEMORY_PHASE_METRICS if test.metric(n) is None]
    if missing:
        found.append(f"metric {', '.join(missing)} missing")
    chunks = _count(test, MEMORY_PHASE_METRICS[0])
    if _count(test, MEMORY_PHASE_METRICS[1]) != chunks:
        found.append(
            f"{chunks} memory-phase rates for {_count(test, MEMORY_PHASE_METRICS[1])} chunk ends"
        )
    if chunks == 0 and "stopped_early" not in test.parameters:
        found.append("the memory phase has no values, at least 1 required")
    if not gemm_end_s - TIME_TOLERANCE_S <= start_s <= end_s:
        found.append(
            f"the memory phase {start_s:.1f} to {end_s:.1f} s does not follow the GEMM phase "
            f"(ended {gemm_end_s:.1f} s)"
        )
    if not _increasing_within(_values(test, MEMORY_PHASE_METRICS[1]), start_s, end_s):
        found.append(
            f"memory-phase chunk ends do not increase within {start_s:.1f} to {end_s:.1f} s"
        )
    if q["memory_phase_launches"] <= chunks:
        found.append(f"{q['memory_phase_launches']} memory-phase launches for {chunks} chunks")
    return found


def _pcie(record: RunRecord, test: TestResult) -> list[str]:
    """Issue 14: each copy's words are all checked, warm-ups and the two-way copies included."""
    p = _ints(test, "copy_bytes", "warmup", "repetitions")
    if isinstance(p, str):
        return [p]
    copy_bytes, warmup = p["copy_bytes"], p["warmup"]
    found = _repetitions(test, EXPECTED_METRICS["pcie"], p["repetitions"])
    found += pcie_rate_problems(record, test)
    if copy_bytes < PCIE_COPY_MIN_BYTES or copy_bytes % 16:
        found.append(
            f"copies of {copy_bytes} bytes, whole 16-byte units of at least {PCIE_COPY_MIN_BYTES}"
        )
    words, both = copy_bytes // 4, _count(test, "both_gbs") + warmup
    for check, metric, title in zip(
        test.verifications,
        ("h2d_gbs", "d2h_gbs"),
        ("host-to-device", "device-to-host"),
        strict=True,
    ):
        required = words * (_count(test, metric) + warmup + both)
        if check.checked != required:
            found.append(
                f"checked {check.checked} {title} words, {required} required ({words} per copy, "
                f"warm-ups and two-way copies included)"
            )
    return found


_TIER1 = {
    "pcie": _pcie,
    "bandwidth": _bandwidth,
    "memtest": _memtest,
    "fp32": _fp32,
    "fp16_tensor": _fp16_tensor,
    "gemm": _gemm,
    "soak": _soak,
}


# --- tier 2: what the record's preset asks of a passed test --------------------------------------


def _preset_problems(test: TestResult, preset: Preset) -> list[str]:
    found = _telemetry_rate(test, preset)
    check = _TIER2.get(test.name)
    if check is not None:
        found += check(test, preset)
    return found


def _telemetry_rate(test: TestResult, preset: Preset) -> list[str]:
    if test.duration_s <= TELEMETRY_RATE_MIN_TEST_S:
        return []
    end_s = test.started_s + test.duration_s + TIME_TOLERANCE_S
    during = sum(1 for s in test.telemetry if test.started_s - TIME_TOLERANCE_S <= s.t_s <= end_s)
    required = math.ceil(TELEMETRY_MIN_SHARE * test.duration_s / preset.telemetry_interval_s - 1e-9)
    if during >= required:
        return []
    return [
        f"{during} telemetry samples in {test.duration_s:.1f} s, at least {required} required "
        f"(one per {preset.telemetry_interval_s:g} s, {TELEMETRY_MIN_SHARE:.0%} allowed lost)"
    ]


def _preset_bandwidth(test: TestResult, preset: Preset) -> list[str]:
    params = preset.bandwidth
    found = _minimum(test, preset, "repetitions", params.repetitions)
    found += _minimum(test, preset, "warmup", params.warmup)
    for name in EXPECTED_METRICS["bandwidth"]:
        found += _too_few(test, name, params.repetitions, preset.budget_s(test.name))
    return found


def _minimum(test: TestResult, preset: Preset, name: str, required: float) -> list[str]:
    value = test.parameters.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < required:
        # .15g: every digit of a byte count (":g" showed 1 GiB as 1.07374e+09), no ".0"
        return [f"{name} is {_shown(value)}, the {preset.name} preset's is {required:.15g}"]
    return []


def _equal(test: TestResult, preset: Preset, name: str, required: int) -> list[str]:
    value = test.parameters.get(name)
    if value != required or isinstance(value, bool):
        return [f"{name} is {_shown(value)}, the {preset.name} preset's is {required}"]
    return []


def _preset_memtest(test: TestResult, preset: Preset) -> list[str]:
    params = preset.memtest
    per_pass = len(standard_sequence(params.patterns))
    required = per_pass * params.passes + params.walking_shifts
    found: list[str] = []
    done = test.parameters.get("patterns_done")
    if isinstance(done, bool) or not isinstance(done, int) or done < required:
        found.append(
            f"{_shown(done)} of the {preset.name} preset's {required} memtest patterns were run"
        )
    found += _minimum(test, preset, "passes", params.passes)
    if params.bit_fade_s > 0:
        found += _bit_fade(test, preset)
    return found


def _bit_fade(test: TestResult, preset: Preset) -> list[str]:
    """The preset's bit-fade pass ran: its wait is in the test's time, its reads in the count."""
    wait_s = preset.memtest.bit_fade_s
    found = _minimum(test, preset, "bit_fade_s", wait_s)
    p = _ints(test, "tested_bytes", "patterns_done")
    if isinstance(p, str):
        return [*found, p]
    words = p["tested_bytes"] // 4
    required = words * (2 * p["patterns_done"] + 2)
    checked = test.verifications[0].checked if test.verifications else 0
    if checked != required:
        found.append(
            f"checked {checked} words, {required} required with the {preset.name} preset's "
            "bit-fade pass"
        )
    if test.duration_s < wait_s:
        found.append(f"ran {test.duration_s:.1f} s, less than the bit-fade wait of {wait_s:g} s")
    return found


def _preset_launches(
    test: TestResult, preset: Preset, metric: str, warmup: int, per_launch: int
) -> list[str]:
    """A checked kernel is checked after every launch, warm-ups included."""
    timed = _count(test, metric)
    checked = test.verifications[0].checked if test.verifications else 0
    required = per_launch * (warmup + timed)
    if checked != required:
        return [
            f"checked {checked} results, {required} required ({warmup} warm-up and {timed} timed "
            f"launches of the {preset.name} preset)"
        ]
    return []


def _preset_fp32(test: TestResult, preset: Preset) -> list[str]:
    params = preset.fp32
    found = _too_few(test, "fp32_tflops", params.repetitions, preset.budget_s(test.name))
    p = _ints(test, "blocks", "threads", "chains")
    if isinstance(p, str):
        return [*found, p]
    per_launch = p["blocks"] * p["threads"] * p["chains"]
    return found + _preset_launches(test, preset, "fp32_tflops", params.warmup, per_launch)


def _preset_fp16_tensor(test: TestResult, preset: Preset) -> list[str]:
    params = preset.fp16_tensor
    budget_s = preset.budget_s(test.name)
    found = _too_few(test, "mma_tflops", params.repetitions, budget_s)
    found += _too_few(test, "tensor_gemm_tflops", params.repetitions, budget_s)
    found += _equal(test, preset, "gemm_n", params.gemm_n)
    p = _ints(test, "mma_blocks", "mma_threads")
    if isinstance(p, str):
        return [*found, p]
    per_launch = p["mma_blocks"] * p["mma_threads"]
    return found + _preset_launches(test, preset, "mma_tflops", params.warmup, per_launch)


def _preset_gemm(test: TestResult, preset: Preset) -> list[str]:
    params = preset.gemm
    found = _equal(test, preset, "n", params.n)
    found += _minimum(test, preset, "repetitions", params.repetitions)
    found += _minimum(test, preset, "warmup", params.warmup)
    for name in EXPECTED_METRICS["gemm"]:
        found += _too_few(test, name, params.repetitions, preset.budget_s(test.name))
    return found


def _preset_soak(test: TestResult, preset: Preset) -> list[str]:
    params = preset.soak
    found = _minimum(test, preset, "duration_s", params.duration_s)
    found += _equal(test, preset, "gemm_n", params.gemm_n)
    if _stopped_by_guard(test):
        return found
    required_s = SOAK_MIN_SHARE * params.duration_s
    soaked = test.parameters.get("soaked_s")
    if isinstance(soaked, bool) or not isinstance(soaked, int | float) or soaked < required_s:
        found.append(
            f"soaked_s is {_shown(soaked)}, at least {required_s:g} s of the {preset.name} "
            f"preset's {params.duration_s:g} s required"
        )
    ends = _values(test, "iteration_end_s")
    span_s = ends[-1] - test.started_s if ends else 0.0
    if span_s < required_s:
        found.append(f"the iterations end {span_s:.1f} s into the soak, at least {required_s:g} s")
    iterations = _count(test, "iteration_tflops")
    least = math.ceil(SOAK_ITERATIONS_MIN_SHARE * params.duration_s / params.iteration_s)
    if iterations < least:
        found.append(f"{iterations} soak iterations, at least {least} required")
    if params.memory_phase_s > 0:
        found += _preset_memory_phase(test, preset)
    return found


def _preset_memory_phase(test: TestResult, preset: Preset) -> list[str]:
    phase_s = preset.soak.memory_phase_s
    found = _minimum(test, preset, "memory_phase_s", phase_s)
    p = _floats(test, "memory_phase_start_s", "memory_phase_end_s")
    if isinstance(p, str):
        return [*found, p]
    required_s = MEMORY_PHASE_MIN_SHARE * phase_s
    held_s = p["memory_phase_end_s"] - p["memory_phase_start_s"]
    if held_s < required_s:
        found.append(f"the memory phase held {held_s:.1f} s, at least {required_s:g} s required")
    chunk_ends = _values(test, MEMORY_PHASE_METRICS[1])
    covered_s = chunk_ends[-1] - p["memory_phase_start_s"] if chunk_ends else 0.0
    if covered_s < required_s:
        found.append(
            f"the memory phase's values end {covered_s:.1f} s into it, at least {required_s:g} s"
        )
    least = math.ceil(MEMORY_CHUNKS_MIN_SHARE * phase_s / MEMORY_CHUNK_S)
    if len(chunk_ends) < least:
        found.append(f"{len(chunk_ends)} memory-phase values, at least {least} required")
    return found


def _preset_pcie(test: TestResult, preset: Preset) -> list[str]:
    params = preset.pcie
    found = _minimum(test, preset, "copy_bytes", params.copy_bytes)
    found += _minimum(test, preset, "repetitions", params.repetitions)
    found += _minimum(test, preset, "warmup", params.warmup)
    for name in EXPECTED_METRICS["pcie"]:
        found += _too_few(test, name, params.repetitions, preset.budget_s(test.name))
    return found


_TIER2 = {
    "pcie": _preset_pcie,
    "bandwidth": _preset_bandwidth,
    "memtest": _preset_memtest,
    "fp32": _preset_fp32,
    "fp16_tensor": _preset_fp16_tensor,
    "gemm": _preset_gemm,
    "soak": _preset_soak,
}
