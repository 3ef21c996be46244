"""The Grid: a validated scenario made ready for the engines.

It joins the topology (latency matrix), the pools flattened across nodes with their serving
performance, which pools may serve which class, and the candidate pools for each class and
region, nearest first, and the scenario's demand model, built once for both the class means
here and the engine. Both engines and every policy read the same Grid; nothing here changes
during a run (the engines keep their own mutable state). The demand model's one piece of state,
where the request engine's chunked arrivals have got to, starts afresh for any call that does
not continue it, so runs over one Grid are independent.

Two ways to simulate part of the grid (``demand``):

- ``sample_fraction`` thins demand and every pool's slots by one fraction: cheap, but a pool of
  thousands of slots becomes a pool of a few, a different queueing regime;
- ``sample_pools`` (request fidelity; ``PoolSample``): a few pools at full size, each (region,
  class) stream thinned to the share the scenario's policy sends to them at full scale, totals
  scaled back up by ``PoolSample.apply``. Pools keep their servers, so waits and SLA attainment
  are those of the real pools. The flow engine simulates the whole grid and ignores it.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridsim.catalog import Catalog
from gridsim.demand import DemandModel, LengthSampler
from gridsim.fleet import FleetSupply, PoolFleet, supply
from gridsim.fleet import pool_replicas as fleet_pool_replicas
from gridsim.market.expand import MarketMap, expand
from gridsim.policies.registry import policy_factory
from gridsim.scenario import Problem, Scenario, ScenarioError
from gridsim.scenario.demand_spec import DEFAULT_SAMPLE_REQUESTS, SamplePools
from gridsim.scenario.schema import DemandClass, Node, Pool, pool_serves
from gridsim.service import (
    Deployed,
    PooledDeployed,
    Route,
    ServiceTable,
    Stage,
    StageTemplate,
    Workload,
    cache_weighted,
    deploy,
    deploy_pooled,
    pool_replicas,
)
from gridsim.serving import ServingModel
from gridsim.topology import Topology, build_topology, check_reachability, vertex

# Used only where neither the node, its site nor its province gives a figure.
DEFAULT_PRICE_CNY_PER_KWH = 0.45  # ASSUMPTION: between wholesale (~0.25-0.40) and C&I tariffs
DEFAULT_CARBON_G_PER_KWH = 536.6  # national grid factor 2022, MEE/NBS [S:grid-carbon-2022]
SHARE_EPS = 1e-12  # a policy's share below this sends a stream nowhere
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class PoolSpec:
    """One station of one pool of one node: a queue with slots (``gridsim.service``).

    A co-located LLM pool or a job pool is one station; a disaggregated LLM pool is a prefill
    station (its entry: policies choose it, accounting counts the pool's requests there) and a
    decode station. What a request holds at each station is in the grid's service table. A
    replica of an LLM station holds ``slots_per_replica`` sequences, each a server of the queue.
    """

    index: int
    node_index: int
    node_id: str
    pool_id: str
    kind: str  # "llm" | "job"
    model: str | None
    accelerator: str | None
    slots: int
    replicas: int  # replicas of this station (before sample_fraction and reserved_share)
    # replicas x share; share = (1 - reserved_share) x sample_fraction: simulated part of the
    # station (with sample_pools: 1 - reserved_share for a sampled pool, 0 for the others)
    simulated_replicas: float
    share: float
    slots_per_replica: int  # LLM stations: sequences per replica for the pool's workload
    price_cny_per_kwh: float
    carbon_g_per_kwh: float
    pue: float
    hub_role: str
    serving: ServingModel | None
    stage: str = "serve"  # "serve" (one station), else the mode's stage: prefill, decode
    entry: int = -1  # index of the pool's entry station (this one's own index if it is it)
    replicas_per_pool_replica: float = 1.0  # station replicas per replica the scenario counts
    mode: str = "colocated"
    # the catalogue models it serves: one, or several on shared cards (a pooled pool, whose
    # ``model`` is them joined with "+" for display); () for job pools
    models: tuple[str, ...] = ()

    @property
    def pooled(self) -> bool:
        return len(self.models) > 1

    @property
    def name(self) -> str:
        base = f"{self.node_id}/{self.pool_id}"
        return base if self.stage == "serve" else f"{base}:{self.stage}"

    @property
    def is_entry(self) -> bool:
        return self.entry == self.index


@dataclass(frozen=True)
class Grid:
    scenario: Scenario
    catalog: Catalog
    topology: Topology
    pools: tuple[PoolSpec, ...]
    # regions x pools, one-way network latency (inf where unreachable)
    latency_s: npt.NDArray[np.float64]
    # classes x pools, whether the pool may serve the class
    serves: npt.NDArray[np.bool_]
    # candidates[c][r]: reachable pools for class c from region r, nearest first
    candidates: tuple[tuple[tuple[int, ...], ...], ...]
    # per class: mean input and output tokens (LLM) and mean service time (jobs)
    mean_input_tokens: tuple[float, ...]
    mean_output_tokens: tuple[float, ...]
    mean_job_s: tuple[float, ...]
    demand: DemandModel  # rates (flow engine) and arrivals (request engine)
    service: ServiceTable  # what a request of each class holds at each pool, stage by stage
    sample: PoolSample | None = None  # demand.sample_pools at request fidelity
    notes: tuple[str, ...] = field(default=())  # what a run should tell about how it was built
    fleet: FleetSupply | None = None  # the scenario's fleet: block, resolved
    fleet_pools: tuple[PoolFleet, ...] = ()  # how each fleet_share pool was sized
    # the scenario's market plans and model mixes, as its classes (None: neither); ``scenario``
    # is then the expanded one, one class per (class, model, tier)
    market: MarketMap | None = None

    @property
    def region_ids(self) -> tuple[str, ...]:
        return tuple(self.topology.region_ids)

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(self.topology.node_ids)

    @property
    def classes(self) -> tuple[DemandClass, ...]:
        return tuple(self.scenario.demand.classes)

    @cached_property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.scenario.demand.classes)

    def slots(self) -> npt.NDArray[np.int64]:
        return np.array([p.slots for p in self.pools], dtype=np.int64)

    def pool_index(self, node_id: str, pool_id: str) -> int:
        """The entry station of a scenario pool."""
        return next(
            p.index
            for p in self.pools
            if p.node_id == node_id and p.pool_id == pool_id and p.is_entry
        )

    def stations_of(self, pool: int) -> tuple[int, ...]:
        """Every station of the scenario pool that station ``pool`` belongs to, entry first."""
        entry = self.pools[pool].entry
        return tuple(p.index for p in self.pools if p.entry == entry)

    def slots_for(self, pool: int, replicas: int | None, slots: int | None) -> int:
        """Simulated slots of station ``pool`` that ``replicas`` (LLM: replicas as the
        scenario counts them, decode replicas when disaggregated) or ``slots`` (jobs) of its
        scenario pool amount to."""
        spec = self.pools[pool]
        if spec.kind == "llm":
            raw = pool_replicas(spec.replicas_per_pool_replica, replicas or 0)
            raw *= spec.slots_per_replica
        else:
            raw = slots or 0
        return round(raw * spec.share)

    def pools_table(self) -> pd.DataFrame:
        """One row per pool with what economics and reports need (units in column names).

        ``accelerators`` counts the cards behind the simulated slots (after sample_fraction and
        reserved_share), so energy from this table matches the simulated load. ``sampled``
        marks the pools simulated (with ``sample_pools``, the others have no slots and no
        cards), and ``attrs["sample"]`` holds ``PoolSample.describe()`` (None without one).

        ``replicas``, ``accelerators`` and ``slots`` are at the start of the horizon;
        ``replicas_start``/``_end``, ``cards_start``/``_end`` and ``slots_start``/``_end`` give
        both ends, after the scenario's build-outs and retirements
        (``gridsim.capacity_timeline``), which ``attrs["describes"]`` and ``attrs["columns"]``
        say in the parquet file too. ``share``, ``replicas_per_pool_replica``,
        ``station_slots_per_replica`` and ``accelerators_per_replica`` are what the timeline
        needs to size a change of the scenario pool's replicas at this station.
        """
        # imported here: this method is the only part of the grid that reads the timeline
        from gridsim.capacity_timeline import (
            POOLS_TABLE_COLUMNS,
            POOLS_TABLE_DESCRIBES,
            pool_steps,
            start_end,
        )

        nodes = {n.id: n for n in self.scenario.nodes}
        rows = []
        for p in self.pools:
            node = nodes[p.node_id]
            sm = p.serving
            place = self.topology.graph.nodes[vertex("node", p.node_id)]
            slots_per_replica = (p.slots / p.simulated_replicas) if p.simulated_replicas else 0.0
            rows.append(
                {
                    "pool": p.name,
                    "stage": p.stage,
                    "mode": p.mode,
                    "node": p.node_id,
                    "node_kind": node.kind,
                    "kind": p.kind,
                    "model": p.model,
                    # a pooled pool's models joined with "+" (economics prices its flows at
                    # each class's model); a plain pool's one model
                    "models": "+".join(p.models) if p.models else None,
                    "accelerator": p.accelerator,
                    "slots": p.slots,
                    "slots_per_replica": slots_per_replica,
                    "replicas": p.simulated_replicas,
                    "accelerators": p.simulated_replicas * sm.accelerators_per_replica if sm else 0,
                    "accelerator_tdp_w": sm.accelerator.tdp_w if sm else 0.0,
                    "accelerator_idle_fraction": sm.accelerator.idle_power_fraction if sm else 0.0,
                    "accelerator_price_cny": sm.accelerator.price_cny if sm else 0.0,
                    "pue": p.pue,
                    "price_cny_per_kwh": p.price_cny_per_kwh,
                    "carbon_g_per_kwh": p.carbon_g_per_kwh,
                    "hub_role": p.hub_role,
                    "lat": place["lat"],
                    "lon": place["lon"],
                    "sampled": self.sample is None or p.index in self.sample.pools,
                    "share": p.share,
                    "replicas_per_pool_replica": p.replicas_per_pool_replica,
                    "station_slots_per_replica": p.slots_per_replica,
                    "accelerators_per_replica": sm.accelerators_per_replica if sm else 0,
                }
            )
        table = pd.DataFrame(rows)
        if not table.empty:
            ends = start_end(pool_steps(self.scenario, table)).reindex(table["pool"])
            for what, column in (("replicas", "replicas"), ("cards", "accelerators")):
                for end in ("start", "end"):
                    table[f"{what}_{end}"] = ends[f"{column}_{end}"].to_numpy()
            table["slots_start"] = ends["slots_start"].to_numpy()
            table["slots_end"] = ends["slots_end"].to_numpy()
        table.attrs["sample"] = self.sample.describe() if self.sample is not None else None
        table.attrs["describes"] = POOLS_TABLE_DESCRIBES
        table.attrs["columns"] = dict(POOLS_TABLE_COLUMNS)
        return table


def build_grid(scenario: Scenario) -> Grid:
    """Everything the engines need, or a ScenarioError naming what makes the grid unusable.
    A scenario with a market or model mixes is expanded first (``gridsim.market.expand``):
    the grid's scenario is the expanded one."""
    scenario, market = expand(scenario)
    catalog = scenario.resolved_catalog
    demand = DemandModel(scenario, catalog)
    means = _class_means(scenario, demand)
    problems = check_reachability(scenario, catalog)
    if problems:
        raise ScenarioError(problems)
    topology = build_topology(scenario, catalog)
    pools: list[PoolSpec] = []
    declared: list[Pool] = []  # the scenario's pool behind each PoolSpec
    fleet = supply(scenario)
    fleet_pools: list[PoolFleet] = []
    templates: list[Templates] = []  # per station: its pool's stages
    notes: list[str] = []  # pooled pools' resident sets
    node_pos = {n: i for i, n in enumerate(topology.node_ids)}
    # a pooled pool's resident set and slots follow its models' requests: each class's mean
    # requests/s over the horizon (growth, profiles, launches), nationally
    rates: tuple[float, ...] = ()
    if any(p.models is not None for n in scenario.nodes for p in n.pools):
        edges = np.array([0.0, float(scenario.horizon.duration)])
        rates = tuple(demand.mean_rates(edges)[0].sum(axis=0).tolist())
    for ni, node in enumerate(scenario.nodes):
        for pool in node.pools:
            made = _pool(
                node,
                ni,
                node_pos[node.id],
                pool,
                len(pools),
                scenario,
                catalog,
                means,
                problems,
                fleet,
                fleet_pools,
                rates,
                notes,
            )
            if made is not None:
                specs, stages = made
                pools.extend(specs)
                declared.extend([pool] * len(specs))
                templates.extend([stages] * len(specs))
    if problems:
        raise ScenarioError(problems)
    latency = topology.latency_s[:, [p.node_index for p in pools]]
    classes = scenario.demand.classes
    serves = np.array(
        [
            [pool_serves(pl, c) and sp.is_entry for pl, sp in zip(declared, pools, strict=True)]
            for c in classes
        ],
        dtype=bool,
    )
    service = _service_table(tuple(pools), templates, serves, scenario, means, problems)
    if problems:
        raise ScenarioError(problems)
    candidates = _candidates(serves, tuple(pools), latency)
    for ci, cls in enumerate(classes):
        for ri, region in enumerate(scenario.regions):
            if not candidates[ci][ri]:
                problems.append(
                    Problem(
                        ("demand", "classes", ci),
                        f"class {cls.name!r} has no reachable pool with capacity from region "
                        f"{region.id!r}; add capacity or a link",
                    )
                )
    if problems:
        raise ScenarioError(problems)
    grid = Grid(
        scenario,
        catalog,
        topology,
        tuple(pools),
        latency,
        serves,
        candidates,
        *means,
        demand,
        service,
        fleet=fleet,
        fleet_pools=tuple(fleet_pools),
        market=market,
        notes=tuple(notes),
    )
    sampling = scenario.demand.sample_pools
    if sampling is None:
        return grid
    if scenario.fidelity == "flow":
        note = (
            "demand.sample_pools applies at request fidelity only: the flow engine simulates "
            "the whole grid at full scale"
        )
        warnings.warn(note, stacklevel=2)
        return replace(grid, notes=(*grid.notes, note))
    return _sampled(grid, sampling)


def sample_requests_expected(scenario: Scenario) -> float | None:
    """Expected arrivals a request-fidelity run simulates with the scenario's pool sample
    (``demand.sample_pools``; None without one): what a run's estimate should count instead of
    the whole grid's. Builds the grid (no arrivals: nothing proportional to the horizon)."""
    if scenario.demand.sample_pools is None:
        return None
    grid = build_grid(scenario.model_copy(update={"fidelity": "request"}))
    assert grid.sample is not None
    return grid.sample.requests_expected


def with_topology(grid: Grid, topology: Topology) -> Grid:
    """The same grid over another topology (a link cut or repaired): new routes, nothing else
    (with a pool sample, each stream still goes only to the sampled pools it was sent to)."""
    latency = topology.latency_s[:, [p.node_index for p in grid.pools]]
    allow = grid.sample.routes if grid.sample is not None else None
    candidates = _candidates(grid.serves, grid.pools, latency, allow)
    return replace(grid, topology=topology, latency_s=latency, candidates=candidates)


def _candidates(
    serves: npt.NDArray[np.bool_],
    pools: tuple[PoolSpec, ...],
    latency: npt.NDArray[np.float64],
    allow: BoolArray | None = None,
) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """For each class and region, the reachable pools with capacity, nearest first (only those
    ``allow[region, class]`` lets through, when given)."""
    out = []
    for ci in range(serves.shape[0]):
        per_region = []
        for ri in range(latency.shape[0]):
            ok = [
                p
                for p in range(len(pools))
                if serves[ci, p]
                and np.isfinite(latency[ri, p])
                and pools[p].slots > 0
                and (allow is None or allow[ri, ci, p])
            ]
            ok.sort(key=lambda p: (latency[ri, p], p))
            per_region.append(tuple(ok))
        out.append(tuple(per_region))
    return tuple(out)


def _pool(
    node: Node,
    ni: int,
    node_index: int,
    pool: Pool,
    index: int,
    scenario: Scenario,
    catalog: Catalog,
    means: ClassMeans,
    problems: list[Problem],
    fleet: FleetSupply | None = None,
    fleet_pools: list[PoolFleet] | None = None,
    class_rates: tuple[float, ...] = (),
    notes: list[str] | None = None,
) -> tuple[list[PoolSpec], Templates] | None:
    """The stations of one scenario pool (indices from ``index``) and, for an LLM pool, the
    stage templates of its serving mode (a pooled pool: per model); None (with a problem) if
    it cannot be deployed. A pool with ``fleet_share`` gets the whole replicas its share of the
    fleet's serving cards holds (recorded in ``fleet_pools``). ``class_rates``: each class's
    mean requests/s (needed by pooled pools only); a pooled pool's resident set goes into
    ``notes`` when some of its models are not resident."""
    site = catalog.sites.get(node.site) if node.site else None
    province = catalog.sites.get(site.province) if site and site.province else None
    price = _first(
        node.price_cny_per_kwh,
        site.price_cny_per_kwh if site else None,
        province.price_cny_per_kwh if province else None,
        DEFAULT_PRICE_CNY_PER_KWH,
    )
    carbon = _first(
        node.carbon_g_per_kwh,
        site.carbon_g_per_kwh if site else None,
        province.carbon_g_per_kwh if province else None,
        DEFAULT_CARBON_G_PER_KWH,
    )
    share = (1.0 - pool.reserved_share) * scenario.demand.sample_fraction
    common = {
        "node_index": node_index,
        "node_id": node.id,
        "pool_id": pool.id,
        "model": "+".join(pool.model_ids) if pool.is_llm else None,
        "models": pool.model_ids,
        "accelerator": pool.accelerator,
        "share": share,
        "price_cny_per_kwh": price,
        "carbon_g_per_kwh": carbon,
        "pue": node.pue,
        "hub_role": site.hub_role if site else "",
        "entry": index,
        "mode": pool.deployment.mode,
    }
    if not pool.is_llm or pool.accelerator is None:
        raw = pool.slots or 0
        slots = max(round(raw * share), 1) if raw > 0 and share > 0 else round(raw * share)
        spec = PoolSpec(
            index=index,
            kind="job",
            slots=slots,
            replicas=0,
            simulated_replicas=0.0,
            slots_per_replica=1,
            serving=None,
            **common,  # type: ignore[arg-type]
        )
        return [spec], None
    pi = node.pools.index(pool)
    path: tuple[str | int, ...] = ("nodes", ni, "pools", pi)
    deployment = pool.deployment
    if scenario.serving.efficiency_scale != 1.0:  # the scenario-wide serving uncertainty
        scale = deployment.efficiency_scale * scenario.serving.efficiency_scale
        deployment = deployment.model_copy(update={"efficiency_scale": scale})
    deployed: Deployed
    if pool.models is not None:
        if pool.deployment.mode != "colocated":
            problems.append(
                Problem(
                    (*path, "deployment", "mode"),
                    f"a pooled pool (models:) is deployed co-located; mode "
                    f"{pool.deployment.mode!r} is not supported for it: drop deployment.mode "
                    "or serve the models in separate pools",
                )
            )
            return None
        workloads, model_rates = _pooled_workloads(pool, scenario, means, class_rates)
        try:
            deployed = deploy_pooled(
                catalog.accelerators[pool.accelerator],
                [catalog.models[m] for m in pool.models],
                deployment,
                workloads,
                model_rates,
                switch_s=pool.switch_s,
            )
        except ValueError as exc:
            problems.append(Problem((*path, "models"), str(exc)))
            return None
        if notes is not None:
            notes.extend(f"pool {node.id}/{pool.id}: {n}" for n in deployed.notes)
    else:
        assert pool.model is not None  # an LLM pool with one model
        try:
            deployed = deploy(
                catalog.accelerators[pool.accelerator],
                catalog.models[pool.model],
                deployment,
                _workload(pool, scenario, means),
            )
        except ValueError as exc:
            where = (*path, "deployment") if "mode" in str(exc) else path
            problems.append(Problem(where, str(exc)))
            return None
    pool_reps = pool.replicas or 0
    if pool.fleet_share is not None and fleet is not None:
        cards_per_replica = sum(
            st.replicas_per_pool_replica * st.serving.accelerators_per_replica
            for st in deployed.stations
            if st.serving is not None
        )
        pool_reps = fleet_pool_replicas(
            fleet, pool.accelerator, pool.fleet_share, cards_per_replica
        )
        if fleet_pools is not None:
            fleet_pools.append(
                PoolFleet(
                    node.id,
                    pool.id,
                    "+".join(pool.model_ids),
                    pool.accelerator,
                    pool.fleet_share,
                    fleet.serving_cards(pool.accelerator) * pool.fleet_share,
                    cards_per_replica,
                    pool_reps,
                )
            )
    specs = []
    for k, station in enumerate(deployed.stations):
        replicas = pool_replicas(station.replicas_per_pool_replica, pool_reps)
        raw = replicas * station.slots_per_replica
        # Sampling a share of national demand samples the same share of capacity.
        slots = max(round(raw * share), 1) if raw > 0 and share > 0 else round(raw * share)
        specs.append(
            PoolSpec(
                index=index + k,
                kind="llm",
                slots=slots,
                replicas=replicas,
                simulated_replicas=replicas * share,
                slots_per_replica=station.slots_per_replica,
                serving=station.serving,
                stage="serve" if len(deployed.stations) == 1 else station.stage,
                replicas_per_pool_replica=station.replicas_per_pool_replica,
                **common,  # type: ignore[arg-type]
            )
        )
    if isinstance(deployed, PooledDeployed):
        return specs, deployed.by_model
    return specs, deployed.stages


def _service_table(
    pools: tuple[PoolSpec, ...],
    templates: list[Templates],
    serves: BoolArray,
    scenario: Scenario,
    means: ClassMeans,
    problems: list[Problem] | None = None,
) -> ServiceTable:
    """Each class's route through each entry station it may use: a job class holds one slot
    for its service time; an LLM class passes its pool's stages, prefill cut by its own
    prefix-cache hit share; at a pooled pool, its own model's stages (a class whose model
    the pool does not pool is a problem, added to ``problems``)."""
    routes = []
    for c, cls in enumerate(scenario.demand.classes):
        per_pool: list[Route | None] = []
        for p, spec in enumerate(pools):
            template = templates[p]
            stages: tuple[StageTemplate, ...] | None
            if isinstance(template, dict) and serves[c, p] and cls.kind == "llm":
                mine = template.get(cls.model or "")
                if mine is None:
                    if problems is not None and p == spec.entry:
                        problems.append(
                            Problem(
                                ("demand", "classes", c),
                                f"class {cls.name!r} reaches pooled pool {spec.name!r}, which "
                                f"serves {', '.join(spec.models)}, but its model is "
                                f"{cls.model!r}: give the class one of those models, or leave "
                                "it out of the pool's serves",
                            )
                        )
                    per_pool.append(None)
                    continue
                stages = mine
            else:  # a plain pool's stages (a pooled pool's reach here only unserved or jobs)
                stages = None if isinstance(template, dict) else template
            if not serves[c, p]:
                per_pool.append(None)
            elif cls.kind == "job":
                per_pool.append((Stage("serve", p, per_job_s=1.0),))
            elif stages is None:  # an LLM class at job slots: nothing to compute (as before)
                per_pool.append((Stage("serve", p, first_token_per_input_s=0.0),))
            else:
                stations = tuple(q.index for q in pools if q.entry == spec.entry)
                per_pool.append(tuple(t.stage(stations, cls.cache_hit_share) for t in stages))
        routes.append(tuple(per_pool))
    return ServiceTable(
        routes=tuple(routes),
        mean_input_tokens=means[0],
        mean_output_tokens=means[1],
        mean_job_s=means[2],
        entry=tuple(p.entry for p in pools),
    )


ClassMeans = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]
# per station: its pool's stage templates (one tuple; a pooled pool: one per model id; None
# for job slots)
Templates = tuple[StageTemplate, ...] | dict[str, tuple[StageTemplate, ...]] | None


