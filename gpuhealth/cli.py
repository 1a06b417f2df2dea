"""The command line: parse, call one core function, format, map errors to exit codes.

Exit codes: 0 every card graded A, B or C; 1 at least one D or F; 2 usage error or bad input file;
3 at least one card INCOMPLETE, or no usable GPU / driver.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from gpuhealth import __version__
from gpuhealth.cli_keys import key_file_option
from gpuhealth.errors import EXIT_INCOMPLETE, EnvironmentUnusable, GpuHealthError, InputError
from gpuhealth.models import RunRecord
from gpuhealth.presets import PRESETS

if TYPE_CHECKING:
    from gpuhealth.fleet import CardOutcome, WorkerSpec
    from gpuhealth.keys import SigningKey
    from gpuhealth.runner import GradedCard

F = TypeVar("F", bound=Callable[..., Any])


def _fail(error: GpuHealthError) -> None:
    click.echo(f"gpuhealth: error: {error.one_line()}", err=True)
    sys.exit(error.exit_code)


class _Group(click.Group):
    """Turns gpuhealth's own errors into one line and their exit code, never a traceback. A file
    or folder the system refuses (read-only, full disk, no permission) is the environment's
    failure: one line naming it, exit 3, never 1 (which scripts read as "card failed")."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GpuHealthError as error:
            _fail(error)
        except OSError as error:
            where = error.filename or "a file"
            _fail(
                EnvironmentUnusable(
                    f"{where}: {error.strerror or error}",
                    hint="the file system refused it: check its space and permissions",
                )
            )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpuhealth")
def main() -> None:
    """Grade used NVIDIA GPUs for resale or recycling.

    Exit codes: 0 all cards A/B/C, 1 any card D/F, 2 usage error or bad input file,
    3 any card INCOMPLETE or no usable GPU.
    """


SIM_CARD_HELP = (
    "Simulated card: a built-in model (h100-sxm5-80gb, h200-sxm-141gb) "
    "or a card spec .toml file. Implies --backend sim."
)


def backend_options(func: F) -> F:
    func = click.option("--sim-card", metavar="NAME|PATH", help=SIM_CARD_HELP)(func)
    func = click.option(
        "--backend",
        type=click.Choice(["auto", "cuda", "sim"]),
        default="auto",
        show_default=True,
        help="auto = the real GPU when NVML finds one.",
    )(func)
    return func


@main.command()
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print the cards as JSON.")
def devices(backend: str, sim_card: str | None, as_json: bool) -> None:
    """List the GPUs gpuhealth can grade, with their identity."""
    from gpuhealth.backends import list_devices

    cards = list_devices(backend, sim_card)  # type: ignore[arg-type]  # click.Choice checked it
    if as_json:
        from pydantic import TypeAdapter

        from gpuhealth.models import CardIdentity

        click.echo(
            json.dumps(TypeAdapter(list[CardIdentity]).dump_python(cards, mode="json"), indent=1)
        )
        return
    for card in cards:
        memory = f"{card.memory_total_bytes / 2**30:.0f} GiB" if card.memory_total_bytes else "?"
        click.echo(
            f"GPU {card.index}: {card.name} ({memory}) serial {card.serial or 'n/a'} "
            f"uuid {card.uuid or 'n/a'} bus {card.pci_bus_id or 'n/a'} [{card.backend}]"
        )


def judging_options(prefix: str) -> Callable[[F], F]:
    """--profile and --policy, shared by the commands that judge a record."""

    def lead(word: str) -> str:  # capitalised when there is no prefix
        return prefix + (word if prefix else word.capitalize())

    def add(func: F) -> F:
        func = click.option(
            "--policy",
            "policy_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help=lead("grading policy .toml (default: the shipped policy)."),
        )(func)
        return click.option(
            "--profile",
            "profile_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help=lead("reference profile .toml to judge against (default: matched by model)."),
        )(func)

    return add


