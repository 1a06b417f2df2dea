"""The results database (gpuhealth/store/database.py) on SQLite and on a real PostgreSQL server.

PostgreSQL: $GPUHEALTH_TEST_PG_URL names a server the tests may create databases on; otherwise the
session starts its own from the installed binaries (initdb and pg_ctl on PATH or in
/usr/lib/postgresql/*/bin) in a temporary folder on a free port, as the `postgres` user when the
tests run as root (initdb refuses root). With neither, the PostgreSQL cases skip with the reason,
unless GPUHEALTH_REQUIRE_POSTGRES=1 (CI), where they fail.

Every case uses real run records (tests/data/runs), varied with dataclasses.replace.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import multiprocessing
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from gpuhealth.cli import main
from gpuhealth.cli.store import register
from gpuhealth.errors import StoreUnavailable
from gpuhealth.models import HealthCounters, RunRecord, record_from_json, record_to_json
from gpuhealth.store.answers import REMAP_DOWN, parse_since
from gpuhealth.store.database import Store, default_db_path, resolve_url, save_record
from gpuhealth.store.schema import (
    LATEST,
    cards,
    findings,
    grade_reasons,
    metrics,
    run_counters,
    runs,
)

register(main)  # cli/main.py does this too; register is idempotent

RUNS = Path(__file__).parent / "data" / "runs"
SMALL = ("sim-lost-in-soak-quick.json", "h100-quick-2026-11-26.json", "sim-worn-quick.json")


def load(name: str) -> RunRecord:
    return record_from_json((RUNS / name).read_text(encoding="utf-8"), name)


def variant(base: RunRecord, serial: str, run_id: str, day: int = 0, **changes: Any) -> RunRecord:
    started = datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(days=day)
    identity = dataclasses.replace(base.identity, serial=serial, uuid=f"GPU-{serial}")
    return dataclasses.replace(
        base, run_id=run_id, identity=identity, started_at=started.isoformat(), **changes
    )


def write_run(folder: Path, record: RunRecord) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.json"
    path.write_text(record_to_json(record), encoding="utf-8")
    return path


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def row_count(url: str, table: Any) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


# ----------------------------------------------------------------------- PostgreSQL in the session


class PgServer:
    """A PostgreSQL server for the session: ours (started with pg_ctl) or $GPUHEALTH_TEST_PG_URL."""

    def __init__(self, admin_url: str, data: Path | None = None, ctl: list[str] | None = None):
        self.admin_url = admin_url
        self.data = data
        self.ctl = ctl  # pg_ctl command prefix when the session owns the server
        self._n = 0

    @property
    def owned(self) -> bool:
        return self.ctl is not None

    def stop(self) -> None:
        assert self.ctl is not None
        subprocess.run([*self.ctl, "stop", "-m", "fast", "-w"], check=True, capture_output=True)

    def start(self) -> None:
        assert self.ctl is not None
        subprocess.run([*self.ctl, "start", "-w"], check=True, capture_output=True)

    def new_database(self) -> str:
        self._n += 1
        name = f"gpuhealth_test_{os.getpid()}_{self._n}"
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)


def _pg_binaries() -> tuple[str, str] | None:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{folder}/initdb", os.X_OK) and os.access(f"{folder}/pg_ctl", os.X_OK):
            return f"{folder}/initdb", f"{folder}/pg_ctl"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_postgres() -> tuple[PgServer | None, str]:
    """Our own server, or (None, why not)."""
    binaries = _pg_binaries()
    if binaries is None:
        return None, "no PostgreSQL server: initdb/pg_ctl not found and GPUHEALTH_TEST_PG_URL unset"
    initdb, pg_ctl = binaries
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="gpuhealth-pg-"))
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        runuser = shutil.which("runuser")
        if runuser is None:
            return None, "running as root and runuser is missing: cannot start PostgreSQL"
        try:
            shutil.chown(root, user="postgres")
        except (LookupError, PermissionError) as exc:
            return None, f"running as root and no 'postgres' user to start PostgreSQL ({exc})"
        as_user = [runuser, "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    init = subprocess.run(
        [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        return None, f"initdb failed: {init.stderr.strip().splitlines()[-1:]}"
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = [*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-o", options]
    started = subprocess.run([*ctl, "-w", "start"], capture_output=True, text=True, check=False)
    if started.returncode != 0:
        log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
        return None, f"pg_ctl start failed: {started.stderr.strip()} {log[-300:]}"
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    return PgServer(url, data, ctl), ""


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    required = os.environ.get("GPUHEALTH_REQUIRE_POSTGRES") == "1"
    external = os.environ.get("GPUHEALTH_TEST_PG_URL")
    if external:
        yield PgServer(external)
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        server, why = None, "psycopg is not installed (pip install 'psycopg[binary]')"
    else:
        server, why = _start_postgres()
    if server is None:
        if required:
            pytest.fail(f"GPUHEALTH_REQUIRE_POSTGRES=1 but {why}")
        pytest.skip(why)
    try:
        yield server
    finally:
        assert server.ctl is not None and server.data is not None
        subprocess.run([*server.ctl, "stop", "-m", "immediate"], capture_output=True, check=False)
        shutil.rmtree(server.data.parent, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of the parametrised kind."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'results.sqlite'}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.new_database()


# ------------------------------------------------------------------------------------ the cases


def test_add_history_summary(db_url: str, tmp_path: Path) -> None:
    files = []
    for name in sorted(p.name for p in RUNS.glob("*.json")):
        files.append(write_run(tmp_path / "runs" / name.removesuffix(".json"), load(name)))
    added = cli("store", "add", *map(str, files), "--db", db_url)
    assert added.exit_code == 0, added.output
    assert "12 added, 0 updated, 0 skipped, 0 invalid" in added.stderr

    shown = cli("history", "1653823054517", "--db", db_url)
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert "NVIDIA H100 80GB HBM3" in lines[0] and "3 run(s)" in lines[0]
    body = [line for line in lines if line.startswith("2026-")]
    assert [line.split()[4] for line in body] == ["C", "A", "A"]  # oldest first
    assert "3061.1" in body[0]  # the standard run's triad bandwidth
    assert "REMAP DOWN" not in shown.stdout

    as_json = json.loads(cli("history", "1653823054517", "--db", db_url, "--json").stdout)
    assert [r["preset"] for r in as_json["runs"]] == ["standard", "quick", "quick"]
    assert as_json["runs"][0]["key_metrics"]["gemm.fp16_tflops"] == pytest.approx(757.34, 1e-4)
    assert as_json["warnings"] == []

    summary = json.loads(cli("fleet", "summary", "--db", db_url, "--format", "json").stdout)
    assert (summary["cards"], summary["runs"]) == (8, 12)
    assert summary["counts"] == {
        "NVIDIA H100 80GB HBM3": {"A": 2, "C": 1, "F": 1, "INCOMPLETE": 1},
        "NVIDIA H200": {"C": 2, "D": 1},
    }
    # ranked by the worst grade of each card, not its latest: 1653823054517 was C, then A twice
    assert [c["grade"] for c in summary["worst"]] == ["F", "D", "INCOMPLETE", "C", "C", "C", "C"]
    graded_c_then_a = [c for c in summary["worst"] if c["serial"] == "1653823054517"]
    assert [(c["grade"], c["latest_grade"]) for c in graded_c_then_a] == [("C", "A")]
    assert summary["counts"]["NVIDIA H100 80GB HBM3"]["A"] == 2  # counted by its latest grade
    assert summary["worst"][1]["serial"] == "SIM-WORN-0001"
    assert summary["worst"][1]["remapped_rows"] == 3
    assert "3 row(s) remapped (2 for uncorrectable errors)" in summary["worst"][1]["reasons"]

    table = cli("fleet", "summary", "--db", db_url).stdout
    assert "8 card(s), 12 run(s)" in table and "SIM-STUCK-0001" in table
    csv_text = cli("fleet", "summary", "--db", db_url, "--format", "csv").stdout
    assert csv_text.splitlines()[0].startswith("section,model,grade,cards")
    assert "count,NVIDIA H100 80GB HBM3,A,2" in csv_text
    out = tmp_path / "fleet.html"
    written = cli("fleet", "summary", "--db", db_url, "--format", "html", "-o", str(out))
    assert written.exit_code == 0
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "SIM-WORN-0001" in html
    assert "model&#39;s" in html  # autoescaped


def test_same_run_twice_is_one_row(db_url: str, tmp_path: Path) -> None:
    record = load("sim-worn-quick.json")
    path = write_run(tmp_path / "a", record)
    copy = write_run(tmp_path / "b", record)  # the same run in another folder
    assert cli("store", "add", str(path), "--db", db_url).exit_code == 0
    again = cli("store", "add", str(path), str(copy), "--db", db_url)
    assert again.exit_code == 0
    assert "0 added, 0 updated, 2 skipped" in again.stderr and "already stored" in again.stdout
    assert save_record(record, db_url) == "already stored"
    assert row_count(db_url, runs) == 1
    assert row_count(db_url, cards) == 1
    assert record.analysis is not None and record.grade is not None
    assert row_count(db_url, metrics) == len(record.analysis.comparisons)
    assert row_count(db_url, findings) == len(record.analysis.findings)
    assert row_count(db_url, grade_reasons) == len(record.grade.reasons)
    assert row_count(db_url, run_counters) == 1


def _worker(url: str, paths: list[str], barrier: Any) -> None:
    with Store(url) as store:  # may be the first to create the schema: the race is the test
        barrier.wait()
        for path in paths:
            store.add(record_from_json(Path(path).read_text(encoding="utf-8"), path))


@pytest.mark.slow
def test_eight_writers_at_once(db_url: str, tmp_path: Path) -> None:
    bases = [load(name) for name in SMALL]
    shared = [
        write_run(tmp_path / f"shared{i}", variant(bases[i % 3], f"SH{i}", f"shared-{i}", i))
        for i in range(5)
    ]
    jobs = []
    for w in range(8):
        own = [
            write_run(
                tmp_path / f"w{w}-{i}",
                variant(bases[(w + i) % 3], f"W{w}-{i % 5}", f"w{w}-run{i}", day=i),
            )
            for i in range(25)
        ]
        jobs.append([str(p) for p in own + shared])
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(8)
    procs = [ctx.Process(target=_worker, args=(db_url, job, barrier)) for job in jobs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    for p in procs:
        if p.is_alive():  # hung on a lock: fail, do not leave it behind
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0] * 8
    assert row_count(db_url, runs) == 8 * 25 + 5
    assert row_count(db_url, cards) == 8 * 5 + 5
    expected_metrics = sum(
        len(record_from_json(Path(p).read_text(encoding="utf-8")).analysis.comparisons)  # type: ignore[union-attr]
        for p in {p for job in jobs for p in job}
    )
    assert row_count(db_url, metrics) == expected_metrics
    assert row_count(db_url, run_counters) == 8 * 25 + 5
    with Store(db_url) as store:
        assert store.schema_version() == LATEST
        history = store.history("W3-2")
        assert [r.run_id for r in history.runs] == [f"w3-run{i}" for i in (2, 7, 12, 17, 22)]


def test_remapped_rows_going_down_are_flagged(db_url: str) -> None:
    base = load("sim-worn-quick.json")
    assert base.counters_after is not None

    def counters(correctable: int, uncorrectable: int) -> HealthCounters:
        assert base.counters_after is not None
        return dataclasses.replace(
            base.counters_after,
            remapped_rows_correctable=correctable,
            remapped_rows_uncorrectable=uncorrectable,
        )

    with Store(db_url) as store:
        for day, (c, u) in enumerate([(1, 2), (5, 2), (0, 0)]):
            record = variant(base, "REMAP-1", f"remap-{day}", day, counters_after=counters(c, u))
            assert store.add(record)
        history = store.history("REMAP-1")
    assert [r.flags for r in history.runs[:2]] == [(), ()]
    assert len(history.runs[2].flags) == 2
    assert REMAP_DOWN in history.runs[2].flags[0]
    assert "from 5 to 0 since remap-1" in history.runs[2].flags[0]

    shown = cli("history", "REMAP-1", "--db", db_url)
    assert shown.exit_code == 0
    assert "REMAP DOWN" in shown.stdout
    assert "WARNING: remap-2: remapped rows (correctable) went down" in shown.stdout
    assert REMAP_DOWN in shown.stdout


def test_database_down_then_back(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    folders = tmp_path / "runs"
    records = [variant(load(n), f"DOWN{i}", f"down-{i}", i) for i, n in enumerate(SMALL)]
    for i, record in enumerate(records):
        write_run(folders / f"gpu{i}", record)
    before = {p: p.read_bytes() for p in folders.rglob("run.json")}

    def while_down(url: str) -> Result:
        with pytest.raises(StoreUnavailable) as raised:
            save_record(records[0], url)
        assert "\n" not in str(raised.value) and raised.value.exit_code == 3
        return cli("sync", str(folders), "--db", url)

    if backend == "sqlite":
        missing = tmp_path / "not-yet" / "results.sqlite"
        url = f"sqlite:///{missing}"
        down = while_down(url)
        missing.parent.mkdir()
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        url = server.new_database()
        if server.owned:
            server.stop()
            try:
                down = while_down(url)
            finally:
                server.start()
        else:  # someone else's server: an unreachable port stands for a stopped one
            down = while_down(
                make_url(url).set(port=_free_port()).render_as_string(hide_password=False)
            )
    assert down.exit_code == 3, down.output
    err = down.stderr.strip()
    assert err.startswith("gpuhealth: error: results database ") and "\n" not in err
    assert {p: p.read_bytes() for p in folders.rglob("run.json")} == before  # nothing lost

    back = cli("sync", str(folders), "--db", url)
    assert back.exit_code == 0, back.output
    assert "3 added, 0 updated, 0 skipped" in back.stderr
    again = cli("sync", str(folders), str(folders / "gpu0"), "--db", url)
    assert again.exit_code == 0 and "0 added, 0 updated, 3 skipped" in again.stderr
    assert row_count(url, runs) == 3


def _insert_v1(url: str, record: RunRecord) -> None:
    """A run as gpuhealth with schema 1 stored it (no counters, no reasons tables yet)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        card = conn.execute(
            text(
                "INSERT INTO cards (card_key, serial, uuid, model, first_seen, last_seen) "
                "VALUES (:k, :s, :u, :m, :t, :t) RETURNING id"
            ),
            {
                "k": f"serial:{record.identity.serial}",
                "s": record.identity.serial,
                "u": record.identity.uuid,
                "m": record.identity.name,
                "t": datetime(2026, 11, 26, 5, 38, 39),
            },
        ).scalar_one()
        assert record.grade is not None
        conn.execute(
            text(
                "INSERT INTO runs (run_id, card_id, started_at, preset, backend, host, grade, "
                "disposition, complete, tool_version, policy, added_at, record_json) VALUES "
                "(:r, :c, :t, :p, :b, :h, :g, :d, :ok, :v, :pol, :t, :j)"
            ),
            {
                "r": record.run_id,
                "c": card,
                "t": datetime(2026, 11, 26, 5, 38, 39),
                "p": record.preset,
                "b": record.backend,
                "h": record.host,
                "g": record.grade.letter,
                "d": record.grade.disposition,
                "ok": record.complete,
                "v": record.tool_version,
                "pol": record.grade.policy,
                "j": record_to_json(record),
            },
        )
    engine.dispose()


