"""A run's token market read back per plan, per model and per tier (pure, no file I/O).

``gridsim.market.expand`` turned the scenario's plans and model mixes into engine classes, one
per (class, model, tier); this module maps a run's tables (flows, costs, the summary's
``by_class`` counts) back onto plans, models and tiers. Every figure is defined once, in a
table function (``plans_table``, ``models_table``, ``tiers_table``,
``model_tokens_over_time``); ``market_summary`` is those tables as summary.json's ``market``
block, and the report draws from that block.

Definitions (money and tokens are simulated totals over the horizon, as in
``gridsim.economics``: with ``demand.sample_fraction`` below 1 they are that share of the
national figures; ``national_*_per_day`` scale them as economics does):

- a plan's **served tokens**: each engine class's served tokens (flows) x the plan's share of
  that class's demand (``EngineClass.plans``), split into computed input (1 - h), cache-hit
  input (h, the class's ``cache_hit_share``) and output, per model;
- a plan's **revenue** = fees + per-token + overage, ``gridsim.market.plans.plan_revenue`` of
  those served tokens (given at national scale, then scaled back with the rest);
- a plan's **cost**: its share of its engine classes' cost (``economics.flow_economics``:
  electricity, capex and network, shared among classes by served tokens), by the same shares;
  **margin** = revenue - cost;
- **quota and breakage** (``PlanDemand``, the plans' arithmetic at the start): per subscriber
  per month, and national over the horizon = per subscriber per month x subscribers x months
  of the horizon (scaled to the simulated share like the tokens);
- a model's **revenue**: each plan's per-token and overage revenue shared among the models it
  used by the list-price value of its served tokens of each (what those tokens cost at that
  model's prices; by tokens where that is zero), and its fees by its served tokens; tokens sold
  by no plan (classes with a share of their own) earn list prices, as the plan ``(list price)``;
- a tier's **shed** requests = dropped + abandoned (``summary["by_class"]``, summed over the
  tier's engine classes); its **SLA attainment** = requests that met every SLO / requests that
  ended (served, dropped, abandoned or lost), pooled over its engine classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gridsim import economics
from gridsim.economics import RunTables  # what a run's tables are (a Result has them)
from gridsim.market.expand import MarketMap, expand
from gridsim.market.plans import ServedTokens, plan_revenue
from gridsim.scenario import Scenario
from gridsim.scenario.market_spec import MONTH_S, TIER_PRIORITY, Plan

LIST_PRICE = "(list price)"  # the pseudo-plan of tokens sold by no plan, at list prices
OTHERS = "others"  # label of the models past the top ones in tables and figures
TIERS = tuple(sorted(TIER_PRIORITY, key=TIER_PRIORITY.__getitem__))  # reserved, paid, free
REVENUE_PARTS = ("fees_cny", "per_token_cny", "overage_cny")


@dataclass(frozen=True)
class _Served:
    """One engine class over the run: tokens served (flows), their cost, tokens demanded."""

    input_tokens: float
    output_tokens: float
    cost_cny: float
    demanded_tokens: float
    cache_hit_share: float


@dataclass(frozen=True)
class _Market:
    """One run's market, read once: the map and what each engine class served and cost."""

    scenario: Scenario  # the expanded scenario (the engines' classes)
    map: MarketMap
    plans: dict[str, Plan]
    served: dict[str, _Served]  # by engine class name
    horizon_s: float
    scale: float  # simulated total -> national total (economics.national_scale)


def market_map(result: RunTables) -> MarketMap | None:
    """The run's market map (None: a scenario without market or model mixes)."""
    return expand(result.scenario)[1]


