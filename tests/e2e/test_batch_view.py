"""The Batch views served by the plugin from a live ``airflow api-server``: what the pages show for a run
the test created with ``airflow dags test``, and who may see them."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import pytest
from batchq.sqs import send_bodies

from tests.support.airflow_views import ORPHAN_BATCH, ALPHA, ALPHA_REPAIR, BETA

pytestmark = pytest.mark.ui


def _tile(html: str, name: str) -> int:
    m = re.search(rf'data-count="{name}"><div class="n">([\d,]+)</div>', html)
    assert m, f"no {name} tile"
    return int(m.group(1).replace(",", ""))


def _points(html: str, series: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(rf'<circle class="pt"[^>]*data-series="{series}" data-x="([^"]+)" data-y="([^"]+)"', html)]


def test_run_view_shows_the_runs_ledger_curve_lag_failures_and_alerts(view_home, view_server):
    dag, run_id = ALPHA["dag_id"], view_home.run_ids[ALPHA["dag_id"]]
    page = view_server.get("admin", f"/batchq/ui/dags/{dag}/runs/{quote(run_id, safe='')}")
    assert page["status"] == 200 and page["type"].startswith("text/html")
    html = page["body"]
    # The run was repaired by a later run (view_home): the tiles show its current ledger, the note what
    # it recorded itself.
    for name in ("expected", "succeeded", "failed", "pending"):
        assert _tile(html, name) == {"succeeded": ALPHA["expected"], "failed": 0}.get(name, ALPHA[name])
    assert f"before its repair this run recorded {ALPHA['failed']} failed (succeeded)" in " ".join(html.split())
    visible = _points(html, "input visible")
    assert len(visible) == 15 and visible[0][1] == ALPHA["expected"] and visible[-1][1] == 0
    assert _points(html, "results visible")  # the optional results-queue field is drawn when recorded
    # One definition: time to drain and peak depth are the queue lag's (first enqueue → last applied),
    # not the wait's polls (empty from the 9th poll, 80 s after the first; 128 at most per poll).
    assert "Time to drain 1m 35s" in html and "peak input depth 120; from 120 results" in html
    assert "58s" in html and "SQS SentTimestamp" in html  # lag p95 and where it came from
    assert html.count("has no orders") == ALPHA["failed"]
    assert "input backlog grew for 40s" in html
    assert "<script" not in html  # nothing to run: Airflow's iframe sandbox allows no scripts


def test_dag_view_lists_runs_with_their_figures_and_trend(view_home, view_server):
    dag, run_id = ALPHA["dag_id"], view_home.run_ids[ALPHA["dag_id"]]
    page = view_server.get("admin", f"/batchq/ui/dags/{dag}")
    assert page["status"] == 200
    html = page["body"]
    row = re.search(rf'<tr data-run="{re.escape(run_id)}">(.*?)</tr>', html, re.DOTALL)
    assert row, html[-2000:]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.DOTALL)
    assert cells[3:10] == ["120", "0", "0.0%", "1m 35s", "120", "58s", "1"]  # current ledger (repaired); the queue lag's figures
    assert re.search(r'<rect class="bar"[^>]*data-y="95"', html)  # the same time to drain in the trend


def test_repair_history_stays_with_the_failed_run_and_the_repair_run(view_home, view_server):
    """Read from Airflow alone: the repair run's conf and its rerun_failed / drain XComs."""
    dag, original, repair = ALPHA["dag_id"], view_home.run_ids[ALPHA["dag_id"]], view_home.repair_run_id
    pages = [view_server.get("admin", f"/batchq/ui/dags/{dag}/runs/{quote(r, safe='')}") for r in (repair, original)]
    assert [p["status"] for p in pages] == [200, 200]
    repair_html, original_html = (" ".join(p["body"].split()) for p in pages)
    reason = ALPHA_REPAIR["reason"].replace("<", "&lt;").replace(">", "&gt;")  # recorded text is escaped
    assert f'Repair of run <a class="mono" href="/batchq/ui/dags/{dag}/runs/{quote(original, safe="")}">{original}</a>' in repair_html
    assert (
        f"{ALPHA_REPAIR['sent']} keys re-sent by airflow:{dag}.rerun_failed try 1 at {ALPHA_REPAIR['requested_at']} because {reason};"
        " ledger now <strong>succeeded</strong>"
    ) in repair_html
    assert _tile(repair_html, "failed") == 0  # the repair run's drain closed the ledger with none failed
    row = re.search(rf'<tr data-repair-run="{re.escape(repair)}">(.*?)</tr>', original_html)
    assert row, "the failed run lists the run that repaired it"
    assert f'/batchq/ui/dags/{dag}/runs/{quote(repair, safe="")}"' in row.group(1) and reason in row.group(1) and "succeeded" in row.group(1)
    assert 'class="tag repaired">repaired<' in original_html and 'class="tag repaired"' not in repair_html
    runs = view_server.get("admin", f"/batchq/ui/dags/{dag}")["body"]
    rows = dict(re.findall(r'<tr data-run="([^"]+)">(.*?)</tr>', runs, re.DOTALL))
    assert 'class="tag repaired"' in rows[original] and f'title="repair of {original}">repair<' in rows[repair]


def test_views_are_authorized_per_dag(view_home, view_server):
    alpha, beta = ALPHA["dag_id"], BETA["dag_id"]
    ra, rb = view_home.run_ids[alpha], view_home.run_ids[beta]
    responses = [
        view_server.get(user, path)
        for user, path in [
            (None, f"/batchq/ui/dags/{alpha}/runs/{quote(ra, safe='')}"),
            ("scoped", f"/batchq/ui/dags/{alpha}/runs/{quote(ra, safe='')}"),
            ("scoped", f"/batchq/ui/dags/{beta}/runs/{quote(rb, safe='')}"),
            ("scoped", f"/batchq/ui/dags/{beta}"),
            ("admin", f"/batchq/ui/dags/{alpha}/runs/no-such-run"),
            ("admin", "/batchq/ui/dags/no_such_dag"),
        ]
    ]
    assert [r["status"] for r in responses] == [401, 200, 403, 403, 404, 200]
    assert "No runs yet" in responses[5]["body"]


def test_batches_page_shows_live_gauges_of_the_batches_a_user_may_see(view_home, view_server, sqs_client):
    send_bodies(sqs_client, view_home.queues[ALPHA["batch"]]["input"], [(f"g{i}", "{}") for i in range(7)])
    # Live state is cached briefly ([batchq] api_queue_cache_s) and probed within a deadline: a page may
    # show the previous probe (or "unavailable" on a loaded machine) until the next one lands.
    deadline = time.monotonic() + 60
    while True:
        admin, scoped = view_server.get("admin", "/batchq/ui/"), view_server.get("scoped", "/batchq/ui/")
        assert admin["status"] == scoped["status"] == 200
        rows = dict(re.findall(r'<tr data-batch="([^"]+)">(.*?)</tr>', admin["body"], re.DOTALL))
        visible = re.search(r'data-series="visible" data-y="(\d+)"', rows.get(ALPHA["batch"], ""))
        if (visible and visible.group(1) == "7") or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert set(rows) - {ORPHAN_BATCH} == {ALPHA["batch"], BETA["batch"]}  # a spec no DAG uses: admin's business
    assert visible and visible.group(1) == "7", rows.get(ALPHA["batch"])
    assert f'/batchq/ui/dags/{ALPHA["dag_id"]}"' in rows[ALPHA["batch"]]  # links to the next question
    assert re.findall(r'<tr data-batch="([^"]+)">', scoped["body"]) == [ALPHA["batch"]]
