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

from batchq.errors import QueueNotFound, SendFailed
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


def send_to_dead_letter(
    client: Any,
    dlq_url: str,
    body: str,
    *,
    reason: str,
    source_queue: str,
    attempts: int,
    worker: str,
) -> None:
    """Send ``body`` to ``dlq_url`` with the reason attributes. botocore retries a transient fault; what
    still fails raises (:class:`~batchq.errors.SendFailed` / :class:`~batchq.errors.QueueNotFound`) and
    the caller keeps the original message, which SQS redrive will move later: nothing is lost."""
    attributes = dead_letter_attributes(reason, source_queue, attempts, worker)
    try:
        send_message(client, dlq_url, body, attributes=attributes)
    except (QueueNotFound, SendFailed) as exc:
        log.error("dead-letter send to %s failed: %s", dlq_url, exc)
        raise
