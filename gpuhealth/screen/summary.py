"""Screened GPUs as JSON (for scripts), Markdown and HTML (a table for a folder of reports)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from gpuhealth import __version__
from gpuhealth.screen.judge import NOT_TESTED, ScreenedGpu, exit_code

SCHEMA = "gpuhealth-screen/1"


def gpu_json(gpu: ScreenedGpu) -> dict[str, Any]:
    return {
        "file": gpu.source,
        "host": gpu.host,
        "bus_id": gpu.bus_id,
        "line": gpu.line,
        "driver_version": gpu.driver_version,
        "model": gpu.name,
        "serial": gpu.serial,
        "uuid": gpu.uuid,
        "board_part_number": gpu.board_part_number,
        "vbios": gpu.vbios,
        "inforom": gpu.inforom,
        "verdict": gpu.verdict,
        "disposition": gpu.disposition,
        "findings": [
            {
                "code": located.finding.code,
                "severity": located.finding.severity,
                "grade": _grade_of(gpu, located.finding.message),
                "message": located.finding.message,
                "value": located.finding.value,
                "reference": located.finding.reference,
                "lines": list(located.lines),
            }
            for located in gpu.findings
        ],
        "unreadable": [
            {"field": r.label, "line": r.line, "raw": r.raw, "why": r.why} for r in gpu.unreadable
        ],
        "not_checked": list(gpu.not_checked),
        "policy": gpu.grade.policy,
    }


def _grade_of(gpu: ScreenedGpu, message: str) -> str:
    """The grade of the rule that fired on the finding; "info" where the finding is listed, not
    held against the card (a rule of grade A, or none: a count the policy grades from 1 up)."""
    for reason in gpu.grade.reasons:
        if reason.message == message or any(message in also for also in reason.also):
            return "info" if reason.grade == "A" else reason.grade
    return "info"


def summary_line(gpus: list[ScreenedGpu]) -> str:
    counts = Counter(gpu.verdict for gpu in gpus)
    order = ["F", "INCOMPLETE", "D", "C", "B", "NOT TESTED"]
    parts = [f"{counts[v]} {v}" for v in order if counts[v]]
    return f"{len(gpus)} GPU(s) screened: {', '.join(parts)}"


def screen_json(gpus: list[ScreenedGpu]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "gpuhealth": __version__,
        "summary": {
            "gpus": len(gpus),
            "verdicts": dict(Counter(gpu.verdict for gpu in gpus)),
            "line": summary_line(gpus),
            "exit_code": exit_code(gpus),
        },
        "gpus": [gpu_json(gpu) for gpu in gpus],
    }


def render_summary(gpus: list[ScreenedGpu], kind: str) -> str:
    """The summary page: kind "html" (autoescaped: every field comes from an untrusted file)
    or "md" (every value Markdown-escaped)."""
    from gpuhealth.certificate.report import environment

    template = environment("html" if kind == "html" else "md").get_template(
        f"screen.{'html' if kind == 'html' else 'md'}.j2"
    )
    return template.render(summary=screen_json(gpus))


def format_text(gpus: list[ScreenedGpu]) -> str:
    """One line per GPU (file:line, bus id, model, verdict), then its findings with their lines."""
    out = []
    for gpu in gpus:
        host = f" on {gpu.host}" if gpu.host else ""
        name = gpu.name or "(no name)"
        out.append(f"{gpu.source}:{gpu.line}: GPU {gpu.bus_id} {name}{host}: {gpu.verdict}")
        shown = gpu_json(gpu)
        for finding in shown["findings"]:
            lines = f" (line {', '.join(map(str, finding['lines']))})" if finding["lines"] else ""
            out.append(f"  {finding['grade']}: {finding['message']}{lines}")
        out += [f"  not checked: {text}" for text in gpu.not_checked]
        if gpu.verdict == NOT_TESTED:
            out.append("  no health finding in the report: not tested (nothing was measured)")
    out.append(summary_line(gpus))
    return "\n".join(out) + "\n"
