"""Verifying a report: is it a gpuhealth record, unchanged since it was signed, by whom, and does
its grade follow from what it says was measured? Optionally, on the machine with the card: is it
the same card, no worse, and does it still measure what the report says?

Each check ends pass, fail or skipped, with one line saying why:
  readable     the file is JSON, or an HTML report with exactly one embedded record, and a run
               record of a schema version this gpuhealth reads
  schema       the record validates (every field's type and allowed values)
  signed       a signature block is present
  signature    Ed25519 over the canonical bytes (gpuhealth/signing.py) holds for the embedded public
               key, and the stated fingerprint is that key's
  signer       the key is the one given with --key, or one of the pinned keys; skipped when neither
               was given ("signer not pinned")
  consistency  the grade follows from the stored findings under the stated policy (when that policy
               is the shipped one; otherwise skipped: policy not available)
  judgement    the findings and grade follow from the stored measurements when judged again with
               the built-in profile (when the record was graded by this gpuhealth version with the
               shipped policy and the profile has not changed since)
and with --recheck, on the card:
  identity     the card here has the report's serial and UUID
  counters     remapped rows, uncorrectable ECC errors, pending / failed remapping: no worse than
               the report, and never lower (a lower counter was reset, or is another card)
  remeasure    the quick preset's bandwidth, fp32 and gemm tests measure what the report says:
               each metric's median now against the reported median (stats.compare), the spread
               the larger of the report's CI-derived standard error, the profile's spread and 1 %
               of the reported value; two-sided, Holm-adjusted over the metrics, alpha 0.01

Exit codes: 0 valid (every check passed or was skipped), 1 invalid (a check failed: tampered,
wrong signer, inconsistent, another card, measures differently), 2 unreadable (not a report, no
embedded record, bad JSON), 4 unsigned (readable and valid, but no signature).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from scipy import stats as sps

from gpuhealth import __version__, stats
from gpuhealth.analysis import judge, no_profile_note
from gpuhealth.backends.base import Backend
from gpuhealth.errors import (
    EXIT_BAD_CARD,
    EXIT_OK,
    EXIT_UNSIGNED,
    EXIT_USAGE,
    DeviceLost,
    InputError,
)
from gpuhealth.grading import Policy, grade, load_policy
from gpuhealth.keys import pinned_fingerprints
from gpuhealth.models import SCHEMA_VERSION, HealthCounters, RunRecord, record_from_data
from gpuhealth.presets import PRESETS
from gpuhealth.profiles import NOT_JUDGED, Profile, builtin_profiles, match_profile
from gpuhealth.signing import check_signature
from gpuhealth.stresstests.bandwidth import BandwidthTest
from gpuhealth.stresstests.base import StressTest, TestContext, execute
from gpuhealth.stresstests.fp32 import Fp32Test
from gpuhealth.stresstests.gemm import GemmTest

CheckStatus = Literal["pass", "fail", "skipped"]
RECORD_ELEMENT_ID = "gpuhealth-run-record"
RECHECK_PRESET = "quick"
RECHECK_ALPHA = 0.01
# The spread a re-measurement is held to never falls below this share of the reported value: the
# same card measured another day varies about this much with temperature and clocks, and a model
# with no profile has no between-card spread to fall back on.
RECHECK_MIN_SPREAD_REL = 0.01
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_RECORD_ID = re.compile(r"""\bid\s*=\s*(["']?)gpuhealth-run-record\1(?=[\s/>]|$)""")


@dataclass(frozen=True)
class Check:
    name: str
    status: CheckStatus
    detail: str


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
class VerifyResult:
    source: str
    kind: str | None  # "JSON run record" / "HTML report" once readable
    checks: tuple[Check, ...]
    record: RunRecord | None = None
    signer: str | None = None  # the fingerprint the record says signed it
    rechecked: bool = False
    metrics: tuple[MetricRecheck, ...] = field(default_factory=tuple)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    @property
    def exit_code(self) -> int:
        failed = [c.name for c in self.checks if c.status == "fail"]
        if "readable" in failed:
            return EXIT_USAGE
        if any(name != "signed" for name in failed):
            return EXIT_BAD_CARD
        return EXIT_UNSIGNED if "signed" in failed else EXIT_OK

    @property
    def verdict(self) -> str:
        code = self.exit_code
        failed = [c for c in self.checks if c.status == "fail"]
        if code == EXIT_USAGE:
            return f"UNREADABLE: {failed[0].detail}"
        if code == EXIT_BAD_CARD:
            first = next(c for c in failed if c.name != "signed")
            more = len([c for c in failed if c.name != "signed"]) - 1
            tail = f" (and {more} more failed check{'s' if more > 1 else ''})" if more else ""
            return f"INVALID: {first.name}: {first.detail}{tail}"
        if code == EXIT_UNSIGNED:
            return (
                "UNSIGNED: a valid run record, but with no signature nothing shows who wrote it "
                "or that it is unchanged"
            )
        signer = self.check("signer")
        if signer is not None and signer.status == "skipped":
            return (
                f"VALID, signer not checked: unchanged since {self.signer} signed it, but that "
                "key is neither pinned nor given with --key"
            )
        return f"VALID: {signer.detail if signer else self.signer}; unchanged since it was signed"

    @property
    def recheck_verdict(self) -> str | None:
        if not self.rechecked:
            return None
        names = ("identity", "counters", "remeasure")
        checks = [c for c in self.checks if c.name in names]
        bad = [c for c in checks if c.status == "fail"]
        if bad:
            return "RECHECK NOT CONSISTENT: " + "; ".join(f"{c.name}: {c.detail}" for c in bad)
        said = {"identity": "same card", "counters": "health counters no worse"}
        parts = [
            f"{c.name} skipped ({c.detail})"
            if c.status == "skipped"
            else said.get(c.name, c.detail)
            for c in checks
        ]
        return "RECHECK CONSISTENT: " + "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        record = self.record
        return {
            "source": self.source,
            "kind": self.kind,
            "exit_code": self.exit_code,
            "verdict": self.verdict,
            "run_id": record.run_id if record else None,
            "card": {
                "name": record.identity.name,
                "serial": record.identity.serial,
                "uuid": record.identity.uuid,
            }
            if record
            else None,
            "grade": record.grade.letter if record and record.grade else None,
            "signer": self.signer,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks
            ],
            "recheck": {
                "verdict": self.recheck_verdict,
                "alpha": RECHECK_ALPHA,
                "metrics": [
                    {
                        "metric": m.metric,
                        "unit": m.unit,
                        "reported": m.reported,
                        "now": m.now,
                        "ratio": _finite(m.ratio),
                        "z": _finite(m.z),
                        "p_adjusted": m.p_adjusted,
                        "verdict": m.verdict,
                    }
                    for m in self.metrics
                ],
            }
            if self.rechecked
            else None,
        }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --- reading -------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _parse_json(text: str, what: str) -> tuple[dict[str, Any] | None, str]:
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        return None, f"{what} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except ValueError as exc:  # a duplicate key: no record gpuhealth wrote has one
        return None, f"{what} is not a valid record ({exc})"
    if not isinstance(data, dict):
        return None, f"{what} is not a JSON object (a gpuhealth run record)"
    return data, ""


