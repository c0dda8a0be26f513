"""Planning: from a resolved BatchSpec to shard descriptors and payload bodies, never materialising
the product.

The product of the dimensions is an index space ``[0, size)``; index ``i`` maps to its combination
arithmetically (mixed radix, last dimension fastest). A shard is an index range, so a 1,000,000-payload
run is 64 tiny descriptors, and a fan-out task streams its range with flat memory. Exclusions are
applied while streaming; their total is counted arithmetically (inclusion-exclusion) so the run's
expected count is known up front for the ledger.

With ``partition_by`` the expected count of every partition is known up front too
(:meth:`Plan.partition_expected`): arithmetic per partition, grouped by which exclusion rules can touch
it, so the product is never walked. ``order`` permutes the index space: ``dimension-major`` makes the
partition dimensions the outermost digits (a shard sends one partition after another), ``interleave``
the innermost (a shard sends one payload of each partition in turn). Keys never depend on the order.
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
from batchq.partitions import KEY_SEPARATOR, key_part
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
        #: spec positions of the partition dimensions, in ``partition_by`` order
        self.partition_dims = [self.names.index(n) for n in spec.partition_by]
        others = [d for d in range(len(self.names)) if d not in self.partition_dims]
        #: dimension positions from the outermost digit of the index space to the innermost
        self.order = (
            self.partition_dims + others if spec.order == "dimension-major"
            else others + self.partition_dims if spec.order == "interleave"
            else list(range(len(self.names)))
        )
        self._key_parts = [[key_part(v) for v in self.values[d]] for d in self.partition_dims]

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
        """Mixed-radix digits of ``index``, one per dimension in spec order; :attr:`order` says which
        digit varies fastest (the last one listed; by default the last dimension)."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} outside the product [0, {self.size})")
        out = [0] * len(self.radices)
        for d in reversed(self.order):
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
        inner_first = list(reversed(self.order))
        check = bool(self._rules)
        for _ in range(stop - start):
            if not (check and self.is_excluded(digits)):
                yield digits
            for d in inner_first:
                digits[d] += 1
                if digits[d] < radices[d]:
                    break
                digits[d] = 0

    def iter_bodies(self, shard: Shard) -> Iterator[tuple[str, str]]:
        """Yield ``(key, json_body)`` for every payload of ``shard``: the fan-out's input."""
        for key, body, _ in self._iter_encoded(shard):
            yield key, body

    def _iter_encoded(self, shard: Shard) -> Iterator[tuple[str, str, list[int]]]:
        vj, values, names = self._value_jsons, self.values, self.names
        batch, run_id, dag_id = self.spec.name, self.run_id, self.dag_id
        job_dim, fixed_job = self._job_dim, self._fixed_job_json
        for digits in self._iter_digits(shard.start, shard.stop):
            dims = {names[d]: values[d][i] for d, i in enumerate(digits)}
            key = idempotency_key(batch, run_id, dims, dag_id)
            job_json = fixed_job if job_dim is None else dumps_json(str(values[job_dim][digits[job_dim]]))
            yield key, self._encoder.encode(key, job_json, [vj[d][i] for d, i in enumerate(digits)]), digits

    def iter_messages(self, shard: Shard, *, grouped: bool = False) -> Iterator[tuple[str, str] | tuple[str, str, str]]:
        """:meth:`iter_bodies` for the fan-out: with ``grouped`` each item also carries its partition
        key, sent as ``MessageGroupId`` (fair queues on a standard queue)."""
        if not grouped:
            yield from self.iter_bodies(shard)
            return
        if not self.partition_dims:
            raise SpecError(f"{self.spec.name}: fair_queue needs partition_by")
        for key, body, digits in self._iter_encoded(shard):
            yield key, body, self.partition_of_digits(digits)

    # -- partitions ----------------------------------------------------------------------------------
    def partition_of_digits(self, digits: list[int]) -> str:
        """The partition key of the combination ``digits`` (see :func:`batchq.partitions.partition_key`)."""
        return KEY_SEPARATOR.join(parts[digits[d]] for parts, d in zip(self._key_parts, self.partition_dims))

    def iter_partitions(self, shard: Shard) -> Iterator[str]:
        """The partition key of every payload of ``shard``, in send order (no keys, no bodies)."""
        for digits in self._iter_digits(shard.start, shard.stop):
            yield self.partition_of_digits(digits)

    def partition_keys(self) -> Iterator[str]:
        """Every partition key, in :attr:`order` (a partition with every payload excluded included)."""
        for combo in itertools.product(*self._key_parts):
            yield KEY_SEPARATOR.join(combo)

    def partition_expected(self) -> dict[str, int]:
        """Expected payloads of every partition with at least one, by key, without walking the product.

        Without exclusions each partition holds the product of the other dimensions. With them, a rule
        touches a partition only if the partition's values are among the rule's for every partition
        dimension the rule names; partitions touched by the same rules have the same count, which
        inclusion-exclusion over those rules gives from the other dimensions alone. The work is
        partitions × rules plus 2^rules per distinct rule set; above
        :data:`_MAX_RULES_FOR_ARITHMETIC_COUNT` rules it streams the plan once instead
        (:meth:`_partition_expected_streamed`).
        """
        if not self.partition_dims:
            return {}
        if len(self._rules) > _MAX_RULES_FOR_ARITHMETIC_COUNT:
            return self._partition_expected_streamed()
        pset = set(self.partition_dims)
        others = [d for d in range(len(self.radices)) if d not in pset]
        # Each rule split into its partition-side test and its other-dimension restriction.
        split = [({d: a for d, a in r.items() if d in pset}, {d: a for d, a in r.items() if d not in pset}) for r in self._rules]
        memo: dict[tuple[int, ...], int] = {}
        out: dict[str, int] = {}
        for digits in itertools.product(*(range(self.radices[d]) for d in self.partition_dims)):
            at = dict(zip(self.partition_dims, digits))
            touching = tuple(i for i, (p, _) in enumerate(split) if all(at[d] in allowed for d, allowed in p.items()))
            if touching not in memo:
                memo[touching] = self._count_others(others, [split[i][1] for i in touching])
            if memo[touching]:
                out[KEY_SEPARATOR.join(self._key_parts[j][i] for j, i in enumerate(digits))] = memo[touching]
        return out

    def _count_others(self, others: list[int], rules: list[dict[int, frozenset[int]]]) -> int:
        """Combinations of the ``others`` dimensions that no rule in ``rules`` excludes."""
        total = math.prod(self.radices[d] for d in others)
        for r in range(1, len(rules) + 1):
            for subset in itertools.combinations(rules, r):
                size = 1
                for d in others:
                    allowed: frozenset[int] | None = None
                    for rule in subset:
                        if d in rule:
                            allowed = rule[d] if allowed is None else allowed & rule[d]
                    size *= self.radices[d] if allowed is None else len(allowed)
                    if size == 0:
                        break
                total -= (-1) ** (r + 1) * size
        return total

    def key_partitions(self) -> dict[str, str]:
        """``{key: partition key}`` of every payload, streamed once: only for results that arrive
        without their dims (older workers); memory is one entry per payload."""
        names, values, batch, run_id, dag_id = self.names, self.values, self.spec.name, self.run_id, self.dag_id
        out: dict[str, str] = {}
        for digits in self._iter_digits(0, self.size):
            dims = {names[d]: values[d][i] for d, i in enumerate(digits)}
            out[idempotency_key(batch, run_id, dims, dag_id)] = self.partition_of_digits(digits)
        return out

    def _partition_expected_streamed(self) -> dict[str, int]:
        """:meth:`partition_expected` by one pass over the plan's digits (no keys, no bodies): memory is
        one counter per partition. bench/partition_plan.py measures it for 1M payloads."""
        counts: dict[tuple[int, ...], int] = {}
        pdims = self.partition_dims
        for digits in self._iter_digits(0, self.size):
            at = tuple(digits[d] for d in pdims)  # the key is joined once per partition, not per payload
            counts[at] = counts.get(at, 0) + 1
        return {KEY_SEPARATOR.join(self._key_parts[j][i] for j, i in enumerate(at)): n for at, n in counts.items()}

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
            **({"partition_by": list(self.spec.partition_by), "order": self.spec.order or "product"} if self.partition_dims else {}),
        }
