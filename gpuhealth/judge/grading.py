"""Grading: a policy file (TOML, data-driven, no eval) turns findings into a grade with reasons.

A rule names a finding code and, optionally, a range for the finding's measure
(min_measure <= measure < max_measure). The card's grade is the worst grade among the rules that
fire; each fired rule becomes a reason carrying the finding's message, value and reference.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from gpuhealth import tomlpos
from gpuhealth.datafiles import (
    MAX_TOML_BYTES,
    StrictModel,
    did_you_mean,
    parse_toml,
    read_text_file,
    validate,
)
from gpuhealth.errors import InputError
from gpuhealth.limits import RelativeSpread, ordered
from gpuhealth.models import Finding, Grade, GradeLetter, Reason
from gpuhealth.resources import DATA_DIR

DEFAULT_POLICY = DATA_DIR / "policies" / "default.toml"
# Worst last. INCOMPLETE ranks above D: a card we could not fully test is never passed as
# "repairable", but definite evidence of failure (F) still wins.
SEVERITY_ORDER: tuple[GradeLetter, ...] = ("A", "B", "C", "D", "INCOMPLETE", "F")
FINDING_CODES = (
    "memory_errors",
    "wrong_results",
    "silent_data_corruption",
    "ecc_uncorrectable_during_run",
    "ecc_correctable_during_run",
    "ecc_uncorrectable_history",
    "ecc_disabled",
    "ecc_mode_pending",
    "ecc_sram_uncorrectable_history",
    "row_remap_failure",
    "row_remap_pending",
    "rows_remapped",
    "row_spares_depleting",
    "retired_pages_pending",
    "retired_pages_limit",
    "pages_retired",
    "pcie_link_degraded",
    "pcie_replays",
    "power_limit_reduced",
    "xid_fatal",
    "xid_card_lost",
    "xid_nvlink",
    "xid_application",
    "xid",
    "thermal_slowdown",
    "thermal_guard",
    "thermal_resistance",
    "thermal_resistance_unmeasured",
    "thermal_resistance_unproven",
    "hardware_slowdown",
    "memory_temperature_high",
    "performance_deficit",
    "test_not_measured",
    "test_not_applicable",
    "counters_unreadable",
    "counters_incomplete",
    "ecc_history_unreadable",
    "reference_missing",
    "thermal_reference_missing",
    "telemetry_incomplete",
    "other_processes",
    "memtest_coverage_low",
    "vbios_unrecognised",
    "identity_mismatch",
    "identity_unrecognised",
    "identity_unverified",
    "card_identity_changed",
    "card_counters_decreased",
    # issue 14: readiness, the memory clear, a shortened soak
    "settings_not_default",
    "memory_not_cleared",
    "soak_shortened",
    # issue 14: PCIe copies and NVLink (gpuhealth/judge/findings_links.py)
    "pcie_copy_slow",
    "pcie_copy_unjudged",
    "pcie_copy_corrupt",
    "nvlink_inactive",
    "nvlink_errors",
    # issue 14: PCIe error counters (gpuhealth/pcieerrors.py)
    "pcie_errors_uncorrectable",
    "pcie_errors_correctable",
    # issue 14: a clock setting that held the clocks down (gpuhealth/judge/clockhold.py)
    "clocks_held",
)


class Statistics(StrictModel):
    alpha: float = Field(gt=0, lt=0.5)
    min_relative_deficit: float = Field(ge=0, lt=1)
    very_low_deficit: float = Field(gt=0, lt=1)
    # gpuhealth/judge/composite.py: one card graded twice differs by about this much (relative SD);
    # the healthy comparison's Student-t degrees of freedom; the deficit bound's confidence.
    run_to_run: RelativeSpread = 0.008
    tail_dof: float = Field(default=10.0, gt=2, le=1000)
    bound_confidence: float = Field(default=0.95, ge=0.5, lt=1)
    # gpuhealth/judge/thermal_reference.py: relative SDs of a healthy run's thermal resistance
    # around its reference: run to run on one card in one rig, rig to rig (a model-wide reference
    # from another rig), and card to card (the reference centre's own error: this over its cards).
    thermal_run_to_run: float = Field(default=0.05, ge=0, le=0.5)
    thermal_rig_to_rig: float = Field(default=0.10, ge=0, le=0.5)
    thermal_card_spread: float = Field(default=0.05, ge=0, le=0.5)

    _very_low_at_least_reported = ordered("min_relative_deficit", "very_low_deficit")


class Rule(StrictModel):
    id: str
    finding: str
    grade: Literal["A", "B", "C", "D", "F", "INCOMPLETE"]
    rationale: str
    min_measure: float | None = None
    max_measure: float | None = None

    # min_measure <= measure < max_measure: with min >= max the rule could never fire
    _measure_range = ordered("min_measure", "max_measure", strict=True)

    @field_validator("finding")
    @classmethod
    def _known_finding(cls, finding: str) -> str:
        # a field validator, so that the error names rules.N.finding, not just the rule
        if finding not in FINDING_CODES:
            hint = did_you_mean(finding, list(FINDING_CODES))
            raise ValueError(
                f"unknown finding {finding!r}"
                + (hint or f" (expected one of: {', '.join(FINDING_CODES)})")
            )
        return finding

    def matches(self, finding: Finding) -> bool:
        if finding.code != self.finding:
            return False
        if self.min_measure is None and self.max_measure is None:
            return True
        if finding.measure is None:
            return False
        above = self.min_measure is None or finding.measure >= self.min_measure
        below = self.max_measure is None or finding.measure < self.max_measure
        return above and below


class Dispositions(StrictModel):
    A: str
    B: str
    C: str
    D: str
    F: str
    INCOMPLETE: str


class PolicyFile(StrictModel):
    name: str
    version: str
    statistics: Statistics
    dispositions: Dispositions
    rules: tuple[Rule, ...] = Field(min_length=1)


@dataclass(frozen=True)
class Policy:
    spec: PolicyFile
    sha256: str  # of text's UTF-8 bytes (the file's bytes)
    source: str
    text: str  # the whole file: embedded in every record judged under it

    @property
    def label(self) -> str:
        return f"{self.spec.name} v{self.spec.version}"


def load_policy(path: Path | None = None) -> Policy:
    path = path or DEFAULT_POLICY
    return policy_from_text(read_text_file(path, MAX_TOML_BYTES), str(path))


def policy_from_text(text: str, source: str) -> Policy:
    """A policy from a file's text (a file, or the copy a record embeds); InputError if bad."""
    spec = validate(PolicyFile, parse_toml(text, source), source, text)
    ids = [r.id for r in spec.rules]
    again = next((i for i, rule_id in enumerate(ids) if rule_id in ids[:i]), None)
    if again is not None:
        raise InputError(
            source,
            f"rules.{again}.id",
            f"rule id {ids[again]!r} is used twice",
            line=tomlpos.line_of(text, ("rules", again, "id")),
        )
    return Policy(spec, text_sha256(text), source, text)


