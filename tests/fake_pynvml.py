"""A fake `pynvml` module that answers from recorded NVML data (tests/data/nvml/*.json).

It has the real module's constants, error classes and ctypes structures (copied from the installed
nvidia-ml-py), and the real function names with their signatures, so
gpuhealth/measure/backends/nvml.py
cannot tell it from the real one. Every real `nvml*` function the recording cannot answer raises
`NotRecordedError` (not an NVMLError), so a query the mapping gets wrong shows up in
`NvmlDevice.unreadable` instead of passing as "not supported".

Recorded values of the form "ERROR: NVMLError_NotSupported: Not Supported" are raised as that
error; FI_* entries are "(nvmlReturn, value)" pairs of nvmlDeviceGetFieldValues.

Named scenarios at the bottom (gpustat's tests are the model); inject one with
`monkeypatch.setattr(nvml, "_load_pynvml", fake.load)`.
"""

from __future__ import annotations

import copy
import json
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pynvml as real

DATA = Path(__file__).parent / "data" / "nvml"
NOT_SUPPORTED = "ERROR: NVMLError_NotSupported: Not Supported"


class NotRecordedError(RuntimeError):
    """The code under test asked for something the recording has no answer for."""


def load_recording(key: str) -> dict[str, Any]:
    with (DATA / f"{key}.json").open() as f:
        data: dict[str, Any] = json.load(f)
    return data


def _raise_recorded_error(text: str) -> None:
    """'ERROR: NVMLError_NotSupported: Not Supported' → raise pynvml.NVMLError_NotSupported."""
    class_name = text.split(":")[1].strip()
    raise getattr(real, class_name)()


def _bus_key(bus_id: str) -> tuple[int, ...]:
    """'00000000:00:06.0' and '0000:00:06.0' name the same device (NVML accepts both)."""
    domain, bus, rest = bus_id.strip().lower().split(":")
    device, function = rest.split(".")
    return (int(domain, 16), int(bus, 16), int(device, 16), int(function, 16))


