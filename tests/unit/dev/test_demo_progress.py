"""The demo's pure parts: StatsD parsing, the closing figures, and the PNG writer (a valid PNG whose
pixels show the series)."""

from __future__ import annotations

import struct
import zlib

import pytest
from batchq.dev import progress as demo_progress
from batchq.dev import tiny_png


def sample(t, visible=0, in_flight=0, drained=0, workers=1, results=0):
    return {"t": t, "step": "x", "input_visible": visible, "input_in_flight": in_flight, "input_delayed": 0,
            "input_dlq": 0, "results_visible": results, "results_in_flight": 0, "workers": workers,
            "processed": 0, "drained": drained}


def test_statsd_lines_parse_with_and_without_tags():
    assert demo_progress.parse_statsd("batchq.worker.processed:1|c|#batch:b,job_type:x") == ("batchq.worker.processed", 1.0, "c")
    assert demo_progress.parse_statsd("batchq.worker.message_age_ms:12.5|ms") == ("batchq.worker.message_age_ms", 12.5, "ms")
    assert demo_progress.parse_statsd("batchq.supervisor.workers:3|g") == ("batchq.supervisor.workers", 3.0, "g")
    assert demo_progress.parse_statsd("garbage") is None
    state = demo_progress.StatsdState()
    for line in ("a:1|c", "a:2|c", "g:5|g", "g:2|g", "t:10|ms", "t:30|ms"):
        state.add(*demo_progress.parse_statsd(line))
    assert state.counters == {"a": 3.0} and state.gauges == {"g": 2.0} and state.timers == {"t": [10.0, 30.0]}


def test_the_listener_receives_what_a_worker_sends():
    import socket
    import time

    from batchq.metrics import Metrics

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    listener = demo_progress.StatsdListener(port)
    listener.start()
    try:
        metrics = Metrics("worker", statsd_host="127.0.0.1", statsd_port=port, summary_interval_s=0)
        for _ in range(3):
            metrics.incr("processed", 1, {"job_type": "classification"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and listener.state.counters.get("batchq.worker.processed", 0) < 3:
            time.sleep(0.05)
        assert listener.state.counters["batchq.worker.processed"] == 3
    finally:
        listener.stop()


def test_percentile_is_nearest_rank():
    assert demo_progress.percentile([], 95) is None
    assert demo_progress.percentile(list(range(1, 101)), 95) == 95
    assert demo_progress.percentile([5.0], 95) == 5.0


def test_summary_figures_come_from_the_samples_statsd_and_ledger():
    samples = [sample(0), sample(1, visible=1000), sample(2, visible=400, in_flight=200, drained=0, workers=2),
               sample(5, drained=1500), sample(9, drained=1600), sample(12, drained=1600)]
    statsd = {"counters": {"batchq.worker.processed": 1603.0}, "timers": {"batchq.worker.message_age_ms": [100.0] * 19 + [4000.0]}}
    run = {"run_id": "r", "expected": 1600, "succeeded": 1598, "failed": 2, "outcome": "succeeded"}
    figures = demo_progress.summarize(samples, statsd, run, rows=1600, quarantined=0)
    assert figures["payloads"] == 1600 and figures["results"] == 1600
    assert figures["duplicates_absorbed"] == 3
    assert figures["peak_depth"] == 1000
    assert figures["time_to_drain_s"] == 8.0  # backlog first seen at 1 s, last result drained at 9 s
    assert figures["lag_p95_s"] == 0.1
    assert figures["max_workers"] == 2 and figures["failed"] == 2


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 2) and b"IEND" in chunks
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == height * (1 + 3 * width)
    return width, height, raw


def test_line_chart_is_a_valid_png_that_draws_each_series():
    png = tiny_png.line_chart({"a": [(0, 0), (10, 100)], "b": [(0, 50), (10, 50)]}, title="t", x_label="x", y_label="y",
                              width=300, height=200)
    width, height, raw = decode_png(png)
    assert (width, height) == (300, 200)
    pixels = {bytes(raw[r * (1 + 3 * width) + 1 + 3 * c:r * (1 + 3 * width) + 4 + 3 * c]) for r in range(height) for c in range(width)}
    for color in tiny_png.PALETTE[:2]:
        assert bytes(color) in pixels


@pytest.mark.parametrize("span,step", [(7, 2), (1600, 500), (95, 20), (0.3, 0.1), (0, 1.0)])
def test_axis_steps_are_1_2_5(span, step):
    assert tiny_png.nice_step(span) == pytest.approx(step)


def test_every_glyph_is_5x7():
    assert all(len(rows) == 35 for rows in tiny_png._FONT_ROWS.values())


@pytest.mark.integration
def test_queue_reader_snapshots_a_specs_queues(sqs_endpoint, sqs_client, queue_spec_factory, monkeypatch, tmp_path):
    queues, urls = queue_spec_factory()
    sqs_client.send_message(QueueUrl=urls.input, MessageBody="{}")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"name: s\ndimensions:\n  customer: [a]\n  job_type: [classification]\n"
                    f"queues: {{input: {queues.input}, results: {queues.results}}}\n")
    monkeypatch.setenv("BATCHQ_SQS_ENDPOINT", sqs_endpoint)
    inp, res = demo_progress.QueueReader(str(spec)).snapshots()
    assert (inp.visible, inp.dlq_visible, res.visible) == (1, 0, 0)
    # Queues that do not exist yet read as "unknown", not an error.
    spec.write_text("name: s\ndimensions:\n  customer: [a]\n  job_type: [classification]\nqueues: {input: nope-in, results: nope-out}\n")
    assert demo_progress.QueueReader(str(spec)).snapshots() == (None, None)


def test_summary_shows_the_pictures_path_whole_on_a_narrow_terminal(tmp_path, monkeypatch, capsys):
    # Issue 20: the summary table cut the drain curve's path short ("/work/…/.airflow-demo/so…").
    import json

    monkeypatch.setenv("COLUMNS", "60")
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ndimensions: {n: [1, 2]}\njob_type: x\nqueues: {input: s-in, results: s-out}\n")
    series = tmp_path / "series.json"
    series.write_text(json.dumps({"samples": [sample(0, visible=2), sample(1, drained=2)], "statsd": {}}))
    png = tmp_path / "a-rather-long-directory-name-for-pictures" / "the-drain-curve-of-this-run.png"
    figures = demo_progress.summary(str(spec), tmp_path / "no-sink.db", series, png=png)
    out = capsys.readouterr().out
    assert str(png) in out.splitlines() or f"drain curve: {png}" in out
    assert "…" not in out
    assert figures["png"] == str(png) and png.read_bytes().startswith(b"\x89PNG")