def _one_per_cause(matched: list[tuple[Finding, Reason]]) -> list[Reason]:
    """A reason whose finding has a cause that is a reason too is told as part of the cause's
    (its `also`), which takes the worse of their grades: one reason per cause."""
    explained = {finding.key for finding, _ in matched}
    folded: dict[str, list[Reason]] = {}
    for finding, reason in matched:
        if finding.cause is not None and finding.cause in explained:
            folded.setdefault(finding.cause, []).append(reason)
    reasons = []
    for finding, reason in matched:
        if finding.cause is not None and finding.cause in explained:
            continue
        parts = folded.get(finding.key, [])
        if not parts:
            reasons.append(reason)
            continue
        worst = max((reason, *parts), key=lambda r: SEVERITY_ORDER.index(r.grade)).grade
        also = tuple(f"{part.rule}: {part.message}" for part in parts)
        reasons.append(replace(reason, grade=worst, also=also))
    return reasons


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def grade(findings: tuple[Finding, ...], policy: Policy, note: str | None = None) -> Grade:
    matched: list[tuple[Finding, Reason]] = []
    for finding in findings:
        for rule in policy.spec.rules:
            if rule.matches(finding):
                reason = Reason(
                    rule.id,
                    rule.grade,
                    finding.message,
                    finding.value,
                    finding.reference,
                    finding.detail,
                )
                matched.append((finding, reason))
                break  # first matching rule decides a finding (rules are ordered worst first)
    reasons = _one_per_cause(matched)
    letter: GradeLetter = "A"
    for reason in reasons:
        if SEVERITY_ORDER.index(reason.grade) > SEVERITY_ORDER.index(letter):
            letter = reason.grade
    reasons.sort(key=lambda r: -SEVERITY_ORDER.index(r.grade))
    if not reasons:
        reasons.append(
            Reason(
                "all-clear",
                "A",
                note or "every measured metric in the healthy range, no errors found",
            )
        )
    elif note:
        reasons.append(Reason("note", letter, note))
    disposition = getattr(policy.spec.dispositions, letter)
    return Grade(letter, disposition, tuple(reasons), policy.label, policy.sha256)
