"""Flow engine: agreement with the request engine, invariants, events and capacity KPIs."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

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


def engine_for(scenario: gs.Scenario) -> tuple[FlowEngine, dict[str, Any]]:
    """The engine after a run (its arrays) and the run's summary."""
    engine = FlowEngine(build_grid(scenario), seed=scenario.seed)
    summary = engine.run(schedule(engine)).summary
    return engine, summary


OVERLOAD = [
    "demand.tokens_per_day=1.4e10",
    "admission.max_wait=5min",
    "horizon.duration=12h",
]


def test_conservation_and_capacity_hold_at_every_tick_under_overload() -> None:
    scenario = load_scenario(CROSS, sets=OVERLOAD)
    engine, s = engine_for(scenario)
    assert engine.max_conservation_gap < 1e-9
    assert engine.min_term >= 0.0
    assert engine.max_load <= 1 + 1e-9
    assert s["requests"]["dropped"] > 0  # the overload is real
    assert s["requests"]["in_flight"] == 0  # a maximum wait bounds every queue: no backlog


def test_in_flight_is_the_backlog_by_region_class_and_node() -> None:
    """Overload with nothing to bound the queues: in flight at the end, in every block, is what
    the engine still holds in its queues by region, class and pool (three rounded counts:
    within 1.5)."""
    unbounded = [sets for sets in OVERLOAD if not sets.startswith("admission.")]
    scenario = load_scenario(CROSS, sets=unbounded)
    engine, s = engine_for(scenario)
    assert engine.max_conservation_gap < 1e-9 and engine.min_term >= 0.0
    queued = engine.backlog  # (regions, classes, pools)
    assert queued.sum() > 0
    layout = engine.recorder.layout
    node_of = np.asarray(layout.pool_node)
    expected = [(s, queued.sum())]
    expected += [(s["by_class"][n], queued[:, i].sum()) for i, n in enumerate(layout.class_names)]
    expected += [(s["by_region"][n], queued[i].sum()) for i, n in enumerate(layout.region_ids)]
    expected += [
        (s["by_node"][n], queued[:, :, node_of == i].sum()) for i, n in enumerate(layout.node_ids)
    ]
    for block, waiting in expected:
        r = block["requests"]
        assert abs(r["in_flight"] - waiting) <= 1.5, (r, waiting)
    assert any("grows without bound" in w for w in s["engine_warnings"])
    for block in (s, *s["by_class"].values(), *s["by_region"].values(), *s["by_node"].values()):
        r = block["requests"]
        assert min(r["served"], r["dropped"], r["abandoned"], r["lost"], r["in_flight"]) >= 0, r
    regions = sum(b["requests"]["in_flight"] for b in s["by_region"].values())
    assert abs(regions - queued.sum()) <= 1.5 * len(s["by_region"]) + 0.5
    result = gs.run(scenario, fidelity="flow")
    pools = result.timeseries[result.timeseries["entity_kind"] == "pool"]
    wide = pools.pivot_table(index=["entity_id", "time_s"], columns="metric", values="value")
    assert (wide["busy_slot_s"] <= wide["capacity_slot_s"] * (1 + 1e-9)).all()


QUEUE = """
name: queue
fidelity: flow
horizon: {{start: 2026-01-01, duration: 1h, resolution: 1min}}
regions: [{{id: a, lat: 30, lon: 110, share: 3}}, {{id: b, lat: 31, lon: 111, share: 1}}]
nodes:
  - {{id: dc, kind: data_centre, lat: 30, lon: 110, pools: [{{id: jobs, slots: 1}}]}}
network: {{generate: full_mesh}}
admission: {admission}
demand:
  tokens_per_day: 1
  region_weights: given
  classes:
    - {{name: jobs, kind: job, rate_per_s: 2, service: {{dist: constant, value: 1.0}}}}
"""


def test_in_flight_is_the_queue_left_by_a_hand_calculation() -> None:
    """One slot, jobs of exactly 1 s arriving at 2/s for an hour, 3/4 from region a: the slot
    serves 1 job/s (3,600), the other 3,600 are still queued at the end (no wait limit), 3/4 of
    them from a."""
    s = gs.run(load_scenario_text(QUEUE.format(admission="{}"))).summary
    assert s["requests"] == {
        "arrived": 7200,
        "served": 3600,
        "dropped": 0,
        "abandoned": 0,
        "in_flight": 3600,
        "lost": 0,
        "retried": 0,
    }
    for region, share in (("a", 0.75), ("b", 0.25)):
        r = s["by_region"][region]["requests"]
        counts = (r["arrived"], r["served"], r["dropped"], r["in_flight"])
        assert counts == (7200 * share, 3600 * share, 0, 3600 * share)
    assert s["by_node"]["dc"]["requests"]["in_flight"] == 3600


