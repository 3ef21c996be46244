"""``gridsim plan`` (picked up by ``gridsim.cli``): what to build, where and when, at least cost;
checked by simulation (``gridsim.planner``).

Exit codes: 0 a plan was written; 1 no plan meets the demand under the limits (the message
names the binding ones; nothing is written); 2 bad input; 130 interrupted (nothing written).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gridsim.console import err, guard, out

SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a value: dotted.path=value (YAML)"),
]
ScenarioOpt = Annotated[
    str | None,
    typer.Option("--scenario", help="Apply named overrides from the file, comma separated: A,B"),
]
NO_PLAN = 1  # exit code: the limits admit no plan


def register(app: typer.Typer) -> None:
    """Add the command to the ``gridsim`` app (called by ``gridsim.cli``)."""
    app.command("plan")(plan_command)


def plan_command(
    file: Annotated[Path, typer.Argument(help="Scenario file")],
    scenario: ScenarioOpt = None,
    set_: SetOpt = None,
    period: Annotated[
        str | None,
        typer.Option("--period", help="Planning period: quarter or month (default plan.period)"),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option("--budget", help="Most capex the build-outs may cost, CNY (e.g. 5e11)"),
    ] = None,
    robust: Annotated[
        str | None,
        typer.Option(
            "--robust",
            help="Plan against this percentile of the uncertainty: block's demand bands (e.g. "
            "P90) and check the plan on every draw",
        ),
    ] = None,
    draws: Annotated[
        int, typer.Option("--draws", help="--robust: Monte Carlo draws (default 20)")
    ] = 20,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Simulations in parallel (default: one per CPU)"),
    ] = None,
    compare: Annotated[
        bool, typer.Option(help="Also plan and simulate the naive plans and the unbudgeted one")
    ] = True,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Plan folder (default results/<scenario>/plan-...)")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing gridsim folder (only one gridsim wrote)")
    ] = False,
) -> None:
    """Plan capacity at least cost (HiGHS), then check the plan by simulation (flow engine)."""
    from gridsim.output import claim_out_dir
    from gridsim.planner.model import Infeasible
    from gridsim.planner.workflow import make_plan, prepare

    names = [n.strip() for n in scenario.split(",") if n.strip()] if scenario else []
    prepared = guard(lambda: prepare(file, names, set_ or [], period, budget, robust, draws))
    target = out_dir or _default_dir(prepared.scenario.name)
    # claimed before planning: a bad --out fails now, and nothing else can write there meanwhile
    slot = guard(lambda: claim_out_dir(target, overwrite=overwrite))
    for leftover in slot.cleaned:
        err.print(f"removed {leftover}, left by a gridsim run that was killed", markup=False)
    with slot:
        try:
            outcome = make_plan(prepared, workers, compare, say=_say)
        except Infeasible as exc:
            err.print(str(exc), markup=False, highlight=False)
            err.print("nothing was written; relax the limit named first and plan again")
            raise typer.Exit(NO_PLAN) from None
        except KeyboardInterrupt:
            err.print("interrupted: nothing was written (a plan folder appears only when complete)")
            raise typer.Exit(130) from None
        from gridsim.planner.outputs import write_plan

        written = slot.target
        target = slot.write_with(lambda tmp: write_plan(outcome, tmp, written))
    _print(outcome)
    out.print(f"plan in {target} ({outcome.wall_s:.1f} s)")
    out.print(f"simulate it: gridsim run {target / 'plan.yaml'}")


def _default_dir(name: str) -> Path:
    import datetime as dt
    import secrets

    from gridsim.output import RESULTS_ROOT

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return RESULTS_ROOT / name / f"plan-{stamp}-{secrets.token_hex(3)}"


def _say(message: str) -> None:
    err.print(message, markup=False, highlight=False)


def _print(outcome: Any) -> None:
    from gridsim.cli import _print_frame
    from gridsim.numbers import human_count, human_money_cny, human_percent
    from gridsim.planner.outputs import builds_table, comparison_table

    problem = outcome.problem
    final = outcome.final
    sol = final.solution
    out.print(
        f"{outcome.scenario.name}: {len(final.events)} build-outs, "
        f"{human_count(sol.cards_added)} cards, {human_money_cny(sol.cash_cny)} of capex paid"
    )
    out.print(
        f"  cost over the horizon {human_money_cny(sol.cost_cny)}: new capex "
        f"{human_money_cny(sol.capex_cny)} (amortised), energy {human_money_cny(sol.energy_cny)}, "
        f"existing cards {human_money_cny(sol.existing_cny)}"
        + (f", carbon price {human_money_cny(sol.carbon_cny)}" if sol.carbon_cny else "")
    )
    for label, r in (("first", outcome.first), ("final", final)):
        c = r.check
        worst, value = c.worst_class
        out.print(
            f"  simulated ({label}, round {r.number}): SLO {'met' if c.met else 'BREACHED'}; "
            f"lowest SLA attainment {worst} {human_percent(value, 2)} (target "
            f"{human_percent(c.target, 0)}); cost {human_money_cny(c.cost_cny)}"
        )
    for note in problem.notes:
        out.print(f"  note: {note}")
    table = builds_table(problem, sol)
    table = table[table["cards"] > 0]
    if not table.empty:
        by = table.pivot_table(index="node", columns="period", values="cards", aggfunc="sum")
        by = by.reindex(columns=[p for p in problem.periods.label if p in by.columns]).fillna(0)
        by = by.loc[by.sum(axis=1).sort_values(ascending=False).index]
        _print_frame(by, "Cards added per node, by period in service")
    comp = comparison_table(outcome).set_index("plan")
    if len(comp) > 1:
        show = comp[["feasible", "slo_met"]].copy()
        show["cost"] = comp["cost_cny"].map(human_money_cny)
        show["simulated_cost"] = comp["simulated_cost_cny"].map(human_money_cny)
        show["lowest_sla"] = comp["lowest_sla_attainment"].map(lambda v: human_percent(v, 2))
        _print_frame(show, "The plan against the naive plans (cost over the horizon)")
    if outcome.robust is not None:
        r = outcome.robust
        out.print(
            f"  robust P{round(r.quantile * 100)}: {human_percent(r.share_met, 0)} of {r.draws} "
            f"draws meet the SLO ({sum(c.met for c in r.checks)} of {len(r.checks)})"
        )
