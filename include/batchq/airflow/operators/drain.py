"""``ResultsDrainOperator``: the bottom of the pattern — feed a run's results to the real-time system at
the pace it can take, exactly-once in effect, and close the run's ledger.

It runs the Airflow-free drain loop (:class:`batchq.drain.Drainer`): receive batches of results, write
them to the sink at ``max_rate`` with ``max_in_flight`` batches at once, commit, then delete. When the
results queue is empty but the ledger is not complete (workers still running), it *defers* on
:class:`~batchq.airflow.triggers.ResultsAvailableTrigger` instead of holding a worker slot, and resumes
when results arrive. When the ledger is complete it closes it; within the spec's tolerated failures it
succeeds and emits an Asset event ``batchq://<batch>/results`` whose extra carries the run's counts,
otherwise it fails listing the counts and the first failed keys with their errors.

While it drains it samples the results queue (one GetQueueAttributes at most every
:data:`~batchq.monitor.waits.DRAIN_SAMPLE_INTERVAL_S`, plus one at the start and end of each pass) and pushes the
curve to XCom ``results_series`` after each pass: ``{"fields": ["t", "results_visible",
"results_in_flight", "applied"], "points": [[t, visible, in_flight, applied so far], ...]}`` (bounded; it
rides the deferrals, so the curve covers the whole task).

The ledger lives in the sink database, so a retry of this task resumes the count instead of starting
over; duplicates never inflate it (distinct keys).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from batchq import xcom_keys
from batchq.airflow import settings
from batchq.airflow.hook import BatchqSqsHook
from batchq.airflow.sinks import (
    get_connection,
    sink_headers_from_connection,
    sink_target_from_connection,
)
from batchq.airflow.triggers import ResultsAvailableTrigger, TriggerReason
from batchq.monitor.lag import LAG_XCOM_KEY, describe_lag
from batchq.monitor.waits import DRAIN_SAMPLE_INTERVAL_S, DrainCurve
from batchq.spec import BatchSpec
from batchq.sqs import get_queue_url, get_snapshot
from batchq.sqs.cloudwatch import observed_age_s, queue_age

#: XCom key of the closed ledger (counts + first failures), pushed whether the run succeeded or not.
LEDGER_XCOM_KEY = xcom_keys.LEDGER
#: XCom key of the results queue's drain curve (:meth:`batchq.monitor.waits.DrainCurve.to_xcom`).
RESULTS_SERIES_XCOM_KEY = xcom_keys.RESULTS_SERIES
#: The plan XCom the fan-out's ``plan_shards`` pushes (it carries ``expected``).
PLAN_XCOM_KEY = xcom_keys.PLAN
#: A drain whose deadline has passed still gets this long to apply what is on the queue.
FINAL_SWEEP_S = 30.0
#: Least seconds between two recounts of the partition ledger while a drain pass runs.
PARTITION_REFRESH_S = 5.0
_TOTALS = ("received", "applied", "quarantined", "deleted", "delete_failed", "sink_retries", "backpressure", "visibility_extensions")


def results_asset(batch: str) -> Asset:
    """The Asset a run's drained results update: ``batchq://<batch>/results``."""
    from batchq.airflow.assets import create_asset

    return create_asset(batch=batch)


def _connection(conn_id: str) -> Any:
    return get_connection(conn_id)