def parse_gpus(value: str, count: int) -> list[int]:
    if value == "all":
        return list(range(count))
    try:
        wanted = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise InputError(
            "--gpus", None, f"expected 'all' or indexes like 0,2,5, got {value!r}"
        ) from None
    bad = [i for i in wanted if not 0 <= i < count]
    if bad or not wanted:
        raise InputError(
            "--gpus", None, f"expected indexes between 0 and {count - 1}, got {value!r}"
        )
    return wanted


no_clear_option = click.option(
    "--no-clear",
    is_flag=True,
    help="Do not clear the memory after the tests (by default every allocatable byte is "
    "overwritten with zeros and read back; the certificate says which).",
)


def db_options(func: F) -> F:
    """--db and --no-db, shared by grade and resume (the same store call)."""
    func = click.option(
        "--no-db", is_flag=True, help="Do not add the records to a results database."
    )(func)
    return click.option(
        "--db",
        metavar="URL|PATH",
        help="Results database each graded record is added to (default: $GPUHEALTH_DB, else "
        "results.sqlite in the config folder; postgresql://... for PostgreSQL).",
    )(func)


@main.command()
@click.option(
    "--sim-card",
    "sim_cards",
    metavar="NAME|PATH",
    multiple=True,
    help=SIM_CARD_HELP + " Give it several times for several simulated GPUs: the first is GPU 0, "
    "the next GPU 1, and so on (then --gpus defaults to all of them).",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "cuda", "sim"]),
    default="auto",
    show_default=True,
    help="auto = the real GPU when NVML finds one.",
)
@click.option("--demo", is_flag=True, help="Grade a healthy simulated H100 (no GPU needed).")
@click.option("--quick", "preset_name", flag_value="quick", help="Short run (about a minute).")
@click.option(
    "--thorough",
    "preset_name",
    flag_value="thorough",
    help="Long run: more patterns, bit fade, 10-minute soak.",
)
@click.option(
    "--preset",
    "preset_name",
    type=click.Choice(list(PRESETS)),
    default="standard",
    show_default=True,
    help="Test preset.",
)
@click.option(
    "--gpus",
    metavar="all|0,2,5",
    help="Which GPUs to grade (default: GPU 0, or every --sim-card given). Every card, one or "
    "several, is graded by a worker process of its own watched by a watchdog: a worker that "
    "hangs, crashes or loses its card leaves its card INCOMPLETE with what it had measured; the "
    "others finish.",
)
@click.option(
    "--expect-gpus",
    type=click.IntRange(min=1),
    metavar="N",
    help="Fail (exit 3) before measuring anything when fewer than N GPUs are visible, naming "
    "the missing ones.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder for run.json, report.html and report.md "
    "(default: gpuhealth-runs/<run id>; one subfolder per GPU when several). A folder that holds "
    "a record already is refused (exit 2) unless --force.",
)
@click.option("--force", is_flag=True, help="Write over a record already in the run folder.")
@judging_options("")
@click.option(
    "--allow-busy",
    is_flag=True,
    help="Measure even if other processes hold the card (results flagged).",
)
@key_file_option
@db_options
@click.option(
    "--tests",
    "tests_text",
    metavar="LIST",
    help="Run only these tests (comma list: bandwidth,memtest,fp32,fp16_tensor,gemm,soak). The "
    "grade covers only them and says so: the others count as not measured (INCOMPLETE).",
)
@click.option(
    "--soak",
    "soak_s",
    type=float,
    metavar="SECONDS",
    help="Soak length in seconds (10 to 86400; e.g. 3600 for a one-hour burn-in), instead of "
    "the preset's; journaled every 5 s as it runs. Shorter than the preset's: not A.",
)
@no_clear_option
@click.option("--json", "as_json", is_flag=True, help="Print the grades and their summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def grade(
    backend: str,
    sim_cards: tuple[str, ...],
    demo: bool,
    preset_name: str,
    gpus: str | None,
    expect_gpus: int | None,
    out_dir: Path | None,
    force: bool,
    profile_path: Path | None,
    policy_path: Path | None,
    allow_busy: bool,
    key_file: Path | None,
    db: str | None,
    no_db: bool,
    tests_text: str | None,
    soak_s: float | None,
    no_clear: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Stress-test, judge and grade GPUs; write a report per card.

    When a signing key exists (gpuhealth keys generate), every record is signed before run.json,
    report.html and report.md are written, so that all three carry the signature.

    SIGTERM, SIGHUP or Ctrl-C stops every card at its next kernel: each record is written
    INCOMPLETE with the tests it had finished (`gpuhealth resume RUN_DIR` runs the rest later),
    exit 3. A second signal stops at once: the records are closed from their journals.
    Several cards end with one summary line ("8 cards: 6 A, 1 D, 1 INCOMPLETE").
    """
    from gpuhealth.backends import DEMO_CARD
    from gpuhealth.fleet import GradePlan, check_expected, grade_specs
    from gpuhealth.keys import find_key, load_key
    from gpuhealth.presets import parse_tests

    tests = parse_tests(tests_text) if tests_text is not None else None
    if demo:
        backend, sim_cards = "sim", sim_cards or (DEMO_CARD,)
    if backend == "sim" and not sim_cards:
        sim_cards = (DEMO_CARD,)
    count = len(sim_cards) if sim_cards else _cuda_count()
    check_expected(count, expect_gpus)
    indexes = parse_gpus(gpus or ("all" if len(sim_cards) > 1 else "0"), count)
    # a key named on purpose must exist; the default one is used when it does
    signer = load_key(key_file) if key_file else find_key()
    plan = GradePlan(
        backend, indexes, sim_cards, preset_name, out_dir, profile_path, policy_path,
        allow_busy, signer.path if signer else None, force,
        history_db=None if no_db else (db or ""),
        tests=tests, soak_s=soak_s, clear=not no_clear,
    )  # fmt: skip
    specs = grade_specs(plan)  # every input checked here, before any worker starts
    sys.exit(_supervise(specs, signer, db, no_db, as_json, quiet))


def _supervise(
    specs: list[WorkerSpec],
    signer: SigningKey | None,
    db: str | None,
    no_db: bool,
    as_json: bool,
    quiet: bool,
) -> int:
    """Run the cards under the Supervisor (watchdog, signals), then show, store and summarise
    them; returns the exit code. Signals stay handled until the end: a late one is no traceback."""
    from gpuhealth.fleet import Supervisor, supervision_limits
    from gpuhealth.progress import fleet_display

    supervisor = Supervisor.with_limits(specs, supervision_limits())
    with _stop_on_signals(supervisor) as signals:
        with fleet_display(quiet, [s.gpu for s in specs]) as on_event:
            supervisor.on_event = on_event
            outcomes = supervisor.run()
        code = _conclude(outcomes, signer, db, no_db, as_json)
    return EXIT_INCOMPLETE if signals else code


def _conclude(
    outcomes: list[CardOutcome],
    signer: SigningKey | None,
    db: str | None,
    no_db: bool,
    as_json: bool,
) -> int:
    """Show every card (and the summary line when several), sign-note, store; the exit code."""
    from gpuhealth.fleet import letter_of, outcomes_exit_code, summary_line

    graded = [o.graded for o in outcomes if o.graded is not None]
    failed = [o for o in outcomes if o.graded is None]
    letters = [letter_of(g.record) for g in graded] + ["INCOMPLETE"] * len(failed)
    code = outcomes_exit_code(outcomes)
    if not as_json:
        for outcome in outcomes:
            _print_outcome(outcome, len(outcomes))
        if len(outcomes) > 1:
            click.echo(summary_line(letters))
    elif len(outcomes) == 1 and failed:
        click.echo(f"gpuhealth: error: {failed[0].error}", err=True)
    if graded:
        _signed_note(signer, len(graded))
    if not no_db and graded:
        _store_records(graded, db)  # a database failure is said, never the card's verdict
    if as_json:
        click.echo(json.dumps(_json_output(outcomes, letters, code), indent=1))
    return code


def _print_outcome(outcome: CardOutcome, cards: int) -> None:
    if outcome.graded is not None:
        _print_grade(outcome.graded)
    elif cards == 1:
        click.echo(f"gpuhealth: error: {outcome.error}", err=True)
    else:
        click.echo(f"GPU {outcome.gpu}: INCOMPLETE, no record: {outcome.error}")


def _json_output(outcomes: list[CardOutcome], letters: list[str], code: int) -> dict[str, Any]:
    """{"summary": {...}, "cards": [one row per card, by GPU]}."""
    from gpuhealth.fleet import grade_counts, summary_line

    rows = [
        _summary(o.graded)
        if o.graded is not None
        else {"gpu": o.gpu, "grade": "INCOMPLETE", "error": o.error}
        for o in outcomes
    ]
    summary = {
        "cards": len(letters),
        "grades": grade_counts(letters),
        "line": summary_line(letters),
        "exit_code": code,
    }
    return {"summary": summary, "cards": sorted(rows, key=lambda r: r["gpu"])}


def _store_records(graded: list[GradedCard], db: str | None) -> bool:
    """Add the records to the results database. When it cannot be reached or written (corrupt,
    unreachable, an unwritable config folder, a full disk) they stay in their run folders, one
    line says where (`gpuhealth sync` adds them later) and False is returned; the run's exit code
    stays the cards' (a script must not read a database problem as a card's verdict, nor a D as
    a database problem)."""
    from gpuhealth.store import StoreError, StoreUnavailable, save_record

    unchecked = [h for g in graded if (h := g.record.stored_history) and not h.checked]
    note = "; the cards' history was not checked" if unchecked else ""
    try:
        for result in graded:
            save_record(result.record, db)
    except (StoreUnavailable, StoreError, OSError) as error:
        said = error.one_line() if isinstance(error, GpuHealthError) else str(error)
        folders = " ".join(str(g.out_dir) for g in graded)
        click.echo(
            f"gpuhealth: warning: {said}; the results are kept in {folders} "
            f"(add them later: gpuhealth sync FOLDER){note}",
            err=True,
        )
        return False
    if unchecked:
        click.echo(f"gpuhealth: warning: card history not checked: {unchecked[0].note}", err=True)
    return True


def _signed_note(signer: SigningKey | None, count: int) -> None:
    from gpuhealth.keys import default_key_file

    if signer is not None:
        click.echo(
            f"gpuhealth: signed {count} report(s) with key {signer.fingerprint} ({signer.path})",
            err=True,
        )
    else:
        click.echo(
            f"gpuhealth: reports not signed: no signing key at {default_key_file()} "
            "(create one: gpuhealth keys generate)",
            err=True,
        )


class _Stoppable(Protocol):
    def stop(self, signum: int) -> None: ...


@contextmanager
def _stop_on_signals(target: _Stoppable) -> Iterator[list[int]]:
    """SIGTERM, SIGHUP and Ctrl-C (SIGINT) ask for a stop, honoured at the next kernel; each
    card's record is then written INCOMPLETE. A second signal stops at once (the workers are
    killed, their journals closed by this process). Yields the signals received."""
    import signal
    import threading

    from gpuhealth.runner import stop_reason

    asked: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield asked
        return

    def handler(signum: int, _frame: object) -> None:
        target.stop(signum)
        again = bool(asked)
        asked.append(signum)
        what = (
            "stopping now, closing the records from their journals"
            if again
            else "stopping at the next kernel, writing what was measured"
        )
        click.echo(f"gpuhealth: {stop_reason(signum)}: {what}", err=True)

    caught = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in caught}
    try:
        yield asked
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _cuda_count() -> int:
    from gpuhealth.backends import NO_GPU_HINT
    from gpuhealth.backends.nvml import Nvml
    from gpuhealth.errors import EnvironmentUnusable

    try:
        nvml = Nvml.open()
    except EnvironmentUnusable as exc:  # says what is missing (driver, library) and how to fix it
        exc.hint = f"{exc.hint}; {NO_GPU_HINT}" if exc.hint else NO_GPU_HINT
        raise
    try:
        count = nvml.device_count()
    finally:
        nvml.close()
    if count == 0:
        raise EnvironmentUnusable("no NVIDIA GPU found (NVML sees none)", hint=NO_GPU_HINT)
    return count


def _summary(result: GradedCard) -> dict[str, Any]:
    from gpuhealth.readiness import verdict as readiness_verdict
    from gpuhealth.report import rules_banner

    record, g = result.record, result.record.grade
    return {
        "run_id": record.run_id,
        "gpu": record.identity.index,
        "name": record.identity.name,
        "serial": record.identity.serial,
        "uuid": record.identity.uuid,
        "backend": record.backend,
        "grade": g.letter if g else "INCOMPLETE",
        "disposition": g.disposition if g else None,
        "reasons": [{"rule": r.rule, "grade": r.grade, "message": r.message} for r in g.reasons]
        if g
        else [],
        "complete": record.complete,
        "rules_banner": rules_banner(record),
        "shipped_grade": record.rules.shipped_grade.letter
        if record.rules and record.rules.shipped_grade
        else None,
        "signed_by": record.signature.key_fingerprint if record.signature else None,
        "readiness": readiness_verdict(record.readiness),
        "memory_clear": record.memory_clear.status if record.memory_clear else None,
        "out_dir": str(result.out_dir),
    }


def _print_grade(result: GradedCard) -> None:
    from gpuhealth.readiness import resale_line
    from gpuhealth.report import rules_banner

    record, g = result.record, result.record.grade
    letter = g.letter if g else "INCOMPLETE"
    sim = " [SIMULATED]" if record.backend == "sim" else ""
    click.echo(
        f"GPU {record.identity.index} {record.identity.name} serial "
        f"{record.identity.serial or 'n/a'}{sim}: grade {letter}"
    )
    banner = rules_banner(record)
    if banner:
        click.echo(f"  OTHER RULES THAN GPUHEALTH'S: {banner}")
    if g:
        click.echo(f"  {g.disposition}")
        for reason in g.reasons:
            click.echo(f"  - [{reason.grade}] {reason.rule}: {reason.message}")
    click.echo(f"  {resale_line(record)}")
    click.echo(f"  report: {result.out_dir / 'report.html'}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--close",
    is_flag=True,
    help="Measure nothing: close the record as INCOMPLETE (its missing tests marked not run), "
    "then judge, sign and write its reports. A record closed already is refused unless --force.",
)
@click.option(
    "--force", is_flag=True, help="With --close: close and sign again a record closed already."
)
@backend_options
@judging_options("")
@click.option(
    "--allow-busy",
    is_flag=True,
    help="Measure even if other processes hold the card (results flagged).",
)
@key_file_option
@db_options
@no_clear_option
@click.option("--json", "as_json", is_flag=True, help="Print the grade and summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress display.")
def resume(
    run_dir: Path,
    close: bool,
    force: bool,
    backend: str,
    sim_card: str | None,
    profile_path: Path | None,
    policy_path: Path | None,
    allow_busy: bool,
    key_file: Path | None,
    db: str | None,
    no_db: bool,
    no_clear: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Finish an interrupted grade: run its missing tests, then judge it all.

    RUN_DIR is the run folder (or its run.json) of a record left INCOMPLETE by SIGTERM, Ctrl-C, a
    killed worker or a lost card. The card is opened as the record says (backend, GPU index, a
    simulated card by its model; --backend/--sim-card name it otherwise) and refused when its
    serial or UUID differ from the record's. The tests already finished are kept; the record,
    report.html and report.md are rewritten in RUN_DIR. The card runs in a supervised worker
    (watchdog, signals) as in grade, and the result is stored as grade stores it (--db, --no-db).
    A truncated or corrupt run.json is reported with the file's name (exit 2), never used. Exit
    codes as for grade.
    """
    from gpuhealth.fleet import CardOutcome, resume_spec
    from gpuhealth.keys import find_key, load_key
    from gpuhealth.runner import read_journal

    path = run_dir / "run.json" if run_dir.is_dir() else run_dir
    record = read_journal(path)
    if record.complete:
        raise InputError(str(path), "complete", "the record is complete: nothing to resume")
    signer = load_key(key_file) if key_file else find_key()
    if close:
        graded = _close_record(record, path, force, profile_path, policy_path, signer)
        outcome = CardOutcome(record.identity.index, graded)
        sys.exit(_conclude([outcome], signer, db, no_db, as_json))
    spec = resume_spec(
        record, path.parent, backend, sim_card, profile_path, policy_path, allow_busy,
        signer.path if signer else None, clear=not no_clear,
    )  # fmt: skip
    sys.exit(_supervise([spec], signer, db, no_db, as_json, quiet))


