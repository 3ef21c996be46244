"""What both engines share: the run over a SimPy environment, scheduled events at their
instants, the policy and routes in force, price changes, progress, and the hand-over of results.

An engine subclasses ``EngineBase`` and supplies its main SimPy process (``_main``: arrivals at
request fidelity, ticks at flow fidelity), how an event's instant maps to the engine's clock
(``_event_time``: ticks round up to the next tick), what to bring up to date before an event
acts (``_before_event``), the routes' latency in its own form (``_use_latency``) and the end of
the run (``_finish``). Events (outages, build-outs, shocks, prices, policy switches, link cuts)
call the same methods on either engine (``gridsim.engine.events``).
"""

from __future__ import annotations

import gc
import math
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import simpy

from gridsim.engine.routing import Routing
from gridsim.grid import Grid
from gridsim.metrics.recorder import Layout, Recorder
from gridsim.topology import Topology

Action = Callable[[float], None]


@dataclass
class RunOutput:
    summary: dict[str, Any]
    timeseries: pd.DataFrame
    requests: pd.DataFrame
    flows: pd.DataFrame


def run_without_gc(env: simpy.Environment, until: float) -> None:
    """Run the environment with the cyclic garbage collector paused: engine records hold no
    reference cycles, and the collector would only rescan the large live heaps again and again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        env.run(until=until)
    finally:
        if was_enabled:
            gc.enable()


def recorder_layout(grid: Grid) -> Layout:
    """What a run reports on, as the Recorder needs it (shared by both engines)."""
    classes = grid.classes
    return Layout(
        class_names=grid.class_names,
        region_ids=grid.region_ids,
        node_ids=grid.node_ids,
        pool_node=tuple(p.node_index for p in grid.pools),
        pool_names=tuple(p.name for p in grid.pools),
        pool_slots=tuple(p.slots for p in grid.pools),
        ttft_slo_s=tuple(c.slo.ttft if c.slo.ttft is not None else math.inf for c in classes),
        e2e_slo_s=tuple(c.slo.e2e if c.slo.e2e is not None else math.inf for c in classes),
    )


class Progress:
    """A progress bar on a terminal; nothing when the output is not one."""

    def __init__(self, total_s: float) -> None:
        from rich.progress import Progress as Bar

        self.bar: Any = None
        if sys.stderr.isatty():
            self.bar = Bar(transient=True)
            self.bar.start()
            self.task = self.bar.add_task("simulating", total=total_s)

    def update(self, t: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=t)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class EngineBase:
    """The run loop and the changes both engines make the same way."""

    recorder: Recorder

    def __init__(self, grid: Grid, progress: bool = False) -> None:
        self.grid = grid
        self.progress = progress
        self.env = simpy.Environment()
        self.horizon_s = grid.scenario.horizon.duration
        self.routing = Routing(grid)
        self.policy = self.routing.policy
        self.demand = grid.demand

    # --- the run -----------------------------------------------------------------------------

    def run(self, events: list[tuple[float, Action]] | None = None) -> RunOutput:
        """Simulate the horizon with ``events`` (instant, action) acting at their instants."""
        for t, action in sorted(events or [], key=lambda e: e[0]):
            self.env.process(self._at(t, action))
        self.env.process(self._main())
        run_without_gc(self.env, self._until())
        return self._finish()

    def _at(self, t: float, action: Action) -> Generator[Any, Any, None]:
        yield self.env.timeout(self._event_time(t))
        self._before_event(t)
        action(t)

    def _main(self) -> Generator[Any, Any, None]:
        raise NotImplementedError

    def _until(self) -> float:
        return self.horizon_s

    def _event_time(self, t: float) -> float:
        """When, on this engine's clock, an event at ``t`` acts."""
        return t

    def _before_event(self, t: float) -> None:
        """Bring the engine's state up to ``t`` before an event changes it."""

    def _finish(self) -> RunOutput:
        raise NotImplementedError

    # --- changes both engines make the same way ---------------------------------------------

    def set_policy(self, name: str, params: dict[str, Any]) -> None:
        self.policy = self.routing.switch(name, params)

    def set_topology(self, topology: Topology) -> None:
        """After a link cut or repair: new routes (and the policy over them) from now on."""
        self._use_latency(self.routing.reroute(topology))
        self.policy = self.routing.policy

    def _use_latency(self, latency_s: npt.NDArray[np.float64]) -> None:
        raise NotImplementedError

    def set_price(self, node_id: str, price_cny_per_kwh: float, t: float) -> None:
        self.recorder.prices.append((t, node_id, price_cny_per_kwh))
