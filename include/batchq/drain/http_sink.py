"""HTTP sink: POST results in batches to the real-time system.

Body: ``{"results": [<WorkResult JSON>, ...]}``. The receiver must be idempotent on ``key`` (it gets
at-least-once delivery). Responses:

* 2xx: committed.
* 429 / 503 (with or without ``Retry-After``): back-pressure. The drainer's limiter pauses and slows
  down; the batch is retried, never dropped.
* other 5xx, 408, connection errors, timeouts: transient outage, retried with back-off.
* other 4xx: the receiver rejects the batch for good; the drainer quarantines it with the reason.

Standard library only (``http.client``), one keep-alive connection per drain thread.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import threading
import time
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from batchq.messages import WorkResult
from batchq.drain.sink import SinkRejected, SinkUnavailable, merge_duplicates

_BACKPRESSURE = {429, 503}
_TRANSIENT = {408, 500, 502, 504}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class HttpSink:
    """POST result batches to ``url``.

    :param url: ``http://`` or ``https://`` endpoint of the real-time system.
    :param headers: extra request headers (e.g. authorisation); never logged.
    :param timeout_s: per-request timeout.
    """

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None, timeout_s: float = 10.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"HTTP sink URL must be http(s)://host[:port]/path, got {url!r}")
        self.url = url
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self.timeout_s = timeout_s
        self.description = f"http:{parts.scheme}://{parts.hostname}{'' if parts.port is None else f':{parts.port}'}{parts.path}"
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.timeout_s)
            self._local.conn = conn
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def write(self, results: Sequence[WorkResult]) -> None:
        if not results:
            return
        body = json.dumps({"results": [r.model_dump(mode="json") for r in merge_duplicates(results)]}).encode()
        try:
            conn = self._conn()
            conn.request("POST", self._path, body=body, headers=self._headers)
            resp = conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_conn()
            raise SinkUnavailable(f"{self.description}: {type(exc).__name__}: {exc}") from exc
        if resp.will_close:
            self._drop_conn()
        status = resp.status
        if 200 <= status < 300:
            return
        detail = payload[:300].decode(errors="replace")
        if status in _BACKPRESSURE:
            raise SinkUnavailable(
                f"{self.description}: HTTP {status} (back-pressure) {detail}",
                retry_after_s=parse_retry_after(resp.getheader("Retry-After")),
                backpressure=True,
            )
        if status in _TRANSIENT or status >= 500:
            raise SinkUnavailable(f"{self.description}: HTTP {status} {detail}")
        raise SinkRejected(f"{self.description}: HTTP {status} {detail}")

    def close(self) -> None:
        self._drop_conn()
