"""The simulated card's physics: power, clocks and temperature on a virtual clock.

Temperature (GPU and memory each) = ambient + a fast and a slow first-order lag driven by board
power, fitted to measured soak telemetry (bench/calibrate_sim.py). Clocks drop when a load would
draw more than the power limit (power ~ clock^3 under DVFS) and halve at the slowdown threshold,
with the matching NVML clocks-event reason bits. A clock setting (locked or application clocks)
caps the SM clock, with the "application clocks setting" reason where the cap is what holds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpuhealth.measure.backends.simcards import SimModel, SimRig
from gpuhealth.throttle import CLOCK_SETTING_BIT, POWER_REASON_BITS

IDLE_SM_CLOCK_MHZ = 345.0
REASON_IDLE = 0x1
REASON_CLOCK_SETTING = CLOCK_SETTING_BIT
REASON_SW_POWER_CAP = 0x4
REASON_THERMAL = 0x20 | 0x40
REASON_HW_SLOWDOWN = 0x8
THERMAL_SLOWDOWN_FACTOR = 0.5


@dataclass(frozen=True)
class OperatingPoint:
    clock_factor: float
    power_w: float
    reasons: int


@dataclass
class _Lag:
    """One first-order thermal state: dx/dt = (r * P - x) / tau."""

    r_c_per_w: float
    tau_s: float
    value_c: float = 0.0

    def settle(self, power_w: float) -> None:
        self.value_c = self.r_c_per_w * power_w

    def advance(self, dt_s: float, power_w: float) -> None:
        decay = math.exp(-dt_s / self.tau_s)
        self.value_c = self.value_c * decay + self.r_c_per_w * power_w * (1.0 - decay)


class CardPhysics:
    def __init__(
        self,
        model: SimModel,
        resistance_scale: float,
        power_limit_w: float | None,
        rig: SimRig | None = None,
        memory_resistance_scale: float = 1.0,
        hardware_slowdown: bool = False,
        sm_clock_cap_mhz: float | None = None,
        memory_clock_held: bool = False,
    ) -> None:
        th = model.thermal
        self.model = model
        self.idle_w = model.power.idle_w
        self.limit_w = power_limit_w if power_limit_w is not None else model.power.default_limit_w
        self.slowdown_c = th.slowdown_c
        self._gpu_ambient_c = th.gpu_ambient_c
        self._memory_ambient_c = th.memory_ambient_c
        rig = rig or SimRig()
        self._gpu = (
            _Lag(th.gpu_r_fast_c_per_w * resistance_scale, th.gpu_tau_fast_s),
            _Lag(th.gpu_r_slow_c_per_w * resistance_scale * rig.heatsink_scale, th.gpu_tau_slow_s),
            _Lag(rig.chassis_c_per_w, rig.chassis_tau_s),
        )
        self._memory = (
            _Lag(th.memory_r_fast_c_per_w * memory_resistance_scale, th.memory_tau_fast_s),
            _Lag(th.memory_r_slow_c_per_w * memory_resistance_scale, th.memory_tau_slow_s),
        )
        for lag in (*self._gpu, *self._memory):
            lag.settle(self.idle_w)
        self.power_w = self.idle_w
        self.clock_factor = IDLE_SM_CLOCK_MHZ / model.device.max_sm_clock_mhz
        self.reasons = REASON_IDLE
        self.busy = False
        self._hardware_slowdown = hardware_slowdown
        max_mhz = model.device.max_sm_clock_mhz
        self._cap_factor = 1.0 if sm_clock_cap_mhz is None else min(1.0, sm_clock_cap_mhz / max_mhz)
        self._memory_clock_held = memory_clock_held

    @property
    def gpu_temperature_c(self) -> float:
        return self._gpu_ambient_c + sum(lag.value_c for lag in self._gpu)

    @property
    def memory_temperature_c(self) -> float:
        return self._memory_ambient_c + sum(lag.value_c for lag in self._memory)

    def operating_point(self, demand_w: float | None) -> OperatingPoint:
        """Clock factor, power and reasons for a load that would draw demand_w at full clock."""
        if demand_w is None:
            return OperatingPoint(
                IDLE_SM_CLOCK_MHZ / self.model.device.max_sm_clock_mhz, self.idle_w, REASON_IDLE
            )
        factor, reasons = 1.0, 0
        dynamic_w = max(demand_w - self.idle_w, 1e-9)
        if demand_w > self.limit_w:
            factor = max(0.05, (max(self.limit_w - self.idle_w, 1.0) / dynamic_w) ** (1 / 3))
            reasons |= REASON_SW_POWER_CAP
        if self._cap_factor < factor:  # the setting, not the power limit, holds the clock
            factor, reasons = self._cap_factor, REASON_CLOCK_SETTING
        if self._memory_clock_held:
            reasons |= REASON_CLOCK_SETTING
        if self.gpu_temperature_c >= self.slowdown_c:
            factor *= THERMAL_SLOWDOWN_FACTOR
            reasons |= REASON_THERMAL
        if self._hardware_slowdown:
            reasons |= REASON_HW_SLOWDOWN
        return OperatingPoint(factor, self.idle_w + dynamic_w * factor**3, reasons)

    def relative_speed(self, demand_w: float) -> float:
        """Throughput of a load now, relative to a healthy card at its default power limit."""
        healthy_limit = self.model.power.default_limit_w
        healthy = 1.0
        dynamic_w = max(demand_w - self.idle_w, 1e-9)
        if demand_w > healthy_limit:
            healthy = (max(healthy_limit - self.idle_w, 1.0) / dynamic_w) ** (1 / 3)
        return self.operating_point(demand_w).clock_factor / healthy

    def advance(self, dt_s: float, demand_w: float | None) -> None:
        point = self.operating_point(demand_w)
        self.power_w, self.clock_factor, self.reasons = (
            point.power_w,
            point.clock_factor,
            point.reasons,
        )
        self.busy = demand_w is not None
        for lag in (*self._gpu, *self._memory):
            lag.advance(dt_s, point.power_w)

    @property
    def power_capped(self) -> bool:
        return bool(self.reasons & POWER_REASON_BITS)
