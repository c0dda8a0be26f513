"""Partition keys: what names a tenant's share of a batch.

A spec's ``partition_by`` lists the dimensions that name a partition (``[customer]``, or
``[customer, region]``). The partition key of a payload is the string value of each of those
dimensions, joined with ``|`` in ``partition_by`` order: ``acme`` or ``acme|eu``. Airflow's partition
mappers and ``PartitionedAssetTimetable`` take keys as plain strings, and a composite key joined with a
separator is what they split again, so a value may not contain the separator itself.

One implementation, used by the plan (expected counts, fan-out order, ``MessageGroupId``), the store's
partition ledger (counts per key from each result's dims) and the Airflow side (partitioned events).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Joins the values of a composite partition key.
KEY_SEPARATOR = "|"
#: Airflow's ``partition_key`` columns are ``ID_LEN`` (250) characters; SQS caps ``MessageGroupId`` at 128.
MAX_KEY_LENGTH = 128


def key_part(value: Any) -> str:
    """One dimension value as it appears in a partition key: a string as is, any other scalar as its
    JSON text (``1``, ``true``, ``2.5``), so ``1`` and ``"1"`` differ only where JSON says they do."""
    if isinstance(value, str):
        return value
    from batchq.messages import dumps_json

    return dumps_json(value)


def partition_key(dims: Mapping[str, Any], partition_by: Sequence[str]) -> str:
    """The partition key of a payload's (or result's) ``dims``.

    :raises KeyError: ``dims`` lacks a partition dimension (a result of another spec).
    """
    return KEY_SEPARATOR.join(key_part(dims[name]) for name in partition_by)


def check_partition_values(name: str, values: Iterable[Any]) -> None:
    """Refuse values that cannot be part of a key: the separator inside one would make two
    partitions share a key, and an empty or over-long key is refused by SQS and Airflow."""
    for value in values:
        part = key_part(value)
        if KEY_SEPARATOR in part:
            raise ValueError(
                f"partition_by: dimension {name!r} value {value!r} contains {KEY_SEPARATOR!r}, which joins the "
                "values of a composite partition key"
            )
        if not part.strip():
            raise ValueError(f"partition_by: dimension {name!r} has an empty value {value!r}; a partition key needs text")
        if len(part) > MAX_KEY_LENGTH:
            raise ValueError(
                f"partition_by: dimension {name!r} value {part[:40]!r}... is {len(part)} characters, above the "
                f"{MAX_KEY_LENGTH} a partition key (SQS MessageGroupId) may have"
            )
