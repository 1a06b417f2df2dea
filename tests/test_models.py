"""The run record: JSON round trip, schema_version, one-line errors, and the JSON Schema file."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import jsonschema
import pytest
from simkit import EXAMPLES, CliRun, GradedRuns

from gpuhealth.errors import InputError
from gpuhealth.models import (
    SCHEMA_VERSION,
    MemoryMismatch,
    RunRecord,
    record_from_json,
    record_to_json,
    run_record_json_schema,
)
from gpuhealth.resources import DATA_DIR

SCHEMA_FILE = DATA_DIR / "run-record.schema.json"


def _text(run: CliRun) -> str:
    return (run.out_dir / "run.json").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def stuck_run(graded: GradedRuns) -> CliRun:
    """A record with memory errors, wrong results and a grade F: the richest record shape."""
    return graded.grade("--sim-card", str(EXAMPLES / "stuck-bit.toml"))


@pytest.fixture(scope="module")
def records(demo_run: CliRun, stuck_run: CliRun) -> dict[str, str]:
    return {"healthy": _text(demo_run), "stuck": _text(stuck_run)}


def _data(text: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(text)
    return data


# --- round trip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["healthy", "stuck"])
def test_record_round_trips_equal(records: dict[str, str], which: str) -> None:
    text = records[which]
    record = record_from_json(text, "run.json")
    assert isinstance(record, RunRecord)
    assert record.schema_version == SCHEMA_VERSION
    assert record.grade is not None and record.analysis is not None
    # object -> text -> object is the identity, and so is text -> object -> text
    again = record_from_json(record_to_json(record))
    assert again == record
    assert record_to_json(record) == text
    # tuples stay tuples (frozen records stay hashable-ish and comparable)
    assert isinstance(again.tests, tuple) and isinstance(again.tests[0].metrics[0].values, tuple)


def test_round_trip_keeps_memory_errors_with_their_bits(records: dict[str, str]) -> None:
    record = record_from_json(records["stuck"])
    memtest = record.test("memtest")
    assert memtest is not None
    errors = [e for v in memtest.verifications for e in v.memory_errors]
    assert errors and all(isinstance(e, MemoryMismatch) for e in errors)
    assert {e.address for e in errors} == {0x1F000}
    assert all(e.bits == (3,) for e in errors)


def test_a_changed_value_is_not_equal(records: dict[str, str]) -> None:
    record = record_from_json(records["healthy"])
    changed = replace(record, identity=replace(record.identity, serial="OTHER"))
    assert record_from_json(record_to_json(changed)) != record


# --- bad input: one line naming the field --------------------------------------------------------


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 0, "1", None, True])
def test_other_schema_version_is_refused(records: dict[str, str], version: object) -> None:
    data = _data(records["healthy"])
    data["schema_version"] = version
    with pytest.raises(InputError) as caught:
        record_from_json(json.dumps(data), "old.json")
    assert caught.value.field == "schema_version"
    assert caught.value.source == "old.json"
    assert str(SCHEMA_VERSION) in caught.value.expected


def test_a_newer_schema_version_says_a_newer_gpuhealth_wrote_it(records: dict[str, str]) -> None:
    data = _data(records["healthy"])
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(InputError, match="written by a newer gpuhealth"):
        record_from_json(json.dumps(data), "new.json")


def test_a_version_1_record_is_migrated_and_judges_the_same(records: dict[str, str]) -> None:
    """Version 1 (gpuhealth 0.1.0) had no embedded rules: read as version 2 with rules = null,
    every other field as written."""
    data = _data(records["healthy"])
    assert data["schema_version"] == SCHEMA_VERSION == 2 and data["rules"] is not None
    analysis = {k: v for k, v in data["analysis"].items() if k != "subsystems"}
    old = {k: v for k, v in data.items() if k != "rules"} | {
        "schema_version": 1,
        "analysis": analysis,
    }
    migrated = record_from_json(json.dumps(old), "v1.json")
    assert migrated.schema_version == 2 and migrated.rules is None
    assert json.loads(record_to_json(migrated)) == old | {
        "schema_version": 2,
        "rules": None,
        "analysis": analysis | {"subsystems": []},
    }


def test_missing_schema_version_is_refused(records: dict[str, str]) -> None:
    data = _data(records["healthy"])
    del data["schema_version"]
    with pytest.raises(InputError, match="schema_version"):
        record_from_json(json.dumps(data), "x.json")


def _set(data: dict[str, Any], path: str, value: object) -> None:
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "wanted_field"),
    [
        ("identity.sm_count", "many", "identity.sm_count"),
        ("tests.0.status", "bogus", "tests.0.status"),
        ("tests.1.metrics.0.values.2", "fast", "tests.1.metrics.0.values.2"),
        ("grade.letter", "E", "grade.letter"),
        ("run_id", _DELETE, "run_id"),
        ("identity", _DELETE, "identity"),
    ],
)
def test_bad_record_names_the_field(
    records: dict[str, str], path: str, value: object, wanted_field: str
) -> None:
    data = _data(records["healthy"])
    _set(data, path, value)
    with pytest.raises(InputError) as caught:
        record_from_json(json.dumps(data), "bad-run.json")
    error = caught.value
    assert error.field == wanted_field
    line = error.one_line()
    assert line.startswith(f"bad-run.json: {wanted_field}: ")
    assert "\n" not in line


@pytest.mark.parametrize(("text", "why"), [("{not json", "not JSON"), ("[1, 2]", "JSON object")])
def test_not_a_record_at_all(text: str, why: str) -> None:
    with pytest.raises(InputError, match=why) as caught:
        record_from_json(text, "junk.json")
    assert caught.value.source == "junk.json"


# --- JSON Schema ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = run_record_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("which", ["healthy", "stuck"])
def test_schema_validates_a_real_run(
    validator: jsonschema.protocols.Validator, records: dict[str, str], which: str
) -> None:
    errors = list(validator.iter_errors(_data(records[which])))
    assert errors == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("tests.0.status", "bogus"),
        ("identity.sm_count", "many"),
        ("grade.letter", "E"),
        ("run_id", _DELETE),
        ("tests.0.metrics.0.values", "not a list"),
        ("analysis.findings", [{"code": "x"}]),  # a finding without severity, source, message
    ],
)
def test_schema_rejects_a_corrupted_run(
    validator: jsonschema.protocols.Validator, records: dict[str, str], path: str, value: object
) -> None:
    data = _data(records["healthy"])
    _set(data, path, value)
    assert list(validator.iter_errors(data)), f"schema accepted a record with {path} = {value!r}"


def test_shipped_schema_file_equals_the_generated_schema() -> None:
    """gpuhealth/data/run-record.schema.json is what models.py generates: regenerate it with
    json.dumps(run_record_json_schema(), indent=1) + newline when the record changes."""
    expected = json.dumps(run_record_json_schema(), indent=1, sort_keys=False) + "\n"
    assert SCHEMA_FILE.is_file(), f"{SCHEMA_FILE} is missing"
    shipped = SCHEMA_FILE.read_text(encoding="utf-8")
    assert json.loads(shipped) == json.loads(expected), "the shipped schema drifted from models.py"
    assert shipped == expected


def test_schema_names_its_version() -> None:
    schema = run_record_json_schema()
    assert schema["$schema"].endswith("/2020-12/schema")
    assert f"v{SCHEMA_VERSION}" in schema["$id"]
    assert "schema_version" in schema["required"]
