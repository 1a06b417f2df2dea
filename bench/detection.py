"""Detection power, measured: grade simulated populations of healthy and faulty cards.

    PYTHONPATH=. python bench/detection.py [--healthy 1000] [--faulty 100] [--workers 2]
        [--models h100-sxm5-80gb,h200-sxm-141gb] [--preset standard] [--spread 0.02]
        [--profile builtin|fleet] [--json OUT.json]

Every card goes through the real pipeline: the stress tests on the simulated card (virtual clock),
then analysis and grading with the shipped policy against a reference profile, exactly as
`gpuhealth grade` does (nothing is written to disk).

Population (an assumption, printed with the results): each healthy card has its own memory,
FP32 and tensor speed, each 1 + N(0, spread) (independent), and its own thermal resistance,
1 + N(0, thermal spread); on top, every repetition has the sim's measurement noise. Faulty cards
are drawn the same way, then get one fault at one severity. Memory faults sit at a uniformly
random word of the memory a process can allocate, so a fault in memory the test could not reach
counts as missed.

--profile builtin: the shipped profile of the model (what a user gets out of the box).
--profile fleet: a profile built with `profile build`'s code from --fleet-cards other healthy
cards of the population (what a refurbisher gets after grading a batch of trusted cards).

Prints: grades of healthy cards (false "C or worse" and false F rates, with 95% upper bounds),
detection per fault kind and severity, the confusion matrix of grades, and the time per card
(simulated measurement and, separately, analysis + grading of the record). Targets (issue 4):
healthy C-or-worse <= 1%, F <= 0.1%; memory error, wrong result, row-remap failure, uncorrectable
ECC, fatal Xid graded F >= 99.9%; 15% bandwidth or compute deficit, thermal resistance >= 1.5x
graded C or worse >= 99%, 10% deficit >= 90%; analysis <= 50 ms per record.

"ok" compares the observed rate with the goal; the Clopper-Pearson bound beside it says how much
the sample size allows one to claim (100 faulty cards, all detected: a 95% lower bound of 97.0%;
claiming 99.9% would take about 3000 cards without a miss).
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import statistics
import sys
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from gpuhealth.judge.analysis import judge
from gpuhealth.judge.grading import SEVERITY_ORDER, Policy, load_policy
from gpuhealth.judge.profiles import Profile, builtin_profiles, match_profile
from gpuhealth.judge.profiles.build import SourceRun, build_profile
from gpuhealth.measure.backends.sim import SimBackend
from gpuhealth.measure.backends.simcards import (
    Faults,
    FlakyBit,
    RemappedRows,
    SimCard,
    StuckBit,
    WrongResults,
    XidAt,
    load_model,
)
from gpuhealth.measure.runner import GradeOptions, grade_card
from gpuhealth.models import RunRecord
from gpuhealth.presets import PRESETS

GRADES = list(SEVERITY_ORDER)  # A B C D INCOMPLETE F
C_OR_WORSE = {"C", "D", "INCOMPLETE", "F"}
THERMAL_SPREAD = 0.05


@dataclass(frozen=True)
class Cell:
    """One row of the table: a fault kind at one severity (or healthy)."""

    kind: str
    severity: str
    target: str  # "F" or "C" (C or worse) or "healthy"
    goal: float  # detection rate the issue asks for (healthy: the max false rate)


CELLS: tuple[Cell, ...] = (
    Cell("healthy", "-", "healthy", 0.01),
    Cell("stuck bit", "1 bit", "F", 0.999),
    Cell("flaky bit", "p=0.5", "F", 0.999),
    Cell("flaky bit", "p=0.05", "F", 0.999),
    Cell("flaky bit", "p=0.01", "F", 0.0),
    Cell("wrong results", "rate 1", "F", 0.999),
    Cell("wrong results", "rate 0.1", "F", 0.999),
    Cell("wrong results", "rate 0.01", "F", 0.999),
    Cell("row-remap failure", "-", "F", 0.999),
    Cell("uncorrectable ECC in run", "1 error", "F", 0.999),
    Cell("fatal Xid", "48 in memtest", "F", 0.999),
    Cell("fatal Xid", "95 in soak", "F", 0.999),
    Cell("bandwidth deficit", "5%", "C", 0.0),
    Cell("bandwidth deficit", "10%", "C", 0.90),
    Cell("bandwidth deficit", "15%", "C", 0.99),
    Cell("compute deficit", "5%", "C", 0.0),
    Cell("compute deficit", "10%", "C", 0.90),
    Cell("compute deficit", "15%", "C", 0.99),
    Cell("FP32 deficit", "10%", "C", 0.90),
    Cell("FP32 deficit", "15%", "C", 0.99),
    Cell("tensor deficit", "10%", "C", 0.90),
    Cell("tensor deficit", "15%", "C", 0.99),
    Cell("thermal resistance", "1.25x", "C", 0.0),
    Cell("thermal resistance", "1.5x", "C", 0.99),
    Cell("thermal resistance", "2x", "C", 0.99),
)


def _percent(text: str) -> float:
    return float(text.rstrip("%")) / 100


def card_faults(cell: Cell, rng: np.random.Generator, spread: float, words: int) -> Faults:
    """A card of the population: its own speeds and thermal resistance, then the cell's fault."""
    memory, fp32, fp16 = (1.0 + spread * float(rng.standard_normal()) for _ in range(3))
    thermal = 1.0 + THERMAL_SPREAD * float(rng.standard_normal())
    faults = Faults(
        bandwidth_scale=memory, fp32_scale=fp32, fp16_scale=fp16, thermal_resistance_scale=thermal
    )
    address = 4 * int(rng.integers(0, words))
    bit = int(rng.integers(0, 32))
    kind, severity = cell.kind, cell.severity
    if kind == "stuck bit":
        return replace_faults(faults, stuck_bits=(StuckBit(address=address, bit=bit, value=1),))
    if kind == "flaky bit":
        probability = float(severity.split("=")[1])
        return replace_faults(
            faults, flaky_bits=(FlakyBit(address=address, bit=bit, probability=probability),)
        )
    if kind == "wrong results":
        return replace_faults(faults, wrong_results=WrongResults(rate=float(severity.split()[1])))
    if kind == "row-remap failure":
        return replace_faults(faults, remapped_rows=RemappedRows(uncorrectable=1, failure=True))
    if kind == "uncorrectable ECC in run":
        return replace_faults(faults, ecc_uncorrected=1)
    if kind == "fatal Xid":
        code, _, test = severity.split()
        return replace_faults(faults, xid=(XidAt(test=test, code=int(code)),))  # type: ignore[arg-type]
    deficit = 1.0 - _percent(severity) if kind.endswith("deficit") else 1.0
    if kind == "bandwidth deficit":
        return replace_faults(faults, bandwidth_scale=memory * deficit)
    if kind == "compute deficit":
        return replace_faults(faults, fp32_scale=fp32 * deficit, fp16_scale=fp16 * deficit)
    if kind == "FP32 deficit":
        return replace_faults(faults, fp32_scale=fp32 * deficit)
    if kind == "tensor deficit":
        return replace_faults(faults, fp16_scale=fp16 * deficit)
    if kind == "thermal resistance":
        scale = float(severity.rstrip("x"))
        return replace_faults(faults, thermal_resistance_scale=thermal * scale)
    return faults


