"""`nvidia-smi -q` text into one tree per GPU.

The layout is "Name : value" padded to a column, sections by four-space indentation, one block per
GPU that starts "GPU 00000000:AD:00.0" at the margin. Names and nesting change between drivers
(fields.py holds each driver's path); the parser keeps whatever is there, known or not.
"""

from __future__ import annotations

import re

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


def parse_text(text: str, source: str) -> Report:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    host = next((m.group(1) for line in lines if (m := _HOST.match(line))), None)
    start = next((i for i, line in enumerate(lines) if line.strip() == BANNER), None)
    if start is None:
        raise bad_report(source, f"no '{BANNER}' line: not the output of nvidia-smi -q")
    header: dict[str, str] = {}
    gpus: list[GpuSection] = []
    stack: list[tuple[int, Node]] = []
    for number, raw in enumerate(lines[start + 1 :], start=start + 2):
        line = raw.rstrip()
        if not line.strip() or line.startswith("#"):
            continue
        found = _GPU_HEADER.match(line)
        if found:
            root = Node("gpu", found.group(1), number)
            gpus.append(GpuSection(found.group(1), number, root))
            stack = [(-1, root)]
            continue
        indent = len(line) - len(line.lstrip(" "))
        label, sep, value = line.strip().partition(":")
        value = value.strip() if sep else ""
        if not stack:  # before the first GPU: Timestamp, Driver Version, Attached GPUs
            if indent or not sep:
                raise bad_report(source, f"unexpected line {line.strip()!r} before any GPU", number)
            header[key_of(label)] = value
            continue
        if indent == 0:
            raise bad_report(source, f"unexpected line {line.strip()!r} between GPUs", number)
        while stack[-1][0] >= indent:
            stack.pop()
        node = Node(key_of(label), value or None, number)
        stack[-1][1].children.append(node)
        stack.append((indent, node))
    _check_whole(source, header, gpus, len(lines))
    return Report(source, "text", header.get("driver version"), host, tuple(gpus))


def _check_whole(source: str, header: dict[str, str], gpus: list[GpuSection], end: int) -> None:
    if not gpus:
        raise bad_report(source, "no 'GPU <bus id>' block: an nvidia-smi -q report of no GPU")
    attached = header.get("attached gpus")
    if attached is not None and attached.isdigit() and int(attached) != len(gpus):
        raise bad_report(
            source,
            f"truncated: 'Attached GPUs : {attached}' but {len(gpus)} GPU block(s) in the file",
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
