"""Thermal soak: a sustained mixed load (FP16 GEMMs + a memory triad) with telemetry throughout,
then a memory-bound phase (triads back to back) that keeps the card busy at a lower, steady power.

Every iteration recomputes the same product from the same inputs, so its output digest must equal
the first iteration's: a differing digest is silent data corruption under heat. The soak stops
early, and says why, when the card comes within the guard margin of its slowdown temperature.

The memory phase is the run's second held power level: with power constant from the soak's start
on, the heat a card held at the start and its thermal resistance explain the temperatures equally
well; a step to a lower power held for several slow time constants tells them apart
(gpuhealth/judge/thermal_fit.py). A cool-down at idle would too, but it would leave the card idle.
"""

from __future__ import annotations

from collections import Counter

from gpuhealth.errors import DeviceError
from gpuhealth.measure.backends.base import STREAM_BYTES_PER_ELEMENT, DeviceBuffer
from gpuhealth.measure.stresstests.base import Outcome, TestContext
from gpuhealth.measure.stresstests.sm_checks import MAX_LISTED
from gpuhealth.measure.telemetry import ThermalGuard
from gpuhealth.models import Metric, Verification, WrongResult

SEEDS = (31, 32)
TRIAD_BYTES = 1 << 30
TRIAD = (0.1, 0.2, 0.4)  # b, c, scalar: a = b + s*c stays constant
GUARD_STEP_S = 0.1  # how often the thermal guard looks at the telemetry
MEMORY_CHUNK_S = 1.0  # the memory phase's throughput is recorded per chunk of about this long


