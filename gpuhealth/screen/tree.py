"""The report as a tree: what both parsers produce, and the only thing the rest reads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuhealth.errors import InputError

# Size bound of one report: a 16-GPU `nvidia-smi -q -x` is about 1.5 MB.
MAX_REPORT_BYTES = 16 * 2**20
_SPACES = re.compile(r"\s+")


def key_of(label: str) -> str:
    """A field's name in one spelling: "ECC Mode" and "Ecc Mode" (drivers differ) are "ecc mode"."""
    return _SPACES.sub(" ", label.strip()).lower()


@dataclass
class Node:
    """One named field or section; a section can carry a value too ("HW Slowdown : Active")."""

    key: str
    value: str | None
    line: int
    children: list[Node] = field(default_factory=list)

    def find(self, path: str) -> Node | None:
        """The node at "a/b/c" below this one (names as key_of spells them)."""
        node: Node | None = self
        for part in path.split("/"):
            assert node is not None
            node = next((c for c in node.children if c.key == part), None)
            if node is None:
                return None
        return node


@dataclass(frozen=True)
class GpuSection:
    """One GPU of a report: its bus id (as the report names it) and its fields."""

    bus_id: str
    line: int
    root: Node
    host: str | None = None  # a text file may hold several hosts' reports, each after "# host:"
    driver_version: str | None = None


@dataclass(frozen=True)
class Report:
    source: str
    kind: str  # "text" or "xml"
    driver_version: str | None
    host: str | None  # from a "# host:" header line or a "<!-- host: -->" comment
    gpus: tuple[GpuSection, ...]


def bad_report(source: str, expected: str, line: int | None = None) -> InputError:
    return InputError(source, None, expected, line=line)
