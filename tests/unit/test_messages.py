"""batchq.messages: every unreadable body is one InvalidMessage with a short reason; the encoder's output
is a WorkPayload; describe_key. (The spec-driven payload cases are in test_spec.py.)"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from batchq.errors import InvalidMessage
from batchq.messages import (
    SCHEMA_VERSION,
    PayloadEncoder,
    WorkPayload,
    describe_key,
    dumps_json,
    parse_payload,
    parse_result,
)

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
PAYLOAD = {"schema_version": 1, "batch": "b", "run_id": "r", "key": "k1", "job_type": "j",
           "dims": {"c": "x"}, "created_at": WHEN.isoformat()}
RESULT = {"schema_version": 1, "batch": "b", "run_id": "r", "key": "k1", "status": "succeeded", "output": {"n": 1}}
PARSERS = pytest.mark.parametrize("parse, good", [(parse_payload, PAYLOAD), (parse_result, RESULT)])


@PARSERS
def test_good_bodies_parse_from_str_and_bytes(parse, good):
    body = json.dumps(dict(good, finished_at=WHEN.isoformat()) if parse is parse_result else good)
    assert parse(body) == parse(body.encode())
    assert parse(body).key == "k1"


@PARSERS
@pytest.mark.parametrize("version", [0, 2, "1", None, 1.5, True])
def test_any_other_schema_version_is_refused_with_the_key(parse, good, version):
    body = dict(good, schema_version=version)
    with pytest.raises(InvalidMessage, match="unsupported schema_version") as info:
        parse(json.dumps(body))
    assert info.value.key == "k1"


@PARSERS
def test_a_missing_schema_version_is_refused(parse, good):
    body = {k: v for k, v in good.items() if k != "schema_version"}
    with pytest.raises(InvalidMessage, match="schema_version"):
        parse(json.dumps(body))


@PARSERS
@pytest.mark.parametrize("body", ["", "{", "not json", b"\xff\xfe{}", '{"a": 1} trailing'])
def test_non_json_is_an_invalid_message(parse, good, body):
    with pytest.raises(InvalidMessage, match="not JSON"):
        parse(body)


@PARSERS
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(parse, good, constant):
    body = json.dumps(good)[:-1] + f', "extra": {constant}}}'
    with pytest.raises(InvalidMessage, match=f"{constant} is not valid JSON"):
        parse(body)


@PARSERS
@pytest.mark.parametrize("body", ["[1]", "1", '"s"', "null"])
def test_non_objects_are_refused(parse, good, body):
    with pytest.raises(InvalidMessage, match="must be a JSON object"):
        parse(body)


@PARSERS
def test_nesting_deep_enough_to_exhaust_the_recursion_limit_is_an_invalid_message(parse, good):
    with pytest.raises(InvalidMessage, match="nested too deeply"):
        parse("[" * 100_000 + "]" * 100_000)


def test_deep_nesting_inside_a_valid_envelope_is_an_invalid_message():
    deep = "[" * 100_000 + "]" * 100_000
    body = json.dumps(PAYLOAD)[:-1] + f', "params": {{"x": {deep}}}}}'
    with pytest.raises(InvalidMessage, match="nested too deeply"):
        parse_payload(body)


@PARSERS
def test_an_oversize_body_gives_a_bounded_reason(parse, good):
    """A reason goes into results, XComs and logs: a megabyte of garbage must not come back in it."""
    with pytest.raises(InvalidMessage) as info:
        parse(json.dumps(dict(good, schema_version="v" * 2_000_000)))
    assert len(str(info.value)) < 1_000
    assert "more chars" in str(info.value)


def test_an_unknown_field_is_refused():
    with pytest.raises(InvalidMessage, match="invalid payload") as info:
        parse_payload(json.dumps(dict(PAYLOAD, surprise=1)))
    assert info.value.key == "k1"


def test_a_non_scalar_dimension_is_refused():
    with pytest.raises(InvalidMessage, match="dims"):
        parse_payload(json.dumps(dict(PAYLOAD, dims={"c": [1, 2]})))


def test_a_non_string_key_is_not_reported_as_the_key():
    with pytest.raises(InvalidMessage) as info:
        parse_payload(json.dumps(dict(PAYLOAD, key=123)))
    assert info.value.key is None


def test_a_result_whose_status_and_error_disagree_is_invalid():
    with pytest.raises(InvalidMessage, match="failed result needs an error"):
        parse_result(json.dumps(dict(RESULT, status="failed")))


def test_a_result_with_zero_attempts_is_invalid():
    with pytest.raises(InvalidMessage, match="attempts"):
        parse_result(json.dumps(dict(RESULT, attempts=0)))


# -- the encoder -----------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", [None, "fp-1"])
def test_encoder_output_parses_as_the_payload_it_describes(plan):
    enc = PayloadEncoder("batch \"quoted\"", {"p": [1, None, "ü"]}, ["region", "n", "flag"], "run/1", WHEN, plan=plan)
    body = enc.encode("abc123", dumps_json("job"), [dumps_json("eu-west"), dumps_json(7), dumps_json(True)])
    assert parse_payload(body) == WorkPayload(
        batch='batch "quoted"', run_id="run/1", key="abc123", job_type="job",
        dims={"region": "eu-west", "n": 7, "flag": True}, params={"p": [1, None, "ü"]}, created_at=WHEN, plan=plan,
    )
    assert json.loads(body)["schema_version"] == SCHEMA_VERSION


def test_encoder_refuses_a_naive_timestamp():
    with pytest.raises(ValueError, match="timezone-aware"):
        PayloadEncoder("b", {}, [], "r", datetime(2026, 1, 1))


def test_dumps_json_refuses_nan_so_batchq_never_writes_what_it_refuses_to_read():
    with pytest.raises(ValueError):
        dumps_json({"x": float("nan")})
    assert dumps_json({"ü": 1}) == '{"ü":1}'


# -- describe_key ----------------------------------------------------------------------------------


def test_describe_key_by_dims_with_the_hash_shortened():
    assert describe_key("4730f5ee91ab", {"region": "ap", "day": "wed"}) == "region=ap, day=wed (4730f5ee…)"


@pytest.mark.parametrize("dims", [None, {}])
def test_describe_key_without_dims_is_the_whole_key(dims):
    assert describe_key("4730f5ee91ab", dims) == "4730f5ee91ab"


def test_describe_key_keeps_a_short_key_whole_and_honours_key_chars():
    assert describe_key("abc", {"a": 1}) == "a=1 (abc)"
    assert describe_key("abcdef", {"a": 1}, key_chars=2) == "a=1 (ab…)"
