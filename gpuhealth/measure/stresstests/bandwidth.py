"""Memory bandwidth: BabelStream's copy / scale / add / triad / read over arrays far larger than L2.

The arrays start at BabelStream's constants and every kernel's effect is replayed on the host in
float32, so after the run every element of every array is checked against host arithmetic, and the
read kernel's sum against n × the host value.
"""

from __future__ import annotations

import numpy as np

from gpuhealth.errors import DeviceError
from gpuhealth.measure.backends.base import STREAM_BYTES_PER_ELEMENT, DeviceBuffer, StreamOp
from gpuhealth.measure.stresstests.base import Outcome, TestContext, repeat
from gpuhealth.models import Metric, Verification, WrongResult

START_A, START_B, START_C, SCALAR = 0.1, 0.2, 0.0, 0.4
OPS: tuple[StreamOp, ...] = ("copy", "scale", "add", "triad", "read")
PARTIALS = 1 << 16  # room for the read kernel's per-block partial sums
MEMORY_RESERVE_BYTES = 512 << 20
# The device fuses b + s*c into one FMA, the host rounds twice: allow a few ulps of drift.
REL_TOL = 1e-5


class HostArrays:
    """The value every element of a, b and c must hold, replayed in float32."""

    def __init__(self) -> None:
        self.a = np.float32(START_A)
        self.b = np.float32(START_B)
        self.c = np.float32(START_C)
        self.s = np.float32(SCALAR)

    def apply(self, op: StreamOp) -> None:
        if op == "copy":
            self.c = self.a
        elif op == "scale":
            self.b = np.float32(self.s * self.c)
        elif op == "add":
            self.c = np.float32(self.a + self.b)
        elif op == "triad":
            self.a = np.float32(self.b + self.s * self.c)


class BandwidthTest:
    name = "bandwidth"
    title = "Memory bandwidth (STREAM)"

    def run(self, ctx: TestContext, outcome: Outcome) -> None:
        params = ctx.preset.bandwidth
        free = ctx.backend.memory_free_bytes() - MEMORY_RESERVE_BYTES - PARTIALS * 4
        array_bytes = max(params.array_bytes, 8 * ctx.info.l2_bytes)
        array_bytes = min(array_bytes, free // 3) // 16 * 16
        if array_bytes < 8 * ctx.info.l2_bytes:
            raise DeviceError(
                f"not enough free memory for arrays 8× larger than L2 ({free / 2**30:.2f} GiB free)"
            )
        n = array_bytes // 4
        outcome.parameters.update(
            array_bytes=array_bytes,
            elements=n,
            l2_bytes=ctx.info.l2_bytes,
            warmup=params.warmup,
            repetitions=params.repetitions,
        )
        a, b, c = (ctx.alloc(array_bytes) for _ in range(3))
        partials = ctx.alloc(PARTIALS * 4)
        backend = ctx.backend
        for buffer, value in ((a, START_A), (b, START_B), (c, START_C)):
            backend.fill_f32(buffer, n, value)
        backend.fill_f32(partials, PARTIALS, 0.0)
        host = HostArrays()
        timings: dict[str, list[float]] = {op: [] for op in OPS}

        def one_round() -> float:
            total = 0.0
            for op in OPS:
                if op == "read":
                    seconds = backend.stream(op, a, partials, partials, SCALAR, n)
                else:
                    seconds = backend.stream(op, a, b, c, SCALAR, n)
                host.apply(op)
                timings[op].append(seconds)
                total += seconds
            return total

        repeat(ctx, one_round, 0, params.warmup)
        for times in timings.values():
            times.clear()
        repeat(ctx, one_round, 0, params.repetitions)
        for op in OPS:
            gbs = tuple(STREAM_BYTES_PER_ELEMENT[op] * n / t / 1e9 for t in timings[op])
            outcome.metrics.append(Metric(f"{op}_gbs", "GB/s", gbs))
        outcome.verifications.append(self._check_arrays(ctx, (a, b, c), host, n))
        outcome.verifications.append(self._check_read(ctx, partials, host, n))

    def _check_arrays(
        self, ctx: TestContext, arrays: tuple[DeviceBuffer, ...], host: HostArrays, n: int
    ) -> Verification:
        wrong: list[WrongResult] = []
        total_bad = 0
        for name, buffer, value in zip("abc", arrays, (host.a, host.b, host.c), strict=True):
            bad = ctx.backend.count_f32_not_close(buffer, n, float(value), REL_TOL)
            total_bad += bad
            if bad:
                first = first_not_close(ctx, buffer, n, float(value))
                wrong.append(
                    WrongResult(
                        location=f"array {name}"
                        + (f" element {first}" if first is not None else ""),
                        expected=float(value),
                        detail=f"{bad} of {n} elements differ from the host value"
                        + (f", the first at element {first}" if first is not None else ""),
                    )
                )
        return Verification(
            method="every element of a, b, c against the host's float32 replay of all kernels",
            passed=total_bad == 0,
            checked=3 * n,
            mismatches=total_bad,
            bound=REL_TOL,
            wrong_results=tuple(wrong),
        )

    def _check_read(
        self, ctx: TestContext, partials: DeviceBuffer, host: HostArrays, n: int
    ) -> Verification:
        sums = ctx.backend.download(partials, np.float32, PARTIALS)
        total = float(np.asarray(sums, dtype=np.float64).sum())
        expected = float(host.a) * n
        rel_error = abs(total - expected) / abs(expected) if expected else abs(total)
        bound = 1e-3  # float32 partial sums of n equal values
        passed = rel_error <= bound
        return Verification(
            method="read kernel's sum of a against n × the host value",
            passed=passed,
            checked=1,
            mismatches=0 if passed else 1,
            max_relative_error=rel_error,
            bound=bound,
            wrong_results=()
            if passed
            else (WrongResult("read kernel sum", expected=expected, actual=total),),
        )


def first_not_close(ctx: TestContext, buffer: DeviceBuffer, n: int, value: float) -> int | None:
    """The first element of the array that differs from the host value, found by bisecting on
    prefix counts (about log2(n) reads of at most the array; only after a failed check). None if
    the prefixes disagree with the whole (a fault that does not read the same twice)."""
    if ctx.backend.count_f32_not_close(buffer, n, value, REL_TOL) == 0:
        return None
    low, high = 0, n  # the prefix of `low` elements is clean, that of `high` is not
    while high - low > 1:
        middle = (low + high) // 2
        if ctx.backend.count_f32_not_close(buffer, middle, value, REL_TOL):
            high = middle
        else:
            low = middle
    return low
