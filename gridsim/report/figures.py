"""Figures of one run (matplotlib ``Figure`` objects, Agg canvas, no pyplot global state).

Each ``plot_*`` function returns a Figure, or None when the run lacks what it needs;
``write_figures`` saves those that exist as PNGs. Money and energy are shown at national scale
per day (simulated totals scaled to the whole grid by ``economics.national_scale``), as
planners read them.
``plot_sweep`` draws a sweep's KPIs against its first axis.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gridsim import economics
from gridsim.report.maps import plot_map
from gridsim.report.market_figures import PLOTS as MARKET_PLOTS
from gridsim.report.power_figures import PLOTS as POWER_PLOTS
from gridsim.report.style import DPI, PARTS, new_figure, time_axis
from gridsim.run import Result

__all__ = [  # plot_map is drawn in maps.py and belongs to a run's figures too
    "PLOTS",
    "plot_cost_energy",
    "plot_demand_capacity",
    "plot_latency",
    "plot_map",
    "plot_sweep",
    "plot_utilization",
    "time_axis",
    "write_figures",
    "write_sweep_figure",
]


def _x_of_date(result: Result, iso: str) -> Any:
    day = dt.date.fromisoformat(str(iso)[:10])
    offset_s = (day - result.scenario.horizon.start).total_seconds()
    return time_axis(result, np.array([offset_s]))[0][0]


# --- demand and capacity -----------------------------------------------------------------


def plot_demand_capacity(result: Result) -> Figure | None:
    """Per model, the work arriving (demand) against its SLO capacity, in Erlangs: the flow
    engine's ``model`` series, the very numbers the shortfall is found from
    (``gridsim.engine.capacity.SHORTFALL_DEFINITION``), with the shortfall
    (``capacity.shortfall_at_s``) marked by a dashed line labelled with its date and model.
    Runs without them: the national grid series (tokens/s), else tokens served and
    available estimated from the pool busy and capacity series."""
    ts = result.timeseries
    grid = ts[ts["entity_kind"] == "grid"]
    models = ts[ts["entity_kind"] == "model"]
    fig = new_figure(10, 4.8)
    ax = fig.add_subplot()
    scale = economics.national_scale(result)
    unit = "tokens/s"
    if models["metric"].isin(["demand_erlangs", "slo_capacity_erlangs"]).any():
        title = "Demand against SLO capacity, by model"
        unit = "Erlangs (busy slots)"
        colours = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")
        for i, model in enumerate(sorted(models["entity_id"].unique())):
            colour = colours[i % len(colours)]
            rows = models[models["entity_id"] == model]
            for metric, label, style in (
                ("demand_erlangs", "demand", "-"),
                ("slo_capacity_erlangs", "SLO capacity", ":"),
            ):
                series = _grid_series(rows, metric)
                if series is not None:
                    x, _ = time_axis(result, series.index.to_numpy(dtype=float))
                    ax.plot(
                        x,
                        series.to_numpy() * scale,
                        label=f"{model} {label}",
                        color=colour,
                        ls=style,
                        lw=1.6,
                    )
    elif grid["metric"].isin(["demand_tokens_per_s", "capacity_tokens_per_s"]).any():
        title = "National demand against capacity"
        for metric, label, colour in (
            ("demand_tokens_per_s", "demand", "tab:red"),
            ("capacity_tokens_per_s", "capacity", "tab:blue"),
            ("served_tokens_per_s", "served", "tab:green"),
        ):
            series = _grid_series(grid, metric)
            if series is not None:
                x, _ = time_axis(result, series.index.to_numpy(dtype=float))
                ax.plot(x, series.to_numpy() * scale, label=label, color=colour, lw=1.6)
    else:
        title = "Tokens served against capacity (from pool busy time)"
        served, capacity = _served_and_capacity(result)
        if served.empty:
            return None
        x, _ = time_axis(result, served.index.to_numpy(dtype=float))
        ax.plot(x, capacity.to_numpy() * scale, label="capacity at the served token mix", lw=1.6)
        ax.plot(x, served.to_numpy() * scale, label="served", color="tab:green", lw=1.6)
    _, xlabel = time_axis(result, np.zeros(1))
    cap_kpis = result.summary.get("capacity") or {}
    shortfall = str(cap_kpis.get("shortfall_at") or "")[:10]
    if shortfall:
        at_s = cap_kpis.get("shortfall_at_s")
        at = time_axis(result, np.array([at_s]))[0][0] if at_s else _x_of_date(result, shortfall)
        ax.axvline(at, color="k", ls="--", lw=1.2, gid="shortfall")
        where: dict[str, Any] = {
            "xycoords": ("data", "axes fraction"),
            "textcoords": "offset points",
        }
        model = cap_kpis.get("shortfall_model")
        label = f"shortfall {shortfall}" + (f" ({model})" if model else "")
        ax.annotate(label, (at, 0.95), xytext=(4, 0), va="top", **where)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{unit}{_scale_axis(ax)}, national equivalent")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if unit == "tokens/s":
        ax.legend(loc="lower right")
    else:  # a pair of lines per model: beside the plot, where they hide no curve
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    return fig


def _scale_axis(ax: Axes) -> str:
    """Show y ticks in thousands/millions/billions/trillions; the unit suffix for the label."""
    from matplotlib.ticker import FuncFormatter

    top = max(abs(v) for v in ax.get_ylim())
    scales = [
        (w, z) for w, z in (("trillions", 1e12), ("billions", 1e9), ("millions", 1e6)) if top >= z
    ]
    if not scales:
        return ""
    word, size = scales[0]
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / size:g}"))
    return f" ({word})"


def _grid_series(grid: pd.DataFrame, metric: str) -> pd.Series[float] | None:
    rows = grid[grid["metric"] == metric]
    if rows.empty:
        return None
    national = rows[rows["entity_id"].isin(["national", "total", "(national)", "all"])]
    rows = national if not national.empty else rows
    return rows.groupby("time_s")["value"].sum().sort_index()


def _served_and_capacity(result: Result) -> tuple[pd.Series[float], pd.Series[float]]:
    """Tokens/s served and available per interval (economics.pool_intervals' estimates)."""
    per_pool = economics.pool_intervals(result)
    if per_pool.empty or not per_pool["tokens"].any():
        return pd.Series(dtype=float), pd.Series(dtype=float)
    sums = per_pool.groupby("time_s")[["tokens", "capacity_tokens"]].sum()
    times = sums.index.to_numpy(dtype=float)
    horizon_s = float(result.summary.get("horizon_s") or result.scenario.horizon.duration)
    # the series' own step: the flow engine may widen the one the scenario asks for
    interval = float(np.diff(times).min()) if len(times) > 1 else horizon_s
    width = np.minimum(times + interval, horizon_s) - times
    return sums["tokens"] / width, sums["capacity_tokens"] / width


# --- utilisation -----------------------------------------------------------------------------


def plot_utilization(result: Result) -> Figure | None:
    """Utilisation per node over time as a heatmap (grey: down)."""
    ts = result.timeseries
    rows = ts[(ts["entity_kind"] == "node") & (ts["metric"] == "utilization")]
    if rows.empty:
        return None
    table = rows.pivot_table(index="entity_id", columns="time_s", values="value", dropna=False)
    order = [n for n in dict.fromkeys(result.pools["node"]) if n in table.index]
    table = table.reindex(order + [n for n in table.index if n not in order])
    times = table.columns.to_numpy(dtype=float)
    fig = new_figure(10, max(3.0, 1.2 + 0.28 * len(table)))
    ax = fig.add_subplot()
    _, xlabel = time_axis(result, times)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    edges_s = np.append(times, times[-1] + step)
    xe, _ = time_axis(result, edges_s)
    cmap = _cmap()
    mesh = ax.pcolormesh(
        xe, np.arange(len(table) + 1), np.ma.masked_invalid(table.to_numpy()), cmap=cmap
    )
    mesh.set_clim(0, 1)
    ax.set_yticks(np.arange(len(table)) + 0.5, [str(n) for n in table.index], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title("Utilisation per node (busy slot-seconds / slot-seconds)")
    fig.colorbar(mesh, ax=ax, label="utilisation", fraction=0.04, pad=0.01)
    return fig


def _cmap() -> Any:
    from matplotlib import colormaps

    return colormaps["viridis"].with_extremes(bad="0.8")


# --- latency ----------------------------------------------------------------------------------


def plot_latency(result: Result) -> Figure | None:
    """End-to-end latency and TTFT by class with SLO lines: distributions from the request
    table when present, else p50/p95/p99 from the summary."""
    classes = [
        c for c in result.scenario.demand.classes if c.name in result.summary.get("by_class", {})
    ]
    if not classes:
        return None
    fig = new_figure(10, 4.6)
    axes = fig.subplots(1, 2, sharey=False)
    reqs = result.requests
    from_requests = not reqs.empty and "latency_s" in reqs
    for ax, metric, slo_key, title in (
        (axes[0], "latency_s", "e2e", "End-to-end latency"),
        (axes[1], "ttft_s", "ttft", "Time to first token (LLM classes)"),
    ):
        mine = classes if metric == "latency_s" else [c for c in classes if c.kind == "llm"]
        if not mine:  # e.g. only job classes: no first token to show
            ax.set_title(title)
            ax.text(0.5, 0.5, "no LLM classes", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        names = [c.name for c in mine]
        pos = np.arange(len(names))
        shown: list[float] = []
        if from_requests:
            data = [reqs.loc[reqs["class"] == n, metric].to_numpy(dtype=float) for n in names]
            data = [d[d > 0] if len(d) else np.array([np.nan]) for d in data]
            ax.boxplot(data, positions=pos, whis=(5, 95), showfliers=False, widths=0.5)
            shown += [float(np.nanpercentile(d, q)) for d in data for q in (5, 95) if d.size]
        else:
            keys = ("p50", "p95", "p99") if metric == "latency_s" else ("mean", "p95")
            for k, marker in zip(keys, ("o", "s", "^"), strict=False):
                vals = [(result.summary["by_class"][n].get(metric) or {}).get(k) for n in names]
                y = np.array([np.nan if v is None else v for v in vals], dtype=float)
                ax.scatter(pos, y, marker=marker, s=40, label=k, zorder=3)
                shown += list(y)
        for i, cls in enumerate(mine):
            slo = getattr(cls.slo, slo_key)
            if slo is not None:
                ax.hlines(slo, i - 0.35, i + 0.35, colors="tab:red", lw=2, zorder=4)
                shown.append(float(slo))
        ax.plot([], [], color="tab:red", lw=2, label="SLO")
        ax.set_title(title)
        ax.set_xticks(pos, names)
        _log_decades(ax, shown)
        ax.set_ylabel("seconds (log scale)")
        ax.grid(alpha=0.3, axis="y", which="both")
        ax.legend(fontsize="small", loc="upper left")
    if from_requests:
        fig.suptitle("Box: quartiles and median; whiskers: p5 to p95", fontsize="medium")
    return fig


def _log_decades(ax: Axes, values: list[float]) -> None:
    """Log y axis spanning whole decades around ``values``, ticks as plain numbers."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    v = np.array([x for x in values if np.isfinite(x) and x > 0])
    if not v.size:
        return  # nothing positive to show on a log scale: keep the linear one
    ax.set_yscale("log")
    if v.size:
        lo, hi = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max() * 1.5))
        ax.set_ylim(10.0**lo, 10.0 ** max(hi, lo + 1))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


# --- cost and energy --------------------------------------------------------------------------


def plot_cost_energy(result: Result) -> Figure | None:
    """Cost (stacked parts) and energy by node kind and by region, national per day."""
    kinds = economics.economics_by(result, "node_kind")
    regions = economics.economics_by(result, "region")
    if kinds.empty:
        return None
    scale = economics.national_per_day(result)
    regions = _top(regions, "cost_cny", 14)
    fig = new_figure(11, 7.5)
    grid = fig.add_gridspec(2, 2, width_ratios=(1, 2.2))
    panels = (
        (fig.add_subplot(grid[0, 0]), kinds, "node_kind", True),
        (fig.add_subplot(grid[0, 1]), regions, "region", True),
        (fig.add_subplot(grid[1, 0]), kinds, "node_kind", False),
        (fig.add_subplot(grid[1, 1]), regions, "region", False),
    )
    for ax, table, by, cost in panels:
        labels = [str(v).replace("_", " ") for v in table[by]]
        pos = np.arange(len(labels))
        if cost:
            bottom = np.zeros(len(labels))
            for col, name, colour in PARTS:
                vals = table[col].to_numpy(dtype=float) * scale / 1e6
                if vals.any():
                    ax.bar(pos, vals, bottom=bottom, label=name, color=colour)
                    bottom += vals
            revenue = table["revenue_cny"].to_numpy(dtype=float) * scale / 1e6
            if revenue.any():
                ax.scatter(pos, revenue, marker="_", s=900, c="k", lw=2, label="revenue", zorder=3)
            ax.set_ylabel("million CNY/day")
            ax.legend(fontsize="small", markerscale=0.4)
        else:
            ax.bar(pos, table["energy_kwh"] * scale / 1e3, color="tab:olive")
            ax.set_ylabel("energy (MWh/day)")
        ax.set_xticks(pos, labels, rotation=35 if by == "region" else 15, ha="right", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        what = "Cost and revenue" if cost else "Energy"
        ax.set_title(f"{what} by {'node kind' if by == 'node_kind' else 'region served'}")
    fig.suptitle("National equivalent per day (region: pool cost shared by served tokens)")
    return fig


def _top(table: pd.DataFrame, col: str, n: int) -> pd.DataFrame:
    table = table.sort_values(col, ascending=False)
    if len(table) <= n:
        return table
    head, rest = table.iloc[:n], table.iloc[n:]
    other = pd.DataFrame([rest.select_dtypes("number").sum()])
    other[table.columns[0]] = f"other ({len(rest)})"
    return pd.concat([head, other[table.columns]], ignore_index=True)


# --- sweep ------------------------------------------------------------------------------------


def plot_sweep(summary: pd.DataFrame, axes: list[str], title: str) -> Figure | None:
    """Each KPI against the first axis (one line per combination of the others), with its
    95 % band; None when there is no axis or nothing measured."""
    if not axes or summary.empty:
        return None
    kpis = list(dict.fromkeys(summary["kpi"]))
    ncols = min(3, len(kpis))
    nrows = math.ceil(len(kpis) / ncols)
    fig = new_figure(4.2 * ncols, 2.8 * nrows + 0.4)
    fig.suptitle(f"{title}: KPIs against {axes[0]} (mean, 95 % CI over seeds)")
    first, others = axes[0], axes[1:]
    numeric = summary[first].map(lambda v: isinstance(v, int | float)).all()
    categories = list(dict.fromkeys(summary[first]))
    for i, kpi in enumerate(kpis):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        data = summary[summary["kpi"] == kpi]
        groups = data.groupby(others, sort=False) if others else [((), data)]
        for key, group in groups:
            group = group.sort_values(first) if numeric else group
            x = group[first].to_numpy(float) if numeric else group[first].map(categories.index)
            label = ", ".join(f"{a}={v}" for a, v in zip(others, np.atleast_1d(key), strict=True))
            (line,) = ax.plot(x, group["mean"], marker="o", ms=3, label=label or None)
            low, high = group["ci95_low"].to_numpy(float), group["ci95_high"].to_numpy(float)
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, lw=0)
        if not numeric:
            ax.set_xticks(range(len(categories)), [str(c) for c in categories])
        ax.set_title(kpi, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if others and i == 0:
            ax.legend(fontsize=6)
    fig.supxlabel(first, fontsize=9)
    return fig


def write_sweep_figure(
    summary: pd.DataFrame, axes: list[str], title: str, out_dir: Path
) -> Path | None:
    """``plot_sweep`` saved as ``out_dir/sweep.png``; None when there is nothing to draw."""
    fig = plot_sweep(summary, axes, title)
    if fig is None:
        return None
    path = Path(out_dir) / "sweep.png"
    fig.savefig(path, dpi=DPI)
    return path


# --- all --------------------------------------------------------------------------------------

PLOTS = {
    "demand_capacity": plot_demand_capacity,
    "utilization": plot_utilization,
    "latency": plot_latency,
    "cost_energy": plot_cost_energy,
    "map": plot_map,
    **MARKET_PLOTS,  # token market runs only (summary["market"]); None otherwise
    **POWER_PLOTS,  # runs with training or power blocks only; None otherwise
}


def write_figures(result: Result, out_dir: Path) -> list[Path]:
    """Save each figure the run supports as ``out_dir/<name>.png``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in PLOTS.items():
        try:
            fig = plot(result)
        except (ValueError, IndexError, KeyError) as exc:
            # A figure the data cannot support must not cost the planner the run.
            warnings.warn(f"figure {name!r} skipped: {exc}", RuntimeWarning, stacklevel=2)
            continue
        if fig is None:
            continue
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=DPI)
        written.append(path)
    return written
