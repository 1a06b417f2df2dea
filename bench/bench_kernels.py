"""Our kernels against their peers, measured in the same run on the same card.

    PYTHONPATH=. python bench/bench_kernels.py [--quick]

Prints one table of ratios (ours ÷ peer, ours ÷ datasheet-style peak) and one JSON line, prefixed
`BENCH_JSON `, with every number, for bench/RESULTS.md. Peers: cudaMemcpy device-to-device and
CuPy's copy for bandwidth; NVML max memory clock × bus width × 2 for the memory peak; SMs × FP32
lanes × 2 × max SM clock for FP32; cupy.matmul (cuBLAS) FP16 and FP32 at n = 8192 for the tensor
cores and for our gemm_library wrapper; raw CuPy cudaMemcpyAsync for the PCIe copies
(bench/bench_pcie.py: ours ÷ CuPy >= 0.95, and >= 48 GB/s host to device at Gen5 x16). Launch
geometries are tried and the best one is reported. Every timed kernel's result is checked too: a
fast wrong kernel is not a result. Needs a GPU and CuPy; about a minute on an H100/H200.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_pcie
import cupy as cp
import numpy as np

from gpuhealth.measure.backends.base import FMA_CHAINS, MMA_ACCUMULATORS, STREAM_BYTES_PER_ELEMENT
from gpuhealth.measure.backends.cuda import CudaBackend, Geometry
from gpuhealth.patterns import MemPattern, standard_sequence

GIB = 1 << 30
STREAM_N = 1 << 29  # float32 elements per array: 2 GiB, far above any L2
GEMM_N = 8192
MEMTEST_MARGIN = 512 << 20  # left free for CuPy scratch and the driver

# From one resident wave (persistent threads) to a grid of ~1 float4 per thread (BabelStream's
# shape for 2 GiB arrays): the grid-stride kernels take any of them.
STREAM_GEOMETRIES = (
    Geometry(2, 1024),
    Geometry(4, 256),
    Geometry(8, 256),
    Geometry(32, 256),
    Geometry(128, 256),
    Geometry(512, 256),
    Geometry(1024, 256),
    Geometry(4096, 256),
)
MEMTEST_GEOMETRIES = (
    Geometry(2, 1024),
    Geometry(8, 256),
    Geometry(16, 256),
    Geometry(64, 256),
    Geometry(256, 256),
    Geometry(1024, 256),
)
FMA_GEOMETRIES = (Geometry(2, 1024), Geometry(4, 512), Geometry(8, 256), Geometry(16, 128))
MMA_GEOMETRIES = (
    Geometry(4, 256),
    Geometry(5, 256),
    Geometry(8, 256),
    Geometry(2, 512),
    Geometry(10, 128),
    Geometry(16, 128),
)


@dataclass
class Report:
    rows: list[tuple[str, float, str, str, float | None, float | None]] = field(
        default_factory=list
    )
    numbers: dict[str, Any] = field(default_factory=dict)

    def row(self, what: str, value: float, unit: str, peer: str, peer_value: float | None) -> None:
        ratio = value / peer_value if peer_value else None
        self.rows.append((what, value, unit, peer, peer_value, ratio))

    def print(self) -> None:
        header = (
            f"{'measured':<40} {'value':>11} {'unit':<8} {'÷ peer':<32} {'peer':>10} {'ratio':>6}"
        )
        print(header)
        print("-" * len(header))
        for what, value, unit, peer, peer_value, ratio in self.rows:
            shown_peer = f"{peer_value:10.1f}" if peer_value is not None else f"{'n/a':>10}"
            shown_ratio = f"{ratio:6.3f}" if ratio is not None else f"{'n/a':>6}"
            print(f"{what:<40} {value:11.1f} {unit:<8} {peer:<32} {shown_peer} {shown_ratio}")
        print("BENCH_JSON " + json.dumps(self.numbers, sort_keys=True))


def _label(geometry: Geometry) -> str:
    return f"{geometry.blocks_per_sm}/SM x {geometry.threads}"


def median_seconds(run: Callable[[], float], warmup: int, reps: int) -> float:
    for _ in range(warmup):
        run()
    return statistics.median(run() for _ in range(reps))


def event_timer(work: Callable[[], object]) -> Callable[[], float]:
    start, end = cp.cuda.Event(), cp.cuda.Event()

    def run() -> float:
        start.record()
        work()
        end.record()
        end.synchronize()
        return float(cp.cuda.get_elapsed_time(start, end)) / 1e3

    return run


# --- bandwidth ------------------------------------------------------------------------------------


def bench_copy_peers(reps: int, report: Report) -> float:
    nbytes = 2 * GIB
    src = cp.full(nbytes // 4, 1.5, dtype=cp.float32)
    dst = cp.empty_like(src)
    memcpy = event_timer(
        lambda: cp.cuda.runtime.memcpy(
            dst.data.ptr, src.data.ptr, nbytes, cp.cuda.runtime.memcpyDeviceToDevice
        )
    )
    memcpy_gbs = 2 * nbytes / median_seconds(memcpy, 2, reps) / 1e9
    cupy_copy = event_timer(lambda: cp.copyto(dst, src))
    cupy_gbs = 2 * nbytes / median_seconds(cupy_copy, 2, reps) / 1e9
    assert bool((dst == src).all()), "cupy copy produced wrong data"
    report.numbers.update(memcpy_d2d_gbs=memcpy_gbs, cupy_copy_gbs=cupy_gbs)
    return memcpy_gbs


def bench_stream(backend: CudaBackend, reps: int, memcpy_gbs: float, report: Report) -> float:
    n = STREAM_N
    a, b, c = (backend.alloc(4 * n) for _ in range(3))
    values = {"a": 0.1, "b": 0.2, "c": 0.0}
    for buffer, value in zip((a, b, c), values.values(), strict=True):
        backend.fill_f32(buffer, n, value)

    def gbs(op: str) -> float:
        seconds = median_seconds(lambda: backend.stream(op, a, b, c, 0.4, n), 2, reps)
        return STREAM_BYTES_PER_ELEMENT[op] * n / seconds / 1e9

    # Best geometry for copy + triad (one 1:1 and one 2:1 read:write mix); read separately, as
    # the backend launches it with its own geometry (one partial sum per block: at most 65536,
    # the room the bandwidth stress test gives them).
    by_geometry: dict[str, dict[str, float]] = {}
    for geometry in STREAM_GEOMETRIES:
        backend.stream_geometry = backend.read_geometry = geometry
        by_geometry[_label(geometry)] = {op: gbs(op) for op in ("copy", "triad", "read")}
    best = max(
        STREAM_GEOMETRIES,
        key=lambda g: by_geometry[_label(g)]["copy"] + by_geometry[_label(g)]["triad"],
    )
    fits = [g for g in STREAM_GEOMETRIES if g.blocks(backend.device_info().sm_count) <= 65536]
    best_read = max(fits, key=lambda g: by_geometry[_label(g)]["read"])
    backend.stream_geometry, backend.read_geometry = best, best_read
    results = {op: gbs(op) for op in ("copy", "scale", "add", "triad", "read")}
    # Verify with the best geometry: from a = 0.1, b = 0.2, c = 0: copy c = a, then triad
    # a = b + 0.4 c, every element against the host's value.
    for buffer, value in zip((a, b, c), values.values(), strict=True):
        backend.fill_f32(buffer, n, value)
    backend.stream("copy", a, b, c, 0.0, n)
    wrong = backend.count_f32_not_close(c, n, 0.1, 1e-6)
    backend.stream("triad", a, b, c, 0.4, n)
    wrong += backend.count_f32_not_close(a, n, 0.2 + 0.4 * 0.1, 1e-6)
    for buffer in (a, b, c):
        backend.free(buffer)
    peak = backend.device_info().peak_memory_gbs
    label = _label(best)
    for op in ("triad", "copy"):
        report.row(f"stream {op} ({label})", results[op], "GB/s", "cudaMemcpy D2D", memcpy_gbs)
        report.row(f"stream {op}", results[op], "GB/s", "NVML memory peak", peak)
    for op in ("scale", "add"):
        report.row(f"stream {op}", results[op], "GB/s", "cudaMemcpy D2D", memcpy_gbs)
    report.row(
        f"stream read ({_label(best_read)})", results["read"], "GB/s", "cudaMemcpy D2D", memcpy_gbs
    )
    report.numbers.update(
        stream_gbs=results,
        stream_by_geometry_gbs=by_geometry,
        stream_best_geometry=label,
        stream_read_best_geometry=_label(best_read),
        stream_verify_wrong=wrong,
        nvml_peak_memory_gbs=peak,
    )
    assert wrong == 0, f"stream triad wrote {wrong} wrong elements"
    return results["copy"]


# --- memtest --------------------------------------------------------------------------------------


def memtest_pass(backend: CudaBackend, buffer: Any, words: int) -> tuple[float, int, int]:
    """The 4-pattern pass: write each pattern, check it. Returns (seconds, bytes moved, errors)."""
    seconds, errors = 0.0, 0
    patterns = standard_sequence(4)
    for pattern in patterns:
        seconds += backend.memtest_write(buffer, words, pattern)
        check = backend.memtest_check(buffer, words, pattern, None, 16)
        seconds += check.elapsed_s
        errors += check.mismatches
    return seconds, 2 * 4 * words * len(patterns), errors


def moving_inversions(backend: CudaBackend, buffer: Any, words: int) -> tuple[float, int, int]:
    """Write, check+write the inverse in one sweep, check the inverse: 4 word-passes of traffic."""
    pattern = MemPattern("random", 0x5EED)
    seconds = backend.memtest_write(buffer, words, pattern)
    first = backend.memtest_check(buffer, words, pattern, pattern.inverted(), 16)
    second = backend.memtest_check(buffer, words, pattern.inverted(), None, 16)
    seconds += first.elapsed_s + second.elapsed_s
    return seconds, 4 * 4 * words, first.mismatches + second.mismatches


def bench_memtest(backend: CudaBackend, copy_gbs: float, report: Report) -> None:
    cp.get_default_memory_pool().free_all_blocks()
    info = backend.device_info()
    total = backend.identity().memory_total_bytes or info.memory_total_bytes
    nbytes = (backend.memory_free_bytes() - MEMTEST_MARGIN) // 16 * 16
    buffer = backend.alloc(nbytes)
    try:
        trial_words = min(nbytes, 16 * GIB) // 4
        by_geometry: dict[str, float] = {}
        for geometry in MEMTEST_GEOMETRIES:
            backend.memtest_geometry = geometry
            memtest_pass(backend, buffer, trial_words)  # warm-up
            seconds, moved, _ = memtest_pass(backend, buffer, trial_words)
            by_geometry[_label(geometry)] = moved / seconds / 1e9
        best = max(MEMTEST_GEOMETRIES, key=lambda g: by_geometry[_label(g)])
        backend.memtest_geometry = best
        words = nbytes // 4
        seconds, moved, errors = memtest_pass(backend, buffer, words)
        mi_seconds, mi_moved, mi_errors = moving_inversions(backend, buffer, words)
    finally:
        backend.free(buffer)
    label = f"{best.blocks_per_sm}/SM x {best.threads}"
    report.row(
        f"memtest 4-pattern pass ({label})",
        moved / seconds / 1e9,
        "GB/s",
        "our stream copy",
        copy_gbs,
    )
    report.row(
        "memtest moving inversions",
        mi_moved / mi_seconds / 1e9,
        "GB/s",
        "our stream copy",
        copy_gbs,
    )
    report.row("memtest coverage", 100.0 * nbytes / total, "%", "target", 95.0)
    report.numbers.update(
        memtest_bytes=nbytes,
        memtest_fraction_of_total=nbytes / total,
        memtest_4_pattern_seconds=seconds,
        memtest_rw_gbs=moved / seconds / 1e9,
        memtest_moving_inversions_gbs=mi_moved / mi_seconds / 1e9,
        memtest_errors=errors + mi_errors,
        memtest_by_geometry_gbs=by_geometry,
        memtest_best_geometry=label,
    )
    if errors + mi_errors:
        print(f"!! memtest found {errors + mi_errors} bad words on this card", file=sys.stderr)


# --- compute --------------------------------------------------------------------------------------


def _iterations(target_s: float, rate: float, flops_per_iteration: float, multiple: int) -> int:
    return max(multiple, int(target_s * rate / flops_per_iteration) // multiple * multiple)


def fma_tflops(backend: CudaBackend, geometry: Geometry, reps: int) -> float:
    info = backend.device_info()
    blocks, threads = geometry.blocks(info.sm_count), geometry.threads
    flops = 2.0 * blocks * threads * FMA_CHAINS
    iterations = _iterations(0.03, (info.peak_fp32_tflops or 50.0) * 1e12, flops, 64)
    out, smids = backend.alloc(4 * blocks * threads * FMA_CHAINS), backend.alloc(4 * blocks)
    try:
        seconds = median_seconds(
            lambda: backend.fma_loop(out, smids, blocks, threads, iterations, -1.9), 2, reps
        )
        values = np.asarray(backend.download(out, np.float32, blocks * threads * FMA_CHAINS))
    finally:
        backend.free(out)
        backend.free(smids)
    values = values.reshape(-1, FMA_CHAINS)
    assert np.all(values == values[0]) and np.all(np.isfinite(values)), "FMA threads disagree"
    return flops * iterations / seconds / 1e12


def bench_fp32(backend: CudaBackend, reps: int, report: Report) -> None:
    peak = backend.device_info().peak_fp32_tflops
    by_geometry = {_label(g): fma_tflops(backend, g, reps) for g in FMA_GEOMETRIES}
    best_label, best = max(by_geometry.items(), key=lambda kv: kv[1])
    clock = backend.telemetry().sm_clock_mhz
    report.row(f"fp32 fma_loop ({best_label})", best, "TFLOP/s", "SMs×lanes×2×max clock", peak)
    report.numbers.update(
        fp32_tflops=best,
        fp32_by_geometry_tflops=by_geometry,
        fp32_peak_tflops=peak,
        sm_clock_after_fp32_mhz=clock,
    )


def cublas_tflops(dtype: Any, reps: int) -> float:
    n = GEMM_N
    rng = cp.random.default_rng(0)
    a = rng.random((n, n), dtype=cp.float32).astype(dtype)
    b = rng.random((n, n), dtype=cp.float32).astype(dtype)
    c = cp.empty((n, n), dtype=dtype)
    seconds = median_seconds(event_timer(lambda: cp.matmul(a, b, out=c)), 3, reps)
    return 2.0 * n**3 / seconds / 1e12


def mma_tflops(backend: CudaBackend, geometry: Geometry, reps: int) -> float:
    blocks, threads = geometry.blocks(backend.device_info().sm_count), geometry.threads
    flops = float(blocks * (threads // 32) * MMA_ACCUMULATORS * 16 * 8 * 16 * 2)
    iterations = _iterations(0.03, 6e14, flops, 2)
    out, smids = backend.alloc(4 * blocks * threads), backend.alloc(4 * blocks)
    try:
        seconds = median_seconds(
            lambda: backend.mma_loop(out, smids, blocks, threads, iterations), 2, reps
        )
        drift = np.asarray(backend.download(out, np.float32, blocks * threads))
    finally:
        backend.free(out)
        backend.free(smids)
    assert np.all(drift == 0.0), f"mma_loop: {np.count_nonzero(drift)} threads drifted"
    return flops * iterations / seconds / 1e12


def bench_mma(backend: CudaBackend, reps: int, cublas_fp16: float, report: Report) -> None:
    by_geometry = {_label(g): mma_tflops(backend, g, reps) for g in MMA_GEOMETRIES}
    best_label, best = max(by_geometry.items(), key=lambda kv: kv[1])
    report.row(
        f"mma.sync loop ({best_label})", best, "TFLOP/s", "cupy.matmul fp16 8192", cublas_fp16
    )
    report.numbers.update(mma_tflops=best, mma_by_geometry_tflops=by_geometry)


def bench_gemms(backend: CudaBackend, reps: int, report: Report) -> float:
    n = GEMM_N
    cublas = {"fp16": cublas_tflops(cp.float16, reps), "fp32": cublas_tflops(cp.float32, reps)}
    ours: dict[str, float] = {}
    for dtype, size in (("fp16", 2), ("fp32", 4)):
        a, b, c = (backend.alloc(size * n * n) for _ in range(3))
        backend.fill_uniform(a, dtype, n * n, 1, 0.0, 1.0)
        backend.fill_uniform(b, dtype, n * n, 2, 0.0, 1.0)

        def run(a: Any = a, b: Any = b, c: Any = c, dtype: Any = dtype) -> float:
            return backend.gemm_library(a, b, c, n, dtype)

        ours[dtype] = 2.0 * n**3 / median_seconds(run, 3, reps) / 1e12
        for buffer in (a, b, c):
            backend.free(buffer)
        report.row(
            f"gemm_library {dtype} {n}",
            ours[dtype],
            "TFLOP/s",
            f"cupy.matmul {dtype} direct",
            cublas[dtype],
        )

    # Our tensor-core GEMM: speed at n, correctness against the float64 reference.
    a, bt = backend.alloc(2 * n * n), backend.alloc(2 * n * n)
    c, ref = backend.alloc(4 * n * n), backend.alloc(8 * n * n)
    backend.fill_uniform(a, "fp16", n * n, 3, -1.0, 1.0)
    backend.fill_uniform(bt, "fp16", n * n, 4, -1.0, 1.0)
    tensor = 2.0 * n**3 / median_seconds(lambda: backend.gemm_tensor(a, bt, c, n), 1, 5) / 1e12
    backend.gemm_reference_f64(a, bt, ref, n, "fp16", b_transposed=True)
    check = backend.compare_close(c, "fp32", ref, n * n, 1e-3, 1e-2, 4)
    for buffer in (a, bt, c, ref):
        backend.free(buffer)
    report.row(
        f"gemm_tensor (ours) {n}", tensor, "TFLOP/s", "cupy.matmul fp16 direct", cublas["fp16"]
    )
    report.numbers.update(
        cublas_tflops=cublas,
        gemm_library_tflops=ours,
        gemm_tensor_tflops=tensor,
        gemm_tensor_mismatches=check.mismatches,
        gemm_tensor_max_abs_error=check.max_abs_error,
        gemm_tensor_max_rel_error=check.max_rel_error,
    )
    assert check.mismatches == 0, f"gemm_tensor: {check.mismatches} wrong elements {check.first}"
    return cublas["fp16"]


# --- compile --------------------------------------------------------------------------------------

_LOAD_ALL = (
    "import json, cupy; from gpuhealth.measure.backends import kernels; cupy.cuda.Device(0).use(); "
    "s = kernels.load_all(); "
    "new = sum(r.new_cache_files for r in kernels.load_log()); "
    "print(json.dumps({'seconds': s, 'new_files': new}))"
)


def bench_compile(report: Report) -> None:
    """Cold (empty CuPy cache) and warm (second process, same cache) loads of every module."""
    root = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "CUPY_CACHE_IN_MEMORY"}
        env.update(
            CUPY_CACHE_DIR=cache, PYTHONPATH=os.pathsep.join([root, env.get("PYTHONPATH", "")])
        )
        runs = []
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-c", _LOAD_ALL],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"loading the kernels failed:\n{done.stderr}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    report.row("compile all kernels, cold", cold["seconds"], "s", "", None)
    report.row("load all kernels, warm (2nd proc)", warm["seconds"], "s", "cold", cold["seconds"])
    report.numbers.update(
        compile_cold_s=cold["seconds"],
        compile_cold_new_cache_files=cold["new_files"],
        compile_warm_s=warm["seconds"],
        compile_warm_new_cache_files=warm["new_files"],
    )
    assert warm["new_files"] == 0, "the second process compiled again: CuPy's cache missed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    reps = 5 if args.quick else 10
    report = Report()
    bench_compile(report)
    backend = CudaBackend(0)
    try:
        info = backend.device_info()
        report.numbers.update(
            device=info.name,
            sm_count=info.sm_count,
            cc="{}.{}".format(*info.compute_capability),
            max_sm_clock_mhz=info.max_sm_clock_mhz,
            max_memory_clock_mhz=info.max_memory_clock_mhz,
            memory_bus_width_bits=info.memory_bus_width_bits,
        )
        print(
            f"# {info.name}: {info.sm_count} SMs, cc {report.numbers['cc']}, "
            f"{info.memory_total_bytes / GIB:.1f} GiB",
            flush=True,
        )
        memcpy_gbs = bench_copy_peers(reps, report)
        copy_gbs = bench_stream(backend, reps, memcpy_gbs, report)
        bench_fp32(backend, reps, report)
        cublas_fp16 = bench_gemms(backend, reps, report)
        bench_mma(backend, reps, cublas_fp16, report)
        bench_memtest(backend, copy_gbs, report)
        pcie = bench_pcie.bench_pcie(cp, backend, reps, report.row)
        report.numbers.update(
            pcie_ours_gbs=pcie.ours_gbs,
            pcie_cupy_gbs=pcie.peer_gbs,
            pcie_ratios=pcie.ratios(),
            pcie_link=[pcie.link_gen, pcie.link_width],
            pcie_floor_h2d_gbs=bench_pcie.FLOOR_H2D_GBS,
        )
    finally:
        backend.close()
    report.print()


if __name__ == "__main__":
    main()
