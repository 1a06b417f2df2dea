"""A file into a Report: which kind of nvidia-smi output it is, or one line saying why not."""

from __future__ import annotations

from pathlib import Path

from gpuhealth.datafiles import read_bytes_file
from gpuhealth.screen.text_parser import BANNER, is_plain_table, parse_text
from gpuhealth.screen.tree import MAX_REPORT_BYTES, Report, bad_report
from gpuhealth.screen.xml_parser import parse_xml

# Folders are screened by these names (a fleet's log folder holds other files too).
REPORT_SUFFIXES = (".txt", ".log", ".xml", ".out")


def load_report(path: Path) -> Report:
    source = str(path)
    data = read_bytes_file(path, MAX_REPORT_BYTES)
    text = _decode(data, source)
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#")).strip()
    if not body:
        raise bad_report(source, "empty: expected the output of nvidia-smi -q or -q -x")
    if body.startswith("<"):
        return parse_xml(text, source)
    if BANNER in text:
        return parse_text(text, source)
    if is_plain_table(text):
        raise bad_report(
            source,
            "the plain nvidia-smi table, which has no health counters: expected "
            "nvidia-smi -q (or -q -x) output",
        )
    raise bad_report(
        source, "not an nvidia-smi report: expected the output of nvidia-smi -q or -q -x"
    )


def _decode(data: bytes, source: str) -> str:
    """UTF-8, or UTF-16 with its byte-order mark (PowerShell's `>` writes that on Windows)."""
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise bad_report(
            source, f"not text (byte {error.start} is not UTF-8): expected nvidia-smi output"
        ) from None


def report_files(paths: list[Path]) -> list[Path]:
    """The files named, and the report files in the folders named (sorted, not hidden)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in REPORT_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            files.append(path)
    return files
