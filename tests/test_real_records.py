"""Records measured on real H200 cards (bench/RESULTS.md) as golden inputs for the analysis."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from gpuhealth.certificate.report import render
from gpuhealth.judge.analysis import judge
from gpuhealth.judge.grading import load_policy
from gpuhealth.judge.profiles import builtin_profiles, match_profile
from gpuhealth.models import RunRecord, record_from_json, record_to_json, run_record_json_schema

RUNS = Path(__file__).resolve().parent / "data" / "runs"
FIRST = RUNS / "h200-standard-2026-11-26.json"  # the card the H200 profile was measured on
SECOND = RUNS / "h200-quick-second-card-2026-11-26.json"  # another H200, --quick


def load(path: Path) -> RunRecord:
    return record_from_json(path.read_text(encoding="utf-8"), str(path))


def regrade(record: RunRecord) -> RunRecord:
    profile = match_profile(record.identity, builtin_profiles())
    assert profile is not None and profile.key == "h200-sxm-141gb"
    return judge(replace(record, analysis=None, grade=None), profile, load_policy())


@pytest.mark.parametrize("path", [FIRST, SECOND], ids=["first", "second"])
def test_real_record_is_valid_and_round_trips(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    jsonschema.validate(json.loads(text), run_record_json_schema())
    record = load(path)
    assert record.backend == "cuda" and record.complete
    # a version-1 record is migrated when read: version 2, no embedded rules, nothing else changed
    stored = json.loads(text)
    migrated = json.loads(record_to_json(record))
    added = {  # counters that version 1 did not read: unknown (None), never made up
        name: None for name in migrated["counters_after"] if name not in stored["counters_after"]
    }
    unread = {  # identity fields read since 0.2.0 (PCI ids, power-limit range): unknown too
        name: None for name in migrated["identity"] if name not in stored["identity"]
    }
    # ... and the GPU's own PCIe generation (issue 14)
    assert set(unread) == {
        "pci_device_id",
        "pci_subsystem_id",
        "power_limit_max_w",
        "pcie_gen_gpu_max",
    }
    assert migrated == {
        **stored,
        "schema_version": 2,
        "rules": None,
        "stored_history": None,  # the results database was not asked (added in 0.2.0)
        # resale readiness, the memory clear, --tests and --soak (issue 14): not in 0.1.0
        "readiness": None,
        "memory_clear": None,
        "tests_selected": None,
        "soak_duration_s": None,
        "analysis": {
            **stored["analysis"],
            "subsystems": [],
            # the thermal reference named since 0.2.0: not stored by 0.1.0, unknown
            "soak": {
                **stored["analysis"]["soak"],
                "thermal_reference": None,
                "thermal_ratio_low": None,
            },
            # findings carry their statistics and cause apart since 0.2.0: none in 0.1.0's
            "findings": [
                {**f, "detail": None, "cause": None} for f in stored["analysis"]["findings"]
            ],
        },
        "grade": {
            **stored["grade"],
            "reasons": [{**r, "detail": None, "also": []} for r in stored["grade"]["reasons"]],
        },
        "identity": {**stored["identity"], **unread},
        "counters_before": {**stored["counters_before"], **added},
        "counters_after": {**stored["counters_after"], **added},
    }
    for fmt in ("html", "md"):
        assert render(load(path), fmt) == render(record, fmt)


@pytest.mark.parametrize("path", [FIRST, SECOND], ids=["first", "second"])
def test_every_check_on_the_real_cards_passed(path: Path) -> None:
    record = load(path)
    assert [t.status for t in record.tests] == ["passed"] * 6
    for test in record.tests:
        assert test.verifications and all(
            v.passed and v.mismatches == 0 for v in test.verifications
        )
    memtest = record.test("memtest")
    assert memtest is not None and float(memtest.parameters["coverage"]) >= 0.95


def test_first_card_was_c_under_the_burst_soak_reference_and_is_b_now() -> None:
    """Today its soak throughput is judged against the sustained rate (no deficit); its thermal
    resistance, recorded before the soak had its memory phase, cannot be measured: a check not
    made, so B (thermal-resistance-unmeasured), not A."""
    record = load(FIRST)
    assert record.grade is not None and record.grade.letter == "C"  # as graded on the day
    assert [r.rule for r in record.grade.reasons] == ["performance-deficit-large"]
    assert "soak.iteration_tflops" in record.grade.reasons[0].message
    again = regrade(record)
    assert again.grade is not None and again.grade.letter == "B"
    assert [r.rule for r in again.grade.reasons] == ["thermal-resistance-unmeasured"]


def test_second_healthy_card_matches_the_first_cards_profile() -> None:
    """Every comparable metric ok; B only for the checks its record could not support (no
    memory phase for the thermal fit; the tensor GEMM at another size than the reference)."""
    again = regrade(load(SECOND))
    assert again.grade is not None and again.grade.letter == "B"
    assert [r.rule for r in again.grade.reasons] == [
        "thermal-resistance-unmeasured",
        "reference-missing",
    ]
    assert "fp16_tensor.tensor_gemm_tflops" in again.grade.reasons[1].message
    assert again.analysis is not None
    by_metric = {(c.test, c.metric): c for c in again.analysis.comparisons}
    # Measured at n = 2048 (the quick preset of the day), not the profile's 4096: not compared.
    tensor = by_metric[("fp16_tensor", "tensor_gemm_tflops")]
    assert tensor.reference is None and tensor.verdict == "no_reference"
    judged = [c for c in again.analysis.comparisons if c.reference is not None]
    assert len(judged) == 12 and all(c.verdict == "ok" for c in judged)  # 11 + soak per watt
    assert all(abs(c.relative_deviation or 0.0) < 0.05 for c in judged)


@pytest.mark.parametrize("path", [FIRST, SECOND], ids=["first", "second"])
def test_soak_analysis_of_the_real_cards(path: Path) -> None:
    soak = regrade(load(path)).analysis
    assert soak is not None and soak.soak is not None
    summary = soak.soak
    # Recorded before the soak had its memory phase: one load level from the soak's start on, so
    # R cannot be told apart from the heat the card held (the rise over idle read 0.039 and
    # 0.041 °C/W). Not measured, with the reason: a check not made (B).
    assert summary.thermal_resistance_c_per_w is None
    assert summary.thermal_resistance_refusal is not None
    assert "not identified" in summary.thermal_resistance_refusal
    unmeasured = [f for f in soak.findings if f.code == "thermal_resistance_unmeasured"]
    assert len(unmeasured) == 1 and unmeasured[0].severity == "info"
    assert summary.memory_temperature_headroom_c is not None
    assert summary.memory_temperature_headroom_c > 30
    assert summary.throttle_share["power cap"] > 0.95 and summary.throttle_share["thermal"] == 0
    assert summary.mismatched_iterations == 0
