"""The scenario language: frozen pydantic models that reject unknown keys.

Durations are written the way people read them (``5min``, ``30d``) and held as float seconds;
dates as ``2026-03-01`` or ``2026-03``. Numeric fields carry their unit in their name.
References to catalogue entries (accelerators, models, sites) are checked against the
catalogue passed in the validation context under ``"catalog"`` (see ``loading.py``), so an
unknown accelerator is reported in the same pass as every other problem.
"""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gridsim.scenario.events import (
    BuildOut,
    DemandShock,
    Event,
    LinkOutage,
    NodeOutage,
    PolicySwitch,
    PriceChange,
    Retirement,
    When,
    check_events,
)
from gridsim.scenario.fields import Date, Duration, Id, Model, check_ref
from gridsim.scenario.units import format_duration

# Upper bounds far beyond any real grid, so that no arithmetic downstream overflows.
MAX_COUNT = 10**9  # replicas, slots, queue places
MAX_TOKENS = 1e9  # tokens in one request (today's longest contexts are ~1e7)
MAX_TOKENS_PER_DAY = 1e20  # national volume (China: 1.4e14 in March 2026)

__all__ = [
    "BuildOut",
    "DemandShock",
    "Event",
    "LinkOutage",
    "NodeOutage",
    "PolicySwitch",
    "PriceChange",
    "Retirement",
    "When",
]

# --- time ------------------------------------------------------------------------------


class Horizon(Model):
    """Simulated period. ``resolution`` is the flow engine's tick and the time-series step."""

    start: Date = dt.date(2026, 3, 1)
    duration: Duration
    resolution: Duration = 300.0
    warmup: Duration = 0.0

    @field_validator("warmup")
    @classmethod
    def _warmup_within(cls, v: float, info: ValidationInfo) -> float:
        duration = info.data.get("duration")
        if duration is not None and v >= duration:
            raise ValueError(
                f"warmup ({format_duration(v)}) must be shorter than the duration "
                f"({format_duration(duration)}): nothing would be measured"
            )
        return v

    @model_validator(mode="after")
    def _positive(self) -> Horizon:
        if self.duration <= 0:
            raise ValueError("duration must be > 0, e.g. duration: 1h")
        if self.resolution <= 0:
            raise ValueError("resolution must be > 0, e.g. resolution: 5min")
        try:
            dt.datetime.combine(self.start, dt.time()) + dt.timedelta(seconds=self.duration)
        except OverflowError:
            raise ValueError("the horizon ends after the year 9999; start earlier") from None
        return self


# --- supply ----------------------------------------------------------------------------


class Pool(Model):
    """Capacity at a node: an LLM served on an accelerator type, or generic job slots."""

    id: Id
    model: str | None = Field(default=None, description="catalogue model id (LLM pool)")
    accelerator: str | None = Field(default=None, description="catalogue accelerator id")
    replicas: int | None = Field(
        default=None, ge=0, le=MAX_COUNT, description="model replicas (LLM pool)"
    )
    slots: int | None = Field(
        default=None, ge=1, le=MAX_COUNT, description="concurrent jobs (generic pool)"
    )
    serves: list[str] | None = Field(
        default=None, description="class names served; default: LLM classes of the same model"
    )
    reserved_share: float = Field(
        default=0.0, ge=0, lt=1, description="capacity kept for the owner's own work (HPC)"
    )

    @field_validator("accelerator")
    @classmethod
    def _known_accelerator(cls, v: str | None, info: ValidationInfo) -> str | None:
        return check_ref(info, "accelerators", v)

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str | None, info: ValidationInfo) -> str | None:
        return check_ref(info, "models", v)

    @model_validator(mode="after")
    def _one_kind(self) -> Pool:
        llm = self.model is not None or self.accelerator is not None
        if llm and self.slots is not None:
            raise ValueError("give either model+accelerator+replicas (LLM) or slots (jobs)")
        if llm and (self.model is None or self.accelerator is None or self.replicas is None):
            raise ValueError("an LLM pool needs model, accelerator and replicas")
        if not llm and self.slots is None:
            raise ValueError("a pool needs model+accelerator+replicas (LLM) or slots (jobs)")
        return self

    @property
    def is_llm(self) -> bool:
        return self.model is not None


NodeKind = Literal["data_centre", "supercomputer", "intelligent_computing"]


class Node(Model):
    """A compute site. Location, price and carbon default to the catalogue site's."""

    id: Id
    kind: NodeKind
    site: str | None = Field(default=None, description="catalogue site id")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    region: str | None = Field(default=None, description="region id the node sits in")
    pue: float = Field(default=1.3, ge=1.0, le=3.0)
    price_cny_per_kwh: float | None = Field(default=None, ge=0)
    carbon_g_per_kwh: float | None = Field(default=None, ge=0)
    pools: list[Pool] = Field(min_length=1)

    @field_validator("site")
    @classmethod
    def _known_site(cls, v: str | None, info: ValidationInfo) -> str | None:
        return check_ref(info, "sites", v)

    @model_validator(mode="after")
    def _located(self) -> Node:
        if self.site is None and (self.lat is None or self.lon is None):
            raise ValueError("a node needs a catalogue site or both lat and lon")
        _unique([p.id for p in self.pools], "pool id")
        return self


