"""The capacity-expansion program of a ``Problem``, solved with HiGHS (``scipy.optimize.milp``).

Decisions: ``b[u, t]``, units of pool ``u`` (replicas; job pools: slots) in service from the
start of period ``t``, ordered ``lead_time`` earlier (never before ``plan.orders_from``);
integer for LLM pools. ``x[t, h, c, g, u]``: requests/s of class ``c`` from region group ``g``
sent to ``u`` at hour ``h`` of period ``t``'s peak day (a routing the plan assumes, not the
policy the simulation runs).

Constraints, per period ``t`` and hour ``h`` unless said:

- demand: ``sum_u x = peak rate`` for every class and region group (only eligible units);
- capacity, per station ``s`` of unit ``u``: ``sum hold[c, s] x <= rho_u x slots_s x (existing
  + sum_{t' <= t} b[u, t'])``: Erlangs within the utilisation cap;
- site power, per node with a cap and period: nameplate IT power x PUE of its existing and new
  cards <= the cap;
- budget: ``sum cash[u] b <= budget``;
- supply, per accelerator and year of order: ``sum cards[u] b <= cards available``;
- green share: ``sum (green_u - g) energy_u >= 0`` over the horizon.

Objective (CNY over the horizon): capex of the new units from their arrival (amortised, as
economics accrues it), their idle energy, the busy energy of the routed work at each node's
price (x the period's mean over its snapshot rates), and a carbon price on both energies. The
existing cards' capex and idle energy are the same in every plan and are reported, not
optimised.

Infeasible problems are explained by an elastic relaxation (``explain``): every limit and every
demand row gets a non-negative slack. First the least demand nothing can serve whatever the
limits (work whose pools cannot grow in time, or which no pool within its latency budget
serves); then, with no more of it, the least stretch of the limits, each relative to its own
size. The slacks left say which limit binds, where, when and by how much.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from gridsim.economics import J_PER_KWH, SECONDS_PER_YEAR
from gridsim.numbers import human
from gridsim.planner.problem import DAY_HOURS, Problem

FloatArray = npt.NDArray[np.float64]
DEMAND_FIRST = 1e12  # explanations list work nothing can serve before the limits that bind


@dataclass(frozen=True)
class Binding:
    """A limit that binds: its kind (budget, power, supply, green, demand), where and when,
    by how much it falls short (``short``, in ``unit``) against ``limit``, and the sentence."""

    kind: str
    where: str
    when: str
    short: float
    limit: float
    unit: str
    text: str


class Infeasible(ValueError):
    """The plan cannot meet its demand under its limits; ``bindings`` say which bind."""

    def __init__(self, bindings: list[Binding]):
        self.bindings = bindings
        self.reasons = [b.text for b in bindings]
        super().__init__(
            "no plan meets the demand under these limits:\n"
            + "\n".join(f"- {r}" for r in self.reasons)
        )


@dataclass
class Solution:
    """A solved plan: builds per (unit, period), the routing's energy, and costs in CNY."""

    builds: FloatArray  # (units, periods): units in service from each period's start
    capex_cny: float  # new units, amortised over their time in service within the horizon
    cash_cny: float  # what the new units cost to buy and house
    energy_cny: float  # new units' idle energy and every routed request's busy energy
    existing_cny: float  # existing cards: amortised capex and idle energy (same in every plan)
    carbon_t: float  # of energy_cny's energy
    carbon_cny: float  # the carbon price on carbon_t
    status: str
    solve_s: float
    variables: int
    constraints: int
    cards_added: float = 0.0  # whole cards of the new units
    load: dict[tuple[int, int], float] = field(default_factory=dict)  # (unit, class) Erlangs

    @property
    def cost_cny(self) -> float:
        """Capex (amortised) + energy + carbon price of the plan, existing cards included."""
        return self.capex_cny + self.energy_cny + self.carbon_cny + self.existing_cny


@dataclass
class _Program:
    """The matrix form: ``lo <= A v <= hi``, costs, bounds, integrality; row and column
    descriptions for explanations."""

    cost: FloatArray
    rows: list[tuple[list[int], list[float], float, float]]
    lb: FloatArray
    ub: FloatArray
    integer: npt.NDArray[np.int8]
    b_index: dict[tuple[int, int], int]
    x_cols: list[tuple[int, int, int, int, int]]  # (t, h, c, g, u) per routing column
    x_start: int
    slacks: list[tuple[int, str, Any, float]] = field(default_factory=list)  # col, kind, key, scale


