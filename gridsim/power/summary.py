"""The ``power`` block of summary.json: green share by site against the scenario's target.

**Green share** of a site: its green electricity over its electricity, over the horizon: its
own renewables' output up to its draw (``power.onsite``) plus the grid's green share of the
rest, hour by hour (``gridsim.power.sites``), energy as ``gridsim.economics`` bills it
(serving and training). The national figure is the same over every site. A site **meets the
target** when its green share is at least ``power.green_target_share``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from gridsim.economics import DEFAULT, Assumptions, RunTables, pool_intervals


def green_by_node(result: RunTables, assumptions: Assumptions = DEFAULT) -> pd.DataFrame:
    """Per node: energy_kwh, green_kwh, onsite_kwh, carbon_kg and green_share."""
    iv = pool_intervals(result, assumptions)
    if "green_kwh" not in iv:
        raise ValueError("the scenario has no power: block, so no green share")
    node = result.pools.set_index("pool")["node"]
    iv = iv.assign(node=node.reindex(iv["pool"]).to_numpy())
    table = iv.groupby("node", sort=True)[["energy_kwh", "green_kwh", "onsite_kwh", "carbon_kg"]]
    out = table.sum()
    out["green_share"] = out["green_kwh"] / out["energy_kwh"].where(out["energy_kwh"] > 0)
    return out.reset_index()


def green_by_hour(
    result: RunTables, assumptions: Assumptions = DEFAULT, by_node: bool = False
) -> pd.DataFrame:
    """Per interval of the run's series (and per site with ``by_node``), summed over pools:
    energy_kwh, green_kwh, onsite_kwh, carbon_kg, training_kwh, and the green share."""
    iv = pool_intervals(result, assumptions)
    cols = ["energy_kwh", "green_kwh", "onsite_kwh", "carbon_kg", "training_kwh"]
    keys = ["time_s"]
    if by_node:
        node = result.pools.set_index("pool")["node"]
        iv = iv.assign(node=node.reindex(iv["pool"]).to_numpy())
        keys = ["node", "time_s"]
    out = iv.groupby(keys, sort=True)[[c for c in cols if c in iv]].sum().reset_index()
    if "green_kwh" in out:
        out["green_share"] = out["green_kwh"] / out["energy_kwh"].where(out["energy_kwh"] > 0)
    return out


def power_summary(result: RunTables, assumptions: Assumptions = DEFAULT) -> dict[str, Any]:
    """The power block (JSON-safe: None where undefined)."""
    power = result.scenario.power
    assert power is not None
    target = power.green_target_share
    nodes = green_by_node(result, assumptions)
    by_node: dict[str, Any] = {}
    for row in nodes.to_dict("records"):
        share = None if pd.isna(row["green_share"]) else float(row["green_share"])
        by_node[str(row["node"])] = {
            "energy_kwh": float(row["energy_kwh"]),
            "green_kwh": float(row["green_kwh"]),
            "onsite_kwh": float(row["onsite_kwh"]),
            "green_share": share,
            "meets_green_target": None if target is None or share is None else share >= target,
        }
    energy = float(nodes["energy_kwh"].sum())
    green = float(nodes["green_kwh"].sum())
    met = [v["meets_green_target"] for v in by_node.values() if v["meets_green_target"] is not None]
    return {
        "hourly": power.hourly,
        "green_target_share": target,
        "green_share": green / energy if energy > 0 else None,
        "onsite_kwh": float(nodes["onsite_kwh"].sum()),
        "sites_meeting_green_target": int(sum(met)) if target is not None else None,
        "by_node": by_node,
    }
