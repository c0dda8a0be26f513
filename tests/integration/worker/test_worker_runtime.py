"""The worker against a real SQS endpoint: success, retry → failed result → DLQ, malformed bodies,
visibility heartbeat, and StatsD metrics on a real UDP socket."""

from __future__ import annotations

import json
import socket
import time

import pytest
import worker_testjobs  # noqa: F401 - registers t-echo
from _worker_helpers import (
    backlog,
    read_dead_letters,
    read_results,
    running_worker,
    send_payloads,
    wait_for,
)
from batchq.metrics import Metrics
from batchq.sqs import get_snapshot, send_bodies
from batchq.worker import Worker, WorkerConfig
from batchq.worker.deadletter import (
    ATTEMPTS_ATTRIBUTE,
    REASON_ATTRIBUTE,
    SOURCE_ATTRIBUTE,
)
from support.sqs_fault_proxy import SqsFaultProxy

pytestmark = pytest.mark.integration


def make_worker(client, urls, metrics=None, **kw) -> Worker:
    cfg = {"queue_url": urls.input, "results_url": urls.results, "concurrency": 4, "wait_seconds": 1,
           "retry_base_s": 0.5, "grace_period_s": 10, **kw}
    return Worker(client, WorkerConfig(**cfg), metrics=metrics)


def proxy_client(proxy_url: str, **retries):
    import boto3
    from botocore.config import Config

    return boto3.client("sqs", endpoint_url=proxy_url, region_name="us-east-1",
                        config=Config(max_pool_connections=16, retries={"mode": "standard", "max_attempts": 2, **retries}))


def assert_results_before_deletes(events, urls, keys) -> None:
    """Every input delete of a key comes after the results queue confirmed that key's result."""
    order: dict[str, list[str]] = {}
    for op, queue, key in events:
        if (op, queue) in (("sent", urls.results), ("delete", urls.input)):
            order.setdefault(key, []).append(op)
    assert set(order) == set(keys)
    for key, ops in order.items():
        assert "delete" in ops and "sent" in ops[: ops.index("delete")], (key, ops)


def test_success_path_results_before_deletes_and_statsd(sqs_endpoint, sqs_client, queue_spec_factory):
    _, urls = queue_spec_factory(visibility_timeout_s=30)
    keys = send_payloads(sqs_client, urls.input, 40, "t-echo")
    # A real UDP listener on loopback stands in for the StatsD agent.
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.2)
    metrics = Metrics("worker", statsd_host="127.0.0.1", statsd_port=udp.getsockname()[1], tags={"worker": "w1"})
    # The worker talks through a recording proxy: it proves the order of SendMessageBatch (results)
    # and DeleteMessageBatch (input) for every key, which the worker's own stats cannot.
    with SqsFaultProxy(sqs_endpoint) as proxy:
        worker = make_worker(proxy_client(proxy.url), urls, metrics=metrics)
        with running_worker(worker):
            wait_for(lambda: worker.stats.deleted >= 40, 60, what="40 inputs deleted")
        assert_results_before_deletes(proxy.log.events, urls, keys)
    results = read_results(sqs_client, urls.results, expect=40)
    assert sorted(r.key for r in results) == sorted(keys)
    assert {r.status for r in results} == {"succeeded"}
    assert all(r.output["customer"].startswith("cust-") and r.attempts == 1 for r in results)
    assert backlog(sqs_client, urls.input) == 0
    assert worker.stats.succeeded == 40 and worker.stats.failed == 0
    assert worker.stats.first_receive_at <= worker.stats.last_confirmed_at
    assert worker.stats.result_send_failures == 0 and worker.stats.delete_failures == 0

    lines = []
    while True:
        try:
            lines += udp.recv(65535).decode().splitlines()
        except TimeoutError:
            break
    udp.close()
    processed = [ln for ln in lines if ln.startswith("batchq.worker.processed:")]
    assert sum(int(ln.split(":")[1].split("|")[0]) for ln in processed) == 40
    assert all("|c|#" in ln and "job_type:t-echo" in ln and "worker:w1" in ln for ln in processed)
    assert any(ln.startswith("batchq.worker.handler_duration_ms:") and "|ms" in ln for ln in lines)
    ages = [ln for ln in lines if ln.startswith("batchq.worker.message_age_ms:")]
    assert len(ages) == 40 and all(float(a.split(":")[1].split("|")[0]) >= 0 for a in ages)


