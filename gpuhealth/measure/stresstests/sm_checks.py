"""Shared by the compute tests: launch geometry, and naming the SM behind a wrong value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gpuhealth.measure.backends.base import DeviceInfo
from gpuhealth.measure.stresstests.base import TestContext, repeat
from gpuhealth.models import WrongResult

THREADS_PER_BLOCK = 256
MAX_LISTED = 32


def full_grid(info: DeviceInfo) -> tuple[int, int]:
    """Enough blocks to fill every SM at full occupancy: (blocks, threads per block)."""
    per_sm = max(1, info.max_threads_per_sm // THREADS_PER_BLOCK)
    return info.sm_count * per_sm, THREADS_PER_BLOCK


def iterations_for(target_s: float, rate_flops: float, flops_per_iteration: float) -> int:
    """Loop length that keeps one launch busy for about target_s, a multiple of 64."""
    iterations = int(target_s * rate_flops / flops_per_iteration)
    return max(64, iterations // 64 * 64)


def locate(
    bad_threads: npt.NDArray[np.intp],
    smids: npt.NDArray[np.uint32],
    threads_per_block: int,
    expected: npt.NDArray[np.float32],
    actual: npt.NDArray[np.float32],
) -> tuple[WrongResult, ...]:
    """WrongResults for the first bad threads (expected/actual given per bad thread), each naming
    the SM its block ran on."""
    listed = []
    for i, thread in enumerate(bad_threads[:MAX_LISTED]):
        block = int(thread) // threads_per_block
        listed.append(
            WrongResult(
                location=f"SM {int(smids[block])} (block {block}, thread "
                f"{int(thread) % threads_per_block})",
                expected=float(expected[i]),
                actual=float(actual[i]),
            )
        )
    return tuple(listed)


def sms_named(results: tuple[WrongResult, ...]) -> str:
    sms = sorted({r.location.split(" (")[0] for r in results})
    return ", ".join(sms)


@dataclass(frozen=True)
class CheckedRuns:
    """Timed launches whose every output (warm-ups included) was checked."""

    times: list[float]
    launches: int
    mismatches: int
    wrong: tuple[WrongResult, ...]


def run_checked(
    ctx: TestContext,
    launch: Callable[[], float],
    check: Callable[[], tuple[int, tuple[WrongResult, ...]]],
    warmup: int,
    repetitions: int,
) -> CheckedRuns:
    """repeat() a launch, checking its output after every launch."""
    mismatches = 0
    listed: list[WrongResult] = []

    def one() -> float:
        nonlocal mismatches
        seconds = launch()
        bad, wrong = check()
        mismatches += bad
        listed.extend(wrong[: MAX_LISTED - len(listed)])
        return seconds

    times = repeat(ctx, one, warmup, repetitions)
    return CheckedRuns(times, warmup + len(times), mismatches, tuple(listed))
