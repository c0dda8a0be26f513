"""One small exception tree. Every batchq error is a :class:`BatchqError`."""

from __future__ import annotations

from collections.abc import Mapping


class BatchqError(Exception):
    """Base class for every error batchq raises on purpose."""


class SpecError(BatchqError, ValueError):
    """A BatchSpec is invalid. The message names the field and the offending value."""


class MessageTooLarge(BatchqError, ValueError):
    """A message body exceeds the SQS body limit."""

    def __init__(self, key: str, size: int, limit: int):
        self.key, self.size, self.limit = key, size, limit
        super().__init__(f"message {key!r} is {size} bytes, above the SQS limit of {limit} bytes")


class SendFailed(BatchqError):
    """Some messages could not be sent after all retries. Nothing was dropped silently: ``failed`` maps
    each unsent key to the last reason SQS gave."""

    def __init__(self, failed: Mapping[str, str], sent: int = 0):
        self.failed = dict(failed)
        self.sent = sent
        shown = ", ".join(f"{k}: {v}" for k, v in list(self.failed.items())[:5])
        more = f" (+{len(self.failed) - 5} more)" if len(self.failed) > 5 else ""
        super().__init__(f"{len(self.failed)} message(s) not sent ({sent} sent): {shown}{more}")


class InvalidMessage(BatchqError, ValueError):
    """A message body is not a valid batchq payload/result. Permanent: it must go to a dead-letter path."""

    def __init__(self, reason: str, key: str | None = None):
        self.reason, self.key = reason, key
        super().__init__(reason if key is None else f"{key}: {reason}")


class QueueNotFound(BatchqError, LookupError):
    """A queue named by a spec does not exist (create it with ``batchq queues create``)."""


class SinkUnavailable(BatchqError):
    """Transient: the sink (or the results store) is down, overloaded or pushing back. The drainer keeps
    the batch and retries.

    :param retry_after_s: how long the sink asked us to wait (HTTP ``Retry-After``), if it said.
    :param backpressure: True when the sink is alive but asked us to slow down (429/503): the limiter
        lowers its rate, instead of treating it as an outage.
    """

    def __init__(self, message: str, retry_after_s: float | None = None, backpressure: bool = False):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.backpressure = backpressure
