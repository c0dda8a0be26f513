"""A queue's counts at one instant (:class:`QueueSnapshot`) and how GetQueueAttributes becomes one.

Pure: the SQS data plane (:mod:`batchq.sqs.data`) fetches the attributes, everything above reads snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: The GetQueueAttributes names a snapshot needs.
COUNT_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


@dataclass(frozen=True)
class QueueSnapshot:
    """Counts of one queue at one instant (``taken_at``: epoch seconds).

    SQS counters are approximate and can lag; never trust a single snapshot to mean "empty"
    (see :class:`InputWait`).
    """

    taken_at: float
    visible: int
    in_flight: int
    delayed: int
    dlq_visible: int | None = None

    @property
    def backlog(self) -> int:
        """Messages not yet finished: visible + in flight + delayed."""
        return self.visible + self.in_flight + self.delayed

    @property
    def is_empty(self) -> bool:
        return self.backlog == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueueSnapshot:
        return cls(
            taken_at=float(data["taken_at"]),
            visible=int(data["visible"]),
            in_flight=int(data["in_flight"]),
            delayed=int(data["delayed"]),
            dlq_visible=None if data.get("dlq_visible") is None else int(data["dlq_visible"]),
        )

    def describe(self) -> str:
        dlq = "" if self.dlq_visible is None else f", dlq={self.dlq_visible}"
        return f"visible={self.visible}, in_flight={self.in_flight}, delayed={self.delayed}{dlq}"


def snapshot_from_attributes(
    attributes: Mapping[str, Any], taken_at: float, dlq_attributes: Mapping[str, Any] | None = None
) -> QueueSnapshot:
    """Build a snapshot from GetQueueAttributes ``Attributes`` (missing counters read as 0)."""

    def count(attrs: Mapping[str, Any], name: str) -> int:
        return int(attrs.get(name, 0) or 0)

    return QueueSnapshot(
        taken_at=taken_at,
        visible=count(attributes, COUNT_ATTRIBUTES[0]),
        in_flight=count(attributes, COUNT_ATTRIBUTES[1]),
        delayed=count(attributes, COUNT_ATTRIBUTES[2]),
        dlq_visible=None if dlq_attributes is None else count(dlq_attributes, COUNT_ATTRIBUTES[0]),
    )
