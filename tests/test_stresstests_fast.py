"""The stress tests' verification, checked fast: each test run on a small configuration against the
sim backend (healthy, then with a fault only its verification can see), and the verification
helpers called directly with planted wrong elements, lanes, words and bytes. Every assertion names
the exact result: pass or fail, the element, thread, address or byte named, and the numbers.

This is the mutation-test selection of the `stresstests` module (bench/mutation.py): no test here
grades a card, each runs in a fraction of a second (tests/test_verifications.py grades whole sim
cards to prove the same verifications end to end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from simkit import H100, card_toml

from gpuhealth.errors import DeviceOutOfMemory
from gpuhealth.measure.backends.base import (
    FMA_CHAINS,
    MMA_ACCUMULATORS,
    STREAM_BYTES_PER_ELEMENT,
    CloseCheck,
    LinkCopy,
    MemCheck,
)
from gpuhealth.measure.backends.sim import SimBackend, SimHostBuffer
from gpuhealth.measure.backends.simcards import load_card
from gpuhealth.measure.stresstests import (
    bandwidth,
    fp16_tensor,
    fp32,
    gemm,
    memtest,
    pcie,
    sm_checks,
    soak,
)
from gpuhealth.measure.stresstests import base as stress_base
from gpuhealth.measure.stresstests.base import Outcome, StressTest, TestContext, execute
from gpuhealth.measure.stresstests.sm_checks import MAX_LISTED, full_grid, iterations_for
from gpuhealth.models import MemoryMismatch, Metric, TestResult, Verification, WrongResult
from gpuhealth.patterns import MemPattern, expected_words
from gpuhealth.presets import (
    PRESETS,
    BandwidthParams,
    ComputeParams,
    GemmParams,
    MemtestParams,
    PcieParams,
    Preset,
    SoakParams,
    TensorParams,
)

GIB = 1 << 30
MIB = 1 << 20
KIB64 = 64 << 10

# Small, fast settings: few repetitions, short soak; the sim runs each test in well under 0.1 s.
SMALL = replace(
    PRESETS["quick"],
    name="small",
    bandwidth=BandwidthParams(1 * GIB, warmup=1, repetitions=3, budget_s=30),
    memtest=MemtestParams(patterns=2, passes=1, walking_shifts=1, bit_fade_s=2.0, budget_s=60),
    fp32=ComputeParams(warmup=1, repetitions=3, launch_s=0.02, budget_s=20),
    fp16_tensor=TensorParams(warmup=1, repetitions=3, launch_s=0.02, gemm_n=1024, budget_s=20),
    gemm=GemmParams(n=1024, warmup=1, repetitions=2, budget_s=30),
    soak=SoakParams(duration_s=2.0, iteration_s=0.5, gemm_n=1024, memory_phase_s=2.5, budget_s=60),
    pcie=PcieParams(256 << 20, warmup=1, repetitions=2, budget_s=20),
)


def with_params(name: str, **changes: Any) -> Preset:
    return replace(SMALL, **{name: replace(getattr(SMALL, name), **changes)})


@pytest.fixture
def card(tmp_path: Path) -> Iterator[Callable[..., SimBackend]]:
    """card(faults_toml) -> a sim H100 with those faults."""
    opened: list[SimBackend] = []

    def make(faults: str = "") -> SimBackend:
        path = tmp_path / f"card{len(opened)}.toml"
        path.write_text(card_toml(faults, H100), encoding="utf-8")
        backend = SimBackend(load_card(str(path)))
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        backend.close()


READS_PER_TEST = 200  # first_not_close bisects: about log2(n) reads per wrong array


@pytest.fixture(autouse=True)
def _bounded_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bisection that does not converge fails its test instead of hanging it."""
    count = SimBackend.count_f32_not_close
    reads = iter(range(READS_PER_TEST))

    def bounded(self: SimBackend, *args: Any) -> int:
        if next(reads, None) is None:
            raise AssertionError(f"more than {READS_PER_TEST} reads of an array")
        return count(self, *args)

    monkeypatch.setattr(SimBackend, "count_f32_not_close", bounded)


KERNELS_PER_TEST = 20_000  # the most any test here launches is under 300


@pytest.fixture(autouse=True)
def _bounded_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop that no longer advances the card's clock fails its test instead of hanging it."""
    kernel = SimBackend._kernel
    launches = iter(range(KERNELS_PER_TEST))

    def bounded(self: SimBackend, *args: Any, **kw: Any) -> float:
        if next(launches, None) is None:
            raise AssertionError(f"more than {KERNELS_PER_TEST} kernels launched")
        return float(kernel(self, *args, **kw))

    monkeypatch.setattr(SimBackend, "_kernel", bounded)


EARLIER_S = 0.5  # the run started this long before the test (earlier tests ran)


def context(
    backend: SimBackend, test: str, chosen: Preset = SMALL, spy: Any = None, **info: Any
) -> TestContext:
    """The test's context, on a card whose clock is not at 0 and a run that started before the
    test: times relative to the run's start are not the card's clock."""
    backend.sleep_s(1.0)
    device = replace(backend.device_info(), **info) if info else backend.device_info()
    return TestContext(
        spy or backend, device, chosen, backend.clock_s() - EARLIER_S, chosen.budget_s(test)
    )


def run(
    backend: SimBackend, test: StressTest, chosen: Preset = SMALL, **info: Any
) -> tuple[TestResult, TestContext]:
    ctx = context(backend, test.name, chosen, **info)
    return execute(test, ctx).result, ctx


def metric(result: TestResult, name: str) -> Metric:
    (found,) = [m for m in result.metrics if m.name == name]
    return found


def buffer_of(backend: SimBackend, values: np.ndarray) -> Any:
    buffer = backend.alloc(values.nbytes)
    backend.upload(buffer, values)
    return buffer


class Spy:
    """The sim backend, with every call the test makes of it recorded (name, args, kwargs,
    result): what the test asked of the card, and the kernel times its numbers come from."""

    def __init__(self, backend: SimBackend) -> None:
        self.backend = backend
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any], Any]] = []
        self.clocks: list[float] = []  # the card's clock after each call

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.backend, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kw: Any) -> Any:
            result = attr(*args, **kw)
            self.calls.append((name, args, kw, result))
            self.clocks.append(self.backend.clock_s())
            return result

        return call

    def called(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any], Any]]:
        return [(args, kw, result) for n, args, kw, result in self.calls if n == name]

    def clocks_after(self, name: str) -> list[float]:
        return [t for (n, *_), t in zip(self.calls, self.clocks, strict=True) if n == name]

    def seconds(self, name: str) -> list[float]:
        """The device seconds each call of a timed kernel returned."""
        return [r if isinstance(r, float) else r.elapsed_s for _, _, r in self.called(name)]


def spied(
    backend: SimBackend, test: StressTest, chosen: Preset = SMALL, **info: Any
) -> tuple[TestResult, Spy, TestContext]:
    spy = Spy(backend)
    ctx = context(backend, test.name, chosen, spy, **info)
    return execute(test, ctx).result, spy, ctx


# --- bandwidth --------------------------------------------------------------------------------


def test_host_arrays_replay_babelstream_in_float32() -> None:
    host = bandwidth.HostArrays()
    a, b, c, s = np.float32(0.1), np.float32(0.2), np.float32(0.0), np.float32(0.4)
    assert (host.a, host.b, host.c, host.s) == (a, b, c, s)
    for _ in range(2):
        for op in bandwidth.OPS:
            host.apply(op)
        c = a
        b = np.float32(s * c)
        c = np.float32(a + b)
        a = np.float32(b + s * c)
    assert (host.a, host.b, host.c) == (a, b, c)
    assert all(isinstance(v, np.float32) for v in (host.a, host.b, host.c))
    host.apply("read")  # reads change nothing
    assert (host.a, host.b, host.c) == (a, b, c)


def test_bandwidth_healthy_card(card: Callable[..., SimBackend]) -> None:
    backend = card()
    result, ctx = run(backend, bandwidth.BandwidthTest())
    n = GIB // 4
    assert result.status == "passed" and result.message is None
    assert result.parameters == {
        "array_bytes": GIB,
        "elements": n,
        "l2_bytes": ctx.info.l2_bytes,
        "warmup": 1,
        "repetitions": 3,
    }
    assert [m.name for m in result.metrics] == [f"{op}_gbs" for op in bandwidth.OPS]
    model = backend._model.performance
    for op in bandwidth.OPS:
        rates = metric(result, f"{op}_gbs").values
        assert len(rates) == 3
        want = getattr(model, f"{op}_gbs")
        assert all(0.8 * want < r < 1.2 * want for r in rates), (op, rates, want)
    arrays, read = result.verifications
    assert arrays == Verification(
        method="every element of a, b, c against the host's float32 replay of all kernels",
        passed=True,
        checked=3 * n,
        mismatches=0,
        bound=bandwidth.REL_TOL,
    )
    assert read.passed and read.checked == 1 and read.mismatches == 0 and read.bound == 1e-3
    assert read.method == "read kernel's sum of a against n × the host value"
    assert read.max_relative_error is not None and read.max_relative_error < 1e-6
    assert read.wrong_results == ()
    assert backend.memory_free_bytes() == ctx.backend.memory_free_bytes()


def test_bandwidth_names_the_element_a_stream_kernel_wrote_wrong(
    card: Callable[..., SimBackend],
) -> None:
    backend = card('wrong_results = { rate = 1.0, test = "bandwidth", index = 1000 }')
    result, _ = run(backend, bandwidth.BandwidthTest())
    n = GIB // 4
    assert result.status == "failed"
    arrays, read = result.verifications
    assert not arrays.passed and read.passed
    assert arrays.mismatches == len(arrays.wrong_results) >= 1
    host = bandwidth.HostArrays()
    for _ in range(1 + 3):
        for op in bandwidth.OPS:
            host.apply(op)
    expected = {"a": float(host.a), "b": float(host.b), "c": float(host.c)}
    for wrong in arrays.wrong_results:
        name = wrong.location.split()[1]
        assert wrong.location == f"array {name} element 1000"
        assert wrong.expected == expected[name]
        assert wrong.actual is None
        assert (
            wrong.detail
            == f"1 of {n} elements differ from the host value, the first at element 1000"
        )
    assert arrays.checked == 3 * n


@pytest.mark.parametrize(
    ("array_bytes", "free_bytes", "expected"),
    [
        (1 * MIB, None, 8 * 50 * MIB),  # at least 8x L2 (H100: 50 MiB)
        (1 * GIB, None, 1 * GIB),
        (40 * GIB, 12 * GIB, 4 * GIB),  # (free + 32) // 3 = 4 GiB + 10, rounded down to 16
    ],
)
def test_bandwidth_array_size(
    card: Callable[..., SimBackend],
    monkeypatch: pytest.MonkeyPatch,
    array_bytes: int,
    free_bytes: int | None,
    expected: int,
) -> None:
    backend = card()
    assert backend.device_info().l2_bytes == 50 * MIB
    if free_bytes is not None:
        extra = bandwidth.MEMORY_RESERVE_BYTES + bandwidth.PARTIALS * 4 + 32
        monkeypatch.setattr(backend, "memory_free_bytes", lambda: free_bytes + extra)
    chosen = with_params("bandwidth", array_bytes=array_bytes, warmup=0, repetitions=3)
    result, _ = run(backend, bandwidth.BandwidthTest(), chosen)
    assert result.status == "passed", result.message
    assert result.parameters["array_bytes"] == expected
    assert type(result.parameters["array_bytes"]) is int
    assert result.parameters["elements"] == expected // 4


@pytest.mark.parametrize("short_bytes", [0, 16])
def test_bandwidth_needs_arrays_eight_times_l2(
    card: Callable[..., SimBackend], monkeypatch: pytest.MonkeyPatch, short_bytes: int
) -> None:
    backend = card()
    l2 = backend.device_info().l2_bytes
    free = 3 * 8 * l2 - 3 * short_bytes
    reserve = bandwidth.MEMORY_RESERVE_BYTES + bandwidth.PARTIALS * 4
    monkeypatch.setattr(backend, "memory_free_bytes", lambda: free + reserve)
    result, _ = run(backend, bandwidth.BandwidthTest())
    if short_bytes == 0:
        assert result.status == "passed" and result.parameters["array_bytes"] == 8 * l2
    else:
        assert result.status == "error"
        assert result.message == (
            f"not enough free memory for arrays 8× larger than L2 ({free / 2**30:.2f} GiB free)"
        )


