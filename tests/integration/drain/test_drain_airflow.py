"""The Airflow side of the drain, task by task (no scheduler): the sensor's resume and poke paths, the
drain operator's defer / finish / fail paths with the Asset event extra, and sink connections."""

from __future__ import annotations

import json

import pytest
from batchq.store import ResultsStore

from tests.integration.drain._helpers import backlog, make_results, put

pytestmark = pytest.mark.integration

CONN_ID = "batchq_drain_test"


class FakeTI:
    def __init__(self, plan=None):
        self.pushed: dict = {}
        self.plan = plan

    def xcom_push(self, key, value):
        json.dumps(value)
        self.pushed[key] = value

    def xcom_pull(self, task_ids=None, key=None):
        return self.plan if key == "plan" else None


@pytest.fixture
def aws_conn(monkeypatch, sqs_endpoint):
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": {"endpoint_url": sqs_endpoint, "region_name": "us-east-1"}}),
    )
    return CONN_ID


def sensor(**kw):
    from batchq.airflow.sensors import QueueDrainedSensor

    kw.setdefault("aws_conn_id", CONN_ID)
    return QueueDrainedSensor(task_id="wait", **kw)


def test_sensor_resume_is_the_one_place_that_raises():
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
    )

    s = sensor(queue_name="http://h/1/q")
    snap = {"taken_at": 1.0, "visible": 3, "in_flight": 1, "delayed": 0, "dlq_visible": 2}
    ti = FakeTI()
    out = s.execute_complete({"ti": ti}, {"reason": "drained", "snapshot": {**snap, "visible": 0, "in_flight": 0}, "series": [[1, 0, 0, 0, 0]], "waited_s": 5})
    assert out["reason"] == "drained" and ti.pushed["backlog_series"]["points"] == [[1, 0, 0, 0, 0]]
    with pytest.raises(AirflowSensorTimeout, match="visible=3, in_flight=1"):
        s.execute_complete({"ti": FakeTI()}, {"reason": "timeout", "snapshot": snap, "series": [], "waited_s": 9})
    with pytest.raises(AirflowFailException, match="DLQ holds 2"):
        s.execute_complete({"ti": FakeTI()}, {"reason": "dlq_threshold", "snapshot": snap, "series": [], "message": "DLQ holds 2 message(s), threshold 2"})
    with pytest.raises(AirflowException, match="boom"):
        s.execute_complete({"ti": FakeTI()}, {"reason": "error", "snapshot": None, "series": [], "message": "boom"})


def test_sensor_rejects_reschedule_mode_and_needs_a_queue():
    with pytest.raises(ValueError, match="reschedule"):
        sensor(queue_name="q", deferrable=False, mode="reschedule")
    with pytest.raises(ValueError, match="spec= or queue_name="):
        sensor()


def test_sensor_poke_path(sqs_client, make_queue, aws_conn):
    from airflow.sdk.exceptions import AirflowSensorTimeout

    url = make_queue()
    s = sensor(queue_name=url, deferrable=False, stable_for=0.3, poll_interval=0.1)
    ti = FakeTI()
    import time

    assert s.poke({"ti": ti}) is False  # the first empty poll only starts the stability window
    time.sleep(0.4)
    done = s.poke({"ti": ti})
    assert done and done.xcom_value["reason"] == "drained"  # the same return value as the deferred path
    assert ti.pushed["backlog_series"]["points"]
    put(sqs_client, url, make_results(1))
    busy = sensor(queue_name=url, deferrable=False, stable_for=0, poll_interval=0.1, timeout=0.05)
    with pytest.raises(AirflowSensorTimeout, match="visible=1"):
        busy.poke({"ti": FakeTI()})


def test_sensor_records_the_results_queue_on_the_drain_curve(sqs_client, make_queue, aws_conn):
    """The poke path snapshots the results queue on each poll: its counts really change in the series
    while the (empty) input queue alone decides."""
    import time

    from batchq.sqs import receive_messages

    in_url, res_url = make_queue(), make_queue()
    put(sqs_client, res_url, make_results(5))
    s = sensor(queue_name=in_url, results_queue_name=res_url, deferrable=False, stable_for=0.3, poll_interval=0.1)
    ti = FakeTI()
    assert s.poke({"ti": ti}) is False
    assert len(receive_messages(sqs_client, res_url, max_messages=2, wait_seconds=1, visibility_timeout=60)) == 2
    time.sleep(0.4)
    done = s.poke({"ti": ti})
    assert done and done.xcom_value["reason"] == "drained"  # results waiting on their queue do not hold it
    series = ti.pushed["backlog_series"]
    assert series["fields"] == ["t", "visible", "in_flight", "delayed", "dlq", "results_visible", "results_in_flight"]
    assert [p[-2:] for p in series["points"]] == [[5, 0], [3, 2]]
    # A results queue that does not exist is not recorded, and does not fail the wait.
    gone = sensor(queue_name=in_url, results_queue_name=f"missing-{int(time.time() * 1000)}", deferrable=False, stable_for=0, poll_interval=0.1)
    ti = FakeTI()
    assert gone.poke({"ti": ti}).xcom_value["reason"] == "drained"
    assert ti.pushed["backlog_series"]["fields"] == ["t", "visible", "in_flight", "delayed", "dlq"]


