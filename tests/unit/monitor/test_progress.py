"""WaitProgress: the wait's task-log lines — a steady cadence, and "no consumer" said plainly."""

from __future__ import annotations

from batchq.monitor.progress import WaitProgress
from batchq.sqs.snapshot import QueueSnapshot


def snap(t: float, visible: int, in_flight: int = 0, dlq: int | None = 0) -> QueueSnapshot:
    return QueueSnapshot(taken_at=t, visible=visible, in_flight=in_flight, delayed=0, dlq_visible=dlq)


def test_progress_lines_come_once_a_minute_with_rate_and_eta():
    p = WaitProgress(every_s=60, no_consumer_after_s=120)
    lines = []
    for t in range(0, 130, 10):  # draining 1/s with workers busy
        lines += [(t, line) for line in p.observe(snap(t, 200 - t, in_flight=4), t)]
    assert [t for t, _ in lines] == [0, 60, 120]
    assert all(not line.warning for _, line in lines)
    assert "input backlog 144 (visible 140, in flight 4, delayed 0), DLQ 0; draining 1.00/s, ETA 144s" == lines[1][1].text


def test_no_consumer_is_a_warning_once_then_on_every_progress_line():
    p = WaitProgress(every_s=60, no_consumer_after_s=120)
    out = []
    for t in range(0, 300, 10):
        out += [(t, line) for line in p.observe(snap(t, 96), t)]
    warnings = [(t, line.text) for t, line in out if line.warning]
    assert warnings[0][0] == 120 and warnings[0][1].startswith("NO CONSUMER: 96 message(s) waiting, none in flight, backlog unchanged for 120s")
    assert all(t >= 120 for t, _ in warnings) and len(warnings) >= 2
    # Workers arrive: the backlog moves, and the warning stops.
    later = p.observe(snap(300, 90, in_flight=6), 300) + p.observe(snap(360, 50, in_flight=6), 360)
    assert later and not any(line.warning for line in later)


def test_something_in_flight_is_a_consumer():
    p = WaitProgress(every_s=60, no_consumer_after_s=30)
    lines = [line for t in range(0, 200, 10) for line in p.observe(snap(t, 50, in_flight=3), t)]
    assert not any(line.warning for line in lines)
