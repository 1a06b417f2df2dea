"""The folders show the flow (docs/architecture.md): each stage package imports only the stages
below it, so a record is judged, certified and stored with no GPU code loaded.

    shared (top-level modules: the record, errors, data files)
      <- judge <- certificate <- store <- measure <- cli
      <- screen (judges nvidia-smi reports: shared, judge, certificate)

Read from the source (every `import` and `from ... import`, inside functions and TYPE_CHECKING
blocks too), so a lazy import cannot hide a dependency. `test_a_planted_backend_import_fails`
shows the check failing when a judge or certificate module imports a backend.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from simkit import REPO

PACKAGE = REPO / "gpuhealth"
SHARED = "shared"
# what each stage may import (itself included); cli and __main__ may import anything
MAY_IMPORT: dict[str, frozenset[str]] = {
    SHARED: frozenset({SHARED}),
    "judge": frozenset({SHARED, "judge"}),
    "certificate": frozenset({SHARED, "judge", "certificate"}),
    "store": frozenset({SHARED, "judge", "certificate", "store"}),
    "screen": frozenset({SHARED, "judge", "certificate", "screen"}),
    "measure": frozenset({SHARED, "judge", "certificate", "store", "measure"}),
}
STAGES = ("measure", "judge", "certificate", "store", "cli", "screen")
# the only modules that may import the GPU libraries (ruff's banned-api says the same)
GPU_LIBRARIES = {
    "cupy": {"gpuhealth.measure.backends.cuda", "gpuhealth.measure.backends.kernels"},
    "pynvml": {"gpuhealth.measure.backends.nvml"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_sources() -> dict[str, str]:
    return {module_name(p): p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}


def imported_modules(name: str, source: str, known: Mapping[str, str]) -> Iterator[str]:
    """Every module `name` imports: for `from pkg import sub`, the submodule when `sub` is one
    (the package's own code is not what the import is after), else `pkg`."""
    package = name if _is_package(name, known) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            subs = [f"{base}.{alias.name}" for alias in node.names]
            found = [s for s in subs if s in known]
            yield from found if len(found) == len(subs) else [base, *found]


def _is_package(name: str, known: Mapping[str, str]) -> bool:
    return any(other.startswith(name + ".") for other in known)


def stage_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in STAGES:
        return parts[1]
    return "main" if module == "gpuhealth.__main__" else SHARED


def violations(sources: Mapping[str, str]) -> list[str]:
    """One line per import a stage may not make, and per GPU library imported outside the
    backends that own it."""
    found = []
    for name, source in sorted(sources.items()):
        stage = stage_of(name)
        for target in imported_modules(name, source, sources):
            root = target.split(".")[0]
            if root in GPU_LIBRARIES and name not in GPU_LIBRARIES[root]:
                found.append(f"{name} imports {root}: only {sorted(GPU_LIBRARIES[root])} may")
            if root != "gpuhealth" or stage in ("cli", "main"):
                continue
            target_stage = stage_of(target)
            if target_stage == "cli":
                found.append(f"{name} imports {target}: nothing imports the CLI")
            elif target_stage not in MAY_IMPORT[stage]:
                allowed = ", ".join(sorted(MAY_IMPORT[stage]))
                found.append(f"{name} ({stage}) imports {target} ({target_stage}): {allowed} only")
    return found


def test_every_stage_imports_only_what_it_may() -> None:
    sources = package_sources()
    assert len(sources) > 80, "the package's modules were not found"
    assert violations(sources) == []


@pytest.mark.parametrize(
    ("module", "planted", "said"),
    [
        (
            "gpuhealth.judge.grading",
            "from gpuhealth.measure.backends.sim import SimBackend",
            "imports gpuhealth.measure.backends.sim (measure): judge, shared only",
        ),
        (
            "gpuhealth.certificate.verify",
            "    from gpuhealth.measure.backends import open_backend",
            "imports gpuhealth.measure.backends (measure): certificate, judge, shared only",
        ),
        ("gpuhealth.judge.stats", "import cupy", "imports cupy: only"),
        (
            "gpuhealth.store.database",
            "from gpuhealth.cli.main import main",
            "imports gpuhealth.cli.main: nothing imports the CLI",
        ),
        (
            "gpuhealth.models",
            "from gpuhealth.judge import grading",
            "imports gpuhealth.judge.grading (judge): shared only",
        ),
    ],
)
def test_a_planted_backend_import_fails(module: str, planted: str, said: str) -> None:
    """The check itself: one forbidden import planted in a real module's source is reported,
    naming the module and what it imported (a lazy import inside a function included)."""
    sources = package_sources()
    assert module in sources
    if planted.startswith(" "):  # inside a function, as the lazy imports are
        planted = f"def _planted() -> None:\n{planted}\n"
    sources[module] = f"{sources[module]}\n{planted}\n"
    found = violations(sources)
    assert len(found) == 1, found
    assert found[0].startswith(f"{module} ") and said in found[0], found[0]


def test_from_package_import_submodule_is_the_submodule() -> None:
    """`from gpuhealth.measure.backends import kernels` depends on kernels, not on the package's
    __init__ (which would make every backend user depend on every backend)."""
    sources = package_sources()
    deps = set(
        imported_modules(
            "gpuhealth.measure.backends.cuda",
            "from gpuhealth.measure.backends import kernels",
            sources,
        )
    )
    assert deps == {"gpuhealth.measure.backends.kernels"}


def test_the_store_schema_does_not_import_the_database() -> None:
    """store.py and store_schema.py used to import each other; schema is now below database."""
    sources = package_sources()
    deps = set(
        imported_modules("gpuhealth.store.schema", sources["gpuhealth.store.schema"], sources)
    )
    assert not any(d.startswith("gpuhealth.store.database") for d in deps), deps


def test_each_stage_package_says_what_it_does_and_may_import() -> None:
    for stage in ("measure", "judge", "certificate", "store"):
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text("utf-8")))
        assert doc is not None and "May import" in doc, stage
