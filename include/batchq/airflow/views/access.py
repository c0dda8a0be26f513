"""Who may see which batch: a spec is visible to a user who may read a DAG that runs it.

A batch is mapped to its DAGs through the Asset its drain task produces, ``batchq://<batch>/results``
(:func:`batchq.airflow.operators.drain.results_asset`): Airflow records every task's outlets in
``task_outlet_asset_reference`` when it parses a DAG, so the map costs one indexed query and follows
the DAGs as they change, without parsing DAG files or walking serialized DAGs in the API server.

A spec that no DAG produces (yet) is shown only to users who may read *every* DAG (the auth manager's
answer for a DAG check without details), so an unmapped spec never leaks to a user scoped to some DAGs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

RESULTS_ASSET_PREFIX = "batchq://"
RESULTS_ASSET_SUFFIX = "/results"


def batch_of_asset_uri(uri: str) -> str | None:
    """``batchq://customer_batch/results`` → ``customer_batch``; other URIs → ``None``."""
    if uri.startswith(RESULTS_ASSET_PREFIX) and uri.endswith(RESULTS_ASSET_SUFFIX):
        name = uri[len(RESULTS_ASSET_PREFIX) : -len(RESULTS_ASSET_SUFFIX)]
        return name or None
    return None


def dags_by_batch() -> dict[str, set[str]]:
    """Every batch name that some DAG's task produces, with those DAG ids (from the metadata DB)."""
    from airflow.models.asset import AssetModel, TaskOutletAssetReference
    from airflow.utils.session import create_session
    from sqlalchemy import select

    stmt = (
        select(AssetModel.uri, TaskOutletAssetReference.dag_id)
        .join(TaskOutletAssetReference, TaskOutletAssetReference.asset_id == AssetModel.id)
        .where(AssetModel.uri.like(f"{RESULTS_ASSET_PREFIX}%{RESULTS_ASSET_SUFFIX}"))
    )
    mapping: dict[str, set[str]] = {}
    with create_session() as session:
        for uri, dag_id in session.execute(stmt):
            batch = batch_of_asset_uri(uri)
            if batch:
                mapping.setdefault(batch, set()).add(dag_id)
    return mapping


class BatchAccess:
    """The batches one user may see, computed once per request.

    :param user: the authenticated Airflow user (``GetUserDep``).
    """

    def __init__(self, user: Any):
        from airflow.api_fastapi.app import get_auth_manager

        self.user = user
        self._auth = get_auth_manager()
        self.readable_dags: set[str] = self._auth.get_authorized_dag_ids(user=user, method="GET")
        self.dags_by_batch = dags_by_batch()
        self._all_dags: bool | None = None

    @property
    def reads_all_dags(self) -> bool:
        if self._all_dags is None:
            self._all_dags = bool(self._auth.is_authorized_dag(method="GET", user=self.user))
        return self._all_dags

    def dags_of(self, batch: str) -> list[str]:
        """The DAGs running ``batch`` that this user may read, sorted."""
        return sorted(self.dags_by_batch.get(batch, set()) & self.readable_dags)

    def may_see(self, batch: str) -> bool:
        if batch in self.dags_by_batch:
            return bool(self.dags_of(batch))
        return self.reads_all_dags

    def visible(self, batches: Iterable[str]) -> list[str]:
        return [b for b in batches if self.may_see(b)]
