"""Running a scenario: the engine chosen by fidelity, and the Result an analyst gets back."""

from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gridsim.capacity_timeline import with_capacity_series
from gridsim.economics import DEFAULT as DEFAULT_ASSUMPTIONS
from gridsim.economics import economics_summary
from gridsim.estimate import fidelity_of
from gridsim.fleet import summary as fleet_summary
from gridsim.latency_targets import target_report
from gridsim.market.outputs import market_summary
from gridsim.scenario import Scenario
from gridsim.scenario.resolved import dump_resolved

if TYPE_CHECKING:
    from gridsim.grid import Grid
    from gridsim.training.plan import TrainingPlan

__all__ = ["Result", "fidelity_of", "manifest", "run"]  # fidelity_of lives in estimate.py


@dataclass
class Result:
    """One run: ``summary`` (the dict written to summary.json) and tidy tables."""

    scenario: Scenario
    summary: dict[str, Any]
    timeseries: pd.DataFrame
    requests: pd.DataFrame
    flows: pd.DataFrame = field(default_factory=pd.DataFrame)  # class x region x pool served
    pools: pd.DataFrame = field(default_factory=pd.DataFrame)  # static pool attributes
    manifest: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        req = self.summary.get("requests", {})
        lat = self.summary.get("latency_s", {})
        return (
            f"Result({self.scenario.name!r}, seed={self.summary.get('seed')}, "
            f"served={req.get('served')}/{req.get('arrived')}, "
            f"p95 latency={lat.get('p95')})"
        )


def run(
    scenario: Scenario,
    seed: int | None = None,
    fidelity: str | None = None,
    progress: bool = False,
) -> Result:
    """Simulate ``scenario``; same scenario and seed give identical results."""
    # SimPy and the engines load only when a run starts: reading or comparing runs needs
    # ``Result`` alone.
    from gridsim.engine.events import schedule
    from gridsim.engine.flow import FlowEngine
    from gridsim.engine.request import RequestEngine
    from gridsim.grid import build_grid

    seed = scenario.seed if seed is None else seed
    chosen = fidelity_of(scenario, fidelity)
    if chosen not in ("request", "flow"):
        raise ValueError(f"unknown fidelity {chosen!r}; use request or flow")
    # The result's scenario is the one that ran: its resolved YAML re-runs as is, with the same
    # engine and seed, whatever the command line chose.
    scenario = scenario.model_copy(update={"seed": seed, "fidelity": chosen})
    started = time.perf_counter()
    grid = build_grid(scenario)
    # training: the inference-only flow run it is planned on (and compared with), then the plan
    plan, inference_only = training_plan(scenario, grid, seed)
    engine: RequestEngine | FlowEngine
    if chosen == "request":
        engine = RequestEngine(grid, seed=seed, progress=progress)
    else:
        engine = FlowEngine(grid, seed=seed, progress=progress)
    output = engine.run(schedule(engine) + (plan.actions(engine) if plan is not None else []))
    wall_s = time.perf_counter() - started
    summary = {
        "scenario": scenario.name,
        "seed": seed,
        "fidelity": chosen,
        "horizon_s": scenario.horizon.duration,
        **output.summary,
    }
    if chosen == "request" and grid.sample is not None:  # demand.sample_pools: whole-grid totals
        summary = grid.sample.apply(summary)
    notes = list(grid.notes)
    power = scenario.power
    if power is not None and power.hourly and scenario.outputs.timeseries_interval > 3600.0:
        notes.append(
            "power.hourly with outputs.timeseries_interval over an hour: each interval is "
            "billed at the mean price and carbon of its hours (exact for a load flat within "
            "it); set outputs.timeseries_interval: 1h or less for hour-by-hour bills"
        )
    if notes:
        summary["notes"] = notes
    # the three policy latency targets on the topology (no simulation: reads the graph)
    summary["topology"] = target_report(grid.topology)
    if grid.fleet is not None:  # the trace from the fleet inventory to the pool sizes
        summary["fleet"] = fleet_summary(grid.fleet, grid.fleet_pools)
    result = Result(
        scenario=scenario,
        summary=summary,
        timeseries=output.timeseries,
        requests=output.requests,
        flows=output.flows,
        pools=grid.pools_table(),
        manifest=manifest(scenario, seed, chosen, wall_s),
    )
    # capacity over time (replicas, cards, IT power) from the scenario's build-outs and
    # retirements, the same timeline economics bills
    result.timeseries = with_capacity_series(result, DEFAULT_ASSUMPTIONS.job_slot_power_w)
    if plan is not None:  # the cards trained, which economics bills with the pools'
        training_rows = plan.series(scenario.outputs.timeseries_interval, scenario.horizon.duration)
        result.timeseries = pd.concat([result.timeseries, training_rows], ignore_index=True)
    result.summary["economics"] = economics_summary(result)
    if plan is not None:
        from gridsim.training.outcome import training_summary

        assert inference_only is not None
        result.summary["training"] = training_summary(plan, result, inference_only)
    if scenario.power is not None:
        from gridsim.power.summary import power_summary

        result.summary["power"] = power_summary(result)
    # plans, models and tiers of a token market (or a model mix): revenue, breakage, shedding
    market = market_summary(result)
    if market is not None:
        result.summary["market"] = market
    return result


def training_plan(
    scenario: Scenario, grid: Grid, seed: int
) -> tuple[TrainingPlan | None, Result | None]:
    """The scenario's training plan and the inference-only flow run it was planned on (None,
    None without a training: block). ``plan.actions(engine)`` are the engine's extra events."""
    if scenario.training is None:
        return None, None
    from gridsim.training.plan import plan_training

    inference_only = _inference_only(scenario, seed)
    return plan_training(grid, inference_only.timeseries), inference_only


def _inference_only(scenario: Scenario, seed: int) -> Result:
    """The scenario without its training, at flow fidelity: the hour-by-hour inference load
    the co-scheduler plans on, and the inference-only operation a run is compared with."""
    # its SLA attainment, series and economics are read; latency distributions are not
    outputs = scenario.outputs.model_copy(update={"latency_statistics": False})
    alone = scenario.model_copy(update={"training": None, "fidelity": "flow", "outputs": outputs})
    return run(alone, seed=seed, fidelity="flow")


def manifest(scenario: Scenario, seed: int, fidelity: str, wall_s: float) -> dict[str, Any]:
    """Versions, seed, hashes of every input and the wall time: what reproduces a run."""
    from importlib.metadata import version

    from gridsim import __version__

    inputs = {"scenario.resolved.yaml": _sha256(dump_resolved(scenario).encode())}
    for path in sorted(_input_files(scenario)):
        try:
            inputs[path] = _sha256(Path(path).read_bytes())
        except OSError:
            inputs[path] = "unreadable"
    return {
        "gridsim": __version__,
        "python": platform.python_version(),
        "packages": {p: version(p) for p in ("simpy", "numpy", "pandas", "networkx", "pydantic")},
        "seed": seed,
        "fidelity": fidelity,
        "inputs_sha256": inputs,
        "wall_time_s": round(wall_s, 3),
    }


def _input_files(scenario: Scenario) -> set[str]:
    files = set()
    for cls in scenario.demand.classes:
        arrival_path = getattr(cls.arrival, "path", None)
        if arrival_path:
            files.add(arrival_path)
        for dist in (cls.input_tokens, cls.output_tokens, cls.service):
            trace = getattr(dist, "trace", None)
            if trace:
                files.add(trace)
    return files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
