"""Partitioned results for downstream DAGs (Airflow ≥ 3.2, AIP-76): announce each partition of a run
(a customer) as soon as its keys are all final, so customer A's downstream DAG starts while customer
Z's payloads are still being processed.

What Airflow allows (3.3, read in its source): a task records partitioned events with
``outlet_events[asset].add_partitions(keys)``, but the Task SDK sends them only when the task
*succeeds* (``SucceedTask.outlet_events``, built by ``task_runner._serialize_outlet_events``); there
is no call a running or deferred task can make to emit an event earlier, and an ``AssetWatcher``
trigger's events carry no partition key. So a single drain task cannot announce partitions
progressively. The next best, built here, is a drain that *ends in waves*: ``W`` small mapped tasks
(:class:`PartitionWaveSensor`) run beside the drain; wave ``i`` succeeds once ``(i + 1) / W`` of the
partitions have closed, claiming every closed, successful, not yet announced partition
(:meth:`batchq.store.partitions.PartitionLedger.claim`), and its success emits one partitioned event
per claimed key. Partitions are announced at most ``1 / W`` of the run late, never twice.

Airflow gives all the partition keys of one outlet in one task the same ``extra``: each event's extra
carries the counts of every partition of its wave under ``partitions``, and
:func:`partition_counts` picks the consumer's own by its run's ``partition_key``.

A partition whose failures exceed the spec's tolerance is never claimed: it emits nothing, and the
Batch tab lists it as failed. A wave with nothing left to claim skips (a declared outlet would
otherwise emit an unpartitioned event on success).

A repair can turn such a partition into a success after every wave has run.
:class:`RepairedPartitionsOperator` (``announce_repaired``, after the drain on ``BatchTaskGroup``'s
repair path) claims those under a wave of the repair's own, ``REPAIR_WAVE_BASE + repair id``: a retry
gets back exactly what it claimed, and a later repair of the same run claims only what it turned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import Asset, BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowSkipException

from batchq.airflow.spec_sources import load_spec, spec_reference
from batchq.spec import BatchSpec

#: Waves per run by default: a partition is announced at most 1/8 of the run after it closed.
DEFAULT_WAVES = 8
#: Waves at and above this number are repairs' announcements (``REPAIR_WAVE_BASE + repair id``); a
#: run's own waves are ``0 .. waves - 1``.
REPAIR_WAVE_BASE = 1_000_000
#: What a task needs to emit partitioned events (Task SDK 1.3: ``OutletEventAccessor.add_partitions``).
NEEDS = "Airflow >= 3.3 (the Task SDK's outlet_events[asset].add_partitions)"


def partition_events_supported() -> bool:
    """Whether this Airflow lets a task emit events with its own partition keys. Airflow 3.2 has
    ``PartitionedAssetTimetable`` but stamps every event with the run's own partition key."""
    from airflow.sdk.execution_time.context import OutletEventAccessor

    return hasattr(OutletEventAccessor, "add_partitions")


def partitions_asset(batch: str) -> Asset:
    """The Asset a run's partitioned results events update: ``batchq://<batch>/partitions``
    (one event per partition key; the run-wide ``batchq://<batch>/results`` stays unpartitioned)."""
    from batchq.airflow.assets import partitions_uri

    return Asset(partitions_uri(batch))


def partition_counts(context: Mapping[str, Any]) -> dict[str, Any] | None:
    """In a DAG scheduled by ``PartitionedAssetTimetable`` on :func:`partitions_asset`: this run's
    partition counts (``expected``, ``succeeded``, ``failed``, ``outcome``, ``closed_at``, plus
    ``batch``, ``run_id`` and ``partition``) from the triggering event, or ``None``."""
    run = context.get("dag_run")
    key = getattr(run, "partition_key", None)
    events = context.get("triggering_asset_events") or {}
    for _asset, evs in events.items():
        for ev in reversed(list(evs)):
            extra = getattr(ev, "extra", None) or {}
            part = (extra.get("partitions") or {}).get(key) if key else None
            if part is not None:
                return {**part, "batch": extra.get("batch"), "run_id": extra.get("run_id"), "partition": key}
    return None


