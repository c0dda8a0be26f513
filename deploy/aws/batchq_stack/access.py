"""Who may do what on which queue: the IAM grants of each component's role, per queue role.

This table is the reviewed artifact. It is not trusted: ``tests/aws/test_least_privilege.py`` derives
from batchq's source (an AST call graph, ``tests/aws/sqs_actions.py``) which SQS actions each
component can call and fails when a role here grants one more or one fewer; the LocalStack run records
every call each component makes and fails on a call to a queue its role does not cover.

Queue roles are the fields of :class:`batchq.sqs.queues.QueueUrls`: ``input``, ``input_dlq``, ``results``,
``results_dlq``.
"""

from __future__ import annotations

#: Read a queue's URL and counters/attributes: what every component does to the queues it touches.
_LOOK = ("sqs:GetQueueUrl", "sqs:GetQueueAttributes")
_CONSUME = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility")

GRANTS: dict[str, dict[str, tuple[str, ...]]] = {
    # Airflow's plan/fan-out, wait (sensor + trigger) and drain tasks. Snapshots read all four queues'
    # counters (the DLQ depths feed the wait's dlq_threshold and the Batch view).
    "airflow": {
        "input": ("sqs:SendMessage", *_LOOK),
        "input_dlq": _LOOK,
        "results": (*_CONSUME, *_LOOK),
        "results_dlq": _LOOK,
    },
    # `batchq worker` / `batchq workers` (ECS task role, KEDA's IRSA role): consume the input queue,
    # publish results, dead-letter permanent failures with their reason. At start it reads each target
    # queue's attributes too (its MaximumMessageSize bounds what the worker sends there).
    "worker": {
        "input": (*_CONSUME, *_LOOK),
        "input_dlq": ("sqs:SendMessage", *_LOOK),
        "results": ("sqs:SendMessage", *_LOOK),
    },
    # `batchq drain` outside Airflow: the results queue only (given by name or URL).
    "drainer": {
        "results": (*_CONSUME, "sqs:GetQueueUrl"),
    },
    # The Lambda adapter sends results and dead-letters; the event source mapping (AWS's poller, under
    # the function's role) receives, deletes and reads attributes of the input queue: the actions
    # AWS documents for an SQS ESM (AWSLambdaSQSQueueExecutionRole), not calls in batchq's code.
    "lambda": {
        "input": ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"),
        "input_dlq": ("sqs:SendMessage",),
        "results": ("sqs:SendMessage",),
    },
}

#: Actions a role needs that batchq's code does not call (see ``GRANTS["lambda"]``).
PLATFORM_ACTIONS: dict[str, frozenset[str]] = {
    "lambda": frozenset({"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}),
}


def actions(component: str) -> frozenset[str]:
    """Every SQS action ``component``'s role grants, on any queue."""
    return frozenset(a for acts in GRANTS[component].values() for a in acts)
