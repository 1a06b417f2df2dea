"""Is the card what it claims to be? Its identity against its model's registry, and what it
measures against what it reports.

A profile's [identity] table (profiles.ProfileIdentity) holds what genuine cards of the model
report: PCI device and subsystem ids, SM count, memory bus width, max clocks, power limits, board
part numbers (the VBIOS versions stay in the profile's vbios_versions, findings.vbios_findings).
Three findings, each listing every field it concerns with the value and what was expected:

  identity_mismatch      a field that differs from the registry: a PCI device id not in its list,
                         another SM count or bus width, a max clock beyond CLOCK_TOLERANCE, another
                         default or maximum power limit; or the card measures unlike what it
                         reports: FP32 TFLOP/s per SM per GHz, or stream-triad GB/s per bus bit
                         per GHz, below the model's by more than FP32_PER_SM_TOLERANCE /
                         BANDWIDTH_PER_BIT_TOLERANCE ("measures like a card with fewer SMs, or a
                         narrower bus, than it reports"): a relabelled, cut-down or reflashed card
  identity_unrecognised  a board part number or PCI subsystem id that no healthy card of the
                         model was seen with: both vary between genuine boards of one model (the
                         two healthy H100s in tests/data/runs carry two board part numbers), so
                         they are listed, as an unknown VBIOS is, not held against the card
  identity_unverified    a field the registry holds that the card did not report, or a derived
                         check that could not be made: a check not made (coverage.py)

The derived checks divide out what the card reports and the clock it ran at, so that a card
slowed by its clock (a lowered power limit, heat) is left to the performance rules, and only one
that does less per SM (bus bit) and clock than it claims is flagged; one-sided, since measuring
more than it claims costs a buyer nothing. FP32 FMA
throughput is fixed per SM and clock by the architecture (the four real H100/H200 cards in
tests/data/runs measured within 0.8% of their model's), so at the clock the test ran at (NVML's
telemetry during it) a card short by more than 10% has fewer working SMs than it reports, or
another clock. Bandwidth per bus bit at the memory clock it ran at: a card more than 25% short has
a narrower bus than it reports; smaller memory deficits are graded by the performance
rules (a memory 15% or 20% slow is C: examples/simcards/slow-memory.toml, tests/test_fail_open.py).
The model's side of each ratio is the profile's centre over the registry's SM count (bus width)
and max clock: healthy H100 and H200 cards ran the FP32 and bandwidth tests at their max clocks
(every telemetry sample of those tests in tests/data/runs). Only measured profiles have a centre
to compare with; a spec-derived centre (a published peak × another architecture's efficiency,
with an 8% prior spread) is not precise enough to tell SMs apart, so there the check is not made.

Records made by gpuhealth 0.1.0 did not read the PCI ids or the power-limit range: those fields
are listed as not read, not counted as a check the card failed to answer (measure 0).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gpuhealth.judge import stats
from gpuhealth.judge.profiles import Profile, ProfileIdentity
from gpuhealth.models import CardIdentity, Finding, RunRecord, TelemetrySample, TestResult

# Max clocks are VBIOS constants that NVML reports exactly; 1% (about one 15 MHz step at 1.98 GHz)
# absorbs rounding, and a reflash that gains less than that is not worth flagging.
CLOCK_TOLERANCE = 0.01
# Power limits come in milliwatts; the default limit of a genuine card is a VBIOS constant.
POWER_TOLERANCE_W = 1.0
# Derived checks (module docstring), one-sided: the eight real H100/H200 records in
# tests/data/runs are at most 0.8% (FP32) and 0.6% (bandwidth) below their model's; a card that
# reports 132 SMs but computes with 114 is 13.6% below; a memory 15-20% slow (the slow-memory
# example, test_fail_open's 0.8 card) stays with the performance rules (C).
FP32_PER_SM_TOLERANCE = 0.10
BANDWIDTH_PER_BIT_TOLERANCE = 0.25
FP32_METRIC = ("fp32", "fp32_tflops")
BANDWIDTH_METRIC = ("bandwidth", "triad_gbs")
# Identity fields a gpuhealth version did not read: absent from its records by design.
NOT_READ_BY: dict[str, tuple[str, ...]] = {
    "0.1.0": ("pci_device_id", "pci_subsystem_id", "power_limit_max_w"),
}

LABELS = {
    "pci_device_id": "PCI device id",
    "pci_subsystem_id": "PCI subsystem id",
    "sm_count": "SM count",
    "memory_bus_width_bits": "memory bus width",
    "max_sm_clock_mhz": "max SM clock",
    "max_memory_clock_mhz": "max memory clock",
    "power_limit_default_w": "default power limit",
    "power_limit_max_w": "max power limit",
    "board_part_number": "board part number",
}
UNITS = {
    "memory_bus_width_bits": " bit",
    "max_sm_clock_mhz": " MHz",
    "max_memory_clock_mhz": " MHz",
    "power_limit_default_w": " W",
    "power_limit_max_w": " W",
}


@dataclass(frozen=True)
class Difference:
    """One way the card is not what its model's registry says."""

    text: str  # in the buyer's words, with the value and what was expected
    value: str
    expected: str
    # What showed it: "identity" (what the card reports), else the test whose measurement did.
    source: str = "identity"
    detail: str | None = None  # the numbers behind a measured difference


