"""Checks that could not be made: each is a finding that names itself, so that the policy can cap
the grade. Grade A means every check of the preset was made and passed; a check that could not be
made (no reference to compare with, a counter the driver would not read, telemetry without
clock-event reasons) is never silently a pass.

  reference_missing          a judged metric with no applicable reference: no profile for the
                             model, the profile lacks the metric, or its reference was measured
                             under other conditions
  thermal_reference_missing  the soak ran, but the model has no thermal-resistance reference
  telemetry_incomplete       the soak's slowdown, power-brake or memory-temperature checks could
                             not be made (no telemetry, no clock-event reasons, no memory
                             temperature or limit)
  counters_incomplete        health counters the driver would not read (each named); the
                             memory-repair history when neither remapped rows (Ampere on) nor
                             retired pages (before it) can be read; where lifetime uncorrectable
                             errors happened (SRAM or DRAM) when there are some and NVML will not
                             say
  ecc_history_unreadable     ECC is on, but the aggregate (lifetime) error counts cannot be read:
                             the card's memory-error history is void
"""

from __future__ import annotations

from gpuhealth.judge.composite import SUBSYSTEMS
from gpuhealth.judge.findings_links import (
    link_counters_fell,
    nvlink_unread,
    pcie_errors_unread,
)
from gpuhealth.judge.profiles import Profile
from gpuhealth.models import Finding, HealthCounters, MetricComparison, RunRecord, SoakSummary

# The metrics gpuhealth judges against a reference: those of the subsystems the grade rests on
# (the measured H100 and H200 profiles hold all of them; tests/test_fail_open.py keeps them in
# step). Others, such as the memory phase's GB/s, are reported without a reference by design.
JUDGED_METRICS = frozenset(key for keys in SUBSYSTEMS.values() for key in keys)
# Counters that a health check reads, with the check each one serves.
WATCHED_COUNTERS = {
    "ecc_enabled": "ECC mode",
    "ecc_volatile_corrected": "correctable ECC errors during the run",
    "ecc_volatile_uncorrected": "uncorrectable ECC errors during the run",
    "remapped_rows_correctable": "remapped rows (correctable)",
    "remapped_rows_uncorrectable": "remapped rows (uncorrectable)",
    "remapped_rows_pending": "pending row remap",
    "remapped_rows_failure": "row-remap failure",
    "row_remap_histogram": "spare rows per bank",
    "pcie_gen_current": "PCIe link generation",
    "pcie_width_current": "PCIe link width",
    "pcie_replay_count": "PCIe replays",
    "power_limit_w": "power limit",
}
# Memory repair is told by one of two mechanisms: row remapping (Ampere and later) or page
# retirement (before Ampere; NVML answers "not supported" for it on later cards). Either one
# readable makes the check; the other's fields are then not expected.
ROW_REMAP_COUNTERS = (
    "remapped_rows_correctable",
    "remapped_rows_uncorrectable",
    "remapped_rows_pending",
    "remapped_rows_failure",
    "row_remap_histogram",
)
RETIREMENT_COUNTERS = {
    "retired_pages_sbe": "retired pages (single-bit errors)",
    "retired_pages_dbe": "retired pages (double-bit errors)",
    "retired_pages_pending": "pending page retirement",
}


def unmade_check_findings(
    record: RunRecord,
    profile: Profile | None,
    comparisons: tuple[MetricComparison, ...],
    summary: SoakSummary | None,
) -> list[Finding]:
    return (
        reference_findings(record, profile, comparisons)
        + thermal_reference_findings(record, profile, summary)
        + telemetry_findings(record, summary)
        + counter_coverage_findings(record)
    )


def reference_findings(
    record: RunRecord, profile: Profile | None, comparisons: tuple[MetricComparison, ...]
) -> list[Finding]:
    unjudged = [
        c for c in comparisons if c.reference is None and f"{c.test}.{c.metric}" in JUDGED_METRICS
    ]
    if not unjudged:
        return []
    names = [f"{c.test}.{c.metric}" for c in unjudged]
    if profile is None:
        why = f"no reference profile for {record.identity.name!r}"
    else:
        other = [n for n in names if profile.metrics.get(n) is not None]
        missing = [n for n in names if n not in other]
        parts = []
        if missing:
            parts.append(f"profile {profile.key!r} has no reference for {', '.join(missing)}")
        if other:
            parts.append(f"{', '.join(other)} measured under other conditions than the reference")
        why = "; ".join(parts)
    return [
        Finding(
            "reference_missing",
            "minor",
            "analysis",
            f"performance not judged against healthy cards ({len(names)} metric(s)): {why}",
            value=", ".join(names),
            measure=float(len(names)),
        )
    ]


