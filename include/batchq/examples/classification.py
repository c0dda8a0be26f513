"""``classification``: churn prediction with logistic regression trained by gradient descent."""

from __future__ import annotations

from typing import Any

from batchq.examples.data import FEATURES, for_payload, sigmoid
from batchq.messages import WorkPayload
from batchq.worker.context import JobContext
from batchq.worker.registry import job


def train_logistic(x: list[list[float]], y: list[int], epochs: int = 150, lr: float = 0.3) -> tuple[list[float], float]:
    """Full-batch gradient descent on the log loss. Returns (weights, bias)."""
    n, d = len(x), len(x[0])
    w, b = [0.0] * d, 0.0
    for _ in range(epochs):
        gw, gb = [0.0] * d, 0.0
        for row, label in zip(x, y):
            err = sigmoid(b + sum(wi * xi for wi, xi in zip(w, row))) - label
            gb += err
            for j in range(d):
                gw[j] += err * row[j]
        w = [wi - lr * g / n for wi, g in zip(w, gw)]
        b -= lr * gb / n
    return w, b


def accuracy(x: list[list[float]], y: list[int], w: list[float], b: float) -> float:
    hits = sum(int((sigmoid(b + sum(wi * xi for wi, xi in zip(w, row))) >= 0.5) == bool(label)) for row, label in zip(x, y))
    return hits / len(y) if y else 0.0


@job("classification")
def classify(payload: WorkPayload, ctx: JobContext) -> dict[str, Any]:
    data = for_payload(payload)
    cut = int(len(data.rows) * 0.75)  # deterministic split: rows are already in random order
    w, b = train_logistic(data.rows[:cut], data.churned[:cut], epochs=int(payload.params.get("epochs", 100)))
    return {
        "model": "logistic_regression",
        "model_version": payload.params.get("model_version"),
        "rows": len(data.rows),
        "churn_rate": round(sum(data.churned) / len(data.churned), 4),
        "train_accuracy": round(accuracy(data.rows[:cut], data.churned[:cut], w, b), 4),
        "test_accuracy": round(accuracy(data.rows[cut:], data.churned[cut:], w, b), 4),
        "weights": {name: round(v, 4) for name, v in zip(FEATURES, w)},
        "bias": round(b, 4),
    }
