"""Per-partition finish-time prediction: the send order follows the plan's order and shards, the done
curve is inverted exactly, and under FIFO a partition finishes with its last payload."""

from __future__ import annotations

from batchq.capacity.partitions import completion_times, partition_finish_times, predict_partitions, send_sequence
from batchq.capacity.policies import LocalPolicy
from batchq.capacity.simulate import RunResult, simulate_run
from batchq.capacity.workload import ServiceTime, Workload
from batchq.plan import Plan
from batchq.spec import BatchSpec


def _plan(order, shards=1):
    return Plan(BatchSpec.from_dict({
        "name": "p", "job_type": "j", "queues": {"input": "i", "results": "o"},
        "dimensions": {"customer": ["big", "a", "b"], "item": list(range(4))},
        "exclude": [{"customer": ["a", "b"], "item": [2, 3]}],
        "partition_by": ["customer"], "order": order, "max_shards": shards, "target_payloads_per_shard": 1,
    }), "r")


def test_send_sequence_follows_the_order_and_interleaves_shards():
    assert send_sequence(_plan("dimension-major")) == ["big"] * 4 + ["a", "a", "b", "b"]
    assert send_sequence(_plan("interleave")) == ["big", "a", "b", "big", "a", "b", "big", "big"]
    # Two shards send at once: their sequences alternate on the queue.
    two = _plan("dimension-major", shards=2)
    # Shards are equal index ranges (12 combinations, 6 each), so exclusions make them unequal in payloads.
    assert [list(two.iter_partitions(s)) for s in two.shards()] == [["big"] * 4 + ["a", "a"], ["b", "b"]]
    assert send_sequence(two) == ["big", "b", "big", "b", "big", "big", "a", "a"]


def test_completion_times_invert_the_done_curve():
    # All arrived at once; backlog 10 → 6 at t=2 → 0 at t=4: payloads 1..4 finish by t=2, 5..10 by t=4.
    result = RunResult(4.0, 10, 1, 0, 0, 0, {}, [(0.0, 10, 1), (2.0, 6, 1), (4.0, 0, 1)])
    times = completion_times(result, 10, float("inf"))
    assert times[3] == 2.0 and times[9] == 4.0 and times[0] == 0.5
    assert partition_finish_times(["x", "y", "x"], [1.0, 2.0, 3.0]) == {"x": 3.0, "y": 2.0}


def test_interleave_predicts_the_small_customers_done_before_the_big_one():
    policy = LocalPolicy(concurrency=1, min_workers=1, max_workers=1, poll_interval_s=0.1, startup_s=0.0, prefetch=0)
    for order, small_first in (("interleave", True), ("dimension-major", False)):
        plan = _plan(order)
        result = simulate_run(Workload(payloads=plan.expected, service=ServiceTime.constant(1.0)), policy)
        finish = predict_partitions(plan, result, float("inf"))["finish_s"]
        assert (max(finish["a"], finish["b"]) < finish["big"]) is small_first, (order, finish)
