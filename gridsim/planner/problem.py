"""What ``gridsim plan`` optimises over, read from one scenario: periods, peak demand, the pools
that can grow, what they cost and what limits them. No solver here (``gridsim.planner.model``).

- **Periods**: calendar quarters (or months) from the horizon start; the last ends with the
  horizon.
- **Demand**: for each period, hour of the day (hours counted from the horizon start, a
  midnight), class and region, the largest arrival rate of that hour over the period's days (the
  demand model's hourly rates, with growth and the daily profile: ``DemandModel.rates``). Each
  hour of the day is a snapshot the plan must serve at once; regions that may use the same pools
  for a class are merged (their rates summed). Demand shocks and other events are not seen.
- **Units**: every scenario pool (LLM or job) of the grid's entry stations. A unit is one
  replica as the scenario counts them (job pools: one slot), with its stations' simulated slots,
  cards and IT power (after ``share``, as the pools table counts them, so costs agree with
  economics) and its full cards and price (budget and supply count whole cards).
- **Existing capacity** of each station in each period: the least it has within the period,
  after the scenario's own build-outs and retirements (``gridsim.capacity_timeline``).
- **Eligibility**: a class may use a unit that serves it and whose network latency from the
  region is within the class's budget (``plan.latency_budget_ms``: by class, else by
  ``latency_sensitivity``: high 5 ms, medium 20 ms, low none, the policy's regional and
  inter-hub targets); a region with no pool within budget that can grow may also use the
  nearest that can.
- **Costs**, as ``gridsim.economics`` defines them: capex accrues per second from a build's
  arrival, cards at their price over ``amortisation_years`` and facility per watt over
  ``facility_years``; energy is idle power for every installed slot plus ``(1 - idle)`` of it
  for every busy slot-second, x PUE x the node's price; carbon at the node's grid intensity.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from gridsim.capacity_timeline import pool_steps, values_at
from gridsim.demand.growth import HOUR_S
from gridsim.economics import DEFAULT as DEFAULT_ASSUMPTIONS
from gridsim.economics import Assumptions
from gridsim.grid import Grid, build_grid
from gridsim.latency_targets import HUB_MS, REGION_MS
from gridsim.scenario import Scenario
from gridsim.scenario.plan_spec import PlanSpec
from gridsim.scenario.schema import DemandShock

FloatArray = npt.NDArray[np.float64]
DAY_HOURS = 24
DEFAULT_BUDGET_MS: dict[str, float | None] = {"high": REGION_MS, "medium": HUB_MS, "low": None}
JOBS = "jobs"  # lead_time and supply key of job pools


@dataclass(frozen=True)
class Periods:
    """Planning periods: [start_s, end_s) after the horizon start, with their dates."""

    start_s: FloatArray
    end_s: FloatArray
    start_date: tuple[dt.date, ...]
    label: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.start_s)


@dataclass(frozen=True)
class Unit:
    """A scenario pool that can serve and grow: one unit is one replica (job pools: a slot)."""

    node: str
    pool: str
    kind: str  # "llm" | "job"
    model: str | None
    accelerator: str | None  # None for job pools
    hub_role: str
    pue: float
    price_cny_per_kwh: float
    carbon_g_per_kwh: float
    stations: tuple[int, ...]  # grid station indices, entry first
    station_slots: tuple[float, ...]  # simulated slots a unit adds at each station
    station_power_w: tuple[float, ...]  # simulated IT power a unit adds at each station
    whole_power_w: float  # nameplate IT power of a whole unit (site power counts it all)
    cards: float  # whole cards of a unit (budget, supply)
    cash_cny: float  # whole capex of a unit: cards and facility
    capex_cny_per_year: float  # simulated share, amortised: cards and facility
    idle_fraction: float
    buildable: bool  # PUE cap and build_at allow it

    @property
    def name(self) -> str:
        return f"{self.node}/{self.pool}"

    @property
    def supply_key(self) -> str:
        return self.accelerator or JOBS

    @property
    def power_w(self) -> float:
        return float(sum(self.station_power_w))


@dataclass
class Problem:
    """Everything the planning model reads (see the module docstring)."""

    scenario: Scenario
    spec: PlanSpec
    grid: Grid
    periods: Periods
    units: list[Unit]
    classes: tuple[str, ...]
    # per class: the region groups (tuples of region indices) and, per group, eligible units
    groups: list[list[tuple[int, ...]]]
    eligible: list[list[tuple[int, ...]]]
    # peak[t][c]: (hours of the day, groups) arrival rates, requests/s
    peak: list[list[FloatArray]]
    # energy weight per (period, class): seconds of the period each snapshot request-rate stands
    # for (period length / 24 x the period's mean rate over the snapshots' mean)
    energy_s: FloatArray
    hold_s: FloatArray  # (classes, stations) mean hold of a request
    existing_slots: FloatArray  # (stations, periods) least simulated slots in the period
    existing_power_w: FloatArray  # (stations, periods) IT power of the existing slots
    utilisation: FloatArray  # per unit: the most of its slots loaded at the peak hour
    lead_s: FloatArray  # per unit
    orders_from_s: float
    supply: dict[tuple[str, int], float]  # (accelerator or jobs, year) -> cards
    site_power_w: dict[str, float]  # node -> facility W
    green_share: FloatArray  # per unit: share of its energy that is green
    growable: npt.NDArray[np.bool_]  # per unit: can grow in some period (``can_grow``)
    assumptions: Assumptions = DEFAULT_ASSUMPTIONS
    notes: list[str] = field(default_factory=list)

    @property
    def horizon_s(self) -> float:
        return float(self.scenario.horizon.duration)

    def order_s(self, u: int, t: int) -> float:
        """When a build of unit ``u`` in service from period ``t`` must be ordered."""
        return float(self.periods.start_s[t] - self.lead_s[u])

    def can_build(self, u: int, t: int) -> bool:
        return self.units[u].buildable and self.order_s(u, t) >= self.orders_from_s - 1e-6

    def order_date(self, u: int, t: int) -> dt.date:
        start = self.scenario.horizon.start
        return start + dt.timedelta(seconds=self.order_s(u, t))

    def can_grow(self, u: int, t: int) -> bool:
        """Whether unit ``u`` may be built for period ``t`` and its accelerator can be bought
        in the year of the order (a supply of 0 is a ban)."""
        key = (self.units[u].supply_key, self.order_date(u, t).year)
        return self.can_build(u, t) and self.supply.get(key, 1.0) > 0

    def in_service_s(self, t: int) -> float:
        return self.horizon_s - float(self.periods.start_s[t])


def add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def make_periods(scenario: Scenario, period: str) -> Periods:
    """Calendar quarters or months from the horizon start (the last cut at the horizon end)."""
    step = {"quarter": 3, "month": 1}[period]
    start = scenario.horizon.start
    end_s = float(scenario.horizon.duration)
    starts: list[float] = []
    dates: list[dt.date] = []
    k = 0
    while True:
        day = add_months(start, k * step)
        s = (day - start).days * 86400.0
        if s >= end_s:
            break
        starts.append(s)
        dates.append(day)
        k += 1
    ends = [*starts[1:], end_s]
    labels = tuple(
        f"{d.year}Q{(d.month - 1) // 3 + 1}"
        if period == "quarter" and d.day == 1 and d.month in (1, 4, 7, 10)
        else d.isoformat()
        for d in dates
    )
    return Periods(np.array(starts), np.array(ends), tuple(dates), labels)


def build_problem(
    scenario: Scenario,
    spec: PlanSpec | None = None,
    assumptions: Assumptions = DEFAULT_ASSUMPTIONS,
    grid: Grid | None = None,
    allow: Callable[[Unit], bool] | None = None,
) -> Problem:
    """Read the planning problem of ``scenario`` (its ``plan:`` block unless ``spec`` given);
    ``allow`` narrows the units that may grow (the naive plans)."""
    spec = spec or scenario.plan or PlanSpec()
    grid = grid or build_grid(scenario)
    periods = make_periods(scenario, spec.period)
    notes: list[str] = []
    if any(isinstance(e, DemandShock) for e in scenario.events):
        notes.append("demand_shock events are not planned for (the plan sees the growth law)")
    units = _units(grid, spec, assumptions)
    if allow is not None:
        units = [replace(u, buildable=u.buildable and allow(u)) for u in units]
    n_st = len(grid.pools)
    hold = grid.service.station_holds(n_st)
    existing_slots, existing_power = _existing(grid, periods, assumptions)
    lead = np.array([float(spec.lead_time.get(u.supply_key, 0.0)) for u in units], dtype=np.float64)
    orders_from = 0.0
    if spec.orders_from is not None:
        orders_from = (spec.orders_from - scenario.horizon.start).days * 86400.0
    peak, energy_s = _peaks(_hourly_rates(grid), periods)
    problem = Problem(
        scenario=scenario,
        spec=spec,
        grid=grid,
        periods=periods,
        units=units,
        classes=grid.class_names,
        groups=[],
        eligible=[],
        peak=[],
        energy_s=energy_s,
        hold_s=hold,
        existing_slots=existing_slots,
        existing_power_w=existing_power,
        utilisation=np.full(len(units), spec.utilisation),
        lead_s=lead,
        orders_from_s=orders_from,
        supply=_supply(grid, spec, periods),
        site_power_w={n: mw * 1e6 for n, mw in spec.site_power_mw.items()},
        green_share=_green_shares(scenario, units),
        growable=np.zeros(len(units), dtype=bool),
        assumptions=assumptions,
        notes=notes,
    )
    # eligibility needs what can grow (a region with no pool within budget that can grow may
    # use its nearest that can), which needs the problem's orders and supply
    problem.growable = np.array(
        [any(problem.can_grow(u, t) for t in range(len(periods))) for u in range(len(units))],
        dtype=bool,
    )
    budgets = [_budget_ms(spec, c.name, c.latency_sensitivity) for c in grid.classes]
    problem.groups, problem.eligible = _eligibility(grid, units, budgets, problem.growable)
    problem.peak = [
        [
            np.stack([p[:, list(g), c].sum(axis=1) for g in problem.groups[c]], axis=1)
            for c in range(len(problem.groups))
        ]
        for p in peak
    ]
    return problem


def _budget_ms(spec: PlanSpec, name: str, sensitivity: str) -> float | None:
    if name in spec.latency_budget_ms:
        return spec.latency_budget_ms[name]
    if sensitivity in spec.latency_budget_ms:
        return spec.latency_budget_ms[sensitivity]
    return DEFAULT_BUDGET_MS[sensitivity]


def _units(grid: Grid, spec: PlanSpec, a: Assumptions) -> list[Unit]:
    """One unit per scenario pool: its stations' slots and power, cards and what it costs."""
    facility_cny_per_w = a.facility_capex_usd_per_mw * a.cny_per_usd / 1e6
    out: list[Unit] = []
    for entry in (p for p in grid.pools if p.is_entry):
        stations = grid.stations_of(entry.index)
        slots, power, sim_cards, cards, price = [], [], 0.0, 0.0, 0.0
        idle = a.job_idle_fraction
        for s in stations:
            st = grid.pools[s]
            if st.kind == "llm":
                assert st.serving is not None
                acc = st.serving.accelerator
                per_unit = st.replicas_per_pool_replica  # station replicas per scenario replica
                n_cards = per_unit * st.serving.accelerators_per_replica
                slots.append(per_unit * st.slots_per_replica * st.share)
                power.append(n_cards * acc.tdp_w * st.share)
                sim_cards += n_cards * st.share
                cards += n_cards
                price = acc.price_cny
                idle = acc.idle_power_fraction
            else:
                slots.append(st.share)
                power.append(a.job_slot_power_w * st.share)
                price = a.job_slot_price_cny
        whole = sum(power) / entry.share if entry.share > 0 else 0.0
        sim_w = float(sum(power))
        unit_price = price * (cards if entry.kind == "llm" else 1.0)
        sim_price = price * (sim_cards if entry.kind == "llm" else entry.share)
        buildable = (spec.max_pue is None or entry.pue <= spec.max_pue) and (
            spec.build_at is None or entry.node_id in spec.build_at
        )
        out.append(
            Unit(
                node=entry.node_id,
                pool=entry.pool_id,
                kind=entry.kind,
                model=entry.model,
                accelerator=entry.accelerator,
                hub_role=entry.hub_role,
                pue=entry.pue,
                price_cny_per_kwh=entry.price_cny_per_kwh,
                carbon_g_per_kwh=entry.carbon_g_per_kwh,
                stations=stations,
                station_slots=tuple(slots),
                station_power_w=tuple(power),
                whole_power_w=whole,
                cards=cards,
                cash_cny=unit_price + whole * facility_cny_per_w,
                capex_cny_per_year=sim_price / a.amortisation_years
                + sim_w * facility_cny_per_w / a.facility_years,
                idle_fraction=idle,
                buildable=buildable,
            )
        )
    return out


