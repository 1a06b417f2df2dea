"""evidence_labels.py and unfinished.py at their bounds: each limit accepted on its edge and
refused one step past it, each problem's exact text (stored records edited in place, no judge
run: the mutation bench runs these per mutant)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gpuhealth.judge.evidence_labels import (
    CLEAR_MAX_REPORTED,
    CLEAR_METHOD,
    FRACTION_TOLERANCE,
    LINK_RATE_MARGIN,
    WORD_MASK,
    clear_problems,
    link_reading_problems,
    pcie_rate_problems,
    readiness_problems,
)
from gpuhealth.judge.unfinished import unfinished_findings
from gpuhealth.models import (
    Finding,
    HealthCounters,
    MemoryClear,
    Metric,
    NvLinkReading,
    RunRecord,
    TestResult,
    TestStatus,
    UnclearedWord,
    record_from_json,
)
from gpuhealth.pcielink import link_gbs

QUICK = Path(__file__).resolve().parent / "data" / "current" / "sim-h100-quick.json"
CARD_BYTES = 85520809984  # the stored H100's memory_total_bytes
CLEARED_BYTES = 85008056320  # ... and what its clear overwrote


@pytest.fixture(scope="module")
def quick() -> RunRecord:
    record = record_from_json(QUICK.read_text(encoding="utf-8"), str(QUICK))
    assert record.identity.memory_total_bytes == CARD_BYTES
    assert record.memory_clear is not None and record.memory_clear.status == "cleared"
    assert record.memory_clear.bytes_cleared == CLEARED_BYTES
    return record


def clear_of(record: RunRecord, **changes: Any) -> list[str]:
    assert record.memory_clear is not None
    return clear_problems(replace(record, memory_clear=replace(record.memory_clear, **changes)))


def listed(count: int, actual: int = 0xDEADBEEF) -> tuple[UnclearedWord, ...]:
    """`count` distinct word addresses in order, from address 0 (a valid word)."""
    return tuple(UnclearedWord(4 * i, actual) for i in range(count))


def failed(record: RunRecord, words: int, count: int, **changes: Any) -> list[str]:
    return clear_of(
        record, status="failed", words_not_zero=words, first_not_zero=listed(count), **changes
    )


def not_cleared(record: RunRecord, **changes: Any) -> list[str]:
    """What measure/memclear.py writes for a clear that never ran, edited by `changes`."""
    fields: dict[str, Any] = {
        "status": "not_cleared",
        "bytes_cleared": 0,
        "fraction": None,
        "seconds": None,
        "note": "interrupted (Ctrl-C) during the memory clear",
    }
    return clear_of(record, **{**fields, **changes})


# --- the clear's counts ----------------------------------------------------------------------


def listed_refused(words: int, count: int) -> list[str]:
    return [
        f"status failed with {words} word(s) read back non-zero and {count} listed "
        f"(1 to {CLEAR_MAX_REPORTED}, at most the count, required)"
    ]


def test_a_failed_clear_lists_one_word_to_the_count_or_64(quick: RunRecord) -> None:
    """Planted `2 <=` or `1 <` for `1 <=`: one word listed of one refused (fails)."""
    assert failed(quick, 1, 1) == []
    assert failed(quick, 1, 0) == listed_refused(1, 0)
    assert failed(quick, 1, 2) == listed_refused(1, 2)
    assert failed(quick, 3, 3) == []
    assert failed(quick, 3, 4) == listed_refused(3, 4)
    many = 1000
    assert failed(quick, many, CLEAR_MAX_REPORTED) == []
    assert failed(quick, many, 1) == []
    assert failed(quick, many, CLEAR_MAX_REPORTED + 1) == listed_refused(many, 65)


def test_a_cleared_status_has_no_word_read_back(quick: RunRecord) -> None:
    assert clear_of(quick, words_not_zero=1) == [
        "status cleared, but 1 word(s) read back non-zero (0 listed)"
    ]
    assert clear_of(quick, first_not_zero=listed(1)) == [
        "status cleared, but 0 word(s) read back non-zero (1 listed)"
    ]


def test_a_clear_that_never_ran_holds_nothing(quick: RunRecord) -> None:
    """Planted `words and listed` for `words or listed`, `bytes_cleared > 0` (or `>= 1`) for
    `>= 0` in the word count's guard, None or other text for the message: each fails."""
    assert not_cleared(quick) == []
    assert not_cleared(quick, words_not_zero=1) == [
        "status not_cleared, but 0 bytes cleared and 1 word(s) read back",
        "1 word(s) read back non-zero of 0 cleared",
    ]
    assert not_cleared(quick, first_not_zero=listed(1)) == [
        "status not_cleared, but 0 bytes cleared and 0 word(s) read back"
    ]
    assert not_cleared(quick, bytes_cleared=4096) == [
        "status not_cleared, but 4096 bytes cleared and 0 word(s) read back"
    ]


