"""SQL sink: the results table of the results store *is* the destination (the real-time system reads
``batchq_results``, or it is the demo's database). Writes go through the store's one ``apply``
transaction, so results and the run ledger commit together; the drainer sees that ``sink.store`` is
its own store and calls ``apply`` once."""

from __future__ import annotations

from collections.abc import Sequence

from batchq.messages import WorkResult
from batchq.store import ResultsStore


class SqlSink:
    """A :class:`~batchq.drain.sink.Sink` writing through a :class:`~batchq.store.ResultsStore`.

    :param store: the results store whose ``batchq_results`` table receives the results.
    """

    def __init__(self, store: ResultsStore):
        self.store = store
        self.description = store.description

    def write(self, results: Sequence[WorkResult]) -> None:
        self.store.apply(results, ())

    def close(self) -> None:
        self.store.close()

    def __repr__(self) -> str:
        return f"SqlSink({self.description})"
