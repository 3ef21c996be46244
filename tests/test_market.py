"""Token plans and model mixes (gridsim.market): the plans' arithmetic against hand
calculations and numerical integration, and the expansion into the engines' classes (names,
tiers, shares, volumes, regions, model launches and price elasticity)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

import gridsim as gs
from gridsim.demand import DemandModel
from gridsim.engine.events import shock_factor
from gridsim.market import (
    ServedTokens,
    capped_mean,
    excess_mean,
    expand,
    mean,
    plan_demand,
    plan_revenue,
)
from gridsim.scenario import ScenarioError
from gridsim.scenario.events import DemandShock
from gridsim.scenario.market_spec import MONTH_S, DiscreteUsage, LognormalUsage

DAY_S = 86_400.0
MONTH_DAYS = 30.436875

HEAD = """
name: mkt
horizon: {duration: 4d, resolution: 15min}
fidelity: flow
regions:
  - {id: east, lat: 31.0, lon: 121.0}
  - {id: west, lat: 30.0, lon: 104.0}
nodes:
  - id: dc
    kind: intelligent_computing
    lat: 31.0
    lon: 112.0
    pools:
      - {id: pa, model: qwen3-8b, accelerator: h20, replicas: 200}
      - {id: pb, model: qwen3-32b, accelerator: h20, replicas: 200%s}
network: {generate: full_mesh}
"""

CHAT = """
    - name: chat
      %s
      input_tokens: {dist: constant, value: 1000}
      output_tokens: {dist: constant, value: 200}
      slo: {ttft: 5s, e2e: 120s}
"""


def load(tmp_path: Path, body: str, serves: str = "", sets: list[str] | None = None) -> gs.Scenario:
    path = tmp_path / "s.yaml"
    path.write_text(HEAD % serves + body, encoding="utf-8")
    return gs.load_scenario(path, sets=sets or [])


def hour_shares(scenario: gs.Scenario, hours: int) -> tuple[list[str], np.ndarray]:
    """Each engine class's national arrival rate, hour by hour: (names, hours x classes)."""
    expanded, _ = expand(scenario)
    dm = DemandModel(expanded, expanded.resolved_catalog)
    rates = dm.mean_rates(np.arange(hours + 1) * 3600.0).sum(axis=1)
    return list(dm.class_names), rates


# --- usage moments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mean_", "sigma", "cap"),
    [(1e6, 1.0, 2e6), (1e6, 2.5, 1e5), (5e7, 0.3, 5e7), (3.0, 1.5, 40.0)],
)
def test_lognormal_closed_forms_match_numerical_integration(
    mean_: float, sigma: float, cap: float
) -> None:
    mu = math.log(mean_) - sigma**2 / 2
    normal = stats.norm(loc=mu, scale=sigma)  # log U
    # in log space (u = e^x), where the integrands are smooth at every scale:
    # E[min(U, q)] = int_{-inf}^{ln q} e^x phi(x) dx + q P(U > q)
    # E[max(U - q, 0)] = int_{ln q}^{inf} (e^x - q) phi(x) dx
    lo, hi, lnq = mu - 12 * sigma, mu + 12 * sigma, math.log(cap)
    below, _ = integrate.quad(lambda x: math.exp(x) * normal.pdf(x), lo, lnq, limit=200)
    above, _ = integrate.quad(lambda x: (math.exp(x) - cap) * normal.pdf(x), lnq, hi, limit=200)
    law = stats.lognorm(s=sigma, scale=math.exp(mu))
    usage = LognormalUsage(dist="lognormal", mean=mean_, sigma=sigma)
    assert capped_mean(usage, cap) == pytest.approx(below + cap * law.sf(cap), rel=1e-7)
    assert excess_mean(usage, cap) == pytest.approx(above, rel=1e-6)
    assert capped_mean(usage, None) == mean(usage) == mean_


def test_discrete_moments_by_hand() -> None:
    usage = DiscreteUsage(dist="discrete", values=[1e6, 1e7, 1e8], weights=[6, 3, 1])
    assert mean(usage) == pytest.approx(0.6e6 + 3e6 + 10e6)
    assert capped_mean(usage, 20e6) == pytest.approx(0.6e6 + 3e6 + 0.1 * 20e6)
    assert excess_mean(usage, 20e6) == pytest.approx(0.1 * 80e6)


