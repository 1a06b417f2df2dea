"""Attack on issue 14: `gpuhealth resume` of a journal whose --tests or --soak are bad.

A resumed run goes on with the record's preset, soak length and test list. A bad one was reported
as if the user had typed it ("--soak: expected seconds from 10 to 86400, got 5", with no --soak
given), from inside the worker, and a list with an unknown test name or none at all was used.
Now each is the record's error: one line naming run.json and the field, exit 2, before any card is
opened; `resume --close` the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from simkit import invoke

QUICK = Path(__file__).resolve().parent / "data" / "current" / "sim-h100-quick.json"


def interrupted_journal(folder: Path, **fields: Any) -> Path:
    """The stored quick record as a journal its writer left in the soak, with fields changed."""
    data = json.loads(QUICK.read_text(encoding="utf-8"))
    for test in data["tests"]:
        if test["name"] == "soak":
            test.update(status="not_run", message="interrupted (Ctrl-C) during soak")
    data.update(
        complete=False,
        interrupted="interrupted (Ctrl-C) during soak",
        analysis=None,
        grade=None,
        rules=None,
        signature=None,
        memory_clear=None,
    )
    data.update(fields)
    folder.mkdir(parents=True)
    path = folder / "run.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"soak_duration_s": 5.0}, "soak_duration_s: expected seconds from 10 to 86400, got 5"),
        ({"soak_duration_s": 1e9}, "soak_duration_s: expected seconds from 10 to 86400, got 1e+09"),
        ({"preset": "tiny"}, "preset: expected one of quick, standard, thorough, got 'tiny'"),
        (
            {"tests_selected": ["soak", "bogus"]},
            "tests_selected: expected test names from: pcie, bandwidth, memtest, fp32, "
            "fp16_tensor, gemm, soak, got soak, bogus",
        ),
        (
            {"tests_selected": []},
            "tests_selected: expected test names from: pcie, bandwidth, memtest, fp32, "
            "fp16_tensor, gemm, soak, got none",
        ),
    ],
)
@pytest.mark.parametrize("close", [False, True])
def test_a_bad_recorded_run_is_the_records_error(
    tmp_path: Path, fields: dict[str, Any], expected: str, close: bool
) -> None:
    path = interrupted_journal(tmp_path / "run", **fields)
    before = path.read_bytes()
    result = invoke(
        "resume", str(path.parent), "--no-db", "--quiet", *(["--close"] if close else [])
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"gpuhealth: error: {path}: {expected}"]
    assert path.read_bytes() == before  # nothing written
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]


def test_a_good_journal_still_resumes(tmp_path: Path) -> None:
    path = interrupted_journal(tmp_path / "run")
    result = invoke("resume", str(path.parent), "--no-db", "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["complete"] and record["grade"]["letter"] == "A"
