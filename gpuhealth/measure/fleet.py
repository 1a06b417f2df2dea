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
  on SIGTERM or when the parent has died. A second stop (a second signal) kills every worker at
  once; the parent closes their journals (every finished test kept) and writes their reports;
- a worker whose parent has died stops at its next backend call; one stuck in a kernel that never
  returns closes its own journal after stop_grace_s and exits (an orphan guard thread).

Every card, one or many, is graded this way: `gpuhealth grade` and `gpuhealth resume` both run
their cards under a Supervisor. The limits can be tuned through the environment (slow kernel
compiles, tests): GPUHEALTH_WATCHDOG_SCALE, GPUHEALTH_WATCHDOG_MARGIN_S, GPUHEALTH_STOP_GRACE_S.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal

from gpuhealth.errors import EXIT_INCOMPLETE, EXIT_USAGE, GpuHealthError, OutputUnwritable
from gpuhealth.measure.outcomes import CardOutcome
from gpuhealth.measure.plan import (
    STOP_GRACE_S,
    WATCHDOG_MARGIN_S,
    WATCHDOG_SCALE,
    Limits,
    WorkerSpec,
    options_for,
)
from gpuhealth.measure.runner import (
    GradedCard,
    GradeOptions,
    close_journal,
    finish,
    grade_card,
    read_journal,
    resume_card,
    step_budget_s,
)
from gpuhealth.measure.stopping import StopFlag, stop_reason
from gpuhealth.models import TelemetrySample, TestResult

PID_FILE = "worker.pid"
STARTUP_S = 300.0  # opening the card (CUDA context, NVML), identity and pre-checks
POLL_S = 0.2
PARENT_DIED = "stopped: the supervising gpuhealth process died"

EventKind = Literal["open", "start", "end", "done", "failed", "live"]


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
    # "end": what the step's checks found wrong (mismatched words, wrong results); "live": the
    # card now (telemetry) and the errors found so far in this run
    errors: int = 0
    temperature_c: float | None = None
    power_w: float | None = None
    sm_clock_mhz: float | None = None
    clocks_event_reasons: int | None = None


