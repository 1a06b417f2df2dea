"""The simulated card: a model of a GPU on a virtual clock, with injectable faults.

Not a stub. Every primitive of the backend contract does its real data work on scaled-down host
buffers, so that the stress tests' verification, detection and address-reporting code runs for real:
- each device buffer keeps a dense host window (its first WINDOW_BYTES); beyond the window its
  content is described (a constant, a memtest pattern, a seeded uniform fill) and faulty cells
  there are evaluated one by one, so a stuck bit anywhere in an 80 GB buffer is found at its
  address;
- matrix products compute a corner block of the result (GEMM_BLOCK rows × cols) from the exact
  input values; checks compare those blocks;
- time is the model's: work / (rate × clock factor) with seeded noise, and the thermal model
  (simphysics.py) advances with the power each kernel draws; telemetry is sampled on that clock.
"""

from __future__ import annotations

import functools
import itertools
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from gpuhealth.clocktext import clocks_text
from gpuhealth.errors import DeviceError, DeviceLost, DeviceOutOfMemory
from gpuhealth.measure.backends.base import (
    FMA_CHAINS,
    MEMORY_CLEAR_STEP,
    MMA_ACCUMULATORS,
    STREAM_BYTES_PER_ELEMENT,
    CloseCheck,
    DeviceBuffer,
    DeviceInfo,
    GemmDtype,
    HostBuffer,
    LinkCopy,
    MemCheck,
    StreamOp,
    fma_start,
    fp32_lanes_per_sm,
)
from gpuhealth.measure.backends.simcards import SimCard
from gpuhealth.measure.backends.simphysics import CardPhysics
from gpuhealth.models import (
    CardIdentity,
    HealthCounters,
    NvLinkReading,
    ProcessInfo,
    RowRemapHistogram,
    SettingReading,
    TelemetrySample,
    XidEvent,
)
from gpuhealth.patterns import MemPattern, expected_words, word_digest
from gpuhealth.pcieerrors import PCIE_ERROR_COUNTERS
from gpuhealth.pcielink import link_gbs

WINDOW_BYTES = 1 << 20  # dense host window of a large buffer (the soak reads it ~1000 times)
DENSE_BYTES = 16 << 20  # buffers up to this size are held whole
GEMM_BLOCK = (8, 64)
LOST_AFTER_KERNELS = 3  # lost_at / hang_at: the card falls off the bus / hangs at this kernel
HANG_SLEEP_S = 3600.0
ALLOC_ALIGN = 2 << 20
SIM_FMA_STEPS = 256  # the sim evaluates this many steps of the map; threads are only compared
SUSTAINED_AFTER_S = 0.25  # FP16 GEMMs back to back for longer than this run at the capped rate
SUSTAINED_GAP_S = 0.02  # a pause this long lets power management release the cap
# NVML reports whole °C of a sensor that wanders by a fraction of a degree: a real H100 at a steady
# 660 W reads 61 and 60 about 3:1 (soak-telemetry-h100-sxm5-80gb-long.csv). The sim's readings
# get that much noise before rounding, from their own generator (the timing noise is unchanged).
SENSOR_NOISE_C = 0.3
STALE_WORD = 0xC0FFEE11  # what a word the clear could not overwrite reads back (faults.uncleared)
STREAM_FLIP_BIT = 12  # the float32 bit a stream kernel pinned by wrong_results.index writes wrong
# Issue 14: NVLink 4 runs 25.78125 GB/s per direction per link (H100 SXM: 18 links, 900 GB/s
# both ways together); NVML's common link speed field gives it in MB/s.
NVLINK4_MBPS = 25781.0
HOST_BASE_ADDRESS = 0x7F00_0000_0000  # pinned host buffers: addresses of their own
PCIE_COPY_W_ABOVE_IDLE = 30.0  # power a copy draws above idle (DMA engines, link, memory)

F32 = npt.NDArray[np.float32]
_VERSIONS = itertools.count(1)  # content versions, unique across buffers (product cache keys)


@dataclass(frozen=True)
class ConstTail:
    value: float


@dataclass(frozen=True)
class PatternTail:
    pattern: MemPattern


@dataclass(frozen=True)
class UniformTail:
    seed: int
    low: float
    high: float


Tail = ConstTail | PatternTail | UniformTail | None


@dataclass(eq=False)
class SimHostBuffer:
    """Pinned host memory: like a device buffer, a dense window of its first bytes."""

    address: int
    nbytes: int
    data: npt.NDArray[np.uint8]


@dataclass
class SimBuffer:
    """A device allocation: a dense window plus a description of what lies beyond it."""

    address: int
    nbytes: int
    window: npt.NDArray[np.uint8]
    tail: Tail = None  # what lies beyond the window
    block: npt.NDArray[np.float64] | None = None  # corner block of a matrix product
    block_dtype: str = "fp32"
    version: int = field(default_factory=lambda: next(_VERSIONS))
    slices: dict[tuple[object, ...], npt.NDArray[np.float64]] = field(default_factory=dict)

    def touch(self) -> None:
        self.version = next(_VERSIONS)
        self.slices.clear()
        self.block = None

    @property
    def window_words(self) -> npt.NDArray[np.uint32]:
        usable = self.window.size - self.window.size % 4
        words: npt.NDArray[np.uint32] = self.window[:usable].view(np.uint32)
        return words

    @property
    def window_f32(self) -> F32:
        values: F32 = self.window_words.view(np.float32)
        return values