def test_migration_1_upgrades_to_latest(db_url: str) -> None:
    record = load("sim-worn-quick.json")
    with Store(db_url, schema_target=1) as old:
        assert old.schema_version() == 1
    engine = create_engine(db_url)
    with engine.connect() as conn:
        from sqlalchemy import inspect

        assert "run_counters" not in inspect(conn).get_table_names()
    engine.dispose()
    _insert_v1(db_url, record)

    with Store(db_url) as store:  # opening upgrades
        assert store.schema_version() == LATEST == 3
        history = store.history("SIM-WORN-0001")
        assert history.runs[0].remapped_rows_correctable == 1  # backfilled from the record JSON
        assert history.runs[0].remapped_rows_uncorrectable == 2
        summary = store.fleet_summary()
        assert summary.worst[0].reasons[-1] == "3 row(s) remapped (2 for uncorrectable errors)"
        assert store.add(record) is False  # the upgraded database still knows the run
        assert store.add(variant(record, "NEW-1", "after-upgrade")) is True
    engine = create_engine(db_url)
    with engine.connect() as conn:
        from sqlalchemy import inspect

        names = set(inspect(conn).get_table_names())
        indexes = {i["name"] for i in inspect(conn).get_indexes("runs")}
    engine.dispose()
    assert {"cards", "runs", "metrics", "findings", "run_counters", "grade_reasons"} <= names
    assert "ix_runs_card_started" in indexes


