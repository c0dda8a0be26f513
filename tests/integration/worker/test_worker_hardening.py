"""Issue 8, worker side, against a real SQS endpoint: whatever one payload does — raise
``BaseException``, hang, nest its JSON 100,000 deep, outgrow a small queue's ``MaximumMessageSize`` —
it is isolated with a reason and the worker goes on; a results queue that is gone stops the worker
holding nothing."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
import worker_testjobs  # noqa: F401 - registers t-echo, t-raise, t-hang, t-sized
from _worker_helpers import (
    log_events,
    read_dead_letters,
    read_results,
    running_worker,
    send_payloads,
    start_worker_process,
    wait_for,
)
from batchq.messages import WorkPayload
from batchq.sqs import get_snapshot, send_bodies
from batchq.worker import Worker, WorkerConfig
from batchq.worker.deadletter import REASON_ATTRIBUTE, message_bytes
from batchq.worker.execute import TRUNCATED_MARKER
from batchq.worker.runner import ResultsQueueUnavailable

pytestmark = pytest.mark.integration


def make_worker(client, urls, **kw) -> Worker:
    cfg = {"queue_url": urls.input, "results_url": urls.results, "concurrency": 4, "wait_seconds": 1,
           "retry_base_s": 0.2, "grace_period_s": 5, **kw}
    return Worker(client, WorkerConfig(**cfg))


def raw_payload(key: str, job_type: str, *, batch: str = "b-hardening", run_id: str = "r1", **params) -> str:
    return WorkPayload(batch=batch, run_id=run_id, key=key, job_type=job_type, dims={"customer": params.pop("customer", key)},
                       params=params, created_at=datetime(2026, 1, 1, tzinfo=timezone.utc)).model_dump_json()


def test_base_exceptions_in_handlers_free_their_slots_and_the_worker_goes_on(sqs_client, queue_spec_factory):
    # Today's main: each of these kills its handler thread and leaks its slot; with --concurrency 2,
    # three of them stop the worker while it looks healthy, and the normal payloads are never handled.
    _, urls = queue_spec_factory(visibility_timeout_s=30, max_receive_count=2)
    bad = [raw_payload(f"k-{kind}", "t-raise", **{"raise": kind}) for kind in ("exit", "interrupt", "cancel")]
    send_bodies(sqs_client, urls.input, [(f"k-{i}", b) for i, b in enumerate(bad)], max_in_flight=1)
    worker = make_worker(sqs_client, urls, concurrency=2, prefetch=0)
    with running_worker(worker):
        wait_for(lambda: worker.stats.retried >= 3, 30, what="the three handlers to fail once")
        good = send_payloads(sqs_client, urls.input, 6, "t-echo")
        wait_for(lambda: worker.stats.succeeded >= 6 and worker.stats.dead_lettered >= 3, 60,
                 what="normal payloads processed and the bad ones dead-lettered")
        assert worker.stats.internal_errors == 0
        assert worker._running == 0 and worker._active <= worker.config.slots
    results = {r.key: r for r in read_results(sqs_client, urls.results, expect=9)}
    assert all(results[k].status == "succeeded" for k in good)
    expected = {"k-exit": "SystemExit", "k-interrupt": "KeyboardInterrupt", "k-cancel": "CancelledError"}
    for key, error_type in expected.items():
        r = results[key]
        # Transient: a BaseException from a handler says nothing about the payload; retried, then given up.
        assert r.status == "failed" and r.error.type == error_type and not r.error.permanent and r.attempts == 2
    dead = read_dead_letters(sqs_client, urls.input_dlq, expect=3)
    assert sorted(m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"].split(":")[0] for m in dead) == sorted(expected.values())
    assert get_snapshot(sqs_client, urls.input).backlog == 0


def test_hanging_handler_times_out_is_retried_then_failed_and_its_lease_is_released(sqs_client, queue_spec_factory, tmp_path):
    _, urls = queue_spec_factory(visibility_timeout_s=30, max_receive_count=2)
    trace = tmp_path / "trace.txt"
    send_bodies(sqs_client, urls.input, [("k-hang", raw_payload("k-hang", "t-hang", sleep_s=40, trace_file=str(trace)))],
                max_in_flight=1)
    good = send_payloads(sqs_client, urls.input, 4, "t-echo")
    worker = make_worker(sqs_client, urls, handler_timeout_s=1.0)
    with running_worker(worker):
        wait_for(lambda: worker.stats.dead_lettered >= 1 and worker.stats.succeeded >= 4, 30,
                 what="the hung payload to time out twice and the others to succeed")
        # Both attempts started, neither handler has returned: attempt 2 came while attempt 1 still
        # hung, so its lease was released (with a heartbeat still extending it, no second delivery
        # could happen for 40 s).
        lines = trace.read_text().split("\n")
        assert sorted(ln for ln in lines if ln) == ["start k-hang 1", "start k-hang 2"]
        assert worker.stats.timed_out == 2 and worker.stats.retried == 1
        assert not worker._fatal
    results = {r.key: r for r in read_results(sqs_client, urls.results, expect=5)}
    assert all(results[k].status == "succeeded" for k in good)
    hung = results["k-hang"]
    assert hung.status == "failed" and hung.error.type == "HandlerTimeout" and hung.attempts == 2
    assert not hung.error.permanent and "within 1s" in hung.error.message
    dead = read_dead_letters(sqs_client, urls.input_dlq, expect=1)
    assert [m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"].split(":")[0] for m in dead] == ["HandlerTimeout"]


def test_per_job_timeout_overrides_the_worker_default(sqs_client, queue_spec_factory):
    from batchq.worker import Registry

    reg = Registry()

    @reg.job("slow-ok", timeout_s=10)
    def slow(payload, ctx):
        time.sleep(1.5)
        return {"ok": True}

    _, urls = queue_spec_factory(visibility_timeout_s=30, max_receive_count=2)
    send_bodies(sqs_client, urls.input, [("k-slow", raw_payload("k-slow", "slow-ok"))], max_in_flight=1)
    worker = Worker(sqs_client, WorkerConfig(urls.input, urls.results, wait_seconds=1, handler_timeout_s=0.5), registry=reg)
    with running_worker(worker):
        wait_for(lambda: worker.stats.succeeded >= 1, 30, what="the slow job to succeed under its own timeout")
    assert worker.stats.timed_out == 0


def test_stuck_worker_replaces_itself_holding_nothing(sqs_endpoint, sqs_client, queue_spec_factory, tmp_path):
    # Visibility 120 s: anything the worker still held at exit would stay in flight long after it.
    _, urls = queue_spec_factory(visibility_timeout_s=120, max_receive_count=5)
    send_bodies(sqs_client, urls.input, [(f"k-hang-{i}", raw_payload(f"k-hang-{i}", "t-hang", sleep_s=600)) for i in range(2)],
                max_in_flight=1)
    log = tmp_path / "worker.log"
    proc = start_worker_process(sqs_endpoint, [
        "--queue", urls.input, "--results-queue", urls.results, "--handlers", "worker_testjobs", "--no-entry-points",
        "--concurrency", "2", "--prefetch", "0", "--wait-seconds", "1", "--handler-timeout", "1", "--retry-base", "0.5",
        "--grace-period", "2",
    ], log)
    try:
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text(errors="replace")
    assert code != 0, text[-3000:]
    assert "handler thread(s) still running past their timeout" in text
    assert len(log_events(log, "handler_timed_out")) == 2
    # Nothing held: both payloads come back (the retry backoff is seconds, not the 120 s visibility).
    wait_for(lambda: get_snapshot(sqs_client, urls.input).in_flight == 0, 20, what="nothing left in flight")
    assert get_snapshot(sqs_client, urls.input).backlog == 2


def test_deeply_nested_json_is_dead_lettered_with_a_reason(sqs_client, queue_spec_factory):
    # Today's main: RecursionError escapes the parser, the body is retried as an "internal error" and
    # reaches the DLQ only through SQS's redrive, without a reason.
    _, urls = queue_spec_factory(visibility_timeout_s=30, max_receive_count=5)
    deep = "[" * 100_000
    deep_obj = '{"schema_version":1,"batch":"b","run_id":"r","key":"k-deep","dims":' + "[" * 50_000 + "]" * 50_000 + "}"
    send_bodies(sqs_client, urls.input, [("deep", deep), ("deep-obj", deep_obj)], max_in_flight=1)
    good = send_payloads(sqs_client, urls.input, 2, "t-echo")
    worker = make_worker(sqs_client, urls)
    with running_worker(worker):
        wait_for(lambda: worker.stats.dead_lettered >= 2 and worker.stats.succeeded >= 2, 30, what="deep bodies dead-lettered")
    assert worker.stats.retried == 0 and worker.stats.internal_errors == 0
    dead = read_dead_letters(sqs_client, urls.input_dlq, expect=2)
    reasons = {m["Body"][:30]: m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] for m in dead}
    assert reasons[deep[:30]] == "InvalidMessage: payload body is nested too deeply to parse"
    assert reasons[deep_obj[:30]].startswith("InvalidMessage:")
    assert {r.key for r in read_results(sqs_client, urls.results, expect=2)} == set(good)


def test_results_fit_the_results_queues_maximum_message_size(sqs_client, queue_spec_factory, make_queue):
    # The results queue accepts 2,048 bytes. Today's main assumes 1 MiB: the oversize output goes into a
    # 10-entry SendMessageBatch that the endpoint refuses whole (its innocent neighbours are retried),
    # and the failed result that copies a long run id is never publishable.
    _, urls = queue_spec_factory(visibility_timeout_s=30, max_receive_count=3)
    small_results = make_queue(MaximumMessageSize="2048")
    long_id = "r" * 1400
    bodies = [("k-big", raw_payload("k-big", "t-sized", out_bytes=3000)),
              ("k-long", raw_payload("k-long", "t-echo", run_id=long_id, customer="c" * 600, permanent=True))]
    bodies += [(f"k-ok-{i}", raw_payload(f"k-ok-{i}", "t-sized", out_bytes=100)) for i in range(8)]
    send_bodies(sqs_client, urls.input, bodies, max_in_flight=1)
    worker = make_worker(sqs_client, urls, results_url=small_results, concurrency=8, batch_wait_s=0.5)
    with running_worker(worker):
        wait_for(lambda: worker.stats.deleted >= 10, 60, what="all ten handled")
    assert worker.settings.results_max_bytes == 2048
    assert worker.stats.result_send_failures == 0 and worker.stats.retried == 0
    raw = [m["Body"] for m in _read_raw(sqs_client, small_results, 10)]
    assert len(raw) == 10 and all(len(b.encode()) <= 2048 for b in raw)
    results = {r.key: r for r in map(_parse, raw)}
    assert all(results[f"k-ok-{i}"].status == "succeeded" and results[f"k-ok-{i}"].attempts == 1 for i in range(8))
    big = results["k-big"]
    assert big.status == "failed" and big.error.type == "OutputTooLarge" and big.error.permanent
    long = results["k-long"]
    assert long.status == "failed" and long.error.type == "PermanentError"
    assert long.run_id == long_id and TRUNCATED_MARKER in long.error.message  # the message gave way first


def test_dead_letter_copy_fits_the_dead_letter_queues_maximum_message_size(sqs_client, queue_spec_factory, make_queue):
    # A 1,700-byte body plus the reason attributes (a 500-character reason) exceed a 2,048-byte DLQ.
    # Today's main sends them anyway; here the reason is shortened so body + attributes fit.
    _, urls = queue_spec_factory(visibility_timeout_s=30, max_receive_count=3)
    small_dlq = make_queue(MaximumMessageSize="2048")
    body = raw_payload("k-dlq", "t-echo", customer="", permanent=True)
    body = raw_payload("k-dlq", "t-echo", customer="c" * (1700 - len(body.encode())), permanent=True)
    assert len(body.encode()) == 1700
    send_bodies(sqs_client, urls.input, [("k-dlq", body)], max_in_flight=1)
    worker = make_worker(sqs_client, urls, dead_letter_url=small_dlq)
    with running_worker(worker):
        wait_for(lambda: worker.stats.dead_lettered >= 1, 30, what="the payload dead-lettered")
    assert worker.settings.dead_letter_max_bytes == 2048 and worker.stats.retried == 0
    dead = read_dead_letters(sqs_client, small_dlq, expect=1)
    assert [m["Body"] for m in dead] == [body]  # byte for byte
    attrs = dead[0]["MessageAttributes"]
    assert message_bytes(body, attrs) <= 2048
    reason = attrs[REASON_ATTRIBUTE]["StringValue"]
    assert reason.startswith("PermanentError: bad customer ccc") and reason.endswith("…")


def _read_raw(client, url, expect):
    from _worker_helpers import read_all

    return read_all(client, url, expect=expect)


def _parse(body):
    from batchq.messages import parse_result

    return parse_result(body)


def test_missing_results_queue_stops_the_worker_holding_nothing(sqs_client, queue_spec_factory, make_queue):
    # Today's main: every input is processed, its result refused, and it is retried until SQS
    # dead-letters it, while the worker looks healthy.
    _, urls = queue_spec_factory(visibility_timeout_s=120, max_receive_count=5)
    doomed = make_queue()
    worker = make_worker(sqs_client, urls, results_url=doomed)
    with pytest.raises(ResultsQueueUnavailable, match="refuses results"), running_worker(worker):
        wait_for(lambda: worker._started, 15, what="the worker to start")
        sqs_client.delete_queue(QueueUrl=doomed)
        keys = send_payloads(sqs_client, urls.input, 5, "t-echo")
        wait_for(lambda: worker._fatal is not None, 30, what="the worker to stop")
    assert worker.stats.deleted == 0
    # Handed back at once (visibility 0), not left in flight for 120 s; nothing deleted, nothing lost.
    wait_for(lambda: get_snapshot(sqs_client, urls.input).in_flight == 0, 15, what="inputs handed back")
    assert get_snapshot(sqs_client, urls.input).visible == len(keys)


def test_results_queue_refusing_sends_stops_the_worker_and_keeps_every_input(sqs_endpoint, sqs_client, queue_spec_factory):
    # Today's main: AccessDenied on the results queue is logged per message and the input retried,
    # over and over, while the worker keeps taking more.
    import boto3
    from botocore.config import Config
    from support.sqs_fault_proxy import SqsFaultProxy

    _, urls = queue_spec_factory(visibility_timeout_s=120, max_receive_count=5)
    send_bodies(sqs_client, urls.input, [(f"k-{i}", raw_payload(f"k-{i}", "t-echo")) for i in range(4)], max_in_flight=1)
    with SqsFaultProxy(sqs_endpoint) as proxy:
        client = boto3.client("sqs", endpoint_url=proxy.url, region_name="us-east-1",
                              config=Config(max_pool_connections=16, retries={"mode": "standard", "max_attempts": 2}))
        with proxy.lock:
            proxy.plan.call_errors = [(403, "AccessDenied")] * 50
        worker = make_worker(client, urls)
        with pytest.raises(ResultsQueueUnavailable, match="AccessDenied"), running_worker(worker):
            wait_for(lambda: worker._fatal is not None, 30, what="the worker to stop")
        assert proxy.log.injected_call_errors >= 1 and proxy.log.forwarded_calls == 0
    # No result was confirmed, so no input was deleted; all were handed back at once.
    wait_for(lambda: get_snapshot(sqs_client, urls.input).in_flight == 0, 15, what="inputs handed back")
    assert get_snapshot(sqs_client, urls.input).visible == 4
    assert worker.stats.deleted == 0 and worker.stats.succeeded == 0


def test_missing_results_queue_at_start_is_a_clear_error(sqs_client, queue_spec_factory):
    from batchq.errors import QueueNotFound

    _, urls = queue_spec_factory()
    gone = urls.results.rsplit("/", 1)[0] + "/no-such-results-queue"
    worker = make_worker(sqs_client, urls, results_url=gone)
    with pytest.raises(QueueNotFound, match="no-such-results-queue does not exist"):
        worker.start()


def test_one_slot_keeps_working_past_a_handler_timeout(sqs_client, queue_spec_factory):
    """One slot, one hung handler: the timeout must free the slot *and* start a replacement thread
    while the hung one still sleeps. A leaked slot or a lost replacement thread stops all progress
    (with more slots, the others would hide either mutant)."""
    _, urls = queue_spec_factory(visibility_timeout_s=30, max_receive_count=1)
    send_bodies(sqs_client, urls.input, [("k-hang", raw_payload("k-hang", "t-hang", sleep_s=20))], max_in_flight=1)
    # max_stuck_handlers=2: one abandoned thread is tolerated (the default, one per slot, would stop
    # this one-slot worker to be replaced instead).
    worker = make_worker(sqs_client, urls, concurrency=1, prefetch=0, handler_timeout_s=1.0, max_stuck_handlers=2)
    with running_worker(worker):
        wait_for(lambda: worker.stats.timed_out >= 1, 20, what="the hung handler to time out")
        good = send_payloads(sqs_client, urls.input, 4, "t-echo")
        started = time.monotonic()
        wait_for(lambda: worker.stats.succeeded >= 4, 15, what="the next payloads, on the replacement thread")
        # well before the hung handler's 20 s sleep ends: the work ran beside it, not after it
        assert time.monotonic() - started < 15
        assert worker.stats.timed_out == 1 and not worker._fatal
    results = {r.key: r for r in read_results(sqs_client, urls.results, expect=5)}
    assert all(results[k].status == "succeeded" for k in good)
    assert results["k-hang"].error.type == "HandlerTimeout"
