"""Several GPUs graded at once (gpuhealth/measure/fleet.py), and nothing lost when a run is cut
short: real worker processes, real signals (SIGKILL to a worker, SIGTERM to the grade), truncated
journals, and `gpuhealth resume`.

The slow simulated cards sleep real time per simulated second (`wall_time_scale`), so that a
signal can be sent while a card is in a known test; everything else runs at CPU speed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from simkit import EXAMPLES, H100, H200, card_toml, invoke, read_run

from gpuhealth.errors import EXIT_BAD_CARD, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE
from gpuhealth.judge.evidence import TELEMETRY_MIN_TEST_S
from gpuhealth.measure.fleet import PID_FILE, FleetEvent, Supervisor
from gpuhealth.measure.plan import WorkerSpec
from gpuhealth.measure.runner import journal
from gpuhealth.measure.stresstests import TEST_NAMES
from gpuhealth.models import RunRecord

TESTS = TEST_NAMES  # the suite, in the order a grade runs it (pcie first)
SLOW = 0.2  # real seconds per simulated second: a quick soak takes 15 s of wall time
TIMEOUT_S = 60.0


def journaled_tests(folder: Path) -> int:
    """Tests in the journal so far (0 while there is none or it is being replaced)."""
    try:
        return len(json.loads((folder / "run.json").read_text(encoding="utf-8"))["tests"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def spec_file(folder: Path, name: str, serial: str, scale: float = 0.0, faults: str = "") -> Path:
    path = folder / f"{name}.toml"
    header = f'serial = "{serial}"\nuuid = "GPU-{serial}"\nwall_time_scale = {scale}'
    path.write_text(card_toml(faults, H100, header), encoding="utf-8")
    return path


def start_grade(cwd: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "gpuhealth", "grade", "--quick", "--quiet", *args]
    return subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return process.returncode, out, err


def assert_kept_then_not_run(record: RunRecord, why: str) -> int:
    """Finished tests first, with their data; then tests not run that say why. Returns how many
    finished."""
    statuses = [t.status for t in record.tests]
    finished = statuses.index("not_run")
    assert [t.name for t in record.tests] == list(TESTS)
    assert all(s == "passed" for s in statuses[:finished]), statuses
    assert all(s == "not_run" for s in statuses[finished:]), statuses
    for test in record.tests[:finished]:
        # a test shorter than two sampling intervals can fall between samples (the sim's
        # bandwidth takes 0.05 s after the pcie test), as the evidence check allows
        assert test.metrics and (test.telemetry or test.duration_s < TELEMETRY_MIN_TEST_S)
    for test in record.tests[finished:]:
        assert why in (test.message or "")
    assert not record.complete and record.interrupted and why in record.interrupted
    assert record.grade is not None and record.grade.letter == "INCOMPLETE"
    return finished


# --- four GPUs at once ----------------------------------------------------------------------------


def test_four_gpus_graded_in_parallel_all_complete(tmp_path: Path) -> None:
    cards = [H100, H200, str(EXAMPLES / "stuck-bit.toml"), str(EXAMPLES / "slow-memory.toml")]
    specs = [
        WorkerSpec(
            gpu=i, backend="sim", sim_card=card, out_dir=tmp_path / f"gpu{i}", preset="quick"
        )
        for i, card in enumerate(cards)
    ]
    events: list[FleetEvent] = []
    supervisor = Supervisor(specs, events.append)
    outcomes = supervisor.run()
    assert [o.gpu for o in outcomes] == [0, 1, 2, 3]
    letters = []
    for outcome in outcomes:
        assert outcome.graded is not None, outcome.error
        record = read_run(outcome.graded.out_dir)
        assert record.complete and record.interrupted is None
        assert [t.name for t in record.tests] == list(TESTS)
        assert {p.name for p in outcome.graded.out_dir.iterdir()} == {
            "run.json",
            "report.html",
            "report.md",
        }
        letters.append(record.grade.letter if record.grade else None)
    assert letters[:3] == ["A", "A", "F"] and letters[3] not in ("A", "F", "INCOMPLETE")
    # one process per GPU, all at work at once: every GPU started a test before any finished
    pids = supervisor.pids()
    assert len(set(pids.values())) == 4 and os.getpid() not in pids.values()
    first_done = next(i for i, e in enumerate(events) if e.kind == "done")
    assert {e.gpu for e in events[:first_done] if e.kind == "start"} == {0, 1, 2, 3}


# --- a worker killed mid-soak -------------------------------------------------------------------


def test_a_worker_killed_mid_soak_leaves_its_card_incomplete_and_the_others_finish(
    tmp_path: Path,
) -> None:
    slow = spec_file(tmp_path, "slow", "SIM-SLOW-0003", SLOW)
    out = tmp_path / "runs"
    grade = start_grade(
        tmp_path, *["--sim-card", H100] * 3, "--sim-card", str(slow), "--out", str(out)
    )
    victim = out / "gpu3"
    # into the soak (15 s of wall time on this card) until its progress has been journaled once
    soak_journaled = len(TESTS)  # the soak is the last test: journaled once it has progress
    wait_for(lambda: journaled_tests(victim) == soak_journaled, "GPU 3's soak to journal it")
    pid = int((victim / PID_FILE).read_text(encoding="ascii"))
    os.kill(pid, signal.SIGKILL)
    code, stdout, _ = finish(grade)
    assert code == EXIT_INCOMPLETE, stdout
    for gpu in (0, 1, 2):
        record = read_run(out / f"gpu{gpu}")
        assert record.complete and record.grade and record.grade.letter == "A"
    killed = read_run(victim)
    # every test before the soak finished
    assert assert_kept_then_not_run(killed, "SIGKILL") == TESTS.index("soak")
    soak = killed.test("soak")  # and the soak's iterations until its last checkpoint
    iterations = soak.metric("iteration_tflops") if soak else None
    assert soak is not None and soak.telemetry and iterations and len(iterations.values) >= 1
    assert "what it measured until then" in (soak.message or "")
    assert "during soak" in (killed.interrupted or "")
    assert killed.identity.serial == "SIM-SLOW-0003"
    assert not (victim / PID_FILE).exists()
    assert "GPU 3" in stdout and "INCOMPLETE" in stdout


def test_a_hung_worker_is_killed_by_the_watchdog(tmp_path: Path) -> None:
    hung = spec_file(tmp_path, "hung", "SIM-HUNG-0001", faults='hang_at = "fp32"')
    spec = WorkerSpec(gpu=0, backend="sim", sim_card=str(hung), out_dir=tmp_path, preset="quick")
    supervisor = Supervisor([spec], watchdog_scale=0.0, watchdog_margin_s=3.0)
    (outcome,) = supervisor.run()
    assert outcome.graded is not None
    record = read_run(tmp_path)
    assert assert_kept_then_not_run(record, "watchdog") == TESTS.index(
        "fp32"
    )  # pcie, bandwidth, memtest
    assert "no progress in fp32" in (record.interrupted or "")


# --- SIGTERM ------------------------------------------------------------------------------------


def test_sigterm_to_a_parallel_grade_writes_every_record_incomplete(tmp_path: Path) -> None:
    cards = [spec_file(tmp_path, f"slow{i}", f"SIM-SLOW-000{i}", SLOW) for i in range(2)]
    out = tmp_path / "runs"
    args = [a for card in cards for a in ("--sim-card", str(card))]
    grade = start_grade(tmp_path, *args, "--out", str(out), "--json")
    wait_for(lambda: all(journaled_tests(out / f"gpu{i}") >= 2 for i in range(2)), "two tests each")
    grade.send_signal(signal.SIGTERM)
    code, stdout, stderr = finish(grade)
    assert code == EXIT_INCOMPLETE, stderr
    rows = json.loads(stdout)["cards"]
    assert [(r["gpu"], r["grade"]) for r in rows] == [(0, "INCOMPLETE"), (1, "INCOMPLETE")]
    for gpu in range(2):
        record = read_run(out / f"gpu{gpu}")
        assert assert_kept_then_not_run(record, "stopped by SIGTERM") >= 2
        assert not (out / f"gpu{gpu}" / PID_FILE).exists()


@pytest.fixture(scope="module")
def sigtermed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A single-card grade (one supervised worker) stopped by SIGTERM after 3 tests:
    (its run folder, its card spec)."""
    root = tmp_path_factory.mktemp("sigterm")
    card = spec_file(root, "slow", "SIM-TERM-0001", SLOW)
    out = root / "run"
    grade = start_grade(root, "--sim-card", str(card), "--out", str(out))
    wait_for(lambda: journaled_tests(out) >= 3, "three tests")
    grade.send_signal(signal.SIGTERM)
    code, _, stderr = finish(grade)
    assert code == EXIT_INCOMPLETE, stderr
    assert "stopped by SIGTERM" in stderr
    yield out, card


