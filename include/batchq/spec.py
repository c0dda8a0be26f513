"""What a batch is: :class:`BatchSpec` and its parts (dimensions, exclusions, queues, limits), loading
from YAML or Python, source resolution and readable validation messages that name the field.

The wire messages a batch produces live in :mod:`batchq.messages`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from batchq import limits
from batchq.errors import SpecError
from batchq.messages import PayloadEncoder, dumps_json

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_QUEUE_RE = re.compile(rf"^[A-Za-z0-9_-]{{1,{limits.MAX_QUEUE_NAME_LENGTH}}}$")


def _check_scalar(value: Any, where: str) -> None:
    if isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float) and math.isfinite(value):  # NaN and ±inf have no JSON form
        return
    raise ValueError(f"{where}: value {value!r} is not a scalar (str, int, float or bool)")


class Dimension(BaseModel):
    """One independent axis of a batch: a name and either a list of values or a named source.

    :param name: dimension name, e.g. ``customer``.
    :param values: the values, all JSON scalars, no duplicates.
    :param source: resolved at run time instead of ``values``: ``variable:NAME`` (an Airflow Variable
        holding a JSON list) or ``callable:package.module:function`` (returns a list).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    values: tuple[Any, ...] | None = None
    source: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"dimension name {v!r} must be 1-64 characters of letters, digits, '_' or '-'")
        return v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("variable:") or v.startswith("callable:")):
            raise ValueError(f"source {v!r} must start with 'variable:' or 'callable:'")
        return v

    @model_validator(mode="after")
    def _values(self) -> Dimension:
        if (self.values is None) == (self.source is None):
            raise ValueError(f"dimension {self.name!r} needs exactly one of 'values' or 'source'")
        if self.values is not None:
            validate_dimension_values(self.name, self.values)
        return self

    @property
    def resolved(self) -> bool:
        return self.values is not None


def validate_dimension_values(name: str, values: Any) -> None:
    """Shared by spec validation and run-time source resolution, so both give the same messages."""
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"dimension {name!r}: values must be a list, got {type(values).__name__}")
    if not values:
        raise ValueError(f"dimension {name!r} is empty")
    seen: dict[tuple[type, Any], None] = {}
    for v in values:
        _check_scalar(v, f"dimension {name!r}")
        marker = (type(v), v)
        if marker in seen:
            raise ValueError(f"dimension {name!r}: duplicate value {v!r}")
        seen[marker] = None


