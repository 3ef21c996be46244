"""What the benchmarks share: child processes, rounds and medians, and gridsim's run by phase.

- Each measurement runs in a fresh interpreter (``python SCRIPT --child KIND PARAMS``), so its
  peak memory is its own and nothing is warm from an earlier measurement.
- Measurements repeat in rounds, every measurement once a round, so load that comes and goes
  on a shared machine hits all of them alike; the figures reported are the medians.
- ``timed_run`` runs a scenario through ``gridsim.run`` (the path users take) and times its
  phases, so that a benchmark can compare the engine's run alone with a reference doing the
  same work, and still show what the whole call costs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from typing import Any
from unittest import mock

Figures = dict[str, float]
Child = Callable[..., Figures]


def parse(
    doc: str | None,
    children: Mapping[str, Child],
    options: Callable[[argparse.ArgumentParser], object],
) -> argparse.Namespace | None:
    """The benchmark's command line (its ``options`` and ``--repeat``). In a child process
    (``--child KIND PARAMS``) instead: run ``children[KIND](**PARAMS)``, print its figures with
    the peak RSS as one JSON line, and return None."""
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        figures = children[sys.argv[2]](**json.loads(sys.argv[3]))
        figures["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(figures))
        return None
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    options(parser)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (medians are reported)")
    return parser.parse_args()


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB). On Linux, VmHWM: this program's alone, where
    ru_maxrss (the fallback) also keeps the peak of the process that started it, which exec
    carries over (a parent that has imported gridsim would put 150 MB under every child)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_child(script: str, kind: str, params: Mapping[str, Any]) -> Figures:
    """Run ``script``'s child ``kind`` with ``params`` in a fresh interpreter; its figures."""
    out = subprocess.run(  # the child's errors go to this terminal
        [sys.executable, script, "--child", kind, json.dumps(params)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


class Rounds:
    """Measurements by label, each in a child, repeated round by round; medians per label."""

    def __init__(self, script: str, repeat: int) -> None:
        self.script = script
        self.repeat = max(1, repeat)
        self.runs: dict[str, list[Figures]] = {}
        print(f"machine: {os.cpu_count()} CPUs, {load()} at the start")

    def __iter__(self) -> Iterator[int]:
        for i in range(self.repeat):
            print(f"round {i + 1}/{self.repeat}, {load()}", file=sys.stderr, flush=True)
            yield i

    def measure(self, label: str, kind: str, **params: Any) -> Figures:
        figures = in_child(self.script, kind, params)
        self.runs.setdefault(label, []).append(figures)
        return figures

    def median(self, label: str) -> Figures:
        runs = self.runs[label]
        return {key: statistics.median(run[key] for run in runs) for key in runs[0]}

    def spread(self, label: str, key: str) -> str:
        """``median of N: low-high s`` for one timing, or ``1 run``."""
        values = [run[key] for run in self.runs[label]]
        if len(values) == 1:
            return "1 run"
        return f"median of {len(values)}: {min(values):.2f}-{max(values):.2f} s"

    def ratio(self, label: str, against: str, key: str = "wall_s") -> str:
        """Wall time (or ``key``) of ``against`` over that of ``label`` (how many times faster
        ``label`` ran), round by round: the median, and each round's, as the two ran back to
        back."""
        pairs = zip(self.runs[label], self.runs[against], strict=True)
        ratios = [b[key] / a[key] for a, b in pairs]
        each = f" (rounds: {', '.join(f'{r:.2f}' for r in ratios)})" if len(ratios) > 1 else ""
        return f"{statistics.median(ratios):.2f}{each}"

    def close(self) -> None:
        print(f"machine: {load()} at the end")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def timed_run(scenario: Any) -> tuple[Any, Figures]:
    """``gridsim.run(scenario)`` and the wall seconds of its phases: ``setup_s`` (grid, engine
    set-up), ``engine_s`` (the engine's run, up to its summary), ``tables_s`` (summary and
    tables), ``after_s`` (economics, pools table, manifest) and ``total_s``; and the CPU
    seconds of the engine's run, ``engine_cpu_s`` (this process's, all threads: on a loaded
    machine, less noisy than the wall time).

    The phases are told apart by wrapping the engines' ``run`` and the recorder's ``summary``
    (wall and CPU clock readings; nothing else changes)."""
    import gridsim as gs
    from gridsim.engine.flow import FlowEngine
    from gridsim.engine.request import RequestEngine
    from gridsim.metrics.recorder import Recorder

    marks: dict[str, float] = {}

    def timed(key: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            marks.setdefault(key, time.perf_counter())
            marks.setdefault(f"{key}_cpu", time.process_time())
            out = method(*args, **kwargs)
            marks.setdefault(f"{key}_end", time.perf_counter())
            return out

        return wrapper

    with ExitStack() as stack:
        for cls, name, key in (
            (FlowEngine, "run", "engine"),
            (RequestEngine, "run", "engine"),
            (Recorder, "summary", "tables"),
        ):
            stack.enter_context(mock.patch.object(cls, name, timed(key, getattr(cls, name))))
        started = time.perf_counter()
        result = gs.run(scenario)
        ended = time.perf_counter()
    return result, {
        "setup_s": marks["engine"] - started,
        "engine_s": marks["tables"] - marks["engine"],
        "engine_cpu_s": marks["tables_cpu"] - marks["engine_cpu"],
        "tables_s": marks["engine_end"] - marks["tables"],
        "after_s": ended - marks["engine_end"],
        "total_s": ended - started,
    }


def phases(figures: Figures) -> str:
    """What the whole ``gridsim.run`` took, and its parts other than the engine's run."""
    return (
        f"gridsim.run {figures['total_s']:.2f} s = set-up {figures['setup_s']:.2f} + engine "
        f"{figures['engine_s']:.2f} + summary and tables {figures['tables_s']:.2f} + economics "
        f"{figures['after_s']:.2f}"
    )
