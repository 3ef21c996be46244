"""Every request is accounted for, exactly, at both fidelities and at every level (issue 10).

At the end of a run, in every block of the summary (national, by class, region, node and pool):
``arrived = served + dropped + abandoned + lost + in_flight``, every term a whole number >= 0,
and ``served <= arrived``. The levels agree: the regions (and the classes) add up to the
national figures, the pools of a node to the node, and the nodes to the national served,
abandoned, lost and in flight (the flow engine rounds its expected counts block by block: +-1
a block summed; the request engine's counts add up exactly). At flow fidelity the engine's own
figures over every block of ticks hold too: ``max_conservation_gap < 1e-9``, ``min_term`` no
more negative than float noise, ``max_load <= 1 + 1e-9``.

- ``test_accounting_holds_in_random_scenarios``: hypothesis draws small grids (1-4 regions,
  1-4 nodes of 1-2 pools: generic job pools mostly, LLM pools of the catalogue now and then
  (a third of them disaggregated: a prefill and a decode station);
  1-3 classes; offered load 0.3-3x the slots; 1-6 hours), with or without events (node
  outages with and without restore, link outages, build-outs, retirements, demand shocks,
  policy switches, price changes), admission rules, patience, any policy, either
  ``on_failure``; each runs at request fidelity and at flow fidelity at a 1-15 minute tick.
  Runs are sized to a few thousand requests at most: 150 examples take ~35 s.
- One deterministic scenario per regime that asserts the term it is about is positive (backlog
  in flight, lost, abandoned, dropped): the properties cannot pass vacuously.
- The project's scenarios at flow fidelity at 5 min, 15 min and 1 h ticks (slow, ~1 minute).
- The engine bugs this file found (all fixed since), as regression tests.

``GRIDSIM_ACCOUNTING_EXAMPLES=500 pytest tests/test_accounting.py -k random`` explores more
(random, not derandomized, when set).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from gridsim.engine.events import schedule
from gridsim.engine.flow import FlowEngine
from gridsim.engine.request import RequestEngine
from gridsim.estimate import expected_requests
from gridsim.grid import Grid, build_grid
from gridsim.run import training_plan
from gridsim.scenario import Scenario, ScenarioError, load_scenario, load_scenario_text

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
TERMS = ("served", "dropped", "abandoned", "lost", "in_flight")
COUNTS = ("arrived", *TERMS)
POLICIES = ("nearest", "least_loaded", "cheapest", "greenest", "latency_slo", "east_west")
MAX_REQUESTS = 6000  # a hard cap on expected arrivals per example (shocks included)

# --- checks ----------------------------------------------------------------------------------


def blocks(summary: dict[str, Any]) -> list[tuple[str, dict[str, int]]]:
    """Every block's ``requests``, named: national, then by class, region, node and pool."""
    out = [("national", summary["requests"])]
    for group in ("by_class", "by_region", "by_node", "by_pool"):
        out += [(f"{group}[{k}]", b["requests"]) for k, b in summary[group].items()]
    return out


def check_identity(summary: dict[str, Any], where: str = "") -> None:
    """In every block: whole numbers, none negative, the identity exact, served <= arrived."""
    for name, r in blocks(summary):
        for key in COUNTS:
            assert isinstance(r[key], int), (where, name, key, r)
            assert r[key] >= 0, f"{where} {name}: {key} < 0: {r}"
        ended = sum(r[k] for k in TERMS)
        assert r["arrived"] == ended, f"{where} {name}: arrived != sum of terms ({ended}): {r}"
        assert r["served"] <= r["arrived"], f"{where} {name}: served > arrived: {r}"


def check_levels(summary: dict[str, Any], per_block: int, where: str = "") -> None:
    """Regions and classes add up to the national block, pools to their node, nodes to the
    national figures of what happens at a pool; within ``per_block`` for each block summed
    (rounding of the flow engine's expected counts; 0 at request fidelity)."""
    national = summary["requests"]
    for group in ("by_class", "by_region"):
        parts = summary[group]
        for key in COUNTS:
            total = sum(b["requests"][key] for b in parts.values())
            assert abs(total - national[key]) <= per_block * len(parts), (
                f"{where} sum over {group} of {key} = {total}, national {national[key]}"
            )
    pools_of: dict[str, list[dict[str, int]]] = {}
    for name, block in summary["by_pool"].items():
        pools_of.setdefault(name.split("/", 1)[0], []).append(block["requests"])
    assert set(pools_of) == set(summary["by_node"]), (where, sorted(pools_of))
    for node, pools in pools_of.items():
        r = summary["by_node"][node]["requests"]
        for key in COUNTS:
            total = sum(p[key] for p in pools)
            assert abs(total - r[key]) <= per_block * len(pools), (
                f"{where} node {node}: sum over its pools of {key} = {total}, node {r[key]}"
            )
    # Served, abandoned, lost and in flight all happen at a pool: the nodes add up to the
    # nation. Dropped requests with no pool to go to belong to no node.
    nodes = summary["by_node"].values()
    for key in COUNTS:
        total = sum(b["requests"][key] for b in nodes)
        slack = per_block * len(nodes)
        if key in ("arrived", "dropped"):
            assert total <= national[key] + slack, (where, key, total, national[key])
        else:
            assert abs(total - national[key]) <= slack, (
                f"{where} sum over nodes of {key} = {total}, national {national[key]}"
            )


