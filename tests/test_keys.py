"""Keys on disk: the recorded public key, unsafe places, and the pinned-keys trust store.

`keys list` and `keys unpin`; a key file that is not the one gpuhealth wrote is refused; the trust
store fails closed (TrustStoreError, exit 6) unless it is absent. Every test gets its own settings
folder (GPUHEALTH_CONFIG_DIR) and key files under tmp_path: none touches ~/.config/gpuhealth.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from simkit import invoke

from gpuhealth.certificate.keys import (
    PASSPHRASE_ENV,
    SigningKey,
    generate_key,
    load_key,
    pin,
    pinned_fingerprints,
    pinned_keys,
    public_record_file,
    unpin,
)
from gpuhealth.errors import EXIT_OK, EXIT_TRUST_STORE, EXIT_USAGE, InputError, TrustStoreError

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


pytestmark = pytest.mark.usefixtures("own_settings")


@pytest.fixture
def pinned(own_settings: Path) -> Path:
    return own_settings / "keys" / "pinned"


@pytest.fixture
def seller(tmp_path: Path) -> SigningKey:
    """Someone else's key, as a buyer meets it: only its exported public key matters."""
    return generate_key(tmp_path / "seller" / "signing.key")


def exported(key: SigningKey, tmp_path: Path, name: str = "seller.pub") -> Path:
    out = tmp_path / name
    out.write_text(key.public_pem(), encoding="ascii")
    return out


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def fresh_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def fingerprints(n: int) -> list[str]:
    return [f"SHA256:{i:032x}" for i in range(1, n + 1)]


# --- keys list -----------------------------------------------------------------------------------


def test_list_with_nothing_says_so(pinned: Path) -> None:
    result = invoke("keys", "list")
    assert result.exit_code == EXIT_OK, result.output
    assert "signing key: none" in result.stdout and "gpuhealth keys generate" in result.stdout
    assert f"pinned keys: none ({pinned}" in result.stdout
    assert not pinned.exists()  # listing creates nothing


def test_list_shows_pins_with_their_notes(seller: SigningKey, tmp_path: Path) -> None:
    pub = exported(seller, tmp_path)
    assert invoke("keys", "pin", str(pub)).exit_code == EXIT_OK
    other = fingerprints(1)[0]
    assert invoke("keys", "pin", other).exit_code == EXIT_OK
    result = invoke("keys", "list")
    assert result.exit_code == EXIT_OK, result.output
    assert "pinned keys: 2" in result.stdout
    lines = result.stdout.splitlines()
    assert f"  {seller.fingerprint}  {pub}" in lines  # the note: the file it was pinned from
    assert f"  {other}" in lines
    assert "signing key: none" in result.stdout


def test_list_shows_the_own_key(own_settings: Path) -> None:
    assert invoke("keys", "generate").exit_code == EXIT_OK
    path = own_settings / "keys" / "signing.key"
    result = invoke("keys", "list")
    assert result.exit_code == EXIT_OK, result.output
    assert f"signing key: {load_key(path).fingerprint} ({path})" in result.stdout
    assert "pinned keys: none" in result.stdout


def test_list_json_shape(key: SigningKey, seller: SigningKey, tmp_path: Path, pinned: Path) -> None:
    empty = json.loads(invoke("keys", "list", "--json").stdout)
    assert empty == {"signing_key": None, "pinned_file": str(pinned), "pinned": []}
    pub = exported(seller, tmp_path)
    assert invoke("keys", "pin", str(pub)).exit_code == EXIT_OK
    result = invoke("keys", "list", "--json", "--key-file", str(key.path))
    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout) == {
        "signing_key": {
            "fingerprint": key.fingerprint,
            "public_key": key.public_b64,
            "file": str(key.path),
        },
        "pinned_file": str(pinned),
        "pinned": [{"fingerprint": seller.fingerprint, "note": str(pub)}],
    }


# --- keys pin and unpin --------------------------------------------------------------------------


