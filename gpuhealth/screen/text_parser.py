"""`nvidia-smi -q` text into one tree per GPU.

The layout is "Name : value" padded to a column, sections by four-space indentation, one block per
GPU that starts "GPU 00000000:AD:00.0" at the margin. Names and nesting change between drivers
(fields.py holds each driver's path); the parser keeps whatever is there, known or not.

A fleet's log may hold several reports one after another (`ssh $h nvidia-smi -q >> all.txt`),
each starting with the NVSMI LOG banner, optionally after a "# host: NAME" line: each is read with
its own header (driver, attached GPUs) and host. A line at the margin after a report's GPU blocks
(a shell prompt) ends that report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpuhealth.screen.tree import GpuSection, Node, Report, bad_report, key_of

BANNER = "==============NVSMI LOG=============="
_GPU_HEADER = re.compile(r"^GPU ([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f])\s*$")
_HOST = re.compile(r"^#\s*host:\s*(\S.*?)\s*$")
# The last section of every GPU block in every driver from 470 on (570 adds Capabilities after it,
# still inside the block): a block without it was cut short.
LAST_SECTION = "processes"
_TABLE_MARKS = ("NVIDIA-SMI", "Driver Version:")


def is_plain_table(text: str) -> bool:
    """The default `nvidia-smi` table ("| NVIDIA-SMI 550.54 ... |"), not the -q report."""
    return all(mark in text for mark in _TABLE_MARKS) and "|" in text


@dataclass
class _Section:
    """One report (banner, header, GPU blocks) of a file."""

    line: int
    host: str | None
    header: dict[str, str] = field(default_factory=dict)
    gpus: list[GpuSection] = field(default_factory=list)
    ended: bool = False  # a line at the margin after its GPU blocks


def parse_text(text: str, source: str) -> Report:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    sections: list[_Section] = []
    host: str | None = None
    stack: list[tuple[int, Node]] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        if (found_host := _HOST.match(line)) is not None:
            host = found_host.group(1)
        if not line.strip() or line.startswith("#"):
            continue
        if line.strip() == BANNER:
            sections.append(_Section(number, host))
            stack = []
            continue
        if not sections or sections[-1].ended:
            continue  # before the first banner, or after a report ended: not a report's line
        section = sections[-1]
        found = _GPU_HEADER.match(line)
        if found:
            root = Node("gpu", found.group(1), number)
            gpu = GpuSection(
                found.group(1), number, root, section.host, section.header.get("driver version")
            )
            section.gpus.append(gpu)
            stack = [(-1, root)]
            continue
        indent = len(line) - len(line.lstrip(" "))
        label, sep, value = line.strip().partition(":")
        value = value.strip() if sep else ""
        if not stack:  # before the first GPU: Timestamp, Driver Version, Attached GPUs
            if indent or not sep:
                raise bad_report(source, f"unexpected line {line.strip()!r} before any GPU", number)
            section.header[key_of(label)] = value
            continue
        if indent == 0:
            section.ended = True
            stack = []
            continue
        while stack[-1][0] >= indent:
            stack.pop()
        node = Node(key_of(label), value or None, number)
        stack[-1][1].children.append(node)
        stack.append((indent, node))
    if not sections:
        raise bad_report(source, f"no '{BANNER}' line: not the output of nvidia-smi -q")
    for section in sections:
        _check_whole(source, section, len(lines))
    gpus = tuple(gpu for section in sections for gpu in section.gpus)
    first = sections[0]
    return Report(source, "text", first.header.get("driver version"), first.host, gpus)


def _check_whole(source: str, section: _Section, end: int) -> None:
    gpus = section.gpus
    if not gpus:
        raise bad_report(
            source, "no 'GPU <bus id>' block: an nvidia-smi -q report of no GPU", section.line
        )
    attached = section.header.get("attached gpus")
    if attached is not None and attached.isdigit() and int(attached) != len(gpus):
        raise bad_report(
            source,
            f"truncated: 'Attached GPUs : {attached}' but {len(gpus)} GPU block(s) follow",
            section.line,
        )
    for gpu in gpus:
        if gpu.root.find(LAST_SECTION) is None:
            raise bad_report(
                source,
                f"truncated: GPU {gpu.bus_id} (line {gpu.line}) has no '{LAST_SECTION.title()}' "
                "section, the last of every block: the file was cut short or filtered (-d); "
                "screen the whole output of nvidia-smi -q",
                end if gpu is gpus[-1] else None,
            )
