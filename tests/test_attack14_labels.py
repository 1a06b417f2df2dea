"""Attack on issue 14: a seller edits a label the judge reads and signs the record again.

The judge took the memory clear's status, a readiness item's status and the PCIe copy rates as
written: a clear "cleared" with 16 words read back non-zero graded A (the failed clear is F), a
MIG mode "ok" while its value said enabled (or deleted) read as "ready", copies three times
faster than the link raised nothing. Each is now a claim without its evidence
(gpuhealth/judge/evidence_labels.py): INCOMPLETE when judged, INVALID in `gpuhealth verify` even
with a good signature. A genuine record has none of these problems.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from recordkit import edit, get
from verifykit import check_lines, rejudged, resigned_data, verify

from gpuhealth.certificate.keys import SigningKey, generate_key, pin
from gpuhealth.judge.evidence import evidence_problems
from gpuhealth.judge.grading import load_policy
from gpuhealth.judge.profiles import builtin_profiles, match_profile
from gpuhealth.judge.readiness import readiness_items, verdict
from gpuhealth.models import (
    MemoryClear,
    Metric,
    ReadinessItem,
    RunRecord,
    SettingReading,
    UnclearedWord,
    record_from_json,
    record_to_json,
)

DATA = Path(__file__).resolve().parent / "data" / "current"
QUICK = DATA / "sim-h100-quick.json"
NEVER_GRADED = ("INCOMPLETE", "F")
THOROUGH = DATA / "sim-h100-thorough.json"


def stored(path: Path) -> RunRecord:
    return record_from_json(path.read_text(encoding="utf-8"), str(path))


def judged(record: RunRecord) -> RunRecord:
    """Judged again as gpuhealth judges it (what a seller does before signing an edit)."""
    return rejudged(record, load_policy(), match_profile(record.identity, builtin_profiles()))


def letter(record: RunRecord) -> str:
    graded = judged(record)
    assert graded.grade is not None
    return graded.grade.letter


def problems(record: RunRecord, test: str) -> list[str]:
    return [p.problem for p in evidence_problems(record) if p.test == test]


@pytest.mark.parametrize("path", [QUICK, THOROUGH])
def test_a_genuine_record_has_no_label_problem(path: Path) -> None:
    record = stored(path)
    for name in ("memory_clear", "readiness", "pcie", "run"):
        assert problems(record, name) == []
    assert letter(record) == "A"


# --- the memory clear -------------------------------------------------------------------------

WORDS = tuple(UnclearedWord(0x4000 + 4 * i, 0xDEADBEEF) for i in range(16))


def failed_clear(record: RunRecord) -> MemoryClear:
    """What measure/memclear.py records for 16 words that kept stale data."""
    clear = record.memory_clear
    assert clear is not None and clear.status == "cleared"
    return replace(
        clear,
        status="failed",
        words_not_zero=16,
        first_not_zero=WORDS,
        note="16 word(s) read back non-zero after the overwrite",
    )


def test_a_failed_clear_relabelled_cleared_is_not_an_a() -> None:
    record = stored(QUICK)
    failed = replace(record, memory_clear=failed_clear(record))
    assert problems(failed, "memory_clear") == []
    assert letter(failed) == "F"
    relabelled = replace(failed, memory_clear=replace(failed_clear(record), status="cleared"))
    assert problems(relabelled, "memory_clear") == [
        "status cleared, but 16 word(s) read back non-zero (16 listed)"
    ]
    assert letter(relabelled) == "INCOMPLETE"


def clear_edit(**changes: Any) -> RunRecord:
    record = stored(QUICK)
    assert record.memory_clear is not None
    return replace(record, memory_clear=replace(record.memory_clear, **changes))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"fraction": 1.5}, "fraction 1.5, but"),
        ({"bytes_cleared": -4}, "-4 bytes cleared of the card's"),
        ({"bytes_cleared": 2 * 85520809984}, "bytes cleared of the card's 85520809984"),
        ({"memory_total_bytes": 1 << 40}, "memory_total_bytes 1099511627776, but the card has"),
        ({"method": "DoD 5220.22-M, 7 passes"}, "method 'DoD 5220.22-M, 7 passes', not"),
        ({"seconds": -0.1}, "in -0.1 s (a positive time required)"),
        ({"seconds": None}, "in None s (a positive time required)"),
        ({"status": "failed"}, "status failed with 0 word(s) read back non-zero and 0 listed"),
        ({"status": "not_cleared"}, "status not_cleared, but 85008056320 bytes cleared"),
        ({"words_not_zero": -3}, "status cleared, but -3 word(s) read back non-zero"),
        (
            {"status": "failed", "words_not_zero": 2, "first_not_zero": (WORDS[1], WORDS[0])},
            "the words listed must be distinct word addresses in order",
        ),
        (
            {"status": "failed", "words_not_zero": 1, "first_not_zero": (UnclearedWord(6, 1),)},
            "the words listed must be distinct word addresses in order",
        ),
    ],
)
def test_a_clear_edited_against_its_numbers(changes: dict[str, Any], expected: str) -> None:
    record = clear_edit(**changes)
    found = problems(record, "memory_clear")
    assert any(expected in p for p in found), found
    assert letter(record) in NEVER_GRADED  # F where the edit says "failed": worse, not better


# --- readiness -------------------------------------------------------------------------------


def readiness_edit(key: str, **changes: Any) -> RunRecord:
    record = stored(QUICK)
    assert record.readiness is not None
    items = tuple(replace(i, **changes) if i.key == key else i for i in record.readiness)
    return replace(record, readiness=items)


@pytest.mark.parametrize(
    ("key", "changes"),
    [
        ("mig_mode", {"value": "enabled"}),  # status left "ok"
        ("compute_mode", {"value": "exclusive process"}),
        ("applications_clocks", {"value": "sm 1410 MHz, memory 2619 MHz"}),
        ("locked_clocks", {"status": "unreadable"}),  # a value read, called unreadable
        ("mig_mode", {"expected": "enabled", "value": "enabled"}),  # the default moved to fit
        ("ecc_mode", {"value": "disabled"}),  # the counters say enabled
        ("power_limit", {"value": "500 W"}),
        ("power_limit", {"status": "not_default"}),
        ("persistence_mode", {"status": "ok"}),
        ("confidential_computing", {"status": "not_default"}),  # "off" is the default
    ],
)
def test_a_readiness_item_whose_status_does_not_follow(key: str, changes: dict[str, Any]) -> None:
    record = readiness_edit(key, **changes)
    found = problems(record, "readiness")
    assert len(found) == 1 and found[0].startswith(f"readiness item {key} "), found
    assert letter(record) == "INCOMPLETE"


def test_a_changed_setting_cannot_be_deleted_or_listed_twice() -> None:
    changed = readiness_edit("mig_mode", value="enabled", status="not_default")
    assert problems(changed, "readiness") == []
    assert verdict(changed.readiness) == "not ready"
    items = changed.readiness or ()
    deleted = replace(changed, readiness=tuple(i for i in items if i.key != "mig_mode"))
    assert verdict(deleted.readiness) == "ready"  # what the seller is after
    assert problems(deleted, "readiness") == [
        "readiness item mig_mode listed 0 times, once required"
    ]
    ok = next(i for i in stored(QUICK).readiness or () if i.key == "mig_mode")
    twice = replace(changed, readiness=(*items, ok))
    assert problems(twice, "readiness") == ["readiness item mig_mode listed 2 times, once required"]
    alien = ReadinessItem("fan_speed", "Fan", "100 %", "auto", "ok")
    assert problems(replace(changed, readiness=(*items, alien)), "readiness") == [
        "readiness item 'fan_speed' is not one gpuhealth reads"
    ]


# --- PCIe copy rates ----------------------------------------------------------------------------


def rates(record: RunRecord, name: str, factor: float) -> RunRecord:
    metric = get(record, "pcie").metric(name)
    assert metric is not None
    scaled = Metric(name, metric.unit, tuple(v * factor for v in metric.values))
    metrics = tuple(scaled if m.name == name else m for m in get(record, "pcie").metrics)
    return edit(record, "pcie", metrics=metrics)


@pytest.mark.parametrize(
    ("name", "factor"), [("h2d_gbs", 3.0), ("d2h_gbs", 1.25), ("both_gbs", 1.4)]
)
def test_copies_faster_than_the_link(name: str, factor: float) -> None:
    record = rates(stored(QUICK), name, factor)
    found = problems(record, "pcie")
    assert len(found) == 1 and found[0].startswith(f"{name} "), found
    assert "above what a Gen5 x16 link carries" in found[0]
    assert letter(record) == "INCOMPLETE"


def test_copies_just_within_the_link_are_believed() -> None:
    """63.0 GB/s is Gen5 x16's rate: 1.1 x the stored ~55 GB/s is 61 GB/s, still possible."""
    assert problems(rates(stored(QUICK), "h2d_gbs", 1.1), "pcie") == []


