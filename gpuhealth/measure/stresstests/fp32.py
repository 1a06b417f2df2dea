"""FP32 throughput: FMA chains on every lane of every SM, every thread's result checked.

Each thread runs FMA_CHAINS independent chains of the chaotic map x <- x*x + c from the same start
values, so a healthy card gives bit-identical results in every thread, and one wrong FMA anywhere
grows into a visible difference. A thread that disagrees with the majority, or a value outside the
map's bounded range, is a wrong result, reported with the SM that computed it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gpuhealth.measure.backends.base import FMA_CHAINS, DeviceBuffer
from gpuhealth.measure.stresstests.base import Outcome, TestContext
from gpuhealth.measure.stresstests.sm_checks import (
    MAX_LISTED,
    full_grid,
    iterations_for,
    locate,
    run_checked,
)
from gpuhealth.models import Metric, Verification, WrongResult

MAP_C = -1.9  # the map stays in [-2, 2] for starts in (-1.96, 1.96) and is chaotic there
BOUND = 2.0


def majority_check(
    values: npt.NDArray[np.float32], threads_per_block: int, smids: npt.NDArray[np.uint32]
) -> tuple[int, tuple[WrongResult, ...]]:
    """Threads whose chains disagree with the most common value, or leave the bounded range."""
    per_thread = values.reshape(-1, FMA_CHAINS).view(np.uint32)
    # Thread 0's values are the majority unless more than half disagree with them (then count).
    majority = per_thread[0].copy()
    bad = np.any(per_thread != majority, axis=1)
    if np.count_nonzero(bad) * 2 > bad.size:
        for chain in range(FMA_CHAINS):
            unique, counts = np.unique(per_thread[:, chain], return_counts=True)
            majority[chain] = unique[np.argmax(counts)]
        bad = np.any(per_thread != majority, axis=1)
    majority_f = majority.view(np.float32)
    if not np.all(np.isfinite(majority_f)) or np.any(np.abs(majority_f) > BOUND):
        bad[:] = True  # every thread agrees on a value the map cannot produce
    bad_threads = np.flatnonzero(bad)[:MAX_LISTED]
    rows = per_thread[bad_threads]
    chain = np.argmax(rows != majority, axis=1)  # the first chain that differs
    actual = rows[np.arange(rows.shape[0]), chain].view(np.float32)
    return int(np.count_nonzero(bad)), locate(
        bad_threads, smids, threads_per_block, majority_f[chain], actual
    )


class Fp32Test:
    name = "fp32"
    title = "FP32 throughput (FMA)"

    def run(self, ctx: TestContext, outcome: Outcome) -> None:
        params = ctx.preset.fp32
        blocks, threads = full_grid(ctx.info)
        total_threads = blocks * threads
        flops_per_iteration = 2.0 * total_threads * FMA_CHAINS
        peak = ctx.info.peak_fp32_tflops or 10.0
        iterations = iterations_for(params.launch_s, peak * 1e12, flops_per_iteration)
        outcome.parameters.update(
            blocks=blocks, threads=threads, chains=FMA_CHAINS, iterations=iterations, c=MAP_C
        )
        out = ctx.alloc(total_threads * FMA_CHAINS * 4)
        smids = ctx.alloc(blocks * 4)
        runs = run_checked(
            ctx,
            lambda: ctx.backend.fma_loop(out, smids, blocks, threads, iterations, MAP_C),
            lambda: self._check(ctx, out, smids, blocks, threads),
            params.warmup,
            params.repetitions,
        )
        outcome.metrics.append(
            Metric(
                "fp32_tflops",
                "TFLOP/s",
                tuple(flops_per_iteration * iterations / t / 1e12 for t in runs.times),
            )
        )
        outcome.verifications.append(
            Verification(
                method=f"all {total_threads} threads × {FMA_CHAINS} chains agree bit for bit, "
                f"in every one of {runs.launches} launches",
                passed=runs.mismatches == 0,
                checked=total_threads * FMA_CHAINS * runs.launches,
                mismatches=runs.mismatches,
                wrong_results=runs.wrong,
            )
        )

    @staticmethod
    def _check(
        ctx: TestContext, out: DeviceBuffer, smids: DeviceBuffer, blocks: int, threads: int
    ) -> tuple[int, tuple[WrongResult, ...]]:
        values = ctx.backend.download(out, np.float32, blocks * threads * FMA_CHAINS)
        sm = ctx.backend.download(smids, np.uint32, blocks)
        return majority_check(
            np.asarray(values, dtype=np.float32), threads, np.asarray(sm, dtype=np.uint32)
        )
