"""findings: the NVML counters, the link and power limit, and Xid events, one fault at a time.

Fast unit tests (no grade, no sim card; bench/mutation.py runs them per mutant): hand-built
HealthCounters, and a stored H100 record (tests/data/runs/) with one fault planted by
dataclasses.replace. Whole-grade tests (test_ecc_history.py, test_every_rule.py,
test_grade_scenarios.py) show the same findings graded; these pin each finding's code,
severity, words and numbers, on both sides of every bound.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gpuhealth.judge.analysis import judge
from gpuhealth.judge.findings import (
    RETIRED_PAGES_LIMIT,
    counter_findings,
    identity_findings,
    xid_findings,
)
from gpuhealth.judge.grading import load_policy
from gpuhealth.models import (
    Finding,
    HealthCounters,
    RowRemapHistogram,
    RunRecord,
    XidEvent,
    record_from_json,
)

RECORD_PATH = Path(__file__).resolve().parent / "data" / "runs" / "h100-quick-2026-11-26.json"
HEALTHY = HealthCounters(
    ecc_enabled=True,
    ecc_volatile_corrected=0,
    ecc_volatile_uncorrected=0,
    ecc_aggregate_uncorrected=0,
    remapped_rows_correctable=0,
    remapped_rows_uncorrectable=0,
    remapped_rows_pending=False,
    remapped_rows_failure=False,
    row_remap_histogram=RowRemapHistogram(max=2560, high=0, partial=0, low=0, none=0),
)


@pytest.fixture(scope="module")
def record() -> RunRecord:
    return record_from_json(RECORD_PATH.read_text(encoding="utf-8"), str(RECORD_PATH))


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


def one(found: list[Finding], code: str) -> Finding:
    (finding,) = [f for f in found if f.code == code]
    return finding


# --- counters: unreadable, ECC mode -------------------------------------------------------------


def test_a_healthy_card_has_no_counter_finding() -> None:
    assert counter_findings(HEALTHY, HEALTHY) == []
    assert counter_findings(HEALTHY, None) == []
    assert counter_findings(None, HEALTHY) == []


def test_counters_read_neither_time_are_unreadable() -> None:
    assert counter_findings(None, None) == [
        Finding("counters_unreadable", "major", "counters", "health counters could not be read")
    ]


def test_ecc_off_is_found_in_whichever_reading_there_is() -> None:
    off = replace(HEALTHY, ecc_enabled=False)
    expected = Finding(
        "ecc_disabled",
        "minor",
        "counters",
        "ECC is disabled: memory errors go uncounted and the card's error history is "
        "void (turn it on: nvidia-smi -i <gpu> -e 1, then reboot)",
        value="off",
        reference="on",
    )
    assert counter_findings(off, None) == [expected]  # the card lost: the reading before
    assert counter_findings(None, off) == [expected]
    assert counter_findings(HEALTHY, off) == [expected]  # the last reading decides
    assert counter_findings(off, HEALTHY) == []
    # not read is not "off"
    assert counter_findings(None, replace(HEALTHY, ecc_enabled=None)) == []


def test_an_ecc_change_waiting_for_a_reboot_voids_the_history() -> None:
    def pending(current: bool | None, after_reboot: bool | None) -> list[Finding]:
        now = replace(HEALTHY, ecc_enabled=current, ecc_pending_enabled=after_reboot)
        return [f for f in counter_findings(None, now) if f.code != "ecc_disabled"]

    assert pending(True, None) == [] and pending(None, True) == [] and pending(None, False) == []
    assert pending(True, True) == [] and pending(False, False) == []
    assert pending(False, True) == [
        Finding(
            "ecc_mode_pending",
            "major",
            "counters",
            "ECC will be turned on at the next reboot: until then memory errors go uncounted "
            "and the card's error history is void; reboot and grade again",
            value="off, on after reboot",
            reference="no change pending",
        )
    ]
    assert pending(True, False) == [
        Finding(
            "ecc_mode_pending",
            "major",
            "counters",
            "ECC will be turned off at the next reboot: from then on memory errors go uncounted "
            "and this history no longer holds; keep it on (nvidia-smi -i <gpu> -e 1), reboot "
            "and grade again",
            value="on, off after reboot",
            reference="no change pending",
        )
    ]
    # ECC off now and on after the reboot: both findings, off first
    both = counter_findings(None, replace(HEALTHY, ecc_enabled=False, ecc_pending_enabled=True))
    assert codes(both) == ["ecc_disabled", "ecc_mode_pending"]


# --- ECC errors during the run and in the card's history ------------------------------------------


def ecc(before: HealthCounters | None, after: HealthCounters | None) -> list[Finding]:
    return counter_findings(before, after)


def test_ecc_errors_during_the_run_are_the_counters_difference() -> None:
    before = replace(HEALTHY, ecc_volatile_uncorrected=1, ecc_volatile_corrected=4)
    after = replace(
        HEALTHY, ecc_volatile_uncorrected=3, ecc_volatile_corrected=11, ecc_aggregate_uncorrected=3
    )
    assert ecc(before, after) == [
        Finding(
            "ecc_uncorrectable_during_run",
            "critical",
            "counters",
            "2 uncorrectable ECC error(s) during the run",
            value="2",
            reference="0",
        ),
        Finding(
            "ecc_correctable_during_run",
            "minor",
            "counters",
            "7 correctable ECC error(s) during the run",
            value="7",
            reference="0",
        ),
    ]  # the history's 3 include the run's: no history finding while the run added some
    # the counters unchanged: nothing happened during the run
    assert ecc(before, before) == []
    # one side unread: no difference to take
    assert ecc(replace(before, ecc_volatile_uncorrected=None), after)[0].code == (
        "ecc_correctable_during_run"
    )
    assert codes(ecc(before, replace(after, ecc_volatile_corrected=None))) == [
        "ecc_uncorrectable_during_run"
    ]
    # the card lost: the reading before has no difference, only its history
    assert ecc(after, None) == [
        Finding(
            "ecc_uncorrectable_history",
            "major",
            "counters",
            "3 uncorrectable ECC error(s) in the card's history",
            value="3",
            reference="0",
        )
    ]
    assert ecc(None, after) == ecc(after, None)


def test_ecc_history_is_split_into_card_memory_and_sram_when_both_are_read() -> None:
    old = replace(
        HEALTHY,
        ecc_aggregate_uncorrected=5,
        ecc_aggregate_uncorrected_dram=3,
        ecc_aggregate_uncorrected_sram=2,
    )
    assert ecc(old, old) == [
        Finding(
            "ecc_uncorrectable_history",
            "major",
            "counters",
            "5 uncorrectable ECC error(s) in the card's history (card memory 3, on-chip SRAM 2)",
            value="5",
            reference="0",
        ),
        Finding(
            "ecc_sram_uncorrectable_history",
            "major",
            "counters",
            "2 uncorrectable error(s) in on-chip memory (SRAM) in the card's history: "
            "NVIDIA's field diagnostic decides whether it qualifies for RMA (its SRAM "
            "threshold flag); run it before the card is used or sold",
            value="2",
            reference="0",
        ),
    ]
    dram_only = replace(old, ecc_aggregate_uncorrected_sram=None)
    assert [f.message for f in ecc(dram_only, dram_only)] == [
        "5 uncorrectable ECC error(s) in the card's history"
    ]
    sram_unread = replace(old, ecc_aggregate_uncorrected_dram=None)
    assert codes(ecc(sram_unread, sram_unread)) == [
        "ecc_uncorrectable_history",
        "ecc_sram_uncorrectable_history",
    ]
    assert ecc(sram_unread, sram_unread)[0].message == (
        "5 uncorrectable ECC error(s) in the card's history"
    )
    all_dram = replace(old, ecc_aggregate_uncorrected_dram=5, ecc_aggregate_uncorrected_sram=0)
    assert codes(ecc(all_dram, all_dram)) == ["ecc_uncorrectable_history"]
    assert ecc(all_dram, all_dram)[0].message.endswith("(card memory 5, on-chip SRAM 0)")
    # an SRAM count with no total still names the SRAM
    sram_alone = replace(old, ecc_aggregate_uncorrected=0)
    assert codes(ecc(sram_alone, sram_alone)) == ["ecc_sram_uncorrectable_history"]
    # errors during the run say it; the history findings then wait (they include the run's)
    during = replace(old, ecc_volatile_uncorrected=1)
    assert codes(ecc(replace(old, ecc_volatile_uncorrected=0), during)) == [
        "ecc_uncorrectable_during_run"
    ]


# --- row remapping (Ampere and later) -----------------------------------------------------------


def rows(**changed: object) -> list[Finding]:
    now = replace(HEALTHY, **changed)  # type: ignore[arg-type]
    return counter_findings(now, now)


def test_row_remap_failure_and_pending() -> None:
    assert rows(remapped_rows_failure=True) == [
        Finding(
            "row_remap_failure",
            "critical",
            "counters",
            "row remapping failed: a bank has no spare rows left",
            value="failure",
            reference="none",
        )
    ]
    assert rows(remapped_rows_pending=True) == [
        Finding(
            "row_remap_pending",
            "major",
            "counters",
            "a row remap is pending: the card needs a reset before use",
            value="pending",
            reference="none",
        )
    ]
    assert rows(remapped_rows_failure=None, remapped_rows_pending=None) == []
    both = rows(remapped_rows_failure=True, remapped_rows_pending=True)
    assert codes(both) == ["row_remap_failure", "row_remap_pending"]


def test_remapped_rows_count_both_causes() -> None:
    assert rows(remapped_rows_correctable=1, remapped_rows_uncorrectable=2) == [
        Finding(
            "rows_remapped",
            "minor",
            "counters",
            "3 row(s) remapped (2 for uncorrectable errors)",
            value="3",
            reference="0",
        )
    ]
    only_correctable = rows(remapped_rows_correctable=4, remapped_rows_uncorrectable=None)
    assert [(f.message, f.value) for f in only_correctable] == [
        ("4 row(s) remapped (0 for uncorrectable errors)", "4")
    ]
    only_uncorrectable = rows(remapped_rows_correctable=None, remapped_rows_uncorrectable=2)
    assert [(f.message, f.value) for f in only_uncorrectable] == [
        ("2 row(s) remapped (2 for uncorrectable errors)", "2")
    ]
    assert rows(remapped_rows_correctable=None, remapped_rows_uncorrectable=None) == []


def test_banks_running_out_of_spare_rows() -> None:
    histogram = RowRemapHistogram(max=2553, high=0, partial=1, low=2, none=4)
    assert rows(row_remap_histogram=histogram) == [
        Finding(
            "row_spares_depleting",
            "major",
            "counters",
            "banks with few or no spare rows left: partial 1, low 2, none 4",
            value="7",
            reference="0",
        )
    ]
    for field in ("partial", "low", "none"):
        alone = RowRemapHistogram(max=2559, high=0, partial=0, low=0, none=0)
        found = rows(row_remap_histogram=replace(alone, **{field: 1}))
        assert [(f.code, f.value) for f in found] == [("row_spares_depleting", "1")], field
    # banks that used a spare or two but keep most ("high") are healthy
    assert rows(row_remap_histogram=RowRemapHistogram(2557, 3, 0, 0, 0)) == []
    assert rows(row_remap_histogram=None) == []


# --- page retirement (before Ampere) --------------------------------------------------------------


def test_a_pending_page_retirement_needs_a_reboot() -> None:
    assert rows(retired_pages_pending=True) == [
        Finding(
            "retired_pages_pending",
            "major",
            "counters",
            "a page retirement is pending: the card needs a reboot (driver reload) before use",
            value="pending",
            reference="none",
        )
    ]
    assert rows(retired_pages_pending=False) == rows(retired_pages_pending=None) == []


def test_retired_pages_below_and_at_nvidia_s_limit() -> None:
    assert RETIRED_PAGES_LIMIT == 63  # DCGM_LIMIT_MAX_RETIRED_PAGES
    below = rows(retired_pages_sbe=40, retired_pages_dbe=22)
    assert below == [
        Finding(
            "pages_retired",
            "minor",
            "counters",
            "62 memory page(s) retired (22 for double-bit errors, 40 for repeated single-bit "
            "errors)",
            value="62",
            reference="0",
            measure=22.0,
        )
    ]
    at = rows(retired_pages_sbe=40, retired_pages_dbe=23)
    assert at == [
        Finding(
            "retired_pages_limit",
            "critical",
            "counters",
            "63 pages retired, at NVIDIA's limit of 63 (DCGM's health check and field "
            "diagnostic fail the card): further failing pages cannot be retired",
            value="63",
            reference="< 63",
            measure=63.0,
        ),
        Finding(
            "pages_retired",
            "minor",
            "counters",
            "63 memory page(s) retired (23 for double-bit errors, 40 for repeated single-bit "
            "errors)",
            value="63",
            reference="0",
            measure=23.0,
        ),
    ]
    # either cause alone counts; an unread count is none
    assert [(f.value, f.measure) for f in rows(retired_pages_sbe=None, retired_pages_dbe=2)] == [
        ("2", 2.0)
    ]
    sbe_only = rows(retired_pages_sbe=3, retired_pages_dbe=None)
    assert [(f.message, f.measure) for f in sbe_only] == [
        (
            "3 memory page(s) retired (0 for double-bit errors, 3 for repeated single-bit errors)",
            0.0,
        )
    ]
    assert codes(rows(retired_pages_sbe=63, retired_pages_dbe=None)) == [
        "retired_pages_limit",
        "pages_retired",
    ]
    assert codes(rows(retired_pages_sbe=None, retired_pages_dbe=64)) == [
        "retired_pages_limit",
        "pages_retired",
    ]
    # as many of one cause as of the other: the pages add up
    assert [f.value for f in rows(retired_pages_sbe=2, retired_pages_dbe=2)] == ["4"]
    assert rows(retired_pages_sbe=0, retired_pages_dbe=0) == []


def test_every_counter_finding_of_one_reading_in_order() -> None:
    worn = replace(
        HEALTHY,
        ecc_enabled=False,
        ecc_pending_enabled=True,
        ecc_aggregate_uncorrected=1,
        remapped_rows_failure=True,
        retired_pages_pending=True,
    )
    assert codes(counter_findings(worn, worn)) == [
        "ecc_disabled",
        "ecc_mode_pending",
        "ecc_uncorrectable_history",
        "row_remap_failure",
        "retired_pages_pending",
    ]


# --- the link and the power limit (identity_findings) ---------------------------------------------


def with_counters(
    record: RunRecord, before: HealthCounters | None, after: HealthCounters | None
) -> RunRecord:
    return replace(record, counters_before=before, counters_after=after, xid_events=())


def link(gen: int | None, width: int | None, **more: object) -> HealthCounters:
    return replace(HEALTHY, pcie_gen_current=gen, pcie_width_current=width, **more)  # type: ignore[arg-type]


def test_the_stored_healthy_record_has_no_identity_finding(record: RunRecord) -> None:
    assert record.identity.pcie_width_max == 16 and record.identity.pcie_gen_max == 5
    assert identity_findings(record) == []


def test_a_narrow_pcie_link_in_every_reading_is_degraded(record: RunRecord) -> None:
    narrow = with_counters(record, link(5, 8), link(5, 8))
    assert identity_findings(narrow) == [
        Finding(
            "pcie_link_degraded",
            "major",
            "counters",
            "PCIe link runs x8, the card supports x16",
            value="x8",
            reference="x16",
        )
    ]
    # the widest reading counts: one at full width is no fault
    assert identity_findings(with_counters(record, link(5, 8), link(5, 16))) == []
    assert identity_findings(with_counters(record, link(5, 16), link(5, 8))) == []
    assert identity_findings(with_counters(record, link(5, 4), link(5, 8)))[0].value == "x8"
    assert identity_findings(with_counters(record, link(5, 8), None))[0].value == "x8"
    assert identity_findings(with_counters(record, None, link(5, 8)))[0].value == "x8"
    # a reading without a width, or a card that does not say its maximum: nothing to hold
    assert identity_findings(with_counters(record, link(5, None), link(5, 8)))[0].value == "x8"
    assert identity_findings(with_counters(record, link(5, None), link(5, None))) == []
    no_max = replace(narrow, identity=replace(record.identity, pcie_width_max=None))
    assert identity_findings(no_max) == []


def test_a_pcie_generation_below_the_maximum_in_every_reading_is_degraded(
    record: RunRecord,
) -> None:
    slow = with_counters(record, link(3, 16), link(4, 16))
    assert identity_findings(slow) == [
        Finding(
            "pcie_link_degraded",
            "major",
            "counters",
            "PCIe link trained at Gen4, the card supports Gen5",
            value="Gen4",
            reference="Gen5",
        )
    ]
    # the generation drops at idle: one reading at the maximum is enough
    assert identity_findings(with_counters(record, link(5, 16), link(1, 16))) == []
    assert identity_findings(with_counters(record, link(None, 16), link(None, 16))) == []
    assert identity_findings(with_counters(record, link(None, 16), link(4, 16)))[0].value == "Gen4"
    no_max = replace(slow, identity=replace(record.identity, pcie_gen_max=None))
    assert identity_findings(no_max) == []
    both = identity_findings(with_counters(record, link(4, 8), link(4, 8)))
    assert [f.value for f in both] == ["x8", "Gen4"]


def with_pcie_test(record: RunRecord, status: str, **parameters: object) -> RunRecord:
    from gpuhealth.models import TestResult

    return replace(record, tests=(*record.tests, TestResult("pcie", status, parameters=parameters)))  # type: ignore[arg-type]


def test_a_link_read_under_load_is_the_pcie_test_s_to_judge(record: RunRecord) -> None:
    idle_low = with_counters(record, link(4, 8), link(4, 8))
    # the pcie test read both under load: the idle readings say nothing
    loaded = with_pcie_test(idle_low, "passed", link_gen_under_load=5, link_width_under_load=16)
    assert identity_findings(loaded) == []
    # it read only the width: the idle generation is still judged here, and the other way round
    width_only = with_pcie_test(idle_low, "passed", link_width_under_load=16)
    assert [f.value for f in identity_findings(width_only)] == ["Gen4"]
    gen_only = with_pcie_test(idle_low, "failed", link_gen_under_load=5)
    assert [f.value for f in identity_findings(gen_only)] == ["x8"]
    # a pcie test that did not measure read nothing under load
    errored = with_pcie_test(idle_low, "error", link_gen_under_load=5, link_width_under_load=16)
    assert [f.value for f in identity_findings(errored)] == ["x8", "Gen4"]


def test_pcie_replays_during_the_run(record: RunRecord) -> None:
    before, after = link(5, 16, pcie_replay_count=2), link(5, 16, pcie_replay_count=7)
    assert identity_findings(with_counters(record, before, after)) == [
        Finding(
            "pcie_replays",
            "minor",
            "counters",
            "5 PCIe replay(s) during the run",
            value="5",
            reference="0",
        )
    ]
    assert identity_findings(with_counters(record, after, after)) == []
    assert identity_findings(with_counters(record, None, after)) == []
    assert identity_findings(with_counters(record, after, None)) == []
    unread = link(5, 16, pcie_replay_count=None)
    assert identity_findings(with_counters(record, unread, after)) == []
    assert identity_findings(with_counters(record, before, unread)) == []


def test_a_power_limit_below_the_default_by_more_than_a_watt(record: RunRecord) -> None:
    assert record.identity.power_limit_default_w == 700.0

    def limited(watts: float | None, before_w: float | None = 700.0) -> list[Finding]:
        return identity_findings(
            with_counters(
                record,
                link(5, 16, power_limit_w=before_w),
                link(5, 16, power_limit_w=watts),
            )
        )

    assert limited(450.0) == [
        Finding(
            "power_limit_reduced",
            "minor",
            "counters",
            "power limit set to 450 W, default 700 W (results reflect the lower limit)",
            value="450 W",
            reference="700 W",
        )
    ]
    assert [f.value for f in limited(698.5)] == ["698 W"]  # ".0f" rounds half to even
    assert limited(699.0) == []  # within a watt of the default: NVML's rounding
    assert limited(700.0) == [] and limited(720.0) == []
    assert limited(None, before_w=450.0) == []  # the last reading has none: not judged
    assert [f.value for f in limited(450.0, before_w=None)] == ["450 W"]
    # the card lost: the reading before decides
    lost = with_counters(record, link(5, 16, power_limit_w=500.0), None)
    assert [f.value for f in identity_findings(lost)] == ["500 W"]
    no_default = replace(record.identity, power_limit_default_w=None)
    assert (
        identity_findings(
            replace(
                with_counters(record, None, link(5, 16, power_limit_w=450.0)), identity=no_default
            )
        )
        == []
    )


def test_no_counters_no_identity_finding(record: RunRecord) -> None:
    assert identity_findings(with_counters(record, None, None)) == []


# --- Xid events ---------------------------------------------------------------------------------


def test_each_xid_is_classed_by_the_catalogue(record: RunRecord) -> None:
    events = (
        XidEvent(12.34, 48, "the driver's own words"),
        XidEvent(20.0, 31),
        XidEvent(31.96, 999, "vendor text"),
        XidEvent(40.0, 1000),
    )
    assert xid_findings(replace(record, xid_events=events)) == [
        Finding(
            "xid_fatal",
            "critical",
            "driver",
            "Xid 48 at 12.3 s: double-bit ECC error (a fault of the card's memory or its repair)",
            value="48",
        ),
        Finding(
            "xid_application",
            "minor",
            "driver",
            "Xid 31 at 20.0 s: GPU memory page fault (an error the catalogue attributes to the "
            "application)",
            value="31",
        ),
        Finding(
            "xid",
            "major",
            "driver",
            "Xid 999 at 32.0 s: vendor text (an event gpuhealth does not know)",
            value="999",
        ),
        Finding(
            "xid",
            "major",
            "driver",
            "Xid 1000 at 40.0 s: not in gpuhealth's Xid catalogue (an event gpuhealth does not "
            "know)",
            value="1000",
        ),
    ]
    assert xid_findings(replace(record, xid_events=())) == []


def test_an_xid_is_judged_when_no_counter_was_read(record: RunRecord) -> None:
    """An Xid 79 (the card fell off the bus) is F whatever else was read: a record with no
    counter readings once lost its Xid events here (identity_findings returned early)."""
    planted = replace(with_counters(record, None, None), xid_events=(XidEvent(1.0, 79),))
    assert identity_findings(planted) == []
    judged = judge(planted, None, load_policy())
    assert judged.analysis is not None and judged.grade is not None
    lost = [f for f in judged.analysis.findings if f.code == "xid_card_lost"]
    assert len(lost) == 1 and lost[0].message.startswith("Xid 79"), judged.analysis.findings
    assert any("79" in r.message for r in judged.grade.reasons), judged.grade.reasons
