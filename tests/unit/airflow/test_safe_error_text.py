"""Error text that leaves batchq passes one helper: Airflow's secrets masker inside Airflow, a cap
everywhere; AWS errors are reduced to their code and operation."""

from __future__ import annotations

import pytest
from batchq.store.ledger import evaluate
from batchq.errors import MAX_ERROR_TEXT, safe_error_text
from batchq.monitor.report import run_report

SECRET = "pw-0f1e2d3c4b5a"


@pytest.fixture
def masked_secret():
    # What Airflow does for a connection's password when a task reads it.
    from airflow.sdk._shared.secrets_masker import mask_secret, reset_secrets_masker

    mask_secret(SECRET)
    yield SECRET
    reset_secrets_masker()


def test_masked_inside_airflow_and_capped(masked_secret):
    text = safe_error_text(f"could not connect as admin:{masked_secret}@db " + "x" * 5000)
    assert masked_secret not in text and "***" in text
    assert len(text) == MAX_ERROR_TEXT and text.endswith("…")


def test_the_ledger_xcom_carries_masked_capped_failures(masked_secret):
    failures = [{"key": "k1", "error": {"type": "OperationalError", "message": f"password {masked_secret} refused " + "y" * 3000}}]
    pushed = evaluate("b", "r", 1, 0, 1, first_failures=failures).to_dict()
    message = pushed["first_failures"][0]["error"]["message"]
    assert masked_secret not in message and len(message) <= MAX_ERROR_TEXT


def test_the_view_masks_what_an_older_xcom_still_carries(masked_secret):
    ledger = {"expected": 1, "succeeded": 0, "failed": 1, "first_failures": [{"key": "k", "error": {"type": "E", "message": f"token={masked_secret}"}}]}
    report = run_report("d", "r", [("ledger", ledger)])
    assert masked_secret not in report.failures[0].error


def test_aws_errors_are_reduced_to_code_and_operation():
    from botocore.exceptions import ClientError, ConnectTimeoutError
    from batchq.sqs.client import describe_aws_error

    err = ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "User: arn:aws:sts::123456789012:assumed-role/r/i is not authorized"}},
        "GetQueueAttributes",
    )
    assert describe_aws_error(err) == "AccessDenied on GetQueueAttributes"
    assert describe_aws_error(ConnectTimeoutError(endpoint_url="https://sqs.eu-west-1.amazonaws.com/123456789012/q")) == "ConnectTimeoutError"
