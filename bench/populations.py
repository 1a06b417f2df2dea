"""Populations that differ from the profile's assumptions, judged by the real grading code.

    PYTHONPATH=. python bench/populations.py [--models h100-sxm5-80gb,h200-sxm-141gb]
        [--presets standard,quick] [--spreads 0.015,0.02,0.03,0.04] [--tails normal,t4]
        [--centre-cards 1,3,10] [--profile-spreads shipped] [--correlation 0]
        [--metric-noise 0.005] [--run-to-run 0.008] [--healthy 2000] [--faulty 300]
        [--references 0] [--workers N] [--seed 1] [--json OUT.json] [--quick]

bench/detection.py runs the simulated measurement per card (~0.7 s) and draws healthy cards at
exactly the profile's spread around its exact centre. This one skips the measurement: each card
is a real record of the model (tests/data/runs) whose judged metrics are rescaled to a level
drawn from a population, then judged with `gpuhealth.judge.analysis.assess` under the shipped
policy, against a reference whose centre is itself measured on a few cards of the same population.

Population (relative to the shipped profile's centre, which is the true centre):
- four subsystems: memory (bandwidth.*, memtest.pass_gbs), fp32 (fp32.fp32_tflops,
  gemm.fp32_tflops), tensor (fp16_tensor.*, gemm.fp16_tflops), sustained (soak.iteration_tflops,
  and efficiency.soak_tflops_per_w, which the pipeline derives from it);
- each card has one offset per subsystem, spread x draw, with draw N(0,1) or sqrt(1/2) t4 (unit
  variance, heavy tails); --correlation rho mixes in a common draw (0: independent);
- each metric adds its own N(0, metric_noise), each subsystem a run-to-run N(0, run_to_run);
- a card's level per metric is 1 + offset + run-to-run + metric noise (x (1 - deficit) for the
  faulty subsystem); its repetitions are the template's, scaled so that their median is
  centre x level (the template's count and relative scatter are kept).
Reference: the shipped profile with every centre replaced by the mean measured level of
--centre-cards healthy cards of the same population (cards and n set to that count), spread as
shipped (a 2% prior) unless --profile-spreads gives a fraction of the centre. --centre-cards 0
judges against the shipped profile unchanged (the exact centre). By default every card gets a
reference of its own, so the rates average over what the reference could have been;
--references K shares K reference draws among the cards and also reports the worst one.

A card's performance grade is the worst grade of its reasons from rules "performance-*"
(the performance_deficit finding); the full grade (every finding) is reported beside it, so
that other findings leaking in (thermal, missing references) show. Performance rules never give
F, so the F rate is the full grade's.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.detection import lower_95, upper_95
from gpuhealth.judge import stats
from gpuhealth.judge.analysis import assess
from gpuhealth.judge.coverage import JUDGED_METRICS
from gpuhealth.judge.efficiency import efficiency_test
from gpuhealth.judge.grading import SEVERITY_ORDER, Policy, grade, load_policy
from gpuhealth.judge.profiles import Profile, builtin_profiles, match_profile
from gpuhealth.models import Metric, RunRecord, TestResult, record_from_json

Tails = Literal["normal", "t4"]
RUNS = Path(__file__).resolve().parent.parent / "tests" / "data" / "runs"
# One real record per model and preset: the shape of a run (repetitions, telemetry, counters).
TEMPLATES = {
    ("h100-sxm5-80gb", "standard"): "h100-second-card-standard-2026-11-26.json",
    ("h100-sxm5-80gb", "quick"): "h100-second-card-quick-2026-11-26.json",
    ("h200-sxm-141gb", "standard"): "h200-standard-2026-11-26.json",
    ("h200-sxm-141gb", "quick"): "h200-quick-second-card-2026-11-26.json",
}
SUBSYSTEMS = ("memory", "fp32", "tensor", "sustained")
SUBSYSTEM_OF = {
    "bandwidth.copy_gbs": "memory",
    "bandwidth.scale_gbs": "memory",
    "bandwidth.add_gbs": "memory",
    "bandwidth.triad_gbs": "memory",
    "bandwidth.read_gbs": "memory",
    "memtest.pass_gbs": "memory",
    "fp32.fp32_tflops": "fp32",
    "gemm.fp32_tflops": "fp32",
    "fp16_tensor.mma_tflops": "tensor",
    "fp16_tensor.tensor_gemm_tflops": "tensor",
    "gemm.fp16_tflops": "tensor",
    "soak.iteration_tflops": "sustained",
    "efficiency.soak_tflops_per_w": "sustained",
}
# efficiency.soak_tflops_per_w is not measured: efficiency.py derives it per soak iteration from
# iteration_tflops over NVML power, so scaling iteration_tflops (power untouched) scales it too.
DERIVED = {"efficiency.soak_tflops_per_w": "soak.iteration_tflops"}
MEASURED = tuple(sorted(k for k in JUDGED_METRICS if k not in DERIVED))  # fixed draw order
DEFICITS = (0.05, 0.10, 0.15, 0.30, 0.50)
CELLS: tuple[tuple[str, float], ...] = (
    ("healthy", 0.0),
    *((s, d) for s in SUBSYSTEMS for d in DEFICITS),
)
C_OR_WORSE = frozenset({"C", "D", "INCOMPLETE", "F"})
D_OR_WORSE = frozenset({"D", "INCOMPLETE", "F"})
MIN_LEVEL = 0.01  # a t4 draw far in the tail must not make a throughput negative
CHUNK = 25  # cards per job: few enough pickles, small enough to balance two workers

assert set(SUBSYSTEM_OF) == JUDGED_METRICS, "a judged metric without a subsystem"


# --- the population -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    spread: float  # SD of a subsystem's between-card offset
    tails: Tails = "normal"
    correlation: float = 0.0  # between the subsystems' offsets
    metric_noise: float = 0.005  # each metric's own offset
    run_to_run: float = 0.008  # per subsystem, per grade of the card


def unit_draws(rng: np.random.Generator, tails: Tails, size: int) -> np.ndarray:
    """Unit-variance draws: N(0,1), or Student t with 4 d.o.f. (variance 2) times sqrt(1/2)."""
    if tails == "normal":
        return rng.standard_normal(size)
    return math.sqrt(0.5) * rng.standard_t(4, size)


def draw_levels(rng: np.random.Generator, population: Population) -> dict[str, float]:
    """One card's level per judged metric, relative to the true centre (1 = a centred card)."""
    # Everything is drawn whatever the options, in a fixed order: the same seed gives the same
    # card under every spread, noise and correlation (common random numbers across rows).
    own = unit_draws(rng, population.tails, len(SUBSYSTEMS))
    common = unit_draws(rng, population.tails, 1)[0]
    run_to_run = rng.standard_normal(len(SUBSYSTEMS))
    noise = rng.standard_normal(len(MEASURED))
    rho = population.correlation
    draws = math.sqrt(rho) * common + math.sqrt(1.0 - rho) * own
    offsets = {
        s: population.spread * draws[i] + population.run_to_run * run_to_run[i]
        for i, s in enumerate(SUBSYSTEMS)
    }
    levels = {
        key: max(MIN_LEVEL, 1.0 + offsets[SUBSYSTEM_OF[key]] + population.metric_noise * noise[i])
        for i, key in enumerate(MEASURED)
    }
    for derived, source in DERIVED.items():
        levels[derived] = levels[source]
    return levels


