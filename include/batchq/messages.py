"""The wire messages: what a worker receives (:class:`WorkPayload`) and what it sends back
(:class:`WorkResult`), their parsing and the one payload serialiser. Shared by the Airflow side and the
worker side; nothing here imports Airflow.

Bodies are JSON and carry ``schema_version`` so that a worker can refuse a payload it does not understand
(a permanent failure, dead-lettered with a reason) instead of guessing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from batchq.errors import InvalidMessage

SCHEMA_VERSION = 1
#: JSON scalars a dimension value may be. bool is listed first so pydantic keeps True as True, not 1.
Scalar = Union[bool, int, float, str]


# -- payloads --------------------------------------------------------------------------------------


class WorkPayload(BaseModel):
    """One unit of work, one SQS message on the input queue (JSON, well under 1 MiB).

    ``key`` is the idempotency key: a stable hash of (batch, run_id, dims), so re-planning the same run
    yields the same keys and every consumer can deduplicate on it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    batch: str
    run_id: str
    key: str
    job_type: str
    dims: dict[str, Scalar]
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    #: Fingerprint of the plan that produced this payload (:attr:`batchq.plan.Plan.fingerprint`); the
    #: worker copies it into the result so a run's ledger counts only its own plan. Optional: bodies
    #: from before it was carried still parse.
    plan: str | None = None


class ErrorInfo(BaseModel):
    """Why a work unit failed. ``permanent`` errors are never retried (bad input, unknown job type)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    message: str
    permanent: bool = False


class WorkResult(BaseModel):
    """The outcome of one work unit, one message on the results queue.

    Every payload ends in exactly one *effective* result (duplicates are possible, at-least-once; sinks
    upsert on ``key``), so a run's ledger closes: expected == succeeded + failed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    batch: str
    run_id: str
    key: str
    job_type: str | None = None
    status: Literal["succeeded", "failed"]
    output: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    attempts: int = Field(1, ge=1)
    worker: str = ""
    started_at: datetime | None = None
    finished_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    #: Copied from the payload's ``plan`` (None for payloads without one).
    plan: str | None = None
    #: Copied from the payload's ``dims`` by the worker runtime (None from older workers): the store
    #: decides plan membership from them in O(1) and keeps them with the result.
    dims: dict[str, Scalar] | None = None
    #: Queue lag of the input message (SQS ``SentTimestamp`` and ``ApproximateFirstReceiveTimestamp``),
    #: stamped by the worker: together with started/finished_at they give the payload's wait and
    #: processing time (:mod:`batchq.monitor.lag`). Optional: results from older workers still parse.
    enqueued_at: datetime | None = None
    first_received_at: datetime | None = None
    #: When the results message was sent (its SQS ``SentTimestamp``): set by the drainer on receipt,
    #: never by a worker; with the store's ``applied_at`` it gives the results wait.
    result_sent_at: datetime | None = None

    @model_validator(mode="after")
    def _status_fields(self) -> WorkResult:
        if self.status == "succeeded" and self.error is not None:
            raise ValueError("a succeeded result carries no error")
        if self.status == "failed" and self.error is None:
            raise ValueError("a failed result needs an error")
        return self


def parse_payload(body: str | bytes) -> WorkPayload:
    """Parse an input message body. Raise :class:`InvalidMessage` (with the key when it can be read)."""
    return _parse(WorkPayload, body, "payload")


