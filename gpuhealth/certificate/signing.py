"""Signing run records: the canonical bytes, sign, check.

Canonical bytes (what is signed). From the record's JSON as stored (run.json, or the record that
report.html embeds) parsed with a standard JSON parser:
  - the `value` member of the top-level `signature` object is removed; the rest of the signature
    block (algorithm, public key, fingerprint, signed_at, canonicalization) is signed along with
    the record, so the signing time cannot be changed either;
  - the result is serialised by RFC 8785, the JSON Canonicalization Scheme, to the letter (the
    `rfc8785` library: keys sorted by UTF-16 code units, no insignificant whitespace, UTF-8,
    numbers as ECMAScript prints them: `1e-7`, `3024.8`, `5` for 5.0); the signature block says
    so with `"canonicalization": "rfc8785"`. Integers beyond 2^53 and NaN/infinities are refused.
Records signed by gpuhealth 0.1.0 have no `canonicalization` member; their bytes are Python's
`json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` and still verify.
The bytes are re-derived from the stored JSON text alone, never from gpuhealth's dataclasses, so a
verifier needs no gpuhealth (README: "Verify without gpuhealth"), and a field a newer or older
gpuhealth would not know is still covered. The record's SHA-256 shown on the certificate and by
`verify` is the SHA-256 of these bytes.

Keys and trusted signers live in gpuhealth/certificate/keys.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gpuhealth.certificate.keys import SigningKey, decode_b64, fingerprint
from gpuhealth.models import RunRecord, Signature, record_from_json, record_to_json

ALGORITHM = "ed25519"
CANONICALIZATION = "rfc8785"
LEGACY_CANONICALIZATION = "python-sorted-json (gpuhealth 0.1.0)"


# --- canonical bytes, sign, check ----------------------------------------------------------------


def canonical_bytes(data: Mapping[str, Any]) -> bytes:
    """The signed bytes of a parsed record (see the module docstring). ValueError if impossible:
    a number JCS cannot represent, or a canonicalization this gpuhealth does not know."""
    body = dict(data)
    block = body.get("signature")
    method = CANONICALIZATION
    if isinstance(block, Mapping):
        body["signature"] = {k: v for k, v in block.items() if k != "value"}
        method = block.get("canonicalization") or LEGACY_CANONICALIZATION
    if method == CANONICALIZATION:
        try:
            return rfc8785.dumps(body)
        except rfc8785.CanonicalizationError as exc:
            raise ValueError(f"not representable in RFC 8785 JSON: {exc}") from exc
    if method == LEGACY_CANONICALIZATION:
        text = json.dumps(
            body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError, a ValueError
    raise ValueError(f"unknown canonicalization {method!r} (expected {CANONICALIZATION!r})")


def canonical_method(data: Mapping[str, Any]) -> str:
    block = data.get("signature")
    if isinstance(block, Mapping):
        return str(block.get("canonicalization") or LEGACY_CANONICALIZATION)
    return CANONICALIZATION


def record_sha256(record: RunRecord) -> str | None:
    """SHA-256 of the record's canonical bytes (hex), as the certificate shows it."""
    return data_sha256(json.loads(record_to_json(record)))


def data_sha256(data: Mapping[str, Any]) -> str | None:
    """SHA-256 of a parsed record's canonical bytes (hex), as `verify` shows it; None when it
    has none (a number JCS cannot write, an unknown canonicalization)."""
    try:
        return hashlib.sha256(canonical_bytes(data)).hexdigest()
    except ValueError:
        return None


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sign_record(record: RunRecord, key: SigningKey, signed_at: str | None = None) -> RunRecord:
    """The record as run.json will store it, signed (any earlier signature replaced)."""
    block = Signature(
        algorithm=ALGORITHM,
        public_key=key.public_b64,
        key_fingerprint=key.fingerprint,
        value="",
        signed_at=signed_at or utc_now(),
        canonicalization=CANONICALIZATION,
    )
    # through the stored form first: what is signed is what run.json will hold
    stored = record_from_json(record_to_json(replace(record, signature=block)), "run record")
    value = key.private.sign(canonical_bytes(json.loads(record_to_json(stored))))
    return replace(stored, signature=replace(block, value=base64.b64encode(value).decode("ascii")))


def unsigned(record: RunRecord) -> RunRecord:
    return replace(record, signature=None)


def check_signature(data: Mapping[str, Any]) -> str | None:
    """None when the parsed record's signature is valid; otherwise one line saying why not."""
    block = data.get("signature")
    if not isinstance(block, Mapping):
        return "no signature block"
    algorithm = block.get("algorithm")
    if algorithm != ALGORITHM:
        return f"unknown signature algorithm {algorithm!r} (expected {ALGORITHM!r})"
    public_b64, claimed, value_b64 = (
        block.get("public_key"),
        block.get("key_fingerprint"),
        block.get("value"),
    )
    raw = decode_b64(public_b64) if isinstance(public_b64, str) else None
    if raw is None or len(raw) != 32:
        return "the embedded public key is not a base64 32-byte Ed25519 key"
    if claimed != fingerprint(raw):
        return (
            f"the fingerprint {claimed!r} does not belong to the embedded public key "
            f"(which is {fingerprint(raw)})"
        )
    value = decode_b64(value_b64) if isinstance(value_b64, str) else None
    if value is None or len(value) != 64:
        return "the signature value is not a base64 64-byte Ed25519 signature"
    try:
        signed = canonical_bytes(data)
    except ValueError as exc:
        return f"the record cannot be put in canonical form ({exc})"
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(value, signed)
    except InvalidSignature:
        return (
            "the signature does not match the content: the record was changed after it was signed"
        )
    return None
