"""One way to replace a file: whole or not at all.

A temp file in the same folder (so that the rename stays on one file system), written, fsynced,
renamed over the target; on any failure the temp file is removed and the target is untouched. Run
records, reports, profiles, PDFs, keys and the trust store all go through it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def write_atomic(
    path: Path, data: bytes, mode: int | None = None, *, sync_folder: bool = False
) -> None:
    """Replace path with data. mode: the file's exact permissions (set before any byte is
    written: a key is never readable by others, even for a moment); None: 0666 less the umask, as
    open() gives. sync_folder: also fsync the folder, so that the rename survives a power cut."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        _write_then_replace(tmp, path, data, mode)
    except OSError as error:  # named by the file asked for, never the temporary one
        raise OSError(error.errno, error.strerror, str(path)) from error
    if sync_folder:
        fsync_folder(path.parent)


def _write_then_replace(tmp: Path, path: Path, data: bytes, mode: int | None) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None else 0o666)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def fsync_folder(folder: Path) -> None:
    """Make a rename in folder durable (a power cut after it keeps the new file)."""
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