def drain_op(**kw):
    from batchq.airflow.operators.drain import ResultsDrainOperator

    kw.setdefault("aws_conn_id", CONN_ID)
    kw.setdefault("receive_wait_s", 1)
    return ResultsDrainOperator(task_id="drain", **kw)


def context(run_id: str, ti=None):
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"ti": ti or FakeTI(), "outlet_events": OutletEventAccessors(), "run_id": run_id}


def test_drain_operator_defers_then_finishes_with_an_asset_event(sqs_client, make_queue, aws_conn, tmp_path):
    from airflow.sdk import Asset
    from airflow.sdk.exceptions import TaskDeferred
    from batchq.airflow.triggers import ResultsAvailableTrigger

    url = make_queue()
    results = make_results(30, failed_every=15)  # 2 failures, 10 % tolerated
    batch = results[0].batch
    sink = f"sqlite:///{tmp_path}/sink.db"
    op = drain_op(batch=batch, results_queue=url, sink=sink, expected=30, run_id="run-1", tolerated_failure_percentage=10, poll_interval=0.2)
    assert op.outlets == [Asset(f"batchq://{batch}/results")]
    put(sqs_client, url, results[:20])
    ctx = context("run-1")
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    trigger = deferred.value.trigger
    assert isinstance(trigger, ResultsAvailableTrigger) and deferred.value.method_name == "resume"
    kwargs = deferred.value.kwargs
    assert kwargs["totals"]["applied"] >= 20
    assert ResultsStore(sink).counts(batch, "run-1").succeeded == 18  # keys 0 and 15 failed

    put(sqs_client, url, results[20:], copies=2)
    out = op.resume(ctx, {"reason": "available", "status": "success"}, **kwargs)
    assert (out["expected"], out["succeeded"], out["failed"], out["outcome"]) == (30, 28, 2, "succeeded")
    assert out["drain"]["applied"] >= 40
    event = ctx["outlet_events"][Asset(f"batchq://{batch}/results")]
    assert event.extra["succeeded"] == 28 and event.extra["outcome"] == "succeeded"
    assert ResultsStore(sink).get_run(batch, "run-1")["outcome"] == "succeeded"
    assert backlog(sqs_client, url) == 0


def test_drain_operator_records_the_results_queue_falling_to_zero(sqs_client, make_queue, aws_conn, tmp_path):
    """``results_series``: the results queue's counts and the applied count, sampled while the
    operator drains (rate-limited, so the curve has points in between), carried across a deferral."""
    from airflow.sdk.exceptions import TaskDeferred

    url = make_queue()
    results = make_results(40)
    put(sqs_client, url, results[:30])
    op = drain_op(batch=results[0].batch, results_queue=url, sink=f"sqlite:///{tmp_path}/s.db", expected=40, run_id="run-1", max_rate=10, max_in_flight=1, curve_interval_s=0.3, poll_interval=0.2)
    ti = FakeTI()
    ctx = context("run-1", ti)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    first = ti.pushed["results_series"]
    assert first["fields"] == ["t", "results_visible", "results_in_flight", "applied", "pace_limit", "rtt_ms", "baseline_ms"]
    points = first["points"]
    assert points[0][1:4] == [30, 0, 0] and points[-1][1:4] == [0, 0, 30]
    # the drain's pace rides the curve (the Batch view's "pace" line): the start-up probe (3 writes at one
    # in flight) measured the sink's round trip and its baseline
    limit, rtt_ms, baseline_ms = points[-1][4:]
    assert limit == 1.0 and rtt_ms > 0 and 0 < baseline_ms <= rtt_ms, points[-1]
    assert any(0 < p[3] < 30 and 0 < p[1] + p[2] < 30 for p in points), points  # the fall itself, sampled
    kwargs = deferred.value.kwargs
    json.dumps(kwargs)  # the curve rides the deferral as JSON

    put(sqs_client, url, results[30:])
    out = op.resume(ctx, {"reason": "available", "status": "success"}, **kwargs)
    assert out["succeeded"] == 40
    points = ti.pushed["results_series"]["points"]
    assert points[: len(first["points"])] == first["points"]  # the curve goes on from before the deferral
    assert points[len(first["points"])][1:4] == [10, 0, 30] and points[-1][1:4] == [0, 0, 40]
    assert [p[0] for p in points] == sorted(p[0] for p in points) and [p[3] for p in points] == sorted(p[3] for p in points)


