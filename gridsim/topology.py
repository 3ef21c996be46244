"""Scenario -> network graph and region x node latency matrix. Pure: no SimPy, no randomness.

Graph vertices are strings ``"<role>:<id>"`` (``region:beijing``, ``node:guian``,
``hub:guian``): a region, a node and a national cluster may share an id, and ids cannot contain
``:``, so the prefix keeps them apart while the graph stays printable and sortable.

Link latency (one way) = great circle km x route factor x fibre us/km x 1e-6 + per hop ms x
1e-3, or an explicit link's ``latency_ms`` alone. Shortest paths use scipy's C Dijkstra from
the region vertices: for 31 regions + 50 nodes in a full mesh (3,240 links) about 8 ms against
53 ms for networkx's per-source Dijkstra (under 1 ms and 1-5 ms for k_nearest and
hub_and_spoke), which matters because link-cut and outage studies re-solve it often.

``hub_and_spoke`` meshes the national clusters, hangs every region and node off its nearest
cluster and (``network.local_links``) adds the metro and provincial links: region-node and
node-node pairs within ``network.metro_km`` or in one province. Every edge records its kind
(``link``: backbone, spoke, metro, regional, generated or explicit). The policy latency targets
are checked in ``gridsim.latency_targets``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import networkx as nx
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import csr_array
from scipy.sparse.csgraph import dijkstra

from gridsim.catalog import Catalog, Site
from gridsim.scenario.errors import Problem, ScenarioError
from gridsim.scenario.schema import Link, Network, Scenario

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
NATIONAL = "(national)"  # region label of the national line; ids cannot contain brackets
Role = Literal["region", "node", "hub"]
_ROLES: tuple[Role, ...] = ("node", "region", "hub")  # resolution order of a bare link name


@dataclass(frozen=True)
class Place:
    """A graph vertex: a demand region, a compute node, or a national cluster used as transit."""

    id: str
    role: Role
    lat: float
    lon: float
    kind: str  # node kind, "region" or "hub"
    hub: str = ""  # national hub id, if the catalogue site belongs to one
    hub_role: str = ""
    site: str = ""  # catalogue site id, if any
    province: str = ""  # the catalogue site's province: places in one province link locally
    site_kind: str = ""  # the catalogue site's kind ("cluster" for a national cluster)

    @property
    def key(self) -> str:
        return vertex(self.role, self.id)


def vertex(role: str, id_: str) -> str:
    """The graph vertex key of a place."""
    return f"{role}:{id_}"


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in km between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def great_circle_km_array(
    lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike
) -> NDArray[np.float64]:
    """Haversine distances in km, numpy-broadcast over the inputs (degrees)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlon = np.radians(np.asarray(lon2, dtype=float) - np.asarray(lon1, dtype=float))
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(h))), dtype=float)


def _site(catalog: Catalog, site_id: str | None) -> Site | None:
    entry = catalog.sites.get(site_id) if site_id else None
    return entry if isinstance(entry, Site) else None


def _clusters(catalog: Catalog) -> list[Site]:
    return [s for s in catalog.sites.values() if isinstance(s, Site) and s.kind == "cluster"]


def _hub_place(site: Site) -> Place:
    return Place(
        site.id,
        "hub",
        site.lat,
        site.lon,
        "hub",
        site.hub,
        site.hub_role,
        site.id,
        site.province,
        site.kind,
    )


def _place(
    id_: str, role: Role, kind: str, lat: float | None, lon: float | None, site: Site | None
) -> Place | None:
    """Inline lat/lon win over the catalogue site's; None if neither is given."""
    if lat is None or lon is None:
        if site is None:
            return None
        lat, lon = site.lat, site.lon
    if site is None:
        return Place(id_, role, lat, lon, kind)
    return Place(
        id_, role, lat, lon, kind, site.hub, site.hub_role, site.id, site.province, site.kind
    )


