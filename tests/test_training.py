"""Training on the cards inference leaves free (gridsim.training): the hand-worked day at both
fidelities, the scheduler's rules on hand-made lendings, the lending rule against Erlang C,
and bad input."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from theory import erlang_c
from typer.testing import CliRunner

import gridsim as gs
from gridsim.cli import app
from gridsim.grid import build_grid
from gridsim.policies.registry import coscheduler_factory
from gridsim.power.profiles import grid_green_share
from gridsim.scenario import ScenarioError, load_scenario
from gridsim.scenario.training_spec import Training
from gridsim.training.jobs import schedule_jobs
from gridsim.training.lending import Lending, LendingPool, budget_over_hold, replicas_needed
from gridsim.training.plan import plan_training

ROOT = Path(__file__).resolve().parents[1]
HAND = ROOT / "scenarios" / "validation" / "day-night.yaml"
HOUR = 3600.0


@cache
def slots_per_replica() -> int:
    """S of the scenario's header: Qwen3-32B on one H100, the serving model's decode slots."""
    grid = build_grid(load_scenario(HAND))
    (pool,) = grid.pools
    assert pool.serving is not None and pool.serving.accelerators_per_replica == 1
    return int(pool.slots_per_replica)


@cache
def hand_run(fidelity: str) -> gs.Result:
    return gs.run(load_scenario(HAND), fidelity=fidelity)


def capacity_by_hour(result: gs.Result) -> np.ndarray:
    ts = result.timeseries
    cap = ts[(ts["entity_kind"] == "pool") & (ts["metric"] == "capacity_slot_s")]
    return (cap.groupby(cap["time_s"] // HOUR)["value"].sum() / HOUR).to_numpy()


# --- the hand-worked day (scenarios/validation/day-night.yaml's header) ---------------------


@pytest.mark.parametrize("fidelity", ["flow", "request"])
def test_hand_worked_day_jobs(fidelity: str) -> None:
    jobs = hand_run(fidelity).summary["training"]["jobs"]
    b, a = jobs["b"], jobs["a"]
    assert b["finished_at_s"] == pytest.approx(23.5 * HOUR)  # 22:00 + 4.5 / 3 h
    assert b["preemptions"] == 1
    assert b["card_hours_lost"] == pytest.approx(3 * 0.5)  # 07:30 -> 08:00 on 3 cards
    assert b["card_hours_run"] == pytest.approx(24 + 4.5)
    assert b["met_deadline"] is True
    assert a["finished_at_s"] is None
    assert a["preemptions"] == 1 and a["card_hours_lost"] == pytest.approx(0.0)
    assert a["card_hours_done"] == pytest.approx(8 + 2)
    t = hand_run(fidelity).summary["training"]
    assert t["card_hours_done"] == pytest.approx(27 + 10)
    assert t["card_hours_available"] == pytest.approx(4 * 10)  # 4 cards, 10 night hours
    assert t["deadline_attainment"] == 1.0


@pytest.mark.parametrize("fidelity", ["flow", "request"])
def test_hand_worked_day_inference_capacity(fidelity: str) -> None:
    """The engines serve inference on what the jobs leave: 4 replicas at night, 8 by day,
    and b's 3 cards back at 23:30."""
    want = np.array([4] * 8 + [8] * 14 + [4] + [4 + 3 * 0.5]) * slots_per_replica()
    np.testing.assert_allclose(capacity_by_hour(hand_run(fidelity)), want, rtol=1e-9)


