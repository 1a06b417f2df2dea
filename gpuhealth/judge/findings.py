"""Health findings: facts about the card drawn from a run record and its analysis.

Each finding has a code that policy rules match on, a severity, the measured value and the
reference it was held against. Nothing here decides the grade.
"""

from __future__ import annotations

from gpuhealth.judge.composite import TITLES
from gpuhealth.judge.findings_links import link_under_load, pcie_corrupt_finding
from gpuhealth.judge.xids import CATALOGUE, classify
from gpuhealth.models import (
    Finding,
    HealthCounters,
    MemoryClear,
    RunRecord,
    SoakSummary,
    StoredHistory,
    SubsystemScore,
    TestResult,
)

MEMTEST_COVERAGE_TARGET = 0.95
# Retired pages at which NVIDIA's DCGM health check fails a card, "updated to match the field diag"
# (DCGM_LIMIT_MAX_RETIRED_PAGES in NVIDIA/DCGM common/DcgmGPUHardwareLimits.h): the retirement
# table is about full, further failing pages cannot be retired.
RETIRED_PAGES_LIMIT = 63


def test_findings(
    tests: tuple[TestResult, ...], selected: tuple[str, ...] | None = None
) -> list[Finding]:
    """Findings of the tests; those --tests left out (not in `selected`) are
    selection_findings', not "not run"."""
    found: list[Finding] = []
    never = [t for t in tests if t.status == "not_run" and (selected is None or t.name in selected)]
    if never:
        why = never[0].message or "not started"
        found.append(
            Finding(
                "test_not_measured",
                "major",
                "run",
                f"not run: {', '.join(t.name for t in never)} ({why})",
                value="not_run",
            )
        )
    for test in tests:
        if test.status == "skipped":  # not applicable to this card by design (said why)
            found.append(
                Finding(
                    "test_not_applicable",
                    "info",
                    test.name,
                    f"{test.name}: skipped ({test.message or 'not applicable to this card'})",
                    value="skipped",
                )
            )
        if test.status == "error" and not _stopped_by_thermal_guard(test):
            found.append(
                Finding(
                    "test_not_measured",
                    "major",
                    test.name,
                    f"{test.name}: {test.status}" + (f" ({test.message})" if test.message else ""),
                    value=test.status,
                )
            )
        for check in test.verifications:
            if check.passed:
                continue
            if check.memory_errors or test.name == "memtest":
                first = check.memory_errors[0] if check.memory_errors else None
                where = (
                    (
                        f"; first at address 0x{first.address:X} bit(s) "
                        f"{', '.join(map(str, first.bits))} ({first.pattern})"
                    )
                    if first
                    else ""
                )
                found.append(
                    Finding(
                        "memory_errors",
                        "critical",
                        test.name,
                        f"{check.mismatches} memory error(s) in {test.name}{where}",
                        value=str(check.mismatches),
                        reference="0",
                    )
                )
            elif test.name == "pcie":  # issue 14: a byte that crossed the link wrong
                found.append(pcie_corrupt_finding(test, check))
            elif test.name == "soak":
                first_at = (
                    f", first at {check.wrong_results[0].location}" if check.wrong_results else ""
                )
                found.append(
                    Finding(
                        "silent_data_corruption",
                        "critical",
                        test.name,
                        f"{check.mismatches} soak iteration(s) gave a different result under load"
                        + first_at,
                        value=str(check.mismatches),
                        reference="0",
                    )
                )
            else:
                where = check.wrong_results[0].location if check.wrong_results else "unknown"
                found.append(
                    Finding(
                        "wrong_results",
                        "critical",
                        test.name,
                        f"{check.mismatches} wrong result(s) in {test.name}, first at {where}",
                        value=str(check.mismatches),
                        reference="0",
                    )
                )
    return found


