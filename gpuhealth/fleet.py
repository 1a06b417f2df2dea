"""Grade several GPUs at once: one worker process per GPU, supervised by the parent.

Workers are started with the "spawn" context (CUDA must never be forked). Each grades its card
with runner.grade_card in its own run folder, journaling run.json after every test, writes its
pid to <run folder>/worker.pid while it runs, and reports what it does over a pipe of its own
(one worker dying mid-message cannot garble another's).

The parent (Supervisor.run):
- watchdog: a test must end within its time budget x watchdog_scale + watchdog_margin_s of wall
  time after it started (opening the card and the pre-checks: startup_s); a worker past that is
  killed (SIGKILL);
- a worker that dies (killed, crashed, hung and killed) leaves its journal: the parent closes it
  as INCOMPLETE, keeping every test it had finished, with `interrupted` saying why, then judges,
  signs and writes its reports; the other workers go on;
- stop(signum) (the CLI calls it on SIGTERM or Ctrl-C): a shared stop code tells every worker
  to stop at its next backend call and write its INCOMPLETE record; a worker that has not ended
  within stop_grace_s is killed and its journal closed by the parent. Workers ignore SIGINT (a
  terminal's Ctrl-C reaches the whole process group: the parent decides) and stop by themselves
  on SIGTERM or when the parent has died.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal

from gpuhealth.errors import EXIT_INCOMPLETE, GpuHealthError
from gpuhealth.models import TestResult
from gpuhealth.runner import (
    GradedCard,
    GradeOptions,
    StopFlag,
    close_journal,
    finish,
    grade_card,
    read_journal,
    stop_reason,
)

PID_FILE = "worker.pid"
WATCHDOG_SCALE = 1.5  # a test may run this many times its time budget (device time) ...
WATCHDOG_MARGIN_S = 60.0  # ... plus this much wall time (compiles, host-side checks, journaling)
STARTUP_S = 300.0  # opening the card (CUDA context, NVML), identity and pre-checks
STOP_GRACE_S = 60.0  # after a stop, a worker that has not ended by then is killed
POLL_S = 0.2

EventKind = Literal["open", "start", "end", "done", "failed"]


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to grade one card: picklable (paths, not loaded objects)."""

    gpu: int
    backend: str
    sim_card: str | None
    out_dir: Path | None  # None: gpuhealth-runs/<run id>
    preset: str
    policy_path: Path | None = None
    profile_path: Path | None = None
    allow_busy: bool = False
    key_path: Path | None = None  # sign with this key; None: unsigned
    history_db: str | None = None  # GradeOptions.history_db


@dataclass(frozen=True)
class FleetEvent:
    gpu: int
    kind: EventKind
    test: str | None = None
    index: int = 0
    total: int = 0
    status: str | None = None
    duration_s: float | None = None
    message: str | None = None


@dataclass(frozen=True)
class CardOutcome:
    """One GPU's end: its graded record, or why there is none (the card was never identified)."""

    gpu: int
    graded: GradedCard | None
    error: str | None = None
    exit_code: int = EXIT_INCOMPLETE


def options_for(spec: WorkerSpec) -> GradeOptions:
    from gpuhealth.grading import load_policy
    from gpuhealth.keys import load_key
    from gpuhealth.presets import preset
    from gpuhealth.profiles import load_profile

    return GradeOptions(
        preset=preset(spec.preset),
        policy=load_policy(spec.policy_path),
        profile=load_profile(spec.profile_path) if spec.profile_path else None,
        out_dir=spec.out_dir,
        allow_busy=spec.allow_busy,
        signer=load_key(spec.key_path) if spec.key_path else None,
        history_db=spec.history_db,
    )