def _uniform(
    seed: int, index: npt.NDArray[np.uint64], low: float, high: float
) -> npt.NDArray[np.float64]:
    """Counter-based uniform values: the same index always gives the same value."""
    with np.errstate(over="ignore"):
        x = (index * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(seed * 0xBF58476D1CE4E5B9 % 2**64)
        x ^= x >> np.uint64(31)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(29)
    unit: npt.NDArray[np.float64] = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return low + (high - low) * unit


@functools.cache
def _fma_chain_values(c: float) -> tuple[float, ...]:
    x = np.array([fma_start(j) for j in range(FMA_CHAINS)], dtype=np.float32)
    c32 = np.float32(c)
    for _ in range(SIM_FMA_STEPS):
        x = x * x + c32
    return tuple(float(v) for v in x)


class SimBackend:
    """A simulated card. Satisfies gpuhealth.measure.backends.base.Backend."""

    name = "sim"

    def __init__(self, card: SimCard, index: int = 0) -> None:
        self.card = card
        self.index = index
        self._model = card.model
        self._faults = card.faults
        self._rng = np.random.default_rng(card.seed)
        self._sensor_rng = np.random.default_rng([card.seed, 1])
        self._link_rng = np.random.default_rng([card.seed, 2])  # PCIe copies (issue 14)
        self._physics = CardPhysics(
            card.model,
            card.faults.thermal_resistance_scale,
            card.faults.power_limit_w,
            card.rig,
            card.faults.memory_thermal_resistance_scale,
            card.faults.hardware_slowdown,
            card.faults.settings.sm_clock_cap_mhz,
            self._memory_clock_mhz() < card.model.device.max_memory_clock_mhz,
        )
        self._now_s = 0.0
        self._energy_j = 1000.0
        self._interval_s: float | None = None
        self._next_sample_s = 0.0
        self._samples: list[TelemetrySample] = []
        self._buffers: dict[int, SimBuffer] = {}
        self._test: str | None = None
        self._kernels_in_test = 0
        self._digests_in_test = 0  # word_hash calls in this test: the soak's iteration number
        self._lost = False
        self._xid: list[XidEvent] = []
        self._gemm_run_s = 0.0  # FP16 GEMM time back to back, ending at _gemm_run_end_s
        self._gemm_run_end_s = -1.0
        self._last_stream: tuple[object, ...] | None = None  # the last stream kernel, if repeatable
        self._ecc_corrected = 0
        self._ecc_uncorrected = 0
        self._pcie_replays = 0

        self._nvlink_crc = 0
        self._pcie_errors: dict[str, int] = {}  # each counter's rise so far
        self._host_buffers: dict[int, SimHostBuffer] = {}
        self._host_next = HOST_BASE_ADDRESS
        stuck: dict[int, list[tuple[int, int]]] = {}
        for s in card.faults.stuck_bits:
            stuck.setdefault(s.address, []).append((s.bit, s.value))
        flaky: dict[int, list[tuple[int, float]]] = {}
        for f in card.faults.flaky_bits:
            flaky.setdefault(f.address, []).append((f.bit, f.probability))
        self._stuck = stuck
        self._flaky = flaky
        self._fault_addresses = np.array(sorted(set(stuck) | set(flaky)), dtype=np.uint64)

    # --- identity, health, telemetry ------------------------------------------------------------
    def device_info(self) -> DeviceInfo:
        d = self._model.device
        major, minor = d.compute_capability
        return DeviceInfo(
            name=self.card.name,
            sm_count=self.card.sm_count,
            compute_capability=(major, minor),
            memory_total_bytes=d.memory_total_bytes,
            l2_bytes=d.l2_bytes,
            max_threads_per_sm=d.max_threads_per_sm,
            fp32_lanes_per_sm=fp32_lanes_per_sm(major, minor),
            max_sm_clock_mhz=d.max_sm_clock_mhz,
            max_memory_clock_mhz=d.max_memory_clock_mhz,
            memory_bus_width_bits=d.memory_bus_width_bits,
        )

    def identity(self) -> CardIdentity:
        self._check_alive("identity")
        i, d, power = self._model.identity, self._model.device, self._model.power
        said = self.card.identity  # what this card reports where it differs from its model
        identity = CardIdentity(
            name=self.card.name,
            backend="sim",
            index=self.index,
            uuid=self.card.uuid,
            serial=self.card.serial,
            board_part_number=said.board_part_number or i.board_part_number,
            vbios=said.vbios or i.vbios,
            inforom=i.inforom,
            pci_bus_id=i.pci_bus_id,
            driver_version=i.driver_version,
            cuda_driver_version=i.cuda_driver_version,
            memory_total_bytes=d.memory_total_bytes,
            sm_count=self.card.sm_count,
            compute_capability=f"{d.compute_capability[0]}.{d.compute_capability[1]}",
            memory_bus_width_bits=said.memory_bus_width_bits or d.memory_bus_width_bits,
            max_sm_clock_mhz=said.max_sm_clock_mhz or d.max_sm_clock_mhz,
            max_memory_clock_mhz=said.max_memory_clock_mhz or d.max_memory_clock_mhz,
            pcie_gen_max=d.pcie_gen_max,
            pcie_width_max=d.pcie_width_max,
            power_limit_default_w=said.power_limit_default_w or power.default_limit_w,
            sim_card=self._model.key,
            pci_device_id=said.pci_device_id or i.pci_device_id,
            pci_subsystem_id=said.pci_subsystem_id or i.pci_subsystem_id,
            power_limit_max_w=said.power_limit_max_w or power.max_limit_w,
            pcie_gen_gpu_max=d.pcie_gen_max,
        )
        return replace(identity, **self._unreadable(identity))

    def counters(self) -> HealthCounters:
        self._check_alive("counters")
        f, d, th = self._faults, self._model.device, self._model.thermal
        rows, pages, ecc = f.remapped_rows, f.retired_pages, f.ecc_enabled
        # errors during the run are in card memory (DRAM); SRAM ones are history from before it
        lifetime_uncorrected = self._ecc_uncorrected + f.sram_uncorrected
        counters = HealthCounters(
            ecc_enabled=ecc,
            ecc_volatile_corrected=self._ecc_corrected if ecc else None,
            ecc_volatile_uncorrected=self._ecc_uncorrected if ecc else None,
            ecc_aggregate_corrected=self._ecc_corrected if ecc else None,
            ecc_aggregate_uncorrected=lifetime_uncorrected if ecc else None,
            remapped_rows_correctable=rows.correctable,
            remapped_rows_uncorrectable=rows.uncorrectable,
            remapped_rows_pending=rows.pending,
            remapped_rows_failure=rows.failure,
            row_remap_histogram=self._histogram(),
            pcie_gen_current=f.pcie_gen or d.pcie_gen_max,
            pcie_width_current=f.pcie_width or d.pcie_width_max,
            pcie_replay_count=self._pcie_replays,
            power_limit_w=self._physics.limit_w,
            temperature_c=round(self._physics.gpu_temperature_c),
            temperature_slowdown_c=th.slowdown_c,
            temperature_shutdown_c=th.shutdown_c,
            memory_temperature_max_c=th.memory_max_c,
            energy_j=round(self._energy_j, 3),
            clocks_event_reasons=self._physics.reasons,
            ecc_pending_enabled=ecc if f.ecc_pending_enabled is None else f.ecc_pending_enabled,
            ecc_aggregate_uncorrected_dram=self._ecc_uncorrected if ecc else None,
            ecc_aggregate_uncorrected_sram=f.sram_uncorrected if ecc else None,
            retired_pages_sbe=pages.sbe if pages else None,
            retired_pages_dbe=pages.dbe if pages else None,
            retired_pages_pending=pages.pending if pages else None,
            **self._nvlink(),
            **self._pcie_error_counts(),
        )
        return replace(counters, **self._unreadable(counters))

    def settings(self) -> dict[str, SettingReading]:
        self._check_alive("settings")
        s, d = self._faults.settings, self._model.device
        default_clocks = clocks_text(d.max_sm_clock_mhz, d.max_memory_clock_mhz)
        app = s.applications_clocks_mhz
        locked = [
            f"{what} {low:g}-{high:g} MHz"
            for what, pair in (
                ("sm", s.locked_sm_clocks_mhz),
                ("memory", s.locked_memory_clocks_mhz),
            )
            if pair is not None
            for low, high in (pair,)
        ]
        values: dict[str, tuple[str | None, str | None]] = {
            "mig_mode": ("enabled" if s.mig_enabled else "disabled", None),
            "compute_mode": (s.compute_mode, None),
            "applications_clocks": (
                clocks_text(*app) if app else default_clocks,
                default_clocks,
            ),
            "locked_clocks": (", ".join(locked) or "none", None),
            "persistence_mode": ("enabled" if s.persistence_mode else "disabled", None),
            "confidential_computing": (
                None if s.confidential_computing == "not supported" else s.confidential_computing,
                None,
            ),
        }
        readings: dict[str, SettingReading] = {}
        for key, (value, default) in values.items():
            if key in self._faults.unreadable:
                readings[key] = SettingReading(key, "unreadable", detail="sim: the query failed")
            elif value is None:
                readings[key] = SettingReading(key, "not_supported")
            else:
                readings[key] = SettingReading(key, "read", value, default)
        return readings

    def _nvlink(self) -> dict[str, Any]:
        """NVLink as NVML would report it: none, unreadable, or every link with its state."""
        f = self._faults
        if "nvlink_state" in f.unreadable:
            return {"nvlink_status": "unreadable"}
        if f.nvlink_links == 0:
            return {"nvlink_status": "none", "nvlink": ()}
        active = [link for link in range(f.nvlink_links) if link not in f.nvlink_down]
        links = tuple(
            NvLinkReading(
                link=link,
                active=link in active,
                version=4,
                replay_errors=0,
                recovery_errors=0,
                crc_flit_errors=self._nvlink_crc if active and link == active[0] else 0,
                crc_data_errors=0,
            )
            for link in range(f.nvlink_links)
        )
        return {"nvlink_status": "read", "nvlink": links, "nvlink_speed_mbps": NVLINK4_MBPS}

    def _pcie_error_counts(self) -> dict[str, Any]:
        """The PCIe error counters as NVML would report them: each count (0 on a healthy link),
        none where the driver does not offer them, or a failed query."""
        f = self._faults
        if "pcie_errors" in f.unreadable:  # _unreadable then sets pcie_errors to None
            return {"pcie_errors_status": "unreadable"}
        if not f.pcie_errors_supported:
            return {
                "pcie_errors_status": "not_supported",
                "pcie_errors": dict.fromkeys(PCIE_ERROR_COUNTERS),
            }
        counts = {name: self._pcie_errors.get(name, 0) for name in PCIE_ERROR_COUNTERS}
        return {"pcie_errors_status": "read", "pcie_errors": counts}

    def _unreadable(
        self, reading: HealthCounters | TelemetrySample | CardIdentity
    ) -> dict[str, Any]:
        """The fields of a reading this card's driver answers "not supported", as None."""
        names = {f.name for f in fields(reading)}
        return {name: None for name in self._faults.unreadable if name in names}

    def _histogram(self) -> RowRemapHistogram:
        """Banks by spare rows left: each remapped row takes a spare from one bank."""
        rows = self._faults.remapped_rows
        used = rows.correctable + rows.uncorrectable
        banks = self._model.device.row_remap_banks
        none = 1 if rows.failure else 0
        touched = min(used, banks - none)
        return RowRemapHistogram(
            max=banks - touched - none, high=touched, partial=0, low=0, none=none
        )

    def telemetry(self) -> TelemetrySample:
        self._check_alive("telemetry")
        return self._sample()

    def _sample(self) -> TelemetrySample:
        p = self._physics
        mem_clock = self._memory_clock_mhz()
        gpu_noise, memory_noise = self._sensor_rng.normal(0.0, SENSOR_NOISE_C, 2)
        sample = TelemetrySample(
            t_s=round(self._now_s, 4),
            temperature_c=float(round(p.gpu_temperature_c + gpu_noise)),
            memory_temperature_c=float(round(p.memory_temperature_c + memory_noise)),
            power_w=round(p.power_w, 2),
            sm_clock_mhz=float(round(p.clock_factor * self._model.device.max_sm_clock_mhz)),
            memory_clock_mhz=mem_clock,
            utilization_pct=100.0 if p.busy else 0.0,
            clocks_event_reasons=p.reasons,
            energy_j=round(self._energy_j, 3),
        )
        return replace(sample, **self._unreadable(sample))

    def start_telemetry(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next_sample_s = self._now_s

    def drain_telemetry(self) -> tuple[TelemetrySample, ...]:
        samples, self._samples = tuple(self._samples), []
        return samples

    def stop_telemetry(self) -> None:
        self._interval_s = None

    def processes(self) -> tuple[ProcessInfo, ...]:
        other = self._other_process()
        if other is None:
            return ()
        return (ProcessInfo(other[0], other[1], other[2]),)

    def _other_process(self) -> tuple[int, str, int] | None:
        spec = self._faults.other_process
        if spec is None or spec is False:
            return None
        if spec is True:
            return (4242, "python3", 2048 << 20)
        return (spec.pid, spec.name, spec.used_memory_mib << 20)

    def xid_events(self) -> tuple[XidEvent, ...]:
        events, self._xid = tuple(self._xid), []
        return events

    def clock_s(self) -> float:
        return self._now_s

    def memory_free_bytes(self) -> int:
        d = self._model.device
        other = self._other_process()
        used = sum(b.nbytes for b in self._buffers.values()) + (other[2] if other else 0)
        return max(0, d.memory_total_bytes - d.memory_reserved_bytes - used)

    def close(self) -> None:
        self._buffers.clear()
        self._host_buffers.clear()

    def begin_test(self, name: str) -> None:
        self._check_alive("begin_test")
        self._nvlink_crc = self._faults.nvlink_errors  # they appear once the card is at work
        # as do PCIe errors
        self._pcie_errors = {str(k): n for k, n in self._faults.pcie_errors.items()}
        self._test = name
        self._kernels_in_test = 0
        self._digests_in_test = 0
        for xid in self._faults.xid:
            if xid.test == name:
                self._xid.append(XidEvent(self._now_s, xid.code, "injected by the sim card"))
        if name == "memtest":
            self._pcie_replays += self._faults.pcie_replays
        if name == "memtest" and self._faults.ecc_enabled:
            # ECC errors surface while memory is exercised.
            self._ecc_corrected += self._faults.ecc_corrected
            self._ecc_uncorrected += self._faults.ecc_uncorrected

    def end_test(self) -> None:
        self._test = None

    # --- the clock --------------------------------------------------------------------------------
    def _check_alive(self, what: str) -> None:
        if self._lost:
            raise DeviceLost(f"GPU {self.index} has fallen off the bus ({what} failed)")

    def _kernel(
        self, seconds: float, demand_w: float, rng: np.random.Generator | None = None
    ) -> float:
        """Run a kernel of nominal duration: noise (from rng, else the card's), clock advance,
        telemetry. Returns its time."""
        self._check_alive("kernel launch")
        self._kernels_in_test += 1
        lost_here = self._faults.lost_at is not None and self._faults.lost_at == self._test
        if lost_here and self._kernels_in_test >= LOST_AFTER_KERNELS:
            self._lost = True
            self._xid.append(XidEvent(self._now_s, 79, "GPU has fallen off the bus"))
            self._check_alive("kernel launch")
        hang_here = self._faults.hang_at is not None and self._faults.hang_at == self._test
        if hang_here and self._kernels_in_test >= LOST_AFTER_KERNELS:
            while True:  # a kernel that never returns: only killing the process ends it
                time.sleep(HANG_SLEEP_S)
        noise = self._model.performance.noise_rel
        if rng is None:  # the pcie test's kernels draw from their own generator (link_copy)
            rng = self._link_rng if self._test == "pcie" else self._rng
        draw = rng.standard_normal()
        seconds *= max(0.5, 1.0 + noise * float(draw))
        self._advance(seconds, demand_w)
        return seconds

    def _advance(self, seconds: float, demand_w: float | None) -> None:
        if self.card.wall_time_scale > 0 and seconds > 0:
            time.sleep(seconds * self.card.wall_time_scale)
        end = self._now_s + seconds
        while True:
            if self._interval_s is not None and self._next_sample_s <= self._now_s:
                self._samples.append(self._sample())
                self._next_sample_s += self._interval_s
                continue
            if self._now_s >= end:
                return
            step_end = end if self._interval_s is None else min(end, self._next_sample_s)
            dt = step_end - self._now_s
            self._physics.advance(dt, demand_w)
            self._energy_j += self._physics.power_w * dt
            self._now_s = step_end

    def sleep_s(self, seconds: float) -> None:
        """Idle time on the virtual clock (bit-fade waits)."""
        self._check_alive("sleep")
        self._advance(seconds, None)

    def _compute_speed(self, demand_w: float) -> float:
        # fewer working SMs than the model has: every compute rate scales with them
        speed = self._physics.relative_speed(demand_w) * self.card.working_sm_share
        return speed * (1.0 + self._faults.card_offset_rel)

    def _memory_speed(self) -> float:
        point = self._physics.operating_point(self._model.power.stream_w)
        thermal = 0.5 if point.reasons & 0x40 else 1.0
        held = self._memory_clock_mhz() / self._model.device.max_memory_clock_mhz
        scale = self._faults.bandwidth_scale * held
        return scale * thermal * (1.0 + self._faults.card_offset_rel)

    def _memory_clock_mhz(self) -> float:
        """The memory clock: the card's maximum, or lower where a clock setting holds it."""
        cap = self._faults.settings.memory_clock_cap_mhz
        own = self._model.device.max_memory_clock_mhz
        return own if cap is None else min(own, cap)

    # --- memory -----------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> DeviceBuffer:
        self._check_alive("alloc")
        if nbytes <= 0:
            raise DeviceError(f"alloc: expected a positive size, got {nbytes}")
        if nbytes > self.memory_free_bytes():
            raise DeviceOutOfMemory(
                f"out of memory allocating {nbytes / 2**30:.2f} GiB "
                f"({self.memory_free_bytes() / 2**30:.2f} GiB free)"
            )
        address = 0
        for start in sorted(self._buffers):
            if address + nbytes <= start:
                break
            end = start + self._buffers[start].nbytes
            address = max(address, (end + ALLOC_ALIGN - 1) // ALLOC_ALIGN * ALLOC_ALIGN)
        window = np.zeros(nbytes if nbytes <= DENSE_BYTES else WINDOW_BYTES, dtype=np.uint8)
        buffer = SimBuffer(address=address, nbytes=nbytes, window=window)
        self._buffers[address] = buffer
        return buffer

    def free(self, buffer: DeviceBuffer) -> None:
        self._buffers.pop(buffer.address, None)

    def _buf(self, buffer: DeviceBuffer) -> SimBuffer:
        self._check_alive("memory access")
        if not isinstance(buffer, SimBuffer) or buffer.address not in self._buffers:
            raise DeviceError("sim: not a live buffer of this card")
        return buffer

    def upload(self, buffer: DeviceBuffer, host: npt.NDArray[np.generic]) -> None:
        buf = self._buf(buffer)
        raw = np.ascontiguousarray(host).view(np.uint8).ravel()
        if raw.size > buf.window.size:
            raise DeviceError(f"sim: upload of {raw.size} bytes exceeds the simulated window")
        buf.touch()
        buf.window[: raw.size] = raw
        buf.tail = None

    def download(
        self, buffer: DeviceBuffer, dtype: type[np.generic], count: int, offset: int = 0
    ) -> npt.NDArray[np.generic]:
        buf = self._buf(buffer)
        itemsize = np.dtype(dtype).itemsize
        start, stop = offset * itemsize, (offset + count) * itemsize
        if stop > buf.window.size:
            raise DeviceError("sim: download beyond the simulated window")
        raw: npt.NDArray[np.generic] = self._read_window(buf).view(np.uint8)[start:stop]
        values: npt.NDArray[np.generic] = raw.view(dtype).copy()
        return values

    def _read_window(self, buf: SimBuffer) -> npt.NDArray[np.uint32]:
        """The window's words as a read would return them: stuck bits forced, flaky bits flipped.

        Without a fault in the window this is a read-only view (no copy: the soak's large
        arrays are read thousands of times); callers never write into what it returns."""
        words: npt.NDArray[np.uint32] = buf.window_words
        lo, hi = buf.address, buf.address + words.size * 4
        faults = self._fault_addresses[(self._fault_addresses >= lo) & (self._fault_addresses < hi)]
        if faults.size == 0:
            view: npt.NDArray[np.uint32] = words.view()
            view.flags.writeable = False
            return view
        words = words.copy()
        for address in faults:
            i = (int(address) - lo) // 4
            words[i] = self._faulty(int(address), int(words[i]))
        return words

    def _window_faults(self, buf: SimBuffer) -> bool:
        """Whether a read of the buffer's window meets an injected fault (flaky: not repeatable)."""
        lo, hi = buf.address, buf.address + buf.window.size
        f = self._fault_addresses
        return bool(np.any((f >= lo) & (f < hi))) if f.size else False

    def _faulty(self, address: int, stored: int) -> int:
        value = stored
        for bit, level in self._stuck.get(address, ()):
            value = value | (1 << bit) if level else value & ~(1 << bit)
        for bit, probability in self._flaky.get(address, ()):
            if self._rng.random() < probability:
                value ^= 1 << bit
        return value & 0xFFFFFFFF

    def _tail_faults(self, buf: SimBuffer, n_words: int) -> npt.NDArray[np.uint64]:
        """Faulty word addresses inside the buffer's first n_words but beyond its window."""
        lo = buf.address + buf.window_words.size * 4
        hi = buf.address + n_words * 4
        f = self._fault_addresses
        return f[(f >= lo) & (f < hi)]

    def fill_f32(self, buffer: DeviceBuffer, n: int, value: float) -> None:
        buf = self._buf(buffer)
        buf.touch()
        buf.window_f32[:] = np.float32(value)
        buf.tail = ConstTail(float(np.float32(value)))
        self._kernel(4 * n / (self._model.performance.copy_gbs * 1e9), self._model.power.stream_w)

    def fill_uniform(
        self, buffer: DeviceBuffer, dtype: GemmDtype, n: int, seed: int, low: float, high: float
    ) -> None:
        buf = self._buf(buffer)
        buf.touch()
        buf.tail = UniformTail(seed, low, high)
        itemsize = 2 if dtype == "fp16" else 4
        self._kernel(
            itemsize * n / (self._model.performance.copy_gbs * 1e9), self._model.power.stream_w
        )

    # --- stream kernels -------------------------------------------------------------------------
    def stream(
        self,
        op: StreamOp,
        a: DeviceBuffer,
        b: DeviceBuffer,
        c: DeviceBuffer,
        scalar: float,
        n: int,
        repeats: int = 1,
    ) -> float:
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        bufs = [self._buf(x) for x in (a, b, c)]
        perf = self._model.performance
        rate_gbs = {
            "copy": perf.copy_gbs,
            "scale": perf.scale_gbs,
            "add": perf.add_gbs,
            "triad": perf.triad_gbs,
            "read": perf.read_gbs,
        }[op] * self._memory_speed()
        # A kernel repeated on unchanged buffers stores what its output already holds (the soak's
        # memory phase: ~1 ms triads for a minute); its data work is skipped, its time is not.
        key = (op, float(scalar), n, *((x.address, x.version) for x in bufs))
        if key != self._last_stream:
            self._apply_stream(op, bufs[0], bufs[1], bufs[2], np.float32(scalar), n)
            self._stream_fault(op, bufs[0], bufs[1], bufs[2], n)
            repeatable = len({id(x) for x in bufs}) == 3 and not any(
                self._window_faults(x) for x in bufs
            )
            self._last_stream = (
                (op, float(scalar), n, *((x.address, x.version) for x in bufs))
                if repeatable
                else None
            )
        seconds = STREAM_BYTES_PER_ELEMENT[op] * n * repeats / (rate_gbs * 1e9)
        return self._kernel(seconds, self._model.power.stream_w)

    def _stream_fault(self, op: str, a: SimBuffer, b: SimBuffer, c: SimBuffer, n: int) -> None:
        """wrong_results with an index: the kernel writes that element of its output wrong."""
        wrong = self._faults.wrong_results
        if op == "read" or wrong is None or wrong.index is None or wrong.index >= n:
            return
        if not self._wrong_here("stream"):
            return
        out = {"copy": c, "scale": b, "add": c}.get(op, a)
        words = out.window_words
        if wrong.index < words.size:
            # one flipped mantissa bit (2^-11 relative, 49x the bandwidth check's tolerance):
            # it stays one wrong element however many kernels read it, not a growing sum
            words[wrong.index] ^= np.uint32(1 << STREAM_FLIP_BIT)
            out.touch()

    def _apply_stream(
        self, op: str, a: SimBuffer, b: SimBuffer, c: SimBuffer, s: np.float32, n: int
    ) -> None:
        def values(buf: SimBuffer) -> tuple[F32, np.float32]:
            window = self._read_window(buf).view(np.float32)[: min(n, buf.window_f32.size)]
            tail = buf.tail.value if isinstance(buf.tail, ConstTail) else float("nan")
            return window, np.float32(tail)

        def store(buf: SimBuffer, window: F32, tail: np.float32) -> None:
            buf.touch()
            buf.window_f32[: window.size] = window
            buf.tail = ConstTail(float(tail))

        if op == "read":
            window, tail = values(a)
            total = float(window.astype(np.float64).sum()) + float(tail) * (n - window.size)
            c.touch()
            c.window_f32[:] = 0.0
            c.window_f32[0] = np.float32(total)
            c.tail = ConstTail(0.0)
            return
        (wa, ta), (wb, tb), (wc, tc) = values(a), values(b), values(c)
        with np.errstate(invalid="ignore", over="ignore"):
            if op == "copy":
                store(c, wa.copy(), ta)
            elif op == "scale":
                store(b, s * wc, s * tc)
            elif op == "add":
                store(c, wa + wb, ta + tb)
            else:
                store(a, wb + s * wc, tb + s * tc)

    def count_f32_not_close(
        self, buffer: DeviceBuffer, n: int, expected: float, rel_tol: float
    ) -> int:
        buf = self._buf(buffer)
        window = self._read_window(buf).view(np.float32)[: min(n, buf.window_f32.size)]
        exp = np.float32(expected)
        tol = abs(float(exp)) * rel_tol
        with np.errstate(invalid="ignore"):
            bad = int(np.count_nonzero(~(np.abs(window - exp) <= tol)))
        tail_value = buf.tail.value if isinstance(buf.tail, ConstTail) else None
        tail_n = max(0, n - window.size)
        if tail_n and (tail_value is None or not abs(float(tail_value) - float(exp)) <= tol):
            return bad + tail_n
        for address in self._tail_faults(buf, n):
            stored = int(np.array([tail_value], dtype=np.float32).view(np.uint32)[0])
            actual = np.array([self._faulty(int(address), stored)], np.uint32).view(np.float32)[0]
            if not abs(float(actual) - float(exp)) <= tol:
                bad += 1
        self._kernel(4 * n / (self._model.performance.read_gbs * 1e9), self._model.power.stream_w)
        return bad

    # --- memtest --------------------------------------------------------------------------------
    def memtest_write(self, buffer: DeviceBuffer, n_words: int, pattern: MemPattern) -> float:
        buf = self._buf(buffer)
        self._write_pattern(buf, n_words, pattern)
        return self._kernel(4 * n_words / self._memtest_rate(), self._model.power.memtest_w)

    def _write_pattern(self, buf: SimBuffer, n_words: int, pattern: MemPattern) -> None:
        count = min(n_words, buf.window_words.size)
        buf.touch()
        buf.window_words[:count] = expected_words(
            pattern, np.arange(count, dtype=np.uint64), buf.address
        )
        buf.tail = PatternTail(pattern)
        lo, hi = self._uncleared_in(buf, count)
        if hi > lo:  # the clear's writes are lost there: stale data stays
            buf.window_words[lo:hi] = STALE_WORD

    def _uncleared_in(self, buf: SimBuffer, n_words: int) -> tuple[int, int]:
        """The word range [lo, hi) of the buffer's first n_words that the clear cannot write."""
        region = self._faults.uncleared
        if region is None or self._test != MEMORY_CLEAR_STEP:
            return 0, 0
        lo = max(0, (region.address - buf.address) // 4)
        hi = min(n_words, (region.address + region.nbytes - buf.address) // 4)
        return lo, max(lo, hi)

    def _memtest_rate(self) -> float:
        return self._model.performance.memtest_gbs * 1e9 * self._memory_speed()

    def memtest_check(
        self,
        buffer: DeviceBuffer,
        n_words: int,
        pattern: MemPattern,
        rewrite: MemPattern | None,
        max_report: int,
    ) -> MemCheck:
        buf = self._buf(buffer)
        count = min(n_words, buf.window_words.size)
        actual = self._read_window(buf)[:count]
        expected = expected_words(pattern, np.arange(count, dtype=np.uint64), buf.address)
        bad = np.flatnonzero(actual != expected)
        first = [
            (buf.address + 4 * int(i), int(expected[i]), int(actual[i])) for i in bad[:max_report]
        ]
        mismatches = int(bad.size)
        stored_pattern = buf.tail.pattern if isinstance(buf.tail, PatternTail) else None
        for address in self._tail_faults(buf, n_words):
            index = np.array([(int(address) - buf.address) // 4], dtype=np.uint64)
            want = int(expected_words(pattern, index, buf.address)[0])
            if stored_pattern is not None:
                stored = int(expected_words(stored_pattern, index, buf.address)[0])
            else:
                stored = want
            got = self._faulty(int(address), stored)
            if got != want:
                mismatches += 1
                if len(first) < max_report:
                    first.append((int(address), want, got))
        window = buf.window_words.size
        lo, hi = self._uncleared_in(buf, n_words)
        stale = range(max(lo, window), hi)  # beyond the window: counted, not held
        mismatches += len(stale)  # the clear writes zeros: a stale word never matches
        shown = np.array(stale[: max(0, max_report - len(first))], dtype=np.uint64)
        for i, want in zip(shown, expected_words(pattern, shown, buf.address), strict=True):
            first.append((buf.address + 4 * int(i), int(want), STALE_WORD))
        if rewrite is not None:
            self._write_pattern(buf, n_words, rewrite)
        moved = 4 * n_words * (2 if rewrite is not None else 1)
        seconds = self._kernel(moved / self._memtest_rate(), self._model.power.memtest_w)
        return MemCheck(seconds, mismatches, tuple(first))

    # --- compute ---------------------------------------------------------------------------------
    def _wrong_now(self, launches: int = 1) -> bool:
        """Whether any of `launches` launches hit the faulty unit."""
        wrong = self._faults.wrong_results
        return wrong is not None and self._rng.random() < 1.0 - (1.0 - wrong.rate) ** launches

    def _wrong_here(self, kind: str, launches: int = 1) -> bool:
        """Whether a launch of a `kind` kernel ("thread": FMA/MMA loops, "product": GEMMs,
        "stream": STREAM kernels) hits the faulty unit, given where wrong_results pins it."""
        wrong = self._faults.wrong_results
        if wrong is None or (wrong.test is not None and wrong.test != self._test):
            return False
        if wrong.iteration is not None and wrong.iteration != self._digests_in_test:
            return False
        if wrong.index is not None:
            pinned = "stream"
        elif wrong.element is not None:
            pinned = "product"
        elif wrong.lane is not None:
            pinned = "thread"
        else:  # not pinned: any compute kernel (never a stream kernel), as before
            return kind != "stream" and self._wrong_now(launches)
        return pinned == kind and self._wrong_now(launches)

    def _bad_thread(self, blocks: int, threads: int) -> int:
        """The thread that computes wrong: on the faulty SM, at the pinned lane or at random."""
        wrong = self._faults.wrong_results
        lane = wrong.lane if wrong is not None else None
        pick = lane % threads if lane is not None else int(self._rng.integers(threads))
        return self._bad_block(blocks) * threads + pick

    def _write_smids(self, smids: SimBuffer, blocks: int) -> None:
        smids.touch()
        ids = np.arange(blocks, dtype=np.uint32) % np.uint32(self.card.sm_count)
        smids.window_words[: min(blocks, smids.window_words.size)] = ids[: smids.window_words.size]
        smids.tail = None

    def _bad_block(self, blocks: int) -> int:
        """A block that ran on the faulty SM (blocks are dealt round-robin to SMs)."""
        wrong = self._faults.wrong_results
        sm = (wrong.sm if wrong else 0) % self.card.sm_count
        return sm if sm < blocks else 0

    def fma_loop(
        self,
        out: DeviceBuffer,
        smids: DeviceBuffer,
        blocks: int,
        threads: int,
        iterations: int,
        c: float,
    ) -> float:
        o, s = self._buf(out), self._buf(smids)
        total = blocks * threads * FMA_CHAINS
        if total * 4 > o.window.size:
            raise DeviceError("sim: fma output larger than the simulated window")
        o.touch()
        values = np.tile(np.array(_fma_chain_values(c), dtype=np.float32), blocks * threads)
        if self._wrong_here("thread"):
            thread = self._bad_thread(blocks, threads)
            values[thread * FMA_CHAINS] = np.nextafter(
                values[thread * FMA_CHAINS], np.float32(np.inf)
            )
        o.window_f32[:total] = values
        o.tail = None
        self._write_smids(s, blocks)
        flops = 2.0 * total * iterations
        rate = self._model.performance.fp32_tflops * 1e12 * self._faults.fp32_scale
        rate *= self._compute_speed(self._model.power.fma_w)
        return self._kernel(flops / rate, self._model.power.fma_w)

    def mma_loop(
        self,
        out: DeviceBuffer,
        smids: DeviceBuffer,
        blocks: int,
        threads: int,
        iterations: int,
    ) -> float:
        o, s = self._buf(out), self._buf(smids)
        total = blocks * threads
        if total * 4 > o.window.size:
            raise DeviceError("sim: mma output larger than the simulated window")
        o.touch()
        values = np.zeros(total, dtype=np.float32)
        if self._wrong_here("thread"):
            values[self._bad_thread(blocks, threads)] = 2.0
        o.window_f32[:total] = values
        o.tail = None
        self._write_smids(s, blocks)
        flops = blocks * (threads // 32) * iterations * MMA_ACCUMULATORS * 16 * 8 * 16 * 2.0
        rate = self._model.performance.mma_tflops * 1e12 * self._faults.fp16_scale
        rate *= self._compute_speed(self._model.power.mma_w)
        return self._kernel(flops / rate, self._model.power.mma_w)

    # --- matrices ---------------------------------------------------------------------------------
    def _matrix_slice(
        self, buf: SimBuffer, dtype: GemmDtype, n: int, rows: slice, cols: slice
    ) -> npt.NDArray[np.float64]:
        """Exact values of a sub-matrix of an n×n row-major matrix, as stored in dtype."""
        key = (dtype, n, rows.start, rows.stop, cols.start, cols.stop)
        cached = buf.slices.get(key)
        if cached is not None:
            return cached
        r = np.arange(rows.start, rows.stop, dtype=np.uint64)[:, None]
        k = np.arange(cols.start, cols.stop, dtype=np.uint64)[None, :]
        index = r * np.uint64(n) + k
        if isinstance(buf.tail, UniformTail):
            values = _uniform(buf.tail.seed, index, buf.tail.low, buf.tail.high)
        else:
            flat = self._read_window(buf).view(np.float16 if dtype == "fp16" else np.float32)
            if int(index.max()) >= flat.size:
                raise DeviceError("sim: matrix larger than the simulated window")
            values = flat[index.astype(np.int64)].astype(np.float64)
        stored = values.astype(np.float16 if dtype == "fp16" else np.float32).astype(np.float64)
        buf.slices[key] = stored
        return stored

    def _product_block(
        self, a: SimBuffer, b: SimBuffer, n: int, dtype: GemmDtype, b_transposed: bool
    ) -> npt.NDArray[np.float64]:
        key = ("product", b.address, b.version, n, dtype, b_transposed)
        cached = a.slices.get(key)  # a.slices is cleared when a changes; b.version is unique
        if cached is not None:
            return cached
        rows, cols = min(GEMM_BLOCK[0], n), min(GEMM_BLOCK[1], n)
        a_rows = self._matrix_slice(a, dtype, n, slice(0, rows), slice(0, n))
        if b_transposed:
            b_cols = self._matrix_slice(b, dtype, n, slice(0, cols), slice(0, n)).T
        else:
            b_cols = self._matrix_slice(b, dtype, n, slice(0, n), slice(0, cols))
        product: npt.NDArray[np.float64] = a_rows @ b_cols
        product.flags.writeable = False  # shared by every caller of this cache entry
        a.slices[key] = product
        return product

    def _store_product(
        self, c: SimBuffer, block: npt.NDArray[np.float64], dtype: GemmDtype, launches: int = 1
    ) -> None:
        c.touch()
        stored = block.astype(np.float16 if dtype == "fp16" else np.float32)
        if self._wrong_here("product", launches):
            wrong = self._faults.wrong_results
            pinned = wrong.element if wrong is not None else None
            if pinned is not None and pinned[0] < stored.shape[0] and pinned[1] < stored.shape[1]:
                i, j = pinned
            else:
                i, j = (int(self._rng.integers(d)) for d in stored.shape)
            stored[i, j] = stored[i, j] * 1.5 + 1.0
        c.block = stored.astype(np.float64)
        c.block_dtype = dtype
        c.tail = None

    def gemm_tensor(self, a: DeviceBuffer, bt: DeviceBuffer, c: DeviceBuffer, n: int) -> float:
        ab, bb, cb = self._buf(a), self._buf(bt), self._buf(c)
        block = self._product_block(ab, bb, n, "fp16", b_transposed=True)
        self._store_product(cb, block.astype(np.float32).astype(np.float64), "fp32")
        rate = self._model.performance.tensor_gemm_tflops * 1e12 * self._faults.fp16_scale
        rate *= self._compute_speed(self._model.power.tensor_gemm_w)
        return self._kernel(2.0 * n**3 / rate, self._model.power.tensor_gemm_w)

    def gemm_library(
        self,
        a: DeviceBuffer,
        b: DeviceBuffer,
        c: DeviceBuffer,
        n: int,
        dtype: GemmDtype,
        repeats: int = 1,
    ) -> float:
        ab, bb, cb = self._buf(a), self._buf(b), self._buf(c)
        p, perf = self._model.power, self._model.performance
        demand = p.gemm_fp16_w if dtype == "fp16" else p.gemm_fp32_w
        self._store_product(cb, self._product_block(ab, bb, n, dtype, False), dtype, repeats)
        if dtype == "fp16":
            # Power management settles within a fraction of a second: short bursts run at full
            # clock, sustained work at the power cap (760 vs 647 TFLOP/s measured on an H200).
            # "Sustained" counts GEMM time back to back across calls: the soak's 0.1 s chunks.
            if self._now_s - self._gemm_run_end_s > SUSTAINED_GAP_S:
                self._gemm_run_s = 0.0
            burst_s = 2.0 * n**3 * repeats / (perf.gemm_fp16_tflops * 1e12)
            rate = (
                perf.gemm_fp16_tflops
                if self._gemm_run_s + burst_s < SUSTAINED_AFTER_S
                else (perf.gemm_fp16_sustained_tflops)
            )
            rate *= 1e12 * self._faults.fp16_scale
        else:
            rate = perf.gemm_fp32_tflops * 1e12 * self._faults.fp32_scale
        rate *= self._compute_speed(demand)
        seconds = self._kernel(2.0 * n**3 * repeats / rate, demand)
        if dtype == "fp16":
            self._gemm_run_s += seconds
            self._gemm_run_end_s = self._now_s
        return seconds

    def gemm_reference_f64(
        self,
        a: DeviceBuffer,
        b: DeviceBuffer,
        out: DeviceBuffer,
        n: int,
        dtype: GemmDtype,
        b_transposed: bool,
    ) -> None:
        ab, bb, ob = self._buf(a), self._buf(b), self._buf(out)
        ob.touch()
        ob.block = self._product_block(ab, bb, n, dtype, b_transposed)
        ob.block_dtype = "fp64"
        self._kernel(2.0 * n**3 / 55e12, self._model.power.gemm_fp32_w)

    def compare_close(
        self,
        result: DeviceBuffer,
        result_dtype: GemmDtype,
        reference: DeviceBuffer,
        n_elements: int,
        rel_tol: float,
        abs_tol: float,
        max_report: int,
    ) -> CloseCheck:
        res, ref = self._buf(result), self._buf(reference)
        if res.block is None or ref.block is None or res.block.shape != ref.block.shape:
            raise DeviceError("sim: compare_close needs a product and its reference")
        got, want = res.block.ravel(), ref.block.ravel()
        error = np.abs(got - want)
        with np.errstate(invalid="ignore", divide="ignore"):
            bad = np.flatnonzero(~(error <= abs_tol + rel_tol * np.abs(want)))
            rel = error / np.maximum(np.abs(want), abs_tol / rel_tol)
        cols = res.block.shape[1]
        n = round(n_elements**0.5)
        first = tuple(
            ((int(i) // cols) * n + int(i) % cols, float(got[i]), float(want[i]))
            for i in bad[:max_report]
        )
        self._kernel(12.0 * n_elements / (self._model.performance.read_gbs * 1e9), 300.0)
        return CloseCheck(
            checked=int(got.size),
            mismatches=int(bad.size),
            max_abs_error=float(np.nanmax(error)) if error.size else 0.0,
            max_rel_error=float(np.nanmax(rel)) if rel.size else 0.0,
            first=first,
        )

    def word_hash(self, buffer: DeviceBuffer, nbytes: int) -> int:
        buf = self._buf(buffer)
        self._digests_in_test += 1
        if buf.block is not None:
            words = np.ascontiguousarray(buf.block).view(np.uint32).ravel()
        else:
            words = self._read_window(buf)[: min(nbytes // 4, buf.window_words.size)]
        self._kernel(nbytes / (self._model.performance.read_gbs * 1e9), self._model.power.stream_w)
        return word_digest(words)

    # --- PCIe copies (issue 14) -------------------------------------------------------------------
    def host_alloc(self, nbytes: int) -> HostBuffer:
        self._check_alive("host_alloc")
        if nbytes <= 0:
            raise DeviceError(f"host_alloc: expected a positive size, got {nbytes}")
        size = nbytes if nbytes <= DENSE_BYTES else WINDOW_BYTES
        buffer = SimHostBuffer(self._host_next, nbytes, np.zeros(size, dtype=np.uint8))
        self._host_next += (nbytes + ALLOC_ALIGN - 1) // ALLOC_ALIGN * ALLOC_ALIGN
        self._host_buffers[buffer.address] = buffer
        return buffer

    def host_free(self, buffer: HostBuffer) -> None:
        if not isinstance(buffer, SimHostBuffer):
            raise DeviceError("sim: not a host buffer of this card")
        self._host_buffers.pop(buffer.address, None)

    def _host(self, buffer: HostBuffer) -> SimHostBuffer:
        self._check_alive("host memory access")
        if not isinstance(buffer, SimHostBuffer) or buffer.address not in self._host_buffers:
            raise DeviceError("sim: not a live host buffer of this card")
        return buffer

    def link_copy(
        self,
        nbytes: int,
        h2d: tuple[DeviceBuffer, HostBuffer] | None = None,
        d2h: tuple[HostBuffer, DeviceBuffer] | None = None,
    ) -> LinkCopy:
        if h2d is None and d2h is None:
            raise ValueError("link_copy needs h2d, d2h or both")
        f, d = self._faults, self._model.device
        if h2d is not None:
            device, host = self._buf(h2d[0]), self._host(h2d[1])
            _check_copy(nbytes, device.nbytes, host.nbytes)
            count = min(nbytes, device.window.size, host.data.size)
            device.touch()
            device.window[:count] = host.data[:count]
            device.tail = None  # beyond the window: what the copy wrote (faults aside)
            if f.pcie_corrupt_direction == "h2d":
                self._corrupt(device.window, count)
        if d2h is not None:
            host, device = self._host(d2h[0]), self._buf(d2h[1])
            _check_copy(nbytes, device.nbytes, host.nbytes)
            count = min(nbytes, device.window.size, host.data.size)
            host.data[:count] = self._read_window(device).view(np.uint8)[:count]
            if f.pcie_corrupt_direction == "d2h":
                self._corrupt(host.data, count)
        gen, width = f.pcie_gen or d.pcie_gen_max, f.pcie_width or d.pcie_width_max
        rate_gbs = (link_gbs(gen, width) or 0.0) * d.pcie_copy_share * f.pcie_copy_scale
        seconds = nbytes / (rate_gbs * 1e9)
        if h2d is not None and d2h is not None:  # each way at the duplex share, at once
            seconds *= d.pcie_copy_share / d.pcie_duplex_share
        demand_w = self._model.power.idle_w + PCIE_COPY_W_ABOVE_IDLE
        # its own noise, as every kernel of the pcie test: the other tests' draws (and so their
        # numbers) are those they had before the pcie test existed
        elapsed_s = self._kernel(seconds, demand_w, self._link_rng)
        unreadable = self._faults.unreadable  # the link under load reads as the counters do
        return LinkCopy(
            elapsed_s,
            None if "pcie_gen_current" in unreadable else gen,
            None if "pcie_width_current" in unreadable else width,
        )

    def _corrupt(self, window: npt.NDArray[np.uint8], count: int) -> None:
        at = self._faults.pcie_corrupt_byte
        if at is not None and at < count:
            window[at] ^= np.uint8(0x10)


def _check_copy(nbytes: int, device_bytes: int, host_bytes: int) -> None:
    if not 0 < nbytes <= min(device_bytes, host_bytes):
        raise DeviceError(
            f"sim: a copy of {nbytes} bytes between buffers of {device_bytes} (device) and "
            f"{host_bytes} (host) bytes"
        )
