"""The drainer's adaptive pace and its idle cost, against a real SQS endpoint and a loopback service.

* A service with 2 cores of capacity (everyone slows together beyond 2 requests in service): a drainer
  allowed 8 threads keeps about 2–3 writes in flight, because more only add latency; the same drainer
  without adaptive pace (``latency_tolerance=None``) puts all 8 on it.
* ``max_rate`` is still a hard ceiling over the adaptive pace.
* Idle, a drainer with several threads long-polls from one thread only, and all threads resume when
  results arrive.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from batchq.drain import Drainer, HttpSink
from batchq.sqs.client import sqs_client as make_sqs_client
from batchq.store import ResultsStore

from tests.integration.drain._helpers import backlog, make_results, put
from tests.support.http_receiver import Receiver

pytestmark = pytest.mark.integration


def _drain(sqs_client, url, rx, tmp_path, **kw):
    store = ResultsStore(f"sqlite:///{tmp_path}/ledger-{time.monotonic_ns()}.db")
    store.create_tables()
    try:
        return Drainer(sqs_client, url, HttpSink(rx.url + "/results"), store, max_in_flight=8, receive_wait_s=1, **kw).run()
    finally:
        store.close()


def test_adaptive_pace_keeps_writes_near_the_services_capacity(sqs_client, make_queue, tmp_path):
    # One core, 150 ms a batch: a second write in service already makes both take twice as long.
    with Receiver(capacity=1, service_ms=150, sharing="cpu") as rx:
        url = make_queue()
        results = make_results(250)
        put(sqs_client, url, results)
        report = _drain(sqs_client, url, rx, tmp_path)
        assert {r.key for r in results} <= set(rx.rows)
        # The gate admits floor(limit) writes: a limit under 5 is at most 4 in service (what rx saw).
        assert report.pace_limit is not None and report.pace_limit < 5, report.to_dict()
        assert report.pace_baseline_ms is not None and report.pace_baseline_ms >= 150
        assert rx.peak_active <= 4, rx.peak_active

    # The control: the same drainer without the pace puts (nearly) all 8 threads' writes on it. The
    # writes are slower here so that they overlap even when a loaded machine spaces out the receives
    # (CI once saw 3 in service at 150 ms a write while its receives took ~100 ms each).
    with Receiver(capacity=1, service_ms=500, sharing="cpu") as rx:
        url = make_queue()
        put(sqs_client, url, make_results(120))
        report = _drain(sqs_client, url, rx, tmp_path, latency_tolerance=None)
        assert report.pace_limit is None
        assert rx.peak_active >= 5, rx.peak_active  # what the adaptive pace avoided


def test_max_rate_is_still_a_ceiling(sqs_client, make_queue, tmp_path):
    with Receiver() as rx:
        url = make_queue()
        put(sqs_client, url, make_results(70))
        report = _drain(sqs_client, url, rx, tmp_path, max_rate=40)
        assert report.applied >= 70
        assert report.duration_s >= 1.4  # 10 tokens of burst, then 60 at 40/s


def test_idle_drainer_polls_from_one_thread_and_wakes_all_on_results(sqs_endpoint, sqs_client, make_queue, tmp_path):
    url = make_queue()
    client = make_sqs_client(endpoint_url=sqs_endpoint, region_name=os.environ["AWS_DEFAULT_REGION"])
    receives: list[float] = []
    client.meta.events.register("before-call.sqs.ReceiveMessage", lambda **_: receives.append(time.monotonic()))
    store = ResultsStore(f"sqlite:///{tmp_path}/sink.db")
    store.create_tables()
    stop = threading.Event()
    drainer = Drainer(client, url, store, max_in_flight=4, receive_wait_s=1)
    out: list = []
    t = threading.Thread(target=lambda: out.append(drainer.run(until_empty=False, stop=stop)))
    t.start()
    try:
        time.sleep(1.5)  # every thread's first receive comes back empty
        settled = len(receives)
        time.sleep(4.0)
        idle = len(receives) - settled
        # one thread polling with 1 s long polls: ~4 receives in 4 s (4 threads polling would make ~16)
        assert idle <= 6, idle
        put(sqs_client, url, make_results(200))
        deadline = time.monotonic() + 30
        while backlog(sqs_client, url) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert backlog(sqs_client, url) == 0
    finally:
        stop.set()
        t.join(timeout=30)
        store.close()
    assert out and out[0].applied >= 200


def test_batchq_drain_prints_the_pace_in_its_progress_and_report(sqs_client, sqs_endpoint, make_queue, tmp_path):
    import json
    import subprocess
    import sys

    url = make_queue()
    put(sqs_client, url, make_results(150))
    with Receiver(capacity=2, service_ms=30, sharing="cpu") as rx:
        proc = subprocess.run(
            [sys.executable, "-m", "batchq.cli", "drain", "--endpoint-url", sqs_endpoint, "--queue", url, "--sink", f"{rx.url}/results",
             "--ledger-url", f"sqlite:///{tmp_path}/ledger.db", "--wait", "1", "--until-empty", "--progress-interval", "0.2"],
            capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["applied"] >= 150 and report["pace_limit"] >= 1 and report["pace_baseline_ms"] >= 30
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("batchq drain: applied")]
    assert lines and " in flight · sink " in lines[-1] and "baseline" in lines[-1], proc.stderr[-2000:]