def test_no_more_words_read_back_than_were_cleared(quick: RunRecord) -> None:
    """66 bytes are 16 whole words (not 16.5, not 66 // 5 = 13): 16 accepted, 17 refused.
    Planted `>=` for `>`, `/ 4` or `// 5` for `// 4`: fails."""
    small = {"bytes_cleared": 66, "fraction": 0.0}
    assert failed(quick, 16, 16, **small) == []
    assert failed(quick, 17, 16, **small) == ["17 word(s) read back non-zero of 16 cleared"]
    # a negative size is _clear_sizes' to report, once
    assert failed(quick, 1, 1, bytes_cleared=-4) == [
        f"-4 bytes cleared of the card's {CARD_BYTES}",
        "status failed with -4 bytes cleared",
        f"fraction {0.994}, but -4 / {CARD_BYTES} = {-4 / CARD_BYTES}",
    ]


LISTED_REFUSED = [
    "the words listed must be distinct word addresses in order, each with a non-zero 32-bit "
    "value read back"
]


@pytest.mark.parametrize(
    ("word", "accepted"),
    [
        (UnclearedWord(0, 1), True),  # address 0 and value 1: the lowest of each
        (UnclearedWord(4, WORD_MASK), True),  # the largest 32-bit value
        (UnclearedWord(4, 0), False),  # zero did clear
        (UnclearedWord(4, WORD_MASK + 1), False),  # wider than a word
        (UnclearedWord(4, -1), False),
        (UnclearedWord(-4, 1), False),
        (UnclearedWord(2, 1), False),  # not a word's address
    ],
)
def test_each_word_listed_is_a_word_read_non_zero(
    quick: RunRecord, word: UnclearedWord, accepted: bool
) -> None:
    """Planted `<= 0`/`< 1` for the address's `< 0`, `== 1` for `== 0`, `< WORD_MASK`: fails."""
    found = clear_of(quick, status="failed", words_not_zero=1, first_not_zero=(word,))
    assert found == ([] if accepted else LISTED_REFUSED)


def test_the_words_listed_are_distinct_and_in_order(quick: RunRecord) -> None:
    one, two = UnclearedWord(8, 1), UnclearedWord(12, 1)
    clear = {"status": "failed", "words_not_zero": 2}
    assert clear_of(quick, first_not_zero=(one, two), **clear) == []
    assert clear_of(quick, first_not_zero=(two, one), **clear) == LISTED_REFUSED
    assert clear_of(quick, first_not_zero=(one, one), **clear) == LISTED_REFUSED


# --- the clear's sizes -----------------------------------------------------------------------


def test_a_clear_that_never_ran_has_no_fraction_or_time(quick: RunRecord) -> None:
    """Planted `and` for `or`, `is None` for `is not None` (either), or another status name:
    fails (a genuine not_cleared clear then gets a problem, or an edited one none)."""
    assert not_cleared(quick) == []
    told = ["status not_cleared with a fraction or a time"]
    assert not_cleared(quick, fraction=0.0) == told
    assert not_cleared(quick, seconds=0.5) == told
    assert not_cleared(quick, fraction=0.0, seconds=0.5) == told


def test_the_bytes_cleared_lie_within_the_card(quick: RunRecord) -> None:
    """Planted `>= total` for `> total`: a clear of every byte refused (fails)."""
    assert clear_of(quick, bytes_cleared=CARD_BYTES, fraction=1.0) == []
    assert clear_of(quick, bytes_cleared=CARD_BYTES + 1, fraction=1.0) == [
        f"{CARD_BYTES + 1} bytes cleared of the card's {CARD_BYTES}"
    ]


