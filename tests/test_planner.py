"""gridsim plan: the optimum against a hand-worked answer, the infeasibility explanations, the
verification by simulation, the command line's errors and its output folder.

The hand-worked scenario (scenarios/validation/plan-hand.yaml) has job pools, so every
expected number below follows from its YAML and economics' documented constants (6 W a job
slot, facility capex 10 M USD per MW at 7 CNY/USD over 15 years, no slot price): the
arithmetic is in the scenario's header.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gridsim.cli import app
from gridsim.montecarlo import draw_values
from gridsim.planner import workflow
from gridsim.planner.model import Infeasible, solve
from gridsim.planner.problem import build_problem
from gridsim.scenario import load_scenario
from gridsim.scenario.plan_spec import PlanSpec

ROOT = Path(__file__).resolve().parents[1]
HAND = ROOT / "scenarios" / "validation" / "plan-hand.yaml"
CHINA = ROOT / "scenarios" / "growth-continued.yaml"
HOURS_PER_MONTH = 30.436875 * 24  # the growth law's mean month
SLOT_W = 6.0  # economics.Assumptions.job_slot_power_w
FACILITY_CNY_PER_W = 10e6 * 7.0 / 1e6  # 10 M USD per MW at 7 CNY/USD
YEAR_S = 8760 * 3600.0
Q2_START_S = 90 * 86400.0  # 2026-04-01
HORIZON_S = 181 * 86400.0
runner = CliRunner()


def growth(last_hour: int, rate: float = 0.10) -> float:
    """The growth factor at the middle of hour ``last_hour`` (the demand model's hourly rate)."""
    return float((1 + rate) ** ((last_hour + 0.5) / HOURS_PER_MONTH))


G_Q1, G_Q2 = growth(2159), growth(4343)  # each quarter's peak: its last hour
NEED_NEAR = 10 * 60 * G_Q2 / 0.8 - 1000  # interactive Erlangs / utilisation - existing slots
NEED_FAR = 20 * 300 * G_Q2 / 0.8 - 10000  # batch


def hand_problem(**plan: object) -> object:
    scenario = load_scenario(HAND)
    spec = (scenario.plan or PlanSpec()).model_copy(update=plan)
    return build_problem(scenario, spec)


def test_hand_worked_optimum() -> None:
    problem = hand_problem()
    assert problem.periods.label == ("2026Q1", "2026Q2")
    names = [u.name for u in problem.units]
    near, far = names.index("near/jobs"), names.index("far/jobs")
    # the budgets: interactive (high) reaches only `near` within 5 ms; batch (low) both
    assert problem.eligible[0] == [(near,)] and problem.eligible[1] == [(near, far)]
    # Q1 needs no build (existing slots carry 994.2 and 9,942 at 0.8); Q2 by hand
    assert 10 * 60 * G_Q1 / 0.8 < 1000 and 20 * 300 * G_Q1 / 0.8 < 10000
    solution = solve(problem)
    assert solution.builds[:, 0].tolist() == [0.0, 0.0]
    assert solution.builds[near, 1] == math.ceil(NEED_NEAR) == 322
    assert solution.builds[far, 1] == math.ceil(NEED_FAR) == 3219
    # batch goes to the cheap far node, interactive stays near: peak Erlangs of each class
    interactive, batch = 0, 1
    assert solution.load[(near, interactive)] == pytest.approx(600 * G_Q2, rel=1e-6)
    assert solution.load[(far, batch)] == pytest.approx(6000 * G_Q2, rel=1e-6)
    assert (near, batch) not in solution.load and (far, interactive) not in solution.load
    # capex: facility per slot, paid whole and accrued from 2026-04-01 to the horizon's end
    slots = 322 + 3219
    assert solution.cash_cny == pytest.approx(slots * SLOT_W * FACILITY_CNY_PER_W, rel=1e-9)
    accrued = slots * SLOT_W * FACILITY_CNY_PER_W / 15 * (HORIZON_S - Q2_START_S) / YEAR_S
    assert solution.capex_cny == pytest.approx(accrued, rel=1e-9)


def test_hand_plan_events_and_lead_time() -> None:
    from gridsim.planner.verify import build_events

    problem = hand_problem()
    events = build_events(problem, solve(problem))
    assert events == [
        {"kind": "build_out", "at": "2026-03-02", "node": "near", "pool": "jobs", "slots": 322,
         "lead_time": "30d"},
        {"kind": "build_out", "at": "2026-03-02", "node": "far", "pool": "jobs", "slots": 3219,
         "lead_time": "30d"},
    ]  # fmt: skip


def test_budget_too_small_names_the_budget() -> None:
    problem = hand_problem(budget_cny=1e6)
    with pytest.raises(Infeasible) as caught:
        solve(problem)
    first = caught.value.bindings[0]
    assert first.kind == "budget" and "budget" in first.text
    # the relaxation needs the continuous optimum's capex: the slots by hand x 420 CNY
    needed = (NEED_NEAR + NEED_FAR) * SLOT_W * FACILITY_CNY_PER_W
    assert first.limit + first.short == pytest.approx(needed, rel=1e-6)
    assert first.short == pytest.approx(needed - 1e6, rel=1e-6)


def test_too_little_site_power_names_the_site_and_period() -> None:
    # near may draw 9 kW: 1,250 slots x 6 W x PUE 1.2; interactive needs 1,321.9 in Q2 and can
    # go nowhere else (its latency budget), so near is short by 71.9 slots' power
    problem = hand_problem(site_power_mw={"near": 0.009})
    with pytest.raises(Infeasible) as caught:
        solve(problem)
    first = caught.value.bindings[0]
    assert (first.kind, first.where, first.when) == ("power", "near", "2026Q2")
    assert first.short == pytest.approx((NEED_NEAR + 1000 - 1250) * SLOT_W * 1.2, rel=1e-6)
    assert "site power at near" in first.text and "plan.site_power_mw[near]" in first.text


def test_lead_time_that_no_order_can_meet_is_named() -> None:
    # orders from the start with a 120-day lead: nothing arrives before 2026-05-01, so Q2's
    # growth (from 2026-04-01) must fit the existing slots, and does not
    problem = hand_problem(lead_time={"jobs": 120 * 86400.0})
    with pytest.raises(Infeasible) as caught:
        solve(problem)
    kinds = {b.kind for b in caught.value.bindings}
    assert kinds == {"demand"}
    text = " ".join(caught.value.reasons)
    assert "2026Q2" in text and "lead time" in text


def test_green_share_floor_binds_only_without_green_power() -> None:
    # without a power: block no energy counts as green: any floor binds, and says so
    problem = hand_problem(min_green_share=0.3)
    with pytest.raises(Infeasible) as caught:
        solve(problem)
    assert [b.kind for b in caught.value.bindings] == ["green"]
    assert "plan.min_green_share (30%)" in caught.value.reasons[0]
    # with every site green the same floor costs nothing: the same plan as without it
    problem = hand_problem(min_green_share=0.3)
    problem.green_share = np.ones(len(problem.units))
    assert solve(problem).builds.tolist() == solve(hand_problem()).builds.tolist()


def test_banned_accelerator_is_never_built_and_binds_when_needed() -> None:
    problem = build_problem(load_scenario(CHINA))
    assert problem.supply[("h20", 2026)] == 0.0  # the April 2025 export ban, from fleet.csv
    h20 = [u for u, unit in enumerate(problem.units) if unit.accelerator == "h20"]
    assert h20 and not any(problem.growable[u] for u in h20)
    # only H20 pools may grow: the ban binds
    banned = build_problem(load_scenario(CHINA), allow=lambda u: u.accelerator == "h20")
    with pytest.raises(Infeasible) as caught:
        solve(banned)
    assert any(b.kind == "supply" and b.where == "h20" for b in caught.value.bindings)


def test_tightening_raises_the_margin_on_breached_pools() -> None:
    from gridsim.planner.verify import Check, breached_units, tighten

    problem = hand_problem(lead_time={})  # orders arrive at once: Q1 can grow too
    solution = solve(problem)
    near = [u.name for u in problem.units].index("near/jobs")
    check = Check({"interactive": 0.5, "batch": 1.0}, {}, 0.0, 0.95, 0.0, 0.0, 0.0, 0.0)
    assert breached_units(problem, solution, [check]) == [near]  # where the plan sends it
    tighten(problem, [near])
    assert problem.utilisation.tolist() == pytest.approx([0.75, 0.8])
    # a tighter cap at near needs more slots there: 600 x G / 0.75 in each quarter
    q1 = 600 * G_Q1 / 0.75 - 1000
    q2 = 600 * G_Q2 / 0.75 - 600 * G_Q1 / 0.75
    assert solve(problem).builds[near].tolist() == [math.ceil(q1), math.ceil(q2)]


def test_a_breach_found_by_simulation_is_tightened_away(tmp_path: Path) -> None:
    # flat demand planned to fill its slots to 0.999: the program sees no problem, the
    # simulation (Erlang C at the peak) queues interactive work past its 2 s TTFT at both pools
    # (least_loaded spreads it); the second round, 0.05 lower at both, holds the SLO
    flat = HAND.read_text()
    for old, new in (
        ("growth: {law: exponential, rate_per_month: 0.10}", "growth: {law: none}"),
        ("utilisation: 0.8", "utilisation: 0.999"),
        ("slo: {ttft: 10s}", "slo: {ttft: 2s}"),
        ("slots: 1000}", "slots: 100}"),
        ("slots: 10000}", "slots: 6000}"),
        ("lead_time: {jobs: 30d}", "lead_time: {jobs: 0s}"),
    ):
        assert old in flat
        flat = flat.replace(old, new)
    path = tmp_path / "flat.yaml"
    path.write_text(flat[: flat.index("uncertainty:")])  # its growth rate is gone
    outcome = workflow.make_plan(workflow.prepare(path), workers=1, compare=False)
    first, final = outcome.first, outcome.final
    assert len(outcome.rounds) == 2
    assert not first.check.met and first.check.breached == ["interactive"]
    assert first.check.breached_pools == ["far/jobs", "near/jobs"]
    assert final.check.met and final.utilisation.tolist() == pytest.approx([0.949, 0.949])
    # 600 and 6,000 Erlangs over the caps, less the slots there (100 and 6,000)
    assert first.solution.builds.sum(axis=1).tolist() == [
        math.ceil(600 / 0.999 - 100),
        math.ceil(6000 / 0.999 - 6000),
    ]
    assert final.solution.builds.sum(axis=1).tolist() == [
        math.ceil(600 / 0.949 - 100),
        math.ceil(6000 / 0.949 - 6000),
    ]


def test_plan_is_verified_by_simulation_and_beats_the_naive_plans() -> None:
    prepared = workflow.prepare(HAND)
    outcome = workflow.make_plan(prepared, workers=1)
    final = outcome.final
    assert final.check.met and len(outcome.rounds) == 1
    # the program's cost is what economics bills in the simulation (same definitions)
    assert final.solution.cost_cny == pytest.approx(final.check.cost_cny, rel=0.01)
    costs = {a.name: a for a in outcome.alternatives}
    assert set(costs) == {"demand", "west", "no_latency_budget"}
    demand = costs["demand"]
    assert demand.solution is not None and demand.check is not None
    # where the demand is: batch grows `near` too, at 3.0 CNY/kWh instead of 0.2
    assert final.solution.cost_cny < demand.solution.cost_cny
    assert final.check.cost_cny < demand.check.cost_cny


def test_robust_plans_for_the_quantile_of_the_draws() -> None:
    prepared = workflow.prepare(HAND, robust="P90", draws=5)
    outcome = workflow.make_plan(prepared, workers=1, compare=False)
    robust = outcome.robust
    assert robust is not None and robust.draws == 5 and len(robust.checks) == 5
    # pressure of the one model (jobs) scales with growth at each quarter's last hour: the
    # factor is the draws' 90th percentile (inverted CDF: the largest of 5) over the central
    scenario = load_scenario(HAND)
    assert scenario.uncertainty is not None
    rates = [
        draw_values(scenario.uncertainty.parameters, scenario.seed, i)[
            "demand.growth.rate_per_month"
        ]
        for i in range(5)
    ]
    for t, hour in enumerate((2159, 4343)):
        expected = max(growth(hour, r) for r in rates) / growth(hour)
        assert robust.factors[t, 0] == pytest.approx(expected, rel=1e-9)
    assert robust.share_met >= 0.9
    assert robust.share_met == np.mean([c.met for c in robust.checks])


# --- the command line -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--robust", "P900"], "P1 to P99"),
        (["--robust", "ninety"], "P1 to P99"),
        (["--period", "year"], "quarter or month"),
        (["--budget", "-5"], "positive"),
        (["--robust", "P90", "--draws", "1"], "at least 2 draws"),
        (["--set", "plan.utilisation=1.5"], "plan.utilisation"),
        (["--set", "plan.site_power_mw={nowhere: 5}"], "unknown node 'nowhere'"),
        (["--set", "plan.lead_time={h2000: 30d}"], "unknown accelerator 'h2000'"),
    ],
)
def test_bad_plan_arguments_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", str(HAND), "--out", str(tmp_path / "p"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "p").exists()