class ResultsDrainOperator(AwsBaseOperator[BatchqSqsHook]):
    """Drain a run's results into a sink at a bounded rate; close the run's ledger; emit an Asset event.

    :param spec: a :class:`BatchSpec`, YAML path or spec name: batch name, results queue and failure
        tolerance come from it (each can be overridden below).
    :param sink: sink target: a SQLAlchemy URL (``sqlite:///…``, ``postgresql+psycopg://…``) or an
        ``http(s)://`` endpoint of the real-time system.
    :param sink_conn_id: or an Airflow connection for the sink: any SQL connection (its own
        ``DbApiHook`` gives the URL: postgres, sqlite, mysql, …), an http/https/``batchq_http`` one, or any
        with the extra ``sqlalchemy_url`` (:mod:`batchq.airflow.sinks`). An http(s) connection's login/password (basic), password alone or extra
        ``token`` (bearer) and extra ``headers`` authenticate the POSTs; they are never logged nor
        rendered (put credentials here, never in ``sink``, which is a template field).
    :param ledger: for an HTTP sink, where the run ledger and quarantine live (SQLAlchemy URL);
        ``ledger_conn_id`` likewise. A SQL sink is its own ledger store.
    :param expected: planned payloads of the run (templated). Default: ``expected`` from the
        ``plan`` XCom of ``plan_task_id``.
    :param plan_task_id: the planning task (default ``plan_shards``).
    :param run_id: the run key (templated, default ``{{ run_id }}``): must match the planner's.
    :param results_queue: results queue name or URL (default: the spec's).
    :param input_queue: input queue name or URL (default: the spec's): only to read its oldest-message
        age from CloudWatch for the run's ``queue_lag`` (``age_source``); nothing is received from it.
    :param max_rate: results per second for the whole drain (token bucket), a hard ceiling; ``None`` =
        no cap: the drain finds the sink's pace from its latency (``latency_tolerance``).
    :param max_in_flight: drain threads: the most result batches ever written at once (the ceiling of the
        adaptive pace).
    :param latency_tolerance: how far the sink's round trip may rise above its lightly-loaded baseline
        (:class:`batchq.drain.pace.PaceController`; default 1.2). ``None``: no adaptive pace, always
        ``max_in_flight`` writes at once. The pace (limit, round trip, baseline) rides the
        ``results_series`` XCom: the Batch view's "pace" line.
    :param lease_s: visibility timeout taken on each received batch.
    :param poll_interval: seconds between checks while deferred waiting for results.
    :param drain_timeout: seconds from the first try until the task gives up with the ledger's counts.
    :param tolerated_failure_count: override the spec's.
    :param tolerated_failure_percentage: override the spec's.
    :param retry_after_cap_s: longest ``Retry-After`` an HTTP sink may impose (default 60 s).
    :param plan_fingerprint: the plan this run's ledger counts (default: ``plan`` from the planner's
        XCom); results of another plan of the same run id never close it.
    :param deferrable: defer while waiting for results, else sleep in the worker slot (default ``[operators] default_deferrable``, as for every provider's operators).
    :param prune_older_than: after the run's ledger closed, delete results, quarantine rows, settled
        repairs and closed runs older than this (``30d``, ``12h``; :func:`batchq.store.retention.prune`,
        in batches, safe beside other drains). ``None`` (default) keeps everything.
    :param curve_interval_s: least seconds between two samples of the results curve (XCom
        ``results_series``; one GetQueueAttributes each).
    """

    aws_hook_class = BatchqSqsHook
    template_fields: Sequence[str] = (*aws_template_fields(), "run_id", "expected", "sink", "ledger", "results_queue", "input_queue")
    ui_color = "#e4ffe9"

    def __init__(
        self,
        *,
        spec: BatchSpec | str | None = None,
        batch: str | None = None,
        sink: str | None = None,
        sink_conn_id: str | None = None,
        ledger: str | None = None,
        ledger_conn_id: str | None = None,
        expected: int | str | None = None,
        plan_task_id: str = "plan_shards",
        run_id: str = "{{ run_id }}",
        results_queue: str | None = None,
        input_queue: str | None = None,
        max_rate: float | None = None,
        max_in_flight: int = 8,
        # = batchq.drain.pace.DEFAULT_LATENCY_TOLERANCE, written out: importing the drain package at DAG
        # parse time costs ~150 ms (tests/unit/airflow/test_drain_operator_pace.py holds them equal).
        latency_tolerance: float | None = 1.2,
        lease_s: int = 60,
        receive_wait_s: int = 2,
        poll_interval: float = 10.0,
        drain_timeout: float = 12 * 3600,
        tolerated_failure_count: int | None = None,
        tolerated_failure_percentage: float | None = None,
        retry_after_cap_s: float | None = None,
        plan_fingerprint: str | None = None,
        deferrable: bool | None = None,
        curve_interval_s: float = DRAIN_SAMPLE_INTERVAL_S,
        prune_older_than: str | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("aws_conn_id", settings.default_aws_conn_id())
        loaded: BatchSpec | None = None
        if spec is not None:
            from batchq.airflow.spec_sources import load_spec, spec_reference

            loaded = load_spec(spec)
        # With partition_by the drain also keeps the partition ledger (the plan gives expected counts).
        partition_spec = spec_reference(spec) if loaded is not None and loaded.partition_by else None
        batch = batch or (loaded.name if loaded else None)
        if not batch:
            raise ValueError(f"{kwargs.get('task_id')}: give spec= or batch=")
        results_queue = results_queue or (loaded.queues.results if loaded else None)
        input_queue = input_queue or (loaded.queues.input if loaded else None)
        if not results_queue:
            raise ValueError(f"{kwargs.get('task_id')}: give spec= or results_queue=")
        if not (sink or sink_conn_id):
            raise ValueError(f"{kwargs.get('task_id')}: give sink= (URL) or sink_conn_id=")
        kwargs.setdefault("outlets", [results_asset(batch)])
        super().__init__(**kwargs)
        self.partition_spec = partition_spec
        self.batch = batch
        self.sink, self.sink_conn_id = sink, sink_conn_id
        self.ledger, self.ledger_conn_id = ledger, ledger_conn_id
        self.expected = expected
        self.plan_task_id = plan_task_id
        self.run_id = run_id
        self.results_queue = results_queue
        self.input_queue = input_queue
        self.max_rate, self.max_in_flight = max_rate, max_in_flight
        if latency_tolerance is not None and not (isinstance(latency_tolerance, (int, float)) and 1.0 < latency_tolerance < float("inf")):
            # fails at parse time, like the controller would at run time
            raise ValueError(f"{kwargs.get('task_id')}: latency_tolerance must be a number > 1.0 (or None), got {latency_tolerance!r}")
        self.latency_tolerance = latency_tolerance
        self.lease_s, self.receive_wait_s = lease_s, receive_wait_s
        self.poll_interval, self.drain_timeout = poll_interval, drain_timeout
        self.tolerated_failure_count = tolerated_failure_count if tolerated_failure_count is not None else (loaded.tolerated_failure_count if loaded else 0)
        self.tolerated_failure_percentage = (
            tolerated_failure_percentage if tolerated_failure_percentage is not None else (loaded.tolerated_failure_percentage if loaded else 0.0)
        )
        self.retry_after_cap_s = retry_after_cap_s
        self.plan_fingerprint = plan_fingerprint
        self.deferrable = settings.default_deferrable() if deferrable is None else deferrable
        DrainCurve(interval_s=curve_interval_s)  # a bad interval fails at parse time
        self.curve_interval_s = curve_interval_s
        # The spec as given (a name or path is resolved at run time): the plan membership of results.
        self.spec_ref = spec_reference(spec) if spec is not None else None
        if prune_older_than is not None:
            from batchq.store.retention import parse_age

            parse_age(prune_older_than)  # a typo fails at parse time, not after a drain
        self.prune_older_than = prune_older_than

    # -- entry points ----------------------------------------------------------------------------------
    def execute(self, context: Any) -> dict[str, Any]:
        return self._drain(context, deadline=time.time() + float(self.drain_timeout), totals={}, curve=DrainCurve(interval_s=self.curve_interval_s))

    def resume(
        self,
        context: Any,
        event: dict[str, Any] | None = None,
        deadline: float | None = None,
        totals: dict[str, int] | None = None,
        curve: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Back from :class:`ResultsAvailableTrigger`: drain again, or fail with the ledger's counts."""
        reason = (event or {}).get("reason")
        if reason == TriggerReason.ERROR.value:
            raise AirflowException(f"{self.task_id}: waiting for results failed: {(event or {}).get('message')}")
        deadline = deadline or time.time()
        if reason == TriggerReason.TIMEOUT.value:
            deadline = min(deadline, time.time())  # drain what is there, then report the open ledger
        # ``curve`` is absent from deferrals made before the curve existed: start one.
        return self._drain(context, deadline=deadline, totals=dict(totals or {}), curve=DrainCurve.from_dict(curve) if curve else DrainCurve(interval_s=self.curve_interval_s))

    # -- the work --------------------------------------------------------------------------------------
    def _membership_spec(self, context: Any) -> str | None:
        """The run's resolved spec as JSON when it rebuilds the planned fingerprint (the store then
        quarantines results whose key the plan cannot produce); None when it cannot be known here."""
        if self.spec_ref is None:
            return None
        from batchq.airflow.spec_sources import resolve_spec
        from batchq.plan import Plan

        try:
            spec = resolve_spec(self.spec_ref)
            planned = self.plan_fingerprint or self._plan(context).get("plan")
            plan = Plan(spec, self.run_id, dag_id=self.dag_id if self.has_dag() else None)
        except Exception as exc:  # noqa: BLE001 - membership is a guard; the ledger still counts by plan
            self.log.warning("plan membership unknown (results are counted by plan fingerprint only): %s", exc)
            return None
        return spec.model_dump_json() if plan.fingerprint == planned else None

    def _plan(self, context: Any) -> dict[str, Any]:
        return context["ti"].xcom_pull(task_ids=self.plan_task_id, key=PLAN_XCOM_KEY) or {}

    def _expected(self, context: Any) -> int:
        if self.expected not in (None, ""):
            try:
                return int(self.expected)
            except (TypeError, ValueError):
                raise ValueError(f"{self.task_id}: expected must be an integer, got {self.expected!r}") from None
        plan = self._plan(context)
        if not plan or "expected" not in plan:
            raise AirflowFailException(f"{self.task_id}: no expected count: pass expected= or run {self.plan_task_id!r} (its 'plan' XCom) first")
        return int(plan["expected"])

    def _open(self) -> tuple[Any, Any]:
        from batchq.drain import open_sink

        headers: dict[str, str] = {}
        if self.sink:
            target = self.sink
        else:
            conn = _connection(self.sink_conn_id)
            target, headers = sink_target_from_connection(conn), sink_headers_from_connection(conn)
        ledger = self.ledger or (sink_target_from_connection(_connection(self.ledger_conn_id)) if self.ledger_conn_id else None)
        self._lineage_sink_target = target
        if target.startswith(("http://", "https://")) and not ledger:
            raise ValueError(f"{self.task_id}: an HTTP sink needs ledger= or ledger_conn_id= (a SQL database for the run ledger)")
        return open_sink(target, ledger_url=ledger, headers=headers, retry_after_cap_s=self.retry_after_cap_s)

    def _sampler(self, client: Any, url: str, curve: DrainCurve) -> Any:
        """``sample(applied, force=False)``: add a curve point when due (or forced). Called from the
        drain's threads, hence the lock; a failed snapshot is skipped — the curve never fails a drain."""
        lock = threading.Lock()

        def sample(applied: int, force: bool = False, pace: Any = None) -> None:
            with lock:
                if not (force or curve.due(time.time())):
                    return
                try:
                    curve.add(get_snapshot(client, url), applied, pace.to_dict() if pace is not None else None)
                except Exception as exc:  # noqa: BLE001
                    self.log.debug("results curve sample skipped: %s", exc)

        return sample

    def _drain(self, context: Any, *, deadline: float, totals: dict[str, int], curve: DrainCurve) -> dict[str, Any]:
        from batchq.drain import Drainer, SinkMisconfigured
        from batchq.store import RunConflict, RunLedger

        client = self.hook.get_conn()
        url = get_queue_url(client, self.results_queue)
        self._lineage_results_url = url
        sink, store = self._open()
        try:
            try:
                ledger = RunLedger(
                    store,
                    self.batch,
                    self.run_id,
                    self._expected(context),
                    tolerated_failure_count=self.tolerated_failure_count,
                    tolerated_failure_percentage=self.tolerated_failure_percentage,
                    plan=self.plan_fingerprint or self._plan(context).get("plan"),
                    dag_id=self.dag_id if self.has_dag() else None,
                    spec=self._membership_spec(context),
                )
            except RunConflict as exc:
                raise AirflowFailException(f"{self.task_id}: {exc}") from exc
            sample = self._sampler(client, url, curve)
            partitions = self._partitions(context, store)

            def on_batch(report: Any) -> None:
                sample(totals.get("applied", 0) + report.applied, pace=drainer.pace_state())
                if partitions is not None:
                    partitions(force=False)

            drainer = Drainer(
                client,
                url,
                sink,
                store,
                max_rate=self.max_rate,
                max_in_flight=self.max_in_flight,
                receive_wait_s=self.receive_wait_s,
                lease_s=self.lease_s,
                latency_tolerance=self.latency_tolerance,
                on_batch=on_batch,
            )
            while True:
                status = ledger.status()
                if not status.complete:
                    sample(totals.get("applied", 0), force=True)
                    # Past the deadline (a timed-out wait) still sweep what is there before reporting.
                    mono_deadline = time.monotonic() + max(FINAL_SWEEP_S, deadline - time.time())
                    try:
                        report = drainer.run(until_empty=True, deadline=mono_deadline).to_dict()
                    except SinkMisconfigured as exc:
                        # Fail fast: credentials/URL; the results stay on the queue for the next try.
                        raise AirflowFailException(f"{self.task_id}: {exc}") from exc
                    for k in _TOTALS:
                        totals[k] = totals.get(k, 0) + int(report.get(k, 0))
                    sample(totals.get("applied", 0), force=True, pace=drainer.pace_state())
                    context["ti"].xcom_push(key=RESULTS_SERIES_XCOM_KEY, value=curve.to_xcom())
                    if partitions is not None:
                        context["ti"].xcom_push(key=xcom_keys.PARTITIONS, value=partitions(force=True))
                    self._metrics(report, status)
                    self.log.info("drained %d result(s) at %.1f/s (%d quarantined)", report["applied"], report["rate_per_s"], report["quarantined"])
                    status = ledger.status()
                self.log.info("%s", status.describe())
                if status.complete:
                    if partitions is not None:
                        self._push_partitions(context, partitions(force=True))
                    return self._finish(context, ledger, status, totals)
                if time.time() >= deadline:
                    raise AirflowException(f"{self.task_id}: ledger still open after the drain timeout ({self.drain_timeout:.0f}s): {status.describe()}")
                if self.deferrable:
                    self.defer(
                        trigger=ResultsAvailableTrigger(
                            queue_url=url,
                            poll_interval_s=self.poll_interval,
                            deadline=deadline,
                            aws_conn_id=self.aws_conn_id,
                            region_name=self.region_name,
                            verify=self.verify,
                            botocore_config=self.botocore_config,
                        ),
                        method_name="resume",
                        kwargs={"deadline": deadline, "totals": totals, "curve": curve.to_dict()},
                    )
                time.sleep(self.poll_interval)
        finally:
            sink.close()
            if store is not sink:
                store.close()

    def _push_partitions(self, context: Any, value: Any) -> None:
        """The final partitions XCom, and the per-tenant lag in the task log."""
        from batchq.monitor.lag import describe_partition_lag
        from batchq.monitor.partition_table import PartitionTable

        context["ti"].xcom_push(key=xcom_keys.PARTITIONS, value=value)
        if value:
            self.log.info("%s", describe_partition_lag(PartitionTable(value).lag()))

    def _partitions(self, context: Any, store: Any) -> Any:
        """``refresh(force) -> XCom value``: recount the partition ledger (at most every
        :data:`PARTITION_REFRESH_S` unless forced; the drain's threads call it after each batch, so
        partitions close while a long pass runs) and return the partitions XCom. ``None`` without
        ``partition_by``. Counting is a report for the waves and the Batch tab: a failure is logged,
        never fails the drain."""
        if self.partition_spec is None:
            return None
        from batchq.airflow.spec_sources import resolve_spec
        from batchq.store import tolerated_failures
        from batchq.plan import Plan
        from batchq.store.partitions import PartitionLedger, partition_rows_xcom

        spec = resolve_spec(self.partition_spec)
        plan = Plan(spec, self.run_id, dag_id=self.dag_id if self.has_dag() else None)
        ledger = PartitionLedger(
            store.engine, spec.name, self.run_id, spec.partition_by, plan.partition_expected(),
            plan_fingerprint=self.plan_fingerprint or self._plan(context).get("plan") or plan.fingerprint,
            tolerated=lambda n: tolerated_failures(n, self.tolerated_failure_count, self.tolerated_failure_percentage),
            key_partitions=plan.key_partitions,
        )
        lock = threading.Lock()
        last = [0.0]
        value: list[Any] = [None]

        def refresh(force: bool = False) -> Any:
            with lock:
                if force or time.monotonic() - last[0] >= PARTITION_REFRESH_S:
                    last[0] = time.monotonic()
                    try:
                        value[0] = partition_rows_xcom(ledger.refresh())
                    except Exception:  # noqa: BLE001 - a report, never the drain's failure
                        self.log.warning("partition ledger not refreshed", exc_info=True)
                return value[0]

        return refresh

    def _finish(self, context: Any, ledger: Any, status: Any, totals: dict[str, int]) -> dict[str, Any]:
        ledger.close(status)
        if self.prune_older_than:
            from batchq.store.retention import parse_age, prune

            pruned = prune(ledger.store, parse_age(self.prune_older_than))
            self.log.info("pruned rows older than %s: %s", self.prune_older_than, pruned.to_dict())
        counts = status.counts()
        self._metrics(None, status)
        lag = self._lag(context, ledger)
        # The ledger with its first failures goes to XCom before any raise: a failed run's Batch view
        # shows what failed (the return value exists only for a run that succeeded).
        context["ti"].xcom_push(key=LEDGER_XCOM_KEY, value=status.to_dict())
        if not status.ok:
            raise AirflowFailException(f"{self.task_id}: run failed: {status.describe()}")
        # Attach the counts to the outlet Asset event (Airflow 3 outlet-events API).
        events = context.get("outlet_events")
        if events is not None:
            for outlet in self.outlets or []:
                if isinstance(outlet, Asset):
                    events[outlet].extra = {**counts, "drain": totals}
        return {**counts, "drain": totals, LAG_XCOM_KEY: lag}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the results queue in, the sink's results table or HTTP endpoint out
        (:mod:`batchq.airflow.lineage`; no credentials in either)."""
        from batchq.airflow import lineage

        inputs, outputs = [], []
        url = getattr(self, "_lineage_results_url", None)
        if url:
            inputs.append(lineage.sqs_dataset_names(url, arn=lineage.queue_arn(self.hook.get_conn(), url), region=self.region_name))
        target = getattr(self, "_lineage_sink_target", None)
        if target:
            outputs.append(lineage.sink_dataset_names(target))
        return lineage.operator_lineage(inputs, outputs)

    def _lag(self, context: Any, ledger: Any) -> dict[str, Any] | None:
        """The run's queue lag (:func:`batchq.monitor.lag.run_lag`) to XCom ``queue_lag`` (the Batch view reads
        it) and to metrics. Figures are a report, not the drain's purpose: failing to compute them is
        logged, never fails the task."""
        try:
            lag = ledger.lag()
        except Exception:
            self.log.warning("queue lag not computed", exc_info=True)
            return None
        lag.update(queue_age(self._cloudwatch_age(), observed_age_s(lag)))
        self.log.info("%s; oldest message age %s s (%s)", describe_lag(lag), lag["oldest_age_s"], lag["age_source"])
        context["ti"].xcom_push(key=LAG_XCOM_KEY, value=lag)
        try:
            from batchq.airflow.metrics import emit_lag

            emit_lag(self.batch, lag)
        except Exception:
            self.log.debug("lag metrics not emitted", exc_info=True)
        return lag

    def _cloudwatch_age(self) -> float | None:
        """CloudWatch's age of the oldest input message, when the connection can read it (one short try)."""
        if not self.input_queue:
            return None
        from batchq.airflow.metrics import cloudwatch_oldest_age_s

        return cloudwatch_oldest_age_s(self.aws_conn_id, self.input_queue, self.region_name)

    def _metrics(self, report: dict[str, Any] | None, status: Any) -> None:
        try:
            from batchq.airflow.metrics import emit_drain_report, emit_ledger

            if report:
                emit_drain_report(self.batch, report, queue=self.results_queue.rstrip("/").rsplit("/", 1)[-1])
            emit_ledger(self.batch, status.counts())
        except Exception:
            self.log.debug("drain metrics not emitted", exc_info=True)
