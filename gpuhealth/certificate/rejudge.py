"""Judging a signed record again, for `gpuhealth verify`: under the rules it embeds, and under the
rules gpuhealth shipped for the card's model.

  rules      the policy and profile the record was judged under: embedded in full (records of
             gpuhealth 0.2.0 on), or, for an older record, the shipped files its policy hash and
             profile key name; each told apart as shipped (byte-identical to a shipped file) or
             custom, and the record's own claim about that checked
  judgement  the measurements judged again under those rules by this gpuhealth give the stored
             analysis, findings and grade (numbers within 1e-3 of each other, texts equal but for
             the last printed digit: a buyer's scipy may differ in the last bits)
  shipped    the measurements judged under the rules that the judging gpuhealth version shipped
             for this model: the certified grade must be no better (a shop may grade by a
             stricter policy, never pass a weaker one off as the default)

A check that cannot be made is "unproven", with the exit code of its state; it never passes.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from typing import Any

from gpuhealth import __version__
from gpuhealth.certificate.checks import Check
from gpuhealth.errors import EXIT_NOT_JUDGEABLE, EXIT_VERSION_UNCHECKABLE, InputError
from gpuhealth.judge import shipped
from gpuhealth.judge.analysis import assess, judge
from gpuhealth.judge.grading import SEVERITY_ORDER, Policy, policy_from_text
from gpuhealth.judge.profiles import Profile, profile_from_text
from gpuhealth.models import Grade, JudgedUnder, RulesFile, RunRecord, record_to_json

EMBEDDED_RULES_SCHEMA = 2  # records of this schema on carry their rules
REL_TOLERANCE = 1e-3  # numbers judged again may differ this much (another scipy, another BLAS)
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Rules:
    """The rules one judgement used: parsed, with how the record came by them."""

    policy: Policy
    profile: Profile | None
    judged_by: str  # the gpuhealth version that judged the record
    files: tuple[RulesFile, RulesFile | None]
    default: bool  # these are the judging version's shipped rules for this card's model

    def describe(self) -> str:
        if self.default:
            return f"the shipped rules of gpuhealth {self.judged_by}"
        return shipped.describe_rules(*self.files)


@dataclass(frozen=True)
class Rejudged:
    checks: tuple[Check, ...]  # rules, judgement, shipped
    banner: str | None = None  # said first when the rules were not the shipped ones
    shipped_grade: Grade | None = None


def rejudge(record: RunRecord) -> Rejudged:
    """The rules, judgement and shipped checks of one validated record."""
    if record.grade is None or record.analysis is None:
        why = "the record was never judged (no analysis or grade): nothing to check a grade by"
        return Rejudged(_unproven_all(why, EXIT_NOT_JUDGEABLE))
    try:
        rules, rules_check = _rules(record)
    except _Unproven as exc:
        return Rejudged(_unproven_all(exc.why, exc.code))
    except _Removed as exc:
        why = "the rules were removed"
        return Rejudged(
            (
                Check("rules", "fail", str(exc)),
                Check("judgement", "n/a", why),
                Check("shipped", "n/a", why),
            )
        )
    stripped = replace(record, analysis=None, grade=None, rules=None, signature=None)
    again = judge(stripped, rules.profile, rules.policy)
    if record.rules is None:  # an old record: only the judgement itself can be compared
        again = replace(again, rules=None)
    judgement = _judgement_check(record, again, rules)
    shipped_check, banner, shipped_grade = _shipped_check(record, stripped, rules)
    return Rejudged((rules_check, judgement, shipped_check), banner, shipped_grade)


class _Removed(Exception):
    """The record contradicts what its own version always writes: proven tampering."""


class _Unproven(Exception):
    def __init__(self, why: str, code: int) -> None:
        super().__init__(why)
        self.why, self.code = why, code


def _unproven_all(why: str, code: int) -> tuple[Check, ...]:
    return tuple(Check(name, "unproven", why, code) for name in ("rules", "judgement", "shipped"))


# --- which rules ---------------------------------------------------------------------------------


def _rules(record: RunRecord) -> tuple[Rules, Check]:
    if record.rules is None:
        return _legacy_rules(record)
    under = record.rules
    judging = shipped.release(under.judged_by)
    if judging is None:
        raise _Unproven(
            f"judged by gpuhealth {under.judged_by}, whose shipped rules this gpuhealth "
            f"({__version__}) does not have: verify with a gpuhealth that knows it",
            EXIT_VERSION_UNCHECKABLE,
        )
    if judging.schema_version < EMBEDDED_RULES_SCHEMA:
        raise _Removed(
            f"the record says gpuhealth {under.judged_by} judged it, but that version did not "
            "embed rules in records: the judging version was changed"
        )
    policy = _embedded(under.policy, "policy", policy_from_text)
    profile = _embedded(under.profile, "profile", profile_from_text) if under.profile else None
    problems = _claims(record, under.policy, under.profile, policy, profile)
    rules = Rules(
        policy, profile, under.judged_by, (under.policy, under.profile), _default(record, under)
    )
    if problems:
        return rules, Check("rules", "fail", "; ".join(problems))
    return rules, Check("rules", "pass", f"judged under {rules.describe()}")


def _embedded(file: RulesFile, kind: str, parse: Any) -> Any:
    try:
        return parse(file.text, f"the record's embedded {kind}")
    except InputError as exc:
        raise _Unproven(
            f"the embedded {kind} does not load ({exc.one_line()})", EXIT_NOT_JUDGEABLE
        ) from None


def _claims(
    record: RunRecord,
    policy_file: RulesFile,
    profile_file: RulesFile | None,
    policy: Policy,
    profile: Profile | None,
) -> list[str]:
    """What the record says about its rules that the files themselves contradict."""
    assert record.grade is not None and record.analysis is not None
    problems = []
    for file, kind in ((policy_file, "policy"), (profile_file, "profile")):
        if file is None:
            continue
        if file.sha256 != shipped.sha256_text(file.text):
            problems.append(f"the embedded {kind}'s sha256 is not that of its text")
        truth = shipped.versions_shipping(shipped.sha256_text(file.text), kind)
        if tuple(file.shipped_in) != truth:
            said = ", ".join(file.shipped_in) or "no version"
            problems.append(
                f"the record says its {kind} {file.name!r} was shipped by {said}; "
                + (f"it was shipped by {', '.join(truth)}" if truth else "no version shipped it")
            )
    if (record.grade.policy, record.grade.policy_sha256) != (policy.label, policy.sha256):
        problems.append(
            f"the grade names policy {record.grade.policy!r}, the embedded one is {policy.label!r}"
        )
    named = record.analysis.profile.key if record.analysis.profile else None
    if named != (profile.key if profile else None):
        problems.append(
            f"the analysis names profile {named!r}, the embedded one is "
            f"{profile.key if profile else None!r}"
        )
    return problems


def _default(record: RunRecord, under: JudgedUnder) -> bool:
    """Whether the embedded files are the judging version's shipped ones for this card."""
    release = shipped.release(under.judged_by)
    assert release is not None
    default = release.profile_for(record.identity)
    same_profile = (under.profile is None and default is None) or (
        under.profile is not None
        and default is not None
        and shipped.sha256_text(under.profile.text) == default.text_sha256
    )
    return shipped.sha256_text(under.policy.text) == release.policy_sha256 and same_profile