def _class_means(scenario: Scenario, demand: DemandModel) -> ClassMeans:
    """Mean input tokens, output tokens (LLM classes; from traces where replayed) and service
    time (job classes) per class, as the demand model draws them."""
    jobs = tuple(
        float(LengthSampler(c.service, tokens=False).mean) if c.service is not None else 0.0
        for c in scenario.demand.classes
    )
    return tuple(demand.mean_input_tokens.tolist()), tuple(demand.mean_output_tokens.tolist()), jobs


def _workload(pool: Pool, scenario: Scenario, means: ClassMeans) -> Workload:
    """Mean prompt and output tokens and prefix-cache hit share of the LLM classes this pool
    may serve, by token share (equal weights when no class has a share)."""
    classes = scenario.demand.classes
    idx = [i for i, c in enumerate(classes) if c.kind == "llm" and pool_serves(pool, c)]
    return _workload_of(idx, scenario, means)


def _pooled_workloads(
    pool: Pool, scenario: Scenario, means: ClassMeans, class_rates: tuple[float, ...]
) -> tuple[dict[str, Workload], dict[str, float]]:
    """Per model of a pooled pool: the workload of the classes of that model it may serve
    (as ``_workload``) and their requests/s; models no class brings are left out."""
    classes = scenario.demand.classes
    workloads: dict[str, Workload] = {}
    rates: dict[str, float] = {}
    for m in pool.model_ids:
        idx = [
            i
            for i, c in enumerate(classes)
            if c.kind == "llm" and c.model == m and pool_serves(pool, c)
        ]
        if idx:
            workloads[m] = _workload_of(idx, scenario, means)
            rates[m] = float(sum(class_rates[i] for i in idx)) if class_rates else 0.0
    return workloads, rates


