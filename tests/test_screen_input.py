"""gpuhealth screen: bad and odd input (one line, exit 2, nothing written), the CLI's exit codes,
JSON, and the summaries (HTML autoescaped against a report's own fields)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpuhealth.cli import main

DATA = Path(__file__).parent / "data" / "nvidia-smi"
REPORTS = sorted(str(p) for p in DATA.iterdir() if p.is_file())  # the readable real reports
NVL = DATA / "h100-nvl-x2-550.txt"
A100_XML = DATA / "a100-sxm4-mig.xml"
# Synthetic: the plain `nvidia-smi` table's first lines (no health counters in it).
PLAIN_TABLE = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.14              Driver Version: 550.54.14      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
|   0  NVIDIA H100 NVL                On  |   00000000:AD:00.0 Off |                    0 |
+-----------------------------------------+------------------------+----------------------+
"""


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["screen", *args])
    return result.exit_code, result.stdout, result.stderr


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _half(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return text[: len(text) // 2]


BAD = [
    ("plain-table", "table.txt", PLAIN_TABLE, "plain nvidia-smi table"),
    ("truncated-text", "cut.txt", _half(NVL), "truncated"),
    ("truncated-xml", "cut.xml", _half(A100_XML), "not well-formed XML"),
    (
        "not-nvidia",
        "notes.txt",
        "rocm-smi\nGPU[0] : Temperature: 35.0c\n",
        "not an nvidia-smi report",
    ),
    ("empty", "empty.txt", "# only a header\n\n", "empty"),
    (
        "other-xml",
        "other.xml",
        "<?xml version='1.0'?><rocm><gpu/></rocm>",
        "expected <nvidia_smi_log>",
    ),
    (
        "entity",
        "bomb.xml",
        '<?xml version="1.0"?><!DOCTYPE nvidia_smi_log [<!ENTITY a "aaaa">]>'
        "<nvidia_smi_log><gpu id='x'>&a;</gpu></nvidia_smi_log>",
        "entity",
    ),
    (
        "no-gpu",
        "nogpu.txt",
        "==============NVSMI LOG==============\n\nAttached GPUs : 0\n",
        "no 'GPU",
    ),
]


@pytest.mark.parametrize(("case", "name", "text", "said"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_one_line_exit_2_nothing_written(
    tmp_path: Path, case: str, name: str, text: str, said: str
) -> None:
    bad = _write(tmp_path, name, text)
    md = tmp_path / "summary.md"
    code, out, err = run(str(NVL), str(bad), "--md", str(md))
    assert code == 2, (case, out, err)
    lines = [line for line in err.splitlines() if line.startswith("gpuhealth: error:")]
    assert len(lines) == 1 and str(bad) in lines[0] and said in lines[0], err
    assert not md.exists() and out == ""


def test_consumer_card_lists_what_it_cannot_say() -> None:
    code, out, _ = run(str(DATA / "gtx1050ti-535.txt"))
    assert code == 0
    assert ": B" in out and "ECC mode (line" in out and "'N/A'" in out


def test_exit_codes_follow_grade(tmp_path: Path) -> None:
    assert run(str(NVL))[0] == 0  # NOT TESTED
    assert run(str(DATA / "a100-sxm4-x4-555.txt"))[0] == 1  # a pending row remap: D
    assert run(*REPORTS)[0] == 1  # the worst wins


def test_json_has_every_gpu_with_lines_and_never_a(tmp_path: Path) -> None:
    code, out, _ = run("--json", *REPORTS)
    data = json.loads(out)
    assert code == data["summary"]["exit_code"] == 1
    assert data["summary"]["gpus"] == len(data["gpus"]) == 33
    assert all(g["verdict"] != "A" for g in data["gpus"])
    pending = next(g for g in data["gpus"] if g["bus_id"] == "00000000:9E:00.0")
    (finding,) = [f for f in pending["findings"] if f["code"] == "row_remap_pending"]
    assert finding["grade"] == "D" and finding["lines"] == [375]


def test_host_from_header_and_summaries(tmp_path: Path) -> None:
    text = "# host: node-17\n" + NVL.read_text(encoding="utf-8")
    report = _write(tmp_path, "node-17.txt", text)
    md, html = tmp_path / "s.md", tmp_path / "s.html"
    code, out, _ = run(str(report), "--md", str(md), "--html", str(html))
    assert code == 0 and "on node-17" in out
    assert "| node-17 | 00000000:AD:00.0 | NVIDIA H100 NVL | NOT TESTED |" in md.read_text()
    assert "<td>node-17</td>" in html.read_text()
    assert run(str(report), "--md", str(md))[0] == 2  # exists, no --force


def test_html_and_markdown_escape_a_hostile_report(tmp_path: Path) -> None:
    attack = "<script>alert(1)</script>"
    text = NVL.read_text(encoding="utf-8").replace("NVIDIA H100 NVL", attack, 1)
    text = "# host: <img src=x onerror=alert(2)>\n" + text
    report = _write(tmp_path, "evil.txt", text)
    md, html = tmp_path / "s.md", tmp_path / "s.html"
    assert run(str(report), "--md", str(md), "--html", str(html))[0] == 0
    page = html.read_text()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in md.read_text() and "<img" not in md.read_text()


def test_utf16_report_from_powershell(tmp_path: Path) -> None:
    path = tmp_path / "win.txt"
    path.write_bytes(NVL.read_text(encoding="utf-8").encode("utf-16"))
    code, out, _ = run(str(path))
    assert code == 0 and "NOT TESTED" in out


def test_one_gpu_cut_before_its_last_section_is_truncated(tmp_path: Path) -> None:
    text = (DATA / "gtx1050ti-535.txt").read_text(encoding="utf-8")
    cut = _write(tmp_path, "cut.txt", text[: text.index("    Processes")])
    code, _, err = run(str(cut))
    assert code == 2 and "truncated" in err and "Processes" in err


def test_unparseable_value_is_unreadable_not_zero(tmp_path: Path) -> None:
    text = NVL.read_text(encoding="utf-8").replace(
        "Correctable Error                 : 0", "Correctable Error                 : lots", 1
    )
    code, out, _ = run("--json", str(_write(tmp_path, "odd.txt", text)))
    gpu = json.loads(out)["gpus"][0]
    (odd,) = [u for u in gpu["unreadable"] if u["field"] == "remapped rows (correctable)"]
    assert odd["raw"] == "lots" and "expected a number" in odd["why"]
    assert gpu["verdict"] == "B" and code == 0


def test_a_real_trimmed_report_is_refused() -> None:
    """telegraf's A100 test file says 4 attached GPUs and holds 1: the missing ones could be the
    bad ones, so it is not screened as if it were whole."""
    cut = DATA / "cut" / "a100-sxm4-535-v12-trimmed.xml"
    code, out, err = run(str(cut))
    assert code == 2 and out == ""
    assert "<attached_gpus> says 4 but the file holds 1 <gpu>" in err


def test_a_folder_with_a_cut_report_judges_nothing(tmp_path: Path) -> None:
    md = tmp_path / "fleet.md"
    code, out, err = run(str(DATA), "--md", str(md))
    assert code == 2 and out == "" and not md.exists()
    assert "1 of 16 file(s) unreadable" in err


def test_xml_host_comment(tmp_path: Path) -> None:
    text = A100_XML.read_text(encoding="utf-8").replace(
        "<nvidia_smi_log>", "<!-- host: gpu-node-3 -->\n<nvidia_smi_log>", 1
    )
    code, out, _ = run("--json", str(_write(tmp_path, "node.xml", text)))
    assert json.loads(out)["gpus"][0]["host"] == "gpu-node-3" and code == 0


def test_a_summary_the_file_system_refuses_is_one_line_naming_it_exit_3(tmp_path: Path) -> None:
    """A folder that is not there (as a full disk or a read-only folder): the environment's
    failure, named by the file asked for, not the temporary file written first."""
    target = tmp_path / "missing" / "fleet.html"
    code, _, err = run(str(NVL), "--html", str(target))
    assert code == 3
    (line,) = err.strip().splitlines()
    assert line.startswith(f"gpuhealth: error: {target}: ") and ".tmp" not in line
    assert not target.parent.exists()