def _legacy_rules(record: RunRecord) -> tuple[Rules, Check]:
    """A record from before rules were embedded: the shipped files its hashes and keys name."""
    assert record.grade is not None and record.analysis is not None
    release = shipped.release(record.tool_version)
    if release is None:
        raise _Unproven(
            f"made by gpuhealth {record.tool_version}, which this gpuhealth ({__version__}) "
            "does not know: verify with a gpuhealth that does",
            EXIT_VERSION_UNCHECKABLE,
        )
    if release.schema_version >= EMBEDDED_RULES_SCHEMA:
        raise _Removed(
            f"gpuhealth {release.version} embeds the rules in every record it judges; this "
            "record's were removed"
        )
    wanted = record.grade.policy_sha256
    if not shipped.versions_shipping(wanted, "policy"):
        raise _Unproven(
            f"graded under policy {record.grade.policy!r} (sha256 {wanted[:12]}…), which is not "
            "a policy a released gpuhealth shipped, and records of this age do not carry "
            "their policy (a development build of the version, or a custom policy)",
            EXIT_VERSION_UNCHECKABLE,
        )
    policy = policy_from_text(shipped.file_text(wanted), f"shipped policy {wanted[:12]}")
    profile = None
    ref = record.analysis.profile
    if ref is not None:
        sha = release.profile_sha256.get(ref.key)
        if sha is None:
            raise _Unproven(
                f"judged with profile {ref.key!r}, which gpuhealth {release.version} did not "
                "ship, and records of this age do not carry their profile",
                EXIT_VERSION_UNCHECKABLE,
            )
        profile = profile_from_text(shipped.file_text(sha), f"shipped profile {ref.key}")
    default = release.profile_for(record.identity)
    same = wanted == release.policy_sha256 and (
        (profile is None and default is None)
        or (profile is not None and default is not None and profile.key == default.key)
    )
    files = (shipped.policy_file(policy), shipped.profile_file(profile))
    rules = Rules(policy, profile, release.version, files, same)
    detail = (
        f"not embedded (a record of gpuhealth {release.version}); judged again under the "
        f"shipped files its policy hash and profile key name"
    )
    return rules, Check("rules", "pass", detail)