def check_flow_engine(engine: FlowEngine, summary: dict[str, Any], where: str = "") -> None:
    """The flow engine's own figures over every block of ticks: the identity per class and
    region (relative gap), no negative term (float noise allowed: 1e-9 of the arrivals), no
    pool busier than its slots."""
    arrived = max(1.0, float(summary["requests"]["arrived"]))
    gap, low, load = engine.max_conservation_gap, engine.min_term, engine.max_load
    assert gap < 1e-9, f"{where} a tick's conservation gap {gap:.3g} (relative to arrivals)"
    assert low >= -1e-9 * arrived, f"{where} an accounting term went negative: {low:.6g}"
    assert load <= 1 + 1e-9, f"{where} a pool was busier than its slots: load {load:.9g}"


def check_all(summary: dict[str, Any], fluid: bool, where: str = "") -> None:
    check_identity(summary, where)
    check_levels(summary, 1 if fluid else 0, where)


# --- engine bugs this file found (all fixed since): regression tests ---------------------------


BUG_B = """
name: bug-b
horizon: {duration: 69min, resolution: 2min}
regions: [{id: r0, lat: 30, lon: 110}]
nodes:
  - {id: n0, kind: data_centre, lat: 30, lon: 110, pools: [{id: p0, slots: 3}]}
network: {generate: full_mesh}
admission: {max_wait: 10min}
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - {name: c1, kind: job, rate_per_s: 0.03388,
       service: {dist: lognormal, mean: 91.92, sigma: 0.3}}
    - {name: c2, kind: job, rate_per_s: 0.1694, service: {dist: constant, value: 91.92},
       patience: {dist: constant, value: 120}}
"""


def test_bug_b_max_wait_and_mixed_patience_stay_within_slots() -> None:
    """Fixed (was: the flow engine served 253 here, every c1 job and 112 of c2, dropped none
    and ran the pool at 1.87 x its slots). 3 slots of 92-second jobs at rho 6 (c2, patience 2
    minutes, 5/6 of the arrivals), a 10-minute maximum wait: the request engine serves 132 in
    the 69 minutes (what 3 slots can) and drops 75."""
    engine, flow = run_flow(load_scenario_text(BUG_B + "fidelity: flow\n"))
    assert engine.max_load <= 1 + 1e-9, engine.max_load
    check_all(flow, fluid=True)
    assert flow["requests"]["dropped"] > 0, flow["requests"]


BUG_B_QUEUE_LIMIT = """
name: bug-b-queue-limit
horizon: {duration: 3h, resolution: 1min}
regions: [{id: r0, lat: 30, lon: 110}]
nodes:
  - {id: n0, kind: data_centre, lat: 30, lon: 110, pools: [{id: p0, slots: 2}]}
network: {generate: full_mesh}
admission: {queue_limit: 5}
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - {name: steady, kind: job, rate_per_s: 0.014, service: {dist: exponential, mean: 130}}
    - {name: impatient, kind: job, rate_per_s: 0.014, service: {dist: exponential, mean: 130},
       patience: {dist: exponential, mean: 20}}
"""


def test_bug_b_queue_limit_and_mixed_patience_stay_within_slots() -> None:
    """Fixed (was: the flow engine served every steady job, 151 of 151, and 55 impatient
    ones, dropped none and ran the pool at 1.24 x its slots; with patience 900 s for one
    class and 2 s for the other on one slot, 2.78 x; earlier still, the impatient class
    abandoned more than arrived). 2 slots at rho 1.8, half of it an impatient class (patience
    20 s), a queue limit of 5: the request engine serves 153 in the 3 hours and drops 20."""
    engine, flow = run_flow(load_scenario_text(BUG_B_QUEUE_LIMIT + "fidelity: flow\n"))
    check_all(flow, fluid=True)
    check_flow_engine(engine, flow)
    assert flow["requests"]["dropped"] > 0, flow["requests"]


