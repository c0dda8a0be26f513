"""Read what batchq tasks left in Airflow (XComs, results Asset events, DAG run states and confs) into
:class:`~batchq.monitor.report.RunReport` objects. Read-only; never touches the sink database: repairs too are
read from the runs' confs (``repair_run_id``) and ``rerun_failed``'s XCom."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from batchq.airflow.views.access import RESULTS_ASSET_PREFIX, RESULTS_ASSET_SUFFIX
from batchq.xcom_keys import RETURN_VALUE
from batchq.monitor.report import (
    ALERTS_KEY,
    FAILURES_KEY,
    LAG_KEY,
    LEDGER_KEYS,
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

#: Only these XCom keys are loaded: a fan-out's return values are not the view's business.
REPORT_XCOM_KEYS = tuple(dict.fromkeys((PLAN_KEY, *SERIES_KEYS, RESULTS_SERIES_KEY, *LEDGER_KEYS, LAG_KEY, ALERTS_KEY, FAILURES_KEY, *REPAIR_KEYS)))
#: What the DAG tab draws for each of its runs (trends, the runs table, the repaired tag): no
#: ``return_value`` at all. The ledger counts come from the ``ledger`` XCom, else the results Asset
#: event; the repair report from the ``repair`` XCom. Reading every task's return value of every map
#: index of 25 runs on each view was the DAG tab's largest cost.
DAG_PAGE_XCOM_KEYS = tuple(k for k in REPORT_XCOM_KEYS if k != RETURN_VALUE)
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
        # One run's page may read its unmapped return values; the DAG tab reads only what it draws.
        keys = REPORT_XCOM_KEYS if run_id is not None else DAG_PAGE_XCOM_KEYS
        xcoms, extras = _xcoms(session, dag_id, ids, keys), _asset_extras(session, dag_id, ids)
        repairs = _repair_runs(session, dag_id, ids, keys)
    return [
        run_report(
            dag_id, rid, xcoms.get(rid, []), state=state, run_after=after, asset_extras=extras.get(rid, []),
            conf=conf if isinstance(conf, dict) else None, repaired_by=repairs.get(rid, []),
        )
        for rid, state, after, conf in runs
    ]
