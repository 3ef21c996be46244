"""The built-in policies. Candidates are always the class's reachable pools, nearest first."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gridsim.grid import Grid
from gridsim.policies.base import FloatArray, PolicyBase, PoolView


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

    def allocate(self, utilisation: FloatArray, alive: npt.NDArray[np.bool_]) -> FloatArray:
        """In proportion to each candidate's spare slots (all slots when none is spare)."""
        slots = np.asarray(self.slots, dtype=float)
        spare = np.where(alive, slots * np.clip(1.0 - utilisation, 0.0, None), 0.0)
        fallback = np.where(alive, slots, 0.0)
        shares = self._empty()
        for c, per_region in enumerate(self.candidates):
            for r, cands in enumerate(per_region):
                idx = list(cands)
                w = spare[idx] if spare[idx].sum() > 0 else fallback[idx]
                total = w.sum()
                if total > 0:
                    shares[r, c, idx] = w / total
        return shares


class _Ranked(PolicyBase):
    """Fill pools in the order of a per-pool score while they have a free slot."""

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
        free = view.free
        for p, net, _slack, _base in routes:
            if free[p][0] <= t + net:  # a slot is free when the request gets there
                return p
        return self.least_e2e(view, routes, t)

    def allocate(self, utilisation: FloatArray, alive: npt.NDArray[np.bool_]) -> FloatArray:
        """All to the best-ranked alive pool that is not full; else to the best-ranked alive."""
        shares = self._empty()
        for c, per_region in enumerate(self.ranked):
            for r, cands in enumerate(per_region):
                live = [p for p in cands if alive[p]]
                free = [p for p in live if utilisation[p] < 1.0]
                pick = free or live
                if pick:
                    shares[r, c, pick[0]] = 1.0
        return shares


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

    def choose(self, view: PoolView, cls: int, region: int, t: float) -> int:
        return self.first_within_slo(view, self.routes[cls][region], t)

    def allocate(self, utilisation: FloatArray, alive: npt.NDArray[np.bool_]) -> FloatArray:
        """Nearest pool under 90 % utilisation whose network round trip fits the TTFT budget."""
        shares = self._empty()
        for c, per_region in enumerate(self.candidates):
            budget = self.ttft_budget_s[c]
            for r, cands in enumerate(per_region):
                live = [p for p in cands if alive[p]]
                fits = [
                    p for p in live if utilisation[p] < 0.9 and 2 * self.latency_s[r, p] <= budget
                ]
                pick = fits or sorted(live, key=lambda p: (utilisation[p], p))
                if pick:
                    shares[r, c, pick[0]] = 1.0
        return shares


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
        self.west_routes = tuple(
            tuple(self.route_list(c, cands, r) for r, cands in enumerate(per_region))
            for c, per_region in enumerate(self.west)
        )

    def choose(self, view: PoolView, cls: int, region: int, t: float) -> int:
        if self.tolerant[cls]:
            free = view.free
            for p, net, slack, _base in self.west_routes[cls][region]:
                if free[p][0] - t - net <= slack:
                    return p
        return self.first_within_slo(view, self.routes[cls][region], t)

    def allocate(self, utilisation: FloatArray, alive: npt.NDArray[np.bool_]) -> FloatArray:
        shares = super().allocate(utilisation, alive)
        for c, per_region in enumerate(self.west):
            if not self.tolerant[c]:
                continue
            for r, cands in enumerate(per_region):
                free = [p for p in cands if alive[p] and utilisation[p] < 0.9]
                if free:
                    shares[r, c, :] = 0.0
                    shares[r, c, free[0]] = 1.0
        return shares


BUILTIN: dict[str, type[PolicyBase]] = {
    cls.name: cls for cls in (Nearest, LeastLoaded, Cheapest, Greenest, LatencySlo, EastWest)
}