def replace_faults(faults: Faults, **changes: Any) -> Faults:
    return faults.model_copy(update=changes)


# --- workers --------------------------------------------------------------------------------------


@functools.cache
def _policy() -> Policy:
    return load_policy()  # once per worker process


def measure(job: tuple[str, int, int, str, float]) -> tuple[int, RunRecord, float]:
    """Grade one card (no profile: judged later); returns (cell index, record, seconds)."""
    model_key, cell_index, card_index, preset, spread = job
    model = load_model(model_key)
    rng = np.random.default_rng([cell_index, card_index, zlib.crc32(model_key.encode())])
    words = (model.device.memory_total_bytes - model.device.memory_reserved_bytes) // 4
    faults = card_faults(CELLS[cell_index], rng, spread, words)
    serial = f"SIM-{cell_index:02d}-{card_index:05d}"
    card = SimCard(
        model=model,
        serial=serial,
        uuid=f"GPU-detect-{model_key}-{cell_index}-{card_index}",
        name=model.identity.name,
        seed=int(rng.integers(0, 2**31)),
        faults=faults,
        source="bench/detection.py",
    )
    start = time.perf_counter()
    options = GradeOptions(PRESETS[preset], _policy(), None, None, write_files=False)
    record = grade_card(SimBackend(card), options).record
    return cell_index, record, time.perf_counter() - start


