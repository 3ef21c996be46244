"""Token packages and model mixes: what carriers sell, turned into the engines' classes.

``expand`` (``gridsim.market.expand``, over the functions of time in
``gridsim.market.timeline``) turns a scenario's market plans and class model mixes
into plain classes, one per (class, model, tier), each with one model, a priority and a weight
schedule; ``gridsim.market.plans`` holds the plans' arithmetic (demand, quota, breakage,
revenue); ``gridsim.market.outputs`` reads a run's tables back per plan, model and tier.
"""

from gridsim.market.expand import EngineClass, MarketMap, expand
from gridsim.market.plans import (
    PlanDemand,
    PlanRevenue,
    ServedTokens,
    capped_mean,
    excess_mean,
    mean,
    plan_demand,
    plan_demands,
    plan_revenue,
    tokens_per_request,
    usage_scale,
)
from gridsim.market.timeline import model_shares

__all__ = [
    "EngineClass",
    "MarketMap",
    "PlanDemand",
    "PlanRevenue",
    "ServedTokens",
    "capped_mean",
    "excess_mean",
    "expand",
    "mean",
    "model_shares",
    "plan_demand",
    "plan_demands",
    "plan_revenue",
    "tokens_per_request",
    "usage_scale",
]
