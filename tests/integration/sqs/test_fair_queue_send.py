"""Fair queues on the send path: ``fair_queue`` payloads reach a standard queue with their partition key
as ``MessageGroupId`` (moto and LocalStack both accept and return it), and an endpoint that refuses the
parameter gets the payloads without it, with one reason in the report, never a failed send."""

from __future__ import annotations

import json
import os

import pytest

from batchq.plan import Plan
from batchq.spec import BatchSpec
from batchq.sqs import send_bodies
from batchq.sqs.client import sqs_client as batchq_sqs_client
from tests.support.sqs_fault_proxy import SqsFaultProxy

pytestmark = pytest.mark.integration


def _plan():
    spec = BatchSpec.from_dict(
        {
            "name": "fair",
            "job_type": "j",
            "queues": {"input": "in", "results": "out"},
            "dimensions": {"customer": ["big", "small"], "item": list(range(7))},
            "partition_by": ["customer"],
            "fair_queue": True,
            "order": "interleave",
        }
    )
    return Plan(spec, "run-1")


def _received_groups(client, url):
    groups = {}
    while True:
        msgs = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]).get("Messages", [])
        if not msgs:
            return groups
        for m in msgs:
            body = json.loads(m["Body"])
            groups[body["key"]] = (body["dims"]["customer"], m.get("Attributes", {}).get("MessageGroupId"))
        client.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])


def test_each_message_carries_its_partition_key_as_group_id(sqs_client, make_queue):
    url = make_queue()
    plan = _plan()
    items = [m for s in plan.shards() for m in plan.iter_messages(s, grouped=True)]
    report = send_bodies(sqs_client, url, items, group_ids=True)
    assert (report.sent, report.grouped, report.groups_refused) == (14, 14, None)
    groups = _received_groups(sqs_client, url)
    assert len(groups) == 14
    assert all(customer == group for customer, group in groups.values())


def test_an_endpoint_that_refuses_group_ids_gets_the_payloads_without_them(sqs_endpoint, make_queue):
    url = make_queue()
    plan = _plan()
    items = [m for s in plan.shards() for m in plan.iter_messages(s, grouped=True)]
    with SqsFaultProxy(sqs_endpoint) as proxy:
        proxy.plan.refuse_group_ids = True
        client = batchq_sqs_client(endpoint_url=proxy.url, region_name=os.environ["AWS_DEFAULT_REGION"])
        report = send_bodies(client, url, items, group_ids=True, max_in_flight=1)
        refused_calls = proxy.log.batch_calls - proxy.log.forwarded_calls
    assert report.sent == 14 and not report.failed
    assert report.grouped == 0
    assert "MessageGroupId" in report.groups_refused
    # The first refusal turns grouping off: one refused call, then every chunk goes without the id.
    assert refused_calls == 1
    groups = _received_groups(client_for(sqs_endpoint), url)
    assert len(groups) == 14 and all(group is None for _, group in groups.values())


def client_for(endpoint):
    return batchq_sqs_client(endpoint_url=endpoint, region_name=os.environ["AWS_DEFAULT_REGION"])
