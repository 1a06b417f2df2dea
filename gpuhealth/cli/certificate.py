"""`gpuhealth report` and `verify`: render a record again, prove a signed report."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import click

from gpuhealth.cli.keys import key_file_option
from gpuhealth.cli.options import backend_options, judging_options
from gpuhealth.errors import InputError
from gpuhealth.models import RunRecord


@click.command()
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
    from gpuhealth.certificate.report import render
    from gpuhealth.datafiles import read_text_file
    from gpuhealth.models import record_from_json

    record = record_from_json(read_text_file(run_json), str(run_json))
    if regrade:
        record = _resign(_regrade(record, profile_path, policy_path), key_file)
    elif profile_path or policy_path or key_file:
        raise InputError("--profile/--policy/--key-file", None, "only take effect with --regrade")
    if fmt == "pdf":
        from gpuhealth.certificate.pdf import record_to_pdf

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
    from gpuhealth.judge.analysis import judge
    from gpuhealth.judge.grading import load_policy
    from gpuhealth.judge.profiles import builtin_profiles, load_profile, match_profile

    profile = (
        load_profile(profile_path)
        if profile_path
        else match_profile(record.identity, builtin_profiles())
    )
    return judge(replace(record, analysis=None, grade=None), profile, load_policy(policy_path))


def _resign(record: RunRecord, key_file: Path | None) -> RunRecord:
    """A regraded record: its old signature no longer holds; signed again when a key exists."""
    from gpuhealth.certificate.keys import default_key_file, find_key, load_key
    from gpuhealth.certificate.signing import sign_record, unsigned

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


@click.command()
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
    from gpuhealth.certificate.keys import public_key_fingerprint
    from gpuhealth.certificate.verify import format_text, verify_report, with_recheck
    from gpuhealth.cli.signals import stop_on_signals
    from gpuhealth.measure.recheck_worker import RecheckStop, recheck_in_worker

    if not recheck and (sim_card is not None or backend != "auto"):
        raise InputError("--backend/--sim-card", None, "only take effect with --recheck")
    wanted = public_key_fingerprint(public_key, "--key") if public_key else None
    result = verify_report(report_path, wanted)
    if recheck and result.record is not None:
        stop = RecheckStop()
        with stop_on_signals(stop, first="stopping the re-check now"):
            result = with_recheck(result, recheck_in_worker(result.record, backend, sim_card, stop))
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
    else:
        click.echo(format_text(result), nl=False)
    sys.exit(result.exit_code)