def _stopped_by_thermal_guard(test: TestResult) -> bool:
    """A soak the thermal guard stopped measured what matters: the card cannot hold the load
    below its slowdown temperature. soak_findings reports that (thermal_guard, D: repair the
    cooling); it is not an INCOMPLETE measurement, and it is not a pass either."""
    stopped = test.parameters.get("stopped_early")
    return test.name == "soak" and isinstance(stopped, str) and "temperature" in stopped


def run_findings(record: RunRecord) -> list[Finding]:
    """Conditions of the run itself: other processes on the card, memory left untested."""
    found: list[Finding] = []
    for check in record.prechecks:
        if check.name == "other processes" and check.status == "warn":
            found.append(Finding("other_processes", "minor", "precheck", check.message))
    memtest = record.test("memtest")
    coverage = memtest.parameters.get("coverage") if memtest else None
    if isinstance(coverage, float) and coverage < MEMTEST_COVERAGE_TARGET:
        found.append(
            Finding(
                "memtest_coverage_low",
                "minor",
                "memtest",
                f"the memory test covered {coverage:.1%} of memory (the rest was in use)",
                value=f"{coverage:.1%}",
                reference=f">= {MEMTEST_COVERAGE_TARGET:.0%}",
                measure=coverage,
            )
        )
    return found


def counter_findings(before: HealthCounters | None, after: HealthCounters | None) -> list[Finding]:
    """Findings from NVML counters; `after` is None when the card was lost."""
    now = after or before
    if now is None:
        return [
            Finding("counters_unreadable", "major", "counters", "health counters could not be read")
        ]
    found: list[Finding] = []
    if now.ecc_enabled is False:
        found.append(
            Finding(
                "ecc_disabled",
                "minor",
                "counters",
                "ECC is disabled: memory errors go uncounted and the card's error history is "
                "void (turn it on: nvidia-smi -i <gpu> -e 1, then reboot)",
                value="off",
                reference="on",
            )
        )
    found += _ecc_mode_pending_findings(now)
    found += _ecc_findings(before, after)
    found += _row_remap_findings(now)
    found += _page_retirement_findings(now)
    return found


def _ecc_mode_pending_findings(now: HealthCounters) -> list[Finding]:
    """An ECC mode change that waits for the next reboot: the history it vouches for is void."""
    current, pending = now.ecc_enabled, now.ecc_pending_enabled
    if current is None or pending is None or current == pending:
        return []
    if pending:
        message = (
            "ECC will be turned on at the next reboot: until then memory errors go uncounted "
            "and the card's error history is void; reboot and grade again"
        )
    else:
        message = (
            "ECC will be turned off at the next reboot: from then on memory errors go uncounted "
            "and this history no longer holds; keep it on (nvidia-smi -i <gpu> -e 1), reboot "
            "and grade again"
        )
    return [
        Finding(
            "ecc_mode_pending",
            "major",
            "counters",
            message,
            value=f"{'on' if current else 'off'}, {'on' if pending else 'off'} after reboot",
            reference="no change pending",
        )
    ]


def _delta(before: int | None, after: int | None) -> int | None:
    if before is None or after is None:
        return None
    return after - before


def _ecc_findings(before: HealthCounters | None, after: HealthCounters | None) -> list[Finding]:
    found: list[Finding] = []
    now = after or before
    assert now is not None
    unc = _delta(
        before.ecc_volatile_uncorrected if before else None,
        after.ecc_volatile_uncorrected if after else None,
    )
    if unc:
        found.append(
            Finding(
                "ecc_uncorrectable_during_run",
                "critical",
                "counters",
                f"{unc} uncorrectable ECC error(s) during the run",
                value=str(unc),
                reference="0",
            )
        )
    cor = _delta(
        before.ecc_volatile_corrected if before else None,
        after.ecc_volatile_corrected if after else None,
    )
    if cor:
        found.append(
            Finding(
                "ecc_correctable_during_run",
                "minor",
                "counters",
                f"{cor} correctable ECC error(s) during the run",
                value=str(cor),
                reference="0",
            )
        )
    history = now.ecc_aggregate_uncorrected
    dram, sram = now.ecc_aggregate_uncorrected_dram, now.ecc_aggregate_uncorrected_sram
    if history and not unc:
        split = f" (card memory {dram}, on-chip SRAM {sram})" if None not in (dram, sram) else ""
        found.append(
            Finding(
                "ecc_uncorrectable_history",
                "major",
                "counters",
                f"{history} uncorrectable ECC error(s) in the card's history{split}",
                value=str(history),
                reference="0",
            )
        )
    if sram and not unc:
        found.append(
            Finding(
                "ecc_sram_uncorrectable_history",
                "major",
                "counters",
                f"{sram} uncorrectable error(s) in on-chip memory (SRAM) in the card's history: "
                "NVIDIA's field diagnostic decides whether it qualifies for RMA (its SRAM "
                "threshold flag); run it before the card is used or sold",
                value=str(sram),
                reference="0",
            )
        )
    return found


