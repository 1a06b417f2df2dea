"""A GPU's report fields into gpuhealth's own findings, graded by the grade's policy.

The counters go through the same functions as a graded card's NVML counters
(findings.counter_findings, registry, vbios), read once: with nothing measured, changes during a
run cannot happen, and what the report holds is the card's history. What only a report can say is
judged here with the same finding codes: a link below its maximum (the generation only while the
card is busy: an idle link trains down to save power), a hardware slowdown or power brake active
at the moment of the report, a lowered power limit, and fields the report could not read.

A screen never gives A: a card whose report holds no health finding is "not tested", since
nothing was measured (gpuhealth grade does that).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuhealth import __version__
from gpuhealth.errors import EXIT_BAD_CARD, EXIT_INCOMPLETE, EXIT_OK
from gpuhealth.judge.findings import counter_findings, vbios_findings
from gpuhealth.judge.grading import Policy, grade
from gpuhealth.judge.profiles import Profile, builtin_profiles, match_profile
from gpuhealth.judge.registry import reported_identity_findings
from gpuhealth.models import (
    SCHEMA_VERSION,
    CardIdentity,
    Finding,
    Grade,
    HealthCounters,
    RowRemapHistogram,
    RunRecord,
)
from gpuhealth.screen.fields import Reading, read_fields
from gpuhealth.screen.tree import GpuSection, Report

NOT_TESTED = "NOT TESTED"
NOT_TESTED_DISPOSITION = (
    "No health finding in the report, but nothing was measured: grade the card "
    "(gpuhealth grade) before it is sold as working."
)
SCREEN_NOTE = "screened from an nvidia-smi report: counters read, nothing measured"
# A link is judged against its maximum generation only while the card is this busy: an idle
# link trains down to a lower generation to save power (NVIDIA's PCIe power management).
BUSY_UTILIZATION_PCT = 50
# Registry fields an nvidia-smi report does not print.
NOT_IN_REPORT = ("sm_count", "memory_bus_width_bits")
# The fields each finding rests on: their lines are shown with it.
FINDING_FIELDS: dict[str, tuple[str, ...]] = {
    "ecc_disabled": ("ecc_current",),
    "ecc_mode_pending": ("ecc_current", "ecc_pending"),
    "ecc_uncorrectable_history": (
        "agg_dram_unc",
        "agg_sram_unc",
        "agg_sram_unc_parity",
        "agg_sram_unc_secded",
        "agg_dbe_total",
        "vol_dram_unc",
        "vol_dbe_total",
    ),
    "ecc_sram_uncorrectable_history": (
        "agg_sram_unc",
        "agg_sram_unc_parity",
        "agg_sram_unc_secded",
    ),
    "row_remap_failure": ("remap_failure",),
    "row_remap_pending": ("remap_pending",),
    "rows_remapped": ("remap_cor", "remap_unc"),
    "row_spares_depleting": ("hist_partial", "hist_low", "hist_none"),
    "retired_pages_pending": ("retired_pending",),
    "retired_pages_limit": ("retired_sbe", "retired_dbe"),
    "pages_retired": ("retired_sbe", "retired_dbe"),
    "hardware_slowdown": ("hw_slowdown", "hw_power_brake"),
    "thermal_slowdown": ("hw_thermal", "sw_thermal"),
    "vbios_unrecognised": ("vbios",),
}
# Findings that hold on a flag or count: only the fields that are set are shown.
_SET_ONLY = {
    "ecc_uncorrectable_history",
    "ecc_sram_uncorrectable_history",
    "row_remap_failure",
    "row_remap_pending",
    "rows_remapped",
    "row_spares_depleting",
    "retired_pages_pending",
    "retired_pages_limit",
    "pages_retired",
    "hardware_slowdown",
    "thermal_slowdown",
}


@dataclass(frozen=True)
class Located:
    """A finding and the lines of the report it came from."""

    finding: Finding
    lines: tuple[int, ...]


@dataclass(frozen=True)
class ScreenedGpu:
    source: str
    host: str | None
    bus_id: str
    line: int
    driver_version: str | None
    name: str | None
    serial: str | None
    uuid: str | None
    board_part_number: str | None
    vbios: str | None
    inforom: str | None
    findings: tuple[Located, ...]
    unreadable: tuple[Reading, ...]  # health fields the report could not give
    not_checked: tuple[str, ...]  # checks not made, each with why
    grade: Grade

    @property
    def verdict(self) -> str:
        """The worst finding's grade, or NOT TESTED: a screen never gives A."""
        return NOT_TESTED if self.grade.letter == "A" else self.grade.letter

    @property
    def disposition(self) -> str:
        return NOT_TESTED_DISPOSITION if self.grade.letter == "A" else self.grade.disposition

    @property
    def exit_code(self) -> int:
        if self.grade.letter in ("D", "F"):
            return EXIT_BAD_CARD
        return EXIT_INCOMPLETE if self.grade.letter == "INCOMPLETE" else EXIT_OK