def judged(record: RunRecord, profile: Profile | None) -> tuple[str, float]:
    start = time.perf_counter()
    again = judge(replace(record, analysis=None, grade=None), profile, _policy())
    seconds = time.perf_counter() - start
    return (again.grade.letter if again.grade else "INCOMPLETE"), seconds


# --- statistics of the table ----------------------------------------------------------------------


def upper_95(k: int, n: int) -> float:
    """Clopper-Pearson one-sided 95% upper bound of a rate observed k times in n."""
    return 1.0 if k >= n else float(sps.beta.ppf(0.95, k + 1, n - k))


def lower_95(k: int, n: int) -> float:
    return 0.0 if k <= 0 else float(sps.beta.ppf(0.05, k, n - k + 1))


def run_model(
    model_key: str, args: argparse.Namespace, pool: Any
) -> tuple[dict[str, Any], list[str]]:
    lines: list[str] = []
    jobs = []
    for index, cell in enumerate(CELLS):
        if args.only and cell.kind != "healthy" and args.only not in cell.kind:
            continue
        count = args.healthy if cell.kind == "healthy" else args.faulty
        jobs += [(model_key, index, i, args.preset, args.spread) for i in range(count)]
    fleet_jobs = []
    if args.profile == "fleet":
        fleet_jobs = [
            (model_key, 0, 10**6 + i, args.preset, args.spread) for i in range(args.fleet_cards)
        ]
    t0 = time.perf_counter()
    results = pool.map(measure, jobs + fleet_jobs, chunksize=8)
    wall = time.perf_counter() - t0
    fleet_records = [r for _, r, _ in results[len(jobs) :]]
    results = results[: len(jobs)]
    model = load_model(model_key)
    identity_profile = match_profile(results[0][1].identity, builtin_profiles())
    profile = identity_profile
    if args.profile == "fleet":
        sources = [SourceRun(f"fleet card {i}", r) for i, r in enumerate(fleet_records)]
        profile = build_profile(sources, key=f"{model_key}-fleet").profile
    grades: dict[int, Counter[str]] = {i: Counter() for i in range(len(CELLS))}
    analysis_s: list[float] = []
    for cell_index, record, _ in results:
        letter, seconds = judged(record, profile)
        grades[cell_index][letter] += 1
        analysis_s.append(seconds)
    measure_s = [s for _, _, s in results]
    lines.append(
        f"\n## {model.identity.name} ({model_key}): profile {profile.key if profile else 'none'} "
        f"({profile.source if profile else ''})"
    )
    lines.append(
        f"population: speeds 1 + N(0, {args.spread:.3g}) per card (memory, FP32, tensor), "
        f"thermal resistance 1 + N(0, {THERMAL_SPREAD}); preset {args.preset}; "
        f"{len(jobs)} cards in {wall:.0f} s on {args.workers} worker(s)"
    )
    header = f"{'condition':26} {'severity':10} {'n':>5} " + " ".join(f"{g[:3]:>4}" for g in GRADES)
    header += f" {'rate':>7} {'95% bound':>9} {'goal':>7}  ok"
    lines += [header, "-" * len(header)]
    rows = []
    for index, cell in enumerate(CELLS):
        counts = grades[index]
        n = sum(counts.values())
        if n == 0:
            continue
        if cell.target == "healthy":
            k_c = sum(counts[g] for g in C_OR_WORSE)
            rate, bound, ok = k_c / n, upper_95(k_c, n), k_c / n <= cell.goal
            label = "C+ rate"
        else:
            wanted = {"F"} if cell.target == "F" else C_OR_WORSE
            k = sum(counts[g] for g in wanted)
            rate, bound = k / n, lower_95(k, n)
            ok = rate >= cell.goal
            label = ""
        cols = " ".join(f"{counts[g]:>4}" for g in GRADES)
        goal = f"{'<=' if cell.target == 'healthy' else '>='}{cell.goal:.1%}" if cell.goal else "-"
        mark = ("yes" if ok else "NO") if cell.goal else ""
        lines.append(
            f"{cell.kind:26} {cell.severity:10} {n:>5} {cols} {rate:>7.2%} {bound:>9.2%} "
            f"{goal:>7}  {mark}"
        )
        rows.append(
            {
                "kind": cell.kind,
                "severity": cell.severity,
                "target": cell.target,
                "n": n,
                "grades": dict(counts),
                "rate": rate,
                "bound_95": bound,
                "goal": cell.goal,
                "ok": ok if cell.goal else None,
                "label": label,
            }
        )
    healthy = grades[0]
    n_h = sum(healthy.values())
    if n_h:
        lines.append(
            f"healthy graded F: {healthy['F']}/{n_h} = {healthy['F'] / n_h:.2%} "
            f"(95% upper bound {upper_95(healthy['F'], n_h):.2%}; goal <= 0.1%)"
        )
    lines.append(
        "time per card: simulated measurement median "
        f"{statistics.median(measure_s) * 1000:.0f} ms; analysis + grading of the record median "
        f"{statistics.median(analysis_s) * 1000:.1f} ms, p99 "
        f"{float(np.percentile(analysis_s, 99)) * 1000:.1f} ms, "
        f"max {max(analysis_s) * 1000:.1f} ms "
        "(goal <= 50 ms)"
    )
    summary = {
        "model": model_key,
        "profile": profile.key if profile else None,
        "rows": rows,
        "healthy_f": healthy["F"],
        "healthy_n": n_h,
        "measure_ms_median": statistics.median(measure_s) * 1000,
        "analysis_ms_median": statistics.median(analysis_s) * 1000,
        "analysis_ms_p99": float(np.percentile(analysis_s, 99)) * 1000,
        "analysis_ms_max": max(analysis_s) * 1000,
        "wall_s": wall,
    }
    return summary, lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--healthy", type=int, default=1000)
    parser.add_argument("--faulty", type=int, default=100, help="cards per fault and severity")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--models", default="h100-sxm5-80gb,h200-sxm-141gb")
    parser.add_argument("--preset", default="standard", choices=list(PRESETS))
    parser.add_argument("--spread", type=float, default=0.02, help="between-card SD of speeds")
    parser.add_argument("--profile", choices=["builtin", "fleet"], default="builtin")
    parser.add_argument("--fleet-cards", type=int, default=30)
    parser.add_argument("--json", type=str, default=None, help="also write the results here")
    parser.add_argument(
        "--only", default=None, help="only the fault kinds containing this text (and healthy)"
    )
    args = parser.parse_args(argv)
    summaries = []
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(args.workers) as pool:
        for model_key in args.models.split(","):
            summary, lines = run_model(model_key, args, pool)
            summaries.append(summary)
            print("\n".join(lines), flush=True)
    missed = [
        f"{s['model']}: {r['kind']} {r['severity']}"
        for s in summaries
        for r in s["rows"]
        if r["ok"] is False
    ]
    print("\nDETECTION_JSON " + json.dumps({"args": vars(args), "models": summaries}))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"args": vars(args), "models": summaries}, out, indent=1)
    print("targets missed: " + ("; ".join(missed) if missed else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
