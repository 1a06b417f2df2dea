"""Spreadsheet-safe CSV: text cells a spreadsheet would run as a formula are neutralised.

Every CSV gpuhealth writes goes through `writer` (which applies `csv_safe` to every cell), so
that one piece of code decides what a spreadsheet may see. Card serials, model names, hostnames,
grade reasons and notes come from outside (a driver, a seller, a sim-card spec) and may hold a
formula.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from typing import IO, Any

# What a spreadsheet (Excel, LibreOffice Calc, Google Sheets) reads as the start of a formula
# (OWASP, CSV injection): = + - @, and tab and carriage return, which some of them skip before
# looking at the next character. The full-width forms (U+FF1D, U+FF0B, U+FF0D, U+FF20) are
# included because some Excel input modes turn them into their ASCII forms.
FORMULA_STARTS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
QUOTE = "'"
CRLF = "\r\n"


def csv_safe(value: object) -> str | int | float:
    """One CSV cell, safe to open in a spreadsheet.

    The rule (OWASP's CSV-injection guidance):

    - ``int`` and finite ``float`` values are returned unchanged: numbers gpuhealth itself writes
      (counts, percentages, a deviation of -3.2) stay numbers in the spreadsheet. ``bool`` is
      an ``int`` and is returned unchanged too.
    - ``None`` becomes the empty string.
    - Everything else is made text (``str(value)``; a non-finite float becomes ``nan``, ``inf``,
      ``-inf``) and gets one leading single quote (``'``) when it begins with ``=``, ``+``,
      ``-``, ``@``, a tab or a carriage return, or with one of these after leading whitespace
      (``"  =1+1"``, ``"\\n-2+3"``), or with the full-width form of = + - @ (U+FF1D, U+FF0B,
      U+FF0D, U+FF20). The quote is the spreadsheet's own "this is text" mark; the rest of the
      value is kept as it was, so a reader sees exactly what the card reported, after the quote.

    Leading whitespace is looked through (a choice beyond OWASP's list) because whitespace is
    easily lost on the way to a cell: an import that trims spaces (LibreOffice Calc's "Trim
    spaces"), a copy and paste, a script that strips fields; the formula is then first. A quote
    before ``" =x"`` costs a reader nothing. Text that only looks like a number (a serial
    ``"-5"``) is quoted as well: it came from outside, and only values gpuhealth writes as
    numbers are numbers.

    Write cells through `writer`, not a bare `csv.writer`: it also quotes every cell that holds
    a carriage return or newline, so that text after one cannot start a row of its own.
    """
    if value is None:
        return ""
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    text = str(value)
    if text[:1] in FORMULA_STARTS or text.lstrip()[:1] in FORMULA_STARTS:
        return QUOTE + text
    return text


def safe_row(row: Iterable[object]) -> list[str | int | float]:
    """A row with `csv_safe` applied to every cell."""
    return [csv_safe(cell) for cell in row]


class SafeWriter:
    """`csv.writer` whose rows pass through `csv_safe` (header rows included).

    A cell holding a carriage return or a newline is always quoted. The standard writer quotes
    only the characters of its own line terminator, so with ``lineterminator="\\n"`` it writes a
    bare CR unquoted; a spreadsheet ends the row there, and a serial ``"x\\r=cmd"`` would put
    ``=cmd`` at the start of a row of its own. Each row is therefore formatted with ``"\\r\\n"``
    (which quotes both) and written with the terminator the caller asked for.
    """

    def __init__(self, out: IO[str], **fmtparams: Any) -> None:
        self._out = out
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, **{**fmtparams, "lineterminator": CRLF})
        self.lineterminator: str = csv.writer(io.StringIO(), **fmtparams).dialect.lineterminator

    def writerow(self, row: Iterable[object]) -> int:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._writer.writerow(safe_row(row))
        return self._out.write(self._buffer.getvalue().removesuffix(CRLF) + self.lineterminator)

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out: IO[str], **fmtparams: Any) -> SafeWriter:
    """`csv.writer(out, **fmtparams)`, spreadsheet-safe: use it for every CSV gpuhealth writes."""
    return SafeWriter(out, **fmtparams)
