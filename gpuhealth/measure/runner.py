"""Grade one card: identify, pre-check, run the stress tests, journal, judge, sign, write reports.

The run record is journaled to run.json (atomically, fsync'ed) after every test, so a crash,
Ctrl-C or a lost card leaves a readable record of everything measured so far, never nothing.

A stop (SIGTERM, Ctrl-C, the fleet supervisor: a StopFlag) is honoured at the next backend call:
the test in progress is abandoned (a test cut short is not judged) and recorded as not run, the
record closed as INCOMPLETE with `interrupted` saying why. `resume_card` runs the tests a record
is missing on the same card (same serial and UUID) and judges the whole record again.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

from gpuhealth import __version__
from gpuhealth.atomicfile import write_atomic
from gpuhealth.certificate.keys import SigningKey
from gpuhealth.certificate.report import write_reports
from gpuhealth.certificate.signing import sign_record
from gpuhealth.errors import DeviceLost, EnvironmentUnusable, InputError, OutputUnwritable
from gpuhealth.judge.analysis import judge
from gpuhealth.judge.grading import Policy
from gpuhealth.judge.profiles import Profile, builtin_profiles, match_profile
from gpuhealth.judge.readiness import readiness_items
from gpuhealth.measure.backends.base import MEMORY_CLEAR_STEP, Backend
from gpuhealth.measure.memclear import CLEAR_BUDGET_S, clear_memory, not_cleared
from gpuhealth.measure.runfolder import inside, refuse_existing, rescue
from gpuhealth.measure.stopping import StopFlag, StopRequested, _StoppableBackend
from gpuhealth.measure.stresstests import all_tests
from gpuhealth.measure.stresstests.base import Outcome, TestContext, execute
from gpuhealth.models import (
    SCHEMA_VERSION,
    CardIdentity,
    HealthCounters,
    MemoryClear,
    Metric,
    Precheck,
    ProcessInfo,
    RunRecord,
    TelemetrySample,
    TestResult,
    Verification,
    record_from_json,
    record_to_json,
)
from gpuhealth.presets import Preset, preset, with_soak

ProgressCallback = Callable[[str, int, int, TestResult | None], None]
"""Called with (test name, index, total, result or None when starting); the memory clear is the
last step (MEMORY_CLEAR_STEP), its result a TestResult that only the progress display sees."""
LiveCallback = Callable[[TelemetrySample], None]
"""Called with the newest telemetry sample during a test (stresstests.base.LIVE_WALL_S)."""


DEFAULT_RUNS_DIR = Path("gpuhealth-runs")
RESUME_GAP_S = 60.0  # resumed tests' times start this long after the record's last test ended


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
    # The results database to look the card up in before judging (card_history.py); "" is the
    # default database, None: not looked up (the record's stored_history stays as it was).
    history_db: str | None = None
    # True: a run folder that holds a record already is written over (--force)
    force: bool = False
    # --tests: only these tests run (None: all); the others are recorded not run, not selected.
    tests: tuple[str, ...] | None = None
    # --soak: the soak length asked for, recorded (the preset already holds it: with_soak)
    soak_s: float | None = None
    # False (--no-clear): the memory is not cleared after the tests (the certificate says so)
    clear: bool = True


@dataclass(frozen=True)
class GradedCard:
    record: RunRecord
    out_dir: Path


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


RUN_ID_SERIAL_CHARS = 64  # a run id is a folder name: bounded whatever the card reports
RUN_ID_TAG_BYTES = 2  # 4 hex digits: 65536 runs of one card per second
RUN_ID_UUID_CHARS = 8  # hex digits of the UUID: tells apart cards that share a serial


def run_id_for(started_at: str, serial: str | None, index: int, uuid: str | None = None) -> str:
    """A run id unique per card and run, safe as a file name: the start time, the serial, the
    GPU index, the UUID's first hex digits and a random tag (two grades of one card can start
    within one second), in [A-Za-z0-9._-] (no "/", no ".."), bounded."""
    stamp = started_at.replace("-", "").replace(":", "").replace("+0000", "Z")[:15]
    parts = [stamp, (serial or "noserial")[:RUN_ID_SERIAL_CHARS], f"gpu{index}"]
    digits = "".join(c for c in (uuid or "").removeprefix("GPU-") if c.isascii() and c.isalnum())
    if digits:
        parts.append(digits[:RUN_ID_UUID_CHARS])
    parts.append(secrets.token_hex(RUN_ID_TAG_BYTES))
    safe = [
        "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in p) for p in parts
    ]
    return "-".join(p.replace("..", "__").lstrip(".") or "_" for p in safe)


def journal(record: RunRecord, out_dir: Path) -> None:
    """Write run.json atomically (temp file, fsync, rename, fsync of the folder): the old file
    stays until the new one is complete."""
    path = out_dir / "run.json"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(path, record_to_json(record).encode("utf-8"), sync_folder=True)
    except OSError as exc:
        raise OutputUnwritable(path, exc, "the run stops") from exc


def _first_journal(record: RunRecord, out_dir: Path) -> None:
    try:
        journal(record, out_dir)
    except OutputUnwritable as error:
        raise OutputUnwritable(error.path, _cause(error), "nothing was measured") from error


def _cause(error: BaseException) -> OSError:
    cause = error.__cause__
    return cause if isinstance(cause, OSError) else OSError(str(error))


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


def step_budget_s(chosen: Preset, name: str) -> float:
    """A step's time budget: a test's from its preset; the memory clear's own."""
    return CLEAR_BUDGET_S if name == MEMORY_CLEAR_STEP else chosen.budget_s(name)


