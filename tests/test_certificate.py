"""The certificate as a document: hostile text stays text, the embedded record round-trips, the
sections come in the promised order, print rules exist, nothing is fetched, and the signature
block says plainly whether the record is signed. No browser here (tests/test_browser.py has one).
"""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_report import bare_record, failing_record, healthy_record

from gpuhealth import models
from gpuhealth.certificate import pdf, report
from gpuhealth.errors import EnvironmentUnusable, InputError
from gpuhealth.models import SCHEMA_VERSION, Finding, RunRecord, record_from_json, record_to_json

ATTACKS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</script><script>alert(2)</script>",
)
SECTIONS = (
    "grade",
    "card",
    "metrics",
    "soak",
    "findings",
    "health",
    "tests",
    "policy",
    "tool",
    "signature",
)
MD_SECTIONS = (
    "## Grade",
    "## Card",
    "## Performance against healthy cards",
    "## Thermal soak",
    "## Findings",
    "## Health counters",
    "## Tests",
    "## Grading policy",
    "## Tool",
    "## Signature",
)
HAS_SIGNATURE = "signature" in {f.name for f in dataclasses.fields(RunRecord)}
NO_SIGNATURE_FIELD = "RunRecord has no `signature` field yet (gpuhealth/models.py, being added)"


def hostile_record() -> RunRecord:
    """Every string a seller, a driver or a sim spec controls, set to an attack."""
    base = failing_record()
    assert base.analysis is not None and base.grade is not None
    name, serial, host = ATTACKS
    findings = tuple(
        Finding(f"x.{i}", "major", attack, attack, value=attack, reference=attack)
        for i, attack in enumerate(ATTACKS)
    )
    tests = (dataclasses.replace(base.tests[0], message=" ".join(ATTACKS)), *base.tests[1:])
    return dataclasses.replace(
        base,
        identity=dataclasses.replace(base.identity, name=name, serial=serial, uuid=host),
        host=host,
        tests=tests,
        analysis=dataclasses.replace(base.analysis, findings=findings),
        grade=dataclasses.replace(base.grade, disposition=name, policy=f"{serial} v{host}"),
    )


def signed(record: RunRecord, **changes: str) -> RunRecord:
    if not HAS_SIGNATURE:
        pytest.xfail(NO_SIGNATURE_FIELD)
    fields = {
        "algorithm": "ed25519",
        "public_key": "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=",
        "key_fingerprint": "SHA256:3f1c9a4e5b7d2c8e0f6a1b3c5d7e9f10",
        "value": "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=" * 2,
        "signed_at": "2025-01-01T10:12:00Z",
    }
    fields.update(changes)
    signature = models.Signature(**fields)  # type: ignore[attr-defined]
    return dataclasses.replace(record, signature=signature)  # type: ignore[call-arg]


