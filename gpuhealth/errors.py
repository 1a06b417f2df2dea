"""The exceptions gpuhealth raises on purpose, each with the exit code the CLI maps it to.

Exit codes (documented in the README):
  0  every card graded A, B or C
  1  at least one card graded D or F
  2  usage error: bad command-line value or a bad input file (sim card, policy, profile, record),
     or a run folder that holds a record already (without --force)
  3  at least one card INCOMPLETE, or the environment is unusable (no GPU, no driver, no CuPy,
     fewer GPUs than --expect-gpus, an output folder that cannot be written, a full disk), or the
     run was stopped by a signal

When cards differ, the worst wins in this order: 3 beats 1 beats 0. A card that was not
measured (INCOMPLETE, no record, the run stopped) is not known to be bad: a script that reads 1
takes the card to repair or recycling, so 1 must mean "a card was measured and failed", never
"something went wrong". 3 says "not every card was measured: look before acting", and it outranks
1 because acting on the cards that were graded while one was not measured would hide that card.
The summary line ("8 cards: 6 A, 1 D, 1 INCOMPLETE") and --json's summary object show every
card's grade, so a 3 never hides a D or F found on another card. Usage errors (2) are found
before anything is measured, so they never meet a graded card.

`gpuhealth verify` (gpuhealth/certificate/verify.py) answers "not proven" unless every check was
made and held, with one exit code per state (the README lists what a buyer does for each):
  0  VALID: signature good, signer trusted, evidence complete, page and record agree, the grade
     follows from the measurements and is no better than the shipped rules give; a real card
  1  INVALID: proven wrong (changed, another signer, evidence missing, page differs from the
     record, a grade better than the shipped rules give; with --recheck: another card, a memory
     error, worse counters or different performance)
  2  UNREADABLE: not a report, no embedded record, bad JSON (and usage errors, as everywhere)
  3  --recheck could not use the card (no GPU, no driver, no CuPy)
  4  UNSIGNED: the record carries no signature
  5  SIGNER NOT TRUSTED: a good signature by a key that is neither given (--key) nor pinned
  6  TRUST STORE UNREADABLE: the pinned-keys file cannot be read or is unsafe
  7  VERSION NOT CHECKABLE: a gpuhealth version or record format whose rules or evidence this
     gpuhealth does not have
  8  NOT JUDGEABLE: the grade could not be judged again (never judged, rules missing or broken)
  9  SIMULATED CARD: every check held, but the record is of a simulated card, not a GPU
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_BAD_CARD = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
# gpuhealth verify only
EXIT_UNSIGNED = 4
EXIT_SIGNER_UNTRUSTED = 5
EXIT_TRUST_STORE = 6
EXIT_VERSION_UNCHECKABLE = 7
EXIT_NOT_JUDGEABLE = 8
EXIT_SIMULATED = 9


class GpuHealthError(Exception):
    """Base class: a failure with a one-line message and an exit code."""

    exit_code = EXIT_INCOMPLETE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(GpuHealthError):
    """A malformed file or value from the user: names the file, the field and what was expected.

    With a line the message reads like a compiler's, `policy.toml:57: rules.3.grade: ...`, so that
    editors and terminals can jump to it.
    """

    exit_code = EXIT_USAGE

    def __init__(
        self, source: str, field: str | None, expected: str, *, line: int | None = None
    ) -> None:
        where = f"{source}:{line}" if line is not None else source
        if field:
            where = f"{where}: {field}"
        super().__init__(f"{where}: {expected}")
        self.source = source
        self.field = field
        self.expected = expected
        self.line = line


class EnvironmentUnusable(GpuHealthError):
    """No GPU, no driver, no CuPy: nothing can be measured here."""

    exit_code = EXIT_INCOMPLETE


class OutputUnwritable(GpuHealthError):
    """A run folder or report that cannot be written (read-only, full disk, no permission): an
    environment failure (exit 3), never "card failed". `kept` says where the measurements are."""

    exit_code = EXIT_INCOMPLETE

    def __init__(self, path: Path, error: OSError, kept: str) -> None:
        self.reason = f"cannot write {path}: {error.strerror or error}"
        super().__init__(f"{self.reason}; {kept}")
        self.path = path
        self.kept = kept


class DeviceError(GpuHealthError):
    """A failure on the card during a test: ends that test, is recorded in the run."""


class DeviceLost(DeviceError):
    """The card fell off the bus or stopped answering; every later test is not run."""


class DeviceOutOfMemory(DeviceError):
    """An allocation failed."""


class KernelCompileError(DeviceError):
    """A kernel in kernels/ failed to compile."""


class TimeBudgetExceeded(DeviceError):
    """A test ran past its time budget before it had measured enough."""


class NotApplicable(GpuHealthError):
    """A test that this card cannot run by design (e.g. tensor cores before compute 7.0)."""


class TrustStoreError(GpuHealthError):
    """The pinned-keys file (the verifier's trust store) cannot be read, does not parse, or others
    may write it: nothing it says can be trusted, and "nothing pinned" would be a guess."""

    exit_code = EXIT_TRUST_STORE


class StoreError(GpuHealthError):
    """A usage problem with the results database: a malformed URL, an unknown card."""

    exit_code = EXIT_USAGE


class StoreUnavailable(GpuHealthError):
    """The results database cannot be reached or opened (exit code 3); the run folders keep the
    results, and `gpuhealth sync` adds them once the database is back."""