def _row_remap_findings(now: HealthCounters) -> list[Finding]:
    found: list[Finding] = []
    if now.remapped_rows_failure:
        found.append(
            Finding(
                "row_remap_failure",
                "critical",
                "counters",
                "row remapping failed: a bank has no spare rows left",
                value="failure",
                reference="none",
            )
        )
    if now.remapped_rows_pending:
        found.append(
            Finding(
                "row_remap_pending",
                "major",
                "counters",
                "a row remap is pending: the card needs a reset before use",
                value="pending",
                reference="none",
            )
        )
    rows = (now.remapped_rows_correctable or 0) + (now.remapped_rows_uncorrectable or 0)
    if rows:
        found.append(
            Finding(
                "rows_remapped",
                "minor",
                "counters",
                f"{rows} row(s) remapped ({now.remapped_rows_uncorrectable or 0} for "
                f"uncorrectable errors)",
                value=str(rows),
                reference="0",
            )
        )
    hist = now.row_remap_histogram
    if hist is not None and (hist.partial or hist.low or hist.none):
        found.append(
            Finding(
                "row_spares_depleting",
                "major",
                "counters",
                f"banks with few or no spare rows left: partial {hist.partial}, "
                f"low {hist.low}, none {hist.none}",
                value=str(hist.partial + hist.low + hist.none),
                reference="0",
            )
        )
    return found


def _page_retirement_findings(now: HealthCounters) -> list[Finding]:
    """Cards before Ampere retire a page of memory where later ones remap a row."""
    found: list[Finding] = []
    if now.retired_pages_pending:
        found.append(
            Finding(
                "retired_pages_pending",
                "major",
                "counters",
                "a page retirement is pending: the card needs a reboot (driver reload) before use",
                value="pending",
                reference="none",
            )
        )
    sbe, dbe = now.retired_pages_sbe or 0, now.retired_pages_dbe or 0
    if sbe + dbe >= RETIRED_PAGES_LIMIT:
        found.append(
            Finding(
                "retired_pages_limit",
                "critical",
                "counters",
                f"{sbe + dbe} pages retired, at NVIDIA's limit of {RETIRED_PAGES_LIMIT} (DCGM's "
                "health check and field diagnostic fail the card): further failing pages cannot "
                "be retired",
                value=str(sbe + dbe),
                reference=f"< {RETIRED_PAGES_LIMIT}",
                measure=float(sbe + dbe),
            )
        )
    if sbe + dbe:
        found.append(
            Finding(
                "pages_retired",
                "minor",
                "counters",
                f"{sbe + dbe} memory page(s) retired ({dbe} for double-bit errors, {sbe} for "
                "repeated single-bit errors)",
                value=str(sbe + dbe),
                reference="0",
                measure=float(dbe),  # the policy's thresholds are on double-bit retirements
            )
        )
    return found


