"""The DAG run's Batch tab in Airflow's own UI, opened in Debian's headless Chromium (Playwright) as a
logged-in user: Airflow renders the tab, its iframe loads the plugin's page with the user's session
cookie, and the page shows the run's ledger and every point of its drain curve. A screenshot is saved
under the test's artifacts dir (and ``BATCHQ_SCREENSHOT_DIR`` if set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.airflow_views import ALPHA

pytestmark = [pytest.mark.ui, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_dag_run_batch_tab_in_airflow_ui(view_home, view_server, browser, tmp_path):
    dag, run_id = ALPHA["dag_id"], view_home.run_ids[ALPHA["dag_id"]]
    context = browser.new_context(viewport={"width": 1360, "height": 1500}, device_scale_factor=1)
    # Logged in as the UI's own login does it: a JWT from /auth/token in Airflow's `_token` cookie.
    context.add_cookies([{"name": "_token", "value": view_server.token("admin"), "url": view_server.url}])
    page = context.new_page()
    page.set_default_timeout(120_000)  # 2 shared cores: the UI bundle loads slowly under load
    page.goto(f"{view_server.url}/dags/{dag}/runs/{quote(run_id, safe='')}/plugin/batchq-run")

    frame = page.frame_locator("iframe[title='Batch']")
    ledger = frame.locator("#ledger")
    ledger.wait_for()
    shown = {name: int(frame.locator(f'[data-count="{name}"] .n').inner_text().replace(",", "")) for name in ("expected", "succeeded", "failed", "quarantined", "pending")}
    # The run was repaired by a later run (view_home): the tiles show its current ledger, which the repair
    # run's drain closed again (every failed key fixed, nothing quarantined), as tests/e2e/test_batch_view.py.
    assert shown == {**{k: ALPHA[k] for k in shown}, "succeeded": ALPHA["expected"], "failed": 0, "quarantined": 0}
    points = frame.locator('#drain-curve circle.pt[data-series="input visible"]')
    assert points.count() == 15
    assert [float(points.nth(i).get_attribute("data-y")) for i in (0, 14)] == [ALPHA["expected"], 0.0]
    assert frame.get_by_text("has no orders").count() == ALPHA["failed"]

    _screenshot(page, tmp_path / "batch-run-tab.png")
    context.close()


def test_partitions_table_matches_the_partition_ledger(view_home, view_server, browser, tmp_path):
    """The run's partitions table, as the browser shows it, against the partition ledger in the store
    (``batchq_partitions``, written by the stand-in drain); sorting by a column header is a plain link
    (server-side, no script)."""
    import sqlite3

    dag, run_id = ALPHA["dag_id"], view_home.run_ids[ALPHA["dag_id"]]
    with sqlite3.connect(Path(view_home.env["AIRFLOW_HOME"]) / "partitions.db") as db:
        ledger = {p: (o, s, e - s - f, f) for p, o, e, s, f in db.execute(
            "select partition, outcome, expected, succeeded, failed from batchq_partitions where run_id = ?", (run_id,))}
    assert len(ledger) == 12 and ledger["c03"] == ("failed", 7, 0, 3)  # 3 failures, none tolerated
    context = browser.new_context(viewport={"width": 1360, "height": 2200}, device_scale_factor=1)
    context.add_cookies([{"name": "_token", "value": view_server.token("admin"), "url": view_server.url}])
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{view_server.url}/dags/{dag}/runs/{quote(run_id, safe='')}/plugin/batchq-run")
    frame = page.frame_locator("iframe[title='Batch']")
    table = frame.locator("#partition-table")
    table.wait_for()

    def shown() -> dict:
        rows = table.locator("tbody tr")
        out = {}
        for i in range(rows.count()):
            row = rows.nth(i)
            out[row.get_attribute("data-partition")] = (
                row.get_attribute("data-outcome"),
                *(int(row.locator(f'[data-col="{c}"]').inner_text().replace(",", "")) for c in ("succeeded", "pending", "failed")),
            )
        return out

    assert shown() == ledger
    counts = {name: int(frame.locator(f'#partition-counts [data-pcount="{name}"] .n').inner_text()) for name in ("partitions", "done", "failed", "pending")}
    assert counts == {"partitions": 12, "done": sum(o == "succeeded" for o, *_ in ledger.values()),
                      "failed": sum(o == "failed" for o, *_ in ledger.values()), "pending": 0}
    # Sort by "Failed", descending: a link to the same page with ?psort=failed, rendered by the server.
    frame.locator("#partition-table thead a", has_text="Failed").click()
    frame.locator('#partition-table[data-sort="failed"]').wait_for()
    assert table.locator("tbody tr").first.get_attribute("data-partition") == "c03"
    _screenshot(page, tmp_path / "batch-run-partitions.png")


def test_batches_nav_page_links_to_the_dag_and_its_runs(view_home, view_server, browser, tmp_path):
    """Sidekiq-style: Batches (nav) → the DAG's runs → one run, each a link inside Airflow's iframe."""
    run_id = view_home.run_ids[ALPHA["dag_id"]]
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, device_scale_factor=1)
    context.add_cookies([{"name": "_token", "value": view_server.token("scoped"), "url": view_server.url}])
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{view_server.url}/plugin/batchq-batches")
    frame = page.frame_locator("iframe[title='Batches']")
    rows = frame.locator("tr[data-batch]")
    rows.first.wait_for()
    # The scoped user may read bv_alpha only: one batch listed.
    assert [rows.nth(i).get_attribute("data-batch") for i in range(rows.count())] == [ALPHA["batch"]]
    _screenshot(page, tmp_path / "batches-nav.png")

    frame.get_by_role("link", name=ALPHA["dag_id"]).click()
    run_row = frame.locator(f'tr[data-run="{run_id}"]')
    run_row.wait_for()
    assert frame.locator("svg.chart rect.bar").count() >= 1
    _screenshot(page, tmp_path / "batch-dag-runs.png")

    run_row.get_by_role("link", name=run_id).click()
    frame.locator("#ledger").wait_for()
    assert frame.locator('[data-count="expected"] .n').inner_text() == str(ALPHA["expected"])
    context.close()


def _screenshot(page, path: Path) -> None:
    page.wait_for_timeout(500)  # let the tab settle before the picture
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    if os.environ.get("BATCHQ_SCREENSHOT_DIR"):
        out = Path(os.environ["BATCHQ_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out / path.name)
