"""`gpuhealth profile build`: a reference profile from the runs of cards the user trusts.

Per metric:
1. each run's estimate is the median of its repetitions (stats.estimate);
2. each card (by UUID, else serial) counts once: the median of its runs, so a card graded five
   times does not outweigh four cards graded once;
3. outliers are rejected with the modified z-score |x - median| / (1.4826 MAD) > 3.5
   (Iglewicz & Hoaglin), the MAD floored at SPREAD_FLOOR of the median as the spread is in 4:
   a bad card in the set cannot move the reference, and a card is not an outlier for a
   difference below measurement resolution;
4. centre = median of the n cards kept; spread = the sample's spread shrunk toward the metric's
   prior (profiles.prior_spread: 3% of the centre for the power-capped soak metrics, 2% for the
   rest), as a pooled variance with PRIOR_CARDS pseudo-cards of prior weight:

       sample = 1.4826 MAD x b_n          (b_n: the MAD's small-sample factor, mad_consistency)
       spread = sqrt((k prior^2 + (n-1) sample^2) / (k + n - 1)),   k = PRIOR_CARDS

   floored at SPREAD_FLOOR of the centre (identical cards must not make every tiny deviation
   "significant"); with fewer than MIN_FLEET_CARDS cards also floored at the prior, and the
   profile says so. Each metric's source says how its spread was made.
The [identity] registry (gpuhealth/judge/registry.py) is what the trusted cards reported: every PCI
id and board part number any of them had, and each number (SM count, bus width, max clocks, power
limits) on which they all agree; one they disagree on is left out with a warning.
Only tests that passed are used; metrics measured under other conditions (e.g. another GEMM size)
than most cards' are left out with a warning.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gpuhealth.atomicfile import write_atomic
from gpuhealth.datafiles import parse_toml, read_text_file, validate
from gpuhealth.errors import InputError
from gpuhealth.judge import stats
from gpuhealth.judge.efficiency import efficiency_test
from gpuhealth.judge.profiles import (
    MEMORY_MATCH_TOLERANCE,
    MIN_FLEET_CARDS,
    NOT_JUDGED,
    POWER_CAPPED_PRIOR_SPREAD,
    PRIOR_SPREAD,
    Profile,
    ProfileIdentity,
    ProfileMetric,
    ProfileThermal,
    builtin_profiles,
    match_profile,
    prior_spread,
)
from gpuhealth.judge.profiles.render import render_profile, wrap_comment
from gpuhealth.models import RunRecord, record_from_json

OUTLIER_Z = 3.5
SPREAD_FLOOR = 0.01  # below this the spread is measurement resolution, not card-to-card spread
# The prior's weight in the pooled spread, in cards (degrees of freedom). Why 10: the priors are
# known to about +-20% (2% sits between the 1.4-1.7% differences measured, 3% is a judgement on
# Sinha et al.'s variation), and a variance with 10 degrees of freedom has a relative SD of
# sqrt(2/10) = 45%, its square root about 22%. So a few cards cannot move a spread far from the
# prior (5 cards at twice the prior: 1.4x the prior), the sample has half the weight at 11 cards
# and two thirds at 20 (where the prior floor ends), and 200 cards outweigh the prior 20 to 1.
PRIOR_CARDS = 10
# b_n: 1.4826 MAD x b_n is unbiased for a normal SD at n values (Croux & Rousseeuw 1992, "Time-
# efficient algorithms for two highly robust estimators of scale"); n/(n - 0.8) above 9.
MAD_SMALL_SAMPLE = {2: 1.196, 3: 1.495, 4: 1.363, 5: 1.206, 6: 1.200, 7: 1.140, 8: 1.129, 9: 1.107}
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


# The PCIe copy rates are the host's (slot, chipset, CPU, NUMA) as much as the card's: they are
# judged against the link's own theoretical rate (findings_links.py), never a model profile.
HOST_BOUND_TESTS = ("pcie",)


def load_runs(paths: Sequence[Path]) -> list[SourceRun]:
    runs = []
    for path in paths:
        runs.append(SourceRun(str(path), record_from_json(read_text_file(path), str(path))))
    return runs


def build_profile(
    runs: Sequence[SourceRun],
    key: str | None = None,
    name: str | None = None,
    rig: str | None = None,
) -> Built:
    if not runs:
        raise InputError("profile build", "RUNS", "expected at least one run record")
    _check_one_model(runs)
    warnings: list[str] = []
    cards = sorted({run.card for run in runs})
    if len(cards) < MIN_FLEET_CARDS:
        warnings.append(
            f"only {len(cards)} card(s): spreads are floored at their priors "
            f"({PRIOR_SPREAD:.0%} of the centre, {POWER_CAPPED_PRIOR_SPREAD:.0%} for the "
            f"power-capped soak metrics; at least {MIN_FLEET_CARDS} cards for a fleet-measured "
            "spread)"
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
        made = center_and_spread(list(kept.values()), prior_spread(metric_key))
        center = made.center
        if center <= 0:  # a zero rate (a broken record) is no reference, and cannot be written
            warnings.append(f"{metric_key}: median {center:.4g} {unit} is not positive: left out")
            continue
        reference = base.metric(*metric_key.split(".", 1)) if base else None
        metrics[metric_key] = ProfileMetric(
            center=center,
            spread=made.spread,
            n=len(kept),
            source=f"median of {len(kept)} card(s)"
            + (f", {len(rejected)} outlier(s) rejected" if rejected else "")
            + f"; {made.how}",
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
        + (
            f"; spreads are priors (fewer than {MIN_FLEET_CARDS} cards)"
            if len(cards) < MIN_FLEET_CARDS
            else ""
        ),
        cards=len(cards),
        source_runs=tuple(run.label for run in runs),
        vbios_versions=tuple(sorted({v for r in runs if (v := r.record.identity.vbios)})),
        identity=_identity(runs, len(cards), warnings),
        metrics=metrics,
        thermal=_thermal(runs, warnings, rig),
    )
    return Built(profile, tuple(warnings))


IDENTITY_NUMBERS = (
    "sm_count",
    "memory_bus_width_bits",
    "max_sm_clock_mhz",
    "max_memory_clock_mhz",
    "power_limit_default_w",
    "power_limit_max_w",
)


def _identity(runs: Sequence[SourceRun], cards: int, warnings: list[str]) -> ProfileIdentity | None:
    """What the trusted cards reported: the registry a card graded against the profile is held
    to (gpuhealth/judge/registry.py)."""
    identities = [run.record.identity for run in runs]
    fields: dict[str, object] = {}
    for name in IDENTITY_NUMBERS:
        values = sorted({float(v) for i in identities if (v := getattr(i, name)) is not None})
        if len(values) == 1:
            fields[name] = values[0]
        elif values:
            shown = ", ".join(f"{v:g}" for v in values)
            warnings.append(f"identity.{name}: the cards report {shown}; not checked")
    for name, field in (
        ("pci_device_id", "pci_device_ids"),
        ("pci_subsystem_id", "pci_subsystem_ids"),
        ("board_part_number", "board_part_numbers"),
    ):
        seen = {str(v) for i in identities if (v := getattr(i, name))}
        if seen:
            fields[field] = sorted(seen)
    if not fields:
        return None
    fields["source"] = f"reported by the {cards} card(s) the profile was built from"
    return ProfileIdentity.model_validate(fields)


def render_built(profile: Profile) -> str:
    header = wrap_comment(
        f"Reference profile: {profile.name}, built by `gpuhealth profile build` from the runs in "
        "source_runs (cards the user trusts). Per metric: the median over cards (each card the "
        "median of its runs), outliers beyond a modified z of 3.5 rejected; spread 1.4826 MAD x "
        f"b_n shrunk toward the metric's prior ({PRIOR_SPREAD:.0%} of the centre, "
        f"{POWER_CAPPED_PRIOR_SPREAD:.0%} for the power-capped soak metrics) with the weight of "
        f"{PRIOR_CARDS} cards, floored at {SPREAD_FLOOR:.0%} and, below {MIN_FLEET_CARDS} cards, "
        "at the prior."
    )
    header += wrap_comment(profile.source)
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


@dataclass(frozen=True)
class CenterSpread:
    center: float
    spread: float
    prior: bool  # fewer than MIN_FLEET_CARDS cards: the spread is floored at the prior
    how: str  # how the spread was made, for the metric's source


def mad_consistency(n: int) -> float:
    """b_n, the small-sample factor of 1.4826 MAD over n >= 2 values (Croux & Rousseeuw 1992)."""
    if n < 2:
        raise ValueError(f"a MAD needs at least 2 values, got {n}")
    return MAD_SMALL_SAMPLE.get(n, n / (n - 0.8))


def shrunk_spread(sample: float, prior: float, n: int) -> float:
    """n cards' sample SD pooled with a prior SD worth PRIOR_CARDS cards (same units)."""
    k = PRIOR_CARDS
    return math.sqrt((k * prior**2 + (n - 1) * sample**2) / (k + n - 1))


