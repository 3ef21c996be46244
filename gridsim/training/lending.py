"""Which cards each co-located LLM pool can lend to training, hour by hour.

The co-scheduling policy decides, for every hour of the horizon and every pool that lends,
how many of the pool's replicas training may take (``Lending.replicas``). Training is
preemptible and inference comes first, so this is decided from inference's side. The
policies are classes (``gridsim.training.policies``, named in ``training.policy``; a user
policy is ``module:Class``). The built-ins:

- **inference_first** (and carbon_aware, price_aware, which differ in when jobs run, not in
  what is free): a pool keeps the fewest replicas at which its hour's peak offered load x
  (1 + ``headroom``) still meets its SLO, the one criterion of the capacity KPIs
  (``gridsim.engine.capacity.slo_load``: as an M/M/c queue with the mean hold of its work,
  95 % of requests start within the strictest TTFT SLO of its classes); the rest can train.
  The offered load is the pool's busy slot-seconds per second in an inference-only flow run
  of the same scenario (``gridsim.run.training_plan``): the operator's forecast of the hour, read
  here as perfect. A pool loaded beyond its slots at the SLO lends nothing.
- **day_night**: ``night_share`` of each pool's replicas trains from ``night_start_hour`` to
  ``night_end_hour`` (China time) whatever inference needs; inference has the rest.

Cards are lent in whole replicas of the pool, and only while the pool is up all the hour (the
inference-only run's capacity gives both: build-outs, retirements and outages included). A
pool keeps at least one replica serving, so its model stays reachable for routing.
Disaggregated pools and job slots lend nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridsim.engine.capacity import slo_load, start_budgets_and_holds
from gridsim.grid import Grid
from gridsim.scenario.training_spec import Training

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
HOUR_S = 3600.0


@dataclass(frozen=True)
class LendingPool:
    """A co-located LLM pool that can lend whole replicas to training."""

    index: int  # its station (and entry) index in the grid
    name: str
    node_id: str
    accelerator: str
    cards_per_replica: int
    slots_per_replica: int
    tdp_w: float
    pue: float


@dataclass(frozen=True)
class Lending:
    """Replicas each lending pool has up (``installed``) and may lend (``replicas``) in each
    hour of the horizon: arrays (hours, pools)."""

    pools: tuple[LendingPool, ...]
    installed: IntArray
    replicas: IntArray

    @property
    def hours(self) -> int:
        return int(self.replicas.shape[0])

    def cards(self) -> IntArray:
        """(hours, pools) cards that may train."""
        per = np.array([p.cards_per_replica for p in self.pools], dtype=np.int64)
        out: IntArray = self.replicas * per[None, :]
        return out


def lending_pools(grid: Grid) -> tuple[LendingPool, ...]:
    """The grid's co-located LLM pools with at least one card per replica."""
    out = []
    for p in grid.pools:
        sm = p.serving
        if p.kind != "llm" or p.mode != "colocated" or not p.is_entry or sm is None:
            continue
        if len(grid.stations_of(p.index)) != 1 or p.slots_per_replica <= 0:
            continue
        out.append(
            LendingPool(
                index=p.index,
                name=p.name,
                node_id=p.node_id,
                accelerator=str(p.accelerator),
                cards_per_replica=int(sm.accelerators_per_replica),
                slots_per_replica=int(p.slots_per_replica),
                tdp_w=float(sm.accelerator.tdp_w),
                pue=float(p.pue),
            )
        )
    return tuple(out)


def hours_of(grid: Grid) -> int:
    return math.ceil(grid.scenario.horizon.duration / HOUR_S - 1e-9)


