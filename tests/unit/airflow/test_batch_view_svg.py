"""The Batch views' SVG charts: pure rendering that a test (or a person) can read back."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from batchq.airflow.views import svg

NS = "{http://www.w3.org/2000/svg}"


def _points(markup: str, tag: str = "circle") -> list[tuple[str, float, float]]:
    root = ET.fromstring(markup)  # also proves the markup is well-formed XML
    return [(el.get("data-series"), float(el.get("data-x") or 0), float(el.get("data-y"))) for el in root.iter(f"{NS}{tag}") if el.get("data-y")]


def test_line_chart_draws_every_point_of_every_line():
    lines = [svg.Line("visible", [(100, 40), (110, 25), (130, 0)]), svg.Line("in flight", [(100, 0), (110, 10), (130, 0)])]
    markup = svg.line_chart(lines, title="depth", y_label="messages")
    pts = _points(markup)
    assert [p for p in pts if p[0] == "visible"] == [("visible", 100, 40), ("visible", 110, 25), ("visible", 130, 0)]
    assert len(pts) == 6
    # y is scaled to a readable top (50 for a max of 40): the 40-point sits 80% up the plot.
    root = ET.fromstring(markup)
    cys = {float(c.get("data-y")): float(c.get("cy")) for c in root.iter(f"{NS}circle") if c.get("data-series") == "visible"}
    assert cys[0] > cys[25] > cys[40]
    assert "+30s" in markup  # tooltips in durations since the first sample


def test_text_is_escaped():
    markup = svg.line_chart([svg.Line("<script>", [(0, 1)])], title='a "quoted" & <b>')
    ET.fromstring(markup)
    assert "<script>" not in markup and "&lt;script&gt;" in markup


def test_empty_chart_says_so():
    assert "no samples" in svg.line_chart([], title="x")
    assert "no runs" in svg.bar_chart([], title="x")


def test_bar_chart_marks_missing_values():
    markup = svg.bar_chart([("r1", 30.0), ("r2", None), ("r3", 90.0)], title="drain time")
    root = ET.fromstring(markup)
    bars = [(b.get("data-x"), float(b.get("data-y"))) for b in root.iter(f"{NS}rect") if b.get("class") == "bar"]
    assert bars == [("r1", 30.0), ("r3", 90.0)]
    assert re.search(r">–<", markup)


def test_gauge_segments_are_proportional():
    root = ET.fromstring(svg.gauge([("visible", 30), ("in flight", 10), ("delayed", 0)], title="q", width=400))
    segs = {s.get("data-series"): float(s.get("width")) for s in root.iter(f"{NS}rect") if s.get("class") == "seg"}
    assert segs == {"visible": 300.0, "in flight": 100.0}


def test_nice_max_and_durations():
    assert [svg.nice_max(v) for v in (0, 0.3, 7, 40, 101, 5000)] == [1.0, 0.5, 10.0, 50.0, 200.0, 5000.0]
    assert [svg.format_duration(v) for v in (None, 4.25, 42, 95, 7300)] == ["–", "4.2s", "42s", "1m 35s", "2h 01m"]


def test_bar_chart_labels_are_escaped_everywhere_they_appear():
    """Bar labels are run ids (user-controlled: a manual trigger names its run): in the data attribute,
    the tooltip and the axis tick, markup in them stays text. The tick shows the label's last 12
    characters, so an entity cut in half must not leak a raw ``<`` either."""
    hostile = 'manual__"><script>alert(1)</script><img src=x onerror=alert(2)>&<i>x</i>'
    markup = svg.bar_chart([(hostile, 30.0), ("r2", 10.0)], title="<b>drain</b> & time")
    root = ET.fromstring(markup)  # well-formed: nothing broke out of an attribute or an element
    assert "<script" not in markup and "<img" not in markup and "<b>" not in markup and "<i>" not in markup
    bars = [el for el in root.iter(f"{NS}rect") if el.get("data-x")]
    assert [b.get("data-x") for b in bars] == [hostile, "r2"]  # the attribute reads back as the label
    assert bars[0].find(f"{NS}title").text == f"{hostile}: 30"
    ticks = [t.text for t in root.iter(f"{NS}text") if t.get("class") == "tick" and t.text in (hostile[-12:], "r2")]
    assert ticks == [hostile[-12:], "r2"]