def test_a_wait_limit_turns_the_excess_away_on_arrival() -> None:
    """The same queue with at most 5 minutes of waiting (M/D/1 with deterministic patience at
    load 2): the slot is busy all the time and serves 3,600; under FCFS an arrival whose wait
    would pass 5 minutes is turned away at once, so the other 3,600 are dropped and nothing is
    left queued. The queue's steady state near its limit keeps the slot busy all but a share of
    about e^-300 of the time; the drops follow each region's share of arrivals."""
    s = gs.run(load_scenario_text(QUEUE.format(admission="{max_wait: 5min}"))).summary
    r = s["requests"]
    assert r["arrived"] == 7200
    assert r["served"] == pytest.approx(3600, abs=2)
    assert r["in_flight"] == 0
    assert r["dropped"] == 7200 - r["served"]
    for region, share in (("a", 0.75), ("b", 0.25)):
        part = s["by_region"][region]["requests"]
        assert part["served"] == pytest.approx(3600 * share, abs=2)
        assert part["dropped"] == pytest.approx(3600 * share, abs=2)


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


CUT_OFF = """
name: cut-off
fidelity: flow
horizon: {start: 2026-03-02, duration: 60min}
regions: [{id: r0, lat: 20, lon: 100}]
network: {generate: full_mesh}
nodes:
  - {id: n0, kind: data_centre, lat: 20.0, lon: 100.0, pools: [{id: p0, accelerator: h100,
     model: qwen3-32b, replicas: 1, deployment: {mode: disaggregated}}]}
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - {name: c0, rate_per_s: 0.08695, input_tokens: {dist: exponential, mean: 300.0},
       output_tokens: {dist: exponential, mean: 19160.0}}
events: [{kind: link_outage, a: "region:r0", b: "node:n0", at: 1s}]
admission: {queue_limit: 0}
policy: {name: nearest, on_failure: drop}
outputs: {figures: false}
"""


def test_a_block_with_no_reachable_pair_still_closes() -> None:
    # hypothesis's find: the only link cut one second in leaves no (class, pool) pair to
    # reduce waits over; the block must close with nothing rather than fail to reshape
    result = gs.run(gs.load_scenario_text(CUT_OFF), fidelity="flow")
    r = result.summary["requests"]
    assert r["arrived"] == r["served"] + r["dropped"] + r["abandoned"] + r["lost"] + r["in_flight"]
    assert r["dropped"] > 0.9 * r["arrived"]  # nothing reaches n0 after the first second


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
    # Demand is held per hourly tick at the hour's middle: the shortfall starts with the first
    # tick whose middle is past the crossing, h = floor(t / 1 h - 1/2) + 1.
    first_tick_s = (math.floor(expected_s / 3600 - 0.5) + 1) * 3600.0
    assert capacity["shortfall_at_s"] == first_tick_s
    when = dt.datetime.fromisoformat(capacity["shortfall_at"])  # the date, from 2026-01-01
    assert when == dt.datetime(2026, 1, 1) + dt.timedelta(seconds=first_tick_s)
    # Headroom 1 - D(t) / C per hourly tick, D(t) = D0 exp(k t) with k = ln(1 + r) per month
    # (each hour at its middle). Over the horizon T its time-mean is 1 - D0/C (e^kT - 1)/(kT)
    # (the hourly midpoint rule is off by (k h)^2 / 24 ~ 2e-10), and its minimum the last
    # hour's, 1 - D0/C exp(k (T - 30 min)).
    horizon_s = 730 * 86400
    k = math.log(1 + rate) / month_s
    mean = 1 - d0 / slots * math.expm1(k * horizon_s) / (k * horizon_s)
    last = 1 - d0 / slots * math.exp(k * (horizon_s - 1800))
    assert capacity["headroom"]["mean"] == pytest.approx(mean, abs=1e-9)
    assert capacity["headroom"]["min"] == pytest.approx(last, abs=1e-9)


def test_auto_fidelity_uses_flow_beyond_a_day() -> None:
    scenario = load_scenario_text(GROWTH.format(slots=10, d0=1.0, rate=0.0))
    assert gs.run(scenario).summary["fidelity"] == "flow"