def with_deficit(levels: Mapping[str, float], subsystem: str, deficit: float) -> dict[str, float]:
    return {
        k: v * (1.0 - deficit) if SUBSYSTEM_OF[k] == subsystem else v for k, v in levels.items()
    }


# --- the template record --------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One measured metric of the template: where it sits and its repetitions' relative shape."""

    key: str
    test_index: int
    metric_index: int
    scatter: np.ndarray  # the template's values / their median
    centre: float  # the true centre (the shipped profile's)


@dataclass(frozen=True)
class Template:
    model: str
    preset: str
    file: str
    record: RunRecord
    profile: Profile  # the shipped profile of the model
    slots: tuple[Slot, ...]
    # True centres per judged metric: the shipped ones, and for a derived metric what the
    # pipeline derives for a centred card (the template's own power, not the profile's).
    centres: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@functools.cache
def load_template(model: str, preset: str) -> Template:
    """Read once per process (a forked worker inherits the parent's)."""
    file = TEMPLATES[(model, preset)]
    path = RUNS / file
    record = record_from_json(path.read_text(encoding="utf-8"), str(path))
    record = replace(record, analysis=None, grade=None, rules=None)
    profile = match_profile(record.identity, builtin_profiles())
    if profile is None or profile.key != model:
        raise SystemExit(f"{file}: matches profile {profile and profile.key!r}, not {model!r}")
    tests = list(record.tests)
    notes = []
    slots = []
    for ti, test in enumerate(tests):
        for mi, metric in enumerate(test.metrics):
            key = f"{test.name}.{metric.name}"
            reference = profile.metrics.get(key)
            if key not in SUBSYSTEM_OF or key in DERIVED or not metric.values or reference is None:
                continue
            if not reference.applies_to(test.parameters):
                # An older template run at other conditions (the H200 quick record's tensor GEMM
                # at n = 2048): today's preset runs the reference's, and only the level matters.
                tests[ti] = retarget(tests[ti], reference.conditions)
                notes.append(f"{key}: template parameters set to {reference.conditions}")
            median = stats.estimate(metric.values).value
            scatter = np.asarray(metric.values, dtype=float) / median
            slots.append(Slot(key, ti, mi, scatter, reference.center))
    record = replace(record, tests=tuple(tests))
    template = Template(model, preset, file, record, profile, tuple(slots), notes=tuple(notes))
    centres = {s.key: s.centre for s in slots}
    centred = synthetic_record(template, dict.fromkeys(SUBSYSTEM_OF, 1.0))
    derived = efficiency_test(centred.tests)
    for key in DERIVED:
        name = key.split(".", 1)[1]
        got = derived.metric(name) if derived else None
        if got is not None and got.values:
            centres[key] = stats.estimate(got.values).value
    return replace(template, centres=centres)