@dataclass
class _Outcome:
    mismatches: list[Difference]
    unrecognised: list[Difference]
    unreported: list[str]  # registry fields the card did not report
    unmade: list[str]  # derived checks not made, each with why
    unmeasured: list[str]  # derived checks not made because their test measured nothing
    not_read: list[str]  # fields the gpuhealth that made the record did not read


def registry_findings(record: RunRecord, profile: Profile | None) -> list[Finding]:
    """The card's identity and what it measures against its model's registry ([identity])."""
    if profile is None or profile.identity is None:
        return []  # no registry for the model: nothing to check it against
    registry, card = profile.identity, record.identity
    outcome = _Outcome([], [], [], [], [], [])
    not_read = NOT_READ_BY.get(record.tool_version, ())
    _check_fields(card, registry, not_read, outcome)
    _check_fp32_per_sm(record, profile, registry, outcome)
    _check_bandwidth_per_bit(record, profile, registry, outcome)
    why = f"not read by gpuhealth {record.tool_version}, which made this record"
    return _findings(profile, why, outcome)


# --- the fields ---------------------------------------------------------------------------------


def _check_fields(
    card: CardIdentity, registry: ProfileIdentity, not_read: Sequence[str], outcome: _Outcome
) -> None:
    listed: list[tuple[str, tuple[str, ...], bool]] = [
        ("pci_device_id", tuple(_pci(i) for i in registry.pci_device_ids), True),
        ("pci_subsystem_id", tuple(_pci(i) for i in registry.pci_subsystem_ids), False),
        ("board_part_number", registry.board_part_numbers, False),
    ]
    for name, known, strict in listed:
        if not known:
            continue
        raw = getattr(card, name)
        if raw is None:
            _unreported(name, not_read, outcome)
            continue
        value = _pci(raw) if name.startswith("pci_") else str(raw)
        if value in known:
            continue
        difference = Difference(
            f"{LABELS[name]} {value}, not one of the model's ({', '.join(known)})",
            f"{LABELS[name]} {value}",
            ", ".join(known),
        )
        (outcome.mismatches if strict else outcome.unrecognised).append(difference)
    numbers: list[tuple[str, float | None, Callable[[float, float], bool]]] = [
        ("sm_count", registry.sm_count, _exact),
        ("memory_bus_width_bits", registry.memory_bus_width_bits, _exact),
        ("max_sm_clock_mhz", registry.max_sm_clock_mhz, _within_clock_tolerance),
        ("max_memory_clock_mhz", registry.max_memory_clock_mhz, _within_clock_tolerance),
        ("power_limit_default_w", registry.power_limit_default_w, _within_power_tolerance),
        ("power_limit_max_w", registry.power_limit_max_w, _within_power_tolerance),
    ]
    for name, expected, same in numbers:
        if expected is None:
            continue
        value = getattr(card, name)
        if value is None:
            _unreported(name, not_read, outcome)
            continue
        if same(float(value), float(expected)):
            continue
        unit = UNITS.get(name, "")
        outcome.mismatches.append(
            Difference(
                f"{LABELS[name]} {_number(value)}{unit}, the model's {_number(expected)}{unit}",
                f"{LABELS[name]} {_number(value)}{unit}",
                f"{_number(expected)}{unit}",
            )
        )


def _unreported(name: str, not_read: Sequence[str], outcome: _Outcome) -> None:
    (outcome.not_read if name in not_read else outcome.unreported).append(LABELS[name])


