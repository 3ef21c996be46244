"""The reference: a plain, idiomatic SimPy M/M/8 (one process per customer, simpy.Resource)."""

from __future__ import annotations

import random
from collections.abc import Generator
from typing import Any

import simpy


def run_mm8(customers: int, rho: float = 0.9, servers: int = 8, seed: int = 1) -> float:
    """Simulate ``customers`` arrivals; return the mean wait (so the work is not optimised away)."""
    rng = random.Random(seed)
    env = simpy.Environment()
    resource = simpy.Resource(env, capacity=servers)
    waits: list[float] = []

    def customer(env: simpy.Environment) -> Generator[Any, Any, None]:
        arrived = env.now
        with resource.request() as req:
            yield req
            waits.append(env.now - arrived)
            yield env.timeout(rng.expovariate(1.0))

    def source(env: simpy.Environment) -> Generator[Any, Any, None]:
        for _ in range(customers):
            yield env.timeout(rng.expovariate(rho * servers))
            env.process(customer(env))

    env.process(source(env))
    env.run()
    return sum(waits) / len(waits)
