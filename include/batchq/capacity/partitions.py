"""Per-partition finish times: when each tenant's last payload is done, for a plan's fan-out order.

The drain simulator (:func:`batchq.capacity.simulate.simulate_run`) counts messages, not which message
is which. Per partition it needs one more assumption, stated here: **the queue is first in, first out
in aggregate** — the ``i``-th payload put on the queue is about the ``i``-th done. SQS standard queues
are only roughly FIFO (bench/partition_order.py measures how roughly), so this is a prediction to
compare, not a guarantee. With it, the simulated completion curve ``done(t)`` gives every payload's
finish time, and a partition finishes with its last payload in the send order.

The send order comes from the plan (:attr:`batchq.plan.Plan.order`): every shard is one fan-out task
sending its index range at the same rate, so the queue receives the shards' sequences interleaved
position by position.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from batchq.capacity.simulate import RunResult
from batchq.monitor.lag import percentiles


def send_sequence(plan: Any) -> list[str]:
    """Partition keys in the order the fan-out puts payloads on the queue: the shards in parallel, one
    payload of each in turn (memory: one reference per payload; a planning tool, not the fan-out)."""
    per_shard = [list(plan.iter_partitions(s)) for s in plan.shards()]
    out: list[str] = []
    for j in range(max((len(s) for s in per_shard), default=0)):
        for seq in per_shard:
            if j < len(seq):
                out.append(seq[j])
    return out


def completion_times(result: RunResult, payloads: int, fanout_rate: float) -> list[float]:
    """Finish time of the ``i``-th payload done, from the simulated curve: done(t) = arrived(t) −
    backlog(t), made monotone and interpolated linearly between the curve's samples."""
    times, done = [0.0], [0.0]
    for t, backlog, _consumers in result.curve:
        arrived = payloads if math.isinf(fanout_rate) else min(payloads, t * fanout_rate + 10)
        d = max(done[-1], min(payloads, arrived - backlog))
        times.append(t)
        done.append(d)
    out = []
    for i in range(1, payloads + 1):
        k = bisect.bisect_left(done, i)
        if k >= len(done):
            out.append(result.drain_s)
            continue
        t0, t1, d0, d1 = times[k - 1], times[k], done[k - 1], done[k]
        out.append(t1 if d1 == d0 else t0 + (t1 - t0) * (i - d0) / (d1 - d0))
    return out


def partition_finish_times(sequence: Sequence[str], finished: Sequence[float]) -> dict[str, float]:
    """``{partition: seconds}``: the finish time of each partition's last payload in ``sequence``."""
    last: dict[str, float] = {}
    for key, t in zip(sequence, finished):
        last[key] = t
    return last


def predict_partitions(plan: Any, result: RunResult, fanout_rate: float) -> dict[str, Any]:
    """Predicted per-partition finish times of ``plan`` for a simulated run ``result``:
    ``{"finish_s": {key: s}, "p50", "p95", "max", "count"}``."""
    seq = send_sequence(plan)
    finish = partition_finish_times(seq, completion_times(result, len(seq), fanout_rate))
    return {"finish_s": finish, **percentiles(finish.values(), (50, 95))}