def _close_record(
    record: RunRecord,
    path: Path,
    force: bool,
    profile_path: Path | None,
    policy_path: Path | None,
    signer: SigningKey | None,
) -> GradedCard:
    """resume --close: measure nothing; close, judge, sign and write the record."""
    from gpuhealth.grading import load_policy
    from gpuhealth.presets import preset
    from gpuhealth.profiles import load_profile
    from gpuhealth.runner import GradeOptions, close_journal, finish

    if record.grade is not None and record.finished_at is not None and not force:
        raise InputError(
            str(path), "grade", "the record is closed already (pass --force to close it again)"
        )
    profile = load_profile(profile_path) if profile_path else None
    options = GradeOptions(
        preset(record.preset), load_policy(policy_path), profile, path.parent, signer=signer
    )
    why = record.interrupted or "closed by gpuhealth resume --close"
    return finish(close_journal(record, why), path.parent, options)


@main.command()
@click.argument("run_json", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md", "json", "pdf"]),
    default="html",
    show_default=True,
    help="html: the certificate; md: Markdown; json: the canonical run record; pdf: the "
    "certificate printed by a headless Chromium on PATH (default -o: report.pdf beside RUN_JSON).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of standard output.",
)
@click.option(
    "--regrade",
    is_flag=True,
    help="Judge the stored measurements again (current profile and policy).",
)
@judging_options("With --regrade: ")
@key_file_option
def report(
    run_json: Path,
    fmt: str,
    output: Path | None,
    regrade: bool,
    profile_path: Path | None,
    policy_path: Path | None,
    key_file: Path | None,
) -> None:
    """Render a stored run record again, with no GPU (byte for byte the same report).

    The record's signature is kept. With --regrade the content changes, so the old signature is
    dropped and the record signed again when a signing key exists (--key-file, or the default).
    """
    from gpuhealth.datafiles import read_text_file
    from gpuhealth.models import record_from_json
    from gpuhealth.report import render

    record = record_from_json(read_text_file(run_json), str(run_json))
    if regrade:
        record = _resign(_regrade(record, profile_path, policy_path), key_file)
    elif profile_path or policy_path or key_file:
        raise InputError("--profile/--policy/--key-file", None, "only take effect with --regrade")
    if fmt == "pdf":
        from gpuhealth.pdf import record_to_pdf

        target = output or run_json.with_name("report.pdf")
        record_to_pdf(record, target)
        click.echo(f"wrote {target}")
        return
    rendered = render(record, fmt)  # type: ignore[arg-type]  # click.Choice checked it
    if output:
        output.write_text(rendered, encoding="utf-8")
    else:
        click.echo(rendered, nl=False)


