"""The signing-key commands: keys generate|show|list|export-public|pin|unpin.

cli/main.py adds them to its group with `register(main)`; errors are gpuhealth's own (InputError:
exit 2, TrustStoreError: exit 6), turned into one line by the main group.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from gpuhealth.certificate.keys import PinnedKey, SigningKey

F = TypeVar("F", bound=Callable[..., Any])


def key_file_option(func: F) -> F:
    return click.option(
        "--key-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Private signing key file (default: $GPUHEALTH_KEY_FILE, else "
        "<app dir>/keys/signing.key; `gpuhealth keys show` prints where).",
    )(func)


@click.group()
def keys() -> None:
    """Signing keys: gpuhealth signs every report it writes when a key exists.

    The private key is a PEM file (PKCS#8), owner-only (0600, folder 0700), by default
    <app dir>/keys/signing.key (GPUHEALTH_CONFIG_DIR moves the app dir, GPUHEALTH_KEY_FILE the key
    file). It is unencrypted unless GPUHEALTH_KEY_PASSPHRASE is set when it is generated; then that
    passphrase must be set whenever the key is used. `generate` also records the public key next
    to it (<key file>.pub). A key is refused (exit 2, saying the fix) when group or others may read
    it, when group or others may write it, its folder or its .pub, when the file is not exactly
    the key gpuhealth wrote, or when its public key differs from the recorded one.

    Trust on first use: a key made by an older gpuhealth has no .pub; the first command that uses
    it records its public key there and says so once on stderr. Check the fingerprint it prints.

    Pinned keys (<app dir>/keys/pinned) are the signers `gpuhealth verify` trusts. If that file
    exists but cannot be read, does not parse, or group or others may write it or its folder,
    nothing is trusted and the commands that read it stop with exit 6: fix it or remove it.
    """


@keys.command("generate")
@key_file_option
@click.option("--force", is_flag=True, help="Replace an existing key (the old one is lost).")
def keys_generate(key_file: Path | None, force: bool) -> None:
    """Create a signing key. Never overwrites an existing key without --force."""
    from gpuhealth.certificate.keys import PASSPHRASE_ENV, default_key_file, generate_key

    key = generate_key(key_file or default_key_file(), force)
    protection = (
        f"encrypted with ${PASSPHRASE_ENV}"
        if os.environ.get(PASSPHRASE_ENV)
        else f"unencrypted, owner-only; set {PASSPHRASE_ENV} before generating to encrypt it"
    )
    click.echo(f"generated signing key {key.fingerprint}")
    click.echo(f"  private key: {key.path} ({protection})")
    click.echo(f"  public key:  {key.public_b64}")
    click.echo(
        "  give buyers the public key: gpuhealth keys export-public -o gpuhealth-signing.pub"
    )


@keys.command("show")
@key_file_option
def keys_show(key_file: Path | None) -> None:
    """Show the signing key: fingerprint, public key and file; and the pinned keys."""
    from gpuhealth.certificate.keys import (
        default_key_file,
        load_key,
        pinned_file,
        pinned_fingerprints,
    )

    key = load_key(key_file or default_key_file())
    click.echo(f"fingerprint: {key.fingerprint}")
    click.echo(f"public key:  {key.public_b64}")
    click.echo(f"file:        {key.path}")
    pinned = pinned_fingerprints()
    click.echo(f"pinned keys: {len(pinned)} ({pinned_file()})")


@keys.command("export-public")
@key_file_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of standard output.",
)
def keys_export_public(key_file: Path | None, output: Path | None) -> None:
    """Write the public key as a small PEM file ("BEGIN PUBLIC KEY").

    The standard SubjectPublicKeyInfo form; it holds nothing secret. Give it to buyers: they
    check reports with `gpuhealth verify REPORT --key FILE`, or trust it for good with
    `gpuhealth keys pin FILE`. OpenSSL reads it too (openssl pkey -pubin -in FILE -text).
    """
    from gpuhealth.certificate.keys import default_key_file, load_key

    key = load_key(key_file or default_key_file())
    if output:
        output.write_text(key.public_pem(), encoding="ascii")
        click.echo(f"wrote {output}: public key {key.fingerprint}", err=True)
    else:
        click.echo(key.public_pem(), nl=False)


@keys.command("pin")
@click.argument("public_key", metavar="PUBKEY")
def keys_pin(public_key: str) -> None:
    """Trust a signer: verify then checks reports against the pinned keys.

    PUBKEY: a public key file (the PEM from `keys export-public`), the base64 raw key, or a
    fingerprint SHA256:<32 hex digits>. Pinned fingerprints live in <app dir>/keys/pinned, one a
    line, with the file name as a note. Refused (exit 6) when that file is unsafe or unreadable.
    """
    from gpuhealth.certificate.keys import pin, pinned_file, public_key_fingerprint

    fingerprint = public_key_fingerprint(public_key, "PUBKEY")
    note = public_key if Path(public_key).is_file() else ""
    if pin(fingerprint, note):
        click.echo(f"pinned {fingerprint} in {pinned_file()}")
    else:
        click.echo(f"{fingerprint} is pinned already ({pinned_file()})")


@keys.command("unpin")
@click.argument("public_key", metavar="PUBKEY")
def keys_unpin(public_key: str) -> None:
    """Stop trusting a signer: remove its key from the pinned keys.

    PUBKEY as for `keys pin`. Every other line of the pinned file is kept as it is. A key that is
    not pinned is an error (exit 2).
    """
    from gpuhealth.certificate.keys import pinned_file, public_key_fingerprint, unpin
    from gpuhealth.errors import InputError

    fingerprint = public_key_fingerprint(public_key, "PUBKEY")
    if not unpin(fingerprint):
        raise InputError(
            "PUBKEY",
            None,
            f"{fingerprint} is not pinned in {pinned_file()} (gpuhealth keys list shows them)",
        )
    click.echo(f"unpinned {fingerprint} from {pinned_file()}")


@keys.command("list")
@key_file_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def keys_list(key_file: Path | None, as_json: bool) -> None:
    """List the pinned keys and your own signing key, if there is one.

    Each pinned key with its fingerprint and note.

    JSON: {"signing_key": {"fingerprint", "public_key", "file"} or null, "pinned_file",
    "pinned": [{"fingerprint", "note"}]}.
    """
    from gpuhealth.certificate.keys import (
        GENERATE_HINT,
        default_key_file,
        find_key,
        pinned_file,
        pinned_keys,
    )

    pinned = pinned_keys()  # first: a broken trust store is the answer (exit 6)
    own = find_key(key_file or default_key_file())
    if as_json:
        click.echo(json.dumps(_list_json(own, pinned), indent=2))
        return
    if own:
        click.echo(f"signing key: {own.fingerprint} ({own.path})")
    else:
        click.echo(f"signing key: none ({key_file or default_key_file()}; {GENERATE_HINT})")
    if not pinned:
        click.echo(f"pinned keys: none ({pinned_file()}; to trust a seller: keys pin THEIR.pub)")
        return
    click.echo(f"pinned keys: {len(pinned)} ({pinned_file()})")
    for entry in pinned:
        click.echo(f"  {entry.fingerprint}  {entry.note}".rstrip())


def _list_json(own: SigningKey | None, pinned: tuple[PinnedKey, ...]) -> dict[str, Any]:
    from gpuhealth.certificate.keys import pinned_file

    return {
        "signing_key": (
            {"fingerprint": own.fingerprint, "public_key": own.public_b64, "file": str(own.path)}
            if own
            else None
        ),
        "pinned_file": str(pinned_file()),
        "pinned": [{"fingerprint": e.fingerprint, "note": e.note} for e in pinned],
    }


def register(main: click.Group) -> None:
    main.add_command(keys)
