"""``BatchTaskGroup``: the whole pattern from one spec in one line, the way Cosmos' ``DbtTaskGroup`` wraps dbt.

::

    BatchTaskGroup(spec="customer_batch", sink_conn_id="batchq_sink", max_rate=200)

expands into a group of five tasks, each the same operator a hand-wired DAG would use::

    ensure_queues ─► plan_shards ─► fan_out[shard 0..S-1] ─► wait_input_drained ─► drain_results

Provisioning is its own task so a reader of the DAG sees it (planning stays side-effect free). Every option
of the underlying operators passes through: the common ones as arguments, the rest in ``fan_out_kwargs``,
``wait_kwargs`` and ``drain_kwargs``. The explicit form stays possible (``dags/customer_batch_explicit.py``).
"""

from __future__ import annotations

import logging

import os
from collections.abc import Mapping
from typing import Any

from airflow.sdk import TaskGroup

from batchq.airflow.operators import EnsureQueuesOperator, FanOutOperator, plan_shards
from batchq.airflow.operators.drain import ResultsDrainOperator
from batchq.airflow.operators.fanout import SHARD_MAP_INDEX_TEMPLATE
from batchq.airflow.operators.partitions import (
    DEFAULT_WAVES,
    NEEDS,
    PartitionWaveSensor,
    RepairedPartitionsOperator,
    partition_events_supported,
    partitions_asset,
)
from batchq.airflow.operators.repair import (
    RUN_ID_TEMPLATE,
    PurgeRepairedDlqOperator,
    RerunFailedOperator,
    is_new_run,
)
from batchq.airflow.sensors import QueueDrainedSensor
from batchq.airflow.spec_sources import load_spec
from batchq.spec import BatchSpec

#: Task ids inside the group (prefixed with the group id unless ``prefix_group_id=False``).
TASK_IDS = ("ensure_queues", "plan_shards", "fan_out", "wait_input_drained", "drain_results")


log = logging.getLogger(__name__)

def _spec_arg(spec: BatchSpec | str | os.PathLike[str]) -> BatchSpec | str:
    # Paths become strings: task arguments must serialise.
    return spec if isinstance(spec, BatchSpec) else os.fspath(spec)