def test_robust_without_uncertainty_block_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", str(HAND), "--robust", "P90", "--set", "uncertainty=null"])
    assert result.exit_code == 2 and "uncertainty" in result.output


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2


def test_infeasible_plan_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "p"
    result = runner.invoke(app, ["plan", str(HAND), "--out", str(out), "--budget", "1000"])
    assert result.exit_code == 1, result.output
    assert "budget" in result.output and "nothing was written" in result.output
    assert list(tmp_path.iterdir()) == []


def test_interrupted_plan_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "simulate_many", interrupt)
    result = runner.invoke(app, ["plan", str(HAND), "--out", str(tmp_path / "p")])
    assert result.exit_code == 130
    assert "nothing was written" in result.output
    assert list(tmp_path.iterdir()) == []  # no folder, no lock, no temporary sibling


def test_plan_folder_runs_as_a_scenario_and_is_never_clobbered(tmp_path: Path) -> None:
    scenario = tmp_path / "in" / "plan-hand.yaml"
    scenario.parent.mkdir()
    shutil.copy(HAND, scenario)
    out = tmp_path / "plans" / "first"
    result = runner.invoke(app, ["plan", str(scenario), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"plan.yaml", "builds.parquet", "builds.csv", "comparison.csv", "summary.json",
            "manifest.json", "capacity_added.png"} <= names  # fmt: skip
    plan = load_scenario(out / "plan.yaml")  # extends the original, by a relative path
    builds = [e for e in plan.events if e.kind == "build_out"]
    assert [(e.node, e.slots) for e in builds] == [("near", 322), ("far", 3219)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verification"]["final"]["simulation"]["met"] is True
    assert summary["plan"]["job_slots_added"] == 322 + 3219
    # a second plan to the same folder is refused, the first left as it was
    again = runner.invoke(app, ["plan", str(scenario), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output
    assert {p.name for p in out.iterdir()} == names
    # a folder gridsim did not write is never replaced, even with --overwrite
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    refused = runner.invoke(app, ["plan", str(scenario), "--out", str(mine), "--overwrite"])
    assert refused.exit_code == 2 and (mine / "notes.txt").read_text() == "keep me"


# --- the China baseline ---------------------------------------------------------------


@pytest.mark.slow
def test_china_growth_continued_plan() -> None:
    """Acceptance: under five minutes, SLO met in simulation, cheaper than both naive plans."""
    outcome = workflow.make_plan(workflow.prepare(CHINA))
    assert outcome.wall_s < 300
    final = outcome.final
    assert final.check.met
    for name in ("demand", "west"):
        alt = next(a for a in outcome.alternatives if a.name == name)
        assert alt.solution is not None and alt.check is not None
        assert final.solution.cost_cny < alt.solution.cost_cny
        assert final.check.cost_cny < alt.check.cost_cny
    problem = outcome.problem
    h20 = [u for u, unit in enumerate(problem.units) if unit.accelerator == "h20"]
    assert final.solution.builds[h20].sum() == 0  # banned since April 2025
