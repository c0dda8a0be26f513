"""The top of the pattern: plan a run into shards, then send each shard to the input queue.

``plan_shards`` (a ``@task``) resolves the spec and plans the run arithmetically (the queues come from
:class:`~batchq.airflow.operators.queues.EnsureQueuesOperator`, its own task before it);
:class:`FanOutOperator`, mapped over its shards, streams one shard's payloads into SQS with
SendMessageBatch, several calls in flight. Task count grows with shards (≤ ``max_shards``), never with
payloads, and memory stays flat: the product is never materialised.

Retries are safe: a failed shard is re-sent whole on task retry, and every payload carries its idempotency
key (a hash of batch, run id and dims), so the copies it re-sends are duplicates that workers and sinks
collapse by key.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import task

from batchq import xcom_keys
from batchq.airflow import settings
from batchq.airflow.hook import BatchqSqsHook
from batchq.airflow.spec_sources import resolve_spec, spec_reference
from batchq.errors import QueueNotFound, SendFailed, SpecError

# spec_fingerprint: fan-out tasks compare it with the planner's: if a ``variable:`` source changed
# between planning and sending, shard ranges would no longer mean the same payloads.
from batchq.plan import Plan, Shard, spec_fingerprint
from batchq.spec import BatchSpec
from batchq.sqs import get_queue_url

#: Shown for each mapped fan-out task instead of its bare map index (rendered with ``task`` = this operator).
SHARD_MAP_INDEX_TEMPLATE = "{{ task.shard_label }}"
#: Unsent keys listed in the task's error (all of them go to the task log).
_KEYS_IN_ERROR = 20


class ShardNotSent(SendFailed):
    """Some payloads of a shard could not be sent after retries: the message names the shard and the unsent
    keys (all of them are in the task log), and says that a retry re-sends the shard."""

    def __init__(self, shard: Shard, failed: dict[str, str], sent: int, produced: int):
        super().__init__(failed, sent=sent)
        self.shard = shard
        keys = list(self.failed)
        more = f" (+{len(keys) - _KEYS_IN_ERROR} more in the log)" if len(keys) > _KEYS_IN_ERROR else ""
        first_reason = next(iter(self.failed.values()), "")
        self.args = (
            f"{shard.label}: {len(keys)} of {produced} payload(s) not sent ({sent} sent; first reason: "
            f"{first_reason}); unsent keys: {', '.join(keys[:_KEYS_IN_ERROR])}{more}. A task retry re-sends "
            "the shard; the duplicates it makes are harmless (idempotency keys).",
        )


@task
def plan_shards(
    spec: BatchSpec | str,
    aws_conn_id: str | None = None,
    queues: Mapping[str, str] | None = None,
    provision: bool = False,
    run_id: str | None = None,
    ti: Any = None,
) -> list[dict[str, Any]]:
    """Plan this run: resolve the spec's sources, count payloads, split into shards.

    Returns the shard list to map the fan-out over (``.expand(shard=...)``); each shard dict also carries
    the run-wide ``queue_url`` and ``spec_fingerprint`` its sender checks. The run summary
    (``expected``, ``product``, ``shards``, ``queues``, ...) is pushed as the XCom ``plan``
    (``shards_xcomarg["plan"]`` in a DAG), e.g. for the drain step's ledger.

    Planning creates nothing: the queues come from ``queues`` — the URLs
    :class:`~batchq.airflow.operators.queues.EnsureQueuesOperator` returns, so the DAG shows provisioning
    as its own task — or are looked up by name (they must exist). ``provision=True`` creates them here
    instead, for a DAG that wants one task fewer.

    :param spec: a :class:`BatchSpec`, a YAML path, or a spec name in ``[batchq] spec_dir``.
    :param aws_conn_id: AWS connection (default ``[batchq] default_aws_conn_id``).
    :param queues: queue URLs (``input``, ``input_dlq``, ``results``, ``results_dlq``), normally
        ``ensure_queues.output``.
    :param provision: create/converge the queues in this task (idempotent). Ignored when ``queues`` is given.
    :param run_id: filled from the task context; part of every idempotency key.
    """
    import logging

    log = logging.getLogger(__name__)
    if not run_id:
        raise ValueError("plan_shards needs the run id (it is part of every payload's idempotency key)")
    resolved = resolve_spec(spec)
    # The DAG id is part of the run's identity: two DAGs sharing a batch name and schedule never share keys.
    plan = Plan(resolved, run_id, dag_id=getattr(ti, "dag_id", None))
    fingerprint = spec_fingerprint(resolved)
    urls = dict(queues) if queues else _queue_urls(resolved, aws_conn_id, provision)
    if not urls.get("input"):
        raise ValueError(f"plan_shards: queues= must map 'input' to the input queue URL, got {dict(urls)!r}")
    summary = {**plan.summary(), "spec_fingerprint": fingerprint, "queues": urls}
    log.info("plan %s", summary)
    if ti is not None:
        ti.xcom_push(key=xcom_keys.PLAN, value=summary)
    return [{**s.to_dict(), "queue_url": urls["input"], "spec_fingerprint": fingerprint, "plan": plan.fingerprint} for s in plan.shards()]


def _queue_urls(spec: BatchSpec, aws_conn_id: str | None, provision: bool) -> dict[str, str]:
    hook = BatchqSqsHook(aws_conn_id=aws_conn_id or settings.default_aws_conn_id())
    if provision:
        return hook.ensure_queues(spec.queues).to_dict()
    try:
        return hook.resolve_queue_urls(spec.queues).to_dict()
    except QueueNotFound as exc:
        raise QueueNotFound(f"{exc}; provision the queues first: an EnsureQueuesOperator task before plan_shards (or provision=True)") from exc


class FanOutOperator(AwsBaseOperator[BatchqSqsHook]):
    """Send one shard of a run's payloads to the spec's input queue.

    Map it over ``plan_shards``' shards::

        shards = plan_shards(spec="customer_batch")
        FanOutOperator.partial(task_id="fan_out", spec="customer_batch").expand(shard=shards)

    Returns (XCom) ``sent``, ``bytes``, ``calls``, ``retried_entries``, ``duration_s``, ``failed``,
    plus ``shard``, ``expected`` (payloads in the shard) and ``queue_url``. If any payload cannot be sent
    after retries the task fails naming the unsent keys; a retry re-sends the shard, and the duplicates
    that makes are harmless (idempotency keys).

    :param spec: a :class:`BatchSpec`, a YAML path, or a spec name in ``[batchq] spec_dir``.
    :param shard: one shard dict from ``plan_shards`` (mapped): ``index``, ``start``, ``stop``, and the
        optional ``queue_url`` and ``spec_fingerprint`` (checked so a mid-run change of a dimension
        source fails loudly instead of sending other payloads than were planned).
    :param run_id: run key for idempotency keys (templated; default ``{{ run_id }}``). Must match the
        planner's.
    :param queue_url: input queue URL; default from the shard dict, else looked up by the spec's queue name.
    :param max_in_flight: concurrent SendMessageBatch calls (default ``[batchq] fanout_max_in_flight``).
    :param aws_conn_id: AWS connection (default ``[batchq] default_aws_conn_id``); local endpoints via
        its ``endpoint_url`` extra.
    :param region_name: AWS region.
    :param verify: verify SSL certificates.
    :param botocore_config: botocore client config (dict).
    :param map_index_template: label of each mapped task in the UI (default: the shard's index range).
    """

    aws_hook_class = BatchqSqsHook
    template_fields: Sequence[str] = (*aws_template_fields(), "run_id", "shard", "queue_url")
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        spec: BatchSpec | str,
        shard: dict[str, Any] | Shard,
        run_id: str = "{{ run_id }}",
        queue_url: str | None = None,
        max_in_flight: int | None = None,
        # A signature default (not a kwargs default) so that .partial() picks it up for mapped tasks.
        map_index_template: str | None = SHARD_MAP_INDEX_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("aws_conn_id", settings.default_aws_conn_id())
        super().__init__(map_index_template=map_index_template, **kwargs)
        self.spec = spec_reference(spec)
        self.shard = shard.to_dict() if isinstance(shard, Shard) else shard
        self.run_id = run_id
        self.queue_url = queue_url
        self.max_in_flight = max_in_flight or settings.fanout_max_in_flight()
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {self.max_in_flight}")

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        # One pooled connection per in-flight call, so threads never queue for a socket.
        return {**super()._hook_parameters, "max_pool_connections": self.max_in_flight}

    @property
    def shard_label(self) -> str:
        """``shard 3: [15,000, 20,000)`` — what the UI shows for this mapped task instance."""
        try:
            return Shard.from_dict(self.shard).label
        except (KeyError, TypeError, ValueError):
            return f"shard {self.shard!r}"

    def execute(self, context: Any) -> dict[str, Any]:
        shard = Shard.from_dict(self.shard)
        spec = resolve_spec(self.spec)
        wanted = self.shard.get("spec_fingerprint") if isinstance(self.shard, dict) else None
        if wanted and spec_fingerprint(spec) != wanted:
            raise SpecError(
                f"spec {spec.name!r} changed since plan_shards ran (fingerprint {spec_fingerprint(spec)} != "
                f"{wanted}): a dimension source changed mid-run; clear the whole run to re-plan"
            )
        plan = Plan(spec, self.run_id, dag_id=self.dag_id if self.has_dag() else None)
        wanted_plan = self.shard.get("plan") if isinstance(self.shard, dict) else None
        if wanted_plan and plan.fingerprint != wanted_plan:
            raise SpecError(
                f"{spec.name!r}: this task's plan {plan.fingerprint} differs from the planner's {wanted_plan} "
                "(another run id or DAG than plan_shards used?): clear the whole run to re-plan"
            )
        if not 0 <= shard.start <= shard.stop <= plan.size:
            raise ValueError(f"{shard.label} lies outside the product [0, {plan.size}) of {spec.name!r}")
        url = self.queue_url or self.shard.get("queue_url") or get_queue_url(
            self.hook.get_conn(), spec.queues.input
        )
        self.log.info("%s of %s run %s → %s (%d in flight)", shard.label, spec.name, self.run_id, url, self.max_in_flight)
        self._lineage_queue_url = url

        produced = 0

        def counted(items: Iterator[tuple[str, ...]]) -> Iterator[tuple[str, ...]]:
            nonlocal produced
            for item in items:
                produced += 1
                yield item

        last_log = [time.monotonic()]

        def progress(report: Any) -> None:
            # The caller's thread calls this after every chunk; log at most every 5 s.
            now = time.monotonic()
            if now - last_log[0] >= 5:
                last_log[0] = now
                self.log.info("%s: sent %d so far (%d calls, %d retried entries)", shard.label, report.sent, report.calls, report.retried_entries)

        try:
            report = self.hook.send_bodies(
                url,
                counted(plan.iter_messages(shard, grouped=spec.fair_queue)),
                max_in_flight=self.max_in_flight,
                on_progress=progress,
                group_ids=spec.fair_queue,
            )
        except SendFailed as exc:
            for key, reason in exc.failed.items():
                self.log.error("not sent: %s (%s)", key, reason)
            raise ShardNotSent(shard, exc.failed, sent=exc.sent, produced=produced) from exc
        result = {
            **report.to_dict(),
            "shard": shard.to_dict(),
            "expected": produced,
            "queue_url": url,
            "batch": spec.name,
            "run_id": self.run_id,
        }
        if report.groups_refused:
            self.log.warning(
                "%s: fair_queue is on but the endpoint refuses MessageGroupId on the standard queue %s (%s); "
                "the shard was sent without it (no fair queueing on this endpoint)", shard.label, url, report.groups_refused,
            )
        rate = report.sent / report.duration_s if report.duration_s else 0.0
        self.log.info("%s: sent %d/%d in %.2fs (%.0f msg/s, %d calls)", shard.label, report.sent, produced, report.duration_s, rate, report.calls)
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the spec's sources in, the SQS input queue out (:mod:`batchq.airflow.lineage`)."""
        from batchq.airflow import lineage
        from batchq.airflow.spec_sources import load_spec

        spec = load_spec(self.spec)
        inputs = lineage.spec_source_names(spec, self.spec if isinstance(self.spec, str) else None)
        url = getattr(self, "_lineage_queue_url", None)
        outputs = []
        if url:
            outputs.append(lineage.sqs_dataset_names(url, arn=lineage.queue_arn(self.hook.get_conn(), url), region=self.region_name))
        return lineage.operator_lineage(inputs, outputs)
