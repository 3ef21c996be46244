"""Scheduled events in a scenario: outages, build-outs, retirements, shocks, prices, policies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

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
    """An electricity price at a node (``node`` + ``price_cny_per_kwh``), or a token plan's
    prices (``plan`` + ``price_factor``): from ``at`` every price of the plan (fee, per-token,
    overage) is ``price_factor`` x its price in the scenario, and its usage moves by
    ``price_factor ** elasticity`` (the plan's price elasticity)."""

    kind: Literal["price_change"]
    node: str | None = None
    price_cny_per_kwh: float | None = Field(default=None, ge=0)
    plan: str | None = None
    price_factor: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _one_kind(self) -> PriceChange:
        power = self.node is not None and self.price_cny_per_kwh is not None
        plan = self.plan is not None and self.price_factor is not None
        if (
            power == plan
            or (not power and (self.node is not None or self.price_cny_per_kwh is not None))
            or (not plan and (self.plan is not None or self.price_factor is not None))
        ):
            raise ValueError(
                "a price_change is either an electricity price (node and price_cny_per_kwh) "
                "or a token plan's prices (plan and price_factor)"
            )
        return self


class ModelLaunch(_Timed):
    """A model takes ``share`` of some classes' demand over ``over``, linearly from ``at``,
    from the models it ``replaces`` (default: every other model of the class) in proportion
    to their shares at ``at``."""

    kind: Literal["model_launch"]
    model: str
    share: float = Field(gt=0, le=1, description="its share of the class's demand at the end")
    over: Duration = Field(default=0.0, description="how long the take-up takes (e.g. 4w)")
    classes: list[str] | None = Field(
        default=None, description="default: every class whose models: mix names the model"
    )
    replaces: list[str] | None = None


class PolicySwitch(_Timed):
    kind: Literal["policy_switch"]
    policy: PolicyName
    params: dict[str, Any] = Field(default_factory=dict)


Event = Annotated[
    NodeOutage
    | LinkOutage
    | BuildOut
    | Retirement
    | DemandShock
    | PriceChange
    | PolicySwitch
    | ModelLaunch,
    Field(discriminator="kind"),
]