def _exact(value: float, expected: float) -> bool:
    return value == expected


def _within_clock_tolerance(value: float, expected: float) -> bool:
    return abs(value - expected) <= CLOCK_TOLERANCE * expected


def _within_power_tolerance(value: float, expected: float) -> bool:
    return abs(value - expected) <= POWER_TOLERANCE_W


def _pci(value: str) -> str:
    """A PCI id in one spelling: "0x233010de" and "0X233010DE" are "0x233010DE"."""
    text = value.strip()
    return "0x" + text[2:].upper() if text[:2].lower() == "0x" else text.upper()


def _number(value: float) -> str:
    return f"{value:g}" if float(value) != int(value) else str(int(value))


# --- what the card measures against what it reports ---------------------------------------------


@dataclass(frozen=True)
class _Derived:
    what: str  # "FP32 throughput per SM per GHz"
    short: str  # "FP32": the measured quantity
    metric: tuple[str, str]
    unit: str  # of the measured metric
    per: str  # "SM" / "bus bit"
    card_units: int | None  # what the card reports: SMs / bus bits
    registry_units: int | None
    card_max_mhz: float | None
    registry_max_mhz: float | None
    clock: Callable[[TelemetrySample], float | None]
    tolerance: float
    like: Callable[[int, float], str]  # the card's units x ratio, in words


def _check_fp32_per_sm(
    record: RunRecord, profile: Profile, registry: ProfileIdentity, outcome: _Outcome
) -> None:
    if registry.sm_count is None:
        return
    check = _Derived(
        "FP32 throughput per SM per GHz",
        "FP32",
        FP32_METRIC,
        "TFLOP/s",
        "SM",
        record.identity.sm_count,
        registry.sm_count,
        record.identity.max_sm_clock_mhz,
        registry.max_sm_clock_mhz,
        lambda s: s.sm_clock_mhz,
        FP32_PER_SM_TOLERANCE,
        lambda units, ratio: (
            f"measures like a card with {units * ratio:.0f} SMs, not the {units} it reports "
            "(or a lower SM clock than it reports)"
        ),
    )
    _derived(record, profile, check, outcome)


def _check_bandwidth_per_bit(
    record: RunRecord, profile: Profile, registry: ProfileIdentity, outcome: _Outcome
) -> None:
    if registry.memory_bus_width_bits is None:
        return
    check = _Derived(
        "memory bandwidth per bus bit per GHz",
        "stream triad",
        BANDWIDTH_METRIC,
        "GB/s",
        "bus bit",
        record.identity.memory_bus_width_bits,
        registry.memory_bus_width_bits,
        record.identity.max_memory_clock_mhz,
        registry.max_memory_clock_mhz,
        lambda s: s.memory_clock_mhz,
        BANDWIDTH_PER_BIT_TOLERANCE,
        lambda units, ratio: (
            f"measures like a {units * ratio:.0f}-bit memory bus, not the {units}-bit one it "
            "reports (or a lower memory clock than it reports)"
        ),
    )
    _derived(record, profile, check, outcome)


def _derived(record: RunRecord, profile: Profile, check: _Derived, outcome: _Outcome) -> None:
    reference = profile.metric(*check.metric)
    test = record.test(check.metric[0])
    metric = test.metric(check.metric[1]) if test is not None else None
    clock = _clock_under_load(test, check.clock) if test is not None else None
    clock = clock or check.card_max_mhz
    why = None
    if profile.cards == 0 or reference is None:
        why = "the model's reference is spec-derived, not measured"
    elif check.registry_max_mhz is None:
        why = "the model's registry has no max clock"
    elif metric is None or not metric.values:  # its test measured nothing: said apart
        outcome.unmeasured.append(f"{check.what} ({'.'.join(check.metric)} was not measured)")
        return
    elif not check.card_units:
        why = f"the card did not report its {check.per} count"
    elif not clock:
        why = "the card did not report its clock"
    if why is not None:
        outcome.unmade.append(f"{check.what} ({why})")
        return
    assert reference is not None and metric is not None and check.card_units and clock
    assert check.registry_units is not None and check.registry_max_mhz is not None
    measured = stats.estimate(metric.values).value / (check.card_units * clock / 1000.0)
    expected = reference.center / (check.registry_units * check.registry_max_mhz / 1000.0)
    ratio = measured / expected
    # One-sided: a card that measures more than it reports claims too little, which costs a
    # buyer nothing (and a profile whose centres are too low would flag every healthy card).
    if ratio >= 1.0 - check.tolerance:
        return
    per = f"{check.unit} per {check.per} per GHz"
    outcome.mismatches.append(
        Difference(
            check.like(check.card_units, ratio),
            f"{_sig(measured)} {per}",
            f"at least {_sig(expected * (1 - check.tolerance))} {per}",
            source=check.metric[0],
            detail=f"{check.short} {_sig(measured)} {per} at {clock:.0f} MHz, the model's "
            f"{_sig(expected)} ({ratio - 1:+.1%}, more than {check.tolerance:.0%} below)",
        )
    )


