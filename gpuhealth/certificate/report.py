"""Render a run record as a certificate (HTML), a listing (Markdown) or its canonical JSON.

Output is a pure function of the record: no clock, no random ids, floats through fixed formatters,
dicts in sorted order. A report re-rendered from the stored run.json is byte-for-byte the one that
was written (and signed) when the card was graded.

Names, serials, notes and messages come from outside (the driver, a sim spec, a seller), so the HTML
environment autoescapes and the Markdown environment escapes every plain string it prints.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from gpuhealth import __version__
from gpuhealth.atomicfile import write_atomic
from gpuhealth.certificate import charts
from gpuhealth.certificate.signing import record_sha256
from gpuhealth.judge import composite, readiness, shipped
from gpuhealth.models import (
    CardIdentity,
    Grade,
    HealthCounters,
    MemoryMismatch,
    Metric,
    MetricComparison,
    RunRecord,
    Scalar,
    SoakSummary,
    TestResult,
    record_from_json,
    record_to_json,
)
from gpuhealth.pcieerrors import PcieErrorClass, names_of
from gpuhealth.resources import reports_dir
from gpuhealth.throttle import CLOCKS_EVENT_REASONS, reason_names

Format = Literal["html", "md", "json"]
REPORT_FILES: Mapping[Format, str] = {"json": "run.json", "html": "report.html", "md": "report.md"}
TEMPLATES: Mapping[str, str] = {"html": "certificate.html.j2", "md": "report.md.j2"}
NA = "n/a"
SOAK_TEST = "soak"
_KNOWN_REASON_BITS = sum(CLOCKS_EVENT_REASONS)  # distinct single bits: the sum is their OR
MAX_LISTED_ERRORS = 64
"""Memory errors and wrong results listed per verification; the rest stay in run.json."""


# --- formatting filters: the only way numbers reach a template ----------------------------------


def fmt_num(value: float | None, sig: int = 4) -> str:
    """Significant digits without exponent for everyday magnitudes; n/a for None."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 9 or magnitude < -4:
        return f"{value:.{max(sig - 1, 0)}e}"
    return f"{value:.{max(sig - 1 - magnitude, 0)}f}"


def fmt_unit(value: float | None, unit: str, sig: int = 4) -> str:
    return NA if value is None else f"{fmt_num(value, sig)} {unit}"


def fmt_pct(share: float | None, decimals: int = 1) -> str:
    """A share in 0..1 as a percentage."""
    return NA if share is None else f"{share * 100:.{decimals}f} %"


def fmt_signed_pct(fraction: float | None, decimals: int = 2) -> str:
    """A relative deviation (fraction) with its sign, so that a deficit reads as one."""
    return NA if fraction is None else f"{fraction * 100:+.{decimals}f} %"


def fmt_p(p: float | None) -> str:
    if p is None:
        return NA
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def fmt_hex(value: int | None, width: int = 0) -> str:
    return NA if value is None else f"0x{value:0{width}x}"


def fmt_bits(mismatch: MemoryMismatch) -> str:
    return ", ".join(str(b) for b in mismatch.bits) or "none"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return NA
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:.0f} s"


def fmt_bytes(count: int | None) -> str:
    return NA if count is None else f"{count / 2**30:.1f} GiB"


def fmt_yesno(flag: bool | None) -> str:
    return NA if flag is None else ("yes" if flag else "no")


def fmt_scalar(value: Scalar | None) -> str:
    """A test parameter as written in run.json (repr gives the shortest round-trip float)."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def fmt_reasons(mask: int | None) -> str:
    if mask is None:
        return NA
    names = reason_names(mask)
    unknown = mask & ~_KNOWN_REASON_BITS
    if unknown:
        names.append(fmt_hex(unknown))
    return ", ".join(names) or "none"


def sorted_items(mapping: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Dict entries by key: the order must not depend on how the dict was built."""
    return sorted(mapping.items(), key=lambda kv: kv[0])


