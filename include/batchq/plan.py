"""Planning: from a resolved BatchSpec to shard descriptors and payload bodies, never materialising
the product.

The product of the dimensions is an index space ``[0, size)``; index ``i`` maps to its combination
arithmetically (mixed radix, last dimension fastest). A shard is an index range, so a 1,000,000-payload
run is 64 tiny descriptors, and a fan-out task streams its range with flat memory. Exclusions are
applied while streaming; their total is counted arithmetically (inclusion-exclusion) so the run's
expected count is known up front for the ledger.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from batchq.errors import SpecError
from batchq.messages import PayloadEncoder, dumps_json
from batchq.spec import BatchSpec

#: Above this many exclusion rules, inclusion-exclusion (2^R terms) is replaced by a streamed count.
_MAX_RULES_FOR_ARITHMETIC_COUNT = 16


@dataclass(frozen=True)
class Shard:
    """A half-open range ``[start, stop)`` of product indices: what one fan-out task sends."""

    index: int
    start: int
    stop: int

    @property
    def label(self) -> str:
        return f"shard {self.index}: [{self.start:,}, {self.stop:,})"

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shard:
        return cls(index=int(data["index"]), start=int(data["start"]), stop=int(data["stop"]))


def idempotency_key(batch: str, run_id: str, dims: dict[str, Any], dag_id: str | None = None) -> str:
    """Stable hash of (batch, run id, dims[, dag id]): 32 hex characters (128 bits).

    Dims are hashed sorted by name with JSON types kept (``1`` and ``"1"`` differ), so the key does not
    depend on dimension order or on where the combination sits in the product. The DAG id, when the
    run belongs to one, is part of the run's identity: two DAGs sharing a batch name and schedule (so
    a run id) never share keys.
    """
    run = [batch, run_id] if dag_id is None else [batch, run_id, dag_id]
    material = dumps_json([*run, sorted(dims.items())])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def spec_fingerprint(spec: BatchSpec) -> str:
    """Hash of a resolved spec (dimension values included): 16 hex characters."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


def plan_fingerprint(spec: BatchSpec, run_id: str, dag_id: str | None = None) -> str:
    """The identity of one plan of one run: hash of the resolved spec, the run id and the DAG id.
    Payloads and results carry it; a run's ledger counts only results that carry its own."""
    return hashlib.sha256(dumps_json([spec_fingerprint(spec), run_id, dag_id]).encode()).hexdigest()[:16]


def shard_count(expected: int, target_per_shard: int, max_shards: int) -> int:
    """Shards for ``expected`` payloads: about ``target_per_shard`` each, at least 1, at most ``max_shards``."""
    return max(1, min(max_shards, math.ceil(expected / target_per_shard)))


