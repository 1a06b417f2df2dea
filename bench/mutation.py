"""Mutation score of the modules that decide a grade or prove a result (issue 13).

    PYTHONPATH=. python bench/mutation.py [--module grading ...] [--max-minutes 55] [--jobs 2]

For each module, mutmut 3 (the `mutation` extra in pyproject.toml) mutates that one file in a
scratch copy of the checkout and runs, for each mutant, only the tests that cover the mutated
function (mutmut records that in one traced run of the module's test selection, MODULES below).
The `policy` row is bench/policy_mutants.py: the rules of the shipped policy file, mutated one at
a time. Prints one row per module: mutants, killed, survived, timeout, other (the test run could
not run, or found no test), score = killed / mutants. A mutant counts as killed only when pytest
ran and reported a failing test (exit 1): an internal error, an interrupted or unrun check is
never a kill (mutmut itself counts pytest's exit 3 as one; this script does not).

The checkout is never written to: the scratch copy lives under --work-dir (a temporary folder
by default) and is deleted at the end unless --keep. SIGINT/SIGTERM stop the running mutmut (its
process group) within seconds; the rows done so far are printed.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import fnmatch
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    files: tuple[str, ...]  # the files mutated, relative to the checkout
    tests: tuple[str, ...]  # the tests mutmut may pick from (it runs the covering ones only)
    why: str


# The test selection per module: the test files that import the module or judge what it decides,
# fast ones only. Left out: tests that grade whole sim cards (test_grade_scenarios.py 35 s,
# test_fail_open.py 70 s, test_thermal_grading.py 28 s, test_attacks.py 63 s,
# test_ecc_history.py 47 s): each mutant covered by them would cost that again; the golden files
# (every recorded run judged again, 1 s) are the fast oracle for the judgement. mutmut traces
# the selection once and then runs, per mutant, only the tests that executed the mutated function.
# evidence: tests/test_evidence_rules.py tampers stored records one field at a time (0.5 s the
# file); tests/test_evidence.py grades fresh sim cards for its attacks (140 s the file): left to
# the ordinary test run.
MODULES: dict[str, Target] = {
    "grading": Target(
        ("gpuhealth/judge/grading.py",),
        ("tests/test_grading.py", "tests/test_golden.py", "tests/test_input_rules.py"),
        "the policy's rules applied to findings: the grade",
    ),
    "findings": Target(
        ("gpuhealth/judge/findings.py",),
        # unit tests on hand-built and stored records, one fault planted at a time, and the
        # golden files; test_not_applicable.py (a sim grade per mutant) and
        # test_real_records.py (the same records as the golden files, judged again) left out
        (
            "tests/test_findings.py",
            "tests/test_findings_counters.py",
            "tests/test_findings_run.py",
            "tests/test_golden.py",
        ),
        "what a run record shows is wrong with the card",
    ),
    "analysis": Target(
        ("gpuhealth/judge/analysis.py",),
        (
            "tests/test_analysis_wiring.py",
            "tests/test_golden.py",
            "tests/test_not_applicable.py",
            "tests/test_real_records.py",
        ),
        "the card against the healthy-card profile, then the grade",
    ),
    "stats": Target(
        ("gpuhealth/judge/stats.py",),
        ("tests/test_stats.py", "tests/test_populations.py"),
        "the statistics a deficit is proven with",
    ),
    "evidence": Target(
        ("gpuhealth/judge/evidence.py",),
        ("tests/test_evidence_rules.py",),
        "a record proves its tests ran as claimed, else INCOMPLETE",
    ),
    "stresstests": Target(
        (
            "gpuhealth/measure/stresstests/bandwidth.py",
            "gpuhealth/measure/stresstests/fp32.py",
            "gpuhealth/measure/stresstests/fp16_tensor.py",
            "gpuhealth/measure/stresstests/gemm.py",
            "gpuhealth/measure/stresstests/memtest.py",
            "gpuhealth/measure/stresstests/soak.py",
            "gpuhealth/measure/stresstests/pcie.py",
            "gpuhealth/measure/stresstests/sm_checks.py",
        ),
        # each test on a small preset against the sim, and the verification helpers called with
        # planted wrong values (well under 1 s a mutant); test_verifications.py grades whole sim
        # cards (10-15 s each) for the same faults end to end, in the ordinary test run
        ("tests/test_stresstests_fast.py",),
        "the stress tests: every result checked against host arithmetic",
    ),
    "clockhold": Target(
        ("gpuhealth/judge/clockhold.py",),
        ("tests/test_clockhold.py",),
        "a clock setting that held the clocks down under load: INCOMPLETE, not a slow card",
    ),
    "evidence_labels": Target(
        ("gpuhealth/judge/evidence_labels.py", "gpuhealth/judge/unfinished.py"),
        (
            "tests/test_attack14_labels.py",
            "tests/test_attack14_stops.py",
            "tests/test_evidence_labels_bounds.py",
        ),
        "the labels a buyer reads held to their own numbers; a run stopped before its clear",
    ),
    "signing": Target(
        ("gpuhealth/certificate/signing.py",),
        ("tests/test_signing.py",),
        "the signature over a record's canonical bytes",
    ),
    # test_verify.py (CLI, fresh sim grades, --recheck on a sim card: 40-55 s) is left to the
    # ordinary run; test_verify_rules.py checks the same rules in-process on stored records.
    "verify": Target(
        ("gpuhealth/certificate/verify.py", "gpuhealth/certificate/checks.py"),
        ("tests/test_verify_rules.py",),
        "a buyer's check of a signed record",
    ),
}
POLICY = "policy"
ALL_MODULES = (*MODULES, POLICY)

# Lines no test can or should pin (mutmut's do_not_mutate_patterns: the statement starting on a
# matching line is left alone): logging calls. Docstrings (triple-quoted strings) and type
# annotations mutmut never mutates.
DO_NOT_MUTATE_PATTERNS = (r"\b(log|logger|_log|LOG)\.(debug|info|warning|error|exception)\(",)
# Folders the tests read beside the package and the tests themselves.
ALSO_COPY = ("kernels", "reports", "examples", "docs", "bench", "deploy", ".ci", "README.md")

KILLED_EXIT_CODES = frozenset({1})
SURVIVED_EXIT_CODES = frozenset({0})
TIMEOUT_EXIT_CODES = frozenset({36, 24, -24, 152, 255})
NO_TESTS = {33: "no covering test in the selection", 5: "no test collected"}


@dataclass
class Row:
    module: str
    mutants: int = 0
    killed: int = 0
    survived: int = 0
    timeout: int = 0
    other: int = 0  # not run, no covering test, error, interrupted: never a kill
    seconds: float = 0.0
    note: str = ""
    survivors: list[str] = field(default_factory=list)
    others: dict[str, str] = field(default_factory=dict)

    @property
    def score_pct(self) -> float:
        return 100.0 * self.killed / self.mutants if self.mutants else 0.0


class Stop:
    """SIGINT/SIGTERM: set the flag and stop the child's process group."""

    def __init__(self) -> None:
        self.requested = False
        self.child: subprocess.Popen[bytes] | None = None

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        if self.child is not None and self.child.poll() is None:
            kill_group(self.child, signal.SIGINT)


