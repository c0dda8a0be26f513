"""RunReport: what one batch run left behind, as the UI's Batch view shows it.

This module is the *input contract* of the view, pure and Airflow-free: the producers (plan task, drain
sensor, drain operator, and later the lag and alert steps) leave plain JSON in XCom; :func:`run_report`
turns whatever subset of it exists into one validated :class:`RunReport`. Missing or malformed parts are
``None`` (and noted in ``problems``), never an exception: a view of a half-finished or older run must
still render.

XCom keys read (any task of the run; the first match wins):

- ``plan``: ``{"expected": int, ...}`` (pushed by ``plan_shards``);
- ``backlog_series`` (or the older ``drain_series``): ``{"fields": ["t", "visible", "in_flight",
  "delayed", "dlq", ...], "points": [[t, ...], ...]}``; optional fields ``results_visible`` and
  ``results_in_flight`` draw the results queue;
- ``results_series``: the results queue while the drain task drains it (``t``, ``results_visible``,
  ``results_in_flight``, ``applied``) and the drain's pace (``pace_limit``: writes in flight, drawn as
  the "pace" line; ``rtt_ms``, ``baseline_ms``); older runs without the pace fields still render;
- ``return_value`` of the drain task, or ``ledger``: the ledger counts (``expected``, ``succeeded``,
  ``failed``, ``quarantined``, ``pending``, ``outcome``, optional ``first_failures``); the results Asset
  event's ``extra`` carries the same counts and is used when no XCom has them;
- ``queue_lag``: ``{"input_wait": {"p50", "p95", "max"}, "processing": {...}, "results_wait": {...},
  "source": "..."}``, seconds;
- ``partitions``: ``{"fields": [...], "rows": [[...], ...]}`` per-partition counts and dwell (the drain,
  with ``partition_by``; :class:`batchq.monitor.partition_table.PartitionTable` reads it);
- ``alert_episodes``: ``[{"kind", "started_at", "resolved_at", "message"}, ...]``;
- ``first_failures``: ``[{"key", "error", "dims"?}, ...]`` when the ledger does not carry them (a failure's
  key is shown by its dimensions when it carries them: :func:`batchq.messages.describe_key`);
- ``return_value`` of ``rerun_failed`` (recognised by its shape): the repair this run made (``repair_id``,
  ``run_id`` repaired, ``mode``, ``selected``, ``sent``, ``keys``, ``reason``, ``requested_by``,
  ``requested_at``, ``outcome_before``); the outcome after is the run's ledger ``outcome``.

Besides XComs, the DAG run's ``conf`` (``repair_run_id``: this run repairs that one) and the later runs
that repaired this one (:class:`RepairRun`, found by the caller) make the ``repairs`` part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from batchq import xcom_keys
from batchq.errors import MAX_ERROR_TEXT, safe_error_text
from batchq.messages import describe_key

#: XCom keys of the depth series, newest name first (``drain_series`` was its first name).
SERIES_KEYS = (xcom_keys.BACKLOG_SERIES, xcom_keys.LEGACY_DRAIN_SERIES)
#: XCom key of the results queue while the drain task drains it: fields t, results_visible,
#: results_in_flight, applied, and the drain's pace (pace_limit, rtt_ms, baseline_ms; ``None`` before
#: its first window or without adaptive pace) (``ResultsDrainOperator``).
RESULTS_SERIES_KEY = xcom_keys.RESULTS_SERIES
PLAN_KEY = xcom_keys.PLAN
LEDGER_KEYS = (xcom_keys.LEDGER, xcom_keys.RETURN_VALUE)
LAG_KEY = xcom_keys.QUEUE_LAG
PARTITIONS_KEY = xcom_keys.PARTITIONS
ALERTS_KEY = xcom_keys.ALERT_EPISODES
FAILURES_KEY = xcom_keys.FIRST_FAILURES
#: ``rerun_failed`` returns its repair report; ``plan_shards`` etc. return other things under this key.
REPAIR_KEYS = (xcom_keys.REPAIR, xcom_keys.RETURN_VALUE)
#: The DAG run conf naming the failed run a repair run repairs, and the optional conf saying why.
REPAIR_RUN_PARAM = "repair_run_id"
REPAIR_REASON_PARAM = "repair_reason"
#: Keys listed per repair (the report carries at most 20).
MAX_REPAIR_KEYS = 20
#: Failures shown per run: the view is a pointer to the quarantine, not a copy of it.
MAX_FAILURES = 20
MAX_ERROR_CHARS = MAX_ERROR_TEXT
#: Keys and batch names shown (a key is a hash; anything longer is not one).
MAX_KEY_CHARS = 200
#: The largest magnitude a series value, percentile or timestamp may have: depths and epoch seconds
#: are far below it; anything above (or NaN/Infinity) makes the part unreadable, not the page.
MAX_VALUE = 1e15


class _Model(BaseModel):
    # No NaN/Infinity anywhere: a chart or a duration of one is meaningless and breaks the arithmetic.
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        _check_bounded(value)
        return value


def _check_bounded(value: Any) -> None:
    if isinstance(value, float) and abs(value) > MAX_VALUE:
        raise ValueError(f"value out of range (|x| > {MAX_VALUE:g})")
    if isinstance(value, list):
        for item in value:
            _check_bounded(item)


class DepthSeries(_Model):
    """Queue depth samples over a run: ``points[i][j]`` is field ``fields[j]`` at sample ``i``; ``t`` is
    epoch seconds."""

    fields: list[str]
    points: list[list[float | None]] = Field(default_factory=list)

    def column(self, name: str) -> list[float] | None:
        """The values of one field (``None`` samples as 0), or ``None`` if the series lacks that field."""
        if name not in self.fields:
            return None
        i = self.fields.index(name)
        return [float(p[i] or 0) if i < len(p) else 0.0 for p in self.points]

    def backlog(self) -> list[float]:
        """visible + in-flight + delayed of the input queue per sample (what "drained" watches)."""
        cols = [c for c in (self.column("visible"), self.column("in_flight"), self.column("delayed")) if c is not None]
        return [sum(vals) for vals in zip(*cols)] if cols else []


class LedgerCounts(_Model):
    """A run's ledger: ``expected == succeeded + failed + pending``; ``failed`` includes quarantined."""

    expected: int = Field(ge=0)
    succeeded: int | None = Field(default=None, ge=0)
    failed: int | None = Field(default=None, ge=0)
    quarantined: int | None = Field(default=None, ge=0)
    pending: int | None = Field(default=None, ge=0)
    outcome: str | None = None

    @property
    def closed(self) -> bool:
        return self.succeeded is not None


