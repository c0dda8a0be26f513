"""Server-rendered SVG charts for the Batch views: pure functions from numbers to markup.

No JavaScript and nothing fetched: the views' Content-Security-Policy allows neither (Airflow's iframe
sandbox *does* allow scripts, so the CSP is what forbids them; :mod:`batchq.airflow.views.headers`), and
an SVG string renders anywhere. Every text that reaches the markup is escaped here. Each data point is
an element carrying ``data-series``, ``data-x`` and ``data-y`` (plus a ``<title>`` tooltip), so a test —
or a curious operator — can read the chart back.

(This module imports nothing from Airflow; it lives beside the views that use it.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: One colour per series, in order (colour-blind-safe Okabe-Ito picks).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 56, 16, 28, 36


@dataclass(frozen=True)
class Line:
    """One series of a line chart: ``points`` are ``(x, y)`` pairs in data units. ``right``: on the
    chart's second y axis (its own scale, ticks on the right), for a figure of another unit."""

    name: str
    points: Sequence[tuple[float, float]]
    color: str | None = None
    right: bool = False


def nice_max(value: float) -> float:
    """The smallest 1/2/5 × 10^k at or above ``value`` (a readable axis top); 1 for empty data."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * exp + 1e-9:
            return float(step * exp)
    return float(10 * exp)  # pragma: no cover - the loop always returns


def format_number(value: float) -> str:
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def format_duration(seconds: float | None) -> str:
    """``95`` → ``1m 35s``; ``None`` → ``–``."""
    if seconds is None:
        return "–"
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


def _frame(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(title)}" class="chart">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _y_axis(body: list[str], y_top: float, plot_h: float, width: int, y_label: str) -> None:
    for i in range(5):
        v = y_top * i / 4
        y = _PAD_T + plot_h - plot_h * i / 4
        body.append(f'<line x1="{_PAD_L}" x2="{width - _PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        body.append(f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{escape(format_number(v))}</text>')
    # Rotated beside the ticks, so a legend of any width never overlaps it.
    cy = _PAD_T + plot_h / 2
    body.append(f'<text x="12" y="{cy:.1f}" transform="rotate(-90 12 {cy:.1f})" text-anchor="middle" class="axis-label">{escape(y_label)}</text>')


def _legend(body: list[str], names: Sequence[tuple[str, str]], width: int) -> None:
    x = width - _PAD_R
    for name, color in reversed(names):
        text_w = 7 * len(name) + 18
        x -= text_w
        body.append(f'<rect x="{x}" y="{_PAD_T - 22}" width="10" height="10" fill="{color}" rx="2"/>')
        body.append(f'<text x="{x + 14}" y="{_PAD_T - 13}" class="legend">{escape(name)}</text>')


def line_chart(
    lines: Sequence[Line],
    *,
    title: str,
    y_label: str = "",
    x_is_time: bool = True,
    width: int = 760,
    height: int = 260,
    y2_label: str = "",
) -> str:
    """A line chart of ``lines`` sharing one y axis from 0 (lines marked ``right`` share a second one,
    labelled ``y2_label``); x is seconds since the first point when ``x_is_time`` (labelled as
    durations). Each point is a ``<circle class="pt">``."""
    drawn = [ln for ln in lines if ln.points]
    body: list[str] = []
    pad_r = _PAD_R + (40 if any(ln.right for ln in drawn) else 0)
    plot_w, plot_h = width - _PAD_L - pad_r, height - _PAD_T - _PAD_B
    xs = [x for ln in drawn for x, _ in ln.points]
    ys = [y for ln in drawn if not ln.right for _, y in ln.points]
    ys2 = [y for ln in drawn if ln.right for _, y in ln.points]
    x0 = min(xs) if xs else 0.0
    x_span = (max(xs) - x0) if xs else 1.0
    x_span = x_span or 1.0
    y_top = nice_max(max(ys) if ys else 0.0)
    y2_top = nice_max(max(ys2) if ys2 else 0.0)
    _y_axis(body, y_top, plot_h, width - pad_r + _PAD_R, y_label)
    if ys2:
        for i in range(5):
            y = _PAD_T + plot_h - plot_h * i / 4
            body.append(f'<text x="{width - pad_r + 6}" y="{y + 4:.1f}" text-anchor="start" class="tick">{escape(format_number(y2_top * i / 4))}</text>')
        cy = _PAD_T + plot_h / 2
        body.append(f'<text x="{width - 8}" y="{cy:.1f}" transform="rotate(90 {width - 8} {cy:.1f})" text-anchor="middle" class="axis-label">{escape(y2_label)}</text>')

    def sx(x: float) -> float:
        return _PAD_L + (x - x0) / x_span * plot_w

    def sy(y: float, right: bool = False) -> float:
        return _PAD_T + plot_h - (y / (y2_top if right else y_top)) * plot_h

    for i in range(5):
        xv = x_span * i / 4
        label = format_duration(xv) if x_is_time else format_number(x0 + xv)
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"  # keep the end labels inside the frame
        body.append(
            f'<text x="{_PAD_L + plot_w * i / 4:.1f}" y="{height - _PAD_B + 16}" text-anchor="{anchor}" class="tick">{escape(label)}</text>'
        )
    if not drawn:
        body.append(f'<text x="{_PAD_L + plot_w / 2}" y="{_PAD_T + plot_h / 2}" text-anchor="middle" class="empty">no samples</text>')
    colors = []
    for n, ln in enumerate(drawn):
        color = ln.color or PALETTE[n % len(PALETTE)]
        colors.append((ln.name, color))
        path = " ".join(f"{sx(x):.1f},{sy(y, ln.right):.1f}" for x, y in ln.points)
        dash = ' stroke-dasharray="6 3"' if ln.right else ""
        body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash} data-series="{escape(ln.name)}"/>')
        for x, y in ln.points:
            label = f"{ln.name}: {format_number(y)} at +{format_duration(x - x0)}" if x_is_time else f"{ln.name}: {format_number(y)}"
            body.append(
                f'<circle class="pt" cx="{sx(x):.1f}" cy="{sy(y, ln.right):.1f}" r="2.5" fill="{color}" '
                f'data-series="{escape(ln.name)}" data-x="{x:g}" data-y="{y:g}"><title>{escape(label)}</title></circle>'
            )
    _legend(body, colors, width)
    return _frame(width, height, title, body)


def bar_chart(
    bars: Sequence[tuple[str, float | None]],
    *,
    title: str,
    y_label: str = "",
    color: str = PALETTE[0],
    width: int = 760,
    height: int = 220,
    format_value=format_number,
) -> str:
    """Vertical bars, one per ``(label, value)`` in order; ``None`` values leave a gap marked ``–``."""
    body: list[str] = []
    plot_w, plot_h = width - _PAD_L - _PAD_R, height - _PAD_T - _PAD_B
    values = [v for _, v in bars if v is not None]
    y_top = nice_max(max(values) if values else 0.0)
    _y_axis(body, y_top, plot_h, width, y_label)
    slot = plot_w / max(1, len(bars))
    bar_w = max(2.0, min(40.0, slot * 0.7))
    for i, (label, value) in enumerate(bars):
        cx = _PAD_L + slot * (i + 0.5)
        if value is None:
            body.append(f'<text x="{cx:.1f}" y="{_PAD_T + plot_h - 4}" text-anchor="middle" class="tick">–</text>')
        else:
            h = plot_h * value / y_top
            body.append(
                f'<rect class="bar" x="{cx - bar_w / 2:.1f}" y="{_PAD_T + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{color}" rx="2" data-x="{escape(label)}" data-y="{value:g}"><title>{escape(label)}: {escape(format_value(value))}</title></rect>'
            )
        if len(bars) <= 16 or i % max(1, len(bars) // 8) == 0:
            body.append(f'<text x="{cx:.1f}" y="{height - _PAD_B + 16}" text-anchor="middle" class="tick">{escape(label[-12:])}</text>')
    if not bars:
        body.append(f'<text x="{_PAD_L + plot_w / 2}" y="{_PAD_T + plot_h / 2}" text-anchor="middle" class="empty">no runs</text>')
    return _frame(width, height, title, body)


def gauge(parts: Sequence[tuple[str, int]], *, title: str, scale: int | None = None, width: int = 360, height: int = 22) -> str:
    """A horizontal stacked bar of queue counts (e.g. visible / in flight / delayed) against ``scale``
    (default: their sum); an empty queue draws an empty track."""
    total = sum(v for _, v in parts)
    top = max(scale or 0, total, 1)
    body = [f'<rect x="0" y="0" width="{width}" height="{height}" rx="4" class="track"/>']
    x = 0.0
    for n, (name, value) in enumerate(parts):
        if value <= 0:
            continue
        w = width * value / top
        body.append(
            f'<rect class="seg" x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{PALETTE[n % len(PALETTE)]}" '
            f'data-series="{escape(name)}" data-y="{value}"><title>{escape(name)}: {value:,}</title></rect>'
        )
        x += w
    return _frame(width, height, title, body)
