"""The three policy latency targets, checked on a scenario's topology. Pure and cheap: no run.

China's 2023 Implementation Opinion on the national integrated computing network (status
reported by MIIT in June 2025) sets one-way network latency targets of 1 ms within a city (the
city's compute network), 5 ms from a cluster to its region (the regional network) and 20 ms
between the national hubs. They are three orders of magnitude below the requests' SLOs, so they
are checked on the graph, not simulated. Per region:

- city: the node in the same city (great circle within ``network.metro_km``; the lowest-latency
  one if several) is reached within 1 ms; None when the region has no node in its city;
- region: the nearest node is within 5 ms;
- hub: every pair of national clusters of different hubs present in the graph (as transit
  vertices or as nodes at cluster sites) is within 20 ms, and the region reaches a cluster
  within 20 ms.

``target_report`` gives the ``topology`` block of ``summary.json``; ``target_table`` the same
per region as a pandas table, with the nearest cluster; ``hub_pairs`` the cluster pairs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from gridsim.scenario.schema import Scenario
from gridsim.topology import Topology, build_topology, great_circle_km, shortest_latency_s, vertex

CITY_MS = 1.0
REGION_MS = 5.0
HUB_MS = 20.0
TARGETS_MS: dict[str, float] = {"city": CITY_MS, "region": REGION_MS, "hub": HUB_MS}
DEFAULT_METRO_KM = 50.0  # a graph built before network.metro_km existed


def _topology(source: Scenario | Topology) -> Topology:
    return source if isinstance(source, Topology) else build_topology(source)


def _clusters(topology: Topology) -> dict[str, tuple[str, str]]:
    """National cluster site id -> (its vertex, its hub id), in graph order: the transit vertex
    when the generator added one, else the first node at that site."""
    out: dict[str, tuple[str, str]] = {}
    for key, a in topology.graph.nodes(data=True):
        if a.get("site_kind") != "cluster" or a["role"] == "region":
            continue
        site = a["site"]
        if a["role"] == "hub" or site not in out:
            out[site] = (key, a["hub"] or site)
    return out


def hub_pairs(source: Scenario | Topology) -> pd.DataFrame:
    """Pairs of national clusters in different hubs: a, b (site ids), hub_a, hub_b,
    latency_ms (one way, shortest path; inf if cut off) and meets_hub, the slowest first."""
    topology = _topology(source)
    clusters = _clusters(topology)
    ids = list(clusters)
    keys = [clusters[c][0] for c in ids]
    ms = shortest_latency_s(topology.graph, keys, keys) * 1e3
    rows = [
        {
            "a": a,
            "b": b,
            "hub_a": clusters[a][1],
            "hub_b": clusters[b][1],
            "latency_ms": float(ms[i, j]),
        }
        for i, a in enumerate(ids)
        for j, b in enumerate(ids)
        if j > i and clusters[a][1] != clusters[b][1]
    ]
    frame = pd.DataFrame(rows, columns=["a", "b", "hub_a", "hub_b", "latency_ms"])
    frame["meets_hub"] = frame["latency_ms"] <= HUB_MS
    return frame.sort_values("latency_ms", ascending=False, kind="stable").reset_index(drop=True)


def target_table(source: Scenario | Topology) -> pd.DataFrame:
    """One row per region: region, nearest_node, nearest_ms, city_node, city_ms, meets_city
    (None without a node in the city), meets_region, hub_cluster (the nearest national
    cluster), hub_cluster_ms and meets_hub (all cluster pairs within 20 ms and hub_cluster_ms
    within 20 ms). Latencies are one way in ms; a region cut off has no nearest node."""
    topology = _topology(source)
    graph = topology.graph
    metro_km = float(graph.graph.get("metro_km", DEFAULT_METRO_KM))
    ms = topology.latency_s * 1e3
    # a node taken down (Topology.without_node) has left the graph: it is in no city
    nodes = [graph.nodes.get(vertex("node", n)) for n in topology.node_ids]
    clusters = _clusters(topology)
    cluster_ids = list(clusters)
    region_keys = [vertex("region", r) for r in topology.region_ids]
    to_cluster_ms = (
        shortest_latency_s(graph, region_keys, [clusters[c][0] for c in cluster_ids]) * 1e3
    )
    pairs_ok = bool(hub_pairs(topology)["meets_hub"].all())
    rows: list[dict[str, Any]] = []
    for i, region in enumerate(topology.region_ids):
        here = graph.nodes[region_keys[i]]
        row_ms = ms[i]
        j = int(np.argmin(row_ms)) if len(row_ms) else -1
        reached = j >= 0 and math.isfinite(row_ms[j])
        in_city = [
            k
            for k, a in enumerate(nodes)
            if a and great_circle_km(here["lat"], here["lon"], a["lat"], a["lon"]) <= metro_km
        ]
        # the city's best-connected node: a metro network serves the city from its nearest
        city = min(in_city, key=lambda k: row_ms[k]) if in_city else None
        city_ms = float(row_ms[city]) if city is not None else None
        if cluster_ids:
            c = int(np.argmin(to_cluster_ms[i]))
            hub_cluster, hub_ms = cluster_ids[c], float(to_cluster_ms[i, c])
        else:
            hub_cluster, hub_ms = None, math.inf
        rows.append(
            {
                "region": region,
                "nearest_node": topology.node_ids[j] if reached else None,
                "nearest_ms": float(row_ms[j]) if reached else math.inf,
                "city_node": topology.node_ids[city] if city is not None else None,
                "city_ms": city_ms,
                "meets_city": None if city_ms is None else city_ms <= CITY_MS,
                "meets_region": reached and float(row_ms[j]) <= REGION_MS,
                "hub_cluster": hub_cluster if math.isfinite(hub_ms) else None,
                "hub_cluster_ms": hub_ms,
                "meets_hub": pairs_ok and hub_ms <= HUB_MS,
            }
        )
    return pd.DataFrame(rows, columns=list(_COLUMNS))


_COLUMNS = (
    "region",
    "nearest_node",
    "nearest_ms",
    "city_node",
    "city_ms",
    "meets_city",
    "meets_region",
    "hub_cluster",
    "hub_cluster_ms",
    "meets_hub",
)
_REPORTED = (*_COLUMNS[1:7], "meets_hub")  # the summary.json contract's per-region keys


def _json_value(value: Any) -> Any:
    """None for a missing or infinite latency; plain Python bool and float for JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return bool(value)
    number = float(value)
    return number if math.isfinite(number) else None


def target_report(source: Scenario | Topology) -> dict[str, Any]:
    """The ``topology`` block of ``summary.json``: targets_ms, by_region (nearest_node,
    nearest_ms, city_node, city_ms, meets_city, meets_region, meets_hub), regions_meeting
    (regions meeting each target) and regions. Cheap: the graph only, no simulation."""
    table = target_table(source)
    by_region = {
        str(row["region"]): {key: _json_value(row[key]) for key in _REPORTED}
        for row in table.to_dict("records")
    }
    meeting = {
        name: sum(1 for r in by_region.values() if r[f"meets_{name}"] is True)
        for name in TARGETS_MS
    }
    return {
        "targets_ms": dict(TARGETS_MS),
        "by_region": by_region,
        "regions_meeting": meeting,
        "regions": len(by_region),
    }
