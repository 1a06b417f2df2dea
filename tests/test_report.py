"""Reports: certificate (HTML), listing (Markdown), JSON; charts as inline SVG.

Records are built directly from gpuhealth.models, so these tests need no backend and no analysis.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from jinja2 import StrictUndefined
from markupsafe import Markup

from gpuhealth.certificate import charts, report
from gpuhealth.models import (
    SCHEMA_VERSION,
    Analysis,
    CardIdentity,
    Finding,
    Grade,
    HealthCounters,
    MemoryMismatch,
    Metric,
    MetricComparison,
    Precheck,
    ProfileRef,
    Reason,
    ReferenceMetric,
    RowRemapHistogram,
    RunRecord,
    SoakSummary,
    TelemetrySample,
    TestResult,
    Verification,
    WrongResult,
    XidEvent,
    record_from_json,
    record_to_json,
)

HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_SERIAL = '"&<>'


# --- records -------------------------------------------------------------------------------------


def _identity(**changes: object) -> CardIdentity:
    base = CardIdentity(
        name="NVIDIA H100 80GB HBM3",
        backend="cuda",
        uuid="GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        serial="1652223012345",
        board_part_number="692-2G520-0200-000",
        vbios="96.00.74.00.0D",
        inforom="G520.0200.00.05",
        pci_bus_id="00000000:19:00.0",
        driver_version="580.65.06",
        cuda_driver_version="13.0",
        memory_total_bytes=85_520_809_984,
        sm_count=132,
        compute_capability="9.0",
        memory_bus_width_bits=5120,
        max_sm_clock_mhz=1980.0,
        max_memory_clock_mhz=2619.0,
        pcie_gen_max=5,
        pcie_width_max=16,
        power_limit_default_w=700.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _counters(**changes: object) -> HealthCounters:
    base = HealthCounters(
        ecc_enabled=True,
        ecc_volatile_corrected=0,
        ecc_volatile_uncorrected=0,
        ecc_aggregate_corrected=0,
        ecc_aggregate_uncorrected=0,
        remapped_rows_correctable=0,
        remapped_rows_uncorrectable=0,
        remapped_rows_pending=False,
        remapped_rows_failure=False,
        row_remap_histogram=RowRemapHistogram(max=2560, high=0, partial=0, low=0, none=0),
        pcie_gen_current=5,
        pcie_width_current=16,
        pcie_replay_count=0,
        power_limit_w=700.0,
        temperature_c=31.0,
        temperature_slowdown_c=87.0,
        temperature_shutdown_c=92.0,
        memory_temperature_max_c=38.0,
        energy_j=1_234_567.0,
        clocks_event_reasons=0x1,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _soak_telemetry(n: int = 1200) -> tuple[TelemetrySample, ...]:
    samples = []
    for i in range(n):
        t = 10.0 + i * 0.5
        temp = 35.0 + 40.0 * (1 - 0.98**i)
        samples.append(
            TelemetrySample(
                t_s=t,
                temperature_c=None if i % 50 == 7 else round(temp, 1),  # a few gaps
                power_w=None if i % 100 == 3 else 650.0 + (i % 7),
                sm_clock_mhz=1980.0 - (i % 5) * 15.0,
                clocks_event_reasons=0x4 if i % 9 == 0 else 0,
            )
        )
    return tuple(samples)


def _tests_healthy() -> tuple[TestResult, ...]:
    return (
        TestResult(
            name="bandwidth",
            status="passed",
            started_s=2.0,
            duration_s=6.25,
            gpu_busy_s=5.5,
            time_budget_s=60.0,
            parameters={"array_bytes": 4_294_967_296, "kernel": "triad", "vectorised": True},
            metrics=(Metric("triad_gbps", "GB/s", (3050.1, 3052.7, 3049.9, 3051.3)),),
            verifications=(Verification("host arithmetic", True, checked=4096, mismatches=0),),
        ),
        TestResult(
            name="memtest",
            status="passed",
            started_s=8.5,
            duration_s=2.0,
            parameters={"coverage": 0.95, "patterns": "walking_ones,moving_inversions"},
            metrics=(Metric("pass_seconds", "s", (0.21, 0.22), higher_is_better=False),),
            verifications=(Verification("read back every word", True, 20_000_000_000, 0),),
        ),
        TestResult(
            name="soak",
            status="passed",
            started_s=10.0,
            duration_s=600.0,
            parameters={"minutes": 10.0},
            metrics=(Metric("tflops", "TFLOP/s", (51.2, 51.0, 50.9)),),
            verifications=(Verification("iteration checksums", True, 1200, 0, 0.0, 1e-6),),
            telemetry=_soak_telemetry(),
        ),
    )


def _analysis(*, findings: tuple[Finding, ...] = ()) -> Analysis:
    reference = ReferenceMetric(
        center=3040.0, spread=45.0, n=12, source="fleet-measured", published_peak=3350.0
    )
    return Analysis(
        profile=ProfileRef(key="h100-sxm5-80gb", name="H100 SXM5 80GB", source="fleet", cards=12),
        comparisons=(
            MetricComparison(
                test="bandwidth",
                metric="triad_gbps",
                unit="GB/s",
                higher_is_better=True,
                n=4,
                estimate=3051.0,
                ci_low=3049.5,
                ci_high=3052.5,
                reference=reference,
                z=0.2441,
                percentile=59.6,
                p_value=0.596,
                p_adjusted=1.0,
                relative_deviation=0.003618,
                verdict="ok",
            ),
            MetricComparison(
                test="soak",
                metric="tflops",
                unit="TFLOP/s",
                higher_is_better=True,
                n=3,
                estimate=51.03,
                ci_low=50.8,
                ci_high=51.3,
                verdict="no_reference",
            ),
        ),
        soak=SoakSummary(
            duration_s=600.0,
            iterations=1200,
            mismatched_iterations=0,
            idle_temperature_c=35.0,
            max_temperature_c=75.0,
            plateau_temperature_c=74.6,
            time_constant_s=48.2,
            mean_power_w=653.0,
            thermal_resistance_c_per_w=0.0607,
            reference_c_per_w=0.061,
            slowdown_margin_c=12.0,
            sm_clock_mean_mhz=1950.0,
            sm_clock_cv=0.0071,
            throttle_share={"software power cap": 0.11, "idle": 0.0},
            throughput_drift_pct=-0.31,
        ),
        findings=findings,
        energy_used_j=412_000.0,
        gpu_busy_share=0.93,
    )


def _record(**changes: object) -> RunRecord:
    base = RunRecord(
        schema_version=SCHEMA_VERSION,
        tool_version="0.1.0",
        run_id="run-20250101-0001",
        started_at="2025-01-01T10:00:00Z",
        finished_at="2025-01-01T10:11:02Z",
        host="bench-03",
        backend="cuda",
        preset="standard",
        identity=_identity(),
        complete=True,
        counters_before=_counters(),
        counters_after=_counters(temperature_c=44.0, energy_j=1_646_567.0),
        prechecks=(
            Precheck("ecc", "ok", "ECC enabled, no uncorrectable errors"),
            Precheck("pcie_link", "ok", "Gen5 x16 as rated"),
        ),
        tests=_tests_healthy(),
        wall_time_s=662.0,
        analysis=_analysis(
            findings=(Finding("soak.power_capped", "info", "soak", "power cap 11% of the soak"),)
        ),
        grade=Grade(
            letter="A",
            disposition="Resale for training clusters",
            reasons=(Reason("all_in_range", "A", "every metric in the healthy range"),),
            policy="default",
            policy_sha256="ab" * 32,
        ),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def healthy_record() -> RunRecord:
    return _record()


MEMORY_ERRORS = tuple(
    MemoryMismatch(
        address=0x7F3A_0000_0000 + 4 * i,
        expected=0xFFFFFFFF,
        actual=0xFFFFFFFB,
        pattern="walking_ones",
    )
    for i in range(report.MAX_LISTED_ERRORS + 6)
)


def failing_record() -> RunRecord:
    memtest = TestResult(
        name="memtest",
        status="failed",
        duration_s=2.5,
        parameters={"coverage": 0.95},
        metrics=(Metric("pass_seconds", "s", (0.22,), higher_is_better=False),),
        verifications=(
            Verification(
                "read back every word",
                False,
                checked=20_000_000_000,
                mismatches=len(MEMORY_ERRORS),
                memory_errors=MEMORY_ERRORS,
            ),
        ),
    )
    fp32 = TestResult(
        name="fp32",
        status="failed",
        duration_s=3.0,
        verifications=(
            Verification(
                "deterministic FMA chain",
                False,
                checked=1024,
                mismatches=1,
                max_relative_error=0.5,
                bound=1e-6,
                wrong_results=(WrongResult("block 17 thread 3", 1.0, 1.5, "SM 12"),),
            ),
        ),
    )
    return _record(
        tests=(memtest, fp32),
        counters_after=_counters(ecc_volatile_uncorrected=3, remapped_rows_pending=True),
        xid_events=(XidEvent(t_s=5.5, code=48, description="double-bit ECC error"),),
        analysis=_analysis(
            findings=(Finding("memtest.errors", "critical", "memtest", "70 words read back wrong"),)
        ),
        grade=Grade(
            letter="F",
            disposition="Recycling and component recovery",
            reasons=(
                Reason("memory_errors", "F", "memory errors found", "70 words", "0"),
                Reason("wrong_results", "F", "FP32 results wrong", "1 of 1024", "0"),
            ),
            policy="default",
            policy_sha256="cd" * 32,
        ),
    )


def interrupted_record() -> RunRecord:
    return _record(
        backend="sim",
        identity=_identity(backend="sim", sim_card="h100-healthy"),
        complete=False,
        interrupted="card lost (Xid 79) during memtest",
        finished_at=None,
        wall_time_s=None,
        counters_after=None,
        tests=(
            _tests_healthy()[0],
            TestResult(name="memtest", status="error", message="GPU has fallen off the bus"),
            TestResult(name="soak", status="not_run"),
        ),
        analysis=None,
        grade=None,
    )


def bare_record() -> RunRecord:
    """The least a journal can hold: identity, no tests, nothing judged."""
    return RunRecord(
        schema_version=SCHEMA_VERSION,
        tool_version="0.1.0",
        run_id="run-bare",
        started_at="2025-01-01T10:00:00Z",
        host="h",
        backend="cuda",
        preset="quick",
        identity=CardIdentity(name="NVIDIA H200", backend="cuda"),
    )


HOSTILE_NOTE = "see [x](javascript:alert(1)) | **bold** `code` <b>&amp;</b>\n# heading"


def hostile_record() -> RunRecord:
    tests = (
        replace(
            _tests_healthy()[0],
            message=HOSTILE_NOTE,
            parameters={"<img src=x onerror=alert(1)>": "</td><script>alert(2)</script>"},
        ),
    )
    return _record(
        identity=_identity(name=HOSTILE_NAME, serial=HOSTILE_SERIAL, vbios="</style>"),
        host="<iframe>",
        tests=tests,
        prechecks=(Precheck("other_processes", "warn", HOSTILE_NOTE),),
        grade=Grade(
            letter="B",
            disposition="Resale with disclosure <u>",
            reasons=(Reason("note|rule", "B", HOSTILE_NOTE, "<1>", "&2"),),
            policy="seller's <policy>",
            policy_sha256="ef" * 32,
        ),
    )


ALL_RECORDS = {
    "healthy": healthy_record,
    "failing": failing_record,
    "interrupted": interrupted_record,
    "bare": bare_record,
    "hostile": hostile_record,
}


@pytest.fixture(params=sorted(ALL_RECORDS))
def any_record(request: pytest.FixtureRequest) -> RunRecord:
    return ALL_RECORDS[request.param]()


# --- content -------------------------------------------------------------------------------------


def test_healthy_certificate_shows_grade_identity_and_numbers() -> None:
    html = report.render(healthy_record(), "html")
    assert '<div class="letter">A</div>' in html
    assert "Resale for training clusters" in html
    for text in (
        "1652223012345",
        "GPU-0f1e2d3c",
        "96.00.74.00.0D",
        "692-2G520-0200-000",
        "00000000:19:00.0",
        "580.65.06",
        "standard",
        "0.1.0",
    ):
        assert text in html
    assert "3051" in html and "3040.0 ± 45.0" in html  # estimate, reference centre ± spread
    assert "+0.36 %" in html  # relative deviation
    assert "fleet-measured" in html
    assert "SIMULATED CARD" not in html
    assert "INCOMPLETE RUN" not in html and "Not judged" not in html
    assert "@media print" in html and "<style>" in html and "<link" not in html


def test_failing_card_lists_memory_errors_in_hex_with_bits() -> None:
    record = failing_record()
    html = report.render(record, "html")
    md = report.render(record, "md")
    assert '<div class="letter">F</div>' in html
    assert "**Grade F**" in md
    assert "Recycling and component recovery" in html
    first = MEMORY_ERRORS[0]
    for text in (report.fmt_hex(first.address), "0xffffffff", "0xfffffffb"):
        assert text in html and text in md
    assert first.bits == (2,)
    assert "<td>2</td>" in html
    # the listing is capped; the rest is pointed to
    assert report.fmt_hex(MEMORY_ERRORS[report.MAX_LISTED_ERRORS].address) not in html
    assert "6 more memory errors" in html and "6 more memory errors" in md
    assert "block 17 thread 3" in html
    assert 'class="changed"' in html  # uncorrectable ECC moved during the run
    assert "double-bit ECC error" in md


def test_interrupted_record_says_incomplete_and_sim() -> None:
    record = interrupted_record()
    html = report.render(record, "html")
    md = report.render(record, "md")
    for text in (html, md):
        assert "INCOMPLETE" in text
        assert "SIMULATED CARD" in text
        assert "not judged" in text.lower()
        assert "card lost (Xid 79) during memtest" in text
        assert "GPU has fallen off the bus" in text
    assert "sim-banner" in html
    assert "Not analysed" in html and "3051" in html  # raw measurements still shown


def test_bare_record_renders() -> None:
    html = report.render(bare_record(), "html")
    md = report.render(bare_record(), "md")
    assert "No test ran." in html and "No test ran." in md
    assert "INCOMPLETE" in html and "INCOMPLETE" in md


def test_markdown_has_tables() -> None:
    md = report.render(healthy_record(), "md")
    assert "| Model | NVIDIA H100 80GB HBM3 |" in md
    assert re.search(r"^\| bandwidth \| triad\\_gbps \| GB/s \| 4 \|", md, re.M)
    # every table row has the column count of its header
    for block in re.findall(r"(?:^\|.*\|\n)+", md, re.M):
        rows = block.strip("\n").split("\n")
        widths = {len(re.split(r"(?<!\\)\|", row)) for row in rows}
        assert len(widths) == 1, block


# --- escaping -------------------------------------------------------------------------------------


def test_hostile_strings_are_escaped_in_html() -> None:
    html = report.render(hostile_record(), "html")
    assert HOSTILE_NAME not in html
    assert "<script>alert" not in html and "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&amp;&lt;&gt;" in html  # the serial
    assert "<iframe>" not in html and "<img" not in html and "<u>" not in html
    # the only script element is the embedded JSON, which browsers do not run
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script type="application/json" id="gpuhealth-run-record">'
    ]
    assert html.count("</style>") == 1


def test_embedded_json_gives_the_record_back() -> None:
    record = hostile_record()
    html = report.render(record, "html")
    block = re.search(r'id="gpuhealth-run-record">\n(.*?)\n</script>', html, re.S)
    assert block is not None
    assert "<" not in block.group(1)
    assert record_from_json(block.group(1)) == record
    assert json.loads(block.group(1)) == json.loads(record_to_json(record))


def test_hostile_strings_are_escaped_in_markdown() -> None:
    md = report.render(hostile_record(), "md")
    assert "<script>" not in md and "<iframe>" not in md and "<img" not in md and "<b>" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert '"&amp;&lt;&gt;' in md
    assert "\\[x\\](javascript:alert(1))" in md
    assert "\\*\\*bold\\*\\*" in md and "\\`code\\`" in md
    assert "&amp;amp;" in md  # an entity in the data stays text
    assert "\n# heading" not in md  # a newline in data cannot start a block
    assert "note\\|rule" in md


def test_md_escape() -> None:
    assert report.md_escape("a_b*c|d<e>&f\ng") == "a\\_b\\*c\\|d&lt;e&gt;&amp;f g"
    assert report.md_escape(Markup("**kept**")) == "**kept**"
    assert isinstance(report.md_escape("x"), Markup)


def test_no_urls_in_html(any_record: RunRecord) -> None:
    html = report.render(any_record, "html")
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html
    assert not re.search(r"<[a-z][^>]*\s(src|href)=", html)  # no element fetches anything


# --- determinism and files ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["html", "md", "json"])
def test_render_is_a_pure_function_of_the_json(any_record: RunRecord, fmt: report.Format) -> None:
    reloaded = record_from_json(record_to_json(any_record))
    first = report.render(any_record, fmt)
    assert report.render(reloaded, fmt) == first
    assert report.render(any_record, fmt) == first


def test_dict_order_does_not_matter() -> None:
    record = healthy_record()
    assert record.analysis is not None and record.analysis.soak is not None
    soak = record.analysis.soak
    flipped_soak = replace(soak, throttle_share=dict(reversed(soak.throttle_share.items())))
    test = record.tests[0]
    flipped_test = replace(test, parameters=dict(reversed(test.parameters.items())))
    flipped = replace(
        record,
        analysis=replace(record.analysis, soak=flipped_soak),
        tests=(flipped_test, *record.tests[1:]),
    )
    assert report.render(flipped, "md") == report.render(record, "md")
    # the HTML embeds the JSON, which keeps insertion order: compare without it
    strip = re.compile(r"<script.*</script>", re.S)
    assert strip.sub("", report.render(flipped, "html")) == strip.sub(
        "", report.render(record, "html")
    )


def test_json_format_is_canonical() -> None:
    record = failing_record()
    assert report.render(record, "json") == record_to_json(record)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown report format"):
        report.render(healthy_record(), "pdf")  # type: ignore[arg-type]


def test_write_reports_writes_exactly_three_files(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "card-0"
    (out.parent).mkdir()
    record = failing_record()
    paths = report.write_reports(record, out)
    assert set(paths) == {"json", "html", "md"}
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md", "run.json"]
    for fmt, path in paths.items():
        assert path.parent == out
        assert path.read_bytes() == report.render(record, fmt).encode()  # type: ignore[arg-type]
    # rewriting replaces in place and still leaves no temp file
    report.write_reports(healthy_record(), out)
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md", "run.json"]
    assert record_from_json(paths["json"].read_text()) == healthy_record()


def test_write_reports_writes_nothing_when_rendering_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(record: RunRecord, fmt: report.Format) -> str:
        if fmt == "md":
            raise RuntimeError("template broke")
        return "x"

    monkeypatch.setattr(report, "render", broken)
    with pytest.raises(RuntimeError):
        report.write_reports(healthy_record(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_environment_is_strict_and_autoescapes_html_only() -> None:
    html_env = report.environment("html")
    assert html_env.undefined is StrictUndefined
    assert callable(html_env.autoescape)
    assert html_env.autoescape("certificate.html.j2") is True
    assert html_env.autoescape("_tests.html.j2") is True
    assert html_env.autoescape("report.md.j2") is False


# --- formatting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "n/a"),
        (0.0, "0"),
        (3051.0, "3051"),
        (3051.25, "3051"),
        (51.03, "51.03"),
        (0.0607, "0.06070"),
        (1.5e-6, "1.500e-06"),
        (2.5e10, "2.500e+10"),
        (-0.31, "-0.3100"),
        (7, "7"),
    ],
)
def test_fmt_num(value: float | None, text: str) -> None:
    assert report.fmt_num(value) == text


def test_small_formatters() -> None:
    assert report.fmt_p(0.5961) == "0.596" and report.fmt_p(1.2e-9) == "1.2e-09"
    assert report.fmt_signed_pct(-0.0312) == "-3.12 %"
    assert report.fmt_duration(662.0) == "11 min 2 s"
    assert report.fmt_reasons(0x4 | 0x40) == "software power cap, hardware thermal slowdown"
    assert report.fmt_reasons(0) == "none"
    assert report.fmt_reasons(0x10000) == "0x10000"
    assert report.fmt_scalar(True) == "true" and report.fmt_scalar(0.1) == "0.1"


# --- charts ---------------------------------------------------------------------------------------


def _polylines(svg: str) -> list[list[str]]:
    root = ET.fromstring(svg)
    assert root.tag == "svg"
    return [p.attrib["points"].split() for p in root.iter("polyline")]


def test_timeline_is_well_formed_and_downsampled() -> None:
    samples = _soak_telemetry(1200)
    svg = charts.timeline_svg(samples, slowdown_c=87.0)
    assert isinstance(svg, Markup)
    lines = _polylines(svg)
    assert [len(points) for points in lines] == [300, 300, 300]
    assert "xmlns" not in svg and "http" not in svg
    assert "slowdown 87 °C" in svg
    root = ET.fromstring(svg)
    labels = [t.text for t in root.iter("text")]
    assert "GPU temperature (°C)" in labels and "Power (W)" in labels
    assert "SM clock (MHz)" in labels


def test_timeline_skips_missing_values_and_keeps_short_series_whole() -> None:
    samples = _soak_telemetry(120)
    svg = charts.timeline_svg(samples)
    temps = sum(1 for s in samples if s.temperature_c is not None)
    powers = sum(1 for s in samples if s.power_w is not None)
    assert [len(p) for p in _polylines(svg)] == [temps, powers, 120]
    assert temps < 120 and powers < 120


def test_timeline_without_data_still_draws() -> None:
    svg = charts.timeline_svg((TelemetrySample(t_s=0.0), TelemetrySample(t_s=1.0)))
    assert _polylines(svg) == []
    assert svg.count("not reported by the driver") == 3
    assert _polylines(charts.timeline_svg(())) == []


def test_timeline_bytes_are_stable() -> None:
    samples = _soak_telemetry(700)
    assert charts.timeline_svg(samples) == charts.timeline_svg(tuple(samples))


def test_downsample_keeps_ends_and_peaks() -> None:
    points = [(float(i), 0.0) for i in range(1000)]
    points[537] = (537.0, 100.0)
    out = charts.downsample(points, 50)
    assert len(out) == 50
    assert out[0] == points[0] and out[-1] == points[-1]
    assert (537.0, 100.0) in out
    assert [p[0] for p in out] == sorted(p[0] for p in out)
    assert charts.downsample(points[:10], 50) == points[:10]
    with pytest.raises(ValueError):
        charts.downsample(points, 2)


def test_nice_ticks() -> None:
    assert charts.nice_ticks(0.0, 10.0, 5) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    ticks = charts.nice_ticks(31.3, 74.9, 4)
    assert ticks[0] <= 31.3 and ticks[-1] >= 74.9
    assert charts.nice_ticks(5.0, 5.0)[0] < 5.0 < charts.nice_ticks(5.0, 5.0)[-1]


def test_metric_chart_with_and_without_reference() -> None:
    comparisons = _analysis().comparisons
    with_ref = charts.metric_svg(comparisons[0])
    root = ET.fromstring(with_ref)
    assert len(list(root.iter("circle"))) == 1
    assert {r.attrib["class"] for r in root.iter("rect")} == {"band", "band2"}
    no_ref = ET.fromstring(charts.metric_svg(comparisons[1]))
    assert list(no_ref.iter("rect")) == []
    assert len(list(no_ref.iter("circle"))) == 1


def test_metric_chart_escapes_its_text() -> None:
    hostile = replace(_analysis().comparisons[0], metric="<b>&", unit='"x"')
    svg = charts.metric_svg(hostile)
    title = ET.fromstring(svg).find("title")
    assert title is not None and title.text is not None
    assert title.text.startswith('<b>&: 3051 "x"')
    assert "<b>" not in svg


def test_certificate_embeds_charts() -> None:
    html = report.render(healthy_record(), "html")
    assert html.count('<svg class="chart metric"') == 2
    assert html.count('<svg class="chart timeline"') == 1
    for svg in re.findall(r"<svg.*?</svg>", html, re.S):
        ET.fromstring(svg)