class Region(Model):
    """A demand region, usually a province (its capital is where requests start)."""

    id: Id
    site: str | None = Field(default=None, description="catalogue site id; default: the id")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    share: float | None = Field(default=None, ge=0, description="demand weight (given shares)")

    @field_validator("site")
    @classmethod
    def _known_site(cls, v: str | None, info: ValidationInfo) -> str | None:
        return check_ref(info, "sites", v)

    @model_validator(mode="after")
    def _located(self, info: ValidationInfo) -> Region:
        catalog = (info.context or {}).get("catalog")
        unlocated = self.site is None and (self.lat is None or self.lon is None)
        if unlocated and catalog is not None and self.id not in catalog.sites:
            raise ValueError(
                f"region {self.id!r} is not a catalogue site; give site: <site id> "
                "or both lat and lon"
            )
        return self


# --- network ---------------------------------------------------------------------------


class Link(Model):
    a: str
    b: str
    bandwidth_gbps: float = Field(default=100.0, gt=0)
    latency_ms: float | None = Field(default=None, ge=0, description="overrides the distance")
    route_factor: float | None = Field(default=None, ge=1)


class Network(Model):
    """How places are joined. Link latency = great circle x route factor x us/km + per hop."""

    generate: Literal["none", "full_mesh", "k_nearest", "hub_and_spoke"] = "hub_and_spoke"
    k: int = Field(default=3, ge=1, le=10_000, description="neighbours per place (k_nearest)")
    route_factor: float = Field(default=1.5, ge=1.0, description="fibre route / great circle")
    fibre_us_per_km: float = Field(default=4.9, gt=0)
    per_hop_ms: float = Field(default=0.1, ge=0, description="switching and equipment per link")
    bandwidth_gbps: float = Field(default=400.0, gt=0, description="of generated links")
    links: list[Link] = Field(default_factory=list)


# --- demand ----------------------------------------------------------------------------


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


