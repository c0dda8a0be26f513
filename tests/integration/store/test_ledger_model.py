"""The run ledger, proven against a model (Hypothesis ``RuleBasedStateMachine``).

The real results store (SQLite here, PostgreSQL in ``test_ledger_model_postgres``) and a plain
in-memory model see the same random interleaving of what a drain sees in production:

* work finishing (a new ``succeeded`` / ``failed`` result of a planned key, of the run's plan);
* results of an *older plan* of the same run id (stale copies from before a re-plan);
* results whose key the plan cannot produce, carrying the run's batch, run id and plan;
* delivery in any order, duplicates, and a drainer crash between commit and delete (the message is
  committed but stays on the queue, so it is delivered again later);
* a re-plan of the run (the spec's dimension values changed: more keys, a new fingerprint);
* repairs (``failed``, ``pending``, ``keys``) sent through the real :func:`rerun` to a real queue,
  and the results of the re-sent work.

After every step: the counts equal the model's; the run is complete iff every planned key has a final
status; ``succeeded`` never reverts; nothing outside the plan counts; an open repair key is not
resolved by a result older than the repair.

``BATCHQ_MODEL_EXAMPLES`` / ``BATCHQ_MODEL_STEPS`` scale the run (default 20 examples x 30 steps);
``BATCHQ_MODEL_SKIP`` (comma-separated: ``stale``, ``stray``, ``crash``, ``replan``, ``repair``, ``queue`` (results applied as they
finish: no reordering), and
``counts`` for the count and completeness checks) switches rules off to look for one bug at a time.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from batchq.errors import BatchqError
from batchq.messages import ErrorInfo, WorkResult
from batchq.plan import Plan, idempotency_key
from batchq.spec import BatchSpec
from batchq.store import ResultsStore, RunLedger
from batchq.store.repairs import rerun
from batchq.store.schema import repair_keys_table

EXAMPLES = int(os.environ.get("BATCHQ_MODEL_EXAMPLES", "20"))
STEPS = int(os.environ.get("BATCHQ_MODEL_STEPS", "30"))
SKIP = {s.strip() for s in os.environ.get("BATCHQ_MODEL_SKIP", "").split(",") if s.strip()}
DAG = "model_dag"
RUN = "run-1"
CUSTOMERS = ["c0", "c1", "c2"]


def spec(batch: str, customers: list[str]) -> BatchSpec:
    return BatchSpec.from_dict(
        {
            "name": batch,
            "dimensions": {"customer": customers, "period": ["d", "w"]},
            "exclude": [{"customer": "c0", "period": "d"}],
            "job_type": "t",
            "queues": {"input": "in", "results": "out"},
        }
    )


def planned(plan: Plan) -> dict[str, dict]:
    """key -> dims of every payload of ``plan``."""
    out = {}
    for shard in plan.shards():
        for digits in plan._iter_digits(shard.start, shard.stop):
            dims = {plan.names[d]: plan.values[d][i] for d, i in enumerate(digits)}
            out[idempotency_key(plan.spec.name, plan.run_id, dims, plan.dag_id)] = dims
    return out


_CARRIES_DIMS = "dims" in WorkResult.model_fields


@dataclass(frozen=True)
class Msg:
    """A results message on the queue: the body and when its work finished."""

    result: WorkResult
    finished: datetime


class Stats:
    examples = 0
    steps = 0


class LedgerModel(RuleBasedStateMachine):
    """State machine; ``store_url`` and the queue are set on the class by the test function."""

    store_url: str = ""
    sqs = None
    input_url = ""

    def __init__(self):
        super().__init__()
        Stats.examples += 1
        self.batch = f"m{uuid.uuid4().hex[:10]}"
        self.store = ResultsStore(self.store_url)
        self.plans = {
            "old": Plan(spec(self.batch, ["c0", "c1"]), RUN, dag_id=DAG),  # an earlier plan of the run (same keys), never recorded
            "a": Plan(spec(self.batch, CUSTOMERS), RUN, dag_id=DAG),
            "b": Plan(spec(self.batch, [*CUSTOMERS, "c3"]), RUN, dag_id=DAG),
        }
        self.keys = {name: planned(p) for name, p in self.plans.items()}
        # Keys in the order of their dims, not of their hashes: a rule's ``i`` names the same work in
        # every example (the batch name, part of every key, is new per example).
        self.ordered = {name: sorted(keys, key=lambda k, keys=keys: sorted(keys[k].items())) for name, keys in self.keys.items()}
        self.cur = "a"
        self.ledger = RunLedger.for_plan(self.store, self.plans["a"])
        self.queue: list[Msg] = []
        # model: per plan fingerprint, key -> "succeeded"|"failed" (success wins)
        self.effective: dict[str, dict[str, str]] = {}
        # open repair entries: key -> (repair plan fingerprint, requested_at)
        self.open_repairs: dict[str, tuple[str, datetime]] = {}
        self.last_succeeded = 0
        self.clock = datetime.now(timezone.utc)

    def teardown(self):
        self.store.close()

    # -- helpers -----------------------------------------------------------------------------------
    def tick(self) -> datetime:
        # Work finishes strictly later than anything before it (the real clock may not move between steps).
        self.clock = max(self.clock + timedelta(milliseconds=1), datetime.now(timezone.utc))
        return self.clock

    def make(self, plan: Plan, key: str, dims: dict | None, status: str, attempts: int = 1) -> Msg:
        finished = self.tick()
        extra = {"dims": dims} if (_CARRIES_DIMS and dims is not None) else {}
        r = WorkResult(
            batch=self.batch, run_id=RUN, key=key, status=status, attempts=attempts, plan=plan.fingerprint,
            error=ErrorInfo(type="Boom", message="no") if status == "failed" else None, finished_at=finished, **extra,
        )
        return Msg(r, finished)

    def send(self, msg: Msg) -> None:
        """A result message goes on the results queue (or, with ``queue`` skipped, is applied at once)."""
        if "queue" in SKIP:
            self.store.apply([msg.result], ())
            self.apply_model(msg)
        else:
            self.queue.append(msg)

    @property
    def plan(self) -> Plan:
        return self.plans[self.cur]

    def model_counts(self) -> tuple[int, int, int]:
        fp = self.plan.fingerprint
        eff = self.effective.get(fp, {})
        succeeded = failed = repairing = 0
        for key in self.keys[self.cur]:
            status = eff.get(key)
            in_repair = key in self.open_repairs and self.open_repairs[key][0] == fp
            if status == "succeeded":
                succeeded += 1
            elif status == "failed" and in_repair:
                repairing += 1
            elif status == "failed":
                failed += 1
        return succeeded, failed, repairing

    # -- rules -------------------------------------------------------------------------------------
    @rule(i=st.integers(0, 20), status=st.sampled_from(["succeeded", "failed"]), attempts=st.integers(1, 3))
    def work_done(self, i, status, attempts):
        """A worker finishes a payload of the run's current plan."""
        key = self.ordered[self.cur][i % len(self.ordered[self.cur])]
        self.send(self.make(self.plan, key, self.keys[self.cur][key], status, attempts))

    @precondition(lambda self: "stale" not in SKIP)
    @rule(i=st.integers(0, 20), status=st.sampled_from(["succeeded", "failed"]), which=st.sampled_from(["old", "a"]))
    def stale_plan_result(self, i, status, which):
        """A result of an older plan of the same run id (a plan never recorded, or plan a after a re-plan)."""
        if which == self.cur:
            which = "old"
        plan = self.plans[which]
        key = self.ordered[which][i % len(self.ordered[which])]
        self.send(self.make(plan, key, self.keys[which][key], status))

    @precondition(lambda self: "stray" not in SKIP)
    @rule(status=st.sampled_from(["succeeded", "failed"]), how=st.sampled_from(["unknown_value", "excluded", "other_dag"]), dims=st.booleans())
    def stray_result(self, status, how, dims):
        """A result carrying the run's batch, run id and plan, whose key the plan cannot produce."""
        if how == "unknown_value":
            d, dag = {"customer": "c9", "period": "d"}, DAG
        elif how == "excluded":
            d, dag = {"customer": "c0", "period": "d"}, DAG
        else:
            d, dag = {"customer": "c1", "period": "w"}, "someone_else"
        key = idempotency_key(self.batch, RUN, d, dag)
        self.send(self.make(self.plan, key, d if dims else None, status))

    @precondition(lambda self: self.queue)
    @rule(i=st.integers(0, 50), crash=st.booleans(), copies=st.integers(1, 2))
    def drain(self, i, crash, copies):
        """The drainer applies one message (any one: reordering), maybe twice in one batch (a duplicate);
        a crash between commit and delete leaves it on the queue to be delivered again."""
        msg = self.queue[i % len(self.queue)]
        if "crash" in SKIP:
            crash = False
        self.store.apply([msg.result] * copies, ())
        self.apply_model(msg)
        if not crash:
            self.queue.remove(msg)

    def apply_model(self, msg: Msg) -> None:
        r = msg.result
        plan_name = next(n for n, p in self.plans.items() if p.fingerprint == r.plan)
        if r.key not in self.keys[plan_name]:
            return  # outside its plan: never counts
        eff = self.effective.setdefault(r.plan, {})
        if eff.get(r.key) != "succeeded":
            eff[r.key] = r.status
        entry = self.open_repairs.get(r.key)
        if entry and entry[0] == r.plan and msg.finished >= entry[1]:
            del self.open_repairs[r.key]

    @precondition(lambda self: self.cur == "a" and "replan" not in SKIP)
    @rule()
    def replan(self):
        """The run is planned again with more dimension values: a new fingerprint, more keys."""
        self.cur = "b"
        b = self.plans["b"]
        self.ledger = RunLedger.for_plan(self.store, b)
        self.last_succeeded = 0

    @precondition(lambda self: "repair" not in SKIP)
    @rule(mode=st.sampled_from(["failed", "pending", "keys"]), i=st.integers(0, 20), stray=st.booleans())
    def repair(self, mode, i, stray):
        """``batchq rerun`` of the run: the real selection, record and send, to a real queue."""
        keys = None
        if mode == "keys":
            keys = [self.ordered[self.cur][i % len(self.ordered[self.cur])]]
            if stray:
                keys.append(idempotency_key(self.batch, RUN, {"customer": "c9", "period": "w"}, DAG))
        before = datetime.now(timezone.utc)
        try:
            report = rerun(self.sqs, self.input_url, self.store, self.plan, mode, keys=keys, requested_by="model")
        except BatchqError:
            # Refused: nothing may have been recorded.
            assert mode == "keys" and stray, f"rerun --{mode} refused a repair of planned keys"
            return
        assert not (mode == "keys" and stray), "a key outside the plan was accepted by rerun --keys"
        fp = self.plan.fingerprint
        eff = self.effective.get(fp, {})
        sent = set(report.keys)
        assert sent <= set(self.keys[self.cur]), f"repair re-sent keys outside the plan: {sorted(sent - set(self.keys[self.cur]))}"
        if mode == "failed":
            want = {k for k in self.keys[self.cur] if eff.get(k) == "failed" and not (k in self.open_repairs and self.open_repairs[k][0] == fp)}
            assert sent == want, f"rerun --failed chose {sorted(sent)}, the model's failed keys are {sorted(want)}"
        elif mode == "pending":
            want = {k for k in self.keys[self.cur] if k not in eff}
            assert sent >= want - set(self.open_repairs), f"rerun --pending chose {sorted(sent)}, the keys without a result are {sorted(want)}"
        at = report.requested_at and datetime.fromtimestamp(report.requested_at, timezone.utc)
        for k in sent:
            self.open_repairs[k] = (fp, min(at or before, before))
        self.tick()

    # -- invariants --------------------------------------------------------------------------------
    @invariant()
    def the_books_match_the_model(self):
        """One look at the ledger per step, held against the model."""
        Stats.steps += 1
        status = self.ledger.status()
        succeeded, failed, repairing = self.model_counts()
        if "counts" not in SKIP:
            # counts equal the model's (so nothing outside the plan counts)
            got = (status.succeeded, status.failed, status.repairing)
            assert got == (succeeded, failed, repairing), (
                f"ledger (succeeded, failed, repairing) = {got}, model = {(succeeded, failed, repairing)} (plan {self.cur})"
            )
            assert status.succeeded + status.failed <= status.expected, f"more keys closed than planned: {status.describe()}"
            # the run is complete iff every planned key has a final status
            assert status.complete == (succeeded + failed == self.plan.expected), status.describe()
            if status.complete:
                self.ledger.close(status)
                assert self.store.get_run(self.batch, RUN)["outcome"] == status.outcome
        # succeeded never reverts (within one plan)
        assert status.succeeded >= self.last_succeeded, f"succeeded went from {self.last_succeeded} to {status.succeeded}"
        self.last_succeeded = status.succeeded
        # an open repair never ends from a result older than the repair: the open keys are the model's
        rk = repair_keys_table.c
        with self.store.engine.connect() as conn:
            open_in_store = set(conn.execute(
                sa.select(rk.key).where(rk.batch == self.batch, rk.run_id == RUN, rk.resolved_at.is_(None))
            ).scalars())
        assert set(self.open_repairs) == open_in_store, (
            f"open repair keys: store {sorted(open_in_store)}, model {sorted(self.open_repairs)}"
        )


