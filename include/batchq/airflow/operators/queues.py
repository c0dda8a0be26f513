"""Queue provisioning as its own task: :class:`EnsureQueuesOperator`.

A DAG that creates its queues shows it: ``ensure_queues >> plan_shards >> fan_out ...``. Creating queues
is idempotent (existing queues are converged to the spec), so the task runs on every DAG run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from batchq.airflow import settings
from batchq.airflow.hook import BatchqSqsHook
from batchq.airflow.spec_sources import load_spec, spec_reference
from batchq.spec import BatchSpec


class EnsureQueuesOperator(AwsBaseOperator[BatchqSqsHook]):
    """Create (or converge) a spec's input and results queues, each with its dead-letter queue and
    redrive policy. Returns (XCom) their URLs: ``{"input", "input_dlq", "results", "results_dlq"}`` —
    pass ``.output`` to ``plan_shards(queues=...)``::

        queues = EnsureQueuesOperator(task_id="ensure_queues", spec="customer_batch")
        shards = plan_shards(spec="customer_batch", queues=queues.output)

    :param spec: a :class:`BatchSpec`, a YAML path, or a spec name in ``[batchq] spec_dir`` (only its
        ``queues`` section is used; no dimension source is resolved).
    :param aws_conn_id: AWS connection (default ``[batchq] default_aws_conn_id``); local endpoints via
        its ``endpoint_url`` extra.
    :param region_name: AWS region.
    :param verify: verify SSL certificates.
    :param botocore_config: botocore client config (dict).
    """

    aws_hook_class = BatchqSqsHook
    template_fields: Sequence[str] = aws_template_fields()
    ui_color = "#e8f5e4"

    def __init__(self, *, spec: BatchSpec | str | os.PathLike[str], **kwargs: Any) -> None:
        kwargs.setdefault("aws_conn_id", settings.default_aws_conn_id())
        super().__init__(**kwargs)
        self.spec = spec_reference(spec)

    def execute(self, context: Any) -> dict[str, str]:
        queues = load_spec(self.spec).queues
        urls = self.hook.ensure_queues(queues).to_dict()
        self.log.info("queues ready: %s", urls)
        return urls
