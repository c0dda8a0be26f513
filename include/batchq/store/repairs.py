"""Repair a run: re-send exactly the keys that failed (or never reported), rebuilt from the plan.

Keys are deterministic (a hash of batch, run id, dims and DAG id), so the payload of any key is rebuilt
by streaming the run's plan and keeping the wanted keys: no copy of the payload is needed, and the
DLQ's copies are never trusted as the source. A repair is recorded in the ledger *before* its
payloads are sent (who, when, why, how many, each key's status and attempts before), which reopens the
run: the re-sent keys count as pending until their new results are applied; then the drain closes
the ledger again and the repair gets its outcome after. Re-sent payloads carry the same key, so the
sink keeps one row per key and a success replaces the earlier failure (the upsert rule).

Once a repaired key's new result succeeded, its DLQ copies are stale: :func:`purge_repaired_dlq`
(:mod:`batchq.store.purge`) deletes them (unless the repair asked to keep the DLQ), so "DLQ > 0" alerts resolve.

No Airflow here; every SQS call goes through :mod:`batchq.sqs`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batchq.errors import BatchqError
from batchq.plan import Plan
from batchq.sqs import send_bodies

if TYPE_CHECKING:
    from batchq.store.results import ResultsStore

log = logging.getLogger(__name__)

#: ``failed``: failed and quarantined keys; ``pending``: planned keys with no result at all;
#: ``keys``: the keys given (each must belong to the plan).
MODES = ("failed", "pending", "keys")
#: Keys listed in errors and reports (all of them go to the log).
_KEYS_SHOWN = 20


class RepairError(BatchqError):
    """A repair cannot be made as asked (unknown run, a plan that no longer matches, keys not in it)."""


@dataclass
class RepairReport:
    """What a repair selected and sent. ``repair_id`` is None for a dry run or when nothing was selected."""

    batch: str
    run_id: str
    mode: str
    selected: int
    sent: int = 0
    not_sent: dict[str, str] = field(default_factory=dict)
    by_status: dict[str, int] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    repair_id: int | None = None
    dry_run: bool = False
    outcome_before: str | None = None
    # Who, why and when (epoch s): the Batch view reads a repair from this report in XCom, never the ledger.
    reason: str | None = None
    requested_by: str | None = None
    requested_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "run_id": self.run_id,
            "mode": self.mode,
            "selected": self.selected,
            "sent": self.sent,
            "not_sent": len(self.not_sent),
            "by_status": self.by_status,
            "repair_id": self.repair_id,
            "dry_run": self.dry_run,
            "outcome_before": self.outcome_before,
            "reason": self.reason,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
            "keys": self.keys[:_KEYS_SHOWN],
        }


def rebuild_bodies(plan: Plan, keys: Iterable[str]) -> Iterator[tuple[str, str]]:
    """``(key, body)`` of each wanted key, streamed from the plan (flat memory besides the key set); stops
    as soon as every key was found. Raises :class:`RepairError` naming keys the plan does not produce,
    after yielding the others — callers that must not send anything then check first
    (:func:`missing_keys`)."""
    wanted = set(keys)
    if not wanted:
        return
    for shard in plan.shards():
        for key, body in plan.iter_bodies(shard):
            if key in wanted:
                wanted.discard(key)
                yield key, body
                if not wanted:
                    return
    raise RepairError(f"{len(wanted)} key(s) are not in the plan of run {plan.run_id!r}: {', '.join(sorted(wanted)[:_KEYS_SHOWN])}")


def missing_keys(plan: Plan, keys: Iterable[str]) -> set[str]:
    """Those of ``keys`` that the plan does not produce (one pass over the plan)."""
    wanted = set(keys)
    for shard in plan.shards():
        for key, _ in plan.iter_bodies(shard):
            wanted.discard(key)
            if not wanted:
                return set()
    return wanted


def planned_keys_without_result(store: ResultsStore, plan: Plan, chunk: int = 500) -> Iterator[str]:
    """Keys of the plan the store has no result (nor quarantined copy) for: lost work. Streams the plan
    and asks the store ``chunk`` keys at a time, so memory stays flat."""
    batch_keys: list[str] = []
    for shard in plan.shards():
        for key, _ in plan.iter_bodies(shard):
            batch_keys.append(key)
            if len(batch_keys) >= chunk:
                known = store.key_states(plan.spec.name, plan.run_id, batch_keys, plan=plan.fingerprint)
                yield from (k for k in batch_keys if k not in known)
                batch_keys = []
    if batch_keys:
        known = store.key_states(plan.spec.name, plan.run_id, batch_keys, plan=plan.fingerprint)
        yield from (k for k in batch_keys if k not in known)


def check_plan(store: ResultsStore, plan: Plan) -> dict[str, Any]:
    """The run as the ledger recorded it; refuse when the plan rebuilt now is not the run's plan (the
    spec's values changed since, or another DAG id): its keys would not be the run's keys."""
    run = store.get_run(plan.spec.name, plan.run_id)
    if run is None:
        raise RepairError(f"no run {plan.run_id!r} of {plan.spec.name!r} in the ledger (it records a run when its drain starts)")
    if run.get("plan") and run["plan"] != plan.fingerprint:
        raise RepairError(
            f"run {plan.run_id!r} of {plan.spec.name!r} was planned as {run['plan']}, the spec now gives {plan.fingerprint}: "
            "the spec (or a dimension source) changed since, or the DAG id differs (--dag-id); its keys cannot be rebuilt"
        )
    return run


def select_keys(store: ResultsStore, plan: Plan, mode: str, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The keys a repair re-sends, each ``{"key", "status", "attempts"}`` (status before the repair)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    batch, run_id = plan.spec.name, plan.run_id
    if mode == "failed":
        return store.repair_candidates(batch, run_id, plan=plan.fingerprint)
    if mode == "pending":
        return [{"key": k, "status": "missing", "attempts": None} for k in planned_keys_without_result(store, plan)]
    given = list(dict.fromkeys(k.strip() for k in keys or () if k.strip()))
    if not given:
        raise RepairError("no keys given")
    unknown = missing_keys(plan, given)
    if unknown:
        raise RepairError(f"{len(unknown)} key(s) are not in the plan of run {run_id!r}; nothing was sent: {', '.join(sorted(unknown)[:_KEYS_SHOWN])}")
    states = store.key_states(batch, run_id, given, plan=plan.fingerprint)
    return [{"key": k, **states.get(k, {"status": "missing", "attempts": None})} for k in given]


def rerun(
    client: Any,
    input_url: str,
    store: ResultsStore,
    plan: Plan,
    mode: str,
    *,
    keys: Sequence[str] | None = None,
    reason: str | None = None,
    requested_by: str | None = None,
    dry_run: bool = False,
    keep_dlq: bool = False,
    max_in_flight: int = 4,
) -> RepairReport:
    """Select, record, rebuild and send one repair of ``plan``'s run.

    The repair is recorded before the send, so a crash in between leaves keys marked as being repaired
    (pending), never failed keys silently re-sent; keys SQS refused after retries are closed as
    ``not_sent`` in the ledger and listed in the report.
    """
    run = check_plan(store, plan)
    selected = select_keys(store, plan, mode, keys)
    if mode == "failed" and selected:
        # Never record a key that cannot be rebuilt: the repair would be recorded, nothing sent, and
        # the keys left open. (The store quarantines keys outside the plan; this is the last guard.)
        outside = missing_keys(plan, [k["key"] for k in selected])
        if outside:
            log.warning("rerun: %d selected key(s) are not in the plan and are left out: %s", len(outside), sorted(outside)[:_KEYS_SHOWN])
            selected = [k for k in selected if k["key"] not in outside]
    report = RepairReport(
        plan.spec.name, plan.run_id, mode, len(selected), dry_run=dry_run, outcome_before=run.get("outcome"),
        reason=reason, requested_by=requested_by,
    )
    for k in selected:
        report.by_status[k["status"]] = report.by_status.get(k["status"], 0) + 1
    report.keys = [k["key"] for k in selected]
    if dry_run or not selected:
        return report
    report.requested_at = round(time.time(), 3)
    report.repair_id = store.record_repair(
        plan.spec.name, plan.run_id, selected, mode=mode, plan=plan.fingerprint, reason=reason,
        requested_by=requested_by, keep_dlq=keep_dlq,
    )
    sent = send_bodies(client, input_url, rebuild_bodies(plan, report.keys), max_in_flight=max_in_flight, raise_on_failure=False)
    report.sent, report.not_sent = sent.sent, dict(sent.failed)
    store.finish_repair_send(report.repair_id, sent.sent, list(sent.failed))
    for key, why in report.not_sent.items():
        log.error("repair %s: not sent: %s (%s)", report.repair_id, key, why)
    log.info("repair %s of run %s: sent %d of %d key(s) (%s)", report.repair_id, plan.run_id, sent.sent, len(selected), report.by_status)
    return report


def wait_repaired(store: ResultsStore, batch: str, run_id: str, repair_id: int, *, timeout_s: float, poll_s: float = 2.0) -> dict[str, int]:
    """Wait until every key of ``repair_id`` has its new result applied (a drain runs elsewhere), or the
    timeout; returns the repair's keys by status after (``open`` for those still waiting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = next((r for r in store.repairs(batch, run_id) if r["id"] == repair_id), None)
        after = dict(row["keys_after"]) if row else {}
        if not after.get("open") or time.monotonic() >= deadline:
            return after
        time.sleep(poll_s)


__all__ = [
    "MODES", "RepairError", "RepairReport", "check_plan", "missing_keys", "planned_keys_without_result",
    "rebuild_bodies", "rerun", "select_keys", "wait_repaired",
]