def run_model(store_url: str, sqs_client, input_url: str, capsys, label: str) -> None:
    LedgerModel.store_url, LedgerModel.sqs, LedgerModel.input_url = store_url, sqs_client, input_url
    Stats.examples = Stats.steps = 0
    started = time.monotonic()
    test = LedgerModel.TestCase
    test.settings = settings(
        max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    try:
        test("runTest").runTest()
    finally:
        with capsys.disabled():
            print(f"\nledger model ({label}): {Stats.examples} examples, {Stats.steps} steps in {time.monotonic() - started:.1f}s")


@pytest.mark.integration
def test_ledger_model_sqlite(tmp_path, sqs_client, make_queue, capsys):
    run_model(f"sqlite:///{tmp_path / 'model.db'}", sqs_client, make_queue(), capsys, "sqlite")


@pytest.mark.integration
@pytest.mark.postgres
def test_ledger_model_postgres(pg_url, sqs_client, make_queue, capsys):
    run_model(pg_url, sqs_client, make_queue(), capsys, "postgresql")


@pytest.mark.integration
@pytest.mark.mariadb
def test_ledger_model_mariadb(mariadb_url, sqs_client, make_queue, capsys):
    """The third engine (issue 20: any SQL connection is a sink): the same rules hold on MySQL/MariaDB,
    whose upsert has no WHERE (batchq.store.schema.on_conflict_do_update)."""
    run_model(mariadb_url, sqs_client, make_queue(), capsys, "mariadb")
