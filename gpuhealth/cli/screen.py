"""`gpuhealth screen FILE...`: judge GPUs from their nvidia-smi -q reports, with no GPU.

cli/main.py adds the command with `register(main)`. Every file is read before anything is judged or
written: an unreadable one gets one line (file, line, what was expected) and exit 2, and no
summary is written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gpuhealth.errors import EXIT_USAGE, InputError


@click.command("screen")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@click.option(
    "--md",
    "md_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write a Markdown summary (a table of every GPU) to this file.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write an HTML summary (a table of every GPU) to this file.",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Grading policy file (default: the shipped policy, as grade uses).",
)
@click.option("--force", is_flag=True, help="Overwrite existing --md/--html files.")
def screen(
    paths: tuple[Path, ...],
    as_json: bool,
    md_path: Path | None,
    html_path: Path | None,
    policy_path: Path | None,
    force: bool,
) -> None:
    """Screen GPUs from their nvidia-smi -q reports, before buying.

    PATHS are nvidia-smi -q (text) or -q -x (XML) report files, or folders whose
    .txt/.log/.xml/.out files are screened. Each GPU is judged on the health counters its report
    holds, with grade's findings and policy: the verdict is the worst finding's grade, never A
    ("NOT TESTED": no health finding in the report, but nothing was measured). Exit codes: 0 every
    GPU NOT TESTED, B or C; 1 any D or F;
    2 an unreadable file or bad option (nothing written); 3 any GPU INCOMPLETE.
    """
    from gpuhealth.judge.grading import load_policy
    from gpuhealth.screen.judge import exit_code, screen_report
    from gpuhealth.screen.load import load_report, report_files
    from gpuhealth.screen.summary import render_summary, screen_json

    for out in (md_path, html_path):
        if out is not None and out.exists() and not force:
            raise InputError(str(out), None, "exists: choose another file or pass --force")
    policy = load_policy(policy_path)
    files = report_files(list(paths))
    if not files:
        raise InputError(
            ", ".join(map(str, paths)), None, "no report files (.txt, .log, .xml, .out)"
        )
    reports, bad = [], 0
    for path in files:
        try:
            reports.append(load_report(path))
        except InputError as error:
            click.echo(f"gpuhealth: error: {error.one_line()}", err=True)
            bad += 1
    if bad:
        click.echo(f"gpuhealth: {bad} of {len(files)} file(s) unreadable: nothing judged", err=True)
        sys.exit(EXIT_USAGE)
    gpus = [gpu for report in reports for gpu in screen_report(report, policy)]
    from gpuhealth.atomicfile import write_atomic

    for out, kind in ((md_path, "md"), (html_path, "html")):
        if out is not None:
            write_atomic(out, render_summary(gpus, kind).encode("utf-8"))
    if as_json:
        click.echo(json.dumps(screen_json(gpus), indent=1))
    else:
        from gpuhealth.screen.summary import format_text

        click.echo(format_text(gpus), nl=False)
    sys.exit(exit_code(gpus))


def register(main: click.Group) -> None:
    if main.commands.get("screen") is not screen:
        main.add_command(screen)
