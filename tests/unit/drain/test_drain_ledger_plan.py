"""A run counts only results of its own plan, and two DAGs never share keys or a ledger row (issue 8).
On the code before issue 8 a re-plan of the same run id closed early on the old plan's keys, and two
DAGs with the same batch name and run id shared keys and one ledger row."""

from __future__ import annotations

import pytest
from batchq.store import RunLedger
from batchq.store import QuarantineEntry, ResultsStore, RunConflict
from batchq.messages import ErrorInfo, WorkPayload, WorkResult, parse_payload
from batchq.plan import Plan
from batchq.spec import BatchSpec


@pytest.fixture
def store(tmp_path):
    s = ResultsStore(f"sqlite:///{tmp_path}/results.db")
    yield s
    s.close()


def _spec(values: list[int]) -> BatchSpec:
    return BatchSpec.model_validate(
        {"name": "plans", "job_type": "echo", "dimensions": {"n": values}, "queues": {"input": "plans-in", "results": "plans-out"}}
    )


def _payloads(plan: Plan) -> list[WorkPayload]:
    return [parse_payload(body) for shard in plan.shards() for _, body in plan.iter_bodies(shard)]


def _results(plan: Plan) -> list[WorkResult]:
    return [WorkResult(batch=p.batch, run_id=p.run_id, key=p.key, status="succeeded", output={}, plan=p.plan) for p in _payloads(plan)]


def test_payloads_carry_the_plan_and_old_bodies_still_parse():
    plan = Plan(_spec([1, 2]), "r1")
    payloads = _payloads(plan)
    assert {p.plan for p in payloads} == {plan.fingerprint}
    old = payloads[0].model_dump(mode="json", exclude={"plan"})
    assert WorkPayload.model_validate(old).plan is None


def test_a_replan_after_the_values_changed_cannot_close_on_old_keys(store):
    old = Plan(_spec([1, 2, 3, 4]), "r1")
    new = Plan(_spec([3, 4, 5, 6, 7]), "r1")  # a `variable:` list edited, the run cleared and re-run
    assert old.fingerprint != new.fingerprint
    store.apply(_results(old))
    ledger = RunLedger(store, "plans", "r1", new.expected, plan=new.fingerprint)
    assert ledger.status().succeeded == 0 and not ledger.status().complete  # 4 old rows, none of this plan
    new_results = _results(new)
    store.apply(new_results[:4])
    assert ledger.status().succeeded == 4 and not ledger.status().complete
    store.apply(new_results[4:])
    assert ledger.status().complete and ledger.status().succeeded == 5
    # The plan is recorded: a later look without it (e.g. `batchq ledger`) counts the same way.
    assert RunLedger(store, "plans", "r1").status().succeeded == 5
    assert RunLedger(store, "plans", "r1", new.expected).status().succeeded == 5


def test_quarantined_entries_of_another_plan_do_not_count(store):
    new = Plan(_spec([1]), "r1")
    ledger = RunLedger(store, "plans", "r1", 1, plan=new.fingerprint)
    body = '{"schema_version": 1, "batch": "plans", "run_id": "r1", "key": "zz", "plan": "0000", "status": "?"}'
    store.apply([], [QuarantineEntry.from_body("m1", body, "bad")])
    assert ledger.status().failed == 0 and not ledger.status().complete


def test_two_dags_never_share_keys_or_a_ledger_row(store):
    spec = _spec([1, 2, 3])
    a, b = Plan(spec, "scheduled__2026-11-30", dag_id="dag_a"), Plan(spec, "scheduled__2026-11-30", dag_id="dag_b")
    keys_a = {k for s in a.shards() for k, _ in a.iter_bodies(s)}
    keys_b = {k for s in b.shards() for k, _ in b.iter_bodies(s)}
    assert keys_a.isdisjoint(keys_b) and a.fingerprint != b.fingerprint
    RunLedger(store, "plans", a.run_id, a.expected, plan=a.fingerprint, dag_id="dag_a")
    with pytest.raises(RunConflict, match="already recorded by DAG 'dag_a'"):
        RunLedger(store, "plans", b.run_id, b.expected, plan=b.fingerprint, dag_id="dag_b")
    # The owning DAG may record its run again (a retry, a re-plan).
    RunLedger(store, "plans", a.run_id, a.expected, plan=a.fingerprint, dag_id="dag_a")


def test_a_result_of_the_new_plan_takes_over_a_shared_key(store):
    # Same run id and dims in both plans → same key; the new plan's result must own the row.
    old, new = Plan(_spec([1, 2]), "r1"), Plan(_spec([1, 2, 3]), "r1")
    store.apply(_results(old))
    store.apply(_results(new))
    ledger = RunLedger(store, "plans", "r1", new.expected, plan=new.fingerprint)
    assert ledger.status().complete and ledger.status().succeeded == 3
    # A late duplicate without a plan (an old body) never takes a row over.
    store.apply([r.model_copy(update={"plan": None, "status": "failed", "output": None, "error": ErrorInfo(type="E", message="x")}) for r in _results(old)][:1])
    assert ledger.status().succeeded == 3