def test_a_clear_that_ran_cleared_a_byte(quick: RunRecord) -> None:
    """Planted `< 0` or `<= 1` for `<= 0`: fails."""
    assert clear_of(quick, bytes_cleared=1, fraction=0.0) == []
    assert clear_of(quick, bytes_cleared=0, fraction=0.0) == ["status cleared with 0 bytes cleared"]


@pytest.mark.parametrize(
    ("seconds", "accepted"),
    [(5e-324, True), (0.0, False), (-0.0, False), (math.inf, False), (math.nan, False)],
)
def test_a_clear_that_ran_took_a_positive_time(
    quick: RunRecord, seconds: float, accepted: bool
) -> None:
    """Planted `< 0` for `<= 0`: zero seconds accepted (fails)."""
    expected = [f"status cleared in {seconds} s (a positive time required)"]
    assert clear_of(quick, seconds=seconds) == ([] if accepted else expected)


def at_tolerance(share: float) -> float:
    """The float just FRACTION_TOLERANCE above `share`, exactly (a neighbour of the sum)."""
    fraction = share + FRACTION_TOLERANCE
    for step in (0, 1, -1, 2, -2):
        candidate = fraction
        for _ in range(abs(step)):
            candidate = math.nextafter(candidate, math.copysign(math.inf, step))
        if abs(candidate - share) == FRACTION_TOLERANCE:
            return candidate
    raise AssertionError(f"no float exactly {FRACTION_TOLERANCE} from {share}")


def test_the_fraction_is_the_share_cleared_to_its_tolerance(quick: RunRecord) -> None:
    """Planted `>=` for `>`: a fraction exactly at the tolerance refused (fails)."""
    cleared = 4096
    share = cleared / CARD_BYTES
    edge = at_tolerance(share)
    assert clear_of(quick, bytes_cleared=cleared, fraction=edge) == []
    past = math.nextafter(edge, math.inf)
    assert clear_of(quick, bytes_cleared=cleared, fraction=past) == [
        f"fraction {past}, but {cleared} / {CARD_BYTES} = {share}"
    ]
    assert clear_of(quick, bytes_cleared=cleared, fraction=None) == [
        f"fraction None, but {cleared} / {CARD_BYTES} = {share}"
    ]


# --- readiness items -------------------------------------------------------------------------


def readiness_of(record: RunRecord, key: str, **changes: Any) -> list[str]:
    assert record.readiness is not None
    items = tuple(replace(i, **changes) if i.key == key else i for i in record.readiness)
    return readiness_problems(replace(record, readiness=items))


def does_not_follow(record: RunRecord, key: str, status: str, value: str | None) -> list[str]:
    item = next(i for i in record.readiness or () if i.key == key)
    return [
        f"readiness item {key} ({status}, value {value!r}, default {item.expected!r}): the "
        "status does not follow from the value"
    ]


@pytest.mark.parametrize(
    ("key", "status", "value", "accepted"),
    [
        ("persistence_mode", "site_policy", "enabled", True),  # as stored
        ("persistence_mode", "site_policy", "disabled", True),
        ("persistence_mode", "site_policy", None, False),
        ("mig_mode", "site_policy", "disabled", False),  # persistence mode's status only
        ("persistence_mode", "unreadable", None, True),
        ("persistence_mode", "not_applicable", None, True),
        ("persistence_mode", "unreadable", "enabled", False),
        ("persistence_mode", "not_default", "disabled", False),
        ("persistence_mode", "not_default", None, False),
        ("persistence_mode", "ok", None, False),
    ],
)
def test_persistence_mode_is_the_sites_or_unread(
    quick: RunRecord, key: str, status: str, value: str | None, accepted: bool
) -> None:
    """Planted `or` for either `and`, or another key name for persistence mode's: fails."""
    found = readiness_of(quick, key, status=status, value=value)
    assert found == ([] if accepted else does_not_follow(quick, key, status, value))


# --- NVLink reading --------------------------------------------------------------------------

LINKS = (NvLinkReading(0, True, 4, 0, 0, 0, 0), NvLinkReading(1, False, 4, 3, 1, 0, 0))


def nvlink(
    record: RunRecord,
    before: tuple[str, tuple[NvLinkReading, ...] | None] | None,
    after: tuple[str, tuple[NvLinkReading, ...] | None] | None,
) -> list[str]:
    def counters(reading: tuple[str, tuple[NvLinkReading, ...] | None] | None) -> Any:
        if reading is None:
            return None
        status, links = reading
        return HealthCounters(nvlink_status=status, nvlink=links)  # type: ignore[arg-type]

    edited = replace(record, counters_before=counters(before), counters_after=counters(after))
    return link_reading_problems(edited)


