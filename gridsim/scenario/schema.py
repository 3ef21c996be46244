"""The scenario language: frozen pydantic models that reject unknown keys.

Durations are written the way people read them (``5min``, ``30d``) and held as float seconds;
dates as ``2026-03-01`` or ``2026-03``. Numeric fields carry their unit in their name.
References to catalogue entries (accelerators, models, sites) are checked against the
catalogue passed in the validation context under ``"catalog"`` (see ``loading.py``), so an
unknown accelerator is reported in the same pass as every other problem.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from gridsim.catalog import Catalog
from gridsim.scenario.demand_spec import (
    Arrival,
    Bursty,
    Constant,
    Demand,
    DemandClass,
    Distribution,
    Empirical,
    Exponential,
    ExponentialGrowth,
    Growth,
    GrowthPoint,
    LogisticGrowth,
    Lognormal,
    NoGrowth,
    PiecewiseGrowth,
    Poisson,
    Slo,
    TraceArrivals,
)
from gridsim.scenario.events import (
    BuildOut,
    DemandShock,
    Event,
    LinkOutage,
    ModelLaunch,
    NodeOutage,
    PolicySwitch,
    PriceChange,
    Retirement,
    When,
)
from gridsim.scenario.fields import (
    MAX_COUNT,
    AcceleratorRef,
    Date,
    Duration,
    Id,
    Model,
    ModelRef,
    PolicyName,
    SiteRef,
    check_ref,
)
from gridsim.scenario.market_spec import Market, Plan
from gridsim.scenario.plan_spec import PlanSpec, check_plan_names
from gridsim.scenario.training_spec import Power, Training, check_training_nodes
from gridsim.scenario.uncertainty_spec import Uncertainty, check_paths
from gridsim.scenario.units import format_duration

__all__ = [  # the demand and event models are defined beside, and read from here too
    "Arrival",
    "BuildOut",
    "Bursty",
    "Constant",
    "Demand",
    "DemandClass",
    "DemandShock",
    "Distribution",
    "Empirical",
    "Event",
    "Exponential",
    "ExponentialGrowth",
    "Growth",
    "GrowthPoint",
    "LinkOutage",
    "LogisticGrowth",
    "Lognormal",
    "Market",
    "ModelLaunch",
    "NoGrowth",
    "NodeOutage",
    "PiecewiseGrowth",
    "Plan",
    "Poisson",
    "PolicySwitch",
    "PriceChange",
    "Retirement",
    "Slo",
    "TraceArrivals",
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


class Deployment(Model):
    """How an LLM pool serves its model: the serving mode and its parallel layout.

    ``colocated``: each replica prefills and decodes on the same cards. ``disaggregated``:
    prefill replicas feed decode replicas, the KV cache moving between them over the node's
    fabric; the pool's ``replicas`` are then decode replicas. Other modes registered in
    ``gridsim.service`` are named here too.
    """

    mode: str = Field(
        default="colocated",
        pattern=r"^[a-z][a-z0-9_]*$",
        description="serving mode: colocated, disaggregated, or one registered in gridsim.service",
    )
    cards_per_replica: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COUNT,
        description=(
            "cards of one replica (decode replica when disaggregated): its tensor x data "
            "parallel group, which is the expert-parallel group of an MoE model; default: the "
            "smallest group that holds the weights and a useful KV cache"
        ),
    )
    prefill_cards_per_replica: int | None = Field(
        default=None, ge=1, le=MAX_COUNT, description="cards of one prefill replica (disaggregated)"
    )
    prefill_ratio: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description=(
            "prefill cards per decode card (disaggregated); default: sized so prefill keeps up "
            "with decode for the pool's workload"
        ),
    )
    speculative_tokens: int = Field(
        default=0, ge=0, le=8, description="draft tokens per decode step (multi-token prediction)"
    )
    acceptance_rate: float = Field(
        default=0.0, ge=0, le=1, description="probability that each draft token is accepted"
    )
    kv_transfer_gb_per_s: float | None = Field(
        default=None,
        gt=0,
        le=1e6,
        description="KV cache transfer bandwidth per prefill replica card (disaggregated), GB/s",
    )
    efficiency_scale: float = Field(
        default=1.0,
        gt=0,
        le=2,
        description="multiplies the calibrated efficiency (achieved shares of peak FLOP/s and "
        "HBM bandwidth, capped at 1; divides the fixed time of a decode forward pass): 1 is the "
        "calibration; see also serving.efficiency_scale",
    )
    framework: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_\-]*$",
        description="serving framework whose calibrated efficiency applies (default: the "
        "accelerator's own)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Deployment:
        if self.speculative_tokens == 0 and self.acceptance_rate > 0:
            raise ValueError("acceptance_rate needs speculative_tokens >= 1")
        return self


class Pool(Model):
    """Capacity at a node: an LLM served on an accelerator type, or generic job slots."""

    id: Id
    model: ModelRef = Field(default=None, description="catalogue model id (LLM pool)")
    models: list[str] | None = Field(
        default=None,
        min_length=1,
        description=(
            "instead of model: several catalogue models pooled on the same cards (model "
            "pooling): their weights share each replica's memory with the KV cache, and a "
            "request for a model not resident pays the switch (gridsim.pooling)"
        ),
    )
    switch_s: Duration | None = Field(
        default=None,
        description="pooled pools: time to load a model that is not resident (default: its "
        "weights over the accelerator's host link, gridsim.pooling)",
    )
    accelerator: AcceleratorRef = Field(default=None, description="catalogue accelerator id")
    replicas: int | None = Field(
        default=None, ge=0, le=MAX_COUNT, description="model replicas (LLM pool)"
    )
    fleet_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="instead of replicas: this pool's share of the national serving cards of "
        "its accelerator (the scenario's fleet: block); replicas = floor(share x cards / cards "
        "per replica)",
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
    deployment: Deployment = Deployment()

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        for ref in v or []:
            check_ref(info, "models", ref)
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a pooled pool names each model once")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> Pool:
        if self.model is not None and self.models is not None:
            raise ValueError("give either model (one) or models (pooled), not both")
        if self.switch_s is not None and self.models is None:
            raise ValueError("switch_s applies to pooled pools (models:) only")
        llm = self.model is not None or self.models is not None or self.accelerator is not None
        if llm and self.slots is not None:
            raise ValueError("give either model+accelerator+replicas (LLM) or slots (jobs)")
        if llm and (self.model_ids == () or self.accelerator is None):
            raise ValueError("an LLM pool needs model, accelerator and replicas")
        if llm and (self.replicas is None) == (self.fleet_share is None):
            raise ValueError(
                "an LLM pool needs either replicas or fleet_share (a share of the scenario's "
                "fleet), not both"
                if self.replicas is not None
                else "an LLM pool needs model, accelerator and replicas (or fleet_share)"
            )
        if not llm and self.fleet_share is not None:
            raise ValueError("fleet_share applies to LLM pools (model+accelerator) only")
        if not llm and self.slots is None:
            raise ValueError("a pool needs model+accelerator+replicas (LLM) or slots (jobs)")
        if not llm and self.deployment != Deployment():
            raise ValueError("deployment applies to LLM pools (model+accelerator+replicas) only")
        return self

    @property
    def is_llm(self) -> bool:
        return self.model is not None or self.models is not None

    @property
    def model_ids(self) -> tuple[str, ...]:
        """The catalogue models this pool serves (one, or the pooled ones)."""
        if self.models is not None:
            return tuple(self.models)
        return (self.model,) if self.model is not None else ()


NodeKind = Literal["data_centre", "supercomputer", "intelligent_computing"]


class Node(Model):
    """A compute site. Location, price and carbon default to the catalogue site's."""

    id: Id
    kind: NodeKind
    site: SiteRef = Field(default=None, description="catalogue site id")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    region: str | None = Field(default=None, description="region id the node sits in")
    pue: float = Field(default=1.3, ge=1.0, le=3.0)
    price_cny_per_kwh: float | None = Field(default=None, ge=0)
    carbon_g_per_kwh: float | None = Field(default=None, ge=0)
    pools: list[Pool] = Field(min_length=1)

    @model_validator(mode="after")
    def _located(self) -> Node:
        if self.site is None and (self.lat is None or self.lon is None):
            raise ValueError("a node needs a catalogue site or both lat and lon")
        _unique([p.id for p in self.pools], "pool id")
        return self


