"""Plan membership in O(1): dims in the plan (same JSON types, not excluded) and the plan's key of them."""

from __future__ import annotations

from batchq.plan import Plan, idempotency_key
from batchq.spec import BatchSpec
from batchq.store.rules import PlanMembership


def make_plan() -> Plan:
    spec = BatchSpec.from_dict({
        "name": "members", "dimensions": {"n": [1, 2, 3], "flag": [True, False], "period": ["d", "w"]},
        "exclude": [{"n": 3, "period": "d"}], "job_type": "t", "queues": {"input": "in", "results": "out"},
    })
    return Plan(spec, "run-1", dag_id="dag")


def key(dims: dict, dag: str = "dag") -> str:
    return idempotency_key("members", "run-1", dims, dag)


def test_every_planned_key_is_a_member_and_nothing_else():
    plan = make_plan()
    members = PlanMembership(plan.spec.model_dump_json(), plan.run_id, plan.dag_id)
    assert members.fingerprint == plan.fingerprint
    planned = dict(b for s in plan.shards() for b in plan.iter_bodies(s))
    import json

    for k, body in planned.items():
        assert members.produces(k, json.loads(body)["dims"])
        assert members.produces(k, None)  # older workers: the key set
    ok = {"n": 1, "flag": True, "period": "d"}
    assert members.produces(key(ok), ok)
    for dims in (
        {"n": 3, "flag": True, "period": "d"},  # excluded
        {"n": 4, "flag": True, "period": "d"},  # not a value of n
        {"n": "1", "flag": True, "period": "d"},  # 1 and "1" differ
        {"n": 1, "flag": 1, "period": "d"},  # True and 1 differ
        {"n": 1.0, "flag": True, "period": "d"},  # 1 and 1.0 differ
        {"n": 1, "flag": True},  # a dimension missing
        {"n": 1, "flag": True, "period": "d", "x": 1},  # one too many
        {"n": [1], "flag": True, "period": "d"},  # unhashable
    ):
        assert not members.produces(key(dims), dims), dims
        assert not members.produces(key(dims), None), dims
    assert not members.produces(key(ok, dag="other"), ok)  # the dims are the plan's, the key is another DAG's
    assert not members.produces("0" * 32, ok)
