"""HTTP sink: POST results in batches to the real-time system.

Body: ``{"results": [<WorkResult JSON>, ...]}``. The receiver must be idempotent on ``key`` (it gets
at-least-once delivery). Responses:

* 2xx: committed.
* 429 / 503 (with or without ``Retry-After``): back-pressure. The drainer's limiter pauses and slows
  down; the batch is retried, never dropped. ``Retry-After`` is capped at ``retry_after_cap_s``; a value
  that cannot be read (garbage, NaN) means "use the back-off", one that is absurd (``inf``, a date in
  9999) means the cap.
* other 5xx, 408, connection errors, timeouts: transient outage, retried with back-off.
* 401 / 403 and 3xx: the sink refuses every write (credentials, a wrong URL): the drain stops with a
  clear message and leaves the results on the queue (:class:`SinkMisconfigured`).
* other 4xx: the receiver rejects the batch for good; the drainer bisects it and quarantines the
  entries it refuses, with the reason.

Credentials: ``headers`` (e.g. from an Airflow connection, see :func:`auth_headers`) or the URL's
``user:password@``; they are sent, never logged, never part of :attr:`HttpSink.description`.

Standard library only (``http.client``), one keep-alive connection per drain thread.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from batchq.drain.sink import SinkMisconfigured, SinkRejected, SinkUnavailable
from batchq.messages import WorkResult
from batchq.store.rules import merge_duplicates

_BACKPRESSURE = {429, 503}
_TRANSIENT = {408, 500, 502, 504}
_AUTH = {401, 403}
#: Default longest wait one ``Retry-After`` can ask for.
DEFAULT_RETRY_AFTER_CAP_S = 60.0


def parse_retry_after(value: str | None, now: float | None = None, cap: float = DEFAULT_RETRY_AFTER_CAP_S) -> float | None:
    """``Retry-After`` as seconds in ``[0, cap]``: delta-seconds or an HTTP date. None when absent or
    unreadable (the caller backs off); ``cap`` when absurdly large (``inf``, a date in 9999)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - (now if now is not None else time.time())
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
    if math.isnan(seconds):
        return None
    return min(cap, max(0.0, seconds))


def auth_headers(login: str | None = None, password: str | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Request headers from an Airflow-style connection's fields (pure; no Airflow import):

    * extra ``headers`` (a mapping, or a JSON object string): sent as given;
    * extra ``token`` / ``bearer_token``: ``Authorization: Bearer <token>``;
    * ``login`` + ``password``: HTTP basic auth;
    * ``password`` without ``login``: a bearer token.

    An explicit ``Authorization`` in the extra headers wins.
    """
    extra = dict(extra or {})
    headers: dict[str, str] = {}
    token = extra.get("bearer_token") or extra.get("token")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    elif login:
        cred = base64.b64encode(f"{login}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {cred}"
    elif password:
        headers["Authorization"] = f"Bearer {password}"
    more = extra.get("headers") or {}
    if isinstance(more, str):
        more = json.loads(more)
    if not isinstance(more, Mapping):
        raise ValueError("the connection extra 'headers' must be a JSON object of header names to values")  # noqa: TRY004 - a bad setting value
    headers.update({str(k): str(v) for k, v in more.items()})
    return headers


def clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header values without surrounding whitespace (a token pasted or mounted from a secret ends with a
    newline). A value still holding a control character (CR, LF, NUL, ...) would be a header injection
    and ``http.client`` refuses it with the value (a credential) in the message: refuse it here, naming
    the header only, before any result is involved."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        value = str(value).strip()
        if any(ord(ch) < 32 and ch != "\t" or ord(ch) == 127 for ch in value) or any(ord(ch) <= 32 or ord(ch) == 127 for ch in str(name)):
            raise ValueError(f"HTTP sink header {str(name)[:64]!r}: the value (or the name) contains a control character (CR/LF?); fix the connection")
        out[str(name)] = value
    return out


class HttpSink:
    """POST result batches to ``url``.

    :param url: ``http://`` or ``https://`` endpoint of the real-time system (``user:password@`` in it
        becomes basic auth).
    :param headers: extra request headers (e.g. from :func:`auth_headers`); never logged.
    :param timeout_s: per-request timeout.
    :param retry_after_cap_s: longest wait a ``Retry-After`` may ask for.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        retry_after_cap_s: float = DEFAULT_RETRY_AFTER_CAP_S,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("HTTP sink URL must be http(s)://host[:port]/path")
        if not retry_after_cap_s > 0:
            raise ValueError(f"retry_after_cap_s must be > 0, got {retry_after_cap_s}")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        url_auth = auth_headers(unquote(parts.username), unquote(parts.password or "")) if parts.username else {}
        self._headers = clean_headers({"Content-Type": "application/json", **url_auth, **(headers or {})})
        self.timeout_s = timeout_s
        self.retry_after_cap_s = retry_after_cap_s
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
        except BaseException:
            self._drop_conn()  # never leave the connection mid-request for the next batch
            raise
        if resp.will_close:
            self._drop_conn()
        status = resp.status
        if 200 <= status < 300:
            return
        detail = payload[:300].decode(errors="replace")
        if status in _AUTH:
            raise SinkMisconfigured(
                f"{self.description}: HTTP {status}: the sink refuses our credentials; fix the sink connection's "
                "login/password/token (the results stay on the queue)"
            )
        if 300 <= status < 400:
            raise SinkMisconfigured(
                f"{self.description}: HTTP {status} redirect (to {resp.getheader('Location')!r}): set the sink URL "
                "to the final endpoint (results are not re-posted to a redirect; they stay on the queue)"
            )
        if status in _BACKPRESSURE:
            raise SinkUnavailable(
                f"{self.description}: HTTP {status} (back-pressure) {detail}",
                retry_after_s=parse_retry_after(resp.getheader("Retry-After"), cap=self.retry_after_cap_s),
                backpressure=True,
            )
        if status in _TRANSIENT or status >= 500:
            raise SinkUnavailable(
                f"{self.description}: HTTP {status} {detail}",
                retry_after_s=parse_retry_after(resp.getheader("Retry-After"), cap=self.retry_after_cap_s),
            )
        raise SinkRejected(f"{self.description}: HTTP {status} {detail}")

    def close(self) -> None:
        self._drop_conn()

    def __repr__(self) -> str:  # never the headers: they carry credentials
        return f"HttpSink({self.description})"
