"""Nothing lost, nothing hidden, nothing hangs: faults injected into real grades.

Signals at several moments (before the first test, mid-test, as a test ends; one GPU and several;
repeated), SIGKILL of a worker and of the grade itself, a kernel that never returns on one GPU of
several, a full disk, read-only folders, an unwritable config folder, and serials that try to
write outside the run folder. Each asserts the exit code, the records on disk, and that no
finished test was lost.

Signals go to real `python -m gpuhealth grade` processes. Slow simulated cards sleep real time per
simulated second (`wall_time_scale`) so that a signal lands in a known test; a hung card
(`hang_at`) never returns from its third kernel in that test. The watchdog's limits are shortened
through the environment (GPUHEALTH_WATCHDOG_SCALE, _MARGIN_S, GPUHEALTH_STOP_GRACE_S).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import Result
from simkit import H100, REPO, card_toml, invoke, read_run

from gpuhealth.errors import EXIT_BAD_CARD, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, InputError
from gpuhealth.judge.grading import load_policy
from gpuhealth.measure.backends.sim import SimBackend
from gpuhealth.measure.backends.simcards import load_card
from gpuhealth.measure.fleet import PID_FILE
from gpuhealth.measure.outcomes import (
    CardOutcome,
    exit_code_for_letters,
    outcomes_exit_code,
    summary_line,
)
from gpuhealth.measure.plan import WATCHDOG_MARGIN_S, WATCHDOG_SCALE
from gpuhealth.measure.runfolder import inside, safe_name
from gpuhealth.measure.runner import GradeOptions, grade_card
from gpuhealth.models import CardIdentity, RunRecord, record_from_json
from gpuhealth.presets import preset

TESTS = ("pcie", "bandwidth", "memtest", "fp32", "fp16_tensor", "gemm", "soak")
BEFORE_FP32 = TESTS.index("fp32")  # the tests a card hung in fp32 has finished
SLOW = 0.2  # real seconds per simulated second
TIMEOUT_S = 40.0
FAST_WATCHDOG = {
    "GPUHEALTH_WATCHDOG_SCALE": "0",
    "GPUHEALTH_WATCHDOG_MARGIN_S": "8",  # a healthy quick test ends well within it
    "GPUHEALTH_STOP_GRACE_S": "2",
}
INJECT = Path(__file__).resolve().parent / "faultinject"


# --- helpers ---------------------------------------------------------------------------------


def journaled(folder: Path) -> int:
    """Tests in the journal so far; -1 while there is none (or it is being replaced)."""
    try:
        return len(json.loads((folder / "run.json").read_text(encoding="utf-8"))["tests"])
    except (OSError, ValueError, KeyError):
        return -1


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def card(folder: Path, serial: str, scale: float = 0.0, faults: str = "") -> Path:
    path = folder / f"{serial}.toml"
    header = f'serial = "{serial}"\nuuid = "GPU-{serial}"\nwall_time_scale = {scale}'
    path.write_text(card_toml(faults, H100, header), encoding="utf-8")
    return path


def hung(folder: Path, serial: str) -> Path:
    return card(folder, serial, faults='hang_at = "fp32"')


def start(
    cwd: Path, *args: str, env: dict[str, str] | None = None, pythonpath: str = ""
) -> subprocess.Popen[str]:
    environment = {**os.environ, **FAST_WATCHDOG, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (pythonpath, str(REPO), environment.get("PYTHONPATH", "")) if p
    )
    command = [sys.executable, "-m", "gpuhealth", "grade", "--quick", "--quiet", "--no-db", *args]
    return subprocess.Popen(
        command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert "Traceback" not in err, err
    return process.returncode, out, err


def kept_then_not_run(record: RunRecord, why: str) -> int:
    """Finished tests first, with their data; then tests not run that say why. Returns how many
    finished. The record is closed INCOMPLETE, graded, with its reports beside it."""
    statuses = [t.status for t in record.tests]
    assert [t.name for t in record.tests] == list(TESTS)
    finished = statuses.index("not_run")
    assert all(s == "passed" for s in statuses[:finished]), statuses
    assert all(s == "not_run" for s in statuses[finished:]), statuses
    assert all(t.metrics for t in record.tests[:finished])
    assert all(why in (t.message or "") for t in record.tests[finished:])
    assert not record.complete and why in (record.interrupted or "")
    assert record.grade is not None and record.grade.letter == "INCOMPLETE"
    assert record.finished_at is not None
    return finished


def reports_written(folder: Path) -> bool:
    return {p.name for p in folder.iterdir()} == {"run.json", "report.html", "report.md"}


def one_error_line(result: Result | str) -> str:
    text = result if isinstance(result, str) else result.stderr
    errors = [line for line in text.splitlines() if line.startswith("gpuhealth: error: ")]
    assert len(errors) == 1 and "Traceback" not in text, text
    return errors[0]


# --- signals: one GPU, at several moments ----------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "tests_before", "sig", "why"),
    [
        ("before the first test", 0, signal.SIGINT, "interrupted (Ctrl-C)"),
        ("mid-test", 2, signal.SIGTERM, "stopped by SIGTERM"),
        ("as a test ends", 1, signal.SIGHUP, "stopped by SIGHUP"),
    ],
)
def test_a_signal_ends_a_single_card_grade_with_every_finished_test(
    tmp_path: Path, moment: str, tests_before: int, sig: signal.Signals, why: str
) -> None:
    out = tmp_path / "run"
    grade = start(tmp_path, "--sim-card", str(card(tmp_path, "SIM-SIG-1", SLOW)), "--out", str(out))
    wait_for(lambda: journaled(out) >= tests_before, f"{tests_before} tests ({moment})")
    grade.send_signal(sig)
    sent = time.monotonic()
    code, _, err = finish(grade)
    assert time.monotonic() - sent < 10, "a signal must end the run within seconds"
    assert code == EXIT_INCOMPLETE, err
    record = read_run(out)
    assert kept_then_not_run(record, why) >= tests_before
    assert "before " in (record.interrupted or "") or "during " in (record.interrupted or "")
    assert reports_written(out)


# --- repeated signals: a second one stops at once, reports written ----------------------------


def test_a_second_ctrl_c_stops_a_hung_single_card_at_once_with_its_reports(tmp_path: Path) -> None:
    out = tmp_path / "run"
    grade = start(tmp_path, "--sim-card", str(hung(tmp_path, "SIM-HANG-1")), "--out", str(out),
                  env={"GPUHEALTH_WATCHDOG_MARGIN_S": "60"})  # fmt: skip
    wait_for(lambda: journaled(out) == BEFORE_FP32, "the tests before fp32")
    time.sleep(0.5)  # fp32 is hung now: the first Ctrl-C cannot stop it
    grade.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert grade.poll() is None
    grade.send_signal(signal.SIGINT)
    sent = time.monotonic()
    code, _, err = finish(grade)
    assert time.monotonic() - sent < 10
    assert code == EXIT_INCOMPLETE, err
    record = read_run(out)
    assert kept_then_not_run(record, "interrupted (Ctrl-C)") == BEFORE_FP32
    assert "second signal" in (record.interrupted or "")
    assert reports_written(out)


def test_two_sigterms_stop_a_multi_gpu_grade_at_once(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    cards = [hung(tmp_path, "SIM-HANG-2"), card(tmp_path, "SIM-SLOW-2", SLOW)]
    args = [a for c in cards for a in ("--sim-card", str(c))]
    patient = {"GPUHEALTH_WATCHDOG_MARGIN_S": "60", "GPUHEALTH_STOP_GRACE_S": "60"}
    grade = start(tmp_path, *args, "--out", str(out), "--json", env=patient)
    wait_for(
        lambda: journaled(out / "gpu0") == BEFORE_FP32 and journaled(out / "gpu1") >= 1, "progress"
    )
    time.sleep(0.3)
    grade.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    grade.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    code, stdout, err = finish(grade)
    assert time.monotonic() - sent < 10
    assert code == EXIT_INCOMPLETE, err
    summary = json.loads(stdout)["summary"]
    assert summary == {
        "cards": 2,
        "grades": {"INCOMPLETE": 2},
        "line": "2 cards: 2 INCOMPLETE",
        "exit_code": EXIT_INCOMPLETE,
    }
    assert kept_then_not_run(read_run(out / "gpu0"), "stopped by SIGTERM") == BEFORE_FP32
    assert kept_then_not_run(read_run(out / "gpu1"), "stopped by SIGTERM") >= 1
    for gpu in (0, 1):
        assert reports_written(out / f"gpu{gpu}")


# --- SIGKILL: of the worker, of the grade itself ----------------------------------------------


def test_sigkill_of_a_single_cards_worker_leaves_an_incomplete_record(tmp_path: Path) -> None:
    out = tmp_path / "run"
    grade = start(
        tmp_path, "--sim-card", str(card(tmp_path, "SIM-KILL-1", SLOW)), "--out", str(out)
    )
    wait_for(lambda: journaled(out) >= 2 and (out / PID_FILE).exists(), "two tests")
    os.kill(int((out / PID_FILE).read_text(encoding="ascii")), signal.SIGKILL)
    code, stdout, err = finish(grade)
    assert code == EXIT_INCOMPLETE, err
    assert kept_then_not_run(read_run(out), "SIGKILL") >= 2
    assert reports_written(out) and "grade INCOMPLETE" in stdout


def worker_gone(folder: Path) -> bool:
    return not (folder / PID_FILE).exists() and read_run(folder).finished_at is not None


@pytest.mark.parametrize("stuck", [False, True], ids=["working", "hung-kernel"])
def test_a_worker_whose_grade_is_sigkilled_stops_itself(tmp_path: Path, stuck: bool) -> None:
    out = tmp_path / "run"
    spec = hung(tmp_path, "SIM-ORPHAN") if stuck else card(tmp_path, "SIM-ORPHAN", SLOW)
    grade = start(tmp_path, "--sim-card", str(spec), "--out", str(out),
                  env={"GPUHEALTH_WATCHDOG_MARGIN_S": "60"})  # fmt: skip
    wait_for(lambda: journaled(out) >= 2 and (out / PID_FILE).exists(), "two tests")
    time.sleep(0.3)
    grade.kill()
    grade.communicate(timeout=TIMEOUT_S)
    wait_for(lambda: worker_gone(out), "the orphaned worker to close its record", 15)
    record = read_run(out)
    assert kept_then_not_run(record, "the supervising gpuhealth process died") >= 2
    assert reports_written(out)


# --- a kernel that never returns on one GPU of several ------------------------------------------


def test_a_hung_kernel_on_one_gpu_of_three_is_incomplete_the_others_finish(
    tmp_path: Path,
) -> None:
    out = tmp_path / "runs"
    cards = [H100, str(hung(tmp_path, "SIM-HANG-3")), H100]
    args = [a for c in cards for a in ("--sim-card", c)]
    began = time.monotonic()
    code, stdout, err = finish(start(tmp_path, *args, "--out", str(out)))
    elapsed = time.monotonic() - began
    assert code == EXIT_INCOMPLETE, err
    record = read_run(out / "gpu1")
    assert kept_then_not_run(record, "watchdog") == BEFORE_FP32
    assert "no progress in fp32" in (record.interrupted or "")
    assert reports_written(out / "gpu1")
    for gpu in (0, 2):
        assert read_run(out / f"gpu{gpu}").complete
    assert stdout.rstrip().splitlines()[-1] == "3 cards: 2 A, 1 INCOMPLETE"
    # the limit is budget x scale + margin (here 0 x 20 s + 8 s) after the test started
    assert elapsed < 40, elapsed
    assert (WATCHDOG_SCALE, WATCHDOG_MARGIN_S) == (1.5, 60.0)  # the default: budget x1.5 + 60 s


def test_resume_runs_under_the_watchdog_and_stores_like_grade(tmp_path: Path) -> None:
    out = tmp_path / "run"
    stuck = hung(tmp_path, "SIM-RESUME")
    code, _, err = finish(start(tmp_path, "--sim-card", str(stuck), "--out", str(out)))
    assert code == EXIT_INCOMPLETE, err
    env = {**os.environ, **FAST_WATCHDOG, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "gpuhealth", "resume", str(out), "--quiet", "--no-db",
               "--sim-card", str(stuck)]  # fmt: skip
    again = subprocess.run(
        command, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert again.returncode == EXIT_INCOMPLETE, again.stderr  # hung again: the watchdog ends it
    assert kept_then_not_run(read_run(out), "watchdog") == BEFORE_FP32
    healthy = card(tmp_path, "SIM-RESUME")  # the same card (serial, UUID), healed
    db = tmp_path / "results.sqlite"
    result = invoke("resume", str(out), "--sim-card", str(healthy), "--quiet", "--json",
                    "--db", str(db))  # fmt: skip
    assert result.exit_code == EXIT_OK, result.output
    answer = json.loads(result.stdout)
    assert answer["summary"]["line"] == "1 card: 1 A"
    assert answer["cards"][0]["grade"] == "A" and read_run(out).complete
    history = invoke("history", "SIM-RESUME", "--db", str(db), "--json")
    assert history.exit_code == 0 and "SIM-RESUME" in history.stdout


# --- the environment: full disk, read-only folders, unwritable config --------------------------


def test_a_full_disk_mid_run_is_exit_3_and_the_measurements_are_kept(tmp_path: Path) -> None:
    out, rescue = tmp_path / "run", tmp_path / "rescue"
    env = {
        "GPUHEALTH_TEST_FULL_DISK": str(out),
        "GPUHEALTH_TEST_FULL_AFTER": "3",  # the first journal, bandwidth's and memtest's
        "GPUHEALTH_RESCUE_DIR": str(rescue),
    }
    grade = start(tmp_path, "--sim-card", str(card(tmp_path, "SIM-FULL")), "--out", str(out),
                  env=env, pythonpath=str(INJECT))  # fmt: skip
    code, _, err = finish(grade)
    assert code == EXIT_INCOMPLETE, err
    line = one_error_line(err)
    assert "No space left on device" in line and str(out) in line
    (kept,) = rescue.glob("*/run.json")
    assert f"kept in {kept}" in line
    record = record_from_json(kept.read_text(encoding="utf-8"))
    assert [t.status for t in record.tests[:3]] == ["passed"] * 3  # fp32 too: nothing lost
    assert "No space left on device" in (record.interrupted or "")
    assert [t.status for t in read_run(out).tests] == [
        "passed"
    ] * 2  # the journal before the disk filled


def test_a_read_only_out_folder_is_exit_3_before_measuring() -> None:
    result = invoke("grade", "--demo", "--quick", "--quiet", "--out", "/sys/gpuhealth-test-run")
    assert result.exit_code == EXIT_INCOMPLETE
    line = one_error_line(result)
    assert "/sys/gpuhealth-test-run" in line and "nothing was measured" in line


def test_an_unwritable_working_folder_is_exit_3_before_measuring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir("/sys")  # the default run folder: ./gpuhealth-runs
    result = invoke("grade", "--demo", "--quick", "--quiet")
    assert result.exit_code == EXIT_INCOMPLETE
    assert "gpuhealth-runs" in one_error_line(result)


def test_an_unwritable_database_keeps_the_cards_exit_code_and_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default database under an unwritable config folder: one warning line that says where
    the records are; the exit code stays the card's (0 for the healthy demo card): a script must
    not read a database problem as a verdict on the card."""
    monkeypatch.setenv("GPUHEALTH_CONFIG_DIR", "/sys/gpuhealth-config")
    monkeypatch.delenv("GPUHEALTH_DB", raising=False)
    out = tmp_path / "run"
    result = invoke("grade", "--demo", "--quick", "--quiet", "--out", str(out))
    assert result.exit_code == EXIT_OK, result.output
    warnings = [line for line in result.stderr.splitlines() if "results database" in line]
    assert len(warnings) == 1 and f"kept in {out}" in warnings[0], result.stderr
    assert warnings[0].startswith("gpuhealth: warning: ")
    assert read_run(out).complete and reports_written(out)