# --- revenue by hand -------------------------------------------------------------------------

# 1000 subscribers a plan, 50 CNY a month, a quota of 20 M tokens a month; usage: 60 % use 1 M,
# 30 % use 10 M, 10 % use 100 M tokens a month.
PLANS = (
    """
demand:
  region_weights: equal
  classes:
"""
    + CHAT % "model: qwen3-8b"
    + """
market:
  plans:
    - id: capped
      billing: monthly
      fee_cny: 50
      quota: 20e6
      subscribers: 1000
      usage: {dist: discrete, values: [1e6, 1e7, 1e8], weights: [0.6, 0.3, 0.1]}
      classes: {chat: 1.0}
    - id: billed
      billing: monthly
      fee_cny: 50
      quota: 20e6
      over_quota: bill
      overage_cny_per_m_tokens: 2.0
      subscribers: 1000
      usage: {dist: discrete, values: [1e6, 1e7, 1e8], weights: [0.6, 0.3, 0.1]}
      classes: {chat: 1.0}
    - id: payg
      billing: per_token
      price_factor: 0.5
      subscribers: 1000
      usage: {dist: discrete, values: [1e6, 1e7, 1e8], weights: [0.6, 0.3, 0.1]}
      classes: {chat: 1.0}
"""
)

# Per subscriber per month, by hand (M tokens):
#   demanded            = 0.6 x 1 + 0.3 x 10 + 0.1 x 100             = 13.6
#   used, throttled     = 0.6 x 1 + 0.3 x 10 + 0.1 x 20 (capped)       =  5.6
#   throttled           = 13.6 - 5.6                                   =  8.0
#   breakage            = 0.6 x (20 - 1) + 0.3 x (20 - 10) + 0.1 x 0   = 14.4
#   overage (billed)    = 0.1 x (100 - 20)                             =  8.0
# A month (1000 subscribers), everything demanded served:
#   fees                = 1000 x 50                          = 50,000 CNY (each monthly plan)
#   overage revenue     = 1000 x 8 M x 2 CNY / M             = 16,000 CNY
#   billed plan total   = 66,000 CNY; capped plan total      = 50,000 CNY
M = 1e6


def served(tokens_in: float, tokens_out: float) -> dict[str, ServedTokens]:
    # qwen3-8b at hand prices: 2 CNY/M input, 0.5 CNY/M cache hit, 8 CNY/M output
    return {"qwen3-8b": ServedTokens(tokens_in, 0.0, tokens_out, 2.0, 0.5, 8.0)}


def test_revenue_quota_overage_and_breakage_by_hand(tmp_path: Path) -> None:
    sc = load(tmp_path, PLANS)
    assert sc.market is not None
    plans = {p.id: p for p in sc.market.plans}
    capped = plan_demand(plans["capped"], sc)
    assert capped.demanded_tokens == pytest.approx(13.6 * M)
    assert capped.used_tokens == pytest.approx(5.6 * M)
    assert capped.throttled_tokens == pytest.approx(8.0 * M)
    assert capped.quota_tokens == pytest.approx(20 * M)
    assert capped.breakage_tokens == pytest.approx(14.4 * M)
    assert capped.overage_tokens == 0.0
    assert capped.breakage_tokens_per_month == pytest.approx(14.4e9)
    assert capped.subscribers_by_region == {"east": 500.0, "west": 500.0}
    assert capped.tokens_per_day == pytest.approx(5.6e9 / MONTH_DAYS)

    billed = plan_demand(plans["billed"], sc)
    assert billed.used_tokens == pytest.approx(13.6 * M)  # billed, not throttled
    assert billed.throttled_tokens == pytest.approx(0.0)
    assert billed.breakage_tokens == pytest.approx(14.4 * M)
    assert billed.overage_tokens == pytest.approx(8.0 * M)

    # a month, every used token served (10 M in and 3.6 M out a subscriber)
    rev = plan_revenue(plans["billed"], billed, served(10e9, 3.6e9), MONTH_S)
    assert rev.fees_cny == pytest.approx(50_000)
    assert rev.overage_cny == pytest.approx(16_000)
    assert rev.per_token_cny == 0.0
    assert rev.total_cny == pytest.approx(66_000)
    rev = plan_revenue(plans["capped"], capped, served(4e9, 1.6e9), MONTH_S)
    assert (rev.fees_cny, rev.overage_cny, rev.total_cny) == pytest.approx((50_000, 0, 50_000))

    # half the billed plan's tokens shed by the grid: half its overage is billed
    rev = plan_revenue(plans["billed"], billed, served(5e9, 1.8e9), MONTH_S)
    assert rev.overage_cny == pytest.approx(8_000)
    # the fee falls to 0.8 x from mid-month: 1000 x 50 x (0.5 + 0.5 x 0.8) = 45,000 CNY; the
    # overage price too: 16,000 x (0.5 + 0.5 x 0.8) = 14,400 (elasticity 0: usage unchanged)
    rev = plan_revenue(plans["billed"], billed, served(10e9, 3.6e9), MONTH_S, [(MONTH_S / 2, 0.8)])
    assert (rev.fees_cny, rev.overage_cny) == pytest.approx((45_000, 14_400))


