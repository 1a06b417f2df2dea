"""Grading: the policy file (loading, one-line errors) and findings -> grade with reasons."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpuhealth.errors import InputError
from gpuhealth.judge.grading import (
    DEFAULT_POLICY,
    FINDING_CODES,
    SEVERITY_ORDER,
    Policy,
    grade,
    load_policy,
)
from gpuhealth.models import Finding


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


def finding(code: str, measure: float | None = None, message: str = "") -> Finding:
    return Finding(
        code, "major", "test", message or f"{code} happened", "v", "ref", measure=measure
    )


# --- loading -------------------------------------------------------------------------------------


def test_default_policy_loads(policy: Policy) -> None:
    assert policy.source == str(DEFAULT_POLICY)
    assert policy.label == "gpuhealth-default v1"
    assert re.fullmatch(r"[0-9a-f]{64}", policy.sha256)
    assert load_policy(None).sha256 == policy.sha256
    ids = [r.id for r in policy.spec.rules]
    assert len(ids) == len(set(ids))
    s = policy.spec.statistics
    assert 0 < s.alpha < 0.5 and s.min_relative_deficit < s.very_low_deficit


def test_every_finding_code_has_a_rule(policy: Policy) -> None:
    assert {r.finding for r in policy.spec.rules} == set(FINDING_CODES)


# That every rule fires and every finding is produced, end to end: tests/test_every_rule.py.


def test_a_user_policy_file(tmp_path: Path) -> None:
    text = DEFAULT_POLICY.read_text(encoding="utf-8").replace(
        'name = "gpuhealth-default"', 'name = "strict-shop"'
    )
    path = tmp_path / "mine.toml"
    path.write_text(text, encoding="utf-8")
    mine = load_policy(path)
    assert mine.label == "strict-shop v1" and mine.source == str(path)
    assert mine.sha256 != load_policy().sha256  # the grade records which policy judged it


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "policy.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("min_measure = 1.5", "min_measur = 1.5", r"rules\.\d+\.min_measur", "did you mean"),
        ("alpha = 0.01", "alpha_ = 0.01", r"statistics\.alpha_", "did you mean 'alpha'"),
        (
            'finding = "wrong_results"',
            'finding = "wrong_result"',
            r"rules\.\d+\.finding",
            "unknown finding 'wrong_result'",
        ),
        (
            'id = "wrong-results"',
            'id = "memory-errors"',
            r"rules\.1\.id",
            "'memory-errors' is used twice",
        ),
        ('grade = "F"', 'grade = "E"', r"rules\.0\.grade", "'E'"),
        ("alpha = 0.01", "alpha = 0.9", r"statistics\.alpha", "0.5"),
        ('D = "Repair first', 'X = "Repair first', r"dispositions\.(D|X)", ""),
        ('version = "1"', "version = 1", r"version", "string"),
    ],
)
def test_bad_policy_names_file_and_field(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    path = _broken(tmp_path, old, new)
    with pytest.raises(InputError) as caught:
        load_policy(path)
    error = caught.value
    assert error.source == str(path)
    assert error.field is not None and re.fullmatch(field, error.field), error.field
    line = error.one_line()
    prefix = rf"{re.escape(str(path))}(:\d+)?: {re.escape(error.field)}: "
    assert re.match(prefix, line) and "\n" not in line
    assert words in line


def test_malformed_or_missing_policy(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[rules\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"broken\.toml:2: not valid TOML"):
        load_policy(path)
    with pytest.raises(InputError, match="file not found"):
        load_policy(tmp_path / "absent.toml")


def test_policy_without_rules(tmp_path: Path) -> None:
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    path = tmp_path / "empty.toml"
    path.write_text(text[: text.index("[[rules]]")], encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_policy(path)
    assert caught.value.field == "rules"


# --- rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("measure", "letter", "rule"),
    [
        (-0.25, "C", "performance-deficit-large"),
        (-0.0701, "C", "performance-deficit-large"),
        (-0.07, "B", "performance-deficit-small"),  # max_measure is exclusive, min inclusive
        (-0.04, "B", "performance-deficit-small"),
    ],
)
def test_performance_deficit_ranges(policy: Policy, measure: float, letter: str, rule: str) -> None:
    g = grade((finding("performance_deficit", measure),), policy)
    assert g.letter == letter
    assert [r.rule for r in g.reasons] == [rule]


@pytest.mark.parametrize(
    ("ratio", "letter", "rule"),
    [
        (1.1, "A", "all-clear"),  # above the model, within tolerance: no rule fires
        (1.2, "B", "thermal-resistance-above-model"),
        (1.3, "C", "thermal-resistance-well-above-model"),
        (1.49, "C", "thermal-resistance-well-above-model"),
        (1.5, "D", "thermal-resistance-far-above-model"),
        (2.3, "D", "thermal-resistance-far-above-model"),
    ],
)
def test_thermal_resistance_ranges(policy: Policy, ratio: float, letter: str, rule: str) -> None:
    g = grade((finding("thermal_resistance", ratio),), policy)
    assert (g.letter, g.reasons[0].rule) == (letter, rule)


def test_ranged_rule_needs_a_measure(policy: Policy) -> None:
    g = grade((finding("thermal_resistance", None),), policy)
    assert g.letter == "A"


def test_reason_carries_message_value_and_reference(policy: Policy) -> None:
    f = Finding(
        "memory_errors",
        "critical",
        "memtest",
        "2 memory error(s) in memtest; first at address 0x1F000 bit(s) 3",
        value="2",
        reference="0",
    )
    g = grade((f,), policy)
    (reason,) = g.reasons
    assert (reason.rule, reason.grade, reason.message) == ("memory-errors", "F", f.message)
    assert (reason.value, reason.reference) == ("2", "0")
    assert g.disposition == policy.spec.dispositions.F
    assert (g.policy, g.policy_sha256) == (policy.label, policy.sha256)


# --- the worst grade wins ------------------------------------------------------------------------


def test_severity_order() -> None:
    assert SEVERITY_ORDER == ("A", "B", "C", "D", "INCOMPLETE", "F")


# one finding per grade in the default policy
BY_GRADE = {
    "B": finding("rows_remapped"),
    "C": finding("row_spares_depleting"),
    "D": finding("pcie_link_degraded"),
    "INCOMPLETE": finding("test_not_measured"),
    "F": finding("memory_errors"),
}


@pytest.mark.parametrize(
    "letters",
    [
        ("B", "C"),
        ("C", "D"),
        ("D", "INCOMPLETE"),
        ("INCOMPLETE", "F"),
        ("B", "F"),
        ("B", "C", "D", "INCOMPLETE"),
        ("F", "B", "D"),
    ],
)
def test_worst_grade_wins(policy: Policy, letters: tuple[str, ...]) -> None:
    findings = tuple(BY_GRADE[x] for x in letters)
    worst = max(letters, key=SEVERITY_ORDER.index)
    for ordered in (findings, findings[::-1]):
        g = grade(ordered, policy)
        assert g.letter == worst
        assert sorted(r.grade for r in g.reasons) == sorted(letters)
        # reasons listed worst first
        ranks = [SEVERITY_ORDER.index(r.grade) for r in g.reasons]
        assert ranks == sorted(ranks, reverse=True)


def test_each_grade_alone(policy: Policy) -> None:
    for letter, f in BY_GRADE.items():
        g = grade((f,), policy)
        assert g.letter == letter
        assert g.disposition == getattr(policy.spec.dispositions, letter)


def test_all_clear_is_A(policy: Policy) -> None:
    g = grade((), policy)
    assert g.letter == "A"
    assert [r.rule for r in g.reasons] == ["all-clear"]
    assert g.disposition == policy.spec.dispositions.A
    noted = grade((), policy, note="performance not judged: no profile")
    assert noted.letter == "A" and noted.reasons[0].message.startswith("performance not judged")


def test_note_is_kept_beside_reasons(policy: Policy) -> None:
    g = grade((BY_GRADE["C"],), policy, note="no reference profile")
    assert g.letter == "C"
    assert [r.rule for r in g.reasons] == ["spare-rows-depleting", "note"]


def test_first_matching_rule_decides_a_finding(policy: Policy) -> None:
    """One finding gives one reason, even where two rules could match it."""
    g = grade((finding("performance_deficit", -0.3),), policy)
    assert len(g.reasons) == 1


# --- found untested by the mutation benchmark (bench/mutation.py) ------------------------------


def test_the_policy_keeps_its_file_text() -> None:
    """The text is embedded in every record judged under the policy: the file's, byte for byte."""
    assert load_policy().text == DEFAULT_POLICY.read_bytes().decode("utf-8")


