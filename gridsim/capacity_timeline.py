"""Capacity over time: each pool's replicas, cards and slots from the scenario's events.

Build-outs add capacity from the instant their cards arrive (``at`` + ``lead_time``) and
retirements take it away from ``at``, as ``gridsim.engine.events.schedule`` has both engines
do: a station changes by ``pool_replicas(replicas per pool replica, event replicas)`` replicas
and that many replicas' slots x the station's share (``sample_fraction`` x (1 -
``reserved_share``)), rounded, never below zero; changes at or after the horizon's end, or
before its start, are left out, as the engines leave them out. Node outages change nothing here:
the cards are still installed (and paid for) while a node is down.

The timeline is derived from the scenario and the pools table only (never from an engine's
state), so economics (capex and power from their date), ``pools.parquet`` (start and end) and
the capacity series in ``timeseries.parquet`` say the same at either fidelity.

Every figure is of the simulated share of a pool, like the pools table's ``replicas`` and
``accelerators`` (after ``sample_fraction`` and ``reserved_share``; with a pool sample, pools
not sampled have none).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol

import numpy as np
import pandas as pd

from gridsim.scenario.schema import BuildOut, Retirement, Scenario
from gridsim.service import pool_replicas

# Columns of the pools table the timeline reads beyond the basic ones (older run folders lack
# them: their capacity is then taken as constant, as before build-outs were priced).
STATION_COLUMNS = (
    "share",
    "replicas_per_pool_replica",
    "station_slots_per_replica",
    "accelerators_per_replica",
)
STEP_COLUMNS = ("pool", "time_s", "replicas", "accelerators", "slots")

# What pools.parquet describes (its parquet metadata, via DataFrame.attrs)
POOLS_TABLE_DESCRIBES = (
    "One row per pool station. replicas, accelerators and slots are at the start of the "
    "horizon; *_start and *_end give the start and the end, after the scenario's build-outs "
    "(from at + lead_time) and retirements (from at). Counts are of the simulated share of "
    "each pool (after demand.sample_fraction and reserved_share)."
)
POOLS_TABLE_COLUMNS = {
    "replicas": "replicas at the start of the horizon (simulated share)",
    "accelerators": "accelerators (cards) at the start of the horizon (simulated share)",
    "slots": "concurrent slots at the start of the horizon (simulated share)",
    "replicas_start": "replicas at the start of the horizon",
    "replicas_end": "replicas at the end of the horizon, after build-outs and retirements",
    "cards_start": "accelerators at the start of the horizon",
    "cards_end": "accelerators at the end of the horizon, after build-outs and retirements",
    "slots_start": "slots at the start of the horizon",
    "slots_end": "slots at the end of the horizon, after build-outs and retirements",
}


class HasRun(Protocol):
    """What the capacity series reads of a run (``gridsim.run.Result`` has it)."""

    @property
    def scenario(self) -> Scenario: ...
    @property
    def timeseries(self) -> pd.DataFrame: ...
    @property
    def pools(self) -> pd.DataFrame: ...


def event_seconds(scenario: Scenario, when: dt.date | float) -> float:
    """An event time as seconds after the horizon start (as ``engine.events.seconds``)."""
    if isinstance(when, dt.date):
        return (when - scenario.horizon.start).days * 86400.0
    return float(when)


def scenario_pool(name: str, stage: str) -> str:
    """The scenario pool (``node/pool``) a station of the pools table belongs to."""
    return name if stage == "serve" else name.rsplit(":", 1)[0]


def pool_steps(scenario: Scenario, pools: pd.DataFrame) -> pd.DataFrame:
    """Each station's capacity as a step function: one row per station at time 0 (its start)
    and one per build-out or retirement that changes it, each holding the station's
    ``replicas``, ``accelerators`` and ``slots`` from ``time_s`` on (until the next row).

    ``pools`` is the run's pools table (``Grid.pools_table``). Job stations count slots and have
    no replicas or cards."""
    rows: list[tuple[str, float, float, float, float]] = []
    if pools.empty:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in STEP_COLUMNS})
    horizon_s = float(scenario.horizon.duration)
    changes = _changes(scenario, horizon_s)
    has_stations = all(c in pools for c in STATION_COLUMNS)
    records: list[dict[str, Any]] = [
        {str(k): v for k, v in r.items()} for r in pools.to_dict("records")
    ]
    for row in records:
        name, stage = str(row["pool"]), str(row["stage"])
        replicas, slots = float(row["replicas"]), float(row["slots"])
        per_replica = float(row.get("accelerators_per_replica") or 0.0)
        cards = float(row["accelerators"])
        rows.append((name, 0.0, replicas, cards, slots))
        if not has_stations:
            continue
        share = float(row["share"])
        for t, sign, amount in changes.get(scenario_pool(name, stage), []):
            if row["kind"] == "job":
                slots = max(0.0, slots + sign * round(amount * share))
            else:
                station = pool_replicas(float(row["replicas_per_pool_replica"]), amount)
                d_slots = round(station * int(row["station_slots_per_replica"]) * share)
                replicas = max(0.0, replicas + sign * station * share)
                slots = max(0.0, slots + sign * d_slots)
                cards = replicas * per_replica
            rows.append((name, t, replicas, cards, slots))
    return pd.DataFrame(rows, columns=list(STEP_COLUMNS))


def _changes(scenario: Scenario, horizon_s: float) -> dict[str, list[tuple[float, int, int]]]:
    """Per scenario pool (``node/pool``): (instant, +1 or -1, replicas or slots) of its
    build-outs and retirements within the horizon, by instant, the YAML's order at one instant
    (the engines' order)."""
    out: dict[str, list[tuple[float, int, int]]] = {}
    for event in scenario.events:
        if not isinstance(event, BuildOut | Retirement):
            continue
        t = event_seconds(scenario, event.at)
        if isinstance(event, BuildOut):
            t += float(event.lead_time)
        if not 0.0 <= t < horizon_s:
            continue
        amount = event.replicas if event.replicas is not None else event.slots
        sign = 1 if isinstance(event, BuildOut) else -1
        out.setdefault(f"{event.node}/{event.pool}", []).append((t, sign, int(amount or 0)))
    for steps in out.values():
        steps.sort(key=lambda s: s[0])  # stable: the YAML's order at one instant
    return out


def integrate(steps: pd.DataFrame, column: str, horizon_s: float) -> pd.Series:
    """Per station: the integral of ``column`` over [0, horizon_s] (e.g. card-seconds)."""
    if steps.empty:
        return pd.Series(dtype=float)
    s = steps.sort_values(["pool", "time_s"], kind="stable")
    t = np.minimum(s["time_s"].to_numpy(dtype=float), horizon_s)
    nxt = s.groupby("pool", sort=False)["time_s"].shift(-1).fillna(horizon_s)
    width = np.minimum(nxt.to_numpy(dtype=float), horizon_s) - t
    part = pd.Series(s[column].to_numpy(dtype=float) * width, index=s["pool"].to_numpy())
    return part.groupby(level=0, sort=False).sum()


def values_at(steps: pd.DataFrame, column: str, times_s: np.ndarray[Any, Any]) -> pd.DataFrame:
    """Per station (rows) and instant (columns): ``column`` in force at each instant (the
    changes at an instant count from it)."""
    times = np.asarray(times_s, dtype=float)
    out = {}
    for pool, rows in steps.sort_values(["pool", "time_s"], kind="stable").groupby(
        "pool", sort=False
    ):
        at = rows["time_s"].to_numpy(dtype=float)
        values = rows[column].to_numpy(dtype=float)
        last = np.searchsorted(at, times, side="right") - 1
        out[pool] = np.where(last >= 0, values[np.maximum(last, 0)], 0.0)
    return pd.DataFrame.from_dict(out, orient="index", columns=times)


def start_end(steps: pd.DataFrame) -> pd.DataFrame:
    """Per station: replicas, accelerators and slots at the start and at the end of the horizon
    (after the last change): columns ``<name>_start`` and ``<name>_end``."""
    s = steps.sort_values(["pool", "time_s"], kind="stable").groupby("pool", sort=False)
    cols = ["replicas", "accelerators", "slots"]
    first, last = s[cols].first(), s[cols].last()
    return pd.concat([first.add_suffix("_start"), last.add_suffix("_end")], axis=1)


def series_times(run: HasRun) -> np.ndarray[Any, Any]:
    """The instants of the run's series: those of its pool series when it has them (the flow
    engine may widen the interval the scenario asks for), else every
    ``outputs.timeseries_interval`` from 0."""
    ts = run.timeseries
    if not ts.empty and "entity_kind" in ts:
        pool_rows = ts[(ts["entity_kind"] == "pool") & (ts["metric"] == "capacity_slot_s")]
        if not pool_rows.empty:
            return np.unique(pool_rows["time_s"].to_numpy(dtype=float))
    sc = run.scenario
    return np.arange(0.0, float(sc.horizon.duration), float(sc.outputs.timeseries_interval))


def capacity_series(run: HasRun, job_slot_power_w: float) -> pd.DataFrame:
    """Tidy capacity over time, at the instants of the run's series (each interval's start):
    per scenario pool (entity_kind ``pool``, entity_id ``node/pool``) ``replicas`` (as the
    scenario counts them: decode replicas when disaggregated) and ``cards``, or ``slots`` for a
    job pool; per grid (``grid``/``national``) ``it_power_kw``, the nameplate IT power of the
    cards installed (cards x TDP; job slots x ``job_slot_power_w``, which callers take from
    ``economics.Assumptions``: economics sits above this module)."""
    pools = run.pools
    columns = ["time_s", "entity_kind", "entity_id", "metric", "value"]
    if pools.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    times = series_times(run)
    steps = pool_steps(run.scenario, pools)
    replicas = values_at(steps, "replicas", times)
    cards = values_at(steps, "accelerators", times)
    slots = values_at(steps, "slots", times)
    frames = []
    table = pools.set_index("pool")
    it_w = np.zeros(times.size)
    owner = [
        scenario_pool(str(p), str(s)) for p, s in zip(pools["pool"], pools["stage"], strict=True)
    ]
    for name in dict.fromkeys(owner):
        stations = [p for p, o in zip(pools["pool"], owner, strict=True) if o == name]
        if table.loc[stations[0], "kind"] == "job":
            series = {"slots": slots.loc[stations].sum().to_numpy()}
            it_w += series["slots"] * job_slot_power_w
        else:
            # the scenario's replicas are those of the station with one replica per pool
            # replica (co-located: the pool; disaggregated: decode)
            rpr = table.loc[stations, "replicas_per_pool_replica"].to_numpy(dtype=float)
            one = [s for s, r in zip(stations, rpr, strict=True) if r == 1.0]
            scale = 1.0 if one else 1.0 / rpr[0]
            series = {
                "replicas": replicas.loc[one[0] if one else stations[0]].to_numpy() * scale,
                "cards": cards.loc[stations].sum().to_numpy(),
            }
            tdp = table.loc[stations, "accelerator_tdp_w"].to_numpy(dtype=float)
            it_w += (cards.loc[stations].to_numpy() * tdp[:, None]).sum(axis=0)
        for metric, values in series.items():
            frames.append(_frame(times, "pool", name, metric, values))
    frames.append(_frame(times, "grid", "national", "it_power_kw", it_w / 1e3))
    return pd.concat(frames, ignore_index=True)[columns]


def with_capacity_series(run: HasRun, job_slot_power_w: float) -> pd.DataFrame:
    """The run's time series with ``capacity_series`` appended (what ``gridsim.run`` stores)."""
    extra = capacity_series(run, job_slot_power_w)
    if run.timeseries.empty:
        return extra
    return pd.concat([run.timeseries, extra], ignore_index=True)


def _frame(
    times: np.ndarray[Any, Any], kind: str, entity: str, metric: str, values: Any
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time_s": times,
            "entity_kind": kind,
            "entity_id": entity,
            "metric": metric,
            "value": np.asarray(values, dtype=float),
        }
    )
