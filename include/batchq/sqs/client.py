"""The one botocore configuration, and boto3 clients for the Airflow-free side (workers, drainer, CLI,
benchmarks).

:func:`botocore_config` is the single retry/timeout policy for every SQS client batchq makes: the
Airflow hook merges it under the connection's own settings, :func:`sqs_client` uses it as is. botocore
owns whole-call retries (throttles, 5xx, connection errors) within it; batchq itself retries only what
botocore cannot see — the ``Failed`` entries of a batch call (:mod:`batchq.sqs.retry`).

Endpoint and region come from arguments or the standard environment (``AWS_ENDPOINT_URL_SQS`` /
``AWS_ENDPOINT_URL`` are honoured by botocore itself), so the same code talks to AWS, LocalStack or
moto.
"""

from __future__ import annotations

import os
from typing import Any

from batchq import limits

#: Retry mode: ``standard`` backs off with jitter, retries throttles, 5xx and connection errors, and
#: keeps a retry quota so that an outage does not turn into a retry storm.
RETRY_MODE = "standard"
#: Attempts per call, the first included. With standard mode's backoff (random up to 1, 2, 4, 8 s) a
#: failing call gives up after ~15 s at worst.
TOTAL_MAX_ATTEMPTS = 5
#: ``retries`` for a probe whose failure is an answer, not a fault (see :func:`single_attempt`).
SINGLE_ATTEMPT_RETRIES = {"mode": RETRY_MODE, "total_max_attempts": 1}
#: Seconds to open a connection; an endpoint that takes longer is down, and the retry will say so.
CONNECT_TIMEOUT_S = 5
#: Seconds to wait for a response. ReceiveMessage long-polls up to 20 s, so a shorter read timeout would
#: abort (and retry) every idle poll; 10 s of margin covers a slow response after a full wait.
READ_TIMEOUT_S = limits.MAX_WAIT_TIME_SECONDS + 10
#: HTTP connections per client: fan-out sends and worker batches run calls from several threads at once
#: (botocore's default of 10 would make them queue for a connection).
MAX_POOL_CONNECTIONS = 32


def botocore_config(**overrides: Any) -> Any:
    """The botocore :class:`~botocore.config.Config` every batchq SQS client uses.

    :param overrides: any ``Config`` argument, replacing batchq's value (e.g. ``max_pool_connections=64``,
        or ``retries={"mode": "standard", "total_max_attempts": 1}`` for a probe that must not retry).
    """
    from botocore.config import Config

    options: dict[str, Any] = {
        "retries": {"mode": RETRY_MODE, "total_max_attempts": TOTAL_MAX_ATTEMPTS},
        "connect_timeout": CONNECT_TIMEOUT_S,
        "read_timeout": READ_TIMEOUT_S,
        "max_pool_connections": MAX_POOL_CONNECTIONS,
    }
    options.update(overrides)
    return Config(**options)


def sqs_client(
    endpoint_url: str | None = None,
    region_name: str | None = None,
    max_pool_connections: int = MAX_POOL_CONNECTIONS,
    **config_overrides: Any,
) -> Any:
    """A boto3 SQS client with :func:`botocore_config`.

    :param endpoint_url: SQS endpoint; default ``BATCHQ_SQS_ENDPOINT``, else botocore's own resolution.
    :param region_name: default ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else ``us-east-1``.
    :param max_pool_connections: HTTP connections kept (at least the number of threads calling at once).
    :param config_overrides: further :func:`botocore_config` overrides.
    """
    import boto3

    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url or os.environ.get("BATCHQ_SQS_ENDPOINT") or None,
        region_name=region_name or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=botocore_config(max_pool_connections=max_pool_connections, **config_overrides),
    )


def single_attempt(config: Any) -> Any:
    """``config`` with botocore's retries off: for a probe whose failure is an answer, not a fault
    (an endpoint without StartMessageMoveTask answers HTTP 500, which would otherwise be retried)."""
    from botocore.config import Config

    return config.merge(Config(retries=dict(SINGLE_ATTEMPT_RETRIES)))


def describe_aws_error(exc: BaseException) -> str:
    """What may be shown of an SQS/AWS error: its code and the operation, never its message.

    AWS error messages carry account ids, role and queue ARNs and endpoint URLs (``User:
    arn:aws:sts::123456789012:assumed-role/... is not authorized``); a response, a page, an XCom or a
    notification gets ``AccessDenied on GetQueueAttributes`` instead. botocore's own errors (timeouts,
    unreachable endpoints) are reduced to their class name, which names the failure and no host.
    """
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str((response.get("Error") or {}).get("Code") or "Error")
        operation = getattr(exc, "operation_name", None)
        return f"{code[:64]} on {operation}" if operation else code[:64]
    return type(exc).__name__


def describe_error(exc: BaseException) -> str:
    """Any error as it may be shown or stored (an event, an XCom, a summary): an AWS/botocore error by
    :func:`describe_aws_error`, anything else as its type and its text through
    :func:`batchq.errors.safe_error_text` (masked inside Airflow, capped)."""
    from batchq.errors import safe_error_text

    if isinstance(getattr(exc, "response", None), dict) or type(exc).__module__.startswith(("botocore", "aiobotocore")):
        return describe_aws_error(exc)
    return safe_error_text(f"{type(exc).__name__}: {exc}")