def hourly_pool_series(
    timeseries: pd.DataFrame, pools: tuple[LendingPool, ...], hours: int
) -> tuple[FloatArray, FloatArray]:
    """(hours, pools) peak offered load (busy slots: busy slot-seconds per second, the largest
    of the intervals that overlap the hour) and the fewest slots up in any of them, from a
    run's time series (an interval longer than an hour counts in every hour it spans, at its
    mean)."""
    names = [p.name for p in pools]
    ts = timeseries[
        (timeseries["entity_kind"] == "pool")
        & timeseries["entity_id"].isin(names)
        & timeseries["metric"].isin(["busy_slot_s", "capacity_slot_s"])
    ]
    wide = ts.pivot_table(
        index=["time_s", "entity_id"], columns="metric", values="value", aggfunc="sum"
    ).reset_index()
    if wide.empty:  # no series of these pools: nothing known busy, nothing known up
        return np.zeros((hours, len(pools))), np.zeros((hours, len(pools)))
    times = np.sort(wide["time_s"].unique())
    ends = np.append(times[1:], np.inf)
    ends[-1] = min(ends[-1], times[-1] + (times[-1] - times[-2] if times.size > 1 else HOUR_S))
    end_of = dict(zip(times, ends, strict=True))
    t0 = wide["time_s"].to_numpy(dtype=float)
    t1 = wide["time_s"].map(end_of).to_numpy(dtype=float)
    width = t1 - t0
    # each interval counts in every hour it overlaps (intervals of an hour or more span hours)
    first = np.minimum((t0 // HOUR_S).astype(np.intp), hours - 1)
    last = np.minimum(np.ceil(t1 / HOUR_S - 1e-9).astype(np.intp), hours)
    n = np.maximum(last - first, 1)
    rows = np.repeat(np.arange(len(wide)), n)
    h = first[rows] + (np.arange(rows.size) - np.repeat(np.cumsum(n) - n, n))
    col = wide["entity_id"].map({n: i for i, n in enumerate(names)}).to_numpy(dtype=np.intp)
    busy = np.zeros((hours, len(pools)))
    slots_up = np.full((hours, len(pools)), np.inf)
    busy_rate = wide["busy_slot_s"].fillna(0.0).to_numpy() / width
    up_rate = wide["capacity_slot_s"].fillna(0.0).to_numpy() / width
    np.maximum.at(busy, (h, col[rows]), busy_rate[rows])
    np.minimum.at(slots_up, (h, col[rows]), up_rate[rows])
    slots_up[~np.isfinite(slots_up)] = 0.0
    return busy, slots_up


def budget_over_hold(grid: Grid, pools: tuple[LendingPool, ...]) -> FloatArray:
    """Per lending pool, its start budget over the mean hold of its work, as the capacity KPIs
    read a pool (``gridsim.engine.capacity.start_budgets_and_holds``)."""
    budget_s, hold_s = start_budgets_and_holds(grid, grid.service.station_holds(len(grid.pools)))
    idx = np.array([p.index for p in pools], dtype=np.intp)
    out: FloatArray = budget_s[idx] / hold_s[idx]
    return out


def replicas_needed(
    load: FloatArray, installed: IntArray, slots_per_replica: IntArray, x: FloatArray
) -> IntArray:
    """(hours, pools) fewest replicas r <= installed with slo_load(r x slots per replica, x) >=
    load (all installed where even they fall short): bisection on r, every cell at once."""
    hi = installed.astype(np.int64).copy()
    spr = np.broadcast_to(slots_per_replica[None, :], load.shape)
    xs = np.broadcast_to(x[None, :], load.shape)
    enough_at = slo_load((hi * spr).astype(float), xs) >= load
    # where enough_at: r = hi meets the load and every r < lo does not (r = 0 serves nothing)
    zero = load <= 0
    lo = np.where(zero, 0, 1)
    while True:
        open_ = enough_at & (lo < hi)
        if not open_.any():
            break
        mid = (lo + hi) // 2
        ok = slo_load((mid * spr).astype(float), xs) >= load
        hi = np.where(open_ & ok, mid, hi)
        lo = np.where(open_ & ~ok, mid + 1, lo)
    out: IntArray = np.where(zero, 0, np.where(enough_at, hi, installed)).astype(np.int64)
    return out


def lending(
    grid: Grid,
    training: Training,
    busy_slots: FloatArray | None,
    slots_up: FloatArray | None,
) -> tuple[Lending, str | None]:
    """The replicas each lending pool may lend each hour under ``training.policy``, and the
    policy's ``defers_by`` (``gridsim.training.policies``).

    ``busy_slots`` and ``slots_up`` are (hours, pools) from an inference-only run
    (``hourly_pool_series``); without them the pools' slots at the start are up all the
    horizon and nothing is busy.
    """
    from gridsim.policies.registry import coscheduler_factory

    pools = lending_pools(grid)
    hours = hours_of(grid)
    spr = np.array([p.slots_per_replica for p in pools], dtype=np.int64)
    if slots_up is None:
        up = np.array([grid.pools[p.index].slots for p in pools], dtype=float)
        slots_up = np.broadcast_to(up[None, :], (hours, len(pools))).copy()
    if busy_slots is None:
        busy_slots = np.zeros((hours, len(pools)))
    installed = np.floor(slots_up / np.maximum(spr, 1)[None, :] + 1e-9).astype(np.int64)
    policy = coscheduler_factory(training.policy)(training, **training.params)
    lend = np.asarray(policy.lend(installed, busy_slots, spr, budget_over_hold(grid, pools)))
    if lend.shape != installed.shape:
        raise ValueError(
            f"co-scheduling policy {training.policy!r} lent an array of shape {lend.shape}; "
            f"it must be (hours, lending pools) = {installed.shape}"
        )
    # a pool keeps at least one replica serving: its model stays up for the policy's routing
    lend = np.clip(lend, 0, np.maximum(installed - 1, 0)).astype(np.int64)
    lent = Lending(pools=pools, installed=installed, replicas=lend)
    return lent, policy.defers_by
