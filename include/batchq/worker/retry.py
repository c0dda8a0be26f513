"""Retry policy for handler failures: how long a failed message stays invisible before redelivery."""

from __future__ import annotations

import math

from batchq import limits
from batchq.sqs.retry import backoff_delay


def retry_visibility(receive_count: int, base_s: float, cap_s: float) -> int:
    """Seconds to hide a message after its ``receive_count``-th delivery failed.

    Exponential in the receive count (``base_s × 2^(n-1)``, capped at ``cap_s``), with full jitter so a
    burst of failures does not come back as a burst — the same jittered backoff the SQS calls use
    (:func:`batchq.sqs.retry.backoff_delay`), rounded up to SQS's whole seconds.
    """
    if receive_count < 1:
        raise ValueError(f"receive_count must be >= 1, got {receive_count}")
    cap = max(0.0, min(cap_s, limits.MAX_VISIBILITY_TIMEOUT_SECONDS))
    return math.ceil(backoff_delay(receive_count, base=base_s, cap=cap))


def retry_visibility_bound(receive_count: int, base_s: float, cap_s: float) -> int:
    """Largest value :func:`retry_visibility` can return for ``receive_count`` (for docs and tests)."""
    cap = max(0.0, min(cap_s, limits.MAX_VISIBILITY_TIMEOUT_SECONDS))
    return math.ceil(min(cap, base_s * (2 ** (receive_count - 1))))