def test_copies_beyond_a_link_read_faster_than_the_cards_maximum_still_count() -> None:
    """Neither the card's maximum nor a faster link claimed under load lets a rate through."""
    record = rates(stored(QUICK), "h2d_gbs", 3.0)
    lied = edit(
        record, "pcie", parameters={**get(record, "pcie").parameters, "link_gen_under_load": 6}
    )
    assert problems(lied, "pcie") == [
        f"h2d_gbs {max(get(lied, 'pcie').metric('h2d_gbs').values):g} GB/s, above what a Gen6 x16 "  # type: ignore[union-attr]
        "link carries (1 x 118.0 GB/s)"
    ]


# --- end to end: verify, the record re-signed with the seller's key ----------------------------


@pytest.fixture
def seller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SigningKey:
    monkeypatch.setenv("GPUHEALTH_CONFIG_DIR", str(tmp_path / "buyer"))
    monkeypatch.delenv("GPUHEALTH_KEY_FILE", raising=False)
    key = generate_key(tmp_path / "seller" / "keys" / "signing.key")
    assert pin(key.fingerprint, "the seller")
    return key


def test_verify_calls_a_resigned_relabelled_clear_invalid(
    seller: SigningKey, tmp_path: Path
) -> None:
    record = stored(QUICK)
    failed = replace(record, memory_clear=failed_clear(record))
    relabelled = judged(
        replace(failed, memory_clear=replace(failed_clear(record), status="cleared"))
    )
    data = resigned_data(json.loads(record_to_json(relabelled)), seller)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    code, out = verify(str(path))
    assert code == 1, out
    assert check_lines(out)["evidence"] == "fail"
    assert out.startswith(
        "INVALID (SIMULATED CARD): evidence: memory_clear: status cleared, but 16 word(s) read "
        "back non-zero (16 listed)"
    ), out


