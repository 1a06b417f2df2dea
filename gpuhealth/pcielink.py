"""A PCIe link's theoretical rate: what one direction can carry at a generation and width.

Pure arithmetic, shared by the pcie stress test, the findings, the sim and bench/. Per lane, the
transfer rate in GT/s times the share of bits that carry data after line encoding:
- Gen1-2: 8b/10b (0.8);
- Gen3-5: 128b/130b;
- Gen6: PAM4 with FLIT mode: 256-byte flits, of which 236 bytes carry TLPs (the other 20 are the
  data-link payload, CRC and FEC), so 236/256; no encoding overhead beyond the flit.
Packet headers (TLP/DLLP overhead) are not subtracted: the rate is the link's, and a healthy
card's copies reach about 85-90% of it (large transfers, 256-byte maximum payload).
"""

from __future__ import annotations

GT_PER_LANE: dict[int, float] = {1: 2.5, 2: 5.0, 3: 8.0, 4: 16.0, 5: 32.0, 6: 64.0}
ENCODING: dict[int, float] = {
    1: 8 / 10,
    2: 8 / 10,
    3: 128 / 130,
    4: 128 / 130,
    5: 128 / 130,
    6: 236 / 256,
}


def link_gbs(generation: int | None, width: int | None) -> float | None:
    """GB/s (1e9 bytes) per direction of a link of `width` lanes at `generation`; None when
    either is unknown or out of range."""
    if generation is None or width is None or width <= 0 or generation not in GT_PER_LANE:
        return None
    return GT_PER_LANE[generation] * ENCODING[generation] * width / 8


def describe(generation: int | None, width: int | None) -> str:
    gen = "Gen?" if generation is None else f"Gen{generation}"
    lanes = "x?" if width is None else f"x{width}"
    return f"{gen} {lanes}"