def _market(result: RunTables) -> _Market | None:
    expanded, mmap = expand(result.scenario)
    if mmap is None:
        return None
    flows = economics.flow_economics(result)
    flows = flows[flows["class"] != economics.IDLE]
    sums = flows.groupby("class")[["input_tokens", "output_tokens", "cost_cny"]].sum()
    got = {str(k): {str(c): float(v) for c, v in r.items()} for k, r in sums.iterrows()}
    hit = {c.name: float(c.cache_hit_share) for c in expanded.demand.classes}
    by_class = result.summary.get("by_class") or {}
    served = {}
    for ec in mmap.classes:
        row = got.get(ec.name, {})
        served[ec.name] = _Served(
            input_tokens=row.get("input_tokens", 0.0),
            output_tokens=row.get("output_tokens", 0.0),
            cost_cny=row.get("cost_cny", 0.0),
            demanded_tokens=_block_tokens(by_class.get(ec.name), "demanded"),
            cache_hit_share=hit.get(ec.name, 0.0),
        )
    market = result.scenario.market
    return _Market(
        scenario=expanded,
        map=mmap,
        plans={p.id: p for p in market.plans} if market is not None else {},
        served=served,
        horizon_s=float(result.summary.get("horizon_s") or result.scenario.horizon.duration),
        scale=economics.national_scale(result),
    )


# --- per plan and per model --------------------------------------------------------------------

_TOKEN_COLUMNS = ("input_computed_tokens", "input_cache_hit_tokens", "output_tokens")


def _plan_model_tokens(m: _Market) -> pd.DataFrame:
    """Served tokens per (plan, model): computed input, cache-hit input and output, their
    list-price value, cost and the tokens demanded, simulated totals; engine classes sold by
    no plan go to ``LIST_PRICE``."""
    rows = []
    for ec in m.map.classes:
        if ec.model is None:
            continue  # job classes carry no tokens and no plan
        c = m.served[ec.name]
        h = c.cache_hit_share
        for plan, share in (ec.plans or {LIST_PRICE: 1.0}).items():
            rows.append(
                {
                    "plan": plan,
                    "model": ec.model,
                    "input_computed_tokens": c.input_tokens * (1.0 - h) * share,
                    "input_cache_hit_tokens": c.input_tokens * h * share,
                    "output_tokens": c.output_tokens * share,
                    "cost_cny": c.cost_cny * share,
                    "demanded_tokens": c.demanded_tokens * share,
                }
            )
    cols = [*_TOKEN_COLUMNS, "cost_cny", "demanded_tokens"]
    if not rows:  # a grid of job classes only: no tokens to sell
        return pd.DataFrame(columns=["plan", "model", *cols, "served_tokens", "list_value_cny"])
    table = pd.DataFrame(rows).groupby(["plan", "model"], sort=False)[cols].sum()
    table = table.reset_index()
    table["served_tokens"] = table[list(_TOKEN_COLUMNS)].sum(axis=1)
    prices = _list_prices(m.scenario)
    p = np.array([prices.get(str(x), (0.0, 0.0, 0.0)) for x in table["model"]]).reshape(-1, 3)
    table["list_value_cny"] = (table[list(_TOKEN_COLUMNS)].to_numpy() * p).sum(axis=1) / 1e6
    return table


def _list_prices(scenario: Scenario) -> dict[str, tuple[float, float, float]]:
    """Model id -> (input, cache-hit input, output) list price, CNY per 1e6 tokens."""
    return {
        mid: (m.price_in_cny_per_m, m.price_cache_hit_cny_per_m, m.price_out_cny_per_m)
        for mid, m in scenario.resolved_catalog.models.items()
    }


def _price_steps(m: _Market, plan: str) -> list[tuple[float, float]]:
    """The plan's price_change steps, (t_s, factor from then on); 1 before the first."""
    return [(t, f) for t, p, f in m.map.price_changes if p == plan]


def _revenue(m: _Market, plan_id: str, tokens: pd.DataFrame) -> dict[str, float]:
    """Fees, per-token and overage revenue of one plan over the horizon, simulated totals."""
    if plan_id == LIST_PRICE:
        return {"fees_cny": 0.0, "per_token_cny": float(tokens["list_value_cny"].sum()),
                "overage_cny": 0.0}  # fmt: skip
    prices = _list_prices(m.scenario)
    # fees are national (subscribers x fee): the plan's tokens go in at national scale too,
    # and the three parts come back at the simulated scale of the rest of the run
    served = {
        str(r["model"]): ServedTokens(
            float(r["input_computed_tokens"]) * m.scale,
            float(r["input_cache_hit_tokens"]) * m.scale,
            float(r["output_tokens"]) * m.scale,
            *prices.get(str(r["model"]), (0.0, 0.0, 0.0)),
        )
        for r in tokens.to_dict("records")
    }
    parts = plan_revenue(
        m.plans[plan_id],
        m.map.plans[plan_id],
        served,
        m.horizon_s,
        _price_steps(m, plan_id),
        demanded_tokens=float(tokens["demanded_tokens"].sum()) * m.scale,
    )
    return {k: float(getattr(parts, k)) / m.scale for k in REVENUE_PARTS}


