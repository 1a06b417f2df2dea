"""A card of a model with no reference profile: measured and reported, performance not judged."""

from __future__ import annotations

import json
from pathlib import Path

from tests.simkit import card_toml, invoke


def test_an_unknown_model_is_measured_reported_and_graded_on_health_only(tmp_path: Path) -> None:
    spec = tmp_path / "mystery.toml"
    spec.write_text(card_toml(header='name = "NVIDIA Mystery GPU"'), encoding="utf-8")
    out = tmp_path / "run"
    result = invoke("grade", "--quiet", "--quick", "--sim-card", str(spec), "--out", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    analysis, grade = record["analysis"], record["grade"]
    assert analysis["profile"] is None
    assert analysis["comparisons"], "the card was still measured"
    assert all(c["verdict"] == "no_reference" for c in analysis["comparisons"])
    assert all(c["reference"] is None and c["z"] is None for c in analysis["comparisons"])
    # a healthy card, but its performance and cooling could not be judged: checks not made, so
    # never A ("resale as new" needs every check made and passed)
    assert grade["letter"] == "B"
    rules = {r["rule"]: r["message"] for r in grade["reasons"]}
    assert set(rules) == {"reference-missing", "thermal-reference-missing", "note"}
    assert "no reference profile for 'NVIDIA Mystery GPU'" in rules["reference-missing"]
    for report in ("report.html", "report.md"):
        text = (out / report).read_text(encoding="utf-8")
        assert "no reference profile" in text, report


def test_an_unknown_faulty_card_still_gets_its_health_grade(tmp_path: Path) -> None:
    spec = tmp_path / "mystery-bad.toml"
    spec.write_text(
        card_toml(
            "stuck_bits = [{ address = 0x1F000, bit = 3, value = 0 }]",
            header='name = "NVIDIA Mystery GPU"',
        ),
        encoding="utf-8",
    )
    out = tmp_path / "run"
    result = invoke("grade", "--quiet", "--quick", "--sim-card", str(spec), "--out", str(out))
    assert result.exit_code == 1
    grade = json.loads((out / "run.json").read_text(encoding="utf-8"))["grade"]
    assert grade["letter"] == "F"
    assert [r["rule"] for r in grade["reasons"]][:1] == ["memory-errors"]
    assert grade["reasons"][-1]["rule"] == "note"
