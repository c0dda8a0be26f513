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


#: Messages one purge pass looks at, at most: a DLQ holding other runs' backlog (thousands) is not read
#: whole to find a few copies; what is left is said (``stopped_by``) and purged by a later pass.
DEFAULT_MAX_EXAMINED = 2000


@dataclass
class PurgeReport:
    """DLQ copies of repaired keys that were deleted; messages looked at and left alone; and what the
    pass left unexamined (``stopped_by``: ``"max_examined"`` or ``"timeout"``, else ``None``: the pass
    saw the whole DLQ)."""

    deleted: int = 0
    examined: int = 0
    kept: int = 0
    keys: int = 0
    #: repaired keys whose DLQ copy this pass did not find (all of them when it saw the whole DLQ: none left)
    keys_left: int = 0
    stopped_by: str | None = None
    failed: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "examined": self.examined, "kept": self.kept, "keys": self.keys, "keys_left": self.keys_left,
                "stopped_by": self.stopped_by, "failed": len(self.failed)}

    def describe(self) -> str:
        left = "" if self.stopped_by is None else f"; stopped by {self.stopped_by}: {self.keys_left} repaired key(s) may still have a DLQ copy (run the purge again)"
        return f"deleted {self.deleted} DLQ cop(ies) of {self.keys} repaired key(s); examined {self.examined}, left {self.kept} other message(s){left}"


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
    max_examined: int = DEFAULT_MAX_EXAMINED,
) -> PurgeReport:
    """Delete the DLQ copies of this run's repaired keys whose new result succeeded (repairs made with
    ``keep_dlq`` excepted), then record them purged.

    Every message is received, matched on (batch, run id, key) and either deleted at once or handed back
    (visibility 0) after the pass, so other DLQ messages are untouched. Only ids and receipt handles are
    kept, never bodies; at most ``max_examined`` messages are looked at. A pass that stopped early (cap
    or timeout) records only the keys it deleted, and says what it left. Makes no SQS call when there is
    nothing to purge.
    """
    if max_examined < 1:
        raise ValueError(f"max_examined must be >= 1, got {max_examined}")
    candidates = store.dlq_purge_candidates(batch, run_id)
    report = PurgeReport(keys=len(candidates))
    if not candidates:
        return report
    repair_of = {key: repair_id for repair_id, key in candidates}
    wanted = {(batch, run_id, key) for key in repair_of}
    held: list[dict[str, str]] = []  # other messages: id and receipt handle only
    deleted_keys: set[str] = set()
    deleted_by_repair: dict[int, int] = {}
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    # Other messages stay hidden for the whole pass (so each is looked at once), then are handed back.
    lease_s = int(min(timeout_s + 30, 12 * 3600))
    try:
        while True:
            if time.monotonic() >= deadline:
                report.stopped_by = "timeout"
                break
            if report.examined >= max_examined:
                report.stopped_by = "max_examined"
                break
            want = min(10, max_examined - report.examined)
            msgs = [m for m in receive_messages(client, dlq_url, max_messages=want, wait_seconds=1, visibility_timeout=lease_s) if m["MessageId"] not in seen]
            if not msgs:
                break
            seen.update(m["MessageId"] for m in msgs)
            report.examined += len(msgs)
            stale: list[dict[str, str]] = []
            stale_keys: dict[str, str] = {}
            for m in msgs:
                identity = _identity(m.get("Body", ""))
                handle = {"MessageId": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]}
                if identity in wanted:
                    stale.append(handle)
                    stale_keys[m["MessageId"]] = identity[2]
                else:
                    held.append(handle)
            del msgs  # bodies go now: only ids and receipt handles outlive one receive
            if stale:
                failed = delete_messages(client, dlq_url, stale)
                report.failed.update(failed)
                for h in stale:
                    if h["MessageId"] not in failed:
                        report.deleted += 1
                        key = stale_keys[h["MessageId"]]
                        deleted_keys.add(key)
                        rid = repair_of[key]
                        deleted_by_repair[rid] = deleted_by_repair.get(rid, 0) + 1
    finally:
        if held:
            change_visibility(client, dlq_url, held, 0)  # hand the other messages back at once
        report.kept = len(held)
    if report.stopped_by is None:
        # The whole DLQ was seen: every candidate is purged (a key with no DLQ copy has nothing left).
        done = candidates if not report.failed else [c for c in candidates if c[1] in deleted_keys]
    else:
        done = [c for c in candidates if c[1] in deleted_keys]
    report.keys_left = len(candidates) - len(done)
    store.mark_dlq_purged(done, deleted_by_repair)
    return report


__all__ = ["DEFAULT_MAX_EXAMINED", "PurgeReport", "purge_repaired_dlq"]
