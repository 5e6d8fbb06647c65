"""Durations in settings: `30s`, `5m`, `1h30m`, `24h`, `7d`, or a number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_MAX_SECONDS = 10 * 366 * 86400
"""Ten years: anything longer is a typo, and would overflow a timedelta long before 1e300."""
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    """Parse a duration.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration(90)
    datetime.timedelta(seconds=90)

    Raises:
        ValueError: not a duration.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s', '5m', '24h'")
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdecimal():
        value = float(value)  # "3600" from the environment: seconds, as in the file
    if isinstance(value, int | float):
        if not 0 <= value <= _MAX_SECONDS:
            raise ValueError(f"a duration must be between 0 and {_MAX_SECONDS} seconds")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '30s', '5m', '24h'")
    text = value.strip().replace(" ", "")
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"expected a duration such as '30s', '5m', '24h', got {value!r}")
    if total > _MAX_SECONDS:
        raise ValueError(f"a duration must be at most {_MAX_SECONDS} seconds, got {value!r}")
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """The shortest readable form.

    >>> format_duration(timedelta(hours=24)), format_duration(timedelta(seconds=90))
    ('1d', '1m30s')
    """
    millis = round(delta.total_seconds() * 1000)
    if millis == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if millis >= size:
            out.append(f"{millis // size}{unit}")
            millis %= size
    return "".join(out)