def _regrade(record: RunRecord, profile_path: Path | None, policy_path: Path | None) -> RunRecord:
    from gpuhealth.analysis import judge
    from gpuhealth.grading import load_policy
    from gpuhealth.profiles import builtin_profiles, load_profile, match_profile

    profile = (
        load_profile(profile_path)
        if profile_path
        else match_profile(record.identity, builtin_profiles())
    )
    return judge(replace(record, analysis=None, grade=None), profile, load_policy(policy_path))


def _resign(record: RunRecord, key_file: Path | None) -> RunRecord:
    """A regraded record: its old signature no longer holds; signed again when a key exists."""
    from gpuhealth.keys import default_key_file, find_key, load_key
    from gpuhealth.signing import sign_record, unsigned

    signer = load_key(key_file) if key_file else find_key()
    if signer is None:
        if record.signature is not None:
            click.echo(
                f"gpuhealth: the old signature was dropped (the grade changed) and no signing key "
                f"exists at {default_key_file()} to sign again (gpuhealth keys generate)",
                err=True,
            )
        return unsigned(record)
    click.echo(f"gpuhealth: regraded record signed with key {signer.fingerprint}", err=True)
    return sign_record(record, signer)


@main.group()
def profile() -> None:
    """Reference profiles: what healthy cards of a model measure."""


