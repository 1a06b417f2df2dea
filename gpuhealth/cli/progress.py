"""The grade's progress display: one row per GPU with its step, and the card now (temperature,
power, SM clock, throttle reasons) and the errors found so far.

On a terminal: rich's live display on stderr, each GPU's row updated in place. Elsewhere (a log
file, a pipe, CI): plain lines, one when a step ends and, per GPU, the card's readings at most
every PLAIN_LIVE_S, so that a long burn-in leaves a readable trail without flooding the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.markup import escape

from gpuhealth.measure.fleet import FleetEvent
from gpuhealth.throttle import reason_names

PLAIN_LIVE_S = 30.0  # a GPU's readings at most this often as plain lines
IDLE_BIT = 0x1  # "idle" is no throttle


def live_text(event: FleetEvent) -> str:
    """The card now, in one line: "63 °C  512 W  1980 MHz  software power cap  errors 0"."""
    parts = [
        f"{event.temperature_c:.0f} °C" if event.temperature_c is not None else "? °C",
        f"{event.power_w:.0f} W" if event.power_w is not None else "? W",
        f"{event.sm_clock_mhz:.0f} MHz" if event.sm_clock_mhz is not None else "? MHz",
    ]
    reasons = event.clocks_event_reasons
    if reasons is None:
        parts.append("throttle ?")
    else:
        names = reason_names(reasons & ~IDLE_BIT)
        parts.append(", ".join(names) if names else "no throttle")
    parts.append(f"errors {event.errors}")
    return "  ".join(parts)


def end_line(event: FleetEvent) -> str:
    """A step that ended: "GPU 0: memtest passed (7.2 s), errors so far 0"."""
    return (
        f"GPU {event.gpu}: {event.test} {event.status} ({event.duration_s or 0.0:.1f} s), "
        f"errors so far {event.errors}"
    )


class PlainProgress:
    """Plain lines for a log: steps as they end, readings at most every PLAIN_LIVE_S per GPU."""

    def __init__(
        self,
        write: Callable[[str], None],
        every_s: float = PLAIN_LIVE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._every_s = every_s
        self._clock = clock
        self._last: dict[int, float] = {}

    def __call__(self, event: FleetEvent) -> None:
        label = f"GPU {event.gpu}"
        if event.kind == "end":
            self._write(end_line(event))
        elif event.kind == "failed":
            self._write(f"{label}: INCOMPLETE: {event.message}")
        elif event.kind == "live":
            now = self._clock()
            last = self._last.get(event.gpu)
            if last is None or now - last >= self._every_s:
                self._last[event.gpu] = now
                self._write(f"{label}: {event.test or '-'}: {live_text(event)}")


@contextmanager
def fleet_display(quiet: bool, indexes: list[int]) -> Iterator[Callable[[FleetEvent], None] | None]:
    """The display's event handler: None with --quiet; plain lines when stderr is no terminal."""
    if quiet:
        yield None
        return
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield PlainProgress(lambda line: console.print(line, markup=False, highlight=False))
        return
    with _progress_bar(console) as bar:
        yield _LiveRows(bar, console, indexes)


@contextmanager
def _progress_bar(console: Any) -> Iterator[Any]:
    """rich's progress display on the console (one bar per GPU)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[live]}"),
        console=console,
        transient=True,
    ) as bar:
        yield bar


class _LiveRows:
    """One rich progress row per GPU: its step, steps done, and the card now."""

    def __init__(self, bar: Any, console: Any, indexes: list[int]) -> None:
        self._bar = bar
        self._console = console
        self._rows = {
            gpu: bar.add_task(f"GPU {gpu}: starting", total=None, live="") for gpu in indexes
        }

    def __call__(self, event: FleetEvent) -> None:
        bar, row, label = self._bar, self._rows[event.gpu], f"GPU {event.gpu}"
        if event.kind == "start":
            bar.update(
                row, total=event.total, completed=event.index, description=f"{label}: {event.test}"
            )
        elif event.kind == "live":
            bar.update(row, live=live_text(event))
        elif event.kind == "end":
            bar.update(row, completed=event.index + 1)
            self._console.print(end_line(event), markup=False, highlight=False)
        elif event.kind == "done":
            bar.update(row, description=f"{label}: finished")
        elif event.kind == "failed":
            bar.update(row, description=f"{label}: INCOMPLETE")
            # the message is the card's or a file's text: escaped, never read as rich markup
            self._console.print(f"{label}: [bold red]INCOMPLETE[/]: {escape(event.message or '')}")