BUG_F = """
name: bug-f
horizon: {duration: 1h, resolution: 5min}
regions: [{id: r1, lat: 26.07, lon: 113.03}]
nodes:
  - {id: n0, kind: data_centre, lat: 35.21, lon: 108.7,
     pools: [{id: p0, slots: 4}, {id: p1, slots: 4}]}
  - {id: n1, kind: data_centre, lat: 29.56, lon: 117.64,
     pools: [{id: p0, slots: 6}, {id: p1, slots: 3, serves: [c1]}]}
network: {generate: full_mesh}
events: [{kind: policy_switch, at: 139s, policy: cheapest}]
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - {name: c0, kind: job, rate_per_s: 0.01389, patience: {dist: exponential, mean: 120},
       service: {dist: exponential, mean: 22.39},
       diurnal: [2, 2, 0.2, 1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2,
                 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 2, 0.2, 1, 1]}
    - {name: c1, kind: job, rate_per_s: 0.02778, service: {dist: constant, value: 537.3}}
    - {name: c2, kind: job, rate_per_s: 0.01389, patience: {dist: constant, value: 120},
       service: {dist: lognormal, mean: 537.3, sigma: 0.3}}
"""


def test_bug_f_policy_switch_inside_a_tick_stays_within_slots() -> None:
    """Fixed (was: a pool at 1.001 x its slots). Found by the property test: a switch to
    cheapest at 139 s, inside the first 5-minute tick, with patience differing between the
    classes (without the switch, at 1 or 2-minute ticks, or with one patience for every
    class, the load stayed within 1)."""
    engine, flow = run_flow(load_scenario_text(BUG_F + "fidelity: flow\n"))
    check_all(flow, fluid=True)
    check_flow_engine(engine, flow)


def test_bug_g_baseline_pools_stay_within_slots() -> None:
    """Fixed (was: a pool at 1.0000147 x its slots; the baseline's other variants likewise,
    1.00001 to 1.00002 x, at 5 min, 15 min and 1 h). hub-outage.yaml, the day of the outage
    (22 April 2026) at 1-hour ticks: ~1 s."""
    scenario = load_scenario(
        SCENARIOS / "hub-outage.yaml",
        sets=["horizon.start=2026-04-22", "horizon.duration=1d", "horizon.resolution=1h"],
    )
    engine, flow = run_flow(scenario)
    check_all(flow, fluid=True)
    check_flow_engine(engine, flow)


BUG_C = """
name: bug-c
horizon: {duration: 1h, resolution: 5min}
regions: [{id: r0, lat: 30, lon: 110}]
nodes:
  - {id: n0, kind: data_centre, lat: 30, lon: 110, pools: [{id: p0, slots: 6}]}
network: {generate: full_mesh}
admission: {queue_limit: 100}
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - {name: jobs, kind: job, rate_per_s: 0.1, service: {dist: exponential, mean: 350}}
"""


def test_bug_c_queue_limit_in_overload_runs() -> None:
    """Fixed (was: ValueError "values and weights must be finite and non-negative", from the
    latency histograms). 6 slots at rho 5.8 with a queue limit of 100."""
    _, flow = run_flow(load_scenario_text(BUG_C + "fidelity: flow\n"))
    check_all(flow, fluid=True)


BUG_D = """
name: bug-d
horizon: {duration: 1h}
regions: [{id: r0, lat: 30, lon: 110}]
nodes:
  - {id: n0, kind: data_centre, lat: 30, lon: 110, pools: [{id: p0, slots: 6}]}
network: {generate: full_mesh}
events: [{kind: retirement, at: 1min, node: n0, pool: p0, slots: 5}]
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - {name: pairs, kind: job, rate_per_s: 0.035, slots_per_job: 2,
       service: {dist: lognormal, mean: 285, sigma: 0.3}}
"""


def test_bug_d_retirement_below_slots_per_job_runs() -> None:
    """Fixed (was: IndexError, a slot popped from an empty heap). Jobs of 2 slots; a minute
    in, 5 of the pool's 6 slots retire: the run completes and accounts for every request."""
    check_all(run_request(load_scenario_text(BUG_D + "fidelity: request\n")), fluid=False)


@pytest.mark.slow
def test_bug_e_rounding_of_large_expected_counts() -> None:
    """Fixed (was: the flow engine's float sums drifted from the arrivals by a few requests,
    within the recorder's 1e-9 tolerance, and the largest-remainder rounding handed the
    deficit out one request a term: batch showed abandoned 1, lost 1, in flight 1 with no
    patience and no outage, and still one short of its arrivals; an excess, as for agent over
    14 days from 15 January 2027 at 1 h, was not taken back). growth-continued.yaml a week
    from 1 February 2027 at 5-minute ticks: 1.3e12 arrivals, ~10 s."""
    scenario = load_scenario(
        SCENARIOS / "growth-continued.yaml",
        sets=["horizon.start=2027-02-01", "horizon.duration=7d", "horizon.resolution=5min"],
    )
    _, summary = run_flow(scenario)
    assert summary["requests"]["lost"] == 0, summary["requests"]  # nothing failed
    check_identity(summary)


# --- running ---------------------------------------------------------------------------------


