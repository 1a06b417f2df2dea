"""The results database: every graded run of every card, for history and fleet summaries.

SQLAlchemy 2 Core, on SQLite by default (<app dir>/results.sqlite, the folder gpuhealth keeps its
settings in, moved by $GPUHEALTH_CONFIG_DIR) or on PostgreSQL by URL (postgresql+psycopg://...,
`pip install 'gpuhealth[postgres]'`). $GPUHEALTH_DB or a command's --db picks another database;
a plain path means an SQLite file.

Several processes may write at once: SQLite runs in WAL mode with a busy timeout and every write
transaction starts with BEGIN IMMEDIATE (it takes the write lock up front, so a transaction never
fails half way on a lock upgrade); on PostgreSQL the unique run_id, INSERT ... ON CONFLICT DO
NOTHING and SELECT ... FOR UPDATE keep concurrent writers apart. A run id identifies a run: adding
the same record again is a no-op ("already stored"); adding it with other content (resumed, closed,
re-signed, re-graded: the SHA-256 of its canonical JSON differs) updates the run ("updated") and
keeps the earlier version in run_versions. The schema is created and upgraded on open
(gpuhealth/store/schema.py) under a database-wide lock, so the first processes to open a fresh
database can race safely.

A database that cannot be reached raises StoreUnavailable (exit code 3) with a one-line message;
the run folders are only ever read, so nothing is lost and `gpuhealth sync` catches up later.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    URL,
    Connection,
    Engine,
    case,
    create_engine,
    delete,
    event,
    func,
    make_url,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    ProgrammingError,
)

from gpuhealth.errors import GpuHealthError, InputError, StoreError, StoreUnavailable
from gpuhealth.models import CardIdentity, RunRecord, StoredHistory, record_from_json
from gpuhealth.store.answers import (
    CardHistory,
    FleetSummary,
    HistoryRun,
    ImportReport,
    identity_change,
    other_decrease,
    remap_decrease,
    worst_card,
)
from gpuhealth.store.card_history import MONOTONIC_COUNTERS, PriorRun, history_facts, not_checked
from gpuhealth.store.fleet import (
    CardSummary,
    FleetRun,
    card_summaries,
    counts_by_model,
    rig_flags,
    worst_cards,
)
from gpuhealth.store.rows import (
    card_key,
    insert_children,
    record_json,
    run_row,
    stored_sha256,
    sum_or_none,
)
from gpuhealth.store.schema import (
    LATEST,
    cards,
    current_version,
    findings,
    grade_reasons,
    metrics,
    run_counters,
    run_facts,
    run_versions,
    runs,
    upgrade,
    utc_now,
)

DB_ENV = "GPUHEALTH_DB"
DB_FILE = "results.sqlite"
BUSY_TIMEOUT_S = 30
PG_CONNECT_TIMEOUT_S = 10
_PG_LOCK_KEY = 0x6770_7568  # "gpuh": pg_advisory_xact_lock key for schema upgrades

# history shows these metrics per run, when measured (test, metric, column heading)
KEY_METRICS: tuple[tuple[str, str, str], ...] = (
    ("bandwidth", "triad_gbs", "triad GB/s"),
    ("gemm", "fp16_tflops", "fp16 TFLOP/s"),
    ("fp32", "fp32_tflops", "fp32 TFLOP/s"),
    ("soak", "iteration_tflops", "soak TFLOP/s"),
)
Outcome = Literal["added", "updated", "already stored"]


# ------------------------------------------------------------------------------------ location


def default_db_path() -> Path:
    from gpuhealth.certificate.keys import config_dir

    return config_dir() / DB_FILE


def resolve_url(url: str | None = None) -> tuple[URL, bool]:
    """The database to use: `url` (a --db value), else $GPUHEALTH_DB, else the default SQLite
    file. A value without "://" is an SQLite file path. Returns (url, is_the_default)."""
    value = url or os.environ.get(DB_ENV) or None
    if value is None:
        return URL.create("sqlite", database=str(default_db_path())), True
    if "://" not in value:
        return URL.create("sqlite", database=str(Path(value).expanduser())), False
    try:
        parsed = make_url(value)
    except ArgumentError:
        raise StoreError(
            f"--db / ${DB_ENV}: not a database URL: {value!r}",
            hint="e.g. sqlite:////path/results.sqlite or postgresql+psycopg://user@host/db",
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):  # the driver gpuhealth[postgres] installs
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed, False


def display_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__


def _make_engine(url: URL) -> Engine:
    backend = url.get_backend_name()
    try:
        if backend == "sqlite":
            engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
            _sqlite_events(engine)
            return engine
        if backend == "postgresql":
            return create_engine(
                url, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S}, pool_pre_ping=True
            )
    except NoSuchModuleError:
        pass
    except ModuleNotFoundError as exc:
        raise StoreUnavailable(
            f"results database {display_url(url)}: the driver is not installed ({exc.name})",
            hint="pip install 'gpuhealth[postgres]'",
        ) from None
    raise StoreError(
        f"results database {display_url(url)}: unsupported kind {url.drivername!r}",
        hint="use sqlite:///PATH or postgresql+psycopg://...",
    )


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # the driver's own implicit transactions off: _on_begin says BEGIN (SQLAlchemy's recipe)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get("gpuhealth_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


# ------------------------------------------------------------------------------------ the store


class Store:
    """An open results database (schema upgraded). Use as a context manager or call close()."""

    def __init__(self, url: str | None = None, *, schema_target: int | None = None) -> None:
        """Open (and create or upgrade) the database; `schema_target` stops the upgrade at that
        migration (tests of the migrations)."""
        self.url, is_default = resolve_url(url)
        if is_default and self.url.database:
            try:
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(
                    f"results database {display_url(self.url)}: cannot create its folder "
                    f"({exc.strerror})"
                ) from None
        self.engine = _make_engine(self.url)
        self.dialect = self.url.get_backend_name()
        try:
            self._open(schema_target)
        except BaseException:
            self.engine.dispose()
            raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    @property
    def display_url(self) -> str:
        return display_url(self.url)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Unreachable / unopenable database errors -> StoreUnavailable with one line."""
        try:
            yield
        except (IntegrityError, ProgrammingError, DataError):
            raise  # gpuhealth's own mistake with a working database: never hidden as "down"
        except (DatabaseError, InterfaceError) as exc:  # unreachable, locked, corrupt, read-only
            raise StoreUnavailable(
                f"results database {self.display_url} unavailable: {_first_line(exc)}"
            ) from None

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._guard(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with (
            self._guard(),
            self.engine.connect().execution_options(gpuhealth_readonly=True) as conn,
            conn.begin(),
        ):
            yield conn

    # ---------------------------------------------------------------------------- schema

    def _open(self, target: int | None = None) -> None:
        with self._read() as conn:
            if current_version(conn) == (LATEST if target is None else target):
                return
        self.migrate(target)

    def migrate(self, target: int | None = None) -> list[int]:
        """Upgrade the schema (to `target`, default the latest) under a database-wide lock."""
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            return upgrade(conn, target)

    def schema_version(self) -> int:
        with self._read() as conn:
            return current_version(conn)

    # ---------------------------------------------------------------------------- writing

    def add(self, record: RunRecord) -> bool:
        """Store one run; False when this very record is already stored (nothing changes then).
        True when it was added, or updated a stored version with other content."""
        return self.put(record) != "already stored"

    def put(self, record: RunRecord) -> Outcome:
        """Store one run: "added" (a new run id), "updated" (the run id is stored with other
        content: that version moves to run_versions, this one becomes the run) or "already
        stored" (the same content: nothing changes)."""
        row = run_row(record)
        for _attempt in range(2):  # a second pass when another process inserted it meanwhile
            with self._write() as conn:
                outcome = self._put(conn, record, row)
            if outcome is not None:
                return outcome
        raise StoreError(f"run {record.run_id}: stored and removed again while adding it")

    def _put(self, conn: Connection, record: RunRecord, row: dict[str, Any]) -> Outcome | None:
        stored = conn.execute(
            select(runs).where(runs.c.run_id == record.run_id).with_for_update()
        ).first()
        if stored is not None:
            if stored_sha256(stored) == row["content_sha256"]:
                return "already stored"
            self._replace(conn, record, row, stored)
            return "updated"
        card_pk = self._upsert_card(conn, record.identity, record.run_id, row["started_at"])
        inserted = conn.execute(
            self._insert(runs)
            .values(card_id=card_pk, **row)
            .on_conflict_do_nothing(index_elements=["run_id"])
            .returning(runs.c.id)
        ).first()
        if inserted is None:  # another process stored it since the select above
            return None
        insert_children(conn, int(inserted[0]), record)
        return "added"

    def _replace(self, conn: Connection, record: RunRecord, row: dict[str, Any], old: Any) -> None:
        """The stored version to run_versions; the run's row and its children rewritten."""
        now = utc_now()
        conn.execute(
            run_versions.insert().values(
                run_id=old.run_id,
                version=old.version,
                content_sha256=stored_sha256(old),
                grade=old.grade,
                complete=old.complete,
                stored_at=old.updated_at or old.added_at,
                replaced_at=now,
                record_json=old.record_json,
            )
        )
        card_pk = self._upsert_card(conn, record.identity, record.run_id, row["started_at"])
        values = {k: v for k, v in row.items() if k != "added_at"}
        conn.execute(
            update(runs)
            .where(runs.c.id == old.id)
            .values(card_id=card_pk, version=old.version + 1, updated_at=now, **values)
        )
        for child in (metrics, findings, grade_reasons):
            conn.execute(delete(child).where(child.c.run_pk == old.id))
        conn.execute(delete(run_counters).where(run_counters.c.run_pk == old.id))
        insert_children(conn, int(old.id), record)

    def versions(self, run_id: str) -> list[tuple[int, str | None, str | None]]:
        """The stored versions of a run, oldest first: (version, grade, content SHA-256); the
        last is the current one."""
        with self._read() as conn:
            earlier = conn.execute(
                select(run_versions.c.version, run_versions.c.grade, run_versions.c.content_sha256)
                .where(run_versions.c.run_id == run_id)
                .order_by(run_versions.c.version)
            ).all()
            current = conn.execute(
                select(runs.c.version, runs.c.grade, runs.c.content_sha256).where(
                    runs.c.run_id == run_id
                )
            ).all()
        return [(int(v), g, h) for v, g, h in [*earlier, *current]]

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _upsert_card(
        self, conn: Connection, identity: CardIdentity, run_id: str, started: datetime
    ) -> int:
        key = card_key(identity, run_id)
        conn.execute(
            self._insert(cards)
            .values(
                card_key=key,
                serial=identity.serial,
                uuid=identity.uuid,
                model=identity.name,
                first_seen=started,
                last_seen=started,
            )
            .on_conflict_do_nothing(index_elements=["card_key"])
        )
        newer = cards.c.last_seen < started
        card_pk = conn.execute(
            update(cards)
            .where(cards.c.card_key == key)
            .values(
                first_seen=case((cards.c.first_seen > started, started), else_=cards.c.first_seen),
                last_seen=case((newer, started), else_=cards.c.last_seen),
                model=case((newer, identity.name), else_=cards.c.model),
                uuid=func.coalesce(cards.c.uuid, identity.uuid),
            )
            .returning(cards.c.id)
        ).scalar_one()
        return int(card_pk)

    def stored_run_ids(self, run_ids: Iterable[str]) -> set[str]:
        return set(self.stored_hashes(run_ids))

    def stored_hashes(self, run_ids: Iterable[str]) -> dict[str, str | None]:
        """run id -> the stored content SHA-256, for the run ids that are stored."""
        wanted = list(dict.fromkeys(run_ids))
        found: dict[str, str | None] = {}
        with self._read() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                for run_id, sha in conn.execute(
                    select(runs.c.run_id, runs.c.content_sha256).where(runs.c.run_id.in_(chunk))
                ):
                    found[run_id] = sha
        return found

    def import_files(self, paths: Sequence[Path]) -> ImportReport:
        """Add the run records in `paths` that are not stored yet, and update those stored with
        other content (files that are not valid run records, or not graded yet, are reported,
        never stored)."""
        report = ImportReport()
        parsed: list[tuple[Path, RunRecord]] = []
        for path in paths:
            try:
                record = record_from_json(path.read_text(encoding="utf-8"), str(path))
            except (OSError, UnicodeDecodeError) as exc:
                report.invalid.append((path, f"{path}: cannot read ({exc})"))
                continue
            except InputError as exc:
                report.invalid.append((path, exc.one_line()))
                continue
            if record.grade is None:
                why = "not graded yet (a run in progress, or one that stopped before judging)"
                report.skipped.append((path, record.run_id, why))
                continue
            parsed.append((path, record))
        stored = self.stored_hashes(r.run_id for _, r in parsed)
        for path, record in parsed:
            sha = run_facts(json.loads(record_json(record)))["content_sha256"]
            outcome = "already stored" if stored.get(record.run_id) == sha else self.put(record)
            stored[record.run_id] = sha
            if outcome == "added":
                report.added.append((path, record.run_id))
            elif outcome == "updated":
                report.updated.append((path, record.run_id))
            else:
                report.skipped.append((path, record.run_id, "already stored"))
        return report

    # ---------------------------------------------------------------------------- reading

    def counts(self) -> tuple[int, int]:
        with self._read() as conn:
            n_cards = conn.execute(select(func.count()).select_from(cards)).scalar_one()
            n_runs = conn.execute(select(func.count()).select_from(runs)).scalar_one()
        return int(n_cards), int(n_runs)

    def history(self, serial: str) -> CardHistory:
        """Every run of the card with this serial (else this UUID), oldest first."""
        with self._read() as conn:
            matched = conn.execute(
                select(cards.c.id, cards.c.serial, cards.c.model).where(cards.c.serial == serial)
            ).all()
            if not matched:
                matched = conn.execute(
                    select(cards.c.id, cards.c.serial, cards.c.model).where(cards.c.uuid == serial)
                ).all()
            if not matched:
                raise StoreError(
                    f"no runs stored for card {serial!r} in {self.display_url}",
                    hint="gpuhealth fleet summary lists the stored cards",
                )
            rows = conn.execute(
                select(
                    runs.c.id,
                    runs.c.run_id,
                    runs.c.started_at,
                    runs.c.preset,
                    runs.c.backend,
                    runs.c.grade,
                    runs.c.disposition,
                    runs.c.complete,
                    run_counters.c.remapped_rows_correctable,
                    run_counters.c.remapped_rows_uncorrectable,
                    run_counters.c.remapped_rows_pending,
                    run_counters.c.ecc_aggregate_uncorrected,
                    run_counters.c.ecc_aggregate_corrected,
                    run_counters.c.retired_pages_sbe,
                    run_counters.c.retired_pages_dbe,
                    runs.c.serial,
                    runs.c.uuid,
                    runs.c.host,
                )
                .outerjoin(run_counters, run_counters.c.run_pk == runs.c.id)
                .where(runs.c.card_id.in_([m.id for m in matched]))
                .order_by(runs.c.started_at, runs.c.id)
            ).all()
            pks = [r.id for r in rows]
            values: dict[tuple[int, str], float] = {}
            pairs = [(t, m) for t, m, _ in KEY_METRICS]
            for start in range(0, len(pks), 500):
                for pk, test, metric, estimate in conn.execute(
                    select(metrics.c.run_pk, metrics.c.test, metrics.c.metric, metrics.c.estimate)
                    .where(metrics.c.run_pk.in_(pks[start : start + 500]))
                    .where(tuple_(metrics.c.test, metrics.c.metric).in_(pairs))
                ):
                    values[(pk, f"{test}.{metric}")] = estimate
        history: list[HistoryRun] = []
        previous: HistoryRun | None = None
        for r in rows:
            run = HistoryRun(
                run_id=r.run_id,
                started_at=r.started_at,
                preset=r.preset,
                backend=r.backend,
                grade=r.grade or "INCOMPLETE",
                disposition=r.disposition,
                complete=bool(r.complete),
                remapped_rows_correctable=r.remapped_rows_correctable,
                remapped_rows_uncorrectable=r.remapped_rows_uncorrectable,
                remapped_rows_pending=r.remapped_rows_pending,
                ecc_aggregate_uncorrected=r.ecc_aggregate_uncorrected,
                key_metrics={f"{t}.{m}": values.get((r.id, f"{t}.{m}")) for t, m, _ in KEY_METRICS},
                serial=r.serial,
                uuid=r.uuid,
                host=r.host,
                counters={name: getattr(r, name) for name in MONOTONIC_COUNTERS},
            )
            if previous is not None:
                flags = remap_decrease(previous, run) + other_decrease(previous, run)
                flags += identity_change(previous, run)
                if flags:
                    run = dataclasses.replace(run, flags=flags)
            history.append(run)
            previous = run
        return CardHistory(
            query=serial,
            serials=tuple(sorted({m.serial or "n/a" for m in matched})),
            models=tuple(sorted({m.model for m in matched})),
            runs=tuple(history),
        )

    def fleet_runs(self) -> list[FleetRun]:
        """Every stored run, as the fleet views need it (one query, one row per run)."""
        counter_cols = [getattr(run_counters.c, name) for name in MONOTONIC_COUNTERS]
        with self._read() as conn:
            rows = conn.execute(
                select(
                    runs.c.id,
                    runs.c.run_id,
                    runs.c.card_id,
                    runs.c.started_at,
                    runs.c.grade,
                    runs.c.host,
                    runs.c.backend,
                    func.coalesce(runs.c.serial, cards.c.serial).label("serial"),
                    func.coalesce(runs.c.uuid, cards.c.uuid).label("uuid"),
                    cards.c.model,
                    runs.c.thermal_ratio,
                    *counter_cols,
                )
                .join(cards, cards.c.id == runs.c.card_id)
                .outerjoin(run_counters, run_counters.c.run_pk == runs.c.id)
                .order_by(runs.c.started_at, runs.c.id)
            ).all()
        return [
            FleetRun(
                run_pk=r.id,
                run_id=r.run_id,
                card_id=r.card_id,
                started_at=r.started_at,
                grade=r.grade or "INCOMPLETE",
                host=r.host,
                backend=r.backend,
                serial=r.serial,
                uuid=r.uuid,
                model=r.model,
                thermal_ratio=r.thermal_ratio,
                remapped_rows=sum_or_none(
                    r.remapped_rows_correctable, r.remapped_rows_uncorrectable
                ),
                counters={name: getattr(r, name) for name in MONOTONIC_COUNTERS},
            )
            for r in rows
        ]

    def fleet_cards(self, since: datetime | None = None) -> list[CardSummary]:
        """Every stored card with a run since `since` (all when None): latest and worst grade,
        host, flags."""
        return card_summaries(self.fleet_runs(), since)

    def fleet_summary(self, worst: int = 10, since: datetime | None = None) -> FleetSummary:
        """Cards by model and latest grade; the `worst` cards (worst grade in the window C or
        worse, or a history flag) with the reasons of that grade; hosts whose rig looks off."""
        all_runs = self.fleet_runs()
        summaries = card_summaries(all_runs, since)
        listed = worst_cards(summaries, worst)
        reasons: dict[int, list[str]] = {}
        if listed:
            with self._read() as conn:
                for pk, message in conn.execute(
                    select(grade_reasons.c.run_pk, grade_reasons.c.message)
                    .where(grade_reasons.c.run_pk.in_([c.worst_run_pk for c in listed]))
                    .order_by(grade_reasons.c.id)
                ):
                    reasons.setdefault(pk, []).append(message)
        return FleetSummary(
            database=self.display_url,
            cards=len(summaries),
            runs=sum(1 for r in all_runs if since is None or r.started_at >= since),
            counts=counts_by_model(summaries),
            worst=tuple(worst_card(c, reasons.get(c.worst_run_pk, ())) for c in listed),
            since=since,
            rigs=tuple(rig_flags(all_runs, since)),
            flagged=sum(1 for c in summaries if c.flags),
        )

    def prior_runs(self, record: RunRecord) -> list[PriorRun]:
        """The stored runs of the record's serial or UUID (other run ids), on the same kind of
        backend. A simulated card's identity is made up (every simulated card of a model without
        its own serial or UUID in its spec shares the built-in ones), so it is the same card only
        when its serial, UUID and simulated model all match: no identity fact for simulated
        cards, only counters."""
        ident = record.identity
        keys = [runs.c.serial == ident.serial] if ident.serial else []
        keys += [runs.c.uuid == ident.uuid] if ident.uuid else []
        if not keys:
            return []
        query = (
            select(
                runs.c.run_id,
                runs.c.started_at,
                runs.c.serial,
                runs.c.uuid,
                *(getattr(run_counters.c, name) for name in MONOTONIC_COUNTERS),
            )
            .outerjoin(run_counters, run_counters.c.run_pk == runs.c.id)
            .where(or_(*keys), runs.c.run_id != record.run_id, runs.c.backend == record.backend)
        )
        if record.backend == "sim":
            query = query.where(
                runs.c.sim_card == ident.sim_card,
                runs.c.serial == ident.serial,
                runs.c.uuid == ident.uuid,
            )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            PriorRun(
                run_id=r.run_id,
                started_at=r.started_at,
                serial=r.serial,
                uuid=r.uuid,
                counters={name: getattr(r, name) for name in MONOTONIC_COUNTERS},
            )
            for r in rows
        ]


