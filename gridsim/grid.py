"""The Grid: a validated scenario made ready for the engines.

It joins the topology (latency matrix), the pools flattened across nodes with their serving
performance, which pools may serve which class, and the candidate pools for each class and
region, nearest first, and the scenario's demand model, built once for both the class means
here and the engine. Both engines and every policy read the same Grid; nothing here changes
during a run (the engines keep their own mutable state). The demand model's one piece of state,
where the request engine's chunked arrivals have got to, starts afresh for any call that does
not continue it, so runs over one Grid are independent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridsim.catalog import Catalog
from gridsim.demand import DemandModel, LengthSampler
from gridsim.scenario import Problem, Scenario, ScenarioError
from gridsim.scenario.schema import DemandClass, Node, Pool, pool_serves
from gridsim.serving import ServingModel, loaded_replica, serving_model
from gridsim.topology import Topology, build_topology, check_reachability, vertex

# Used only where neither the node, its site nor its province gives a figure.
DEFAULT_PRICE_CNY_PER_KWH = 0.45  # ASSUMPTION: between wholesale (~0.25-0.40) and C&I tariffs
DEFAULT_CARBON_G_PER_KWH = 536.6  # national grid factor 2022, MEE/NBS (data/FACTS.md section 3)


@dataclass(frozen=True)
class PoolSpec:
    """One pool of one node, with what the engines need per request.

    A replica of an LLM pool holds ``slots / replicas`` sequences, each a server of the queue,
    sized for the pool's workload (``serving.loaded_replica``): a request holds its slot for
    ``p x prefill_s_per_prompt_token + o x tpot_s`` (effective TPOT, other sequences' prefill
    stalls included); its first token comes ``p x prefill_s_per_prompt_token`` after it starts.
    """

    index: int
    node_index: int
    node_id: str
    pool_id: str
    kind: str  # "llm" | "job"
    model: str | None
    accelerator: str | None
    slots: int
    replicas: int
    prefill_s_per_prompt_token: float
    tpot_s: float
    simulated_replicas: float  # replicas x (1 - reserved_share) x sample_fraction
    share: float  # (1 - reserved_share) x sample_fraction: simulated part of the pool
    slots_per_replica: int  # LLM pools: sequences per replica for the pool's workload
    price_cny_per_kwh: float
    carbon_g_per_kwh: float
    pue: float
    hub_role: str
    serving: ServingModel | None

    @property
    def name(self) -> str:
        return f"{self.node_id}/{self.pool_id}"


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
        return next(p.index for p in self.pools if p.node_id == node_id and p.pool_id == pool_id)

    def slots_for(self, pool: int, replicas: int | None, slots: int | None) -> int:
        """Simulated slots that ``replicas`` (LLM) or ``slots`` (jobs) of a pool amount to."""
        spec = self.pools[pool]
        raw = (replicas or 0) * spec.slots_per_replica if spec.kind == "llm" else (slots or 0)
        return round(raw * spec.share)

    def pools_table(self) -> pd.DataFrame:
        """One row per pool with what economics and reports need (units in column names).

        ``accelerators`` counts the cards behind the simulated slots (after sample_fraction and
        reserved_share), so energy from this table matches the simulated load.
        """
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
                    "node": p.node_id,
                    "node_kind": node.kind,
                    "kind": p.kind,
                    "model": p.model,
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
                }
            )
        return pd.DataFrame(rows)


def build_grid(scenario: Scenario) -> Grid:
    """Everything the engines need, or a ScenarioError naming what makes the grid unusable."""
    catalog = scenario.resolved_catalog
    demand = DemandModel(scenario, catalog)
    means = _class_means(scenario, demand)
    problems = check_reachability(scenario, catalog)
    if problems:
        raise ScenarioError(problems)
    topology = build_topology(scenario, catalog)
    pools: list[PoolSpec] = []
    declared: list[Pool] = []  # the scenario's pool behind each PoolSpec
    node_pos = {n: i for i, n in enumerate(topology.node_ids)}
    for ni, node in enumerate(scenario.nodes):
        for pool in node.pools:
            spec = _pool(
                node, ni, node_pos[node.id], pool, len(pools), scenario, catalog, means, problems
            )
            if spec is not None:
                pools.append(spec)
                declared.append(pool)
    if problems:
        raise ScenarioError(problems)
    latency = topology.latency_s[:, [p.node_index for p in pools]]
    classes = scenario.demand.classes
    serves = np.array([[pool_serves(pl, c) for pl in declared] for c in classes], dtype=bool)
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
    return Grid(
        scenario, catalog, topology, tuple(pools), latency, serves, candidates, *means, demand
    )


def with_topology(grid: Grid, topology: Topology) -> Grid:
    """The same grid over another topology (a link cut or repaired): new routes, nothing else."""
    latency = topology.latency_s[:, [p.node_index for p in grid.pools]]
    candidates = _candidates(grid.serves, grid.pools, latency)
    return replace(grid, topology=topology, latency_s=latency, candidates=candidates)


def _candidates(
    serves: npt.NDArray[np.bool_], pools: tuple[PoolSpec, ...], latency: npt.NDArray[np.float64]
) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """For each class and region, the reachable pools with capacity, nearest first."""
    out = []
    for ci in range(serves.shape[0]):
        per_region = []
        for ri in range(latency.shape[0]):
            ok = [
                p
                for p in range(len(pools))
                if serves[ci, p] and np.isfinite(latency[ri, p]) and pools[p].slots > 0
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
) -> PoolSpec | None:
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
    serving = None
    loaded = None
    prefill = tpot = 0.0
    if pool.model is not None and pool.accelerator is not None:
        try:
            serving = serving_model(
                catalog.accelerators[pool.accelerator], catalog.models[pool.model]
            )
        except ValueError as exc:
            pi = node.pools.index(pool)
            problems.append(Problem(("nodes", ni, "pools", pi), str(exc)))
            return None
        mean_in, mean_out = _workload(pool, scenario, means)
        loaded = loaded_replica(serving, mean_in, mean_out)
        raw_slots = (pool.replicas or 0) * loaded.slots
        prefill = loaded.prefill_s_per_token
        tpot = loaded.tpot_s
    else:
        raw_slots = pool.slots or 0
    # Sampling a share of national demand samples the same share of capacity.
    slots = round(raw_slots * share)
    if raw_slots > 0 and share > 0:
        slots = max(slots, 1)
    return PoolSpec(
        index=index,
        node_index=node_index,
        node_id=node.id,
        pool_id=pool.id,
        kind="llm" if pool.is_llm else "job",
        model=pool.model,
        accelerator=pool.accelerator,
        slots=slots,
        replicas=pool.replicas or 0,
        prefill_s_per_prompt_token=prefill,
        tpot_s=tpot,
        simulated_replicas=(pool.replicas or 0) * share,
        share=share,
        slots_per_replica=loaded.slots if loaded is not None else 1,
        price_cny_per_kwh=price,
        carbon_g_per_kwh=carbon,
        pue=node.pue,
        hub_role=site.hub_role if site else "",
        serving=serving,
    )


ClassMeans = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]


def _class_means(scenario: Scenario, demand: DemandModel) -> ClassMeans:
    """Mean input tokens, output tokens (LLM classes; from traces where replayed) and service
    time (job classes) per class, as the demand model draws them."""
    jobs = tuple(
        float(LengthSampler(c.service, tokens=False).mean) if c.service is not None else 0.0
        for c in scenario.demand.classes
    )
    return tuple(demand.mean_input_tokens.tolist()), tuple(demand.mean_output_tokens.tolist()), jobs


def _workload(pool: Pool, scenario: Scenario, means: ClassMeans) -> tuple[float, float]:
    """Mean prompt and output tokens of the LLM classes this pool may serve, by token share
    (equal weights when no class has a share)."""
    idx = [
        i for i, c in enumerate(scenario.demand.classes) if c.kind == "llm" and pool_serves(pool, c)
    ]
    if not idx:
        return 0.0, 0.0
    shares = [scenario.demand.classes[i].share for i in idx]
    weights = shares if any(shares) else None
    ins = [means[0][i] for i in idx]
    outs = [means[1][i] for i in idx]
    return float(np.average(ins, weights=weights)), float(np.average(outs, weights=weights))


def _first(*values: float | None) -> float:
    return next(float(v) for v in values if v is not None)