@profile.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
def profile_list(as_json: bool) -> None:
    """List the built-in profiles: kind, cards, metrics."""
    from gpuhealth.profiles import builtin_profiles, profile_kind

    rows = [
        {
            "key": p.key,
            "name": p.name,
            "kind": profile_kind(p),
            "cards": p.cards,
            "metrics": len(p.metrics),
            "thermal": p.thermal is not None,
            "nvml_names": list(p.nvml_names),
        }
        for p in builtin_profiles()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'key':20} {'kind':13} {'cards':>5} {'metrics':>7} thermal  name")
    for r in rows:
        thermal = "yes" if r["thermal"] else "no"
        counts = f"{r['cards']:>5} {r['metrics']:>7}"
        click.echo(f"{r['key']:20} {r['kind']:13} {counts} {thermal:8} {r['name']}")


@profile.command("show")
@click.argument("key_or_path")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
def profile_show(key_or_path: str, as_json: bool) -> None:
    """Show a profile (built-in key or .toml path).

    Every metric's centre, spread, cards behind it and conditions.
    """
    from gpuhealth.profiles import MIN_FLEET_CARDS, find_profile, profile_kind

    found = find_profile(key_or_path)
    if as_json:
        click.echo(json.dumps(found.model_dump(mode="json"), indent=1))
        return
    click.echo(f"{found.name} [{found.key}] — {profile_kind(found)}, {found.cards} card(s)")
    click.echo(f"  matches NVML names: {', '.join(found.nvml_names)} (~{found.memory_gib:g} GiB)")
    click.echo(f"  source: {found.source}")
    if found.spread_is_prior:
        click.echo(f"  spreads are PRIORS: fewer than {MIN_FLEET_CARDS} cards measured")
    for run in found.source_runs:
        click.echo(f"  from run: {run}")
    if found.thermal:
        click.echo(f"  thermal resistance: {found.thermal.c_per_w:g} °C/W ({found.thermal.source})")
    else:
        click.echo("  thermal resistance: no reference")
    if found.identity is None:
        click.echo("  identity: not checked (no [identity] registry)")
    else:
        checked = {
            k: v
            for k, v in found.identity.model_dump().items()
            if v not in (None, ()) and k != "source"
        }
        shown = "; ".join(
            f"{k} {', '.join(v) if isinstance(v, tuple) else f'{v:g}'}" for k, v in checked.items()
        )
        click.echo(f"  identity: {shown} ({found.identity.source or 'no source given'})")
    if found.vbios_versions:
        click.echo(f"  VBIOS seen on healthy cards: {', '.join(found.vbios_versions)}")
    click.echo(f"  {'metric':34} {'centre':>10} {'spread':>9} {'rel':>6} {'n':>4}  conditions")
    for key, m in found.metrics.items():
        conditions = ", ".join(f"{k}={v}" for k, v in m.conditions.items())
        click.echo(
            f"  {key:34} {m.center:>10.5g} {m.spread:>9.4g} {m.spread / m.center:>6.1%} "
            f"{m.n:>4}  {conditions}"
        )


