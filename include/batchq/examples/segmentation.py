"""``segmentation``: k-means clustering of a customer's accounts."""

from __future__ import annotations

import random
from typing import Any

from batchq.examples.data import for_payload, seed_for
from batchq.messages import WorkPayload
from batchq.worker.context import JobContext
from batchq.worker.errors import PermanentError
from batchq.worker.registry import job


def _dist2(a: list[float], b: list[float]) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b))


def kmeans(points: list[list[float]], k: int, seed: int, max_iter: int = 50) -> tuple[list[list[float]], list[int], int]:
    """Lloyd's algorithm with k-means++ seeding. Returns (centroids, assignment, iterations)."""
    rng = random.Random(seed)
    centroids = [list(rng.choice(points))]
    while len(centroids) < k:
        d2 = [min(_dist2(p, c) for c in centroids) for p in points]
        total = sum(d2)
        r, acc = rng.uniform(0, total), 0.0
        for p, w in zip(points, d2):
            acc += w
            if acc >= r:
                centroids.append(list(p))
                break
        else:
            centroids.append(list(points[-1]))
    assignment = [-1] * len(points)
    for iteration in range(1, max_iter + 1):
        new = [min(range(k), key=lambda j: _dist2(p, centroids[j])) for p in points]
        if new == assignment:
            return centroids, assignment, iteration
        assignment = new
        for j in range(k):
            members = [p for p, a in zip(points, assignment) if a == j]
            if members:
                centroids[j] = [sum(col) / len(members) for col in zip(*members)]
    return centroids, assignment, max_iter


@job("segmentation")
def segment(payload: WorkPayload, ctx: JobContext) -> dict[str, Any]:
    k = payload.params.get("k", 3)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 20:
        raise PermanentError(f"params.k must be an integer 1..20, got {k!r}")
    data = for_payload(payload)
    centroids, assignment, iterations = kmeans(data.rows, k, seed_for(data.customer, data.period, "kmeans"))
    inertia = sum(_dist2(p, centroids[a]) for p, a in zip(data.rows, assignment))
    sizes = [assignment.count(j) for j in range(k)]
    value = [round(sum(v for v, a in zip(data.value, assignment) if a == j) / max(1, sizes[j]), 2) for j in range(k)]
    return {
        "algorithm": "kmeans",
        "k": k,
        "rows": len(data.rows),
        "iterations": iterations,
        "sizes": sizes,
        "inertia": round(inertia, 3),
        "avg_value": value,
        "centroids": [[round(c, 3) for c in centroid] for centroid in centroids],
    }
