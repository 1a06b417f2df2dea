"""A clock setting that held the card's clocks down under load: locked or application clocks.

NVML answers application clocks but has no query for locked clocks (nvidia-smi -lgc / -lmc set
them), so the readiness list cannot read them. The run shows them instead: under load, the driver
names "application clocks setting" (clocks-event reason 0x2) as what holds the clock, and the clock
sits below the card's default. Then the throughput the tests measured is the setting's, not the
card's: a healthy card locked at half its clock measures half its FP32. Pure: reads the record.

Both signs are required. The reason alone is not a hold (a card at its default clock may name its
application clock as the limit), and a low clock alone is the power cap's or the temperature's.
The reason does not say which clock it holds: an SM clock is counted held only in samples with no
power, thermal or slowdown reason (those hold the SM clock too, and a memory lock names the same
reason while the power cap holds the SM clock).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Literal

from gpuhealth.clocktext import parse_clocks
from gpuhealth.judge.soak import load_samples
from gpuhealth.models import Finding, RunRecord, TelemetrySample
from gpuhealth.throttle import CLOCK_SETTING_BIT, SLOWDOWN_REASON_BITS, SW_POWER_CAP_BIT

HELD_BELOW = 0.95  # a clock under 95% of the default (boost steps are ~1%): held, not noise
MIN_HELD_SAMPLES = 3  # one sample at a phase change is not a setting
HELD_TEST_SHARE = 0.5  # of a test's loaded samples: a setting holds a test throughout
Clock = Literal["sm", "memory"]
# what else holds a clock down: the SM clock's hold is not the setting's where one of these is named
_OTHER_HOLDS: dict[Clock, int] = {"sm": SW_POWER_CAP_BIT | SLOWDOWN_REASON_BITS, "memory": 0}


@dataclass(frozen=True)
class ClockHold:
    """A clock held below its default by a setting: where, how far, and in which tests."""

    clock: Clock
    held_mhz: float  # the median clock of the held samples
    default_mhz: float
    held_samples: int
    loaded_samples: int  # the run's samples under load with a clocks-event reason read
    tests: tuple[str, ...]  # those in which most loaded samples were held


def clock_holds(record: RunRecord) -> tuple[ClockHold, ...]:
    """The SM and memory clocks a setting held down under load in this run (none: not held)."""
    sm_mhz, memory_mhz = default_clocks_mhz(record)
    defaults: tuple[tuple[Clock, float | None], ...] = (("sm", sm_mhz), ("memory", memory_mhz))
    holds = []
    for clock, default_mhz in defaults:
        if default_mhz is not None:
            hold = _hold(record, clock, default_mhz)
            if hold is not None:
                holds.append(hold)
    return tuple(holds)


def default_clocks_mhz(record: RunRecord) -> tuple[float | None, float | None]:
    """(SM, memory) clocks the card runs at by default: its default application clocks where the
    readiness list read them (some models' are below their boost), never above the maximum clocks
    it reports; else those maximum clocks."""
    ident = record.identity
    sm, memory = ident.max_sm_clock_mhz, ident.max_memory_clock_mhz
    for item in record.readiness or ():
        found = parse_clocks(item.expected)
        if item.key == "applications_clocks" and item.status != "unreadable" and found:
            sm, memory = _lower(sm, found[0]), _lower(memory, found[1])
    return sm, memory


def _lower(reported: float | None, default: float) -> float:
    return default if reported is None else min(reported, default)


def _hold(record: RunRecord, clock: Clock, default_mhz: float) -> ClockHold | None:
    """The clock's hold: tests in which most loaded samples were held (a lock that binds only
    where the power cap does not, in the short tests, counts as much as one held in the soak),
    at least MIN_HELD_SAMPLES of them in all (one sample at a phase change is not a setting)."""
    held_mhz: list[float] = []
    held_tests: list[str] = []
    loaded_count = 0
    for test in record.tests:
        loaded = [
            (s.clocks_event_reasons, _clock_mhz(s, clock))
            for s in load_samples(test.telemetry)
            if s.clocks_event_reasons is not None
        ]
        held = [
            mhz
            for reasons, mhz in loaded
            if mhz is not None and _held(reasons, mhz, clock, default_mhz)
        ]
        loaded_count += len(loaded)
        if held and len(held) >= HELD_TEST_SHARE * len(loaded):
            held_mhz += held
            held_tests.append(test.name)
    if len(held_mhz) < MIN_HELD_SAMPLES:
        return None
    return ClockHold(
        clock,
        float(statistics.median(held_mhz)),
        default_mhz,
        len(held_mhz),
        loaded_count,
        tuple(held_tests),
    )


def _held(reasons: int, mhz: float, clock: Clock, default_mhz: float) -> bool:
    """A setting held this sample's clock: its reason named, nothing else holding the clock, and
    the clock below HELD_BELOW of its default."""
    setting = bool(reasons & CLOCK_SETTING_BIT) and not reasons & _OTHER_HOLDS[clock]
    return setting and mhz < HELD_BELOW * default_mhz


def _clock_mhz(sample: TelemetrySample, clock: Clock) -> float | None:
    return sample.sm_clock_mhz if clock == "sm" else sample.memory_clock_mhz


_RESETS: dict[Clock, str] = {
    "sm": "nvidia-smi -i {i} -rgc; nvidia-smi -i {i} -rac",
    "memory": "nvidia-smi -i {i} -rmc; nvidia-smi -i {i} -rac",
}
_NAMES: dict[Clock, str] = {"sm": "SM", "memory": "memory"}


def reset_command(clock: Clock, index: int) -> str:
    return _RESETS[clock].format(i=index)


def describe(hold: ClockHold) -> str:
    """The hold in a few words: SM clock at 1000 MHz (default 1980 MHz)."""
    return f"{_NAMES[hold.clock]} clock at {hold.held_mhz:g} MHz (default {hold.default_mhz:g} MHz)"


def clock_hold_findings(record: RunRecord) -> list[Finding]:
    """One finding per clock a setting held down under load: what the tests measured at that
    clock is the setting's, so the performance they show is not the card's (causes.py tells its
    deficits as this finding's)."""
    return [
        Finding(
            "clocks_held",
            "major",
            hold.clock,
            f"a clock setting (locked or application clocks) held the {describe(hold)} under "
            f"load in {', '.join(hold.tests)} ({hold.held_samples} of {hold.loaded_samples} "
            "loaded samples): what was measured at that clock is the setting's, not the card's; "
            "reset with "
            f"`{reset_command(hold.clock, record.identity.index)}` and grade again",
            value=f"{hold.held_mhz:g} MHz",
            reference=f"{hold.default_mhz:g} MHz",
            measure=round(hold.held_mhz / hold.default_mhz, 4),
            detail="NVML clocks-event reason 'application clocks setting' with the clock below "
            f"{HELD_BELOW:.0%} of its default",
        )
        for hold in clock_holds(record)
    ]