def test_ungraded_and_invalid_files(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    in_progress = dataclasses.replace(load("sim-worn-quick.json"), grade=None, run_id="running")
    write_run(tmp_path / "runs" / "a", in_progress)
    (tmp_path / "runs" / "b").mkdir()
    (tmp_path / "runs" / "b" / "run.json").write_text("{not json", encoding="utf-8")
    write_run(tmp_path / "runs" / "c", load("sim-stuck-bit-quick.json"))
    result = cli("sync", str(tmp_path / "runs"), "--db", url)
    assert result.exit_code == 2
    assert "1 added, 0 updated, 1 skipped, 1 invalid" in result.stderr
    assert "not graded yet" in result.stdout
    assert "not JSON" in result.stderr
    assert row_count(url, runs) == 1


def test_location_env_and_sqlite_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUHEALTH_DB", raising=False)
    monkeypatch.setenv("GPUHEALTH_CONFIG_DIR", str(tmp_path / "cfg"))
    url, is_default = resolve_url(None)
    assert is_default and url.database == str(tmp_path / "cfg" / "results.sqlite")
    assert default_db_path() == tmp_path / "cfg" / "results.sqlite"
    assert save_record(load("sim-worn-quick.json")) == "added"  # creates the folder and the file
    assert (tmp_path / "cfg" / "results.sqlite").is_file()

    monkeypatch.setenv("GPUHEALTH_DB", str(tmp_path / "env.sqlite"))
    assert resolve_url(None) == (resolve_url(str(tmp_path / "env.sqlite"))[0], False)
    with Store() as store:
        assert store.url.database == str(tmp_path / "env.sqlite")
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    assert cli("store", "info").stdout.splitlines()[0].endswith("env.sqlite")

    plain = resolve_url("postgres://u:secret@db.example/gpus")[0]
    assert plain.drivername == "postgresql+psycopg"
    bad = cli("history", "x", "--db", "nosuch://")
    assert bad.exit_code == 2 and "unsupported kind" in bad.stderr


def test_html_summary_escapes_card_text(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    base = load("sim-stuck-bit-quick.json")
    evil = dataclasses.replace(
        base, identity=dataclasses.replace(base.identity, serial="<script>x</script>")
    )
    assert save_record(evil, url)
    html = cli("fleet", "summary", "--db", url, "--format", "html").stdout
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


# ------------------------------------------------- issue 12: the database is the fleet's truth


def _spec(path: Path, serial: str, faults: str = "", uuid: str = "") -> str:
    header = f'serial = "{serial}"' + (f'\nuuid = "{uuid}"' if uuid else "")
    path.write_text(f'model = "h100-sxm5-80gb"\n{header}\n[faults]\n{faults}\n', encoding="utf-8")
    return str(path)


def test_a_grade_finished_by_resume_reaches_the_database(tmp_path: Path) -> None:
    """grade (the card is lost in the soak: INCOMPLETE, stored) -> resume (same card, now
    complete) -> sync: the stored run is updated, its earlier version kept."""
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    card = tmp_path / "card.toml"
    run = tmp_path / "run"
    _spec(card, "SIM-RESUME-1", 'lost_at = "soak"')
    first = cli("grade", "--quiet", "--quick", "--sim-card", str(card), "--out", str(run),
                "--db", url)  # fmt: skip
    assert first.exit_code != 0
    before = record_from_json((run / "run.json").read_text(encoding="utf-8"))
    assert before.grade is not None and before.grade.letter == "INCOMPLETE"
    _spec(card, "SIM-RESUME-1")  # the same card (same spec, serial, UUID), on the bus again
    resumed = cli("resume", str(run), "--sim-card", str(card), "--quiet")
    after = record_from_json((run / "run.json").read_text(encoding="utf-8"))
    assert after.complete and after.grade is not None, resumed.output
    letter = after.grade.letter  # D: the card fell off the bus once (Xid 79), now measured
    assert letter != "INCOMPLETE" and after.run_id == before.run_id
    synced = cli("sync", str(run), "--db", url)
    assert synced.exit_code == 0, synced.output
    assert "0 added, 1 updated, 0 skipped" in synced.stderr
    assert f"updated {before.run_id}" in synced.stdout
    with Store(url) as store:
        assert [r.grade for r in store.history("SIM-RESUME-1").runs] == [letter]
        assert [(v, g) for v, g, _ in store.versions(before.run_id)] == [
            (1, "INCOMPLETE"),
            (2, letter),
        ]
    again = cli("store", "add", str(run / "run.json"), "--db", url)
    assert "0 added, 0 updated, 1 skipped" in again.stderr and "already stored" in again.stdout
    assert row_count(url, runs) == 1


def test_changed_content_updates_and_keeps_the_earlier_version(db_url: str) -> None:
    base = load("sim-worn-quick.json")
    assert base.grade is not None
    record = variant(base, "UPD-1", "upd-1")
    regraded = dataclasses.replace(record, grade=dataclasses.replace(base.grade, letter="F"))
    with Store(db_url) as store:
        assert store.put(record) == "added"
        assert store.put(record) == "already stored"
        assert store.put(regraded) == "updated"
        assert store.put(regraded) == "already stored"
        assert store.put(record) == "updated"  # back again: a third version
        was = base.grade.letter
        assert [(v, g) for v, g, _ in store.versions("upd-1")] == [(1, was), (2, "F"), (3, was)]
        assert [r.grade for r in store.history("UPD-1").runs] == [was]
    assert row_count(db_url, runs) == 1
    assert record.analysis is not None
    assert row_count(db_url, metrics) == len(record.analysis.comparisons)  # children rewritten
    assert row_count(db_url, run_counters) == 1


def _insert_v2(url: str, record: RunRecord) -> None:
    _insert_v1(url, record)  # the runs table of schema 2 is that of schema 1


def test_migration_2_to_3_backfills_hash_identity_and_ratio(db_url: str) -> None:
    record = load("h100-standard-2026-11-26.json")
    with Store(db_url, schema_target=2) as old:
        assert old.schema_version() == 2
    _insert_v2(db_url, record)
    with Store(db_url) as store:
        assert store.schema_version() == 3
        # the hash of the stored (indented) JSON equals the hash of the record: same content
        assert store.put(record) == "already stored"
        found = store.fleet_runs()
        assert [(r.serial, r.uuid) for r in found] == [
            (record.identity.serial, record.identity.uuid)
        ]
        soak = record.analysis.soak if record.analysis else None
        assert soak and soak.thermal_resistance_c_per_w and soak.reference_c_per_w
        assert found[0].thermal_ratio == pytest.approx(
            soak.thermal_resistance_c_per_w / soak.reference_c_per_w
        )
        assert store.put(dataclasses.replace(record, host="elsewhere")) == "updated"


def test_run_ids_are_unique_per_card_and_safe() -> None:
    from gpuhealth.measure.runner import run_id_for

    when = "2026-11-26T05:38:39+00:00"
    same = {run_id_for(when, "S1", i, "GPU-abcd1234-0000") for i in range(4)}
    assert len(same) == 4  # the same serial on four GPUs: four ids
    assert run_id_for(when, None, 0) != run_id_for(when, None, 1)
    assert run_id_for(when, "", 0, "GPU-1") != run_id_for(when, "", 0, "GPU-2")
    for serial in ("../../etc/passwd", "a/b\\c", "..", "x" * 500, "é\n\x00;rm -rf", ".hidden"):
        run_id = run_id_for(when, serial, 3, "GPU-../../x")
        assert set(run_id) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"
        )
        assert ".." not in run_id and not run_id.startswith(".") and len(run_id) <= 120
        assert "-gpu3" in run_id
    assert re.fullmatch(
        r"20261126T053839-SIM-STUCK-0001-gpu0-51a00000-[0-9a-f]{4}",
        run_id_for(when, "SIM-STUCK-0001", 0, "GPU-51a00000-0000"),
    )
    # two grades of one card that start within one second still get two ids
    assert len({run_id_for(when, "S1", 0, "GPU-abcd1234") for _ in range(50)}) > 45


def test_two_cards_with_one_serial_in_one_run_are_both_stored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    card = _spec(tmp_path / "twin.toml", "TWIN-1")
    graded = cli("grade", "--quiet", "--quick", "--sim-card", card, "--sim-card", card,
                 "--out", str(tmp_path / "runs"), "--db", url)  # fmt: skip
    assert graded.exit_code == 0, graded.output
    assert row_count(url, runs) == 2
    with Store(url) as store:
        ids = [r.run_id for r in store.history("TWIN-1").runs]
    assert len(set(ids)) == 2 and any("gpu0" in i for i in ids) and any("gpu1" in i for i in ids)


# --- history facts at grade time


def test_history_facts_pure() -> None:
    from gpuhealth.store.card_history import PriorRun, history_facts

    record = variant(load("sim-worn-quick.json"), "HF-1", "hf-now", day=5)  # 1/2 remapped
    t = datetime(2026, 11, 2)
    prior = [
        PriorRun("hf-old", t, "HF-1", "GPU-OTHER", {"remapped_rows_correctable": 4}),
        PriorRun("hf-uuid", t, "HF-2", "GPU-HF-1", {}),
        PriorRun("hf-now", t, "HF-1", "GPU-X", {"remapped_rows_correctable": 99}),  # itself
        PriorRun("hf-later", datetime(2026, 12, 30), "HF-1", "GPU-Y", {}),  # after this run
    ]
    facts = history_facts(prior, record)
    assert facts.checked and facts.prior_runs == 2
    assert {(f.kind, f.field, f.stored, f.found) for f in facts.facts} == {
        ("identity", "identity.uuid", "GPU-OTHER", "GPU-HF-1"),
        ("identity", "identity.serial", "HF-2", "HF-1"),
        ("counter", "remapped_rows_correctable", "4", "1"),
    }
    clean = history_facts(
        [PriorRun("p", t, "HF-1", "GPU-HF-1", {"remapped_rows_correctable": 1})], record
    )
    assert clean.facts == () and clean.prior_runs == 1


def _grade(card: str, out: Path, url: str) -> Result:
    return cli("grade", "--quiet", "--quick", "--sim-card", card, "--out", str(out), "--db", url)


def test_grade_finds_counters_that_went_down(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    card = tmp_path / "card.toml"
    _spec(card, "SIM-HIST-1", "remapped_rows = { correctable = 5, uncorrectable = 0 }")
    first = _grade(str(card), tmp_path / "a", url)
    assert first.exit_code == 0, first.output
    one = record_from_json((tmp_path / "a" / "run.json").read_text(encoding="utf-8"))
    assert one.stored_history is not None and one.stored_history.checked
    assert one.stored_history.prior_runs == 0 and one.grade and one.grade.letter == "B"

    _spec(card, "SIM-HIST-1")  # the same serial and UUID, the remapped rows gone: a reset
    second = _grade(str(card), tmp_path / "b", url)
    two = record_from_json((tmp_path / "b" / "run.json").read_text(encoding="utf-8"))
    assert two.grade is not None and two.grade.letter == "C", two.grade
    rules = {r.rule: r.message for r in two.grade.reasons}
    assert "remapped_rows_correctable went down from 5" in rules["card-counters-decreased"]
    assert second.exit_code == first.exit_code == 0  # a reduced tier, graded

    # a simulated card's identity is made up: another UUID is another simulated card
    _spec(card, "SIM-HIST-1", uuid="GPU-99999999-0000-4000-8000-000000000009")
    _grade(str(card), tmp_path / "c", url)
    three = record_from_json((tmp_path / "c" / "run.json").read_text(encoding="utf-8"))
    assert three.stored_history is not None and three.stored_history.prior_runs == 0
    assert three.grade is not None and three.grade.letter == "A"

    # the judgement is a function of the signed record: re-judging it needs no database
    from gpuhealth.judge.analysis import judge
    from gpuhealth.judge.grading import load_policy
    from gpuhealth.judge.profiles import builtin_profiles, match_profile

    again = judge(two, match_profile(two.identity, builtin_profiles()), load_policy(None))
    assert again.grade == two.grade


def test_grade_with_an_unopenable_database_keeps_its_exit_code(tmp_path: Path) -> None:
    good = f"sqlite:///{tmp_path / 'good.sqlite'}"
    card = _spec(tmp_path / "card.toml", "SIM-NODB-1")
    baseline = _grade(card, tmp_path / "base", good)
    bad_path = tmp_path / "bad.sqlite"
    bad_path.write_bytes(os.urandom(4096))
    broken = _grade(card, tmp_path / "broken", str(bad_path))
    assert broken.exit_code == baseline.exit_code == 0
    record = record_from_json((tmp_path / "broken" / "run.json").read_text(encoding="utf-8"))
    assert record.stored_history is not None and not record.stored_history.checked
    assert record.stored_history.note and "bad.sqlite" in record.stored_history.note
    assert record.grade is not None and not any(
        r.rule.startswith("card-") for r in record.grade.reasons
    )
    warnings = [line for line in broken.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(tmp_path / "broken") in warnings[0]
    assert "history was not checked" in warnings[0] and "Traceback" not in broken.output


# --- broken databases: one line, exit 3


def _broken_databases(tmp_path: Path) -> dict[str, str]:
    noise = tmp_path / "noise.sqlite"
    noise.write_bytes(os.urandom(8192))
    good = tmp_path / "good.sqlite"
    with Store(str(good)) as store:
        store.add(load("sim-worn-quick.json"))
    with sqlite3.connect(good) as conn:  # the WAL into the file, then cut the file short
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(good.read_bytes()[: 3 * 4096 + 100])
    folder = tmp_path / "folder.sqlite"
    folder.mkdir()
    readonly = f"sqlite:///file:{good}?mode=ro&uri=true"
    return {"noise": str(noise), "truncated": str(truncated), "folder": str(folder),
            "readonly": readonly}  # fmt: skip


@pytest.mark.parametrize("kind", ["noise", "truncated", "folder", "readonly"])
def test_a_broken_database_is_one_line_and_exit_3(tmp_path: Path, kind: str) -> None:
    url = _broken_databases(tmp_path)[kind]
    run = write_run(
        tmp_path / "runs" / "a", variant(load("sim-stuck-bit-quick.json"), "BR-1", "br")
    )
    commands = [
        ["store", "add", str(run)],
        ["sync", str(run.parent)],
        ["history", "SIM-WORN-0001"],
        ["fleet", "summary"],
        ["fleet", "cards"],
    ]
    for args in commands:
        result = CliRunner().invoke(main, [*args, "--db", url])
        if kind == "readonly" and args[0] in ("history", "fleet") and result.exit_code == 0:
            continue  # reading a read-only database is fine
        assert result.exit_code == 3, (args, result.output, result.exception)
        err = result.stderr.strip()
        assert "\n" not in err and "Traceback" not in result.output, (args, err)
        assert err.startswith("gpuhealth: error: results database ")
        assert Path(url.removeprefix("sqlite:///file:").split("?")[0]).name in err


# --- fleet: worst within a window, flags, rigs, cards


def _graded(base: RunRecord, letter: str) -> RunRecord:
    assert base.grade is not None
    return dataclasses.replace(base, grade=dataclasses.replace(base.grade, letter=letter))


def test_fleet_ranks_by_the_worst_grade_in_the_window(db_url: str) -> None:
    base = load("sim-worn-quick.json")
    with Store(db_url) as store:
        store.add(_graded(variant(base, "FD-1", "fd-1", day=1), "F"))
        store.add(_graded(variant(base, "FD-1", "fd-2", day=3), "D"))
        store.add(_graded(variant(base, "CC-1", "cc-1", day=2), "C"))
        summary = store.fleet_summary()
        recent = store.fleet_summary(since=datetime(2026, 11, 3, 12))
    assert [(c.serial, c.grade, c.latest_grade) for c in summary.worst] == [
        ("FD-1", "F", "D"),
        ("CC-1", "C", "C"),
    ]
    assert summary.counts["NVIDIA H200"] == {"D": 1, "C": 1}  # counted by their latest grade
    assert [(c.serial, c.grade) for c in recent.worst] == [("FD-1", "D")]  # F is before the window
    assert (recent.cards, recent.runs) == (1, 1)
    table = cli("fleet", "summary", "--db", db_url, "--since", "2026-11-03T12:00").stdout
    assert "since 2026-11-03 12:00 UTC" in table and "CC-1" not in table
    now = datetime(2026, 11, 30, 12)
    assert parse_since("30d", now) == datetime(2026, 10, 31, 12)
    assert parse_since("12h", now) == datetime(2026, 11, 30)
    assert parse_since("2w", now) == datetime(2026, 11, 16, 12)
    assert parse_since("2026-11-03T12:00:00+02:00") == datetime(2026, 11, 3, 10)
    with pytest.raises(ValueError, match="duration like 30d"):
        parse_since("30 days")
    assert cli("fleet", "summary", "--db", db_url, "--since", "soon").exit_code == 2


def test_a_card_whose_counters_went_down_is_flagged_not_a_plain_a(db_url: str) -> None:
    base = load("h100-quick-2026-11-26.json")
    assert base.counters_after is not None and base.grade is not None
    assert base.grade.letter == "A"
    worn = dataclasses.replace(base.counters_after, remapped_rows_correctable=7)
    with Store(db_url) as store:
        store.add(variant(base, "DOWN-1", "down-1", day=1, counters_after=worn))
        store.add(variant(base, "DOWN-1", "down-2", day=2))  # 0 rows now: reset or another card
        store.add(variant(base, "FINE-1", "fine-1", day=2))
        summary = store.fleet_summary()
        listed = store.fleet_cards()
    assert [c.serial for c in summary.worst] == ["DOWN-1"]
    assert summary.worst[0].grade == "A" and summary.flagged == 1
    assert "counters went down: remapped_rows_correctable 7 -> 0" in summary.worst[0].flags[0]
    table = cli("fleet", "summary", "--db", db_url).stdout
    assert "FLAG: counters went down" in table
    as_json = json.loads(cli("fleet", "cards", "--db", db_url, "--json").stdout)
    assert [(c["serial"], c["runs"], c["latest_grade"], c["worst_grade"]) for c in as_json] == [
        ("DOWN-1", 2, "A", "A"),
        ("FINE-1", 1, "A", "A"),
    ]
    assert as_json[0]["flags"] and not as_json[1]["flags"]
    assert as_json[0]["host"] == base.host and as_json[0]["simulated"] is False
    assert {c.serial for c in listed} == {"DOWN-1", "FINE-1"}
    shown = cli("fleet", "cards", "--db", db_url).stdout
    assert "DOWN-1" in shown and "counters went down" in shown


def test_identity_changes_are_flagged_in_history_and_fleet(db_url: str) -> None:
    base = load("h100-quick-2026-11-26.json")
    first = variant(base, "ID-1", "id-1", day=1)
    swapped = dataclasses.replace(
        first, run_id="id-2", started_at=variant(base, "x", "x", day=2).started_at,
        identity=dataclasses.replace(first.identity, uuid="GPU-SOMETHING-ELSE"),
    )  # fmt: skip
    with Store(db_url) as store:
        store.add(first)
        store.add(swapped)
        history = store.history("ID-1")
        summary = store.fleet_summary()
    assert "UUID changed from GPU-ID-1 to GPU-SOMETHING-ELSE" in history.runs[1].flags[0]
    assert "ID CHANGED" in cli("history", "ID-1", "--db", db_url).stdout
    assert summary.worst[0].serial == "ID-1"
    assert "identity changed: serial seen with UUIDs" in summary.worst[0].flags[0]


def _with_ratio(base: RunRecord, ratio: float, host: str, serial: str, day: int) -> RunRecord:
    assert base.analysis is not None and base.analysis.soak is not None
    soak = dataclasses.replace(
        base.analysis.soak, thermal_resistance_c_per_w=0.1 * ratio, reference_c_per_w=0.1
    )
    analysis = dataclasses.replace(base.analysis, soak=soak)
    return dataclasses.replace(
        variant(base, serial, f"{serial}-run", day=day), analysis=analysis, host=host
    )


def test_a_hot_rig_is_flagged_not_its_cards(db_url: str) -> None:
    base = load("h100-quick-2026-11-26.json")
    with Store(db_url) as store:
        for i, ratio in enumerate((1.2, 1.24, 1.3, 1.1)):
            store.add(_with_ratio(base, ratio, "hot-rig", f"HOT-{i}", i))
        store.add(_with_ratio(base, 1.5, "one-card", "ALONE-1", 1))  # one card: its own paste
        for i, ratio in enumerate((0.8, 0.85)):
            store.add(_with_ratio(base, ratio, "cold-rig", f"COLD-{i}", i))
        for i, ratio in enumerate((1.0, 1.15, 0.87)):
            store.add(_with_ratio(base, ratio, "fine-rig", f"FINE-{i}", i))
        summary = store.fleet_summary()
    assert [(r.host, r.cards) for r in summary.rigs] == [("cold-rig", 2), ("hot-rig", 4)]
    assert summary.rigs[1].message == (
        "host hot-rig: median thermal ratio 1.22 over 4 cards — check the rig (airflow, fans, "
        "slot), not the cards"
    )
    table = cli("fleet", "summary", "--db", db_url).stdout
    assert "RIG: host hot-rig: median thermal ratio 1.22 over 4 cards" in table
    assert "RIG: host cold-rig" in table and "fine-rig" not in table


def test_grade_time_lookup_finds_a_real_card_under_another_uuid(tmp_path: Path) -> None:
    """runner.finish with a database: a real (cuda) card whose serial is stored with another
    UUID gets card_identity_changed (C); the facts are in the record."""
    from gpuhealth.judge.grading import load_policy
    from gpuhealth.measure.runner import GradeOptions, finish
    from gpuhealth.presets import preset

    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    base = load("h100-quick-2026-11-26.json")
    with Store(url) as store:
        store.add(variant(base, "REAL-1", "real-1", day=1))
    moved = variant(base, "REAL-1", "real-2", day=2)
    moved = dataclasses.replace(
        moved, identity=dataclasses.replace(moved.identity, uuid="GPU-another")
    )
    options = GradeOptions(preset("quick"), load_policy(None), None, None, write_files=False,
                           history_db=url)  # fmt: skip
    graded = finish(moved, tmp_path / "out", options).record
    assert graded.stored_history is not None and graded.stored_history.prior_runs == 1
    assert [(f.kind, f.field) for f in graded.stored_history.facts] == [
        ("identity", "identity.uuid")
    ]
    assert graded.grade is not None and graded.grade.letter == "C"
    reason = next(r for r in graded.grade.reasons if r.rule == "card-identity-changed")
    assert "identity.uuid is GPU-another, but stored run real-1" in reason.message
    assert "check it is the card you think" in reason.message
    unlooked = finish(moved, tmp_path / "out", dataclasses.replace(options, history_db=None))
    assert unlooked.record.stored_history is None and unlooked.record.grade is not None
    assert unlooked.record.grade.letter in ("A", "B")  # B: judged again under today's rules
    assert not any(r.rule.startswith("card-") for r in unlooked.record.grade.reasons)
