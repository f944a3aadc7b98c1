"""Disappearing-message timers as people write and read them: ``30s``, ``5m``, ``1h30m``,
``off`` (ARCHITECTURE.md §1: off, or 5 seconds to 24 hours)."""

from __future__ import annotations

import re
from typing import Final

from veil.client.errors import ClientError
from veil.core.content import MAX_TIMER_S, MIN_TIMER_S, TIMER_PRESETS_S, timer_problem

_UNITS: Final = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART: Final = re.compile(r"(\d{1,6})\s*([dhms])")
_WHOLE: Final = re.compile(r"(?:\s*\d{1,6}\s*[dhms])+\s*")
PRESETS: Final = ("off", "5s", "30s", "1m", "5m", "1h", "8h", "24h")
"""What ``veil timer`` suggests (any whole number of seconds in range also works)."""

assert len(PRESETS) == len(TIMER_PRESETS_S) + 1


def parse_timer(text: str) -> int:
    """Seconds for ``off``/``0`` or a duration like ``90s``, ``5m``, ``1h30m``, ``24h``, or a
    bare number of seconds; :class:`ClientError` if it is not one or is out of range."""
    value = text.strip().lower()
    if value in ("off", "0", "none", "never"):
        return 0
    if value.isdigit():
        seconds = int(value)
    elif _WHOLE.fullmatch(value):
        seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(value))
    else:
        raise ClientError(
            f"{text!r} is not a timer: use off, or a duration such as 5s, 30s, 5m, 1h, 1h30m, 24h"
        )
    problem = timer_problem(seconds)
    if problem is not None:
        raise ClientError(
            f"{text!r} is out of range: a timer is off or {describe_timer(MIN_TIMER_S)}"
            f" to {describe_timer(MAX_TIMER_S)}"
        )
    return seconds


def describe_timer(seconds: int) -> str:
    """``off``, ``5 seconds``, ``1 hour``, ``1 hour 30 minutes``..."""
    if seconds <= 0:
        return "off"
    parts = []
    for name, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}" + ("s" if count != 1 else ""))
    return " ".join(parts)


def short_duration(ms: int) -> str:
    """A countdown: ``4s``, ``2m05s``, ``1h02m`` (never negative)."""
    total = max(0, (ms + 999) // 1000)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"
