"""The SQS calls batchq makes, as plain functions over a boto3 client.

One implementation each, used by the Airflow operators, the workers, the drainer, the CLI and the
benchmarks. The async trigger side uses the ``a*`` variants, which differ only in awaiting an
aiobotocore client; parsing and decisions live in :mod:`batchq.health`.

Invariant: every batch call's ``Failed`` entries are handled — retried when SQS says the fault is
its own (``SenderFault`` false), reported by key when not. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import threading
import time

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from batchq import limits
from batchq.spec import QueueSpec
from batchq.errors import QueueNotFound, SendFailed
from batchq.health import COUNT_ATTRIBUTES, QueueSnapshot, snapshot_from_attributes
from batchq.retry import MISSING_QUEUE_CODES, backoff_delay, error_code, is_retryable

log = logging.getLogger(__name__)



# -- sending -------------------------------------------------------------------------------------------


@dataclass
class SendReport:
    """What a send did: counts for XCom/metrics, and every key that could not be sent with its reason."""

    sent: int = 0
    bytes: int = 0
    calls: int = 0
    retried_entries: int = 0
    duration_s: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "bytes": self.bytes,
            "calls": self.calls,
            "retried_entries": self.retried_entries,
            "duration_s": round(self.duration_s, 3),
            "failed": len(self.failed),
        }


def chunk_entries(
    items: Iterable[tuple[str, str]], report: SendReport, max_message_bytes: int = limits.MAX_MESSAGE_BYTES
) -> Iterator[list[tuple[str, str]]]:
    """Group ``(key, body)`` into SendMessageBatch-sized chunks (≤ 10 entries and ≤ 1 MiB in total).
    A body above ``max_message_bytes`` (the queue's ``MaximumMessageSize``) is recorded as failed here,
    never sent: one oversize entry would fail its whole batch call."""
    chunk: list[tuple[str, str]] = []
    chunk_bytes = 0
    for key, body in items:
        size = len(body.encode())
        if size > max_message_bytes:
            report.failed[key] = f"MessageTooLarge: {size} bytes > {max_message_bytes}"
            continue
        if chunk and (len(chunk) == limits.MAX_BATCH_ENTRIES or chunk_bytes + size > limits.MAX_BATCH_BYTES):
            yield chunk
            chunk, chunk_bytes = [], 0
        chunk.append((key, body))
        chunk_bytes += size
    if chunk:
        yield chunk


def _send_chunk(
    client: Any,
    queue_url: str,
    chunk: list[tuple[str, str]],
    max_attempts: int,
    fifo: bool,
    delay_seconds: int | None,
) -> SendReport:
    report = SendReport()
    pending = {str(i): (key, body) for i, (key, body) in enumerate(chunk)}
    attempt = 0
    while pending:
        attempt += 1
        entries = []
        for entry_id, (key, body) in pending.items():
            entry: dict[str, Any] = {"Id": entry_id, "MessageBody": body}
            if fifo:
                entry["MessageDeduplicationId"] = key
                entry["MessageGroupId"] = key
            elif delay_seconds:
                entry["DelaySeconds"] = delay_seconds
            entries.append(entry)
        try:
            report.calls += 1
            response = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
            if error_code(exc) in MISSING_QUEUE_CODES:
                raise QueueNotFound(f"queue {queue_url} does not exist") from exc
            if not is_retryable(exc) or attempt >= max_attempts:
                for key, _ in pending.values():
                    report.failed[key] = f"{error_code(exc)}: {exc}"
                return report
            report.retried_entries += len(pending)
            time.sleep(backoff_delay(attempt))
            continue
        for ok in response.get("Successful", []):
            key, body = pending.pop(ok["Id"])
            report.sent += 1
            report.bytes += len(body.encode())
        retry_now = False
        for bad in response.get("Failed", []):
            key, _ = pending[bad["Id"]]
            reason = f"{bad.get('Code')}: {bad.get('Message', '')}"
            if bad.get("SenderFault") or attempt >= max_attempts:
                # The entry itself is wrong (or we gave up): report it by key, do not retry.
                report.failed[key] = reason
                del pending[bad["Id"]]
            else:
                retry_now = True
        if pending:
            if retry_now:
                report.retried_entries += len(pending)
                time.sleep(backoff_delay(attempt))
            else:  # SQS listed neither success nor failure for some ids: treat as transient
                report.retried_entries += len(pending)
                if attempt >= max_attempts:
                    for key, _ in pending.values():
                        report.failed[key] = "no result for entry in SendMessageBatch response"
                    return report
    return report


def send_bodies(
    client: Any,
    queue_url: str,
    items: Iterable[tuple[str, str]],
    *,
    max_in_flight: int = 8,
    max_attempts: int = 6,
    delay_seconds: int | None = None,
    raise_on_failure: bool = True,
    on_progress: Callable[[SendReport], None] | None = None,
    max_message_bytes: int = limits.MAX_MESSAGE_BYTES,
) -> SendReport:
    """Send ``(key, body)`` pairs with SendMessageBatch, ``max_in_flight`` calls at a time.

    Memory stays flat: ``items`` is consumed lazily and at most ``2 × max_in_flight`` chunks are queued.
    Entries that fail transiently are retried with jittered backoff; at the end, if any key was not sent
    and ``raise_on_failure``, :class:`SendFailed` lists every such key with its reason.

    :param client: a boto3 SQS client (thread-safe; give it ``max_pool_connections >= max_in_flight``).
    :param on_progress: called from the caller's thread with the running report after each chunk.
    :param max_message_bytes: the queue's ``MaximumMessageSize``; larger bodies fail by key, unsent.
    """
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be >= 1")
    started = time.perf_counter()
    report = SendReport()
    fifo = queue_url.endswith(".fifo")
    lock = threading.Lock()

    def merge(part: SendReport) -> None:
        with lock:
            report.sent += part.sent
            report.bytes += part.bytes
            report.calls += part.calls
            report.retried_entries += part.retried_entries
            report.failed.update(part.failed)
        if on_progress:
            on_progress(report)

    chunks = chunk_entries(items, report, max_message_bytes)
    if max_in_flight == 1:
        for chunk in chunks:
            merge(_send_chunk(client, queue_url, chunk, max_attempts, fifo, delay_seconds))
    else:
        with ThreadPoolExecutor(max_in_flight, thread_name_prefix="batchq-send") as pool:
            in_flight: set[Future[SendReport]] = set()
            try:
                for chunk in chunks:
                    if len(in_flight) >= 2 * max_in_flight:
                        done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                        for fut in done:
                            merge(fut.result())
                    in_flight.add(
                        pool.submit(_send_chunk, client, queue_url, chunk, max_attempts, fifo, delay_seconds)
                    )
                for fut in in_flight:
                    merge(fut.result())
            except BaseException:
                for fut in in_flight:
                    fut.cancel()
                raise
    report.duration_s = time.perf_counter() - started
    if report.failed and raise_on_failure:
        raise SendFailed(report.failed, sent=report.sent)
    return report


# -- receiving, deleting, visibility ----------------------------------------------------------------------


def receive_messages(
    client: Any,
    queue_url: str,
    *,
    max_messages: int = limits.MAX_RECEIVE_MESSAGES,
    wait_seconds: int = limits.MAX_WAIT_TIME_SECONDS,
    visibility_timeout: int | None = None,
) -> list[dict[str, Any]]:
    """One ReceiveMessage call with the system attributes batchq uses (receive count, sent timestamp)."""
    kwargs: dict[str, Any] = {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": max(1, min(max_messages, limits.MAX_RECEIVE_MESSAGES)),
        "WaitTimeSeconds": max(0, min(wait_seconds, limits.MAX_WAIT_TIME_SECONDS)),
        "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
    }
    if visibility_timeout is not None:
        kwargs["VisibilityTimeout"] = visibility_timeout
    try:
        return client.receive_message(**kwargs).get("Messages", [])
    except Exception as exc:
        if error_code(exc) in MISSING_QUEUE_CODES:
            raise QueueNotFound(f"queue {queue_url} does not exist") from exc
        raise


def _batch_call(
    call: Callable[..., dict[str, Any]],
    queue_url: str,
    entries: Sequence[dict[str, Any]],
    max_attempts: int,
) -> dict[str, str]:
    """Run a 10-entry batch call (delete / change visibility) over ``entries`` (each with an ``Id``),
    retrying transient failures. Returns ``{Id: reason}`` for entries that still failed."""
    failed: dict[str, str] = {}
    for start in range(0, len(entries), limits.MAX_BATCH_ENTRIES):
        pending = {e["Id"]: e for e in entries[start : start + limits.MAX_BATCH_ENTRIES]}
        for attempt in range(1, max_attempts + 1):
            try:
                response = call(QueueUrl=queue_url, Entries=list(pending.values()))
            except Exception as exc:  # noqa: BLE001
                if not is_retryable(exc) or attempt == max_attempts:
                    failed.update({i: f"{error_code(exc)}: {exc}" for i in pending})
                    break
                time.sleep(backoff_delay(attempt))
                continue
            for ok in response.get("Successful", []):
                pending.pop(ok["Id"], None)
            retry = {}
            for bad in response.get("Failed", []):
                if bad.get("SenderFault") or attempt == max_attempts:
                    # e.g. ReceiptHandleIsInvalid: the message was already handled or its lease expired;
                    # retrying cannot help, so report it (it will be redelivered: at-least-once).
                    failed[bad["Id"]] = f"{bad.get('Code')}: {bad.get('Message', '')}"
                    pending.pop(bad["Id"], None)
                else:
                    retry[bad["Id"]] = pending[bad["Id"]]
            pending = retry if response.get("Failed") else pending
            if not pending:
                break
            if attempt == max_attempts:
                failed.update({i: "no result for entry in batch response" for i in pending})
                break
            time.sleep(backoff_delay(attempt))
    return failed


def delete_messages(
    client: Any, queue_url: str, messages: Sequence[dict[str, Any]], *, max_attempts: int = 5
) -> dict[str, str]:
    """Batch-delete received messages. Returns ``{MessageId: reason}`` for those not deleted (they will
    be redelivered; consumers are idempotent)."""
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
    failed = _batch_call(client.delete_message_batch, queue_url, entries, max_attempts)
    return {messages[int(i)]["MessageId"]: reason for i, reason in failed.items()}


def change_visibility(
    client: Any,
    queue_url: str,
    messages: Sequence[dict[str, Any]],
    timeout_s: int | Sequence[int],
    *,
    max_attempts: int = 3,
) -> dict[str, str]:
    """Batch ChangeMessageVisibility (extend a lease, or 0 to hand a message back at once). ``timeout_s``
    is one value for all or one per message. Returns ``{MessageId: reason}`` for failures."""
    timeouts = [timeout_s] * len(messages) if isinstance(timeout_s, int) else list(timeout_s)
    entries = [
        {
            "Id": str(i),
            "ReceiptHandle": m["ReceiptHandle"],
            "VisibilityTimeout": max(0, min(int(t), limits.MAX_VISIBILITY_TIMEOUT_SECONDS)),
        }
        for i, (m, t) in enumerate(zip(messages, timeouts))
    ]
    failed = _batch_call(client.change_message_visibility_batch, queue_url, entries, max_attempts)
    return {messages[int(i)]["MessageId"]: reason for i, reason in failed.items()}


# -- attributes and snapshots -------------------------------------------------------------------------


def get_queue_url(client: Any, name: str) -> str:
    """URL of the queue ``name``; a value that already is a URL is returned as given, so every option
    that names a queue accepts either."""
    if name.startswith(("http://", "https://")):
        return name
    try:
        return client.get_queue_url(QueueName=name)["QueueUrl"]
    except Exception as exc:
        if error_code(exc) in MISSING_QUEUE_CODES:
            raise QueueNotFound(f"queue {name!r} does not exist (create it: batchq queues create)") from exc
        raise


def get_snapshot(client: Any, queue_url: str, dlq_url: str | None = None) -> QueueSnapshot:
    """Counts of ``queue_url`` (and its DLQ's visible count) right now."""
    attrs = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(COUNT_ATTRIBUTES))
    dlq_attrs = None
    if dlq_url:
        dlq_attrs = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=[COUNT_ATTRIBUTES[0]])
        dlq_attrs = dlq_attrs.get("Attributes", {})
    return snapshot_from_attributes(attrs.get("Attributes", {}), time.time(), dlq_attrs)


