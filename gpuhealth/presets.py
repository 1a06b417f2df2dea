"""Test presets: how long and how hard each stress test runs (quick, standard, thorough)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpuhealth.errors import InputError

GIB = 1 << 30


@dataclass(frozen=True)
class BandwidthParams:
    array_bytes: int
    warmup: int
    repetitions: int
    budget_s: float


@dataclass(frozen=True)
class MemtestParams:
    patterns: int  # how many of patterns.standard_sequence
    # The sequence is run this many times (a new random seed each time): a bit that flips on a
    # few reads in a hundred is seen only by repeated reads; a pass costs ~0.3 s per 100 GB.
    passes: int
    walking_shifts: int  # extra walking-ones passes with shifts 1..N
    bit_fade_s: float  # 0 = no bit-fade pass
    budget_s: float


@dataclass(frozen=True)
class ComputeParams:
    warmup: int
    repetitions: int
    launch_s: float  # target device time of one timed launch
    budget_s: float


@dataclass(frozen=True)
class TensorParams:
    warmup: int
    repetitions: int
    launch_s: float
    gemm_n: int  # size of the verified tensor-core GEMM (the same in every preset: its
    # throughput depends on it, and profiles are measured at one size)
    budget_s: float


@dataclass(frozen=True)
class GemmParams:
    n: int
    warmup: int
    repetitions: int
    budget_s: float


@dataclass(frozen=True)
class SoakParams:
    duration_s: float
    iteration_s: float  # device time of one soak iteration (GEMMs + a triad + a digest)
    gemm_n: int
    # Then a memory-bound phase (triads back to back): the card busy at a second, lower power
    # held for several slow thermal time constants, so that the whole run's telemetry identifies
    # the thermal resistance (gpuhealth/judge/thermal_fit.py) whatever heat the card held at the
    # start.
    memory_phase_s: float
    budget_s: float


@dataclass(frozen=True)
class PcieParams:
    """Issue 14: pinned host <-> device copies, each direction and both at once."""

    copy_bytes: int  # per copy and direction (at least stresstests.pcie.COPY_MIN_BYTES)
    warmup: int
    repetitions: int
    budget_s: float


@dataclass(frozen=True)
class Preset:
    name: str
    telemetry_interval_s: float
    bandwidth: BandwidthParams
    memtest: MemtestParams
    fp32: ComputeParams
    fp16_tensor: TensorParams
    gemm: GemmParams
    soak: SoakParams
    pcie: PcieParams

    def budget_s(self, test: str) -> float:
        params: (
            BandwidthParams
            | MemtestParams
            | ComputeParams
            | TensorParams
            | GemmParams
            | SoakParams
            | PcieParams
        ) = getattr(self, test)
        return params.budget_s


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        name="quick",
        telemetry_interval_s=0.2,
        bandwidth=BandwidthParams(1 * GIB, warmup=2, repetitions=10, budget_s=30),
        memtest=MemtestParams(patterns=2, passes=4, walking_shifts=0, bit_fade_s=0, budget_s=60),
        fp32=ComputeParams(warmup=2, repetitions=10, launch_s=0.02, budget_s=20),
        fp16_tensor=TensorParams(warmup=2, repetitions=10, launch_s=0.02, gemm_n=4096, budget_s=20),
        gemm=GemmParams(n=8192, warmup=2, repetitions=5, budget_s=30),
        soak=SoakParams(
            duration_s=30, iteration_s=0.5, gemm_n=8192, memory_phase_s=45, budget_s=105
        ),
        # 256 MiB copies: ~5 ms each at Gen5 x16; the host pattern fill and checks dominate
        pcie=PcieParams(256 << 20, warmup=1, repetitions=5, budget_s=20),
    ),
    "standard": Preset(
        name="standard",
        telemetry_interval_s=0.2,
        bandwidth=BandwidthParams(2 * GIB, warmup=3, repetitions=30, budget_s=60),
        memtest=MemtestParams(patterns=4, passes=16, walking_shifts=0, bit_fade_s=0, budget_s=120),
        fp32=ComputeParams(warmup=3, repetitions=20, launch_s=0.05, budget_s=30),
        fp16_tensor=TensorParams(warmup=3, repetitions=20, launch_s=0.05, gemm_n=4096, budget_s=30),
        gemm=GemmParams(n=8192, warmup=3, repetitions=10, budget_s=60),
        soak=SoakParams(
            duration_s=120, iteration_s=0.5, gemm_n=8192, memory_phase_s=60, budget_s=240
        ),
        pcie=PcieParams(256 << 20, warmup=2, repetitions=10, budget_s=30),
    ),
    "thorough": Preset(
        name="thorough",
        telemetry_interval_s=0.2,
        bandwidth=BandwidthParams(4 * GIB, warmup=5, repetitions=50, budget_s=120),
        memtest=MemtestParams(
            patterns=4, passes=32, walking_shifts=31, bit_fade_s=60, budget_s=600
        ),
        fp32=ComputeParams(warmup=5, repetitions=50, launch_s=0.05, budget_s=60),
        fp16_tensor=TensorParams(warmup=5, repetitions=50, launch_s=0.05, gemm_n=4096, budget_s=90),
        gemm=GemmParams(n=8192, warmup=5, repetitions=30, budget_s=120),
        soak=SoakParams(
            duration_s=600, iteration_s=0.5, gemm_n=8192, memory_phase_s=90, budget_s=810
        ),
        pcie=PcieParams(1 * GIB, warmup=2, repetitions=20, budget_s=90),
    ),
}


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(
            "--preset", None, f"expected one of {', '.join(PRESETS)}, got {name!r}"
        ) from None


# --soak: a burn-in of up to a day; below 10 s the thermal fit and the guard have nothing to go on.
SOAK_MIN_S = 10.0
SOAK_MAX_S = 86_400.0
SOAK_EXTRA_BUDGET_SHARE = 0.1  # a long soak's host-side time (journaling, checks) grows with it


def with_soak(chosen: Preset, duration_s: float | None) -> Preset:
    """The preset with its soak set to duration_s (--soak); None: the preset as it is. The time
    budget keeps the preset's margin over soak + memory phase, plus a share of a longer soak."""
    if duration_s is None:
        return chosen
    if not SOAK_MIN_S <= duration_s <= SOAK_MAX_S:
        raise InputError(
            "--soak",
            None,
            f"expected seconds from {SOAK_MIN_S:g} to {SOAK_MAX_S:g}, got {duration_s:g}",
        )
    soak = chosen.soak
    margin_s = soak.budget_s - soak.duration_s - soak.memory_phase_s
    budget_s = duration_s + soak.memory_phase_s + margin_s + SOAK_EXTRA_BUDGET_SHARE * duration_s
    return replace(chosen, soak=replace(soak, duration_s=duration_s, budget_s=budget_s))


# The stress tests in the order a grade runs them (gpuhealth.measure.stresstests.TEST_NAMES, which
# imports the backends; tests/test_readiness_burnin.py keeps the two equal).
TEST_ORDER = ("pcie", "bandwidth", "memtest", "fp32", "fp16_tensor", "gemm", "soak")


def parse_tests(text: str) -> tuple[str, ...]:
    """--tests LIST: comma-separated test names, in the suite's order, each once; empty items (a
    trailing or doubled comma) are skipped, as --gpus skips them."""
    from gpuhealth.datafiles import did_you_mean

    names = [name for part in text.split(",") if (name := part.strip())]
    if not any(names):
        raise InputError("--tests", None, f"expected test names from: {', '.join(TEST_ORDER)}")
    for name in names:
        if name not in TEST_ORDER:
            raise InputError(
                "--tests",
                None,
                f"unknown test {name!r}{did_you_mean(name, list(TEST_ORDER))} "
                f"(expected names from: {', '.join(TEST_ORDER)})",
            )
    return tuple(name for name in TEST_ORDER if name in names)