def _worker(spec: WorkerSpec, conn: Connection, stop_code: Any, parent_pid: int) -> None:
    """A worker process's body: grade one card, tell the parent every step."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stop = StopFlag(stop_code, parent_pid)
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop.request(stop_reason(signum)))
    pid_file: Path | None = None
    folder: list[Path] = []

    def send(*message: object) -> None:
        with contextlib.suppress(OSError):  # the parent is gone: the stop flag will see it
            conn.send(message)

    try:
        from gpuhealth.measure.backends import open_backend

        options = options_for(spec)
        backend = open_backend(spec.backend, spec.gpu, spec.sim_card)  # type: ignore[arg-type]

        _start_orphan_guard(stop, parent_pid, spec.stop_grace_s, folder, options)

        def opened(out_dir: Path) -> None:
            nonlocal pid_file
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                pid_file = out_dir / PID_FILE
                pid_file.write_text(f"{os.getpid()}\n", encoding="ascii")
            except OSError as exc:
                raise OutputUnwritable(out_dir, exc, "nothing was measured") from exc
            folder.append(out_dir)
            send("open", str(out_dir))

        def progress(test: str, index: int, total: int, result: TestResult | None) -> None:
            if result is None:
                send("start", test, index, total, step_budget_s(options.preset, test))
            else:
                wrong = sum(v.mismatches for v in result.verifications)
                send("end", test, index, total, result.status, result.duration_s, wrong)

        def live(sample: TelemetrySample) -> None:
            send(
                "live",
                sample.temperature_c,
                sample.power_w,
                sample.sm_clock_mhz,
                sample.clocks_event_reasons,
            )

        try:
            if spec.resume and spec.out_dir is not None:
                record = read_journal(spec.out_dir / "run.json")
                graded = resume_card(
                    backend, record, spec.out_dir, options, progress, stop, opened, live
                )
            else:
                graded = grade_card(backend, options, progress, stop, opened, live)
        finally:
            backend.close()
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
        send("done", str(graded.out_dir))
    except GpuHealthError as error:
        send("error", error.one_line(), error.exit_code, isinstance(error, OutputUnwritable))
    except OSError as error:  # the environment (a file, a folder), never "the card failed"
        send("error", f"{error.filename or 'gpuhealth'}: {error.strerror or error}", 3, True)
    finally:
        if pid_file is not None:
            with contextlib.suppress(OSError):
                pid_file.unlink(missing_ok=True)
        conn.close()


def _start_orphan_guard(
    stop: StopFlag, parent_pid: int, grace_s: float, folder: list[Path], options: GradeOptions
) -> None:
    """A daemon thread: once the parent has died, ask the run to stop; if the worker is still
    here grace_s later (a kernel that never returns), close its journal and exit."""

    def guard() -> None:
        while os.getppid() == parent_pid:
            time.sleep(POLL_S)
        stop.request(PARENT_DIED)
        time.sleep(grace_s)
        if folder:
            why = f"{PARENT_DIED}, and the worker did not stop within {grace_s:g} s"
            with contextlib.suppress(GpuHealthError, OSError):
                finish(close_journal(read_journal(folder[0] / "run.json"), why), folder[0], options)
            with contextlib.suppress(OSError):
                (folder[0] / PID_FILE).unlink(missing_ok=True)
        os._exit(EXIT_INCOMPLETE)

    threading.Thread(target=guard, name="gpuhealth-orphan-guard", daemon=True).start()


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
    unwritable: bool = False  # the worker could not write its run folder: the parent cannot either
    killed_why: str | None = None
    errors: int = 0  # what the card's checks found wrong so far (the "end" messages' counts)
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

    @classmethod
    def with_limits(cls, specs: list[WorkerSpec], limits: Limits) -> Supervisor:
        return cls(
            specs,
            watchdog_scale=limits.watchdog_scale,
            watchdog_margin_s=limits.watchdog_margin_s,
            stop_grace_s=limits.stop_grace_s,
        )

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
        self._forced = False  # a second stop: every worker killed at once
        self._workers: list[_Worker] = []
        self._options: dict[int, GradeOptions] = {}

    # --- control ------------------------------------------------------------------------------
    def stop(self, signum: int = int(signal.SIGTERM)) -> None:
        """Ask every worker to stop (safe from a signal handler). A second call stops waiting."""
        if self._stop_code.value:
            self._forced = True
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
                late = (
                    "stopped at once by a second signal"
                    if self._forced
                    else f"the worker did not stop within {self.stop_grace_s:.0f} s"
                )
                self._kill(w, f"{why}; {late}")
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
            _, test, index, total, status, duration, wrong = message
            w.test, w.last, w.budget_s, w.started = None, test, 0.0, now
            w.deadline = now + self.watchdog_margin_s
            w.errors += int(wrong)
            self._emit(
                w,
                "end",
                test=test,
                index=index,
                total=total,
                status=status,
                duration_s=duration,
                errors=w.errors,
            )
        elif kind == "live":  # the card now: the watchdog's deadline stays the step's
            _, temperature, power, clock, reasons = message
            self._emit(
                w,
                "live",
                test=w.test,
                errors=w.errors,
                temperature_c=temperature,
                power_w=power,
                sm_clock_mhz=clock,
                clocks_event_reasons=reasons,
            )
        elif kind == "done":
            w.done_dir = Path(message[1])
        elif kind == "error":
            w.error = (str(message[1]), int(message[2]))
            w.unwritable = bool(message[3])

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
        code = w.error[1] if w.error and not w.killed_why else EXIT_INCOMPLETE
        untouchable = code == EXIT_USAGE or (w.unwritable and not w.killed_why)
        if journal_path is None or not journal_path.is_file() or untouchable:
            return CardOutcome(gpu, None, why, code)
        assert w.out_dir is not None
        with contextlib.suppress(OSError):
            (w.out_dir / PID_FILE).unlink(missing_ok=True)
        try:
            record = close_journal(read_journal(journal_path), why)
            return CardOutcome(gpu, finish(record, w.out_dir, self._options_for(w.spec)))
        except GpuHealthError as error:
            return CardOutcome(gpu, None, f"{why}; its journal: {error.one_line()}")
