"""Each check of gpuhealth/certificate/verify.py, in-process, on stored records: fast (no sim grade,
no CLI), so that the mutation benchmark can run it per mutant (bench/mutation.py).

The record: a real H100's standard record (tests/data/runs) with this version's pcie test,
readiness and memory clear grafted from the stored sim standard record (tests/verifykit.py,
tests/data/current/), judged by this gpuhealth and signed in the test with a key generated once per
module (17 ms). Each test changes one thing (the file, one field of the signed data re-signed,
the trust store, a check's inputs) and asserts the exact check: name, status, detail, exit code.
tests/test_verify.py has the command line's view of the same rules and the byte-flip sweep.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from verifykit import real_record, resigned_data

from gpuhealth import __version__
from gpuhealth.certificate.checks import Check
from gpuhealth.certificate.keys import SigningKey, generate_key, pin, pinned_file
from gpuhealth.certificate.report import write_reports
from gpuhealth.certificate.signing import data_sha256, sign_record
from gpuhealth.certificate.verify import (
    VerifyResult,
    _card_check,
    _evidence_check,
    _signature_checks,
    _signer_check,
    _version_check,
    format_text,
    load_report,
    verify_report,
    with_recheck,
)
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
)
from gpuhealth.judge.grading import DEFAULT_POLICY, load_policy
from gpuhealth.measure.recheck import MetricRecheck, RecheckResult
from gpuhealth.models import (
    SCHEMA_VERSION,
    RunRecord,
    record_from_json,
    record_to_json,
)

RUNS = Path(__file__).resolve().parent / "data" / "runs"
LEGACY_REAL = RUNS / "h100-second-card-standard-2026-11-26.json"  # gpuhealth 0.1.0, cuda
SIGNED_AT = "2026-11-27T00:00:00+00:00"  # what resigned_data writes too
RUN_ID = "20261126T052923-1653823054517"
CARD = "NVIDIA H100 80GB HBM3"
SERIAL = "1653823054517"
UUID = "GPU-b792ced0-3d3b-f6c0-d031-bbef20bfd83d"
STRANGER = "SHA256:" + "0" * 32  # a well-formed fingerprint of no key here
RECHECK_PASS = (
    Check("identity", "pass", "the same card"),
    Check("counters", "pass", "no worse"),
)


@pytest.fixture(scope="module")
def seller(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return generate_key(tmp_path_factory.mktemp("seller") / "keys" / "signing.key")


@pytest.fixture(scope="module")
def record() -> RunRecord:
    """The real card's record of this version, judged (grade B), unsigned."""
    return real_record()


@pytest.fixture(scope="module")
def signed_text(record: RunRecord, seller: SigningKey) -> str:
    return record_to_json(sign_record(record, seller, SIGNED_AT))


