"""batchq.sqs against a real SQS-compatible endpoint: batching, partial failures, provisioning."""

from __future__ import annotations

import json

import pytest
from batchq import limits
from batchq.errors import BatchqError, QueueNotFound, SendFailed
from batchq.sqs import (
    change_visibility,
    delete_messages,
    get_snapshot,
    receive_messages,
    send_bodies,
    send_message,
)
from batchq.sqs.queues import (
    delete_queue,
    ensure_queues,
    get_max_receive_count,
    get_queue_arn,
    get_queue_attributes,
    get_queue_limits,
    get_redrive_policy,
    queue_url_from_arn,
)

from tests.support.queues import take_all_bodies

pytestmark = pytest.mark.integration


def drain_all(client, url):
    return {json.loads(body)["key"] for body in take_all_bodies(client, url)}


def test_send_bodies_delivers_every_key_once(sqs_client, make_queue):
    url = make_queue()
    items = [(f"k{i}", json.dumps({"key": f"k{i}", "n": i})) for i in range(95)]
    report = send_bodies(sqs_client, url, iter(items), max_in_flight=4)
    assert report.sent == 95 and not report.failed
    assert report.calls == 10  # 9 full batches of 10 + one of 5
    assert set(drain_all(sqs_client, url)) == {k for k, _ in items}


def test_oversize_entry_is_reported_by_key_and_the_rest_are_sent(sqs_client, make_queue):
    url = make_queue()
    big = "x" * (limits.MAX_MESSAGE_BYTES + 1)
    items = [("a", '{"key":"a"}'), ("too-big", big), ("b", '{"key":"b"}')]
    with pytest.raises(SendFailed) as info:
        send_bodies(sqs_client, url, items)
    assert set(info.value.failed) == {"too-big"}
    assert "MessageTooLarge" in info.value.failed["too-big"]
    assert info.value.sent == 2
    assert set(drain_all(sqs_client, url)) == {"a", "b"}


def test_missing_queue_is_a_specific_error(sqs_client, sqs_endpoint):
    missing = f"{sqs_endpoint}/000000000000/does-not-exist-{id(sqs_client)}"
    with pytest.raises(QueueNotFound):
        send_bodies(sqs_client, missing, [("k", "{}")])


def test_snapshot_counts_visible_in_flight_and_dlq(sqs_client, queue_spec_factory):
    spec, urls = queue_spec_factory(max_receive_count=2)
    send_bodies(sqs_client, urls.input, [(f"k{i}", "{}") for i in range(5)])
    got = receive_messages(sqs_client, urls.input, max_messages=2, wait_seconds=0, visibility_timeout=30)
    snap = get_snapshot(sqs_client, urls.input, urls.input_dlq)
    assert snap.visible + snap.in_flight == 5
    assert snap.in_flight == len(got)
    assert snap.dlq_visible == 0
    # Hand them back at once: visibility 0.
    assert not change_visibility(sqs_client, urls.input, got, 0)
    assert get_snapshot(sqs_client, urls.input).in_flight == 0


