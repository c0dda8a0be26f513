"""``use_case_analysis``: which analytics use case pays off most for this customer."""

from __future__ import annotations

import statistics
from typing import Any

from batchq.examples.data import FEATURES, for_payload
from batchq.messages import WorkPayload
from batchq.worker.context import JobContext
from batchq.worker.registry import job

USE_CASES = ("churn_prevention", "upsell", "anomaly_review")


@job("use_case_analysis")
def analyse(payload: WorkPayload, ctx: JobContext) -> dict[str, Any]:
    data = for_payload(payload)
    n = len(data.rows)
    mean_value = statistics.fmean(data.value)
    # Churn prevention: value at risk from accounts that churn.
    at_risk = sum(v for v, c in zip(data.value, data.churned) if c)
    # Upsell: headroom of heavy users who spend below the median.
    usage_i, spend_i = FEATURES.index("usage"), FEATURES.index("spend")
    median_spend = statistics.median(r[spend_i] for r in data.rows)
    upsell = sum(1 for r in data.rows if r[usage_i] > 0.5 and r[spend_i] < median_spend) * mean_value * 0.2
    # Anomaly review: accounts more than 2.5 standard deviations from the mean on any feature.
    cols = list(zip(*data.rows))
    means = [statistics.fmean(c) for c in cols]
    sds = [statistics.pstdev(c) or 1.0 for c in cols]
    anomalies = sum(1 for r in data.rows if any(abs(x - m) / s > 2.5 for x, m, s in zip(r, means, sds)))
    scores = {
        "churn_prevention": round(at_risk / n, 3),
        "upsell": round(upsell / n, 3),
        "anomaly_review": round(anomalies * mean_value / n, 3),
    }
    ranking = sorted(scores, key=lambda u: (-scores[u], u))
    return {
        "rows": n,
        "scores": scores,
        "ranking": ranking,
        "recommended": ranking[0],
        "anomalies": anomalies,
        "model_version": payload.params.get("model_version"),
    }