def _workload_of(idx: list[int], scenario: Scenario, means: ClassMeans) -> Workload:
    """The workload of classes ``idx``: mean lengths and cache-hit share by token share."""
    classes = scenario.demand.classes
    if not idx:
        return Workload(0.0, 0.0)
    shares = [classes[i].share for i in idx]
    weights = shares if any(shares) else None
    ins = [means[0][i] for i in idx]
    outs = [means[1][i] for i in idx]
    return Workload(
        float(np.average(ins, weights=weights)),
        float(np.average(outs, weights=weights)),
        cache_weighted([classes[i].cache_hit_share for i in idx], weights),
    )


def _first(*values: float | None) -> float:
    return next(float(v) for v in values if v is not None)


# --- sampling pools at full size (demand.sample_pools) ---------------------------------------


@dataclass(frozen=True)
class PoolSample:
    """What ``demand.sample_pools`` simulates, and how its totals scale up to the whole grid.

    The scenario's policy splits each (region, class) stream over the pools at full scale at
    the horizon's start (its flow allocation, as the flow engine asks it on the first tick: the
    start's demand, every pool up, nothing queued; static policies give their nearest pool).
    The sampled pools keep their full slots; each stream is thinned to ``share[r, c]``, the
    part of it the policy sends to them, and may go only to the sampled pools that part went
    to (``routes``); a stream sent to none of them is not simulated.

    Totals: each class's counts (requests, tokens) are divided by the class's share of demand
    simulated, ``class_share`` = sum over regions of share x expected arrivals / the class's
    expected arrivals: the per-stream scaling 1 / share[r, c] summed over the class's streams,
    up to sampling noise, and keeping arrived = served + dropped + ... within each class. A
    class whose every stream is thinned to 0 is not simulated and is left out of the totals.
    Ratios (SLA attainment, latency and waits, utilisation) are those of the sampled pools.
    """

    selection: str  # "auto" or "given"
    max_requests: float | None  # the budget of pools: auto
    policy: str
    pools: tuple[int, ...]  # indices of the sampled pools, in choosing (or listed) order
    pool_names: tuple[str, ...]  # every pool's name (node_id/pool_id)
    pool_kinds: tuple[str, ...]  # every pool's kind: its site's (cluster, ...) or its node's
    class_names: tuple[str, ...]
    region_ids: tuple[str, ...]
    share: FloatArray  # (regions, classes) part of each stream simulated
    routes: BoolArray  # (regions, classes, pools) sampled pools each stream may go to
    expected: FloatArray  # (regions, classes) expected arrivals over the horizon, whole grid
    pool_load: FloatArray  # (classes, pools) expected arrivals each pool gets at full scale

    @property
    def requests_expected(self) -> float:
        """Expected arrivals the sample simulates over the horizon."""
        return float((self.share * self.expected).sum())

    @property
    def share_of_demand(self) -> float:
        """The sample's share of the whole grid's expected arrivals."""
        total = float(self.expected.sum())
        return self.requests_expected / total if total > 0 else 0.0

    @property
    def class_share(self) -> FloatArray:
        """Per class: its share of demand simulated (0: the class is not simulated)."""
        total = self.expected.sum(axis=0)
        simulated = (self.share * self.expected).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out: FloatArray = np.where(total > 0, simulated / total, 0.0)
        return out

    def describe(self) -> dict[str, Any]:
        """JSON-safe: what was sampled and how (``summary["sample"]`` without the counts)."""
        names = self.pool_names
        load = self.pool_load.sum(axis=0)
        class_share = self.class_share
        kinds = sorted({self.pool_kinds[p] for p in range(len(names)) if load[p] > 0})
        sampled_kinds = sorted({self.pool_kinds[p] for p in self.pools})
        classes: dict[str, Any] = {}
        for c, name in enumerate(self.class_names):
            q = float(class_share[c])
            serving = np.flatnonzero(self.pool_load[c] > 0)
            smallest = min(serving, key=lambda p: (load[p], p)) if serving.size else None
            classes[name] = {
                "share_of_demand": q,
                "scale": 1.0 / q if q > 0 else None,
                "streams_simulated": int((self.share[:, c] > 0).sum()),
                "smallest_pool": names[smallest] if smallest is not None else None,
                "smallest_pool_requests_expected": (
                    float(load[smallest]) if smallest is not None else None
                ),
            }
        left_out = [c for c in self.class_names if classes[c]["scale"] is None]
        pools = [names[p] for p in self.pools]
        how = (
            f"{len(pools)} of {len(names)} pools simulated at full size ({', '.join(pools)}). "
            f"Each (region, class) stream is thinned to the part the {self.policy} policy sends "
            "to these pools at full scale at the horizon's start; streams it sends elsewhere "
            f"are not simulated. The sample is {self.share_of_demand:.3%} of the grid's "
            "expected requests. Request and token totals are scaled up class by class "
            "(divided by the class's share of demand simulated) to estimate the whole grid; "
            "SLA attainment, latency, waits and utilisation are those of the sampled pools."
        )
        if left_out:
            how += f" Classes not simulated (left out of the totals): {', '.join(left_out)}."
        bias = (
            "Not a random sample: the pools simulated are the ones chosen, with the demand the "
            "policy sends them at the start, so the KPIs describe those pools. "
            + (
                "pools: auto takes the pools with the fewest expected requests that cover the "
                "classes and pool kinds, so small pools, and the spill they take, are "
                "over-represented, and a class served only by large pools is not sampled "
                "within max_requests. "
                if self.selection == "auto"
                else ""
            )
            + "The routing is fixed at the start's split: later changes of demand (the "
            "daily profile, growth, shocks) and events are not re-planned, and a sampled "
            "pool's overflow has nowhere else to go."
        )
        return {
            "method": "pools",
            "selection": self.selection,
            "max_requests": self.max_requests,
            "policy": self.policy,
            "pools": pools,
            "pool_kinds": {names[p]: self.pool_kinds[p] for p in self.pools},
            "requests_expected_by_pool": {names[p]: float(load[p]) for p in self.pools},
            "share_of_demand": self.share_of_demand,
            "requests_expected": self.requests_expected,
            "requests_expected_whole_grid": float(self.expected.sum()),
            "streams_simulated": int((self.share > 0).sum()),
            "streams": int((self.expected > 0).sum()),
            "classes": classes,
            "classes_not_simulated": left_out,
            "pool_kinds_not_sampled": [k for k in kinds if k not in sampled_kinds],
            "how": how,
            "bias": bias,
        }

    def apply(self, summary: dict[str, Any]) -> dict[str, Any]:
        """``summary`` with its request and token totals (overall and ``by_class``) scaled to
        the whole grid, and ``sample``: ``describe()`` plus the counts simulated. Ratios,
        ``by_region``, ``by_node`` and ``by_pool`` stay the sample's (sampled pools are at
        full size). Applying it twice changes nothing."""
        if "sample" in summary:
            return summary
        out = copy.deepcopy(summary)
        by_class = out.get("by_class") or {}
        class_share = self.class_share
        requests: dict[str, Any] = {}
        tokens: dict[str, Any] = {}
        for c, name in enumerate(self.class_names):
            block = by_class.get(name)
            if not block:
                continue
            factor = 1.0 / class_share[c] if class_share[c] > 0 else 0.0
            if "requests" in block:
                block["requests"] = _scaled_requests(block["requests"], factor)
                _add_into(requests, block["requests"])
            if "tokens" in block:
                block["tokens"] = _scaled(block["tokens"], factor)
                _add_into(tokens, block["tokens"])
        simulated = summary.get("requests") or {}
        arrived = simulated.get("arrived") or 0
        overall = (requests.get("arrived", 0) / arrived) if arrived else 0.0
        for key, value in simulated.items():  # counts not kept by class (retried)
            if key not in requests:
                requests[key] = _scaled(value, overall)
        if "requests" in out:
            out["requests"] = {k: requests.get(k, v) for k, v in simulated.items()}
        if "tokens" in out:
            out["tokens"] = _merge_like(summary["tokens"], tokens)
        out["sample"] = {
            **self.describe(),
            "requests_simulated": copy.deepcopy(summary.get("requests")),
            "tokens_simulated": copy.deepcopy(summary.get("tokens")),
            "scaled": ["requests", "tokens", "by_class.requests", "by_class.tokens"],
            "not_scaled": (
                "ratios (SLA attainment, latency, waits, utilisation) and the counts of "
                "by_region, by_node and by_pool are the sample's"
            ),
        }
        return out


