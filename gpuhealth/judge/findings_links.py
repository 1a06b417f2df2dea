"""Findings on the card's links (issue 14): the PCIe copies against the link's theoretical rate,
the link as it ran under load, and NVLink state and error counters.

  pcie_link_degraded   under load the link ran below the card's generation or width (the card's
                       own generation, nvmlDeviceGetGpuMaxPcieLinkGeneration: a Gen3 slot limits
                       NVML's "max" too)
  pcie_copy_slow       the copies reached less than PCIE_SLOW_SHARE of the link's theoretical
                       rate at the generation and width it ran at (a flaky riser or slot: slow
                       copies at full width)
  pcie_copy_unjudged   the copy rates could not be held against a link rate (NVML gave neither
                       the link under load nor the card's maximum)
  pcie_copy_corrupt    a copied byte arrived wrong (direction and first offset named)
  nvlink_inactive      a link the card has is down
  nvlink_errors        replay, recovery or CRC errors counted on a link during the run
  pcie_errors_uncorrectable  fatal or non-fatal PCIe errors counted during the run
  pcie_errors_correctable    correctable-class PCIe errors (gpuhealth/pcieerrors.py) counted
                             during the run
Pure functions of the record, like gpuhealth/judge/findings.py.
"""

from __future__ import annotations

import statistics

from gpuhealth.models import (
    Finding,
    HealthCounters,
    NvLinkReading,
    RunRecord,
    Severity,
    TestResult,
    Verification,
)
from gpuhealth.pcieerrors import PCIE_ERROR_COUNTERS, PcieErrorClass, names_of
from gpuhealth.pcielink import describe, link_gbs

# Healthy cards' pinned copies reach 85-90% of the link's theoretical rate (an H100 at Gen5 x16:
# 63.0 GB/s theoretical, peers' floor 48 GB/s = 76%). Below 70% something on the path retries or
# throttles: a riser, a slot, a marginal link.
PCIE_SLOW_SHARE = 0.70
PCIE_TEST = "pcie"
DIRECTION_TITLES = {"h2d": "host to device", "d2h": "device to host"}
NVLINK_COUNTERS = {
    "replay_errors": "replay",
    "recovery_errors": "recovery",
    "crc_flit_errors": "flit CRC",
    "crc_data_errors": "data CRC",
}


def _int_parameter(test: TestResult, name: str) -> int | None:
    value = test.parameters.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def link_under_load(record: RunRecord) -> tuple[int | None, int | None]:
    """(generation, width) the pcie test read while its copies were in flight."""
    test = record.test(PCIE_TEST)
    return (None, None) if test is None else link_of_test(test)


def link_of_test(test: TestResult) -> tuple[int | None, int | None]:
    """(generation, width) a pcie test read under load; none for a test that did not measure."""
    if test.status not in ("passed", "failed"):
        return None, None
    return _int_parameter(test, "link_gen_under_load"), _int_parameter(
        test, "link_width_under_load"
    )


def pcie_findings(record: RunRecord) -> list[Finding]:
    test = record.test(PCIE_TEST)
    if test is None or test.status not in ("passed", "failed"):
        return []  # not run or not measured: test_findings says so
    ident = record.identity
    gen, width = link_under_load(record)
    gen_max = ident.pcie_gen_gpu_max or ident.pcie_gen_max
    width_max = ident.pcie_width_max
    found: list[Finding] = []
    if gen is not None and gen_max and gen < gen_max:
        slot = ""
        if ident.pcie_gen_max and ident.pcie_gen_max < gen_max:
            slot = f" (the slot allows Gen{ident.pcie_gen_max}: move it to a Gen{gen_max} slot)"
        found.append(
            Finding(
                "pcie_link_degraded",
                "major",
                PCIE_TEST,
                f"under load the PCIe link ran at Gen{gen}, the card supports Gen{gen_max}{slot}",
                value=f"Gen{gen}",
                reference=f"Gen{gen_max}",
            )
        )
    if width is not None and width_max and width < width_max:
        found.append(
            Finding(
                "pcie_link_degraded",
                "major",
                PCIE_TEST,
                f"under load the PCIe link ran x{width}, the card supports x{width_max}",
                value=f"x{width}",
                reference=f"x{width_max}",
            )
        )
    found += _copy_rate_findings(test, (gen, width), (gen_max, width_max))
    return found


def _median(test: TestResult, metric: str) -> float | None:
    found = test.metric(metric)
    return statistics.median(found.values) if found is not None and found.values else None


