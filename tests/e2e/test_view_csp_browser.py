"""The Content-Security-Policy holds even when escaping fails: a test-only build of the run page with
Jinja's autoescape switched off renders hostile recorded text (``<script>``, an ``onerror`` handler)
raw, inside an iframe sandboxed exactly as Airflow 3.3's UI sandboxes external views (``allow-scripts
allow-same-origin allow-forms allow-downloads``: scripts *do* run there). Served with the page's real
headers (:func:`batchq.airflow.views.pages.render`), no injected script runs; served without them (the
control), the same page does run them, so the test would notice a CSP that stopped working."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from fastapi import Request  # at module level: the route's annotation is resolved from here

from tests.e2e.test_batch_view_browser import _screenshot, browser  # noqa: F401 - the browser fixture

pytestmark = [pytest.mark.ui, pytest.mark.browser]

#: Airflow 3.3.2's iframe for external views (airflow-core/src/airflow/ui/src/pages/Iframe.tsx).
AIRFLOW_SANDBOX = "allow-scripts allow-same-origin allow-forms allow-downloads"
#: Each injected piece counts itself in the top window and paints a banner (visible in the screenshots).
_RUN = ("window.top.__pwned = (window.top.__pwned || 0) + 1; document.body.dataset.pwned = '{what}'; "
        "document.body.insertAdjacentHTML('afterbegin', '<p style=\\'background:#c53030;color:#fff;font:24px sans-serif;padding:8px\\'>injected {what} ran</p>')")
HOSTILE_SCRIPT = f"<script>{_RUN.format(what='script')}</script>"
HOSTILE_HANDLER = f'<img src=x onerror="{_RUN.format(what="handler")}">'


def _hostile_report():
    from batchq.monitor.report import run_report

    ledger = {
        "batch": "orders", "expected": 3, "succeeded": 2, "failed": 1, "quarantined": 0, "pending": 0, "outcome": "failed",
        "first_failures": [{"key": f"k1{HOSTILE_HANDLER}", "error": {"type": "ValueError", "message": f"bad row {HOSTILE_SCRIPT}"}}],
    }
    alerts = [{"kind": "stalled", "started_at": 1767225600.0, "message": f"stuck {HOSTILE_SCRIPT}{HOSTILE_HANDLER}"}]
    return run_report("orders_dag", f"manual__{HOSTILE_SCRIPT}", [("ledger", ledger), ("alert_episodes", alerts)], state="failed")


@pytest.fixture
def unescaped_app(monkeypatch):
    """The run page, built with escaping off, behind a parent page that frames it like Airflow's UI."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    from batchq.airflow.views import pages

    monkeypatch.setattr(pages, "_ENV", pages._env(autoescape=False))  # the test-only build
    report = _hostile_report()
    app = FastAPI()

    @app.get("/page")
    def page(request: Request, headers: int = 1):
        response = pages.render(request, "run.html", title="t", r=report, drain_chart=None)
        return response if headers else HTMLResponse(response.body)  # control: the same page, no CSP

    @app.get("/airflow")
    def airflow_ui(headers: int = 1):
        return HTMLResponse(f'<!doctype html><title>Airflow</title><iframe title="Batch" sandbox="{AIRFLOW_SANDBOX}" '
                            f'src="/page?headers={headers}" style="width:1300px;height:1400px;border:0"></iframe>')

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _open(browser, url: str, shot: Path):  # noqa: F811 - browser is the fixture's value
    context = browser.new_context(viewport={"width": 1360, "height": 1500}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(120_000)  # 2 shared cores
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.goto(url)
    frame = page.frame_locator("iframe[title='Batch']")
    frame.locator("h1").wait_for()
    page.wait_for_timeout(1000)  # give any injected handler (the broken image) time to fire
    pwned = page.evaluate("window.__pwned || 0")
    marker = frame.locator("body").get_attribute("data-pwned")
    _screenshot(page, shot)
    context.close()
    return pwned, marker, violations


def test_injected_script_does_not_run_even_with_escaping_off(browser, unescaped_app, tmp_path):  # noqa: F811
    # Control: without the headers the unescaped page runs the injected script and handler in
    # Airflow's sandbox, so the injection is real.
    pwned, marker, _ = _open(browser, f"{unescaped_app}/airflow?headers=0", tmp_path / "csp-control-no-headers.png")
    assert pwned >= 2 and marker in ("script", "handler")

    # With the page's real headers: the same markup, and nothing runs.
    pwned, marker, violations = _open(browser, f"{unescaped_app}/airflow?headers=1", tmp_path / "csp-escaping-off.png")
    assert pwned == 0 and marker is None
    assert violations, "Chromium reported no CSP violation: was the injected markup rendered at all?"