REQUEST_TERMS = ("served", "dropped", "abandoned", "lost", "in_flight")  # they add up to arrived


def _scaled_requests(counts: dict[str, Any], factor: float) -> dict[str, Any]:
    """Request counts times ``factor``, each term rounded and ``arrived`` their sum, so arrived
    = served + dropped + abandoned + lost + in flight holds exactly after scaling too."""
    out = _scaled(counts, factor)
    if "arrived" in counts and all(isinstance(out.get(k), int) for k in REQUEST_TERMS):
        out["arrived"] = sum(out[k] for k in REQUEST_TERMS)
    return dict(out)


def _scaled(value: Any, factor: float) -> Any:
    """Numbers (nested in dicts) times ``factor``; counts stay whole numbers."""
    if isinstance(value, dict):
        return {k: _scaled(v, factor) for k, v in value.items()}
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | np.integer):
        return round(int(value) * factor)
    if isinstance(value, float | np.floating):
        return float(value) * factor
    return value


def _add_into(total: dict[str, Any], block: dict[str, Any]) -> None:
    for k, v in block.items():
        if isinstance(v, dict):
            _add_into(total.setdefault(k, {}), v)
        elif isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool):
            total[k] = total.get(k, 0) + v


def _merge_like(shape: Any, values: Any) -> Any:
    """``values`` laid out as ``shape`` (0 where a class block had no such number)."""
    if isinstance(shape, dict):
        sub = values if isinstance(values, dict) else {}
        return {k: _merge_like(v, sub.get(k)) for k, v in shape.items()}
    if shape is None:
        return None
    return values if values is not None else type(shape)(0)


