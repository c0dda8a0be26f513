"""The SQS control plane: provisioning, ARNs, queue attributes, redrive policies and message-move tasks.

The other half of the SQS layer beside :mod:`batchq.sqs` (the data plane). Like it, plain typed functions
over a boto3 client; botocore retries whole calls under :func:`batchq.sqs.client.botocore_config`. No other
module calls a client method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from batchq import limits
from batchq.errors import BatchqError, QueueNotFound
from batchq.spec import QueueSpec
from batchq.sqs import get_queue_url
from batchq.sqs.retry import MISSING_QUEUE_CODES, error_code

#: DLQs keep messages for the longest SQS allows (14 days), so there is time to inspect and redrive.
MAX_RETENTION_SECONDS = limits.MAX_RETENTION_SECONDS
#: Visibility timeout of the results queues: the drainer holds a result only while it writes the sink.
RESULTS_VISIBILITY_TIMEOUT_S = 60
#: What SQS answers when a queue of that name exists with other attributes.
_QUEUE_EXISTS_CODES = frozenset({"QueueAlreadyExists", "QueueNameExists", "AWS.SimpleQueueService.QueueNameExists"})
#: Move-task statuses after which the task does nothing more.
MOVE_TASK_FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


# -- attributes ------------------------------------------------------------------------------------------


def get_queue_attributes(client: Any, queue_url: str, names: list[str]) -> dict[str, str]:
    """The queue's attributes ``names`` (``["All"]`` for all) in one GetQueueAttributes call, as SQS
    gives them (strings); an attribute the queue does not have is absent.

    :raises QueueNotFound: the queue does not exist.
    """
    try:
        return dict(client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(names)).get("Attributes", {}))
    except Exception as exc:
        if error_code(exc) in MISSING_QUEUE_CODES:
            raise QueueNotFound(f"queue {queue_url} does not exist") from exc
        raise


def get_queue_arn(client: Any, queue_url: str) -> str:
    """The queue's ARN (``arn:aws:sqs:region:account:name``)."""
    return get_queue_attributes(client, queue_url, ["QueueArn"])["QueueArn"]


@dataclass(frozen=True)
class QueueLimits:
    """Limits a queue was created with (they may be lower than the SQS maxima in :mod:`batchq.limits`).

    :param max_message_bytes: largest message body (plus attributes) the queue accepts.
    """

    max_message_bytes: int


def get_queue_limits(client: Any, queue_url: str) -> QueueLimits:
    """The queue's :class:`QueueLimits` (one GetQueueAttributes call)."""
    attrs = get_queue_attributes(client, queue_url, ["MaximumMessageSize"])
    return QueueLimits(max_message_bytes=int(attrs.get("MaximumMessageSize", limits.MAX_MESSAGE_BYTES)))


# -- redrive policy and ARNs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RedrivePolicy:
    """Where SQS moves a message after ``max_receive_count`` receives.

    :param dead_letter_arn: ARN of the dead-letter queue (``deadLetterTargetArn``).
    :param max_receive_count: receives before SQS moves a message there (``maxReceiveCount``).
    """

    dead_letter_arn: str
    max_receive_count: int

    def to_attribute(self) -> str:
        """The ``RedrivePolicy`` attribute value SQS takes."""
        return json.dumps({"deadLetterTargetArn": self.dead_letter_arn, "maxReceiveCount": str(self.max_receive_count)})


def parse_redrive_policy(value: str | None) -> RedrivePolicy | None:
    """The ``RedrivePolicy`` attribute (JSON) as a :class:`RedrivePolicy`; None when the queue has none.

    :raises BatchqError: the attribute is not a redrive policy (names what is wrong).
    """
    if not value:
        return None
    try:
        policy = json.loads(value)
        return RedrivePolicy(str(policy["deadLetterTargetArn"]), int(policy["maxReceiveCount"]))
    except (ValueError, TypeError, KeyError) as exc:
        raise BatchqError(f"RedrivePolicy {value!r} is not a redrive policy: {type(exc).__name__}: {exc}") from exc