def read_report(path: Path) -> tuple[dict[str, Any] | None, str | None, Check]:
    """The parsed record, what the file is, and the readable check."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        return None, None, Check("readable", "fail", f"cannot read {path} ({exc.strerror or exc})")
    except UnicodeDecodeError:
        return None, None, Check("readable", "fail", f"{path} is not UTF-8 text: not a report")
    if text.lstrip("\ufeff \t\r\n")[:1] in ("{", "["):
        kind, what = "JSON run record", "the file"
        data, why = _parse_json(text, what)
    else:
        scripts = [body for attrs, body in _SCRIPT.findall(text) if _RECORD_ID.search(attrs)]
        if not scripts:
            why = (
                "not a gpuhealth report: neither JSON nor an HTML page with an embedded run "
                f'record (<script type="application/json" id="{RECORD_ELEMENT_ID}">)'
            )
            return None, None, Check("readable", "fail", why)
        if len(scripts) > 1:
            why = f"{len(scripts)} embedded run records in one page: which one is meant is unclear"
            return None, None, Check("readable", "fail", why)
        kind, what = "HTML report", "the embedded record"
        data, why = _parse_json(scripts[0], what)
    if data is None:
        return None, None, Check("readable", "fail", why)
    if "schema_version" not in data or "run_id" not in data:
        return (
            None,
            None,
            Check(
                "readable",
                "fail",
                f"{what} is JSON but not a gpuhealth run record (no schema_version)",
            ),
        )
    if data["schema_version"] != SCHEMA_VERSION:
        return (
            None,
            None,
            Check(
                "readable",
                "fail",
                f"schema_version {data['schema_version']!r}: this gpuhealth reads version "
                f"{SCHEMA_VERSION} (a newer gpuhealth may read it)",
            ),
        )
    detail = f"{kind}, schema version {SCHEMA_VERSION}"
    if kind == "HTML report":
        detail += "; only the embedded record is signed and checked, not the page's visible text"
    return data, kind, Check("readable", "pass", detail)


# --- the checks ----------------------------------------------------------------------------------


def verify_report(path: Path, key: str | None = None) -> VerifyResult:
    """Every check on one report. key: the signer's fingerprint, if the user named one."""
    source = str(path)
    data, kind, readable = read_report(path)
    if data is None:
        return VerifyResult(source, kind, (readable,))
    checks = [readable]
    record: RunRecord | None = None
    try:
        record = record_from_data(data, source)
        identity = record.identity
        checks.append(
            Check(
                "schema",
                "pass",
                f"a valid run record: run {record.run_id}, {identity.name} serial "
                f"{identity.serial or 'n/a'}, grade "
                f"{record.grade.letter if record.grade else 'none'}",
            )
        )
    except InputError as exc:
        checks.append(Check("schema", "fail", exc.one_line()))
    block = data.get("signature")
    signer: str | None = None
    if block is None:
        checks.append(Check("signed", "fail", "no signature: the record is unsigned"))
        checks.append(Check("signature", "skipped", "unsigned"))
        checks.append(Check("signer", "skipped", "unsigned"))
    else:
        claimed = block.get("key_fingerprint") if isinstance(block, dict) else None
        signer = claimed if isinstance(claimed, str) else None
        when = block.get("signed_at") if isinstance(block, dict) else None
        checks.append(Check("signed", "pass", f"signature by {signer or '?'}, signed at {when}"))
        problem = check_signature(data)
        if problem is None:
            checks.append(Check("signature", "pass", "the record is unchanged since it was signed"))
            checks.append(_signer_check(signer or "", key))
        else:
            checks.append(Check("signature", "fail", problem))
            checks.append(Check("signer", "skipped", "the signature is not valid"))
    checks.extend(_consistency_checks(record))
    return VerifyResult(source, kind, tuple(checks), record, signer)


