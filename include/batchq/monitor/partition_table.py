"""The partitions of one run as the Batch tab and ``batchq ledger --partitions`` show them: pure, no I/O.

The drain pushes the partitions XCom (:func:`batchq.store.partitions.partition_rows_xcom`): fields once,
one row per partition. :class:`PartitionTable` reads it tolerantly and answers the view's questions:
how many are done, pending, failed; the per-tenant lag (:func:`batchq.monitor.lag.partition_lag`); and
one sorted page of rows. Sorting and paging are done here, server-side, from query parameters: the page
holds at most :data:`MAX_PER_PAGE` rows whatever the number of customers, and needs no script.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from batchq.monitor.lag import partition_lag

#: Columns a page may be sorted by (query parameter ``psort``), and the default.
SORTABLE = ("partition", "expected", "succeeded", "failed", "pending", "outcome", "closed_at", "input_wait_s", "time_to_last_s")
DEFAULT_SORT = "time_to_last_s"
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 500


@dataclass(frozen=True)
class PartitionPage:
    """One page of a sorted partition table.

    :param rows: dicts with every :data:`SORTABLE` field.
    :param page: 1-based page number (clamped into range).
    :param pages: number of pages.
    """

    rows: list[dict[str, Any]]
    sort: str
    descending: bool
    page: int
    pages: int
    per_page: int
    total: int


class PartitionTable:
    """The partitions XCom of one run.

    :param raw: ``{"fields": [...], "rows": [[...], ...]}``; anything else makes an empty table.
    """

    def __init__(self, raw: Any):
        self.rows: list[dict[str, Any]] = []
        if isinstance(raw, Mapping) and isinstance(raw.get("fields"), list) and isinstance(raw.get("rows"), list):
            fields = [str(f) for f in raw["fields"]]
            for row in raw["rows"]:
                if isinstance(row, list) and len(row) == len(fields):
                    self.rows.append(dict(zip(fields, row)))

    def __len__(self) -> int:
        return len(self.rows)

    def counts(self) -> dict[str, int]:
        """Partitions done (closed within tolerance), failed (closed beyond it), pending (open)."""
        outcomes = [r.get("outcome") for r in self.rows]
        return {
            "partitions": len(self.rows),
            "done": outcomes.count("succeeded"),
            "failed": outcomes.count("failed"),
            "pending": sum(1 for o in outcomes if o not in ("succeeded", "failed")),
        }

    def lag(self) -> dict[str, Any]:
        return partition_lag(self.rows)

    def page(self, sort: str | None = None, descending: bool | None = None, page: int = 1, per_page: int = DEFAULT_PER_PAGE) -> PartitionPage:
        """One page, sorted by ``sort`` (unknown → :data:`DEFAULT_SORT`, slowest first); rows whose
        value is missing sort last in either direction (an open partition has no time to last result:
        it goes first when sorting by it descending, as the slowest of all)."""
        sort = sort if sort in SORTABLE else DEFAULT_SORT
        if descending is None:
            descending = sort in ("time_to_last_s", "input_wait_s", "failed", "pending")
        per_page = max(1, min(int(per_page), MAX_PER_PAGE))
        present = [r for r in self.rows if r.get(sort) is not None]
        missing = [r for r in self.rows if r.get(sort) is None]
        present.sort(key=lambda r: (_sort_key(r[sort]), str(r.get("partition"))), reverse=descending)
        ordered = (missing + present) if (descending and sort == "time_to_last_s") else (present + missing)
        pages = max(1, -(-len(ordered) // per_page))
        page = max(1, min(int(page), pages))
        start = (page - 1) * per_page
        return PartitionPage(ordered[start : start + per_page], sort, descending, page, pages, per_page, len(ordered))


def _sort_key(value: Any) -> tuple[int, Any]:
    # Numbers before text so a mixed column never raises.
    return (0, value) if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, str(value))