def grade_card(
    backend: Backend,
    options: GradeOptions,
    progress: ProgressCallback | None = None,
    stop: StopFlag | None = None,
    on_open: Callable[[Path], None] | None = None,
    live: LiveCallback | None = None,
) -> GradedCard:
    """Run the whole suite on one card; judge, write and return its record.

    on_open is called with the run folder once it is known, before the first journal write."""
    t0 = backend.clock_s()
    started_at = utc_now()
    identity = backend.identity()
    record = RunRecord(
        schema_version=SCHEMA_VERSION,
        tool_version=__version__,
        run_id=run_id_for(started_at, identity.serial, identity.index, identity.uuid),
        started_at=started_at,
        host=socket.gethostname(),
        backend=backend.name,
        preset=options.preset.name,
        identity=identity,
    )
    # the run id holds the card's serial: a folder name is built from it, never concatenated
    out_dir = options.out_dir or inside(DEFAULT_RUNS_DIR, record.run_id)
    if options.write_files:
        refuse_existing(out_dir, options.force)
    if on_open is not None:
        on_open(out_dir)
    counters_before = backend.counters()
    processes = backend.processes()
    checks = prechecks(processes, options.allow_busy)
    record = replace(
        record,
        counters_before=counters_before,
        processes=processes,
        prechecks=checks,
        readiness=readiness_items(backend.settings(), counters_before, identity),
        tests_selected=options.tests,
        soak_duration_s=options.soak_s,
    )
    tests: list[TestResult] = []
    interrupted: str | None = None
    lost = False
    if any(c.status == "fail" for c in checks):
        interrupted = checks[0].message
        cleared = not_cleared(f"nothing ran: {interrupted}", identity.memory_total_bytes)
    else:
        journal_dir = out_dir if options.write_files else None
        if journal_dir:
            _first_journal(record, journal_dir)
        tests, lost, interrupted = _run_tests(
            backend, options, t0, record, journal_dir, progress, stop, live=live
        )
        cleared, lost, interrupted = _clear_and_end(
            backend, options, record, lost, interrupted, progress, stop
        )
    record = _close(
        backend, replace(record, memory_clear=cleared), tests, lost, interrupted, t0, t0
    )
    return finish(record, out_dir, options)


def _clear_and_end(
    backend: Backend,
    options: GradeOptions,
    record: RunRecord,
    lost: bool,
    interrupted: str | None,
    progress: ProgressCallback | None,
    stop: StopFlag | None,
) -> tuple[MemoryClear, bool, str | None]:
    """The memory clear, and how the run ended (lost, interrupted): a card lost in the clear is
    lost; a stop before or during it leaves the run interrupted, so that the record is not
    complete and `gpuhealth resume` runs the clear (a stopped clear is no finished run)."""
    cleared, lost_in_clear, stopped = _clear_step(
        backend, options, record, lost, interrupted, progress, stop
    )
    if lost_in_clear and not lost:
        return cleared, True, f"card lost during the memory clear: {cleared.note}"
    if stopped and interrupted is None and not lost:
        return cleared, False, stopped
    return cleared, lost, interrupted


def _clear_step(
    backend: Backend,
    options: GradeOptions,
    record: RunRecord,
    lost: bool,
    interrupted: str | None,
    progress: ProgressCallback | None,
    stop: StopFlag | None,
) -> tuple[MemoryClear, bool, str | None]:
    """The memory clear, the last step: also after a failed test, never on a lost card or after
    a stop (then the record says why not). Returns it, whether the card was lost in it, and the
    stop that kept it from running or finishing (None: none)."""
    total = record.identity.memory_total_bytes
    if not options.clear:
        return not_cleared("not cleared: --no-clear was given", total), False, None
    if lost:
        note = f"not cleared: {interrupted or 'the card was lost'}"
        return not_cleared(note, total), False, None
    why = stop.reason() if stop is not None else None
    if why:
        stopped = f"{why} before the memory clear"
        return not_cleared(f"not cleared: {stopped}", total), False, stopped
    worker = backend if stop is None else cast(Backend, _StoppableBackend(backend, stop))
    steps = _steps(options)
    if progress:
        progress(MEMORY_CLEAR_STEP, steps - 1, steps, None)
    started_s = backend.clock_s()
    lost_now = False
    stopped_in: str | None = None  # the stop that ended the clear
    try:
        cleared = clear_memory(worker, total)
    except StopRequested as stop_now:
        stopped_in = f"{stop_now.reason} during the memory clear"
        cleared = not_cleared(f"not cleared: {stopped_in}", total)
    except DeviceLost as error:
        cleared, lost_now = not_cleared(f"not cleared: {error.one_line()}", total), True
    if progress:
        status = {"cleared": "passed", "failed": "failed"}.get(cleared.status, "error")
        step = TestResult(
            name=MEMORY_CLEAR_STEP,
            status=status,  # type: ignore[arg-type]  # one of TestStatus by the table above
            duration_s=round(backend.clock_s() - started_s, 4) if not lost_now else 0.0,
            verifications=(
                Verification(
                    cleared.method,
                    cleared.status == "cleared",
                    cleared.bytes_cleared // 4,
                    cleared.words_not_zero,
                ),
            ),
            message=cleared.note,
        )
        progress(MEMORY_CLEAR_STEP, steps - 1, steps, step)
    return cleared, lost_now, stopped_in


def _planned(options: GradeOptions) -> list[str]:
    return [t.name for t in all_tests() if options.tests is None or t.name in options.tests]


def _steps(options: GradeOptions) -> int:
    """The steps the progress display counts: the selected tests and the memory clear."""
    return len(_planned(options)) + (1 if options.clear else 0)


def finish(record: RunRecord, out_dir: Path, options: GradeOptions) -> GradedCard:
    """Judge a closed record, sign it when there is a key, write run.json and the reports."""
    profile = options.profile or match_profile(record.identity, builtin_profiles())
    record = replace(record, analysis=None, grade=None, signature=None)
    if options.history_db is not None:
        from gpuhealth.store.database import stored_history_for

        record = replace(record, stored_history=stored_history_for(record, options.history_db))
    record = judge(record, profile, options.policy)
    if options.signer is not None:
        record = sign_record(record, options.signer)
    if options.write_files:
        _write_or_rescue(record, out_dir)
    return GradedCard(record, out_dir)


def _write_or_rescue(record: RunRecord, out_dir: Path) -> None:
    """Write the record and its reports; when the folder refuses (full disk, read-only), keep the
    record in the rescue folder and raise OutputUnwritable saying where it is."""
    try:
        write_reports(record, out_dir)
    except OSError as exc:
        kept = rescue(record.run_id, record_to_json(record).encode("utf-8"))
        raise OutputUnwritable(Path(exc.filename or out_dir), exc, kept) from exc


def _run_tests(
    backend: Backend,
    options: GradeOptions,
    run_start_s: float,
    record: RunRecord,
    journal_dir: Path | None,
    progress: ProgressCallback | None,
    stop: StopFlag | None = None,
    done: dict[str, TestResult] | None = None,
    live: LiveCallback | None = None,
) -> tuple[list[TestResult], bool, str | None]:
    """Run the selected tests of the suite (those not in `done`, whose results are kept in suite
    order); the tests not selected are left for _not_run."""
    info = backend.device_info()
    planned = set(_planned(options))
    suite = [test for test in all_tests() if test.name in planned]
    steps = _steps(options)
    tests: list[TestResult] = []
    worker = backend if stop is None else cast(Backend, _StoppableBackend(backend, stop))
    backend.start_telemetry(options.preset.telemetry_interval_s)
    try:
        for index, test in enumerate(suite):
            if done and test.name in done:
                tests.append(done[test.name])
                continue
            why = stop.reason() if stop is not None else None
            if why:
                return tests, False, f"{why} before {test.name}"
            if progress:
                progress(test.name, index, steps, None)
            budget = options.preset.budget_s(test.name)
            ctx = TestContext(worker, info, options.preset, run_start_s, budget, live=live)
            partial: list[TestResult] = []  # the last progress a long test journaled
            if journal_dir:
                ctx.checkpoint = _checkpointer(record, tests, journal_dir, test.name, partial)
            try:
                executed = execute(test, ctx)
            except StopRequested as stopped:
                # the test cut short is not a result, but what it measured so far is kept
                return tests + partial[-1:], False, f"{stopped.reason} during {test.name}"
            except OutputUnwritable as error:  # a checkpoint could not be journaled
                return tests + partial[-1:], False, f"stopped: {error.reason} during {test.name}"
            tests.append(executed.result)
            if progress:
                progress(test.name, index, steps, executed.result)
            if journal_dir:
                try:
                    journal(replace(record, tests=tuple(tests)), journal_dir)
                except OutputUnwritable as error:  # kept in memory: finish() rescues the record
                    return tests, False, f"stopped: {error.reason} after {test.name}"
            if executed.card_lost:
                return tests, True, f"card lost during {test.name}: {executed.result.message}"
    except KeyboardInterrupt:
        return tests, False, "interrupted (Ctrl-C) before every test had run"
    finally:
        with contextlib.suppress(DeviceLost):  # nothing left to stop on a card that is gone
            backend.stop_telemetry()
    return tests, False, None


def _checkpointer(
    record: RunRecord,
    tests: list[TestResult],
    journal_dir: Path,
    name: str,
    partial: list[TestResult],
) -> Callable[[TestContext, Outcome, tuple[Metric, ...]], None]:
    """Journal a long test's progress as a not-run test holding what it measured so far: if the
    worker dies, the record keeps it (and resume runs the test again)."""

    def save(ctx: TestContext, outcome: Outcome, extra: tuple[Metric, ...]) -> None:
        now_s = ctx.backend.clock_s()
        result = TestResult(
            name=name,
            status="not_run",
            started_s=round(ctx.started_s - ctx.run_start_s, 4),
            duration_s=round(now_s - ctx.started_s, 4),
            gpu_busy_s=round(ctx.busy_s, 6),
            time_budget_s=ctx.budget_s,
            parameters=dict(outcome.parameters),
            metrics=tuple(outcome.metrics) + extra,
            telemetry=tuple(ctx.telemetry),
            message=f"cut short after {now_s - ctx.started_s:.1f} s: what it measured until then",
        )
        partial[:] = [result]
        journal(replace(record, tests=(*tests, result)), journal_dir)

    return save


NOT_SELECTED = "not selected"  # the message of a test --tests left out (findings.py reads it)


def _not_run(
    tests: list[TestResult], why: str | None, selected: tuple[str, ...] | None = None
) -> list[TestResult]:
    """The tests with every test that did not run added, in suite order: those not selected
    (--tests) say so, the others why the run stopped."""
    done = {t.name for t in tests}
    # a test cut short keeps what it measured; its message says why it did not finish
    tests = [
        replace(t, message=f"{why}; {t.message}") if t.status == "not_run" and why else t
        for t in tests
    ]
    missing = [
        TestResult(
            name=test.name,
            status="not_run",
            message=NOT_SELECTED
            if selected is not None and test.name not in selected
            else why or "not started",
        )
        for test in all_tests()
        if test.name not in done
    ]
    order = {test.name: i for i, test in enumerate(all_tests())}
    return sorted(tests + missing, key=lambda t: order.get(t.name, len(order)))


def _close(
    backend: Backend,
    record: RunRecord,
    tests: list[TestResult],
    lost: bool,
    interrupted: str | None,
    run_start_s: float,
    session_start_s: float,
    wall_before_s: float = 0.0,
) -> RunRecord:
    """Fill in what did not run, the counters after, Xid events, and the times."""
    tests = _not_run(tests, interrupted, record.tests_selected)
    counters_after: HealthCounters | None = None
    xids = record.xid_events
    if not lost:
        try:
            counters_after = backend.counters()
        except DeviceLost:
            lost = True
    with contextlib.suppress(DeviceLost):  # the events seen so far are kept
        xids = xids + tuple(
            replace(x, t_s=round(x.t_s - run_start_s, 4)) for x in backend.xid_events()
        )
    return replace(
        record,
        tests=tuple(tests),
        counters_after=counters_after,
        xid_events=xids,
        complete=interrupted is None and not lost,
        interrupted=interrupted,
        finished_at=utc_now(),
        wall_time_s=round(wall_before_s + backend.clock_s() - session_start_s, 3),
    )


def close_journal(record: RunRecord, why: str) -> RunRecord:
    """Close a journal whose writer is gone (killed, hung, crashed): every test it had finished
    is kept, the others are marked not run, and the record is INCOMPLETE with `why`. A record
    the writer had already finished is returned as it is."""
    if record.finished_at is not None and record.grade is not None:
        return record
    return replace(
        record,
        tests=tuple(_not_run(list(record.tests), why, record.tests_selected)),
        complete=False,
        interrupted=why,
        finished_at=utc_now(),
        analysis=None,
        grade=None,
        signature=None,
    )


