"""The ``demand:`` section of a scenario: token volume and growth, and the classes of work with
their length distributions, arrival processes, SLOs and daily and weekly profiles."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gridsim.scenario.fields import (
    MAX_COUNT,
    MAX_TOKENS,
    MAX_TOKENS_PER_DAY,
    Date,
    Duration,
    Id,
    Model,
    ModelRef,
)


class Lognormal(Model):
    dist: Literal["lognormal"]
    mean: float = Field(gt=0, le=MAX_TOKENS)
    sigma: float = Field(gt=0, le=5, description="shape: std of log(x)")


class Exponential(Model):
    dist: Literal["exponential"]
    mean: float = Field(gt=0, le=MAX_TOKENS)


class Constant(Model):
    dist: Literal["constant"]
    value: float = Field(gt=0, le=MAX_TOKENS)


class Empirical(Model):
    """Lengths resampled from a trace file (Azure CSV or Mooncake JSONL)."""

    dist: Literal["empirical"]
    trace: str = Field(description="path, relative to the scenario file")
    field: Literal["input", "output"]


Distribution = Annotated[
    Lognormal | Exponential | Constant | Empirical, Field(discriminator="dist")
]


class Poisson(Model):
    process: Literal["poisson"]


class Bursty(Model):
    """Over-dispersed arrivals: index of dispersion (variance/mean of counts) above 1."""

    process: Literal["bursty"]
    dispersion: float = Field(gt=1, le=1e6)


class TraceArrivals(Model):
    process: Literal["trace"]
    path: str = Field(description="Azure-style CSV or Mooncake-style JSONL, relative path")
    format: Literal["auto", "azure", "mooncake"] = "auto"
    time_scale: float = Field(
        default=1.0, ge=1e-6, le=1e6, description=">1 stretches, <1 compresses"
    )
    loop: bool = False


Arrival = Annotated[Poisson | Bursty | TraceArrivals, Field(discriminator="process")]


class Slo(Model):
    ttft: Duration | None = None
    e2e: Duration | None = None


class MixPoint(Model):
    """A class's model shares from a date on (linear between points)."""

    at: Annotated[
        Date | Duration,
        Field(
            union_mode="left_to_right",
            description="a date (2026-06-01) or a time after the horizon start (30d)",
        ),
    ]
    models: dict[str, Annotated[float, Field(ge=0)]] = Field(
        description="catalogue model id -> share of the class's demand (adding up to 1)"
    )

    @field_validator("models")
    @classmethod
    def _adds_up(cls, v: dict[str, float]) -> dict[str, float]:
        return _shares_add_up(v)


def _shares_add_up(v: dict[str, float]) -> dict[str, float]:
    total = sum(v.values())
    if not v or abs(total - 1.0) > 1e-6:
        raise ValueError(f"the model shares add up to {total:g}; they must add up to 1")
    return v


