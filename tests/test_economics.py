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


# --- build-outs, retirements and capacity over time ----------------------------------------

DAY = 86400.0
YEAR_DAYS = 365.0  # economics amortises over 8760-hour years
TWO_POOLS = """
name: two-pools
horizon: {start: 2026-03-01, duration: 10d, resolution: 1h}
fidelity: flow
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
      - {id: a, model: deepseek-v3, accelerator: h20, replicas: 2}
      - {id: b, model: qwen3-32b, accelerator: ascend-910b, replicas: 4}
network: {generate: full_mesh, per_hop_ms: 0}
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - name: chat
      model: deepseek-v3
      rate_per_s: 1.0
      cache_hit_share: 0.5
      input_tokens: {dist: constant, value: 1000}
      output_tokens: {dist: constant, value: 200}
    - name: small
      model: qwen3-32b
      rate_per_s: 1.0
      input_tokens: {dist: constant, value: 2000}
      output_tokens: {dist: constant, value: 500}
outputs: {timeseries_interval: 1h}
policy: {name: nearest}
"""
# 3 replicas ordered on day 2 (2026-03-03), in service a day later; one retired on day 6
EVENTS = """events:
  - {kind: build_out, at: 2026-03-03, lead_time: 1d, node: solo, pool: a, replicas: 3}
  - {kind: retirement, at: 2026-03-07, node: solo, pool: b, replicas: 1}
"""


@pytest.fixture(scope="module")
def built_out() -> Result:
    return gs.run(gs.load_scenario_text(TWO_POOLS + EVENTS))


@pytest.fixture(scope="module")
def unchanged() -> Result:
    return gs.run(gs.load_scenario_text(TWO_POOLS))


def _catalogue_accelerator(acc: str, attribute: str) -> float:
    """An accelerator's figure read straight from the catalogue file (not via gridsim)."""
    import csv

    root = Path(__file__).resolve().parents[1]
    with (root / "gridsim" / "catalog" / "data" / "accelerators.csv").open(encoding="utf-8") as f:
        return next(
            float(row["value"])
            for row in csv.DictReader(f)
            if row["id"] == acc and row["attribute"] == attribute
        )