@pytest.fixture(scope="module")
def run_json(signed_text: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("run") / "run.json"
    path.write_text(signed_text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def report_html(
    record: RunRecord, seller: SigningKey, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    folder = tmp_path_factory.mktemp("page")
    write_reports(sign_record(record, seller, SIGNED_AT), folder)
    return folder / "report.html"


@pytest.fixture(autouse=True)
def no_pinned_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUHEALTH_CONFIG_DIR", str(tmp_path / "config"))


def write(tmp_path: Path, content: str | bytes, name: str = "report.json") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def edited(signed_text: str, seller: SigningKey, **fields: Any) -> dict[str, Any]:
    """The signed data with fields replaced, signed again by the seller (what a seller can do)."""
    data = json.loads(signed_text)
    data.update(fields)
    return resigned_data(data, seller)


def readable_fail(tmp_path: Path, content: str | bytes, name: str = "report.json") -> str:
    loaded, check = load_report(write(tmp_path, content, name))
    assert loaded is None and check.name == "readable" and check.status == "fail", check
    assert check.exit_code is None and check.action is None
    return check.detail


# --- readable: the file is JSON, or a page with exactly one embedded record -----------------------


def test_a_run_json_is_read_as_it_is(run_json: Path, signed_text: str) -> None:
    loaded, check = load_report(run_json)
    assert check == Check("readable", "pass", "JSON run record")
    assert loaded is not None
    assert loaded.kind == "JSON run record" and loaded.text == signed_text
    assert loaded.data == json.loads(signed_text)


@pytest.mark.parametrize("lead", [" ", "\t", "\r", "\n", " \n\t\r "])
def test_whitespace_before_the_json_is_still_json(tmp_path: Path, lead: str) -> None:
    assert readable_fail(tmp_path, lead + "[1]") == (
        "the file is not a JSON object (a gpuhealth run record)"
    )


def test_a_byte_order_mark_is_read_as_json_and_refused_by_the_parser(tmp_path: Path) -> None:
    assert readable_fail(tmp_path, "\ufeff{}") == (
        "the file is not a valid record (not JSON (Unexpected UTF-8 BOM (decode using "
        "utf-8-sig) at line 1 column 1))"
    )


@pytest.mark.parametrize("content", ["X{}", "x[1]", "a", ""])
def test_anything_else_before_the_json_is_not_a_report(tmp_path: Path, content: str) -> None:
    assert readable_fail(tmp_path, content) == (
        "not a gpuhealth report: neither JSON nor an HTML page with an embedded run record "
        '(<script type="application/json" id="gpuhealth-run-record">)'
    )


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("[1, 2]", "the file is not a JSON object (a gpuhealth run record)"),
        ('"text"', "not a gpuhealth report"),  # a JSON string is not read as JSON at all
        ("{}", "the file is JSON but not a gpuhealth run record (no schema_version)"),
        ('{"run_id": "r"}', "the file is JSON but not a gpuhealth run record (no schema_version)"),
        (
            '{"schema_version": 2}',
            "the file is JSON but not a gpuhealth run record (no schema_version)",
        ),
        (
            '{"schema_version": 2, "schema_version": 2}',
            "the file is not a valid record (schema_version: duplicate key (expected each key "
            "once in an object))",
        ),
        (
            "[" * 65 + "]" * 65,
            "the file is not a valid record (expected JSON nested at most 64 deep (found 65))",
        ),
        ('{"a":', "the file is not a valid record (not JSON (Expecting value at line 1 column 6))"),
    ],
)
def test_json_that_is_not_a_run_record(tmp_path: Path, content: str, detail: str) -> None:
    assert readable_fail(tmp_path, content).startswith(detail)


def test_a_json_record_needs_only_schema_version_and_run_id_to_be_read(tmp_path: Path) -> None:
    loaded, check = load_report(write(tmp_path, '{"schema_version": 2, "run_id": "r"}'))
    assert check == Check("readable", "pass", "JSON run record")
    assert loaded is not None and loaded.data == {"schema_version": 2, "run_id": "r"}


def test_a_missing_file_says_why(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    loaded, check = load_report(path)
    assert loaded is None
    assert check == Check("readable", "fail", f"cannot read {path} (No such file or directory)")


def test_a_folder_says_why(tmp_path: Path) -> None:
    loaded, check = load_report(tmp_path)
    assert loaded is None
    assert check == Check("readable", "fail", f"cannot read {tmp_path} (Is a directory)")


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, b'{"run_id": "\xff"}')
    assert load_report(path) == (
        None,
        Check("readable", "fail", f"{path} is not UTF-8 text: not a report"),
    )


def page(*scripts: str) -> str:
    return "<html><body><h1>certificate</h1>" + "".join(scripts) + "</body></html>"


def embedded(body: str, attrs: str = ' type="application/json" id="gpuhealth-run-record"') -> str:
    return f"<script{attrs}>{body}</script>"


RECORD_JSON = '{"schema_version": 2, "run_id": "r"}'


def test_a_page_with_one_embedded_record(tmp_path: Path) -> None:
    text = page(embedded("var x = 1;", ""), embedded(RECORD_JSON), embedded("{}", ' id="other"'))
    loaded, check = load_report(write(tmp_path, text, "report.html"))
    assert check == Check("readable", "pass", "HTML report")
    assert loaded is not None and loaded.kind == "HTML report" and loaded.text == text
    assert loaded.data == {"schema_version": 2, "run_id": "r"}


@pytest.mark.parametrize(
    ("scripts", "detail"),
    [
        ((), "not a gpuhealth report: neither JSON nor an HTML page with an embedded run record"),
        ((embedded(RECORD_JSON, ' id="other-record"'),), "not a gpuhealth report: neither JSON"),
        (
            (embedded(RECORD_JSON), embedded(RECORD_JSON)),
            "2 embedded run records in one page: which one is meant is unclear",
        ),
        (
            (embedded(RECORD_JSON), embedded(RECORD_JSON), embedded(RECORD_JSON)),
            "3 embedded run records in one page: which one is meant is unclear",
        ),
        ((embedded("[1]"),), "the embedded record is not a JSON object (a gpuhealth run record)"),
        (
            (embedded('{"run_id": "r"}'),),
            "the embedded record is JSON but not a gpuhealth run record (no schema_version)",
        ),
        (
            (embedded('{"run_id": 1, "run_id": 2}'),),
            "the embedded record is not a valid record (run_id: duplicate key (expected each key "
            "once in an object))",
        ),
    ],
)
def test_a_page_without_exactly_one_record(
    tmp_path: Path, scripts: tuple[str, ...], detail: str
) -> None:
    assert readable_fail(tmp_path, page(*scripts), "report.html").startswith(detail)


# --- version: the schema, and the gpuhealth version that made the record --------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"schema_version": SCHEMA_VERSION, "tool_version": __version__},
            Check("version", "pass", f"made by gpuhealth {__version__} (schema {SCHEMA_VERSION})"),
        ),
        (
            {"schema_version": 1, "tool_version": "0.1.0"},
            Check("version", "pass", "made by gpuhealth 0.1.0 (schema 1)"),
        ),
        (
            {"schema_version": 2, "tool_version": "0.1.0"},
            Check(
                "version",
                "fail",
                "the record says gpuhealth 0.1.0 made it, but that version wrote schema 1 "
                "records, not 2: the version was changed",
            ),
        ),
        (
            {"schema_version": 1, "tool_version": __version__},
            Check(
                "version",
                "fail",
                f"the record says gpuhealth {__version__} made it, but that version wrote schema "
                f"{SCHEMA_VERSION} records, not 1: the version was changed",
            ),
        ),
        (
            {"schema_version": "2", "tool_version": __version__},
            Check("version", "fail", "schema_version '2' is not a number"),
        ),
        (
            {"schema_version": True, "tool_version": __version__},
            Check("version", "fail", "schema_version True is not a number"),
        ),
        (
            {"tool_version": __version__},
            Check("version", "fail", "schema_version None is not a number"),
        ),
        (
            {"schema_version": SCHEMA_VERSION + 1, "tool_version": __version__},
            Check(
                "version",
                "unproven",
                f"record schema version {SCHEMA_VERSION + 1}: written by a newer gpuhealth than "
                f"this one ({__version__}, schema {SCHEMA_VERSION})",
                EXIT_VERSION_UNCHECKABLE,
                "update gpuhealth (pip install -U gpuhealth) and verify again",
            ),
        ),
        (
            {"schema_version": SCHEMA_VERSION, "tool_version": "0.0.9"},
            Check(
                "version",
                "unproven",
                f"made by gpuhealth '0.0.9', a version this gpuhealth ({__version__}) does not "
                "know: its rules and evidence minimums are not here",
                EXIT_VERSION_UNCHECKABLE,
                "verify with that gpuhealth version or a newer one",
            ),
        ),
        (  # not text, not even hashable: no version is looked up
            {"schema_version": SCHEMA_VERSION, "tool_version": [__version__]},
            Check(
                "version",
                "unproven",
                f"made by gpuhealth ['{__version__}'], a version this gpuhealth ({__version__}) "
                "does not know: its rules and evidence minimums are not here",
                EXIT_VERSION_UNCHECKABLE,
                "verify with that gpuhealth version or a newer one",
            ),
        ),
        (
            {"schema_version": SCHEMA_VERSION, "tool_version": 2},
            Check(
                "version",
                "unproven",
                f"made by gpuhealth 2, a version this gpuhealth ({__version__}) does not "
                "know: its rules and evidence minimums are not here",
                EXIT_VERSION_UNCHECKABLE,
                "verify with that gpuhealth version or a newer one",
            ),
        ),
    ],
)
def test_the_version_check(data: dict[str, Any], expected: Check) -> None:
    assert _version_check(data) == expected