def _places(scenario: Scenario, catalog: Catalog, problems: list[Problem]) -> list[Place]:
    out: list[Place] = []
    for i, r in enumerate(scenario.regions):
        place = _place(r.id, "region", "region", r.lat, r.lon, _site(catalog, r.site or r.id))
        if place is None:
            msg = f"region {r.id!r} has no location: give site: <site id> or lat and lon"
            problems.append(Problem(("regions", i), msg))
        else:
            out.append(place)
    for i, n in enumerate(scenario.nodes):
        place = _place(n.id, "node", n.kind, n.lat, n.lon, _site(catalog, n.site))
        if place is None:
            msg = f"node {n.id!r}: site {n.site!r} is not in the catalogue; give lat and lon"
            problems.append(Problem(("nodes", i, "site"), msg))
        else:
            out.append(place)
    if scenario.network.generate == "hub_and_spoke":
        out += [_hub_place(s) for s in _clusters(catalog)]
    return out


def places(scenario: Scenario, catalog: Catalog | None = None) -> list[Place]:
    """Regions, nodes and (for hub_and_spoke) national cluster sites, in that order."""
    problems: list[Problem] = []
    out = _places(scenario, catalog or scenario.resolved_catalog, problems)
    if problems:
        raise ScenarioError(problems)
    return out


LinkKind = Literal["generated", "backbone", "spoke", "metro", "regional", "explicit"]


