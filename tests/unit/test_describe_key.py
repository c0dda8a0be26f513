"""Failures are named by their dimensions, not by hash (issue 20): the one formatting and the places
that show a key to a person without the results store's help (the ledger text of the drain task's error
and ``batchq ledger``, the Batch view's first failures)."""

from __future__ import annotations

from batchq import xcom_keys
from batchq.store.ledger import evaluate
from batchq.messages import describe_key
from batchq.monitor.report import run_report

KEY = "4730f5ee91c2b7d0a1e3f5a7b9c1d3e5"
DIMS = {"region": "ap-south", "model": "xgb", "day": "wed"}


def test_describe_key_names_the_dimensions_in_order_and_shortens_the_hash():
    assert describe_key(KEY, DIMS) == "region=ap-south, model=xgb, day=wed (4730f5ee…)"
    assert describe_key(KEY) == KEY and describe_key(KEY, {}) == KEY  # unknown dims: the key as it is
    assert describe_key("abc", {"n": 1}) == "n=1 (abc)"


def test_the_ledger_text_names_failures_by_their_dimensions():
    failure = {"key": KEY, "dims": DIMS, "error": {"type": "RuntimeError", "message": "model diverged"}}
    status = evaluate("forecasts", "r1", 42, 41, 1, first_failures=[failure])
    assert "First failed keys: region=ap-south, model=xgb, day=wed (4730f5ee…): RuntimeError: model diverged" in status.describe()
    older = evaluate("forecasts", "r1", 42, 41, 1, first_failures=[{"key": KEY, "error": "boom"}])
    assert f"First failed keys: {KEY}: boom" in older.describe()  # rows stored before dims: the key


def test_the_batch_view_shows_first_failures_by_their_dimensions():
    ledger = {"batch": "forecasts", "run_id": "r1", "expected": 42, "succeeded": 41, "failed": 1, "quarantined": 0,
              "pending": 0, "outcome": "failed",
              "first_failures": [{"key": KEY, "dims": DIMS, "error": {"type": "RuntimeError", "message": "x"}}]}
    report = run_report("forecasts_dag", "r1", [(xcom_keys.LEDGER, ledger)])
    assert [f.key for f in report.failures] == ["region=ap-south, model=xgb, day=wed (4730f5ee…)"]


def test_the_plan_names_its_own_keys_and_no_others():
    from batchq.plan import Plan
    from batchq.spec import BatchSpec

    spec = BatchSpec.from_dict({"name": "f", "dimensions": {"region": ["eu", "ap-south"], "model": ["xgb", "lr"],
                                "day": ["mon", "wed"]}, "exclude": [{"model": "lr", "day": "mon"}],
                                "job_type": "forecast", "queues": {"input": "a", "results": "b"}})
    plan = Plan(spec, "r1", dag_id="d")
    bodies = dict(b for shard in plan.shards() for b in plan.iter_bodies(shard))
    from batchq.messages import parse_payload

    wanted = sorted(bodies)[:3]
    assert plan.dims_of([*wanted, "not-a-key"]) == {k: parse_payload(bodies[k]).dims for k in wanted}
    assert plan.dims_of([]) == {}
    other_run = Plan(spec, "r2", dag_id="d")
    assert other_run.dims_of(wanted) == {}  # another run's keys are not this plan's


def test_failures_read_from_the_store_carry_their_dims_into_the_ledger_text(tmp_path):
    # The drain task's error, `batchq ledger` and the Batch tab all show status.describe()/first_failures.
    from batchq.messages import ErrorInfo, WorkResult
    from batchq.store import ResultsStore
    from batchq.store.ledger import RunLedger

    store = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        err = ErrorInfo(type="RuntimeError", message="model diverged")
        store.apply([
            WorkResult(batch="f", run_id="r1", key=KEY, status="failed", error=err, dims=DIMS),
            WorkResult(batch="f", run_id="r1", key="0" * 32, status="failed", error=err),  # an older worker: no dims
            WorkResult(batch="f", run_id="r1", key="1" * 32, status="succeeded", output={}, dims={"region": "eu"}),
        ])
        status = RunLedger(store, "f", "r1", 3).status()
    finally:
        store.close()
    assert {f["key"]: f["dims"] for f in status.first_failures} == {KEY: DIMS, "0" * 32: None}
    text = status.describe()
    assert "region=ap-south, model=xgb, day=wed (4730f5ee…): RuntimeError: model diverged" in text
    assert f"{'0' * 32}: RuntimeError" in text
