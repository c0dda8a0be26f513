"""Wall-clock and duration parsing shared by specs, alerts and the CLI: ``"HH:MM"`` deadlines and
when they fall, and durations such as ``"1h"``, ``"90m"`` or ``"1h30m"``.

Kernel: imports nothing from batchq.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_CLOCK_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


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


def parse_duration(value: str) -> float:
    """``"1h"`` → 3600.0, ``"90m"`` → 5400.0, ``"1h30m"``, ``"45s"``, ``"2h15m30s"``; a bare number is
    seconds. A clear error for anything else (including zero)."""
    text = value.strip().lower().replace(" ", "") if isinstance(value, str) else ""
    seconds: float | None = None
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION_RE.match(text)
        if match and any(match.groups()):
            h, m, s = (float(g) if g else 0.0 for g in match.groups())
            seconds = h * 3600 + m * 60 + s
    if seconds is None or not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"duration {value!r} must look like '1h', '90m', '1h30m', '45s' (or seconds), above zero")
    return seconds


def parse_deadline(value: str) -> tuple[str, float]:
    """A deadline given either way: ``("clock", minutes after midnight)`` for ``"08:00"``, or
    ``("duration", seconds)`` for ``"1h"`` (time allowed from the start)."""
    try:
        hour, minute = parse_clock(value)
        return "clock", float(hour * 60 + minute)
    except ValueError:
        pass
    try:
        return "duration", parse_duration(value)
    except ValueError:
        raise ValueError(f"deadline {value!r} must be a time of day 'HH:MM' (e.g. '08:00') or a duration "
                         f"('1h', '90m', '1h30m')") from None
