"""THE SQS layer: the only code that calls SQS.

* :mod:`~batchq.sqs.data` — the data plane (send, receive, delete, visibility, snapshots); its API is what
  ``from batchq.sqs import …`` gives, as it always has;
* :mod:`~batchq.sqs.queues` — the control plane: provisioning, ARNs, redrive policy, move tasks;
* :mod:`~batchq.sqs.client` — the one botocore policy and client factory;
* :mod:`~batchq.sqs.retry` — the one backoff and error classification;
* :mod:`~batchq.sqs.redrive` — moving dead-lettered messages back;
* :mod:`~batchq.sqs.cloudwatch` — the oldest message's age (CloudWatch), where counters cannot tell;
* :mod:`~batchq.sqs.snapshot` — :class:`QueueSnapshot`, a queue's counts at one instant.

Ranks above the kernel (spec, messages, plan, errors, limits, clock) and below everything else.
"""

from batchq.sqs.data import (
    SendReport,
    aget_snapshot,
    change_visibility,
    chunk_entries,
    delete_messages,
    get_queue_url,
    get_snapshot,
    receive_messages,
    send_bodies,
    send_message,
)
from batchq.sqs.snapshot import QueueSnapshot

__all__ = [
    "QueueSnapshot",
    "SendReport",
    "aget_snapshot",
    "change_visibility",
    "chunk_entries",
    "delete_messages",
    "get_queue_url",
    "get_snapshot",
    "receive_messages",
    "send_bodies",
    "send_message",
]
