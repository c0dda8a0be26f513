"""The one retry policy: a pure backoff function and one classification of what is worth retrying.

botocore owns whole-call retries (``batchq.sqs.client`` configures its retry mode, attempts and timeouts once).
batchq retries only what botocore cannot see: the ``Failed`` entries of a batch call, sink writes,
visibility changes, a trigger's next poll after an error. All of them wait :func:`backoff_delay`.
"""

from __future__ import annotations

import random

#: Error codes worth retrying (throttling and server-side trouble).
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestThrottled",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KmsThrottled",
        "RequestTimeout",
        "AWS.SimpleQueueService.KmsThrottled",
    }
)
#: Error codes that mean "this queue does not exist": never transient.
MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (or the exception's class name)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(exc).__name__))


def is_retryable(exc: BaseException) -> bool:
    """True for throttles, 5xx and connection-level errors (no response at all); False otherwise."""
    code = error_code(exc)
    if code in MISSING_QUEUE_CODES:
        return False
    response = getattr(exc, "response", None)
    status = (response or {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    # Connection errors, timeouts (no response at all) and 5xx/throttles are transient. botocore's
    # ReadTimeoutError has a ``response`` attribute that is None: no response, so transient too.
    return code in RETRYABLE_CODES or status >= 500 or response is None


def backoff_delay(attempt: int, base: float = 0.05, cap: float = 5.0, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff before retry ``attempt`` (1-based): uniform in
    ``[0, min(cap, base × 2^(attempt-1))]``. Full jitter spreads a burst of failures out instead of
    bringing it back as a burst."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # Bound the exponent so a large attempt number never overflows a float.
    ceiling = min(cap, base * (2 ** min(attempt - 1, 62)))
    return (rng or random).uniform(0, max(0.0, ceiling))
