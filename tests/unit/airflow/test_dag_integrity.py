"""The example DAG parses cleanly, touches no network and no Variables while parsing, fails to import
with a clear message on a bad spec; plus the Airflow-side pieces that need no SQS: operator construction,
hook config, settings fallbacks, the Variable resolver and the plugin."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from batchq.errors import SpecError
from batchq.plan import Plan
from batchq.spec import BatchSpec

REPO = Path(__file__).resolve().parents[3]
DAGS = REPO / "dags"


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Any outbound connection attempt is recorded and fails (parse time must not need AWS)."""
    attempts: list = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise NetworkUsed(f"network connection to {address} during DAG parsing")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def no_variables(monkeypatch):
    from airflow.sdk import Variable

    def refuse(*args, **kwargs):
        raise AssertionError("Airflow Variable read during DAG parsing")

    monkeypatch.setattr(Variable, "get", refuse)


def load_dagbag():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2 (the oldest supported release is tested in CI too)
        from airflow.models.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_dagbag_imports_without_errors_network_or_variables(monkeypatch, no_network, no_variables):
    # A connection that would hang or fail if anything tried to use it.
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "extra": {"endpoint_url": "http://127.0.0.1:9"}}))
    monkeypatch.delenv("BATCHQ_CUSTOMER_BATCH_SPEC", raising=False)
    started = time.perf_counter()
    bag = load_dagbag()
    elapsed = time.perf_counter() - started
    assert bag.import_errors == {}
    assert "customer_batch" in bag.dags
    assert no_network == []
    assert elapsed < 30


def test_customer_batch_shape(monkeypatch):
    monkeypatch.delenv("BATCHQ_CUSTOMER_BATCH_SPEC", raising=False)
    dag = load_dagbag().dags["customer_batch"]
    assert dag.catchup is False
    assert getattr(dag.timetable, "_expression", None) == "0 7 * * *" or "0 7 * * *" in repr(dag.timetable)
    plan, fan_out = dag.get_task("plan_shards"), dag.get_task("fan_out")
    # is_new_run: a repair run (params.repair_run_id) skips the fan-out and re-sends only failed keys.
    assert fan_out.upstream_task_ids == {"plan_shards", "is_new_run"}
    assert plan.downstream_task_ids == {"fan_out"}
    assert dag.get_task("rerun_failed").upstream_task_ids == {"fan_out"}
    assert dag.get_task("wait_input_drained").upstream_task_ids == {"rerun_failed"}
    assert dag.get_task("purge_repaired_dlq").upstream_task_ids == {"drain_results"}
    # Provisioning is a task of its own that a reader sees, before planning (which creates nothing).
    assert plan.upstream_task_ids == {"ensure_queues"}
    assert type(dag.get_task("ensure_queues")).__name__ == "EnsureQueuesOperator"
    # fan_out is mapped over the planner's shards and labelled with the shard range.
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert isinstance(fan_out, MappedOperator)
    assert fan_out.map_index_template == "{{ task.shard_label }}"


def test_a_bad_spec_is_an_import_error_naming_the_field(monkeypatch, tmp_path, no_network):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ndimensions:\n  customer: [c1, c1]\n  job_type: [classification]\n"
        "queues: {input: i, results: r}\n"
    )
    monkeypatch.setenv("BATCHQ_CUSTOMER_BATCH_SPEC", str(bad))
    bag = load_dagbag()
    assert "customer_batch" not in bag.dags
    (error,) = bag.import_errors.values()
    assert "SpecError" in error and "'customer'" in error and "duplicate value 'c1'" in error


def test_a_missing_spec_file_is_an_import_error(monkeypatch, tmp_path):
    monkeypatch.setenv("BATCHQ_CUSTOMER_BATCH_SPEC", str(tmp_path / "nope.yaml"))
    (error,) = load_dagbag().import_errors.values()
    assert "nope.yaml" in error and "does not exist" in error


# -- operator, hook, settings (no SQS needed) --------------------------------------------------------------

SPEC_YAML = REPO / "include" / "specs" / "customer_batch.yaml"


def operator(**kwargs):
    from batchq.airflow.operators import FanOutOperator

    return FanOutOperator(task_id="fan_out", spec=str(SPEC_YAML), run_id="r", **kwargs)


def test_shard_label_is_the_index_range():
    op = operator(shard={"index": 3, "start": 675, "stop": 900})
    assert op.shard_label == "shard 3: [675, 900)"
    assert op.map_index_template == "{{ task.shard_label }}"


def test_a_changed_spec_fails_before_sending(no_network):
    op = operator(shard={"index": 0, "start": 0, "stop": 10, "spec_fingerprint": "0000000000000000", "queue_url": "http://127.0.0.1:9/q"})
    with pytest.raises(SpecError, match="changed since plan_shards"):
        op.execute({})
    assert no_network == []


