"""The ``batchq_http`` connection form: fields and field behaviour, declared once.

The provider info hands them to Airflow (``conn-fields`` / ``ui-field-behaviour``, how Airflow 3.2+ reads a
connection form without importing the hook) and :class:`batchq.airflow.sinks.BatchqHttpSinkHook` answers
``get_ui_field_behaviour`` from them. No Airflow import: every Airflow process reads this at start.
"""

from __future__ import annotations

from typing import Any

#: The ``batchq_http`` connection form (declared in the provider info; Airflow 3.2+ reads it from there).
HTTP_SINK_CONN_FIELDS: dict[str, Any] = {
    "use_https": {"label": "Use HTTPS", "schema": {"type": ["boolean", "null"], "default": True}},
    "token": {"label": "Bearer token", "schema": {"type": ["string", "null"], "format": "password"}},
    "headers": {
        "label": "Extra headers (JSON object)",
        "description": "Sent with every POST, never logged, e.g. {\"X-Tenant\": \"t1\"}",
        "schema": {"type": ["string", "null"]},
    },
}
HTTP_SINK_UI_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["extra"],
    "relabeling": {"schema": "Path", "login": "Login (basic auth)", "password": "Password (basic auth, or a bearer token without login)"},
    "placeholders": {"host": "realtime.internal", "schema": "v1/results", "port": "443"},
}


