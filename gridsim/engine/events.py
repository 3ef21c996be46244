"""Scheduled events (outages) as actions at instants, shared by the engines."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gridsim.scenario.schema import LinkOutage, NodeOutage

if TYPE_CHECKING:
    from gridsim.engine.request import RequestEngine

Action = tuple[float, Callable[[float], None]]


def schedule(engine: RequestEngine) -> list[Action]:
    """The scenario's events as (time, action) pairs, in the order the YAML lists them."""
    grid = engine.grid
    horizon = grid.scenario.horizon.duration
    actions: list[Action] = []
    cut_links: set[tuple[str, str]] = set()
    for event in grid.scenario.events:
        end = horizon if event.duration is None else event.at + event.duration
        if isinstance(event, NodeOutage):
            pools = [p.index for p in grid.pools if p.node_id == event.node]
            actions.append((event.at, _each(engine.fail_pool, pools)))
            if end < horizon:
                actions.append((end, _each(engine.restore_pool, pools)))
        elif isinstance(event, LinkOutage):
            link = (event.a, event.b)
            actions.append((event.at, _relink(engine, cut_links, link, down=True)))
            if end < horizon:
                actions.append((end, _relink(engine, cut_links, link, down=False)))
    return actions


def _each(method: Callable[[int, float], None], pools: list[int]) -> Callable[[float], None]:
    def act(t: float) -> None:
        for p in pools:
            method(p, t)

    return act


def _relink(
    engine: RequestEngine, cut: set[tuple[str, str]], link: tuple[str, str], down: bool
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