def erlang_c_by_erlang_b(c: int, a: float) -> float:
    """Erlang C from Erlang B's recursion B(k) = a B(k-1) / (k + a B(k-1)), B(0) = 1, which is
    stable in floats for any c: C = c B / (c - a (1 - B))."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return c * b / (c - a * (1 - b))


def test_erlang_c_matches_the_textbook_and_is_stable() -> None:
    # M/M/1: P(wait) = rho. M/M/2 at a = 1: C = 1/3 (textbook).
    assert erlang_c(np.array([1.0]), np.array([0.7]))[0] == pytest.approx(0.7, rel=1e-12)
    assert erlang_c(np.array([2.0]), np.array([1.0]))[0] == pytest.approx(1 / 3, rel=1e-12)
    # up to thousands of servers, against the recursion and scipy's Poisson pmf/cdf ratio
    for c, a in ((8, 7.2), (64, 60.0), (500, 480.0), (5000, 4900.0), (5000, 4999.0)):
        got = erlang_c(np.array([float(c)]), np.array([a]))[0]
        assert got == pytest.approx(erlang_c_by_erlang_b(c, a), rel=1e-9), (c, a)
        top = stats.poisson.pmf(c, a) * c / (c - a)
        assert got == pytest.approx(top / (stats.poisson.cdf(c - 1, a) + top), rel=1e-9)
    # saturated and idle pools; arrays broadcast as the engine calls it (ticks x pools)
    assert erlang_c(np.array([8.0]), np.array([9.0]))[0] == 1.0
    assert erlang_c(np.array([8.0]), np.array([0.0]))[0] == 0.0
    loads = np.array([[0.5, 7.2, 60.0], [0.9, 4.0, 63.0]])
    got = erlang_c(np.array([[1.0, 8.0, 64.0]]), loads)
    want = [
        [erlang_c_by_erlang_b(c, a) for c, a in zip((1, 8, 64), row, strict=True)] for row in loads
    ]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # fractional slots (the gamma-function extension) lie between their integer neighbours
    mid = erlang_c(np.array([8.5]), np.array([7.2]))[0]
    assert erlang_c_by_erlang_b(9, 7.2) < mid < erlang_c_by_erlang_b(8, 7.2)


def test_demand_shock_in_both_engines() -> None:
    """Chat (60 % of 4.5e9 tokens/day, 1155 + 211 tokens a request, sampled at 0.25) is doubled
    from 1 h to 3 h. Its rate in hour h is the national rate x diurnal[h] / mean(diurnal), so
    over six hours: calm = rate x 3600 x sum(diurnal[0:6]) / mean, and the shock adds hours 1
    and 2 again: a factor 1 + (0.3 + 0.3) / 2.2 = 14/11 for this profile."""
    shock = "events=[{kind: demand_shock, factor: 2, at: 1h, duration: 2h, classes: [chat]}]"
    scenario = load_scenario(CROSS, sets=["horizon.duration=6h", shock])
    calm_scenario = load_scenario(CROSS, sets=["horizon.duration=6h"])
    diurnal = np.asarray(calm_scenario.demand.classes[0].diurnal)
    rate = 4.5e9 * 0.6 * 0.25 / (1155 + 211) / 86400  # requests/s, before the profile
    calm_expected = rate * 3600 * diurnal[:6].sum() / diurnal.mean()
    extra_expected = 1 + diurnal[1:3].sum() / diurnal[:6].sum()
    assert extra_expected == pytest.approx(14 / 11, rel=1e-12)
    hit, flow = engine_for(scenario)
    quiet, calm = engine_for(calm_scenario)
    chat_calm = quiet.recorder.arrived[0].sum()
    assert chat_calm == pytest.approx(calm_expected, rel=1e-9)
    assert hit.recorder.arrived[0].sum() / chat_calm == pytest.approx(extra_expected, rel=1e-9)
    assert abs(calm["by_class"]["chat"]["requests"]["arrived"] - calm_expected) <= 0.5
    assert (
        flow["by_class"]["batch"]["requests"]["arrived"]
        == (calm["by_class"]["batch"]["requests"]["arrived"])
    )
    # The request engine draws Poisson arrivals with those means: each count within the
    # Poisson interval of probability 1 - 1e-6 around its hand-computed mean.
    shocked = gs.run(scenario, fidelity="request").summary["by_class"]
    unshocked = gs.run(calm_scenario, fidelity="request").summary["by_class"]
    for by_class, mean in ((shocked, calm_expected * extra_expected), (unshocked, calm_expected)):
        low, high = stats.poisson.interval(1 - 1e-6, mean)
        assert low <= by_class["chat"]["requests"]["arrived"] <= high, (low, high)
    assert shocked["batch"]["requests"]["arrived"] == unshocked["batch"]["requests"]["arrived"]


@pytest.mark.parametrize("fidelity", ["request", "flow"])
def test_a_queue_growing_without_bound_is_reported_with_when_it_began(fidelity: str) -> None:
    """M/M/8 at rho 1.2 with nothing bounding the queue: both engines say the queue grows
    without bound, from the start; at rho 0.9 neither says anything."""
    mmc = ROOT / "scenarios" / "validation" / "mmc.yaml"
    sets = ["horizon.duration=1h", "horizon.resolution=1min", f"fidelity={fidelity}"]
    over = gs.run(load_scenario(mmc, sets=[*sets, "demand.classes[jobs].rate_per_s=9.6"]))
    warnings = over.summary["engine_warnings"]
    assert len(warnings) == 1 and "grows without bound from t = 0.00 days" in warnings[0]
    assert "solo/slots" in warnings[0]
    calm = gs.run(load_scenario(mmc, sets=sets))
    assert calm.summary["engine_warnings"] == []
