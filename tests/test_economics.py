"""Economics against a hand calculation on a one-node scenario.

The expected figures are computed here from first principles, not with gridsim.economics'
formulas: with a pool up all the horizon T, its cards draw idle x TDP all the time and
(1 - idle) x TDP for the busy share of the slots, so

    kWh = cards x TDP x PUE x (idle x T + (1 - idle) x busy_slot_seconds / slots) / 3.6e6

(busy_slot_seconds summed over the whole run); cost = kWh x price; carbon = kWh x g/kWh;
revenue = input tokens x input price + output tokens x output price (CNY per 1e6 tokens).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import gridsim as gs
from gridsim import economics as econ
from gridsim.catalog import builtin_catalog
from gridsim.run import Result

T = 3600.0
ONE_NODE = """
name: one-node
horizon: {duration: 1h}
regions:
  - {id: here, lat: 30.0, lon: 110.0}
nodes:
  - id: solo
    kind: intelligent_computing
    lat: 30.0
    lon: 110.0
    region: here
    pue: 1.2
    price_cny_per_kwh: 0.5
    carbon_g_per_kwh: 600
    pools:
      - {id: llm, model: deepseek-v3, accelerator: h20, replicas: 1}
network: {generate: full_mesh, per_hop_ms: 0}
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - name: chat
      model: deepseek-v3
      rate_per_s: 1.0
      input_tokens: {dist: constant, value: 1000}
      output_tokens: {dist: constant, value: 200}