class DemandClass(Model):
    """A class of work: LLM requests (token lengths) or generic jobs (service time)."""

    name: Id
    kind: Literal["llm", "job"] = "llm"
    share: float = Field(default=0.0, ge=0, le=1, description="share of national token volume")
    rate_per_s: float | None = Field(
        default=None, gt=0, le=1e12, description="explicit arrival rate"
    )
    model: str | None = Field(default=None, description="catalogue model id that serves it")
    input_tokens: Distribution | None = None
    output_tokens: Distribution | None = None
    service: Distribution | None = Field(default=None, description="job service time, s")
    slots_per_job: int = Field(default=1, ge=1, le=MAX_COUNT)
    slo: Slo = Slo()
    latency_sensitivity: Literal["high", "medium", "low"] = "medium"
    arrival: Arrival = Poisson(process="poisson")
    diurnal: list[float] | None = Field(default=None, description="24 hourly weights")
    weekly: list[float] | None = Field(default=None, description="7 daily weights, Monday first")

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str | None, info: ValidationInfo) -> str | None:
        return check_ref(info, "models", v)

    @field_validator("diurnal")
    @classmethod
    def _hours(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (len(v) != 24 or min(v) < 0 or sum(v) <= 0):
            raise ValueError("diurnal needs 24 non-negative hourly weights, not all zero")
        return v

    @field_validator("weekly")
    @classmethod
    def _days(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (len(v) != 7 or min(v) < 0 or sum(v) <= 0):
            raise ValueError("weekly needs 7 non-negative daily weights, not all zero")
        return v

    @model_validator(mode="after")
    def _complete(self) -> DemandClass:
        replayed = isinstance(self.arrival, TraceArrivals)  # lengths come from the trace
        if self.kind == "llm":
            if not replayed and (self.input_tokens is None or self.output_tokens is None):
                raise ValueError("an llm class needs input_tokens and output_tokens")
        elif self.service is None:
            raise ValueError("a job class needs a service time distribution (service:)")
        if (
            self.rate_per_s is None
            and self.share == 0
            and not isinstance(self.arrival, TraceArrivals)
        ):
            raise ValueError("give the class a share of national demand or a rate_per_s")
        return self


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


class Demand(Model):
    tokens_per_day: float = Field(
        gt=0, le=MAX_TOKENS_PER_DAY, description="national volume at the horizon start"
    )
    growth: Growth = NoGrowth(law="none")
    region_weights: Literal["gdp", "population", "equal", "given"] = "gdp"
    sample_fraction: float = Field(default=1.0, ge=1e-9, le=1)
    classes: list[DemandClass] = Field(min_length=1)


# --- policy, admission, outputs --------------------------------------------------------


class Policy(Model):
    """A registered policy name, or ``module:Class`` for a user policy."""

    name: str = "nearest"
    params: dict[str, Any] = Field(default_factory=dict)
    on_failure: Literal["retry", "drop"] = Field(
        default="retry", description="requests at a failed node: route again, or count as lost"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, v: str, info: ValidationInfo) -> str:
        names = (info.context or {}).get("policies")
        if names is None or v in names or ":" in v:
            return v
        close = difflib.get_close_matches(v, sorted(names), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(names))}"
        raise ValueError(f"unknown policy {v!r}; {hint} (or name a user policy as module:Class)")


class Admission(Model):
    queue_limit: int | None = Field(
        default=None, ge=0, le=MAX_COUNT, description="waiting requests per pool"
    )
    max_wait: Duration | None = None


class Outputs(Model):
    requests: bool = Field(default=False, description="write the per-request table")
    timeseries_interval: Duration = 60.0
    figures: bool = True

    @field_validator("timeseries_interval")
    @classmethod
    def _positive_interval(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("timeseries_interval must be > 0, e.g. timeseries_interval: 1min")
        return v


class CatalogAdditions(Model):
    """Entries added to (or overriding, by id) the packaged catalogues."""

    include: list[str] = Field(default_factory=list, description="YAML files, relative paths")
    accelerators: list[dict[str, Any]] = Field(default_factory=list)
    models: list[dict[str, Any]] = Field(default_factory=list)
    sites: list[dict[str, Any]] = Field(default_factory=list)


class SweepSpec(Model):
    """A parameter sweep for ``gridsim sweep`` (axes x seeds); a single run ignores it."""

    axes: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(
        default_factory=dict, description="dotted path (as in --set) -> the values it takes"
    )
    seeds: int = Field(
        default=1, ge=1, le=10_000, description="replications: seeds seed, seed+1, ..."
    )


# --- the scenario ----------------------------------------------------------------------


class Scenario(Model):
    name: Id
    description: str = ""
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    fidelity: Literal["auto", "request", "flow"] = "auto"
    horizon: Horizon
    catalog: CatalogAdditions = CatalogAdditions()
    regions: list[Region] = Field(min_length=1)
    nodes: list[Node] = Field(min_length=1)
    network: Network = Network()
    demand: Demand
    policy: Policy = Policy()
    admission: Admission = Admission()
    events: list[Event] = Field(default_factory=list)
    outputs: Outputs = Outputs()
    sweep: SweepSpec | None = Field(default=None, description="axes x seeds for gridsim sweep")

    @model_validator(mode="before")
    @classmethod
    def _expand_regions(cls, data: Any, info: ValidationInfo) -> Any:
        # `regions: provinces` is shorthand for one region per catalogue province.
        catalog = (info.context or {}).get("catalog")
        if isinstance(data, dict) and data.get("regions") == "provinces" and catalog is not None:
            provinces = [s.id for s in catalog.sites.values() if s.kind == "province"]
            data = {**data, "regions": [{"id": p} for p in provinces]}
        return data

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        _unique([n.id for n in self.nodes], "node id")
        _unique([r.id for r in self.regions], "region id")
        _unique([c.name for c in self.demand.classes], "class name")
        class_names = {c.name for c in self.demand.classes}
        for node in self.nodes:
            for pool in node.pools:
                for name in pool.serves or []:
                    if name not in class_names:
                        raise ValueError(
                            f"node {node.id!r} pool {pool.id!r} serves unknown class {name!r}; "
                            f"classes are {sorted(class_names)}"
                        )
        for cls in self.demand.classes:
            if not any(pool_serves(p, cls) for n in self.nodes for p in n.pools):
                need = f"a pool of model {cls.model!r}" if cls.model else "a matching pool"
                raise ValueError(
                    f"no node can serve class {cls.name!r}: add {need} "
                    f"(or list {cls.name!r} under a pool's serves:)"
                )
        check_events(self)
        total_share = sum(c.share for c in self.demand.classes)
        if total_share > 1 + 1e-9:
            raise ValueError(f"class shares add up to {total_share:g}; they must not exceed 1")
        return self


def pool_serves(pool: Pool, cls: DemandClass) -> bool:
    """Whether ``pool`` may take work of class ``cls`` (explicit serves: wins)."""
    if pool.serves is not None:
        return cls.name in pool.serves
    if cls.kind == "job":
        return not pool.is_llm
    return pool.is_llm and (cls.model is None or cls.model == pool.model)


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"duplicate {what} {i!r}; ids must be unique")
        seen.add(i)
