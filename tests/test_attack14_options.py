"""Attack on issue 14 as a careless user: --tests and --soak typed the way people type them.

Found: `--tests fp32 --soak 3600` ran no soak at all yet recorded and certified "Soak length
(--soak): 1 h" (a burn-in the user believed had run); `--tests soak,` (a trailing comma) was
refused as "unknown test ''" while --gpus takes one; naming every test printed "the others were
not measured" on the certificate although none was left out.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from simkit import invoke, read_run

from gpuhealth.errors import InputError
from gpuhealth.presets import TEST_ORDER, parse_tests


def grade(out: Path, *args: str) -> tuple[int, str]:
    result = invoke("grade", "--demo", "--quick", "--quiet", "--no-db", "--out", str(out), *args)
    return result.exit_code, result.stderr


@pytest.mark.parametrize("tests", ["fp32", "bandwidth,memtest", "pcie"])
def test_a_soak_length_without_the_soak_is_refused(tmp_path: Path, tests: str) -> None:
    code, err = grade(tmp_path / "run", "--tests", tests, "--soak", "3600")
    assert code == 2
    assert err.strip().splitlines() == [
        f"gpuhealth: error: --soak: expected the soak among --tests (got {tests}): add soak to "
        "--tests, or leave --soak out"
    ]
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("soak,", ("soak",)),
        (",soak", ("soak",)),
        ("soak,,bandwidth", ("bandwidth", "soak")),
        (" soak , soak ", ("soak",)),
    ],
)
def test_empty_items_are_skipped_as_gpus_skips_them(text: str, expected: tuple[str, ...]) -> None:
    assert parse_tests(text) == expected


@pytest.mark.parametrize("text", ["", " ", ",", " , ,"])
def test_a_list_without_a_name_is_refused(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_tests(text)
    assert caught.value.expected.startswith("expected test names from: pcie, bandwidth")


def test_every_test_named_is_a_whole_run_and_the_certificate_says_so(tmp_path: Path) -> None:
    code, _ = grade(tmp_path / "all", "--tests", ",".join(TEST_ORDER))
    assert code == 0
    record = read_run(tmp_path / "all")
    assert record.tests_selected == TEST_ORDER
    assert record.grade is not None and record.grade.letter == "A"
    for page in ("report.md", "report.html"):
        text = (tmp_path / "all" / page).read_text(encoding="utf-8")
        assert "That is every test of the suite." in text
        assert "the others were not measured" not in text


def test_a_partial_run_still_says_the_others_were_not_measured(tmp_path: Path) -> None:
    code, _ = grade(tmp_path / "part", "--tests", "fp32,")
    assert code == 3
    for page in ("report.md", "report.html"):
        text = (tmp_path / "part" / page).read_text(encoding="utf-8")
        assert (
            "Tests selected (--tests): fp32. The grade covers only these; the others were " in text
        )
        assert "every test of the suite" not in text
