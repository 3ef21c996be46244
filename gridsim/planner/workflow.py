"""``gridsim plan`` end to end: optimise, simulate, tighten, compare, and (``--robust``) plan
against a quantile of the Monte Carlo demand bands and check the plan on every draw.

1. The scenario's problem (``gridsim.planner.problem``) is solved (``model.solve``).
2. Its build-outs are simulated (flow engine). Below ``plan.slo_attainment`` for a class
   (queueing at the peak, which the linear model does not see), every pool whose requests fell
   short in the simulation (else every pool the plan sends the class to) takes
   ``plan.margin_step`` off its utilisation cap; solve and simulate again, up to
   ``plan.iterations`` rounds. The first and the final round are both reported.
3. Two naive plans, sized and timed by the same program but placed by a rule, are simulated
   too: ``demand`` (each region's demand of a model grows its nearest pool that can grow, in
   fixed shares) and ``west`` (accelerators only in the western hubs; job slots where they are,
   as no western hub has a job pool).
4. ``--robust P90``: ``draws`` draws of the scenario's ``uncertainty:`` block (as ``gridsim run
   --draws``) each give, per period and model, the pressure ``peak-hour Erlangs / existing
   slots`` over the central path's. Draws are ranked by their largest such ratio; the central
   problem's demand is scaled, per period and model, by the largest ratio among the draws
   within the quantile (their envelope, so that each of them is covered everywhere). The final
   plan is simulated on every draw and the share of draws meeting the SLO reported; below the
   quantile, the pools the draws found short are tightened and the draws run again (within
   ``plan.iterations``).
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from gridsim.montecarlo import plan_draws
from gridsim.numbers import human_money_cny
from gridsim.planner.model import Infeasible, Solution, solve
from gridsim.planner.problem import DAY_HOURS, JOBS, Problem, Unit, build_problem
from gridsim.planner.verify import (
    Check,
    breached_units,
    build_events,
    share_met,
    simulate_many,
    tighten,
    verification_text,
    with_events,
)
from gridsim.scenario import ScenarioError, resolve_file, validate
from gridsim.scenario.merging import Locator
from gridsim.scenario.plan_spec import PlanSpec
from gridsim.scenario.schema import Scenario

FloatArray = npt.NDArray[np.float64]
Say = Callable[[str], None]
NAIVE_RULES = {
    "demand": "build where the demand is: each region's demand of a model grows the nearest pool "
    "of that model that can grow, in fixed shares",
    "west": "build only in the western hubs, spread as the hubs' pools are today, except work "
    "whose latency budget reaches no western hub (built at its nearest pool, as the demand "
    "rule); job slots where they are, as no western hub has a job pool",
}
# Not a naive plan: the optimum with the latency budgets lifted, to show what they cost.
UNBOUNDED = "no_latency_budget"
UNBOUNDED_RULE = (
    "for comparison only: the least-cost plan with the latency budgets lifted (it breaks "
    "them), so the difference to the plan is what keeping them costs"
)
WEST = "west"


@dataclass
class Round:
    """One solve-and-simulate round."""

    number: int
    utilisation: FloatArray  # per unit, the caps this round solved with
    solution: Solution
    events: list[dict[str, Any]]
    check: Check


@dataclass
class Alternative:
    """A naive plan: its rule, solution (None if it cannot meet the demand) and check."""

    name: str
    rule: str
    problem: Problem  # the variant it was solved on
    solution: Solution | None
    check: Check | None = None
    reasons: list[str] = field(default_factory=list)


@dataclass
class Robust:
    """``--robust``: the quantile planned for and the plan's check on every draw."""

    quantile: float
    draws: int
    models: tuple[str, ...]
    factors: FloatArray  # (periods, models): demand scale over the central path
    values: list[dict[str, Any]]  # per draw: path -> value
    checks: list[Check]
    rounds: int

    @property
    def share_met(self) -> float:
        return share_met(self.checks)


@dataclass
class PlanOutcome:
    """Everything ``gridsim plan`` found; ``gridsim.planner.outputs`` writes it."""

    file: Path
    scenarios: tuple[str, ...]
    sets: tuple[str, ...]
    scenario: Scenario
    data: dict[str, Any]  # the scenario's merged data, with the command line's plan options
    problem: Problem
    rounds: list[Round]
    alternatives: list[Alternative]
    robust: Robust | None
    wall_s: float
    options: dict[str, Any]

    @property
    def first(self) -> Round:
        return self.rounds[0]

    @property
    def final(self) -> Round:
        return self.rounds[-1]