def test_overage_at_list_prices_and_per_token_revenue_by_hand(tmp_path: Path) -> None:
    sc = load(tmp_path, PLANS, sets=["market.plans[billed].overage_cny_per_m_tokens=null"])
    assert sc.market is not None
    plans = {p.id: p for p in sc.market.plans}
    # served at list prices: 10e9 x 2 / 1e6 + 3.6e9 x 8 / 1e6 = 20,000 + 28,800 = 48,800 CNY for
    # 13.6e9 tokens; the overage (8e9 tokens) at that blend: 8 / 13.6 x 48,800 = 28,705.88 CNY
    billed = plan_demand(plans["billed"], sc)
    rev = plan_revenue(plans["billed"], billed, served(10e9, 3.6e9), MONTH_S)
    assert rev.overage_cny == pytest.approx(8 / 13.6 * 48_800)
    # pay as you go at half the list prices, no fee: 48,800 x 0.5 = 24,400 CNY
    payg = plan_demand(plans["payg"], sc)
    assert payg.used_tokens == pytest.approx(13.6 * M) and payg.breakage_tokens is None
    rev = plan_revenue(plans["payg"], payg, served(10e9, 3.6e9), MONTH_S)
    assert (rev.fees_cny, rev.per_token_cny, rev.overage_cny) == pytest.approx((0, 24_400, 0))


def test_requests_quota_and_rate_limit_by_hand(tmp_path: Path) -> None:
    body = (
        """
demand:
  region_weights: equal
  classes:
"""
        + CHAT % "model: qwen3-8b"
        + """
    - name: code
      model: qwen3-8b
      input_tokens: {dist: constant, value: 2500}
      output_tokens: {dist: constant, value: 500}
market:
  plans:
    - id: coding
      billing: monthly
      fee_cny: 40
      unit: requests
      period: 5h
      periods_per_month: 40
      quota: 80
      rate_limit_tokens_per_min: 1000
      active_hours_per_day: 8
      subscribers: 10
      usage: {dist: discrete, values: [10, 100], weights: [1, 1]}
      classes: {chat: 0.5, code: 0.5}
"""
    )
    sc = load(tmp_path, body)
    assert sc.market is not None
    plan = sc.market.plans[0]
    d = plan_demand(plan, sc)
    # tokens per request: half the tokens in 1200-token chats, half in 3000-token code requests
    # -> requests per token 0.5/1200 + 0.5/3000, mean 1 / that = 1714.2857 tokens a request
    per_request = 1 / (0.5 / 1200 + 0.5 / 3000)
    assert d.tokens_per_unit == pytest.approx(per_request)
    # rate cap per 5 h: 1000 tokens/min x 60 x 8 h/day x 5/24 day = 100,000 tokens = 58.33 requests
    # (below the quota of 80); used per period 0.5 x 10 + 0.5 x 58.33 requests; x 40 periods
    rate_cap = 100_000 / per_request
    assert d.used_tokens == pytest.approx((5 + 0.5 * rate_cap) * 40 * per_request)
    assert d.demanded_tokens == pytest.approx(55 * 40 * per_request)
    assert d.breakage_tokens == pytest.approx((80 - 5 - 0.5 * rate_cap) * 40 * per_request)
    assert d.tokens_per_day_by_class["code"] == pytest.approx(d.tokens_per_day / 2)