class Percentiles(_Model):
    p50: float | None = None
    p95: float | None = None
    max: float | None = None


class LagPercentiles(_Model):
    """Queue lag of a run in seconds: input wait (consumer lag), processing time, results wait — and the
    run's headline figures, as :func:`batchq.monitor.lag.run_lag` defines them (the one definition the
    CLI, XCom, metrics and the view share).

    :param time_to_drain_s: first payload enqueued → last result applied.
    :param peak_depth: most payloads waiting in the input queue at once (from enqueued/first-received).
    :param results: the results these figures are computed from (the sample).
    :param source: how the lag was measured (e.g. ``sqs-timestamps``), shown beside the numbers.
    """

    input_wait: Percentiles | None = None
    processing: Percentiles | None = None
    results_wait: Percentiles | None = None
    time_to_drain_s: float | None = Field(default=None, ge=0)
    peak_depth: int | None = Field(default=None, ge=0)
    results: int | None = Field(default=None, ge=0)
    source: str | None = None


class Failure(_Model):
    key: str
    error: str


class AlertEpisode(_Model):
    """One backlog alert episode: fired at ``started_at`` (epoch s), resolved at ``resolved_at`` or open."""

    kind: str
    started_at: float
    resolved_at: float | None = None
    message: str = ""


class RepairRecord(_Model):
    """One repair as its ``rerun_failed`` task reported it (``repair_id`` is None when it found nothing
    to re-send), with the ledger outcome after it when the run's drain has closed the ledger again.

    :param run_id: the repaired run.
    :param requested_at: when the repair was recorded (epoch seconds).
    :param keys: the first re-sent keys.
    """

    repair_id: int | None = None
    run_id: str | None = None
    mode: str | None = None
    selected: int = Field(default=0, ge=0)
    sent: int = Field(default=0, ge=0)
    not_sent: int = Field(default=0, ge=0)
    by_status: dict[str, int] = Field(default_factory=dict)
    keys: list[str] = Field(default_factory=list)
    reason: str | None = None
    requested_by: str | None = None
    requested_at: float | None = None
    outcome_before: str | None = None
    outcome_after: str | None = None


