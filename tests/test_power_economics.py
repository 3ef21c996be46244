"""Hour-by-hour power in economics: a time-of-use bill and hourly carbon worked by hand, and
a site's own solar covering its draw (gridsim.economics with a power: block)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

import gridsim as gs
from gridsim.power.profiles import grid_green_share, hourly_carbon_g_per_kwh, solar_cf
from gridsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
HAND = ROOT / "scenarios" / "validation" / "day-night.yaml"
HOUR = 3600.0
# Guangdong's C&I schedule by hand: valley 0-8 (0.4 of flat), peak 10-12 and 14-19 (1.6)
GUANGDONG = np.array([0.4] * 8 + [1, 1, 1.6, 1.6, 1, 1] + [1.6] * 5 + [1] * 5)


@cache
def run(*sets: str) -> gs.Result:
    sc = load_scenario(HAND, sets=["power.tou={dc: guangdong}", *sets])
    return gs.run(sc.model_copy(update={"training": None}), fidelity="flow")


def hourly_energy_kwh(result: gs.Result) -> np.ndarray:
    """The pool's energy hour by hour from its busy and up slot-seconds, by hand: 8 H100 cards
    at TDP x (idle + (1 - idle) x busy share) x PUE."""
    ts = result.timeseries
    pool = result.pools.iloc[0]
    per = {}
    for metric in ("busy_slot_s", "capacity_slot_s"):
        rows = ts[(ts["entity_kind"] == "pool") & (ts["metric"] == metric)]
        per[metric] = rows.groupby(rows["time_s"] // HOUR)["value"].sum().to_numpy()
    share = per["busy_slot_s"] / per["capacity_slot_s"]
    idle = pool["accelerator_idle_fraction"]
    kw = 8 * pool["accelerator_tdp_w"] / 1e3 * (idle + (1 - idle) * share) * pool["pue"]
    return np.asarray(kw * 1.0)  # an hour at a time: kW x 1 h


def test_time_of_use_bill_by_hand() -> None:
    result = run()
    kwh = hourly_energy_kwh(result)
    assert kwh.size == 24
    price = result.pools.iloc[0]["price_cny_per_kwh"]
    # the node's price is its day-average under a flat load: the schedule's mean is 1
    bill = float((kwh * price * GUANGDONG / GUANGDONG.mean()).sum())
    assert result.summary["economics"]["electricity_cny"] == pytest.approx(bill, rel=1e-9)
    flat = float((kwh * price).sum())
    assert bill != pytest.approx(flat, rel=1e-3)  # the shape matters for this load


def test_hourly_carbon_by_hand() -> None:
    result = run()
    kwh = hourly_energy_kwh(result)
    pool = result.pools.iloc[0]
    start = result.scenario.horizon.start
    grams = hourly_carbon_g_per_kwh(pool["carbon_g_per_kwh"], "inner_mongolia", start, 24)
    want = float((kwh * grams).sum() / 1e3)
    assert result.summary["economics"]["carbon_kg"] == pytest.approx(want, rel=1e-9)
    green = grid_green_share("inner_mongolia", start, 24)
    site = result.summary["power"]["by_node"]["dc"]
    assert site["green_share"] == pytest.approx(float((kwh * green).sum() / kwh.sum()), rel=1e-9)


def test_own_solar_covers_the_draw_when_the_sun_shines() -> None:
    """1 MW of panels on site against a ~7 kW draw: every hour with sun covers the draw, the
    rest comes from the grid at its green share and carbon."""
    base, sunny = run(), run("power.onsite=[{node: dc, solar_mw: 1}]")
    start = base.scenario.horizon.start
    kwh = hourly_energy_kwh(sunny)
    pool = sunny.pools.iloc[0]
    pp_cf = 0.132  # the province's annual CF (gridsim/catalog/data/power.csv)
    sun_kwh = 1e3 * solar_cf(40.82, 111.65, start, 24, pp_cf)
    own = np.minimum(kwh, sun_kwh)
    assert sunny.summary["power"]["onsite_kwh"] == pytest.approx(float(own.sum()), rel=1e-9)
    assert own[12] == pytest.approx(kwh[12]) and own[0] == 0.0
    grams = hourly_carbon_g_per_kwh(pool["carbon_g_per_kwh"], "inner_mongolia", start, 24)
    want = float(((kwh - own) * grams).sum() / 1e3)
    assert sunny.summary["economics"]["carbon_kg"] == pytest.approx(want, rel=1e-9)
    green = grid_green_share("inner_mongolia", start, 24)
    share = float((own + (kwh - own) * green).sum() / kwh.sum())
    assert sunny.summary["power"]["green_share"] == pytest.approx(share, rel=1e-9)
    assert sunny.summary["power"]["green_share"] > base.summary["power"]["green_share"]


def test_hourly_false_keeps_one_price_and_one_factor() -> None:
    result = run("power.hourly=false")
    kwh = hourly_energy_kwh(result)
    pool = result.pools.iloc[0]
    econ = result.summary["economics"]
    assert econ["electricity_cny"] == pytest.approx(kwh.sum() * pool["price_cny_per_kwh"])
    assert econ["carbon_kg"] == pytest.approx(kwh.sum() * pool["carbon_g_per_kwh"] / 1e3)