# --- the expansion ---------------------------------------------------------------------------

EXPANSION = (
    """
demand:
  region_weights: equal
  classes:
"""
    + CHAT % "model: qwen3-8b"
    + """
    - name: code
      model: qwen3-32b
      input_tokens: {dist: constant, value: 2500}
      output_tokens: {dist: constant, value: 500}
market:
  plans:
    - id: payg
      billing: per_token
      subscribers: {east: 300, west: 100}
      usage: {dist: discrete, values: [1e6, 1e7], weights: [1, 1]}
      classes: {chat: 1.0}
    - id: free
      billing: free
      subscribers: 1000
      quota: 2e6
      usage: {dist: discrete, values: [1e6, 3e6], weights: [1, 1]}
      classes: {chat: 0.5, code: 0.5}
    - id: ent
      billing: reserved
      fee_cny: 1e5
      subscribers: {east: 2}
      usage: {dist: discrete, values: [1e9], weights: [1]}
      classes: {code: 1.0}
events:
  - {kind: demand_shock, at: 1d, factor: 2.0, classes: [chat]}
"""
)


def test_expansion_names_tiers_shares_volume_and_regions(tmp_path: Path) -> None:
    sc = load(tmp_path, EXPANSION, serves=", serves: [code]")
    ex, mm = expand(sc)
    assert mm is not None and ex.market is None
    again, mm_again = expand(sc)  # pure: the same scenario, the same expansion
    assert again.demand.classes == ex.demand.classes and mm_again == mm
    # tokens a month: payg 400 x 5.5 M = 2.2e9; free 1000 x 1.5 M (capped at 2 M) = 1.5e9, half
    # chat and half code; ent 2 x 1e9 = 2e9. National: 5.7e9 a month
    assert ex.demand.tokens_per_day == pytest.approx(5.7e9 / MONTH_DAYS)
    got = {c.name: (c.priority, c.share, c.model) for c in ex.demand.classes}
    assert list(got) == [
        "chat/qwen3-8b/paid",
        "chat/qwen3-8b/free",
        "code/qwen3-32b/reserved",
        "code/qwen3-32b/free",
    ]
    expected = {
        "chat/qwen3-8b/paid": (1, 2.2 / 5.7, "qwen3-8b"),
        "chat/qwen3-8b/free": (2, 0.75 / 5.7, "qwen3-8b"),
        "code/qwen3-32b/reserved": (0, 2.0 / 5.7, "qwen3-32b"),
        "code/qwen3-32b/free": (2, 0.75 / 5.7, "qwen3-32b"),
    }
    for name, (prio, share, model) in expected.items():
        assert got[name][0] == prio and got[name][2] == model
        assert got[name][1] == pytest.approx(share, rel=1e-12)
    assert mm.of("code/qwen3-32b/reserved").plans == {"ent": 1.0}
    assert mm.names_by("tier")["free"] == ["chat/qwen3-8b/free", "code/qwen3-32b/free"]
    # the engine rates follow the plans' subscribers: payg 3 : 1 east : west, ent all east
    dm = DemandModel(ex, ex.resolved_catalog)
    base = dm.base_rates  # requests/s by (region, class) at the start
    assert base[0, 0] / base[1, 0] == pytest.approx(3.0)
    assert base[0, 1] / base[1, 1] == pytest.approx(1.0)
    assert base[1, 2] == 0.0
    # national tokens/s of chat's paid tier = payg's 2.2e9 a month
    assert base[:, 0].sum() * 1200 * DAY_S == pytest.approx(2.2e9 / MONTH_DAYS)
    # the pool's serves list and the shock name the engine classes
    pb = ex.nodes[0].pools[1]
    assert pb.serves == ["code/qwen3-32b/reserved", "code/qwen3-32b/free"]
    shock = ex.events[0]
    assert isinstance(shock, DemandShock)
    factor = shock_factor(ex, shock)
    assert factor.tolist() == [[2.0, 2.0, 1.0, 1.0], [2.0, 2.0, 1.0, 1.0]]


