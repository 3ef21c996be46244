"""A run's token market per plan, model and tier (gridsim/market/outputs.py), its KPIs, its
report section and figures, and its tables in the run folder.

One tiny market (three plans, two models, two days at flow fidelity) is run once. Each plan
sells one class (payg: api, pro: coding, free: chat), so each engine class has exactly one plan
and the expected figures below are hand arithmetic on the run's flows and counts, read here
independently of the code under test.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import gridsim as gs
from gridsim import economics, kpis
from gridsim.market import outputs
from gridsim.output import read_run, write_run
from gridsim.report import write_figures, write_report
from gridsim.report.market_figures import CAPTIONS
from gridsim.run import Result

DAY_S = 86400.0
MONTH_S = 30.436875 * DAY_S  # the growth law's (and the plans') month
HORIZON_S = 2 * DAY_S
# list prices, CNY per million tokens: input, cache-hit input, output (set in the scenario)
PRICES = {"qwen3-8b": (0.5, 0.1, 2.0), "glm-4.5-air": (0.8, 0.2, 6.0)}
CACHE_HIT = 0.25  # every class's cache_hit_share

_MARKET = """
name: tiny-market
horizon: {duration: 2d, resolution: 1h}
fidelity: flow
regions:
  - {id: east, lat: 31.0, lon: 121.0}
  - {id: west, lat: 30.0, lon: 104.0}
nodes:
  - id: dc
    kind: intelligent_computing
    lat: 31.0
    lon: 120.0
    pools:
      - {id: small, model: qwen3-8b, accelerator: h20, replicas: 2}
      - {id: air, model: glm-4.5-air, accelerator: h20, replicas: 1}
network: {generate: full_mesh}
catalog:
  models:
    - {id: qwen3-8b, price_in_cny_per_m: 0.5, price_cache_hit_cny_per_m: 0.1,
       price_out_cny_per_m: 2.0}
    - {id: glm-4.5-air, price_in_cny_per_m: 0.8, price_cache_hit_cny_per_m: 0.2,
       price_out_cny_per_m: 6.0}
admission: {max_wait: 20s}
demand:
  region_weights: equal
  classes:
{classes}market:
  plans:
    - id: payg
      billing: per_token
      price_factor: 1.2
      subscribers: 10000
      usage: {dist: lognormal, mean: 4e6, sigma: 1.0}
      classes: {api: 1.0}
    - id: pro
      billing: monthly
      fee_cny: 40
      quota: 5e6
      over_quota: bill
      overage_cny_per_m_tokens: 3.0
      subscribers: {east: 3000, west: 2000}
      usage: {dist: discrete, values: [1e6, 4e6, 20e6], weights: [0.6, 0.3, 0.1]}
      classes: {coding: 1.0}
    - id: free
      billing: free
      quota: 1e6
      subscribers: 100000
      usage: {dist: lognormal, mean: 5e5, sigma: 1.2}
      classes: {chat: 1.0}
events:
  # payg's prices x 0.8 from the second day (no elasticity: its usage stays)
  - {kind: price_change, at: 1d, plan: payg, price_factor: 0.8}
"""
CLASS = """    - name: {name}
      models: {{qwen3-8b: 0.7, glm-4.5-air: 0.3}}
      cache_hit_share: 0.25
      input_tokens: {{dist: lognormal, mean: 800, sigma: 0.8}}
      output_tokens: {{dist: lognormal, mean: 200, sigma: 0.6}}
      patience: {{dist: exponential, mean: 10}}
      slo: {{ttft: 2s, e2e: 60s}}
"""
PLAN_OF = {"api": "payg", "coding": "pro", "chat": "free"}  # each plan sells one class
MARKET = _MARKET.replace(
    "{classes}", "".join(CLASS.format(name=n) for n in ("api", "coding", "chat"))
)

NO_MARKET = """
name: tiny-plain
horizon: {duration: 2h}
fidelity: flow
regions: [{id: here, lat: 30.0, lon: 110.0}]
nodes:
  - id: solo
    kind: intelligent_computing
    lat: 31.0
    lon: 112.0
    pools: [{id: llm, model: qwen3-8b, accelerator: h20, replicas: 2}]
network: {generate: full_mesh}
demand:
  tokens_per_day: 1e9
  region_weights: equal
  classes:
    - name: chat
      share: 1.0
      model: qwen3-8b
      input_tokens: {dist: constant, value: 800}
      output_tokens: {dist: constant, value: 200}
      slo: {ttft: 2s, e2e: 60s}
