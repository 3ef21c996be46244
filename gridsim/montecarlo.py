"""Monte Carlo over a scenario's uncertain inputs (its ``uncertainty:`` block):
``gridsim run FILE --draws N``.

Draw i sets every parameter to a value from a numpy Generator seeded by (the block's seed, i),
in the block's order, and runs with the scenario's own seed, so that only the parameters
differ between draws and the same scenario gives the same draws. The draws are tasks of the
sweep machinery (``gridsim.sweep.run_sweep``: a local Dask cluster or an existing one), written
as a sweep folder ``<run folder>/draws/`` (``draw=<i>/`` per draw, without figures, report or
per-request tables), so an interrupted Monte Carlo keeps its finished draws and a re-run into
the same run folder resumes. From the draws come ``draws.parquet`` (one row per draw: the
drawn values and the KPIs), the bands (P10 / P50 / P90 of the shortfall day, SLA attainment
and cost per million tokens) in the central run's ``summary.json`` under ``uncertainty``, and
the fan chart ``figures/fan.png``.

Percentiles interpolate linearly between order statistics (numpy's default). A draw with no
shortfall within the horizon is censored: it ranks above every finite shortfall, and a
percentile that reaches a censored draw is unknown (None, read "after the horizon").
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gridsim.engine.capacity import tightest_headroom
from gridsim.kpis import REGISTRY
from gridsim.kpis import value as registry_value
from gridsim.scenario import ScenarioError, resolve_file, validate
from gridsim.scenario.errors import Mark, Problem
from gridsim.scenario.merging import Layer, Locator, PathError, parse_path, resolve_path, set_path
from gridsim.scenario.resolved import dump_resolved
from gridsim.scenario.schema import Scenario
from gridsim.scenario.uncertainty_spec import Choice, Lognormal, Parameter, Triangular, Uniform
from gridsim.sweep import Plan, RunTask, SweepResult, run_sweep

DRAWS_DIR = "draws"  # the draws' sweep folder, inside the central run's folder
DRAWS_TABLE = "draws.parquet"
FAN_FIGURE = "fan.png"
PERCENTILES = (10, 50, 90)
# Draws write what the bands need: no figures, report, per-request table or latency
# distributions (SLA attainment, the shortfall and cost do not need them).
DRAW_OUTPUTS = {
    ("outputs", "figures"): False,
    ("outputs", "requests"): False,
    ("outputs", "latency_statistics"): False,
}


@dataclass(frozen=True)
class BandKpi:
    """A KPI the bands cover, by its name in the KPI registry (``gridsim.kpis``: path, unit and
    definition live there), and whether a missing value means "after the horizon"."""

    name: str
    censored: bool = False

    @property
    def unit(self) -> str:
        return REGISTRY[self.name].unit


BAND_KPIS = (
    BandKpi("shortfall_day", censored=True),
    BandKpi("sla_attainment"),
    BandKpi("cost_cny_per_m_tokens"),
)


@dataclass
class DrawPlan:
    """The draws of one scenario: the sweep plan that runs them and each draw's values."""

    plan: Plan
    seed: int  # the draws' seed (the block's, else the scenario's)
    parameters: list[Parameter]
    values: list[dict[str, Any]]  # per draw: path -> drawn value
    start: dt.date
    horizon_s: float


# --- drawing ---------------------------------------------------------------------------


def draw_values(parameters: Sequence[Parameter], seed: int, index: int) -> dict[str, Any]:
    """Draw ``index``'s value of every parameter: one Generator seeded by (seed, index), the
    parameters drawn in order (so draw i is the same whatever N is)."""
    rng = np.random.default_rng([seed, index])
    return {p.path: sample(p, rng) for p in parameters}


