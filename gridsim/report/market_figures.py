"""Figures of a run's token market (``summary["market"]``, ``gridsim.market.outputs``).

Each ``plot_*`` returns a Figure, or None when the run has no market block (or nothing to
draw). Money is drawn as the summary holds it (simulated totals over the horizon, as the
report's tables); tokens per model over time are ``market.outputs.model_tokens_over_time``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gridsim.market.outputs import OTHERS, model_tokens_over_time
from gridsim.report.style import new_figure, time_axis
from gridsim.run import Result

TOP_MODELS = 8  # models drawn one by one in the stacked area; the rest are "others"
REVENUE_COLOURS = {  # revenue part -> (label, colour)
    "fees_cny": ("fees", "tab:blue"),
    "per_token_cny": ("per token", "tab:cyan"),
    "overage_cny": ("overage", "tab:purple"),
}
TIER_COLOURS = {"reserved": "tab:green", "paid": "tab:blue", "free": "tab:gray"}


def _market(result: Result) -> dict[str, Any] | None:
    market = result.summary.get("market")
    return market if isinstance(market, dict) else None


def plot_market_plans(result: Result) -> Figure | None:
    """Per plan: revenue (stacked: fees, per token, overage), cost, and margin (a marker)."""
    market = _market(result)
    plans = (market or {}).get("by_plan") or {}
    if not plans:
        return None
    names = list(plans)
    pos = np.arange(len(names))
    width = 0.38
    fig = new_figure(max(6.0, 1.3 * len(names) + 3), 4.6)
    ax = fig.add_subplot()
    scale, unit = _money_scale([abs(_f(p.get(k))) for p in plans.values() for k in
                                ("revenue_cny", "cost_cny", "margin_cny")])  # fmt: skip
    bottom = np.zeros(len(names))
    for part, (label, colour) in REVENUE_COLOURS.items():
        vals = np.array([_f(plans[n].get(part)) for n in names]) / scale
        if vals.any():
            ax.bar(pos - width / 2, vals, width, bottom=bottom, label=label, color=colour)
            bottom += vals
    cost = np.array([_f(plans[n].get("cost_cny")) for n in names]) / scale
    ax.bar(pos + width / 2, cost, width, label="cost", color="tab:orange")
    margin = np.array([_f(plans[n].get("margin_cny")) for n in names]) / scale
    ax.scatter(pos, margin, marker="D", s=40, c="k", label="margin", zorder=3)
    ax.axhline(0, color="k", lw=0.8)
    ax.margins(y=0.12)  # room above the tallest bar for the legend
    ax.set_xticks(pos, names, rotation=20 if len(names) > 4 else 0, ha="right", fontsize=9)
    ax.set_ylabel(f"{unit} over the horizon")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small", ncols=3)
    ax.set_title("Revenue, cost and margin by plan")
    return fig


def plot_market_tokens(result: Result) -> Figure | None:
    """Served tokens per model over time, stacked: the top models by tokens, then others."""
    if _market(result) is None:
        return None
    table = model_tokens_over_time(result)
    if table.empty:
        return None
    # tokens per interval -> tokens/s (the last interval may be shorter)
    table = table.assign(rate=table["served_tokens"] / table["interval_s"])
    wide = table.pivot_table(index="time_s", columns="model", values="rate", aggfunc="sum")
    order = wide.sum().sort_values(ascending=False, kind="stable").index
    top = list(order[:TOP_MODELS])
    rest = list(order[TOP_MODELS:])
    series = {m: wide[m].to_numpy(dtype=float) for m in top}
    if rest:
        series[f"{OTHERS} ({len(rest)})"] = wide[rest].sum(axis=1).to_numpy(dtype=float)
    times = wide.index.to_numpy(dtype=float)
    x, label = time_axis(result, times)
    fig = new_figure(10, 4.6)
    ax = fig.add_subplot()
    ax.stackplot(x, *series.values(), labels=list(series), alpha=0.85, step="post")
    ax.set_xlabel(label)
    ax.set_ylabel("served tokens/s (simulated)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", ncols=2)
    ax.set_title("Tokens served per model over time (estimated from the demand rates)")
    return fig


def plot_market_tiers(result: Result) -> Figure | None:
    """Per tier: the share of its requests shed (dropped or abandoned) and its SLA
    attainment."""
    market = _market(result)
    tiers = (market or {}).get("by_tier") or {}
    if not tiers:
        return None
    names = list(tiers)
    pos = np.arange(len(names))
    colours = [TIER_COLOURS.get(n, "tab:red") for n in names]
    fig = new_figure(9, 3.8)
    for i, (key, title) in enumerate(
        (("shed_share", "Requests shed (share of arrivals)"), ("sla_attainment", "SLA attainment"))
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        vals = np.array([_f(tiers[n].get(key)) * 100.0 for n in names])
        ax.bar(pos, vals, color=colours)
        for p, v in zip(pos, vals, strict=True):
            ax.annotate(f"{v:.1f} %", (p, v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(pos, names)
        ax.set_ylim(0, max(100.0 if key == "sla_attainment" else 1.0, float(vals.max()) * 1.15))
        ax.set_ylabel("%")
        ax.grid(alpha=0.3, axis="y")
        ax.set_title(title)
    fig.suptitle("Tiers: shedding and service (reserved first, free last)")
    return fig


def _f(v: Any) -> float:
    """A summary number, 0 for a missing one (None: undefined, drawn as nothing)."""
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def _money_scale(values: list[float]) -> tuple[float, str]:
    top = max(values, default=0.0)
    for size, unit in ((1e9, "billion CNY"), (1e6, "million CNY"), (1e3, "thousand CNY")):
        if top >= size:
            return size, unit
    return 1.0, "CNY"


PLOTS = {
    "market_plans": plot_market_plans,
    "market_tokens": plot_market_tokens,
    "market_tiers": plot_market_tiers,
}
CAPTIONS = {
    "market_plans": "Token market: revenue (fees, per token, overage), cost and margin by plan, "
    "over the horizon.",
    "market_tokens": "Token market: tokens served per model over time (each class's expected "
    "demand in the interval x its served share over the run), top models and others.",
    "market_tiers": "Token market: share of requests shed and SLA attainment by tier.",
}
