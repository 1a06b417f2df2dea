"""PCIe: pinned host <-> device copies, host to device, device to host and both at once.

Each copy moves copy_bytes (>= 256 MiB: long enough to reach the link's steady state) and every
byte of every copy, warm-ups included, is checked:
- host to device: the host buffer holds a seeded pattern (patterns.py, written by numpy); after
  each copy the device checks every word against the same pattern (memtest_check) and, in the
  same pass, writes its inverse, so that the next copy must write every byte again;
- device to host: the device writes the pattern itself (memtest_write: it never crosses the
  link), each copy lands in a zeroed host buffer and numpy compares every byte with the host's
  pattern.
A failed check names the direction and the first bad byte offset. The link's generation and
width are read while the copies are in flight (an idle link drops its generation), and the PCIe
replay counter before and after the test. Judging (the rate against the link's theoretical one)
is in gpuhealth/judge/findings_links.py.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gpuhealth.errors import DeviceError
from gpuhealth.measure.backends.base import DeviceBuffer, HostBuffer, LinkCopy
from gpuhealth.measure.stresstests.base import Outcome, TestContext, repeat
from gpuhealth.models import Metric, Verification, WrongResult
from gpuhealth.patterns import MemPattern, expected_words

COPY_MIN_BYTES = 256 << 20  # below this a copy does not reach the link's steady state
MEMORY_RESERVE_BYTES = 512 << 20
PATTERN = MemPattern("random", 0x9C1E)
FILL_CHUNK_WORDS = 1 << 23  # numpy fills the host pattern 32 MiB at a time (bounded temporaries)
MAX_REPORT = 16
DIRECTIONS = ("h2d", "d2h", "both")
TITLES = {
    "h2d": "host to device",
    "d2h": "device to host",
}


@dataclass
class CopyCheck:
    """What the checks of one direction's copies found so far."""

    checked_words: int = 0
    mismatches: int = 0
    first_offset: int | None = None
    expected: int | None = None  # the first bad byte: what it should hold and what it held
    actual: int | None = None

    def add(self, words: int, bad: int, first: tuple[int, int, int] | None) -> None:
        self.checked_words += words
        self.mismatches += bad
        if first is not None and (self.first_offset is None or first[0] < self.first_offset):
            self.first_offset, self.expected, self.actual = first


@dataclass
class Links:
    """The link as read during the timed copies."""

    gens: list[int] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)

    def add(self, copy: LinkCopy) -> None:
        if copy.link_gen is not None:
            self.gens.append(copy.link_gen)
        if copy.link_width is not None:
            self.widths.append(copy.link_width)


def fill_pattern(host: npt.NDArray[np.uint8]) -> None:
    """The seeded pattern into host memory: patterns.expected_words(PATTERN, i, any base), word
    for word (fill_words from index 0)."""
    fill_words(host[: host.size - host.size % 4].view(np.uint32), 0)


def fill_words(words: npt.NDArray[np.uint32], first: int) -> None:
    """words[i] = the pattern's word for index first + i. Below 2^32 the index's high half is 0
    and the random pattern is lowbias32(i ^ seed): computed in place, 32 MiB at a time (the
    general form takes ~5x longer on a 256 MiB buffer); from 2^32 on, the general form."""
    seed = np.uint32(PATTERN.param)
    for start in range(0, words.size, FILL_CHUNK_WORDS):
        stop = min(start + FILL_CHUNK_WORDS, words.size)
        low, high = first + start, first + stop
        if high > 1 << 32:
            words[start:stop] = expected_words(PATTERN, np.arange(low, high, dtype=np.uint64), 0)
            continue
        x = words[start:stop]
        x[:] = np.arange(low, high, dtype=np.uint32)
        x ^= seed
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x7FEB352D)
        x ^= x >> np.uint32(15)
        x *= np.uint32(0x846CA68B)
        x ^= x >> np.uint32(16)


def first_bad_byte(word_offset: int, expected: int, actual: int) -> tuple[int, int, int]:
    """(byte offset, expected, actual) of the lowest wrong byte of a little-endian word."""
    diff = (expected ^ actual) & 0xFFFFFFFF
    byte = next(i for i in range(4) if (diff >> (8 * i)) & 0xFF)
    return word_offset + byte, (expected >> (8 * byte)) & 0xFF, (actual >> (8 * byte)) & 0xFF


