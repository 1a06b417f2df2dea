"""Attack on issue 14: odd values in a sim card's issue-14 fault fields.

Each must be one line naming the file, its line, the field and what was expected; exit 2; nothing
written. Found: `pcie_copy_scale` up to 2 made copies at 1.74 x the link's theoretical rate (a
card faster than physics, which the judge now calls evidence missing), and locked clocks with min
above max were taken. The others were refused already; they stay so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from simkit import card_toml, invoke


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (
            "pcie_copy_scale = 1.5",
            ":3: faults.pcie_copy_scale: expected at most the model's PCIe copy scale (its copies "
            "at the link's theoretical rate) (1.149 on h100-sxm5-80gb), got 1.5",
        ),
        (
            "settings = { locked_sm_clocks_mhz = [1980, 100] }",
            ":3: faults.settings.locked_sm_clocks_mhz: expected [min, max] with min at most max, "
            "got [1980, 100]",
        ),
        (
            "settings = { locked_memory_clocks_mhz = [2619, 1593] }",
            ":3: faults.settings.locked_memory_clocks_mhz: expected [min, max] with min at most "
            "max, got [2619, 1593]",
        ),
        ("pcie_copy_scale = nan", ":3: faults.pcie_copy_scale: Input should be a finite number"),
        ("pcie_errors = { bad_tlp = -1 }", ":3: faults.pcie_errors.bad_tlp: Input should be"),
        ('pcie_errors = { bad_tlp = "3" }', ":3: faults.pcie_errors.bad_tlp: Input should be"),
        ("nvlink_links = 37", ":3: faults.nvlink_links: Input should be less than or equal"),
        ("nvlink_errors = 3", ":3: faults.nvlink_errors: expected an active NVLink"),
        ("uncleared = { address = 4, nbytes = -1 }", ":3: faults.uncleared.nbytes: Input should"),
        ("settings = { mig_enabled = 1 }", ":3: faults.settings.mig_enabled: Input should be"),
    ],
)
def test_an_odd_issue_14_fault_is_one_line_exit_2(
    tmp_path: Path, faults: str, expected: str
) -> None:
    spec = tmp_path / "card.toml"
    spec.write_text(card_toml(faults).replace("\n\n", "\n"), encoding="utf-8")
    out = tmp_path / "run"
    result = invoke(
        "grade", "--quick", "--quiet", "--no-db", "--sim-card", str(spec), "--out", str(out)
    )
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"gpuhealth: error: {spec}{expected}"), line
    assert not out.exists()


@pytest.mark.parametrize(
    "faults",
    [
        "pcie_copy_scale = 1.149",  # at the link's rate: the most a copy can reach
        "settings = { locked_sm_clocks_mhz = [1980, 1980] }",  # locked to one clock
    ],
)
def test_the_bounds_themselves_are_taken(tmp_path: Path, faults: str) -> None:
    from gpuhealth.measure.backends.simcards import load_card

    spec = tmp_path / "card.toml"
    spec.write_text(card_toml(faults), encoding="utf-8")
    assert load_card(str(spec)).source == str(spec)