def screen_report(report: Report, policy: Policy) -> list[ScreenedGpu]:
    profiles = builtin_profiles()
    return [_screen_gpu(report, gpu, policy, profiles) for gpu in report.gpus]


def _screen_gpu(
    report: Report, gpu: GpuSection, policy: Policy, profiles: list[Profile]
) -> ScreenedGpu:
    r = read_fields(gpu.root, report.kind)
    identity = _identity(r, gpu, report)
    counters = _counters(r)
    not_checked: list[str] = []
    unreadable = _unreadable_health(r)
    findings = counter_findings(counters, counters)
    findings += _coverage_findings(r, counters, unreadable)
    findings += _link_findings(r, not_checked)
    findings += _throttle_findings(r)
    findings += _power_findings(r)
    findings += _identity_findings(identity, r, profiles, not_checked)
    graded = grade(tuple(findings), policy, note=SCREEN_NOTE)
    return ScreenedGpu(
        report.source,
        gpu.host or report.host,
        gpu.bus_id,
        gpu.line,
        gpu.driver_version or report.driver_version,
        identity.name or None,
        identity.serial,
        identity.uuid,
        identity.board_part_number,
        identity.vbios,
        identity.inforom,
        tuple(Located(f, _lines(f, r, unreadable)) for f in findings),
        tuple(unreadable),
        tuple(not_checked),
        graded,
    )


def _int(r: dict[str, Reading], key: str) -> int | None:
    value = r[key].value
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(r: dict[str, Reading], key: str) -> float | None:
    value = r[key].value
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _bool(r: dict[str, Reading], key: str) -> bool | None:
    value = r[key].value
    return value if isinstance(value, bool) else None


def _str(r: dict[str, Reading], key: str) -> str | None:
    value = r[key].value
    return value if isinstance(value, str) else None


def _sum(*values: int | None) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _max(a: int | None, b: int | None) -> int | None:
    return a if b is None else b if a is None else max(a, b)


def _identity(r: dict[str, Reading], gpu: GpuSection, report: Report) -> CardIdentity:
    mib = _int(r, "memory_total_mib")
    return CardIdentity(
        name=_str(r, "name") or "",
        backend="nvidia-smi report",
        uuid=_str(r, "uuid"),
        serial=_str(r, "serial"),
        board_part_number=_str(r, "board_part_number"),
        vbios=_str(r, "vbios"),
        inforom=_str(r, "inforom"),
        pci_bus_id=gpu.bus_id,
        driver_version=gpu.driver_version or report.driver_version,
        memory_total_bytes=mib * 2**20 if mib is not None else None,
        max_sm_clock_mhz=_float(r, "max_sm_clock_mhz"),
        max_memory_clock_mhz=_float(r, "max_memory_clock_mhz"),
        pcie_gen_max=_int(r, "pcie_gen_max"),
        pcie_width_max=_int(r, "pcie_width_max"),
        power_limit_default_w=_float(r, "power_limit_default_w"),
        pci_device_id=_pci(_str(r, "pci_device_id")),
        pci_subsystem_id=_pci(_str(r, "pci_subsystem_id")),
        power_limit_max_w=_float(r, "power_limit_max_w"),
    )


