"""Text, CSV and HTML forms of what the results database says (history, fleet summary)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime, timezone

from gpuhealth import __version__, csvsafe
from gpuhealth.store import KEY_METRICS, CardHistory, FleetSummary

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
                "REMAP DOWN" if run.flags else "",
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


def summary_text(summary: FleetSummary) -> str:
    header = ["model", *GRADE_COLUMNS, "total"]
    rows = [
        [model, *(str(counts.get(g, 0)) for g in GRADE_COLUMNS), str(sum(counts.values()))]
        for model, counts in summary.counts.items()
    ]
    lines = [
        f"{summary.cards} card(s), {summary.runs} run(s) in {summary.database}",
        "",
        "Cards by model and latest grade:",
        text_table(header, rows) if rows else "(no cards stored)",
        "",
    ]
    if summary.worst:
        lines.append("Worst cards (latest grade C or worse):")
        for card in summary.worst:
            lines.append(
                f"  {card.grade:<10} {card.serial or card.uuid or NA}  {card.model}  "
                f"{card.started_at:%Y-%m-%d %H:%M}  run {card.run_id}  "
                f"remapped rows {_num(card.remapped_rows)}"
            )
            lines.extend(f"      - {reason}" for reason in card.reasons)
    else:
        lines.append("No card graded C or worse.")
    return "\n".join(lines)


def summary_csv(summary: FleetSummary) -> str:
    """Two sections in one CSV: counts (section=count) and worst cards (section=worst).

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
        ]
    )
    for model, counts in summary.counts.items():
        for grade in GRADE_COLUMNS:
            if counts.get(grade):
                writer.writerow(["count", model, grade, counts[grade], "", "", "", "", ""])
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
            ]
        )
    return out.getvalue()


def summary_html(summary: FleetSummary) -> str:
    """Rendered with the certificate's Jinja environment (autoescaped, strict undefined)."""
    from gpuhealth.report import environment

    template = environment("html").get_template(SUMMARY_TEMPLATE)
    return template.render(
        summary=summary,
        grades=GRADE_COLUMNS,
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        tool_version=__version__,
    )
