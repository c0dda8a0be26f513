"""Partitions in the spec and the plan: ``partition_by`` is validated with readable messages, the
expected count of every partition is exact without walking the product (checked against a brute-force
walk, hypothesis), ``order`` permutes what a shard sends but never which keys, and ``fair_queue``
gives every message its partition key."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchq.errors import SpecError
from batchq.messages import parse_payload
from batchq.partitions import partition_key
from batchq.plan import Plan
from batchq.spec import BatchSpec

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUEUES = {"input": "in", "results": "out"}


def _spec(**over):
    data = {
        "name": "b",
        "job_type": "j",
        "queues": QUEUES,
        "dimensions": {"customer": ["a", "b", "c"], "period": [1, 2], "kind": ["x", "y"]},
        "partition_by": ["customer"],
    }
    data.update(over)
    return BatchSpec.from_dict(data)


# -- validation ------------------------------------------------------------------------------------------


def test_partition_by_names_an_unknown_dimension():
    with pytest.raises(SpecError, match=r"partition_by\[0\]: unknown dimension 'tenant' \(known: \['customer', 'period', 'kind'\]\)"):
        _spec(partition_by=["tenant"])


def test_partition_by_accepts_one_name_and_refuses_duplicates():
    assert _spec(partition_by="customer").partition_by == ("customer",)
    with pytest.raises(SpecError, match="listed twice"):
        _spec(partition_by=["customer", "customer"])


def test_a_value_with_the_separator_is_refused():
    with pytest.raises(SpecError, match=r"dimension 'customer' value 'a\|b' contains '\|'"):
        _spec(dimensions={"customer": ["a|b", "c"], "period": [1]})


def test_order_and_fair_queue_need_partition_by():
    with pytest.raises(SpecError, match="order: needs partition_by"):
        _spec(partition_by=[], order="interleave")
    with pytest.raises(SpecError, match="fair_queue: needs partition_by"):
        _spec(partition_by=[], fair_queue=True)
    with pytest.raises(SpecError, match="order"):
        _spec(order="random")


def test_composite_key_joins_values_in_partition_by_order():
    plan = Plan(_spec(partition_by=["period", "customer"]), "r")
    assert partition_key({"customer": "a", "period": 2, "kind": "x"}, ["period", "customer"]) == "2|a"
    assert sorted(plan.partition_expected()) == sorted(f"{p}|{c}" for p in (1, 2) for c in "abc")
    assert set(plan.partition_expected().values()) == {2}


# -- expected per partition ------------------------------------------------------------------------------


@st.composite
def partitioned_specs(draw):
    n_dims = draw(st.integers(1, 4))
    dims = {f"d{i}": list(range(draw(st.integers(1, 4)))) for i in range(n_dims)}
    names = list(dims)
    by = draw(st.lists(st.sampled_from(names), min_size=1, max_size=n_dims, unique=True))
    rules = []
    for _ in range(draw(st.integers(0, 5))):
        named = draw(st.lists(st.sampled_from(names), min_size=1, max_size=n_dims, unique=True))
        rules.append({n: draw(st.lists(st.sampled_from(dims[n]), min_size=1, max_size=len(dims[n]), unique=True)) for n in named})
    order = draw(st.sampled_from([None, "interleave", "dimension-major"]))
    return BatchSpec.from_dict(
        {"name": "b", "job_type": "j", "queues": QUEUES, "dimensions": dims, "exclude": rules, "partition_by": by, "order": order}
    )


def _brute_force(spec):
    names = [d.name for d in spec.dimensions]
    counts = Counter()
    for combo in itertools.product(*(d.values for d in spec.dimensions)):
        dims = dict(zip(names, combo))
        if any(all(dims[n] in (v if isinstance(v, list) else [v]) for n, v in rule.items()) for rule in spec.exclude):
            continue
        counts[partition_key(dims, spec.partition_by)] += 1
    return dict(counts)


@FAST
@given(partitioned_specs())
def test_expected_per_partition_is_exact(spec):
    plan = Plan(spec, "r")
    truth = _brute_force(spec)
    assert plan.partition_expected() == truth
    assert plan._partition_expected_streamed() == truth
    assert sum(truth.values()) == plan.expected


@FAST
@given(partitioned_specs())
def test_order_changes_the_sequence_never_the_keys(spec):
    plan = Plan(spec, "r")
    base = Plan(spec.model_copy(update={"order": None}), "r")
    seen = [k for s in plan.shards() for k, _ in plan.iter_bodies(s)]
    assert len(seen) == len(set(seen)) == plan.expected
    assert set(seen) == {k for s in base.shards() for k, _ in base.iter_bodies(s)}


# -- order -----------------------------------------------------------------------------------------------


def _partition_sequence(spec):
    plan = Plan(spec, "r")
    return [group for s in plan.shards() for _, _, group in plan.iter_messages(s, grouped=True)]


def test_dimension_major_sends_one_partition_after_another():
    # customer is not the first dimension, so product order would interleave customers.
    spec = _spec(dimensions={"period": [1, 2], "customer": ["a", "b", "c"], "kind": ["x", "y"]}, order="dimension-major")
    seq = _partition_sequence(spec)
    assert seq == ["a"] * 4 + ["b"] * 4 + ["c"] * 4


def test_interleave_round_robins_the_partitions():
    seq = _partition_sequence(_spec(order="interleave"))
    assert seq == ["a", "b", "c"] * 4


def test_product_order_is_unchanged_without_order():
    spec = _spec(dimensions={"period": [1, 2], "customer": ["a", "b"]})
    plan = Plan(spec, "r")
    dims = [parse_payload(b).dims for s in plan.shards() for _, b in plan.iter_bodies(s)]
    assert dims == [{"period": 1, "customer": "a"}, {"period": 1, "customer": "b"}, {"period": 2, "customer": "a"}, {"period": 2, "customer": "b"}]


def test_grouped_messages_carry_the_partition_key_of_their_dims():
    spec = _spec(partition_by=["customer", "period"], order="interleave", exclude=[{"customer": "b", "period": 2}])
    plan = Plan(spec, "r")
    for shard in plan.shards():
        for key, body, group in plan.iter_messages(shard, grouped=True):
            payload = parse_payload(body)
            assert payload.key == key
            assert group == f"{payload.dims['customer']}|{payload.dims['period']}"
    assert plan.partition_expected() == {"a|1": 2, "a|2": 2, "b|1": 2, "c|1": 2, "c|2": 2}
