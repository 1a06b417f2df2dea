"""Signing keys and signatures: owner-only key files, no lost keys, canonical bytes, sign and check.

Every test gets its own settings folder (GPUHEALTH_CONFIG_DIR) and key files under tmp_path: none
touches ~/.config/gpuhealth.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from simkit import GradedRuns, invoke

from gpuhealth.certificate.keys import (
    PASSPHRASE_ENV,
    SigningKey,
    generate_key,
    load_key,
    public_key_fingerprint,
)
from gpuhealth.certificate.signing import (
    canonical_bytes,
    canonical_method,
    check_signature,
    data_sha256,
    record_sha256,
    sign_record,
    utc_now,
)
from gpuhealth.errors import EXIT_OK, EXIT_USAGE, InputError
from gpuhealth.models import RunRecord, record_from_json, record_to_json

RUNS = Path(__file__).resolve().parent / "data" / "runs"
STORED = RUNS / "sim-stuck-bit-quick.json"
FINGERPRINT = re.compile(r"SHA256:[0-9a-f]{32}")


pytestmark = pytest.mark.usefixtures("own_settings")


def stored_record() -> RunRecord:
    return record_from_json(STORED.read_text(encoding="utf-8"), str(STORED))


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- keys ----------------------------------------------------------------------------------------


def test_generate_writes_an_owner_only_key(tmp_path: Path) -> None:
    path = tmp_path / "new" / "signing.key"
    result = invoke("keys", "generate", "--key-file", str(path))
    assert result.exit_code == EXIT_OK, result.output
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert path.read_text(encoding="ascii").startswith("-----BEGIN PRIVATE KEY-----")
    fingerprint = load_key(path).fingerprint
    assert FINGERPRINT.fullmatch(fingerprint) and fingerprint in result.stdout
    assert "unencrypted" in result.stdout


def test_default_key_lives_in_the_settings_folder(own_settings: Path) -> None:
    result = invoke("keys", "generate")
    assert result.exit_code == EXIT_OK, result.output
    path = own_settings / "keys" / "signing.key"
    assert path.is_file() and mode(path) == 0o600 and mode(path.parent) == 0o700
    shown = invoke("keys", "show")
    assert shown.exit_code == EXIT_OK
    assert f"fingerprint: {load_key(path).fingerprint}" in shown.stdout
    assert str(path) in shown.stdout


def test_key_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "env" / "k.pem"
    monkeypatch.setenv("GPUHEALTH_KEY_FILE", str(path))
    assert invoke("keys", "generate").exit_code == EXIT_OK
    assert path.is_file()
    assert load_key(path).fingerprint in invoke("keys", "show").stdout


def test_generate_twice_refuses_and_keeps_the_key(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    assert invoke("keys", "generate", "--key-file", str(path)).exit_code == EXIT_OK
    before = path.read_bytes()
    again = invoke("keys", "generate", "--key-file", str(path))
    assert again.exit_code == EXIT_USAGE
    line = one_error_line(again.stderr)
    assert str(path) in line and "--force" in line
    assert path.read_bytes() == before
    forced = invoke("keys", "generate", "--key-file", str(path), "--force")
    assert forced.exit_code == EXIT_OK
    assert path.read_bytes() != before and mode(path) == 0o600


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("bits", [0o640, 0o604, 0o660])
def test_a_key_others_can_read_is_refused(key: SigningKey, bits: int, tmp_path: Path) -> None:
    os.chmod(key.path, bits)
    with pytest.raises(InputError, match="chmod 600"):
        load_key(key.path)
    for args in (
        ["keys", "show", "--key-file", str(key.path)],
        ["grade", "--demo", "--quick", "--quiet", "--key-file", str(key.path)],
    ):
        result = (
            invoke(*args, "--out", str(tmp_path / "out")) if args[0] == "grade" else invoke(*args)
        )
        assert result.exit_code == EXIT_USAGE
        line = one_error_line(result.stderr)
        assert str(key.path) in line and f"chmod 600 {key.path}" in line
    assert not (tmp_path / "out").exists()  # refused before measuring anything


def test_a_missing_key_named_on_purpose_is_an_error(tmp_path: Path) -> None:
    result = invoke("keys", "show", "--key-file", str(tmp_path / "none.key"))
    assert result.exit_code == EXIT_USAGE
    assert "gpuhealth keys generate" in one_error_line(result.stderr)


def test_passphrase_protected_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.key"
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    generated = generate_key(path)
    assert b"ENCRYPTED" in path.read_bytes()
    assert load_key(path).fingerprint == generated.fingerprint
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(InputError, match=PASSPHRASE_ENV):
        load_key(path)


def test_export_public_and_the_ways_to_name_a_key(key: SigningKey, tmp_path: Path) -> None:
    out = tmp_path / "seller.pub"
    result = invoke("keys", "export-public", "--key-file", str(key.path), "-o", str(out))
    assert result.exit_code == EXIT_OK
    pem = out.read_text(encoding="ascii")
    assert pem.startswith("-----BEGIN PUBLIC KEY-----") and "PRIVATE" not in pem
    stdout = invoke("keys", "export-public", "--key-file", str(key.path)).stdout
    assert stdout == pem
    one_line = tmp_path / "seller.b64"
    one_line.write_text(key.public_b64 + "\n", encoding="ascii")
    for named in (str(out), key.public_b64, str(one_line), key.fingerprint):
        assert public_key_fingerprint(named) == key.fingerprint
    for bad in ("not a key", base64.b64encode(b"short").decode(), "SHA256:1234"):
        with pytest.raises(InputError, match="expected a public key"):
            public_key_fingerprint(bad)


# --- canonical bytes and signatures --------------------------------------------------------------


def test_canonical_bytes_are_sorted_compact_utf8_without_the_signature_value() -> None:
    data = {
        "b": [1, 2.5, 1e-05, 0.1, True, None],
        "a": {"z": "°C <&>", "y": 3024.8},
        "signature": {"value": "xyz", "signed_at": "t", "algorithm": "ed25519"},
    }
    assert (
        canonical_bytes(data)
        == (
            '{"a":{"y":3024.8,"z":"°C <&>"},"b":[1,2.5,1e-05,0.1,true,null],'
            '"signature":{"algorithm":"ed25519","signed_at":"t"}}'
        ).encode()
    )
    with pytest.raises(ValueError):
        canonical_bytes({"x": float("nan")})


def test_signed_record_round_trips_and_checks(key: SigningKey) -> None:
    signed = sign_record(stored_record(), key, signed_at="2026-11-26T12:00:00+00:00")
    text = record_to_json(signed)
    assert record_from_json(text) == signed and record_to_json(record_from_json(text)) == text
    sig = signed.signature
    assert sig is not None and sig.algorithm == "ed25519"
    assert base64.b64decode(sig.public_key) == key.public_raw and len(key.public_raw) == 32
    assert sig.key_fingerprint == key.fingerprint
    assert sig.key_fingerprint == "SHA256:" + hashlib.sha256(key.public_raw).hexdigest()[:32]
    assert len(base64.b64decode(sig.value)) == 64
    assert datetime.fromisoformat(sig.signed_at).utcoffset() is not None
    assert check_signature(json.loads(text)) is None
    # only the signature changes: every measured value is what was stored
    assert text.startswith(record_to_json(stored_record()).rsplit(' "signature"', 1)[0])


def test_an_independent_verifier_needs_only_a_jcs_library_and_ed25519(key: SigningKey) -> None:
    """The recipe in gpuhealth/certificate/signing.py's docstring, written without gpuhealth: RFC
    8785 bytes of the record less signature.value, Ed25519 over them."""
    text = record_to_json(sign_record(stored_record(), key))
    data = json.loads(text)
    block = dict(data["signature"])
    assert block["canonicalization"] == "rfc8785"
    value = base64.b64decode(block.pop("value"))
    signed = rfc8785.dumps(dict(data, signature=block))
    raw = base64.b64decode(block["public_key"])
    Ed25519PublicKey.from_public_bytes(raw).verify(value, signed)  # raises if invalid
    assert block["key_fingerprint"] == "SHA256:" + hashlib.sha256(raw).hexdigest()[:32]


def test_rfc8785_numbers_are_ecmascript_s_not_python_s() -> None:
    """To the letter: 1e-7 not 1e-07, 5 not 5.0, 1e+21 not 1e+21's Python form; keys by UTF-16."""
    data = {"b": [1e-7, 5.0, 1e21, 3024.8], "a": {"\U0001f600": 1, "\uffff": 2}}
    assert canonical_bytes(data) == (
        '{"a":{"\U0001f600":1,"\uffff":2},"b":[1e-7,5,1e+21,3024.8]}'.encode()
    )


