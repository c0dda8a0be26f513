"""The ``batchq://`` asset URI scheme, registered through the provider info like any provider's own.

``batchq://<batch>/results`` names the results a batch's drain task delivers (the Asset its outlet
updates, the one downstream DAGs schedule on); ``batchq://<batch>/partitions`` is the same results
announced per partition (one event per partition key, spec ``partition_by``: docs/partitions.md), the
Asset a ``PartitionedAssetTimetable`` consumer schedules on. Registering the scheme gives Airflow a normaliser that
refuses a malformed URI at DAG parse time (a typo in a consumer DAG would otherwise wait forever on an
Asset nobody produces), a factory, and the OpenLineage dataset the Asset stands for.

This module imports no Airflow at module level: the provider manager imports it in every Airflow process.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

if TYPE_CHECKING:
    from airflow.sdk import Asset

SCHEME = "batchq"
#: A batch's delivered results (one event per run).
RESULTS_PATH = "/results"
#: The same results, one event per partition as each partition closes.
PARTITIONS_PATH = "/partitions"
_PATHS = (RESULTS_PATH, PARTITIONS_PATH)
#: A batch name as :class:`batchq.spec.BatchSpec` accepts it.
_BATCH_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def results_uri(batch: str) -> str:
    """``batchq://<batch>/results``."""
    return f"{SCHEME}://{batch}{RESULTS_PATH}"


def partitions_uri(batch: str) -> str:
    """``batchq://<batch>/partitions``."""
    return f"{SCHEME}://{batch}{PARTITIONS_PATH}"


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's normaliser for ``batchq://`` URIs: ``batchq://<batch>/results`` or ``/partitions``.

    :raises ValueError: naming what is wrong (Airflow reports it as a DAG import error).
    """
    if not _BATCH_RE.match(uri.netloc or ""):
        raise ValueError(
            f"batchq:// URI {uri.geturl()!r}: the host must be a batch name (1-64 letters, digits, '_' or '-'),"
            " as in batchq://customer_batch/results"
        )
    path = uri.path.rstrip("/") or ""
    if path not in _PATHS or uri.query or uri.fragment:
        raise ValueError(
            f"batchq:// URI {uri.geturl()!r}: the only batchq Assets are batchq://<batch>/results and batchq://<batch>/partitions"
        )
    return uri._replace(path=path)


def create_asset(*, batch: str, extra: dict[str, Any] | None = None) -> Asset:
    """The Asset a batch's drained results update (the provider's ``factory``)."""
    from airflow.sdk import Asset

    return Asset(uri=results_uri(batch), extra=extra)


def convert_asset_to_openlineage(asset: Any, lineage_context: Any = None) -> Any:
    """The OpenLineage dataset of a ``batchq://`` Asset: namespace ``batchq://<batch>``, name ``results``
    (the partitions Asset announces the same data, partition by partition)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    parts = sanitize_uri(urlsplit(asset.uri))
    return Dataset(namespace=f"{SCHEME}://{parts.netloc}", name=RESULTS_PATH.lstrip("/"))
