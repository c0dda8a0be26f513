"""Deterministic synthetic data for one customer: accounts with features, a churn label and a latent
segment. Seeded from (customer, period), so every worker and every retry sees the same rows."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any

from batchq.messages import WorkPayload
from batchq.worker.errors import PermanentError

FEATURES = ("tenure", "usage", "spend", "tickets")
_PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 30}


@dataclass(frozen=True)
class CustomerData:
    customer: str
    period: str
    rows: list[list[float]]  # standardised features, one row per account
    churned: list[int]
    segment: list[int]  # latent segment (ground truth, for checking the clustering)
    value: list[float]  # monthly value of each account


def seed_for(*parts: Any) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16], 16)


def customer_data(customer: str, period: str = "daily", rows: int = 180, segments: int = 3) -> CustomerData:
    """Accounts of ``customer``: ``segments`` Gaussian clusters in feature space; churn follows a hidden
    logistic model of the features."""
    if rows < 12:
        raise PermanentError(f"rows must be >= 12, got {rows}")
    rng = random.Random(seed_for(customer, period))
    centres = [[rng.uniform(-2.5, 2.5) for _ in FEATURES] for _ in range(segments)]
    weights = [rng.uniform(-1.5, 1.5) for _ in FEATURES]
    bias = rng.uniform(-0.5, 0.5)
    data, churned, segment, value = [], [], [], []
    for _ in range(rows):
        s = rng.randrange(segments)
        x = [c + rng.gauss(0.0, 0.8) for c in centres[s]]
        z = bias + sum(w * v for w, v in zip(weights, x)) + rng.gauss(0.0, 0.5)
        data.append(x)
        churned.append(1 if z > 0 else 0)
        segment.append(s)
        value.append(round(max(0.0, 50 + 20 * x[2] + rng.gauss(0, 5)), 2))
    return CustomerData(customer, period, data, churned, segment, value)


def for_payload(payload: WorkPayload) -> CustomerData:
    """The dataset a payload asks for: ``dims.customer`` (required), ``dims.period`` and
    ``params.lookback_days`` (more history, more rows)."""
    customer = payload.dims.get("customer", payload.dims.get("customer_id"))
    if customer is None:
        raise PermanentError(f"payload {payload.key} has no 'customer' dimension (dims: {sorted(payload.dims)})")
    period = str(payload.dims.get("period", "daily"))
    if period not in _PERIOD_DAYS:
        raise PermanentError(f"unknown period {period!r} (known: {sorted(_PERIOD_DAYS)})")
    lookback = payload.params.get("lookback_days", 90)
    if not isinstance(lookback, int) or isinstance(lookback, bool) or not 1 <= lookback <= 3650:
        raise PermanentError(f"params.lookback_days must be an integer 1..3650, got {lookback!r}")
    rows = int(min(600, 60 + 2 * lookback + 2 * _PERIOD_DAYS[period]))
    return customer_data(str(customer), period, rows)


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