def get_redrive_policy(client: Any, queue_url: str) -> RedrivePolicy | None:
    """The queue's redrive policy, or None (one GetQueueAttributes call)."""
    return parse_redrive_policy(get_queue_attributes(client, queue_url, ["RedrivePolicy"]).get("RedrivePolicy"))


def get_max_receive_count(client: Any, queue_url: str) -> int | None:
    """maxReceiveCount of the queue's redrive policy, or None when it has none."""
    policy = get_redrive_policy(client, queue_url)
    return policy.max_receive_count if policy else None


def parse_queue_arn(arn: str) -> tuple[str, str]:
    """``(account, queue name)`` of an SQS queue ARN ``arn:PARTITION:sqs:REGION:ACCOUNT:NAME``.

    :raises BatchqError: ``arn`` is not an SQS queue ARN.
    """
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        raise BatchqError(f"{arn!r} is not an SQS queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)")
    return parts[4], parts[5]


def queue_url_from_arn(client: Any, arn: str) -> str:
    """URL of the queue ``arn`` names (the owner account from the ARN, so a DLQ in another account of
    the same region resolves too)."""
    account, name = parse_queue_arn(arn)
    try:
        return client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    except Exception as exc:  # emulators may not know the owner: ask by name alone
        if error_code(exc) in MISSING_QUEUE_CODES:
            raise QueueNotFound(f"queue {arn} does not exist") from exc
        return get_queue_url(client, name)


# -- provisioning ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueUrls:
    """URLs of a spec's four queues."""

    input: str
    input_dlq: str
    results: str
    results_dlq: str

    def to_dict(self) -> dict[str, str]:
        return {"input": self.input, "input_dlq": self.input_dlq, "results": self.results, "results_dlq": self.results_dlq}


def ensure_queue(client: Any, name: str, attributes: dict[str, str] | None = None) -> str:
    """Create the queue ``name`` with ``attributes``, or converge an existing one to them; its URL.
    Idempotent."""
    attributes = dict(attributes or {})
    try:
        return client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    except Exception as exc:
        if error_code(exc) not in _QUEUE_EXISTS_CODES:
            raise
        # Exists with other attributes: converge it to the spec (idempotent provisioning).
        url = get_queue_url(client, name)
        if attributes:
            client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        return url


def delete_queue(client: Any, queue_url: str) -> None:
    """Delete the queue (its messages with it). A queue already gone is not an error."""
    try:
        client.delete_queue(QueueUrl=queue_url)
    except Exception as exc:
        if error_code(exc) not in MISSING_QUEUE_CODES:
            raise


@dataclass(frozen=True)
class PlannedQueue:
    """One of a spec's four queues as :func:`ensure_queues` converges it — also what the AWS stack
    (``deploy/aws``) declares, so the two cannot drift.

    :param role: ``input``, ``input_dlq``, ``results`` or ``results_dlq`` (the :class:`QueueUrls` field).
    :param name: the queue's name.
    :param attributes: SQS attributes (strings, as SetQueueAttributes takes them), without the redrive policy.
    :param dead_letter_role: role of the DLQ this queue redrives to (None for a DLQ).
    :param max_receive_count: receives before SQS moves a message to that DLQ (None for a DLQ).
    """

    role: str
    name: str
    attributes: dict[str, str]
    dead_letter_role: str | None = None
    max_receive_count: int | None = None

    def attributes_with_redrive(self, dead_letter_arn: str | None) -> dict[str, str]:
        """The attributes plus the ``RedrivePolicy`` pointing at ``dead_letter_arn`` (a source queue)."""
        if self.dead_letter_role is None or self.max_receive_count is None:
            return dict(self.attributes)
        if not dead_letter_arn:
            raise BatchqError(f"queue {self.name} needs the ARN of its DLQ ({self.dead_letter_role})")
        return {**self.attributes, "RedrivePolicy": RedrivePolicy(dead_letter_arn, self.max_receive_count).to_attribute()}