@profile.command("build")
@click.argument("runs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Profile .toml to write (use it with grade --profile).",
)
@click.option("--key", help="Profile key (default: from the model name).")
@click.option("--name", help="Readable model name (default: the NVML name).")
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def profile_build(
    runs: tuple[Path, ...], output: Path, key: str | None, name: str | None, force: bool
) -> None:
    """Build a profile from run records of cards you trust.

    Each card counts once (the median of its runs); a card far from the others (modified
    z-score > 3.5) is rejected so that one bad card cannot move the reference.
    """
    from gpuhealth.profiles.build import build_profile, load_runs, render_built, write_profile

    if output.exists() and not force:
        raise InputError(str(output), None, "exists already (pass --force to overwrite it)")
    if not output.parent.is_dir():
        raise InputError(str(output), None, f"expected an existing folder {output.parent}")
    built = build_profile(load_runs(list(runs)), key, name)
    for warning in built.warnings:
        click.echo(f"gpuhealth: warning: {warning}", err=True)
    write_profile(output, render_built(built.profile))
    p = built.profile
    click.echo(
        f"wrote {output}: {p.name}, {p.cards} card(s) from {len(runs)} run(s), "
        f"{len(p.metrics)} metrics" + (", spreads are priors" if p.spread_is_prior else "")
    )


