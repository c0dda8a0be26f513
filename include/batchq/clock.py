"""Wall-clock parsing shared by specs, alerts and the CLI: ``"HH:MM"`` deadlines and when they fall.

Kernel: imports nothing from batchq.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_CLOCK_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_clock(value: str) -> tuple[int, int]:
    """``"08:00"`` → ``(8, 0)``; a clear error for anything that is not a 24-hour ``HH:MM``."""
    match = _CLOCK_RE.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"deadline {value!r} must be a 24-hour time 'HH:MM', e.g. '08:00'")
    return int(match.group(1)), int(match.group(2))


def resolve_deadline(clock: str, anchor: datetime, timezone: Any = "UTC") -> float:
    """Epoch seconds of the first ``clock`` time (``"HH:MM"`` in ``timezone``) at or after ``anchor``.

    :param anchor: when the run is due (its logical date / ``run_after``); a 07:00 run with deadline
        ``"08:00"`` must finish by 08:00 the same day, a 23:00 run by 08:00 the next day.
    :param timezone: the DAG's timezone (name or pendulum timezone).
    """
    import pendulum

    hour, minute = parse_clock(clock)
    tz = pendulum.timezone(timezone) if isinstance(timezone, str) else timezone
    local = pendulum.instance(anchor).in_timezone(tz)
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate < local:
        candidate = candidate.add(days=1)
    return candidate.timestamp()
