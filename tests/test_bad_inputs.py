"""Every file of the bad-input corpus (tests/data/bad/, made by make_corpus.py) through the real
command line: exit 2 (6 for a pinned-keys store: the trust store's own code), exactly one line on
stderr that names the file and the field (or what is wrong with the file), and nothing written.

    sim cards   gpuhealth grade --backend sim --sim-card F --out OUT
    policies    gpuhealth grade --backend sim --policy F --out OUT
    profiles    gpuhealth grade --backend sim --profile F --out OUT
    records     gpuhealth report F -o OUT/report.html, and gpuhealth verify F
    keys        private-*: gpuhealth keys show --key-file F; public-*: gpuhealth keys pin F;
                pinned-*: gpuhealth keys list with F as the pinned file
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gpuhealth.cli import main
from gpuhealth.errors import EXIT_TRUST_STORE, EXIT_USAGE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BAD = Path(__file__).resolve().parent / "data" / "bad"
EXPECTED: dict[str, dict[str, str]] = tomllib.loads(
    (BAD / "expected.toml").read_text(encoding="utf-8")
)
CASES = [
    pytest.param(kind, name, word, id=f"{kind}/{name}")
    for kind, files in EXPECTED.items()
    for name, word in files.items()
]
GRADE_OPTION = {"simcards": "--sim-card", "policies": "--policy", "profiles": "--profile"}


def run(args: list[str], config: Path) -> Result:
    env = {"GPUHEALTH_CONFIG_DIR": str(config), "GPUHEALTH_KEY_FILE": None}
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def private_copy(path: Path, folder: Path) -> Path:
    """The file in an owner-only folder, owner-only itself (git keeps no modes)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    copy = folder / path.name
    copy.write_bytes(path.read_bytes())
    copy.chmod(0o600)
    return copy


def one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_the_corpus_is_large_and_complete() -> None:
    assert len(CASES) >= 150
    for kind, files in EXPECTED.items():
        on_disk = {p.name for p in (BAD / kind).iterdir()}
        assert on_disk == set(files), kind


@pytest.mark.parametrize(("kind", "name", "word"), CASES)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    kind: str, name: str, word: str, tmp_path: Path
) -> None:
    path = BAD / kind / name
    config = tmp_path / "config"
    config.mkdir(mode=0o700)
    out = tmp_path / "out"
    expected_exit = EXIT_USAGE
    if kind in GRADE_OPTION:
        args = ["grade", "--backend", "sim", GRADE_OPTION[kind], str(path)]
        args += ["--out", str(out), "--quiet", "--no-db"]
    elif kind == "records":
        out.mkdir()
        args = ["report", str(path), "-o", str(out / "report.html")]
    elif name.startswith("private-"):
        path = private_copy(path, tmp_path / "keys")
        args = ["keys", "show", "--key-file", str(path)]
    elif name.startswith("public-"):
        args = ["keys", "pin", str(path)]
    else:
        path = private_copy(path, config / "keys").rename(config / "keys" / "pinned")
        args, expected_exit = ["keys", "list"], EXIT_TRUST_STORE
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    result = run(args, config)

    assert result.exit_code == expected_exit, result.output
    line = one_error_line(result)
    assert line.startswith("gpuhealth: error: ")
    assert str(path) in line, line
    said = line.split(str(path), 1)[1]  # the word must be in the message, not the file's name
    assert word.lower() in said.lower(), line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not out.exists() or not any(out.iterdir())


RECORDS = [c for c in CASES if c.values[0] == "records"]


# What makes a file no readable record at all (verify: UNREADABLE, exit 2), by the word named.
UNREADABLE_WORDS = {"JSON", "JSON object", "nested", "UTF-8"}


@pytest.mark.parametrize(("kind", "name", "word"), RECORDS)
def test_verify_refuses_a_bad_record(kind: str, name: str, word: str, tmp_path: Path) -> None:
    """verify never passes a bad record and never shows a traceback. A file that is no readable
    record (not JSON, not UTF-8, nested too deep, a duplicate key, NaN or Infinity) is UNREADABLE,
    exit 2, and the verdict (the first line) names what is wrong; a record that parses but breaks
    the schema is INVALID (1) or, for a newer schema, not checkable (7): verify's own codes."""
    result = run(["verify", str(BAD / kind / name)], tmp_path)
    assert "Traceback" not in result.output
    assert result.exit_code != 0, result.output
    verdict = result.stdout.splitlines()[0].replace(name, "")
    duplicate_or_not_finite = "duplicate" in verdict or "finite" in verdict
    if word in UNREADABLE_WORDS or duplicate_or_not_finite:
        assert result.exit_code == EXIT_USAGE, result.output
        assert word.lower() in verdict.lower() or duplicate_or_not_finite, verdict


def test_permissions_are_checked_on_the_copy() -> None:
    """The private-key cases copy the file owner-only: the failure is the content's, not mode's."""
    if os.name != "posix":  # pragma: no cover
        pytest.skip("POSIX modes")
    assert any(name.startswith("private-") for name in EXPECTED["keys"])
