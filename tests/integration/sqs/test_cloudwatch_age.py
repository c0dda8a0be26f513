"""Queue-level age: CloudWatch where it answers, else the age workers observed, and which (age_source)."""

from __future__ import annotations

import socket

import boto3
import pytest
from batchq.sqs.cloudwatch import (
    SOURCE_CLOUDWATCH,
    SOURCE_WORKER_RECEIPT,
    OldestAgeProbe,
    observed_age_s,
    queue_age,
)
from botocore.config import Config

pytestmark = pytest.mark.integration


def cw(endpoint: str):
    return boto3.client("cloudwatch", endpoint_url=endpoint, region_name="us-east-1",
                        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=3))


def test_queue_age_prefers_cloudwatch_then_worker_receipt():
    assert queue_age(12.5, 3.0) == {"oldest_age_s": 12.5, "age_source": SOURCE_CLOUDWATCH}
    assert queue_age(None, 3.0) == {"oldest_age_s": 3.0, "age_source": SOURCE_WORKER_RECEIPT}
    assert queue_age(None, None) == {"oldest_age_s": None, "age_source": None}
    assert observed_age_s({"input_wait": {"max": 4.2}}) == 4.2 and observed_age_s({}) is None


def test_endpoint_without_sqs_datapoints_gives_none(sqs_endpoint):
    # moto's server speaks CloudWatch but publishes no AWS/SQS metrics: an answer without data points.
    probe = OldestAgeProbe(cw(sqs_endpoint))
    assert probe.oldest_age_s("no-such-queue") is None
    assert probe.unavailable is None  # reachable: asked again next time
    probe.oldest_age_s("no-such-queue")
    assert probe.attempts == 2


def test_published_datapoint_is_read(sqs_endpoint):
    from datetime import datetime, timezone

    client = cw(sqs_endpoint)
    name = f"age-{socket.gethostname()[:8]}-q"
    client.put_metric_data(Namespace="AWS/SQS", MetricData=[{
        "MetricName": "ApproximateAgeOfOldestMessage", "Dimensions": [{"Name": "QueueName", "Value": name}],
        "Timestamp": datetime.now(timezone.utc), "Value": 42.0, "Unit": "Seconds"}])
    assert OldestAgeProbe(client).oldest_age_s(name) == 42.0


def test_unreachable_cloudwatch_is_tried_once_then_cached():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: connection refused
    probe = OldestAgeProbe(cw(f"http://127.0.0.1:{port}"))
    assert probe.oldest_age_s("q") is None and probe.unavailable
    assert probe.oldest_age_s("q") is None
    assert probe.attempts == 1