def solve(
    problem: Problem,
    split: dict[int, FloatArray] | None = None,
) -> Solution:
    """The least-cost plan (``split``: per model index, fixed shares of its new units by unit,
    for the naive plans). Raises ``Infeasible`` with the binding limits when there is none."""
    started = time.perf_counter()
    prog = _program(problem, elastic=False, split=split)
    res = _run(prog, problem.spec.time_limit_s)
    if res.x is None:
        raise Infeasible(explain(problem, split))
    wall = time.perf_counter() - started
    return _solution(problem, prog, res.x, _status(res), wall, whole_up=split is not None)


def explain(problem: Problem, split: dict[int, FloatArray] | None = None) -> list[Binding]:
    """Which limits bind, where, when and by how much: the elastic relaxation's slacks, the
    largest (relative to its limit) first; a class's shortfalls in one period are one line."""
    prog = _program(problem, elastic=True, split=split)
    limit_s = problem.spec.time_limit_s
    demand = [(col, scale) for col, kind, _k, scale in prog.slacks if kind == "demand"]
    limits = [(col, scale) for col, kind, _k, scale in prog.slacks if kind != "demand"]
    # phase 1: the least demand nothing can serve, whatever the limits (lead times, budgets)
    first = np.zeros(len(prog.cost))
    for col, scale in demand:
        first[col] = 1.0 / max(scale, 1e-12)
    res = _run(replace(prog, cost=first), limit_s)
    if res.x is not None:
        # phase 2: with no more of it, the least stretch of the limits (relative to each; a
        # limit of 0, a ban, per unit)
        second = np.zeros(len(prog.cost))
        for col, scale in limits:
            second[col] = 1.0 / max(scale, 1.0)
        cap = float(res.fun) * (1 + 1e-7) + 1e-9
        row = ([c for c, _ in demand], [float(first[c]) for c, _ in demand], -np.inf, cap)
        res = _run(replace(prog, cost=second, rows=[*prog.rows, row]), limit_s)
    if res.x is None:  # cannot happen with every limit elastic; say so rather than guess
        text = f"the solver found no plan even with every limit relaxed ({res.message})"
        return [Binding("solver", "", "", math.nan, math.nan, "", text)]
    out: list[tuple[float, Binding]] = []
    short: dict[tuple[int, int, int], list[tuple[float, float, int]]] = {}
    for col, kind, key, scale in prog.slacks:
        s = float(res.x[col])
        if s <= 1e-6 * max(scale, 1.0):
            continue
        if kind == "demand":
            t, h, c, g = key
            short.setdefault((t, c, g), []).append((s, scale, h))
            continue
        out.append((s / max(scale, 1e-12), _binding(problem, kind, key, s, scale)))
    for (t, c, g), rows in short.items():
        s, scale, h = max(rows, key=lambda r: r[0] / r[1])
        out.append((DEMAND_FIRST * s / scale, _demand_binding(problem, t, c, g, s, scale, h, rows)))
    out.sort(key=lambda r: -r[0])
    found = [b for _, b in out]
    if len(found) > 12:
        rest = f"... and {len(found) - 12} more"
        found = [*found[:12], Binding("more", "", "", math.nan, math.nan, "", rest)]
    return found