def _signer_check(signer: str, key: str | None) -> Check:
    if key is not None:
        if signer == key:
            return Check("signer", "pass", f"signed by the given key {key}")
        return Check("signer", "fail", f"signed by {signer}, not by the given key {key}")
    pinned = pinned_fingerprints()
    if not pinned:
        return Check(
            "signer",
            "skipped",
            f"signer not pinned: signed by {signer} (to check it: gpuhealth keys pin "
            "THEIR_PUBLIC_KEY, or --key)",
        )
    if signer in pinned:
        return Check("signer", "pass", f"signed by the pinned key {signer}")
    return Check(
        "signer", "fail", f"signed by {signer}, which is not one of the {len(pinned)} pinned key(s)"
    )


def _consistency_checks(record: RunRecord | None) -> list[Check]:
    if record is None:
        why = "the record does not validate"
        return [Check("consistency", "skipped", why), Check("judgement", "skipped", why)]
    stored, analysis = record.grade, record.analysis
    if stored is None or analysis is None:
        why = "the record was never judged (no analysis or grade)"
        return [Check("consistency", "skipped", why), Check("judgement", "skipped", why)]
    policy = load_policy()
    if stored.policy_sha256 != policy.sha256:
        why = (
            f"policy not available: graded under {stored.policy!r} "
            f"(sha256 {stored.policy_sha256[:12]}…), not the shipped {policy.label}"
        )
        return [Check("consistency", "skipped", why), Check("judgement", "skipped", why)]
    note = None if analysis.profile is not None else no_profile_note(record)
    again = grade(analysis.findings, policy, note)
    if again != stored:
        rules = ", ".join(f"{r.rule} ({r.grade})" for r in again.reasons)
        if again.letter != stored.letter:
            why = (
                f"the record says grade {stored.letter}, but its {len(analysis.findings)} "
                f"findings give {again.letter} under {policy.label}: {rules}"
            )
        else:
            why = (
                f"the grade's reasons or disposition differ from what {policy.label} gives: {rules}"
            )
        consistency = Check("consistency", "fail", why)
    else:
        consistency = Check(
            "consistency",
            "pass",
            f"grade {stored.letter} follows from the {len(analysis.findings)} stored findings "
            f"under {policy.label}",
        )
    return [consistency, _judgement_check(record, policy)]


