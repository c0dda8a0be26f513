"""Run-time resolution of dimension sources inside Airflow, and spec loading for DAG files.

``variable:NAME`` reads the Airflow Variable ``NAME`` (a JSON list); ``callable:mod:fn`` imports and calls
``fn``. Both run only inside tasks: DAG parsing never touches Variables or AWS.
"""

from __future__ import annotations

import json
import os
from typing import Any

from batchq.airflow import settings
from batchq.errors import SpecError
from batchq.spec import BatchSpec, resolve_callable_source


def airflow_source_resolver(source: str) -> list[Any]:
    """Resolve one ``source`` string to a list of values (pass to :meth:`BatchSpec.resolve`)."""
    if source.startswith("variable:"):
        from airflow.sdk import Variable

        name = source.removeprefix("variable:")
        try:
            raw = Variable.get(name)
        except Exception as exc:  # noqa: BLE001 - KeyError / AirflowRuntimeError, depending on context
            raise SpecError(f"source {source!r}: Airflow Variable {name!r} not found ({exc})") from None
        try:
            values = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise SpecError(f"source {source!r}: Variable {name!r} is not a JSON list: {exc}") from None
        if not isinstance(values, list):
            raise SpecError(f"source {source!r}: Variable {name!r} must hold a JSON list, got {type(values).__name__}")
        return values
    return resolve_callable_source(source)


def load_spec(spec: BatchSpec | str | os.PathLike[str]) -> BatchSpec:
    """A :class:`BatchSpec` from an instance, a YAML path, or a spec name in ``[batchq] spec_dir``.
    Validates (raises :class:`SpecError` naming the field) but resolves no sources."""
    if isinstance(spec, BatchSpec):
        return spec
    path = settings.spec_path(spec)
    if not path.exists():
        hint = ""
        if str(spec) != str(path):  # a name, looked up in the spec directory
            hint = (f" (spec {str(spec)!r} is looked up as <[batchq] spec_dir>/{spec}.yaml with [batchq] spec_dir = "
                    f"{str(settings.spec_dir())!r}; set spec_dir in airflow.cfg or AIRFLOW__BATCHQ__SPEC_DIR, or "
                    f"give the YAML file's path)")
        raise SpecError(f"spec file {str(path)!r} does not exist{hint}")
    return BatchSpec.from_yaml(path)


def resolve_spec(spec: BatchSpec | str | os.PathLike[str]) -> BatchSpec:
    """Load and resolve every dimension source (call inside a task, never at parse time)."""
    return load_spec(spec).resolve(airflow_source_resolver)


def spec_reference(spec: BatchSpec | str | os.PathLike[str]) -> BatchSpec | str:
    """What an operator keeps of its ``spec`` argument: a :class:`BatchSpec` as given, a path as a string
    (serialisable, shown in the UI), a name as its file in ``[batchq] spec_dir``."""
    return spec if isinstance(spec, BatchSpec) else str(settings.spec_path(spec))
