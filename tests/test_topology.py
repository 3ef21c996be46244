"""Topology: link latency from great-circle distance, rerouting, reachability, summaries."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from gridsim.catalog import Site, builtin_catalog
from gridsim.cli import app
from gridsim.latency_targets import hub_pairs, target_report, target_table
from gridsim.report.maps import plot_topology
from gridsim.scenario import Scenario, ScenarioError, load_scenario, load_scenario_text
from gridsim.topology import (
    NATIONAL,
    build_topology,
    check_reachability,
    great_circle_km,
    great_circle_km_array,
    latency_pairs,
    latency_summary,
    places,
)

DATA = Path(__file__).parent / "data"
BASELINE = Path(__file__).parents[1] / "scenarios" / "baseline.yaml"
SHANGHAI = (31.230416, 121.473701)
GUIYANG = (26.57, 106.71)
US_PER_KM = 4.9


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Written out here, independently of gridsim, on the IUGG mean sphere."""
    r = 6371.0088
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlam = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * r * math.atan2(math.sqrt(a), math.sqrt(1 - a))


def node(id_: str, **where: Any) -> dict[str, Any]:
    return {"id": id_, "kind": "data_centre", "pools": [{"id": "p", "slots": 4}], **where}


def scenario(regions: Any, nodes: list[dict[str, Any]], network: dict[str, Any]) -> Scenario:
    return load_scenario_text(yaml.safe_dump(scenario_body(regions, nodes, network)))


def scenario_body(
    regions: Any, nodes: list[dict[str, Any]], network: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": "topo",
        "horizon": {"duration": "1h"},
        "regions": regions,
        "nodes": nodes,
        "network": network,
        "demand": {
            "tokens_per_day": 1,
            "region_weights": "equal",  # places given by coordinates have no GDP figure
            "classes": [
                {
                    "name": "jobs",
                    "kind": "job",
                    "rate_per_s": 1,
                    "service": {"dist": "exponential", "mean": 1},
                }
            ],
        },
    }


def hop_s(km: float, route_factor: float = 1.5, per_hop_ms: float = 0.1) -> float:
    return km * route_factor * US_PER_KM * 1e-6 + per_hop_ms * 1e-3


# --- distance and link latency ------------------------------------------------------------


