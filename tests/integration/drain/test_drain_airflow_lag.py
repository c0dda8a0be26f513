"""The drain operator leaves the run's queue lag in XCom ``queue_lag`` (what the Batch view reads), on
success and before it fails a run."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from batchq.monitor.lag import LAG_XCOM_KEY

from tests.integration.drain._helpers import make_results, put
from tests.integration.drain.test_drain_airflow import (  # noqa: F401 - fixture
    FakeTI,
    aws_conn,
    context,
    drain_op,
)

pytestmark = pytest.mark.integration


def stamped(results, wait_s):
    """Results as a worker would send them: input sent ``wait_s[i]`` seconds before it was first received."""
    now = datetime.now(timezone.utc)
    return [
        r.model_copy(update={"enqueued_at": now - timedelta(seconds=60), "first_received_at": now - timedelta(seconds=60 - w),
                             "started_at": now - timedelta(seconds=60 - w)})
        for r, w in zip(results, wait_s)
    ]


def test_drain_operator_pushes_queue_lag(sqs_client, make_queue, aws_conn, tmp_path):  # noqa: F811
    url = make_queue()
    results = stamped(make_results(10), wait_s=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    put(sqs_client, url, results)
    ti = FakeTI()
    op = drain_op(batch=results[0].batch, results_queue=url, input_queue=f"in-{results[0].batch}", sink=f"sqlite:///{tmp_path}/s.db", expected=10, run_id="run-1")
    out = op.execute(context("run-1", ti))
    lag = ti.pushed[LAG_XCOM_KEY]
    assert out[LAG_XCOM_KEY] == lag
    assert lag["input_wait"] == {"count": 10, "p50": 5.5, "p95": 9.55, "max": 10.0}
    assert lag["results_wait"]["count"] == 10 and lag["results_wait"]["max"] >= 0  # results messages' SentTimestamp
    assert lag["time_to_drain_s"] >= 60 and lag["failures"] == 0 and lag["source"] == "sqs-timestamps"
    # moto answers CloudWatch without SQS data points: the age workers saw at receipt, said so
    assert (lag["oldest_age_s"], lag["age_source"]) == (10.0, "worker-receipt")


def test_queue_age_from_cloudwatch_when_it_has_the_metric(sqs_client, sqs_endpoint, make_queue, aws_conn, tmp_path):  # noqa: F811
    import boto3

    url = make_queue()
    results = stamped(make_results(3), wait_s=[1, 2, 3])
    put(sqs_client, url, results)
    input_queue = f"in-{results[0].batch}"
    boto3.client("cloudwatch", endpoint_url=sqs_endpoint, region_name="us-east-1").put_metric_data(Namespace="AWS/SQS", MetricData=[{
        "MetricName": "ApproximateAgeOfOldestMessage", "Dimensions": [{"Name": "QueueName", "Value": input_queue}],
        "Timestamp": datetime.now(timezone.utc), "Value": 77.0, "Unit": "Seconds"}])
    ti = FakeTI()
    drain_op(batch=results[0].batch, results_queue=url, input_queue=input_queue, sink=f"sqlite:///{tmp_path}/s.db", expected=3, run_id="run-1").execute(context("run-1", ti))
    assert (ti.pushed[LAG_XCOM_KEY]["oldest_age_s"], ti.pushed[LAG_XCOM_KEY]["age_source"]) == (77.0, "cloudwatch")


def test_a_failing_run_still_reports_its_lag(sqs_client, make_queue, aws_conn, tmp_path):  # noqa: F811
    from airflow.sdk.exceptions import AirflowFailException

    url = make_queue()
    results = make_results(4, failed_every=2)
    put(sqs_client, url, results)
    ti = FakeTI()
    with pytest.raises(AirflowFailException):
        drain_op(batch=results[0].batch, results_queue=url, sink=f"sqlite:///{tmp_path}/s.db", expected=4, run_id="run-1").execute(context("run-1", ti))
    lag = ti.pushed[LAG_XCOM_KEY]
    # results from before the lag fields: no input wait, but the drainer's own figures are there
    assert lag["failures"] == 2 and lag["input_wait"]["count"] == 0 and lag["results_wait"]["count"] == 4


@pytest.mark.postgres
def test_queue_lag_on_postgresql(sqs_client, make_queue, aws_conn, pg_url):  # noqa: F811
    url = make_queue()
    results = stamped(make_results(4), wait_s=[2, 4, 6, 8])
    put(sqs_client, url, results)
    ti = FakeTI()
    drain_op(batch=results[0].batch, results_queue=url, sink=pg_url, expected=4, run_id="run-1").execute(context("run-1", ti))
    lag = ti.pushed[LAG_XCOM_KEY]
    # PostgreSQL hands back aware datetimes (SQLite naive ones): the same figures either way
    assert lag["input_wait"] == {"count": 4, "p50": 5.0, "p95": 7.7, "max": 8.0}
    assert lag["results_wait"]["count"] == 4 and lag["age_source"] == "worker-receipt"
