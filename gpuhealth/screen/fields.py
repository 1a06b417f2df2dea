"""The fields a screen reads, by their path in each driver's layout, and their values parsed.

Paths are key_of() names joined by "/", below the GPU's block; each field lists every layout seen
(text: drivers 470 to 570; XML: DTD v11 to v12), first match wins. A field that is absent from the
report, or reads "N/A", "Unknown Error", "Not Supported" and the like, is unreadable: kept with its
line and listed, never taken for a healthy zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from gpuhealth.screen.tree import Node

Kind = Literal["text", "int", "float", "bool"]

# Values nvidia-smi prints where it has none: the field could not be read.
_UNREADABLE = re.compile(
    r"^\[?(n/a|unknown error|not supported|not available|insufficient permissions|"
    r"gpu is lost|unknown|requested functionality has been deprecated)\]?$",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?")
_TRUE = {"yes", "enabled", "active"}
_FALSE = {"no", "disabled", "not active"}


@dataclass(frozen=True)
class Spec:
    label: str  # in the buyer's words, for "not readable" lists
    kind: Kind
    text: tuple[str, ...]
    xml: tuple[str, ...]


def _ecc(scope: str, text: str, xml: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (f"ecc errors/{scope}/{text}",), (f"ecc_errors/{scope}/{xml}",)


def _ecc_spec(label: str, scope: str, text: str, xml: str) -> Spec:
    paths = _ecc(scope, text, xml)
    return Spec(label, "int", *paths)


_THROTTLE_TEXT = ("clocks event reasons", "clocks throttle reasons")
_THROTTLE_XML = (
    ("clocks_event_reasons", "clocks_event_reason"),
    ("clocks_throttle_reasons", "clocks_throttle_reason"),
)


def _throttle(label: str, text: str, xml: str) -> Spec:
    texts = tuple(f"{section}/{text}" for section in _THROTTLE_TEXT)
    # 550 nests the hardware slowdown causes under "HW Slowdown"
    nested = tuple(f"{s}/hw slowdown/{text}" for s in _THROTTLE_TEXT if text != "hw slowdown")
    xmls = tuple(f"{section}/{prefix}_{xml}" for section, prefix in _THROTTLE_XML)
    return Spec(label, "bool", texts + nested, xmls)


def _power(label: str, text: tuple[str, ...], xml: tuple[str, ...]) -> Spec:
    sections_text = ("gpu power readings", "power readings")
    sections_xml = ("gpu_power_readings", "power_readings")
    return Spec(
        label,
        "float",
        tuple(f"{s}/{t}" for s in sections_text for t in text),
        tuple(f"{s}/{x}" for s in sections_xml for x in xml),
    )


_HIST = ("max", "high", "partial", "low", "none")

SPECS: dict[str, Spec] = {
    "name": Spec("product name", "text", ("product name",), ("product_name",)),
    "serial": Spec("serial number", "text", ("serial number",), ("serial",)),
    "uuid": Spec("GPU UUID", "text", ("gpu uuid",), ("uuid",)),
    "vbios": Spec("VBIOS version", "text", ("vbios version",), ("vbios_version",)),
    "board_part_number": Spec(
        "board part number", "text", ("board part number",), ("board_part_number",)
    ),
    "inforom": Spec(
        "InfoROM image version",
        "text",
        ("inforom version/image version",),
        ("inforom_version/img_version",),
    ),
    "pci_device_id": Spec("PCI device id", "text", ("pci/device id",), ("pci/pci_device_id",)),
    "pci_subsystem_id": Spec(
        "PCI subsystem id", "text", ("pci/sub system id",), ("pci/pci_sub_system_id",)
    ),
    "memory_total_mib": Spec(
        "memory size", "int", ("fb memory usage/total",), ("fb_memory_usage/total",)
    ),
    "pcie_gen_max": Spec(
        "PCIe generation (max)",
        "int",
        ("pci/gpu link info/pcie generation/max",),
        ("pci/pci_gpu_link_info/pcie_gen/max_link_gen",),
    ),
    "pcie_gen_current": Spec(
        "PCIe generation (current)",
        "int",
        ("pci/gpu link info/pcie generation/current",),
        ("pci/pci_gpu_link_info/pcie_gen/current_link_gen",),
    ),
    "pcie_width_max": Spec(
        "PCIe link width (max)",
        "int",
        ("pci/gpu link info/link width/max",),
        ("pci/pci_gpu_link_info/link_widths/max_link_width",),
    ),
    "pcie_width_current": Spec(
        "PCIe link width (current)",
        "int",
        ("pci/gpu link info/link width/current",),
        ("pci/pci_gpu_link_info/link_widths/current_link_width",),
    ),
    "utilization_pct": Spec(
        "GPU utilization", "int", ("utilization/gpu",), ("utilization/gpu_util",)
    ),
    "ecc_current": Spec("ECC mode", "bool", ("ecc mode/current",), ("ecc_mode/current_ecc",)),
    "ecc_pending": Spec(
        "ECC mode after reboot", "bool", ("ecc mode/pending",), ("ecc_mode/pending_ecc",)
    ),
    # Ampere on: DRAM and SRAM counts (550 splits SRAM uncorrectable into parity and SEC-DED)
    "agg_dram_unc": _ecc_spec(
        "lifetime uncorrectable ECC (card memory)",
        "aggregate",
        "dram uncorrectable",
        "dram_uncorrectable",
    ),
    "agg_dram_cor": _ecc_spec(
        "lifetime correctable ECC (card memory)",
        "aggregate",
        "dram correctable",
        "dram_correctable",
    ),
    "agg_sram_unc": _ecc_spec(
        "lifetime uncorrectable ECC (SRAM)", "aggregate", "sram uncorrectable", "sram_uncorrectable"
    ),
    "agg_sram_unc_parity": _ecc_spec(
        "lifetime uncorrectable ECC (SRAM, parity)",
        "aggregate",
        "sram uncorrectable parity",
        "sram_uncorrectable_parity",
    ),
    "agg_sram_unc_secded": _ecc_spec(
        "lifetime uncorrectable ECC (SRAM, SEC-DED)",
        "aggregate",
        "sram uncorrectable sec-ded",
        "sram_uncorrectable_secded",
    ),
    "agg_sram_cor": _ecc_spec(
        "lifetime correctable ECC (SRAM)", "aggregate", "sram correctable", "sram_correctable"
    ),
    "vol_dram_unc": _ecc_spec(
        "uncorrectable ECC since boot (card memory)",
        "volatile",
        "dram uncorrectable",
        "dram_uncorrectable",
    ),
    # Before Ampere: single- and double-bit counts by memory
    "agg_dbe_total": _ecc_spec(
        "lifetime double-bit ECC (total)", "aggregate", "double bit/total", "double_bit/total"
    ),
    "agg_dbe_dram": _ecc_spec(
        "lifetime double-bit ECC (device memory)",
        "aggregate",
        "double bit/device memory",
        "double_bit/device_memory",
    ),
    "agg_sbe_total": _ecc_spec(
        "lifetime single-bit ECC (total)", "aggregate", "single bit/total", "single_bit/total"
    ),
    "vol_dbe_total": _ecc_spec(
        "double-bit ECC since boot (total)", "volatile", "double bit/total", "double_bit/total"
    ),
    "retired_sbe": Spec(
        "retired pages (single-bit)",
        "int",
        ("retired pages/single bit ecc",),
        ("retired_pages/multiple_single_bit_retirement/retired_count",),
    ),
    "retired_dbe": Spec(
        "retired pages (double-bit)",
        "int",
        ("retired pages/double bit ecc",),
        ("retired_pages/double_bit_retirement/retired_count",),
    ),
    "retired_pending": Spec(
        "pending page retirement",
        "bool",
        ("retired pages/pending page blacklist", "retired pages/pending page retirement"),
        ("retired_pages/pending_blacklist", "retired_pages/pending_retirement"),
    ),
    "remap_cor": Spec(
        "remapped rows (correctable)",
        "int",
        ("remapped rows/correctable error",),
        ("remapped_rows/remapped_row_corr",),
    ),
    "remap_unc": Spec(
        "remapped rows (uncorrectable)",
        "int",
        ("remapped rows/uncorrectable error",),
        ("remapped_rows/remapped_row_unc",),
    ),
    "remap_pending": Spec(
        "pending row remap",
        "bool",
        ("remapped rows/pending",),
        ("remapped_rows/remapped_row_pending",),
    ),
    "remap_failure": Spec(
        "row-remap failure",
        "bool",
        ("remapped rows/remapping failure occurred",),
        ("remapped_rows/remapped_row_failure",),
    ),
    **{
        f"hist_{level}": Spec(
            f"spare-row histogram ({level})",
            "int",
            (f"remapped rows/bank remap availability histogram/{level}",),
            (f"remapped_rows/row_remapper_histogram/row_remapper_histogram_{level}",),
        )
        for level in _HIST
    },
    "hw_slowdown": _throttle("HW slowdown", "hw slowdown", "hw_slowdown"),
    "hw_thermal": _throttle("HW thermal slowdown", "hw thermal slowdown", "hw_thermal_slowdown"),
    "hw_power_brake": _throttle(
        "HW power brake slowdown", "hw power brake slowdown", "hw_power_brake_slowdown"
    ),
    "sw_thermal": _throttle("SW thermal slowdown", "sw thermal slowdown", "sw_thermal_slowdown"),
    "power_limit_w": _power(
        "power limit",
        ("current power limit", "enforced power limit", "power limit"),
        ("current_power_limit", "enforced_power_limit", "power_limit"),
    ),
    "power_limit_default_w": _power(
        "default power limit", ("default power limit",), ("default_power_limit",)
    ),
    "power_limit_max_w": _power("max power limit", ("max power limit",), ("max_power_limit",)),
    "max_sm_clock_mhz": Spec("max SM clock", "float", ("max clocks/sm",), ("max_clocks/sm_clock",)),
    "max_memory_clock_mhz": Spec(
        "max memory clock", "float", ("max clocks/memory",), ("max_clocks/mem_clock",)
    ),
}


@dataclass(frozen=True)
class Reading:
    """One field as the report gave it: its parsed value (None: unreadable) and where."""

    key: str
    value: str | int | float | bool | None
    raw: str | None  # as written; None: the field is not in the report
    line: int | None
    why: str | None = None  # why unreadable

    @property
    def label(self) -> str:
        return SPECS[self.key].label

    def described(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{self.label} ({where}{self.why})"


def read_fields(root: Node, kind: str) -> dict[str, Reading]:
    return {key: _read(root, key, spec, kind) for key, spec in SPECS.items()}


def _read(root: Node, key: str, spec: Spec, kind: str) -> Reading:
    paths = spec.xml if kind == "xml" else spec.text
    node = next((n for p in paths if (n := root.find(p)) is not None), None)
    if node is None:
        # a section that is N/A as a whole ("Remapped Rows : N/A") stands where the field would be
        for path in paths:
            parts = path.split("/")
            for depth in range(len(parts) - 1, 0, -1):
                section = root.find("/".join(parts[:depth]))
                if section is not None and section.value and _UNREADABLE.match(section.value):
                    return Reading(key, None, section.value, section.line, repr(section.value))
        return Reading(key, None, None, None, "not in the report")
    raw = node.value
    if raw is None or _UNREADABLE.match(raw):
        return Reading(key, None, raw, node.line, f"{raw!r}" if raw else "empty")
    value = _parse(raw, spec.kind)
    if value is None:
        return Reading(key, None, raw, node.line, f"{raw!r}, expected {_EXPECTED[spec.kind]}")
    return Reading(key, value, raw, node.line)


_EXPECTED = {
    "text": "text",
    "int": "a number",
    "float": "a number",
    "bool": "Yes/No, Enabled/Disabled or Active/Not Active",
}


def _parse(raw: str, kind: Kind) -> str | int | float | bool | None:
    if kind == "text":
        return raw
    if kind == "bool":
        word = raw.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else None
    found = _NUMBER.match(raw.strip())
    if found is None:
        return None
    return int(float(found.group(0))) if kind == "int" else float(found.group(0))
