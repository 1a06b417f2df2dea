"""Resale readiness: the settings a buyer expects at factory defaults, each with its reset command.

A backend reads what it can (backends/*.settings(): MIG mode, compute mode, application and
locked clocks, persistence, confidential computing); ECC mode and the power limit come from the
health counters and identity read anyway. Each becomes a ReadinessItem: the value read, the
factory default, a status and the command that puts it back. Pure: no GPU.

A changed setting is not a hardware fault: it does not change the health grade by itself (ECC off
and a lowered power limit keep their own findings, ecc_disabled and power_limit_reduced). The
certificate lists every item and a readiness verdict; findings.readiness_findings lists the
changed ones as a reason (settings_not_default: the default policy grades it A, listed).

Locked clocks have no NVML query: on a real card they read "unreadable". Where the tests then saw
a clock setting hold the card down while its application clocks were at their default
(clockhold.py), the list shown (shown_items) marks locked clocks changed, with what was seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

from gpuhealth.judge.clockhold import clock_holds, describe
from gpuhealth.models import (
    CardIdentity,
    HealthCounters,
    ReadinessItem,
    ReadinessStatus,
    RunRecord,
    SettingReading,
)

# The settings a backend reads (SettingReading.key), in the order the certificate lists them.
SETTING_KEYS = (
    "mig_mode",
    "compute_mode",
    "applications_clocks",
    "locked_clocks",
    "persistence_mode",
    "confidential_computing",
)
POWER_LIMIT_TOLERANCE_W = 1.0  # NVML reports milliwatts; a limit within 1 W is the default
CC_RESET = (
    "nvidia_gpu_tools.py --gpu-bdf={bus} --set-cc-mode=off --reset-after-cc-mode-switch "
    "(NVIDIA gpu-admin-tools)"
)
# key -> (name, factory default, reset command with {i} the GPU index, {bus} its PCI bus id)
_SPEC: dict[str, tuple[str, str, str]] = {
    "ecc_mode": ("ECC", "enabled", "nvidia-smi -i {i} -e 1 (then reboot)"),
    "mig_mode": ("MIG mode", "disabled", "nvidia-smi -i {i} -mig 0 (then reset the GPU)"),
    "compute_mode": ("Compute mode", "default", "nvidia-smi -i {i} -c DEFAULT"),
    "applications_clocks": ("Application clocks", "the card's default", "nvidia-smi -i {i} -rac"),
    "locked_clocks": (
        "Locked clocks",
        "none",
        "nvidia-smi -i {i} -rgc; nvidia-smi -i {i} -rmc",
    ),
    "power_limit": ("Power limit", "the card's default", "nvidia-smi -i {i} -pl {default}"),
    "persistence_mode": (
        "Persistence mode",
        "per site policy (driver default: disabled)",
        "nvidia-smi -i {i} -pm 0 (or -pm 1, as the site runs its cards)",
    ),
    "confidential_computing": ("Confidential computing", "off", CC_RESET),
}
Verdict = Literal["ready", "not ready", "not confirmed", "not read"]


def readiness_items(
    readings: Mapping[str, SettingReading],
    counters: HealthCounters | None,
    identity: CardIdentity,
) -> tuple[ReadinessItem, ...]:
    """Every readiness item: ECC and power limit from the counters, the rest from readings."""
    items = [_ecc(counters, identity), _power(counters, identity)]
    for key in SETTING_KEYS:
        reading = readings.get(key)
        if reading is None:  # the backend did not try: never "ok"
            reading = SettingReading(key, "unreadable", detail="not read by this backend")
        items.append(_from_reading(reading, identity))
    return tuple(items)


def _reset(key: str, identity: CardIdentity, default: str = "") -> str:
    bus = identity.pci_bus_id or "<bus id>"
    return _SPEC[key][2].format(i=identity.index, bus=bus, default=default)


def _item(
    key: str,
    identity: CardIdentity,
    value: str | None,
    status: ReadinessStatus,
    expected: str | None = None,
    note: str | None = None,
    default: str = "",
) -> ReadinessItem:
    name, factory, _ = _SPEC[key]
    return ReadinessItem(
        key, name, value, expected or factory, status, _reset(key, identity, default), note
    )


def _ecc(counters: HealthCounters | None, identity: CardIdentity) -> ReadinessItem:
    enabled = counters.ecc_enabled if counters else None
    if enabled is None:
        return _item(
            "ecc_mode", identity, None, "unreadable", note="ECC mode not read (or not offered)"
        )
    value = "enabled" if enabled else "disabled"
    pending = counters.ecc_pending_enabled if counters else None
    if pending is not None and pending != enabled:
        value += f", {'enabled' if pending else 'disabled'} after the next reboot"
    ok = enabled and pending is not False
    return _item("ecc_mode", identity, value, "ok" if ok else "not_default")


def _power(counters: HealthCounters | None, identity: CardIdentity) -> ReadinessItem:
    limit = counters.power_limit_w if counters else None
    default = identity.power_limit_default_w
    if limit is None or default is None:
        return _item(
            "power_limit",
            identity,
            None if limit is None else f"{limit:g} W",
            "unreadable",
            note="the power limit or its default was not read",
        )
    status: ReadinessStatus = (
        "ok" if abs(limit - default) <= POWER_LIMIT_TOLERANCE_W else "not_default"
    )
    return _item(
        "power_limit",
        identity,
        f"{limit:g} W",
        status,
        expected=f"{default:g} W",
        default=f"{default:g}",
    )


def _from_reading(reading: SettingReading, identity: CardIdentity) -> ReadinessItem:
    key = reading.key
    if reading.state == "not_supported":
        return _item(key, identity, None, "not_applicable", note="not offered by this card")
    if reading.state == "unreadable" or reading.value is None:
        return _item(key, identity, None, "unreadable", note=reading.detail or "not read")
    if key == "persistence_mode":
        return _item(key, identity, reading.value, "site_policy")
    if key == "applications_clocks":
        if reading.default is None:
            return _item(
                key, identity, reading.value, "unreadable", note="the default was not read"
            )
        status: ReadinessStatus = "ok" if reading.value == reading.default else "not_default"
        return _item(key, identity, reading.value, status, expected=reading.default)
    factory = _SPEC[key][1]
    return _item(key, identity, reading.value, "ok" if reading.value == factory else "not_default")


def shown_items(record: RunRecord) -> tuple[ReadinessItem, ...] | None:
    """The readiness list as read before the tests, with locked clocks marked changed where the
    tests saw a clock setting hold the card while its application clocks were at their default
    (then only a lock explains it). The stored list is left as it was read."""
    items = record.readiness
    app = next((i for i in items or () if i.key == "applications_clocks"), None)
    holds = clock_holds(record) if app is not None and app.status == "ok" else ()
    if not items or not holds:
        return items
    seen = "; ".join(describe(h) for h in holds) + " under load"
    note = "seen by the tests: NVML cannot read locked clocks"
    return tuple(
        replace(i, value=seen, status="not_default", note=note)
        if i.key == "locked_clocks" and i.status != "not_default"
        else i
        for i in items
    )


def verdict(items: tuple[ReadinessItem, ...] | None) -> Verdict:
    """ready: every item at its default or not offered; not ready: one changed; not confirmed:
    none changed but one could not be read (never ready); not read: a record from before."""
    if items is None:
        return "not read"
    if any(i.status == "not_default" for i in items):
        return "not ready"
    if any(i.status == "unreadable" for i in items):
        return "not confirmed"
    return "ready"


def resale_line(record: RunRecord) -> str:
    """One line for the terminal: the readiness verdict (and what to reset) and the clear."""
    items = shown_items(record)
    changed = [i.name for i in items or () if i.status == "not_default"]
    ready = f"readiness: {verdict(items)}"
    if changed:
        ready += f" (reset: {', '.join(changed)})"
    clear = record.memory_clear
    if clear is None:
        cleared = "memory: not cleared (the run did not reach the clear)"
    elif clear.status == "cleared":
        cleared = f"memory: cleared ({clear.fraction or 0.0:.1%} of it, zeros read back)"
    elif clear.status == "failed":
        cleared = f"memory: CLEAR FAILED ({clear.words_not_zero} word(s) not zero)"
    else:
        cleared = f"memory: not cleared ({clear.note})"
    return f"{ready}; {cleared}"
