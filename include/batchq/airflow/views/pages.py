"""The Batch views: server-rendered HTML pages Airflow's UI shows in its own tabs (``external_views``).

Each page answers one question and links to the next (the sidekiq habit):

- ``/ui/`` (nav "Batches"): is any batch backing up right now? — live queue gauges of every spec the
  user may see, linking to the DAGs that run it;
- ``/ui/dags/{dag_id}`` (DAG tab "Batch"): how have this DAG's batches gone lately? — runs table and
  trend charts, linking to each run;
- ``/ui/dags/{dag_id}/runs/{run_id}`` (DAG-run tab "Batch"): did this run drain, and what went wrong? —
  ledger, drain curve, queue lag, first failures, alert history.

Read-only (GET only). Per-DAG authorization through Airflow's own ``requires_access_dag``; the batches
page filters by :class:`~batchq.airflow.views.access.BatchAccess`. No JavaScript, and a
Content-Security-Policy that forbids any (:mod:`batchq.airflow.views.headers`: Airflow's iframe sandbox
*does* allow scripts); no CDN: charts are SVG rendered by :mod:`batchq.airflow.views.svg`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from batchq.airflow.views import svg
from batchq.airflow.views.headers import SECURITY_HEADERS
from batchq.monitor.report import DepthSeries, RunReport

TEMPLATES = Path(__file__).parent / "templates"
#: Airflow's own bound on DAG and run ids (``ID_LEN``).
ID_MAX = 250
DagId = PathParam(min_length=1, max_length=ID_MAX, description="DAG id")
RunId = PathParam(min_length=1, max_length=ID_MAX, description="DAG run id")
_READ_RUNS = [Depends(requires_access_dag("GET", DagAccessEntity.RUN)), Depends(requires_access_dag("GET", DagAccessEntity.XCOM))]
#: Chart lines of the run page: series field → (label, colour).
DRAIN_LINES = (
    ("visible", "input visible", svg.PALETTE[0]),
    ("in_flight", "input in flight", svg.PALETTE[1]),
    ("delayed", "input delayed", svg.PALETTE[4]),
    ("results_visible", "results visible", svg.PALETTE[2]),
    ("results_in_flight", "results in flight", svg.PALETTE[3]),
)


def _env(autoescape: bool = True) -> Any:
    """The templates' Jinja environment. ``autoescape=False`` exists only for the test that proves the
    Content-Security-Policy holds when escaping fails (tests/e2e/test_view_csp_browser.py)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=autoescape, undefined=jinja2.StrictUndefined)
    env.globals.update(fmt_duration=svg.format_duration, fmt_time=_fmt_time)
    env.filters["urlpart"] = url_part
    return env


def url_part(value: Any) -> str:
    """One path segment of a link: every character but unreserved ones percent-encoded (``/`` too, so
    a run id of ``../../..`` stays one segment under its DAG). A segment that is exactly ``.`` or
    ``..`` (which browsers resolve as a step up even percent-encoded) is encoded twice: it names a run
    the server does not have (a 404), never another path."""
    from urllib.parse import quote

    part = quote(str(value), safe="")
    return part.replace(".", "%252E") if part in (".", "..") else part


def _fmt_time(epoch: float | None) -> str:
    return "–" if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


_ENV: Any = None


def render(request: Request, template: str, **context: Any) -> HTMLResponse:
    global _ENV
    if _ENV is None:
        _ENV = _env()
    html = _ENV.get_template(template).render(base=request.scope.get("root_path", "").rstrip("/"), **context)
    # Read-only pages that must not be cached by shared proxies (they are per-user). The CSP and frame
    # policy are set here too (not only by the app's middleware): a page rendered anywhere carries them.
    return HTMLResponse(html, headers={"Cache-Control": "private, no-store", **dict(SECURITY_HEADERS)})


def _points(series: DepthSeries | None, field: str) -> list[tuple[float, float]]:
    """``(t, value)`` pairs of one field of a series; empty when the series or the field is missing."""
    values = series.column(field) if series is not None else None
    return list(zip(series.column("t") or [], values)) if values is not None else []


