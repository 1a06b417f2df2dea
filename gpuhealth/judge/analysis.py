"""Judging a run record: metrics against the reference profile, soak analysis, findings, grade.

Measuring and judging are separate: this works on a stored record with no GPU, so a record can be
re-analysed and re-graded later (`gpuhealth report --regrade`).
"""

from __future__ import annotations

import math
from dataclasses import replace

from gpuhealth import __version__
from gpuhealth.judge import causes, composite, shipped, soak, stats, thermal_reference
from gpuhealth.judge import findings as health
from gpuhealth.judge.clockhold import clock_hold_findings
from gpuhealth.judge.coverage import unmade_check_findings
from gpuhealth.judge.efficiency import efficiency_test
from gpuhealth.judge.evidence import evidence_findings
from gpuhealth.judge.findings_links import (
    nvlink_findings,
    pcie_error_findings,
    pcie_findings,
)
from gpuhealth.judge.grading import Policy, grade
from gpuhealth.judge.profiles import NOT_JUDGED, Profile
from gpuhealth.judge.registry import registry_findings
from gpuhealth.judge.unfinished import unfinished_findings
from gpuhealth.models import (
    Analysis,
    Grade,
    JudgedUnder,
    MetricComparison,
    ProfileRef,
    RunRecord,
    SoakSummary,
    TelemetrySample,
    TestResult,
    Verdict,
)
from gpuhealth.presets import PRESETS

HIGH_Z = 4.0  # far above the healthy centre: worth showing (a wrong profile?), not a defect


def compare_metrics(
    tests: tuple[TestResult, ...], profile: Profile | None, policy: Policy
) -> tuple[MetricComparison, ...]:
    """Every metric of every test; those with a reference get z, percentile, p and Holm's p."""
    rows: list[MetricComparison] = []
    for test in tests:
        for metric in test.metrics:
            if not metric.values:
                continue
            if (test.name, metric.name) in NOT_JUDGED:
                continue
            reference = profile.metric(test.name, metric.name) if profile else None
            if reference is not None and not reference.applies_to(test.parameters):
                reference = None  # measured under other conditions than the reference
            est = stats.estimate(metric.values)
            row = MetricComparison(
                test=test.name,
                metric=metric.name,
                unit=metric.unit,
                higher_is_better=metric.higher_is_better,
                n=est.n,
                estimate=est.value,
                ci_low=est.ci_low,
                ci_high=est.ci_high,
            )
            if reference is not None:
                cmp = stats.compare(
                    est, reference.center, reference.spread, reference.higher_is_better
                )
                row = replace(
                    row,
                    reference=reference.reference(),
                    z=cmp.z,
                    percentile=cmp.percentile,
                    p_value=cmp.p_value,
                    relative_deviation=cmp.relative_deviation,
                )
            rows.append(row)
    # Judged on log p: a p-value that underflows to 0.0 far below the centre is the strongest
    # evidence there is, never "no evidence" (a card at 20% of its bandwidth once graded A).
    judged = [(i, r.z) for i, r in enumerate(rows) if r.z is not None]
    adjusted = stats.holm_log([stats.log_p_lower(z) for _, z in judged])
    for (i, _), log_p_adj in zip(judged, adjusted, strict=True):
        rows[i] = replace(
            rows[i],
            p_adjusted=math.exp(log_p_adj),
            verdict=_verdict(rows[i], log_p_adj, policy),
        )
    return tuple(rows)


def _verdict(row: MetricComparison, log_p_adjusted: float, policy: Policy) -> Verdict:
    s = policy.spec.statistics
    assert row.relative_deviation is not None and row.z is not None  # a judged row has both
    rel = row.relative_deviation
    if log_p_adjusted < math.log(s.alpha) and rel <= -s.min_relative_deficit:
        return "very_low" if rel <= -s.very_low_deficit else "low"
    if row.z > HIGH_Z:
        return "high"
    return "ok"


def run_telemetry(record: RunRecord) -> tuple[TelemetrySample, ...]:
    """Every test's samples: one time base (seconds since the run started), in run order."""
    return tuple(s for test in record.tests for s in test.telemetry)


def judged_tests(tests: tuple[TestResult, ...]) -> tuple[TestResult, ...]:
    """The record's tests and the performance per watt derived from them."""
    derived = efficiency_test(tests)
    return tests + ((derived,) if derived else ())


