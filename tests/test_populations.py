"""bench/populations.py: its population draws and synthetic records (the sweep itself is a
benchmark, not a test)."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from gpuhealth.judge import stats
from gpuhealth.judge.grading import load_policy

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # bench/ is not a package of the install
    sys.path.insert(0, str(ROOT))
pop = importlib.import_module("bench.populations")

MODEL, PRESET = "h100-sxm5-80gb", "quick"  # the cheapest record to judge


@pytest.fixture(scope="module")
def template():  # type: ignore[no-untyped-def]
    return pop.load_template(MODEL, PRESET)


def centred() -> dict[str, float]:
    quiet = pop.Population(spread=0.0, metric_noise=0.0, run_to_run=0.0)
    levels: dict[str, float] = pop.draw_levels(np.random.default_rng(0), quiet)
    return levels


def test_t4_draws_have_unit_variance_and_heavier_tails() -> None:
    rng = np.random.default_rng(7)
    t4 = pop.unit_draws(rng, "t4", 200_000)
    normal = pop.unit_draws(rng, "normal", 200_000)
    assert abs(float(np.var(t4)) - 1.0) < 0.02
    assert abs(float(np.var(normal)) - 1.0) < 0.02
    # unit-variance t4 beyond 3: about 1.3%; the normal's 0.27%
    assert float(np.mean(np.abs(t4) > 3)) > 3 * float(np.mean(np.abs(normal) > 3))


def test_a_centred_card_gets_no_performance_reason(template) -> None:  # type: ignore[no-untyped-def]
    levels = centred()
    assert set(levels.values()) == {1.0}
    judged = pop.judge_card(template, levels, template.profile, load_policy())
    assert judged.performance == "A" and not judged.flagged
    assert judged.full == "A"  # this template has no other finding either


def test_synthetic_record_keeps_repetitions_and_scatter(template) -> None:  # type: ignore[no-untyped-def]
    levels = {**centred(), "memtest.pass_gbs": 0.9}
    record = pop.synthetic_record(template, levels)
    before = template.record.test("memtest").metric("pass_gbs").values
    after = record.test("memtest").metric("pass_gbs").values
    assert len(after) == len(before)
    centre = template.profile.metrics["memtest.pass_gbs"].center
    assert stats.estimate(after).value == pytest.approx(0.9 * centre, rel=1e-12)
    ratios = np.asarray(after) / np.asarray(before)
    assert np.ptp(ratios) < 1e-12  # one factor for every repetition


def test_a_half_speed_memory_is_a_performance_fault(template) -> None:  # type: ignore[no-untyped-def]
    levels = pop.with_deficit(centred(), "memory", 0.5)
    judged = pop.judge_card(template, levels, template.profile, load_policy())
    assert judged.performance == "D" and judged.full == "D"
    assert judged.flagged == {"memory"}


def test_one_centre_card_shifts_the_centre_by_its_own_offset(template) -> None:  # type: ignore[no-untyped-def]
    population = pop.Population(spread=0.03, tails="t4")
    profile = pop.draw_reference(np.random.default_rng(3), template, population, 1)
    card = pop.draw_levels(np.random.default_rng(3), population)  # the same draw
    key = "bandwidth.copy_gbs"
    shipped = template.profile.metrics[key]
    assert card[key] != 1.0
    assert profile.metrics[key].center == pytest.approx(shipped.center * card[key], rel=1e-12)
    assert profile.metrics[key].n == 1 and profile.cards == 1
    assert profile.metrics[key].spread == shipped.spread  # the shipped 2% prior
    # the derived efficiency moves with the soak's throughput
    eff = profile.metrics["efficiency.soak_tflops_per_w"].center
    assert eff == pytest.approx(
        template.centres["efficiency.soak_tflops_per_w"] * card["soak.iteration_tflops"]
    )
    assert math.isclose(
        pop.draw_reference(np.random.default_rng(3), template, population, 0).metrics[key].center,
        shipped.center,
    )
