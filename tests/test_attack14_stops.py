"""Attack on issue 14: a stop (Ctrl-C, SIGTERM) or a crash at the memory clear.

Every test had its result, so nothing but the record's `complete` flag said that the run did not
finish; the judge does not read that flag, so a card whose memory was never cleared was graded A
and `gpuhealth resume` refused the record ("no test is missing"). Now the run is INCOMPLETE,
naming the clear, and resume runs the clear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from gpuhealth.judge.analysis import judge
from gpuhealth.judge.grading import load_policy
from gpuhealth.judge.profiles import builtin_profiles, match_profile
from gpuhealth.measure.backends.base import MEMORY_CLEAR_STEP
from gpuhealth.measure.backends.sim import SimBackend
from gpuhealth.measure.runner import (
    GradeOptions,
    close_journal,
    grade_card,
    read_journal,
    resume_card,
)
from gpuhealth.measure.stopping import StopFlag
from gpuhealth.models import RunRecord, TestResult, record_from_json
from gpuhealth.presets import preset

Sim = Callable[..., SimBackend]
QUICK = Path(__file__).resolve().parent / "data" / "current" / "sim-h100-quick.json"


def options(folder: Path) -> GradeOptions:
    return GradeOptions(preset=preset("quick"), policy=load_policy(), profile=None, out_dir=folder)


def reasons(record: RunRecord) -> list[str]:
    """Every reason's message, with those told as part of it."""
    assert record.grade is not None
    return [m for r in record.grade.reasons for m in (r.message, *r.also)]


def stopped_in_the_clear(backend: SimBackend, stop: StopFlag) -> None:
    """The stop arrives as the memory clear starts (its first call sees it)."""
    original = backend.begin_test

    def begin(name: str) -> None:
        if name == MEMORY_CLEAR_STEP:
            stop.request("interrupted (Ctrl-C)")
        original(name)

    backend.begin_test = begin  # type: ignore[method-assign]


def test_a_stop_during_the_clear_is_incomplete_and_resume_clears(sim: Sim, tmp_path: Path) -> None:
    stop, backend, folder = StopFlag(), sim(), tmp_path / "run"
    stopped_in_the_clear(backend, stop)
    first = grade_card(backend, options(folder), stop=stop).record
    assert all(t.status == "passed" for t in first.tests)
    assert not first.complete
    assert first.interrupted == "interrupted (Ctrl-C) during the memory clear"
    assert first.memory_clear is not None and first.memory_clear.status == "not_cleared"
    assert first.grade is not None and first.grade.letter == "INCOMPLETE"
    why = reasons(first)
    assert (
        "the run did not finish: interrupted (Ctrl-C) during the memory clear; the memory clear "
        "was not made: `gpuhealth resume RUN_DIR` runs it"
    ) in why, why
    # the journal on disk is what resume reads: it finishes the run with the clear only
    journal = read_journal(folder / "run.json")
    resumed = resume_card(sim(), journal, folder, options(folder)).record
    assert resumed.complete and resumed.interrupted is None
    assert resumed.memory_clear is not None and resumed.memory_clear.status == "cleared"
    assert [t.parameters for t in resumed.tests] == [t.parameters for t in first.tests]
    assert resumed.grade is not None and resumed.grade.letter == "A"
    assert any(
        c.name == "resumed" and c.message.startswith("the memory clear run at")
        for c in resumed.prechecks
    )


def test_a_stop_after_the_last_test_before_the_clear(sim: Sim, tmp_path: Path) -> None:
    stop = StopFlag()

    def progress(name: str, index: int, total: int, result: TestResult | None) -> None:
        if name == "soak" and result is not None:  # the last test has just finished
            stop.request("stopped by SIGTERM")

    record = grade_card(sim(), options(tmp_path / "run"), progress=progress, stop=stop).record
    assert all(t.status == "passed" for t in record.tests)
    assert not record.complete
    assert record.interrupted == "stopped by SIGTERM before the memory clear"
    assert record.grade is not None and record.grade.letter == "INCOMPLETE"


@pytest.fixture(scope="module")
def quick() -> RunRecord:
    return record_from_json(QUICK.read_text(encoding="utf-8"), str(QUICK))


def regraded(record: RunRecord) -> RunRecord:
    bare = replace(record, analysis=None, grade=None, rules=None, signature=None)
    return judge(bare, match_profile(bare.identity, builtin_profiles()), load_policy())


def test_a_writer_killed_before_the_clear_is_incomplete(quick: RunRecord) -> None:
    """The worker died after its last test's journal (no clear recorded): the supervisor closes
    the journal; every test is there, the clear is not, and that is no finished run."""
    assert quick.grade is not None and quick.grade.letter == "A"
    journal = replace(quick, memory_clear=None, complete=False, finished_at=None, grade=None)
    closed = close_journal(journal, "the worker was killed (SIGKILL)")
    graded = regraded(closed)
    assert graded.grade is not None and graded.grade.letter == "INCOMPLETE"
    assert (
        "the run did not finish: the worker was killed (SIGKILL); the memory clear was not made "
        "(no clear recorded): `gpuhealth resume RUN_DIR` runs it"
    ) in reasons(graded), reasons(graded)


def test_a_complete_record_and_a_record_a_test_left_open_get_no_extra_reason(
    quick: RunRecord,
) -> None:
    assert not any("did not finish" in m for m in reasons(regraded(quick)))
    open_test = tuple(
        replace(t, status="not_run", message="interrupted") if t.name == "soak" else t
        for t in quick.tests
    )
    stopped = regraded(replace(quick, tests=open_test, complete=False, interrupted="x"))
    messages = reasons(stopped)
    assert not any("did not finish" in m for m in messages), messages
