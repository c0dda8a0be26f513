"""``batchq drain``'s progress line and pace gauges (DrainMetrics), on a fake clock."""

from __future__ import annotations

import io

from batchq.cli.drain import DrainMetrics, describe_progress
from batchq.drain.core import DrainReport


class Sent:
    def __init__(self) -> None:
        self.gauges: list[tuple[str, float]] = []

    def incr(self, name, value=1, tags=None) -> None:
        pass

    def gauge(self, name, value, tags=None) -> None:
        self.gauges.append((name, value))


def test_progress_line_names_the_pace():
    report = DrainReport(applied=1200, pace_limit=4.0, pace_rtt_ms=12.1, pace_baseline_ms=10.0)
    assert describe_progress(report, 12.5) == "batchq drain: applied 1,200 (96.0/s), quarantined 0 · pace 4 in flight · sink 12.1 ms (baseline 10.0 ms)"
    assert describe_progress(DrainReport(applied=5), 1.0).endswith("· pace fixed")
    assert "sink – (baseline –)" in describe_progress(DrainReport(applied=5, pace_limit=1.0), 1.0)


def test_pace_gauges_and_progress_are_throttled():
    now = [0.0]
    out, sent = io.StringIO(), Sent()
    dm = DrainMetrics(sent, "q", progress=out, progress_interval_s=10, gauge_interval_s=1, clock=lambda: now[0])
    report = DrainReport(applied=10, pace_limit=2.0, pace_rtt_ms=5.0, pace_baseline_ms=4.0)
    for t in (0.0, 0.5, 1.2, 10.5):
        now[0] = t
        dm.on_batch(report)
    assert [n for n, _ in sent.gauges].count("pace_limit") == 3  # at 0, 1.2 and 10.5
    assert ("rtt_ms", 5.0) in sent.gauges and ("baseline_ms", 4.0) in sent.gauges
    assert out.getvalue().count("batchq drain: applied") == 1  # at 10.5 only