def test_a_policy_file_over_a_mebibyte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    path.write_text(text + "#" * (2**20 - len(text.encode("utf-8")) + 1), encoding="utf-8")
    with pytest.raises(InputError, match="at most 1048576 bytes"):
        load_policy(path)


def _line_of(path: Path, text: str, nth: int = 1) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [i for i, line in enumerate(lines, 1) if line == text][nth - 1]


def test_a_bad_rule_names_its_line(tmp_path: Path) -> None:
    path = _broken(tmp_path, 'grade = "F"', 'grade = "E"')
    with pytest.raises(InputError) as caught:
        load_policy(path)
    assert caught.value.line == _line_of(path, 'grade = "E"')


def test_a_rule_id_used_twice_names_the_second_line(tmp_path: Path) -> None:
    path = _broken(tmp_path, 'id = "wrong-results"', 'id = "memory-errors"')
    with pytest.raises(InputError) as caught:
        load_policy(path)
    assert caught.value.line == _line_of(path, 'id = "memory-errors"', nth=2)


def test_the_note_is_a_reason_of_the_card_s_grade(policy: Policy) -> None:
    g = grade((BY_GRADE["C"],), policy, note="no reference profile")
    note = g.reasons[-1]
    assert (note.rule, note.grade, note.message) == ("note", "C", "no reference profile")


