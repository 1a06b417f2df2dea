"""Spreadsheet-safe CSV (gpuhealth/store/csvsafe.py): formula payloads in card text are neutralised,
numbers gpuhealth writes stay numbers, and every CSV the package writes goes through it."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from pathlib import Path

import pytest
from click.testing import Result
from simkit import H100, invoke

from gpuhealth.cli import main
from gpuhealth.cli.store import register
from gpuhealth.models import RunRecord, record_from_json
from gpuhealth.store import csvsafe
from gpuhealth.store.csvsafe import csv_safe
from gpuhealth.store.database import save_record

register(main)  # as tests/test_store.py: the store commands on the CLI (idempotent)

PACKAGE = Path(__file__).resolve().parent.parent / "gpuhealth"
RUNS = Path(__file__).parent / "data" / "runs"

# What a spreadsheet would run as a formula (OWASP): the payloads the task names.
PAYLOADS = (
    '=HYPERLINK("http://x","y")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1)",
    "\t=1+1",
    "\tplain after a tab",
    "\r=1+1",
    "\rplain after a carriage return",
    '  =HYPERLINK("http://x")',  # after leading spaces
    " +1+1",
    "\n-2+3",  # after a newline (whitespace too)
    " \t@SUM(A1)",
    "\uff1dSUM(A1)",  # full-width =
)
# Formulas after a line break inside the text: harmless only if the cell is quoted whole (a bare
# CR in an unquoted cell ends the row in a spreadsheet, and the formula starts the next one).
MID_CELL = ("SIM-1\r=cmd|' /C calc'!A0", "SIM-2\n@SUM(A1)", "SIM-3\r\n-2+3")
HARMLESS_TEXT = (
    "SIM-STUCK-0001",
    "NVIDIA H100 80GB HBM3",
    "a=b+c-d@e",  # the characters, but not first
    "1653823054517",
    "2026-11-01T00:00:00Z",
    "'=already quoted",
    "x\t=y",
    "",
)
DANGEROUS_START = re.compile(r"^\s*[=+\-@\uff1d\uff0b\uff0d\uff20]|^[\t\r]")
NUMBER = re.compile(r"-?\d+(\.\d+)?")


# -------------------------------------------------------------------------------- the function


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_gets_a_leading_quote(payload: str) -> None:
    assert csv_safe(payload) == "'" + payload


@pytest.mark.parametrize("text", HARMLESS_TEXT)
def test_harmless_text_unchanged(text: str) -> None:
    assert csv_safe(text) == text


@pytest.mark.parametrize("number", [0, 42, -7, 3.5, -3.2, 1e-9, -0.0, 12.5])
def test_numbers_stay_numbers(number: float) -> None:
    safe = csv_safe(number)
    assert safe == number and type(safe) is type(number)


def test_none_and_other_values() -> None:
    assert csv_safe(None) == ""
    assert csv_safe(True) is True
    assert csv_safe(Path("-rf")) == "'-rf"  # not a number gpuhealth wrote: text, neutralised
    assert csv_safe(float("-inf")) == "'-inf"  # a spreadsheet reads -inf as a formula
    assert csv_safe(float("nan")) == "nan"


def test_negative_number_as_text_is_quoted_but_as_number_is_not() -> None:
    assert csv_safe("-3.2") == "'-3.2"  # text from outside (a serial, a note)
    assert csv_safe(-3.2) == -3.2  # a deviation gpuhealth computed


def test_writer_round_trip() -> None:
    out = io.StringIO()
    writer = csvsafe.writer(out, lineterminator="\n")
    writer.writerow(["serial", "deviation_pct", "count", "note"])
    writer.writerows([[p, -3.2, 4, None] for p in PAYLOADS])
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows[0] == ["serial", "deviation_pct", "count", "note"]
    for payload, row in zip(PAYLOADS, rows[1:], strict=True):
        assert row == ["'" + payload, "-3.2", "4", ""]


@pytest.mark.parametrize("terminator", ["\n", "\r\n"])
def test_writer_quotes_line_breaks_inside_a_cell(terminator: str) -> None:
    out = io.StringIO()
    writer = csvsafe.writer(out, lineterminator=terminator)
    writer.writerows([[text, 1] for text in MID_CELL])
    text = out.getvalue()
    assert text.endswith(terminator) and text.count(terminator) >= len(MID_CELL)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [[t, "1"] for t in MID_CELL]  # one row per record, each cell whole


def test_every_csv_writer_in_the_package_is_safe() -> None:
    """No module but csvsafe.py makes a csv writer of its own."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "csvsafe.py":
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"csv\s*\.\s*(writer|DictWriter)\s*\(|from\s+csv\s+import[^\n]*writer", text):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == [], f"write CSV through gpuhealth.store.csvsafe.writer: {offenders}"


