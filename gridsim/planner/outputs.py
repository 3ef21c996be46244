"""What ``gridsim plan`` writes: the plan as a scenario, its build-outs, the comparison with the
naive plans, a figure and a summary. Pure functions of a ``PlanOutcome``, plus ``write_plan``.

The folder (written whole, or not at all: ``gridsim.output``'s claim and rename):

- ``plan.yaml``: a scenario that ``extends`` the original file and adds the build-outs (its
  ``events:`` list holds the original's events first, as lists replace whole);
  ``gridsim run plan.yaml`` simulates the plan;
- ``builds.parquet`` and ``builds.csv``: one row per build-out of every plan compared;
- ``comparison.csv``: each plan's cost (the program's, and the simulation's economics) and SLO
  attainment;
- ``capacity_added.png``: cards added per node and period;
- ``summary.json`` and ``manifest.json``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from gridsim.output import PLAN_KIND
from gridsim.planner.model import Solution
from gridsim.planner.problem import Problem
from gridsim.planner.verify import Check
from gridsim.planner.workflow import PlanOutcome

OPTIMAL = "optimal"


def builds_table(problem: Problem, solution: Solution, plan: str = OPTIMAL) -> pd.DataFrame:
    """One row per (period, pool) with new units: when they are ordered and in service, how
    many replicas (LLM) or slots (jobs), whole cards, capex paid and facility power."""
    rows = []
    for t in range(len(problem.periods)):
        for u, unit in enumerate(problem.units):
            n = float(solution.builds[u, t])
            if n <= 0:
                continue
            rows.append(
                {
                    "plan": plan,
                    "period": problem.periods.label[t],
                    "in_service": problem.periods.start_date[t].isoformat(),
                    "ordered": problem.order_date(u, t).isoformat(),
                    "node": unit.node,
                    "pool": unit.pool,
                    "hub_role": unit.hub_role,
                    "model": unit.model,
                    "accelerator": unit.accelerator,
                    "replicas": n if unit.kind == "llm" else 0.0,
                    "slots": n if unit.kind == "job" else 0.0,
                    "cards": n * unit.cards,
                    "capex_paid_cny": n * unit.cash_cny,
                    "facility_power_mw": n * unit.whole_power_w * unit.pue / 1e6,
                }
            )
    columns = [
        "plan",
        "period",
        "in_service",
        "ordered",
        "node",
        "pool",
        "hub_role",
        "model",
        "accelerator",
        "replicas",
        "slots",
        "cards",
        "capex_paid_cny",
        "facility_power_mw",
    ]
    return pd.DataFrame(rows, columns=columns)


def cost_block(solution: Solution) -> dict[str, float]:
    """The program's cost of a plan over the horizon (CNY), split as economics splits it."""
    return {
        "cost_cny": solution.cost_cny,
        "capex_new_cny": solution.capex_cny,
        "energy_cny": solution.energy_cny,
        "carbon_price_cny": solution.carbon_cny,
        "existing_cards_cny": solution.existing_cny,
        "capex_paid_cny": solution.cash_cny,
        "carbon_t": solution.carbon_t,
    }


def comparison_table(outcome: PlanOutcome) -> pd.DataFrame:
    """The plan and the alternatives: program cost, simulated cost and SLO attainment."""
    rows = [_row(OPTIMAL, "least cost (this plan)", outcome.final.solution, outcome.final.check)]
    for alt in outcome.alternatives:
        rows.append(_row(alt.name, alt.rule, alt.solution, alt.check, alt.reasons))
    return pd.DataFrame(rows)


def _row(
    name: str,
    rule: str,
    solution: Solution | None,
    check: Check | None,
    reasons: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "plan": name,
        "rule": rule,
        "feasible": solution is not None,
        "cost_cny": solution.cost_cny if solution else np.nan,
        "capex_paid_cny": solution.cash_cny if solution else np.nan,
        "cards_added": solution.cards_added if solution else np.nan,
        "simulated_cost_cny": check.cost_cny if check else np.nan,
        "slo_met": check.met if check else False,
        "lowest_sla_attainment": check.worst_class[1] if check else np.nan,
        "lowest_class": check.worst_class[0] if check else "",
        "why_not": "; ".join(reasons or []),
    }


