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


#: The longest error text batchq passes on (results, XCom, logs, pages): enough for a message and a
#: line of context, never a whole response body or traceback.
MAX_ERROR_TEXT = 500
#: Where Airflow keeps its secrets masker: the Task SDK's copy (task processes) and core's (API server).
_MASKER_MODULES = ("airflow.sdk._shared.secrets_masker", "airflow._shared.secrets_masker")


def safe_error_text(text: object, limit: int = MAX_ERROR_TEXT) -> str:
    """The one way error text from a handler, a sink or a receiver leaves batchq: passed through
    Airflow's secrets masker when this process runs inside Airflow (a connection password or a masked
    Variable that ended up in an exception message is replaced by ``***``), then capped at ``limit``
    characters everywhere.

    Workers never import Airflow: the masker is used only when ``airflow`` is already imported.

    :param text: the error text (any object: ``str()`` of it is used).
    :param limit: the longest text returned, the ellipsis included.
    """
    import sys

    value = str(text)
    if "airflow" in sys.modules:
        value = _masked(value)
    return value if len(value) <= limit else value[: max(0, limit - 1)] + "…"


def _masked(value: str) -> str:
    import importlib

    # Both copies: a task process registers secrets with the Task SDK's, the API server with core's.
    for name in _MASKER_MODULES:
        try:
            value = str(importlib.import_module(name).redact(value))
        except Exception:  # noqa: BLE001 - a masker that is missing or fails: the text is still capped
            continue
    return value