def parse_quantile(text: str | None) -> float | None:
    """``P90`` -> 0.9 (P1..P99); None stays None. Bad text raises ValueError (exit 2)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*[Pp](\d{1,2})\s*", text)
    if not m or not 1 <= int(m.group(1)) <= 99:
        raise ValueError(
            f"--robust {text!r}: give a percentile of the demand bands, P1 to P99 "
            "(e.g. --robust P90)"
        )
    return int(m.group(1)) / 100.0


@dataclass(frozen=True)
class Prepared:
    """A plan's inputs, loaded and checked before any work (``prepare``)."""

    file: Path
    scenarios: tuple[str, ...]
    sets: tuple[str, ...]
    data: dict[str, Any]  # merged, with the command line's plan options in ``plan:``
    locator: Locator
    scenario: Scenario
    options: dict[str, Any]


def prepare(
    file: Path,
    scenarios: Sequence[str] = (),
    sets: Sequence[str] = (),
    period: str | None = None,
    budget_cny: float | None = None,
    robust: str | None = None,
    draws: int = 20,
) -> Prepared:
    """Load and check everything before any work: the merged data with the command line's plan
    options in its ``plan:`` block, the validated scenario, and the options. Raises
    ``ScenarioError`` or ``ValueError`` with a clear message (exit 2)."""
    quantile = parse_quantile(robust)
    if draws < 2:
        raise ValueError(f"--draws {draws}: the robust check needs at least 2 draws")
    if budget_cny is not None and not budget_cny > 0:
        raise ValueError(f"--budget {budget_cny:g}: give a positive amount of CNY (e.g. 5e11)")
    if period is not None and period not in ("quarter", "month"):
        raise ValueError(f"--period {period!r}: choose quarter or month")
    resolved = resolve_file(file, scenarios, sets)
    data = copy.deepcopy(resolved.data)
    plan = dict(data.get("plan") or {})
    if period is not None:
        plan["period"] = period
    if budget_cny is not None:
        plan["budget_cny"] = budget_cny
    if plan or "plan" in data:
        data["plan"] = plan
    scenario = validate(data, resolved.locator)
    from gridsim.topology import check_reachability

    problems = check_reachability(scenario)
    if problems:
        raise ScenarioError(problems)
    if quantile is not None and scenario.uncertainty is None:
        raise ValueError(
            f"--robust {robust}: {file} has no uncertainty: block to draw demand bands from; "
            "add one (see scenarios/growth-continued.yaml) or plan without --robust"
        )
    options = {
        "period": (scenario.plan or PlanSpec()).period,
        "budget_cny": budget_cny,
        "robust": robust,
        "quantile": quantile,
        "draws": draws if quantile is not None else None,
    }
    return Prepared(file, tuple(scenarios), tuple(sets), data, resolved.locator, scenario, options)


def make_plan(
    prepared: Prepared,
    workers: int | None = None,
    compare: bool = True,
    say: Say | None = None,
) -> PlanOutcome:
    """Plan, verify, compare (see the module docstring). Raises ``Infeasible`` when no plan
    meets the demand under the limits."""
    started = time.perf_counter()
    tell = say or (lambda _msg: None)
    data, locator, scenario = prepared.data, prepared.locator, prepared.scenario
    options = prepared.options
    problem = build_problem(scenario)
    spec = problem.spec
    tell(
        f"{len(problem.units)} pools, {len(problem.periods)} periods ({spec.period}), "
        f"{len(problem.classes)} classes"
    )
    robust_plan: Robust | None = None
    draw_data: list[dict[str, Any]] = []
    if options["quantile"] is not None:
        robust_plan, draw_data = _robust_factors(
            problem, prepared, options["quantile"], options["draws"], tell
        )
        _scale_demand(problem, robust_plan)
    rounds = _rounds(problem, data, locator, workers, tell)
    if robust_plan is not None:
        _robust_rounds(problem, data, locator, rounds, robust_plan, draw_data, workers, tell)
    alternatives = (
        _alternatives(problem, data, locator, rounds[-1], robust_plan, workers, tell)
        if compare
        else []
    )
    return PlanOutcome(
        file=prepared.file,
        scenarios=prepared.scenarios,
        sets=prepared.sets,
        scenario=scenario,
        data=data,
        problem=problem,
        rounds=rounds,
        alternatives=alternatives,
        robust=robust_plan,
        wall_s=time.perf_counter() - started,
        options=options,
    )