def test_transient_failure_retries_then_failed_result_and_dlq(sqs_client, queue_spec_factory, caplog):
    _, urls = queue_spec_factory(visibility_timeout_s=30, max_receive_count=3)
    keys = send_payloads(sqs_client, urls.input, 3, "t-echo", params={"fail": True})
    worker = make_worker(sqs_client, urls, retry_base_s=0.5)
    with caplog.at_level("WARNING", logger="batchq.worker.runner"), running_worker(worker):
        wait_for(lambda: worker.stats.dead_lettered >= 3, 60, what="3 messages dead-lettered")
    # Issue 20: the failure log lines name each payload by its dims beside the key.
    failed_events = [json.loads(r.getMessage()) for r in caplog.records if '"event":"message_failed"' in r.getMessage()]
    assert sorted(e["key"] for e in failed_events) == sorted(keys)
    assert all(set(e["dims"]) == {"customer"} for e in failed_events)
    assert worker.settings.max_attempts == 3  # read from the queue's redrive policy
    results = read_results(sqs_client, urls.results, expect=3)
    assert sorted(r.key for r in results) == sorted(keys)
    for r in results:
        assert r.status == "failed" and r.attempts == 3
        assert r.error.type == "RuntimeError" and "transient failure" in r.error.message and not r.error.permanent
    assert worker.stats.retried == 6  # attempts 1 and 2 of each were retried
    dead = read_dead_letters(sqs_client, urls.input_dlq, expect=3)
    assert len(dead) == 3
    assert sorted(json.loads(m["Body"])["key"] for m in dead) == sorted(keys)
    for m in dead:
        attrs = m["MessageAttributes"]
        assert attrs[REASON_ATTRIBUTE]["StringValue"].startswith("RuntimeError: transient failure")
        assert attrs[ATTEMPTS_ATTRIBUTE]["StringValue"] == "3"
        assert attrs[SOURCE_ATTRIBUTE]["StringValue"] == urls.input
    assert backlog(sqs_client, urls.input) == 0


def test_malformed_bodies_are_dead_lettered_with_reasons(sqs_client, queue_spec_factory):
    _, urls = queue_spec_factory(visibility_timeout_s=30)
    good = send_payloads(sqs_client, urls.input, 2, "t-echo")
    bad = {
        "notjson": "this is not json",
        "array": "[1, 2, 3]",
        "v2": json.dumps({"schema_version": 2, "batch": "b", "run_id": "r", "key": "k-v2", "job_type": "t-echo"}),
        "nokey": json.dumps({"schema_version": 1, "batch": "b", "run_id": "r", "job_type": "t-echo"}),
        "missingdims": json.dumps({"schema_version": 1, "batch": "b", "run_id": "r", "key": "k-nodims",
                                   "job_type": "t-echo", "created_at": "2026-01-01T00:00:00Z"}),
        "unknownjob": json.dumps({"schema_version": 1, "batch": "b", "run_id": "r", "key": "k-unknown",
                                  "job_type": "no-such-job", "dims": {"c": 1}, "created_at": "2026-01-01T00:00:00Z"}),
        "permanent": None,
    }
    perm = send_payloads(sqs_client, urls.input, 1, "t-echo", params={"permanent": True})
    send_bodies(sqs_client, urls.input, [(k, v) for k, v in bad.items() if v is not None], max_in_flight=1)
    worker = make_worker(sqs_client, urls)
    with running_worker(worker):
        wait_for(lambda: worker.stats.deleted >= 9, 60, what="9 messages handled")
    results = {r.key: r for r in read_results(sqs_client, urls.results, expect=6)}
    assert {k for k in good} <= set(results) and all(results[k].status == "succeeded" for k in good)
    # Failed results wherever batch, run_id and key could be read; none for the rest.
    assert results["k-v2"].error.type == "UnsupportedSchemaVersion" and results["k-v2"].error.permanent
    assert results["k-nodims"].error.type == "InvalidMessage" and "dims" in results["k-nodims"].error.message
    assert results["k-unknown"].error.type == "UnknownJobType" and "no-such-job" in results["k-unknown"].error.message
    assert results[perm[0]].error.type == "PermanentError" and results[perm[0]].attempts == 1
    assert len(results) == 6
    dead = read_dead_letters(sqs_client, urls.input_dlq, expect=7)
    reasons = {m["Body"]: m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] for m in dead}
    assert len(dead) == 7  # every bad body, byte for byte, plus the PermanentError payload
    assert reasons["this is not json"].startswith("InvalidMessage: payload body is not JSON")
    assert reasons["[1, 2, 3]"].startswith("InvalidMessage: payload body must be a JSON object")
    assert reasons[bad["v2"]].startswith("UnsupportedSchemaVersion")
    assert reasons[bad["unknownjob"]].startswith("UnknownJobType")
    assert backlog(sqs_client, urls.input) == 0  # nothing left to crash-loop on


