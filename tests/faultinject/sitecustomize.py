"""A full disk for the fault-injection tests (tests/test_fault_injection.py).

Python imports this module at start-up in every process whose PYTHONPATH holds this folder: the
grade and the workers it spawns. When GPUHEALTH_TEST_FULL_DISK names a folder, the atomic writer
(gpuhealth.atomicfile.write_atomic: every run.json and report) fails with ENOSPC for files under
it once GPUHEALTH_TEST_FULL_AFTER writes there have succeeded, counted across processes in a file
beside the folder. Writes elsewhere (the rescue folder) go through.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def _install(folder: str) -> None:
    from gpuhealth import atomicfile

    real = atomicfile.write_atomic
    root = Path(folder).resolve()
    counter = root.parent / f"{root.name}.writes"
    allowed = int(os.environ.get("GPUHEALTH_TEST_FULL_AFTER", "0"))

    def write_atomic(
        path: Path, data: bytes, mode: int | None = None, *, sync_folder: bool = False
    ) -> None:
        if Path(path).resolve().is_relative_to(root):
            done = counter.stat().st_size if counter.exists() else 0
            if done >= allowed:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            with open(counter, "ab") as handle:
                handle.write(b".")
        real(path, data, mode, sync_folder=sync_folder)

    atomicfile.write_atomic = write_atomic


if os.environ.get("GPUHEALTH_TEST_FULL_DISK"):
    _install(os.environ["GPUHEALTH_TEST_FULL_DISK"])
