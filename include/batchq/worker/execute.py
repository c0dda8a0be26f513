"""One delivery in, one decision out: parse the body, run the handler, build the result.

No SQS calls here: the long-running worker and the Lambda adapter both call :func:`execute` and then
do the I/O their way (batched sends and deletes vs. a partial batch response), so they cannot disagree
about what is permanent, what is retried, and what a ``failed`` result says.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from batchq import limits
from batchq.messages import ErrorInfo, WorkPayload, WorkResult, parse_payload
from batchq.errors import InvalidMessage
from batchq.worker.context import JobContext
from batchq.worker.errors import PermanentError
from batchq.worker.registry import REGISTRY, Registry

log = logging.getLogger(__name__)


class Action(str, Enum):
    """What to do with the delivery once its result (if any) is confirmed on the results queue."""

    #: success: send the result, then delete the input
    ACK = "ack"
    #: transient failure with attempts left: hide the message for a backoff, send nothing
    RETRY = "retry"
    #: permanent failure or attempts exhausted: send the failed result (when the key is readable),
    #: move the message to the dead-letter queue with the reason, delete the original
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Outcome:
    """The decision for one delivery.

    :param action: see :class:`Action`.
    :param result: the result to publish first (``None`` for a retry, or an unreadable body).
    :param reason: why it failed (dead-letter reason, retry cause), ``None`` on success.
    :param payload: the parsed payload, when it parsed.
    :param duration_s: handler wall time (0 when no handler ran).
    """

    action: Action
    result: WorkResult | None = None
    reason: str | None = None
    payload: WorkPayload | None = None
    duration_s: float = 0.0
    error_type: str | None = None

    @property
    def result_body(self) -> str | None:
        return None if self.result is None else self.result.model_dump_json()

    @property
    def tags(self) -> dict[str, str]:
        if self.payload is not None:
            return {"batch": self.payload.batch, "job_type": self.payload.job_type}
        if self.result is not None:
            return {"batch": self.result.batch, "job_type": self.result.job_type or "unknown"}
        return {"batch": "unknown", "job_type": "unknown"}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def failed_result_for_unreadable(body: str | bytes, reason: str, error_type: str, attempts: int, worker: str) -> WorkResult | None:
    """A ``failed`` result for a body that did not parse as a payload, if batch, run_id and key can be
    read from it; ``None`` when they cannot (then only the dead-letter queue records it)."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(raw, dict):
        return None
    batch, run_id, key = raw.get("batch"), raw.get("run_id"), raw.get("key")
    if not all(isinstance(v, str) and v for v in (batch, run_id, key)):
        return None
    job_type = raw.get("job_type") if isinstance(raw.get("job_type"), str) else None
    try:
        return WorkResult(
            batch=batch, run_id=run_id, key=key, job_type=job_type, status="failed",
            error=ErrorInfo(type=error_type, message=reason, permanent=True),
            attempts=max(1, attempts), worker=worker,
        )
    except ValueError:
        return None


def execute(
    body: str | bytes,
    *,
    receive_count: int = 1,
    max_attempts: int = 3,
    registry: Registry | None = None,
    worker: str = "",
    message_id: str = "",
) -> Outcome:
    """Decide what one delivery of ``body`` becomes. Never raises for bad input or handler errors.

    :param receive_count: SQS ``ApproximateReceiveCount`` of this delivery (the attempt number).
    :param max_attempts: on this attempt or later a transient failure is final (``failed`` result).
    """
    reg = registry or REGISTRY
    try:
        payload = parse_payload(body)
    except InvalidMessage as exc:
        error_type = "UnsupportedSchemaVersion" if "schema_version" in exc.reason else "InvalidMessage"
        return Outcome(
            Action.DEAD_LETTER,
            result=failed_result_for_unreadable(body, exc.reason, error_type, receive_count, worker),
            reason=f"{error_type}: {exc.reason}",
            error_type=error_type,
        )

    def failed(error_type: str, message: str, permanent: bool, started: datetime | None, duration: float) -> Outcome:
        result = WorkResult(
            batch=payload.batch, run_id=payload.run_id, key=payload.key, job_type=payload.job_type, plan=payload.plan,
            status="failed", error=ErrorInfo(type=error_type, message=message[:4000], permanent=permanent),
            attempts=receive_count, worker=worker, started_at=started,
        )
        return Outcome(Action.DEAD_LETTER, result, f"{error_type}: {message[:500]}", payload, duration, error_type)

    handler = reg.get(payload.job_type)
    if handler is None:
        return failed(
            "UnknownJobType",
            f"no handler for job_type {payload.job_type!r} (this worker handles: {reg.job_types})",
            True, None, 0.0,
        )

    ctx = JobContext(payload=payload, attempt=receive_count, max_attempts=max_attempts, worker=worker, message_id=message_id)
    started = _now()
    t0 = time.perf_counter()
    try:
        output = handler(payload, ctx)
    except PermanentError as exc:
        return failed(type(exc).__name__, str(exc) or type(exc).__name__, True, started, time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - any handler error is a (transient) failure of this attempt
        duration = time.perf_counter() - t0
        message = f"{exc}" or type(exc).__name__
        if receive_count >= max_attempts:
            return failed(type(exc).__name__, f"{message} (gave up after {receive_count} attempts)", False, started, duration)
        return Outcome(Action.RETRY, None, f"{type(exc).__name__}: {message[:500]}", payload, duration, type(exc).__name__)
    duration = time.perf_counter() - t0

    if output is None:
        output = {}
    if not isinstance(output, dict):
        return failed("InvalidHandlerOutput", f"handler returned {type(output).__name__}, expected a dict", True, started, duration)
    try:
        result = WorkResult(
            batch=payload.batch, run_id=payload.run_id, key=payload.key, job_type=payload.job_type, plan=payload.plan,
            status="succeeded", output=output, attempts=receive_count, worker=worker, started_at=started,
        )
        size = len(result.model_dump_json().encode())
    except (ValueError, TypeError) as exc:
        return failed("InvalidHandlerOutput", f"output is not JSON-serialisable: {exc}", True, started, duration)
    if size > limits.MAX_MESSAGE_BYTES:
        return failed(
            "OutputTooLarge", f"result is {size} bytes, above the SQS limit of {limits.MAX_MESSAGE_BYTES}",
            True, started, duration,
        )
    return Outcome(Action.ACK, result, None, payload, duration)


def message_age_ms(message: dict[str, Any], now_s: float | None = None) -> float | None:
    """now − ``SentTimestamp`` in ms (the consumer lag of this message), ``None`` if not present."""
    sent = (message.get("Attributes") or {}).get("SentTimestamp")
    if sent is None:
        return None
    return max(0.0, (now_s if now_s is not None else time.time()) * 1000 - int(sent))


def receive_count_of(message: dict[str, Any]) -> int:
    return int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 1) or 1)
