"""Memory-test patterns and the word digest against values worked out by hand (or by a plain
Python re-implementation of the documented formula, word by word)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gpuhealth.patterns import (
    PATTERN_CODES,
    MemPattern,
    expected_words,
    standard_sequence,
    word_digest,
)

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1


def words(pattern: MemPattern, indexes: list[int], base: int = 0) -> list[int]:
    return [int(w) for w in expected_words(pattern, np.array(indexes, dtype=np.uint64), base)]


def lowbias32(x: int) -> int:
    """Chris Wellons' lowbias32, in plain integers."""
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


# --- walking ones --------------------------------------------------------------------------------


def test_walking_ones_by_hand() -> None:
    assert words(MemPattern("walking_ones"), [0, 1, 2, 31, 32, 33, 63]) == [
        0x1,
        0x2,
        0x4,
        0x80000000,
        0x1,
        0x2,
        0x80000000,
    ]


def test_walking_ones_shift_moves_the_bit() -> None:
    assert words(MemPattern("walking_ones", 5), [0, 1, 26, 27]) == [
        1 << 5,
        1 << 6,
        1 << 31,
        1 << 0,
    ]
    # the shift is taken mod 32
    assert words(MemPattern("walking_ones", 37), [0]) == [1 << 5]


def test_walking_ones_uses_the_low_32_bits_of_the_index() -> None:
    assert words(MemPattern("walking_ones"), [(1 << 32) + 3]) == [1 << 3]


# --- constant ------------------------------------------------------------------------------------


def test_constant() -> None:
    assert words(MemPattern("constant", 0x55555555), [0, 7, 1 << 33]) == [0x55555555] * 3
    assert words(MemPattern("constant", 0x1_2345_6789), [0]) == [0x23456789]  # 32 bits kept


# --- address in address --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "index", "expected"),
    [
        (0, 0, 0x0),
        (0, 5, 20),
        (0x1000, 1, 0x1004),
        # a word above 4 GiB: low 32 bits of its address XOR the high 32 bits
        (0x1_0000_0000, 0, 0x0 ^ 0x1),
        (0x2_0000_1000, 1, 0x1004 ^ 0x2),
        (0x12_3456_7000, 3, 0x3456_700C ^ 0x12),
        # the index itself can carry the address past 4 GiB
        (0, 1 << 30, 0x0 ^ 0x1),
        (0xFFFF_FFFC, 1, 0x0 ^ 0x1),
    ],
)
def test_address_pattern_by_hand(base: int, index: int, expected: int) -> None:
    assert words(MemPattern("address"), [index], base) == [expected]


def test_address_pattern_differs_between_words_and_bases() -> None:
    n = 4096
    w = words(MemPattern("address"), list(range(n)), 0x8_0000_0000)
    assert len(set(w)) == n  # each word of a block holds a distinct value
    other = words(MemPattern("address"), list(range(n)), 0x8_0000_0000 + 4 * n)
    assert not set(w) & set(other)


# --- random --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 0x5EED, 0xDEADBEEF])
def test_random_pattern_is_the_documented_hash(seed: int) -> None:
    indexes = [0, 1, 2, 1000, (1 << 32) + 7, (5 << 32) + 123456]
    expected = [lowbias32((i & M32) ^ (((i >> 32) * 0x9E3779B9) & M32) ^ seed) for i in indexes]
    assert words(MemPattern("random", seed), indexes) == expected


def test_random_pattern_depends_on_seed_and_looks_random() -> None:
    idx = list(range(1 << 14))
    a = np.array(words(MemPattern("random", 1), idx), dtype=np.uint64)
    b = np.array(words(MemPattern("random", 2), idx), dtype=np.uint64)
    assert np.count_nonzero(a == b) < 4
    ones = sum(bin(int(x)).count("1") for x in a) / (32 * a.size)
    assert 0.49 < ones < 0.51


# --- inversion -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        MemPattern("walking_ones", 3),
        MemPattern("constant", 0x55555555),
        MemPattern("address"),
        MemPattern("random", 9),
    ],
)
def test_inverted_is_the_complement(pattern: MemPattern) -> None:
    idx = [0, 1, 2, 99, (1 << 32) + 1]
    base = 0x3_0000_0000
    plain = words(pattern, idx, base)
    inverted = words(pattern.inverted(), idx, base)
    assert inverted == [~w & M32 for w in plain]
    assert pattern.inverted().inverted() == pattern
    assert pattern.inverted().label.endswith(", inverted")


def test_inverted_by_hand() -> None:
    assert words(MemPattern("walking_ones", 0, invert=True), [0, 31]) == [0xFFFFFFFE, 0x7FFFFFFF]
    assert words(MemPattern("constant", 0x55555555, invert=True), [0]) == [0xAAAAAAAA]


# --- the sequence a pass walks through -----------------------------------------------------------


def test_standard_sequence_is_a_prefix() -> None:
    full = standard_sequence(4, seed=7)
    assert [p.kind for p in full] == ["address", "random", "walking_ones", "constant"]
    assert full[1].param == 7 and full[3].param == 0x55555555
    for count in range(1, 5):
        assert standard_sequence(count, seed=7) == full[:count]
    assert standard_sequence(0) == standard_sequence(1)  # at least one pattern
    assert standard_sequence(99) == standard_sequence(4)
    assert set(PATTERN_CODES) == {p.kind for p in full}


# --- word digest ---------------------------------------------------------------------------------


def digest_by_hand(values: list[int], first_index: int = 0) -> int:
    total = 0
    for offset, w in enumerate(values):
        i = first_index + offset
        total += lowbias32(w ^ lowbias32(((i & M32) * 0x9E3779B9) & M32))
    return total & M64


def test_word_digest_is_the_documented_sum() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 1 << 32, size=257, dtype=np.uint64).astype(np.uint32)
    assert word_digest(values) == digest_by_hand([int(v) for v in values])
    assert word_digest(values, 1000) == digest_by_hand([int(v) for v in values], 1000)
    assert word_digest(np.zeros(0, dtype=np.uint32)) == 0


def test_word_digest_is_order_independent() -> None:
    """Chunks digested separately, in any order, sum to the digest of the whole (mod 2^64):
    a kernel may reduce its words in any order."""
    rng = np.random.default_rng(2)
    values = rng.integers(0, 1 << 32, size=10_000, dtype=np.uint64).astype(np.uint32)
    whole = word_digest(values)
    cuts = [0, 17, 1000, 4096, 9999, 10_000]
    chunks = [(a, values[a:b]) for a, b in itertools.pairwise(cuts)]
    for order in (chunks, chunks[::-1], chunks[2:] + chunks[:2]):
        assert sum(word_digest(c, start) for start, c in order) & M64 == whole


def test_word_digest_is_position_aware() -> None:
    values = np.arange(1, 1001, dtype=np.uint32)
    base = word_digest(values)
    swapped = values.copy()
    swapped[[3, 700]] = swapped[[700, 3]]
    assert word_digest(swapped) != base  # same words, other places
    rolled = np.roll(values, 1)
    assert word_digest(rolled) != base
    assert word_digest(values, first_index=1) != base  # same words, shifted positions


def test_word_digest_sees_one_flipped_bit_anywhere() -> None:
    values = np.full(4096, 0x55555555, dtype=np.uint32)
    base = word_digest(values)
    for index in (0, 1, 2048, 4095):
        for bit in (0, 13, 31):
            changed = values.copy()
            changed[index] ^= np.uint32(1 << bit)
            assert word_digest(changed) != base
    assert word_digest(values.copy()) == base  # equal content, equal digest
