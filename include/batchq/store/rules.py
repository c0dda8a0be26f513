"""The store's rules as pure functions: which result of a key wins, and whether a plan produces a key.

Both are decided here once; :mod:`batchq.store.results` applies them inside its one transaction (and
mirrors :func:`replaces` in the upsert's ``WHERE`` so concurrent drainers agree), and the HTTP sink
applies :func:`merge_duplicates` to what it posts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import logging

from batchq.messages import WorkResult
from batchq.plan import Plan, idempotency_key
from batchq.spec import BatchSpec


log = logging.getLogger(__name__)

#: Largest plan whose key set is kept for results without dims (~100 bytes a key): beyond it such
#: results cannot be judged and count as before (results of current workers always carry dims).
MAX_KEY_SET = 2_000_000


def merge_duplicates(results: Sequence[WorkResult]) -> list[WorkResult]:
    """Collapse results for the same key into the one that must win: ``succeeded`` beats ``failed``
    whatever the order they arrived in; among equals the first is kept. (What an HTTP sink posts; the
    SQL store decides with :func:`replaces`, which also knows the run's plan.)"""
    chosen: dict[str, WorkResult] = {}
    for r in results:
        prev = chosen.get(r.key)
        if prev is None or (prev.status == "failed" and r.status == "succeeded"):
            chosen[r.key] = r
    return list(chosen.values())


def replaces(existing: Mapping[str, Any] | None, incoming: WorkResult, current_plan: str | None) -> bool:
    """Does ``incoming`` replace the key's stored row (``plan``, ``status``)?

    * same plan: only a success replaces a failure (a late failed duplicate never undoes a success);
    * another plan: the row belongs to the plan the run counts (``current_plan``): its result is
      never replaced by another plan's, and replaces any other plan's; between two plans the run does
      not count, a failure still never replaces a success.
    """
    if existing is None:
        return True
    if existing["plan"] == incoming.plan:
        return existing["status"] == "failed" and incoming.status == "succeeded"
    if current_plan is not None:
        if incoming.plan == current_plan:
            return True
        if existing["plan"] == current_plan:
            return False
    return not (existing["status"] == "succeeded" and incoming.status == "failed")


class PlanMembership:
    """Which keys one plan produces, in O(1) per result that carries its dims.

    A result is the plan's when its dims are a combination of the plan (each value one of its
    dimension's, same JSON type; not excluded) and its key is the plan's key of those dims. Results
    without dims (older workers) fall back to the plan's key set, streamed once and kept.

    :param spec_json: the resolved spec of the plan (``BatchSpec.model_dump_json()``).
    """

    def __init__(self, spec_json: str, run_id: str, dag_id: str | None):
        self.plan = Plan(BatchSpec.model_validate_json(spec_json), run_id, dag_id=dag_id)
        self._index = [{(type(v), v): i for i, v in enumerate(values)} for values in self.plan.values]
        self._keys: frozenset[str] | None = None

    @property
    def fingerprint(self) -> str:
        return self.plan.fingerprint

    def produces(self, key: str, dims: Mapping[str, Any] | None) -> bool:
        plan = self.plan
        if dims is None:
            if plan.expected > MAX_KEY_SET:
                if self._keys is None:
                    log.warning("plan %s: %d keys, too many to keep: results without dims are not checked", plan.fingerprint, plan.expected)
                    self._keys = frozenset()
                return True
            if self._keys is None:
                self._keys = frozenset(k for shard in plan.shards() for k, _ in plan.iter_bodies(shard))
            return key in self._keys
        if len(dims) != len(plan.names):
            return False
        digits = []
        for index, name in zip(self._index, plan.names):
            if name not in dims:
                return False
            value = dims[name]
            try:
                i = index.get((type(value), value))
            except TypeError:  # an unhashable value is no dimension value
                return False
            if i is None:
                return False
            digits.append(i)
        if plan.is_excluded(digits):
            return False
        return idempotency_key(plan.spec.name, plan.run_id, dict(dims), plan.dag_id) == key
