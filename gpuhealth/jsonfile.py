"""Parse a JSON document a user gives us (a run record, a report's embedded record), strictly.

Python's json module takes things JSON does not allow, or that no record of ours holds: NaN,
Infinity and -Infinity (and numbers such as 1e999 that overflow to infinity), a key given twice
(the last one silently wins, so two readers may see two records), and nesting deep enough to
exhaust the interpreter's stack (a RecursionError, not an answer). Each is refused here with one
InputError naming the source and, where there is one, the key:

    run.json: tests: duplicate key (expected each key once in an object)

The depth is measured by a scan of the brackets outside strings before json.loads runs, so that a
hostile file cannot reach the recursion limit at all.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from gpuhealth.errors import InputError

# Deeper than any record gpuhealth writes (about 8 levels) by far, and far below the interpreter's
# recursion limit (1000), which json.loads would otherwise hit.
MAX_JSON_DEPTH = 64

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class _NotFinite:
    """Stands in for NaN, Infinity or an overflowing number until its key is known."""

    def __init__(self, written: str) -> None:
        self.written = written


class _Refused(Exception):
    def __init__(self, field: str | None, expected: str) -> None:
        super().__init__(expected)
        self.field = field
        self.expected = expected


def loads(text: str, source: str) -> Any:
    """The JSON value of text; InputError (naming source and the key) when it is not plain,
    finite, duplicate-free JSON of reasonable depth."""
    depth = nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise InputError(
            source, None, f"expected JSON nested at most {MAX_JSON_DEPTH} deep (found {depth})"
        )
    try:
        data = json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_NotFinite,
            parse_float=_float,
        )
    except _Refused as exc:
        raise InputError(source, exc.field, exc.expected) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            source, None, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise InputError(source, None, f"not JSON ({exc})") from None
    if _holds_not_finite(data):
        raise InputError(source, None, _not_finite_message(data))
    return data


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in text (brackets inside strings not counted)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _float(written: str) -> float | _NotFinite:
    value = float(written)
    return value if math.isfinite(value) else _NotFinite(written)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _Refused(key, "duplicate key (expected each key once in an object)")
        if _holds_not_finite(value):
            raise _Refused(key, _not_finite_message(value))
        data[key] = value
    return data


def _holds_not_finite(value: Any) -> bool:
    """value is a stand-in, or an array holding one (objects were checked when they were made)."""
    if isinstance(value, _NotFinite):
        return True
    return isinstance(value, list) and any(_holds_not_finite(item) for item in value)


def _not_finite_message(value: Any) -> str:
    found = value
    while isinstance(found, list):
        found = next(item for item in found if _holds_not_finite(item))
    return f"expected a finite number, found {found.written} (not a number JSON allows)"
