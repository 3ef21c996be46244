"""Figures of hour-by-hour power and training (``summary["training"]``, ``summary["power"]``).

- ``day_night``: the average day, hour by hour (China time): cards serving inference, cards
  training and cards idle, over the pools that serve LLMs (card equivalents: a busy slot is
  cards per replica / slots per replica of a card), and the cards the co-scheduling policy
  keeps for inference (the rest may train);
- ``carbon_week``: the first week hour by hour: carbon of serving and of training (kg CO2 an
  hour, stacked) and the grid's green share of the electricity drawn.

Each ``plot_*`` returns a Figure, or None when the run has neither block (or too little to
draw). Everything comes from the run's tables (``gridsim.economics.pool_intervals``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gridsim.economics import pool_intervals
from gridsim.report.style import new_figure
from gridsim.run import Result

HOUR_S = 3600.0
WEEK_H = 7 * 24


def _card_seconds(result: Result) -> pd.DataFrame | None:
    """Per hour of the horizon, over LLM pools: serving, training and up card-seconds."""
    ts = result.timeseries
    pools = result.pools
    if pools.empty or "accelerators_per_replica" not in pools:
        return None
    llm = pools[(pools["kind"] == "llm") & (pools["station_slots_per_replica"] > 0)]
    per_slot = llm["accelerators_per_replica"] / llm["station_slots_per_replica"]
    factor = dict(zip(llm["pool"], per_slot, strict=True))
    metrics = ["busy_slot_s", "capacity_slot_s", "training_card_s", "lendable_cards"]
    rows = ts[(ts["entity_kind"] == "pool") & ts["metric"].isin(metrics)]
    rows = rows[rows["entity_id"].isin(list(factor))]
    if rows.empty:
        return None
    # slots to cards; training card-seconds and lendable cards are cards already; lendable
    # cards (a level at each interval's start) become card-seconds over the interval
    interval = float(result.scenario.outputs.timeseries_interval)
    slots = rows["entity_id"].map(factor).to_numpy()
    scale = np.select(
        [rows["metric"] == "training_card_s", rows["metric"] == "lendable_cards"],
        [1.0, interval],
        slots,
    )
    frame = rows.assign(value=rows["value"].to_numpy() * scale, hour=rows["time_s"] // HOUR_S)
    wide = frame.pivot_table(index="hour", columns="metric", values="value", aggfunc="sum")
    return wide.reindex(columns=metrics, fill_value=0.0).fillna(0.0)


def plot_day_night(result: Result) -> Figure | None:
    """The average day: cards serving, training and idle by hour of day."""
    if "training" not in result.summary and "power" not in result.summary:
        return None
    wide = _card_seconds(result)
    if wide is None or len(wide) < 24:
        return None
    by_hour = wide.groupby(wide.index.to_numpy().astype(int) % 24).mean() / HOUR_S
    serving = by_hour["busy_slot_s"].to_numpy()
    training = by_hour["training_card_s"].to_numpy()
    idle = np.maximum(by_hour["capacity_slot_s"].to_numpy() - serving, 0.0)
    keeps = serving + training + idle - by_hour["lendable_cards"].to_numpy()
    hours = by_hour.index.to_numpy()
    fig = new_figure(9.0, 4.4)
    ax = fig.add_subplot()
    scale, unit = _scale(float((serving + training + idle).max()))
    ax.stackplot(
        hours,
        serving / scale,
        training / scale,
        idle / scale,
        labels=["serving inference", "training", "idle"],
        colors=["tab:blue", "tab:green", "#d9dee5"],
        step="post",
    )
    if "training" in result.summary:
        ax.step(hours, keeps / scale, where="post", color="k", lw=1.2, ls="--",
                label="inference keeps (the rest may train)")  # fmt: skip
    ax.set_xlim(0, 23)
    ax.set_xticks(range(0, 24, 3))
    ax.set_xlabel("hour of day (China time), mean over the horizon's days")
    ax.set_ylabel(f"cards ({unit})" if unit else "cards")
    ax.legend(loc="lower left", fontsize=9, ncols=2, framealpha=0.9)
    ax.grid(alpha=0.3)
    return fig


def plot_carbon_week(result: Result) -> Figure | None:
    """The first week: carbon of serving and training per hour, and the grid's green share."""
    if "power" not in result.summary:
        return None
    iv = pool_intervals(result)
    if iv.empty or "green_kwh" not in iv:
        return None
    iv = iv.assign(hour=(iv["time_s"] // HOUR_S).astype(int))
    iv = iv[iv["hour"] < WEEK_H]
    with np.errstate(invalid="ignore", divide="ignore"):
        part = np.nan_to_num(iv["training_kwh"] / iv["energy_kwh"])
    iv = iv.assign(train_kg=iv["carbon_kg"] * part, serve_kg=iv["carbon_kg"] * (1 - part))
    hourly = iv.groupby("hour")[["serve_kg", "train_kg", "energy_kwh", "green_kwh"]].sum()
    if len(hourly) < 2:
        return None
    x = hourly.index.to_numpy() / 24.0
    fig = new_figure(10.0, 4.6)
    ax = fig.add_subplot()
    tonnes = float((hourly["serve_kg"] + hourly["train_kg"]).max()) >= 1e3
    scale, unit = (1e3, "t CO2") if tonnes else (1.0, "kg CO2")
    ax.stackplot(
        x,
        hourly["serve_kg"] / scale,
        hourly["train_kg"] / scale,
        labels=["serving", "training"],
        colors=["tab:blue", "tab:green"],
        step="post",
    )
    ax.set_xlabel("days since the start")
    ax.set_ylabel(f"carbon, {unit} per hour")
    ax.grid(alpha=0.3)
    green = ax.twinx()
    share = hourly["green_kwh"] / hourly["energy_kwh"].where(hourly["energy_kwh"] > 0)
    green.plot(x, share.to_numpy() * 100, color="tab:olive", lw=1.2, label="green share")
    green.set_ylabel("green share of electricity (%)")
    green.set_ylim(0, 100)
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = green.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, loc="upper right", fontsize=9, ncols=3)
    return fig


def _scale(peak: float) -> tuple[float, str]:
    for factor, unit in ((1e6, "millions"), (1e3, "thousands")):
        if peak >= factor:
            return factor, unit
    return 1.0, ""


PLOTS: dict[str, Any] = {"day_night": plot_day_night, "carbon_week": plot_carbon_week}
CAPTIONS = {
    "day_night": "The average day: cards serving inference, training and idle by hour (China "
    "time), over the pools that serve LLMs.",
    "carbon_week": "The first week hour by hour: carbon of serving and of training (CO2 an "
    "hour) and the green share of the electricity drawn (own renewables and the grid's).",
}