def sample(param: Parameter, rng: np.random.Generator) -> Any:
    """One value of ``param`` from ``rng`` (a float, or one of a choice's values)."""
    if isinstance(param, Triangular):
        return float(rng.triangular(param.low, param.mode, param.high))
    if isinstance(param, Uniform):
        return float(rng.uniform(param.low, param.high))
    if isinstance(param, Lognormal):
        return float(param.median * math.exp(param.sigma * rng.standard_normal()))
    if isinstance(param, Choice):
        weights = np.asarray(param.weights or [1.0] * len(param.values), dtype=float)
        return copy.deepcopy(param.values[int(rng.choice(len(weights), p=weights / weights.sum()))])
    raise TypeError(f"unknown distribution {param!r}")  # the schema admits no other


def plan_draws(
    file: str | Path,
    draws: int,
    scenarios: Sequence[str] = (),
    sets: Sequence[str] = (),
    seed: int | None = None,
    fidelity: str | None = None,
) -> DrawPlan:
    """The scenario (as ``gridsim run`` loads it) drawn ``draws`` times, every draw validated
    before anything runs: a draw that makes the scenario invalid is a ``ScenarioError`` naming
    the draw, its values and the problem (narrow the distribution)."""
    if draws < 1:
        raise ValueError(f"--draws must be at least 1 (got {draws})")
    base = resolve_file(Path(file), scenarios, sets)
    if seed is not None:
        base.data["seed"] = seed
        base.locator.add(Layer({("seed",): Mark(f"--seed {seed}")}, {}))
    scenario = validate(copy.deepcopy(base.data), base.locator)
    if scenario.uncertainty is None:
        raise ValueError(
            f"{file} has no uncertainty: block, so there is nothing to draw; add one "
            "(uncertainty: {parameters: [{path: demand.growth.rate_per_month, dist: triangular, "
            "low: .., mode: .., high: ..}]}) or run without --draws"
        )
    block = scenario.uncertainty
    draw_seed = scenario.seed if block.seed is None else block.seed
    whole = _integer_paths(scenario, block.parameters)
    data = copy.deepcopy(base.data)
    for key in ("sweep", "uncertainty"):  # a draw is a plain run
        data.pop(key, None)
    if fidelity not in (None, "auto"):
        data["fidelity"] = fidelity
    for path, value in DRAW_OUTPUTS.items():
        set_path(data, path, value)
    tasks: list[RunTask] = []
    values: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for i in range(draws):
        drawn = draw_values(block.parameters, draw_seed, i)
        drawn = {p: round(v) if p in whole else v for p, v in drawn.items()}
        values.append(drawn)
        text = _draw_text(data, base.locator, drawn, i, problems)
        key = hashlib.sha256(f"{text}\nseed={scenario.seed}".encode()).hexdigest()
        tasks.append(RunTask(i, 0, (), scenario.seed, f"draw={i}", key, text))
        if len(problems) >= 10:  # enough to see what is wrong
            break
    if problems:
        raise ScenarioError(problems)
    source = {
        "file": str(Path(file).resolve()),
        "scenarios": list(scenarios),
        "sets": list(sets),
        "draws": draws,
        "draw_seed": draw_seed,
        "parameters": [p.path for p in block.parameters],
    }
    plan = Plan(f"{scenario.name}-draws", [], [scenario.seed], tasks, source)
    return DrawPlan(
        plan,
        draw_seed,
        list(block.parameters),
        values,
        scenario.horizon.start,
        scenario.horizon.duration,
    )


def _integer_paths(scenario: Scenario, parameters: Sequence[Parameter]) -> set[str]:
    """Paths whose value in the scenario is an integer (replicas, slots): draws are rounded
    there, as the field would refuse a fraction."""
    dump = scenario.model_dump()
    out = set()
    for param in parameters:
        if isinstance(param, Choice):
            continue
        node: Any = dump
        for part in resolve_path(dump, parse_path(param.path)):
            node = node[part]
        if isinstance(node, int) and not isinstance(node, bool):
            out.add(param.path)
    return out


