"""The command line: one module per command group, each thin (parse, call one function of a
stage, format, map errors to exit codes).

`main` is the `gpuhealth` group. Nothing outside this package imports it (the console script and
`python -m gpuhealth` do).
"""

from gpuhealth.cli.main import main

__all__ = ["main"]
