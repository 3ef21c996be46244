"""Numbers for people: 3.65 T tokens, 213 M CNY, 94.1 %, 14.4 s.

A planner reads a report, a console table or a comparison, not a float: every number a person
sees goes through here so that the same quantity reads the same everywhere. Values are shown
to three significant figures (an integer below 1,000, a count, reads whole), scaled by powers
of 1,000 (k, M, G, T, P, E: the SI prefixes, so "T" is 10^12 and "G" 10^9, never the ambiguous
"B"); a missing or undefined value (None, NaN) reads "—" so that it cannot be mistaken for a
zero.

>>> human(3.651e12)
'3.65 T'
>>> human(2.13e8, "CNY")
'213 M CNY'
>>> human(0.9406, "%")
'94.1 %'
>>> human(7200, "s")
'2.0 h'
"""

from __future__ import annotations

import math
import numbers
from typing import Any

MISSING = "—"  # an em dash: None, NaN or a value that is not there
PREFIXES = ("", "k", "M", "G", "T", "P", "E", "Z", "Y")  # powers of 1,000
SIGNIFICANT = 3  # significant figures of a scaled value: 3.65 T, 36.5 T, 365 T
# Units that take an SI prefix glued on ("2.50 GWh", not "2.50 M kWh"): the unit as given ->
# (its base unit, the base units in one of it).
SI_UNITS: dict[str, tuple[str, float]] = {
    "Wh": ("Wh", 1.0),
    "kWh": ("Wh", 1e3),
    "MWh": ("Wh", 1e6),
    "W": ("W", 1.0),
    "kW": ("W", 1e3),
    "MW": ("W", 1e6),
    "t": ("t", 1.0),  # tonnes: 14.5 kt, 3.00 Mt
}
# Duration units, largest first: (name, seconds in one, largest count shown in it). A value
# is shown in the largest unit it fills at least once.
DURATIONS: tuple[tuple[str, float], ...] = (
    ("y", 365.0 * 86400.0),
    ("d", 86400.0),
    ("h", 3600.0),
    ("min", 60.0),
    ("s", 1.0),
)
YEAR_FROM_DAYS = 1000.0  # durations read in days below this many days (a 2-year horizon: 730 d)


def _number(value: Any) -> float | None:
    """``value`` as a float, None when it is missing or NaN; TypeError when it is no number."""
    if value is None:
        return None
    try:
        if isinstance(value, bool | str | bytes):  # float("3") and float(True) would pass
            raise TypeError
        x = float(value)  # int, float and numpy scalars
    except (TypeError, ValueError):
        raise TypeError(
            f"gridsim.numbers: cannot format {value!r} ({type(value).__name__}) as a number; "
            "pass an int, a float or None"
        ) from None
    return None if math.isnan(x) else x


def _significant(x: float, figures: int = SIGNIFICANT) -> str:
    """``x`` (0 < |x| < 1000 after rounding) to ``figures`` significant figures, trailing zeros
    kept: 3.65, 36.5, 365, 1.00."""
    exponent = math.floor(math.log10(abs(x)))
    decimals = max(0, figures - 1 - exponent)
    return f"{x:.{decimals}f}"


def _round_significant(x: float, figures: int = SIGNIFICANT) -> float:
    """``x`` rounded to ``figures`` significant figures (999.96 -> 1000.0)."""
    if x == 0:
        return 0.0
    exponent = math.floor(math.log10(abs(x)))
    return round(x, figures - 1 - exponent)


