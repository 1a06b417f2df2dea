"""Verifying a report: "not proven" unless every check was made and held.

Each check ends pass, fail, unproven (it could not be made; never counted as passed) or n/a:
  readable   the file is JSON, or an HTML page with exactly one embedded run record
  version    the record's schema and the gpuhealth versions that measured and judged it are known
             here, and that version wrote that schema (a claimed older version is not believed)
  schema     the record validates (every field's type and allowed values)
  signed     a signature block is present
  signature  Ed25519 over the record's canonical bytes (certificate/signing.py: RFC 8785) holds for
             the embedded public key, and the stated fingerprint is that key's
  signer     the key is the one given with --key, or a pinned one (gpuhealth keys pin); an
             unreadable or unsafe trust store is never read as "nothing pinned"
  evidence   every test marked passed carries the evidence that proves it, within its preset's
             minimums (gpuhealth/judge/evidence.py)
  page       (report.html) the page is exactly the certificate its embedded record renders
  rules, judgement, shipped   (certificate/rejudge.py) the grade follows from the measurements under
             the embedded rules, and is no better than gpuhealth's shipped rules give
  card       a real GPU: a simulated card's record is never plain VALID
`--recheck` adds the on-card items of gpuhealth/measure/recheck.py. The exit codes are
gpuhealth/errors.py's verify codes; the first line of the output says the verdict, the second what
to do about it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gpuhealth import __version__, jsonfile
from gpuhealth.certificate.checks import Check
from gpuhealth.certificate.keys import pinned_fingerprints
from gpuhealth.certificate.pagecheck import page_check
from gpuhealth.certificate.recheck_result import RecheckResult, format_recheck
from gpuhealth.certificate.rejudge import rejudge
from gpuhealth.certificate.signing import canonical_method, check_signature, data_sha256
from gpuhealth.errors import (
    EXIT_BAD_CARD,
    EXIT_NOT_JUDGEABLE,
    EXIT_OK,
    EXIT_SIGNER_UNTRUSTED,
    EXIT_SIMULATED,
    EXIT_TRUST_STORE,
    EXIT_UNSIGNED,
    EXIT_USAGE,
    EXIT_VERSION_UNCHECKABLE,
    GpuHealthError,
    InputError,
)
from gpuhealth.judge import shipped
from gpuhealth.judge.evidence import LEGACY_VERSIONS, evidence_problems
from gpuhealth.models import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION, RunRecord, record_from_data

RECORD_ELEMENT_ID = "gpuhealth-run-record"
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_RECORD_ID = re.compile(r"""\bid\s*=\s*(["']?)gpuhealth-run-record\1(?=[\s/>]|$)""")
# Not-proven states in the order the verdict names them: the first is what to fix first.
UNPROVEN_ORDER = (
    EXIT_UNSIGNED,
    EXIT_TRUST_STORE,
    EXIT_SIGNER_UNTRUSTED,
    EXIT_VERSION_UNCHECKABLE,
    EXIT_NOT_JUDGEABLE,
    EXIT_SIMULATED,
)
VERDICTS = {
    EXIT_OK: "VALID",
    EXIT_BAD_CARD: "INVALID",
    EXIT_USAGE: "UNREADABLE",
    EXIT_UNSIGNED: "NOT PROVEN (unsigned)",
    EXIT_TRUST_STORE: "NOT PROVEN (trust store unreadable)",
    EXIT_SIGNER_UNTRUSTED: "NOT PROVEN (signer not trusted)",
    EXIT_VERSION_UNCHECKABLE: "NOT PROVEN (version not checkable)",
    EXIT_NOT_JUDGEABLE: "NOT PROVEN (grade not judgeable)",
    EXIT_SIMULATED: "SIMULATED CARD, NOT A GPU",
}
ACTIONS = {
    EXIT_OK: "nothing: the grade is proven as far as a record can prove it; --recheck on the "
    "machine with the card tests the card itself",
    EXIT_BAD_CARD: "do not rely on this certificate: it was changed, is not the seller's, or "
    "claims more than its measurements and gpuhealth's rules support",
    EXIT_USAGE: "ask the seller for the run.json or report.html gpuhealth wrote",
    EXIT_UNSIGNED: "ask the seller for a signed report (gpuhealth keys generate, then grade "
    "again); an unsigned report proves nothing about who made it",
    EXIT_TRUST_STORE: "repair or remove the pinned-keys file (gpuhealth keys list says why), or "
    "pass the seller's key with --key",
    EXIT_SIGNER_UNTRUSTED: "get the seller's public key from the seller, not from the report, "
    "then verify with --key FILE or pin it (gpuhealth keys pin FILE)",
    EXIT_VERSION_UNCHECKABLE: "verify with the gpuhealth version that made the report, or ask "
    "the seller to grade the card again with this version",
    EXIT_NOT_JUDGEABLE: "ask the seller to grade the card again (the grade cannot be checked)",
    EXIT_SIMULATED: "none needed for a demo: no real GPU was tested, so this grades no hardware",
}


@dataclass(frozen=True)
class VerifyResult:
    source: str
    kind: str | None  # "JSON run record" / "HTML report" once readable
    checks: tuple[Check, ...]
    record: RunRecord | None = None
    signer: str | None = None  # the fingerprint the record says signed it
    record_sha256: str | None = None  # of the canonical bytes
    banner: str | None = None  # said first when the rules were not gpuhealth's shipped ones
    recheck: RecheckResult | None = None

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    @property
    def simulated(self) -> bool:
        record = self.record
        return record is not None and "sim" in (record.backend, record.identity.backend)

    @property
    def exit_code(self) -> int:
        if any(c.name == "readable" and c.status == "fail" for c in self.checks):
            return EXIT_USAGE
        if any(c.status == "fail" for c in self.checks):
            return EXIT_BAD_CARD
        if self.recheck is not None and not self.recheck.consistent:
            return EXIT_BAD_CARD
        states = {c.exit_code for c in self.checks if c.status == "unproven"}
        return next((code for code in UNPROVEN_ORDER if code in states), EXIT_OK)

    @property
    def deciding(self) -> Check | None:
        """The check the verdict is about: the first failed one, else the first not proven."""
        code = self.exit_code
        if code in (EXIT_USAGE, EXIT_BAD_CARD):
            return next((c for c in self.checks if c.status == "fail"), None)
        return next((c for c in self.checks if c.exit_code == code), None)

    @property
    def verdict(self) -> str:
        """The first line: the verdict, then the banner (other rules) or the deciding check."""
        code = self.exit_code
        label = VERDICTS[code]
        if self.simulated and code != EXIT_SIMULATED:
            label += " (SIMULATED CARD)"
        deciding = self.deciding
        if self.banner and code in (EXIT_OK, EXIT_BAD_CARD, EXIT_SIMULATED):
            said = self.banner
            if deciding is not None and deciding.name not in ("shipped", "card"):
                said = f"{deciding.name}: {deciding.detail}; {self.banner}"
        elif deciding is not None and code != EXIT_SIMULATED:
            said = f"{deciding.name}: {deciding.detail}"
        elif code == EXIT_BAD_CARD and self.recheck is not None:
            said = self.recheck.verdict
        else:
            said = self._summary()
        return f"{label}: {said}"

    def _summary(self) -> str:
        record = self.record
        if record is None:
            return "no record"
        card = record.identity
        grade = record.grade.letter if record.grade else "none"
        signer = self.check("signer")
        how = signer.detail if signer is not None and signer.status == "pass" else ""
        sim = " — measured on a simulated card, no GPU was tested" if self.simulated else ""
        return (
            f"grade {grade} for {card.name} serial {card.serial or 'n/a'}{sim}; {how}; "
            "unchanged, evidence complete, the grade follows from the measurements under "
            "gpuhealth's shipped rules"
        )

    @property
    def action(self) -> str:
        deciding = self.deciding
        if deciding is not None and deciding.action:
            return deciding.action
        return ACTIONS[self.exit_code]

    def to_json(self) -> dict[str, Any]:
        record = self.record
        return {
            "source": self.source,
            "kind": self.kind,
            "exit_code": self.exit_code,
            "verdict": self.verdict,
            "action": self.action,
            "banner": self.banner,
            "backend": record.backend if record else None,
            "simulated": self.simulated,
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
            "record_sha256": self.record_sha256,
            "checks": [
                {
                    "name": c.name,
                    "status": c.status,
                    "detail": c.detail,
                    "exit_code": c.exit_code,
                    "action": c.action,
                }
                for c in self.checks
            ],
            "recheck": self.recheck.to_json() if self.recheck else None,
        }


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    text: str
    kind: str
    data: dict[str, Any]


def _parse_json(text: str, what: str) -> tuple[dict[str, Any] | None, str]:
    try:
        data = jsonfile.loads(text, what)
    except InputError as exc:  # not JSON, a duplicate key, NaN, nesting beyond reason
        where = f"{exc.field}: " if exc.field else ""
        return None, f"{what} is not a valid record ({where}{exc.expected})"
    if not isinstance(data, dict):
        return None, f"{what} is not a JSON object (a gpuhealth run record)"
    return data, ""


def load_report(path: Path) -> tuple[Loaded | None, Check]:
    """The file's text, what it is and its parsed record, with the readable check."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        return None, Check("readable", "fail", f"cannot read {path} ({exc.strerror or exc})")
    except UnicodeDecodeError:
        return None, Check("readable", "fail", f"{path} is not UTF-8 text: not a report")
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
            return None, Check("readable", "fail", why)
        if len(scripts) > 1:
            why = f"{len(scripts)} embedded run records in one page: which one is meant is unclear"
            return None, Check("readable", "fail", why)
        kind, what = "HTML report", "the embedded record"
        data, why = _parse_json(scripts[0], what)
    if data is None:
        return None, Check("readable", "fail", why)
    if "schema_version" not in data or "run_id" not in data:
        why = f"{what} is JSON but not a gpuhealth run record (no schema_version)"
        return None, Check("readable", "fail", why)
    return Loaded(text, kind, data), Check("readable", "pass", kind)


# --- the checks -------------------------------------------------------------------------------


def verify_report(path: Path, key: str | None = None) -> VerifyResult:
    """Every check on one report. key: the signer's fingerprint, if the user named one."""
    source = str(path)
    loaded, readable = load_report(path)
    if loaded is None:
        return VerifyResult(source, None, (readable,))
    data = loaded.data
    checks = [readable, _version_check(data)]
    record: RunRecord | None = None
    if checks[-1].status != "unproven" or data.get("schema_version") in READABLE_SCHEMA_VERSIONS:
        try:
            record = record_from_data(data, source)
            checks.append(Check("schema", "pass", _describe(record)))
        except GpuHealthError as exc:
            checks.append(Check("schema", "fail", exc.one_line()))
    signer, signature_checks = _signature_checks(data, key)
    checks += signature_checks
    banner = None
    if record is not None:
        checks.append(_evidence_check(record))
        if loaded.kind == "HTML report":
            checks.append(page_check(loaded.text, record))
        else:
            checks.append(Check("page", "n/a", "a run.json: no page to compare"))
        judged = rejudge(record)
        checks += judged.checks
        banner = judged.banner
        checks.append(_card_check(record))
    digest = data_sha256(data)
    return VerifyResult(source, loaded.kind, tuple(checks), record, signer, digest, banner)


def with_recheck(result: VerifyResult, recheck: RecheckResult) -> VerifyResult:
    return replace(result, recheck=recheck)


def _describe(record: RunRecord) -> str:
    identity = record.identity
    grade = record.grade.letter if record.grade else "none"
    return (
        f"a valid run record: run {record.run_id}, {identity.name} serial "
        f"{identity.serial or 'n/a'}, grade {grade}"
    )


def _version_check(data: Mapping[str, Any]) -> Check:
    schema = data.get("schema_version")
    tool = data.get("tool_version")
    if not isinstance(schema, int) or isinstance(schema, bool):
        return Check("version", "fail", f"schema_version {schema!r} is not a number")
    if schema > SCHEMA_VERSION:
        return Check(
            "version",
            "unproven",
            f"record schema version {schema}: written by a newer gpuhealth than this one "
            f"({__version__}, schema {SCHEMA_VERSION})",
            EXIT_VERSION_UNCHECKABLE,
            "update gpuhealth (pip install -U gpuhealth) and verify again",
        )
    release = shipped.release(tool) if isinstance(tool, str) else None
    if release is None:
        return Check(
            "version",
            "unproven",
            f"made by gpuhealth {tool!r}, a version this gpuhealth ({__version__}) does not know: "
            "its rules and evidence minimums are not here",
            EXIT_VERSION_UNCHECKABLE,
            "verify with that gpuhealth version or a newer one",
        )
    if release.schema_version != schema:
        return Check(
            "version",
            "fail",
            f"the record says gpuhealth {tool} made it, but that version wrote schema "
            f"{release.schema_version} records, not {schema}: the version was changed",
        )
    return Check("version", "pass", f"made by gpuhealth {tool} (schema {schema})")


def _signature_checks(data: Mapping[str, Any], key: str | None) -> tuple[str | None, list[Check]]:
    block = data.get("signature")
    if block is None:
        why = "no signature: nothing shows who wrote the record or that it is unchanged"
        return None, [
            Check("signed", "unproven", why, EXIT_UNSIGNED),
            Check("signature", "n/a", "unsigned"),
            Check("signer", "n/a", "unsigned"),
        ]
    claimed = block.get("key_fingerprint") if isinstance(block, Mapping) else None
    signer = claimed if isinstance(claimed, str) else None
    when = block.get("signed_at") if isinstance(block, Mapping) else None
    checks = [Check("signed", "pass", f"signature by {signer or '?'}, signed at {when}")]
    problem = check_signature(data)
    if problem is not None:
        checks += [
            Check("signature", "fail", problem),
            Check("signer", "n/a", "the signature is not valid"),
        ]
        return signer, checks
    method = canonical_method(data)
    checks.append(
        Check("signature", "pass", f"the record is unchanged since it was signed ({method} bytes)")
    )
    checks.append(_signer_check(signer or "", key))
    return signer, checks


def _signer_check(signer: str, key: str | None) -> Check:
    if key is not None:
        if signer == key:
            return Check("signer", "pass", f"signed by the given key {key}")
        return Check("signer", "fail", f"signed by {signer}, not by the given key {key}")
    try:
        pinned = pinned_fingerprints()
    except GpuHealthError as exc:
        # the error says "the trust store cannot be read: <where>: <why> — <fix>" itself
        return Check("signer", "unproven", exc.one_line(), EXIT_TRUST_STORE)
    if signer in pinned:
        return Check("signer", "pass", f"signed by the pinned key {signer}")
    if not pinned:
        why = f"signed by {signer}, and no key was given (--key) or pinned"
    else:
        why = f"signed by {signer}, which is not one of the {len(pinned)} pinned key(s)"
    return Check("signer", "unproven", why, EXIT_SIGNER_UNTRUSTED)


def _evidence_check(record: RunRecord) -> Check:
    problems = evidence_problems(record)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Check("evidence", "fail", f"{first.test}: {first.problem}{more}")
    if record.tool_version in LEGACY_VERSIONS:
        return Check(
            "evidence",
            "unproven",
            f"a record of gpuhealth {record.tool_version}: its evidence is consistent, but its "
            "preset's minimums were not recorded then",
            EXIT_VERSION_UNCHECKABLE,
        )
    passed = sum(t.status == "passed" for t in record.tests)
    return Check(
        "evidence",
        "pass",
        f"every passed test ({passed}) carries its evidence within the {record.preset} "
        "preset's minimums",
    )


def _card_check(record: RunRecord) -> Check:
    if "sim" in (record.backend, record.identity.backend):
        spec = f" (spec {record.identity.sim_card})" if record.identity.sim_card else ""
        return Check(
            "card",
            "unproven",
            f"a SIMULATED card{spec}: measured on gpuhealth's simulated backend; no GPU was tested",
            EXIT_SIMULATED,
        )
    return Check("card", "pass", f"a real GPU ({record.backend} backend)")


# --- output -----------------------------------------------------------------------------------


def format_text(result: VerifyResult) -> str:
    lines = [result.verdict]
    if result.banner and result.banner not in lines[0]:  # other rules: always said up front
        lines.append(f"graded under other rules than gpuhealth's: {result.banner}")
    if result.exit_code != EXIT_OK:
        lines.append(f"what to do: {result.action}")
    if result.recheck is not None:
        lines.append(result.recheck.verdict)
    lines.append(f"{result.source}: {result.kind or 'unreadable'}")
    if result.record_sha256:
        lines.append(f"record SHA-256: {result.record_sha256}")
    width = max(len(c.name) for c in result.checks)
    for c in result.checks:
        lines.append(f"  {c.name:<{width}}  {c.status:<8}  {c.detail}")
    if result.recheck is not None:
        lines.append("")
        lines.extend(format_recheck(result.recheck))
    return "\n".join(lines) + "\n"