async def aget_snapshot(client: Any, queue_url: str, dlq_url: str | None = None) -> QueueSnapshot:
    """:func:`get_snapshot` over an aiobotocore client (for triggers: never blocks the event loop)."""
    attrs = await client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(COUNT_ATTRIBUTES))
    dlq_attrs = None
    if dlq_url:
        dlq_attrs = (await client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=[COUNT_ATTRIBUTES[0]]))
        dlq_attrs = dlq_attrs.get("Attributes", {})
    return snapshot_from_attributes(attrs.get("Attributes", {}), time.time(), dlq_attrs)


def get_max_message_size(client: Any, queue_url: str) -> int:
    """The queue's ``MaximumMessageSize`` in bytes (body and attributes of one message); raises
    :class:`QueueNotFound` when the queue does not exist."""
    try:
        attrs = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["MaximumMessageSize"])
    except Exception as exc:
        if error_code(exc) in MISSING_QUEUE_CODES:
            raise QueueNotFound(f"queue {queue_url} does not exist") from exc
        raise
    return int(attrs.get("Attributes", {}).get("MaximumMessageSize", limits.MAX_MESSAGE_BYTES))


def get_max_receive_count(client: Any, queue_url: str) -> int | None:
    """maxReceiveCount of the queue's redrive policy, or None when it has none."""
    import json

    attrs = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
    policy = attrs.get("RedrivePolicy")
    return int(json.loads(policy)["maxReceiveCount"]) if policy else None


