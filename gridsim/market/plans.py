"""The arithmetic of token plans: demand, quota, breakage, overage and revenue, in closed form.

A plan's subscribers each use ``U`` per period (``usage``, in the plan's unit) for
``periods_per_month`` periods a month. The usage a subscriber gets in a period is capped at
``cap = min(quota, rate-limit cap)`` (the rate-limit cap is ``limit x 60 x active_hours_per_day
x days per period`` tokens), except that a plan billing overage lets usage pass the quota (and
bills it), so only the rate limit caps it. Per subscriber per period, with ``q`` the quota and
``r`` the rate-limit cap:

- demanded = E[U]
- used = E[min(U, cap)]          (cap = min(q, r) when throttled at the quota, r when billed)
- throttled = demanded - used
- breakage = q - E[min(U, q, r)]  (quota paid for and unused)
- overage = E[min(U, r)] - E[min(U, q, r)]  (billed tokens past the quota)

Lognormal usage (mean ``m``, ``s`` the std of log U, ``mu = ln m - s^2 / 2``):
``E[min(U, q)] = m Phi((ln q - mu - s^2) / s) + q (1 - Phi((ln q - mu) / s))``; discrete usage:
sums over its values. Everything here is per subscriber per month in tokens unless the name
says otherwise; a plan in requests converts at its classes' mean tokens per request.

A plan price change by factor ``f`` scales every price of the plan by ``f`` and the usage
distribution by ``f ** elasticity`` (the cap stays: a cheaper plan is used more, up to its
quota).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from gridsim.catalog import Catalog
from gridsim.demand.growth import region_weights
from gridsim.demand.lengths import LengthSampler
from gridsim.scenario import Scenario
from gridsim.scenario.market_spec import MONTH_S, DiscreteUsage, LognormalUsage, Plan

DAY_S = 86_400.0
MONTH_DAYS = MONTH_S / DAY_S  # 30.436875: the growth law's month
Usage = LognormalUsage | DiscreteUsage
PriceSteps = Sequence[tuple[float, float]]  # (t_s, price factor from t_s on); 1 before the first


def _upper_tail(x: float) -> float:
    """1 - Phi(x), accurate far into the upper tail (erfc, not 1 - erf)."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


def mean(usage: Usage) -> float:
    """E[U]."""
    if isinstance(usage, LognormalUsage):
        return float(usage.mean)
    w = np.asarray(usage.weights, dtype=np.float64)
    return float(np.dot(usage.values, w / w.sum()))


def capped_mean(usage: Usage, cap: float | None) -> float:
    """E[min(U, cap)]; E[U] without a cap."""
    if cap is None or math.isinf(cap):
        return mean(usage)
    if cap <= 0:
        return 0.0
    if isinstance(usage, LognormalUsage):
        s = usage.sigma
        mu = math.log(usage.mean) - s * s / 2.0
        z = (math.log(cap) - mu) / s
        # E[U; U <= q] + q P(U > q), written with upper tails so a far cap keeps its precision
        return usage.mean * (1.0 - _upper_tail(z - s)) + cap * _upper_tail(z)
    w = np.asarray(usage.weights, dtype=np.float64)
    return float(np.dot(np.minimum(usage.values, cap), w / w.sum()))


def excess_mean(usage: Usage, cap: float | None) -> float:
    """E[max(U - cap, 0)]; 0 without a cap."""
    if cap is None or math.isinf(cap):
        return 0.0
    if cap <= 0:
        return mean(usage)
    if isinstance(usage, LognormalUsage):
        s = usage.sigma
        mu = math.log(usage.mean) - s * s / 2.0
        z = (math.log(cap) - mu) / s
        # directly, not E[U] - E[min(U, q)]: that difference loses the tail to rounding
        return usage.mean * _upper_tail(z - s) - cap * _upper_tail(z)
    w = np.asarray(usage.weights, dtype=np.float64)
    return float(np.dot(np.maximum(np.asarray(usage.values) - cap, 0.0), w / w.sum()))