# --- signed, signature, signer --------------------------------------------------------------------


UNSIGNED = [
    Check(
        "signed",
        "unproven",
        "no signature: nothing shows who wrote the record or that it is unchanged",
        EXIT_UNSIGNED,
    ),
    Check("signature", "n/a", "unsigned"),
    Check("signer", "n/a", "unsigned"),
]


def test_an_unsigned_record(signed_text: str) -> None:
    data = json.loads(signed_text)
    del data["signature"]
    assert _signature_checks(data, None) == (None, UNSIGNED)
    data["signature"] = None  # written out as null: the same
    assert _signature_checks(data, STRANGER) == (None, UNSIGNED)


def test_a_signed_record_against_the_given_key(signed_text: str, seller: SigningKey) -> None:
    fp = seller.fingerprint
    assert _signature_checks(json.loads(signed_text), fp) == (
        fp,
        [
            Check("signed", "pass", f"signature by {fp}, signed at {SIGNED_AT}"),
            Check(
                "signature", "pass", "the record is unchanged since it was signed (rfc8785 bytes)"
            ),
            Check("signer", "pass", f"signed by the given key {fp}"),
        ],
    )


def test_a_changed_value_fails_the_signature(signed_text: str, seller: SigningKey) -> None:
    data = json.loads(signed_text)
    data["run_id"] += "x"
    signer, checks = _signature_checks(data, seller.fingerprint)
    assert signer == seller.fingerprint
    assert checks == [
        Check("signed", "pass", f"signature by {seller.fingerprint}, signed at {SIGNED_AT}"),
        Check(
            "signature",
            "fail",
            "the signature does not match the content: the record was changed after it was signed",
        ),
        Check("signer", "n/a", "the signature is not valid"),
    ]