def identity_findings(record: RunRecord) -> list[Finding]:
    """Link width/generation below the card's maximum, power limit below its default."""
    found: list[Finding] = []
    ident, now = record.identity, record.counters_after or record.counters_before
    if now is None:
        return found
    readings = [c for c in (record.counters_before, record.counters_after) if c is not None]
    widths = [c.pcie_width_current for c in readings if c.pcie_width_current is not None]
    gens = [c.pcie_gen_current for c in readings if c.pcie_gen_current is not None]
    # Issue 14: where the pcie test read the link under load, findings_links judges it (an idle
    # link reads lower and says less); idle readings judge only what it could not read.
    gen_loaded, width_loaded = link_under_load(record)
    if width_loaded is not None:
        widths = []
    if gen_loaded is not None:
        gens = []
    if ident.pcie_width_max and widths and max(widths) < ident.pcie_width_max:
        found.append(
            Finding(
                "pcie_link_degraded",
                "major",
                "counters",
                f"PCIe link runs x{max(widths)}, the card supports x{ident.pcie_width_max}",
                value=f"x{max(widths)}",
                reference=f"x{ident.pcie_width_max}",
            )
        )
    # The generation drops at idle to save power: degraded only if no reading reached the max.
    if ident.pcie_gen_max and gens and max(gens) < ident.pcie_gen_max:
        found.append(
            Finding(
                "pcie_link_degraded",
                "major",
                "counters",
                f"PCIe link trained at Gen{max(gens)}, the card supports Gen{ident.pcie_gen_max}",
                value=f"Gen{max(gens)}",
                reference=f"Gen{ident.pcie_gen_max}",
            )
        )
    replays = _delta(
        record.counters_before.pcie_replay_count if record.counters_before else None,
        record.counters_after.pcie_replay_count if record.counters_after else None,
    )
    if replays:
        found.append(
            Finding(
                "pcie_replays",
                "minor",
                "counters",
                f"{replays} PCIe replay(s) during the run",
                value=str(replays),
                reference="0",
            )
        )
    default = ident.power_limit_default_w
    if default and now.power_limit_w and now.power_limit_w < default - 1.0:
        found.append(
            Finding(
                "power_limit_reduced",
                "minor",
                "counters",
                f"power limit set to {now.power_limit_w:.0f} W, default "
                f"{default:.0f} W (results reflect the lower limit)",
                value=f"{now.power_limit_w:.0f} W",
                reference=f"{default:.0f} W",
            )
        )
    return found


def xid_findings(record: RunRecord) -> list[Finding]:
    """Each Xid event of the run, classed by NVIDIA's catalogue (gpuhealth/judge/xids.py)."""
    found = []
    for xid in record.xid_events:
        kind, description = classify(xid.code)
        said = description if xid.code in CATALOGUE else (xid.description or description)
        found.append(
            Finding(
                kind.finding,
                kind.severity,
                "driver",
                f"Xid {xid.code} at {xid.t_s:.1f} s: {said} ({kind.what})",
                value=str(xid.code),
            )
        )
    return found


def performance_findings(
    subsystems: tuple[SubsystemScore, ...], model: str | None = None
) -> list[Finding]:
    """One finding per slow subsystem, in the buyer's words; the statistics in the detail. The
    measure the policy grades is the deficit's lower bound (what the card is at least)."""
    found = []
    whose = f"healthy {model} cards" if model else "healthy cards of the model"
    for s in subsystems:
        if s.verdict != "low":
            continue
        at_least = max(s.deficit_low, 0.0)
        found.append(
            Finding(
                "performance_deficit",
                "major" if at_least >= 0.07 else "minor",
                s.name,
                f"{TITLES[s.name]} {s.deficit:.0%} below {whose}",
                value=f"-{s.deficit:.1%}",
                reference=f"healthy spread {s.between_rel:.1%}, reference centre ±"
                f"{s.centre_rel:.1%}, run to run ±{s.run_rel:.1%}",
                measure=-s.deficit_low,
                detail=f"at least {at_least:.0%} below (one-sided 95%); {len(s.metrics)} "
                f"metric(s); t = {s.t:.1f}, Holm-adjusted p = {s.p_adjusted:.2g}; the reference "
                f"from {s.reference_cards} card(s)",
            )
        )
    return found