def test_drain_operator_fails_with_counts_and_first_keys(sqs_client, make_queue, aws_conn, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    url = make_queue()
    results = make_results(10, failed_every=3)  # 4 failures, none tolerated
    put(sqs_client, url, results)
    op = drain_op(batch=results[0].batch, results_queue=url, sink=f"sqlite:///{tmp_path}/s.db", run_id="run-1", plan_task_id="plan_shards")
    ti = FakeTI(plan={"expected": 10})
    with pytest.raises(AirflowFailException, match=r"6 succeeded, 4 failed.*First failed keys: ") as info:
        op.execute(context("run-1", ti))
    assert all(f"{results[i].key}: Boom: item {i}" in str(info.value) for i in (0, 3, 6, 9))
    # The failed run still leaves its ledger and first failures in XCom (the Batch view of a failed run).
    ledger = ti.pushed["ledger"]
    assert (ledger["succeeded"], ledger["failed"], ledger["outcome"]) == (6, 4, "failed")
    assert {f["key"] for f in ledger["first_failures"]} == {results[i].key for i in (0, 3, 6, 9)}


def test_drain_operator_timeout_reports_the_open_ledger(sqs_client, make_queue, aws_conn, tmp_path):
    from airflow.sdk.exceptions import AirflowException

    url = make_queue()
    results = make_results(4)
    put(sqs_client, url, results[:3])
    op = drain_op(batch=results[0].batch, results_queue=url, sink=f"sqlite:///{tmp_path}/s.db", expected=4, run_id="run-1")
    with pytest.raises(AirflowException, match="1 pending of 4 expected"):
        op.resume(context("run-1"), {"reason": "timeout"}, deadline=0.0, totals={})


def test_sink_targets_from_connections(monkeypatch):
    from batchq.airflow.operators.drain import sink_target_from_connection
    from batchq.airflow.sinks import get_connection

    def conn(**kw):
        # A real connection (an env var): SQL ones resolve through their own hook.
        kw = {k: v for k, v in kw.items() if v is not None}
        if "extra_dejson" in kw:
            kw["extra"] = kw.pop("extra_dejson")
        monkeypatch.setenv("AIRFLOW_CONN_BATCHQ_TARGET_TEST", json.dumps(kw))
        return get_connection("batchq_target_test")

    import sqlalchemy as sa

    pg = sa.engine.make_url(sink_target_from_connection(conn(conn_type="postgres", host="db", port=5432, schema="res", login="app", password="p@ss:w/rd")))
    assert (pg.drivername, pg.username, pg.password, pg.host, pg.port, pg.database) == ("postgresql+psycopg", "app", "p@ss:w/rd", "db", 5432, "res")
    assert sink_target_from_connection(conn(conn_type="sqlite", schema="/tmp/x.db")) == "sqlite:////tmp/x.db"
    assert sink_target_from_connection(conn(conn_type="http", host="rt", port=8080, schema="results")) == "http://rt:8080/results"
    assert sink_target_from_connection(conn(conn_type="generic", extra_dejson={"sqlalchemy_url": "sqlite:///y.db"})) == "sqlite:///y.db"
    # Any DbApiHook's connection is a sink now (issue 20); a type without one is named.
    assert sink_target_from_connection(conn(conn_type="mysql", host="db", schema="res", login="app")).startswith("mysql://app@db")
    with pytest.raises(ValueError, match="conn_type 'aws'"):
        sink_target_from_connection(conn(conn_type="aws"))


def test_redrive_operator(sqs_client, queue_spec_factory, aws_conn):
    from batchq.airflow.operators.redrive import DlqRedriveOperator
    from batchq.sqs import get_snapshot, send_bodies

    spec, urls = queue_spec_factory()
    send_bodies(sqs_client, urls.input_dlq, [(str(i), f"body-{i}") for i in range(12)])
    out = DlqRedriveOperator(task_id="redrive", dlq=spec.input_dlq, target=spec.input, aws_conn_id=CONN_ID).execute({})
    assert out["moved"] == 12 and out["failed"] == 0
    assert get_snapshot(sqs_client, urls.input).visible == 12
