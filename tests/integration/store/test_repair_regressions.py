"""Regression tests of issue 15 on the repair path, against the real SQS endpoint and a SQLite store:
``rerun --failed`` next to a stray failed key, and ``RerunFailedOperator(mode="pending")`` on a run
with lost keys (the ledger stays ``open``)."""

from __future__ import annotations


import pytest
from batchq.store import ResultsStore, RunLedger
from batchq.messages import ErrorInfo, WorkResult, parse_payload
from batchq.plan import Plan, idempotency_key
from batchq.store.repairs import rerun
from batchq.spec import BatchSpec
from batchq.sqs import delete_messages, receive_messages

pytestmark = pytest.mark.integration


def make_plan(input_queue: str = "in", batch: str = "repair_reg") -> Plan:
    spec = BatchSpec.from_dict(
        {"name": batch, "dimensions": {"customer": ["c0", "c1", "c2", "c3"]}, "job_type": "t",
         "queues": {"input": input_queue, "results": "out"}}
    )
    return Plan(spec, "run-1", dag_id="dag")


def keys_of(plan: Plan) -> dict[str, dict]:
    return {idempotency_key(plan.spec.name, plan.run_id, {"customer": c}, plan.dag_id): {"customer": c} for c in plan.values[0]}


def result(plan: Plan, key: str, status: str, dims=None) -> WorkResult:
    extra = {"dims": dims} if (dims is not None and "dims" in WorkResult.model_fields) else {}
    return WorkResult(
        batch=plan.spec.name, run_id=plan.run_id, key=key, status=status, plan=plan.fingerprint,
        error=ErrorInfo(type="Boom", message="no") if status == "failed" else None, **extra,
    )


def received_keys(client, url) -> list[str]:
    out = []
    while msgs := receive_messages(client, url, max_messages=10, wait_seconds=0):
        out += [parse_payload(m["Body"]).key for m in msgs]
        delete_messages(client, url, msgs)
    return sorted(out)


@pytest.fixture
def store(tmp_path):
    s = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


def test_rerun_failed_next_to_a_stray_failed_key_repairs_the_planned_ones(store, sqs_client, make_queue):
    """A failed result whose key the plan cannot produce (but carrying the run's plan) used to make
    ``rerun --failed`` raise after ``record_repair``: nothing sent, keys stuck open."""
    url = make_queue()
    plan = make_plan()
    keys = list(keys_of(plan).items())
    ledger = RunLedger.for_plan(store, plan)
    stray_dims = {"customer": "c9"}
    stray = result(plan, idempotency_key(plan.spec.name, plan.run_id, stray_dims, plan.dag_id), "failed", dims=stray_dims)
    store.apply([result(plan, keys[0][0], "failed", keys[0][1]), *(result(plan, k, "succeeded", d) for k, d in keys[1:]), stray], ())
    assert ledger.status().outcome == "failed"
    ledger.close()

    report = rerun(sqs_client, url, store, plan, "failed", requested_by="test")
    assert (report.selected, report.sent, report.keys) == (1, 1, [keys[0][0]])
    assert received_keys(sqs_client, url) == [keys[0][0]]
    [repair] = store.repairs(plan.spec.name, plan.run_id)
    assert repair["keys_after"] == {"open": 1}
    store.apply([result(plan, keys[0][0], "succeeded", keys[0][1])], ())
    assert ledger.status().outcome == "succeeded"
    assert store.repairs(plan.spec.name, plan.run_id)[0]["keys_after"] == {"succeeded": 1}


class FakeTI:
    def __init__(self, plan_xcom):
        self.plan_xcom, self.try_number = plan_xcom, 1
        self.pushed = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value

    def xcom_pull(self, task_ids=None, key=None):
        return self.plan_xcom if key == "plan" else None


def test_rerun_failed_operator_in_pending_mode_resends_lost_keys(store, tmp_path, sqs_client, sqs_endpoint, make_queue, monkeypatch):
    """``RerunFailedOperator(mode="pending")`` required the outcome ``failed``, but a run with lost keys
    stays ``open``: it could never send."""
    from batchq.airflow.operators.repair import RerunFailedOperator

    from tests.support.airflow_conn import set_aws_connection

    conn_id = set_aws_connection(monkeypatch, "batchq_repair_reg", sqs_endpoint)
    url = make_queue()
    plan = Plan(make_plan().spec, "run-1")  # outside a DAG, as the operator below runs
    keys = list(keys_of(plan).items())
    ledger = RunLedger.for_plan(store, plan)
    store.apply([result(plan, k, "succeeded", d) for k, d in keys[:2]], ())  # two keys were lost
    assert ledger.status().outcome == "open"

    op = RerunFailedOperator(
        task_id="rerun_pending", spec=plan.spec, sink=f"sqlite:///{tmp_path / 'store.db'}", mode="pending",
        run_id=plan.run_id, aws_conn_id=conn_id,
    )
    out = op.execute({"ti": FakeTI({"queues": {"input": url}}), "dag_run": None, "run_id": plan.run_id})
    lost = sorted(k for k, _ in keys[2:])
    assert (out["selected"], out["sent"]) == (2, 2)
    assert received_keys(sqs_client, url) == lost
    assert ledger.status().repairing == 0 and ledger.status().pending == 2


def test_a_repair_run_resends_the_failed_keys_of_a_run_within_its_tolerance(store, tmp_path, sqs_client, sqs_endpoint, make_queue, monkeypatch):
    """A run whose failures stay within its tolerance succeeds, yet a partition (a customer) may have
    failed beyond its own: a repair run that names it re-sends its failed keys. Cleared in the run
    itself (no ``repair_run_id``), a succeeded run is left alone, as before."""
    from batchq.airflow.operators.repair import RerunFailedOperator

    from tests.support.airflow_conn import set_aws_connection

    conn_id = set_aws_connection(monkeypatch, "batchq_repair_tol", sqs_endpoint)
    url = make_queue()
    spec = BatchSpec.from_dict(
        {"name": "repair_tol", "dimensions": {"customer": ["c0", "c1", "c2", "c3"]}, "job_type": "t",
         "queues": {"input": "in", "results": "out"}, "tolerated_failure_count": 1}
    )
    plan = Plan(spec, "run-1")
    keys = list(keys_of(plan).items())
    ledger = RunLedger.for_plan(store, plan, tolerated_failure_count=1)  # the drain passes the spec's tolerance
    store.apply([result(plan, k, "succeeded", d) for k, d in keys[:3]] + [result(plan, keys[3][0], "failed", keys[3][1])], ())
    closed = ledger.close()  # as the drain closes it
    assert (closed.outcome, closed.failed) == ("succeeded", 1)

    def op():
        return RerunFailedOperator(task_id="rerun_failed", spec=plan.spec, sink=f"sqlite:///{tmp_path / 'store.db'}",
                                   run_id=plan.run_id, aws_conn_id=conn_id)

    cleared = op().execute({"ti": FakeTI({"queues": {"input": url}}), "dag_run": None, "run_id": plan.run_id, "params": {}})
    assert (cleared["selected"], cleared["sent"]) == (0, 0) and received_keys(sqs_client, url) == []
    named = op().execute({"ti": FakeTI({"queues": {"input": url}}), "dag_run": None, "run_id": "manual__2",
                          "params": {"repair_run_id": plan.run_id}})
    assert (named["selected"], named["sent"], named["outcome_before"]) == (1, 1, "succeeded")
    assert received_keys(sqs_client, url) == [keys[3][0]]
    assert ledger.status().repairing == 1  # reopened until the repaired key's new result lands
