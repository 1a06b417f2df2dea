"""`gpuhealth profile list|show|build`: the reference profiles of healthy cards."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gpuhealth.errors import InputError


@click.group()
def profile() -> None:
    """Reference profiles: what healthy cards of a model measure."""


@profile.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the profiles as JSON.")
def profile_list(as_json: bool) -> None:
    """List the built-in profiles: kind, cards, metrics."""
    from gpuhealth.judge.profiles import builtin_profiles, profile_kind

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
    from gpuhealth.judge.profiles import MIN_FLEET_CARDS, find_profile, profile_kind

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
    from gpuhealth.judge.profiles.build import build_profile, load_runs, render_built, write_profile

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
