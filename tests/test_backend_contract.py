"""The backend contract (gpuhealth/measure/backends/base.py): what every backend must do, tested the
same way on each. "sim" always runs; "cuda" runs where CuPy imports and CUDA sees a device (marked
`gpu`, skipped elsewhere by the check in this file).

Expected values come from host arithmetic, gpuhealth.patterns and float64 products, never from the
backend under test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from gpuhealth.errors import DeviceOutOfMemory
from gpuhealth.measure.backends.base import (
    FMA_CHAINS,
    Backend,
    CloseCheck,
    DeviceBuffer,
    DeviceInfo,
    MemCheck,
    fma_start,
)
from gpuhealth.measure.backends.sim import DENSE_BYTES, SimBackend
from gpuhealth.measure.backends.simcards import load_card
from gpuhealth.measure.stresstests.bandwidth import HostArrays
from gpuhealth.measure.stresstests.fp16_tensor import gemm_tolerance
from gpuhealth.measure.stresstests.gemm import library_tolerance
from gpuhealth.models import CardIdentity, HealthCounters, ProcessInfo, TelemetrySample
from gpuhealth.patterns import MemPattern, expected_words, standard_sequence, word_digest


def _cuda_usable() -> tuple[bool, str]:
    try:
        import cupy

        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # ImportError, or CUDA's error where there is no driver
        return False, f"CuPy/CUDA not usable: {type(exc).__name__}"
    return count > 0, "CUDA sees no device"


CUDA_OK, CUDA_WHY = _cuda_usable()
BACKENDS = [
    "sim",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not CUDA_OK, reason=CUDA_WHY)]),
]


def open_named(name: str) -> Backend:
    if name == "sim":
        return SimBackend(load_card("h100-sxm5-80gb"))
    from gpuhealth.measure.backends.cuda import CudaBackend

    return CudaBackend(0)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    card = open_named(request.param)
    yield card
    card.close()


Alloc = Callable[[int], DeviceBuffer]


@pytest.fixture
def alloc(backend: Backend) -> Iterator[Alloc]:
    """Allocations freed after the test."""
    made: list[DeviceBuffer] = []

    def make(nbytes: int) -> DeviceBuffer:
        buffer = backend.alloc(nbytes)
        made.append(buffer)
        return buffer

    yield make
    for buffer in made:
        backend.free(buffer)


# --- identity and protocol -----------------------------------------------------------------------


def test_is_a_backend(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name in ("sim", "cuda")


def test_device_info_identity_counters(backend: Backend) -> None:
    info = backend.device_info()
    assert isinstance(info, DeviceInfo)
    assert info.sm_count > 0 and info.memory_total_bytes > 1 << 30
    assert info.l2_bytes > 0 and info.fp32_lanes_per_sm in (64, 128)
    ident = backend.identity()
    assert isinstance(ident, CardIdentity)
    assert ident.backend == backend.name
    assert ident.sm_count == info.sm_count
    # NVML and CUDA may count the memory a little differently
    assert ident.memory_total_bytes is not None
    assert abs(ident.memory_total_bytes - info.memory_total_bytes) < 0.02 * info.memory_total_bytes
    assert isinstance(backend.counters(), HealthCounters)
    assert all(isinstance(p, ProcessInfo) for p in backend.processes())
    assert isinstance(backend.xid_events(), tuple)
    assert 0 < backend.memory_free_bytes() <= info.memory_total_bytes


def test_clock_is_monotonic_and_sleep_advances_it(backend: Backend) -> None:
    t0 = backend.clock_s()
    backend.sleep_s(0.05)
    t1 = backend.clock_s()
    assert t1 - t0 >= 0.049


def test_begin_and_end_test(backend: Backend) -> None:
    backend.begin_test("bandwidth")
    backend.end_test()


# --- memory --------------------------------------------------------------------------------------


def test_upload_download_round_trip(backend: Backend, alloc: Alloc) -> None:
    host = np.arange(1000, dtype=np.float32) * np.float32(0.5) - np.float32(3)
    buffer = alloc(host.nbytes)
    backend.upload(buffer, host)
    back = np.asarray(backend.download(buffer, np.float32, host.size))
    np.testing.assert_array_equal(back, host)
    middle = np.asarray(backend.download(buffer, np.float32, 10, offset=500))
    np.testing.assert_array_equal(middle, host[500:510])


def test_alloc_beyond_free_raises_out_of_memory(backend: Backend, alloc: Alloc) -> None:
    free = backend.memory_free_bytes()
    with pytest.raises(DeviceOutOfMemory):
        backend.alloc(free + (1 << 30))
    # the card is still usable afterwards, and an allocation takes free memory
    before = backend.memory_free_bytes()
    alloc(256 << 20)
    assert backend.memory_free_bytes() <= before - (128 << 20)


# --- memtest -------------------------------------------------------------------------------------

# Larger than the sim's dense limit, so that its described-tail path runs too.
MEMTEST_BYTES = DENSE_BYTES + (8 << 20)
ALL_PATTERNS = [*standard_sequence(4), *(p.inverted() for p in standard_sequence(4))]


@pytest.mark.parametrize("pattern", ALL_PATTERNS, ids=lambda p: p.label)
def test_memtest_write_then_check_finds_nothing(
    backend: Backend, alloc: Alloc, pattern: MemPattern
) -> None:
    buffer = alloc(MEMTEST_BYTES)
    n_words = MEMTEST_BYTES // 4
    assert backend.memtest_write(buffer, n_words, pattern) > 0
    check = backend.memtest_check(buffer, n_words, pattern, None, 16)
    assert isinstance(check, MemCheck)
    assert (check.mismatches, check.first) == (0, ())
    assert check.elapsed_s > 0
    # what was written is the pattern, word for word (at the buffer's device addresses)
    head = np.asarray(backend.download(buffer, np.uint32, 4096))
    want = expected_words(pattern, np.arange(4096, dtype=np.uint64), buffer.address)
    np.testing.assert_array_equal(head, want)


@pytest.mark.parametrize("nbytes", [4 << 20, MEMTEST_BYTES])
def test_memtest_check_with_rewrite(backend: Backend, alloc: Alloc, nbytes: int) -> None:
    buffer = alloc(nbytes)
    n_words = nbytes // 4
    pattern = MemPattern("random", 0x5EED)
    backend.memtest_write(buffer, n_words, pattern)
    first = backend.memtest_check(buffer, n_words, pattern, pattern.inverted(), 8)
    assert first.mismatches == 0
    # the rewrite happened: the inverse checks clean, the old pattern differs in every word
    assert backend.memtest_check(buffer, n_words, pattern.inverted(), None, 8).mismatches == 0
    stale = backend.memtest_check(buffer, n_words, pattern, None, 8)
    if nbytes <= DENSE_BYTES or backend.name != "sim":
        assert stale.mismatches == n_words
    else:
        # beyond its dense window the sim evaluates only faulty cells (it assumes a check reads
        # the pattern last written there), so a stale-pattern check counts the window only
        assert stale.mismatches > 0
    assert len(stale.first) == 8
    for address, expected, actual in stale.first:
        assert buffer.address <= address < buffer.address + nbytes
        assert address % 4 == 0
        index = np.array([(address - buffer.address) // 4], dtype=np.uint64)
        assert expected == int(expected_words(pattern, index, buffer.address)[0])
        assert actual == ~expected & 0xFFFFFFFF


# --- stream kernels ------------------------------------------------------------------------------

STREAM_N = (DENSE_BYTES + (16 << 20)) // 4


def test_stream_ops_give_host_arithmetic(backend: Backend, alloc: Alloc) -> None:
    n = STREAM_N
    a, b, c = (alloc(4 * n) for _ in range(3))
    partials = alloc(4 << 16)
    host = HostArrays()
    for buffer, value in ((a, host.a), (b, host.b), (c, host.c)):
        backend.fill_f32(buffer, n, float(value))
    backend.fill_f32(partials, 1 << 16, 0.0)
    for _ in range(3):
        for op in ("copy", "scale", "add", "triad"):
            assert backend.stream(op, a, b, c, float(host.s), n) > 0  # type: ignore[arg-type]
            host.apply(op)  # type: ignore[arg-type]
    for buffer, value in ((a, host.a), (b, host.b), (c, host.c)):
        assert backend.count_f32_not_close(buffer, n, float(value), 1e-5) == 0
        # and the count does see wrong values: every element differs from value * 2
        assert backend.count_f32_not_close(buffer, n, float(value) * 2, 1e-5) == n
    assert backend.stream("read", a, partials, partials, 0.0, n) > 0
    sums = np.asarray(backend.download(partials, np.float32, 1 << 16), dtype=np.float64)
    assert sums.sum() == pytest.approx(float(host.a) * n, rel=1e-3)


def test_stream_repeats_give_the_same_result_in_proportional_time(
    backend: Backend, alloc: Alloc
) -> None:
    """The soak's memory phase queues many triads per call: same values as one, k times the work."""
    n = STREAM_N
    a, b, c = (alloc(4 * n) for _ in range(3))
    backend.fill_f32(b, n, 1.5)
    backend.fill_f32(c, n, 2.0)
    backend.stream("triad", a, b, c, 3.0, n)  # warm-up: a kernel's first launch compiles/loads it
    one = min(backend.stream("triad", a, b, c, 3.0, n) for _ in range(3))
    many = min(backend.stream("triad", a, b, c, 3.0, n, 20) for _ in range(3))
    assert backend.count_f32_not_close(a, n, 1.5 + 3.0 * 2.0, 1e-6) == 0
    assert 10 * one < many < 40 * one  # 20 launches: not one, not run twice each
    with pytest.raises(ValueError, match="repeats"):
        backend.stream("triad", a, b, c, 3.0, n, 0)