"""


def _load(tmp: Path, text: str, name: str) -> Any:
    path = tmp / f"{name}.yaml"
    path.write_text(text, "utf-8")
    return gs.load_scenario(path)


@pytest.fixture(scope="module")
def market_run(tmp_path_factory: pytest.TempPathFactory) -> Result:
    return gs.run(_load(tmp_path_factory.mktemp("market"), MARKET, "market"))


def _served_by_class(result: Result) -> pd.DataFrame:
    """Input and output tokens served per engine class, from the flows table."""
    f = result.flows
    return f.groupby("class")[["input_tokens", "output_tokens"]].sum()


def _list_value_cny(result: Result, base: str, model: str | None = None) -> float:
    """The tokens served to one base class's engine classes (of one model, or all) at list
    prices, by hand."""
    total = 0.0
    for name, row in _served_by_class(result).iterrows():
        cls, mod, _tier = str(name).split("/")
        if cls != base or model not in (None, mod):
            continue
        p_in, p_hit, p_out = PRICES[mod]
        inp, out = float(row["input_tokens"]), float(row["output_tokens"])
        total += (inp * (1 - CACHE_HIT) * p_in + inp * CACHE_HIT * p_hit + out * p_out) / 1e6
    return total


def _class_tokens(result: Result, base: str, key: str) -> float:
    """Input + output tokens ``demanded`` or ``served`` of a base class's engine classes."""
    return sum(
        float(b["tokens"]["input"][key]) + float(b["tokens"]["output"][key])
        for name, b in result.summary["by_class"].items()
        if name.split("/")[0] == base
    )


def test_revenue_per_plan_matches_hand_arithmetic(market_run: Result) -> None:
    plans = market_run.summary["market"]["by_plan"]
    months = HORIZON_S / MONTH_S
    # payg: list prices x its price factor 1.2 x the mean price-change factor, 1 on day one
    # and 0.8 on day two (equal days, no elasticity: equal usage) = 0.9
    payg = _list_value_cny(market_run, "api") * 1.2 * 0.9
    assert plans["payg"]["per_token_cny"] == pytest.approx(payg, rel=1e-9)
    assert plans["payg"]["fees_cny"] == 0.0
    assert plans["payg"]["revenue_cny"] == pytest.approx(payg, rel=1e-9)
    # pro: 5,000 subscribers x 40 CNY x months of the horizon; overage: E[max(U - 5e6, 0)] =
    # 0.1 x (20e6 - 5e6) = 1.5e6 tokens a subscriber a month, x 5,000 x months, x the share of
    # the plan's demanded tokens served, x 3 CNY per million
    fees = 5000 * 40 * months
    served_share = _class_tokens(market_run, "coding", "served") / _class_tokens(
        market_run, "coding", "demanded"
    )
    overage = served_share * 1.5e6 * 5000 * months * 3.0 / 1e6
    assert plans["pro"]["fees_cny"] == pytest.approx(fees, rel=1e-9)
    assert plans["pro"]["overage_cny"] == pytest.approx(overage, rel=1e-6)
    assert plans["pro"]["per_token_cny"] == 0.0
    assert plans["pro"]["revenue_cny"] == pytest.approx(fees + overage, rel=1e-6)
    assert plans["free"]["revenue_cny"] == 0.0


def test_quota_and_breakage_match_hand_arithmetic(market_run: Result) -> None:
    pro = market_run.summary["market"]["by_plan"]["pro"]
    # E[min(U, 5e6)] = 0.6 x 1e6 + 0.3 x 4e6 + 0.1 x 5e6 = 2.3e6: 46 % of the quota used,
    # 2.7e6 tokens a subscriber a month left (breakage); billing overage, nothing throttled
    assert pro["quota_use_share"] == pytest.approx(0.46, rel=1e-12)
    assert pro["breakage_tokens_per_subscriber_month"] == pytest.approx(2.7e6, rel=1e-12)
    assert pro["breakage_tokens"] == pytest.approx(2.7e6 * 5000 * HORIZON_S / MONTH_S, rel=1e-12)
    assert pro["throttled_tokens"] == 0.0
    free = market_run.summary["market"]["by_plan"]["free"]
    # lognormal usage throttled at its quota: what is refused is what is left unused's
    # mirror: demanded - used = E[max(U - q, 0)] (here checked against a Monte Carlo draw)
    rng = np.random.default_rng(7)
    sigma = 1.2
    u = rng.lognormal(np.log(5e5) - sigma**2 / 2, sigma, 2_000_000)
    excess = float(np.maximum(u - 1e6, 0).mean())
    assert free["throttled_tokens_per_subscriber_month"] == pytest.approx(excess, rel=0.01)
    market = market_run.summary["market"]
    assert market["breakage_tokens"] == pytest.approx(
        pro["breakage_tokens"] + free["breakage_tokens"], rel=1e-12
    )
    assert market["breakage_share"] == pytest.approx(
        market["breakage_tokens"] / (pro["quota_tokens"] + free["quota_tokens"]), rel=1e-12
    )


