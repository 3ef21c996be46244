"""Scheduled events in a scenario: outages, build-outs, retirements, shocks, prices, policies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from gridsim.scenario.fields import Date, Duration, Model, PolicyName

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
    policy: PolicyName
    params: dict[str, Any] = Field(default_factory=dict)


Event = Annotated[
    NodeOutage | LinkOutage | BuildOut | Retirement | DemandShock | PriceChange | PolicySwitch,
    Field(discriminator="kind"),
]
