"""One test of a stored record, read or changed: what the evidence tests tamper with."""

from __future__ import annotations

from dataclasses import replace

from gpuhealth.models import RunRecord, TestResult


def get(record: RunRecord, name: str) -> TestResult:
    test = record.test(name)
    assert test is not None
    return test


def edit(record: RunRecord, name: str, **changes: object) -> RunRecord:
    """The record with the named test's fields changed (the others as they were)."""
    tests = tuple(replace(t, **changes) if t.name == name else t for t in record.tests)  # type: ignore[arg-type]
    return replace(record, tests=tests)
