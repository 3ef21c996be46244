"""Flow engine: agreement with the request engine, invariants, events and capacity KPIs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gridsim as gs
from gridsim.engine.events import schedule
from gridsim.engine.flow import FlowEngine
from gridsim.engine.queueing import erlang_c
from gridsim.grid import build_grid
from gridsim.scenario import load_scenario, load_scenario_text

ROOT = Path(__file__).resolve().parents[1]
CROSS = ROOT / "scenarios" / "validation" / "cross_fidelity.yaml"


def node_util(summary: dict, node: str) -> float:
    return float(summary["by_node"][node]["utilization"]["mean"])


def test_cross_fidelity_request_and_flow_agree() -> None:
    scenario = load_scenario(CROSS)
    req = gs.run(scenario, fidelity="request").summary
    flow = gs.run(scenario, fidelity="flow").summary
    for kind in ("input", "output"):
        assert flow["tokens"][kind]["served"] == pytest.approx(
            req["tokens"][kind]["served"], rel=0.01
        )
    assert flow["latency_s"]["mean"] == pytest.approx(req["latency_s"]["mean"], rel=0.10)
    assert flow["latency_s"]["p95"] == pytest.approx(req["latency_s"]["p95"], rel=0.20)
    for node in req["by_node"]:
        assert abs(node_util(flow, node) - node_util(req, node)) < 0.02, node
    assert req["utilization"]["mean"] > 0.6  # loaded enough for queueing to matter


def engine_for(scenario: gs.Scenario) -> FlowEngine:
    engine = FlowEngine(build_grid(scenario), seed=scenario.seed)
    engine.run(schedule(engine))
    return engine


OVERLOAD = [
    "demand.tokens_per_day=1.4e10",
    "admission.max_wait=5min",
    "horizon.duration=12h",
]


def test_conservation_and_capacity_hold_at_every_tick_under_overload() -> None:
    scenario = load_scenario(CROSS, sets=OVERLOAD)
    engine = engine_for(scenario)
    assert engine.max_conservation_gap < 1e-9
    assert engine.max_load <= 1 + 1e-9
    result = gs.run(scenario, fidelity="flow")
    s = result.summary
    assert s["requests"]["dropped"] > 0  # the overload is real
    for block in (s, *s["by_class"].values(), *s["by_region"].values()):
        r = block["requests"]
        assert r["arrived"] == r["served"] + r["dropped"] + r["in_flight"]
    pools = result.timeseries[result.timeseries["entity_kind"] == "pool"]
    wide = pools.pivot_table(index=["entity_id", "time_s"], columns="metric", values="value")
    assert (wide["busy_slot_s"] <= wide["capacity_slot_s"] * (1 + 1e-9)).all()


def test_flow_is_deterministic() -> None:
    scenario = load_scenario(CROSS, sets=OVERLOAD)
    a, b = gs.run(scenario, fidelity="flow"), gs.run(scenario, fidelity="flow")
    assert json.dumps(a.summary) == json.dumps(b.summary)
    pd.testing.assert_frame_equal(a.timeseries, b.timeseries)


def test_outage_moves_demand_and_the_failed_node_serves_nothing() -> None:
    base = ["horizon.duration=12h", "policy.name=nearest"]
    outage = "events=[{kind: node_outage, node: yrd, at: 4h, duration: 3h}]"
    calm = gs.run(load_scenario(CROSS, sets=base), fidelity="flow")
    hit = gs.run(load_scenario(CROSS, sets=[*base, outage]), fidelity="flow")
    series = hit.timeseries
    busy = series[(series["entity_id"] == "yrd/chat") & (series["metric"] == "busy_slot_s")]
    down = busy[(busy["time_s"] >= 4 * 3600) & (busy["time_s"] < 7 * 3600)]
    assert len(down) > 0 and (down["value"] == 0).all()
    after = busy[busy["time_s"] >= 7 * 3600 + 300]
    assert after["value"].sum() > 0  # back after repair
    shaoguan = "shaoguan"
    assert (
        hit.summary["by_node"][shaoguan]["requests"]["served"]
        > (calm.summary["by_node"][shaoguan]["requests"]["served"])
    )
    chat_calm = calm.summary["by_class"]["chat"]["latency_s"]["mean"]
    chat_hit = hit.summary["by_class"]["chat"]["latency_s"]["mean"]
    assert chat_hit > chat_calm


def test_build_out_raises_capacity_at_its_date() -> None:
    event = (
        "events=[{kind: build_out, node: guian, pool: batch, replicas: 4, "
        "at: 2026-03-02, lead_time: 6h}]"
    )
    result = gs.run(load_scenario(CROSS, sets=["horizon.duration=12h", event]), fidelity="flow")
    series = result.timeseries
    cap = series[(series["entity_id"] == "guian/batch") & (series["metric"] == "capacity_slot_s")]
    before = cap[cap["time_s"] < 6 * 3600]["value"]
    after = cap[cap["time_s"] >= 6 * 3600]["value"]
    assert after.min() == pytest.approx(2 * before.max(), rel=1e-9)  # 4 + 4 replicas


GROWTH = """
name: growth
fidelity: flow
horizon: {{start: 2026-01-01, duration: 730d, resolution: 1h}}
regions: [{{id: here, lat: 30, lon: 110}}]
nodes:
  - {{id: dc, kind: data_centre, lat: 30, lon: 110, pools: [{{id: jobs, slots: {slots}}}]}}
