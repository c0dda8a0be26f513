"""A small "real-time system" on loopback for tests and the burst-isolation benchmark.

* ``POST /results`` takes ``{"results": [...]}`` and stores them idempotently on ``key`` (a succeeded
  result replaces a failed one, never the reverse) — what a real receiver of at-least-once deliveries
  must do.
* ``GET /fg`` is a foreground request (the latency the benchmark measures).
* Fixed capacity: at most ``capacity`` requests are served at once, each taking ``service_ms`` (+
  ``per_item_ms`` per result posted); the rest queue, which is how an overloaded service gets slow.
  With ``sharing="cpu"`` the ``capacity`` is cores instead: every request is served at once, but beyond
  ``capacity`` requests in service each one takes ``in service / capacity`` times longer (a CPU-bound
  service or a database: everyone slows together). :meth:`co_tenant` lets another tenant take a
  fraction of the capacity (held slots, or that many requests' worth of load on the cores);
  ``peak_active`` is the most POSTs seen in service at once.
* :meth:`fail_for` makes it answer ``503`` (with ``Retry-After``) for a while: an outage / back-pressure.
* ``writes`` counts every delivery of every key (the dedup in ``rows`` hides duplicates; tests bound
  duplicates with this), ``refuse_keys`` makes a POST containing one of them answer 400, and
  ``require_headers`` answers 401 unless the request carries them (``last_headers`` shows what came).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Start with ``with Receiver() as rx:``; ``rx.url`` is the base URL."""

    def __init__(self, *, capacity: int = 64, service_ms: float = 0.0, per_item_ms: float = 0.0, sharing: str = "slots"):
        if sharing not in ("slots", "cpu"):
            raise ValueError(f"sharing must be 'slots' or 'cpu', got {sharing!r}")
        self.capacity, self.sharing = capacity, sharing
        self.active = 0
        self.active_posts = 0
        self.peak_active = 0
        self._co_load = 0.0
        self._co_held: list[threading.Event] = []
        self.service_ms, self.per_item_ms = service_ms, per_item_ms
        self._slots = threading.BoundedSemaphore(capacity)
        self._lock = threading.Lock()
        self.rows: dict[str, dict[str, Any]] = {}
        self.posts = 0
        self.items_received = 0
        self.rejected_503 = 0
        self.writes: Counter[str] = Counter()
        self.refuse_keys: set[str] = set()
        self.require_headers: dict[str, str] = {}
        self.last_headers: dict[str, str] = {}
        self.unauthorized = 0
        self._fail_until = 0.0
        self._fail_status = 503
        self._retry_after: str | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _reply(self, status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                receiver._serve(receiver.service_ms)
                self._reply(200, b'{"ok":true}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                receiver.last_headers = dict(self.headers.items())
                if any(self.headers.get(k) != v for k, v in receiver.require_headers.items()):
                    with receiver._lock:
                        receiver.unauthorized += 1
                    self._reply(401, b'{"error":"unauthorized"}')
                    return
                if time.monotonic() < receiver._fail_until:
                    with receiver._lock:
                        receiver.rejected_503 += 1
                    headers = {"Retry-After": receiver._retry_after} if receiver._retry_after else {}
                    self._reply(receiver._fail_status, b'{"error":"unavailable"}', headers)
                    return
                try:
                    results = json.loads(raw)["results"]
                except (ValueError, KeyError, TypeError):
                    self._reply(400, b'{"error":"expected {\\"results\\": [...]}"}')
                    return
                refused = [r.get("key") for r in results if r.get("key") in receiver.refuse_keys]
                if refused:
                    self._reply(400, json.dumps({"error": f"refused keys {refused}"}).encode())
                    return
                with receiver._lock:
                    receiver.active_posts += 1
                    receiver.peak_active = max(receiver.peak_active, receiver.active_posts)
                try:
                    receiver._serve(receiver.service_ms + receiver.per_item_ms * len(results))
                    receiver._store(results)
                finally:
                    with receiver._lock:
                        receiver.active_posts -= 1
                self._reply(200, json.dumps({"accepted": len(results)}).encode())

        class Server(ThreadingHTTPServer):
            # Bursts open dozens of connections at once; the default backlog (5) would reset them.
            request_queue_size = 256

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def _serve(self, ms: float) -> None:
        """Do ``ms`` of work under the capacity model: a slot, or a share of the cores."""
        if self.sharing == "slots":
            with self._slots:
                self._work(ms)
            return
        with self._lock:
            self.active += 1
            load = self.active + self._co_load
        try:
            # Processor sharing, judged when the request arrives: the work stretches by the load then.
            self._work(ms * max(1.0, load / self.capacity))
        finally:
            with self._lock:
                self.active -= 1

    def co_tenant(self, fraction: float) -> None:
        """Another tenant takes ``fraction`` of the capacity from now on (0 gives it back)."""
        for ev in self._co_held:
            ev.set()
        self._co_held = []
        if self.sharing == "cpu":
            self._co_load = fraction * self.capacity
            return
        for _ in range(round(fraction * self.capacity)):
            got, release = threading.Event(), threading.Event()

            def hold(got: threading.Event = got, release: threading.Event = release) -> None:
                with self._slots:
                    got.set()
                    release.wait()

            threading.Thread(target=hold, daemon=True).start()
            got.wait()
            self._co_held.append(release)

    @staticmethod
    def _work(ms: float) -> None:
        # Stands in for the service's own work while holding one of its fixed slots.
        if ms > 0:
            time.sleep(ms / 1000)

    def _store(self, results: list[dict[str, Any]]) -> None:
        with self._lock:
            self.posts += 1
            self.items_received += len(results)
            for r in results:
                self.writes[r["key"]] += 1
                prev = self.rows.get(r["key"])
                if prev is None or (prev["status"] == "failed" and r["status"] == "succeeded"):
                    self.rows[r["key"]] = r

    def fail_for(self, seconds: float, *, status: int = 503, retry_after: str | None = "1") -> None:
        """Answer POSTs with ``status`` for ``seconds`` from now."""
        self._fail_status, self._retry_after = status, retry_after
        self._fail_until = time.monotonic() + seconds

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