def test_no_market_and_no_mix_is_returned_unchanged(tmp_path: Path) -> None:
    body = "demand:\n  tokens_per_day: 1e9\n  region_weights: equal\n  classes:\n"
    sc = load(tmp_path, body + CHAT % "share: 1.0\n      model: qwen3-8b")
    ex, mm = expand(sc)
    assert ex is sc and mm is None


# --- model launch ----------------------------------------------------------------------------

LAUNCH = (
    """
demand:
  tokens_per_day: 1.2e9
  region_weights: equal
  classes:
"""
    + CHAT % "share: 1.0\n      models: {qwen3-8b: 1.0, qwen3-32b: 0.0}"
    + """
events:
  - {kind: model_launch, at: 1d, model: qwen3-32b, share: 0.3, over: 2d}
"""
)


def launched_share(hour: int) -> float:
    """qwen3-32b's mean share over the hour starting at ``hour``: 0 to day 1, then a straight
    line to 0.3 at day 3 (0.3 x (t - 24 h) / 48 h, at the hour's middle), then 0.3."""
    return 0.3 * min(max((hour + 0.5 - 24) / 48, 0.0), 1.0)


def test_model_launch_moves_the_stated_share_over_the_stated_time(tmp_path: Path) -> None:
    names, rates = hour_shares(load(tmp_path, LAUNCH), 96)
    assert names == ["chat/qwen3-8b", "chat/qwen3-32b"]
    share = rates[:, 1] / rates.sum(axis=1)
    expected = np.array([launched_share(h) for h in range(96)])
    np.testing.assert_allclose(share, expected, atol=1e-9)
    assert share[:24].max() == 0.0
    assert (share[47] + share[48]) / 2 == pytest.approx(0.15, abs=1e-9)  # day 2
    np.testing.assert_allclose(share[72:], 0.3, atol=1e-9)
    # the total is untouched: 1.2e9 tokens a day at 1200 tokens a request
    np.testing.assert_allclose(rates.sum(axis=1), 1.2e9 / 1200 / DAY_S, rtol=1e-12)


def test_model_launch_run_serves_the_integral_of_the_shares(tmp_path: Path) -> None:
    result = gs.run(load(tmp_path, LAUNCH))
    tokens = result.flows.assign(t=result.flows["input_tokens"] + result.flows["output_tokens"])
    by_class = tokens.groupby("class")["t"].sum()
    # qwen3-32b: the ramp's triangle (2 d x 0.3 / 2) + day 4 at 0.3 = 0.6 day of 1.2e9 tokens
    assert by_class["chat/qwen3-32b"] == pytest.approx(0.6 * 1.2e9, rel=1e-3)
    assert by_class["chat/qwen3-8b"] == pytest.approx(3.4 * 1.2e9, rel=1e-3)


def test_launches_overlap_and_mix_points_compose_in_time_order(tmp_path: Path) -> None:
    body = (
        """
demand:
  tokens_per_day: 1.2e9
  region_weights: equal
  classes:
"""
        + CHAT
        % (
            "share: 1.0\n      models: {qwen3-8b: 1.0, qwen3-32b: 0.0}\n"
            "      mix: [{at: 3d, models: {qwen3-8b: 0.5, qwen3-32b: 0.5}}]"
        )
        + """
events:
  - {kind: model_launch, at: 1d, model: qwen3-32b, share: 0.2, over: 0}
"""
    )
    _, rates = hour_shares(load(tmp_path, body), 96)
    share = rates[:, 1] / rates.sum(axis=1)
    # a step to 0.2 at day 1, then linear to the mix point's 0.5 at day 3, then flat
    expected = [0.0 if h < 24 else 0.2 + 0.3 * min((h + 0.5 - 24) / 48, 1.0) for h in range(96)]
    np.testing.assert_allclose(share, expected, atol=1e-9)


# --- price changes and elasticity ----------------------------------------------------------

