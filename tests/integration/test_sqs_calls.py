"""batchq.sqs against a real SQS-compatible endpoint: batching, partial failures, provisioning."""

from __future__ import annotations

import json

import pytest

from tests.support.queues import take_all_bodies

from batchq import limits
from batchq.errors import QueueNotFound, SendFailed
from batchq.sqs import (
    change_visibility,
    delete_messages,
    ensure_queues,
    get_max_receive_count,
    get_snapshot,
    receive_messages,
    send_bodies,
)

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

    deadline = time.time() + 10
    while time.time() < deadline:
        assert not receive_messages(sqs_client, urls.input, wait_seconds=1) or True
        if get_snapshot(sqs_client, urls.input, urls.input_dlq).dlq_visible == 1:
            break
    assert get_snapshot(sqs_client, urls.input, urls.input_dlq).dlq_visible == 1


def test_delete_with_stale_receipt_is_reported(sqs_client, make_queue):
    url = make_queue()
    send_bodies(sqs_client, url, [("k", "{}")])
    msgs = receive_messages(sqs_client, url, wait_seconds=0)
    assert not delete_messages(sqs_client, url, msgs)
    # Deleting twice is harmless on SQS (no error) — and must never raise here either.
    assert isinstance(delete_messages(sqs_client, url, msgs), dict)


def test_get_queue_url_accepts_a_name_or_a_url(sqs_client, make_queue):
    from batchq.sqs import get_queue_url

    url = make_queue()
    name = url.rsplit("/", 1)[1]
    assert get_queue_url(sqs_client, name) == url
    assert get_queue_url(sqs_client, url) == url
    with pytest.raises(QueueNotFound):
        get_queue_url(sqs_client, f"{name}-missing")
