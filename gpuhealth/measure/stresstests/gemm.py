"""Library GEMM: what the user's workload gets from cuBLAS (cupy.matmul), FP16 and FP32.

Seeded random matrices, timed repetitions, then every element of the last product against a
float64 product of the same inputs.
"""

from __future__ import annotations

from gpuhealth.measure.backends.base import GemmDtype
from gpuhealth.measure.stresstests.base import Outcome, TestContext, repeat
from gpuhealth.measure.stresstests.fp16_tensor import check_product
from gpuhealth.models import Metric

SEEDS = (21, 22)


def library_tolerance(dtype: GemmDtype, n: int) -> tuple[float, float]:
    """(rel, abs) bounds. fp16 output keeps 11 significant bits, and the library may accumulate
    in fp16: allow 2^-9 relative plus 4 × 2^-11 × sqrt(n) absolute (a random walk of fp16
    roundings). fp32: 1e-5 relative plus 4e-6 × n absolute, as for the tensor-core GEMM."""
    if dtype == "fp16":
        return 2.0**-9, 4 * 2.0**-11 * n**0.5
    return 1e-5, 4e-6 * n


class GemmTest:
    name = "gemm"
    title = "Library GEMM (cuBLAS)"

    def run(self, ctx: TestContext, outcome: Outcome) -> None:
        params = ctx.preset.gemm
        n = params.n
        outcome.parameters.update(n=n, warmup=params.warmup, repetitions=params.repetitions)
        for dtype in ("fp16", "fp32"):
            self._one(ctx, outcome, dtype, n)

    def _one(self, ctx: TestContext, outcome: Outcome, dtype: GemmDtype, n: int) -> None:
        params = ctx.preset.gemm
        itemsize = 2 if dtype == "fp16" else 4
        a, b, c = (ctx.alloc(n * n * itemsize) for _ in range(3))
        ref = ctx.alloc(n * n * 8)
        ctx.backend.fill_uniform(a, dtype, n * n, SEEDS[0], -1.0, 1.0)
        ctx.backend.fill_uniform(b, dtype, n * n, SEEDS[1], -1.0, 1.0)
        times = repeat(
            ctx,
            lambda: ctx.backend.gemm_library(a, b, c, n, dtype),
            params.warmup,
            params.repetitions,
        )
        outcome.metrics.append(
            Metric(f"{dtype}_tflops", "TFLOP/s", tuple(2.0 * n**3 / t / 1e12 for t in times))
        )
        ctx.backend.gemm_reference_f64(a, b, ref, n, dtype, b_transposed=False)
        outcome.verifications.append(
            check_product(
                ctx, c, dtype, ref, n, f"cuBLAS {dtype.upper()} GEMM", library_tolerance(dtype, n)
            )
        )
        for buffer in (ref, c, b, a):
            ctx.backend.free(buffer)
            ctx.buffers.remove(buffer)