class RepairRun(_Model):
    """A later DAG run that repaired this one (its conf named this run).

    :param repair: what its ``rerun_failed`` reported, if it has run yet.
    """

    run_id: str
    state: str | None = None
    run_after: float | None = None
    repair: RepairRecord | None = None
    #: The repaired run's ledger as this repair run's drain closed it again (``None`` until it has).
    ledger: LedgerCounts | None = None


class StoredRepair(_Model):
    """One repair as the ledger store recorded it (``batchq_repairs``), whichever path made it: the
    Airflow ``rerun_failed`` task or the CLI's ``batchq rerun``.

    :param requested_at: epoch seconds; ``settled_at`` too, once the ledger closed again after it.
    """

    id: int
    mode: str | None = None
    reason: str | None = None
    requested_by: str | None = None
    requested_at: float | None = None
    keys: int = Field(default=0, ge=0)
    sent: int = Field(default=0, ge=0)
    outcome_before: str | None = None
    outcome_after: str | None = None
    settled_at: float | None = None


class StoredRun(_Model):
    """The run's row in the ledger store (``batchq_runs``) and its repairs: the run's *current* ledger,
    read by the view only when ``[batchq] view_ledger_conn_id`` names the store."""

    expected: int | None = Field(default=None, ge=0)
    succeeded: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    outcome: str | None = None
    repairs: list[StoredRepair] = Field(default_factory=list)


class Repairs(_Model):
    """A run's repair history, from Airflow alone.

    :param repair_of: on a repair run: the run it repaired (its conf's ``repair_run_id``).
    :param made: the repair this run made: as a repair run, or when ``rerun_failed`` was cleared in it.
    :param by_runs: later runs of the DAG that repaired this one, oldest first.
    """

    repair_of: str | None = None
    made: RepairRecord | None = None
    by_runs: list[RepairRun] = Field(default_factory=list)
    #: Every repair of this run in the ledger store (the CLI's too), when the view reads the store.
    stored: list[StoredRepair] = Field(default_factory=list)

    @property
    def repaired(self) -> bool:
        """Whether this run was repaired: by later runs, in place (``rerun_failed`` re-sent keys of it),
        or by any path the ledger store recorded (``batchq rerun``)."""
        in_place = self.made is not None and self.made.repair_id is not None and self.repair_of is None
        return bool(self.by_runs) or in_place or any(r.sent for r in self.stored)

    @property
    def any(self) -> bool:
        return self.repaired or self.repair_of is not None


