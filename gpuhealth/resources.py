"""Find the top-level folders kernels/ and reports/ from a source checkout or an installed wheel.

In a checkout they sit beside the package; a wheel carries them inside it as gpuhealth/_shipped/
(pyproject.toml, force-include). The package's own data (profiles, policy, sim cards, schema) is
always inside gpuhealth/.
"""

from __future__ import annotations

from pathlib import Path

from gpuhealth.errors import EnvironmentUnusable

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"


def shipped_dir(name: str) -> Path:
    """The folder `name` (kernels or reports), wherever this installation keeps it."""
    for candidate in (PACKAGE_DIR / "_shipped" / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise EnvironmentUnusable(
        f"gpuhealth's {name}/ folder is missing",
        hint="reinstall gpuhealth (pip install --force-reinstall gpuhealth)",
    )


def kernels_dir() -> Path:
    return shipped_dir("kernels")


def reports_dir() -> Path:
    return shipped_dir("reports")
