"""The Lambda adapter with SQS event fixtures in the shape AWS documents, results on a real queue."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
import worker_testjobs  # noqa: F401 - registers t-echo
from _worker_helpers import make_plan, read_dead_letters, read_results
from batchq.worker import lambda_adapter, lambda_handler
from batchq.worker.deadletter import REASON_ATTRIBUTE

pytestmark = pytest.mark.integration


def sqs_record(body: str, *, receive_count: int = 1, queue: str = "batchq-input") -> dict:
    """One record of an SQS → Lambda event, as in the AWS Lambda developer guide."""
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a" + uuid.uuid4().hex,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
        "awsRegion": "us-east-1",
    }


class FakeLambdaContext:
    """The attributes of the Lambda runtime's context object that the adapter reads."""

    function_name = "batchq-worker"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:batchq-worker"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def bodies(n: int, **params) -> list[tuple[str, str]]:
    plan = make_plan(n, "t-echo", params=params)
    return [kb for shard in plan.shards() for kb in plan.iter_bodies(shard)]


@pytest.fixture
def lambda_env(monkeypatch, sqs_endpoint, queue_spec_factory):
    _, urls = queue_spec_factory()
    monkeypatch.setenv("BATCHQ_SQS_ENDPOINT", sqs_endpoint)
    monkeypatch.setenv("BATCHQ_RESULTS_QUEUE_URL", urls.results)
    monkeypatch.setenv("BATCHQ_HANDLERS", "worker_testjobs")
    monkeypatch.setenv("BATCHQ_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("BATCHQ_DEAD_LETTER_QUEUE_URL", urls.input_dlq)
    lambda_adapter.reset()
    yield urls
    lambda_adapter.reset()


def test_partial_batch_response_reports_only_transient_failures(sqs_client, lambda_env):
    urls = lambda_env
    ok = bodies(3)
    transient_first = bodies(1, fail=True)
    transient_last = bodies(1, fail=True)
    permanent = bodies(1, permanent=True)
    records = [sqs_record(b) for _, b in ok]
    retry_rec = sqs_record(transient_first[0][1], receive_count=1)
    final_rec = sqs_record(transient_last[0][1], receive_count=3)
    perm_rec = sqs_record(permanent[0][1])
    junk_rec = sqs_record("{not json")
    unknown_rec = sqs_record(json.dumps({"schema_version": 1, "batch": "b", "run_id": "r", "key": "k-unk",
                                         "job_type": "nope", "dims": {}, "created_at": "2026-01-01T00:00:00Z"}))
    event = {"Records": records + [retry_rec, final_rec, perm_rec, junk_rec, unknown_rec]}

    response = lambda_handler(event, FakeLambdaContext())

    # Only the transient failure with attempts left goes back to SQS for a retry.
    assert response == {"batchItemFailures": [{"itemIdentifier": retry_rec["messageId"]}]}
    results = {r.key: r for r in read_results(sqs_client, urls.results, expect=6)}
    assert {k for k, _ in ok} <= set(results) and all(results[k].status == "succeeded" for k, _ in ok)
    assert results[transient_last[0][0]].status == "failed" and results[transient_last[0][0]].attempts == 3
    assert results[permanent[0][0]].error.permanent
    assert results["k-unk"].error.type == "UnknownJobType"
    assert transient_first[0][0] not in results
    assert len(results) == 6
    assert {r.worker for r in results.values()} == {FakeLambdaContext.aws_request_id}
    # the event records' SQS timestamps: each result carries its payload's queue lag
    assert {(r.enqueued_at.timestamp(), r.first_received_at.timestamp()) for r in results.values()} == {(1545082649.183, 1545082649.185)}
    dead = read_dead_letters(sqs_client, urls.input_dlq, expect=4)
    assert sorted(m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"].split(":")[0] for m in dead) == [
        "InvalidMessage", "PermanentError", "RuntimeError", "UnknownJobType"]


def test_unconfirmed_results_are_reported_as_failures(sqs_client, lambda_env, monkeypatch, make_queue):
    gone = make_queue()
    sqs_client.delete_queue(QueueUrl=gone)  # results cannot be sent anywhere
    monkeypatch.setenv("BATCHQ_RESULTS_QUEUE_URL", gone)
    lambda_adapter.reset()
    records = [sqs_record(b) for _, b in bodies(4)]
    response = lambda_handler({"Records": records}, FakeLambdaContext())
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == sorted(r["messageId"] for r in records)


def test_empty_event(lambda_env):
    assert lambda_handler({"Records": []}, None) == {"batchItemFailures": []}