def thermal_reference_findings(
    record: RunRecord, profile: Profile | None, summary: SoakSummary | None
) -> list[Finding]:
    if summary is None or (profile is not None and profile.thermal is not None):
        return []
    whose = f"profile {profile.key!r}" if profile else f"{record.identity.name!r} (no profile)"
    return [
        Finding(
            "thermal_reference_missing",
            "minor",
            "soak",
            f"thermal resistance not judged: {whose} has no thermal-resistance reference",
        )
    ]


def telemetry_findings(record: RunRecord, summary: SoakSummary | None) -> list[Finding]:
    soak = record.test("soak")
    if soak is None or soak.status not in ("passed", "failed"):
        return []  # a soak that did not run is already "not measured"
    counters = record.counters_after or record.counters_before
    unmade = []
    if summary is None:
        unmade.append("no telemetry during the soak (slowdown, power brake, memory temperature)")
    else:
        if not summary.throttle_share:
            unmade.append("no clock-event reasons (thermal and hardware slowdown, power brake)")
        if summary.max_memory_temperature_c is None:
            unmade.append("no memory temperature (memory headroom)")
        elif counters is None or counters.memory_temperature_max_c is None:
            unmade.append("no memory temperature limit (memory headroom)")
    if not unmade:
        return []
    return [
        Finding(
            "telemetry_incomplete",
            "minor",
            "soak",
            "soak checks not made: " + "; ".join(unmade),
            value=str(len(unmade)),
        )
    ]


def counter_coverage_findings(record: RunRecord) -> list[Finding]:
    before, after = record.counters_before, record.counters_after
    now = after or before
    if now is None:
        return []  # counters_unreadable says so
    # with ECC off there are no ECC counts to read: ecc_disabled says that, not this
    ecc_counts = ("ecc_volatile_corrected", "ecc_volatile_uncorrected")
    watched = {
        name: label
        for name, label in WATCHED_COUNTERS.items()
        if not (now.ecc_enabled is False and name in ecc_counts)
    }
    unread = [label for name, label in watched.items() if getattr(now, name) is None]
    unread = _memory_repair_coverage(now, unread)
    if (
        now.ecc_enabled
        and now.ecc_aggregate_uncorrected
        and now.ecc_aggregate_uncorrected_sram is None
    ):
        unread.append(
            f"where the {now.ecc_aggregate_uncorrected} lifetime uncorrectable ECC error(s) "
            "happened (on-chip SRAM or card memory)"
        )
    unread += nvlink_unread(now)  # issue 14: NVLink that NVML would not read
    unread += pcie_errors_unread(now)  # and PCIe error counters
    unread += link_counters_fell(before, after)  # reset mid-run: the run's errors unknown
    if before is None or after is None:
        unread.append("the counters before or after the run (changes during the run)")
    found = []
    if unread:
        found.append(
            Finding(
                "counters_incomplete",
                "minor",
                "counters",
                f"health counters not readable, those checks not made: {', '.join(unread)}",
                value=str(len(unread)),
            )
        )
    if now.ecc_enabled and _aggregate_unreadable(now):
        found.append(
            Finding(
                "ecc_history_unreadable",
                "major",
                "counters",
                "ECC is on, but the card's lifetime (aggregate) ECC error counts cannot be read: "
                "its memory-error history is void",
                value="unreadable",
            )
        )
    return found


def _memory_repair_coverage(now: HealthCounters, unread: list[str]) -> list[str]:
    """The row-remap labels in `unread`, adjusted for a card that retires pages instead.

    Records made before gpuhealth read retired pages hold None there; for them this changes the
    wording only (the same check not made, on the same cards), never whether one is listed."""
    remap_labels = {WATCHED_COUNTERS[name] for name in ROW_REMAP_COUNTERS}
    retired = {name: getattr(now, name) for name in RETIREMENT_COUNTERS}
    if any(value is not None for value in retired.values()):  # the card retires pages
        kept = [label for label in unread if label not in remap_labels]
        return kept + [RETIREMENT_COUNTERS[n] for n, value in retired.items() if value is None]
    if all(getattr(now, name) is None for name in ROW_REMAP_COUNTERS):
        kept = [label for label in unread if label not in remap_labels]
        return [*kept, "memory-repair history (neither remapped rows nor retired pages)"]
    return unread


def _aggregate_unreadable(now: HealthCounters) -> bool:
    return now.ecc_aggregate_uncorrected is None or now.ecc_aggregate_corrected is None
