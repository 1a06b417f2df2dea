"""Which thermal resistance a run is held to, and how far a healthy run may stray from it.

The reference (a profile's [thermal]): its value for the run's preset where it has one (a chassis
mode slower than the fit's slow stage makes a longer soak read higher), else its model-wide value;
measured in the run's rig (its `rig` is the run's host) or elsewhere.

A healthy run's measured resistance R differs from the reference c by, in log terms (relative SDs):
  fit      the run's own fit: its 95 % profile interval spans about 4 SDs (thermal_fit.DELTA_CHI2)
  run      run to run on one card in one rig (the reference's measured value, else the policy's)
  rig      rig to rig, only when the reference was measured in another rig
  centre   the reference's own error: card-to-card spread over the square root of its cards
Card-to-card spread itself is not in the sum: the policy's thresholds (1.15x, 1.3x, 1.5x) are set
above it. The ratio R / c is judged at its one-sided lower bound with Student-t tails, like the
performance deficits (gpuhealth/judge/composite.py):

    ratio_low = (R / c) * exp(-t(confidence, dof) * sqrt(fit^2 + run^2 + rig^2 + centre^2))

so a card is held to what it is at least, in this rig, with this preset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as sps

from gpuhealth.judge.profiles import ProfileThermal

FIT_INTERVAL_SDS = 4.0  # the fit's 95 % interval is +-2 SDs wide


@dataclass(frozen=True)
class Settings:
    run_to_run: float
    rig_to_rig: float
    card_spread: float
    tail_dof: float
    bound_confidence: float


@dataclass(frozen=True)
class ThermalReference:
    c_per_w: float
    description: str  # what the certificate names
    same_rig: bool
    cards: int
    run_to_run: float | None  # measured for this reference; None: the policy's


def select(
    thermal: ProfileThermal | None, preset: str, host: str, model: str
) -> ThermalReference | None:
    """The reference for a run of `preset` on `host`, or None when the profile has none."""
    if thermal is None:
        return None
    for_preset = preset in thermal.presets
    value = thermal.presets[preset] if for_preset else thermal.c_per_w
    same_rig = thermal.rig is not None and thermal.rig == host
    where = (
        f"measured in this rig ({host})"
        if same_rig
        else f"measured in rig {thermal.rig}, not this one ({host})"
        if thermal.rig is not None
        else "model-wide, not measured in this rig"
    )
    which = f"for the {preset} preset" if for_preset else "for any preset"
    cards = f"{thermal.cards} card{'s' if thermal.cards != 1 else ''}"
    return ThermalReference(
        c_per_w=value,
        description=f"{model}: {value:.4f} °C/W {which}, {where}; {cards}",
        same_rig=same_rig,
        cards=thermal.cards,
        run_to_run=thermal.run_to_run,
    )


def prediction_sd(
    reference: ThermalReference,
    low_c_per_w: float | None,
    high_c_per_w: float | None,
    settings: Settings,
) -> float:
    """The log SD of a healthy run's ratio to the reference (see the module's text)."""
    fit = 0.0
    if low_c_per_w and high_c_per_w and high_c_per_w >= low_c_per_w > 0:
        fit = math.log(high_c_per_w / low_c_per_w) / FIT_INTERVAL_SDS
    run = settings.run_to_run if reference.run_to_run is None else reference.run_to_run
    rig = 0.0 if reference.same_rig else settings.rig_to_rig
    centre_sq = (settings.card_spread**2 + run**2) / reference.cards
    return math.sqrt(fit**2 + run**2 + rig**2 + centre_sq)


def ratio_lower_bound(
    measured_c_per_w: float,
    low_c_per_w: float | None,
    high_c_per_w: float | None,
    reference: ThermalReference,
    settings: Settings,
) -> float:
    """What the card's resistance is at least, as a multiple of the reference."""
    sd = prediction_sd(reference, low_c_per_w, high_c_per_w, settings)
    quantile = float(sps.t.ppf(settings.bound_confidence, settings.tail_dof))
    return measured_c_per_w / reference.c_per_w * math.exp(-quantile * sd)