def test_a_signature_block_that_is_not_an_object(signed_text: str) -> None:
    data = json.loads(signed_text)
    data["signature"] = "trust me"
    assert _signature_checks(data, None) == (
        None,
        [
            Check("signed", "pass", "signature by ?, signed at None"),
            Check("signature", "fail", "no signature block"),
            Check("signer", "n/a", "the signature is not valid"),
        ],
    )


def test_a_fingerprint_that_is_not_text(signed_text: str, seller: SigningKey) -> None:
    data = json.loads(signed_text)
    data["signature"]["key_fingerprint"] = 7
    signer, checks = _signature_checks(data, None)
    assert signer is None
    assert checks[0] == Check("signed", "pass", f"signature by ?, signed at {SIGNED_AT}")
    assert checks[1] == Check(
        "signature",
        "fail",
        f"the fingerprint 7 does not belong to the embedded public key (which is "
        f"{seller.fingerprint})",
    )


def test_a_record_signed_the_0_1_0_way_names_its_bytes(seller: SigningKey) -> None:
    import base64

    data = json.loads(LEGACY_REAL.read_text(encoding="utf-8"))
    data["signature"] = {
        "algorithm": "ed25519",
        "public_key": seller.public_b64,
        "key_fingerprint": seller.fingerprint,
        "signed_at": "2026-11-26T06:00:00+00:00",
    }
    legacy = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    data["signature"]["value"] = base64.b64encode(seller.private.sign(legacy.encode())).decode()
    assert _signature_checks(data, seller.fingerprint)[1][1] == Check(
        "signature",
        "pass",
        "the record is unchanged since it was signed (python-sorted-json (gpuhealth 0.1.0) bytes)",
    )


def test_the_given_key_decides_the_signer() -> None:
    assert _signer_check("SHA256:a", "SHA256:a") == Check(
        "signer", "pass", "signed by the given key SHA256:a"
    )
    assert _signer_check("SHA256:a", "SHA256:b") == Check(
        "signer", "fail", "signed by SHA256:a, not by the given key SHA256:b"
    )
    for part in ("SHA256:a", "SHA256:", ""):  # the whole fingerprint, never a part of it
        assert _signer_check("SHA256:ab", part).status == "fail"
    pin(STRANGER)  # a given key is the answer: the pinned ones are not asked
    assert _signer_check(STRANGER, "SHA256:b").status == "fail"


def test_no_key_given_and_none_pinned() -> None:
    assert _signer_check(STRANGER, None) == Check(
        "signer",
        "unproven",
        f"signed by {STRANGER}, and no key was given (--key) or pinned",
        EXIT_SIGNER_UNTRUSTED,
    )


def test_pinned_keys(seller: SigningKey) -> None:
    pin(STRANGER)
    assert _signer_check(seller.fingerprint, None) == Check(
        "signer",
        "unproven",
        f"signed by {seller.fingerprint}, which is not one of the 1 pinned key(s)",
        EXIT_SIGNER_UNTRUSTED,
    )
    pin("SHA256:" + "1" * 32)
    assert _signer_check(seller.fingerprint, None).detail.endswith(
        "which is not one of the 2 pinned key(s)"
    )
    pin(seller.fingerprint)
    assert _signer_check(seller.fingerprint, None) == Check(
        "signer", "pass", f"signed by the pinned key {seller.fingerprint}"
    )


def test_a_trust_store_that_cannot_be_read_is_not_nothing_pinned(seller: SigningKey) -> None:
    pin(STRANGER)
    store = pinned_file()
    store.write_text("not a fingerprint\n", encoding="utf-8")
    assert _signer_check(seller.fingerprint, None) == Check(
        "signer",
        "unproven",
        f"the trust store cannot be read: {store}:1: expected a fingerprint SHA256:<32 hex "
        "digits> and an optional '# note', found 'not a fingerprint' — fix it or remove it",
        EXIT_TRUST_STORE,
    )


# --- evidence -------------------------------------------------------------------------------------


def test_complete_evidence_passes(record: RunRecord) -> None:
    assert _evidence_check(record) == Check(
        "evidence",
        "pass",
        "every passed test (7) carries its evidence within the standard preset's minimums",
    )


def test_missing_evidence_fails_with_the_first_problem(record: RunRecord) -> None:
    readiness = "run: complete, but its readiness is missing (every grade since 0.2.0 records it)"
    one = replace(record, readiness=None)
    assert _evidence_check(one) == Check("evidence", "fail", readiness)
    two = replace(one, memory_clear=None)
    assert _evidence_check(two) == Check("evidence", "fail", f"{readiness} (and 1 more)")
    three = replace(two, tests=record.tests[1:])  # no pcie test
    assert _evidence_check(three) == Check(
        "evidence", "fail", "run: complete, but 1 of the 7 tests are missing (pcie) (and 2 more)"
    )


