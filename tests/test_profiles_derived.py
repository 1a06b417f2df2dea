"""Spec-derived reference profiles: every model in gpu-specs.csv has a profile, the committed
derived files are exactly what the generator writes, and a derived centre is the model's published
peak times the efficiency measured on the H200."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gpuhealth.judge.profiles import (
    MEMORY_MATCH_TOLERANCE,
    PROFILES_DIR,
    Profile,
    builtin_profiles,
    load_profile,
    match_profile,
)
from gpuhealth.judge.profiles.derive import (
    DERIVED_PRIOR_SPREAD,
    DERIVED_SOURCE_PREFIX,
    METRIC_PEAK_COLUMN,
    REFERENCE_KEY,
    SIGNIFICANT_DIGITS,
    SPECS_CSV,
    SpecRow,
    derive_profile,
    derive_profiles,
    efficiency_factors,
    generated_files,
    is_generated,
    main,
    parse_specs,
    render_toml,
)
from gpuhealth.models import CardIdentity

MEASURED = ("h100-sxm5-80gb", "h200-sxm-141gb")
SPECS = parse_specs(SPECS_CSV.read_text(encoding="utf-8"))
SPEC_BY_KEY = {spec.key: spec for spec in SPECS}
DERIVED_KEYS = [spec.key for spec in SPECS if spec.key not in MEASURED]
# A centre is written to SIGNIFICANT_DIGITS digits: the most it can be off by, relatively.
ROUNDING = 0.5 * 10 ** (1 - SIGNIFICANT_DIGITS)


def reference() -> Profile:
    return load_profile(PROFILES_DIR / f"{REFERENCE_KEY}.toml")


def data_files(folder: Path = PROFILES_DIR) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.toml"))}


def factors() -> dict[str, float]:
    return {
        metric: e.factor
        for metric, e in efficiency_factors(reference(), SPEC_BY_KEY[REFERENCE_KEY]).items()
    }


def identity(name: str, memory_gib: float | None) -> CardIdentity:
    total = None if memory_gib is None else round(memory_gib * 2**30)
    return CardIdentity(name=name, backend="sim", memory_total_bytes=total)


# --- the table and the files ---------------------------------------------------------------------


def test_the_table_has_the_models_we_expect() -> None:
    assert len(SPECS) == 22 and len(DERIVED_KEYS) == 20
    assert len(SPEC_BY_KEY) == len(SPECS)  # keys are unique
    assert len({spec.nvml_name.lower() for spec in SPECS}) == len(SPECS)  # so are NVML names
    assert set(MEASURED) <= set(SPEC_BY_KEY)


def test_committed_derived_files_are_the_generators_output() -> None:
    existing = data_files()
    expected = generated_files(SPECS_CSV.read_text(encoding="utf-8"), reference(), existing)
    assert sorted(expected) == sorted(f"{key}.toml" for key in DERIVED_KEYS)
    for name, text in expected.items():
        assert existing.get(name) == text, f"{name} drifted: run derive --write"
    # nothing generated that the generator no longer writes
    assert {n for n, t in existing.items() if is_generated(t)} == set(expected)


def test_check_mode_passes_on_the_committed_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 0
    assert "20 derived profiles up to date" in capsys.readouterr().out


def test_measured_profiles_are_not_generated() -> None:
    existing = data_files()
    for key in MEASURED:
        assert not is_generated(existing[f"{key}.toml"])
        assert not load_profile(PROFILES_DIR / f"{key}.toml").source.startswith(
            DERIVED_SOURCE_PREFIX
        )


def test_check_fails_on_drift_and_write_repairs_it_without_touching_measured_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "data"
    shutil.copytree(PROFILES_DIR, folder)
    args = ["--data-dir", str(folder)]
    edited = folder / "a100-sxm4-80gb.toml"
    edited.write_text(edited.read_text(encoding="utf-8").replace("center = 1812", "center = 1900"))
    (folder / "l4-24gb.toml").unlink()
    stale = folder / "old-model.toml"
    stale.write_text((folder / "t4-16gb.toml").read_text(encoding="utf-8"), encoding="utf-8")
    measured_before = {k: (folder / f"{k}.toml").read_bytes() for k in MEASURED}

    assert main(["--check", *args]) == 1
    err = capsys.readouterr().err
    assert "a100-sxm4-80gb.toml: differs" in err
    assert "l4-24gb.toml: missing" in err
    assert "old-model.toml: generated, but no longer" in err

    assert main(["--write", *args]) == 0
    assert main(["--check", *args]) == 0
    assert data_files(folder) == data_files(PROFILES_DIR)
    assert not stale.exists()
    assert {k: (folder / f"{k}.toml").read_bytes() for k in MEASURED} == measured_before


def test_a_measured_file_is_never_written_over(tmp_path: Path) -> None:
    """A hand-written (measured) profile for a model in the table takes that model out of the
    generator's hands."""
    folder = tmp_path / "data"
    shutil.copytree(PROFILES_DIR, folder)
    measured = folder / "a30-24gb.toml"
    text = measured.read_text(encoding="utf-8")
    hand_written = "\n".join(line for line in text.splitlines() if not is_generated(line)) + "\n"
    measured.write_text(hand_written, encoding="utf-8")
    assert main(["--write", "--data-dir", str(folder)]) == 0
    assert measured.read_text(encoding="utf-8") == hand_written