# ------------------------------------------------------------------------------------ helpers


def find_run_files(folders: Iterable[Path]) -> list[Path]:
    """Every run.json under the folders (a run.json path itself is taken as is), sorted."""
    found: set[Path] = set()
    for folder in folders:
        if folder.is_file():
            found.add(folder)
        else:
            found.update(p for p in folder.rglob("run.json") if p.is_file())
    return sorted(found)


def open_store(url: str | None = None) -> Store:
    return Store(url)


def save_record(record: RunRecord, url: str | None = None) -> Outcome:
    """Store one graded record (the grade command calls this after each card): "added",
    "updated" or "already stored" (Store.put). StoreUnavailable when the database cannot be reached:
    the run folder still holds the record, and `gpuhealth sync` adds it later."""
    with Store(url) as store:
        return store.put(record)


def stored_history_for(record: RunRecord, url: str | None = None) -> StoredHistory:
    """What the results database knows of the record's card (gpuhealth/store/card_history.py), for
    the grade to judge. A database that cannot be opened or read is not an error here: the
    history is marked not checked, with the one-line reason, and nothing is found."""
    where: str | None = None
    try:
        where = display_url(resolve_url(url)[0])
        with Store(url) as store:
            return history_facts(store.prior_runs(record), record, store.display_url)
    except GpuHealthError as error:
        return not_checked(error.one_line(), where)


__all__ = [
    "DB_ENV",
    "Store",
    "find_run_files",
    "open_store",
    "resolve_url",
    "save_record",
    "stored_history_for",
]