def soak_findings(
    summary: SoakSummary | None,
    counters: HealthCounters | None,
    thermal_flag_ratio: float | None = None,
) -> list[Finding]:
    """thermal_flag_ratio: the lowest thermal-resistance ratio the policy grades (None: none)."""
    if summary is None:
        return []
    found: list[Finding] = []
    if summary.stopped_early and "temperature" in summary.stopped_early:
        found.append(
            Finding(
                "thermal_guard",
                "major",
                "soak",
                f"soak stopped before the slowdown threshold: {summary.stopped_early}",
                value=f"{summary.max_temperature_c} °C",
            )
        )
    if summary.throttle_share.get("thermal", 0.0) > 0 or (
        summary.stopped_early and "thermal slowdown" in summary.stopped_early
    ):
        found.append(
            Finding(
                "thermal_slowdown",
                "critical",
                "soak",
                "the driver slowed the card down for temperature under load",
                value=f"{summary.throttle_share.get('thermal', 0.0):.0%} of samples",
                reference="0%",
            )
        )
    hardware = summary.throttle_share.get("hardware slowdown", 0.0)
    if hardware > 0:
        found.append(
            Finding(
                "hardware_slowdown",
                "major",
                "soak",
                "the board or its power supply forced the clocks down (hardware slowdown or "
                "power brake) under load",
                value=f"{hardware:.0%} of samples",
                reference="0%",
                measure=hardware,
            )
        )
    found += _thermal_resistance_findings(summary, thermal_flag_ratio)
    if summary.thermal_resistance_c_per_w is None and summary.thermal_resistance_refusal:
        found.append(
            Finding(
                "thermal_resistance_unmeasured",
                "info",
                "soak",
                f"thermal resistance not measured: {summary.thermal_resistance_refusal}",
            )
        )
    if counters and counters.memory_temperature_max_c and summary.max_memory_temperature_c:
        headroom = counters.memory_temperature_max_c - summary.max_memory_temperature_c
        if headroom < 5.0:
            found.append(
                Finding(
                    "memory_temperature_high",
                    "major",
                    "soak",
                    f"memory reached {summary.max_memory_temperature_c:.0f} °C, "
                    f"{headroom:.0f} °C from its {counters.memory_temperature_max_c:.0f}"
                    " °C limit",
                    value=f"{summary.max_memory_temperature_c:.0f} °C",
                    reference=f"< {counters.memory_temperature_max_c - 5:.0f} °C",
                )
            )
    return found


def _thermal_resistance_findings(summary: SoakSummary, flag_ratio: float | None) -> list[Finding]:
    """The card's °C/W against its reference, judged at the prediction's lower bound
    (gpuhealth/judge/thermal_reference.py): on a real server one healthy card's estimate moves by
    more between runs than the fit's own range says (fans that follow the temperature, a chassis
    mode slower than the fit's), so a card is held to what it is at least, in this rig. Where the
    estimate is above what the policy grades but its lower bound is not, the check could not tell:
    thermal_resistance_unproven, so that such a card is not A."""
    measured, reference = summary.thermal_resistance_c_per_w, summary.reference_c_per_w
    ratio_low = summary.thermal_ratio_low
    if not measured or not reference or ratio_low is None or measured / reference <= 1.0:
        return []
    ratio = measured / reference
    detail = (
        f"thermal resistance {measured:.4f} °C/W against {reference:.4f}: {ratio:.2f}x, at least "
        f"{ratio_low:.2f}x allowing for the fit, run-to-run and rig variation; reference: "
        f"{summary.thermal_reference}"
    )
    if flag_ratio is not None and ratio >= flag_ratio > ratio_low:
        return [
            Finding(
                "thermal_resistance_unproven",
                "info",
                "soak",
                f"the card may run up to {(ratio - 1) * 100:.0f}% hotter per watt than healthy "
                "cards of its model, but this run cannot tell that from the rig's and "
                "run-to-run variation",
                value=f"{measured:.4f} °C/W",
                reference=f"{reference:.4f} °C/W",
                measure=round(ratio, 4),
                detail=detail,
            )
        ]
    return [
        Finding(
            "thermal_resistance",
            "major" if ratio_low >= 1.5 else "info",
            "soak",
            f"the card runs at least {(ratio_low - 1) * 100:.0f}% hotter per watt than healthy "
            "cards of its model",
            value=f"{measured:.4f} °C/W",
            reference=f"{reference:.4f} °C/W",
            measure=round(ratio_low, 4),
            detail=detail,
        )
    ]


