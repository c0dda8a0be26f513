"""The queue-health task against the real SQS endpoint: each round snapshots every spec's queues and
feeds the detector whose state is carried (as JSON) from the previous round; alerts fire once and
resolve, and a missing queue is reported, not raised. Rounds are 5 minutes apart in detector time
(``now=``) without waiting for them."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
from airflow.sdk import BaseNotifier
from batchq.monitor.alerts import AlertPolicy
from batchq.spec import BatchSpec, QueueSpec
from batchq.sqs import delete_messages, receive_messages, send_bodies, send_message

from tests.support.airflow_conn import set_aws_connection

pytestmark = pytest.mark.integration

CONN_ID = "batchq_health_test"


class Recorder(BaseNotifier):
    calls: ClassVar[list] = []

    def notify(self, context):
        Recorder.calls.append((context["batchq_queue"], context["batchq_alert"]["kind"], context["batchq_alert"]["state"]))


def drain(client, url):
    while msgs := receive_messages(client, url, max_messages=10, wait_seconds=0):
        delete_messages(client, url, msgs)


def test_rounds_fire_once_and_resolve(sqs_client, sqs_endpoint, queue_spec_factory, monkeypatch):
    from batchq.airflow.queue_health import QueueHealthOperator

    set_aws_connection(monkeypatch, CONN_ID, sqs_endpoint)
    qspec, urls = queue_spec_factory()
    spec = BatchSpec(name="health", dimensions={"x": [1]}, job_type="classification", queues=qspec)
    missing = BatchSpec(name="gone", dimensions={"x": [1]}, job_type="classification", queues=QueueSpec(input="no-such-q-in", results="no-such-q-out"))
    Recorder.calls = []
    op = QueueHealthOperator(
        task_id="check_queues",
        specs=[spec, missing],
        aws_conn_id=CONN_ID,
        on_backlog_alert=[Recorder()],
        input_policy=AlertPolicy(window_s=1800, min_points=2, stall_after_s=600, resolve_after_s=0, kinds=("stalled", "dead_letters")),
    )
    send_bodies(sqs_client, urls.input, [(f"k{i}", f"m{i}") for i in range(3)])
    send_message(sqs_client, urls.results_dlq, "a dead result")

    def round_(state, at):
        new, summary = op.check({"ti": None}, json.loads(json.dumps(state)), now=at)
        return new, summary

    state, summary = round_({}, 1_000.0)
    inq, outq = qspec.input, qspec.results
    assert Recorder.calls == [(outq, "dead_letters", "fired")]
    assert summary[inq]["backlog"] == 3 and summary[outq]["dlq"] == 1
    assert "error" in summary["no-such-q-in"]  # not provisioned: reported, no alert, no exception

    state, _ = round_(state, 1_300.0)
    assert Recorder.calls[1:] == []  # 5 minutes without progress: not yet stalled, DLQ alert not repeated
    state, summary = round_(state, 1_600.0)
    assert Recorder.calls[1:] == [(inq, "stalled", "fired")]
    assert summary[inq]["open"] == ["stalled"]

    drain(sqs_client, urls.input)
    drain(sqs_client, urls.results_dlq)
    state, summary = round_(state, 1_900.0)
    assert Recorder.calls[2:] == [(inq, "stalled", "resolved")]
    # The results DLQ is empty too, but the default policy resolves only once that held for 300 s.
    assert summary[outq]["open"] == ["dead_letters"]
    state, summary = round_(state, 2_200.0)
    assert Recorder.calls[3:] == [(outq, "dead_letters", "resolved")]
    assert summary[inq]["open"] == [] and summary[outq]["open"] == []
    episodes = state[inq]["episodes"]
    assert [(e["kind"], e["started_at"], e["resolved_at"]) for e in episodes] == [("stalled", 1_600.0, 1_900.0)]
