"""A fake `cupy` module: what gpuhealth/measure/backends/cuda.py and
gpuhealth/measure/backends/kernels.py use, on the CPU.

It records and checks; it does not compute. Device memory is numpy byte arrays behind made-up,
256-byte-aligned device addresses; cudaMemcpy really copies bytes in and out of them, bounds
checked. RawModule compiles nothing: it finds the kernel's declaration in kernels/<family>.cu and
`RawKernel.__call__` checks the launch against it (grid and block shapes, argument count, every
argument's numpy type against the C parameter type, pointers inside a live allocation and aligned
for the kernel's vector loads) and records it in `FakeGpu.launches`.

A kernel launch leaves whatever it may write *unknown*: reading such memory back (memcpy to the
host, `ndarray.get()`) raises `NotSimulatedError`, unless the test gave that kernel an outcome with
`FakeGpu.on_launch(name, fn)`; fn gets the Launch and the FakeGpu and writes what the test wants
the kernel to have computed (`gpu.write(address, array)` or `launch.array(i)[...] = ...`). So a
test never passes on results the fake made up.

Errors are CuPy's classes with CUDA's status numbers: `fail(call, status)` makes the next call
of that runtime function (or "launch:<kernel>", "sync", "compile:<family>") raise. A status from
STICKY_STATUSES poisons the fake context as it poisons a real one: every later runtime call raises
the same error until the FakeGpu is thrown away.

Install with the `fake_cupy` fixture in tests/test_cuda_backend_logic.py (sys.modules, like
tests/fake_pynvml.py for pynvml).
"""

from __future__ import annotations

import ctypes
import re
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpuhealth.measure.backends import kernels

# cudaError_t names (driver_types.h) for the statuses the tests use.
ERROR_NAMES = {
    1: "cudaErrorInvalidValue",
    2: "cudaErrorMemoryAllocation",
    3: "cudaErrorInitializationError",
    4: "cudaErrorCudartUnloading",
    46: "cudaErrorDevicesUnavailable",
    100: "cudaErrorNoDevice",
    101: "cudaErrorInvalidDevice",
    209: "cudaErrorNoKernelImageForDevice",
    214: "cudaErrorECCUncorrectable",
    700: "cudaErrorIllegalAddress",
    701: "cudaErrorLaunchOutOfResources",
    702: "cudaErrorLaunchTimeout",
    709: "cudaErrorContextIsDestroyed",
    714: "cudaErrorHardwareStackError",
    715: "cudaErrorIllegalInstruction",
    716: "cudaErrorMisalignedAddress",
    717: "cudaErrorInvalidAddressSpace",
    718: "cudaErrorInvalidPc",
    719: "cudaErrorLaunchFailure",
    999: "cudaErrorUnknown",
}
# What a real context does after these: nothing works any more (CUDA's "sticky" errors).
STICKY_STATUSES = frozenset({700, 702, 709, 714, 715, 716, 717, 718, 719, 214, 999, 46})

BASE_ADDRESS = 0x7F00_0000_0000
ALIGNMENT = 256  # what cudaMalloc guarantees


class NotSimulatedError(AssertionError):
    """The code read back memory a kernel wrote, and the test did not say what the kernel wrote."""


class FakeCheckError(AssertionError):
    """A launch or call the real CUDA/CuPy would reject or that would corrupt memory."""


# --- CuPy's exception classes ---------------------------------------------------------------------


class CUDARuntimeError(RuntimeError):
    def __init__(self, status: int) -> None:
        self.status = status
        name = ERROR_NAMES.get(status, f"cudaError{status}")
        super().__init__(f"{name}: status {status}")

    def __reduce__(self) -> Any:
        return (type(self), (self.status,))


class CUDADriverError(RuntimeError):
    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"CUDA_ERROR {status}")


class OutOfMemoryError(MemoryError):
    def __init__(self, size: int, total: int, limit: int = 0) -> None:
        super().__init__(
            f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes)."
        )