class BatchTaskGroup(TaskGroup):
    """One batch run of a spec as a task group: provision → plan → fan-out → wait → drain.

    :param spec: a :class:`BatchSpec`, a YAML path, or a spec name in ``[batchq] spec_dir``. Validated now
        (a bad spec is a DAG import error naming the field); its sources resolve only when tasks run.
    :param sink: where ``drain_results`` writes: a SQLAlchemy URL or an ``http(s)://`` endpoint.
    :param sink_conn_id: or an Airflow connection for the sink (one of ``sink``/``sink_conn_id`` is required).
    :param max_rate: a hard ceiling on the results per second the drain writes to the sink (``None``: no
        cap; the drain's pace adapts to the sink's latency either way: ``drain_kwargs={"latency_tolerance":
        1.1}`` to tune it, docs/drain.md).
    :param group_id: the group's id (default: the spec's name).
    :param aws_conn_id: AWS connection for every task (default ``[batchq] default_aws_conn_id``).
    :param provision: add the ``ensure_queues`` task (:class:`EnsureQueuesOperator`, default True);
        ``False`` expects the queues to exist (e.g. provisioned by Terraform) and plans against them.
    :param max_in_flight: SendMessageBatch calls in flight per fan-out task.
    :param stable_for: seconds the input queue must read empty before draining.
    :param poll_interval: seconds between queue polls of the wait.
    :param dlq_threshold: fail the wait as soon as the input DLQ holds this many messages.
    :param deferrable: wait and drain in the triggerer (default ``[operators] default_deferrable``, as for every provider's operators).
    :param fan_out_kwargs: further :class:`FanOutOperator` arguments (e.g. ``retries``, ``pool``,
        ``max_active_tis_per_dag``).
    :param wait_kwargs: further :class:`QueueDrainedSensor` arguments (e.g. ``timeout``).
    :param drain_kwargs: further :class:`ResultsDrainOperator` arguments (e.g. ``ledger_conn_id``,
        ``max_in_flight``, ``drain_timeout``).
    :param repair: add the repair path (:mod:`batchq.airflow.operators.repair`): ``is_new_run`` before the
        fan-out, ``rerun_failed`` between fan-out and wait, ``purge_repaired_dlq`` after the drain, and
        every step works on ``params.repair_run_id`` when a run names one. Clearing ``rerun_failed``
        with its downstream tasks in a failed run re-sends only that run's failed keys (docs/runbook.md).
        Needs a SQL ledger store (the SQL sink, or ``drain_kwargs`` ``ledger``/``ledger_conn_id``).
    :param partition_waves: with a spec that has ``partition_by``: how many
        :class:`~batchq.airflow.operators.partitions.PartitionWaveSensor` tasks announce the run's
        partitions (``announce_partitions``, mapped), and the drain starts right after the fan-out,
        beside the wait, so partitions close (and are announced) while workers still process others.
        With ``repair`` too, ``announce_repaired``
        (:class:`~batchq.airflow.operators.partitions.RepairedPartitionsOperator`) follows the drain
        and announces the partitions a repair turned successful.
    :param task_group_kwargs: passed to :class:`TaskGroup` (``prefix_group_id``, ``tooltip``, ...).

    The tasks are attributes too: ``provision``, ``plan``, ``fan_out``, ``wait``, ``drain`` (and with
    ``repair``: ``rerun_failed``, ``purge_repaired_dlq``; with partitions: ``announce``, and with both:
    ``announce_repaired``).
    """

    def __init__(
        self,
        *,
        spec: BatchSpec | str | os.PathLike[str],
        sink: str | None = None,
        sink_conn_id: str | None = None,
        max_rate: float | None = None,
        group_id: str | None = None,
        aws_conn_id: str | None = None,
        provision: bool = True,
        max_in_flight: int | None = None,
        stable_for: float | None = None,
        poll_interval: float | None = None,
        dlq_threshold: int | None = None,
        deferrable: bool | None = None,
        fan_out_kwargs: Mapping[str, Any] | None = None,
        wait_kwargs: Mapping[str, Any] | None = None,
        drain_kwargs: Mapping[str, Any] | None = None,
        repair: bool = False,
        partition_waves: int | None = None,
        **task_group_kwargs: Any,
    ) -> None:
        loaded = load_spec(spec)  # parse-time validation: no network, no Variables
        if not (sink or sink_conn_id):
            raise ValueError(f"BatchTaskGroup({loaded.name!r}): give sink= (URL) or sink_conn_id= for drain_results")
        task_group_kwargs.setdefault("tooltip", f"batchq: {loaded.name} (provision, plan, fan out, wait, drain)")
        super().__init__(group_id=group_id or loaded.name, **task_group_kwargs)
        spec_arg = _spec_arg(spec)
        aws = {"aws_conn_id": aws_conn_id} if aws_conn_id else {}
        # With the repair path every step works on the run a repair run names (else its own run id).
        run = {"run_id": RUN_ID_TEMPLATE} if repair else {}
        with self:
            if provision:
                # Planning takes the provisioned URLs (no lookup) and so runs after provisioning.
                self.provision = EnsureQueuesOperator(task_id="ensure_queues", spec=spec_arg, **aws)
                self.plan = plan_shards(spec=spec_arg, queues=self.provision.output, **aws, **run)
            else:
                self.provision = None
                self.plan = plan_shards(spec=spec_arg, **aws, **run)  # looks the queues up; names the gap if missing
            fan_out_options = {"map_index_template": SHARD_MAP_INDEX_TEMPLATE, **aws, **run, **dict(fan_out_kwargs or {})}
            # map_index_template explicitly: Airflow 3.2's .partial() ignores the operator's signature default.
            self.fan_out = FanOutOperator.partial(
                task_id="fan_out", spec=spec_arg, max_in_flight=max_in_flight, **fan_out_options
            ).expand(shard=self.plan)
            self.wait = QueueDrainedSensor(
                task_id="wait_input_drained",
                spec=spec_arg,
                stable_for=stable_for,
                poll_interval=poll_interval,
                dlq_threshold=dlq_threshold,
                deferrable=deferrable,
                **aws,
                # The backlog alerts' expected count comes from this group's planner too.
                **{"plan_task_id": self.plan.operator.task_id, **dict(wait_kwargs or {})},
            )
            self.drain = ResultsDrainOperator(
                task_id="drain_results",
                spec=spec_arg,
                sink=sink,
                sink_conn_id=sink_conn_id,
                max_rate=max_rate,
                # The ledger's expected count comes from this group's planner, whatever the group is called.
                plan_task_id=self.plan.operator.task_id,
                deferrable=deferrable,
                **aws,
                **run,
                **dict(drain_kwargs or {}),
            )
            self.announce = None
            if loaded.partition_by and not partition_events_supported():
                log.warning("%s: partitioned results events need %s: no announce_partitions tasks", loaded.name, NEEDS)
            elif loaded.partition_by:

                drain_args = dict(drain_kwargs or {})
                waves = partition_waves or DEFAULT_WAVES
                self.announce = PartitionWaveSensor.partial(
                    task_id="announce_partitions", spec=spec_arg, waves=waves, sink=sink, sink_conn_id=sink_conn_id,
                    ledger=drain_args.get("ledger"), ledger_conn_id=drain_args.get("ledger_conn_id"), **run,
                    # Given here, not by the operator's defaults: a mapped task's __init__ runs only at run
                    # time, and the scheduler must know the outlet (and the mode) from the DAG itself.
                    outlets=[partitions_asset(loaded.name)], mode="reschedule", poke_interval=10,
                ).expand(wave=list(range(waves)))
                self.fan_out >> self.announce
            if not repair:
                if loaded.partition_by:
                    # The drain runs beside the wait: partitions close as their results arrive.
                    self.fan_out >> [self.wait, self.drain]
                else:
                    self.fan_out >> self.wait >> self.drain
                return
            drain_args = dict(drain_kwargs or {})
            store = {
                "sink": sink, "sink_conn_id": sink_conn_id, "ledger": drain_args.get("ledger"),
                "ledger_conn_id": drain_args.get("ledger_conn_id"), "plan_task_id": self.plan.operator.task_id,
                **aws, **run,
            }
            is_new_run() >> self.fan_out  # a repair run sends only the failed keys, never the whole plan
            # none_failed: runs when the fan-out was skipped (a repair run), not when a shard failed.
            self.rerun_failed = RerunFailedOperator(task_id="rerun_failed", spec=spec_arg, trigger_rule="none_failed", **store)
            self.purge_repaired_dlq = PurgeRepairedDlqOperator(task_id="purge_repaired_dlq", spec=spec_arg, **store)
            if loaded.partition_by:
                # As without repair, the drain runs beside the wait; in a repair run it starts once the
                # repair is recorded (the ledger reopened) and ends when the repaired keys are final.
                self.fan_out >> self.rerun_failed >> [self.wait, self.drain]
            else:
                self.fan_out >> self.rerun_failed >> self.wait >> self.drain
            self.drain >> self.purge_repaired_dlq
            self.announce_repaired = None
            if self.announce is not None:
                # The waves ran before the repair and never claim a failed partition: once the repair's
                # results are in, this task announces the partitions it turned successful.
                self.announce_repaired = RepairedPartitionsOperator(
                    task_id="announce_repaired", spec=spec_arg, sink=sink, sink_conn_id=sink_conn_id,
                    ledger=drain_args.get("ledger"), ledger_conn_id=drain_args.get("ledger_conn_id"), **run,
                )
                self.drain >> self.announce_repaired
