"""Handler registry: which function runs a payload of a given ``job_type``.

Handlers are found three ways, all ending in :meth:`Registry.register`:

* ``@batchq.job("classification")`` on a function, run when its module is imported;
* ``batchq worker --handlers package.module`` imports modules (so their decorators run);
* the ``batchq.handlers`` entry-point group of installed distributions: an entry point naming a module
  is imported, one naming a callable is registered under the entry point's name.

A handler is ``fn(payload: WorkPayload, ctx: JobContext) -> dict`` (the result's JSON ``output``).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from batchq.errors import BatchqError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "batchq.handlers"

Handler = Callable[..., dict[str, Any]]


class HandlerError(BatchqError):
    """A handler cannot be registered or loaded (duplicate job type, import failure, not callable)."""


class Registry:
    """Maps ``job_type`` → handler. Thread-safe for reads once loading is done (a plain dict)."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._timeouts: dict[str, float] = {}

    def register(self, job_type: str, fn: Handler, *, timeout_s: float | None = None) -> Handler:
        """Register ``fn`` for ``job_type``; ``timeout_s`` overrides the worker's ``--handler-timeout``."""
        if not isinstance(job_type, str) or not job_type:
            raise HandlerError(f"job_type must be a non-empty string, got {job_type!r}")
        if not callable(fn):
            raise HandlerError(f"handler for {job_type!r} is not callable: {fn!r}")
        existing = self._handlers.get(job_type)
        if existing is not None and existing is not fn and _qualname(existing) != _qualname(fn):
            raise HandlerError(
                f"job_type {job_type!r} already has handler {_qualname(existing)}; "
                f"refusing to replace it with {_qualname(fn)}"
            )
        if timeout_s is not None and not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < float("inf")):
            raise HandlerError(f"timeout_s of {job_type!r} must be a positive number of seconds, got {timeout_s!r}")
        self._handlers[job_type] = fn
        if timeout_s is None:
            self._timeouts.pop(job_type, None)
        else:
            self._timeouts[job_type] = float(timeout_s)
        return fn

    def job(self, job_type: str, *, timeout_s: float | None = None) -> Callable[[Handler], Handler]:
        """Decorator: ``@registry.job("segmentation", timeout_s=120)``."""

        def decorate(fn: Handler) -> Handler:
            return self.register(job_type, fn, timeout_s=timeout_s)

        return decorate

    def get(self, job_type: str) -> Handler | None:
        return self._handlers.get(job_type)

    def timeout_for(self, job_type: str) -> float | None:
        """The handler's own timeout (``@job(..., timeout_s=...)``), ``None`` for the worker default."""
        return self._timeouts.get(job_type)

    @property
    def job_types(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)

    def load_modules(self, modules: Iterable[str]) -> list[ModuleType]:
        """Import each module so its ``@job`` decorators register (into :data:`REGISTRY`)."""
        loaded = []
        for name in modules:
            try:
                loaded.append(importlib.import_module(name))
            except ImportError as exc:
                raise HandlerError(f"--handlers {name}: cannot import: {exc}") from exc
        return loaded

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Load the ``batchq.handlers`` entry points of installed distributions. Returns their names."""
        from importlib.metadata import entry_points

        names = []
        for ep in entry_points(group=group):
            try:
                obj = ep.load()
            except Exception as exc:
                raise HandlerError(f"entry point {ep.name} = {ep.value} ({group}): cannot load: {exc}") from exc
            if not inspect.ismodule(obj):
                self.register(ep.name, obj)
            names.append(ep.name)
        return names


def _qualname(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


#: The process-wide registry the ``@batchq.job`` decorator fills and ``batchq worker`` reads.
REGISTRY = Registry()


def job(job_type: str, *, timeout_s: float | None = None) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``job_type`` in :data:`REGISTRY`.

    :param job_type: the payload ``job_type`` this function handles.
    :param timeout_s: longest one call may run before it counts as a transient failure (default: the
        worker's ``--handler-timeout``).
    """
    return REGISTRY.job(job_type, timeout_s=timeout_s)


class MissingHandlers(HandlerError):
    """A worker given a spec lacks handlers for some of the spec's job types: started, it would fail
    (and dead-letter) every payload of those types within seconds, so it refuses to start instead.

    :param missing: the job types without a handler, sorted.
    """

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


def check_handlers_for(registry: Registry, job_types: Iterable[str], *, batch: str, modules: Iterable[str] = ()) -> None:
    """Raise :class:`MissingHandlers` naming every job type of ``job_types`` that ``registry`` has no
    handler for. The one check ``batchq worker`` and ``batchq workers`` make before they start.

    :param batch: the spec's name (for the message).
    :param modules: the ``--handlers`` modules loaded (for the message).
    """
    missing = sorted(set(job_types) - set(registry.job_types))
    if not missing:
        return
    loaded = ", ".join(modules) or "none"
    raise MissingHandlers(
        f"no handler for job type(s) {', '.join(repr(m) for m in missing)} of spec {batch!r}: every such payload "
        f"would fail. This worker handles {registry.job_types or 'nothing'} (--handlers: {loaded}). Import a "
        f"module that registers @batchq.job({missing[0]!r}) with --handlers MODULE, or pass "
        f"--allow-missing-handlers to start anyway (another worker pool handles them).",
        missing,
    )


def load_handlers(modules: Iterable[str] = (), *, entry_points: bool = True, registry: Registry | None = None) -> Registry:
    """Fill ``registry`` (default :data:`REGISTRY`) from modules and, optionally, entry points."""
    reg = registry or REGISTRY
    reg.load_modules(modules)
    if entry_points:
        reg.load_entry_points()
    return reg