def test_a_record_signed_the_0_1_0_way_still_verifies(key: SigningKey) -> None:
    """gpuhealth 0.1.0 signed Python's sorted compact JSON and named no canonicalization."""
    data = json.loads(record_to_json(stored_record()))
    data["signature"] = {
        "algorithm": "ed25519",
        "public_key": key.public_b64,
        "key_fingerprint": key.fingerprint,
        "signed_at": "2026-11-26T00:00:00+00:00",
    }
    legacy = json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
    data["signature"]["value"] = base64.b64encode(key.private.sign(legacy)).decode("ascii")
    assert check_signature(data) is None
    data["grade"]["letter"] = "A" if data["grade"]["letter"] != "A" else "B"
    assert "changed after it was signed" in (check_signature(data) or "")


def test_an_unknown_canonicalization_is_refused(key: SigningKey) -> None:
    data = json.loads(record_to_json(sign_record(stored_record(), key)))
    data["signature"]["canonicalization"] = "xml-c14n"
    assert "unknown canonicalization 'xml-c14n'" in (check_signature(data) or "")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("signature", "signed_at"), "2020-01-01T00:00:00+00:00"),  # the signing time is signed
        (("grade", "letter"), "A"),
        (("identity", "serial"), "SIM-OTHER"),
        (("extra_field",), 1),  # an unknown field is signed content too
    ],
)
def test_a_changed_field_breaks_the_signature(
    key: SigningKey, path: tuple[str, ...], value: object
) -> None:
    data = json.loads(record_to_json(sign_record(stored_record(), key)))
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    assert "changed after it was signed" in (check_signature(data) or "")