def retarget(test: TestResult, conditions: Mapping[str, Any]) -> TestResult:
    """The test as if run under the reference's conditions; a GEMM check that compared n x n
    elements says so for the new n, or evidence.py would hold it as unmeasured (INCOMPLETE)."""
    checks = list(test.verifications)
    for name, value in conditions.items():
        old = test.parameters.get(name)
        if name.endswith("n") and isinstance(old, int) and isinstance(value, int):
            checks = [
                replace(v, checked=value * value) if v.checked == old * old else v for v in checks
            ]
    return replace(test, parameters={**test.parameters, **conditions}, verifications=tuple(checks))


def synthetic_record(template: Template, levels: Mapping[str, float]) -> RunRecord:
    """The template with each measured metric's repetitions at centre x level (cheap: only the
    changed metrics and tests are new objects)."""
    tests = list(template.record.tests)
    metrics: dict[int, list[Metric]] = {}
    for slot in template.slots:
        row = metrics.setdefault(slot.test_index, list(tests[slot.test_index].metrics))
        values = slot.scatter * (slot.centre * levels[slot.key])
        row[slot.metric_index] = replace(row[slot.metric_index], values=tuple(values.tolist()))
    for ti, row in metrics.items():
        tests[ti] = replace(tests[ti], metrics=tuple(row))
    return replace(template.record, tests=tuple(tests))


def reference_profile(
    template: Template,
    centre_levels: Sequence[Mapping[str, float]],
    profile_spread: float | None = None,
) -> Profile:
    """The shipped profile with each centre the mean of the centre cards' measured levels (none:
    the shipped centres), and a spread of profile_spread x centre if given."""
    if not centre_levels and profile_spread is None:
        return template.profile
    cards = len(centre_levels)
    metrics = {}
    for key, reference in template.profile.metrics.items():
        update: dict[str, Any] = {}
        if centre_levels and key in template.centres:
            mean = statistics.fmean(levels[key] for levels in centre_levels)
            update = {"center": template.centres[key] * mean, "n": cards}
        centre = update.get("center", reference.center)
        if profile_spread is not None:
            update["spread"] = profile_spread * centre
        metrics[key] = reference.model_copy(update=update)
    profile = template.profile.model_copy(
        update={"metrics": metrics, "cards": cards or template.profile.cards}
    )
    profile._text = None  # not the shipped file's text any more
    return profile


def draw_reference(
    rng: np.random.Generator,
    template: Template,
    population: Population,
    centre_cards: int,
    profile_spread: float | None = None,
) -> Profile:
    levels = [draw_levels(rng, population) for _ in range(centre_cards)]
    return reference_profile(template, levels, profile_spread)


