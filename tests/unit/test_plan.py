"""Planning properties (hypothesis): shards partition the product exactly, exclusions hold, the expected
count is exact, keys are unique within a run, stable across re-plans and different across runs, and
every body is a valid WorkPayload of its combination. Checked against a brute-force product."""

from __future__ import annotations

import itertools
import json
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchq.messages import parse_payload

from batchq.spec import BatchSpec
from batchq.errors import SpecError
from batchq.plan import Plan, Shard, idempotency_key, shard_count

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalar = st.one_of(st.integers(-3, 3), st.text("abc", min_size=0, max_size=2), st.booleans(), st.sampled_from([0.5, -1.25]))


def _unique_typed(values):
    out, seen = [], set()
    for v in values:
        marker = (type(v), v)
        if marker not in seen:
            seen.add(marker)
            out.append(v)
    return out


@st.composite
def specs(draw):
    n_dims = draw(st.integers(1, 4))
    dims = {}
    for d in range(n_dims):
        values = _unique_typed(draw(st.lists(scalar, min_size=1, max_size=5)))
        dims[f"d{d}"] = values
    names = list(dims)
    rules = []
    for _ in range(draw(st.integers(0, 3))):
        picked = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
        rule = {}
        for name in picked:
            chosen = draw(st.lists(st.sampled_from(dims[name]), min_size=1, max_size=2))
            rule[name] = chosen if len(chosen) > 1 else chosen[0]
        rules.append(rule)
    return BatchSpec.from_dict(
        {
            "name": draw(st.sampled_from(["b1", "batch-two"])),
            "job_type": "j",
            "dimensions": dims,
            "exclude": rules,
            "queues": {"input": "i", "results": "r"},
            "target_payloads_per_shard": draw(st.integers(1, 40)),
            "max_shards": draw(st.integers(1, 12)),
        }
    )


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b


def brute_force(spec: BatchSpec) -> list[dict]:
    """Every combination, in product order (last dimension fastest), minus those a rule matches."""
    names = [d.name for d in spec.dimensions]
    out = []
    for combo in itertools.product(*(d.values for d in spec.dimensions)):
        dims = dict(zip(names, combo))
        excluded = False
        for rule in spec.exclude:
            if all(any(_same(dims[k], w) for w in (v if isinstance(v, list) else [v])) for k, v in rule.items()):
                excluded = True
        if not excluded:
            out.append(dims)
    return out


def all_bodies(plan: Plan) -> list[tuple[str, str]]:
    return [item for shard in plan.shards() for item in plan.iter_bodies(shard)]


def dims_key(dims: dict) -> tuple:
    return tuple((k, type(v).__name__, v) for k, v in dims.items())


@FAST
@given(specs())
def test_shards_partition_the_index_space(spec):
    plan = Plan(spec, "run-1")
    shards = plan.shards()
    assert 1 <= len(shards) <= spec.max_shards
    assert len(shards) == min(shard_count(plan.expected, spec.target_payloads_per_shard, spec.max_shards), plan.size)
    assert shards[0].start == 0 and shards[-1].stop == plan.size
    for i, (a, b) in enumerate(zip(shards, shards[1:])):
        assert a.stop == b.start, "gap or overlap between shards"
    for i, s in enumerate(shards):
        assert s.index == i and s.start < s.stop
        assert Shard.from_dict(json.loads(json.dumps(s.to_dict()))) == s


@FAST
@given(specs())
def test_streamed_payloads_are_exactly_the_non_excluded_product(spec):
    plan = Plan(spec, "run-1")
    expected = brute_force(spec)
    streamed = [parse_payload(body).dims for _, body in all_bodies(plan)]
    # Same combinations, same order, none twice, none excluded.
    assert [dims_key(d) for d in streamed] == [dims_key(d) for d in expected]
    assert plan.expected == len(expected) == sum(plan.count_in(s) for s in plan.shards())


@FAST
@given(specs())
def test_exclusions_hold_in_every_shard(spec):
    plan = Plan(spec, "run-1")
    for shard in plan.shards():
        for _, body in plan.iter_bodies(shard):
            dims = parse_payload(body).dims
            for rule in spec.exclude:
                matched = all(
                    any(_same(dims[k], w) for w in (v if isinstance(v, list) else [v])) for k, v in rule.items()
                )
                assert not matched, f"{dims} matches exclusion {rule}"


