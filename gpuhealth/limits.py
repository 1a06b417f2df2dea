"""Physical ranges of the numbers in input files (sim cards, policies, profiles), in one place.

A value outside its range is a mistake in the file, refused before anything is measured: a
bandwidth scale of 1e-300 made a test run for ever, a threshold of 1e9 °C never fires. Each range
says why it is where it is; it is wide enough for every card gpuhealth knows and the next
generations, and narrow enough to catch a unit slip (W for kW, bytes for GiB) or a typo.

Every float in a file schema is also finite (datafiles.StrictModel: allow_inf_nan=False) and of
its exact type (no "300" for 300, no true for 1: datafiles.validate is strict).

`ordered(low, high)` makes a field validator that refuses a pair out of order (min > max), with
the error on the later field's own key, so that the message names the line that is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator


@dataclass(frozen=True)
class Range:
    """A closed range of a quantity in its unit, for checks made outside a pydantic field."""

    low: float
    high: float
    unit: str

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def describe(self) -> str:
        return f"{self.low:g} to {self.high:g} {self.unit}".rstrip()


# Memory bandwidth, GB/s: a GPU's own memory runs 17 GB/s (the slowest CUDA card, a GT 1030 with
# DDR4) to ~8000 GB/s (HBM3e, B200); 20000 leaves room for two generations. Under 10 GB/s is not
# GPU memory, or a figure in TB/s.
BANDWIDTH_GBS = Range(10, 20_000, "GB/s")
BandwidthGBs = Annotated[float, Field(ge=BANDWIDTH_GBS.low, le=BANDWIDTH_GBS.high)]
# Compute throughput, TFLOP/s: 0.01 (a tiny card's FP32) to ~10000 (dense FP8 of a B200); 20000
# leaves room.
THROUGHPUT_TFLOPS = Range(0.01, 20_000, "TFLOP/s")
ThroughputTflops = Annotated[float, Field(ge=THROUGHPUT_TFLOPS.low, le=THROUGHPUT_TFLOPS.high)]
# Efficiency, TFLOP/s per watt: a healthy card does 0.01-5.
TFLOPS_PER_W = Range(0.001, 100, "TFLOP/s per W")
TflopsPerW = Annotated[float, Field(ge=TFLOPS_PER_W.low, le=TFLOPS_PER_W.high)]
# Board power, W: 1 (idle of a small card) to 2000 (a B200 board takes ~1200 W; a simulated
# burst may exceed the cap, e.g. 1555 W for the H100's FP16 GEMM).
PowerW = Annotated[float, Field(ge=1, le=2000)]
# Temperatures, °C: electronics operate from -40 °C (cold-storage spec) to 150 °C (above the
# junction limit of any silicon; NVIDIA's shutdown thresholds are 90-105 °C).
TemperatureC = Annotated[float, Field(ge=-40, le=150)]
# Thermal resistance, °C/W: a GPU to its air or coolant is ~0.005-0.2; 2 is a card with no
# cooling at all. 0 is allowed for a model term that is switched off.
ThermalResistanceCPerW = Annotated[float, Field(ge=0, le=2)]
# Thermal time constants, s: 10 ms (the die) to 10 hours (a rack's air); more is a unit slip.
TimeConstantS = Annotated[float, Field(ge=0.01, le=36_000)]
# Clocks, MHz: 100 MHz to 10 GHz (today's GPUs run 1-3 GHz, their memory up to ~10 GHz effective).
ClockMHz = Annotated[float, Field(ge=100, le=10_000)]
# Streaming multiprocessors: 1 to 1024 (a B200 die has 148).
SmCount = Annotated[int, Field(ge=1, le=1024)]
# Memory bus width, bits: 32 (a small GDDR card) to 16384 (eight HBM stacks of 2048).
BusWidthBits = Annotated[int, Field(ge=32, le=16_384)]
# Card memory, bytes: 256 MiB to 4 TiB (the largest card today holds 192 GB).
MemoryBytes = Annotated[int, Field(ge=2**28, le=2**42)]
# Card memory, GiB (profiles): as MemoryBytes.
MemoryGiB = Annotated[float, Field(ge=0.25, le=4096)]
# Relative spreads (an SD as a fraction of the centre, run-to-run noise): 0.1% (below any
# measurement's resolution) to 50% (beyond it a "healthy range" contains a broken card).
RELATIVE_SPREAD = Range(0.001, 0.5, "")
RelativeSpread = Annotated[float, Field(ge=RELATIVE_SPREAD.low, le=RELATIVE_SPREAD.high)]
# Probabilities: a chance, 0 to 1.
Probability = Annotated[float, Field(ge=0, le=1)]
# Rate scale of a simulated fault: 1% (a card nearly dead) to 2x (a card faster than its model);
# a smaller scale makes a timed test run for days of simulated time.
RateScale = Annotated[float, Field(ge=0.01, le=2)]
# Seeds of the simulated noise: numpy takes 0 .. 2**64 - 1.
Seed = Annotated[int, Field(ge=0, le=2**64 - 1)]
# Process ids: Linux's largest pid_max is 2**22.
ProcessId = Annotated[int, Field(ge=1, le=2**22)]
# Counts of errors or rows in a card's counters: non-negative and below NVML's 64-bit counters'
# practical range (a count beyond 2**48 is a typo).
Count = Annotated[int, Field(ge=0, le=2**48)]


def ordered(low: str, high: str, *, strict: bool = False, on: str | None = None) -> Any:
    """A field validator that refuses low > high (low >= high when strict). It runs on the field
    `on` (default: high), which must be the one of the two declared later (pydantic validates in
    declaration order), so that the error names that field's line. None (left out) skips it."""
    field = on or high

    def check(cls: type, value: Any, info: ValidationInfo) -> Any:
        pair = {**info.data, field: value}
        below, above = pair.get(low), pair.get(high)
        if below is None or above is None:
            return value
        if above < below or (strict and above == below):
            if field == high:
                relation = "above" if strict else "at least"
                raise ValueError(f"expected {relation} {low} ({below}), got {value}")
            relation = "below" if strict else "at most"
            raise ValueError(f"expected {relation} {high} ({above}), got {value}")
        return value

    validator: Callable[..., Any] = field_validator(field)(check)
    return validator


def not_bool(name: str) -> Any:
    """A before-validator for field name that refuses true/false: a Literal[0, 1] or a union with
    int would take true for 1 even when strict."""

    def check(cls: type, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, not {str(value).lower()}")
        return value

    validator: Callable[..., Any] = field_validator(name, mode="before")(check)
    return validator