def listed_links(where: str, status: str, count: int) -> str:
    return (
        f"{where}: NVLink status {status}, but {count} link(s) listed with their state and counters"
    )


def test_an_nvlink_status_that_disowns_its_links(quick: RunRecord) -> None:
    """Planted: another status name, `and` for `or` (a missing reading then crashes), `is not
    None`, `in` for `not in`, `break` for `continue`, other names or None for the text: fails."""
    assert nvlink(quick, ("none", ()), ("unreadable", None)) == []
    assert nvlink(quick, ("read", LINKS), ("read", LINKS)) == []
    assert nvlink(quick, ("none", LINKS), None) == [listed_links("counters_before", "none", 2)]
    assert nvlink(quick, None, ("unreadable", LINKS[:1])) == [
        listed_links("counters_after", "unreadable", 1)
    ]
    assert nvlink(quick, ("read", LINKS), ("none", LINKS)) == [
        listed_links("counters_after", "none", 2)
    ]
    assert nvlink(quick, ("unreadable", LINKS), ("none", LINKS[:1])) == [
        listed_links("counters_before", "unreadable", 2),
        listed_links("counters_after", "none", 1),
    ]


# --- PCIe copy rates -------------------------------------------------------------------------

GEN5_X16_GBS = link_gbs(5, 16) or 0.0


def pcie(rates: Mapping[str, tuple[float, ...]], **parameters: Any) -> TestResult:
    metrics = tuple(Metric(name, "GB/s", values) for name, values in rates.items())
    return TestResult("pcie", "passed", parameters=parameters, metrics=metrics)


def over_gen5(name: str, value: float, ways: int) -> str:
    return f"{name} {value:g} GB/s, above what a Gen5 x16 link carries ({ways} x 63.0 GB/s)"


def test_a_copy_at_the_links_rate_and_margin_is_believed(quick: RunRecord) -> None:
    """Planted `/ LINK_RATE_MARGIN` or `>=`: the link's own rate, or its margin, refused."""
    ways = {"h2d_gbs": 1, "d2h_gbs": 1, "both_gbs": 2}
    most = {name: n * GEN5_X16_GBS * LINK_RATE_MARGIN for name, n in ways.items()}
    at = {name: (ways[name] * GEN5_X16_GBS, value) for name, value in most.items()}
    assert pcie_rate_problems(quick, pcie(at)) == []
    past = {name: (math.nextafter(value, math.inf),) for name, value in most.items()}
    assert pcie_rate_problems(quick, pcie(past)) == [
        over_gen5("h2d_gbs", past["h2d_gbs"][0], 1),
        over_gen5("d2h_gbs", past["d2h_gbs"][0], 1),
        over_gen5("both_gbs", past["both_gbs"][0], 2),
    ]


def test_a_missing_copy_metric_is_not_judged_here(quick: RunRecord) -> None:
    """Planted `or True` on `metric is not None`: crashes on the missing metric (fails)."""
    assert pcie_rate_problems(quick, pcie({"h2d_gbs": (50.0,)})) == []
    assert pcie_rate_problems(quick, pcie({"d2h_gbs": (100.0,)})) == [
        over_gen5("d2h_gbs", 100.0, 1)
    ]


def test_the_cards_own_fastest_link_is_the_ceiling(quick: RunRecord) -> None:
    """A Gen5 card in a Gen4 slot: the card's Gen5 holds (`and` for `or` takes Gen4: fails);
    without the card's own maximum the slot's is the ceiling."""
    gen5_card = replace(quick.identity, pcie_gen_gpu_max=5, pcie_gen_max=4)
    test = pcie({"h2d_gbs": (55.0,)})
    assert pcie_rate_problems(replace(quick, identity=gen5_card), test) == []
    unknown = replace(quick.identity, pcie_gen_gpu_max=None, pcie_gen_max=4)
    assert pcie_rate_problems(replace(quick, identity=unknown), test) == [
        "h2d_gbs 55 GB/s, above what a Gen4 x16 link carries (1 x 31.5 GB/s)"
    ]