# --- judging --------------------------------------------------------------------------------------


@functools.cache
def _policy() -> Policy:
    return load_policy()


@dataclass(frozen=True)
class Judged:
    full: str  # the grade from every finding
    performance: str  # the worst grade of the performance-* reasons (A if none)
    flagged: frozenset[str]  # subsystems with a low or very_low metric


def worse(a: str, b: str) -> str:
    return a if SEVERITY_ORDER.index(a) >= SEVERITY_ORDER.index(b) else b


def judge_card(
    template: Template, levels: Mapping[str, float], profile: Profile, policy: Policy
) -> Judged:
    analysis, graded = assess(synthetic_record(template, levels), profile, policy)
    # The performance findings graded on their own: a deficit told as part of another cause's
    # reason (an identity mismatch, gpuhealth/judge/causes.py) still counts as detected.
    performance_findings = tuple(
        replace(f, cause=None) for f in analysis.findings if f.code == "performance_deficit"
    )
    performance = "A"
    for reason in grade(performance_findings, policy).reasons:
        if reason.rule.startswith("performance-"):
            performance = worse(performance, reason.grade)
    # The subsystem scores where the analysis has them (composite.py), else the metrics' verdicts.
    scores = getattr(analysis, "subsystems", None)
    if scores is not None:
        flagged = frozenset(s.name for s in scores if s.verdict == "low")
    else:
        flagged = frozenset(
            SUBSYSTEM_OF.get(f"{c.test}.{c.metric}", "other")
            for c in analysis.comparisons
            if c.verdict in ("low", "very_low")
        )
    return Judged(graded.letter, performance, flagged)


# --- the sweep ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    model: str
    preset: str
    population: Population
    centre_cards: int
    profile_spread: float | None  # None: as shipped

    @property
    def label(self) -> str:
        p = self.population
        ps = "shipped" if self.profile_spread is None else f"{self.profile_spread:.3g}"
        return f"{p.spread:.3f} {p.tails:6} {self.centre_cards:>3} {ps:>7}"


@dataclass
class Tally:
    """Counts of one (configuration, cell)."""

    n: int = 0
    performance: Counter[str] = field(default_factory=Counter)
    full: Counter[str] = field(default_factory=Counter)
    flagged: Counter[str] = field(default_factory=Counter)
    leaked: int = 0  # full grade C or worse while the performance grade is not

    def add(self, other: Tally) -> None:
        self.n += other.n
        self.performance.update(other.performance)
        self.full.update(other.full)
        self.flagged.update(other.flagged)
        self.leaked += other.leaked

    def rate(self, grades: frozenset[str], full: bool = False) -> float:
        counts = self.full if full else self.performance
        return sum(counts[g] for g in grades) / self.n if self.n else math.nan

    def count(self, grades: frozenset[str], full: bool = False) -> int:
        counts = self.full if full else self.performance
        return sum(counts[g] for g in grades)


def _stream(seed: int, config: Config) -> list[int]:
    # The cards depend on model, preset and tails only, not on the spread or the centre cards:
    # rows of one table see the same cards (common random numbers).
    p = config.population
    return [seed, zlib.crc32(f"{config.model}|{config.preset}|{p.tails}".encode())]


def card_rng(seed: int, config: Config, cell: int, index: int) -> np.random.Generator:
    return np.random.default_rng([*_stream(seed, config), 0, cell, index])


def reference_rng(seed: int, config: Config, ref: int) -> np.random.Generator:
    return np.random.default_rng([*_stream(seed, config), 1, ref])


Job = tuple[int, Config, int, int, int, int, int]  # config index, config, cell, start, count,
# references, seed


