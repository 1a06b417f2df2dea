"""Load and validate the TOML files users give us (sim cards, policies, profiles).

One job: turn a file into a validated pydantic model, or raise InputError with one line that names
the file, the line, the field and what was expected (with a did-you-mean for misspelled keys):

    my-policy.toml:57: rules.3.grade: Input should be 'A', 'B', ... (got 'Z')

tomllib keeps no positions; gpuhealth.tomlpos finds the line of the offending key in the text.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from gpuhealth import tomlpos
from gpuhealth.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for file schemas: unknown keys are errors (a misspelled fault must not be ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# tomllib (and tomli on 3.10) end a syntax error's message with its position.
_TOML_ERROR_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def read_toml(path: Path) -> dict[str, Any]:
    return read_toml_with_text(path)[0]


def read_toml_with_text(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed file and its text (for line numbers in later validation errors)."""
    text = read_text_file(path)
    return parse_toml(text, str(path)), text


def parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_ERROR_LINE.search(str(exc))
        line = int(found.group(1)) if found else None
        raise InputError(source, None, f"not valid TOML ({exc})", line=line) from exc


def validate(
    model: type[ModelT], data: dict[str, Any], source: str, text: str | None = None
) -> ModelT:
    """data as a model; an error names the line of the bad key when the source text is given."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _to_input_error(exc, model, source, text) from exc


def load_toml_model(model: type[ModelT], path: Path) -> ModelT:
    text = read_text_file(path)
    return validate(model, parse_toml(text, str(path)), str(path), text)


def read_text_file(path: Path) -> str:
    """A user's file as text, or InputError naming it (not found / cannot be read).

    The bytes decoded as they are (no newline translation): a rules file embedded in a record
    must be the file byte for byte, so that its sha256 is the file's.
    """
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise InputError(str(path), None, "file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(str(path), None, f"cannot read the file ({exc})") from exc


def _to_input_error(
    exc: ValidationError, model: type[BaseModel], source: str, text: str | None
) -> InputError:
    errors = exc.errors()
    # A misspelled key also makes the real one "missing": report the misspelling, with a hint.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(p) for p in first["loc"]]
    field = ".".join(loc) or None
    # A key that is there: its own line. A missing key: the line of the table that lacks it.
    line = tomlpos.line_of(text, first["loc"]) if text is not None else None
    if first["type"] == "extra_forbidden":
        known = _known_fields(model, loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "expected one of: " + ", ".join(known)
        return InputError(source, field, f"unknown field ({hint})", line=line)
    message = first["msg"]
    if first["type"] != "missing" and not isinstance(first.get("input"), dict | list):
        message += f" (got {first.get('input')!r})"
    return InputError(source, field, message, line=line)


def _known_fields(model: type[BaseModel], path: list[str]) -> list[str]:
    """Field names of the (nested) model at path, for did-you-mean hints."""
    current: Any = model
    for part in path:
        if part.isdigit():
            continue
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return []
        current = _model_in(info.annotation)
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class inside an annotation such as `Faults | None` or `list[StuckBit]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