class Plan:
    """The plan of one run of one batch.

    :param spec: a resolved spec (every dimension has values).
    :param run_id: the run key (e.g. Airflow's run id); part of every idempotency key.
    :param created_at: stamped on payloads; does not affect keys.
    :param dag_id: the DAG the run belongs to (part of the keys and of the plan fingerprint), or None
        outside Airflow.
    """

    def __init__(self, spec: BatchSpec, run_id: str, created_at: datetime | None = None, dag_id: str | None = None):
        if not spec.is_resolved:
            raise SpecError(f"{spec.name}: resolve dimension sources before planning (spec.resolve(...))")
        if not run_id:
            raise ValueError("run_id must be a non-empty string")
        self.spec = spec
        self.run_id = run_id
        self.dag_id = dag_id
        #: carried by every payload and copied into its result (see :func:`plan_fingerprint`)
        self.fingerprint = plan_fingerprint(spec, run_id, dag_id)
        self.values: list[tuple[Any, ...]] = [tuple(d.values or ()) for d in spec.dimensions]
        self.names = [d.name for d in spec.dimensions]
        self.radices = [len(v) for v in self.values]
        self.size = math.prod(self.radices)
        self._rules = self._compile_rules()
        self._encoder = PayloadEncoder(spec.name, spec.params, [d.name for d in spec.dimensions], run_id, created_at, plan=self.fingerprint)
        self._value_jsons = [[dumps_json(v) for v in vals] for vals in self.values]
        self._job_dim = self.names.index(spec.job_type_dimension) if spec.job_type is None else None
        self._fixed_job_json = dumps_json(spec.job_type) if spec.job_type is not None else None
        self.expected = self.size - self._excluded_count()

    # -- arithmetic ----------------------------------------------------------------------------------
    def _compile_rules(self) -> list[dict[int, frozenset[int]]]:
        rules = []
        for rule in self.spec.exclude:
            compiled: dict[int, frozenset[int]] = {}
            for name, val in rule.items():
                d = self.names.index(name)
                wanted = val if isinstance(val, (list, tuple)) else [val]
                compiled[d] = frozenset(
                    i for i, v in enumerate(self.values[d]) if any(type(v) is type(w) and v == w for w in wanted)
                )
            rules.append(compiled)
        return rules

    def _excluded_count(self) -> int:
        if not self._rules:
            return 0
        if len(self._rules) > _MAX_RULES_FOR_ARITHMETIC_COUNT:
            return self.size - sum(1 for _ in self._iter_digits(0, self.size))
        total = 0
        for r in range(1, len(self._rules) + 1):
            for subset in itertools.combinations(self._rules, r):
                total += (-1) ** (r + 1) * self._intersection_size(subset)
        return total

    def _intersection_size(self, rules: tuple[dict[int, frozenset[int]], ...]) -> int:
        size = 1
        for d, radix in enumerate(self.radices):
            allowed: frozenset[int] | None = None
            for rule in rules:
                if d in rule:
                    allowed = rule[d] if allowed is None else allowed & rule[d]
            size *= radix if allowed is None else len(allowed)
            if size == 0:
                return 0
        return size

    def digits(self, index: int) -> list[int]:
        """Mixed-radix digits of ``index`` (last dimension fastest)."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} outside the product [0, {self.size})")
        out = [0] * len(self.radices)
        for d in range(len(self.radices) - 1, -1, -1):
            index, out[d] = divmod(index, self.radices[d])
        return out

    def combination(self, index: int) -> dict[str, Any]:
        """The dims of product index ``index`` (whether or not an exclusion removes it)."""
        return {n: self.values[d][i] for d, (n, i) in enumerate(zip(self.names, self.digits(index)))}

    def is_excluded(self, digits: list[int]) -> bool:
        return any(all(digits[d] in allowed for d, allowed in rule.items()) for rule in self._rules)

    def shards(self) -> list[Shard]:
        """Split the index space into equal ranges; the count follows the expected payloads."""
        n = shard_count(self.expected, self.spec.target_payloads_per_shard, self.spec.max_shards)
        n = min(n, self.size)
        bounds = [self.size * i // n for i in range(n + 1)]
        return [Shard(i, bounds[i], bounds[i + 1]) for i in range(n)]

    # -- streaming -----------------------------------------------------------------------------------
    def _iter_digits(self, start: int, stop: int) -> Iterator[list[int]]:
        """Yield the digits of every non-excluded index in ``[start, stop)``, odometer-style (no divmod
        per item). The same list object is mutated and yielded: copy it if you keep it."""
        if start >= stop:
            return
        digits = self.digits(start)
        radices = self.radices
        last = len(radices) - 1
        check = bool(self._rules)
        for _ in range(stop - start):
            if not (check and self.is_excluded(digits)):
                yield digits
            d = last
            while d >= 0:
                digits[d] += 1
                if digits[d] < radices[d]:
                    break
                digits[d] = 0
                d -= 1

    def iter_bodies(self, shard: Shard) -> Iterator[tuple[str, str]]:
        """Yield ``(key, json_body)`` for every payload of ``shard``: the fan-out's input."""
        vj, values, names = self._value_jsons, self.values, self.names
        batch, run_id, dag_id = self.spec.name, self.run_id, self.dag_id
        job_dim, fixed_job = self._job_dim, self._fixed_job_json
        for digits in self._iter_digits(shard.start, shard.stop):
            dims = {names[d]: values[d][i] for d, i in enumerate(digits)}
            key = idempotency_key(batch, run_id, dims, dag_id)
            job_json = fixed_job if job_dim is None else dumps_json(str(values[job_dim][digits[job_dim]]))
            yield key, self._encoder.encode(key, job_json, [vj[d][i] for d, i in enumerate(digits)])

    def dims_of(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The dims of each of ``keys`` this plan produces (keys it does not produce are left out), to
        show a key to a person by what it stands for when a stored row does not carry its dims. Streams
        the plan, without encoding bodies, and stops once every key was found."""
        wanted, found = set(keys), {}
        values, names = self.values, self.names
        batch, run_id, dag_id = self.spec.name, self.run_id, self.dag_id
        if wanted:
            for digits in self._iter_digits(0, self.size):
                dims = {names[d]: values[d][i] for d, i in enumerate(digits)}
                key = idempotency_key(batch, run_id, dims, dag_id)
                if key in wanted:
                    found[key] = dims
                    wanted.discard(key)
                    if not wanted:
                        break
        return found

    def count_in(self, shard: Shard) -> int:
        """Payloads in ``shard`` after exclusions (streams the range)."""
        if not self._rules:
            return shard.stop - shard.start
        return sum(1 for _ in self._iter_digits(shard.start, shard.stop))

    def summary(self) -> dict[str, Any]:
        return {
            "batch": self.spec.name,
            "run_id": self.run_id,
            "plan": self.fingerprint,
            "dimensions": dict(zip(self.names, self.radices)),
            "product": self.size,
            "excluded": self.size - self.expected,
            "expected": self.expected,
            "shards": len(self.shards()),
        }
