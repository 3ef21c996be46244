"""Benchmark: the flow engine over simulated years against a plain numpy reference loop.

Run: ``python benchmarks/bench_flow.py [--days 365] [--repeat 3] [--years ...]``. Every year is
``flow_national.yaml``: 31 provinces x 33 nodes (one pool each) x 4 classes, one-minute ticks,
least_loaded.

The flow engine's model: each tick, each pool is either at the steady state of its queue for
the tick's load (``queueing.stationary``: Erlang C when nothing limits waiting, M/M/n+G under
a maximum wait or patience, M/M/n/K under a queue limit; nothing carried to the next tick), or,
when nothing bounds its queue and its work exceeds its slots (or work is still queued there),
in fluid overload: a backlog per (region, class, pool) whose work grows or drains linearly in
the tick, served FIFO in proportion within the pool. gridsim computes stretches of ticks in
which every pool is at steady state at once (one law per distinct load row: demand is constant
within a clock hour); only ticks with a pool in fluid overload are stepped one at a time.

- steady year: the file as it is; capacity has room all year, every pool is at steady state
  and gridsim computes stretches of ticks at once (the steady-stretch shortcut);
- overload year: its ``overload`` variant, with the growth rate set so that demand reaches
  capacity at the middle of the horizon and keeps growing. Nothing bounds the queues, so the
  pools go into fluid overload and their backlog grows through the second half (gridsim warns
  that it grows without bound, as it should): every tick of the second half is stepped on
  its own (the per-tick path);
- overload-bounded year (not run by default: ``--years overload-bounded``): the same demand
  with ``bounded`` (work that would wait over 30 min is dropped). The queue then has a steady
  state above capacity too (M/M/n+G), so gridsim stays on the steady path; the reference,
  which evaluates that law in every tick (about 12 ms for 33 pools), takes about an hour.

``--days`` shortens every year; demand still reaches capacity half way.

The reference loop does the same work plainly, tick by tick on the same arrays, with no
stretch shortcut and no reuse of equal rows: per clock hour, the demand rates from gridsim's
demand model (as the engine draws them); per tick, the least_loaded split (slots less queued
work), then per pool the steady-state law (it calls ``queueing.stationary`` with the inputs
the engine passes: slots, arrival rate, load, the classes' shares of the arrivals and of the
work, patience, admission rules and kappa = (ca^2 + cs^2) / 2 of the class mix, cs^2 the
engine's own estimate; the reference shows what the engine's organisation costs, not the
formulas), splitting each pool's
arrivals per region and class into served and dropped; and where there is none or work is
queued, the fluid step: W1 = max(0, W0 + A - n dt), the fraction 1 - W1 / (W0 + A) of every
queued request served. It ends with the same requests served, dropped and queued as gridsim
(the gaps are printed) and counts the ticks with a pool in fluid overload, which are the ones
gridsim steps one at a time.

What is timed: on both sides the simulation of the ticks only. gridsim: its engine's run up to
its summary (stepping ticks in SimPy, allocation, steady-state laws and fluid steps, latency
histograms, time series, capacity tracking). The reference: its tick loop. Left out on both
sides: process start-up, imports, loading the scenario, building the grid and engine (the
reference's arrays); on gridsim's side also the summary, tables and economics, reported apart
with the whole ``gridsim.run``. Each measurement runs in its own process (peak RSS). Both
wall and CPU seconds are reported; the target is on wall time, CPU time (the process's) is
the steadier figure when other work shares the machine.
"""

from __future__ import annotations

import argparse
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

YEARS = ("steady", "overload", "overload-bounded")
DEFAULT_YEARS = ("steady", "overload")
OVERRIDES = {"steady": [], "overload": ["overload"], "overload-bounded": ["overload", "bounded"]}


