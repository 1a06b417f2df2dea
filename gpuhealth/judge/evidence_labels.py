"""Issue 14's claims held to the numbers beside them: the memory clear, the readiness items, the
PCIe copy rates and the NVLink reading's status (called by evidence.py; pure).

The judge reads a stored label in each: the clear's status (memory_clear_findings), an item's
status (readiness verdict and settings_not_default), the copy rates (pcie_copy_slow) and the
NVLink status (nvlink_findings judges only a "read" one). A record
edited so that a label contradicts its own numbers (a clear "cleared" with words read back
non-zero, MIG "ok" while its value says enabled, copies faster than the link can carry) is a
claim without its evidence: INCOMPLETE at grade time, INVALID in `verify`, even re-signed.
"""

from __future__ import annotations

import math

from gpuhealth.judge.readiness import SETTING_KEYS, readiness_items
from gpuhealth.models import MemoryClear, ReadinessItem, RunRecord, TestResult
from gpuhealth.pcielink import describe, link_gbs

# measure/memclear.py: the method it records, and at most this many addresses of words that read
# back non-zero (the judge does not import measure)
CLEAR_METHOD = (
    "Clear (NIST SP 800-88 Rev. 1): every allocatable byte overwritten with zeros, read back"
)
CLEAR_MAX_REPORTED = 64
FRACTION_TOLERANCE = 1e-4  # memclear rounds the fraction to 4 decimals
WORD_MASK = 0xFFFF_FFFF
# A copy cannot outrun the link: healthy cards reach 85-90% of its theoretical rate (pcielink.py).
# The margin is for a timer's jitter on one copy, far below what a doctored number needs.
LINK_RATE_MARGIN = 1.02
DIRECTION_LINKS = {"h2d_gbs": 1, "d2h_gbs": 1, "both_gbs": 2}  # links' worth a rate may reach


def clear_problems(record: RunRecord) -> list[str]:
    """The memory clear's status, counts and sizes, against each other and the card."""
    clear = record.memory_clear
    if clear is None:
        return []
    found: list[str] = []
    if clear.method != CLEAR_METHOD:
        found.append(f"method {clear.method!r}, not gpuhealth's {CLEAR_METHOD!r}")
    found += _clear_counts(clear)
    found += _clear_sizes(clear, record.identity.memory_total_bytes)
    return found


def _clear_counts(clear: MemoryClear) -> list[str]:
    words, listed = clear.words_not_zero, len(clear.first_not_zero)
    found: list[str] = []
    if clear.status == "cleared" and (words or listed):
        found.append(f"status cleared, but {words} word(s) read back non-zero ({listed} listed)")
    if clear.status == "failed" and not 1 <= listed <= min(words, CLEAR_MAX_REPORTED):
        found.append(
            f"status failed with {words} word(s) read back non-zero and {listed} listed "
            f"(1 to {CLEAR_MAX_REPORTED}, at most the count, required)"
        )
    if clear.status == "not_cleared" and (words or listed or clear.bytes_cleared):
        found.append(
            f"status not_cleared, but {clear.bytes_cleared} bytes cleared and {words} word(s) "
            "read back"
        )
    cleared_words = clear.bytes_cleared // 4  # once: the test and the message read one count
    if clear.bytes_cleared >= 0 and words > cleared_words:
        found.append(f"{words} word(s) read back non-zero of {cleared_words} cleared")
    addresses = [w.address for w in clear.first_not_zero]
    bad = [
        w
        for w in clear.first_not_zero
        if w.address < 0 or w.address % 4 or not 0 < w.actual <= WORD_MASK
    ]
    if bad or addresses != sorted(set(addresses)):
        found.append(
            "the words listed must be distinct word addresses in order, each with a non-zero "
            "32-bit value read back"
        )
    return found


def _clear_sizes(clear: MemoryClear, card_bytes: int | None) -> list[str]:
    found: list[str] = []
    total = clear.memory_total_bytes
    if total != card_bytes:
        found.append(f"memory_total_bytes {total}, but the card has {card_bytes}")
    if clear.bytes_cleared < 0 or (total is not None and clear.bytes_cleared > total):
        found.append(f"{clear.bytes_cleared} bytes cleared of the card's {total}")
    if clear.status == "not_cleared":
        if clear.fraction is not None or clear.seconds is not None:
            found.append("status not_cleared with a fraction or a time")
        return found
    if clear.bytes_cleared <= 0:
        found.append(f"status {clear.status} with {clear.bytes_cleared} bytes cleared")
    if clear.seconds is None or not math.isfinite(clear.seconds) or clear.seconds <= 0:
        found.append(f"status {clear.status} in {clear.seconds} s (a positive time required)")
    if total:
        share = clear.bytes_cleared / total
        if clear.fraction is None or abs(clear.fraction - share) > FRACTION_TOLERANCE:
            found.append(
                f"fraction {clear.fraction}, but {clear.bytes_cleared} / {total} = {share}"
            )
    return found