@dataclass(frozen=True)
class _StartState:
    """The flow engine's ``FlowState`` at the horizon's start, field for field (the grid sits
    below the policies, so it cannot import the class; tests check the fields match)."""

    demand_rps: FloatArray  # (regions, classes) requests/s
    service_s: FloatArray  # (classes, pools) mean slot time of a request
    slots: FloatArray  # (pools,) slots up
    queued_work_rate: FloatArray  # (pools,) nothing queued at the start
    alive: BoolArray  # (pools,)


def start_shares(grid: Grid) -> FloatArray:
    """The scenario's policy's split of each (region, class) stream over the pools at the
    horizon's start, at full scale: regions x classes x pools, as the flow engine's first tick
    asks it (the first tick's mean demand, mean slot times, every pool with slots up, nothing
    queued). The policy is built by its registered name, as a run builds it."""
    sc = grid.scenario
    name, params = sc.policy.name, dict(sc.policy.params)
    try:
        policy = policy_factory(name)(grid, **params)
    except TypeError as exc:
        raise ValueError(f"policy {name!r} rejected its params {params}: {exc}") from None
    n_r, n_c, n_p = len(grid.region_ids), len(grid.classes), len(grid.pools)
    service = grid.service.station_holds(n_p)
    first_tick = min(sc.horizon.resolution, sc.horizon.duration)
    demand = grid.demand.mean_rates(np.array([0.0, first_tick]))[0]
    slots = grid.slots().astype(np.float64)
    state = _StartState(demand, np.maximum(service, 1e-9), slots, np.zeros(n_p), slots > 0)
    shares = np.asarray(policy.allocate(state), dtype=np.float64)
    if shares.shape != (n_r, n_c, n_p):
        raise ValueError(
            f"policy {name!r} allocated shares of shape {shares.shape}; expected regions x "
            f"classes x pools {(n_r, n_c, n_p)}"
        )
    out: FloatArray = np.clip(np.nan_to_num(shares), 0.0, 1.0)
    return out


