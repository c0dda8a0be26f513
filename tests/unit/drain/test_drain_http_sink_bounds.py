"""HttpSink against receivers that misbehave on the wire (issues 16 and 20), on raw loopback sockets:

* a slow-drip answer (a byte every 0.2 s, each read well inside the per-read timeout) cannot hold a
  write past its total deadline — before, ``http.client``'s 10 s per-read timeout never fired and the
  write lasted as long as the drip;
* an endless answer body is read only up to ``max_response_bytes`` — before, ``resp.read()`` took all of it;
* the environment's proxy (``HTTP_PROXY``) and CA bundle (``SSL_CERT_FILE``) are used, as httpx does.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from batchq.drain.http_sink import HttpSink
from batchq.drain.sink import SinkRejected, SinkUnavailable
from batchq.messages import WorkResult


def res(key: str) -> WorkResult:
    return WorkResult(batch="b", run_id="r", key=key, status="succeeded", output={"v": key})


def _read_request(conn: socket.socket) -> bytes:
    """The request head and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@contextmanager
def raw_server(answer: Callable[[socket.socket, bytes, dict], None], *, tls: ssl.SSLContext | None = None) -> Iterator[dict]:
    """A one-connection-at-a-time loopback server; ``answer(conn, request, state)`` writes the response.
    ``state`` collects what happened (``requests``, ``sent`` bytes). Stops itself when the test ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    state: dict = {"port": listener.getsockname()[1], "requests": [], "sent": 0, "stop": threading.Event()}

    def serve() -> None:
        while not state["stop"].is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                if tls is not None:
                    conn = tls.wrap_socket(conn, server_side=True)
                conn.settimeout(30)
                request = _read_request(conn)
                state["requests"].append(request)
                answer(conn, request, state)
            except OSError:
                pass  # the client went away: what the bounded tests expect
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state["stop"].set()
        thread.join(timeout=30)
        listener.close()


def drip(conn: socket.socket, _request: bytes, state: dict) -> None:
    """A status line and headers, one byte every 0.2 s, for at most 20 s."""
    end = time.monotonic() + 20
    line = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 10_000
    for byte in line:
        if state["stop"].is_set() or time.monotonic() > end:
            return
        conn.sendall(bytes([byte]))
        state["sent"] += 1
        time.sleep(0.2)


def endless(status: bytes) -> Callable[[socket.socket, bytes, dict], None]:
    def answer(conn: socket.socket, _request: bytes, state: dict) -> None:
        """An answer announcing 200 MB, streamed as fast as the client reads (at most 20 s)."""
        total = 200 * 1024 * 1024
        conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: " + str(total).encode() + b"\r\n\r\n")
        block = b"z" * 65536
        end = time.monotonic() + 20
        while state["sent"] < total and time.monotonic() < end and not state["stop"].is_set():
            conn.sendall(block)
            state["sent"] += len(block)

    return answer


def test_a_slow_drip_answer_cannot_hold_a_write_past_its_deadline():
    with raw_server(drip) as srv:
        sink = HttpSink(f"http://127.0.0.1:{srv['port']}/results", timeout_s=5, total_timeout_s=1.5)
        started = time.monotonic()
        with pytest.raises(SinkUnavailable, match="deadline"):
            sink.write([res("a")])
        took = time.monotonic() - started
        sink.close()
    # Each read arrives within 0.2 s, far inside the 5 s per-read timeout: only a total deadline stops it.
    assert took < 4, took


@pytest.mark.parametrize(("status", "error"), [(b"400 Bad Request", SinkRejected), (b"200 OK", None)])
def test_only_a_bounded_part_of_an_endless_answer_is_read(status, error):
    with raw_server(endless(status)) as srv:
        sink = HttpSink(f"http://127.0.0.1:{srv['port']}/results", max_response_bytes=4096, total_timeout_s=15)
        started = time.monotonic()
        if error is None:
            sink.write([res("a")])
        else:
            with pytest.raises(error) as info:
                sink.write([res("a")])
            assert len(str(info.value)) < 600  # the receiver's text in the message stays short
        took = time.monotonic() - started
        sink.close()
        time.sleep(0.5)
        sent = srv["sent"]
    # The server could push what the socket buffers hold (a few MB at most), never the 200 MB.
    assert sent < 32 * 1024 * 1024 and took < 10, (sent, took)


def test_proxies_come_from_the_environment(monkeypatch):
    def ok(conn: socket.socket, _request: bytes, _state: dict) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    with raw_server(ok) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy['port']}")
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        # A host that resolves nowhere: only a proxy can deliver it.
        sink = HttpSink("http://realtime.batchq-test.invalid/results")
        sink.write([res("a")])
        sink.close()
        (request,) = proxy["requests"]
    assert request.startswith(b"POST http://realtime.batchq-test.invalid/results HTTP/1.1")


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
        check=True, capture_output=True,
    )
    return directory


def test_tls_trust_comes_from_the_environment(monkeypatch, self_signed):
    def ok(conn: socket.socket, _request: bytes, _state: dict) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(self_signed / "cert.pem", self_signed / "key.pem")
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    with raw_server(ok, tls=tls) as srv:
        url = f"https://127.0.0.1:{srv['port']}/results"
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        untrusted = HttpSink(url, total_timeout_s=10)
        with pytest.raises(SinkUnavailable, match="(?i)certificate"):
            untrusted.write([res("a")])
        untrusted.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(self_signed / "cert.pem"))
        trusted = HttpSink(url, total_timeout_s=10)
        trusted.write([res("a")])
        trusted.close()