class Region(Model):
    """A demand region, usually a province (its capital is where requests start)."""

    id: Id
    site: SiteRef = Field(default=None, description="catalogue site id; default: the id")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    share: float | None = Field(default=None, ge=0, description="demand weight (given shares)")

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
    local_links: bool = Field(
        default=True,
        description=(
            "hub_and_spoke only: besides each place's link to its nearest national cluster, "
            "join places locally as metro and provincial networks do: a region and a node in "
            "the same city (within metro_km) or the same province get a direct link, and so do "
            "two nodes; false leaves the hub-only routes. Other generators ignore it"
        ),
    )
    metro_km: float = Field(
        default=50.0,
        ge=0,
        le=1000,
        description=(
            "great-circle km within which two places are in the same city: a metro link "
            "(local_links) and the node that the 1 ms city target is checked on"
        ),
    )
    links: list[Link] = Field(default_factory=list)


# --- policy, admission, outputs --------------------------------------------------------


class Policy(Model):
    """A registered policy name, or ``module:Class`` for a user policy."""

    name: PolicyName = "nearest"
    params: dict[str, Any] = Field(default_factory=dict)
    on_failure: Literal["retry", "drop"] = Field(
        default="retry", description="requests at a failed node: route again, or count as lost"
    )


class Admission(Model):
    queue_limit: int | None = Field(
        default=None, ge=0, le=MAX_COUNT, description="waiting requests per pool"
    )
    max_wait: Duration | None = None


