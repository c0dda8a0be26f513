"""The depth curve as a standalone SVG (no plotting library in a worker image)."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def render_svg(curve: Sequence[tuple[float, int, int]], *, title: str = "", deadline_s: float | None = None,
               width: int = 720, height: int = 320) -> str:
    """The depth curve (backlog, and consumers on a second scale) as a standalone SVG document."""
    from xml.sax.saxutils import escape

    pad_l, pad_r, pad_t, pad_b = 60, 60, 30, 40
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    t_max = max([p[0] for p in curve] + [deadline_s or 0, 1e-9])
    b_max = max([p[1] for p in curve] + [1])
    c_max = max([p[2] for p in curve] + [1])

    def x(t: float) -> float:
        return pad_l + w * t / t_max

    def line(values: Callable[[tuple[float, int, int]], float], top: float) -> str:
        return " ".join(f"{x(p[0]):.1f},{pad_t + h - h * values(p) / top:.1f}" for p in curve)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
        f'<text x="{pad_l}" y="18" font-size="13">{escape(title)}</text>',
        f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{line(lambda p: p[1], b_max)}"/>',
        f'<polyline fill="none" stroke="#ff7f0e" stroke-width="1.5" stroke-dasharray="4 2" points="{line(lambda p: p[2], c_max)}"/>',
        f'<text x="{pad_l - 5}" y="{pad_t + 4}" text-anchor="end" fill="#1f77b4">{b_max}</text>',
        f'<text x="{pad_l - 5}" y="{pad_t + h}" text-anchor="end">0</text>',
        f'<text x="{pad_l + w + 5}" y="{pad_t + 4}" fill="#ff7f0e">{c_max}</text>',
        f'<text x="{pad_l}" y="{height - 10}">0 s</text>',
        f'<text x="{pad_l + w}" y="{height - 10}" text-anchor="end">{t_max:.0f} s</text>',
        f'<text x="{pad_l + w / 2}" y="{height - 10}" text-anchor="middle">backlog (solid) / consumers (dashed)</text>',
    ]
    if deadline_s is not None:
        parts.append(f'<line x1="{x(deadline_s):.1f}" y1="{pad_t}" x2="{x(deadline_s):.1f}" y2="{pad_t + h}" stroke="#d62728"/>')
        parts.append(f'<text x="{x(deadline_s):.1f}" y="{pad_t - 4}" fill="#d62728" text-anchor="middle">deadline</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