def _existing(grid: Grid, periods: Periods, a: Assumptions) -> tuple[FloatArray, FloatArray]:
    """(stations, periods): the least slots each station has within each period, and the IT
    power of the cards (job slots) behind them."""
    table = grid.pools_table()
    steps = pool_steps(grid.scenario, table)
    n = len(grid.pools)
    slots = np.zeros((n, len(periods)))
    power = np.zeros((n, len(periods)))
    names = [p.name for p in grid.pools]
    tdp = table["accelerator_tdp_w"].to_numpy(dtype=float)
    job = (table["kind"] == "job").to_numpy()
    inside = steps["time_s"].to_numpy(dtype=float)
    for t in range(len(periods)):
        lo, hi = periods.start_s[t], periods.end_s[t]
        times = np.unique(np.concatenate([[lo], inside[(inside > lo) & (inside < hi)]]))
        s_at = values_at(steps, "slots", times).reindex(names).to_numpy(dtype=float)
        c_at = values_at(steps, "accelerators", times).reindex(names).to_numpy(dtype=float)
        worst = np.nanargmin(np.nan_to_num(s_at, nan=np.inf), axis=1)
        rows = np.arange(n)
        slots[:, t] = np.nan_to_num(s_at[rows, worst])
        cards = np.nan_to_num(c_at[rows, worst])
        power[:, t] = np.where(job, slots[:, t] * a.job_slot_power_w, cards * tdp)
    return slots, power