# --- judged again --------------------------------------------------------------------------------


def _judgement_check(record: RunRecord, again: RunRecord, rules: Rules) -> Check:
    assert record.grade is not None and again.grade is not None
    if rules.judged_by != __version__:
        return _other_version_judgement(record, again, rules)
    stored = _judgement_data(record)
    found = first_difference(stored, _judgement_data(again))
    if found is None:
        assert again.analysis is not None
        return Check(
            "judgement",
            "pass",
            f"judged again from the measurements: the same {len(again.analysis.comparisons)} "
            f"comparisons, {len(again.analysis.findings)} findings and grade {again.grade.letter}",
        )
    if record.grade.letter != again.grade.letter:
        rules_fired = ", ".join(r.rule for r in again.grade.reasons)
        why = (
            f"the record says grade {record.grade.letter}, but its measurements give "
            f"{again.grade.letter} under {rules.describe()} ({rules_fired})"
        )
    else:
        path, was, now = found
        why = f"{path}: the record says {was}, its measurements give {now}"
    return Check("judgement", "fail", why)


def _other_version_judgement(record: RunRecord, again: RunRecord, rules: Rules) -> Check:
    """A record another gpuhealth version judged: its analysis is that version's (other
    fields, other statistics), so only what it concluded can be compared: the grade and the
    rules behind it."""
    assert record.grade is not None and again.grade is not None
    was = (record.grade.letter, [(r.rule, r.grade) for r in record.grade.reasons])
    now = (again.grade.letter, [(r.rule, r.grade) for r in again.grade.reasons])
    if was == now:
        return Check(
            "judgement",
            "pass",
            f"judged by gpuhealth {rules.judged_by}; judged again by {__version__} under the same "
            f"rules: the same grade {again.grade.letter} for the same reasons",
        )
    rules_now = ", ".join(r.rule for r in again.grade.reasons)
    return Check(
        "judgement",
        "unproven",
        f"judged by gpuhealth {rules.judged_by} as {record.grade.letter}; this version "
        f"({__version__}) judges the same measurements under the same rules as "
        f"{again.grade.letter} ({rules_now})",
        EXIT_VERSION_UNCHECKABLE,
        f"verify with gpuhealth {rules.judged_by} (pip install gpuhealth=={rules.judged_by})",
    )


