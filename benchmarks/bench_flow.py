"""Benchmark: one simulated year of the flow engine against a plain numpy reference loop.

Run: ``python benchmarks/bench_flow.py [--days 365]``. The scenario is ``flow_national.yaml``
(31 provinces x 33 nodes x 4 classes, one-minute ticks, least_loaded). The reference loop works
on the same arrays: each tick it takes the tick's demand, allocates it in proportion to slots,
clips service at capacity and carries the backlog; demand rates come from the same demand model
one block at a time, as in gridsim. Each measurement runs in its own process (peak RSS).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import in_child, report_child  # noqa: E402


def scenario(days: int):  # type: ignore[no-untyped-def]
    import gridsim as gs

    return gs.load_scenario(HERE / "flow_national.yaml", sets=[f"horizon.duration={days}d"])


def gridsim_once(days: int) -> dict[str, float]:
    import gridsim as gs

    sc = scenario(days)
    started = time.perf_counter()
    result = gs.run(sc)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "utilization": result.summary["utilization"]["mean"]}


def reference_once(days: int) -> dict[str, float]:
    from gridsim.demand import DemandModel
    from gridsim.grid import build_grid
    from gridsim.policies.base import PolicyBase

    sc = scenario(days)
    grid = build_grid(sc)
    demand = DemandModel(sc, grid.catalog)
    svc = PolicyBase(grid).service_s  # (C, P) mean slot time
    mask = PolicyBase(grid).candidate_mask.astype(float)  # (R, C, P)
    slots = grid.slots().astype(float)
    dt = sc.horizon.resolution
    n_ticks = round(sc.horizon.duration / dt)
    block = max(1, round(max(3600.0, sc.horizon.duration / 1000) / dt))
    started = time.perf_counter()
    backlog = np.zeros(svc.shape)
    served_total = 0.0
    for k0 in range(0, n_ticks, block):
        k1 = min(k0 + block, n_ticks)
        edges = np.arange(k0, k1 + 1) * dt
        arrivals = demand.mean_rates(edges) * dt  # (ticks, R, C) requests per tick
        for i in range(k1 - k0):
            queued = (backlog * svc).sum(axis=0) / dt  # demand, then proportional allocation
            weights = mask * (slots / (1.0 + queued / slots))[None, None, :]
            shares = weights / weights.sum(axis=2, keepdims=True)
            new = np.einsum("rc,rcp->cp", arrivals[i], shares) + backlog
            work = (new * svc).sum(axis=0)  # capacity clip
            frac = np.minimum(1.0, slots * dt / np.maximum(work, 1e-12))
            served = new * frac[None, :]
            served_total += float(served.sum())
            backlog = new - served  # backlog carry
    wall = time.perf_counter() - started
    return {"wall_s": wall, "served": served_total}


def measure(kind: str, days: int) -> dict[str, float]:
    return in_child(__file__, "--child", kind, "--days", str(days))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--child", choices=["gridsim", "reference"])
    args = parser.parse_args()
    if args.child:
        once = gridsim_once if args.child == "gridsim" else reference_once
        report_child(lambda: once(args.days))
        return
    g = measure("gridsim", args.days)
    r = measure("reference", args.days)
    print(
        f"gridsim flow, {args.days} days at 1 min: {g['wall_s']:.1f} s, "
        f"peak RSS {g['peak_rss_mb']:.0f} MB (mean utilisation {g['utilization']:.2f})"
    )
    print(f"numpy reference loop: {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"ratio gridsim / reference: {g['wall_s'] / r['wall_s']:.2f} (target <= 1.5, aim 1.0)")


if __name__ == "__main__":
    main()