class RunReport(_Model):
    """Everything the Batch view shows for one DAG run.

    :param dag_id: the DAG.
    :param run_id: the run.
    :param state: the DAG run's state, as Airflow reports it.
    :param run_after: when the run was due (epoch seconds), to label it in trends.
    :param batch: the batch name (from the plan or ledger), if known.
    :param series: input (and optionally results) queue depth over the wait.
    :param results_series: the results queue (and results applied) while the drain task drained it.
    :param ledger: expected / succeeded / failed / quarantined / pending.
    :param lag: queue lag percentiles.
    :param failures: the first failed keys with their errors.
    :param alerts: backlog alert episodes.
    :param repairs: repairs this run made or received.
    :param problems: parts that were present but unreadable (shown, never raised).
    """

    dag_id: str
    run_id: str
    state: str | None = None
    run_after: float | None = None
    batch: str | None = None
    series: DepthSeries | None = None
    results_series: DepthSeries | None = None
    ledger: LedgerCounts | None = None
    lag: LagPercentiles | None = None
    failures: list[Failure] = Field(default_factory=list)
    alerts: list[AlertEpisode] = Field(default_factory=list)
    repairs: Repairs = Field(default_factory=Repairs)
    #: When a repair closed this run's ledger again: what the run itself recorded (``ledger`` is current).
    ledger_recorded: LedgerCounts | None = None
    #: Where the current ``ledger`` comes from when it is not the run's own record (a repair run's id).
    ledger_source: str | None = None
    #: the raw partitions XCom (read it through :attr:`partition_table`)
    partitions: dict[str, Any] | None = None
    problems: list[str] = Field(default_factory=list)

    def problems_in(self, *sections: str) -> list[str]:
        """The problems of the named sections (a problem starts with its section's name and a colon),
        so that each section of the page shows its own notice."""
        return [p for p in self.problems if p.split(":", 1)[0] in sections]

    @property
    def partition_table(self) -> Any:
        """The run's partitions (:class:`~batchq.monitor.partition_table.PartitionTable`), or ``None``."""
        if not self.partitions:
            return None
        from batchq.monitor.partition_table import PartitionTable

        return PartitionTable(self.partitions)

    @property
    def has_batch(self) -> bool:
        """Whether this run left any batchq data at all (otherwise the DAG probably runs no batch)."""
        return any(x is not None for x in (self.series, self.ledger, self.lag, self.partitions)) or bool(self.alerts or self.batch or self.repairs.any)

    @property
    def peak_depth(self) -> int | None:
        """Most payloads waiting in the input queue at once (``queue_lag``'s figure; ``None`` without it).
        Not the wait's polled maximum: workers that keep up with the fan-out empty the queue between
        polls, so the polls can read 0 while 96 payloads waited."""
        return self.lag.peak_depth if self.lag else None

    @property
    def drain_time_s(self) -> float | None:
        """Time to drain: first payload enqueued → last result applied (``queue_lag``'s figure; ``None``
        until the drain task computed it). Not the wait's duration, which misses the fan-out before it
        and the results drain after it."""
        return self.lag.time_to_drain_s if self.lag else None

    @property
    def lag_results(self) -> int | None:
        """How many results the lag figures (time to drain, peak depth, percentiles) come from."""
        return self.lag.results if self.lag else None

    @property
    def failure_rate(self) -> float | None:
        if not self.ledger or self.ledger.failed is None or not self.ledger.expected:
            return None
        return self.ledger.failed / self.ledger.expected

    @property
    def lag_p95_s(self) -> float | None:
        return self.lag.input_wait.p95 if self.lag and self.lag.input_wait else None


def _error_text(error: Any) -> str:
    """A failure's error as shown: masked (inside Airflow) and capped by :func:`batchq.errors.safe_error_text`."""
    if isinstance(error, Mapping):
        text = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    else:
        text = str(error)
    return safe_error_text(text, MAX_ERROR_CHARS)


def _short(text: Any) -> str:
    return safe_error_text(text, 120)


def _first(found: Mapping[str, list[Any]], keys: Iterable[str], accept: Any) -> Any:
    for key in keys:
        for value in found.get(key, []):
            if accept(value):
                return value
    return None


def _is_ledger(value: Any) -> bool:
    return isinstance(value, Mapping) and "expected" in value and "succeeded" in value


def _is_repair(value: Any) -> bool:
    """``rerun_failed``'s report: a repair (``repair_id``) or its "nothing to repair" answer."""
    return isinstance(value, Mapping) and "selected" in value and "sent" in value and ("repair_id" in value or "outcome_before" in value)