def test_a_0_1_0_record_has_no_minimums_to_hold() -> None:
    legacy = record_from_json(LEGACY_REAL.read_text(encoding="utf-8"), str(LEGACY_REAL))
    assert _evidence_check(legacy) == Check(
        "evidence",
        "unproven",
        "a record of gpuhealth 0.1.0: its evidence is consistent, but its preset's minimums "
        "were not recorded then",
        EXIT_VERSION_UNCHECKABLE,
    )


# --- card: a simulated card is never a GPU --------------------------------------------------------


SIMULATED = "a SIMULATED card{}: measured on gpuhealth's simulated backend; no GPU was tested"


def test_a_real_card(record: RunRecord) -> None:
    assert _card_check(record) == Check("card", "pass", "a real GPU (cuda backend)")


@pytest.mark.parametrize(
    ("backend", "identity_backend", "sim_card", "spec"),
    [
        ("sim", "sim", "h100-sxm5-80gb", " (spec h100-sxm5-80gb)"),
        ("sim", "sim", None, ""),
        ("sim", "cuda", None, ""),  # either says sim: simulated
        ("cuda", "sim", "h200-sxm-141gb", " (spec h200-sxm-141gb)"),
    ],
)
def test_a_simulated_card(
    record: RunRecord, backend: str, identity_backend: str, sim_card: str | None, spec: str
) -> None:
    identity = replace(record.identity, backend=identity_backend, sim_card=sim_card)
    sim = replace(record, backend=backend, identity=identity)
    assert _card_check(sim) == Check("card", "unproven", SIMULATED.format(spec), EXIT_SIMULATED)


# --- the whole verification of one file -----------------------------------------------------------


def valid_checks(fp: str, readable: str, page_check: Check) -> list[dict[str, Any]]:
    checks = [
        Check("readable", "pass", readable),
        Check("version", "pass", f"made by gpuhealth {__version__} (schema {SCHEMA_VERSION})"),
        Check(
            "schema", "pass", f"a valid run record: run {RUN_ID}, {CARD} serial {SERIAL}, grade B"
        ),
        Check("signed", "pass", f"signature by {fp}, signed at {SIGNED_AT}"),
        Check("signature", "pass", "the record is unchanged since it was signed (rfc8785 bytes)"),
        Check("signer", "pass", f"signed by the given key {fp}"),
        Check(
            "evidence",
            "pass",
            "every passed test (7) carries its evidence within the standard preset's minimums",
        ),
        page_check,
        Check("rules", "pass", f"judged under the shipped rules of gpuhealth {__version__}"),
        Check(
            "judgement",
            "pass",
            "judged again from the measurements: the same 18 comparisons, 2 findings and grade B",
        ),
        Check("shipped", "pass", f"the shipped rules of gpuhealth {__version__} give B too"),
        Check("card", "pass", "a real GPU (cuda backend)"),
    ]
    return [
        {"name": c.name, "status": c.status, "detail": c.detail, "exit_code": None, "action": None}
        for c in checks
    ]


def test_a_real_cards_run_json_is_valid(run_json: Path, seller: SigningKey) -> None:
    fp = seller.fingerprint
    result = verify_report(run_json, fp)
    summary = (
        f"grade B for {CARD} serial {SERIAL}; signed by the given key {fp}; unchanged, evidence "
        "complete, the grade follows from the measurements under gpuhealth's shipped rules"
    )
    sha = data_sha256(json.loads(run_json.read_text(encoding="utf-8")))
    assert sha is not None and len(sha) == 64
    assert result.to_json() == {
        "source": str(run_json),
        "kind": "JSON run record",
        "exit_code": EXIT_OK,
        "verdict": f"VALID: {summary}",
        "action": "nothing: the grade is proven as far as a record can prove it; --recheck on "
        "the machine with the card tests the card itself",
        "banner": None,
        "backend": "cuda",
        "simulated": False,
        "run_id": RUN_ID,
        "card": {"name": CARD, "serial": SERIAL, "uuid": UUID},
        "grade": "B",
        "signer": fp,
        "record_sha256": sha,
        "checks": valid_checks(
            fp, "JSON run record", Check("page", "n/a", "a run.json: no page to compare")
        ),
        "recheck": None,
    }
    assert result.record is not None and result.record.run_id == RUN_ID
    assert result.record.signature is not None and result.record.signature.key_fingerprint == fp
    checks = "".join(
        f"  {c['name']:<9}  {c['status']:<8}  {c['detail']}\n" for c in result.to_json()["checks"]
    )
    assert format_text(result) == (
        f"VALID: {summary}\n{run_json}: JSON run record\nrecord SHA-256: {sha}\n{checks}"
    )


