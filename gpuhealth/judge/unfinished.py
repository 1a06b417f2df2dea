"""A run that stopped after its last test: never graded as if it had finished.

Every other unfinished run leaves a test not run, and findings.test_findings makes it INCOMPLETE.
A stop (Ctrl-C, SIGTERM, the supervisor) or a crash at or during the memory clear leaves every
test with its result and the record not complete: without this finding it would be graded as a
complete run (the memory-clear finding is only made for complete runs), and a buyer would get a
card whose memory was never cleared with an A. Pure, like findings.py.
"""

from __future__ import annotations

from gpuhealth.models import Finding, RunRecord

MEMORY_CLEAR = "memory_clear"  # the clear's step name (measure.backends.base.MEMORY_CLEAR_STEP)


def unfinished_findings(record: RunRecord) -> list[Finding]:
    """test_not_measured (INCOMPLETE by every policy) for a record that is not complete although
    every selected test ended (passed, failed, skipped), its memory clear not made; nothing for a
    complete record, one with a test not run or in error (that test's finding says why), or one
    cleared (measure/runner.py clear_owed: what `gpuhealth resume` runs)."""
    if record.complete:
        return []
    chosen = record.tests_selected
    open_tests = ("not_run", "error")  # test_findings names them, and why (INCOMPLETE)
    if any(t.status in open_tests and (chosen is None or t.name in chosen) for t in record.tests):
        return []
    clear = record.memory_clear
    if clear is not None and clear.status != "not_cleared":
        return []  # the clear ran: what stopped the run after it is not the card's to answer
    why = record.interrupted or "no reason recorded"
    note = clear.note if clear is not None and clear.note else "no clear recorded"
    told = "" if why in note else f" ({note})"  # the clear's note often repeats the stop
    return [
        Finding(
            "test_not_measured",
            "major",
            MEMORY_CLEAR,
            f"the run did not finish: {why}; the memory clear was not made{told}: "
            "`gpuhealth resume RUN_DIR` runs it",
            value="unfinished",
            reference="a complete run",
        )
    ]