class CUBLASError(RuntimeError):
    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"CUBLAS_STATUS {status}")


class CompileException(Exception):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self._msg = msg

    def get_message(self) -> str:
        return self._msg


# --- the fake card --------------------------------------------------------------------------------


@dataclass
class Allocation:
    address: int
    data: np.ndarray  # uint8 bytes
    unknown: bool = False  # written by a kernel whose outcome the test did not give


@dataclass
class Launch:
    """One recorded kernel launch."""

    family: str
    name: str
    grid: tuple[int, ...]
    block: tuple[int, ...]
    args: tuple[Any, ...]
    gpu: FakeGpu = field(repr=False)

    @property
    def blocks(self) -> int:
        return int(np.prod(self.grid))

    @property
    def threads(self) -> int:
        return int(np.prod(self.block))

    def array(self, index: int) -> FakeArray:
        arg = self.args[index]
        assert isinstance(arg, FakeArray), f"argument {index} of {self.name} is not a CuPy array"
        return arg


SCRATCH_ROUNDING = 512  # CuPy's pool rounds every allocation up to 512 bytes


@dataclass(repr=False)
class FakeGpu:
    """The state behind the fake module; tests configure and inspect it."""

    device_count: int = 1
    sm_count: int = 132
    compute_capability: tuple[int, int] = (9, 0)
    name: str = "NVIDIA H100 80GB HBM3 (fake)"
    total_bytes: int = 80 << 30
    # Bytes in use by someone else (another process, the driver): not free, not ours.
    used_elsewhere: int = 0
    # Bytes CuPy's memory pool holds for freed arrays: not free until free_all_blocks().
    pool_bytes: int = 0
    pci_bus_id: str = "0000:19:00.0"
    driver_version: int = 13000
    launch_seconds: float = 1e-3  # device time each kernel or matmul takes on the fake clock
    allocations: dict[int, Allocation] = field(default_factory=dict)
    launches: list[Launch] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    outcomes: dict[str, Callable[[Launch, FakeGpu], None]] = field(default_factory=dict)
    failures: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    sticky: BaseException | None = None
    clock_s: float = 0.0
    pool_frees: int = 0
    # Issue 14: pinned host allocations (address -> bytes) and the link's rate on the fake clock
    host_allocations: dict[int, np.ndarray] = field(default_factory=dict)
    copy_gbs: float = 50.0
    async_copies: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    _next: int = BASE_ADDRESS

    # --- configuring ------------------------------------------------------------------------------
    def fail(self, call: str, status: int, kind: str = "runtime") -> None:
        """The next `call` raises CUDA `status` (kind: runtime, driver, cublas, oom, compile)."""
        self.failures.setdefault(call, []).append((status, kind))

    def on_launch(self, name: str, outcome: Callable[[Launch, FakeGpu], None]) -> None:
        self.outcomes[name] = outcome

    # --- the checks every call goes through -------------------------------------------------------
    def enter(self, call: str) -> None:
        self.calls.append(call)
        if self.sticky is not None:
            raise self.sticky
        queued = self.failures.get(call)
        if queued:
            status, kind = queued.pop(0)
            raise self._error(status, kind)

    def _error(self, status: int, kind: str) -> BaseException:
        error: BaseException
        if kind == "driver":
            error = CUDADriverError(status)
        elif kind == "cublas":
            error = CUBLASError(status)
        elif kind == "oom":
            error = OutOfMemoryError(status, 0)
        elif kind == "compile":
            error = CompileException(f"kernel.cu(1): error: planted failure {status}")
        else:
            error = CUDARuntimeError(status)
        if kind in {"runtime", "driver"} and status in STICKY_STATUSES:
            self.sticky = error
        return error

    # --- memory -----------------------------------------------------------------------------------
    def used_bytes(self) -> int:
        return (
            self.used_elsewhere
            + self.pool_bytes
            + sum(a.data.size for a in self.allocations.values())
        )

    def free_bytes(self) -> int:
        return max(0, self.total_bytes - self.used_bytes())

    def malloc(self, nbytes: int) -> int:
        if nbytes > self.free_bytes():
            raise self._error(2, "runtime")
        address = self._next
        self._next += -(-max(nbytes, 1) // ALIGNMENT) * ALIGNMENT + ALIGNMENT
        self.allocations[address] = Allocation(address, np.zeros(nbytes, dtype=np.uint8))
        return address

    def find(self, address: int, nbytes: int) -> tuple[Allocation, int]:
        """The live allocation holding [address, address + nbytes), and the offset in it."""
        for allocation in self.allocations.values():
            offset = address - allocation.address
            if offset >= 0 and offset + nbytes <= allocation.data.size:
                return allocation, offset
        raise CUDARuntimeError(1)  # cudaMemcpy on memory it does not own: invalid value

    def write(self, address: int, host: np.ndarray) -> None:
        """What a test says a kernel wrote (clears the unknown mark of that allocation)."""
        raw = np.ascontiguousarray(host).view(np.uint8).reshape(-1)
        allocation, offset = self.find(address, raw.size)
        allocation.data[offset : offset + raw.size] = raw
        allocation.unknown = False

    def read(self, address: int, dtype: Any, count: int) -> np.ndarray:
        nbytes = count * np.dtype(dtype).itemsize
        allocation, offset = self.find(address, nbytes)
        return allocation.data[offset : offset + nbytes].view(dtype).copy()

    # --- kernels ----------------------------------------------------------------------------------
    def launch(self, kernel: RawKernel, grid: Any, block: Any, args: Any) -> None:
        self.enter(f"launch:{kernel.name}")
        grid_t, block_t = _dims(grid, "grid"), _dims(block, "block")
        if not 1 <= len(grid_t) <= 3 or not 1 <= len(block_t) <= 3:
            raise FakeCheckError(f"{kernel.name}: grid {grid} and block {block} need 1 to 3 dims")
        if any(d < 1 for d in (*grid_t, *block_t)):
            raise FakeCheckError(f"{kernel.name}: empty grid {grid} or block {block}")
        if grid_t[0] >= 2**31 or any(d > 65535 for d in grid_t[1:]):
            raise FakeCheckError(f"{kernel.name}: grid {grid} beyond CUDA's limits")
        if int(np.prod(block_t)) > 1024:
            raise FakeCheckError(f"{kernel.name}: block {block} has more than 1024 threads")
        if not isinstance(args, tuple):
            raise FakeCheckError(f"{kernel.name}: CuPy takes the arguments as a tuple")
        params = kernel.params
        if len(args) != len(params):
            raise FakeCheckError(f"{kernel.name} takes {len(params)} arguments, got {len(args)}")
        touched: list[Allocation | FakeArray] = []
        for i, (arg, (ctype, pname)) in enumerate(zip(args, params, strict=True)):
            touched.extend(self._check_arg(kernel.name, i, pname, ctype, arg))
        launch = Launch(kernel.family, kernel.name, grid_t, block_t, args, self)
        self.launches.append(launch)
        self.clock_s += self.launch_seconds
        for target in touched:
            target.unknown = True
        outcome = self.outcomes.get(kernel.name)
        if outcome is not None:
            outcome(launch, self)

    def _check_arg(
        self, kernel: str, i: int, pname: str, ctype: str, arg: Any
    ) -> Iterator[Allocation | FakeArray]:
        where = f"{kernel} argument {i} ({ctype} {pname})"
        if "*" in ctype:
            if isinstance(arg, FakeArray):
                yield arg
                return
            if type(arg) is not np.uint64:
                raise FakeCheckError(f"{where}: a pointer must be np.uint64, got {type(arg)}")
            align = 16 if kernel in VECTOR_KERNELS else 4
            if int(arg) % align:
                raise FakeCheckError(f"{where}: 0x{int(arg):x} is not {align}-byte aligned")
            allocation, _ = self.find(int(arg), 0)
            if "const" not in ctype:
                yield allocation
            return
        expected = C_TYPES.get(ctype)
        if expected is None:
            raise FakeCheckError(f"{where}: the fake does not know C type {ctype!r}")
        if type(arg) is not expected:
            raise FakeCheckError(f"{where}: needs {expected.__name__}, got {type(arg).__name__}")


# Kernels whose headers say their buffers are read or written as 16-byte vectors.
VECTOR_KERNELS = frozenset(
    {
        "stream_copy",
        "stream_scale",
        "stream_add",
        "stream_triad",
        "stream_read",
        "fill_f32",
        "count_not_close_f32",
        "memtest_write",
        "memtest_check",
        "word_hash",
    }
)

C_TYPES: dict[str, type] = {
    "u64": np.uint64,
    "unsigned long long": np.uint64,
    "int": np.int32,
    "unsigned int": np.uint32,
    "unsigned": np.uint32,
    "float": np.float32,
    "double": np.float64,
}


def _dims(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(isinstance(d, int) for d in value):
        raise FakeCheckError(f"{what} must be a tuple of ints, got {value!r}")
    return value


_PARAM = re.compile(r"^(.*?)(\w+)$")


def kernel_params(source: str, name: str) -> tuple[tuple[str, str], ...]:
    """(C type, name) of each parameter of `extern "C" __global__ void name(...)` in a source."""
    match = re.search(
        rf'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s+)?{name}\s*\(([^)]*)\)',
        source,
    )
    if match is None:
        raise FakeCheckError(f"no kernel {name} in the source")
    params = []
    for raw in match.group(1).split(","):
        text = " ".join(raw.replace("__restrict__", " ").split())
        found = _PARAM.match(text)
        assert found is not None, raw
        ctype = found.group(1).strip()
        params.append((" ".join(ctype.replace("*", " * ").split()), found.group(2)))
    return tuple(params)


# --- CuPy's classes -------------------------------------------------------------------------------


class FakeArray:
    """cupy.ndarray: a host numpy array standing in for device memory (scratch arrays, views)."""

    def __init__(self, gpu: FakeGpu, host: np.ndarray, view_of: int | None = None) -> None:
        self._gpu = gpu
        self.host = host
        self.view_of = view_of  # device address when this is a view over an allocation
        self.unknown = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.host.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.host.dtype

    @property
    def T(self) -> FakeArray:
        return FakeArray(self._gpu, self.host.T, self.view_of)

    def reshape(self, *shape: int) -> FakeArray:
        return FakeArray(self._gpu, self.host.reshape(*shape), self.view_of)

    def astype(self, dtype: Any) -> FakeArray:
        self._gpu.enter("astype")
        return FakeArray(self._gpu, self.host.astype(dtype))

    def get(self) -> np.ndarray:
        self._gpu.enter("get")
        if self.unknown:
            raise NotSimulatedError("read back an array a kernel wrote; give it an outcome")
        return self.host.copy()


class Module(types.ModuleType):
    """A module whose attributes mypy and ruff need not know."""

    def __getattr__(self, name: str) -> Any:  # only for names not set
        raise AttributeError(f"the fake cupy has no {self.__name__}.{name}")


def build(gpu: FakeGpu) -> dict[str, types.ModuleType]:
    """The fake `cupy` package and its submodules, bound to one FakeGpu, for sys.modules."""
    cupy = Module("cupy")
    cuda = Module("cupy.cuda")
    runtime = Module("cupy.cuda.runtime")
    driver = Module("cupy.cuda.driver")
    memory = Module("cupy.cuda.memory")
    cublas = Module("cupy.cuda.cublas")
    compiler = Module("cupy.cuda.compiler")
    nvtx = Module("cupy.cuda.nvtx")

    runtime.CUDARuntimeError = CUDARuntimeError
    runtime.memcpyHostToDevice = 1
    runtime.memcpyDeviceToHost = 2
    driver.CUDADriverError = CUDADriverError
    memory.OutOfMemoryError = OutOfMemoryError
    cublas.CUBLASError = CUBLASError
    compiler.CompileException = CompileException

    def getDeviceCount() -> int:
        gpu.enter("getDeviceCount")
        return gpu.device_count

    def check_device(index: int) -> None:
        if not 0 <= index < gpu.device_count:
            raise CUDARuntimeError(101)

    def deviceGetPCIBusId(index: int) -> str:
        gpu.enter("deviceGetPCIBusId")
        check_device(index)
        return gpu.pci_bus_id

    def getDeviceProperties(index: int) -> dict[str, Any]:
        gpu.enter("getDeviceProperties")
        check_device(index)
        major, minor = gpu.compute_capability
        return {
            "name": gpu.name.encode(),
            "major": major,
            "minor": minor,
            "multiProcessorCount": gpu.sm_count,
            "totalGlobalMem": gpu.total_bytes,
            "l2CacheSize": 50 << 20,
            "maxThreadsPerMultiProcessor": 2048,
        }

    def deviceGetAttribute(attribute: int, index: int) -> int:
        gpu.enter("deviceGetAttribute")
        check_device(index)
        return {13: 1_980_000, 36: 2_619_000, 37: 5120}.get(attribute, 0)

    def driverGetVersion() -> int:
        gpu.enter("driverGetVersion")
        return gpu.driver_version

    def memGetInfo() -> tuple[int, int]:
        gpu.enter("memGetInfo")
        return gpu.free_bytes(), gpu.total_bytes

    def malloc(nbytes: int) -> int:
        gpu.enter("malloc")
        return gpu.malloc(int(nbytes))

    def free(address: int) -> None:
        gpu.enter("free")
        if gpu.allocations.pop(int(address), None) is None:
            raise CUDARuntimeError(1)

    def memcpy(dst: int, src: int, nbytes: int, kind: int) -> None:
        gpu.enter("memcpy")
        if kind == runtime.memcpyHostToDevice:
            allocation, offset = gpu.find(int(dst), nbytes)
            ctypes.memmove(allocation.data.ctypes.data + offset, src, nbytes)
            if offset == 0 and nbytes == allocation.data.size:
                allocation.unknown = False
        elif kind == runtime.memcpyDeviceToHost:
            allocation, offset = gpu.find(int(src), nbytes)
            if allocation.unknown:
                raise NotSimulatedError(
                    f"read back device memory at 0x{int(src):x} that a kernel wrote; "
                    "give that kernel an outcome"
                )
            ctypes.memmove(dst, allocation.data.ctypes.data + offset, nbytes)
        else:
            raise FakeCheckError(f"memcpy kind {kind} is not faked")

    def deviceSynchronize() -> None:
        gpu.enter("sync")

    # --- issue 14: pinned host memory and asynchronous copies ---
    def hostAlloc(nbytes: int, flags: int) -> int:
        gpu.enter("hostAlloc")
        host = np.zeros(int(nbytes), dtype=np.uint8)
        gpu.host_allocations[host.ctypes.data] = host
        return int(host.ctypes.data)

    def freeHost(address: int) -> None:
        gpu.enter("freeHost")
        if gpu.host_allocations.pop(int(address), None) is None:
            raise CUDARuntimeError(1)

    def host_inside(address: int, nbytes: int) -> None:
        for start, host in gpu.host_allocations.items():
            if start <= address and address + nbytes <= start + host.size:
                return
        raise FakeCheckError(f"async copy of {nbytes} bytes at 0x{address:x}: not pinned memory")

    def memcpyAsync(dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        gpu.enter("memcpyAsync")
        if not stream:
            raise FakeCheckError("memcpyAsync on the default stream: give it a stream of its own")
        host = dst if kind == runtime.memcpyDeviceToHost else src
        host_inside(int(host), int(nbytes))
        gpu.async_copies.append((int(dst), int(src), int(nbytes), int(kind), int(stream)))
        memcpy(dst, src, nbytes, kind)
        gpu.clock_s += nbytes / (gpu.copy_gbs * 1e9)

    for fn in (
        getDeviceCount,
        deviceGetPCIBusId,
        getDeviceProperties,
        deviceGetAttribute,
        driverGetVersion,
        memGetInfo,
        malloc,
        free,
        memcpy,
        deviceSynchronize,
        hostAlloc,
        freeHost,
        memcpyAsync,
    ):
        setattr(runtime, fn.__name__, fn)

    class Device:
        def __init__(self, index: int | None = None) -> None:
            self.id = 0 if index is None else index
            check_device(self.id)

        @property
        def compute_capability(self) -> str:
            return "".join(str(v) for v in gpu.compute_capability)

        def use(self) -> None:
            gpu.calls.append("Device.use")

        def __enter__(self) -> Device:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

    class Event:
        def __init__(self) -> None:
            self.time_s: float | None = None

        def record(self, stream: Stream | None = None) -> None:
            gpu.enter("Event.record")
            self.time_s = gpu.clock_s

        def synchronize(self) -> None:
            gpu.enter("sync")

    streams: list[Stream] = []

    class Stream:
        """A stream of its own: an address (ptr) the async copies name; runs in issue order."""

        def __init__(self, null: bool = False, non_blocking: bool = False) -> None:
            gpu.enter("Stream")
            self.ptr = 0 if null else 0x5000 + 0x10 * len(streams)
            self.non_blocking = non_blocking
            self.waited: list[Event] = []
            streams.append(self)

        def wait_event(self, event: Event) -> None:
            gpu.enter("Stream.wait_event")
            if event.time_s is None:
                raise FakeCheckError("wait_event on an event never recorded")
            self.waited.append(event)

    def get_elapsed_time(start: Event, end: Event) -> float:
        gpu.enter("get_elapsed_time")
        if start.time_s is None or end.time_s is None:
            raise CUDARuntimeError(600)  # cudaErrorNotReady-like: an event never recorded
        return (end.time_s - start.time_s) * 1e3

    class UnownedMemory:
        def __init__(self, ptr: int, size: int, owner: object, device_id: int) -> None:
            allocation, _ = gpu.find(int(ptr), int(size))
            if allocation.address != ptr or allocation.data.size != size:
                raise FakeCheckError("UnownedMemory must cover exactly one cudaMalloc allocation")
            self.allocation = allocation
            self.owner = owner

    class MemoryPointer:
        def __init__(self, mem: UnownedMemory, offset: int) -> None:
            self.mem = mem
            self.offset = offset

    def ndarray(shape: tuple[int, ...], dtype: Any, memptr: MemoryPointer) -> FakeArray:
        dt = np.dtype(dtype)
        count = int(np.prod(shape))
        data = memptr.mem.allocation.data
        if memptr.offset + count * dt.itemsize > data.size:
            raise FakeCheckError("a view past the end of its allocation")
        host = data[memptr.offset : memptr.offset + count * dt.itemsize].view(dt).reshape(shape)
        return FakeArray(gpu, host, view_of=memptr.mem.allocation.address)

    def zeros(shape: int | tuple[int, ...], dtype: Any = np.float64) -> FakeArray:
        gpu.enter("zeros")
        host = np.zeros(shape, dtype=dtype)
        # a scratch array comes from CuPy's pool, which needs room on the card for it (the pool
        # is not modelled further: what it holds is not counted as used)
        if -(-max(host.nbytes, 1) // SCRATCH_ROUNDING) * SCRATCH_ROUNDING > gpu.free_bytes():
            raise OutOfMemoryError(host.nbytes, gpu.free_bytes())
        return FakeArray(gpu, host)

    def matmul(a: FakeArray, b: FakeArray, out: FakeArray) -> None:
        gpu.enter("matmul")
        if a.shape[1] != b.shape[0] or out.shape != (a.shape[0], b.shape[1]):
            raise FakeCheckError(f"matmul shapes {a.shape} @ {b.shape} -> {out.shape}")
        if not a.dtype == b.dtype == out.dtype:
            raise FakeCheckError(f"matmul dtypes {a.dtype}, {b.dtype} -> {out.dtype}")
        gpu.clock_s += gpu.launch_seconds
        gpu.launches.append(Launch("cublas", "matmul", (), (), (a, b, out), gpu))
        outcome = gpu.outcomes.get("matmul")
        if outcome is not None:
            outcome(gpu.launches[-1], gpu)
        elif out.view_of is not None:
            gpu.allocations[out.view_of].unknown = True

    class MemoryPool:
        def free_all_blocks(self) -> None:
            gpu.enter("free_all_blocks")
            gpu.pool_frees += 1
            gpu.pool_bytes = 0

    pool = MemoryPool()

    def get_default_memory_pool() -> MemoryPool:
        return pool

    nvtx.available = True
    nvtx.ranges = []

    def RangePush(message: str) -> None:
        nvtx.ranges.append(message)

    def RangePop() -> None:
        nvtx.ranges.pop()

    nvtx.RangePush = RangePush
    nvtx.RangePop = RangePop

    class RawModule:
        def __init__(self, code: str, options: tuple[str, ...] = ()) -> None:
            self.code = code
            self.options = options
            match = re.search(r"^// (\w+)\.cu", code, re.MULTILINE)
            self.family = match.group(1) if match else "?"
            self.compiled = False

        def compile(self) -> None:
            gpu.enter(f"compile:{self.family}")
            self.compiled = True

        def get_function(self, name: str) -> RawKernel:
            if not self.compiled:
                self.compile()
            return RawKernel(self.family, name, kernel_params(self.code, name), gpu)

    cuda.runtime = runtime
    cuda.driver = driver
    cuda.memory = memory
    cuda.cublas = cublas
    cuda.compiler = compiler
    cuda.nvtx = nvtx
    cuda.Device = Device
    cuda.Event = Event
    cuda.Stream = Stream
    cuda.get_elapsed_time = get_elapsed_time
    cuda.UnownedMemory = UnownedMemory
    cuda.MemoryPointer = MemoryPointer
    cupy.cuda = cuda
    cupy.ndarray = ndarray
    cupy.zeros = zeros
    cupy.matmul = matmul
    cupy.get_default_memory_pool = get_default_memory_pool
    cupy.RawModule = RawModule
    cupy.fake_gpu = gpu
    modules = [cupy, cuda, runtime, driver, memory, cublas, compiler, nvtx]
    return {m.__name__: m for m in modules}


@dataclass
class RawKernel:
    family: str
    name: str
    params: tuple[tuple[str, str], ...]
    gpu: FakeGpu

    def __call__(self, grid: Any, block: Any, args: Any) -> None:
        self.gpu.launch(self, grid, block, args)


def install_without_nvml(gpu: FakeGpu, monkeypatch: Any) -> FakeGpu:
    """install, and NVML made unloadable: the backend runs on the fake CuPy alone."""
    from gpuhealth.measure.backends import nvml

    def no_pynvml() -> Any:
        raise ImportError("no pynvml in this test")

    install(gpu, monkeypatch)
    monkeypatch.setattr(nvml, "_load_pynvml", no_pynvml)
    return gpu


def install(gpu: FakeGpu, monkeypatch: Any) -> None:
    """Put the fake into sys.modules and empty kernels.py's module caches."""
    for name, module in build(gpu).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(kernels, "_modules", {})
    monkeypatch.setattr(kernels, "_functions", {})
