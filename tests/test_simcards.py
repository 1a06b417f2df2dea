"""Sim card files: the built-in models load and are consistent; a bad card spec gets one line that
names the file and the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from simkit import EXAMPLES, H100, H200

from gpuhealth.errors import EXIT_USAGE, InputError
from gpuhealth.judge.profiles import builtin_profiles, match_profile
from gpuhealth.measure.backends.simcards import (
    SIMCARDS_DIR,
    StuckBit,
    builtin_models,
    load_card,
    load_model,
)

WriteCard = Callable[..., Path]


# --- built-in models -----------------------------------------------------------------------------


def test_builtin_models_are_listed() -> None:
    assert {H100, H200} <= set(builtin_models())


@pytest.mark.parametrize("key", [H100, H200])
def test_builtin_model_loads_as_a_healthy_card(key: str) -> None:
    model = load_model(key)
    assert model.key == key
    card = load_card(key)
    assert card.model == model
    assert card.source == f"built-in {key}"
    assert card.serial == model.identity.serial and card.serial.startswith("SIM-")
    f = card.faults
    assert (f.bandwidth_scale, f.fp32_scale, f.fp16_scale) == (1.0, 1.0, 1.0)
    assert f.stuck_bits == () and f.flaky_bits == () and f.wrong_results is None
    assert f.lost_at is None and f.other_process is None and f.power_limit_w is None
    # the model is internally consistent
    d, perf, power, th = model.device, model.performance, model.power, model.thermal
    assert d.memory_reserved_bytes < d.memory_total_bytes
    assert power.idle_w < power.default_limit_w
    assert th.slowdown_c < th.shutdown_c
    assert perf.gemm_fp16_tflops > perf.gemm_fp32_tflops
    # and a reference profile matches its identity (a grade judges it)
    from gpuhealth.measure.backends.sim import SimBackend

    profile = match_profile(SimBackend(card).identity(), builtin_profiles())
    assert profile is not None and profile.key == key


def test_every_builtin_file_is_named_by_its_key() -> None:
    for path in SIMCARDS_DIR.glob("*.toml"):
        assert load_model(path.stem).key == path.stem


def test_card_spec_overrides_identity(write_card: WriteCard) -> None:
    path = write_card(header='serial = "SIM-0042"\nuuid = "GPU-x"\nname = "Bench card"\nseed = 5')
    card = load_card(str(path))
    assert (card.serial, card.uuid, card.name, card.seed) == ("SIM-0042", "GPU-x", "Bench card", 5)
    assert card.source == str(path)


def test_card_spec_with_every_documented_fault(write_card: WriteCard) -> None:
    """The issue's example card, plus the other fault fields it names."""
    path = write_card(
        "bandwidth_scale = 0.85\n"
        "fp32_scale = 0.9\n"
        "fp16_scale = 0.95\n"
        "stuck_bits = [{ address = 0x1F000, bit = 3, value = 0 }]\n"
        "flaky_bits = [{ address = 0x4000, bit = 1, probability = 0.5 }]\n"
        "wrong_results = { rate = 0.01 }\n"
        "remapped_rows = { correctable = 0, uncorrectable = 2, pending = false, failure = false }\n"
        "ecc_uncorrected = 1\n"
        "pcie_width = 8\n"
        "pcie_gen = 4\n"
        "thermal_resistance_scale = 1.6\n"
        "power_limit_w = 500\n"
        'lost_at = "soak"\n'
        'other_process = { pid = 7, name = "x", used_memory_mib = 10 }\n'
        'xid = [{ test = "memtest", code = 63 }]\n',
        header='serial = "SIM-0001"',
    )
    f = load_card(str(path)).faults
    assert f.stuck_bits == (StuckBit(address=0x1F000, bit=3, value=0),)
    assert f.remapped_rows.uncorrectable == 2 and f.lost_at == "soak"
    assert f.wrong_results is not None and f.wrong_results.rate == 0.01
    assert f.pcie_width == 8 and f.power_limit_w == 500 and f.xid[0].code == 63


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_cards_load(path: Path) -> None:
    assert load_card(str(path)).model.key in builtin_models()


# --- bad card files: one line naming the file and the field --------------------------------------