# --- compute -------------------------------------------------------------------------------------


def _grid(backend: Backend) -> tuple[int, int]:
    return 2 * backend.device_info().sm_count, 256


def test_fma_loop_every_thread_agrees(backend: Backend, alloc: Alloc) -> None:
    blocks, threads = _grid(backend)
    out, smids = alloc(4 * blocks * threads * FMA_CHAINS), alloc(4 * blocks)
    assert backend.fma_loop(out, smids, blocks, threads, 256, -1.9) > 0
    values = np.asarray(
        backend.download(out, np.float32, blocks * threads * FMA_CHAINS), dtype=np.float32
    ).reshape(-1, FMA_CHAINS)
    assert (values.view(np.uint32) == values[0].view(np.uint32)).all()
    assert np.isfinite(values).all() and (np.abs(values) <= 2.0).all()
    # the chains start from different values, so they are not all equal to each other
    assert len(set(values[0].tolist())) > 1
    assert fma_start(0) != fma_start(1)
    sm = np.asarray(backend.download(smids, np.uint32, blocks))
    assert (sm < backend.device_info().sm_count).all()


def test_mma_loop_returns_to_start(backend: Backend, alloc: Alloc) -> None:
    blocks, threads = _grid(backend)
    out, smids = alloc(4 * blocks * threads), alloc(4 * blocks)
    backend.upload(out, np.full(blocks * threads, 7.0, dtype=np.float32))  # must be overwritten
    assert backend.mma_loop(out, smids, blocks, threads, 256) > 0
    residue = np.asarray(backend.download(out, np.float32, blocks * threads))
    assert (residue == 0.0).all()


