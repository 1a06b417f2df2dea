"""The issue's "Done when", tried as a new user would, on the simulated card and with no GPU:
through the command line (click's CliRunner on gpuhealth.cli.main), reading what it writes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import fake_pynvml
import pytest
from simkit import EXAMPLES, CliRun, GradedRuns, invoke

from gpuhealth import __version__
from gpuhealth.cli import main
from gpuhealth.errors import EXIT_BAD_CARD, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE
from gpuhealth.judge.grading import DEFAULT_POLICY
from gpuhealth.measure.backends import nvml
from gpuhealth.models import RunRecord, record_from_json

REPORT_FILES = {"run.json", "report.html", "report.md"}
MEASURED_BEFORE_SOAK = ("bandwidth", "memtest", "fp32", "fp16_tensor", "gemm")


def record_of(run: CliRun) -> RunRecord:
    path = run.out_dir / "run.json"
    return record_from_json(path.read_text(encoding="utf-8"), str(path))


def reasons(record: RunRecord) -> list[Any]:
    assert record.grade is not None
    return list(record.grade.reasons)


def one_error_line(stderr: str) -> str:
    """stderr holds exactly one line, gpuhealth's error line, and no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("gpuhealth: error: ")
    return lines[0]


# --- a healthy card: the README's first command ---------------------------------------------------


def test_healthy_demo_is_graded_A(demo_run: CliRun) -> None:
    assert demo_run.exit_code == EXIT_OK, demo_run.result.output
    assert demo_run.wall_s < 30.0
    record = record_of(demo_run)
    assert record.grade is not None and record.grade.letter == "A"
    assert record.complete and record.interrupted is None
    assert record.preset == "standard" and record.backend == "sim"
    assert [t.name for t in record.tests] == ["pcie", *MEASURED_BEFORE_SOAK, "soak"]
    assert all(t.status == "passed" for t in record.tests)
    assert all(t.telemetry for t in record.tests)  # telemetry sampled during every test
    assert record.analysis is not None and record.analysis.profile is not None
    verdicts = {f"{c.test}.{c.metric}": c.verdict for c in record.analysis.comparisons}
    assert all(v in ("ok", "high", "no_reference") for v in verdicts.values()), verdicts
    for judged in ("bandwidth.triad_gbs", "memtest.pass_gbs", "fp32.fp32_tflops"):
        assert verdicts[judged] == "ok"
    assert "grade A" in demo_run.result.stdout and "[SIMULATED]" in demo_run.result.stdout


def test_healthy_demo_writes_its_reports_and_nothing_else(demo_run: CliRun) -> None:
    assert {p.name for p in demo_run.out_dir.iterdir()} == REPORT_FILES  # no temp files left
    record = record_of(demo_run)
    html = (demo_run.out_dir / "report.html").read_text(encoding="utf-8")
    md = (demo_run.out_dir / "report.md").read_text(encoding="utf-8")
    serial = record.identity.serial
    assert serial and serial in html and serial in md
    assert "<svg" in html  # the soak chart, inline
    assert not re.search(r"""(src|href)=["']https?://""", html)  # self-contained
    assert demo_run.out_dir.name == record.run_id


# --- faulty cards -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stuck(graded: GradedRuns) -> CliRun:
    return graded.grade("--sim-card", str(EXAMPLES / "stuck-bit.toml"))


def test_stuck_bit_is_F_and_names_address_and_bit(stuck: CliRun) -> None:
    assert stuck.exit_code == EXIT_BAD_CARD
    record = record_of(stuck)
    assert record.grade is not None and record.grade.letter == "F"
    memory = [r for r in reasons(record) if r.rule == "memory-errors"]
    assert len(memory) == 1 and memory[0].grade == "F"
    assert re.search(r"address 0x1F000 bit\(s\) 3\b", memory[0].message), memory[0].message
    assert "0x1F000" in stuck.result.stdout
    assert record.identity.serial == "SIM-STUCK-0001"


@pytest.fixture(scope="module")
def slow(graded: GradedRuns) -> CliRun:
    return graded.grade("--sim-card", str(EXAMPLES / "slow-memory.toml"))