class DemandClass(Model):
    """A class of work: LLM requests (token lengths) or generic jobs (service time)."""

    name: Id
    kind: Literal["llm", "job"] = "llm"
    share: float = Field(default=0.0, ge=0, le=1, description="share of national token volume")
    rate_per_s: float | None = Field(
        default=None, gt=0, le=1e12, description="explicit arrival rate"
    )
    model: ModelRef = Field(default=None, description="catalogue model id that serves it")
    models: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        default=None,
        description=(
            "instead of model: the class's demand split over several catalogue models, "
            "model id -> share at the start (adding up to 1); mix: and model_launch events "
            "move the shares over time"
        ),
    )
    mix: list[MixPoint] | None = Field(
        default=None,
        description="model shares at later times (linear between points; models: at the start)",
    )
    priority: int = Field(
        default=0,
        ge=0,
        le=9,
        description=(
            "admission priority: 0 is served first. Non-preemptive: a free slot takes the "
            "waiting request of the lowest priority number (FCFS within one), and under "
            "overload the highest numbers are shed first. Market plans set it from their tier"
        ),
    )
    weight_schedule: list[tuple[float, float]] | None = Field(
        default=None,
        description=(
            "(seconds after the start, weight) points: the class's rate is multiplied by the "
            "weight, linear between points and flat outside them (gridsim.market writes it "
            "for model mixes, launches and price changes)"
        ),
    )
    region_weights: dict[str, Annotated[float, Field(ge=0)]] | None = Field(
        default=None,
        description=(
            "region id -> weight of this class's demand (normalised); default: the demand's "
            "region_weights (gridsim.market writes it from plans' subscribers per region)"
        ),
    )
    input_tokens: Distribution | None = None
    output_tokens: Distribution | None = None
    service: Distribution | None = Field(default=None, description="job service time, s")
    patience: Distribution | None = Field(
        default=None,
        description=(
            "how long a request waits for service before it gives up, s (a number, as the "
            "service time's). Each request draws its own; one whose wait at its pool would "
            "exceed it leaves the queue without service and is counted abandoned (checked "
            "after admission.max_wait, which drops). Unset: requests wait until served or "
            "admission.max_wait drops them"
        ),
    )
    cache_hit_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description=(
            "share of input tokens found in the prefix (KV) cache: they are not prefilled "
            "again (prefill work falls in proportion) and are billed at the model's cache-hit "
            "price. `gridsim fit-trace` estimates it from a trace with block hashes"
        ),
    )
    slots_per_job: int = Field(default=1, ge=1, le=MAX_COUNT)
    slo: Slo = Slo()
    latency_sensitivity: Literal["high", "medium", "low"] = "medium"
    arrival: Arrival = Poisson(process="poisson")
    diurnal: list[float] | None = Field(default=None, description="24 hourly weights")
    weekly: list[float] | None = Field(default=None, description="7 daily weights, Monday first")

    @field_validator("diurnal", "weekly")
    @classmethod
    def _profile(cls, v: list[float] | None, info: ValidationInfo) -> list[float] | None:
        n, step = (24, "hourly") if info.field_name == "diurnal" else (7, "daily")
        if v is not None and (len(v) != n or min(v) < 0 or sum(v) <= 0):
            raise ValueError(
                f"{info.field_name} needs {n} non-negative {step} weights, not all zero"
            )
        return v

    @model_validator(mode="after")
    def _complete(self) -> DemandClass:
        replayed = isinstance(self.arrival, TraceArrivals)  # lengths come from the trace
        if self.kind == "llm":
            if not replayed and (self.input_tokens is None or self.output_tokens is None):
                raise ValueError("an llm class needs input_tokens and output_tokens")
        elif self.service is None:
            raise ValueError("a job class needs a service time distribution (service:)")
        if self.model is not None and self.models is not None:
            raise ValueError("give either model (one) or models (a mix), not both")
        if self.models is not None:
            _shares_add_up(self.models)
        if self.mix is not None and self.models is None:
            raise ValueError("mix: needs models: (the shares at the start)")
        if self.kind == "job" and self.models is not None:
            raise ValueError("a job class has no models")
        if self.weight_schedule is not None:
            times = [t for t, _ in self.weight_schedule]
            if any(b < a for a, b in itertools.pairwise(times)) or any(
                w < 0 for _, w in self.weight_schedule
            ):
                raise ValueError("weight_schedule needs times in order and weights >= 0")
        # A class with neither a share nor a rate is filled by the market's plans (the scenario
        # checks that some plan fills it).
        return self

    @property
    def needs_volume(self) -> bool:
        """No share, rate or trace gives this class a volume: a market plan must."""
        return (
            self.rate_per_s is None
            and self.share == 0
            and not isinstance(self.arrival, TraceArrivals)
        )

    @property
    def model_ids(self) -> tuple[str, ...]:
        """The catalogue models that may serve this class: its model, or its mix's models
        (every model named at any point of mix:)."""
        if self.models is None:
            return (self.model,) if self.model is not None else ()
        ids = list(self.models)
        for point in self.mix or []:
            ids.extend(m for m in point.models if m not in ids)
        return tuple(ids)


class GrowthPoint(Model):
    date: Date
    tokens_per_day: float = Field(gt=0, le=MAX_TOKENS_PER_DAY)


class NoGrowth(Model):
    law: Literal["none"]