# -- provisioning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueUrls:
    input: str
    input_dlq: str
    results: str
    results_dlq: str

    def to_dict(self) -> dict[str, str]:
        return {"input": self.input, "input_dlq": self.input_dlq, "results": self.results, "results_dlq": self.results_dlq}


def _ensure_queue(client: Any, name: str, attributes: dict[str, str]) -> str:
    try:
        return client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except Exception as exc:
        if error_code(exc) not in ("QueueAlreadyExists", "QueueNameExists", "AWS.SimpleQueueService.QueueNameExists"):
            raise
        # Exists with other attributes: converge it to the spec (idempotent provisioning).
        url = get_queue_url(client, name)
        client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return url


def ensure_queues(client: Any, queues: QueueSpec) -> QueueUrls:
    """Create (or converge) the input and results queues, each with a DLQ and a redrive policy.
    Server-side encryption (SSE-SQS) on. Idempotent: safe to run on every deploy or DAG run."""
    import json

    def pair(name: str, dlq_name: str, max_receive: int, visibility: int) -> tuple[str, str]:
        common = {"SqsManagedSseEnabled": "true"}
        # DLQs keep messages for the maximum 14 days so there is time to inspect and redrive.
        dlq_url = _ensure_queue(client, dlq_name, {**common, "MessageRetentionPeriod": "1209600"})
        dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = _ensure_queue(
            client,
            name,
            {
                **common,
                "VisibilityTimeout": str(visibility),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}),
            },
        )
        return url, dlq_url

    input_url, input_dlq = pair(queues.input, queues.input_dlq, queues.max_receive_count, queues.visibility_timeout_s)
    results_url, results_dlq = pair(queues.results, queues.results_dlq, queues.results_max_receive_count, 60)
    return QueueUrls(input_url, input_dlq, results_url, results_dlq)


def resolve_queue_urls(client: Any, queues: QueueSpec) -> QueueUrls:
    """URLs of existing queues (raise :class:`QueueNotFound` naming the missing one)."""
    return QueueUrls(
        get_queue_url(client, queues.input),
        get_queue_url(client, queues.input_dlq),
        get_queue_url(client, queues.results),
        get_queue_url(client, queues.results_dlq),
    )


def purge_queue_messages(client: Any, queue_url: str, *, max_rounds: int = 1000) -> int:
    """Receive-and-delete until empty (PurgeQueue is rate-limited to once a minute). Returns count."""
    n = 0
    for _ in range(max_rounds):
        msgs = receive_messages(client, queue_url, wait_seconds=0)
        if not msgs:
            return n
        delete_messages(client, queue_url, msgs)
        n += len(msgs)
    return n


