"""A scenario's market plans and model mixes, expanded into the plain classes the engines run.

One engine class per (class, model, tier), in class order, then model order, then tier order
(reserved, paid, free), named ``class/model/tier`` (``class/model`` for a model mix without a
market). Each has one model, its tier's priority, a share of the national volume at the start
and a weight schedule that carries everything that moves over time:

    weight(t) = model share(t) x the tier's demand factor from plan price changes(t)

The model share is piecewise linear (mix points, and ``model_launch`` events as linear
ramps); the price factor is a step function (a plan price change by ``f`` moves the plan's
used tokens to those of usage x ``f ** elasticity``, still capped at its quota). Their product
is piecewise linear with steps (a step is two points at one time), so the hourly means the
engines draw from (``gridsim.demand.growth.schedule_weight``) are exact.

The expanded scenario has no market, ``demand.tokens_per_day`` set from the plans, pools'
``serves`` lists and ``demand_shock`` class lists rewritten to the engine classes, and neither
plan price changes nor model launches among its events (they act through the weights).
It is made with ``model_copy`` (no re-validation: ``/`` is not a valid id in YAML, and the
engine classes' names must not need to be).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridsim.demand.growth import (
    HOUR_S,
    national_tokens_per_day,
    profile_factor,
)
from gridsim.market.plans import PlanDemand, capped_mean, plan_demands, scaled, usage_scale
from gridsim.market.timeline import (
    Piecewise,
    model_shares,
    points,
    product,
    seconds,
    step_function,
)
from gridsim.scenario import Scenario
from gridsim.scenario.demand_spec import DemandClass, TraceArrivals
from gridsim.scenario.events import DemandShock, ModelLaunch, PriceChange
from gridsim.scenario.market_spec import TIER_PRIORITY

FloatArray = npt.NDArray[np.float64]
TIERS = tuple(TIER_PRIORITY)  # reserved, paid, free: the engine classes' tier order


@dataclass(frozen=True)
class EngineClass:
    """What one class of the expanded scenario is."""

    name: str  # engine class name (in the expanded scenario)
    base: str  # the scenario's class
    model: str | None  # its one model (None: a job class, or an LLM class of any model)
    tier: str | None  # reserved | paid | free; None without a market
    priority: int
    # plan id -> share of this engine class's demanded tokens over the horizon (integrated;
    # sums to 1); {} for a class no plan fills
    plans: dict[str, float]


@dataclass(frozen=True)
class MarketMap:
    """The expanded scenario's classes, mapped back to classes, models, tiers and plans."""

    classes: tuple[EngineClass, ...]  # the expanded scenario's classes, in order
    plans: dict[str, PlanDemand]  # by plan id ({} without a market)
    price_changes: tuple[tuple[float, str, float], ...]  # (t_s, plan id, factor), time order

    def of(self, name: str) -> EngineClass:
        """The engine class named ``name`` (KeyError names the known ones if none)."""
        for c in self.classes:
            if c.name == name:
                return c
        raise KeyError(f"no engine class {name!r}; classes are {[c.name for c in self.classes]}")

    def names_by(self, key: str) -> dict[str, list[str]]:
        """Engine class names grouped by ``base``, ``model`` or ``tier`` (classes without one,
        e.g. job classes by model, are left out), in first-seen order."""
        if key not in ("base", "model", "tier"):
            raise ValueError(f"group engine classes by base, model or tier, not {key!r}")
        out: dict[str, list[str]] = {}
        for c in self.classes:
            value = getattr(c, key)
            if value is not None:
                out.setdefault(value, []).append(c.name)
        return out

    def price_steps(self, plan_id: str) -> list[tuple[float, float]]:
        """The plan's price factor as steps ``(t_s, factor from then on)``, 1 before the first
        (``gridsim.market.plans.plan_revenue``'s ``price_factor_at``)."""
        return [(t, f) for t, p, f in self.price_changes if p == plan_id]


# --- plan price changes --------------------------------------------------------------------


