"""A Profile as a TOML data file: one writer for spec-derived and fleet-built profiles.

Deterministic (same profile, same text), in the style of the hand-written measured files: header
comments, top-level keys, [thermal], then one [metrics."test.metric"] table per metric.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Sequence

from gpuhealth.judge.profiles import Profile, ProfileIdentity, ProfileMetric

SpreadNote = Callable[[ProfileMetric], str | None]


def render_profile(
    profile: Profile, header: Sequence[str], spread_note: SpreadNote | None = None
) -> str:
    """header: comment lines (without "# "); spread_note: a comment after each spread."""
    lines = [f"# {line}" if line else "#" for line in header]
    lines += [
        f"key = {toml_string(profile.key)}",
        f"name = {toml_string(profile.name)}",
        f"nvml_names = [{', '.join(toml_string(n) for n in profile.nvml_names)}]",
        f"memory_gib = {toml_number(profile.memory_gib)}",
        f"source = {toml_string(profile.source)}",
        f"cards = {profile.cards}",
    ]
    if profile.vbios_versions:
        versions = ", ".join(toml_string(v) for v in profile.vbios_versions)
        lines.append(f"vbios_versions = [{versions}]")
    if profile.source_runs:
        lines.append("source_runs = [")
        lines += [f"  {toml_string(run)}," for run in profile.source_runs]
        lines.append("]")
    if profile.identity is not None:
        lines += ["", "[identity]", *_identity_lines(profile.identity)]
    if profile.thermal is not None:
        lines += [
            "",
            "[thermal]",
            f"c_per_w = {toml_number(profile.thermal.c_per_w)}",
            f"source = {toml_string(profile.thermal.source)}",
            f"cards = {profile.thermal.cards}",
        ]
        if profile.thermal.rig is not None:
            lines.append(f"rig = {toml_string(profile.thermal.rig)}")
        if profile.thermal.run_to_run is not None:
            lines.append(f"run_to_run = {toml_number(profile.thermal.run_to_run)}")
        if profile.thermal.presets:
            lines += ["", "[thermal.presets]"]
            lines += [
                f"{toml_string(preset)} = {toml_number(value)}"
                for preset, value in sorted(profile.thermal.presets.items())
            ]
    for key, metric in profile.metrics.items():
        note = spread_note(metric) if spread_note else None
        lines += [
            "",
            f"[metrics.{toml_string(key)}]",
            f"center = {toml_number(metric.center)}",
            f"spread = {toml_number(metric.spread)}" + (f"   # {note}" if note else ""),
            f"n = {metric.n}",
            f"source = {toml_string(metric.source)}",
        ]
        if not metric.higher_is_better:
            lines.append("higher_is_better = false")
        if metric.published_peak is not None:
            lines.append(f"published_peak = {toml_number(metric.published_peak)}")
        if metric.conditions:
            pairs = ", ".join(
                f"{k} = {toml_value(v)}" for k, v in sorted(metric.conditions.items())
            )
            lines.append(f"conditions = {{ {pairs} }}")
    return "\n".join(lines) + "\n"


def _identity_lines(identity: ProfileIdentity) -> list[str]:
    """The [identity] table's keys, in the order of the model, those that are set."""
    lines = []
    for name, value in identity.model_dump().items():
        if value is None or value == ():
            continue
        if isinstance(value, tuple):
            lines.append(f"{name} = [{', '.join(toml_string(v) for v in value)}]")
        else:
            lines.append(f"{name} = {toml_value(value)}")
    return lines


def wrap_comment(text: str) -> list[str]:
    """A long comment as header lines of at most 96 characters (with the "# ")."""
    return textwrap.wrap(text, width=94)


def toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def toml_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def toml_value(value: bool | int | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    return toml_number(value)