def plans_table(result: RunTables) -> pd.DataFrame:
    """One row per plan: subscribers, usage, quota and breakage per subscriber per month (the
    plans' arithmetic) and over the horizon, served tokens, revenue parts, cost and margin;
    empty without a market."""
    m = _market(result)
    if m is None:
        return pd.DataFrame()
    return _plans(m, _plan_model_tokens(m))


def _plans(m: _Market, tokens: pd.DataFrame) -> pd.DataFrame:
    months = m.horizon_s / MONTH_S
    rows = []
    order = [*m.plans, *([LIST_PRICE] if (tokens["plan"] == LIST_PRICE).any() else [])]
    for plan_id in order:
        mine = tokens[tokens["plan"] == plan_id]
        revenue = _revenue(m, plan_id, mine)
        row: dict[str, Any] = {"plan": plan_id}
        plan = m.plans.get(plan_id)
        if plan is not None:
            d = m.map.plans[plan_id]
            subs = float(d.subscribers)
            quota = _opt(d.quota_tokens)
            breakage = _opt(d.breakage_tokens)
            use = None if not quota or breakage is None else 1.0 - breakage / quota
            row |= {
                "billing": plan.billing,
                "tier": plan.admission_tier,
                "subscribers": subs,
                "fee_cny_per_subscriber_month": plan.fee_cny,
                "quota_tokens_per_subscriber_month": quota,
                "demanded_tokens_per_subscriber_month": float(d.demanded_tokens),
                "used_tokens_per_subscriber_month": float(d.used_tokens),
                "throttled_tokens_per_subscriber_month": float(d.throttled_tokens),
                "overage_tokens_per_subscriber_month": float(d.overage_tokens),
                "breakage_tokens_per_subscriber_month": breakage,
                "quota_use_share": use,  # of the quota, the share used (E[min(U, q)] / q)
                "breakage_share": None if use is None else 1.0 - use,
                # national over the horizon (at the start's usage), scaled to the simulated
                # share like the tokens
                "quota_tokens": None if quota is None else quota * subs * months / m.scale,
                "breakage_tokens": None if breakage is None else breakage * subs * months / m.scale,
                "throttled_tokens": float(d.throttled_tokens) * subs * months / m.scale,
            }
        else:
            row |= {"billing": "list price", "tier": None, "subscribers": None}
        row |= {
            "served_tokens": float(mine["served_tokens"].sum()),
            **revenue,
            "revenue_cny": sum(revenue.values()),
            "cost_cny": float(mine["cost_cny"].sum()),
        }
        row["margin_cny"] = row["revenue_cny"] - row["cost_cny"]
        rows.append(row)
    return pd.DataFrame(rows)


def models_table(result: RunTables) -> pd.DataFrame:
    """One row per model: tokens served, revenue parts (plans' revenue shared by the value and
    the tokens of what each model served them), cost, margin, and per million tokens."""
    m = _market(result)
    if m is None:
        return pd.DataFrame()
    tokens = _plan_model_tokens(m)
    return _models(tokens, _plans(m, tokens))


def _models(tokens: pd.DataFrame, plans: pd.DataFrame) -> pd.DataFrame:
    t = tokens.copy()
    per_plan = t.groupby("plan")[["served_tokens", "list_value_cny"]].transform("sum")
    with np.errstate(invalid="ignore", divide="ignore"):
        by_tokens = np.where(
            per_plan["served_tokens"] > 0, t["served_tokens"] / per_plan["served_tokens"], 0.0
        )
        by_value = np.where(
            per_plan["list_value_cny"] > 0,
            t["list_value_cny"] / per_plan["list_value_cny"],
            by_tokens,
        )
    money = plans.set_index("plan")
    for part, weight in (("fees_cny", by_tokens), ("per_token_cny", by_value),
                         ("overage_cny", by_value)):  # fmt: skip
        t[part] = money[part].reindex(t["plan"]).fillna(0.0).to_numpy() * weight
    cols = ["input_computed_tokens", "input_cache_hit_tokens", "output_tokens", "served_tokens",
            *REVENUE_PARTS, "cost_cny"]  # fmt: skip
    out = t.groupby("model", sort=False)[cols].sum().reset_index()
    out["revenue_cny"] = out[list(REVENUE_PARTS)].sum(axis=1)
    out["margin_cny"] = out["revenue_cny"] - out["cost_cny"]
    per_m = out["served_tokens"].where(out["served_tokens"] > 0) / 1e6
    out["cost_cny_per_m_tokens"] = out["cost_cny"] / per_m
    out["revenue_cny_per_m_tokens"] = out["revenue_cny"] / per_m
    return out.sort_values(["served_tokens", "model"], ascending=[False, True], ignore_index=True)