def test_a_shard_outside_the_product_fails_before_sending(no_network):
    size = Plan(BatchSpec.from_yaml(SPEC_YAML), "r").size
    op = operator(shard={"index": 9, "start": size - 5, "stop": size + 5}, queue_url="http://127.0.0.1:9/q")
    with pytest.raises(ValueError, match="outside the product"):
        op.execute({})
    assert no_network == []


def test_plan_shards_uses_the_provisioning_tasks_urls_without_touching_aws(no_network):
    from batchq.airflow.operators import plan_shards

    queues = {"input": "http://127.0.0.1:9/000/in", "input_dlq": "d", "results": "r", "results_dlq": "rd"}
    shards = plan_shards.function(spec=str(SPEC_YAML), queues=queues, run_id="r")
    assert shards and {s["queue_url"] for s in shards} == {queues["input"]}
    assert no_network == []
    with pytest.raises(ValueError, match="queues= must map 'input'"):
        plan_shards.function(spec=str(SPEC_YAML), queues={"results": "r"}, run_id="r")


def test_max_in_flight_sizes_the_hook_connection_pool(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "extra": {"endpoint_url": "http://127.0.0.1:9"}}))
    op = operator(shard={"index": 0, "start": 0, "stop": 1}, max_in_flight=48)
    assert op.hook.config.max_pool_connections >= 48
    assert op.hook.aws_conn_id == "aws_default"


def test_hook_keeps_the_connections_botocore_config(monkeypatch):
    from batchq.airflow.hook import BatchqSqsHook

    extra = {"endpoint_url": "http://127.0.0.1:9", "config_kwargs": {"connect_timeout": 7}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "extra": extra}))
    hook = BatchqSqsHook(max_pool_connections=20)
    assert hook.config.connect_timeout == 7 and hook.config.max_pool_connections == 20
    client = hook.get_conn()  # builds a client; makes no call
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.config.max_pool_connections == 20


def test_settings_fallbacks_and_overrides(monkeypatch, tmp_path):
    from batchq.airflow import settings

    for key in ("DEFAULT_AWS_CONN_ID", "FANOUT_MAX_IN_FLIGHT", "SPEC_DIR"):
        monkeypatch.delenv(f"AIRFLOW__BATCHQ__{key}", raising=False)
    assert settings.default_aws_conn_id() == "aws_default"
    assert settings.fanout_max_in_flight() == settings.DEFAULT_FANOUT_MAX_IN_FLIGHT
    assert settings.spec_path("customer_batch") == SPEC_YAML
    monkeypatch.setenv("AIRFLOW__BATCHQ__DEFAULT_AWS_CONN_ID", "aws_batch")
    monkeypatch.setenv("AIRFLOW__BATCHQ__FANOUT_MAX_IN_FLIGHT", "3")
    monkeypatch.setenv("AIRFLOW__BATCHQ__SPEC_DIR", str(tmp_path))
    assert settings.default_aws_conn_id() == "aws_batch"
    assert settings.fanout_max_in_flight() == 3
    assert settings.spec_path("other") == tmp_path / "other.yaml"
    assert operator(shard={"index": 0, "start": 0, "stop": 1}).aws_conn_id == "aws_batch"
    monkeypatch.setenv("AIRFLOW__BATCHQ__FANOUT_MAX_IN_FLIGHT", "lots")
    with pytest.raises(ValueError, match="fanout_max_in_flight"):
        settings.fanout_max_in_flight()


def test_variable_sources_resolve_from_airflow_variables(monkeypatch):
    from batchq.airflow.spec_sources import airflow_source_resolver, resolve_spec

    monkeypatch.setenv("AIRFLOW_VAR_BQ_CUSTOMERS", json.dumps(["c1", "c2", "c3"]))
    assert airflow_source_resolver("variable:bq_customers") == ["c1", "c2", "c3"]
    spec = BatchSpec.from_dict(
        {"name": "v", "job_type": "j", "queues": {"input": "i", "results": "r"},
         "dimensions": {"customer": "variable:bq_customers", "period": ["d"]}}
    )
    assert resolve_spec(spec).dimensions[0].values == ("c1", "c2", "c3")
    monkeypatch.setenv("AIRFLOW_VAR_BQ_NOT_A_LIST", json.dumps({"a": 1}))
    with pytest.raises(SpecError, match="JSON list"):
        airflow_source_resolver("variable:bq_not_a_list")
    with pytest.raises(SpecError, match="bq_missing"):
        airflow_source_resolver("variable:bq_missing")


def _plugin_file_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("batchq_plugin_file", REPO / "plugins" / "batchq_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plugin_file_exposes_the_plugin_only_without_the_entry_point(monkeypatch):
    """Issue 20: the plugins/ file and the entry point both registering it printed "Plugin 'batchq' already
    registered, skipping" on every airflow command. Installed (entry point): the file exposes nothing;
    not installed (the Astro image imports batchq from include/): the file exposes the plugin."""
    import importlib.metadata

    if importlib.metadata.entry_points(group="airflow.plugins", name="batchq"):  # batchq installed (make venv)
        assert not hasattr(_plugin_file_module(), "BatchqPlugin")
    else:  # batchq imported from include/ without an install (the oldest-Airflow venv, the Astro image)
        assert _plugin_file_module().BatchqPlugin.name == "batchq"
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: [])
    assert _plugin_file_module().BatchqPlugin.name == "batchq"


