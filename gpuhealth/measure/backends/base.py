"""The backend contract: the primitives a card offers. The stress tests own every algorithm.

Two implementations: backends/cuda.py (CuPy raw kernels + NVML) and backends/sim.py (a simulated
card on a virtual clock). Both pass tests/test_backend_contract.py.

Rules every backend follows:
- Kernel primitives return the device time they took in seconds (CUDA events on a real card, the
  model's time on the sim) and leave their results on the device; nothing is verified here.
- Failures raise gpuhealth.errors: DeviceLost (the card is gone: every later call raises it too),
  DeviceOutOfMemory, KernelCompileError, DeviceError (any other CUDA error, ending only the test).
- Health queries never raise for "not supported": the field is None.
- Buffers are raw bytes; dtypes are named by the primitive that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from gpuhealth.models import (
    CardIdentity,
    HealthCounters,
    ProcessInfo,
    SettingReading,
    TelemetrySample,
    XidEvent,
)
from gpuhealth.patterns import MemPattern

StreamOp = Literal["copy", "scale", "add", "triad", "read"]
GemmDtype = Literal["fp16", "fp32"]

# The memory clear's name in begin_test (memclear.py): the last step of a grade, not a test.
MEMORY_CLEAR_STEP = "memory_clear"

# Bytes each stream kernel moves per element (float32), read + write: BabelStream's table.
STREAM_BYTES_PER_ELEMENT: dict[str, int] = {
    "copy": 8,  # c = a
    "scale": 8,  # b = s * c
    "add": 12,  # c = a + b
    "triad": 12,  # a = b + s * c
    "read": 4,  # sum(a), written to a per-block partial
}


@dataclass(frozen=True)
class DeviceInfo:
    """What the stress tests need to size their work."""

    name: str
    sm_count: int
    compute_capability: tuple[int, int]
    memory_total_bytes: int
    l2_bytes: int
    max_threads_per_sm: int
    fp32_lanes_per_sm: int
    max_sm_clock_mhz: float | None
    max_memory_clock_mhz: float | None
    memory_bus_width_bits: int | None

    @property
    def peak_fp32_tflops(self) -> float | None:
        if self.max_sm_clock_mhz is None:
            return None
        return self.sm_count * self.fp32_lanes_per_sm * 2 * self.max_sm_clock_mhz * 1e6 / 1e12

    @property
    def peak_memory_gbs(self) -> float | None:
        """Memory clock × bus width × 2 (double data rate), as NVML reports the clock."""
        if self.max_memory_clock_mhz is None or self.memory_bus_width_bits is None:
            return None
        return self.max_memory_clock_mhz * 1e6 * 2 * self.memory_bus_width_bits / 8 / 1e9


def fp32_lanes_per_sm(major: int, minor: int) -> int:
    """FP32 lanes per SM by compute capability (CUDA C Programming Guide, arithmetic throughput)."""
    if (major, minor) in ((8, 6), (8, 7), (8, 9)) or major >= 9:
        return 128
    if major in (7, 8) or (major, minor) == (6, 0):
        return 64
    return 128


@dataclass(frozen=True)
class MemCheck:
    """Result of checking a buffer against a pattern."""

    elapsed_s: float
    mismatches: int
    # (device address, expected word, actual word) of the first mismatches, in no set order
    first: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class CloseCheck:
    """Element-wise comparison of a result with its float64 reference."""

    checked: int
    mismatches: int
    max_abs_error: float
    max_rel_error: float
    # (flat index, actual, reference) of the first mismatches
    first: tuple[tuple[int, float, float], ...]


@runtime_checkable
class DeviceBuffer(Protocol):
    @property
    def nbytes(self) -> int: ...

    @property
    def address(self) -> int: ...


# --- PCIe copies (issue 14) ----------------------------------------------------------------------


@runtime_checkable
class HostBuffer(Protocol):
    """Pinned (page-locked) host memory, the end of a copy over the PCIe link."""

    @property
    def nbytes(self) -> int: ...

    @property
    def data(self) -> npt.NDArray[np.uint8]:
        """The bytes the host reads and writes: all nbytes on a real card; on the sim, its dense
        window (as for its device buffers), what the sim's copies move and its faults touch."""
        ...