def _builtin_profile(record: RunRecord) -> tuple[Profile | None, str | None]:
    """The built-in profile the record was judged with, or why there is none to use."""
    assert record.analysis is not None
    ref = record.analysis.profile
    matched = match_profile(record.identity, builtin_profiles())
    if ref is None:
        if matched is not None:
            return None, f"judged without a profile; this gpuhealth has {matched.key!r}"
        return None, None
    for profile in builtin_profiles():
        if (profile.key, profile.name, profile.source, profile.cards) == (
            ref.key,
            ref.name,
            ref.source,
            ref.cards,
        ):
            return profile, None
    return None, f"judged with profile {ref.key!r}, which is not a built-in profile here"


def _judgement_check(record: RunRecord, policy: Policy) -> Check:
    assert record.analysis is not None and record.grade is not None
    if record.tool_version != __version__:
        return Check(
            "judgement",
            "skipped",
            f"graded by gpuhealth {record.tool_version}, this is {__version__}: the analysis "
            "may differ between versions",
        )
    profile, why = _builtin_profile(record)
    if why is not None:
        return Check("judgement", "skipped", why)
    again = judge(replace(record, analysis=None, grade=None, signature=None), profile, policy)
    assert again.analysis is not None and again.grade is not None
    old, new = record.analysis, again.analysis
    references = [(c.test, c.metric, c.reference) for c in old.comparisons]
    thermal = old.soak.reference_c_per_w if old.soak else None
    if references != [(c.test, c.metric, c.reference) for c in new.comparisons] or thermal != (
        new.soak.reference_c_per_w if new.soak else None
    ):
        key = profile.key if profile else "none"
        return Check(
            "judgement", "skipped", f"the profile {key!r} has changed since the record was graded"
        )
    problems: list[str] = []
    verdicts_old = [(f"{c.test}.{c.metric}", c.verdict) for c in old.comparisons]
    verdicts_new = [(f"{c.test}.{c.metric}", c.verdict) for c in new.comparisons]
    for (metric, was), (_, now) in zip(verdicts_old, verdicts_new, strict=True):
        if was != now:
            problems.append(f"{metric} is {now!r} from its measurements, the record says {was!r}")
    found_old = sorted((f.code, f.severity) for f in old.findings)
    found_new = sorted((f.code, f.severity) for f in new.findings)
    if found_old != found_new:
        missing = sorted(set(found_new) - set(found_old))
        extra = sorted(set(found_old) - set(found_new))
        problems.append(
            "findings differ from the measurements'"
            + (f": missing {', '.join(c for c, _ in missing)}" if missing else "")
            + (f": not supported {', '.join(c for c, _ in extra)}" if extra else "")
        )
    was_grade, now_grade = record.grade, again.grade
    if was_grade.letter != now_grade.letter or [(r.rule, r.grade) for r in was_grade.reasons] != [
        (r.rule, r.grade) for r in now_grade.reasons
    ]:
        problems.append(
            f"the measurements give grade {now_grade.letter} ("
            + ", ".join(r.rule for r in now_grade.reasons)
            + f"), the record says {was_grade.letter}"
        )
    if problems:
        return Check("judgement", "fail", "; ".join(problems))
    profile_name = f"profile {profile.key!r}" if profile else "no profile"
    return Check(
        "judgement",
        "pass",
        f"judged again from the measurements ({profile_name}): same {len(new.comparisons)} "
        f"verdicts, {len(new.findings)} findings and grade {now_grade.letter}",
    )


# --- re-checking on the card ---------------------------------------------------------------------


