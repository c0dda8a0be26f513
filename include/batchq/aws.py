"""boto3 clients for the Airflow-free side (workers, drainer, CLI, benchmarks).

Endpoint and region come from arguments or the standard environment (``AWS_ENDPOINT_URL_SQS`` /
``AWS_ENDPOINT_URL`` are honoured by botocore itself), so the same code talks to AWS, LocalStack or
moto. The Airflow side gets its clients from the connection via the hook instead.
"""

from __future__ import annotations

import os
from typing import Any


def sqs_client(endpoint_url: str | None = None, region_name: str | None = None, max_pool_connections: int = 32) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url or os.environ.get("BATCHQ_SQS_ENDPOINT") or None,
        region_name=region_name or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=Config(max_pool_connections=max_pool_connections, retries={"mode": "standard", "max_attempts": 5}),
    )
