"""An Airflow AWS connection pointing at the test SQS endpoint, set through the environment."""

from __future__ import annotations

import json

import pytest


def set_aws_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, endpoint: str) -> str:
    """Define ``conn_id`` (``AIRFLOW_CONN_<ID>``) as an AWS connection to ``endpoint``; return the id."""
    extra = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}))
    return conn_id
