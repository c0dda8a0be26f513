"""The one way batchq's Airflow code talks to SQS: :class:`BatchqSqsHook`.

It is the provider's :class:`~airflow.providers.amazon.aws.hooks.sqs.SqsHook` (same connection handling:
``aws_conn_id``, region, ``verify``, botocore config, and local endpoints through the connection's
``endpoint_url`` extra) plus the batchq calls from :mod:`batchq.sqs` and :mod:`batchq.sqs.queues`. The hook
only supplies clients, configured with the workers' botocore policy (:func:`batchq.sqs.client.botocore_config`);
the logic lives in the SQS layer, shared with workers, CLI and benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow.providers.amazon.aws.hooks.sqs import SqsHook
from botocore.config import Config

from batchq.sqs import queues as queue_ops
from batchq import sqs
from batchq.airflow import settings
from batchq.spec import QueueSpec
from batchq.sqs.client import botocore_config, single_attempt
from batchq.sqs.snapshot import QueueSnapshot


class BatchqSqsHook(SqsHook):
    """SQS hook for batchq: the provider's hook, with a connection pool sized for threaded sends.

    :param aws_conn_id: Airflow connection for AWS credentials and endpoint (default from
        ``[batchq] default_aws_conn_id``, normally ``aws_default``). Point it at LocalStack or moto with
        the extra ``{"endpoint_url": "http://127.0.0.1:4566"}``.
    :param region_name: AWS region; default from the connection or boto3.
    :param verify: verify SSL certificates (boto3 semantics).
    :param config: botocore config (dict or :class:`botocore.config.Config`); default from the
        connection's ``config_kwargs`` extra. Either is merged over batchq's one policy
        (:func:`batchq.sqs.client.botocore_config`: retry mode and attempts, connect/read timeouts), so a
        connection that sets nothing gets the same retries and timeouts as the workers.
    :param max_pool_connections: HTTP connections the client keeps; raised to at least this so that
        ``max_in_flight`` concurrent calls never wait for a connection (botocore's default is 10).
    """

    hook_name = "Amazon SQS (batchq)"

    def __init__(self, *args: Any, max_pool_connections: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("aws_conn_id", settings.default_aws_conn_id())
        super().__init__(*args, **kwargs)
        self.max_pool_connections = max_pool_connections or max(32, settings.fanout_max_in_flight())

    @property
    def config(self) -> Config:
        """batchq's :func:`~batchq.sqs.client.botocore_config`, overridden by the connection's (or caller's)
        botocore config, with the pool raised to ``max_pool_connections``.

        Overriding this property (rather than passing a config) keeps the provider's precedence: an explicit
        ``config``, else the connection's ``config_kwargs``; only the options they set replace batchq's.
        Sync and async clients (:meth:`get_conn`, :meth:`get_async_conn`) are both built from it.
        """
        provider = super().config
        merged = botocore_config().merge(provider)
        pool = max(provider.max_pool_connections or 0, self.max_pool_connections)
        return merged.merge(Config(max_pool_connections=pool))

    def get_probe_conn(self) -> Any:
        """A client like :meth:`get_conn` whose calls are tried once (:func:`batchq.sqs.client.single_attempt`):
        for a probe whose failure is an answer, e.g. StartMessageMoveTask on an endpoint without it."""
        return self.get_client_type(config=single_attempt(self.config))

    # -- batchq calls over this hook's client ---------------------------------------------------------
    def ensure_queues(self, queues: QueueSpec) -> queue_ops.QueueUrls:
        """Create or converge the input/results queues and their DLQs (idempotent)."""
        return queue_ops.ensure_queues(self.get_conn(), queues)

    def resolve_queue_urls(self, queues: QueueSpec) -> queue_ops.QueueUrls:
        """URLs of the spec's existing queues (:class:`~batchq.errors.QueueNotFound` names a missing one)."""
        return queue_ops.resolve_queue_urls(self.get_conn(), queues)

    def send_bodies(self, queue_url: str, items: Iterable[tuple[str, ...]], **kwargs: Any) -> sqs.SendReport:
        """:func:`batchq.sqs.send_bodies` over this hook's client (same arguments)."""
        return sqs.send_bodies(self.get_conn(), queue_url, items, **kwargs)

    def get_snapshot(self, queue_url: str, dlq_url: str | None = None) -> QueueSnapshot:
        return sqs.get_snapshot(self.get_conn(), queue_url, dlq_url)

    async def aget_snapshot(self, queue_url: str, dlq_url: str | None = None) -> QueueSnapshot:
        """:func:`get_snapshot` on an aiobotocore client from :meth:`get_async_conn` (for triggers)."""
        async with await self.get_async_conn() as client:
            return await sqs.aget_snapshot(client, queue_url, dlq_url)
