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
  clear message and leaves the results on the queue (:class:`SinkMisconfigured`). Redirects are never
  followed.
* other 4xx: the receiver rejects the batch for good; the drainer bisects it and quarantines the
  entries it refuses, with the reason.

Bounded, whatever the receiver does: each write has a total deadline (``total_timeout_s``: connect, send,
headers and body together), and at most ``max_response_bytes`` of the answer are read. A receiver that
drips its answer a byte at a time, or streams an endless body, costs one write its deadline, never a
drain thread.

Credentials: ``headers`` (e.g. from an Airflow connection, see :func:`auth_headers`) or the URL's
``user:password@``; they are sent, never logged, never part of :attr:`HttpSink.description` nor of an
error message. A header value is stripped of surrounding whitespace (a token mounted from a secret file
ends with a newline); one that still holds a line break is refused up front, naming the header only.

Client: `httpx <https://www.python-httpx.org/>`_, one pooled client per sink shared by the drain threads
(keep-alive connections up to ``max_connections``), with the environment's proxies (``HTTPS_PROXY``,
``HTTP_PROXY``, ``NO_PROXY``) and TLS settings (``SSL_CERT_FILE``, ``SSL_CERT_DIR``).
"""

from __future__ import annotations

import base64
import concurrent.futures
import email.utils
import json
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

from batchq.errors import safe_error_text
from batchq.drain.sink import SinkMisconfigured, SinkRejected, SinkUnavailable
from batchq.messages import WorkResult
from batchq.store.rules import merge_duplicates

_BACKPRESSURE = {429, 503}
_TRANSIENT = {408, 500, 502, 504}
_AUTH = {401, 403}
#: Default longest wait one ``Retry-After`` can ask for.
DEFAULT_RETRY_AFTER_CAP_S = 60.0
#: Default total time one write may take, answer included.
DEFAULT_TOTAL_TIMEOUT_S = 30.0
#: Default most bytes of an answer read (a receiver's answer is a status; its text only explains it).
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
#: Default pooled connections (and concurrent writes) per sink.
DEFAULT_MAX_CONNECTIONS = 16
#: Receiver bytes looked at for an error message, and the characters of it kept: a rejection is stored
#: with the quarantined results and shown in the ledger and the Batch view, and a receiver may echo
#: anything (a request header, a token) back. One line, masked inside Airflow, capped.
DETAIL_BYTES = 300
DETAIL_CHARS = 120


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
    newline). A value still holding a control character (CR, LF, NUL, ...) would be a header injection,
    and HTTP clients refuse it with the value (a credential) in their message: refuse it here, naming
    the header only, before any result is involved."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        value = str(value).strip()
        if any((ord(ch) < 32 and ch != "\t") or ord(ch) == 127 for ch in value) or any(ord(ch) <= 32 or ord(ch) == 127 for ch in str(name)):
            raise ValueError(f"HTTP sink header {str(name)[:64]!r}: the value (or the name) contains a control character (CR/LF?); fix the connection")
        out[str(name)] = value
    return out


class HttpSink:
    """POST result batches to ``url``.

    :param url: ``http://`` or ``https://`` endpoint of the real-time system (``user:password@`` in it
        becomes basic auth).
    :param headers: extra request headers (e.g. from :func:`auth_headers`); never logged.
    :param timeout_s: longest wait for any one step (connect, one read, one write).
    :param total_timeout_s: longest one write may take, from sending to the last byte of the answer read.
    :param max_response_bytes: most bytes of an answer read; the rest is never read (the connection is
        closed instead of reused).
    :param retry_after_cap_s: longest wait a ``Retry-After`` may ask for.
    :param max_connections: pooled keep-alive connections, and concurrent writes.
    :param transport: an httpx transport (tests); default httpx's, with the environment's proxies and TLS.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        total_timeout_s: float = DEFAULT_TOTAL_TIMEOUT_S,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        retry_after_cap_s: float = DEFAULT_RETRY_AFTER_CAP_S,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        transport: httpx.BaseTransport | None = None,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("HTTP sink URL must be http(s)://host[:port]/path")
        if not retry_after_cap_s > 0:
            raise ValueError(f"retry_after_cap_s must be > 0, got {retry_after_cap_s}")
        if not (timeout_s > 0 and total_timeout_s > 0):
            raise ValueError(f"timeout_s and total_timeout_s must be > 0, got {timeout_s}, {total_timeout_s}")
        if max_response_bytes < 1 or max_connections < 1:
            raise ValueError("max_response_bytes and max_connections must be >= 1")
        netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        if ":" in parts.hostname:  # IPv6 literal
            netloc = f"[{parts.hostname}]" + ("" if parts.port is None else f":{parts.port}")
        # Credentials leave the URL (they would show in httpx's errors) and travel as a header.
        self._url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        url_auth = auth_headers(unquote(parts.username), unquote(parts.password or "")) if parts.username else {}
        self._headers = clean_headers({"Content-Type": "application/json", **url_auth, **(headers or {})})
        self.timeout_s = timeout_s
        self.total_timeout_s = total_timeout_s
        self.max_response_bytes = max_response_bytes
        self.retry_after_cap_s = retry_after_cap_s
        self.max_connections = max_connections
        self.description = f"http:{parts.scheme}://{netloc}{parts.path}"
        self._transport = transport
        self._lock = threading.Lock()
        self._client = self._new_client()
        # Each exchange runs on a pool thread, so the caller can stop waiting at the deadline however the
        # receiver behaves (a byte every few seconds defeats any per-read timeout).
        self._exchanges = concurrent.futures.ThreadPoolExecutor(max_workers=max_connections, thread_name_prefix="batchq-http-sink")

    def _new_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=httpx.Timeout(self.timeout_s),
            limits=httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections),
            follow_redirects=False,
            trust_env=True,  # HTTP(S)_PROXY / NO_PROXY, SSL_CERT_FILE / SSL_CERT_DIR
            transport=self._transport,
        )

    def _reset_client(self, stuck: httpx.Client) -> None:
        """A write overran its deadline: close the client under it (its sockets with it, so the stuck
        exchange ends at its next read) and give the next writes a fresh one. Other writes in flight on
        the old client fail as transient and are retried."""
        with self._lock:
            if self._client is stuck:
                self._client = self._new_client()
        try:
            stuck.close()
        except Exception:  # noqa: BLE001, S110 - closing is best effort; the client is dropped either way
            pass

    def _exchange(self, client: httpx.Client, body: bytes, deadline: float) -> tuple[int, httpx.Headers, bytes]:
        """POST and read at most ``max_response_bytes`` of the answer, stopping at ``deadline``."""
        with client.stream("POST", self._url, content=body, headers=self._headers) as resp:
            payload = bytearray()
            for chunk in resp.iter_raw():
                payload += chunk[: self.max_response_bytes - len(payload)]
                if len(payload) >= self.max_response_bytes or time.monotonic() >= deadline:
                    break  # the rest is never read; closing the stream drops the connection
            return resp.status_code, resp.headers, bytes(payload)

    def write(self, results: Sequence[WorkResult]) -> None:
        if not results:
            return
        body = json.dumps({"results": [r.model_dump(mode="json") for r in merge_duplicates(results)]}).encode()
        with self._lock:
            client = self._client
        deadline = time.monotonic() + self.total_timeout_s
        future = self._exchanges.submit(self._exchange, client, body, deadline)
        try:
            status, headers, payload = future.result(timeout=self.total_timeout_s)
        except concurrent.futures.TimeoutError:
            self._reset_client(client)
            raise SinkUnavailable(f"{self.description}: no complete answer within the {self.total_timeout_s:g}s write deadline") from None
        except (httpx.HTTPError, OSError) as exc:
            # httpx's messages name the URL without credentials (they are headers here), never a header.
            raise SinkUnavailable(f"{self.description}: {type(exc).__name__}: {exc}") from exc
        if 200 <= status < 300:
            return
        detail = safe_error_text(" ".join(payload[:DETAIL_BYTES].decode(errors="replace").split()), DETAIL_CHARS)
        if status in _AUTH:
            raise SinkMisconfigured(
                f"{self.description}: HTTP {status}: the sink refuses our credentials; fix the sink connection's "
                "login/password/token (the results stay on the queue)"
            )
        if 300 <= status < 400:
            raise SinkMisconfigured(
                f"{self.description}: HTTP {status} redirect (to {headers.get('Location')!r}): set the sink URL "
                "to the final endpoint (results are not re-posted to a redirect; they stay on the queue)"
            )
        if status in _BACKPRESSURE:
            raise SinkUnavailable(
                f"{self.description}: HTTP {status} (back-pressure) {detail}",
                retry_after_s=parse_retry_after(headers.get("Retry-After"), cap=self.retry_after_cap_s),
                backpressure=True,
            )
        if status in _TRANSIENT or status >= 500:
            raise SinkUnavailable(
                f"{self.description}: HTTP {status} {detail}",
                retry_after_s=parse_retry_after(headers.get("Retry-After"), cap=self.retry_after_cap_s),
            )
        raise SinkRejected(f"{self.description}: HTTP {status} {detail}")

    def close(self) -> None:
        self._exchanges.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            client = self._client
        client.close()

    def __repr__(self) -> str:  # never the headers: they carry credentials
        return f"HttpSink({self.description})"