# ------------------------------------------------------------------------------ end to end


def _cells(result: Result) -> list[list[str]]:
    csv_text = result.stdout_bytes.decode("utf-8")  # .stdout would turn a CR LF in a cell into LF
    rows = list(csv.reader(io.StringIO(csv_text, newline="")))
    assert rows and rows[0][:4] == ["section", "model", "grade", "cards"]
    return rows


def _assert_no_formula(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not DANGEROUS_START.match(cell) or NUMBER.fullmatch(cell), (cell, row)


def _hostile(base: RunRecord, i: int, payload: str) -> RunRecord:
    assert base.grade is not None and base.grade.reasons
    first = dataclasses.replace(base.grade.reasons[0], message=payload)
    grade = dataclasses.replace(base.grade, reasons=(first, *base.grade.reasons[1:]))
    identity = dataclasses.replace(
        base.identity, serial=payload, uuid=f"GPU-hostile-{i}", name=f"{payload} model"
    )
    return dataclasses.replace(
        base, run_id=f"hostile-{i}", host=payload, identity=identity, grade=grade
    )


def test_fleet_summary_csv_neutralises_stored_card_text(tmp_path: Path) -> None:
    """Records whose serial, model, host and first reason hold formula payloads."""
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    name = "sim-stuck-bit-quick.json"
    base = record_from_json((RUNS / name).read_text(encoding="utf-8"), name)
    for i, payload in enumerate(PAYLOADS + MID_CELL):
        assert save_record(_hostile(base, i, payload), url)
    result = invoke("fleet", "summary", "--db", url, "--format", "csv", "--worst", "100")
    assert result.exit_code == 0, result.output
    rows = _cells(result)
    _assert_no_formula(rows)
    worst = [r for r in rows if r[0] == "worst"]
    assert len(worst) == len(PAYLOADS + MID_CELL)
    by_serial = {r[4]: r for r in worst}
    for text in MID_CELL:  # kept whole, in one cell, not quoted (it does not start a formula)
        assert by_serial[text][1] == f"{text} model"
        assert by_serial[text][8].startswith(text)
    for payload in PAYLOADS:
        row = by_serial["'" + payload]  # the value kept, after the quote
        assert row[1] == f"'{payload} model"
        assert row[8].startswith("'" + payload)
        assert NUMBER.fullmatch(row[7])  # remapped rows: a number, not quoted
    counts = [r for r in rows if r[0] == "count"]
    assert counts and all(NUMBER.fullmatch(r[3]) for r in counts)  # counts stay numbers


def test_graded_sim_card_with_formula_identity(tmp_path: Path) -> None:
    """A sim card whose spec file gives a formula serial and model name, graded into a database."""
    spec = tmp_path / "evil.toml"
    spec.write_text(
        f'model = "{H100}"\n'
        'serial = "=HYPERLINK(\\"http://x\\",\\"y\\")"\n'
        "name = \"+cmd|' /C calc'!A0\"\n"
        "[faults]\n"
        "stuck_bits = [{ address = 0x1F000, bit = 3, value = 0 }]\n",
        encoding="utf-8",
    )
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    graded = invoke(
        "grade", "--quick", "--quiet", "--sim-card", str(spec), "--out", str(tmp_path / "o"),
        "--db", db,
    )  # fmt: skip
    assert graded.exit_code in (0, 1), graded.output  # 1: a card graded F
    result = invoke("fleet", "summary", "--db", db, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = _cells(result)
    _assert_no_formula(rows)
    worst = [r for r in rows if r[0] == "worst"]
    assert len(worst) == 1
    assert worst[0][4] == '\'=HYPERLINK("http://x","y")'
    assert worst[0][1] == "'+cmd|' /C calc'!A0"
    assert [r[1] for r in rows if r[0] == "count"] == ["'+cmd|' /C calc'!A0"]
