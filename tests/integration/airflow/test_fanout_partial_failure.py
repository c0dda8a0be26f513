"""Partial failures of SendMessageBatch, end to end over HTTP: only failed entries are retried, permanent
failures are reported by key and never retried, whole-call throttles/5xx are retried (by botocore, under
batchq's one config — batchq does not stack its own whole-call loop on top), and the queue ends up with
exactly the keys that should be there, once each.

A loopback fault-injection proxy (tests/support/sqs_fault_proxy.py) sits in front of the real endpoint
(moto server or BATCHQ_TEST_SQS_ENDPOINT), so this runs against any SQS-compatible server.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest
from batchq.errors import SendFailed
from batchq.plan import Plan
from batchq.spec import BatchSpec
from batchq.sqs import send_bodies
from batchq.sqs.client import TOTAL_MAX_ATTEMPTS
from batchq.sqs.client import sqs_client as batchq_sqs_client
from support.sqs_fault_proxy import SqsFaultProxy

from tests.support.queues import take_all_bodies

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(sqs_endpoint):
    with SqsFaultProxy(sqs_endpoint) as p:
        yield p


@pytest.fixture
def proxied_client(proxy):
    # The production client (batchq.sqs.client): its botocore retries are part of the policy under test.
    return batchq_sqs_client(endpoint_url=proxy.url, region_name=os.environ["AWS_DEFAULT_REGION"], max_pool_connections=16)


def keyed_items(n: int, prefix: str = "k") -> list[tuple[str, str]]:
    return [(f"{prefix}{i:04d}", json.dumps({"key": f"{prefix}{i:04d}", "n": i})) for i in range(n)]


def read_keys(client, url) -> Counter:
    """Every key now in the queue, with multiplicity (received with a long lease, then deleted)."""
    return Counter(json.loads(body)["key"] for body in take_all_bodies(client, url))


def test_transient_entry_failures_are_retried_and_delivered_exactly_once(proxy, proxied_client, sqs_client, make_queue):
    url = make_queue()
    items = keyed_items(60)
    flaky = {"k0003": 1, "k0017": 2, "k0042": 1, "k0059": 3}
    proxy.plan.transient.update(flaky)

    report = send_bodies(proxied_client, url, items, max_in_flight=4)

    assert report.sent == 60 and not report.failed
    assert report.retried_entries == sum(flaky.values())
    # Only the failed entries were re-sent: everything else was attempted exactly once.
    for key, _ in items:
        assert proxy.log.attempts[key] == 1 + flaky.get(key, 0), key
    assert read_keys(sqs_client, url) == Counter({k: 1 for k, _ in items})


def test_permanent_entry_failures_are_reported_by_key_and_never_retried(proxy, proxied_client, sqs_client, make_queue):
    url = make_queue()
    items = keyed_items(45)
    bad = {"k0000", "k0021", "k0044"}
    proxy.plan.permanent.update(bad)
    proxy.plan.transient["k0010"] = 1  # a transient one in the same run still gets through

    with pytest.raises(SendFailed) as info:
        send_bodies(proxied_client, url, items, max_in_flight=3)

    assert set(info.value.failed) == bad
    assert all("InvalidParameterValue" in reason for reason in info.value.failed.values())
    assert info.value.sent == 45 - len(bad)
    for key in bad:
        assert proxy.log.attempts[key] == 1, f"{key} has SenderFault=true and must not be retried"
    assert proxy.log.attempts["k0010"] == 2
    assert read_keys(sqs_client, url) == Counter({k: 1 for k, _ in items if k not in bad})


def test_entries_still_failing_after_max_attempts_are_reported(proxy, proxied_client, sqs_client, make_queue):
    url = make_queue()
    items = keyed_items(12)
    proxy.plan.transient["k0005"] = 99  # never recovers

    report = send_bodies(proxied_client, url, items, max_attempts=3, raise_on_failure=False)

    assert set(report.failed) == {"k0005"}
    assert proxy.log.attempts["k0005"] == 3
    assert report.sent == 11
    assert read_keys(sqs_client, url) == Counter({k: 1 for k, _ in items if k != "k0005"})


@pytest.mark.parametrize("status, code", [(400, "ThrottlingException"), (500, "InternalError"), (503, "ServiceUnavailable")])
def test_whole_call_throttle_or_server_error_is_retried(proxy, proxied_client, sqs_client, make_queue, status, code):
    url = make_queue()
    items = keyed_items(25)
    proxy.plan.call_errors.extend([(status, code), (status, code)])

    report = send_bodies(proxied_client, url, items, max_in_flight=1)

    assert report.sent == 25 and not report.failed
    assert proxy.log.injected_call_errors == 2
    # 3 chunks (10+10+5); botocore re-sent the first one twice. batchq made 3 calls and re-sent no entry.
    assert proxy.log.batch_calls == 3 + 2
    assert report.calls == 3 and report.call_retries == 2
    assert report.retried_entries == 0
    assert read_keys(sqs_client, url) == Counter({k: 1 for k, _ in items})


def test_whole_call_faults_beyond_botocore_attempts_fail_the_chunk_once(proxy, sqs_client, make_queue):
    """No stacked retries: a chunk whose call keeps failing costs exactly botocore's attempt budget.
    (Budget lowered from batchq's TOTAL_MAX_ATTEMPTS to keep botocore's backoff short; same code path.)"""
    attempts = 2
    assert attempts < TOTAL_MAX_ATTEMPTS
    client = batchq_sqs_client(endpoint_url=proxy.url, retries={"mode": "standard", "total_max_attempts": attempts})
    url = make_queue()
    items = keyed_items(15)
    proxy.plan.call_errors.extend([(503, "ServiceUnavailable")] * attempts)

    report = send_bodies(client, url, items, max_in_flight=1, raise_on_failure=False)

    assert set(report.failed) == {k for k, _ in items[:10]}
    assert all("ServiceUnavailable" in reason for reason in report.failed.values())
    assert proxy.log.batch_calls == attempts + 1  # the failed chunk's attempts, then the second chunk
    assert report.calls == 2 and report.call_retries == attempts - 1
    assert report.sent == 5
    assert read_keys(sqs_client, url) == Counter({k: 1 for k, _ in items[10:]})


def test_non_retryable_call_error_is_reported_for_the_whole_chunk(proxy, proxied_client, make_queue):
    url = make_queue()
    items = keyed_items(15)
    proxy.plan.call_errors.append((400, "InvalidParameterValue"))

    with pytest.raises(SendFailed) as info:
        send_bodies(proxied_client, url, items, max_in_flight=1)

    # The first chunk's ten keys were rejected as a whole and not retried; the second chunk got through.
    assert set(info.value.failed) == {k for k, _ in items[:10]}
    assert info.value.sent == 5
    assert proxy.log.batch_calls == 2


def test_fan_out_of_a_planned_shard_delivers_its_exact_keys_through_faults(proxy, proxied_client, sqs_client, make_queue):
    spec = BatchSpec.from_dict(
        {
            "name": "pf",
            "dimensions": {"customer": [f"c{i}" for i in range(12)], "job_type": ["a", "b"], "period": ["d", "w", "m"]},
            "exclude": [{"job_type": "b", "period": "d"}],
            "queues": {"input": "unused-in", "results": "unused-out"},
            "target_payloads_per_shard": 20,
        }
    )
    plan = Plan(spec, "run-pf")
    shard = plan.shards()[1]
    expected = [key for key, _ in plan.iter_bodies(shard)]
    proxy.plan.transient.update({expected[0]: 1, expected[-1]: 2})
    url = make_queue()

    report = send_bodies(proxied_client, url, plan.iter_bodies(shard), max_in_flight=4)

    assert report.sent == len(expected) == plan.count_in(shard)
    assert read_keys(sqs_client, url) == Counter({k: 1 for k in expected})


# -- the Airflow operator over the same faults (its hook reads the connection from the environment) --------


@pytest.fixture
def small_spec_file(tmp_path):
    path = tmp_path / "pf.yaml"
    path.write_text(
        "name: pf_op\n"
        "dimensions:\n  customer: [c1, c2, c3, c4, c5, c6, c7, c8]\n  job_type: [a, b]\n  period: [d, w]\n"
        "queues: {input: unused-in, results: unused-out}\n"
        "target_payloads_per_shard: 16\n"
    )
    return path


@pytest.fixture
def aws_conn_via(monkeypatch):
    def point_at(endpoint: str) -> None:
        extra = {"endpoint_url": endpoint, "region_name": os.environ["AWS_DEFAULT_REGION"]}
        conn = {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))

    return point_at


def _operator(spec_file, shard, queue_url):
    from batchq.airflow.operators import FanOutOperator

    return FanOutOperator(task_id="fan_out", spec=str(spec_file), shard=shard, run_id="run-op", queue_url=queue_url, max_in_flight=2)


def test_fan_out_operator_returns_counts_after_transient_faults(proxy, aws_conn_via, sqs_client, make_queue, small_spec_file):
    aws_conn_via(proxy.url)
    plan = Plan(BatchSpec.from_yaml(small_spec_file), "run-op")
    shard = plan.shards()[0]
    keys = [k for k, _ in plan.iter_bodies(shard)]
    proxy.plan.transient.update({keys[1]: 1, keys[7]: 1})
    url = make_queue()

    result = _operator(small_spec_file, shard.to_dict(), url).execute({})

    assert result["sent"] == result["expected"] == len(keys)
    assert result["retried_entries"] == 2 and result["failed"] == 0
    assert result["shard"] == shard.to_dict()
    assert read_keys(sqs_client, url) == Counter({k: 1 for k in keys})


def test_fan_out_operator_fails_naming_the_shard_and_unsent_keys(proxy, aws_conn_via, sqs_client, make_queue, small_spec_file):
    from batchq.airflow.operators.fanout import ShardNotSent

    aws_conn_via(proxy.url)
    plan = Plan(BatchSpec.from_yaml(small_spec_file), "run-op")
    shard = plan.shards()[1]
    keys = [k for k, _ in plan.iter_bodies(shard)]
    bad = {keys[0], keys[5]}
    proxy.plan.permanent.update(bad)
    url = make_queue()

    with pytest.raises(ShardNotSent) as info:
        _operator(small_spec_file, shard.to_dict(), url).execute({})

    message = str(info.value)
    assert shard.label in message
    assert all(k in message for k in bad)
    assert f"2 of {len(keys)} payload(s) not sent" in message
    assert set(info.value.failed) == bad
    # Everything else of the shard arrived; a task retry would re-send the shard (duplicates are harmless).
    assert read_keys(sqs_client, url) == Counter({k: 1 for k in keys if k not in bad})
