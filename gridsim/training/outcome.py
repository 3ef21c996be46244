"""The ``training`` block of summary.json: what the jobs did, and co-scheduling against
inference-only operation (the flow run the plan was made on).

Definitions (each once; the KPI registry quotes them):

- **card-hours available**: the cards the policy lends, summed over the horizon's hours (the
  fleet's yield for training, whatever the jobs take of it);
- **card-hours done**: the jobs' progress at the end of the horizon (work lost to preemption
  excluded, work not yet checkpointed included); **run**: card-hours the jobs held cards,
  lost work included; **lost**: work lost to preemptions (since each one's last checkpoint);
- **deadline attainment**: of the jobs whose deadline falls inside the horizon, the share
  finished by it;
- **utilisation** of the lending pools' cards: (cards busy serving + cards training) / cards
  up, card-seconds over the horizon; a serving slot is cards per replica / slots per replica
  of a card. *Inference-only* is the same over the inference-only run;
- **training energy, electricity and carbon**: the lent cards at TDP x PUE, priced and
  weighted hour by hour as the pools' own energy (``gridsim.economics``);
- **data moved**: the data of the jobs placed away from their origin (TB), priced at
  ``Assumptions.network_cny_per_gb``;
- **dedicated capex avoided**: what the card-hours done would cost on cards bought for them,
  card price / amortisation hours (``Assumptions``): the saving of training on the inference
  fleet against inference-only operation plus a training cluster.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gridsim.economics import DEFAULT, SECONDS_PER_YEAR, Assumptions, RunTables, pool_intervals
from gridsim.training.plan import TrainingPlan


def _lending_util(result: RunTables, plan: TrainingPlan) -> float | None:
    """Busy (serving + training) over up card-seconds of the lending pools."""
    pools = {p.name: p for p in plan.lending.pools}
    ts = result.timeseries
    rows = ts[(ts["entity_kind"] == "pool") & ts["entity_id"].isin(list(pools))]
    sums = rows.groupby(["entity_id", "metric"])["value"].sum()
    busy = up = 0.0
    for name, p in pools.items():
        per_slot = p.cards_per_replica / p.slots_per_replica
        b = float(sums.get((name, "busy_slot_s"), 0.0)) * per_slot
        c = float(sums.get((name, "capacity_slot_s"), 0.0)) * per_slot
        t = float(sums.get((name, "training_card_s"), 0.0))
        busy += b + t
        up += c + t
    return busy / up if up > 0 else None


def _sla(summary: dict[str, Any]) -> float | None:
    value = summary.get("sla_attainment")
    return float(value) if value is not None else None


def training_summary(
    plan: TrainingPlan,
    result: RunTables,
    inference_only: RunTables,
    assumptions: Assumptions = DEFAULT,
) -> dict[str, Any]:
    """The training block of a run's summary (JSON-safe)."""
    sc = result.scenario
    assert sc.training is not None
    horizon_s = float(sc.horizon.duration)
    jobs: dict[str, Any] = {}
    for st in plan.schedule.jobs:
        d = st.job.deadline
        due = d is not None and d <= horizon_s
        jobs[st.job.name] = {
            "node": st.node,
            "card_hours": st.job.card_hours,
            "card_hours_done": st.work,
            "card_hours_run": st.run_card_hours,
            "card_hours_lost": st.lost_card_hours,
            "preemptions": st.preemptions,
            "pauses": st.pauses,
            "resizes": st.resizes,
            "started_at_s": st.started_s,
            "finished_at_s": st.finished_s,
            "deadline_s": d,
            "met_deadline": (st.finished_s is not None and st.finished_s <= d + 1e-6)
            if due and d is not None
            else None,
        }
    due_jobs = [j for j in jobs.values() if j["met_deadline"] is not None]
    intervals = pool_intervals(result, assumptions)
    with np.errstate(invalid="ignore", divide="ignore"):
        part = np.nan_to_num(intervals["training_kwh"] / intervals["energy_kwh"])
    energy = float(intervals["training_kwh"].sum())
    cost = float((intervals["electricity_cny"] * part).sum())
    carbon = float((intervals["carbon_kg"] * part).sum())
    done = float(sum(j["card_hours_done"] for j in jobs.values()))
    run_h = float(sum(j["card_hours_run"] for j in jobs.values()))
    price_cny = _card_price_by_pool(result)
    card_h_by_pool = intervals.groupby("pool")["training_card_s"].sum() / 3600.0
    hours_per_life = assumptions.amortisation_years * SECONDS_PER_YEAR / 3600.0
    capex_run = float(sum(h * price_cny.get(str(pool), 0.0) for pool, h in card_h_by_pool.items()))
    econ, econ0 = result.summary.get("economics", {}), inference_only.summary.get("economics", {})
    moved_tb = float(
        sum(
            st.job.data_tb
            for st in plan.schedule.jobs
            if st.node is not None and st.job.origin is not None and st.node != st.job.origin
        )
    )
    return {
        "policy": sc.training.policy,
        "jobs": jobs,
        # what the policy left free for training, whether or not the jobs used it
        "card_hours_available": float(plan.lending.cards().sum() * 1.0),
        "card_hours_done": done,
        "card_hours_run": run_h,
        "card_hours_lost": float(sum(j["card_hours_lost"] for j in jobs.values())),
        "preemptions": int(sum(j["preemptions"] for j in jobs.values())),
        "jobs_finished": int(sum(j["finished_at_s"] is not None for j in jobs.values())),
        "deadline_attainment": (
            sum(bool(j["met_deadline"]) for j in due_jobs) / len(due_jobs) if due_jobs else None
        ),
        "utilization": _lending_util(result, plan),
        "utilization_inference_only": _lending_util(inference_only, plan),
        "sla_attainment_inference_only": _sla(inference_only.summary),
        "energy_kwh": energy,
        "electricity_cny": cost,
        "carbon_kg": carbon,
        "electricity_cny_per_card_hour": cost / run_h if run_h > 0 else None,
        "carbon_kg_per_card_hour": carbon / run_h if run_h > 0 else None,
        # card-hours run on the inference fleet, at the price of cards bought for them
        "dedicated_capex_avoided_cny": capex_run / hours_per_life * (done / run_h)
        if run_h > 0
        else 0.0,
        "data_moved_tb": moved_tb,
        "data_transfer_cny": moved_tb * 1e3 * assumptions.network_cny_per_gb,
        "electricity_cny_inference_only": econ0.get("electricity_cny"),
        "carbon_kg_inference_only": econ0.get("carbon_kg"),
        "electricity_cny_with_training": econ.get("electricity_cny"),
        "carbon_kg_with_training": econ.get("carbon_kg"),
    }


def _card_price_by_pool(result: RunTables) -> dict[str, float]:
    pools = result.pools
    if pools.empty:
        return {}
    return dict(
        zip(pools["pool"], pools["accelerator_price_cny"].astype(float).fillna(0.0), strict=True)
    )
