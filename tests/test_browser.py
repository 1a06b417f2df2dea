"""The certificate in a real browser: headless Chromium shows what a person would see.

Two sim-graded cards (a healthy H100, grade A, and one with a stuck memory bit, grade F) are
rendered by Chromium, which checks that
- the grade letter and the disposition are in the rendered DOM;
- a screenshot is not blank and holds the grade box's colour near the top of the page;
- the page makes no network request: Chromium's net log holds no request from the page (only
  file:// is loaded; the browser's own background calls, to whatever host, are told apart by
  having no initiating origin, and a canary page that does fetch proves the check sees page
  requests, while the browser's own calls in the same log are shown to be there and skipped);
- nothing is wider than the page, on screen and with the print styles at A4 width, and the grade
  box and the card's identity end within the first printed page: a small inline script, added to
  a copy of the certificate for this test only, measures the layout and writes the result into a
  data attribute that --dump-dom returns (the certificate itself carries no script to run);
- printing to PDF (gpuhealth.certificate.pdf, A4 and Letter) gives a plausible number of pages of
that size.

Without Chromium the tests skip, unless GPUHEALTH_REQUIRE_BROWSER=1 (CI) makes that a failure.
GPUHEALTH_UPDATE_SCREENSHOT=1 rewrites docs/certificate-example.png from the grade-A screenshot.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import struct
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from simkit import EXAMPLES, REPO, GradedRuns, invoke

from gpuhealth.certificate import pdf, report
from gpuhealth.errors import EnvironmentUnusable
from gpuhealth.models import RunRecord, record_from_json

REQUIRE = os.environ.get("GPUHEALTH_REQUIRE_BROWSER") == "1"
UPDATE_SCREENSHOT = os.environ.get("GPUHEALTH_UPDATE_SCREENSHOT") == "1"
EXAMPLE_PNG = REPO / "docs" / "certificate-example.png"

WINDOW = (1240, 1754)  # A4 proportions at about 150 dpi
A4_CONTENT_PX = (703, 1024)  # 210 x 297 mm less the certificate's @page margins, in CSS px
LETTER_CONTENT_PX = (725, 958)  # 8.5 x 11 in, the same margins
FLAGS = ("--no-sandbox", "--force-device-scale-factor=1")  # no sandbox: CI runs as root
GRADE_COLOURS = {"A": (0x1E, 0x84, 0x49), "F": (0xC0, 0x39, 0x2B)}  # reports/certificate.css
A4_POINTS = (595, 842)
LETTER_POINTS = (612, 792)
TIMEOUT_S = 60
BROWSER_INITIATOR = "not an origin"  # Chromium's net log: started by the browser itself

LAYOUT_CHECK = """
(function () {
  var body = document.body, style = getComputedStyle(body), box = body.getBoundingClientRect();
  var left = box.left + parseFloat(style.paddingLeft) - 1;
  var right = box.right - parseFloat(style.paddingRight) + 1;
  var bad = [], all = document.querySelectorAll('body *');
  for (var i = 0; i < all.length; i++) {
    var el = all[i];
    if (el.tagName === 'SCRIPT' || (el.parentElement && el.parentElement.closest('svg'))) continue;
    var r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.left < left || r.right > right) {
      bad.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' ' +
               Math.round(r.left) + '..' + Math.round(r.right));
    }
  }
  var root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) {
    bad.push('page scrolls sideways: ' + root.scrollWidth + ' > ' + root.clientWidth);
  }
  function bottom(selector) {
    var el = document.querySelector(selector);
    return el ? Math.round(el.getBoundingClientRect().bottom + window.scrollY) : -1;
  }
  body.setAttribute('data-layout', JSON.stringify({
    overflow: bad.slice(0, 8), width: Math.round(right - left),
    grade_bottom: bottom('.grade-box'), card_bottom: bottom('#card')
  }));
})();
"""

CANARY = (
    "<!DOCTYPE html><html><head><title>canary</title>"
    '<link rel="stylesheet" href="https://fonts.gpuhealth.invalid/c.css"></head>'
    '<body><img src="http://gpuhealth.invalid/c.png" alt=""><p>canary</p></body></html>'
)


# --- the browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> str:
    try:
        return pdf.find_browser()
    except EnvironmentUnusable as exc:
        if REQUIRE:
            pytest.fail(f"GPUHEALTH_REQUIRE_BROWSER=1 but {exc.message}", pytrace=False)
        pytest.skip("no headless Chromium on PATH (GPUHEALTH_REQUIRE_BROWSER=1 makes this fail)")


def run_browser(browser: str, work: Path, *args: str) -> str:
    """One headless Chromium run with a fresh profile and gpuhealth.certificate.pdf's offline
    flags."""
    work.mkdir(parents=True, exist_ok=True)
    command = pdf.browser_command(browser, work / "profile", *FLAGS, *args)
    done = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
    return done.stdout


# --- what the browser produced --------------------------------------------------------------------


def page_requests(net_log: dict[str, object]) -> list[str]:
    """Every URL the page asked for, from Chromium's net log (file: and data: are not network).

    Told apart by what initiated a request, never by its host: the browser's own background calls
    (clock sync, accounts, component updates, whatever a newer Chromium adds) start with the
    initiator "not an origin"; anything a page loads names the page's origin (a file:// page's is
    "null"). A request whose initiator is missing is counted as the page's (fail closed).
    """
    constants = net_log["constants"]
    assert isinstance(constants, dict)
    types = {code: name for name, code in constants["logEventTypes"].items()}
    assert "URL_REQUEST_START_JOB" in types.values(), "net log format changed"
    events = net_log["events"]
    assert isinstance(events, list)
    urls = []
    for event in events:
        params = event.get("params") or {}
        url = params.get("url")
        if types.get(event["type"]) != "URL_REQUEST_START_JOB" or not url:
            continue
        if urlsplit(url).scheme in ("file", "data"):
            continue
        if params.get("initiator") == BROWSER_INITIATOR:
            continue
        urls.append(url)
    return urls


def read_net_log(path: Path) -> dict[str, object]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # a browser that did not close the log: close it
        data = json.loads(text.rstrip().rstrip(",") + "]}")
    assert isinstance(data, dict)
    return data


@dataclass(frozen=True)
class Png:
    width: int
    height: int
    rows: list[bytes]  # the first rows, RGB(A) bytes each
    channels: int

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        row = self.rows[y]
        r, g, b = row[x * self.channels : x * self.channels + 3]
        return r, g, b


def decode_png(data: bytes, max_rows: int) -> Png:
    """The first max_rows rows of an 8-bit RGB/RGBA PNG (the standard library suffices)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    header = b""
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IHDR":
            header = data[pos + 8 : pos + 8 + size]
        elif kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + size])
        pos += 12 + size
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 4 if colour == 6 else 3
    stride = width * bpp
    count = min(height, max_rows)
    raw = zlib.decompressobj().decompress(b"".join(idat), (stride + 1) * count)
    prev = bytearray(stride)
    rows = []
    for y in range(count):
        kind_of_filter = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        _unfilter(kind_of_filter, line, prev, bpp)
        rows.append(bytes(line))
        prev = line
    return Png(width, height, rows, bpp)


