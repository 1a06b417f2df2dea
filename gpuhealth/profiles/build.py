"""`gpuhealth profile build`: a reference profile from the runs of cards the user trusts.

Per metric:
1. each run's estimate is the median of its repetitions (stats.estimate);
2. each card (by UUID, else serial) counts once: the median of its runs, so a card graded five
   times does not outweigh four cards graded once;
3. outliers are rejected with the modified z-score |x - median| / (1.4826 MAD) > 3.5
   (Iglewicz & Hoaglin), the MAD floored at SPREAD_FLOOR of the median as the spread is in 4:
   a bad card in the set cannot move the reference, and a card is not an outlier for a
   difference below measurement resolution;
4. centre = median, spread = 1.4826 MAD of the cards kept, floored at SPREAD_FLOOR of the centre
   (identical cards must not make every tiny deviation "significant"); with fewer than
   MIN_FLEET_CARDS cards the spread is also floored at the prior, and the profile says so.
Only tests that passed are used; metrics measured under other conditions (e.g. another GEMM size)
than most cards' are left out with a warning.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gpuhealth import stats
from gpuhealth.atomicfile import write_atomic
from gpuhealth.datafiles import parse_toml, read_text_file, validate
from gpuhealth.efficiency import efficiency_test
from gpuhealth.errors import InputError
from gpuhealth.models import RunRecord, record_from_json
from gpuhealth.profiles import (
    MEMORY_MATCH_TOLERANCE,
    MIN_FLEET_CARDS,
    NOT_JUDGED,
    Profile,
    ProfileMetric,
    ProfileThermal,
    builtin_profiles,
    match_profile,
)
from gpuhealth.profiles.render import render_profile, wrap_comment

OUTLIER_Z = 3.5
PRIOR_SPREAD = 0.02  # as the built-in measured profiles (docs/statistics.md)
SPREAD_FLOOR = 0.01  # below this the spread is measurement resolution, not card-to-card spread
# Test parameters a metric's value depends on: cards measured with other values are not pooled.
CONDITION_PARAMETERS: dict[str, tuple[str, ...]] = {
    "fp16_tensor.tensor_gemm_tflops": ("gemm_n",),
}

Condition = tuple[tuple[str, bool | int | float | str], ...]


@dataclass(frozen=True)
class SourceRun:
    path: str
    record: RunRecord

    @property
    def card(self) -> str:
        identity = self.record.identity
        return identity.uuid or identity.serial or self.record.run_id

    @property
    def label(self) -> str:
        serial = self.record.identity.serial or "n/a"
        return f"{self.record.run_id} serial {serial} ({Path(self.path).name})"


@dataclass(frozen=True)
class Built:
    profile: Profile
    warnings: tuple[str, ...]


def load_runs(paths: Sequence[Path]) -> list[SourceRun]:
    runs = []
    for path in paths:
        runs.append(SourceRun(str(path), record_from_json(read_text_file(path), str(path))))
    return runs


def build_profile(
    runs: Sequence[SourceRun], key: str | None = None, name: str | None = None
) -> Built:
    if not runs:
        raise InputError("profile build", "RUNS", "expected at least one run record")
    _check_one_model(runs)
    warnings: list[str] = []
    cards = sorted({run.card for run in runs})
    if len(cards) < MIN_FLEET_CARDS:
        warnings.append(
            f"only {len(cards)} card(s): spreads are floored at a {PRIOR_SPREAD:.0%} prior "
            f"(at least {MIN_FLEET_CARDS} cards for a fleet-measured spread)"
        )
    base = match_profile(runs[0].record.identity, builtin_profiles())
    metrics: dict[str, ProfileMetric] = {}
    for metric_key, per_card, conditions, higher, unit in _per_card_values(runs, warnings):
        kept, rejected = reject_outliers(per_card)
        median = statistics.median(per_card.values())
        for card in rejected:
            warnings.append(
                f"{metric_key}: card {card} rejected as an outlier "
                f"({per_card[card]:.4g} {unit} against the median {median:.4g})"
            )
        center, spread, prior = center_and_spread(list(kept.values()))
        if center <= 0:  # a zero rate (a broken record) is no reference, and cannot be written
            warnings.append(f"{metric_key}: median {center:.4g} {unit} is not positive: left out")
            continue
        reference = base.metric(*metric_key.split(".", 1)) if base else None
        metrics[metric_key] = ProfileMetric(
            center=center,
            spread=spread,
            n=len(kept),
            source=f"median of {len(kept)} card(s)"
            + (f", {len(rejected)} outlier(s) rejected" if rejected else "")
            + ("; spread is a prior" if prior else "; spread 1.4826 MAD"),
            higher_is_better=higher,
            published_peak=reference.published_peak if reference else None,
            conditions=dict(conditions),
        )
    if not metrics:
        raise InputError(
            "profile build", "RUNS", "no passed test in the runs: nothing to build from"
        )
    identity = runs[0].record.identity
    memory = [
        r.record.identity.memory_total_bytes for r in runs if r.record.identity.memory_total_bytes
    ]
    dates = sorted(r.record.started_at[:10] for r in runs)
    profile = Profile(
        key=key or _slug(identity.name),
        name=name or identity.name,
        nvml_names=tuple(sorted({r.record.identity.name for r in runs})),
        memory_gib=round(statistics.median(memory) / 2**30, 1)
        if memory
        else (base.memory_gib if base else 1.0),
        source=f"fleet-measured by gpuhealth profile build: {len(runs)} run(s) of {len(cards)} "
        f"card(s), {dates[0]} to {dates[-1]}"
        + ("; spreads are priors" if len(cards) < MIN_FLEET_CARDS else ""),
        cards=len(cards),
        source_runs=tuple(run.label for run in runs),
        vbios_versions=tuple(sorted({v for r in runs if (v := r.record.identity.vbios)})),
        metrics=metrics,
        thermal=_thermal(runs, warnings),
    )
    return Built(profile, tuple(warnings))


def render_built(profile: Profile) -> str:
    header = [
        f"Reference profile: {profile.name}, built by `gpuhealth profile build` from the runs in",
        "source_runs (cards the user trusts). Per metric: the median over cards (each card the",
        "median of its runs), outliers beyond a modified z of 3.5 rejected, spread 1.4826 MAD.",
        *wrap_comment(profile.source),
    ]
    return render_profile(profile, header)


def write_profile(path: Path, text: str) -> None:
    """Check that text loads back as a profile, then replace path atomically (no lost data)."""
    validate(Profile, parse_toml(text, str(path)), str(path), text)
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise InputError(str(path), None, f"cannot write the profile ({exc.strerror})") from exc


def reject_outliers(per_card: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """(cards kept, cards rejected) by the modified z-score; nothing is rejected below 3 cards."""
    if len(per_card) < 3:
        return dict(per_card), []
    center, mad = stats.robust_center_spread(list(per_card.values()))
    # The scale is floored like the profile's spread: cards that happen to agree to 0.1% (or
    # exactly, MAD 0) must not make a card 0.4% off an "outlier" (a jump at MAD 0, and healthy
    # cards rejected that the built profile itself puts well inside its spread).
    scale = max(mad, SPREAD_FLOOR * abs(center))
    rejected = [
        c
        for c, v in per_card.items()
        if (abs(v - center) / scale > OUTLIER_Z if scale > 0 else v != center)
    ]
    kept = {c: v for c, v in per_card.items() if c not in rejected}
    return kept, sorted(rejected)


def center_and_spread(values: list[float]) -> tuple[float, float, bool]:
    """(centre, spread, spread_is_prior) of the kept cards' values."""
    center = statistics.median(values)
    spread = stats.robust_center_spread(values)[1] if len(values) > 1 else 0.0
    spread = max(spread, SPREAD_FLOOR * abs(center))
    prior = len(values) < MIN_FLEET_CARDS
    if prior:
        spread = max(spread, PRIOR_SPREAD * abs(center))
    return _round(center), _round(spread), prior


