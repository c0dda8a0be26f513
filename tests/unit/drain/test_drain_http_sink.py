"""HttpSink against a real loopback receiver: success, back-pressure (503/429 + Retry-After), rejection,
and an unreachable receiver."""

from __future__ import annotations

import socket

import pytest
from batchq.drain.http_sink import HttpSink, parse_retry_after
from batchq.drain.sink import SinkRejected, SinkUnavailable
from batchq.messages import WorkResult

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


# -- issue 8: Retry-After bounds, auth, fatal statuses ---------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [("inf", 60.0), ("Infinity", 60.0), ("1e400", 60.0), ("-5", 0.0), ("nan", None), ("garbage", None),
     ("Fri, 31 Dec 9999 23:59:59 GMT", 60.0), ("Mon, 99 Foo 99999 99:99:99 GMT", None), ("120", 60.0)],
)
def test_retry_after_is_capped_and_never_overflows(value, expected):
    assert parse_retry_after(value, now=1795946400.0, cap=60.0) == expected


def test_limiter_survives_an_infinite_pause():
    from batchq.drain.limiter import MAX_PAUSE_S, TokenBucket

    now = [0.0]
    slept: list[float] = []
    bucket = TokenBucket(10, clock=lambda: now[0], sleep=slept.append)
    bucket.backpressure(float("inf"))
    bucket.acquire(1)
    assert slept and slept[0] <= MAX_PAUSE_S


@pytest.mark.parametrize("status", [401, 403, 301, 307])
def test_auth_and_redirect_statuses_are_fatal_not_rejections(status):
    from batchq.drain.sink import SinkMisconfigured

    with Receiver() as rx:
        rx.fail_for(30, status=status, retry_after=None)
        with pytest.raises(SinkMisconfigured, match=f"HTTP {status}"):
            HttpSink(f"{rx.url}/results").write([res("a")])


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_server_errors_and_timeouts_are_transient(status):
    with Receiver() as rx:
        rx.fail_for(30, status=status, retry_after=None)
        with pytest.raises(SinkUnavailable) as info:
            HttpSink(f"{rx.url}/results").write([res("a")])
        assert not info.value.backpressure and info.value.retry_after_s is None


def test_auth_headers_from_connection_fields():
    from batchq.drain.http_sink import auth_headers

    assert auth_headers("u", "p") == {"Authorization": "Basic dTpw"}
    assert auth_headers(None, "tok") == {"Authorization": "Bearer tok"}
    assert auth_headers("u", "p", {"token": "t2"}) == {"Authorization": "Bearer t2"}
    assert auth_headers(extra={"headers": '{"X-Api-Key": "k"}'}) == {"X-Api-Key": "k"}
    with pytest.raises(ValueError, match="headers"):
        auth_headers(extra={"headers": "[1]"})


def test_credentials_are_sent_and_never_described():
    from batchq.drain.http_sink import auth_headers

    with Receiver() as rx:
        rx.require_headers = {"Authorization": "Bearer s3cret-token"}
        sink = HttpSink(f"{rx.url}/results", headers=auth_headers(None, "s3cret-token"))
        sink.write([res("a")])
        assert set(rx.rows) == {"a"} and rx.unauthorized == 0
        basic = HttpSink(f"http://user:pa%40ss@127.0.0.1:{rx.port}/results")
        rx.require_headers = {"Authorization": auth_headers("user", "pa@ss")["Authorization"]}
        basic.write([res("b")])
        assert set(rx.rows) == {"a", "b"}
        for s in (sink, basic):
            assert "s3cret" not in s.description + repr(s) and "pa@ss" not in s.description + repr(s)
            assert "pa%40ss" not in s.description + repr(s)


@pytest.mark.parametrize("how", ["headers", "token_extra"])
def test_a_trailing_newline_in_a_header_value_is_not_sent_nor_leaked(how):
    """A token pasted or mounted from a secret ends with a newline: ``http.client`` raised
    ``ValueError("Invalid header value b'Bearer <token>\\n'")``, which became every result's quarantine
    reason (the token with it) and left the connection mid-request."""
    from batchq.drain.http_sink import auth_headers

    headers = {"Authorization": "Bearer s3cret-token\n"} if how == "headers" else auth_headers(extra={"token": "s3cret-token\r\n"})
    with Receiver() as rx:
        rx.require_headers = {"Authorization": "Bearer s3cret-token"}
        sink = HttpSink(f"{rx.url}/results", headers=headers)
        sink.write([res("a")])
        sink.write([res("b")])  # the same keep-alive connection still works
        sink.close()
        assert set(rx.rows) == {"a", "b"}
        assert rx.last_headers["Authorization"] == "Bearer s3cret-token"


def test_a_header_value_with_an_inner_newline_is_refused_up_front_without_the_value():
    with pytest.raises(ValueError, match="Authorization") as info:
        HttpSink("http://127.0.0.1:9/results", headers={"Authorization": "Bearer s3cret\nX-Injected: 1"})
    assert "s3cret" not in str(info.value)


def test_a_rejection_keeps_one_short_line_of_the_receivers_answer():
    """A receiver may echo anything back (a header, a token, a stack trace): what a rejection keeps, and
    so what the quarantine, the ledger and the Batch view show, is one line of at most 120 characters."""
    import http.server
    import threading

    answer = ("error: bad row\nAuthorization: Bearer s3cret\n" + "x" * 900).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(400)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(SinkRejected) as info:
            HttpSink(f"http://127.0.0.1:{server.server_address[1]}/results").write([res("a")])
    finally:
        server.shutdown()
    text = str(info.value)
    assert "HTTP 400 error: bad row Authorization" in text and "\n" not in text
    detail = text.split("HTTP 400 ", 1)[1]
    assert len(detail) <= 120 and detail.endswith("…")
