"""The capacity planner's pure parts: policies against hand-computed cases, the simulator, schedule and cost."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from batchq import capacity
from batchq.capacity import (
    EcsPolicy,
    KedaPolicy,
    LambdaPolicy,
    LambdaProvisionedPolicy,
    LocalPolicy,
    LocalScaling,
    Observation,
    Prices,
    ServiceTime,
    Workload,
    plan_capacity,
    render_svg,
    runs_per_month,
    simulate_run,
    smallest_max_meeting,
)
from batchq.sqs.snapshot import QueueSnapshot
from batchq.worker import scaling

MINUTE = ServiceTime.constant(60)


# -- Lambda standard mode: hand-computed ramps ----------------------------------------------------------
# Every payload takes exactly 60 s and batches hold one message, so in minute k (k = 0, 1, ...) the ESM
# runs L_k = min(cap, 5 + 300 k) invocations, each finishing one payload at the end of the minute.


def test_lambda_ramp_that_never_reaches_the_cap():
    # 5 + 305 + 605 = 915 payloads: done at the end of minute 2, concurrency 605 < 1,250.
    r = simulate_run(Workload(915, MINUTE), LambdaPolicy(batch_size=1))
    assert r.drain_s == 180.0
    assert r.peak_consumers == 605
    assert r.invocations == 915


def test_lambda_ramp_that_reaches_the_reserved_concurrency():
    # cap 400: 5, 305, 400, 400 → 1,110 payloads in 4 minutes; one more needs a fifth.
    policy = LambdaPolicy(batch_size=1, reserved_concurrency=400)
    assert simulate_run(Workload(1110, MINUTE), policy).drain_s == 240.0
    r = simulate_run(Workload(1111, MINUTE), policy)
    assert r.drain_s == 300.0 and r.peak_consumers == 400


def test_lambda_cap_from_maximum_concurrency():
    # MaximumConcurrency 100 (below reserved 400 and the ESM's 1,250): 5, 100, 100 → 205 in 3 minutes.
    policy = LambdaPolicy(batch_size=1, maximum_concurrency=100, reserved_concurrency=400)
    assert policy.cap == 100
    assert simulate_run(Workload(205, MINUTE), policy).drain_s == 180.0
    assert simulate_run(Workload(206, MINUTE), policy).drain_s == 240.0


def test_lambda_batch_runs_its_records_one_after_the_other():
    # 50 payloads of 2 s, batches of 10: 5 invocations of 20 s from t=0, all within the initial 5.
    r = simulate_run(Workload(50, ServiceTime.constant(2)), LambdaPolicy(batch_size=10, memory_mb=2048))
    assert r.drain_s == 20.0 and r.invocations == 5
    plan = plan_capacity(Workload(50, ServiceTime.constant(2)), LambdaPolicy(batch_size=10, memory_mb=2048), runs=1)
    assert plan.cost_per_run["lambda_gb_seconds"] == pytest.approx(2 * 100)  # 2 GB × 100 s
    assert plan.cost_per_run["compute_usd"] == pytest.approx(200 * Prices().lambda_gb_second + 5 * 0.2 / 1e6)


def test_lambda_provisioned_starts_at_min_pollers_times_ten():
    # 2 pollers → 20 concurrent from t=0; 20 payloads of 60 s → one minute, 21 → two.
    policy = LambdaProvisionedPolicy(batch_size=1, min_pollers=2, max_pollers=10)
    assert policy.cap == 100
    assert simulate_run(Workload(20, MINUTE), policy).drain_s == 60.0
    assert simulate_run(Workload(21, MINUTE), policy).drain_s == 120.0


def test_lambda_batching_window_waits_for_a_full_batch_while_the_fanout_runs():
    # 20 payloads at 1 message/s go out as two SendMessageBatch calls of ten (t=0, t=10). Batches of 20
    # with a 30 s window: the poller waits for the second call, then one invocation runs 20 × 1 s.
    w = Workload(20, ServiceTime.constant(1), fanout_rate=1.0)
    windowed = simulate_run(w, LambdaPolicy(batch_size=20, batching_window_s=30))
    assert windowed.invocations == 1 and windowed.drain_s == 30.0
    # Without a window each call's ten start at once: two invocations of 10 s.
    eager = simulate_run(w, LambdaPolicy(batch_size=20))
    assert eager.invocations == 2 and eager.drain_s == 20.0


# -- local: the supervisor's own rule ---------------------------------------------------------------------


def test_supervisor_and_planner_share_one_rule():
    from batchq.worker.supervisor import Supervisor

    assert scaling.desired_workers is capacity.desired_workers
    sup = Supervisor(None, "q", ["true"], min_workers=0, max_workers=3, backlog_per_worker=10,
                     scale_down_cooldown_s=5, snapshot=lambda: QueueSnapshot(0, 25, 0, 0))
    assert isinstance(sup.rule, LocalScaling)
    rule = LocalScaling(10, 0, 3, 5)
    assert rule.target(25, 0, 0, 0.0) == (3, 3)
    assert rule.target(5, 0, 3, 1.0) == (1, 3)  # lower target held back for the cooldown
    assert rule.target(5, 0, 3, 6.0) == (1, 1)


def test_local_policy_hand_computed():
    # 40 payloads of 1 s; 2 workers × 2 threads (backlog 40 / 10 → 4, capped at 2), ready 0.5 s after
    # the first tick: ten rounds of four → 10.5 s.
    policy = LocalPolicy(max_workers=2, concurrency=2, backlog_per_worker=10, poll_interval_s=1, startup_s=0.5)
    r = simulate_run(Workload(40, ServiceTime.constant(1)), policy)
    assert r.drain_s == pytest.approx(10.5)
    assert r.peak_consumers == 2


def test_local_receives_batch_up_to_ten_on_a_deep_queue():
    policy = LocalPolicy(min_workers=1, max_workers=1, concurrency=10, startup_s=0)
    r = simulate_run(Workload(100, ServiceTime.constant(0.01)), policy)
    assert r.requests["fanout_send"] == 10
    assert r.requests["receive"] == 10
    assert r.requests["delete"] == r.requests["result_send"] <= 20


def test_smallest_max_search():
    # 100 payloads of 10 s, one thread per worker, one worker per message: drain = 10 × ceil(100 / m).
    policy = LocalPolicy(max_workers=2, concurrency=1, backlog_per_worker=1, poll_interval_s=1, startup_s=0)
    w = Workload(100, ServiceTime.constant(10))
    assert simulate_run(w, policy.with_max(10)).drain_s == 100.0
    assert smallest_max_meeting(w, policy, deadline_s=100, runs=2) == 10
    assert smallest_max_meeting(w, policy, deadline_s=5, runs=2, upper=50) is None


# -- KEDA / ECS controllers ----------------------------------------------------------------------------


def test_keda_activation_then_hpa_step_limits():
    ctrl = KedaPolicy(max_replicas=20, queue_length=100, scale_up_pods=4, scale_up_percent=100).controller()
    # t=0: KEDA activates 0 → 1, the HPA wants 10 but may add max(4, 100 %) → 5.
    assert ctrl.target(Observation(0, 1000, 0, 0)) == 5
    assert ctrl.target(Observation(5, 1000, 0, 5)) == 5  # between HPA syncs nothing changes
    assert ctrl.target(Observation(15, 1000, 0, 5)) == 10
    # backlog falls: the stabilization window keeps the highest wish of the last 300 s
    assert ctrl.target(Observation(30, 100, 0, 10)) == 10
    assert ctrl.target(Observation(400, 100, 0, 10)) == 1


def test_ecs_scales_out_after_three_datapoints_then_cools_down():
    ctrl = EcsPolicy(max_tasks=20, min_tasks=1, backlog_per_task=100, alarm_datapoints=3,
                     scale_out_cooldown_s=300).controller()
    assert ctrl.target(Observation(0, 1000, 0, 1)) == 1
    assert ctrl.target(Observation(60, 1000, 0, 1)) == 1
    assert ctrl.target(Observation(120, 1000, 0, 1)) == 10
    for t in (180, 240, 300, 360):
        assert ctrl.target(Observation(t, 2000, 0, 10)) == 10  # cooldown until 420
    assert ctrl.target(Observation(420, 2000, 0, 10)) == 20


# -- service time, schedule, determinism -------------------------------------------------------------------


def test_percentiles_give_a_lognormal_through_them():
    st = ServiceTime.from_percentiles(2.0, 6.0)
    rng = random.Random(7)
    draws = sorted(st.draw(rng) for _ in range(20000))
    assert statistics.median(draws) == pytest.approx(2.0, rel=0.05)
    assert draws[int(0.95 * len(draws))] == pytest.approx(6.0, rel=0.07)
    with pytest.raises(ValueError, match="p50 <= p95"):
        ServiceTime.from_percentiles(5, 2)
    with pytest.raises(ValueError, match="no usable durations"):
        ServiceTime.empirical([])


def test_runs_per_month():
    assert runs_per_month("0 7 * * *") == pytest.approx(365 / 12)
    assert runs_per_month("@daily") == pytest.approx(365 / 12)
    assert runs_per_month("0 7 * * 1-5") == pytest.approx(261 / 12)  # 2027: 52 weeks and a Friday
    assert runs_per_month("*/15 * * * *") == pytest.approx(96 * 365 / 12)
    assert runs_per_month("0 7 1 * *") == 1.0
    assert runs_per_month("0 7 1 * mon") > 4  # both day fields restricted: either matches
    for bad in ("0 7 * *", "61 * * * *", "x * * * *"):
        with pytest.raises(ValueError, match="schedule"):
            runs_per_month(bad)


def test_simulation_is_deterministic_per_seed():
    w = Workload(300, ServiceTime.from_percentiles(1, 3), fanout_rate=50)
    policy = KedaPolicy(max_replicas=5, queue_length=20, startup_s=3, polling_interval_s=5)
    a, b, c = simulate_run(w, policy, seed=1), simulate_run(w, policy, seed=1), simulate_run(w, policy, seed=2)
    assert a.drain_s == b.drain_s and a.curve == b.curve
    assert a.drain_s != c.drain_s


def test_plan_summary_curve_cost_and_svg():
    w = Workload(400, ServiceTime.from_percentiles(1, 3), fanout_rate=100)
    plan = plan_capacity(w, LocalPolicy(max_workers=4, backlog_per_worker=20, poll_interval_s=1, startup_s=1),
                         runs=10, deadline_s=60, runs_per_month_=30)
    assert plan.drain_p50_s <= plan.drain_p95_s <= plan.drain_max_s
    assert plan.peak_backlog > 0 and plan.peak_consumers == 4
    assert plan.curve[-1][1] == 0 and plan.curve[0][0] == 0
    assert plan.deadline_met is (plan.drain_p95_s <= 60)
    assert plan.cost_per_month["runs_usd"] == pytest.approx(30 * plan.cost_per_run["total_usd"])
    total = sum(plan.requests_per_run.values())
    assert plan.cost_per_run["sqs_usd"] == pytest.approx(total * 0.40 / 1e6)
    svg = render_svg(plan.curve, title="t <&>", deadline_s=60)
    assert svg.startswith("<svg") and "polyline" in svg and "&lt;&amp;&gt;" in svg


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="payloads"):
        Workload(0, MINUTE)
    with pytest.raises(ValueError, match="fan-out"):
        Workload(1, MINUTE, fanout_rate=0)
    with pytest.raises(ValueError, match="min_workers"):
        LocalPolicy(min_workers=3, max_workers=1).controller()
    with pytest.raises(ValueError, match="does not drain"):
        # scale to zero is impossible to leave: max 0 workers
        simulate_run(Workload(1, MINUTE), LocalPolicy(max_workers=0), seed=0, max_time_s=3600)
    assert math.isinf(Workload(1, MINUTE).fanout_rate)
