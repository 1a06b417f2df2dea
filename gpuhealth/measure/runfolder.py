"""Run folders: names built from sanitised card data, never concatenated from it; an existing
record never overwritten without --force; a folder that cannot be written found before measuring.

A serial, a name or a run id comes from the card or from a file: `../../x` or `a/b` must not
choose where gpuhealth writes. safe_name keeps [A-Za-z0-9._-], no leading dot, a bounded length,
and adds a short hash of the original whenever it changed anything, so that two different serials
never share a folder. Every folder built from such a name is checked to resolve under its root.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import uuid
from pathlib import Path

from gpuhealth.errors import InputError, OutputUnwritable

MAX_NAME = 96
HASH_CHARS = 8
RECORD_FILES = ("run.json", "report.html", "report.md")
RESCUE_ENV = "GPUHEALTH_RESCUE_DIR"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str, max_len: int = MAX_NAME) -> str:
    """A file name made from untrusted text: the text itself when it is already safe."""
    cleaned = _UNSAFE.sub("_", text).lstrip(".")
    if cleaned == text and cleaned and len(cleaned) <= max_len:
        return cleaned
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    stem = (cleaned or "x")[: max_len - HASH_CHARS - 1]
    return f"{stem}-{digest}"


def inside(root: Path, name: str) -> Path:
    """root / safe_name(name), verified to resolve under root (a link cannot lead elsewhere)."""
    folder = root / safe_name(name)
    resolved_root = root.resolve()
    if not folder.resolve().is_relative_to(resolved_root):
        raise InputError(str(folder), None, f"expected a folder under {resolved_root}")
    return folder


def record_in(folder: Path) -> Path | None:
    """The first record file the folder already holds, if any."""
    return next((folder / name for name in RECORD_FILES if (folder / name).exists()), None)


def refuse_existing(folder: Path, force: bool) -> None:
    """An existing record is never overwritten without --force."""
    found = record_in(folder)
    if found is not None and not force:
        raise InputError(
            str(found),
            None,
            "a run record is there already: choose another --out, or pass --force to overwrite it",
        )


def check_writable(folder: Path) -> None:
    """Create the folder and write a probe file in it: a read-only or full disk is found before
    anything is measured (OutputUnwritable, exit 3)."""
    probe = folder / f".gpuhealth-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as exc:
        raise OutputUnwritable(Path(exc.filename or folder), exc, "nothing was measured") from exc
    finally:  # the run creates its folders when it opens the card: none is left by a refusal
        for made in created:
            with contextlib.suppress(OSError):
                made.rmdir()


def rescue_dir() -> Path:
    """Where a record goes when its run folder cannot be written ($GPUHEALTH_RESCUE_DIR, else
    gpuhealth-rescue in the temp folder)."""
    named = os.environ.get(RESCUE_ENV)
    return Path(named) if named else Path(tempfile.gettempdir()) / "gpuhealth-rescue"


def rescue(run_id: str, data: bytes) -> str:
    """Keep a record its run folder refused; returns where it is, or why it could not be kept."""
    target = inside(rescue_dir(), run_id) / "run.json"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        return f"the measurements could not be kept either ({target}: {exc.strerror or exc})"
    return f"the measurements are kept in {target}"
