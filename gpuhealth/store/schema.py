"""The results database's tables (the latest schema) and the numbered migrations that build it.

Why not Alembic: the schema is small and every `gpuhealth grade` process may be the first to open
a fresh database, several at once, on SQLite or PostgreSQL. The upgrade has to run under a
database-wide lock (BEGIN IMMEDIATE on SQLite, pg_advisory_xact_lock on PostgreSQL) and ship inside
the wheel with no script folder, env.py or Mako templates to find at run time. Alembic would need
a custom env.py for the lock, batch mode for SQLite ALTERs and a script location inside the
package; a versioned table with numbered functions written in SQLAlchemy Core (portable across both
dialects) is about a hundred lines and does exactly that. Each migration builds its own frozen
Table objects, so that later changes to the tables below never change what an old migration did.

Tables (latest):
  gpuhealth_schema  version, applied_at: one row per applied migration
  cards             one row per physical card (keyed by serial, else uuid, else the run)
  runs              one row per run record, unique run_id, with the full record JSON
  metrics           one row per metric comparison (the card against its reference)
  findings          one row per finding of the analysis
  run_counters      NVML health counters per run (after the run, else before)       [migration 2]
  grade_reasons     why the grade: one row per reason                                [migration 2]
  run_versions      earlier versions of a run (resumed, closed, re-signed, re-graded)  [migration 3]
Migration 3 also gives runs the content hash of the record, its version number, the run's serial,
UUID and simulated card (a card's identity may change between runs) and its thermal ratio, and
run_counters the retired pages (counters that never go down, for the history check).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    text,
    update,
)

from gpuhealth.errors import StoreError

SCHEMA_TABLE = "gpuhealth_schema"

# --------------------------------------------------------------------------------- latest schema
metadata = MetaData()

schema_versions = Table(
    SCHEMA_TABLE,
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime, nullable=False),
)

cards = Table(
    "cards",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("card_key", String(200), nullable=False, unique=True),
    Column("serial", String(100), index=True),
    Column("uuid", String(100), index=True),
    Column("model", String(200), nullable=False),
    Column("first_seen", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(200), nullable=False, unique=True),
    Column("card_id", Integer, ForeignKey("cards.id"), nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("preset", String(50), nullable=False),
    Column("backend", String(50), nullable=False),
    Column("host", String(200), nullable=False),
    Column("grade", String(20)),
    Column("disposition", Text),
    Column("complete", Boolean, nullable=False),
    Column("tool_version", String(50), nullable=False),
    Column("policy", String(200)),
    Column("added_at", DateTime, nullable=False),
    Column("record_json", Text, nullable=False),
    Column("content_sha256", String(64)),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("updated_at", DateTime),
    Column("serial", String(100)),
    Column("uuid", String(100)),
    Column("sim_card", String(500)),
    Column("thermal_ratio", Float),
    Index("ix_runs_card_started", "card_id", "started_at"),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_pk", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("test", String(100), nullable=False),
    Column("metric", String(100), nullable=False),
    Column("estimate", Float, nullable=False),
    Column("unit", String(50), nullable=False),
    Column("verdict", String(20), nullable=False),
    Column("z", Float),
    Column("relative_deviation", Float),
    Index("ix_metrics_run", "run_pk"),
)

findings = Table(
    "findings",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_pk", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("code", String(100), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("message", Text, nullable=False),
    Column("value", Text),
    Column("reference", Text),
    Index("ix_findings_run", "run_pk"),
)

run_counters = Table(
    "run_counters",
    metadata,
    Column(
        "run_pk",
        Integer,
        ForeignKey("runs.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("remapped_rows_correctable", Integer),
    Column("remapped_rows_uncorrectable", Integer),
    Column("remapped_rows_pending", Boolean),
    Column("ecc_aggregate_corrected", Integer),
    Column("ecc_aggregate_uncorrected", Integer),
    Column("retired_pages_sbe", Integer),
    Column("retired_pages_dbe", Integer),
)

grade_reasons = Table(
    "grade_reasons",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_pk", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("grade", String(20), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_grade_reasons_run", "run_pk"),
)

run_versions = Table(
    "run_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_sha256", String(64)),
    Column("grade", String(20)),
    Column("complete", Boolean, nullable=False),
    Column("stored_at", DateTime, nullable=False),
    Column("replaced_at", DateTime, nullable=False),
    Column("record_json", Text, nullable=False),
    UniqueConstraint("run_id", "version", name="uq_run_versions_run_version"),
)

# ----------------------------------------------------------------------------------- migrations


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _m1_initial(conn: Connection) -> None:
    """cards, runs, metrics, findings: the record and its measurements."""
    md = MetaData()
    Table(
        "cards",
        md,
        Column("id", Integer, primary_key=True),
        Column("card_key", String(200), nullable=False, unique=True),
        Column("serial", String(100), index=True),
        Column("uuid", String(100), index=True),
        Column("model", String(200), nullable=False),
        Column("first_seen", DateTime, nullable=False),
        Column("last_seen", DateTime, nullable=False),
    )
    Table(
        "runs",
        md,
        Column("id", Integer, primary_key=True),
        Column("run_id", String(200), nullable=False, unique=True),
        Column("card_id", Integer, ForeignKey("cards.id"), nullable=False),
        Column("started_at", DateTime, nullable=False),
        Column("preset", String(50), nullable=False),
        Column("backend", String(50), nullable=False),
        Column("host", String(200), nullable=False),
        Column("grade", String(20)),
        Column("disposition", Text),
        Column("complete", Boolean, nullable=False),
        Column("tool_version", String(50), nullable=False),
        Column("policy", String(200)),
        Column("added_at", DateTime, nullable=False),
        Column("record_json", Text, nullable=False),
    )
    Table(
        "metrics",
        md,
        Column("id", Integer, primary_key=True),
        Column("run_pk", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        Column("test", String(100), nullable=False),
        Column("metric", String(100), nullable=False),
        Column("estimate", Float, nullable=False),
        Column("unit", String(50), nullable=False),
        Column("verdict", String(20), nullable=False),
        Column("z", Float),
        Column("relative_deviation", Float),
        Index("ix_metrics_run", "run_pk"),
    )
    Table(
        "findings",
        md,
        Column("id", Integer, primary_key=True),
        Column("run_pk", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        Column("code", String(100), nullable=False),
        Column("severity", String(20), nullable=False),
        Column("message", Text, nullable=False),
        Column("value", Text),
        Column("reference", Text),
        Index("ix_findings_run", "run_pk"),
    )
    md.create_all(conn)


# the counters run_counters kept in migration 2; migration 3 added the retired pages
COUNTERS_V2: tuple[str, ...] = (
    "remapped_rows_correctable",
    "remapped_rows_uncorrectable",
    "remapped_rows_pending",
    "ecc_aggregate_corrected",
    "ecc_aggregate_uncorrected",
)
COUNTERS: tuple[str, ...] = (*COUNTERS_V2, "retired_pages_sbe", "retired_pages_dbe")


def counter_values(record_data: dict[str, Any], names: Sequence[str] = COUNTERS) -> dict[str, Any]:
    """The counters history needs, from parsed record JSON: after the run, else before."""
    after = record_data.get("counters_after") or {}
    before = record_data.get("counters_before") or {}
    return {n: after.get(n) if after.get(n) is not None else before.get(n) for n in names}


def reason_values(record_data: dict[str, Any]) -> list[dict[str, Any]]:
    grade = record_data.get("grade") or {}
    return [
        {"rule": r["rule"], "grade": r["grade"], "message": r["message"]}
        for r in grade.get("reasons") or ()
    ]


def _m2_history(conn: Connection) -> None:
    """run_counters and grade_reasons (history, fleet summary), filled from the stored records;
    an index for a card's runs in time order."""
    md = MetaData()
    counters_t = Table(
        "run_counters",
        md,
        Column("run_pk", Integer, primary_key=True, autoincrement=False),
        Column("remapped_rows_correctable", Integer),
        Column("remapped_rows_uncorrectable", Integer),
        Column("remapped_rows_pending", Boolean),
        Column("ecc_aggregate_corrected", Integer),
        Column("ecc_aggregate_uncorrected", Integer),
    )
    reasons_t = Table(
        "grade_reasons",
        md,
        Column("id", Integer, primary_key=True),
        Column("run_pk", Integer, nullable=False),
        Column("rule", String(100), nullable=False),
        Column("grade", String(20), nullable=False),
        Column("message", Text, nullable=False),
        Index("ix_grade_reasons_run", "run_pk"),
    )
    # the foreign keys are added as table options, portable on both dialects
    counters_t.append_constraint(_fk("run_pk"))
    reasons_t.append_constraint(_fk("run_pk"))
    Table("runs", md, Column("id", Integer, primary_key=True))  # the FK's target, not created
    md.create_all(conn, tables=[counters_t, reasons_t])
    conn.execute(text("CREATE INDEX ix_runs_card_started ON runs (card_id, started_at)"))
    old = conn.execute(text("SELECT id, record_json FROM runs")).all()
    for run_pk, raw in old:
        data = json.loads(raw)
        conn.execute(insert(counters_t).values(run_pk=run_pk, **counter_values(data, COUNTERS_V2)))
        reasons = reason_values(data)
        if reasons:
            conn.execute(insert(reasons_t), [{"run_pk": run_pk, **r} for r in reasons])


