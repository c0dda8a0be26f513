"""HttpSink against a real loopback receiver: success, back-pressure (503/429 + Retry-After), rejection,
and an unreachable receiver."""

from __future__ import annotations

import socket

import pytest
from batchq.messages import WorkResult
from batchq.drain.http_sink import HttpSink, parse_retry_after
from batchq.drain.sink import SinkRejected, SinkUnavailable

from tests.support.http_receiver import Receiver


def res(key: str, status: str = "succeeded") -> WorkResult:
    extra = {"error": {"type": "E", "message": "m"}} if status == "failed" else {"output": {"v": key}}
    return WorkResult(batch="b", run_id="r", key=key, status=status, **extra)


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Sun, 29 Nov 2026 10:00:10 GMT", now=1795946400.0) == pytest.approx(10.0)


def test_posts_batches_and_the_receiver_dedups():
    with Receiver() as rx:
        sink = HttpSink(f"{rx.url}/results")
        sink.write([res("a", "failed"), res("b")])
        sink.write([res("a"), res("b")])
        sink.write([res("a", "failed")])
        sink.close()
        assert {k: v["status"] for k, v in rx.rows.items()} == {"a": "succeeded", "b": "succeeded"}
        assert rx.posts == 3


@pytest.mark.parametrize("status", [503, 429])
def test_backpressure_carries_retry_after(status):
    with Receiver() as rx:
        rx.fail_for(30, status=status, retry_after="2")
        sink = HttpSink(f"{rx.url}/results")
        with pytest.raises(SinkUnavailable) as info:
            sink.write([res("a")])
        assert info.value.backpressure and info.value.retry_after_s == 2.0
        assert rx.rows == {}


def test_client_error_is_a_rejection():
    with Receiver() as rx:
        rx.fail_for(30, status=400, retry_after=None)
        with pytest.raises(SinkRejected, match="HTTP 400"):
            HttpSink(f"{rx.url}/results").write([res("a")])


def test_unreachable_receiver_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SinkUnavailable) as info:
        HttpSink(f"http://127.0.0.1:{port}/results", timeout_s=2).write([res("a")])
    assert not info.value.backpressure


def test_bad_url():
    with pytest.raises(ValueError, match="http"):
        HttpSink("ftp://x/y")
