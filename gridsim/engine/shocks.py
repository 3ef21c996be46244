"""Demand shocks at request fidelity: arrivals thinned (factor < 1) or topped up (factor > 1).

A shock multiplies the arrival rate of some classes and regions for a while. Thinning keeps each
arrival with probability ``factor``; a factor above one adds independent copies of the demand
(from demand models with their own seeds), each kept with the probability still missing, so the
rate becomes ``factor`` times the base exactly in expectation, with Poisson streams staying
Poisson. Draws come from named child streams of the run's seed.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from gridsim.demand import Arrivals, DemandModel
from gridsim.engine.events import seconds, shock_factor
from gridsim.scenario.schema import DemandShock, Scenario

SHOCK_STREAM = 0x5C0C


class Shocks:
    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.seed = seed
        self.windows: list[tuple[float, float, npt.NDArray[np.float64]]] = []
        for event in scenario.events:
            if not isinstance(event, DemandShock):
                continue
            start = seconds(scenario, event.at)
            end = start + event.duration if event.duration is not None else math.inf
            self.windows.append((start, end, shock_factor(scenario, event)))
        top = max((float(f.max()) for _, _, f in self.windows), default=1.0)
        # One extra copy of the demand per whole unit of factor above one.
        self.extra = [DemandModel(scenario) for _ in range(math.ceil(top) - 1)]

    def __bool__(self) -> bool:
        return bool(self.windows)

    def factor(self, arr: Arrivals) -> npt.NDArray[np.float64]:
        out = np.ones(len(arr))
        for start, end, f in self.windows:
            inside = (arr.time_s >= start) & (arr.time_s < end)
            out[inside] *= f[arr.region_idx[inside], arr.class_idx[inside]]
        return out

    def apply(self, arr: Arrivals, t0: float, t1: float, chunk: int) -> Arrivals:
        """The chunk's arrivals with every shock applied."""
        parts = []
        for copy, model in enumerate([None, *self.extra]):
            base = arr if model is None else model.arrivals(self._seed(copy), t0, t1)
            keep_p = np.clip(self.factor(base) - copy, 0.0, 1.0)
            rng = np.random.default_rng(
                np.random.SeedSequence(self.seed, spawn_key=(SHOCK_STREAM, copy, chunk))
            )
            parts.append(base.take(rng.random(len(base)) < keep_p))
        return Arrivals.merge(parts)

    def _seed(self, copy: int) -> int:
        sequence = np.random.SeedSequence(self.seed, spawn_key=(SHOCK_STREAM, copy))
        return int(sequence.generate_state(1)[0])