def split_evenly(total: int, parts: int) -> list[int]:
    """total as `parts` positive integers that differ by at most one."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def digest_disagreements(digests: list[int]) -> tuple[int, list[WrongResult]]:
    """Iterations whose output digest differs from the most common one (all, if no majority)."""
    if not digests:
        return 0, []
    majority, count = Counter(digests).most_common(1)[0]
    if count * 2 <= len(digests):
        majority = -1  # no result is trustworthy when no digest holds a majority
    wrong = [
        WrongResult(
            location=f"iteration {i}", detail=f"output digest {d:#018x} differs from the majority's"
        )
        for i, d in enumerate(digests)
        if d != majority
    ]
    return len(wrong), wrong[:MAX_LISTED]


class SoakTest:
    name = "soak"
    title = "Thermal soak"

    def run(self, ctx: TestContext, outcome: Outcome) -> None:
        params = ctx.preset.soak
        backend = ctx.backend
        n = params.gemm_n
        a, b, c = (ctx.alloc(n * n * 2) for _ in range(3))
        backend.fill_uniform(a, "fp16", n * n, SEEDS[0], -1.0, 1.0)
        backend.fill_uniform(b, "fp16", n * n, SEEDS[1], -1.0, 1.0)
        elements = TRIAD_BYTES // 4
        x, y, z = (ctx.alloc(TRIAD_BYTES) for _ in range(3))
        backend.fill_f32(y, elements, TRIAD[0])
        backend.fill_f32(z, elements, TRIAD[1])
        # One product measured first sizes an iteration to about iteration_s of device time.
        one = ctx.timed(backend.gemm_library(a, b, c, n, "fp16"))
        repeats = max(1, int(params.iteration_s / max(one, 1e-6)))
        chunks = split_evenly(repeats, max(1, round(params.iteration_s / GUARD_STEP_S)))
        counters = backend.counters()
        guard = ThermalGuard(counters.temperature_slowdown_c)
        outcome.parameters.update(
            duration_s=params.duration_s,
            gemm_n=n,
            gemms_per_iteration=repeats,
            guard_c=guard.limit_c if guard.limit_c is not None else "none",
        )
        flops = 2.0 * n**3 * repeats
        stopped: str | None = None
        digests: list[int] = []
        tflops: list[float] = []
        times: list[float] = []
        start = backend.clock_s()
        while backend.clock_s() - start < params.duration_s and not stopped:
            # The guard looks at the telemetry after every chunk (~0.1 s), not only once per
            # iteration, so that a card with bad cooling is stopped close to the guard.
            seconds = 0.0
            for chunk in chunks:
                seconds += ctx.timed(backend.gemm_library(a, b, c, n, "fp16", chunk))
                stopped = guard.check(ctx.drain_telemetry())
                if stopped:
                    break
            if stopped:
                break  # an iteration cut short has no comparable digest
            ctx.timed(backend.stream("triad", x, y, z, TRIAD[2], elements))
            digests.append(backend.word_hash(c, n * n * 2))
            tflops.append(flops / seconds / 1e12)
            times.append(round(backend.clock_s() - ctx.run_start_s, 4))
            ctx.save_progress(
                outcome,
                (
                    Metric("iteration_tflops", "TFLOP/s", tuple(tflops)),
                    Metric("iteration_end_s", "s", tuple(times), False),
                ),
            )
            if ctx.over_budget():
                stopped = f"time budget of {ctx.budget_s:.0f} s spent"
        outcome.metrics.append(Metric("iteration_tflops", "TFLOP/s", tuple(tflops)))
        outcome.metrics.append(Metric("iteration_end_s", "s", tuple(times), False))
        outcome.parameters.update(
            iterations=len(tflops), soaked_s=round(backend.clock_s() - start, 3)
        )
        if not stopped and params.memory_phase_s > 0:
            stopped = self._memory_phase(ctx, outcome, guard, (x, y, z), elements)
        if stopped:
            outcome.parameters["stopped_early"] = stopped
            outcome.message = f"soak stopped early: {stopped}"
        if not digests:
            raise DeviceError(f"the soak stopped before its first iteration ended: {stopped}")
        mismatched, wrong = digest_disagreements(digests)
        bad_triad = backend.count_f32_not_close(x, elements, TRIAD[0] + TRIAD[2] * TRIAD[1], 1e-5)
        outcome.verifications.append(
            Verification(
                method=f"every iteration's GEMM output digest equals the majority's ({len(tflops)} "
                "iterations), and the triad array holds b + s·c after the last triad (the memory "
                "phase's)",
                passed=mismatched == 0 and bad_triad == 0,
                checked=len(tflops),
                mismatches=mismatched + (1 if bad_triad else 0),
                wrong_results=tuple(wrong)
                + (
                    (
                        WrongResult(
                            location="triad array",
                            detail=f"{bad_triad} elements wrong after the soak",
                        ),
                    )
                    if bad_triad
                    else ()
                ),
            )
        )

    def _memory_phase(
        self,
        ctx: TestContext,
        outcome: Outcome,
        guard: ThermalGuard,
        arrays: tuple[DeviceBuffer, DeviceBuffer, DeviceBuffer],
        elements: int,
    ) -> str | None:
        """Triads back to back for memory_phase_s: memory-bound, so the card stays busy at a
        steady power well below the cap. Returns why it stopped early, if it did."""
        params, backend = ctx.preset.soak, ctx.backend
        x, y, z = arrays
        nbytes = STREAM_BYTES_PER_ELEMENT["triad"] * elements
        start = backend.clock_s()
        one = ctx.timed(backend.stream("triad", x, y, z, TRIAD[2], elements))
        per_step = max(1, round(GUARD_STEP_S / max(one, 1e-6)))
        steps = max(1, round(MEMORY_CHUNK_S / GUARD_STEP_S))
        stopped: str | None = None
        rates: list[float] = []
        ends: list[float] = []
        launches = 1
        while backend.clock_s() - start < params.memory_phase_s and not stopped:
            seconds, count = 0.0, 0
            for _ in range(steps):
                seconds += ctx.timed(backend.stream("triad", x, y, z, TRIAD[2], elements, per_step))
                count += per_step
                stopped = guard.check(ctx.drain_telemetry())
                if stopped or backend.clock_s() - start >= params.memory_phase_s:
                    break
            launches += count
            if seconds > 0 and not stopped:  # a chunk cut short by the guard is not kept
                rates.append(round(nbytes * count / seconds / 1e9, 3))
                ends.append(round(backend.clock_s() - ctx.run_start_s, 4))
                ctx.save_progress(
                    outcome,
                    (
                        Metric("memory_phase_gbs", "GB/s", tuple(rates)),
                        Metric("memory_phase_chunk_end_s", "s", tuple(ends), False),
                    ),
                )
            if not stopped and ctx.over_budget():
                stopped = f"time budget of {ctx.budget_s:.0f} s spent"
        outcome.metrics.append(Metric("memory_phase_gbs", "GB/s", tuple(rates)))
        outcome.metrics.append(Metric("memory_phase_chunk_end_s", "s", tuple(ends), False))
        outcome.parameters.update(
            memory_phase_s=params.memory_phase_s,
            memory_phase_start_s=round(start - ctx.run_start_s, 4),
            memory_phase_end_s=round(backend.clock_s() - ctx.run_start_s, 4),
            memory_phase_launches=launches,
        )
        return stopped
