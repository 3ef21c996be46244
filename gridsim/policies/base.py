"""The policy protocol: where demand goes. A policy decides; it never advances time.

Two decisions over one Grid:

- ``choose``: for one request of class ``c`` from region ``r`` at time ``t``, a pool index (or
  -1 when no pool can take it), reading the request engine's live ``PoolView``;
- ``allocate``: for the flow engine, the shares of each region's and class's demand sent to each
  pool, as an array regions x classes x pools, from the tick's ``FlowState`` (demand, slots up,
  work carried over).

``make_policy`` builds a policy by the name the registry knows it by (``registry.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from gridsim.grid import Grid
from gridsim.policies.fill import water_fill
from gridsim.policies.registry import policy_factory

FloatArray = npt.NDArray[np.float64]
Route = tuple[int, float, float, float]
# A split on the cells it may use: flat (region, class, pool) indices (N,), in increasing
# order, and each demand's shares of them (U, N); every other cell is 0
Cells = tuple[npt.NDArray[np.intp], FloatArray]
INF = float("inf")
FILL_UTILISATION = 0.95  # fluid stand-in for "a slot is free / the SLO holds": fill to here


class PoolView(Protocol):
    """What the request engine shows a policy of its pools (read-only by convention): whether
    each is up, how many requests it holds, and when its earliest slot frees; never the
    engine's own queues."""

    alive: list[bool]
    in_system: list[int]  # requests admitted to the pool and not finished (queued or served)
    next_free: list[float]  # when pool p's earliest slot frees (inf while down)

    def wait_s(self, pool: int, t: float) -> float:
        """The wait a request reaching ``pool`` at time ``t`` would see: exact at an FCFS pool;
        at a pool serving several priorities (non-preemptive queues), 0 if a slot is free, else
        an estimate that ignores priority (queue length / slots x mean hold)."""
        ...


@runtime_checkable
class Policy(Protocol):
    name: str

    def choose(self, view: PoolView, cls: int, region: int, t: float) -> int: ...

    def allocate(self, state: FlowState) -> FloatArray: ...


