"""Who may see which batch: a spec is visible to a user who may read a DAG that runs it.

A batch is mapped to its DAGs through the Asset its drain task produces, ``batchq://<batch>/results``
(:func:`batchq.airflow.operators.drain.results_asset`): Airflow records every task's outlets in
``task_outlet_asset_reference`` when it parses a DAG, so the map costs one indexed query and follows
the DAGs as they change, without parsing DAG files or walking serialized DAGs in the API server.

A spec that no DAG produces (yet) is shown only to users who may read *every* DAG (the auth manager's
answer for a DAG check without details), so an unmapped spec never leaks to a user scoped to some DAGs.

**Explicit ownership.** Inference from outlets has a caveat: any DAG author can claim a batch by
declaring its results outlet, and so grant their readers the batch's live queue state. A spec that
names ``owners: [dag ids]`` closes that: only those DAGs grant access, and a results outlet declared
by any other DAG is ignored (and logged once per process).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

RESULTS_ASSET_PREFIX = "batchq://"
RESULTS_ASSET_SUFFIX = "/results"


def batch_of_asset_uri(uri: str) -> str | None:
    """``batchq://customer_batch/results`` → ``customer_batch``; other URIs → ``None``."""
    if uri.startswith(RESULTS_ASSET_PREFIX) and uri.endswith(RESULTS_ASSET_SUFFIX):
        name = uri[len(RESULTS_ASSET_PREFIX) : -len(RESULTS_ASSET_SUFFIX)]
        return name or None
    return None


def results_outlets() -> list[tuple[str, str]]:
    """``(batch, dag_id)`` for every DAG task that declares a batch's results Asset (metadata DB)."""
    from airflow.models.asset import AssetModel, TaskOutletAssetReference
    from airflow.utils.session import create_session
    from sqlalchemy import select

    stmt = (
        select(AssetModel.uri, TaskOutletAssetReference.dag_id)
        .join(TaskOutletAssetReference, TaskOutletAssetReference.asset_id == AssetModel.id)
        .where(AssetModel.uri.like(f"{RESULTS_ASSET_PREFIX}%{RESULTS_ASSET_SUFFIX}"))
    )
    with create_session() as session:
        pairs = [(batch_of_asset_uri(uri), dag_id) for uri, dag_id in session.execute(stmt)]
    return [(batch, dag_id) for batch, dag_id in pairs if batch]


_ignored_logged: set[tuple[str, str]] = set()
_ignored_lock = threading.Lock()


def dags_by_batch(outlets: Iterable[tuple[str, str]], owners: Mapping[str, Sequence[str] | None] | None = None) -> dict[str, set[str]]:
    """The DAGs that grant access to each batch.

    :param outlets: ``(batch, dag_id)`` pairs of declared results outlets (:func:`results_outlets`).
    :param owners: batch → the ``owners`` its spec names (``None``: not named). A batch with owners maps
        to exactly them; another DAG's outlet for it is ignored and logged.
    """
    owners = owners or {}
    mapping: dict[str, set[str]] = {batch: set(named) for batch, named in owners.items() if named is not None}
    for batch, dag_id in outlets:
        named = owners.get(batch)
        if named is None:
            mapping.setdefault(batch, set()).add(dag_id)
        elif dag_id not in named:
            with _ignored_lock:
                first = (batch, dag_id) not in _ignored_logged
                _ignored_logged.add((batch, dag_id))
            if first:
                log.warning("DAG %r declares the results outlet of batch %r, whose spec names owners %s: ignored", dag_id, batch, sorted(named))
    return mapping


def spec_owners() -> dict[str, tuple[str, ...] | None]:
    """batch → its spec's ``owners`` (``None`` when it names none), over the valid specs of ``spec_dir``."""
    from batchq.airflow.views.specs import load_specs

    return {e.spec.name: e.spec.owners for e in load_specs() if e.spec is not None}


class BatchAccess:
    """The batches one user may see, computed once per request.

    :param user: the authenticated Airflow user (``GetUserDep``).
    :param auth: the auth manager (default: the API server's).
    :param outlets: ``(batch, dag_id)`` results outlets (default: :func:`results_outlets`).
    :param owners: batch → spec ``owners`` (default: :func:`spec_owners`).
    """

    def __init__(self, user: Any, *, auth: Any = None, outlets: Iterable[tuple[str, str]] | None = None, owners: Mapping[str, Sequence[str] | None] | None = None):
        if auth is None:
            from airflow.api_fastapi.app import get_auth_manager

            auth = get_auth_manager()
        self.user = user
        self._auth = auth
        self.readable_dags: set[str] = set(self._auth.get_authorized_dag_ids(user=user, method="GET"))
        self.dags_by_batch = dags_by_batch(results_outlets() if outlets is None else outlets, spec_owners() if owners is None else owners)
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
