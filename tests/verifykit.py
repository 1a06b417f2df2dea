"""Signed reports for the verify tests: a real card's record (VALID is only for real cards), sim
records, and the CLI call that verifies them."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from simkit import REPO, invoke

from gpuhealth import __version__
from gpuhealth.certificate.keys import SigningKey
from gpuhealth.certificate.report import write_reports
from gpuhealth.certificate.signing import canonical_bytes, sign_record
from gpuhealth.judge.analysis import judge
from gpuhealth.judge.grading import Policy, load_policy
from gpuhealth.judge.profiles import Profile, builtin_profiles, match_profile
from gpuhealth.models import RunRecord, record_from_json

RUNS = REPO / "tests" / "data" / "runs"
# A real H100 graded standard with today's presets (memory phase, 16 memtest passes) on
# 2026-11-26: graded B (its cold thermal resistance). Its measurements are real; judged here by
# this gpuhealth, it is what a grade of that card by this version records.
REAL_RUN = RUNS / "h100-second-card-standard-2026-11-26.json"


# A simulated H100 graded standard by this version (tests/data/current/regenerate.py):
# the source of what the real record lacks (real_record below).
ADDITIONS = REPO / "tests" / "data" / "current" / "sim-h100-standard.json"


@functools.cache
def _this_versions_additions() -> RunRecord:
    """The stored sim standard record; stale (another version wrote it) is an error, not a pass."""
    record = record_from_json(ADDITIONS.read_text(encoding="utf-8"), str(ADDITIONS))
    assert record.tool_version == __version__ and record.preset == "standard", (
        f"{ADDITIONS} was written by gpuhealth {record.tool_version}: regenerate it "
        "(PYTHONPATH=. python tests/data/current/regenerate.py)"
    )
    return record


def real_record(policy: Policy | None = None, profile: Profile | None = None) -> RunRecord:
    record = record_from_json(REAL_RUN.read_text(encoding="utf-8"), str(REAL_RUN))
    # This version adds the pcie test, the readiness readings, the memory clear and the NVLink
    # and PCIe error counter readings, which no real card has been graded with yet (no GPU was
    # lent since): they are grafted from a simulated H100's standard grade, so that the record
    # is complete as this version writes one (evidence.py requires them); every other
    # measurement is the real card's.
    sim = _this_versions_additions()
    pcie = sim.test("pcie")
    assert pcie is not None and pcie.status == "passed"
    assert record.counters_before and record.counters_after and sim.counters_after
    # the NVLink and PCIe error counter readings too (the sim H100 reads no NVLink, and zero
    # PCIe errors): the real card's other counters stay as it read them
    links = {
        name: getattr(sim.counters_after, name)
        for name in (
            "nvlink_status",
            "nvlink",
            "nvlink_speed_mbps",
            "pcie_errors_status",
            "pcie_errors",
        )
    }
    record = replace(
        record,
        tool_version=__version__,
        tests=(pcie, *record.tests),
        counters_before=replace(record.counters_before, **links),
        counters_after=replace(record.counters_after, **links),
        readiness=sim.readiness,
        memory_clear=sim.memory_clear,
        analysis=None,
        grade=None,
        signature=None,
    )
    chosen = profile or match_profile(record.identity, builtin_profiles())
    return judge(record, chosen, policy or load_policy())


def rejudged(record: RunRecord, policy: Policy, profile: Profile | None) -> RunRecord:
    bare = replace(record, analysis=None, grade=None, rules=None, signature=None)
    return judge(bare, profile, policy)


def write_signed(record: RunRecord, key: SigningKey | None, folder: Path) -> Path:
    """run.json, report.html and report.md of the record (signed with key) in folder."""
    write_reports(sign_record(record, key) if key else record, folder)
    return folder / "run.json"


def resigned_data(data: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """A parsed record edited by hand, signed again by key (what a seller with the key can do)."""
    import base64

    data = json.loads(json.dumps(data))
    data["signature"] = {
        "algorithm": "ed25519",
        "public_key": key.public_b64,
        "key_fingerprint": key.fingerprint,
        "signed_at": "2026-11-27T00:00:00+00:00",
        "canonicalization": "rfc8785",
        "value": "",
    }
    value = key.private.sign(canonical_bytes(data))
    data["signature"]["value"] = base64.b64encode(value).decode("ascii")
    return data


def load(path: Path) -> RunRecord:
    return record_from_json(path.read_text(encoding="utf-8"), str(path))


def verify(*args: str) -> tuple[int, str]:
    result = invoke("verify", *args)
    return result.exit_code, result.stdout


def verify_json(*args: str) -> tuple[int, dict[str, object]]:
    result = invoke("verify", *args, "--json")
    return result.exit_code, json.loads(result.stdout)


def check_lines(stdout: str) -> dict[str, str]:
    """check name -> status, from the text output."""
    return dict(re.findall(r"^  (\w+)\s+(pass|fail|unproven|n/a)\s", stdout, re.MULTILINE))


def first_line(stdout: str) -> str:
    return stdout.splitlines()[0]
