"""Once a repaired key's new result succeeded, its DLQ copies are stale: delete them (unless the repair
asked to keep the DLQ), so "DLQ > 0" alerts resolve. Every SQS call goes through :mod:`batchq.sqs`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchq.sqs import change_visibility, delete_messages, receive_messages

if TYPE_CHECKING:
    from batchq.store.results import ResultsStore


@dataclass
class PurgeReport:
    """DLQ copies of repaired keys that were deleted; messages looked at and left alone."""

    deleted: int = 0
    examined: int = 0
    kept: int = 0
    keys: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "examined": self.examined, "kept": self.kept, "keys": self.keys, "failed": len(self.failed)}


def _identity(body: str) -> tuple[Any, Any, Any]:
    try:
        raw = json.loads(body)
    except Exception:  # noqa: BLE001 - not JSON: not a copy of one of our payloads
        return None, None, None
    if not isinstance(raw, dict):
        return None, None, None
    return raw.get("batch"), raw.get("run_id"), raw.get("key")


def purge_repaired_dlq(
    client: Any,
    dlq_url: str,
    store: ResultsStore,
    batch: str,
    run_id: str,
    *,
    timeout_s: float = 300.0,
) -> PurgeReport:
    """Delete the DLQ copies of this run's repaired keys whose new result succeeded (repairs made with
    ``keep_dlq`` excepted), then record them purged.

    Every message is received, matched on (batch, run id, key) and either deleted or handed back at once
    (visibility 0) after the pass, so other DLQ messages are untouched. Makes no SQS call when there is
    nothing to purge.
    """
    candidates = store.dlq_purge_candidates(batch, run_id)
    report = PurgeReport(keys=len(candidates))
    if not candidates:
        return report
    repair_of = {key: repair_id for repair_id, key in candidates}
    wanted = {(batch, run_id, key) for key in repair_of}
    held: list[dict[str, Any]] = []
    deleted_by_repair: dict[int, int] = {}
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    # Other messages stay hidden for the whole pass (so each is looked at once), then are handed back.
    lease_s = int(min(timeout_s + 30, 12 * 3600))
    try:
        while time.monotonic() < deadline:
            msgs = [m for m in receive_messages(client, dlq_url, max_messages=10, wait_seconds=1, visibility_timeout=lease_s) if m["MessageId"] not in seen]
            if not msgs:
                break
            seen.update(m["MessageId"] for m in msgs)
            report.examined += len(msgs)
            stale = [m for m in msgs if _identity(m.get("Body", "")) in wanted]
            held += [m for m in msgs if m not in stale]
            if stale:
                failed = delete_messages(client, dlq_url, stale)
                report.failed.update(failed)
                for m in stale:
                    if m["MessageId"] not in failed:
                        report.deleted += 1
                        rid = repair_of[_identity(m["Body"])[2]]
                        deleted_by_repair[rid] = deleted_by_repair.get(rid, 0) + 1
    finally:
        if held:
            change_visibility(client, dlq_url, held, 0)  # hand the other messages back at once
        report.kept = len(held)
    # Every candidate is recorded purged: a key with no DLQ copy (a repair of a lost key) has nothing left.
    if not report.failed:
        store.mark_dlq_purged(candidates, deleted_by_repair)
    return report


__all__ = ["PurgeReport", "purge_repaired_dlq"]
