"""What the results database answers, as plain values: a card's history, the fleet summary,
an import's report, and their JSON; the history flags (a counter that went down, a changed
identity). No database here: gpuhealth/store/database.py fills them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gpuhealth.errors import InputError
from gpuhealth.store.card_history import MONOTONIC_COUNTERS
from gpuhealth.store.fleet import CardSummary, RigFlag

# what a history flag tells the user to think of
REMAP_DOWN = "counter reset or a different card"
COUNTER_DOWN = "an InfoROM reset or a different card"
ID_CHANGED = "check it is the card you think"


@dataclass(frozen=True)
class HistoryRun:
    run_id: str
    started_at: datetime
    preset: str
    backend: str
    grade: str
    disposition: str | None
    complete: bool
    remapped_rows_correctable: int | None
    remapped_rows_uncorrectable: int | None
    remapped_rows_pending: bool | None
    ecc_aggregate_uncorrected: int | None
    key_metrics: dict[str, float | None]
    flags: tuple[str, ...] = ()
    serial: str | None = None
    uuid: str | None = None
    host: str = ""
    counters: dict[str, int | None] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class CardHistory:
    query: str
    serials: tuple[str, ...]
    models: tuple[str, ...]
    runs: tuple[HistoryRun, ...]

    @property
    def warnings(self) -> list[str]:
        return [f"{run.run_id}: {flag}" for run in self.runs for flag in run.flags]


@dataclass(frozen=True)
class WorstCard:
    serial: str | None
    uuid: str | None
    model: str
    run_id: str  # the run of the worst grade (within the window)
    started_at: datetime
    grade: str  # the worst grade within the window
    remapped_rows: int | None
    reasons: tuple[str, ...]
    latest_grade: str = ""
    latest_run_id: str = ""
    host: str = ""
    simulated: bool = False
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class FleetSummary:
    database: str
    cards: int  # cards with a run in the window
    runs: int  # runs in the window
    counts: dict[str, dict[str, int]]  # model -> latest grade -> cards
    worst: tuple[WorstCard, ...]
    since: datetime | None = None  # the window's start (naive UTC); None: every run
    rigs: tuple[RigFlag, ...] = ()
    flagged: int = 0  # cards with a history flag


@dataclass(frozen=True)
class ImportReport:
    added: list[tuple[Path, str]] = dataclasses.field(default_factory=list)
    updated: list[tuple[Path, str]] = dataclasses.field(default_factory=list)
    skipped: list[tuple[Path, str, str]] = dataclasses.field(default_factory=list)  # path, id, why
    invalid: list[tuple[Path, str]] = dataclasses.field(default_factory=list)  # path, message


def worst_card(card: CardSummary, reasons: Iterable[str]) -> WorstCard:
    return WorstCard(
        serial=card.serial,
        uuid=card.uuid,
        model=card.model,
        run_id=card.worst_run_id,
        started_at=card.worst_at,
        grade=card.worst_grade,
        remapped_rows=card.remapped_rows,
        reasons=tuple(reasons),
        latest_grade=card.latest_grade,
        latest_run_id=card.latest_run_id,
        host=card.host,
        simulated=card.simulated,
        flags=card.flags,
    )


def parse_time(value: str) -> datetime:
    """ISO 8601 -> naive UTC (the database's one convention); a time without zone is UTC."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError("run record", "started_at", f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def remap_decrease(previous: HistoryRun, run: HistoryRun) -> tuple[str, ...]:
    """Remapped rows never go down on one card: a drop means a counter reset or another card."""
    flags = []
    for kind, before, after in (
        ("correctable", previous.remapped_rows_correctable, run.remapped_rows_correctable),
        ("uncorrectable", previous.remapped_rows_uncorrectable, run.remapped_rows_uncorrectable),
    ):
        if before is not None and after is not None and after < before:
            flags.append(
                f"remapped rows ({kind}) went down from {before} to {after} since "
                f"{previous.run_id}: {REMAP_DOWN}"
            )
    return tuple(flags)


def other_decrease(previous: HistoryRun, run: HistoryRun) -> tuple[str, ...]:
    """Retired pages and lifetime ECC counts that went down (remapped rows: remap_decrease)."""
    flags = []
    for name in MONOTONIC_COUNTERS:
        if name.startswith("remapped_rows"):
            continue
        before, after = previous.counters.get(name), run.counters.get(name)
        if before is not None and after is not None and after < before:
            flags.append(
                f"{name} went down from {before} to {after} since {previous.run_id}: {COUNTER_DOWN}"
            )
    return tuple(flags)


def identity_change(previous: HistoryRun, run: HistoryRun) -> tuple[str, ...]:
    """The card's serial or UUID differs from its previous run's."""
    flags = []
    for name, before, after in (
        ("UUID", previous.uuid, run.uuid),
        ("serial", previous.serial, run.serial),
    ):
        if before and after and before != after:
            flags.append(
                f"{name} changed from {before} to {after} since {previous.run_id}: {ID_CHANGED}"
            )
    return tuple(flags)


def summary_to_json(summary: FleetSummary) -> dict[str, Any]:
    data = dataclasses.asdict(summary)
    for card in data["worst"]:
        card["started_at"] = iso_utc(card["started_at"])
    data["since"] = iso_utc(summary.since) if summary.since else None
    data["rigs"] = [{**dataclasses.asdict(r), "message": r.message} for r in summary.rigs]
    return data


def cards_to_json(found: Sequence[CardSummary]) -> list[dict[str, Any]]:
    out = []
    for card in found:
        data = dataclasses.asdict(card)
        data.pop("worst_run_pk")
        for key in ("latest_at", "worst_at"):
            data[key] = iso_utc(data[key])
        out.append(data)
    return out


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """--since: an ISO date or time (UTC when it has no zone), or a duration back from now:
    30d, 12h, 2w, 90m. Returns naive UTC; ValueError with what was expected."""
    value = value.strip()
    units_s = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    if value[:-1].isdigit() and value[-1:] in units_s:
        moment = now or datetime.now(timezone.utc).replace(tzinfo=None)
        return moment - timedelta(seconds=int(value[:-1]) * units_s[value[-1]])
    try:
        return parse_time(value)
    except InputError:
        raise ValueError(
            f"expected an ISO date (2026-11-01), a time, or a duration like 30d, 12h, 2w, 90m; "
            f"got {value!r}"
        ) from None


def history_to_json(history: CardHistory) -> dict[str, Any]:
    data = dataclasses.asdict(history)
    for run in data["runs"]:
        run["started_at"] = iso_utc(run["started_at"])
    data["warnings"] = history.warnings
    return data


def iso_utc(moment: datetime) -> str:
    return moment.replace(tzinfo=timezone.utc).isoformat(timespec="seconds")
