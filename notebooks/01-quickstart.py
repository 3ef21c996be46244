# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Quickstart: load, run, read the tables and figures
#
# The baseline scenario (`scenarios/baseline.yaml`) is China's national computing grid from
# March 2026: 140 trillion tokens a day from 31 provinces, growing +40 % a quarter, served by
# the 10 national clusters, 8 intelligent-computing centres and 12 supercomputing centres, at
# flow fidelity (15-minute ticks). This notebook loads it, runs it and walks through what a run
# returns: `summary` (the dict behind `summary.json`), the tidy `timeseries`, `flows` (served
# by class, region and pool) and `pools`, the economics tables and the report's figures.
#
# Set `GRIDSIM_QUICK=1` to run a four-day horizon instead of the full two months (the tests do).

# %%
import io
import os
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import Image, Markdown, display

import gridsim as gs
from gridsim import economics
from gridsim.report import write_report
from gridsim.report.figures import (
    plot_cost_energy,
    plot_demand_capacity,
    plot_latency,
    plot_map,
    plot_utilization,
)

QUICK = os.environ.get("GRIDSIM_QUICK", "") not in ("", "0")
# The project folder: this notebook runs from notebooks/ or from the project root.
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "scenarios").is_dir())
SCENARIOS = ROOT / "scenarios"
pd.set_option("display.width", 140, "display.max_columns", 20)
print(f"gridsim {gs.__version__}; scenarios in {SCENARIOS}; quick mode: {QUICK}")


