"""Benchmark: the flow engine over two simulated years against a plain numpy reference loop.

Run: ``python benchmarks/bench_flow.py [--days 365] [--repeat 3]``. Both years are
``flow_national.yaml``: 31 provinces x 33 nodes (one pool each) x 4 classes, one-minute ticks,
least_loaded.

- steady year: the file as it is; capacity has room all year, so gridsim computes stretches
  of ticks at once (the steady-stretch shortcut users get while nothing is queued);
- overload year: its ``overload`` variant (work waits at most 30 min, then is dropped), with
  the growth rate set so that demand reaches capacity at the middle of the horizon and keeps
  growing: queues last through the second half, whose every tick gridsim steps on its own
  (the per-tick path). ``--days`` shortens both years; the overload still starts half way.

The reference loop does the same work plainly, tick by tick on the same arrays, for both
years: the block's demand rates from gridsim's demand model (as the engine draws them), the
least_loaded split (slots less queued work), FIFO service up to each pool's slots (carried
cohorts oldest first, then the tick's arrivals), carrying, ageing and dropping cohorts past
the maximum wait. It ends with the same requests served, dropped and waiting as gridsim.

What is timed: on both sides the simulation of the ticks only. gridsim: its engine's run up to
its summary (stepping ticks in SimPy, allocation, service, latency histograms, time series,
capacity tracking). The reference: its tick loop. Left out on both sides: process start-up,
imports, loading the scenario, building the grid and engine (the reference's arrays); on
gridsim's side also the summary, tables and economics, reported apart with the whole
``gridsim.run``. Each measurement runs in its own process (peak RSS).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import Figures, Rounds, parse, phases, timed_run  # noqa: E402

YEARS = ("steady", "overload")


def scenario(year: str, days: float) -> Any:
    from sizing import tokens_per_day_to_capacity_at

    import gridsim as gs

    path = HERE / "flow_national.yaml"
    sets = [f"horizon.duration={days}d", "outputs.figures=false"]
    if year == "steady":
        return gs.load_scenario(path, sets=sets)
    sc = gs.load_scenario(path, ["overload"], sets)
    tokens_per_day = tokens_per_day_to_capacity_at(sc, sc.horizon.duration / 2)
    return gs.load_scenario(path, ["overload"], [*sets, f"demand.tokens_per_day={tokens_per_day}"])


def gridsim_once(year: str, days: float) -> Figures:
    from gridsim.engine.flow import FlowEngine

    sc = scenario(year, days)
    stepped = 0
    tick = FlowEngine._tick

    def counted(engine: FlowEngine, *args: Any) -> None:
        nonlocal stepped
        stepped += 1
        tick(engine, *args)

    with mock.patch.object(FlowEngine, "_tick", counted):  # how many ticks took the long path
        result, figures = timed_run(sc)
    requests = result.summary["requests"]
    shortfall = result.summary["capacity"]["shortfall_at_s"]
    return {
        **figures,
        "wall_s": figures["engine_s"],
        "ticks": math.ceil(sc.horizon.duration / sc.horizon.resolution - 1e-9),
        "stepped": stepped,
        "served": requests["served"],
        "dropped": requests["dropped"],
        "waiting": requests["in_flight"],
        "utilisation": result.summary["utilization"]["mean"],
        "shortfall_day": math.nan if shortfall is None else shortfall / 86400,
    }


def reference_once(year: str, days: float) -> Figures:
    from gridsim.demand import DemandModel
    from gridsim.grid import build_grid
    from gridsim.policies.base import PolicyBase

    sc = scenario(year, days)
    grid = build_grid(sc)
    demand = DemandModel(sc, grid.catalog)
    policy = PolicyBase(grid)
    svc = policy.service_s  # (C, P) mean slot seconds of a request
    mask = policy.candidate_mask.astype(np.float64)  # (R, C, P)
    slots = grid.slots().astype(np.float64)
    dt = sc.horizon.resolution
    cap = slots * dt
    n_ticks = math.ceil(sc.horizon.duration / dt - 1e-9)
    block = max(1, round(max(3600.0, sc.horizon.duration / 1000) / dt))
    max_wait = sc.admission.max_wait
    # Waiting requests by age in ticks (index 0 takes this tick's leftovers before ageing);
    # without a maximum wait, one cohort that never ages out.
    ages = math.ceil(max_wait / dt - 1e-9) if max_wait is not None else 1
    backlog = np.zeros((ages, *svc.shape))
    served = dropped = 0.0
    started = time.perf_counter()
    for k0 in range(0, n_ticks, block):
        k1 = min(k0 + block, n_ticks)
        arrivals = demand.mean_rates(np.arange(k0, k1 + 1) * dt) * dt  # (ticks, R, C)
        for i in range(k1 - k0):
            # least_loaded: split in proportion to slots, less the work queued there
            queued = np.einsum("acp,cp->p", backlog, svc) / dt
            weights = mask * (slots / (1.0 + queued / slots))[None, None, :]
            shares = weights / weights.sum(axis=2, keepdims=True)
            new = np.einsum("rc,rcp->cp", arrivals[i], shares)
            # FIFO up to capacity: the oldest cohort first, this tick's arrivals last
            work = np.concatenate(
                [np.einsum("acp,cp->ap", backlog[::-1], svc), (new * svc).sum(axis=0)[None]]
            )
            before = np.cumsum(work, axis=0) - work
            frac = np.divide(cap - before, work, out=np.ones_like(work), where=work > 0)
            frac = np.clip(frac, 0.0, 1.0)
            left = 1.0 - frac
            served += float((backlog * frac[-2::-1, None, :]).sum() + (new * frac[-1]).sum())
            backlog *= left[-2::-1, None, :]
            backlog[0] += new * left[-1]
            if max_wait is not None:  # one tick older; the oldest cohort has waited its limit
                dropped += float(backlog[-1].sum())
                backlog[1:] = backlog[:-1].copy()
                backlog[0] = 0.0
    wall = time.perf_counter() - started
    return {"wall_s": wall, "served": served, "dropped": dropped, "waiting": float(backlog.sum())}


def main() -> None:
    args = parse(
        __doc__,
        {"gridsim": gridsim_once, "reference": reference_once},
        lambda p: p.add_argument("--days", type=float, default=365.0, help="simulated days"),
    )
    if args is None:
        return
    rounds = Rounds(__file__, args.repeat)
    for _ in rounds:
        for year in YEARS:
            rounds.measure(f"gridsim {year}", "gridsim", year=year, days=args.days)
            rounds.measure(f"reference {year}", "reference", year=year, days=args.days)
    from sizing import offered_utilisation

    for year in YEARS:
        sc = scenario(year, args.days)
        g, r = rounds.median(f"gridsim {year}"), rounds.median(f"reference {year}")
        when = "never" if math.isnan(g["shortfall_day"]) else f"from day {g['shortfall_day']:.1f}"
        print(
            f"\n{year} year, {args.days:g} days at 1 min ({g['ticks']:,.0f} ticks): demand "
            f"{sc.demand.tokens_per_day:.3g} tokens/day at the start (utilisation "
            f"{offered_utilisation(sc):.2f}), growing {sc.demand.growth.rate_per_month:.0%} a "
            f"month; mean utilisation {g['utilisation']:.2f}, capacity short {when}; "
            f"{g['stepped']:,.0f} ticks stepped one at a time"
        )
        print(
            f"  gridsim engine: {g['wall_s']:.2f} s ({rounds.spread(f'gridsim {year}', 'wall_s')})"
            f", peak RSS {g['peak_rss_mb']:.0f} MB; {phases(g)}"
        )
        print(
            f"  numpy reference loop: {r['wall_s']:.2f} s "
            f"({rounds.spread(f'reference {year}', 'wall_s')}), peak RSS {r['peak_rss_mb']:.0f} MB"
        )
        for key in ("served", "dropped", "waiting"):
            gap = abs(g[key] - r[key]) / max(g[key], r[key], 1.0)
            print(f"  requests {key}: gridsim {g[key]:.4g}, reference {r[key]:.4g} (gap {gap:.1e})")
        ratio = rounds.ratio(f"reference {year}", f"gridsim {year}")
        print(f"  ratio gridsim engine / reference, {year} year: {ratio} (target <= 1.0)")
    rounds.close()


if __name__ == "__main__":
    main()
