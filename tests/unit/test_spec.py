"""BatchSpec validation (each bad-spec case names the field and the value), loading, source resolution,
and the WorkPayload/WorkResult wire contracts."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from batchq import limits
from batchq.messages import PayloadEncoder, WorkPayload, WorkResult, parse_payload, parse_result
from batchq.spec import BatchSpec, worst_case_payload_bytes
from batchq.errors import InvalidMessage, SpecError

REPO = Path(__file__).resolve().parents[2]
BASE = {"name": "b", "job_type": "classification", "queues": {"input": "in", "results": "out"}}


def spec(**overrides):
    return BatchSpec.from_dict({**BASE, **overrides})


def spec_error(**overrides) -> str:
    with pytest.raises(SpecError) as info:
        spec(**overrides)
    return str(info.value)


# -- the error cases the issue lists: each message names the field and the value ---------------------------


def test_empty_dimension_names_the_dimension():
    msg = spec_error(dimensions={"customer": ["c1"], "period": []})
    assert "dimensions" in msg and "'period'" in msg and "empty" in msg


def test_duplicate_values_name_the_dimension_and_value():
    msg = spec_error(dimensions={"customer": ["c1", "c2", "c1"]})
    assert "'customer'" in msg and "duplicate value 'c1'" in msg


@pytest.mark.parametrize("bad", [{"x": 1}, [1, 2], None, float("nan"), float("inf")])
def test_non_scalar_values_are_named(bad):
    msg = spec_error(dimensions={"customer": ["c1", bad]})
    assert "'customer'" in msg and repr(bad) in msg and "not a scalar" in msg


def test_same_looking_values_of_different_types_are_not_duplicates():
    s = spec(dimensions={"v": [1, "1", True, 1.5]})
    assert s.dimensions[0].values == (1, "1", True, 1.5)


def test_unknown_dimension_in_exclusion_is_named():
    msg = spec_error(dimensions={"customer": ["c1"]}, exclude=[{"region": "eu"}])
    assert "exclude[0]" in msg and "'region'" in msg and "unknown dimension" in msg


def test_exclusion_value_not_in_dimension_is_named():
    msg = spec_error(dimensions={"customer": ["c1"], "period": ["daily"]}, exclude=[{"period": "hourly"}])
    assert "exclude[0]" in msg and "hourly" in msg and "'period'" in msg


def test_product_above_max_payloads_names_the_sizes():
    msg = spec_error(dimensions={"a": list(range(100)), "b": list(range(50))}, max_payloads=4999)
    assert "max_payloads" in msg and "5000" in msg and "100 x 50" in msg and "4999" in msg


def test_payload_above_the_sqs_body_limit_is_rejected():
    msg = spec_error(dimensions={"a": ["x"]}, params={"blob": "y" * limits.MAX_MESSAGE_BYTES})
    assert "params" in msg and str(limits.MAX_MESSAGE_BYTES) in msg


def test_a_long_dimension_value_counts_toward_the_payload_size():
    big = "v" * (limits.MAX_MESSAGE_BYTES - 100)
    msg = spec_error(dimensions={"a": ["short", big]})
    assert "bytes" in msg and str(limits.MAX_MESSAGE_BYTES) in msg


def test_worst_case_size_bounds_every_real_payload():
    from batchq.plan import Plan

    s = spec(dimensions={"a": ["x", "yyyyyyyy"], "b": [1, 22222]}, params={"p": "q" * 100})
    plan = Plan(s, "r" * 60)
    worst = worst_case_payload_bytes(s)
    assert all(len(body.encode()) <= worst for shard in plan.shards() for _, body in plan.iter_bodies(shard))


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"name": "has space", "dimensions": {"a": [1]}}, "name"),
        ({"dimensions": {"a": [1]}, "queues": {"input": "bad/name", "results": "o"}}, "queues"),
        ({"dimensions": {"a": [1]}, "job_type": None}, "job_type"),
        ({"dimensions": {"a": "variable"}}, "dimensions"),
        ({"dimensions": {"a": [1]}, "max_shards": 0}, "max_shards"),
        ({"dimensions": {"a": [1]}, "surprise": 1}, "surprise"),
        ({"dimensions": []}, "dimensions"),
    ],
)
def test_other_bad_fields_are_named(overrides, field):
    assert field in spec_error(**overrides)


# -- loading --------------------------------------------------------------------------------------------------


def test_the_example_spec_loads_and_is_resolved():
    s = BatchSpec.from_yaml(REPO / "include" / "specs" / "customer_batch.yaml")
    assert [d.name for d in s.dimensions] == ["customer", "job_type", "period"]
    assert len(s.dimensions[0].values) == 200
    assert s.dimensions[1].values == ("classification", "segmentation", "use_case_analysis")
    assert s.is_resolved


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="bad.yaml"):
        BatchSpec.from_yaml(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="top level must be a mapping"):
        BatchSpec.from_yaml(listy)


def test_dimension_order_is_kept_from_yaml(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\njob_type: j\nqueues: {input: i, results: r}\ndimensions:\n  z: [1]\n  a: [2]\n  m: [3]\n")
    assert [d.name for d in BatchSpec.from_yaml(path).dimensions] == ["z", "a", "m"]


# -- sources ---------------------------------------------------------------------------------------------


def customer_ids():  # used as callable:tests... source below
    return [f"cust-{i}" for i in range(3)]


def duplicate_ids():
    return ["a", "a"]


def test_callable_source_resolves_at_run_time():
    s = spec(dimensions={"customer": f"callable:{__name__}:customer_ids", "period": ["d"]})
    assert not s.is_resolved
    resolved = s.resolve()
    assert resolved.is_resolved and resolved.dimensions[0].values == ("cust-0", "cust-1", "cust-2")


def test_resolved_values_are_validated_like_literal_ones():
    s = spec(dimensions={"customer": f"callable:{__name__}:duplicate_ids"})
    with pytest.raises(SpecError, match=r"customer.*duplicate value 'a'"):
        s.resolve()


def test_variable_source_needs_the_airflow_resolver():
    s = spec(dimensions={"customer": "variable:customers"})
    with pytest.raises(SpecError, match="variable:customers"):
        s.resolve()
    assert s.resolve(lambda src: ["x", "y"]).dimensions[0].values == ("x", "y")


def test_unimportable_callable_source_is_a_spec_error():
    with pytest.raises(SpecError, match="no_such_module"):
        spec(dimensions={"c": "callable:no_such_module:f"}).resolve()


# -- payloads and results --------------------------------------------------------------------------------


def test_encoder_output_is_a_valid_payload():
    s = spec(dimensions={"customer": ["c\"1", "ü"], "n": [1, 2.5, True]}, params={"k": [1, {"x": None}]})
    enc = PayloadEncoder(s.name, s.params, [d.name for d in s.dimensions], "run-1", datetime(2026, 1, 2, tzinfo=timezone.utc))
    body = enc.encode("k" * 32, json.dumps("classification"), [json.dumps("c\"1"), json.dumps(2.5)])
    p = parse_payload(body)
    assert p.dims == {"customer": 'c"1', "n": 2.5}
    assert p.params == {"k": [1, {"x": None}]} and p.run_id == "run-1" and p.key == "k" * 32


@pytest.mark.parametrize(
    "body, reason",
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"schema_version": 2, "key": "abc"}', "schema_version"),
        ('{"schema_version": 1, "key": "abc", "batch": "b"}', "invalid payload"),
    ],
)
def test_bad_payload_bodies_are_invalid_messages(body, reason):
    with pytest.raises(InvalidMessage, match=reason) as info:
        parse_payload(body)
    if '"key"' in body:
        assert info.value.key == "abc"


def test_result_status_and_error_must_agree():
    base = {"batch": "b", "run_id": "r", "key": "k"}
    ok = WorkResult(**base, status="succeeded", output={"x": 1})
    assert parse_result(ok.model_dump_json()) == ok
    with pytest.raises(ValueError):
        WorkResult(**base, status="failed")
    with pytest.raises(ValueError):
        WorkResult(**base, status="succeeded", error={"type": "E", "message": "m"})
    failed = WorkResult(**base, status="failed", error={"type": "E", "message": "m", "permanent": True})
    assert parse_result(failed.model_dump_json()).error.permanent is True


def test_payload_round_trips():
    p = WorkPayload(batch="b", run_id="r", key="k", job_type="j", dims={"a": 1}, created_at=datetime.now(timezone.utc))
    assert parse_payload(p.model_dump_json()) == p


def test_deadline_is_a_clock_time_even_when_yaml_reads_it_as_a_number(tmp_path):
    dims = {"dimensions": {"x": [1]}}
    assert spec(deadline="8:05", **dims).deadline == "08:05"
    assert spec(**dims).deadline is None
    path = tmp_path / "s.yaml"
    path.write_text("name: b\njob_type: classification\nqueues: {input: in, results: out}\ndimensions: {x: [1]}\ndeadline: 10:30\n")
    assert BatchSpec.from_yaml(path).deadline == "10:30"  # YAML 1.1 sexagesimal 630 → "10:30"
    msg = spec_error(deadline="8am", **dims)
    assert "deadline" in msg and "HH:MM" in msg