network: {{generate: full_mesh}}
demand:
  tokens_per_day: 1
  region_weights: equal
  growth: {{law: exponential, rate_per_month: {rate}}}
  classes:
    - {{name: jobs, kind: job, rate_per_s: {d0}, service: {{dist: constant, value: 1.0}}}}
"""


@pytest.mark.parametrize(("slots", "d0", "rate"), [(100, 40.0, 0.05), (1000, 900.0, 0.01)])
def test_shortfall_date_matches_the_hand_calculation(slots: int, d0: float, rate: float) -> None:
    """Capacity C slots, demand D0 x (1 + r)^months Erlangs: demand reaches C after
    ln(C / D0) / ln(1 + r) months (the continuous rate of the monthly law is ln(1 + r))."""
    scenario = load_scenario_text(GROWTH.format(slots=slots, d0=d0, rate=rate))
    capacity = gs.run(scenario).summary["capacity"]
    month_s = 30.436875 * 86400
    expected_s = math.log(slots / d0) / math.log(1 + rate) * month_s
    assert capacity["shortfall_at_s"] == pytest.approx(expected_s, abs=3600.0)
    assert capacity["shortfall_at"].startswith("20")
    assert capacity["headroom"]["min"] < 0 < capacity["headroom"]["mean"] + 1


def test_auto_fidelity_uses_flow_beyond_a_day() -> None:
    scenario = load_scenario_text(GROWTH.format(slots=10, d0=1.0, rate=0.0))
    assert gs.run(scenario).summary["fidelity"] == "flow"


def test_erlang_c_matches_the_textbook_and_is_stable() -> None:
    assert erlang_c(np.array([1.0]), np.array([0.7]))[0] == pytest.approx(0.7)
    assert erlang_c(np.array([2.0]), np.array([1.0]))[0] == pytest.approx(1 / 3)
    big = erlang_c(np.array([5000.0]), np.array([4900.0]))[0]
    assert 0 < big < 1 and np.isfinite(big)
    assert erlang_c(np.array([8.0]), np.array([9.0]))[0] == 1.0


def test_demand_shock_in_both_engines() -> None:
    shock = "events=[{kind: demand_shock, factor: 2, at: 1h, duration: 2h, classes: [chat]}]"
    scenario = load_scenario(CROSS, sets=["horizon.duration=6h", shock])
    flow = gs.run(scenario, fidelity="flow").summary
    calm = gs.run(load_scenario(CROSS, sets=["horizon.duration=6h"]), fidelity="flow").summary
    extra = (
        flow["by_class"]["chat"]["requests"]["arrived"]
        / calm["by_class"]["chat"]["requests"]["arrived"]
    )
    assert 1.2 < extra < 1.6  # two of six hours doubled (a daytime-light profile at night)
    request = gs.run(scenario, fidelity="request").summary
    calm_request = gs.run(load_scenario(CROSS, sets=["horizon.duration=6h"]), fidelity="request")
    ratio = (
        request["by_class"]["chat"]["requests"]["arrived"]
        / (calm_request.summary["by_class"]["chat"]["requests"]["arrived"])
    )
    assert ratio == pytest.approx(extra, rel=0.03)  # both engines shock alike
    batch = request["by_class"]["batch"]["requests"]["arrived"]
    assert batch == calm_request.summary["by_class"]["batch"]["requests"]["arrived"]