def test_signing_time_is_utc_with_its_offset() -> None:
    """signed_at carries +00:00: a naive local time would be a different instant elsewhere."""
    now = datetime.fromisoformat(utc_now())
    assert now.utcoffset() == timedelta(0)


BAD_BLOCKS: list[tuple[dict[str, object], str]] = [
    ({"signature": None}, "no signature block"),
    ({"algorithm": "rsa"}, "unknown signature algorithm 'rsa' (expected 'ed25519')"),
    ({"public_key": 123}, "the embedded public key is not a base64 32-byte Ed25519 key"),
    ({"public_key": "AAAA"}, "the embedded public key is not a base64 32-byte Ed25519 key"),
    ({"value": 123}, "the signature value is not a base64 64-byte Ed25519 signature"),
    ({"value": "AAAA"}, "the signature value is not a base64 64-byte Ed25519 signature"),
    (
        {"value": base64.b64encode(bytes(64)).decode("ascii")},
        "the signature does not match the content: the record was changed after it was signed",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD_BLOCKS)
def test_each_bad_signature_block_says_exactly_why(
    key: SigningKey, change: dict[str, object], message: str
) -> None:
    """The one line a buyer reads, word for word; a key or value of the wrong length (base64
    that decodes) or of the wrong type is named as such, not as a fingerprint or content fault."""
    data = json.loads(record_to_json(sign_record(stored_record(), key)))
    if change == {"signature": None}:
        del data["signature"]
    else:
        data["signature"].update(change)
    assert check_signature(data) == message


def test_a_number_jcs_cannot_write_is_named(key: SigningKey) -> None:
    data = json.loads(record_to_json(sign_record(stored_record(), key)))
    data["extra_field"] = 2**60  # beyond 2^53: RFC 8785 refuses it
    assert (check_signature(data) or "").startswith(
        "the record cannot be put in canonical form (not representable in RFC 8785 JSON: "
    )


def test_the_0_1_0_bytes_refuse_nan(key: SigningKey) -> None:
    """Python's json parses NaN; the legacy bytes must not carry it (JSON has no NaN)."""
    data = json.loads(record_to_json(stored_record()))
    data["signature"] = {"algorithm": "ed25519", "public_key": key.public_b64}
    data["extra_field"] = float("nan")
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_bytes(data)


def test_the_canonicalization_a_record_names(key: SigningKey) -> None:
    data = json.loads(record_to_json(sign_record(stored_record(), key)))
    assert canonical_method(data) == "rfc8785"
    del data["signature"]["canonicalization"]
    assert canonical_method(data) == "python-sorted-json (gpuhealth 0.1.0)"  # 0.1.0's records
    del data["signature"]
    assert canonical_method(data) == "rfc8785"  # what an unsigned record would be signed with


def test_the_record_sha256_is_that_of_its_signed_bytes(key: SigningKey) -> None:
    """What the certificate and `verify` show: SHA-256 of the RFC 8785 bytes less the value."""
    signed = sign_record(stored_record(), key)
    data = json.loads(record_to_json(signed))
    block = {k: v for k, v in data["signature"].items() if k != "value"}
    expected = hashlib.sha256(rfc8785.dumps(dict(data, signature=block))).hexdigest()
    assert record_sha256(signed) == data_sha256(data) == expected
    data["extra_field"] = 2**60  # no canonical bytes, so no SHA-256
    assert data_sha256(data) is None


def test_another_embedded_key_is_caught_by_its_fingerprint(key: SigningKey, tmp_path: Path) -> None:
    other = generate_key(tmp_path / "other.key")
    data = json.loads(record_to_json(sign_record(stored_record(), key)))
    data["signature"]["public_key"] = other.public_b64
    assert "does not belong" in (check_signature(data) or "")
    data["signature"]["key_fingerprint"] = other.fingerprint
    assert "changed after it was signed" in (check_signature(data) or "")


# --- grade and report with and without a key -----------------------------------------------------


def test_grade_without_a_key_says_how_to_make_one(graded: GradedRuns) -> None:
    run = graded.grade("--demo", "--quick", "--json")
    assert "no signing key" in run.result.stderr and "gpuhealth keys generate" in run.result.stderr
    (card,) = json.loads(run.result.stdout)["cards"]
    assert card["signed_by"] is None
    assert '"signature": null' in (run.out_dir / "run.json").read_text(encoding="utf-8")


def test_report_keeps_the_signature_and_regrade_signs_again(
    key: SigningKey, tmp_path: Path
) -> None:
    signed = sign_record(stored_record(), key, signed_at="2026-11-26T12:00:00+00:00")
    run_json = tmp_path / "run.json"
    run_json.write_text(record_to_json(signed), encoding="utf-8")
    plain = invoke("report", str(run_json), "--format", "json")
    assert plain.exit_code == EXIT_OK and plain.stdout == run_json.read_text(encoding="utf-8")

    resigned = invoke(
        "report", str(run_json), "--format", "json", "--regrade", "--key-file", str(key.path)
    )
    assert resigned.exit_code == EXIT_OK, resigned.output
    again = record_from_json(resigned.stdout)
    assert again.signature is not None and again.signature != signed.signature
    assert check_signature(json.loads(resigned.stdout)) is None
    assert key.fingerprint in resigned.stderr

    dropped = invoke("report", str(run_json), "--format", "json", "--regrade")  # no key exists
    assert dropped.exit_code == EXIT_OK
    assert record_from_json(dropped.stdout).signature is None
    assert "signature was dropped" in dropped.stderr