def scaled(usage: Usage, factor: float) -> Usage:
    """The usage law of ``factor x U`` (a price change's elasticity response)."""
    if factor == 1.0:
        return usage
    if factor < 0 or not math.isfinite(factor):
        raise ValueError(f"a usage scale factor must be finite and >= 0, not {factor!r}")
    if isinstance(usage, LognormalUsage):
        # mean 0 is not a lognormal: a tiny positive mean behaves the same in every sum here
        return usage.model_copy(update={"mean": max(usage.mean * factor, 1e-300)})
    return usage.model_copy(update={"values": [v * factor for v in usage.values]})


def usage_scale(plan: Plan, price_factor: float) -> float:
    """The usage multiplier after the plan's prices are multiplied by ``price_factor``."""
    return float(price_factor**plan.elasticity)


def tokens_per_request(plan: Plan, scenario: Scenario) -> float:
    """Mean tokens (input + output) per request of the plan's traffic.

    The class shares are shares of the plan's TOKENS, so requests per token add up over
    classes, ``sum(share / tokens per request)``, and the mean is its inverse (a harmonic
    mean): a plan half in short chats and half in long documents makes more chat requests.
    """
    classes = {c.name: c for c in scenario.demand.classes}
    requests_per_token = 0.0
    for name, share in plan.classes.items():
        cls = classes[name]
        if cls.input_tokens is None or cls.output_tokens is None:
            raise ValueError(
                f"market plan {plan.id!r} counts requests, but class {name!r} has no token "
                "length distributions to convert them (input_tokens, output_tokens)"
            )
        tokens = LengthSampler(cls.input_tokens).mean + LengthSampler(cls.output_tokens).mean
        requests_per_token += share / tokens
    if requests_per_token <= 0:
        raise ValueError(f"market plan {plan.id!r} has no class with a positive share")
    return 1.0 / requests_per_token


@dataclass(frozen=True)
class PlanDemand:
    """One plan's demand, per subscriber per month in tokens unless the name says otherwise
    (national figures: x ``subscribers``)."""

    plan_id: str
    tier: str
    priority: int
    subscribers: float  # national (contracts for reserved plans)
    subscribers_by_region: dict[str, float]
    tokens_per_unit: float  # 1 for a plan in tokens; mean tokens per request for requests
    periods_per_month: float
    usage: Usage  # per subscriber per period, in the plan's unit (after elasticity)
    cap_units: float | None  # usage cap per period in the plan's unit (None: no cap)
    demanded_tokens: float  # uncapped
    used_tokens: float  # after throttling at the quota (unless billed) and the rate limit
    throttled_tokens: float
    quota_tokens: float | None
    breakage_tokens: float | None  # quota paid for and unused; None without a quota
    overage_tokens: float  # billed past the quota (0 unless over_quota: bill)
    tokens_per_day: float  # national, at the start: subscribers x used / days per month
    tokens_per_day_by_class: dict[str, float] = field(default_factory=dict)

    @property
    def used_tokens_per_month(self) -> float:
        """National used tokens a month."""
        return self.subscribers * self.used_tokens

    @property
    def breakage_tokens_per_month(self) -> float | None:
        """National quota tokens paid for and unused a month."""
        if self.breakage_tokens is None:
            return None
        return self.subscribers * self.breakage_tokens

    @property
    def overage_tokens_per_month(self) -> float:
        return self.subscribers * self.overage_tokens


def _rate_cap_tokens(plan: Plan) -> float | None:
    """Tokens per period the per-tenant rate limit lets through (limit x active minutes)."""
    if plan.rate_limit_tokens_per_min is None:
        return None
    days_per_period = plan.period / DAY_S
    return plan.rate_limit_tokens_per_min * 60.0 * plan.active_hours_per_day * days_per_period


def _subscribers_by_region(plan: Plan, scenario: Scenario, catalog: Catalog) -> dict[str, float]:
    region_ids = [r.id for r in scenario.regions]
    if isinstance(plan.subscribers, dict):
        return {r: float(plan.subscribers.get(r, 0.0)) for r in region_ids}
    weights = region_weights(scenario, catalog)
    return {r: float(plan.subscribers) * float(w) for r, w in zip(region_ids, weights, strict=True)}