def test_heartbeat_keeps_a_long_job_from_running_twice(sqs_client, queue_spec_factory, tmp_path):
    _, urls = queue_spec_factory(visibility_timeout_s=2, max_receive_count=5)
    trace = tmp_path / "trace.txt"
    keys = send_payloads(sqs_client, urls.input, 1, "t-echo", params={"sleep_s": 5, "trace_file": str(trace)})
    # Two workers compete for the queue: without the heartbeat the second would get the message after 2 s.
    w1 = make_worker(sqs_client, urls, concurrency=2)
    w2 = make_worker(sqs_client, urls, concurrency=2)
    t0 = time.monotonic()
    with running_worker(w1), running_worker(w2):
        wait_for(lambda: w1.stats.deleted + w2.stats.deleted >= 1, 30, what="the long job to finish")
        time.sleep(3)  # a window in which a second (wrong) delivery would show up
    assert time.monotonic() - t0 >= 5
    runs = trace.read_text().splitlines()
    assert len(runs) == 1, runs
    assert w1.leases.extended + w2.leases.extended >= 3  # ~every second for 5 s
    results = read_results(sqs_client, urls.results, expect=1)
    assert [r.key for r in results] == keys and results[0].attempts == 1
    assert get_snapshot(sqs_client, urls.input).backlog == 0


def test_result_send_failure_keeps_the_input_until_a_result_is_confirmed(sqs_endpoint, sqs_client, queue_spec_factory):
    # The results queue fails the next SendMessageBatch calls (HTTP 500, past the SDK's retries): the
    # input must not be deleted; it is redone and deleted only after its result is confirmed.
    _, urls = queue_spec_factory(visibility_timeout_s=30, max_receive_count=10)
    keys = send_payloads(sqs_client, urls.input, 3, "t-echo")
    with SqsFaultProxy(sqs_endpoint) as proxy:
        with proxy.lock:
            proxy.plan.call_errors = [(500, "InternalError")] * 6
        worker = make_worker(proxy_client(proxy.url), urls, retry_base_s=0.2)
        with running_worker(worker):
            wait_for(lambda: worker.stats.result_send_failures >= 1, 60, what="a result send to fail")
            wait_for(lambda: worker.stats.deleted >= 3, 90, what="the inputs to be redone once the results queue is back")
        assert not proxy.plan.call_errors  # every injected error was hit
        # No input was deleted before its result was confirmed, failed sends included.
        assert_results_before_deletes(proxy.log.events, urls, keys)
    results = read_results(sqs_client, urls.results, expect=3)
    assert {r.key for r in results} == set(keys) and {r.status for r in results} == {"succeeded"}
    assert max(r.attempts for r in results) >= 2  # redone after the failed send, not deleted
