"""A clock setting that held the clocks down under load (gpuhealth/judge/clockhold.py): found on
both signs only, tied to the deficits it causes, shown in the readiness list, graded INCOMPLETE.

Stored records only (tests/data/current, tests/data/runs), with their telemetry changed the way a
locked card's reads; the sim's locked clocks are graded end to end in test_every_rule.py and
test_readiness_burnin.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from gpuhealth.judge import readiness
from gpuhealth.judge.analysis import judge
from gpuhealth.judge.causes import attribute
from gpuhealth.judge.clockhold import (
    HELD_BELOW,
    MIN_HELD_SAMPLES,
    clock_hold_findings,
    clock_holds,
    default_clocks_mhz,
)
from gpuhealth.judge.grading import load_policy
from gpuhealth.judge.profiles import builtin_profiles, match_profile
from gpuhealth.models import Finding, ReadinessItem, RunRecord, TelemetrySample, record_from_json

DATA = Path(__file__).resolve().parent / "data"
QUICK = DATA / "current" / "sim-h100-quick.json"
REAL_RUNS = sorted((DATA / "runs").glob("h*-20*.json"))  # H100 and H200 cards, cuda backend
HOLD_SM = 0x2  # NVML "application clocks setting"
POWER_CAP = 0x4


@functools.cache
def quick() -> RunRecord:
    return record_from_json(QUICK.read_text(encoding="utf-8"), str(QUICK))


Change = Callable[[TelemetrySample], TelemetrySample]


def loaded_samples_changed(record: RunRecord, tests: set[str], change: Change) -> RunRecord:
    """The record with each loaded sample (utilization >= 50%) of the named tests changed."""
    return replace(
        record,
        tests=tuple(
            replace(
                t,
                telemetry=tuple(
                    change(s) if t.name in tests and (s.utilization_pct or 0) >= 50 else s
                    for s in t.telemetry
                ),
            )
            for t in record.tests
        ),
    )


def locked(sm_mhz: float = 1000.0, reasons: int = HOLD_SM) -> Change:
    return lambda s: replace(s, sm_clock_mhz=sm_mhz, clocks_event_reasons=reasons)


SHORT_TESTS = {"memtest", "fp32", "fp16_tensor", "gemm"}  # 9 loaded samples in the quick record


def test_the_stored_healthy_record_and_real_cards_show_no_hold() -> None:
    assert clock_holds(quick()) == ()
    assert len(REAL_RUNS) == 8, "the real-card records are missing"
    # 8 records of 2 H100 and 2 H200 cards, 3354 loaded samples: reasons 0 and 4 only
    for path in REAL_RUNS:
        record = record_from_json(path.read_text(encoding="utf-8"), str(path))
        assert clock_holds(record) == (), path.name


def test_an_sm_clock_held_in_every_test_is_found_with_its_clock_and_tests() -> None:
    record = loaded_samples_changed(quick(), SHORT_TESTS | {"soak"}, locked(1000.0))
    (hold,) = clock_holds(record)
    assert (hold.clock, hold.held_mhz, hold.default_mhz) == ("sm", 1000.0, 1980.0)
    assert hold.tests == ("memtest", "fp32", "fp16_tensor", "gemm", "soak")
    assert hold.held_samples == hold.loaded_samples == 386
    assert clock_hold_findings(record) == [
        Finding(
            "clocks_held",
            "major",
            "sm",
            "a clock setting (locked or application clocks) held the SM clock at 1000 MHz "
            "(default 1980 MHz) under load in memtest, fp32, fp16_tensor, gemm, soak (386 of 386 "
            "loaded samples): what was measured at that clock is the setting's, not the card's; "
            "reset with `nvidia-smi -i 0 -rgc; nvidia-smi -i 0 -rac` and grade again",
            value="1000 MHz",
            reference="1980 MHz",
            measure=0.5051,
            detail="NVML clocks-event reason 'application clocks setting' with the clock below "
            "95% of its default",
        )
    ]


def test_a_lock_that_binds_only_in_the_short_tests_is_found() -> None:
    """-lgc 0,1800: the power-capped soak runs below the lock; the short tests are held."""
    record = loaded_samples_changed(quick(), SHORT_TESTS, locked(1800.0))
    (hold,) = clock_holds(record)
    assert hold.tests == ("memtest", "fp32", "fp16_tensor", "gemm")
    assert (hold.held_samples, hold.loaded_samples) == (9, 386)


@pytest.mark.parametrize(
    ("why", "change"),
    [
        ("the reason without a low clock: a card at its default", locked(1980.0)),
        ("just above the bound", locked(HELD_BELOW * 1980.0)),
        ("a low clock with no reason named", locked(1000.0, 0)),
        ("a low clock without the reason: the power cap's", locked(1000.0, POWER_CAP)),
        ("the reason with the power cap: the memory clock's or the cap's", locked(1000.0, 6)),
        ("the reason with a thermal slowdown", locked(1000.0, HOLD_SM | 0x40)),
        ("no reason read", lambda s: replace(s, sm_clock_mhz=1000.0, clocks_event_reasons=None)),
    ],
)
def test_one_sign_alone_is_not_a_hold(why: str, change: Change) -> None:
    record = loaded_samples_changed(quick(), SHORT_TESTS | {"soak"}, change)
    assert clock_holds(record) == (), why


def test_just_below_the_bound_is_a_hold() -> None:
    record = loaded_samples_changed(quick(), {"soak"}, locked(HELD_BELOW * 1980.0 - 1.0))
    assert [h.clock for h in clock_holds(record)] == ["sm"]


def test_a_few_samples_are_not_a_hold_and_a_test_must_be_held_throughout() -> None:
    # memtest's 5 loaded samples: enough; fp32's 1 and fp16_tensor's 2: fewer than the minimum
    assert MIN_HELD_SAMPLES == 3
    assert [h.tests for h in clock_holds(loaded_samples_changed(quick(), {"memtest"}, locked()))]
    assert clock_holds(loaded_samples_changed(quick(), {"fp16_tensor"}, locked())) == ()
    both = loaded_samples_changed(quick(), {"fp32", "fp16_tensor"}, locked())
    assert [h.held_samples for h in clock_holds(both)] == [3]
    # held in a few of the soak's 377 loaded samples: a phase change, not a setting
    soak = next(t for t in quick().tests if t.name == "soak")
    first = {id(s) for s in soak.telemetry[:150]}
    part = loaded_samples_changed(quick(), {"soak"}, lambda s: locked()(s) if id(s) in first else s)
    assert clock_holds(part) == ()


def test_a_test_held_in_exactly_half_its_loaded_samples_counts() -> None:
    tensor = next(t for t in quick().tests if t.name == "fp16_tensor")
    first = {id(s) for s in tensor.telemetry[:1]}  # 1 of its 2 loaded samples
    record = loaded_samples_changed(
        loaded_samples_changed(quick(), {"memtest"}, locked()),
        {"fp16_tensor"},
        lambda s: locked()(s) if id(s) in first else s,
    )
    (hold,) = clock_holds(record)
    assert (hold.tests, hold.held_samples) == (("memtest", "fp16_tensor"), 6)


def test_idle_samples_are_not_read() -> None:
    idle = replace(quick(), tests=tuple(
        replace(t, telemetry=tuple(
            replace(s, utilization_pct=0.0, sm_clock_mhz=345.0, clocks_event_reasons=HOLD_SM)
            for s in t.telemetry
        ))
        for t in quick().tests
    ))  # fmt: skip
    assert clock_holds(idle) == ()


def test_a_memory_clock_held_is_found_apart_from_the_power_capped_sm_clock() -> None:
    def mem_locked(s: TelemetrySample) -> TelemetrySample:
        # the power cap holds the SM clock while the memory lock names the setting
        return replace(s, memory_clock_mhz=1600.0, clocks_event_reasons=HOLD_SM | POWER_CAP,
                       sm_clock_mhz=1500.0)  # fmt: skip

    record = loaded_samples_changed(quick(), SHORT_TESTS | {"soak"}, mem_locked)
    (hold,) = clock_holds(record)
    assert (hold.clock, hold.held_mhz, hold.default_mhz) == ("memory", 1600.0, 2619.0)
    (finding,) = clock_hold_findings(record)
    assert finding.key == "clocks_held/memory"
    assert "nvidia-smi -i 0 -rmc; nvidia-smi -i 0 -rac" in finding.message


def _with_app_clocks(record: RunRecord, status: str, expected: str) -> RunRecord:
    items = tuple(
        replace(i, status=status, expected=expected) if i.key == "applications_clocks" else i
        for i in record.readiness or ()
    )
    return replace(record, readiness=items)


def test_the_default_is_the_default_application_clock_never_above_the_max() -> None:
    assert default_clocks_mhz(quick()) == (1980.0, 2619.0)
    lower = _with_app_clocks(quick(), "ok", "sm 1410 MHz, memory 2619 MHz")
    assert default_clocks_mhz(lower) == (1410.0, 2619.0)
    # a model whose default application clock is below its boost is not held at that clock
    assert clock_holds(loaded_samples_changed(lower, SHORT_TESTS | {"soak"}, locked(1410.0))) == ()
    # a default above what the card reports (an edited record) is held to the reported max
    higher = _with_app_clocks(quick(), "ok", "sm 5000 MHz, memory 9000 MHz")
    assert default_clocks_mhz(higher) == (1980.0, 2619.0)
    # an unread application clock leaves the max clocks
    unread = _with_app_clocks(quick(), "unreadable", "sm 1410 MHz, memory 2619 MHz")
    assert default_clocks_mhz(unread) == (1980.0, 2619.0)
    no_max = replace(quick(), identity=replace(quick().identity, max_sm_clock_mhz=None))
    assert default_clocks_mhz(_with_app_clocks(no_max, "ok", "sm 1410 MHz, memory 2619 MHz")) == (
        1410.0, 2619.0
    )  # fmt: skip
    assert default_clocks_mhz(replace(no_max, readiness=None))[0] is None
    assert clock_holds(replace(loaded_samples_changed(no_max, {"soak"}, locked()),
                               readiness=None)) == ()  # fmt: skip


# --- readiness: the list shown ------------------------------------------------------------------


def _locked_unreadable(record: RunRecord) -> RunRecord:
    items = tuple(
        replace(i, value=None, status="unreadable", note="NVML offers no query for locked clocks")
        if i.key == "locked_clocks"
        else i
        for i in record.readiness or ()
    )
    return replace(record, readiness=items)


def _item(items: tuple[ReadinessItem, ...] | None, key: str) -> ReadinessItem:
    return next(i for i in items or () if i.key == key)


def test_a_hold_shows_the_unreadable_locked_clocks_changed() -> None:
    real_like = _locked_unreadable(quick())
    assert readiness.verdict(readiness.shown_items(real_like)) == "not confirmed"
    held = loaded_samples_changed(real_like, SHORT_TESTS | {"soak"}, locked())
    shown = readiness.shown_items(held)
    item = _item(shown, "locked_clocks")
    assert (item.status, item.value) == (
        "not_default", "SM clock at 1000 MHz (default 1980 MHz) under load"
    )  # fmt: skip
    assert item.note is not None and "seen by the tests" in item.note
    assert readiness.verdict(shown) == "not ready"
    assert "reset: Locked clocks" in readiness.resale_line(held)
    # what was read stays in the record as read
    assert _item(held.readiness, "locked_clocks").status == "unreadable"


def test_a_hold_with_changed_application_clocks_is_theirs() -> None:
    changed = _with_app_clocks(_locked_unreadable(quick()), "not_default", "sm 1980 MHz, memory "
                               "2619 MHz")  # fmt: skip
    held = loaded_samples_changed(changed, SHORT_TESTS | {"soak"}, locked())
    assert _item(readiness.shown_items(held), "locked_clocks").status == "unreadable"
    # and without a hold nothing changes
    assert (
        readiness.shown_items(_locked_unreadable(quick())) == _locked_unreadable(quick()).readiness
    )


# --- causes and the grade -----------------------------------------------------------------------


HOLDS = [
    Finding("clocks_held", "major", "sm", "held", measure=0.5),
    Finding("clocks_held", "major", "memory", "held", measure=0.9),
]


def deficit(source: str, at_least: float | None) -> Finding:
    """A performance deficit whose one-sided bound is `at_least` below healthy cards."""
    return Finding("performance_deficit", "major", source, "slow",
                   measure=None if at_least is None else -at_least)  # fmt: skip


@pytest.mark.parametrize(
    ("finding", "cause"),
    [
        (deficit("fp32", 0.45), "clocks_held/sm"),
        (deficit("tensor", 0.3), "clocks_held/sm"),
        (deficit("sustained", 0.1), "clocks_held/sm"),
        (deficit("fp32", 0.55), "clocks_held/sm"),  # the SM clock's 50% shortfall and the margin
        (deficit("fp32", 0.5501), None),  # deeper than the hold explains: the card's own
        (deficit("fp32", None), None),  # no number: never explained
        (deficit("memory", 0.15), "clocks_held/memory"),  # 10% shortfall and the margin
        (deficit("memory", 0.1501), None),
        (deficit("memory", 0.54), None),  # half the bandwidth behind an 8% memory lock
        (Finding("thermal_resistance_unmeasured", "info", "soak", "range"), "clocks_held/sm"),
        (Finding("identity_mismatch", "major", "bandwidth", "bus"), "clocks_held/memory"),
        (Finding("identity_mismatch", "major", "fp32", "SMs"), None),  # per SM per clock: its own
        (Finding("pcie_copy_slow", "major", "pcie", "slow"), None),
    ],
)
def test_what_a_held_clock_explains(finding: Finding, cause: str | None) -> None:
    attributed = attribute([*HOLDS, finding])[-1]
    assert attributed.cause == cause
    # without the hold the finding stands alone
    assert attribute([finding])[0].cause is None


def test_a_bus_mismatch_is_the_memory_holds_only_where_the_memory_deficit_is() -> None:
    bus = Finding("identity_mismatch", "major", "bandwidth", "bus")
    explained = attribute([*HOLDS, deficit("memory", 0.09), bus])
    assert [f.cause for f in explained[2:]] == ["clocks_held/memory", "clocks_held/memory"]
    deeper = attribute([*HOLDS, deficit("memory", 0.54), bus])
    assert [f.cause for f in deeper[2:]] == [None, None]
    only_sm = attribute([HOLDS[0], bus, Finding("thermal_resistance_unmeasured", "info", "soak",
                                                "range")])  # fmt: skip
    assert [f.cause for f in only_sm[1:]] == [None, "clocks_held/sm"]


def test_a_held_card_is_incomplete_with_its_deficits_told_as_the_holds() -> None:
    record = loaded_samples_changed(quick(), SHORT_TESTS | {"soak"}, locked())
    # the throughput a 1000 MHz clock gives: about half
    scale = 1000.0 / 1980.0
    tests = tuple(
        replace(t, metrics=tuple(
            replace(m, values=tuple(v * scale for v in m.values)) if "tflops" in m.name else m
            for m in t.metrics
        ))
        for t in record.tests
    )  # fmt: skip
    record = replace(record, tests=tests)
    profile = match_profile(record.identity, builtin_profiles())
    graded = judge(record, profile, load_policy())
    assert graded.grade is not None and graded.grade.letter == "INCOMPLETE"
    first = graded.grade.reasons[0]
    assert first.rule == "clocks-held" and first.grade == "INCOMPLETE"
    assert first.also and all(a.startswith("performance-fault") for a in first.also)
    assert [r.rule for r in graded.grade.reasons] == ["clocks-held"]
    # the same numbers without the hold are a performance fault (D): the hold is what changes it
    plain = judge(replace(record, tests=tuple(
        replace(t, telemetry=next(q for q in quick().tests if q.name == t.name).telemetry)
        for t in record.tests
    )), profile, load_policy())  # fmt: skip
    assert plain.grade is not None and plain.grade.letter == "D"


def test_a_slow_memory_behind_a_small_memory_lock_keeps_its_own_reason() -> None:
    """A seller's attack: half the bandwidth, and an 8% memory lock to tell it as a setting."""

    def mem_locked(s: TelemetrySample) -> TelemetrySample:
        return replace(s, memory_clock_mhz=2400.0, clocks_event_reasons=HOLD_SM)

    record = loaded_samples_changed(quick(), SHORT_TESTS | {"soak"}, mem_locked)
    memory_tests = ("bandwidth", "memtest")
    tests = tuple(
        replace(t, metrics=tuple(
            replace(m, values=tuple(v * 0.5 for v in m.values)) if m.name.endswith("_gbs") else m
            for m in t.metrics
        )) if t.name in memory_tests else t
        for t in record.tests
    )  # fmt: skip
    record = replace(record, tests=tests)
    graded = judge(record, match_profile(record.identity, builtin_profiles()), load_policy())
    assert graded.grade is not None and graded.grade.letter == "INCOMPLETE"
    reasons = {r.rule: r for r in graded.grade.reasons}
    assert reasons["clocks-held"].also == ()
    assert reasons["performance-fault"].grade == "D"
    assert reasons["performance-fault"].message.startswith("memory bandwidth 5")


def test_the_clocks_text_reads_back_as_written() -> None:
    from gpuhealth.clocktext import clocks_text, parse_clocks

    assert clocks_text(1980, 2619) == "sm 1980 MHz, memory 2619 MHz"
    assert parse_clocks(clocks_text(1410.5, 1593)) == (1410.5, 1593.0)
    for other in ("the card's default", "sm 1980 MHz", "sm 1980 MHz, memory 2619 MHz (locked)"):
        assert parse_clocks(other) is None
