"""Helpers the test files share (imported by name; fixtures live in conftest.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner, Result

from gpuhealth.cli import main
from gpuhealth.measure.backends.sim import SimBackend
from gpuhealth.measure.stresstests.base import Executed, StressTest, TestContext, execute
from gpuhealth.models import RunRecord, record_from_json
from gpuhealth.presets import PRESETS

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "simcards"
REFERENCE = REPO / "gpuhealth" / "data" / "reference"
H100 = "h100-sxm5-80gb"
H200 = "h200-sxm-141gb"


def card_toml(faults: str = "", model: str = H100, header: str = "") -> str:
    """A card spec: `faults` is the body of its [faults] table, `header` more top-level keys."""
    return f'model = "{model}"\n{header}\n[faults]\n{faults}\n'


def run_stress(backend: SimBackend, test: StressTest, preset: str = "quick") -> Executed:
    """One stress test on a backend, as the runner runs it (telemetry on, the preset's budget)."""
    chosen = PRESETS[preset]
    backend.start_telemetry(chosen.telemetry_interval_s)
    ctx = TestContext(
        backend, backend.device_info(), chosen, backend.clock_s(), chosen.budget_s(test.name)
    )
    try:
        return execute(test, ctx)
    finally:
        backend.stop_telemetry()


def invoke(*args: str) -> Result:
    """Run the gpuhealth CLI in-process; stdout and stderr kept apart."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@dataclass(frozen=True)
class CliRun:
    result: Result
    out_dir: Path
    wall_s: float

    @property
    def exit_code(self) -> int:
        return self.result.exit_code


class GradedRuns:
    """Each distinct grade command runs once per session; later requests reuse its result."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._runs: dict[tuple[str, ...], CliRun] = {}

    def grade(self, *args: str) -> CliRun:
        if args not in self._runs:
            out = self._root / f"run{len(self._runs)}"
            start = time.perf_counter()
            result = invoke("grade", "--quiet", "--out", str(out), *args)
            self._runs[args] = CliRun(result, out, time.perf_counter() - start)
        return self._runs[args]


def read_run(folder: Path) -> RunRecord:
    """The run.json in folder, validated."""
    path = folder / "run.json"
    return record_from_json(path.read_text(encoding="utf-8"), str(path))
