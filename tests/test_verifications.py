"""Verification that is itself verified: for every stress test, a sim fault that only that test's
verification can catch, graded F with the place named; and the same card graded again with that
verification switched off (monkeypatched to accept everything, or to skip the last word) must no
longer be F. A verification that could be deleted without a test failing is not tested.

The survivors these kill: the soak's silent-corruption check switched off, the tensor-core GEMM
verification removed, memtest never reading the last word, the FP32 majority check accepting
every thread, the library GEMM comparison accepting every element, the STREAM arrays unchecked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from simkit import H100, card_toml

from gpuhealth.judge.grading import load_policy
from gpuhealth.measure.backends import sim as sim_module
from gpuhealth.measure.backends.sim import SimBackend
from gpuhealth.measure.backends.simcards import (
    SIM_GEMM_BLOCK,
    SIM_WINDOW_F32,
    Faults,
    load_card,
    load_model,
)
from gpuhealth.measure.runner import GradeOptions, grade_card
from gpuhealth.measure.stresstests import bandwidth, fp16_tensor, fp32, gemm, soak
from gpuhealth.measure.stresstests.memtest import ALIGN_BYTES, MemtestTest, reserve_bytes
from gpuhealth.models import RunRecord, Verification
from gpuhealth.presets import preset


def memtest_bytes(model: str) -> int:
    """What memtest covers on an idle card of the model: free memory less its reserve, aligned
    (stresstests/memtest.py _allocate), from address 0 (the tests before it free their buffers)."""
    device = load_model(model).device
    free = device.memory_total_bytes - device.memory_reserved_bytes
    return (free - reserve_bytes(device.memory_total_bytes)) // ALIGN_BYTES * ALIGN_BYTES


LAST_WORD = memtest_bytes(H100) - 4


def accepting(check: Verification) -> Verification:
    """A verification that accepts everything it was shown."""
    return replace(check, passed=True, mismatches=0, wrong_results=(), memory_errors=())


def accept_products(monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
    original = module.check_product
    monkeypatch.setattr(
        module, "check_product", lambda *args, **kw: accepting(original(*args, **kw))
    )


def switch_off_bandwidth(monkeypatch: pytest.MonkeyPatch) -> None:
    original = bandwidth.BandwidthTest._check_arrays
    monkeypatch.setattr(
        bandwidth.BandwidthTest,
        "_check_arrays",
        lambda self, *args: accepting(original(self, *args)),
    )


def memtest_skips_last_word(monkeypatch: pytest.MonkeyPatch) -> None:
    original = MemtestTest._moving_inversion

    def one_short(self: MemtestTest, ctx: Any, buffer: Any, n_words: int, *rest: Any) -> Any:
        return original(self, ctx, buffer, n_words - 1, *rest)

    monkeypatch.setattr(MemtestTest, "_moving_inversion", one_short)


def switch_off_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fp32, "majority_check", lambda *args: (0, ()))


def switch_off_soak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(soak, "digest_disagreements", lambda digests: (0, []))


@dataclass(frozen=True)
class Case:
    faults: str  # the body of the card's [faults] table
    rule: str  # the grading rule that must give F
    named: tuple[str, ...]  # what the grade's reason must name
    failing: str  # the start of the one verification method that must fail
    switch_off: Callable[[pytest.MonkeyPatch], None]


CASES: dict[str, Case] = {
    "bandwidth": Case(
        'wrong_results = { rate = 1.0, test = "bandwidth", index = 1000 }',
        "wrong-results",
        ("in bandwidth", "array a element 1000"),
        "every element of a, b, c",
        switch_off_bandwidth,
    ),
    "memtest": Case(
        f"stuck_bits = [{{ address = {LAST_WORD}, bit = 5, value = 1 }}]",
        "memory-errors",
        ("in memtest", f"address 0x{LAST_WORD:X} bit(s) 5"),
        "every word of",
        memtest_skips_last_word,
    ),
    "fp32": Case(
        'wrong_results = { rate = 1.0, test = "fp32", sm = 17, lane = 42 }',
        "wrong-results",
        ("in fp32", "SM 17 (block 17, thread 42)"),
        "all ",
        switch_off_fp32,
    ),
    "fp16_tensor": Case(
        'wrong_results = { rate = 1.0, test = "fp16_tensor", element = [3, 17] }',
        "wrong-results",
        ("in fp16_tensor", "tensor-core GEMM element (3, 17)"),
        "tensor-core GEMM",
        lambda mp: accept_products(mp, fp16_tensor),
    ),
    "gemm": Case(
        'wrong_results = { rate = 1.0, test = "gemm", element = [5, 40] }',
        "wrong-results",
        ("in gemm", "cuBLAS FP16 GEMM element (5, 40)"),
        "cuBLAS",
        lambda mp: accept_products(mp, gemm),
    ),
    "soak": Case(
        'wrong_results = { rate = 1.0, test = "soak", iteration = 3 }',
        "silent-data-corruption",
        ("soak iteration(s) gave a different result under load", "first at iteration 3"),
        "every iteration's GEMM output digest",
        switch_off_soak,
    ),
}


def graded(tmp_path: Path, faults: str, clear: bool = True) -> RunRecord:
    path = tmp_path / "card.toml"
    path.write_text(card_toml(faults), encoding="utf-8")
    options = GradeOptions(
        preset("quick"), load_policy(), None, None, write_files=False, clear=clear
    )
    return grade_card(SimBackend(load_card(str(path))), options).record


@pytest.mark.parametrize("name", sorted(CASES))
def test_only_this_verification_catches_its_fault(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    record = graded(tmp_path, case.faults)
    assert record.grade is not None and record.grade.letter == "F", record.grade
    reasons = [r for r in record.grade.reasons if r.grade == "F"]
    assert {r.rule for r in reasons} == {case.rule}, reasons
    assert any(all(part in r.message for part in case.named) for r in reasons), reasons
    for test in record.tests:
        failed = [v for v in test.verifications if not v.passed]
        if test.name != name:  # every other test's verification stays clean
            assert test.status == "passed" and not failed, (test.name, test.message)
            continue
        assert test.status == "failed" and failed
        assert all(v.method.startswith(case.failing) for v in failed), [v.method for v in failed]
        assert all(v.mismatches > 0 for v in failed)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_card_passes_with_that_verification_switched_off(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mutation guard: switch the verification off and its fault goes unseen, so the test
    above fails whenever the verification stops doing its work."""
    case = CASES[name]
    case.switch_off(monkeypatch)
    # without the memory clear: it reads every word back too, and would catch memtest's fault
    # (a second check of memory; test_the_clear_also_catches_memtests_fault below)
    record = graded(tmp_path, case.faults, clear=False)
    assert record.grade is not None and record.grade.letter != "F", record.grade.reasons
    assert case.rule not in {r.rule for r in record.grade.reasons}
    tested = record.test(name)
    assert tested is not None and tested.status == "passed", tested