def test_verify_calls_a_resigned_deleted_setting_invalid(
    seller: SigningKey, tmp_path: Path
) -> None:
    """MIG left enabled: the seller deletes the item, judges and signs again: "ready" no more."""
    changed = readiness_edit("mig_mode", value="enabled", status="not_default")
    items = tuple(i for i in changed.readiness or () if i.key != "mig_mode")
    deleted = judged(replace(changed, readiness=items))
    data = resigned_data(json.loads(record_to_json(deleted)), seller)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    code, out = verify(str(path))
    assert code == 1, out
    assert out.startswith(
        "INVALID (SIMULATED CARD): evidence: readiness: readiness item mig_mode listed 0 times"
    ), out


SETTING_VALUES = {
    "mig_mode": ("disabled", "enabled"),
    "compute_mode": ("default", "exclusive process"),
    "applications_clocks": ("sm 1980 MHz, memory 2619 MHz", "sm 1410 MHz, memory 2619 MHz"),
    "locked_clocks": ("none", "sm 1410-1410 MHz"),
    "persistence_mode": ("enabled", "disabled"),
    "confidential_computing": ("off", "on"),
}


def readings_in(state: str) -> dict[str, SettingReading]:
    """Every setting read in one state, as a backend gives it to readiness.py."""
    default_clocks = SETTING_VALUES["applications_clocks"][0]
    found: dict[str, SettingReading] = {}
    for key, (factory, changed) in SETTING_VALUES.items():
        default = default_clocks if key == "applications_clocks" else None
        found[key] = {
            "default": SettingReading(key, "read", factory, default),
            "changed": SettingReading(key, "read", changed, default),
            "no default": SettingReading(key, "read", changed, None),  # clocks: default unread
            "no value": SettingReading(key, "read", None, default),
            "not supported": SettingReading(key, "not_supported"),
            "unreadable": SettingReading(key, "unreadable", detail="NVML_ERROR_UNKNOWN"),
        }[state]
    return found


@pytest.mark.parametrize(
    "state", ["default", "changed", "no default", "no value", "not supported", "unreadable"]
)
@pytest.mark.parametrize(
    "counters",
    [
        {},
        {"ecc_enabled": None},
        {"ecc_enabled": False, "ecc_pending_enabled": True},
        {"power_limit_w": None},
        {"power_limit_w": 500.0},
    ],
)
def test_what_readiness_py_writes_is_never_a_problem(state: str, counters: dict[str, Any]) -> None:
    """No false alarm: every item readiness.py can make, from every reading state and ECC or
    power limit reading, holds (an application-clocks value without the card's default
    included: it is unreadable, with its value)."""
    record = stored(QUICK)
    assert record.counters_before is not None
    before = replace(record.counters_before, **counters)
    items = readiness_items(readings_in(state), before, record.identity)
    assert problems(replace(record, counters_before=before, readiness=items), "readiness") == []
