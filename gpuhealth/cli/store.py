"""The results-database commands: store add|info, history, fleet summary|cards, sync.

cli/main.py adds them to its group with `register(main)`. Errors are gpuhealth's own
(StoreUnavailable: exit 3, StoreError / bad files: exit 2), turned into one line by the main group.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from gpuhealth.errors import EXIT_USAGE

F = TypeVar("F", bound=Callable[..., Any])

DB_HELP = (
    "Results database: a URL (sqlite:///PATH, postgresql+psycopg://USER@HOST/DB) or an SQLite "
    "file path (default: $GPUHEALTH_DB, else results.sqlite in the gpuhealth settings folder, "
    "which $GPUHEALTH_CONFIG_DIR moves)."
)


def db_option(func: F) -> F:
    return click.option("--db", "db_url", metavar="URL|PATH", help=DB_HELP)(func)


def _parse_since(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    from gpuhealth.store.answers import parse_since

    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def since_option(func: F) -> F:
    return click.option(
        "--since",
        metavar="DATE|30d",
        callback=_parse_since,
        help="Only runs since this ISO date or time (UTC), or this long ago: 30d, 12h, 2w, 90m "
        "(default: every run).",
    )(func)


def _print_import(report: Any, verb: str) -> None:
    from gpuhealth.store.answers import ImportReport

    assert isinstance(report, ImportReport)
    for path, run_id in report.added:
        click.echo(f"{verb} {run_id} ({path})")
    for path, run_id in report.updated:
        click.echo(
            f"updated {run_id} ({path}): stored with other content; the earlier version kept"
        )
    for path, run_id, why in report.skipped:
        click.echo(f"skipped {run_id} ({path}): {why}")
    for _path, message in report.invalid:
        click.echo(f"gpuhealth: invalid run record: {message}", err=True)
    click.echo(
        f"{len(report.added)} added, {len(report.updated)} updated, {len(report.skipped)} skipped, "
        f"{len(report.invalid)} invalid",
        err=True,
    )
    if report.invalid:
        sys.exit(EXIT_USAGE)


@click.group("store")
def store_group() -> None:
    """The results database: every graded run of every card (SQLite or PostgreSQL)."""


@store_group.command("add")
@click.argument("records", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@db_option
def store_add(records: tuple[Path, ...], db_url: str | None) -> None:
    """Add run records (run.json files) to the results database.

    A run id identifies a run: a record already stored with the same content is skipped ("already
    stored"), so adding twice is harmless; one stored with other content (resumed, closed,
    re-signed, re-graded) updates the run ("updated") and the earlier version is kept. Records
    that are not graded yet (a run in progress) are skipped. Exit codes: 0 done, 2 a file is not
    a valid run record (the others are still added), 3 the database cannot be reached.
    """
    from gpuhealth.store.database import Store

    with Store(db_url) as store:
        report = store.import_files(list(records))
    _print_import(report, "added")


@store_group.command("info")
@db_option
def store_info(db_url: str | None) -> None:
    """Where the results database is and what it holds."""
    from gpuhealth.store.database import Store

    with Store(db_url) as store:
        n_cards, n_runs = store.counts()
        click.echo(f"database: {store.display_url}")
        click.echo(f"schema version: {store.schema_version()}")
        click.echo(f"cards: {n_cards}")
        click.echo(f"runs: {n_runs}")


@click.command("history")
@click.argument("serial")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
def history(serial: str, db_url: str | None, as_json: bool) -> None:
    """One card's runs over time: grades, key metrics, remapped rows.

    SERIAL is the card's serial number (or its UUID). Remapped rows, retired pages and lifetime
    ECC counts never go down on one card: a run where they did is flagged ("counter reset or a
    different card"), as is a run whose serial or UUID differs from the run before. Exit codes:
    0 shown, 2 no such card stored, 3 the database cannot be reached.
    """
    from gpuhealth.store.answers import history_to_json
    from gpuhealth.store.database import Store
    from gpuhealth.store.export import history_text

    with Store(db_url) as store:
        found = store.history(serial)
    if as_json:
        click.echo(json.dumps(history_to_json(found), indent=1))
    else:
        click.echo(history_text(found))


@click.group("fleet")
def fleet_group() -> None:
    """Many cards at once."""


@click.command("summary")
@db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "html", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.option(
    "--worst",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many of the worst cards to list.",
)
@since_option
def fleet_summary(
    db_url: str | None, fmt: str, output: Path | None, worst: int, since: datetime | None
) -> None:
    """Cards by model and latest grade; the worst cards, flags and rigs.

    Each card counts once, by its most recent run. The worst cards are ranked by the worst grade
    of their runs in the window (--since; default every run), not the latest: a card graded F and
    then D is listed as F. Listed: worst grade C or worse (F, D, INCOMPLETE, C, in that order), or
    a history flag (identity changed: serial with another UUID or UUID with another serial;
    counters went down: remapped rows, retired pages or lifetime ECC lower than in an earlier
    run), flagged cards first within a grade, then more remapped rows. A host whose cards' median
    thermal ratio (measured over reference thermal resistance) is off, over at least 2 cards, is
    flagged as a rig problem. Exit codes: 0 shown, 2 bad option, 3 the database cannot be reached.
    """
    from gpuhealth.store.answers import summary_to_json
    from gpuhealth.store.database import Store
    from gpuhealth.store.export import summary_csv, summary_html, summary_text

    with Store(db_url) as store:
        summary = store.fleet_summary(worst, since)
    if fmt == "json":
        text = json.dumps(summary_to_json(summary), indent=1) + "\n"
    else:
        render = {"table": summary_text, "csv": summary_csv, "html": summary_html}[fmt]
        text = render(summary)
        text = text if text.endswith("\n") else text + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@click.command("sync")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@db_option
def sync(run_dirs: tuple[Path, ...], db_url: str | None) -> None:
    """Add new and changed run.json files under RUN_DIRS to the results database.

    Every run.json under the folders whose run id the results database does not hold is added;
    one it holds with other content (resumed by `gpuhealth resume`, closed, re-signed, re-graded)
    updates the stored run, whose earlier version is kept ("updated"); the others are skipped.
    The run folders are only read: when the database cannot be reached, the command exits 3 with
    a one-line error and nothing is lost; run it again once the database is back. Exit codes:
    0 done, 2 a run.json is not a valid run record, 3 the database cannot be reached.
    """
    from gpuhealth.store.database import Store, find_run_files

    with Store(db_url) as store:  # first: an unreachable database fails before any reading
        files = find_run_files(run_dirs)
        report = store.import_files(files)
    _print_import(report, "added")


@click.command("cards")
@db_option
@since_option
@click.option("--json", "as_json", is_flag=True, help="Print the cards as JSON.")
def fleet_cards(db_url: str | None, since: datetime | None, as_json: bool) -> None:
    """Every stored card with its latest and worst grade and its flags.

    Columns: serial, UUID, model, host, runs, latest grade, worst grade, flags.
    The worst grade is the worst of the card's runs in the window (--since); flags look at the
    card's whole history (identity changed, counters went down). Exit codes: 0 shown, 2 bad
    option, 3 the database cannot be reached.
    """
    from gpuhealth.store.answers import cards_to_json
    from gpuhealth.store.database import Store
    from gpuhealth.store.export import cards_text

    with Store(db_url) as store:
        found = store.fleet_cards(since)
    if as_json:
        click.echo(json.dumps(cards_to_json(found), indent=1))
    else:
        click.echo(cards_text(found))


def register(main: click.Group) -> None:
    """Add the results-database commands to gpuhealth's main group (safe to call twice)."""
    for command in (store_group, history, sync):
        assert command.name is not None
        if main.commands.get(command.name) is not command:
            main.add_command(command)
    existing = main.commands.get("fleet")
    if existing is None:
        main.add_command(fleet_group)
        existing = fleet_group
    if not isinstance(existing, click.Group):
        raise TypeError("gpuhealth: 'fleet' is a command, not a group: cannot add 'fleet summary'")
    for command in (fleet_summary, fleet_cards):
        assert command.name is not None
        if command.name not in existing.commands:
            existing.add_command(command)
