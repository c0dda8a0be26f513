"""batchq triggers: serialisation round trip, retired kwargs, JSON-primitive events, the drained /
timeout / DLQ-threshold outcomes against a real SQS endpoint, and a proof that polling never blocks the
triggerer's event loop (the endpoint is made slow through a loopback proxy; a ticker measures the
longest gap between its ticks)."""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import time
from urllib.parse import urlsplit

import pytest
from batchq.airflow.triggers import (
    QueueDrainedTrigger,
    ResultsAvailableTrigger,
    TriggerReason,
)
from batchq.sqs import delete_messages, receive_messages, send_bodies
from batchq.sqs.snapshot import QueueSnapshot

from tests.support.airflow_conn import set_aws_connection
from tests.support.tcp_proxy import TcpProxy

CONN_ID = "batchq_trigger_test"


def rebuild(trigger):
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    json.dumps(kwargs)  # JSON primitives only
    return cls(**kwargs), kwargs


@pytest.mark.parametrize(
    "trigger",
    [
        QueueDrainedTrigger("http://h/1/q", dlq_url="http://h/1/q-dlq", stable_for_s=5, poll_interval_s=0.5, deadline=1.8e9, dlq_threshold=3, max_points=100, started_at=1.7e9, aws_conn_id="c", region_name="eu-west-1", verify=False, botocore_config={"read_timeout": 5}),
        QueueDrainedTrigger("http://h/1/q"),
        QueueDrainedTrigger("http://h/1/q", results_url="http://h/1/r", alerts=None),
        ResultsAvailableTrigger("http://h/1/r", poll_interval_s=2, deadline=1.8e9, min_visible=5, aws_conn_id=None),
        ResultsAvailableTrigger("http://h/1/r"),
    ],
)
def test_serialisation_round_trip(trigger):
    rebuilt, kwargs = rebuild(trigger)
    assert type(rebuilt) is type(trigger)
    assert rebuilt.serialize() == trigger.serialize()
    assert rebuilt.serialize()[1] == kwargs


def test_retired_kwargs_are_accepted():
    t = QueueDrainedTrigger("http://h/1/q", stable_for=7, waiter_delay=3, timeout=99)
    assert (t.stable_for_s, t.poll_interval_s) == (7.0, 3.0)
    t = QueueDrainedTrigger("http://h/1/q", stable_for_s=1, stable_for=7)  # the current name wins
    assert t.stable_for_s == 1.0
    assert ResultsAvailableTrigger("http://h/1/r", poll_interval=4).poll_interval_s == 4.0
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        QueueDrainedTrigger("http://h/1/q", bogus=1)


def test_reasons_are_str_enum_values():
    assert TriggerReason("drained") is TriggerReason.DRAINED
    assert {r.value for r in TriggerReason} >= {"drained", "timeout", "dlq_threshold", "error"}


def test_retired_kwargs_serialise_under_their_current_names():
    rebuilt, kwargs = rebuild(QueueDrainedTrigger("http://h/1/q", stable_for=7, waiter_delay=3, timeout=99))
    assert (kwargs["stable_for_s"], kwargs["poll_interval_s"]) == (7.0, 3.0)
    assert not {"stable_for", "waiter_delay", "timeout", "poll_interval"} & set(kwargs)
    assert rebuilt.serialize()[1] == kwargs


def test_kwargs_serialised_by_the_previous_release_still_rebuild():
    # Exactly what a deferred task stored before the wait decision moved to batchq.monitor.waits.
    stored = {
        "queue_url": "http://h/1/q", "dlq_url": None, "stable_for_s": 60.0, "poll_interval_s": 10.0, "deadline": 1.8e9,
        "dlq_threshold": None, "max_points": 500, "queue_name": "q", "emit_metrics": True, "started_at": 1.7e9,
        "aws_conn_id": "aws_default", "region_name": None, "verify": None, "botocore_config": None,
    }
    assert QueueDrainedTrigger(**stored).serialize()[1] == stored
    results = {"queue_url": "http://h/1/r", "poll_interval_s": 5.0, "deadline": None, "min_visible": 1, "aws_conn_id": "aws_default", "region_name": None, "verify": None, "botocore_config": None}
    assert ResultsAvailableTrigger(**results).serialize()[1] == results