def _copy_rate_findings(
    test: TestResult,
    now: tuple[int | None, int | None],
    most: tuple[int | None, int | None],
) -> list[Finding]:
    rates = {d: _median(test, f"{d}_gbs") for d in DIRECTION_TITLES}
    measured = {d: r for d, r in rates.items() if r is not None}
    if not measured:
        return []  # evidence_findings: a passed test without its metrics
    direction = min(measured, key=lambda d: measured[d])
    rate = measured[direction]
    link_now, link_max = link_gbs(*now), link_gbs(*most)
    reference, link = (link_now, now) if link_now is not None else (link_max, most)
    if reference is None:
        return [
            Finding(
                "pcie_copy_unjudged",
                "minor",
                PCIE_TEST,
                "the PCIe copy rate was not judged: NVML gave neither the link's generation and "
                f"width under load nor the card's maximum ({DIRECTION_TITLES[direction]} "
                f"{rate:.1f} GB/s)",
                value=f"{rate:.1f} GB/s",
            )
        ]
    share = rate / reference
    if share >= PCIE_SLOW_SHARE:
        return []
    of_max = f"; {rate / link_max:.0%} of the card's {describe(*most)}" if link_max else ""
    unread = "" if link_now is not None else " (the link under load could not be read)"
    return [
        Finding(
            "pcie_copy_slow",
            "major",
            PCIE_TEST,
            f"PCIe copies {DIRECTION_TITLES[direction]} reached {rate:.1f} GB/s, {share:.0%} of "
            f"the {describe(*link)} link's {reference:.1f} GB/s{unread}: a riser, slot or "
            "marginal link slows them",
            value=f"{rate:.1f} GB/s",
            reference=f">= {PCIE_SLOW_SHARE * reference:.1f} GB/s "
            f"({PCIE_SLOW_SHARE:.0%} of {describe(*link)})",
            measure=round(share, 4),
            detail=f"median of the timed copies; {share:.1%} of the link it ran at{of_max}",
        )
    ]


def pcie_corrupt_finding(test: TestResult, check: Verification) -> Finding:
    """A pcie verification that failed: the direction and first bad byte offset it names."""
    where = check.wrong_results[0].location if check.wrong_results else "an unknown offset"
    return Finding(
        "pcie_copy_corrupt",
        "critical",
        test.name,
        f"{check.mismatches} word(s) arrived wrong over PCIe, first in the {where}",
        value=str(check.mismatches),
        reference="0",
    )


# --- NVLink -----------------------------------------------------------------------------------


def nvlink_findings(before: HealthCounters | None, after: HealthCounters | None) -> list[Finding]:
    now = after or before
    if now is None or now.nvlink_status != "read":
        return []  # no links (not applicable), or unreadable: counter coverage says so
    found: list[Finding] = []
    inactive = [link.link for link in (now.nvlink or ()) if link.active is False]
    if inactive:
        found.append(
            Finding(
                "nvlink_inactive",
                "major",
                "counters",
                f"{len(inactive)} of {len(now.nvlink or ())} NVLink link(s) inactive: "
                + ", ".join(map(str, inactive)),
                value=str(len(inactive)),
                reference="0",
                measure=float(len(inactive)),
            )
        )
    errors = _nvlink_error_deltas(before, after)
    if errors:
        total = sum(count for _, _, count in errors)
        listed = "; ".join(f"link {link} {kind} {count}" for link, kind, count in errors)
        found.append(
            Finding(
                "nvlink_errors",
                "major",
                "counters",
                f"{total} NVLink error(s) during the run ({listed})",
                value=str(total),
                reference="0",
                measure=float(total),
            )
        )
    return found


def _nvlink_error_deltas(
    before: HealthCounters | None, after: HealthCounters | None
) -> list[tuple[int, str, int]]:
    """(link, counter, increase) of every counter that grew between the two readings."""
    if before is None or after is None:
        return []
    if before.nvlink_status != "read" or after.nvlink_status != "read":
        return []
    earlier = {link.link: link for link in (before.nvlink or ())}
    grown: list[tuple[int, str, int]] = []
    for link in after.nvlink or ():
        first = earlier.get(link.link)
        if first is None:
            continue
        for name, kind in NVLINK_COUNTERS.items():
            start, end = getattr(first, name), getattr(link, name)
            if isinstance(start, int) and isinstance(end, int) and end > start:
                grown.append((link.link, kind, end - start))
    return grown


