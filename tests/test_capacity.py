"""The one shortfall definition (``gridsim.engine.capacity``) and the capacity gap, against hand
calculations with an independent Erlang C (``tests/theory.py``: Erlang B through scipy's
Poisson law), and the demand/capacity figure agreeing with the summary and the series.

Both scenarios put one node on each of two hub sites (Gui'an: hub "guizhou"; Zhangjiakou: hub
"bth") and a demand region beside each, routed by ``nearest`` (no spill). One LLM class with
constant lengths makes every request hold a slot for the same time h, read from the grid's
service table (the serving model's figure, the "card throughput" these cases take as known).
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import theory as th
from matplotlib.dates import date2num
from scipy import optimize

import gridsim as gs
from gridsim.engine.capacity import SHORTFALL_DEFINITION, START_QUANTILE, slo_load
from gridsim.erlang import erlang_c
from gridsim.grid import build_grid
from gridsim.report.figures import plot_demand_capacity, time_axis
from gridsim.run import Result

TTFT_S = 2.0
MONTH_S = 30.436875 * 86400  # the growth law's month

SCENARIO = """
name: two-hubs
fidelity: flow
horizon: {{start: 2026-03-02, duration: {days}d, resolution: {tick_h}h}}
regions:
  - {{id: west, lat: 26.6, lon: 106.7, share: {west}}}
  - {{id: north, lat: 40.8, lon: 114.9, share: {north}}}
nodes:
  - {{id: gy, kind: intelligent_computing, site: guian, pools: [{{id: llm, model: qwen3-8b,
      accelerator: h20, replicas: {gy}, deployment: {{cards_per_replica: 2}}}}]}}
  - {{id: zjk, kind: intelligent_computing, site: zhangjiakou, pools: [{{id: llm,
      model: qwen3-8b, accelerator: h20, replicas: {zjk}, deployment: {{cards_per_replica: 2}}}}]}}
network: {{generate: full_mesh}}
policy: {{name: nearest}}
demand:
  tokens_per_day: 1
  region_weights: given
  growth: {{law: exponential, rate_per_month: {rate}}}
  classes:
    - name: chat
      model: qwen3-8b
      rate_per_s: {rate_per_s}
      input_tokens: {{dist: constant, value: 1000}}
      output_tokens: {{dist: constant, value: 200}}
      slo: {{ttft: {ttft}s}}
      diurnal: [{flat}]
"""


def scenario(**values: float) -> gs.Scenario:
    flat = ", ".join(["1.0"] * 24)
    fields = {"days": 1, "tick_h": 1, "rate": 0.0, "ttft": TTFT_S, "flat": flat, **values}
    return gs.load_scenario_text(SCENARIO.format(**fields))


def slo_capacity_by_hand(slots: int, hold_s: float, ttft_s: float = TTFT_S) -> float:
    """The load a at which P(W > t) = C(c, a) exp(-(c - a) t / h) = 0.05 in M/M/c (the tail
    grows with a): Erlang C from tests/theory.py, root by Brent's method."""

    def excess(a: float) -> float:
        return th.erlang_c(slots, a) * math.exp(-(slots - a) * ttft_s / hold_s) - 0.05

    return float(optimize.brentq(excess, 1e-9, slots - 1e-9, xtol=1e-12, rtol=1e-14))


def serving_figures(sc: gs.Scenario) -> tuple[float, int, int]:
    """The hold h of a request (s), slots per replica and cards per replica of the pools (the
    same accelerator and deployment at both nodes): the serving model's figures."""
    grid = build_grid(sc)
    holds = grid.service.station_holds(len(grid.pools))
    pool = grid.pools[0]
    assert all(p.slots_per_replica == pool.slots_per_replica for p in grid.pools)
    assert pool.serving is not None
    return float(holds[0, 0]), pool.slots_per_replica, pool.serving.accelerators_per_replica