def test_every_example_dag_has_the_expected_shape(monkeypatch):
    """The one-line task-group DAG and the hand-wired one build the same graph; the report DAG is
    scheduled on the results Asset the drain step updates."""
    monkeypatch.delenv("BATCHQ_CUSTOMER_BATCH_SPEC", raising=False)
    dags = load_dagbag().dags
    assert {"customer_batch", "customer_batch_explicit", "customer_batch_report"} <= set(dags)

    def edges(dag):
        return {(up, t.task_id) for t in dag.tasks for up in t.upstream_task_ids}

    # With the repair path (issue 12): is_new_run gates the fan-out, rerun_failed sits before the wait,
    # purge_repaired_dlq after the drain.
    chain = {("ensure_queues", "plan_shards"), ("plan_shards", "fan_out"), ("is_new_run", "fan_out"),
             ("fan_out", "rerun_failed"), ("rerun_failed", "wait_input_drained"),
             ("wait_input_drained", "drain_results"), ("drain_results", "purge_repaired_dlq")}
    assert edges(dags["customer_batch"]) == chain
    assert edges(dags["customer_batch_explicit"]) == chain
    # Manual trigger only: it shares the spec's queues with the scheduled DAG.
    assert dags["customer_batch_explicit"].timetable.can_be_scheduled is False

    report = dags["customer_batch_report"]
    drain = dags["customer_batch"].get_task("drain_results")
    produced = {a.uri for a in drain.outlets}
    consumed = {a.uri for a in report.timetable.asset_condition.objects}
    assert produced == {"batchq://customer_batch/results"}
    assert consumed == produced


def test_the_partitioned_example_pair_is_wired_per_customer(monkeypatch):
    """customer_partitions announces partitions in mapped waves beside the drain (which no longer waits
    for the input queue to empty); customer_partition_report is scheduled per partition on exactly the
    Asset the waves update."""
    monkeypatch.delenv("BATCHQ_CUSTOMER_PARTITIONS_SPEC", raising=False)
    dags = load_dagbag().dags
    producer, consumer = dags["customer_partitions"], dags["customer_partition_report"]
    edges = {(up, t.task_id) for t in producer.tasks for up in t.upstream_task_ids}
    # With the repair path: the drain and the wait both follow rerun_failed (a no-op in a first run).
    assert {("fan_out", "rerun_failed"), ("rerun_failed", "drain_results"), ("rerun_failed", "wait_input_drained")} <= edges
    assert ("wait_input_drained", "drain_results") not in edges
    assert ("drain_results", "purge_repaired_dlq") in edges
    assert type(consumer.timetable).__name__ == "PartitionedAssetTimetable"
    from batchq.airflow.operators.partitions import partition_events_supported

    if not partition_events_supported():  # Airflow 3.2 (make test-airflow-oldest): no task-emitted keys
        assert "announce_partitions" not in producer.task_ids
        return
    announce = producer.get_task("announce_partitions")
    assert ("fan_out", "announce_partitions") in edges
    assert {a.uri for a in announce.outlets} == {"batchq://customer_partitions/partitions"}
    assert consumer.timetable.asset_condition.uri == "batchq://customer_partitions/partitions"
    assert ("drain_results", "announce_repaired") in edges
    assert {a.uri for a in producer.get_task("announce_repaired").outlets} == {"batchq://customer_partitions/partitions"}


def test_default_spec_dir_never_points_into_site_packages(tmp_path):
    # Issue 20: after `pip install .[airflow]` the default was <site-packages>/specs, which nobody fills.
    from batchq.airflow import settings

    assert settings.default_spec_dir() == REPO / "include" / "specs"  # the include/ layout (this repo, Astro)
    installed = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "batchq"
    project = tmp_path / "project"
    chosen = settings.default_spec_dir(installed, dags_folder=str(project / "dags"))
    assert chosen == project / "include" / "specs"
    assert "site-packages" not in str(chosen)


def test_a_missing_named_spec_says_where_it_was_looked_up(monkeypatch, tmp_path):
    from batchq.airflow.spec_sources import load_spec
    from batchq.errors import SpecError

    monkeypatch.setenv("AIRFLOW__BATCHQ__SPEC_DIR", str(tmp_path))
    with pytest.raises(SpecError) as info:
        load_spec("my_batch")
    message = str(info.value)
    assert f"{tmp_path / 'my_batch.yaml'}" in message and "[batchq] spec_dir" in message
    assert "AIRFLOW__BATCHQ__SPEC_DIR" in message
