"""Checks a result must pass before the results store sees it.

A value the database would refuse (a string longer than its column, ``attempts`` outside the integer
column, a NUL character, NaN/Infinity in JSON, JSON nested deeper than a database or serialiser copes
with) must fail *here*, with a reason naming the field, so that the drainer quarantines that one result
and the same input behaves identically on SQLite (which enforces almost nothing) and PostgreSQL (which
enforces all of it). Pure functions, no I/O.
"""

from __future__ import annotations

import math
from typing import Any

from batchq.errors import InvalidMessage
from batchq.messages import WorkResult
from batchq.store.quarantine import fits
from batchq.store.schema import column_lengths

#: Range of the SQL ``INTEGER`` column (``attempts``): 32-bit signed on PostgreSQL.
MAX_INT_COLUMN = 2**31 - 1
#: Deepest JSON nesting accepted in ``output``/``error``; far beyond any real result, far below the
#: recursion limits of the JSON serialisers and of PostgreSQL's json parser.
MAX_JSON_DEPTH = 100


def check_result(r: WorkResult) -> None:
    """Raise :class:`InvalidMessage` (with the key) if ``r`` cannot be stored as it is."""
    lengths = column_lengths()
    key = fits(r.key, lengths["key"])
    for name, limit in lengths.items():
        value = getattr(r, name, None)
        if not isinstance(value, str):
            continue
        if "\x00" in value:
            raise InvalidMessage(f"{name} contains a NUL character (\\u0000)", key=key)
        if len(value) > limit:
            raise InvalidMessage(f"{name} is {len(value)} characters, longer than its column ({limit})", key=key)
    if not 1 <= r.attempts <= MAX_INT_COLUMN:
        raise InvalidMessage(f"attempts {r.attempts} outside the integer column range [1, {MAX_INT_COLUMN}]", key=key)
    for name in ("output", "error"):
        value = getattr(r, name)
        if value is not None:
            problem = json_problem(value if name == "output" else value.model_dump())
            if problem:
                raise InvalidMessage(f"{name}: {problem}", key=key)


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """What makes ``value`` unstorable as JSON on every backend, or None. Iterative: a hostile depth
    cannot overflow the stack here."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while stack:
        v, depth, path = stack.pop()
        if isinstance(v, str):
            if "\x00" in v:
                return f"{path} contains a NUL character (\\u0000)"
        elif isinstance(v, float):
            if not math.isfinite(v):
                return f"{path} is {v!r} (JSON has no NaN/Infinity)"
        elif isinstance(v, (dict, list, tuple)):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels at {path[:200]}"
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, child in items:
                if isinstance(k, str) and "\x00" in k:
                    return f"{path} has a key with a NUL character (\\u0000)"
                stack.append((child, depth + 1, f"{path}.{k}" if isinstance(v, dict) else f"{path}[{k}]"))
    return None
