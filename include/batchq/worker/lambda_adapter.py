"""AWS Lambda adapter: the worker's processing behind an SQS event source mapping (ESM).

Configure the ESM with ``FunctionResponseTypes: ["ReportBatchItemFailures"]`` and set:

``BATCHQ_RESULTS_QUEUE_URL`` (required)
    where results go.
``BATCHQ_HANDLERS``
    comma-separated modules to import (their ``@batchq.job`` handlers register); the
    ``batchq.handlers`` entry points of the deployment package are loaded too.
``BATCHQ_MAX_ATTEMPTS`` (default 3)
    set it to the input queue's ``maxReceiveCount``: on that delivery a failing payload gets a
    ``failed`` result instead of being retried.
``BATCHQ_DEAD_LETTER_QUEUE_URL``
    where permanent failures are copied with their reason (as the worker does); without it the body
    is logged at ERROR (never dropped silently).

Per record, :func:`~batchq.worker.execute.execute` decides exactly as the long-running worker does.
aws-lambda-powertools' ``BatchProcessor`` runs the records and builds the partial batch response;
results are then sent in batches of ten, and a record whose result could not be confirmed is added to
``batchItemFailures`` too — a record is reported successful (and so deleted by the ESM) only once its
result is on the results queue. Transient handler failures are reported and retried by SQS after the
queue's visibility timeout; permanent ones are published as ``failed`` results and not retried.
Standard queues only (a FIFO queue needs powertools' ``SqsFifoPartialProcessor`` semantics).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from batchq.errors import BatchqError
from batchq.metrics import Metrics, log_event
from batchq.sqs import send_bodies
from batchq.worker.deadletter import send_to_dead_letter
from batchq.worker.execute import Action, Outcome, execute, with_queue_times
from batchq.worker.registry import REGISTRY, Registry, load_handlers

log = logging.getLogger(__name__)


class LambdaSettings(BaseModel):
    """The adapter's environment (``BATCHQ_*`` variables, see the module docstring), validated: a bad
    value fails the cold start with a message naming the variable, not a traceback from ``int()``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    results_queue_url: str = Field(alias="BATCHQ_RESULTS_QUEUE_URL", min_length=1)
    handlers: list[str] = Field(default_factory=list, alias="BATCHQ_HANDLERS")
    max_attempts: int = Field(3, ge=1, alias="BATCHQ_MAX_ATTEMPTS")
    dead_letter_queue_url: str | None = Field(None, alias="BATCHQ_DEAD_LETTER_QUEUE_URL")

    @field_validator("handlers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return [m.strip() for m in value.split(",") if m.strip()] if isinstance(value, str) else value

    @field_validator("dead_letter_queue_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return value or None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> LambdaSettings:
        env = dict(os.environ if environ is None else environ)
        try:
            return cls.model_validate({k: v for k, v in env.items() if k.startswith("BATCHQ_")})
        except ValidationError as exc:
            detail = "; ".join(f"{e['loc'][0] if e['loc'] else '?'}: {e['msg']}" for e in exc.errors())
            raise BatchqError(f"Lambda adapter environment is invalid: {detail}") from None


class TransientFailure(BatchqError):
    """Raised inside the record handler so powertools reports the record for a retry."""


class LambdaAdapter:
    """Processes one SQS event. Built once per Lambda container (cold start) and reused.

    :param client: boto3 SQS client.
    :param results_url: results queue URL.
    :param registry: handlers.
    :param max_attempts: deliveries before a failing payload gets a ``failed`` result.
    :param dead_letter_url: where permanent failures are copied, or ``None``.
    """

    def __init__(
        self,
        client: Any,
        results_url: str,
        *,
        registry: Registry | None = None,
        max_attempts: int = 3,
        dead_letter_url: str | None = None,
        metrics: Metrics | None = None,
    ):
        if not results_url:
            raise ValueError("results_url is required (env BATCHQ_RESULTS_QUEUE_URL)")
        self.client = client
        self.results_url = results_url
        self.registry = registry or REGISTRY
        self.max_attempts = max_attempts
        self.dead_letter_url = dead_letter_url
        self.metrics = metrics or Metrics("lambda", summary_interval_s=0)

    @classmethod
    def from_env(cls) -> LambdaAdapter:
        from batchq.sqs.client import sqs_client

        settings = LambdaSettings.from_env()
        registry = load_handlers(settings.handlers)
        return cls(
            sqs_client(),
            settings.results_queue_url,
            registry=registry,
            max_attempts=settings.max_attempts,
            dead_letter_url=settings.dead_letter_queue_url,
        )

    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType

        worker = getattr(context, "aws_request_id", "") or "lambda"
        outcomes: dict[str, tuple[Outcome, Any]] = {}

        def record_handler(record: Any) -> str:
            receive_count = int(record.attributes.approximate_receive_count or 1)
            outcome = execute(
                record.body, receive_count=receive_count, max_attempts=self.max_attempts,
                registry=self.registry, worker=worker, message_id=record.message_id,
            )
            # The event record's attributes carry the SQS timestamps: the payload's queue lag.
            outcome = with_queue_times(outcome, record.raw_event)
            if outcome.payload is not None and outcome.duration_s:
                self.metrics.timing("handler_duration_ms", outcome.duration_s * 1000, outcome.tags)
            if outcome.action is Action.RETRY:
                self.metrics.incr("retried", 1, outcome.tags)
                raise TransientFailure(outcome.reason)
            outcomes[record.message_id] = (outcome, record)
            return outcome.action.value

        processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        with processor(records=event.get("Records", []), handler=record_handler, lambda_context=context):
            processor.process()
        response = processor.response()
        failures: list[dict[str, str]] = list(response.get("batchItemFailures", []))

        # Publish results, ten per call; an unconfirmed result turns its record into a reported failure.
        items = [(mid, o.result_body) for mid, (o, _) in outcomes.items() if o.result is not None]
        try:
            unsent = send_bodies(self.client, self.results_url, items, max_in_flight=4, raise_on_failure=False).failed
        except Exception as exc:  # noqa: BLE001 - e.g. QueueNotFound: no result is confirmed
            unsent = {mid: f"{type(exc).__name__}: {exc}" for mid, _ in items}
        for mid, (outcome, record) in outcomes.items():
            if mid in unsent:
                log_event(log, logging.ERROR, "result_send_failed", message_id=mid, reason=unsent[mid])
                failures.append({"itemIdentifier": mid})
                continue
            tags = outcome.tags
            if outcome.action is Action.ACK:
                self.metrics.incr("processed", 1, tags)
                continue
            if outcome.result is not None:
                self.metrics.incr("failed", 1, tags)
            if not self._dead_letter(record, outcome, worker):
                failures.append({"itemIdentifier": mid})
        return {"batchItemFailures": failures}

    def _dead_letter(self, record: Any, outcome: Outcome, worker: str) -> bool:
        """Copy a permanently failed record to the DLQ (or log it). False if it must be retried."""
        attempts = int(record.attributes.approximate_receive_count or 1)
        if self.dead_letter_url is None:
            log_event(log, logging.ERROR, "message_dead_lettered_to_log", message_id=record.message_id,
                      reason=outcome.reason, body=record.body, source=record.event_source_arn)
            self.metrics.incr("dead_lettered", 1, outcome.tags)
            return True
        try:
            send_to_dead_letter(
                self.client, self.dead_letter_url, record.body, reason=outcome.reason or "failed",
                source_queue=record.event_source_arn or "", attempts=attempts, worker=worker,
            )
        except Exception:  # noqa: BLE001 - report the record: SQS keeps it and redelivers
            return False
        self.metrics.incr("dead_lettered", 1, outcome.tags)
        return True


_ADAPTER: LambdaAdapter | None = None


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda function handler: ``{"batchItemFailures": [{"itemIdentifier": id}, ...]}``."""
    global _ADAPTER
    if _ADAPTER is None:
        _ADAPTER = LambdaAdapter.from_env()
    return _ADAPTER.handle(event, context)


def reset() -> None:
    """Forget the cached adapter (tests; a new configuration in the same process)."""
    global _ADAPTER
    _ADAPTER = None