outputs: {requests: true, timeseries_interval: 5min}
policy: {name: nearest}
"""


def _busy_slot_s(result: Result, pool: str) -> float:
    ts = result.timeseries
    rows = ts[(ts["entity_id"] == pool) & (ts["metric"] == "busy_slot_s")]
    return float(rows["value"].sum())


@pytest.fixture(scope="module")
def one_node() -> Result:
    return gs.run(gs.load_scenario_text(ONE_NODE))


def test_energy_cost_carbon_by_hand(one_node: Result) -> None:
    r = one_node
    pool = r.pools.iloc[0]
    assert pool["accelerators"] == 16  # one DeepSeek-V3 replica on H20 (16 x 96 GB)
    cards, tdp, idle = pool["accelerators"], pool["accelerator_tdp_w"], 0.3
    slots = pool["slots"]
    busy = _busy_slot_s(r, "solo/llm")
    # every request holds its slot for the same time (constant lengths): the busy series
    # must be that time x requests served, when none is left in flight
    reqs = r.requests
    hold = (reqs["service_end_s"] - reqs["start_s"]).to_numpy()
    assert hold.max() == pytest.approx(hold.min(), rel=1e-9)
    in_flight = r.summary["requests"]["in_flight"]
    assert hold.sum() * (1 - 1e-12) <= busy <= (hold.sum() + in_flight * hold[0]) * (1 + 1e-12)
    if in_flight == 0:
        assert busy == pytest.approx(hold.sum(), rel=1e-9)
    kwh = cards * tdp * 1.2 * (idle * T + (1 - idle) * busy / slots) / 3.6e6
    total = econ.economics_summary(r)
    assert total["energy_kwh"] == pytest.approx(kwh, rel=1e-9)
    assert total["electricity_cny"] == pytest.approx(kwh * 0.5, rel=1e-9)
    assert total["carbon_kg"] == pytest.approx(kwh * 600 / 1000, rel=1e-9)
    # What the hand calculation took from gridsim, checked on its own: the H20's board power is
    # 400 W (NVIDIA's figure), and a pool is never busy for more than all its slots all the
    # time. So gridsim's energy lies between 16 cards x 400 W x 30 % (idle) x PUE 1.2 and
    # 16 x 400 W x 1.2 (flat out) for one hour: 2.304 and 7.68 kWh.
    assert tdp == 400.0
    assert 0 < busy <= slots * T
    assert 2.304 < total["energy_kwh"] < 7.68
    # national scale (sample_fraction 1): per day = x 24
    assert total["national_energy_kwh_per_day"] == pytest.approx(kwh * 24, rel=1e-9)
    assert total["national_carbon_t_per_day"] == pytest.approx(kwh * 0.6 * 24 / 1e3, rel=1e-9)
    json.dumps(total, allow_nan=False)  # summary.json refuses NaN


def test_capex_revenue_and_margin_by_hand(one_node: Result) -> None:
    r = one_node
    served_in = int(r.flows["input_tokens"].sum())
    served_out = int(r.flows["output_tokens"].sum())
    assert served_in == 1000 * r.summary["requests"]["served"]
    assert served_out == 200 * r.summary["requests"]["served"]
    v3 = builtin_catalog().models["deepseek-v3"]
    revenue = (served_in * v3.price_in_cny_per_m + served_out * v3.price_out_cny_per_m) / 1e6
    year_s = 8760 * 3600
    cards_capex = 16 * 110_000 * T / (5 * year_s)
    facility_capex = 16 * 400 / 1e6 * 10e6 * 7.0 * T / (15 * year_s)
    table = econ.by_node(r)
    row = table.iloc[0]
    assert row["revenue_cny"] == pytest.approx(revenue, rel=1e-9)
    assert row["capex_cny"] == pytest.approx(cards_capex + facility_capex, rel=1e-9)
    cost = row["electricity_cny"] + cards_capex + facility_capex
    assert row["cost_cny"] == pytest.approx(cost, rel=1e-9)
    assert row["margin_cny"] == pytest.approx(revenue - cost, rel=1e-9)
    tokens = served_in + served_out
    assert row["cost_cny_per_m_tokens"] == pytest.approx(cost / tokens * 1e6, rel=1e-9)
    # a quarter of input tokens at the cache-hit price
    a = econ.Assumptions(cache_hit_share=0.25)
    cached = (
        served_in * (0.75 * v3.price_in_cny_per_m + 0.25 * v3.price_cache_hit_cny_per_m)
        + served_out * v3.price_out_cny_per_m
    ) / 1e6
    assert econ.by_node(r, a).iloc[0]["revenue_cny"] == pytest.approx(cached, rel=1e-9)


def test_time_of_use_and_network_price(one_node: Result) -> None:
    r = one_node
    flat = econ.economics_summary(r)
    tou = [1.0] * 24
    tou[0] = 3.0  # the one simulated hour starts at midnight
    a = econ.Assumptions(tou_multipliers=tuple(tou), network_cny_per_gb=0.5, bytes_per_token=4)
    priced = econ.economics_summary(r, a)
    assert priced["electricity_cny"] == pytest.approx(3 * flat["electricity_cny"], rel=1e-9)
    gb = flat["tokens"] * 4 / 1e9
    assert priced["network_cny"] == pytest.approx(gb * 0.5, rel=1e-9)
    with pytest.raises(ValueError, match="24"):
        econ.Assumptions(tou_multipliers=(1.0,) * 23)


def test_outage_draws_no_power() -> None:
    text = ONE_NODE + "events:\n  - {kind: node_outage, node: solo, at: 20min, duration: 20min}\n"
    r = gs.run(gs.load_scenario_text(text))
    pool = r.pools.iloc[0]
    busy = _busy_slot_s(r, "solo/llm")
    up = T - 20 * 60
    kwh = pool["accelerators"] * 400 * 1.2 * (0.3 * up + 0.7 * busy / pool["slots"]) / 3.6e6
    assert econ.economics_summary(r)["energy_kwh"] == pytest.approx(kwh, rel=1e-9)
    per_interval = econ.pool_intervals(r)
    down = per_interval[(per_interval["time_s"] >= 1200) & (per_interval["time_s"] < 2400)]
    assert len(down) == 4 and (down["energy_kwh"] == 0).all()


def test_job_pool_uses_slot_power_assumption(minimal_yaml: str) -> None:
    r = gs.run(gs.load_scenario_text(minimal_yaml))
    busy = _busy_slot_s(r, "n1/p")
    a = econ.Assumptions(job_slot_power_w=500.0)
    kwh = 4 * 500 * 1.3 * (0.3 * T + 0.7 * busy / 4) / 3.6e6  # 4 slots, default PUE 1.3
    assert econ.economics_summary(r, a)["energy_kwh"] == pytest.approx(kwh, rel=1e-9)
    summary = econ.economics_summary(r)
    assert summary["revenue_cny"] == 0
    assert summary["cost_cny_per_m_tokens"] is None  # jobs carry no tokens
    assert set(summary["by_node_kind"]) == {"data_centre"}


def test_attribution_adds_up_on_the_baseline() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    scenario = gs.load_scenario(
        root / "scenarios" / "baseline.yaml", sets=["horizon.duration=10min"]
    )
    r = gs.run(scenario)
    total = econ.economics_summary(r)
    for by in ("node", "node_kind", "region", "class", "pool"):
        table = econ.economics_by(r, by)
        for col in ("energy_kwh", "cost_cny", "revenue_cny", "carbon_kg"):
            assert table[col].sum() == pytest.approx(total[col], rel=1e-9), (by, col)
    fraction = scenario.demand.sample_fraction
    per_day = 86400 / 600 / fraction
    assert total["national_cost_cny_per_day"] == pytest.approx(total["cost_cny"] * per_day)
    assert math.isclose(total["national_tokens_per_day"], total["tokens"] * per_day, rel_tol=1e-12)


def test_without_pool_series_the_node_utilisation_is_used(one_node: Result) -> None:
    ts = one_node.timeseries
    bare = replace(one_node, timeseries=ts[ts["entity_kind"] != "pool"], flows=one_node.flows[:0])
    pool = one_node.pools.iloc[0]
    util = one_node.summary["by_node"]["solo"]["utilization"]["mean"]
    kwh = pool["accelerators"] * 400 * 1.2 * (0.3 + 0.7 * util) * T / 3.6e6
    summary = econ.economics_summary(bare)
    assert summary["energy_kwh"] == pytest.approx(kwh, rel=1e-9)
    assert summary["revenue_cny"] == 0 and summary["cost_cny_per_m_tokens"] is None


def test_price_change_event_changes_electricity_cost_from_its_instant() -> None:
    """A price change half-way through: the second half is billed at the new price."""
    from gridsim.scenario import load_scenario

    root = Path(__file__).resolve().parents[1]
    mmc = root / "scenarios" / "validation" / "mmc.yaml"
    base = ["horizon.duration=1h", "horizon.warmup=0", "nodes[solo].price_cny_per_kwh=0.5"]
    calm = gs.run(load_scenario(mmc, sets=base))
    event = "events=[{kind: price_change, node: solo, price_cny_per_kwh: 1.0, at: 30min}]"
    changed = gs.run(load_scenario(mmc, sets=[*base, event]))
    a = econ.pool_intervals(calm)
    b = econ.pool_intervals(changed)
    late = b["time_s"] >= 1800
    assert np.allclose(b.loc[~late, "electricity_cny"], a.loc[~late, "electricity_cny"])
    assert np.allclose(b.loc[late, "electricity_cny"], 2 * a.loc[late, "electricity_cny"])


CACHED = ONE_NODE.replace(
    "      output_tokens: {dist: constant, value: 200}\n",
    "      output_tokens: {dist: constant, value: 200}\n"
    "      cache_hit_share: 0.563\n"
    "    - name: fresh\n"
    "      model: deepseek-v3\n"
    "      rate_per_s: 0.2\n"
    "      input_tokens: {dist: constant, value: 1000}\n"
    "      output_tokens: {dist: constant, value: 200}\n",
)


def _catalogue_prices(model: str) -> dict[str, float]:
    """The model's list prices read straight from the catalogue file (not via gridsim)."""
    import csv

    root = Path(__file__).resolve().parents[1]
    with (root / "gridsim" / "catalog" / "data" / "models.csv").open(encoding="utf-8") as f:
        return {
            row["attribute"]: float(row["value"])
            for row in csv.DictReader(f)
            if row["id"] == model and row["attribute"].startswith("price_")
        }


