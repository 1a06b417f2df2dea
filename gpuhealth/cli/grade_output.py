"""What `grade` and `resume` print per card, in text or JSON, and the database step after them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from gpuhealth.errors import GpuHealthError

if TYPE_CHECKING:
    from gpuhealth.certificate.keys import SigningKey
    from gpuhealth.measure.outcomes import CardOutcome
    from gpuhealth.measure.runner import GradedCard


def conclude(
    outcomes: list[CardOutcome],
    signer: SigningKey | None,
    db: str | None,
    no_db: bool,
    as_json: bool,
) -> int:
    """Show every card (and the summary line when several), sign-note, store; the exit code."""
    from gpuhealth.measure.outcomes import letter_of, outcomes_exit_code, summary_line

    graded = [o.graded for o in outcomes if o.graded is not None]
    failed = [o for o in outcomes if o.graded is None]
    letters = [letter_of(g.record) for g in graded] + ["INCOMPLETE"] * len(failed)
    code = outcomes_exit_code(outcomes)
    if not as_json:
        for outcome in outcomes:
            print_outcome(outcome, len(outcomes))
        if len(outcomes) > 1:
            click.echo(summary_line(letters))
    elif len(outcomes) == 1 and failed:
        click.echo(f"gpuhealth: error: {failed[0].error}", err=True)
    if graded:
        signed_note(signer, len(graded))
    if not no_db and graded:
        store_records(graded, db)  # a database failure is said, never the card's verdict
    if as_json:
        click.echo(json.dumps(json_output(outcomes, letters, code), indent=1))
    return code


def print_outcome(outcome: CardOutcome, cards: int) -> None:
    if outcome.graded is not None:
        print_grade(outcome.graded)
    elif cards == 1:
        click.echo(f"gpuhealth: error: {outcome.error}", err=True)
    else:
        click.echo(f"GPU {outcome.gpu}: INCOMPLETE, no record: {outcome.error}")


def json_output(outcomes: list[CardOutcome], letters: list[str], code: int) -> dict[str, Any]:
    """{"summary": {...}, "cards": [one row per card, by GPU]}."""
    from gpuhealth.measure.outcomes import grade_counts, summary_line

    rows = [
        card_summary(o.graded)
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


def store_records(graded: list[GradedCard], db: str | None) -> bool:
    """Add the records to the results database. When it cannot be reached or written (corrupt,
    unreachable, an unwritable config folder, a full disk) they stay in their run folders, one
    line says where (`gpuhealth sync` adds them later) and False is returned; the run's exit code
    stays the cards' (a script must not read a database problem as a card's verdict, nor a D as
    a database problem)."""
    from gpuhealth.errors import StoreError, StoreUnavailable
    from gpuhealth.store.database import save_record

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


def signed_note(signer: SigningKey | None, count: int) -> None:
    from gpuhealth.certificate.keys import default_key_file

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


def card_summary(result: GradedCard) -> dict[str, Any]:
    from gpuhealth.certificate.report import rules_banner
    from gpuhealth.judge.readiness import shown_items, verdict

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
        "readiness": verdict(shown_items(record)),
        "memory_clear": record.memory_clear.status if record.memory_clear else None,
        "out_dir": str(result.out_dir),
    }


def print_grade(result: GradedCard) -> None:
    from gpuhealth.certificate.report import rules_banner
    from gpuhealth.judge.readiness import resale_line

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