def recheck(result: VerifyResult, backend: Backend) -> VerifyResult:
    """The verification with the on-card checks added (identity, counters, remeasure)."""
    record = result.record
    if record is None:
        why = "no valid record to compare with"
        added = (Check(n, "skipped", why) for n in ("identity", "counters", "remeasure"))
        return replace(result, checks=result.checks + tuple(added), rechecked=True)
    identity = _identity_check(record, backend)
    if identity.status == "fail":
        why = "another card"
        checks = (identity, Check("counters", "skipped", why), Check("remeasure", "skipped", why))
        return replace(result, checks=result.checks + checks, rechecked=True)
    counters = _counters_check(record, backend.counters())
    measured, remeasure = _remeasure(record, backend)
    return replace(
        result,
        checks=(*result.checks, identity, counters, remeasure),
        rechecked=True,
        metrics=tuple(measured),
    )


def _identity_check(record: RunRecord, backend: Backend) -> Check:
    here, there = backend.identity(), record.identity
    parts: list[str] = []
    bad: list[str] = []
    for label, was, now in (("serial", there.serial, here.serial), ("uuid", there.uuid, here.uuid)):
        if was is None:
            parts.append(f"{label} not in the report")
        elif was == now:
            parts.append(f"{label} {now}")
        else:
            bad.append(f"{label} {now or 'unknown'} here, {was} in the report")
    if bad:
        return Check("identity", "fail", "another card: " + "; ".join(bad))
    if there.serial is None and there.uuid is None:
        return Check("identity", "fail", "the report names no serial or uuid to compare")
    return Check("identity", "pass", f"same card ({here.name}, {', '.join(parts)})")


def _counters_check(record: RunRecord, now: HealthCounters) -> Check:
    was = record.counters_after or record.counters_before
    if was is None:
        return Check("counters", "skipped", "the report has no health counters")
    problems: list[str] = []
    compared: list[str] = []
    for name, label in (
        ("remapped_rows_correctable", "correctable remapped rows"),
        ("remapped_rows_uncorrectable", "uncorrectable remapped rows"),
        ("ecc_aggregate_uncorrected", "aggregate uncorrectable ECC errors"),
    ):
        before, after = getattr(was, name), getattr(now, name)
        if before is None or after is None:
            continue
        compared.append(f"{label} {after}")
        if after < before:
            problems.append(
                f"{label} went down from {before} to {after}: the counter was reset, or this is "
                "another card"
            )
        elif after > before:
            problems.append(f"{label} rose from {before} to {after} since the report")
    for name, label in (
        ("remapped_rows_pending", "row remapping pending"),
        ("remapped_rows_failure", "row remapping failure"),
    ):
        before_flag, after_flag = getattr(was, name), getattr(now, name)
        if after_flag is None:
            continue
        compared.append(f"{label} {'yes' if after_flag else 'no'}")
        if after_flag and not before_flag:
            problems.append(f"{label} is set now, not in the report")
    if problems:
        return Check("counters", "fail", "; ".join(problems))
    if not compared:
        return Check("counters", "skipped", "no comparable counter readable on both")
    return Check("counters", "pass", "no worse than reported: " + ", ".join(compared))


def _recheck_tests() -> tuple[StressTest, ...]:
    return (BandwidthTest(), Fp32Test(), GemmTest())


