"""How much load a benchmark scenario offers, from its own demand and pools.

Nothing here is a constant copied from a scenario: the arrival rate and the utilisation follow
the scenario file and the catalogue, so the benchmarks stay right when either changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def arrival_rate_per_s(scenario: Any) -> float:
    """Expected requests per simulated second over the scenario's horizon: what its demand
    model draws (tokens/day x share x sample_fraction / tokens a request, or ``rate_per_s``),
    with growth and daily profiles averaged over the horizon."""
    from gridsim.estimate import expected_requests

    return float(expected_requests(scenario) / scenario.horizon.duration)


def offered_utilisation(scenario: Any) -> float:
    """Work arriving at the start (slot-seconds a second) over the grid's slots: each class's
    requests/s times its mean slot time on the pools that serve it (weighted by their slots)."""
    from gridsim.demand import DemandModel
    from gridsim.grid import build_grid
    from gridsim.policies.base import PolicyBase

    grid = build_grid(scenario)
    rates = DemandModel(scenario, grid.catalog).base_rates.sum(axis=0)  # (classes,)
    slots = grid.slots().astype(np.float64)
    weights = grid.serves * slots[None, :]  # (classes, pools)
    service_s = (PolicyBase(grid).service_s * weights).sum(axis=1) / weights.sum(axis=1)
    return float(rates @ service_s / slots.sum())


def tokens_per_day_to_capacity_at(scenario: Any, at_s: float) -> float:
    """The ``demand.tokens_per_day`` at which the scenario's demand, growing by its own law,
    reaches the grid's capacity ``at_s`` seconds after the start (exponential growth: demand
    scales with it)."""
    from gridsim.demand.growth import national_tokens_per_day

    demand, start = scenario.demand, scenario.horizon.start
    growth = national_tokens_per_day(demand, start, [at_s])[0] / demand.tokens_per_day
    return float(demand.tokens_per_day / (offered_utilisation(scenario) * growth))