def _pci(value: str | None) -> str | None:
    """XML spells PCI ids without "0x" ("20B010DE"), text with it: one spelling."""
    if value is None:
        return None
    return value if value.lower().startswith("0x") else f"0x{value}"


def _uncorrectable(r: dict[str, Reading]) -> tuple[int | None, int | None, int | None]:
    """Lifetime uncorrectable ECC: (total, card memory, SRAM), each None if unreadable. Before
    Ampere the report counts double-bit errors by memory; the volatile count (since boot) is
    taken where it is higher, since the driver adds it to the lifetime count only later."""
    if r["agg_dbe_total"].value is not None:
        total, dram = _int(r, "agg_dbe_total"), _int(r, "agg_dbe_dram")
        total = _max(total, _int(r, "vol_dbe_total"))
        sram = total - dram if total is not None and dram is not None else None
        return total, dram, sram
    dram = (
        _max(_int(r, "agg_dram_unc"), _int(r, "vol_dram_unc"))
        if r["agg_dram_unc"].value is not None
        else None
    )
    sram = _int(r, "agg_sram_unc")
    if sram is None:
        sram = _sum(_int(r, "agg_sram_unc_parity"), _int(r, "agg_sram_unc_secded"))
    return _sum(dram, sram), dram, sram


def _corrected(r: dict[str, Reading]) -> int | None:
    if r["agg_sbe_total"].value is not None:
        return _int(r, "agg_sbe_total")
    return _sum(_int(r, "agg_dram_cor"), _int(r, "agg_sram_cor"))


def _counters(r: dict[str, Reading]) -> HealthCounters:
    total, dram, sram = _uncorrectable(r)
    levels = [_int(r, f"hist_{level}") for level in ("max", "high", "partial", "low", "none")]
    histogram = RowRemapHistogram(*levels) if all(v is not None for v in levels) else None  # type: ignore[arg-type]
    return HealthCounters(
        ecc_enabled=_bool(r, "ecc_current"),
        ecc_pending_enabled=_bool(r, "ecc_pending"),
        ecc_aggregate_uncorrected=total,
        ecc_aggregate_corrected=_corrected(r),
        ecc_aggregate_uncorrected_dram=dram,
        ecc_aggregate_uncorrected_sram=sram,
        remapped_rows_correctable=_int(r, "remap_cor"),
        remapped_rows_uncorrectable=_int(r, "remap_unc"),
        remapped_rows_pending=_bool(r, "remap_pending"),
        remapped_rows_failure=_bool(r, "remap_failure"),
        row_remap_histogram=histogram,
        pcie_gen_current=_int(r, "pcie_gen_current"),
        pcie_width_current=_int(r, "pcie_width_current"),
        power_limit_w=_float(r, "power_limit_w"),
        retired_pages_sbe=_int(r, "retired_sbe"),
        retired_pages_dbe=_int(r, "retired_dbe"),
        retired_pages_pending=_bool(r, "retired_pending"),
    )


_REMAP = (
    "remap_cor",
    "remap_unc",
    "remap_pending",
    "remap_failure",
    *(f"hist_{x}" for x in ("max", "high", "partial", "low", "none")),
)
_RETIRED = ("retired_sbe", "retired_dbe", "retired_pending")
_WATCHED = (
    "ecc_current",
    "pcie_gen_current",
    "pcie_gen_max",
    "pcie_width_current",
    "pcie_width_max",
    "hw_slowdown",
    "hw_power_brake",
    "hw_thermal",
    "sw_thermal",
    "power_limit_w",
)