# --- paths built from card data -----------------------------------------------------------------


def test_safe_names() -> None:
    assert safe_name("20260101T000000-SIM-H100-0001") == "20260101T000000-SIM-H100-0001"
    evil = ["../../x", "a/b", "a_b", ".hidden", "..", "", "a\\b", "é", "x" * 500, "a\x00b"]
    names = [safe_name(s) for s in evil]
    assert len(set(names)) == len(names)  # sanitising never makes two serials collide
    for name in names:
        assert name and not name.startswith(".") and len(name) <= 96
        assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name), name
    assert names[2] == "a_b" and names[1].startswith("a_b-")


def test_a_folder_that_leads_elsewhere_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(InputError, match="expected a folder under"):
        inside(root, "escape")


class _Serial:
    """A simulated card whose NVML serial is whatever the test says."""

    def __init__(self, inner: SimBackend, serial: str) -> None:
        self._inner, self._serial = inner, serial

    def identity(self) -> CardIdentity:
        return replace(self._inner.identity(), serial=self._serial)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


@pytest.fixture
def options() -> Iterator[GradeOptions]:
    yield GradeOptions(preset("quick"), load_policy(None), None, None)


def test_card_serials_never_write_outside_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: GradeOptions
) -> None:
    monkeypatch.chdir(tmp_path)
    folders = []
    for serial in ("../../x", "a/b", "a_b", "/etc/passwd", ".."):
        backend = _Serial(SimBackend(load_card(H100)), serial)
        graded = grade_card(backend, options)  # type: ignore[arg-type]
        folders.append(graded.out_dir.resolve())
        assert read_run(graded.out_dir).identity.serial == serial
    runs = (tmp_path / "gpuhealth-runs").resolve()
    assert all(f.parent == runs for f in folders) and len(set(folders)) == len(folders)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpuhealth-runs"]


