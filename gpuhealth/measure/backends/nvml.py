"""NVML: a card's identity, health counters, telemetry, processes and Xid events.

The only module that imports pynvml. It does so through `_load_pynvml()`, called when a session
opens (never at import time), so tests replace that one function with a fake module.

Every NVML call goes through `_Querier.call` (nvitop's choke point):
- not supported, no permission, function not in this driver and the like → `NA`, shown as None;
- GPU lost (or an unknown error after which the card no longer answers) → `DeviceLost`, and every
  later query of that card raises it too;
- anything else → `NA`, remembered in `unreadable` so the report can say what could not be read.
A missing value is never a crash and never a pass. Units are converted in one place (`_watts`,
`_joules`): NVML gives milliwatts and millijoules, the run record wants W and J.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Literal, cast

from gpuhealth.clocktext import clocks_text
from gpuhealth.errors import DeviceLost, EnvironmentUnusable
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
from gpuhealth.pcieerrors import PCIE_ERROR_COUNTERS

__all__ = ["Nvml", "NvmlDevice"]

# Linux procfs, where a pid's command name lives; tests point it at a temporary folder.
_PROC_ROOT = Path("/proc")

# Reading events without blocking still needs a bound, should a card flood the set.
_MAX_EVENTS_PER_POLL: Final = 256

# Answers that mean "this card or driver does not offer it": None, not an error.
_ABSENT_CODES: Final = (
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_ERROR_NO_PERMISSION",
    "NVML_ERROR_FUNCTION_NOT_FOUND",
    "NVML_ERROR_ARGUMENT_VERSION_MISMATCH",
    "NVML_ERROR_DEPRECATED",
    "NVML_ERROR_NO_DATA",
    "NVML_ERROR_VGPU_ECC_NOT_SUPPORTED",
)
# Answers that mean the card is gone or unusable until reset: the run cannot go on with it.
_LOST_CODES: Final = (
    "NVML_ERROR_GPU_IS_LOST",
    "NVML_ERROR_GPU_NOT_FOUND",
    "NVML_ERROR_RESET_REQUIRED",
)

# Descriptions of the Xids a grader meets most (NVIDIA's Xid catalog); others carry the code only.
_XID_DESCRIPTIONS: Final = {
    13: "graphics engine exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "preemptive cleanup after a previous error",
    48: "double-bit ECC error",
    63: "row remapping or page retirement recorded",
    64: "row remapping or page retirement failed",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
}

# Where uncorrectable ECC errors happened (nvmlMemoryLocation_t). Turing and later count on-chip
# memory as one SRAM location; earlier cards count it by unit, and card memory as DEVICE_MEMORY (the
# same enum value as DRAM, under its older name in older bindings).
_DRAM_LOCATIONS: Final = ("NVML_MEMORY_LOCATION_DRAM", "NVML_MEMORY_LOCATION_DEVICE_MEMORY")
_SRAM_LOCATION: Final = "NVML_MEMORY_LOCATION_SRAM"
_SRAM_LOCATIONS_BEFORE_TURING: Final = (
    "NVML_MEMORY_LOCATION_L1_CACHE",
    "NVML_MEMORY_LOCATION_L2_CACHE",
    "NVML_MEMORY_LOCATION_REGISTER_FILE",
    "NVML_MEMORY_LOCATION_TEXTURE_MEMORY",
    "NVML_MEMORY_LOCATION_TEXTURE_SHM",
    "NVML_MEMORY_LOCATION_CBU",
)

_LOST_HINT = (
    "the card stopped answering NVML; check `dmesg` for an Xid (79: fell off the bus), "
    "reseat or power-cycle it, then grade it again"
)


def _load_pynvml() -> ModuleType:
    """The pynvml module, imported on demand. Tests replace this function with a fake."""
    return importlib.import_module("pynvml")


class _NotAvailable:
    """The "NVML did not give it" value; every typed reader below turns it into None."""

    def __repr__(self) -> str:
        return "NA"

    def __bool__(self) -> bool:
        return False


NA: Final = _NotAvailable()


# --- typed readers: the only place pynvml's untyped answers become Python types ---------------


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _str(value: object) -> str | None:
    if isinstance(value, bytes):  # older pynvml returns raw bytes
        value = value.decode(errors="replace")
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _attr(obj: object, name: str) -> object:
    return NA if obj is NA else getattr(obj, name, NA)


def _items(value: object) -> list[object]:
    """Elements of a list, tuple or ctypes array answer; [] for anything else."""
    if isinstance(value, list | tuple):
        return list(value)
    if hasattr(value, "__len__") and hasattr(value, "__getitem__"):
        seq = cast("Sequence[object]", value)  # a ctypes array: indexable, not a Sequence
        return [seq[i] for i in range(len(seq))]
    return []


def _ints(value: object, count: int) -> tuple[int, ...] | None:
    """Exactly `count` ints (pynvml returns lists or tuples of them), else None."""
    numbers = [_int(v) for v in _items(value)]
    if len(numbers) != count or any(n is None for n in numbers):
        return None
    return tuple(n for n in numbers if n is not None)


# --- units: NVML's milli-units become the run record's units here and only here ---------------


def _watts(milliwatts: object) -> float | None:
    value = _int(milliwatts)
    return None if value is None else value / 1000.0


def _joules(millijoules: object) -> float | None:
    value = _int(millijoules)
    return None if value is None else value / 1000.0


def _pci_id(value: object) -> str | None:
    """A 32-bit PCI id as nvidia-smi shows it: "0x233010DE" (device 0x2330, vendor 0x10DE).
    0 means the driver did not fill it (NVML leaves the subsystem id 0 where it has none)."""
    number = _int(value)
    if number is None or not 0 < number <= 0xFFFFFFFF:
        return None
    return f"0x{number:08X}"


def _cuda_version(encoded: object) -> str | None:
    """NVML encodes the CUDA driver version as 1000*major + 10*minor (13000 → "13.0")."""
    value = _int(encoded)
    if value is None or value <= 0:
        return None
    return f"{value // 1000}.{value % 1000 // 10}"


# --- the choke point --------------------------------------------------------------------------


def _const(lib: ModuleType, name: str) -> int:
    """An NVML enum value from pynvml; a bindings package too old to have it is unusable."""
    value = getattr(lib, name, None)
    if not isinstance(value, int):
        raise EnvironmentUnusable(
            f"the installed pynvml lacks {name}", hint="upgrade it: pip install -U nvidia-ml-py"
        )
    return value


def _codes(lib: ModuleType, names: Sequence[str]) -> frozenset[int]:
    return frozenset(v for v in (getattr(lib, n, None) for n in names) if isinstance(v, int))


def _clock_pair(answers: Sequence[object]) -> str | None:
    """Application clocks in words: "sm 1980 MHz, memory 2619 MHz"; None if either is unread."""
    sm, mem = (_int(a) for a in answers)
    return None if sm is None or mem is None else clocks_text(sm, mem)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _label(query: str, args: Sequence[object]) -> str:
    """The query as the report shows it: function name plus its enum arguments, not handles."""
    shown = [str(a) for a in args if isinstance(a, int | str)]
    return f"{query}({', '.join(shown)})" if shown else query


class _Querier:
    """Runs NVML calls for one scope (the session, or one card) and remembers what failed."""

    def __init__(self, lib: ModuleType, where: str, handle: object = None) -> None:
        self._lib = lib
        self.where = where
        self._handle = handle  # set for a card: lets an unknown error be checked against it
        self._absent_codes = _codes(lib, _ABSENT_CODES)
        self._lost_codes = _codes(lib, _LOST_CODES)
        self._unknown_code = getattr(lib, "NVML_ERROR_UNKNOWN", None)
        self.unsupported: dict[str, None] = {}  # an ordered set of labels
        self.unreadable: dict[str, str] = {}  # label → the error, latest wins
        self.lost: DeviceLost | None = None
        self.last_absent = False  # the last call's NA meant "not offered here", not a failure

    def call(self, query: str | tuple[str, ...], *args: object, quiet: str = "") -> object:
        """The answer of the first of `query`'s functions that gives one, or NA.

        A tuple names a newer function first and its older equivalent after it; the older one is
        asked only when the newer one is absent, and only when both are is the query unsupported.
        `quiet` names an NVML error (e.g. NVML_ERROR_TIMEOUT) that is an ordinary answer here.
        """
        if self.lost is not None:  # a lost card stays lost: no call reaches NVML again
            raise DeviceLost(self.lost.message, self.lost.hint)
        names = (query,) if isinstance(query, str) else query
        absent: list[str] = []
        self.last_absent = False
        for name in names:
            label = _label(name, args)
            function = getattr(self._lib, name, None)
            if not callable(function):  # pynvml older than the function
                absent.append(label)
                continue
            try:
                result: object = function(*args)
            except Exception as exc:  # sorted below: absent, quiet, lost, or remembered
                if self._is_absent(label, exc, quiet):
                    absent.append(label)
                continue
            return result
        self.unsupported.update(dict.fromkeys(absent))
        self.last_absent = len(absent) == len(names)
        return NA

    def _is_absent(self, label: str, exc: Exception, quiet: str) -> bool:
        if self._is_version_mismatch(exc):  # pynvml's own "function not in this driver"
            return True
        code = self._code_of(exc)
        if code is not None and code == getattr(self._lib, quiet, None):
            return False
        return self.sort_failure(label, code, _describe(exc))

    def sort_failure(self, label: str, code: int | None, text: str) -> bool:
        """True when the failure means "not offered here"; raises DeviceLost when the card is gone;
        otherwise remembers it as unreadable. Also used for per-field return codes."""
        if code in self._absent_codes:
            return True
        if code in self._lost_codes or (code == self._unknown_code and self._card_vanished()):
            lost = DeviceLost(f"{self.where} lost during {label} ({text})", hint=_LOST_HINT)
            if self._handle is not None:  # only a card is lost for good, not the session
                self.lost = lost
            raise lost
        self.unreadable[label] = text
        return False

    def _card_vanished(self) -> bool:
        """After an unknown error, ask the card something every card answers (its temperature):
        a lost or unknown answer again means the card is gone, not that one query misbehaved."""
        if self._handle is None:
            return False
        try:
            self._lib.nvmlDeviceGetTemperature(
                self._handle, _const(self._lib, "NVML_TEMPERATURE_GPU")
            )
        except Exception as exc:
            code = self._code_of(exc)
            return code in self._lost_codes or code == self._unknown_code
        return False

    def describe_code(self, code: int | None) -> str:
        """An NVML return code as pynvml names its error, e.g. "NVMLError_NotSupported: ..."."""
        error_class = getattr(self._lib, "NVMLError", None)
        try:
            return _describe(error_class(code)) if callable(error_class) else f"NVML error {code}"
        except Exception:  # a code pynvml does not know
            return f"NVML error {code}"

    def _code_of(self, exc: Exception) -> int | None:
        error_class = getattr(self._lib, "NVMLError", None)
        if isinstance(error_class, type) and isinstance(exc, error_class):
            return _int(getattr(exc, "value", None))
        return None

    def _is_version_mismatch(self, exc: Exception) -> bool:
        mismatch = getattr(self._lib, "NVMLLibraryMismatchError", None)
        return isinstance(mismatch, type) and isinstance(exc, mismatch)


# --- opening a session ------------------------------------------------------------------------


def _load_or_explain() -> ModuleType:
    try:
        return _load_pynvml()
    except ImportError as exc:
        raise EnvironmentUnusable(
            "the NVML Python bindings (pynvml) are not installed",
            hint="pip install nvidia-ml-py",
        ) from exc


def _init_failure(lib: ModuleType, exc: Exception) -> EnvironmentUnusable:
    """Why nvmlInit failed, with how to fix it."""
    code = _int(getattr(exc, "value", None))
    explained = {
        "NVML_ERROR_LIBRARY_NOT_FOUND": (
            "the NVML library (libnvidia-ml.so.1) was not found",
            "install the NVIDIA driver; in a container, start it with the NVIDIA container "
            "toolkit (docker run --gpus all)",
        ),
        "NVML_ERROR_DRIVER_NOT_LOADED": (
            "the NVIDIA kernel driver is not loaded",
            "load it (sudo modprobe nvidia) or reboot after installing it; `nvidia-smi` must work",
        ),
        "NVML_ERROR_LIB_RM_VERSION_MISMATCH": (
            "the NVML library and the loaded kernel driver are different versions",
            "reboot (or reload the nvidia kernel modules) after the driver upgrade",
        ),
        "NVML_ERROR_NO_PERMISSION": (
            "no permission to open the NVIDIA device files",
            "run as a user that can read and write /dev/nvidia*",
        ),
    }
    for name, (message, hint) in explained.items():
        if code is not None and code == getattr(lib, name, None):
            return EnvironmentUnusable(message, hint=hint)
    return EnvironmentUnusable(
        f"NVML failed to start ({_describe(exc)})", hint="check that `nvidia-smi` works here"
    )


class Nvml:
    """One NVML session. Open with `Nvml.open()`, close when done (or use it in a `with`)."""

    def __init__(self, lib: ModuleType) -> None:
        self._lib = lib
        self._query = _Querier(lib, "NVML")
        self._devices: list[NvmlDevice] = []
        self._closed = False

    @classmethod
    def open(cls) -> Nvml:
        lib = _load_or_explain()
        try:
            lib.nvmlInit()
        except Exception as exc:
            raise _init_failure(lib, exc) from exc
        return cls(lib)

    def __enter__(self) -> Nvml:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def unreadable(self) -> tuple[tuple[str, str], ...]:
        """Session-level queries that failed unexpectedly: (query, error)."""
        return tuple(self._query.unreadable.items())

    def device_count(self) -> int:
        return _int(self._query.call("nvmlDeviceGetCount")) or 0

    def device(self, index: int) -> NvmlDevice:
        count = self.device_count()
        if not 0 <= index < count:
            raise EnvironmentUnusable(
                f"NVML has no GPU at index {index}",
                hint=f"NVML sees {count} GPU(s); `nvidia-smi -L` lists them",
            )
        handle = self._query.call("nvmlDeviceGetHandleByIndex", index)
        if handle is NA:
            raise EnvironmentUnusable(
                f"NVML could not open GPU {index}", hint="check `nvidia-smi -i {index}`"
            )
        return self._track(NvmlDevice(self, handle, f"GPU {index}"))

    def device_by_pci_bus_id(self, bus_id: str) -> NvmlDevice:
        handle = self._query.call("nvmlDeviceGetHandleByPciBusId", bus_id)
        if handle is NA:
            raise EnvironmentUnusable(
                f"NVML has no GPU at PCI bus id {bus_id}",
                hint="`nvidia-smi --query-gpu=pci.bus_id --format=csv` lists them",
            )
        return self._track(NvmlDevice(self, handle, f"GPU {bus_id}"))

    def driver_version(self) -> str | None:
        return _str(self._query.call("nvmlSystemGetDriverVersion"))

    def cuda_driver_version(self) -> str | None:
        return _cuda_version(
            self._query.call(
                ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion")
            )
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for device in self._devices:
            device._release()
        self._query.call("nvmlShutdown")

    def _track(self, device: NvmlDevice) -> NvmlDevice:
        self._devices.append(device)
        return device


# --- one card ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NvLinks:
    """HealthCounters' NVLink fields, as read (issue 14)."""

    status: Literal["read", "none", "unreadable"]
    links: tuple[NvLinkReading, ...] = ()
    speed_mbps: float | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "nvlink_status": self.status,
            "nvlink": None if self.status == "unreadable" else self.links,
            "nvlink_speed_mbps": self.speed_mbps,
        }


