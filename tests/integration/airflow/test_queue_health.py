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


def test_a_bad_spec_or_a_failed_snapshot_is_its_own_episode(sqs_client, sqs_endpoint, queue_spec_factory, monkeypatch, tmp_path):
    """One spec file that does not load and one queue whose snapshot is refused (AccessDenied through a
    loopback proxy) are each reported and alerted as a ``check_failed`` episode; the healthy spec's
    detectors still run, fire and are saved, the refused queue's detector memory is kept, and neither
    the AWS error text (account id, role ARN) nor the spec's path reaches a notifier or the summary."""
    from batchq.airflow.queue_health import CHECK_FAILURES, QueueHealthOperator

    from tests.support.sqs_fault_proxy import SqsFaultProxy

    good_q, good_urls = queue_spec_factory()
    denied_q, _ = queue_spec_factory()
    bad_file = tmp_path / "broken.yaml"
    bad_file.write_text("name: broken\ndimensions: {x: [1]}\n")  # no queues: invalid
    good = BatchSpec(name="good", dimensions={"x": [1]}, job_type="classification", queues=good_q)
    denied = BatchSpec(name="denied", dimensions={"x": [1]}, job_type="classification", queues=denied_q)
    send_message(sqs_client, good_urls.results_dlq, "a dead result")
    with SqsFaultProxy(sqs_endpoint) as proxy:
        set_aws_connection(monkeypatch, CONN_ID, proxy.url)
        Recorder.calls = []
        alerts: list = []

        def record(context):
            alerts.append((context["batchq_queue"], dict(context["batchq_alert"])))

        op = QueueHealthOperator(task_id="check_queues", specs=[str(bad_file), denied, good], aws_conn_id=CONN_ID, on_backlog_alert=[Recorder(), record])
        # Round 1: the bad spec fires its episode; the other queues are readable and get detector memory.
        state, _ = op.check({"ti": None}, {}, now=1_000.0)
        assert (f"spec {bad_file.name}", "check_failed", "fired") in Recorder.calls
        assert denied_q.input in state and good_q.results in state
        proxy.plan.denied_attributes.add(denied_q.input)
        Recorder.calls = []
        alerts.clear()
        state2, summary = op.check({"ti": None}, json.loads(json.dumps(state)), now=1_300.0)

    # The refused queue is a new episode; the bad spec's episode is still open and not re-sent.
    assert Recorder.calls == [(denied_q.input, "check_failed", "fired")]
    # The healthy spec's detectors ran and were saved; the refused queue keeps its previous memory.
    assert state2[good_q.results]["open"].keys() == {"dead_letters"}
    assert state2[denied_q.input] == state[denied_q.input]
    assert set(state2[CHECK_FAILURES]) == {f"spec {bad_file.name}", denied_q.input}
    assert "error" in summary[denied_q.input] and "AccessDenied on GetQueueAttributes" in summary[denied_q.input]["error"]
    shown = json.dumps([summary, alerts, state2])
    assert "123456789012" not in shown and "secret-role" not in shown

    # Round 3: the queue answers again, its episode resolves; the bad spec's stays open (not re-sent).
    set_aws_connection(monkeypatch, CONN_ID, sqs_endpoint)
    op = QueueHealthOperator(task_id="check_queues", specs=[str(bad_file), denied, good], aws_conn_id=CONN_ID, on_backlog_alert=[Recorder()])
    Recorder.calls = []
    state3, _ = op.check({"ti": None}, json.loads(json.dumps(state2)), now=1_600.0)
    assert Recorder.calls == [(denied_q.input, "check_failed", "resolved")]
    assert set(state3[CHECK_FAILURES]) == {f"spec {bad_file.name}"}
    assert str(tmp_path) not in shown
