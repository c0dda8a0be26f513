"""What a run is: how many payloads, how long each takes, how fast they are enqueued."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceTime:
    """Per-payload processing time (seconds): a constant, a log-normal, or observed samples.

    :param constant_s: every payload takes this long.
    :param mu: log-normal location (``ln`` of the median).
    :param sigma: log-normal shape.
    :param samples: observed durations (e.g. from a previous run's ledger), drawn with replacement.
    """

    constant_s: float | None = None
    mu: float | None = None
    sigma: float | None = None
    samples: tuple[float, ...] = ()

    @classmethod
    def constant(cls, seconds: float) -> ServiceTime:
        if not seconds > 0:
            raise ValueError(f"seconds per payload must be > 0, got {seconds}")
        return cls(constant_s=float(seconds))

    @classmethod
    def lognormal(cls, mu: float, sigma: float) -> ServiceTime:
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        return cls(mu=float(mu), sigma=float(sigma))

    @classmethod
    def from_percentiles(cls, p50: float, p95: float) -> ServiceTime:
        """A log-normal through the given median and 95th percentile."""
        if not 0 < p50 <= p95:
            raise ValueError(f"need 0 < p50 <= p95, got p50={p50}, p95={p95}")
        return cls.lognormal(math.log(p50), math.log(p95 / p50) / 1.6448536269514722)

    @classmethod
    def empirical(cls, samples: Sequence[float]) -> ServiceTime:
        kept = tuple(float(s) for s in samples if s is not None and s >= 0)
        if not kept:
            raise ValueError("no usable durations (need at least one started/finished pair)")
        return cls(samples=kept)

    def draw(self, rng: random.Random) -> float:
        if self.constant_s is not None:
            return self.constant_s
        if self.samples:
            return self.samples[rng.randrange(len(self.samples))]
        assert self.mu is not None and self.sigma is not None
        return rng.lognormvariate(self.mu, self.sigma)

    @property
    def mean_s(self) -> float:
        if self.constant_s is not None:
            return self.constant_s
        if self.samples:
            return statistics.fmean(self.samples)
        assert self.mu is not None and self.sigma is not None
        return math.exp(self.mu + self.sigma**2 / 2)

    def describe(self) -> str:
        if self.constant_s is not None:
            return f"constant {self.constant_s:g}s"
        if self.samples:
            return f"empirical, {len(self.samples)} samples, mean {self.mean_s:.3g}s"
        return f"log-normal median {math.exp(self.mu or 0):.3g}s sigma {self.sigma:.3g} (mean {self.mean_s:.3g}s)"


@dataclass(frozen=True)
class Workload:
    """One run to plan.

    :param payloads: messages the run fans out.
    :param service: per-payload processing time.
    :param fanout_rate: messages/s the fan-out puts on the queue (``inf``: all at once).
    :param overhead_s: per-message SQS overhead a slot spends besides the handler (receive, result
        send, delete round trips shared by a batch): ~0 on AWS for long jobs, tens of ms on moto.
    :param payload_bytes: average body size (SQS bills each 64 KiB of a request as one request).
    :param result_bytes: average result size.
    """

    payloads: int
    service: ServiceTime
    fanout_rate: float = math.inf
    overhead_s: float = 0.0
    payload_bytes: int = 600
    result_bytes: int = 800

    def __post_init__(self) -> None:
        if self.payloads < 1:
            raise ValueError(f"payloads must be >= 1, got {self.payloads}")
        if not self.fanout_rate > 0:
            raise ValueError(f"fan-out rate must be > 0 messages/s, got {self.fanout_rate}")
        if self.overhead_s < 0:
            raise ValueError(f"overhead must be >= 0, got {self.overhead_s}")
