"""Every kernels/*.cu compiles, with the options the CUDA backend uses, for the GPUs we support.

No GPU needed. nvcc builds each file for every architecture it still supports among sm_70 (dropped
by CUDA 13), sm_75, sm_80 and sm_90; NVRTC (the compiler CuPy uses at run time, with no headers)
builds them too when its library can be found (pip's nvidia-cuda-nvrtc, the toolkit, or
GPUHEALTH_NVRTC_LIB). Each file's header comment must name every kernel it defines.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.metadata
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gpuhealth.measure.backends import kernels

ARCHS = ("70", "75", "80", "90")
REQUIRED_ARCHS = ("80", "90")  # Ampere and Hopper: a toolkit that cannot build these is too old
# What CuPy adds to our options when it compiles (cupy.cuda.compiler._compile_with_cache_cuda).
CUPY_EXTRA_OPTIONS = ("-ftz=true",)

NVCC = shutil.which("nvcc")


def _nvcc_archs(nvcc: str) -> set[str]:
    listed = subprocess.run(
        [nvcc, "--list-gpu-code"], capture_output=True, text=True, check=True
    ).stdout
    return set(re.findall(r"sm_(\d+)\b", listed))


def _compile_nvcc(nvcc: str, family: str, archs: tuple[str, ...], out_dir: Path) -> str:
    """Build one file for all archs at once (nvcc runs the archs in parallel); returns errors."""
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    command = [
        nvcc,
        "--fatbin",
        "--threads",
        "0",
        "-Wno-deprecated-gpu-targets",
        *gencode,
        *kernels.compile_options(),
        *CUPY_EXTRA_OPTIONS,
        "-o",
        str(out_dir / f"{family}.fatbin"),
        str(kernels.source_path(family)),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return "" if result.returncode == 0 else result.stderr + result.stdout


@pytest.fixture(scope="module")
def nvcc_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if NVCC is None:
        pytest.skip("nvcc is not on PATH")
    supported = _nvcc_archs(NVCC)
    missing = [a for a in REQUIRED_ARCHS if a not in supported]
    assert not missing, f"nvcc cannot build sm_{missing}: the toolkit is too old"
    archs = tuple(a for a in ARCHS if a in supported)
    out_dir = tmp_path_factory.mktemp("cubins")
    with ThreadPoolExecutor(max_workers=len(kernels.FAMILIES)) as pool:
        logs = pool.map(lambda f: _compile_nvcc(NVCC, f, archs, out_dir), kernels.FAMILIES)
    return dict(zip(kernels.FAMILIES, logs, strict=True))


@pytest.mark.parametrize("family", kernels.FAMILIES)
def test_nvcc_compiles(family: str, nvcc_results: dict[str, str]) -> None:
    assert nvcc_results[family] == "", nvcc_results[family]


# --- NVRTC, exactly as CuPy calls it ------------------------------------------------------------


# Where pip's wheels put libnvrtc: nvidia-cuda-nvrtc (CUDA 13) in nvidia/cu13/lib,
# nvidia-cuda-nvrtc-cu12 in nvidia/cuda_nvrtc/lib.
NVRTC_WHEELS = ("nvidia-cuda-nvrtc", "nvidia-cuda-nvrtc-cu12")
NVRTC_WHEEL_DIRS = ("cu13/lib", "cuda_nvrtc/lib")


def _wheel_nvrtc() -> Iterator[str]:
    try:
        import nvidia  # the wheels' namespace package
    except ImportError:
        return
    for root in nvidia.__path__:
        for folder in (*NVRTC_WHEEL_DIRS, "*/lib"):  # then any other CUDA wheel's lib/
            yield from sorted(str(p) for p in Path(root).glob(f"{folder}/libnvrtc.so*"))


def _installed_nvrtc_wheels() -> list[str]:
    found = []
    for name in NVRTC_WHEELS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return found


def _nvrtc_candidates() -> Iterator[str]:
    configured = os.environ.get("GPUHEALTH_NVRTC_LIB")
    if configured:
        yield configured
    yield from _wheel_nvrtc()
    found = ctypes.util.find_library("nvrtc")
    if found:
        yield found
    if NVCC is not None:
        toolkit = Path(NVCC).resolve().parent.parent
        yield from (str(p) for p in toolkit.glob("lib*/libnvrtc.so*"))


def _load_nvrtc() -> ctypes.CDLL | None:
    for candidate in _nvrtc_candidates():
        if "builtins" in candidate or ".alt." in candidate:
            continue
        # NVRTC dlopens its builtins library by name at compile time: load the one beside it first.
        for builtins in sorted(Path(candidate).parent.glob("libnvrtc-builtins.so*")):
            if ".alt." not in builtins.name:
                with contextlib.suppress(OSError):
                    ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
        try:
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    return None


class Nvrtc:
    """The few NVRTC calls a compile check needs (nvrtc.h), through ctypes."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib

    def supported_archs(self) -> set[str]:
        count = ctypes.c_int()
        if self.lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)) != 0:
            return set()
        values = (ctypes.c_int * count.value)()
        self.lib.nvrtcGetSupportedArchs(values)
        return {str(v) for v in values}

    def compile(self, source: str, name: str, options: list[str]) -> str:
        """Returns the error log, or "" when the program compiled."""
        program = ctypes.c_void_p()
        status = self.lib.nvrtcCreateProgram(
            ctypes.byref(program), source.encode(), name.encode(), 0, None, None
        )
        assert status == 0, f"nvrtcCreateProgram failed ({status})"
        try:
            encoded = [o.encode() for o in options]
            argv = (ctypes.c_char_p * len(encoded))(*encoded)
            status = self.lib.nvrtcCompileProgram(program, len(encoded), argv)
            if status == 0:
                return ""
            size = ctypes.c_size_t()
            self.lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            self.lib.nvrtcGetProgramLog(program, log)
            return log.value.decode(errors="replace") or f"NVRTC status {status}"
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(program))