class ExponentialGrowth(Model):
    law: Literal["exponential"]
    rate_per_month: float = Field(
        gt=-1, le=10, description="e.g. 0.1 for +10 % a month; above -1 (-100 %)"
    )


class LogisticGrowth(Model):
    law: Literal["logistic"]
    rate_per_month: float = Field(gt=0, le=10)
    ceiling_tokens_per_day: float = Field(gt=0, le=MAX_TOKENS_PER_DAY)


class PiecewiseGrowth(Model):
    """Straight lines in log space through dated points."""

    law: Literal["piecewise"]
    points: list[GrowthPoint] = Field(min_length=2)

    @field_validator("points")
    @classmethod
    def _distinct_dates(cls, v: list[GrowthPoint]) -> list[GrowthPoint]:
        dates = [p.date for p in v]
        if len(set(dates)) != len(dates):
            repeated = sorted({d for d in dates if dates.count(d) > 1})
            raise ValueError(f"two points share the date {repeated[0]}; give each date once")
        return v


Growth = Annotated[
    NoGrowth | ExponentialGrowth | LogisticGrowth | PiecewiseGrowth, Field(discriminator="law")
]


DEFAULT_SAMPLE_REQUESTS = 1e6  # `sample_pools: {pools: auto}` without max_requests


class SamplePools(Model):
    """Request fidelity's sample that keeps the queueing regime: a few pools simulated at full
    size, each (region, class) stream thinned to the share the policy sends them at full scale,
    totals scaled back up (``gridsim.grid`` builds it; the flow engine ignores it)."""

    pools: Literal["auto"] | list[str] = Field(
        default="auto",
        description=(
            "auto: the pools with the fewest expected requests that cover the classes and pool "
            "kinds, within max_requests; or a list of node_id/pool_id names"
        ),
    )
    max_requests: float | None = Field(
        default=None,
        gt=0,
        le=1e12,
        description=(
            "the expected requests the sample may simulate over the horizon: pools: auto "
            f"chooses within it (default {DEFAULT_SAMPLE_REQUESTS:g}); listed pools must fit it"
        ),
    )

    @field_validator("pools", mode="before")
    @classmethod
    def _pool_names(cls, v: object) -> object:
        if isinstance(v, str) and v != "auto":
            raise ValueError(
                f"pools is auto or a list of node_id/pool_id names, e.g. [{v}] (got {v!r})"
            )
        if isinstance(v, list):
            if not v:
                raise ValueError("name at least one pool (node_id/pool_id), or use pools: auto")
            repeated = sorted({p for p in v if v.count(p) > 1})
            if repeated:
                raise ValueError(f"pool {repeated[0]!r} is named twice; name each pool once")
        return v


class Demand(Model):
    tokens_per_day: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TOKENS_PER_DAY,
        description="national volume at the horizon start (with a market: omit it, the plans "
        "set the volume)",
    )
    growth: Growth = NoGrowth(law="none")
    region_weights: Literal["gdp", "population", "equal", "given"] = "gdp"
    sample_fraction: float = Field(
        default=1.0,
        ge=1e-9,
        le=1,
        description=(
            "simulate this share of demand AND of every pool's slots (at least one slot a "
            "pool). Pools of thousands of slots become pools of a few: a different queueing "
            "regime (waits depend on the number of servers, not only on utilisation), so "
            "latency and SLA attainment are those of small pools. At request fidelity "
            "sample_pools keeps pool sizes instead"
        ),
    )
    sample_pools: SamplePools | None = Field(
        default=None,
        description=(
            "request fidelity: simulate a few pools at full size with the demand the policy "
            "sends them, and scale totals up (keeps the queueing regime; the flow engine "
            "ignores it and simulates the whole grid)"
        ),
    )
    classes: list[DemandClass] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_sampling(self) -> Demand:
        if self.sample_pools is not None and self.sample_fraction < 1:
            raise ValueError(
                f"sample_pools and sample_fraction {self.sample_fraction:g} cannot be combined: "
                "keep sample_pools (pools at full size, the queueing regime of the whole grid) "
                "and remove sample_fraction, or keep sample_fraction and remove sample_pools"
            )
        return self
