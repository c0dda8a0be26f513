"""What a handler gets besides its payload."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from batchq.messages import WorkPayload


@dataclass(frozen=True)
class JobContext:
    """Per-delivery context passed to ``handler(payload, ctx)``.

    :param payload: the payload being handled (also the handler's first argument).
    :param attempt: this delivery's number (SQS ``ApproximateReceiveCount``, 1 on the first delivery).
    :param max_attempts: deliveries before the worker gives up and publishes a ``failed`` result.
    :param worker: id of the worker process (``host:pid``) or Lambda request.
    :param message_id: SQS message id of this delivery.
    :param log: a logger for the handler.
    """

    payload: WorkPayload
    attempt: int = 1
    max_attempts: int = 3
    worker: str = ""
    message_id: str = ""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("batchq.handlers"))

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts
