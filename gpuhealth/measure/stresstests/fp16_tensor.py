"""FP16 tensor cores: mma.sync peak throughput, and a tensor-core GEMM checked against float64.

The peak kernel keeps MMA_ACCUMULATORS accumulators per warp and adds +B and -B in turn with
small-integer operands, so every accumulator must come back exactly to where it started: any
non-zero residue is a wrong result, named by SM. The GEMM multiplies seeded random fp16 matrices
and compares every element with a float64 product of the same inputs.
"""

from __future__ import annotations

import math

import numpy as np

from gpuhealth.errors import NotApplicable
from gpuhealth.measure.backends.base import MMA_ACCUMULATORS, DeviceBuffer
from gpuhealth.measure.stresstests.base import Outcome, TestContext, repeat
from gpuhealth.measure.stresstests.sm_checks import (
    MAX_LISTED,
    full_grid,
    iterations_for,
    locate,
    run_checked,
)
from gpuhealth.models import Metric, Verification, WrongResult

MMA_FLOPS = 16 * 8 * 16 * 2  # one m16n8k16 per warp
MIN_TENSOR_CC = (7, 5)  # mma.sync with fp16 operands at m16n8k8 and up (Turing and newer)
# Dense fp16 tensor FLOP per clock per SM, by compute capability (sizes the loop only).
TENSOR_FLOP_PER_CLOCK_PER_SM = {7: 1024, 8: 2048, 9: 4096}
GEMM_SEEDS = (11, 12)


def gemm_tolerance(n: int) -> tuple[float, float]:
    """(rel, abs) bound for an fp16-input, fp32-accumulated n×n product with inputs in [-1, 1].

    Rounding grows like sqrt(n) × 2^-24 × |C|, but tensor cores do not round every addition to
    nearest: an H200 showed a largest error of 0.002 at n = 8192. We allow 4e-6 × n absolute
    (0.033 at 8192, 16× that), which still catches any flip of a mantissa bit above the 13th in
    values of typical size (|C| ~ sqrt(n/9))."""
    return 1e-5, 4e-6 * n


class Fp16TensorTest:
    name = "fp16_tensor"
    title = "FP16 tensor cores"

    def run(self, ctx: TestContext, outcome: Outcome) -> None:
        if ctx.info.compute_capability < MIN_TENSOR_CC:
            raise_skip(ctx)
        self._peak(ctx, outcome)
        self._gemm(ctx, outcome)

    def _peak(self, ctx: TestContext, outcome: Outcome) -> None:
        params = ctx.preset.fp16_tensor
        blocks, threads = full_grid(ctx.info)
        warps = blocks * threads // 32
        flops_per_iteration = float(warps * MMA_ACCUMULATORS * MMA_FLOPS)
        per_clock = TENSOR_FLOP_PER_CLOCK_PER_SM.get(ctx.info.compute_capability[0], 4096)
        rate = ctx.info.sm_count * per_clock * (ctx.info.max_sm_clock_mhz or 1500) * 1e6
        iterations = iterations_for(params.launch_s, rate, flops_per_iteration)
        outcome.parameters.update(
            mma_blocks=blocks,
            mma_threads=threads,
            mma_iterations=iterations,
            mma_accumulators=MMA_ACCUMULATORS,
        )
        out = ctx.alloc(blocks * threads * 4)
        smids = ctx.alloc(blocks * 4)

        def check() -> tuple[int, tuple[WrongResult, ...]]:
            residue = np.asarray(
                ctx.backend.download(out, np.float32, blocks * threads), dtype=np.float32
            )
            bad = np.flatnonzero(residue != 0.0)
            if not bad.size:
                return 0, ()
            sm = np.asarray(ctx.backend.download(smids, np.uint32, blocks), dtype=np.uint32)
            shown = bad[:MAX_LISTED]
            return int(bad.size), locate(
                shown, sm, threads, np.zeros(shown.size, np.float32), residue[shown]
            )

        runs = run_checked(
            ctx,
            lambda: ctx.backend.mma_loop(out, smids, blocks, threads, iterations),
            check,
            params.warmup,
            params.repetitions,
        )
        outcome.metrics.append(
            Metric(
                "mma_tflops",
                "TFLOP/s",
                tuple(flops_per_iteration * iterations / t / 1e12 for t in runs.times),
            )
        )
        outcome.verifications.append(
            Verification(
                method=f"every thread's accumulators return exactly to their start (+B then −B), "
                f"in every one of {runs.launches} launches",
                passed=runs.mismatches == 0,
                checked=blocks * threads * runs.launches,
                mismatches=runs.mismatches,
                wrong_results=runs.wrong,
            )
        )

    def _gemm(self, ctx: TestContext, outcome: Outcome) -> None:
        params = ctx.preset.fp16_tensor
        n = params.gemm_n
        a, bt = ctx.alloc(n * n * 2), ctx.alloc(n * n * 2)
        c, ref = ctx.alloc(n * n * 4), ctx.alloc(n * n * 8)
        ctx.backend.fill_uniform(a, "fp16", n * n, GEMM_SEEDS[0], -1.0, 1.0)
        ctx.backend.fill_uniform(bt, "fp16", n * n, GEMM_SEEDS[1], -1.0, 1.0)
        times = repeat(ctx, lambda: ctx.backend.gemm_tensor(a, bt, c, n), 1, params.repetitions)
        outcome.parameters["gemm_n"] = n
        outcome.metrics.append(
            Metric("tensor_gemm_tflops", "TFLOP/s", tuple(2.0 * n**3 / t / 1e12 for t in times))
        )
        ctx.backend.gemm_reference_f64(a, bt, ref, n, "fp16", b_transposed=True)
        outcome.verifications.append(check_product(ctx, c, "fp32", ref, n, "tensor-core GEMM"))


def check_product(
    ctx: TestContext,
    result: DeviceBuffer,
    dtype: str,
    reference: DeviceBuffer,
    n: int,
    what: str,
    tolerance: tuple[float, float] | None = None,
) -> Verification:
    """Every element of an n×n product against its float64 reference."""
    rel_tol, abs_tol = tolerance or gemm_tolerance(n)
    check = ctx.backend.compare_close(
        result,
        "fp16" if dtype == "fp16" else "fp32",
        reference,
        n * n,
        rel_tol,
        abs_tol,
        MAX_LISTED,
    )
    wrong = tuple(
        WrongResult(
            location=f"{what} element ({index // n}, {index % n})", expected=want, actual=got
        )
        for index, got, want in check.first
    )
    return Verification(
        method=f"{what} {n}×{n}: each element within {abs_tol:.2g} + {rel_tol:.2g}×|ref| of a "
        f"float64 product of the same inputs ({check.checked} elements compared)",
        passed=check.mismatches == 0,
        checked=check.checked,
        mismatches=check.mismatches,
        max_relative_error=check.max_rel_error if math.isfinite(check.max_rel_error) else None,
        bound=abs_tol,
        wrong_results=wrong,
    )


def raise_skip(ctx: TestContext) -> None:
    major, minor = ctx.info.compute_capability
    raise NotApplicable(
        f"the fp16 tensor-core test needs compute capability {MIN_TENSOR_CC[0]}.{MIN_TENSOR_CC[1]}"
        f" or newer (mma.sync m16n8k8/k16); this card is {major}.{minor}"
    )