@pytest.fixture(scope="module")
def nvrtc() -> Nvrtc:
    lib = _load_nvrtc()
    if lib is None:
        wheels = _installed_nvrtc_wheels()
        # The test extra installs the wheel: then a skip would hide a broken locator.
        assert not wheels, f"{wheels} installed but no libnvrtc found under {NVRTC_WHEEL_DIRS}"
        pytest.skip(
            "libnvrtc not found (pip install nvidia-cuda-nvrtc, or nvidia-cuda-nvrtc-cu12 for "
            "CUDA 12, or set GPUHEALTH_NVRTC_LIB)"
        )
    return Nvrtc(lib)


@pytest.mark.parametrize("family", kernels.FAMILIES)
def test_nvrtc_compiles_without_headers(family: str, nvrtc: Nvrtc) -> None:
    archs = [a for a in ARCHS if a in nvrtc.supported_archs()]
    assert archs, "this NVRTC supports none of the archs we build for"
    source = kernels.read_source(family)
    options = [*kernels.compile_options(), *CUPY_EXTRA_OPTIONS]
    for arch in archs:
        log = nvrtc.compile(source, f"{family}.cu", [*options, f"-arch=sm_{arch}"])
        assert log == "", f"sm_{arch}: {log}"


# --- the launch contract in each header ---------------------------------------------------------


def _header_comment(source: str) -> str:
    lines = []
    for line in source.splitlines():
        if not line.startswith("//"):
            break
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("family", kernels.FAMILIES)
def test_header_names_every_kernel(family: str) -> None:
    source = kernels.read_source(family)
    names = kernels.declared_kernels(source)
    assert names, f'{family}.cu defines no extern "C" __global__ kernel'
    header = _header_comment(source)
    assert header, f"{family}.cu must start with a header comment stating the launch contract"
    missing = [n for n in names if not re.search(rf"\b{n}\b", header)]
    assert not missing, f"{family}.cu header does not describe {missing}"


@pytest.mark.parametrize("family", kernels.FAMILIES)
def test_no_includes(family: str) -> None:
    """NVRTC runs with no include path: a header would compile under nvcc and fail at run time."""
    source = kernels.read_source(family)
    assert not re.search(r"^\s*#\s*include\b", source, re.MULTILINE)


def test_declared_kernels_parser() -> None:
    source = (
        'extern "C" __global__ void alpha(int* x) {}\n'
        'extern "C" __global__ void __launch_bounds__(128)\n    beta(float* y) {}\n'
        "__global__ void not_exported() {}\n"
    )
    assert kernels.declared_kernels(source) == ("alpha", "beta")


def test_options_carry_backend_constants() -> None:
    options = kernels.compile_options()
    assert "-std=c++17" in options
    for name, value in kernels.defines().items():
        assert f"-D{name}={value}" in options