def _binding(problem: Problem, kind: str, key: Any, s: float, scale: float) -> Binding:
    periods = problem.periods
    if kind == "budget":
        text = (
            f"budget: the build-outs need at least {human(scale + s, 'CNY')} of capex; "
            f"plan.budget_cny is {human(scale, 'CNY')} (short by {human(s, 'CNY')}, "
            f"{s / scale:.0%})"
        )
        return Binding(kind, "grid", "horizon", s, scale, "CNY", text)
    if kind == "power":
        node, t = key
        cap = problem.site_power_w[node]
        text = (
            f"site power at {node} from {periods.label[t]}: its pools need {human(cap + s, 'W')} "
            f"(nameplate IT x PUE); plan.site_power_mw[{node}] allows {human(cap, 'W')} (short "
            f"by {human(s, 'W')})"
        )
        return Binding(kind, node, periods.label[t], s, cap, "W", text)
    if kind == "supply":
        acc, year = key
        text = (
            f"supply of {acc} in {year}: the plan needs {human(scale + s, 'cards')} ordered that "
            f"year, {human(s, 'cards')} more than the {human(scale, 'cards')} available (the "
            "fleet inventory's supply, or plan.supply; 0 is a ban)"
        )
        return Binding(kind, acc, str(year), s, scale, "cards", text)
    if kind == "green":
        text = (
            f"green share: the plans meeting the demand fall short of plan.min_green_share "
            f"({problem.spec.min_green_share:.0%}) by {human(s, 'kWh')} of green energy"
        )
        return Binding(kind, "grid", "horizon", s, scale, "kWh", text)
    raise ValueError(f"unknown limit {kind!r}")


def _demand_binding(
    problem: Problem,
    t: int,
    c: int,
    g: int,
    s: float,
    scale: float,
    h: int,
    rows: list[tuple[float, float, int]],
) -> Binding:
    periods = problem.periods
    regions = [problem.grid.region_ids[r] for r in problem.groups[c][g]]
    where = ", ".join(regions[:4]) + (f" and {len(regions) - 4} more" if len(regions) > 4 else "")
    elig = problem.eligible[c][g]
    if not elig:
        why = "no pool of its model is within its latency budget"
    elif not any(problem.can_build(u, t) for u in elig):
        leads = sorted({float(problem.lead_s[u]) for u in elig})
        start = problem.scenario.horizon.start
        first = start + dt.timedelta(seconds=problem.orders_from_s)
        why = (
            f"its pools cannot grow by {periods.start_date[t]} (orders from {first} with a lead "
            f"time of {', '.join(f'{x / 86400:g} d' for x in leads)}), nor can their existing "
            "slots carry it"
        )
    else:
        why = "its eligible pools cannot grow enough under the limits above"
    text = (
        f"demand of {problem.classes[c]} from {where} in {periods.label[t]}: up to {s:,.4g} "
        f"requests/s ({s / scale:.0%} of it, at hour {h}) cannot be served in {len(rows)} of "
        f"{DAY_HOURS} hours of its peak day: {why}"
    )
    return Binding(
        "demand",
        f"{problem.classes[c]} from {where}",
        periods.label[t],
        s,
        scale,
        "requests/s",
        text,
    )


def _status(res: Any) -> str:
    return {0: "optimal", 1: "time limit (best plan found)"}.get(res.status, str(res.message))


def _run(prog: _Program, time_limit_s: float) -> Any:
    n = len(prog.cost)
    data: list[float] = []
    rows_i: list[int] = []
    cols_i: list[int] = []
    lo = np.empty(len(prog.rows))
    hi = np.empty(len(prog.rows))
    for i, (cols, vals, a, b) in enumerate(prog.rows):
        rows_i.extend([i] * len(cols))
        cols_i.extend(cols)
        data.extend(vals)
        lo[i], hi[i] = a, b
    matrix = sp.csr_array((data, (rows_i, cols_i)), shape=(len(prog.rows), n))
    constraints = [LinearConstraint(matrix, lo, hi)] if prog.rows else []
    return milp(
        prog.cost,
        integrality=prog.integer,
        bounds=Bounds(prog.lb, prog.ub),
        constraints=constraints,
        options={"time_limit": time_limit_s, "mip_rel_gap": 1e-4, "disp": False},
    )


def unit_rates(problem: Problem) -> tuple[FloatArray, FloatArray]:
    """Per unit: capex (CNY) and idle energy (kWh, x PUE) per second of service."""
    capex = np.array([u.capex_cny_per_year / SECONDS_PER_YEAR for u in problem.units])
    idle = np.array([u.power_w * u.idle_fraction * u.pue / J_PER_KWH for u in problem.units])
    return capex, idle


def energy_price(problem: Problem, u: int) -> float:
    """CNY per kWh at unit ``u``: the node's price plus the carbon price on its intensity."""
    unit = problem.units[u]
    cp = problem.spec.carbon_price_cny_per_t
    return unit.price_cny_per_kwh + cp * unit.carbon_g_per_kwh / 1e6