def test_pin_adds_a_fingerprint_once(seller: SigningKey, tmp_path: Path, pinned: Path) -> None:
    """Moved here from test_signing.py; a bad line is now a TrustStoreError."""
    first = invoke("keys", "pin", str(exported(seller, tmp_path)))
    assert first.exit_code == EXIT_OK and "pinned" in first.stdout
    again = invoke("keys", "pin", seller.fingerprint)
    assert again.exit_code == EXIT_OK and "already" in again.stdout
    assert pinned_fingerprints() == (seller.fingerprint,)
    assert pinned.read_text(encoding="utf-8").startswith(seller.fingerprint)
    assert mode(pinned) == 0o600 and mode(pinned.parent) == 0o700


@pytest.mark.parametrize("named_by", ["fingerprint", "pem file", "base64"])
def test_unpin(seller: SigningKey, tmp_path: Path, named_by: str) -> None:
    pub = exported(seller, tmp_path)
    assert invoke("keys", "pin", str(pub)).exit_code == EXIT_OK
    name = {"fingerprint": seller.fingerprint, "pem file": str(pub), "base64": seller.public_b64}
    result = invoke("keys", "unpin", name[named_by])
    assert result.exit_code == EXIT_OK, result.output
    assert f"unpinned {seller.fingerprint}" in result.stdout
    assert pinned_fingerprints() == ()


def test_unpin_a_key_not_pinned_is_a_usage_error(seller: SigningKey, pinned: Path) -> None:
    nothing = invoke("keys", "unpin", seller.fingerprint)  # no pinned file at all
    assert nothing.exit_code == EXIT_USAGE
    assert seller.fingerprint in one_error_line(nothing.stderr)
    other = fingerprints(1)[0]
    assert invoke("keys", "pin", other).exit_code == EXIT_OK
    before = pinned.read_bytes()
    result = invoke("keys", "unpin", seller.fingerprint)
    assert result.exit_code == EXIT_USAGE
    line = one_error_line(result.stderr)
    assert seller.fingerprint in line and "not pinned" in line
    assert pinned.read_bytes() == before


def test_pin_unpin_pin_keeps_the_other_entries_and_notes(seller: SigningKey, pinned: Path) -> None:
    a, b = fingerprints(2)
    pinned.parent.mkdir(parents=True, mode=0o700)
    original = f"# my sellers\n{a}  # alice's shop\n\n{b}  # bob\n"
    pinned.write_text(original, encoding="utf-8")
    os.chmod(pinned, 0o600)
    assert pin(seller.fingerprint, "carol")
    assert unpin(seller.fingerprint)[0].note == "carol"
    assert pinned.read_text(encoding="utf-8") == original  # comments and blank lines too
    assert mode(pinned) == 0o600
    assert pin(seller.fingerprint, "carol again")
    assert [(e.fingerprint, e.note) for e in pinned_keys()] == [
        (a, "alice's shop"),
        (b, "bob"),
        (seller.fingerprint, "carol again"),
    ]
    assert [e.fingerprint for e in unpin(a)] == [a]
    assert pinned_fingerprints() == (b, seller.fingerprint)
    assert not list(pinned.parent.glob(".pinned.*"))  # no temp file left behind


def test_a_note_cannot_add_a_line_of_its_own(seller: SigningKey) -> None:
    forged = fingerprints(1)[0]
    assert pin(seller.fingerprint, f"shop\n{forged}")
    assert pinned_fingerprints() == (seller.fingerprint,)


# --- the key file is the one gpuhealth wrote -----------------------------------------------------


def test_generate_records_the_public_key(key: SigningKey) -> None:
    record = public_record_file(key.path)
    assert record == key.path.with_name("signing.key.pub")
    assert record.read_text(encoding="ascii") == key.public_pem()
    assert mode(record) & 0o022 == 0


