"""A bad user file (policy, profile, sim card spec) gets one line naming the file, the line, the
field and what was expected, through the real loaders and through the command line.

Expected lines are found in the test's own text by search, independently of gpuhealth.tomlpos,
so that editing the shipped files does not break these tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from simkit import EXAMPLES, invoke

from gpuhealth.datafiles import StrictModel, validate
from gpuhealth.errors import EXIT_USAGE, InputError
from gpuhealth.judge.grading import DEFAULT_POLICY, load_policy
from gpuhealth.judge.profiles import PROFILES_DIR, load_profile
from gpuhealth.measure.backends.simcards import load_card
from gpuhealth.tomlpos import key_lines, line_of

H200_PROFILE = PROFILES_DIR / "h200-sxm-141gb.toml"


def load_card_file(path: Path) -> object:
    return load_card(str(path))


def line_number(text: str, needle: str, after: int = 0) -> int:
    """The 1-based number of the first line after line `after` that contains needle."""
    for number, line in enumerate(text.splitlines(), start=1):
        if number > after and needle in line:
            return number
    raise AssertionError(f"{needle!r} not found after line {after}")


def rule_header(text: str, index: int) -> int:
    """The line of the `[[rules]]` header of rule `index` (from 0, as the error's field counts)."""
    number = 0
    for _ in range(index + 1):
        number = line_number(text, "[[rules]]", after=number)
    return number


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(load: Callable[[Path], object], path: Path) -> InputError:
    with pytest.raises(InputError) as caught:
        load(path)
    error = caught.value
    assert error.source == str(path)
    assert "\n" not in error.one_line()
    return error


def assert_names(error: InputError, path: Path, line: int | None, field: str | None) -> str:
    """The message starts `file:line: field: ` and the error carries the same parts."""
    message = error.one_line()
    where = f"{path}:{line}" if line is not None else str(path)
    prefix = f"{where}: {field}: " if field else f"{where}: "
    assert message.startswith(prefix), message
    assert (error.line, error.field) == (line, field)
    return message


# --- policy ---------------------------------------------------------------------------------------


@pytest.fixture
def policy_text() -> str:
    return DEFAULT_POLICY.read_text(encoding="utf-8")


def test_policy_bad_grade_names_the_rules_grade_line(tmp_path: Path, policy_text: str) -> None:
    header = rule_header(policy_text, 5)
    grade_line = line_number(policy_text, "grade = ", after=header)
    lines = policy_text.splitlines(keepends=True)
    lines[grade_line - 1] = 'grade = "Z"\n'
    path = write(tmp_path, "my-policy.toml", "".join(lines))
    message = assert_names(error_of(load_policy, path), path, grade_line, "rules.5.grade")
    assert "Input should be 'A', 'B'" in message and "(got 'Z')" in message


def test_policy_misspelled_key_keeps_did_you_mean(tmp_path: Path, policy_text: str) -> None:
    misspelled = policy_text.replace("min_measure = 1.5", "min_measur = 1.5", 1)
    path = write(tmp_path, "my-policy.toml", misspelled)
    error = error_of(load_policy, path)
    line = line_number(misspelled, "min_measur = 1.5")
    assert error.field is not None and re.fullmatch(r"rules\.\d+\.min_measur", error.field)
    message = assert_names(error, path, line, error.field)
    assert message.endswith("unknown field (did you mean 'min_measure'?)")


def test_policy_missing_key_names_its_table_header(tmp_path: Path, policy_text: str) -> None:
    path = write(tmp_path, "my-policy.toml", policy_text.replace("very_low_deficit = 0.07\n", ""))
    line = line_number(policy_text, "[statistics]")
    message = assert_names(error_of(load_policy, path), path, line, "statistics.very_low_deficit")
    assert message.endswith("Field required")


def test_policy_missing_key_of_one_rule_names_that_rules_header(
    tmp_path: Path, policy_text: str
) -> None:
    header = rule_header(policy_text, 3)
    lines = policy_text.splitlines(keepends=True)
    rationale = line_number(policy_text, "rationale = ", after=header)
    del lines[rationale - 1]
    path = write(tmp_path, "my-policy.toml", "".join(lines))
    assert_names(error_of(load_policy, path), path, header, "rules.3.rationale")


def test_policy_missing_top_level_key_has_no_line(tmp_path: Path, policy_text: str) -> None:
    path = write(tmp_path, "my-policy.toml", policy_text.replace('name = "gpuhealth-default"', ""))
    assert_names(error_of(load_policy, path), path, None, "name")


def test_policy_wrong_type_names_the_value_line(tmp_path: Path, policy_text: str) -> None:
    wrong = policy_text.replace("min_measure = 1.5", 'min_measure = "high"', 1)
    path = write(tmp_path, "my-policy.toml", wrong)
    error = error_of(load_policy, path)
    assert error.field is not None
    message = assert_names(error, path, line_number(wrong, 'min_measure = "high"'), error.field)
    assert "valid number" in message and "(got 'high')" in message


def test_policy_syntax_error_names_tomllibs_line(tmp_path: Path, policy_text: str) -> None:
    broken = policy_text.replace("alpha = 0.01", "alpha = 0.01 0.02", 1)
    path = write(tmp_path, "my-policy.toml", broken)
    line = line_number(broken, "alpha = 0.01 0.02")
    message = assert_names(error_of(load_policy, path), path, line, None)
    assert message.startswith(f"{path}:{line}: not valid TOML (")


# --- profile and sim card spec --------------------------------------------------------------------


def test_profile_negative_spread_in_a_quoted_key_table(tmp_path: Path) -> None:
    text = H200_PROFILE.read_text(encoding="utf-8")
    header = line_number(text, '[metrics."bandwidth.scale_gbs"]')
    spread = line_number(text, "spread = ", after=header)
    lines = text.splitlines(keepends=True)
    lines[spread - 1] = "spread = -127.788\n"
    path = write(tmp_path, "my-profile.toml", "".join(lines))
    message = assert_names(
        error_of(load_profile, path), path, spread, "metrics.bandwidth.scale_gbs.spread"
    )
    assert "greater than 0" in message and "(got -127.788)" in message


def test_profile_missing_key_in_a_quoted_key_table(tmp_path: Path) -> None:
    text = H200_PROFILE.read_text(encoding="utf-8")
    header = line_number(text, '[metrics."bandwidth.add_gbs"]')
    lines = text.splitlines(keepends=True)
    del lines[line_number(text, "n = ", after=header) - 1]
    path = write(tmp_path, "my-profile.toml", "".join(lines))
    assert_names(error_of(load_profile, path), path, header, "metrics.bandwidth.add_gbs.n")


def test_sim_card_bad_stuck_bit(tmp_path: Path) -> None:
    text = (EXAMPLES / "stuck-bit.toml").read_text(encoding="utf-8")
    assert "bit = 3," in text
    bad = text.replace("bit = 3,", "bit = 40,")
    path = write(tmp_path, "my-card.toml", bad)
    error = error_of(load_card_file, path)
    message = assert_names(error, path, line_number(bad, "stuck_bits"), "faults.stuck_bits.0.bit")
    assert "less than or equal to 31" in message and "(got 40)" in message


def test_sim_card_multi_line_array_names_the_bad_elements_line(tmp_path: Path) -> None:
    text = (
        'model = "h100-sxm5-80gb"\n'
        "[faults]\n"
        "stuck_bits = [\n"
        "  { address = 0x1F000, bit = 3, value = 0 },\n"
        "  { address = 0x1F004, bit = 3, value = 2 },\n"
        "]\n"
    )
    path = write(tmp_path, "my-card.toml", text)
    error = error_of(load_card_file, path)
    assert_names(error, path, 5, "faults.stuck_bits.1.value")


# --- the command line -----------------------------------------------------------------------------


def test_cli_bad_policy_is_one_line_with_file_and_line(tmp_path: Path, policy_text: str) -> None:
    header = rule_header(policy_text, 5)
    grade_line = line_number(policy_text, "grade = ", after=header)
    lines = policy_text.splitlines(keepends=True)
    lines[grade_line - 1] = 'grade = "Z"\n'
    bad = write(tmp_path, "BAD.toml", "".join(lines))
    out = tmp_path / "out"
    result = invoke("grade", "--demo", "--quiet", "--policy", str(bad), "--out", str(out))
    assert result.exit_code == EXIT_USAGE
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"BAD.toml:{grade_line}: rules.5.grade: " in errors[0]
    assert not out.exists()


# --- the locator and validate() on their own ------------------------------------------------------

DOCUMENT = """\
name = "x"                      # 1
notes = '''                     # 2
[not.a.table]
key = "inside a string"'''      # 4
[metrics."bandwidth.copy_gbs"]  # 5
center = 1.0                    # 6
"odd key".deep = 2              # 7
[[rules]]                       # 8
grade = "A"                     # 9
[[rules]]                       # 10
list = [                        # 11
  1,  # a comment, ] and all    # 12
  { a = "}", b = [2] },         # 13
]                               # 14
[rules.sub]                     # 15
c = 3                           # 16
"""


def test_key_lines_follow_tables_arrays_and_quoted_keys() -> None:
    lines = key_lines(DOCUMENT)
    assert lines[("notes",)] == 2
    assert ("not", "a", "table") not in lines and ("key",) not in lines
    assert lines[("metrics", "bandwidth.copy_gbs")] == 5
    assert lines[("metrics", "bandwidth.copy_gbs", "center")] == 6
    assert lines[("metrics", "bandwidth.copy_gbs", "odd key", "deep")] == 7
    assert lines[("rules", 0)] == 8
    assert lines[("rules", 0, "grade")] == 9
    assert lines[("rules", 1)] == 10
    assert lines[("rules", 1, "list", 0)] == 12
    assert lines[("rules", 1, "list", 1, "b", 0)] == 13
    assert lines[("rules", 1, "sub", "c")] == 16


def test_line_of_falls_back_to_the_nearest_enclosing_table() -> None:
    assert line_of(DOCUMENT, ("rules", 1, "grade")) == 10
    assert line_of(DOCUMENT, ("metrics", "bandwidth.copy_gbs", "spread")) == 5
    assert line_of(DOCUMENT, ("missing",)) is None
    assert line_of("a = [1, 2\n", ("a", 1)) == 1  # text the scanner cannot finish: partial map


class _Small(StrictModel):
    count: int


def test_validate_with_and_without_the_source_text(tmp_path: Path) -> None:
    text = "# a comment\ncount = 'many'\n"
    with pytest.raises(InputError) as caught:
        validate(_Small, {"count": "many"}, "given.toml", text)
    assert caught.value.one_line().startswith("given.toml:2: count: ")
    # No text, and no file at source that parses to the same data: no line rather than a wrong one.
    path = write(tmp_path, "other.toml", "count = 'few'\n")
    with pytest.raises(InputError) as caught:
        validate(_Small, {"count": "many"}, str(path))
    assert caught.value.line is None
