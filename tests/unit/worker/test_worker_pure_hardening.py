"""Issue 8, worker side, the pure parts: parse failures, BaseException outcomes, sizes, settings."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import pytest
from batchq.cli import build_parser
from batchq.cli.worker import worker_argv
from batchq.errors import BatchqError, InvalidMessage
from batchq.messages import (
    ErrorInfo,
    WorkPayload,
    WorkResult,
    parse_payload,
    parse_result,
)
from batchq.worker import Action, Registry, WorkerConfig, execute
from batchq.worker.deadletter import (
    REASON_ATTRIBUTE,
    DeadLetterTooLarge,
    fit_dead_letter_attributes,
    message_bytes,
)
from batchq.worker.execute import TRUNCATED_MARKER, fit_failed_result, timed_out_outcome
from batchq.worker.lambda_adapter import LambdaSettings
from batchq.worker.registry import HandlerError


def body(job_type: str = "x", key: str = "k1", **params) -> str:
    return WorkPayload(batch="b", run_id="r", key=key, job_type=job_type, dims={"c": "v"}, params=params,
                       created_at=datetime(2026, 1, 1, tzinfo=timezone.utc)).model_dump_json()


@pytest.mark.parametrize("raw", [
    "[" * 100_000,
    '{"schema_version":1,"key":"k","dims":' + "[" * 60_000 + "]" * 60_000 + "}",
    '{"schema_version":1,"key":"k","x":NaN}',
    '{"schema_version":1,"key":"k","x":-Infinity}',
    b"\xff\xfe",
    '{"schema_version":' + "9" * 5000 + "}",
])
@pytest.mark.parametrize("parse", [parse_payload, parse_result])
def test_every_parse_failure_is_invalid_message(parse, raw):
    with pytest.raises(InvalidMessage) as info:
        parse(raw)
    assert len(info.value.reason) < 1200  # a reason, not a dump


def test_deep_json_input_is_a_permanent_failure_with_a_reason():
    out = execute("[" * 100_000, registry=Registry())
    assert out.action is Action.DEAD_LETTER and out.result is None
    assert out.reason == "InvalidMessage: payload body is nested too deeply to parse"


@pytest.mark.parametrize("exc,etype", [
    (SystemExit(3), "SystemExit"), (KeyboardInterrupt(), "KeyboardInterrupt"), (asyncio.CancelledError(), "CancelledError"),
])
def test_base_exception_in_a_handler_is_a_transient_failure(exc, etype):
    reg = Registry()

    @reg.job("x")
    def boom(payload, ctx):
        raise exc

    first = execute(body(), receive_count=1, max_attempts=2, registry=reg)
    assert first.action is Action.RETRY and first.reason.startswith(etype)
    last = execute(body(), receive_count=2, max_attempts=2, registry=reg)
    assert last.action is Action.DEAD_LETTER and last.result.error.type == etype and not last.result.error.permanent


def test_output_above_the_results_queues_limit_is_a_small_failed_result():
    reg = Registry()
    reg.register("x", lambda p, c: {"blob": "y" * 3000})
    out = execute(body(), registry=reg, max_result_bytes=2048)
    assert out.action is Action.DEAD_LETTER and out.result.error.type == "OutputTooLarge"
    assert len(out.result_body.encode()) <= 2048


def test_failed_results_are_cut_to_fit_message_first_then_copied_fields():
    base = WorkResult(batch="b" * 900, run_id="r" * 900, key="k" * 64, job_type="j", status="failed",
                      error=ErrorInfo(type="E", message="m" * 3000), worker="w" * 300)
    for limit in (4096, 2048, 1024, 600):
        cut = fit_failed_result(base, limit)
        assert len(cut.model_dump_json().encode()) <= limit, limit
        assert TRUNCATED_MARKER in cut.error.message
    assert fit_failed_result(base, 4096).batch == base.batch  # identity kept while the message can give way
    small = WorkResult(batch="b", run_id="r", key="k", status="failed", error=ErrorInfo(type="E", message="m"))
    assert fit_failed_result(small, 2048) is small


def test_dead_letter_reason_shrinks_to_fit_and_gives_up_when_nothing_fits():
    reason = "PermanentError: " + "x" * 900
    attrs = fit_dead_letter_attributes("b" * 1500, reason, "http://q/1/in", 2, "host:1", 2048)
    assert message_bytes("b" * 1500, attrs) <= 2048 and attrs[REASON_ATTRIBUTE]["StringValue"].endswith("…")
    roomy = fit_dead_letter_attributes("b" * 10, reason, "http://q/1/in", 2, "host:1", 1 << 20)
    assert roomy[REASON_ATTRIBUTE]["StringValue"] == reason
    with pytest.raises(DeadLetterTooLarge):
        fit_dead_letter_attributes("b" * 2040, reason, "http://q/1/in", 2, "host:1", 2048)


def test_timed_out_is_transient_then_failed():
    payload = WorkPayload.model_validate(json.loads(body()))
    assert timed_out_outcome(payload, 5, receive_count=1, max_attempts=2, worker="w").action is Action.RETRY
    last = timed_out_outcome(payload, 5, receive_count=2, max_attempts=2, worker="w")
    assert last.action is Action.DEAD_LETTER and last.result.error.type == "HandlerTimeout"


def test_job_timeouts_are_registered_and_validated():
    reg = Registry()
    reg.register("a", lambda p, c: {}, timeout_s=2.5)
    reg.register("b", lambda p, c: {})
    assert reg.timeout_for("a") == 2.5 and reg.timeout_for("b") is None
    for bad in (0, -1, float("inf"), "10"):
        with pytest.raises(HandlerError):
            reg.register("c", lambda p, c: {}, timeout_s=bad)


def test_worker_config_is_validated_by_pydantic_naming_the_field():
    cfg = WorkerConfig("q", "r", concurrency=3)
    assert cfg.handler_timeout_s == 900 and cfg.max_stuck_handlers == 3
    with pytest.raises(ValueError, match="handler_timeout_s"):
        WorkerConfig("q", "r", handler_timeout_s=0)
    with pytest.raises(ValueError, match="retry_base_s"):
        WorkerConfig("q", "r", retry_base_s=float("nan"))
    with pytest.raises(ValueError, match="concurrency"):
        WorkerConfig("q", "r", concurrency="many")
    with pytest.raises(ValueError):
        WorkerConfig("q", "r", no_such_option=1)


def test_lambda_settings_from_env():
    s = LambdaSettings.from_env({"BATCHQ_RESULTS_QUEUE_URL": "u", "BATCHQ_HANDLERS": " a.b, c ,", "BATCHQ_MAX_ATTEMPTS": "4",
                                 "BATCHQ_DEAD_LETTER_QUEUE_URL": "", "PATH": "/bin"})
    assert (s.results_queue_url, s.handlers, s.max_attempts, s.dead_letter_queue_url) == ("u", ["a.b", "c"], 4, None)
    with pytest.raises(BatchqError, match="BATCHQ_MAX_ATTEMPTS"):
        LambdaSettings.from_env({"BATCHQ_RESULTS_QUEUE_URL": "u", "BATCHQ_MAX_ATTEMPTS": "three"})
    with pytest.raises(BatchqError, match="BATCHQ_RESULTS_QUEUE_URL"):
        LambdaSettings.from_env({})


def test_supervisor_forwards_the_worker_arguments_as_given():
    args = build_parser().parse_args([
        "workers", "--max", "2", "--queue", "in", "--handler-timeout", "30", "--handlers", "a", "--no-entry-points",
        "--results-queue", "out", "--handlers", "b", "--cooldown", "5",
    ])
    assert worker_argv(args) == ["--queue", "in", "--handler-timeout", "30.0", "--handlers", "a", "--no-entry-points",
                                 "--results-queue", "out", "--handlers", "b"]
    assert worker_argv(build_parser().parse_args(["workers", "--queue", "q"])) == ["--queue", "q"]
    again = build_parser().parse_args(["worker", *worker_argv(args)])
    assert again.handler_timeout == 30.0 and again.handlers == ["a", "b"]
