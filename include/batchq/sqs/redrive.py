"""DLQ redrive: move dead-lettered messages back to a queue (normally the input queue).

Two ways, one result:

* ``move-task``: SQS's own ``StartMessageMoveTask`` (AWS, LocalStack). Server-side, keeps message
  attributes; we poll ``ListMessageMoveTasks`` until it ends.
* ``manual``: receive → send → delete, in batches of 10, for endpoints without move tasks (moto answers
  HTTP 500). A message is deleted from the DLQ only after its copy was sent; a send that fails leaves it
  on the DLQ and is reported by id. If a delete fails after a send, the message may be moved twice —
  at-least-once, like everything here; workers and sinks are idempotent on ``key``.

``auto`` (the default) tries the move task and falls back to manual when the endpoint does not support
it. Every SQS call goes through :mod:`batchq.sqs.queues` (ARNs, move tasks) and :mod:`batchq.sqs`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from batchq.errors import BatchqError
from batchq.sqs import delete_messages, receive_messages, send_bodies
from batchq.sqs.queues import (
    get_queue_arn,
    list_message_move_tasks,
    start_message_move_task,
)
from batchq.sqs.retry import error_code

log = logging.getLogger(__name__)

METHODS = ("auto", "move-task", "manual")


class MoveTaskUnsupported(BatchqError):
    """The endpoint does not implement StartMessageMoveTask."""


@dataclass
class RedriveReport:
    """Outcome of a redrive. ``failed`` maps DLQ message ids to the reason they stayed on the DLQ."""

    method: str
    moved: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    task_handle: str | None = None
    duration_s: float = 0.0
    fallback_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failed"] = len(self.failed)
        out["duration_s"] = round(self.duration_s, 3)
        return out


def redrive(
    client: Any,
    dlq_url: str,
    target_url: str,
    *,
    method: str = "auto",
    max_messages: int | None = None,
    max_per_second: int | None = None,
    timeout_s: float = 600.0,
    poll_s: float = 1.0,
    probe_client: Any = None,
) -> RedriveReport:
    """Move messages from ``dlq_url`` to ``target_url``.

    :param method: ``auto`` | ``move-task`` | ``manual``.
    :param max_messages: stop after this many (manual only; a move task moves everything).
    :param max_per_second: move-task rate (``MaxNumberOfMessagesPerSecond``).
    :param timeout_s: give up waiting for a move task / stop the manual loop after this long.
    :param probe_client: client for the one StartMessageMoveTask call, configured not to retry
        (:func:`batchq.sqs.client.single_attempt`): an endpoint without move tasks answers HTTP 500, which
        ``client`` would retry for several seconds before ``auto`` could fall back. Default ``client``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    started = time.perf_counter()
    fallback_reason = None
    if method in ("auto", "move-task") and max_messages is None:
        try:
            report = _move_task(client, probe_client or client, dlq_url, target_url, max_per_second, timeout_s, poll_s)
            report.duration_s = time.perf_counter() - started
            return report
        except MoveTaskUnsupported as exc:
            if method == "move-task":
                raise
            fallback_reason = str(exc)
            log.info("StartMessageMoveTask not available (%s): falling back to receive/send/delete", exc)
    elif method == "move-task":
        raise ValueError("max_messages is not supported by the move-task method (it moves everything)")
    report = _manual(client, dlq_url, target_url, max_messages, timeout_s)
    report.fallback_reason = fallback_reason
    report.duration_s = time.perf_counter() - started
    return report


#: Error codes with which an endpoint says it has no StartMessageMoveTask.
UNSUPPORTED_CODES = frozenset({"UnsupportedOperation", "NotImplemented", "InvalidAction", "UnknownOperationException"})


def _move_task(
    client: Any,
    probe_client: Any,
    dlq_url: str,
    target_url: str,
    max_per_second: int | None,
    timeout_s: float,
    poll_s: float,
) -> RedriveReport:
    source_arn = get_queue_arn(client, dlq_url)
    destination_arn = get_queue_arn(client, target_url)
    try:
        handle = start_message_move_task(probe_client, source_arn, destination_arn, max_per_second=max_per_second)
    except Exception as exc:
        status = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error_code(exc)
        if status >= 500 or code in UNSUPPORTED_CODES or isinstance(exc, AttributeError):
            raise MoveTaskUnsupported(f"{code} (HTTP {status})") from exc
        raise
    deadline = time.monotonic() + timeout_s
    while True:
        tasks = list_message_move_tasks(client, source_arn)
        task = next((t for t in tasks if t.task_handle == handle), tasks[0] if tasks else None)
        if task is not None and task.finished:
            report = RedriveReport("move-task", moved=task.moved, task_handle=handle)
            if task.status != "COMPLETED":
                report.failed["task"] = f"{task.status}: {task.failure_reason or ''}"
            return report
        if time.monotonic() > deadline:
            report = RedriveReport("move-task", moved=task.moved if task else 0, task_handle=handle)
            report.failed["task"] = f"still {task.status if task else 'unlisted'} after {timeout_s:.0f}s"
            return report
        time.sleep(poll_s)


def _manual(client: Any, dlq_url: str, target_url: str, max_messages: int | None, timeout_s: float) -> RedriveReport:
    report = RedriveReport("manual")
    deadline = time.monotonic() + timeout_s
    seen_failed: set[str] = set()
    while time.monotonic() < deadline:
        want = 10 if max_messages is None else min(10, max_messages - report.moved - len(report.failed))
        if want <= 0:
            break
        # A short lease: a message we fail to send comes back soon for the next redrive.
        msgs = receive_messages(client, dlq_url, max_messages=want, wait_seconds=1, visibility_timeout=30)
        msgs = [m for m in msgs if m["MessageId"] not in seen_failed]
        if not msgs:
            break
        by_id = {m["MessageId"]: m for m in msgs}
        sent = send_bodies(client, target_url, [(m["MessageId"], m["Body"]) for m in msgs], max_in_flight=1, raise_on_failure=False)
        for mid, reason in sent.failed.items():
            report.failed[mid] = f"not sent: {reason}"
            seen_failed.add(mid)
        moved = [m for mid, m in by_id.items() if mid not in sent.failed]
        not_deleted = delete_messages(client, dlq_url, moved)
        for mid, reason in not_deleted.items():
            log.warning("redriven message %s not deleted from the DLQ (may be moved again): %s", mid, reason)
        report.moved += len(moved)
    return report