ELASTIC = (
    """
demand:
  region_weights: equal
  classes:
"""
    + CHAT % "model: qwen3-8b"
    + """
market:
  plans:
    - id: payg
      billing: per_token
      subscribers: 1000
      elasticity: -0.5
      usage: {dist: discrete, values: [1e6, 1e7], weights: [1, 1]}
      classes: {chat: 1.0}
    - id: monthly
      billing: monthly
      fee_cny: 30
      quota: 5e6
      subscribers: 1000
      elasticity: -0.5
      usage: {dist: discrete, values: [1e6, 1e7], weights: [1, 1]}
      classes: {chat: 1.0}
events:
  - {kind: price_change, at: 2d, plan: payg, price_factor: 0.64}
  - {kind: price_change, at: 2d, plan: monthly, price_factor: 0.64}
"""
)


def test_price_change_moves_demand_by_the_elasticity(tmp_path: Path) -> None:
    sc = load(tmp_path, ELASTIC)
    names, rates = hour_shares(sc, 96)
    assert names == ["chat/qwen3-8b/paid"]
    # payg: 0.64 ** -0.5 = 1.25 from day 2. monthly, capped at its quota: usage x 1.25 is
    # (1.25 M, 12.5 M) -> used 0.5 x 1.25 + 0.5 x 5 = 3.125 M against 0.5 x 1 + 0.5 x 5 = 3 M.
    # Both at the start: payg 5.5 M, monthly 3 M a subscriber-month
    after = (5.5 * 1.25 + 3.125) / (5.5 + 3.0)
    ratio = rates[:, 0] / rates[0, 0]
    np.testing.assert_allclose(ratio[:48], 1.0, rtol=1e-12)
    np.testing.assert_allclose(ratio[48:], after, rtol=1e-12)
    # each plan's share of the class over the 4 days: payg 5.5 x (2 + 2 x 1.25) = 24.75,
    # monthly 3 x 2 + 3.125 x 2 = 12.25
    _, mm = expand(sc)
    assert mm is not None
    split = mm.of("chat/qwen3-8b/paid").plans
    assert split["payg"] == pytest.approx(24.75 / 37.0, rel=1e-12)
    assert split["monthly"] == pytest.approx(12.25 / 37.0, rel=1e-12)
    assert mm.price_steps("payg") == [(2 * DAY_S, 0.64)]
    assert not any(getattr(e, "plan", None) for e in expand(sc)[0].events)


def test_price_change_alone_scales_by_f_to_the_elasticity(tmp_path: Path) -> None:
    sc = load(tmp_path, ELASTIC, sets=["market.plans[monthly].subscribers=0"])
    _, rates = hour_shares(sc, 96)
    ratio = rates[:, 0] / rates[0, 0]
    np.testing.assert_allclose(ratio[:48], 1.0, rtol=1e-12)
    np.testing.assert_allclose(ratio[48:], 1.25, rtol=1e-12)


# --- errors ----------------------------------------------------------------------------------


def test_plan_filling_a_class_with_a_share_is_a_schema_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="has a share or rate_per_s"):
        load(tmp_path, ELASTIC, sets=["demand.classes[chat].share=0.5"])


def test_launch_of_a_model_the_class_lacks_is_a_schema_error(tmp_path: Path) -> None:
    body = LAUNCH.replace("model: qwen3-32b, share", "model: qwen3-8b, share").replace(
        "{qwen3-8b: 1.0, qwen3-32b: 0.0}", "{qwen3-32b: 1.0}"
    )
    body = body.replace(
        "model_launch, at: 1d, model: qwen3-8b",
        "model_launch, at: 1d, classes: [chat], model: qwen3-8b",
    )
    with pytest.raises(ScenarioError, match="add 'qwen3-8b' to class 'chat'"):
        load(tmp_path, body)


def test_zero_subscribers_everywhere_is_a_clear_error(tmp_path: Path) -> None:
    sets = ["market.plans[payg].subscribers=0", "market.plans[monthly].subscribers={east: 0}"]
    sc = load(tmp_path, ELASTIC, sets=sets)
    with pytest.raises(ValueError, match=r"add up to 0 tokens/day.*give some plan subscribers"):
        expand(sc)


def test_mix_point_inside_a_launch_is_a_clear_error(tmp_path: Path) -> None:
    body = LAUNCH.replace(
        "qwen3-32b: 0.0}", "qwen3-32b: 0.0}\n      mix: [{at: 2d, models: {qwen3-8b: 1.0}}]"
    )
    with pytest.raises(ValueError, match="mix point 0 at 2 d falls inside a model launch"):
        expand(load(tmp_path, body))
