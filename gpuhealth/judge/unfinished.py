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
    every selected test ended (passed, failed, skipped); nothing for a complete record or one with a
    test not run or in error (that test's finding says why)."""
    if record.complete:
        return []
    chosen = record.tests_selected
    open_tests = ("not_run", "error")  # test_findings names them, and why (INCOMPLETE)
    if any(t.status in open_tests and (chosen is None or t.name in chosen) for t in record.tests):
        return []
    clear = record.memory_clear
    if clear is None or clear.status == "not_cleared":
        what = f"the memory clear did not run or finish ({clear.note if clear else 'not recorded'})"
        source = MEMORY_CLEAR
    else:
        what = "the run was not closed as complete"
        source = "run"
    return [
        Finding(
            "test_not_measured",
            "major",
            source,
            f"the run did not finish: {record.interrupted or 'no reason recorded'}; {what}: "
            "`gpuhealth resume RUN_DIR` finishes it",
            value="unfinished",
            reference="a complete run",
        )
    ]
