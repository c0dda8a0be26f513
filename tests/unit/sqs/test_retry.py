"""batchq.sqs.retry: backoff bounds and jitter, and what counts as retryable, on botocore's real shapes."""

from __future__ import annotations

import random

import pytest
from batchq.sqs.retry import backoff_delay, error_code, is_retryable
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)


class _Top(random.Random):
    """Always draws the upper bound: the ceiling of each attempt, exactly."""

    def uniform(self, a: float, b: float) -> float:
        return b


class _Bottom(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


@pytest.mark.parametrize("attempt, want", [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (60, 1.0), (10_000, 1.0)])
def test_ceiling_doubles_per_attempt_up_to_the_cap(attempt, want):
    assert backoff_delay(attempt, base=0.1, cap=1.0, rng=_Top()) == pytest.approx(want)


def test_full_jitter_starts_at_zero():
    assert backoff_delay(7, base=0.1, cap=1.0, rng=_Bottom()) == 0.0


def test_delays_stay_within_bounds_and_are_spread_out():
    rng = random.Random(1234)
    draws = [backoff_delay(4, base=0.1, cap=5.0, rng=rng) for _ in range(2000)]
    assert all(0.0 <= d <= 0.8 for d in draws)
    # Full jitter: the whole range is used, not a narrow band around the ceiling.
    assert min(draws) < 0.05 and max(draws) > 0.75
    assert 0.3 < sum(draws) / len(draws) < 0.5


def test_the_same_seed_gives_the_same_delays():
    a = [backoff_delay(n, rng=random.Random(7)) for n in range(1, 10)]
    b = [backoff_delay(n, rng=random.Random(7)) for n in range(1, 10)]
    assert a == b


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_are_one_based(attempt):
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        backoff_delay(attempt)


def test_a_cap_below_zero_never_gives_a_negative_delay():
    assert backoff_delay(3, base=0.1, cap=-1.0, rng=_Top()) == 0.0


# -- classification ----------------------------------------------------------------------------------


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "SendMessageBatch")


@pytest.mark.parametrize("code", ["ThrottlingException", "RequestThrottled", "ServiceUnavailable",
                                  "InternalError", "KmsThrottled", "AWS.SimpleQueueService.KmsThrottled"])
def test_throttles_and_server_trouble_are_retryable_even_on_400(code):
    exc = client_error(code, 400)
    assert error_code(exc) == code
    assert is_retryable(exc)


def test_any_5xx_is_retryable_whatever_the_code():
    assert is_retryable(client_error("SomethingNew", 503))
    assert not is_retryable(client_error("SomethingNew", 400))


@pytest.mark.parametrize("code", ["InvalidParameterValue", "AccessDenied", "InvalidMessageContents",
                                  "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"])
def test_client_mistakes_are_not_retryable(code):
    assert not is_retryable(client_error(code, 400))


@pytest.mark.parametrize("code", ["AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"])
@pytest.mark.parametrize("status", [400, 500])
def test_a_missing_queue_is_never_retryable_even_with_a_5xx(code, status):
    assert not is_retryable(client_error(code, status))


def test_a_client_error_without_a_code_is_named_by_its_class():
    exc = ClientError({}, "ReceiveMessage")
    assert error_code(exc) == "ClientError"
    assert not is_retryable(exc)


@pytest.mark.parametrize("exc", [
    EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
])
def test_connection_level_errors_without_a_response_are_retryable(exc):
    assert error_code(exc) == type(exc).__name__
    assert is_retryable(exc)