def scenario(year: str, days: float) -> Any:
    from sizing import tokens_per_day_to_capacity_at

    import gridsim as gs

    path = HERE / "flow_national.yaml"
    sets = [f"horizon.duration={days}d", "outputs.figures=false"]
    names = OVERRIDES[year]
    if not names:
        return gs.load_scenario(path, sets=sets)
    sc = gs.load_scenario(path, names, sets)
    tokens_per_day = tokens_per_day_to_capacity_at(sc, sc.horizon.duration / 2)
    return gs.load_scenario(path, names, [*sets, f"demand.tokens_per_day={tokens_per_day}"])


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
    warnings = result.summary["engine_warnings"]
    return {
        **figures,
        "wall_s": figures["engine_s"],
        "cpu_s": figures["engine_cpu_s"],
        "ticks": math.ceil(sc.horizon.duration / sc.horizon.resolution - 1e-9),
        "stepped": stepped,
        "served": requests["served"],
        "dropped": requests["dropped"],
        "queued": requests["in_flight"],
        "utilisation": result.summary["utilization"]["mean"],
        "shortfall_day": math.nan if shortfall is None else shortfall / 86400,
        "unbounded": float(any("without bound" in w for w in warnings)),
    }


def reference_once(year: str, days: float) -> Figures:
    from gridsim.engine.flow import FlowEngine
    from gridsim.engine.queueing import patience_law, stationary
    from gridsim.grid import build_grid
    from gridsim.policies.base import PolicyBase
    from gridsim.scenario.schema import Bursty

    sc = scenario(year, days)
    grid = build_grid(sc)
    demand = grid.demand  # the engine's demand model
    classes = sc.demand.classes
    svc = np.maximum(PolicyBase(grid).service_s, 1e-9)  # (C, P) mean slot seconds of a request
    # The squared CV of each slot-time law, the engine's own estimate (from its seeded draws of
    # token lengths): taken from it, like the closed forms of ``stationary``.
    templates = FlowEngine.__new__(FlowEngine)
    templates.grid, templates.demand = grid, demand
    templates._service_templates(sc.seed)
    cs2 = templates.svc_cv2  # (C, P)
    ca2 = np.array(
        [c.arrival.dispersion if isinstance(c.arrival, Bursty) else 1.0 for c in classes]
    )
    patience = [patience_law(getattr(c, "patience", None)) for c in classes]
    if any(law is not None for law in patience):
        raise ValueError("the reference's fluid step has no abandonment: no class has patience")
    mask = PolicyBase(grid).candidate_mask.astype(np.float64)  # (R, C, P)
    slots = grid.slots().astype(np.float64)
    if not (slots > 0).all():
        raise ValueError("the reference has no pools down: every pool has slots")
    dt = sc.horizon.resolution
    horizon = sc.horizon.duration
    n_ticks = math.ceil(horizon / dt - 1e-9)
    hour = max(1, round(3600.0 / dt))
    max_wait, queue_limit = sc.admission.max_wait, sc.admission.queue_limit
    # Requests by region, class and pool: served (steady pools: as the law says; fluid pools:
    # as they leave the queue), dropped, and queued in fluid overload.
    served = np.zeros(mask.shape)
    dropped = np.zeros(mask.shape)
    backlog = np.zeros(mask.shape)
    fluid_ticks = 0
    started, started_cpu = time.perf_counter(), time.process_time()
    for k0 in range(0, n_ticks, hour):
        k1 = min(k0 + hour, n_ticks)
        edges = np.minimum(np.arange(k0, k1 + 1) * dt, horizon)
        widths = np.diff(edges)
        arrivals = demand.mean_rates(edges) * widths[:, None, None]  # (ticks, R, C) requests
        for i in range(k1 - k0):
            width = widths[i]
            # least_loaded: split in proportion to slots, less the work queued there
            queued = np.einsum("rcp,cp->p", backlog, svc)  # slot-seconds
            free = slots / (1.0 + queued / width / slots)
            weights = mask * free[None, None, :]
            shares = weights / weights.sum(axis=2, keepdims=True)
            flow = arrivals[i][:, :, None] * shares  # (R, C, P) requests
            new = flow.sum(axis=0)  # (C, P)
            total = new.sum(axis=0)  # (P,) requests
            work = new * svc  # (C, P) slot-seconds
            offered = work.sum(axis=0)  # (P,) slot-seconds
            mix = new / total  # the classes' shares of each pool's arrivals ...
            kappa = np.maximum((mix * (ca2[:, None] + cs2)).sum(axis=0) / 2, 1e-9)
            law = stationary(
                slots,
                total / width,
                offered / width,
                mix.T,
                patience,
                max_wait,
                queue_limit,
                kappa,
                work_share=(work / offered).T,  # ... and of its work
            )
            # Pools at steady state: the tick's arrivals split as the law says.
            fluid = ~law.stable | (queued > 0)
            steady = np.flatnonzero(~fluid)
            served[:, :, steady] += flow[:, :, steady] * law.served[steady].T[None]
            dropped[:, :, steady] += flow[:, :, steady] * law.dropped[steady].T[None]
            if not fluid.any():
                continue
            # Pools in fluid overload: the queue's work W1 = max(0, W0 + A - n dt), served FIFO
            # in proportion (the same fraction of every request queued there).
            fluid_ticks += 1
            f = np.flatnonzero(fluid)
            queue = backlog[:, :, f] + flow[:, :, f]
            w0_a = queued[f] + offered[f]
            left = np.maximum(w0_a - slots[f] * width, 0.0) / w0_a
            served[:, :, f] += queue * (1.0 - left)
            backlog[:, :, f] = queue * left
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "fluid_ticks": fluid_ticks,
        "served": float(served.sum()),
        "dropped": float(dropped.sum()),
        "queued": float(backlog.sum()),
    }


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=float, default=365.0, help="simulated days")
    parser.add_argument(
        "--years",
        nargs="+",
        choices=YEARS,
        default=list(DEFAULT_YEARS),
        help="years to run (default: %(default)s; overload-bounded's reference takes an hour)",
    )


