"""A test a card cannot run by design is skipped, said in the report, and not held against it."""

from __future__ import annotations

from pathlib import Path

from gpuhealth.judge.grading import load_policy
from gpuhealth.measure.backends.sim import SimBackend
from gpuhealth.measure.backends.simcards import load_card
from gpuhealth.measure.runner import GradeOptions, grade_card
from gpuhealth.presets import preset


def volta_card() -> SimBackend:
    card = load_card("h100-sxm5-80gb")
    device = card.model.device.model_copy(update={"compute_capability": (7, 0)})
    model = card.model.model_copy(update={"device": device})
    return SimBackend(card.model_copy(update={"model": model}))


def test_tensor_test_is_skipped_on_compute_7_0(tmp_path: Path) -> None:
    graded = grade_card(volta_card(), GradeOptions(preset("quick"), load_policy(), None, tmp_path))
    record = graded.record
    tensor = record.test("fp16_tensor")
    assert tensor is not None and tensor.status == "skipped"
    assert tensor.message is not None and "7.5" in tensor.message and "7.0" in tensor.message
    assert record.grade is not None and record.grade.letter == "A"
    assert [r.rule for r in record.grade.reasons] == ["test-not-applicable"]
    assert "skipped" in (tmp_path / "report.md").read_text(encoding="utf-8")