def test_great_circle_matches_hand_haversine() -> None:
    km = haversine_km(*SHANGHAI, *GUIYANG)
    assert 1500 < km < 1560  # Shanghai-Guiyang is about 1,530 km as the crow flies
    assert great_circle_km(*SHANGHAI, *GUIYANG) == pytest.approx(km, rel=1e-12)
    lat = np.array([SHANGHAI[0], GUIYANG[0], 39.9])
    lon = np.array([SHANGHAI[1], GUIYANG[1], 116.4])
    matrix = great_circle_km_array(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    assert matrix.shape == (3, 3)
    assert matrix[0, 1] == pytest.approx(km, rel=1e-12)
    assert np.allclose(matrix, matrix.T) and np.all(np.diag(matrix) == 0)


def test_full_mesh_direct_link_latency_shanghai_guiyang() -> None:
    sc = scenario(
        [{"id": "shanghai", "lat": SHANGHAI[0], "lon": SHANGHAI[1]}],
        [node("guiyang", lat=GUIYANG[0], lon=GUIYANG[1])],
        {"generate": "full_mesh", "route_factor": 1.5, "per_hop_ms": 0.1},
    )
    topo = build_topology(sc)
    km = haversine_km(*SHANGHAI, *GUIYANG)
    expected_s = km * 1.5 * 4.9e-6 + 0.1e-3
    edge = topo.graph.edges["region:shanghai", "node:guiyang"]
    assert edge["distance_km"] == pytest.approx(km, rel=1e-12)
    assert edge["latency_s"] == pytest.approx(expected_s, rel=1e-12)
    assert edge["bandwidth_gbps"] == 400.0
    assert topo.latency_s.shape == (1, 1)
    assert topo.latency_s[0, 0] == pytest.approx(expected_s, rel=1e-12)
    assert topo.hops[0, 0] == 1


def test_explicit_link_latency_and_route_factor_override_distance() -> None:
    sc = scenario(
        [{"id": "shanghai", "lat": SHANGHAI[0], "lon": SHANGHAI[1]}],
        [node("gy", lat=GUIYANG[0], lon=GUIYANG[1]), node("bj", lat=39.9, lon=116.4)],
        {
            "generate": "full_mesh",
            "links": [
                {"a": "shanghai", "b": "gy", "latency_ms": 0.5, "bandwidth_gbps": 10},
                {"a": "shanghai", "b": "bj", "route_factor": 3.0},
            ],
        },
    )
    topo = build_topology(sc)
    gy = topo.graph.edges["region:shanghai", "node:gy"]
    assert gy["latency_s"] == 0.5e-3  # the distance plays no part, nor does per_hop_ms
    assert gy["bandwidth_gbps"] == 10 and gy["explicit"]
    assert topo.latency_s[0, 0] == 0.5e-3
    direct_s = hop_s(haversine_km(*SHANGHAI, 39.9, 116.4), route_factor=3.0)
    edge = topo.graph.edges["region:shanghai", "node:bj"]
    assert edge["latency_s"] == pytest.approx(direct_s, rel=1e-12)
    # the 0.5 ms link to gy plus gy-bj at the default route factor beats the slow direct link
    via_gy_s = 0.5e-3 + hop_s(haversine_km(*GUIYANG, 39.9, 116.4))
    assert via_gy_s < direct_s
    assert topo.latency_s[0, 1] == pytest.approx(via_gy_s, rel=1e-12)
    assert topo.hops[0].tolist() == [1, 2]


# --- rerouting ----------------------------------------------------------------------------


@pytest.fixture()
def triangle() -> Scenario:
    """east -> west directly (10 ms), or through the Wuhu cluster by distance."""
    return scenario(
        [{"id": "east", "lat": SHANGHAI[0], "lon": SHANGHAI[1]}],
        [node("west", lat=GUIYANG[0], lon=GUIYANG[1])],
        {
            "generate": "none",
            "links": [
                {"a": "east", "b": "west", "latency_ms": 10.0},
                {"a": "east", "b": "wuhu"},
                {"a": "wuhu", "b": "west", "route_factor": 2.0},
            ],
        },
    )


def test_cut_link_reroutes_over_the_detour(triangle: Scenario) -> None:
    topo = build_topology(triangle)
    assert topo.latency_s[0, 0] == pytest.approx(10e-3)
    assert topo.hops[0, 0] == 1
    wuhu = builtin_catalog().sites["wuhu"]
    assert isinstance(wuhu, Site)
    lat, lon = wuhu.lat, wuhu.lon
    detour = hop_s(haversine_km(*SHANGHAI, lat, lon)) + hop_s(
        haversine_km(lat, lon, *GUIYANG), route_factor=2.0
    )
    assert 10e-3 < detour < 20e-3
    cut = topo.without_link("east", "west")
    assert cut.latency_s[0, 0] == pytest.approx(detour, rel=1e-12)
    assert cut.hops[0, 0] == 2
    assert topo.latency_s[0, 0] == pytest.approx(10e-3)  # the original is untouched
    assert cut.unreachable_regions() == []


def test_cutting_the_only_path_makes_the_region_unreachable(triangle: Scenario) -> None:
    topo = build_topology(triangle).without_link("east", "west").without_link("wuhu", "west")
    assert np.isinf(topo.latency_s[0, 0])
    assert topo.hops[0, 0] == -1
    assert topo.unreachable_regions() == ["east"]
    pairs = latency_pairs(topo)
    assert np.isinf(pairs["latency_ms"]).all() and pairs["hops"].isna().all()
    with pytest.raises(KeyError, match="no link"):
        topo.without_link("east", "west")


def test_without_node_sets_its_column_to_inf_and_reroutes() -> None:
    sc = scenario(
        [{"id": "r", "lat": 0.0, "lon": 0.0}],
        [node("a", lat=0.0, lon=1.0), node("b", lat=0.0, lon=2.0)],
        {
            "generate": "none",
            "per_hop_ms": 0,
            "links": [{"a": "r", "b": "a"}, {"a": "a", "b": "b"}],
        },
    )
    topo = build_topology(sc)
    assert topo.hops[0].tolist() == [1, 2]
    down = topo.without_node("a")  # b was reached through a: now cut off too
    assert np.isinf(down.latency_s).all() and down.unreachable_regions() == ["r"]
    assert down.node_ids == ("a", "b")
    with pytest.raises(KeyError):
        topo.without_node("nope")


# --- validation ---------------------------------------------------------------------------


def test_unreachable_region_is_a_clear_problem() -> None:
    sc = scenario(
        [{"id": "beijing"}, {"id": "tibet"}],
        [node("n1", site="nscc_tianjin")],
        {"generate": "none", "links": [{"a": "beijing", "b": "n1"}]},
    )
    problems = check_reachability(sc)
    assert len(problems) == 1
    (p,) = problems
    assert p.path == ("regions", 1)
    assert "'tibet' reaches no compute node" in p.message
    assert "network.links" in p.message and "hub_and_spoke" in p.message
    assert build_topology(sc).unreachable_regions() == ["tibet"]


def test_link_to_an_unknown_place_is_a_problem() -> None:
    sc = scenario(
        [{"id": "beijing"}],
        [node("n1", site="nscc_tianjin")],
        {"generate": "full_mesh", "links": [{"a": "beijing", "b": "guain"}]},
    )
    problems = check_reachability(sc)
    assert [p.path for p in problems] == [("network", "links", 0, "b")]
    assert "'guain'" in problems[0].message and "'guian'" in problems[0].message
    with pytest.raises(ScenarioError, match=r"network\.links\[0\]\.b"):
        build_topology(sc)


# --- generators ---------------------------------------------------------------------------


def test_hub_and_spoke_over_the_provinces_reaches_every_region() -> None:
    sc = load_scenario(DATA / "topology_hubs.yaml")
    catalog = builtin_catalog()
    topo = build_topology(sc)
    sites = [s for s in catalog.sites.values() if isinstance(s, Site)]
    provinces = [s.id for s in sites if s.kind == "province"]
    clusters = [s.id for s in sites if s.kind == "cluster"]
    assert len(provinces) == 31 and len(clusters) == 10
    assert topo.region_ids == tuple(provinces)
    assert topo.node_ids == ("guian", "horinger", "qingpu", "lingang")
    assert topo.latency_s.shape == (31, 4) and topo.hops.shape == (31, 4)
    assert np.isfinite(topo.latency_s).all()
    assert topo.unreachable_regions() == [] and check_reachability(sc) == []
    # a node at a cluster site hangs off that cluster; the clusters form a full mesh
    assert topo.graph.edges["node:qingpu", "hub:yrd_demo_zone"]["distance_km"] == 0
    hubs = [v for v, role in topo.graph.nodes(data="role") if role == "hub"]
    assert len(hubs) == 10
    assert topo.graph.subgraph(hubs).number_of_edges() == 45
    # local links, by hand from the catalogue: guian and horinger sit in their provinces'
    # capitals (Guiyang, Hohhot) and lingang in Shanghai (metro); qingpu's site is in Jiangsu,
    # 250 km from Nanjing (provincial), and 80 km from Shanghai in another province (none)
    local = {
        frozenset((u, v)): kind
        for u, v, kind in topo.graph.edges(data="link")
        if kind in ("metro", "regional")
    }
    assert local == {
        frozenset(("region:guizhou", "node:guian")): "metro",
        frozenset(("region:inner_mongolia", "node:horinger")): "metro",
        frozenset(("region:shanghai", "node:lingang")): "metro",
        frozenset(("region:jiangsu", "node:qingpu")): "regional",
    }
    assert haversine_km(*SHANGHAI, 31.16, 120.63) > 50  # qingpu (yrd_demo_zone) to Shanghai
    assert topo.graph.degree["node:guian"] == 2  # its cluster and its city
    assert topo.graph.number_of_edges() == 45 + 31 + 4 + 4
    # without local links, every region and node only has its spoke to the nearest cluster
    hub_only = load_scenario(DATA / "topology_hubs.yaml", sets=["network.local_links=false"])
    graph = build_topology(hub_only).graph
    assert graph.degree["node:guian"] == 1 and graph.number_of_edges() == 45 + 31 + 4
    # places: regions, nodes, then clusters; vertex keys keep the guian node and hub apart
    plist = places(sc)
    assert [p.role for p in plist] == ["region"] * 31 + ["node"] * 4 + ["hub"] * 10
    assert {"node:guian", "hub:guian", "region:guizhou"} <= set(topo.graph.nodes)


def test_k_nearest_links_each_place_to_its_k_nearest() -> None:
    # four places on the equator at lon 0, 1, 3, 7
    regions = [{"id": "r0", "lat": 0.0, "lon": 0.0}, {"id": "r1", "lat": 0.0, "lon": 1.0}]
    nodes = [node("n3", lat=0.0, lon=3.0), node("n7", lat=0.0, lon=7.0)]

    def edges(k: int) -> set[frozenset[str]]:
        topo = build_topology(scenario(regions, nodes, {"generate": "k_nearest", "k": k}))
        return {frozenset(e) for e in topo.graph.edges}

    def e(a: str, b: str) -> frozenset[str]:
        return frozenset((a, b))

    assert edges(1) == {
        e("region:r0", "region:r1"),
        e("region:r1", "node:n3"),
        e("node:n3", "node:n7"),
    }
    assert edges(2) == edges(1) | {e("region:r0", "node:n3"), e("region:r1", "node:n7")}
    assert len(edges(5)) == 6  # k beyond the place count: a full mesh


def test_inline_location_wins_over_site_and_region_id_is_a_site() -> None:
    sc = scenario(
        [{"id": "guizhou"}, {"id": "here", "site": "beijing", "lat": 10.0, "lon": 100.0}],
        [node("n", site="guian")],
        {"generate": "full_mesh"},
    )
    by_id = {p.id: p for p in places(sc)}
    assert (by_id["guizhou"].lat, by_id["guizhou"].lon) == GUIYANG
    assert by_id["guizhou"].hub == "guizhou" and by_id["guizhou"].hub_role == "west"
    assert (by_id["here"].lat, by_id["here"].lon) == (10.0, 100.0)
    assert by_id["n"].kind == "data_centre" and by_id["n"].site == "guian"


def test_same_inputs_give_identical_arrays() -> None:
    sc = load_scenario(DATA / "topology_hubs.yaml")
    a, b = build_topology(sc), build_topology(sc)
    assert np.array_equal(a.latency_s, b.latency_s) and np.array_equal(a.hops, b.hops)
    assert list(a.graph.edges) == list(b.graph.edges)
    # ties (co-located places) in k_nearest are broken the same way every time
    twins = [node(f"n{i}", lat=30.0, lon=110.0) for i in range(4)]
    tied = scenario([{"id": "r", "lat": 30.0, "lon": 110.0}], twins, {"generate": "k_nearest"})
    assert list(build_topology(tied).graph.edges) == list(build_topology(tied).graph.edges)
    assert not a.latency_s.flags.writeable


# --- summaries and plot -------------------------------------------------------------------


def test_latency_summary_and_pairs() -> None:
    sc = scenario(
        [{"id": "r", "lat": 0.0, "lon": 0.0}, {"id": "far", "lat": 0.0, "lon": 20.0}],
        [node("near", lat=0.0, lon=0.1), node("mid", lat=0.0, lon=1.0)],
        {"generate": "none", "links": [{"a": "r", "b": "near"}, {"a": "r", "b": "mid"}]},
    )
    topo = build_topology(sc)
    summary = latency_summary(topo, targets_ms=(5.0, 20.0))
    assert list(summary["region"]) == ["r", "far", NATIONAL]
    r = summary.iloc[0]
    assert r["nearest_node"] == "near"
    km = haversine_km(0, 0, 0, 0.1)
    assert r["nearest_latency_ms"] == pytest.approx(hop_s(km) * 1e3)
    assert r["nodes_within_5ms"] == 2 and not r["nearest_over_5ms"]
    far = summary.iloc[1]
    assert pd.isna(far["nearest_node"]) and far["nearest_over_20ms"]
    national = summary.iloc[2]
    assert national["share_pairs_over_5ms"] == 0.5 and national["nodes_within_20ms"] == 2
    pairs = latency_pairs(topo)
    assert list(pairs.columns) == ["region", "node", "latency_ms", "hops"]
    assert len(pairs) == 4 and pairs["hops"].tolist()[:2] == [1, 1]


def test_plot_writes_a_png_without_pyplot(tmp_path: Path) -> None:
    sc = load_scenario(DATA / "topology_hubs.yaml")
    out = tmp_path / "topology.png"
    plot_topology(build_topology(sc), out, region_shares={"guangdong": 0.2, "tibet": 0.01})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code = "import sys, gridsim.topology; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# --- local links and the three policy targets ---------------------------------------------

WEST_SHANGHAI = (31.23, 121.2)  # 26 km west of central Shanghai: the same city at 50 km
ZHENGZHOU = (34.76, 113.65)
QINGYANG = (35.73, 107.63)
SHENYANG, ZHANGJIAKOU = (41.8, 123.38), (40.82, 114.88)
YRD_DEMO_ZONE = (31.16, 120.63)
# Baseline provinces whose capital has a baseline node within 50 km (listed by hand from the
# site catalogue; the test recomputes it from the coordinates)
CAPITALS_WITH_A_NODE = {
    "guangdong",  # nscc_guangzhou
    "shandong",  # nscc_jinan
    "zhejiang",  # sc_wuzhen (Tongxiang, 18 km from Hangzhou's coordinates)
    "sichuan",  # tianfu
    "henan",  # zhengzhou_airport, nscc_zhengzhou
    "hubei",  # wuhan_aicc
    "hunan",  # nscc_changsha
    "shanghai",  # ct_lingang
    "beijing",  # beijing_ascend
    "shaanxi",  # xian_future_aicc
    "chongqing",  # chongqing_cluster
    "shanxi",  # nscc_taiyuan
    "inner_mongolia",  # horinger, cm_hohhot
    "guizhou",  # guian
    "tianjin",  # nscc_tianjin
}
# ... and those with no node in the province, over 5 ms from any over the backbone
FAR_FROM_ANY_NODE = {"liaoning", "xinjiang", "heilongjiang", "jilin", "tibet"}


def test_metro_link_latency_is_the_great_circle_at_the_route_factor_plus_a_hop() -> None:
    regions = [{"id": "sh", "lat": SHANGHAI[0], "lon": SHANGHAI[1]}]
    nodes = [node("west", lat=WEST_SHANGHAI[0], lon=WEST_SHANGHAI[1])]
    km = haversine_km(*SHANGHAI, *WEST_SHANGHAI)
    assert 20 < km < 30
    metro_s = km * 1.5 * 4.9e-6 + 0.1e-3  # 0.291 ms
    topo = build_topology(scenario(regions, nodes, {"generate": "hub_and_spoke"}))
    edge = topo.graph.edges["region:sh", "node:west"]
    assert edge["link"] == "metro" and edge["distance_km"] == pytest.approx(km, rel=1e-12)
    assert edge["latency_s"] == pytest.approx(metro_s, rel=1e-12)
    assert topo.latency_s[0, 0] == pytest.approx(metro_s, rel=1e-12) and topo.hops[0, 0] == 1
    city = target_report(topo)["by_region"]["sh"]
    assert city["city_node"] == "west" and city["meets_city"] is True
    assert city["city_ms"] == pytest.approx(metro_s * 1e3, rel=1e-12)
    # hub-only, both climb to their nearest cluster (the YRD demo zone) and miss the 1 ms
    hub_s = hop_s(haversine_km(*SHANGHAI, *YRD_DEMO_ZONE)) + hop_s(
        haversine_km(*WEST_SHANGHAI, *YRD_DEMO_ZONE)
    )
    assert hub_s > 1e-3
    hub_only = build_topology(
        scenario(regions, nodes, {"generate": "hub_and_spoke", "local_links": False})
    )
    assert not hub_only.graph.has_edge("region:sh", "node:west")
    assert hub_only.latency_s[0, 0] == pytest.approx(hub_s, rel=1e-12)
    city = target_report(hub_only)["by_region"]["sh"]
    assert city["city_node"] == "west" and city["meets_city"] is False
    # a city radius under the distance: no metro link, and no node in the city to check
    small = scenario(regions, nodes, {"generate": "hub_and_spoke", "metro_km": 20})
    assert not build_topology(small).graph.has_edge("region:sh", "node:west")
    city = target_report(small)["by_region"]["sh"]
    assert city["city_node"] is None and city["city_ms"] is None and city["meets_city"] is None


def test_places_in_one_province_are_linked_directly_and_others_are_not() -> None:
    sc = scenario(
        [{"id": "guangdong"}],  # Guangzhou's coordinates
        [
            node("sz", site="nscc_shenzhen"),
            node("gz", site="nscc_guangzhou"),
            node("cs", site="nscc_changsha"),  # in Hunan
        ],
        {"generate": "hub_and_spoke"},
    )
    topo = build_topology(sc)
    graph = topo.graph
    km = haversine_km(23.16, 113.23, 22.62, 114.07)  # Guangzhou to Shenzhen: over metro_km
    assert 100 < km < 110
    edge = graph.edges["region:guangdong", "node:sz"]
    assert edge["link"] == "regional"
    assert edge["latency_s"] == pytest.approx(hop_s(km), rel=1e-12)
    assert topo.latency_s[0, 0] == pytest.approx(hop_s(km), rel=1e-12)
    assert graph.edges["region:guangdong", "node:gz"]["link"] == "metro"  # same coordinates
    assert graph.edges["node:gz", "node:sz"]["link"] == "regional"
    assert not graph.has_edge("region:guangdong", "node:cs")
    assert not graph.has_edge("node:gz", "node:cs") and not graph.has_edge("node:sz", "node:cs")
    # other generators are unchanged: full mesh has every pair once, with no local kinds
    mesh = build_topology(
        sc.model_copy(update={"network": sc.network.model_copy(update={"generate": "full_mesh"})})
    )
    assert mesh.graph.number_of_edges() == 6
    assert {k for *_, k in mesh.graph.edges(data="link")} == {"generated"}


@pytest.fixture(scope="module")
def baseline() -> Scenario:
    return load_scenario(BASELINE)


def test_baseline_every_province_meets_the_targets_a_node_can_meet(baseline: Scenario) -> None:
    catalog = baseline.resolved_catalog
    sites = [s for n in baseline.nodes if isinstance(s := catalog.sites.get(n.site or ""), Site)]
    assert len(sites) == len(baseline.nodes)  # every baseline node is at a catalogue site
    provinces = [s for s in catalog.sites.values() if isinstance(s, Site) and s.kind == "province"]
    in_city = {
        p.id
        for p in provinces
        if any(haversine_km(p.lat, p.lon, s.lat, s.lon) <= 50 for s in sites)
    }
    assert in_city == CAPITALS_WITH_A_NODE
    report = target_report(baseline)
    by = report["by_region"]
    assert report["regions"] == 31 and set(by) == {p.id for p in provinces}
    assert report["targets_ms"] == {"city": 1.0, "region": 5.0, "hub": 20.0}
    # 1 ms: every capital with a node reaches one within 1 ms; the others are not checked
    assert {r for r, v in by.items() if v["meets_city"] is True} == CAPITALS_WITH_A_NODE
    unchecked = {r for r, v in by.items() if v["meets_city"] is None and v["city_node"] is None}
    assert unchecked == set(by) - CAPITALS_WITH_A_NODE and "jiangsu" in unchecked
    # 5 ms: all but five provinces, none of which holds a node: only the backbone reaches them
    assert {r for r, v in by.items() if not v["meets_region"]} == FAR_FROM_ANY_NODE
    assert not FAR_FROM_ANY_NODE & {s.province for s in sites}
    zjk_s = hop_s(haversine_km(*SHENYANG, *ZHANGJIAKOU)) + hop_s(0)  # spoke, then the node
    assert by["liaoning"]["nearest_node"] == "zhangjiakou"
    assert by["liaoning"]["nearest_ms"] == pytest.approx(zjk_s * 1e3, rel=1e-12)
    # 20 ms: every province, and the slowest cluster pair is the longest direct backbone link
    assert all(v["meets_hub"] is True and v["nearest_ms"] <= 20 for v in by.values())
    clusters = [s for s in catalog.sites.values() if isinstance(s, Site) and s.kind == "cluster"]
    longest_s = max(
        hop_s(haversine_km(a.lat, a.lon, b.lat, b.lon))
        for a in clusters
        for b in clusters
        if a.hub != b.hub
    )
    pairs = hub_pairs(baseline)
    assert len(pairs) == 45 - 2  # two hubs (YRD, Chengdu-Chongqing) hold two clusters each
    assert pairs["latency_ms"].iloc[0] == pytest.approx(longest_s * 1e3, rel=1e-12)
    assert longest_s < 20e-3
    assert report["regions_meeting"] == {"city": 15, "region": 26, "hub": 31}
    json.dumps(report, allow_nan=False)  # plain JSON: no NaN, inf or numpy types


def test_baseline_henan_is_served_in_zhengzhou_not_through_qingyang(baseline: Scenario) -> None:
    topo = build_topology(baseline)
    henan = target_report(topo)["by_region"]["henan"]
    assert henan["nearest_node"] in ("zhengzhou_airport", "nscc_zhengzhou")
    assert henan["nearest_ms"] == pytest.approx(0.1, rel=1e-12)  # one hop, 0 km
    assert henan["city_node"] == henan["nearest_node"] and henan["meets_city"] is True
    i, j = topo.region_ids.index("henan"), topo.node_ids.index("zhengzhou_airport")
    assert topo.latency_s[i, j] == pytest.approx(hop_s(0), rel=1e-12)
    # the hub-only route: up to Qingyang, 550 km away, and back down (8.4 ms)
    hub_only = build_topology(load_scenario(BASELINE, sets=["network.local_links=false"]))
    via_qingyang_s = 2 * hop_s(haversine_km(*ZHENGZHOU, *QINGYANG))
    assert hub_only.latency_s[i, j] == pytest.approx(via_qingyang_s, rel=1e-12)
    assert 8.2e-3 < via_qingyang_s < 8.5e-3


def far_hubs(pair_ms: float, reach_ms: float) -> tuple[Any, list[dict[str, Any]], Any]:
    """A region at Guiyang, nodes at the Gui'an and Zhangjiakou clusters (hubs guizhou, bth)."""
    return (
        [{"id": "gy", "lat": GUIYANG[0], "lon": GUIYANG[1]}],
        [node("guian", site="guian"), node("zjk", site="zhangjiakou")],
        {
            "generate": "none",
            "links": [
                {"a": "gy", "b": "guian", "latency_ms": reach_ms},
                {"a": "guian", "b": "zjk", "latency_ms": pair_ms},
            ],
        },
    )


def test_hub_target_fails_when_a_hub_pair_or_the_region_is_far() -> None:
    near = target_report(scenario(*far_hubs(15.0, 1.0)))
    assert near["by_region"]["gy"] == {
        "nearest_node": "guian",
        "nearest_ms": 1.0,
        "city_node": "guian",  # the Gui'an cluster sits at Guiyang's coordinates
        "city_ms": 1.0,
        "meets_city": True,
        "meets_region": True,
        "meets_hub": True,
    }
    far = scenario(*far_hubs(25.0, 1.0))
    pairs = hub_pairs(far)
    assert pairs[["a", "b", "hub_a", "hub_b"]].values.tolist() == [
        ["guian", "zhangjiakou", "guizhou", "bth"]
    ]
    assert pairs["latency_ms"].tolist() == [25.0] and not pairs["meets_hub"].any()
    report = target_report(far)
    assert report["by_region"]["gy"]["meets_hub"] is False
    assert report["by_region"]["gy"]["meets_region"] is True
    assert report["regions_meeting"] == {"city": 1, "region": 1, "hub": 0}
    # the pair within 20 ms but the region 21 ms from its nearest cluster: missed too
    slow = target_table(scenario(*far_hubs(15.0, 21.0))).iloc[0]
    assert slow["hub_cluster"] == "guian" and slow["hub_cluster_ms"] == 21.0
    assert not slow["meets_hub"] and not slow["meets_region"] and not slow["meets_city"]


def test_topology_command_prints_each_target_and_the_json_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "far.yaml"
    file.write_text(yaml.safe_dump(scenario_body(*far_hubs(25.0, 1.0))))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    text = runner.invoke(app, ["topology", str(file), "--figure", str(tmp_path / "map.png")])
    assert text.exit_code == 0, text.output
    assert "1 ms within a city: 1 of 1 regions with a node in their city meet it" in text.output
    assert "5 ms from a region to its nearest node: 1 of 1 regions meet it" in text.output
    assert "pairs over it: guian-zhangjiakou (25.000 ms)" in text.output
    assert "Regions meeting it (both): 0 of 1" in text.output
    as_json = runner.invoke(app, ["topology", str(file), "--json"])
    assert as_json.exit_code == 0, as_json.output
    block = json.loads(as_json.stdout)
    assert block["regions_meeting"] == {"city": 1, "region": 1, "hub": 0}
    assert block["by_region"]["gy"]["nearest_ms"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.yaml", "map.png"]  # no map
