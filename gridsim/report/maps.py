"""Maps: a run's nodes, demand and flows (``plot_map``, in the report), and a scenario's network
before any run (``plot_topology``, for ``gridsim topology``). Longitude and latitude axes, with
the aspect that keeps kilometres true at the middle latitude."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from gridsim import economics
from gridsim.report.style import KIND_STYLE, OTHER_KIND, new_figure
from gridsim.run import Result
from gridsim.topology import Topology, places

_REGION: dict[str, Any] = {"c": "tab:cyan", "alpha": 0.45, "edgecolors": "teal", "zorder": 2}
_NODE: dict[str, Any] = {"edgecolors": "k", "linewidths": 0.6, "zorder": 4}
_LABEL: dict[str, Any] = {
    "fontsize": 7,
    "zorder": 5,
    "bbox": {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.6},
}
# The topology map draws regions as rings and smaller nodes: it shows places, not load.
_TOPOLOGY_REGION: dict[str, Any] = {
    "facecolors": "none",
    "edgecolors": "tab:green",
    "linewidths": 1.2,
    "zorder": 2,
}
_TOPOLOGY_NODE: dict[str, Any] = {"s": 45, "edgecolors": "k", "linewidths": 0.4, "zorder": 4}


def plot_map(result: Result) -> Figure | None:
    """Nodes by kind (area: national IT power), demand regions (area: tokens demanded) and
    flows from regions to nodes as lines (width: tokens; jobs dashed, by requests)."""
    try:
        region_xy = {p.id: (p.lon, p.lat) for p in places(result.scenario) if p.role == "region"}
    except Exception:  # a scenario that no longer resolves: map the nodes only
        region_xy = {}
    pools = result.pools
    if pools.empty:
        return None
    node_xy = pools.groupby("node")[["lon", "lat"]].first()
    fig = new_figure(9.5, 7.5)
    ax = fig.add_subplot()
    flows = result.flows
    if not flows.empty and region_xy:
        _draw_flows(ax, flows, region_xy, node_xy)
    by_region = result.summary.get("by_region", {})
    demand = {
        r: sum(
            ((b.get("tokens") or {}).get(k) or {}).get("demanded") or 0 for k in ("input", "output")
        )
        for r, b in by_region.items()
    }
    if region_xy:
        ids = list(region_xy)
        w = np.array([demand.get(r, 0.0) for r in ids], dtype=float)
        size = 20 + 500 * w / w.max() if w.max() > 0 else np.full(len(ids), 40.0)
        xy = np.array([region_xy[r] for r in ids])
        ax.scatter(xy[:, 0], xy[:, 1], s=size, label="demand region (area: tokens)", **_REGION)
    power = economics.economics_by(result, "node").set_index("node")["it_power_kw"]
    national_mw = power / 1e3 * economics.national_scale(result)
    top = float(national_mw.max()) if len(national_mw) else 0.0
    kinds = pools.groupby("node")["node_kind"].first()
    for kind in sorted(kinds.unique()):
        marker, colour, label = KIND_STYLE.get(kind, (*OTHER_KIND, kind))
        nodes = kinds.index[kinds == kind]
        mw = national_mw.reindex(nodes).fillna(0.0).to_numpy()
        size = 40 + 400 * mw / top if top > 0 else 60
        lon, lat = node_xy.loc[nodes, "lon"], node_xy.loc[nodes, "lat"]
        ax.scatter(lon, lat, s=size, marker=marker, c=colour, label=f"node: {label}", **_NODE)
    _label_nodes(ax, node_xy)
    lats = list(node_xy["lat"]) + [y for _, y in region_xy.values()]
    ax.set_aspect(1 / max(0.2, math.cos(math.radians(float(np.mean(lats))))))
    ax.set_xlabel("longitude (deg)")
    ax.set_ylabel("latitude (deg)")
    ax.set_title(f"Nodes (area: national IT power, max {top:,.0f} MW), demand and flows")
    ax.grid(alpha=0.2)
    ax.legend(loc="lower left", fontsize="small", markerscale=0.6)
    return fig


def _draw_flows(
    ax: Axes, flows: pd.DataFrame, region_xy: dict[str, tuple[float, float]], node_xy: pd.DataFrame
) -> None:
    """Region-to-node lines; the smallest flows that together carry under 5 % are left out."""
    f = flows.assign(tokens=flows["input_tokens"] + flows["output_tokens"])
    for jobs, weight_col, style, colour, label in (
        (False, "tokens", "solid", "0.35", "flow region→node (width: tokens)"),
        (True, "requests", "dashed", "tab:purple", "job flow (width: jobs)"),
    ):
        rows = f[(f["tokens"] == 0) if jobs else (f["tokens"] > 0)]
        part: pd.DataFrame = rows.groupby(["region", "node"], as_index=False)[[weight_col]].sum()
        part = part[part["region"].isin(region_xy) & part["node"].isin(node_xy.index)]
        if part.empty:
            continue
        part = part.sort_values(weight_col, ascending=False)
        w = part[weight_col].to_numpy(dtype=float)
        keep = np.cumsum(w) <= 0.95 * w.sum()
        keep[0] = True
        part, w = part[keep], w[keep]
        segs = [
            [region_xy[r], (node_xy.loc[n, "lon"], node_xy.loc[n, "lat"])]
            for r, n in zip(part["region"], part["node"], strict=True)
        ]
        widths = 0.4 + 4.0 * w / w.max()
        lines = LineCollection(segs, linewidths=widths, colors=colour, linestyles=style)
        lines.set(alpha=0.45, zorder=1, label=label)
        ax.add_collection(lines)


def _label_nodes(ax: Axes, node_xy: pd.DataFrame) -> None:
    """Node names beside their markers, stacked where nodes share a city."""
    placed: list[tuple[float, float]] = []
    for n, (lon, lat) in node_xy.sort_values("lat", ascending=False).iterrows():
        near = sum(abs(lon - x) < 1.5 and abs(lat - y) < 0.8 for x, y in placed)
        placed.append((lon, lat))
        offset = (7, 2 - 9 * near)
        ax.annotate(str(n), (lon, lat), xytext=offset, textcoords="offset points", **_LABEL)


def plot_topology(
    topology: Topology,
    path: str | os.PathLike[str],
    region_shares: Mapping[str, float] | None = None,
) -> None:
    """Draw places on lon/lat: links, hubs, nodes by kind, regions sized by demand share."""
    g = topology.graph
    attrs = dict(g.nodes(data=True))
    fig = Figure(figsize=(9, 7))
    ax = fig.add_subplot()
    # metro and provincial links apart from the backbone: they are what meets the 1 ms and 5 ms
    # targets (links in one city have no length on the map; the legend still counts them)
    for local, colour, width, label in (
        (False, "0.6", 0.5, "backbone, spoke or explicit link"),
        (True, "tab:orange", 1.0, "metro or provincial link"),
    ):
        segments = [
            [(attrs[u]["lon"], attrs[u]["lat"]), (attrs[v]["lon"], attrs[v]["lat"])]
            for u, v, kind in g.edges(data="link")
            if (kind in ("metro", "regional")) == local
        ]
        if segments:
            lines = LineCollection(segments, colors=colour, linewidths=width, zorder=1)
            lines.set(label=f"{label} ({len(segments)})")
            ax.add_collection(lines)

    def draw(role: str, label: str, kind: str | None = None, **style: Any) -> None:
        mine = [a for a in attrs.values() if a["role"] == role and kind in (None, a["kind"])]
        if mine:
            lon, lat = [a["lon"] for a in mine], [a["lat"] for a in mine]
            ax.scatter(lon, lat, label=label, **style)

    given = region_shares or {}
    shares = np.array(
        [given.get(a["id"], a["share"] or 0.0) for a in attrs.values() if a["role"] == "region"]
    )
    top = shares.max(initial=0.0)
    size = 30 + 600 * shares / top if top > 0 else 60
    draw("region", "demand region (area: share)", s=size, **_TOPOLOGY_REGION)
    draw("hub", "national cluster (transit)", marker="s", s=70, c="0.2", zorder=3)
    for kind in sorted({a["kind"] for a in attrs.values() if a["role"] == "node"}):
        marker, colour = KIND_STYLE[kind][:2] if kind in KIND_STYLE else OTHER_KIND
        draw(
            "node",
            f"node: {kind.replace('_', ' ')}",
            kind,
            marker=marker,
            c=colour,
            **_TOPOLOGY_NODE,
        )
    mean_lat = float(np.mean([a["lat"] for a in attrs.values()])) if attrs else 0.0
    ax.set_aspect(1 / max(0.2, math.cos(math.radians(mean_lat))))  # km-true at mid-latitude
    ax.autoscale_view()
    ax.set_xlabel("longitude (deg)")
    ax.set_ylabel("latitude (deg)")
    name = g.graph.get("name", "")
    ax.set_title(f"Network {name}: {g.number_of_nodes()} places, {g.number_of_edges()} links")
    ax.legend(loc="best", fontsize="small")
    fig.savefig(path, dpi=150, bbox_inches="tight")
