"""Reference profiles: what healthy cards of one model measure. Data files, a loader, a matcher.

A profile (TOML, gpuhealth/profiles/data/<key>.toml) holds per metric ("test.metric") the healthy
centre, spread, number of cards behind them and their source, and the model's thermal resistance.
A spread from fewer than MIN_FLEET_CARDS cards is a prior, and the profile says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import Field

from gpuhealth.datafiles import StrictModel, load_toml_model
from gpuhealth.models import CardIdentity, ReferenceMetric

PROFILES_DIR = Path(__file__).resolve().parent / "data"
MIN_FLEET_CARDS = 5
MEMORY_MATCH_TOLERANCE = 0.10


class ProfileMetric(StrictModel):
    center: float = Field(gt=0)
    spread: float = Field(gt=0)
    n: int = Field(ge=0)
    source: str
    higher_is_better: bool = True
    published_peak: float | None = Field(default=None, gt=0)
    # Test parameters the centre was measured with (e.g. gemm_n = 4096): a run with other values
    # measures something else and is not compared.
    conditions: dict[str, bool | int | float | str] = Field(default_factory=dict)

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
    c_per_w: float = Field(gt=0)
    source: str


class Profile(StrictModel):
    key: str
    name: str
    nvml_names: tuple[str, ...]
    memory_gib: float = Field(gt=0)
    source: str
    cards: int = Field(ge=0)
    metrics: dict[str, ProfileMetric]
    thermal: ProfileThermal | None = None

    def metric(self, test: str, metric: str) -> ProfileMetric | None:
        return self.metrics.get(f"{test}.{metric}")

    @property
    def spread_is_prior(self) -> bool:
        return self.cards < MIN_FLEET_CARDS


def builtin_profiles() -> list[Profile]:
    return [load_profile(path) for path in sorted(PROFILES_DIR.glob("*.toml"))]


def load_profile(path: Path) -> Profile:
    return load_toml_model(Profile, path)


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
