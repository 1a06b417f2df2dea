"""Memory integrity: patterns over (nearly) all device memory, every word read back.

Each pattern is a moving inversion: write p; read every word and check p while writing ~p; read
every word and check ~p. Patterns are stateless functions of the word's index (gpuhealth.patterns),
so a bad word is reported with its exact device address and the bits that differ.
"""

from __future__ import annotations

from gpuhealth.errors import DeviceError, DeviceOutOfMemory
from gpuhealth.judge.findings import MEMTEST_COVERAGE_TARGET as COVERAGE_TARGET
from gpuhealth.measure.backends.base import DeviceBuffer, MemCheck
from gpuhealth.measure.stresstests.base import Outcome, TestContext
from gpuhealth.models import MemoryMismatch, Metric, Verification
from gpuhealth.patterns import MemPattern, standard_sequence

MAX_REPORTED = 64
PASS_SEED = 0x5EED  # pass k uses the random pattern seeded PASS_SEED + k
ALIGN_BYTES = 2 << 20


def reserve_bytes(total_bytes: int) -> int:
    """Memory left free for the driver, CuPy's pool and the telemetry: 512 MiB or 0.5%."""
    return max(512 << 20, total_bytes // 200)


class MemtestTest:
    name = "memtest"
    title = "Memory integrity"

    def run(self, ctx: TestContext, outcome: Outcome) -> None:
        params = ctx.preset.memtest
        total = ctx.info.memory_total_bytes
        buffer, nbytes = self._allocate(ctx, total)
        n_words = nbytes // 4
        repeated = tuple(
            pattern
            for number in range(params.passes)
            for pattern in standard_sequence(params.patterns, seed=PASS_SEED + number)
        )
        sequence = repeated + tuple(
            MemPattern("walking_ones", shift) for shift in range(1, params.walking_shifts + 1)
        )
        coverage = nbytes / total
        outcome.parameters.update(
            tested_bytes=nbytes,
            total_bytes=total,
            coverage=round(coverage, 4),
            patterns=len(sequence),
            passes=params.passes,
            bit_fade_s=params.bit_fade_s,
        )
        found: dict[int, MemoryMismatch] = {}
        mismatches = 0
        speeds: list[float] = []
        done = 0
        for pattern in sequence:
            if done and ctx.over_budget():
                break
            seconds, bad = self._moving_inversion(ctx, buffer, n_words, pattern, found)
            mismatches += bad
            speeds.append(4 * nbytes / seconds / 1e9)
            done += 1
        outcome.metrics.append(Metric("pass_gbs", "GB/s", tuple(speeds)))
        passes = 2 * done  # two read-and-check passes per pattern
        if params.bit_fade_s > 0 and not ctx.over_budget():
            mismatches += self._bit_fade(ctx, buffer, n_words, params.bit_fade_s, found)
            passes += 2
        outcome.parameters["patterns_done"] = done
        method = (
            f"every word of {nbytes / 2**30:.2f} GiB ({coverage:.1%} of memory) written and read "
            f"back under {done} pattern(s) and their inverses"
        )
        outcome.verifications.append(
            Verification(
                method=method,
                passed=mismatches == 0,
                checked=n_words * passes,
                mismatches=mismatches,
                memory_errors=tuple(sorted(found.values(), key=lambda m: m.address)),
            )
        )
        if done < len(sequence):
            raise DeviceError(
                f"time budget of {ctx.budget_s:.0f} s spent after {done} of "
                f"{len(sequence)} patterns"
            )
        if coverage < COVERAGE_TARGET:
            outcome.message = (
                f"covered {coverage:.1%} of memory (target {COVERAGE_TARGET:.0%}): "
                "memory was in use by someone else"
            )

    def _allocate(self, ctx: TestContext, total: int) -> tuple[DeviceBuffer, int]:
        """The largest buffer that leaves the reserve free; shrinks if the allocator says no."""
        nbytes = (ctx.backend.memory_free_bytes() - reserve_bytes(total)) // ALIGN_BYTES
        nbytes *= ALIGN_BYTES
        for _ in range(8):
            if nbytes <= 0:
                break
            try:
                return ctx.alloc(nbytes), nbytes
            except DeviceOutOfMemory:
                nbytes = int(nbytes * 0.98) // ALIGN_BYTES * ALIGN_BYTES
        raise DeviceOutOfMemory("could not allocate memory for the memory test")

    def _moving_inversion(
        self,
        ctx: TestContext,
        buffer: DeviceBuffer,
        n_words: int,
        pattern: MemPattern,
        found: dict[int, MemoryMismatch],
    ) -> tuple[float, int]:
        backend = ctx.backend
        seconds = ctx.timed(backend.memtest_write(buffer, n_words, pattern))
        inverse = pattern.inverted()
        first = backend.memtest_check(buffer, n_words, pattern, inverse, MAX_REPORTED)
        second = backend.memtest_check(buffer, n_words, inverse, None, MAX_REPORTED)
        seconds += ctx.timed(first.elapsed_s) + ctx.timed(second.elapsed_s)
        self._collect(first, pattern, found)
        self._collect(second, inverse, found)
        return seconds, first.mismatches + second.mismatches

    def _bit_fade(
        self,
        ctx: TestContext,
        buffer: DeviceBuffer,
        n_words: int,
        wait_s: float,
        found: dict[int, MemoryMismatch],
    ) -> int:
        """Write, leave the card idle, read back: cells that leak charge lose their value."""
        bad = 0
        for pattern in (MemPattern("constant", 0xFFFFFFFF), MemPattern("constant", 0)):
            ctx.timed(ctx.backend.memtest_write(buffer, n_words, pattern))
            ctx.backend.sleep_s(wait_s / 2)
            check = ctx.backend.memtest_check(buffer, n_words, pattern, None, MAX_REPORTED)
            ctx.timed(check.elapsed_s)
            self._collect(check, MemPattern(pattern.kind, pattern.param), found, " (bit fade)")
            bad += check.mismatches
        return bad

    @staticmethod
    def _collect(
        check: MemCheck,
        pattern: MemPattern,
        found: dict[int, MemoryMismatch],
        suffix: str = "",
    ) -> None:
        for address, expected, actual in check.first:
            if address not in found and len(found) < MAX_REPORTED:
                found[address] = MemoryMismatch(address, expected, actual, pattern.label + suffix)
