"""Repairing a failed run inside its own DAG run: ``rerun_failed`` and ``purge_repaired_dlq``.

The example DAG (``BatchTaskGroup(..., repair=True)``) runs ``fan_out >> rerun_failed >>
wait_input_drained >> drain_results >> purge_repaired_dlq``. On a normal run ``rerun_failed`` finds no closed, failed ledger for its run and
does nothing, and ``purge_repaired_dlq`` finds no repaired key. When a run failed (more failures than
tolerated), the operator fixes the handler and **clears ``rerun_failed`` with its downstream tasks** in
that DAG run: ``rerun_failed`` re-sends exactly the failed keys of *that* run (rebuilt from its plan,
recorded in the ledger, :func:`batchq.store.repairs.rerun`), the sensor waits, the drain applies the new
results and closes the ledger again (``succeeded`` when within tolerance), and ``purge_repaired_dlq``
deletes the DLQ copies of the repaired keys. The run's history stays in one place: the Airflow run,
and the ledger's repair records (who, when, how many, the outcome before and after).

Or trigger the DAG with ``{"repair_run_id": "<failed run id>"}`` (:func:`repair_params`): every step
then works on the named run (:data:`RUN_ID_TEMPLATE`) and :func:`is_new_run` skips the fan-out, so the
repair run sends only the failed keys.

The decision is the ledger's, not the try number's: a retry of ``rerun_failed`` after it sent finds the
run reopened and sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from batchq import xcom_keys
from batchq.airflow import settings
from batchq.airflow.hook import BatchqSqsHook
from batchq.airflow.spec_sources import resolve_spec, spec_reference
from batchq.monitor.report import REPAIR_REASON_PARAM, REPAIR_RUN_PARAM
from batchq.spec import BatchSpec
from batchq.sqs import get_queue_url

#: The plan XCom ``plan_shards`` pushes (its ``queues`` give the input queue and its DLQ).
PLAN_XCOM_KEY = xcom_keys.PLAN
#: The run every step works on: this DAG run's own, or the failed run a repair run names.
#: (``params.get``: the template still renders in a DAG that does not declare the param.)
RUN_ID_TEMPLATE = "{{ params.get('repair_run_id') or run_id }}"


def repair_params() -> dict[str, Any]:
    """DAG ``params`` declaring :data:`REPAIR_RUN_PARAM` (shown in the trigger form)."""
    from airflow.sdk import Param

    return {
        REPAIR_RUN_PARAM: Param(
            None, type=["null", "string"],
            description="Repair this failed run of the DAG instead of sending a new one: only its failed keys are re-sent.",
        )
    }


def _is_new_run(params: dict[str, Any] | None = None) -> bool:
    return not (params or {}).get(REPAIR_RUN_PARAM)


def is_new_run(**kwargs: Any) -> Any:
    """A short-circuit task, False in a repair run: put it upstream of the fan-out (it skips only its
    direct downstream tasks; the rest of the pattern runs as usual)."""
    from airflow.sdk import task

    kwargs.setdefault("task_id", "is_new_run")
    return task.short_circuit(_is_new_run, ignore_downstream_trigger_rules=False, **kwargs)()


class _RepairBase(AwsBaseOperator[BatchqSqsHook]):
    """Shared arguments: the spec, the run and the results store (the drain's ledger)."""

    aws_hook_class = BatchqSqsHook
    template_fields: Sequence[str] = (*aws_template_fields(), "run_id", "sink", "ledger")
    ui_color = "#fff3d6"

    def __init__(
        self,
        *,
        spec: BatchSpec | str,
        sink: str | None = None,
        sink_conn_id: str | None = None,
        ledger: str | None = None,
        ledger_conn_id: str | None = None,
        plan_task_id: str = "plan_shards",
        run_id: str = "{{ run_id }}",
        **kwargs: Any,
    ):
        kwargs.setdefault("aws_conn_id", settings.default_aws_conn_id())
        super().__init__(**kwargs)
        if not (sink or sink_conn_id or ledger or ledger_conn_id):
            raise ValueError(f"{kwargs.get('task_id')}: give the results store: sink=/sink_conn_id= (SQL) or ledger=/ledger_conn_id=")
        self.spec = spec_reference(spec)
        self.sink, self.sink_conn_id = sink, sink_conn_id
        self.ledger, self.ledger_conn_id = ledger, ledger_conn_id
        self.plan_task_id = plan_task_id
        self.run_id = run_id

    def _store(self) -> Any:
        """The ledger store: ``ledger`` if given (an HTTP sink keeps its ledger there), else the SQL sink."""
        from airflow.sdk import BaseHook

        from batchq.airflow.operators.drain import sink_target_from_connection
        from batchq.store import ResultsStore

        url = self.ledger or (sink_target_from_connection(BaseHook.get_connection(self.ledger_conn_id)) if self.ledger_conn_id else None)
        url = url or self.sink or sink_target_from_connection(BaseHook.get_connection(self.sink_conn_id))
        if url.startswith(("http://", "https://")):
            raise ValueError(f"{self.task_id}: an HTTP sink keeps its ledger elsewhere: give ledger= or ledger_conn_id=")
        return ResultsStore(url)

    def _queue_url(self, context: Any, role: str, name: str) -> str:
        queues = (context["ti"].xcom_pull(task_ids=self.plan_task_id, key=PLAN_XCOM_KEY) or {}).get("queues") or {}
        return queues.get(role) or get_queue_url(self.hook.get_conn(), name)

    def _dag_id(self) -> str | None:
        return self.dag_id if self.has_dag() else None


class RerunFailedOperator(_RepairBase):
    """Re-send the failed keys of this DAG run when its ledger closed ``failed`` (a cleared, failed run),
    or of the run a repair run names (``repair_run_id``) when it closed with failed keys, failed or
    succeeded within its tolerance (a customer beyond its own tolerance, say); otherwise do nothing.
    Returns the repair report (XCom).

    :param spec: a :class:`BatchSpec`, YAML path or spec name (the run's spec).
    :param sink: the results store as a SQLAlchemy URL, or ``sink_conn_id`` (as for the drain task).
    :param ledger: for an HTTP sink, the SQL ledger store (``ledger_conn_id`` likewise).
    :param mode: ``failed`` (failed and quarantined keys) or ``pending`` (planned keys with no result).
    :param keep_dlq: keep the DLQ copies of repaired keys (default: ``purge_repaired_dlq`` deletes them).
    :param plan_task_id: the planning task, whose ``plan`` XCom names the queues.
    :param run_id: the run (templated, default ``{{ run_id }}``).
    """

    def __init__(self, *, mode: str = "failed", keep_dlq: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if mode not in ("failed", "pending"):
            raise ValueError(f"{self.task_id}: mode must be 'failed' or 'pending', got {mode!r}")
        self.mode, self.keep_dlq = mode, keep_dlq

    def execute(self, context: Any) -> dict[str, Any]:
        from batchq.plan import Plan
        from batchq.store.repairs import rerun

        spec = resolve_spec(self.spec)
        store = self._store()
        try:
            run = store.get_run(spec.name, self.run_id)
            # --failed repairs a closed, failed run; --pending a run that is not done: lost keys keep
            # the ledger open (a timed-out drain), so it can never close as failed.
            wanted = ("failed",) if self.mode == "failed" else ("open", "failed")
            if self.mode == "failed" and (context.get("params") or {}).get(REPAIR_RUN_PARAM):
                # Named by a repair run: its failed keys are wanted even if the run stayed within its
                # tolerance (a cleared first run, by contrast, does nothing unless it failed).
                wanted = ("failed", "succeeded")
            if run is None or run.get("outcome") not in wanted:
                self.log.info("run %s: ledger %s: nothing to repair", self.run_id, (run or {}).get("outcome", "not recorded yet"))
                return {"selected": 0, "sent": 0, "outcome_before": (run or {}).get("outcome")}
            reason, requested_by = self._who_and_why(context)
            report = rerun(
                self.hook.get_conn(),
                self._queue_url(context, "input", spec.queues.input),
                store,
                Plan(spec, self.run_id, dag_id=self._dag_id()),
                self.mode,
                reason=reason,
                requested_by=requested_by,
                keep_dlq=self.keep_dlq,
            )
        finally:
            store.close()
        self.log.info("repair %s: re-sent %d of %d key(s) %s; first: %s", report.repair_id, report.sent, report.selected, report.by_status, report.keys[:10])
        if report.not_sent:
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(f"{self.task_id}: {len(report.not_sent)} key(s) not sent (recorded as not_sent; clear again to retry): {list(report.not_sent)[:20]}")
        # Under its own key too: the DAG tab reads this, never every task's return value.
        context["ti"].xcom_push(key=xcom_keys.REPAIR, value=report.to_dict())
        return report.to_dict()


    def _who_and_why(self, context: Any) -> tuple[str, str]:
        """The repair's reason and requester as the Batch view shows them: a repair run's
        ``repair_reason`` conf (else how it was started) and the user who triggered the DAG run."""
        ti, dag_run = context.get("ti"), context.get("dag_run")
        conf = getattr(dag_run, "conf", None) or {}
        if conf.get(REPAIR_RUN_PARAM):
            reason = str(conf.get(REPAIR_REASON_PARAM) or f"repair run {context.get('run_id')} triggered with {REPAIR_RUN_PARAM}")
        else:
            reason = f"{self.task_id} cleared in Airflow"
        user = getattr(dag_run, "triggering_user_name", None)
        task = f"airflow:{self._dag_id()}.{self.task_id} try {getattr(ti, 'try_number', '?')}"
        return reason, f"{task} (triggered by {user})" if user else task


class PurgeRepairedDlqOperator(_RepairBase):
    """Delete the input DLQ's copies of this run's repaired keys whose new result succeeded (repairs made
    with ``keep_dlq`` excepted). Makes no SQS call when there is nothing to purge.

    :param spec: a :class:`BatchSpec`, YAML path or spec name.
    :param sink: the results store (as for :class:`RerunFailedOperator`).
    :param timeout_s: longest time spent reading the DLQ.
    """

    def __init__(self, *, timeout_s: float = 300.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.timeout_s = timeout_s

    def execute(self, context: Any) -> dict[str, Any]:
        from batchq.store.purge import purge_repaired_dlq

        spec = resolve_spec(self.spec)
        store = self._store()
        try:
            if not store.dlq_purge_candidates(spec.name, self.run_id):
                self.log.info("run %s: no repaired key to purge from the DLQ", self.run_id)
                return {"deleted": 0, "keys": 0}
            report = purge_repaired_dlq(
                self.hook.get_conn(), self._queue_url(context, "input_dlq", spec.queues.input_dlq), store, spec.name, self.run_id,
                timeout_s=self.timeout_s,
            )
        finally:
            store.close()
        (self.log.warning if report.stopped_by else self.log.info)("run %s: %s", self.run_id, report.describe())
        return report.to_dict()
