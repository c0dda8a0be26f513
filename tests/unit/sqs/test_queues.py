"""The pure parts of batchq.sqs.queues: redrive policies and queue ARNs (the I/O parts run against a real
endpoint in tests/integration/sqs/test_sqs_calls.py)."""

from __future__ import annotations

import json

import pytest
from batchq.errors import BatchqError
from batchq.sqs.queues import (
    MoveTask,
    RedrivePolicy,
    parse_queue_arn,
    parse_redrive_policy,
)


def test_redrive_policy_round_trips_through_the_attribute():
    policy = RedrivePolicy("arn:aws:sqs:eu-west-1:123456789012:in-dlq", 4)
    attribute = policy.to_attribute()
    # SQS stores maxReceiveCount as a string; both spellings must parse.
    assert json.loads(attribute) == {"deadLetterTargetArn": policy.dead_letter_arn, "maxReceiveCount": "4"}
    assert parse_redrive_policy(attribute) == policy
    assert parse_redrive_policy('{"deadLetterTargetArn": "arn:aws:sqs:r:1:q", "maxReceiveCount": 7}') == RedrivePolicy(
        "arn:aws:sqs:r:1:q", 7
    )


@pytest.mark.parametrize("value", [None, ""])
def test_no_redrive_policy_is_none(value):
    assert parse_redrive_policy(value) is None


@pytest.mark.parametrize("value", ["not json", '{"maxReceiveCount": 3}', '{"deadLetterTargetArn": "a", "maxReceiveCount": "x"}', "[]"])
def test_a_malformed_redrive_policy_is_a_clear_error(value):
    with pytest.raises(BatchqError, match="is not a redrive policy"):
        parse_redrive_policy(value)


def test_queue_arn_parts():
    assert parse_queue_arn("arn:aws:sqs:us-east-1:123456789012:my-queue") == ("123456789012", "my-queue")
    assert parse_queue_arn("arn:aws-cn:sqs:cn-north-1:000000000000:q.fifo") == ("000000000000", "q.fifo")


@pytest.mark.parametrize("arn", ["arn:aws:s3:::bucket", "my-queue", "arn:aws:sqs:us-east-1:123:", "arn:aws:sqs:r:1:q:extra"])
def test_a_non_queue_arn_is_a_clear_error(arn):
    with pytest.raises(BatchqError, match="not an SQS queue ARN"):
        parse_queue_arn(arn)


@pytest.mark.parametrize("status, finished", [("RUNNING", False), ("CANCELLING", False), ("COMPLETED", True), ("FAILED", True), ("CANCELLED", True)])
def test_move_task_finished(status, finished):
    assert MoveTask("h", status, 0).finished is finished