def scenario_of(tree: dict[str, Any], **sets: Any) -> Scenario:
    """A validated scenario from a tree, with top-level or dotted changes (``horizon__resolution``
    for ``horizon.resolution``)."""
    tree = yaml.safe_load(yaml.safe_dump(tree))  # a copy
    for key, value in sets.items():
        node = tree
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return load_scenario_text(yaml.safe_dump(tree, sort_keys=False))


def run_request(scenario: Scenario) -> dict[str, Any]:
    engine = RequestEngine(build_grid(scenario), seed=scenario.seed)
    summary: dict[str, Any] = engine.run(schedule(engine)).summary
    return summary


def run_flow(scenario: Scenario) -> tuple[FlowEngine, dict[str, Any]]:
    grid = build_grid(scenario)
    engine = FlowEngine(grid, seed=scenario.seed)
    plan, _ = training_plan(scenario, grid, scenario.seed)  # cards lent to training
    events = schedule(engine) + (plan.actions(engine) if plan is not None else [])
    summary: dict[str, Any] = engine.run(events).summary
    return engine, summary


def check_both(tree: dict[str, Any], resolution_s: float) -> tuple[dict, dict]:
    """Run at both fidelities and check everything; returns (request, flow) summaries."""
    req = run_request(scenario_of(tree, fidelity="request"))
    check_all(req, fluid=False, where="request:")
    res = f"{resolution_s:g}s"
    scenario = scenario_of(tree, fidelity="flow", horizon__resolution=res)
    where = f"flow at {res}:"
    engine, flow = run_flow(scenario)
    check_all(flow, fluid=True, where=where)
    check_flow_engine(engine, flow, where)
    return req, flow


# --- the strategy ----------------------------------------------------------------------------

LLM_MODEL = "qwen3-32b"
ACCELERATORS = ("h100", "h20")  # 61 and 13 decode slots a replica at chat lengths


def _sig(x: float, digits: int = 4) -> float:
    """``x`` to a few significant digits (a readable YAML reproducer)."""
    return float(f"{x:.{digits}g}")


@st.composite
def _distribution(draw: st.DrawFn, mean: float) -> dict[str, Any]:
    kind = draw(st.sampled_from(("exponential", "constant", "lognormal")))
    if kind == "constant":
        return {"dist": "constant", "value": _sig(mean)}
    if kind == "exponential":
        return {"dist": "exponential", "mean": _sig(mean)}
    return {"dist": "lognormal", "mean": _sig(mean), "sigma": draw(st.sampled_from((0.3, 1.0)))}


@dataclass
class Draft:
    """A drawn scenario before its rates are set: the tree, each class's relative arrival
    weight, the load (offered work / slots) and the arrivals wanted over the horizon."""

    tree: dict[str, Any]
    weights: list[float]
    load: float
    requests: int