def test_build_out_and_retirement_change_capex_and_power_from_their_date(
    built_out: Result, unchanged: Result
) -> None:
    """H = 10 days. Pool a: 2 DeepSeek-V3 replicas on H20 (16 cards each, 110,000 CNY, 400 W);
    3 more ordered on day d = 2 with lead time L = 1 day arrive on day 3 and are paid for over
    H - d - L = 7 days. Pool b: 4 Qwen3-32B replicas on 910B (1 card each, 120,000 CNY, 400 W);
    one retired on day 6 stops costing for the last 4 days. Cards amortise over 5 years of 365
    days, the facility (10 M USD per MW x 7 CNY/USD = 70 CNY per W of IT power) over 15:

        cards  = (32 x 110,000 + 4 x 120,000) x 10 / 1825              = 21,917.81 CNY
               + 3 x 16 x 110,000 x 7 / 1825                             = 20,252.05
               - 1 x 1 x 120,000 x 4 / 1825                              =   -263.01
        facility = (36 x 10 + 48 x 7 - 1 x 4) card-days x 400 W x 70 / 5475 = 3,539.00
        capex  = 45,445.85 CNY  (without the events: 21,917.81 + 1,841.10 = 23,758.90)

    IT power: 36 cards x 400 W = 14.4 kW at the start; 36 + 48 - 1 = 83 cards, 33.2 kW, at
    the end: end - start = N x cards x TDP - 1 x 400 W = 19.2 - 0.4 = 18.8 kW."""
    pools = built_out.pools.set_index("pool")
    assert pools.loc["solo/a", "accelerators_per_replica"] == 16
    assert pools.loc["solo/b", "accelerators_per_replica"] == 1
    h20 = _catalogue_accelerator("h20", "price_cny")
    b910 = _catalogue_accelerator("ascend-910b", "price_cny")
    assert (h20, b910) == (110_000, 120_000)
    assert _catalogue_accelerator("h20", "tdp_w") == _catalogue_accelerator("ascend-910b", "tdp_w")
    base = (32 * h20 + 4 * b910) * 10 / (5 * YEAR_DAYS)
    build = 3 * 16 * h20 * (10 - 2 - 1) / (5 * YEAR_DAYS)
    retire = 1 * b910 * (10 - 6) / (5 * YEAR_DAYS)
    facility = (36 * 10 + 48 * 7 - 1 * 4) * 400 * 70 / (15 * YEAR_DAYS)
    assert base == pytest.approx(21_917.81, abs=0.01)
    assert build == pytest.approx(20_252.05, abs=0.01)
    assert retire == pytest.approx(263.01, abs=0.01)
    assert facility == pytest.approx(3_539.00, abs=0.01)
    after = econ.economics_summary(built_out)
    before = econ.economics_summary(unchanged)
    assert base + build - retire + facility == pytest.approx(45_445.85, abs=0.01)
    assert after["capex_cny"] == pytest.approx(base + build - retire + facility, rel=1e-9)
    assert before["capex_cny"] == pytest.approx(base + 36 * 10 * 400 * 70 / 5475, rel=1e-9)
    assert after["it_power_kw_start"] == pytest.approx(14.4, rel=1e-12)
    assert after["it_power_kw_end"] == pytest.approx(33.2, rel=1e-12)
    assert after["it_power_kw_end"] - after["it_power_kw_start"] == pytest.approx(18.8)
    assert before["it_power_kw_end"] == pytest.approx(14.4, rel=1e-12)
    # by pool: the build-out's capex is pool a's, the retirement's pool b's
    by_pool = econ.economics_by(built_out, "pool").set_index("pool")
    per_card_day = 400 * 70 / 5475  # facility CNY per card-day at 400 W
    assert by_pool.loc["solo/b", "capex_cny"] == pytest.approx(
        (4 * 6 + 3 * 4) * (b910 / 1825 + per_card_day), rel=1e-9
    )
    assert by_pool.loc["solo/a", "it_power_kw_end"] == pytest.approx(80 * 0.4, rel=1e-12)
    json.dumps(after, allow_nan=False)


def test_build_out_and_retirement_change_energy_from_their_date(built_out: Result) -> None:
    """Demand is constant, so the busy slot-seconds of an hour do not change; what changes at
    the arrival (day 3) is the idle draw of the 48 cards added: 48 x 400 W x 0.3 (idle) x PUE
    1.2 x 1 h = 6.912 kWh more in the hour after than in the hour before; at the retirement
    (day 6) one 910B less: 400 x 0.3 x 1.2 = 0.144 kWh less."""
    per = econ.pool_intervals(built_out).set_index(["pool", "time_s"])
    for pool, at, change_kwh in (("solo/a", 3 * DAY, 6.912), ("solo/b", 6 * DAY, -0.144)):
        early, late = per.loc[(pool, at - 3600.0)], per.loc[(pool, at)]
        assert late["busy_slot_s"] == pytest.approx(early["busy_slot_s"], rel=1e-9)
        assert late["energy_kwh"] - early["energy_kwh"] == pytest.approx(change_kwh, rel=1e-9)


