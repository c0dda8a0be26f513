"""``DlqRedriveOperator``: move dead-lettered payloads back to the input queue (after a fix), with
StartMessageMoveTask where the endpoint supports it and receive/send/delete where it does not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import AirflowException

from batchq.airflow import settings
from batchq.airflow.hook import BatchqSqsHook
from batchq.spec import BatchSpec
from batchq.sqs import get_queue_url


class DlqRedriveOperator(AwsBaseOperator[BatchqSqsHook]):
    """Move messages from a dead-letter queue back to a queue.

    :param spec: a :class:`BatchSpec`, YAML path or spec name: redrive its input DLQ to its input queue.
    :param dlq: dead-letter queue name or URL (instead of ``spec``).
    :param target: destination queue name or URL (instead of ``spec``).
    :param method: ``auto`` (move task, falling back to manual), ``move-task`` or ``manual``.
    :param max_messages: move at most this many (manual method).
    :param timeout: seconds to wait for the move.
    """

    aws_hook_class = BatchqSqsHook
    template_fields: Sequence[str] = (*aws_template_fields(), "dlq", "target")

    def __init__(
        self,
        *,
        spec: BatchSpec | str | None = None,
        dlq: str | None = None,
        target: str | None = None,
        method: str = "auto",
        max_messages: int | None = None,
        timeout: float = 600.0,
        **kwargs: Any,
    ):
        kwargs.setdefault("aws_conn_id", settings.default_aws_conn_id())
        super().__init__(**kwargs)
        if spec is not None:
            from batchq.airflow.spec_sources import load_spec

            loaded = load_spec(spec)
            dlq, target = dlq or loaded.queues.input_dlq, target or loaded.queues.input
        if not dlq or not target:
            raise ValueError(f"{self.task_id}: give spec= or both dlq= and target=")
        self.dlq, self.target, self.method = dlq, target, method
        self.max_messages, self.redrive_timeout = max_messages, timeout

    def execute(self, context: Any) -> dict[str, Any]:
        from batchq.sqs.redrive import redrive

        client = self.hook.get_conn()
        dlq_url, target_url = (get_queue_url(client, name) for name in (self.dlq, self.target))
        report = redrive(client, dlq_url, target_url, method=self.method, max_messages=self.max_messages,
                         timeout_s=self.redrive_timeout, probe_client=self.hook.get_probe_conn())
        self.log.info("redrive %s → %s: %s", self.dlq, self.target, report.to_dict())
        if report.fallback_reason:
            self.log.info("StartMessageMoveTask unavailable (%s); used receive/send/delete", report.fallback_reason)
        if report.failed:
            raise AirflowException(f"{self.task_id}: {len(report.failed)} message(s) not moved: {list(report.failed.items())[:5]}")
        return report.to_dict()