GEMM_N = 256


def _uniform_pair(
    backend: Backend, alloc: Alloc, dtype: str, itemsize: int
) -> tuple[DeviceBuffer, DeviceBuffer]:
    n = GEMM_N
    a, b = alloc(n * n * itemsize), alloc(n * n * itemsize)
    backend.fill_uniform(a, dtype, n * n, 11, -1.0, 1.0)  # type: ignore[arg-type]
    backend.fill_uniform(b, dtype, n * n, 12, -1.0, 1.0)  # type: ignore[arg-type]
    return a, b


def test_gemm_tensor_matches_float64_reference(backend: Backend, alloc: Alloc) -> None:
    n = GEMM_N
    a, bt = _uniform_pair(backend, alloc, "fp16", 2)
    c, ref = alloc(n * n * 4), alloc(n * n * 8)
    assert backend.gemm_tensor(a, bt, c, n) > 0
    backend.gemm_reference_f64(a, bt, ref, n, "fp16", b_transposed=True)
    rel, abs_ = gemm_tolerance(n)
    check = backend.compare_close(c, "fp32", ref, n * n, rel, abs_, 16)
    assert isinstance(check, CloseCheck)
    assert check.checked > 0 and check.mismatches == 0 and check.first == ()
    assert check.max_abs_error <= abs_
    # a product of random inputs is not all zeros: the check compared real numbers
    assert check.max_abs_error > 0 or backend.name == "sim"