@pytest.mark.parametrize(
    ("gen", "width", "counted"),
    [
        (6, 16, True),
        (6.0, 16, False),  # not an integer generation
        (6, 16.0, False),  # not an integer width
        (True, 16, False),
    ],
)
def test_a_link_read_under_load_counts_only_as_integers(
    quick: RunRecord, gen: Any, width: Any, counted: bool
) -> None:
    """82 GB/s: above Gen5 x16, within Gen6 x16. Planted `or` for either `and`: a float
    generation or width raises the ceiling to Gen6 (fails)."""
    test = pcie({"h2d_gbs": (82.0,)}, link_gen_under_load=gen, link_width_under_load=width)
    found = pcie_rate_problems(quick, test)
    assert found == ([] if counted else [over_gen5("h2d_gbs", 82.0, 1)])


# --- a run that stopped after its last test -----------------------------------------------------


def stopped(record: RunRecord, **changes: Any) -> RunRecord:
    """Every test ended, the clear not made (what runner.py writes at a stop before it)."""
    clear = MemoryClear("not_cleared", CLEAR_METHOD)
    fields: dict[str, Any] = {
        "complete": False,
        "interrupted": "stopped by SIGTERM before the memory clear",
        "memory_clear": clear,
    }
    return replace(record, **{**fields, **changes})


def unfinished(why: str, told: str = "") -> list[Finding]:
    return [
        Finding(
            "test_not_measured",
            "major",
            "memory_clear",
            f"the run did not finish: {why}; the memory clear was not made{told}: "
            "`gpuhealth resume RUN_DIR` runs it",
            value="unfinished",
            reference="a complete run",
        )
    ]


def test_an_unfinished_run_says_so_in_full(quick: RunRecord) -> None:
    """Planted: other text for the missing reason, None or other text for value or reference,
    either left out: fails."""
    assert unfinished_findings(quick) == []
    why = "stopped by SIGTERM before the memory clear"
    assert unfinished_findings(stopped(quick)) == unfinished(why, " (no clear recorded)")
    assert unfinished_findings(stopped(quick, interrupted=None, memory_clear=None)) == unfinished(
        "no reason recorded", " (no clear recorded)"
    )
    noted = MemoryClear("not_cleared", CLEAR_METHOD, note="the worker was killed")
    assert unfinished_findings(stopped(quick, memory_clear=noted)) == unfinished(
        why, " (the worker was killed)"
    )
    repeated = replace(noted, note=f"{why} (SIGTERM)")
    assert unfinished_findings(stopped(quick, memory_clear=repeated)) == unfinished(why)


def with_soak(record: RunRecord, status: TestStatus) -> tuple[TestResult, ...]:
    return tuple(replace(t, status=status) if t.name == "soak" else t for t in record.tests)


@pytest.mark.parametrize(
    ("status", "open_test"),
    [("not_run", True), ("error", True), ("failed", False), ("skipped", False)],
)
def test_a_test_left_open_is_that_tests_finding(
    quick: RunRecord, status: TestStatus, open_test: bool
) -> None:
    """Planted another name for "not_run" or "error": that run gets this finding too (fails)."""
    record = stopped(quick, tests=with_soak(quick, status))
    found = unfinished_findings(record)
    assert found == (
        [] if open_test else unfinished(record.interrupted or "", " (no clear recorded)")
    )


def test_only_a_selected_test_left_open_counts(quick: RunRecord) -> None:
    """--tests without the soak: a soak record not run is not this run's. Planted `chosen =
    None` or `not in chosen`: fails."""
    names = tuple(t.name for t in quick.tests)
    soak_open = with_soak(quick, "not_run")
    without_soak = stopped(quick, tests=soak_open, tests_selected=names[:-1])
    assert names[-1] == "soak"
    assert unfinished_findings(without_soak) == unfinished(
        "stopped by SIGTERM before the memory clear", " (no clear recorded)"
    )
    assert unfinished_findings(stopped(quick, tests=soak_open, tests_selected=names)) == []


def test_a_clear_that_ran_is_no_unfinished_run(quick: RunRecord) -> None:
    assert unfinished_findings(stopped(quick, memory_clear=quick.memory_clear)) == []
    assert quick.memory_clear is not None
    failed_clear = replace(quick.memory_clear, status="failed")
    assert unfinished_findings(stopped(quick, memory_clear=failed_clear)) == []