class Outputs(Model):
    requests: bool = Field(default=False, description="write the per-request table")
    timeseries_interval: Duration = 60.0
    figures: bool = True
    latency_statistics: bool = Field(
        default=True,
        description="latency, wait and TTFT distributions (means and percentiles) at flow "
        "fidelity; false keeps counts, SLA attainment, capacity and economics only, about a "
        "quarter faster (what Monte Carlo draws need)",
    )

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


class Serving(Model):
    """Scenario-wide settings of the serving model (``gridsim/serving.py``)."""

    efficiency_scale: float = Field(
        default=1.0,
        gt=0,
        le=2,
        description="multiplies every pool's calibrated efficiency (with its own "
        "deployment.efficiency_scale): the serving model's uncertainty, e.g. for --draws",
    )


FleetCase = Literal["low", "central", "high"] | Annotated[float, Field(ge=0, le=1)]


class Fleet(Model):
    """The accelerator fleet that ``fleet_share`` pools divide (``gridsim/fleet.py``): cards
    shipped by ``as_of`` from a packaged inventory, times the share that serves tokens."""

    inventory: str = Field(default="china", description="packaged inventory (fleet.csv)")
    as_of: Date | None = Field(
        default=None, description="cards shipped before this date count (default: the start)"
    )
    case: FleetCase = Field(
        default="central",
        description="cards shipped: low | central | high, or q in [0, 1] from low (0) through "
        "central (0.5) to high (1)",
    )
    serving_case: FleetCase = Field(
        default="central", description="the inventory's serving share, as case"
    )
    serving_share: float | dict[str, Annotated[float, Field(ge=0, le=1)]] | None = Field(
        default=None,
        description="overrides the inventory's serving share: one share, or one per accelerator",
    )

    @field_validator("serving_share")
    @classmethod
    def _share_range(cls, v: Any) -> Any:
        if isinstance(v, float | int) and not 0 <= v <= 1:
            raise ValueError(f"serving_share {v} must lie in [0, 1]")
        return v


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
    serving: Serving = Serving()
    fleet: Fleet | None = Field(
        default=None, description="the national fleet that pools with fleet_share divide"
    )
    market: Market | None = Field(
        default=None,
        description="token packages (plans) whose subscribers make the LLM classes' demand "
        "(gridsim.market)",
    )
    training: Training | None = Field(
        default=None,
        description="training jobs on the cards inference leaves free, and the co-scheduling "
        "policy (gridsim.training)",
    )
    power: Power | None = Field(
        default=None,
        description="hour-by-hour power: hourly carbon and green share, time-of-use prices, own "
        "renewables (gridsim.power)",
    )
    plan: PlanSpec | None = Field(
        default=None,
        description="capacity expansion: what gridsim plan may build and under which limits "
        "(gridsim.planner)",
    )
    outputs: Outputs = Outputs()
    sweep: SweepSpec | None = Field(default=None, description="axes x seeds for gridsim sweep")
    uncertainty: Uncertainty | None = Field(
        default=None,
        description="uncertain inputs (distributions over --set paths) for gridsim run --draws N",
    )
    # The packaged catalogue with this scenario's entries, resolved once by the validation that
    # made the scenario (``loading.validate`` passes it as the context's ``"catalog"``).
    _catalog: Catalog | None = PrivateAttr(default=None)

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
    def _uncertain_paths(self) -> Scenario:
        # Checked on the validated scenario, whose dump holds every field defaults fill in.
        if self.uncertainty is not None:
            check_paths(self.uncertainty, self)
        return self

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Scenario:
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
        _check_events(self)
        _check_fleet(self)
        _check_market(self, info)
        _check_training(self)
        _check_plan(self, info)
        total_share = sum(c.share for c in self.demand.classes)
        if total_share > 1 + 1e-9:
            raise ValueError(f"class shares add up to {total_share:g}; they must not exceed 1")
        self._catalog = (info.context or {}).get("catalog")
        return self

    @property
    def resolved_catalog(self) -> Catalog:
        """The packaged catalogue with this scenario's own entries added or overriding by id."""
        if self._catalog is None:
            raise ValueError(
                "this scenario was validated without a catalogue; load it with "
                "gridsim.load_scenario (or gridsim.scenario.validate)"
            )
        return self._catalog


