"""Worker settings, validated on construction, and what is read from the queue at start."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from batchq import limits
from batchq.sqs.queues import (
    get_queue_attributes,
    get_queue_limits,
    parse_redrive_policy,
    queue_url_from_arn,
)

log = logging.getLogger(__name__)

#: Used when the input queue has no redrive policy and --max-attempts is not given.
DEFAULT_MAX_ATTEMPTS = 3


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class WorkerConfig:
    """How one worker process consumes the input queue. Validated by pydantic on construction: a bad
    value raises a ``ValueError`` (pydantic's ``ValidationError``) naming the field.

    :param queue_url: input queue URL.
    :param results_url: results queue URL.
    :param dead_letter_url: where permanent failures go; ``None`` reads the input queue's redrive policy.
    :param concurrency: handler threads (handlers are expected to be I/O-bound).
    :param prefetch: a fixed number of messages received ahead of a free handler (0..``concurrency``),
        which turns adaptive prefetch off; ``None`` (default) adapts, see ``prefetch_horizon_s``.
    :param prefetch_horizon_s: adaptive prefetch holds what the handlers can start within this many
        seconds (:func:`~batchq.worker.prefetch.prefetch_limit`, from the average handler duration):
        up to ``prefetch_cap`` for short jobs, ``concurrency`` for jobs this long or longer and until a
        few durations are known. 0 turns it off (prefetch = ``concurrency``).
    :param prefetch_cap: most messages adaptive prefetch holds waiting (one ReceiveMessage takes ten).
    :param receivers: receiver threads long-polling the input queue.
    :param wait_seconds: ReceiveMessage long-poll wait (20 in production; tests use less).
    :param visibility_timeout: seconds a received message stays invisible (and each heartbeat extension);
        ``None`` uses the queue's ``VisibilityTimeout``.
    :param max_attempts: deliveries before a failing payload gets a ``failed`` result and is dead-lettered;
        ``None`` uses the queue's ``maxReceiveCount`` (capped by it either way).
    :param heartbeat_fraction: extend a held message's visibility after this fraction of the timeout.
    :param retry_base_s: first retry backoff; doubles with each delivery (full jitter).
    :param retry_cap_s: longest retry backoff; ``None`` means the visibility timeout.
    :param grace_period_s: on SIGTERM, how long running handlers may take to finish.
    :param batch_wait_s: longest a finished result waits to share a SendMessageBatch/DeleteMessageBatch.
    :param flush_workers: result/delete batches in flight at once.
    :param handler_timeout_s: longest one handler call may run (a job's ``@job(timeout_s=...)`` wins);
        past it the delivery is a transient failure and its thread is abandoned. Default 900 s (Lambda's
        ceiling); ``None``: no limit.
    :param max_stuck_handlers: abandoned handler threads (still running past their timeout) at which
        the worker stops itself, handing back what it holds, to be restarted; default ``concurrency``.
    :param worker_id: recorded in every result (``host:pid`` by default).
    """

    queue_url: str
    results_url: str
    dead_letter_url: str | None = None
    concurrency: int = Field(4, ge=1)
    prefetch: int | None = Field(None, ge=0)
    prefetch_horizon_s: float = Field(1.0, ge=0, allow_inf_nan=False)
    prefetch_cap: int = Field(limits.MAX_BATCH_ENTRIES, ge=0, le=limits.MAX_BATCH_ENTRIES)
    receivers: int = Field(1, ge=1)
    wait_seconds: int = Field(limits.MAX_WAIT_TIME_SECONDS, ge=0, le=limits.MAX_WAIT_TIME_SECONDS)
    visibility_timeout: int | None = Field(None, ge=1, le=limits.MAX_VISIBILITY_TIMEOUT_SECONDS)
    max_attempts: int | None = Field(None, ge=1)
    heartbeat_fraction: float = Field(0.5, gt=0, lt=1)
    retry_base_s: float = Field(2.0, ge=0, allow_inf_nan=False)
    retry_cap_s: float | None = Field(None, ge=0, allow_inf_nan=False)
    grace_period_s: float = Field(30.0, ge=0, allow_inf_nan=False)
    batch_wait_s: float = Field(0.05, ge=0, allow_inf_nan=False)
    flush_workers: int = Field(2, ge=1)
    handler_timeout_s: float | None = Field(900.0, gt=0, allow_inf_nan=False)
    max_stuck_handlers: int | None = Field(None, ge=1)
    worker_id: str = field(default_factory=default_worker_id)
    #: True when ``prefetch`` is fixed (given explicitly, or ``prefetch_horizon_s`` is 0).
    prefetch_fixed: bool = field(init=False, default=False)

    @model_validator(mode="after")
    def _derived(self) -> WorkerConfig:
        self.prefetch_fixed = self.prefetch is not None or self.prefetch_horizon_s == 0
        if self.prefetch is None:
            self.prefetch = self.concurrency
        if self.prefetch > self.concurrency:
            raise ValueError(
                f"prefetch must be between 0 and concurrency ({self.concurrency}), got {self.prefetch}: "
                "prefetched messages are invisible to other workers while they wait"
            )
        if self.max_stuck_handlers is None:
            self.max_stuck_handlers = self.concurrency
        return self

    @property
    def slots(self) -> int:
        """Messages held before a handler finishes: running + prefetched (the floor when adaptive)."""
        return self.concurrency + (self.prefetch or 0)


@dataclass(frozen=True)
class QueueSettings:
    """What the worker reads from the input queue at start."""

    visibility_timeout: int
    max_attempts: int
    max_receive_count: int | None
    dead_letter_url: str | None
    #: ``MaximumMessageSize`` of the results queue and of the dead-letter queue, read once at start.
    results_max_bytes: int = limits.MAX_MESSAGE_BYTES
    dead_letter_max_bytes: int = limits.MAX_MESSAGE_BYTES


def read_queue_settings(client: Any, config: WorkerConfig) -> QueueSettings:
    """Visibility timeout, attempts and DLQ from the input queue's attributes (one GetQueueAttributes
    call), overridden by ``config``."""
    attrs = get_queue_attributes(client, config.queue_url, ["VisibilityTimeout", "RedrivePolicy"])
    visibility = config.visibility_timeout or int(attrs.get("VisibilityTimeout", 30))
    policy = parse_redrive_policy(attrs.get("RedrivePolicy"))
    max_receive = policy.max_receive_count if policy else None
    if config.max_attempts is None:
        attempts = max_receive or DEFAULT_MAX_ATTEMPTS
    elif max_receive is not None and config.max_attempts > max_receive:
        # SQS would dead-letter the message before our last attempt could publish the failed result,
        # and the run's ledger would never close.
        log.warning(
            "--max-attempts %d exceeds the queue's maxReceiveCount %d; using %d",
            config.max_attempts, max_receive, max_receive,
        )
        attempts = max_receive
    else:
        attempts = config.max_attempts
    dlq = config.dead_letter_url
    if dlq is None and policy is not None:
        dlq = queue_url_from_arn(client, policy.dead_letter_arn)
    # Sizes are checked before every send (a lower-limit queue fails a whole batch call otherwise); the
    # results queue's read also proves it exists before the first message is taken.
    results_max = get_queue_limits(client, config.results_url).max_message_bytes
    dlq_max = get_queue_limits(client, dlq).max_message_bytes if dlq else limits.MAX_MESSAGE_BYTES
    return QueueSettings(visibility, attempts, max_receive, dlq, results_max, dlq_max)