def _worker(spec: WorkerSpec, conn: Connection, stop_code: Any, parent_pid: int) -> None:
    """A worker process's body: grade one card, tell the parent every step."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = StopFlag(stop_code, parent_pid)
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop.request(stop_reason(signum)))
    pid_file: Path | None = None

    def send(*message: object) -> None:
        with contextlib.suppress(OSError):  # the parent is gone: the stop flag will see it
            conn.send(message)

    try:
        from gpuhealth.backends import open_backend

        options = options_for(spec)
        backend = open_backend(spec.backend, spec.gpu, spec.sim_card)  # type: ignore[arg-type]

        def opened(out_dir: Path) -> None:
            nonlocal pid_file
            out_dir.mkdir(parents=True, exist_ok=True)
            pid_file = out_dir / PID_FILE
            pid_file.write_text(f"{os.getpid()}\n", encoding="ascii")
            send("open", str(out_dir))

        def progress(test: str, index: int, total: int, result: TestResult | None) -> None:
            if result is None:
                send("start", test, index, total, options.preset.budget_s(test))
            else:
                send("end", test, index, total, result.status, result.duration_s)

        try:
            graded = grade_card(backend, options, progress, stop, opened)
        finally:
            backend.close()
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
        send("done", str(graded.out_dir))
    except GpuHealthError as error:
        send("error", error.one_line(), error.exit_code)
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
        conn.close()


@dataclass
class _Worker:
    spec: WorkerSpec
    process: BaseProcess
    conn: Connection | None
    deadline: float
    out_dir: Path | None = None
    test: str | None = None
    last: str | None = None  # the last test that ended
    budget_s: float = 0.0
    started: float = 0.0
    done_dir: Path | None = None
    error: tuple[str, int] | None = None
    killed_why: str | None = None
    outcome: CardOutcome | None = None
    messages: list[tuple[object, ...]] = field(default_factory=list)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """Runs one worker per GPU and supervises them; run() returns one outcome per GPU."""

    def __init__(
        self,
        specs: list[WorkerSpec],
        on_event: Callable[[FleetEvent], None] | None = None,
        *,
        watchdog_scale: float = WATCHDOG_SCALE,
        watchdog_margin_s: float = WATCHDOG_MARGIN_S,
        startup_s: float = STARTUP_S,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.specs = specs
        self.on_event = on_event
        self.watchdog_scale = watchdog_scale
        self.watchdog_margin_s = watchdog_margin_s
        self.startup_s = startup_s
        self.stop_grace_s = stop_grace_s
        self._context = multiprocessing.get_context("spawn")
        self._stop_code: Any = self._context.Value("i", 0, lock=False)
        self._stop_deadline: float | None = None
        self._workers: list[_Worker] = []
        self._options: dict[int, GradeOptions] = {}

    # --- control ------------------------------------------------------------------------------
    def stop(self, signum: int = int(signal.SIGTERM)) -> None:
        """Ask every worker to stop (safe from a signal handler). A second call stops waiting."""
        if self._stop_code.value:
            self._stop_deadline = time.monotonic()
            return
        self._stop_code.value = int(signum)
        self._stop_deadline = time.monotonic() + self.stop_grace_s

    def pids(self) -> dict[int, int | None]:
        """GPU index → its worker's pid."""
        return {w.spec.gpu: w.process.pid for w in self._workers}

    # --- the loop -------------------------------------------------------------------------------
    def run(self) -> list[CardOutcome]:
        now = time.monotonic()
        for spec in self.specs:
            receive, send = self._context.Pipe(duplex=False)
            process = self._context.Process(
                target=_worker,
                args=(spec, send, self._stop_code, os.getpid()),
                name=f"gpuhealth-gpu{spec.gpu}",
            )
            process.start()
            send.close()
            self._workers.append(_Worker(spec, process, receive, now + self.startup_s))
        try:
            while any(w.outcome is None for w in self._workers):
                self._step()
        finally:
            for w in self._workers:  # only if the parent itself failed: no orphans
                if w.process.is_alive():
                    w.process.kill()
                    w.process.join()
        return [w.outcome for w in self._workers if w.outcome is not None]

    def _step(self) -> None:
        running = [w for w in self._workers if w.outcome is None]
        waitables: list[Any] = [w.conn for w in running if w.conn is not None]
        waitables += [w.process.sentinel for w in running]
        wait(waitables, timeout=POLL_S)
        for w in running:
            self._read(w)
            if not w.process.is_alive() and w.conn is None:
                w.process.join()
                w.outcome = self._reap(w)
                self._emit(w, "done" if w.done_dir else "failed", message=self._failure(w))
        now = time.monotonic()
        for w in running:
            if w.outcome is not None or not w.process.is_alive() or w.killed_why:
                continue
            if self._stop_deadline is not None and now >= self._stop_deadline:
                why = stop_reason(int(self._stop_code.value))
                self._kill(w, f"{why}; the worker did not stop within {self.stop_grace_s:.0f} s")
            elif now >= w.deadline:
                where = w.test or "start-up"
                self._kill(
                    w,
                    f"watchdog: no progress in {where} for {now - w.started:.0f} s (limit: "
                    f"time budget {w.budget_s:.0f} s x {self.watchdog_scale:g} + "
                    f"{self.watchdog_margin_s:.0f} s); the worker was killed",
                )

    def _kill(self, w: _Worker, why: str) -> None:
        w.killed_why = why
        w.process.kill()

    def _read(self, w: _Worker) -> None:
        """Every message waiting on a worker's pipe; at its end (EOF) the pipe is closed."""
        while w.conn is not None:
            try:
                if not w.conn.poll():
                    if w.process.is_alive():
                        return
                    # dead: poll() once more is EOF or a last message
                    if not w.conn.poll(0.05):
                        raise EOFError
                message = w.conn.recv()
            except (EOFError, OSError):
                w.conn.close()
                w.conn = None
                return
            self._handle(w, message)

    def _handle(self, w: _Worker, message: tuple[Any, ...]) -> None:
        now = time.monotonic()
        kind = message[0]
        if kind == "open":
            w.out_dir = Path(message[1])
            w.deadline = now + self.startup_s
            self._emit(w, "open", message=str(w.out_dir))
        elif kind == "start":
            _, w.test, index, total, w.budget_s = message
            w.started = now
            w.deadline = now + w.budget_s * self.watchdog_scale + self.watchdog_margin_s
            self._emit(w, "start", test=w.test, index=index, total=total)
        elif kind == "end":
            _, test, index, total, status, duration = message
            w.test, w.last, w.budget_s, w.started = None, test, 0.0, now
            w.deadline = now + self.watchdog_margin_s
            self._emit(
                w, "end", test=test, index=index, total=total, status=status, duration_s=duration
            )
        elif kind == "done":
            w.done_dir = Path(message[1])
        elif kind == "error":
            w.error = (str(message[1]), int(message[2]))

    def _emit(self, w: _Worker, kind: EventKind, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event(FleetEvent(w.spec.gpu, kind, **fields))

    def _failure(self, w: _Worker) -> str | None:
        if w.outcome is not None and w.outcome.graded is not None:
            return w.outcome.graded.record.interrupted
        return w.outcome.error if w.outcome else None

    def _why_dead(self, w: _Worker) -> str:
        if w.killed_why:
            return w.killed_why
        if w.error:
            return w.error[0]
        where = f"during {w.test}" if w.test else f"after {w.last}" if w.last else "at start-up"
        return f"worker process died ({_describe_exit(w.process.exitcode)}) {where}"

    def _options_for(self, spec: WorkerSpec) -> GradeOptions:
        if spec.gpu not in self._options:
            self._options[spec.gpu] = options_for(spec)
        return self._options[spec.gpu]

    def _reap(self, w: _Worker) -> CardOutcome:
        gpu = w.spec.gpu
        if w.done_dir is not None:
            try:
                record = read_journal(w.done_dir / "run.json")
                return CardOutcome(gpu, GradedCard(record, w.done_dir))
            except GpuHealthError as error:
                return CardOutcome(gpu, None, error.one_line())
        why = self._why_dead(w)
        journal_path = w.out_dir / "run.json" if w.out_dir else None
        if journal_path is None or not journal_path.is_file():
            code = w.error[1] if w.error and not w.killed_why else EXIT_INCOMPLETE
            return CardOutcome(gpu, None, why, code)
        assert w.out_dir is not None
        (w.out_dir / PID_FILE).unlink(missing_ok=True)
        try:
            record = close_journal(read_journal(journal_path), why)
            return CardOutcome(gpu, finish(record, w.out_dir, self._options_for(w.spec)))
        except GpuHealthError as error:
            return CardOutcome(gpu, None, f"{why}; its journal: {error.one_line()}")