def _rounds(
    problem: Problem, data: dict[str, Any], locator: Locator, workers: int | None, tell: Say
) -> list[Round]:
    spec = problem.spec
    rounds: list[Round] = []
    for number in range(1, spec.iterations + 1):
        solution = _solve_or_stop(problem, rounds, tell)
        if solution is None:
            break
        rounds.append(_simulated_round(problem, data, locator, number, solution, tell))
        result = rounds[-1].check
        worst, value = result.worst_class
        tell(
            f"round {number}: SLO {'met' if result.met else 'breached'} "
            f"(lowest: {worst} {value:.2%})"
        )
        if result.met:
            break
        if number < spec.iterations:
            tighten(problem, breached_units(problem, solution, [result]))
    return rounds


def _simulated_round(
    problem: Problem,
    data: dict[str, Any],
    locator: Locator,
    number: int,
    solution: Solution,
    tell: Say,
) -> Round:
    """A solution's build-outs, simulated on the scenario (the central path)."""
    events = build_events(problem, solution)
    tell(
        f"round {number}: {solution.status} in {solution.solve_s:.1f} s, "
        f"{len(events)} build-outs, {human_money_cny(solution.cash_cny)} of capex; simulating"
    )
    text = verification_text(with_events(data, events), locator)
    (check,) = simulate_many([text], problem.spec.slo_attainment, workers=1)
    return Round(number, problem.utilisation.copy(), solution, events, check)


def _solve_or_stop(problem: Problem, rounds: list[Round], tell: Say) -> Solution | None:
    """Solve; after a first round, a tightening that leaves no plan (work the existing slots
    must carry before any order can arrive) ends the rounds: the last plan stands."""
    try:
        return solve(problem)
    except Infeasible as exc:
        if not rounds:
            raise
        note = (
            f"round {len(rounds) + 1}: a tighter margin leaves no plan ({exc.reasons[0]}); "
            f"round {rounds[-1].number} stands"
        )
        problem.notes.append(note)
        tell(note)
        for u, cap in enumerate(rounds[-1].utilisation):
            problem.utilisation[u] = cap
        return None


def _alternatives(
    problem: Problem,
    data: dict[str, Any],
    locator: Locator,
    final: Round,
    robust: Robust | None,
    workers: int | None,
    tell: Say,
) -> list[Alternative]:
    """The naive plans, with the final round's utilisation caps (the same margins)."""
    out: list[Alternative] = []
    texts: list[str] = []
    fallback = west_fallback(problem)
    lifted = problem.spec.model_copy(
        update={"latency_budget_ms": dict.fromkeys(("high", "medium", "low"))}
    )
    rules = {**NAIVE_RULES, UNBOUNDED: UNBOUNDED_RULE}
    for name, rule in rules.items():
        allow: Callable[[Unit], bool] | None = None
        if name == WEST:
            allow = lambda u: u.kind == "job" or u.hub_role == WEST or u.name in fallback  # noqa: E731
        spec = lifted if name == UNBOUNDED else problem.spec
        variant = build_problem(
            problem.scenario, spec, problem.assumptions, problem.grid, allow=allow
        )
        if robust is not None:  # the same demand quantile as the plan
            _scale_demand(variant, robust)
        variant.utilisation = _caps_by_name(problem, variant, final.utilisation)
        split = {"demand": demand_split, WEST: west_split}.get(name, lambda _p: None)(variant)
        try:
            solution = solve(variant, split=split)
        except Infeasible as exc:
            out.append(Alternative(name, rule, variant, None, reasons=exc.reasons))
            tell(f"naive plan {name!r}: cannot meet the demand ({exc.reasons[0]})")
            continue
        out.append(Alternative(name, rule, variant, solution))
        texts.append(verification_text(with_events(data, build_events(variant, solution)), locator))
    if texts:
        tell(f"simulating the {len(texts)} other plans")
        checks = iter(simulate_many(texts, problem.spec.slo_attainment, workers))
        for alt in out:
            if alt.solution is not None:
                alt.check = next(checks)
    return out