def test_another_valid_key_written_over_the_file_is_refused(key: SigningKey) -> None:
    key.path.write_bytes(fresh_pem())  # a well-formed key, just not this one
    with pytest.raises(InputError, match="differs from the one recorded") as caught:
        load_key(key.path)
    assert str(key.path) in str(caught.value) and key.fingerprint in str(caught.value)
    result = invoke("keys", "show", "--key-file", str(key.path))
    assert result.exit_code == EXIT_USAGE
    assert str(public_record_file(key.path)) in one_error_line(result.stderr)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda pem: pem[: len(pem) // 2], id="truncated"),
        pytest.param(lambda pem: b"garbage\n", id="garbage"),
        pytest.param(lambda pem: pem + b"extra line\n", id="trailing bytes"),
        pytest.param(lambda pem: pem.replace(b"\n", b"\r\n"), id="crlf"),
    ],
)
def test_a_damaged_key_file_is_refused(key: SigningKey, damage: Callable[[bytes], bytes]) -> None:
    key.path.write_bytes(damage(key.path.read_bytes()))
    result = invoke("keys", "show", "--key-file", str(key.path))
    assert result.exit_code == EXIT_USAGE
    assert str(key.path) in one_error_line(result.stderr)


def test_a_swapped_pub_file_is_refused(key: SigningKey, seller: SigningKey) -> None:
    record = public_record_file(key.path)
    record.write_text(seller.public_pem(), encoding="ascii")
    with pytest.raises(InputError, match="differs from the one recorded"):
        load_key(key.path)
    record.write_text("not a key\n", encoding="ascii")
    with pytest.raises(InputError, match=r"recorded public key .* cannot be read"):
        load_key(key.path)