@pytest.mark.parametrize(
    "kwargs, match",
    [({"stable_for_s": -1}, "stable_for_s"), ({"dlq_threshold": 0}, "dlq_threshold"), ({"max_points": 1}, "max_points"), ({"poll_interval_s": 0}, "poll_interval_s")],
)
def test_bad_arguments_fail_when_the_task_defers_not_in_the_triggerer(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QueueDrainedTrigger("http://h/1/q", **kwargs)


# -- the shared loop over a scripted snapshot source (no endpoint) ----------------------------------------------


class _FakeConn:
    async def __aenter__(self):
        return object()

    async def __aexit__(self, *exc):
        return False


class _FakeHook:
    async def get_async_conn(self):
        return _FakeConn()


@pytest.fixture
def scripted(monkeypatch):
    """Make the triggers poll a script: each item a QueueSnapshot (returned) or an exception (raised).
    Returns the list of back-off calls the trigger made (attempt, base, cap); back-off sleeps are 0."""
    import batchq.airflow.triggers as mod

    backoffs: list[tuple] = []

    def use(items):
        items = list(items)

        async def fake_snapshot(client, queue_url, dlq_url=None):
            item = items.pop(0) if len(items) > 1 else items[0]
            if isinstance(item, BaseException):
                raise item
            return item

        monkeypatch.setattr(mod, "aget_snapshot", fake_snapshot)
        return backoffs

    def fake_backoff(attempt, base, cap, rng=None):
        backoffs.append((attempt, base, cap))
        return 0.0

    monkeypatch.setattr(mod, "backoff_delay", fake_backoff)
    for cls in (QueueDrainedTrigger, ResultsAvailableTrigger):
        monkeypatch.setattr(cls, "hook", property(lambda self: _FakeHook()))
    return use


def test_poll_errors_back_off_with_the_one_backoff_then_recover(scripted):
    import batchq.airflow.triggers as mod

    now = time.time()
    backoffs = scripted([ConnectionError("a"), ConnectionError("b"), QueueSnapshot(now, 0, 0, 0)])
    trigger = QueueDrainedTrigger("http://h/1/q", stable_for_s=0, poll_interval_s=0.01, emit_metrics=False)
    payload = asyncio.run(first_event(trigger, timeout=10))
    assert payload["reason"] == "drained" and "errors" not in payload
    assert backoffs == [(1, 0.01, mod.ERROR_BACKOFF_CAP_S), (2, 0.01, mod.ERROR_BACKOFF_CAP_S)]


def test_aws_error_text_never_reaches_the_event(scripted):
    from botocore.exceptions import ClientError

    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "User: arn:aws:sts::123456789012:assumed-role/ops/i-1 is not authorized"}}, "GetQueueAttributes")
    scripted([denied])
    trigger = QueueDrainedTrigger("http://h/1/q", poll_interval_s=0.01, emit_metrics=False)
    payload = asyncio.run(first_event(trigger, timeout=10))
    assert payload["reason"] == "error" and set(payload["errors"]) == {"AccessDenied on GetQueueAttributes"}
    assert "123456789012" not in json.dumps(payload)


def test_persistent_poll_errors_end_in_an_error_event_with_what_was_seen(scripted):
    import batchq.airflow.triggers as mod

    backoffs = scripted([QueueSnapshot(time.time(), 4, 0, 0), *[ConnectionError(f"e{i}") for i in range(10)]])
    trigger = QueueDrainedTrigger("http://h/1/q", poll_interval_s=0.01, emit_metrics=False)
    payload = asyncio.run(first_event(trigger, timeout=10))
    json.dumps(payload)
    assert payload["reason"] == "error" and payload["status"] == "failed"
    assert len(payload["errors"]) == mod.MAX_CONSECUTIVE_ERRORS and payload["errors"][-1] == "ConnectionError: e4"
    assert payload["snapshot"]["visible"] == 4 and len(payload["series"]) == 1  # the last good poll is kept
    assert [a for a, _, _ in backoffs] == list(range(1, mod.MAX_CONSECUTIVE_ERRORS))


