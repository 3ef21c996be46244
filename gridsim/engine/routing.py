"""The policy in force over the grid as routed now, shared by both engines.

A policy switch keeps today's routes, and a link cut or repair keeps today's policy: each event
changes one of the two and rebuilds the policy over both (policies only decide, so a fresh one
replaces the old; requests already on their way keep the route they took).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gridsim.grid import Grid, with_topology
from gridsim.policies.base import Policy, make_policy
from gridsim.topology import Topology


class Routing:
    """Holds ``policy`` (what engines ask) and the routed grid it was built over."""

    def __init__(self, grid: Grid) -> None:
        spec = grid.scenario.policy
        self.grid = grid  # as built, routes as at the start
        self.routed = grid  # as routed now
        self.name, self.params = spec.name, dict(spec.params)
        self.policy: Policy = make_policy(self.name, grid, dict(self.params))

    def switch(self, name: str, params: dict[str, Any]) -> Policy:
        self.name, self.params = name, dict(params)
        self.policy = make_policy(name, self.routed, dict(params))
        return self.policy

    def reroute(self, topology: Topology) -> npt.NDArray[np.float64]:
        """New routes over ``topology``; returns their latency (region x pool, seconds)."""
        self.routed = with_topology(self.grid, topology)
        self.policy = make_policy(self.name, self.routed, dict(self.params))
        return self.routed.latency_s