def plan_demand(
    plan: Plan,
    scenario: Scenario,
    catalog: Catalog | None = None,
    price_factor: float = 1.0,
) -> PlanDemand:
    """The plan's demand, quota use, breakage and overage, with its prices at ``price_factor``
    x the scenario's (usage x ``price_factor ** elasticity``)."""
    if plan.period <= 0:
        raise ValueError(f"market plan {plan.id!r}: period must be positive, not {plan.period}")
    by_region = _subscribers_by_region(plan, scenario, catalog or scenario.resolved_catalog)
    tokens_per_unit = 1.0 if plan.unit == "tokens" else tokens_per_request(plan, scenario)
    per_month = plan.periods_per_month or MONTH_S / plan.period
    usage = scaled(plan.usage, usage_scale(plan, price_factor))
    rate_cap_tokens = _rate_cap_tokens(plan)
    rate_cap = None if rate_cap_tokens is None else rate_cap_tokens / tokens_per_unit
    quota = plan.quota
    both = rate_cap if quota is None else quota if rate_cap is None else min(quota, rate_cap)
    cap = rate_cap if plan.over_quota == "bill" else both
    to_month = per_month * tokens_per_unit
    demanded = mean(usage) * to_month
    used = capped_mean(usage, cap) * to_month
    breakage = overage = None
    if quota is not None:
        quota_used = capped_mean(usage, both)
        breakage = (quota - quota_used) * to_month
        overage = (capped_mean(usage, rate_cap) - quota_used) * to_month
    subscribers = float(sum(by_region.values()))
    per_day = subscribers * used / MONTH_DAYS
    return PlanDemand(
        plan_id=plan.id,
        tier=plan.admission_tier,
        priority=plan.priority,
        subscribers=subscribers,
        subscribers_by_region=by_region,
        tokens_per_unit=tokens_per_unit,
        periods_per_month=per_month,
        usage=usage,
        cap_units=cap,
        demanded_tokens=demanded,
        used_tokens=used,
        throttled_tokens=demanded - used,
        quota_tokens=None if quota is None else quota * to_month,
        breakage_tokens=breakage,
        overage_tokens=overage if plan.over_quota == "bill" and overage is not None else 0.0,
        tokens_per_day=per_day,
        tokens_per_day_by_class={c: per_day * s for c, s in plan.classes.items()},
    )


def plan_demands(scenario: Scenario, catalog: Catalog | None = None) -> dict[str, PlanDemand]:
    """Every plan of the scenario's market, by plan id ({} without a market)."""
    if scenario.market is None:
        return {}
    cat = catalog or scenario.resolved_catalog
    return {p.id: plan_demand(p, scenario, cat) for p in scenario.market.plans}


# --- revenue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedTokens:
    """A plan's tokens served by one model over the horizon, and that model's list prices."""

    input_tokens: float  # computed (prefilled) input
    cache_hit_tokens: float  # input found in the prefix cache
    output_tokens: float
    price_in_cny_per_m: float
    price_cache_hit_cny_per_m: float
    price_out_cny_per_m: float

    @property
    def total_tokens(self) -> float:
        return self.input_tokens + self.cache_hit_tokens + self.output_tokens

    @property
    def list_value_cny(self) -> float:
        """The tokens at list prices (x 1)."""
        return (
            self.input_tokens * self.price_in_cny_per_m
            + self.cache_hit_tokens * self.price_cache_hit_cny_per_m
            + self.output_tokens * self.price_out_cny_per_m
        ) / 1e6


@dataclass(frozen=True)
class PlanRevenue:
    """A plan's revenue over a horizon, CNY."""

    fees_cny: float  # subscribers x fee a month x months (x the price factor in force)
    per_token_cny: float  # per_token billing: served tokens x list prices x price_factor
    overage_cny: float  # bill: served share x overage tokens x overage price

    @property
    def total_cny(self) -> float:
        return self.fees_cny + self.per_token_cny + self.overage_cny