class QueueSpec(BaseModel):
    """Queue names and delivery settings.

    :param input: input queue name (workers consume it).
    :param results: results queue name (the drainer consumes it).
    :param dead_letter_suffix: each queue gets a dead-letter queue named ``<queue><suffix>``.
    :param max_receive_count: deliveries before a message dead-letters; the worker publishes a
        ``failed`` result on the last one, so the run's ledger still closes.
    :param visibility_timeout_s: input queue visibility timeout; workers extend it for long jobs.
    :param message_retention_s: how long the input and results queues keep a message (SQS's default,
        4 days; the DLQs keep theirs for the maximum, 14 days).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str
    results: str
    dead_letter_suffix: str = "-dlq"
    max_receive_count: int = Field(3, ge=limits.MIN_MAX_RECEIVE_COUNT, le=limits.MAX_MAX_RECEIVE_COUNT)
    results_max_receive_count: int = Field(10, ge=limits.MIN_MAX_RECEIVE_COUNT, le=limits.MAX_MAX_RECEIVE_COUNT)
    visibility_timeout_s: int = Field(300, ge=0, le=limits.MAX_VISIBILITY_TIMEOUT_SECONDS)
    message_retention_s: int = Field(
        limits.DEFAULT_RETENTION_SECONDS, ge=limits.MIN_RETENTION_SECONDS, le=limits.MAX_RETENTION_SECONDS
    )

    @field_validator("input", "results")
    @classmethod
    def _queue_name(cls, v: str) -> str:
        if not _QUEUE_RE.match(v):
            raise ValueError(
                f"queue name {v!r} must be 1-{limits.MAX_QUEUE_NAME_LENGTH} characters of letters, digits, '_' or '-'"
            )
        return v

    @property
    def input_dlq(self) -> str:
        return f"{self.input}{self.dead_letter_suffix}"

    @property
    def results_dlq(self) -> str:
        return f"{self.results}{self.dead_letter_suffix}"


class BatchSpec(BaseModel):
    """A batch: the product of independent dimensions, minus exclusions, one payload per combination.

    :param name: batch name; part of every idempotency key.
    :param dimensions: ordered dimensions (the last varies fastest). In YAML also a mapping name → values.
    :param exclude: rules; a combination matching every dimension named in any one rule is not produced.
        A rule maps a dimension to a value or a list of values.
    :param job_type: fixed job type, when no dimension is named ``job_type_dimension``.
    :param job_type_dimension: dimension whose value is the payload's job type.
    :param params: job parameters copied into every payload (JSON).
    :param queues: queue names and delivery settings.
    :param max_payloads: guard: a product above this fails validation.
    :param target_payloads_per_shard: fan-out planning target; shards ≤ ``max_shards``.
    :param max_shards: cap on mapped fan-out tasks (keep well under ``[core] max_map_length``).
    :param tolerated_failure_count: failed results a run may have and still succeed.
    :param tolerated_failure_percentage: same, as a percentage of expected payloads.
    :param deadline: optional ``"HH:MM"`` (24-hour, in the DAG's timezone) a run should be drained by;
        the ``late`` backlog alert fires when the drain rate projects past it (:mod:`batchq.monitor.alerts`).
    :param owners: optional DAG ids that own this batch: only they grant access to its data in the Batch
        views and API (:mod:`batchq.airflow.views.access`), and a results outlet any other DAG declares
        is ignored. Without it, every DAG producing ``batchq://<name>/results`` grants access.
    :param partition_by: dimensions whose values name a partition (a tenant, e.g. ``[customer]``); the
        partition key joins their values with ``|`` (:func:`batchq.partitions.partition_key`). Each
        partition gets its own ledger counts, lag and partitioned results event.
    :param order: the order a fan-out shard sends its payloads in (needs ``partition_by``):
        ``dimension-major`` sends one partition after another, ``interleave`` round-robins the
        partitions. Unset: product order (the last dimension varies fastest).
    :param fair_queue: set ``MessageGroupId`` to the partition key on a standard input queue, so SQS
        fair queues deliver quiet tenants' messages first while one tenant dominates (needs ``partition_by``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    dimensions: tuple[Dimension, ...]
    exclude: tuple[dict[str, Any], ...] = ()
    job_type: str | None = None
    job_type_dimension: str = "job_type"
    params: dict[str, Any] = Field(default_factory=dict)
    queues: QueueSpec
    max_payloads: int = Field(1_000_000, ge=1)
    target_payloads_per_shard: int = Field(5_000, ge=1)
    max_shards: int = Field(64, ge=1, le=1024)
    tolerated_failure_count: int = Field(0, ge=0)
    tolerated_failure_percentage: float = Field(0.0, ge=0, le=100)
    deadline: str | None = None
    # Who may see the batch, not what it produces: excluded from dumps, so the spec's fingerprint (and
    # every plan's) does not change when owners are named.
    owners: tuple[str, ...] | None = Field(None, exclude=True)

    @field_validator("owners")
    @classmethod
    def _owners(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None and (not v or any(not isinstance(d, str) or not d or len(d) > 250 for d in v)):
            raise ValueError("owners must be a non-empty list of DAG ids (1-250 characters each)")
        return v
    partition_by: tuple[str, ...] = ()
    order: Literal["interleave", "dimension-major"] | None = None
    fair_queue: bool = False

    @field_validator("partition_by", mode="before")
    @classmethod
    def _partition_by_list(cls, v: Any) -> Any:
        # YAML convenience: ``partition_by: customer`` means ``[customer]``.
        return [v] if isinstance(v, str) else v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"batch name {v!r} must be 1-64 characters of letters, digits, '_' or '-'")
        return v

    @field_validator("deadline", mode="before")
    @classmethod
    def _deadline(cls, v: Any) -> str | None:
        # YAML 1.1 reads an unquoted 10:30 as the base-60 integer 630: take it back to the clock time.
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 24 * 60:
            v = f"{v // 60:02d}:{v % 60:02d}"
        if v is not None:
            from batchq.clock import parse_clock

            hour, minute = parse_clock(v)
            return f"{hour:02d}:{minute:02d}"
        return v

    @field_validator("dimensions", mode="before")
    @classmethod
    def _dims_mapping(cls, v: Any) -> Any:
        # YAML convenience: {customer: [..], period: [..]} keeps its order (dicts are ordered).
        if isinstance(v, Mapping):
            return [
                {"name": k, "source": val} if isinstance(val, str) and ":" in val else {"name": k, "values": val}
                for k, val in v.items()
            ]
        return v

    @field_validator("params")
    @classmethod
    def _params_json(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params must be JSON-serialisable: {exc}") from None
        return v

    @model_validator(mode="after")
    def _consistency(self) -> BatchSpec:
        if not self.dimensions:
            raise ValueError("dimensions: at least one dimension is required")
        names = [d.name for d in self.dimensions]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"dimensions: duplicate dimension name(s) {sorted(dup)}")
        by_name = {d.name: d for d in self.dimensions}
        for i, rule in enumerate(self.exclude):
            if not rule:
                raise ValueError(f"exclude[{i}]: empty rule would exclude everything")
            for dim, val in rule.items():
                if dim not in by_name:
                    raise ValueError(f"exclude[{i}]: unknown dimension {dim!r} (known: {names})")
                vals = val if isinstance(val, (list, tuple)) else [val]
                for x in vals:
                    _check_scalar(x, f"exclude[{i}].{dim}")
                known = by_name[dim].values
                if known is not None:
                    missing = [x for x in vals if not _contains(known, x)]
                    if missing:
                        raise ValueError(f"exclude[{i}]: value(s) {missing} not in dimension {dim!r}")
        self._check_partitioning(names, by_name)
        if self.job_type is None and self.job_type_dimension not in by_name:
            raise ValueError(
                f"job_type: set 'job_type' or add a dimension named {self.job_type_dimension!r}"
            )
        if self.is_resolved:
            self._check_resolved_limits()
        return self

    def _check_partitioning(self, names: list[str], by_name: dict[str, Dimension]) -> None:
        from batchq.partitions import KEY_SEPARATOR, check_partition_values

        seen: set[str] = set()
        for i, dim in enumerate(self.partition_by):
            if dim not in by_name:
                raise ValueError(f"partition_by[{i}]: unknown dimension {dim!r} (known: {names})")
            if dim in seen:
                raise ValueError(f"partition_by[{i}]: dimension {dim!r} is listed twice")
            seen.add(dim)
            if by_name[dim].values is not None:
                check_partition_values(dim, by_name[dim].values)
        if not self.partition_by:
            for option, value in (("order", self.order), ("fair_queue", self.fair_queue or None)):
                if value is not None:
                    raise ValueError(
                        f"{option}: needs partition_by (the dimensions that name a partition, e.g. [customer]); "
                        f"partition keys join their values with {KEY_SEPARATOR!r}"
                    )

    def _check_resolved_limits(self) -> None:
        size = 1
        for d in self.dimensions:
            size *= len(d.values or ())
        if size > self.max_payloads:
            raise ValueError(
                f"max_payloads: product of dimensions is {size} "
                f"({' x '.join(str(len(d.values or ())) for d in self.dimensions)}), above max_payloads={self.max_payloads}"
            )
        if self.partition_by:
            from batchq.partitions import MAX_KEY_LENGTH, key_part

            by_name = {d.name: d for d in self.dimensions}
            longest = sum(max(len(key_part(v)) for v in by_name[n].values or ("",)) for n in self.partition_by)
            longest += len(self.partition_by) - 1
            if longest > MAX_KEY_LENGTH:
                raise ValueError(
                    f"partition_by: the longest partition key would be {longest} characters, above {MAX_KEY_LENGTH}"
                )
        worst = worst_case_payload_bytes(self)
        if worst > limits.MAX_MESSAGE_BYTES:
            raise ValueError(
                f"params/dimensions: the largest payload would be {worst} bytes, above the SQS limit of "
                f"{limits.MAX_MESSAGE_BYTES} bytes"
            )

    @property
    def is_resolved(self) -> bool:
        return all(d.resolved for d in self.dimensions)

    def job_types(self) -> list[str] | None:
        """The job types this spec's payloads carry, sorted; ``None`` when they come from a dimension
        whose values are not known yet (a ``source`` not resolved). A job type every one of whose
        combinations an exclusion rule on the job type dimension alone removes is not listed."""
        if self.job_type is not None:
            return [self.job_type]
        dim = next(d for d in self.dimensions if d.name == self.job_type_dimension)
        if dim.values is None:
            return None
        excluded: set[str] = set()
        for rule in self.exclude:
            if set(rule) == {self.job_type_dimension}:
                val = rule[self.job_type_dimension]
                excluded |= {str(x) for x in (val if isinstance(val, (list, tuple)) else [val])}
        return sorted({str(v) for v in dim.values} - excluded)

    # -- loading -------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str = "spec") -> BatchSpec:
        """Validate ``data``; raise :class:`SpecError` naming the field and value on failure."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(_format_validation_error(exc, origin, data)) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> BatchSpec:
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SpecError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise SpecError(f"{path}: top level must be a mapping, got {type(data).__name__}")
        return cls.from_dict(data, origin=str(path))

    def resolve(self, resolver: Callable[[str], Any] | None = None) -> BatchSpec:
        """Return a copy whose every dimension has concrete values.

        :param resolver: maps a ``source`` string to a list of values. ``callable:`` sources are resolved
            by import when no resolver handles them; ``variable:`` sources need the Airflow resolver.
        """
        if self.is_resolved:
            return self
        data = self.model_dump(mode="python")
        for dim in data["dimensions"]:
            source = dim.pop("source", None)
            if source is None:
                continue
            values = resolver(source) if resolver is not None else resolve_callable_source(source)
            try:
                validate_dimension_values(dim["name"], list(values) if isinstance(values, tuple) else values)
            except ValueError as exc:
                raise SpecError(f"{self.name}: dimensions.{dim['name']} (from {source}): {exc}") from None
            dim["values"] = list(values)
            dim["source"] = None
        return BatchSpec.from_dict(data, origin=self.name)


def _contains(values: tuple[Any, ...], x: Any) -> bool:
    return any(type(v) is type(x) and v == x for v in values)


def resolve_callable_source(source: str) -> list[Any]:
    """Resolve ``callable:package.module:function`` by import; anything else is an error here."""
    if not source.startswith("callable:"):
        raise SpecError(f"cannot resolve source {source!r} outside Airflow (only 'callable:' sources)")
    from batchq.importing import import_object

    target = source.removeprefix("callable:")
    if ":" not in target:
        raise SpecError(f"source {source!r} must look like 'callable:package.module:function'")
    try:
        fn = import_object(target)
    except ValueError as exc:
        raise SpecError(f"source {source!r}: {exc}") from None
    return list(fn())


def _format_validation_error(exc: ValidationError, origin: str, data: Any) -> str:
    lines = []
    for err in exc.errors():
        loc = _readable_loc(err["loc"], data)
        msg = err["msg"].removeprefix("Value error, ")
        shown = "" if err["type"] in ("value_error", "missing") else f" (got {err.get('input')!r})"
        lines.append(f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}")
    return f"invalid BatchSpec in {origin}: " + "; ".join(lines)


def _readable_loc(loc: tuple[Any, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for p in loc:
        if isinstance(p, int):
            name = None
            if isinstance(node, (list, tuple)) and p < len(node) and isinstance(node[p], Mapping):
                name = node[p].get("name")
            parts.append(f"[{p}]" if name is None else f"[{p}:{name}]")
            node = node[p] if isinstance(node, (list, tuple)) and p < len(node) else None
        else:
            parts.append(("." if parts else "") + str(p))
            node = node.get(p) if isinstance(node, Mapping) else None
    return "".join(parts)


#: Longest run id payloads are size-checked with (Airflow run ids are ~50 characters).
RUN_ID_BUDGET = 250


def worst_case_payload_bytes(spec: BatchSpec) -> int:
    """Size of the largest payload this (resolved) spec can produce, with a generous run id."""
    enc = PayloadEncoder(spec.name, spec.params, [d.name for d in spec.dimensions], "r" * RUN_ID_BUDGET, datetime(2000, 1, 1, tzinfo=timezone.utc), plan="p" * 16)
    longest = [max((dumps_json(v) for v in d.values or ()), key=lambda s: len(s.encode())) for d in spec.dimensions]
    job_json = dumps_json(spec.job_type) if spec.job_type else max(
        (dumps_json(str(v)) for d in spec.dimensions if d.name == spec.job_type_dimension for v in d.values or ()),
        key=len,
        default='""',
    )
    return len(enc.encode("k" * 32, job_json, longest).encode())
