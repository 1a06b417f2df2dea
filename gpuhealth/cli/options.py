"""Options several commands share: the backend, the judging files, the GPUs, the database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from gpuhealth.errors import InputError

F = TypeVar("F", bound=Callable[..., Any])


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


allow_busy_option = click.option(
    "--allow-busy",
    is_flag=True,
    help="Measure even if other processes hold the card (results flagged).",
)
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
