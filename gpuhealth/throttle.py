"""NVML clocks-event (throttle) reasons: the bits a telemetry sample's mask holds, and their names.

Shared vocabulary: the measurement records the mask, the judgement and the report read it.
"""

from __future__ import annotations

# NVML clocks-event (throttle) reason bits, nvml.h nvmlClocksEventReason*.
CLOCKS_EVENT_REASONS: dict[int, str] = {
    0x1: "idle",
    0x2: "application clocks setting",
    0x4: "software power cap",
    0x8: "hardware slowdown",
    0x10: "sync boost",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake slowdown",
    0x100: "display clock setting",
}
CLOCK_SETTING_BIT = 0x2  # application clocks; locked clocks too (gpuhealth/judge/clockhold.py)
THERMAL_REASON_BITS = 0x20 | 0x40
SW_POWER_CAP_BIT = 0x4
HARDWARE_REASON_BITS = 0x8 | 0x80  # hardware slowdown, hardware power brake
POWER_REASON_BITS = 0x4 | 0x80
SLOWDOWN_REASON_BITS = 0x8 | 0x20 | 0x40 | 0x80


def reason_names(mask: int) -> list[str]:
    return [name for bit, name in CLOCKS_EVENT_REASONS.items() if mask & bit]