def run_chunk(job: Job) -> tuple[int, int, Tally, dict[int, tuple[int, int]], float]:
    """Judge count cards of one cell; returns the tally, the healthy C-or-worse count per shared
    reference, and the seconds spent."""
    config_index, config, cell, start, count, references, seed = job
    start_s = time.perf_counter()
    template, policy = load_template(config.model, config.preset), _policy()
    subsystem, deficit = CELLS[cell]
    tally = Tally()
    per_reference: dict[int, tuple[int, int]] = {}
    shared: dict[int, Profile] = {}
    for i in range(start, start + count):
        levels = draw_levels(card_rng(seed, config, cell, i), config.population)
        if deficit:
            levels = with_deficit(levels, subsystem, deficit)
        if references:
            ref = i % references
            if ref not in shared:
                shared[ref] = draw_reference(
                    reference_rng(seed, config, ref),
                    template,
                    config.population,
                    config.centre_cards,
                    config.profile_spread,
                )
            profile = shared[ref]
        else:
            ref = -1
            profile = draw_reference(
                reference_rng(seed, config, cell * 10**7 + i),
                template,
                config.population,
                config.centre_cards,
                config.profile_spread,
            )
        judged = judge_card(template, levels, profile, policy)
        tally.n += 1
        tally.performance[judged.performance] += 1
        tally.full[judged.full] += 1
        tally.flagged.update(judged.flagged)
        bad = judged.performance in C_OR_WORSE
        tally.leaked += judged.full in C_OR_WORSE and not bad
        if references and subsystem == "healthy":
            k, n = per_reference.get(ref, (0, 0))
            per_reference[ref] = (k + bad, n + 1)
    return config_index, cell, tally, per_reference, time.perf_counter() - start_s


def jobs_for(configs: Sequence[Config], args: argparse.Namespace) -> list[Job]:
    jobs: list[Job] = []
    for ci, config in enumerate(configs):
        for cell, (subsystem, _) in enumerate(CELLS):
            total = args.healthy if subsystem == "healthy" else args.faulty
            for start in range(0, total, CHUNK):
                count = min(CHUNK, total - start)
                jobs.append((ci, config, cell, start, count, args.references, args.seed))
    return jobs


# --- the report -----------------------------------------------------------------------------------


@dataclass
class Result:
    config: Config
    cells: list[Tally]
    per_reference: dict[int, list[int]]  # shared reference -> [healthy C+, healthy n]
    seconds: float = 0.0  # worker time

    @property
    def cards(self) -> int:
        return sum(t.n for t in self.cells)

    def cell(self, subsystem: str, deficit: float) -> Tally:
        return self.cells[CELLS.index((subsystem, deficit))]

    def detection(self, deficit: float, grades: frozenset[str]) -> dict[str, float]:
        return {s: self.cell(s, deficit).rate(grades) for s in SUBSYSTEMS}

    def worst_reference(self) -> float | None:
        rates = [k / n for k, n in self.per_reference.values() if n]
        return max(rates) if rates else None

    def summary(self) -> dict[str, Any]:
        healthy = self.cells[0]
        return {
            "config": asdict(self.config),
            "cards": self.cards,
            "ms_per_card": 1000 * self.seconds / self.cards if self.cards else None,
            "healthy": {
                "n": healthy.n,
                "c_or_worse_performance": healthy.count(C_OR_WORSE),
                "c_or_worse_performance_upper_95": upper_95(healthy.count(C_OR_WORSE), healthy.n),
                "c_or_worse_full": healthy.count(C_OR_WORSE, full=True),
                "f_full": healthy.full["F"],
                "f_full_upper_95": upper_95(healthy.full["F"], healthy.n),
                "worst_reference_c_or_worse": self.worst_reference(),
            },
            "cells": [
                {
                    "subsystem": s,
                    "deficit": d,
                    "n": t.n,
                    "performance": dict(t.performance),
                    "full": dict(t.full),
                    "flagged_subsystems": dict(t.flagged),
                    "leaked_c_or_worse": t.leaked,
                    "c_or_worse": t.rate(C_OR_WORSE),
                    "c_or_worse_lower_95": lower_95(t.count(C_OR_WORSE), t.n),
                    "d_or_worse": t.rate(D_OR_WORSE),
                }
                for (s, d), t in zip(CELLS, self.cells, strict=True)
            ],
        }


@dataclass(frozen=True)
class Target:
    name: str
    goal: float
    at_most: bool  # a false rate (<=) or a detection rate (>=)

    def check(self, value: float) -> str:
        gap = value - self.goal
        met = gap <= 0 if self.at_most else gap >= 0
        return "met" if met else f"missed by {abs(gap) * 100:.2f} pp"


TARGETS = (
    Target("healthy C+ (performance) <= 1%", 0.01, True),
    Target("healthy F (all findings) <= 0.1%", 0.001, True),
    Target("15% deficit C+ >= 99% (worst subsystem)", 0.99, False),
    Target("10% deficit C+ >= 90% (worst subsystem)", 0.90, False),
)


