"""``batchq dev run``'s live view and closing summary (Airflow-free: boto3 through batchq.sqs, SQLite, StatsD).

:func:`watch` — while the DAG run goes on: every second, the input queue (visible, in flight, delayed,
DLQ), the results queue, the workers (the supervisor's ``batchq.supervisor.workers`` gauge), results
processed (``batchq.worker.processed``) and drained (rows in the SQLite sink), and the DAG's current step
(from its log). A live table on a terminal, a line every 5 s otherwise. Writes the samples.

:func:`summary` — payloads, results, duplicates absorbed, failures, peak depth, time to drain, queue lag
p95 (message age at receive, from the workers' ``batchq.worker.message_age_ms``), and the drain curve as
a PNG.

The workers report to this process over StatsD (UDP on loopback): the same metrics a Prometheus/Grafana
stack would receive (docker-compose.yaml), so the view shows what production monitoring would.
"""

from __future__ import annotations

import json
import math
import re
import socket
import sqlite3
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STEPS = ("ensure_queues", "plan_shards", "fan_out", "wait_input_drained", "drain_results")


# -- StatsD ---------------------------------------------------------------------------------------------


def parse_statsd(line: str) -> tuple[str, float, str] | None:
    """``name:value|type[|@rate][|#tags]`` → (name, value, type); None for anything else."""
    m = re.match(r"^([\w.\-]+):(-?[\d.]+(?:e-?\d+)?)\|(c|g|ms|h|d)\b", line.strip())
    return (m.group(1), float(m.group(2)), m.group(3)) if m else None


@dataclass
class StatsdState:
    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    timers: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float, kind: str) -> None:
        if kind == "c":
            self.counters[name] = self.counters.get(name, 0.0) + value
        elif kind == "g":
            self.gauges[name] = value
        else:
            values = self.timers.setdefault(name, [])
            if len(values) < 1_000_000:  # bounded memory whatever the burst
                values.append(value)


class StatsdListener(threading.Thread):
    """Receives StatsD packets on 127.0.0.1:port into a :class:`StatsdState`."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.state = StatsdState()
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.5)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                data = self.sock.recv(65535)
            except (TimeoutError, OSError):
                continue
            for line in data.decode(errors="replace").splitlines():
                parsed = parse_statsd(line)
                if parsed:
                    with self.lock:
                        self.state.add(*parsed)

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()


# -- one sample -----------------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    step: str
    input_visible: int | None
    input_in_flight: int | None
    input_delayed: int | None
    input_dlq: int | None
    results_visible: int | None
    results_in_flight: int | None
    workers: int | None
    processed: int
    drained: int

    @property
    def input_backlog(self) -> int | None:
        if self.input_visible is None:
            return None
        return self.input_visible + (self.input_in_flight or 0) + (self.input_delayed or 0)


def count_rows(db: Path, table: str, run_id: str | None = None) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            if run_id:
                return conn.execute(f"select count(*) from {table} where run_id = ?", (run_id,)).fetchone()[0]
            return conn.execute(f"select count(*) from {table}").fetchone()[0]
    except sqlite3.Error:  # not created yet, or locked for a moment by the drainer
        return 0


class LogFollower:
    """The DAG's current step: the last of :data:`STEPS` named in the `airflow dags test` log."""

    def __init__(self, path: Path):
        self.path, self.offset, self.step = path, 0, "starting"

    def poll(self) -> str:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
                self.offset = f.tell()
        except OSError:
            return self.step
        found = re.findall(rb"task_id=(\w+)|\b(" + b"|".join(s.encode() for s in STEPS) + rb")\b", chunk)
        for a, b in found:
            name = (a or b).decode()
            if name in STEPS:
                self.step = name
        return self.step


class QueueReader:
    def __init__(self, spec_path: str, endpoint_url: str | None = None):
        from batchq.spec import BatchSpec
        from batchq.sqs.client import sqs_client

        self.queues = BatchSpec.from_yaml(spec_path).queues
        self.client = sqs_client(endpoint_url=endpoint_url)
        self.urls: Any = None

    def snapshots(self) -> tuple[Any, Any]:
        from batchq.sqs import get_snapshot
        from batchq.sqs.queues import resolve_queue_urls

        try:
            if self.urls is None:
                self.urls = resolve_queue_urls(self.client, self.queues)
            return (get_snapshot(self.client, self.urls.input, self.urls.input_dlq),
                    get_snapshot(self.client, self.urls.results, self.urls.results_dlq))
        except Exception:  # noqa: BLE001 - queues not there yet, endpoint busy: show "-" this second
            self.urls = None
            return None, None