@st.composite
def drafts(draw: st.DrawFn) -> Draft:
    n_regions = draw(st.integers(1, 4))
    n_nodes = draw(st.integers(1, 4))
    kinds = draw(st.sampled_from(("job",) * 6 + ("llm",) * 2 + ("mixed",) * 2))
    coord = st.tuples(st.integers(2000, 4200), st.integers(10000, 12200))
    regions = []
    given = draw(st.booleans())
    for i in range(n_regions):
        lat, lon = draw(coord)
        region: dict[str, Any] = {"id": f"r{i}", "lat": lat / 100, "lon": lon / 100}
        if given:
            region["share"] = draw(st.sampled_from((0.5, 1, 2, 4)))
        regions.append(region)

    # classes: kinds first (pools depend on them)
    if kinds == "mixed":
        class_kinds = ["job", "llm", *draw(st.lists(st.sampled_from(("job", "llm")), max_size=1))]
    else:
        class_kinds = [kinds] * draw(st.integers(1, 3))
    classes: list[dict[str, Any]] = []
    for i, kind in enumerate(class_kinds):
        cls: dict[str, Any] = {"name": f"c{i}", "kind": kind}
        if kind == "job":
            cls["service"] = draw(_distribution(draw(st.sampled_from((5.0, 30.0, 120.0)))))
            if draw(st.integers(0, 5)) == 0:
                cls["slots_per_job"] = 2
        else:
            if draw(st.booleans()):
                cls["model"] = LLM_MODEL
            out = draw(st.sampled_from((500.0, 2000.0, 6000.0)))
            cls["input_tokens"] = draw(_distribution(draw(st.sampled_from((300.0, 2000.0)))))
            cls["output_tokens"] = draw(_distribution(out))
        cls["rate_per_s"] = 1.0  # set by calibrate()
        if draw(st.integers(0, 2)) == 0:
            cls["arrival"] = {"process": "bursty", "dispersion": draw(st.sampled_from((2, 8)))}
        if draw(st.integers(0, 2)) == 0:
            mean = draw(st.sampled_from((2.0, 20.0, 120.0, 900.0)))
            cls["patience"] = draw(_distribution(mean))
        slo = draw(
            st.sampled_from(({}, {"e2e": "10min"}, {"ttft": "2s", "e2e": "60s"}, {"ttft": "200ms"}))
        )
        if slo:
            cls["slo"] = slo
        cls["latency_sensitivity"] = draw(st.sampled_from(("high", "medium", "low")))
        if draw(st.integers(0, 4)) == 0:
            cls["diurnal"] = draw(
                st.lists(st.sampled_from((0.2, 1.0, 2.0)), min_size=24, max_size=24)
            )
        classes.append(cls)
    job_classes = [c["name"] for c in classes if c["kind"] == "job"]
    has_llm = any(c["kind"] == "llm" for c in classes)

    nodes: list[dict[str, Any]] = []
    job_pools: list[dict[str, Any]] = []
    for i in range(n_nodes):
        pools = []
        for j in range(draw(st.integers(1, 2))):
            if kinds == "llm" or (kinds == "mixed" and draw(st.booleans())):
                pool: dict[str, Any] = {
                    "id": f"p{j}",
                    "model": LLM_MODEL,
                    "accelerator": draw(st.sampled_from(ACCELERATORS)),
                    "replicas": draw(st.integers(1, 2)),
                }
                if draw(st.integers(0, 2)) == 0:  # prefill -> KV transfer -> decode stations
                    pool["deployment"] = {"mode": "disaggregated"}
            else:
                pool = {"id": f"p{j}", "slots": draw(st.integers(1, 6))}
                if job_classes and draw(st.integers(0, 3)) == 0:
                    pool["serves"] = draw(
                        st.lists(st.sampled_from(job_classes), min_size=1, unique=True)
                    )
                job_pools.append(pool)
            pools.append(pool)
        lat, lon = draw(coord)
        node: dict[str, Any] = {
            "id": f"n{i}",
            "kind": draw(
                st.sampled_from(("data_centre", "supercomputer", "intelligent_computing"))
            ),
            "lat": lat / 100,
            "lon": lon / 100,
            "price_cny_per_kwh": draw(st.sampled_from((0.3, 0.5, 0.7))),
            "carbon_g_per_kwh": draw(st.sampled_from((100, 500, 800))),
            "pools": pools,
        }
        if draw(st.booleans()):
            node["region"] = draw(st.sampled_from([r["id"] for r in regions]))
        nodes.append(node)
    # every class has a pool: a job class no `serves:` list names, or no job pool at all
    if job_classes and not job_pools:
        job_pools.append({"id": "jobs", "slots": draw(st.integers(1, 6))})
        nodes[0]["pools"].append(job_pools[-1])
    for name in job_classes:
        if not any("serves" not in p or name in p["serves"] for p in job_pools):
            job_pools[0]["serves"].append(name)
    if has_llm and not any("model" in p for n in nodes for p in n["pools"]):
        nodes[0]["pools"].append(
            {"id": "llm", "model": LLM_MODEL, "accelerator": "h20", "replicas": 1}
        )
    # a job needing two slots can only go to pools with two
    for cls in classes:
        if cls.get("slots_per_job", 1) > 1:
            for p in job_pools:
                p["slots"] = max(p["slots"], cls["slots_per_job"])

    minutes = draw(st.integers(60, 360))
    horizon: dict[str, Any] = {"duration": f"{minutes}min"}
    if draw(st.integers(0, 3)) == 0:
        horizon["warmup"] = f"{draw(st.integers(1, minutes - 1))}min"
    network: dict[str, Any] = draw(
        st.sampled_from(
            (
                {"generate": "full_mesh"},
                {"generate": "full_mesh", "per_hop_ms": 0},
                {"generate": "hub_and_spoke"},
                {"generate": "k_nearest", "k": 1},
                {"generate": "k_nearest", "k": 2},
            )
        )
    )
    policy = {
        "name": draw(st.sampled_from(POLICIES)),
        "on_failure": draw(st.sampled_from(("drop", "retry"))),
    }
    admission: dict[str, Any] = {}
    if draw(st.integers(0, 2)) == 0:
        admission["queue_limit"] = draw(st.sampled_from((0, 1, 5, 30)))
    if draw(st.integers(0, 2)) == 0:
        admission["max_wait"] = draw(st.sampled_from(("0s", "5s", "1min", "10min")))
    events = draw(st.lists(_event(minutes * 60, nodes, regions, classes), max_size=4))
    tree: dict[str, Any] = {
        "name": "drawn",
        "seed": draw(st.integers(0, 1000)),
        "horizon": {"start": "2026-03-02", **horizon},
        "regions": regions,
        "nodes": nodes,
        "network": network,
        "policy": policy,
        "admission": admission,
        "events": events,
        "outputs": {"figures": False},
        "demand": {
            "tokens_per_day": 1,
            "region_weights": "given" if given else "equal",
            "classes": classes,
        },
    }
    return Draft(
        tree=tree,
        weights=[draw(st.sampled_from((1.0, 2.0, 5.0))) for _ in classes],
        load=draw(st.floats(0.3, 3.0)),
        requests=draw(st.integers(200, 2500)),
    )


