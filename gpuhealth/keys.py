"""Signing keys and trusted signers on disk: the private key file, its public key, pinned keys.

Keys. The private key is a PEM file (PKCS#8), by default `<app dir>/keys/signing.key` (the app dir
is click.get_app_dir("gpuhealth"), e.g. ~/.config/gpuhealth; GPUHEALTH_CONFIG_DIR overrides it, and
GPUHEALTH_KEY_FILE overrides the key file). It is written owner-only (0600, its folder 0700) and
unencrypted unless GPUHEALTH_KEY_PASSPHRASE is set when it is generated (then that passphrase must
be set whenever it is used). A private key file that group or others can read is refused.
Pinned keys (`<app dir>/keys/pinned`) are fingerprints of signers a verifier trusts, one a line.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gpuhealth.errors import InputError

CONFIG_DIR_ENV = "GPUHEALTH_CONFIG_DIR"
KEY_FILE_ENV = "GPUHEALTH_KEY_FILE"
PASSPHRASE_ENV = "GPUHEALTH_KEY_PASSPHRASE"
FINGERPRINT_HEX_DIGITS = 32
_FINGERPRINT = re.compile(r"SHA256:[0-9a-f]{32}")
GENERATE_HINT = "create one: gpuhealth keys generate"


# --- where things live ---------------------------------------------------------------------------


def config_dir() -> Path:
    """gpuhealth's settings folder: $GPUHEALTH_CONFIG_DIR, else click's app dir for gpuhealth."""
    override = os.environ.get(CONFIG_DIR_ENV)
    return Path(override) if override else Path(click.get_app_dir("gpuhealth"))


def keys_dir() -> Path:
    return config_dir() / "keys"


def default_key_file() -> Path:
    override = os.environ.get(KEY_FILE_ENV)
    return Path(override) if override else keys_dir() / "signing.key"


def pinned_file() -> Path:
    return keys_dir() / "pinned"


# --- keys ----------------------------------------------------------------------------------------


def fingerprint(public_raw: bytes) -> str:
    """ "SHA256:" + the first 32 hex digits of sha256 of the raw 32-byte public key."""
    return "SHA256:" + hashlib.sha256(public_raw).hexdigest()[:FINGERPRINT_HEX_DIGITS]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    path: Path

    @property
    def public_raw(self) -> bytes:
        return _raw_public(self.private.public_key())

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.public_raw).decode("ascii")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_raw)

    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def generate_key(path: Path, force: bool = False) -> SigningKey:
    """A new key written to path (0600, folder 0700). An existing file is kept unless force."""
    if path.exists() and not force:
        raise InputError(
            str(path),
            None,
            "a signing key exists already; refusing to overwrite it "
            "(pass --force to replace it: reports signed with the old key then verify only "
            "against its exported public key)",
        )
    if path.is_dir():
        raise InputError(str(path), None, "is a folder, expected a key file path")
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(parents=True, mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
    private = Ed25519PrivateKey.generate()
    secret = _passphrase()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    # a temp file in the same folder, owner-only from birth, renamed over the old one whole
    fd, tmp = tempfile.mkstemp(prefix=".signing.key.", dir=folder)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return SigningKey(private, path)


def check_private_permissions(path: Path) -> None:
    """Refuse a private key that group or others may read or write (POSIX only)."""
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InputError(
            str(path),
            None,
            f"private key is accessible by group or others (mode {mode:04o}); "
            f"refusing to use it (fix: chmod 600 {path})",
        )


def load_key(path: Path) -> SigningKey:
    """The private key at path; InputError (exit 2) when missing, unsafe or not an Ed25519 key."""
    if not path.is_file():
        raise InputError(str(path), None, f"no signing key here ({GENERATE_HINT})")
    check_private_permissions(path)
    data = path.read_bytes()
    try:
        private = serialization.load_pem_private_key(data, password=_passphrase())
    except TypeError as exc:  # encrypted without a passphrase, or a passphrase for a plain key
        raise InputError(
            str(path), None, f"cannot open the key ({exc}; see {PASSPHRASE_ENV})"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InputError(
            str(path), None, f"not a PEM private key or wrong passphrase ({exc})"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise InputError(str(path), None, "expected an Ed25519 private key")
    return SigningKey(private, path)


def find_key(path: Path | None = None) -> SigningKey | None:
    """The signing key if its file exists (None when there is none); unsafe files still refused."""
    path = path or default_key_file()
    return load_key(path) if path.exists() else None


def public_key_fingerprint(value: str, source: str = "public key") -> str:
    """The fingerprint a user names a public key by.

    value: the path of a public key file (the PEM that `keys export-public` writes, or a file
    holding the base64 raw key), the base64 raw key itself, or a fingerprint SHA256:<32 hex>.
    """
    text = value.strip()
    path = Path(text)
    with contextlib.suppress(OSError, ValueError):
        if path.is_file():
            source = str(path)
            text = path.read_text(encoding="utf-8").strip()
    if _FINGERPRINT.fullmatch(text):
        return text
    if "BEGIN PUBLIC KEY" in text:
        try:
            public = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise InputError(source, None, f"not a PEM public key ({exc})") from exc
        if not isinstance(public, Ed25519PublicKey):
            raise InputError(source, None, "expected an Ed25519 public key")
        return fingerprint(_raw_public(public))
    raw = decode_b64(text)
    if raw is None or len(raw) != 32:
        raise InputError(
            source,
            None,
            "expected a public key: a PEM file (gpuhealth keys export-public), the base64 raw "
            "32-byte key, or a fingerprint SHA256:<32 hex digits>",
        )
    return fingerprint(raw)


def decode_b64(text: str) -> bytes | None:
    """Strict base64 (no stray characters), or None."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


# --- pinned signers ------------------------------------------------------------------------------


def pinned_fingerprints(path: Path | None = None) -> tuple[str, ...]:
    """Fingerprints in the pinned file: the first word of each line; '#' starts a comment."""
    path = path or pinned_file()
    if not path.is_file():
        return ()
    found: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        word = line.split("#", 1)[0].strip().split(maxsplit=1)
        if not word:
            continue
        if not _FINGERPRINT.fullmatch(word[0]):
            raise InputError(
                str(path), None, "expected a fingerprint SHA256:<32 hex digits>", line=number
            )
        found.append(word[0])
    return tuple(found)


def pin(fingerprint_: str, note: str = "", path: Path | None = None) -> bool:
    """Add a fingerprint to the pinned file; False when it was pinned already."""
    path = path or pinned_file()
    if fingerprint_ in pinned_fingerprints(path):
        return False
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, mode=0o700)
        os.chmod(path.parent, 0o700)
    line = f"{fingerprint_}  # {note}\n" if note else f"{fingerprint_}\n"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)
    return True