def parse_result(body: str | bytes) -> WorkResult:
    """Parse a results message body. Raise :class:`InvalidMessage` (with the key when it can be read)."""
    return _parse(WorkResult, body, "result")


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity, which are not JSON and which batchq never writes (dumps_json
    # refuses them); a body carrying them was not written by batchq.
    raise ValueError(f"{name} is not valid JSON")


def _parse(model: type[BaseModel], body: str | bytes, what: str) -> Any:
    """Every way a body can be unreadable ends here as :class:`InvalidMessage` (a permanent failure
    with a reason), never as another exception: nested JSON deep enough to exhaust the recursion limit
    (``"[" * 100000``), invalid UTF-8, NaN, a value pydantic cannot even attempt to validate."""
    try:
        raw = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidMessage(f"{what} body is nested too deeply to parse") from None
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise InvalidMessage(f"{what} body is not JSON: {_short(exc)}") from None
    if not isinstance(raw, dict):
        raise InvalidMessage(f"{what} body must be a JSON object, got {type(raw).__name__}")
    key = raw.get("key") if isinstance(raw.get("key"), str) else None
    version = raw.get("schema_version")
    # ``true == 1`` in Python: a boolean is not a version, whatever it compares equal to.
    if type(version) is not int or version != SCHEMA_VERSION:
        raise InvalidMessage(
            f"unsupported schema_version {_short(version)} (this worker understands {SCHEMA_VERSION})", key=key
        )
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidMessage(f"invalid {what}: {_short(detail)}", key=key) from None
    except RecursionError:
        raise InvalidMessage(f"invalid {what}: a value is nested too deeply", key=key) from None
    except Exception as exc:  # noqa: BLE001 - whatever validation trips on, the body is what is wrong
        raise InvalidMessage(f"invalid {what}: {type(exc).__name__}: {_short(exc)}", key=key) from None


def _short(value: object, limit: int = 500) -> str:
    """``repr``/``str`` of a value for an error message, bounded (a reason must stay small)."""
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= limit else f"{text[:limit]}…[{len(text) - limit} more chars]"


# -- keys as people read them ------------------------------------------------------------------------


def describe_key(key: str, dims: Mapping[str, Any] | None = None, *, key_chars: int = 8) -> str:
    """A key as a person should read it: by its dimensions, the hash shortened beside them.

    ``describe_key("4730f5ee91…", {"region": "ap-south", "model": "xgb", "day": "wed"})`` →
    ``"region=ap-south, model=xgb, day=wed (4730f5ee…)"``; the full key alone when the dimensions are not
    known. The one formatting of a key wherever one is shown: logs, the CLI, the drain task's error and
    the Batch view.
    """
    if not dims:
        return str(key)
    shown = ", ".join(f"{name}={value}" for name, value in dims.items())
    short = key if len(key) <= key_chars else f"{key[:key_chars]}…"
    return f"{shown} ({short})"


# -- the one payload serialiser ---------------------------------------------------------------------


def dumps_json(value: Any) -> str:
    """Compact JSON, UTF-8 kept, NaN/Infinity refused: the one encoding of every body batchq writes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class PayloadEncoder:
    """Builds WorkPayload JSON bodies fast: the parts shared by a whole run are encoded once.

    This is the only place that serialises payloads (planning, fan-out and size checks all use it);
    a unit test checks its output parses as a :class:`WorkPayload`.
    """

    def __init__(
        self,
        batch: str,
        params: Mapping[str, Any],
        dimension_names: Sequence[str],
        run_id: str,
        created_at: datetime | None = None,
        plan: str | None = None,
    ):
        created = created_at or datetime.now(timezone.utc)
        if created.tzinfo is None:
            raise ValueError("created_at must be timezone-aware")
        self._head = (
            '{"schema_version":%d,"batch":%s,"run_id":%s,"created_at":%s,"params":%s,'
            % (SCHEMA_VERSION, dumps_json(batch), dumps_json(run_id), dumps_json(created.isoformat()), dumps_json(dict(params)))
        )
        if plan is not None:
            self._head += f'"plan":{dumps_json(plan)},'
        self.names_json = [dumps_json(name) for name in dimension_names]

    def encode(self, key: str, job_type_json: str, dim_value_jsons: list[str]) -> str:
        dims = ",".join(f"{n}:{v}" for n, v in zip(self.names_json, dim_value_jsons))
        return f'{self._head}"job_type":{job_type_json},"key":"{key}","dims":{{{dims}}}}}'
