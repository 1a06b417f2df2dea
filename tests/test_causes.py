"""One reason per cause, in the buyer's words (gpuhealth/judge/causes.py, grading._one_per_cause):
a cut-down card, a lost card and a refused run each get one reason; the statistics are in the
detail; every finding is still in the record."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from simkit import invoke

from gpuhealth.judge.causes import attribute
from gpuhealth.judge.grading import grade, load_policy
from gpuhealth.models import Finding, RunRecord, record_from_json

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "simcards"
STATISTICS = re.compile(r"\bt = |\bp = |one-sided|Holm|°C/W")


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunRecord]:
    out = tmp_path_factory.mktemp("causes")
    records = {}
    for name in ("cut-down", "lost-in-soak", "busy", "slow-memory", "worn"):
        folder = out / name
        result = invoke(
            "grade", "--quick", "--no-db", "--quiet", "--sim-card", str(EXAMPLES / f"{name}.toml"),
            "--out", str(folder),
        )  # fmt: skip
        assert result.exit_code in (0, 1, 3), result.output
        run = next(folder.rglob("run.json"))
        records[name] = record_from_json(run.read_text(encoding="utf-8"), str(run))
    return records


def rules(record: RunRecord) -> list[str]:
    assert record.grade is not None
    return [r.rule for r in record.grade.reasons]


def test_a_cut_down_card_is_one_reason_not_four(graded: dict[str, RunRecord]) -> None:
    record = graded["cut-down"]
    assert record.grade is not None and record.grade.letter == "D"
    assert rules(record) == ["identity-mismatch"]
    reason = record.grade.reasons[0]
    assert reason.message.startswith("not what it claims to be: it measures like a card with 114")
    assert len(reason.also) == 3 and all("performance-deficit" in a for a in reason.also)
    assert reason.detail is not None and "per SM per GHz" in reason.detail
    # the deficits are still findings, each naming its cause
    assert record.analysis is not None
    deficits = [f for f in record.analysis.findings if f.code == "performance_deficit"]
    assert {f.source for f in deficits} == {"fp32", "tensor", "sustained"}
    assert all(f.cause == "identity_mismatch/fp32" for f in deficits)


def test_a_lost_card_is_told_once(graded: dict[str, RunRecord]) -> None:
    record = graded["lost-in-soak"]
    assert record.grade is not None and record.grade.letter == "INCOMPLETE"
    assert rules(record) == ["xid-card-lost"]
    reason = record.grade.reasons[0]
    assert reason.grade == "INCOMPLETE"  # the worst of the cause and its consequences
    assert any(a.startswith("incomplete: soak: error") for a in reason.also)
    assert any(a.startswith("counters-incomplete") for a in reason.also)


def test_a_refused_run_does_not_also_blame_the_identity(graded: dict[str, RunRecord]) -> None:
    record = graded["busy"]
    assert rules(record) == ["incomplete"]
    assert record.grade is not None
    assert any("identity-unverified" in a for a in record.grade.reasons[0].also)


def test_reasons_are_plain_words_with_the_statistics_in_the_detail(
    graded: dict[str, RunRecord],
) -> None:
    slow = graded["slow-memory"].grade
    assert slow is not None and [r.rule for r in slow.reasons] == ["performance-deficit-large"]
    reason = slow.reasons[0]
    assert re.fullmatch(
        r"memory bandwidth \d+% below healthy NVIDIA H100 SXM5 80GB cards", reason.message
    )
    assert reason.detail is not None and "Holm-adjusted p" in reason.detail
    for record in graded.values():
        assert record.grade is not None
        for r in record.grade.reasons:
            if r.rule.startswith(("performance", "thermal", "identity-mismatch")):
                assert not STATISTICS.search(r.message), r.message
    worn = graded["worn"].grade
    assert worn is not None
    thermal = next(r for r in worn.reasons if r.rule.startswith("thermal"))
    assert thermal.message.startswith("the card runs at least ")
    assert thermal.detail is not None and "reference: NVIDIA H200" in thermal.detail


def test_the_certificate_shows_the_detail_and_the_consequences(
    graded: dict[str, RunRecord], tmp_path: Path
) -> None:
    from gpuhealth.certificate.report import render

    page = render(graded["cut-down"], "html")
    assert '<div class="detail">FP32 ' in page
    assert page.count('<div class="also">also: performance-deficit') == 3


def finding(code: str, source: str, measure: float | None = None) -> Finding:
    return Finding(code, "major", source, f"{code} on {source}", measure=measure)


def test_only_compute_deficits_are_tied_to_a_short_count_of_sms() -> None:
    """FP32, tensor and sustained deficits follow from fewer working SMs (the FP32 per-SM check);
    a memory deficit is not tied to the bus-width check, which cannot tell a narrower bus from
    slow memory: it keeps its own reason."""
    found = attribute(
        [
            finding("identity_mismatch", "fp32", 1.0),
            finding("identity_mismatch", "bandwidth", 1.0),
            finding("performance_deficit", "memory", -0.2),
            finding("performance_deficit", "tensor", -0.2),
        ]
    )
    assert [f.cause for f in found] == [None, None, None, "identity_mismatch/fp32"]
    reasons = grade(found, load_policy()).reasons
    assert [r.rule for r in reasons] == [
        "identity-mismatch",
        "identity-mismatch",
        "performance-deficit-large",
    ]
    assert reasons[0].also and "tensor" in reasons[0].also[0]
    assert not reasons[1].also


def test_only_the_measurements_of_a_lost_card_are_its_losses() -> None:
    found = attribute(
        [
            finding("xid_card_lost", "run"),
            finding("identity_unverified", "identity", 1.0),
            finding("identity_unverified", "measurements", 1.0),
            finding("counters_incomplete", "counters", 1.0),
        ]
    )
    assert [f.cause for f in found] == [None, None, "xid_card_lost/run", "xid_card_lost/run"]
