"""Where a key sits in a TOML file: the line of a key path such as ("rules", 3, "grade").

tomllib parses TOML but keeps no positions, so on its own a validation error could not name a
line. This module scans the text once and records the line on which each table, key and array
element starts. It is a locator, not a parser: it runs only on text tomllib has already accepted,
and follows TOML's structure (headers, dotted and quoted keys, strings, arrays, inline tables)
just far enough to know which key each line belongs to.

Paths use pydantic's spelling: table and key names are str, array positions are int (from 0), so
`[[rules]]` number 4 in the file is ("rules", 3) and `stuck_bits = [{ bit = 3 }]` gives
("faults", "stuck_bits", 0, "bit").
"""

from __future__ import annotations

import bisect
import contextlib
import re
import sys
from collections.abc import Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# A scalar (number, bool, date) runs up to the next delimiter; dates may contain spaces.
_SCALAR = re.compile(r"[^,\]}#\r\n]*")


class _ScanError(Exception):
    """The text is not what the scanner expects; keep the lines found so far."""


def line_of(text: str, path: Sequence[str | int]) -> int | None:
    """The line of path, else of its nearest enclosing key or table in the file, else None.

    The fallback is what makes a missing key useful: ("statistics", "alpha") is absent, so the
    answer is the line of the `[statistics]` header that lacks it.
    """
    lines = key_lines(text)
    for end in range(len(path), 0, -1):
        line = lines.get(tuple(path[:end]))
        if line is not None:
            return line
    return None


def key_lines(text: str) -> dict[KeyPath, int]:
    """Every table, key and array element of the document, mapped to the line where it starts."""
    scanner = _Scanner(text)
    # A locator only improves the message: a partial map is better than none.
    with contextlib.suppress(_ScanError):
        scanner.document()
    return scanner.lines


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[KeyPath, int] = {}
        self._newlines = [i for i, char in enumerate(text) if char == "\n"]
        self._table: KeyPath = ()  # the table that key = value lines belong to
        self._tables_in: dict[KeyPath, int] = {}  # array-of-tables path -> headers seen so far

    # --- the document: headers and key = value lines --------------------------------------------

    def document(self) -> None:
        while self._skip(newlines=True):
            if self.text.startswith("[[", self.pos):
                self._array_table_header()
            elif self._peek() == "[":
                self._table_header()
            else:
                self._key_value(self._table)

    def _table_header(self) -> None:
        line = self._line()
        self.pos += 1
        path = self._resolve(self._dotted_key())
        self._expect("]")
        self._record(path, line)
        self._table = path

    def _array_table_header(self) -> None:
        line = self._line()
        self.pos += 2
        keys = self._dotted_key()
        self._expect("]")
        self._expect("]")
        # The last key is the array itself; every [[x]] header appends one element to it.
        array = (*self._resolve(keys[:-1]), keys[-1])
        index = self._tables_in.get(array, 0)
        self._tables_in[array] = index + 1
        self._table = (*array, index)
        self._record(self._table, line)

    def _resolve(self, keys: Sequence[str]) -> KeyPath:
        """A header's keys as a path: a key naming an array of tables means its latest element."""
        path: KeyPath = ()
        for key in keys:
            path = (*path, key)
            if path in self._tables_in:
                path = (*path, self._tables_in[path] - 1)
        return path

    def _key_value(self, table: KeyPath) -> None:
        line = self._line()
        path = (*table, *self._dotted_key())
        self._expect("=")
        self._record(path, line)
        self._value(path)

    # --- values ---------------------------------------------------------------------------------

    def _value(self, path: KeyPath) -> None:
        self._skip(newlines=False)
        char = self._peek()
        if char == "[":
            self._array(path)
        elif char == "{":
            self._inline_table(path)
        elif char in ('"', "'"):
            self._skip_string()
        else:
            match = _SCALAR.match(self.text, self.pos)
            assert match is not None  # the pattern matches the empty string
            self.pos = match.end()

    def _array(self, path: KeyPath) -> None:
        self.pos += 1
        index = 0
        while self._skip(newlines=True) and self._peek() != "]":
            # Each element gets its own line: a multi-line array can point at the bad element.
            self._record((*path, index), self._line())
            self._value((*path, index))
            self._skip(newlines=True)
            if self._peek() == ",":
                self.pos += 1
                index += 1
            elif self._peek() != "]":
                raise _ScanError(f"expected ',' or ']' at offset {self.pos}")
        self._expect("]")

    def _inline_table(self, path: KeyPath) -> None:
        self.pos += 1
        while self._skip(newlines=True) and self._peek() != "}":
            self._key_value(path)
            self._skip(newlines=True)
            if self._peek() == ",":
                self.pos += 1
            elif self._peek() != "}":
                raise _ScanError(f"expected ',' or '}}' at offset {self.pos}")
        self._expect("}")

    def _skip_string(self) -> str:
        """Skip one string of any of TOML's four kinds; return it as written, quotes included."""
        start = self.pos
        quote = self.text[start]
        delimiter = quote * 3 if self.text.startswith(quote * 3, start) else quote
        end = start + len(delimiter)
        while not self.text.startswith(delimiter, end):
            if end >= len(self.text):
                raise _ScanError(f"unterminated string at offset {start}")
            # Only basic ("...") strings have escapes; skip the escaped character with its '\'.
            end += 2 if quote == '"' and self.text[end] == "\\" else 1
        end += len(delimiter)
        # A multi-line string may end with up to two quotes of its own: """a""""" is 'a""'.
        while len(delimiter) == 3 and self._at(end) == quote:
            end += 1
        self.pos = end
        return self.text[start:end]

    # --- keys -----------------------------------------------------------------------------------

    def _dotted_key(self) -> list[str]:
        """`a."b.c".d` -> ["a", "b.c", "d"]; whitespace is allowed around the dots."""
        keys = [self._simple_key()]
        while self._skip(newlines=False) and self._peek() == ".":
            self.pos += 1
            keys.append(self._simple_key())
        return keys

    def _simple_key(self) -> str:
        self._skip(newlines=False)
        if self._peek() in ('"', "'"):
            # tomllib decodes a quoted key's escapes exactly as it did for the document itself.
            key: str = tomllib.loads("k = " + self._skip_string())["k"]
            return key
        match = _BARE_KEY.match(self.text, self.pos)
        if match is None:
            raise _ScanError(f"expected a key at offset {self.pos}")
        self.pos = match.end()
        return match.group()

    # --- positions and whitespace ---------------------------------------------------------------

    def _record(self, path: KeyPath, line: int) -> None:
        """Record path at line; tables it implies (a in [a.b], a.b = 1) keep their first line."""
        for end in range(1, len(path)):
            self.lines.setdefault(path[:end], line)
        self.lines[path] = line

    def _line(self) -> int:
        return bisect.bisect_left(self._newlines, self.pos) + 1

    def _peek(self) -> str:
        return self._at(self.pos)

    def _at(self, offset: int) -> str:
        return self.text[offset] if offset < len(self.text) else ""

    def _skip(self, *, newlines: bool) -> bool:
        """Skip spaces (and, if newlines, line breaks and comments); False at the end of text."""
        blank = " \t\r\n" if newlines else " \t"
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in blank:
                self.pos += 1
            elif newlines and char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return True
        return False

    def _expect(self, char: str) -> None:
        self._skip(newlines=False)
        if self._peek() != char:
            raise _ScanError(f"expected {char!r} at offset {self.pos}")
        self.pos += 1