@pytest.mark.parametrize(("dtype", "itemsize"), [("fp16", 2), ("fp32", 4)])
def test_gemm_library_matches_float64_reference(
    backend: Backend, alloc: Alloc, dtype: str, itemsize: int
) -> None:
    n = GEMM_N
    a, b = _uniform_pair(backend, alloc, dtype, itemsize)
    c, ref = alloc(n * n * itemsize), alloc(n * n * 8)
    assert backend.gemm_library(a, b, c, n, dtype, repeats=2) > 0  # type: ignore[arg-type]
    backend.gemm_reference_f64(a, b, ref, n, dtype, b_transposed=False)  # type: ignore[arg-type]
    rel, abs_ = library_tolerance(dtype, n)  # type: ignore[arg-type]
    check = backend.compare_close(c, dtype, ref, n * n, rel, abs_, 16)  # type: ignore[arg-type]
    assert check.checked > 0 and check.mismatches == 0


def test_word_hash_equal_for_equal_content(backend: Backend, alloc: Alloc) -> None:
    host = (np.arange(1 << 16, dtype=np.uint32) * np.uint32(2654435761)).astype(np.uint32)
    x, y = alloc(host.nbytes), alloc(host.nbytes)
    backend.upload(x, host)
    backend.upload(y, host)
    hx = backend.word_hash(x, host.nbytes)
    assert hx == backend.word_hash(y, host.nbytes)
    assert hx == word_digest(host)
    changed = host.copy()
    changed[12345] ^= np.uint32(1 << 17)
    backend.upload(y, changed)
    assert backend.word_hash(y, host.nbytes) != hx


def test_word_hash_of_a_repeated_computation_is_stable(backend: Backend, alloc: Alloc) -> None:
    """The soak's silent-data-corruption check: the same product twice, the same digest."""
    n = GEMM_N
    a, b = _uniform_pair(backend, alloc, "fp16", 2)
    c1, c2 = alloc(n * n * 2), alloc(n * n * 2)
    backend.gemm_library(a, b, c1, n, "fp16")
    backend.gemm_library(a, b, c2, n, "fp16")
    assert backend.word_hash(c1, n * n * 2) == backend.word_hash(c2, n * n * 2)
    other = alloc(n * n * 2)
    backend.fill_uniform(other, "fp16", n * n, 99, -1.0, 1.0)
    backend.gemm_library(a, other, c2, n, "fp16")
    assert backend.word_hash(c1, n * n * 2) != backend.word_hash(c2, n * n * 2)


# --- compare_close sees a planted error ----------------------------------------------------------


