"""Inline SVG charts for the reports, as pure functions of the record's numbers.

No plotting library: the bytes must be identical every time a record is rendered, because reports
are re-rendered from stored JSON and signed. Every coordinate is formatted with a fixed number of
decimals, every piece of text is escaped, and the SVG carries no xmlns (inline SVG in HTML needs
none, and the certificate must contain no URLs at all).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from gpuhealth.models import MetricComparison, TelemetrySample

Point = tuple[float, float]

DEFAULT_MAX_POINTS = 300

_VERDICT_COLOURS = {
    "ok": "#1e8449",
    "low": "#b9770e",
    "very_low": "#c0392b",
    "high": "#2471a3",
    "no_reference": "#555555",
}
_FONT = 'font-family="sans-serif" font-size="10"'


# --- numbers -------------------------------------------------------------------------------------


def downsample(points: Sequence[Point], max_points: int = DEFAULT_MAX_POINTS) -> list[Point]:
    """Largest-triangle-three-buckets: at most max_points points that keep peaks and dips.

    A plain stride would drop the one sample where the card hit its thermal limit; LTTB keeps the
    point of each bucket that bends the line most. Integer bucket bounds keep it deterministic.
    """
    n = len(points)
    if n <= max_points:
        return list(points)
    if max_points < 3:
        raise ValueError(f"max_points must be at least 3, got {max_points}")
    buckets = max_points - 2
    out = [points[0]]
    anchor = points[0]
    for i in range(buckets):
        start = i * (n - 2) // buckets + 1
        end = (i + 1) * (n - 2) // buckets + 1
        nxt_end = min((i + 2) * (n - 2) // buckets + 1, n)
        nxt = points[end:nxt_end]
        avg_x = sum(p[0] for p in nxt) / len(nxt)
        avg_y = sum(p[1] for p in nxt) / len(nxt)
        best = max(
            points[start:end],
            key=lambda p: abs(
                (anchor[0] - avg_x) * (p[1] - anchor[1]) - (anchor[0] - p[0]) * (avg_y - anchor[1])
            ),
        )
        out.append(best)
        anchor = best
    out.append(points[-1])
    return out


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 × 10^k) covering [lo, hi]; the first and last enclose the data."""
    lo, hi = _widen(lo, hi)
    step = _nice_step((hi - lo) / max(count, 1))
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [_clean(k * step) for k in range(first, last + 1)]