def read_journal(path: Path) -> RunRecord:
    """A run.json, validated: a truncated, corrupt or foreign file raises InputError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), None, f"cannot read the run record ({exc})") from exc
    if not text.strip():
        raise InputError(str(path), None, "empty file: expected a gpuhealth run record")
    return record_from_json(text, str(path))


def missing_tests(record: RunRecord) -> list[str]:
    """The tests a resume runs: those not run, and the one a lost card was in."""
    lost_in = None
    if record.interrupted and record.interrupted.startswith("card lost during "):
        lost_in = record.interrupted.removeprefix("card lost during ").split(":")[0]
    chosen = record.tests_selected
    wanted = [t.name for t in all_tests() if chosen is None or t.name in chosen]
    return [
        name
        for name in wanted
        if (found := record.test(name)) is None or found.status == "not_run" or name == lost_in
    ]


def clear_owed(record: RunRecord) -> bool:
    """An unfinished record whose memory clear did not run or finish (a stop or a crash before or
    during it): a resume with no test missing still runs the clear."""
    clear = record.memory_clear
    return not record.complete and (clear is None or clear.status == "not_cleared")


def same_card(recorded: RunRecord, found: CardIdentity, source: str) -> None:
    """Refuse another card: the serial and the UUID must be those of the record."""
    mine = recorded.identity
    for field in ("serial", "uuid"):
        want, got = getattr(mine, field), getattr(found, field)
        if want is not None and got is not None and want != got:
            raise InputError(
                source,
                f"identity.{field}",
                f"the record is of {field} {want}, but GPU {found.index} ({found.backend}) is "
                f"{field} {got}: another card (name the graded card with --backend/--sim-card)",
            )
    if recorded.backend != found.backend:
        raise InputError(
            source,
            "backend",
            f"the record was measured on the {recorded.backend} backend, not {found.backend}",
        )


def resume_card(
    backend: Backend,
    record: RunRecord,
    out_dir: Path,
    options: GradeOptions,
    progress: ProgressCallback | None = None,
    stop: StopFlag | None = None,
    on_open: Callable[[Path], None] | None = None,
    live: LiveCallback | None = None,
) -> GradedCard:
    """Run the tests an interrupted record is missing on the same card, then judge it all.

    on_open is called with the run folder once the card and the record are checked, before the
    record is journaled again."""
    source = str(out_dir / "run.json")
    same_card(record, backend.identity(), source)
    todo = set(missing_tests(record))
    if not todo and not clear_owed(record):
        raise InputError(source, None, "no test is missing: nothing to resume")
    checks = prechecks(backend.processes(), options.allow_busy)
    if any(c.status == "fail" for c in checks):
        raise EnvironmentUnusable(checks[0].message)
    options = replace(
        options,
        preset=with_soak(preset(record.preset), record.soak_duration_s),
        tests=record.tests_selected,
        soak_s=record.soak_duration_s,
    )
    kept = {t.name: t for t in record.tests if t.name not in todo}
    ended = max((t.started_s + t.duration_s for t in kept.values()), default=0.0)
    t0 = backend.clock_s()
    run_start = t0 - (ended + RESUME_GAP_S)
    note = Precheck(
        "resumed",
        "ok",
        f"{', '.join(sorted(todo)) or 'the memory clear'} run at {utc_now()} by gpuhealth resume "
        f"(after: {record.interrupted or 'an unfinished record'})",
    )
    extra = tuple(c for c in checks if c.status != "ok")
    base = replace(
        record,
        tests=tuple(kept.values()),
        prechecks=(*record.prechecks, note, *extra),
        memory_clear=None,
        complete=False,
        interrupted=None,
        finished_at=None,
        analysis=None,
        grade=None,
        signature=None,
    )
    journal_dir = out_dir if options.write_files else None
    if on_open is not None:
        on_open(out_dir)
    if journal_dir:
        journal(base, journal_dir)
    tests, lost, interrupted = _run_tests(
        backend, options, run_start, base, journal_dir, progress, stop, kept, live
    )
    cleared, lost, interrupted = _clear_and_end(
        backend, options, base, lost, interrupted, progress, stop
    )
    closed = _close(
        backend,
        replace(base, memory_clear=cleared),
        tests,
        lost,
        interrupted,
        run_start,
        t0,
        record.wall_time_s or 0.0,
    )
    return finish(closed, out_dir, options)
