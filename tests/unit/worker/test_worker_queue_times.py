"""The worker stamps each result with its input message's SQS timestamps (the payload's queue lag)."""

from __future__ import annotations

from datetime import datetime, timezone

from batchq.messages import WorkResult
from batchq.worker.execute import Action, Outcome, queue_times, with_queue_times

MSG = {"Attributes": {"SentTimestamp": "1767225600000", "ApproximateFirstReceiveTimestamp": "1767225602000", "ApproximateReceiveCount": "1"}}
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def outcome(**kw) -> Outcome:
    return Outcome(Action.ACK, WorkResult(batch="b", run_id="r", key="k", status="succeeded", output=kw or {}))


def test_queue_times_from_receive_attributes():
    assert queue_times(MSG) == {"enqueued_at": T0, "first_received_at": datetime(2026, 1, 1, 0, 0, 2, tzinfo=timezone.utc)}
    assert queue_times({"Attributes": {}}) == {}


def test_results_are_stamped_and_outcomes_without_a_result_untouched():
    stamped = with_queue_times(outcome(), MSG)
    assert stamped.result.enqueued_at == T0 and stamped.result.first_received_at.second == 2
    retry = Outcome(Action.RETRY, None, "transient")
    assert with_queue_times(retry, MSG) is retry


def test_a_result_the_stamps_would_push_over_the_limit_stays_unstamped():
    plain = outcome(blob="x" * 500)
    limit = len(plain.result.model_dump_json().encode()) + 10  # fits now, not with ~90 bytes more
    assert with_queue_times(plain, MSG, max_result_bytes=limit) is plain