def test_tier_shed_share_from_by_class_counts(market_run: Result) -> None:
    tiers = market_run.summary["market"]["by_tier"]
    assert list(tiers) == ["paid", "free"]  # reserved absent; in priority order
    for tier, block in tiers.items():
        mine = [b for n, b in market_run.summary["by_class"].items() if n.endswith(f"/{tier}")]
        arrived = sum(b["requests"]["arrived"] for b in mine)
        shed = sum(b["requests"]["dropped"] + b["requests"]["abandoned"] for b in mine)
        assert block["requests_arrived"] == arrived
        assert block["requests_shed"] == shed
        assert block["shed_share"] == pytest.approx(shed / arrived, rel=1e-12)
        ended = [
            sum(b["requests"][k] for k in ("served", "dropped", "abandoned", "lost")) for b in mine
        ]
        sla = sum(b["sla_attainment"] * n for b, n in zip(mine, ended, strict=True)) / sum(ended)
        assert block["sla_attainment"] == pytest.approx(sla, rel=1e-12)
    # the pools are overloaded (demand ~0.97 of them) and shed the free tier first, so the
    # shares are not trivially 0
    assert tiers["free"]["shed_share"] > 0.1 > tiers["paid"]["shed_share"]
    assert market_run.summary["market"]["free_shed_share"] == tiers["free"]["shed_share"]


def test_totals_add_up(market_run: Result) -> None:
    m = market_run.summary["market"]
    for key in ("revenue_cny", "cost_cny", "margin_cny", "served_tokens"):
        by_plan = sum(p[key] for p in m["by_plan"].values())
        by_model = sum(p[key] for p in m["by_model"].values())
        assert by_plan == pytest.approx(m[key], rel=1e-9), key
        assert by_model == pytest.approx(m[key], rel=1e-9), key
    for part in ("fees_cny", "per_token_cny", "overage_cny"):
        assert sum(p[part] for p in m["by_model"].values()) == pytest.approx(m[part], rel=1e-9)
    assert m["margin_cny"] == pytest.approx(m["revenue_cny"] - m["cost_cny"], rel=1e-12)
    # tokens: every served token of the flows, each model's its engine classes'
    served = _served_by_class(market_run)
    assert m["served_tokens"] == pytest.approx(float(served.to_numpy().sum()), rel=1e-12)
    for model, block in m["by_model"].items():
        mine = served[[n.split("/")[1] == model for n in served.index]]
        assert block["served_tokens"] == pytest.approx(float(mine.to_numpy().sum()), rel=1e-12)
    # a model's share of each plan: fees by its tokens, per-token and overage by their value
    tokens = {
        (PLAN_OF[n.split("/")[0]], n.split("/")[1]): float(r.sum()) for n, r in served.iterrows()
    }
    value = {
        (PLAN_OF[base], model): _list_value_cny(market_run, base, model)
        for base in PLAN_OF
        for model in PRICES
    }
    for model, block in m["by_model"].items():
        fees = per_token = 0.0
        for plan, p in m["by_plan"].items():
            t_all = sum(v for (q, _), v in tokens.items() if q == plan)
            v_all = sum(v for (q, _), v in value.items() if q == plan)
            fees += p["fees_cny"] * tokens[(plan, model)] / t_all
            per_token += (p["per_token_cny"] + p["overage_cny"]) * value[(plan, model)] / v_all
        assert block["fees_cny"] == pytest.approx(fees, rel=1e-9), model
        assert block["per_token_cny"] + block["overage_cny"] == pytest.approx(per_token, rel=1e-9)
    # cost: all of the pools' cost that was attributed to a class (economics' own table)
    costs = economics.economics_by(market_run, "class")
    assert m["cost_cny"] == pytest.approx(
        float(costs.loc[costs["class"] != economics.IDLE, "cost_cny"].sum()), rel=1e-9
    )


def test_model_tokens_over_time_integrate_to_the_run(market_run: Result) -> None:
    table = outputs.model_tokens_over_time(market_run)
    assert set(table["model"]) == set(PRICES)
    assert table.groupby("model")["interval_s"].sum().tolist() == [HORIZON_S, HORIZON_S]
    demanded = {m: 0.0 for m in PRICES}
    for name, b in market_run.summary["by_class"].items():
        model = name.split("/")[1]
        demanded[model] += b["tokens"]["input"]["demanded"] + b["tokens"]["output"]["demanded"]
    got = table.groupby("model")["demanded_tokens"].sum()
    for model, value in demanded.items():
        # the flow engine's demanded counts are the expected values, rounded to whole tokens
        assert got[model] == pytest.approx(value, rel=1e-6), model
    served = table.groupby("model")["served_tokens"].sum()
    for model, block in market_run.summary["market"]["by_model"].items():
        assert served[model] == pytest.approx(block["served_tokens"], rel=1e-6), model