def test_bandwidth_check_arrays_names_the_first_bad_element(
    card: Callable[..., SimBackend],
) -> None:
    backend = card()
    ctx = context(backend, "bandwidth")
    host = bandwidth.HostArrays()
    host.a, host.b, host.c = np.float32(0.5), np.float32(-0.25), np.float32(2.0)
    n = 1000
    a = np.full(n, host.a, np.float32)
    b = np.full(n, host.b, np.float32)
    c = np.full(n, host.c, np.float32)
    b[[20, 10]] = np.float32(-0.26)  # 4% off: wrong
    c[999] = np.float32(2.0 * (1 + 0.5e-5))  # within REL_TOL: right
    c[0] = np.float32(2.1)
    arrays = tuple(buffer_of(backend, v) for v in (a, b, c))
    check = bandwidth.BandwidthTest()._check_arrays(ctx, arrays, host, n)
    assert check == Verification(
        method="every element of a, b, c against the host's float32 replay of all kernels",
        passed=False,
        checked=3 * n,
        mismatches=3,
        bound=bandwidth.REL_TOL,
        wrong_results=(
            WrongResult(
                "array b element 10",
                expected=-0.25,
                detail="2 of 1000 elements differ from the host value, the first at element 10",
            ),
            WrongResult(
                "array c element 0",
                expected=2.0,
                detail="1 of 1000 elements differ from the host value, the first at element 0",
            ),
        ),
    )


def test_first_not_close_bisects_to_the_first_bad_element(
    card: Callable[..., SimBackend],
) -> None:
    backend = card()
    ctx = context(backend, "bandwidth")
    n = 1000
    for bad in ([0], [1], [637, 900], [998], [999]):
        values = np.full(n, 0.25, np.float32)
        values[bad] = 0.3
        buffer = buffer_of(backend, values)
        reads: list[int] = []
        count = backend.count_f32_not_close

        def counted(*args: Any, reads: list[int] = reads, count: Any = count) -> int:
            reads.append(args[1])
            return int(count(*args))

        backend.count_f32_not_close = counted  # type: ignore[method-assign]
        assert bandwidth.first_not_close(ctx, buffer, n, 0.25) == bad[0]
        del backend.count_f32_not_close
        assert reads[0] == n and 1 + 9 <= len(reads) <= 1 + 10  # the whole, then ~log2(n)
        assert bandwidth.first_not_close(ctx, buffer, bad[0], 0.25) is None
        assert bandwidth.first_not_close(ctx, buffer, bad[0] + 1, 0.25) == bad[0]


@pytest.mark.parametrize(
    ("host_a", "total", "passed", "rel"),
    [
        (0.5, 500.5, True, 1e-3),  # the bound itself passes
        (0.5, 500.0, True, 0.0),
        (0.5, float(np.nextafter(np.float32(500.5), np.float32(1e9))), False, None),
        (0.5, 499.0, False, 2e-3),
        (-0.5, -600.0, False, 0.2),
        (-0.5, -500.25, True, 5e-4),
        (0.0, 0.0005, True, 0.0005),
        (0.0, -0.5, False, 0.5),
    ],
)
def test_bandwidth_read_check(
    card: Callable[..., SimBackend],
    host_a: float,
    total: float,
    passed: bool,
    rel: float | None,
) -> None:
    backend = card()
    ctx = context(backend, "bandwidth")
    host = bandwidth.HostArrays()
    host.a = np.float32(host_a)
    n = 1000
    sums = np.zeros(bandwidth.PARTIALS, np.float32)
    sums[:2] = np.float32(total) / 2  # two partial sums
    check = bandwidth.BandwidthTest()._check_read(ctx, buffer_of(backend, sums), host, n)
    expected = host_a * n
    got = float(np.float32(total) / 2) * 2
    want_rel = abs(got - expected) / abs(expected) if expected else abs(got)
    if rel is not None:
        assert want_rel == pytest.approx(rel, abs=1e-9)
    assert check == Verification(
        method="read kernel's sum of a against n × the host value",
        passed=passed,
        checked=1,
        mismatches=0 if passed else 1,
        max_relative_error=want_rel,
        bound=1e-3,
        wrong_results=()
        if passed
        else (WrongResult("read kernel sum", expected=expected, actual=got),),
    )


# --- fp32 -------------------------------------------------------------------------------------


def chains(threads: int, value: float = 0.5) -> np.ndarray:
    """Every thread's FMA_CHAINS results, all equal (a healthy card)."""
    start = np.linspace(-1.5, 1.5, FMA_CHAINS, dtype=np.float32) * np.float32(value)
    return np.tile(start, threads)


def test_majority_check_names_the_thread_that_disagrees() -> None:
    values = chains(512)
    values[300 * FMA_CHAINS + 5] = np.float32(1.875)  # thread 300, chain 5
    smids = np.array([4, 9], np.uint32)
    count, wrong = fp32.majority_check(values, 256, smids)
    assert count == 1
    assert wrong == (
        WrongResult(
            "SM 9 (block 1, thread 44)",
            expected=float(values[5]),
            actual=1.875,
        ),
    )
    assert fp32.majority_check(chains(512), 256, smids) == (0, ())


def test_majority_check_when_thread_zero_is_the_wrong_one() -> None:
    values = chains(8)
    values[3] = np.float32(0.125)  # thread 0, chain 3
    count, wrong = fp32.majority_check(values, 4, np.array([2, 3], np.uint32))
    assert count == 1
    assert wrong == (WrongResult("SM 2 (block 0, thread 0)", float(values[11]), 0.125),)


def test_majority_check_half_disagreeing_keeps_thread_zero() -> None:
    """Exactly half against thread 0: no majority against it, so the other half is wrong."""
    values = chains(4)
    high = values[:FMA_CHAINS].copy()
    low = high.copy()
    low[0] = np.float32(-1.75)  # smaller than thread 0's value
    values[2 * FMA_CHAINS : 3 * FMA_CHAINS] = low
    values[3 * FMA_CHAINS :] = low
    count, wrong = fp32.majority_check(values, 4, np.array([6], np.uint32))
    assert count == 2
    assert [w.location for w in wrong] == ["SM 6 (block 0, thread 2)", "SM 6 (block 0, thread 3)"]
    assert [(w.expected, w.actual) for w in wrong] == [(float(high[0]), -1.75)] * 2
    # three of four against thread 0: the majority wins
    values[FMA_CHAINS : 2 * FMA_CHAINS] = low
    count, wrong = fp32.majority_check(values, 4, np.array([6], np.uint32))
    assert count == 1 and wrong == (WrongResult("SM 6 (block 0, thread 0)", -1.75, float(high[0])),)


@pytest.mark.parametrize(
    ("edge", "all_bad"),
    [(2.0, False), (-2.0, False), (2.0000002, True), (-2.0000002, True), (np.inf, True)],
)
def test_majority_check_bounded_range(edge: float, all_bad: bool) -> None:
    """Every thread agreeing on a value the map cannot produce (|x| > 2, inf, nan) is wrong."""
    values = chains(6)
    values[2::FMA_CHAINS] = np.float32(edge)
    count, wrong = fp32.majority_check(values, 3, np.array([1, 5], np.uint32))
    if not all_bad:
        assert (count, wrong) == (0, ())
        return
    assert count == 6
    assert [w.location for w in wrong] == [
        f"SM {sm} (block {t // 3}, thread {t % 3})"
        for t, sm in zip(range(6), [1, 1, 1, 5, 5, 5], strict=True)
    ]
    assert all(w.expected == float(np.float32(values[0])) for w in wrong)  # chain 0 differs first
    assert all(w.actual == w.expected for w in wrong)


def test_majority_check_nan_everywhere_is_wrong() -> None:
    values = chains(2)
    values[1::FMA_CHAINS] = np.float32(np.nan)
    count, wrong = fp32.majority_check(values, 2, np.array([0], np.uint32))
    assert count == 2 and len(wrong) == 2


def test_majority_check_lists_at_most_max_listed() -> None:
    values = chains(256)
    bad = list(range(10, 10 + MAX_LISTED + 8))
    for t in bad:
        values[t * FMA_CHAINS + 7] = np.float32(0.0625)
    count, wrong = fp32.majority_check(values, 128, np.array([3, 8], np.uint32))
    assert count == len(bad)
    assert len(wrong) == MAX_LISTED
    assert wrong[0] == WrongResult("SM 3 (block 0, thread 10)", float(values[7]), 0.0625)
    assert wrong[-1].location == f"SM 3 (block 0, thread {10 + MAX_LISTED - 1})"