def test_results_trigger_runs_the_same_loop(scripted):
    scripted([ConnectionError("x"), QueueSnapshot(time.time(), 0, 9, 0), QueueSnapshot(time.time(), 3, 0, 0)])
    payload = asyncio.run(first_event(ResultsAvailableTrigger("http://h/1/r", poll_interval_s=0.01, min_visible=2), timeout=10))
    assert payload["reason"] == "available" and payload["status"] == "success" and payload["snapshot"]["visible"] == 3
    assert payload["queue_url"] == "http://h/1/r"


def test_metrics_are_the_waits_gauges_tagged_with_the_queue_name(scripted, monkeypatch):
    from batchq.airflow import metrics

    sent: list = []
    monkeypatch.setattr(metrics, "emit_queue_gauges", lambda queue, values: sent.append((queue, dict(values))))
    t0 = time.time()
    scripted([QueueSnapshot(t0, 20, 0, 0, dlq_visible=1), QueueSnapshot(t0 + 1, 10, 0, 0, dlq_visible=1), QueueSnapshot(t0 + 2, 0, 0, 0, dlq_visible=1)])
    asyncio.run(first_event(QueueDrainedTrigger("http://h/1/in-q", dlq_url="http://h/1/in-dlq", stable_for_s=0, poll_interval_s=0.01), timeout=10))
    assert [q for q, _ in sent] == ["in-q"] * 3
    assert sent[0][1] == {"visible": 20, "in_flight": 0, "delayed": 0, "backlog": 20, "dlq_visible": 1}
    assert sent[1][1]["eta_s"] == 1.0 and sent[2][1]["eta_s"] == 0.0  # 10 left at 10/s; then empty
    sent.clear()
    asyncio.run(first_event(QueueDrainedTrigger("http://h/1/in-q", stable_for_s=0, poll_interval_s=0.01, emit_metrics=False), timeout=10))
    assert sent == []


def test_the_sensor_resumes_from_the_triggers_event(scripted):
    """The trigger's event is what the sensor's resume reads: the contract between the two halves."""
    from airflow.sdk.exceptions import AirflowFailException
    from batchq.airflow.sensors import SERIES_XCOM_KEY, QueueDrainedSensor

    class TI:
        def __init__(self):
            self.pushed: dict = {}

        def xcom_push(self, key, value):
            self.pushed[key] = json.loads(json.dumps(value))

    sensor = QueueDrainedSensor(task_id="wait", queue_name="http://h/1/q", aws_conn_id="x")
    t0 = time.time()
    scripted([QueueSnapshot(t0, 1, 0, 0, 0), QueueSnapshot(t0 + 0.01, 0, 0, 0, 0)])
    event = asyncio.run(first_event(QueueDrainedTrigger("http://h/1/q", dlq_url="d", stable_for_s=0, poll_interval_s=0.01, emit_metrics=False), timeout=10))
    ti = TI()
    out = sensor.execute_complete({"ti": ti}, event)
    assert out["reason"] == "drained" and out["snapshot"]["visible"] == 0
    assert SERIES_XCOM_KEY == "backlog_series" and [p[1] for p in ti.pushed["backlog_series"]["points"]] == [1, 0]
    scripted([QueueSnapshot(t0, 1, 0, 0, 5)])
    event = asyncio.run(first_event(QueueDrainedTrigger("http://h/1/q", dlq_url="d", dlq_threshold=5, poll_interval_s=0.01, emit_metrics=False), timeout=10))
    with pytest.raises(AirflowFailException, match="DLQ holds 5 message"):
        sensor.execute_complete({"ti": TI()}, event)


