"""Benchmark: the request engine against a plain SimPy M/M/8, national and like for like.

Run: ``python benchmarks/bench_request.py [--requests 1000000] [--memory-at 1000000,5000000]
[--repeat 3]``. Two pairings, each against the SimPy M/M/8 of ``simpy_mm8.py`` (one process
per customer, simpy.Resource) run with exactly as many customers as gridsim's run arrived:

- national: ``national.yaml`` (31 provinces, 33 nodes x 3 pools, 3 LLM classes, latency_slo,
  metrics on), over the horizon in which its demand brings ``--requests`` requests: the rate
  is the scenario's own (tokens/day x sample_fraction / tokens a request, by class), and the
  utilisation it offers the grid's slots is printed beside it;
- like for like: ``scenarios/validation/mmc.yaml`` at c = 8, the same queue as the reference
  (its arrival rate, mean service time and c are read from the file and given to SimPy), over
  the horizon in which it brings ``--requests`` requests.

What is timed: on both sides the simulation alone. gridsim: its engine's run up to its
summary (drawing arrivals, routing, queueing, recording latencies into histograms). SimPy:
building its environment and running it to the last departure, and the mean wait. Left out on
both sides: process start-up, imports, loading the scenario; on gridsim's side also building
the grid and engine, the summary, tables and economics (shown apart with the whole
``gridsim.run``); no output folder is written (and figures are off). Each measurement runs in
its own process, so peak memory is that run's alone; gridsim's is also reported at
several request counts (national, per-request table off).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import Figures, Rounds, parse, phases, timed_run  # noqa: E402

SCENARIOS = {
    "national": (HERE / "national.yaml", ["outputs.figures=false"]),
    "mmc": (
        HERE.parent / "scenarios" / "validation" / "mmc.yaml",
        ["outputs.figures=false", "nodes[solo].pools[slots].slots=8"],
    ),
}


def gridsim_once(scenario: str, sets: list[str]) -> Figures:
    import gridsim as gs

    sc = gs.load_scenario(SCENARIOS[scenario][0], sets=sets)
    result, figures = timed_run(sc)
    return {
        **figures,
        "wall_s": figures["engine_s"],
        "requests": result.summary["requests"]["arrived"],
    }


def simpy_once(
    customers: int, servers: int, arrival_rate_per_s: float, service_mean_s: float
) -> Figures:
    from simpy_mm8 import run_mm8

    started = time.perf_counter()
    run_mm8(customers, servers, arrival_rate_per_s, service_mean_s)
    return {"wall_s": time.perf_counter() - started, "requests": customers}


def sized(scenario: str, requests: int) -> tuple[list[str], str]:
    """``--set`` arguments for a horizon that brings ``requests`` requests, and what it is."""
    from sizing import arrival_rate_per_s, offered_utilisation

    import gridsim as gs

    path, sets = SCENARIOS[scenario]
    sc = gs.load_scenario(path, sets=sets)
    rate = arrival_rate_per_s(sc)
    duration_s = requests / rate
    about = (
        f"{path.name} ({sc.policy.name}): {rate:.1f} requests/s for {duration_s / 3600:.2f} h,"
        f" offered utilisation {offered_utilisation(sc):.2f}"
    )
    return [*sets, f"horizon.duration={duration_s}"], about


def mm8_queue() -> dict[str, float]:
    """mmc.yaml's queue as SimPy's arguments: servers, arrival rate, mean service time."""
    import gridsim as gs

    path, sets = SCENARIOS["mmc"]
    sc = gs.load_scenario(path, sets=sets)
    (jobs,) = sc.demand.classes
    assert jobs.service is not None and jobs.service.dist == "exponential", "an M/M/c file"
    return {
        "servers": sc.nodes[0].pools[0].slots,
        "arrival_rate_per_s": jobs.rate_per_s,
        "service_mean_s": jobs.service.mean,
    }


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--memory-at", default="1000000,5000000", help="request counts")


def main() -> None:
    args = parse(__doc__, {"gridsim": gridsim_once, "simpy": simpy_once}, options)
    if args is None:
        return
    queue = mm8_queue()
    plans = {name: sized(name, args.requests) for name in SCENARIOS}
    rounds = Rounds(__file__, args.repeat)
    for _ in rounds:
        for name, (sets, _about) in plans.items():
            g = rounds.measure(name, "gridsim", scenario=name, sets=sets)
            rounds.measure(f"{name} SimPy", "simpy", customers=int(g["requests"]), **queue)
    mm8 = (
        f"SimPy M/M/{queue['servers']} ({queue['arrival_rate_per_s']:g}/s, mean service "
        f"{queue['service_mean_s']:g} s)"
    )
    for name, (_sets, about) in plans.items():
        g, s = rounds.median(name), rounds.median(f"{name} SimPy")
        print(f"\n{name}: {about}")
        for label, m, what in ((name, g, "gridsim engine"), (f"{name} SimPy", s, mm8)):
            print(
                f"  {what}: {m['requests']:,.0f} requests in {m['wall_s']:.2f} s = "
                f"{m['requests'] / m['wall_s']:,.0f} requests/s ({rounds.spread(label, 'wall_s')})"
                f", peak RSS {m['peak_rss_mb']:.0f} MB"
            )
        print(f"  {phases(g)}")
    print("\nratio gridsim / SimPy M/M/8, requests per wall second (target >= 1.0, aim 2.0):")
    print(f"  national: {rounds.ratio('national', 'national SimPy')}")
    print(f"  like for like (mmc.yaml, c = 8): {rounds.ratio('mmc', 'mmc SimPy')}")
    for n in (int(x) for x in args.memory_at.split(",") if x):
        if n == args.requests:
            m = rounds.median("national")
        else:
            m = rounds.measure(
                f"national {n}", "gridsim", scenario="national", sets=sized("national", n)[0]
            )
        print(
            f"gridsim national peak RSS at {m['requests']:,.0f} requests: {m['peak_rss_mb']:.0f} MB"
        )
    rounds.close()


if __name__ == "__main__":
    main()
