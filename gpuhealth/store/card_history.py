"""What the results database knows of a card, held against a new run: the history facts.

A pure function of the stored runs of this card (found by serial and by UUID) and the new record;
gpuhealth/store/database.py looks the runs up, gpuhealth/judge/findings.py turns the facts into
findings (`card_identity_changed`, `card_counters_decreased`) and the policy grades them. The facts
are stored in the record (RunRecord.stored_history) before it is judged, so the judgement stays a
function of the signed record: verify re-judges it to the same grade with no database.

Facts:
  - identity: a stored run has this serial with another UUID, or this UUID with another serial
    (a card relabelled, a swapped board, or a serial typed into a sim spec twice);
  - counter: a counter that never goes down on one card (remapped rows, retired pages, lifetime
    ECC counts) is lower than in the card's latest earlier stored run: an InfoROM reset (aggregate
    ECC counts can be cleared by root) or another card under this serial/UUID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from gpuhealth.models import HealthCounters, HistoryFact, RunRecord, StoredHistory

# Counters that only ever grow on one card (DESIGN.md: remapped rows and the bank histogram cannot
# be cleared; aggregate ECC counts can, by root, which is exactly what a drop reveals).
MONOTONIC_COUNTERS: tuple[str, ...] = (
    "remapped_rows_correctable",
    "remapped_rows_uncorrectable",
    "retired_pages_sbe",
    "retired_pages_dbe",
    "ecc_aggregate_corrected",
    "ecc_aggregate_uncorrected",
)


@dataclass(frozen=True)
class PriorRun:
    """A stored run of the card, as far as the history check needs it."""

    run_id: str
    started_at: datetime  # naive UTC, as the database keeps times
    serial: str | None
    uuid: str | None
    counters: Mapping[str, int | None] = field(default_factory=dict)


def counters_of(record: RunRecord) -> dict[str, int | None]:
    """The monotonic counters of a record: after the run, else before (as the store keeps them)."""
    return counter_map(record.counters_after, record.counters_before)


def counter_map(
    after: HealthCounters | None, before: HealthCounters | None
) -> dict[str, int | None]:
    values: dict[str, int | None] = {}
    for name in MONOTONIC_COUNTERS:
        late = getattr(after, name) if after is not None else None
        values[name] = late if late is not None else (getattr(before, name) if before else None)
    return values


def history_facts(
    prior: Sequence[PriorRun], record: RunRecord, database: str | None = None
) -> StoredHistory:
    """The stored history of the card held against `record`: the runs stored before it (the
    record's own run id is never compared with itself)."""
    started = utc_naive(record.started_at)
    earlier = sorted(
        (p for p in prior if p.run_id != record.run_id and p.started_at <= started),
        key=lambda p: (p.started_at, p.run_id),
    )
    facts = _identity_facts(earlier, record) + _counter_facts(earlier, record)
    return StoredHistory(checked=True, database=database, prior_runs=len(earlier), facts=facts)


def utc_naive(iso: str) -> datetime:
    """An ISO 8601 time as naive UTC (a time without zone is UTC); ValueError if it is not one."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def not_checked(why: str, database: str | None = None) -> StoredHistory:
    """The record's note when the database could not be read: nothing compared, nothing found."""
    return StoredHistory(checked=False, database=database, note=why)


def _identity_facts(earlier: Sequence[PriorRun], record: RunRecord) -> tuple[HistoryFact, ...]:
    serial, uuid = record.identity.serial, record.identity.uuid
    facts: list[HistoryFact] = []
    other_uuid = [p for p in earlier if serial and p.serial == serial and p.uuid and uuid]
    other_uuid = [p for p in other_uuid if p.uuid != uuid]
    if other_uuid:
        last = other_uuid[-1]
        facts.append(
            HistoryFact("identity", "identity.uuid", str(last.uuid), str(uuid), last.run_id)
        )
    other_serial = [p for p in earlier if uuid and p.uuid == uuid and p.serial and serial]
    other_serial = [p for p in other_serial if p.serial != serial]
    if other_serial:
        last = other_serial[-1]
        facts.append(
            HistoryFact("identity", "identity.serial", str(last.serial), str(serial), last.run_id)
        )
    return tuple(facts)


def _counter_facts(earlier: Sequence[PriorRun], record: RunRecord) -> tuple[HistoryFact, ...]:
    """Each counter against the latest earlier run that read it."""
    now = counters_of(record)
    facts = []
    for name in MONOTONIC_COUNTERS:
        read = [p for p in earlier if p.counters.get(name) is not None]
        after = now.get(name)
        if not read or after is None:
            continue
        last = read[-1]
        before = last.counters[name]
        if before is not None and after < before:
            facts.append(HistoryFact("counter", name, str(before), str(after), last.run_id))
    return tuple(facts)


__all__ = ["MONOTONIC_COUNTERS", "PriorRun", "counters_of", "history_facts", "not_checked"]