def _price_changes(scenario: Scenario) -> tuple[tuple[float, str, float], ...]:
    changes = [
        (seconds(scenario, e.at), k, e.plan, e.price_factor)
        for k, e in enumerate(scenario.events)
        if isinstance(e, PriceChange) and e.plan is not None and e.price_factor is not None
    ]
    changes.sort(key=lambda c: (c[0], c[1]))  # same time: the order the YAML lists them
    return tuple((t, plan, f) for t, _, plan, f in changes)


def _usage_steps(
    scenario: Scenario, demand: PlanDemand, steps: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The plan's used tokens relative to the start, as steps (t_s, ratio from then on)."""
    assert scenario.market is not None
    plan = next(p for p in scenario.market.plans if p.id == demand.plan_id)
    base = capped_mean(demand.usage, demand.cap_units)
    out = []
    for t, f in steps:
        used = capped_mean(scaled(demand.usage, usage_scale(plan, f)), demand.cap_units)
        out.append((t, used / base if base > 0 else 1.0))
    return out


def _schedule(
    base: DemandClass, points: list[tuple[float, float]]
) -> list[tuple[float, float]] | None:
    """The engine class's weight schedule (None when it is 1 throughout), with a base class's
    own schedule kept when the expansion adds only a constant factor."""
    weights = {w for _, w in points}
    if len(weights) == 1:
        (w,) = weights
        if base.weight_schedule is not None:
            return [(t, v * w) for t, v in base.weight_schedule]
        return None if w == 1.0 else [(0.0, w)]
    if base.weight_schedule is not None:
        raise ValueError(
            f"class {base.name!r} has its own weight_schedule and a model mix, launch or plan "
            "price change that moves it over time: remove weight_schedule (gridsim.market "
            "writes it)"
        )
    return points


# --- the expansion ---------------------------------------------------------------------------


def expand(scenario: Scenario) -> tuple[Scenario, MarketMap | None]:
    """The scenario the engines run, and the map back to classes, models, tiers and plans.

    Returns ``scenario`` itself and None when it has no market and no class has a model mix.
    """
    market = scenario.market
    if market is None and not any(c.models for c in scenario.demand.classes):
        return scenario, None
    plans = plan_demands(scenario)
    changes = _price_changes(scenario) if market is not None else ()
    filled = {name for p in market.plans for name in p.classes} if market is not None else set()
    tokens_per_day = scenario.demand.tokens_per_day
    if market is not None:
        tokens_per_day = _market_tokens_per_day(scenario, plans, filled)
    steps_by_plan = {
        pid: _usage_steps(scenario, d, [(t, f) for t, p, f in changes if p == pid])
        for pid, d in plans.items()
    }
    demand0 = scenario.demand.model_copy(update={"tokens_per_day": tokens_per_day})
    expanded: list[DemandClass] = []
    engine: list[EngineClass] = []
    names: dict[str, list[tuple[str, str | None]]] = {}  # base -> (engine name, model)
    for cls in scenario.demand.classes:
        if cls.name in filled:
            made = _market_classes(scenario, cls, plans, steps_by_plan, tokens_per_day)
        elif cls.models is not None:
            made = _mix_classes(scenario, cls)
        else:
            made = [(cls, EngineClass(cls.name, cls.name, cls.model, None, cls.priority, {}))]
        expanded.extend(c for c, _ in made)
        engine.extend(e for _, e in made)
        names[cls.name] = [(e.name, e.model) for _, e in made]
    mixed = {c.name for c in scenario.demand.classes if c.models is not None}
    nodes = [
        node.model_copy(
            update={
                "pools": [
                    pool
                    if pool.serves is None
                    else pool.model_copy(
                        update={"serves": _serves(pool.serves, names, mixed, pool.model_ids)}
                    )
                    for pool in node.pools
                ]
            }
        )
        for node in scenario.nodes
    ]
    events = []
    for event in scenario.events:
        if isinstance(event, ModelLaunch) or (
            isinstance(event, PriceChange) and event.plan is not None
        ):
            continue  # they act through the engine classes' weight schedules
        if isinstance(event, DemandShock) and event.classes is not None:
            rewritten = [n for base in event.classes for n, _ in names[base]]
            event = event.model_copy(update={"classes": rewritten})
        events.append(event)
    demand = demand0.model_copy(update={"classes": expanded})
    out = scenario.model_copy(
        update={"market": None, "demand": demand, "nodes": nodes, "events": events}
    )
    return out, MarketMap(classes=tuple(engine), plans=plans, price_changes=changes)


def _market_tokens_per_day(
    scenario: Scenario, plans: dict[str, PlanDemand], filled: set[str]
) -> float:
    """National tokens/day at the start: the plans' sum, grown so that classes with their own
    share keep it as a share of the whole (with none, exactly the plans' sum)."""
    from_plans = sum(d.tokens_per_day for d in plans.values())
    if not from_plans > 0:
        raise ValueError(
            "market: the plans' subscribers x usage add up to 0 tokens/day (no subscribers "
            "in any region, or no usage): give some plan subscribers and a positive usage"
        )
    others = sum(
        c.share for c in scenario.demand.classes if c.kind == "llm" and c.name not in filled
    )
    if others >= 1.0:
        raise ValueError(
            f"classes outside the market's plans take shares adding up to {others:g} of "
            "national demand, leaving nothing for the plans: lower their shares below 1 in total"
        )
    return from_plans / (1.0 - others)


def _mix_classes(scenario: Scenario, cls: DemandClass) -> list[tuple[DemandClass, EngineClass]]:
    """A model mix without a market: one class per model, named class/model."""
    if isinstance(cls.arrival, TraceArrivals):
        raise ValueError(
            f"class {cls.name!r} replays a trace and has a models: mix; a replayed trace cannot "
            "be split over models: give it one model:"
        )
    models, shares = model_shares(scenario, cls)
    out = []
    for j, model in enumerate(models):
        name = f"{cls.name}/{model}"
        schedule = _schedule(cls, points(shares, j))
        made = cls.model_copy(
            update={
                "name": name,
                "model": model,
                "models": None,
                "mix": None,
                "weight_schedule": schedule,
            }
        )
        out.append((made, EngineClass(name, cls.name, model, None, cls.priority, {})))
    return out


def _market_classes(
    scenario: Scenario,
    cls: DemandClass,
    plans: dict[str, PlanDemand],
    steps_by_plan: dict[str, list[tuple[float, float]]],
    tokens_per_day: float | None,
) -> list[tuple[DemandClass, EngineClass]]:
    """A class the plans fill: one class per (model, tier)."""
    assert scenario.market is not None and tokens_per_day is not None
    if cls.region_weights is not None:
        raise ValueError(
            f"class {cls.name!r} has region_weights and market plans fill it: the plans' "
            "subscribers place its demand; remove region_weights"
        )
    models, shares = model_shares(scenario, cls)
    region_ids = [r.id for r in scenario.regions]
    made_once: list[Callable[[float], FloatArray]] = []

    def cumulative() -> Callable[[float], FloatArray]:
        if not made_once:
            made_once.append(_cumulative(scenario, cls, shares))
        return made_once[0]

    by_tier = {}
    for tier in TIERS:
        mine = [
            p for p in scenario.market.plans if p.admission_tier == tier and cls.name in p.classes
        ]
        if not mine:
            continue
        tokens = {p.id: plans[p.id].tokens_per_day_by_class[cls.name] for p in mine}
        total = sum(tokens.values())
        factor = step_function([(tokens[p.id], steps_by_plan[p.id]) for p in mine])
        regions: dict[str, float] | None = None
        if total > 0:
            regions = {r: 0.0 for r in region_ids}
            for p in mine:
                d = plans[p.id]
                if d.subscribers > 0:
                    for r, n in d.subscribers_by_region.items():
                        regions[r] += tokens[p.id] * n / d.subscribers
        split = _plan_split(cls, scenario, shares, tokens, steps_by_plan, cumulative)
        by_tier[tier] = (total, product(shares, factor), regions, split)
    out = []
    for j, model in enumerate(models):
        for tier, (total, weights, regions, split) in by_tier.items():
            name = f"{cls.name}/{model}/{tier}" if model is not None else f"{cls.name}/{tier}"
            made = cls.model_copy(
                update={
                    "name": name,
                    "model": model,
                    "models": None,
                    "mix": None,
                    "share": total / tokens_per_day,
                    "priority": TIER_PRIORITY[tier],
                    "weight_schedule": _schedule(cls, points(weights, j)),
                    "region_weights": regions,
                }
            )
            engine = EngineClass(name, cls.name, model, tier, TIER_PRIORITY[tier], split[j])
            out.append((made, engine))
    return out


def _cumulative(
    scenario: Scenario, cls: DemandClass, shares: Piecewise
) -> Callable[[float], FloatArray]:
    """``x -> int_0^x growth(t) x profile(t) x shares(t) dt`` (one column per model): growth
    and profile constant within each clock hour (as ``HourlyIntensity``), shares exact."""
    end_s = float(scenario.horizon.duration)
    edges = np.arange(math.ceil(end_s / HOUR_S) + 1, dtype=np.float64) * HOUR_S
    demand = scenario.demand
    if demand.tokens_per_day is None:
        demand = demand.model_copy(update={"tokens_per_day": 1.0})  # only the shape is used
    start = scenario.horizon.start
    # growth x daily profile, constant within each clock hour (as HourlyIntensity)
    common = national_tokens_per_day(demand, start, edges[:-1] + HOUR_S / 2) * profile_factor(
        cls, start, edges[:-1]
    )
    # C(x) = int_0^x common x shares: whole hours summed, the last partial hour exact
    at_edges = shares.integral(edges)
    cum = np.vstack(
        [
            np.zeros((1, at_edges.shape[1])),
            np.cumsum(common[:, None] * np.diff(at_edges, axis=0), axis=0),
        ]
    )

    def upto(x: float) -> FloatArray:
        h = min(int(x // HOUR_S), common.size - 1)
        out: FloatArray = cum[h] + common[h] * (shares.integral(x)[0] - at_edges[h])
        return out

    return upto


def _plan_split(
    cls: DemandClass,
    scenario: Scenario,
    shares: Piecewise,
    tokens: dict[str, float],
    steps_by_plan: dict[str, list[tuple[float, float]]],
    cumulative: Callable[[], Callable[[float], FloatArray]],
) -> list[dict[str, float]]:
    """Each plan's share of each model's engine class's tokens over the horizon (one dict per
    model column). Without price changes it is the plans' split at the start; with them, each
    plan's demand (its start volume x its usage steps x the model share x growth x the daily
    profile) integrated: ``cumulative()`` gives ``x -> int_0^x growth x profile x shares``
    (``_cumulative``, built once a class and only when needed)."""
    n_models = shares.values.shape[1]
    total = sum(tokens.values())
    if len(tokens) == 1:
        return [{next(iter(tokens)): 1.0}] * n_models
    if total <= 0:
        return [{p: 1.0 / len(tokens) for p in tokens}] * n_models
    if not any(steps_by_plan[p] for p in tokens):
        return [{p: v / total for p, v in tokens.items()}] * n_models
    end_s = float(scenario.horizon.duration)
    upto = cumulative()
    integral = {}  # plan -> its tokens per model column, up to a common constant
    for p, v in tokens.items():
        cuts = [0.0] + [t for t, _ in steps_by_plan[p] if 0.0 < t < end_s] + [end_s]
        acc = np.zeros(shares.values.shape[1])
        for a, b in itertools.pairwise(cuts):
            ratio = 1.0  # the plan's usage ratio in force on [a, b)
            for t, r in steps_by_plan[p]:
                if t <= a:
                    ratio = r
            acc += ratio * (upto(b) - upto(a))
        integral[p] = v * acc
    out = []
    for j in range(n_models):
        whole = sum(float(x[j]) for x in integral.values())
        if whole > 0:
            out.append({p: float(x[j]) / whole for p, x in integral.items()})
        else:
            out.append({p: v / total for p, v in tokens.items()})
    return out


def _serves(
    serves: list[str],
    names: dict[str, list[tuple[str, str | None]]],
    mixed: set[str],
    pool_models: tuple[str, ...],
) -> list[str]:
    """A pool's serves list over engine classes. A model-mix class's engine classes are listed
    only where the pool serves their model (a pool of model a takes none of the class's b
    requests); a one-model class keeps every one of its engine classes, as before."""
    out: list[str] = []
    for base in serves:
        for name, model in names.get(base, [(base, None)]):
            if base in mixed and pool_models and model not in pool_models:
                continue
            out.append(name)
    return out
