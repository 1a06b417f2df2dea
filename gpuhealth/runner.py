"""Grade one card: identify, pre-check, run the stress tests, journal, judge, sign, write reports.

The run record is journaled to run.json (atomically) after every test, so a crash, Ctrl-C or a
lost card leaves a readable record of everything measured so far, never nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from gpuhealth import __version__
from gpuhealth.analysis import judge
from gpuhealth.backends.base import Backend
from gpuhealth.errors import DeviceLost
from gpuhealth.grading import Policy
from gpuhealth.models import (
    SCHEMA_VERSION,
    HealthCounters,
    Precheck,
    ProcessInfo,
    RunRecord,
    TestResult,
    record_to_json,
)
from gpuhealth.presets import Preset
from gpuhealth.profiles import Profile, builtin_profiles, match_profile
from gpuhealth.report import write_reports
from gpuhealth.signing import SigningKey, sign_record
from gpuhealth.stresstests import all_tests
from gpuhealth.stresstests.base import TestContext, execute

ProgressCallback = Callable[[str, int, int, TestResult | None], None]
"""Called with (test name, index, total, result or None when starting)."""


DEFAULT_RUNS_DIR = Path("gpuhealth-runs")


@dataclass(frozen=True)
class GradeOptions:
    preset: Preset
    policy: Policy
    profile: Profile | None  # None: matched by the card's model
    out_dir: Path | None  # None: gpuhealth-runs/<run id>
    allow_busy: bool = False
    # False: nothing is journaled or written (evaluations that grade thousands of sim cards).
    write_files: bool = True
    # Signs the judged record before run.json, report.html and report.md are written (all three
    # then carry the signature). None: the reports are unsigned.
    signer: SigningKey | None = None


@dataclass(frozen=True)
class GradedCard:
    record: RunRecord
    out_dir: Path


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_id_for(started_at: str, serial: str | None, index: int) -> str:
    stamp = started_at.replace("-", "").replace(":", "").replace("+0000", "Z")[:15]
    return f"{stamp}-{serial or f'gpu{index}'}"


def journal(record: RunRecord, out_dir: Path) -> None:
    """Write run.json atomically: the old file stays until the new one is complete."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".run.json.", dir=out_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(record_to_json(record))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out_dir / "run.json")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prechecks(processes: tuple[ProcessInfo, ...], allow_busy: bool) -> tuple[Precheck, ...]:
    if not processes:
        return (Precheck("other processes", "ok", "no other process holds the card"),)
    names = ", ".join(f"{p.pid} ({p.name or 'unknown'})" for p in processes)
    if allow_busy:
        return (
            Precheck(
                "other processes",
                "warn",
                f"other processes hold the card: {names}; results may be contaminated",
            ),
        )
    return (
        Precheck(
            "other processes",
            "fail",
            f"refused: other processes hold the card: {names} "
            "(stop them, or pass --allow-busy to measure anyway)",
        ),
    )


def grade_card(
    backend: Backend, options: GradeOptions, progress: ProgressCallback | None = None
) -> GradedCard:
    """Run the whole suite on one card; judge, write and return its record."""
    t0 = backend.clock_s()
    started_at = utc_now()
    identity = backend.identity()
    record = RunRecord(
        schema_version=SCHEMA_VERSION,
        tool_version=__version__,
        run_id=run_id_for(started_at, identity.serial, identity.index),
        started_at=started_at,
        host=socket.gethostname(),
        backend=backend.name,
        preset=options.preset.name,
        identity=identity,
    )
    out_dir = options.out_dir or DEFAULT_RUNS_DIR / record.run_id
    profile = options.profile or match_profile(identity, builtin_profiles())
    counters_before = backend.counters()
    processes = backend.processes()
    checks = prechecks(processes, options.allow_busy)
    record = replace(record, counters_before=counters_before, processes=processes, prechecks=checks)
    tests: list[TestResult] = []
    interrupted: str | None = None
    lost = False
    if any(c.status == "fail" for c in checks):
        interrupted = checks[0].message
    else:
        journal_dir = out_dir if options.write_files else None
        if journal_dir:
            journal(record, journal_dir)
        tests, lost, interrupted = _run_tests(backend, options, t0, record, journal_dir, progress)
    record = _close(backend, record, tests, lost, interrupted, t0)
    record = judge(record, profile, options.policy)
    if options.signer is not None:
        record = sign_record(record, options.signer)
    if options.write_files:
        write_reports(record, out_dir)
    return GradedCard(record, out_dir)


def _run_tests(
    backend: Backend,
    options: GradeOptions,
    t0: float,
    record: RunRecord,
    journal_dir: Path | None,
    progress: ProgressCallback | None,
) -> tuple[list[TestResult], bool, str | None]:
    info = backend.device_info()
    suite = all_tests()
    tests: list[TestResult] = []
    backend.start_telemetry(options.preset.telemetry_interval_s)
    try:
        for index, test in enumerate(suite):
            if progress:
                progress(test.name, index, len(suite), None)
            ctx = TestContext(backend, info, options.preset, t0, options.preset.budget_s(test.name))
            executed = execute(test, ctx)
            tests.append(executed.result)
            if progress:
                progress(test.name, index, len(suite), executed.result)
            if journal_dir:
                journal(replace(record, tests=tuple(tests)), journal_dir)
            if executed.card_lost:
                return tests, True, f"card lost during {test.name}: {executed.result.message}"
    except KeyboardInterrupt:
        return tests, False, "interrupted (Ctrl-C) before every test had run"
    finally:
        with contextlib.suppress(DeviceLost):  # nothing left to stop on a card that is gone
            backend.stop_telemetry()
    return tests, False, None


def _close(
    backend: Backend,
    record: RunRecord,
    tests: list[TestResult],
    lost: bool,
    interrupted: str | None,
    t0: float,
) -> RunRecord:
    """Fill in what did not run, the counters after, Xid events, and the times."""
    done = {t.name for t in tests}
    for test in all_tests():
        if test.name not in done:
            tests.append(
                TestResult(name=test.name, status="not_run", message=interrupted or "not started")
            )
    counters_after: HealthCounters | None = None
    xids = record.xid_events
    if not lost:
        try:
            counters_after = backend.counters()
        except DeviceLost:
            lost = True
    with contextlib.suppress(DeviceLost):  # the events seen so far are kept
        xids = xids + tuple(replace(x, t_s=round(x.t_s - t0, 4)) for x in backend.xid_events())
    return replace(
        record,
        tests=tuple(tests),
        counters_after=counters_after,
        xid_events=xids,
        complete=interrupted is None and not lost,
        interrupted=interrupted,
        finished_at=utc_now(),
        wall_time_s=round(backend.clock_s() - t0, 3),
    )
