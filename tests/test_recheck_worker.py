"""`verify --recheck` never waits for ever (gpuhealth/measure/recheck_worker.py): a card whose
kernel never returns is killed at the watchdog, a Ctrl-C ends the re-check at once, an error
opening the card keeps its one line and exit code, and a re-check that ends is recheck_card's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from simkit import REPO, card_toml

from gpuhealth.errors import EXIT_BAD_CARD, EXIT_USAGE, GpuHealthError
from gpuhealth.measure.recheck import RECHECK_ITEMS
from gpuhealth.measure.recheck_worker import RecheckStop, recheck_in_worker
from gpuhealth.models import RunRecord, record_from_json

QUICK = REPO / "tests" / "data" / "current" / "sim-h100-quick.json"
SAME_CARD = 'serial = "SIM-H100-0001"'


def record() -> RunRecord:
    return record_from_json(QUICK.read_text(encoding="utf-8"), str(QUICK))


def spec(tmp_path: Path, faults: str = "") -> str:
    path = tmp_path / "card.toml"
    path.write_text(card_toml(faults, header=SAME_CARD), encoding="utf-8")
    return str(path)


@pytest.fixture
def short_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test may take 2 s of wall time: the child's pcie test takes well under that."""
    monkeypatch.setenv("GPUHEALTH_WATCHDOG_SCALE", "0")
    monkeypatch.setenv("GPUHEALTH_WATCHDOG_MARGIN_S", "2")


def test_a_recheck_that_ends_is_recheck_cards(tmp_path: Path) -> None:
    result = recheck_in_worker(record(), "sim", spec(tmp_path))
    assert [c.name for c in result.checks] == list(RECHECK_ITEMS)
    assert result.consistent, result.verdict
    assert {t.name for t in result.tests} >= {"pcie", "memtest", "fp32"}


@pytest.mark.usefixtures("short_watchdog")
@pytest.mark.parametrize("test", ["pcie", "memtest"])
def test_a_kernel_that_never_returns_is_killed_at_the_watchdog(tmp_path: Path, test: str) -> None:
    started = time.monotonic()
    result = recheck_in_worker(record(), "sim", spec(tmp_path, f'hang_at = "{test}"'))
    took_s = time.monotonic() - started
    assert took_s < 30, took_s
    why = (
        f"the card stopped answering: {test} made no progress in 2 s (a kernel that never "
        "returns); reset the GPU and check it again"
    )
    assert [(c.name, c.status, c.detail) for c in result.checks] == [
        (name, "unproven", why) for name in RECHECK_ITEMS
    ]
    assert not result.consistent and result.exit_code == EXIT_BAD_CARD


def test_a_stop_ends_the_recheck_at_once(tmp_path: Path) -> None:
    stop = RecheckStop()
    threading.Timer(3.0, stop.stop, args=(signal.SIGINT,)).start()
    started = time.monotonic()
    result = recheck_in_worker(record(), "sim", spec(tmp_path, 'hang_at = "pcie"'), stop)
    assert time.monotonic() - started < 10
    assert {c.status for c in result.checks} == {"unproven"}
    assert result.checks[0].detail.startswith("interrupted (Ctrl-C) during ")


def test_an_error_opening_the_card_keeps_its_line_and_exit_code(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-card.toml"
    with pytest.raises(GpuHealthError) as raised:
        recheck_in_worker(record(), "sim", str(missing))
    assert raised.value.exit_code == EXIT_USAGE
    assert "no-such-card.toml" in raised.value.one_line()


def test_verify_recheck_on_a_hung_card_ends_with_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {**os.environ, "GPUHEALTH_WATCHDOG_SCALE": "0", "GPUHEALTH_WATCHDOG_MARGIN_S": "2",
           "PYTHONPATH": str(REPO)}  # fmt: skip
    command = [sys.executable, "-m", "gpuhealth", "verify", str(QUICK), "--recheck", "--json",
               "--sim-card", spec(tmp_path, 'hang_at = "pcie"')]  # fmt: skip
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == EXIT_BAD_CARD, done.stderr
    checks = json.loads(done.stdout)["recheck"]["checks"]
    assert {c["status"] for c in checks} == {"unproven"}
    assert "pcie made no progress in 2 s" in checks[0]["detail"]


def test_ctrl_c_during_verify_recheck_ends_it_within_seconds(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "gpuhealth", "verify", str(QUICK), "--recheck",
               "--sim-card", spec(tmp_path, 'hang_at = "pcie"')]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)  # fmt: skip
    time.sleep(6.0)  # the child is in the never-ending pcie kernel by then
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert process.returncode == EXIT_BAD_CARD, err
    assert "stopping the re-check now" in err
    assert "interrupted (Ctrl-C) during " in out
