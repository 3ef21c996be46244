"""Scheduled events as actions at instants, shared by both engines.

An event's ``at`` is a date (midnight, China time, like the horizon start) or a time after the
start. Each engine implements the same small set of changes: ``fail_pool``, ``restore_pool``,
``set_topology``, ``add_slots``, ``set_policy``, ``set_demand_factor`` and ``set_price``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from gridsim.grid import Grid
from gridsim.scenario.schema import (
    BuildOut,
    DemandShock,
    LinkOutage,
    NodeOutage,
    PolicySwitch,
    PriceChange,
    Retirement,
    Scenario,
)
from gridsim.topology import Topology

Action = tuple[float, Callable[[float], None]]


class Changeable(Protocol):
    grid: Grid

    def fail_pool(self, p: int, t: float) -> None: ...
    def restore_pool(self, p: int, t: float) -> None: ...
    def set_topology(self, topology: Topology) -> None: ...
    def add_slots(self, p: int, n: int, t: float) -> None: ...
    def set_policy(self, name: str, params: dict[str, Any]) -> None: ...
    def set_demand_factor(self, factor: npt.NDArray[np.float64]) -> None: ...
    def set_price(self, node_id: str, price_cny_per_kwh: float, t: float) -> None: ...


def seconds(scenario: Scenario, when: dt.date | float) -> float:
    """An event time as seconds after the horizon start."""
    if isinstance(when, dt.date):
        return (when - scenario.horizon.start).days * 86400.0
    return float(when)


def schedule(engine: Changeable) -> list[Action]:
    """The scenario's events as (time, action) pairs, in the order the YAML lists them.

    Events before the start or after the end of the horizon are left out.
    """
    grid = engine.grid
    sc = grid.scenario
    horizon = sc.horizon.duration
    actions: list[Action] = []
    cut: set[tuple[str, str]] = set()
    shocks: list[tuple[float, float, npt.NDArray[np.float64]]] = []
    for event in sc.events:
        at = seconds(sc, event.at)
        duration: float | None = getattr(event, "duration", None)
        end = at + duration if duration is not None else None
        if isinstance(event, NodeOutage):
            pools = [p.index for p in grid.pools if p.node_id == event.node]
            actions.append((at, _each(engine.fail_pool, pools)))
            if end is not None:
                actions.append((end, _each(engine.restore_pool, pools)))
        elif isinstance(event, LinkOutage):
            link = (event.a, event.b)
            actions.append((at, _relink(engine, cut, link, down=True)))
            if end is not None:
                actions.append((end, _relink(engine, cut, link, down=False)))
        elif isinstance(event, BuildOut | Retirement):
            if isinstance(event, BuildOut):
                at += event.lead_time
            sign = 1 if isinstance(event, BuildOut) else -1
            # every station of the pool grows (or shrinks) with it: prefill with decode
            for p in grid.stations_of(grid.pool_index(event.node, event.pool)):
                n = sign * grid.slots_for(p, event.replicas, event.slots)
                actions.append((at, partial(_add_slots, engine, p, n)))
        elif isinstance(event, PolicySwitch):
            name, params = event.policy, dict(event.params)
            actions.append((at, partial(_set_policy, engine, name, params)))
        elif isinstance(event, PriceChange) and event.node is not None:
            # a plan's price change acts through its classes' weight schedules (gridsim.market)
            node, price = event.node, event.price_cny_per_kwh
            assert price is not None  # the schema pairs node with price_cny_per_kwh
            actions.append((at, partial(_set_price, engine, node, price)))
        elif isinstance(event, DemandShock):
            shocks.append((at, end if end is not None else np.inf, shock_factor(sc, event)))
    # Demand factors multiply where shocks overlap: recompute at every shock boundary.
    for t in sorted({b for a, e, _ in shocks for b in (a, e) if np.isfinite(b)}):
        factor = np.ones((len(sc.regions), len(sc.demand.classes)))
        for a, e, f in shocks:
            if a <= t < e:
                factor *= f
        actions.append((t, partial(_set_factor, engine, factor)))
    return [(t, act) for t, act in actions if 0 <= t < horizon]


def _add_slots(engine: Changeable, p: int, n: int, t: float) -> None:
    engine.add_slots(p, n, t)


def _set_policy(engine: Changeable, name: str, params: dict[str, Any], t: float) -> None:
    engine.set_policy(name, params)


def _set_price(engine: Changeable, node: str, price: float, t: float) -> None:
    engine.set_price(node, price, t)


def _set_factor(engine: Changeable, factor: npt.NDArray[np.float64], t: float) -> None:
    engine.set_demand_factor(factor)


def shock_factor(sc: Scenario, event: DemandShock) -> npt.NDArray[np.float64]:
    """The shock's demand multiplier as regions x classes (1 where it does not apply)."""
    classes = [c.name for c in sc.demand.classes]
    regions = [r.id for r in sc.regions]
    factor = np.ones((len(regions), len(classes)))
    rows = [regions.index(r) for r in event.regions] if event.regions else range(len(regions))
    cols = [classes.index(c) for c in event.classes] if event.classes else range(len(classes))
    factor[np.ix_(list(rows), list(cols))] = event.factor
    return factor


def _each(method: Callable[[int, float], None], pools: list[int]) -> Callable[[float], None]:
    def act(t: float) -> None:
        for p in pools:
            method(p, t)

    return act


def _relink(
    engine: Changeable, cut: set[tuple[str, str]], link: tuple[str, str], down: bool
) -> Callable[[float], None]:
    def act(t: float) -> None:
        if down:
            cut.add(link)
        else:
            cut.discard(link)
        topology = engine.grid.topology
        for a, b in sorted(cut):
            topology = topology.without_link(a, b)
        engine.set_topology(topology)

    return act
