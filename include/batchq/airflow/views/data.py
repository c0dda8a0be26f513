"""Read what batchq tasks left in Airflow (XComs, results Asset events, DAG run states and confs) into
:class:`~batchq.monitor.report.RunReport` objects. Read-only. Repairs are read from the runs' confs
(``repair_run_id``) and ``rerun_failed``'s XCom; when ``[batchq] view_ledger_conn_id`` names the ledger
store, a run's current ledger and every repair of it (``batchq rerun``'s too) come from the store as well,
within :data:`STORE_BUDGET_S`."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from batchq.airflow.views.access import RESULTS_ASSET_PREFIX, RESULTS_ASSET_SUFFIX
from batchq.xcom_keys import RETURN_VALUE
from batchq.monitor.report import (
    ALERTS_KEY,
    FAILURES_KEY,
    LAG_KEY,
    LEDGER_KEYS,
    PARTITIONS_KEY,
    PLAN_KEY,
    REPAIR_KEYS,
    REPAIR_RUN_PARAM,
    RESULTS_SERIES_KEY,
    SERIES_KEYS,
    RepairRun,
    RunReport,
    repair_run,
    run_report,
)

log = logging.getLogger(__name__)

#: Only these XCom keys are loaded: a fan-out's return values are not the view's business.
REPORT_XCOM_KEYS = tuple(dict.fromkeys((PLAN_KEY, *SERIES_KEYS, RESULTS_SERIES_KEY, *LEDGER_KEYS, LAG_KEY, ALERTS_KEY, FAILURES_KEY, *REPAIR_KEYS)))
#: What the DAG tab draws for each of its runs (trends, the runs table, the repaired tag): no
#: ``return_value`` at all. The ledger counts come from the ``ledger`` XCom, else the results Asset
#: event; the repair report from the ``repair`` XCom. Reading every task's return value of every map
#: index of 25 runs on each view was the DAG tab's largest cost.
DAG_PAGE_XCOM_KEYS = tuple(k for k in REPORT_XCOM_KEYS if k != RETURN_VALUE)
#: Loaded for one run's page only: a run's partitions table may hold 10,000 rows.
RUN_PAGE_XCOM_KEYS = (*REPORT_XCOM_KEYS, PARTITIONS_KEY)
#: Repair runs listed per repaired run (a run repaired more often than this has other problems).
MAX_REPAIR_RUNS = 20
#: Runs shown on a DAG's page (newest first).
DAG_PAGE_RUNS = 25


def _xcoms(session: Any, dag_id: str, run_ids: list[str], keys: tuple[str, ...] = REPORT_XCOM_KEYS) -> dict[str, list[tuple[str, Any]]]:
    """The XComs ``keys`` of the runs, deserialised; a ``return_value`` only of unmapped tasks (the
    drain and repair tasks are never mapped; a fan-out's shards are)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import and_, or_, select

    named = [k for k in keys if k != RETURN_VALUE]
    wanted = XComModel.key.in_(named)
    if RETURN_VALUE in keys:
        wanted = or_(wanted, and_(XComModel.key == RETURN_VALUE, XComModel.map_index == -1))
    stmt = (
        select(XComModel.run_id, XComModel.key, XComModel.value)
        .where(XComModel.dag_id == dag_id, XComModel.run_id.in_(run_ids), wanted)
        .order_by(XComModel.timestamp)
    )
    out: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for run_id, key, value in session.execute(stmt):
        try:
            value = XComModel.deserialize_value(_Row(value))
        except Exception:  # noqa: BLE001 - an undecodable XCom is shown as missing, not a 500
            value = None
        out[run_id].append((key, value))
    return out


class _Row:
    """``XComModel.deserialize_value`` takes a result object with a ``value`` attribute."""

    def __init__(self, value: Any):
        self.value = value


def _asset_extras(session: Any, dag_id: str, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import select

    stmt = (
        select(AssetEvent.source_run_id, AssetEvent.extra)
        .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(
            AssetEvent.source_dag_id == dag_id,
            AssetEvent.source_run_id.in_(run_ids),
            AssetModel.uri.like(f"{RESULTS_ASSET_PREFIX}%{RESULTS_ASSET_SUFFIX}"),
        )
    )
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run_id, extra in session.execute(stmt):
        if isinstance(extra, dict):
            out[run_id].append(extra)
    return out


def _repair_runs(session: Any, dag_id: str, run_ids: list[str], keys: tuple[str, ...] = REPORT_XCOM_KEYS) -> dict[str, list[RepairRun]]:
    """Runs of the DAG whose conf names one of ``run_ids`` as ``repair_run_id``, by the run they repair."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    target = DagRun.conf[REPAIR_RUN_PARAM].as_string()
    stmt = (
        select(DagRun.run_id, DagRun.state, DagRun.run_after, DagRun.conf)
        .where(DagRun.dag_id == dag_id, target.in_(run_ids))
        .order_by(DagRun.run_after.desc(), DagRun.id.desc())
        .limit(MAX_REPAIR_RUNS * len(run_ids))
    )
    found = list(session.execute(stmt))
    if not found:
        return {}
    xcoms = _xcoms(session, dag_id, [rid for rid, *_ in found], keys)
    out: dict[str, list[RepairRun]] = defaultdict(list)
    for rid, state, after, conf in found:
        target_id = conf.get(REPAIR_RUN_PARAM) if isinstance(conf, dict) else None
        if target_id in run_ids and len(out[target_id]) < MAX_REPAIR_RUNS:
            ts = after.timestamp() if after else None
            out[target_id].append(repair_run(rid, xcoms.get(rid, []), state=_state(state), run_after=ts, conf=conf))
    return out


def _state(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


#: Seconds a Batch view may spend on the ledger store (connect and statements): past it the page shows
#: Airflow's record alone.
STORE_BUDGET_S = 3.0


def _stored_runs(runs: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """``run_id`` → the run's row in the ledger store with its repairs, for ``(batch, run_id)`` pairs;
    empty when ``[batchq] view_ledger_conn_id`` is unset. Never raises: the store is an addition to the
    page, not a condition of it."""
    from batchq.airflow import settings

    conn_id = settings.view_ledger_conn_id()
    if not conn_id or not runs:
        return {}
    try:
        from airflow.sdk import BaseHook

        from batchq.airflow.operators.drain import sink_target_from_connection
        from batchq.store import ResultsStore

        url = sink_target_from_connection(BaseHook.get_connection(conn_id))
        kwargs: dict[str, Any] = {}
        if url.startswith("postgresql"):
            budget_ms = int(STORE_BUDGET_S * 1000)
            kwargs["connect_args"] = {"connect_timeout": max(1, int(STORE_BUDGET_S)), "options": f"-c statement_timeout={budget_ms} -c lock_timeout={budget_ms}"}
        store = ResultsStore(url, **kwargs)
    except Exception:  # no store: Airflow's record alone
        log.warning("Batch view: ledger store %r not readable", conn_id, exc_info=True)
        return {}
    out: dict[str, dict[str, Any]] = {}
    try:
        for batch, run_id in runs:
            row = store.get_run(batch, run_id)
            if row is None:
                continue
            repairs = [
                {**{k: r.get(k) for k in ("id", "mode", "reason", "requested_by", "keys", "sent", "outcome_before", "outcome_after")},
                 "requested_at": _epoch(r.get("requested_at")), "settled_at": _epoch(r.get("settled_at"))}
                for r in store.repairs(batch, run_id)
            ]
            out[run_id] = {**{k: row.get(k) for k in ("expected", "succeeded", "failed", "outcome")}, "repairs": repairs}
    except Exception:  # as above: the page renders without the store
        log.warning("Batch view: reading the ledger store %r failed", conn_id, exc_info=True)
    finally:
        store.close()
    return out


def _epoch(value: Any) -> float | None:
    return value.timestamp() if hasattr(value, "timestamp") else None


def run_reports(dag_id: str, run_id: str | None = None, limit: int = DAG_PAGE_RUNS) -> list[RunReport]:
    """Reports of one run (``run_id``), or of the DAG's latest ``limit`` runs, newest first. An unknown
    run gives an empty list."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        stmt = select(DagRun.run_id, DagRun.state, DagRun.run_after, DagRun.conf).where(DagRun.dag_id == dag_id)
        if run_id is not None:
            stmt = stmt.where(DagRun.run_id == run_id)
        stmt = stmt.order_by(DagRun.run_after.desc(), DagRun.id.desc()).limit(limit)
        runs = [(rid, _state(state), after.timestamp() if after else None, conf) for rid, state, after, conf in session.execute(stmt)]
        ids = [rid for rid, *_ in runs]
        if not ids:
            return []
        # One run's page may read its unmapped return values (and its partitions table); the DAG tab
        # reads only what it draws.
        keys = RUN_PAGE_XCOM_KEYS if run_id is not None else DAG_PAGE_XCOM_KEYS
        xcoms, extras = _xcoms(session, dag_id, ids, keys), _asset_extras(session, dag_id, ids)
        repairs = _repair_runs(session, dag_id, ids, DAG_PAGE_XCOM_KEYS if run_id is None else REPORT_XCOM_KEYS)
    reports = [
        run_report(
            dag_id, rid, xcoms.get(rid, []), state=state, run_after=after, asset_extras=extras.get(rid, []),
            conf=conf if isinstance(conf, dict) else None, repaired_by=repairs.get(rid, []),
        )
        for rid, state, after, conf in runs
    ]
    # The ledger store, when configured: a run's current ledger and every repair (the CLI's too).
    stored = _stored_runs([(r.batch, r.run_id) for r in reports if r.batch and r.ledger is not None])
    if not stored:
        return reports
    return [
        run_report(
            dag_id, rid, xcoms.get(rid, []), state=state, run_after=after, asset_extras=extras.get(rid, []),
            conf=conf if isinstance(conf, dict) else None, repaired_by=repairs.get(rid, []), stored=stored[rid],
        )
        if rid in stored else report
        for (rid, state, after, conf), report in zip(runs, reports)
    ]
