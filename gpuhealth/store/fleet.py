"""The fleet from the results database: each card's latest and worst grade, its flags, the rigs.

Pure functions of the stored runs (database.py loads them, one row per run): no database here, so
every rule is tested on plain rows.

  - a card's latest grade is its most recent run's; its worst grade is the worst of its runs in
    the window (`--since`): a card graded F and then D is a card that was F;
  - flags are facts about the card's whole history: its serial seen with two UUIDs, its UUID with
    two serials, a counter that never goes down (remapped rows, retired pages, lifetime ECC) that
    went down between two runs;
  - a host whose cards run hot (or cold) together is a rig problem, not a card problem: flagged
    when at least RIG_MIN_CARDS cards measured there have a median thermal ratio outside
    [RIG_RATIO_LOW, RIG_RATIO_HIGH].
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gpuhealth.store.card_history import MONOTONIC_COUNTERS

# worst first; a missing grade counts as INCOMPLETE (as the grade command's exit code does)
GRADE_ORDER: tuple[str, ...] = ("F", "D", "INCOMPLETE", "C", "B", "A")
WORST_GRADES = frozenset({"F", "D", "INCOMPLETE", "C"})
COUNTERS_DOWN = "counters went down"
IDENTITY_CHANGED = "identity changed"
# A rig flag needs cards that agree: one hot card is that card's paste, two or more on one host
# running hot together point at the host (airflow, fans, slot). The ratio is the card's fitted
# thermal resistance over its model's reference (SoakSummary); healthy cards spread by about 5%
# (the policy's thermal-resistance-above-model rule starts at 1.15), so a median beyond +15% is
# past what healthy cards do together; the low side is its reciprocal (1/1.15 = 0.87): cards
# uniformly far cooler than their model mean an unusual rig (chilled air, a test fixture) whose
# grades flatter the cards.
RIG_MIN_CARDS = 2
RIG_RATIO_HIGH = 1.15
RIG_RATIO_LOW = 0.87


@dataclass(frozen=True)
class FleetRun:
    """One stored run as the fleet views need it."""

    run_pk: int
    run_id: str
    card_id: int
    started_at: datetime  # naive UTC
    grade: str  # INCOMPLETE when the run has none
    host: str
    backend: str
    serial: str | None  # the run's own (the card row keeps the first seen)
    uuid: str | None
    model: str
    thermal_ratio: float | None = None
    remapped_rows: int | None = None
    counters: Mapping[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class CardSummary:
    serial: str | None
    uuid: str | None
    model: str
    host: str
    simulated: bool
    runs: int
    latest_grade: str
    latest_run_id: str
    latest_at: datetime
    worst_grade: str  # the worst within the window
    worst_run_id: str
    worst_at: datetime
    remapped_rows: int | None  # in the worst run
    flags: tuple[str, ...] = ()
    worst_run_pk: int = 0


@dataclass(frozen=True)
class RigFlag:
    host: str
    median_ratio: float
    cards: int

    @property
    def message(self) -> str:
        return (
            f"host {self.host}: median thermal ratio {self.median_ratio:.2f} over {self.cards} "
            "cards — check the rig (airflow, fans, slot), not the cards"
        )


def grade_rank(grade: str) -> int:
    return GRADE_ORDER.index(grade) if grade in GRADE_ORDER else len(GRADE_ORDER)


def card_summaries(runs: Iterable[FleetRun], since: datetime | None = None) -> list[CardSummary]:
    """One summary per card with a run in the window (all cards when `since` is None), sorted by
    serial / UUID. Flags look at every run of the card, in the window or not."""
    by_card: dict[int, list[FleetRun]] = {}
    for run in sorted(runs, key=lambda r: (r.started_at, r.run_pk)):
        by_card.setdefault(run.card_id, []).append(run)
    serials_of_uuid: dict[str, set[str]] = {}
    for run in (r for card in by_card.values() for r in card):
        if run.uuid and run.serial:
            serials_of_uuid.setdefault(run.uuid, set()).add(run.serial)
    out = []
    for card_runs in by_card.values():
        window = [r for r in card_runs if since is None or r.started_at >= since]
        if window:
            out.append(_summarise(card_runs, window, serials_of_uuid))
    return sorted(out, key=lambda c: (c.serial or "", c.uuid or "", c.latest_run_id))


def _summarise(
    card_runs: Sequence[FleetRun], window: Sequence[FleetRun], serials_of_uuid: dict[str, set[str]]
) -> CardSummary:
    latest = window[-1]
    worst = min(reversed(window), key=lambda r: grade_rank(r.grade))  # the latest of the worst
    return CardSummary(
        serial=latest.serial,
        uuid=latest.uuid,
        model=latest.model,
        host=latest.host,
        simulated=latest.backend == "sim",
        runs=len(card_runs),
        latest_grade=latest.grade,
        latest_run_id=latest.run_id,
        latest_at=latest.started_at,
        worst_grade=worst.grade,
        worst_run_id=worst.run_id,
        worst_at=worst.started_at,
        remapped_rows=worst.remapped_rows,
        flags=card_flags(card_runs, serials_of_uuid),
        worst_run_pk=worst.run_pk,
    )


def card_flags(
    card_runs: Sequence[FleetRun], serials_of_uuid: dict[str, set[str]]
) -> tuple[str, ...]:
    """The card's history flags (runs oldest first), each one line."""
    flags = []
    uuids = sorted({r.uuid for r in card_runs if r.uuid})
    if len(uuids) > 1:
        flags.append(f"{IDENTITY_CHANGED}: serial seen with UUIDs {', '.join(uuids)}")
    serials = sorted({s for u in uuids for s in serials_of_uuid.get(u, ())})
    if len(serials) > 1:
        flags.append(f"{IDENTITY_CHANGED}: UUID seen with serials {', '.join(serials)}")
    for previous, run in itertools.pairwise(card_runs):
        for name in MONOTONIC_COUNTERS:
            before, after = previous.counters.get(name), run.counters.get(name)
            if before is not None and after is not None and after < before:
                flags.append(
                    f"{COUNTERS_DOWN}: {name} {before} -> {after} at {run.run_id} "
                    "(counter reset or a different card)"
                )
    return tuple(flags)