def content_sha256(record_data: Any) -> str:
    """SHA-256 of a parsed record's canonical JSON (RFC 8785, as signing uses; sorted compact
    JSON for the rare record JCS cannot write): equal for equal content, whatever the spacing."""
    import rfc8785

    try:
        raw = rfc8785.dumps(record_data)
    except rfc8785.CanonicalizationError:
        raw = json.dumps(record_data, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(raw).hexdigest()


def run_facts(record_data: dict[str, Any]) -> dict[str, Any]:
    """The run columns migration 3 added, from parsed record JSON."""
    identity = record_data.get("identity") or {}
    soak = (record_data.get("analysis") or {}).get("soak") or {}
    measured, reference = soak.get("thermal_resistance_c_per_w"), soak.get("reference_c_per_w")
    ratio = measured / reference if measured is not None and reference else None
    return {
        "content_sha256": content_sha256(record_data),
        "serial": identity.get("serial"),
        "uuid": identity.get("uuid"),
        "sim_card": identity.get("sim_card"),
        "thermal_ratio": ratio,
    }


def _m3_versions(conn: Connection) -> None:
    """run_versions (earlier versions of a run); runs gain the content hash, version, the run's
    own serial / UUID / simulated card and thermal ratio; run_counters the retired pages. Filled
    from the stored records."""
    md = MetaData()
    versions_t = Table(
        "run_versions",
        md,
        Column("id", Integer, primary_key=True),
        Column("run_id", String(200), nullable=False),
        Column("version", Integer, nullable=False),
        Column("content_sha256", String(64)),
        Column("grade", String(20)),
        Column("complete", Boolean, nullable=False),
        Column("stored_at", DateTime, nullable=False),
        Column("replaced_at", DateTime, nullable=False),
        Column("record_json", Text, nullable=False),
        UniqueConstraint("run_id", "version", name="uq_run_versions_run_version"),
    )
    md.create_all(conn, tables=[versions_t])
    for column, kind in (
        ("content_sha256", "VARCHAR(64)"),
        ("version", "INTEGER NOT NULL DEFAULT 1"),
        ("updated_at", _timestamp(conn)),
        ("serial", "VARCHAR(100)"),
        ("uuid", "VARCHAR(100)"),
        ("sim_card", "VARCHAR(500)"),
        ("thermal_ratio", "FLOAT"),
    ):
        conn.execute(text(f"ALTER TABLE runs ADD COLUMN {column} {kind}"))
    for column in ("retired_pages_sbe", "retired_pages_dbe"):
        conn.execute(text(f"ALTER TABLE run_counters ADD COLUMN {column} INTEGER"))
    conn.execute(text("CREATE INDEX ix_runs_uuid ON runs (uuid)"))
    conn.execute(text("CREATE INDEX ix_runs_serial ON runs (serial)"))
    runs_t = Table(
        "runs",
        MetaData(),
        Column("id", Integer, primary_key=True),
        *(Column(n, String) for n in ("content_sha256", "serial", "uuid", "sim_card")),
        Column("thermal_ratio", Float),
    )
    counters_t = Table(
        "run_counters",
        MetaData(),
        Column("run_pk", Integer, primary_key=True),
        Column("retired_pages_sbe", Integer),
        Column("retired_pages_dbe", Integer),
    )
    for run_pk, raw in conn.execute(text("SELECT id, record_json FROM runs")).all():
        data = json.loads(raw)
        conn.execute(update(runs_t).where(runs_t.c.id == run_pk).values(**run_facts(data)))
        counts = counter_values(data)
        conn.execute(
            update(counters_t)
            .where(counters_t.c.run_pk == run_pk)
            .values(
                retired_pages_sbe=counts["retired_pages_sbe"],
                retired_pages_dbe=counts["retired_pages_dbe"],
            )
        )


def _timestamp(conn: Connection) -> str:
    return "TIMESTAMP WITHOUT TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"


def _fk(column: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint([column], ["runs.id"], ondelete="CASCADE")


MIGRATIONS: Sequence[Migration] = (
    Migration(1, "cards, runs, metrics, findings", _m1_initial),
    Migration(2, "run counters, grade reasons, runs-by-card index", _m2_history),
    Migration(3, "run versions, content hash, per-run identity, thermal ratio", _m3_versions),
)
LATEST = MIGRATIONS[-1].version


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def current_version(conn: Connection) -> int:
    """The highest applied migration, 0 for an empty database."""
    from sqlalchemy import inspect

    if not inspect(conn).has_table(SCHEMA_TABLE):
        return 0
    found = conn.execute(select(schema_versions.c.version).order_by(text("version DESC"))).first()
    return int(found[0]) if found else 0


def upgrade(conn: Connection, target: int | None = None) -> list[int]:
    """Apply the migrations above the database's version, up to `target` (default: the latest),
    inside the caller's transaction, which must hold the database-wide lock. Returns what ran."""
    target = LATEST if target is None else target
    schema_versions.create(conn, checkfirst=True)
    version = current_version(conn)
    if version > LATEST:
        raise StoreError(
            f"the results database is at schema version {version}, newer than this gpuhealth "
            f"knows ({LATEST})",
            hint="upgrade gpuhealth",
        )
    applied = []
    for migration in MIGRATIONS:
        if version < migration.version <= target:
            migration.apply(conn)
            conn.execute(
                insert(schema_versions).values(version=migration.version, applied_at=utc_now())
            )
            applied.append(migration.version)
    return applied