@pytest.mark.parametrize("fidelity", ["flow", "request"])
def test_hand_worked_day_inference_follows_its_shape(fidelity: str) -> None:
    """The work served follows the class's daily shape (a quarter of the day rate at night:
    busy slots, by Little's law rate x hold) and the night's half-size pool serves it all."""
    result = hand_run(fidelity)
    ts = result.timeseries
    busy = ts[(ts["entity_kind"] == "pool") & (ts["metric"] == "busy_slot_s")]
    per_hour = busy.groupby(busy["time_s"] // HOUR)["value"].sum().to_numpy()
    # whole hours away from the switches (a request holds its slot ~10 s across them)
    night = np.r_[per_hour[1:7], per_hour[23:]].mean()
    day = per_hour[9:21].mean()
    assert night / day == pytest.approx(0.25, rel=0.03 if fidelity == "request" else 1e-6)
    req = result.summary["requests"]
    assert req["dropped"] == 0 and req["abandoned"] == 0


def test_hand_worked_day_energy_of_training() -> None:
    """Training's energy: card-hours run x TDP x PUE (H100 700 W, the node's PUE 1.3)."""
    result = hand_run("flow")
    t = result.summary["training"]
    pool = result.pools.iloc[0]
    kwh = t["card_hours_run"] * pool["accelerator_tdp_w"] * pool["pue"] / 1e3
    assert t["energy_kwh"] == pytest.approx(kwh, rel=1e-9)
    assert t["utilization"] > t["utilization_inference_only"]


@pytest.mark.parametrize("interval", ["1h", "2h", "3h"])
def test_the_lending_does_not_depend_on_the_series_interval(interval: str) -> None:
    """Intervals of an hour or more count in every hour they span: the same card-hours lend
    and train as with 5-minute series; over an hour, the run notes that bills are averaged."""
    sc = load_scenario(HAND, sets=[f"outputs.timeseries_interval={interval}"])
    s = gs.run(sc, fidelity="flow").summary
    want = hand_run("flow").summary["training"]
    for key in ("card_hours_available", "card_hours_done", "card_hours_lost", "preemptions"):
        assert s["training"][key] == pytest.approx(want[key]), key
    averaged = any("billed at the mean price" in n for n in s.get("notes", []))
    assert averaged == (interval != "1h")


def test_same_seed_same_training() -> None:
    again = gs.run(load_scenario(HAND), fidelity="flow")
    assert again.summary["training"] == hand_run("flow").summary["training"]


def test_a_job_that_fits_the_night_valley() -> None:
    """b cut to 18 card-hours: 6 h on 3 cards, done at 06:00 inside the valley, never
    preempted; its cards go back to inference at 06:00 (a keeps its one card)."""
    sets = ["training.jobs[b].card_hours=18"]
    for fidelity in ("flow", "request"):
        result = gs.run(load_scenario(HAND, sets=sets), fidelity=fidelity)
        b = result.summary["training"]["jobs"]["b"]
        assert b["finished_at_s"] == pytest.approx(6 * HOUR)
        assert b["preemptions"] == 0 and b["card_hours_lost"] == 0.0
        want = np.array([4] * 6 + [7] * 2 + [8] * 14 + [7] * 2) * slots_per_replica()
        np.testing.assert_allclose(capacity_by_hour(result), want, rtol=1e-9)


def test_a_user_policy_named_module_class() -> None:
    sets = ["training.policy=user_policies:HalfAllDay", "training.params={divisor: 2}"]
    result = gs.run(load_scenario(HAND, sets=sets), fidelity="flow")
    t = result.summary["training"]
    assert t["policy"] == "user_policies:HalfAllDay"
    assert t["card_hours_available"] == pytest.approx(4 * 24)
    # b runs from 00:00 on 3 cards without a break: 27 / 3 = 9 h
    assert t["jobs"]["b"]["finished_at_s"] == pytest.approx(9 * HOUR)
    assert t["jobs"]["b"]["preemptions"] == 0


def test_an_unknown_policy_is_named() -> None:
    msg = _errors(["training.policy=night_first"])
    assert "unknown co-scheduling policy 'night_first'" in msg and "inference_first" in msg


def test_green_hours_only_runs_jobs_in_green_hours() -> None:
    """With training.green_hours_only, jobs run only in hours whose grid green share (Inner
    Mongolia's, gridsim.power.profiles; no own renewables) reaches the target."""
    start = load_scenario(HAND).horizon.start
    green = grid_green_share("inner_mongolia", start, 24)
    night = np.r_[np.arange(0, 8), np.arange(22, 24)]
    target = float(np.median(green[night]))
    sets = ["training.green_hours_only=true", f"power.green_target_share={target!r}"]
    sc = load_scenario(HAND, sets=sets)
    grid = build_grid(sc)
    alone = gs.run(sc.model_copy(update={"training": None}), fidelity="flow")
    plan = plan_training(grid, alone.timeseries)
    ran = np.zeros(24, dtype=bool)
    for seg in plan.schedule.segments:
        ran[int(seg.start_s // HOUR) : int(np.ceil(seg.end_s / HOUR))] = True
    assert ran.any()
    assert (green[ran] >= target - 1e-12).all()
    assert not ran[night][green[night] < target - 1e-12].any()
    # a target no hour reaches: nothing trains
    none = load_scenario(
        HAND, sets=["training.green_hours_only=true", "power.green_target_share=1"]
    )
    assert gs.run(none, fidelity="flow").summary["training"]["card_hours_run"] == 0.0


def test_green_hours_need_a_target() -> None:
    assert "power.green_target_share" in _errors(["training.green_hours_only=true"])


# --- the scheduler on hand-made lendings -------------------------------------------------


def _lending(free_replicas: list[list[int]], cards_per_replica: int = 1) -> Lending:
    """One pool per column at nodes n0, n1, ...; ``free_replicas`` (hours x pools)."""
    rep = np.array(free_replicas, dtype=np.int64)
    pools = tuple(
        LendingPool(j, f"n{j}/llm", f"n{j}", "h100", cards_per_replica, 10, 700.0, 1.2)
        for j in range(rep.shape[1])
    )
    installed = rep + 1
    return Lending(pools, installed, rep)


def _schedule(
    jobs: list[dict[str, Any]],
    free: list[list[int]],
    carbon: list[list[float]] | None = None,
    **policy: Any,
):  # type: ignore[no-untyped-def]
    lend = _lending(free)
    n_h, n_p = lend.replicas.shape
    training = Training.model_validate({"jobs": jobs, **policy})
    c = np.array(carbon, dtype=float) if carbon is not None else np.full((n_h, n_p), 500.0)
    nodes = tuple(f"n{j}" for j in range(n_p))
    defers_by = coscheduler_factory(training.policy).defers_by
    return schedule_jobs(training, lend, n_h * HOUR, nodes, c, c / 1000.0, 400.0, defers_by)


def test_preemption_loses_work_since_the_last_checkpoint() -> None:
    """4 cards for 3 h, then 2: a 4-card job checkpointing every 40 min loses the 20 min since
    its checkpoint at 2:40 (4 cards x 1/3 h), then waits (2 < min 3)."""
    s = _schedule(
        [{"name": "j", "card_hours": 100, "min_cards": 3, "max_cards": 4,
          "checkpoint_interval": 2400}],
        [[4], [4], [4], [2], [2]],
    )  # fmt: skip
    (job,) = s.jobs
    assert job.preemptions == 1
    assert job.lost_card_hours == pytest.approx(4 / 3)
    assert job.work == pytest.approx(12 - 4 / 3)
    assert [(g.start_s, g.end_s, g.cards, g.ended_by) for g in s.segments] == [
        (0.0, 3 * HOUR, 4, "preempted")
    ]


def test_growth_checkpoints_and_loses_nothing() -> None:
    s = _schedule(
        [{"name": "j", "card_hours": 9, "min_cards": 1, "checkpoint_interval": 7200}],
        [[2], [4], [4]],
    )
    (job,) = s.jobs
    assert job.resizes == 1 and job.preemptions == 0 and job.lost_card_hours == 0
    # 2 card-hours in the first hour, then 7 on 4 cards: done 1.75 h later
    assert job.finished_s == pytest.approx(HOUR + 7 / 4 * HOUR)


def test_cards_come_back_when_a_job_finishes() -> None:
    """A job done inside an hour hands its replicas back at that instant (engine changes)."""
    s = _schedule([{"name": "j", "card_hours": 3, "max_cards": 2}], [[2], [2], [2]])
    assert s.jobs[0].finished_s == pytest.approx(1.5 * HOUR)
    assert s.changes == ((0.0, 0, 2), (1.5 * HOUR, 0, -2))


def test_earliest_deadline_first_and_min_cards() -> None:
    s = _schedule(
        [
            {"name": "late", "card_hours": 4, "max_cards": 4, "deadline": 10 * HOUR},
            {"name": "soon", "card_hours": 3, "min_cards": 3, "max_cards": 3,
             "deadline": 2 * HOUR},
        ],
        [[4], [4], [4]],
    )  # fmt: skip
    by = {j.job.name: j for j in s.jobs}
    assert by["soon"].started_s == 0.0 and by["soon"].finished_s == pytest.approx(HOUR)
    # late gets the one card soon leaves, then all four from the second hour
    assert by["late"].started_s == 0.0
    assert by["late"].finished_s == pytest.approx(HOUR + 3 / 4 * HOUR)


def test_no_restart_on_a_falling_lending() -> None:
    """Preempted at 2:00 (4 -> 3 cards, fewer than it held); 3 and 2 cards are falling, so it
    waits; at 4:00 the lending rises again and it restarts on 3."""
    s = _schedule(
        [{"name": "j", "card_hours": 100, "min_cards": 1, "max_cards": 4}],
        [[4], [4], [3], [2], [3], [3]],
    )
    starts = [(g.start_s / HOUR, g.cards) for g in s.segments]
    assert starts == [(0.0, 4), (4.0, 3)]


def test_jobs_spread_over_nodes() -> None:
    """Two 4-card jobs and two nodes with 4 free cards each: one job a node."""
    s = _schedule(
        [{"name": "x", "card_hours": 8, "min_cards": 4, "max_cards": 4},
         {"name": "y", "card_hours": 8, "min_cards": 4, "max_cards": 4}],
        [[4, 4]] * 3,
    )  # fmt: skip
    assert sorted(j.node for j in s.jobs) == ["n0", "n1"]
    assert all(j.finished_s == pytest.approx(2 * HOUR) for j in s.jobs)


def test_data_transfer_delays_the_start() -> None:
    """100 TB over 400 Gb/s takes 2,000 s: a job whose data sits at n1 starts at n0 (more
    cards) only from hour 1."""
    s = _schedule(
        [{"name": "j", "card_hours": 8, "max_cards": 8, "origin": "n1", "data_tb": 100}],
        [[8, 2]] * 4,
        nodes=None,
    )
    (job,) = s.jobs
    assert job.ready_s["n0"] == pytest.approx(2000.0) and job.ready_s["n1"] == 0.0
    assert job.node == "n0" and job.started_s == HOUR


def test_carbon_aware_runs_in_the_greenest_hours() -> None:
    """Carbon 500 except hours 3-4 (100): a 4 card-hour job on 2 cards, due by hour 6, runs
    exactly in hours 3 and 4 (slack 1: they cover it); no deferral runs it at once."""
    carbon = [[500.0]] * 3 + [[100.0]] * 2 + [[500.0]] * 1
    job = {"name": "j", "card_hours": 4, "max_cards": 2, "deadline": 6 * HOUR}
    green = _schedule([job], [[2]] * 6, carbon, policy="carbon_aware", slack=1.0)
    assert green.jobs[0].started_s == 3 * HOUR
    assert green.jobs[0].finished_s == pytest.approx(5 * HOUR)
    first = _schedule([job], [[2]] * 6, carbon, policy="inference_first")
    assert first.jobs[0].started_s == 0.0
    # with slack 2 it needs 8 card-hours of chosen hours: 3, 4 and two more (the earliest)
    slack = _schedule([job], [[2]] * 6, carbon, policy="carbon_aware", slack=2.0)
    assert slack.jobs[0].started_s == 0.0


def test_a_deferring_job_starts_on_the_cards_free_to_its_checkpoint() -> None:
    """Carbon low in hours 1-2, where 4 then 2 cards are free; a 6 card-hour job (2 h
    checkpoints) chosen for both starts on 2 cards (all that stays free to 3:00), so the dip
    never preempts it; at 3:00 it grows to 4 and finishes at 3:30. Started on 4, it would
    have lost its first hour at 2:00."""
    carbon = [[500.0], [100.0], [100.0], [500.0], [500.0]]
    job = {"name": "j", "card_hours": 6, "max_cards": 4, "checkpoint_interval": 7200,
           "deadline": 5 * HOUR}  # fmt: skip
    s = _schedule([job], [[4], [4], [2], [4], [4]], carbon, policy="carbon_aware", slack=1.0)
    (st,) = s.jobs
    assert [(g.start_s / HOUR, g.cards, g.ended_by) for g in s.segments] == [
        (1.0, 2, "resized"),
        (3.0, 4, "finished"),
    ]
    assert st.preemptions == 0 and st.finished_s == pytest.approx(3.5 * HOUR)


# --- the lending rule against Erlang C ---------------------------------------------------


def test_inference_keeps_the_fewest_replicas_that_meet_its_slo() -> None:
    """replicas_needed against a brute force over Erlang C (tests/theory.py): the fewest r with
    C(c, a) exp(-(c - a) t / h) <= 5 %, c = 58 r."""
    x = np.array([2.0 / 9.6])  # TTFT budget over a hold of 9.6 s
    loads = np.array([[0.0], [10.0], [35.0], [57.0], [140.0], [400.0], [463.0]])
    installed = np.full((loads.shape[0], 1), 8)
    got = replicas_needed(loads, installed, np.array([58]), x)
    for a, r in zip(loads[:, 0], got[:, 0], strict=True):
        want = 8
        for n in range(0, 9):
            c = 58 * n
            if a == 0 or (c > a and erlang_c(c, a) * math.exp(-(c - a) * x[0]) <= 0.05):
                want = n
                break
        assert r == want, (a, r, want)


def test_budget_over_hold_of_the_hand_scenario() -> None:
    grid = build_grid(load_scenario(HAND))
    from gridsim.training.lending import lending_pools

    pools = lending_pools(grid)
    hold = grid.service.station_holds(len(grid.pools))[0, pools[0].index]
    assert budget_over_hold(grid, pools)[0] == pytest.approx(2.0 / hold)


# --- bad input -----------------------------------------------------------------------------


def _errors(sets: list[str]) -> str:
    with pytest.raises(ScenarioError) as err:
        load_scenario(HAND, sets=sets)
    return str(err.value)


def test_unknown_training_node_is_named_with_its_path() -> None:
    msg = _errors(["training.jobs[a].nodes=[nowhere]"])
    assert "training.jobs.0.nodes.0" in msg and "nowhere" in msg and "known nodes: dc" in msg


def test_min_cards_above_max_cards() -> None:
    msg = _errors(["training.jobs[b].min_cards=5"])
    assert "min_cards (5) exceeds max_cards (3)" in msg


def test_training_needs_a_pool_that_lends() -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario(
            ROOT / "scenarios" / "validation" / "mmc.yaml",
            sets=["training={jobs: [{name: j, card_hours: 10}]}"],
        )
    assert "no pool can lend cards" in str(err.value)


def test_training_needs_the_whole_grid() -> None:
    assert "sample_fraction: 1" in _errors(["demand.sample_fraction=0.5"])


def test_cli_bad_training_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["run", str(HAND), "--out", str(out), "--set", "training.jobs[b].deadline=0s"]
    )
    assert result.exit_code == 2, result.output
    assert "deadline must come after release" in result.output
    assert not out.exists()