def pool_serves(pool: Pool, cls: DemandClass) -> bool:
    """Whether ``pool`` may take work of class ``cls`` (explicit serves: wins). A class with a
    model mix is served by a pool of any of its models (``gridsim.market`` splits it into one
    class per model before the engines see it)."""
    if pool.serves is not None:
        return cls.name in pool.serves
    if cls.kind == "job":
        return not pool.is_llm
    wanted = cls.model_ids
    return pool.is_llm and (not wanted or any(m in pool.model_ids for m in wanted))


def _check_training(scenario: Scenario) -> None:
    """Training and power name nodes that exist; training simulates the whole grid."""
    bad = check_training_nodes(scenario.training, scenario.power, {n.id for n in scenario.nodes})
    if bad:
        path, msg = bad[0]
        raise ValueError(f"{'.'.join(str(k) for k in path)}: {msg}")
    training, power = scenario.training, scenario.power
    if (
        training is not None
        and training.green_hours_only
        and (power is None or power.green_target_share is None)
    ):
        raise ValueError(
            "training.green_hours_only needs a target: set power.green_target_share (e.g. 0.8)"
        )
    lenders = [
        p for n in scenario.nodes for p in n.pools if p.is_llm and p.deployment.mode == "colocated"
    ]
    if training is not None and not lenders:
        raise ValueError(
            "training: no pool can lend cards to it; jobs train on co-located LLM pools "
            "(a model on an accelerator, deployment.mode: colocated); add one or remove training:"
        )
    if scenario.training is not None and (
        scenario.demand.sample_fraction != 1.0 or scenario.demand.sample_pools is not None
    ):
        raise ValueError(
            "training: jobs are sized in the whole grid's cards; set demand.sample_fraction: 1 "
            "and remove demand.sample_pools (or remove training:)"
        )


def _check_plan(scenario: Scenario, info: ValidationInfo) -> None:
    """The plan block names nodes, classes and accelerators that exist."""
    catalog = (info.context or {}).get("catalog")
    bad = check_plan_names(
        scenario.plan,
        {n.id for n in scenario.nodes},
        {c.name for c in scenario.demand.classes},
        set(catalog.accelerators) if catalog is not None else None,
    )
    if bad:
        raise ValueError(bad[0])


