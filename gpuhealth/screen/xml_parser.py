"""`nvidia-smi -q -x` XML into the same trees as the text parser, with the line of each element.

The file comes from a seller or a node, so it is untrusted: parsed with the standard library's
expat directly (xml.etree keeps no line numbers), which never fetches the external DTD that every
report names, and any entity declaration is refused before it could expand (the "billion laughs"
that defusedxml guards against; nvidia-smi never declares entities), so no new dependency.
"""

from __future__ import annotations

import re
from xml.parsers import expat

from gpuhealth.screen.tree import GpuSection, Node, Report, bad_report, key_of

ROOT = "nvidia_smi_log"
_HOST = re.compile(r"^\s*host:\s*(\S.*?)\s*$")


class _EntityDeclared(Exception):
    pass


def parse_xml(text: str, source: str) -> Report:
    parser = expat.ParserCreate()
    stack: list[Node] = []
    roots: list[Node] = []
    gpu_ids: dict[int, str] = {}
    hosts: list[str] = []
    texts: dict[int, list[str]] = {}

    def start(name: str, attrs: dict[str, str]) -> None:
        node = Node(key_of(name), None, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(node)
        if name == "gpu" and len(stack) == 1:
            gpu_ids[id(node)] = attrs.get("id", "")
        stack.append(node)
        texts[id(node)] = []

    def end(_name: str) -> None:
        node = stack.pop()
        value = "".join(texts.pop(id(node))).strip()
        node.value = value or None

    def chars(data: str) -> None:
        if stack:
            texts[id(stack[-1])].append(data)

    def comment(data: str) -> None:
        found = _HOST.match(data)
        if found:
            hosts.append(found.group(1))

    def entity(*_args: object) -> None:
        raise _EntityDeclared

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.CommentHandler = comment
    parser.EntityDeclHandler = entity
    try:
        parser.Parse(text.encode("utf-8"), True)
    except _EntityDeclared:
        raise bad_report(
            source,
            "declares an XML entity, which nvidia-smi never does: refused",
            parser.ErrorLineNumber,
        ) from None
    except expat.ExpatError as error:
        what = expat.errors.messages[error.code] if error.code else str(error)
        raise bad_report(
            source, f"not well-formed XML ({what}): a truncated or damaged report", error.lineno
        ) from None
    if not roots or roots[0].key != ROOT:
        got = roots[0].key if roots else "nothing"
        raise bad_report(source, f"root element <{got}>, expected <{ROOT}> (nvidia-smi -q -x)")
    log = roots[0]
    gpus = tuple(
        GpuSection(gpu_ids.get(id(node)) or _bus_id(node), node.line, node)
        for node in log.children
        if node.key == "gpu"
    )
    if not gpus:
        raise bad_report(source, f"no <gpu> element in <{ROOT}>: a report of no GPU")
    attached = log.find("attached_gpus")
    if (
        attached
        and attached.value
        and attached.value.isdigit()
        and int(attached.value) != len(gpus)
    ):
        raise bad_report(
            source, f"<attached_gpus> says {attached.value} but the file holds {len(gpus)} <gpu>"
        )
    driver = log.find("driver_version")
    return Report(
        source, "xml", driver.value if driver else None, hosts[0] if hosts else None, gpus
    )


def _bus_id(node: Node) -> str:
    bus = node.find("pci/pci_bus_id")
    return bus.value if bus and bus.value else f"gpu at line {node.line}"