def test_compare_close_counts_a_planted_error(
    backend: Backend, alloc: Alloc, sim: Callable[..., SimBackend]
) -> None:
    n = GEMM_N
    rel, abs_ = gemm_tolerance(n)
    if backend.name == "sim":
        # the sim keeps a product's corner block; plant the error with its wrong_results fault
        faulty = sim("wrong_results = { rate = 1.0, sm = 3 }")
        a, bt = faulty.alloc(n * n * 2), faulty.alloc(n * n * 2)
        c, ref = faulty.alloc(n * n * 4), faulty.alloc(n * n * 8)
        faulty.fill_uniform(a, "fp16", n * n, 11, -1.0, 1.0)
        faulty.fill_uniform(bt, "fp16", n * n, 12, -1.0, 1.0)
        faulty.gemm_tensor(a, bt, c, n)
        faulty.gemm_reference_f64(a, bt, ref, n, "fp16", b_transposed=True)
        check = faulty.compare_close(c, "fp32", ref, n * n, rel, abs_, 16)
        assert check.mismatches == 1
        index, got, want = check.first[0]
        assert 0 <= index < n * n
        assert abs(got - want) > abs_ + rel * abs(want)
        return
    # any backend whose buffers take uploads: corrupt one element of a correct product
    a, bt = _uniform_pair(backend, alloc, "fp16", 2)
    c, ref = alloc(n * n * 4), alloc(n * n * 8)
    backend.gemm_tensor(a, bt, c, n)
    backend.gemm_reference_f64(a, bt, ref, n, "fp16", b_transposed=True)
    result = np.asarray(backend.download(c, np.float32, n * n), dtype=np.float32).copy()
    result[5 * n + 7] += np.float32(1.0)
    result[9 * n + 1] = np.float32(np.nan)  # NaN always counts
    backend.upload(c, result)
    check = backend.compare_close(c, "fp32", ref, n * n, rel, abs_, 16)
    assert check.mismatches == 2
    assert sorted(i for i, _, _ in check.first) == [5 * n + 7, 9 * n + 1]


# --- telemetry -----------------------------------------------------------------------------------


def test_telemetry_start_drain_stop(backend: Backend, alloc: Alloc) -> None:
    one = backend.telemetry()
    assert isinstance(one, TelemetrySample)
    backend.drain_telemetry()  # whatever an earlier test left
    backend.start_telemetry(0.05)
    try:
        buffer = alloc(64 << 20)
        backend.fill_f32(buffer, 16 << 20, 1.0)
        backend.sleep_s(0.4)
        first = backend.drain_telemetry()
        backend.sleep_s(0.3)
        second = backend.drain_telemetry()
    finally:
        backend.stop_telemetry()
    assert len(first) >= 3 and len(second) >= 2
    times = [s.t_s for s in first + second]
    assert all(later > earlier for earlier, later in itertools.pairwise(times))
    assert all(isinstance(s, TelemetrySample) for s in first + second)
    assert any(s.temperature_c is not None for s in first + second)
    # stopped: no more samples arrive
    backend.drain_telemetry()
    backend.sleep_s(0.3)
    assert len(backend.drain_telemetry()) <= 1


# --- PCIe copies (issue 14) ----------------------------------------------------------------------

# Larger than the sim's dense limit: its windowed buffers copy their windows.
LINK_BYTES = DENSE_BYTES + (4 << 20)


@pytest.mark.parametrize("both", [False, True], ids=["one way each", "both at once"])
def test_link_copies_move_the_bytes_both_ways(backend: Backend, alloc: Alloc, both: bool) -> None:
    source, landing = backend.host_alloc(LINK_BYTES), backend.host_alloc(LINK_BYTES)
    try:
        assert source.nbytes == LINK_BYTES and source.data.dtype == np.uint8
        words = source.data[: source.data.size // 4 * 4].view(np.uint32)
        words[:] = expected_words(
            MemPattern("random", 7), np.arange(words.size, dtype=np.uint64), 0
        )
        into, out_of = alloc(LINK_BYTES), alloc(LINK_BYTES)
        n_words = LINK_BYTES // 4
        backend.memtest_write(out_of, n_words, MemPattern("random", 7))
        landing.data[:] = 0
        if both:
            copies = [backend.link_copy(LINK_BYTES, h2d=(into, source), d2h=(landing, out_of))]
        else:
            copies = [
                backend.link_copy(LINK_BYTES, h2d=(into, source)),
                backend.link_copy(LINK_BYTES, d2h=(landing, out_of)),
            ]
        assert all(c.elapsed_s > 0 for c in copies)
        # the device holds what the host sent; the host what the device wrote
        check = backend.memtest_check(into, n_words, MemPattern("random", 7), None, 4)
        assert check.mismatches == 0
        assert np.array_equal(landing.data, source.data)
    finally:
        backend.host_free(source)
        backend.host_free(landing)
