"""Regenerates the stored records of this version: tests/test_evidence_rules.py tampers with the
quick and thorough ones; tests/verifykit.real_record() grafts the standard one's pcie test,
readiness and memory clear (no real card was graded with them yet) onto a real H100 record.

    PYTHONPATH=. python tests/data/current/regenerate.py

Each file is a simulated H100 (examples: none, the built-in healthy sim card) graded by this
gpuhealth with one preset, judged, unsigned: a complete record as this version writes one, with
the pcie test, readiness and memory clear the legacy records in tests/data/runs/ lack, held to
its preset's minimums (evidence.py's second tier). They live here, not in tests/data/runs/,
because every file there has a golden judgement (test_golden.py) and is a 0.1.0 record
(test_evidence.py). Regenerate them when a preset or what a stress test records changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gpuhealth.judge.grading import load_policy
from gpuhealth.measure.backends.sim import SimBackend
from gpuhealth.measure.backends.simcards import load_card
from gpuhealth.measure.runner import GradeOptions, grade_card
from gpuhealth.models import record_to_json
from gpuhealth.presets import preset

HERE = Path(__file__).resolve().parent
H100 = "h100-sxm5-80gb"
PRESETS = ("quick", "standard", "thorough")


def main() -> int:
    for name in PRESETS:
        options = GradeOptions(preset(name), load_policy(), None, None, write_files=False)
        record = grade_card(SimBackend(load_card(H100)), options).record
        path = HERE / f"sim-h100-{name}.json"
        path.write_text(record_to_json(record), encoding="utf-8")
        letter = record.grade.letter if record.grade else None
        print(f"{path}: {record.tool_version} {record.preset}, graded {letter}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