def analyse(record: RunRecord, profile: Profile | None, policy: Policy) -> Analysis:
    comparisons = compare_metrics(judged_tests(record.tests), profile, policy)
    subsystems = composite.score_subsystems(comparisons, composite_settings(policy))
    counters = record.counters_after or record.counters_before
    soak_test = record.test("soak")
    summary = None
    if soak_test is not None and soak_test.telemetry:
        reference = thermal_reference.select(
            profile.thermal if profile else None,
            record.preset,
            record.host,
            profile.name if profile else record.identity.name,
        )
        summary = soak.summarize(
            soak_test,
            run_telemetry(record),
            counters.temperature_slowdown_c if counters else None,
            reference.c_per_w if reference else None,
            counters.memory_temperature_max_c if counters else None,
        )
        summary = judge_thermal(summary, reference, thermal_settings(policy))
    found = causes.attribute(
        health.test_findings(record.tests, record.tests_selected)
        + evidence_findings(record)
        + health.run_findings(record)
        + health.counter_findings(record.counters_before, record.counters_after)
        + health.identity_findings(record)
        + health.xid_findings(record)  # whether or not any counter was read
        + health.vbios_findings(record, profile.vbios_versions if profile else ())
        + health.performance_findings(subsystems, profile.name if profile else None)
        + health.soak_findings(summary, counters, thermal_flag_ratio(policy))
        + registry_findings(record, profile)
        + unmade_check_findings(record, profile, comparisons, summary)
        + health.card_history_findings(record.stored_history)
        + health.readiness_findings(record)
        + health.memory_clear_findings(record)
        + unfinished_findings(record)  # stopped at or in the memory clear
        + health.selection_findings(record)
        + health.soak_length_findings(record, _preset_soak_s(record))
        # issue 14: the PCIe copies and the link under load; NVLink state and errors; the PCIe
        # error counters
        + pcie_findings(record)
        + nvlink_findings(record.counters_before, record.counters_after)
        + pcie_error_findings(record.counters_before, record.counters_after)
        # a clock setting that held the clocks down under load (locked clocks NVML cannot read)
        + clock_hold_findings(record)
    )
    energy = None
    before, after = record.counters_before, record.counters_after
    if before and after and before.energy_j is not None and after.energy_j is not None:
        energy = round(after.energy_j - before.energy_j, 3)
    busy = sum(t.gpu_busy_s for t in record.tests)
    return Analysis(
        profile=ProfileRef(profile.key, profile.name, profile.source, profile.cards)
        if profile
        else None,
        comparisons=comparisons,
        soak=summary,
        findings=tuple(found),
        energy_used_j=energy,
        gpu_busy_share=round(busy / record.wall_time_s, 4) if record.wall_time_s else None,
        subsystems=subsystems,
    )


def _preset_soak_s(record: RunRecord) -> float | None:
    chosen = PRESETS.get(record.preset)
    return chosen.soak.duration_s if chosen else None


def composite_settings(policy: Policy) -> composite.Settings:
    s = policy.spec.statistics
    return composite.Settings(
        s.alpha, s.min_relative_deficit, s.run_to_run, s.tail_dof, s.bound_confidence
    )


def thermal_flag_ratio(policy: Policy) -> float | None:
    """The lowest thermal-resistance ratio the policy grades."""
    floors = [
        r.min_measure
        for r in policy.spec.rules
        if r.finding == "thermal_resistance" and r.min_measure is not None
    ]
    return min(floors, default=None)


def thermal_settings(policy: Policy) -> thermal_reference.Settings:
    s = policy.spec.statistics
    return thermal_reference.Settings(
        s.thermal_run_to_run,
        s.thermal_rig_to_rig,
        s.thermal_card_spread,
        s.tail_dof,
        s.bound_confidence,
    )


def judge_thermal(
    summary: SoakSummary,
    reference: thermal_reference.ThermalReference | None,
    settings: thermal_reference.Settings,
) -> SoakSummary:
    """The summary with the reference it is held to named and, when the resistance was measured,
    its ratio to the reference at the prediction's lower bound."""
    if reference is None:
        return summary
    measured = summary.thermal_resistance_c_per_w
    ratio_low = None
    if measured is not None:
        ratio_low = thermal_reference.ratio_lower_bound(
            measured,
            summary.thermal_resistance_low_c_per_w,
            summary.thermal_resistance_high_c_per_w,
            reference,
            settings,
        )
    return replace(
        summary,
        thermal_reference=reference.description,
        thermal_ratio_low=None if ratio_low is None else round(ratio_low, 4),
    )


def judge(record: RunRecord, profile: Profile | None, policy: Policy) -> RunRecord:
    """The record with its analysis, grade and the rules behind them filled in (replacing any
    earlier judgement). Under rules other than this version's shipped ones for the card's model,
    the record also carries the grade those shipped rules give (the certificate shows both)."""
    analysis, graded = assess(record, profile, policy)
    default = shipped.current_release()
    default_policy, default_profile = default.policy(), default.profile_for(record.identity)
    same = policy.sha256 == default_policy.sha256 and _same_profile(profile, default_profile)
    under = JudgedUnder(
        policy=shipped.policy_file(policy),
        profile=shipped.profile_file(profile),
        judged_by=__version__,
        shipped_grade=None if same else assess(record, default_profile, default_policy)[1],
    )
    return replace(record, analysis=analysis, grade=graded, rules=under)


def assess(record: RunRecord, profile: Profile | None, policy: Policy) -> tuple[Analysis, Grade]:
    """The analysis and grade of a record's measurements under one profile and policy."""
    analysis = analyse(record, profile, policy)
    note = None if profile is not None else no_profile_note(record)
    return analysis, grade(analysis.findings, policy, note)


def _same_profile(used: Profile | None, default: Profile | None) -> bool:
    if used is None or default is None:
        return used is default
    file = shipped.profile_file(used)
    return file is not None and file.sha256 == default.text_sha256


def no_profile_note(record: RunRecord) -> str:
    """The reason added to a grade judged without a reference profile."""
    return (
        f"performance not judged: no reference profile for {record.identity.name!r}; "
        "grade from health findings only"
    )
