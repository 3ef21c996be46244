"""Durations and dates as people write them (``30d``, ``5min``, ``2026-03``)."""

from __future__ import annotations

import datetime as dt
import math
import re

# Minutes are `min`, months `mo`: a bare `m` is ambiguous and is refused with that hint.
SECONDS_PER_UNIT: dict[str, float] = {
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "min": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 7 * 86400.0,
    "wk": 7 * 86400.0,
    "mo": 30.436875 * 86400.0,  # mean Gregorian month
    "y": 365.2425 * 86400.0,
    "yr": 365.2425 * 86400.0,
}
MAX_DURATION_YEARS = 1000  # far beyond any plan; bounds every time the engines compute
MAX_DURATION_S = MAX_DURATION_YEARS * SECONDS_PER_UNIT["y"]
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)\s*$")
DURATION_HELP = (
    "write a number with a unit, e.g. 250ms, 30s, 5min, 2h, 30d, 2y (a bare number is seconds)"
)


def parse_duration(value: object) -> float:
    """Seconds from ``5min``, ``30d``, ``1.5h`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; {DURATION_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; {DURATION_HELP}")
        number, suffix = match.groups()
        if suffix == "m":
            raise ValueError(
                f"{value!r} is not a duration: 'm' is ambiguous; use 'min' or 'mo' (months)"
            )
        if suffix and suffix not in SECONDS_PER_UNIT:
            units = ", ".join(SECONDS_PER_UNIT)
            raise ValueError(f"{value!r} is not a duration: unknown unit {suffix!r}; use {units}")
        seconds = float(number) * SECONDS_PER_UNIT.get(suffix or "s", 1.0)
    else:
        raise ValueError(f"{value!r} is not a duration; {DURATION_HELP}")
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a duration: it is not a finite number")
    if seconds < 0:
        raise ValueError(f"{value!r} is not a duration: it is negative")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is too long a duration; at most {MAX_DURATION_YEARS} years")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact human form of a duration, for resolved scenarios and reports."""
    for suffix in ("y", "d", "h", "min", "s", "ms", "us"):
        size = SECONDS_PER_UNIT[suffix]
        count = seconds / size
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{suffix}"
    return f"{seconds:g}s"


_MONTH = re.compile(r"^\s*(\d{4})-(\d{1,2})\s*$")


def parse_date(value: object) -> dt.date:
    """A date from ``2026-03-01``, ``2026-03`` (first of the month) or a YAML date."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        match = _MONTH.match(value)
        try:
            if match:
                return dt.date(int(match.group(1)), int(match.group(2)), 1)
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date; write YYYY-MM-DD or YYYY-MM, e.g. 2026-03-01")
