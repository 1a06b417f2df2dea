"""The real card: CuPy raw kernels from kernels/, CUDA events for timing, cuBLAS through
cupy.matmul, and NVML (backends/nvml.py) for identity, counters, telemetry and Xid events.

With gpuhealth/measure/backends/kernels.py, the only module that imports cupy (lazily, in
CudaBackend()).
Buffers are plain cudaMalloc allocations (never managed memory, never CuPy's pool, so that freed
memory really is free for the next test); CuPy arrays appear only as views over them, for
cupy.matmul and the small scratch arrays of the check kernels.

CUDA errors become gpuhealth errors in one place (`_cuda`): out of memory → DeviceOutOfMemory;
the sticky errors after which the context is unusable (illegal address, ECC uncorrectable, launch
failure, device unavailable...) → DeviceLost, and every later call raises it again; anything else
→ DeviceError naming the CUDA error.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import importlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gpuhealth.errors import (
    DeviceError,
    DeviceLost,
    DeviceOutOfMemory,
    EnvironmentUnusable,
    GpuHealthError,
    NotApplicable,
)
from gpuhealth.measure.backends import kernels
from gpuhealth.measure.backends.base import (
    FMA_CHAINS,
    CloseCheck,
    DeviceBuffer,
    DeviceInfo,
    GemmDtype,
    HostBuffer,
    LinkCopy,
    MemCheck,
    StreamOp,
    fp32_lanes_per_sm,
)
from gpuhealth.measure.backends.nvml import Nvml, NvmlDevice
from gpuhealth.measure.telemetry import ThreadSampler
from gpuhealth.models import (
    CardIdentity,
    HealthCounters,
    ProcessInfo,
    SettingReading,
    TelemetrySample,
    XidEvent,
)
from gpuhealth.patterns import PATTERN_CODES, MemPattern

INSTALL_HINT = "pip install 'gpuhealth[cuda13]' (or [cuda12] for a CUDA 12 driver)"

# CUDA error codes (the runtime and driver APIs share these numbers) that leave the context
# unusable: after one of them nothing more can run on the card in this process.
_LOST_STATUSES = frozenset(
    {3, 4, 46, 100, 101, 214, 700, 702, 709, 714, 715, 716, 717, 718, 719, 999}
)
_OUT_OF_MEMORY = 2
_LOST_HINT = "check `dmesg` for an Xid; the card needs a reset before it can be tested"

# cudaDeviceAttr values (driver_types.h) read with cudaDeviceGetAttribute.
_ATTR_CLOCK_RATE_KHZ = 13
_ATTR_MEMORY_CLOCK_RATE_KHZ = 36
_ATTR_MEMORY_BUS_WIDTH = 37

_NO_REWRITE = -1
_GEMM_TILE = 64
_GEMM_THREADS = 128


@dataclass(frozen=True, eq=False)
class CudaBuffer:
    """A cudaMalloc allocation: its device address and size."""

    address: int
    nbytes: int


@dataclass(frozen=True, eq=False)
class PinnedBuffer:
    """A cudaHostAlloc allocation (page-locked host memory) and a numpy view of its bytes."""

    address: int
    nbytes: int
    data: npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Geometry:
    """A grid-stride launch: at most SM count × blocks_per_sm blocks of `threads`, and never more
    blocks than there are work items (16-byte vectors, or elements) for their threads."""

    blocks_per_sm: int
    threads: int

    def blocks(self, sm_count: int, items: int | None = None) -> int:
        most = sm_count * self.blocks_per_sm
        if items is not None:
            most = min(most, -(-items // self.threads))
        return max(1, most)


# Chosen with bench/bench_kernels.py on an H200 (2 GiB arrays; cudaMemcpy D2D 4210 GB/s).
# Streaming kernels run best on a grid of about one 16-byte vector per thread (BabelStream's
# shape): 4096 blocks per SM covers 2 GiB arrays, smaller arrays get fewer blocks. Triad 4370 and
# copy 4219 GB/s there, against 4141 and 3945 with one resident wave (4/SM).
DEFAULT_STREAM_GEOMETRY = Geometry(blocks_per_sm=4096, threads=256)
# memtest write + check: 4484 GB/s at 1024/SM, 3894 at 8/SM.
DEFAULT_MEMTEST_GEOMETRY = Geometry(blocks_per_sm=1024, threads=256)
# stream read writes one partial sum per block: 4545 GB/s at 128/SM (16896 partials on 132 SMs);
# a one-float4-per-thread grid is slower (3608) and would write 540k partials.
DEFAULT_READ_GEOMETRY = Geometry(blocks_per_sm=128, threads=256)
# The check kernels (counts, maxima, digests) end with atomics per thread or warp: one wave.
DEFAULT_REDUCE_GEOMETRY = Geometry(blocks_per_sm=4, threads=256)


def _import_cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:
        raise EnvironmentUnusable(f"CuPy is not usable here ({exc})", hint=INSTALL_HINT) from exc
    return cupy


def _cuda_error_types(cp: Any) -> tuple[type[BaseException], ...]:
    """The exception classes CuPy raises for CUDA, memory and cuBLAS failures."""
    found: list[type[BaseException]] = [
        cp.cuda.runtime.CUDARuntimeError,
        cp.cuda.driver.CUDADriverError,
        cp.cuda.memory.OutOfMemoryError,
    ]
    # Without cuBLAS, cupy.matmul fails with a CUDA error instead.
    with contextlib.suppress(ImportError, AttributeError):
        found.append(importlib.import_module("cupy.cuda.cublas").CUBLASError)
    return tuple(found)


def _vectors(n: int) -> int:
    """16-byte vectors covering n 4-byte elements (the kernels' unit of work)."""
    return -(-n // 4)


def _check_size(buffer: DeviceBuffer | HostBuffer, nbytes: int, what: str) -> None:
    if nbytes < 0 or nbytes > buffer.nbytes:
        raise ValueError(f"{what} needs {nbytes} bytes, the buffer has {buffer.nbytes}")


class CudaBackend:
    """One NVIDIA GPU through CuPy and NVML (see gpuhealth.measure.backends.base.Backend)."""

    name = "cuda"

    def __init__(self, index: int = 0) -> None:
        cp = _import_cupy()
        self._cp = cp
        self.index = index
        self._error_types = _cuda_error_types(cp)
        self._lost: str | None = None
        self._t0 = time.monotonic()
        self._buffers: dict[int, CudaBuffer] = {}
        self._host_buffers: dict[int, PinnedBuffer] = {}
        self._copy_streams: tuple[Any, Any] | None = None
        self._sampler: ThreadSampler | None = None
        self._ranges = 0
        self._device = self._open_device(index)
        with self._cuda("opening the GPU"):
            self._pci_bus_id = str(cp.cuda.runtime.deviceGetPCIBusId(index))
        # Why NVML is missing, when it is: identity then holds CUDA's facts only.
        self.nvml_note: str | None = None
        self._nvml, self._nvml_device = self._open_nvml()
        with self._cuda("opening the GPU"):
            self._info = self._read_device_info()
        self._arch = f"{self._info.compute_capability[0]}{self._info.compute_capability[1]}"
        self._start = cp.cuda.Event()
        self._end = cp.cuda.Event()
        # Launch shapes; public so that bench/bench_kernels.py can try others.
        self.stream_geometry = DEFAULT_STREAM_GEOMETRY
        self.memtest_geometry = DEFAULT_MEMTEST_GEOMETRY
        self.read_geometry = DEFAULT_READ_GEOMETRY
        self.reduce_geometry = DEFAULT_REDUCE_GEOMETRY

    # --- opening ---------------------------------------------------------------------------------
    def _open_device(self, index: int) -> Any:
        cp = self._cp
        try:
            count = int(cp.cuda.runtime.getDeviceCount())
        except self._error_types as exc:
            raise EnvironmentUnusable(
                f"CUDA cannot reach a GPU ({exc})",
                hint=f"check the driver with nvidia-smi, then {INSTALL_HINT}",
            ) from exc
        if not 0 <= index < count:
            raise EnvironmentUnusable(
                f"there is no CUDA device {index} (CUDA sees {count})",
                hint="check CUDA_VISIBLE_DEVICES and `nvidia-smi -L`",
            )
        device = cp.cuda.Device(index)
        device.use()
        return device

    def _open_nvml(self) -> tuple[Nvml | None, NvmlDevice | None]:
        """NVML session and device matched by PCI bus id (CUDA and NVML number cards differently
        under CUDA_VISIBLE_DEVICES); (None, None) with a note when NVML is not usable."""
        try:
            nvml = Nvml.open()
        except EnvironmentUnusable as exc:
            self.nvml_note = exc.one_line()
            return None, None
        try:
            return nvml, nvml.device_by_pci_bus_id(self._pci_bus_id)
        except GpuHealthError as exc:
            nvml.close()
            self.nvml_note = exc.one_line()
            return None, None

    def _attribute(self, attribute: int) -> int | None:
        try:
            value = int(self._cp.cuda.runtime.deviceGetAttribute(attribute, self.index))
        except self._error_types:
            return None
        return value or None

    def _read_device_info(self) -> DeviceInfo:
        props = self._cp.cuda.runtime.getDeviceProperties(self.index)
        major, minor = int(props["major"]), int(props["minor"])
        sm_clock: float | None = None
        memory_clock: float | None = None
        bus_width: int | None = None
        if self._nvml_device is not None:
            sm_clock, memory_clock = self._nvml_device.max_clocks_mhz()
            bus_width = self._nvml_device.memory_bus_width_bits()
        # CUDA's attributes as fallbacks (kHz; CUDA 13 dropped some of them: then None).
        if sm_clock is None and (khz := self._attribute(_ATTR_CLOCK_RATE_KHZ)):
            sm_clock = khz / 1000.0
        if memory_clock is None and (khz := self._attribute(_ATTR_MEMORY_CLOCK_RATE_KHZ)):
            memory_clock = khz / 1000.0
        bus_width = bus_width or self._attribute(_ATTR_MEMORY_BUS_WIDTH)
        raw_name = props["name"]
        name = raw_name.decode(errors="replace") if isinstance(raw_name, bytes) else str(raw_name)
        return DeviceInfo(
            name=name,
            sm_count=int(props["multiProcessorCount"]),
            compute_capability=(major, minor),
            memory_total_bytes=int(props["totalGlobalMem"]),
            l2_bytes=int(props["l2CacheSize"]),
            max_threads_per_sm=int(props["maxThreadsPerMultiProcessor"]),
            fp32_lanes_per_sm=fp32_lanes_per_sm(major, minor),
            max_sm_clock_mhz=sm_clock,
            max_memory_clock_mhz=memory_clock,
            memory_bus_width_bits=bus_width,
        )

    # --- error translation -----------------------------------------------------------------------
    @contextmanager
    def _cuda(self, what: str) -> Iterator[None]:
        """Run CUDA work on this card; CUDA failures leave as gpuhealth errors."""
        if self._lost is not None:
            raise DeviceLost(self._lost, hint=_LOST_HINT)
        try:
            with self._device:
                yield
        except self._error_types as exc:
            raise self._translate(exc, what) from exc

    def _translate(self, exc: BaseException, what: str) -> GpuHealthError:
        cp = self._cp
        status = getattr(exc, "status", None)
        is_cuda = isinstance(exc, cp.cuda.runtime.CUDARuntimeError | cp.cuda.driver.CUDADriverError)
        if isinstance(exc, cp.cuda.memory.OutOfMemoryError) or (
            is_cuda and status == _OUT_OF_MEMORY
        ):
            return DeviceOutOfMemory(f"GPU {self.index} ran out of memory in {what}: {exc}")
        if is_cuda and status in _LOST_STATUSES:
            return self._mark_lost(f"{what} failed on GPU {self.index}: {exc}")
        if not is_cuda:
            # A library error (cuBLAS) may hide a sticky CUDA error: ask the context.
            try:
                cp.cuda.runtime.deviceSynchronize()
            except self._error_types as probe:
                if getattr(probe, "status", None) in _LOST_STATUSES:
                    return self._mark_lost(f"{what} failed on GPU {self.index}: {probe}")
        return DeviceError(f"{what} failed on GPU {self.index}: {exc}")

    def _mark_lost(self, message: str) -> DeviceLost:
        self._lost = message
        return DeviceLost(message, hint=_LOST_HINT)

    # --- identity, health, telemetry -------------------------------------------------------------
    def device_info(self) -> DeviceInfo:
        return self._info

    def identity(self) -> CardIdentity:
        info = self._info
        cc = f"{info.compute_capability[0]}.{info.compute_capability[1]}"
        if self._nvml_device is None:
            base = CardIdentity(name=info.name, backend=self.name, index=self.index)
        else:
            base = self._nvml_device.identity(self.name, self.index)
        return dataclasses.replace(
            base,
            sm_count=info.sm_count,
            compute_capability=base.compute_capability or cc,
            memory_total_bytes=base.memory_total_bytes or info.memory_total_bytes,
            pci_bus_id=base.pci_bus_id or self._pci_bus_id,
            cuda_driver_version=base.cuda_driver_version or self._cuda_driver_version(),
            memory_bus_width_bits=base.memory_bus_width_bits or info.memory_bus_width_bits,
            max_sm_clock_mhz=base.max_sm_clock_mhz or info.max_sm_clock_mhz,
            max_memory_clock_mhz=base.max_memory_clock_mhz or info.max_memory_clock_mhz,
        )

    def _cuda_driver_version(self) -> str | None:
        try:
            version = int(self._cp.cuda.runtime.driverGetVersion())
        except self._error_types:
            return None
        return f"{version // 1000}.{version % 1000 // 10}"

    def counters(self) -> HealthCounters:
        if self._nvml_device is None:
            return HealthCounters()
        return self._nvml_device.counters()

    def settings(self) -> dict[str, SettingReading]:
        if self._nvml_device is None:
            return {}  # readiness.py marks every setting unreadable
        return self._nvml_device.settings()

    def telemetry(self) -> TelemetrySample:
        if self._nvml_device is None:
            return TelemetrySample(t_s=self.clock_s())
        return self._nvml_device.telemetry(self.clock_s())

    def start_telemetry(self, interval_s: float) -> None:
        self.stop_telemetry()
        self._sampler = ThreadSampler(self.telemetry, interval_s)
        self._sampler.start()

    def drain_telemetry(self) -> tuple[TelemetrySample, ...]:
        return () if self._sampler is None else self._sampler.drain()

    def stop_telemetry(self) -> None:
        # The stopped sampler stays, so that a drain after stop still returns its last samples.
        if self._sampler is not None:
            self._sampler.stop()

    def processes(self) -> tuple[ProcessInfo, ...]:
        if self._nvml_device is None:
            return ()
        own = os.getpid()
        return tuple(p for p in self._nvml_device.processes() if p.pid != own)

    def xid_events(self) -> tuple[XidEvent, ...]:
        if self._nvml_device is None:
            return ()
        return self._nvml_device.xid_events(self.clock_s())

    def clock_s(self) -> float:
        return time.monotonic() - self._t0

    def memory_free_bytes(self) -> int:
        with self._cuda("cudaMemGetInfo"):
            free, _total = self._cp.cuda.runtime.memGetInfo()
        return int(free)

    def begin_test(self, name: str) -> None:
        """An NVTX range per test, so that a profiler timeline shows which test ran what."""
        nvtx = getattr(self._cp.cuda, "nvtx", None)
        if nvtx is not None and getattr(nvtx, "available", False):
            nvtx.RangePush(f"gpuhealth {name}")
            self._ranges += 1

    def end_test(self) -> None:
        if self._ranges:
            self._cp.cuda.nvtx.RangePop()
            self._ranges -= 1

    def sleep_s(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def close(self) -> None:
        self.stop_telemetry()
        if self._lost is None:
            # Closing must not fail on a card that broke in the last call: the test reports that.
            with contextlib.suppress(*self._error_types), self._device:
                for address in list(self._buffers):
                    self._cp.cuda.runtime.free(address)
                for address in list(self._host_buffers):
                    self._cp.cuda.runtime.freeHost(address)
                self._cp.get_default_memory_pool().free_all_blocks()
        self._buffers.clear()
        self._host_buffers.clear()
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = self._nvml_device = None

    def __enter__(self) -> CudaBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- memory ----------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> DeviceBuffer:
        if nbytes <= 0:
            raise ValueError(f"allocation size must be positive, got {nbytes}")
        free = self.memory_free_bytes()
        if nbytes > free:
            # CuPy's pool may hold freed scratch arrays; give them back before refusing.
            with self._cuda("freeing CuPy's memory pool"):
                self._cp.get_default_memory_pool().free_all_blocks()
            free = self.memory_free_bytes()
        if nbytes > free:
            raise DeviceOutOfMemory(
                f"asked for {nbytes / 2**30:.2f} GiB on GPU {self.index}, "
                f"only {free / 2**30:.2f} GiB free"
            )
        with self._cuda("cudaMalloc"):
            address = int(self._cp.cuda.runtime.malloc(nbytes))
        buffer = CudaBuffer(address, nbytes)
        self._buffers[address] = buffer
        return buffer

    def free(self, buffer: DeviceBuffer) -> None:
        if self._buffers.pop(buffer.address, None) is None:
            raise ValueError(f"buffer at 0x{buffer.address:x} was not allocated here or was freed")
        if self._lost is None:
            with self._cuda("cudaFree"):
                self._cp.cuda.runtime.free(buffer.address)

    def upload(self, buffer: DeviceBuffer, host: npt.NDArray[np.generic]) -> None:
        data = np.ascontiguousarray(host)
        _check_size(buffer, data.nbytes, "upload")
        with self._cuda("upload"):
            self._cp.cuda.runtime.memcpy(
                buffer.address,
                data.ctypes.data,
                data.nbytes,
                self._cp.cuda.runtime.memcpyHostToDevice,
            )

    def download(
        self, buffer: DeviceBuffer, dtype: type[np.generic], count: int, offset: int = 0
    ) -> npt.NDArray[np.generic]:
        host = np.empty(count, dtype=dtype)
        if offset < 0:
            raise ValueError(f"download offset must not be negative, got {offset}")
        start = offset * host.itemsize
        _check_size(buffer, start + host.nbytes, "download")
        with self._cuda("download"):
            self._cp.cuda.runtime.memcpy(
                host.ctypes.data,
                buffer.address + start,
                host.nbytes,
                self._cp.cuda.runtime.memcpyDeviceToHost,
            )
        return host

    def _view(self, buffer: DeviceBuffer, dtype: Any, count: int) -> Any:
        """A CuPy array over the first count elements of a buffer (no copy, no ownership)."""
        cp = self._cp
        _check_size(buffer, count * np.dtype(dtype).itemsize, "view")
        memory = cp.cuda.UnownedMemory(buffer.address, buffer.nbytes, buffer, self.index)
        return cp.ndarray((count,), dtype=dtype, memptr=cp.cuda.MemoryPointer(memory, 0))

    # --- launching and timing --------------------------------------------------------------------
    def _kernel(self, family: str, name: str) -> Any:
        return kernels.function(family, name, self._arch)

    def _timed(self, launch: Callable[[], None]) -> float:
        """Device seconds of the work `launch` queues, between two CUDA events."""
        self._start.record()
        launch()
        self._end.record()
        self._end.synchronize()
        return float(self._cp.cuda.get_elapsed_time(self._start, self._end)) / 1e3

    def _grid_stride(
        self, geometry: Geometry, items: int, family: str, name: str, args: tuple[Any, ...]
    ) -> Callable[[], None]:
        """A launch of a grid-stride kernel over `items` work items (what one thread does once)."""
        kernel = self._kernel(family, name)
        grid = (geometry.blocks(self._info.sm_count, items),)
        block = (geometry.threads,)
        return lambda: kernel(grid, block, args)

    def read_partials(self, n: int) -> int:
        """How many per-block partial sums stream("read", ...) over n elements writes into c."""
        return self.read_geometry.blocks(self._info.sm_count, _vectors(n))

    def fill_f32(self, buffer: DeviceBuffer, n: int, value: float) -> None:
        _check_size(buffer, 4 * n, "fill_f32")
        with self._cuda("fill_f32"):
            args = (np.uint64(buffer.address), np.uint64(n), np.float32(value))
            self._grid_stride(self.stream_geometry, _vectors(n), "util", "fill_f32", args)()

    def fill_uniform(
        self, buffer: DeviceBuffer, dtype: GemmDtype, n: int, seed: int, low: float, high: float
    ) -> None:
        itemsize = 2 if dtype == "fp16" else 4
        _check_size(buffer, itemsize * n, "fill_uniform")
        name = "fill_uniform_f16" if dtype == "fp16" else "fill_uniform_f32"
        args = (
            np.uint64(buffer.address),
            np.uint64(n),
            np.uint32(seed & 0xFFFFFFFF),
            np.float32(low),
            np.float32(high),
        )
        with self._cuda(name):
            self._grid_stride(self.stream_geometry, n, "util", name, args)()

    # --- kernels ---------------------------------------------------------------------------------
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
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        geometry = self.read_geometry if op == "read" else self.stream_geometry
        for buffer, label in ((a, "a"), (b, "b"), (c, "c")):
            if op != "read" or label == "a":
                _check_size(buffer, 4 * n, f"stream {op} ({label})")
        if op == "read":
            _check_size(c, 4 * self.read_partials(n), "stream read partials")
        pa, pb, pc = (np.uint64(x.address) for x in (a, b, c))
        s, count = np.float32(scalar), np.uint64(n)
        args: dict[str, tuple[Any, ...]] = {
            "copy": (pa, pc, count),
            "scale": (pb, pc, s, count),
            "add": (pa, pb, pc, count),
            "triad": (pa, pb, pc, s, count),
            "read": (pa, pc, count),
        }
        if op not in args:
            raise ValueError(f"unknown stream op {op!r}")
        with self._cuda(f"stream {op}"):
            launch = self._grid_stride(geometry, _vectors(n), "bandwidth", f"stream_{op}", args[op])

            def launches() -> None:
                for _ in range(repeats):
                    launch()

            return self._timed(launches)

    def count_f32_not_close(
        self, buffer: DeviceBuffer, n: int, expected: float, rel_tol: float
    ) -> int:
        _check_size(buffer, 4 * n, "count_f32_not_close")
        with self._cuda("count_f32_not_close"):
            count = self._cp.zeros(1, dtype=np.uint64)
            args = (
                np.uint64(buffer.address),
                np.uint64(n),
                np.float32(expected),
                np.float32(rel_tol),
                count,
            )
            self._grid_stride(
                self.reduce_geometry, _vectors(n), "util", "count_not_close_f32", args
            )()
            return int(count.get()[0])

    @staticmethod
    def _pattern_args(pattern: MemPattern) -> tuple[np.int32, np.uint32, np.uint32]:
        return (
            np.int32(PATTERN_CODES[pattern.kind]),
            np.uint32(pattern.param & 0xFFFFFFFF),
            np.uint32(1 if pattern.invert else 0),
        )

    def memtest_write(self, buffer: DeviceBuffer, n_words: int, pattern: MemPattern) -> float:
        _check_size(buffer, 4 * n_words, "memtest_write")
        args = (
            np.uint64(buffer.address),
            np.uint64(n_words),
            *self._pattern_args(pattern),
            np.uint64(buffer.address),
        )
        with self._cuda("memtest write"):
            launch = self._grid_stride(
                self.memtest_geometry, _vectors(n_words), "memtest", "memtest_write", args
            )
            return self._timed(launch)

    def memtest_check(
        self,
        buffer: DeviceBuffer,
        n_words: int,
        pattern: MemPattern,
        rewrite: MemPattern | None,
        max_report: int,
    ) -> MemCheck:
        _check_size(buffer, 4 * n_words, "memtest_check")
        max_report = max(0, max_report)
        if rewrite is None:
            rw: tuple[Any, ...] = (np.int32(_NO_REWRITE), np.uint32(0), np.uint32(0))
        else:
            rw = self._pattern_args(rewrite)
        with self._cuda("memtest check"):
            counters = self._cp.zeros(2, dtype=np.uint64)
            report = self._cp.zeros(3 * max(1, max_report), dtype=np.uint64)
            args = (
                np.uint64(buffer.address),
                np.uint64(n_words),
                *self._pattern_args(pattern),
                np.uint64(buffer.address),
                *rw,
                counters,
                report,
                np.uint32(max_report),
            )
            launch = self._grid_stride(
                self.memtest_geometry, _vectors(n_words), "memtest", "memtest_check", args
            )
            elapsed = self._timed(launch)
            mismatches, slots = (int(v) for v in counters.get())
            listed = report.get()[: 3 * min(slots, max_report)].reshape(-1, 3)
        first = tuple((int(addr), int(exp), int(act)) for addr, exp, act in listed)
        return MemCheck(elapsed_s=elapsed, mismatches=mismatches, first=first)

    def fma_loop(
        self,
        out: DeviceBuffer,
        smids: DeviceBuffer,
        blocks: int,
        threads: int,
        iterations: int,
        c: float,
    ) -> float:
        self._check_launch(blocks, threads, iterations, multiple_of=1)
        _check_size(out, 4 * blocks * threads * FMA_CHAINS, "fma_loop out")
        _check_size(smids, 4 * blocks, "fma_loop smids")
        args = (
            np.uint64(out.address),
            np.uint64(smids.address),
            np.int32(iterations),
            np.float32(c),
        )
        with self._cuda("fma_loop"):
            kernel = self._kernel("compute", "fma_loop")
            return self._timed(lambda: kernel((blocks,), (threads,), args))

    def mma_loop(
        self,
        out: DeviceBuffer,
        smids: DeviceBuffer,
        blocks: int,
        threads: int,
        iterations: int,
    ) -> float:
        self._require_tensor_cores("mma_loop")
        self._check_launch(blocks, threads, iterations, multiple_of=32)
        _check_size(out, 4 * blocks * threads, "mma_loop out")
        _check_size(smids, 4 * blocks, "mma_loop smids")
        args = (np.uint64(out.address), np.uint64(smids.address), np.int32(iterations))
        with self._cuda("mma_loop"):
            kernel = self._kernel("compute", "mma_loop")
            return self._timed(lambda: kernel((blocks,), (threads,), args))

    @staticmethod
    def _check_launch(blocks: int, threads: int, iterations: int, multiple_of: int) -> None:
        if not 0 < blocks < 2**31:
            raise ValueError(f"blocks must be in 1..2^31-1, got {blocks}")
        if not 0 < threads <= 1024 or threads % multiple_of:
            raise ValueError(
                f"threads must be 1..1024 and a multiple of {multiple_of}, got {threads}"
            )
        if not 0 <= iterations < 2**31:
            raise ValueError(f"iterations must fit an int32, got {iterations}")

    def _require_tensor_cores(self, what: str) -> None:
        if self._info.compute_capability < (7, 5):
            major, minor = self._info.compute_capability
            raise NotApplicable(
                f"{what} needs fp16 tensor cores with mma.sync m16n8k8 (compute capability 7.5+); "
                f"this card is {major}.{minor}"
            )

    def gemm_tensor(self, a: DeviceBuffer, bt: DeviceBuffer, c: DeviceBuffer, n: int) -> float:
        self._require_tensor_cores("gemm_tensor")
        if n <= 0 or n % _GEMM_TILE:
            raise ValueError(f"gemm_tensor needs n a positive multiple of {_GEMM_TILE}, got {n}")
        _check_size(a, 2 * n * n, "gemm_tensor A")
        _check_size(bt, 2 * n * n, "gemm_tensor Bt")
        _check_size(c, 4 * n * n, "gemm_tensor C")
        args = (np.uint64(a.address), np.uint64(bt.address), np.uint64(c.address), np.int32(n))
        grid = (n // _GEMM_TILE, n // _GEMM_TILE)
        with self._cuda("gemm_tensor"):
            kernel = self._kernel("gemm", "gemm_f16_tn")
            return self._timed(lambda: kernel(grid, (_GEMM_THREADS,), args))

    @staticmethod
    def _numpy_dtype(dtype: GemmDtype) -> type[np.floating[Any]]:
        if dtype == "fp16":
            return np.float16
        if dtype == "fp32":
            return np.float32
        raise ValueError(f"unknown GEMM dtype {dtype!r}")

    def _matrix(self, buffer: DeviceBuffer, dtype: Any, n: int) -> Any:
        return self._view(buffer, dtype, n * n).reshape(n, n)

    def gemm_library(
        self,
        a: DeviceBuffer,
        b: DeviceBuffer,
        c: DeviceBuffer,
        n: int,
        dtype: GemmDtype,
        repeats: int = 1,
    ) -> float:
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        dt = self._numpy_dtype(dtype)
        with self._cuda(f"cupy.matmul {dtype}"):
            ma, mb, mc = (self._matrix(x, dt, n) for x in (a, b, c))
            matmul = self._cp.matmul

            def launch() -> None:
                for _ in range(repeats):
                    matmul(ma, mb, out=mc)

            return self._timed(launch)

    def gemm_reference_f64(
        self,
        a: DeviceBuffer,
        b: DeviceBuffer,
        out: DeviceBuffer,
        n: int,
        dtype: GemmDtype,
        b_transposed: bool,
    ) -> None:
        dt = self._numpy_dtype(dtype)
        with self._cuda("float64 reference GEMM"):
            a64 = self._matrix(a, dt, n).astype(np.float64)
            b64 = self._matrix(b, dt, n).astype(np.float64)
            self._cp.matmul(
                a64, b64.T if b_transposed else b64, out=self._matrix(out, np.float64, n)
            )
            self._end.record()
            self._end.synchronize()
            del a64, b64

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
        itemsize = 2 if result_dtype == "fp16" else 4
        _check_size(result, itemsize * n_elements, "compare_close result")
        _check_size(reference, 8 * n_elements, "compare_close reference")
        name = "compare_close_f16" if result_dtype == "fp16" else "compare_close_f32"
        max_report = max(0, max_report)
        cp = self._cp
        with self._cuda(name):
            stats = cp.zeros(4, dtype=np.uint64)
            index = cp.zeros(max(1, max_report), dtype=np.uint64)
            values = cp.zeros(2 * max(1, max_report), dtype=np.float64)
            args = (
                np.uint64(result.address),
                np.uint64(reference.address),
                np.uint64(n_elements),
                np.float64(rel_tol),
                np.float64(abs_tol),
                stats,
                index,
                values,
                np.uint32(max_report),
            )
            self._grid_stride(self.reduce_geometry, n_elements, "util", name, args)()
            host_stats = stats.get()
            slots = min(int(host_stats[1]), max_report)
            host_index = index.get()[:slots]
            host_values = values.get()[: 2 * slots].reshape(-1, 2)
        maxima = host_stats[2:4].view(np.float64)
        first = tuple(
            (int(i), float(v[0]), float(v[1])) for i, v in zip(host_index, host_values, strict=True)
        )
        return CloseCheck(
            checked=n_elements,
            mismatches=int(host_stats[0]),
            max_abs_error=float(maxima[0]),
            max_rel_error=float(maxima[1]),
            first=first,
        )

    def word_hash(self, buffer: DeviceBuffer, nbytes: int) -> int:
        if nbytes % 4:
            raise ValueError(
                f"word_hash digests 32-bit words: nbytes must be a multiple of 4, got {nbytes}"
            )
        _check_size(buffer, nbytes, "word_hash")
        with self._cuda("word_hash"):
            out = self._cp.zeros(1, dtype=np.uint64)
            args = (np.uint64(buffer.address), np.uint64(nbytes // 4), out)
            words = nbytes // 4
            self._grid_stride(self.reduce_geometry, _vectors(words), "util", "word_hash", args)()
            return int(out.get()[0])

    # --- PCIe copies (issue 14) -------------------------------------------------------------------
    def host_alloc(self, nbytes: int) -> HostBuffer:
        """Page-locked host memory through cudaHostAlloc (not CuPy's pinned pool, so that
        host_free really gives it back), seen by numpy without a copy."""
        if nbytes <= 0:
            raise ValueError(f"allocation size must be positive, got {nbytes}")
        with self._cuda("cudaHostAlloc"):
            address = int(self._cp.cuda.runtime.hostAlloc(nbytes, 0))
        view = (ctypes.c_uint8 * nbytes).from_address(address)
        buffer = PinnedBuffer(address, nbytes, np.ctypeslib.as_array(view))
        self._host_buffers[address] = buffer
        return buffer

    def host_free(self, buffer: HostBuffer) -> None:
        if not isinstance(buffer, PinnedBuffer) or buffer.address not in self._host_buffers:
            raise ValueError("host buffer was not allocated here or was freed")
        del self._host_buffers[buffer.address]
        if self._lost is None:
            with self._cuda("cudaFreeHost"):
                self._cp.cuda.runtime.freeHost(buffer.address)

    def _streams(self) -> tuple[Any, Any]:
        """Two non-blocking streams: one per direction, so that both ways can run at once."""
        if self._copy_streams is None:
            stream = self._cp.cuda.Stream
            self._copy_streams = (stream(non_blocking=True), stream(non_blocking=True))
        return self._copy_streams

    def _link_now(self) -> tuple[int | None, int | None]:
        if self._nvml_device is None:
            return None, None
        return self._nvml_device.pcie_link_now()

    def link_copy(
        self,
        nbytes: int,
        h2d: tuple[DeviceBuffer, HostBuffer] | None = None,
        d2h: tuple[HostBuffer, DeviceBuffer] | None = None,
    ) -> LinkCopy:
        if h2d is None and d2h is None:
            raise ValueError("link_copy needs h2d, d2h or both")
        legs: list[tuple[int, int, int]] = []  # (destination, source, cudaMemcpyKind)
        runtime = self._cp.cuda.runtime
        if h2d is not None:
            _check_size(h2d[0], nbytes, "link_copy h2d (device)")
            _check_size(h2d[1], nbytes, "link_copy h2d (host)")
            legs.append((h2d[0].address, self._pinned(h2d[1]).address, runtime.memcpyHostToDevice))
        if d2h is not None:
            _check_size(d2h[0], nbytes, "link_copy d2h (host)")
            _check_size(d2h[1], nbytes, "link_copy d2h (device)")
            legs.append((self._pinned(d2h[0]).address, d2h[1].address, runtime.memcpyDeviceToHost))
        with self._cuda("PCIe copy"):
            streams = self._streams()
            start, end = self._cp.cuda.Event(), self._cp.cuda.Event()
            start.record(streams[0])
            ends = []
            for (destination, source, kind), stream in zip(legs, streams, strict=False):
                stream.wait_event(start)
                runtime.memcpyAsync(destination, source, nbytes, kind, stream.ptr)
                done = self._cp.cuda.Event()
                done.record(stream)
                ends.append(done)
            for done in ends:
                streams[0].wait_event(done)
            end.record(streams[0])
            link = self._link_now()  # the copies are in flight: the link is at work
            end.synchronize()
            elapsed_s = float(self._cp.cuda.get_elapsed_time(start, end)) / 1e3
        return LinkCopy(elapsed_s, link[0], link[1])

    def _pinned(self, buffer: HostBuffer) -> PinnedBuffer:
        if not isinstance(buffer, PinnedBuffer) or buffer.address not in self._host_buffers:
            raise ValueError("host buffer was not allocated here (host_alloc) or was freed")
        return buffer
