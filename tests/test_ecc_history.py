"""History you can trust, or the report says so (issue 11, item 6).

The card's memory-error and memory-repair history counts only while ECC is on and settled: an ECC
mode change waiting for a reboot voids it (C); uncorrectable errors in on-chip SRAM are told apart
from card memory (DRAM) and send the card to NVIDIA's field diagnostic (D); cards before Ampere
retire pages instead of remapping rows (pending: D, retired: B, many double-bit: C, at NVIDIA's
limit: F), and where neither mechanism can be read the memory-repair check is named as not made.

End to end through `gpuhealth grade --quick --sim-card`, and through nvml.py on the fake pynvml.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import fake_pynvml
import pynvml
import pytest
from fake_pynvml import FakeNvml
from simkit import card_toml, invoke

from gpuhealth.judge.coverage import counter_coverage_findings
from gpuhealth.judge.findings import RETIRED_PAGES_LIMIT, counter_findings
from gpuhealth.judge.grading import grade, load_policy
from gpuhealth.measure.backends import nvml
from gpuhealth.models import HealthCounters, record_from_json

POLICY = load_policy()
RUNS = sorted((Path(__file__).parent / "data" / "runs").glob("*.json"))
NEW_CODES = {
    "ecc_mode_pending",
    "ecc_sram_uncorrectable_history",
    "retired_pages_pending",
    "retired_pages_limit",
    "pages_retired",
}
ROW_REMAP_UNREADABLE = (
    'unreadable = ["remapped_rows_correctable", "remapped_rows_uncorrectable", '
    '"remapped_rows_pending", "remapped_rows_failure", "row_remap_histogram"'
)

NO_NVLINK = "NVML_FI_DEV_NVLINK_LINK_COUNT"


def before_ampere(retired: str, *more_unreadable: str) -> str:
    """Faults of a card that retires pages and has no row remapper."""
    extra = "".join(f', "{name}"' for name in more_unreadable)
    return f"retired_pages = {{ {retired} }}\n{ROW_REMAP_UNREADABLE}{extra}]"


# --- end to end: the grade, its first rule and what the certificate says ------------------------


def graded(tmp_path: Path, faults: str) -> dict[str, object]:
    spec = tmp_path / "card.toml"
    spec.write_text(card_toml(faults), encoding="utf-8")
    out = tmp_path / "run"
    result = invoke("grade", "--quick", "--quiet", "--sim-card", str(spec), "--out", str(out))
    assert (out / "run.json").is_file(), result.output
    record = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert isinstance(record, dict)
    return record


def reasons(record: dict[str, object]) -> list[dict[str, str]]:
    grade_ = record["grade"]
    assert isinstance(grade_, dict)
    return list(grade_["reasons"])


def letter(record: dict[str, object]) -> str:
    grade_ = record["grade"]
    assert isinstance(grade_, dict)
    return str(grade_["letter"])


def test_a_healthy_card_still_grades_a_and_reads_the_new_counters(tmp_path: Path) -> None:
    record = graded(tmp_path, "")
    assert letter(record) == "A", reasons(record)
    counters = record["counters_after"]
    assert isinstance(counters, dict)
    assert counters["ecc_pending_enabled"] is True
    assert counters["ecc_aggregate_uncorrected_sram"] == 0
    assert counters["ecc_aggregate_uncorrected_dram"] == 0
    # an H100 remaps rows; NVML reports no page retirement there, and none is held against it
    assert counters["retired_pages_sbe"] is None and counters["retired_pages_pending"] is None


@pytest.mark.parametrize(
    ("faults", "expected", "rules", "says"),
    [
        (
            "ecc_pending_enabled = false",
            "C",
            ["ecc-mode-pending"],
            "ECC will be turned off at the next reboot",
        ),
        (
            "ecc_enabled = false\necc_pending_enabled = true",
            "C",
            ["ecc-disabled", "ecc-mode-pending"],
            "nvidia-smi -i <gpu> -e 1",
        ),
        (
            "sram_uncorrected = 1",
            "D",
            ["ecc-sram-uncorrectable-history", "ecc-uncorrectable-history"],
            "field diagnostic",
        ),
        (before_ampere("sbe = 3, dbe = 1"), "B", ["pages-retired"], "4 memory page(s) retired"),
        (before_ampere("dbe = 15"), "B", ["pages-retired"], "15 for double-bit errors"),
        (
            before_ampere("sbe = 2, dbe = 16"),
            "C",
            ["pages-retired-many-double-bit"],
            "16 for double-bit errors",
        ),
        (
            before_ampere("dbe = 1, pending = true"),
            "D",
            ["retired-pages-pending", "pages-retired"],
            "needs a reboot",
        ),
        (
            before_ampere("sbe = 50, dbe = 13"),
            "F",
            ["retired-pages-limit", "pages-retired"],
            f"limit of {RETIRED_PAGES_LIMIT}",
        ),
        # neither row remapping nor page retirement readable: the memory-repair check not made
        (f"{ROW_REMAP_UNREADABLE}]", "B", ["counters-incomplete"], "memory-repair history"),
        # the card retires pages, but one of their readings fails: named, not the row remapper
        (
            before_ampere("sbe = 1", "retired_pages_pending"),
            "B",
            ["pages-retired", "counters-incomplete"],
            "pending page retirement",
        ),
        # history the driver will not place: SRAM (D) or card memory (C)? a check not made
        (
            'sram_uncorrected = 1\nunreadable = ["ecc_aggregate_uncorrected_sram"]',
            "C",
            ["ecc-uncorrectable-history", "counters-incomplete"],
            "where the 1 lifetime uncorrectable ECC error(s) happened",
        ),
    ],
)
def test_each_history_finding_gives_its_grade_rule_and_text(
    tmp_path: Path, faults: str, expected: str, rules: list[str], says: str
) -> None:
    record = graded(tmp_path, faults)
    fired = reasons(record)
    assert letter(record) == expected, fired
    assert [r["rule"] for r in fired] == rules
    assert any(says in r["message"] for r in fired), fired


def test_a_card_that_retires_pages_is_not_blamed_for_having_no_row_remapper(
    tmp_path: Path,
) -> None:
    record = graded(tmp_path, before_ampere("sbe = 0, dbe = 0"))
    assert letter(record) == "A", reasons(record)


# --- old records: made before these counters existed, never blamed for them ----------------------


@pytest.mark.parametrize("run", RUNS, ids=[p.stem for p in RUNS])
def test_old_records_gain_no_history_finding(run: Path) -> None:
    record = record_from_json(run.read_text(encoding="utf-8"), str(run))
    before, after = record.counters_before, record.counters_after
    now = after or before
    assert now is not None and now.ecc_pending_enabled is None  # written before the fields
    codes = {f.code for f in counter_findings(before, after)}
    assert not codes & NEW_CODES
    coverage = counter_coverage_findings(record)
    # a made check stays made: no record's "not made" list names anything of this issue
    text = " ".join(f.message for f in coverage)
    assert "memory-repair" not in text and "lifetime uncorrectable" not in text


def test_an_old_record_without_a_row_remapper_changes_wording_not_grade() -> None:
    """Before: five row-remap counters named (B). Now: one memory-repair check named (B)."""
    record = record_from_json(RUNS[0].read_text(encoding="utf-8"), str(RUNS[0]))
    assert record.counters_before is not None and record.counters_after is not None
    no_remapper = {
        "remapped_rows_correctable": None,
        "remapped_rows_uncorrectable": None,
        "remapped_rows_pending": None,
        "remapped_rows_failure": None,
        "row_remap_histogram": None,
    }
    old = replace(
        record,
        counters_before=replace(record.counters_before, **no_remapper),
        counters_after=replace(record.counters_after, **no_remapper),
    )
    found = counter_coverage_findings(old)
    assert [f.code for f in found] == ["counters_incomplete"]
    assert "memory-repair history" in found[0].message
    assert grade(tuple(found), POLICY).letter == "B"


# --- the policy: each new finding has its rule and its source ------------------------------------


def test_the_rules_cite_their_sources() -> None:
    rules = {r.id: r for r in POLICY.spec.rules}
    assert rules["ecc-sram-uncorrectable-history"].grade == "D"
    assert "a100-gpu-mem-error-mgmt" in rules["ecc-sram-uncorrectable-history"].rationale
    assert rules["ecc-mode-pending"].grade == "C"
    assert "nvidia-smi -i <gpu> -e 1" in rules["ecc-mode-pending"].rationale
    assert rules["retired-pages-pending"].grade == "D"
    assert rules["retired-pages-limit"].grade == "F"
    assert str(RETIRED_PAGES_LIMIT) in rules["retired-pages-limit"].rationale
    assert "DcgmGPUHardwareLimits.h" in rules["retired-pages-limit"].rationale
    assert rules["pages-retired-many-double-bit"].min_measure == 16
    assert "more than 15" in rules["pages-retired-many-double-bit"].rationale.lower()
    ids = list(rules)  # the C rule on double-bit pages must come before the B rule it narrows
    assert ids.index("pages-retired-many-double-bit") < ids.index("pages-retired")


# --- nvml.py reads them, from the fake pynvml -----------------------------------------------------


@pytest.fixture
def card(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """card(scenario) -> (the fake, an NvmlDevice on its first card)."""
    sessions: list[nvml.Nvml] = []

    def open_first(fake: FakeNvml) -> tuple[FakeNvml, nvml.NvmlDevice]:
        monkeypatch.setattr(nvml, "_load_pynvml", fake.load)
        session = nvml.Nvml.open()
        sessions.append(session)
        return fake, session.device(0)

    yield open_first
    for session in sessions:
        session.close()


def read(card: object, fake: FakeNvml) -> tuple[FakeNvml, nvml.NvmlDevice, HealthCounters]:
    assert callable(card)
    fake, device = card(fake)
    return fake, device, device.counters()


def test_nvml_reads_an_ecc_change_waiting_to_turn_it_off(card: object) -> None:
    _, device, c = read(card, fake_pynvml.ecc_pending_off())
    assert (c.ecc_enabled, c.ecc_pending_enabled) == (True, False)
    assert device.unreadable == ()


def test_nvml_reads_an_ecc_change_waiting_to_turn_it_on(card: object) -> None:
    fake, device, c = read(card, fake_pynvml.ecc_pending_on())
    assert (c.ecc_enabled, c.ecc_pending_enabled) == (False, True)
    assert c.ecc_aggregate_uncorrected is None
    # with ECC off there are no counts to split: not asked
    assert (c.ecc_aggregate_uncorrected_dram, c.ecc_aggregate_uncorrected_sram) == (None, None)
    assert "nvmlDeviceGetMemoryErrorCounter" not in fake.cards[0].calls
    assert device.unreadable == ()
    codes = [f.code for f in counter_findings(c, c)]
    assert codes == ["ecc_disabled", "ecc_mode_pending"]


def test_nvml_reads_sram_and_dram_uncorrectable_history(card: object) -> None:
    _, device, c = read(card, fake_pynvml.sram_uncorrectable())
    assert c.ecc_aggregate_uncorrected == 2
    assert (c.ecc_aggregate_uncorrected_dram, c.ecc_aggregate_uncorrected_sram) == (0, 2)
    # these fake cards have no NVLink: NVML answers "not supported" for its link count
    assert device.unreadable == () and device.unsupported == (NO_NVLINK,)
    graded_ = grade(tuple(counter_findings(c, c)), POLICY)
    assert graded_.letter == "D"
    assert graded_.reasons[0].rule == "ecc-sram-uncorrectable-history"


def test_nvml_never_sums_part_of_the_sram_units(card: object) -> None:
    fake, device, c = read(card, fake_pynvml.sram_counter_fails())
    assert c.ecc_aggregate_uncorrected_sram is None
    assert c.ecc_aggregate_uncorrected_dram == 0
    sram = pynvml.NVML_MEMORY_LOCATION_SRAM
    unc, agg = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_AGGREGATE_ECC
    assert device.unreadable == (
        (
            f"nvmlDeviceGetMemoryErrorCounter({unc}, {agg}, {sram})",
            "NVMLError_Unknown: Unknown Error",
        ),
    )
    # a failure is not "not supported": the older per-unit locations were not asked instead
    asked = fake.cards[0].calls.count("nvmlDeviceGetMemoryErrorCounter")
    assert asked == 2  # DRAM and SRAM


def test_nvml_reads_a_card_before_ampere(card: object) -> None:
    _, device, c = read(card, fake_pynvml.pre_ampere_retired_pages())
    assert c.remapped_rows_correctable is None and c.row_remap_histogram is None
    assert (c.retired_pages_sbe, c.retired_pages_dbe, c.retired_pages_pending) == (3, 1, True)
    # on-chip errors counted per unit before Turing: L1 0 + L2 2 + register file 0 + CBU 0
    assert (c.ecc_aggregate_uncorrected_dram, c.ecc_aggregate_uncorrected_sram) == (1, 2)
    assert device.unreadable == ()
    unc, agg = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_AGGREGATE_ECC
    assert set(device.unsupported) == {
        NO_NVLINK,
        "nvmlDeviceGetRemappedRows",
        "nvmlDeviceGetRowRemapperHistogram",
        f"nvmlDeviceGetMemoryErrorCounter({unc}, {agg}, {pynvml.NVML_MEMORY_LOCATION_SRAM})",
        f"nvmlDeviceGetMemoryErrorCounter({unc}, {agg}, "
        f"{pynvml.NVML_MEMORY_LOCATION_TEXTURE_MEMORY})",
        f"nvmlDeviceGetMemoryErrorCounter({unc}, {agg}, {pynvml.NVML_MEMORY_LOCATION_TEXTURE_SHM})",
    }
    findings = counter_findings(c, c)
    assert {f.code for f in findings} == {
        "ecc_uncorrectable_history",
        "ecc_sram_uncorrectable_history",
        "retired_pages_pending",
        "pages_retired",
    }
    assert grade(tuple(findings), POLICY).letter == "D"


def test_nvml_asks_page_retirement_only_without_a_row_remapper(card: object) -> None:
    fake, device, c = read(card, fake_pynvml.healthy_h100())
    calls = fake.cards[0].calls
    assert "nvmlDeviceGetRemappedRows" in calls
    assert "nvmlDeviceGetRetiredPages" not in calls
    assert "nvmlDeviceGetRetiredPagesPendingStatus" not in calls
    assert c.retired_pages_sbe is None and device.unsupported == (NO_NVLINK,)