def test_slow_memory_is_not_A_and_says_why(slow: CliRun) -> None:
    """One reason for one cause (the memory), in the buyer's words, with the statistics beside."""
    assert slow.exit_code in (EXIT_OK, EXIT_BAD_CARD)
    record = record_of(slow)
    assert record.grade is not None and record.grade.letter == "C"
    deficits = [r for r in reasons(record) if r.rule.startswith("performance-deficit")]
    assert len(deficits) == 1, deficits
    reason = deficits[0]
    # the buyer's words in the message, the statistics in the detail
    found = re.fullmatch(
        r"memory bandwidth (\d+)% below healthy NVIDIA H100 SXM5 80GB cards", reason.message
    )
    assert found, reason.message
    bound = re.match(r"at least (\d+)% below \(one-sided 95%\); 6 metric\(s\)", reason.detail or "")
    assert bound, reason.detail
    assert int(found.group(1)) == pytest.approx(15, abs=2)  # the card's fault is 0.85x
    assert 7 <= int(bound.group(1)) <= int(found.group(1))
    assert reason.value is not None and reason.value.startswith("-1")
    assert reason.reference is not None and "healthy spread 2.0%" in reason.reference
    assert record.analysis is not None
    memory = next(s for s in record.analysis.subsystems if s.name == "memory")
    assert memory.verdict == "low" and "bandwidth.triad_gbs" in memory.metrics
    assert "memory bandwidth" in slow.result.stdout


@pytest.fixture(scope="module")
def lost(graded: GradedRuns) -> CliRun:
    return graded.grade("--sim-card", str(EXAMPLES / "lost-in-soak.toml"))


def test_card_lost_in_soak_is_incomplete_and_keeps_what_was_measured(lost: CliRun) -> None:
    assert lost.exit_code == EXIT_INCOMPLETE
    assert {p.name for p in lost.out_dir.iterdir()} == REPORT_FILES
    record = record_of(lost)
    assert record.grade is not None and record.grade.letter == "INCOMPLETE"
    assert not record.complete
    assert record.interrupted is not None and "soak" in record.interrupted
    for name in MEASURED_BEFORE_SOAK:
        test = record.test(name)
        assert test is not None and test.status == "passed", name
        assert test.metrics and all(m.values for m in test.metrics)
        assert test.verifications and all(v.passed for v in test.verifications)
    soak = record.test("soak")
    assert soak is not None and soak.status == "error"
    assert "fallen off the bus" in (soak.message or "")
    assert record.counters_after is None  # the card was gone
    # one reason per cause: the lost card, with the unfinished soak told as part of it
    lost_reason = next(r for r in reasons(record) if r.rule == "xid-card-lost")
    assert lost_reason.grade == "INCOMPLETE"
    assert any(a.startswith("incomplete: soak: error") for a in lost_reason.also)


def test_busy_card_is_refused(graded: GradedRuns) -> None:
    run = graded.grade("--sim-card", str(EXAMPLES / "busy.toml"), "--quick")
    assert run.exit_code == EXIT_INCOMPLETE
    record = record_of(run)
    assert record.grade is not None and record.grade.letter == "INCOMPLETE"
    assert all(t.status == "not_run" for t in record.tests)
    assert [p.status for p in record.prechecks] == ["fail"]
    assert "31337" in record.prechecks[0].message and "--allow-busy" in record.prechecks[0].message
    assert [p.pid for p in record.processes] == [31337]


def test_busy_card_with_allow_busy_is_measured(graded: GradedRuns) -> None:
    run = graded.grade("--sim-card", str(EXAMPLES / "busy.toml"), "--quick", "--allow-busy")
    record = record_of(run)
    assert all(t.status == "passed" for t in record.tests)
    assert [p.status for p in record.prechecks] == ["warn"]
    assert record.grade is not None and record.grade.letter != "INCOMPLETE"
    assert run.exit_code == EXIT_OK
    memtest = record.test("memtest")
    assert memtest is not None  # the other process's 4 GiB were left alone
    assert float(memtest.parameters["tested_bytes"]) < 85_520_809_984 - (4 << 30)
    # Measured anyway, but disclosed: the busy card, the untested and the uncleared memory are
    # reasons (the clear cannot reach the other process's memory either).
    assert record.grade.letter == "B"
    assert {r.rule for r in reasons(record)} == {
        "other-processes",
        "memtest-coverage-low",
        "memory-not-cleared",
    }


def test_hot_card_is_stopped_by_the_thermal_guard(
    graded: GradedRuns, write_card: Callable[..., Path]
) -> None:
    run = graded.grade("--sim-card", str(write_card("thermal_resistance_scale = 1.9")), "--quick")
    record = record_of(run)
    assert record.grade is not None and record.grade.letter == "D"
    assert "thermal-guard" in {r.rule for r in reasons(record)}
    soak = record.analysis.soak if record.analysis else None
    assert soak is not None and soak.stopped_early is not None
    # The guard (slowdown 89 °C - 3) looks every ~0.1 s: the card never reaches slowdown.
    assert soak.max_temperature_c is not None and 86 <= soak.max_temperature_c < 89


