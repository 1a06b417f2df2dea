"""Mutants of the shipped policy's rules (gpuhealth/data/policies/default.toml) for mutation.py.

Mutation tools mutate Python, not TOML, so this makes the rule mutants itself. For each rule:

  softer     its grade one step softer in grading.SEVERITY_ORDER (F, INCOMPLETE, D, C, B, A)
  removed    the rule deleted
  min-up     min_measure moved 10% of its size up (the rule stops firing just above the old bound)
  min-down   min_measure moved 10% down (fires below the old bound)
  max-up / max-down   the same for max_measure

Each mutant runs the rule tests (RULE_TESTS) in a fresh pytest with this file as a plugin
(`-p bench.policy_mutants`, GPUHEALTH_POLICY_MUTANT naming the mutant): it replaces
grading.policy_from_text so that the shipped policy's text parses to the mutated rules while the
text and its SHA-256 stay the file's. So a test kills a mutant only by the grade or reasons the
rules give, never because the file's bytes (which golden files and signed records pin) changed.
The policy file itself is never written. A mutant whose rules fail validation (a nudge that
crosses its rule's other bound) is reported as `other`, not killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ENV = "GPUHEALTH_POLICY_MUTANT"
# The tests that judge the shipped policy's rules, fastest first; -x stops at the first failure.
RULE_TESTS = ("tests/test_grading.py", "tests/test_golden.py")
# Run only on the mutants RULE_TESTS leave alive (a whole sim grade per test: 35 s a run).
SLOW_RULE_TESTS = ("tests/test_grade_scenarios.py",)
NUDGE = 0.10
PYTEST = (sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider")
PYTEST += ("-p", "bench.policy_mutants")


@dataclass(frozen=True)
class Mutant:
    rule: int
    rule_id: str
    kind: str

    @property
    def name(self) -> str:
        return f"policy.rules[{self.rule}]({self.rule_id}).{self.kind}"


class Stopping(Protocol):
    requested: bool
    child: subprocess.Popen[bytes] | None


def default_policy_path(repo: Path) -> Path:
    return repo / "gpuhealth" / "data" / "policies" / "default.toml"


def mutants(data: dict[str, Any]) -> Iterator[Mutant]:
    from gpuhealth.judge.grading import SEVERITY_ORDER

    for i, rule in enumerate(data["rules"]):
        if SEVERITY_ORDER.index(rule["grade"]) > 0:
            yield Mutant(i, rule["id"], "softer")
        yield Mutant(i, rule["id"], "removed")
        for bound in ("min", "max"):
            if f"{bound}_measure" in rule:
                yield Mutant(i, rule["id"], f"{bound}-up")
                yield Mutant(i, rule["id"], f"{bound}-down")


def mutated(data: dict[str, Any], mutant: Mutant) -> dict[str, Any]:
    from gpuhealth.judge.grading import SEVERITY_ORDER

    rules = [dict(r) for r in data["rules"]]
    rule = rules[mutant.rule]
    if mutant.kind == "softer":
        rule["grade"] = SEVERITY_ORDER[SEVERITY_ORDER.index(rule["grade"]) - 1]
    elif mutant.kind == "removed":
        del rules[mutant.rule]
    else:
        bound, direction = mutant.kind.split("-")
        key = f"{bound}_measure"
        step = NUDGE * abs(float(rule[key])) or NUDGE
        rule[key] = float(rule[key]) + (step if direction == "up" else -step)
    return {**data, "rules": rules}


# The pytest plugin side: loaded with -p bench.policy_mutants in the mutant's test run.
def pytest_configure(config: Any) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    from gpuhealth.certificate import rejudge
    from gpuhealth.datafiles import validate
    from gpuhealth.judge import grading, shipped

    wanted = Mutant(**json.loads(spec))
    original = grading.policy_from_text
    default_text = grading.DEFAULT_POLICY.read_text(encoding="utf-8")
    data = tomllib.loads(default_text)
    if data["rules"][wanted.rule]["id"] != wanted.rule_id:
        raise RuntimeError(f"policy mutant {wanted.name}: the policy's rules moved")
    spec_mutated = validate(grading.PolicyFile, mutated(data, wanted), ENV, default_text)

    def policy_from_text(text: str, source: str) -> grading.Policy:
        policy = original(text, source)
        if text != default_text:
            return policy
        return grading.Policy(spec_mutated, policy.sha256, policy.source, policy.text)

    patched: Callable[[str, str], grading.Policy] = policy_from_text
    for module in (grading, rejudge, shipped):
        module.policy_from_text = patched  # type: ignore[attr-defined]


def run_tests(repo: Path, mutant: Mutant, tests: tuple[str, ...], stop: Stopping, log: Path) -> int:
    env = {**os.environ, ENV: json.dumps(mutant.__dict__), "PYTHONPATH": str(repo)}
    with log.open("ab") as out:
        out.write(f"\n=== {mutant.name} {' '.join(tests)}\n".encode())
        out.flush()
        stop.child = subprocess.Popen(
            [*PYTEST, *tests],
            cwd=repo,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = stop.child
        while child.poll() is None:
            if stop.requested:
                os.killpg(child.pid, signal.SIGINT)
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
            time.sleep(0.2)
        stop.child = None
    return child.returncode


def run_policy(repo: Path, work: Path, deadline: float, stop: Stopping) -> Any:
    """One row for bench/mutation.py: every rule mutant against the rule tests."""
    from bench.mutation import Row

    row = Row("policy")
    work.mkdir(parents=True, exist_ok=True)
    log = work.parent / "policy.log"
    started = time.monotonic()
    data = tomllib.loads(default_policy_path(repo).read_text(encoding="utf-8"))
    from gpuhealth.datafiles import validate
    from gpuhealth.errors import InputError
    from gpuhealth.judge.grading import PolicyFile

    for mutant in mutants(data):
        row.mutants += 1
        if stop.requested or time.monotonic() > deadline:
            row.other += 1
            row.others[mutant.name] = "not run (stopped)"
            row.note = "stopped (signal)" if stop.requested else "stopped (time limit)"
            continue
        try:
            validate(PolicyFile, mutated(data, mutant), "mutant", "")
        except InputError as error:
            row.other += 1
            row.others[mutant.name] = f"invalid policy: {error}"
            continue
        code = run_tests(repo, mutant, RULE_TESTS, stop, log)
        if code == 0 and not stop.requested:
            code = run_tests(repo, mutant, SLOW_RULE_TESTS, stop, log)
        if code == 1:
            row.killed += 1
        elif code == 0:
            row.survived += 1
            row.survivors.append(mutant.name)
        else:
            row.other += 1
            row.others[mutant.name] = f"pytest exit {code}"
    row.seconds = time.monotonic() - started
    return row
