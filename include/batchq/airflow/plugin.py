"""The batchq Airflow plugin (registered as the ``airflow.plugins`` entry point ``batchq`` and exposed by
``plugins/batchq_plugin.py``).

It mounts the plugin app (:mod:`batchq.airflow.api`) at ``/batchq`` on Airflow's API server, behind
Airflow's own authentication: the queue-lag JSON API and the Batch views, which Airflow's UI shows as
tabs through ``external_views`` (a "Batches" nav page, a "Batch" tab on every DAG and DAG run; Airflow
fills ``{DAG_ID}``/``{RUN_ID}`` in the ``href`` and shows the page in an iframe). Operators, sensors and triggers are imported from
:mod:`batchq.airflow.operators` / :mod:`batchq.airflow.sensors` like any provider's (Airflow 3 plugins no
longer register operators).
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin


class LazyASGIApp:
    """An ASGI app that builds the real one on its first request.

    Airflow loads plugins in every task process too (for macros), where nobody serves HTTP; building the
    FastAPI app there would import Airflow's API-server security stack (~2 s) for every task. Mounting
    this wrapper costs nothing until the API server routes a request to it.
    """

    def __init__(self, factory_path: str):
        self.factory_path = factory_path
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            import importlib

            module, _, attr = self.factory_path.partition(":")
            self._app = getattr(importlib.import_module(module), attr)()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


#: The ``airflow.plugins`` entry point name (pyproject.toml) and the plugin's name.
PLUGIN_NAME = "batchq"


def registered_by_entry_point() -> bool:
    """Whether an installed distribution registers :class:`BatchqPlugin` as an ``airflow.plugins`` entry
    point (then ``plugins/batchq_plugin.py`` must not expose it a second time)."""
    from importlib.metadata import entry_points

    return any(ep.value.startswith("batchq.airflow.plugin:") for ep in entry_points(group="airflow.plugins", name=PLUGIN_NAME))


#: Where the plugin app is mounted on the API server; the views' hrefs start with it.
URL_PREFIX = "/batchq"


class BatchqPlugin(AirflowPlugin):
    """Registers batchq with Airflow: the authenticated API and Batch views at ``/batchq``, and the UI tabs."""

    name = PLUGIN_NAME
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": LazyASGIApp("batchq.airflow.api:create_app"), "url_prefix": URL_PREFIX, "name": "batchq queue lag"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {"name": "Batches", "href": f"{URL_PREFIX}/ui/", "destination": "nav", "url_route": "batchq-batches"},
        {"name": "Batch", "href": f"{URL_PREFIX}/ui/dags/{{DAG_ID}}", "destination": "dag", "url_route": "batchq-dag"},
        {"name": "Batch", "href": f"{URL_PREFIX}/ui/dags/{{DAG_ID}}/runs/{{RUN_ID}}", "destination": "dag_run", "url_route": "batchq-run"},
    ]