def _event(
    horizon_s: int, nodes: list[dict[str, Any]], regions: list[dict[str, Any]], classes: list
) -> st.SearchStrategy[dict[str, Any]]:
    at = st.integers(0, horizon_s - 1).map(lambda s: f"{s}s")
    span = st.one_of(st.none(), st.integers(60, horizon_s).map(lambda s: f"{s}s"))
    node = st.sampled_from(nodes)

    @st.composite
    def outage(draw: st.DrawFn) -> dict[str, Any]:
        event = {"kind": "node_outage", "node": draw(node)["id"], "at": draw(at)}
        duration = draw(span)
        if duration is not None:
            event["duration"] = duration
        return event

    @st.composite
    def capacity(draw: st.DrawFn) -> dict[str, Any]:
        n = draw(node)
        pool = draw(st.sampled_from(n["pools"]))
        kind = draw(st.sampled_from(("build_out", "retirement")))
        event = {"kind": kind, "node": n["id"], "pool": pool["id"], "at": draw(at)}
        if "slots" in pool:
            event["slots"] = draw(st.integers(1, pool["slots"] + 1))
        else:
            event["replicas"] = draw(st.integers(1, pool["replicas"]))
        if kind == "build_out" and draw(st.booleans()):
            event["lead_time"] = draw(st.sampled_from(("0s", "10min", "1h")))
        return event

    @st.composite
    def shock(draw: st.DrawFn) -> dict[str, Any]:
        event: dict[str, Any] = {
            "kind": "demand_shock",
            "at": draw(at),
            "factor": draw(st.sampled_from((0.0, 0.5, 2.0, 4.0))),
        }
        duration = draw(span)
        if duration is not None:
            event["duration"] = duration
        if draw(st.booleans()):
            names = [c["name"] for c in classes]
            event["classes"] = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
        if draw(st.integers(0, 2)) == 0:
            ids = [r["id"] for r in regions]
            event["regions"] = draw(st.lists(st.sampled_from(ids), min_size=1, unique=True))
        return event

    switch = st.builds(
        lambda t, p: {"kind": "policy_switch", "at": t, "policy": p}, at, st.sampled_from(POLICIES)
    )
    price = st.builds(
        lambda t, n, v: {"kind": "price_change", "at": t, "node": n["id"], "price_cny_per_kwh": v},
        at,
        node,
        st.sampled_from((0.1, 1.0)),
    )
    return st.one_of(outage(), capacity(), shock(), switch, price)


def calibrate(draft: Draft) -> tuple[dict[str, Any], Grid]:
    """Set each class's rate so that the offered work is ``load`` x the slots, with about
    ``requests`` arrivals over the horizon: service times (job classes) and output lengths (LLM
    classes, within 50 to 20,000 tokens) are stretched or shrunk to get there, then the rates
    follow. Where LLM lengths cannot stretch enough, ``demand.sample_fraction`` samples demand
    and capacity alike."""
    tree = yaml.safe_load(yaml.safe_dump(draft.tree))
    classes = tree["demand"]["classes"]
    total_w = sum(draft.weights)
    try:
        build_grid(scenario_of(tree))
    except ScenarioError:  # a sparse generated network that leaves a region unconnected
        tree["network"] = {"generate": "full_mesh"}
    for _ in range(3):  # LLM slots per replica depend on the lengths: settle them
        grid = build_grid(scenario_of(tree))
        slots = float(sum(p.slots for p in grid.pools))
        work = 0.0  # mean slot-seconds an arrival brings
        for c, cls in enumerate(classes):
            if cls["kind"] == "job":
                svc = grid.mean_job_s[c] * cls.get("slots_per_job", 1)
            else:
                llm = [p for p in grid.pools if grid.serves[c, p.index]]
                svc = sum(grid.service.mean_s(c, p.index) for p in llm) / len(llm)
            work += draft.weights[c] / total_w * svc
        rate = draft.load * slots / work  # arrivals a second, all classes
        stretch = rate * grid.scenario.horizon.duration / draft.requests
        if 0.7 < stretch < 1.5:
            break
        for cls in classes:
            key, low, high = (
                ("service", 1.0, 1e5)
                if cls["kind"] == "job"
                else (
                    "output_tokens",
                    50.0,
                    20_000.0,
                )
            )
            dist = cls[key]
            field = "value" if dist["dist"] == "constant" else "mean"
            dist[field] = _sig(min(max(dist[field] * stretch, low), high))
    for c, cls in enumerate(classes):
        cls["rate_per_s"] = _sig(max(rate * draft.weights[c] / total_w, 1e-6))
    # profiles, shocks and LLM lengths at their bounds: never more than the cap
    expected = expected_requests(scenario_of(tree)) * _shock_peak(tree)
    if expected > MAX_REQUESTS:
        if any(p.kind == "llm" for p in grid.pools):
            tree["demand"]["sample_fraction"] = _sig(MAX_REQUESTS / expected, 2)
        else:
            for cls in classes:
                cls["rate_per_s"] = _sig(cls["rate_per_s"] * MAX_REQUESTS / expected)
        grid = build_grid(scenario_of(tree))
    return tree, grid


