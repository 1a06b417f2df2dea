"""Re-checking a report on the machine with the card: is it the same card, and does it still hold up
when the grade's evidence is made again?

  identity   the card here has the report's serial and UUID, model name and memory size (within
             1 %); a report that names neither serial nor UUID cannot be tied to any card
  counters   remapped rows, uncorrectable ECC errors, pending / failed remapping, read after the
             re-tests: no worse than the report, and never lower (a lower counter was reset, or
             is another card)
  memory     one full pass of the four standard memtest patterns (and their inverses) over all
             allocatable memory: any word read back wrong fails and is named by address and bit
  compute    bandwidth, fp32, gemm (and fp16_tensor when the report has it) run again: every
             verification must pass, and each metric's median now is compared with the reported
             median (stats.compare), the spread the larger of the report's CI-derived standard
             error, the profile's spread and 1 % of the reported value; two-sided, Holm-adjusted
             over the metrics, alpha 0.01
  link       the pcie test run again (when the report has it): every copied byte verified, and
             the copies held to the link they ran on here as the grade holds them (at least 70%
             of its theoretical rate); a problem the report did not show fails (the detail says
             this host's slot or riser may be the cause), a link that trains below the card's
             generation or width here leaves the rates unproven

Every item runs whatever the others found: another card is still tested, and its memory errors
named. Each item ends pass, fail (proven wrong) or unproven (could not be made, and why): the
re-check is consistent only when every item passed.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace

from scipy import stats as sps

from gpuhealth.certificate.checks import Check
from gpuhealth.certificate.recheck_result import RECHECK_ALPHA, MetricRecheck, RecheckResult
from gpuhealth.errors import EXIT_BAD_CARD, DeviceError
from gpuhealth.judge import stats
from gpuhealth.judge.findings import MEMTEST_COVERAGE_TARGET
from gpuhealth.judge.findings_links import (
    PCIE_TEST,
    link_of_test,
    pcie_corrupt_finding,
    pcie_findings,
)
from gpuhealth.judge.profiles import NOT_JUDGED
from gpuhealth.measure.backends.base import Backend, DeviceInfo
from gpuhealth.measure.stresstests.bandwidth import BandwidthTest
from gpuhealth.measure.stresstests.base import StressTest, TestContext, execute
from gpuhealth.measure.stresstests.fp16_tensor import Fp16TensorTest
from gpuhealth.measure.stresstests.fp32 import Fp32Test
from gpuhealth.measure.stresstests.gemm import GemmTest
from gpuhealth.measure.stresstests.memtest import MAX_REPORTED, MemtestTest
from gpuhealth.measure.stresstests.pcie import PcieTest
from gpuhealth.models import (
    CardIdentity,
    Finding,
    HealthCounters,
    MemoryMismatch,
    RunRecord,
    TestResult,
)
from gpuhealth.patterns import standard_sequence
from gpuhealth.pcielink import describe
from gpuhealth.presets import PRESETS, Preset

# The spread a re-measurement is held to never falls below this share of the reported value: the
# same card measured another day varies about this much with temperature and clocks, and a model
# with no profile has no between-card spread to fall back on.
RECHECK_MIN_SPREAD_REL = 0.01
# NVML's total memory moves a little with the driver's reservation; another model by far more.
MEMORY_SIZE_TOLERANCE = 0.01
RECHECK_PATTERNS = len(standard_sequence(4))  # all four: address, random, walking ones, 0x55
# One pass of four moving inversions moves 16x the memory: ~0.5 s on an 80 GB H100, a few seconds
# on the slowest supported card. The budget only stops a card that has stopped making progress.
RECHECK_MEMTEST_BUDGET_S = 120.0
RECHECK_ITEMS = ("identity", "counters", "memory", "compute", "link")
COMPUTE_TESTS = ("bandwidth", "fp32", "fp16_tensor", "gemm")
MAX_NAMED = 3  # memory errors / wrong results named in one check's detail


def _recheck_preset() -> Preset:
    """The quick preset, its memtest widened to one full pass of every standard pattern."""
    quick = PRESETS["quick"]
    memtest = replace(
        quick.memtest,
        patterns=RECHECK_PATTERNS,
        passes=1,
        walking_shifts=0,
        bit_fade_s=0,
        budget_s=RECHECK_MEMTEST_BUDGET_S,
    )
    return replace(quick, name="recheck", memtest=memtest)


RECHECK_PRESET = _recheck_preset()


def recheck_card(
    record: RunRecord, backend: Backend, on_test: Callable[[str], None] | None = None
) -> RecheckResult:
    """Re-check the report's claims on this card: identity, counters, memory, compute, link.
    Never raises for a card that fails or falls off the bus: that item, and those after it, say
    so. on_test(name) is called as each test starts (recheck_worker's watchdog)."""
    identity = _guarded("identity", lambda: _identity_check(record, backend.identity()))
    counters_before = _read_counters(backend)
    tests = _run_tests(record, backend, on_test)
    counters_now = _read_counters(backend) or counters_before
    measured = compare_metrics(record, tests)
    checks = (
        identity,
        _counters_check(record, counters_now),
        _memory_check(_find(tests, "memtest")),
        _compute_check(record, tests, measured),
        _link_check(record, _find(tests, PCIE_TEST)),
    )
    return RecheckResult(checks, tuple(measured), tuple(tests))


def _unproven(name: str, detail: str, action: str | None = None) -> Check:
    return Check(name, "unproven", detail, exit_code=EXIT_BAD_CARD, action=action)


def _guarded(name: str, make: Callable[[], Check]) -> Check:
    """An item whose card query failed is unproven, not a crash."""
    try:
        return make()
    except DeviceError as exc:
        return _unproven(name, f"the card did not answer: {exc.one_line()}")


def _find(tests: Sequence[TestResult], name: str) -> TestResult | None:
    return next((t for t in tests if t.name == name), None)


# --- identity -------------------------------------------------------------------------------------


def _model_key(name: str | None) -> str:
    """Model names compared without case, spacing or the vendor prefix some drivers add."""
    words = (name or "").casefold().split()
    return " ".join(words[1:] if words[:1] == ["nvidia"] else words)


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def _identity_check(record: RunRecord, here: CardIdentity) -> Check:
    there = record.identity
    matched: list[str] = []
    bad: list[str] = []
    for label, was, now in (("serial", there.serial, here.serial), ("uuid", there.uuid, here.uuid)):
        if was and now:
            if was == now:
                matched.append(f"{label} {now}")
            else:
                bad.append(f"{label} {now} here, {was} in the report")
    if _model_key(there.name) != _model_key(here.name):
        bad.append(f"model {here.name} here, {there.name} in the report")
    was_mem, now_mem = there.memory_total_bytes, here.memory_total_bytes
    if was_mem and now_mem and abs(now_mem - was_mem) > MEMORY_SIZE_TOLERANCE * was_mem:
        bad.append(f"memory {_gib(now_mem)} here, {_gib(was_mem)} in the report")
    if bad:
        return Check(
            "identity",
            "fail",
            "another card: " + "; ".join(bad),
            action="the report is not about this card: ask the seller for this card's report",
        )
    if not matched:
        # Model and memory size are shared by every card of the model: without a serial or UUID
        # on both sides nothing ties the report to this card, so it is not proven either way.
        missing = [
            label
            for label, was, now in (
                ("serial", there.serial, here.serial),
                ("uuid", there.uuid, here.uuid),
            )
            if not was or not now
        ]
        return _unproven(
            "identity",
            f"no serial or UUID to compare ({', '.join(missing)} missing in the report or not "
            "readable here): any card of this model would match",
            action="compare the serial on the card's label with the report's",
        )
    memory = f", {_gib(now_mem)}" if now_mem else ""
    return Check("identity", "pass", f"same card ({here.name}{memory}, {', '.join(matched)})")


# --- counters -------------------------------------------------------------------------------------


def _read_counters(backend: Backend) -> HealthCounters | None:
    try:
        return backend.counters()
    except DeviceError:
        return None


def _counters_check(record: RunRecord, now: HealthCounters | None) -> Check:
    was = record.counters_after or record.counters_before
    if was is None:
        return _unproven("counters", "the report has no health counters to compare with")
    if now is None:
        return _unproven("counters", "the card's health counters could not be read")
    problems: list[str] = []
    compared: list[str] = []
    for name, label in (
        ("remapped_rows_correctable", "correctable remapped rows"),
        ("remapped_rows_uncorrectable", "uncorrectable remapped rows"),
        ("ecc_aggregate_uncorrected", "aggregate uncorrectable ECC errors"),
    ):
        before, after = getattr(was, name), getattr(now, name)
        if before is None or after is None:
            continue
        compared.append(f"{label} {after}")
        if after < before:
            problems.append(
                f"{label} went down from {before} to {after}: the counter was reset, or this is "
                "another card"
            )
        elif after > before:
            problems.append(f"{label} rose from {before} to {after} since the report")
    for name, label in (
        ("remapped_rows_pending", "row remapping pending"),
        ("remapped_rows_failure", "row remapping failure"),
    ):
        before_flag, after_flag = getattr(was, name), getattr(now, name)
        if after_flag is None:
            continue
        compared.append(f"{label} {'yes' if after_flag else 'no'}")
        if after_flag and not before_flag:
            problems.append(f"{label} is set now, not in the report")
    if problems:
        return Check("counters", "fail", "; ".join(problems))
    if not compared:
        return _unproven("counters", "no comparable counter readable both in the report and here")
    return Check("counters", "pass", "no worse than reported: " + ", ".join(compared))


# --- the stress tests -----------------------------------------------------------------------------


def _recheck_tests(record: RunRecord) -> tuple[StressTest, ...]:
    """In the grade's order (the card warms the same way); pcie and fp16_tensor only when the
    report measured them (nothing to compare otherwise)."""
    return (
        *((PcieTest(),) if _reported(record, PCIE_TEST) else ()),
        BandwidthTest(),
        MemtestTest(),
        Fp32Test(),
        *((Fp16TensorTest(),) if _reported(record, "fp16_tensor") else ()),
        GemmTest(),
    )


def _run_tests(
    record: RunRecord, backend: Backend, on_test: Callable[[str], None] | None
) -> list[TestResult]:
    """Each test as a grade runs it; stops at a lost card (the missing tests are then unproven)."""
    chosen = RECHECK_PRESET
    try:
        info: DeviceInfo = backend.device_info()
        t0 = backend.clock_s()
        backend.start_telemetry(chosen.telemetry_interval_s)
    except DeviceError:
        return []
    results: list[TestResult] = []
    try:
        for test in _recheck_tests(record):
            if on_test is not None:
                on_test(test.name)
            ctx = TestContext(backend, info, chosen, t0, chosen.budget_s(test.name))
            executed = execute(test, ctx)
            results.append(executed.result)
            if executed.card_lost:
                break
    finally:
        with contextlib.suppress(DeviceError):
            backend.stop_telemetry()
    return results


# --- memory ---------------------------------------------------------------------------------------


def _bits(mismatch: MemoryMismatch) -> str:
    bits = mismatch.bits
    return f"bit{'s' if len(bits) != 1 else ''} {', '.join(map(str, bits)) or 'none'}"


def memory_error_text(mismatches: int, errors: Sequence[MemoryMismatch]) -> str:
    """'8 word(s) read back wrong (2 addresses), first at address 0x1F000 bit 3 (pattern ...);
    also at ...': the count is of wrong reads, as the memtest verification counts them."""
    text = f"{mismatches} word(s) read back wrong"
    if not errors:
        return text
    # The memtest keeps the first MAX_REPORTED addresses: beyond that the count is a floor.
    capped = "+" if len(errors) >= MAX_REPORTED else ""
    text += f" ({len(errors)}{capped} address{'es' if len(errors) != 1 else ''})"
    first, *more = errors
    text += f", first at address 0x{first.address:X} {_bits(first)} (pattern {first.pattern})"
    if more:
        text += "; also at " + ", ".join(
            f"0x{e.address:X} {_bits(e)}" for e in more[: MAX_NAMED - 1]
        )
        if len(more) >= MAX_NAMED:
            text += f" and {len(more) - MAX_NAMED + 1} more address(es)"
    return text


def _memory_check(memtest: TestResult | None) -> Check:
    if memtest is None:
        return _unproven("memory", "the memory test did not run: the card was lost before it")
    failed = [v for v in memtest.verifications if not v.passed]
    if failed:
        mismatches = sum(v.mismatches for v in failed)
        errors = sorted((e for v in failed for e in v.memory_errors), key=lambda e: e.address)
        return Check(
            "memory",
            "fail",
            memory_error_text(mismatches, errors),
            action="the card has memory errors: do not accept it as graded",
        )
    if memtest.status != "passed":
        return _unproven(
            "memory",
            f"the memory test did not finish ({memtest.status}: {memtest.message or 'no reason'})",
            action="free the card (no other process on it) and run the re-check again",
        )
    return _coverage_check(memtest)


def _coverage_check(memtest: TestResult) -> Check:
    p = memtest.parameters
    coverage, tested, done = p.get("coverage"), p.get("tested_bytes"), p.get("patterns_done")
    if not isinstance(coverage, float) or not isinstance(tested, int):
        return _unproven("memory", "the memory test did not say how much memory it covered")
    if not isinstance(done, int) or done < RECHECK_PATTERNS:
        return _unproven("memory", f"only {done} of {RECHECK_PATTERNS} patterns were run")
    if coverage < MEMTEST_COVERAGE_TARGET:
        return _unproven(
            "memory",
            f"only {coverage:.1%} of memory could be tested ({_gib(tested)}; target "
            f"{MEMTEST_COVERAGE_TARGET:.0%}): the rest is in use, and untested words prove nothing",
            action="stop every other process on the card and run the re-check again",
        )
    return Check(
        "memory",
        "pass",
        f"every word of {_gib(tested)} ({coverage:.1%} of memory) read back right under "
        f"{done} patterns and their inverses",
    )


# --- compute --------------------------------------------------------------------------------------


def _wrong_text(test: TestResult) -> str:
    """'fp32: 12 wrong result(s), first at SM 3 (block 3, thread 40)' for a failed test."""
    failed = [v for v in test.verifications if not v.passed]
    mismatches = sum(v.mismatches for v in failed)
    wrong = [w for v in failed for w in v.wrong_results]
    where = ", ".join(
        w.location + (f" ({w.detail})" if w.detail else "") for w in wrong[:MAX_NAMED]
    )
    return f"{test.name}: {mismatches} wrong result(s)" + (f", first at {where}" if where else "")


def _compute_check(
    record: RunRecord, tests: Sequence[TestResult], measured: Sequence[MetricRecheck]
) -> Check:
    problems: list[str] = []
    unknowns: list[str] = []
    ran = {t.name for t in tests}
    for test in tests:
        if test.name not in COMPUTE_TESTS:
            continue
        if any(not v.passed for v in test.verifications):
            problems.append(_wrong_text(test))
        elif test.status == "skipped":
            problems.append(
                f"{test.name}: the report measured it, this card cannot run it ({test.message})"
            )
        elif test.status != "passed":
            unknowns.append(f"{test.name} {test.status}: {test.message or 'no reason'}")
    unknowns += [
        f"{name} not run (the card was lost)"
        for name in COMPUTE_TESTS
        if name not in ran and (name != "fp16_tensor" or _reported(record, name))
    ]
    off = [m for m in measured if m.verdict != "consistent"]
    if off:
        problems.append(
            f"{len(off)} of {len(measured)} metrics measure differently now "
            f"({_worst(off)} < {RECHECK_ALPHA}): {', '.join(m.metric for m in off)}"
        )
    if problems:
        return Check("compute", "fail", "; ".join(problems + unknowns))
    if not measured:
        unknowns.append("no metric of the report could be measured again")
    if unknowns:
        return _unproven("compute", "; ".join(unknowns))
    return Check(
        "compute",
        "pass",
        f"every result verified; {len(measured)} metrics consistent with the report "
        f"(largest deviation: {_worst(measured)} >= {RECHECK_ALPHA})",
    )


# --- the PCIe copies ------------------------------------------------------------------------------
_LINK_PROBLEMS = ("pcie_copy_corrupt", "pcie_copy_slow")


def _link_findings(record: RunRecord, test: TestResult) -> list[Finding]:
    """What the grade finds in these copies: the link, the rates, any byte that arrived wrong."""
    found = pcie_findings(replace(record, tests=(test,)))
    return found + [pcie_corrupt_finding(test, v) for v in test.verifications if not v.passed]


def _rates(test: TestResult) -> str:
    medians = [
        f"{m.name.removesuffix('_gbs')} {statistics.median(m.values):.1f} GB/s"
        for m in test.metrics
        if m.values
    ]
    return f"{', '.join(medians)} on {describe(*link_of_test(test))}"


def _link_check(record: RunRecord, now: TestResult | None) -> Check:
    reported = record.test(PCIE_TEST)
    if reported is None or not _reported(record, PCIE_TEST):
        return Check("link", "n/a", "the report has no PCIe copy measurement")
    if now is None:
        return _unproven("link", "pcie not run (the card was lost)")
    if now.status not in ("passed", "failed"):
        return _unproven("link", f"pcie {now.status}: {now.message or 'no reason'}")
    before = {f.code for f in _link_findings(record, reported)}
    new = [f for f in _link_findings(record, now) if f.code not in before]
    versus = f"here {_rates(now)}; the report {_rates(reported)}"
    problems = [f.message for f in new if f.code in _LINK_PROBLEMS]
    if problems:
        return Check(
            "link",
            "fail",
            f"{'; '.join(problems)} ({versus}; this host's slot or "
            "riser slows copies too: try another slot before blaming the card)",
        )
    unjudged = [f.message for f in new if f.code not in _LINK_PROBLEMS]
    if unjudged:
        return _unproven("link", f"{'; '.join(unjudged)} ({versus})")
    return Check("link", "pass", f"every copied byte verified; {versus}")


def _reported(record: RunRecord, name: str) -> bool:
    test = record.test(name)
    return test is not None and any(m.values for m in test.metrics)


def _worst(metrics: Sequence[MetricRecheck]) -> str:
    worst = max(metrics, key=lambda m: (abs(m.z), -m.p_adjusted))
    return (
        f"worst {worst.metric} {worst.ratio:.3f}x the report, z = {worst.z:+.1f}, "
        f"Holm p = {worst.p_adjusted:.2g}"
    )


def compare_metrics(record: RunRecord, tests: Sequence[TestResult]) -> list[MetricRecheck]:
    """Each re-measured compute metric against the report's, two-sided, Holm over all of them."""
    spreads = {
        f"{c.test}.{c.metric}": c.reference.spread
        for c in (record.analysis.comparisons if record.analysis else ())
        if c.reference is not None
    }
    rows: list[tuple[str, str, float, float, float, float]] = []
    for result in tests:
        reported_test = record.test(result.name)
        if result.name not in COMPUTE_TESTS or reported_test is None:
            continue
        for metric in result.metrics:
            reported = reported_test.metric(metric.name)
            if (result.name, metric.name) in NOT_JUDGED or not metric.values:
                continue
            if reported is None or not reported.values:
                continue
            key = f"{result.name}.{metric.name}"
            was, now = stats.estimate(reported.values), stats.estimate(metric.values)
            spread = max(
                was.standard_error, spreads.get(key, 0.0), RECHECK_MIN_SPREAD_REL * abs(was.value)
            )
            z = stats.compare(now, was.value, spread, metric.higher_is_better).z
            two_sided = float(2 * sps.norm.sf(abs(z))) if math.isfinite(z) else 0.0
            rows.append((key, metric.unit, was.value, now.value, z, two_sided))
    adjusted = stats.holm([r[5] for r in rows])
    return [
        MetricRecheck(
            key,
            unit,
            was,
            now,
            z,
            p_adj,
            "consistent" if p_adj >= RECHECK_ALPHA else ("lower" if now < was else "higher"),
        )
        for (key, unit, was, now, z, _), p_adj in zip(rows, adjusted, strict=True)
    ]


def open_card(record: RunRecord, name: str, sim_card: str | None) -> Backend:
    """The card to re-check: the one with the report's UUID (or serial), else the report's index."""
    from gpuhealth.measure.backends import DEMO_CARD, list_devices, open_backend

    if name == "sim" or sim_card is not None:
        return open_backend("sim", 0, sim_card or DEMO_CARD)
    wanted = record.identity
    cards = list_devices(name)  # type: ignore[arg-type]  # auto or cuda, checked by the CLI
    index = next((c.index for c in cards if wanted.uuid and c.uuid == wanted.uuid), None)
    if index is None:
        index = next((c.index for c in cards if wanted.serial and c.serial == wanted.serial), None)
    if index is None:
        index = wanted.index if wanted.index < len(cards) else 0
    return open_backend(name, index)  # type: ignore[arg-type]