def show(figure):
    """Display a matplotlib Figure (gridsim's figures use no pyplot state) as a PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    display(Image(buffer.getvalue()))


# %% [markdown]
# ## Load
# `load_scenario` reads the YAML (with `extends:`), applies named `overrides` and `--set`-style
# `sets`, and validates everything at once. A bad value raises `gs.ScenarioError` with the file,
# line and dotted path of every problem.

# %%
# quick mode: four days, enough for the central case's first shortfall
sets = ["horizon.duration=4d"] if QUICK else []
scenario = gs.load_scenario(SCENARIOS / "baseline.yaml", sets=sets)
print(scenario.description)
print(
    f"\n{len(scenario.regions)} regions, {len(scenario.nodes)} nodes, "
    f"{sum(len(n.pools) for n in scenario.nodes)} pools; "
    f"horizon {scenario.horizon.duration / 86400:g} days from {scenario.horizon.start} "
    f"at {scenario.horizon.resolution / 60:g}-min ticks; policy {scenario.policy.name}"
)
classes = pd.DataFrame(
    [
        {
            "class": c.name,
            "kind": c.kind,
            "share": c.share,
            "model": c.model,
            "mean input": getattr(c.input_tokens, "mean", None),
            "mean output": getattr(c.output_tokens, "mean", None),
            "arrival": c.arrival.process,
            "TTFT SLO s": c.slo.ttft,
            "e2e SLO s": c.slo.e2e,
            "sensitivity": c.latency_sensitivity,
        }
        for c in scenario.demand.classes
    ]
).set_index("class")
display(classes)

# %%
try:
    gs.load_scenario(SCENARIOS / "baseline.yaml", sets=["nodes[guian].pue=0.9"])
except gs.ScenarioError as problem:
    print(problem)

# %% [markdown]
# ## Run
# `gs.run` picks the engine from `fidelity` (flow here) and returns a `Result`; the same
# scenario and seed always give the same result.

# %%
result = gs.run(scenario)
s = result.summary
print(result)
print(f"wall time {result.manifest['wall_time_s']} s")
headline = {
    "tokens/day demanded (national, mean)": s["economics"]["national_tokens_per_day"],
    "SLA attainment": s["sla_attainment"],
    "latency p50 / p95 (s)": (s["latency_s"]["p50"], s["latency_s"]["p95"]),
    "utilisation mean / peak": (s["utilization"]["mean"], s["utilization"]["peak"]),
    "capacity shortfall (model short first)": (
        s["capacity"].get("shortfall_at"),
        s["capacity"].get("shortfall_model"),
    ),
    "headroom mean / min (all slots, not the shortfall)": (
        s["capacity"]["headroom"]["mean"],
        s["capacity"]["headroom"]["min"],
    ),
    "cost / revenue, CNY per M tokens": (
        s["economics"]["cost_cny_per_m_tokens"],
        s["economics"]["revenue_cny_per_m_tokens"],
    ),
    "energy MWh/day, carbon t/day": (
        s["economics"]["national_energy_kwh_per_day"] / 1e3,
        s["economics"]["national_carbon_t_per_day"],
    ),
}
pd.Series(headline, name="baseline").to_frame()

# %% [markdown]
# ## The summary by class, region and node
# `summary["by_class"]`, `["by_region"]` and `["by_node"]` hold the same figures as the
# totals. Flatten them with pandas.

# %%
by_class = pd.DataFrame(
    {
        name: {
            "arrived": b["requests"]["arrived"],
            "dropped": b["requests"]["dropped"],
            "SLA": b["sla_attainment"],
            "latency p50 s": b["latency_s"]["p50"],
            "latency p95 s": b["latency_s"]["p95"],
            "TTFT p95 s": b["ttft_s"]["p95"],
        }
        for name, b in s["by_class"].items()
    }
).T
display(by_class)

# %%
by_node = pd.DataFrame(
    {
        n: {"util mean": b["utilization"]["mean"], "util peak": b["utilization"]["peak"]}
        for n, b in s["by_node"].items()
    }
).T
by_node.join(result.pools.groupby("node")["hub_role"].first()).sort_values(
    "util mean", ascending=False
).head(12)

# %% [markdown]
# The capacity block states its one shortfall definition and reads it per model and per hub,
# with the cards to add per hub and model (`gap`) to hold the SLO through the horizon:

# %%
cap = s["capacity"]
display(Markdown(f"**The shortfall.** {cap.get('definition')}"))
display(pd.DataFrame(cap.get("by_model", {})).T)
hubs = pd.DataFrame(cap.get("by_hub", {})).T.dropna(subset=["shortfall_at"])
display(hubs.sort_values("shortfall_at_s").head(10) if len(hubs) else "no hub runs short")
gap = pd.DataFrame(cap.get("gap", []))
gap.head(10) if len(gap) else "no capacity gap in this horizon"

# %% [markdown]
# ## Tidy tables
# `timeseries` is long-form: one row per time, entity and metric. The flow engine adds
# national series (`entity_kind == "grid"`): demand and capacity in slots and tokens/s, and
# headroom.

# %%
ts = result.timeseries
print(ts.groupby(["entity_kind", "metric"]).size().to_string())
grid = ts[ts["entity_kind"] == "grid"].pivot_table(index="time_s", columns="metric", values="value")
grid.index = pd.Timestamp(scenario.horizon.start) + pd.to_timedelta(grid.index, unit="s")
daily = grid.resample("1D").agg({"demand_tokens_per_s": "max", "headroom": "min"})
daily.head(10)

# %%
flows = result.flows.assign(tokens=lambda f: f["input_tokens"] + f["output_tokens"])
flows.groupby(["region", "node"])["tokens"].sum().sort_values(ascending=False).head(10)

# %%
result.pools[
    [
        "pool",
        "node_kind",
        "model",
        "accelerator",
        "replicas",
        "slots",
        "pue",
        "price_cny_per_kwh",
        "carbon_g_per_kwh",
        "hub_role",
    ]
].head(10)

# %% [markdown]
# ## Economics
# `gridsim.economics` turns the run into energy, cost, revenue and carbon, by pool, node, node
# kind, region or class (simulated totals; `national_per_day` scales them to a national day).
# Grouping the node table by hub role gives the East-Data-West-Computing picture.

# %%
per_day = economics.national_per_day(result)
nodes = economics.economics_by(result, "node").set_index("node")
nodes = nodes.join(result.pools.groupby("node")["hub_role"].first())
nodes["hub_role"] = nodes["hub_role"].replace("", "other")
sums = nodes.groupby("hub_role")[
    ["tokens", "energy_kwh", "electricity_cny", "cost_cny", "carbon_kg"]
].sum()
east_west = pd.DataFrame(
    {
        "tokens/day (trillion)": sums["tokens"] * per_day / 1e12,
        "energy MWh/day": sums["energy_kwh"] * per_day / 1e3,
        "electricity CNY per M tokens": sums["electricity_cny"] / sums["tokens"] * 1e6,
        "cost CNY per M tokens": sums["cost_cny"] / sums["tokens"] * 1e6,
        "carbon g per k tokens": sums["carbon_kg"] / sums["tokens"] * 1e6,
    }
)
display(east_west)

# %% [markdown]
# ## Figures
# The report's figures are plain matplotlib `Figure` objects (`gridsim.report.figures`);
# `gridsim run` saves them and embeds them in `report.html`.

# %%
for plot in (plot_demand_capacity, plot_utilization, plot_latency, plot_cost_energy, plot_map):
    figure = plot(result)
    if figure is not None:
        show(figure)

# %% [markdown]
# ## One shortfall, everywhere
# The summary, the figure's dashed line and the report's card all read the one definition in
# `summary["capacity"]`; this cell checks that they say the same.

# %%
cap = result.summary["capacity"]
figure = plot_demand_capacity(result)
lines = [ln for ln in figure.axes[0].get_lines() if ln.get_gid() == "shortfall"]
with tempfile.TemporaryDirectory() as folder:
    page = write_report(result, Path(folder) / "report.html", []).read_text("utf-8")
if cap["shortfall_at"] is None:
    assert not lines and "none within the horizon" in page
    display(Markdown("No model runs short within the horizon: no line, and the card says so."))
else:
    day = cap["shortfall_at"][:10]
    line_day = pd.Timestamp(lines[0].get_xdata()[0]).strftime("%Y-%m-%d")
    assert line_day == day, (line_day, day)
    assert f"demand outgrows capacity from {day}" in page
    display(
        Markdown(
            f"summary.json, the figure's line and the report's card agree: {day} "
            f"({cap['shortfall_model']} first)."
        )
    )

# %% [markdown]
# From the command line the same run, with its report, is
# `gridsim run scenarios/baseline.yaml` (results in `results/baseline/<run id>/report.html`).
