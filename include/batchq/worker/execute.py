"""One delivery in, one decision out: parse the body, run the handler, build the result.

No SQS calls here: the long-running worker and the Lambda adapter both call :func:`execute` and then
do the I/O their way (batched sends and deletes vs. a partial batch response), so they cannot disagree
about what is permanent, what is retried, and what a ``failed`` result says.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from batchq import limits
from batchq.errors import InvalidMessage, safe_error_text
from batchq.messages import ErrorInfo, WorkPayload, WorkResult, parse_payload
from batchq.monitor.lag import sqs_times
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


#: Appended where a failed result's text was cut to fit the queue's message size.
TRUNCATED_MARKER = "…[truncated]"
#: Fields copied into a failed result, cut in this order (longest-lived identity last) when even the
#: error message cut to nothing does not bring the result under the limit.
_CUTTABLE_FIELDS = ("worker", "job_type", "run_id", "batch", "key")


def _clip_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, marker included (never splits a character)."""
    if len(text.encode()) <= max_bytes:
        return text
    room = max(0, max_bytes - len(TRUNCATED_MARKER.encode()))
    return text.encode()[:room].decode(errors="ignore") + TRUNCATED_MARKER


def fit_failed_result(result: WorkResult, max_bytes: int) -> WorkResult:
    """``result`` (a ``failed`` one) cut to serialise within ``max_bytes``: the error message first,
    then the copied ``dims`` (a display aid: the store names and places a result without them from its
    plan and key), then the copied identity fields, each with :data:`TRUNCATED_MARKER`. A failed result
    must always be publishable, or its run's ledger could never close."""
    over = len(result.model_dump_json().encode()) - max_bytes
    if over <= 0 or result.error is None:
        return result
    message = result.error.message
    keep = max(0, len(message.encode()) - over - len(TRUNCATED_MARKER.encode()) - 8)
    result = result.model_copy(update={"error": result.error.model_copy(update={"message": _clip_utf8(message, keep)})})
    if result.dims and len(result.model_dump_json().encode()) > max_bytes:
        result = result.model_copy(update={"dims": None})
    for name in _CUTTABLE_FIELDS:
        over = len(result.model_dump_json().encode()) - max_bytes
        if over <= 0:
            break
        value = getattr(result, name) or ""
        cut = max(len(TRUNCATED_MARKER.encode()) + 1, len(value.encode()) - over - 8)
        result = result.model_copy(update={name: _clip_utf8(value, cut)})
    return result


def failed_result_for_unreadable(body: str | bytes, reason: str, error_type: str, attempts: int, worker: str) -> WorkResult | None:
    """A ``failed`` result for a body that did not parse as a payload, if batch, run_id and key can be
    read from it; ``None`` when they cannot (then only the dead-letter queue records it)."""
    try:
        raw = json.loads(body)
    except Exception:  # noqa: BLE001 - RecursionError included: no identity to read, no result
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
            plan=raw.get("plan") if isinstance(raw.get("plan"), str) else None,  # the run's ledger counts it
            error=ErrorInfo(type=error_type, message=reason, permanent=True),
            attempts=max(1, attempts), worker=worker,
        )
    except ValueError:
        return None


def failed_outcome(
    payload: WorkPayload, error_type: str, message: str, *, permanent: bool, attempts: int, worker: str,
    started: datetime | None = None, duration_s: float = 0.0, max_result_bytes: int = limits.MAX_MESSAGE_BYTES,
) -> Outcome:
    """Give up on ``payload``: a ``failed`` result (cut to fit ``max_result_bytes``), then the DLQ."""
    result = WorkResult(
        batch=payload.batch, run_id=payload.run_id, key=payload.key, job_type=payload.job_type, plan=payload.plan, dims=payload.dims,
        status="failed", error=ErrorInfo(type=error_type, message=safe_error_text(message), permanent=permanent),
        attempts=attempts, worker=worker, started_at=started,
    )
    result = fit_failed_result(result, max_result_bytes)
    return Outcome(Action.DEAD_LETTER, result, f"{error_type}: {safe_error_text(message)}", payload, duration_s, error_type)


def transient_outcome(
    payload: WorkPayload, error_type: str, message: str, *, receive_count: int, max_attempts: int, worker: str,
    started: datetime | None = None, duration_s: float = 0.0, max_result_bytes: int = limits.MAX_MESSAGE_BYTES,
) -> Outcome:
    """A failure retrying may cure: retry, or on the last attempt a ``failed`` result and the DLQ."""
    if receive_count >= max_attempts:
        return failed_outcome(
            payload, error_type, f"{message} (gave up after {receive_count} attempts)", permanent=False,
            attempts=receive_count, worker=worker, started=started, duration_s=duration_s,
            max_result_bytes=max_result_bytes,
        )
    return Outcome(Action.RETRY, None, f"{error_type}: {safe_error_text(message)}", payload, duration_s, error_type)