def main() -> None:
    args = parse(__doc__, {"gridsim": gridsim_once, "reference": reference_once}, options)
    if args is None:
        return
    rounds = Rounds(__file__, args.repeat)
    for _ in rounds:
        for year in args.years:
            rounds.measure(f"gridsim {year}", "gridsim", year=year, days=args.days)
            rounds.measure(f"reference {year}", "reference", year=year, days=args.days)
    from sizing import offered_utilisation

    for year in args.years:
        sc = scenario(year, args.days)
        g, r = rounds.median(f"gridsim {year}"), rounds.median(f"reference {year}")
        when = "never" if math.isnan(g["shortfall_day"]) else f"from day {g['shortfall_day']:.1f}"
        wait = sc.admission.max_wait
        rules = "queues unbounded" if wait is None else f"max wait {wait / 60:g} min"
        print(
            f"\n{year} year, {args.days:g} days at 1 min ({g['ticks']:,.0f} ticks), {rules}: "
            f"demand {sc.demand.tokens_per_day:.3g} tokens/day at the start (utilisation "
            f"{offered_utilisation(sc):.2f}), growing {sc.demand.growth.rate_per_month:.0%} a "
            f"month; mean utilisation {g['utilisation']:.2f}, capacity short {when}"
        )
        print(
            f"  ticks stepped one at a time: gridsim {g['stepped']:,.0f}, reference ticks with "
            f"a pool in fluid overload {r['fluid_ticks']:,.0f}"
            + ("; gridsim warns the backlog grows without bound" if g["unbounded"] else "")
        )
        print(
            f"  gridsim engine: {g['wall_s']:.2f} s ({rounds.spread(f'gridsim {year}', 'wall_s')})"
            f", CPU {g['cpu_s']:.2f} s, peak RSS {g['peak_rss_mb']:.0f} MB; {phases(g)}"
        )
        print(
            f"  numpy reference loop: {r['wall_s']:.2f} s "
            f"({rounds.spread(f'reference {year}', 'wall_s')}), CPU {r['cpu_s']:.2f} s, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB"
        )
        # gaps relative to the requests that arrived (gridsim's counts are whole numbers)
        arrived = max(r["served"] + r["dropped"] + r["queued"], 1.0)
        for key in ("served", "dropped", "queued"):
            gap = abs(g[key] - r[key]) / arrived
            print(
                f"  requests {key}: gridsim {g[key]:.6g}, reference {r[key]:.6g} "
                f"(gap {gap:.1e} of the {arrived:.4g} arrived)"
            )
        ratio = rounds.ratio(f"reference {year}", f"gridsim {year}")
        cpu = rounds.ratio(f"reference {year}", f"gridsim {year}", "cpu_s")
        print(
            f"  ratio gridsim engine / reference, {year} year: {ratio} (target <= 1.0); "
            f"in CPU seconds {cpu}"
        )
    rounds.close()


if __name__ == "__main__":
    main()
