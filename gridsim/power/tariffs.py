"""Time-of-use (TOU) tariff shapes: 24 hourly price multipliers per schedule.

``tou.csv`` gives each schedule's band and price ratio to the flat band for each hour (hour 0 =
00:00-01:00 China time). `tou_multipliers` divides the ratios by their day mean, so the
multipliers average exactly 1: a node's catalogue price is read as its day-average price under
a flat load, and the hourly price is that price times the hour's multiplier. A flat load thus
pays the catalogue price; a load that shifts into valley hours pays less.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from functools import cache
from importlib import resources

import numpy as np

BANDS = ("valley", "flat", "peak", "critical")


@cache
def _schedules() -> Mapping[str, tuple[tuple[str, ...], tuple[float, ...]]]:
    text = (resources.files("gridsim.catalog") / "data" / "tou.csv").read_text(encoding="utf-8")
    hours: dict[str, dict[int, tuple[str, float]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        band, ratio = row["band"], float(row["ratio_to_flat"])
        if band not in BANDS:
            raise ValueError(f"tou.csv: schedule {row['schedule']!r}: unknown band {band!r}")
        if ratio <= 0:
            raise ValueError(f"tou.csv: schedule {row['schedule']!r}: ratio {ratio} <= 0")
        hours.setdefault(row["schedule"], {})[int(row["hour"])] = (band, ratio)
    table: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {}
    for schedule, by_hour in hours.items():
        if sorted(by_hour) != list(range(24)):
            raise ValueError(f"tou.csv: schedule {schedule!r} does not list hours 0..23 once")
        table[schedule] = (
            tuple(by_hour[h][0] for h in range(24)),
            tuple(by_hour[h][1] for h in range(24)),
        )
    return table


def _schedule(schedule: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    table = _schedules()
    try:
        return table[schedule]
    except KeyError:
        raise KeyError(f"unknown TOU schedule {schedule!r}; known: {sorted(table)}") from None


def tou_multipliers(schedule: str) -> np.ndarray:
    """24 price multipliers (hour 0 = 00:00-01:00 China time) whose mean is exactly 1."""
    ratios = np.asarray(_schedule(schedule)[1], dtype=float)
    return ratios / ratios.mean()


def tou_bands(schedule: str) -> tuple[str, ...]:
    """24 band labels: ``valley``, ``flat``, ``peak`` or ``critical``."""
    return _schedule(schedule)[0]