def _partitioned_spec(task_id: str | None, spec: BatchSpec | str, *stores: str | None) -> BatchSpec:
    """The spec, checked at DAG parse: it has ``partition_by``, and one of the results store's arguments is given."""
    loaded = load_spec(spec)
    if not loaded.partition_by:
        raise ValueError(f"{task_id}: spec {loaded.name!r} has no partition_by: nothing to announce")
    if not any(stores):
        raise ValueError(f"{task_id}: give the results store: sink=/sink_conn_id= (SQL) or ledger=/ledger_conn_id=")
    return loaded


def _ledger_url(task_id: str, sink: str | None, sink_conn_id: str | None, ledger: str | None, ledger_conn_id: str | None) -> str:
    from airflow.sdk import BaseHook

    from batchq.airflow.operators.drain import sink_target_from_connection

    url = ledger or (sink_target_from_connection(BaseHook.get_connection(ledger_conn_id)) if ledger_conn_id else None)
    url = url or sink or sink_target_from_connection(BaseHook.get_connection(sink_conn_id))
    if url.startswith(("http://", "https://")):
        raise ValueError(f"{task_id}: an HTTP sink keeps its ledger elsewhere: give ledger= or ledger_conn_id=")
    return url


class PartitionWaveSensor(BaseSensorOperator):
    """One wave of a run's partition announcements (map it over ``range(waves)``).

    Each poke reads the partition ledger the drain keeps (``batchq_partitions``); when the wave is due
    (:func:`batchq.store.partitions.wave_due`) it claims the closed, successful, unannounced partitions
    and succeeds, emitting one event per partition key on :func:`partitions_asset` with the wave's
    counts in the extra. Runs in ``reschedule`` mode by default: between pokes it holds no worker slot.

    :param spec: the batch spec (must have ``partition_by``).
    :param wave: this task's wave, ``0 .. waves - 1`` (mapped).
    :param waves: how many waves the run's partitions are announced in.
    :param sink: / ``sink_conn_id`` / ``ledger`` / ``ledger_conn_id``: the results store, as for
        :class:`~batchq.airflow.operators.drain.ResultsDrainOperator`.
    :param run_id: the run key (templated, default ``{{ run_id }}``).
    """

    template_fields: Sequence[str] = ("run_id", "sink", "ledger")
    ui_color = "#e4f3ff"

    def __init__(
        self,
        *,
        spec: BatchSpec | str,
        wave: int,
        waves: int = DEFAULT_WAVES,
        sink: str | None = None,
        sink_conn_id: str | None = None,
        ledger: str | None = None,
        ledger_conn_id: str | None = None,
        run_id: str = "{{ run_id }}",
        **kwargs: Any,
    ):
        loaded = _partitioned_spec(kwargs.get("task_id"), spec, sink, sink_conn_id, ledger, ledger_conn_id)
        kwargs.setdefault("outlets", [partitions_asset(loaded.name)])
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 10)
        kwargs.setdefault("timeout", 12 * 3600)  # the drain's default drain_timeout
        super().__init__(**kwargs)
        self.spec = spec_reference(spec)
        self.batch = loaded.name
        self.partition_by = list(loaded.partition_by)
        self.wave, self.waves = int(wave), int(waves)
        if not 0 <= self.wave < self.waves:
            raise ValueError(f"{kwargs.get('task_id')}: wave must be 0..{self.waves - 1}, got {wave}")
        self.sink, self.sink_conn_id = sink, sink_conn_id
        self.ledger, self.ledger_conn_id = ledger, ledger_conn_id
        self.run_id = run_id

    def poke(self, context: Any) -> bool:
        from batchq.store import ResultsStore
        from batchq.store.partitions import PartitionLedger, wave_due

        store = ResultsStore(_ledger_url(self.task_id, self.sink, self.sink_conn_id, self.ledger, self.ledger_conn_id))
        try:
            ledger = PartitionLedger(store.engine, self.batch, self.run_id, self.partition_by)
            statuses = ledger.statuses()
            closed = sum(1 for s in statuses if s.closed)
            if not wave_due(self.wave, self.waves, statuses):
                self.log.info("wave %d/%d: %d of %d partition(s) closed; not due yet", self.wave + 1, self.waves, closed, len(statuses))
                return False
            claimed = ledger.claim(self.wave)
        finally:
            store.close()
        if not claimed:
            raise AirflowSkipException(f"wave {self.wave + 1}/{self.waves}: no closed partition left to announce")
        _announce(context, self.batch, self.run_id, claimed, {"wave": self.wave})
        self.log.info("wave %d/%d: announced %d partition(s): %s", self.wave + 1, self.waves, len(claimed), _names(claimed))
        return True


