"""The drainer against a hostile or broken HTTP sink (issue 8): an expired token stops the drain at once
and leaves the results on the queue; 5xx/408 are retried with back-off; an absurd ``Retry-After``
neither hangs nor crashes; an outage never outlives the drain's deadline; SIGTERM mid-outage exits
cleanly with everything back on the queue."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from batchq.drain import Drainer, HttpSink
from batchq.store import ResultsStore
from batchq.sqs import get_snapshot

from tests.integration.drain._helpers import backlog, make_results, put
from tests.support.http_receiver import Receiver

pytestmark = pytest.mark.integration


def _visible_again(client, url: str, n: int, timeout: float = 30) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        snap = get_snapshot(client, url)
        if snap.visible >= n:
            return snap.visible
        time.sleep(0.2)
    return get_snapshot(client, url).visible


@pytest.mark.parametrize("status", [401, 403, 302])
def test_rejected_credentials_stop_the_drain_and_keep_the_results(sqs_client, make_queue, tmp_path, status):
    from batchq.drain import SinkMisconfigured

    url = make_queue()
    results = make_results(25)
    put(sqs_client, url, results)
    store = ResultsStore(f"sqlite:///{tmp_path}/ledger.db")
    with Receiver() as rx:
        rx.fail_for(600, status=status, retry_after=None)
        started = time.monotonic()
        with pytest.raises(SinkMisconfigured, match=f"HTTP {status}"):
            # A 60 s lease: if the batch were not handed back it would stay invisible past the asserts.
            Drainer(sqs_client, url, HttpSink(f"{rx.url}/results"), store, receive_wait_s=1, lease_s=60).run()
        assert time.monotonic() - started < 30
        assert rx.rows == {}
    assert store.quarantined() == []
    assert _visible_again(sqs_client, url, 25) == 25
    store.close()


@pytest.mark.parametrize("status", [500, 408])
def test_server_errors_are_retried_with_backoff(sqs_client, make_queue, tmp_path, status):
    url = make_queue()
    results = make_results(30)
    put(sqs_client, url, results)
    store = ResultsStore(f"sqlite:///{tmp_path}/ledger.db")
    with Receiver() as rx:
        rx.fail_for(2.0, status=status, retry_after=None)
        report = Drainer(sqs_client, url, HttpSink(f"{rx.url}/results"), store, receive_wait_s=1, backoff_base_s=0.2, backoff_cap_s=1).run()
        assert rx.rejected_503 > 0 and report.sink_retries == rx.rejected_503
        assert report.backpressure == 0  # an outage, not a "slow down"
        assert set(rx.rows) == {r.key for r in results}
        # Every key reached the receiver, each at most twice (SQS may redeliver; no retry storm).
        assert set(rx.writes) == {r.key for r in results} and max(rx.writes.values()) <= 2
    assert store.quarantined() == [] and backlog(sqs_client, url) == 0
    store.close()


@pytest.mark.parametrize("retry_after", ["inf", "Fri, 31 Dec 9999 23:59:59 GMT", "1e400", "soon"])
def test_absurd_retry_after_is_capped(sqs_client, make_queue, tmp_path, retry_after):
    url = make_queue()
    results = make_results(20)
    put(sqs_client, url, results)
    store = ResultsStore(f"sqlite:///{tmp_path}/ledger.db")
    with Receiver() as rx:
        rx.fail_for(1.5, status=503, retry_after=retry_after)
        sink = HttpSink(f"{rx.url}/results", retry_after_cap_s=0.5)
        report = Drainer(sqs_client, url, sink, store, max_in_flight=2, receive_wait_s=1, backoff_cap_s=0.5).run(deadline=time.monotonic() + 120)
        assert rx.rejected_503 > 0 and not report.deadline_reached
        assert set(rx.rows) == {r.key for r in results}
    assert backlog(sqs_client, url) == 0
    store.close()


def test_an_outage_never_outlives_the_deadline(sqs_client, make_queue, tmp_path):
    url = make_queue()
    put(sqs_client, url, make_results(20))
    store = ResultsStore(f"sqlite:///{tmp_path}/ledger.db")
    with Receiver() as rx:
        rx.fail_for(600, status=503, retry_after="30")
        started = time.monotonic()
        report = Drainer(sqs_client, url, HttpSink(f"{rx.url}/results"), store, receive_wait_s=1, lease_s=60).run(deadline=started + 3)
        took = time.monotonic() - started
    # Generous bound (shared CPU): without the deadline it would retry for as long as the outage lasts.
    assert report.deadline_reached and took < 30, took
    assert report.applied == 0 and store.quarantined() == []
    assert _visible_again(sqs_client, url, 20) == 20  # handed back, not held for the 60 s lease
    store.close()


def test_sigterm_mid_outage_exits_cleanly_and_loses_nothing(sqs_client, sqs_endpoint, make_queue, tmp_path):
    url = make_queue()
    results = make_results(30)
    put(sqs_client, url, results)
    with Receiver() as rx:
        rx.fail_for(600, status=503, retry_after="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "batchq.cli", "drain", "--endpoint-url", sqs_endpoint, "--queue", url,
             "--sink", f"{rx.url}/results", "--ledger-url", f"sqlite:///{tmp_path}/ledger.db", "--wait", "1", "--lease", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            end = time.monotonic() + 60
            while rx.rejected_503 < 3 and time.monotonic() < end and proc.poll() is None:
                time.sleep(0.1)
            assert rx.rejected_503 >= 3, "the drainer never reached the outage"
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err[-2000:]
        report = json.loads(out.strip().splitlines()[-1])
        assert report["applied"] == 0 and report["handed_back"] >= 1
        assert rx.rows == {}
    # Everything is back on the queue at once (a 60 s lease would otherwise hide it).
    assert _visible_again(sqs_client, url, 30) == 30
    ledger = ResultsStore(f"sqlite:///{tmp_path}/ledger.db")
    assert ledger.quarantined() == []
    ledger.close()
