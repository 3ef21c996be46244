"""The ``market:`` section of a scenario: token packages sold like mobile data.

A plan is what a carrier or a cloud sells: pay-as-you-go per token, a monthly plan with a token
or request quota (a coding plan's quota per 5 hours is one), a free tier, or enterprise reserved
throughput. Each plan has subscribers per region and a usage distribution per subscriber; its
demand is subscribers x usage, throttled at its quota (and at its per-tenant rate limit), and
it is spread over the scenario's demand classes by ``classes``. ``gridsim.market`` turns plans
into demand (the classes' volumes), revenue (fees + per-token + overage), breakage (quota paid
for and unused) and tiered admission (a plan's tier is its requests' priority).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gridsim.scenario.fields import Duration, Id, Model

MONTH_S = 30.436875 * 86400.0  # mean Gregorian month, as the growth law's month

Tier = Literal["reserved", "paid", "free"]
# A tier's priority at admission: 0 is served first (non-preemptive), as DemandClass.priority.
TIER_PRIORITY: dict[str, int] = {"reserved": 0, "paid": 1, "free": 2}


class LognormalUsage(Model):
    """Heavy-tailed usage: many subscribers use little, a few use a lot."""

    dist: Literal["lognormal"]
    mean: float = Field(gt=0, le=1e15, description="mean usage per subscriber per period")
    sigma: float = Field(gt=0, le=5, description="shape: std of log(usage)")


class DiscreteUsage(Model):
    """Usage levels and the share of subscribers at each (a survey, or a hand-worked case)."""

    dist: Literal["discrete"]
    values: list[Annotated[float, Field(ge=0, le=1e15)]] = Field(min_length=1)
    weights: list[Annotated[float, Field(ge=0)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _same_length(self) -> DiscreteUsage:
        if len(self.values) != len(self.weights):
            raise ValueError(
                f"values ({len(self.values)}) and weights ({len(self.weights)}) need one weight "
                "per value"
            )
        if sum(self.weights) <= 0:
            raise ValueError("weights must not all be zero")
        return self


Usage = Annotated[LognormalUsage | DiscreteUsage, Field(discriminator="dist")]


class Plan(Model):
    """One token package: its price, quota, tier, subscribers and their usage.

    Usage and quota are per subscriber per ``period`` in ``unit`` (tokens, or requests at the
    mean tokens per request of the plan's classes). Billing:

    - ``per_token``: the models' list prices x ``price_factor`` on every token served;
    - ``monthly``: ``fee_cny`` a month per subscriber; usage past the quota is throttled
      (``over_quota: throttle``) or billed per token (``bill``: ``overage_cny_per_m_tokens``,
      default the list prices x ``price_factor``);
    - ``free``: nothing; usage past the quota is throttled;
    - ``reserved``: enterprise reserved throughput, ``fee_cny`` a month per contract
      (``subscribers`` are contracts); the quota is what the reservation allows.
    """

    id: Id
    name: str = ""
    billing: Literal["per_token", "monthly", "free", "reserved"]
    tier: Tier | None = Field(
        default=None,
        description="admission tier (reserved > paid > free); default: reserved for "
        "reserved billing, free for free, else paid",
    )
    subscribers: float | dict[str, Annotated[float, Field(ge=0)]] = Field(
        description="subscribers (contracts for reserved): a national total, split over "
        "regions by the demand's region weights, or a number per region id"
    )
    usage: Usage = Field(description="usage per subscriber per period, in unit")
    unit: Literal["tokens", "requests"] = "tokens"
    period: Duration = Field(
        default=MONTH_S, description="what usage and quota are stated per: 1mo, 5h, 1d ..."
    )
    periods_per_month: float | None = Field(
        default=None,
        gt=0,
        le=1e6,
        description="periods a subscriber uses in a month (default: all, a month / period); "
        "e.g. 40 active 5-hour windows",
    )
    quota: float | None = Field(
        default=None, ge=0, le=1e15, description="per subscriber per period, in unit; none: no cap"
    )
    over_quota: Literal["throttle", "bill"] = "throttle"
    fee_cny: float = Field(default=0.0, ge=0, description="per subscriber per month")
    price_factor: float = Field(
        default=1.0, ge=0, le=100, description="x the models' list prices (per-token billing)"
    )
    overage_cny_per_m_tokens: float | None = Field(
        default=None, ge=0, description="bill: price of tokens past the quota"
    )
    rate_limit_tokens_per_min: float | None = Field(
        default=None,
        gt=0,
        description="per subscriber (tenant): with active_hours_per_day, caps usage per period "
        "at limit x active minutes; usage past it is throttled",
    )
    active_hours_per_day: float = Field(
        default=8.0, gt=0, le=24, description="hours a day a subscriber's usage falls in"
    )
    elasticity: float = Field(
        default=0.0,
        ge=-10,
        le=0,
        description="price elasticity of demand: a price_change by factor f moves usage by "
        "f ** elasticity",
    )
    classes: dict[str, Annotated[float, Field(ge=0)]] = Field(
        description="share of the plan's tokens per demand class (adding up to 1)"
    )

    @field_validator("subscribers")
    @classmethod
    def _subscribers(cls, v: float | dict[str, float]) -> float | dict[str, float]:
        if isinstance(v, float | int) and not 0 <= v <= 1e12:
            raise ValueError(f"subscribers {v} must lie in [0, 1e12]")
        return v

    @field_validator("classes")
    @classmethod
    def _shares(cls, v: dict[str, float]) -> dict[str, float]:
        total = sum(v.values())
        if not v or abs(total - 1.0) > 1e-6:
            raise ValueError(f"the class shares add up to {total:g}; they must add up to 1")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        if self.billing == "per_token" and self.quota is not None:
            raise ValueError("a per_token plan has no quota (give billing: monthly for one)")
        if self.billing in ("free", "reserved") and self.over_quota == "bill":
            raise ValueError(f"a {self.billing} plan cannot bill overage; use over_quota: throttle")
        if self.billing == "per_token" and self.fee_cny:
            raise ValueError("a per_token plan has no monthly fee (fee_cny)")
        return self

    @property
    def admission_tier(self) -> str:
        if self.tier is not None:
            return self.tier
        return {"reserved": "reserved", "free": "free"}.get(self.billing, "paid")

    @property
    def priority(self) -> int:
        return TIER_PRIORITY[self.admission_tier]


class Market(Model):
    """Token packages: the plans whose subscribers make the LLM classes' demand."""

    plans: list[Plan] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Market:
        ids = [p.id for p in self.plans]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"duplicate plan id {repeated[0]!r}; ids must be unique")
        return self