def _segments(horizon_s: float, steps: float | PriceSteps) -> list[tuple[float, float]]:
    """(duration_s, factor) pieces of [0, horizon_s] between price changes."""
    if isinstance(steps, int | float):
        return [(horizon_s, float(steps))]
    points = sorted((float(t), float(f)) for t, f in steps)
    cuts = [0.0] + [t for t, _ in points if 0.0 < t < horizon_s] + [horizon_s]
    out = []
    for a, b in itertools.pairwise(cuts):
        factor = 1.0
        for t, f in points:  # the last change at or before a is in force on [a, b)
            if t <= a:
                factor = f
        out.append((b - a, factor))
    return out


def plan_revenue(
    plan: Plan,
    demand: PlanDemand,
    served_tokens: Mapping[str, ServedTokens],
    horizon_s: float,
    price_factor_at: float | PriceSteps = 1.0,
    *,
    demanded_tokens: float | None = None,
) -> PlanRevenue:
    """Fees + per-token + overage revenue of ``plan`` over ``[0, horizon_s]``.

    ``served_tokens``: the plan's served tokens per model id (with its list prices).
    ``price_factor_at``: the plan's price-change factor, constant, or as steps ``(t_s, factor
    from then on)`` (1 before the first): every price of the plan is multiplied by it, and
    its usage by ``factor ** elasticity``. ``demanded_tokens``: the plan's tokens demanded
    (after its quota) over the horizon in the run, to take the overage's served share from;
    default subscribers x used tokens a month x months (no growth).

    Served tokens are totals over the horizon, so where the factor changes, per-token and
    overage prices are the factor's mean weighted by the plan's usage in each piece (exact
    when demand is otherwise steady; call once per piece between changes for exactness).
    """
    if horizon_s < 0:
        raise ValueError(f"horizon_s must be >= 0, not {horizon_s}")
    pieces = _segments(horizon_s, price_factor_at)
    months = [(d / MONTH_S, f) for d, f in pieces]
    fees = demand.subscribers * plan.fee_cny * sum(m * f for m, f in months)
    # the plan's used and overage tokens in each piece, at that piece's usage scale
    used_by_piece, over_by_piece = [], []
    for m, f in months:
        usage = scaled(demand.usage, usage_scale(plan, f))  # demand is at the scenario's prices
        unit = demand.periods_per_month * demand.tokens_per_unit * demand.subscribers * m
        used_by_piece.append(capped_mean(usage, demand.cap_units) * unit)
        over = 0.0
        if plan.over_quota == "bill" and plan.quota is not None:
            cap = min(plan.quota, demand.cap_units) if demand.cap_units is not None else plan.quota
            over = (capped_mean(usage, demand.cap_units) - capped_mean(usage, cap)) * unit
        over_by_piece.append(over)
    used_total = sum(used_by_piece)
    mean_factor = (
        sum(u * f for u, (_, f) in zip(used_by_piece, months, strict=True)) / used_total
        if used_total > 0
        else (pieces[0][1] if pieces else 1.0)
    )
    served = sum(s.total_tokens for s in served_tokens.values())
    list_value = sum(s.list_value_cny for s in served_tokens.values())
    per_token = 0.0
    if plan.billing == "per_token":
        per_token = list_value * plan.price_factor * mean_factor
    overage = 0.0
    if plan.over_quota == "bill" and plan.quota is not None:
        wanted = used_total if demanded_tokens is None else demanded_tokens
        served_share = min(served / wanted, 1.0) if wanted > 0 else 0.0
        if plan.overage_cny_per_m_tokens is not None:
            price_per_token = plan.overage_cny_per_m_tokens / 1e6
        else:
            # list prices blended at the mix the plan was served (input, cache hit, output)
            price_per_token = (list_value / served if served > 0 else 0.0) * plan.price_factor
        overage = served_share * sum(
            o * f * price_per_token for o, (_, f) in zip(over_by_piece, months, strict=True)
        )
    return PlanRevenue(fees_cny=fees, per_token_cny=per_token, overage_cny=overage)