_MD_SPECIALS = {c: "\\" + c for c in "\\`*_[]|~#"}
_MD_SPECIALS.update({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": " ", "\n": " "})


def md_escape(value: object) -> Markup:
    """Text from outside made inert in Markdown: no emphasis, links, HTML or broken table cells.

    Values are printed mid-line (a table cell, after a label), so only inline syntax matters;
    newlines become spaces so that a value cannot start a block of its own.
    """
    if isinstance(value, Markup):
        return value
    return Markup("".join(_MD_SPECIALS.get(c, c) for c in str(value)))


# --- view rows: fixed order, already formatted --------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    value: str


@dataclass(frozen=True)
class CounterRow:
    label: str
    before: str
    after: str
    changed: bool
    """True when a health counter (not a reading such as temperature) moved during the run."""


@dataclass(frozen=True)
class MetricStats:
    name: str
    unit: str
    n: int
    median: float | None
    low: float | None
    high: float | None
    higher_is_better: bool


def identity_rows(card: CardIdentity) -> list[Row]:
    pcie = NA
    if card.pcie_gen_max is not None or card.pcie_width_max is not None:
        pcie = f"Gen{fmt_num(card.pcie_gen_max)} x{fmt_num(card.pcie_width_max)}"
    rows = [
        Row("Model", card.name),
        Row("Serial number", card.serial or NA),
        Row("UUID", card.uuid or NA),
        Row("VBIOS", card.vbios or NA),
        Row("InfoROM", card.inforom or NA),
        Row("Board part number", card.board_part_number or NA),
        Row("PCI bus ID", card.pci_bus_id or NA),
        Row("Driver", card.driver_version or NA),
        Row("CUDA driver", card.cuda_driver_version or NA),
        Row("Memory", fmt_bytes(card.memory_total_bytes)),
        Row("SMs", fmt_num(card.sm_count)),
        Row("Compute capability", card.compute_capability or NA),
        Row("Memory bus width", fmt_unit(card.memory_bus_width_bits, "bit")),
        Row("Max SM clock", fmt_unit(card.max_sm_clock_mhz, "MHz")),
        Row("Max memory clock", fmt_unit(card.max_memory_clock_mhz, "MHz")),
        Row("PCIe link (max)", pcie),
        Row("Default power limit", fmt_unit(card.power_limit_default_w, "W")),
        Row("GPU index", str(card.index)),
    ]
    # Read since 0.2.0, and shown in the rows that were there (the certificate's first page has
    # no room for more): an older record's page renders as it did.
    if card.pci_device_id is not None or card.pci_subsystem_id is not None:
        ids = (
            f"{card.pci_bus_id or NA} · {card.pci_device_id or NA} · {card.pci_subsystem_id or NA}"
        )
        rows[6] = Row("PCI bus · device · subsystem ID", ids)
    if card.power_limit_max_w is not None:
        limits = (
            f"{fmt_unit(card.power_limit_default_w, 'W')} / {fmt_unit(card.power_limit_max_w, 'W')}"
        )
        rows[-2] = Row("Power limit, default / max", limits)
    if card.sim_card is not None:
        rows.append(Row("Simulated card spec", card.sim_card))
    return rows


def _link(c: HealthCounters) -> str | None:
    if c.pcie_gen_current is None and c.pcie_width_current is None:
        return None
    return f"Gen{fmt_num(c.pcie_gen_current)} x{fmt_num(c.pcie_width_current)}"


def _histogram(c: HealthCounters) -> str | None:
    h = c.row_remap_histogram
    if h is None:
        return None
    return f"max {h.max} / high {h.high} / partial {h.partial} / low {h.low} / none {h.none}"


# label, how to read and format it, whether a change during the run is a health event
_COUNTERS: tuple[tuple[str, Callable[[HealthCounters], str], bool], ...] = (
    ("ECC enabled", lambda c: fmt_yesno(c.ecc_enabled), True),
    ("ECC volatile corrected", lambda c: fmt_num(c.ecc_volatile_corrected), True),
    ("ECC volatile uncorrected", lambda c: fmt_num(c.ecc_volatile_uncorrected), True),
    ("ECC aggregate corrected", lambda c: fmt_num(c.ecc_aggregate_corrected), True),
    ("ECC aggregate uncorrected", lambda c: fmt_num(c.ecc_aggregate_uncorrected), True),
    ("Remapped rows (correctable)", lambda c: fmt_num(c.remapped_rows_correctable), True),
    ("Remapped rows (uncorrectable)", lambda c: fmt_num(c.remapped_rows_uncorrectable), True),
    ("Row remap pending", lambda c: fmt_yesno(c.remapped_rows_pending), True),
    ("Row remap failure", lambda c: fmt_yesno(c.remapped_rows_failure), True),
    ("Row remap banks (spare rows)", lambda c: _histogram(c) or NA, True),
    ("PCIe link (current)", lambda c: _link(c) or NA, True),
    ("PCIe replay count", lambda c: fmt_num(c.pcie_replay_count), True),
    ("Power limit", lambda c: fmt_unit(c.power_limit_w, "W"), True),
    ("GPU temperature", lambda c: fmt_unit(c.temperature_c, "°C", 3), False),
    ("Slowdown threshold", lambda c: fmt_unit(c.temperature_slowdown_c, "°C", 3), False),
    ("Shutdown threshold", lambda c: fmt_unit(c.temperature_shutdown_c, "°C", 3), False),
    ("Memory temperature (max)", lambda c: fmt_unit(c.memory_temperature_max_c, "°C", 3), False),
    ("Energy counter", lambda c: fmt_unit(c.energy_j, "J", 6), False),
    ("Clocks event reasons", lambda c: fmt_reasons(c.clocks_event_reasons), False),
)


def _nvlink_links(c: HealthCounters) -> str:
    if c.nvlink_status == "unreadable":
        return "not readable"
    if c.nvlink_status != "read":
        return "none"
    active = sum(1 for link in c.nvlink or () if link.active)
    speed = f", {c.nvlink_speed_mbps / 1000:.2f} GB/s each" if c.nvlink_speed_mbps else ""
    return f"{active} of {len(c.nvlink or ())} active{speed}"


def _nvlink_errors(c: HealthCounters) -> str:
    if c.nvlink_status != "read":
        return NA

    def total(name: str) -> str:
        counts = [getattr(link, name) for link in c.nvlink or ()]
        return NA if any(n is None for n in counts) else str(sum(counts))

    names = ("replay_errors", "recovery_errors", "crc_flit_errors", "crc_data_errors")
    return " / ".join(total(name) for name in names)


# Issue 14: shown only for cards whose NVLink was read (or failed to read), so that the reports of
# records without NVLink keep their bytes.
_NVLINK_COUNTERS: tuple[tuple[str, Callable[[HealthCounters], str], bool], ...] = (
    ("NVLink links", _nvlink_links, True),
    ("NVLink errors (replay / recovery / flit CRC / data CRC)", _nvlink_errors, True),
)


def _pcie_errors(kind: PcieErrorClass) -> Callable[[HealthCounters], str]:
    """The sum of a class's PCIe error counters, saying how many of them NVML gave."""

    def read(c: HealthCounters) -> str:
        counts = [(c.pcie_errors or {}).get(name) for name in names_of(kind)]
        known = [n for n in counts if n is not None]
        if not known:
            return "not supported" if c.pcie_errors_status == "not_supported" else "not readable"
        of = f" ({len(known)} of {len(counts)} counters)" if len(known) < len(counts) else ""
        return f"{sum(known)}{of}"

    return read


# Issue 14: shown only for records that read the PCIe error counters (older reports keep their
# bytes); each class's counters summed, the findings name each one that rose.
_PCIE_ERROR_ROWS: tuple[tuple[str, Callable[[HealthCounters], str], bool], ...] = (
    ("PCIe errors, uncorrectable (fatal, non-fatal)", _pcie_errors("uncorrectable"), True),
    ("PCIe errors, correctable class", _pcie_errors("correctable"), True),
)


def counter_rows(before: HealthCounters | None, after: HealthCounters | None) -> list[CounterRow]:
    rows = []
    table = _COUNTERS
    if any(c is not None and c.nvlink_status in ("read", "unreadable") for c in (before, after)):
        table = _COUNTERS + _NVLINK_COUNTERS
    if any(c is not None and c.pcie_errors_status is not None for c in (before, after)):
        table = table + _PCIE_ERROR_ROWS
    for label, read, watched in table:
        b = read(before) if before is not None else NA
        a = read(after) if after is not None else NA
        moved = before is not None and after is not None and a != b
        rows.append(CounterRow(label, b, a, watched and moved))
    return rows


def soak_rows(soak: SoakSummary) -> list[Row]:
    fitted = soak.thermal_fit_rms_c is not None  # the whole-run fit's numbers (newer records)
    rows = [
        Row("Duration", fmt_duration(soak.duration_s)),
        Row(
            "Iterations (with mismatched results)",
            f"{soak.iterations} ({soak.mismatched_iterations})",
        ),
        Row("Idle temperature", fmt_unit(soak.idle_temperature_c, "°C", 3)),
        Row("Maximum temperature", fmt_unit(soak.max_temperature_c, "°C", 3)),
        Row("Plateau temperature (fit)", fmt_unit(soak.plateau_temperature_c, "°C", 3)),
        Row("Thermal time constant", fmt_unit(soak.time_constant_s, "s")),
        Row("Mean power under GEMMs", fmt_unit(soak.mean_power_w, "W")),
        Row("Thermal resistance", _thermal_resistance(soak)),
        Row("Thermal resistance, healthy cards", fmt_unit(soak.reference_c_per_w, "°C/W", 3)),
        *(
            [Row("Thermal reference", soak.thermal_reference)]
            if soak.thermal_reference is not None
            else []
        ),
        *(
            [Row("Thermal resistance ÷ reference, at least", f"{soak.thermal_ratio_low:.2f}×")]
            if soak.thermal_ratio_low is not None
            else []
        ),
        *(
            [
                Row(
                    "Thermal fit: slow time constant",
                    fmt_unit(soak.thermal_fit_time_constant_s, "s"),
                ),
                Row("Thermal fit: residual (RMS)", fmt_unit(soak.thermal_fit_rms_c, "°C", 2)),
            ]
            if fitted
            else []
        ),
        Row("Maximum memory temperature", fmt_unit(soak.max_memory_temperature_c, "°C", 3)),
        *(
            [
                Row(
                    "Memory temperature headroom",
                    fmt_unit(soak.memory_temperature_headroom_c, "°C", 3),
                )
            ]
            if soak.memory_temperature_headroom_c is not None
            else []
        ),
        Row("Margin to slowdown", fmt_unit(soak.slowdown_margin_c, "°C", 3)),
        Row("Mean SM clock", fmt_unit(soak.sm_clock_mean_mhz, "MHz")),
        Row("SM clock variation (CV)", fmt_pct(soak.sm_clock_cv, 2)),
        Row(
            "Throughput drift",
            NA if soak.throughput_drift_pct is None else f"{soak.throughput_drift_pct:+.2f} %",
        ),
    ]
    rows += [Row(f"Time throttled: {k}", fmt_pct(v)) for k, v in sorted_items(soak.throttle_share)]
    if soak.stopped_early is not None:
        rows.append(Row("Stopped early", soak.stopped_early))
    return rows


def _thermal_resistance(soak: SoakSummary) -> str:
    """The measured value with its 95 % range, or why it was not measured."""
    value = soak.thermal_resistance_c_per_w
    low, high = soak.thermal_resistance_low_c_per_w, soak.thermal_resistance_high_c_per_w
    if value is None:
        refusal = soak.thermal_resistance_refusal
        return NA if refusal is None else f"not measured: {refusal}"
    if low is None or high is None:
        return fmt_unit(value, "°C/W", 3)  # a record from before the whole-run fit
    return f"{fmt_unit(value, '°C/W', 3)} (95 % range {fmt_num(low, 3)}–{fmt_num(high, 3)})"


def metric_stats(metric: Metric) -> MetricStats:
    values = [v for v in metric.values if math.isfinite(v)]
    return MetricStats(
        name=metric.name,
        unit=metric.unit,
        n=len(metric.values),
        median=statistics.median(values) if values else None,
        low=min(values) if values else None,
        high=max(values) if values else None,
        higher_is_better=metric.higher_is_better,
    )


@dataclass(frozen=True)
class PolicyView:
    name: str
    version: str | None
    sha256: str


def policy_view(grade: Grade | None) -> PolicyView | None:
    """The grading policy as the grade names it: "name vVERSION" split back into its parts."""
    if grade is None:
        return None
    name, sep, version = grade.policy.rpartition(" v")
    if not sep or not name or not version:
        return PolicyView(grade.policy, None, grade.policy_sha256)
    return PolicyView(name, version, grade.policy_sha256)


@dataclass(frozen=True)
class SignatureView:
    algorithm: str
    key_fingerprint: str
    public_key: str
    value: str
    signed_at: str


_ALGORITHM_NAMES = {"ed25519": "Ed25519"}


def signature_view(record: RunRecord) -> SignatureView | None:
    """What the record says about its signature (None: not signed). Shown, never checked here:
    checking is `gpuhealth verify`'s job, and a certificate can claim anything."""
    signature = getattr(record, "signature", None)
    if signature is None:
        return None

    def text(name: str) -> str:
        value = getattr(signature, name, None)
        return NA if value is None or value == "" else str(value)

    algorithm = text("algorithm")
    return SignatureView(
        algorithm=_ALGORITHM_NAMES.get(algorithm.lower(), algorithm),
        key_fingerprint=text("key_fingerprint"),
        public_key=text("public_key"),
        value=text("value"),
        signed_at=text("signed_at"),
    )


def rules_banner(record: RunRecord) -> str | None:
    """The banner of a record judged under rules other than its gpuhealth version's shipped
    ones for the card: both grades, said first (verify says the same)."""
    rules, certified = record.rules, record.grade
    if rules is None or rules.shipped_grade is None or certified is None:
        return None
    used = shipped.describe_rules(rules.policy, rules.profile)
    return shipped.rules_banner(certified, used, rules.judged_by, rules.shipped_grade)


def reference_sources(comparisons: Sequence[MetricComparison]) -> list[str]:
    """Distinct reference sources in order of first use: printed once as numbered notes."""
    sources: list[str] = []
    for c in comparisons:
        if c.reference is not None and c.reference.source not in sources:
            sources.append(c.reference.source)
    return sources


# --- environments and rendering -----------------------------------------------------------------

_FILTERS: dict[str, Callable[..., Any]] = {
    "num": fmt_num,
    "unit": fmt_unit,
    "pct": fmt_pct,
    "spct": fmt_signed_pct,
    "pval": fmt_p,
    "hex": fmt_hex,
    "bits": fmt_bits,
    "duration": fmt_duration,
    "bytes": fmt_bytes,
    "yesno": fmt_yesno,
    "scalar": fmt_scalar,
    "reasons": fmt_reasons,
    "sorted_items": sorted_items,
}

_GLOBALS: dict[str, Any] = {
    "identity_rows": identity_rows,
    "counter_rows": counter_rows,
    "soak_rows": soak_rows,
    "metric_stats": metric_stats,
    "reference_sources": reference_sources,
    "subsystem_title": lambda name: composite.TITLES.get(name, name),
    "metric_chart": charts.metric_svg,
    "timeline_chart": charts.timeline_svg,
    "max_listed": MAX_LISTED_ERRORS,
    "chart_points": charts.DEFAULT_MAX_POINTS,
    "na": NA,
    "readiness_verdict": readiness.verdict,
    "readiness_shown": readiness.shown_items,
}


def _html_finalize(value: object) -> object:
    return NA if value is None else value


def _md_finalize(value: object) -> object:
    # every {{ }} in a Markdown template passes here: the Markdown twin of autoescape
    return md_escape(NA if value is None else value)


@cache
def environment(kind: Literal["html", "md"], folder: Path | None = None) -> Environment:
    """The Jinja2 environment for one output kind (cached; templates compile once)."""
    env = Environment(
        loader=FileSystemLoader(folder or reports_dir(), encoding="utf-8"),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_html_finalize if kind == "html" else _md_finalize,
    )
    env.filters.update(_FILTERS)
    env.globals.update(_GLOBALS)
    if kind == "md":
        env.filters["md"] = md_escape
    return env


def _css(folder: Path) -> Markup:
    css = (folder / "certificate.css").read_text(encoding="utf-8")
    if "</" in css:  # would end the <style> element early
        raise ValueError(f"{folder / 'certificate.css'}: must not contain '</'")
    return Markup(css)


def _embedded_json(record: RunRecord) -> Markup:
    """The canonical JSON, safe inside <script type="application/json">.

    < > & only occur inside JSON strings, where their \\u escapes decode to the same text, so a
    verifier that json-loads this block gets the record back unchanged.
    """
    text = record_to_json(record).rstrip("\n")
    for char, code in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, code)
    return Markup(text)


def _context(record: RunRecord) -> dict[str, Any]:
    soak_test: TestResult | None = record.test(SOAK_TEST)
    slowdown = record.counters_before.temperature_slowdown_c if record.counters_before else None
    return {
        "record": record,
        "card": record.identity,
        "analysis": record.analysis,
        "grade": record.grade,
        "simulated": record.backend == "sim" or record.identity.backend == "sim",
        "soak_test": soak_test,
        "slowdown_c": slowdown,
        "policy": policy_view(record.grade),
        "signature": signature_view(record),
        "rules": record.rules,
        "rules_banner": rules_banner(record),
        "record_sha256": record_sha256(record),
        # the page names the gpuhealth that rendered it: another version renders another page
        "renderer_version": __version__,
    }


def render(record: RunRecord, fmt: Format) -> str:
    """The report in one format; the same record always gives the same bytes."""
    if fmt == "json":
        return record_to_json(record)
    if fmt not in TEMPLATES:
        raise ValueError(f"unknown report format {fmt!r}; expected html, md or json")
    folder = reports_dir()
    context = _context(record)
    if fmt == "html":
        context["css"] = _css(folder)
        context["record_json"] = _embedded_json(record)
    return environment(fmt, folder).get_template(TEMPLATES[fmt]).render(context)


def write_reports(record: RunRecord, out_dir: Path) -> dict[str, Path]:
    """Write run.json, report.html and report.md into out_dir, each replaced atomically.

    Everything is rendered before anything is written, so a template error leaves the folder as it
    was; each file appears whole or not at all. The reports are rendered from the record as
    run.json stores it (an int where a float is declared reads back as a float), so that
    `gpuhealth report run.json` reproduces them byte for byte.
    """
    record = record_from_json(record_to_json(record), "run record")
    texts = {fmt: render(record, fmt) for fmt in REPORT_FILES}
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fmt, name in REPORT_FILES.items():
        path = out_dir / name
        write_atomic(path, texts[fmt].encode("utf-8"))
        written[fmt] = path
    return written