def center_and_spread(values: list[float], prior: float) -> CenterSpread:
    """Centre and spread of the kept cards' values; prior: the metric's, relative to the centre."""
    n = len(values)
    center = statistics.median(values)
    prior_abs = prior * abs(center)
    sample = stats.robust_center_spread(values)[1] * mad_consistency(n) if n > 1 else 0.0
    spread = shrunk_spread(sample, prior_abs, n)
    how = (
        f"spread 1.4826 MAD x b_n shrunk toward the {prior:.0%} prior "
        f"(weight of {PRIOR_CARDS} cards)"
    )
    is_prior = n < MIN_FLEET_CARDS
    if is_prior and spread <= prior_abs:
        spread = prior_abs
        how = f"spread is a prior: {prior:.0%} of the centre (fewer than {MIN_FLEET_CARDS} cards)"
    elif is_prior:
        how += f", above the prior (its floor below {MIN_FLEET_CARDS} cards)"
    if spread < SPREAD_FLOOR * abs(center):
        spread = SPREAD_FLOOR * abs(center)
        how = f"spread floored at {SPREAD_FLOOR:.0%} of the centre (measurement resolution)"
    return CenterSpread(_round(center), _round(spread), is_prior, how)


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
            if test.name in HOST_BOUND_TESTS:
                continue
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