def _caps_by_name(source: Problem, target: Problem, caps: FloatArray) -> FloatArray:
    by_name = {u.name: float(caps[i]) for i, u in enumerate(source.units)}
    return np.array([by_name.get(u.name, target.spec.utilisation) for u in target.units])


def west_fallback(problem: Problem) -> set[str]:
    """Pools the west rule may grow outside the western hubs: for each class and region whose
    latency budget reaches no western pool that can grow, its nearest pool that can."""
    return {problem.units[u].name for _, _, u in _nearest_growable(problem, True)}


def _nearest_growable(
    problem: Problem, only_without_west: bool = False
) -> Iterator[tuple[int, int, int]]:
    """(class, region, unit): each region's nearest pool that can grow among those its class
    may use (``only_without_west``: only where none of them is a western pool)."""
    units, latency = problem.units, problem.grid.latency_s
    for c in range(len(problem.classes)):
        for g, elig in enumerate(problem.eligible[c]):
            grow = [u for u in elig if problem.growable[u]]
            if not grow or (only_without_west and any(units[u].hub_role == WEST for u in grow)):
                continue
            for r in problem.groups[c][g]:
                yield c, r, min(grow, key=lambda u: latency[r, units[u].stations[0]])


def west_split(problem: Problem) -> dict[int, FloatArray]:
    """The west rule's fixed shares: per model, its western pools in proportion to their slots
    today, and (a second group) the pools it grows outside the west in proportion to the
    demand that can reach nothing else (``demand_split``'s weights, over those regions)."""
    units = problem.units
    keys = sorted({model_key(u) for u in units})
    today = problem.existing_slots[[u.stations[0] for u in units], 0]
    near = _nearest_weights(problem, only_without_west=True)
    out: dict[int, FloatArray] = {}
    for m, key in enumerate(keys):
        mine = np.array([model_key(u) == key and problem.growable[i] for i, u in enumerate(units)])
        west = mine & np.array([u.hub_role == WEST for u in units])
        for group, (members, weight) in enumerate(((west, today), (mine & ~west, near))):
            total = weight[members].sum()
            if members.any() and total > 0:
                out[2 * m + group] = np.where(members, weight / total, np.nan)
    return out


def _nearest_weights(problem: Problem, only_without_west: bool = False) -> FloatArray:
    """Per unit: Erlangs (base rates x entry hold) of the regions whose nearest growable
    eligible pool it is (``only_without_west``: of the region groups that reach no western
    pool that can grow)."""
    base = problem.grid.demand.base_rates  # (regions, classes): shape of demand by region
    weight = np.zeros(len(problem.units))
    for c, r, n in _nearest_growable(problem, only_without_west):
        weight[n] += base[r, c] * problem.hold_s[c, problem.units[n].stations[0]]
    return weight


def model_key(unit: Unit) -> str:
    return unit.model or JOBS


def demand_split(problem: Problem) -> dict[int, FloatArray]:
    """Per model (index into the sorted model keys): each of its units' share of the model's
    new units (NaN for other models' units), in proportion to the Erlangs of the regions whose
    nearest growable eligible pool it is."""
    units = problem.units
    keys = sorted({model_key(u) for u in units})
    weight = _nearest_weights(problem)
    out: dict[int, FloatArray] = {}
    for m, key in enumerate(keys):
        mine = np.array([model_key(u) == key for u in units])
        total = weight[mine].sum()
        if total > 0:
            out[m] = np.where(mine, weight / total, np.nan)
    return out


# --- robust ------------------------------------------------------------------------------


def _class_models(problem: Problem) -> list[str]:
    out = []
    for c in range(len(problem.classes)):
        units = [u for elig in problem.eligible[c] for u in elig]
        out.append(model_key(problem.units[units[0]]) if units else JOBS)
    return out