def test_the_trigger_records_the_results_queue_on_the_same_poll(monkeypatch):
    """Per URL: the input queue decides; the results queue's counts ride along, a failed results poll
    records None and the wait goes on."""
    import batchq.airflow.triggers as mod

    t0 = time.time()
    script = {
        "http://h/1/in": [QueueSnapshot(t0, 2, 0, 0), QueueSnapshot(t0 + 1, 0, 1, 0), QueueSnapshot(t0 + 2, 0, 0, 0)],
        "http://h/1/res": [QueueSnapshot(t0, 0, 0, 0), ConnectionError("results down"), QueueSnapshot(t0 + 2, 3, 1, 0)],
    }
    polled: list[tuple[str, object]] = []

    async def fake_snapshot(client, queue_url, dlq_url=None):
        polled.append((queue_url, dlq_url))
        item = script[queue_url].pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    monkeypatch.setattr(mod, "aget_snapshot", fake_snapshot)
    monkeypatch.setattr(QueueDrainedTrigger, "hook", property(lambda self: _FakeHook()))
    trigger, _ = rebuild(QueueDrainedTrigger("http://h/1/in", results_url="http://h/1/res", stable_for_s=0, poll_interval_s=0.01, emit_metrics=False))
    payload = asyncio.run(first_event(trigger, timeout=10))
    json.dumps(payload)
    assert payload["reason"] == "drained" and "errors" not in payload
    assert payload["series_fields"][-2:] == ["results_visible", "results_in_flight"]
    assert [p[1:3] for p in payload["series"]] == [[2, 0], [0, 1], [0, 0]]
    assert [p[-2:] for p in payload["series"]] == [[0, 0], [None, None], [3, 1]]
    assert ("http://h/1/res", None) in polled and len(polled) == 6  # one results poll more per poll, counts only


def test_a_wait_state_saved_before_results_were_recorded_still_resumes(scripted):
    old_state = {
        "started_at": time.time(), "deadline": None, "stable_for_s": 0.0, "dlq_threshold": None, "max_points": 500,
        "empty_since": None, "last": None, "series": {"max_points": 500, "points": [[1, 4, 0, 0, -1]], "stride": 1, "seen": 1, "last": [1, 4, 0, 0, -1]}, "recent": [],
    }
    scripted([QueueSnapshot(time.time(), 0, 0, 0)])
    trigger, _ = rebuild(QueueDrainedTrigger("http://h/1/q", results_url="http://h/1/r", wait_state=old_state, poll_interval_s=0.01, emit_metrics=False))
    payload = asyncio.run(first_event(trigger, timeout=10))
    assert payload["reason"] == "drained" and payload["series_fields"] == ["t", "visible", "in_flight", "delayed", "dlq"]
    assert [len(p) for p in payload["series"]] == [5, 5]


# -- against a real endpoint -------------------------------------------------------------------------------


@pytest.fixture
def aws_conn(monkeypatch, sqs_endpoint):
    def use(endpoint: str) -> str:
        return set_aws_connection(monkeypatch, CONN_ID, endpoint)

    use(sqs_endpoint)
    return use


async def first_event(trigger, timeout: float = 60):
    async def go():
        async for event in trigger.run():
            return event.payload

    return await asyncio.wait_for(go(), timeout)


@pytest.mark.integration
def test_drained_after_the_queue_stays_empty(sqs_client, make_queue, aws_conn, monkeypatch):
    import batchq.airflow.triggers as mod

    url, dlq = make_queue(), make_queue()
    send_bodies(sqs_client, url, [("a", "x"), ("b", "y")])
    emptied_at: list[float] = []
    # Consume only once the trigger has polled (its client can take a while to start on a busy machine),
    # so the curve always starts with the backlog.
    polled = threading.Event()
    real_snapshot = mod.aget_snapshot

    async def noting_snapshot(*args, **kwargs):
        snap = await real_snapshot(*args, **kwargs)
        polled.set()
        return snap

    monkeypatch.setattr(mod, "aget_snapshot", noting_snapshot)

    def consume_later():
        polled.wait(30)
        time.sleep(0.5)
        while True:
            msgs = receive_messages(sqs_client, url, wait_seconds=1)
            if not msgs:
                break
            delete_messages(sqs_client, url, msgs)
            emptied_at[:] = [time.time()]

    t = threading.Thread(target=consume_later)
    t.start()
    trigger = QueueDrainedTrigger(url, dlq_url=dlq, stable_for_s=1.0, poll_interval_s=0.2, aws_conn_id=CONN_ID, emit_metrics=False)
    payload = asyncio.run(first_event(trigger))
    t.join()
    json.dumps(payload)
    assert payload["reason"] == "drained" and payload["status"] == "success"
    snap = QueueSnapshot.from_dict(payload["snapshot"])
    assert snap.is_empty and snap.dlq_visible == 0
    # The event came at least `stable_for` after the queue really emptied (not on the first empty poll).
    assert snap.taken_at >= emptied_at[0] + 1.0 - 0.3
    points = payload["series"]
    assert points[0][1] + points[0][2] >= 1, "the curve starts with the backlog"
    assert points[-1][1:4] == [0, 0, 0]
    assert payload["series_fields"] == ["t", "visible", "in_flight", "delayed", "dlq"]


