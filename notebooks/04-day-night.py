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
# # 04 · Day and night: training on the inference fleet, power hour by hour
#
# The baseline's first week (`scenarios/day-night.yaml`) with a national training programme on
# the cards inference leaves free. The questions: how many card-hours the fleet lends to
# training without breaking inference SLOs, what the programme does with them, and what
# training in the west, or in green or cheap hours, saves in electricity and carbon.
#
# | run | co-scheduling |
# |---|---|
# | `inference_first` | each pool keeps what its hour's peak needs at its SLO; the rest trains |
# | `east`, `west` | the same, with the jobs held to the eastern or the western hubs |
# | `carbon_aware` | jobs run in the greenest hours that still finish them by their deadline |
# | `price_aware` | ... in the cheapest (time-of-use) hours |
# | `day_night` | a share of every pool trains at night, whatever inference needs |
#
# `GRIDSIM_QUICK=1` runs two days instead of a week, and three of the runs.

# %%
import io
import os
from pathlib import Path

import pandas as pd
from IPython.display import Image, Markdown, display
from matplotlib.figure import Figure

import gridsim as gs
from gridsim.power.summary import green_by_hour, green_by_node
from gridsim.report.power_figures import plot_carbon_week, plot_day_night

QUICK = os.environ.get("GRIDSIM_QUICK", "") not in ("", "0")
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "scenarios").is_dir())
SCENARIO = ROOT / "scenarios" / "day-night.yaml"
SETS = ["outputs.figures=false"] + (["horizon.duration=2d"] if QUICK else [])
RUNS = ["inference_first", "east", "west", "carbon_aware", "price_aware", "day_night"]
if QUICK:
    RUNS = ["inference_first", "east", "west"]
pd.set_option("display.width", 160, "display.max_columns", 20)
print(f"quick mode: {QUICK}")


def show(figure: Figure | None) -> None:
    if figure is None:
        return
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    display(Image(buffer.getvalue()))


# %% [markdown]
# ## Run each co-scheduling choice
# Each run first simulates the week without training (the inference-only run the co-scheduler
# plans on and is compared with), then with it. `inference_first` is the scenario as written;
# the others are its named overrides (`gridsim run scenarios/day-night.yaml --scenario west`).

# %%
results = {}
for name in RUNS:
    overrides = [] if name == "inference_first" else [name]
    results[name] = gs.run(gs.load_scenario(SCENARIO, overrides, sets=SETS))
    print(f"{name:16s} {results[name].manifest['wall_time_s']:6.2f} s")


# %%
def training_view(result: gs.Result) -> dict:
    t = result.summary["training"]
    return {
        "available M card-h": t["card_hours_available"] / 1e6,
        "done M card-h": t["card_hours_done"] / 1e6,
        "lost M card-h": t["card_hours_lost"] / 1e6,
        "preemptions": t["preemptions"],
        "jobs finished": t["jobs_finished"],
        "utilisation": t["utilization"],
        "utilisation, inference only": t["utilization_inference_only"],
        "SLA attainment": result.summary["sla_attainment"],
        "SLA, inference only": t["sla_attainment_inference_only"],
        "CNY per card-h": t["electricity_cny_per_card_hour"],
        "kg CO2 per card-h done": t["carbon_kg"] / t["card_hours_done"],
        "green share": result.summary["power"]["green_share"],
    }


table = pd.DataFrame({name: training_view(r) for name, r in results.items()}).T
table.style.format("{:.4g}")

# %%
first = table.loc["inference_first"]
sla_gap_pp = abs(first["SLA attainment"] - first["SLA, inference only"]) * 100
display(
    Markdown(
        f"Under `inference_first` the fleet lends {first['available M card-h']:.1f} M card-hours "
        f"to training; the programme does {first['done M card-h']:.2f} M of work with them, "
        f"raising the lending pools' utilisation from {first['utilisation, inference only']:.1%} "
        f"to {first['utilisation']:.1%}, while inference SLA attainment moves by "
        f"{sla_gap_pp:.4f} points."
    )
)
east, west = table.loc["east"], table.loc["west"]
display(
    Markdown(
        f"Held to the western hubs, training costs {west['CNY per card-h']:.3f} CNY of "
        f"electricity per card-hour against {east['CNY per card-h']:.3f} in the east, and "
        f"emits {west['kg CO2 per card-h done']:.3f} kg CO2 per card-hour done against "
        f"{east['kg CO2 per card-h done']:.3f}; the west finishes {west['jobs finished']:.0f} "
        f"jobs, the east {east['jobs finished']:.0f}."
    )
)

# %% [markdown]
# ## The average day
# Cards serving inference, training and idle by hour of day (China time), and what inference
# keeps: the gap above the training band up to the dashed line is lent but unused.

# %%
show(plot_day_night(results["inference_first"]))

# %% [markdown]
# ## Carbon and green share, hour by hour
# The grid's carbon intensity follows its green share (solar at noon, wind at night); the
# figure stacks the carbon of serving and of training.

# %%
show(plot_carbon_week(results["inference_first"]))
hourly = green_by_hour(results["inference_first"])
hourly["hour of day"] = (hourly["time_s"] // 3600 % 24).astype(int)
by_hour = hourly.groupby("hour of day")[["energy_kwh", "green_kwh", "carbon_kg"]].sum()
by_hour["green share"] = by_hour["green_kwh"] / by_hour["energy_kwh"]
by_hour["g CO2 per kWh"] = by_hour["carbon_kg"] * 1e3 / by_hour["energy_kwh"]
by_hour[["green share", "g CO2 per kWh"]].T.style.format("{:.3g}")

# %% [markdown]
# ## Green share by site against the hubs' target

# %%
sites = green_by_node(results["inference_first"]).set_index("node")
target = results["inference_first"].summary["power"]["green_target_share"]
sites["meets target"] = sites["green_share"] >= target
sites.sort_values("green_share", ascending=False)[["energy_kwh", "green_share", "meets target"]]

# %%
meeting = sites.index[sites["meets target"]].tolist()
display(
    Markdown(
        f"{len(meeting)} of {len(sites)} sites reach the target of {target:.0%} green power "
        f"on location-based grid figures: {', '.join(meeting) or 'none'}."
    )
)

# %% [markdown]
# ## The jobs
# Where each job ran, when it finished and what preemption cost it.

# %%
jobs = pd.DataFrame(results["inference_first"].summary["training"]["jobs"]).T
jobs[["node", "card_hours_done", "card_hours_lost", "preemptions", "finished_at_s"]]
