"""The example handlers do real, deterministic work."""

from __future__ import annotations

from datetime import datetime, timezone

import batchq.examples  # noqa: F401 - registers the three job types
import pytest
from batchq.examples.classification import accuracy, train_logistic
from batchq.examples.data import customer_data
from batchq.examples.segmentation import kmeans
from batchq.messages import WorkPayload
from batchq.worker import REGISTRY, Action, PermanentError, execute
from batchq.worker.context import JobContext


def payload(job_type: str, customer: str = "cust-0007", period: str = "weekly", **params) -> WorkPayload:
    return WorkPayload(batch="b", run_id="r", key=f"{job_type}-{customer}", job_type=job_type,
                       dims={"customer": customer, "period": period}, params={"lookback_days": 30, **params},
                       created_at=datetime(2026, 1, 1, tzinfo=timezone.utc))


def test_data_is_deterministic_per_customer_and_period():
    a, b = customer_data("cust-1", "daily"), customer_data("cust-1", "daily")
    assert a == b
    assert customer_data("cust-2", "daily").rows != a.rows
    assert customer_data("cust-1", "weekly").rows != a.rows


@pytest.mark.parametrize("job_type", ["classification", "segmentation", "use_case_analysis"])
def test_handlers_registered_and_repeatable(job_type):
    assert job_type in REGISTRY
    p = payload(job_type)
    first = REGISTRY.get(job_type)(p, JobContext(payload=p))
    assert first == REGISTRY.get(job_type)(p, JobContext(payload=p))  # a redelivery yields the same output
    other = payload(job_type, customer="cust-0100")
    assert REGISTRY.get(job_type)(other, JobContext(payload=other)) != first


def test_logistic_regression_learns_the_hidden_rule():
    d = customer_data("cust-42", "monthly", rows=300)
    w, b = train_logistic(d.rows[:225], d.churned[:225])
    base = max(sum(d.churned[225:]), 75 - sum(d.churned[225:])) / 75  # majority-class accuracy
    assert accuracy(d.rows[225:], d.churned[225:], w, b) > max(0.75, base)


def test_kmeans_recovers_the_latent_segments():
    d = customer_data("cust-9", "weekly", rows=240)
    centroids, assignment, iterations = kmeans(d.rows, 3, seed=1)
    assert len(centroids) == 3 and iterations >= 1
    # Each found cluster is dominated by one latent segment (purity).
    pure = sum(max(sum(1 for a, s in zip(assignment, d.segment) if a == j and s == t) for t in range(3)) for j in range(3))
    assert pure / len(d.rows) > 0.8


def test_use_case_analysis_ranks_all_use_cases():
    out = execute(payload("use_case_analysis").model_dump_json())
    o = out.result.output
    assert out.action is Action.ACK
    assert sorted(o["ranking"]) == ["anomaly_review", "churn_prevention", "upsell"]
    assert o["recommended"] == o["ranking"][0] and o["scores"][o["recommended"]] == max(o["scores"].values())


def test_bad_inputs_are_permanent():
    no_customer = WorkPayload(batch="b", run_id="r", key="k", job_type="segmentation", dims={"region": "eu"},
                              created_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    for p in (no_customer, payload("segmentation", k=0), payload("classification", period="hourly"),
              payload("classification", lookback_days="90")):
        out = execute(p.model_dump_json())
        assert out.action is Action.DEAD_LETTER and out.result.error.permanent, p
    with pytest.raises(PermanentError):
        customer_data("c", rows=3)
