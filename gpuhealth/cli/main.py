"""The `gpuhealth` group: gpuhealth's own errors become one line and their exit code, never a
traceback; every command group is added here.

Exit codes: 0 every card graded A, B or C; 1 at least one D or F; 2 usage error or bad input file;
3 at least one card INCOMPLETE, or no usable GPU / driver.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from gpuhealth import __version__
from gpuhealth.errors import EnvironmentUnusable, GpuHealthError

F = TypeVar("F", bound=Callable[..., Any])


def _fail(error: GpuHealthError) -> None:
    click.echo(f"gpuhealth: error: {error.one_line()}", err=True)
    sys.exit(error.exit_code)


class _Group(click.Group):
    """Turns gpuhealth's own errors into one line and their exit code, never a traceback. A file
    or folder the system refuses (read-only, full disk, no permission) is the environment's
    failure: one line naming it, exit 3, never 1 (which scripts read as "card failed")."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GpuHealthError as error:
            _fail(error)
        except OSError as error:
            where = error.filename or "a file"
            _fail(
                EnvironmentUnusable(
                    f"{where}: {error.strerror or error}",
                    hint="the file system refused it: check its space and permissions",
                )
            )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpuhealth")
def main() -> None:
    """Grade used NVIDIA GPUs for resale or recycling.

    Exit codes: 0 all cards A/B/C, 1 any card D/F, 2 usage error or bad input file,
    3 any card INCOMPLETE or no usable GPU.
    """


def _add_commands() -> None:
    # one module per command group; each defines its commands, this group only lists them
    from gpuhealth.cli import certificate, grade, keys, profile, screen, store

    for command in (grade.devices, grade.grade, grade.resume, certificate.report,
                    certificate.verify, profile.profile):  # fmt: skip
        main.add_command(command)
    keys.register(main)
    store.register(main)
    screen.register(main)


_add_commands()
