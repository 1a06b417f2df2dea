"""Time the results database with many stored runs (SQLite): history and fleet summary.

    PYTHONPATH=. python bench/bench_store.py [--runs 10000] [--cards 1000] [--db PATH] [--keep]

Fills a fresh SQLite database with --runs real run records (tests/data/runs, varied by serial,
run id and date: --cards cards, runs spread evenly), then times, each as the CLI does it
(in-process, opening the database each time, best of --repeat):
  history SERIAL (text and --json), fleet summary (table, csv, html).
and, for scale, one `gpuhealth history` as a fresh process (imports included).
Targets (issue 6): history and fleet summary <= 1 s each at 10 000 runs.
Prints one table and a BENCH_STORE_JSON line for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from click.testing import CliRunner

from gpuhealth.cli import main
from gpuhealth.cli.store import register
from gpuhealth.models import RunRecord, record_from_json
from gpuhealth.store.database import Store

RUNS = Path(__file__).resolve().parent.parent / "tests" / "data" / "runs"
TARGET_S = 1.0


def records(count: int, cards: int) -> list[RunRecord]:
    bases = [
        record_from_json(p.read_text(encoding="utf-8"), p.name) for p in sorted(RUNS.glob("*.json"))
    ]
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    out = []
    for i in range(count):
        card, visit = i % cards, i // cards
        base = bases[(card + visit) % len(bases)]
        identity = dataclasses.replace(base.identity, serial=f"BENCH-{card:05d}", uuid=None)
        started = start + timedelta(days=visit, minutes=card)
        out.append(
            dataclasses.replace(
                base, run_id=f"bench-{i:06d}", identity=identity, started_at=started.isoformat()
            )
        )
    return out


def timed(args: list[str], repeat: int) -> tuple[float, str]:
    runner = CliRunner()
    best, output = float("inf"), ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = runner.invoke(main, args, catch_exceptions=False)
        best = min(best, time.perf_counter() - t0)
        assert result.exit_code == 0, result.output
        output = result.stdout
    return best, output


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--cards", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", type=Path, help="SQLite file (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="Keep the database file.")
    ns = parser.parse_args()
    register(main)
    folder = Path(tempfile.mkdtemp(prefix="gpuhealth-bench-store-"))
    db = ns.db or folder / "results.sqlite"
    url = f"sqlite:///{db}"

    made = records(ns.runs, ns.cards)
    t0 = time.perf_counter()
    with Store(url) as store:
        for record in made:
            store.add(record)
        n_cards, n_runs = store.counts()
    fill_s = time.perf_counter() - t0
    assert n_runs == ns.runs, (n_runs, ns.runs)

    serial = "BENCH-00042"
    rows: list[tuple[str, float, str]] = [
        ("fill (Store.add each run)", fill_s, f"{ns.runs / fill_s:.0f} runs/s"),
    ]
    for label, args in (
        (f"history {serial}", ["history", serial, "--db", url]),
        (f"history {serial} --json", ["history", serial, "--db", url, "--json"]),
        ("fleet summary", ["fleet", "summary", "--db", url]),
        ("fleet summary --format csv", ["fleet", "summary", "--db", url, "--format", "csv"]),
        ("fleet summary --format html", ["fleet", "summary", "--db", url, "--format", "html"]),
    ):
        seconds, output = timed(args, ns.repeat)
        verdict = "ok" if seconds <= TARGET_S else f"OVER {TARGET_S:g} s"
        rows.append((label, seconds, f"{verdict} ({len(output.splitlines())} lines)"))

    env = {**os.environ, "PYTHONPATH": str(RUNS.parent.parent.parent)}
    t0 = time.perf_counter()
    code = (
        "import sys; from gpuhealth.cli import main; from gpuhealth.cli.store import register; "
        "register(main); main(sys.argv[1:])"
    )
    subprocess.run(
        [sys.executable, "-c", code, "history", serial, "--db", url],
        check=True,
        capture_output=True,
        env=env,
    )
    rows.append((f"history {serial} (new process)", time.perf_counter() - t0, "imports included"))

    size_mb = db.stat().st_size / 1e6
    print(f"SQLite {db} ({size_mb:.0f} MB): {n_runs} runs of {n_cards} cards, best of {ns.repeat}")
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'seconds':>8}  note")
    for label, seconds, note in rows:
        print(f"{label:<{width}}  {seconds:>8.3f}  {note}")
    print(
        "BENCH_STORE_JSON "
        + json.dumps(
            {
                "runs": n_runs,
                "cards": n_cards,
                "db_mb": round(size_mb),
                **{label: round(seconds, 4) for label, seconds, _ in rows},
            }
        )
    )
    if not ns.keep and ns.db is None:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main_()
