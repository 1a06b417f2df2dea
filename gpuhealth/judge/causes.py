"""One reason per cause: which of a card's findings follow from another of its findings.

A buyer reads the grade's reasons as separate problems; four reasons for one cut-down die, or a
lost card listed again as "soak not measured" and "counters not readable", read as five faults.
The consequences found here keep their findings (the detail lists them all), and the grade tells
them as part of their cause's reason (grading._one_per_cause):

- a card that stopped answering (xid_card_lost): the tests it could not finish, the counters and
  telemetry it could not give, the identity checks those tests would have made;
- a card that measures like fewer SMs, or a narrower memory bus, than it reports
  (identity_mismatch from the fp32 or bandwidth measurement): the throughput deficits of the same
  units (FP32, tensor and sustained compute; memory);
- tests that were not run or measured (test_not_measured): the identity checks they would have
  made (identity_unverified of what was not measured, source "unmeasured");
- memory errors the memory test found (memory_errors/memtest): the words the memory clear then
  read back non-zero (memory_errors/memory_clear);
- a clock setting that held the SM or memory clock down under load (clocks_held, clockhold.py):
  the throughput deficits of what runs on that clock, as far as the hold explains them (a
  deficit, at its one-sided bound, no deeper than the clock's shortfall and HOLD_MARGIN: a card
  with half its memory bandwidth behind an 8% memory lock keeps its own reason), (the SM clock) a
  soak that drew too little power to measure the thermal resistance, and (the memory clock) a
  bandwidth per bus bit that reads like a narrower bus when the bandwidth test had no telemetry
  of its own clock, where the memory deficit is explained too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gpuhealth.models import Finding

CARD_LOST = "xid_card_lost"
LOST_CONSEQUENCES = frozenset(
    {"test_not_measured", "counters_incomplete", "telemetry_incomplete", "identity_unverified"}
)
MEMTEST_ERRORS = "memory_errors/memtest"
CLEAR_ERRORS = "memory_errors/memory_clear"
# performance subsystem (gpuhealth/judge/composite.py) -> the measurement whose per-unit check
# covers it
SUBSYSTEM_BASIS = {"fp32": "fp32", "tensor": "fp32", "sustained": "fp32"}
# performance subsystem -> the clock it runs on (a clock setting that held it: clocks_held/<clock>)
SUBSYSTEM_CLOCK = {"fp32": "sm", "tensor": "sm", "sustained": "sm", "memory": "memory"}
HOLD_MARGIN = 0.05  # a held clock explains a deficit up to its shortfall and this much more
FLOAT_SLACK = 1e-9  # 1 - 0.9 + 0.05 is not 0.15 in binary: the bound itself is explained


def attribute(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    """The findings, each consequence with its cause's key set."""
    keys = {f.key for f in findings}
    lost = next((f.key for f in findings if f.code == CARD_LOST), None)
    not_measured = next((f.key for f in findings if f.code == "test_not_measured"), None)
    held = _explained_by_holds(findings)
    return tuple(
        replace(f, cause=_cause(f, keys, lost, not_measured, held.get(f.key))) for f in findings
    )


def _explained_by_holds(findings: Sequence[Finding]) -> dict[str, str]:
    """Finding key -> the clocks_held key that explains it (clockhold.py)."""
    holds = {f.source: f for f in findings if f.code == "clocks_held"}
    explained: dict[str, str] = {}
    for f in findings:
        hold = holds.get(SUBSYSTEM_CLOCK.get(f.source, ""))
        if f.code == "performance_deficit" and hold is not None and _explains(hold, f):
            explained[f.key] = hold.key
    if "sm" in holds:
        explained["thermal_resistance_unmeasured/soak"] = holds["sm"].key
    memory_deficit = "performance_deficit/memory"
    memory_explained = memory_deficit in explained or all(f.key != memory_deficit for f in findings)
    if "memory" in holds and memory_explained:
        explained["identity_mismatch/bandwidth"] = holds["memory"].key
    return explained


def _explains(hold: Finding, deficit: Finding) -> bool:
    """The hold's clock share (its measure) explains the deficit's lower bound (-its measure);
    a finding without its number is not explained (told apart)."""
    if hold.measure is None or deficit.measure is None:
        return False
    return -deficit.measure <= 1.0 - hold.measure + HOLD_MARGIN + FLOAT_SLACK


def _cause(
    finding: Finding,
    keys: set[str],
    lost: str | None,
    not_measured: str | None,
    held_by: str | None,
) -> str | None:
    if finding.cause is not None:
        return finding.cause
    # what the card reports was read before it was lost: only the measurements are its losses
    reported = finding.code == "identity_unverified" and finding.source == "identity"
    if lost is not None and finding.code in LOST_CONSEQUENCES and not reported:
        return lost
    if finding.code == "performance_deficit":
        basis = SUBSYSTEM_BASIS.get(finding.source)
        if basis is not None and f"identity_mismatch/{basis}" in keys:
            return f"identity_mismatch/{basis}"
    if held_by is not None:
        return held_by
    if not_measured is not None and finding.key == "identity_unverified/unmeasured":
        return not_measured
    # the memory clear reading back non-zero where the memory test found bad words already: one
    # faulty memory, told once (the clear's words are listed as part of the memtest's reason)
    if finding.key == CLEAR_ERRORS and MEMTEST_ERRORS in keys:
        return MEMTEST_ERRORS
    return None