def execute(
    body: str | bytes,
    *,
    receive_count: int = 1,
    max_attempts: int = 3,
    registry: Registry | None = None,
    worker: str = "",
    message_id: str = "",
    max_result_bytes: int = limits.MAX_MESSAGE_BYTES,
    on_start: Callable[[WorkPayload], None] | None = None,
) -> Outcome:
    """Decide what one delivery of ``body`` becomes. Never raises: bad input, handler errors and a
    handler that raises ``BaseException`` (``sys.exit()``, ``KeyboardInterrupt``, ``CancelledError``)
    all become an :class:`Outcome`.

    :param receive_count: SQS ``ApproximateReceiveCount`` of this delivery (the attempt number).
    :param max_attempts: on this attempt or later a transient failure is final (``failed`` result).
    :param max_result_bytes: the results queue's ``MaximumMessageSize``: a larger output becomes an
        ``OutputTooLarge`` failed result, and a failed result is cut to fit.
    :param on_start: called with the parsed payload just before its handler runs (the worker starts
        the handler's timeout clock there).
    """
    reg = registry or REGISTRY
    try:
        payload = parse_payload(body)
    except InvalidMessage as exc:
        error_type = "UnsupportedSchemaVersion" if "schema_version" in exc.reason else "InvalidMessage"
        result = failed_result_for_unreadable(body, exc.reason, error_type, receive_count, worker)
        return Outcome(
            Action.DEAD_LETTER,
            result=None if result is None else fit_failed_result(result, max_result_bytes),
            reason=f"{error_type}: {exc.reason}",
            error_type=error_type,
        )

    def failed(error_type: str, message: str, permanent: bool, started: datetime | None, duration: float) -> Outcome:
        return failed_outcome(payload, error_type, message, permanent=permanent, attempts=receive_count, worker=worker,
                              started=started, duration_s=duration, max_result_bytes=max_result_bytes)

    handler = reg.get(payload.job_type)
    if handler is None:
        return failed(
            "UnknownJobType",
            # Only the job type: this text travels to the sink, XCom and the Batch view, and the list of
            # every handler a worker has is nobody's business there (the worker logs it at start).
            f"no handler for job_type {payload.job_type!r} on this worker",
            True, None, 0.0,
        )

    ctx = JobContext(payload=payload, attempt=receive_count, max_attempts=max_attempts, worker=worker, message_id=message_id)
    started = _now()
    if on_start is not None:
        on_start(payload)
    t0 = time.perf_counter()
    try:
        output = handler(payload, ctx)
    except PermanentError as exc:
        return failed(type(exc).__name__, str(exc) or type(exc).__name__, True, started, time.perf_counter() - t0)
    except BaseException as exc:  # noqa: BLE001 - any handler error, BaseException included, is a
        # transient failure of this attempt: SystemExit/KeyboardInterrupt/CancelledError from a
        # handler say nothing about the payload (a library's exit, a cancelled event loop), so the
        # payload gets its remaining attempts, and never takes the worker's thread down with it.
        message = f"{exc}" or type(exc).__name__
        return transient_outcome(payload, type(exc).__name__, message, receive_count=receive_count,
                                 max_attempts=max_attempts, worker=worker, started=started,
                                 duration_s=time.perf_counter() - t0, max_result_bytes=max_result_bytes)
    duration = time.perf_counter() - t0

    if output is None:
        output = {}
    if not isinstance(output, dict):
        return failed("InvalidHandlerOutput", f"handler returned {type(output).__name__}, expected a dict", True, started, duration)
    try:
        result = WorkResult(
            batch=payload.batch, run_id=payload.run_id, key=payload.key, job_type=payload.job_type, plan=payload.plan, dims=payload.dims,
            status="succeeded", output=output, attempts=receive_count, worker=worker, started_at=started,
        )
        size = len(result.model_dump_json().encode())
    except (ValueError, TypeError, RecursionError) as exc:
        return failed("InvalidHandlerOutput", f"output is not JSON-serialisable: {exc}", True, started, duration)
    if size > max_result_bytes:
        return failed(
            "OutputTooLarge", f"result is {size} bytes, above the results queue's limit of {max_result_bytes}",
            True, started, duration,
        )
    return Outcome(Action.ACK, result, None, payload, duration)


def timed_out_outcome(
    payload: WorkPayload, timeout_s: float, *, receive_count: int, max_attempts: int, worker: str,
    max_result_bytes: int = limits.MAX_MESSAGE_BYTES,
) -> Outcome:
    """A handler that overran its timeout: a transient failure (it may be a slow backend)."""
    return transient_outcome(
        payload, "HandlerTimeout", f"handler did not finish within {timeout_s:g}s", receive_count=receive_count,
        max_attempts=max_attempts, worker=worker, duration_s=timeout_s, max_result_bytes=max_result_bytes,
    )


def message_age_ms(message: dict[str, Any], now_s: float | None = None) -> float | None:
    """now − ``SentTimestamp`` in ms (the consumer lag of this message), ``None`` if not present."""
    sent = (message.get("Attributes") or {}).get("SentTimestamp")
    if sent is None:
        return None
    return max(0.0, (now_s if now_s is not None else time.time()) * 1000 - int(sent))


def queue_times(message: dict[str, Any]) -> dict[str, datetime]:
    """``enqueued_at`` / ``first_received_at`` of a received input message (see
    :func:`batchq.monitor.lag.sqs_times`); missing or unreadable attributes are left out."""
    sent, first_received = sqs_times(message)
    times = {"enqueued_at": sent, "first_received_at": first_received}
    return {k: v for k, v in times.items() if v is not None}


def with_queue_times(outcome: Outcome, message: dict[str, Any], max_result_bytes: int = limits.MAX_MESSAGE_BYTES) -> Outcome:
    """``outcome`` with its result stamped with the input message's queue times (see :func:`queue_times`).
    A result the ~90 bytes of stamps would push over ``max_result_bytes`` stays unstamped: the lag
    figure of one payload is worth less than its result."""
    times = queue_times(message)
    if outcome.result is None or not times:
        return outcome
    stamped = outcome.result.model_copy(update=times)
    if len(stamped.model_dump_json().encode()) > max_result_bytes:
        return outcome
    return dataclasses.replace(outcome, result=stamped)


def receive_count_of(message: dict[str, Any]) -> int:
    return int((message.get("Attributes") or {}).get("ApproximateReceiveCount", 1) or 1)
