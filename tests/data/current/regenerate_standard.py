"""Regenerates tests/data/current/sim-h100-standard.json: what this version adds to a record.

    PYTHONPATH=. python tests/data/current/regenerate_standard.py

A simulated H100 (the built-in healthy sim card, h100-sxm5-80gb) graded standard by this
gpuhealth, judged, unsigned: the same record as `gpuhealth grade --standard --sim-card
h100-sxm5-80gb`'s run.json. tests/verifykit.real_record() grafts its pcie test, readiness readings
and memory clear (which no real card was graded with yet) onto a real H100's standard record, so
that the verify tests have a complete record of this version without grading a sim card each
session. It lives here, not in tests/data/runs/: every file there has a golden judgement
(test_golden.py) and is a 0.1.0 record (test_evidence.py, test_ecc_history.py). Regenerate it when
the version, a preset or what the pcie test, readiness or memory clear record changes
(tests/test_verify_rules.py says so when the version differs).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gpuhealth.backends.sim import SimBackend
from gpuhealth.backends.simcards import load_card
from gpuhealth.grading import load_policy
from gpuhealth.models import record_to_json
from gpuhealth.presets import preset
from gpuhealth.runner import GradeOptions, grade_card

PATH = Path(__file__).resolve().parent / "sim-h100-standard.json"
H100 = "h100-sxm5-80gb"


def main() -> int:
    options = GradeOptions(preset("standard"), load_policy(), None, None, write_files=False)
    record = grade_card(SimBackend(load_card(H100)), options).record
    PATH.write_text(record_to_json(record), encoding="utf-8")
    grade = record.grade.letter if record.grade else None
    print(f"{PATH}: {record.tool_version} {record.preset} grade {grade}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
