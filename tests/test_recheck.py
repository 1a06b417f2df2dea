"""gpuhealth.measure.recheck on simulated cards: a healthy card's record re-checked on the same card
is consistent; a certificate that calls the stuck-bit card healthy is caught by the memory test,
with the address; another card, a flaky bit, wrong results, slower memory, reset or worse counters
and another model each fail the item they concern; a check that cannot be made is never consistent.

One healthy H100 is graded once (--quick); most variants re-check its record (or a copy with the
identity or counters changed) on a sim card with one fault. A re-check takes under a second.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from simkit import EXAMPLES, H200, GradedRuns, card_toml

from gpuhealth.certificate.recheck_result import RecheckResult, format_recheck
from gpuhealth.errors import EXIT_BAD_CARD, EXIT_OK
from gpuhealth.measure.backends import open_backend
from gpuhealth.measure.backends.sim import SimBackend
from gpuhealth.measure.recheck import RECHECK_ITEMS, RECHECK_PRESET, recheck_card
from gpuhealth.models import RunRecord, record_from_json

SERIAL = "SIM-RECHECK-A"
UUID = "GPU-5e1f0000-0000-4000-8000-00000000000a"
SAME_CARD = f'serial = "{SERIAL}"\nuuid = "{UUID}"'
STUCK_BIT = EXAMPLES / "stuck-bit.toml"

Sim = Callable[..., SimBackend]


@pytest.fixture(scope="module")
def healthy(graded: GradedRuns, tmp_path_factory: pytest.TempPathFactory) -> RunRecord:
    """The record of a healthy H100 graded --quick (grade A)."""
    spec = tmp_path_factory.mktemp("recheck") / "healthy.toml"
    spec.write_text(card_toml(header=SAME_CARD), encoding="utf-8")
    run = graded.grade("--quick", "--sim-card", str(spec))
    assert run.exit_code == EXIT_OK, run.result.output
    record = record_from_json((run.out_dir / "run.json").read_text(encoding="utf-8"))
    assert record.identity.serial == SERIAL and record.grade and record.grade.letter == "A"
    return record


def statuses(result: RecheckResult) -> dict[str, str]:
    return {c.name: c.status for c in result.checks}


def detail(result: RecheckResult, name: str) -> str:
    check = result.check(name)
    assert check is not None
    return check.detail


def assert_inconsistent(result: RecheckResult, *failing: str) -> None:
    """Not consistent, exactly `failing` failed, and the verdict names each with its detail."""
    assert not result.consistent and result.exit_code == EXIT_BAD_CARD
    assert [c.name for c in result.checks if c.status == "fail"] == list(failing), result.verdict
    assert result.verdict.startswith("RECHECK INCONSISTENT: ")
    for name in failing:
        assert f"{name}: {detail(result, name)}" in result.verdict


def stuck_bit_card() -> SimBackend:
    backend = open_backend("sim", 0, str(STUCK_BIT))
    assert isinstance(backend, SimBackend)
    return backend


# --- the same, healthy card ------------------------------------------------------------------


def test_the_same_healthy_card_is_consistent(healthy: RunRecord, sim: Sim) -> None:
    result = recheck_card(healthy, sim(header=SAME_CARD))
    assert statuses(result) == dict.fromkeys(RECHECK_ITEMS, "pass"), result.verdict
    assert result.consistent and result.exit_code == EXIT_OK
    assert result.verdict.startswith("RECHECK CONSISTENT: ")
    assert result.memory_errors == ()
    lines = format_recheck(result)
    items = [line.split()[:2] for line in lines[: len(RECHECK_ITEMS)]]
    assert items == [
        [name, "pass"] for name in ("identity", "counters", "memory", "compute", "link")
    ]
    assert re.fullmatch(
        r"every copied byte verified; here h2d 5\d\.\d GB/s, d2h 5\d\.\d GB/s, both \d+\.\d GB/s "
        r"on Gen5 x16; the report h2d 5\d\.\d GB/s, d2h 5\d\.\d GB/s, both \d+\.\d GB/s "
        r"on Gen5 x16",
        detail(result, "link"),
    ), detail(result, "link")
    table = "\n".join(lines[len(RECHECK_ITEMS) :])
    for metric in ("bandwidth.triad_gbs", "fp32.fp32_tflops", "fp16_tensor.mma_tflops"):
        assert re.search(rf"^  {re.escape(metric)} .* consistent", table, re.MULTILINE), table
    assert {m.metric.split(".")[0] for m in result.metrics} == {
        "bandwidth",
        "fp32",
        "fp16_tensor",
        "gemm",
    }


def test_the_memory_test_covers_all_memory_with_all_four_patterns(
    healthy: RunRecord, sim: Sim
) -> None:
    result = recheck_card(healthy, sim(header=SAME_CARD))
    memtest = result.memtest
    assert memtest is not None and memtest.status == "passed"
    p = memtest.parameters
    assert isinstance(p["coverage"], float) and p["coverage"] >= 0.95
    assert p["patterns"] == p["patterns_done"] == 4 and p["passes"] == 1
    assert RECHECK_PRESET.memtest.walking_shifts == 0 and RECHECK_PRESET.memtest.bit_fade_s == 0
    (verification,) = memtest.verifications
    words = p["tested_bytes"]
    assert isinstance(words, int)
    # two read-and-check passes (the pattern, then its inverse) of every word, per pattern
    assert verification.passed and verification.checked == 4 * 2 * words // 4
    assert "98.8% of memory" in detail(result, "memory")


# --- the stuck-bit card ----------------------------------------------------------------------


def test_a_certificate_calling_the_stuck_bit_card_healthy_fails_on_memory(
    healthy: RunRecord,
) -> None:
    card = stuck_bit_card()
    here = card.identity()
    forged = replace(
        healthy, identity=replace(healthy.identity, serial=here.serial, uuid=here.uuid)
    )
    result = recheck_card(forged, card)
    assert statuses(result)["identity"] == "pass"
    assert_inconsistent(result, "memory")
    assert "address 0x1F000 bit 3" in result.verdict
    assert [e.address for e in result.memory_errors] == [0x1F000]
    assert result.memory_errors[0].bits == (3,)


def test_the_healthy_record_on_the_stuck_bit_card_fails_identity_and_memory(
    healthy: RunRecord,
) -> None:
    result = recheck_card(healthy, stuck_bit_card())
    assert_inconsistent(result, "identity", "memory")
    assert "serial SIM-STUCK-0001 here, SIM-RECHECK-A in the report" in result.verdict
    assert "0x1F000 bit 3" in result.verdict
    lines = format_recheck(result)
    assert lines[0].split()[:2] == ["identity", "fail"]
    assert lines[2].split()[:2] == ["memory", "fail"]


# --- one fault at a time, on the report's card -----------------------------------------------


def test_a_bit_that_always_flips_fails_memory(healthy: RunRecord, sim: Sim) -> None:
    card = sim("flaky_bits = [{ address = 0x2A000, bit = 5, probability = 1.0 }]", header=SAME_CARD)
    result = recheck_card(healthy, card)
    assert statuses(result)["identity"] == statuses(result)["counters"] == "pass"
    assert statuses(result)["memory"] == "fail"
    assert "first at address 0x2A000 bit 5" in detail(result, "memory")
    # every read of the word is wrong: both halves of every moving inversion
    assert detail(result, "memory").startswith("8 word(s) read back wrong (1 address)")


def test_wrong_results_fail_compute_naming_the_sm(healthy: RunRecord, sim: Sim) -> None:
    result = recheck_card(healthy, sim("wrong_results = { rate = 1.0, sm = 3 }", header=SAME_CARD))
    assert_inconsistent(result, "compute")
    assert re.search(r"fp32: \d+ wrong result\(s\), first at SM 3 \(block 3,", result.verdict)
    assert "fp16_tensor:" in result.verdict and "gemm:" in result.verdict


def test_slower_memory_fails_compute(healthy: RunRecord, sim: Sim) -> None:
    result = recheck_card(healthy, sim("bandwidth_scale = 0.8", header=SAME_CARD))
    assert_inconsistent(result, "compute")
    lower = {m.metric for m in result.metrics if m.verdict == "lower"}
    assert {f"bandwidth.{op}_gbs" for op in ("copy", "scale", "add", "triad", "read")} <= lower
    assert all(0.75 < m.ratio < 0.85 for m in result.metrics if m.metric in lower)
    assert "fp32.fp32_tflops" not in lower
    assert "measure differently now" in detail(result, "compute")


def test_fewer_remapped_rows_than_reported_fail_counters(healthy: RunRecord, sim: Sim) -> None:
    # the report says 2 rows were remapped; this card says none: reset, or another card
    assert healthy.counters_after is not None
    counters = replace(healthy.counters_after, remapped_rows_correctable=2)
    result = recheck_card(replace(healthy, counters_after=counters), sim(header=SAME_CARD))
    assert_inconsistent(result, "counters")
    assert "correctable remapped rows went down from 2 to 0" in result.verdict


def test_more_remapped_rows_than_reported_fail_counters(healthy: RunRecord, sim: Sim) -> None:
    card = sim("remapped_rows = { uncorrectable = 1, pending = true }", header=SAME_CARD)
    result = recheck_card(healthy, card)
    assert_inconsistent(result, "counters")
    assert "uncorrectable remapped rows rose from 0 to 1" in result.verdict
    assert "row remapping pending is set now" in result.verdict


def test_a_rise_in_lifetime_uncorrectable_ecc_fails_counters(healthy: RunRecord, sim: Sim) -> None:
    # the report says no uncorrectable error in the card's life; this card has had 3 since
    card = sim("sram_uncorrected = 3", header=SAME_CARD)
    result = recheck_card(healthy, card)
    assert_inconsistent(result, "counters")
    assert "aggregate uncorrectable ECC errors rose from 0 to 3 since the report" in result.verdict


def test_a_row_remap_failure_set_since_the_report_fails_counters(
    healthy: RunRecord, sim: Sim
) -> None:
    result = recheck_card(healthy, sim("remapped_rows = { failure = true }", header=SAME_CARD))
    assert_inconsistent(result, "counters")
    assert "row remapping failure is set now, not in the report" in result.verdict


def test_counters_unreadable_now_leave_counters_unproven(healthy: RunRecord, sim: Sim) -> None:
    unreadable = (
        'unreadable = ["remapped_rows_correctable", "remapped_rows_uncorrectable", '
        '"ecc_aggregate_uncorrected", "remapped_rows_pending", "remapped_rows_failure"]'
    )
    result = recheck_card(healthy, sim(unreadable, header=SAME_CARD))
    assert statuses(result)["counters"] == "unproven", result.verdict
    assert "no comparable counter readable" in detail(result, "counters")
    assert not result.consistent and result.exit_code == EXIT_BAD_CARD


def test_another_model_with_the_same_serial_fails_identity_and_compute(
    healthy: RunRecord, sim: Sim
) -> None:
    result = recheck_card(healthy, sim(model=H200, header=SAME_CARD))
    assert_inconsistent(result, "identity", "compute")
    assert "model NVIDIA H200 here, NVIDIA H100 80GB HBM3 in the report" in result.verdict
    assert re.search(r"memory 1\d\d\.\d GiB here, 79\.6 GiB in the report", result.verdict)
    assert "bandwidth.triad_gbs" in {m.metric for m in result.metrics if m.verdict == "higher"}


# --- checks that cannot be made are never consistent -----------------------------------------


def test_a_report_without_serial_or_uuid_is_unproven(healthy: RunRecord, sim: Sim) -> None:
    anonymous = replace(healthy, identity=replace(healthy.identity, serial=None, uuid=None))
    result = recheck_card(anonymous, sim(header=SAME_CARD))
    identity = result.check("identity")
    assert identity is not None and identity.status == "unproven"
    assert identity.exit_code == EXIT_BAD_CARD and "any card of this model" in identity.detail
    assert not result.consistent and result.exit_code == EXIT_BAD_CARD
    assert result.verdict.startswith("RECHECK INCONSISTENT: identity unproven: no serial or UUID")
    assert format_recheck(result)[0].split()[:2] == ["identity", "unproven"]


def test_memory_in_use_by_another_process_leaves_memory_unproven(
    healthy: RunRecord, sim: Sim
) -> None:
    card = sim("other_process = { used_memory_mib = 8192 }", header=SAME_CARD)
    result = recheck_card(healthy, card)
    assert statuses(result)["memory"] == "unproven", result.verdict
    assert re.search(r"only 8\d\.\d% of memory could be tested", detail(result, "memory"))
    assert not result.consistent and "memory unproven: only" in result.verdict


def test_a_card_lost_in_the_memory_test_leaves_memory_and_compute_unproven(
    healthy: RunRecord, sim: Sim
) -> None:
    result = recheck_card(healthy, sim('lost_at = "memtest"', header=SAME_CARD))
    assert statuses(result) == {
        "identity": "pass",
        "counters": "pass",  # read before the tests
        "memory": "unproven",
        "compute": "unproven",
        "link": "pass",  # the pcie test runs first, before the card is lost
    }, result.verdict
    assert "fallen off the bus" in detail(result, "memory")
    assert "fp32 not run (the card was lost)" in detail(result, "compute")
    assert not result.consistent and result.exit_code == EXIT_BAD_CARD


# --- the PCIe copies (the link item) --------------------------------------------------------------


def test_copies_slower_than_the_report_fail_link_naming_both_rates(
    healthy: RunRecord, sim: Sim
) -> None:
    result = recheck_card(healthy, sim("pcie_copy_scale = 0.6", header=SAME_CARD))
    assert_inconsistent(result, "link")
    text = detail(result, "link")
    assert re.match(r"PCIe copies host to device reached 3\d\.\d GB/s, 5\d% of the Gen5 x16", text)
    assert "; the report h2d 5" in text and "try another slot before blaming the card" in text


def test_a_byte_corrupted_over_pcie_now_fails_link(healthy: RunRecord, sim: Sim) -> None:
    card = sim('pcie_corrupt_byte = 4096\npcie_corrupt_direction = "d2h"', header=SAME_CARD)
    result = recheck_card(healthy, card)
    assert_inconsistent(result, "link")
    assert "arrived wrong over PCIe" in detail(result, "link")


def test_a_narrower_link_here_leaves_link_unproven(healthy: RunRecord, sim: Sim) -> None:
    result = recheck_card(healthy, sim("pcie_width = 8", header=SAME_CARD))
    assert statuses(result)["link"] == "unproven", result.verdict
    assert detail(result, "link").startswith(
        "under load the PCIe link ran x8, the card supports x16 (here h2d "
    )
    assert not result.consistent


def test_a_report_that_showed_the_slow_copies_is_consistent_on_that_card(
    healthy: RunRecord, graded: GradedRuns, sim: Sim, tmp_path: Path
) -> None:
    spec = tmp_path / "riser.toml"
    spec.write_text(card_toml("pcie_copy_scale = 0.6", header=SAME_CARD), encoding="utf-8")
    run = graded.grade("--quick", "--sim-card", str(spec))
    record = record_from_json((run.out_dir / "run.json").read_text(encoding="utf-8"))
    assert record.grade is not None and record.grade.letter == "D"
    result = recheck_card(record, sim("pcie_copy_scale = 0.6", header=SAME_CARD))
    assert statuses(result)["link"] == "pass", result.verdict
    assert statuses(result) == dict.fromkeys(RECHECK_ITEMS, "pass"), result.verdict


def test_a_report_without_a_pcie_measurement_has_no_link_item(healthy: RunRecord, sim: Sim) -> None:
    legacy = replace(healthy, tests=tuple(t for t in healthy.tests if t.name != "pcie"))
    result = recheck_card(legacy, sim(header=SAME_CARD))
    assert statuses(result)["link"] == "n/a"
    assert result.test("pcie") is None  # not run: nothing to compare it with
    assert detail(result, "link") == "the report has no PCIe copy measurement"


def test_a_card_lost_in_the_pcie_test_leaves_link_unproven(healthy: RunRecord, sim: Sim) -> None:
    result = recheck_card(healthy, sim('lost_at = "pcie"', header=SAME_CARD))
    assert statuses(result)["link"] == "unproven", result.verdict
    assert detail(result, "link").startswith("pcie error: ")
