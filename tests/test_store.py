"""The results database (gpuhealth/store.py) on SQLite and on a real PostgreSQL server.

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
import shutil
import socket
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
from gpuhealth.cli_store import register
from gpuhealth.models import HealthCounters, RunRecord, record_from_json, record_to_json
from gpuhealth.store import (
    REMAP_DOWN,
    Store,
    StoreUnavailable,
    default_db_path,
    resolve_url,
    save_record,
)
from gpuhealth.store_schema import (
    LATEST,
    cards,
    findings,
    grade_reasons,
    metrics,
    run_counters,
    runs,
)

register(main)  # cli.py does this too once wired; register is idempotent

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