class PcieTest:
    name = "pcie"
    title = "PCIe host-device copies"

    def run(self, ctx: TestContext, outcome: Outcome) -> None:
        params = ctx.preset.pcie
        nbytes = max(params.copy_bytes, COPY_MIN_BYTES) // 16 * 16
        free = ctx.backend.memory_free_bytes() - MEMORY_RESERVE_BYTES
        if 2 * nbytes > free:
            raise DeviceError(
                f"not enough free memory for two {nbytes >> 20} MiB copy buffers "
                f"({max(free, 0) / 2**30:.2f} GiB free)"
            )
        replays_before = ctx.backend.counters().pcie_replay_count
        outcome.parameters.update(
            copy_bytes=nbytes, warmup=params.warmup, repetitions=params.repetitions
        )
        hosts: list[HostBuffer] = []
        try:
            self._copies(ctx, outcome, nbytes, hosts)
        finally:
            for host in hosts:
                with contextlib.suppress(DeviceError):  # card gone: the process frees it
                    ctx.backend.host_free(host)
        replays_after = ctx.backend.counters().pcie_replay_count
        if replays_before is not None and replays_after is not None:
            outcome.parameters["replays_during_test"] = replays_after - replays_before

    def _copies(
        self, ctx: TestContext, outcome: Outcome, nbytes: int, hosts: list[HostBuffer]
    ) -> None:
        params = ctx.preset.pcie
        backend = ctx.backend
        source, landing = backend.host_alloc(nbytes), backend.host_alloc(nbytes)
        hosts += [source, landing]
        on_device, from_device = ctx.alloc(nbytes), ctx.alloc(nbytes)
        fill_pattern(source.data)
        ctx.timed(backend.memtest_write(from_device, nbytes // 4, PATTERN))
        checks = {direction: CopyCheck() for direction in TITLES}
        links = Links()
        rates: dict[str, list[float]] = {direction: [] for direction in DIRECTIONS}

        def timed(direction: str, copy: LinkCopy, moved: int) -> float:
            if not copy.elapsed_s > 0:  # a timer that did not run: no rate to report
                raise DeviceError(f"a {direction} copy was timed at {copy.elapsed_s} s")
            links.add(copy)
            rates[direction].append(moved / copy.elapsed_s / 1e9)
            return copy.elapsed_s

        def h2d() -> float:
            copy = backend.link_copy(nbytes, h2d=(on_device, source))
            self._check_device(ctx, on_device, nbytes, checks["h2d"])
            return timed("h2d", copy, nbytes)

        def d2h() -> float:
            landing.data[:] = 0
            copy = backend.link_copy(nbytes, d2h=(landing, from_device))
            self._check_host(landing, source, nbytes, checks["d2h"])
            return timed("d2h", copy, nbytes)

        def both() -> float:
            landing.data[:] = 0
            copy = backend.link_copy(nbytes, h2d=(on_device, source), d2h=(landing, from_device))
            self._check_device(ctx, on_device, nbytes, checks["h2d"])
            self._check_host(landing, source, nbytes, checks["d2h"])
            return timed("both", copy, 2 * nbytes)

        for direction, launch in (("h2d", h2d), ("d2h", d2h), ("both", both)):
            repeat(ctx, launch, params.warmup, 0)
            rates[direction].clear()  # warm-ups are checked, not timed
            repeat(ctx, launch, 0, params.repetitions)
            outcome.metrics.append(Metric(f"{direction}_gbs", "GB/s", tuple(rates[direction])))
        if links.gens:
            outcome.parameters["link_gen_under_load"] = max(links.gens)
        if links.widths:
            outcome.parameters["link_width_under_load"] = max(links.widths)
        for direction, check in checks.items():
            outcome.verifications.append(self._verification(direction, check))

    @staticmethod
    def _check_device(
        ctx: TestContext, buffer: DeviceBuffer, nbytes: int, check: CopyCheck
    ) -> None:
        """Every word the copy wrote, against the pattern; the inverse written in the same pass."""
        result = ctx.backend.memtest_check(
            buffer, nbytes // 4, PATTERN, PATTERN.inverted(), MAX_REPORT
        )
        ctx.timed(result.elapsed_s)
        first = None
        if result.first:
            address, expected, actual = min(result.first)
            first = first_bad_byte(address - buffer.address, expected, actual)
        check.add(nbytes // 4, result.mismatches, first)

    @staticmethod
    def _check_host(landing: HostBuffer, source: HostBuffer, nbytes: int, check: CopyCheck) -> None:
        """Every word the copy brought back, against the host's own copy of the pattern."""
        usable = min(nbytes, landing.data.size, source.data.size) // 4 * 4
        got, want = landing.data[:usable].view(np.uint32), source.data[:usable].view(np.uint32)
        if np.array_equal(got, want):
            check.add(nbytes // 4, 0, None)
            return
        bad = np.flatnonzero(got != want)
        at = int(bad[0])
        check.add(nbytes // 4, int(bad.size), first_bad_byte(4 * at, int(want[at]), int(got[at])))

    @staticmethod
    def _verification(direction: str, check: CopyCheck) -> Verification:
        where = {
            "h2d": "on the device against the seeded pattern",
            "d2h": "on the host against the seeded pattern the device wrote",
        }[direction]
        wrong: tuple[WrongResult, ...] = ()
        if check.mismatches:
            offset = "unknown" if check.first_offset is None else str(check.first_offset)
            wrong = (
                WrongResult(
                    location=f"{TITLES[direction]} copy, byte offset {offset}",
                    expected=None if check.expected is None else float(check.expected),
                    actual=None if check.actual is None else float(check.actual),
                    detail=f"{check.mismatches} wrong of {check.checked_words} 32-bit words "
                    f"copied {TITLES[direction]}",
                ),
            )
        return Verification(
            method=f"every byte of every {TITLES[direction]} copy (also those run both ways at "
            f"once) checked {where}",
            passed=check.mismatches == 0,
            checked=check.checked_words,
            mismatches=check.mismatches,
            wrong_results=wrong,
        )