@main.command()
@click.argument("report_path", metavar="REPORT", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "public_key",
    metavar="PUBKEY",
    help="The signer's public key (PEM file, base64 key or SHA256: fingerprint); "
    "default: the pinned keys.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--recheck",
    is_flag=True,
    help="On the machine with the card: same card (serial, UUID, model, memory), counters no "
    "worse, a memory test over all allocatable memory, and a re-measurement consistent with "
    "the report (two-sided, Holm-adjusted, alpha 0.01).",
)
@backend_options
def verify(
    report_path: Path,
    public_key: str | None,
    as_json: bool,
    recheck: bool,
    backend: str,
    sim_card: str | None,
) -> None:
    """Check a report: "not proven" unless every check was made and held.

    REPORT is run.json or report.html (whose page must be exactly what its embedded record
    renders). The first line is the verdict, the second what to do; then every check (pass, fail,
    unproven, n/a) with why. The signer must be the --key given, else a pinned key (gpuhealth keys
    pin); the grade is judged again from the signed measurements under the embedded rules and
    under gpuhealth's shipped rules, and must be no better than the shipped rules give.

    Exit codes: 0 VALID, 1 INVALID (changed, another signer, evidence missing, page differs,
    grade better than the shipped rules give; with --recheck: another card, a memory error, worse
    counters or different performance), 2 unreadable or usage error, 3 --recheck found no usable
    GPU, 4 unsigned, 5 signer not trusted (no --key, not pinned), 6 trust store unreadable,
    7 version not checkable, 8 grade not judgeable, 9 a simulated card.
    """
    from gpuhealth.keys import public_key_fingerprint
    from gpuhealth.recheck import open_card, recheck_card
    from gpuhealth.verify import format_text, verify_report, with_recheck

    if not recheck and (sim_card is not None or backend != "auto"):
        raise InputError("--backend/--sim-card", None, "only take effect with --recheck")
    wanted = public_key_fingerprint(public_key, "--key") if public_key else None
    result = verify_report(report_path, wanted)
    if recheck and result.record is not None:
        card = open_card(result.record, backend, sim_card)
        try:
            result = with_recheck(result, recheck_card(result.record, card))
        finally:
            card.close()
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
    else:
        click.echo(format_text(result), nl=False)
    sys.exit(result.exit_code)


def _register_command_groups() -> None:
    # keys (cli_keys.py); history, fleet summary, sync and store (cli_store.py); screen
    from gpuhealth import cli_keys, cli_screen, cli_store

    cli_keys.register(main)
    cli_store.register(main)
    cli_screen.register(main)


_register_command_groups()
