"""One botocore policy for every SQS client: the workers' (:func:`batchq.sqs.client.botocore_config`) and the
Airflow hook's, where the connection's own settings still win option by option."""

from __future__ import annotations

import json

import pytest
from batchq.sqs import client as aws
from batchq.airflow.hook import BatchqSqsHook

CONN_ID = "batchq_hook_config_test"


def point_conn(monkeypatch, **extra):
    conn = {"conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"endpoint_url": "http://127.0.0.1:9", "region_name": "us-east-1", **extra}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


def test_botocore_config_sets_retries_and_timeouts_explicitly():
    cfg = aws.botocore_config()
    assert cfg.retries == {"mode": "standard", "total_max_attempts": aws.TOTAL_MAX_ATTEMPTS}
    assert cfg.connect_timeout == aws.CONNECT_TIMEOUT_S
    # A read timeout at or under the 20 s long poll would abort every idle ReceiveMessage.
    assert cfg.read_timeout > 20
    assert cfg.max_pool_connections == aws.MAX_POOL_CONNECTIONS
    assert aws.botocore_config(read_timeout=99).read_timeout == 99


def test_sqs_client_uses_the_policy():
    client = aws.sqs_client(endpoint_url="http://127.0.0.1:9", max_pool_connections=48)
    assert client.meta.config.read_timeout == aws.READ_TIMEOUT_S
    assert client.meta.config.max_pool_connections == 48
    probe = aws.sqs_client(endpoint_url="http://127.0.0.1:9", retries=dict(aws.SINGLE_ATTEMPT_RETRIES))
    assert probe.meta.config.retries["total_max_attempts"] == 1


def test_hook_clients_get_batchq_policy_when_the_connection_sets_none(monkeypatch):
    point_conn(monkeypatch)
    hook = BatchqSqsHook(aws_conn_id=CONN_ID)
    cfg = hook.get_conn().meta.config
    assert cfg.read_timeout == aws.READ_TIMEOUT_S
    assert cfg.connect_timeout == aws.CONNECT_TIMEOUT_S
    assert cfg.retries["total_max_attempts"] == aws.TOTAL_MAX_ATTEMPTS
    assert cfg.max_pool_connections >= aws.MAX_POOL_CONNECTIONS


def test_connection_config_kwargs_override_option_by_option(monkeypatch):
    point_conn(monkeypatch, config_kwargs={"read_timeout": 45, "retries": {"mode": "adaptive", "max_attempts": 2}})
    cfg = BatchqSqsHook(aws_conn_id=CONN_ID).config
    assert cfg.read_timeout == 45
    assert cfg.retries == {"mode": "adaptive", "max_attempts": 2}
    assert cfg.connect_timeout == aws.CONNECT_TIMEOUT_S  # not set by the connection: batchq's


@pytest.mark.parametrize("explicit_pool, expected", [(None, 40), (8, 40), (100, 100)])
def test_pool_is_raised_to_the_fanout_need_never_lowered(monkeypatch, explicit_pool, expected):
    from botocore.config import Config

    point_conn(monkeypatch)
    config = Config(max_pool_connections=explicit_pool) if explicit_pool else None
    hook = BatchqSqsHook(aws_conn_id=CONN_ID, config=config, max_pool_connections=40)
    assert hook.config.max_pool_connections == expected


def test_probe_conn_tries_once(monkeypatch):
    point_conn(monkeypatch)
    hook = BatchqSqsHook(aws_conn_id=CONN_ID)
    probe = hook.get_probe_conn()
    assert probe.meta.config.retries["total_max_attempts"] == 1
    assert probe.meta.endpoint_url == hook.get_conn().meta.endpoint_url