@dataclass(frozen=True)
class LinkCopy:
    """One timed copy over the PCIe link, and the link as NVML read it while the copy was in
    flight (an idle link drops its generation to save power). None: not readable."""

    elapsed_s: float
    link_gen: int | None
    link_width: int | None


@runtime_checkable
class Backend(Protocol):
    """One card. Open through gpuhealth.measure.backends.open_backend; close when done."""

    name: str

    # --- identity, health, telemetry ------------------------------------------------------------
    def device_info(self) -> DeviceInfo: ...

    def identity(self) -> CardIdentity: ...

    def counters(self) -> HealthCounters: ...

    def settings(self) -> dict[str, SettingReading]:
        """The settings a buyer expects at factory defaults (readiness.SETTING_KEYS), by key:
        "not supported" and a failed query each say so; neither is ever read as the default."""
        ...

    def telemetry(self) -> TelemetrySample:
        """One sample now; t_s on this backend's clock (clock_s)."""
        ...

    def start_telemetry(self, interval_s: float) -> None:
        """Begin sampling in the background (a thread on a real card, the virtual clock on sim)."""
        ...

    def drain_telemetry(self) -> tuple[TelemetrySample, ...]:
        """Samples taken since the last drain, oldest first."""
        ...

    def stop_telemetry(self) -> None: ...

    def processes(self) -> tuple[ProcessInfo, ...]:
        """Other processes holding a context on the card."""
        ...

    def xid_events(self) -> tuple[XidEvent, ...]:
        """Xid events since the last call."""
        ...

    def clock_s(self) -> float:
        """A monotonic clock in seconds: wall time on a real card, virtual time on the sim."""
        ...

    def memory_free_bytes(self) -> int: ...

    def close(self) -> None: ...

    def begin_test(self, name: str) -> None:
        """Mark the start of a stress test (an NVTX range on a real card; fault timing on sim)."""
        ...

    def end_test(self) -> None: ...

    def sleep_s(self, seconds: float) -> None:
        """Wait with the card idle (bit-fade tests); virtual time on the sim."""
        ...

    # --- memory -----------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> DeviceBuffer: ...

    def free(self, buffer: DeviceBuffer) -> None: ...

    def upload(self, buffer: DeviceBuffer, host: npt.NDArray[np.generic]) -> None: ...

    def download(
        self, buffer: DeviceBuffer, dtype: type[np.generic], count: int, offset: int = 0
    ) -> npt.NDArray[np.generic]:
        """count elements of dtype starting at element offset."""
        ...

    def fill_f32(self, buffer: DeviceBuffer, n: int, value: float) -> None: ...

    def fill_uniform(
        self, buffer: DeviceBuffer, dtype: GemmDtype, n: int, seed: int, low: float, high: float
    ) -> None:
        """n values of dtype, uniform in [low, high), generated on the device from seed."""
        ...

    # --- kernels: each returns the device seconds it took ----------------------------------------
    def stream(
        self,
        op: StreamOp,
        a: DeviceBuffer,
        b: DeviceBuffer,
        c: DeviceBuffer,
        scalar: float,
        n: int,
        repeats: int = 1,
    ) -> float:
        """float32 STREAM kernels: copy c=a; scale b=s*c; add c=a+b; triad a=b+s*c;
        read: sums a, writing per-block partial sums into c. `repeats` launches back to back,
        timed together (each op gives the same result when repeated on unchanged inputs)."""
        ...

    def count_f32_not_close(
        self, buffer: DeviceBuffer, n: int, expected: float, rel_tol: float
    ) -> int:
        """How many of the first n float32 elements differ from expected by more than rel_tol."""
        ...

    def memtest_write(self, buffer: DeviceBuffer, n_words: int, pattern: MemPattern) -> float: ...

    def memtest_check(
        self,
        buffer: DeviceBuffer,
        n_words: int,
        pattern: MemPattern,
        rewrite: MemPattern | None,
        max_report: int,
    ) -> MemCheck:
        """Read every word and compare it with pattern; if rewrite, write that in the same pass."""
        ...

    def fma_loop(
        self,
        out: DeviceBuffer,
        smids: DeviceBuffer,
        blocks: int,
        threads: int,
        iterations: int,
        c: float,
    ) -> float:
        """Each thread runs FMA_CHAINS chains x <- x*x + c (chain j starts at fma_start(j)) for
        `iterations` steps; writes out[thread*FMA_CHAINS + j] (float32) and smids[block] (uint32).
        FLOPs: blocks*threads*FMA_CHAINS*iterations*2."""
        ...

    def mma_loop(
        self,
        out: DeviceBuffer,
        smids: DeviceBuffer,
        blocks: int,
        threads: int,
        iterations: int,
    ) -> float:
        """fp16 tensor-core mma (m16n8k16, f32 accumulate) on register fragments, alternating +B and
        -B so that every accumulator returns exactly to its start; writes per thread the sum of
        |acc - start| (float32, exactly 0 on a healthy card) and smids[block].
        FLOPs: blocks*(threads/32)*iterations*MMA_ACCUMULATORS*16*8*16*2."""
        ...

    def gemm_tensor(self, a: DeviceBuffer, bt: DeviceBuffer, c: DeviceBuffer, n: int) -> float:
        """Our raw tensor-core GEMM: C[i,j] = sum_k A[i,k]*Bt[j,k]; A, Bt fp16 row-major n×n,
        C float32 row-major. n is a multiple of 64."""
        ...

    def gemm_library(
        self,
        a: DeviceBuffer,
        b: DeviceBuffer,
        c: DeviceBuffer,
        n: int,
        dtype: GemmDtype,
        repeats: int = 1,
    ) -> float:
        """The vendor library (cuBLAS via cupy.matmul): C = A @ B, all n×n row-major of dtype,
        `repeats` times back to back (one timing around all of them)."""
        ...

    def gemm_reference_f64(
        self,
        a: DeviceBuffer,
        b: DeviceBuffer,
        out: DeviceBuffer,
        n: int,
        dtype: GemmDtype,
        b_transposed: bool,
    ) -> None:
        """out = A @ B (or A @ Bt.T) in float64 from inputs of dtype: the reference for checks."""
        ...

    def compare_close(
        self,
        result: DeviceBuffer,
        result_dtype: GemmDtype,
        reference: DeviceBuffer,
        n_elements: int,
        rel_tol: float,
        abs_tol: float,
        max_report: int,
    ) -> CloseCheck:
        """Count elements with |result - ref| > abs_tol + rel_tol*|ref| (NaN always counts).
        max_rel_error is max |result - ref| / max(|ref|, abs_tol / rel_tol); rel_tol > 0."""
        ...

    def word_hash(self, buffer: DeviceBuffer, nbytes: int) -> int:
        """An order-independent 64-bit digest of the buffer's 32-bit words (sum of mixed words):
        two runs of the same computation must give the same digest."""
        ...

    # --- PCIe copies (issue 14) -----------------------------------------------------------------
    def host_alloc(self, nbytes: int) -> HostBuffer:
        """Pinned host memory of nbytes (its content undefined)."""
        ...

    def host_free(self, buffer: HostBuffer) -> None: ...

    def link_copy(
        self,
        nbytes: int,
        h2d: tuple[DeviceBuffer, HostBuffer] | None = None,
        d2h: tuple[HostBuffer, DeviceBuffer] | None = None,
    ) -> LinkCopy:
        """Copy the first nbytes host to device (h2d: destination, source) and/or device to host
        (d2h: destination, source), asynchronously on streams of their own; with both, the two
        run at once. elapsed_s: device time from the first copy's start to the last one's end."""
        ...


FMA_CHAINS = 8
MMA_ACCUMULATORS = 4


def fma_start(chain: int) -> float:
    """Start value of FMA chain j; all threads share it so that every thread must agree."""
    return 0.1 + 0.2 * chain