# --- every model has a profile that loads and matches --------------------------------------------


@pytest.mark.parametrize("key", list(SPEC_BY_KEY))
def test_every_model_in_the_table_has_a_profile_that_loads(key: str) -> None:
    spec = SPEC_BY_KEY[key]
    profile = load_profile(PROFILES_DIR / f"{key}.toml")
    assert profile.key == key
    assert spec.nvml_name in profile.nvml_names
    assert profile.memory_gib == spec.memory_gib


def test_builtin_profiles_are_the_tables_models() -> None:
    profiles = builtin_profiles()
    assert sorted(p.key for p in profiles) == sorted(SPEC_BY_KEY)


@pytest.mark.parametrize("key", list(SPEC_BY_KEY))
def test_match_profile_picks_the_models_profile(key: str) -> None:
    spec = SPEC_BY_KEY[key]
    profiles = builtin_profiles()
    for gib in (spec.memory_gib, spec.memory_gib * 0.97, spec.memory_gib * 1.05, None):
        found = match_profile(identity(spec.nvml_name, gib), profiles)
        assert found is not None and found.key == key, (key, gib)
    # NVML names are compared without case or surrounding space
    found = match_profile(identity(f" {spec.nvml_name.upper()} ", spec.memory_gib), profiles)
    assert found is not None and found.key == key


@pytest.mark.parametrize("key", list(SPEC_BY_KEY))
def test_match_profile_refuses_a_card_whose_memory_differs_by_more_than_10_percent(
    key: str,
) -> None:
    spec = SPEC_BY_KEY[key]
    profiles = builtin_profiles()
    off = 1.5 * MEMORY_MATCH_TOLERANCE
    for gib in (spec.memory_gib * (1 + off), spec.memory_gib * (1 - off)):
        assert match_profile(identity(spec.nvml_name, gib), profiles) is None, (key, gib)


def test_an_unknown_model_matches_nothing() -> None:
    assert match_profile(identity("NVIDIA B200", 180), builtin_profiles()) is None


# --- what a derived profile holds ----------------------------------------------------------------


def test_efficiency_factors_come_from_the_measured_h200() -> None:
    ref = reference()
    spec = SPEC_BY_KEY[REFERENCE_KEY]
    # every metric the H200 profile measures has a peak column, except performance per watt
    # (no published peak to scale), so no other is left out
    assert set(ref.metrics) - set(METRIC_PEAK_COLUMN) == {"efficiency.soak_tflops_per_w"}
    computed = factors()
    assert set(computed) == set(ref.metrics) & set(METRIC_PEAK_COLUMN)
    for metric, factor in computed.items():
        peak = spec.peak(METRIC_PEAK_COLUMN[metric])
        assert peak is not None
        assert factor == ref.metrics[metric].center / peak
        assert 0 < factor < 1
    assert computed["bandwidth.copy_gbs"] == pytest.approx(4265.1 / 4800)
    assert computed["gemm.fp32_tflops"] == pytest.approx(50.34 / 67)
    assert computed["fp16_tensor.mma_tflops"] == pytest.approx(647.5 / 989)


def test_measured_profiles_quote_the_tables_peaks() -> None:
    for key in MEASURED:
        profile = load_profile(PROFILES_DIR / f"{key}.toml")
        spec = SPEC_BY_KEY[key]
        for metric_key, metric in profile.metrics.items():
            if metric_key not in METRIC_PEAK_COLUMN:  # per watt: no published peak
                assert metric.published_peak is None
                continue
            assert metric.published_peak == spec.peak(METRIC_PEAK_COLUMN[metric_key]), (
                key,
                metric_key,
            )