def test_a_real_cards_page_is_valid(report_html: Path, seller: SigningKey) -> None:
    result = verify_report(report_html, seller.fingerprint)
    page_pass = Check(
        "page",
        "pass",
        "the page is exactly the certificate its signed record renders: what it shows is what "
        "was signed",
    )
    assert result.kind == "HTML report" and result.exit_code == EXIT_OK
    assert result.to_json()["checks"] == valid_checks(seller.fingerprint, "HTML report", page_pass)


def test_a_changed_page_fails_the_page_check(
    report_html: Path, seller: SigningKey, tmp_path: Path
) -> None:
    text = report_html.read_text(encoding="utf-8")
    changed = write(tmp_path, text.replace("<h1", "<h1 hidden", 1), "report.html")
    result = verify_report(changed, seller.fingerprint)
    page_check = result.check("page")
    assert page_check is not None and page_check.status == "fail", page_check
    assert result.exit_code == EXIT_BAD_CARD
    assert [c.name for c in result.checks if c.status != "pass"] == ["page"]


def test_an_unreadable_file_is_the_readable_check_alone(tmp_path: Path) -> None:
    path = write(tmp_path, "[1]")
    assert verify_report(path) == VerifyResult(
        str(path),
        None,
        (Check("readable", "fail", "the file is not a JSON object (a gpuhealth run record)"),),
    )


def test_a_record_that_does_not_validate_has_no_record_checks(
    signed_text: str, seller: SigningKey, tmp_path: Path
) -> None:
    data = edited(signed_text, seller, preset=5)
    path = write(tmp_path, json.dumps(data))
    result = verify_report(path, seller.fingerprint)
    assert [(c.name, c.status) for c in result.checks] == [
        ("readable", "pass"),
        ("version", "pass"),
        ("schema", "fail"),
        ("signed", "pass"),
        ("signature", "pass"),
        ("signer", "pass"),
    ]
    schema = result.check("schema")
    assert schema == Check(
        "schema", "fail", f"{path}: preset: Input should be a valid string (got 5)"
    )  # the file named, then the field and what was expected
    assert result.record is None and result.banner is None
    assert result.signer == seller.fingerprint and result.record_sha256 == data_sha256(data)
    assert result.exit_code == EXIT_BAD_CARD
    assert result.verdict == f"INVALID: schema: {schema.detail}"


def test_a_newer_schema_is_not_read_at_all(
    signed_text: str, seller: SigningKey, tmp_path: Path
) -> None:
    data = edited(signed_text, seller, schema_version=SCHEMA_VERSION + 1)
    result = verify_report(write(tmp_path, json.dumps(data)), seller.fingerprint)
    assert [c.name for c in result.checks] == [
        "readable",
        "version",
        "signed",
        "signature",
        "signer",
    ]
    assert result.exit_code == EXIT_VERSION_UNCHECKABLE and result.record is None


def test_an_unknown_version_of_a_readable_schema_is_still_read(
    signed_text: str, seller: SigningKey, tmp_path: Path
) -> None:
    data = edited(signed_text, seller, tool_version="0.0.9")
    result = verify_report(write(tmp_path, json.dumps(data)), seller.fingerprint)
    statuses = {c.name: c.status for c in result.checks}
    assert statuses["version"] == "unproven" and statuses["schema"] == "pass"
    assert statuses["card"] == "pass" and result.record is not None
    assert result.exit_code == EXIT_VERSION_UNCHECKABLE


def test_a_schema_version_that_is_not_a_number_is_still_validated(
    signed_text: str, seller: SigningKey, tmp_path: Path
) -> None:
    data = edited(signed_text, seller, schema_version="2")
    result = verify_report(write(tmp_path, json.dumps(data)), seller.fingerprint)
    assert [(c.name, c.status) for c in result.checks[:3]] == [
        ("readable", "pass"),
        ("version", "fail"),
        ("schema", "fail"),
    ]


def test_an_unsigned_record_is_judged_all_the_same(record: RunRecord, tmp_path: Path) -> None:
    result = verify_report(write(tmp_path, record_to_json(record)), None)
    assert [(c.name, c.status) for c in result.checks] == [
        ("readable", "pass"),
        ("version", "pass"),
        ("schema", "pass"),
        ("signed", "unproven"),
        ("signature", "n/a"),
        ("signer", "n/a"),
        ("evidence", "pass"),
        ("page", "n/a"),
        ("rules", "pass"),
        ("judgement", "pass"),
        ("shipped", "pass"),
        ("card", "pass"),
    ]
    assert result.signer is None and result.exit_code == EXIT_UNSIGNED