def kill_group(child: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, sig)


def mutmut_executable() -> Path:
    candidate = Path(sys.executable).parent / "mutmut"
    found = candidate if candidate.is_file() else shutil.which("mutmut")
    if found is None:
        sys.exit(
            "bench/mutation.py: mutmut is not installed in this Python "
            f"({sys.executable}): pip install -e '.[mutation]'"
        )
    return Path(found)


def scratch_copy(dest: Path) -> None:
    """The checkout's files (tracked and untracked, not ignored) copied to dest."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if not source.is_file():
            continue  # deleted in the work tree, not yet committed
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def mutmut_config(target: Target) -> str:
    return "\n".join(
        (
            "",
            "[tool.mutmut]",
            'source_paths = ["gpuhealth"]',
            f"only_mutate = {toml_list(target.files)}",
            f"also_copy = {toml_list(ALSO_COPY)}",
            f"pytest_add_cli_args_test_selection = {toml_list(target.tests)}",
            'pytest_add_cli_args = ["-p", "no:cacheprovider"]',
            f"do_not_mutate_patterns = {toml_list(DO_NOT_MUTATE_PATTERNS)}",
            "use_git_change_detection = false",
            "",
        )
    )


def classify(row: Row, exit_code_by_key: dict[str, int | None]) -> None:
    for name, code in sorted(exit_code_by_key.items()):
        row.mutants += 1
        if code in KILLED_EXIT_CODES:
            row.killed += 1
        elif code in SURVIVED_EXIT_CODES:
            row.survived += 1
            row.survivors.append(name)
        elif code in TIMEOUT_EXIT_CODES:
            row.timeout += 1
            row.others[name] = "timeout"
        else:
            row.other += 1
            row.others[name] = (
                "not run" if code is None else NO_TESTS.get(code, f"test run exit {code}")
            )


def run_module(
    name: str,
    target: Target,
    work: Path,
    deadline: float,
    stop: Stop,
    jobs: int,
    patterns: Sequence[str] = (),
) -> Row:
    row = Row(name + (" (" + ", ".join(patterns) + ")" if patterns else ""))
    present = [t for t in target.tests if not t.startswith("tests/") or (REPO / t).is_file()]
    target = Target(target.files, tuple(present), target.why)
    scratch = work / name
    shutil.rmtree(scratch, ignore_errors=True)
    scratch_copy(scratch)
    with (scratch / "pyproject.toml").open("a", encoding="utf-8") as config:
        config.write(mutmut_config(target))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mutants/ must win
    log_path = work / f"{name}.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        stop.child = subprocess.Popen(
            [str(mutmut_executable()), "run", "--max-children", str(jobs), *patterns],
            cwd=scratch,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = stop.child
        while child.poll() is None:
            if stop.requested or time.monotonic() > deadline:
                row.note = "stopped (signal)" if stop.requested else "stopped (time limit)"
                kill_group(child, signal.SIGINT)
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    kill_group(child, signal.SIGKILL)
                    child.wait()
                break
            time.sleep(0.5)
        stop.child = None
    row.seconds = time.monotonic() - started
    for path in target.files:
        meta = scratch / "mutants" / (path + ".meta")
        if meta.is_file():
            codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
            if patterns:  # only the mutants asked for
                codes = {
                    k: v for k, v in codes.items() if any(fnmatch.fnmatch(k, p) for p in patterns)
                }
            classify(row, codes)
        elif not row.note:
            row.note = f"mutmut wrote no results for {path}: see {log_path}"
    if child.returncode not in (0, None) and not row.note:
        row.note = f"mutmut exited {child.returncode}"
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        print("\n".join([f"{name}: {row.note}; the end of its log:", *tail]), file=sys.stderr)
    row.survivors = [s if stop.requested else f"{s}\n{show(scratch, s)}" for s in row.survivors]
    return row


@functools.cache
def function_sources(path: Path) -> dict[str, str]:
    """Every function's source in a mutmut-mutated file, by name (parsed once per file)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()  # not ast.get_source_segment: it splits the file at every call
    return {
        node.name: "\n".join(lines[node.lineno - 1 : node.end_lineno])
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def show(scratch: Path, mutant: str) -> str:
    """The mutant's diff against the original function, from mutmut's mutated copy of the file
    (as `mutmut show` prints it, without a process per mutant)."""
    module, _, function = mutant.rpartition(".")
    source_path = scratch / "mutants" / (module.replace(".", "/") + ".py")
    plain = function.rpartition("__mutmut_")[0]
    try:
        defs = function_sources(source_path)
        before, after = defs[plain + "__mutmut_orig"], defs[function]
    except (OSError, SyntaxError, KeyError) as exc:
        return f"(no diff: {exc!r})"
    before = before.replace(plain + "__mutmut_orig", plain, 1)
    after = after.replace(function, plain, 1)
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return "\n".join(line for line in lines if not line.startswith(("---", "+++", "@@")))


def print_table(rows: Sequence[Row]) -> None:
    print(f"| module | mutants | killed | survived | timeout | other | score | time |{' note |'}")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r.module} | {r.mutants} | {r.killed} | {r.survived} | {r.timeout} | {r.other} "
            f"| {r.score_pct:.1f}% | {r.seconds / 60:.1f} min | {r.note} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", choices=ALL_MODULES, help="(repeatable)")
    parser.add_argument("--max-minutes", type=float, default=55.0, help="for all modules")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--work-dir", type=Path, help="scratch copies (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument("--json", type=Path, help="write the rows and survivors here")
    parser.add_argument(
        "--mutants",
        action="append",
        default=[],
        help="only these mutants (mutmut names, * allowed; with one --module)",
    )
    args = parser.parse_args(argv)
    modules: list[str] = args.module or list(ALL_MODULES)
    if any(m in MODULES for m in modules):
        mutmut_executable()
    stop = Stop()
    stop.install()
    deadline = time.monotonic() + args.max_minutes * 60
    if args.work_dir is not None:  # a folder named for the scratch copies is made, not refused
        Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpuhealth-mutation-", dir=args.work_dir))
    rows: list[Row] = []
    try:
        for name in modules:
            if stop.requested or time.monotonic() > deadline:
                rows.append(Row(name, note="not run (stopped)"))
                continue
            print(f"mutating {name} ...", file=sys.stderr, flush=True)
            if name == POLICY:
                from bench.policy_mutants import run_policy  # same folder, same CLI

                rows.append(run_policy(REPO, work / name, deadline, stop))
            else:
                rows.append(
                    run_module(name, MODULES[name], work, deadline, stop, args.jobs, args.mutants)
                )
            print(f"  {rows[-1].seconds / 60:.1f} min", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"scratch copies kept in {work}", file=sys.stderr)
    print_table(rows)
    for r in rows:
        for s in r.survivors:
            print(f"\nsurvived: {s}")
        for mutant, why in r.others.items():
            print(f"not killed ({why}): {mutant}")
    if args.json:
        args.json.write_text(
            json.dumps([r.__dict__ for r in rows], indent=1, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
    return 130 if stop.requested else 0


if __name__ == "__main__":
    sys.exit(main())