def test_capacity_series_and_pools_table_say_what_they_describe(
    built_out: Result, tmp_path: Path
) -> None:
    """Per pool replicas and cards step at the cards' arrival (day 3, not the order on day 2)
    and at the retirement (day 6); the grid's IT power is 14.4 kW, then 14.4 + 19.2 = 33.6 kW,
    then 33.2 kW; pools.parquet gives both ends and says that replicas are at the start."""
    from gridsim.capacity_timeline import capacity_series, with_capacity_series

    series = capacity_series(built_out, econ.DEFAULT.job_slot_power_w)
    assert set(series["entity_id"]) == {"solo/a", "solo/b", "national"}

    def value(entity: str, metric: str, t: float) -> float:
        rows = series[
            (series["entity_id"] == entity) & (series["metric"] == metric) & (series["time_s"] == t)
        ]
        assert len(rows) == 1
        return float(rows["value"].iloc[0])

    hours = sorted(set(series["time_s"]))
    assert hours == [3600.0 * k for k in range(240)]  # hourly, as outputs.timeseries_interval
    assert value("solo/a", "replicas", 3 * DAY - 3600) == 2
    assert value("solo/a", "replicas", 3 * DAY) == 5
    assert value("solo/a", "cards", 2 * DAY) == 32
    assert value("solo/a", "cards", 9 * DAY) == 80
    assert value("solo/b", "replicas", 6 * DAY - 3600) == 4
    assert value("solo/b", "cards", 6 * DAY) == 3
    assert value("national", "it_power_kw", 0.0) == pytest.approx(14.4)
    assert value("national", "it_power_kw", 4 * DAY) == pytest.approx(33.6)
    assert value("national", "it_power_kw", 9 * DAY) == pytest.approx(33.2)
    stored = with_capacity_series(built_out, econ.DEFAULT.job_slot_power_w)
    assert len(stored) == len(built_out.timeseries) + len(series)

    built_out.pools.to_parquet(tmp_path / "pools.parquet", index=False)
    import pandas as pd
    import pyarrow.parquet as pq

    table = pd.read_parquet(tmp_path / "pools.parquet").set_index("pool")
    assert table.loc["solo/a", ["replicas", "replicas_start", "replicas_end"]].tolist() == [2, 2, 5]
    assert table.loc["solo/a", ["accelerators", "cards_start", "cards_end"]].tolist() == [
        32,
        32,
        80,
    ]
    assert table.loc["solo/b", ["replicas_start", "replicas_end", "cards_end"]].tolist() == [
        4,
        3,
        3,
    ]
    meta = pq.read_schema(tmp_path / "pools.parquet").metadata[b"PANDAS_ATTRS"].decode()
    assert "at the start of the horizon" in json.loads(meta)["describes"]


@pytest.mark.parametrize("fidelity", ["request", "flow"])
def test_timeline_agrees_with_both_engines(fidelity: str) -> None:
    """The slots the timeline derives from the events are the slots each engine had up: per
    5-minute interval, capacity slot-seconds = slots x 300 s. Two replicas more ordered at
    30 min arrive at 45 min (lead time 15 min); one replica of pool b retires at 90 min."""
    text = (
        TWO_POOLS.replace("duration: 10d, resolution: 1h", "duration: 2h, resolution: 5min")
        .replace("fidelity: flow", f"fidelity: {fidelity}")
        .replace("timeseries_interval: 1h", "timeseries_interval: 5min")
        .replace("rate_per_s: 1.0", "rate_per_s: 0.2")
        + "events:\n"
        "  - {kind: build_out, at: 30min, lead_time: 15min, node: solo, pool: a, replicas: 2}\n"
        "  - {kind: retirement, at: 90min, node: solo, pool: b, replicas: 1}\n"
    )
    r = gs.run(gs.load_scenario_text(text))
    ts = r.timeseries
    cap = ts[(ts["entity_kind"] == "pool") & (ts["metric"] == "capacity_slot_s")]
    got = cap.pivot_table(index="time_s", columns="entity_id", values="value")
    t = got.index.to_numpy()
    # by hand: a has S_a slots a replica (2 -> 4 replicas), b S_b (4 -> 3); S from the serving
    # model (the grid's pool table)
    pools = r.pools.set_index("pool")
    s_a = int(pools.loc["solo/a", "station_slots_per_replica"])
    s_b = int(pools.loc["solo/b", "station_slots_per_replica"])
    assert s_a > s_b > 0
    want_a = np.where(t >= 45 * 60, 4 * s_a, 2 * s_a) * 300.0
    want_b = np.where(t >= 90 * 60, 3 * s_b, 4 * s_b) * 300.0
    assert np.allclose(got["solo/a"].to_numpy(), want_a)
    assert np.allclose(got["solo/b"].to_numpy(), want_b)
    assert pools.loc["solo/a", "slots_end"] == 4 * s_a
    assert pools.loc["solo/b", "slots_end"] == 3 * s_b


