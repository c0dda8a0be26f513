"""execute(): the one decision per delivery, shared by the worker and the Lambda adapter."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from batchq.messages import WorkPayload
from batchq.worker import Action, PermanentError, Registry, execute


def body(job_type: str = "echo", **params) -> str:
    return WorkPayload(batch="b", run_id="r", key="k1", job_type=job_type, dims={"customer": "c1"},
                       params=params, created_at=datetime(2026, 1, 1, tzinfo=timezone.utc)).model_dump_json()


@pytest.fixture
def reg() -> Registry:
    r = Registry()

    @r.job("echo")
    def echo(payload, ctx):
        if payload.params.get("boom"):
            raise ValueError("flaky backend")
        if payload.params.get("perm"):
            raise PermanentError("customer deleted")
        if payload.params.get("bad_output"):
            return ["not", "a", "dict"]
        if payload.params.get("unserialisable"):
            return {"x": object()}
        if payload.params.get("huge"):
            return {"blob": "x" * 1_100_000}
        return {"customer": payload.dims["customer"], "attempt": ctx.attempt, "last": ctx.is_last_attempt}

    return r


def test_success(reg):
    out = execute(body(), receive_count=2, max_attempts=3, registry=reg, worker="w1")
    assert out.action is Action.ACK and out.reason is None
    r = out.result
    assert (r.status, r.key, r.batch, r.run_id, r.job_type, r.attempts, r.worker) == ("succeeded", "k1", "b", "r", "echo", 2, "w1")
    assert r.output == {"customer": "c1", "attempt": 2, "last": False}
    assert json.loads(out.result_body)["status"] == "succeeded"
    assert out.tags == {"batch": "b", "job_type": "echo"}


def test_transient_failure_retries_until_the_last_attempt(reg):
    first = execute(body(boom=True), receive_count=1, max_attempts=3, registry=reg)
    assert first.action is Action.RETRY and first.result is None and "flaky backend" in first.reason
    last = execute(body(boom=True), receive_count=3, max_attempts=3, registry=reg)
    assert last.action is Action.DEAD_LETTER
    assert last.result.status == "failed" and last.result.attempts == 3
    assert last.result.error.type == "ValueError" and not last.result.error.permanent
    assert "gave up after 3 attempts" in last.result.error.message


@pytest.mark.parametrize("params,etype", [
    ({"perm": True}, "PermanentError"),
    ({"bad_output": True}, "InvalidHandlerOutput"),
    ({"unserialisable": True}, "InvalidHandlerOutput"),
    ({"huge": True}, "OutputTooLarge"),
])
def test_permanent_failures_dead_letter_on_first_attempt(reg, params, etype):
    out = execute(body(**params), receive_count=1, max_attempts=5, registry=reg)
    assert out.action is Action.DEAD_LETTER
    assert out.result.error.type == etype and out.result.error.permanent and out.result.key == "k1"
    assert out.reason.startswith(etype)


def test_unknown_job_type_names_the_job_type_not_the_registry(reg):
    out = execute(body("nope"), registry=reg)
    assert out.action is Action.DEAD_LETTER
    assert out.result.error.type == "UnknownJobType" and "'nope'" in out.result.error.message
    # The result travels to the results queue, the sink, XCom and the Batch view: it must not list
    # every handler this worker has.
    assert "echo" not in out.result.error.message and "echo" not in out.reason


def test_handler_error_text_is_capped_by_the_one_helper(reg):
    from batchq.errors import MAX_ERROR_TEXT

    reg.register("huge", lambda payload, ctx: (_ for _ in ()).throw(PermanentError("x" * 100_000)))
    out = execute(body("huge"), registry=reg)
    assert len(out.result.error.message) == MAX_ERROR_TEXT and out.result.error.message.endswith("…")
    assert len(out.reason) <= MAX_ERROR_TEXT + len("PermanentError: ")


@pytest.mark.parametrize("raw,etype,has_result", [
    ("not json", "InvalidMessage", False),
    ("[]", "InvalidMessage", False),
    (json.dumps({"schema_version": 9, "batch": "b", "run_id": "r", "key": "k9"}), "UnsupportedSchemaVersion", True),
    (json.dumps({"schema_version": 9}), "UnsupportedSchemaVersion", False),
    (json.dumps({"schema_version": 1, "batch": "b", "run_id": "r", "key": "k2", "job_type": "echo"}), "InvalidMessage", True),
    (b"\xff\xfe", "InvalidMessage", False),
])
def test_unreadable_bodies(reg, raw, etype, has_result):
    out = execute(raw, registry=reg)
    assert out.action is Action.DEAD_LETTER and out.reason.startswith(etype)
    assert (out.result is not None) == has_result
    if has_result:
        assert out.result.status == "failed" and out.result.error.permanent and out.result.error.type == etype
