"""Which thermal reference a run is held to, and the prediction's lower bound
(gpuhealth/judge/thermal_reference.py)."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from gpuhealth.judge.analysis import thermal_settings
from gpuhealth.judge.grading import load_policy
from gpuhealth.judge.profiles import ProfileThermal, builtin_profiles, profile_from_text
from gpuhealth.judge.profiles.render import render_profile
from gpuhealth.judge.thermal_reference import prediction_sd, ratio_lower_bound, select

SETTINGS = thermal_settings(load_policy())
RIG = ProfileThermal(
    c_per_w=0.05,
    source="test",
    cards=4,
    rig="node7",
    presets={"quick": 0.048, "standard": 0.062},
    run_to_run=0.03,
)


def test_the_policy_settings_are_the_documented_ones() -> None:
    assert (SETTINGS.run_to_run, SETTINGS.rig_to_rig, SETTINGS.card_spread) == (0.05, 0.10, 0.05)


def test_a_rig_reference_is_used_for_its_preset_in_its_rig() -> None:
    ref = select(RIG, "standard", "node7", "H100")
    assert ref is not None and ref.c_per_w == 0.062 and ref.same_rig
    assert ref.description == (
        "H100: 0.0620 °C/W for the standard preset, measured in this rig (node7); 4 cards"
    )
    # another preset falls back to the default; another host is not this rig
    other = select(RIG, "long", "node8", "H100")
    assert other is not None and other.c_per_w == 0.05 and not other.same_rig
    assert "for any preset, measured in rig node7, not this one (node8)" in other.description
    model_wide = select(ProfileThermal(c_per_w=0.05, source="x"), "quick", "node7", "H100")
    assert model_wide is not None and "model-wide, not measured in this rig; 1 card" in (
        model_wide.description
    )
    assert select(None, "quick", "node7", "H100") is None


def test_the_prediction_adds_each_error_once() -> None:
    in_rig = select(RIG, "quick", "node7", "H100")
    elsewhere = select(RIG, "quick", "node8", "H100")
    assert in_rig is not None and elsewhere is not None
    # fit: a 95% range of x1.1 is 4 SDs wide; run: the reference's own 0.03; centre over 4 cards
    fit = math.log(1.1) / 4
    centre_sq = (0.05**2 + 0.03**2) / 4
    expected = math.sqrt(fit**2 + 0.03**2 + centre_sq)
    assert prediction_sd(in_rig, 1.0, 1.1, SETTINGS) == pytest.approx(expected)
    assert prediction_sd(elsewhere, 1.0, 1.1, SETTINGS) == pytest.approx(
        math.sqrt(expected**2 + 0.10**2)
    )
    # no fit range (a record from before the whole-run fit): no fit term, never a crash
    assert prediction_sd(in_rig, None, None, SETTINGS) == pytest.approx(
        math.sqrt(0.03**2 + centre_sq)
    )


def test_the_bound_is_the_ratio_less_the_one_sided_t_margin() -> None:
    ref = select(RIG, "quick", "node7", "H100")
    assert ref is not None
    sd = prediction_sd(ref, 0.070, 0.074, SETTINGS)
    quantile = sps.t.ppf(0.95, 10)
    bound = ratio_lower_bound(0.072, 0.070, 0.074, ref, SETTINGS)
    assert bound == pytest.approx(0.072 / 0.048 * math.exp(-quantile * sd))
    assert bound < 0.072 / 0.048
    # a wider fit range can only lower what the card is proven to be
    assert ratio_lower_bound(0.072, 0.060, 0.090, ref, SETTINGS) < bound


def test_a_rig_reference_survives_render_and_read_back() -> None:
    base = next(p for p in builtin_profiles() if p.key == "h100-sxm5-80gb")
    profile = base.model_copy(update={"thermal": RIG})
    again = profile_from_text(render_profile(profile, []), "rendered.toml")
    assert again.thermal == RIG


def test_a_preset_value_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive °C/W for preset 'quick'"):
        ProfileThermal(c_per_w=0.05, source="x", presets={"quick": 0.0})
