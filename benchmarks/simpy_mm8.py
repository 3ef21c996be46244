"""The reference: a plain, idiomatic SimPy M/M/c (one process per customer, simpy.Resource)."""

from __future__ import annotations

import random
from collections.abc import Generator
from typing import Any

import simpy


def run_mm8(
    customers: int,
    servers: int = 8,
    arrival_rate_per_s: float = 7.2,
    service_mean_s: float = 1.0,
    seed: int = 1,
) -> float:
    """Simulate ``customers`` arrivals to the end of the last service; return the mean wait
    (so the work is not optimised away). The defaults are an M/M/8 at utilisation 0.9."""
    rng = random.Random(seed)
    env = simpy.Environment()
    resource = simpy.Resource(env, capacity=servers)
    waits: list[float] = []

    def customer(env: simpy.Environment) -> Generator[Any, Any, None]:
        arrived = env.now
        with resource.request() as req:
            yield req
            waits.append(env.now - arrived)
            yield env.timeout(rng.expovariate(1.0 / service_mean_s))

    def source(env: simpy.Environment) -> Generator[Any, Any, None]:
        for _ in range(customers):
            yield env.timeout(rng.expovariate(arrival_rate_per_s))
            env.process(customer(env))

    env.process(source(env))
    env.run()
    return sum(waits) / len(waits)
