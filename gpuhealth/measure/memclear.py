"""The memory clear: the last step of a grade, so that no data of the seller's (or of the tests)
leaves with the card.

Every byte the allocator gives is taken in chunks (as much as is free), overwritten with zeros and
read back: a word that does not read zero is reported with its address (the card keeps stale data
there, or that memory is faulty). The sanitisation is NIST SP 800-88 Rev. 1's "Clear" (overwrite
user-addressable storage with a fixed value); what the driver itself holds is not reachable from
an application and is not counted as cleared. The backend primitives are the memory test's (write a
constant, check every word against it), so the same kernels and their tests cover both.
"""

from __future__ import annotations

import contextlib

from gpuhealth.errors import DeviceError, DeviceLost, DeviceOutOfMemory
from gpuhealth.measure.backends.base import MEMORY_CLEAR_STEP, Backend, DeviceBuffer
from gpuhealth.models import MemoryClear, UnclearedWord
from gpuhealth.patterns import MemPattern

METHOD = "Clear (NIST SP 800-88 Rev. 1): every allocatable byte overwritten with zeros, read back"
ZERO = MemPattern("constant", 0)
CHUNK_BYTES = 4 << 30  # a chunk the allocator gives at once on any card
ALIGN_BYTES = 2 << 20  # CUDA's allocation granularity
# Left free for the read-back's own scratch arrays (a mismatch counter and report, in CuPy's
# pool: 2 MiB pages) and the telemetry: without them the check itself could not allocate. Not
# user data's to hold: the record's fraction says how much was cleared.
SCRATCH_RESERVE_BYTES = 8 << 20
MAX_CHUNKS = 4096  # 8 TiB of 2 GiB chunks: a bound, not a limit any card reaches
MAX_REPORTED = 64
CLEAR_BUDGET_S = 60.0  # the watchdog's time for the clear: 141 GB at ~4 TB/s is well under 1 s


def not_cleared(why: str, total_bytes: int | None = None) -> MemoryClear:
    return MemoryClear("not_cleared", METHOD, memory_total_bytes=total_bytes, note=why)


def clear_memory(backend: Backend, total_bytes: int | None) -> MemoryClear:
    """Overwrite every allocatable byte with zeros and read it back. DeviceLost and a stop
    (stopping.StopRequested) propagate, the buffers freed; another card error ends the clear as
    not cleared, saying why."""
    buffers: list[DeviceBuffer] = []
    backend.begin_test(MEMORY_CLEAR_STEP)
    try:
        _allocate_all(backend, buffers)
        if not buffers:
            return not_cleared("no memory could be allocated to clear", total_bytes)
        seconds = sum(backend.memtest_write(b, b.nbytes // 4, ZERO) for b in buffers)
        words_not_zero = 0
        first: list[UnclearedWord] = []
        for buffer in buffers:
            left = MAX_REPORTED - len(first)
            check = backend.memtest_check(buffer, buffer.nbytes // 4, ZERO, None, max(1, left))
            seconds += check.elapsed_s
            words_not_zero += check.mismatches
            first += [UnclearedWord(address, actual) for address, _, actual in check.first][:left]
    except DeviceLost:
        raise
    except DeviceError as error:
        return not_cleared(f"the clear failed: {error.one_line()}", total_bytes)
    finally:
        _free(backend, buffers)
    cleared = sum(b.nbytes for b in buffers)
    return MemoryClear(
        status="cleared" if words_not_zero == 0 else "failed",
        method=METHOD,
        bytes_cleared=cleared,
        memory_total_bytes=total_bytes,
        fraction=round(cleared / total_bytes, 4) if total_bytes else None,
        seconds=round(seconds, 6),
        words_not_zero=words_not_zero,
        first_not_zero=tuple(sorted(first, key=lambda w: w.address)),
        note=None
        if words_not_zero == 0
        else f"{words_not_zero} word(s) read back non-zero after the overwrite",
    )


def _allocate_all(backend: Backend, buffers: list[DeviceBuffer]) -> None:
    """Take every byte the allocator gives but the scratch reserve: chunks as large as fit,
    halved when refused."""
    chunk = CHUNK_BYTES
    while chunk >= ALIGN_BYTES and len(buffers) < MAX_CHUNKS:
        free = backend.memory_free_bytes() - SCRATCH_RESERVE_BYTES
        size = min(chunk, free // ALIGN_BYTES * ALIGN_BYTES)
        if size < ALIGN_BYTES:
            return
        try:
            buffers.append(backend.alloc(size))
        except DeviceOutOfMemory:
            chunk = size // 2 // ALIGN_BYTES * ALIGN_BYTES


def _free(backend: Backend, buffers: list[DeviceBuffer]) -> None:
    for buffer in buffers:
        with contextlib.suppress(DeviceError):  # a card gone: nothing left to free
            backend.free(buffer)
    with contextlib.suppress(DeviceError):
        backend.end_test()
