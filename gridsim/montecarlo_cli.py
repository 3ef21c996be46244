"""What ``gridsim run FILE --draws N`` does around the central run (``gridsim.cli.run``): plans
the draws before anything is simulated, resumes the draws of a run folder of the same scenario,
runs them with progress, writes the bands into the run folder and prints them."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from gridsim.console import err, guard, out
from gridsim.montecarlo import (
    BAND_KPIS,
    DRAWS_DIR,
    DRAWS_TABLE,
    FAN_FIGURE,
    DrawPlan,
    day_to_date,
    finish,
    plan_draws,
    read_draws,
    run_draws,
)

MAX_FAILURES_SHOWN = 10
LABELS = {  # band -> how the console names it
    "shortfall_day": "shortfall date",
    "sla_attainment": "SLA attainment",
    "cost_cny_per_m_tokens": "cost per million tokens",
}


@dataclass
class MonteCarlo:
    draw_plan: DrawPlan
    workers: int | None
    scheduler: str | None
    resume_dir: Path | None  # a finished central run of this very scenario: its draws resume


def prepare(
    file: Path,
    scenario_names: list[str],
    sets: list[str],
    seed: int | None,
    fidelity: str,
    scenario: Any,
    draws: int | None,
    workers: int | None,
    scheduler: str | None,
    out_dir: Path | None,
    overwrite: bool,
) -> MonteCarlo | None:
    """Check the options and plan (and validate) every draw; None without ``--draws``. Exits
    2 on bad input, before anything is simulated."""
    if draws is None:
        if workers is not None or scheduler is not None:
            err.print("error: --workers and --scheduler go with --draws N (a Monte Carlo)")
            raise typer.Exit(2)
        return None
    if workers is not None and scheduler is not None:
        err.print(
            "error: give --workers (a local cluster) or --scheduler (a running one), not both"
        )
        raise typer.Exit(2)
    plan = guard(lambda: plan_draws(file, draws, scenario_names, sets, seed, fidelity))
    resume = None
    if out_dir is not None and not overwrite and _same_run(out_dir, scenario, fidelity):
        resume = out_dir
    return MonteCarlo(plan, workers, scheduler, resume)


def _same_run(folder: Path, scenario: Any, fidelity: str) -> bool:
    """Whether ``folder`` is a finished gridsim run of exactly this scenario, seed and engine."""
    from gridsim.output import is_gridsim_run
    from gridsim.scenario.resolved import dump_resolved

    if not is_gridsim_run(folder):
        return False
    try:
        manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
        recorded = manifest["inputs_sha256"]["scenario.resolved.yaml"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    ran = scenario.model_copy(update={"fidelity": fidelity})  # as gridsim.run records it
    return bool(recorded == hashlib.sha256(dump_resolved(ran).encode()).hexdigest())


def run_and_report(mc: MonteCarlo, run_dir: Path, result: Any | None = None) -> None:
    """Run the draws into ``run_dir/draws``, add the bands to the run folder, print them.
    ``result``: the central run (read back from ``run_dir`` when resuming)."""
    from gridsim.output import read_run

    if result is None:
        result = guard(lambda: read_run(run_dir))
        err.print(f"resuming the draws of {run_dir} (its central run is done)", markup=False)
    plan = mc.draw_plan
    total = len(plan.plan.tasks)
    where = mc.scheduler or f"{mc.workers or 'one per CPU'} local worker(s)"
    out.print(f"{total} draws of {len(plan.parameters)} parameters on {where}", markup=False)
    finished = 0

    def seen(record: dict[str, Any]) -> None:
        nonlocal finished
        finished += 1
        out.print(
            f"draw {record['run']} ({finished}/{total}): {_progress(record, plan)}", markup=False
        )

    try:
        sweep = guard(lambda: run_draws(plan, run_dir, mc.workers, mc.scheduler, on_result=seen))
    except KeyboardInterrupt:
        sweep = None
    if sweep is None or sweep.interrupted:
        done = 0 if sweep is None else int((sweep.runs["status"] == "ok").sum())
        err.print(
            f"interrupted: {done} of {total} draws finished and are kept in "
            f"{run_dir / DRAWS_DIR}; run the same command with --out {run_dir} to resume",
            markup=False,
        )
        raise typer.Exit(130)
    table, headroom = read_draws(plan, sweep)
    block = finish(run_dir, result, plan, table, headroom)
    _print_bands(block, plan)
    out.print(f"draws: {run_dir / DRAWS_TABLE}", markup=False)
    if (run_dir / "figures" / FAN_FIGURE).exists():
        out.print(f"fan chart: {run_dir / 'figures' / FAN_FIGURE}", markup=False)
    failed = table[table["status"] == "failed"]
    for row in failed.head(MAX_FAILURES_SHOWN).itertuples():
        err.print(f"draw {row.draw} failed: {row.error}", markup=False, highlight=False)
    if len(failed):
        err.print(f"{len(failed)} of {total} draws failed; the bands use the others")
        raise typer.Exit(1)


def _progress(record: dict[str, Any], plan: DrawPlan) -> str:
    if record.get("reused"):
        return "already done"
    if record["status"] != "ok":
        return f"{record['status']}: {str(record.get('error') or '').splitlines()[0:1]}"
    kpis = record.get("kpis") or {}  # the sweep's KPIs of the draw, by registry name
    day = kpis.get("shortfall_day", kpis.get("shortfall_days"))  # (the name before the registry)
    shortfall = day_to_date(plan.start, day) if day is not None else "none in the horizon"
    return (
        f"shortfall {shortfall}, SLA attainment {_fmt(kpis.get('sla_attainment'), 'fraction')}, "
        f"cost {_fmt(kpis.get('cost_cny_per_m_tokens'), 'CNY/M tokens')} "
        f"({record.get('wall_time_s')} s)"
    )


def _print_bands(block: dict[str, Any], plan: DrawPlan) -> None:
    out.print(f"bands over {block['draws']} draws (P10 / P50 / P90):", markup=False)
    for kpi in BAND_KPIS:
        band = block["bands"].get(kpi.name)
        if band is None:
            continue
        if kpi.censored:
            cells = [
                "after the horizon"
                if band[f"p{q}"] is None
                else day_to_date(plan.start, band[f"p{q}"])
                for q in (10, 50, 90)
            ]
            end = day_to_date(plan.start, plan.horizon_s / 86400.0)
            note = f"  ({band['censored']} of {block['draws']} draws: none by {end})"
        else:
            cells = [_fmt(band[f"p{q}"], band["unit"]) for q in (10, 50, 90)]
            note = ""
        out.print(f"  {LABELS.get(kpi.name, kpi.name):<24} {' / '.join(cells)}{note}", markup=False)


def _fmt(value: float | None, unit: str) -> str:
    """A band value for people (gridsim.numbers when the unit is one it knows)."""
    from gridsim.numbers import human

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return human(None)
    if unit in ("fraction", "%"):
        return human(value, "%")
    return f"{value:.3g} {unit}"
