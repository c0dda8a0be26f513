"""The drain operator's adaptive pace options: the default is the controller's, a bad tolerance fails
at parse time, and the option reaches the operator through the task group. Parse-only (no SQS)."""

from __future__ import annotations

import pytest

from tests.unit.airflow.test_task_group import build


def test_the_operators_default_tolerance_is_the_controllers():
    import inspect

    from batchq.airflow.operators.drain import ResultsDrainOperator
    from batchq.drain.pace import DEFAULT_LATENCY_TOLERANCE

    default = inspect.signature(ResultsDrainOperator.__init__).parameters["latency_tolerance"].default
    assert default == DEFAULT_LATENCY_TOLERANCE


def test_latency_tolerance_reaches_the_drain_and_a_bad_one_fails_at_parse_time():
    _, group = build(drain_kwargs={"latency_tolerance": 1.5})
    assert group.drain.latency_tolerance == 1.5
    _, group = build(max_rate=50, drain_kwargs={"latency_tolerance": None})
    assert group.drain.latency_tolerance is None
    for bad in (1.0, 0.8, "fast"):
        with pytest.raises(ValueError, match="latency_tolerance"):
            build(drain_kwargs={"latency_tolerance": bad})
