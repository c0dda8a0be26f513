"""THE SQS data plane: every send, receive, delete, visibility change and count batchq makes, as plain
functions over a boto3 client.

One implementation each, used by the Airflow operators, the workers, the drainer, the CLI and the
benchmarks; :func:`aget_snapshot` is the one async variant (triggers await an aiobotocore client).
Provisioning, ARNs, redrive policies and move tasks live beside it in :mod:`batchq.sqs.queues`; parsing and
decisions live in :mod:`batchq.monitor.waits`. No other module calls a client method.

Retries: botocore retries whole calls (throttles, 5xx, connection errors) under the one policy of
:func:`batchq.sqs.client.botocore_config`; what it still raises is final here. batchq retries only what botocore
cannot see: the ``Failed`` entries of a batch call whose ``SenderFault`` is false, with
:func:`batchq.sqs.retry.backoff_delay`. Entries the sender got wrong are reported by key, never retried.
Nothing is dropped silently.
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
from batchq.errors import QueueNotFound, SendFailed
from batchq.sqs.retry import MISSING_QUEUE_CODES, backoff_delay, error_code
from batchq.sqs.snapshot import (
    COUNT_ATTRIBUTES,
    QueueSnapshot,
    snapshot_from_attributes,
)

log = logging.getLogger(__name__)


# -- sending -------------------------------------------------------------------------------------------


@dataclass
class SendReport:
    """What a send did: counts for XCom/metrics, and every key that could not be sent with its reason."""

    sent: int = 0
    bytes: int = 0
    #: SendMessageBatch calls batchq made (each may hide botocore retries: ``call_retries``).
    calls: int = 0
    #: entries re-sent because SQS listed them as ``Failed`` with ``SenderFault`` false.
    retried_entries: int = 0
    #: whole-call retries botocore made (throttles, 5xx, connection errors) that then succeeded or not.
    call_retries: int = 0
    duration_s: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)
    #: entries sent with a ``MessageGroupId`` (fair queues on a standard queue).
    grouped: int = 0
    #: why the endpoint refused ``MessageGroupId`` on this standard queue (the entries went without it).
    groups_refused: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "grouped": self.grouped,
            "groups_refused": self.groups_refused,
            "sent": self.sent,
            "bytes": self.bytes,
            "calls": self.calls,
            "retried_entries": self.retried_entries,
            "call_retries": self.call_retries,
            "duration_s": round(self.duration_s, 3),
            "failed": len(self.failed),
        }


def chunk_entries(
    items: Iterable[tuple[str, ...]], report: SendReport, max_message_bytes: int = limits.MAX_MESSAGE_BYTES
) -> Iterator[list[tuple[str, ...]]]:
    """Group ``(key, body)`` or ``(key, body, group)`` items into SendMessageBatch-sized chunks (≤ 10
    entries and ≤ 1 MiB in total). A body above ``max_message_bytes`` (the queue's
    ``MaximumMessageSize``) is recorded as failed here, never sent: one oversize entry would fail its
    whole batch call."""
    chunk: list[tuple[str, ...]] = []
    chunk_bytes = 0
    for item in items:
        key, body = item[0], item[1]
        size = len(body.encode())
        if size > max_message_bytes:
            report.failed[key] = f"MessageTooLarge: {size} bytes > {max_message_bytes}"
            continue
        if chunk and (len(chunk) == limits.MAX_BATCH_ENTRIES or chunk_bytes + size > limits.MAX_BATCH_BYTES):
            yield chunk
            chunk, chunk_bytes = [], 0
        chunk.append(item)
        chunk_bytes += size
    if chunk:
        yield chunk


@dataclass
class _BatchOutcome:
    """What one batch call over ≤ 10 entries came to, its Failed-entry retries included.

    :param succeeded: entry ids SQS accepted.
    :param failed: entry id → reason, for entries given up on (sender fault, attempts spent, or the
        call itself failed after botocore's retries).
    """

    succeeded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    retried_entries: int = 0
    call_retries: int = 0


def _retry_attempts(response_or_exc: Any) -> int:
    """Whole-call retries botocore made (``ResponseMetadata.RetryAttempts``, on success or error)."""
    response = response_or_exc if isinstance(response_or_exc, dict) else getattr(response_or_exc, "response", None)
    return int(((response or {}).get("ResponseMetadata") or {}).get("RetryAttempts", 0) or 0)


def _run_batch(
    call: Callable[..., dict[str, Any]],
    queue_url: str,
    entries: Sequence[dict[str, Any]],
    *,
    max_attempts: int,
    missing_queue_raises: bool = True,
) -> _BatchOutcome:
    """One ``*Batch`` call over ``entries`` (≤ 10, each with a unique ``Id``), re-sending only the entries
    SQS lists as ``Failed`` with ``SenderFault`` false, up to ``max_attempts`` calls in all.

    Whole-call faults are botocore's to retry (:func:`batchq.sqs.client.botocore_config`); one that still
    raises fails every pending entry with its reason — except a missing queue, which raises
    :class:`QueueNotFound` when ``missing_queue_raises`` (nothing sent to it could ever succeed).
    """
    if len(entries) > limits.MAX_BATCH_ENTRIES:
        raise ValueError(f"a batch call takes at most {limits.MAX_BATCH_ENTRIES} entries, got {len(entries)}")
    outcome = _BatchOutcome()
    pending = {e["Id"]: e for e in entries}
    last_reason: dict[str, str] = {}
    for attempt in range(1, max_attempts + 1):
        outcome.calls += 1
        try:
            response = call(QueueUrl=queue_url, Entries=list(pending.values()))
        except Exception as exc:  # classified here, reported by entry, never swallowed
            outcome.call_retries += _retry_attempts(exc)
            code = error_code(exc)
            if missing_queue_raises and code in MISSING_QUEUE_CODES:
                raise QueueNotFound(f"queue {queue_url} does not exist") from exc
            outcome.failed.update({i: f"{code}: {exc}" for i in pending})
            return outcome
        outcome.call_retries += _retry_attempts(response)
        for ok in response.get("Successful", []):
            if pending.pop(ok["Id"], None) is not None:
                outcome.succeeded.append(ok["Id"])
        for bad in response.get("Failed", []):
            if bad["Id"] not in pending:
                continue
            reason = f"{bad.get('Code')}: {bad.get('Message', '')}"
            if bad.get("SenderFault"):
                # The entry itself is wrong (e.g. ReceiptHandleIsInvalid: already handled, lease expired):
                # re-sending cannot help, so report it by id.
                outcome.failed[bad["Id"]] = reason
                del pending[bad["Id"]]
            else:
                last_reason[bad["Id"]] = reason
        if not pending:
            return outcome
        if attempt < max_attempts:
            # Failed with SenderFault false, or listed nowhere in the response: transient, re-send.
            outcome.retried_entries += len(pending)
            time.sleep(backoff_delay(attempt))
    for entry_id in pending:
        outcome.failed[entry_id] = last_reason.get(entry_id, "no result for entry in batch response")
    return outcome


class GroupIds:
    """Whether a fan-out still sets ``MessageGroupId`` on a standard queue, shared by its sending threads.

    SQS fair queues take a ``MessageGroupId`` on a standard queue as the tenant's name; an endpoint
    that predates them (or an emulator) may refuse it. The first refusal turns grouping off for the
    rest of the send and is reported once (:attr:`SendReport.groups_refused`); the refused entries are
    re-sent without it, so fair queueing degrades to a plain queue instead of failing the fan-out.
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.refused: str | None = None
        self._lock = threading.Lock()

    def refuse(self, reason: str) -> None:
        with self._lock:
            if self.refused is None:
                self.refused = reason
                log.warning(
                    "the endpoint refuses MessageGroupId on this standard queue (%s): fair queueing is off "
                    "for this send; the payloads go without it", reason,
                )
            self.enabled = False


def _refuses_group_id(reason: str) -> bool:
    """A refusal that names ``MessageGroupId`` (AWS before fair queues: ``InvalidParameterValue: The
    request include parameter that is not valid for this queue type``)."""
    text = reason.lower()
    return "messagegroupid" in text or "not valid for this queue type" in text


def _send_chunk(
    client: Any,
    queue_url: str,
    chunk: list[tuple[str, ...]],
    max_attempts: int,
    fifo: bool,
    delay_seconds: int | None,
    groups: GroupIds | None = None,
) -> SendReport:
    grouped = bool(groups and groups.enabled and not fifo)
    entries: list[dict[str, Any]] = []
    for entry_id, item in enumerate(chunk):
        key, body = item[0], item[1]
        entry: dict[str, Any] = {"Id": str(entry_id), "MessageBody": body}
        if fifo:
            entry["MessageDeduplicationId"] = key
            entry["MessageGroupId"] = key
        else:
            if delay_seconds:
                entry["DelaySeconds"] = delay_seconds
            if grouped and len(item) > 2:
                entry["MessageGroupId"] = item[2]
        entries.append(entry)
    outcome = _run_batch(client.send_message_batch, queue_url, entries, max_attempts=max_attempts)
    if grouped and outcome.failed and groups is not None:
        refused = {i: r for i, r in outcome.failed.items() if _refuses_group_id(r)}
        if refused:
            groups.refuse(next(iter(refused.values())))
            retry = [{k: v for k, v in entries[int(i)].items() if k != "MessageGroupId"} for i in refused]
            again = _run_batch(client.send_message_batch, queue_url, retry, max_attempts=max_attempts)
            for i in refused:
                del outcome.failed[i]
            outcome.succeeded.extend(again.succeeded)
            outcome.failed.update(again.failed)
            outcome.calls += again.calls
            outcome.retried_entries += again.retried_entries
            outcome.call_retries += again.call_retries
    report = SendReport(calls=outcome.calls, retried_entries=outcome.retried_entries, call_retries=outcome.call_retries)
    for entry_id in outcome.succeeded:
        report.sent += 1
        report.bytes += len(chunk[int(entry_id)][1].encode())
        if "MessageGroupId" in entries[int(entry_id)] and not fifo and groups is not None and groups.refused is None:
            report.grouped += 1
    for entry_id, reason in outcome.failed.items():
        report.failed[chunk[int(entry_id)][0]] = reason
    return report


def send_bodies(
    client: Any,
    queue_url: str,
    items: Iterable[tuple[str, ...]],
    *,
    max_in_flight: int = 8,
    max_attempts: int = 6,
    delay_seconds: int | None = None,
    raise_on_failure: bool = True,
    on_progress: Callable[[SendReport], None] | None = None,
    max_message_bytes: int = limits.MAX_MESSAGE_BYTES,
    group_ids: bool = False,
) -> SendReport:
    """Send ``(key, body)`` pairs with SendMessageBatch, ``max_in_flight`` calls at a time.

    With ``group_ids`` the items are ``(key, body, group)`` and each message on a standard queue
    carries ``MessageGroupId=group`` (SQS fair queues); an endpoint that refuses it gets the messages
    without it and the report says why, once (:class:`GroupIds`).

    Memory stays flat: ``items`` is consumed lazily and at most ``2 × max_in_flight`` chunks are queued.
    Entries SQS fails transiently are re-sent with :func:`~batchq.sqs.retry.backoff_delay` (whole-call faults
    are botocore's to retry); at the end, if any key was not sent and ``raise_on_failure``,
    :class:`SendFailed` lists every such key with its reason.

    :param client: a boto3 SQS client (thread-safe; give it ``max_pool_connections >= max_in_flight``).
    :param max_attempts: SendMessageBatch calls per chunk, the first included, for its ``Failed`` entries.
    :param delay_seconds: delivery delay of every message (standard queues; 0..900).
    :param on_progress: called from the caller's thread with the running report after each chunk.
    :param max_message_bytes: the queue's ``MaximumMessageSize``; larger bodies fail by key, unsent.
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    if delay_seconds is not None and not 0 <= delay_seconds <= limits.MAX_DELAY_SECONDS:
        raise ValueError(f"delay_seconds must be 0..{limits.MAX_DELAY_SECONDS}, got {delay_seconds}")
    started = time.perf_counter()
    report = SendReport()
    fifo = queue_url.endswith(".fifo")
    groups = GroupIds(group_ids) if group_ids else None
    lock = threading.Lock()

    def merge(part: SendReport) -> None:
        with lock:
            report.sent += part.sent
            report.bytes += part.bytes
            report.calls += part.calls
            report.retried_entries += part.retried_entries
            report.call_retries += part.call_retries
            report.grouped += part.grouped
            report.failed.update(part.failed)
        if on_progress:
            on_progress(report)

    chunks = chunk_entries(items, report, max_message_bytes)
    if max_in_flight == 1:
        for chunk in chunks:
            merge(_send_chunk(client, queue_url, chunk, max_attempts, fifo, delay_seconds, groups))
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
                        pool.submit(_send_chunk, client, queue_url, chunk, max_attempts, fifo, delay_seconds, groups)
                    )
                for fut in in_flight:
                    merge(fut.result())
            except BaseException:
                for fut in in_flight:
                    fut.cancel()
                raise
    report.duration_s = time.perf_counter() - started
    if groups is not None:
        report.groups_refused = groups.refused
    if report.failed and raise_on_failure:
        raise SendFailed(report.failed, sent=report.sent)
    return report


def send_message(
    client: Any,
    queue_url: str,
    body: str,
    *,
    attributes: dict[str, Any] | None = None,
    key: str | None = None,
) -> str:
    """One SendMessage (for single copies such as a dead-letter copy with its reason attributes);
    returns the MessageId. botocore has already retried a transient fault when this raises.

    :param attributes: SQS ``MessageAttributes``.
    :param key: names the message in a :class:`SendFailed` (default: the queue URL).
    :raises QueueNotFound: the queue does not exist.
    :raises SendFailed: any other refusal, with SQS's code and message as the reason.
    """
    kwargs: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body}
    if attributes:
        kwargs["MessageAttributes"] = attributes
    try:
        return str(client.send_message(**kwargs)["MessageId"])
    except Exception as exc:  # classified: missing queue, or a reason by key
        code = error_code(exc)
        if code in MISSING_QUEUE_CODES:
            raise QueueNotFound(f"queue {queue_url} does not exist") from exc
        raise SendFailed({key or queue_url: f"{code}: {exc}"}) from exc


# -- receiving, deleting, visibility ----------------------------------------------------------------------


def receive_messages(
    client: Any,
    queue_url: str,
    *,
    max_messages: int = limits.MAX_RECEIVE_MESSAGES,
    wait_seconds: int = limits.MAX_WAIT_TIME_SECONDS,
    visibility_timeout: int | None = None,
) -> list[dict[str, Any]]:
    """One ReceiveMessage call with the system attributes batchq uses (receive count; sent and first
    receive timestamps, the queue lag of each message: :func:`batchq.worker.execute.queue_times`)."""
    kwargs: dict[str, Any] = {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": max(1, min(max_messages, limits.MAX_RECEIVE_MESSAGES)),
        "WaitTimeSeconds": max(0, min(wait_seconds, limits.MAX_WAIT_TIME_SECONDS)),
        "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp"],
    }
    if visibility_timeout is not None:
        kwargs["VisibilityTimeout"] = visibility_timeout
    try:
        return client.receive_message(**kwargs).get("Messages", [])
    except Exception as exc:
        if error_code(exc) in MISSING_QUEUE_CODES:
            raise QueueNotFound(f"queue {queue_url} does not exist") from exc
        raise


def _batched(
    call: Callable[..., dict[str, Any]],
    queue_url: str,
    messages: Sequence[dict[str, Any]],
    entries: Sequence[dict[str, Any]],
    max_attempts: int,
) -> dict[str, str]:
    """:func:`_run_batch` over ``entries`` ten at a time (entry ``Id`` = index into ``messages``);
    ``{MessageId: reason}`` for the messages that still failed. A missing queue is reported per message,
    not raised: callers of delete/visibility treat every failure alike (the message comes back)."""
    failed: dict[str, str] = {}
    for start in range(0, len(entries), limits.MAX_BATCH_ENTRIES):
        chunk = entries[start : start + limits.MAX_BATCH_ENTRIES]
        outcome = _run_batch(call, queue_url, chunk, max_attempts=max_attempts, missing_queue_raises=False)
        failed.update({messages[int(i)]["MessageId"]: reason for i, reason in outcome.failed.items()})
    return failed


def delete_messages(
    client: Any, queue_url: str, messages: Sequence[dict[str, Any]], *, max_attempts: int = 5
) -> dict[str, str]:
    """Batch-delete received messages. Returns ``{MessageId: reason}`` for those not deleted (they will
    be redelivered; consumers are idempotent)."""
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
    return _batched(client.delete_message_batch, queue_url, messages, entries, max_attempts)


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
    return _batched(client.change_message_visibility_batch, queue_url, messages, entries, max_attempts)


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
