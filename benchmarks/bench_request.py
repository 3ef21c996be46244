"""Benchmark: the request engine on a national scenario against a plain SimPy M/M/8.

Run: ``python benchmarks/bench_request.py [--requests 1000000] [--memory-at 1000000,5000000]``.
Each measurement runs in its own process, so peak memory (ru_maxrss) is that run's alone.
Reports simulated requests per wall second for both, their ratio (target >= 1.0), and peak
memory of gridsim at several request counts with the per-request table off.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import in_child, report_child  # noqa: E402

RATE_PER_S = 84.7  # national.yaml's arrival rate (requests per simulated second)


def gridsim_once(requests: int) -> dict[str, float]:
    import gridsim as gs
    from gridsim.run import run

    duration_s = requests / RATE_PER_S
    scenario = gs.load_scenario(HERE / "national.yaml", sets=[f"horizon.duration={duration_s}"])
    started = time.perf_counter()
    result = run(scenario)
    wall = time.perf_counter() - started
    arrived = result.summary["requests"]["arrived"]
    return {"requests": arrived, "wall_s": wall, "rate": arrived / wall}


def simpy_once(requests: int) -> dict[str, float]:
    from simpy_mm8 import run_mm8

    started = time.perf_counter()
    run_mm8(requests)
    wall = time.perf_counter() - started
    return {"requests": requests, "wall_s": wall, "rate": requests / wall}


def measure(kind: str, requests: int) -> dict[str, float]:
    return in_child(__file__, "--child", kind, "--requests", str(requests))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--memory-at", default="1000000,5000000")
    parser.add_argument("--child", choices=["gridsim", "simpy"])
    args = parser.parse_args()
    if args.child:
        once = gridsim_once if args.child == "gridsim" else simpy_once
        report_child(lambda: once(args.requests))
        return
    g = measure("gridsim", args.requests)
    s = measure("simpy", args.requests)
    print(
        f"gridsim national ({g['requests']:,.0f} requests): {g['rate']:,.0f} req/s "
        f"({g['wall_s']:.1f} s, peak RSS {g['peak_rss_mb']:.0f} MB)"
    )
    print(
        f"SimPy M/M/8 ({s['requests']:,.0f} customers): {s['rate']:,.0f} req/s "
        f"({s['wall_s']:.1f} s, peak RSS {s['peak_rss_mb']:.0f} MB)"
    )
    print(f"ratio gridsim / SimPy: {g['rate'] / s['rate']:.2f} (target >= 1.0, aim 2.0)")
    for n in (int(x) for x in args.memory_at.split(",") if x):
        m = g if n == args.requests else measure("gridsim", n)
        print(f"gridsim peak RSS at {m['requests']:,.0f} requests: {m['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
