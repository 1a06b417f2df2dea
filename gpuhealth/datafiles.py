"""Load and validate the TOML files users give us (sim cards, policies, profiles).

One job: turn a file into a validated pydantic model, or raise InputError with one line that names
the file, the line, the field and what was expected (with a did-you-mean for misspelled keys):

    my-policy.toml:57: rules.3.grade: Input should be 'A', 'B', ... (got 'Z')

tomllib keeps no positions; gpuhealth.tomlpos finds the line of the offending key in the text.
"""

from __future__ import annotations

import difflib
import json
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
    """Base for file schemas: unknown keys are errors (a misspelled fault must not be ignored),
    and no float may be inf or nan (a threshold of inf never fires, a nan compares false)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# The largest file gpuhealth reads: a run record with a long soak's telemetry is a few MB; a file
# of hundreds of MB is not one of ours, and reading it whole would only exhaust memory.
MAX_FILE_BYTES = 64 * 2**20
# The largest TOML file (policy, profile, sim card): the shipped ones are under 40 KB.
MAX_TOML_BYTES = 2**20


# tomllib (and tomli on 3.10) end a syntax error's message with its position.
_TOML_ERROR_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def read_toml(path: Path) -> dict[str, Any]:
    return read_toml_with_text(path)[0]


def read_toml_with_text(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed file and its text (for line numbers in later validation errors)."""
    text = read_text_file(path, MAX_TOML_BYTES)
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
    """data as a model; an error names the line of the bad key when the source text is given.

    Strict: a value must have its field's own type, as JSON spells types (the data goes through
    JSON so that TOML arrays are taken for tuples): no "300" for a number, no true for a number
    or a number for a bool, no date for a string.
    """
    try:
        payload = json.dumps(data, default=_as_unknown_type)
        return model.model_validate_json(payload, strict=True)
    except ValidationError as exc:
        raise _to_input_error(exc, model, source, text) from exc


def _as_unknown_type(value: object) -> dict[str, str]:
    """A TOML date or time as JSON: an object no scalar field accepts (the error names it)."""
    return {type(value).__name__: str(value)}


def load_toml_model(model: type[ModelT], path: Path) -> ModelT:
    text = read_text_file(path, MAX_TOML_BYTES)
    return validate(model, parse_toml(text, str(path)), str(path), text)


def read_text_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """A user's file as text, or InputError naming it (not found, not a regular file, larger
    than max_bytes, cannot be read, not UTF-8).

    The bytes decoded as they are (no newline translation): a rules file embedded in a record
    must be the file byte for byte, so that its sha256 is the file's.
    """
    return decode_utf8(read_bytes_file(path, max_bytes), str(path))


def read_bytes_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A user's file's bytes; InputError as read_text_file (a FIFO or device is refused, never
    read: it could block or never end)."""
    source = str(path)
    try:
        if not path.is_file():
            if not path.exists():
                raise InputError(source, None, "file not found")
            raise InputError(source, None, "expected a regular file (a folder or device?)")
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(source, None, f"cannot read the file ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise InputError(source, None, f"expected a file of at most {max_bytes} bytes (too large)")
    return data


def decode_utf8(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            source, None, f"expected UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None


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
    if first["type"] == "value_error":  # our own validators' words, which say what they got
        message = message.removeprefix("Value error, ")
    elif first["type"] != "missing" and not isinstance(first.get("input"), dict | list):
        message += f" (got {first.get('input')!r})"
    if first["type"] == "literal_error":
        message += did_you_mean(first.get("input"), first.get("ctx", {}).get("expected", ""))
    return InputError(source, field, message, line=line)


def did_you_mean(word: object, choices: str | list[str]) -> str:
    """ " (did you mean 'x'?)" when word is a string close to one of the choices, else ""."""
    if not isinstance(word, str):
        return ""
    if isinstance(choices, str):  # pydantic's "'a', 'b' or 'c'"
        choices = re.findall(r"'([^']*)'", choices)
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