def worst_cards(cards: Iterable[CardSummary], limit: int) -> list[CardSummary]:
    """Cards whose worst grade in the window is C or worse, or that carry a flag: worst grade
    first, then flagged, more remapped rows, most recent."""
    listed = [c for c in cards if c.worst_grade in WORST_GRADES or c.flags]
    listed.sort(
        key=lambda c: (
            grade_rank(c.worst_grade),
            not c.flags,
            -(c.remapped_rows or 0),
            -c.worst_at.timestamp(),
            c.worst_run_id,
        )
    )
    return listed[: max(limit, 0)]


def rig_flags(runs: Iterable[FleetRun], since: datetime | None = None) -> list[RigFlag]:
    """Hosts whose cards' median thermal ratio is off (each card counted once: its latest run on
    that host with a ratio, in the window)."""
    latest: dict[tuple[str, int], FleetRun] = {}
    for run in sorted(runs, key=lambda r: (r.started_at, r.run_pk)):
        if run.thermal_ratio is not None and (since is None or run.started_at >= since):
            latest[(run.host, run.card_id)] = run
    by_host: dict[str, list[float]] = {}
    for (host, _card), run in latest.items():
        assert run.thermal_ratio is not None
        by_host.setdefault(host, []).append(run.thermal_ratio)
    flags = []
    for host in sorted(by_host):
        ratios = by_host[host]
        median = statistics.median(ratios)
        if len(ratios) >= RIG_MIN_CARDS and not RIG_RATIO_LOW <= median <= RIG_RATIO_HIGH:
            flags.append(RigFlag(host, round(median, 4), len(ratios)))
    return flags


def counts_by_model(cards: Iterable[CardSummary]) -> dict[str, dict[str, int]]:
    """model -> latest grade -> cards."""
    counts: dict[str, dict[str, int]] = {}
    for card in cards:
        per_model = counts.setdefault(card.model, {})
        per_model[card.latest_grade] = per_model.get(card.latest_grade, 0) + 1
    return {m: counts[m] for m in sorted(counts)}