def _repair_target(conf: Any) -> str | None:
    target = conf.get(REPAIR_RUN_PARAM) if isinstance(conf, Mapping) else None
    return target if isinstance(target, str) and target else None


def run_report(
    dag_id: str,
    run_id: str,
    xcoms: Iterable[tuple[str, Any]],
    *,
    state: str | None = None,
    run_after: float | None = None,
    asset_extras: Iterable[Mapping[str, Any]] = (),
    conf: Mapping[str, Any] | None = None,
    repaired_by: Iterable[RepairRun] = (),
    stored: Any = None,
) -> RunReport:
    """Build a :class:`RunReport` from a run's raw XComs, tolerating any missing or malformed part.

    :param xcoms: ``(key, value)`` pairs of every XCom of the run (values already deserialised).
    :param asset_extras: ``extra`` dicts of the run's results Asset events (ledger counts fallback).
    :param conf: the DAG run's conf (``repair_run_id`` makes it a repair run).
    :param repaired_by: later runs whose conf named this run (see :func:`repair_run`).
    :param stored: the run's row in the ledger store with its repairs (a :class:`StoredRun` or its
        dict), when the view reads the store: a repaired run's current ledger, whichever path repaired it.
    """
    found: dict[str, list[Any]] = {}
    for key, value in xcoms:
        found.setdefault(key, []).append(value)
    problems: list[str] = []

    def parse(model: type[_Model], raw: Any, what: str) -> Any:
        if raw is None:
            return None
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            problems.append(f"{what}: unreadable ({exc.error_count()} error(s), first: {_short(exc.errors()[0].get('msg', ''))})")
            return None

    def section(what: str, build: Any, default: Any = None) -> Any:
        """One section of the report; whatever its data does, the others still render (a notice
        names the section instead of a 500 for the whole page)."""
        try:
            return build()
        except Exception as exc:  # noqa: BLE001 - malformed data of one section is a notice, never a crash
            problems.append(f"{what}: unreadable ({type(exc).__name__})")
            return default

    plan = _first(found, [PLAN_KEY], lambda v: isinstance(v, Mapping))

    def depth_series(keys: Iterable[str], what: str) -> DepthSeries | None:
        parsed = parse(DepthSeries, _first(found, keys, lambda v: v is not None), what)
        if parsed is not None and "t" not in parsed.fields:
            problems.append(f"{what}: no 't' field")
            return None
        return parsed

    series = section("depth series", lambda: depth_series(SERIES_KEYS, "depth series"))
    results_series = section("results series", lambda: depth_series([RESULTS_SERIES_KEY], "results series"))
    raw_ledger = _first(found, LEDGER_KEYS, _is_ledger) or next((e for e in asset_extras if _is_ledger(e)), None)

    def build_ledger() -> LedgerCounts | None:
        parsed = parse(LedgerCounts, raw_ledger, "ledger")
        if parsed is None and raw_ledger is None and isinstance(plan, Mapping) and type(plan.get("expected")) is int and plan["expected"] >= 0:
            parsed = LedgerCounts(expected=plan["expected"])  # planned, not drained yet
        return parsed

    ledger = section("ledger", build_ledger)
    lag = section("queue lag", lambda: parse(LagPercentiles, _first(found, [LAG_KEY], lambda v: v is not None), "queue lag"))

    def build_failures() -> list[Failure]:
        raw_failures = raw_ledger.get(FAILURES_KEY) if isinstance(raw_ledger, Mapping) else None
        if raw_failures is None:
            raw_failures = _first(found, [FAILURES_KEY], lambda v: v is not None)
        if raw_failures is None:
            return []
        if not isinstance(raw_failures, list):
            problems.append(f"first failures: unreadable (a {type(raw_failures).__name__}, not a list)")
            return []
        return [
            Failure(
                key=safe_error_text(describe_key(str(f.get("key", "?")), f.get("dims") if isinstance(f.get("dims"), Mapping) else None), MAX_KEY_CHARS),
                error=_error_text(f.get("error", "")),
            )
            for f in raw_failures[:MAX_FAILURES]
            if isinstance(f, Mapping)
        ]

    failures = section("first failures", build_failures, [])

    def build_alerts() -> list[AlertEpisode]:
        raw_alerts = _first(found, [ALERTS_KEY], lambda v: v is not None)
        if raw_alerts is not None and not isinstance(raw_alerts, list):
            problems.append(f"alert episodes: unreadable (a {type(raw_alerts).__name__}, not a list)")
            return []
        episodes = (parse(AlertEpisode, raw, "alert episode") for raw in raw_alerts or [])
        return [e for e in episodes if e is not None]

    alerts = section("alert episodes", build_alerts, [])

    repair_of = _repair_target(conf)

    def build_made() -> RepairRecord | None:
        made = parse(RepairRecord, _first(found, REPAIR_KEYS, _is_repair), "repair")
        if made is not None and made.repair_id is None and repair_of is None:
            made = None  # a normal run's rerun_failed found nothing to repair: not worth a section
        if made is not None and ledger is not None and ledger.closed:
            made = made.model_copy(update={"outcome_after": ledger.outcome, "keys": made.keys[:MAX_REPAIR_KEYS]})
        return made

    made = section("repair", build_made)
    store_run = parse(StoredRun, stored.model_dump() if isinstance(stored, StoredRun) else stored, "ledger store")
    repairs = Repairs(
        repair_of=repair_of, made=made, by_runs=sorted(repaired_by, key=lambda r: (r.run_after or 0, r.run_id)),
        stored=store_run.repairs if store_run is not None else [],
    )
    # A repair closes *this* run's ledger again: the tab shows what the run is now, not what it was
    # before it was repaired. The store is the ledger itself (any path, the CLI's too); without it, the
    # newest repair run's drain XCom carries the repaired run's counts.
    ledger_recorded = ledger_source = None
    current = next((rr for rr in reversed(repairs.by_runs) if rr.ledger is not None and rr.ledger.closed), None)
    if store_run is not None and store_run.repairs and store_run.outcome and store_run.expected is not None:
        stored_ledger = LedgerCounts(
            expected=store_run.expected, succeeded=store_run.succeeded, failed=store_run.failed,
            pending=max(0, store_run.expected - store_run.succeeded - store_run.failed), outcome=store_run.outcome,
        )
        ledger_recorded, ledger, ledger_source = ledger, stored_ledger, "the ledger store"
    elif current is not None:
        ledger_recorded, ledger, ledger_source = ledger, current.ledger, f"repair run {current.run_id}"

    batch = None
    for source in (plan, raw_ledger):
        if isinstance(source, Mapping) and isinstance(source.get("batch"), str):
            batch = source["batch"][:MAX_KEY_CHARS]
            break
    return RunReport(
        dag_id=dag_id,
        run_id=run_id,
        state=state,
        run_after=run_after,
        batch=batch,
        series=series,
        results_series=results_series,
        ledger=ledger,
        lag=lag,
        failures=failures,
        alerts=alerts,
        repairs=repairs,
        ledger_recorded=ledger_recorded,
        ledger_source=ledger_source,
        partitions=_first(found, [PARTITIONS_KEY], lambda v: isinstance(v, Mapping) and "rows" in v),
        problems=problems,
    )


def repair_run(run_id: str, xcoms: Iterable[tuple[str, Any]], *, state: str | None = None, run_after: float | None = None, conf: Mapping[str, Any] | None = None) -> RepairRun:
    """A repair run as its target's page lists it, from the repair run's own raw XComs (tolerant)."""
    report = run_report("", run_id, xcoms, state=state, run_after=run_after, conf=conf)
    # Its drain works on the repaired run (``run_id`` = the conf's target): that ledger is the target's.
    ledger = report.ledger if report.ledger is not None and report.ledger.closed and report.repairs.repair_of else None
    return RepairRun(run_id=run_id, state=state, run_after=run_after, repair=report.repairs.made, ledger=ledger)
