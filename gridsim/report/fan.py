"""The fan chart of a Monte Carlo (``gridsim run --draws N``): the SLO headroom of the
tightest model over time across draws (the P10-P90 and P25-P75 bands and the median, with the
central run), and under it the draws' shortfall dates as a histogram, those with none in the
horizon counted apart."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gridsim.report.style import DPI, new_figure

BANDS = ((10, 90, 0.18), (25, 75, 0.35))  # (low, high percentile, alpha): outer band first


def plot_fan(
    headroom: pd.DataFrame,
    shortfall_days: Sequence[float | None],
    start: dt.date,
    horizon_s: float,
    central: pd.DataFrame | None = None,
    title: str = "",
) -> Figure | None:
    """``headroom``: tidy (draw, time_s, value), the SLO headroom of the tightest model
    (1 - demand / SLO capacity; below 0 a model is short) per draw; ``shortfall_days``: each
    successful draw's shortfall in days from the start (None: none within the horizon). None
    when there is nothing to draw."""
    if headroom.empty:
        return None
    wide = headroom.pivot_table(index="time_s", columns="draw", values="value", aggfunc="first")
    times_s = wide.index.to_numpy(dtype=float)
    x = _dates(start, times_s)
    matrix = wide.to_numpy(dtype=float)
    fig = new_figure(10.0, 6.0)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    with np.errstate(all="ignore"):  # an hour no draw has a value for stays empty
        for low, high, alpha in BANDS:
            lo = np.nanpercentile(matrix, low, axis=1)
            hi = np.nanpercentile(matrix, high, axis=1)
            top.fill_between(
                x, lo, hi, color="tab:blue", alpha=alpha, lw=0, label=f"P{low}-P{high}"
            )
        top.plot(x, np.nanmedian(matrix, axis=1), color="tab:blue", lw=1.5, label="median")
    if central is not None and not central.empty:
        cx = _dates(start, central["time_s"].to_numpy(dtype=float))
        top.plot(cx, central["value"], color="black", lw=0.8, ls="--", label="central run")
    top.axhline(0.0, color="tab:red", lw=1.0)
    top.set_ylabel("SLO headroom, tightest model\n(1 - demand / SLO capacity)")
    top.set_title(title or f"headroom across {matrix.shape[1]} draws")
    top.legend(loc="lower left", fontsize="small", ncols=4)
    top.grid(alpha=0.3)

    finite = [float(d) for d in shortfall_days if d is not None and math.isfinite(d)]
    censored = len(shortfall_days) - len(finite)
    if finite:
        edges = _day_edges(finite, horizon_s)
        bottom.hist(
            _dates(start, np.asarray(finite) * 86400.0),
            bins=_dates(start, edges * 86400.0),
            color="tab:red",
            edgecolor="white",
        )
    bottom.set_ylabel("draws")
    bottom.set_xlabel("date")
    note = f"shortfall dates of {len(shortfall_days)} draws; {censored} with none by the horizon"
    bottom.set_title(note, fontsize="small", loc="left")
    bottom.set_xlim(x[0], _dates(start, np.array([horizon_s]))[0])
    return fig


def _dates(start: dt.date, times_s: np.ndarray) -> np.ndarray:
    """Seconds from the start as datetime64 values (matplotlib draws them as dates)."""
    base = np.datetime64(start, "s")
    return base + (np.asarray(times_s, dtype=float) * 1e3).astype("timedelta64[ms]")


def _day_edges(days: Sequence[float], horizon_s: float) -> np.ndarray:
    """Histogram bins over the horizon: an hour wide up to a week, a day up to 120 days,
    else a week (the shortfall is resolved to the hour)."""
    width = 1 / 24 if horizon_s <= 7 * 86400 else 1.0 if horizon_s <= 120 * 86400 else 7.0
    end = max(horizon_s / 86400.0, max(days))
    return np.arange(0.0, end + width, width)


def write_fan(
    headroom: pd.DataFrame,
    shortfall_days: Sequence[float | None],
    path: Path,
    start: dt.date,
    horizon_s: float,
    central: pd.DataFrame | None = None,
    title: str = "",
) -> Path | None:
    """Save the fan chart as ``path`` (PNG); None when there is nothing to draw."""
    fig = plot_fan(headroom, shortfall_days, start, horizon_s, central, title)
    if fig is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path
