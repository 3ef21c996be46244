"""A run's training plan: what each pool lends, hour by hour, the jobs' schedule on it, the
engine actions that take the lent slots out of inference, and the tidy series of the cards
trained.

``gridsim.run`` builds it before the engine starts: the lending of inference_first (and the
deferral policies) needs the hour's inference load, which it reads from an inference-only
flow run of the same scenario (the operator's forecast, read as perfect); both fidelities then
simulate inference on what the plan leaves it, so the same scenario trains the same
card-hours at request and at flow fidelity.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridsim.engine.events import Action, Changeable
from gridsim.grid import Grid
from gridsim.metrics.recorder import series_frame
from gridsim.power.sites import NodePower, node_power
from gridsim.training.jobs import Schedule, schedule_jobs
from gridsim.training.lending import (
    HOUR_S,
    Lending,
    hourly_pool_series,
    hours_of,
    lending,
    lending_pools,
)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainingPlan:
    lending: Lending
    schedule: Schedule
    power: NodePower

    def actions(self, engine: Changeable) -> list[Action]:
        """Engine actions: at each instant the lending changes, each pool's slots shrink by
        the replicas lent (and grow by those handed back)."""
        by_instant: dict[float, list[tuple[int, int]]] = defaultdict(list)
        pools = self.lending.pools
        for t, col, replicas in self.schedule.changes:
            if replicas:
                by_instant[t].append((pools[col].index, -replicas * pools[col].slots_per_replica))
        add_slots = engine.add_slots

        def act(changes: list[tuple[int, int]]) -> Callable[[float], None]:
            def apply(t: float) -> None:
                for p, n in changes:
                    add_slots(p, n, t)

            return apply

        return [(t, act(ch)) for t, ch in sorted(by_instant.items())]

    def card_seconds(self, starts_s: FloatArray, ends_s: FloatArray) -> FloatArray:
        """(intervals, pools) card-seconds trained in each [start, end): the integral of the
        cards lent, a step function of the schedule's changes (lent replicas are all busy)."""
        changes = self.schedule.changes
        at = np.array([c[0] for c in changes], dtype=float)
        cols = np.array([c[1] for c in changes], dtype=np.intp)
        delta = np.array([c[2] for c in changes], dtype=float)
        out = np.zeros((len(starts_s), len(self.lending.pools)))
        for j, pool in enumerate(self.lending.pools):
            mine = cols == j
            t, level = at[mine], np.cumsum(delta[mine])  # replicas lent from each change on
            if not t.size:
                continue
            area = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(t))])

            def integral(
                x: FloatArray, t: FloatArray = t, level: FloatArray = level, area: FloatArray = area
            ) -> FloatArray:
                """The step function's integral from 0 to x: linear between changes."""
                k = np.searchsorted(t, x, side="right") - 1
                kk = np.maximum(k, 0)
                inside: FloatArray = np.where(k >= 0, area[kk] + level[kk] * (x - t[kk]), 0.0)
                return inside

            out[:, j] = (integral(ends_s) - integral(starts_s)) * pool.cards_per_replica
        return out

    def series(self, interval_s: float, horizon_s: float) -> pd.DataFrame:
        """Tidy rows: per lending pool and interval of the run's series, ``training_card_s``
        (card-seconds trained) and ``lendable_cards`` (cards the policy leaves free for training
        at the interval's start)."""
        starts = np.arange(0.0, horizon_s, interval_s)
        ends = np.minimum(starts + interval_s, horizon_s)
        card_s = self.card_seconds(starts, ends)
        # the cards the policy leaves free, at each interval's start (hourly)
        hour = np.minimum((starts // HOUR_S).astype(np.intp), self.lending.hours - 1)
        free = self.lending.cards()[hour]
        frames = []
        for j, pool in enumerate(self.lending.pools):
            if free[:, j].any():
                frames.append(series_frame(starts, "pool", pool.name, "lendable_cards", free[:, j]))
            if card_s[:, j].any():
                frames.append(
                    series_frame(starts, "pool", pool.name, "training_card_s", card_s[:, j])
                )
        if not frames:
            return series_frame([], "pool", [], "training_card_s", [])
        return pd.concat(frames, ignore_index=True)


def node_hourly(grid: Grid) -> NodePower:
    """The grid's nodes' hourly carbon, price and green share (``gridsim.power.sites``)."""
    carbon: dict[str, float] = {}
    price: dict[str, float] = {}
    for p in grid.pools:
        carbon.setdefault(p.node_id, p.carbon_g_per_kwh)
        price.setdefault(p.node_id, p.price_cny_per_kwh)
    nodes = tuple(n for n in grid.node_ids if n in carbon)
    return node_power(grid.scenario, nodes, carbon, price, hours_of(grid))


def green_hours(grid: Grid, power: NodePower) -> npt.NDArray[np.bool_]:
    """(hours, nodes) whether a site's green share reaches ``power.green_target_share``: its
    own renewables' output over its full draw (every card at TDP x PUE: the least share they
    cover), then the grid's green share of the rest."""
    target = grid.scenario.power.green_target_share if grid.scenario.power else None
    if target is None:
        raise ValueError("green hours need power.green_target_share")
    draw_kw = np.zeros(len(power.node_ids))
    for p in grid.pools:
        if p.serving is not None and p.node_id in power.node_ids:
            cards = p.simulated_replicas * p.serving.accelerators_per_replica
            draw_kw[power.column(p.node_id)] += cards * p.serving.accelerator.tdp_w * p.pue / 1e3
    with np.errstate(invalid="ignore", divide="ignore"):
        own = np.where(draw_kw > 0, np.minimum(power.onsite_kw / draw_kw, 1.0), 0.0)
    share = own + (1.0 - own) * power.grid_green_share
    out: npt.NDArray[np.bool_] = share >= target - 1e-12
    return out


def plan_training(grid: Grid, inference_only: pd.DataFrame | None) -> TrainingPlan:
    """The plan of ``grid.scenario.training`` given an inference-only run's time series."""
    training = grid.scenario.training
    if training is None:
        raise ValueError("the scenario has no training: block")
    hours = hours_of(grid)
    busy = up = None
    if inference_only is not None:
        busy, up = hourly_pool_series(inference_only, lending_pools(grid), hours)
    pools_lend, defers_by = lending(grid, training, busy, up)
    power = node_hourly(grid)
    allowed = green_hours(grid, power) if training.green_hours_only else None
    schedule = schedule_jobs(
        training,
        pools_lend,
        grid.scenario.horizon.duration,
        power.node_ids,
        power.carbon_g_per_kwh,
        power.price_cny_per_kwh,
        grid.scenario.network.bandwidth_gbps,
        defers_by,
        allowed,
    )
    return TrainingPlan(pools_lend, schedule, power)


__all__ = ["HOUR_S", "TrainingPlan", "node_hourly", "plan_training"]