class PolicyBase:
    """Shared set-up: the Grid, the SLO budgets and the mean service time per class and pool."""

    name = "base"
    # Whether ``allocate`` reads the tick's demand; if not, the flow engine reuses one split
    # for every tick in which nothing is queued and nothing changes.
    demand_dependent = False

    def __init__(self, grid: Grid, **params: object) -> None:
        if params:
            raise ValueError(f"policy {self.name!r} takes no parameters; got {sorted(params)}")
        self.grid = grid
        self.candidates = grid.candidates
        self.latency_s = grid.latency_s
        self.slots = [max(p.slots, 1) for p in grid.pools]
        classes = grid.scenario.demand.classes
        n_pools = len(grid.pools)
        self.ttft_budget_s = [c.slo.ttft if c.slo.ttft is not None else np.inf for c in classes]
        self.e2e_budget_s = [c.slo.e2e if c.slo.e2e is not None else np.inf for c in classes]
        # Mean time to the first token and through the pool per (class, pool), without
        # waiting: the policy's forecast of a request (from the grid's service table).
        total, first = grid.service.arrays(n_pools)
        self.prefill_s = first
        self.service_s = total
        self.routes = tuple(
            tuple(self.route_list(ci, cands, ri) for ri, cands in enumerate(per_region))
            for ci, per_region in enumerate(grid.candidates)
        )
        # For the flow engine: candidates as a mask and their nearest-first rank.
        n_r = len(grid.region_ids)
        self.candidate_mask = np.zeros((n_r, len(classes), n_pools), dtype=bool)
        self.rank = np.full((n_r, len(classes), n_pools), np.inf)
        for ci, per_region in enumerate(grid.candidates):
            for ri, cands in enumerate(per_region):
                for order, p in enumerate(cands):
                    self.candidate_mask[ri, ci, p] = True
                    self.rank[ri, ci, p] = order

    def route_list(self, cls: int, pools: tuple[int, ...], region: int) -> tuple[Route, ...]:
        """Per candidate: (pool, one-way network s, SLO slack s, forecast e2e without waiting).

        The slack is the longest wait at the pool that still meets both SLO budgets, so the
        per-request test is one comparison.
        """
        out = []
        for p in pools:
            net = float(self.latency_s[region, p])
            ttft_slack = self.ttft_budget_s[cls] - 2 * net - self.prefill_s[cls, p]
            e2e_base = 2 * net + self.service_s[cls, p]
            slack = min(ttft_slack, self.e2e_budget_s[cls] - e2e_base)
            out.append((p, net, float(slack), float(e2e_base)))
        return tuple(out)

    # --- per request ---------------------------------------------------------------------

    def choose(self, view: PoolView, cls: int, region: int, t: float) -> int:
        alive = view.alive
        for p in self.candidates[cls][region]:
            if alive[p]:
                return p
        return -1

    @staticmethod
    def first_within_slo(view: PoolView, routes: tuple[Route, ...], t: float) -> int:
        """The first route whose forecast wait fits its SLO slack; failing that (spill), the
        route with the least forecast end-to-end latency; -1 when every pool is down."""
        free = view.next_free
        for p, net, slack, _base in routes:
            if free[p] - t - net <= slack:
                return p
        # Spill: a second pass, only when nothing fits, keeps the usual path one loop.
        return PolicyBase.least_e2e(view, routes, t)

    @staticmethod
    def least_e2e(view: PoolView, routes: tuple[Route, ...], t: float) -> int:
        """The route with the least forecast end-to-end latency; -1 when every pool is down."""
        free = view.next_free
        best, best_s = -1, INF
        for p, net, _slack, base in routes:
            wait = free[p] - t - net
            e2e = base + wait if wait > 0 else base
            if e2e < best_s:
                best, best_s = p, e2e
        return best

    # --- per tick (flow engine) --------------------------------------------------------------

    def allocate(self, state: FlowState) -> FloatArray:
        """Shares regions x classes x pools; this default sends all to the nearest pool up."""
        return self.one_hot_first(self.candidate_mask & state.alive[None, None, :])

    def one_hot_first(self, mask: npt.NDArray[np.bool_]) -> FloatArray:
        """1 at the nearest pool allowed by ``mask`` (regions x classes x pools), else 0."""
        rank = np.where(mask, self.rank, np.inf)
        best = rank.argmin(axis=2)
        shares = np.zeros(mask.shape)
        np.put_along_axis(shares, best[:, :, None], 1.0, axis=2)
        return shares * mask.any(axis=2, keepdims=True)

    def allocate_many(self, state: FlowState, demand_rps: FloatArray) -> FloatArray:
        """``allocate`` for several demands at once, each with ``state``'s slots, queues and
        pools up: ``demand_rps`` (U, regions, classes) gives (U, regions, classes, pools). The
        flow engine asks this for the clock hours of a stretch in which nothing is queued.
        This default calls ``allocate`` once per demand; a policy may do it in one pass.

        A policy that sends each region's class to a few known cells may also define
        ``allocate_cells(state, demand_rps) -> Cells``: the same split on those cells only
        (the water-filling policies do; the engine then skips the dense array)."""
        if demand_rps.shape[0] == 0:
            return np.zeros((0, *demand_rps.shape[1:], state.slots.size))
        return np.stack([self.allocate(replace(state, demand_rps=d)) for d in demand_rps])

    def fill(  # a policy that calls this must set demand_dependent = True
        self,
        state: FlowState,
        order: tuple[tuple[tuple[int, ...], ...], ...],
        fits: npt.NDArray[np.bool_],
        limit: float = FILL_UTILISATION,
    ) -> FloatArray:
        """Water-filling: each class's demand from each region goes to its pools in ``order``
        (classes x regions -> pools) where ``fits`` (regions x classes x pools) allows, each
        pool up to ``limit`` of its slots (what is queued there counts as used); what does not
        fit is spread over the allowed pools up, in proportion to their slots.

        The demands are taken one by one, classes then regions (``fill_many``)."""
        out: FloatArray = self.fill_many(state, state.demand_rps[None], order, fits, limit)[0]
        return out

    def fill_many(
        self,
        state: FlowState,
        demand_rps: FloatArray,
        order: tuple[tuple[tuple[int, ...], ...], ...],
        fits: npt.NDArray[np.bool_],
        limit: float = FILL_UTILISATION,
    ) -> FloatArray:
        """``fill`` for each of the demands ``demand_rps`` (U, regions, classes), each from the
        same room: (U, regions, classes, pools). The demands are taken one by one, in order
        (``gridsim.policies.fill``, compiled)."""
        cells, shares_cells = self.fill_cells(state, demand_rps, order, fits, limit)
        shares = np.zeros((*demand_rps.shape, state.slots.size))
        # each (region, class, pool) cell once in a plan: its share is set, not added
        shares.reshape(demand_rps.shape[0], -1)[:, cells] = shares_cells
        return shares

    def fill_cells(
        self,
        state: FlowState,
        demand_rps: FloatArray,
        order: tuple[tuple[tuple[int, ...], ...], ...],
        fits: npt.NDArray[np.bool_],
        limit: float = FILL_UTILISATION,
    ) -> Cells:
        """``fill_many`` on the cells ``order`` names only: their flat (region, class, pool)
        indices (N,), in increasing order, and the shares (U, N). Every other cell is 0. On a
        national grid a class's candidates are a few pools (about a tenth of the cells, of
        which a tenth get any demand): the flow engine's steady stretches work on these."""
        plan = self._fill_plan(order)
        room = state.slots * limit - state.queued_work_rate
        compact = np.zeros((demand_rps.shape[0], *plan.cand.shape))
        usable = plan.valid & fits.reshape(-1)[plan.flat] & state.alive[plan.pool]
        water_fill(
            np.ascontiguousarray(demand_rps, dtype=np.float64),
            plan.pair_r,
            plan.pair_c,
            plan.cand,
            usable,
            np.ascontiguousarray(state.service_s, dtype=np.float64),
            np.ascontiguousarray(room, dtype=np.float64),
            np.ascontiguousarray(state.slots, dtype=np.float64),
            np.ascontiguousarray(state.alive, dtype=np.bool_),
            compact,
        )
        return plan.cells, compact.reshape(compact.shape[0], -1)[:, plan.cell_slots]

    def _fill_plan(self, order: tuple[tuple[tuple[int, ...], ...], ...]) -> _FillPlan:
        """``fill``'s fixed arrays for ``order`` (a policy's own, fixed tuple: kept by it)."""
        cache: dict[int, _FillPlan] = self.__dict__.setdefault("_fill_plans", {})
        plan = cache.get(id(order))
        if plan is None or plan.order is not order:
            plan = cache[id(order)] = _FillPlan(order, self.candidate_mask.shape)
        return plan

    def _empty(self) -> FloatArray:
        g = self.grid
        return np.zeros((len(g.region_ids), len(g.classes), len(g.pools)))


