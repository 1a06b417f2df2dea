"""A re-check's result, as `gpuhealth verify --recheck` reports it: each item's check, the
re-measured metrics against the report, and the stress tests as they ran on the card.

measure/recheck.py makes the re-check on the card; verify only reads this result, so the
certificate stage never imports a backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gpuhealth.certificate.checks import Check
from gpuhealth.errors import EXIT_BAD_CARD, EXIT_OK
from gpuhealth.models import MemoryMismatch, TestResult

RECHECK_ALPHA = 0.01  # two-sided, Holm-adjusted over the re-measured metrics


@dataclass(frozen=True)
class MetricRecheck:
    """One re-measured metric against the report's estimate."""

    metric: str  # test.metric
    unit: str
    reported: float
    now: float
    z: float  # negative: worse now than reported
    p_adjusted: float  # two-sided, Holm-adjusted over the re-measured metrics
    verdict: Literal["consistent", "lower", "higher"]

    @property
    def ratio(self) -> float:
        return self.now / self.reported if self.reported else math.nan


@dataclass(frozen=True)
class RecheckResult:
    """Every re-checked item in RECHECK_ITEMS order, the re-measured metrics, and the stress tests
    as they ran here (memtest included: its coverage, patterns and memory errors)."""

    checks: tuple[Check, ...]
    metrics: tuple[MetricRecheck, ...] = ()
    tests: tuple[TestResult, ...] = ()

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def test(self, name: str) -> TestResult | None:
        return next((t for t in self.tests if t.name == name), None)

    @property
    def memtest(self) -> TestResult | None:
        return self.test("memtest")

    @property
    def memory_errors(self) -> tuple[MemoryMismatch, ...]:
        """The words the re-check's memory test read back wrong (the first 64, by address)."""
        memtest = self.memtest
        if memtest is None:
            return ()
        return tuple(e for v in memtest.verifications for e in v.memory_errors)

    @property
    def consistent(self) -> bool:
        return bool(self.checks) and all(c.status == "pass" for c in self.checks)

    @property
    def exit_code(self) -> int:
        """verify's code for this re-check alone: 0 consistent, else the first failed or
        unproven item's (1 for every recheck item today)."""
        if self.consistent:
            return EXIT_OK
        failed = [c for c in self.checks if c.status == "fail"]
        if failed:
            return EXIT_BAD_CARD
        return next((c.exit_code for c in self.checks if c.exit_code is not None), EXIT_BAD_CARD)

    @property
    def verdict(self) -> str:
        bad = [c for c in self.checks if c.status != "pass"]
        if bad or not self.checks:
            return "RECHECK INCONSISTENT: " + "; ".join(
                f"{c.name}: {c.detail}"
                if c.status == "fail"
                else f"{c.name} {c.status}: {c.detail}"
                for c in bad
            )
        said = {"identity": "same card", "counters": "health counters no worse"}
        return "RECHECK CONSISTENT: " + "; ".join(
            said.get(c.name, f"{c.name}: {c.detail}") for c in self.checks
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "consistent": self.consistent,
            "alpha": RECHECK_ALPHA,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks
            ],
            "memory_errors": [
                {"address": e.address, "bits": list(e.bits), "pattern": e.pattern}
                for e in self.memory_errors
            ],
            "metrics": [
                {
                    "metric": m.metric,
                    "unit": m.unit,
                    "reported": m.reported,
                    "now": m.now,
                    "ratio": m.ratio if math.isfinite(m.ratio) else None,
                    "z": m.z if math.isfinite(m.z) else None,
                    "p_adjusted": m.p_adjusted,
                    "verdict": m.verdict,
                }
                for m in self.metrics
            ],
        }


def format_recheck(result: RecheckResult) -> list[str]:
    """What verify prints for the re-check: one line per item, then the metric table."""
    width = max((len(c.name) for c in result.checks), default=0)
    lines = [f"  {c.name:<{width}}  {c.status:<8}  {c.detail}" for c in result.checks]
    if result.metrics:
        lines.append("")
        lines.extend(metric_table(result.metrics))
    return lines


def metric_table(metrics: Sequence[MetricRecheck]) -> list[str]:
    w = max([26, *(len(m.metric) for m in metrics)])
    head = f"  {'metric':<{w}} {'reported':>12} {'now':>12} {'ratio':>7} {'z':>7}  verdict"
    rows = [
        f"  {m.metric:<{w}} {m.reported:>12.5g} {m.now:>12.5g} {m.ratio:>7.3f} {m.z:>+7.2f}  "
        f"{m.verdict} (Holm p {m.p_adjusted:.2g})"
        for m in metrics
    ]
    return [
        head,
        *rows,
        f"  (z: negative = worse now; two-sided, Holm over {len(metrics)} "
        f"metrics, alpha {RECHECK_ALPHA})",
    ]
