# ruff: noqa: E501  (the SYNTHETIC table keeps each case, with its exact report lines, on one line)
"""gpuhealth screen on real nvidia-smi reports (tests/data/nvidia-smi: each file's header names
its source) and on synthetic variants of them, one per finding kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuhealth.judge.grading import load_policy
from gpuhealth.screen.judge import NOT_TESTED, ScreenedGpu, screen_report
from gpuhealth.screen.load import load_report

DATA = Path(__file__).parent / "data" / "nvidia-smi"
POLICY = load_policy()


def screen(path: Path) -> list[ScreenedGpu]:
    return screen_report(load_report(path), POLICY)


def codes(gpu: ScreenedGpu) -> set[str]:
    return {located.finding.code for located in gpu.findings}


def health(gpu: ScreenedGpu) -> set[str]:
    """Findings other than identity notes (listed, never graded worse than B)."""
    return codes(gpu) - {"identity_unverified", "identity_unrecognised", "vbios_unrecognised"}


# Every real report: (file, driver, {bus id: (verdict, health findings)}); GPUs not named are
# NOT TESTED with no health finding.
REAL = [
    ("gtx680-470.txt", "470.256.02", {"00000000:08:00.0": ("B", {"counters_incomplete"})}),
    ("gtx1050ti-535.txt", "535.161.07", {"00000000:08:00.0": ("B", {"counters_incomplete"})}),
    (
        "v100-sxm2-x8-550.txt",
        "550.127.05",
        {"00000000:00:08.0": ("B", {"pages_retired"})},
    ),
    ("h100-nvl-x2-550.txt", "550.54.14", {}),
    (
        "a100-sxm4-x4-555.txt",
        "555.42.02",
        {
            "00000000:9E:00.0": ("D", {"row_remap_pending", "rows_remapped"}),
            "00000000:C2:00.0": ("B", {"rows_remapped"}),
        },
    ),
    ("h100-sxm-x8-565.txt", "565.57.01", {}),
    ("rtx5090-570.txt", "570.124.06", {"00000000:02:00.0": ("B", {"counters_incomplete"})}),
    ("a100-sxm4-mig.xml", "510.47.03", {"00000000:00:04.0": ("B", {"counters_incomplete"})}),
    ("tesla-p100.xml", "510.47.03", {}),
    ("rtx-3060.xml", "515.65.01", {"00000000:01:00.0": ("B", {"counters_incomplete"})}),
    ("rtx-2080-win.xml", "516.59", {"00000000:0A:00.0": ("B", {"counters_incomplete"})}),
    ("rtx-4090-driver-535.xml", "535.86.05", {"00000000:84:00.0": ("C", {"ecc_disabled"})}),
    ("tesla-t4-515.xml", "515.105.01", {}),  # idle at x8 of x16: listed, not graded
    ("rtx-3080-595-v13.xml", "595.58.03", {"00000000:0C:00.0": ("B", {"counters_incomplete"})}),
    (
        "rtx-4000-sff-ada-595-v13.xml",
        "595.84",
        {"00000000:06:00.0": ("C", {"ecc_disabled"})},
    ),
]


@pytest.mark.parametrize(("name", "driver", "expected"), REAL, ids=[r[0] for r in REAL])
def test_real_reports(name: str, driver: str, expected: dict[str, tuple[str, set[str]]]) -> None:
    gpus = screen(DATA / name)
    assert gpus and all(gpu.driver_version == driver for gpu in gpus)
    for gpu in gpus:
        verdict, found = expected.get(gpu.bus_id, (NOT_TESTED, set()))
        assert (gpu.verdict, health(gpu)) == (verdict, found), gpu.bus_id
        assert gpu.verdict != "A"


def test_real_reports_cover_three_driver_generations_in_both_formats() -> None:
    text = {d.split(".")[0] for n, d, _ in REAL if n.endswith(".txt")}
    xml = {d.split(".")[0] for n, d, _ in REAL if n.endswith(".xml")}
    assert len(text) >= 3 and len(xml) >= 3 and len(REAL) >= 10
    for name, *_ in REAL:
        head = (DATA / name).read_text(encoding="utf-8")[:600]
        assert "source: https://github.com/" in head and "commit " in head, name


def test_finding_lines_point_at_the_fields() -> None:
    path = DATA / "a100-sxm4-x4-555.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    gpu = next(g for g in screen(path) if g.bus_id == "00000000:9E:00.0")
    pending = next(x for x in gpu.findings if x.finding.code == "row_remap_pending")
    assert [lines[n - 1].split(":")[0].strip() for n in pending.lines] == ["Pending"]
    assert lines[pending.lines[0] - 1].split(":")[1].strip() == "Yes"
    # of the rows-remapped counts only the one that is not zero is pointed at
    remapped = next(x for x in gpu.findings if x.finding.code == "rows_remapped")
    assert [lines[n - 1].split(":")[0].strip() for n in remapped.lines] == ["Correctable Error"]


def test_unreadable_fields_are_listed_with_line_and_value() -> None:
    (gpu,) = screen(DATA / "gtx680-470.txt")
    labels = {r.label: r for r in gpu.unreadable}
    assert {"ECC mode", "pending row remap", "pending page retirement", "HW slowdown"} <= set(
        labels
    )
    assert labels["HW slowdown"].raw == "N/A" and labels["HW slowdown"].line is not None


def test_every_report_file_is_listed_here() -> None:
    on_disk = {p.name for p in DATA.iterdir() if p.is_file()}
    assert on_disk == {name for name, *_ in REAL}


def test_idle_link_below_max_is_not_a_finding_but_is_listed() -> None:
    (gpu,) = screen(DATA / "rtx-3060.xml")  # idle (0%): Gen1 of Gen4, x8 of x16
    assert "pcie_link_degraded" not in codes(gpu)
    assert any("Gen1 of Gen4" in text for text in gpu.not_checked)


# --- synthetic variants: a real report with one field changed, one per finding kind ----------


def _nth(text: str, old: str, new: str, n: int = 1) -> str:
    """text with the n-th occurrence of old replaced (fails if there is none)."""
    at = -1
    for _ in range(n):
        at = text.index(old, at + 1)
    return text[:at] + new + text[at + len(old) :]


def _variant(tmp_path: Path, name: str, edits: list[tuple[str, str, int]]) -> ScreenedGpu:
    text = (DATA / name).read_text(encoding="utf-8")
    label = f"synthetic: {name} with fields changed by tests/test_screen.py"
    if name.endswith(".xml"):
        text = _nth(text, "<nvidia_smi_log>", f"<!-- {label} -->\n<nvidia_smi_log>")
    else:
        text = f"# {label}\n{text}"
    for old, new, n in edits:
        text = _nth(text, old, new, n)
    path = tmp_path / ("synthetic-" + name)
    path.write_text(text, encoding="utf-8")
    return screen(path)[0]


NVL = "h100-nvl-x2-550.txt"
V100 = "v100-sxm2-x8-550.txt"
A100_XML = "a100-sxm4-mig.xml"
SYNTHETIC = [
    ("remap-failure", NVL, [("Remapping Failure Occurred        : No", "Remapping Failure Occurred        : Yes", 1)], "F", "row_remap_failure"),
    ("remap-pending", NVL, [("Pending                           : No\n        Remapping", "Pending                           : Yes\n        Remapping", 1)], "D", "row_remap_pending"),
    ("spares-low", NVL, [("Low                           : 0 bank(s)", "Low                           : 2 bank(s)", 1)], "C", "row_spares_depleting"),
    ("spares-none", NVL, [("None                          : 0 bank(s)", "None                          : 1 bank(s)", 1)], "C", "row_spares_depleting"),
    ("dram-unc-history", NVL, [("DRAM Uncorrectable            : 0", "DRAM Uncorrectable            : 2", 2)], "C", "ecc_uncorrectable_history"),
    ("dram-unc-since-boot", NVL, [("DRAM Uncorrectable            : 0", "DRAM Uncorrectable            : 1", 1)], "C", "ecc_uncorrectable_history"),
    ("sram-unc-history", NVL, [("SRAM Uncorrectable SEC-DED    : 0", "SRAM Uncorrectable SEC-DED    : 3", 2)], "D", "ecc_sram_uncorrectable_history"),
    ("ecc-off", NVL, [("Current                           : Enabled\n        Pending                           : Enabled", "Current                           : Disabled\n        Pending                           : Disabled", 1)], "C", "ecc_disabled"),
    ("ecc-pending-off", NVL, [("Pending                           : Enabled\n    ECC Errors", "Pending                           : Disabled\n    ECC Errors", 1)], "C", "ecc_mode_pending"),
    ("ecc-history-unreadable", NVL, [("DRAM Uncorrectable            : 0", "DRAM Uncorrectable            : N/A", 2)], "C", "ecc_history_unreadable"),
    ("unknown-error", NVL, [("Pending                           : No\n        Remapping", "Pending                           : Unknown Error\n        Remapping", 1)], "B", "counters_incomplete"),
    ("link-gen-under-load", NVL, [("Gpu                               : 0 %", "Gpu                               : 97 %", 1), ("Current                   : 5", "Current                   : 3", 1)], "D", "pcie_link_degraded"),
    ("link-width-under-load", NVL, [("Gpu                               : 0 %", "Gpu                               : 97 %", 1), ("Current                   : 16x", "Current                   : 8x", 1)], "D", "pcie_link_degraded"),
    ("power-brake", NVL, [("HW Power Brake Slowdown       : Not Active", "HW Power Brake Slowdown       : Active", 1)], "D", "hardware_slowdown"),
    ("hw-thermal", NVL, [("HW Thermal Slowdown           : Not Active", "HW Thermal Slowdown           : Active", 1)], "F", "thermal_slowdown"),
    ("power-limit", NVL, [("Current Power Limit               : 310.00 W", "Current Power Limit               : 250.00 W", 1)], "B", "power_limit_reduced"),
    ("memory-mismatch", NVL, [("Total                             : 95830 MiB", "Total                             : 47915 MiB", 1)], "D", "identity_mismatch"),
    ("retired-pending", V100, [("Pending Page Blacklist            : No", "Pending Page Blacklist            : Yes", 1)], "D", "retired_pages_pending"),
    ("retired-limit", V100, [("Double Bit ECC                    : 0", "Double Bit ECC                    : 70", 1)], "F", "retired_pages_limit"),
    ("retired-many-dbe", V100, [("Double Bit ECC                    : 0", "Double Bit ECC                    : 20", 1)], "C", "pages_retired"),
    ("xml-remap-failure", A100_XML, [("<remapped_rows>N/A</remapped_rows>", "<remapped_rows><remapped_row_corr>0</remapped_row_corr><remapped_row_unc>3</remapped_row_unc><remapped_row_pending>No</remapped_row_pending><remapped_row_failure>Yes</remapped_row_failure></remapped_rows>", 1)], "F", "row_remap_failure"),
    ("xml-hw-slowdown", A100_XML, [("<clocks_throttle_reason_hw_slowdown>Not Active", "<clocks_throttle_reason_hw_slowdown>Active", 1)], "D", "hardware_slowdown"),
    ("xml-ecc-off", A100_XML, [("<current_ecc>Enabled</current_ecc>", "<current_ecc>Disabled</current_ecc>", 1)], "C", "ecc_disabled"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "name", "edits", "verdict", "code"), SYNTHETIC, ids=[s[0] for s in SYNTHETIC]
)
def test_each_finding_kind(
    tmp_path: Path,
    case: str,
    name: str,
    edits: list[tuple[str, str, int]],
    verdict: str,
    code: str,
) -> None:
    gpu = _variant(tmp_path, name, edits)
    assert code in codes(gpu), case
    assert gpu.verdict == verdict, (case, [r.rule for r in gpu.grade.reasons])
    located = next(x for x in gpu.findings if x.finding.code == code)
    assert located.lines, f"{case}: the finding names no line of the file"


def test_idle_gen_below_max_is_not_graded(tmp_path: Path) -> None:
    gpu = _variant(
        tmp_path, NVL, [("Current                   : 5", "Current                   : 3", 1)]
    )
    assert "pcie_link_degraded" not in codes(gpu) and gpu.verdict == NOT_TESTED
    assert any("Gen3 of Gen5" in text for text in gpu.not_checked)


def test_several_hosts_in_one_log_each_with_its_host(tmp_path: Path) -> None:
    """A fleet log: reports one after another, each after "# host:", a prompt between them."""
    one = (DATA / NVL).read_text(encoding="utf-8")
    two = (DATA / V100).read_text(encoding="utf-8")
    text = f"# host: node-a\n{one}\n$ ssh node-b nvidia-smi -q\n# host: node-b\n{two}\n$ \n"
    path = tmp_path / "fleet.log"
    path.write_text(text, encoding="utf-8")
    gpus = screen(path)
    assert [(g.host, g.driver_version) for g in gpus] == [("node-a", "550.54.14")] * 2 + [
        ("node-b", "550.127.05")
    ] * 8
    retired = next(g for g in gpus if g.bus_id == "00000000:00:08.0")
    assert "pages_retired" in codes(retired) and retired.host == "node-b"


def test_unknown_fields_change_nothing(tmp_path: Path) -> None:
    edit = (
        "    Fan Speed ",
        "    Flux Capacitor                        : 1.21 GW\n    Fan Speed ",
        1,
    )
    gpu = _variant(tmp_path, NVL, [edit])
    assert gpu.verdict == NOT_TESTED and health(gpu) == set()