class _FillPlan:
    """``fill``'s fixed arrays for one ``order``: its demands (class-major, then region) and
    each one's pools in order (padded with the number of pools)."""

    def __init__(
        self, order: tuple[tuple[tuple[int, ...], ...], ...], shape: tuple[int, int, int]
    ) -> None:
        _n_r, n_c, n_p = shape
        self.order = order  # kept so that its id is not reused while the plan is cached
        pairs = [(c, r) for c, per_region in enumerate(order) for r in range(len(per_region))]
        self.pair_c = np.array([c for c, _ in pairs], dtype=np.intp)
        self.pair_r = np.array([r for _, r in pairs], dtype=np.intp)
        width = max((len(order[c][r]) for c, r in pairs), default=0)
        self.cand = np.full((len(pairs), max(width, 1)), n_p, dtype=np.intp)  # n_p: padding
        for i, (c, r) in enumerate(pairs):
            self.cand[i, : len(order[c][r])] = order[c][r]
        self.valid = self.cand < n_p
        self.pool = np.where(self.valid, self.cand, 0)  # the padding read as pool 0 (masked)
        self.flat = (self.pair_r * n_c + self.pair_c)[:, None] * n_p + self.pool
        # the cells the order names, in increasing order, and where each is in (demand, rank)
        slots_valid = np.flatnonzero(self.valid.reshape(-1))
        cells = self.flat.reshape(-1)[slots_valid]
        if np.unique(cells).size != cells.size:
            raise ValueError("a fill order names a pool twice for one region and class")
        by_cell = np.argsort(cells, kind="stable")
        self.cells = cells[by_cell]
        self.cell_slots = slots_valid[by_cell]


@dataclass(frozen=True)
class FlowState:
    """What the flow engine tells a policy each tick (arrays; read-only by convention)."""

    demand_rps: FloatArray  # (regions, classes) requests/s arriving this tick
    service_s: FloatArray  # (classes, pools) mean slot time of a request
    slots: FloatArray  # (pools,) slots up (0 while down)
    queued_work_rate: FloatArray  # (pools,) carried-over work, slot-seconds per second of tick
    alive: npt.NDArray[np.bool_]  # (pools,)


def make_policy(name: str, grid: Grid, params: dict[str, Any] | None = None) -> Policy:
    """Build the named policy over ``grid``; ValueError says what is wrong and how to fix it."""
    params = params or {}
    factory = policy_factory(name)
    try:
        policy = factory(grid, **params)
    except TypeError as exc:
        raise ValueError(f"policy {name!r} rejected its params {params}: {exc}") from None
    for method in ("choose", "allocate"):
        if not callable(getattr(policy, method, None)):
            raise ValueError(f"policy {name!r} has no {method}() method; see gridsim.policies")
    return cast(Policy, policy)
