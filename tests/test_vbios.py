"""The VBIOS check: a version no healthy card of the model was seen with is listed, graded A."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gpuhealth.judge.analysis import judge
from gpuhealth.judge.grading import load_policy
from gpuhealth.judge.profiles import builtin_profiles, match_profile
from gpuhealth.judge.profiles.build import SourceRun, build_profile
from gpuhealth.models import RunRecord, record_from_json

RUN = Path(__file__).resolve().parent / "data" / "runs" / "h200-standard-2026-11-26.json"


def _judged(vbios: str | None, versions: tuple[str, ...] | None = None) -> RunRecord:
    record = record_from_json(RUN.read_text(encoding="utf-8"), str(RUN))
    record = replace(
        record, identity=replace(record.identity, vbios=vbios), analysis=None, grade=None
    )
    profile = match_profile(record.identity, builtin_profiles())
    assert profile is not None
    if versions is not None:
        profile = profile.model_copy(update={"vbios_versions": versions})
    return judge(record, profile, load_policy())


def codes(record: RunRecord) -> list[str]:
    assert record.analysis is not None
    return [f.code for f in record.analysis.findings]


def test_a_known_vbios_gives_no_finding() -> None:
    assert "vbios_unrecognised" not in codes(_judged("96.00.A5.00.1A"))


def test_an_unknown_vbios_is_listed_with_the_known_ones_and_not_held_against_the_card() -> None:
    record = _judged("96.00.FF.00.99")
    known = _judged("96.00.A5.00.1A")
    assert record.analysis is not None and record.grade is not None and known.grade is not None
    finding = next(f for f in record.analysis.findings if f.code == "vbios_unrecognised")
    assert finding.value == "96.00.FF.00.99" and finding.reference == "96.00.A5.00.1A"
    reason = next(r for r in record.grade.reasons if r.rule == "vbios-unrecognised")
    assert reason.grade == "A" and record.grade.letter == known.grade.letter


def test_no_known_versions_or_no_vbios_reading_checks_nothing() -> None:
    assert "vbios_unrecognised" not in codes(_judged("96.00.FF.00.99", versions=()))
    assert "vbios_unrecognised" not in codes(_judged(None))


def test_profile_build_records_the_versions_it_saw() -> None:
    record = record_from_json(RUN.read_text(encoding="utf-8"), str(RUN))
    other = replace(record, identity=replace(record.identity, vbios="96.00.B0.00.01", uuid="GPU-x"))
    built = build_profile([SourceRun("a", record), SourceRun("b", other)]).profile
    assert built.vbios_versions == ("96.00.A5.00.1A", "96.00.B0.00.01")
