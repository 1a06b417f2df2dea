"""Reference profiles: what healthy cards of one model measure. Data files, a loader, a matcher.

A profile (TOML, gpuhealth/judge/profiles/data/<key>.toml) holds per metric ("test.metric") the
healthy centre, spread, number of cards behind them and their source, and the model's thermal
resistance. A spread from fewer than MIN_FLEET_CARDS cards is a prior, and the profile says so; each
metric's prior is prior_spread(key).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, PrivateAttr, ValidationInfo, field_validator

from gpuhealth import tomlpos
from gpuhealth.datafiles import (
    MAX_TOML_BYTES,
    StrictModel,
    did_you_mean,
    parse_toml,
    read_text_file,
    validate,
)
from gpuhealth.errors import InputError
from gpuhealth.limits import (
    BANDWIDTH_GBS,
    RELATIVE_SPREAD,
    TFLOPS_PER_W,
    THROUGHPUT_TFLOPS,
    BusWidthBits,
    ClockMHz,
    MemoryGiB,
    PowerW,
    Range,
    SmCount,
    ThermalResistanceCPerW,
    ordered,
)
from gpuhealth.models import CardIdentity, ReferenceMetric

PROFILES_DIR = Path(__file__).resolve().parent / "data"
# Below this many cards a profile's spreads are floored at their priors and it says so: a spread
# from a few cards is too uncertain to be trusted below the prior (docs/statistics.md, section 8).
MIN_FLEET_CARDS = 20
MEMORY_MATCH_TOLERANCE = 0.10
_PCI_ID = re.compile(r"0[xX][0-9A-Fa-f]{8}")
# (test, metric) pairs recorded for other analyses, never compared with a reference.
# Timestamps, not measures: kept for the drift fit and the per-chunk power windows.
NOT_JUDGED = frozenset({("soak", "iteration_end_s"), ("soak", "memory_phase_chunk_end_s")})

# Prior card-to-card spreads of a measured profile (a healthy card's SD), as fractions of the
# centre; the one place they are set (the built-in measured profiles and `profile build` use them).
# - 2% for memory bandwidth, FP32 and tensor throughput: two healthy H200s we measured differ by
#   0.04-1.7% on 10 of 11 comparable metrics (3.4% on stream read), and one H100 graded three times
#   stayed within 1.4% of its median; a 2% SD per card covers that (docs/statistics.md, section 7).
# - 3% for the power-capped metrics (the soak's sustained TFLOP/s and its TFLOP/s per watt): at the
#   power cap, throughput is set by power management and each chip's voltage-frequency curve, which
#   vary more between healthy chips of one SKU than memory bandwidth does. Sinha et al., "Not All
#   GPUs Are Created Equal" (SC22, arXiv 2208.11035): over five HPC clusters, 8% average (22%
#   maximum) performance variation between GPUs of one SKU, driven by power management. Their
#   variation is a spread of whole fleets, outliers included, not an SD: 3% is a judgement.
PRIOR_SPREAD = 0.02
POWER_CAPPED_PRIOR_SPREAD = 0.03
POWER_CAPPED_METRICS = frozenset({"soak.iteration_tflops", "efficiency.soak_tflops_per_w"})

# The tests whose metrics a profile may hold ("test.metric"), and the metrics gpuhealth measures
# (a key close to one of these but not equal is a misspelling that would never be compared).
METRIC_TESTS = ("bandwidth", "memtest", "fp32", "fp16_tensor", "gemm", "soak", "efficiency")
KNOWN_METRICS = (
    "bandwidth.copy_gbs",
    "bandwidth.scale_gbs",
    "bandwidth.add_gbs",
    "bandwidth.triad_gbs",
    "bandwidth.read_gbs",
    "memtest.pass_gbs",
    "fp32.fp32_tflops",
    "fp16_tensor.mma_tflops",
    "fp16_tensor.tensor_gemm_tflops",
    "gemm.fp16_tflops",
    "gemm.fp32_tflops",
    "soak.iteration_tflops",
    "soak.memory_phase_gbs",
    "efficiency.soak_tflops_per_w",
    "efficiency.memory_phase_gbs_per_w",
)
# A centre's physical range by the unit its metric's name ends with (gpuhealth.limits).
_CENTER_RANGES: tuple[tuple[str, Range], ...] = (
    ("_tflops_per_w", TFLOPS_PER_W),
    ("_gbs", BANDWIDTH_GBS),
    ("_tflops", THROUGHPUT_TFLOPS),
)


def _metric_key(key: str) -> str:
    """A metric key "test.metric" of a known test; a near miss of a known metric is refused."""
    test, dot, name = key.partition(".")
    if not dot or not name or test not in METRIC_TESTS:
        raise ValueError(
            f"expected a metric key 'test.metric' of a test {', '.join(METRIC_TESTS)}"
            + (did_you_mean(key, list(KNOWN_METRICS)) or did_you_mean(test, list(METRIC_TESTS)))
        )
    if key not in KNOWN_METRICS and (hint := did_you_mean(key, list(KNOWN_METRICS))):
        raise ValueError(f"unknown metric {key!r}{hint}")
    return key


MetricKey = Annotated[str, AfterValidator(_metric_key)]


class ProfileMetric(StrictModel):
    center: float = Field(gt=0)
    spread: float = Field(gt=0)
    n: int = Field(ge=0, le=1_000_000)
    source: str
    higher_is_better: bool = True
    published_peak: float | None = Field(default=None, gt=0)
    # Test parameters the centre was measured with (e.g. gemm_n = 4096): a run with other values
    # measures something else and is not compared.
    conditions: dict[str, bool | int | float | str] = Field(default_factory=dict)

    @field_validator("spread")
    @classmethod
    def _spread_relative_to_center(cls, spread: float, info: ValidationInfo) -> float:
        center = info.data.get("center")
        if center is not None and spread / center not in RELATIVE_SPREAD:
            raise ValueError(
                f"expected a spread of {RELATIVE_SPREAD.low:.1%} to {RELATIVE_SPREAD.high:.0%} "
                f"of the centre ({center:g}), got {spread:g} ({spread / center:.2%})"
            )
        return spread

    def applies_to(self, parameters: Mapping[str, object]) -> bool:
        return all(parameters.get(key) == value for key, value in self.conditions.items())

    def reference(self) -> ReferenceMetric:
        return ReferenceMetric(
            center=self.center,
            spread=self.spread,
            n=self.n,
            source=self.source,
            higher_is_better=self.higher_is_better,
            published_peak=self.published_peak,
        )


class ProfileThermal(StrictModel):
    """The thermal resistance healthy cards of the model show (gpuhealth/judge/thermal_reference.py
    picks the value a run is held to and how far a healthy run may stray from it)."""

    c_per_w: ThermalResistanceCPerW = Field(gt=0)  # any preset, unless presets has the run's
    source: str
    # Cards behind the value: the centre's own error shrinks with them.
    cards: int = Field(default=1, ge=1, le=1_000_000)
    # The rig (host name) every card was measured in; None: a model-wide value from another rig,
    # which a run is held to with rig-to-rig variation allowed for.
    rig: str | None = None
    # Per preset: a chassis mode slower than the fit's slow stage makes a longer soak read higher
    # (one H100: 0.0632 standard, 0.046-0.049 quick; bench/RESULTS.md).
    presets: dict[str, ThermalResistanceCPerW] = Field(default_factory=dict)
    # Relative SD between runs of one card in that rig, where measured (None: the policy's).
    run_to_run: float | None = Field(default=None, ge=0, lt=1)

    @field_validator("presets")
    @classmethod
    def _positive(cls, presets: dict[str, float]) -> dict[str, float]:
        for preset, value in presets.items():
            if not value > 0:
                raise ValueError(f"expected a positive °C/W for preset {preset!r}, got {value}")
        return presets


class ProfileIdentity(StrictModel):
    """What a genuine card of the model reports about itself (gpuhealth/judge/registry.py checks a
    card against it). Every field is optional: one left out is not checked. The lists hold every
    value healthy cards of the model were seen with; the numbers are what NVML (or CUDA, for the SM
    count) answers on a healthy card, not a datasheet's figures."""

    pci_device_ids: tuple[str, ...] = ()  # nvmlPciInfo_t.pciDeviceId in hex, "0x233010DE"
    pci_subsystem_ids: tuple[str, ...] = ()  # nvmlPciInfo_t.pciSubSystemId in hex
    sm_count: SmCount | None = None
    memory_bus_width_bits: BusWidthBits | None = None
    max_sm_clock_mhz: ClockMHz | None = None
    max_memory_clock_mhz: ClockMHz | None = None
    power_limit_default_w: PowerW | None = None
    power_limit_max_w: PowerW | None = None
    board_part_numbers: tuple[str, ...] = ()
    source: str | None = None

    _power_limits_ordered = ordered("power_limit_default_w", "power_limit_max_w")

    @field_validator("pci_device_ids", "pci_subsystem_ids")
    @classmethod
    def _hex_ids(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        for pci_id in ids:
            if not _PCI_ID.fullmatch(pci_id):
                raise ValueError(
                    f"expected a PCI id as NVML gives it, e.g. 0x233010DE, got {pci_id!r}"
                )
        return tuple(pci_id.upper().replace("0X", "0x") for pci_id in ids)


class Profile(StrictModel):
    key: str
    name: str
    nvml_names: tuple[str, ...]
    memory_gib: MemoryGiB
    source: str
    cards: int = Field(ge=0)
    # The runs a fleet-built profile was computed from (run id, card serial, file).
    source_runs: tuple[str, ...] = ()
    # VBIOS versions healthy cards of the model were seen with (empty: not checked).
    vbios_versions: tuple[str, ...] = ()
    # What a genuine card of the model reports (None: identity not checked).
    identity: ProfileIdentity | None = None
    metrics: dict[MetricKey, ProfileMetric]
    thermal: ProfileThermal | None = None
    # The file's text when the profile was read from one: embedded in every record judged under
    # it (None for a profile built in memory, which is embedded as rendered TOML).
    _text: str | None = PrivateAttr(default=None)

    @property
    def text(self) -> str | None:
        return self._text

    # Equal profiles hold the same data, whichever file (or none) they were read from.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Profile):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(json.dumps(self.model_dump(mode="json"), sort_keys=True))

    @property
    def text_sha256(self) -> str | None:
        return None if self._text is None else hashlib.sha256(self._text.encode()).hexdigest()

    def metric(self, test: str, metric: str) -> ProfileMetric | None:
        return self.metrics.get(f"{test}.{metric}")

    @property
    def spread_is_prior(self) -> bool:
        return self.cards < MIN_FLEET_CARDS


def prior_spread(key: str) -> float:
    """The prior spread of metric key ("test.metric") as a fraction of its centre."""
    return POWER_CAPPED_PRIOR_SPREAD if key in POWER_CAPPED_METRICS else PRIOR_SPREAD


def builtin_profiles() -> list[Profile]:
    return list(_builtin_profiles())


@functools.cache
def _builtin_profiles() -> tuple[Profile, ...]:
    # Read once per process: the files ship with the package and profiles are frozen.
    return tuple(load_profile(path) for path in sorted(PROFILES_DIR.glob("*.toml")))


def profile_kind(profile: Profile) -> str:
    """ "spec-derived" (published peaks), "prior spread" (measured, fewer than MIN_FLEET_CARDS
    cards) or "fleet"."""
    if profile.cards == 0:
        return "spec-derived"
    return "prior spread" if profile.spread_is_prior else "fleet"


def find_profile(key_or_path: str) -> Profile:
    """A built-in profile by key, or a profile file by path."""
    path = Path(key_or_path)
    if path.suffix == ".toml" or path.exists():
        return load_profile(path)
    for profile in builtin_profiles():
        if profile.key == key_or_path:
            return profile
    keys = ", ".join(p.key for p in builtin_profiles())
    raise InputError(
        "profile", None, f"no built-in profile {key_or_path!r} (expected one of: {keys}, or a path)"
    )


def load_profile(path: Path) -> Profile:
    return profile_from_text(read_text_file(path, MAX_TOML_BYTES), str(path))


def profile_from_text(text: str, source: str) -> Profile:
    """A profile from a file's text (a file, or the copy a record embeds); InputError if bad."""
    profile = validate(Profile, parse_toml(text, source), source, text)
    _check_centres(profile, text, source)
    profile._text = text
    return profile


def _check_centres(profile: Profile, text: str, source: str) -> None:
    """Each centre in the physical range of its metric's unit (the name's suffix: _gbs...)."""
    for key, metric in profile.metrics.items():
        unit_range = next((r for suffix, r in _CENTER_RANGES if key.endswith(suffix)), None)
        if unit_range is not None and metric.center not in unit_range:
            where = ("metrics", key, "center")
            raise InputError(
                source,
                ".".join(where),
                f"expected {unit_range.describe()}, got {metric.center:g}",
                line=tomlpos.line_of(text, where),
            )


def match_profile(identity: CardIdentity, profiles: list[Profile]) -> Profile | None:
    """The profile whose NVML name matches the card's and whose memory size is within 10%."""
    name = identity.name.strip().lower()
    for profile in profiles:
        if name not in (n.lower() for n in profile.nvml_names):
            continue
        if identity.memory_total_bytes is not None:
            gib = identity.memory_total_bytes / 2**30
            if abs(gib - profile.memory_gib) > MEMORY_MATCH_TOLERANCE * profile.memory_gib:
                continue
        return profile
    return None