class _Scripts(HTMLParser):
    """What an HTML parser (as a browser's) sees: each script element's text, and all tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.tags: list[str] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None


def parse(html: str) -> _Scripts:
    parser = _Scripts()
    parser.feed(html)
    parser.close()
    return parser


# --- hostile text ---------------------------------------------------------------------------------


def test_hostile_strings_render_as_text_in_html() -> None:
    html = report.render(hostile_record(), "html")
    for attack in ATTACKS:
        assert attack not in html
    assert "<script>alert" not in html and "<img src=x" not in html and "<img" not in html
    assert "</script><script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html
    parsed = parse(html)
    # a parser finds one script element, the inert JSON, and no element the data smuggled in
    assert [attrs for attrs, _ in parsed.scripts] == [
        {"type": "application/json", "id": "gpuhealth-run-record"}
    ]
    assert "img" not in parsed.tags


def test_embedded_json_survives_an_html_parser_and_round_trips() -> None:
    record = hostile_record()
    html = report.render(record, "html")
    (_, text), *_ = parse(html).scripts
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\\u003c/script\\u003e" in text
    assert record_from_json(text) == record
    assert record_to_json(record_from_json(text)) == record_to_json(record)


@pytest.mark.skipif(not HAS_SIGNATURE, reason=NO_SIGNATURE_FIELD)
def test_embedded_json_of_a_signed_record_round_trips() -> None:
    record = signed(hostile_record(), key_fingerprint="SHA256:</script><b>")
    html = report.render(record, "html")
    (_, text), *_ = parse(html).scripts
    assert record_from_json(text) == record
    assert "SHA256:&lt;/script&gt;&lt;b&gt;" in html and "SHA256:</script>" not in html


def test_hostile_strings_render_as_text_in_markdown() -> None:
    md = report.render(hostile_record(), "md")
    assert "<script>" not in md and "<img" not in md and "</script>" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "&lt;img src=x onerror=alert(1)&gt;" in md


# --- document structure ---------------------------------------------------------------------------


def _section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="([a-z-]+)"', html)


@pytest.mark.parametrize("make", [healthy_record, failing_record, bare_record])
def test_sections_in_order(make: object) -> None:
    record = make()  # type: ignore[operator]
    html = report.render(record, "html")
    assert _section_ids(html) == list(SECTIONS)
    # the grade box comes before anything else that has content
    assert html.index('class="grade-box') < html.index('<section id="card"')
    md = report.render(record, "md")
    positions = [md.find(f"\n{heading}\n") for heading in MD_SECTIONS]
    assert -1 not in positions, [h for h, p in zip(MD_SECTIONS, positions, strict=True) if p < 0]
    assert positions == sorted(positions)


def test_identity_metrics_soak_policy_and_tool_are_shown() -> None:
    record = healthy_record()
    html = report.render(record, "html")
    identity = record.identity
    for text in (identity.name, identity.serial, identity.uuid, identity.vbios):
        assert text is not None and text in html
    assert identity.board_part_number is not None and identity.board_part_number in html
    assert html.count('<svg class="chart metric"') == 2  # one per compared metric
    assert html.count('<svg class="chart timeline"') == 1
    policy = html[html.index('<section id="policy"') : html.index('<section id="tool"')]
    assert "ab" * 32 in policy  # the whole sha256, not a prefix
    tool = html[html.index('<section id="tool"') : html.index('<section id="signature"')]
    assert "0.1.0" in tool and f"v{SCHEMA_VERSION}" in tool
    assert "[1] fleet-measured" in html  # the reference's source, once, as a note


def test_print_rules_and_no_network() -> None:
    html = report.render(healthy_record(), "html")
    css = html[html.index("<style>") : html.index("</style>")]
    assert re.search(r"@page\s*\{[^}]*size:\s*auto;[^}]*margin:", css)
    assert "@media print" in css and "break-before: page" in css
    assert "break-inside: avoid" in css and "table-header-group" in css
    # the browser is told to load nothing at all, and nothing asks it to
    assert "default-src 'none'" in html
    assert "http://" not in html and "https://" not in html
    assert "url(" not in html and "@import" not in html and "<link" not in html
    assert not re.search(r"<[a-z][^>]*\s(src|href|srcset|action|formaction)=", html)


# --- signature block ------------------------------------------------------------------------------


def _signature_block(html: str) -> str:
    start = html.index('<section id="signature"')
    return html[start : html.index("</section>", start)]


def test_unsigned_record_says_so() -> None:
    record = healthy_record()
    if HAS_SIGNATURE:
        assert getattr(record, "signature", None) is None
    html = report.render(record, "html")
    block = _signature_block(html)
    assert 'class="unsigned"' in block and "Not signed" in block
    assert "Signed (" not in html
    assert "embedded" in block and "gpuhealth-run-record" in block  # what would be signed
    assert "<b>Not signed</b>" in html[: html.index('<section id="card"')]  # page 1 says it too
    md = report.render(record, "md")
    assert "**Not signed.**" in md and "**Not signed** (record SHA-256 " in md


def test_signed_record_names_algorithm_key_date_and_how_to_verify() -> None:
    record = signed(healthy_record())
    html = report.render(record, "html")
    block = _signature_block(html)
    assert 'class="signed"' in block
    assert (
        'Signed (Ed25519) by key <span class="mono">SHA256:3f1c9a4e5b7d2c8e0f6a1b3c5d7e9f10</span>'
        " on 2025-01-01T10:12:00Z"
    ) in block
    assert "gpuhealth verify report.html" in block
    assert "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=" in block
    assert "embedded" in block and "gpuhealth-run-record" in block
    assert "Not signed" not in html
    assert "<b>Signed</b> (Ed25519)" in html[: html.index('<section id="card"')]
    md = report.render(record, "md")
    fingerprint = "SHA256:3f1c9a4e5b7d2c8e0f6a1b3c5d7e9f10"
    assert f"**Signed (Ed25519) by key {fingerprint} on 2025-01-01T10:12:00Z**" in md
    assert "gpuhealth verify report.html" in md and "Not signed" not in md
    assert report.render(record, "html") == html  # deterministic with a signature too


def test_signature_view_is_defensive() -> None:
    # a record object from before the field existed, and a signature missing parts
    assert report.signature_view(SimpleNamespace()) is None  # type: ignore[arg-type]
    partial = SimpleNamespace(signature=SimpleNamespace(algorithm="ed25519", signed_at=""))
    view = report.signature_view(partial)  # type: ignore[arg-type]
    assert view is not None
    assert view.algorithm == "Ed25519" and view.signed_at == "n/a" and view.key_fingerprint == "n/a"
    other = SimpleNamespace(signature=SimpleNamespace(algorithm="rsa-pss"))
    assert report.signature_view(other).algorithm == "rsa-pss"  # type: ignore[arg-type,union-attr]


def test_policy_view_splits_name_and_version() -> None:
    grade = healthy_record().grade
    assert grade is not None
    view = report.policy_view(dataclasses.replace(grade, policy="gpuhealth-default v1"))
    assert view == report.PolicyView("gpuhealth-default", "1", "ab" * 32)
    assert report.policy_view(grade) == report.PolicyView("default", None, "ab" * 32)
    assert report.policy_view(None) is None


# --- PDF export without a browser -----------------------------------------------------------------


def test_pdf_without_a_browser_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    html = tmp_path / "report.html"
    html.write_text(report.render(healthy_record(), "html"), encoding="utf-8")
    monkeypatch.delenv(pdf.BROWSER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EnvironmentUnusable, match="no headless browser found") as caught:
        pdf.render_pdf(html, tmp_path / "out.pdf")
    assert caught.value.hint is not None and "apt install chromium" in caught.value.hint
    monkeypatch.setenv(pdf.BROWSER_ENV, "/nonexistent/chrome")
    with pytest.raises(EnvironmentUnusable, match="GPUHEALTH_BROWSER"):
        pdf.find_browser()
    with pytest.raises(InputError, match="no such file"):
        pdf.render_pdf(tmp_path / "missing.html", tmp_path / "out.pdf", browser="chromium")
    assert not (tmp_path / "out.pdf").exists()


def test_pdf_browser_command_is_offline() -> None:
    command = pdf.browser_command("chromium", Path("/tmp/profile"), "--print-to-pdf=x.pdf")
    assert command[0] == "chromium" and command[-1] == "--print-to-pdf=x.pdf"
    for flag in ("--headless", "--disable-background-networking", "--disable-quic"):
        assert flag in command
    assert "--host-resolver-rules=MAP * ~NOTFOUND" in command
    assert "--user-data-dir=/tmp/profile" in command