def vbios_findings(record: RunRecord, known_versions: tuple[str, ...]) -> list[Finding]:
    """A VBIOS no healthy card of the model was seen with: listed, so that a buyer can check it
    is NVIDIA's (a modified VBIOS can change clocks, power limits and fan curves)."""
    vbios = record.identity.vbios
    if not known_versions or vbios is None or vbios in known_versions:
        return []
    return [
        Finding(
            "vbios_unrecognised",
            "info",
            "identity",
            f"VBIOS {vbios} is not one that healthy cards of this model were seen with "
            f"({', '.join(known_versions)})",
            value=vbios,
            reference=", ".join(known_versions),
        )
    ]


def card_history_findings(history: StoredHistory | None) -> list[Finding]:
    """What the results database knew of the card and this run contradicts (card_history.py).
    None (not looked up) or not checked (the database could not be read): no finding, since
    nothing was compared; the record's stored_history says which."""
    if history is None or not history.checked:
        return []
    found: list[Finding] = []
    for fact in history.facts:
        if fact.kind == "identity":
            found.append(
                Finding(
                    "card_identity_changed",
                    "major",
                    "history",
                    f"{fact.field} is {fact.found}, but stored run {fact.run_id} of this card had "
                    f"{fact.stored}: the history does not match the card; check it is the card "
                    "you think",
                    value=fact.found,
                    reference=fact.stored,
                )
            )
        else:
            found.append(
                Finding(
                    "card_counters_decreased",
                    "major",
                    "history",
                    f"{fact.field} went down from {fact.stored} (stored run {fact.run_id}) to "
                    f"{fact.found}: it never goes down on one card (an InfoROM reset or another "
                    "card)",
                    value=fact.found,
                    reference=f">= {fact.stored}",
                )
            )
    return found


# --- issue 14: resale readiness, the memory clear, a partial or longer run ------------------------
# Readiness items with findings of their own: ECC off or pending (ecc_disabled, ecc_mode_pending)
# and a lowered power limit (power_limit_reduced) are judged as health; the others are settings.
_OWN_FINDINGS = frozenset({"ecc_mode"})


def readiness_findings(record: RunRecord) -> list[Finding]:
    """Settings away from their factory defaults (readiness.py): one finding listing each with
    its reset command. Not a fault of the card: the default policy lists it (grade A)."""
    items = record.readiness or ()
    default_w = record.identity.power_limit_default_w
    changed = [
        item
        for item in items
        if item.status == "not_default"
        and item.key not in _OWN_FINDINGS
        # a lowered limit is power_limit_reduced's (counters), a raised one is a setting
        and not (item.key == "power_limit" and _below(item.value, default_w))
    ]
    if not changed:
        return []
    listed = "; ".join(f"{i.name} {i.value} (reset: {i.reset})" for i in changed)
    return [
        Finding(
            "settings_not_default",
            "info",
            "readiness",
            f"not at factory defaults: {listed}",
            value=", ".join(f"{i.name}: {i.value}" for i in changed),
            reference=", ".join(f"{i.name}: {i.expected}" for i in changed),
            measure=float(len(changed)),
        )
    ]


def _below(value: str | None, default_w: float | None) -> bool:
    try:
        watts = float((value or "").removesuffix(" W"))
    except ValueError:
        return False
    return default_w is not None and watts < default_w


