"""Worker settings, validated on construction, and what is read from the queue at start."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from batchq import limits
from batchq.queues import get_queue_attributes, parse_redrive_policy, queue_url_from_arn

log = logging.getLogger(__name__)

#: Used when the input queue has no redrive policy and --max-attempts is not given.
DEFAULT_MAX_ATTEMPTS = 3


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class WorkerConfig:
    """How one worker process consumes the input queue.

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
    :param worker_id: recorded in every result (``host:pid`` by default).
    """

    queue_url: str
    results_url: str
    dead_letter_url: str | None = None
    concurrency: int = 4
    prefetch: int | None = None
    prefetch_horizon_s: float = 1.0
    prefetch_cap: int = limits.MAX_BATCH_ENTRIES
    receivers: int = 1
    wait_seconds: int = limits.MAX_WAIT_TIME_SECONDS
    visibility_timeout: int | None = None
    max_attempts: int | None = None
    heartbeat_fraction: float = 0.5
    retry_base_s: float = 2.0
    retry_cap_s: float | None = None
    grace_period_s: float = 30.0
    batch_wait_s: float = 0.05
    flush_workers: int = 2
    worker_id: str = field(default_factory=default_worker_id)
    #: True when ``prefetch`` is fixed (given explicitly, or ``prefetch_horizon_s`` is 0).
    prefetch_fixed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.prefetch_horizon_s < 0:
            raise ValueError(f"prefetch_horizon_s must be >= 0 (0 turns adaptive prefetch off), got {self.prefetch_horizon_s}")
        if not 0 <= self.prefetch_cap <= limits.MAX_BATCH_ENTRIES:
            raise ValueError(f"prefetch_cap must be 0..{limits.MAX_BATCH_ENTRIES}, got {self.prefetch_cap}")
        self.prefetch_fixed = self.prefetch is not None or self.prefetch_horizon_s == 0
        if self.prefetch is None:
            self.prefetch = self.concurrency
        if not 0 <= self.prefetch <= self.concurrency:
            raise ValueError(
                f"prefetch must be between 0 and concurrency ({self.concurrency}), got {self.prefetch}: "
                "prefetched messages are invisible to other workers while they wait"
            )
        if self.receivers < 1:
            raise ValueError(f"receivers must be >= 1, got {self.receivers}")
        if not 0 <= self.wait_seconds <= limits.MAX_WAIT_TIME_SECONDS:
            raise ValueError(f"wait_seconds must be 0..{limits.MAX_WAIT_TIME_SECONDS}, got {self.wait_seconds}")
        if self.visibility_timeout is not None and not 1 <= self.visibility_timeout <= limits.MAX_VISIBILITY_TIMEOUT_SECONDS:
            raise ValueError(f"visibility_timeout must be 1..{limits.MAX_VISIBILITY_TIMEOUT_SECONDS}, got {self.visibility_timeout}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not 0 < self.heartbeat_fraction < 1:
            raise ValueError(f"heartbeat_fraction must be between 0 and 1, got {self.heartbeat_fraction}")
        if self.retry_base_s < 0 or self.grace_period_s < 0 or self.batch_wait_s < 0:
            raise ValueError("retry_base_s, grace_period_s and batch_wait_s must be >= 0")

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
    return QueueSettings(visibility, attempts, max_receive, dlq)