@pytest.mark.parametrize("key", DERIVED_KEYS)
def test_a_derived_centre_is_the_factor_times_the_published_peak(key: str) -> None:
    spec = SPEC_BY_KEY[key]
    profile = load_profile(PROFILES_DIR / f"{key}.toml")
    ref = reference()
    for metric, factor in factors().items():
        peak = spec.peak(METRIC_PEAK_COLUMN[metric])
        if peak is None:
            assert metric not in profile.metrics
            continue
        got = profile.metrics[metric]
        assert got.published_peak == peak
        assert got.center == pytest.approx(factor * peak, rel=ROUNDING)
        assert got.spread == pytest.approx(DERIVED_PRIOR_SPREAD * got.center, rel=ROUNDING)
        assert got.n == 0
        assert got.conditions == ref.metrics[metric].conditions
        assert f"{factor:.4f}" in got.source and METRIC_PEAK_COLUMN[metric] in got.source


@pytest.mark.parametrize("key", DERIVED_KEYS)
def test_a_derived_profile_is_flagged_as_a_prior(key: str) -> None:
    spec = SPEC_BY_KEY[key]
    profile = load_profile(PROFILES_DIR / f"{key}.toml")
    assert profile.spread_is_prior
    assert profile.cards == 0
    assert profile.thermal is None  # no measured thermal resistance for these models
    assert profile.source.startswith(DERIVED_SOURCE_PREFIX)
    assert f"confidence {spec.confidence}" in profile.source
    assert ";".join(spec.sources) in profile.source
    assert "spreads are priors" in profile.source
    assert profile.nvml_names == (spec.nvml_name,)


def test_derived_files_round_trip_through_the_loader(tmp_path: Path) -> None:
    profiles = derive_profiles(SPECS, reference(), MEASURED)
    assert [p.key for p in profiles] == DERIVED_KEYS
    for profile in profiles:
        path = tmp_path / f"{profile.key}.toml"
        path.write_text(render_toml(profile), encoding="utf-8")
        assert load_profile(path) == profile
        assert render_toml(load_profile(path)) == render_toml(profile)  # deterministic


def test_readable_model_names() -> None:
    names = {p.key: p.name for p in builtin_profiles()}
    assert names["a100-pcie-40gb"] == "NVIDIA A100 PCIe 40GB"
    assert names["rtx-6000-ada-48gb"] == "NVIDIA RTX 6000 Ada 48GB"
    assert names["rtx-4090-24gb"] == "NVIDIA GeForce RTX 4090 24GB"


def test_render_toml_refuses_a_measured_profile() -> None:
    with pytest.raises(ValueError, match="not a spec-derived profile"):
        render_toml(reference())


# --- the table parser and an empty peak column ---------------------------------------------------

SMALL_TABLE = "\n".join(
    [
        "# a comment line, then the header",
        "key,nvml_name,memory_gib,memory_type,bandwidth_gbs,fp32_tflops,fp16_tensor_tflops,"
        "tf32_tensor_tflops,sms,boost_mhz,power_w,host_bus,confidence,sources",
        "# a comment between rows",
        "old-card,Old Card,8,GDDR5,250,6,,,20,1500,150,PCIe Gen3 x16,unconfirmed,E",
    ]
)


def test_parse_specs_skips_comments_and_reads_empty_peaks_as_none() -> None:
    (row,) = parse_specs(SMALL_TABLE)
    assert row == SpecRow(
        key="old-card",
        nvml_name="Old Card",
        memory_gib=8,
        peaks={
            "bandwidth_gbs": 250,
            "fp32_tflops": 6,
            "fp16_tensor_tflops": None,
            "tf32_tensor_tflops": None,
        },
        confidence="unconfirmed",
        sources=("E",),
        sms=20,
    )


def test_a_metric_whose_peak_column_is_empty_is_left_out() -> None:
    (row,) = parse_specs(SMALL_TABLE)
    ref = reference()
    profile = derive_profile(row, efficiency_factors(ref, SPEC_BY_KEY[REFERENCE_KEY]), ref)
    bound_by_fp16 = {m for m, c in METRIC_PEAK_COLUMN.items() if c == "fp16_tensor_tflops"}
    assert set(profile.metrics) == (set(ref.metrics) & set(METRIC_PEAK_COLUMN)) - bound_by_fp16
    assert profile.metrics["fp32.fp32_tflops"].published_peak == 6


def test_parse_specs_rejects_a_bad_number() -> None:
    with pytest.raises(ValueError, match="bandwidth_gbs is not a number"):
        parse_specs(SMALL_TABLE.replace(",250,", ",fast,"))