def test_fp32_healthy_card(card: Callable[..., SimBackend]) -> None:
    backend = card()
    result, ctx = run(backend, fp32.Fp32Test(), sm_count=24)
    info = ctx.info
    blocks, threads = full_grid(info)
    assert (blocks, threads) == (info.sm_count * (info.max_threads_per_sm // 256), 256)
    flops = 2.0 * blocks * threads * FMA_CHAINS
    assert info.peak_fp32_tflops is not None
    iterations = iterations_for(0.02, info.peak_fp32_tflops * 1e12, flops)
    assert result.status == "passed"
    assert result.parameters == {
        "blocks": blocks,
        "threads": threads,
        "chains": FMA_CHAINS,
        "iterations": iterations,
        "c": -1.9,
    }
    (rates,) = result.metrics
    assert rates.name == "fp32_tflops" and rates.unit == "TFLOP/s" and len(rates.values) == 3
    want = backend._model.performance.fp32_tflops
    assert all(0.8 * want < r < 1.2 * want for r in rates.values), (rates.values, want)
    assert result.verifications == (
        Verification(
            method=f"all {blocks * threads} threads × {FMA_CHAINS} chains agree bit for bit, "
            "in every one of 4 launches",
            passed=True,
            checked=blocks * threads * FMA_CHAINS * 4,
            mismatches=0,
        ),
    )


def test_fp32_without_a_clock_sizes_for_ten_tflops(card: Callable[..., SimBackend]) -> None:
    result, ctx = run(card(), fp32.Fp32Test(), max_sm_clock_mhz=None, sm_count=24)
    blocks, threads = full_grid(ctx.info)
    want = iterations_for(0.02, 10e12, 2.0 * blocks * threads * FMA_CHAINS)
    assert result.parameters["iterations"] == want


def test_fp32_names_the_sm_and_lane_in_every_launch(card: Callable[..., SimBackend]) -> None:
    backend = card('wrong_results = { rate = 1.0, test = "fp32", sm = 17, lane = 42 }')
    result, ctx = run(backend, fp32.Fp32Test(), sm_count=24)
    assert result.status == "failed"
    (check,) = result.verifications
    assert not check.passed and check.mismatches == 4
    blocks, threads = full_grid(ctx.info)
    assert check.checked == blocks * threads * FMA_CHAINS * 4
    assert [w.location for w in check.wrong_results] == ["SM 17 (block 17, thread 42)"] * 4
    (w, *_) = check.wrong_results
    assert w.actual == float(np.nextafter(np.float32(w.expected), np.float32(np.inf)))


# --- fp16 tensor cores and the library GEMM ---------------------------------------------------


def test_tolerances() -> None:
    assert fp16_tensor.gemm_tolerance(4096) == (1e-5, 4e-6 * 4096)
    assert gemm.library_tolerance("fp32", 8192) == (1e-5, 4e-6 * 8192)
    assert gemm.library_tolerance("fp16", 8192) == (2.0**-9, 4 * 2.0**-11 * 8192**0.5)
    assert gemm.library_tolerance("fp16", 4) == (2.0**-9, 2.0**-8)


@pytest.mark.parametrize(
    ("capability", "per_clock"),
    [((7, 5), 1024), ((8, 0), 2048), ((9, 0), 4096), ((10, 0), 4096)],
)
def test_fp16_tensor_healthy_card(
    card: Callable[..., SimBackend], capability: tuple[int, int], per_clock: int
) -> None:
    backend = card()
    result, ctx = run(
        backend, fp16_tensor.Fp16TensorTest(), compute_capability=capability, sm_count=24
    )
    info = ctx.info
    blocks, threads = full_grid(info)
    flops = float(blocks * threads // 32 * MMA_ACCUMULATORS * fp16_tensor.MMA_FLOPS)
    assert fp16_tensor.MMA_FLOPS == 4096
    assert info.max_sm_clock_mhz is not None
    rate = info.sm_count * per_clock * info.max_sm_clock_mhz * 1e6
    assert result.status == "passed", result.message
    assert result.parameters == {
        "mma_blocks": blocks,
        "mma_threads": threads,
        "mma_iterations": iterations_for(0.02, rate, flops),
        "mma_accumulators": MMA_ACCUMULATORS,
        "gemm_n": 1024,
    }
    assert [(m.name, m.unit, len(m.values)) for m in result.metrics] == [
        ("mma_tflops", "TFLOP/s", 3),
        ("tensor_gemm_tflops", "TFLOP/s", 3),
    ]
    perf = backend._model.performance
    for m, want in zip(result.metrics, (perf.mma_tflops, perf.tensor_gemm_tflops), strict=True):
        assert all(0.7 * want < r < 1.3 * want for r in m.values), (m, want)
    peak, product = result.verifications
    assert peak == Verification(
        method="every thread's accumulators return exactly to their start (+B then −B), "
        "in every one of 4 launches",
        passed=True,
        checked=blocks * threads * 4,
        mismatches=0,
    )
    assert product.passed and product.mismatches == 0 and product.wrong_results == ()
    assert product.method == (
        "tensor-core GEMM 1024×1024: each element within 0.0041 + 1e-05×|ref| of a float64 "
        f"product of the same inputs ({product.checked} elements compared)"
    )
    assert product.bound == 4e-6 * 1024
    assert product.max_relative_error is not None and 0 <= product.max_relative_error < 1e-5


def test_fp16_tensor_without_a_clock_assumes_1500_mhz(card: Callable[..., SimBackend]) -> None:
    result, ctx = run(card(), fp16_tensor.Fp16TensorTest(), max_sm_clock_mhz=None, sm_count=24)
    blocks, threads = full_grid(ctx.info)
    flops = float(blocks * threads // 32 * MMA_ACCUMULATORS * fp16_tensor.MMA_FLOPS)
    rate = ctx.info.sm_count * 4096 * 1500 * 1e6
    assert result.parameters["mma_iterations"] == iterations_for(0.02, rate, flops)


@pytest.mark.parametrize("capability", [(7, 0), (7, 4), (6, 1)])
def test_fp16_tensor_skips_before_turing(
    card: Callable[..., SimBackend], capability: tuple[int, int]
) -> None:
    result, _ = run(card(), fp16_tensor.Fp16TensorTest(), compute_capability=capability)
    assert result.status == "skipped"
    assert result.message == (
        "the fp16 tensor-core test needs compute capability 7.5 or newer (mma.sync m16n8k8/k16); "
        f"this card is {capability[0]}.{capability[1]}"
    )
    assert result.verifications == () and result.metrics == ()


def test_fp16_tensor_names_the_lane_whose_accumulator_did_not_return(
    card: Callable[..., SimBackend],
) -> None:
    backend = card('wrong_results = { rate = 1.0, test = "fp16_tensor", sm = 5, lane = 300 }')
    result, ctx = run(backend, fp16_tensor.Fp16TensorTest(), sm_count=24)
    assert result.status == "failed"
    peak, product = result.verifications
    assert product.passed
    blocks, threads = full_grid(ctx.info)
    assert not peak.passed and peak.mismatches == 4 and peak.checked == blocks * threads * 4
    assert peak.wrong_results == (WrongResult("SM 5 (block 5, thread 44)", 0.0, 2.0),) * 4


def test_fp16_tensor_names_the_wrong_product_element(card: Callable[..., SimBackend]) -> None:
    backend = card('wrong_results = { rate = 1.0, test = "fp16_tensor", element = [3, 17] }')
    result, _ = run(backend, fp16_tensor.Fp16TensorTest())
    assert result.status == "failed"
    peak, product = result.verifications
    assert peak.passed
    assert not product.passed and product.mismatches == 1
    (wrong,) = product.wrong_results
    assert wrong.location == "tensor-core GEMM element (3, 17)"
    assert wrong.expected is not None and wrong.actual is not None
    assert wrong.actual == pytest.approx(wrong.expected * 1.5 + 1.0, rel=1e-6)
    # the sim's relative error: |got - want| / max(|want|, abs_tol / rel_tol)
    rel = abs(wrong.actual - wrong.expected) / max(abs(wrong.expected), 4e-6 * 1024 / 1e-5)
    assert product.max_relative_error == pytest.approx(rel, rel=1e-9)


class Comparing:
    """A backend whose compare_close reports what it is told to (check_product alone)."""

    def __init__(self, answer: CloseCheck) -> None:
        self.answer = answer
        self.calls: list[tuple[Any, ...]] = []

    def compare_close(self, *args: Any) -> CloseCheck:
        self.calls.append(args)
        return self.answer


@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_check_product_maps_flat_indexes_to_row_and_column(dtype: str) -> None:
    n = 100
    answer = CloseCheck(
        checked=n * n,
        mismatches=7,
        max_abs_error=0.5,
        max_rel_error=0.25,
        first=((0, 1.5, 1.0), (2 * n + 5, -3.0, 2.0), (n * n - 1, 9.0, 8.0)),
    )
    backend = Comparing(answer)
    ctx: Any = TestContext(backend, None, SMALL, 0.0, 1.0)  # type: ignore[arg-type]
    check = fp16_tensor.check_product(ctx, "C", dtype, "REF", n, "product", (0.125, 0.5))
    assert backend.calls == [("C", dtype, "REF", n * n, 0.125, 0.5, MAX_LISTED)]
    assert check == Verification(
        method="product 100×100: each element within 0.5 + 0.12×|ref| of a float64 product of "
        "the same inputs (10000 elements compared)",
        passed=False,
        checked=n * n,
        mismatches=7,
        max_relative_error=0.25,
        bound=0.5,
        wrong_results=(
            WrongResult("product element (0, 0)", expected=1.0, actual=1.5),
            WrongResult("product element (2, 5)", expected=2.0, actual=-3.0),
            WrongResult("product element (99, 99)", expected=8.0, actual=9.0),
        ),
    )


@pytest.mark.parametrize("rel", [float("inf"), float("nan")])
def test_check_product_default_tolerance_and_no_finite_error(rel: float) -> None:
    backend = Comparing(CloseCheck(16, 0, 0.0, rel, ()))
    ctx: Any = TestContext(backend, None, SMALL, 0.0, 1.0)  # type: ignore[arg-type]
    check = fp16_tensor.check_product(ctx, "C", "fp64", "REF", 4, "tile")
    assert backend.calls == [("C", "fp32", "REF", 16, 1e-5, 1.6e-5, MAX_LISTED)]
    assert check.passed and check.max_relative_error is None and check.bound == 1.6e-5
    assert check.method.startswith("tile 4×4: each element within 1.6e-05 + 1e-05×|ref|")


class SizedContext(TestContext):
    """Records the size of every buffer a test allocates."""

    __test__ = False
    sizes: list[int]

    def alloc(self, nbytes: int) -> Any:
        self.sizes = [*getattr(self, "sizes", []), nbytes]
        return super().alloc(nbytes)


def test_gemm_healthy_card(card: Callable[..., SimBackend]) -> None:
    backend = card()
    free = backend.memory_free_bytes()
    ctx = SizedContext(backend, backend.device_info(), SMALL, backend.clock_s(), 30.0)
    outcome = Outcome()
    gemm.GemmTest().run(ctx, outcome)
    n = 1024
    assert ctx.sizes == [n * n * 2] * 3 + [n * n * 8] + [n * n * 4] * 3 + [n * n * 8]
    assert ctx.buffers == [] and backend.memory_free_bytes() == free  # each dtype's freed
    assert outcome.parameters == {"n": n, "warmup": 1, "repetitions": 2}
    assert [(m.name, m.unit, len(m.values)) for m in outcome.metrics] == [
        ("fp16_tflops", "TFLOP/s", 2),
        ("fp32_tflops", "TFLOP/s", 2),
    ]
    perf = backend._model.performance
    fp16_rates, fp32_rates = (m.values for m in outcome.metrics)
    assert all(0.7 * perf.gemm_fp16_tflops < r < 1.3 * perf.gemm_fp16_tflops for r in fp16_rates)
    assert all(0.7 * perf.gemm_fp32_tflops < r < 1.3 * perf.gemm_fp32_tflops for r in fp32_rates)
    half, single = outcome.verifications
    assert half.passed and single.passed
    assert half.method.startswith("cuBLAS FP16 GEMM 1024×1024: each element within 0.062 + 0.002×")
    assert single.method.startswith(
        "cuBLAS FP32 GEMM 1024×1024: each element within 0.0041 + 1e-05"
    )
    assert (half.bound, single.bound) == (4 * 2.0**-11 * n**0.5, 4e-6 * n)


@pytest.mark.parametrize(("row", "col"), [(5, 40), (0, 0), (7, 63)])
def test_gemm_names_the_wrong_element(card: Callable[..., SimBackend], row: int, col: int) -> None:
    backend = card(f'wrong_results = {{ rate = 1.0, test = "gemm", element = [{row}, {col}] }}')
    result, _ = run(backend, gemm.GemmTest())
    assert result.status == "failed"
    for check, dtype in zip(result.verifications, ("FP16", "FP32"), strict=True):
        assert not check.passed and check.mismatches == 1
        (wrong,) = check.wrong_results
        assert wrong.location == f"cuBLAS {dtype} GEMM element ({row}, {col})"


# --- memtest ----------------------------------------------------------------------------------


def test_reserve_bytes_is_512_mib_or_half_a_percent() -> None:
    assert memtest.reserve_bytes(80 * GIB) == 512 * MIB
    assert memtest.reserve_bytes(100 * GIB) == 512 * MIB  # both the same here
    assert memtest.reserve_bytes(100 * GIB + 200) == 512 * MIB + 1
    assert memtest.reserve_bytes(200 * GIB) == 1 * GIB


def memtest_words(backend: SimBackend) -> int:
    total = backend.device_info().memory_total_bytes
    free = backend.memory_free_bytes() - memtest.reserve_bytes(total)
    return free // memtest.ALIGN_BYTES * memtest.ALIGN_BYTES // 4


def test_memtest_healthy_card(card: Callable[..., SimBackend]) -> None:
    backend = card()
    n_words = memtest_words(backend)
    result, ctx = run(backend, memtest.MemtestTest())
    total = ctx.info.memory_total_bytes
    nbytes = 4 * n_words
    assert result.status == "passed" and result.message is None
    assert result.parameters == {
        "tested_bytes": nbytes,
        "total_bytes": total,
        "coverage": round(nbytes / total, 4),
        "patterns": 3,  # address, random (seed 0x5EED), walking ones shift 1
        "passes": 1,
        "bit_fade_s": 2.0,
        "patterns_done": 3,
    }
    (speeds,) = result.metrics
    assert speeds.name == "pass_gbs" and speeds.unit == "GB/s" and len(speeds.values) == 3
    want = backend._model.performance.memtest_gbs
    # each pattern: one write and two read-and-write passes (4 bytes moved per word... x4)
    assert all(0.5 * want < s < 1.5 * want for s in speeds.values), (speeds.values, want)
    assert result.verifications == (
        Verification(
            method=f"every word of {nbytes / 2**30:.2f} GiB ({nbytes / total:.1%} of memory) "
            "written and read back under 3 pattern(s) and their inverses",
            passed=True,
            checked=n_words * (2 * 3 + 2),
            mismatches=0,
        ),
    )


def test_memtest_names_every_bad_word_by_address(card: Callable[..., SimBackend]) -> None:
    """A word stuck high where the first pattern writes 0, a lower one stuck low where only the
    inverse writes 1: both named with their address and bits, listed by address."""
    backend = card(
        "stuck_bits = [{ address = 0x3000, bit = 5, value = 1 },"
        " { address = 0x1000, bit = 5, value = 0 }]"
    )
    result, _ = run(backend, memtest.MemtestTest())
    assert result.status == "failed"
    (check,) = result.verifications
    assert not check.passed
    assert check.memory_errors == (
        MemoryMismatch(0x1000, 0xFFFFEFFF, 0xFFFFEFDF, "address in address, inverted"),
        MemoryMismatch(0x3000, 0x3000, 0x3020, "address in address"),
    )
    # every check whose expected word has the other value at that bit counts once
    stuck_high = stuck_low = 0
    sequence = [MemPattern("address"), MemPattern("random", memtest.PASS_SEED)]
    sequence.append(MemPattern("walking_ones", 1))
    index = np.array([0x3000 // 4, 0x1000 // 4], np.uint64)
    for pattern in sequence:
        for p in (pattern, pattern.inverted()):
            high, low = (int(w) for w in expected_words(p, index, 0))
            stuck_high += not high >> 5 & 1
            stuck_low += low >> 5 & 1
    # bit fade: 0xFFFFFFFF then 0 (the stuck-low word, then the stuck-high one)
    assert check.mismatches == stuck_high + stuck_low + 2


def test_memtest_bit_fade_names_its_pattern(card: Callable[..., SimBackend]) -> None:
    backend = card("stuck_bits = [{ address = 0x40, bit = 0, value = 0 }]")
    ctx = context(backend, "memtest")
    buffer = ctx.alloc(64 * MIB)
    found: dict[int, MemoryMismatch] = {}
    start = backend.clock_s()
    bad = memtest.MemtestTest()._bit_fade(ctx, buffer, 16 * MIB, 2.0, found)
    assert bad == 1
    assert found == {
        0x40: MemoryMismatch(0x40, 0xFFFFFFFF, 0xFFFFFFFE, "constant 0xFFFFFFFF (bit fade)")
    }
    assert backend.clock_s() - start >= 2.0  # the card left idle for wait_s in all
    assert ctx.busy_s > 0


def test_memtest_collect_keeps_the_first_of_each_address_up_to_the_limit() -> None:
    found: dict[int, MemoryMismatch] = {}
    pattern = MemPattern("constant", 0x55555555)
    first = ((8, 0x55555555, 0x55555554), (4, 0x55555555, 0x55555557))
    memtest.MemtestTest._collect(MemCheck(0.1, 2, first), pattern, found, " (x)")
    memtest.MemtestTest._collect(MemCheck(0.1, 1, ((8, 1, 0),)), MemPattern("address"), found)
    assert found == {
        8: MemoryMismatch(8, 0x55555555, 0x55555554, "constant 0x55555555 (x)"),
        4: MemoryMismatch(4, 0x55555555, 0x55555557, "constant 0x55555555 (x)"),
    }
    many = tuple((4 * i, 0, 1) for i in range(100, 200))
    memtest.MemtestTest._collect(MemCheck(0.1, 100, many), pattern, found)
    assert len(found) == memtest.MAX_REPORTED == 64
    assert max(found) == 4 * (100 + 61)


def test_memtest_stops_at_its_budget(card: Callable[..., SimBackend]) -> None:
    chosen = with_params("memtest", budget_s=1e-6)
    backend = card()
    n_words = memtest_words(backend)
    result, _ = run(backend, memtest.MemtestTest(), chosen)
    assert result.status == "error"
    assert result.message == "time budget of 0 s spent after 1 of 3 patterns"
    assert result.parameters["patterns_done"] == 1
    (check,) = result.verifications
    assert check.passed and check.checked == 2 * n_words  # one pattern, no bit fade
    assert check.method.endswith("under 1 pattern(s) and their inverses")
    assert len(result.metrics[0].values) == 1


def test_memtest_says_when_memory_was_in_use(card: Callable[..., SimBackend]) -> None:
    backend = card("other_process = { used_memory_mib = 8192 }")
    n_words = memtest_words(backend)
    result, ctx = run(backend, memtest.MemtestTest())
    coverage = 4 * n_words / ctx.info.memory_total_bytes
    assert 0.85 < coverage < memtest.COVERAGE_TARGET
    assert result.status == "passed"
    assert result.message == (
        f"covered {coverage:.1%} of memory (target 95%): memory was in use by someone else"
    )


def test_memtest_coverage_at_the_target_says_nothing(
    card: Callable[..., SimBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = card()
    total = backend.device_info().memory_total_bytes
    reserve = memtest.reserve_bytes(total)
    target = int(total * memtest.COVERAGE_TARGET)
    monkeypatch.setattr(backend, "memory_free_bytes", lambda: target + reserve)
    chosen = with_params("memtest", bit_fade_s=0.0)
    outcome = Outcome()
    ctx = context(backend, "memtest", chosen)
    memtest.MemtestTest().run(ctx, outcome)
    nbytes = outcome.parameters["tested_bytes"]
    assert isinstance(nbytes, int) and nbytes == target // memtest.ALIGN_BYTES * memtest.ALIGN_BYTES
    assert nbytes / total < memtest.COVERAGE_TARGET and outcome.message is not None
    monkeypatch.setattr(memtest, "COVERAGE_TARGET", nbytes / total)
    outcome = Outcome()
    memtest.MemtestTest().run(context(backend, "memtest", chosen), outcome)
    assert outcome.message is None
    assert outcome.verifications[0].checked == nbytes // 4 * 2 * 3  # no bit fade


def test_memtest_allocation_shrinks_until_the_allocator_agrees(
    card: Callable[..., SimBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = card()
    align = memtest.ALIGN_BYTES
    free = 1000 * align + 12345
    monkeypatch.setattr(backend, "memory_free_bytes", lambda: free + 512 * MIB)
    asked: list[int] = []

    def alloc(nbytes: int) -> Any:
        asked.append(nbytes)
        if nbytes > 940 * align:
            raise DeviceOutOfMemory("no")
        return f"buffer of {nbytes}"

    monkeypatch.setattr(backend, "alloc", alloc)
    ctx = context(backend, "memtest")
    sizes = [1000 * align]
    while sizes[-1] > 940 * align:
        sizes.append(int(sizes[-1] * 0.98) // align * align)
    assert memtest.MemtestTest()._allocate(ctx, 80 * GIB) == (f"buffer of {sizes[-1]}", sizes[-1])
    assert asked == sizes and len(sizes) == 4
    assert ctx.buffers == [f"buffer of {sizes[-1]}"]


@pytest.mark.parametrize(("free_aligned", "limit"), [(1000, 0), (0, None), (-3, None)])
def test_memtest_allocation_gives_up(
    card: Callable[..., SimBackend],
    monkeypatch: pytest.MonkeyPatch,
    free_aligned: int,
    limit: int | None,
) -> None:
    backend = card()
    align = memtest.ALIGN_BYTES
    monkeypatch.setattr(backend, "memory_free_bytes", lambda: free_aligned * align + 512 * MIB)
    asked: list[int] = []

    def alloc(nbytes: int) -> Any:
        asked.append(nbytes)
        raise DeviceOutOfMemory("no")

    monkeypatch.setattr(backend, "alloc", alloc)
    with pytest.raises(DeviceOutOfMemory, match=r"^could not allocate memory for the memory test$"):
        memtest.MemtestTest()._allocate(context(backend, "memtest"), 80 * GIB)
    if limit is None:
        assert asked == []
    else:
        assert len(asked) == 8 and asked[0] == 1000 * align
        assert asked[1] == int(1000 * align * 0.98) // align * align


# --- soak -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "parts", "expected"),
    [
        (10, 3, [4, 3, 3]),
        (11, 3, [4, 4, 3]),
        (12, 3, [4, 4, 4]),
        (2, 5, [1, 1]),
        (7, 0, [7]),
        (7, -2, [7]),
        (5, 1, [5]),
        (1, 1, [1]),
    ],
)
def test_split_evenly(total: int, parts: int, expected: list[int]) -> None:
    assert soak.split_evenly(total, parts) == expected


def detail(digest: int) -> str:
    return f"output digest 0x{digest:016x} differs from the majority's"


def test_digest_disagreements() -> None:
    assert soak.digest_disagreements([]) == (0, [])
    assert soak.digest_disagreements([7, 7, 7]) == (0, [])
    assert soak.digest_disagreements([7, 0x1234, 7, 7]) == (
        1,
        [WrongResult("iteration 1", detail=detail(0x1234))],
    )
    # the first iteration wrong: the majority, not the first, is the reference
    assert soak.digest_disagreements([5, 7, 7]) == (
        1,
        [WrongResult("iteration 0", detail=detail(5))],
    )
    # no majority (a tie, or all different): every iteration is untrustworthy
    assert soak.digest_disagreements([1, 1, 2, 2]) == (
        4,
        [WrongResult(f"iteration {i}", detail=detail(d)) for i, d in enumerate([1, 1, 2, 2])],
    )
    assert soak.digest_disagreements([0, 0, 2]) == (
        1,
        [WrongResult("iteration 2", detail=detail(2))],
    )
    assert soak.digest_disagreements([9]) == (0, [])
    many = [3] * 50 + list(range(100, 140))
    count, wrong = soak.digest_disagreements(many)
    assert count == 40 and len(wrong) == MAX_LISTED
    assert wrong[0] == WrongResult("iteration 50", detail=detail(100))
    assert wrong[-1].location == f"iteration {50 + MAX_LISTED - 1}"


SOAK_METHOD = (
    "every iteration's GEMM output digest equals the majority's ({} iterations), and the triad "
    "array holds b + s·c after the last triad (the memory phase's)"
)


def test_soak_healthy_card(card: Callable[..., SimBackend]) -> None:
    backend = card()
    slowdown_c = backend.counters().temperature_slowdown_c
    assert slowdown_c is not None
    result, _ = run(backend, soak.SoakTest())
    assert result.status == "passed" and result.message is None
    p = result.parameters
    iterations = p["iterations"]
    assert isinstance(iterations, int) and iterations >= 3
    per_iteration = p["gemms_per_iteration"]
    assert isinstance(per_iteration, int) and per_iteration > 100
    assert {k: p[k] for k in ("duration_s", "gemm_n", "guard_c", "memory_phase_s")} == {
        "duration_s": 2.0,
        "gemm_n": 1024,
        "guard_c": slowdown_c - 3.0,
        "memory_phase_s": 2.5,
    }
    assert "stopped_early" not in p
    tflops = metric(result, "iteration_tflops")
    ends = metric(result, "iteration_end_s")
    assert len(tflops.values) == len(ends.values) == iterations
    assert ends.unit == "s" and not ends.higher_is_better and tflops.unit == "TFLOP/s"
    perf = backend._model.performance
    low, high = perf.gemm_fp16_sustained_tflops, perf.gemm_fp16_tflops
    assert all(0.8 * low < t < 1.2 * high for t in tflops.values), tflops.values
    assert list(ends.values) == sorted(ends.values)
    assert EARLIER_S < ends.values[0] < ends.values[-1] < EARLIER_S + 2.0 + 0.7
    soaked = p["soaked_s"]
    assert isinstance(soaked, float) and 2.0 <= soaked < 2.0 + 0.7
    start, end = p["memory_phase_start_s"], p["memory_phase_end_s"]
    assert isinstance(start, float) and isinstance(end, float)
    assert start == pytest.approx(ends.values[-1], abs=0.01)
    assert 2.5 <= end - start < 2.5 + 0.2
    rates = metric(result, "memory_phase_gbs")
    chunk_ends = metric(result, "memory_phase_chunk_end_s")
    assert len(rates.values) == len(chunk_ends.values) == 3  # 1 s, 1 s, the last 0.5 s
    assert chunk_ends.values[-1] == end and not chunk_ends.higher_is_better
    assert all(0.8 * perf.triad_gbs < r < 1.2 * perf.triad_gbs for r in rates.values), rates
    assert chunk_ends.values[0] - start == pytest.approx(1.0, abs=0.01)
    launches = p["memory_phase_launches"]
    one_s = STREAM_BYTES_PER_ELEMENT["triad"] * soak.TRIAD_BYTES / 4 / (perf.triad_gbs * 1e9)
    assert isinstance(launches, int) and abs(launches - 2.5 / one_s) < 0.05 * launches
    assert result.verifications == (
        Verification(SOAK_METHOD.format(iterations), passed=True, checked=iterations, mismatches=0),
    )


def test_soak_names_the_iteration_whose_digest_differs(card: Callable[..., SimBackend]) -> None:
    backend = card('wrong_results = { rate = 1.0, test = "soak", iteration = 2 }')
    result, _ = run(backend, soak.SoakTest())
    assert result.status == "failed"
    (check,) = result.verifications
    iterations = result.parameters["iterations"]
    assert not check.passed and check.mismatches == 1 and check.checked == iterations
    (wrong,) = check.wrong_results
    assert wrong.location == "iteration 2" and wrong.expected is None and wrong.actual is None
    assert wrong.detail is not None
    digest = int(wrong.detail.split()[2], 16)
    assert wrong.detail == detail(digest)


def test_soak_catches_a_wrong_triad_element(card: Callable[..., SimBackend]) -> None:
    backend = card('wrong_results = { rate = 1.0, test = "soak", index = 5 }')
    result, _ = run(backend, soak.SoakTest())
    assert result.status == "failed"
    (check,) = result.verifications
    assert not check.passed and check.mismatches == 1
    assert check.wrong_results == (
        WrongResult("triad array", detail="1 elements wrong after the soak"),
    )


class ScriptedGuard:
    """A thermal guard that reports the card too hot at its k-th look (1-based)."""

    looks = 0
    hot_at = 0

    def __init__(self, slowdown_c: float | None) -> None:
        self.limit_c = None if slowdown_c is None else slowdown_c - 3.0

    def check(self, samples: Any) -> str | None:
        ScriptedGuard.looks += 1
        return "too hot" if ScriptedGuard.looks == ScriptedGuard.hot_at else None


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> type[ScriptedGuard]:
    ScriptedGuard.looks, ScriptedGuard.hot_at = 0, 0
    monkeypatch.setattr(soak, "ThermalGuard", ScriptedGuard)
    return ScriptedGuard


def test_soak_guard_stops_mid_iteration(
    card: Callable[..., SimBackend], guard: type[ScriptedGuard]
) -> None:
    """5 chunks an iteration (0.5 s / 0.1 s): the 12th look is in the third iteration, which is
    cut short and has no digest; the memory phase is skipped."""
    guard.hot_at = 12
    result, _ = run(card(), soak.SoakTest())
    assert result.status == "passed"
    assert result.message == "soak stopped early: too hot"
    assert result.parameters["stopped_early"] == "too hot"
    assert result.parameters["iterations"] == 2 and guard.looks == 12
    assert len(metric(result, "iteration_tflops").values) == 2
    assert "memory_phase_s" not in result.parameters
    assert [m.name for m in result.metrics] == ["iteration_tflops", "iteration_end_s"]
    assert result.verifications[0].checked == 2


def test_soak_guard_stops_before_the_first_iteration_ends(
    card: Callable[..., SimBackend], guard: type[ScriptedGuard]
) -> None:
    guard.hot_at = 5
    result, _ = run(card(), soak.SoakTest())
    assert result.status == "error"
    assert result.message == "the soak stopped before its first iteration ended: too hot"
    assert result.parameters["stopped_early"] == "too hot"
    assert result.verifications == ()


def test_soak_guard_stops_the_memory_phase(
    card: Callable[..., SimBackend], guard: type[ScriptedGuard]
) -> None:
    """Looks 1-20: the four soak iterations; then 10 a memory-phase chunk: the 33rd look is in
    the second chunk, which is not kept."""
    guard.hot_at = 33
    result, _ = run(card(), soak.SoakTest())
    assert result.parameters["iterations"] == 4
    assert result.message == "soak stopped early: too hot"
    assert len(metric(result, "memory_phase_gbs").values) == 1
    assert len(metric(result, "memory_phase_chunk_end_s").values) == 1
    launches = result.parameters["memory_phase_launches"]
    start, end = result.parameters["memory_phase_start_s"], result.parameters["memory_phase_end_s"]
    assert isinstance(start, float) and isinstance(end, float) and 1.2 < end - start < 1.4
    assert isinstance(launches, int)
    rate = metric(result, "memory_phase_gbs").values[0]
    per_launch_s = STREAM_BYTES_PER_ELEMENT["triad"] * soak.TRIAD_BYTES / 4 / (rate * 1e9)
    assert abs(launches * per_launch_s - 1.3) < 0.1
    assert result.verifications[0].passed


def test_soak_without_a_slowdown_temperature(
    card: Callable[..., SimBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = card()
    counters = replace(backend.counters(), temperature_slowdown_c=None)
    monkeypatch.setattr(backend, "counters", lambda: counters)
    result, _ = run(backend, soak.SoakTest(), with_params("soak", memory_phase_s=0.0))
    assert result.status == "passed" and result.parameters["guard_c"] == "none"
    assert [m.name for m in result.metrics] == ["iteration_tflops", "iteration_end_s"]
    assert "memory_phase_launches" not in result.parameters


@pytest.mark.parametrize(("budget_s", "iterations", "chunks"), [(1.0, 2, 0), (3.0, 4, 1)])
def test_soak_stops_at_its_budget(
    card: Callable[..., SimBackend], budget_s: float, iterations: int, chunks: int
) -> None:
    result, _ = run(card(), soak.SoakTest(), with_params("soak", budget_s=budget_s))
    assert result.status == "passed"
    assert result.message == f"soak stopped early: time budget of {budget_s:.0f} s spent"
    assert result.parameters["iterations"] == iterations
    if chunks:
        assert len(metric(result, "memory_phase_gbs").values) == chunks
    else:
        assert "memory_phase_s" not in result.parameters


def test_soak_offers_its_progress_after_every_iteration_and_chunk(
    card: Callable[..., SimBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stress_base, "CHECKPOINT_WALL_S", 0.0)
    offered: list[tuple[tuple[str, int], ...]] = []
    outcomes: list[Any] = []
    metrics: list[tuple[Metric, ...]] = []

    def checkpoint(_ctx: Any, outcome: Any, partial: tuple[Metric, ...]) -> None:
        offered.append(tuple((m.name, len(m.values)) for m in partial))
        outcomes.append(outcome)
        metrics.append(partial)

    backend = card()
    ctx = context(backend, "soak")
    ctx.checkpoint = checkpoint
    result = execute(soak.SoakTest(), ctx).result
    soak_part = [(("iteration_tflops", k), ("iteration_end_s", k)) for k in range(1, 5)]
    memory_part = [(("memory_phase_gbs", k), ("memory_phase_chunk_end_s", k)) for k in range(1, 4)]
    assert offered == soak_part + memory_part
    assert all(isinstance(o, Outcome) for o in outcomes)
    # the last offer of each phase is what the result holds
    assert metrics[3] + metrics[-1] == result.metrics


@pytest.mark.parametrize("iteration_s", [1e-7, 1e-5])
def test_soak_iterations_shorter_than_a_guard_step(
    card: Callable[..., SimBackend], iteration_s: float
) -> None:
    """A few GEMMs an iteration, in one chunk; a memory phase shorter than a chunk still runs."""
    chosen = with_params("soak", duration_s=0.002, iteration_s=iteration_s, memory_phase_s=0.5)
    result, spy, _ = spied(card(), soak.SoakTest(), chosen)
    assert result.status == "passed"
    gemms = spy.called("gemm_library")
    repeats = max(1, int(iteration_s / gemms[0][2]))
    assert repeats < 5 and result.parameters["gemms_per_iteration"] == repeats
    iterations = result.parameters["iterations"]
    assert isinstance(iterations, int) and iterations >= 2
    assert [args[-1] for args, _, _ in gemms[1:]] == [repeats] * iterations
    assert len(metric(result, "memory_phase_gbs").values) == 1
    assert result.parameters["memory_phase_s"] == 0.5


def test_soak_memory_phase_timed_at_nothing_keeps_no_rate(
    card: Callable[..., SimBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Triads the card times at 0 s: no rate is made up from them (and nothing divides by 0)."""
    backend = card()
    real_stream = backend.stream

    def untimed(*args: Any) -> float:
        real_stream(*args)
        return 0.0

    monkeypatch.setattr(backend, "stream", untimed)
    result, _ = run(backend, soak.SoakTest())
    assert result.status == "passed"
    assert metric(result, "memory_phase_gbs").values == ()
    assert metric(result, "memory_phase_chunk_end_s").values == ()


# --- pcie -------------------------------------------------------------------------------------

PCIE_METHOD = {
    "h2d": "every byte of every host to device copy (also those run both ways at once) checked "
    "on the device against the seeded pattern",
    "d2h": "every byte of every device to host copy (also those run both ways at once) checked "
    "on the host against the seeded pattern the device wrote",
}


def pattern_byte(offset: int) -> int:
    word = int(expected_words(pcie.PATTERN, np.array([offset // 4], np.uint64), 0)[0])
    return word >> 8 * (offset % 4) & 0xFF


def test_pcie_healthy_card(card: Callable[..., SimBackend]) -> None:
    backend = card()
    free = backend.memory_free_bytes()
    result, _ = run(backend, pcie.PcieTest())
    assert result.status == "passed" and result.message is None
    assert result.parameters == {
        "copy_bytes": 256 * MIB,
        "warmup": 1,
        "repetitions": 2,
        "link_gen_under_load": 5,
        "link_width_under_load": 16,
        "replays_during_test": 0,
    }
    assert [(m.name, m.unit, len(m.values)) for m in result.metrics] == [
        ("h2d_gbs", "GB/s", 2),
        ("d2h_gbs", "GB/s", 2),
        ("both_gbs", "GB/s", 2),
    ]
    one_way = 64.0 * 0.87  # Gen5 x16 at the sim's copy share
    for m, want in zip(result.metrics, (one_way, one_way, 2 * 64.0 * 0.80), strict=True):
        assert all(0.9 * want < r < 1.1 * want for r in m.values), (m, want)
    copies = 2 * (1 + 2)  # each direction alone and both at once, warm-ups included
    assert result.verifications == tuple(
        Verification(PCIE_METHOD[d], passed=True, checked=copies * 64 * MIB, mismatches=0)
        for d in ("h2d", "d2h")
    )
    assert backend._host_buffers == {} and backend.memory_free_bytes() == free


@pytest.mark.parametrize(("direction", "offset"), [("h2d", 1001), ("d2h", 6), ("h2d", 0)])
def test_pcie_names_the_first_bad_byte(
    card: Callable[..., SimBackend], direction: str, offset: int
) -> None:
    backend = card(f'pcie_corrupt_byte = {offset}\npcie_corrupt_direction = "{direction}"')
    result, _ = run(backend, pcie.PcieTest())
    assert result.status == "failed"
    h2d, d2h = result.verifications
    bad, good = (h2d, d2h) if direction == "h2d" else (d2h, h2d)
    assert good.passed and good.mismatches == 0 and good.wrong_results == ()
    title = pcie.TITLES[direction]
    copies = 2 * (1 + 2)
    want = pattern_byte(offset)
    assert bad == Verification(
        PCIE_METHOD[direction],
        passed=False,
        checked=copies * 64 * MIB,
        mismatches=copies,
        wrong_results=(
            WrongResult(
                f"{title} copy, byte offset {offset}",
                expected=float(want),
                actual=float(want ^ 0x10),
                detail=f"{copies} wrong of {copies * 64 * MIB} 32-bit words copied {title}",
            ),
        ),
    )


def test_pcie_copy_size(card: Callable[..., SimBackend]) -> None:
    chosen = with_params("pcie", copy_bytes=1 * MIB, warmup=0, repetitions=3)
    result, _ = run(card(), pcie.PcieTest(), chosen)
    assert result.parameters["copy_bytes"] == pcie.COPY_MIN_BYTES == 256 * MIB
    assert result.verifications[0].checked == 2 * 3 * 64 * MIB
    chosen = with_params("pcie", copy_bytes=300 * MIB + 40, warmup=0, repetitions=3)
    result, _ = run(card(), pcie.PcieTest(), chosen)
    assert result.status == "passed"
    assert result.parameters["copy_bytes"] == 300 * MIB + 32


@pytest.mark.parametrize("short_bytes", [0, 2])
def test_pcie_needs_room_for_two_buffers(
    card: Callable[..., SimBackend], monkeypatch: pytest.MonkeyPatch, short_bytes: int
) -> None:
    backend = card()
    free = 512 * MIB - short_bytes
    monkeypatch.setattr(backend, "memory_free_bytes", lambda: free + pcie.MEMORY_RESERVE_BYTES)
    result, _ = run(backend, pcie.PcieTest())
    if not short_bytes:
        assert result.status == "passed"
        return
    assert result.status == "error"
    assert result.message == "not enough free memory for two 256 MiB copy buffers (0.50 GiB free)"
    monkeypatch.setattr(backend, "memory_free_bytes", lambda: 100)
    result, _ = run(backend, pcie.PcieTest())
    assert result.message == "not enough free memory for two 256 MiB copy buffers (0.00 GiB free)"


def test_pcie_link_and_replays_as_read(
    card: Callable[..., SimBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = card('unreadable = ["pcie_gen_current"]')
    readings = iter([10, 13])
    counters = backend.counters()
    monkeypatch.setattr(
        backend, "counters", lambda: replace(counters, pcie_replay_count=next(readings))
    )
    widths = iter([8, 16, 4] + [2] * 20)
    real_copy = backend.link_copy

    def link_copy(*args: Any, **kw: Any) -> LinkCopy:
        return replace(real_copy(*args, **kw), link_width=next(widths))

    monkeypatch.setattr(backend, "link_copy", link_copy)
    result, _ = run(backend, pcie.PcieTest())
    assert result.status == "passed"
    assert "link_gen_under_load" not in result.parameters
    assert result.parameters["link_width_under_load"] == 16  # the widest seen
    assert result.parameters["replays_during_test"] == 3


@pytest.mark.parametrize("readings", [(None, 5), (5, None), (None, None)])
def test_pcie_replays_unreadable(
    card: Callable[..., SimBackend],
    monkeypatch: pytest.MonkeyPatch,
    readings: tuple[int | None, int | None],
) -> None:
    backend = card('unreadable = ["pcie_width_current"]')
    counters = backend.counters()
    answers = iter(readings)
    monkeypatch.setattr(
        backend, "counters", lambda: replace(counters, pcie_replay_count=next(answers))
    )
    result, _ = run(backend, pcie.PcieTest())
    assert result.status == "passed"
    assert "replays_during_test" not in result.parameters
    assert "link_width_under_load" not in result.parameters
    assert result.parameters["link_gen_under_load"] == 5


@pytest.mark.parametrize("elapsed_s", [0.0, -1.0, float("nan")])
def test_pcie_refuses_a_copy_timed_at_nothing(
    card: Callable[..., SimBackend], monkeypatch: pytest.MonkeyPatch, elapsed_s: float
) -> None:
    backend = card()
    real_copy = backend.link_copy
    monkeypatch.setattr(
        backend,
        "link_copy",
        lambda *args, **kw: replace(real_copy(*args, **kw), elapsed_s=elapsed_s),
    )
    result, _ = run(backend, pcie.PcieTest())
    assert result.status == "error"
    assert result.message == f"a h2d copy was timed at {elapsed_s} s"
    assert backend._host_buffers == {}  # freed on the way out


def test_fill_pattern_is_the_seeded_pattern_word_for_word(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcie, "FILL_CHUNK_WORDS", 1000)
    host = np.full(4 * 2500 + 3, 0xAB, np.uint8)  # 2.5 chunks and 3 bytes that are no word
    pcie.fill_pattern(host)
    words = host[: 4 * 2500].view(np.uint32)
    want = expected_words(pcie.PATTERN, np.arange(2500, dtype=np.uint64), 0)
    assert np.array_equal(words, want)
    assert list(host[-3:]) == [0xAB] * 3


@pytest.mark.parametrize("first", [(1 << 32) - 40, (1 << 32) - 32, (1 << 32) + 5])
def test_fill_words_across_the_32_bit_index_boundary(
    monkeypatch: pytest.MonkeyPatch, first: int
) -> None:
    """Past 2^32 words (a copy above 16 GiB) the index's high half counts: the general pattern,
    not the fast 32-bit one. Tested at the boundary on a few words, no 16 GiB buffer needed:
    one chunk ends exactly at 2^32, the next crosses it (or lies past it)."""
    monkeypatch.setattr(pcie, "FILL_CHUNK_WORDS", 16)
    words = np.zeros(48, np.uint32)
    pcie.fill_words(words, first)
    want = expected_words(pcie.PATTERN, np.arange(first, first + 48, dtype=np.uint64), 0)
    assert np.array_equal(words, want)


def test_first_bad_byte_of_a_little_endian_word() -> None:
    assert pcie.first_bad_byte(100, 0x11223344, 0x11223345) == (100, 0x44, 0x45)
    assert pcie.first_bad_byte(100, 0x11223344, 0x11220344) == (101, 0x33, 0x03)
    assert pcie.first_bad_byte(100, 0x11223344, 0x10223344) == (103, 0x11, 0x10)
    assert pcie.first_bad_byte(8, 0x11223344, 0x00000000) == (8, 0x44, 0x00)
    assert pcie.first_bad_byte(0, 0xFF000000, 0x7F000000) == (3, 0xFF, 0x7F)
    assert pcie.first_bad_byte(0, 0x00FF0000, 0x00000000) == (2, 0xFF, 0x00)


def test_copy_check_keeps_the_lowest_first_offset() -> None:
    check = pcie.CopyCheck()
    check.add(10, 0, None)
    assert (check.checked_words, check.mismatches, check.first_offset) == (10, 0, None)
    check.add(10, 2, (50, 1, 2))
    check.add(10, 1, (70, 3, 4))
    assert (check.first_offset, check.expected, check.actual) == (50, 1, 2)
    check.add(10, 1, (50, 5, 6))
    assert (check.first_offset, check.expected, check.actual) == (50, 1, 2)
    check.add(10, 3, (0, 7, 8))
    assert check == pcie.CopyCheck(50, 7, 0, 7, 8)


def test_check_host_counts_every_bad_word() -> None:
    source = SimHostBuffer(0, 64, np.arange(64, dtype=np.uint8))
    landing = SimHostBuffer(64, 64, source.data.copy())
    check = pcie.CopyCheck()
    pcie.PcieTest._check_host(landing, source, 64, check)
    assert check == pcie.CopyCheck(16, 0)
    landing.data[[21, 22, 40, 63]] = 0xEE
    pcie.PcieTest._check_host(landing, source, 64, check)
    assert check == pcie.CopyCheck(32, 3, 21, 21, 0xEE)
    # a landing buffer shorter than the copy: only what both hold is compared
    short = SimHostBuffer(128, 32, source.data[:32].copy())
    short.data[31] = 0
    pcie.PcieTest._check_host(short, source, 64, check)
    assert check == pcie.CopyCheck(48, 4, 21, 21, 0xEE)
    fresh = pcie.CopyCheck()
    pcie.PcieTest._check_host(short, source, 64, fresh)
    assert fresh == pcie.CopyCheck(16, 1, 31, 31, 0)
    # a copy shorter than the buffers: the bytes beyond it are not the copy's
    tail = SimHostBuffer(256, 64, source.data.copy())
    tail.data[40] = 0
    fresh = pcie.CopyCheck()
    pcie.PcieTest._check_host(tail, source, 32, fresh)
    assert fresh == pcie.CopyCheck(8, 0) and type(fresh.checked_words) is int
    pcie.PcieTest._check_host(source, tail, 32, fresh)
    assert fresh == pcie.CopyCheck(16, 0)
    # a source shorter than the landing buffer: only what both hold
    fresh = pcie.CopyCheck()
    pcie.PcieTest._check_host(source, SimHostBuffer(512, 32, source.data[:32].copy()), 64, fresh)
    assert fresh == pcie.CopyCheck(16, 0)


def test_check_device_names_the_lowest_bad_byte(card: Callable[..., SimBackend]) -> None:
    backend = card(
        "stuck_bits = [{ address = 0x2000, bit = 9, value = 1 }, "
        "{ address = 0x2004, bit = 1, value = 1 }]"
    )
    ctx = context(backend, "pcie")
    ctx.alloc(2 * MIB)  # the buffer under test starts at 2 MiB, not at 0
    buffer = ctx.alloc(KIB64)
    assert buffer.address == 2 * MIB
    backend.memtest_write(buffer, KIB64 // 4, pcie.PATTERN)
    check = pcie.CopyCheck()
    pcie.PcieTest._check_device(ctx, buffer, KIB64, check)
    assert check.checked_words == KIB64 // 4
    assert ctx.busy_s > 0
    # the stuck bits sit at device addresses 0x2000 and 0x2004 (below the buffer): not in it
    assert check.mismatches == 0 and check.first_offset is None
    # the inverse was written in the same pass: checking the pattern again finds every word
    pcie.PcieTest._check_device(ctx, buffer, KIB64, check)
    assert check.mismatches == KIB64 // 4 and check.first_offset == 0
    assert (check.expected, check.actual) == (pattern_byte(0), 0xFF ^ pattern_byte(0))


def test_check_device_offsets_are_within_the_buffer(card: Callable[..., SimBackend]) -> None:
    """Two bad words in a buffer at 2 MiB: the lower one named, by its offset in the buffer."""
    index = np.array([0x100 // 4, 0x104 // 4], np.uint64)
    words = [int(w) for w in expected_words(pcie.PATTERN, index, 0)]
    assert words[0] >> 9 & 1 == 0 and words[1] & 1 == 0  # the stuck bits differ from the pattern
    backend = card(
        f"stuck_bits = [{{ address = {2 * MIB + 0x104}, bit = 0, value = 1 }}, "
        f"{{ address = {2 * MIB + 0x100}, bit = 9, value = 1 }}]"
    )
    ctx = context(backend, "pcie")
    ctx.alloc(2 * MIB)
    buffer = ctx.alloc(KIB64)
    backend.memtest_write(buffer, KIB64 // 4, pcie.PATTERN)
    check = pcie.CopyCheck()
    pcie.PcieTest._check_device(ctx, buffer, KIB64, check)
    assert check.mismatches == 2
    assert check.first_offset == 0x101  # byte 1 of the word at 0x100
    assert check.expected == words[0] >> 8 & 0xFF
    assert check.actual == (words[0] | 1 << 9) >> 8 & 0xFF


def test_pcie_verification_texts() -> None:
    passed = pcie.PcieTest._verification("d2h", pcie.CopyCheck(100, 0))
    assert passed == Verification(PCIE_METHOD["d2h"], passed=True, checked=100, mismatches=0)
    unknown = pcie.PcieTest._verification("h2d", pcie.CopyCheck(100, 2))
    assert unknown == Verification(
        PCIE_METHOD["h2d"],
        passed=False,
        checked=100,
        mismatches=2,
        wrong_results=(
            WrongResult(
                "host to device copy, byte offset unknown",
                detail="2 wrong of 100 32-bit words copied host to device",
            ),
        ),
    )
    known = pcie.PcieTest._verification("d2h", pcie.CopyCheck(100, 1, 0, 0, 255))
    assert known.wrong_results == (
        WrongResult(
            "device to host copy, byte offset 0",
            expected=0.0,
            actual=255.0,
            detail="1 wrong of 100 32-bit words copied device to host",
        ),
    )


# --- sm_checks: geometry and naming the SM --------------------------------------------------


def test_full_grid_fills_every_sm(card: Callable[..., SimBackend]) -> None:
    info = card().device_info()
    assert full_grid(info) == (info.sm_count * (info.max_threads_per_sm // 256), 256)
    assert full_grid(replace(info, sm_count=10, max_threads_per_sm=1024)) == (40, 256)
    assert full_grid(replace(info, sm_count=10, max_threads_per_sm=1023)) == (30, 256)
    assert full_grid(replace(info, sm_count=10, max_threads_per_sm=255)) == (10, 256)
    assert full_grid(replace(info, sm_count=10, max_threads_per_sm=512)) == (20, 256)


@pytest.mark.parametrize(
    ("target_s", "rate", "per_iteration", "expected"),
    [
        (1.0, 1000.0, 1.0, 960),  # 1000 rounded down to a multiple of 64
        (1.0, 1024.0, 1.0, 1024),
        (1.0, 1087.0, 1.0, 1024),
        (1.0, 1088.0, 1.0, 1088),
        (1.0, 100.0, 1.0, 64),  # at least 64
        (1.0, 10.0, 1.0, 64),
        (0.5, 1000.0, 2.0, 192),  # 250 -> 192
        (2.0, 999.9, 0.5, 3968),  # int(3999.6) = 3999 -> 3968
    ],
)
def test_iterations_for(target_s: float, rate: float, per_iteration: float, expected: int) -> None:
    assert iterations_for(target_s, rate, per_iteration) == expected


def test_locate_and_sms_named() -> None:
    smids = np.array([11, 3, 7], np.uint32)
    wrong = sm_checks.locate(
        np.array([5, 260, 600], np.intp),
        smids,
        256,
        np.array([1.0, 2.0, 3.0], np.float32),
        np.array([1.5, 2.5, -3.5], np.float32),
    )
    assert wrong == (
        WrongResult("SM 11 (block 0, thread 5)", 1.0, 1.5),
        WrongResult("SM 3 (block 1, thread 4)", 2.0, 2.5),
        WrongResult("SM 7 (block 2, thread 88)", 3.0, -3.5),
    )
    assert sm_checks.sms_named(wrong + wrong[:1]) == "SM 11, SM 3, SM 7"
    assert sm_checks.sms_named(()) == ""
    many = np.arange(MAX_LISTED + 5, dtype=np.intp)
    listed = sm_checks.locate(
        many, smids, 64, np.zeros(many.size, np.float32), np.ones(many.size, np.float32)
    )
    assert len(listed) == MAX_LISTED and listed[-1].location == "SM 11 (block 0, thread 31)"


def test_run_checked_checks_every_launch_warmups_included(card: Callable[..., SimBackend]) -> None:
    ctx = context(card(), "fp32")
    launches: list[int] = []
    seconds = iter([0.5, 0.25, 0.125, 0.0625, 0.03125])

    def launch() -> float:
        launches.append(len(launches))
        return next(seconds)

    def check() -> tuple[int, tuple[WrongResult, ...]]:
        k = len(launches)
        return 20 * k, tuple(WrongResult(f"launch {k} #{i}") for i in range(20))

    runs = sm_checks.run_checked(ctx, launch, check, 2, 3)
    assert runs.times == [0.125, 0.0625, 0.03125]
    assert runs.launches == 5
    assert runs.mismatches == 20 * (1 + 2 + 3 + 4 + 5)
    assert len(runs.wrong) == MAX_LISTED
    assert runs.wrong[:20] == tuple(WrongResult(f"launch 1 #{i}") for i in range(20))
    assert runs.wrong[20:] == tuple(WrongResult(f"launch 2 #{i}") for i in range(12))
    assert ctx.busy_s == pytest.approx(0.5 + 0.25 + 0.125 + 0.0625 + 0.03125)


# --- what each test asks of the card, and its numbers from the kernel times the card gave -----


def allocated(spy: Spy) -> list[tuple[int, Any]]:
    return [(args[0], buffer) for args, _, buffer in spy.called("alloc")]


def test_bandwidth_kernels_and_rates(card: Callable[..., SimBackend]) -> None:
    result, spy, ctx = spied(card(), bandwidth.BandwidthTest())
    n = GIB // 4
    assert isinstance(result.parameters["array_bytes"], int)
    (_, a), (_, b), (_, c), (_, partials) = buffers = allocated(spy)
    assert [size for size, _ in buffers] == [GIB] * 3 + [bandwidth.PARTIALS * 4]
    assert [args for args, _, _ in spy.called("fill_f32")] == [
        (a, n, 0.1),
        (b, n, 0.2),
        (c, n, 0.0),
        (partials, bandwidth.PARTIALS, 0.0),
    ]
    streams = spy.called("stream")
    assert len(streams) == 5 * (1 + 3)  # one warm-up round, three timed
    for k, (args, kw, _) in enumerate(streams):
        op = bandwidth.OPS[k % 5]
        assert kw == {}
        assert args == (
            (op, a, partials, partials, 0.4, n) if op == "read" else (op, a, b, c, 0.4, n)
        )
    for op in bandwidth.OPS:
        seconds = [r for args, _, r in streams[5:] if args[0] == op]
        rates = tuple(STREAM_BYTES_PER_ELEMENT[op] * n / t / 1e9 for t in seconds)
        assert metric(result, f"{op}_gbs") == Metric(f"{op}_gbs", "GB/s", rates)
    assert ctx.busy_s == pytest.approx(sum(spy.seconds("stream")), rel=1e-12)


def test_bandwidth_flaky_fault_is_reported_without_an_element(
    card: Callable[..., SimBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault that does not read the same twice: counted once, not found again by bisection."""
    backend = card()
    ctx = context(backend, "bandwidth")
    host = bandwidth.HostArrays()
    n = 100
    arrays = tuple(buffer_of(backend, np.full(n, v, np.float32)) for v in (host.a, host.b, host.c))
    answers = iter([3, 0, 0, 0])
    monkeypatch.setattr(backend, "count_f32_not_close", lambda *args: next(answers))
    check = bandwidth.BandwidthTest()._check_arrays(ctx, arrays, host, n)
    assert not check.passed and check.mismatches == 3
    assert check.wrong_results == (
        WrongResult(
            "array a",
            expected=float(host.a),
            detail="3 of 100 elements differ from the host value",
        ),
    )


def test_bandwidth_read_sum_is_taken_in_float64(card: Callable[..., SimBackend]) -> None:
    """2^24 and 1001 ones: a float32 sum cannot hold 16778217; the check's error is exact."""
    backend = card()
    ctx = context(backend, "bandwidth")
    host = bandwidth.HostArrays()
    host.a = np.float32(1.0)
    sums = np.zeros(bandwidth.PARTIALS, np.float32)
    sums[0] = 2.0**24
    sums[1:1002] = 1.0
    check = bandwidth.BandwidthTest()._check_read(ctx, buffer_of(backend, sums), host, 16778217)
    assert check.passed and check.max_relative_error == 0.0
    check = bandwidth.BandwidthTest()._check_read(ctx, buffer_of(backend, sums), host, 16778218)
    assert check.max_relative_error == 1 / 16778218


def test_host_arrays_read_and_triad_alone() -> None:
    host = bandwidth.HostArrays()
    host.apply("read")
    assert (host.a, host.b, host.c) == (np.float32(0.1), np.float32(0.2), np.float32(0.0))
    host.apply("triad")
    assert host.a == np.float32(np.float32(0.2) + np.float32(0.4) * np.float32(0.0))
    host.c = np.float32(1.0)
    host.apply("triad")
    assert host.a == np.float32(np.float32(0.2) + np.float32(0.4) * np.float32(1.0))


def test_memtest_patterns_kernels_and_rates(card: Callable[..., SimBackend]) -> None:
    backend = card()
    n_words = memtest_words(backend)
    chosen = with_params("memtest", passes=2, bit_fade_s=0.5)
    result, spy, ctx = spied(backend, memtest.MemtestTest(), chosen)
    assert result.status == "passed"
    ((nbytes, buffer),) = allocated(spy)
    assert nbytes == 4 * n_words
    assert type(memtest.reserve_bytes(200 * GIB + 200)) is int
    sequence = [
        MemPattern("address"),
        MemPattern("random", 0x5EED),
        MemPattern("address"),
        MemPattern("random", 0x5EED + 1),
        MemPattern("walking_ones", 1),
    ]
    fade = [MemPattern("constant", 0xFFFFFFFF), MemPattern("constant", 0)]
    writes = spy.called("memtest_write")
    assert [args for args, _, _ in writes] == [(buffer, n_words, p) for p in sequence + fade]
    checks = spy.called("memtest_check")
    want = []
    for p in sequence:
        want += [(buffer, n_words, p, p.inverted(), 64), (buffer, n_words, p.inverted(), None, 64)]
    want += [(buffer, n_words, p, None, 64) for p in fade]
    assert [args for args, _, _ in checks] == want
    write_s = spy.seconds("memtest_write")
    check_s = spy.seconds("memtest_check")
    speeds = tuple(
        4 * nbytes / (write_s[i] + (check_s[2 * i] + check_s[2 * i + 1])) / 1e9 for i in range(5)
    )
    assert metric(result, "pass_gbs") == Metric("pass_gbs", "GB/s", speeds)
    assert ctx.busy_s == pytest.approx(sum(write_s) + sum(check_s), rel=1e-12)
    assert spy.called("sleep_s") == [((0.25,), {}, None)] * 2
    assert result.verifications[0].checked == n_words * (2 * 5 + 2)
    assert result.parameters["bit_fade_s"] == 0.5
    assert all(type(args[1]) is int for args, _, _ in writes + checks)
    assert type(result.verifications[0].checked) is int


def test_fp32_kernels_and_rates(card: Callable[..., SimBackend]) -> None:
    result, spy, ctx = spied(card(), fp32.Fp32Test(), sm_count=24)
    blocks, threads = full_grid(ctx.info)
    iterations = result.parameters["iterations"]
    (size_out, out), (size_sm, smids) = allocated(spy)
    assert (size_out, size_sm) == (blocks * threads * FMA_CHAINS * 4, blocks * 4)
    loops = spy.called("fma_loop")
    assert [args for args, _, _ in loops] == [(out, smids, blocks, threads, iterations, -1.9)] * 4
    assert isinstance(iterations, int)
    flops = 2.0 * blocks * threads * FMA_CHAINS * iterations
    rates = tuple(flops / t / 1e12 for t in spy.seconds("fma_loop")[1:])
    assert result.metrics == (Metric("fp32_tflops", "TFLOP/s", rates),)


def test_fp32_two_threads_disagreeing_blames_thread_one() -> None:
    """No majority either way: thread 0's values stand (the documented rule)."""
    values = chains(2)
    values[FMA_CHAINS:] = np.float32(0.25)  # thread 1 differs in every chain
    count, wrong = fp32.majority_check(values, 2, np.array([4], np.uint32))
    assert count == 1 and [w.location for w in wrong] == ["SM 4 (block 0, thread 1)"]
    values = chains(2)
    values[FMA_CHAINS + 6] = np.float32(0.25)  # in one chain only
    count, wrong = fp32.majority_check(values, 2, np.array([4], np.uint32))
    assert count == 1 and [w.location for w in wrong] == ["SM 4 (block 0, thread 1)"]


def test_fp32_majority_recount_finds_every_wrong_thread() -> None:
    """Threads 0 and 1 wrong in different ways, 2 and 3 right: the recount names 0 and 1."""
    values = chains(4)
    values[0] = np.float32(0.125)
    values[FMA_CHAINS + 1] = np.float32(0.375)
    count, wrong = fp32.majority_check(values, 4, np.array([9], np.uint32))
    assert count == 2
    assert wrong == (
        WrongResult("SM 9 (block 0, thread 0)", float(values[2 * FMA_CHAINS]), 0.125),
        WrongResult("SM 9 (block 0, thread 1)", float(values[2 * FMA_CHAINS + 1]), 0.375),
    )


def test_fp32_half_against_thread_zero_with_positive_values() -> None:
    """Two of four against thread 0 (a smaller value in a positive chain): thread 0's side
    stands, whichever value sorts first."""
    values = chains(4)
    assert values[FMA_CHAINS - 1] > 0
    values[2 * FMA_CHAINS + FMA_CHAINS - 1] = np.float32(0.0625)
    values[3 * FMA_CHAINS + FMA_CHAINS - 1] = np.float32(0.0625)
    count, wrong = fp32.majority_check(values, 4, np.array([1], np.uint32))
    assert count == 2
    assert [w.location for w in wrong] == ["SM 1 (block 0, thread 2)", "SM 1 (block 0, thread 3)"]
    assert all(w.actual == 0.0625 for w in wrong)


def test_fp16_tensor_kernels_and_rates(card: Callable[..., SimBackend]) -> None:
    result, spy, ctx = spied(card(), fp16_tensor.Fp16TensorTest(), sm_count=24)
    blocks, threads = full_grid(ctx.info)
    n = 1024
    iterations = result.parameters["mma_iterations"]
    assert isinstance(iterations, int)
    buffers = allocated(spy)
    assert [size for size, _ in buffers] == [
        blocks * threads * 4,
        blocks * 4,
        n * n * 2,
        n * n * 2,
        n * n * 4,
        n * n * 8,
    ]
    out, smids, a, bt, c, ref = (buffer for _, buffer in buffers)
    assert [args for args, _, _ in spy.called("mma_loop")] == [
        (out, smids, blocks, threads, iterations)
    ] * 4
    assert [args for args, _, _ in spy.called("fill_uniform")] == [
        (a, "fp16", n * n, 11, -1.0, 1.0),
        (bt, "fp16", n * n, 12, -1.0, 1.0),
    ]
    assert [args for args, _, _ in spy.called("gemm_tensor")] == [(a, bt, c, n)] * (1 + 3)
    assert [(args, kw) for args, kw, _ in spy.called("gemm_reference_f64")] == [
        ((a, bt, ref, n, "fp16"), {"b_transposed": True})
    ]
    assert [args for args, _, _ in spy.called("compare_close")] == [
        (c, "fp32", ref, n * n, 1e-5, 4e-6 * n, MAX_LISTED)
    ]
    flops = float(blocks * threads // 32 * MMA_ACCUMULATORS * 4096) * iterations
    mma = tuple(flops / t / 1e12 for t in spy.seconds("mma_loop")[1:])
    tensor = tuple(2.0 * n**3 / t / 1e12 for t in spy.seconds("gemm_tensor")[1:])
    assert result.metrics == (
        Metric("mma_tflops", "TFLOP/s", mma),
        Metric("tensor_gemm_tflops", "TFLOP/s", tensor),
    )


def test_gemm_kernels_and_rates(card: Callable[..., SimBackend]) -> None:
    result, spy, _ = spied(card(), gemm.GemmTest())
    n = 1024
    buffers = [buffer for _, buffer in allocated(spy)]
    fills = [args for args, _, _ in spy.called("fill_uniform")]
    products = [args for args, _, _ in spy.called("gemm_library")]
    references = [(args, kw) for args, kw, _ in spy.called("gemm_reference_f64")]
    compares = [args for args, _, _ in spy.called("compare_close")]
    seconds = spy.seconds("gemm_library")
    rates = []
    for k, dtype in enumerate(("fp16", "fp32")):
        a, b, c, ref = buffers[4 * k : 4 * k + 4]
        assert fills[2 * k : 2 * k + 2] == [
            (a, dtype, n * n, 21, -1.0, 1.0),
            (b, dtype, n * n, 22, -1.0, 1.0),
        ]
        assert products[3 * k : 3 * k + 3] == [(a, b, c, n, dtype)] * 3
        assert references[k] == ((a, b, ref, n, dtype), {"b_transposed": False})
        rel, tol = gemm.library_tolerance(dtype, n)  # type: ignore[arg-type]
        assert compares[k] == (c, dtype, ref, n * n, rel, tol, MAX_LISTED)
        times = seconds[3 * k + 1 : 3 * k + 3]
        rates.append(
            Metric(f"{dtype}_tflops", "TFLOP/s", tuple(2.0 * n**3 / t / 1e12 for t in times))
        )
    assert len(fills) == 4 and len(products) == 6 and len(compares) == 2
    assert list(result.metrics) == rates


def test_soak_kernels_times_and_rates(card: Callable[..., SimBackend]) -> None:
    """Every number of the soak from what the card was asked and the times it gave."""
    backend = card()
    result, spy, ctx = spied(backend, soak.SoakTest())
    n, elements = 1024, soak.TRIAD_BYTES // 4
    buffers = allocated(spy)
    assert [size for size, _ in buffers] == [n * n * 2] * 3 + [soak.TRIAD_BYTES] * 3
    a, b, c, x, y, z = (buffer for _, buffer in buffers)
    assert [args for args, _, _ in spy.called("fill_uniform")] == [
        (a, "fp16", n * n, 31, -1.0, 1.0),
        (b, "fp16", n * n, 32, -1.0, 1.0),
    ]
    fills = [args for args, _, _ in spy.called("fill_f32")]
    assert fills == [(y, elements, 0.1), (z, elements, 0.2)]
    assert type(fills[0][1]) is int
    gemms = spy.called("gemm_library")
    one = gemms[0][2]
    assert gemms[0][0] == (a, b, c, n, "fp16")
    repeats = max(1, int(0.5 / one))
    assert result.parameters["gemms_per_iteration"] == repeats
    chunks = soak.split_evenly(repeats, 5)
    iterations = result.parameters["iterations"]
    assert isinstance(iterations, int)
    assert [args for args, _, _ in gemms[1:]] == [
        (a, b, c, n, "fp16", k) for k in chunks
    ] * iterations
    hashes = spy.called("word_hash")
    assert [args for args, _, _ in hashes] == [(c, n * n * 2)] * iterations
    flops = 2.0 * n**3 * repeats
    tflops = []
    for i in range(iterations):
        seconds = 0.0
        for t in [r for _, _, r in gemms[1 + 5 * i : 1 + 5 * (i + 1)]]:
            seconds += t
        tflops.append(flops / seconds / 1e12)
    ends = [round(t - ctx.run_start_s, 4) for t in spy.clocks_after("word_hash")]
    start = spy.clocks_after("counters")[0]  # the soak's clock starts after the guard is set
    loop_end = spy.clocks_after("word_hash")[-1]
    assert result.parameters["soaked_s"] == round(loop_end - start, 3)
    # the memory phase: one triad measured, then chunks of 10 guard steps of per_step triads
    streams = spy.called("stream")
    assert [args for args, _, _ in streams[:iterations]] == [
        ("triad", x, y, z, 0.4, elements)
    ] * iterations
    phase = streams[iterations:]
    assert phase[0][0] == ("triad", x, y, z, 0.4, elements)
    per_step = max(1, round(0.1 / phase[0][2]))
    assert all(args == ("triad", x, y, z, 0.4, elements, per_step) for args, _, _ in phase[1:])
    assert result.parameters["memory_phase_launches"] == 1 + per_step * (len(phase) - 1)
    nbytes = STREAM_BYTES_PER_ELEMENT["triad"] * elements
    steps = [r for _, _, r in phase[1:]]
    stream_clocks = spy.clocks_after("stream")[iterations:]
    rates, chunk_ends = [], []
    for k in range(0, len(steps), 10):
        seconds = 0.0
        for t in steps[k : k + 10]:
            seconds += t
        rates.append(round(nbytes * per_step * len(steps[k : k + 10]) / seconds / 1e9, 3))
        chunk_ends.append(round(stream_clocks[min(k + 10, len(steps))] - ctx.run_start_s, 4))
    assert result.metrics == (
        Metric("iteration_tflops", "TFLOP/s", tuple(tflops)),
        Metric("iteration_end_s", "s", tuple(ends), False),
        Metric("memory_phase_gbs", "GB/s", tuple(rates)),
        Metric("memory_phase_chunk_end_s", "s", tuple(chunk_ends), False),
    )
    assert result.parameters["memory_phase_start_s"] == round(
        spy.clocks_after("word_hash")[-1] - ctx.run_start_s, 4
    )
    assert result.parameters["memory_phase_end_s"] == chunk_ends[-1]
    (count,) = spy.called("count_f32_not_close")
    assert count[0] == (x, elements, 0.1 + 0.4 * 0.2, 1e-5)


def test_pcie_copies_and_rates(card: Callable[..., SimBackend]) -> None:
    result, spy, _ = spied(card(), pcie.PcieTest())
    nbytes = 256 * MIB
    (size_on, on_device), (size_from, from_device) = allocated(spy)
    assert (size_on, size_from) == (nbytes, nbytes)
    source, landing = (r for _, _, r in spy.called("host_alloc"))
    writes = [args for args, _, _ in spy.called("memtest_write")]
    assert writes == [(from_device, nbytes // 4, pcie.PATTERN)] and type(writes[0][1]) is int
    copies = spy.called("link_copy")
    kinds = [tuple(sorted(kw)) for _, kw, _ in copies]
    assert kinds == [("h2d",)] * 3 + [("d2h",)] * 3 + [("d2h", "h2d")] * 3
    for args, kw, _ in copies:
        assert args == (nbytes,)
        assert kw.get("h2d", (on_device, source)) == (on_device, source)
        assert kw.get("d2h", (landing, from_device)) == (landing, from_device)
    seconds = [r.elapsed_s for _, _, r in copies]
    assert result.metrics == (
        Metric("h2d_gbs", "GB/s", tuple(nbytes / t / 1e9 for t in seconds[1:3])),
        Metric("d2h_gbs", "GB/s", tuple(nbytes / t / 1e9 for t in seconds[4:6])),
        Metric("both_gbs", "GB/s", tuple(2 * nbytes / t / 1e9 for t in seconds[7:9])),
    )
    checks = [args for args, _, _ in spy.called("memtest_check")]
    assert checks == [(on_device, nbytes // 4, pcie.PATTERN, pcie.PATTERN.inverted(), 16)] * 6
    assert [args for args, _, _ in spy.called("host_free")] == [(source,), (landing,)]


def test_pcie_host_memory_freed_when_the_card_refuses(
    card: Callable[..., SimBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = card()
    freed: list[Any] = []

    def gone(buffer: Any) -> None:
        freed.append(buffer)
        raise pcie.DeviceError("card gone")

    monkeypatch.setattr(backend, "host_free", gone)
    result, _ = run(backend, pcie.PcieTest())
    assert result.status == "passed" and len(freed) == 2


@pytest.mark.parametrize("lost", ["d2h", "both"])
def test_pcie_a_copy_that_never_lands_is_caught(
    card: Callable[..., SimBackend], monkeypatch: pytest.MonkeyPatch, lost: str
) -> None:
    """After the warm-up, the device-to-host copies (alone, or those run both ways at once)
    bring nothing: the landing buffer, zeroed before each copy, holds zeros, not the bytes of
    the copy before."""
    backend = card()
    real_copy = backend.link_copy
    landed: list[int] = []

    def lossy(nbytes: int, h2d: Any = None, d2h: Any = None) -> LinkCopy:
        kind = "both" if h2d is not None and d2h is not None else "d2h" if d2h else "h2d"
        if kind == lost and landed:  # the data never arrives; the time is spent
            return real_copy(nbytes, h2d=h2d or (backend.alloc(nbytes), d2h[0]))
        if kind == lost:
            landed.append(1)
        return real_copy(nbytes, h2d=h2d, d2h=d2h)

    monkeypatch.setattr(backend, "link_copy", lossy)
    result, _ = run(backend, pcie.PcieTest())
    assert result.status == "failed"
    h2d, d2h = result.verifications
    assert h2d.passed and not d2h.passed
    assert d2h.mismatches > 0
    (wrong,) = d2h.wrong_results
    assert wrong.location == "device to host copy, byte offset 0"
    assert wrong.expected == float(pattern_byte(0)) and wrong.actual == 0.0


def test_soak_memory_phase_on_slow_memory_steps_one_triad_at_a_time(
    card: Callable[..., SimBackend],
) -> None:
    """Triads longer than a guard step (memory at 1% of its rate): one triad per guard look."""
    chosen = with_params("soak", duration_s=0.3, memory_phase_s=0.5)
    result, spy, _ = spied(card("bandwidth_scale = 0.01"), soak.SoakTest(), chosen)
    assert result.status == "passed"
    iterations = result.parameters["iterations"]
    assert isinstance(iterations, int)
    phase = spy.called("stream")[iterations:]
    assert phase[0][2] > 0.1 and len(phase) > 2
    assert [args[-1] for args, _, _ in phase[1:]] == [1] * (len(phase) - 1)
    assert result.parameters["memory_phase_launches"] == len(phase)
