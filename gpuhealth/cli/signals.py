"""SIGTERM, SIGHUP and Ctrl-C during a grade: the first asks for a stop, a second stops at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import click


class Stoppable(Protocol):
    def stop(self, signum: int) -> None: ...


@contextmanager
def stop_on_signals(
    target: Stoppable, first: str = "stopping at the next kernel, writing what was measured"
) -> Iterator[list[int]]:
    """SIGTERM, SIGHUP and Ctrl-C (SIGINT) ask for a stop, honoured at the next kernel; each
    card's record is then written INCOMPLETE. A second signal stops at once (the workers are
    killed, their journals closed by this process). Yields the signals received."""
    import signal
    import threading

    from gpuhealth.measure.stopping import stop_reason

    asked: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def handler(signum: int, _frame: object) -> None:
        target.stop(signum)
        again = bool(asked)
        asked.append(signum)
        what = "stopping now, closing the records from their journals" if again else first
        click.echo(f"gpuhealth: {stop_reason(signum)}: {what}", err=True)

    caught = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in caught}
    try:
        yield asked
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