# --- refusals before anything is measured -------------------------------------------------------


def test_expect_gpus_fails_before_measuring_and_names_the_missing(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = invoke("grade", "--quick", "--quiet", "--sim-card", H100, "--sim-card", H100,
                    "--expect-gpus", "4", "--out", str(out))  # fmt: skip
    assert result.exit_code == EXIT_INCOMPLETE
    assert "missing: GPU 2, GPU 3" in one_error_line(result)
    assert not out.exists()


def test_an_existing_record_is_never_overwritten_without_force(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    (out / "gpu1").mkdir(parents=True)
    (out / "gpu1" / "report.html").write_text("a signed report", encoding="utf-8")
    args = ("grade", "--quick", "--quiet", "--no-db", "--sim-card", H100, "--sim-card", H100)
    result = invoke(*args, "--out", str(out))
    assert result.exit_code == EXIT_USAGE
    assert (
        str(out / "gpu1" / "report.html") in one_error_line(result) and "--force" in result.stderr
    )
    assert (out / "gpu1" / "report.html").read_text(encoding="utf-8") == "a signed report"
    assert not (out / "gpu0").exists()
    forced = invoke(*args, "--out", str(out), "--force")
    assert forced.exit_code == EXIT_OK, forced.output
    assert read_run(out / "gpu1").complete


# --- exit codes across cards --------------------------------------------------------------------


def test_exit_code_precedence_incomplete_beats_bad_card_beats_ok() -> None:
    assert exit_code_for_letters(["A", "B", "C"]) == EXIT_OK
    assert exit_code_for_letters(["A", "D"]) == EXIT_BAD_CARD
    assert exit_code_for_letters(["F", "INCOMPLETE", "A"]) == EXIT_INCOMPLETE
    assert exit_code_for_letters([]) == EXIT_INCOMPLETE  # nothing graded is never a pass
    lone = CardOutcome(0, None, "bad spec", EXIT_USAGE)
    assert outcomes_exit_code([lone]) == EXIT_USAGE
    assert outcomes_exit_code([lone, replace(lone, gpu=1)]) == EXIT_INCOMPLETE
    letters = ["A"] * 6 + ["D", "INCOMPLETE"]
    assert summary_line(letters) == "8 cards: 6 A, 1 D, 1 INCOMPLETE"
