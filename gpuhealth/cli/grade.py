"""`gpuhealth devices`, `grade` and `resume`: measure, judge, certify and store each card."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gpuhealth.cli.grade_output import conclude
from gpuhealth.cli.keys import key_file_option
from gpuhealth.cli.options import (
    SIM_CARD_HELP,
    allow_busy_option,
    backend_options,
    db_options,
    judging_options,
    no_clear_option,
    parse_gpus,
)
from gpuhealth.cli.signals import stop_on_signals
from gpuhealth.errors import EXIT_INCOMPLETE, EnvironmentUnusable, InputError
from gpuhealth.models import RunRecord
from gpuhealth.presets import PRESETS

if TYPE_CHECKING:
    from gpuhealth.certificate.keys import SigningKey
    from gpuhealth.measure.plan import WorkerSpec
    from gpuhealth.measure.runner import GradedCard


@click.command()
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print the cards as JSON.")
def devices(backend: str, sim_card: str | None, as_json: bool) -> None:
    """List the GPUs gpuhealth can grade, with their identity."""
    from gpuhealth.measure.backends import list_devices

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


@click.command()
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
@allow_busy_option
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
    from gpuhealth.certificate.keys import find_key, load_key
    from gpuhealth.measure.backends import DEMO_CARD
    from gpuhealth.measure.plan import GradePlan, check_expected, grade_specs
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
    from gpuhealth.cli.progress import fleet_display
    from gpuhealth.measure.fleet import Supervisor
    from gpuhealth.measure.plan import supervision_limits

    supervisor = Supervisor.with_limits(specs, supervision_limits())
    with stop_on_signals(supervisor) as signals:
        with fleet_display(quiet, [s.gpu for s in specs]) as on_event:
            supervisor.on_event = on_event
            outcomes = supervisor.run()
        code = conclude(outcomes, signer, db, no_db, as_json)
    return EXIT_INCOMPLETE if signals else code


def _cuda_count() -> int:
    from gpuhealth.measure.backends import NO_GPU_HINT
    from gpuhealth.measure.backends.nvml import Nvml

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


@click.command()
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
@allow_busy_option
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
    from gpuhealth.certificate.keys import find_key, load_key
    from gpuhealth.measure.outcomes import CardOutcome
    from gpuhealth.measure.plan import resume_spec
    from gpuhealth.measure.runner import read_journal

    path = run_dir / "run.json" if run_dir.is_dir() else run_dir
    record = read_journal(path)
    if record.complete:
        raise InputError(str(path), "complete", "the record is complete: nothing to resume")
    signer = load_key(key_file) if key_file else find_key()
    if close:
        graded = _close_record(record, path, force, profile_path, policy_path, signer)
        outcome = CardOutcome(record.identity.index, graded)
        sys.exit(conclude([outcome], signer, db, no_db, as_json))
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
    from gpuhealth.judge.grading import load_policy
    from gpuhealth.judge.profiles import load_profile
    from gpuhealth.measure.plan import check_recorded_run
    from gpuhealth.measure.runner import GradeOptions, close_journal, finish
    from gpuhealth.presets import preset

    check_recorded_run(record, path)
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
