"""Per-tenant lag (pure): the distribution across partitions and the slowest first, open ones ahead."""

from __future__ import annotations

from batchq.monitor.lag import describe_partition_lag, partition_lag


def test_slowest_first_with_open_partitions_ahead_and_the_distribution():
    rows = [
        {"partition": f"c{i:02d}", "outcome": "succeeded", "input_wait_s": 1.0, "time_to_last_s": float(i)} for i in range(1, 21)
    ] + [
        {"partition": "big", "outcome": "open", "input_wait_s": 50.0, "time_to_last_s": None},
        {"partition": "bad", "outcome": "failed", "input_wait_s": 2.0, "time_to_last_s": 30.0},
    ]
    lag = partition_lag(rows, slowest=4)
    assert [s["partition"] for s in lag["slowest"]] == ["big", "bad", "c20", "c19"]
    assert (lag["partitions"], lag["closed"], lag["failed"]) == (22, 21, 1)
    assert lag["time_to_last"]["count"] == 21 and lag["time_to_last"]["max"] == 30.0
    assert lag["time_to_last"]["p50"] == 11.0
    assert lag["input_wait"]["max"] == 50.0
    line = describe_partition_lag(lag)
    assert "21/22 closed, 1 failed" in line and "big (open)" in line
