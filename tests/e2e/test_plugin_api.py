"""The plugin's HTTP app inside Airflow's real API server app: mounted at ``/batchq`` by the plugin,
refusing requests without Airflow's token (schema and docs included), authorizing per DAG, bounding its
input, answering errors as 4xx/5xx-with-a-message (never a bare 500), leaking no filesystem path, and
reporting the queue counts a real endpoint holds."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest
from batchq.spec import BatchSpec
from batchq.sqs import receive_messages, send_bodies
from batchq.sqs.queues import ensure_queues

from tests.support.airflow_views import ALPHA, BETA, api_get

pytestmark = pytest.mark.e2e


def test_queue_lag_api_is_authenticated_and_reports_real_counts(airflow_home, sqs_client, tmp_path):
    base = f"api-{uuid.uuid4().hex[:8]}"
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "lagdemo.yaml").write_text(
        f"name: lagdemo\ndimensions: {{n: [1, 2, 3]}}\njob_type: noop\nqueues: {{input: {base}-in, results: {base}-out}}\n"
    )
    (spec_dir / "broken.yaml").write_text("name: broken\ndimensions: {n: []}\njob_type: x\nqueues: {input: a, results: b}\n")
    spec = BatchSpec.from_yaml(spec_dir / "lagdemo.yaml")
    urls = ensure_queues(sqs_client, spec.queues)
    send_bodies(sqs_client, urls.input, [(f"k{i}", "{}") for i in range(12)])
    leased = receive_messages(sqs_client, urls.input, max_messages=2, wait_seconds=0, visibility_timeout=300)
    send_bodies(sqs_client, urls.results, [("r", "{}")])

    env = {**airflow_home.env, "AIRFLOW__BATCHQ__SPEC_DIR": str(spec_dir)}
    anonymous, bad_token, listing, queues, missing, chosen_conn = api_get(
        env,
        [
            (None, "/batchq/v1/batches"),
            ("bad-token", "/batchq/v1/batches"),
            ("admin", "/batchq/v1/batches"),
            ("admin", "/batchq/v1/batches/lagdemo/queues?backlog_per_worker=5"),
            ("admin", "/batchq/v1/batches/no-such-spec/queues"),
            # A caller can no longer pick the connection the server uses: the parameter is ignored.
            ("admin", "/batchq/v1/batches/lagdemo/queues?aws_conn_id=does_not_exist"),
        ],
    )
    assert anonymous["status"] == 401
    assert bad_token["status"] in (401, 403)
    assert listing["status"] == 200
    by_file = {b["file"]: b for b in listing["body"]["batches"]}
    assert by_file["lagdemo.yaml"]["name"] == "lagdemo"
    assert "is empty" in by_file["broken.yaml"]["error"]
    assert str(tmp_path) not in json.dumps(listing["body"])  # no absolute paths

    assert queues["status"] == 200, queues["body"]
    q = queues["body"]
    assert q["input"]["visible"] == 12 - len(leased)
    assert q["input"]["in_flight"] == len(leased)
    assert q["input"]["backlog"] == 12
    assert q["input"]["dlq_visible"] == 0
    # moto publishes no CloudWatch SQS metrics: no queue-level age, and the output says where none came from
    assert (q["input"]["oldest_age_s"], q["input"]["age_source"]) == (None, None)
    assert q["results"]["visible"] == 1
    assert q["desired_workers"] == 3  # ceil(12 / 5)
    assert q["drained"] is False
    assert missing["status"] == 404 and "no-such-spec" in missing["body"]["detail"]
    assert str(tmp_path) not in missing["body"]["detail"]
    assert chosen_conn["status"] == 200 and chosen_conn["body"]["input"]["backlog"] == 12


def test_schema_and_docs_need_a_token(view_server):
    paths = ["/batchq/openapi.json", "/batchq/docs", "/batchq/redoc", "/batchq/v1/openapi.json"]
    responses = [view_server.get(user, p) for user in (None, "admin") for p in paths]
    anonymous, authenticated = responses[: len(paths)], responses[len(paths) :]
    # FastAPI's public docs and schema are disabled (for everyone); the schema is served to
    # authenticated users only, at /v1/openapi.json.
    assert [r["status"] for r in anonymous] == [404, 404, 404, 401]
    assert [r["status"] for r in authenticated] == [404, 404, 404, 200]
    assert "/v1/batches" in authenticated[3]["body"]["paths"]


def test_bad_input_is_a_4xx_with_a_message(view_server):
    long_name = "x" * 300
    paths = [
        f"/batchq/v1/batches/{long_name}/queues",
        "/batchq/v1/batches/bad%20name/queues",
        "/batchq/v1/batches/ok/queues?backlog_per_worker=0",
        f"/batchq/ui/dags/{'d' * 300}",
    ]
    responses = [view_server.get("admin", p) for p in paths]
    assert [r["status"] for r in responses] == [422, 422, 422, 422], responses
    assert all(r["body"]["detail"] for r in responses)


def test_unknown_server_connection_is_503_not_500(airflow_home, tmp_path):
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "conn.yaml").write_text("name: conn\ndimensions: {n: [1]}\njob_type: noop\nqueues: {input: c-in, results: c-out}\n")
    env = {**airflow_home.env, "AIRFLOW__BATCHQ__SPEC_DIR": str(spec_dir), "AIRFLOW__BATCHQ__API_AWS_CONN_ID": "no_such_conn"}
    (resp,) = api_get(env, [("admin", "/batchq/v1/batches/conn/queues")])
    assert resp["status"] == 503 and "no_such_conn" in resp["body"]["detail"]


def test_batches_are_authorized_per_dag(view_server):
    a, b = ALPHA["batch"], BETA["batch"]
    admin_list, scoped_list, scoped_a, scoped_b, scoped_missing = [
        view_server.get(user, path)
        for user, path in [
            ("admin", "/batchq/v1/batches"),
            ("scoped", "/batchq/v1/batches"),
            ("scoped", f"/batchq/v1/batches/{a}/queues"),
            ("scoped", f"/batchq/v1/batches/{b}/queues"),
            ("scoped", "/batchq/v1/batches/not-a-batch/queues"),
        ]
    ]
    from tests.support.airflow_views import ORPHAN_BATCH

    listed = {x["name"]: x["dags"] for x in admin_list["body"]["batches"]}
    listed.pop(ORPHAN_BATCH, None)  # whether an admin sees the orphan spec is the other test's business
    assert listed == {a: [ALPHA["dag_id"]], b: [BETA["dag_id"]]}
    assert [x["name"] for x in scoped_list["body"]["batches"]] == [a]
    assert scoped_a["status"] == 200 and scoped_a["body"]["batch"] == a
    assert scoped_b["status"] == 403 and b in scoped_b["body"]["detail"]
    assert scoped_missing["status"] == 403  # no probing which batch names exist


def test_every_response_carries_the_csp_and_frame_policy(view_home, view_server):
    from batchq.airflow.views.headers import CONTENT_SECURITY_POLICY

    dag, run_id = ALPHA["dag_id"], view_home.run_ids[ALPHA["dag_id"]]
    responses = [
        view_server.get(user, path)
        for user, path in [
            ("admin", "/batchq/v1/batches"),  # JSON
            (None, "/batchq/v1/batches"),  # 401
            ("scoped", f"/batchq/v1/batches/{BETA['batch']}/queues"),  # 403
            ("admin", f"/batchq/ui/dags/{dag}/runs/{quote(run_id, safe='')}"),  # a page
            ("admin", f"/batchq/ui/dags/{dag}/runs/no-such-run"),  # 404
        ]
    ]
    assert [r["status"] for r in responses] == [200, 401, 403, 200, 404]
    for r in responses:
        assert r["headers"]["content-security-policy"] == CONTENT_SECURITY_POLICY, r
        assert r["headers"]["x-frame-options"] == "SAMEORIGIN" and r["headers"]["x-content-type-options"] == "nosniff"


def test_owners_in_a_spec_override_the_results_outlet(view_home, view_server):
    """bv_alpha declares bvalpha's results outlet; once the spec names ``owners: [bv_beta]`` only bv_beta
    grants access, so the user scoped to bv_alpha no longer sees the batch (spec files are read per request)."""
    spec_file = view_home.spec_dir / f"{ALPHA['batch']}.yaml"
    original = spec_file.read_text()
    try:
        spec_file.write_text(original + f"owners: [{BETA['dag_id']}]\n")
        admin_list, scoped_list, scoped_q = [
            view_server.get(user, path)
            for user, path in [("admin", "/batchq/v1/batches"), ("scoped", "/batchq/v1/batches"), ("scoped", f"/batchq/v1/batches/{ALPHA['batch']}/queues")]
        ]
    finally:
        spec_file.write_text(original)
    dags = {x["name"]: x["dags"] for x in admin_list["body"]["batches"]}
    assert dags[ALPHA["batch"]] == [BETA["dag_id"]]  # the outlet of bv_alpha is ignored
    assert ALPHA["batch"] not in [x["name"] for x in scoped_list["body"]["batches"]]
    assert scoped_q["status"] == 403


def test_aws_error_text_never_reaches_a_response_or_the_page(airflow_home, sqs_endpoint, sqs_client, tmp_path):
    from tests.support.sqs_fault_proxy import DENIED_MESSAGE, SqsFaultProxy

    base = f"leak-{uuid.uuid4().hex[:8]}"
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "leaky.yaml").write_text(f"name: leaky\ndimensions: {{n: [1]}}\njob_type: noop\nqueues: {{input: {base}-in, results: {base}-out}}\n")
    ensure_queues(sqs_client, BatchSpec.from_yaml(spec_dir / "leaky.yaml").queues)
    with SqsFaultProxy(sqs_endpoint) as proxy:
        proxy.plan.denied_attributes.add(f"{base}-in")
        extra = {"endpoint_url": proxy.url, "region_name": "us-east-1"}
        env = {
            **airflow_home.env,
            "AIRFLOW__BATCHQ__SPEC_DIR": str(spec_dir),
            "AIRFLOW_CONN_LEAKY_SQS": json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}),
            "AIRFLOW__BATCHQ__API_AWS_CONN_ID": "leaky_sqs",
        }
        queues, page = api_get(env, [("admin", "/batchq/v1/batches/leaky/queues"), ("admin", "/batchq/ui/")])
    assert queues["status"] == 502 and "AccessDenied on GetQueueAttributes" in queues["body"]["detail"], queues
    assert page["status"] == 200 and "AccessDenied on GetQueueAttributes" in page["body"]
    for text in (json.dumps(queues["body"]), page["body"]):
        assert "123456789012" not in text and "secret-role" not in text and DENIED_MESSAGE[:20] not in text


def test_a_spec_no_dag_produces_never_leaks_to_a_dag_scoped_user(view_server):
    """The spec directory holds a spec that no DAG uses: a user limited to some DAGs gets nothing of it —
    not in the list, 403 on its queues (the same answer as a name that does not exist)."""
    from tests.support.airflow_views import ORPHAN_BATCH

    scoped_list, scoped_orphan, scoped_missing = [
        view_server.get("scoped", path)
        for path in ("/batchq/v1/batches", f"/batchq/v1/batches/{ORPHAN_BATCH}/queues", "/batchq/v1/batches/no-such-batch/queues")
    ]
    assert ORPHAN_BATCH not in [x["name"] for x in scoped_list["body"]["batches"]]
    assert scoped_orphan["status"] == 403
    assert ORPHAN_BATCH not in str(scoped_list["body"])
    assert scoped_orphan["body"]["detail"].replace(ORPHAN_BATCH, "X") == scoped_missing["body"]["detail"].replace("no-such-batch", "X")