# --- per tier ----------------------------------------------------------------------------------


def tiers_table(result: RunTables) -> pd.DataFrame:
    """One row per tier (reserved, paid, free, those present): requests arrived, served,
    dropped, abandoned, shed (dropped + abandoned) and its share of arrivals, SLA attainment
    pooled over the tier's engine classes, and tokens served; empty without tiers."""
    m = _market(result)
    if m is None:
        return pd.DataFrame()
    return _tiers(m, result.summary)


def _tiers(m: _Market, summary: dict[str, Any]) -> pd.DataFrame:
    by_class = summary.get("by_class") or {}
    rows = []
    for tier in TIERS:
        members = [ec for ec in m.map.classes if ec.tier == tier]
        if not members:
            continue
        counts = dict.fromkeys(("arrived", "served", "dropped", "abandoned", "lost"), 0.0)
        met = ended = tokens = 0.0
        for ec in members:
            block = by_class.get(ec.name) or {}
            req = block.get("requests") or {}
            for k in counts:
                counts[k] += float(req.get(k) or 0)
            # attainment is met / ended per class: pool it by the requests that ended
            n_end = sum(float(req.get(k) or 0) for k in ("served", "dropped", "abandoned", "lost"))
            sla = block.get("sla_attainment")
            if sla is not None:
                met += float(sla) * n_end
                ended += n_end
            tokens += _block_tokens(block, "served")
        shed = counts["dropped"] + counts["abandoned"]
        rows.append(
            {
                "tier": tier,
                "priority": TIER_PRIORITY[tier],
                "engine_classes": len(members),
                **{f"requests_{k}": v for k, v in counts.items()},
                "requests_shed": shed,
                "shed_share": shed / counts["arrived"] if counts["arrived"] > 0 else None,
                "sla_attainment": met / ended if ended > 0 else None,
                "tokens_served": tokens,
            }
        )
    return pd.DataFrame(rows)


# --- tokens per model over time ----------------------------------------------------------------


MAX_INTERVALS = 2000  # a year at 1-minute intervals would be 200 classes x 525,600 cells


