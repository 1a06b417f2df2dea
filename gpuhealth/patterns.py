"""Memory-test patterns: the value every 32-bit word must hold, as a pure function of its index.

This is the reference the CUDA kernels in kernels/memtest.cu implement word for word (the kernel
header says so), the simulated card uses to fill its host buffer, and the tests use to check both.
Every pattern is stateless (value = f(word index, device address)), so a check can run in any order
and report the exact address and bits of a bad word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

PatternKind = Literal["walking_ones", "constant", "address", "random"]

# The integer codes the kernels take for each kind (kernels/memtest.cu, PATTERN_*).
PATTERN_CODES: dict[str, int] = {"walking_ones": 0, "constant": 1, "address": 2, "random": 3}

U32 = np.uint32
WordArray = npt.NDArray[np.uint32]


@dataclass(frozen=True)
class MemPattern:
    """One pattern: kind, its parameter (shift, constant value or seed), and whether inverted."""

    kind: PatternKind
    param: int = 0
    invert: bool = False

    @property
    def label(self) -> str:
        base = {
            "walking_ones": f"walking ones (shift {self.param})",
            "constant": f"constant 0x{self.param:08X}",
            "address": "address in address",
            "random": f"random (seed {self.param})",
        }[self.kind]
        return f"{base}, inverted" if self.invert else base

    def inverted(self) -> MemPattern:
        return MemPattern(self.kind, self.param, not self.invert)


def _mix32(x: WordArray) -> WordArray:
    """lowbias32 (Chris Wellons): a fast 32-bit integer hash with good avalanche."""
    x = x ^ (x >> U32(16))
    x = x * U32(0x7FEB352D)
    x = x ^ (x >> U32(15))
    x = x * U32(0x846CA68B)
    mixed: WordArray = x ^ (x >> U32(16))
    return mixed


def expected_words(
    pattern: MemPattern, word_index: npt.NDArray[np.uint64], base_address: int
) -> WordArray:
    """The value each word must hold. word_index counts 32-bit words from the buffer start."""
    idx = word_index.astype(np.uint64, copy=False)
    lo = (idx & np.uint64(0xFFFFFFFF)).astype(U32)
    hi = (idx >> np.uint64(32)).astype(U32)
    with np.errstate(over="ignore"):
        if pattern.kind == "walking_ones":
            shift = (lo + U32(pattern.param & 31)) & U32(31)
            words = np.left_shift(U32(1), shift).astype(U32)
        elif pattern.kind == "constant":
            words = np.full(idx.shape, pattern.param & 0xFFFFFFFF, dtype=U32)
        elif pattern.kind == "address":
            address = np.uint64(base_address) + idx * np.uint64(4)
            words = (address & np.uint64(0xFFFFFFFF)).astype(U32) ^ (
                address >> np.uint64(32)
            ).astype(U32)
        else:
            seed = U32(pattern.param & 0xFFFFFFFF)
            words = _mix32(lo ^ (hi * U32(0x9E3779B9)) ^ seed)
    result: WordArray = ~words if pattern.invert else words
    return result


def standard_sequence(count: int, seed: int = 0x5EED) -> tuple[MemPattern, ...]:
    """The patterns a memtest pass walks through, in order; each is written, checked and inverted.

    count 1..4 takes a prefix of: address-in-address, seeded random, walking ones, 0x55555555.
    """
    sequence = (
        MemPattern("address"),
        MemPattern("random", seed),
        MemPattern("walking_ones", 0),
        MemPattern("constant", 0x55555555),
    )
    return sequence[: max(1, min(count, len(sequence)))]


def word_digest(words: WordArray, first_index: int = 0) -> int:
    """Order-independent 64-bit digest of 32-bit words, position-aware: sum of mix(w ^ mix(i)).

    kernels/util.cu's word_hash computes the same sum; two runs of a deterministic computation
    give equal digests, and a changed or moved word changes it.
    """
    idx = np.arange(first_index, first_index + words.size, dtype=np.uint64)
    with np.errstate(over="ignore"):
        lo = (idx & np.uint64(0xFFFFFFFF)).astype(U32)
        mixed = _mix32(words.astype(U32, copy=False) ^ _mix32(lo * U32(0x9E3779B9)))
    return int(mixed.astype(np.uint64).sum(dtype=np.uint64))
