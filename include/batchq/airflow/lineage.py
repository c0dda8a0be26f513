"""OpenLineage datasets of a batch: what the fan-out reads and writes, and what the drain reads and writes.

* Fan-out: inputs are the spec's sources — the spec file itself (OpenLineage's local file naming:
  namespace ``file``, name its path) and every dimension ``source`` (``variable:NAME`` → namespace
  ``airflow``, name ``variable/NAME``; ``callable:mod:fn`` → namespace ``python``, name ``mod:fn``:
  OpenLineage names neither, so batchq does, stably); the output is the SQS input queue.
* Drain: the input is the results queue, the output the sink: a table (``batchq_results``) named by
  OpenLineage's database conventions (``postgres://{host}:{port}`` + ``{database}.{schema}.{table}``,
  ``mysql://{host}:{port}`` + ``{database}.{table}``, the same shape for other dialects; SQLite is a
  local file), or an HTTP endpoint (namespace ``{scheme}://{host}:{port}``, name its path).
* SQS queues, which OpenLineage's naming table does not cover, are named like its other AWS resources
  (AWS Glue: ``arn:aws:glue:{region}:{account id}``): namespace ``arn:aws:sqs:{region}:{account id}``,
  name the queue name — the queue's ARN split at its last colon, so both tasks name one queue alike.

Pure functions over URLs (no credentials ever reach a dataset); the operators call :func:`operator_lineage`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchq.spec import BatchSpec

#: The table every SQL sink writes results into (:mod:`batchq.store`).
RESULTS_TABLE = "batchq_results"
#: Default ports, so a URL without one still names the same datasource.
_DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306, "mssql": 1433, "oracle": 1521, "http": 80, "https": 443}
_SQS_HOST = re.compile(r"^(?:[\w-]+\.)?sqs[.-](?P<region>[a-z0-9-]+)\.amazonaws\.com")


def sqs_dataset_names(queue_url: str, *, arn: str | None = None, region: str | None = None) -> tuple[str, str]:
    """``(namespace, name)`` of a queue: from its ARN when known (``GetQueueAttributes``), else from its
    URL (``https://sqs.{region}.amazonaws.com/{account}/{name}``; a local endpoint's region is ``region``)."""
    if arn and arn.startswith("arn:") and arn.count(":") >= 5:
        namespace, _, name = arn.rpartition(":")
        return namespace, name
    parts = urlsplit(queue_url)
    path = [p for p in parts.path.split("/") if p]
    if len(path) < 2:  # a bare queue name
        return f"arn:aws:sqs:{region or 'unknown'}:unknown", queue_url.rstrip("/").rsplit("/", 1)[-1]
    m = _SQS_HOST.match(parts.hostname or "")
    return f"arn:aws:sqs:{m.group('region') if m else region or 'unknown'}:{path[-2]}", path[-1]


def sql_dataset_names(url: str, table: str = RESULTS_TABLE) -> tuple[str, str]:
    """``(namespace, name)`` of a SQL sink's results table from its SQLAlchemy URL (credentials dropped)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return "file", str(Path(u.database or ":memory:").resolve()) if u.database not in (None, "", ":memory:") else ":memory:"
    scheme = {"postgresql": "postgres", "mariadb": "mysql"}.get(backend, backend)
    port = u.port or _DEFAULT_PORTS.get(scheme)
    namespace = f"{scheme}://{u.host}" + (f":{port}" if port else "")
    if scheme == "postgres":
        return namespace, f"{u.database}.public.{table}"
    return namespace, f"{u.database}.{table}" if u.database else table


def http_dataset_names(url: str) -> tuple[str, str]:
    """``(namespace, name)`` of an HTTP sink endpoint (no userinfo, no query)."""
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    return f"{parts.scheme}://{parts.hostname}:{port}", parts.path or "/"


def sink_dataset_names(target: str) -> tuple[str, str]:
    """An HTTP or SQL sink target's dataset."""
    return http_dataset_names(target) if target.startswith(("http://", "https://")) else sql_dataset_names(target)


def spec_source_names(spec: BatchSpec, spec_path: str | None) -> list[tuple[str, str]]:
    """The spec file and every dimension source, as datasets (see the module)."""
    names: list[tuple[str, str]] = []
    if spec_path:
        names.append(("file", str(Path(spec_path).resolve())))
    for dim in spec.dimensions:
        source = dim.source or ""
        if source.startswith("variable:"):
            names.append(("airflow", f"variable/{source.removeprefix('variable:')}"))
        elif source.startswith("callable:"):
            names.append(("python", source.removeprefix("callable:")))
    return names


def operator_lineage(inputs: Iterable[tuple[str, str]], outputs: Iterable[tuple[str, str]]) -> Any:
    """An :class:`~airflow.providers.openlineage.extractors.OperatorLineage` of those datasets."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(
        inputs=[Dataset(namespace=ns, name=name) for ns, name in inputs],
        outputs=[Dataset(namespace=ns, name=name) for ns, name in outputs],
    )


def queue_arn(client: Any, queue_url: str) -> str | None:
    """The queue's ARN (one GetQueueAttributes), or None: lineage never fails a task."""
    from batchq.sqs.queues import get_queue_arn

    try:
        return get_queue_arn(client, queue_url)
    except Exception:  # noqa: BLE001 - best effort; the URL still names the queue
        return None