def test_the_clear_also_catches_memtests_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With memtest's check off, the clear's read-back still finds the stuck word: F."""
    case = CASES["memtest"]
    case.switch_off(monkeypatch)
    record = graded(tmp_path, case.faults)
    assert record.grade is not None and record.grade.letter == "F"
    assert record.memory_clear is not None and record.memory_clear.status == "failed"
    assert [w.address for w in record.memory_clear.first_not_zero] == [LAST_WORD]


def test_memtest_fault_sits_at_the_last_word_it_reads(tmp_path: Path) -> None:
    """The memtest card's stuck bit is the last word of what memtest covers, not a guess."""
    record = graded(tmp_path, CASES["memtest"].faults)
    tested = record.test("memtest")
    assert tested is not None and tested.parameters["tested_bytes"] == LAST_WORD + 4
    (check,) = tested.verifications
    assert [m.address for m in check.memory_errors] == [LAST_WORD]


def test_pinned_faults_fit_where_the_sim_computes() -> None:
    assert SIM_GEMM_BLOCK == sim_module.GEMM_BLOCK
    assert SIM_WINDOW_F32 == sim_module.WINDOW_BYTES // 4


@pytest.mark.parametrize(
    ("wrong", "complaint"),
    [
        ({"rate": 1.0, "element": (8, 0)}, "row below 8"),
        ({"rate": 1.0, "element": (0, 64)}, "col below 64"),
        ({"rate": 1.0, "iteration": 3}, 'test = "soak"'),
        ({"rate": 1.0, "test": "gemm", "iteration": 3}, 'test = "soak"'),
        ({"rate": 1.0, "lane": 3, "index": 5}, "at most one of"),
        ({"rate": 1.0, "index": SIM_WINDOW_F32}, "less than"),
        ({"rate": 1.0, "lane": 1024}, "less than"),
        ({"rate": 1.0, "test": "fp64"}, "fp16_tensor"),
    ],
)
def test_pinned_faults_are_validated(wrong: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Faults.model_validate({"wrong_results": wrong})