def test_a_record_never_judged(record: RunRecord, seller: SigningKey, tmp_path: Path) -> None:
    bare = sign_record(replace(record, analysis=None, grade=None, rules=None), seller, SIGNED_AT)
    result = verify_report(write(tmp_path, record_to_json(bare)), seller.fingerprint)
    schema = result.check("schema")
    assert schema is not None and schema.detail == (
        f"a valid run record: run {RUN_ID}, {CARD} serial {SERIAL}, grade none"
    )
    assert result.exit_code == EXIT_NOT_JUDGEABLE
    assert [c.name for c in result.checks if c.status == "unproven"] == [
        "rules",
        "judgement",
        "shipped",
    ]


def test_other_rules_are_said_first(record: RunRecord, seller: SigningKey, tmp_path: Path) -> None:
    """The shipped policy renamed, an unverified identity graded C instead of B: stricter."""
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    block = re.search(r'id = "identity-unverified"\n(.*?)grade = "B"', text, re.S)
    assert block is not None
    strict = text.replace(block.group(0), block.group(0)[:-3] + '"C"', 1).replace(
        'name = "gpuhealth-default"', 'name = "shop-strict"', 1
    )
    policy = write(tmp_path, strict, "strict.toml")
    signed = sign_record(real_record(policy=load_policy(policy)), seller, SIGNED_AT)
    result = verify_report(write(tmp_path, record_to_json(signed)), seller.fingerprint)
    assert result.banner is not None
    assert result.banner.startswith("graded C under a custom policy 'shop-strict v1' (sha256 ")
    assert result.exit_code == EXIT_OK and result.verdict == f"VALID: {result.banner}"


def test_a_simulated_card_is_said_first(seller: SigningKey, tmp_path: Path) -> None:
    sim_path = Path(__file__).resolve().parent / "data" / "current" / "sim-h100-standard.json"
    sim = record_from_json(sim_path.read_text(encoding="utf-8"), str(sim_path))
    signed = sign_record(
        replace(sim, identity=replace(sim.identity, serial=None)), seller, SIGNED_AT
    )
    result = verify_report(write(tmp_path, record_to_json(signed)), seller.fingerprint)
    assert result.check("card") == Check(
        "card", "unproven", SIMULATED.format(" (spec h100-sxm5-80gb)"), EXIT_SIMULATED
    )
    assert result.check("schema") == Check(
        "schema",
        "pass",
        f"a valid run record: run {sim.run_id}, {sim.identity.name} serial n/a, grade A",
    )
    assert result.exit_code == EXIT_SIMULATED and result.simulated
    assert result.verdict == (
        f"SIMULATED CARD, NOT A GPU: grade A for {sim.identity.name} serial n/a — measured on a "
        f"simulated card, no GPU was tested; signed by the given key {seller.fingerprint}; "
        "unchanged, evidence complete, the grade follows from the measurements under "
        "gpuhealth's shipped rules"
    )


# --- the result: what is said, built by hand ------------------------------------------------------


def result_of(record: RunRecord | None, *checks: Check, **more: Any) -> VerifyResult:
    return VerifyResult("report.json", "JSON run record", checks, record, **more)


def test_check_finds_the_first_of_its_name() -> None:
    first, second = Check("page", "n/a", "one"), Check("page", "fail", "two")
    result = result_of(None, Check("readable", "pass", "JSON run record"), first, second)
    assert result.check("page") is first
    assert result.check("card") is None


def test_the_summary_without_a_record_or_a_trusted_signer(record: RunRecord) -> None:
    readable = Check("readable", "pass", "JSON run record")
    assert result_of(None, readable).verdict == "VALID: no record"
    ungraded = replace(record, grade=None, identity=replace(record.identity, serial=""))
    unsigned = Check("signer", "n/a", "unsigned")
    assert result_of(ungraded, readable, unsigned).verdict == (
        f"VALID: grade none for {CARD} serial n/a; ; unchanged, evidence complete, the grade "
        "follows from the measurements under gpuhealth's shipped rules"
    )


def test_the_json_of_an_unreadable_file() -> None:
    result = VerifyResult("x.json", None, (Check("readable", "fail", "not a report"),))
    assert result.to_json() == {
        "source": "x.json",
        "kind": None,
        "exit_code": EXIT_USAGE,
        "verdict": "UNREADABLE: readable: not a report",
        "action": "ask the seller for the run.json or report.html gpuhealth wrote",
        "banner": None,
        "backend": None,
        "simulated": False,
        "run_id": None,
        "card": None,
        "grade": None,
        "signer": None,
        "record_sha256": None,
        "checks": [
            {
                "name": "readable",
                "status": "fail",
                "detail": "not a report",
                "exit_code": None,
                "action": None,
            }
        ],
        "recheck": None,
    }
    assert format_text(result) == (
        "UNREADABLE: readable: not a report\n"
        "what to do: ask the seller for the run.json or report.html gpuhealth wrote\n"
        "x.json: unreadable\n"
        "  readable  fail      not a report\n"
    )


