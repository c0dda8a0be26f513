"""An SQS outage never stalls Airflow's API server: a live ``airflow api-server`` whose plugin reads
queues through an endpoint that accepts connections and never answers (:mod:`tests.support.blackhole`).

The Batches page returns within its deadline and says each spec is unavailable (and when it was last
seen); ``/queues`` answers 504 within the same budget; 50 concurrent page loads leave Airflow's other
routes responsive, and cost about one probe per spec, not one per load."""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.airflow_views import ALPHA, BETA, start_api_server, stop_api_server
from tests.support.blackhole import Blackhole

pytestmark = pytest.mark.ui

DEADLINE_S = 3.0
CACHE_S = 10.0
#: What the page may take beyond its deadline on 2 shared cores (auth, DB, rendering).
SLACK_S = 7.0


@pytest.fixture(scope="module")
def outage(view_home, tmp_path_factory):
    with Blackhole() as hole:
        extra = {"endpoint_url": hole.url, "region_name": "us-east-1"}
        env = {
            **view_home.env,
            "AIRFLOW_CONN_SQS_OUTAGE": json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}),
            "AIRFLOW__BATCHQ__API_AWS_CONN_ID": "sqs_outage",
            "AIRFLOW__BATCHQ__API_QUEUE_DEADLINE_S": str(DEADLINE_S),
            "AIRFLOW__BATCHQ__API_QUEUE_CACHE_S": str(CACHE_S),
        }
        log = tmp_path_factory.mktemp("api-server-outage") / "api-server.log"
        proc, server = start_api_server(env, view_home.home.path, log)
        try:
            yield hole, server
        finally:
            stop_api_server(proc)


def test_the_batches_page_renders_within_its_deadline_when_sqs_never_answers(outage):
    hole, server = outage
    token = server.token("admin")
    t0 = time.monotonic()
    page = server.get(None, "/batchq/ui/", token=token, timeout=60)
    elapsed = time.monotonic() - t0
    assert page["status"] == 200, page["body"][:500]
    assert elapsed < DEADLINE_S + SLACK_S, elapsed
    html = page["body"]
    for batch in (ALPHA["batch"], BETA["batch"]):
        row = html.split(f'data-batch="{batch}"', 1)[1].split("</tr>", 1)[0]
        assert "unavailable" in row and ("last seen" in row or "never seen" in row), row
    assert hole.accepted >= 1  # the probe did reach the endpoint

    t0 = time.monotonic()
    queues = server.get(None, f"/batchq/v1/batches/{ALPHA['batch']}/queues", token=token, timeout=60)
    assert time.monotonic() - t0 < DEADLINE_S + SLACK_S
    assert queues["status"] in (502, 504) and "unavailable" in queues["body"]["detail"], queues


def test_fifty_concurrent_loads_leave_the_api_server_responsive(outage):
    hole, server = outage
    token = server.token("admin")
    time.sleep(CACHE_S + 1)  # the previous test's cached failures expire: these loads start fresh probes
    before = hole.accepted
    health: list[float] = []

    def load(_):
        t0 = time.monotonic()
        page = server.get(None, "/batchq/ui/", token=token, timeout=120)
        return page["status"], time.monotonic() - t0

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        loads = [pool.submit(load, i) for i in range(50)]
        time.sleep(0.3)  # the loads are in flight, waiting on the blackhole
        while not all(f.done() for f in loads):
            h0 = time.monotonic()
            assert server.get(None, "/api/v2/monitor/health", timeout=30)["status"] == 200
            version = server.get(None, "/api/v2/version", token=token, timeout=30)
            assert version["status"] == 200
            health.append(time.monotonic() - h0)
            time.sleep(0.2)
        results = [f.result() for f in loads]
    elapsed = time.monotonic() - t0
    statuses = [status for status, _ in results]
    slowest = max(took for _, took in results)
    print(json.dumps({"loads": len(results), "slowest_load_s": round(slowest, 2), "health_checks": len(health),
                      "slowest_health_s": round(max(health, default=0), 2), "connections_to_sqs": hole.accepted - before}))
    assert statuses == [200] * 50
    # Each load waits on SQS for its deadline at most (plus queueing for auth and rendering on 2 cores).
    assert slowest < DEADLINE_S + 3 * SLACK_S, slowest
    # Airflow's own routes kept answering while the loads waited on the blackhole.
    assert health and max(health) < 5.0, health
    # One probe per spec per cache period (each probe opens one connection and stops at its first failure).
    periods = math.ceil(elapsed / CACHE_S) + 1
    assert 1 <= hole.accepted - before <= 2 * periods, (hole.accepted - before, periods)