def _remeasure(record: RunRecord, backend: Backend) -> tuple[list[MetricRecheck], Check]:
    chosen = PRESETS[RECHECK_PRESET]
    info = backend.device_info()
    t0 = backend.clock_s()
    results = []
    backend.start_telemetry(chosen.telemetry_interval_s)
    try:
        for test in _recheck_tests():
            executed = execute(
                test, TestContext(backend, info, chosen, t0, chosen.budget_s(test.name))
            )
            results.append(executed.result)
            if executed.card_lost:
                break
    finally:
        with contextlib.suppress(DeviceLost):
            backend.stop_telemetry()
    broken = [r for r in results if r.status != "passed"]
    references = {
        f"{c.test}.{c.metric}": c.reference.spread
        for c in (record.analysis.comparisons if record.analysis else ())
        if c.reference is not None
    }
    rows: list[tuple[str, str, bool, float, float, float, float]] = []
    for result in results:
        reported_test = record.test(result.name)
        for metric in result.metrics:
            if (result.name, metric.name) in NOT_JUDGED or not metric.values:
                continue
            reported = reported_test.metric(metric.name) if reported_test else None
            if reported is None or not reported.values:
                continue
            key = f"{result.name}.{metric.name}"
            was, now = stats.estimate(reported.values), stats.estimate(metric.values)
            spread = max(
                was.standard_error,
                references.get(key, 0.0),
                RECHECK_MIN_SPREAD_REL * abs(was.value),
            )
            cmp = stats.compare(now, was.value, spread, metric.higher_is_better)
            two_sided = float(2 * sps.norm.sf(abs(cmp.z))) if math.isfinite(cmp.z) else 0.0
            rows.append(
                (key, metric.unit, metric.higher_is_better, was.value, now.value, cmp.z, two_sided)
            )
    adjusted = stats.holm([r[6] for r in rows])
    measured = [
        MetricRecheck(
            key,
            unit,
            was,
            now,
            z,
            p_adj,
            "consistent" if p_adj >= RECHECK_ALPHA else ("lower" if now < was else "higher"),
        )
        for (key, unit, _, was, now, z, _), p_adj in zip(rows, adjusted, strict=True)
    ]
    if broken:
        why = "; ".join(
            f"{r.name} {r.status}: {r.message or 'a verification failed'}" for r in broken
        )
        return measured, Check("remeasure", "fail", f"the re-measurement did not pass: {why}")
    if not measured:
        return measured, Check("remeasure", "skipped", "the report has none of these metrics")
    off = [m for m in measured if m.verdict != "consistent"]
    worst = max(measured, key=lambda m: (abs(m.z), -m.p_adjusted))
    numbers = (
        f"{worst.metric} {worst.ratio:.3f}x the report, z = {worst.z:+.1f}, "
        f"Holm p = {worst.p_adjusted:.2g}"
    )
    if off:
        return measured, Check(
            "remeasure",
            "fail",
            f"{len(off)} of {len(measured)} metrics measure differently now (worst: {numbers} "
            f"< {RECHECK_ALPHA}): {', '.join(m.metric for m in off)}",
        )
    return measured, Check(
        "remeasure",
        "pass",
        f"{len(measured)} metrics consistent with the report (largest deviation: {numbers} "
        f">= {RECHECK_ALPHA})",
    )


# --- output --------------------------------------------------------------------------------------


def format_text(result: VerifyResult) -> str:
    width = max(len(c.name) for c in result.checks)
    lines = [f"{result.source}: {result.kind or 'unreadable'}"]
    lines += [f"  {c.name:<{width}}  {c.status:<7}  {c.detail}" for c in result.checks]
    if result.metrics:
        lines.append("")
        lines.extend(metric_table(result.metrics))
    lines.append(result.verdict)
    if result.recheck_verdict:
        lines.append(result.recheck_verdict)
    return "\n".join(lines) + "\n"


def metric_table(metrics: Sequence[MetricRecheck]) -> list[str]:
    head = f"  {'metric':<26} {'reported':>12} {'now':>12} {'ratio':>7} {'z':>7}  verdict"
    rows = [
        f"  {m.metric:<26} {m.reported:>12.5g} {m.now:>12.5g} {m.ratio:>7.3f} {m.z:>+7.2f}  "
        f"{m.verdict} (Holm p {m.p_adjusted:.2g})"
        for m in metrics
    ]
    return [
        head,
        *rows,
        f"  (z: negative = worse now; two-sided, Holm over {len(metrics)} "
        f"metrics, alpha {RECHECK_ALPHA})",
    ]


def open_card(record: RunRecord, name: str, sim_card: str | None) -> Backend:
    """The card to re-check: the one with the report's UUID (or serial), else the report's index."""
    from gpuhealth.backends import DEMO_CARD, list_devices, open_backend

    if name == "sim" or sim_card is not None:
        return open_backend("sim", 0, sim_card or DEMO_CARD)
    wanted = record.identity
    cards = list_devices(name)  # type: ignore[arg-type]  # auto or cuda, checked by the CLI
    index = next((c.index for c in cards if wanted.uuid and c.uuid == wanted.uuid), None)
    if index is None:
        index = next((c.index for c in cards if wanted.serial and c.serial == wanted.serial), None)
    if index is None:
        index = wanted.index if wanted.index < len(cards) else 0
    return open_backend(name, index)  # type: ignore[arg-type]
