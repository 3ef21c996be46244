"""The built-in policies. Candidates are always the class's reachable pools, nearest first."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import numpy.typing as npt

from gridsim.grid import Grid
from gridsim.policies.base import Cells, FloatArray, FlowState, PolicyBase, PoolView


class Nearest(PolicyBase):
    """The nearest alive pool, whatever its queue."""

    name = "nearest"


class LeastLoaded(PolicyBase):
    """The alive pool with the fewest requests per slot (ties: the nearer)."""

    name = "least_loaded"

    def choose(self, view: PoolView, cls: int, region: int, t: float) -> int:
        best, best_load = -1, np.inf
        in_system, alive, slots = view.in_system, view.alive, self.slots
        for p in self.candidates[cls][region]:
            if alive[p]:
                load = in_system[p] / slots[p]
                if load < best_load:
                    best, best_load = p, load
        return best

    def allocate(self, state: FlowState) -> FloatArray:
        """In proportion to each candidate's capacity for the class (slots, less the work
        already queued there, over the class's mean slot time): the split that evens
        utilisation out, as joining the least-loaded pool does per request. (Pools of one
        model on one accelerator: in proportion to their slots.)"""
        free = np.where(state.alive, state.slots, 0.0) / (
            1.0 + state.queued_work_rate / np.maximum(state.slots, 1e-12)
        )
        # slot times relative to the class's longest, so that pools of equal slot time split
        # exactly as their slots do
        svc = state.service_s
        relative = svc / svc.max(axis=1, keepdims=True)
        weights = self.candidate_mask * (free[None, :] / relative)[None, :, :]
        total = weights.sum(axis=2, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, weights / total, 0.0)


class _Ranked(PolicyBase):
    """Fill pools in the order of a per-pool score while they have a free slot."""

    demand_dependent = True

    def score(self, grid: Grid) -> list[float]:
        raise NotImplementedError

    def __init__(self, grid: Grid, **params: object) -> None:
        super().__init__(grid, **params)
        scores = self.score(grid)
        self.ranked = tuple(
            tuple(tuple(sorted(cands, key=lambda p: (scores[p], p))) for cands in per_region)
            for per_region in grid.candidates
        )
        self.ranked_routes = tuple(
            tuple(self.route_list(c, cands, r) for r, cands in enumerate(per_region))
            for c, per_region in enumerate(self.ranked)
        )

    def choose(self, view: PoolView, cls: int, region: int, t: float) -> int:
        routes = self.ranked_routes[cls][region]
        free = view.next_free
        for p, net, _slack, _base in routes:
            if free[p] <= t + net:  # a slot is free when the request gets there
                return p
        return self.least_e2e(view, routes, t)

    def allocate(self, state: FlowState) -> FloatArray:
        """Fill pools in score order while they have free slots; spill the rest."""
        return self.fill(state, self.ranked, self.candidate_mask)

    def allocate_many(self, state: FlowState, demand_rps: FloatArray) -> FloatArray:
        return self.fill_many(state, demand_rps, self.ranked, self.candidate_mask)

    def allocate_cells(self, state: FlowState, demand_rps: FloatArray) -> Cells:
        return self.fill_cells(state, demand_rps, self.ranked, self.candidate_mask)


class Cheapest(_Ranked):
    """The pool with the lowest electricity cost (price x PUE) that has a free slot."""

    name = "cheapest"

    def score(self, grid: Grid) -> list[float]:
        return [p.price_cny_per_kwh * p.pue for p in grid.pools]


class Greenest(_Ranked):
    """The pool with the lowest carbon per IT kWh (grid intensity x PUE) with a free slot."""

    name = "greenest"

    def score(self, grid: Grid) -> list[float]:
        return [p.carbon_g_per_kwh * p.pue for p in grid.pools]


class LatencySlo(PolicyBase):
    """The nearest pool whose forecast TTFT and end-to-end latency meet the class's SLO;
    when none does, the pool with the least forecast end-to-end latency (spill)."""

    name = "latency_slo"
    demand_dependent = True

    def choose(self, view: PoolView, cls: int, region: int, t: float) -> int:
        return self.first_within_slo(view, self.routes[cls][region], t)

    def allocate(self, state: FlowState) -> FloatArray:
        """Fill the nearest pools whose network round trip fits the class's TTFT budget, each
        up to the utilisation where queues stay short; spill the rest."""
        return self.fill(state, self.candidates, self.network_fits)

    def allocate_many(self, state: FlowState, demand_rps: FloatArray) -> FloatArray:
        return self.fill_many(state, demand_rps, self.candidates, self.network_fits)

    def allocate_cells(self, state: FlowState, demand_rps: FloatArray) -> Cells:
        return self.fill_cells(state, demand_rps, self.candidates, self.network_fits)

    @cached_property
    def network_fits(self) -> npt.NDArray[np.bool_]:
        budget = np.asarray(self.ttft_budget_s)[None, :, None]
        return self.candidate_mask & (2 * self.latency_s[:, None, :] <= budget)


class EastWest(LatencySlo):
    """Latency-tolerant classes (latency_sensitivity: low) go to western-hub pools unless that
    breaks their SLO; everything else is placed as by latency_slo."""

    name = "east_west"

    def __init__(self, grid: Grid, **params: object) -> None:
        super().__init__(grid, **params)
        west = {p.index for p in grid.pools if p.hub_role == "west"}
        self.tolerant = [c.latency_sensitivity == "low" for c in grid.scenario.demand.classes]
        self.west = tuple(
            tuple(tuple(p for p in cands if p in west) for cands in per_region)
            for per_region in grid.candidates
        )
        self.west_first = tuple(
            tuple(
                (*self.west[c][r], *(p for p in cands if p not in self.west[c][r]))
                if self.tolerant[c]
                else cands
                for r, cands in enumerate(per_region)
            )
            for c, per_region in enumerate(grid.candidates)
        )
        self.west_routes = tuple(
            tuple(self.route_list(c, cands, r) for r, cands in enumerate(per_region))
            for c, per_region in enumerate(self.west)
        )

    def choose(self, view: PoolView, cls: int, region: int, t: float) -> int:
        if self.tolerant[cls]:
            free = view.next_free
            for p, net, slack, _base in self.west_routes[cls][region]:
                if free[p] - t - net <= slack:
                    return p
        return self.first_within_slo(view, self.routes[cls][region], t)

    def allocate(self, state: FlowState) -> FloatArray:
        """Tolerant classes fill western pools first (within the network budget), then the
        rest as latency_slo would."""
        return self.fill(state, self.west_first, self.network_fits)

    def allocate_many(self, state: FlowState, demand_rps: FloatArray) -> FloatArray:
        return self.fill_many(state, demand_rps, self.west_first, self.network_fits)

    def allocate_cells(self, state: FlowState, demand_rps: FloatArray) -> Cells:
        return self.fill_cells(state, demand_rps, self.west_first, self.network_fits)