def test_ensure_queues_is_idempotent_and_sets_redrive(sqs_client, queue_spec_factory):
    spec, urls = queue_spec_factory(max_receive_count=4)
    again = ensure_queues(sqs_client, spec)
    assert again == urls
    assert get_max_receive_count(sqs_client, urls.input) == 4
    attrs = sqs_client.get_queue_attributes(QueueUrl=urls.input, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == str(spec.visibility_timeout_s)
    assert attrs.get("SqsManagedSseEnabled") == "true"


def test_message_dead_letters_after_max_receive_count(sqs_client, queue_spec_factory):
    spec, urls = queue_spec_factory(max_receive_count=1)
    send_bodies(sqs_client, urls.input, [("k", '{"key":"k"}')])
    first = receive_messages(sqs_client, urls.input, wait_seconds=0, visibility_timeout=0)
    assert len(first) == 1
    import time

    # With maxReceiveCount 1 the next receive moves the message to the DLQ instead of delivering it:
    # the input queue must never hand it out a second time.
    redelivered = []
    deadline = time.time() + 10
    while time.time() < deadline:
        redelivered += receive_messages(sqs_client, urls.input, wait_seconds=1)
        if get_snapshot(sqs_client, urls.input, urls.input_dlq).dlq_visible == 1:
            break
    assert redelivered == []
    snap = get_snapshot(sqs_client, urls.input, urls.input_dlq)
    assert snap.dlq_visible == 1 and snap.backlog == 0
    on_dlq = receive_messages(sqs_client, urls.input_dlq, wait_seconds=0)
    assert [m["Body"] for m in on_dlq] == ['{"key":"k"}']


def test_delete_with_stale_receipt_is_reported(sqs_client, make_queue):
    url = make_queue()
    send_bodies(sqs_client, url, [("k", "{}")])
    msgs = receive_messages(sqs_client, url, wait_seconds=0)
    assert not delete_messages(sqs_client, url, msgs)
    assert get_snapshot(sqs_client, url).backlog == 0
    # Deleting twice never raises: SQS either accepts it (AWS, moto) or lists the entry as Failed
    # (ReceiptHandleIsInvalid), which comes back by MessageId with the reason.
    again = delete_messages(sqs_client, url, msgs)
    assert set(again) <= {msgs[0]["MessageId"]}
    assert all("ReceiptHandle" in reason for reason in again.values())
    # A receipt handle SQS cannot parse is the sender's fault: reported by MessageId, not retried.
    bogus = [{"MessageId": "m-bogus", "ReceiptHandle": "not-a-receipt-handle"}]
    failed = delete_messages(sqs_client, url, bogus)
    assert list(failed) == ["m-bogus"] and failed["m-bogus"].strip()


def test_get_queue_url_accepts_a_name_or_a_url(sqs_client, make_queue):
    from batchq.sqs import get_queue_url

    url = make_queue()
    name = url.rsplit("/", 1)[1]
    assert get_queue_url(sqs_client, name) == url
    assert get_queue_url(sqs_client, url) == url
    with pytest.raises(QueueNotFound):
        get_queue_url(sqs_client, f"{name}-missing")


def test_send_message_returns_its_id_and_keeps_attributes(sqs_client, make_queue):
    url = make_queue()
    attrs = {"why": {"DataType": "String", "StringValue": "because"}}
    message_id = send_message(sqs_client, url, '{"key":"one"}', attributes=attrs)
    got = sqs_client.receive_message(QueueUrl=url, MessageAttributeNames=["All"], WaitTimeSeconds=0)["Messages"]
    assert [m["MessageId"] for m in got] == [message_id]
    assert got[0]["Body"] == '{"key":"one"}'
    assert got[0]["MessageAttributes"]["why"]["StringValue"] == "because"


def test_send_message_failures_are_classified(sqs_client, make_queue, sqs_endpoint):
    with pytest.raises(QueueNotFound):
        send_message(sqs_client, f"{sqs_endpoint}/000000000000/missing-{id(sqs_client)}", "{}")
    url = make_queue(MaximumMessageSize="1024")
    with pytest.raises(SendFailed) as info:
        send_message(sqs_client, url, "x" * 2048, key="too-big")
    assert list(info.value.failed) == ["too-big"]


def test_queue_attributes_arn_limits_and_redrive_policy(sqs_client, queue_spec_factory, make_queue):
    spec, urls = queue_spec_factory(max_receive_count=3)
    policy = get_redrive_policy(sqs_client, urls.input)
    assert policy is not None and policy.max_receive_count == 3
    assert policy.dead_letter_arn == get_queue_arn(sqs_client, urls.input_dlq)
    assert policy.dead_letter_arn.endswith(f":{spec.input_dlq}")
    assert queue_url_from_arn(sqs_client, policy.dead_letter_arn) == urls.input_dlq
    assert get_redrive_policy(sqs_client, urls.input_dlq) is None
    assert get_max_receive_count(sqs_client, urls.input_dlq) is None
    attrs = get_queue_attributes(sqs_client, urls.input_dlq, ["MessageRetentionPeriod", "VisibilityTimeout"])
    assert attrs["MessageRetentionPeriod"] == "1209600"
    small = make_queue(MaximumMessageSize="2048")
    assert get_queue_limits(sqs_client, small).max_message_bytes == 2048
    assert get_queue_limits(sqs_client, urls.input).max_message_bytes > 2048


def test_queue_lookups_name_what_is_missing_or_malformed(sqs_client, sqs_endpoint):
    missing = f"{sqs_endpoint}/000000000000/missing-{id(sqs_client)}"
    with pytest.raises(QueueNotFound):
        get_queue_attributes(sqs_client, missing, ["QueueArn"])
    with pytest.raises(QueueNotFound):
        queue_url_from_arn(sqs_client, f"arn:aws:sqs:us-east-1:123456789012:missing-{id(sqs_client)}")
    with pytest.raises(BatchqError, match="not an SQS queue ARN"):
        queue_url_from_arn(sqs_client, "arn:aws:s3:::bucket")


def test_delete_queue_is_idempotent(sqs_client):
    import uuid

    from batchq.sqs.queues import ensure_queue

    url = ensure_queue(sqs_client, f"del-{uuid.uuid4().hex[:12]}")
    assert ensure_queue(sqs_client, url.rsplit("/", 1)[1]) == url
    delete_queue(sqs_client, url)
    delete_queue(sqs_client, url)  # already gone: not an error
    with pytest.raises(QueueNotFound):
        get_queue_attributes(sqs_client, url, ["QueueArn"])