def _judgement_data(record: RunRecord) -> dict[str, Any]:
    """What judging gives, less the shipped grade (the shipped check's own business)."""
    data = json.loads(record_to_json(record))
    rules = data["rules"]
    if rules is not None:
        rules = {k: v for k, v in rules.items() if k != "shipped_grade"}
    return {"analysis": data["analysis"], "grade": data["grade"], "rules": rules}


def first_difference(a: Any, b: Any, path: str = "") -> tuple[str, str, str] | None:
    """The first place two JSON values differ beyond rounding: (path, a, b) shown short."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}".lstrip("."), _short(a.get(key)), _short(b.get(key))
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} (length)", str(len(a)), str(len(b))
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    if _same(a, b):
        return None
    return path.lstrip("."), _short(a), _short(b)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=REL_TOLERANCE, abs_tol=1e-9)
    if isinstance(a, str) and isinstance(b, str):
        return same_text(a, b)
    return bool(a == b)


def same_text(a: str, b: str) -> bool:
    """Equal, except that numbers printed in them may differ in their last printed digit."""
    if a == b:
        return True
    if _NUMBER.split(a) != _NUMBER.split(b):
        return False
    numbers_a, numbers_b = _NUMBER.findall(a), _NUMBER.findall(b)
    if len(numbers_a) != len(numbers_b):
        return False
    return all(_within_last_digit(x, y) for x, y in zip(numbers_a, numbers_b, strict=True))


def _within_last_digit(x: str, y: str) -> bool:
    if x == y:
        return True
    mantissa = x.lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(x.lower().split("e")[1]) if "e" in x.lower() else 0
    unit = 10.0 ** (exponent - decimals)
    return abs(float(x) - float(y)) <= unit * 1.0001


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 90 else text[:87] + "…"


# --- the shipped rules ---------------------------------------------------------------------------


def _shipped_check(
    record: RunRecord, stripped: RunRecord, rules: Rules
) -> tuple[Check, str | None, Grade | None]:
    assert record.grade is not None
    release = shipped.release(rules.judged_by)
    assert release is not None  # _rules refused unknown versions
    default_policy, default_profile = release.policy(), release.profile_for(record.identity)
    _, default_grade = assess(stripped, default_profile, default_policy)
    certified = record.grade
    rank = SEVERITY_ORDER.index
    because = "; ".join(f"{r.rule}: {r.message}" for r in default_grade.reasons[:3])
    same_rules = rules.default
    claimed = record.rules.shipped_grade if record.rules is not None else None
    if record.rules is not None and (claimed is None) != same_rules:
        said = "names no shipped grade" if claimed is None else "names a shipped grade"
        return (
            Check(
                "shipped",
                "fail",
                f"the record {said}, but it was judged under "
                + ("the shipped rules" if same_rules else "other rules than the shipped ones"),
            ),
            None,
            default_grade,
        )
    if claimed is not None and first_difference(_grade_data(claimed), _grade_data(default_grade)):
        return (
            Check(
                "shipped",
                "fail",
                f"the record says the shipped rules give {claimed.letter}; they give "
                f"{default_grade.letter} ({because})",
            ),
            None,
            default_grade,
        )
    banner = None
    if not same_rules:  # under the shipped rules themselves a different grade fails judgement
        banner = shipped.rules_banner(certified, rules.describe(), release.version, default_grade)
    if rank(certified.letter) < rank(default_grade.letter):
        return (
            Check(
                "shipped",
                "fail",
                f"the certified grade {certified.letter} is better than the "
                f"{default_grade.letter} the shipped rules give ({because})",
                action="treat the card as grade " + default_grade.letter,
            ),
            banner,
            default_grade,
        )
    if default_grade.letter == certified.letter:
        detail = f"the shipped rules of gpuhealth {release.version} give {certified.letter} too"
    else:
        detail = (
            f"graded by stricter rules: the shipped rules of gpuhealth {release.version} give "
            f"{default_grade.letter}, the certificate says {certified.letter}"
        )
    return Check("shipped", "pass", detail), banner, default_grade


def _grade_data(grade: Grade) -> Any:
    return json.loads(json.dumps(grade, default=lambda o: o.__dict__))