def _unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    if kind == 1:
        for i in range(bpp, len(line)):
            line[i] = (line[i] + line[i - bpp]) & 255
    elif kind == 2:
        for i in range(len(line)):
            line[i] = (line[i] + prev[i]) & 255
    elif kind == 3:
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
    elif kind == 4:
        for i in range(len(line)):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    else:
        assert kind == 0, f"bad PNG filter {kind}"


def longest_run(png: Png, y: int, colour: tuple[int, int, int]) -> int:
    best = run = 0
    for x in range(png.width):
        run = run + 1 if png.pixel(x, y) == colour else 0
        best = max(best, run)
    return best


def pdf_pages(data: bytes) -> tuple[int, set[tuple[int, int]]]:
    """Page count and page sizes (points, rounded) of a PDF as Chromium writes it."""
    assert data.startswith(b"%PDF"), "not a PDF"
    pages = len(re.findall(rb"/Type\s*/Page(?![s\w])", data))
    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    return pages, {(round(float(w)), round(float(h))) for w, h in boxes}


# --- the cards ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    letter: str
    disposition: str
    html: Path


def normalised(record: RunRecord) -> RunRecord:
    """The record with the fields that change from run to run fixed (for a stable screenshot)."""
    stamp = "2026-01-01T00:00:00+00:00"
    return dataclasses.replace(
        record,
        run_id=re.sub(r"^\d{8}T\d{6}", "20260101T000000", record.run_id),
        started_at=stamp,
        finished_at=stamp,
        host="bench",
    )


def _card(run_dir: Path, out: Path | None) -> Card:
    record = record_from_json((run_dir / "run.json").read_text(encoding="utf-8"))
    assert record.grade is not None
    html = run_dir / "report.html"
    if out is not None:  # re-rendered from a normalised record, as `gpuhealth report` would
        record = normalised(record)
        out.mkdir(parents=True, exist_ok=True)
        html = report.write_reports(record, out)["html"]
    assert html.is_file()
    return Card(record.grade.letter, record.grade.disposition, html)