def _clock_under_load(
    test: TestResult, clock: Callable[[TelemetrySample], float | None]
) -> float | None:
    """The median clock of the test's telemetry while the card was busy (idle samples between
    launches show idle clocks); None without such samples."""
    busy = [
        value
        for s in test.telemetry
        if (s.utilization_pct is None or s.utilization_pct > 0)
        and (value := clock(s)) is not None
        and value > 0
    ]
    return statistics.median(busy) if busy else None


def _sig(value: float) -> str:
    return f"{value:.4g}"


# --- the findings -------------------------------------------------------------------------------


def _findings(profile: Profile, not_read_why: str, outcome: _Outcome) -> list[Finding]:
    """One identity_mismatch per source (what the card reports; each measurement that shows it
    is not what it reports: gpuhealth/judge/causes.py ties that measurement's deficits to it)."""
    found: list[Finding] = []
    model = profile.name
    for source in dict.fromkeys(d.source for d in outcome.mismatches):
        differences = [d for d in outcome.mismatches if d.source == source]
        details = [d.detail for d in differences if d.detail]
        found.append(
            Finding(
                "identity_mismatch",
                "major",
                source,
                f"not what it claims to be: a genuine {model} would not show "
                + "; ".join(d.text for d in differences)
                if source == "identity"
                else f"not what it claims to be: it {'; '.join(d.text for d in differences)}",
                value="; ".join(d.value for d in differences),
                reference="; ".join(d.expected for d in differences),
                measure=float(len(differences)),
                detail="; ".join(details) if details else None,
            )
        )
    if outcome.unrecognised:
        found.append(
            Finding(
                "identity_unrecognised",
                "info",
                "identity",
                f"not seen on healthy {model} cards: "
                + "; ".join(d.text for d in outcome.unrecognised),
                value="; ".join(d.value for d in outcome.unrecognised),
                reference="; ".join(d.expected for d in outcome.unrecognised),
            )
        )
    if outcome.unreported or outcome.not_read:
        parts = []
        if outcome.unreported:
            parts.append(f"not reported by the card: {', '.join(outcome.unreported)}")
        if outcome.not_read:
            parts.append(f"{not_read_why}: {', '.join(outcome.not_read)}")
        found.append(_unverified(model, "identity", parts, len(outcome.unreported)))
    if outcome.unmade:
        found.append(_unverified(model, "measurements", outcome.unmade, len(outcome.unmade)))
    if outcome.unmeasured:  # a consequence of the tests not measured (gpuhealth/judge/causes.py)
        count = len(outcome.unmeasured)
        found.append(_unverified(model, "unmeasured", outcome.unmeasured, count))
    return found


def _unverified(model: str, source: str, parts: Sequence[str], unmade: int) -> Finding:
    """Identity checks not made: of what the card reports (source "identity"; fields an older
    gpuhealth did not read are listed, not counted), of what it measures ("measurements"), or
    because the test that measures it measured nothing ("unmeasured")."""
    return Finding(
        "identity_unverified",
        "minor",
        source,
        f"identity checks against the {model} registry not made: " + "; ".join(parts),
        value=str(unmade),
        measure=float(unmade),
    )


def reported_identity_findings(
    card: CardIdentity, profile: Profile | None, absent: Sequence[str], absent_why: str
) -> list[Finding]:
    """What a card reports (no measurement) against its model's registry: the fields' findings
    of registry_findings alone. `absent`: registry fields that the card's report cannot hold
    (an nvidia-smi report has no SM count or bus width), listed as `absent_why`, not counted."""
    if profile is None or profile.identity is None:
        return []
    outcome = _Outcome([], [], [], [], [], [])
    _check_fields(card, profile.identity, absent, outcome)
    return _findings(profile, absent_why, outcome)
