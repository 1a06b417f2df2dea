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
  the throughput deficits of what runs on that clock, (the SM clock) a soak that drew too little
  power to measure the thermal resistance, and (the memory clock) a bandwidth per bus bit that
  reads like a narrower bus when the bandwidth test had no telemetry of its own clock.
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
# finding -> the held clock that explains it
HELD_CLOCK_CONSEQUENCES = {
    "thermal_resistance_unmeasured/soak": "clocks_held/sm",
    "identity_mismatch/bandwidth": "clocks_held/memory",
}


def attribute(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    """The findings, each consequence with its cause's key set."""
    keys = {f.key for f in findings}
    lost = next((f.key for f in findings if f.code == CARD_LOST), None)
    not_measured = next((f.key for f in findings if f.code == "test_not_measured"), None)
    return tuple(replace(f, cause=_cause(f, keys, lost, not_measured)) for f in findings)


def _cause(
    finding: Finding, keys: set[str], lost: str | None, not_measured: str | None
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
        held = f"clocks_held/{SUBSYSTEM_CLOCK.get(finding.source)}"
        if held in keys:
            return held
    held_by = HELD_CLOCK_CONSEQUENCES.get(finding.key)
    if held_by is not None and held_by in keys:
        return held_by
    if not_measured is not None and finding.key == "identity_unverified/unmeasured":
        return not_measured
    # the memory clear reading back non-zero where the memory test found bad words already: one
    # faulty memory, told once (the clear's words are listed as part of the memtest's reason)
    if finding.key == CLEAR_ERRORS and MEMTEST_ERRORS in keys:
        return MEMTEST_ERRORS
    return None