def model_tokens_over_time(result: RunTables) -> pd.DataFrame:
    """Tokens per model per interval: time_s (the interval's start), interval_s, model,
    ``demanded_tokens`` and ``served_tokens`` (simulated totals in the interval).

    Intervals are ``outputs.timeseries_interval``, or a whole multiple of it that makes at
    most ``MAX_INTERVALS``. ``demanded_tokens`` are the expected tokens of the demand model's
    rates, the rates both engines draw from (growth, profile, model mix, launches and plan
    price changes; demand shocks left out); ``served_tokens`` are an estimate: each engine
    class's demanded tokens in the interval x its served share of demanded tokens over the
    run (the engines count served tokens per class over the run, not per interval)."""
    columns = ["time_s", "interval_s", "model", "demanded_tokens", "served_tokens"]
    m = _market(result)
    if m is None:
        return pd.DataFrame(columns=columns)
    from gridsim.demand.model import DemandModel

    demand = DemandModel(m.scenario)
    step_s = float(m.scenario.outputs.timeseries_interval)
    step_s *= max(1, math.ceil(m.horizon_s / step_s / MAX_INTERVALS))
    edges = np.append(np.arange(0.0, m.horizon_s, step_s), m.horizon_s)
    # the national rate per class x the hourly intensity integrated over each interval (a
    # regions axis, as DemandModel.mean_rates has, would not fit in memory for a year)
    cum = demand.intensity.cumulative(edges)  # classes x edges
    per_class = demand.base_rates.sum(axis=0)[:, None] * np.diff(cum, axis=1)
    per_class *= (demand.mean_input_tokens + demand.mean_output_tokens)[:, None]
    by_class = result.summary.get("by_class") or {}
    model_of = {ec.name: ec.model for ec in m.map.classes}
    names = demand.class_names
    frames = []
    for model in dict.fromkeys(model_of[n] for n in names if model_of.get(n) is not None):
        rows = [i for i, n in enumerate(names) if model_of.get(n) == model]
        share = np.array([_served_share(by_class.get(names[i])) for i in rows])
        frames.append(
            pd.DataFrame(
                {
                    "time_s": edges[:-1],
                    "interval_s": np.diff(edges),
                    "model": model,
                    "demanded_tokens": per_class[rows].sum(axis=0),
                    "served_tokens": (per_class[rows] * share[:, None]).sum(axis=0),
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


def _served_share(block: dict[str, Any] | None) -> float:
    """Served over demanded tokens of one class over the run (1 where nothing was demanded)."""
    demanded = _block_tokens(block, "demanded")
    return _block_tokens(block, "served") / demanded if demanded > 0 else 1.0


def _block_tokens(block: dict[str, Any] | None, key: str) -> float:
    """Input + output tokens ``demanded`` or ``served`` of a summary block (by_class)."""
    tok = (block or {}).get("tokens") or {}
    return sum(float((tok.get(side) or {}).get(key) or 0) for side in ("input", "output"))


# --- summary -----------------------------------------------------------------------------------


def market_summary(result: RunTables) -> dict[str, Any] | None:
    """summary.json's ``market`` block: the totals (revenue, cost, margin, breakage, throttled
    tokens ...), then ``by_plan``, ``by_model`` and ``by_tier`` (the tables as mappings); None
    without a market or model mixes. JSON-safe (None where a figure is undefined)."""
    m = _market(result)
    if m is None:
        return None
    tokens = _plan_model_tokens(m)
    plans = _plans(m, tokens)
    models = _models(tokens, plans)
    tiers = _tiers(m, result.summary)
    revenue = _sum(plans, "revenue_cny")
    cost = _sum(plans, "cost_cny")
    served = _sum(plans, "served_tokens")
    quota = _sum(plans, "quota_tokens")
    breakage = _sum(plans, "breakage_tokens")
    per_day = economics.national_per_day(result)
    free = tiers[tiers["tier"] == "free"] if not tiers.empty else tiers
    # totals first (the national KPIs), then the blocks that repeat them per plan and model
    return _json_safe(
        {
            "revenue_cny": revenue,
            **{part: _sum(plans, part) for part in REVENUE_PARTS},
            "cost_cny": cost,
            "margin_cny": revenue - cost,
            "served_tokens": served,
            "cost_cny_per_m_tokens": cost * 1e6 / served if served > 0 else None,
            "revenue_cny_per_m_tokens": revenue * 1e6 / served if served > 0 else None,
            "quota_tokens": quota,
            "breakage_tokens": breakage,
            "breakage_share": breakage / quota if quota > 0 else None,
            "throttled_tokens": _sum(plans, "throttled_tokens"),
            "national_revenue_cny_per_day": revenue * per_day,
            "national_margin_cny_per_day": (revenue - cost) * per_day,
            "free_shed_share": None if free.empty else free["shed_share"].iloc[0],
            "by_plan": _records(plans, "plan"),
            "by_model": _records(models, "model"),
            "by_tier": _records(tiers, "tier"),
        }
    )


def _records(table: pd.DataFrame, key: str) -> dict[str, dict[str, Any]]:
    if table.empty:
        return {}
    return {
        str(row[key]): {str(k): _clean(v) for k, v in row.items() if k != key}
        for row in table.to_dict("records")
    }


def _sum(table: pd.DataFrame, col: str) -> float:
    if table.empty or col not in table:
        return 0.0
    return float(pd.to_numeric(table[col], errors="coerce").fillna(0.0).sum())


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def _clean(v: Any) -> Any:
    """A table cell for JSON: numpy scalars as Python, NaN as None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _json_safe(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _json_safe(v) for k, v in node.items()}
    return _clean(node)
