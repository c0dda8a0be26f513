"""batchq as an Airflow provider: what ``airflow providers list`` shows and the provider manager registers.

Registered as the ``apache_airflow_provider`` entry point (pyproject.toml), like every provider package:
the hooks and their connection types with their form fields (``batchq_http``, the real-time system's HTTP
endpoint), the operators, sensors and triggers, and the ``batchq://`` asset URI scheme (normaliser,
factory and OpenLineage converter, :mod:`batchq.airflow.assets`). The views and the API stay a plugin
(:mod:`batchq.airflow.plugin`): providers cannot mount those.

Called by every Airflow process at start: it imports nothing but batchq's own constants.
"""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """The provider info dict (Airflow's ``provider_info.schema.json``)."""
    from batchq import __version__
    from batchq.airflow.sinks_form import HTTP_SINK_CONN_FIELDS, HTTP_SINK_UI_BEHAVIOUR

    return {
        "package-name": "batchq",
        "name": "batchq",
        "description": "Asynchronously decoupled batch runs on Amazon SQS: fan-out, wait, paced drain into any SQL or HTTP sink.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": "batchq", "tags": ["service"]},
        ],
        "operators": [
            {
                "integration-name": "batchq",
                "python-modules": [
                    "batchq.airflow.operators.fanout",
                    "batchq.airflow.operators.drain",
                    "batchq.airflow.operators.queues",
                    "batchq.airflow.operators.redrive",
                    "batchq.airflow.operators.repair",
                    "batchq.airflow.operators.partitions",
                ],
            }
        ],
        "sensors": [{"integration-name": "batchq", "python-modules": ["batchq.airflow.sensors"]}],
        "triggers": [{"integration-name": "batchq", "python-modules": ["batchq.airflow.triggers"]}],
        "hooks": [{"integration-name": "batchq", "python-modules": ["batchq.airflow.hook", "batchq.airflow.sinks"]}],
        "connection-types": [
            {
                "hook-class-name": "batchq.airflow.sinks.BatchqHttpSinkHook",
                "hook-name": "batchq HTTP sink",
                "connection-type": "batchq_http",
                "conn-fields": HTTP_SINK_CONN_FIELDS,
                "ui-field-behaviour": HTTP_SINK_UI_BEHAVIOUR,
            }
        ],
        "asset-uris": [
            {
                "schemes": ["batchq"],
                "handler": "batchq.airflow.assets.sanitize_uri",
                "factory": "batchq.airflow.assets.create_asset",
                "to_openlineage_converter": "batchq.airflow.assets.convert_asset_to_openlineage",
            }
        ],
    }
