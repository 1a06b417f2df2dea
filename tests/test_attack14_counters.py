"""Attack on issue 14: NVLink and PCIe error counters that went down during the run.

Only a rise was judged, so counters reset between the reading before and the one after (nvidia-smi
nvlink -r, a driver reload, or a seller who wants the run's errors gone) read as "no errors during
the run": an A. The run's errors are unknown then; the check is listed as not made
(counters_incomplete: not A), naming each counter.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gpuhealth.judge.analysis import judge
from gpuhealth.judge.grading import load_policy
from gpuhealth.judge.profiles import builtin_profiles, match_profile
from gpuhealth.models import HealthCounters, NvLinkReading, RunRecord, record_from_json

QUICK = Path(__file__).resolve().parent / "data" / "current" / "sim-h100-quick.json"


def quick() -> RunRecord:
    return record_from_json(QUICK.read_text(encoding="utf-8"), str(QUICK))


def judged(record: RunRecord) -> RunRecord:
    bare = replace(record, analysis=None, grade=None, rules=None, signature=None)
    return judge(bare, match_profile(bare.identity, builtin_profiles()), load_policy())


def counters(record: RunRecord) -> tuple[HealthCounters, HealthCounters]:
    assert record.counters_before is not None and record.counters_after is not None
    return record.counters_before, record.counters_after


def incomplete_reason(record: RunRecord) -> str | None:
    assert record.grade is not None
    return next((r.message for r in record.grade.reasons if r.rule == "counters-incomplete"), None)


def test_pcie_error_counters_that_fell_are_not_zero_errors() -> None:
    record = quick()
    before, after = counters(record)
    assert before.pcie_errors is not None and after.pcie_errors is not None
    earlier = replace(before, pcie_errors={**before.pcie_errors, "bad_tlp": 40, "fatal": 2})
    reset = judged(replace(record, counters_before=earlier))
    assert reset.grade is not None and reset.grade.letter == "B"
    message = incomplete_reason(reset)
    assert message is not None
    assert "error counters reset during the run, their rise unknown (fatal, bad TLP)" in message


def test_nvlink_error_counters_that_fell_are_not_zero_errors() -> None:
    record = quick()
    before, after = counters(record)

    def links(replays: int) -> tuple[NvLinkReading, ...]:
        return tuple(NvLinkReading(n, True, 4, replays if n == 1 else 0, 0, 0, 0) for n in (0, 1))

    linked = replace(
        record,
        counters_before=replace(before, nvlink_status="read", nvlink=links(7)),
        counters_after=replace(after, nvlink_status="read", nvlink=links(0)),
    )
    reset = judged(linked)
    assert reset.grade is not None and reset.grade.letter == "B"
    message = incomplete_reason(reset)
    assert message is not None and "(NVLink 1 replay)" in message
    steady = replace(linked, counters_after=replace(after, nvlink_status="read", nvlink=links(7)))
    assert incomplete_reason(judged(steady)) is None


def test_counters_that_held_or_rose_are_judged_as_before() -> None:
    record = quick()
    assert incomplete_reason(judged(record)) is None
    _, after = counters(record)
    assert after.pcie_errors is not None
    rose = replace(
        record, counters_after=replace(after, pcie_errors={**after.pcie_errors, "lcrc": 3})
    )
    graded = judged(rose)
    assert incomplete_reason(graded) is None
    assert graded.grade is not None
    assert any("(LCRC +3)" in r.message for r in graded.grade.reasons), graded.grade.reasons
