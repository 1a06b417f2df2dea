"""Fail-open judgement, closed: a check that could not be made never counts as healthy, and the
strongest evidence is never read as none.

- A p-value that underflows to 0.0 (z below about -37.7) once read as "no evidence": a card at 20%
  of its bandwidth graded A. Judged on log p now, at z = -50 and z = -inf for every metric kind.
- A deficit far beyond healthy variation (30% or more) is a hardware fault: D, not C.
- Grade A means every check of the preset was made and passed: a thermal fit that refuses, a model
  with no thermal reference, a metric whose reference was taken under other conditions, no profile,
  a soak without clock-event reasons or memory temperature, one unreadable counter — each a finding
  that names itself, and the policy caps the grade.
- Xid events by the catalogue's classes, never better than C when unknown.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from simkit import H100, card_toml, invoke

from gpuhealth.judge import stats
from gpuhealth.judge.analysis import compare_metrics, composite_settings
from gpuhealth.judge.composite import score_subsystems
from gpuhealth.judge.coverage import JUDGED_METRICS
from gpuhealth.judge.findings import performance_findings
from gpuhealth.judge.grading import grade, load_policy
from gpuhealth.judge.profiles import Profile, builtin_profiles, find_profile
from gpuhealth.judge.xids import APPLICATION, CARD_LOST, CATALOGUE, FATAL, NVLINK, UNKNOWN
from gpuhealth.models import Metric, TestResult

POLICY = load_policy()
SETTINGS = composite_settings(POLICY)


# --- log p: the strongest evidence is never "none" -----------------------------------------------


def test_log_p_does_not_underflow() -> None:
    assert stats.compare(stats.estimate([1.0] * 5), 2.0, 0.02).p_value == 0.0  # the old trap
    assert stats.log_p_lower(-50.0) == pytest.approx(-1254.8, abs=0.1)
    assert stats.log_p_lower(-math.inf) == -math.inf
    assert stats.log_p_lower(math.inf) == 0.0


def test_holm_on_log_p_matches_holm_and_keeps_the_extremes() -> None:
    ps = [0.04, 0.001, 0.3, 0.02]
    assert [math.exp(v) for v in stats.holm_log([math.log(p) for p in ps])] == pytest.approx(
        stats.holm(ps)
    )
    adjusted = stats.holm_log([-math.inf, stats.log_p_lower(-50.0), math.log(0.5)])
    assert adjusted[0] == -math.inf and adjusted[1] < -1000
    assert adjusted[2] == pytest.approx(math.log(0.5))


def one_metric(key: str, values: tuple[float, ...]) -> tuple[TestResult, ...]:
    test, metric = key.split(".")
    params = {"gemm_n": 4096} if key == "fp16_tensor.tensor_gemm_tflops" else {}
    return (TestResult(test, "passed", parameters=params, metrics=(Metric(metric, "u", values),)),)


def with_spreads(profile: Profile, share: float) -> Profile:
    metrics = {
        key: m.model_copy(update={"spread": m.center * share}) for key, m in profile.metrics.items()
    }
    return profile.model_copy(update={"metrics": metrics})


H100_PROFILE = find_profile(H100)


@pytest.mark.parametrize("key", sorted(JUDGED_METRICS))
def test_z_minus_50_is_a_fault_for_every_metric_kind(key: str) -> None:
    """1% spreads, the card at half the centre: z = -50, p = e^-1255 (0.0 as a float)."""
    profile = with_spreads(H100_PROFILE, 0.01)
    reference = profile.metrics[key]
    row = compare_metrics(one_metric(key, (reference.center * 0.5,) * 5), profile, POLICY)[0]
    assert row.z == pytest.approx(-50.0) and row.p_value == 0.0
    assert row.verdict == "very_low"
    graded = grade(tuple(performance_findings(score_subsystems((row,), SETTINGS))), POLICY)
    assert graded.letter == "D" and graded.reasons[0].rule == "performance-fault"


@pytest.mark.parametrize("key", sorted(JUDGED_METRICS))
def test_z_minus_infinity_is_a_fault_for_every_metric_kind(key: str) -> None:
    """No spread at all and no measurement error: z = -inf."""
    tiny = H100_PROFILE.metrics[key]
    profile = H100_PROFILE.model_copy(
        update={"metrics": {key: tiny.model_copy(update={"spread": 1e-300})}}
    )
    row = compare_metrics(one_metric(key, (tiny.center * 0.2,) * 5), profile, POLICY)[0]
    assert row.z == -math.inf and row.verdict == "very_low"
    scores = score_subsystems((row,), SETTINGS)
    assert math.isfinite(scores[0].t) and scores[0].deficit_low > 0.7  # the run-to-run floor
    assert grade(tuple(performance_findings(scores)), POLICY).letter == "D"


def test_every_judged_metric_has_a_reference_in_the_measured_profiles() -> None:
    measured = [p for p in builtin_profiles() if p.cards > 0]
    assert measured and all(set(p.metrics) == JUDGED_METRICS for p in measured)


# --- end to end on the simulated card ------------------------------------------------------------


def graded(tmp_path: Path, faults: str, *extra: str) -> dict[str, object]:
    spec = tmp_path / "card.toml"
    spec.write_text(card_toml(faults), encoding="utf-8")
    out = tmp_path / "run"
    result = invoke("grade", "--quick", "--quiet", "--sim-card", str(spec), "--out", str(out),
                    *extra)  # fmt: skip
    assert (out / "run.json").is_file(), result.output
    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert isinstance(record, dict)
    return record


def rules_of(record: dict[str, object]) -> list[str]:
    grade_ = record["grade"]
    assert isinstance(grade_, dict)
    return [r["rule"] for r in grade_["reasons"]]


def letter(record: dict[str, object]) -> str:
    grade_ = record["grade"]
    assert isinstance(grade_, dict)
    return str(grade_["letter"])


@pytest.mark.parametrize(
    ("faults", "first_rule", "expected"),
    [
        ("bandwidth_scale = 0.2", "performance-fault", "D"),  # graded A before
        ("fp16_scale = 0.2", "performance-fault", "D"),  # graded A before
        ("bandwidth_scale = 0.5", "performance-fault", "D"),  # graded C before
        ("bandwidth_scale = 0.8", "performance-deficit-large", "C"),
    ],
)
def test_a_card_far_below_its_model_is_a_fault_not_a_slow_card(
    tmp_path: Path, faults: str, first_rule: str, expected: str
) -> None:
    record = graded(tmp_path, faults)
    assert letter(record) == expected
    assert rules_of(record)[0] == first_rule


def test_a_model_without_a_thermal_reference_is_not_a(tmp_path: Path) -> None:
    source = H100_PROFILE.text  # the shipped file, less its [thermal] table
    assert source is not None and "[thermal]" in source
    head, _, rest = source.partition("[thermal]")
    no_thermal = head + "[metrics." + rest.partition("[metrics.")[2]
    profile = tmp_path / "h100-no-thermal.toml"
    profile.write_text(no_thermal, encoding="utf-8")
    record = graded(tmp_path, "", "--profile", str(profile))
    assert letter(record) == "B" and rules_of(record) == ["thermal-reference-missing"]


def test_a_reference_taken_under_other_conditions_is_not_a(tmp_path: Path) -> None:
    source = H100_PROFILE.text
    assert source is not None
    other = source.replace("conditions = { gemm_n = 4096 }", "conditions = { gemm_n = 2048 }")
    assert other != source
    profile = tmp_path / "h100-2048.toml"
    profile.write_text(other, encoding="utf-8")
    record = graded(tmp_path, "", "--profile", str(profile))
    assert letter(record) == "B" and rules_of(record) == ["reference-missing"]
    grade_ = record["grade"]
    assert isinstance(grade_, dict)
    assert "measured under other conditions" in grade_["reasons"][0]["message"]


@pytest.mark.parametrize(
    ("unreadable", "rule", "names"),
    [
        ('["clocks_event_reasons"]', "telemetry-incomplete", "no clock-event reasons"),
        ('["memory_temperature_c"]', "telemetry-incomplete", "no memory temperature"),
        ('["memory_temperature_max_c"]', "telemetry-incomplete", "no memory temperature limit"),
        ('["remapped_rows_pending"]', "counters-incomplete", "pending row remap"),
        ('["row_remap_histogram"]', "counters-incomplete", "spare rows per bank"),
        ('["ecc_volatile_uncorrected"]', "counters-incomplete", "uncorrectable ECC errors"),
        ('["pcie_replay_count"]', "counters-incomplete", "PCIe replays"),
    ],
)
def test_a_reading_the_driver_will_not_give_is_a_check_not_made(
    tmp_path: Path, unreadable: str, rule: str, names: str
) -> None:
    record = graded(tmp_path, f"unreadable = {unreadable}")
    assert letter(record) == "B", rules_of(record)
    assert rules_of(record) == [rule]
    grade_ = record["grade"]
    assert isinstance(grade_, dict) and names in grade_["reasons"][0]["message"]


def test_an_unreadable_ecc_history_is_void(tmp_path: Path) -> None:
    record = graded(tmp_path, 'unreadable = ["ecc_aggregate_uncorrected"]')
    assert letter(record) == "C" and rules_of(record) == ["ecc-history-unreadable"]


def test_ecc_off_voids_the_history_and_says_how_to_turn_it_on(tmp_path: Path) -> None:
    record = graded(tmp_path, "ecc_enabled = false")
    assert letter(record) == "C" and rules_of(record) == ["ecc-disabled"]
    grade_ = record["grade"]
    assert (
        isinstance(grade_, dict) and "nvidia-smi -i <gpu> -e 1" in grade_["reasons"][0]["message"]
    )


# --- Xid events -----------------------------------------------------------------------------------


CLASS_GRADES = {FATAL: "F", CARD_LOST: "D", NVLINK: "D", APPLICATION: "B", UNKNOWN: "C"}


def test_each_xid_class_has_its_rule_and_the_rule_its_grade() -> None:
    """The catalogue (xids.py), the policy's rules and the grade they give, held together."""
    by_finding = {r.finding: r for r in POLICY.spec.rules}
    for kind, expected in CLASS_GRADES.items():
        rule = by_finding[kind.finding]
        assert rule.grade == expected, kind
    for code, (kind, _) in CATALOGUE.items():
        assert str(code) in by_finding[kind.finding].rationale, (code, by_finding[kind.finding].id)


@pytest.mark.parametrize(
    ("code", "expected", "rule"),
    [
        (48, "F", "fatal-xid"),
        (79, "D", "xid-card-lost"),  # graded B before (the comment said INCOMPLETE)
        (154, "D", "xid-card-lost"),
        (74, "D", "xid-nvlink"),
        (13, "B", "xid-application"),
        (999, "C", "xid-unknown"),  # graded B before
    ],
)
def test_an_xid_during_the_soak_is_graded_by_its_class(
    tmp_path: Path, code: int, expected: str, rule: str
) -> None:
    record = graded(tmp_path, f'xid = [{{ test = "soak", code = {code} }}]')
    assert letter(record) == expected and rules_of(record)[0] == rule
