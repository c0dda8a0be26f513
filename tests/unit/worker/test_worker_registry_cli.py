"""Handler registry (decorator, modules, entry points) and the worker CLI's option forwarding."""

from __future__ import annotations

import argparse
import sys
import textwrap
import uuid

import pytest
from batchq.cli import build_parser
from batchq.cli.worker import worker_argv
from batchq.worker import REGISTRY, Registry
from batchq.worker.registry import HandlerError


def test_decorator_and_duplicates():
    r = Registry()

    @r.job("a")
    def a(payload, ctx):
        return {}

    r.register("a", a)  # the same function again (module re-import) is fine
    assert r.get("a") is a and r.job_types == ["a"] and "a" in r and len(r) == 1

    def other(payload, ctx):
        return {}

    with pytest.raises(HandlerError, match="already has handler"):
        r.register("a", other)
    with pytest.raises(HandlerError):
        r.register("", a)
    with pytest.raises(HandlerError):
        r.register("b", "not callable")


def test_handlers_module_and_top_level_decorator(tmp_path, monkeypatch):
    job_type = f"jt-{uuid.uuid4().hex[:6]}"
    mod = f"handlers_{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{mod}.py").write_text(textwrap.dedent(f'''
        import batchq
        @batchq.job("{job_type}")
        def run(payload, ctx):
            return {{"ok": True}}
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        REGISTRY.load_modules([mod])
        assert job_type in REGISTRY
    finally:
        REGISTRY._handlers.pop(job_type, None)
        sys.modules.pop(mod, None)
    with pytest.raises(HandlerError, match="cannot import"):
        REGISTRY.load_modules(["no_such_module_xyz"])


def test_entry_points_module_and_callable(tmp_path, monkeypatch):
    # A real installed-distribution layout on sys.path: importlib.metadata finds its entry points.
    mod = f"ephandlers_{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{mod}.py").write_text("def fn(payload, ctx):\n    return {'via': 'entry point'}\n")
    dist = tmp_path / f"{mod}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {mod}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[batchq.handlers]\nep-callable = {mod}:fn\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    r = Registry()
    names = r.load_entry_points()
    assert "ep-callable" in names and r.get("ep-callable").__module__ == mod
    # batchq itself registers nothing: its example jobs occupy no name in a user's worker.
    fresh = Registry()
    assert all(not str(ep).startswith("batchq") for ep in fresh.load_entry_points())
    assert not {"classification", "segmentation", "use_case_analysis"} & set(fresh.job_types)


def test_a_users_handler_never_clashes_with_the_examples():
    from importlib.metadata import entry_points

    assert not [ep for ep in entry_points(group="batchq.handlers") if ep.value.startswith("batchq")]
    r = Registry()
    r.load_entry_points()

    @r.job("classification")
    def mine(payload, ctx):
        return {"mine": True}

    assert r.get("classification") is mine


def test_worker_options_are_forwarded_by_the_supervisor():
    args = build_parser().parse_args([
        "workers", "--max", "3", "--queue", "in", "--results-queue", "out", "--handlers", "a.b", "--handlers", "c",
        "--concurrency", "2", "--no-entry-points", "--wait-seconds", "5",
    ])
    argv = worker_argv(args)
    again = build_parser().parse_args(["worker", *argv])
    for dest in ("queue", "results_queue", "handlers", "concurrency", "no_entry_points", "wait_seconds", "grace_period"):
        assert getattr(again, dest) == getattr(args, dest), dest
    assert "--max" not in argv and again.handlers == ["a.b", "c"]
    assert isinstance(args, argparse.Namespace) and args.max_workers == 3
