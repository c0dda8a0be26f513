"""Queue-level message age: CloudWatch's ``ApproximateAgeOfOldestMessage`` where the connection can read
it, else the age workers observed at receipt — and which one (``age_source``).

SQS itself has no "age of the oldest message" attribute; CloudWatch publishes it per queue (AWS only:
LocalStack/moto publish nothing, and many worker roles lack ``cloudwatch:GetMetricStatistics``). So the
probe tries once with a short timeout and a single attempt, and remembers a failure for the life of
the probe: a missing permission or an endpoint without CloudWatch costs one short call, not one per
poll. The only CloudWatch call of batchq is here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

log = logging.getLogger(__name__)

#: ``age_source`` values.
SOURCE_CLOUDWATCH = "cloudwatch"
SOURCE_WORKER_RECEIPT = "worker-receipt"
#: The metric's resolution is one minute; look a little further back so the latest point is found.
_WINDOW = timedelta(minutes=5)


class OldestAgeProbe:
    """Reads ``AWS/SQS ApproximateAgeOfOldestMessage`` (Maximum, 60 s periods) of a queue.

    :param client: a boto3 CloudWatch client; give it a short timeout and one attempt
        (e.g. ``batchq.sqs.client.single_attempt``), it is a probe.
    """

    def __init__(self, client: Any):
        self.client = client
        self.unavailable: str | None = None
        self.attempts = 0
        self._lock = threading.Lock()

    def oldest_age_s(self, queue_name: str, now: datetime | None = None) -> float | None:
        """The newest ``ApproximateAgeOfOldestMessage`` of ``queue_name`` in seconds; ``None`` when
        CloudWatch has no data point or cannot be read (then never asked again by this probe)."""
        with self._lock:
            if self.unavailable is not None:
                return None
            self.attempts += 1
        end = now or datetime.now(timezone.utc)
        try:
            resp = self.client.get_metric_statistics(
                Namespace="AWS/SQS",
                MetricName="ApproximateAgeOfOldestMessage",
                Dimensions=[{"Name": "QueueName", "Value": queue_name}],
                StartTime=end - _WINDOW,
                # a little past now: a point stamped this very second must not fall outside the range
                EndTime=end + timedelta(minutes=1),
                Period=60,
                Statistics=["Maximum"],
            )
        except Exception as exc:  # noqa: BLE001 - no permission, no endpoint, timeout: all mean "not here"
            with self._lock:
                self.unavailable = f"{type(exc).__name__}: {str(exc)[:200]}"
            log.info("CloudWatch message age unavailable (%s); using the age workers observe", self.unavailable)
            return None
        points = sorted(resp.get("Datapoints") or [], key=lambda p: p["Timestamp"])
        return float(points[-1]["Maximum"]) if points else None


def queue_age(cloudwatch_age_s: float | None, observed_age_s: float | None) -> dict[str, Any]:
    """Pure: the queue-level age to report and where it came from. CloudWatch's figure wins; else the
    age workers observed at receipt (a run's ``input_wait`` max); else nothing."""
    if cloudwatch_age_s is not None:
        return {"oldest_age_s": round(cloudwatch_age_s, 3), "age_source": SOURCE_CLOUDWATCH}
    if observed_age_s is not None:
        return {"oldest_age_s": round(observed_age_s, 3), "age_source": SOURCE_WORKER_RECEIPT}
    return {"oldest_age_s": None, "age_source": None}


def observed_age_s(lag: Mapping[str, Any]) -> float | None:
    """The oldest age workers saw at receipt in a run: the max of its input wait."""
    return (lag.get("input_wait") or {}).get("max")


__all__ = ["SOURCE_CLOUDWATCH", "SOURCE_WORKER_RECEIPT", "OldestAgeProbe", "observed_age_s", "queue_age"]
