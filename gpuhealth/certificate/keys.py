"""Signing keys and trusted signers on disk: the private key file, its public key, pinned keys.

Keys. The private key is a PEM file (PKCS#8), by default `<app dir>/keys/signing.key` (the app dir
is click.get_app_dir("gpuhealth"), e.g. ~/.config/gpuhealth; GPUHEALTH_CONFIG_DIR overrides it, and
GPUHEALTH_KEY_FILE overrides the key file). It is written owner-only (0600, its folder 0700) and
unencrypted unless GPUHEALTH_KEY_PASSPHRASE is set when it is generated (then that passphrase must
be set whenever it is used). Next to it, `<key file>.pub` records its public key (the PEM that
`keys export-public` writes). A key is refused (InputError, exit 2) when group or others may read
it, when group or others may write it, its folder or its .pub, when someone else owns them, when
an unencrypted key file is not byte for byte the PEM of the key it holds, and when its public key
differs from the recorded one. A key with no .pub (made by an older gpuhealth) gets one on first
use, with a notice on stderr: trust on first use.

Pinned keys (`<app dir>/keys/pinned`) are fingerprints of signers a verifier trusts, one a line,
each with an optional `# note`. This is the verifier's trust store, and reading it fails closed:
a file that cannot be read, does not parse, or that group or others may write (or its folder)
raises TrustStoreError (exit 6). Only a file that does not exist at all means "nothing pinned".
The file is rewritten whole (temp file in the same folder, then rename), owner-only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import click
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gpuhealth.atomicfile import write_atomic
from gpuhealth.datafiles import decode_utf8, read_bytes_file
from gpuhealth.errors import InputError, TrustStoreError

CONFIG_DIR_ENV = "GPUHEALTH_CONFIG_DIR"
KEY_FILE_ENV = "GPUHEALTH_KEY_FILE"
PASSPHRASE_ENV = "GPUHEALTH_KEY_PASSPHRASE"
FINGERPRINT_HEX_DIGITS = 32
_FINGERPRINT = re.compile(r"SHA256:[0-9a-f]{32}")
GENERATE_HINT = "create one: gpuhealth keys generate"
PUBLIC_SUFFIX = ".pub"
_GROUP_OTHER_WRITE = 0o022
# An Ed25519 key's PEM is about 120 bytes (encrypted: about 300); a file far larger is not a key.
MAX_KEY_BYTES = 64 * 2**10
# The pinned file: about 60 bytes a signer; a million bytes is more signers than anyone pins.
MAX_PINNED_BYTES = 2**20
_GROUP_OTHER_ANY = 0o077


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


def public_record_file(key_path: Path) -> Path:
    """Where the public key of the private key at key_path is recorded: `<key file>.pub`."""
    return key_path.with_name(key_path.name + PUBLIC_SUFFIX)


# --- safe places ---------------------------------------------------------------------------------


def _trusted_owner(uid: int) -> bool:
    # root can rewrite anything anyway, so a root-owned file or folder adds no risk
    return uid in (os.geteuid(), 0)


def _unsafe_reason(path: Path, st: os.stat_result, kind: str) -> str | None:
    """Why others could change path (kind "file" or "folder"), with the fix; None when safe."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & _GROUP_OTHER_WRITE:
        return (
            f"{kind} {path} may be written by group or others (mode {mode:04o}; "
            f"fix: chmod go-w {path})"
        )
    if not _trusted_owner(st.st_uid):
        return (
            f"{kind} {path} belongs to user id {st.st_uid}, not to you "
            f"(fix: chown {os.geteuid()} {path}, or move it to a folder of your own)"
        )
    return None


def _folders_of(path: Path) -> list[Path]:
    """The folder path names and, through symlinks, the folder the file really lives in."""
    folders = [path.parent]
    real = path.resolve().parent
    if real != path.parent.resolve():
        folders.append(real)
    return folders


def _unsafe_folder(path: Path) -> str | None:
    """Why the folder(s) holding path could be changed by others, or None (POSIX only)."""
    if os.name != "posix":
        return None
    for folder in _folders_of(path):
        with contextlib.suppress(FileNotFoundError):  # a folder not made yet is created 0700
            reason = _unsafe_reason(folder, folder.stat(), "folder")
            if reason:
                return reason
    return None


