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
# # 05 · What to build, where and when
#
# `growth-continued.yaml` runs out of serving capacity within days. `gs.plan` answers the other
# half of the question: the least-cost build-outs that keep every class within its SLO and its
# latency budget, checked by simulating them, and what two rules of thumb would cost instead.
#
# `GRIDSIM_QUICK=1` plans the first quarter only.

# %%
import io
import os
from pathlib import Path

import pandas as pd
from IPython.display import Image, Markdown, display

import gridsim as gs
from gridsim.numbers import human_money_cny, human_percent
from gridsim.planner.outputs import builds_table, capacity_figure, comparison_table

QUICK = os.environ.get("GRIDSIM_QUICK", "") not in ("", "0")
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "scenarios").is_dir())
SCENARIO = ROOT / "scenarios" / "growth-continued.yaml"
SETS = ["horizon.duration=91d"] if QUICK else []
pd.set_option("display.width", 160, "display.max_columns", 20)
print(f"quick mode: {QUICK}")

# %% [markdown]
# ## Plan
# One call: the program (HiGHS), a simulation of its build-outs, and the naive plans, each
# simulated too. Progress goes to `say`.

# %%
outcome = gs.plan(SCENARIO, sets=SETS, workers=1, say=print)
problem, final = outcome.problem, outcome.final
print(f"{len(final.events)} build-outs; simulated SLO met: {final.check.met}")

# %% [markdown]
# ## The build-outs
# Cards added per node and period in service (replicas x cards per replica); job slots for the
# supercomputers are in `builds` too.

# %%
builds = builds_table(problem, final.solution)
cards = builds[builds["cards"] > 0].pivot_table(
    index="node", columns="period", values="cards", aggfunc="sum", fill_value=0
)
display(cards.loc[cards.sum(axis=1).sort_values(ascending=False).index])
buffer = io.BytesIO()
capacity_figure(builds, problem.periods.label).savefig(buffer, format="png", dpi=90)
display(Image(buffer.getvalue()))

# %% [markdown]
# ## Against the naive plans
# Each is sized and timed by the same program but placed by a rule; `no_latency_budget` is
# the least-cost plan with the latency budgets lifted, so its gap to the plan is what keeping
# interactive work near its users costs.

# %%
comparison = comparison_table(outcome).set_index("plan")
display(comparison[["cost_cny", "simulated_cost_cny", "cards_added", "slo_met"]])
best = comparison.loc["optimal", "simulated_cost_cny"]
lines = [
    f"- **{name}** costs {human_money_cny(row.simulated_cost_cny)} in simulation, "
    f"{human_percent(row.simulated_cost_cny / best - 1)} more than the plan"
    for name, row in comparison.drop(index="optimal").iterrows()
]
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Where the work goes
# The plan's routing at each period's peak hour: Erlangs per class and hub role (the east's
# demand hubs, the west's supply hubs, and the rest).

# %%
load = pd.DataFrame(
    [
        {
            "class": problem.classes[c],
            "hub_role": problem.units[u].hub_role or "other",
            "erlangs": erlangs,
        }
        for (u, c), erlangs in final.solution.load.items()
    ]
)
display(load.pivot_table(index="class", columns="hub_role", values="erlangs", aggfunc="sum"))