@FAST
@given(specs(), st.text("xyz-:0123", min_size=1, max_size=12))
def test_keys_unique_stable_and_run_scoped(spec, run_id):
    first = [k for k, _ in all_bodies(Plan(spec, run_id))]
    assert len(first) == len(set(first)), "duplicate key within a run"
    again = [k for k, _ in all_bodies(Plan(spec, run_id))]
    assert again == first, "re-planning the same run changed keys"
    other = {k for k, _ in all_bodies(Plan(spec, run_id + "-other"))}
    assert not other & set(first), "a different run reused keys"


@FAST
@given(specs())
def test_bodies_are_valid_payloads_of_their_combination(spec):
    plan = Plan(spec, "manual__2026-11-29T07:00:00+00:00")
    for shard in plan.shards():
        for key, body in plan.iter_bodies(shard):
            p = parse_payload(body)
            assert p.key == key == idempotency_key(spec.name, plan.run_id, p.dims)
            assert p.batch == spec.name and p.run_id == plan.run_id and p.job_type == "j"
            assert list(p.dims) == [d.name for d in spec.dimensions]


@FAST
@given(specs(), st.data())
def test_index_to_combination_is_mixed_radix(spec, data):
    plan = Plan(spec, "r")
    index = data.draw(st.integers(0, plan.size - 1))
    combo = plan.combination(index)
    product = list(itertools.product(*(d.values for d in spec.dimensions)))
    assert tuple(combo.values()) == product[index]


def test_key_ignores_dimension_order_but_not_types():
    assert idempotency_key("b", "r", {"a": 1, "b": "x"}) == idempotency_key("b", "r", {"b": "x", "a": 1})
    assert idempotency_key("b", "r", {"a": 1}) != idempotency_key("b", "r", {"a": "1"})
    assert idempotency_key("b", "r", {"a": 1}) != idempotency_key("b", "r", {"a": True})
    assert idempotency_key("b", "r", {"a": 1}) != idempotency_key("b2", "r", {"a": 1})


def test_job_type_from_a_dimension():
    spec = BatchSpec.from_dict(
        {"name": "b", "dimensions": {"c": [1, 2], "job_type": ["segmentation", "classification"]},
         "queues": {"input": "i", "results": "r"}}
    )
    plan = Plan(spec, "r")
    job_types = [parse_payload(b).job_type for s in plan.shards() for _, b in plan.iter_bodies(s)]
    assert job_types == ["segmentation", "classification"] * 2


def test_a_million_payloads_plan_arithmetically():
    spec = BatchSpec.from_dict(
        {"name": "big", "job_type": "j", "queues": {"input": "i", "results": "r"},
         "dimensions": {"customer": [f"c{i}" for i in range(10_000)], "job": ["a", "b", "c", "d"], "period": list(range(25))},
         "exclude": [{"period": 0, "job": "a"}, {"customer": "c7"}]}
    )
    started = time.perf_counter()
    plan = Plan(spec, "r")
    shards = plan.shards()
    elapsed = time.perf_counter() - started
    assert plan.size == 1_000_000
    assert plan.expected == 1_000_000 - 10_000 - 100 + 1  # inclusion-exclusion, checked by hand
    assert len(shards) == 64 and shards[-1].stop == plan.size
    assert elapsed < 2.0, f"planning a million took {elapsed:.2f}s: is the product being materialised?"
    # Spot-check one deep index against its arithmetic combination.
    assert plan.combination(999_999) == {"customer": "c9999", "job": "d", "period": 24}
    assert math.isclose(sum(s.stop - s.start for s in shards), plan.size)


def test_planning_an_unresolved_spec_is_an_error():
    spec = BatchSpec.from_dict(
        {"name": "b", "job_type": "j", "queues": {"input": "i", "results": "r"}, "dimensions": {"c": "variable:x"}}
    )
    with pytest.raises(SpecError, match="resolve"):
        Plan(spec, "r")
    with pytest.raises(ValueError, match="run_id"):
        Plan(spec.resolve(lambda s: [1]), "")
