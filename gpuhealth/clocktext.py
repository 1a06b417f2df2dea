"""Application clocks in words, as the readiness list records them: "sm 1980 MHz, memory 2619 MHz".

One format: the backends write it (nvml.py, sim.py) and the judge reads it back (clockhold.py: a
card's default application clock is the clock a held clock is measured against).
"""

from __future__ import annotations

import re

_PAIR = re.compile(r"sm (\d+(?:\.\d+)?) MHz, memory (\d+(?:\.\d+)?) MHz")


def clocks_text(sm_mhz: float, memory_mhz: float) -> str:
    return f"sm {sm_mhz:g} MHz, memory {memory_mhz:g} MHz"


def parse_clocks(text: str) -> tuple[float, float] | None:
    """(SM, memory) MHz of a clocks_text; None for any other text (unread, "the card's default")."""
    found = _PAIR.fullmatch(text)
    return (float(found[1]), float(found[2])) if found else None