def fmt(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def render(sample: Sample, expected: int | None) -> Any:
    from rich.table import Table

    table = Table(title=f"batchq demo · {sample.t:5.0f}s · step: {sample.step}", title_justify="left")
    for col in ("input visible", "in flight", "delayed", "DLQ", "results queue", "workers", "processed", "drained"):
        table.add_column(col, justify="right")
    drained = f"{sample.drained:,}" + (f" / {expected:,}" if expected else "")
    table.add_row(fmt(sample.input_visible), fmt(sample.input_in_flight), fmt(sample.input_delayed), fmt(sample.input_dlq),
                  fmt(None if sample.results_visible is None else sample.results_visible + (sample.results_in_flight or 0)),
                  fmt(sample.workers), f"{sample.processed:,}", drained)
    return table


def line(sample: Sample, expected: int | None) -> str:
    return (f"[{sample.t:5.0f}s] {sample.step:<18} input visible={fmt(sample.input_visible)} in_flight={fmt(sample.input_in_flight)} "
            f"dlq={fmt(sample.input_dlq)} | workers={fmt(sample.workers)} processed={sample.processed:,} | "
            f"results queue={fmt(sample.results_visible)} drained={sample.drained:,}" + (f"/{expected:,}" if expected else ""))


def watch(spec: str, sink_db: Path, statsd_port: int, log: Path, series: Path, *, running: Any,
          expected: int | None = None, interval: float = 1.0, plain: bool = False,
          endpoint_url: str | None = None) -> list[Sample]:
    """Sample the run every ``interval`` seconds while ``running()`` is true (and once after), showing
    each sample; write the samples and the StatsD figures to ``series`` (JSON). Returns the samples."""
    listener = StatsdListener(statsd_port)
    listener.start()
    reader, follower = QueueReader(spec, endpoint_url), LogFollower(Path(log))
    started, samples = time.monotonic(), []
    tty = sys.stdout.isatty() and not plain
    last_line = -math.inf

    def take() -> Sample:
        inp, res = reader.snapshots()
        with listener.lock:
            workers = listener.state.gauges.get("batchq.supervisor.workers")
            processed = int(listener.state.counters.get("batchq.worker.processed", 0))
        return Sample(
            t=round(time.monotonic() - started, 2), step=follower.poll(),
            input_visible=inp and inp.visible, input_in_flight=inp and inp.in_flight, input_delayed=inp and inp.delayed,
            input_dlq=inp.dlq_visible if inp else None,
            results_visible=res and res.visible, results_in_flight=res and res.in_flight,
            workers=None if workers is None else int(workers), processed=processed,
            drained=count_rows(Path(sink_db), "batchq_results"),
        )

    live = None
    if tty:
        from rich.live import Live

        live = Live(auto_refresh=False)
        live.start()
    try:
        while True:
            still = running()
            sample = take()
            samples.append(sample)
            if live is not None:
                live.update(render(sample, expected), refresh=True)
            elif sample.t - last_line >= 5 or not still:
                print(line(sample, expected), flush=True)
                last_line = sample.t
            if not still:
                break
            time.sleep(interval)
    finally:
        if live is not None:
            live.stop()
        listener.stop()
        with listener.lock:
            state = asdict(listener.state)
        Path(series).write_text(json.dumps({"samples": [asdict(s) for s in samples], "statsd": state}))
    return samples


# -- summary --------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def time_to_drain(samples: list[dict[str, Any]]) -> float | None:
    """Seconds from the first sample with an input backlog to the first at which every result that
    would ever be drained is in the sink (the last change of the drained count)."""
    first = next((s["t"] for s in samples if (s["input_visible"] or 0) + (s["input_in_flight"] or 0) + (s["input_delayed"] or 0) > 0), None)
    final = samples[-1]["drained"] if samples else 0
    done = next((s["t"] for s in samples if s["drained"] == final and final > 0), None)
    return None if first is None or done is None else round(done - first, 1)


def peak_depth(samples: list[dict[str, Any]]) -> int:
    return max(((s["input_visible"] or 0) + (s["input_in_flight"] or 0) + (s["input_delayed"] or 0) for s in samples), default=0)


def ledger(db: Path, batch: str, run_id: str | None) -> dict[str, Any] | None:
    if not db.exists():
        return None
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        query = "select * from batchq_runs where batch = ?" + (" and run_id = ?" if run_id else "") + " order by updated_at desc limit 1"
        try:
            row = conn.execute(query, (batch, run_id) if run_id else (batch,)).fetchone()
        except sqlite3.Error:
            return None
        return dict(row) if row else None


def summarize(samples: list[dict[str, Any]], statsd: dict[str, Any], run: dict[str, Any] | None, rows: int, quarantined: int) -> dict[str, Any]:
    """The closing figures (pure: everything measured is passed in)."""
    processed = int(statsd.get("counters", {}).get("batchq.worker.processed", 0))
    failed_results = int(statsd.get("counters", {}).get("batchq.worker.failed", 0))
    age = statsd.get("timers", {}).get("batchq.worker.message_age_ms", [])
    p95 = percentile(age, 95)
    return {
        "payloads": run["expected"] if run else None,
        "results": rows,
        "succeeded": run["succeeded"] if run else None,
        "failed": run["failed"] if run else failed_results,
        "outcome": run["outcome"] if run else None,
        # Workers handle a payload more than once only on redelivery; the sink's upsert on key absorbs it.
        "duplicates_absorbed": max(0, processed - rows) if processed else None,
        "quarantined": quarantined,
        "peak_depth": peak_depth(samples),
        "time_to_drain_s": time_to_drain(samples),
        "wall_s": samples[-1]["t"] if samples else None,
        "lag_p95_s": None if p95 is None else round(p95 / 1000, 2),
        "max_workers": max((s["workers"] or 0 for s in samples), default=0),
    }


def drain_curve_png(samples: list[dict[str, Any]], title: str) -> bytes:
    from batchq.dev.tiny_png import line_chart

    def pts(key) -> list[tuple[float, float]]:
        return [(s["t"], float(v)) for s in samples if (v := key(s)) is not None]

    series = {
        "input backlog": pts(lambda s: None if s["input_visible"] is None else s["input_visible"] + (s["input_in_flight"] or 0) + (s["input_delayed"] or 0)),
        "results queue": pts(lambda s: None if s["results_visible"] is None else s["results_visible"] + (s["results_in_flight"] or 0)),
        "drained to sink": pts(lambda s: s["drained"]),
        "workers x100": pts(lambda s: None if s["workers"] is None else s["workers"] * 100),
    }
    return line_chart(series, title=title, x_label="seconds since the DAG started", y_label="messages")


def summary(spec_path: str, sink_db: Path, series: Path, *, run_id: str | None = None, png: Path | None = None,
            title: str = "batchq dev run: summary") -> dict[str, Any]:
    """Print the closing table (and the figures as one JSON line); write the drain curve to ``png``.
    Returns the figures (``outcome`` is the run ledger's)."""
    from batchq.spec import BatchSpec

    data = json.loads(Path(series).read_text())
    samples, statsd = data["samples"], data["statsd"]
    spec = BatchSpec.from_yaml(spec_path)
    sink = Path(sink_db)
    run = ledger(sink, spec.name, run_id)
    rows = count_rows(sink, "batchq_results", run["run_id"] if run else None)
    figures = summarize(samples, statsd, run, rows, count_rows(sink, "batchq_quarantine"))
    if png:
        Path(png).parent.mkdir(parents=True, exist_ok=True)
        chart_title = f"{spec.name}: {figures['payloads'] or rows:,} payloads"
        Path(png).write_bytes(drain_curve_png(samples, chart_title))
        figures["png"] = str(png)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False)
    # A value too wide for the terminal wraps onto more lines; it is never cut short (a path must stay whole).
    table.add_column(overflow="fold")
    table.add_column(overflow="fold")
    shown = {
        "payloads": figures["payloads"], "results in the sink": figures["results"],
        "succeeded / failed": f"{figures['succeeded']} / {figures['failed']}", "ledger": figures["outcome"],
        "duplicates absorbed": figures["duplicates_absorbed"], "quarantined": figures["quarantined"],
        "peak input depth": figures["peak_depth"], "most workers": figures["max_workers"],
        "time to drain": f"{figures['time_to_drain_s']} s", "DAG wall time": f"{figures['wall_s']} s",
        "queue lag p95 (message age at receive)": "n/a" if figures["lag_p95_s"] is None else f"{figures['lag_p95_s']} s",
    }
    for k, v in shown.items():
        text = f"{v:,}" if isinstance(v, int) else str(v)
        table.add_row(k, "n/a" if v is None or text.startswith("None") else text)
    Console().print(table)
    if png:
        # Outside the table, on a line of its own: whole and copyable whatever the terminal's width.
        print(f"drain curve: {png}")
    print(json.dumps(figures))
    return figures