def _unreadable_health(r: dict[str, Reading]) -> list[Reading]:
    """The health fields the report could not give. Memory repair is told by row remapping
    (Ampere on) or page retirement (before it): either one readable makes the check."""
    unread = [r[k] for k in _WATCHED if r[k].value is None]
    remap = any(r[k].value is not None for k in _REMAP)
    retired = any(r[k].value is not None for k in _RETIRED)
    if remap:
        unread += [r[k] for k in _REMAP if r[k].value is None]
    if retired:
        unread += [r[k] for k in _RETIRED if r[k].value is None]
    if not remap and not retired:
        unread += [r["remap_pending"], r["retired_pending"]]
    return unread


def _coverage_findings(
    r: dict[str, Reading], counters: HealthCounters, unreadable: list[Reading]
) -> list[Finding]:
    found = []
    if unreadable:
        found.append(
            Finding(
                "counters_incomplete",
                "minor",
                "counters",
                "health fields the report could not give, those checks not made: "
                + "; ".join(reading.described() for reading in unreadable),
                value=str(len(unreadable)),
            )
        )
    if counters.ecc_enabled and (
        counters.ecc_aggregate_uncorrected is None or counters.ecc_aggregate_corrected is None
    ):
        found.append(
            Finding(
                "ecc_history_unreadable",
                "major",
                "counters",
                "ECC is on, but the report gives no lifetime (aggregate) ECC error counts: the "
                "card's memory-error history is void",
                value="unreadable",
            )
        )
    return found


def _link_findings(r: dict[str, Reading], not_checked: list[str]) -> list[Finding]:
    """The link against its maximum, judged only while the card is busy: an idle link trains
    down (generation, and on some boards width) to save power, so an idle report cannot tell."""
    below = []
    for what, key, unit in (("width", "pcie_width", "x{}"), ("generation", "pcie_gen", "Gen{}")):
        now, top = _int(r, f"{key}_current"), _int(r, f"{key}_max")
        if now is not None and top is not None and now < top:
            below.append((what, key, unit.format(now), unit.format(top)))
    if not below:
        return []
    busy = _int(r, "utilization_pct")
    if busy is None or busy < BUSY_UTILIZATION_PCT:
        load = f"{busy}% busy" if busy is not None else "its load unreadable"
        for what, key, now_text, top_text in below:
            not_checked.append(
                f"PCIe link {what}: {now_text} of {top_text} with the card {load} (an idle link "
                f"trains down to save power; take the report under load, at least "
                f"{BUSY_UTILIZATION_PCT}% busy, to check it) (line {r[key + '_current'].line})"
            )
        return []
    return [
        Finding(
            "pcie_link_degraded",
            "major",
            "counters",
            f"PCIe link {what} {now_text} while the card is {busy}% busy, the card supports "
            f"{top_text}",
            value=now_text,
            reference=top_text,
        )
        for what, _key, now_text, top_text in below
    ]


def _throttle_findings(r: dict[str, Reading]) -> list[Finding]:
    """Clock-event reasons active at the moment of the report, as the grade reads them under
    load: hardware slowdown or power brake (D), thermal slowdown (F)."""
    found = []
    hardware = [r[k].label for k in ("hw_slowdown", "hw_power_brake") if r[k].value is True]
    if hardware:
        found.append(
            Finding(
                "hardware_slowdown",
                "major",
                "report",
                f"{' and '.join(hardware)} active when the report was taken: the board or its "
                "power supply forced the clocks down",
                value="active",
                reference="not active",
                measure=1.0,
            )
        )
    thermal = [r[k].label for k in ("hw_thermal", "sw_thermal") if r[k].value is True]
    if thermal:
        found.append(
            Finding(
                "thermal_slowdown",
                "critical",
                "report",
                f"{' and '.join(thermal)} active when the report was taken: the card was at its "
                "slowdown temperature",
                value="active",
                reference="not active",
            )
        )
    return found


def _power_findings(r: dict[str, Reading]) -> list[Finding]:
    limit, default = _float(r, "power_limit_w"), _float(r, "power_limit_default_w")
    if limit is None or default is None or limit >= default - 1.0:
        return []
    return [
        Finding(
            "power_limit_reduced",
            "minor",
            "counters",
            f"power limit set to {limit:.0f} W, default {default:.0f} W",
            value=f"{limit:.0f} W",
            reference=f"{default:.0f} W",
        )
    ]