def test_an_encrypted_key_is_checked_against_its_pub(
    tmp_path: Path, seller: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    key = generate_key(tmp_path / "enc" / "signing.key")
    assert load_key(key.path).fingerprint == key.fingerprint  # re-encryption differs: still fine
    public_record_file(key.path).write_text(seller.public_pem(), encoding="ascii")
    with pytest.raises(InputError, match="differs from the one recorded"):
        load_key(key.path)


def test_an_old_key_without_pub_is_recorded_on_first_use(key: SigningKey) -> None:
    record = public_record_file(key.path)
    record.unlink()
    first = invoke("keys", "show", "--key-file", str(key.path))
    assert first.exit_code == EXIT_OK, first.output
    notice = one_error_line(first.stderr)
    assert "trust on first use" in notice and key.fingerprint in notice and str(record) in notice
    assert record.read_text(encoding="ascii") == key.public_pem()
    second = invoke("keys", "show", "--key-file", str(key.path))
    assert second.exit_code == EXIT_OK and second.stderr == ""
    key.path.write_bytes(fresh_pem())  # from now on a swap is caught
    with pytest.raises(InputError, match="differs from the one recorded"):
        load_key(key.path)


# --- unsafe places -------------------------------------------------------------------------------


@posix_only
@pytest.mark.parametrize("bits", [0o770, 0o707, 0o1777])
def test_a_key_folder_others_may_write_is_refused(key: SigningKey, bits: int) -> None:
    folder = key.path.parent
    os.chmod(folder, bits)
    result = invoke("keys", "show", "--key-file", str(key.path))
    assert result.exit_code == EXIT_USAGE
    line = one_error_line(result.stderr)
    assert str(key.path) in line and f"chmod go-w {folder}" in line
    with pytest.raises(InputError, match="may be written by group or others"):
        generate_key(folder / "another.key")
    os.chmod(folder, 0o700)
    assert load_key(key.path).fingerprint == key.fingerprint


@posix_only
def test_a_pub_file_others_may_write_is_refused(key: SigningKey) -> None:
    os.chmod(public_record_file(key.path), 0o666)
    with pytest.raises(InputError, match="chmod go-w"):
        load_key(key.path)


@posix_only
@pytest.mark.skipif(os.name == "posix" and os.geteuid() != 0, reason="chown needs root")
def test_a_key_folder_of_another_user_is_refused(key: SigningKey) -> None:
    os.chown(key.path.parent, 54321, -1)
    with pytest.raises(InputError, match="belongs to user id 54321"):
        load_key(key.path)


# --- the trust store fails closed ----------------------------------------------------------------


def write_pinned(pinned: Path, text: str, bits: int = 0o600) -> None:
    pinned.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pinned.write_text(text, encoding="utf-8")
    os.chmod(pinned, bits)


def assert_trust_store_refused(pinned: Path, *words: str) -> None:
    """`keys list` stops with exit 6 and one line naming the file; pin writes nothing."""
    before = pinned.read_bytes() if pinned.is_file() else None
    result = invoke("keys", "list")
    assert result.exit_code == EXIT_TRUST_STORE, result.output
    line = one_error_line(result.stderr)
    assert "the trust store cannot be read" in line and str(pinned) in line
    for word in words:
        assert word in line
    with pytest.raises(TrustStoreError):
        pinned_fingerprints()
    assert invoke("keys", "pin", fingerprints(9)[-1]).exit_code == EXIT_TRUST_STORE
    assert (pinned.read_bytes() if pinned.is_file() else None) == before


def test_a_missing_store_means_nothing_pinned(pinned: Path) -> None:
    assert pinned_fingerprints() == () and pinned_keys() == ()


@posix_only
@pytest.mark.parametrize("bits", [0o666, 0o620, 0o602])
def test_a_store_others_may_write_is_refused(pinned: Path, bits: int) -> None:
    write_pinned(pinned, fingerprints(1)[0] + "\n", bits)
    assert_trust_store_refused(pinned, f"chmod go-w {pinned}")


@posix_only
def test_a_store_folder_others_may_write_is_refused(pinned: Path) -> None:
    write_pinned(pinned, fingerprints(1)[0] + "\n")
    os.chmod(pinned.parent, 0o777)
    assert_trust_store_refused(pinned, f"chmod go-w {pinned.parent}")


@posix_only
def test_pin_will_not_create_a_store_in_an_unsafe_folder(pinned: Path) -> None:
    pinned.parent.mkdir(parents=True)
    os.chmod(pinned.parent, 0o777)
    result = invoke("keys", "pin", fingerprints(1)[0])
    assert result.exit_code == EXIT_TRUST_STORE
    assert f"chmod go-w {pinned.parent}" in one_error_line(result.stderr)
    assert not pinned.exists()


@posix_only
def test_an_unreadable_store_is_refused(pinned: Path) -> None:
    write_pinned(pinned, fingerprints(1)[0] + "\n", 0o000)
    if os.access(pinned, os.R_OK):  # root reads a 000 file anyway: make it unreadable as text
        pinned.write_bytes(b"SHA256:\xff\xfe not utf-8\n")
        os.chmod(pinned, 0o600)
    assert_trust_store_refused(pinned)


def test_a_store_that_is_not_utf8_is_refused(pinned: Path) -> None:
    write_pinned(pinned, "")
    pinned.write_bytes(fingerprints(1)[0].encode() + b"  # caf\xe9\n")
    assert_trust_store_refused(pinned, "not UTF-8")


def test_a_folder_where_the_store_should_be_is_refused(pinned: Path) -> None:
    pinned.mkdir(parents=True, mode=0o700)
    assert_trust_store_refused(pinned, "not a regular file")


@pytest.mark.parametrize(
    "bad", ["garbage", "SHA256:1234", "SHA256:" + "0" * 31 + "1 extra words", "sha256:" + "0" * 32]
)
def test_a_bad_line_is_refused(pinned: Path, bad: str) -> None:
    write_pinned(pinned, f"{fingerprints(1)[0]}  # fine\n{bad}\n")
    assert_trust_store_refused(pinned, f"{pinned}:2:", "expected a fingerprint")
