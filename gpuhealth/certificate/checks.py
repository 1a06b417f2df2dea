"""One verification check and how it ended: the unit `gpuhealth verify` and `--recheck` report in.

pass      the check was made and holds
fail      the check was made and does not hold: proven wrong (verify exit 1)
unproven  the check could not be made (no trusted key, an unknown version, no rules to judge
          with...): never counted as passed; `exit_code` says which state, `action` what the buyer
          can do about it
n/a       the check does not apply to this input (the page check for a run.json)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CheckStatus = Literal["pass", "fail", "unproven", "n/a"]


@dataclass(frozen=True)
class Check:
    name: str
    status: CheckStatus
    detail: str
    exit_code: int | None = None  # unproven only: the verify exit code of this state
    action: str | None = None  # what the buyer does about a fail or an unproven check

    def __post_init__(self) -> None:
        if (self.status == "unproven") != (self.exit_code is not None):
            raise ValueError(f"check {self.name}: an exit code goes with 'unproven' only")
