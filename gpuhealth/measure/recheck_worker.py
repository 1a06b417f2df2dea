"""`verify --recheck` in a worker process, so that a card that hangs, or a Ctrl-C, never leaves
the buyer waiting for ever.

The re-check runs in a "spawn" child (CUDA must never be forked) that reports each test as it
starts. The parent holds each step to the grade's watchdog (plan.supervision_limits: a test's
budget x watchdog_scale + watchdog_margin_s; opening the card: fleet.STARTUP_S). A child past its
step's limit is killed and every item reads unproven, naming the test that made no progress; so
does a stop (SIGINT, SIGTERM, SIGHUP: a re-check has nothing to save, it ends at once) or a child
that dies. A re-check that ends normally is exactly recheck_card's result.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from gpuhealth.certificate.checks import Check
from gpuhealth.certificate.recheck_result import RecheckResult
from gpuhealth.errors import EXIT_BAD_CARD, GpuHealthError
from gpuhealth.measure.fleet import POLL_S, STARTUP_S
from gpuhealth.measure.plan import supervision_limits
from gpuhealth.measure.recheck import RECHECK_ITEMS, RECHECK_PRESET, open_card, recheck_card
from gpuhealth.measure.stopping import stop_reason
from gpuhealth.models import RunRecord, record_from_json, record_to_json

OPENING = "opening the card"


class RecheckStop:
    """What stop_on_signals calls: the signal that asked the re-check to end."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def stop(self, signum: int) -> None:
        self.signum = signum


def recheck_in_worker(
    record: RunRecord, backend: str, sim_card: str | None, stop: RecheckStop | None = None
) -> RecheckResult:
    """recheck_card on the card, in a child process held to the watchdog (module docstring).
    A GpuHealthError the child meets opening the card is raised here, with its exit code."""
    limits = supervision_limits()
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_child,
        args=(record_to_json(record), backend, sim_card, send, os.getpid()),
        name="gpuhealth-recheck",
        daemon=True,
    )
    child.start()
    send.close()
    step, limit_s = OPENING, STARTUP_S
    started = time.monotonic()
    try:
        while True:
            if stop is not None and stop.signum is not None:
                return abandoned(f"{stop_reason(stop.signum)} during {step}")
            if receive.poll(POLL_S):
                try:
                    kind, payload = receive.recv()
                except EOFError:
                    return abandoned(f"the re-check process ended during {step} "
                                     f"({_exit_text(child)})")  # fmt: skip
                if kind == "done":
                    result: RecheckResult = payload
                    return result
                if kind == "error":
                    raise _ChildError(*payload)
                step = str(payload)
                limit_s = (
                    RECHECK_PRESET.budget_s(step) * limits.watchdog_scale + limits.watchdog_margin_s
                )
                started = time.monotonic()
            elif not child.is_alive():
                return abandoned(f"the re-check process ended during {step} ({_exit_text(child)})")
            elif time.monotonic() - started > limit_s:
                return abandoned(
                    f"the card stopped answering: {step} made no progress in {limit_s:.0f} s "
                    "(a kernel that never returns); reset the GPU and check it again"
                )
    finally:
        if child.is_alive():
            child.kill()
        child.join(timeout=5)
        receive.close()


def abandoned(why: str) -> RecheckResult:
    """A re-check that did not end: every item unproven, saying why."""
    return RecheckResult(
        tuple(Check(name, "unproven", why, exit_code=EXIT_BAD_CARD) for name in RECHECK_ITEMS)
    )


class _ChildError(GpuHealthError):
    """A GpuHealthError met in the child, with its message, hint and exit code."""

    def __init__(self, message: str, hint: str | None, exit_code: int) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


def _exit_text(child: multiprocessing.process.BaseProcess) -> str:
    code = child.exitcode
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _child(
    record_json: str, backend: str, sim_card: str | None, send: Connection, parent_pid: int
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C: the parent decides

    def orphan_guard() -> None:  # the parent died: nobody waits for this re-check
        while os.getppid() == parent_pid:
            time.sleep(POLL_S)
        os._exit(EXIT_BAD_CARD)

    threading.Thread(target=orphan_guard, daemon=True).start()
    message: tuple[str, Any]
    try:
        record = record_from_json(record_json)
        card = open_card(record, backend, sim_card)
        try:
            result = recheck_card(record, card, on_test=lambda name: send.send(("start", name)))
        finally:
            card.close()
        message = ("done", result)
    except GpuHealthError as error:
        message = ("error", (error.message, error.hint, error.exit_code))
    with contextlib.suppress(OSError):
        send.send(message)
