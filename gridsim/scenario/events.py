"""Scheduled events in a scenario: outages, build-outs, retirements, shocks, prices, policies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from gridsim.policies.registry import BUILTIN_POLICIES
from gridsim.scenario.fields import Date, Duration, Model

if TYPE_CHECKING:
    from gridsim.scenario.schema import Scenario


When = Annotated[
    Date | Duration,
    Field(
        union_mode="left_to_right",
        description="a date (2026-06-01) or a time after the horizon start (30d, 6h)",
    ),
]


class _Timed(Model):
    at: When


class NodeOutage(_Timed):
    """A node down from ``at`` for ``duration`` (default: to the end)."""

    kind: Literal["node_outage"]
    node: str
    duration: Duration | None = None


class LinkOutage(_Timed):
    """The link between two places (region, node or cluster ids) cut for a while."""

    kind: Literal["link_outage"]
    a: str
    b: str
    duration: Duration | None = None


class BuildOut(_Timed):
    """More capacity in a pool: ordered at ``at``, in service ``lead_time`` later."""

    kind: Literal["build_out"]
    node: str
    pool: str
    replicas: int | None = Field(default=None, gt=0, le=10**9, description="LLM pool")
    slots: int | None = Field(default=None, gt=0, le=10**9, description="generic pool")
    lead_time: Duration = 0.0


class Retirement(_Timed):
    """Capacity taken out of a pool at ``at`` (work in progress finishes)."""

    kind: Literal["retirement"]
    node: str
    pool: str
    replicas: int | None = Field(default=None, gt=0)
    slots: int | None = Field(default=None, gt=0)


class DemandShock(_Timed):
    """Demand of some classes (default all) multiplied by ``factor`` for a while."""

    kind: Literal["demand_shock"]
    factor: float = Field(ge=0, le=1e3)
    duration: Duration | None = None
    classes: list[str] | None = None
    regions: list[str] | None = None


class PriceChange(_Timed):
    kind: Literal["price_change"]
    node: str
    price_cny_per_kwh: float = Field(ge=0)


class PolicySwitch(_Timed):
    kind: Literal["policy_switch"]
    policy: str
    params: dict[str, Any] = Field(default_factory=dict)


Event = Annotated[
    NodeOutage | LinkOutage | BuildOut | Retirement | DemandShock | PriceChange | PolicySwitch,
    Field(discriminator="kind"),
]


def check_events(scenario: Scenario) -> None:
    """Events name nodes, pools, classes and regions that exist."""
    nodes = {n.id: n for n in scenario.nodes}
    classes = {c.name for c in scenario.demand.classes}
    regions = {r.id for r in scenario.regions}
    for i, event in enumerate(scenario.events):
        where = f"events[{i}] ({event.kind})"
        node_id = getattr(event, "node", None)
        if node_id is not None and node_id not in nodes:
            raise ValueError(f"{where} names unknown node {node_id!r}; nodes: {sorted(nodes)}")
        pool_id = getattr(event, "pool", None)
        if node_id is not None and pool_id is not None:
            pools = {p.id: p for p in nodes[node_id].pools}
            if pool_id not in pools:
                raise ValueError(f"{where}: node {node_id!r} has no pool {pool_id!r}")
            pool = pools[pool_id]
            amount = (getattr(event, "replicas", None), getattr(event, "slots", None))
            if (pool.is_llm and amount[0] is None) or (not pool.is_llm and amount[1] is None):
                need = "replicas" if pool.is_llm else "slots"
                raise ValueError(f"{where}: pool {pool_id!r} changes by {need}: give {need}")
        for name in getattr(event, "classes", None) or []:
            if name not in classes:
                raise ValueError(f"{where} names unknown class {name!r}")
        for rid in getattr(event, "regions", None) or []:
            if rid not in regions:
                raise ValueError(f"{where} names unknown region {rid!r}")
        policy = getattr(event, "policy", None)
        if isinstance(policy, str) and policy not in BUILTIN_POLICIES and ":" not in policy:
            raise ValueError(f"{where}: unknown policy {policy!r}")