def tick_label(value: float, ticks: Sequence[float]) -> str:
    """A tick's text with just enough decimals to tell neighbours apart."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    return f"{_clean(value):.{decimals}f}"


def _nice_step(raw: float) -> float:
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 5.0, 10.0):
        if mult * magnitude >= raw * (1 - 1e-9):
            return mult * magnitude
    return 10.0 * magnitude


def _widen(lo: float, hi: float) -> tuple[float, float]:
    """Give a flat series some height, so that a constant line sits mid-panel."""
    if hi > lo:
        return lo, hi
    pad = max(abs(lo) * 0.05, 1.0)
    return lo - pad, hi + pad


def _span(values: Sequence[float], min_span: float) -> tuple[float, float]:
    """The data range, grown about its middle to at least min_span (never below zero by it)."""
    lo, hi = min(values), max(values)
    grow = (min_span - (hi - lo)) / 2
    if grow <= 0:
        return lo, hi
    lo, hi = lo - grow, hi + grow
    if lo < 0 <= min(values):
        lo, hi = 0.0, hi - lo
    return lo, hi


def _clean(value: float) -> float:
    """Round away float noise from k*step and turn -0.0 into 0.0 (it would print as "-0")."""
    rounded = round(value, 9)
    return 0.0 if rounded == 0 else rounded


def _f(value: float) -> str:
    return f"{value:.1f}"


@dataclass(frozen=True)
class _Scale:
    """Maps a data interval onto a pixel interval (pixels may run backwards, as y does)."""

    lo: float
    hi: float
    px_lo: float
    px_hi: float

    def __call__(self, value: float) -> float:
        share = (value - self.lo) / (self.hi - self.lo)
        return self.px_lo + share * (self.px_hi - self.px_lo)


# --- telemetry timeline --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Series:
    title: str
    unit: str
    colour: str
    read: Callable[[TelemetrySample], float | None]
    min_span: float
    """Smallest y range drawn: a steady series must look steady, not like noise blown up."""


_TIMELINE_SERIES = (
    _Series("GPU temperature", "°C", "#c0392b", lambda s: s.temperature_c, 20.0),
    _Series("Power", "W", "#2471a3", lambda s: s.power_w, 100.0),
    _Series("SM clock", "MHz", "#1e8449", lambda s: s.sm_clock_mhz, 200.0),
)

_WIDTH = 720
_LEFT = 58
_RIGHT = 14
_PANEL_H = 92
_PANEL_GAP = 30
_TOP = 20
_BOTTOM = 34


def series_points(
    samples: Sequence[TelemetrySample], read: Callable[[TelemetrySample], float | None]
) -> list[Point]:
    """(t_s, value) for the samples that have a finite value; the rest are skipped, not zeroed."""
    points: list[Point] = []
    for sample in samples:
        value = read(sample)
        if value is not None and math.isfinite(value) and math.isfinite(sample.t_s):
            points.append((sample.t_s, float(value)))
    return points


def timeline_svg(
    samples: Sequence[TelemetrySample],
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    slowdown_c: float | None = None,
) -> Markup:
    """Temperature, power and SM clock against time, one small panel each, sharing the time axis.

    slowdown_c draws the card's slowdown threshold in the temperature panel when the driver gave it.
    """
    times = [s.t_s for s in samples if math.isfinite(s.t_s)]
    t_lo, t_hi = _widen(min(times), max(times)) if times else (0.0, 1.0)
    # time spans the data exactly (the soak starts mid-run); ticks are the round ones inside it
    x_ticks = [t for t in nice_ticks(t_lo, t_hi, 8) if t_lo <= t <= t_hi]
    x = _Scale(t_lo, t_hi, _LEFT, _WIDTH - _RIGHT)
    count = len(_TIMELINE_SERIES)
    height = _TOP + count * _PANEL_H + (count - 1) * _PANEL_GAP + _BOTTOM
    parts = [
        f'<svg class="chart timeline" viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}" '
        f'height="{height}" role="img" {_FONT}>',
        "<title>Soak telemetry: GPU temperature, power and SM clock over time</title>",
    ]
    for index, series in enumerate(_TIMELINE_SERIES):
        top = _TOP + index * (_PANEL_H + _PANEL_GAP)
        extra = slowdown_c if index == 0 else None
        parts.extend(
            _panel(samples, series, x, x_ticks=x_ticks, top=top, max_points=max_points, limit=extra)
        )
    axis_y = _TOP + count * _PANEL_H + (count - 1) * _PANEL_GAP
    parts.append(
        f'<text x="{_f((_LEFT + _WIDTH - _RIGHT) / 2)}" y="{axis_y + 28}" '
        'text-anchor="middle">time since start of run (s)</text>'
    )
    parts.append("</svg>")
    return Markup("\n".join(parts))


def _panel(
    samples: Sequence[TelemetrySample],
    series: _Series,
    x: _Scale,
    *,
    x_ticks: Sequence[float],
    top: float,
    max_points: int,
    limit: float | None,
) -> list[str]:
    points = downsample(series_points(samples, series.read), max_points)
    bottom = top + _PANEL_H
    values = [p[1] for p in points]
    if limit is not None and math.isfinite(limit) and values:
        values.append(limit)
    y_ticks = nice_ticks(*_span(values, series.min_span), 4) if values else [0.0, 1.0]
    y = _Scale(y_ticks[0], y_ticks[-1], bottom, top)
    title = escape(f"{series.title} ({series.unit})")
    out = [
        '<g class="panel">',
        f'<text x="{_LEFT}" y="{_f(top - 6)}" font-weight="bold">{title}</text>',
        f'<rect x="{_LEFT}" y="{_f(top)}" width="{_WIDTH - _LEFT - _RIGHT}" '
        f'height="{_PANEL_H}" fill="none" stroke="#999999" stroke-width="0.5"/>',
    ]
    out.extend(_y_axis(y, y_ticks))
    out.extend(_x_axis(x, x_ticks, top, bottom))
    if limit is not None and math.isfinite(limit) and points:
        out.append(
            f'<line class="limit" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{_f(y(limit))}" '
            f'y2="{_f(y(limit))}" stroke="#c0392b" stroke-dasharray="4 3" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{_WIDTH - _RIGHT - 4}" y="{_f(y(limit) - 3)}" text-anchor="end" '
            f'fill="#c0392b">slowdown {escape(tick_label(limit, [0.0, 1.0]))} °C</text>'
        )
    if points:
        coords = " ".join(f"{_f(x(t))},{_f(y(v))}" for t, v in points)
        out.append(
            f'<polyline class="series" points="{coords}" fill="none" stroke="{series.colour}" '
            'stroke-width="1.2" stroke-linejoin="round"/>'
        )
    else:
        out.append(
            f'<text x="{_f((_LEFT + _WIDTH - _RIGHT) / 2)}" y="{_f((top + bottom) / 2)}" '
            'text-anchor="middle" fill="#777777">not reported by the driver</text>'
        )
    out.append("</g>")
    return out


def _y_axis(y: _Scale, ticks: Sequence[float]) -> list[str]:
    out = []
    for tick in ticks:
        py = _f(y(tick))
        out.append(
            f'<line x1="{_LEFT - 4}" x2="{_WIDTH - _RIGHT}" y1="{py}" y2="{py}" '
            'stroke="#dddddd" stroke-width="0.5"/>'
        )
        out.append(
            f'<text x="{_LEFT - 6}" y="{py}" dy="3" text-anchor="end">'
            f"{escape(tick_label(tick, ticks))}</text>"
        )
    return out


def _x_axis(x: _Scale, ticks: Sequence[float], top: float, bottom: float) -> list[str]:
    out = []
    for tick in ticks:
        px = _f(x(tick))
        out.append(
            f'<line x1="{px}" x2="{px}" y1="{_f(top)}" y2="{_f(bottom + 4)}" '
            'stroke="#eeeeee" stroke-width="0.5"/>'
        )
        out.append(
            f'<text x="{px}" y="{_f(bottom + 14)}" text-anchor="middle">'
            f"{escape(tick_label(tick, ticks))}</text>"
        )
    return out


# --- one metric against its reference ------------------------------------------------------------

_M_WIDTH = 260
_M_HEIGHT = 46
_M_LEFT = 14
_M_RIGHT = 14
_M_MID = 16


def metric_svg(comparison: MetricComparison) -> Markup:
    """The card's estimate and CI (dot and whisker) over the healthy band (centre ± spread).

    The lighter outer band is ± 2 spreads, so that "how far out" reads at a glance. The inner band
    is outlined and the dot ringed in dark ink, so that both still read when printed in grayscale.
    """
    c = comparison
    ref = c.reference
    values = [c.estimate, c.ci_low, c.ci_high]
    if ref is not None:
        values += [ref.center - 2 * ref.spread, ref.center + 2 * ref.spread]
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = _widen(min(finite), max(finite)) if finite else (0.0, 1.0)
    pad = (hi - lo) * 0.06
    lo, hi = lo - pad, hi + pad
    ticks = [t for t in nice_ticks(lo, hi, 4) if lo <= t <= hi]
    x = _Scale(lo, hi, _M_LEFT, _M_WIDTH - _M_RIGHT)
    colour = _VERDICT_COLOURS.get(c.verdict, "#555555")
    parts = [
        f'<svg class="chart metric" viewBox="0 0 {_M_WIDTH} {_M_HEIGHT}" width="{_M_WIDTH}" '
        f'height="{_M_HEIGHT}" role="img" {_FONT}>',
        f"<title>{escape(_metric_title(c))}</title>",
    ]
    if ref is not None and all(math.isfinite(v) for v in (ref.center, ref.spread)):
        parts.extend(_band(x, ref.center, ref.spread))
    parts.append(
        f'<line x1="{_M_LEFT}" x2="{_M_WIDTH - _M_RIGHT}" y1="{_M_MID + 12}" y2="{_M_MID + 12}" '
        'stroke="#999999" stroke-width="0.5"/>'
    )
    for tick in ticks:
        px = _f(x(tick))
        parts.append(
            f'<text x="{px}" y="{_M_MID + 24}" text-anchor="middle" font-size="8">'
            f"{escape(tick_label(tick, ticks))}</text>"
        )
    if all(math.isfinite(v) for v in (c.ci_low, c.ci_high)):
        parts.append(
            f'<line class="ci" x1="{_f(x(c.ci_low))}" x2="{_f(x(c.ci_high))}" y1="{_M_MID}" '
            f'y2="{_M_MID}" stroke="{colour}" stroke-width="2"/>'
        )
    if math.isfinite(c.estimate):
        parts.append(
            f'<circle class="estimate" cx="{_f(x(c.estimate))}" cy="{_M_MID}" r="3.5" '
            f'fill="{colour}" stroke="#1b1f23" stroke-width="0.8"/>'
        )
    parts.append("</svg>")
    return Markup("\n".join(parts))


def _band(x: _Scale, center: float, spread: float) -> list[str]:
    top, height = _M_MID - 9, 18
    outer = (x(center - 2 * spread), x(center + 2 * spread))
    inner = (x(center - spread), x(center + spread))
    return [
        f'<rect class="band2" x="{_f(outer[0])}" y="{top}" width="{_f(outer[1] - outer[0])}" '
        f'height="{height}" fill="#e8f0e8"/>',
        f'<rect class="band" x="{_f(inner[0])}" y="{top}" width="{_f(inner[1] - inner[0])}" '
        f'height="{height}" fill="#c8dfc8" stroke="#4d7f4d" stroke-width="0.5"/>',
        f'<line class="center" x1="{_f(x(center))}" x2="{_f(x(center))}" y1="{top}" '
        f'y2="{top + height}" stroke="#4d7f4d" stroke-width="1"/>',
    ]


def _metric_title(c: MetricComparison) -> str:
    text = f"{c.metric}: {c.estimate:.4g} {c.unit} (CI {c.ci_low:.4g} to {c.ci_high:.4g})"
    if c.reference is not None:
        text += f"; healthy cards {c.reference.center:.4g} ± {c.reference.spread:.4g}"
    return text
