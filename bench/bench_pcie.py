"""PCIe copies (issue 14): gpuhealth's link_copy against raw CuPy asynchronous copies of the same
size, in the same run, on the same card. Called by bench/bench_kernels.py; takes the cupy module
as an argument so that tests/test_cuda_links_logic.py runs it on the fake cupy (no GPU).

The peer is CuPy's runtime alone: cudaHostAlloc'ed host memory, cudaMalloc'ed device memory,
cudaMemcpyAsync on non-blocking streams, CUDA events, nothing of gpuhealth in the path. Both ways
at once use two streams. Ours must reach >= 0.95 of the peer; an H100/H200 at PCIe Gen5 x16 must
reach >= 48 GB/s host to device (a peer tool's floor). Every copy of ours that is timed is
checked afterwards (one copy each way, every byte): a fast wrong copy is not a result.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpuhealth.measure.backends.base import Backend, DeviceBuffer, HostBuffer
from gpuhealth.measure.stresstests.pcie import fill_pattern
from gpuhealth.pcielink import describe, link_gbs

COPY_BYTES = 256 << 20
FLOOR_H2D_GBS = 48.0  # H100/H200 PCIe Gen5 x16: what a peer tool expects at least
RATIO_TARGET = 0.95

Row = Callable[[str, float, str, str, float | None], None]


@dataclass(frozen=True)
class PcieNumbers:
    ours_gbs: dict[str, float]
    peer_gbs: dict[str, float]
    link_gen: int | None
    link_width: int | None

    def ratios(self) -> dict[str, float]:
        return {d: self.ours_gbs[d] / self.peer_gbs[d] for d in self.ours_gbs if self.peer_gbs[d]}


def _median(values: list[float]) -> float:
    return statistics.median(values)


def ours(
    backend: Backend, nbytes: int, reps: int
) -> tuple[dict[str, float], int | None, int | None]:
    """GB/s of backend.link_copy each way and both at once (median of reps), and the link."""
    source, landing = backend.host_alloc(nbytes), backend.host_alloc(nbytes)
    device_in, device_out = backend.alloc(nbytes), backend.alloc(nbytes)
    try:
        fill_pattern(source.data)
        backend.link_copy(nbytes, h2d=(device_out, source))  # device_out: the pattern, for d2h
        legs: dict[str, dict[str, tuple[Any, Any]]] = {
            "h2d": {"h2d": (device_in, source)},
            "d2h": {"d2h": (landing, device_out)},
            "both": {"h2d": (device_in, source), "d2h": (landing, device_out)},
        }
        rates: dict[str, float] = {}
        gens: list[int] = []
        widths: list[int] = []
        for direction, kwargs in legs.items():
            moved = nbytes * len(kwargs)
            times = []
            for _ in range(reps + 1):  # the first is a warm-up
                copy = backend.link_copy(nbytes, **kwargs)
                times.append(copy.elapsed_s)
                gens += [copy.link_gen] if copy.link_gen is not None else []
                widths += [copy.link_width] if copy.link_width is not None else []
            rates[direction] = moved / _median(times[1:]) / 1e9
        _check(backend, source, landing, device_in, nbytes)
    finally:
        for host in (source, landing):
            backend.host_free(host)
        for buffer in (device_in, device_out):
            backend.free(buffer)
    return rates, max(gens, default=None), max(widths, default=None)


def _check(
    backend: Backend, source: HostBuffer, landing: HostBuffer, device: DeviceBuffer, nbytes: int
) -> None:
    """The last copies' bytes: device (read back with a plain copy) and landing buffer."""
    back = backend.download(device, np.uint8, nbytes)
    if not np.array_equal(back, source.data[:nbytes]):
        raise AssertionError("link_copy host to device produced wrong data")
    if not np.array_equal(landing.data[:nbytes], source.data[:nbytes]):
        raise AssertionError("link_copy device to host produced wrong data")


def peer(cp: Any, nbytes: int, reps: int) -> dict[str, float]:
    """GB/s of raw CuPy cudaMemcpyAsync, each way and both at once on two streams."""
    runtime = cp.cuda.runtime
    host_in = runtime.hostAlloc(nbytes, 0)
    host_out = runtime.hostAlloc(nbytes, 0)
    device_in, device_out = runtime.malloc(nbytes), runtime.malloc(nbytes)
    streams = (cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True))
    h2d = (device_in, host_in, runtime.memcpyHostToDevice)
    d2h = (host_out, device_out, runtime.memcpyDeviceToHost)
    try:
        runtime.memcpy(device_out, host_in, nbytes, runtime.memcpyHostToDevice)
        rates: dict[str, float] = {}
        for direction, copies in (("h2d", [h2d]), ("d2h", [d2h]), ("both", [h2d, d2h])):
            times = [_peer_once(cp, streams, copies, nbytes) for _ in range(reps + 1)]
            rates[direction] = nbytes * len(copies) / _median(times[1:]) / 1e9
    finally:
        for pointer in (host_in, host_out):
            runtime.freeHost(pointer)
        for pointer in (device_in, device_out):
            runtime.free(pointer)
    return rates


def _peer_once(
    cp: Any, streams: tuple[Any, Any], copies: list[tuple[int, int, int]], nbytes: int
) -> float:
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record(streams[0])
    done = []
    for (destination, source, kind), stream in zip(copies, streams, strict=False):
        stream.wait_event(start)
        cp.cuda.runtime.memcpyAsync(destination, source, nbytes, kind, stream.ptr)
        event = cp.cuda.Event()
        event.record(stream)
        done.append(event)
    for event in done:
        streams[0].wait_event(event)
    end.record(streams[0])
    end.synchronize()
    return float(cp.cuda.get_elapsed_time(start, end)) / 1e3


def bench_pcie(
    cp: Any, backend: Backend, reps: int, row: Row, nbytes: int = COPY_BYTES
) -> PcieNumbers:
    """Measure both, add rows (what, value, unit, peer name, peer value) and return the numbers."""
    mine, gen, width = ours(backend, nbytes, reps)
    theirs = peer(cp, nbytes, reps)
    numbers = PcieNumbers(mine, theirs, gen, width)
    for direction, title in (("h2d", "host->device"), ("d2h", "device->host"), ("both", "both")):
        what = f"pcie {title} ({nbytes >> 20} MiB pinned)"
        row(what, mine[direction], "GB/s", "cupy memcpyAsync", theirs[direction])
    floor = "floor (Gen5 x16 H100/H200)"
    row("pcie host->device vs floor", mine["h2d"], "GB/s", floor, FLOOR_H2D_GBS)
    theoretical = link_gbs(gen, width)
    if theoretical is not None:
        link = f"{describe(gen, width)} theoretical"
        row("pcie host->device vs link", mine["h2d"], "GB/s", link, theoretical)
    return numbers