def readiness_problems(record: RunRecord) -> list[str]:
    """Each readiness item's status against its value and default; ECC and the power limit read
    again from the record's counters and identity; every item there, once."""
    items = record.readiness
    if items is None:
        return []
    factory = {i.key: i for i in readiness_items({}, record.counters_before, record.identity)}
    keys = [i.key for i in items]
    found = [
        f"readiness item {key} listed {keys.count(key)} times, once required"
        for key in factory
        if keys.count(key) != 1
    ]
    found += [
        f"readiness item {key!r} is not one gpuhealth reads" for key in keys if key not in factory
    ]
    for item in items:
        if item.key in factory:
            found += _item_problems(item, factory[item.key])
    return found


def _item_problems(item: ReadinessItem, derived: ReadinessItem) -> list[str]:
    shown = (
        f"readiness item {item.key} ({item.status}, value {item.value!r}, "
        f"default {item.expected!r})"
    )
    if item.key not in SETTING_KEYS:  # ECC and the power limit: read from counters and identity
        same = (item.value, item.expected, item.status) == (
            derived.value,
            derived.expected,
            derived.status,
        )
        return (
            []
            if same
            else [f"{shown}: the record's counters give {derived.status}, value {derived.value!r}"]
        )
    if item.key != "applications_clocks" and item.expected != derived.expected:
        return [f"{shown}: the factory default is {derived.expected!r}"]
    if item.status == "site_policy":
        ok = item.key == "persistence_mode" and item.value is not None
    elif item.key == "persistence_mode":
        ok = item.status in ("unreadable", "not_applicable") and item.value is None
    elif item.status == "ok":
        ok = item.value is not None and item.value == item.expected
    elif item.status == "not_default":
        ok = item.value is not None and item.value != item.expected
    else:  # unreadable, not_applicable: nothing was read, or application clocks without the
        # card's default to hold them to (readiness._from_reading)
        ok = item.value is None or (
            item.key == "applications_clocks"
            and item.status == "unreadable"
            and item.expected == derived.expected
        )
    return [] if ok else [f"{shown}: the status does not follow from the value"]


def pcie_rate_problems(record: RunRecord, test: TestResult) -> list[str]:
    """Copy rates the link cannot carry: above the card's fastest link (or the link read under
    load, if faster), one way for each direction, both ways for the two-way copies."""
    ident = record.identity
    gen, width = (
        test.parameters.get("link_gen_under_load"),
        test.parameters.get("link_width_under_load"),
    )
    links = [(ident.pcie_gen_gpu_max or ident.pcie_gen_max, ident.pcie_width_max)]
    if isinstance(gen, int) and isinstance(width, int) and not isinstance(gen, bool):
        links.append((gen, width))
    rated = [(rate, link) for link in links if (rate := link_gbs(*link)) is not None]
    if not rated:
        return []  # pcie_copy_unjudged says the rates could not be held against a link
    ceiling_gbs, link = max(rated)
    found: list[str] = []
    for name, ways in DIRECTION_LINKS.items():
        metric = test.metric(name)
        most = ways * ceiling_gbs * LINK_RATE_MARGIN
        over = [v for v in metric.values if v > most] if metric is not None else []
        if over:
            found.append(
                f"{name} {max(over):g} GB/s, above what a {describe(*link)} link carries "
                f"({ways} x {ceiling_gbs:.1f} GB/s)"
            )
    return found


def link_reading_problems(record: RunRecord) -> list[str]:
    """An NVLink status that disowns the links it lists: "none" (no NVLink) or "unreadable" with
    links and their error counters in the reading, which nvlink_findings would then not judge
    (a status relabelled to hide a link down or its errors)."""
    found: list[str] = []
    for where, counters in (
        ("counters_before", record.counters_before),
        ("counters_after", record.counters_after),
    ):
        if counters is None or counters.nvlink_status not in ("none", "unreadable"):
            continue
        if counters.nvlink:
            found.append(
                f"{where}: NVLink status {counters.nvlink_status}, but "
                f"{len(counters.nvlink)} link(s) listed with their state and counters"
            )
    return found
