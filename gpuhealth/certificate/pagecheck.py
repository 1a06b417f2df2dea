"""The page is the record: a report.html must be exactly the page its embedded record renders.

`gpuhealth verify report.html` renders the certificate again from the embedded (signed) record and
requires the file to be that page byte for byte: a person reads the page, so an edited grade box, a
hidden finding or a changed style is as bad as an edited record. A difference is named by the
first thing a reader would see differently ("the page shows grade A; the signed record says F"),
or, when the visible text is the same, by the first changed markup.

Pages are rendered by the gpuhealth version named in their generator tag; another version renders
another page, so a page of another version cannot be checked here (unproven, never passed).
"""

from __future__ import annotations

import html
import re

from gpuhealth import __version__
from gpuhealth.certificate.checks import Check
from gpuhealth.certificate.report import render
from gpuhealth.errors import EXIT_VERSION_UNCHECKABLE
from gpuhealth.models import RunRecord

_GENERATOR = re.compile(r'<meta name="generator" content="gpuhealth ([^"<>]*)">')
_LETTER = re.compile(r'<div class="letter[^"]*">([^<]*)</div>')
_HIDDEN = re.compile(r"<(script|style|head)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_BLOCK = re.compile(
    r"</?(?:p|div|section|header|footer|h\d|tr|li|table|thead|tbody|ul|ol|br|figure|caption)"
    r"\b[^>]*>",
    re.IGNORECASE,
)
_TAG = re.compile(r"<[^>]*>")
SHOWN = 80  # characters of a differing line shown


def page_check(page: str, record: RunRecord) -> Check:
    """The page check of one report.html whose embedded record validated."""
    generator = _GENERATOR.search(page)
    rendered_by = html.unescape(generator.group(1)) if generator else None
    expected = render(record, "html")
    if page == expected:
        return Check(
            "page",
            "pass",
            "the page is exactly the certificate its signed record renders: what it shows is "
            "what was signed",
        )
    shown, signed = _LETTER.findall(page)[:1], _LETTER.findall(expected)[:1]
    if shown != signed:  # every version prints the record's grade in the grade box
        return Check(
            "page",
            "fail",
            first_visible_difference(page, expected),
            action="read the grade from `gpuhealth verify`, not from this page",
        )
    if rendered_by != __version__:
        said = f"gpuhealth {rendered_by}" if rendered_by else "an unnamed renderer"
        return Check(
            "page",
            "unproven",
            f"the page was rendered by {said}; this gpuhealth ({__version__}) renders another "
            "page, so what it shows cannot be compared with the signed record",
            EXIT_VERSION_UNCHECKABLE,
            "verify run.json instead (the page is only a rendering of it), or verify the page "
            f"with gpuhealth {rendered_by}"
            if rendered_by
            else "verify run.json instead",
        )
    return Check(
        "page",
        "fail",
        first_visible_difference(page, expected),
        action="read the grade from `gpuhealth verify`, not from this page",
    )


def first_visible_difference(page: str, expected: str) -> str:
    """What a reader sees differently on the page than on the record's own rendering."""
    shown, signed = _LETTER.findall(page), _LETTER.findall(expected)
    if shown[:1] != signed[:1]:
        page_grade = html.unescape(shown[0]) if shown else "no grade"
        return (
            f"the page shows grade {page_grade}; the signed record says "
            f"{html.unescape(signed[0]) if signed else 'no grade'}"
        )
    page_lines, record_lines = visible_lines(page), visible_lines(expected)
    for number, (seen, meant) in enumerate(zip(page_lines, record_lines, strict=False), 1):
        if seen != meant:
            return (
                f"the page shows {_cut(seen)!r} where the signed record reads {_cut(meant)!r} "
                f"(visible line {number})"
            )
    if len(page_lines) != len(record_lines):
        more = page_lines if len(page_lines) > len(record_lines) else record_lines
        extra = more[min(len(page_lines), len(record_lines))]
        which = "the page adds" if more is page_lines else "the page leaves out"
        return f"{which} {_cut(extra)!r}, which the signed record does not show that way"
    return (
        "the page's markup differs from the signed record's rendering although its text reads "
        f"the same (first at character {_first_changed(page, expected)}: styles, hidden parts "
        "or scripts)"
    )


def visible_lines(page: str) -> list[str]:
    """The text a reader sees, one line per block, whitespace collapsed."""
    text = _BLOCK.sub("\n", _HIDDEN.sub(" ", page))
    text = html.unescape(_TAG.sub("", text))
    return [line for line in (" ".join(part.split()) for part in text.split("\n")) if line]


def _first_changed(a: str, b: str) -> int:
    pairs = enumerate(zip(a, b, strict=False))
    return next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))


def _cut(line: str) -> str:
    return line if len(line) <= SHOWN else line[: SHOWN - 1] + "…"
