"""Supervisor control logic with snapshots fed in (no queue) and harmless child processes."""

from __future__ import annotations

import sys

from batchq.sqs.snapshot import QueueSnapshot
from batchq.worker.scaling import ScaleState
from batchq.worker.supervisor import Supervisor


def test_scale_down_waits_for_the_cooldown_scale_up_does_not():
    s = ScaleState(cooldown_s=10)
    assert s.target(4, 0, now=0) == 4
    assert s.target(1, 4, now=1) == 4  # lower target just appeared
    assert s.target(1, 4, now=6) == 4
    assert s.target(3, 4, now=8) == 4
    assert s.target(1, 4, now=11) == 1  # held for 10 s
    assert s.target(1, 1, now=12) == 1
    assert s.target(0, 1, now=13) == 1
    assert s.target(2, 1, now=14) == 2  # up at once, and the dip timer resets
    assert s.target(0, 2, now=15) == 2
    assert s.target(0, 2, now=25) == 0


def test_step_follows_desired_workers_and_replaces_dead_processes():
    backlog = {"v": 0, "f": 0}
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    sup = Supervisor(None, "q", sleeper, min_workers=0, max_workers=5, backlog_per_worker=10,
                     scale_down_cooldown_s=5, stop_timeout_s=5, restart_backoff_s=1, min_uptime_s=0,
                     snapshot=lambda: QueueSnapshot(0, backlog["v"], backlog["f"], 0))
    try:
        assert sup.step(now=0) == 0 and not sup.running
        backlog.update(v=25, f=0)
        assert sup.step(now=1) == 3 and len(sup.running) == 3
        backlog.update(v=0, f=41)  # in-flight work keeps workers alive
        assert sup.step(now=2) == 5 and len(sup.running) == 5
        sup.running[0].popen.kill()
        sup.running[0].popen.wait()
        assert sup.step(now=3) == 5 and len(sup.running) == 5 and sup.stats.restarted == 1
        backlog.update(v=0, f=0)
        assert sup.step(now=4) == 5  # cooling down
        assert sup.step(now=9.5) == 0 and not sup.running and len(sup.stopping) == 5
        for p in sup.stopping:
            assert p.popen.wait(5) is not None  # SIGTERM: the sleeper dies of it
        sup.step(now=10)
        assert not sup.stopping and sup.stats.started == 6 and sup.stats.stopped == 5
    finally:
        sup.shutdown()