@pytest.mark.integration
def test_timeout_reports_the_last_snapshot(sqs_client, make_queue, aws_conn):
    url = make_queue()
    send_bodies(sqs_client, url, [("a", "x")])
    trigger = QueueDrainedTrigger(url, stable_for_s=0, poll_interval_s=0.2, deadline=time.time() + 1.0, aws_conn_id=CONN_ID, emit_metrics=False)
    payload = asyncio.run(first_event(trigger))
    assert payload["reason"] == "timeout" and payload["status"] == "failed"
    assert "visible=1" in payload["message"]


@pytest.mark.integration
def test_dlq_threshold(sqs_client, make_queue, aws_conn):
    url, dlq = make_queue(), make_queue()
    send_bodies(sqs_client, url, [("a", "x")])
    send_bodies(sqs_client, dlq, [("d1", "x"), ("d2", "y")])
    trigger = QueueDrainedTrigger(url, dlq_url=dlq, dlq_threshold=2, poll_interval_s=0.2, aws_conn_id=CONN_ID, emit_metrics=False)
    payload = asyncio.run(first_event(trigger))
    assert payload["reason"] == "dlq_threshold" and payload["snapshot"]["dlq_visible"] == 2


@pytest.mark.integration
def test_series_stays_bounded(sqs_client, make_queue, aws_conn):
    url = make_queue()
    send_bodies(sqs_client, url, [("a", "x")])
    trigger = QueueDrainedTrigger(url, poll_interval_s=0.01, deadline=time.time() + 2.0, max_points=8, aws_conn_id=CONN_ID, emit_metrics=False)
    payload = asyncio.run(first_event(trigger))
    assert payload["reason"] == "timeout"
    assert 2 <= len(payload["series"]) <= 8
    ts = [p[0] for p in payload["series"]]
    assert ts == sorted(ts) and ts[-1] - ts[0] >= 1.0  # spread over the whole wait, not just the start


@pytest.mark.integration
def test_results_available_fires_without_consuming(sqs_client, make_queue, aws_conn):
    from batchq.sqs import get_snapshot

    url = make_queue()
    threading.Timer(0.8, lambda: send_bodies(sqs_client, url, [("r", "x")])).start()
    payload = asyncio.run(first_event(ResultsAvailableTrigger(url, poll_interval_s=0.2, aws_conn_id=CONN_ID)))
    assert payload["reason"] == "available" and payload["snapshot"]["visible"] >= 1
    assert get_snapshot(sqs_client, url).visible == 1  # still there for the drainer
    payload = asyncio.run(first_event(ResultsAvailableTrigger(make_queue(), poll_interval_s=0.2, deadline=time.time() + 0.5, aws_conn_id=CONN_ID)))
    assert payload["reason"] == "timeout"


@pytest.mark.integration
def test_error_is_an_event_not_an_exception(aws_conn):
    aws_conn("http://127.0.0.1:9")  # nothing listens on the discard port
    trigger = QueueDrainedTrigger(
        "http://127.0.0.1:9/000000000000/nope", poll_interval_s=0.05, aws_conn_id=CONN_ID, emit_metrics=False,
        botocore_config={"retries": {"max_attempts": 1}, "connect_timeout": 1},
    )
    trigger.hook  # noqa: B018 - builds
    import batchq.airflow.triggers as mod

    payload = asyncio.run(first_event(trigger, timeout=120))
    assert payload["reason"] == "error" and payload["status"] == "failed" and payload["message"]
    assert mod.MAX_CONSECUTIVE_ERRORS >= 1