def _identity_findings(
    identity: CardIdentity,
    r: dict[str, Reading],
    profiles: list[Profile],
    not_checked: list[str],
) -> list[Finding]:
    if not identity.name:
        not_checked.append("identity: the report gives no product name")
        return []
    profile = match_profile(identity, profiles)
    if profile is None:
        return _unmatched(identity, profiles, not_checked)
    if profile.identity is None:
        not_checked.append(f"identity: the {profile.name} profile has no identity registry")
    found = reported_identity_findings(
        identity, profile, NOT_IN_REPORT, "not in an nvidia-smi report"
    )
    record = RunRecord(
        SCHEMA_VERSION, __version__, "screen", "", "", identity.backend, "screen", identity
    )
    return found + vbios_findings(record, profile.vbios_versions)


def _unmatched(
    identity: CardIdentity, profiles: list[Profile], not_checked: list[str]
) -> list[Finding]:
    """No profile of that name and memory: a known name with other memory is not what it
    claims; an unknown name has no registry to check."""
    named = [p for p in profiles if identity.name.lower() in (n.lower() for n in p.nvml_names)]
    if not named or identity.memory_total_bytes is None:
        not_checked.append(f"identity: gpuhealth has no registry for {identity.name!r}")
        return []
    gib = identity.memory_total_bytes / 2**30
    expected = ", ".join(f"{p.memory_gib} GiB" for p in named)
    return [
        Finding(
            "identity_mismatch",
            "major",
            "identity",
            f"not what it claims to be: a genuine {identity.name} has {expected} of memory, "
            f"this one reports {gib:.1f} GiB",
            value=f"{gib:.1f} GiB",
            reference=expected,
            measure=1.0,
        )
    ]


_IDENTITY_FIELDS = (
    "name",
    "memory_total_mib",
    "board_part_number",
    "pci_device_id",
    "pci_subsystem_id",
    "max_sm_clock_mhz",
    "max_memory_clock_mhz",
    "power_limit_default_w",
    "power_limit_max_w",
)


def _lines(finding: Finding, r: dict[str, Reading], unreadable: list[Reading]) -> tuple[int, ...]:
    code = finding.code
    if code == "counters_incomplete":
        keys = tuple(reading.key for reading in unreadable)
    elif code == "ecc_history_unreadable":
        keys = ("ecc_current", "agg_dram_unc", "agg_dbe_total")
    elif code == "pcie_link_degraded":
        keys = (
            ("pcie_width_current",)
            if finding.value and finding.value.startswith("x")
            else ("pcie_gen_current", "utilization_pct")
        )
    elif code == "power_limit_reduced":
        keys = ("power_limit_w", "power_limit_default_w")
    elif code in ("identity_mismatch", "identity_unrecognised"):
        keys = tuple(k for k in _IDENTITY_FIELDS if r[k].label in finding.message)
        if code == "identity_mismatch" and "of memory" in finding.message:
            keys += ("memory_total_mib",)
    else:
        keys = FINDING_FIELDS.get(code, ())
    lines = {
        r[k].line
        for k in keys
        if r[k].line is not None and (code not in _SET_ONLY or r[k].value not in (None, 0, False))
    }
    return tuple(sorted(x for x in lines if x is not None))


def exit_code(gpus: list[ScreenedGpu]) -> int:
    """As grade's: 3 (a GPU not judgeable) beats 1 (a D or F) beats 0."""
    codes = {gpu.exit_code for gpu in gpus}
    return (
        EXIT_INCOMPLETE
        if EXIT_INCOMPLETE in codes
        else EXIT_BAD_CARD
        if EXIT_BAD_CARD in codes
        else EXIT_OK
    )


def driver_major(version: str | None) -> int | None:
    head = (version or "").split(".", 1)[0]
    return int(head) if head.isdigit() else None