def plan_yaml(outcome: PlanOutcome, out_dir: Path) -> str:
    """The plan as a scenario extending the original (relative path from ``out_dir``)."""
    original = Path(os.path.abspath(outcome.file))
    try:
        extends = os.path.relpath(original, os.path.abspath(out_dir))
    except ValueError:  # another drive (Windows)
        extends = str(original)
    events = [*outcome.data.get("events", []), *outcome.final.events]
    body: dict[str, Any] = {
        "name": f"{outcome.scenario.name}-plan",
        "extends": extends,
        "description": (
            f"{outcome.scenario.name} with the build-outs gridsim plan chose "
            f"({len(outcome.final.events)} build-outs over {len(outcome.problem.periods)} "
            f"{outcome.problem.spec.period}s)"
        ),
        "events": events,
    }
    if "plan" in outcome.data:
        body["plan"] = outcome.data["plan"]
    flags = "".join(
        [f" --scenario {','.join(outcome.scenarios)}" if outcome.scenarios else ""]
        + [f" --set {s}" for s in outcome.sets]
    )
    header = (
        f"# Written by gridsim plan on {dt.date.today().isoformat()}: the original scenario with\n"
        "# the least-cost build-outs (the original's own events first). Simulate it with:\n"
        f"#   gridsim run plan.yaml{flags}\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)


def summary(outcome: PlanOutcome) -> dict[str, Any]:
    """summary.json: options, the problem's size, the plan's cost and cards, its checks (first
    and final round), the comparison, the robust check and notes."""
    problem = outcome.problem
    final, first = outcome.final, outcome.first
    table = builds_table(problem, final.solution)
    cards = (
        table.groupby("accelerator")["cards"].sum() if not table.empty else pd.Series(dtype=float)
    )
    out: dict[str, Any] = {
        "scenario": outcome.scenario.name,
        "file": str(outcome.file),
        "scenarios": list(outcome.scenarios),
        "sets": list(outcome.sets),
        "options": {k: v for k, v in outcome.options.items() if v is not None},
        "periods": [
            {"label": lab, "start": d.isoformat()}
            for lab, d in zip(problem.periods.label, problem.periods.start_date, strict=True)
        ],
        "problem": {
            "pools": len(problem.units),
            "classes": list(problem.classes),
            "variables": final.solution.variables,
            "constraints": final.solution.constraints,
            "status": final.solution.status,
            "solve_s": final.solution.solve_s,
        },
        "plan": {
            **cost_block(final.solution),
            "build_outs": len(final.events),
            "cards_added_by_accelerator": {str(k): float(v) for k, v in cards.items()},
            "job_slots_added": float(table["slots"].sum()) if not table.empty else 0.0,
        },
        "verification": {
            "rounds": len(outcome.rounds),
            "first": _round(first),
            "final": _round(final),
        },
        "comparison": _records(comparison_table(outcome)),
        "notes": list(problem.notes),
        "wall_s": outcome.wall_s,
    }
    if outcome.robust is not None:
        r = outcome.robust
        out["robust"] = {
            "quantile": r.quantile,
            "draws": r.draws,
            "checks": r.rounds,
            "share_meeting_slo": r.share_met,
            "models": list(r.models),
            "demand_factor_by_period": {
                problem.periods.label[t]: dict(zip(r.models, map(float, r.factors[t]), strict=True))
                for t in range(len(problem.periods))
            },
            "draws_met": [c.met for c in r.checks],
            "lowest_sla_attainment_by_draw": [c.worst_class[1] for c in r.checks],
        }
    return out


def _round(r: Any) -> dict[str, Any]:
    return {
        "round": r.number,
        "utilisation_min": float(np.min(r.utilisation)),
        "cost_cny": r.solution.cost_cny,
        "build_outs": len(r.events),
        "simulation": r.check.as_dict(),
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rec in frame.to_dict("records"):
        out.append(
            {str(k): (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()}
        )
    return out


def capacity_figure(table: pd.DataFrame, periods: tuple[str, ...]) -> Any:
    """Cards added per node and period, stacked (the ten largest nodes, the rest as other)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    cards = table[table["cards"] > 0]
    if cards.empty:
        ax.text(0.5, 0.5, "no cards added", ha="center", va="center", transform=ax.transAxes)
        return fig
    pivot = cards.pivot_table(index="period", columns="node", values="cards", aggfunc="sum")
    pivot = pivot.reindex([p for p in periods if p in pivot.index]).fillna(0.0)
    order = pivot.sum().sort_values(ascending=False).index
    top = list(order[:10])
    shown = pivot[top].copy()
    if len(order) > 10:
        shown["other"] = pivot[list(order[10:])].sum(axis=1)
    bottom = np.zeros(len(shown))
    colours = [f"C{i}" for i in range(10)] + ["0.6"]  # "other" in grey
    for node, colour in zip(shown.columns, colours, strict=False):
        ax.bar(shown.index, shown[node] / 1e3, bottom=bottom / 1e3, label=node, color=colour)
        bottom += shown[node].to_numpy()
    ax.set_ylabel("cards added (thousands)")
    ax.set_xlabel("in service from")
    ax.set_title("Capacity added by the plan, per node")
    ax.legend(fontsize=7, ncols=2, loc="upper left")
    return fig


def write_plan(outcome: PlanOutcome, folder: Path, final_dir: Path) -> None:
    """Write every file into ``folder`` (a temporary sibling of ``final_dir``, where it will be
    renamed: ``plan.yaml``'s ``extends`` is relative to ``final_dir``)."""
    problem = outcome.problem
    tables = [builds_table(problem, outcome.final.solution)]
    for alt in outcome.alternatives:
        if alt.solution is not None:
            tables.append(builds_table(alt.problem, alt.solution, alt.name))
    builds = pd.concat(tables, ignore_index=True)
    builds.to_parquet(folder / "builds.parquet", index=False)
    builds.to_csv(folder / "builds.csv", index=False)
    comparison_table(outcome).to_csv(folder / "comparison.csv", index=False)
    text = plan_yaml(outcome, final_dir)
    (folder / "plan.yaml").write_text(text, "utf-8")
    fig = capacity_figure(builds[builds["plan"] == OPTIMAL], problem.periods.label)
    fig.savefig(folder / "capacity_added.png", dpi=110)
    data = summary(outcome)
    (folder / "summary.json").write_text(
        json.dumps(data, indent=2, allow_nan=False, default=_jsonable) + "\n", "utf-8"
    )
    (folder / "manifest.json").write_text(
        json.dumps(manifest(outcome, text), indent=2) + "\n", "utf-8"
    )


def manifest(outcome: PlanOutcome, text: str) -> dict[str, Any]:
    from importlib.metadata import version

    from gridsim import __version__

    original = Path(outcome.file)
    return {
        "kind": PLAN_KIND,
        "gridsim": __version__,
        "python": platform.python_version(),
        "packages": {p: version(p) for p in ("scipy", "numpy", "pandas", "simpy")},
        "inputs_sha256": {
            str(original): hashlib.sha256(original.read_bytes()).hexdigest(),
            "plan.yaml": hashlib.sha256(text.encode()).hexdigest(),
        },
        "wall_time_s": round(outcome.wall_s, 3),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")