def _draw_text(
    data: dict[str, Any],
    locator: Locator,
    drawn: dict[str, Any],
    index: int,
    problems: list[Problem],
) -> str | None:
    """The resolved YAML of one draw, or None (and its problems added) when it is invalid."""
    draw = copy.deepcopy(data)
    where = Locator(list(locator.layers))
    label = ", ".join(f"{p}={_short(v)}" for p, v in drawn.items())
    mark = Mark(f"draw {index} ({label})")
    try:
        for path, value in drawn.items():
            target = resolve_path(draw, parse_path(path))
            set_path(draw, target, value)
            where.add(Layer({target: mark}, {target: mark}))
        return dump_resolved(validate(draw, where))
    except PathError as exc:
        problems.append(Problem((), str(exc), mark))
    except ScenarioError as exc:
        hint = "; narrow the parameter's distribution to values the field accepts"
        problems += [Problem(p.path, p.message + hint, p.mark or mark) for p in exc.problems]
    return None


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


# --- running ---------------------------------------------------------------------------


def run_draws(
    draw_plan: DrawPlan,
    run_dir: Path,
    workers: int | None = None,
    scheduler: str | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run the unfinished draws into ``run_dir/draws`` on the sweep machinery."""
    return run_sweep(draw_plan.plan, run_dir / DRAWS_DIR, workers, scheduler, on_result)


def kpi_value(summary: dict[str, Any], kpi: BandKpi) -> float | None:
    """``kpi`` of one run's summary, through the KPI registry (None where it has none)."""
    value = registry_value(summary, kpi.name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def read_draws(draw_plan: DrawPlan, result: SweepResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``draws.parquet`` (one row per draw: draw, status, error, the drawn values, the KPIs,
    and whether the shortfall is censored) and the tightest model's SLO headroom of every
    successful draw
    (draw, time_s, value)."""
    runs = result.runs.set_index("run")
    rows: list[dict[str, Any]] = []
    series: list[pd.DataFrame] = []
    for task, drawn in zip(draw_plan.plan.tasks, draw_plan.values, strict=True):
        rec = runs.loc[task.run] if task.run in runs.index else None
        status = str(rec["status"]) if rec is not None else "cancelled"
        row: dict[str, Any] = {"draw": task.run, "status": status}
        row["error"] = None if rec is None or rec["error"] is None else str(rec["error"])
        row |= {p.path: drawn[p.path] for p in draw_plan.parameters}
        row |= {k.name: None for k in BAND_KPIS} | {"shortfall_censored": None}
        folder = result.out_dir / task.folder
        if status == "ok":
            summary = json.loads((folder / "summary.json").read_text("utf-8"))
            row |= {k.name: kpi_value(summary, k) for k in BAND_KPIS}
            # Only a run that measures capacity (flow fidelity) can be censored.
            if isinstance(summary.get("capacity"), dict):
                row["shortfall_censored"] = row["shortfall_day"] is None
            series.append(_headroom(folder, task.run))
        rows.append(row)
    table = pd.DataFrame(rows)
    for param in draw_plan.parameters:  # parquet columns hold one type: mixed choices as text
        column = table[param.path]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in column):
            table[param.path] = column.map(_short)
    for kpi in BAND_KPIS:
        table[kpi.name] = pd.to_numeric(table[kpi.name], errors="coerce").astype(float)
    table["error"] = table["error"].astype(object)
    table["shortfall_censored"] = table["shortfall_censored"].astype("boolean")
    columns = ["draw", "time_s", "value"]
    headroom = pd.concat(series, ignore_index=True) if series else pd.DataFrame(columns=columns)
    return table, headroom


def _headroom(folder: Path, draw: int) -> pd.DataFrame:
    """The SLO headroom of the tightest model in one draw (the only series the fan chart
    needs): the shortfall's own measure, below 0 where a model is beyond its SLO capacity."""
    models = pd.read_parquet(
        folder / "timeseries.parquet", filters=[("entity_kind", "==", "model")]
    )
    return tightest_headroom(models).assign(draw=draw)[["draw", "time_s", "value"]]


# --- bands -----------------------------------------------------------------------------


def censored_percentile(values: Sequence[float | None], q: float) -> float | None:
    """The ``q``-th percentile (linear between order statistics) of ``values``, where None is
    censored: above every number. None when the percentile reaches a censored value."""
    if not values:
        return None
    finite = sorted(float(v) for v in values if v is not None)
    ranked = finite + [math.inf] * (len(values) - len(finite))
    pos = q / 100.0 * (len(ranked) - 1)
    lo, frac = math.floor(pos), pos - math.floor(pos)
    hi = min(lo + 1, len(ranked) - 1)
    if math.isinf(ranked[lo]) or (frac > 0 and math.isinf(ranked[hi])):
        return None
    return ranked[lo] + frac * (ranked[hi] - ranked[lo]) if frac > 0 else ranked[lo]


def band(values: Sequence[float | None], kpi: BandKpi) -> dict[str, Any]:
    """P10 / P50 / P90 of one KPI over the draws, with its unit and censored count."""
    if kpi.censored:
        kept: list[float | None] = list(values)
    else:  # a draw without the KPI (nothing ended, say) tells nothing about it
        kept = [v for v in values if v is not None]
    out: dict[str, Any] = {f"p{q}": censored_percentile(kept, q) for q in PERCENTILES}
    unit = kpi.unit
    censored = sum(v is None for v in kept) if kpi.censored else 0
    return out | {"unit": unit, "censored": censored}


def uncertainty_block(draw_plan: DrawPlan, table: pd.DataFrame) -> dict[str, Any]:
    """The ``uncertainty`` block of the central run's summary.json."""
    ok = table[table["status"] == "ok"]
    bands = {}
    for kpi in BAND_KPIS:
        if kpi.censored and not ok["shortfall_censored"].notna().any():
            continue  # no draw measured capacity (request fidelity): no shortfall band
        values = [None if pd.isna(v) else float(v) for v in ok[kpi.name]]
        if not kpi.censored and all(v is None for v in values):
            continue
        bands[kpi.name] = band(values, kpi)
    return {  # the contract's keys only (failed draws are in draws.parquet)
        "draws": len(ok),
        "parameters": [p.model_dump(exclude_defaults=True) for p in draw_plan.parameters],
        "bands": bands,
    }


def day_to_date(start: dt.date, day: float) -> str:
    """A shortfall day (days from the start) as the date it falls on."""
    return (dt.datetime.combine(start, dt.time()) + dt.timedelta(days=day)).date().isoformat()


# --- writing into the central run's folder ---------------------------------------------


def finish(
    run_dir: Path,
    result: Any,
    draw_plan: DrawPlan,
    table: pd.DataFrame,
    headroom: pd.DataFrame,
) -> dict[str, Any]:
    """Add the Monte Carlo to a written run folder: draws.parquet, the uncertainty block in
    summary.json, figures/fan.png and the report rendered again (with the block). Each file
    is written beside and renamed into place, so a folder is never left half-written."""
    from gridsim.report import write_figures, write_report
    from gridsim.report.fan import write_fan

    block = uncertainty_block(draw_plan, table)
    result.summary["uncertainty"] = block
    _replace(run_dir / DRAWS_TABLE, lambda tmp: table.to_parquet(tmp, index=False))
    text = json.dumps(result.summary, indent=2, sort_keys=False, allow_nan=False) + "\n"
    _replace(run_dir / "summary.json", lambda tmp: tmp.write_text(text, "utf-8"))
    figures: list[Path] = []
    if result.scenario.outputs.figures:
        figures = write_figures(result, run_dir / "figures")
        central = tightest_headroom(result.timeseries)
        fan = write_fan(
            headroom,
            table.loc[table["status"] == "ok", "shortfall_day"].tolist(),
            run_dir / "figures" / FAN_FIGURE,
            start=draw_plan.start,
            horizon_s=draw_plan.horizon_s,
            central=central[["time_s", "value"]],
            title=f"{result.scenario.name}: {len(headroom['draw'].unique())} draws",
        )
        figures += [fan] if fan is not None else []
        _replace(run_dir / "report.html", lambda tmp: write_report(result, tmp, figures))
    return block


def _replace(path: Path, write: Callable[[Path], Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