def _per_card_values(
    runs: Sequence[SourceRun], warnings: list[str]
) -> list[tuple[str, dict[str, float], Condition, bool, str]]:
    """Per metric: card -> median of its runs' estimates, the conditions, direction and unit."""
    values: dict[tuple[str, Condition], dict[str, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    direction: dict[str, tuple[bool, str]] = {}
    order: list[str] = []
    for run in runs:
        derived = efficiency_test(run.record.tests)
        for test in run.record.tests + ((derived,) if derived else ()):
            if test.status != "passed":
                if test.status != "skipped":
                    warnings.append(f"{run.label}: test {test.name} {test.status}: not used")
                continue
            for metric in test.metrics:
                if not metric.values or (test.name, metric.name) in NOT_JUDGED:
                    continue
                metric_key = f"{test.name}.{metric.name}"
                names = CONDITION_PARAMETERS.get(metric_key, ())
                condition: Condition = tuple(
                    (n, test.parameters[n])
                    for n in names
                    if isinstance(test.parameters.get(n), bool | int | float | str)
                )
                values[(metric_key, condition)][run.card].append(
                    stats.estimate(metric.values).value
                )
                direction[metric_key] = (metric.higher_is_better, metric.unit)
                if metric_key not in order:
                    order.append(metric_key)
    rows = []
    for metric_key in order:
        groups = {cond: cards for (k, cond), cards in values.items() if k == metric_key}
        chosen = max(groups, key=lambda cond: (len(groups[cond]), cond))
        for cond, cards in groups.items():
            if cond != chosen:
                warnings.append(
                    f"{metric_key}: {len(cards)} card(s) measured with {dict(cond)} left out "
                    f"(most were measured with {dict(chosen)})"
                )
        per_card = {card: statistics.median(v) for card, v in sorted(groups[chosen].items())}
        higher, unit = direction[metric_key]
        rows.append((metric_key, per_card, chosen, higher, unit))
    return rows


def _thermal(runs: Sequence[SourceRun], warnings: list[str]) -> ProfileThermal | None:
    per_card: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        soak = run.record.analysis.soak if run.record.analysis else None
        if soak is not None and soak.thermal_resistance_c_per_w is not None:
            per_card[run.card].append(soak.thermal_resistance_c_per_w)
    if not per_card:
        return None
    kept, rejected = reject_outliers({c: statistics.median(v) for c, v in per_card.items()})
    for card in rejected:
        warnings.append(f"thermal resistance: card {card} rejected as an outlier")
    value = statistics.median(kept.values())
    return ProfileThermal(
        c_per_w=round(value, 5),
        source=f"median soak thermal resistance of {len(kept)} card(s) (gpuhealth profile build)",
    )


def _check_one_model(runs: Sequence[SourceRun]) -> None:
    first = runs[0].record.identity
    for run in runs[1:]:
        identity = run.record.identity
        if identity.name.strip().lower() != first.name.strip().lower():
            raise InputError(
                run.path,
                "identity.name",
                f"expected {first.name!r} like {runs[0].path}: one profile is one model, "
                f"got {identity.name!r}",
            )
        a, b = first.memory_total_bytes, identity.memory_total_bytes
        if a and b and abs(a - b) > MEMORY_MATCH_TOLERANCE * a:
            raise InputError(
                run.path,
                "identity.memory_total_bytes",
                f"expected about {a / 2**30:.0f} GiB like {runs[0].path}, got {b / 2**30:.0f} GiB",
            )


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "profile"


def _round(value: float) -> float:
    return float(f"{value:.5g}")