def test_revenue_bills_each_class_at_its_own_cache_hit_share() -> None:
    """Class ``chat`` has cache_hit_share 0.563, class ``fresh`` the default 0, on one
    DeepSeek-V3 pool. DeepSeek-V3's catalogue prices (CNY per 1e6 tokens): input 2.0, cache hit
    0.49, output 8.0. A chat request (1000 in, 200 out) earns, per 1e6 requests,

        h = 0:     1000 x 2.0 + 200 x 8.0                               = 3600 CNY
        h = 0.563: 1000 x (0.437 x 2.0 + 0.563 x 0.49) + 200 x 8.0
                 = 874 + 275.87 + 1600                                  = 2749.87 CNY

    a cut of 850.13 / 3600 = 23.6 % (the input part alone falls by 0.563 x (1 - 0.49 / 2.0)
    = 42.5 %); a fresh request still earns 3600."""
    prices = _catalogue_prices("deepseek-v3")
    assert prices == {
        "price_in_cny_per_m": 2.0,
        "price_cache_hit_cny_per_m": 0.49,
        "price_out_cny_per_m": 8.0,
    }
    p_in, p_hit, p_out = (
        prices["price_in_cny_per_m"],
        prices["price_cache_hit_cny_per_m"],
        prices["price_out_cny_per_m"],
    )
    per_request_h0 = (1000 * p_in + 200 * p_out) / 1e6
    per_request_h = (1000 * (0.437 * p_in + 0.563 * p_hit) + 200 * p_out) / 1e6
    assert per_request_h0 == pytest.approx(3600 / 1e6, rel=1e-12)
    assert per_request_h == pytest.approx(2749.87 / 1e6, rel=1e-12)
    assert 1 - per_request_h / per_request_h0 == pytest.approx(0.23615, abs=1e-5)

    r = gs.run(gs.load_scenario_text(CACHED))
    served = r.flows.groupby("class")["requests"].sum()
    assert served["chat"] > 0 and served["fresh"] > 0
    for cls in ("chat", "fresh"):  # constant lengths: tokens = requests x 1000 / 200
        rows = r.flows[r.flows["class"] == cls]
        assert rows["input_tokens"].sum() == 1000 * served[cls]
        assert rows["output_tokens"].sum() == 200 * served[cls]
    table = econ.by_class(r).set_index("class")
    assert table.loc["chat", "revenue_cny"] == pytest.approx(
        served["chat"] * per_request_h, rel=1e-9
    )
    assert table.loc["fresh", "revenue_cny"] == pytest.approx(
        served["fresh"] * per_request_h0, rel=1e-9
    )
    # the override prices every class alike: 0 gives the chat class its uncached revenue
    flat = econ.by_class(r, econ.Assumptions(cache_hit_share=0.0)).set_index("class")
    assert flat.loc["chat", "revenue_cny"] == pytest.approx(
        served["chat"] * per_request_h0, rel=1e-9
    )
    cut = 1 - table.loc["chat", "revenue_cny"] / flat.loc["chat", "revenue_cny"]
    assert cut == pytest.approx(0.23615, abs=1e-5)
    # the summary says which share each class was billed at
    summary = econ.economics_summary(r)
    assert summary["assumptions"]["cache_hit_share"] is None
    assert summary["assumptions"]["cache_hit_share_by_class"] == {"chat": 0.563, "fresh": 0.0}
    assert summary["revenue_cny"] == pytest.approx(table["revenue_cny"].sum(), rel=1e-9)
    json.dumps(summary, allow_nan=False)
    overridden = econ.economics_summary(r, econ.Assumptions(cache_hit_share=0.25))
    assert overridden["assumptions"]["cache_hit_share_by_class"] == {"chat": 0.25, "fresh": 0.25}
    with pytest.raises(ValueError, match="cache_hit_share"):
        econ.Assumptions(cache_hit_share=1.5)