def busy_kwh(problem: Problem, c: int, u: int) -> float:
    """Energy (kWh) one request of class ``c`` takes at unit ``u`` beyond idle: each station's
    hold x its power per slot x (1 - idle fraction) x PUE."""
    unit = problem.units[u]
    total = 0.0
    for s, slots, power in zip(
        unit.stations, unit.station_slots, unit.station_power_w, strict=True
    ):
        if slots > 0:
            total += problem.hold_s[c, s] * power / slots
    return total * (1.0 - unit.idle_fraction) * unit.pue / J_PER_KWH


def _program(problem: Problem, elastic: bool, split: dict[int, FloatArray] | None) -> _Program:
    units, periods = problem.units, problem.periods
    n_t = len(periods)
    capex_s, idle_kwh_s = unit_rates(problem)
    cost: list[float] = []
    lb: list[float] = []
    ub: list[float] = []
    integer: list[int] = []
    b_index: dict[tuple[int, int], int] = {}
    for u, unit in enumerate(units):
        for t in range(n_t):
            if not problem.can_build(u, t):
                continue
            b_index[(u, t)] = len(cost)
            in_service = problem.in_service_s(t)
            cost.append((capex_s[u] + idle_kwh_s[u] * energy_price(problem, u)) * in_service)
            lb.append(0.0)
            ub.append(np.inf)
            integer.append(1 if unit.kind == "llm" and split is None else 0)
    rows: list[tuple[list[int], list[float], float, float]] = []
    slacks: list[tuple[int, str, Any, float]] = []

    def slack(kind: str, key: Any, scale: float) -> int:
        col = len(cost)
        cost.append(0.0)  # explain() sets the elastic objectives
        lb.append(0.0)
        ub.append(np.inf)
        integer.append(0)
        slacks.append((col, kind, key, scale))
        return col

    # routing columns and the demand rows
    x_start = len(cost)
    x_cols: list[tuple[int, int, int, int, int]] = []
    busy: dict[tuple[int, int], float] = {}  # (class, unit) -> CNY a request
    # load terms per (t, h, station): (columns, holds)
    load: dict[tuple[int, int, int], tuple[list[int], list[float]]] = {}
    for t in range(n_t):
        for c in range(len(problem.classes)):
            peak = problem.peak[t][c]  # (hours, groups)
            for g, elig in enumerate(problem.eligible[c]):
                for h in range(DAY_HOURS):
                    rate = float(peak[h, g])
                    if rate <= 0:
                        continue
                    cols = []
                    for u in elig:
                        key = (c, u)
                        if key not in busy:
                            busy[key] = busy_kwh(problem, c, u) * energy_price(problem, u)
                        col = len(cost)
                        cost.append(busy[key] * float(problem.energy_s[t, c]))
                        lb.append(0.0)
                        ub.append(np.inf)
                        integer.append(0)
                        x_cols.append((t, h, c, g, u))
                        cols.append(col)
                        for s in units[u].stations:
                            hold = float(problem.hold_s[c, s])
                            if hold > 0:
                                entry = load.setdefault((t, h, s), ([], []))
                                entry[0].append(col)
                                entry[1].append(hold)
                    vals = [1.0] * len(cols)
                    if elastic:
                        cols = [*cols, slack("demand", (t, h, c, g), rate)]
                        vals = [*vals, 1.0]
                    rows.append((cols, vals, rate, rate))
    # capacity rows
    station_unit = {s: u for u, unit in enumerate(units) for s in unit.stations}
    station_slots = {
        s: slots
        for unit in units
        for s, slots in zip(unit.stations, unit.station_slots, strict=True)
    }
    for (t, _h, s), (cols, holds) in load.items():
        u = station_unit[s]
        rho = float(problem.utilisation[u])
        row_c, row_v = list(cols), list(holds)
        for t2 in range(t + 1):
            if (u, t2) in b_index:
                row_c.append(b_index[(u, t2)])
                row_v.append(-rho * station_slots[s])
        rows.append((row_c, row_v, -np.inf, rho * float(problem.existing_slots[s, t])))
    # site power
    for node, cap in problem.site_power_w.items():
        mine = [u for u, unit in enumerate(units) if unit.node == node]
        if not mine:
            continue
        for t in range(n_t):
            existing = sum(
                float(problem.existing_power_w[s, t])
                / max(problem.grid.pools[s].share, 1e-12)
                * units[u].pue
                for u in mine
                for s in units[u].stations
            )
            row_c, row_v = [], []
            for u in mine:
                for t2 in range(t + 1):
                    if (u, t2) in b_index:
                        row_c.append(b_index[(u, t2)])
                        row_v.append(units[u].whole_power_w * units[u].pue)
            if elastic:
                row_c.append(slack("power", (node, t), cap))
                row_v.append(-1.0)
            rows.append((row_c, row_v, -np.inf, cap - existing))
    # budget
    budget = problem.spec.budget_cny
    if budget is not None and b_index:
        row_c = list(b_index.values())
        row_v = [units[u].cash_cny for (u, _t) in b_index]
        if elastic:
            row_c.append(slack("budget", None, budget))
            row_v.append(-1.0)
        rows.append((row_c, row_v, -np.inf, budget))
    # supply, by the year each build is ordered
    by_key: dict[tuple[str, int], tuple[list[int], list[float]]] = {}
    for (u, t), col in b_index.items():
        supply_key = (units[u].supply_key, problem.order_date(u, t).year)
        if supply_key in problem.supply:
            entry = by_key.setdefault(supply_key, ([], []))
            entry[0].append(col)
            entry[1].append(units[u].cards if units[u].kind == "llm" else 1.0)
    for supply_key, (row_c, row_v) in by_key.items():
        cap = problem.supply[supply_key]
        if elastic:
            row_c = [*row_c, slack("supply", supply_key, cap)]
            row_v = [*row_v, -1.0]
        rows.append((row_c, row_v, -np.inf, cap))
    # green share over the horizon: sum (green_u - g) x energy_u >= 0
    g_min = problem.spec.min_green_share
    if g_min is not None:
        rows.append(_green_row(problem, b_index, x_cols, x_start, g_min, elastic, slack))
    # naive plans: fixed shares of each model's new units
    if split is not None:
        _split_rows(problem, split, b_index, rows, cost, lb, ub, integer)
    return _Program(
        np.array(cost),
        rows,
        np.array(lb),
        np.array(ub),
        np.array(integer, dtype=np.int8),
        b_index,
        x_cols,
        x_start,
        slacks,
    )


