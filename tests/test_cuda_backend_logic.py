"""The CUDA backend's logic on the CPU, against the fake cupy of tests/fake_cupy.py (no GPU).

What a real card cannot show on demand: every CUDA error the backend maps, the lost card's
stickiness, allocation refusal and retry, the launch shapes the kernels' header contracts ask for,
and the size checks before any launch. The fake records launches and checks them against the
kernels' C signatures; it computes nothing, so a result a test reads back is one it set.
tests/test_cuda_backend.py (marked gpu) checks the arithmetic on a real card.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import fake_cupy
import numpy as np
import pytest
from fake_cupy import FakeCheckError, FakeGpu, Launch, NotSimulatedError

from gpuhealth.errors import (
    DeviceError,
    DeviceLost,
    DeviceOutOfMemory,
    EnvironmentUnusable,
    KernelCompileError,
    NotApplicable,
)
from gpuhealth.measure.backends.base import FMA_CHAINS, DeviceBuffer
from gpuhealth.measure.backends.cuda import (
    _LOST_STATUSES,
    DEFAULT_MEMTEST_GEOMETRY,
    DEFAULT_READ_GEOMETRY,
    DEFAULT_REDUCE_GEOMETRY,
    DEFAULT_STREAM_GEOMETRY,
    CudaBackend,
    Geometry,
)
from gpuhealth.patterns import MemPattern

MiB = 1 << 20


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> FakeGpu:
    return fake_cupy.install_without_nvml(FakeGpu(), monkeypatch)


@pytest.fixture
def backend(gpu: FakeGpu) -> Iterator[CudaBackend]:
    card = CudaBackend(0)
    yield card
    card.close()


def _zero_counters(launch: Launch, gpu: FakeGpu) -> None:
    """The outcome of a healthy check kernel: every CuPy scratch array it was given stays zero."""
    for arg in launch.args:
        if isinstance(arg, fake_cupy.FakeArray):
            arg.unknown = False


# --- opening --------------------------------------------------------------------------------------


def test_without_cupy_the_environment_is_unusable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(EnvironmentUnusable, match="CuPy is not usable") as info:
        CudaBackend(0)
    assert info.value.hint is not None and "gpuhealth[cuda13]" in info.value.hint


def test_no_driver_is_an_environment_problem(gpu: FakeGpu) -> None:
    gpu.fail("getDeviceCount", 100)
    with pytest.raises(EnvironmentUnusable, match="CUDA cannot reach a GPU"):
        CudaBackend(0)


def test_a_missing_index_is_refused(gpu: FakeGpu) -> None:
    with pytest.raises(EnvironmentUnusable, match=r"no CUDA device 1 \(CUDA sees 1"):
        CudaBackend(1)


def test_device_info_from_cuda_when_nvml_is_missing(backend: CudaBackend, gpu: FakeGpu) -> None:
    info = backend.device_info()
    assert info.sm_count == gpu.sm_count and info.compute_capability == (9, 0)
    assert info.name == gpu.name  # bytes from getDeviceProperties, decoded
    assert info.memory_total_bytes == gpu.total_bytes
    assert info.max_sm_clock_mhz == 1980.0 and info.memory_bus_width_bits == 5120
    assert backend.nvml_note is not None and "pynvml" in backend.nvml_note
    identity = backend.identity()
    assert identity.pci_bus_id == gpu.pci_bus_id and identity.cuda_driver_version == "13.0"


# --- error translation ----------------------------------------------------------------------------

# The sticky CUDA errors, written out here (not read from cuda.py) so that dropping one there fails.
LOST = {
    3: "cudaErrorInitializationError",
    4: "cudaErrorCudartUnloading",
    46: "cudaErrorDevicesUnavailable",
    100: "cudaErrorNoDevice",
    101: "cudaErrorInvalidDevice",
    214: "cudaErrorECCUncorrectable",
    700: "cudaErrorIllegalAddress",
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


def test_the_lost_statuses_are_the_sticky_ones() -> None:
    assert set(LOST) == _LOST_STATUSES


@pytest.mark.parametrize("status", list(LOST), ids=list(LOST.values()))
@pytest.mark.parametrize("kind", ["runtime", "driver"])
def test_sticky_cuda_errors_lose_the_card(
    backend: CudaBackend, gpu: FakeGpu, status: int, kind: str
) -> None:
    buffer = backend.alloc(MiB)
    gpu.fail("launch:fill_f32", status, kind)
    with pytest.raises(DeviceLost, match=r"fill_f32 failed on GPU 0") as info:
        backend.fill_f32(buffer, 1024, 1.0)
    assert info.value.hint is not None and "reset" in info.value.hint
    assert isinstance(info.value.__cause__, fake_cupy.CUDARuntimeError | fake_cupy.CUDADriverError)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(2, "runtime"), (2, "driver"), (1 << 30, "oom")],
    ids=["cudaErrorMemoryAllocation", "CUDA_ERROR_OUT_OF_MEMORY", "cupy-OutOfMemoryError"],
)
def test_out_of_memory_is_not_a_lost_card(
    backend: CudaBackend, gpu: FakeGpu, status: int, kind: str
) -> None:
    buffer = backend.alloc(MiB)
    gpu.fail("zeros", status, kind)  # the scratch counter of the check kernel
    with pytest.raises(DeviceOutOfMemory, match="ran out of memory in count_f32_not_close"):
        backend.count_f32_not_close(buffer, 1024, 1.0, 1e-6)
    gpu.on_launch("count_not_close_f32", _zero_counters)
    assert backend.count_f32_not_close(buffer, 1024, 1.0, 1e-6) == 0  # still usable


@pytest.mark.parametrize("status", [1, 98, 201, 701])
def test_other_cuda_errors_are_device_errors_and_the_card_stays(
    backend: CudaBackend, gpu: FakeGpu, status: int
) -> None:
    buffer = backend.alloc(MiB)
    gpu.fail("launch:fill_f32", status)
    with pytest.raises(DeviceError) as info:
        backend.fill_f32(buffer, 1024, 1.0)
    assert type(info.value) is DeviceError
    assert fake_cupy.ERROR_NAMES.get(status, f"cudaError{status}") in str(info.value)
    backend.fill_f32(buffer, 1024, 1.0)  # not lost
    assert [launch.name for launch in gpu.launches] == ["fill_f32"]


def test_an_error_found_at_synchronize_is_translated(backend: CudaBackend, gpu: FakeGpu) -> None:
    """Kernel faults surface at the next synchronising call, here the end event."""
    a, b, c = (backend.alloc(MiB) for _ in range(3))
    gpu.fail("sync", 719)
    with pytest.raises(DeviceLost, match="stream triad failed"):
        backend.stream("triad", a, b, c, 2.0, 1024)


def test_a_cublas_error_on_a_healthy_context_is_a_device_error(
    backend: CudaBackend, gpu: FakeGpu
) -> None:
    a, b, c = (backend.alloc(64 * 64 * 4) for _ in range(3))
    gpu.fail("matmul", 14, "cublas")
    with pytest.raises(DeviceError, match=r"cupy\.matmul fp32 failed") as info:
        backend.gemm_library(a, b, c, 64, "fp32")
    assert type(info.value) is DeviceError
    assert "sync" in gpu.calls  # it asked the context


def test_a_cublas_error_hiding_a_sticky_error_loses_the_card(
    backend: CudaBackend, gpu: FakeGpu
) -> None:
    a, b, c = (backend.alloc(64 * 64 * 4) for _ in range(3))
    gpu.fail("matmul", 14, "cublas")
    gpu.fail("sync", 700)
    with pytest.raises(DeviceLost, match="cudaErrorIllegalAddress"):
        backend.gemm_library(a, b, c, 64, "fp32")
    with pytest.raises(DeviceLost):
        backend.memory_free_bytes()


# --- a lost card stays lost -----------------------------------------------------------------------


def _every_call(backend: CudaBackend, buffers: list[DeviceBuffer]) -> dict[str, Callable[[], Any]]:
    a, b, c = buffers
    pattern = MemPattern("constant", 7)
    return {
        "memory_free_bytes": backend.memory_free_bytes,
        "alloc": lambda: backend.alloc(MiB),
        "upload": lambda: backend.upload(a, np.zeros(16, np.float32)),
        "download": lambda: backend.download(a, np.float32, 16),
        "fill_f32": lambda: backend.fill_f32(a, 16, 1.0),
        "fill_uniform": lambda: backend.fill_uniform(a, "fp32", 16, 1, 0.0, 1.0),
        "stream": lambda: backend.stream("copy", a, b, c, 1.0, 16),
        "count_f32_not_close": lambda: backend.count_f32_not_close(a, 16, 1.0, 0.1),
        "memtest_write": lambda: backend.memtest_write(a, 16, pattern),
        "memtest_check": lambda: backend.memtest_check(a, 16, pattern, None, 4),
        "fma_loop": lambda: backend.fma_loop(a, b, 1, 32, 10, 0.5),
        "mma_loop": lambda: backend.mma_loop(a, b, 1, 32, 10),
        "gemm_tensor": lambda: backend.gemm_tensor(a, b, c, 64),
        "gemm_library": lambda: backend.gemm_library(a, b, c, 64, "fp32"),
        "gemm_reference_f64": lambda: backend.gemm_reference_f64(a, b, c, 32, "fp32", True),
        "compare_close": lambda: backend.compare_close(a, "fp32", b, 16, 0.1, 0.1, 4),
        "word_hash": lambda: backend.word_hash(a, 64),
    }


CALLS = [
    "memory_free_bytes",
    "alloc",
    "upload",
    "download",
    "fill_f32",
    "fill_uniform",
    "stream",
    "count_f32_not_close",
    "memtest_write",
    "memtest_check",
    "fma_loop",
    "mma_loop",
    "gemm_tensor",
    "gemm_library",
    "gemm_reference_f64",
    "compare_close",
    "word_hash",
]


@pytest.mark.parametrize("call", CALLS)
def test_after_a_lost_card_every_call_fails_fast_with_the_same_error(
    backend: CudaBackend, gpu: FakeGpu, call: str
) -> None:
    buffers = [backend.alloc(64 * 64 * 8) for _ in range(3)]
    calls = _every_call(backend, buffers)
    assert sorted(calls) == sorted(CALLS)
    gpu.fail("launch:stream_copy", 700)
    with pytest.raises(DeviceLost) as first:
        backend.stream("copy", *buffers, 1.0, 16)
    gpu.sticky = None  # even if CUDA answered again, the backend must not ask it
    seen = len(gpu.calls)
    with pytest.raises(DeviceLost) as again:
        calls[call]()
    assert again.value.message == first.value.message
    assert again.value.hint == first.value.hint
    assert gpu.calls[seen:] == [], f"{call} reached CUDA after the card was lost"


def test_freeing_and_closing_a_lost_card_touch_nothing(backend: CudaBackend, gpu: FakeGpu) -> None:
    kept, dropped = backend.alloc(MiB), backend.alloc(MiB)
    gpu.fail("launch:fill_f32", 719)
    with pytest.raises(DeviceLost):
        backend.fill_f32(kept, 16, 1.0)
    seen = len(gpu.calls)
    backend.free(dropped)  # bookkeeping only: cudaFree would fail on the dead context
    with pytest.raises(ValueError, match="was freed"):
        backend.free(dropped)
    backend.close()
    assert gpu.calls[seen:] == []


def test_close_frees_what_is_left_and_the_pool(backend: CudaBackend, gpu: FakeGpu) -> None:
    backend.alloc(MiB)
    backend.alloc(2 * MiB)
    gpu.pool_bytes = 5 * MiB
    backend.close()
    assert gpu.allocations == {} and gpu.pool_bytes == 0


# --- allocation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("nbytes", [0, -1])
def test_alloc_refuses_empty_sizes(backend: CudaBackend, nbytes: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        backend.alloc(nbytes)


def test_alloc_beyond_free_memory_is_refused_before_cudamalloc(
    backend: CudaBackend, gpu: FakeGpu
) -> None:
    gpu.used_elsewhere = gpu.total_bytes - 100 * MiB
    gpu.pool_bytes = 20 * MiB
    with pytest.raises(DeviceOutOfMemory, match=r"only 0\.10 GiB free"):
        backend.alloc(101 * MiB)
    assert "malloc" not in gpu.calls
    assert gpu.pool_frees == 1  # it gave the pool back before refusing
    assert backend.alloc(100 * MiB).nbytes == 100 * MiB  # and the card is still usable


def test_alloc_frees_the_pool_and_retries(backend: CudaBackend, gpu: FakeGpu) -> None:
    gpu.used_elsewhere = gpu.total_bytes - 100 * MiB
    gpu.pool_bytes = 50 * MiB
    buffer = backend.alloc(90 * MiB)
    assert gpu.pool_frees == 1 and gpu.pool_bytes == 0
    assert buffer.address in gpu.allocations


def test_alloc_within_free_memory_leaves_the_pool_alone(backend: CudaBackend, gpu: FakeGpu) -> None:
    gpu.pool_bytes = 50 * MiB
    backend.alloc(MiB)
    assert gpu.pool_frees == 0


def test_cudamalloc_out_of_memory_after_the_check_is_not_a_lost_card(
    backend: CudaBackend, gpu: FakeGpu
) -> None:
    """Another process took the memory between cudaMemGetInfo and cudaMalloc."""
    gpu.fail("malloc", 2)
    with pytest.raises(DeviceOutOfMemory, match="in cudaMalloc"):
        backend.alloc(MiB)
    buffer = backend.alloc(MiB)
    backend.free(buffer)
    assert gpu.allocations == {}


def test_a_cuda_error_while_emptying_the_pool_is_translated(
    backend: CudaBackend, gpu: FakeGpu
) -> None:
    gpu.used_elsewhere = gpu.total_bytes - 10 * MiB
    gpu.pool_bytes = 5 * MiB
    gpu.fail("free_all_blocks", 700)
    with pytest.raises(DeviceLost):
        backend.alloc(12 * MiB)


def test_free_refuses_buffers_it_does_not_own(backend: CudaBackend) -> None:
    buffer = backend.alloc(MiB)
    backend.free(buffer)
    with pytest.raises(ValueError, match="not allocated here or was freed"):
        backend.free(buffer)


def test_buffers_are_aligned_for_vector_loads(backend: CudaBackend) -> None:
    for size in (1, 3, 4097, MiB + 5):
        assert backend.alloc(size).address % 16 == 0


# --- data movement --------------------------------------------------------------------------------


def test_upload_download_round_trip_with_offset(backend: CudaBackend) -> None:
    buffer = backend.alloc(64)
    data = np.arange(16, dtype=np.float32)
    backend.upload(buffer, data)
    assert np.array_equal(backend.download(buffer, np.float32, 16), data)
    assert np.array_equal(backend.download(buffer, np.float32, 4, offset=12), data[12:])


@pytest.mark.parametrize(
    ("count", "offset"), [(17, 0), (4, 13), (1, 16), (1, -1), (4, -4)], ids=str
)
def test_download_outside_the_buffer_is_refused(
    backend: CudaBackend, gpu: FakeGpu, count: int, offset: int
) -> None:
    buffer = backend.alloc(64)
    with pytest.raises(ValueError, match="download"):
        backend.download(buffer, np.float32, count, offset)
    assert "memcpy" not in gpu.calls


def test_upload_larger_than_the_buffer_is_refused(backend: CudaBackend, gpu: FakeGpu) -> None:
    buffer = backend.alloc(64)
    with pytest.raises(ValueError, match="upload needs 68 bytes"):
        backend.upload(buffer, np.zeros(17, np.float32))
    assert "memcpy" not in gpu.calls


# --- launch geometry ------------------------------------------------------------------------------


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _expected_blocks(geometry: Geometry, sm_count: int, items: int) -> int:
    return max(1, min(sm_count * geometry.blocks_per_sm, _ceil(items, geometry.threads)))


SIZES = [1, 3, 4, 1023, 1024, 1025, 256 * 4 * 132 + 1, 3 * MiB + 3]


@pytest.fixture(params=[132, 7], ids=["132sm", "7sm"])
def sm_backend(request: pytest.FixtureRequest, gpu: FakeGpu) -> Iterator[CudaBackend]:
    gpu.sm_count = request.param
    card = CudaBackend(0)
    yield card
    card.close()


@pytest.mark.parametrize("n", SIZES)
def test_grid_stride_kernels_get_one_vector_per_thread_up_to_the_cap(
    sm_backend: CudaBackend, gpu: FakeGpu, n: int
) -> None:
    """bandwidth/memtest/util headers: grid-stride over 16-byte vectors (ceil(n/4)); the grid is
    at most SM count × blocks-per-SM and never more blocks than the vectors need."""
    backend = sm_backend
    sm = gpu.sm_count
    a, b, c = (backend.alloc(4 * n + 64) for _ in range(3))
    gpu.on_launch("count_not_close_f32", _zero_counters)
    gpu.on_launch("word_hash", _zero_counters)
    gpu.on_launch("memtest_check", _zero_counters)
    backend.fill_f32(a, n, 1.0)
    backend.stream("triad", a, b, c, 2.0, n)
    backend.count_f32_not_close(a, n, 1.0, 0.0)
    backend.memtest_write(a, n, MemPattern("address"))
    backend.memtest_check(a, n, MemPattern("address"), None, 4)
    backend.word_hash(a, 4 * n)
    vectors = _ceil(n, 4)
    expected = {
        "fill_f32": _expected_blocks(DEFAULT_STREAM_GEOMETRY, sm, vectors),
        "stream_triad": _expected_blocks(DEFAULT_STREAM_GEOMETRY, sm, vectors),
        "count_not_close_f32": _expected_blocks(DEFAULT_REDUCE_GEOMETRY, sm, vectors),
        "memtest_write": _expected_blocks(DEFAULT_MEMTEST_GEOMETRY, sm, vectors),
        "memtest_check": _expected_blocks(DEFAULT_MEMTEST_GEOMETRY, sm, vectors),
        "word_hash": _expected_blocks(DEFAULT_REDUCE_GEOMETRY, sm, vectors),
    }
    got = {launch.name: launch.grid for launch in gpu.launches}
    assert got == {name: (blocks,) for name, blocks in expected.items()}
    for launch in gpu.launches:
        assert launch.block == (256,)
        assert launch.block[0] % 32 == 0  # the headers' block contract


def test_the_grid_is_capped_at_sm_count_times_blocks_per_sm(
    backend: CudaBackend, gpu: FakeGpu
) -> None:
    backend.reduce_geometry = Geometry(blocks_per_sm=4, threads=256)
    n = 4 * 256 * 132 * 4 * 3  # three times the vectors one capped grid covers
    buffer = backend.alloc(4 * n)
    gpu.on_launch("count_not_close_f32", _zero_counters)
    backend.count_f32_not_close(buffer, n, 1.0, 0.0)
    assert gpu.launches[-1].grid == (132 * 4,)


@pytest.mark.parametrize("n", [1, 255, 256, 257, 10_000])
def test_element_kernels_get_one_element_per_thread(
    backend: CudaBackend, gpu: FakeGpu, n: int
) -> None:
    """fill_uniform and compare_close work per element, not per vector."""
    result, reference = backend.alloc(4 * n), backend.alloc(8 * n)
    backend.fill_uniform(result, "fp32", n, 1, 0.0, 1.0)
    backend.fill_uniform(result, "fp16", n, 1, 0.0, 1.0)
    gpu.on_launch("compare_close_f32", _zero_counters)
    backend.compare_close(result, "fp32", reference, n, 0.1, 0.1, 4)
    blocks = _expected_blocks(DEFAULT_STREAM_GEOMETRY, 132, n)
    reduce_blocks = _expected_blocks(DEFAULT_REDUCE_GEOMETRY, 132, n)
    assert [(launch.name, launch.grid) for launch in gpu.launches] == [
        ("fill_uniform_f32", (blocks,)),
        ("fill_uniform_f16", (blocks,)),
        ("compare_close_f32", (reduce_blocks,)),
    ]


@pytest.mark.parametrize("n", [4, 1024, 4 * 256 * 128 * 132 + 4])
def test_stream_read_writes_one_partial_per_block(
    backend: CudaBackend, gpu: FakeGpu, n: int
) -> None:
    partials = backend.read_partials(n)
    assert partials == _expected_blocks(DEFAULT_READ_GEOMETRY, 132, _ceil(n, 4))
    a = backend.alloc(4 * n)
    c = backend.alloc(4 * partials)
    backend.stream("read", a, a, c, 0.0, n)
    assert gpu.launches[-1].grid == (partials,)
    small = backend.alloc(4 * partials - 4) if partials > 1 else None
    if small is not None:
        with pytest.raises(ValueError, match="stream read partials"):
            backend.stream("read", a, a, small, 0.0, n)


@pytest.mark.parametrize(
    ("op", "order"),
    [
        ("copy", "ac"),
        ("scale", "bc"),
        ("add", "abc"),
        ("triad", "abc"),
        ("read", "ac"),
    ],
)
def test_stream_passes_the_buffers_the_header_names(
    backend: CudaBackend, gpu: FakeGpu, op: str, order: str
) -> None:
    """bandwidth.cu: copy(a, c), scale(b, c), add(a, b, c), triad(a, b, c, s), read(a, partial)."""
    buffers = {name: backend.alloc(4096) for name in "abc"}
    backend.stream(op, buffers["a"], buffers["b"], buffers["c"], 3.0, 64)  # type: ignore[arg-type]
    launch = gpu.launches[-1]
    assert launch.name == f"stream_{op}"
    pointers = [int(arg) for arg in launch.args if isinstance(arg, np.uint64)][: len(order)]
    assert pointers == [buffers[name].address for name in order]
    assert np.uint64(64) in launch.args


def test_gemm_tensor_grid_is_one_block_per_64x64_tile(backend: CudaBackend, gpu: FakeGpu) -> None:
    n = 192
    a, bt, c = backend.alloc(2 * n * n), backend.alloc(2 * n * n), backend.alloc(4 * n * n)
    backend.gemm_tensor(a, bt, c, n)
    launch = gpu.launches[-1]
    assert (launch.name, launch.grid, launch.block) == ("gemm_f16_tn", (3, 3), (128,))


def test_fma_and_mma_launch_as_asked(backend: CudaBackend, gpu: FakeGpu) -> None:
    out, smids = backend.alloc(4 * 10 * 64 * FMA_CHAINS), backend.alloc(40)
    backend.fma_loop(out, smids, 10, 64, 100, 0.5)
    backend.mma_loop(out, smids, 10, 64, 100)
    assert [(x.name, x.grid, x.block) for x in gpu.launches] == [
        ("fma_loop", (10,), (64,)),
        ("mma_loop", (10,), (64,)),
    ]


def test_timing_spans_every_repeat(backend: CudaBackend, gpu: FakeGpu) -> None:
    a, b, c = (backend.alloc(4096) for _ in range(3))
    gpu.launch_seconds = 0.25
    elapsed = backend.stream("add", a, b, c, 1.0, 1024, repeats=3)
    assert elapsed == pytest.approx(0.75)
    assert [x.name for x in gpu.launches] == ["stream_add"] * 3


# --- size and shape checks ------------------------------------------------------------------------


def _sized_calls(
    backend: CudaBackend, n: int, big: DeviceBuffer
) -> dict[str, tuple[int, Callable[[DeviceBuffer], Any]]]:
    """Each call with the bytes it needs for n elements in the buffer given to it (the other
    buffers of stream are `big`)."""
    pattern = MemPattern("random", 3)
    return {
        "fill_f32": (4 * n, lambda x: backend.fill_f32(x, n, 1.0)),
        "fill_uniform_f32": (4 * n, lambda x: backend.fill_uniform(x, "fp32", n, 1, 0, 1)),
        "fill_uniform_f16": (2 * n, lambda x: backend.fill_uniform(x, "fp16", n, 1, 0, 1)),
        "count_f32_not_close": (4 * n, lambda x: backend.count_f32_not_close(x, n, 1, 0)),
        "memtest_write": (4 * n, lambda x: backend.memtest_write(x, n, pattern)),
        "memtest_check": (4 * n, lambda x: backend.memtest_check(x, n, pattern, None, 2)),
        "word_hash": (4 * n, lambda x: backend.word_hash(x, 4 * n)),
        "stream_copy_a": (4 * n, lambda x: backend.stream("copy", x, big, big, 1, n)),
        "stream_copy_c": (4 * n, lambda x: backend.stream("copy", big, big, x, 1, n)),
        "stream_triad_b": (4 * n, lambda x: backend.stream("triad", big, x, big, 1, n)),
        "stream_read_a": (4 * n, lambda x: backend.stream("read", x, big, big, 1, n)),
    }


SIZED = [
    "fill_f32",
    "fill_uniform_f32",
    "fill_uniform_f16",
    "count_f32_not_close",
    "memtest_write",
    "memtest_check",
    "word_hash",
    "stream_copy_a",
    "stream_copy_c",
    "stream_triad_b",
    "stream_read_a",
]


@pytest.mark.parametrize("name", SIZED)
def test_a_buffer_one_element_short_is_refused_before_launch(
    backend: CudaBackend, gpu: FakeGpu, name: str
) -> None:
    n = 1001
    big = backend.alloc(1 << 16)
    for outcome in ("count_not_close_f32", "memtest_check", "word_hash"):
        gpu.on_launch(outcome, _zero_counters)
    calls = _sized_calls(backend, n, big)
    assert sorted(calls) == sorted(SIZED)
    needed, call = calls[name]
    itemsize = 2 if name.endswith("f16") else 4
    short = backend.alloc(needed - itemsize)
    with pytest.raises(
        ValueError, match=f"needs {needed} bytes, the buffer has {needed - itemsize}"
    ):
        call(short)
    assert gpu.launches == []
    call(backend.alloc(needed))  # exactly enough is fine
    assert len(gpu.launches) == 1


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda b, x: b.word_hash(x, 6), "multiple of 4"),
        (lambda b, x: b.gemm_tensor(x, x, x, 32), "multiple of 64"),
        (lambda b, x: b.gemm_tensor(x, x, x, 0), "multiple of 64"),
        (lambda b, x: b.gemm_tensor(x, x, x, 128), "gemm_tensor A needs 32768"),
        (lambda b, x: b.fma_loop(x, x, 1, 1025, 1, 0.5), "threads must be 1..1024"),
        (lambda b, x: b.fma_loop(x, x, 0, 32, 1, 0.5), "blocks must be"),
        (lambda b, x: b.fma_loop(x, x, 1, 32, 2**31, 0.5), "iterations must fit"),
        (lambda b, x: b.fma_loop(x, x, 1000, 32, 1, 0.5), "fma_loop out needs"),
        (lambda b, x: b.mma_loop(x, x, 1, 48, 1), "multiple of 32"),
        (lambda b, x: b.stream("copy", x, x, x, 1, 4, repeats=0), "repeats"),
        (lambda b, x: b.stream("nope", x, x, x, 1, 4), "unknown stream op"),
        (lambda b, x: b.gemm_library(x, x, x, 64, "fp32", repeats=0), "repeats"),
        (lambda b, x: b.gemm_library(x, x, x, 64, "bf16"), "unknown GEMM dtype"),
        (lambda b, x: b.gemm_library(x, x, x, 128, "fp32"), "view needs 65536"),
        (lambda b, x: b.compare_close(x, "fp32", x, 4096, 0, 0, 1), "reference needs 32768"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_shapes_are_refused_before_launch(
    backend: CudaBackend, gpu: FakeGpu, call: Callable[[CudaBackend, DeviceBuffer], Any], match: str
) -> None:
    buffer = backend.alloc(16384)
    with pytest.raises(ValueError, match=match):
        call(backend, buffer)
    assert gpu.launches == []


@pytest.mark.parametrize("what", ["mma_loop", "gemm_tensor"])
def test_tensor_core_kernels_need_compute_capability_7_5(gpu: FakeGpu, what: str) -> None:
    gpu.compute_capability = (7, 0)
    with CudaBackend(0) as backend:
        buffer = backend.alloc(1 << 16)
        with pytest.raises(NotApplicable, match=r"7\.5"):
            if what == "mma_loop":
                backend.mma_loop(buffer, buffer, 1, 32, 1)
            else:
                backend.gemm_tensor(buffer, buffer, buffer, 64)
    assert gpu.launches == []


# --- results come from the kernels, never from the fake -------------------------------------------


def test_reading_a_result_no_test_set_fails(backend: CudaBackend) -> None:
    buffer = backend.alloc(4096)
    with pytest.raises(NotSimulatedError):
        backend.count_f32_not_close(buffer, 1024, 1.0, 0.0)
    backend.fill_f32(buffer, 1024, 1.0)
    with pytest.raises(NotSimulatedError):
        backend.download(buffer, np.float32, 4)


def test_memtest_check_reads_counters_and_clips_the_report(
    backend: CudaBackend, gpu: FakeGpu
) -> None:
    buffer = backend.alloc(4096)

    def three_faults(launch: Launch, fake: FakeGpu) -> None:
        counters, report = launch.array(9), launch.array(10)
        counters.host[:] = (3, 3)
        report.host[:6] = (buffer.address + 8, 0xFF, 0xFE, buffer.address + 16, 1, 0)
        counters.unknown = report.unknown = False

    gpu.on_launch("memtest_check", three_faults)
    check = backend.memtest_check(buffer, 1024, MemPattern("constant", 1), None, max_report=2)
    assert check.mismatches == 3
    assert check.first == ((buffer.address + 8, 0xFF, 0xFE), (buffer.address + 16, 1, 0))
    launch = gpu.launches[-1]
    assert launch.array(10).shape == (6,) and int(launch.args[11]) == 2
    assert int(launch.args[6]) == -1  # no rewrite: PATTERN_NONE


def test_compare_close_decodes_maxima_from_double_bits(backend: CudaBackend, gpu: FakeGpu) -> None:
    result, reference = backend.alloc(4096), backend.alloc(8192)

    def one_bad(launch: Launch, fake: FakeGpu) -> None:
        stats, index, values = launch.array(5), launch.array(6), launch.array(7)
        stats.host[:] = np.array([1, 1, 0, 0], dtype=np.uint64)
        stats.host[2:4] = np.array([0.5, 0.25], dtype=np.float64).view(np.uint64)
        index.host[0], values.host[:2] = 7, (1.5, 1.0)
        for x in (stats, index, values):
            x.unknown = False

    gpu.on_launch("compare_close_f32", one_bad)
    check = backend.compare_close(result, "fp32", reference, 1024, 0.1, 0.1, 4)
    assert (check.checked, check.mismatches) == (1024, 1)
    assert (check.max_abs_error, check.max_rel_error) == (0.5, 0.25)
    assert check.first == ((7, 1.5, 1.0),)


# --- compiling ------------------------------------------------------------------------------------


def test_a_compile_error_is_a_kernel_compile_error(backend: CudaBackend, gpu: FakeGpu) -> None:
    buffer = backend.alloc(4096)
    gpu.fail("compile:util", 1, "compile")
    with pytest.raises(KernelCompileError, match=r"kernels/util\.cu failed to compile for sm_90"):
        backend.fill_f32(buffer, 16, 1.0)


def test_a_binary_the_driver_cannot_load_is_a_kernel_compile_error(
    backend: CudaBackend, gpu: FakeGpu
) -> None:
    buffer = backend.alloc(4096)
    gpu.fail("compile:util", 209, "driver")
    with pytest.raises(KernelCompileError, match="the driver cannot load it"):
        backend.fill_f32(buffer, 16, 1.0)


def test_a_sticky_driver_error_while_loading_loses_the_card(
    backend: CudaBackend, gpu: FakeGpu
) -> None:
    buffer = backend.alloc(4096)
    gpu.fail("compile:util", 999, "driver")
    with pytest.raises(DeviceLost, match="fill_f32 failed"):
        backend.fill_f32(buffer, 16, 1.0)


def test_nvtx_ranges_follow_tests(backend: CudaBackend) -> None:
    nvtx = sys.modules["cupy.cuda.nvtx"]
    backend.begin_test("memtest")
    assert nvtx.ranges == ["gpuhealth memtest"]
    backend.end_test()
    backend.end_test()  # one too many is harmless
    assert nvtx.ranges == []


def test_the_fake_rejects_what_cuda_would(backend: CudaBackend, gpu: FakeGpu) -> None:
    """The fake is a check, not a sink: wrong argument types, counts and shapes fail."""
    from gpuhealth.measure.backends import kernels

    kernel = kernels.function("util", "fill_f32", "90")
    buffer = backend.alloc(64)
    good = (np.uint64(buffer.address), np.uint64(16), np.float32(1.0))
    kernel((1,), (32,), good)
    with pytest.raises(FakeCheckError, match="needs float32"):
        kernel((1,), (32,), (*good[:2], np.float64(1.0)))
    with pytest.raises(FakeCheckError, match="takes 3 arguments"):
        kernel((1,), (32,), good[:2])
    with pytest.raises(FakeCheckError, match="1024 threads"):
        kernel((1,), (2048,), good)
    with pytest.raises(FakeCheckError, match="aligned"):
        kernel((1,), (32,), (np.uint64(buffer.address + 4), *good[1:]))
    with pytest.raises(fake_cupy.CUDARuntimeError):  # a pointer into no allocation
        kernel((1,), (32,), (np.uint64(16), *good[1:]))