def _thermal(
    runs: Sequence[SourceRun], warnings: list[str], rig: str | None
) -> ProfileThermal | None:
    """The thermal reference of the runs' rig (gpuhealth/judge/thermal_reference.py): per preset,
    the median of each card's median; the value of the preset most cards ran as the default; the
    run-to-run SD where cards were graded more than once with one preset. The rig is `rig`, else
    the runs' host when they all ran on one, else none (a model-wide reference)."""
    by_preset: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        soak = run.record.analysis.soak if run.record.analysis else None
        if soak is not None and soak.thermal_resistance_c_per_w is not None:
            by_preset[run.record.preset][run.card].append(soak.thermal_resistance_c_per_w)
    if not by_preset:
        return None
    presets: dict[str, float] = {}
    kept_cards: dict[str, int] = {}
    for preset, per_card in sorted(by_preset.items()):
        kept, rejected = reject_outliers({c: statistics.median(v) for c, v in per_card.items()})
        for card in rejected:
            warnings.append(f"thermal resistance ({preset}): card {card} rejected as an outlier")
        presets[preset] = round(statistics.median(kept.values()), 5)
        kept_cards[preset] = len(kept)
    runs_of = {preset: sum(map(len, per_card.values())) for preset, per_card in by_preset.items()}
    main = max(presets, key=lambda preset: (kept_cards[preset], runs_of[preset], preset))
    hosts = {run.record.host for run in runs}
    where = rig if rig is not None else (hosts.pop() if len(hosts) == 1 else None)
    return ProfileThermal(
        c_per_w=presets[main],
        source=f"median soak thermal resistance of {kept_cards[main]} card(s), preset {main}"
        + (f", in rig {where}" if where else ", in several rigs")
        + " (gpuhealth profile build)",
        cards=kept_cards[main],
        rig=where,
        presets=presets,
        run_to_run=_run_to_run(by_preset),
    )


def _run_to_run(by_preset: dict[str, dict[str, list[float]]]) -> float | None:
    """The pooled SD of log resistance between runs of one card with one preset (None: no card
    was graded twice with one preset)."""
    squares, dof = 0.0, 0
    for per_card in by_preset.values():
        for values in per_card.values():
            if len(values) >= 2:
                logs = [math.log(v) for v in values]
                mean = statistics.fmean(logs)
                squares += sum((x - mean) ** 2 for x in logs)
                dof += len(logs) - 1
    return round(math.sqrt(squares / dof), 4) if dof else None


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