def _hourly_rates(grid: Grid) -> FloatArray:
    """(hours, regions, classes): each hour's arrival rate (growth at the hour's middle)."""
    hours = int(np.ceil(grid.scenario.horizon.duration / HOUR_S))
    return grid.demand.rates((np.arange(hours) + 0.5) * HOUR_S)


def _peaks(rates: FloatArray, periods: Periods) -> tuple[list[FloatArray], FloatArray]:
    """Per period: (24, regions, classes) the largest rate of each hour of the day over the
    period's days; and (periods, classes) the energy weight in seconds (see ``Problem``)."""
    n_h, n_r, n_c = rates.shape
    peaks: list[FloatArray] = []
    energy = np.zeros((len(periods), n_c))
    for t in range(len(periods)):
        h0 = int(periods.start_s[t] // HOUR_S)
        h1 = min(int(np.ceil(periods.end_s[t] / HOUR_S)), n_h)
        block = rates[h0:h1]
        hour_of_day = np.arange(h0, h1) % DAY_HOURS
        peak = np.zeros((DAY_HOURS, n_r, n_c))
        for k in range(DAY_HOURS):
            sel = block[hour_of_day == k]
            if len(sel):
                peak[k] = sel.max(axis=0)
        peaks.append(peak)
        national_mean = block.sum(axis=1).mean(axis=0)  # (classes,) over the period's hours
        snapshot_mean = peak.sum(axis=1).mean(axis=0)
        ratio = np.divide(national_mean, snapshot_mean, out=np.zeros(n_c), where=snapshot_mean > 0)
        energy[t] = (periods.end_s[t] - periods.start_s[t]) / DAY_HOURS * ratio
    return peaks, energy


def _eligibility(
    grid: Grid, units: list[Unit], budgets: list[float | None], growable: npt.NDArray[np.bool_]
) -> tuple[list[list[tuple[int, ...]]], list[list[tuple[int, ...]]]]:
    """Per class: region groups with the same eligible units, and those units."""
    latency_ms = grid.latency_s * 1e3  # (regions, stations)
    entry = np.array([u.stations[0] for u in units], dtype=np.intp)
    groups: list[list[tuple[int, ...]]] = []
    eligible: list[list[tuple[int, ...]]] = []
    for c, budget in enumerate(budgets):
        serves = grid.serves[c, entry] & np.isfinite(latency_ms[:, entry]).any(axis=0)
        rows: dict[tuple[int, ...], list[int]] = {}
        for r in range(len(grid.region_ids)):
            lat = latency_ms[r, entry]
            ok = serves & np.isfinite(lat)
            if budget is not None:
                within = ok & (lat <= budget + 1e-9)
                grow = ok & growable
                if not (within & growable).any() and grow.any():
                    nearest = lat[grow].min()
                    within = within | (ok & (lat <= nearest + 1e-9))
                ok = within
            rows.setdefault(tuple(np.flatnonzero(ok).tolist()), []).append(r)
        groups.append([tuple(v) for v in rows.values()])
        eligible.append(list(rows.keys()))
    return groups, eligible


def _supply(grid: Grid, spec: PlanSpec, periods: Periods) -> dict[tuple[str, int], float]:
    """Cards per (accelerator, year) that build-outs may order: ``plan.supply``, else the fleet
    inventory's supply rows x the serving share the fleet gives that accelerator (as the fleet
    sizes the pools); years with neither are unlimited."""
    out: dict[tuple[str, int], float] = {}
    scenario = grid.scenario
    years = range(scenario.horizon.start.year - 2, periods.start_date[-1].year + 1)
    fleet = scenario.fleet
    if fleet is not None and grid.fleet is not None:
        from gridsim.fleet import inventory

        inv = inventory(fleet.inventory)
        for acc in sorted({s.accelerator for s in inv.supplies}):
            share = grid.fleet.serving_share.get(acc)
            if share is None:
                share = inv.use_share(acc, "serving", fleet.serving_case)
            for y in years:
                cards = inv.supply_cards(acc, y, fleet.case)
                if cards is not None:
                    out[(acc, y)] = cards * share
    for s in spec.supply:
        out[(s.accelerator or JOBS, s.year)] = s.cards
    return out


def _green_shares(scenario: Scenario, units: list[Unit]) -> FloatArray:
    """Per unit: the horizon's mean green share of its node's grid power (with a ``power:``
    block, ``gridsim.power``), else 0: without one gridsim knows no green share."""
    if scenario.power is None or not units:
        return np.zeros(len(units))
    from gridsim.power.sites import node_power

    nodes = tuple(dict.fromkeys(u.node for u in units))
    carbon = {u.node: u.carbon_g_per_kwh for u in units}
    price = {u.node: u.price_cny_per_kwh for u in units}
    series = node_power(scenario, nodes, carbon, price)
    mean = series.grid_green_share.mean(axis=0)
    return np.array([mean[nodes.index(u.node)] for u in units], dtype=np.float64)