def _green_row(
    problem: Problem,
    b_index: dict[tuple[int, int], int],
    x_cols: list[tuple[int, int, int, int, int]],
    x_start: int,
    g_min: float,
    elastic: bool,
    slack: Any,
) -> tuple[list[int], list[float], float, float]:
    green = problem.green_share
    idle_kwh_s = unit_rates(problem)[1]
    row_c: list[int] = []
    row_v: list[float] = []
    for (u, t), col in b_index.items():
        row_c.append(col)
        row_v.append((green[u] - g_min) * idle_kwh_s[u] * problem.in_service_s(t))
    for i, (t, _h, c, _g, u) in enumerate(x_cols):
        row_c.append(x_start + i)
        row_v.append((green[u] - g_min) * busy_kwh(problem, c, u) * float(problem.energy_s[t, c]))
    constant = _existing_green(problem, g_min)
    if elastic:
        row_c.append(slack("green", None, max(abs(constant), 1.0)))
        row_v.append(1.0)
    return (row_c, row_v, -constant, np.inf)


def _existing_green(problem: Problem, g_min: float) -> float:
    """sum (green - g) x idle energy of the existing slots over the horizon (kWh)."""
    total = 0.0
    periods = problem.periods
    for u, unit in enumerate(problem.units):
        for s in unit.stations:
            kwh = (
                problem.existing_power_w[s]
                * unit.idle_fraction
                * unit.pue
                * (periods.end_s - periods.start_s)
                / J_PER_KWH
            ).sum()
            total += (problem.green_share[u] - g_min) * float(kwh)
    return total