def _error(path: Path) -> InputError:
    with pytest.raises(InputError) as caught:
        load_card(str(path))
    error = caught.value
    line = error.one_line()
    assert "\n" not in line
    assert line.startswith(str(path))
    assert error.source == str(path)
    assert error.exit_code == EXIT_USAGE
    return error


def test_malformed_toml_names_the_file_and_line(write_card: WriteCard) -> None:
    error = _error(write_card("bandwidth_scale = = 0.85"))
    assert "not valid TOML" in error.expected
    assert "line 4" in error.expected  # model, header, [faults], then the bad line


@pytest.mark.parametrize(
    ("faults", "field", "suggestion"),
    [
        ("bandwith_scale = 0.85", "faults.bandwith_scale", "bandwidth_scale"),
        ("stuck_bit = []", "faults.stuck_bit", "stuck_bits"),
        (
            "remapped_rows = { correctable = 1, uncorectable = 2 }",
            "faults.remapped_rows.uncorectable",
            "uncorrectable",
        ),
        (
            "stuck_bits = [{ adress = 4096, bit = 3, value = 0 }]",
            "faults.stuck_bits.0.adress",
            "address",
        ),
    ],
)
def test_misspelled_field_gets_did_you_mean(
    write_card: WriteCard, faults: str, field: str, suggestion: str
) -> None:
    error = _error(write_card(faults))
    assert error.field == field
    assert f"did you mean '{suggestion}'" in error.one_line()


def test_misspelled_top_level_key(write_card: WriteCard) -> None:
    error = _error(write_card(header='serail = "SIM-1"'))
    assert error.field == "serail"
    assert "did you mean 'serial'" in error.expected


@pytest.mark.parametrize(
    ("faults", "field", "words"),
    [
        ('bandwidth_scale = "fast"', "faults.bandwidth_scale", "number"),
        ("bandwidth_scale = -1.0", "faults.bandwidth_scale", "greater than or equal to 0.01"),
        ("pcie_width = 64", "faults.pcie_width", "32"),
        ('lost_at = "soaking"', "faults.lost_at", "soak"),
        ("stuck_bits = [{ address = 4096, bit = 32, value = 0 }]", "faults.stuck_bits.0.bit", "31"),
        ("stuck_bits = [{ address = 4096, bit = 3, value = 2 }]", "faults.stuck_bits.0.value", "0"),
        ("flaky_bits = [{ address = 8, bit = 3, probability = 1.5 }]", "faults.flaky_bits.0", "1"),
        ("ecc_uncorrected = 1.5", "faults.ecc_uncorrected", "integer"),
        ("pcie_errors = { bogus = 1 }", "faults.pcie_errors.bogus", "'bad_tlp'"),
        ("pcie_errors = { lcrc = -1 }", "faults.pcie_errors.lcrc", "greater than or equal to 0"),
    ],
)
def test_wrong_type_or_range_names_the_field(
    write_card: WriteCard, faults: str, field: str, words: str
) -> None:
    error = _error(write_card(faults))
    assert error.field is not None and error.field.startswith(field)
    assert words in error.expected


@pytest.mark.parametrize("address", ["0x1F001", "0x1F002", "4097"])
def test_unaligned_stuck_bit_address(write_card: WriteCard, address: str) -> None:
    error = _error(write_card(f"stuck_bits = [{{ address = {address}, bit = 3, value = 0 }}]"))
    assert error.field == "faults.stuck_bits.0.address"
    assert "multiple of 4" in error.expected


def test_unknown_model_in_a_card_file(write_card: WriteCard) -> None:
    error = _error(write_card(model="h100-sxm9-80gb"))
    assert error.field == "model"
    assert H100 in error.expected and "h100-sxm9-80gb" in error.expected


def test_missing_model(tmp_path: Path) -> None:
    path = tmp_path / "no-model.toml"
    path.write_text("[faults]\nbandwidth_scale = 0.9\n", encoding="utf-8")
    error = _error(path)
    assert error.field == "model"


def test_unknown_builtin_name() -> None:
    with pytest.raises(InputError) as caught:
        load_card("h100-nonexistent")
    line = caught.value.one_line()
    assert line.startswith("--sim-card")
    assert "h100-nonexistent" in line and H100 in line and H200 in line


def test_missing_card_file(tmp_path: Path) -> None:
    error = _error(tmp_path / "absent.toml")
    assert "not found" in error.expected