def planned_queues(queues: QueueSpec) -> tuple[PlannedQueue, ...]:
    """The four queues of ``queues`` with the attributes :func:`ensure_queues` sets, DLQs first (a source
    queue's redrive policy needs its DLQ's ARN). Pure: no client."""
    # SSE-SQS on every queue; the largest message SQS takes (WorkPayload/WorkResult stay under it).
    common = {"SqsManagedSseEnabled": "true", "MaximumMessageSize": str(limits.MAX_MESSAGE_BYTES)}
    dlq = {**common, "MessageRetentionPeriod": str(MAX_RETENTION_SECONDS)}
    source = {**common, "MessageRetentionPeriod": str(queues.message_retention_s)}
    return (
        PlannedQueue("input_dlq", queues.input_dlq, dict(dlq)),
        PlannedQueue("results_dlq", queues.results_dlq, dict(dlq)),
        PlannedQueue(
            "input",
            queues.input,
            {**source, "VisibilityTimeout": str(queues.visibility_timeout_s)},
            dead_letter_role="input_dlq",
            max_receive_count=queues.max_receive_count,
        ),
        PlannedQueue(
            "results",
            queues.results,
            {**source, "VisibilityTimeout": str(RESULTS_VISIBILITY_TIMEOUT_S)},
            dead_letter_role="results_dlq",
            max_receive_count=queues.results_max_receive_count,
        ),
    )


def ensure_queues(client: Any, queues: QueueSpec) -> QueueUrls:
    """Create (or converge) the input and results queues, each with a DLQ and a redrive policy, with the
    attributes of :func:`planned_queues` (SSE-SQS on). Idempotent: safe to run on every deploy or DAG run."""
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    for planned in planned_queues(queues):
        dlq_arn = arns.get(planned.dead_letter_role) if planned.dead_letter_role else None
        urls[planned.role] = ensure_queue(client, planned.name, planned.attributes_with_redrive(dlq_arn))
        if planned.dead_letter_role is None:
            arns[planned.role] = get_queue_arn(client, urls[planned.role])
    return QueueUrls(**urls)


def resolve_queue_urls(client: Any, queues: QueueSpec) -> QueueUrls:
    """URLs of existing queues (raise :class:`QueueNotFound` naming the missing one)."""
    return QueueUrls(
        get_queue_url(client, queues.input),
        get_queue_url(client, queues.input_dlq),
        get_queue_url(client, queues.results),
        get_queue_url(client, queues.results_dlq),
    )


# -- message-move tasks (server-side DLQ redrive) --------------------------------------------------------


@dataclass(frozen=True)
class MoveTask:
    """One StartMessageMoveTask, as ListMessageMoveTasks reports it.

    :param task_handle: the task's handle (only for a running task; None once it ended).
    :param status: ``RUNNING``, ``COMPLETED``, ``CANCELLING``, ``CANCELLED`` or ``FAILED``.
    :param moved: messages moved so far (approximate).
    :param failure_reason: why a ``FAILED`` task failed.
    """

    task_handle: str | None
    status: str
    moved: int
    failure_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in MOVE_TASK_FINAL_STATUSES


def start_message_move_task(
    client: Any, source_arn: str, destination_arn: str | None = None, *, max_per_second: int | None = None
) -> str:
    """Start moving every message of the DLQ ``source_arn`` to ``destination_arn`` (None: back to each
    message's source queue, which SQS knows only for messages it dead-lettered itself); the task handle.

    :param max_per_second: ``MaxNumberOfMessagesPerSecond`` (None: SQS's own pace).
    """
    kwargs: dict[str, Any] = {"SourceArn": source_arn}
    if destination_arn:
        kwargs["DestinationArn"] = destination_arn
    if max_per_second:
        kwargs["MaxNumberOfMessagesPerSecond"] = max_per_second
    return str(client.start_message_move_task(**kwargs)["TaskHandle"])


def list_message_move_tasks(client: Any, source_arn: str, *, max_results: int = 10) -> list[MoveTask]:
    """The most recent move tasks of the DLQ ``source_arn``, newest first."""
    results = client.list_message_move_tasks(SourceArn=source_arn, MaxResults=max_results).get("Results", [])
    return [
        MoveTask(
            task_handle=t.get("TaskHandle"),
            status=str(t.get("Status", "")),
            moved=int(t.get("ApproximateNumberOfMessagesMoved", 0) or 0),
            failure_reason=t.get("FailureReason"),
        )
        for t in results
    ]