def test_the_json_of_a_not_proven_check_names_its_code_and_action(record: RunRecord) -> None:
    version = Check("version", "unproven", "too new", EXIT_VERSION_UNCHECKABLE, "update")
    data = result_of(replace(record, grade=None), version, record_sha256="ab").to_json()
    assert data["checks"] == [
        {
            "name": "version",
            "status": "unproven",
            "detail": "too new",
            "exit_code": EXIT_VERSION_UNCHECKABLE,
            "action": "update",
        }
    ]
    assert data["grade"] is None and data["record_sha256"] == "ab" and data["action"] == "update"
    assert data["card"] == {"name": CARD, "serial": SERIAL, "uuid": UUID}


def test_a_banner_is_said_in_the_text_once(record: RunRecord) -> None:
    shipped = Check("shipped", "pass", "stricter")
    said_first = result_of(record, shipped, banner="graded C under a custom policy")
    assert format_text(said_first).splitlines()[:2] == [
        "VALID: graded C under a custom policy",
        "report.json: JSON run record",
    ]
    not_proven = result_of(
        record,
        shipped,
        Check("signer", "unproven", "signed by X", EXIT_SIGNER_UNTRUSTED),
        banner="graded C under a custom policy",
    )
    assert format_text(not_proven).splitlines()[:4] == [
        "NOT PROVEN (signer not trusted): signer: signed by X",
        "graded under other rules than gpuhealth's: graded C under a custom policy",
        "what to do: get the seller's public key from the seller, not from the report, then "
        "verify with --key FILE or pin it (gpuhealth keys pin FILE)",
        "report.json: JSON run record",
    ]


def test_the_check_lines_line_up_on_the_longest_name() -> None:
    result = result_of(
        None,
        Check("readable", "pass", "JSON run record"),
        Check("a", "n/a", "short"),
    )
    assert format_text(result).splitlines()[-2:] == [
        "  readable  pass      JSON run record",
        "  a         n/a       short",
    ]


def recheck_of(*checks: Check) -> RecheckResult:
    metric = MetricRecheck("bandwidth.triad_gbs", "GB/s", 3000.0, 2990.0, -0.5, 0.6, "consistent")
    return RecheckResult(checks, (metric,))


def test_a_consistent_recheck_is_said_after_the_verdict(record: RunRecord) -> None:
    before = result_of(record, Check("card", "pass", "a real GPU (cuda backend)"))
    recheck = recheck_of(*RECHECK_PASS)
    result = with_recheck(before, recheck)
    assert result == replace(before, recheck=recheck) and before.recheck is None
    assert result.exit_code == EXIT_OK
    lines = format_text(result).splitlines()
    assert lines[1:4] == [
        "RECHECK CONSISTENT: same card; health counters no worse",
        "report.json: JSON run record",
        "  card  pass      a real GPU (cuda backend)",
    ]
    assert lines[4:7] == [
        "",
        "  identity  pass      the same card",
        "  counters  pass      no worse",
    ]
    assert lines[8].startswith("  metric") and lines[9].startswith("  bandwidth.triad_gbs")
    assert result.to_json()["recheck"] == recheck.to_json()


def test_an_inconsistent_recheck_makes_a_valid_record_invalid(record: RunRecord) -> None:
    recheck = recheck_of(Check("identity", "fail", "another card"), RECHECK_PASS[1])
    result = with_recheck(result_of(record, Check("card", "pass", "a real GPU")), recheck)
    assert result.exit_code == EXIT_BAD_CARD
    assert format_text(result).splitlines()[:3] == [
        "INVALID: RECHECK INCONSISTENT: identity: another card",
        "what to do: " + result.action,
        "RECHECK INCONSISTENT: identity: another card",
    ]


# --- Check ----------------------------------------------------------------------------------------


def test_an_exit_code_goes_with_unproven_only() -> None:
    assert Check("x", "unproven", "why", EXIT_UNSIGNED).exit_code == EXIT_UNSIGNED
    assert Check("x", "fail", "why").exit_code is None
    with pytest.raises(ValueError, match=r"^check x: an exit code goes with 'unproven' only$"):
        Check("x", "unproven", "why")
    with pytest.raises(ValueError, match=r"^check y: an exit code goes with 'unproven' only$"):
        Check("y", "pass", "why", EXIT_OK)
