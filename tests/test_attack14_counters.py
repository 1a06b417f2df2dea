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


def test_an_nvlink_status_relabelled_to_hide_its_links_is_evidence_missing() -> None:
    """A link down and flit CRC errors (D by the default policy): relabelled "none" or
    "unreadable" in both readings, nvlink_findings judged nothing (A or B); the links it still
    lists now make it a claim without its evidence."""
    from gpuhealth.judge.evidence import evidence_problems

    record = quick()
    before, after = counters(record)

    def links(crc: int) -> tuple[NvLinkReading, ...]:
        return (NvLinkReading(0, True, 4, 0, 0, crc, 0), NvLinkReading(1, False, 4, 0, 0, 0, 0))

    read = replace(
        record,
        counters_before=replace(before, nvlink_status="read", nvlink=links(0)),
        counters_after=replace(after, nvlink_status="read", nvlink=links(9)),
    )
    graded = judged(read)
    assert graded.grade is not None and graded.grade.letter == "D"
    assert [p.problem for p in evidence_problems(read)] == []
    for status in ("none", "unreadable"):
        hidden = replace(
            read,
            counters_before=replace(read.counters_before, nvlink_status=status),  # type: ignore[type-var]
            counters_after=replace(read.counters_after, nvlink_status=status),  # type: ignore[type-var]
        )
        assert [p.problem for p in evidence_problems(hidden)] == [
            f"{where}: NVLink status {status}, but 2 link(s) listed with their state and counters"
            for where in ("counters_before", "counters_after")
        ]
        regraded = judged(hidden)
        assert regraded.grade is not None and regraded.grade.letter == "INCOMPLETE"
    gone = replace(read, counters_after=replace(after, nvlink_status="none", nvlink=()))
    assert [p.problem for p in evidence_problems(gone)] == []  # a card with no NVLink