def test_degraded_link_is_D_and_exits_1(
    graded: GradedRuns, write_card: Callable[..., Path]
) -> None:
    run = graded.grade("--sim-card", str(write_card("pcie_width = 8")), "--quick")
    assert run.exit_code == EXIT_BAD_CARD
    record = record_of(run)
    assert record.grade is not None and record.grade.letter == "D"
    assert [r.rule for r in reasons(record)] == ["pcie-link-degraded"]


# --- no GPU ------------------------------------------------------------------------------------


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one with no GPU: no NVML library, no CuPy (even where both exist)."""
    monkeypatch.setattr(nvml, "_load_pynvml", fake_pynvml.library_missing().load)
    monkeypatch.setitem(sys.modules, "cupy", None)


@pytest.mark.usefixtures("no_gpu")
@pytest.mark.parametrize("backend", [["--backend", "cuda"], []], ids=["cuda", "auto"])
def test_grade_without_a_gpu(tmp_path: Path, backend: list[str]) -> None:
    out = tmp_path / "out"
    result = invoke("grade", *backend, "--quiet", "--out", str(out))
    assert result.exit_code == EXIT_INCOMPLETE
    line = one_error_line(result.stderr)
    assert "NVML library" in line and "install the NVIDIA driver" in line  # what, and the fix
    assert "--demo" in line  # and how to try gpuhealth anyway
    assert result.stdout == ""
    assert not out.exists()


def test_grade_with_nvml_but_without_cupy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nvml, "_load_pynvml", fake_pynvml.healthy_h100().load)
    monkeypatch.setitem(sys.modules, "cupy", None)
    out = tmp_path / "out"
    result = invoke("grade", "--backend", "cuda", "--quiet", "--out", str(out))
    assert result.exit_code == EXIT_INCOMPLETE
    line = one_error_line(result.stderr)
    assert "CuPy" in line and "pip install" in line
    assert not out.exists()


@pytest.mark.usefixtures("no_gpu")
def test_devices_without_a_gpu() -> None:
    result = invoke("devices", "--backend", "cuda")
    assert result.exit_code == EXIT_INCOMPLETE
    assert "NVML library" in one_error_line(result.stderr)


# --- bad input files: exit 2, one line, nothing written -----------------------------------------


@pytest.mark.parametrize(
    ("faults", "field", "words"),
    [
        ("bandwith_scale = 0.85", "faults.bandwith_scale", "did you mean 'bandwidth_scale'"),
        ("bandwidth_scale = = 0.85", "", "not valid TOML"),
        ('lost_at = "soaking"', "faults.lost_at", "soak"),
        ("stuck_bits = [{ address = 0x1F001, bit = 3, value = 0 }]", "faults.stuck_bits.0", "4"),
    ],
)
def test_bad_sim_card(
    tmp_path: Path, write_card: Callable[..., Path], faults: str, field: str, words: str
) -> None:
    card = write_card(faults, name="bad-card.toml")
    out = tmp_path / "out"
    result = invoke("grade", "--sim-card", str(card), "--quiet", "--out", str(out))
    assert result.exit_code == EXIT_USAGE
    line = one_error_line(result.stderr)
    assert str(card) in line and field in line and words in line
    assert not out.exists()


def test_bad_policy(tmp_path: Path) -> None:
    policy = tmp_path / "shop-policy.toml"
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    policy.write_text(text.replace("min_measure = 1.5", "min_measur = 1.5"), encoding="utf-8")
    out = tmp_path / "out"
    result = invoke("grade", "--demo", "--quiet", "--policy", str(policy), "--out", str(out))
    assert result.exit_code == EXIT_USAGE
    line = one_error_line(result.stderr)
    assert str(policy) in line and "min_measur" in line and "did you mean 'min_measure'" in line
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["grade", "--demo", "--gpus", "3"],
        ["grade", "--demo", "--gpus", "x"],
        ["grade", "--sim-card", "h100-nonexistent"],
        ["grade", "--demo", "--profile", "/nonexistent/profile.toml"],
    ],
)
def test_bad_values_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    out = tmp_path / "out"
    result = invoke(*args, "--quiet", "--out", str(out))
    assert result.exit_code == EXIT_USAGE
    one_error_line(result.stderr)
    assert not out.exists()


def test_click_usage_error_is_exit_2() -> None:
    result = invoke("grade", "--preset", "forever")
    assert result.exit_code == EXIT_USAGE
    assert "Traceback" not in result.output


# --- stored records re-rendered byte for byte ---------------------------------------------------


@pytest.fixture(scope="module")
def runs(demo_run: CliRun, stuck: CliRun, lost: CliRun) -> dict[str, CliRun]:
    return {"healthy": demo_run, "stuck": stuck, "lost": lost}


@pytest.mark.parametrize("which", ["healthy", "stuck", "lost"])
@pytest.mark.parametrize(
    ("fmt", "name"), [("html", "report.html"), ("md", "report.md"), ("json", "run.json")]
)
def test_report_reproduces_byte_for_byte(
    runs: dict[str, CliRun], which: str, fmt: str, name: str
) -> None:
    folder = runs[which].out_dir
    result = invoke("report", str(folder / "run.json"), "--format", fmt)
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == (folder / name).read_bytes()


def test_report_to_a_file(demo_run: CliRun, tmp_path: Path) -> None:
    target = tmp_path / "again.html"
    result = invoke("report", str(demo_run.out_dir / "run.json"), "-o", str(target))
    assert result.exit_code == 0 and result.stdout == ""
    assert target.read_bytes() == (demo_run.out_dir / "report.html").read_bytes()


def test_report_regrade_gives_the_same_grade(runs: dict[str, CliRun]) -> None:
    for run in runs.values():
        result = invoke("report", str(run.out_dir / "run.json"), "--format", "json", "--regrade")
        assert result.exit_code == 0
        again = record_from_json(result.stdout)
        stored = record_of(run)
        assert again.grade == stored.grade
        assert again.analysis == stored.analysis


def test_report_of_a_bad_record(tmp_path: Path, demo_run: CliRun) -> None:
    data = json.loads((demo_run.out_dir / "run.json").read_text(encoding="utf-8"))
    data["tests"][0]["status"] = "fine"
    bad = tmp_path / "run.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    result = invoke("report", str(bad))
    assert result.exit_code == EXIT_USAGE
    line = one_error_line(result.stderr)
    assert str(bad) in line and "tests.0.status" in line
    missing = invoke("report", str(tmp_path / "absent.json"))
    assert missing.exit_code == EXIT_USAGE
    one_error_line(missing.stderr)
    policy_alone = invoke("report", str(demo_run.out_dir / "run.json"), "--policy", str(bad))
    assert policy_alone.exit_code == EXIT_USAGE


# --- machine-readable output ---------------------------------------------------------------------


def test_grade_json_output(graded: GradedRuns) -> None:
    run = graded.grade("--demo", "--quick", "--json")
    assert run.exit_code == EXIT_OK
    (card,) = json.loads(run.result.stdout)["cards"]
    assert card["grade"] == "A" and card["backend"] == "sim" and card["complete"] is True
    assert card["serial"] == "SIM-H100-0001" and card["gpu"] == 0
    assert Path(card["out_dir"]) == run.out_dir
    assert card["reasons"][0]["rule"] == "all-clear"
    assert record_of(run).run_id == card["run_id"]


def test_devices_json(write_card: Callable[..., Path]) -> None:
    result = invoke("devices", "--backend", "sim", "--json")
    assert result.exit_code == 0
    (card,) = json.loads(result.stdout)
    assert card["backend"] == "sim" and card["name"] == "NVIDIA H100 80GB HBM3"
    assert card["memory_total_bytes"] > 79 * 2**30 and card["sim_card"] == "h100-sxm5-80gb"
    path = write_card(model="h200-sxm-141gb", header='serial = "SIM-XYZ"')
    (other,) = json.loads(invoke("devices", "--sim-card", str(path), "--json").stdout)
    assert other["serial"] == "SIM-XYZ" and other["sim_card"] == "h200-sxm-141gb"
    plain = invoke("devices", "--backend", "sim")
    assert plain.exit_code == 0 and "SIM-H100-0001" in plain.stdout


# --- help and version ----------------------------------------------------------------------------


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found: list[tuple[tuple[str, ...], Any]] = [(path, group)]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


def test_every_command_has_help() -> None:
    commands = _commands(main)
    assert {p for p, _ in commands} >= {(), ("devices",), ("grade",), ("report",)}
    for path, command in commands:
        assert (command.help or "").strip(), f"{' '.join(path) or 'main'} has no help text"
        result = invoke(*path, "--help")
        assert result.exit_code == 0
        assert result.stdout.startswith("Usage: ")
        assert command.help.strip().splitlines()[0] in result.stdout
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{' '.join(path)} {param.opts[0]} has no help text"


def test_python_dash_m_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gpuhealth", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gpuhealth, version {__version__}"
