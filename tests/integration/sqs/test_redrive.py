"""DLQ redrive on whichever endpoint runs the tests: StartMessageMoveTask where supported (LocalStack,
AWS), the receive/send/delete fallback where not (moto answers HTTP 500). Either way every dead-lettered
message ends up back on the input queue exactly once and the DLQ is empty."""

from __future__ import annotations

import collections
import json
import subprocess
import sys

import pytest
from batchq.sqs import delete_messages, get_snapshot, receive_messages, send_bodies
from batchq.sqs.redrive import MoveTaskUnsupported, redrive

pytestmark = pytest.mark.integration


@pytest.fixture
def probe_client(sqs_endpoint):
    """Tries StartMessageMoveTask once: moto's HTTP 500 is an answer ("unsupported"), not a fault."""
    from batchq.sqs.client import SINGLE_ATTEMPT_RETRIES, sqs_client

    return sqs_client(endpoint_url=sqs_endpoint, retries=dict(SINGLE_ATTEMPT_RETRIES))


def _fill_dlq(client, url: str, n: int) -> list[str]:
    bodies = [json.dumps({"n": i, "tag": url[-12:]}) for i in range(n)]
    send_bodies(client, url, [(str(i), b) for i, b in enumerate(bodies)])
    return bodies


def _drain_bodies(client, url: str) -> list[str]:
    out = []
    while True:
        msgs = receive_messages(client, url, wait_seconds=1)
        if not msgs:
            return out
        out += [m["Body"] for m in msgs]
        delete_messages(client, url, msgs)


def _wait_backlog_zero(client, url):
    import time

    for _ in range(50):
        if get_snapshot(client, url).backlog == 0:
            return
        time.sleep(0.2)


@pytest.mark.parametrize("method", ["auto", "manual"])
def test_redrive_moves_each_message_exactly_once(sqs_client, probe_client, queue_spec_factory, method):
    _, urls = queue_spec_factory()
    bodies = _fill_dlq(sqs_client, urls.input_dlq, 25)
    report = redrive(sqs_client, urls.input_dlq, urls.input, method=method, timeout_s=120, probe_client=probe_client)
    assert not report.failed, report.failed
    if report.method == "manual" and method == "auto":
        assert report.fallback_reason  # the endpoint had no move task (moto): we said why we fell back
    if method == "manual":
        assert report.method == "manual"
    assert report.moved == 25
    _wait_backlog_zero(sqs_client, urls.input_dlq)
    assert get_snapshot(sqs_client, urls.input_dlq).backlog == 0
    moved = _drain_bodies(sqs_client, urls.input)
    assert collections.Counter(moved) == collections.Counter(bodies)


def test_move_task_only_fails_clearly_or_moves(sqs_client, probe_client, queue_spec_factory):
    _, urls = queue_spec_factory()
    bodies = _fill_dlq(sqs_client, urls.input_dlq, 5)
    try:
        report = redrive(sqs_client, urls.input_dlq, urls.input, method="move-task", timeout_s=120,
                         probe_client=probe_client)
    except MoveTaskUnsupported:
        # moto: the honest answer is "not supported", and nothing moved.
        assert get_snapshot(sqs_client, urls.input_dlq).backlog == 5
        assert get_snapshot(sqs_client, urls.input).backlog == 0
        return
    assert report.method == "move-task" and report.moved == 5
    assert collections.Counter(_drain_bodies(sqs_client, urls.input)) == collections.Counter(bodies)


def test_manual_redrive_respects_max_messages(sqs_client, queue_spec_factory):
    _, urls = queue_spec_factory()
    _fill_dlq(sqs_client, urls.input_dlq, 12)
    report = redrive(sqs_client, urls.input_dlq, urls.input, max_messages=5)
    assert report.method == "manual" and report.moved == 5
    assert len(_drain_bodies(sqs_client, urls.input)) == 5
    assert len(_drain_bodies(sqs_client, urls.input_dlq)) == 7


def test_redrive_cli(sqs_client, sqs_endpoint, queue_spec_factory):
    spec, urls = queue_spec_factory()
    bodies = _fill_dlq(sqs_client, urls.input_dlq, 7)
    done = subprocess.run(
        [sys.executable, "-m", "batchq.cli", "redrive", "--endpoint-url", sqs_endpoint, "--dlq", spec.input_dlq, "--to", spec.input],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["moved"] == 7 and out["failed"] == 0
    assert collections.Counter(_drain_bodies(sqs_client, urls.input)) == collections.Counter(bodies)