def _check_market(scenario: Scenario, info: ValidationInfo) -> None:
    """Volumes: tokens_per_day unless a market sets it; every class without a share or rate
    filled by a plan; plans name classes that exist; model mixes name catalogue models that
    some pool serves; plan price changes name plans."""
    demand = scenario.demand
    market = scenario.market
    classes = {c.name: c for c in demand.classes}
    if market is None and demand.tokens_per_day is None:
        raise ValueError("demand.tokens_per_day is missing: give the national volume at the start")
    if market is not None and demand.tokens_per_day is not None:
        raise ValueError(
            "give demand.tokens_per_day or a market:, not both: the market's plans set the "
            "volume (subscribers x usage)"
        )
    filled: set[str] = set()
    for plan in market.plans if market is not None else []:
        for name in plan.classes:
            if name not in classes:
                raise ValueError(
                    f"market plan {plan.id!r} names unknown class {name!r}; classes are "
                    f"{sorted(classes)}"
                )
            if classes[name].kind != "llm":
                raise ValueError(f"market plan {plan.id!r}: class {name!r} is a job class")
            if not classes[name].needs_volume:
                raise ValueError(
                    f"class {name!r} has a share or rate_per_s and market plan {plan.id!r} "
                    "fills it too: remove its share (the plans set its volume)"
                )
        filled.update(plan.classes)
        if isinstance(plan.subscribers, dict):
            regions = {r.id for r in scenario.regions}
            unknown = sorted(set(plan.subscribers) - regions)
            if unknown:
                raise ValueError(f"market plan {plan.id!r}: unknown region {unknown[0]!r}")
    for cls in demand.classes:
        if cls.needs_volume and cls.name not in filled:
            raise ValueError(
                f"class {cls.name!r} has no volume: give it a share of national demand or a "
                "rate_per_s" + (", or name it in a market plan's classes" if market else "")
            )
        for ref in cls.model_ids if cls.models is not None else ():
            check_ref(info, "models", ref)
        if cls.models is not None:
            for ref in cls.model_ids:
                if not any(ref in p.model_ids for n in scenario.nodes for p in n.pools):
                    raise ValueError(
                        f"class {cls.name!r}'s mix names model {ref!r}, which no pool serves: "
                        "add a pool of it (model: or a pooled pool's models:)"
                    )
    plans = {p.id for p in market.plans} if market is not None else set()
    for i, event in enumerate(scenario.events):
        where = f"events[{i}] ({event.kind})"
        if isinstance(event, PriceChange) and event.plan is not None and event.plan not in plans:
            raise ValueError(
                f"{where} names unknown plan {event.plan!r}; plans: {sorted(plans) or 'none'}"
            )
        if isinstance(event, ModelLaunch):
            check_ref(info, "models", event.model)
            named = event.classes or [c.name for c in demand.classes if event.model in c.model_ids]
            if not named:
                raise ValueError(
                    f"{where}: no class's models: mix names {event.model!r}; list classes: "
                    "(each needs a models: mix)"
                )
            for name in named:
                if name not in classes or classes[name].models is None:
                    raise ValueError(
                        f"{where}: class {name!r} "
                        + ("does not exist" if name not in classes else "has no models: mix")
                    )
                if event.model not in classes[name].model_ids:
                    raise ValueError(
                        f"{where}: add {event.model!r} to class {name!r}'s models: with share "
                        "0 (the launch takes its share from there)"
                    )


def _check_events(scenario: Scenario) -> None:
    """Events name nodes, pools, classes and regions that exist (policy names are checked as
    fields, against the registry's names in the validation context)."""
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


def _check_fleet(scenario: Scenario) -> None:
    """Pools with fleet_share need a fleet that has their accelerator, and the shares of one
    accelerator cannot pass the whole fleet."""
    from gridsim.fleet import inventory  # the inventory reads package data: load it lazily

    shares: dict[str, float] = {}
    for node in scenario.nodes:
        for pool in node.pools:
            if pool.fleet_share is None or pool.accelerator is None:
                continue
            if scenario.fleet is None:
                raise ValueError(
                    f"node {node.id!r} pool {pool.id!r} has fleet_share but the scenario has no "
                    "fleet: block (add fleet: {inventory: china}) or give replicas"
                )
            shares[pool.accelerator] = shares.get(pool.accelerator, 0.0) + pool.fleet_share
    if scenario.fleet is None:
        return
    inv = inventory(scenario.fleet.inventory)
    for acc, total in shares.items():
        if acc not in inv.accelerators:
            raise ValueError(
                f"fleet inventory {inv.name!r} has no {acc!r} cards; its accelerators are "
                f"{list(inv.accelerators)}"
            )
        if total > 1 + 1e-6:
            raise ValueError(
                f"the fleet_share of {acc!r} pools adds up to {total:.6g}; it cannot pass 1"
            )


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"duplicate {what} {i!r}; ids must be unique")
        seen.add(i)