def drain_chart(report: RunReport) -> str | None:
    """The run's drain curve as SVG: the wait's input (and results) queue, then the results queue as the
    drain task empties it and the results it applied; one line per recorded field, ``None`` without data."""
    wait, drain = report.series, report.results_series
    if not (wait and wait.points) and not (drain and drain.points):
        return None
    lines = []
    for field, label, color in DRAIN_LINES:
        # The results queue is sampled twice: during the wait (the sensor) and while it drains.
        points = sorted(_points(wait, field) + (_points(drain, field) if field.startswith("results_") else []))
        if points and (field in ("visible", "in_flight") or any(y for _, y in points)):
            lines.append(svg.Line(label, points, color))
    applied = _points(drain, "applied")
    if any(y for _, y in applied):
        lines.append(svg.Line("applied to the sink", applied, svg.PALETTE[5]))
    # The drain's pace: sink writes it allowed in flight (its own axis); 0 = not measured yet / no
    # adaptive pace (a limit is never below 1), so those samples are left out.
    pace = [(t, y) for t, y in _points(drain, "pace_limit") if y > 0]
    if pace:
        lines.append(svg.Line("pace", pace, "#000000", right=True))
    return svg.line_chart(lines, title=f"Queue depth of run {report.run_id}", y_label="messages", y2_label="pace (writes in flight)" if pace else "")


def trend_charts(reports: list[RunReport]) -> tuple[str, str]:
    """Drain time and peak depth per run, oldest first (left to right)."""
    runs = [r for r in reversed(reports) if r.has_batch]
    labels = [run_label(r) for r in runs]
    drain = svg.bar_chart(
        list(zip(labels, [r.drain_time_s for r in runs])), title="Time to drain per run", y_label="seconds", format_value=svg.format_duration
    )
    depth = svg.bar_chart(list(zip(labels, [r.peak_depth for r in runs])), title="Peak input depth per run", y_label="messages", color=svg.PALETTE[1])
    return drain, depth


def run_label(report: RunReport) -> str:
    """A short axis label for a run: when it was due (``11-30 07:00``), else the end of its id."""
    if report.run_after is not None:
        return datetime.fromtimestamp(report.run_after, tz=timezone.utc).strftime("%m-%d %H:%M")
    return report.run_id[-11:]


def create_router() -> APIRouter:
    from batchq.airflow.views.data import run_reports

    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    async def batches_page(request: Request, user: GetUserDep) -> HTMLResponse:
        # Async: SQS is awaited within [batchq] api_queue_deadline_s on the probe pool, holding no
        # server thread (batchq.airflow.views.live).
        from batchq.airflow.views.gauges import batch_rows

        rows = await batch_rows(user)
        legend = [("visible", svg.PALETTE[0]), ("in flight", svg.PALETTE[1]), ("delayed", svg.PALETTE[2])]
        return render(request, "batches.html", title="Batches", rows=rows, legend=legend)

    @router.get("/dags/{dag_id}", response_class=HTMLResponse, dependencies=_READ_RUNS)
    def dag_page(request: Request, dag_id: str = DagId) -> HTMLResponse:
        reports = run_reports(dag_id)
        batch_reports = [r for r in reports if r.has_batch]
        drain, depth = trend_charts(reports) if batch_reports else ("", "")
        return render(request, "dag.html", title=dag_id, dag_id=dag_id, reports=reports, batch_reports=batch_reports, drain_chart=drain, depth_chart=depth)

    @router.get("/dags/{dag_id}/runs/{run_id}", response_class=HTMLResponse, dependencies=_READ_RUNS)
    def run_page(
        request: Request,
        dag_id: str = DagId,
        run_id: str = RunId,
        psort: str | None = None,
        pdir: str | None = None,
        ppage: int = 1,
    ) -> HTMLResponse:
        found = run_reports(dag_id, run_id)
        if not found:
            raise HTTPException(404, f"DAG {dag_id!r} has no run {run_id!r}")
        report = found[0]
        # The partitions table is sorted and paged here from query parameters (no script under the CSP).
        table = report.partition_table
        page = table.page(psort, {"asc": False, "desc": True}.get(pdir or ""), ppage) if table else None
        return render(
            request, "run.html", title=f"{dag_id} {run_id}", r=report, drain_chart=drain_chart(report),
            ptable=table, ppage=page,
        )

    return router