def memory_clear_findings(record: RunRecord) -> list[Finding]:
    """The memory clear (memclear.py): words that read back non-zero after it wrote zeros are a
    fault (the card keeps data, or that memory is faulty); a clear not made in a complete run
    (--no-clear, an error) is listed. A record from before the clear existed (None) has neither."""
    clear = record.memory_clear
    if clear is None:
        return []
    if clear.status == "cleared":
        return _partial_clear(record, clear)
    if clear.status == "failed":
        first = clear.first_not_zero[0] if clear.first_not_zero else None
        where = f", first at address 0x{first.address:X} (0x{first.actual:08X})" if first else ""
        # a word that reads back other than what was written is a memory error, whatever step
        # wrote it: the rule every policy has for memory_errors grades it (F by default)
        return [
            Finding(
                "memory_errors",
                "critical",
                "memory_clear",
                f"{clear.words_not_zero} word(s) read back non-zero after the memory clear "
                f"wrote zeros{where}: the card keeps data there, or that memory is faulty",
                value=str(clear.words_not_zero),
                reference="0",
            )
        ]
    if not record.complete:  # refused, stopped or lost: that is the reason (INCOMPLETE); the
        return []  # certificate's memory-clear section still says it was not cleared, and why
    return [
        Finding(
            "memory_not_cleared",
            "info",
            "memory_clear",
            f"memory not cleared ({clear.note or 'no reason recorded'})",
            value="not cleared",
            reference="cleared",
        )
    ]


# An idle card gives all but the driver's share to the clear (99.4% of an H100's memory, 99.6% of
# an H200's): less means another process held memory the clear could not reach (--allow-busy),
# whose data the buyer would get with the card.
CLEAR_MIN_FRACTION = 0.98


def _partial_clear(record: RunRecord, clear: MemoryClear) -> list[Finding]:
    if clear.fraction is None or clear.fraction >= CLEAR_MIN_FRACTION:
        return []
    held = ", ".join(f"{p.pid} ({p.name or 'unnamed'})" for p in record.processes)
    return [
        Finding(
            "memory_not_cleared",
            "info",
            "memory_clear",
            f"memory only partly cleared: {clear.fraction:.1%} of it overwritten and read back; "
            f"the rest was held by {held or 'the driver or another process'}: clear it again "
            "with the card idle",
            value=f"{clear.fraction:.1%}",
            reference=f">= {CLEAR_MIN_FRACTION:.0%}",
        )
    ]


def selection_findings(record: RunRecord) -> list[Finding]:
    """A partial run (--tests): the tests left out count as not measured (test_not_measured, the
    rule every policy has for a test that did not run: INCOMPLETE by default), so the grade
    covers only the selected ones and never passes the card as a whole."""
    chosen = record.tests_selected
    if chosen is None:
        return []
    left_out = [t.name for t in record.tests if t.name not in chosen]
    if not left_out:
        return []
    return [
        Finding(
            "test_not_measured",
            "major",
            "selection",
            f"not measured: {', '.join(left_out)} (not selected with --tests); the grade covers "
            f"{', '.join(chosen)} only",
            value="not selected",
            reference="every test",
        )
    ]


def soak_length_findings(record: RunRecord, preset_soak_s: float | None) -> list[Finding]:
    """A soak shorter than its preset's (--soak): less thermal evidence than the preset holds a
    card to, so not A. A longer one (a burn-in) is what the preset asks and more."""
    asked = record.soak_duration_s
    if asked is None or preset_soak_s is None or asked >= preset_soak_s:
        return []
    return [
        Finding(
            "soak_shortened",
            "minor",
            "soak",
            f"the soak ran {asked:g} s (--soak), shorter than the {record.preset} preset's "
            f"{preset_soak_s:g} s: less thermal evidence",
            value=f"{asked:g} s",
            reference=f">= {preset_soak_s:g} s",
            measure=asked,
        )
    ]
