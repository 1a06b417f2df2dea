"""One test per input-validation rule, at the unit where the rule lives (gpuhealth.datafiles,
gpuhealth.limits, gpuhealth.jsonfile, the loaders and the key files). Each fails if its rule is
removed; tests/test_bad_inputs.py runs the whole corpus through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gpuhealth import datafiles, jsonfile
from gpuhealth.certificate import keys
from gpuhealth.datafiles import StrictModel, read_text_file, validate
from gpuhealth.errors import InputError, TrustStoreError
from gpuhealth.judge.grading import DEFAULT_POLICY, policy_from_text
from gpuhealth.judge.profiles import PROFILES_DIR, profile_from_text
from gpuhealth.limits import RateScale, ordered
from gpuhealth.measure.backends.simcards import load_card
from gpuhealth.models import record_from_json

RUN = Path(__file__).resolve().parent / "data" / "runs" / "sim-stuck-bit-quick.json"
H100_PROFILE = (PROFILES_DIR / "h100-sxm5-80gb.toml").read_text(encoding="utf-8")
POLICY = DEFAULT_POLICY.read_text(encoding="utf-8")


class Pair(StrictModel):
    low: float | None = None
    high: float | None = None
    flag: bool = False
    scale: RateScale = 1.0
    words: tuple[str, ...] = ()

    _ordered = ordered("low", "high")


def error(data: dict[str, object]) -> InputError:
    with pytest.raises(InputError) as caught:
        validate(Pair, data, "pair.toml")
    return caught.value


def card_error(tmp_path: Path, faults: str, header: str = "") -> InputError:
    path = tmp_path / "card.toml"
    path.write_text(f'model = "h100-sxm5-80gb"\n{header}[faults]\n{faults}\n', encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_card(str(path))
    return caught.value


# --- strict types and finite numbers (datafiles.validate, StrictModel) ---------------------------


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_float_must_be_finite(value: float) -> None:
    assert error({"low": value}).field == "low"


def test_a_numeric_string_is_not_a_number() -> None:
    assert "number" in error({"low": "300"}).expected


def test_a_bool_is_not_a_number_and_a_number_not_a_bool() -> None:
    assert error({"low": True}).field == "low"
    assert error({"flag": 1}).field == "flag"


def test_a_toml_array_is_still_a_tuple() -> None:
    assert validate(Pair, {"words": ["a", "b"], "low": 3}, "pair.toml").words == ("a", "b")


def test_a_date_is_not_a_string(tmp_path: Path) -> None:
    text = POLICY.replace('version = "1"', "version = 2026-11-26", 1)
    with pytest.raises(InputError) as caught:
        policy_from_text(text, "policy.toml")
    assert caught.value.field == "version"


# --- ranges and ordered pairs (gpuhealth.limits) -------------------------------------------------


@pytest.mark.parametrize("scale", [1e-300, 0.0, 2.5])
def test_a_rate_scale_within_its_physical_range(scale: float) -> None:
    assert error({"scale": scale}).field == "scale"


def test_ordered_pair_refuses_min_above_max() -> None:
    found = error({"low": 2.0, "high": 1.0})
    assert found.field == "high" and "low" in found.expected
    assert validate(Pair, {"low": 1.0, "high": 1.0}, "pair.toml").high == 1.0


def test_policy_rule_range_must_be_able_to_fire() -> None:
    start = POLICY.index("min_measure = ")
    text = POLICY[:start] + "max_measure = -1.0\n" + POLICY[start:]
    with pytest.raises(InputError) as caught:
        policy_from_text(text, "policy.toml")
    assert caught.value.field is not None and caught.value.field.endswith("max_measure")


def test_profile_spread_relative_to_its_centre() -> None:
    text = H100_PROFILE.replace("spread = 60.497", "spread = 1e-300", 1)
    with pytest.raises(InputError) as caught:
        profile_from_text(text, "profile.toml")
    assert caught.value.field == "metrics.bandwidth.copy_gbs.spread"


def test_profile_centre_in_its_units_range() -> None:
    text = H100_PROFILE.replace(
        "center = 3024.8\nspread = 60.497", "center = 3.0248\nspread = 0.06"
    )
    with pytest.raises(InputError) as caught:
        profile_from_text(text, "profile.toml")
    assert caught.value.field == "metrics.bandwidth.copy_gbs.center"
    assert caught.value.line is not None


def test_sim_thermal_thresholds_ordered(tmp_path: Path) -> None:
    from gpuhealth.measure.backends.simcards import SIMCARDS_DIR, SimModel

    text = (SIMCARDS_DIR / "h100-sxm5-80gb.toml").read_text(encoding="utf-8")
    text = text.replace("shutdown_c = 95.0", "shutdown_c = 80.0", 1)
    with pytest.raises(InputError) as caught:
        validate(SimModel, datafiles.parse_toml(text, "m.toml"), "m.toml", text)
    assert caught.value.field == "thermal.shutdown_c"


# --- did you mean --------------------------------------------------------------------------------


def test_a_literal_gets_did_you_mean(tmp_path: Path) -> None:
    assert "did you mean 'bandwidth'" in card_error(tmp_path, 'lost_at = "bandwith"').expected


def test_an_unknown_finding_gets_did_you_mean() -> None:
    text = POLICY.replace('finding = "memory_errors"', 'finding = "memory_error"', 1)
    with pytest.raises(InputError) as caught:
        policy_from_text(text, "policy.toml")
    assert "did you mean 'memory_errors'" in caught.value.expected


def test_a_misspelled_metric_key_gets_did_you_mean() -> None:
    text = H100_PROFILE.replace('"bandwidth.copy_gbs"', '"bandwidth.cpy_gbs"', 1)
    with pytest.raises(InputError) as caught:
        profile_from_text(text, "profile.toml")
    assert "did you mean 'bandwidth.copy_gbs'" in caught.value.expected


# --- a sim card against its model ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stuck_bits", "flaky_bits"])
def test_a_bit_beyond_the_cards_memory(tmp_path: Path, kind: str) -> None:
    extra = "value = 0" if kind == "stuck_bits" else "probability = 0.5"
    found = card_error(tmp_path, f"{kind} = [{{ address = 0x20000000000, bit = 1, {extra} }}]")
    assert found.field == f"faults.{kind}.0.address" and found.line == 3


@pytest.mark.parametrize(
    ("fault", "field"),
    [
        ("pcie_width = 32", "faults.pcie_width"),
        ("pcie_gen = 6", "faults.pcie_gen"),
        ("working_sm_count = 200", "faults.working_sm_count"),
        ("power_limit_w = 900.0", "faults.power_limit_w"),
        ("wrong_results = { rate = 0.1, sm = 132 }", "faults.wrong_results.sm"),
    ],
)
def test_a_fault_beyond_the_model(tmp_path: Path, fault: str, field: str) -> None:
    assert card_error(tmp_path, fault).field == field


def test_a_stuck_bit_value_is_not_a_bool(tmp_path: Path) -> None:
    found = card_error(tmp_path, "stuck_bits = [{ address = 0x100, bit = 1, value = true }]")
    assert found.field == "faults.stuck_bits.0.value"


# --- files: size, encoding, kind (datafiles.read_text_file) --------------------------------------


def test_a_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text("# " + "x" * 200 + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="at most 100 bytes"):
        read_text_file(path, max_bytes=100)


def test_a_toml_file_is_capped_lower_than_a_record() -> None:
    assert datafiles.MAX_TOML_BYTES < datafiles.MAX_FILE_BYTES


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(InputError, match="UTF-8"):
        read_text_file(path)


def test_a_folder_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="regular file"):
        read_text_file(tmp_path)


# --- JSON (gpuhealth.jsonfile) -------------------------------------------------------------------


def test_json_duplicate_key() -> None:
    with pytest.raises(InputError) as caught:
        jsonfile.loads('{"a": 1, "a": 2}', "x.json")
    assert caught.value.field == "a" and "duplicate" in caught.value.expected


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999", "[1, [NaN]]"])
def test_json_not_finite_names_the_key(constant: str) -> None:
    with pytest.raises(InputError) as caught:
        jsonfile.loads(f'{{"wall_time_s": {constant}}}', "x.json")
    assert caught.value.field == "wall_time_s"


def test_json_not_finite_at_the_top() -> None:
    with pytest.raises(InputError, match="finite"):
        jsonfile.loads("NaN", "x.json")


def test_json_depth_is_limited_before_parsing() -> None:
    limit = jsonfile.MAX_JSON_DEPTH
    assert jsonfile.loads("[" * limit + "]" * limit, "x.json") is not None
    with pytest.raises(InputError, match="nested"):
        jsonfile.loads("[" * (limit + 1) + "]" * (limit + 1), "x.json")
    with pytest.raises(InputError, match="nested"):  # never a RecursionError
        jsonfile.loads("[" * 200_000, "x.json")


def test_json_brackets_in_strings_do_not_count() -> None:
    text = '{"a": "' + "[" * 500 + '\\"[["}'
    assert jsonfile.loads(text, "x.json") == {"a": "[" * 500 + '"[['}


def test_record_types_are_strict() -> None:
    text = RUN.read_text(encoding="utf-8").replace('"complete": true', '"complete": 1', 1)
    with pytest.raises(InputError) as caught:
        record_from_json(text, "run.json")
    assert caught.value.field == "complete"


# --- key files (gpuhealth.certificate.keys)
# ------------------------------------------------------------------


def test_a_private_key_file_too_large(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o700)
    path = folder / "signing.key"
    path.write_bytes(b"x" * (keys.MAX_KEY_BYTES + 1))
    path.chmod(0o600)
    with pytest.raises(InputError, match="bytes"):
        keys.load_key(path)


def test_a_public_key_file_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "seller.pub"
    path.write_bytes(b"\xff-----BEGIN PUBLIC KEY-----\n")
    with pytest.raises(InputError) as caught:
        keys.public_key_fingerprint(str(path))
    assert caught.value.source == str(path) and "UTF-8" in caught.value.expected


def test_a_pinned_store_too_large(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o700)
    path = folder / "pinned"
    path.write_bytes(b"#" * (keys.MAX_PINNED_BYTES + 1))
    path.chmod(0o600)
    with pytest.raises(TrustStoreError, match="larger than"):
        keys.pinned_keys(path)


def test_validation_error_is_not_raised_raw() -> None:
    """validate() turns every pydantic error into InputError: nothing else escapes."""
    try:
        validate(Pair, {"low": "x"}, "pair.toml")
    except ValidationError:  # pragma: no cover - the failure this test exists for
        pytest.fail("a raw ValidationError escaped")
    except InputError:
        pass