@dataclass
class FakeCard:
    """One card: its recorded answers, plus what a scenario changes."""

    key: str
    probe: dict[str, Any]
    not_in_probe: dict[str, Any]
    # function name → NVML error code it raises every time (e.g. NVML_ERROR_UNKNOWN)
    fail: dict[str, int] = field(default_factory=dict)
    # after this many device calls, every call on this card raises lost_code
    lost_after: int | None = None
    lost_code: int = real.NVML_ERROR_GPU_IS_LOST
    compute_processes: list[tuple[int, int | None]] = field(default_factory=list)
    graphics_processes: list[tuple[int, int | None]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    event_sets: list[FakeEventSet] = field(default_factory=list)
    # NVLink error counters grow by this much on every read (errors while the run goes on)
    nvlink_error_growth: int = 0
    # field id → how much its value grows from one read of it to the next (PCIe error counters
    # rising while the run goes on); how often each field was read
    field_growth: dict[int, int] = field(default_factory=dict)
    field_reads: dict[int, int] = field(default_factory=dict)
    # fields an answer leaves out, and fields answered with another value type (a driver bug)
    field_dropped: set[int] = field(default_factory=set)
    field_value_type: dict[int, int] = field(default_factory=dict)

    @classmethod
    def recorded(cls, key: str) -> FakeCard:
        data = load_recording(key)
        return cls(key, copy.deepcopy(data["nvml_probe"]), dict(data["not_in_probe"]))

    def enter(self, function: str) -> None:
        """Every device call passes here: count it, then fail it if the scenario says so."""
        self.calls.append(function)
        if self.lost_after is not None and len(self.calls) > self.lost_after:
            raise real.NVMLError(self.lost_code)
        if function in self.fail:
            raise real.NVMLError(self.fail[function])

    def answer(self, key: str) -> Any:
        if key not in self.probe:
            raise NotRecordedError(f"{self.key}: the recording has no {key!r}")
        value = self.probe[key]
        if isinstance(value, str) and value.startswith("ERROR: "):
            _raise_recorded_error(value)
        return value

    def raise_xid(self, code: int) -> None:
        """The driver reports Xid `code` on this card: every registered event set sees it."""
        for event_set in self.event_sets:
            event_set.pending.append((self, code))


@dataclass(eq=False)
class FakeEventSet:
    pending: list[tuple[FakeCard, int]] = field(default_factory=list)
    freed: bool = False


@dataclass
class FakeNvml:
    """The state behind one fake pynvml module: cards, init behaviour, what was called."""

    cards: list[FakeCard]
    init_error: int | None = None  # NVML error code nvmlInit raises
    driver_fail: dict[str, int] = field(default_factory=dict)  # system function → error code
    missing: set[str] = field(default_factory=set)  # functions this pynvml is too old to have
    initialized: int = 0
    shutdowns: int = 0
    event_sets: list[FakeEventSet] = field(default_factory=list)

    def load(self) -> types.ModuleType:
        """Stands in for nvml._load_pynvml."""
        return self.module()

    def module(self) -> types.ModuleType:
        fake = types.ModuleType("pynvml")
        for name, value in vars(real).items():
            if not _is_function(name, value):
                setattr(fake, name, value)  # constants, error classes, structures
            elif name not in self.missing:
                setattr(fake, name, _not_recorded(name))
        for name, function in self._functions().items():
            assert callable(getattr(real, name, None)), f"the real pynvml has no {name}"
            if name not in self.missing:
                setattr(fake, name, function)
        return fake

    # --- helpers ---------------------------------------------------------------------------
    def _system(self, name: str) -> None:
        if not self.initialized:
            raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
        if name in self.driver_fail:
            raise real.NVMLError(self.driver_fail[name])

    def _card(self, handle: object, name: str) -> FakeCard:
        self._system(name)
        assert isinstance(handle, FakeCard), f"{name} got {handle!r}, not a device handle"
        handle.enter(name)
        return handle

    def _functions(self) -> dict[str, Callable[..., Any]]:
        functions: dict[str, Callable[..., Any]] = {}
        functions.update(self._session_functions())
        functions.update(self._settings_functions())
        functions.update(self._identity_functions())
        functions.update(self._health_functions())
        functions.update(self._telemetry_functions())
        functions.update(self._process_and_event_functions())
        functions.update(self._link_functions())
        return functions

    # --- PCIe and NVLink (issue 14) ----------------------------------------------------------
    def _link_functions(self) -> dict[str, Callable[..., Any]]:
        """Answers from the recording's pcie_gen_gpu_max and, for NVLink scenarios, "nvlinks":
        one dict per link (state, version, replay, recovery, crc_flit, crc_data); a value of the
        form "ERROR: ..." is raised. Links beyond the list answer INVALID_ARGUMENT, as NVML does."""

        def link_entry(handle: object, name: str, link: int) -> tuple[FakeCard, dict[str, Any]]:
            card = self._card(handle, name)
            links = card.answer("nvlinks")
            if not 0 <= link < len(links):
                raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
            entry: dict[str, Any] = links[link]
            return card, entry

        def value(entry: dict[str, Any], key: str) -> Any:
            answer = entry[key]
            if isinstance(answer, str) and answer.startswith("ERROR: "):
                _raise_recorded_error(answer)
            return answer

        def nvmlDeviceGetGpuMaxPcieLinkGeneration(handle: object) -> Any:
            card = self._card(handle, "nvmlDeviceGetGpuMaxPcieLinkGeneration")
            return card.answer("pcie_gen_gpu_max")

        def nvmlDeviceGetNvLinkState(handle: object, link: int) -> Any:
            return value(link_entry(handle, "nvmlDeviceGetNvLinkState", link)[1], "state")

        def nvmlDeviceGetNvLinkVersion(handle: object, link: int) -> Any:
            return value(link_entry(handle, "nvmlDeviceGetNvLinkVersion", link)[1], "version")

        def nvmlDeviceGetNvLinkErrorCounter(handle: object, link: int, counter: int) -> Any:
            card, entry = link_entry(handle, "nvmlDeviceGetNvLinkErrorCounter", link)
            keys = {
                real.NVML_NVLINK_ERROR_DL_REPLAY: "replay",
                real.NVML_NVLINK_ERROR_DL_RECOVERY: "recovery",
                real.NVML_NVLINK_ERROR_DL_CRC_FLIT: "crc_flit",
                real.NVML_NVLINK_ERROR_DL_CRC_DATA: "crc_data",
            }
            if counter not in keys:
                raise NotRecordedError(f"NVLink error counter {counter}")
            count = value(entry, keys[counter])
            if card.nvlink_error_growth and keys[counter] == "crc_flit":
                entry["crc_flit"] = count + card.nvlink_error_growth
            return count

        return {
            "nvmlDeviceGetGpuMaxPcieLinkGeneration": nvmlDeviceGetGpuMaxPcieLinkGeneration,
            "nvmlDeviceGetNvLinkState": nvmlDeviceGetNvLinkState,
            "nvmlDeviceGetNvLinkVersion": nvmlDeviceGetNvLinkVersion,
            "nvmlDeviceGetNvLinkErrorCounter": nvmlDeviceGetNvLinkErrorCounter,
        }

    # --- session ---------------------------------------------------------------------------
    def _session_functions(self) -> dict[str, Callable[..., Any]]:
        def nvmlInit() -> None:
            if self.init_error is not None:
                raise real.NVMLError(self.init_error)
            self.initialized += 1

        def nvmlShutdown() -> None:
            self._system("nvmlShutdown")
            self.initialized -= 1
            self.shutdowns += 1

        def system(key: str, name: str) -> Callable[[], Any]:
            def get() -> Any:
                self._system(name)
                return self.cards[0].answer(key)

            return get

        def nvmlDeviceGetCount() -> int:
            self._system("nvmlDeviceGetCount")
            return len(self.cards)

        def nvmlDeviceGetHandleByIndex(index: int) -> FakeCard:
            self._system("nvmlDeviceGetHandleByIndex")
            if not 0 <= index < len(self.cards):
                raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
            return self.cards[index]

        def nvmlDeviceGetHandleByPciBusId(bus_id: str) -> FakeCard:
            self._system("nvmlDeviceGetHandleByPciBusId")
            for card in self.cards:
                if _bus_key(card.probe["pci"]["busId"]) == _bus_key(bus_id):
                    return card
            raise real.NVMLError(real.NVML_ERROR_NOT_FOUND)

        return {
            "nvmlInit": nvmlInit,
            "nvmlShutdown": nvmlShutdown,
            "nvmlSystemGetDriverVersion": system("driver", "nvmlSystemGetDriverVersion"),
            "nvmlSystemGetNVMLVersion": system("nvml_version", "nvmlSystemGetNVMLVersion"),
            "nvmlSystemGetCudaDriverVersion": system(
                "cuda_driver", "nvmlSystemGetCudaDriverVersion"
            ),
            "nvmlSystemGetCudaDriverVersion_v2": system(
                "cuda_driver", "nvmlSystemGetCudaDriverVersion_v2"
            ),
            "nvmlDeviceGetCount": nvmlDeviceGetCount,
            "nvmlDeviceGetHandleByIndex": nvmlDeviceGetHandleByIndex,
            "nvmlDeviceGetHandleByPciBusId": nvmlDeviceGetHandleByPciBusId,
        }

    # --- readiness settings ----------------------------------------------------------------
    def _settings_functions(self) -> dict[str, Callable[..., Any]]:
        """Recorded keys: mig_mode ["current", "pending"], compute_mode, persistence,
        clock_app_sm; a scenario adds clock_app_mem, clock_default_app_sm / _mem and cc_feature
        (the recordings did not read them: asked unset, they raise NotRecordedError)."""

        def plain(key: str, name: str) -> Callable[[object], Any]:
            def get(handle: object) -> Any:
                return self._card(handle, name).answer(key)

            return get

        def nvmlDeviceGetMigMode(handle: object) -> list[int]:
            modes = self._card(handle, "nvmlDeviceGetMigMode").answer("mig_mode")
            return [int(modes[0]), int(modes[1])]

        def clock(prefix: str, name: str) -> Callable[[object, int], int]:
            def get(handle: object, which: int) -> int:
                card = self._card(handle, name)
                suffix = {real.NVML_CLOCK_SM: "sm", real.NVML_CLOCK_MEM: "mem"}[which]
                return int(card.answer(f"{prefix}_{suffix}"))

            return get

        def nvmlSystemGetConfComputeState() -> Any:
            self._system("nvmlSystemGetConfComputeState")
            feature = self.cards[0].answer("cc_feature")
            return real.nvmlFriendlyObject(
                {"environment": 0, "ccFeature": int(feature), "devToolsMode": 0}
            )

        return {
            "nvmlDeviceGetMigMode": nvmlDeviceGetMigMode,
            "nvmlDeviceGetComputeMode": plain("compute_mode", "nvmlDeviceGetComputeMode"),
            "nvmlDeviceGetPersistenceMode": plain("persistence", "nvmlDeviceGetPersistenceMode"),
            "nvmlDeviceGetApplicationsClock": clock("clock_app", "nvmlDeviceGetApplicationsClock"),
            "nvmlDeviceGetDefaultApplicationsClock": clock(
                "clock_default_app", "nvmlDeviceGetDefaultApplicationsClock"
            ),
            "nvmlSystemGetConfComputeState": nvmlSystemGetConfComputeState,
        }

    # --- identity --------------------------------------------------------------------------
    def _identity_functions(self) -> dict[str, Callable[..., Any]]:
        def plain(key: str, name: str) -> Callable[[object], Any]:
            def get(handle: object) -> Any:
                return self._card(handle, name).answer(key)

            return get

        def nvmlDeviceGetPciInfo(handle: object) -> Any:
            pci = self._card(handle, "nvmlDeviceGetPciInfo").answer("pci")
            info = real.nvmlPciInfo_t()
            for name, value in pci.items():
                setattr(info, name, value)
            return info

        def nvmlDeviceGetMemoryInfo(handle: object, version: object = None) -> Any:
            mem = self._card(handle, "nvmlDeviceGetMemoryInfo").answer("mem_info")
            return real.c_nvmlMemory_t(total=mem["total"], free=mem["free"], used=mem["used"])

        def nvmlDeviceGetCudaComputeCapability(handle: object) -> tuple[int, int]:
            cc = self._card(handle, "nvmlDeviceGetCudaComputeCapability").answer("cc")
            return (int(cc[0]), int(cc[1]))

        def nvmlDeviceGetAttributes(handle: object) -> Any:
            card = self._card(handle, "nvmlDeviceGetAttributes")
            return real.c_nvmlDeviceAttributes(
                multiprocessorCount=card.answer("multiprocessors_attr")
            )

        def nvmlDeviceGetMemoryBusWidth(handle: object) -> int:
            card = self._card(handle, "nvmlDeviceGetMemoryBusWidth")
            return int(card.not_in_probe["memory_bus_width"])

        def nvmlDeviceGetMaxClockInfo(handle: object, clock: int) -> int:
            card = self._card(handle, "nvmlDeviceGetMaxClockInfo")
            keys = {real.NVML_CLOCK_SM: "clock_max_sm", real.NVML_CLOCK_MEM: "clock_max_mem"}
            if clock not in keys:
                raise NotRecordedError(f"max clock of type {clock}")
            return int(card.answer(keys[clock]))

        def nvmlDeviceGetPowerManagementLimitConstraints(handle: object) -> list[int]:
            card = self._card(handle, "nvmlDeviceGetPowerManagementLimitConstraints")
            low, high = card.answer("power_limit_constraints")  # recorded as strings, in mW
            return [int(low), int(high)]

        return {
            "nvmlDeviceGetName": plain("name", "nvmlDeviceGetName"),
            "nvmlDeviceGetUUID": plain("uuid", "nvmlDeviceGetUUID"),
            "nvmlDeviceGetSerial": plain("serial", "nvmlDeviceGetSerial"),
            "nvmlDeviceGetBoardPartNumber": plain(
                "board_part_number", "nvmlDeviceGetBoardPartNumber"
            ),
            "nvmlDeviceGetVbiosVersion": plain("vbios", "nvmlDeviceGetVbiosVersion"),
            "nvmlDeviceGetInforomImageVersion": plain(
                "inforom_image", "nvmlDeviceGetInforomImageVersion"
            ),
            "nvmlDeviceGetPciInfo": nvmlDeviceGetPciInfo,
            "nvmlDeviceGetMemoryInfo": nvmlDeviceGetMemoryInfo,
            "nvmlDeviceGetCudaComputeCapability": nvmlDeviceGetCudaComputeCapability,
            "nvmlDeviceGetAttributes": nvmlDeviceGetAttributes,
            "nvmlDeviceGetMemoryBusWidth": nvmlDeviceGetMemoryBusWidth,
            "nvmlDeviceGetMaxClockInfo": nvmlDeviceGetMaxClockInfo,
            "nvmlDeviceGetMaxPcieLinkGeneration": plain(
                "pcie_gen_max", "nvmlDeviceGetMaxPcieLinkGeneration"
            ),
            "nvmlDeviceGetMaxPcieLinkWidth": plain(
                "pcie_width_max", "nvmlDeviceGetMaxPcieLinkWidth"
            ),
            "nvmlDeviceGetPowerManagementDefaultLimit": plain(
                "power_default_limit_mw", "nvmlDeviceGetPowerManagementDefaultLimit"
            ),
            "nvmlDeviceGetPowerManagementLimitConstraints": (
                nvmlDeviceGetPowerManagementLimitConstraints
            ),
        }

    # --- health counters -------------------------------------------------------------------
    def _health_functions(self) -> dict[str, Callable[..., Any]]:
        def plain(key: str, name: str) -> Callable[[object], Any]:
            def get(handle: object) -> Any:
                return self._card(handle, name).answer(key)

            return get

        def nvmlDeviceGetEccMode(handle: object) -> list[int]:
            mode = self._card(handle, "nvmlDeviceGetEccMode").answer("ecc_mode")
            return [int(mode[0]), int(mode[1])]

        def nvmlDeviceGetTotalEccErrors(handle: object, error_type: int, counter: int) -> int:
            card = self._card(handle, "nvmlDeviceGetTotalEccErrors")
            keys = {
                (real.NVML_MEMORY_ERROR_TYPE_CORRECTED, real.NVML_VOLATILE_ECC): "ecc_vol_corr",
                (real.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, real.NVML_VOLATILE_ECC): "ecc_vol_uncorr",
                (real.NVML_MEMORY_ERROR_TYPE_CORRECTED, real.NVML_AGGREGATE_ECC): "ecc_agg_corr",
                (
                    real.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                    real.NVML_AGGREGATE_ECC,
                ): "ecc_agg_uncorr",
            }
            return int(card.answer(keys[(error_type, counter)]))

        def nvmlDeviceGetMemoryErrorCounter(
            handle: object, error_type: int, counter: int, location: int
        ) -> int:
            card = self._card(handle, "nvmlDeviceGetMemoryErrorCounter")
            if (error_type, counter) != (
                real.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                real.NVML_AGGREGATE_ECC,
            ):
                raise NotRecordedError(f"memory error counter {error_type}/{counter}")
            key = f"ecc_agg_uncorr_{_LOCATIONS[location]}"
            if key in card.probe:
                return int(card.answer(key))
            # The probe did not ask by location. Where the recorded total is 0, every location a
            # Turing-or-later card counts (DRAM, SRAM) must be 0 too: derived, not recorded.
            if location in _TURING_LOCATIONS and card.answer("ecc_agg_uncorr") == 0:
                return 0
            raise NotRecordedError(f"{card.key}: the recording has no {key!r}")

        def nvmlDeviceGetRetiredPages(handle: object, cause: int) -> list[int]:
            card = self._card(handle, "nvmlDeviceGetRetiredPages")
            keys = {
                real.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS: "retired_pages_sbe",
                real.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR: "retired_pages_dbe",
            }
            return [int(address) for address in card.answer(keys[cause])]

        def nvmlDeviceGetRemappedRows(handle: object) -> tuple[int, int, int, int]:
            rows = self._card(handle, "nvmlDeviceGetRemappedRows").answer("remapped_rows")
            corr, unc, pending, failure = (int(v) for v in rows)
            return (corr, unc, pending, failure)

        def nvmlDeviceGetRowRemapperHistogram(handle: object) -> Any:
            card = self._card(handle, "nvmlDeviceGetRowRemapperHistogram")
            return real.c_nvmlRowRemapperHistogramValues(**card.answer("row_remapper_histogram"))

        def nvmlDeviceGetTemperatureThreshold(handle: object, threshold: int) -> int:
            card = self._card(handle, "nvmlDeviceGetTemperatureThreshold")
            keys = {
                real.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: "temp_thr_shutdown",
                real.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: "temp_thr_slowdown",
                real.NVML_TEMPERATURE_THRESHOLD_MEM_MAX: "temp_thr_mem_max",
                real.NVML_TEMPERATURE_THRESHOLD_GPU_MAX: "temp_thr_gpu_max",
            }
            if threshold not in keys:
                raise NotRecordedError(f"temperature threshold {threshold}")
            return int(card.answer(keys[threshold]))

        return {
            "nvmlDeviceGetEccMode": nvmlDeviceGetEccMode,
            "nvmlDeviceGetTotalEccErrors": nvmlDeviceGetTotalEccErrors,
            "nvmlDeviceGetMemoryErrorCounter": nvmlDeviceGetMemoryErrorCounter,
            "nvmlDeviceGetRetiredPages": nvmlDeviceGetRetiredPages,
            "nvmlDeviceGetRetiredPagesPendingStatus": plain(
                "retired_pending", "nvmlDeviceGetRetiredPagesPendingStatus"
            ),
            "nvmlDeviceGetRemappedRows": nvmlDeviceGetRemappedRows,
            "nvmlDeviceGetRowRemapperHistogram": nvmlDeviceGetRowRemapperHistogram,
            "nvmlDeviceGetCurrPcieLinkGeneration": plain(
                "pcie_gen_cur", "nvmlDeviceGetCurrPcieLinkGeneration"
            ),
            "nvmlDeviceGetCurrPcieLinkWidth": plain(
                "pcie_width_cur", "nvmlDeviceGetCurrPcieLinkWidth"
            ),
            "nvmlDeviceGetPcieReplayCounter": plain(
                "pcie_replay", "nvmlDeviceGetPcieReplayCounter"
            ),
            "nvmlDeviceGetEnforcedPowerLimit": plain(
                "enforced_power_limit", "nvmlDeviceGetEnforcedPowerLimit"
            ),
            "nvmlDeviceGetPowerManagementLimit": plain(
                "power_limit_mw", "nvmlDeviceGetPowerManagementLimit"
            ),
            "nvmlDeviceGetTemperatureThreshold": nvmlDeviceGetTemperatureThreshold,
            "nvmlDeviceGetTotalEnergyConsumption": plain(
                "energy_mj", "nvmlDeviceGetTotalEnergyConsumption"
            ),
        }

    # --- telemetry -------------------------------------------------------------------------
    def _telemetry_functions(self) -> dict[str, Callable[..., Any]]:
        def reasons(name: str) -> Callable[[object], int]:
            def get(handle: object) -> int:
                return int(self._card(handle, name).answer("throttle_reasons"))

            return get

        def nvmlDeviceGetTemperature(handle: object, sensor: int) -> int:
            card = self._card(handle, "nvmlDeviceGetTemperature")
            if sensor != real.NVML_TEMPERATURE_GPU:
                raise NotRecordedError(f"temperature sensor {sensor}")
            return int(card.answer("temp_gpu"))

        def nvmlDeviceGetPowerUsage(handle: object) -> int:
            return int(self._card(handle, "nvmlDeviceGetPowerUsage").answer("power_usage_mw"))

        def nvmlDeviceGetClockInfo(handle: object, clock: int) -> int:
            card = self._card(handle, "nvmlDeviceGetClockInfo")
            keys = {real.NVML_CLOCK_SM: "clock_sm", real.NVML_CLOCK_MEM: "clock_mem"}
            if clock not in keys:
                raise NotRecordedError(f"clock of type {clock}")
            return int(card.answer(keys[clock]))

        def nvmlDeviceGetUtilizationRates(handle: object) -> Any:
            util = self._card(handle, "nvmlDeviceGetUtilizationRates").answer("util")
            return real.c_nvmlUtilization_t(gpu=util["gpu"], memory=util["memory"])

        def nvmlDeviceGetFieldValues(handle: object, field_ids: list[int]) -> Any:
            card = self._card(handle, "nvmlDeviceGetFieldValues")
            field_ids = [f for f in field_ids if f not in card.field_dropped]
            values = (real.c_nvmlFieldValue_t * len(field_ids))()
            for slot, field_id in zip(values, field_ids, strict=True):
                slot.fieldId = field_id
                slot.nvmlReturn, number = _recorded_field(card, field_id)
                reads = card.field_reads.get(field_id, 0)
                card.field_reads[field_id] = reads + 1
                number += card.field_growth.get(field_id, 0) * reads
                # Assumption: NVML gives temperatures and counters as unsigned int; the
                # recording kept the number only.
                slot.valueType = card.field_value_type.get(
                    field_id, real.NVML_VALUE_TYPE_UNSIGNED_INT
                )
                slot.value.uiVal = number
            return values

        return {
            "nvmlDeviceGetTemperature": nvmlDeviceGetTemperature,
            "nvmlDeviceGetPowerUsage": nvmlDeviceGetPowerUsage,
            "nvmlDeviceGetClockInfo": nvmlDeviceGetClockInfo,
            "nvmlDeviceGetUtilizationRates": nvmlDeviceGetUtilizationRates,
            "nvmlDeviceGetFieldValues": nvmlDeviceGetFieldValues,
            "nvmlDeviceGetCurrentClocksEventReasons": reasons(
                "nvmlDeviceGetCurrentClocksEventReasons"
            ),
            "nvmlDeviceGetCurrentClocksThrottleReasons": reasons(
                "nvmlDeviceGetCurrentClocksThrottleReasons"
            ),
        }

    # --- processes and events --------------------------------------------------------------
    def _process_and_event_functions(self) -> dict[str, Callable[..., Any]]:
        def running(name: str, kind: str) -> Callable[[object], list[Any]]:
            def get(handle: object) -> list[Any]:
                card = self._card(handle, name)
                listed = card.compute_processes if kind == "compute" else card.graphics_processes
                return [_process(pid, used) for pid, used in listed]

            return get

        def nvmlEventSetCreate() -> FakeEventSet:
            self._system("nvmlEventSetCreate")
            event_set = FakeEventSet()
            self.event_sets.append(event_set)
            return event_set

        def nvmlDeviceRegisterEvents(handle: object, event_types: int, event_set: object) -> None:
            card = self._card(handle, "nvmlDeviceRegisterEvents")
            assert isinstance(event_set, FakeEventSet)
            assert event_types == real.nvmlEventTypeXidCriticalError, event_types
            card.answer("xid_events")  # "registered", or the error the card gave
            card.event_sets.append(event_set)

        def nvmlEventSetWait_v2(event_set: object, timeout_ms: int) -> Any:
            self._system("nvmlEventSetWait_v2")
            assert isinstance(event_set, FakeEventSet) and not event_set.freed
            assert timeout_ms == 0, "gpuhealth must never block on events"
            if not event_set.pending:
                raise real.NVMLError(real.NVML_ERROR_TIMEOUT)
            card, code = event_set.pending.pop(0)
            card.enter("nvmlEventSetWait_v2")
            return real.c_nvmlEventData_t(
                eventType=real.nvmlEventTypeXidCriticalError, eventData=code
            )

        def nvmlEventSetFree(event_set: object) -> None:
            self._system("nvmlEventSetFree")
            assert isinstance(event_set, FakeEventSet) and not event_set.freed
            event_set.freed = True

        return {
            "nvmlDeviceGetComputeRunningProcesses": running(
                "nvmlDeviceGetComputeRunningProcesses", "compute"
            ),
            "nvmlDeviceGetGraphicsRunningProcesses": running(
                "nvmlDeviceGetGraphicsRunningProcesses", "graphics"
            ),
            "nvmlEventSetCreate": nvmlEventSetCreate,
            "nvmlDeviceRegisterEvents": nvmlDeviceRegisterEvents,
            "nvmlEventSetWait_v2": nvmlEventSetWait_v2,
            "nvmlEventSetFree": nvmlEventSetFree,
        }


# nvmlMemoryLocation_t by the suffix of a probe key: ecc_agg_uncorr_<suffix>
_LOCATIONS = {
    real.NVML_MEMORY_LOCATION_L1_CACHE: "l1_cache",
    real.NVML_MEMORY_LOCATION_L2_CACHE: "l2_cache",
    real.NVML_MEMORY_LOCATION_DRAM: "dram",  # also DEVICE_MEMORY: one value
    real.NVML_MEMORY_LOCATION_REGISTER_FILE: "register_file",
    real.NVML_MEMORY_LOCATION_TEXTURE_MEMORY: "texture_memory",
    real.NVML_MEMORY_LOCATION_TEXTURE_SHM: "texture_shm",
    real.NVML_MEMORY_LOCATION_CBU: "cbu",
    real.NVML_MEMORY_LOCATION_SRAM: "sram",
}
_TURING_LOCATIONS = (real.NVML_MEMORY_LOCATION_DRAM, real.NVML_MEMORY_LOCATION_SRAM)


def _is_function(name: str, value: object) -> bool:
    return name.startswith("nvml") and isinstance(value, types.FunctionType)


def _not_recorded(name: str) -> Callable[..., Any]:
    def unanswered(*args: object, **kwargs: object) -> Any:
        raise NotRecordedError(f"the fake pynvml has no recorded answer for {name}")

    unanswered.__name__ = name
    return unanswered


def _recorded_field(card: FakeCard, field_id: int) -> tuple[int, int]:
    """(nvmlReturn, value) of one field, from the recording's "(0, 42)" strings."""
    # the probe first, then what a card's not_in_probe fills in (fields the probe never asked)
    for key, entries in [*card.probe.items(), *card.not_in_probe.items()]:
        if key.startswith("FI_") and getattr(real, f"NVML_{key}", None) == field_id:
            ret, value = entries[0].strip("()").split(",")
            return int(ret), int(value)
    raise NotRecordedError(f"{card.key}: field {field_id} was not recorded")


def _process(pid: int, used: int | None) -> Any:
    """What pynvml returns per process (nvmlFriendlyObject of c_nvmlProcessInfo_v3_t)."""
    return real.nvmlFriendlyObject(
        {
            "pid": pid,
            "usedGpuMemory": used,
            "gpuInstanceId": 0xFFFFFFFF,
            "computeInstanceId": 0xFFFFFFFF,
        }
    )


# --- named scenarios ------------------------------------------------------------------------


def healthy_h100() -> FakeNvml:
    return FakeNvml([FakeCard.recorded("h100-sxm5-80gb")])


def healthy_h200() -> FakeNvml:
    return FakeNvml([FakeCard.recorded("h200-sxm-141gb")])


def two_cards() -> FakeNvml:
    """An H100 at 00:06.0 and an H200 moved to 00:07.0 (both recordings sat at 00:06.0)."""
    h200 = FakeCard.recorded("h200-sxm-141gb")
    h200.probe["pci"]["busId"] = "00000000:00:07.0"
    h200.probe["pci"]["device"] = 7
    return FakeNvml([FakeCard.recorded("h100-sxm5-80gb"), h200])


def fields_not_supported() -> FakeNvml:
    """An H100 whose driver offers no memory temperature, row remapper, power reading, or
    process list (non-root): each must read as None, never as a healthy 0."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe["FI_DEV_MEMORY_TEMP"] = [f"({real.NVML_ERROR_NOT_SUPPORTED}, 0)"]
    card.probe["remapped_rows"] = NOT_SUPPORTED
    card.probe["row_remapper_histogram"] = NOT_SUPPORTED
    card.probe["retired_pages_dbe"] = NOT_SUPPORTED  # as the recorded SBE query answered
    card.probe["power_usage_mw"] = NOT_SUPPORTED
    card.fail["nvmlDeviceGetComputeRunningProcesses"] = real.NVML_ERROR_NO_PERMISSION
    card.fail["nvmlDeviceGetGraphicsRunningProcesses"] = real.NVML_ERROR_NO_PERMISSION
    return FakeNvml([card])


def gpu_lost_mid_query(after: int = 5) -> FakeNvml:
    """An H100 that falls off the bus after `after` device calls: GPU_IS_LOST from then on."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.lost_after = after
    return FakeNvml([card])


def gpu_unknown_then_gone(after: int = 5) -> FakeNvml:
    """An H100 that answers only UNKNOWN after `after` calls, the probe included: it is gone."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.lost_after = after
    card.lost_code = real.NVML_ERROR_UNKNOWN
    return FakeNvml([card])


def unknown_error_card_present() -> FakeNvml:
    """An H100 whose PCIe replay counter fails with UNKNOWN while the card still answers."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.fail["nvmlDeviceGetPcieReplayCounter"] = real.NVML_ERROR_UNKNOWN
    return FakeNvml([card])


def library_missing() -> FakeNvml:
    """pynvml is installed, libnvidia-ml.so.1 is not (no driver, or a container without it)."""
    return FakeNvml([], init_error=real.NVML_ERROR_LIBRARY_NOT_FOUND)


def driver_not_loaded() -> FakeNvml:
    return FakeNvml([], init_error=real.NVML_ERROR_DRIVER_NOT_LOADED)


def module_missing() -> Callable[[], types.ModuleType]:
    """A stand-in for nvml._load_pynvml when nvidia-ml-py is not installed."""

    def load() -> types.ModuleType:
        raise ModuleNotFoundError("No module named 'pynvml'", name="pynvml")

    return load


def remapped_rows_pending_with_ecc() -> FakeNvml:
    """A used H100 with history: 2 correctable + 1 uncorrectable remapped rows, one remap pending
    (needs a reset), 3 banks no longer at full spare capacity, and ECC errors."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe["remapped_rows"] = ["2", "1", "1", "0"]
    card.probe["row_remapper_histogram"] = {
        "max": 2557,
        "high": 3,
        "partial": 0,
        "low": 0,
        "none": 0,
    }
    card.probe["ecc_vol_corr"] = 12
    card.probe["ecc_vol_uncorr"] = 1
    card.probe["ecc_agg_corr"] = 340
    card.probe["ecc_agg_uncorr"] = 1
    card.probe["ecc_agg_uncorr_dram"] = 1
    card.probe["ecc_agg_uncorr_sram"] = 0
    return FakeNvml([card])


def ecc_pending_off() -> FakeNvml:
    """An H100 with ECC on and `nvidia-smi -e 0` given: ECC is off after the next reboot."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe["ecc_mode"] = ["1", "0"]
    return FakeNvml([card])


def ecc_pending_on() -> FakeNvml:
    """An H100 with ECC off and `nvidia-smi -e 1` given, not yet rebooted. Assumption: with ECC
    off NVML answers "not supported" for every ECC count (its docs: "Requires ECC Mode to be
    enabled")."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe["ecc_mode"] = ["0", "1"]
    for key in ("ecc_vol_corr", "ecc_vol_uncorr", "ecc_agg_corr", "ecc_agg_uncorr"):
        card.probe[key] = NOT_SUPPORTED
    return FakeNvml([card])


def sram_uncorrectable() -> FakeNvml:
    """An H100 whose lifetime counts hold 2 uncorrectable errors, both in on-chip SRAM."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe["ecc_agg_uncorr"] = 2
    card.probe["ecc_agg_uncorr_dram"] = 0
    card.probe["ecc_agg_uncorr_sram"] = 2
    return FakeNvml([card])


def pre_ampere_retired_pages() -> FakeNvml:
    """A Volta-style card (made from the H100 recording): no row remapper, page retirement
    instead (3 pages for repeated single-bit errors, 1 for a double-bit error, one retirement
    waiting for a reboot), ECC counted per on-chip unit rather than as one SRAM location."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe["name"] = "Tesla V100-SXM2-32GB"
    card.probe["cc"] = ["7", "0"]
    card.probe["remapped_rows"] = NOT_SUPPORTED
    card.probe["row_remapper_histogram"] = NOT_SUPPORTED
    card.probe["retired_pages_sbe"] = [0x1F000, 0x2A000, 0x3B000]
    card.probe["retired_pages_dbe"] = [0x4C000]
    card.probe["retired_pending"] = 1
    card.probe["ecc_agg_uncorr"] = 3
    card.probe["ecc_agg_uncorr_dram"] = 1
    card.probe["ecc_agg_uncorr_sram"] = NOT_SUPPORTED
    card.probe["ecc_agg_uncorr_l1_cache"] = 0
    card.probe["ecc_agg_uncorr_l2_cache"] = 2
    card.probe["ecc_agg_uncorr_register_file"] = 0
    card.probe["ecc_agg_uncorr_texture_memory"] = NOT_SUPPORTED
    card.probe["ecc_agg_uncorr_texture_shm"] = NOT_SUPPORTED
    card.probe["ecc_agg_uncorr_cbu"] = 0
    return FakeNvml([card])


def sram_counter_fails() -> FakeNvml:
    """An H100 whose SRAM location count fails with UNKNOWN while the card still answers: the
    SRAM count is unreadable (None), never summed from what else answered."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe["ecc_agg_uncorr_sram"] = "ERROR: NVMLError_Unknown: Unknown Error"
    return FakeNvml([card])


def old_driver() -> FakeNvml:
    """A driver before 535 (no ClocksEventReasons, no CUDA version _v2) under an nvidia-ml-py
    that predates nvmlDeviceGetMemoryBusWidth."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.fail["nvmlDeviceGetCurrentClocksEventReasons"] = real.NVML_ERROR_FUNCTION_NOT_FOUND
    return FakeNvml(
        [card],
        driver_fail={"nvmlSystemGetCudaDriverVersion_v2": real.NVML_ERROR_FUNCTION_NOT_FOUND},
        missing={"nvmlDeviceGetMemoryBusWidth"},
    )


def busy_card() -> FakeNvml:
    """An H200 with two processes; pid 4242 holds both a compute and a graphics context."""
    card = FakeCard.recorded("h200-sxm-141gb")
    card.compute_processes = [(4242, 1 << 30), (5151, None)]
    card.graphics_processes = [(4242, None)]
    return FakeNvml([card])


def xid_unsupported() -> FakeNvml:
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe["xid_events"] = NOT_SUPPORTED
    return FakeNvml([card])


def no_power_constraints_no_subsystem() -> FakeNvml:
    """An H100 whose driver answers "not supported" for the power-limit range and leaves the PCI
    subsystem id 0 (unfilled), as NVML does where it has none."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe["power_limit_constraints"] = NOT_SUPPORTED
    card.probe["pci"] = {**card.probe["pci"], "pciSubSystemId": 0}
    return FakeNvml([card])


# --- PCIe and NVLink scenarios (issue 14) ------------------------------------------------------


def _nvlink_card(links: list[dict[str, Any]]) -> FakeCard:
    """An H100 whose driver reports NVLinks (the recording's VM answered "not supported")."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe["FI_DEV_NVLINK_LINK_COUNT"] = [f"(0, {len(links)})"]
    card.probe["FI_DEV_NVLINK_SPEED_MBPS_COMMON"] = ["(0, 25781)"]
    card.probe["nvlinks"] = links
    return card


def _link(state: Any = 1) -> dict[str, Any]:
    return {"state": state, "version": 4, "replay": 0, "recovery": 0, "crc_flit": 0, "crc_data": 0}


def nvlink_healthy(count: int = 18) -> FakeNvml:
    """An H100 SXM5 on a baseboard: 18 active NVLink 4 links, no errors."""
    return FakeNvml([_nvlink_card([_link() for _ in range(count)])])


def nvlink_one_down() -> FakeNvml:
    """Link 5 of 18 inactive (a bad baseboard connector or NVSwitch port)."""
    links = [_link() for _ in range(18)]
    links[5]["state"] = 0
    return FakeNvml([_nvlink_card(links)])


def nvlink_errors_growing() -> FakeNvml:
    """Every read of the flit CRC counters finds 7 more: errors while the run goes on."""
    card = _nvlink_card([_link() for _ in range(18)])
    card.nvlink_error_growth = 7
    return FakeNvml([card])


def nvlink_state_unknown() -> FakeNvml:
    """The link count reads, but link 2's state fails with UNKNOWN while the card answers."""
    links = [_link() for _ in range(18)]
    links[2]["state"] = "ERROR: NVMLError_Unknown: Unknown Error"
    return FakeNvml([_nvlink_card(links)])


def nvlink_count_unknown() -> FakeNvml:
    """The NVLink count field fails with UNKNOWN: whether the card has links is not known."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe["FI_DEV_NVLINK_LINK_COUNT"] = [f"({real.NVML_ERROR_UNKNOWN}, 0)"]
    return FakeNvml([card])


def pcie_slot_gen3() -> FakeNvml:
    """An H100 (Gen5) in a Gen3 slot: NVML's max is the slot's, the GPU's own max is 5."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe["pcie_gen_max"] = 3
    card.probe["pcie_gen_cur"] = 3
    return FakeNvml([card])


# --- PCIe error counters (issue 14) ---------------------------------------------------------
def _pcie_field(name: str) -> str:
    return f"FI_DEV_PCIE_{name}"


PCIE_ERROR_FIELDS = (
    "COUNT_FATAL_ERROR",
    "COUNT_NON_FATAL_ERROR",
    "COUNT_CORRECTABLE_ERRORS",
    "COUNT_RECEIVER_ERROR",
    "COUNT_BAD_TLP",
    "COUNT_BAD_DLLP",
    "COUNT_LCRC_ERROR",
    "COUNT_LANE_ERROR",
    "COUNT_NAKS_RECEIVED",
    "COUNT_NAKS_SENT",
    "L0_TO_RECOVERY_COUNTER",
    "COUNT_UNSUPPORTED_REQ",
)


def pcie_errors_rising() -> FakeNvml:
    """An H100 on a marginal link: from one read to the next one fatal error and 3 bad TLPs more
    (the lifetime counts start at 2 fatal and 40 bad TLPs, from before the run)."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe[_pcie_field("COUNT_FATAL_ERROR")] = ["(0, 2)"]
    card.probe[_pcie_field("COUNT_BAD_TLP")] = ["(0, 40)"]
    card.field_growth[real.NVML_FI_DEV_PCIE_COUNT_FATAL_ERROR] = 1
    card.field_growth[real.NVML_FI_DEV_PCIE_COUNT_BAD_TLP] = 3
    return FakeNvml([card])


def pcie_errors_not_supported() -> FakeNvml:
    """An older driver: every PCIe error counter field answers NOT_SUPPORTED."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    for name in PCIE_ERROR_FIELDS:
        card.probe[_pcie_field(name)] = [f"({real.NVML_ERROR_NOT_SUPPORTED}, 0)"]
    return FakeNvml([card])


def pcie_l0_recovery_not_supported() -> FakeNvml:
    """A driver that counts the errors but not the L0 → recovery transitions."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe[_pcie_field("L0_TO_RECOVERY_COUNTER")] = [f"({real.NVML_ERROR_NOT_SUPPORTED}, 0)"]
    return FakeNvml([card])


def pcie_lcrc_unknown() -> FakeNvml:
    """The LCRC counter field fails with UNKNOWN while the card still answers."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.probe[_pcie_field("COUNT_LCRC_ERROR")] = [f"({real.NVML_ERROR_UNKNOWN}, 0)"]
    return FakeNvml([card])


def pcie_answer_lacks_lane() -> FakeNvml:
    """The field-value answer leaves the lane counter out: not read, not "not supported"."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.field_dropped.add(real.NVML_FI_DEV_PCIE_COUNT_LANE_ERROR)
    return FakeNvml([card])


def pcie_bad_dllp_of_odd_type() -> FakeNvml:
    """The bad DLLP counter comes with a value type gpuhealth does not know: not read."""
    card = FakeCard.recorded("h100-sxm5-80gb")
    card.field_value_type[real.NVML_FI_DEV_PCIE_COUNT_BAD_DLLP] = 99
    return FakeNvml([card])