def _shock_peak(tree: dict[str, Any]) -> float:
    factors = [e["factor"] for e in tree["events"] if e["kind"] == "demand_shock"]
    return math.prod(max(f, 1.0) for f in factors)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], float]:
    """A calibrated scenario tree and a flow tick (60 to 900 s)."""
    tree, grid = calibrate(draw(drafts()))
    # link outages cut links the network has (generated ones depend on the places)
    links = sorted(grid.topology.graph.edges)
    horizon_s = int(grid.scenario.horizon.duration)
    for _ in range(draw(st.integers(0, 2)) if links else 0):
        a, b = draw(st.sampled_from(links))
        event = {
            "kind": "link_outage",
            "a": a,
            "b": b,
            "at": f"{draw(st.integers(0, horizon_s - 1))}s",
        }
        if draw(st.booleans()):
            event["duration"] = f"{draw(st.integers(60, horizon_s))}s"
        tree["events"].insert(draw(st.integers(0, len(tree["events"]))), event)
    resolution = draw(st.sampled_from((60, 120, 300, 420, 600, 900)))
    note("scenario:\n" + yaml.safe_dump(tree, sort_keys=False))
    note(f"flow tick: {resolution} s")
    return tree, float(resolution)


# --- the property ----------------------------------------------------------------------------