def test_a_cause_that_fired_no_rule_leaves_the_reason_its_own(policy: Policy) -> None:
    """A finding is folded into its cause's reason only when that cause is a reason too."""
    consequence = Finding(
        "performance_deficit", "major", "fp32", "FP32 slow", measure=-0.35, cause="xid/run"
    )
    g = grade((consequence,), policy)
    assert [(r.rule, r.also) for r in g.reasons] == [("performance-fault", ())]
    cause = Finding("xid", "major", "run", "Xid 999")
    both = grade((cause, consequence), policy)
    assert [r.rule for r in both.reasons] == ["xid-unknown"]
    assert both.letter == "D" and both.reasons[0].also == ("performance-fault: FP32 slow",)


# The shipped policy, finding by finding: the rule that decides it and the grade. A change to a
# rule's grade, range or order must change this table too (reviewed as code, not only as TOML);
# bench/policy_mutants.py checks that softening, removing or nudging any rule fails here.
SHIPPED_RULES: list[tuple[str, float | None, str, str]] = [
    ("memory_errors", None, "memory-errors", "F"),
    ("wrong_results", None, "wrong-results", "F"),
    ("silent_data_corruption", None, "silent-data-corruption", "F"),
    ("ecc_uncorrectable_during_run", None, "ecc-uncorrectable-during-run", "F"),
    ("row_remap_failure", None, "row-remap-failure", "F"),
    ("retired_pages_limit", None, "retired-pages-limit", "F"),
    ("xid_fatal", None, "fatal-xid", "F"),
    ("thermal_slowdown", None, "thermal-slowdown", "F"),
    ("test_not_measured", None, "incomplete", "INCOMPLETE"),
    ("counters_unreadable", None, "counters-unreadable", "INCOMPLETE"),
    ("clocks_held", None, "clocks-held", "INCOMPLETE"),
    ("xid_card_lost", None, "xid-card-lost", "D"),
    ("xid_nvlink", None, "xid-nvlink", "D"),
    ("row_remap_pending", None, "row-remap-pending", "D"),
    ("retired_pages_pending", None, "retired-pages-pending", "D"),
    ("ecc_sram_uncorrectable_history", None, "ecc-sram-uncorrectable-history", "D"),
    ("pcie_link_degraded", None, "pcie-link-degraded", "D"),
    ("identity_mismatch", None, "identity-mismatch", "D"),
    ("hardware_slowdown", None, "hardware-slowdown", "D"),
    ("thermal_guard", None, "thermal-guard", "D"),
    ("memory_temperature_high", None, "memory-temperature-high", "D"),
    ("xid", None, "xid-unknown", "C"),
    ("ecc_history_unreadable", None, "ecc-history-unreadable", "C"),
    ("ecc_mode_pending", None, "ecc-mode-pending", "C"),
    ("row_spares_depleting", None, "spare-rows-depleting", "C"),
    ("card_identity_changed", None, "card-identity-changed", "C"),
    ("card_counters_decreased", None, "card-counters-decreased", "C"),
    ("ecc_uncorrectable_history", None, "ecc-uncorrectable-history", "C"),
    ("rows_remapped", None, "rows-remapped", "B"),
    ("pages_retired", None, "pages-retired", "B"),
    ("ecc_correctable_during_run", None, "ecc-correctable-during-run", "B"),
    ("ecc_disabled", None, "ecc-disabled", "C"),
    ("power_limit_reduced", None, "power-limit-reduced", "B"),
    ("pcie_replays", None, "pcie-replays", "B"),
    ("xid_application", None, "xid-application", "B"),
    ("other_processes", None, "other-processes", "B"),
    ("memtest_coverage_low", None, "memtest-coverage-low", "B"),
    ("thermal_resistance_unmeasured", None, "thermal-resistance-unmeasured", "B"),
    ("thermal_reference_missing", None, "thermal-reference-missing", "B"),
    ("reference_missing", None, "reference-missing", "B"),
    ("telemetry_incomplete", None, "telemetry-incomplete", "B"),
    ("counters_incomplete", None, "counters-incomplete", "B"),
    ("test_not_applicable", None, "test-not-applicable", "A"),
    ("vbios_unrecognised", None, "vbios-unrecognised", "A"),
    ("identity_unrecognised", None, "identity-unrecognised", "A"),
    # issue 14: the link, readiness, the clear, --soak
    ("pcie_copy_corrupt", None, "pcie-copy-corrupt", "F"),
    ("pcie_copy_slow", None, "pcie-copy-slow", "D"),
    ("nvlink_inactive", None, "nvlink-inactive", "D"),
    ("nvlink_errors", None, "nvlink-errors", "C"),
    ("pcie_errors_uncorrectable", None, "pcie-errors-uncorrectable", "D"),
    ("pcie_errors_correctable", None, "pcie-errors-correctable", "B"),
    ("pcie_copy_unjudged", None, "pcie-copy-unjudged", "B"),
    ("soak_shortened", None, "soak-shortened", "B"),
    ("settings_not_default", None, "settings-not-default", "A"),
    ("memory_not_cleared", None, "memory-not-cleared", "A"),
    # ranged rules: both sides of each bound (min_measure inclusive, max_measure exclusive)
    ("performance_deficit", -0.35, "performance-fault", "D"),
    ("performance_deficit", -0.31, "performance-fault", "D"),
    ("performance_deficit", -0.30, "performance-deficit-large", "C"),
    ("performance_deficit", -0.0701, "performance-deficit-large", "C"),
    ("performance_deficit", -0.065, "performance-deficit-small", "B"),
    ("performance_deficit", -0.07, "performance-deficit-small", "B"),
    ("thermal_resistance", 1.6, "thermal-resistance-far-above-model", "D"),
    ("thermal_resistance", 1.5, "thermal-resistance-far-above-model", "D"),
    ("thermal_resistance", 1.4, "thermal-resistance-well-above-model", "C"),
    ("thermal_resistance", 1.35, "thermal-resistance-well-above-model", "C"),
    ("thermal_resistance", 1.3, "thermal-resistance-well-above-model", "C"),
    ("thermal_resistance", 1.2, "thermal-resistance-above-model", "B"),
    ("thermal_resistance", 1.15, "thermal-resistance-above-model", "B"),
    ("thermal_resistance", 1.1, "all-clear", "A"),
    ("thermal_resistance_unproven", 1.2, "thermal-resistance-unproven", "B"),
    ("thermal_resistance_unproven", 1.15, "thermal-resistance-unproven", "B"),
    ("thermal_resistance_unproven", 1.1, "all-clear", "A"),
    ("pages_retired", 17, "pages-retired-many-double-bit", "C"),
    ("pages_retired", 16, "pages-retired-many-double-bit", "C"),
    ("pages_retired", 15, "pages-retired", "B"),
    ("identity_unverified", 1, "identity-unverified", "B"),
    ("identity_unverified", 0.95, "all-clear", "A"),
]


@pytest.mark.parametrize(("code", "measure", "rule", "letter"), SHIPPED_RULES)
def test_the_shipped_policy_rule_by_rule(
    policy: Policy, code: str, measure: float | None, rule: str, letter: str
) -> None:
    g = grade((finding(code, measure),), policy)
    assert (g.reasons[0].rule, g.letter) == (rule, letter)


def test_the_rule_table_covers_every_rule(policy: Policy) -> None:
    assert {rule for _, _, rule, _ in SHIPPED_RULES} - {"all-clear"} == {
        r.id for r in policy.spec.rules
    }