def test_every_market_leaf_is_a_kpi(market_run: Result) -> None:
    missing = []
    for path, leaf in kpis.leaves({"market": market_run.summary["market"]}):
        if isinstance(leaf, str) and not kpis.is_date(leaf):
            continue  # labels: billing, tier
        if kpis.kpi_for_path(path) is None:
            missing.append(".".join(path))
    assert missing == []
    entries = {e.key: e.value for e in kpis.entries_for(market_run.summary)}
    assert entries["market_margin_cny"] == market_run.summary["market"]["margin_cny"]
    by_plan = market_run.summary["market"]["by_plan"]
    assert entries["by_plan.pro.market_revenue_cny"] == by_plan["pro"]["revenue_cny"]
    assert kpis.value(market_run.summary, "tier_shed_share") == {
        t: b["shed_share"] for t, b in market_run.summary["market"]["by_tier"].items()
    }


def test_report_has_the_market_section_and_the_folder_its_tables(
    market_run: Result, tmp_path: Path
) -> None:
    out = write_run(market_run, tmp_path / "run")
    names = {p.name for p in (out / "figures").iterdir()}
    assert {"market_plans.png", "market_tokens.png", "market_tiers.png"} <= names
    text = (out / "report.html").read_text("utf-8")
    start = text.index("<h2>Token market</h2>")
    section = text[start : text.index("<h2>", start + 1)]
    for plan in ("payg", "pro", "free"):
        assert f"<td>{plan}</td>" in section
    for stem in ("market_plans", "market_tokens", "market_tiers"):
        caption = html.escape(CAPTIONS[stem], quote=True)
        assert f"alt='{caption}'" in section
    # the by-class tables show the scenario's three classes, not the six engine classes
    by_class = text[text.index("<h2>By class</h2>") : text.index("<h2>By region</h2>")]
    assert "<td>coding</td>" in by_class and "coding/" not in by_class
    assert "<td>25.0 %</td></tr>" in by_class  # the class's cache-hit share, last column
    plans = pd.read_parquet(out / "market_plans.parquet")
    assert plans["plan"].tolist() == ["payg", "pro", "free"]
    summary = market_run.summary["market"]["by_plan"]
    assert plans.set_index("plan")["revenue_cny"].to_dict() == pytest.approx(
        {p: b["revenue_cny"] for p, b in summary.items()}
    )
    models = pd.read_parquet(out / "market_models.parquet")
    assert set(models["model"]) == set(PRICES)
    # read back from the folder, the market is the same
    again = read_run(out)
    assert outputs.market_summary(again) == market_run.summary["market"]


def test_a_model_mix_without_plans_sells_at_list_prices(tmp_path: Path) -> None:
    text = NO_MARKET.replace(
        "      model: qwen3-8b\n", "      models: {qwen3-8b: 0.5, glm-4.5-air: 0.5}\n"
    ).replace(
        "pools: [{id: llm, model: qwen3-8b, accelerator: h20, replicas: 2}]",
        "pools: [{id: llm, model: qwen3-8b, accelerator: h20, replicas: 2},\n"
        "            {id: air, model: glm-4.5-air, accelerator: h20, replicas: 2}]",
    )
    result = gs.run(_load(tmp_path, text, "mix"))
    market = result.summary["market"]
    assert list(market["by_plan"]) == [outputs.LIST_PRICE] and market["by_tier"] == {}
    # no plan: the tokens earn the catalogue's list prices (no cache hits in this class)
    prices = {m.id: m for m in result.scenario.resolved_catalog.models.values()}
    value = 0.0
    for name, row in (
        result.flows.groupby("class")[["input_tokens", "output_tokens"]].sum().iterrows()
    ):
        p = prices[str(name).split("/")[1]]
        value += (
            row["input_tokens"] * p.price_in_cny_per_m
            + row["output_tokens"] * p.price_out_cny_per_m
        ) / 1e6
    assert market["revenue_cny"] == pytest.approx(value, rel=1e-9)
    assert market["per_token_cny"] == market["revenue_cny"] and market["breakage_share"] is None


def test_no_market_no_block_no_section(tmp_path: Path) -> None:
    result = gs.run(_load(tmp_path, NO_MARKET, "plain"))
    assert "market" not in result.summary
    assert outputs.market_summary(result) is None
    assert outputs.plans_table(result).empty and outputs.tiers_table(result).empty
    report = write_report(result, tmp_path / "report.html", write_figures(result, tmp_path / "f"))
    text = report.read_text("utf-8")
    assert "Token market" not in text
    assert not list((tmp_path / "f").glob("market_*"))
    out = write_run(result, tmp_path / "run")
    assert not list(out.glob("market_*"))
