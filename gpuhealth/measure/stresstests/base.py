"""What every stress test shares: its context, the repetition loop, and turning a run into a result.

A test body fills an Outcome as it goes (so that whatever it measured before a failure is kept) and
raises gpuhealth.errors on failure; execute() turns either into a TestResult.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from gpuhealth.errors import DeviceError, DeviceLost, NotApplicable, TimeBudgetExceeded
from gpuhealth.measure.backends.base import Backend, DeviceBuffer, DeviceInfo
from gpuhealth.models import (
    Metric,
    Scalar,
    TelemetrySample,
    TestResult,
    TestStatus,
    Verification,
)
from gpuhealth.presets import Preset

MIN_REPETITIONS = 3
CHECKPOINT_WALL_S = 5.0  # journal a long test's progress this often (wall time)
LIVE_WALL_S = 1.0  # hand the newest telemetry sample to the progress display this often


@dataclass
class Outcome:
    """What a test body has found so far."""

    parameters: dict[str, Scalar] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    verifications: list[Verification] = field(default_factory=list)
    message: str | None = None


@dataclass
class TestContext:
    """One test's view of the card and its limits."""

    __test__ = False  # not a pytest class

    backend: Backend
    info: DeviceInfo
    preset: Preset
    run_start_s: float
    budget_s: float
    started_s: float = 0.0
    busy_s: float = 0.0
    telemetry: list[TelemetrySample] = field(default_factory=list)
    buffers: list[DeviceBuffer] = field(default_factory=list)
    # Called with what a long test has measured so far (the runner journals it), so that a
    # worker killed mid-soak leaves its iterations on disk. At most every CHECKPOINT_WALL_S.
    checkpoint: Callable[[TestContext, Outcome, tuple[Metric, ...]], None] | None = None
    _last_checkpoint_wall_s: float = 0.0
    # Called with the newest telemetry sample (the live progress display), at most every
    # LIVE_WALL_S of wall time, after a kernel.
    live: Callable[[TelemetrySample], None] | None = None
    _last_live_wall_s: float = 0.0
    _returned: int = 0  # samples of `telemetry` that drain_telemetry has returned

    def save_progress(self, outcome: Outcome, partial: tuple[Metric, ...] = ()) -> None:
        """Offer the measurements so far (partial: metrics not yet in the outcome)."""
        if self.checkpoint is None:
            return
        now = time.monotonic()
        if now - self._last_checkpoint_wall_s < CHECKPOINT_WALL_S:
            return
        self._last_checkpoint_wall_s = now
        self.checkpoint(self, outcome, partial)

    def timed(self, seconds: float) -> float:
        """Count a kernel's device time as busy time and pass it through."""
        self.busy_s += seconds
        if self.live is not None:
            now = time.monotonic()
            if now - self._last_live_wall_s >= LIVE_WALL_S:
                self._last_live_wall_s = now
                self._pull()
                if self.telemetry:
                    self.live(self.telemetry[-1])
        return seconds

    def elapsed_s(self) -> float:
        return self.backend.clock_s() - self.started_s

    def over_budget(self) -> bool:
        return self.elapsed_s() > self.budget_s

    def alloc(self, nbytes: int) -> DeviceBuffer:
        buffer = self.backend.alloc(nbytes)
        self.buffers.append(buffer)
        return buffer

    def free_all(self) -> None:
        while self.buffers:
            buffer = self.buffers.pop()
            with contextlib.suppress(DeviceError):  # card gone or buffer already freed
                self.backend.free(buffer)

    def drain_telemetry(self) -> tuple[TelemetrySample, ...]:
        """New samples since the last drain, with t_s made relative to the run's start (each
        sample returned once, also those the live display pulled in between)."""
        self._pull()
        fresh = tuple(self.telemetry[self._returned :])
        self._returned = len(self.telemetry)
        return fresh

    def _pull(self) -> None:
        """Move the backend's new samples into `telemetry`."""
        self.telemetry.extend(
            replace(s, t_s=round(s.t_s - self.run_start_s, 4))
            for s in self.backend.drain_telemetry()
        )


def repeat(
    ctx: TestContext, launch: Callable[[], float], warmup: int, repetitions: int
) -> list[float]:
    """Warm up, then time `repetitions` launches (device seconds each) within the budget."""
    for _ in range(warmup):
        ctx.timed(launch())
    times: list[float] = []
    for _ in range(repetitions):
        if ctx.over_budget():
            if len(times) >= MIN_REPETITIONS:
                break
            raise TimeBudgetExceeded(
                f"time budget of {ctx.budget_s:.0f} s spent after {len(times)} repetitions "
                f"(at least {MIN_REPETITIONS} needed)"
            )
        times.append(ctx.timed(launch()))
    return times


class StressTest(Protocol):
    name: str
    title: str

    def run(self, ctx: TestContext, outcome: Outcome) -> None: ...


@dataclass(frozen=True)
class Executed:
    result: TestResult
    card_lost: bool


def execute(test: StressTest, ctx: TestContext) -> Executed:
    """Run one test: never raises for a card failure; the result says what happened."""
    outcome = Outcome()
    ctx.started_s = ctx.backend.clock_s()
    status: TestStatus = "passed"
    lost = False
    try:
        ctx.backend.begin_test(test.name)
        test.run(ctx, outcome)
        if any(not v.passed for v in outcome.verifications):
            status = "failed"
        elif not outcome.verifications:
            status, outcome.message = "error", "the test produced no verified result"
    except NotApplicable as exc:
        status, outcome.message = "skipped", exc.one_line()
    except DeviceLost as exc:
        status, lost, outcome.message = "error", True, exc.one_line()
    except DeviceError as exc:
        status, outcome.message = "error", exc.one_line()
    finally:
        if not lost:
            ctx.free_all()
            ctx.backend.end_test()
    if not lost:
        try:
            ctx.drain_telemetry()
        except DeviceLost as exc:
            status, lost, outcome.message = "error", True, exc.one_line()
    result = TestResult(
        name=test.name,
        status=status,
        started_s=round(ctx.started_s - ctx.run_start_s, 4),
        duration_s=round(ctx.backend.clock_s() - ctx.started_s, 4),
        gpu_busy_s=round(ctx.busy_s, 6),
        time_budget_s=ctx.budget_s,
        parameters=dict(outcome.parameters),
        metrics=tuple(outcome.metrics),
        verifications=tuple(outcome.verifications),
        telemetry=tuple(ctx.telemetry),
        message=outcome.message,
    )
    return Executed(result, lost)
