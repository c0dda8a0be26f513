"""Replay of quarantined results: after the cause is fixed (the receiver accepts them again, a column
was widened, the sink is reachable), re-apply them through the sink and mark them replayed.

Stray rows (a key the run's plan cannot produce, a stale plan's result) are never replayed: applied
again they would only be quarantined again. Idempotent: a replayed row is never picked again, and the sink upserts on ``key`` anyway. A row whose
body still does not pass :func:`~batchq.drain.checks.check_result` (or that the sink refuses again)
stays quarantined with its original reason, and is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from batchq.drain.checks import check_result
from batchq.drain.sink import Sink, SinkMisconfigured, SinkUnavailable
from batchq.errors import InvalidMessage
from batchq.messages import WorkResult, parse_result
from batchq.store import Store

#: Results written per sink call during a replay (one receive batch's worth).
REPLAY_CHUNK = 10


@dataclass
class ReplayReport:
    """What a replay did; ``not_replayed`` maps message ids to why they stayed quarantined."""

    replayed: int = 0
    not_replayed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "not_replayed": len(self.not_replayed), "reasons": dict(list(self.not_replayed.items())[:20])}


def replay_quarantine(
    store: Store,
    sink: Sink | None = None,
    *,
    batch: str | None = None,
    run_id: str | None = None,
    message_ids: Sequence[str] | None = None,
    limit: int | None = None,
) -> ReplayReport:
    """Re-apply not-yet-replayed quarantine rows through ``sink`` (default: none, the store's results table is the sink) and record
    them in the store, then mark them replayed. Transient sink errors and a misconfigured sink raise
    (nothing of the failing chunk is marked, so a later replay retries it)."""
    report = ReplayReport()
    ready: list[tuple[str, WorkResult]] = []
    for row in store.quarantined(batch, run_id, include_replayed=False, message_ids=message_ids, limit=limit, include_stray=False):
        try:
            result = parse_result(row["body"])
            check_result(result)
        except InvalidMessage as exc:
            report.not_replayed[row["message_id"]] = f"still invalid: {exc.reason}"
            continue
        except Exception as exc:  # noqa: BLE001 - e.g. RecursionError: same isolation as the drainer
            report.not_replayed[row["message_id"]] = f"still invalid: {type(exc).__name__}: {str(exc)[:300]}"
            continue
        ready.append((row["message_id"], result))
    for i in range(0, len(ready), REPLAY_CHUNK):
        chunk = ready[i : i + REPLAY_CHUNK]
        try:
            _apply(store, sink, [r for _, r in chunk])
            store.mark_replayed([m for m, _ in chunk])
            report.replayed += len(chunk)
        except (SinkUnavailable, SinkMisconfigured):
            raise
        except Exception:  # noqa: BLE001 - find the entries refused, one by one
            for mid, result in chunk:
                try:
                    _apply(store, sink, [result])
                    store.mark_replayed([mid])
                    report.replayed += 1
                except (SinkUnavailable, SinkMisconfigured):
                    raise
                except Exception as exc:  # noqa: BLE001
                    report.not_replayed[mid] = f"refused again: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    return report


def _apply(store: Store, sink: Sink | None, results: list[WorkResult]) -> None:
    if sink is not None and getattr(sink, "store", None) is not store:
        sink.write(results)
    store.apply(results, ())
