"""Find, compile and cache the CUDA kernels in kernels/ (CuPy RawModule over NVRTC).

One module per kernel family (kernels/<family>.cu). Modules are kept in memory per (family,
arch, options) for the life of the process. Across processes CuPy's own disk cache does the work:
RawModule's compile goes through cupy.cuda.compiler, which stores the binary under
CUPY_CACHE_DIR (default ~/.cupy/kernel_cache) keyed by an MD5 of (arch, options, NVRTC version,
source), so a second process with the same sources loads the file and compiles nothing (unless
CUPY_CACHE_IN_MEMORY=1). `load_log()` tells how long each load took and whether it added files to
that cache, which is how bench/bench_kernels.py tells a cold compile from a warm load.

This module imports cupy lazily: the compile test (no GPU) imports it for the options only.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuhealth.errors import EnvironmentUnusable, KernelCompileError
from gpuhealth.measure.backends.base import FMA_CHAINS, MMA_ACCUMULATORS
from gpuhealth.patterns import PATTERN_CODES
from gpuhealth.resources import kernels_dir

FAMILIES = ("bandwidth", "memtest", "compute", "gemm", "util")
CXX_STANDARD = "-std=c++17"

# Driver statuses that mean "this binary cannot run here" rather than "the card is broken":
# CUDA_ERROR_NO_BINARY_FOR_GPU, CUDA_ERROR_INVALID_PTX, CUDA_ERROR_UNSUPPORTED_PTX_VERSION.
_LOAD_FAILURES = {209, 218, 222}

_KERNEL_DECL = re.compile(
    r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s+)?(\w+)\s*\('
)

_modules: dict[tuple[str, str, tuple[str, ...]], Any] = {}
_functions: dict[tuple[str, str, str, tuple[str, ...]], Any] = {}


@dataclass(frozen=True)
class LoadRecord:
    """One module load in this process: how long it took and what it added to CuPy's cache."""

    family: str
    arch: str
    seconds: float
    new_cache_files: int


_load_log: list[LoadRecord] = []


def defines() -> dict[str, int]:
    """The -D constants every kernel file is compiled with (each .cu #ifndef-defaults them)."""
    values = {"FMA_CHAINS": FMA_CHAINS, "MMA_ACCUMULATORS": MMA_ACCUMULATORS}
    values.update({f"PATTERN_{kind.upper()}": code for kind, code in PATTERN_CODES.items()})
    return values


def compile_options() -> tuple[str, ...]:
    """NVRTC options; CuPy adds the target arch (and -ftz=true) itself."""
    return (CXX_STANDARD, *(f"-D{name}={value}" for name, value in sorted(defines().items())))


def source_path(family: str) -> Path:
    if family not in FAMILIES:
        raise ValueError(f"unknown kernel family {family!r} (expected one of {FAMILIES})")
    return kernels_dir() / f"{family}.cu"


def read_source(family: str) -> str:
    path = source_path(family)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvironmentUnusable(
            f"cannot read kernel source {path}: {exc.strerror}",
            hint="reinstall gpuhealth (pip install --force-reinstall gpuhealth)",
        ) from exc


def declared_kernels(source: str) -> tuple[str, ...]:
    """Names of the extern "C" __global__ functions a source defines, in order."""
    return tuple(_KERNEL_DECL.findall(source))


def cupy_cache_dir() -> Path:
    """Where CuPy keeps compiled kernels (cupy.cuda.compiler.get_cache_dir)."""
    configured = os.environ.get("CUPY_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cupy" / "kernel_cache"


def cache_file_count() -> int:
    directory = cupy_cache_dir()
    if not directory.is_dir():
        return 0
    return sum(1 for entry in directory.iterdir() if entry.suffix == ".cubin")


def load_log() -> tuple[LoadRecord, ...]:
    return tuple(_load_log)


def first_error_line(log: str) -> str:
    """The first line of a compiler log that names an error (else its first non-empty line)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[0] if lines else "no compiler output"


def _cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:
        raise EnvironmentUnusable(
            "CuPy is not installed", hint="pip install 'gpuhealth[cuda13]' (or [cuda12])"
        ) from exc
    return cupy


def current_arch() -> str:
    """Compute capability of CuPy's current device as CuPy spells it ("90")."""
    return str(_cupy().cuda.Device().compute_capability)


def load_module(family: str, arch: str | None = None) -> Any:
    """The compiled module of kernels/<family>.cu for the current device (cached)."""
    cp = _cupy()
    arch = arch or current_arch()
    options = compile_options()
    key = (family, arch, options)
    module = _modules.get(key)
    if module is not None:
        return module
    source = read_source(family)
    files_before = cache_file_count()
    started = time.perf_counter()
    module = cp.RawModule(code=source, options=options)
    try:
        module.compile()
    except cp.cuda.compiler.CompileException as exc:
        raise KernelCompileError(
            f"kernels/{family}.cu failed to compile for sm_{arch}: "
            f"{first_error_line(exc.get_message())}",
            hint="set CUPY_DUMP_CUDA_SOURCE_ON_ERROR=1 for the full log",
        ) from exc
    except cp.cuda.driver.CUDADriverError as exc:
        if exc.status not in _LOAD_FAILURES:
            raise
        raise KernelCompileError(
            f"kernels/{family}.cu compiled but the driver cannot load it: {exc}",
            hint="use the CuPy package that matches the driver (cupy-cuda12x or cupy-cuda13x)",
        ) from exc
    _load_log.append(
        LoadRecord(
            family=family,
            arch=arch,
            seconds=time.perf_counter() - started,
            new_cache_files=cache_file_count() - files_before,
        )
    )
    _modules[key] = module
    return module


def function(family: str, name: str, arch: str | None = None) -> Any:
    """A kernel of a family as a cupy RawKernel, cached with its module."""
    arch = arch or current_arch()
    key = (family, name, arch, compile_options())
    kernel = _functions.get(key)
    if kernel is None:
        kernel = load_module(family, arch).get_function(name)
        _functions[key] = kernel
    return kernel


def load_all(arch: str | None = None) -> float:
    """Compile (or load from cache) every family; returns the seconds it took."""
    started = time.perf_counter()
    for family in FAMILIES:
        load_module(family, arch)
    return time.perf_counter() - started