def _scaled(x: float, whole: bool = False) -> tuple[str, str]:
    """``x`` as (digits, prefix): 3.651e12 -> ("3.65", "T"); 999.96 -> ("1.00", "k").

    Below 1,000, three significant figures ("0.941", "2.00"), or the number itself when it is
    ``whole`` (a count: "42"); from 1,000 up, three significant figures and a prefix.
    """
    if math.isinf(x):
        return ("∞" if x > 0 else "-∞"), ""
    if x == 0:
        return "0", ""
    sign = "-" if x < 0 else ""
    a = abs(x)
    rounded = _round_significant(a)
    if rounded < 1000:
        if whole and a == int(a):
            return f"{sign}{int(a)}", ""
        # a tiny share (1.2e-7) is still three significant figures, in scientific notation
        return (f"{sign}{a:.2e}" if rounded < 1e-3 else f"{sign}{_significant(rounded)}"), ""
    tier = min(math.floor(math.log10(rounded) / 3), len(PREFIXES) - 1)
    mantissa = _round_significant(a / 1000.0**tier)
    if mantissa >= 1000 and tier < len(PREFIXES) - 1:  # 999.96 k rounds to 1.00 M
        tier += 1
        mantissa = _round_significant(a / 1000.0**tier)
    return f"{sign}{_significant(mantissa)}", PREFIXES[tier]


def human(value: Any, unit: str = "") -> str:
    """``value`` in ``unit`` for a person: "3.65 T", "213 M CNY", "14.4 s", "94.1 %".

    ``unit`` "%" takes a fraction (0.941 -> "94.1 %"), "s" a duration in seconds ("50 ms",
    "2.0 h"), "CNY" money; "Wh", "kWh", "MWh", "W", "kW", "MW" and "t" take a glued prefix
    ("2.50 GWh", "14.5 kt"); any other unit follows the scaled number ("3.65 T tokens"). None
    and NaN read "—".
    """
    if unit == "%":
        return human_percent(value)
    if unit == "s":
        return human_duration_s(value)
    x = _number(value)
    if x is None:
        return MISSING
    if unit in SI_UNITS:
        base, size = SI_UNITS[unit]
        digits, prefix = _scaled(x * size, isinstance(value, numbers.Integral))
        return f"{digits} {prefix}{base}"
    digits, prefix = _scaled(x, isinstance(value, numbers.Integral))
    text = f"{digits} {prefix}".rstrip()
    return f"{text} {unit}" if unit else text


def human_count(value: Any) -> str:
    """A count: whole below 1,000 ("412", a scaled estimate 412.7 -> "413"), else scaled
    ("3.65 T")."""
    x = _number(value)
    if x is None:
        return MISSING
    if math.isfinite(x) and abs(_round_significant(x)) < 1000:
        return str(round(x))
    return human(x)


def human_money_cny(value: Any) -> str:
    """Yuan: "213 M CNY", "1.20 k CNY", "0.0412 CNY"."""
    return human(value, "CNY")


def human_percent(fraction: Any, digits: int = 1) -> str:
    """A fraction as a percentage: 0.9406 -> "94.1 %" (``digits`` decimals)."""
    x = _number(fraction)
    if x is None:
        return MISSING
    if math.isinf(x):
        return f"{'∞' if x > 0 else '-∞'} %"
    return f"{x * 100:.{digits}f} %"


def human_duration_s(seconds: Any) -> str:
    """A duration in seconds, in the largest unit it fills: 0.05 -> "50 ms", 14.4 -> "14.4 s",
    90 -> "1.5 min", 7200 -> "2.0 h", 3 days -> "3.0 d"; durations of 1,000 days or more read
    in years."""
    x = _number(seconds)
    if x is None:
        return MISSING
    if math.isinf(x):
        return f"{'∞' if x > 0 else '-∞'} s"
    if x == 0:
        return "0 s"
    sign = "-" if x < 0 else ""
    a = abs(x)
    if _round_significant(a) < 1:  # under a second: milliseconds, three significant figures
        ms = _round_significant(a * 1e3)
        return (
            f"{sign}{_scaled(ms, ms == int(ms))[0]} ms" if ms >= 1e-3 else f"{sign}{a * 1e3:.2e} ms"
        )
    for name, size in DURATIONS[:-1]:
        if name == "y" and a < YEAR_FROM_DAYS * 86400.0:
            continue
        count = round(a / size, 1)
        if count >= 1.0:  # the largest unit it fills once, rounded: 3599.9 s reads "1.0 h"
            return f"{sign}{count:.1f} {name}"
    return f"{sign}{_significant(_round_significant(a))} s"  # three significant figures