def pool_kinds(grid: Grid) -> tuple[str, ...]:
    """Each pool's kind for sampling: its node's catalogue site kind (cluster, ai_centre,
    supercomputer), else its node's kind."""
    nodes = {n.id: n for n in grid.scenario.nodes}
    out = []
    for p in grid.pools:
        node = nodes[p.node_id]
        site = grid.catalog.sites.get(node.site) if node.site else None
        out.append(site.kind if site is not None and site.kind != "province" else node.kind)
    return tuple(out)


def _sampled(grid: Grid, spec: SamplePools) -> Grid:
    """The grid of a pool sample: sampled pools at full size, the others without slots, each
    stream routed only to the sampled pools the policy sent it to, and demand thinned."""
    sc = grid.scenario
    horizon = sc.horizon.duration
    shares = start_shares(grid)
    expected = grid.demand.mean_rates(np.array([0.0, horizon]))[0] * horizon  # (R, C)
    pool_load = np.einsum("rcp,rc->cp", shares, expected)
    kinds = pool_kinds(grid)
    names = tuple(p.name for p in grid.pools)
    path = ("demand", "sample_pools")
    if spec.pools == "auto":
        budget = spec.max_requests if spec.max_requests is not None else DEFAULT_SAMPLE_REQUESTS
        chosen = _auto_pools(pool_load, kinds, budget)
        if not chosen:
            load = pool_load.sum(axis=0)
            fed = np.flatnonzero(load > 0)
            if not fed.size:
                message = f"the {sc.policy.name} policy sends no demand to any pool"
            else:
                smallest = int(min(fed, key=lambda p: (load[p], p)))
                message = (
                    f"no pool's expected requests fit max_requests {budget:g}: the smallest "
                    f"pool with demand, {names[smallest]!r}, expects {load[smallest]:,.0f} over "
                    "the horizon; raise max_requests or list pools"
                )
            raise ScenarioError([Problem(path, message)])
    else:
        chosen = [grid.pool_index(*name.split("/", 1)) for name in spec.pools]
    mask = np.zeros(len(grid.pools), dtype=bool)
    mask[chosen] = True
    routes = (shares > SHARE_EPS) & mask[None, None, :]
    mask = mask[list(grid.service.entry)]  # a sampled pool's later stations come with it
    share = np.clip(np.where(routes, shares, 0.0).sum(axis=2), 0.0, 1.0)
    simulated = float((share * expected).sum())
    if spec.pools != "auto" and spec.max_requests is not None and simulated > spec.max_requests:
        message = (
            f"the pools listed expect {simulated:,.0f} requests over the horizon, more than "
            f"max_requests {spec.max_requests:g}; raise max_requests or list smaller pools"
        )
        raise ScenarioError([Problem(path, message)])
    if not simulated > 0:
        message = (
            f"the {sc.policy.name} policy sends no demand to {', '.join(names[p] for p in chosen)}"
            " at full scale at the horizon's start: nothing to simulate; sample pools that get "
            "demand (pools: auto picks them)"
        )
        raise ScenarioError([Problem(path, message)])
    pools = tuple(
        p if mask[p.index] else replace(p, slots=0, simulated_replicas=0.0, share=0.0)
        for p in grid.pools
    )
    sample = PoolSample(
        selection="auto" if spec.pools == "auto" else "given",
        max_requests=(
            (spec.max_requests or DEFAULT_SAMPLE_REQUESTS)
            if spec.pools == "auto"
            else spec.max_requests
        ),
        policy=sc.policy.name,
        pools=tuple(chosen),
        pool_names=names,
        pool_kinds=kinds,
        class_names=grid.class_names,
        region_ids=grid.region_ids,
        share=share,
        routes=routes,
        expected=expected,
        pool_load=pool_load,
    )
    return replace(
        grid,
        pools=pools,
        candidates=_candidates(grid.serves, pools, grid.latency_s, routes),
        demand=DemandModel(sc, grid.catalog, thinning=share),
        sample=sample,
    )


def _auto_pools(pool_load: FloatArray, kinds: tuple[str, ...], budget: float) -> list[int]:
    """Pools for ``pools: auto``, within ``budget`` expected requests: again and again, the pool
    with the fewest expected requests that serves a class not yet covered (so the smallest
    pool of each class first); then likewise for pool kinds not yet covered. Only pools the
    policy sends demand to count."""
    load = pool_load.sum(axis=0)
    serves = pool_load > 0  # (classes, pools)
    chosen: list[int] = []
    used = 0.0

    def new_classes(p: int) -> int:
        covered = serves[:, chosen].any(axis=1) if chosen else np.zeros(len(serves), bool)
        return int((serves[:, p] & ~covered).sum())

    def new_kind(p: int) -> int:
        return int(kinds[p] not in {kinds[q] for q in chosen})

    for gain in (new_classes, new_kind):
        while True:
            fits = [
                p
                for p in range(load.size)
                if p not in chosen and load[p] > 0 and used + load[p] <= budget and gain(p)
            ]
            if not fits:
                break
            best = min(fits, key=lambda p: (float(load[p]), -gain(p), p))
            chosen.append(best)
            used += float(load[best])
    return chosen