def _split_rows(
    problem: Problem,
    split: dict[int, FloatArray],
    b_index: dict[tuple[int, int], int],
    rows: list[tuple[list[int], list[float], float, float]],
    cost: list[float],
    lb: list[float],
    ub: list[float],
    integer: list[int],
) -> None:
    """b[u, t] = share_u x n[m, t]: one free total per model group and period (units of other
    models carry NaN shares)."""
    for shares in split.values():
        for t in range(len(problem.periods)):
            col = len(cost)
            cost.append(0.0)
            lb.append(0.0)
            ub.append(np.inf)
            integer.append(0)
            for u, share in enumerate(shares):
                if np.isnan(share):  # another model's unit
                    continue
                if (u, t) in b_index:
                    rows.append(([b_index[(u, t)], col], [1.0, -float(share)], 0.0, 0.0))
                elif share > 0:
                    rows.append(([col], [float(share)], 0.0, 0.0))


def _solution(
    problem: Problem, prog: _Program, v: FloatArray, status: str, wall: float, whole_up: bool
) -> Solution:
    """Read the solved columns; builds are whole units (integer columns rounded, continuous ones,
    job slots and the naive plans' shares, rounded up)."""
    units, periods = problem.units, problem.periods
    builds = np.zeros((len(units), len(periods)))
    for (u, t), col in prog.b_index.items():
        value = float(v[col])
        whole = units[u].kind == "llm" and not whole_up
        builds[u, t] = max(round(value) if whole else math.ceil(value - 1e-6), 0) + 0.0
    capex_s, idle_kwh_s = unit_rates(problem)
    cp = problem.spec.carbon_price_cny_per_t
    capex = cash = energy = carbon_kg = 0.0
    for u in range(len(units)):
        for t in range(len(periods)):
            n = builds[u, t]
            if n <= 0:
                continue
            service = problem.in_service_s(t)
            capex += n * capex_s[u] * service
            cash += n * units[u].cash_cny
            idle_kwh = n * idle_kwh_s[u] * service
            energy += idle_kwh * units[u].price_cny_per_kwh
            carbon_kg += idle_kwh * units[u].carbon_g_per_kwh / 1e3
    load: dict[tuple[int, int], float] = {}
    for i, (t, _h, c, _g, u) in enumerate(prog.x_cols):
        rate = float(v[prog.x_start + i])
        if rate <= 0:
            continue
        kwh = busy_kwh(problem, c, u) * rate * float(problem.energy_s[t, c])
        energy += kwh * units[u].price_cny_per_kwh
        carbon_kg += kwh * units[u].carbon_g_per_kwh / 1e3
        hold = float(problem.hold_s[c, units[u].stations[0]])  # at the pool's entry
        load[(u, c)] = max(load.get((u, c), 0.0), rate * hold)
    existing = _existing_cost(problem)
    return Solution(
        builds=builds,
        capex_cny=capex,
        cash_cny=cash,
        energy_cny=energy,
        existing_cny=existing,
        carbon_t=carbon_kg / 1e3,
        carbon_cny=cp * carbon_kg / 1e3,
        status=status,
        solve_s=wall,
        variables=len(prog.cost),
        constraints=len(prog.rows),
        cards_added=float((builds.sum(axis=1) * [u.cards for u in units]).sum()),
        load=load,
    )


def _existing_cost(problem: Problem) -> float:
    """The existing slots' amortised capex and idle energy over the horizon (CNY)."""
    periods = problem.periods
    widths = periods.end_s - periods.start_s
    total = 0.0
    a = problem.assumptions
    facility_cny_per_w = a.facility_capex_usd_per_mw * a.cny_per_usd / 1e6
    for unit in problem.units:
        for s in unit.stations:
            watts = problem.existing_power_w[s]
            spec = problem.grid.pools[s]
            price = spec.serving.accelerator.price_cny if spec.serving else a.job_slot_price_cny
            tdp = spec.serving.accelerator.tdp_w if spec.serving else a.job_slot_power_w
            cards = watts / tdp if tdp > 0 else 0.0
            capex = (
                cards * price / a.amortisation_years + watts * facility_cny_per_w / a.facility_years
            )
            total += float((capex * widths).sum()) / SECONDS_PER_YEAR
            kwh = watts * unit.idle_fraction * unit.pue * widths / J_PER_KWH
            total += float((kwh * unit.price_cny_per_kwh).sum())
    return total