def _generated_pairs(net: Network, plist: Sequence[Place]) -> list[tuple[int, int, LinkKind]]:
    """Index pairs of generated links with their kind, in a fixed order."""
    n = len(plist)
    lat = np.array([p.lat for p in plist])
    lon = np.array([p.lon for p in plist])
    if net.generate == "full_mesh":
        return [(i, j, "generated") for i in range(n) for j in range(i + 1, n)]
    if net.generate == "k_nearest":  # a pair chosen from both ends is added twice: harmless
        km = great_circle_km_array(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
        np.fill_diagonal(km, np.inf)
        # stable sort: ties go to the earlier place, so the graph is reproducible
        near = np.argsort(km, axis=1, kind="stable")[:, : min(net.k, n - 1)]
        return [(i, int(j), "generated") for i in range(n) for j in near[i]]
    if net.generate != "hub_and_spoke":
        return []
    hubs = [i for i, p in enumerate(plist) if p.role == "hub"]
    spokes = [i for i, p in enumerate(plist) if p.role != "hub"]
    out: list[tuple[int, int, LinkKind]] = [
        (a, b, "backbone") for x, a in enumerate(hubs) for b in hubs[x + 1 :]
    ]
    if hubs:
        km = great_circle_km_array(lat[spokes, None], lon[spokes, None], lat[hubs], lon[hubs])
        by_site = {plist[h].id: h for h in hubs}
        for i, row in zip(spokes, km, strict=True):
            # a place at a cluster site uses that cluster as its gateway, even on a distance tie
            out.append((i, by_site.get(plist[i].site, hubs[int(np.argmin(row))]), "spoke"))
    if net.local_links:
        out += _local_pairs(net, plist, lat, lon)
    return out


def _local_pairs(
    net: Network, plist: Sequence[Place], lat: NDArray[np.float64], lon: NDArray[np.float64]
) -> list[tuple[int, int, LinkKind]]:
    """Metro and provincial links: region-node and node-node pairs in one city (within
    ``metro_km``) or one province. Without them every route climbs to a national cluster, so
    Zhengzhou reached the centre in its own city through a hub 550 km away (8.4 ms, not 0.1)."""
    nodes = [i for i, p in enumerate(plist) if p.role == "node"]
    ends = [i for i, p in enumerate(plist) if p.role in ("region", "node")]
    if not nodes:
        return []
    km = great_circle_km_array(lat[ends, None], lon[ends, None], lat[nodes], lon[nodes])
    out: list[tuple[int, int, LinkKind]] = []
    for i, row in zip(ends, km, strict=True):
        for j, d_km in zip(nodes, row.tolist(), strict=True):
            # node pairs once (i before j); a region links to every node
            if plist[i].role == "node" and j <= i:
                continue
            province = plist[i].province
            if d_km <= net.metro_km:
                out.append((i, j, "metro"))
            elif province and province == plist[j].province:
                out.append((i, j, "regional"))
    return out


def _edge(
    a: Place, b: Place, net: Network, link: Link | None = None, kind: LinkKind = "explicit"
) -> dict[str, Any]:
    """Edge attributes of a generated link (``link`` None, of ``kind``) or an explicit one."""
    km = great_circle_km(a.lat, a.lon, b.lat, b.lon)
    rf = link.route_factor if link and link.route_factor is not None else net.route_factor
    if link is not None and link.latency_ms is not None:
        latency_s = link.latency_ms * 1e-3
    else:
        latency_s = km * rf * net.fibre_us_per_km * 1e-6 + net.per_hop_ms * 1e-3
    bw = link.bandwidth_gbps if link else net.bandwidth_gbps
    return {
        "distance_km": km,
        "latency_s": latency_s,
        "bandwidth_gbps": bw,
        "explicit": bool(link),
        "link": "explicit" if link else kind,
    }


def _resolve(name: str, keys: Container[str]) -> str | None:
    """A place name's vertex: ``role:id`` as is, else a bare id as node, region, then cluster."""
    if ":" in name:
        return name if name in keys else None
    return next((vertex(r, name) for r in _ROLES if vertex(r, name) in keys), None)


def _add_link(
    graph: Any, i: int, link: Link, net: Network, known: Mapping[str, Place]
) -> list[Problem]:
    ends: list[Place] = []
    problems: list[Problem] = []
    for side, name in (("a", link.a), ("b", link.b)):
        key = _resolve(name, known)
        if key is not None:
            ends.append(known[key])
            continue
        names = sorted({k.split(":", 1)[1] for k in known})
        close = difflib.get_close_matches(name, names, n=2, cutoff=0.6)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        msg = (
            f"link end {name!r} names no region, node or national cluster site; {hint}"
            "(write role:id, e.g. hub:guian, to be explicit)"
        )
        problems.append(Problem(("network", "links", i, side), msg))
    if len(ends) == 2 and ends[0] == ends[1]:
        msg = f"link joins {link.a!r} to itself; name two different places"
        problems.append(Problem(("network", "links", i), msg))
    if problems:
        return problems
    for p in ends:
        if p.key not in graph:  # a cluster that generation did not add: transit on demand
            graph.add_node(p.key, **asdict(p), share=None)
    graph.add_edge(ends[0].key, ends[1].key, **_edge(ends[0], ends[1], net, link))
    return []


def _build(scenario: Scenario, catalog: Catalog | None) -> tuple[Topology, list[Problem]]:
    catalog = catalog or scenario.resolved_catalog
    problems: list[Problem] = []
    plist = _places(scenario, catalog, problems)
    net = scenario.network
    # metro_km travels with the graph: the 1 ms city target is checked on the same city radius
    graph = nx.Graph(name=scenario.name, metro_km=net.metro_km)
    shares = {r.id: r.share for r in scenario.regions}
    for p in plist:
        graph.add_node(p.key, **asdict(p), share=shares.get(p.id) if p.role == "region" else None)
    for i, j, kind in _generated_pairs(net, plist):
        graph.add_edge(plist[i].key, plist[j].key, **_edge(plist[i], plist[j], net, kind=kind))
    known = {p.key: p for p in [*(_hub_place(s) for s in _clusters(catalog)), *plist]}
    for i, link in enumerate(net.links):
        problems += _add_link(graph, i, link, net, known)
    regions = tuple(r.id for r in scenario.regions)
    nodes = tuple(n.id for n in scenario.nodes)
    return Topology.from_graph(graph, regions, nodes), problems


def build_topology(scenario: Scenario, catalog: Catalog | None = None) -> Topology:
    """The scenario's network graph and its region x node latency matrix.

    Raises ``ScenarioError`` for unlocatable places or links naming unknown places; an
    unreachable region is not an error here (see ``check_reachability``).
    """
    topology, problems = _build(scenario, catalog)
    if problems:
        raise ScenarioError(problems)
    return topology


def _latency_matrix(graph: Any) -> tuple[dict[str, int], csr_array]:
    """Vertex index and the sparse link-latency matrix (s), with two spare isolated vertices."""
    index = {v: i for i, v in enumerate(graph.nodes)}
    n = len(index)
    edges = [(index[u], index[v], w) for u, v, w in graph.edges(data="latency_s")]
    rows, cols, weights = (list(c) for c in zip(*edges, strict=True)) if edges else ([], [], [])
    # From triplets, so zero-latency links stay explicit edges (a dense matrix would drop them).
    # Two extra isolated vertices stand in for absent regions (n) and downed nodes (n + 1).
    return index, csr_array((weights, (rows, cols)), shape=(n + 2, n + 2), dtype=float)


def shortest_latency_s(
    graph: Any, sources: Sequence[str], targets: Sequence[str]
) -> NDArray[np.float64]:
    """One-way shortest-path latency (s) between vertex keys (``hub:guian``), sources x
    targets; inf where cut off or where a key is not in the graph."""
    index, matrix = _latency_matrix(graph)
    n = len(index)
    src = np.array([index.get(v, n) for v in sources], dtype=np.int64)
    dst = np.array([index.get(v, n + 1) for v in targets], dtype=np.int64)
    if not len(src) or not len(dst):
        return np.zeros((len(src), len(dst)))
    dist = dijkstra(matrix, directed=False, indices=src)
    return np.asarray(dist, dtype=float).reshape(len(src), -1)[:, dst]


def _solve(
    graph: Any, regions: Sequence[str], nodes: Sequence[str]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Shortest one-way latency (s) and its hop count, regions x nodes (inf and -1 if cut off)."""
    index, matrix = _latency_matrix(graph)
    n = len(index)
    src = np.array([index.get(vertex("region", r), n) for r in regions])
    dst = np.array([index.get(vertex("node", x), n + 1) for x in nodes])
    dist, pred = dijkstra(matrix, directed=False, indices=src, return_predecessors=True)
    latency = np.asarray(dist[:, dst], dtype=float)
    # Walk predecessors back to the source, all pairs at once, counting links.
    cur = np.repeat(dst[None, :], len(src), axis=0)
    start, row = src[:, None], np.arange(len(src))[:, None]
    hops = np.zeros(latency.shape, dtype=np.int64)
    active = np.isfinite(latency) & (cur != start)
    while active.any():
        cur = np.where(active, pred[row, cur], cur)
        hops += active
        active &= cur != start
    return latency, np.where(np.isfinite(latency), hops, -1)


@dataclass(frozen=True, eq=False)
class Topology:
    """A frozen graph with its region x node shortest-path latency (s) and hop counts."""

    graph: Any  # networkx.Graph, frozen
    region_ids: tuple[str, ...]
    node_ids: tuple[str, ...]
    latency_s: NDArray[np.float64]
    hops: NDArray[np.int64]

    @classmethod
    def from_graph(cls, graph: Any, regions: Sequence[str], nodes: Sequence[str]) -> Topology:
        """Solve ``graph`` (which is frozen, so it cannot drift from the matrix)."""
        latency, hops = _solve(graph, regions, nodes)
        latency.setflags(write=False)
        hops.setflags(write=False)
        return cls(nx.freeze(graph), tuple(regions), tuple(nodes), latency, hops)

    def without_link(self, a: str, b: str) -> Topology:
        """The topology with link a-b cut, rerouted. Names as in ``network.links``: a bare id
        is tried as node, region, then cluster; write ``hub:guian`` to pick the cluster."""
        u, v = _resolve(a, self.graph), _resolve(b, self.graph)
        if u is None or v is None or not self.graph.has_edge(u, v):
            raise KeyError(f"no link between {a!r} and {b!r}")
        graph = self.graph.copy()
        graph.remove_edge(u, v)
        return Topology.from_graph(graph, self.region_ids, self.node_ids)

    def without_node(self, node_id: str) -> Topology:
        """The topology with a node down: its column becomes inf, and no path transits it."""
        if node_id not in self.node_ids:
            raise KeyError(f"no node {node_id!r}; nodes are {list(self.node_ids)}")
        graph = self.graph.copy()
        if vertex("node", node_id) in graph:
            graph.remove_node(vertex("node", node_id))
        return Topology.from_graph(graph, self.region_ids, self.node_ids)

    def unreachable_regions(self) -> list[str]:
        """Regions that reach no node, in scenario order."""
        cut = np.flatnonzero(~np.isfinite(self.latency_s).any(axis=1))
        return [self.region_ids[i] for i in cut]


def check_reachability(scenario: Scenario, catalog: Catalog | None = None) -> list[Problem]:
    """Problems: links naming unknown places, link outages naming no link, and each region
    that reaches no node."""
    topology, problems = _build(scenario, catalog)
    for i, event in enumerate(scenario.events):
        if event.kind == "link_outage":
            try:
                topology.without_link(event.a, event.b)
            except KeyError as exc:
                hint = "name both ends as in network.links (hub:<cluster> for a cluster)"
                problems.append(Problem(("events", i), f"{exc.args[0]}; {hint}"))
    reported = {p.path for p in problems}  # an unlocatable region is already reported
    for region in topology.unreachable_regions():
        if ("regions", topology.region_ids.index(region)) in reported:
            continue
        msg = (
            f"region {region!r} reaches no compute node: add a link under network.links "
            f"(e.g. {{a: {region}, b: {topology.node_ids[0]}}})"
        )
        if scenario.network.generate != "hub_and_spoke":
            msg += " or use network.generate: hub_and_spoke"
        problems.append(Problem(("regions", topology.region_ids.index(region)), msg))
    return problems


def latency_summary(topology: Topology, targets_ms: Iterable[float] = (5.0, 20.0)) -> pd.DataFrame:
    """One row per region, then a national row (region ``(national)``).

    Columns: region, nearest_node, nearest_latency_ms and, per target T, ``nodes_within_Tms``
    (nodes at <= T), ``nearest_over_Tms`` (even the nearest node is slower than T) and
    ``share_pairs_over_Tms`` (share of region-node pairs slower than T). The national row has
    the worst region's nearest latency, counts and shares over all pairs, and "any region" flags.
    """
    ms = topology.latency_s * 1e3
    nearest_j = np.argmin(ms, axis=1)
    nearest_ms = ms[np.arange(len(ms)), nearest_j]
    reached = np.isfinite(nearest_ms).tolist()
    nodes = [topology.node_ids[j] if ok else None for j, ok in zip(nearest_j, reached, strict=True)]
    regional: dict[str, Any] = {"region": topology.region_ids, "nearest_node": nodes}
    national: dict[str, Any] = {"region": [NATIONAL], "nearest_node": [None]}
    regional["nearest_latency_ms"], national["nearest_latency_ms"] = nearest_ms, [nearest_ms.max()]
    for t in targets_ms:
        within, over, share = (
            f"nodes_within_{t:g}ms",
            f"nearest_over_{t:g}ms",
            f"share_pairs_over_{t:g}ms",
        )
        regional[within], national[within] = (ms <= t).sum(axis=1), [int((ms <= t).sum())]
        regional[over], national[over] = nearest_ms > t, [bool((nearest_ms > t).any())]
        regional[share], national[share] = (ms > t).mean(axis=1), [float((ms > t).mean())]
    return pd.concat([pd.DataFrame(regional), pd.DataFrame(national)], ignore_index=True)


def latency_pairs(topology: Topology) -> pd.DataFrame:
    """Tidy region x node table: region, node, latency_ms (inf if cut off), hops (NA if so)."""
    r, n = topology.latency_s.shape
    hops = pd.Series(topology.hops.ravel()).astype("Int64")
    return pd.DataFrame(
        {
            "region": np.repeat(np.array(topology.region_ids, dtype=object), n),
            "node": np.tile(np.array(topology.node_ids, dtype=object), r),
            "latency_ms": topology.latency_s.ravel() * 1e3,
            "hops": hops.mask(hops < 0),
        }
    )
