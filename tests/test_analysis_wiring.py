"""analysis.analyse hands each finding function what it judges: a stored record of this version
(tests/data/current/sim-h100-quick.json, grade A) with one fact planted at a time, judged in
process, and the finding that fact must raise asserted (fast: the mutation benchmark's selection
for analysis runs this file per mutant).

Each test guards one argument of the list in `analyse`: the counters after the run, the readings
before and after for NVLink and the PCIe error counters, the stored card history, the soak's
preset length, the --tests selection, the profile's VBIOS versions, a zero wall time.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gpuhealth.judge.analysis import judge
from gpuhealth.judge.grading import load_policy
from gpuhealth.judge.profiles import builtin_profiles, match_profile
from gpuhealth.models import (
    Finding,
    HistoryFact,
    NvLinkReading,
    RunRecord,
    StoredHistory,
    record_from_json,
)
from gpuhealth.presets import PRESETS

CURRENT = Path(__file__).parent / "data" / "current" / "sim-h100-quick.json"


@pytest.fixture(scope="module")
def record() -> RunRecord:
    found = record_from_json(CURRENT.read_text(encoding="utf-8"), str(CURRENT))
    assert found.grade is not None and found.grade.letter == "A", "regenerate tests/data/current"
    return replace(found, analysis=None, grade=None, signature=None)


def findings_of(record: RunRecord, with_profile: bool = True) -> list[Finding]:
    profile = match_profile(record.identity, builtin_profiles()) if with_profile else None
    judged = judge(record, profile, load_policy())
    assert judged.analysis is not None
    return list(judged.analysis.findings)


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


def counters(record: RunRecord, **after: object) -> RunRecord:
    assert record.counters_before is not None and record.counters_after is not None
    return replace(record, counters_after=replace(record.counters_after, **after))


def test_the_stored_record_has_no_finding(record: RunRecord) -> None:
    assert findings_of(record) == []


def test_an_uncorrectable_ecc_error_during_the_run_reaches_the_counter_findings(
    record: RunRecord,
) -> None:
    assert record.counters_before is not None
    planted = counters(record, ecc_volatile_uncorrected=2)
    assert record.counters_before.ecc_volatile_uncorrected == 0
    assert "ecc_uncorrectable_during_run" in codes(findings_of(planted))


def test_nvlink_errors_are_the_rise_between_the_two_readings(record: RunRecord) -> None:
    links_before = tuple(NvLinkReading(i, True, 4, 0, 0, 0, 0) for i in range(2))
    links_after = (NvLinkReading(0, True, 4, 3, 0, 0, 0), links_before[1])
    assert record.counters_before is not None and record.counters_after is not None
    planted = replace(
        record,
        counters_before=replace(record.counters_before, nvlink_status="read", nvlink=links_before),
        counters_after=replace(record.counters_after, nvlink_status="read", nvlink=links_after),
    )
    errors = [f for f in findings_of(planted) if f.code == "nvlink_errors"]
    assert len(errors) == 1 and "link 0 replay 3" in errors[0].message, errors


def test_pcie_errors_are_the_rise_between_the_two_readings(record: RunRecord) -> None:
    assert record.counters_after is not None and record.counters_after.pcie_errors is not None
    rose = {**record.counters_after.pcie_errors, "fatal": 1}
    found = [
        f for f in findings_of(counters(record, pcie_errors=rose)) if f.code.startswith("pcie")
    ]
    assert codes(found) == ["pcie_errors_uncorrectable"]
    assert found[0].message == "1 uncorrectable PCIe error(s) during the run (fatal +1)"


def test_the_soak_is_judged_against_the_card_s_memory_temperature_limit(
    record: RunRecord,
) -> None:
    found = findings_of(counters(record, memory_temperature_max_c=1.0))
    assert "memory_temperature_high" in codes(found), codes(found)


def test_the_stored_card_history_reaches_the_findings(record: RunRecord) -> None:
    fact = HistoryFact("identity", "identity.uuid", "GPU-old", "GPU-new", "earlier-run")
    planted = replace(record, stored_history=StoredHistory(True, "db", 1, (fact,)))
    assert "card_identity_changed" in codes(findings_of(planted))


def test_a_soak_shorter_than_the_preset_s_is_told(record: RunRecord) -> None:
    preset_s = PRESETS["quick"].soak.duration_s
    found = findings_of(replace(record, soak_duration_s=preset_s / 2))
    shortened = [f for f in found if f.code == "soak_shortened"]
    assert len(shortened) == 1 and f"{preset_s:g} s" in shortened[0].message


def test_a_record_of_an_unknown_preset_is_judged_without_a_soak_length(record: RunRecord) -> None:
    found = findings_of(replace(record, preset="custom", soak_duration_s=1.0))
    assert "soak_shortened" not in codes(found)


def test_a_test_left_out_with_tests_is_not_measured_not_not_run(record: RunRecord) -> None:
    left_out = replace(record.tests[-1], status="not_run", message="not selected")
    chosen = tuple(t.name for t in record.tests[:-1])
    planted = replace(record, tests=(*record.tests[:-1], left_out), tests_selected=chosen)
    not_measured = [f for f in findings_of(planted) if f.code == "test_not_measured"]
    assert [f.source for f in not_measured] == ["selection"], not_measured


def test_a_vbios_healthy_cards_were_not_seen_with_is_listed(record: RunRecord) -> None:
    planted = replace(record, identity=replace(record.identity, vbios="00.00.00.00.00"))
    assert "vbios_unrecognised" in codes(findings_of(planted))
    assert "vbios_unrecognised" not in codes(findings_of(planted, with_profile=False))


def test_a_zero_wall_time_has_no_busy_share(record: RunRecord) -> None:
    judged = judge(replace(record, wall_time_s=0.0), None, load_policy())
    assert judged.analysis is not None and judged.analysis.gpu_busy_share is None
    healthy = judge(record, None, load_policy()).analysis
    assert healthy is not None and healthy.gpu_busy_share is not None
    assert 0 < healthy.gpu_busy_share <= 1


def test_the_energy_used_is_the_counter_s_rise_to_the_millijoule(record: RunRecord) -> None:
    assert record.counters_before is not None and record.counters_after is not None
    planted = replace(
        record,
        counters_before=replace(record.counters_before, energy_j=1000.12345),
        counters_after=replace(record.counters_after, energy_j=2000.0),
    )
    judged = judge(planted, None, load_policy())
    assert judged.analysis is not None and judged.analysis.energy_used_j == 999.877


def test_a_grade_without_a_profile_says_performance_was_not_judged(record: RunRecord) -> None:
    judged = judge(record, None, load_policy())
    assert judged.grade is not None
    said = [r.message for r in judged.grade.reasons]
    assert (
        f"performance not judged: no reference profile for {record.identity.name!r}; "
        "grade from health findings only"
    ) in said, said


def test_a_metric_with_no_values_is_left_out_and_the_rest_still_judged(record: RunRecord) -> None:
    first = record.tests[0]
    assert len(first.metrics) > 1
    emptied = replace(first, metrics=(replace(first.metrics[0], values=()), *first.metrics[1:]))
    planted = replace(record, tests=(emptied, *record.tests[1:]))
    profile = match_profile(record.identity, builtin_profiles())
    judged = judge(planted, profile, load_policy())
    assert judged.analysis is not None
    metrics = {(c.test, c.metric) for c in judged.analysis.comparisons}
    assert (first.name, first.metrics[0].name) not in metrics
    assert (first.name, first.metrics[1].name) in metrics


def test_judged_under_another_shipped_profile_the_shipped_grade_is_given_too(
    record: RunRecord,
) -> None:
    """A grade under a profile other than the one gpuhealth ships for the model carries the
    grade the shipped rules give (the certificate shows both)."""
    other = next(p for p in builtin_profiles() if p.key.startswith("h200"))
    judged = judge(record, other, load_policy())
    assert judged.rules is not None and judged.rules.shipped_grade is not None
    same = judge(record, match_profile(record.identity, builtin_profiles()), load_policy())
    assert same.rules is not None and same.rules.shipped_grade is None


def test_a_model_gpuhealth_ships_no_profile_for_judged_under_one(record: RunRecord) -> None:
    unknown = replace(record, identity=replace(record.identity, name="NVIDIA Imaginary GPU"))
    h100 = match_profile(record.identity, builtin_profiles())
    judged = judge(unknown, h100, load_policy())
    assert judged.rules is not None and judged.rules.shipped_grade is not None


def test_the_thermal_reference_is_chosen_for_the_run_s_preset_and_rig(record: RunRecord) -> None:
    h100 = match_profile(record.identity, builtin_profiles())
    assert h100 is not None and h100.thermal is not None and record.host
    thermal = h100.thermal.model_copy(update={"rig": record.host, "presets": {"quick": 0.05}})
    judged = judge(record, h100.model_copy(update={"thermal": thermal}), load_policy())
    assert judged.analysis is not None and judged.analysis.soak is not None
    said = judged.analysis.soak.thermal_reference or ""
    assert "0.0500 °C/W for the quick preset" in said, said
    assert f"measured in this rig ({record.host})" in said, said
