"""Metrics: StatsD lines on a real UDP socket, names, tags and the structured-log summary."""

from __future__ import annotations

import json
import logging
import socket

import pytest
from batchq.metrics import Metrics, format_line, metric_name


def test_names_and_line_format():
    assert metric_name("worker", "processed") == "batchq.worker.processed"
    assert format_line("batchq.worker.processed", 1, "c", {"batch": "b1", "job_type": "seg"}, "dogstatsd") == \
        "batchq.worker.processed:1|c|#batch:b1,job_type:seg"
    assert format_line("x", 12.34567, "ms", {"b": "a|b,c:d"}, "dogstatsd") == "x:12.346|ms|#b:a_b_c_d"
    assert format_line("x", 2.0, "g", {"b": 1}, "none") == "x:2|g"
    with pytest.raises(ValueError):
        Metrics("w", tag_format="influx")


def test_statsd_over_udp_to_a_real_listener(monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(2)
        monkeypatch.setenv("BATCHQ_STATSD_HOST", "127.0.0.1")
        monkeypatch.setenv("BATCHQ_STATSD_PORT", str(udp.getsockname()[1]))
        m = Metrics("worker", tags={"worker": "h:1"})  # configured from the environment
        m.incr("processed", 3, {"batch": "b", "job_type": "classification"})
        m.timing("handler_duration_ms", 20.5, {"batch": "b", "job_type": "classification"})
        m.gauge("workers", 2)
        got = [udp.recv(4096).decode() for _ in range(3)]
        m.close()
    assert got == [
        "batchq.worker.processed:3|c|#batch:b,job_type:classification,worker:h_1",
        "batchq.worker.handler_duration_ms:20.5|ms|#batch:b,job_type:classification,worker:h_1",
        "batchq.worker.workers:2|g|#worker:h_1",
    ]


def test_no_statsd_without_configuration_and_json_summary(monkeypatch, caplog):
    monkeypatch.delenv("BATCHQ_STATSD_HOST", raising=False)
    m = Metrics("worker", summary_interval_s=0)
    assert m.address is None
    m.incr("processed")
    m.incr("processed")
    m.timing("handler_duration_ms", 10)
    m.timing("handler_duration_ms", 30)
    with caplog.at_level(logging.INFO, logger="batchq.metrics"):
        summary = m.flush_summary()
    logged = json.loads(caplog.records[-1].getMessage())
    assert logged["event"] == "metrics_summary"
    assert logged["counters"] == {"batchq.worker.processed": 2}
    assert logged["timers_ms"]["batchq.worker.handler_duration_ms"] == {"count": 2, "avg": 20.0, "max": 30.0}
    assert summary["counters"] == logged["counters"]
    assert m.snapshot()["counters"] == {}  # reset after a summary