def _make_private_folder(folder: Path) -> None:
    if not folder.is_dir():
        folder.mkdir(parents=True, mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask


# --- keys ----------------------------------------------------------------------------------------


def fingerprint(public_raw: bytes) -> str:
    """ "SHA256:" + the first 32 hex digits of sha256 of the raw 32-byte public key."""
    return "SHA256:" + hashlib.sha256(public_raw).hexdigest()[:FINGERPRINT_HEX_DIGITS]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


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
        return _public_pem(self.private.public_key()).decode("ascii")


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def _unencrypted_pem(private: Ed25519PrivateKey) -> bytes:
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_key(path: Path, force: bool = False) -> SigningKey:
    """A new key written to path (0600, folder 0700) and its public key to `<path>.pub`.

    An existing file is kept unless force; an unsafe folder is refused (InputError).
    """
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
    _make_private_folder(path.parent)
    reason = _unsafe_folder(path)
    if reason:
        raise InputError(str(path), None, f"refusing to write a key here: {reason}")
    private = Ed25519PrivateKey.generate()
    secret = _passphrase()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    write_atomic(path, pem, 0o600)
    write_atomic(public_record_file(path), _public_pem(private.public_key()), 0o644)
    return SigningKey(private, path)


def check_private_permissions(path: Path) -> None:
    """Refuse (InputError) a private key that group or others may read or write, one whose folder
    group or others may write or someone else owns, and a .pub others may write (POSIX only)."""
    if os.name != "posix":
        return
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & _GROUP_OTHER_ANY:
        raise InputError(
            str(path),
            None,
            f"private key is accessible by group or others (mode {mode:04o}); "
            f"refusing to use it (fix: chmod 600 {path})",
        )
    record = public_record_file(path)
    reason = _unsafe_reason(path, st, "file")
    if reason is None and record.exists():
        reason = _unsafe_reason(record, record.stat(), "file")
    reason = reason or _unsafe_folder(path)
    if reason:
        raise InputError(str(path), None, f"refusing to use the private key: {reason}")


def _parse_private(path: Path, data: bytes) -> Ed25519PrivateKey:
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
    return private


def _check_round_trip(path: Path, data: bytes, private: Ed25519PrivateKey) -> None:
    """An unencrypted key file must be exactly the PEM gpuhealth writes for the key it holds:
    anything else (edited, truncated, extra bytes, another encoding) is not the file we wrote.
    An encrypted key re-encrypts differently each time, so only its public key is compared."""
    if _passphrase() is None and _unencrypted_pem(private) != data:
        raise InputError(
            str(path),
            None,
            "the key file is not exactly the PKCS#8 PEM of the key it holds (edited, truncated "
            "or rewritten since it was generated); refusing to use it",
        )


def _recorded_public(record: Path, key_path: Path) -> bytes:
    """The raw public key in `<key file>.pub`; InputError when unreadable or not a public key."""
    try:
        public = serialization.load_pem_public_key(record.read_bytes())
    except (OSError, ValueError, UnsupportedAlgorithm) as exc:
        raise InputError(
            str(key_path),
            None,
            f"its recorded public key {record} cannot be read ({exc}); refusing to use the key",
        ) from None
    if not isinstance(public, Ed25519PublicKey):
        raise InputError(
            str(key_path), None, f"its recorded public key {record} is not an Ed25519 key"
        )
    return _raw_public(public)


def _record_first_use(key: SigningKey, record: Path) -> None:
    """Trust on first use: a key from an older gpuhealth has no .pub; write it now, say so once."""
    try:
        write_atomic(record, key.public_pem().encode("ascii"), 0o644)
    except OSError as exc:
        click.echo(
            f"gpuhealth: notice: {key.path}: no recorded public key and none could be written "
            f"({exc}); the key is used unchecked",
            err=True,
        )
        return
    click.echo(
        f"gpuhealth: notice: {key.path}: no recorded public key (an older gpuhealth made it); "
        f"recorded {key.fingerprint} in {record} (trust on first use: a key that differs from "
        "it is refused from now on)",
        err=True,
    )


def _check_recorded_public(key: SigningKey) -> None:
    record = public_record_file(key.path)
    if not record.exists():
        _record_first_use(key, record)
        return
    recorded = _recorded_public(record, key.path)
    if recorded != key.public_raw:
        raise InputError(
            str(key.path),
            None,
            f"its public key {key.fingerprint} differs from the one recorded when it was "
            f"generated ({record}: {fingerprint(recorded)}): the key file or its .pub was "
            f"replaced; refusing to use it (if you replaced the key yourself, remove {record} "
            "and it is recorded again on next use)",
        )


def load_key(path: Path) -> SigningKey:
    """The private key at path; InputError (exit 2) when missing, unsafe, not an Ed25519 key, not
    the file gpuhealth wrote, or not the key recorded in `<path>.pub` (recorded on first use when
    that file is missing, with a notice on stderr)."""
    if not path.is_file():
        raise InputError(str(path), None, f"no signing key here ({GENERATE_HINT})")
    check_private_permissions(path)
    data = read_bytes_file(path, MAX_KEY_BYTES)
    private = _parse_private(path, data)
    _check_round_trip(path, data, private)
    key = SigningKey(private, path)
    _check_recorded_public(key)
    return key


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
    is_file = False
    with contextlib.suppress(OSError, ValueError):  # a value too long or odd for a file name
        is_file = path.is_file()
    if is_file:
        source = str(path)
        text = decode_utf8(read_bytes_file(path, MAX_KEY_BYTES), source).strip()
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


# --- pinned signers (the trust store) ------------------------------------------------------------


@dataclass(frozen=True)
class PinnedKey:
    """One entry of the pinned file: the fingerprint, its note (after '#'), its line number."""

    fingerprint: str
    note: str
    line: int


def _store_error(where: str | Path, problem: str, fix: str | None = None) -> TrustStoreError:
    """The one-line error: where, what is wrong, and the fix (default: fix it or remove it)."""
    return TrustStoreError(
        f"the trust store cannot be read: {where}: {problem} — {fix or 'fix it or remove it'}"
    )


def _check_store_place(path: Path, st: os.stat_result) -> None:
    if os.name != "posix":
        return
    try:
        reason = _unsafe_reason(path, st, "file") or _unsafe_folder(path)
    except OSError as exc:  # a folder we cannot even stat: nothing here can be vouched for
        raise _store_error(path, exc.strerror or str(exc)) from None
    if reason:
        raise _store_error(path, f"others could change which keys are trusted: {reason}")


def _read_all(fd: int, path: Path) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_PINNED_BYTES:
                raise _store_error(path, f"larger than {MAX_PINNED_BYTES} bytes: not a pinned file")
    except OSError as exc:
        raise _store_error(path, exc.strerror or str(exc)) from None
    return b"".join(chunks)


def _read_store(path: Path) -> str | None:
    """The pinned file's text, None when it does not exist; TrustStoreError for anything else
    (unreadable, not a regular file, not UTF-8, unsafe permissions)."""
    try:
        path.lstat()
    except FileNotFoundError:
        return None  # the only case that means "nothing pinned"
    except OSError as exc:
        raise _store_error(path, exc.strerror or str(exc)) from None
    try:
        # O_NONBLOCK: a FIFO planted here must not hang the verifier
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise _store_error(path, exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _store_error(path, "not a regular file (a folder?)")
        _check_store_place(path, st)
        data = _read_all(fd, path)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _store_error(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _parse_line(line: str) -> tuple[str, str] | None:
    """(fingerprint, note) of one line, None for a blank or comment line; ValueError when bad."""
    content, _, note = line.partition("#")
    words = content.split()
    if not words:
        return None
    if len(words) != 1 or not _FINGERPRINT.fullmatch(words[0]):
        raise ValueError(line)
    return words[0], note.strip()


def _parse_store(path: Path, text: str) -> list[PinnedKey]:
    entries: list[PinnedKey] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            parsed = _parse_line(line)
        except ValueError:
            shown = line if len(line) <= 60 else line[:57] + "..."
            raise _store_error(
                f"{path}:{number}",
                f"expected a fingerprint SHA256:<32 hex digits> and an optional '# note', "
                f"found {shown!r}",
            ) from None
        if parsed:
            entries.append(PinnedKey(parsed[0], parsed[1], number))
    return entries


def pinned_keys(path: Path | None = None) -> tuple[PinnedKey, ...]:
    """Every entry of the pinned file, in file order; () only when the file does not exist.

    TrustStoreError when it exists but cannot be read, does not parse, or is unsafe.
    """
    path = path or pinned_file()
    text = _read_store(path)
    return () if text is None else tuple(_parse_store(path, text))


def pinned_fingerprints(path: Path | None = None) -> tuple[str, ...]:
    """The pinned fingerprints, each once; () only when the file does not exist (fails closed:
    TrustStoreError when it exists but cannot be read, does not parse, or is unsafe)."""
    return tuple(dict.fromkeys(entry.fingerprint for entry in pinned_keys(path)))


def _one_line_note(note: str) -> str:
    # a newline in a note (e.g. from a file name) would start a line of its own: a forged pin
    return " ".join(note.split())


def _write_store(path: Path, text: str) -> None:
    try:
        _make_private_folder(path.parent)
    except OSError as exc:
        raise _store_error(path, f"cannot make its folder ({exc.strerror or exc})") from None
    reason = _unsafe_folder(path)
    if reason:
        raise _store_error(path, f"refusing to write into it: {reason}")
    try:
        write_atomic(path, text.encode("utf-8"), 0o600)
    except OSError as exc:
        raise _store_error(path, f"cannot write it ({exc.strerror or exc})") from None


def pin(fingerprint_: str, note: str = "", path: Path | None = None) -> bool:
    """Add a fingerprint (with a one-line note) to the pinned file; False when pinned already.

    TrustStoreError when the existing store cannot be read or is unsafe (nothing is written).
    """
    path = path or pinned_file()
    text = _read_store(path) or ""
    if any(entry.fingerprint == fingerprint_ for entry in _parse_store(path, text)):
        return False
    note = _one_line_note(note)
    if text and not text.endswith("\n"):
        text += "\n"
    text += f"{fingerprint_}  # {note}\n" if note else f"{fingerprint_}\n"
    _write_store(path, text)
    return True


def unpin(fingerprint_: str, path: Path | None = None) -> tuple[PinnedKey, ...]:
    """Remove every line pinning fingerprint_, keeping all other lines as they are; the removed
    entries ((): it was not pinned, nothing written). TrustStoreError as for pin."""
    path = path or pinned_file()
    text = _read_store(path)
    if text is None:
        return ()
    removed = tuple(e for e in _parse_store(path, text) if e.fingerprint == fingerprint_)
    if removed:
        gone = {entry.line for entry in removed}
        lines = text.splitlines(keepends=True)
        _write_store(path, "".join(x for n, x in enumerate(lines, 1) if n not in gone))
    return removed
