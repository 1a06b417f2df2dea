"""Text, CSV and HTML forms of what the results database says (history, fleet summary)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime, timezone

from gpuhealth import __version__
from gpuhealth.store import csvsafe
from gpuhealth.store.answers import CardHistory, FleetSummary
from gpuhealth.store.database import KEY_METRICS
from gpuhealth.store.fleet import CardSummary

NA = "n/a"
SUMMARY_TEMPLATE = "fleet.html.j2"
# column order of the counts: best first, as a buyer reads a grade sheet; not graded last
GRADE_COLUMNS: tuple[str, ...] = ("A", "B", "C", "D", "F", "INCOMPLETE")


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for cell, width in zip(cells, widths, strict=True):
            numeric = cell.replace(".", "", 1).replace("-", "", 1).isdigit()
            out.append(cell.rjust(width) if numeric else cell.ljust(width))
        return "  ".join(out).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _num(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return NA
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _rows(correctable: int | None, uncorrectable: int | None) -> str:
    if correctable is None and uncorrectable is None:
        return NA
    return f"{_num(correctable)}/{_num(uncorrectable)}"


def history_text(history: CardHistory) -> str:
    header = ["date (UTC)", "run id", "preset", "grade", *(h for _, _, h in KEY_METRICS)]
    header += ["remapped c/u", "flag"]
    rows = []
    for run in history.runs:
        rows.append(
            [
                run.started_at.strftime("%Y-%m-%d %H:%M"),
                run.run_id,
                run.preset + (" [sim]" if run.backend == "sim" else ""),
                run.grade,
                *(_num(run.key_metrics.get(f"{t}.{m}")) for t, m, _ in KEY_METRICS),
                _rows(run.remapped_rows_correctable, run.remapped_rows_uncorrectable),
                _history_flag(run.flags),
            ]
        )
    title = (
        f"Card {history.query}: {', '.join(history.models)} "
        f"(serial {', '.join(history.serials)}), {len(history.runs)} run(s)"
    )
    lines = [title, "", text_table(header, rows)]
    if history.warnings:
        lines.append("")
        lines.extend(f"WARNING: {w}" for w in history.warnings)
    return "\n".join(lines)


def _history_flag(flags: Sequence[str]) -> str:
    """The history table's flag column: what kind of flag the run has."""
    kinds = []
    if any(f.startswith("remapped rows") for f in flags):
        kinds.append("REMAP DOWN")
    if any(" went down " in f and not f.startswith("remapped rows") for f in flags):
        kinds.append("COUNTER DOWN")
    if any(" changed from " in f for f in flags):
        kinds.append("ID CHANGED")
    return ", ".join(kinds)


def _window(summary: FleetSummary) -> str:
    return f" since {summary.since:%Y-%m-%d %H:%M} UTC" if summary.since else ""


def _card_label(serial: str | None, uuid: str | None, simulated: bool) -> str:
    return (serial or uuid or NA) + (" [sim]" if simulated else "")


def summary_text(summary: FleetSummary) -> str:
    header = ["model", *GRADE_COLUMNS, "total"]
    rows = [
        [model, *(str(counts.get(g, 0)) for g in GRADE_COLUMNS), str(sum(counts.values()))]
        for model, counts in summary.counts.items()
    ]
    lines = [
        f"{summary.cards} card(s), {summary.runs} run(s) in {summary.database}{_window(summary)}"
        + (f"; {summary.flagged} card(s) flagged" if summary.flagged else ""),
        "",
        "Cards by model and latest grade:",
        text_table(header, rows) if rows else "(no cards stored)",
        "",
    ]
    if summary.worst:
        lines.append(f"Worst cards (worst grade{_window(summary)} C or worse, or flagged):")
        for card in summary.worst:
            lines.append(
                f"  worst {card.grade:<10} latest {card.latest_grade:<10} "
                f"{_card_label(card.serial, card.uuid, card.simulated)}  {card.model}  "
                f"host {card.host}  {card.started_at:%Y-%m-%d %H:%M}  run {card.run_id}  "
                f"remapped rows {_num(card.remapped_rows)}"
            )
            lines.extend(f"      FLAG: {flag}" for flag in card.flags)
            lines.extend(f"      - {reason}" for reason in card.reasons)
    else:
        lines.append("No card graded C or worse, none flagged.")
    for rig in summary.rigs:
        lines.append(f"RIG: {rig.message}")
    return "\n".join(lines)


def cards_text(found: Sequence[CardSummary]) -> str:
    """fleet cards: one row per card."""
    header = ["serial", "uuid", "model", "host", "runs", "latest", "worst", "flags"]
    rows = [
        [
            _card_label(c.serial, None, c.simulated) if c.serial else NA,
            c.uuid or NA,
            c.model,
            c.host,
            str(c.runs),
            c.latest_grade,
            c.worst_grade,
            "; ".join(c.flags),
        ]
        for c in found
    ]
    return text_table(header, rows) if rows else "(no cards stored)"


def summary_csv(summary: FleetSummary) -> str:
    """Sections in one CSV: counts (section=count), worst cards (section=worst: grade is the worst
    in the window) and rigs to check (section=rig).

    Written through `csvsafe.writer`: a model, serial or reason that a spreadsheet would run as
    a formula gets a leading ' (see `csvsafe.csv_safe`); counts and remapped rows stay numbers.
    """
    out = io.StringIO()
    writer = csvsafe.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "section",
            "model",
            "grade",
            "cards",
            "serial",
            "run_id",
            "date",
            "remapped_rows",
            "reasons",
            "latest_grade",
            "host",
            "simulated",
            "flags",
        ]
    )
    for model, counts in summary.counts.items():
        for grade in GRADE_COLUMNS:
            if counts.get(grade):
                writer.writerow(["count", model, grade, counts[grade], *[""] * 9])
    for card in summary.worst:
        writer.writerow(
            [
                "worst",
                card.model,
                card.grade,
                "",
                card.serial or card.uuid or "",
                card.run_id,
                card.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "" if card.remapped_rows is None else card.remapped_rows,
                " | ".join(card.reasons),
                card.latest_grade,
                card.host,
                "yes" if card.simulated else "no",
                " | ".join(card.flags),
            ]
        )
    for rig in summary.rigs:
        writer.writerow(
            ["rig", "", "", rig.cards, "", "", "", "", rig.message, "", rig.host, "", ""]
        )
    return out.getvalue()


def summary_html(summary: FleetSummary) -> str:
    """Rendered with the certificate's Jinja environment (autoescaped, strict undefined)."""
    from gpuhealth.certificate.report import environment

    template = environment("html").get_template(SUMMARY_TEMPLATE)
    return template.render(
        summary=summary,
        grades=GRADE_COLUMNS,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        tool_version=__version__,
    )