@pytest.fixture(scope="module")
def cards(graded: GradedRuns, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Card]:
    healthy = graded.grade("--demo", "--quick", "--json")  # shared with test_grade_scenarios
    faulty = graded.grade("--sim-card", str(EXAMPLES / "stuck-bit.toml"))  # and test_models
    assert healthy.exit_code == 0, healthy.result.output
    assert faulty.exit_code == 1, faulty.result.output
    a = _card(healthy.out_dir, tmp_path_factory.mktemp("card-a"))
    f = _card(faulty.out_dir, None)  # the CLI's own report.html
    assert (a.letter, f.letter) == ("A", "F")
    return {"A": a, "F": f}


def layout_copy(html: Path, target: Path, *, print_styles: bool) -> Path:
    """The certificate plus the layout check (and, for print, its print rules on screen)."""
    text = html.read_text(encoding="utf-8")
    # the certificate's CSP forbids every script; this copy exists only to run the check
    text, removed = re.subn(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
    assert removed == 1
    if print_styles:
        text = text.replace("@media print", "@media all")
    assert text.count("</body>") == 1
    text = text.replace("</body>", f"<script>{LAYOUT_CHECK}</script></body>")
    target.write_text(text, encoding="utf-8")
    return target


@dataclass(frozen=True)
class Job:
    name: str
    args: tuple[str, ...]


@pytest.fixture(scope="module")
def rendered(
    browser: str, cards: dict[str, Card], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    """Every browser run this file needs, started together (each takes about a second).

    Returns the run folder ("root"), each --dump-dom's output ("out", by job name) and the PDFs
    ("pdf", by card and paper).
    """
    root = tmp_path_factory.mktemp("browser")
    net_log = ("--net-log-capture-mode=Default",)
    jobs: dict[str, tuple[str, ...]] = {}
    for letter, card in cards.items():
        url = card.html.resolve().as_uri()
        jobs[f"{letter}-dom"] = (
            f"--log-net-log={root / letter}-net.json",
            *net_log,
            "--dump-dom",
            url,
        )
        jobs[f"{letter}-shot"] = (
            f"--screenshot={root / letter}-shot.png",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            url,
        )
        for kind, width in (("screen", WINDOW[0]), ("print", A4_CONTENT_PX[0])):
            copy = layout_copy(
                card.html, root / f"{letter}-{kind}.html", print_styles=kind == "print"
            )
            jobs[f"{letter}-layout-{kind}"] = (
                f"--window-size={width},1000",
                "--dump-dom",
                copy.as_uri(),
            )
    canary = root / "canary.html"
    canary.write_text(CANARY, encoding="utf-8")
    jobs["canary"] = (
        f"--log-net-log={root}/canary-net.json",
        *net_log,
        "--dump-dom",
        canary.as_uri(),
    )
    prints = {"A-A4": ("A", "A4"), "A-Letter": ("A", "Letter"), "F-A4": ("F", "A4")}

    def run(name: str) -> str:
        return run_browser(browser, root / name, *jobs[name])

    def print_pdf(name: str) -> Path:
        letter, paper = prints[name]
        out = root / f"{name}.pdf"
        return pdf.render_pdf(cards[letter].html, out, paper=paper, browser=browser)  # type: ignore[arg-type]

    with ThreadPoolExecutor(max_workers=8) as pool:
        outputs = dict(zip(jobs, pool.map(run, jobs), strict=True))
        pdfs = dict(zip(prints, pool.map(print_pdf, prints), strict=True))
    return {"root": root, "out": outputs, "pdf": pdfs}


# --- the checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("letter", ["A", "F"])
def test_grade_and_disposition_are_in_the_rendered_page(
    rendered: dict[str, object], cards: dict[str, Card], letter: str
) -> None:
    dom = rendered["out"][f"{letter}-dom"]  # type: ignore[index]
    card = cards[letter]
    assert f'<div class="letter">{letter}</div>' in dom
    assert f'<div class="what">{card.disposition}</div>' in dom
    assert "SIMULATED CARD" in dom  # a sim grade never passes for a real one
    assert '<section id="signature" class="unsigned">' in dom


@pytest.mark.parametrize("letter", ["A", "F"])
def test_the_page_makes_no_network_request(rendered: dict[str, object], letter: str) -> None:
    root = rendered["root"]
    assert isinstance(root, Path)
    log = read_net_log(root / f"{letter}-net.json")
    assert page_requests(log) == []


def test_the_network_check_sees_a_page_that_fetches(rendered: dict[str, object]) -> None:
    root = rendered["root"]
    assert isinstance(root, Path)
    found = page_requests(read_net_log(root / "canary-net.json"))
    assert "http://gpuhealth.invalid/c.png" in found
    assert "https://fonts.gpuhealth.invalid/c.css" in found
    assert len(found) == 2  # and nothing else: the browser's own calls are not the page's


@pytest.mark.parametrize("letter", ["A", "F"])
def test_screenshot_shows_the_grade_box(rendered: dict[str, object], letter: str) -> None:
    root = rendered["root"]
    assert isinstance(root, Path)
    data = (root / f"{letter}-shot.png").read_bytes()
    png = decode_png(data, max_rows=WINDOW[1] // 3)
    assert (png.width, png.height) == WINDOW
    colour = GRADE_COLOURS[letter]
    # the grade box, about 110 x 120 px: many rows holding a long run of its colour (the banner's
    # dashes, text and badges in the same colour make only short runs or a few rows)
    box_rows = [y for y in range(len(png.rows)) if longest_run(png, y, colour) >= 80]
    assert len(box_rows) >= 60, f"no grade {letter} box ({colour}) in the top third"
    assert box_rows[-1] - box_rows[0] < 2 * len(box_rows)  # one block, not scattered rows
    distinct = {png.pixel(x, y) for y in range(0, len(png.rows), 7) for x in range(0, png.width, 7)}
    assert len(distinct) > 20, "the page looks blank"
    if letter == "A" and UPDATE_SCREENSHOT:
        EXAMPLE_PNG.parent.mkdir(exist_ok=True)
        EXAMPLE_PNG.write_bytes(data)


@pytest.mark.parametrize("letter", ["A", "F"])
@pytest.mark.parametrize("kind", ["screen", "print"])
def test_nothing_is_wider_than_the_page(
    rendered: dict[str, object], letter: str, kind: str
) -> None:
    dom = rendered["out"][f"{letter}-layout-{kind}"]  # type: ignore[index]
    found = re.search(r'data-layout="([^"]*)"', dom)
    assert found is not None, "the layout check did not run"
    layout = json.loads(html.unescape(found.group(1)))
    assert layout["overflow"] == [], layout
    if kind == "print":
        assert layout["width"] <= A4_CONTENT_PX[0] + 2
        # page 1 of a print (A4 or Letter, the shorter) holds the grade and the card's identity
        assert 0 < layout["grade_bottom"] < layout["card_bottom"] <= LETTER_CONTENT_PX[1], layout


@pytest.mark.parametrize(
    ("name", "size", "pages"),
    [
        ("A-A4", A4_POINTS, (3, 12)),
        ("A-Letter", LETTER_POINTS, (3, 12)),
        ("F-A4", A4_POINTS, (3, 16)),
    ],
)
def test_prints_to_pdf(
    rendered: dict[str, object], name: str, size: tuple[int, int], pages: tuple[int, int]
) -> None:
    path = rendered["pdf"][name]  # type: ignore[index]
    count, sizes = pdf_pages(path.read_bytes())
    assert sizes == {size}
    assert pages[0] <= count <= pages[1], f"{name}: {count} pages"


def test_report_command_prints_a_pdf(graded: GradedRuns, browser: str, tmp_path: Path) -> None:
    """`gpuhealth report RUN.json --format pdf`: the certificate as a PDF, through the CLI."""
    healthy = graded.grade("--demo", "--quick", "--json")
    target = tmp_path / "certificate.pdf"
    result = invoke(
        "report", str(healthy.out_dir / "run.json"), "--format", "pdf", "-o", str(target)
    )
    assert result.exit_code == 0, result.output + result.stderr
    count, sizes = pdf_pages(target.read_bytes())
    assert count >= 3 and len(sizes) == 1


def test_requests_are_told_apart_by_initiator_not_by_host() -> None:
    """The browser's own calls go to any host (update.googleapis.com since Chromium 156); a page's
    request names the page's origin; one with no initiator at all counts as the page's."""
    start = 7
    log = {
        "constants": {"logEventTypes": {"URL_REQUEST_START_JOB": start, "OTHER": 1}},
        "events": [
            {
                "type": start,
                "params": {"url": "https://update.example/u", "initiator": BROWSER_INITIATOR},
            },
            {
                "type": start,
                "params": {"url": "http://gpuhealth.invalid/p.png", "initiator": "null"},
            },
            {"type": start, "params": {"url": "https://cdn.example/x.js"}},
            {"type": start, "params": {"url": "file:///tmp/report.html", "initiator": "null"}},
            {"type": 1, "params": {"url": "https://other.example/", "initiator": "null"}},
        ],
    }
    assert page_requests(log) == ["http://gpuhealth.invalid/p.png", "https://cdn.example/x.js"]
