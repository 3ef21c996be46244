"""What gridsim's figures share: a blank ``Figure`` (no pyplot global state), the resolution
they are saved at, and the colours of node kinds and cost parts, so that a run's report, a
comparison of runs and a sweep look alike."""

from __future__ import annotations

from matplotlib.figure import Figure

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