def test_slo_load_meets_the_erlang_c_criterion() -> None:
    for slots, hold in ((1, 4.0), (8, 20.0), (144, 10.0), (2000, 30.0)):
        expected = slo_capacity_by_hand(slots, hold)
        got = float(slo_load(np.array([float(slots)]), np.array([TTFT_S / hold]))[0])
        assert got == pytest.approx(expected, rel=1e-9)
    # no SLO budget: the slots themselves; no slots: nothing
    assert slo_load(np.array([50.0, 0.0]), np.array([math.inf, 0.1])).tolist() == [50.0, 0.0]
    # many pools at once (the solver's steps run on all together), fractional slots and budgets
    # so short that the bracket starts at no load: each load meets the criterion, and one a
    # millionth above it does not
    rng = np.random.default_rng(3)
    slots = np.concatenate([rng.uniform(0.5, 5000.0, 300), [1.0, 2.5, 7.0]])
    x = np.concatenate([10 ** rng.uniform(-3.0, 3.0, 300), [1e-4, 1e-3, 1e-2]])
    got = slo_load(slots, x)
    log_bound = math.log(1 - START_QUANTILE)

    def log_tail(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(erlang_c(slots, a)) - (slots - a) * x

    assert (log_tail(got) <= log_bound + 1e-12).all()
    assert (log_tail(got * (1 + 1e-6) + 1e-9) > log_bound).all()


def test_capacity_gap_of_two_hubs_by_hand() -> None:
    """West is served at Gui'an's 2 replicas, north at Zhangjiakou's 3; no growth, flat demand.
    Each hub needs the fewest n replicas for which the SLO capacity of (replicas + n) x slots
    per replica reaches its region's requests/s x h. Each rate is the SLO capacity of a pool of
    4.5 (west) and 3.5 (north) replicas: Gui'an is 3 replicas short, Zhangjiakou 1."""
    replicas = {"guizhou": 2, "bth": 3}
    hold, per_replica, cards_per_replica = serving_figures(
        scenario(west=1, north=1, gy=2, zjk=3, rate_per_s=1.0)
    )

    def rate_at(replicas: float) -> float:  # requests/s that load a pool to its SLO capacity
        return slo_capacity_by_hand(round(replicas * per_replica), hold) / hold

    rates = {"west": rate_at(4.5), "north": rate_at(3.5)}
    sc = scenario(
        west=rates["west"],
        north=rates["north"],
        gy=replicas["guizhou"],
        zjk=replicas["bth"],
        rate_per_s=sum(rates.values()),
    )
    result = gs.run(sc)
    # nearest does not spill: each region is served only at its own hub's node
    flows = result.flows.groupby(["region", "node"])["requests"].sum()
    assert set(flows.index) == {("west", "gy"), ("north", "zjk")}

    def needed(rate: float, have: int) -> tuple[int, float, float]:
        demand = rate * hold
        capacity = slo_capacity_by_hand(have * per_replica, hold)
        n = 0
        while slo_capacity_by_hand((have + n) * per_replica, hold) < demand:
            n += 1
        return n, demand, capacity

    west_n, west_d, west_k = needed(rates["west"], replicas["guizhou"])
    north_n, north_d, north_k = needed(rates["north"], replicas["bth"])
    assert (west_n, north_n) == (3, 1)  # the hand count of the case
    capacity = result.summary["capacity"]
    rows = {row["hub"]: row for row in capacity["gap"]}
    assert set(rows) == {"guizhou", "bth"}
    for hub, n, d, k in (("guizhou", west_n, west_d, west_k), ("bth", north_n, north_d, north_k)):
        row = rows[hub]
        assert (row["model"], row["accelerator"]) == ("qwen3-8b", "h20")
        assert row["replicas_to_add"] == n
        assert row["cards_to_add"] == n * cards_per_replica
        assert row["peak_demand_erlangs"] == pytest.approx(d, rel=1e-9)
        assert row["slo_capacity_erlangs"] == pytest.approx(k, rel=1e-6)
        assert row["peak_at"] == "2026-03-02T00:00:00"  # flat demand: the first hour is worst
    assert capacity["gap_cards"] == (west_n + north_n) * cards_per_replica
    # both hubs short from the start, the model too (its pools' capacity is summed)
    assert capacity["shortfall_at_s"] == 0.0
    assert capacity["shortfall_model"] == "qwen3-8b"
    assert capacity["definition"] == SHORTFALL_DEFINITION


# Growth: Gui'an 1 replica, Zhangjiakou 3; each region starts at 80 % of Gui'an's SLO capacity
# and demand triples every month; two-hour ticks keep the run short.
GROWTH_RATE = 2.0
GROWTH_DAYS = 35
TICK_H = 2


@pytest.fixture(scope="module")
def growing() -> tuple[Result, dict[str, float]]:
    base = scenario(west=1, north=1, gy=1, zjk=3, rate_per_s=1.0)
    hold, per_replica, _ = serving_figures(base)
    k_west = slo_capacity_by_hand(1 * per_replica, hold)
    k_north = slo_capacity_by_hand(3 * per_replica, hold)
    per_region_rps = 0.8 * k_west / hold
    sc = scenario(
        days=GROWTH_DAYS,
        tick_h=TICK_H,
        rate=GROWTH_RATE,
        west=1,
        north=1,
        gy=1,
        zjk=3,
        rate_per_s=2 * per_region_rps,
    )
    # demand(t) = d0 (1 + r)^(t / month) Erlangs per region, d0 = 0.8 K_west: it reaches
    # K_west (Gui'an), K_west + K_north summed over both regions (the model), and K_north in
    # one region (Zhangjiakou) after log(target / d0) / log(1 + r) months
    d0 = per_region_rps * hold

    def crossing(target: float) -> float:
        return math.log(target / d0) / math.log(1 + GROWTH_RATE) * MONTH_S

    expected = {
        "guizhou": crossing(k_west),
        "national": crossing((k_west + k_north) / 2),
        "bth": crossing(k_north),
    }
    return gs.run(sc), expected


def test_shortfall_dates_by_hand_and_where(growing: tuple[Result, dict[str, float]]) -> None:
    result, expected = growing
    capacity = result.summary["capacity"]
    assert expected["guizhou"] < expected["national"] < GROWTH_DAYS * 86400 < expected["bth"]
    # Demand is held per tick at about its middle's value (the mean of an exponential over
    # two hours is within a second of it here): a shortfall starts at the first tick whose
    # middle is past the crossing, within half a tick of it (the stretch: one tick).
    half_tick = TICK_H * 1800 + 5
    at_s = capacity["shortfall_at_s"]
    assert at_s == pytest.approx(expected["national"], abs=half_tick)
    assert capacity["shortfall_model"] == "qwen3-8b"
    assert capacity["shortfall_day"] == pytest.approx(at_s / 86400, rel=1e-12)
    when = dt.datetime(2026, 3, 2) + dt.timedelta(seconds=at_s)
    assert capacity["shortfall_at"] == when.isoformat()
    assert capacity["by_model"]["qwen3-8b"]["shortfall_at_s"] == at_s
    # only Gui'an runs short (earlier); west, routed there, runs short with it, north when
    # the model does nationally
    hubs = capacity["by_hub"]
    assert hubs["guizhou"]["shortfall_at_s"] == pytest.approx(expected["guizhou"], abs=half_tick)
    assert hubs["bth"]["shortfall_at_s"] is None
    regions = {
        r: (dt.datetime.fromisoformat(v) - dt.datetime(2026, 3, 2)).total_seconds()
        for r, v in capacity["shortfall_by_region"].items()
    }
    assert regions["west"] == pytest.approx(expected["guizhou"], abs=half_tick)
    assert regions["north"] == at_s
    assert regions["west"] < regions["north"] - 10 * 86400
    # the gap: Gui'an's worst hour is the last; Zhangjiakou holds its SLO through the horizon
    (row,) = capacity["gap"]
    assert row["hub"] == "guizhou" and row["replicas_to_add"] >= 1
    last_tick = dt.timedelta(days=GROWTH_DAYS, hours=-TICK_H)
    assert row["peak_at"] == (dt.datetime(2026, 3, 2) + last_tick).isoformat()


def first_hour_demand_exceeds_capacity(result: Result) -> float:
    """From the model series alone: the first time some model's plotted demand exceeds its
    plotted SLO capacity for at least an hour of consecutive intervals."""
    ts = result.timeseries
    models = ts[ts["entity_kind"] == "model"]
    firsts = []
    for _, rows in models.groupby("entity_id"):
        wide = rows.pivot_table(index="time_s", columns="metric", values="value").sort_index()
        times = wide.index.to_numpy(dtype=float)
        step = float(np.diff(times).min())
        over = (wide["demand_erlangs"] > wide["slo_capacity_erlangs"]).to_numpy()
        run = 0
        for i, flag in enumerate(over):
            run = run + 1 if flag else 0
            if run * step >= 3600 - 1e-9:
                firsts.append(times[i - run + 1])
                break
    return min(firsts)


def test_figure_line_summary_and_series_agree(
    growing: tuple[Result, dict[str, float]], tmp_path: Path
) -> None:
    result, _ = growing
    capacity = result.summary["capacity"]
    first_s = first_hour_demand_exceeds_capacity(result)
    assert capacity["shortfall_at_s"] == first_s
    fig = plot_demand_capacity(result)
    assert fig is not None
    ax = fig.axes[0]
    (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "shortfall"]
    x_line = date2num(np.asarray(line.get_xdata())[0])
    x_first = date2num(time_axis(result, np.array([first_s]))[0][0])
    assert x_line == pytest.approx(x_first, abs=1e-9)
    labels = [t.get_text() for t in ax.texts]
    assert f"shortfall {capacity['shortfall_at'][:10]} (qwen3-8b)" in labels
    # the lines drawn are the model series: demand and SLO capacity of the one model
    assert {ln.get_label() for ln in ax.get_lines()} >= {
        "qwen3-8b demand",
        "qwen3-8b SLO capacity",
    }


def test_tightest_headroom_by_hand() -> None:
    """The fan chart's measure: 1 - the largest demand / SLO capacity over the models."""
    from gridsim.engine.capacity import tightest_headroom

    rows = [
        (0.0, "a", "demand_erlangs", 50.0),
        (0.0, "a", "slo_capacity_erlangs", 100.0),
        (0.0, "b", "demand_erlangs", 8.0),
        (0.0, "b", "slo_capacity_erlangs", 10.0),
        (3600.0, "a", "demand_erlangs", 120.0),
        (3600.0, "a", "slo_capacity_erlangs", 100.0),
        (3600.0, "b", "demand_erlangs", 3.0),
        (3600.0, "b", "slo_capacity_erlangs", 10.0),
        (7200.0, "a", "demand_erlangs", 1.0),
        (7200.0, "a", "slo_capacity_erlangs", 0.0),  # every pool of a down: infinitely short
        (7200.0, "b", "demand_erlangs", 0.0),
        (7200.0, "b", "slo_capacity_erlangs", 10.0),
    ]
    ts = pd.DataFrame(rows, columns=["time_s", "entity_id", "metric", "value"]).assign(
        entity_kind="model"
    )
    grid = pd.DataFrame(
        [(0.0, "national", "headroom", 0.9, "grid")],
        columns=["time_s", "entity_id", "metric", "value", "entity_kind"],
    )
    out = tightest_headroom(pd.concat([ts, grid], ignore_index=True))
    assert out["time_s"].tolist() == [0.0, 3600.0, 7200.0]
    assert out["value"].tolist()[:2] == pytest.approx([1 - 0.8, 1 - 1.2])
    assert out["value"].iloc[2] == -np.inf
    assert tightest_headroom(grid).empty  # request fidelity: no model series


def test_headroom_of_a_run_with_no_capacity_up_is_none_without_a_warning() -> None:
    """The only node is down the whole horizon: no interval has slots up, so headroom has no
    mean or minimum (None in summary.json), and numpy's all-NaN warning does not leak out."""
    import warnings

    from test_economics import ONE_NODE  # one node, one H20 pool, one chat class

    text = (
        ONE_NODE.replace("name: one-node", "name: all-down\nfidelity: flow")
        + "events:\n  - {kind: node_outage, at: 0s, duration: 2h, node: solo}\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = gs.run(gs.load_scenario_text(text))
    assert result.summary["capacity"]["headroom"] == {"mean": None, "min": None}
    assert result.summary["requests"]["served"] == 0