class RepairedPartitionsOperator(BaseOperator):
    """Announce the partitions a repair turned successful (``announce_repaired``, after the drain).

    The run's waves ran before the repair and never claim a failed partition; once the repair's
    results are in, its partitions read ``succeeded`` and nothing would announce them. This task
    claims them under the wave ``REPAIR_WAVE_BASE + <the run's latest repair id>`` and emits one event
    per key, the extra carrying ``repair_id``. It skips when the run has no repair (a first run) or the
    repair turned no partition.

    Runs wherever the drain of a repair ran: a repair run (``repair_run_id``), or the failed run itself
    when ``rerun_failed`` was cleared with its downstream tasks. After a ``batchq rerun`` from the CLI,
    clear this task in the repaired run. Arguments as :class:`PartitionWaveSensor`, without the waves.
    """

    template_fields: Sequence[str] = ("run_id", "sink", "ledger")
    ui_color = "#e4f3ff"

    def __init__(
        self,
        *,
        spec: BatchSpec | str,
        sink: str | None = None,
        sink_conn_id: str | None = None,
        ledger: str | None = None,
        ledger_conn_id: str | None = None,
        run_id: str = "{{ run_id }}",
        **kwargs: Any,
    ):
        loaded = _partitioned_spec(kwargs.get("task_id"), spec, sink, sink_conn_id, ledger, ledger_conn_id)
        kwargs.setdefault("outlets", [partitions_asset(loaded.name)])
        super().__init__(**kwargs)
        self.spec = spec_reference(spec)
        self.batch = loaded.name
        self.partition_by = list(loaded.partition_by)
        self.sink, self.sink_conn_id = sink, sink_conn_id
        self.ledger, self.ledger_conn_id = ledger, ledger_conn_id
        self.run_id = run_id

    def execute(self, context: Any) -> dict[str, Any]:
        from batchq.store import ResultsStore
        from batchq.store.partitions import PartitionLedger

        store = ResultsStore(_ledger_url(self.task_id, self.sink, self.sink_conn_id, self.ledger, self.ledger_conn_id))
        try:
            repairs = store.repairs(self.batch, self.run_id)
            if not repairs:
                raise AirflowSkipException(f"run {self.run_id!r} has no repair: its waves announced its partitions")
            repair_id = int(repairs[-1]["id"])
            claimed = PartitionLedger(store.engine, self.batch, self.run_id, self.partition_by).claim(REPAIR_WAVE_BASE + repair_id)
        finally:
            store.close()
        if not claimed:
            raise AirflowSkipException(f"repair {repair_id} of run {self.run_id!r} turned no partition successful")
        _announce(context, self.batch, self.run_id, claimed, {"repair_id": repair_id})
        self.log.info("repair %d: announced %d repaired partition(s): %s", repair_id, len(claimed), _names(claimed))
        return {"repair_id": repair_id, "partitions": [s.partition for s in claimed]}


def _names(claimed: Sequence[Any]) -> str:
    return ", ".join(s.partition for s in claimed[:20]) + (f", … ({len(claimed)} in all)" if len(claimed) > 20 else "")


def _announce(context: Any, batch: str, run_id: str, claimed: Sequence[Any], origin: Mapping[str, Any]) -> None:
    """Emit one partitioned event per claimed partition on the batch's partitions Asset (at success)."""
    keys = [s.partition for s in claimed]
    accessor = context["outlet_events"][partitions_asset(batch)]
    if not hasattr(accessor, "add_partitions"):
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"partitioned results events need {NEEDS}; {len(keys)} closed partition(s) stay unannounced")
    accessor.add_partitions(keys)
    # One extra for every key of this task (Airflow shares it); partition_counts() picks one.
    accessor.extra = {"batch": batch, "run_id": run_id, **origin, "partitions": {s.partition: s.counts() for s in claimed}}