class NvmlDevice:
    """One card, read through NVML. Obtain it from `Nvml.device` or `Nvml.device_by_pci_bus_id`."""

    def __init__(self, session: Nvml, handle: object, where: str) -> None:
        self._session = session
        self._lib = session._lib
        self._handle = handle
        self._query = _Querier(self._lib, where, handle)
        self._event_set: object = NA
        self._events_tried = False

    # what could not be read, for the report
    @property
    def unsupported(self) -> tuple[str, ...]:
        """Queries this card or driver does not offer (their values are None)."""
        return tuple(self._query.unsupported)

    @property
    def unreadable(self) -> tuple[tuple[str, str], ...]:
        """Queries that failed unexpectedly: (query, error). Their values are None."""
        return tuple(self._query.unreadable.items())

    def _get(self, query: str | tuple[str, ...], *args: object) -> object:
        return self._query.call(query, self._handle, *args)

    def _c(self, name: str) -> int:
        return _const(self._lib, name)

    # --- identity ------------------------------------------------------------------------------
    def identity(self, backend: str, index: int) -> CardIdentity:
        sm_clock, memory_clock = self.max_clocks_mhz()
        pci = self._get("nvmlDeviceGetPciInfo")
        return CardIdentity(
            name=_str(self._get("nvmlDeviceGetName")) or "unknown NVIDIA GPU",
            backend=backend,
            index=index,
            uuid=_str(self._get("nvmlDeviceGetUUID")),
            serial=_str(self._get("nvmlDeviceGetSerial")),
            board_part_number=_str(self._get("nvmlDeviceGetBoardPartNumber")),
            vbios=_str(self._get("nvmlDeviceGetVbiosVersion")),
            inforom=_str(self._get("nvmlDeviceGetInforomImageVersion")),
            pci_bus_id=_str(_attr(pci, "busId")),
            driver_version=self._session.driver_version(),
            cuda_driver_version=self._session.cuda_driver_version(),
            memory_total_bytes=_int(_attr(self._get("nvmlDeviceGetMemoryInfo"), "total")),
            sm_count=self._sm_count(),
            compute_capability=self._compute_capability(),
            memory_bus_width_bits=self.memory_bus_width_bits(),
            max_sm_clock_mhz=sm_clock,
            max_memory_clock_mhz=memory_clock,
            pcie_gen_max=_int(self._get("nvmlDeviceGetMaxPcieLinkGeneration")),
            pcie_width_max=_int(self._get("nvmlDeviceGetMaxPcieLinkWidth")),
            power_limit_default_w=_watts(self._get("nvmlDeviceGetPowerManagementDefaultLimit")),
            pci_device_id=_pci_id(_attr(pci, "pciDeviceId")),
            pci_subsystem_id=_pci_id(_attr(pci, "pciSubSystemId")),
            power_limit_max_w=self._power_limit_max_w(),
            pcie_gen_gpu_max=_int(self._get("nvmlDeviceGetGpuMaxPcieLinkGeneration")),
        )

    def pci_bus_id(self) -> str | None:
        """NVML's form, e.g. "00000000:00:06.0" (domain of 8 hex digits)."""
        return _str(_attr(self._get("nvmlDeviceGetPciInfo"), "busId"))

    def _power_limit_max_w(self) -> float | None:
        # [min, max] in milliwatts: the range nvidia-smi -pl accepts (the VBIOS sets it)
        limits = _ints(self._get("nvmlDeviceGetPowerManagementLimitConstraints"), 2)
        return None if limits is None else _watts(limits[1])

    def _sm_count(self) -> int | None:
        # NVML reports it only through device attributes, which drivers give for MIG only.
        return _int(_attr(self._get("nvmlDeviceGetAttributes"), "multiprocessorCount"))

    def _compute_capability(self) -> str | None:
        pair = _ints(self._get("nvmlDeviceGetCudaComputeCapability"), 2)
        return None if pair is None else f"{pair[0]}.{pair[1]}"

    def memory_bus_width_bits(self) -> int | None:
        return _int(self._get("nvmlDeviceGetMemoryBusWidth"))

    def max_clocks_mhz(self) -> tuple[float | None, float | None]:
        """(SM, memory) maximum clocks in MHz."""
        return (
            _float(self._get("nvmlDeviceGetMaxClockInfo", self._c("NVML_CLOCK_SM"))),
            _float(self._get("nvmlDeviceGetMaxClockInfo", self._c("NVML_CLOCK_MEM"))),
        )

    # --- health counters -----------------------------------------------------------------------
    def counters(self) -> HealthCounters:
        rows = _ints(self._get("nvmlDeviceGetRemappedRows"), 4)
        ecc_now, ecc_pending = self._ecc_modes()
        # Cards before Ampere retire pages where later ones remap rows (NVML answers "not
        # supported" for page retirement on them: H100 and H200, tests/data/nvml): asked only
        # where the row remapper gives no answer.
        sbe, dbe, retire_pending = (None, None, None) if rows is not None else self._retired()
        return HealthCounters(
            ecc_enabled=ecc_now,
            ecc_volatile_corrected=self._ecc("CORRECTED", "VOLATILE"),
            ecc_volatile_uncorrected=self._ecc("UNCORRECTED", "VOLATILE"),
            ecc_aggregate_corrected=self._ecc("CORRECTED", "AGGREGATE"),
            ecc_aggregate_uncorrected=self._ecc("UNCORRECTED", "AGGREGATE"),
            remapped_rows_correctable=None if rows is None else rows[0],
            remapped_rows_uncorrectable=None if rows is None else rows[1],
            remapped_rows_pending=None if rows is None else bool(rows[2]),
            remapped_rows_failure=None if rows is None else bool(rows[3]),
            row_remap_histogram=self._row_remap_histogram(),
            pcie_gen_current=_int(self._get("nvmlDeviceGetCurrPcieLinkGeneration")),
            pcie_width_current=_int(self._get("nvmlDeviceGetCurrPcieLinkWidth")),
            pcie_replay_count=_int(self._get("nvmlDeviceGetPcieReplayCounter")),
            # the enforced limit is what caps the card; older drivers only know the set one
            power_limit_w=_watts(
                self._get(("nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit"))
            ),
            temperature_c=self._temperature(),
            temperature_slowdown_c=self._threshold("NVML_TEMPERATURE_THRESHOLD_SLOWDOWN"),
            temperature_shutdown_c=self._threshold("NVML_TEMPERATURE_THRESHOLD_SHUTDOWN"),
            memory_temperature_max_c=self._threshold("NVML_TEMPERATURE_THRESHOLD_MEM_MAX"),
            energy_j=self._energy_j(),
            clocks_event_reasons=self._clocks_event_reasons(),
            ecc_pending_enabled=ecc_pending,
            # with ECC off there are no counts to split (ecc_disabled says so)
            ecc_aggregate_uncorrected_dram=None if ecc_now is False else self._uncorrected_dram(),
            ecc_aggregate_uncorrected_sram=None if ecc_now is False else self._uncorrected_sram(),
            retired_pages_sbe=sbe,
            retired_pages_dbe=dbe,
            retired_pages_pending=retire_pending,
            **self._nvlink().fields(),
            **self._pcie_errors(),
        )

    def _ecc_modes(self) -> tuple[bool | None, bool | None]:
        """(current, pending) ECC mode: the pending one takes effect at the next reboot."""
        modes = _ints(self._get("nvmlDeviceGetEccMode"), 2)
        if modes is None:
            return None, None
        enabled = self._c("NVML_FEATURE_ENABLED")
        return modes[0] == enabled, modes[1] == enabled

    def _uncorrected_at(self, locations: Sequence[str]) -> tuple[int | None, bool]:
        """Lifetime (aggregate) uncorrectable ECC errors summed over the locations the card
        counts, and whether it counts none of them. The sum is None when it counts none, or when
        one of them fails to read (a partial sum would pass for the whole)."""
        total: int | None = None
        for name in locations:
            location = getattr(self._lib, name, None)
            if not isinstance(location, int):  # bindings older than the location
                self._query.unsupported[name] = None
                continue
            count = _int(
                self._get(
                    "nvmlDeviceGetMemoryErrorCounter",
                    self._c("NVML_MEMORY_ERROR_TYPE_UNCORRECTED"),
                    self._c("NVML_AGGREGATE_ECC"),
                    location,
                )
            )
            if count is None:
                if not self._query.last_absent:
                    return None, False
                continue
            total = (total or 0) + count
        return total, total is None

    def _uncorrected_dram(self) -> int | None:
        # one enum value under two names: older bindings know only DEVICE_MEMORY
        name = next((n for n in _DRAM_LOCATIONS if hasattr(self._lib, n)), _DRAM_LOCATIONS[0])
        return self._uncorrected_at((name,))[0]

    def _uncorrected_sram(self) -> int | None:
        """On-chip (SRAM) lifetime uncorrectable errors: one location from Turing on, the sum of
        the on-chip units (caches, register file, texture, CBU) on earlier cards."""
        sram, absent = self._uncorrected_at((_SRAM_LOCATION,))
        return self._uncorrected_at(_SRAM_LOCATIONS_BEFORE_TURING)[0] if absent else sram

    def _retired(self) -> tuple[int | None, int | None, bool | None]:
        """Retired pages (single-bit, double-bit) and whether a retirement awaits a reboot."""
        sbe = self._retired_pages("NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS")
        dbe = self._retired_pages("NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR")
        pending = _int(self._get("nvmlDeviceGetRetiredPagesPendingStatus"))
        return sbe, dbe, None if pending is None else pending == self._c("NVML_FEATURE_ENABLED")

    def _retired_pages(self, cause: str) -> int | None:
        pages = self._get("nvmlDeviceGetRetiredPages", self._c(cause))  # their addresses
        return len(pages) if isinstance(pages, list | tuple) else None

    def _ecc(self, error_type: str, counter: str) -> int | None:
        return _int(
            self._get(
                "nvmlDeviceGetTotalEccErrors",
                self._c(f"NVML_MEMORY_ERROR_TYPE_{error_type}"),
                self._c(f"NVML_{counter}_ECC"),
            )
        )

    def _row_remap_histogram(self) -> RowRemapHistogram | None:
        answer = self._get("nvmlDeviceGetRowRemapperHistogram")
        banks = _ints(
            [_attr(answer, name) for name in ("max", "high", "partial", "low", "none")], 5
        )
        if banks is None:
            return None
        most, high, partial, low, none = banks  # banks by how many spare rows they have left
        return RowRemapHistogram(max=most, high=high, partial=partial, low=low, none=none)

    def _threshold(self, name: str) -> float | None:
        return _float(self._get("nvmlDeviceGetTemperatureThreshold", self._c(name)))

    def _temperature(self) -> float | None:
        return _float(self._get("nvmlDeviceGetTemperature", self._c("NVML_TEMPERATURE_GPU")))

    def _energy_j(self) -> float | None:
        return _joules(self._get("nvmlDeviceGetTotalEnergyConsumption"))

    def _clocks_event_reasons(self) -> int | None:
        # "throttle reasons" were renamed "clocks event reasons" in driver 535
        return _int(
            self._get(
                (
                    "nvmlDeviceGetCurrentClocksEventReasons",
                    "nvmlDeviceGetCurrentClocksThrottleReasons",
                )
            )
        )

    # --- readiness settings (readiness.py) -------------------------------------------------------
    def settings(self) -> dict[str, SettingReading]:
        """MIG mode, compute mode, application clocks, persistence and confidential computing, as
        NVML reports them. NVML has no query for locked clocks (nvidia-smi -lgc/-lmc set them;
        only a reset undoes them): that one is unreadable, never assumed default."""
        readings = [
            self._mig_mode(),
            self._compute_mode(),
            self._applications_clocks(),
            SettingReading(
                "locked_clocks",
                "unreadable",
                detail="NVML offers no query for locked clocks: run the reset to be sure",
            ),
            self._persistence_mode(),
            self._confidential_computing(),
        ]
        return {r.key: r for r in readings}

    def _reading(self, key: str, answer: object, value: str | None) -> SettingReading:
        """A reading from one NVML answer: NA is "not supported" or a failed query (never a
        value); an answer that is no known value is unreadable too."""
        if answer is NA:
            if self._query.last_absent:
                return SettingReading(key, "not_supported")
            return SettingReading(key, "unreadable", detail="the NVML query failed")
        if value is None:
            return SettingReading(key, "unreadable", detail=f"unexpected answer {answer!r}")
        return SettingReading(key, "read", value)

    def _enabled_word(self, value: object) -> str | None:
        code = _int(value)
        if code is None:
            return None
        enabled = getattr(self._lib, "NVML_FEATURE_ENABLED", 1)
        disabled = getattr(self._lib, "NVML_FEATURE_DISABLED", 0)
        return {enabled: "enabled", disabled: "disabled"}.get(code)

    def _mig_mode(self) -> SettingReading:
        answer = self._get("nvmlDeviceGetMigMode")  # (current, pending)
        modes = _ints(answer, 2)
        if modes is None:
            return self._reading("mig_mode", answer, None)
        current, pending = self._enabled_word(modes[0]), self._enabled_word(modes[1])
        value = (
            current
            if current == pending or pending is None
            else f"{current}, {pending} after reset"
        )
        return self._reading("mig_mode", answer, value if current else None)

    def _compute_mode(self) -> SettingReading:
        answer = self._get("nvmlDeviceGetComputeMode")
        names = {
            getattr(self._lib, "NVML_COMPUTEMODE_DEFAULT", 0): "default",
            getattr(self._lib, "NVML_COMPUTEMODE_EXCLUSIVE_THREAD", 1): "exclusive thread",
            getattr(self._lib, "NVML_COMPUTEMODE_PROHIBITED", 2): "prohibited",
            getattr(self._lib, "NVML_COMPUTEMODE_EXCLUSIVE_PROCESS", 3): "exclusive process",
        }
        code = _int(answer)
        return self._reading("compute_mode", answer, names.get(code) if code is not None else None)

    def _applications_clocks(self) -> SettingReading:
        sm, mem = self._c("NVML_CLOCK_SM"), self._c("NVML_CLOCK_MEM")
        now = [self._get("nvmlDeviceGetApplicationsClock", c) for c in (sm, mem)]
        first = next((a for a in now if a is NA), None)
        if first is not None:
            return self._reading("applications_clocks", first, None)
        default = [self._get("nvmlDeviceGetDefaultApplicationsClock", c) for c in (sm, mem)]
        reading = self._reading("applications_clocks", now[0], _clock_pair(now))
        return SettingReading(
            reading.key, reading.state, reading.value, _clock_pair(default), reading.detail
        )

    def _persistence_mode(self) -> SettingReading:
        answer = self._get("nvmlDeviceGetPersistenceMode")
        return self._reading("persistence_mode", answer, self._enabled_word(answer))

    def _confidential_computing(self) -> SettingReading:
        # a system-wide state (every GPU of the host shares it): no device handle
        answer = self._query.call("nvmlSystemGetConfComputeState")
        if answer is NA:
            return self._reading("confidential_computing", answer, None)
        feature = _int(_attr(answer, "ccFeature"))
        value = {0: "off", 1: "on"}.get(feature) if feature is not None else None
        return self._reading("confidential_computing", answer, value)

    # --- PCIe link and NVLink (issue 14) -------------------------------------------------------
    def pcie_link_now(self) -> tuple[int | None, int | None]:
        """(generation, width) the link runs at now; read while copies are in flight, since an
        idle link drops its generation to save power."""
        return (
            _int(self._get("nvmlDeviceGetCurrPcieLinkGeneration")),
            _int(self._get("nvmlDeviceGetCurrPcieLinkWidth")),
        )

    def _nvlink(self) -> _NvLinks:
        """The card's NVLinks. The link count comes from a field value: "not supported" there (a
        PCIe card; NVLink in a VM) means no links; a failure means the checks could not be made,
        never that the links are healthy."""
        field = "NVML_FI_DEV_NVLINK_LINK_COUNT"
        unreadable_before = len(self._query.unreadable)
        count = self._field_value(field)
        if count is None:
            absent = field in self._query.unsupported
            failed = len(self._query.unreadable) > unreadable_before
            return _NvLinks("none" if absent and not failed else "unreadable")
        if count <= 0:
            return _NvLinks("none")
        return _NvLinks(
            "read",
            tuple(self._nvlink_reading(link) for link in range(int(count))),
            self._field_value("NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON"),
        )

    def _nvlink_reading(self, link: int) -> NvLinkReading:
        state = _int(self._get("nvmlDeviceGetNvLinkState", link))

        def errors(counter: str) -> int | None:
            return _int(self._get("nvmlDeviceGetNvLinkErrorCounter", link, self._c(counter)))

        return NvLinkReading(
            link=link,
            active=None if state is None else state == self._c("NVML_FEATURE_ENABLED"),
            version=_int(self._get("nvmlDeviceGetNvLinkVersion", link)),
            replay_errors=errors("NVML_NVLINK_ERROR_DL_REPLAY"),
            recovery_errors=errors("NVML_NVLINK_ERROR_DL_RECOVERY"),
            crc_flit_errors=errors("NVML_NVLINK_ERROR_DL_CRC_FLIT"),
            crc_data_errors=errors("NVML_NVLINK_ERROR_DL_CRC_DATA"),
        )

    def _pcie_errors(self) -> dict[str, Any]:
        """HealthCounters' PCIe error counters, all asked in one field-value call. A counter NVML
        (or a pynvml too old to name it) does not offer is None and not judged; any other
        failure makes the whole reading "unreadable": those checks were not made."""
        counts: dict[str, int | None] = dict.fromkeys(PCIE_ERROR_COUNTERS)
        asked: dict[int, str] = {}
        for name, (field, _, _) in PCIE_ERROR_COUNTERS.items():
            field_id = getattr(self._lib, field, None)
            if isinstance(field_id, int):
                asked[field_id] = name
            else:
                self._query.unsupported[field] = None
        answer = self._get("nvmlDeviceGetFieldValues", list(asked)) if asked else NA
        failed = bool(asked) and answer is NA and not self._query.last_absent
        unanswered = set(asked.values()) if answer is not NA else set()
        for entry in _items(answer):
            answered = asked.get(_int(_attr(entry, "fieldId")) or -1)
            if answered is None:
                continue
            unanswered.discard(answered)
            counts[answered], outcome = self._field_entry(PCIE_ERROR_COUNTERS[answered][0], entry)
            failed = failed or outcome == "failed"
        for name in unanswered:  # NVML answered, but not for this field: not read
            self._query.unreadable[PCIE_ERROR_COUNTERS[name][0]] = "no entry in NVML's answer"
            failed = True
        if failed:
            status = "unreadable"
        elif all(count is None for count in counts.values()):
            status = "not_supported"
        else:
            status = "read"
        return {"pcie_errors_status": status, "pcie_errors": counts}

    def _field_entry(
        self, field: str, entry: object
    ) -> tuple[int | None, Literal["read", "absent", "failed"]]:
        """A counter's value from its field-value entry, and whether it was read, is not offered
        here, or failed (remembered in unreadable)."""
        code = _int(_attr(entry, "nvmlReturn"))
        if code is None or code != self._c("NVML_SUCCESS"):
            if self._query.sort_failure(field, code, self._query.describe_code(code)):
                self._query.unsupported[field] = None
                return None, "absent"
            return None, "failed"
        member = self._value_member(_int(_attr(entry, "valueType")))
        value = None if member is None else _int(_attr(_attr(entry, "value"), member))
        if value is None:
            self._query.unreadable[field] = "a value of a type gpuhealth does not read"
            return None, "failed"
        return value, "read"

    # --- telemetry -----------------------------------------------------------------------------
    def telemetry(self, t_s: float) -> TelemetrySample:
        return TelemetrySample(
            t_s=t_s,
            temperature_c=self._temperature(),
            memory_temperature_c=self._field_value("NVML_FI_DEV_MEMORY_TEMP"),
            power_w=_watts(self._get("nvmlDeviceGetPowerUsage")),
            sm_clock_mhz=self._clock("NVML_CLOCK_SM"),
            memory_clock_mhz=self._clock("NVML_CLOCK_MEM"),
            utilization_pct=_float(_attr(self._get("nvmlDeviceGetUtilizationRates"), "gpu")),
            clocks_event_reasons=self._clocks_event_reasons(),
            energy_j=self._energy_j(),
        )

    def _clock(self, name: str) -> float | None:
        return _float(self._get("nvmlDeviceGetClockInfo", self._c(name)))

    def _field_value(self, field: str) -> float | None:
        """One NVML field value. Each field carries its own return code and value type."""
        field_id = getattr(self._lib, field, None)
        if not isinstance(field_id, int):  # pynvml older than the field
            self._query.unsupported[field] = None
            return None
        entries = _items(self._get("nvmlDeviceGetFieldValues", [field_id]))
        if not entries:
            return None
        entry = entries[0]
        code = _int(_attr(entry, "nvmlReturn"))
        if code is None or code != self._c("NVML_SUCCESS"):
            if self._query.sort_failure(field, code, self._query.describe_code(code)):
                self._query.unsupported[field] = None
            return None
        member = self._value_member(_int(_attr(entry, "valueType")))
        return None if member is None else _float(_attr(_attr(entry, "value"), member))

    def _value_member(self, value_type: int | None) -> str | None:
        """The member of the c_nvmlValue_t union that holds a field of this value type."""
        members = {
            "NVML_VALUE_TYPE_DOUBLE": "dVal",
            "NVML_VALUE_TYPE_UNSIGNED_INT": "uiVal",
            "NVML_VALUE_TYPE_UNSIGNED_LONG": "ulVal",
            "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": "ullVal",
            "NVML_VALUE_TYPE_SIGNED_LONG_LONG": "sllVal",
            "NVML_VALUE_TYPE_SIGNED_INT": "siVal",
            "NVML_VALUE_TYPE_UNSIGNED_SHORT": "usVal",
        }
        for name, member in members.items():
            if value_type is not None and value_type == getattr(self._lib, name, None):
                return member
        return None

    # --- processes -----------------------------------------------------------------------------
    def processes(self) -> tuple[ProcessInfo, ...]:
        """Compute and graphics processes on the card, one entry per pid.

        () also when NVML cannot list them: `unsupported`/`unreadable` then name the query.
        """
        found: dict[int, ProcessInfo] = {}
        for query in (
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
        ):
            for process in _items(self._get(query)):
                pid = _int(_attr(process, "pid"))
                if pid is None:
                    continue
                used = _int(_attr(process, "usedGpuMemory"))  # None under WDDM or MIG
                known = found.get(pid)
                if known is None or known.used_memory_bytes is None:
                    found[pid] = ProcessInfo(pid, _process_name(pid), used)
        return tuple(found.values())

    # --- Xid events ----------------------------------------------------------------------------
    def xid_events(self, t_s: float) -> tuple[XidEvent, ...]:
        """Critical Xid events since the last call, stamped t_s; never blocks.

        The event set is registered on the first call, so the first call returns ().
        """
        event_set = self._xid_event_set()
        if event_set is NA:
            return ()
        events: list[XidEvent] = []
        for _ in range(_MAX_EVENTS_PER_POLL):
            data = self._query.call("nvmlEventSetWait_v2", event_set, 0, quiet="NVML_ERROR_TIMEOUT")
            if data is NA:
                break
            code = _int(_attr(data, "eventData"))
            if code is not None:
                events.append(XidEvent(t_s, code, _XID_DESCRIPTIONS.get(code)))
        return tuple(events)

    def _xid_event_set(self) -> object:
        if self._events_tried:
            return self._event_set
        self._events_tried = True
        event_type = getattr(self._lib, "nvmlEventTypeXidCriticalError", None)
        if not isinstance(event_type, int):
            self._query.unsupported["nvmlEventTypeXidCriticalError"] = None
            return NA
        event_set = self._query.call("nvmlEventSetCreate")
        if event_set is NA:
            return NA
        registered = self._get("nvmlDeviceRegisterEvents", event_type, event_set)
        if registered is NA:
            self._query.call("nvmlEventSetFree", event_set)
            return NA
        self._event_set = event_set
        return event_set

    def _release(self) -> None:
        """Free the event set; a lost card has nothing left to free."""
        if self._event_set is NA or self._query.lost is not None:
            return
        event_set, self._event_set = self._event_set, NA
        with contextlib.suppress(DeviceLost):  # closing a lost card is not a new failure
            self._query.call("nvmlEventSetFree", event_set)


def _process_name(pid: int) -> str | None:
    """The command name of pid. NVML reports host pids; inside a container without the host's pid
    namespace /proc may not have them, and then the name is None."""
    try:
        return (_PROC_ROOT / str(pid) / "comm").read_text(errors="replace").strip() or None
    except OSError:
        return None
