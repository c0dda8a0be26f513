"""Exceptions a handler raises to steer the worker."""

from __future__ import annotations

from batchq.errors import BatchqError


class PermanentError(BatchqError):
    """Raise from a handler when retrying cannot help (bad input data, a customer that does not exist).

    The worker publishes a ``failed`` result with ``permanent: true`` and dead-letters the message at
    once instead of retrying it up to the queue's ``maxReceiveCount``.
    """