def target_values(result: Result) -> tuple[float, ...]:
    healthy = result.cells[0]
    return (
        healthy.rate(C_OR_WORSE),
        healthy.rate(frozenset({"F"}), full=True),
        min(result.detection(0.15, C_OR_WORSE).values()),
        min(result.detection(0.10, C_OR_WORSE).values()),
    )


def _pct(x: float) -> str:
    return f"{x * 100:.1f}" if x == x else "-"


def table(results: Sequence[Result], references: int) -> list[str]:
    """One table for one (model, preset)."""
    first = results[0].config
    template = load_template(first.model, first.preset)
    pop = first.population
    lines = [
        f"\n## {first.model}, preset {first.preset} (template {template.file})",
        f"metric noise {pop.metric_noise:.3g}, run-to-run {pop.run_to_run:.3g}, subsystem "
        f"correlation {pop.correlation:.3g}; rates in %, [95% bound]; C+ = C or worse "
        "(performance reasons only unless 'all')",
    ]
    lines += [f"template note: {note}" for note in template.notes]
    worst_ref = " worstref" if references else ""
    header = (
        f"{'#':>2} {'spread':>6} {'tails':6} {'cc':>3} {'pspread':>7} | {'hC+':>5} {'[<=]':>6} "
        f"{'hC+all':>6} {'hF':>4} {'[<=]':>5}{worst_ref} | {'10%avg':>6} {'10%min':>6} "
        f"{'(sub)':10} | {'15%avg':>6} {'15%min':>6} {'(sub)':10} | {'D+30%':>5} {'D+50%':>5} "
        f"| {'ms/card':>7}"
    )
    lines += [header, "-" * len(header)]
    for i, r in enumerate(results, 1):
        healthy = r.cells[0]
        k, n, f = healthy.count(C_OR_WORSE), healthy.n, healthy.full["F"]
        cells = []
        for deficit in (0.10, 0.15):
            rates = r.detection(deficit, C_OR_WORSE)
            low = min(rates, key=lambda s: rates[s])
            cells.append(
                f"{_pct(statistics.fmean(rates.values())):>6} {_pct(rates[low]):>6} {low:10}"
            )
        d30 = statistics.fmean(r.detection(0.30, D_OR_WORSE).values())
        d50 = min(r.detection(0.50, D_OR_WORSE).values())
        wr = r.worst_reference()
        wr_text = f" {'-' if wr is None else _pct(wr):>8}" if references else ""
        ms = 1000 * r.seconds / r.cards if r.cards else math.nan
        lines.append(
            f"{i:>2} {r.config.label} | {_pct(k / n):>5} {_pct(upper_95(k, n)):>6} "
            f"{_pct(healthy.rate(C_OR_WORSE, full=True)):>6} {_pct(f / n):>4} "
            f"{_pct(upper_95(f, n)):>5}{wr_text} | {cells[0]} | {cells[1]} | {_pct(d30):>5} "
            f"{_pct(d50):>5} | {ms:>7.1f}"
        )
    lines.append(
        "cc = centre cards (0: the shipped centre, exact); pspread = profile spread; D+30% is "
        "averaged over subsystems, D+50% the worst subsystem"
    )
    for t_index, target in enumerate(TARGETS):
        verdicts = []
        for i, r in enumerate(results, 1):
            value = target_values(r)[t_index]
            verdicts.append(f"#{i} {_pct(value)}% {target.check(value)}")
        lines.append(f"target {target.name} (goal stated at spreads <= 3%): " + "; ".join(verdicts))
    lines.append(
        "detail per row: grades of healthy cards; C+ by subsystem and deficit, D+ at 30/50%"
    )
    for i, r in enumerate(results, 1):
        healthy = r.cells[0]
        dist = " ".join(
            f"{g}{healthy.performance[g]}" for g in SEVERITY_ORDER if healthy.performance[g]
        )
        full = " ".join(f"{g}{healthy.full[g]}" for g in SEVERITY_ORDER if healthy.full[g])
        flagged = " ".join(f"{s}{healthy.flagged[s]}" for s in SUBSYSTEMS if healthy.flagged[s])
        lines.append(
            f" #{i} healthy: performance {dist}; all findings {full}; flagged {flagged or '-'}; "
            f"faulty cards C+ only from other findings: {sum(t.leaked for t in r.cells[1:])}"
        )
        for s in SUBSYSTEMS:
            c = " ".join(f"{_pct(r.cell(s, d).rate(C_OR_WORSE)):>5}" for d in DEFICITS[:3])
            dd = " ".join(f"{_pct(r.cell(s, d).rate(D_OR_WORSE)):>5}" for d in DEFICITS[3:])
            lines.append(f"     {s:9} C+ 5/10/15% {c} | D+ 30/50% {dd}")
    return lines


# --- command line ---------------------------------------------------------------------------------


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _profile_spreads(text: str) -> list[float | None]:
    return [None if x == "shipped" else float(x) for x in text.split(",") if x]


def configs_for(args: argparse.Namespace) -> list[Config]:
    configs = []
    for model in args.models.split(","):
        for preset in args.presets.split(","):
            for spread in _floats(args.spreads):
                for tails in args.tails.split(","):
                    if tails not in ("normal", "t4"):
                        raise SystemExit(f"--tails: {tails!r} is not normal or t4")
                    population = Population(
                        spread,
                        "t4" if tails == "t4" else "normal",
                        args.correlation,
                        args.metric_noise,
                        args.run_to_run,
                    )
                    for cc in (int(x) for x in args.centre_cards.split(",")):
                        for ps in _profile_spreads(args.profile_spreads):
                            configs.append(Config(model, preset, population, cc, ps))
    return configs


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--models", default="h100-sxm5-80gb,h200-sxm-141gb")
    parser.add_argument("--presets", default="standard,quick")
    parser.add_argument("--spreads", default="0.015,0.02,0.03,0.04", help="population SDs")
    parser.add_argument("--tails", default="normal,t4")
    parser.add_argument("--centre-cards", default="1,3,10", help="0: the shipped centre, exact")
    parser.add_argument(
        "--profile-spreads", default="shipped", help="'shipped' or fractions of the centre"
    )
    parser.add_argument("--correlation", type=float, default=0.0, help="between subsystems")
    parser.add_argument("--metric-noise", type=float, default=0.005)
    parser.add_argument("--run-to-run", type=float, default=0.008)
    parser.add_argument("--healthy", type=int, default=2000)
    parser.add_argument("--faulty", type=int, default=300, help="per subsystem and deficit")
    parser.add_argument(
        "--references", type=int, default=0, help="shared reference draws (0: one per card)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="a small smoke configuration")
    args = parser.parse_args(argv)
    if args.quick:
        args.presets, args.spreads, args.tails = "quick", "0.03", "normal,t4"
        args.centre_cards, args.healthy, args.faulty = "1", 100, 10
    if not 0 <= args.correlation <= 1:
        parser.error("--correlation must be in [0, 1]")
    return args


def group(results: Iterable[Result]) -> dict[tuple[str, str], list[Result]]:
    out: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        out.setdefault((r.config.model, r.config.preset), []).append(r)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    configs = configs_for(args)
    for config in configs:
        load_template(config.model, config.preset)  # before the fork: workers inherit it
    _policy()
    results = [Result(c, [Tally() for _ in CELLS], {}) for c in configs]
    jobs = jobs_for(configs, args)
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    t0 = time.perf_counter()
    with ctx.Pool(args.workers) as pool:
        for ci, cell, tally, per_ref, seconds in pool.imap_unordered(run_chunk, jobs):
            result = results[ci]
            result.cells[cell].add(tally)
            result.seconds += seconds
            for ref, (k, n) in per_ref.items():
                counts = result.per_reference.setdefault(ref, [0, 0])
                counts[0] += k
                counts[1] += n
    wall = time.perf_counter() - t0
    for rows in group(results).values():
        print("\n".join(table(rows, args.references)), flush=True)
    cards = sum(r.cards for r in results)
    busy = sum(r.seconds for r in results)
    print(
        f"\n{cards} cards judged in {wall:.1f} s on {args.workers} worker(s): "
        f"{cards / wall:.1f} cards/s; {1000 * busy / cards:.1f} ms per card in a worker "
        "(record construction, reference draw, assess)"
    )
    if args.json:
        out = {
            "args": vars(args),
            "wall_s": wall,
            "cards": cards,
            "configs": [r.summary() for r in results],
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