def test_a_pool_built_from_nothing_draws_power_and_costs_from_its_arrival() -> None:
    """Pool c starts with no replicas; 1 replica (16 H20) arrives at 30 min of the hour: it
    costs 16 x 110,000 CNY / 5 years and its facility share for 30 min, draws nothing before
    and at least its idle power after: 16 x 400 W x 0.3 x PUE 1.2 x 30 min = 1.152 kWh."""
    text = (
        ONE_NODE.replace(
            "      - {id: llm, model: deepseek-v3, accelerator: h20, replicas: 1}\n",
            "      - {id: llm, model: deepseek-v3, accelerator: h20, replicas: 1}\n"
            "      - {id: c, model: deepseek-v3, accelerator: h20, replicas: 0}\n",
        )
        + "events:\n  - {kind: build_out, at: 30min, node: solo, pool: c, replicas: 1}\n"
    )
    r = gs.run(gs.load_scenario_text(text))
    table = econ.economics_by(r, "pool").set_index("pool")
    cards_capex = 16 * 110_000 * 1800 / (5 * 8760 * 3600)
    facility = 16 * 400 * 70 * 1800 / (15 * 8760 * 3600)
    assert table.loc["solo/c", "capex_cny"] == pytest.approx(cards_capex + facility, rel=1e-9)
    assert table.loc["solo/c", "it_power_kw"] == 0
    assert table.loc["solo/c", "it_power_kw_end"] == pytest.approx(6.4)
    per = econ.pool_intervals(r)
    c = per[per["pool"] == "solo/c"]
    assert (c.loc[c["time_s"] < 1800, "energy_kwh"] == 0).all()
    idle_kwh = 16 * 400 * 0.3 * 1.2 * 1800 / 3.6e6  # 1.152 kWh
    assert c["energy_kwh"].sum() >= idle_kwh * (1 - 1e-9)


def test_by_model_cost_and_list_price_by_hand(built_out: Result) -> None:
    """Cost per million tokens of a model = (electricity + capex of its pools + network at
    4 bytes a token x 0.5 CNY/GB) / its tokens x 1e6, from the pool-level table. Its list price
    is the catalogue's three prices blended at the class's mix: chat sends DeepSeek-V3 1000
    input tokens (half of them cache hits) and 200 output tokens a request:

        (500 x 2.0 + 500 x 0.49 + 200 x 8.0) / 1200 = 2845 / 1200 = 2.3708 CNY per 1e6 tokens

    and small sends Qwen3-32B 2000 input (no cache hits) and 500 output tokens."""
    a = econ.Assumptions(network_cny_per_gb=0.5)
    pools = econ.economics_by(built_out, "pool", a).set_index("pool")
    models = econ.economics_summary(built_out, a)["by_model"]
    assert set(models) == {"deepseek-v3", "qwen3-32b"}
    for model, pool in (("deepseek-v3", "solo/a"), ("qwen3-32b", "solo/b")):
        row = pools.loc[pool]
        tokens = float(built_out.flows.loc[built_out.flows["pool"] == pool, "input_tokens"].sum())
        tokens += float(built_out.flows.loc[built_out.flows["pool"] == pool, "output_tokens"].sum())
        network = tokens * 4 / 1e9 * 0.5
        cost = row["electricity_cny"] + row["capex_cny"] + network
        got = models[model]
        assert got["tokens"] == pytest.approx(tokens, rel=1e-12)
        assert got["cost_cny"] == pytest.approx(cost, rel=1e-9)
        assert got["cost_cny_per_m_tokens"] == pytest.approx(cost / tokens * 1e6, rel=1e-9)
        assert got["margin_cny"] == pytest.approx(got["revenue_cny"] - cost, rel=1e-9)
    v3 = _catalogue_prices("deepseek-v3")
    blend = (
        500 * v3["price_in_cny_per_m"]
        + 500 * v3["price_cache_hit_cny_per_m"]
        + 200 * v3["price_out_cny_per_m"]
    ) / 1200
    assert blend == pytest.approx(2845 / 1200, rel=1e-12)
    assert models["deepseek-v3"]["list_price_cny_per_m_tokens"] == pytest.approx(blend, rel=1e-9)
    qwen = _catalogue_prices("qwen3-32b")
    qwen_blend = (2000 * qwen["price_in_cny_per_m"] + 500 * qwen["price_out_cny_per_m"]) / 2500
    assert models["qwen3-32b"]["list_price_cny_per_m_tokens"] == pytest.approx(qwen_blend, rel=1e-9)