# -- the event loop is never blocked -------------------------------------------------------------------------


async def _max_tick_gap(trigger, duration: float, tick: float = 0.01) -> tuple[float, dict]:
    """Run ``trigger`` beside a ticker; return the longest gap between ticks and the trigger's event."""
    gaps = [0.0]
    done = asyncio.Event()

    async def ticker():
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(tick)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick_task = asyncio.create_task(ticker())
    try:
        payload = await asyncio.wait_for(first_event(trigger), duration + 30)
    finally:
        done.set()
        await tick_task
    return max(gaps[1:] or [0.0]), payload


@pytest.mark.integration
def test_never_blocks_the_event_loop(sqs_client, sqs_endpoint, make_queue, aws_conn):
    url = make_queue()
    send_bodies(sqs_client, url, [("a", "x")])  # never drains: the trigger polls until its deadline
    parts = urlsplit(sqs_endpoint)
    # Every response is held back 300 ms: a blocking call would freeze the loop for >= 300 ms per poll.
    with TcpProxy(parts.hostname, parts.port, latency_s=0.3) as proxy:
        aws_conn(f"http://127.0.0.1:{proxy.port}")
        slow_url = url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
        trigger = QueueDrainedTrigger(slow_url, poll_interval_s=0.05, deadline=time.time() + 3.0, aws_conn_id=CONN_ID, emit_metrics=False)
        gap, payload = asyncio.run(_max_tick_gap(trigger, 3.0))
    assert payload["reason"] == "timeout" and len(payload["series"]) >= 3, payload
    assert gap < 0.2, f"event loop blocked for {gap:.3f}s"


def test_the_gap_meter_catches_a_blocking_poll(monkeypatch):
    """Control for the test above: a poll that blocks (sync sleep) is caught by the same meter."""
    import batchq.airflow.triggers as mod

    async def blocking_snapshot(client, queue_url, dlq_url=None):
        time.sleep(0.3)  # noqa: ASYNC251 - on purpose: what a sync boto3 call on a slow endpoint does to the loop
        return QueueSnapshot(time.time(), 1, 0, 0)

    monkeypatch.setattr(mod, "aget_snapshot", blocking_snapshot)
    monkeypatch.setattr(QueueDrainedTrigger, "hook", property(lambda self: _FakeHook()))
    trigger = QueueDrainedTrigger("http://h/1/q", poll_interval_s=0.05, deadline=time.time() + 1.0, emit_metrics=False)
    gap, payload = asyncio.run(_max_tick_gap(trigger, 1.0))
    assert payload["reason"] == "timeout"
    assert gap >= 0.25


def test_the_sensor_re_defers_after_an_alert_still_watching_the_results_queue(aws_conn, make_queue, sqs_client):
    from airflow.sdk.exceptions import TaskDeferred
    from batchq.airflow.sensors import QueueDrainedSensor
    from batchq.monitor.alerts import BacklogAlerts
    from batchq.monitor.waits import InputWait

    q, r = make_queue(), make_queue()
    sqs_client.send_message(QueueUrl=q, MessageBody="still waiting")  # the wait is not over: it defers again
    sensor = QueueDrainedSensor(task_id="wait", queue_name=q, aws_conn_id=CONN_ID)
    state = InputWait(started_at=time.time(), deadline=time.time() + 60, results_watched=True).to_dict()
    event = {"status": "alert", "reason": "backlog_alert", "queue_url": q, "dlq_url": None, "results_url": r, "alert_changes": [], "alerts": BacklogAlerts().to_dict(), "wait_state": state}
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete({"ti": None}, event)
    trigger = deferred.value.trigger
    assert trigger.results_url == r and trigger._new_wait().results_watched