def nvlink_unread(now: HealthCounters) -> list[str]:
    """What of NVLink could not be read: for the counters_incomplete finding (coverage.py)."""
    if now.nvlink_status == "unreadable":
        return ["NVLink state and error counters"]
    if now.nvlink_status != "read":
        return []
    unread = sorted({link.link for link in (now.nvlink or ()) if _missing(link)})
    if not unread:
        return []
    return [f"NVLink state or error counters of link(s) {', '.join(map(str, unread))}"]


def _missing(link: NvLinkReading) -> bool:
    return link.active is None or any(getattr(link, name) is None for name in NVLINK_COUNTERS)


# --- PCIe error counters ------------------------------------------------------------------------

# Any rise is a finding: a healthy link counts none in a run of minutes (the recorded H100 and
# H200 read 0 replays), so there is no noise floor to allow for. Correctable errors were recovered
# by the link itself (the data arrived): a marginal link, minor, as NVLink errors are. A fatal or
# non-fatal error lost or poisoned a transaction: major, repair first. The grades are the policy's.
PCIE_ERROR_SEVERITY: dict[PcieErrorClass, tuple[str, Severity, str]] = {
    "uncorrectable": ("pcie_errors_uncorrectable", "major", "uncorrectable"),
    "correctable": ("pcie_errors_correctable", "minor", "correctable-class"),
}


def pcie_error_findings(
    before: HealthCounters | None, after: HealthCounters | None
) -> list[Finding]:
    """One finding per class whose counters rose between the readings before and after the run;
    the message names each counter and its rise."""
    rises = pcie_error_rises(before, after)
    found: list[Finding] = []
    for kind, (code, severity, words) in PCIE_ERROR_SEVERITY.items():
        grown = [(name, rises[name]) for name in names_of(kind) if name in rises]
        if not grown:
            continue
        total = sum(rise for _, rise in grown)
        listed = ", ".join(f"{PCIE_ERROR_COUNTERS[name][1]} +{rise}" for name, rise in grown)
        found.append(
            Finding(
                code,
                severity,
                "counters",
                f"{total} {words} PCIe error(s) during the run ({listed})",
                value=str(total),
                reference="0",
                measure=float(total),
            )
        )
    return found


def pcie_error_rises(before: HealthCounters | None, after: HealthCounters | None) -> dict[str, int]:
    """Counter name → its rise, for every counter read both times that grew. An "unreadable"
    reading still holds the counters it read: a rise among them is judged (fail closed)."""
    if before is None or after is None or before.pcie_errors is None or after.pcie_errors is None:
        return {}
    rises: dict[str, int] = {}
    for name in PCIE_ERROR_COUNTERS:
        start, end = before.pcie_errors.get(name), after.pcie_errors.get(name)
        if start is not None and end is not None and end > start:
            rises[name] = end - start
    return rises


def pcie_errors_unread(now: HealthCounters) -> list[str]:
    """What of the PCIe error counters could not be read: for counters_incomplete (coverage.py).
    Counters NVML does not offer are not listed: not applicable, as a card without NVLink."""
    if now.pcie_errors_status != "unreadable":
        return []
    unread = [
        PCIE_ERROR_COUNTERS[name][1]
        for name, count in (now.pcie_errors or {}).items()
        if count is None and name in PCIE_ERROR_COUNTERS
    ]
    return [f"PCIe error counters ({', '.join(unread) or 'all'})"]


# --- counters that went down ---------------------------------------------------------------------


def link_counters_fell(before: HealthCounters | None, after: HealthCounters | None) -> list[str]:
    """NVLink and PCIe error counters lower after the run than before it: reset in between
    (nvidia-smi nvlink -r, a driver reload, a link reset), so the errors of the run are unknown,
    never zero. For the counters_incomplete finding (coverage.py)."""
    if before is None or after is None:
        return []
    fell: list[str] = []
    if before.pcie_errors is not None and after.pcie_errors is not None:
        fell += [
            PCIE_ERROR_COUNTERS[name][1]
            for name in PCIE_ERROR_COUNTERS
            if _lower(before.pcie_errors.get(name), after.pcie_errors.get(name))
        ]
    earlier = {link.link: link for link in (before.nvlink or ())}
    for link in after.nvlink or ():
        first = earlier.get(link.link)
        if first is not None:
            fell += [
                f"NVLink {link.link} {kind}"
                for name, kind in NVLINK_COUNTERS.items()
                if _lower(getattr(first, name), getattr(link, name))
            ]
    if not fell:
        return []
    return [f"error counters reset during the run, their rise unknown ({', '.join(fell)})"]


def _lower(start: int | None, end: int | None) -> bool:
    return start is not None and end is not None and end < start
