"""Moving a message to its dead-letter queue ourselves, with the reason attached.

Why not wait for SQS's redrive (``maxReceiveCount``)? A permanent failure would then be received,
rejected and hidden again ``maxReceiveCount`` times, each time costing a visibility timeout, and the
DLQ copy would not say *why*. Sending it at once keeps the body byte-for-byte, records the reason in
message attributes, and works even when ``--max-attempts`` is lower than the queue's
``maxReceiveCount``. The original is deleted only after the DLQ send is confirmed, so a crash in
between yields a duplicate in the DLQ, never a loss.

Note for redrive: messages moved this way carry no SQS ``DeadLetterQueueSourceArn``, so
``StartMessageMoveTask`` needs an explicit ``DestinationArn`` (``batchq`` records the source queue in
the ``batchq-source-queue`` attribute).
"""

from __future__ import annotations

import logging
from typing import Any

from batchq import limits
from batchq.errors import BatchqError, QueueNotFound, SendFailed
from batchq.sqs import send_message

log = logging.getLogger(__name__)

REASON_ATTRIBUTE = "batchq-dead-letter-reason"
SOURCE_ATTRIBUTE = "batchq-source-queue"
ATTEMPTS_ATTRIBUTE = "batchq-attempts"
WORKER_ATTRIBUTE = "batchq-worker"
#: SQS allows 256 KiB of attribute values, but a reason is for humans: keep it short.
MAX_REASON_CHARS = 1000


def dead_letter_attributes(reason: str, source_queue: str, attempts: int, worker: str) -> dict[str, Any]:
    def s(v: str) -> dict[str, str]:
        return {"DataType": "String", "StringValue": v or "-"}

    return {
        REASON_ATTRIBUTE: s(reason[:MAX_REASON_CHARS]),
        SOURCE_ATTRIBUTE: s(source_queue),
        ATTEMPTS_ATTRIBUTE: {"DataType": "Number", "StringValue": str(max(1, attempts))},
        WORKER_ATTRIBUTE: s(worker),
    }


class DeadLetterTooLarge(BatchqError):
    """The body alone leaves no room for the reason attributes within the DLQ's ``MaximumMessageSize``:
    the copy is not sent, and the message is left to SQS's own redrive (the reason is logged)."""


def message_bytes(body: str, attributes: dict[str, Any]) -> int:
    """Size SQS counts against ``MaximumMessageSize``: body plus each attribute's name, type and value."""
    size = len(body.encode())
    for name, value in attributes.items():
        size += len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
    return size


def fit_dead_letter_attributes(
    body: str, reason: str, source_queue: str, attempts: int, worker: str, max_bytes: int
) -> dict[str, Any]:
    """The reason attributes for a DLQ copy of ``body``, with the reason shortened (marker ``…``) so
    that body + attributes fit ``max_bytes``. Raises :class:`DeadLetterTooLarge` if not even a short
    reason fits."""
    attributes = dead_letter_attributes(reason, source_queue, attempts, worker)
    over = message_bytes(body, attributes) - max_bytes
    if over <= 0:
        return attributes
    current = attributes[REASON_ATTRIBUTE]["StringValue"].encode()
    room = len(current) - over - len("…".encode())
    if room < 16:  # a reason cut shorter than this says nothing: let SQS's redrive move it instead
        raise DeadLetterTooLarge(
            f"body of {len(body.encode())} bytes leaves no room for the dead-letter reason within the "
            f"dead-letter queue's limit of {max_bytes} bytes"
        )
    attributes[REASON_ATTRIBUTE] = {"DataType": "String", "StringValue": current[:room].decode(errors="ignore") + "…"}
    return attributes


def send_to_dead_letter(
    client: Any,
    dlq_url: str,
    body: str,
    *,
    reason: str,
    source_queue: str,
    attempts: int,
    worker: str,
    max_bytes: int = limits.MAX_MESSAGE_BYTES,
) -> None:
    """Send ``body`` to ``dlq_url`` with the reason attributes, the reason shortened so that body and
    attributes fit the DLQ's ``max_bytes``. botocore retries a transient fault; what still fails raises
    (:class:`~batchq.errors.SendFailed` / :class:`~batchq.errors.QueueNotFound`, or
    :class:`DeadLetterTooLarge` before any call) and the caller keeps the original message, which SQS
    redrive will move later: nothing is lost."""
    attributes = fit_dead_letter_attributes(body, reason, source_queue, attempts, worker, max_bytes)
    try:
        send_message(client, dlq_url, body, attributes=attributes)
    except (QueueNotFound, SendFailed) as exc:
        log.error("dead-letter send to %s failed: %s", dlq_url, exc)
        raise
