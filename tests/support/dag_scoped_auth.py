"""A minimal per-DAG auth manager for tests: Airflow's simple auth manager, plus DAG grants.

``BATCHQ_TEST_DAG_GRANTS='{"scoped": ["dag_a"]}'`` limits user ``scoped`` to the DAGs listed (any
method its role allows); a DAG check without a DAG id ("every DAG") is refused for a limited user.
Users not listed keep the simple auth manager's role rules. Configure with
``AIRFLOW__CORE__AUTH_MANAGER=tests.support.dag_scoped_auth.DagScopedAuthManager``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import (
    SimpleAuthManager,
)


def _grants() -> dict[str, set[str]]:
    return {user: set(dags) for user, dags in json.loads(os.environ.get("BATCHQ_TEST_DAG_GRANTS", "{}")).items()}


class DagScopedAuthManager(SimpleAuthManager):
    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        grants = _grants()
        if user.username in grants and (details is None or details.id not in grants[user.username]):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