def test_sigterm_to_a_single_card_grade_writes_an_incomplete_record(
    sigtermed: tuple[Path, Path],
) -> None:
    out, _ = sigtermed
    record = read_run(out)
    assert assert_kept_then_not_run(record, "stopped by SIGTERM") >= 3
    assert record.finished_at is not None
    assert {p.name for p in out.iterdir()} == {"run.json", "report.html", "report.md"}


# --- resume -------------------------------------------------------------------------------------


def copy_run(sigtermed: tuple[Path, Path], tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(sigtermed[0], target)
    return target


def test_resume_finishes_the_missing_tests_and_grades(
    sigtermed: tuple[Path, Path], tmp_path: Path
) -> None:
    run = copy_run(sigtermed, tmp_path)
    before = read_run(run)
    kept = [t for t in before.tests if t.status == "passed"]
    # the same card (serial and UUID) at full speed
    fast = Path(sigtermed[1]).read_text(encoding="utf-8").replace(f"wall_time_scale = {SLOW}", "")
    card = tmp_path / "same-card.toml"
    card.write_text(fast, encoding="utf-8")
    result = invoke("resume", str(run), "--sim-card", str(card), "--quiet")
    assert result.exit_code == EXIT_OK, result.output
    after = read_run(run)
    assert after.complete and after.interrupted is None
    assert after.grade is not None and after.grade.letter == "A"
    assert [t.status for t in after.tests] == ["passed"] * len(TESTS)
    assert list(after.tests[: len(kept)]) == kept  # what was measured before is kept as it was
    resumed = after.tests[len(kept)]
    assert resumed.started_s > kept[-1].started_s + kept[-1].duration_s  # after a gap
    assert any(c.name == "resumed" for c in after.prechecks)
    assert after.started_at == before.started_at and after.run_id == before.run_id
    assert "grade A" in result.stdout
    again = invoke("resume", str(run), "--quiet")
    assert again.exit_code == EXIT_USAGE and "nothing to resume" in again.stderr


def test_resume_no_clear_leaves_the_memory_and_says_so(
    sigtermed: tuple[Path, Path], tmp_path: Path
) -> None:
    run = copy_run(sigtermed, tmp_path)
    fast = Path(sigtermed[1]).read_text(encoding="utf-8").replace(f"wall_time_scale = {SLOW}", "")
    card = tmp_path / "same-card.toml"
    card.write_text(fast, encoding="utf-8")
    result = invoke("resume", str(run), "--sim-card", str(card), "--quiet", "--no-clear")
    assert result.exit_code == EXIT_OK, result.output
    after = read_run(run)
    assert after.complete and after.memory_clear is not None
    assert after.memory_clear.status == "not_cleared"
    assert "--no-clear" in (after.memory_clear.note or "")
    assert after.grade is not None
    assert "memory-not-cleared" in {r.rule for r in after.grade.reasons}


def test_resume_refuses_another_card(sigtermed: tuple[Path, Path], tmp_path: Path) -> None:
    run = copy_run(sigtermed, tmp_path)
    before = (run / "run.json").read_bytes()
    # by default the record's sim model is opened: the built-in card has another serial
    for args in ([], ["--sim-card", H200]):
        result = invoke("resume", str(run), "--quiet", *args)
        assert result.exit_code == EXIT_USAGE
        assert "SIM-TERM-0001" in result.stderr and "another card" in result.stderr
        assert "Traceback" not in result.output
    assert (run / "run.json").read_bytes() == before


def test_resume_close_closes_a_journal_as_incomplete(
    sigtermed: tuple[Path, Path], tmp_path: Path
) -> None:
    run = copy_run(sigtermed, tmp_path)
    record = read_run(run)
    # a journal as a worker leaves it when it dies: no end, no grade, two tests
    raw = replace(
        record,
        tests=record.tests[:2],
        interrupted=None,
        finished_at=None,
        analysis=None,
        grade=None,
        signature=None,
    )
    journal(raw, run)
    result = invoke("resume", str(run), "--close")
    assert result.exit_code == EXIT_INCOMPLETE, result.output
    closed = read_run(run)
    assert assert_kept_then_not_run(closed, "closed by gpuhealth resume --close") == 2


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda text: text[: len(text) // 2], "not JSON"),
        (lambda text: text.replace('"schema_version": ', '"schema_version": 99'), "schema_version"),
        (lambda text: "", "empty file"),
        (lambda text: text.replace('"preset": "quick"', '"preset": 7'), "preset"),
    ],
    ids=["truncated", "schema", "empty", "wrong-type"],
)
def test_resume_reports_a_corrupt_journal(
    sigtermed: tuple[Path, Path],
    tmp_path: Path,
    damage: Callable[[str], str],
    expected: str,
) -> None:
    run = copy_run(sigtermed, tmp_path)
    path = run / "run.json"
    path.write_text(damage(path.read_text(encoding="utf-8")), encoding="utf-8")
    result = invoke("resume", str(run))
    assert result.exit_code == EXIT_USAGE
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gpuhealth: error: ")
    assert str(path) in lines[0] and expected in lines[0]


def test_gpus_selects_among_several_sim_cards(tmp_path: Path) -> None:
    result = invoke(
        "grade", "--quick", "--quiet", "--json", "--out", str(tmp_path), "--gpus", "1",
        "--sim-card", H100, "--sim-card", str(EXAMPLES / "stuck-bit.toml"),
    )  # fmt: skip
    assert result.exit_code == EXIT_BAD_CARD, result.output
    (row,) = json.loads(result.stdout)["cards"]
    assert row["gpu"] == 1 and row["grade"] == "F"
    bad = invoke("grade", "--quiet", "--gpus", "2", "--sim-card", H100, "--sim-card", H100)
    assert bad.exit_code == EXIT_USAGE and "--gpus" in bad.stderr
