"""A loopback HTTP proxy in front of a real SQS endpoint that injects SendMessageBatch faults.

moto fails batch entries only for a bad ``DelaySeconds`` and LocalStack hardly ever, so the partial-failure
paths of :func:`batchq.sqs.send_bodies` cannot be reached against them directly. This proxy forwards every
request to the real endpoint unchanged, except ``AmazonSQS.SendMessageBatch`` (AWS JSON protocol:
``X-Amz-Target`` header, JSON body), where it can:

- fail chosen entries: they are removed from the forwarded request and listed in the response's ``Failed``
  with ``SenderFault`` false (transient, for the first ``n`` attempts of that key) or true (permanent);
- fail whole calls: the next calls get an HTTP error (e.g. 400 ``ThrottlingException``, 500
  ``InternalError``) without reaching the endpoint.

Entries are identified by the ``key`` field of their JSON body (batchq payloads carry one). The proxy
records every attempt per key, so a test can assert what was retried and what was not. It is a real
HTTP hop, not a mock: what reaches the queue is what the endpoint accepted.

It also records, in order, ``ProxyLog.events``: ``("sent", queue_url, key)`` once the endpoint
confirmed a SendMessageBatch entry (before the caller sees the response) and ``("delete", queue_url,
key)`` when a DeleteMessageBatch entry is requested (keys of deletes come from the ReceiveMessage
responses the proxy forwarded, by receipt handle). A worker that deletes an input before its result
is confirmed shows up as a ``delete`` before the ``sent`` of that key.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_TARGET = "AmazonSQS.SendMessageBatch"


@dataclass
class FaultPlan:
    """What to break. Mutate it between calls (under ``lock``) to change behaviour mid-test.

    :param transient: key → number of attempts that fail with ``SenderFault`` false before it passes.
    :param permanent: keys whose entries always fail with ``SenderFault`` true.
    :param call_errors: HTTP errors for the next whole SendMessageBatch calls, consumed in order:
        ``(status, error_code)``.
    """

    transient: dict[str, int] = field(default_factory=dict)
    permanent: set[str] = field(default_factory=set)
    call_errors: list[tuple[int, str]] = field(default_factory=list)
    #: queue names whose GetQueueAttributes answers 400 ``AccessDenied`` (with AWS's kind of message:
    #: an account id and a role ARN, which batchq must never pass on).
    denied_attributes: set[str] = field(default_factory=set)
    #: fail every entry that carries a ``MessageGroupId`` the way AWS did before fair queues (a
    #: standard queue refused the parameter), SenderFault true.
    refuse_group_ids: bool = False


#: The message of an injected AccessDenied, with the details a real one carries.
DENIED_MESSAGE = "User: arn:aws:sts::123456789012:assumed-role/secret-role/i-0abc is not authorized to perform: sqs:getqueueattributes"


@dataclass
class ProxyLog:
    """What the proxy saw: SendMessageBatch calls, attempts per key, and what it injected."""

    batch_calls: int = 0
    forwarded_calls: int = 0
    attempts: Counter = field(default_factory=Counter)
    injected_entry_failures: Counter = field(default_factory=Counter)
    injected_call_errors: int = 0
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (op, queue_url, key), in order
    #: every request, in order: ``(operation, queue)`` — the X-Amz-Target's operation and the body's
    #: ``QueueUrl`` (or ``QueueName`` for GetQueueUrl); what a least-privilege check compares with a role.
    calls: list = field(default_factory=list)
    receipts: dict[str, str] = field(default_factory=dict)  # receipt handle -> key


def _body_key(body: str) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    return parsed.get("key", body) if isinstance(parsed, dict) else body


def _entry_key(entry: dict[str, Any]) -> str:
    return _body_key(entry.get("MessageBody", ""))


class SqsFaultProxy:
    """``with SqsFaultProxy(upstream_url) as proxy:`` → point a boto3 client at ``proxy.url``.

    :param upstream: the real SQS endpoint, ``http://host:port``.
    """

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http://host:port URL, got {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.plan = FaultPlan()
        self.log = ProxyLog()
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="sqs-fault-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> SqsFaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- request handling -------------------------------------------------------------------------
    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")}
            headers["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            headers["Content-Length"] = str(len(body))
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _send_message_batch(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        request = json.loads(body)
        entries = request.get("Entries", [])
        failed: list[dict[str, Any]] = []
        keep: list[dict[str, Any]] = []
        with self.lock:
            self.log.batch_calls += 1
            if self.plan.call_errors:
                status, code = self.plan.call_errors.pop(0)
                self.log.injected_call_errors += 1
                payload = {"__type": f"com.amazonaws.sqs#{code}", "message": f"injected {code}"}
                return status, [("x-amzn-query-error", f"{code};Sender")], json.dumps(payload).encode()
            for entry in entries:
                key = _entry_key(entry)
                self.log.attempts[key] += 1
                if self.plan.refuse_group_ids and "MessageGroupId" in entry:
                    failed.append({"Id": entry["Id"], "SenderFault": True, "Code": "InvalidParameterValue",
                                   "Message": f"Value {entry['MessageGroupId']} for parameter MessageGroupId is invalid. "
                                   "Reason: The request include parameter that is not valid for this queue type."})
                    self.log.injected_entry_failures[key] += 1
                elif key in self.plan.permanent:
                    failed.append({"Id": entry["Id"], "SenderFault": True, "Code": "InvalidParameterValue",
                                   "Message": "injected permanent failure"})
                    self.log.injected_entry_failures[key] += 1
                elif self.plan.transient.get(key, 0) > 0:
                    self.plan.transient[key] -= 1
                    failed.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError",
                                   "Message": "injected transient failure"})
                    self.log.injected_entry_failures[key] += 1
                else:
                    keep.append(entry)
        if not keep:
            return 200, [], json.dumps({"Successful": [], "Failed": failed}).encode()
        status, resp_headers, resp_body = self._forward("POST", path, headers, json.dumps({**request, "Entries": keep}).encode())
        with self.lock:
            self.log.forwarded_calls += 1
            if status == 200:
                keys = {e["Id"]: _entry_key(e) for e in keep}
                for ok in json.loads(resp_body).get("Successful", []):
                    self.log.events.append(("sent", request.get("QueueUrl", ""), keys.get(ok["Id"], "?")))
        if status != 200 or not failed:
            return status, resp_headers, resp_body
        merged = json.loads(resp_body)
        merged["Failed"] = list(merged.get("Failed", [])) + failed
        return status, resp_headers, json.dumps(merged).encode()

    def _denied(self, body: bytes) -> bool:
        url = str(json.loads(body or b"{}").get("QueueUrl", ""))
        with self.lock:
            return url.rstrip("/").rsplit("/", 1)[-1] in self.plan.denied_attributes

    def _record_call(self, target: str | None, body: bytes) -> None:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        queue = request.get("QueueUrl") or request.get("QueueName") or ""
        with self.lock:
            self.log.calls.append(((target or "?").rpartition(".")[2], queue))

    def _record_receipts(self, resp_body: bytes) -> None:
        with self.lock:
            for m in json.loads(resp_body or b"{}").get("Messages", []):
                self.log.receipts[m["ReceiptHandle"]] = _body_key(m.get("Body", ""))

    def _record_deletes(self, body: bytes) -> None:
        request = json.loads(body or b"{}")
        with self.lock:
            for e in request.get("Entries", []):
                key = self.log.receipts.get(e.get("ReceiptHandle", ""), "?")
                self.log.events.append(("delete", request.get("QueueUrl", ""), key))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = dict(self.headers.items())
                target = headers.get("X-Amz-Target")
                proxy._record_call(target, body)
                if target == _TARGET:
                    status, resp_headers, resp_body = proxy._send_message_batch(self.path, headers, body)
                elif target == "AmazonSQS.GetQueueAttributes" and proxy._denied(body):
                    payload = {"__type": "com.amazonaws.sqs#AccessDenied", "message": DENIED_MESSAGE}
                    status, resp_headers, resp_body = 400, [("x-amzn-query-error", "AccessDenied;Sender")], json.dumps(payload).encode()
                else:
                    if target == "AmazonSQS.DeleteMessageBatch":
                        proxy._record_deletes(body)
                    status, resp_headers, resp_body = proxy._forward(self.command, self.path, headers, body)
                    if target == "AmazonSQS.ReceiveMessage" and status == 200:
                        proxy._record_receipts(resp_body)
                self.send_response(status)
                skip = {"content-length", "transfer-encoding", "connection", "server", "date"}
                sent_type = False
                for name, value in resp_headers:
                    if name.lower() not in skip:
                        self.send_header(name, value)
                        sent_type |= name.lower() == "content-type"
                if not sent_type:
                    self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(resp_body)))
                self.end_headers()
                self.wfile.write(resp_body)

            do_POST = do_GET = _handle

        return Handler