def pressure(problem: Problem) -> tuple[tuple[str, ...], FloatArray]:
    """(model keys, (periods, models)): peak-hour Erlangs over existing slots, per model: each
    class's rates x its mean hold at the entry of the pools it may use."""
    models = tuple(sorted({model_key(u) for u in problem.units}))
    cls_model = _class_models(problem)
    out = np.zeros((len(problem.periods), len(models)))
    for t in range(len(problem.periods)):
        erlangs = np.zeros((DAY_HOURS, len(models)))
        for c, key in enumerate(cls_model):
            entries = {problem.units[u].stations[0] for e in problem.eligible[c] for u in e}
            holds = [problem.hold_s[c, s] for s in entries if problem.hold_s[c, s] > 0]
            if not holds:
                continue
            erlangs[:, models.index(key)] += problem.peak[t][c].sum(axis=1) * float(np.mean(holds))
        for m, key in enumerate(models):
            slots = sum(
                problem.existing_slots[u.stations[0], t]
                for u in problem.units
                if model_key(u) == key
            )
            out[t, m] = erlangs[:, m].max() / slots if slots > 0 else erlangs[:, m].max()
    return models, out


def _robust_factors(
    problem: Problem, prepared: Prepared, quantile: float, draws: int, tell: Say
) -> tuple[Robust, list[dict[str, Any]]]:
    """The draws (as ``gridsim run --draws`` makes them: each a validated, resolved scenario)
    and the demand factors the plan is made for."""
    mc = plan_draws(prepared.file, draws, prepared.scenarios, prepared.sets)
    values = mc.values
    draw_data = [yaml.safe_load(task.text or "") for task in mc.plan.tasks]
    models, central = pressure(problem)
    per_draw = []
    for d in draw_data:
        per_draw.append(pressure(build_problem(validate(d), problem.spec))[1])
    stacked = np.stack(per_draw)  # (draws, periods, models)
    ratio = np.divide(stacked, central, out=np.ones_like(stacked), where=central > 0)
    # a draw is covered when every period and model is: rank draws by their largest ratio and
    # plan for the envelope of those within the quantile (a cell-by-cell quantile would cover
    # fewer draws than asked, each exceeding it somewhere else)
    score = ratio.reshape(len(ratio), -1).max(axis=1)
    kept = score <= np.quantile(score, quantile, method="inverted_cdf")
    factors = ratio[kept].max(axis=0)
    tell(
        f"robust P{round(quantile * 100)}: demand x {factors.min():.2f} to {factors.max():.2f} "
        f"of the central path (per period and model, over {len(draw_data)} draws)"
    )
    return Robust(quantile, len(draw_data), models, factors, values, [], 0), draw_data


def _scale_demand(problem: Problem, robust: Robust) -> None:
    cls_model = _class_models(problem)
    for t in range(len(problem.periods)):
        for c, key in enumerate(cls_model):
            problem.peak[t][c] = problem.peak[t][c] * float(
                robust.factors[t, robust.models.index(key)]
            )


def _counter(total: int, tell: Say) -> Callable[[int], None]:
    done = [0]

    def progress(_i: int) -> None:
        done[0] += 1
        tell(f"  draw {done[0]}/{total} simulated")

    return progress


def _robust_rounds(
    problem: Problem,
    data: dict[str, Any],
    locator: Locator,
    rounds: list[Round],
    robust: Robust,
    draw_data: list[dict[str, Any]],
    workers: int | None,
    tell: Say,
) -> None:
    """Simulate the final plan on every draw; tighten and re-plan while fewer than the
    quantile's share of draws meet the SLO (within plan.iterations)."""
    spec = problem.spec
    for attempt in range(1, spec.iterations + 1):
        events = rounds[-1].events
        texts = [verification_text(with_events(d, events), None) for d in draw_data]
        tell(f"robust check {attempt}: simulating the plan on {len(texts)} draws")
        checks = simulate_many(texts, spec.slo_attainment, workers, _counter(len(texts), tell))
        robust.checks = checks
        robust.rounds = attempt
        share = share_met(checks)
        tell(f"robust check {attempt}: {share:.0%} of draws meet the SLO")
        if share >= robust.quantile - 1e-9 or attempt == spec.iterations:
            return
        tighten(problem, breached_units(problem, rounds[-1].solution, checks))
        solution = _solve_or_stop(problem, rounds, tell)
        if solution is None:
            return
        rounds.append(_simulated_round(problem, data, locator, len(rounds) + 1, solution, tell))
