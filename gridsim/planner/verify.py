"""A plan as scenario events, and its check by simulation (the flow engine).

A plan's build-outs are ``build_out`` events: ordered ``lead_time`` before the period they
serve from, in service at its start. The plan's scenario is the original with those events
after its own; ``simulate`` runs it at flow fidelity (no figures) and ``check`` reads whether
every class met its SLO for at least ``plan.slo_attainment`` of its requests (SLA attainment:
the share of a class's arrivals that ended and met every SLO, so dropped and abandoned work
counts against it).
"""

from __future__ import annotations

import copy
import datetime as dt
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridsim.planner.model import Solution
from gridsim.planner.problem import Problem
from gridsim.scenario import load_scenario_text, validate
from gridsim.scenario.merging import Locator
from gridsim.scenario.resolved import dump_resolved
from gridsim.scenario.units import format_duration


@dataclass(frozen=True)
class Check:
    """What a simulation of a plan shows."""

    sla_by_class: dict[str, float]
    sla_by_pool: dict[str, float]  # pools (stations) that served anything
    shed_share: float  # dropped + abandoned over arrived, all classes
    target: float
    cost_cny: float  # economics: electricity + capex (+ network) over the horizon
    capex_cny: float
    electricity_cny: float
    wall_s: float

    @property
    def breached(self) -> list[str]:
        """Classes below the SLO target, worst first."""
        low = [(v, c) for c, v in self.sla_by_class.items() if v < self.target - 1e-12]
        return [c for _, c in sorted(low)]

    @property
    def breached_pools(self) -> list[str]:
        """Pools (``node/pool``, a station's stage dropped) whose requests fell below the
        target: where the simulation queued."""
        low = {p.split(":")[0] for p, v in self.sla_by_pool.items() if v < self.target - 1e-12}
        return sorted(low)

    @property
    def met(self) -> bool:
        return not self.breached

    @property
    def worst_class(self) -> tuple[str, float]:
        c = min(self.sla_by_class, key=lambda k: self.sla_by_class[k])
        return c, self.sla_by_class[c]

    def as_dict(self) -> dict[str, Any]:
        return {
            "met": self.met,
            "target": self.target,
            "sla_attainment_by_class": self.sla_by_class,
            "breached": self.breached,
            "breached_pools": self.breached_pools,
            "shed_share": self.shed_share,
            "cost_cny": self.cost_cny,
            "capex_cny": self.capex_cny,
            "electricity_cny": self.electricity_cny,
            "wall_s": self.wall_s,
        }


def build_events(problem: Problem, solution: Solution) -> list[dict[str, Any]]:
    """The plan's build-outs as scenario events (YAML-ready), by period then pool."""
    out = []
    for t in range(len(problem.periods)):
        for u, unit in enumerate(problem.units):
            n = int(solution.builds[u, t])
            if n <= 0:
                continue
            lead = float(problem.lead_s[u])
            event: dict[str, Any] = {
                "kind": "build_out",
                "at": _at(problem, problem.order_s(u, t)),
                "node": unit.node,
                "pool": unit.pool,
                ("replicas" if unit.kind == "llm" else "slots"): n,
            }
            if lead > 0:
                event["lead_time"] = format_duration(lead)
            out.append(event)
    return out


def _at(problem: Problem, seconds: float) -> str:
    """An event time: the date when it falls on a midnight (always, for whole-day periods and
    leads), else seconds after the horizon start."""
    start = problem.scenario.horizon.start
    if seconds % 86400.0 == 0:
        return (start + dt.timedelta(days=seconds / 86400.0)).isoformat()
    return format_duration(seconds)


def with_events(data: dict[str, Any], events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The scenario data with ``events`` after its own."""
    out = copy.deepcopy(data)
    out["events"] = [*out.get("events", []), *copy.deepcopy(list(events))]
    return out


def verification_text(data: dict[str, Any], locator: Locator | None) -> str:
    """The resolved YAML a verification simulates: the plan's scenario, flow fidelity, no
    figures or per-request table (they change nothing the check reads)."""
    run = copy.deepcopy(data)
    for key in ("sweep", "uncertainty"):
        run.pop(key, None)
    run["fidelity"] = "flow"
    outputs = dict(run.get("outputs") or {})
    outputs.update({"figures": False, "requests": False})
    run["outputs"] = outputs
    return dump_resolved(validate(run, locator))


def simulate(text: str, target: float) -> Check:
    """Run a resolved scenario at flow fidelity and check it against ``target``."""
    from gridsim.run import run

    started = time.perf_counter()
    scenario = load_scenario_text(text, "<plan>")
    result = run(scenario, fidelity="flow")
    return check(result.summary, target, time.perf_counter() - started)


def check(summary: dict[str, Any], target: float, wall_s: float = 0.0) -> Check:
    by_class = summary.get("by_class", {})
    sla = {c: float(v.get("sla_attainment") or 0.0) for c, v in by_class.items()}
    by_pool = {
        p: float(v["sla_attainment"])
        for p, v in summary.get("by_pool", {}).items()
        if v.get("sla_attainment") is not None and (v.get("requests") or {}).get("arrived")
    }
    req = summary.get("requests", {})
    arrived = float(req.get("arrived") or 0.0)
    shed = float(req.get("dropped") or 0.0) + float(req.get("abandoned") or 0.0)
    econ = summary.get("economics", {})
    return Check(
        sla_by_class=sla,
        sla_by_pool=by_pool,
        shed_share=shed / arrived if arrived > 0 else 0.0,
        target=target,
        cost_cny=float(econ.get("cost_cny") or 0.0),
        capex_cny=float(econ.get("capex_cny") or 0.0),
        electricity_cny=float(econ.get("electricity_cny") or 0.0),
        wall_s=wall_s,
    )


def simulate_many(
    texts: Sequence[str],
    target: float,
    workers: int | None = None,
    on_done: Callable[[int], None] | None = None,
) -> list[Check]:
    """``simulate`` each text, on ``workers`` processes (default: one per CPU, at most the
    number of texts); results in the texts' order."""
    n = len(texts)
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    if workers == 1:
        out = []
        for i, text in enumerate(texts):
            out.append(simulate(text, target))
            if on_done:
                on_done(i)
        return out
    results: list[Check | None] = [None] * n
    # spawn, not fork: the solver (HiGHS) has started OpenMP threads in this process
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(simulate, text, target): i for i, text in enumerate(texts)}
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            if on_done:
                on_done(i)
    return [r for r in results if r is not None]


def breached_units(problem: Problem, solution: Solution, checks: Sequence[Check]) -> list[int]:
    """Units to take a margin off: the pools where the simulation fell short (its own
    routing), else every pool the plan sends the short classes' work to."""
    names = {p for ch in checks for p in ch.breached_pools}
    found = [u for u, unit in enumerate(problem.units) if unit.name in names]
    if found:
        return found
    classes = {c for ch in checks for c in ch.breached}
    idx = {problem.classes.index(c) for c in classes if c in problem.classes}
    return sorted({u for (u, c), load in solution.load.items() if c in idx and load > 0})


def tighten(problem: Problem, units: Sequence[int]) -> None:
    """Take ``plan.margin_step`` off the utilisation cap of ``units`` (never below 0.05)."""
    step = problem.spec.margin_step
    for u in units:
        problem.utilisation[u] = max(0.05, float(problem.utilisation[u]) - step)


def share_met(checks: Sequence[Check]) -> float:
    return float(np.mean([c.met for c in checks])) if checks else 0.0
