"""A line chart as a PNG, in pure Python (zlib + struct): the demo's drain curve without matplotlib.

Deliberately small: a white canvas, axes with a few labelled ticks, one polyline per series, a legend,
text in a built-in 5x7 bitmap font (upper case; lower case is drawn as upper case). Enough for a README
image; anything fancier belongs in Grafana.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Sequence

# 5x7 glyphs, one string per row, '#' = ink.
_FONT_ROWS = {
    "0": ".###.#...##..###.#.###..##...#.###.", "1": "..#...##....#....#....#....#...###.",
    "2": ".###.#...#....#...#...#...#...#####", "3": "#####...#...#.....#.....##...#.###.",
    "4": "...#...##..#.#.#..#.#####...#....#.", "5": "######....####.....#....##...#.###.",
    "6": "..##..#...#....####.#...##...#.###.", "7": "#####....#...#...#...#....#....#...",
    "8": ".###.#...##...#.###.#...##...#.###.", "9": ".###.#...##...#.####....#...#..##..",
    "A": ".###.#...##...#######...##...##...#", "B": "####.#...##...#####.#...##...#####.",
    "C": ".###.#...##....#....#....#...#.###.", "D": "###..#..#.#...##...##...##..#.###..",
    "E": "######....#....####.#....#....#####", "F": "######....#....####.#....#....#....",
    "G": ".###.#...##....#.####...##...#.####", "H": "#...##...##...#######...##...##...#",
    "I": ".###...#....#....#....#....#...###.", "J": "..###...#....#....#....#.#..#..##..",
    "K": "#...##..#.#.#..##...#.#..#..#.#...#", "L": "#....#....#....#....#....#....#####",
    "M": "#...###.###.#.##...##...##...##...#", "N": "#...###..##.#.##..###...##...##...#",
    "O": ".###.#...##...##...##...##...#.###.", "P": "####.#...##...#####.#....#....#....",
    "Q": ".###.#...##...##...##.#.##..#..##.#", "R": "####.#...##...#####.#.#..#..#.#...#",
    "S": ".####.....#.....###.....#....#####.", "T": "#####..#....#....#....#....#....#..",
    "U": "#...##...##...##...##...##...#.###.", "V": "#...##...##...##...##...#.#.#...#..",
    "W": "#...##...##...##.#.##.#.##.#.#.#.#.", "X": "#...##...#.#.#...#...#.#.#...##...#",
    "Y": "#...##...#.#.#...#....#....#....#..", "Z": "#####....#...#...#...#...#....#####",
    " ": "." * 35, ".": "." * 30 + "..#..", ",": ".....................##....#...#...",
    ":": ".......#....#.........#....#.......", "/": "....#....#...#...#...#...#....#....",
    "-": "...............#####...............", "(": "...#...#...#....#....#.....#.....#.",
    ")": ".#.....#.....#....#....#...#...#...", "%": "##...##..#...#...#...#...#..##...##",
    "+": ".......#....#..#####..#....#.......", "=": "..........#####.....#####..........",
    "_": "." * 30 + "#####", "<": "...#...#...#...#.....#.....#.....#.", ">": ".#.....#.....#.....#...#...#...#...",
}
FONT = {ch: [rows[i * 5:(i + 1) * 5].ljust(5, ".") for i in range(7)] for ch, rows in _FONT_ROWS.items()}
GLYPH_W, GLYPH_H = 6, 8  # with spacing

Color = tuple[int, int, int]
PALETTE: list[Color] = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]


class Canvas:
    """An RGB raster with just the drawing operations a line chart needs."""

    def __init__(self, width: int, height: int, background: Color = (255, 255, 255)):
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.pixels[i:i + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, thickness: int = 1) -> None:
        # Bresenham; thickness by stamping a small square.
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        half = thickness // 2
        while True:
            for ox in range(-half, thickness - half):
                for oy in range(-half, thickness - half):
                    self.set(x0 + ox, y0 + oy, color)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        for y in range(max(0, y0), min(self.height, y1)):
            for x in range(max(0, x0), min(self.width, x1)):
                self.set(x, y, color)

    def text(self, x: int, y: int, text: str, color: Color = (0, 0, 0), scale: int = 1) -> None:
        for n, ch in enumerate(text.upper()):
            glyph = FONT.get(ch, FONT[" "])
            for row, bits in enumerate(glyph):
                for col, bit in enumerate(bits):
                    if bit == "#":
                        px, py = x + (n * GLYPH_W + col) * scale, y + row * scale
                        self.rect(px, py, px + scale, py + scale, color)

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.pixels[y * self.width * 3:(y + 1) * self.width * 3]) for y in range(self.height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)  # 8-bit RGB
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def nice_step(span: float, ticks: int = 5) -> float:
    """A 1/2/5 × 10^n step giving about ``ticks`` intervals over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * magnitude >= raw:
            return m * magnitude
    return 10 * magnitude


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    width: int = 900,
    height: int = 420,
) -> bytes:
    """PNG bytes of ``series`` (name → [(x, y), ...]) on shared axes starting at 0."""
    canvas = Canvas(width, height)
    left, right, top, bottom = 70, 20, 40, 50
    pw, ph = width - left - right, height - top - bottom
    xs = [x for pts in series.values() for x, _ in pts] or [0.0, 1.0]
    ys = [y for pts in series.values() for _, y in pts] or [0.0, 1.0]
    x_max, y_max = max(max(xs), 1e-9), max(max(ys), 1.0)
    x_step, y_step = nice_step(x_max), nice_step(y_max)
    x_max = x_step * -(-x_max // x_step)
    y_max = y_step * -(-y_max // y_step)

    def px(x: float) -> int:
        return left + round(x / x_max * pw)

    def py(y: float) -> int:
        return top + ph - round(y / y_max * ph)

    grid, axis = (230, 230, 230), (60, 60, 60)
    tick = 0.0
    while tick <= y_max + 1e-9:
        canvas.line(left, py(tick), left + pw, py(tick), grid)
        label = f"{tick:,.0f}" if y_step >= 1 else f"{tick:g}"
        canvas.text(left - 8 - GLYPH_W * len(label), py(tick) - 3, label, axis)
        tick += y_step
    tick = 0.0
    while tick <= x_max + 1e-9:
        canvas.line(px(tick), top, px(tick), top + ph, grid)
        label = f"{tick:g}"
        canvas.text(px(tick) - GLYPH_W * len(label) // 2, top + ph + 8, label, axis)
        tick += x_step
    canvas.line(left, top, left, top + ph, axis)
    canvas.line(left, top + ph, left + pw, top + ph, axis)
    canvas.text(left, 12, title, (0, 0, 0), scale=2)
    canvas.text(left + pw // 2 - GLYPH_W * len(x_label) // 2, height - 20, x_label, axis)
    canvas.text(6, top - 14, y_label, axis)

    legend_x = left + pw - 10 - max((len(n) for n in series), default=0) * GLYPH_W - 24
    for n, (name, pts) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        ordered = sorted(pts)
        for (x0, y0), (x1, y1) in itertools.pairwise(ordered):
            canvas.line(px(x0), py(y0), px(x1), py(y1), color, thickness=2)
        ly = top + 8 + n * 14
        canvas.rect(legend_x, ly + 2, legend_x + 16, ly + 5, color)
        canvas.text(legend_x + 22, ly, name, (0, 0, 0))
    return canvas.png()
