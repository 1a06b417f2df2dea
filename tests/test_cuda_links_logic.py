"""Issue 14: the CUDA backend's PCIe copies on the CPU, against tests/fake_cupy.py (no GPU).

Pinned host memory, asynchronous copies on streams of their own (two for both ways at once), the
link read from NVML while the copies are in flight, size checks before any copy, CUDA errors
mapped; then the pcie stress test and bench/bench_pcie.py end to end on the fake, with the memtest
kernels given their outcome (patterns.py's reference: the fake computes nothing by itself).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fake_cupy
import fake_pynvml
import numpy as np
import pytest
from fake_cupy import FakeGpu, Launch

from gpuhealth.errors import DeviceError, DeviceLost
from gpuhealth.measure.backends import nvml
from gpuhealth.measure.backends.cuda import CudaBackend
from gpuhealth.measure.stresstests import pcie
from gpuhealth.measure.stresstests.base import TestContext, execute
from gpuhealth.patterns import PATTERN_CODES, MemPattern, expected_words
from gpuhealth.presets import PRESETS, PcieParams

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_pcie  # bench/ is not a package

MiB = 1 << 20
KINDS = {code: kind for kind, code in PATTERN_CODES.items()}


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> FakeGpu:
    return fake_cupy.install_without_nvml(FakeGpu(), monkeypatch)


@pytest.fixture
def backend(gpu: FakeGpu) -> Iterator[CudaBackend]:
    card = CudaBackend(0)
    yield card
    card.close()


# --- pinned memory and copies ---------------------------------------------------------------------


def test_pinned_memory_is_a_numpy_view_and_is_freed(gpu: FakeGpu, backend: CudaBackend) -> None:
    host = backend.host_alloc(4096)
    assert host.nbytes == 4096 and host.data.size == 4096 and host.data.dtype == np.uint8
    host.data[:4] = (1, 2, 3, 4)
    pinned = next(iter(gpu.host_allocations.values()))
    assert pinned[:4].tolist() == [1, 2, 3, 4]  # the same memory
    backend.host_free(host)
    assert gpu.host_allocations == {}
    with pytest.raises(ValueError, match="not allocated here or was freed"):
        backend.host_free(host)


def test_copies_move_the_bytes_on_streams_of_their_own(gpu: FakeGpu, backend: CudaBackend) -> None:
    nbytes = MiB
    source, landing = backend.host_alloc(nbytes), backend.host_alloc(nbytes)
    device = backend.alloc(nbytes)
    source.data[:] = np.arange(nbytes, dtype=np.uint64).astype(np.uint8)
    up = backend.link_copy(nbytes, h2d=(device, source))
    down = backend.link_copy(nbytes, d2h=(landing, device))
    assert np.array_equal(landing.data, source.data)
    assert up.elapsed_s == pytest.approx(nbytes / (gpu.copy_gbs * 1e9))
    assert (down.link_gen, down.link_width) == (None, None)  # no NVML here: not known
    both = backend.link_copy(nbytes, h2d=(device, source), d2h=(landing, device))
    assert both.elapsed_s > up.elapsed_s
    streams = [copy[4] for copy in gpu.async_copies]
    assert all(streams)  # never the default stream
    assert streams[-2] != streams[-1]  # both ways at once: one stream each


def test_copy_sizes_are_checked_before_any_copy(gpu: FakeGpu, backend: CudaBackend) -> None:
    host, device = backend.host_alloc(MiB), backend.alloc(2 * MiB)
    with pytest.raises(ValueError, match="link_copy h2d"):
        backend.link_copy(2 * MiB, h2d=(device, host))
    with pytest.raises(ValueError, match="needs h2d, d2h or both"):
        backend.link_copy(MiB)
    assert gpu.async_copies == []


def test_copy_errors_are_mapped(gpu: FakeGpu, backend: CudaBackend) -> None:
    host, device = backend.host_alloc(MiB), backend.alloc(MiB)
    gpu.fail("memcpyAsync", 1)
    with pytest.raises(DeviceError, match="PCIe copy failed"):
        backend.link_copy(MiB, h2d=(device, host))
    gpu.fail("memcpyAsync", 700)  # illegal address: sticky, the card is gone for this process
    with pytest.raises(DeviceLost):
        backend.link_copy(MiB, h2d=(device, host))
    with pytest.raises(DeviceLost):
        backend.link_copy(MiB, d2h=(host, device))


def test_the_link_is_read_from_nvml_during_the_copy(
    gpu: FakeGpu, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu.pci_bus_id = "00000000:00:06.0"  # where the recorded H100 sits
    fake = fake_pynvml.pcie_slot_gen3()
    monkeypatch.setattr(nvml, "_load_pynvml", fake.load)
    backend = CudaBackend(0)
    try:
        host, device = backend.host_alloc(MiB), backend.alloc(MiB)
        copy = backend.link_copy(MiB, h2d=(device, host))
        assert (copy.link_gen, copy.link_width) == (3, 16)
        calls = fake.cards[0].calls
        assert "nvmlDeviceGetCurrPcieLinkGeneration" in calls
    finally:
        backend.close()


# --- the pcie stress test and the bench on the fake -----------------------------------------------


def _pattern(args: tuple[Any, ...], at: int) -> MemPattern:
    kind, param, invert = (int(v) for v in args[at : at + 3])
    return MemPattern(KINDS[kind], param, bool(invert))  # type: ignore[arg-type]


def _memtest_write(launch: Launch, gpu: FakeGpu) -> None:
    address, words = int(launch.args[0]), int(launch.args[1])
    index = np.arange(words, dtype=np.uint64)
    gpu.write(address, expected_words(_pattern(launch.args, 2), index, int(launch.args[5])))


def _memtest_check(launch: Launch, gpu: FakeGpu) -> None:
    """kernels/memtest.cu's memtest_check, by patterns.py's reference."""
    address, words, base = int(launch.args[0]), int(launch.args[1]), int(launch.args[5])
    index = np.arange(words, dtype=np.uint64)
    want = expected_words(_pattern(launch.args, 2), index, base)
    got = gpu.read(address, np.uint32, words)
    bad = np.flatnonzero(got != want)
    counters, report, most = launch.array(9), launch.array(10), int(launch.args[11])
    counters.host[:] = (bad.size, min(bad.size, most))
    for slot, i in enumerate(bad[:most]):
        report.host[3 * slot : 3 * slot + 3] = (address + 4 * int(i), want[i], got[i])
    counters.unknown = report.unknown = False
    if int(launch.args[6]) != -1:
        gpu.write(address, expected_words(_pattern(launch.args, 6), index, base))


def _small_copies(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(pcie, "COPY_MIN_BYTES", MiB)
    return dataclasses.replace(PRESETS["quick"], pcie=PcieParams(MiB, 1, 3, 20))


def test_pcie_test_runs_on_the_cuda_backend(
    gpu: FakeGpu, backend: CudaBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu.on_launch("memtest_write", _memtest_write)
    gpu.on_launch("memtest_check", _memtest_check)
    preset = _small_copies(monkeypatch)
    ctx = TestContext(backend, backend.device_info(), preset, 0.0, 20.0)
    result = execute(pcie.PcieTest(), ctx).result
    assert result.status == "passed", result.message
    words = MiB // 4
    assert [v.checked for v in result.verifications] == [8 * words, 8 * words]
    h2d = result.metric("h2d_gbs")
    assert h2d is not None and h2d.values == pytest.approx([gpu.copy_gbs] * 3)
    assert gpu.host_allocations == {}  # the pinned buffers are given back


def test_pcie_test_names_a_byte_the_device_got_wrong(
    gpu: FakeGpu, backend: CudaBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def corrupting_check(launch: Launch, gpu: FakeGpu) -> None:
        data = gpu.find(int(launch.args[0]), 1)[0].data
        data[5000] ^= 0x01  # bytes the copy got wrong; the check reports them in no set order
        data[1234] ^= 0x40
        _memtest_check(launch, gpu)

    gpu.on_launch("memtest_write", _memtest_write)
    gpu.on_launch("memtest_check", corrupting_check)
    preset = _small_copies(monkeypatch)
    ctx = TestContext(backend, backend.device_info(), preset, 0.0, 20.0)
    result = execute(pcie.PcieTest(), ctx).result
    assert result.status == "failed"
    h2d = result.verifications[0]
    assert h2d.wrong_results[0].location == "host to device copy, byte offset 1234"


def test_bench_compares_ours_with_raw_cupy(gpu: FakeGpu, backend: CudaBackend) -> None:
    rows: list[tuple[Any, ...]] = []
    cupy = sys.modules["cupy"]

    def row(*cells: Any) -> None:
        rows.append(cells)

    numbers = bench_pcie.bench_pcie(cupy, backend, 2, row, MiB)
    # the fake's copies all take nbytes / copy_gbs: ours and the peer's agree
    assert numbers.ratios() == pytest.approx({"h2d": 1.0, "d2h": 1.0, "both": 1.0})
    floor = [r for r in rows if r[0] == "pcie host->device vs floor"]
    assert floor and floor[0][4] == bench_pcie.FLOOR_H2D_GBS
    assert gpu.host_allocations == {}
