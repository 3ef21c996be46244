"""What gridsim's figures share: a blank ``Figure`` (no pyplot global state), the resolution
they are saved at, the colours of node kinds and cost parts, and the time axis of a run's
series, so that a run's report, a comparison of runs and a sweep look alike."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gridsim.run import Result

DPI = 110  # saved resolution of report, comparison and sweep figures
KIND_STYLE = {  # node kind -> (marker, colour, label)
    "data_centre": ("o", "tab:blue", "data centre"),
    "supercomputer": ("^", "tab:purple", "supercomputer"),
    "intelligent_computing": ("D", "tab:red", "intelligent computing"),
}
OTHER_KIND = ("P", "tab:orange")  # marker and colour of a node kind not listed above
PARTS: tuple[tuple[str, str, str], ...] = (  # cost column, label, colour
    ("electricity_cny", "electricity", "tab:orange"),
    ("capex_cny", "capex", "tab:blue"),
    ("network_cny", "network", "tab:green"),
)


def new_figure(width: float = 10.0, height: float = 5.0) -> Figure:
    """A white, constrained-layout Figure of ``width`` x ``height`` inches."""
    fig = Figure(figsize=(width, height), layout="constrained")
    fig.set_facecolor("white")
    return fig


def time_axis(result: Result, times_s: np.ndarray[Any, Any]) -> tuple[Any, str]:
    """x values and axis label for simulated times: minutes, hours, or calendar dates."""
    horizon_s = float(result.summary.get("horizon_s") or result.scenario.horizon.duration)
    if horizon_s <= 3 * 3600:
        return times_s / 60.0, "time since start (min)"
    if horizon_s <= 3 * 86400:
        return times_s / 3600.0, "time since start (h)"
    start = np.datetime64(result.scenario.horizon.start, "s")
    return start + (times_s * 1e3).astype("timedelta64[ms]"), "date"