_EXPLORE = os.environ.get("GRIDSIM_ACCOUNTING_EXAMPLES")
RANDOM = settings(
    max_examples=int(_EXPLORE) if _EXPLORE else 150,
    deadline=None,
    derandomize=not _EXPLORE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@RANDOM
@given(scenarios())
def test_accounting_holds_in_random_scenarios(drawn: tuple[dict[str, Any], float]) -> None:
    tree, resolution = drawn
    check_both(tree, resolution)


# --- one scenario per regime: the term it is about is positive -------------------------------

# Two regions, two nodes of 4 slots each (n0 near r0, n1 near r1), one job class of 2-minute
# exponential jobs. ``{rate}`` per second over three hours: 8 slots serve 1/15 a second.
REGIME = """
name: regime
seed: 3
horizon: {{start: 2026-03-02, duration: 3h}}
regions:
  - {{id: r0, lat: 31.2, lon: 121.5}}
  - {{id: r1, lat: 30.7, lon: 104.1}}
nodes:
  - {{id: n0, kind: data_centre, lat: 31.0, lon: 121.0, pools: [{{id: p, slots: 4}}]}}
  - {{id: n1, kind: data_centre, lat: 30.0, lon: 104.0, pools: [{{id: p, slots: 4}}]}}
network: {{generate: full_mesh}}
policy: {{name: {policy}, on_failure: {on_failure}}}
admission: {admission}
events: {events}
outputs: {{figures: false}}
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - name: jobs
      kind: job
      rate_per_s: {rate}
      service: {{dist: exponential, mean: 120}}
      {patience}
"""


def regime(
    rate: float,
    policy: str = "nearest",
    on_failure: str = "retry",
    admission: str = "{}",
    events: str = "[]",
    patience: str = "",
) -> dict[str, Any]:
    text = REGIME.format(
        rate=rate,
        policy=policy,
        on_failure=on_failure,
        admission=admission,
        events=events,
        patience=f"patience: {patience}" if patience else "",
    )
    tree: dict[str, Any] = yaml.safe_load(text)
    return tree


def positive(summaries: tuple[dict, dict], term: str, *where: str) -> None:
    """``term`` > 0 nationally and in the named blocks (``by_node/n0``), at both fidelities."""
    for fidelity, s in zip(("request", "flow"), summaries, strict=True):
        assert s["requests"][term] > 0, (fidelity, term, s["requests"])
        for path in where:
            group, key = path.split("/", 1)
            r = s[group][key]["requests"]
            assert r[term] > 0, (fidelity, path, term, r)


def test_overload_without_admission_builds_a_backlog() -> None:
    """rho = 2 with nothing to turn work away: half of what arrives is still queued at the end
    (in flight), and it is counted there, not lost from the books."""
    summaries = check_both(regime(rate=2 / 15), resolution_s=300)
    positive(summaries, "in_flight", "by_node/n0", "by_node/n1", "by_region/r0", "by_class/jobs")
    for s in summaries:
        r = s["requests"]
        assert r["in_flight"] > 0.3 * r["arrived"], r
        assert r["dropped"] == r["abandoned"] == r["lost"] == 0, r


def test_outage_with_on_failure_drop_loses_requests() -> None:
    """Node n0 fails an hour in, for an hour, with on_failure: drop: what it held is lost (at
    flow fidelity, what was queued there: rho = 2 builds a queue at both nodes)."""
    events = "[{kind: node_outage, node: n0, at: 1h, duration: 1h}]"
    summaries = check_both(regime(rate=2 / 15, on_failure="drop", events=events), 300)
    positive(summaries, "lost", "by_node/n0", "by_pool/n0/p", "by_region/r0")
    for s in summaries:
        assert s["by_node"]["n1"]["requests"]["lost"] == 0  # n1 never failed


def test_outage_with_on_failure_retry_loses_nothing() -> None:
    events = "[{kind: node_outage, node: n0, at: 1h}]"  # down for good
    summaries = check_both(regime(rate=0.05, on_failure="retry", events=events), 300)
    for s in summaries:
        assert s["requests"]["lost"] == 0, s["requests"]
        assert s["by_node"]["n1"]["requests"]["served"] > 0


def test_patience_abandons() -> None:
    """rho = 1.5 and users who wait half a minute on average: many give up."""
    patience = "{dist: exponential, mean: 30}"
    summaries = check_both(regime(rate=0.1, patience=patience), resolution_s=300)
    positive(summaries, "abandoned", "by_node/n0", "by_node/n1", "by_class/jobs")


def test_queue_limit_drops() -> None:
    summaries = check_both(regime(rate=0.1, admission="{queue_limit: 2}"), resolution_s=300)
    positive(summaries, "dropped", "by_node/n0", "by_node/n1", "by_class/jobs")


def test_max_wait_drops() -> None:
    summaries = check_both(regime(rate=0.1, admission="{max_wait: 1min}"), resolution_s=300)
    positive(summaries, "dropped", "by_node/n0", "by_node/n1", "by_class/jobs")


# --- the project's scenarios at flow fidelity ------------------------------------------------

# (file, --set changes). Runs that take over ~20 s at a 5-minute tick are shortened
# (times on the 2-core machine these were written on): demand-shock.yaml is 42 days (~50 s):
# 4 days from 14 March keep the shock's start (16 March); growth-*.yaml are a year (2 minutes
# at 1 h, over 10 at 15 min): 3 days from 29 April keep Qingyang's build-out (1 May).
# baseline.yaml at these ticks is tests/test_tick_convergence.py's.
PROJECT = [
    ("baseline-hour.yaml", []),
    ("demand-shock.yaml", ["horizon.start=2026-03-14", "horizon.duration=4d"]),
    ("east-west.yaml", []),
    ("green.yaml", []),
    ("growth-continued.yaml", ["horizon.start=2026-04-29", "horizon.duration=3d"]),
    ("growth-saturating.yaml", ["horizon.start=2026-04-29", "horizon.duration=3d"]),
    ("hub-outage.yaml", []),
    # the token market (30 models, three tiers: priority pools) over its first day
    ("token-market.yaml", ["horizon.duration=1d"]),
    ("token-market-dedicated.yaml", ["horizon.duration=1d"]),
    # a week of training on the fleet's valleys (two days of it), and the hand-worked day
    ("day-night.yaml", ["horizon.duration=2d"]),
    ("validation/cross_fidelity.yaml", []),
    ("validation/day-night.yaml", []),
    ("validation/disaggregated.yaml", []),
    ("validation/mmc.yaml", []),
    ("validation/overload.yaml", []),
    # gridsim plan's hand-worked case: job pools under growth, its first month
    ("validation/plan-hand.yaml", ["horizon.duration=30d"]),
]


def test_project_list_covers_every_scenario() -> None:
    files = {str(p.relative_to(SCENARIOS)) for p in SCENARIOS.glob("*.yaml")}
    files |= {str(p.relative_to(SCENARIOS)) for p in (SCENARIOS / "validation").glob("*.yaml")}
    assert files - {name for name, _ in PROJECT} == {"baseline.yaml"}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:demand.sample_pools applies at request fidelity only")
@pytest.mark.parametrize("tick", ["5min", "15min", "1h"])
@pytest.mark.parametrize(("name", "sets"), PROJECT, ids=[name for name, _ in PROJECT])
def test_project_scenario_accounting(name: str, sets: list[str], tick: str) -> None:
    """No negative term, the identity in every block, the levels agreeing, and the engine's
    own figures (per-tick identity, no negative term, no pool busier than its slots)."""
    scenario = load_scenario(
        SCENARIOS / name, sets=["fidelity=flow", f"horizon.resolution={tick}", *sets]
    )
    engine, summary = run_flow(scenario)
    where = f"{name} at {tick}:"
    check_all(summary, fluid=True, where=where)
    check_flow_engine(engine, summary, where)
