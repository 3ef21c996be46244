"""gridsim.power: hourly solar, wind, green share, carbon and TOU shapes, checked by hand.

Expected values come from theory or hand arithmetic (solar noon from longitude, TOU day means),
never from the code's own output.
"""

from __future__ import annotations

import csv
import datetime
from pathlib import Path

import numpy as np
import pytest

from gridsim.power import (
    grid_green_share,
    hourly_carbon_g_per_kwh,
    province_power,
    solar_cf,
    tou_bands,
    tou_multipliers,
    wind_cf,
)

DATA = Path(__file__).resolve().parents[1] / "gridsim" / "catalog" / "data"
YEAR = datetime.date(2025, 1, 1)  # 365 days, 8,760 hours
LEAP = datetime.date(2024, 1, 1)  # 366 days, 8,784 hours

# (province, capital lat, capital lon) as in sites.csv: west, east, far south
SITES = [
    ("xinjiang", 43.77, 87.68),  # Urumqi
    ("shanghai", 31.230416, 121.473701),
    ("hainan", 20.02, 110.35),  # Haikou
    ("inner_mongolia", 40.82, 111.65),  # Hohhot
]


def _power_rows() -> list[dict[str, str]]:
    with (DATA / "power.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _province_ids() -> list[str]:
    with (DATA / "sites.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return sorted(r["id"] for r in rows if r["attribute"] == "kind" and r["value"] == "province")


def test_power_csv_has_one_row_per_catalogue_province() -> None:
    rows = _power_rows()
    assert sorted(r["province"] for r in rows) == _province_ids()
    assert len(rows) == 31
    for r in rows:
        total = float(r["solar_share"]) + float(r["wind_share"]) + float(r["other_green_share"])
        assert 0.0 <= total <= 1.0, r["province"]
        assert 0.0 < float(r["solar_cf"]) < 1.0 and 0.0 < float(r["wind_cf"]) < 1.0
        assert "[S:" in r["source"], r["province"]


@pytest.mark.parametrize(("province", "lat", "lon"), SITES)
def test_solar_year_mean_range_night_and_noon(province: str, lat: float, lon: float) -> None:
    annual = province_power(province).solar_cf
    cf = solar_cf(lat, lon, YEAR, 8760, annual)
    assert cf.shape == (8760,)
    assert abs(cf.mean() / annual - 1.0) < 0.05
    assert cf.min() >= 0.0 and cf.max() <= 1.0
    days = cf.reshape(365, 24)
    assert np.all(days[:, 2] == 0.0)  # 02:00-03:00 China time: night everywhere in China
    # hand: local solar noon in Beijing time is 12 + (120 - lon) / 15 hours (equation of
    # time averages out over a year); hour h covers [h, h+1), so its middle is h + 0.5
    solar_noon = 12.0 + (120.0 - lon) / 15.0
    peak_hour = int(np.argmax(days.mean(axis=0)))
    assert abs(peak_hour + 0.5 - solar_noon) <= 1.0, (peak_hour, solar_noon)


def test_urumqi_peaks_two_hours_after_shanghai() -> None:
    urumqi = solar_cf(43.77, 87.68, YEAR, 8760, 0.13).reshape(365, 24).mean(axis=0)
    shanghai = solar_cf(31.23, 121.47, YEAR, 8760, 0.13).reshape(365, 24).mean(axis=0)
    # hand: (121.47 - 87.68) / 15 = 2.25 h later
    assert int(np.argmax(urumqi)) - int(np.argmax(shanghai)) in (2, 3)


def test_summer_day_beats_winter_day_at_40n() -> None:
    june = solar_cf(40.0, 116.0, datetime.date(2025, 6, 21), 24, 0.13).sum()
    december = solar_cf(40.0, 116.0, datetime.date(2025, 12, 21), 24, 0.13).sum()
    assert june > december > 0.0


def test_solar_scale_is_per_calendar_year_not_per_window() -> None:
    winter = solar_cf(40.0, 116.0, datetime.date(2025, 11, 15), 60 * 24, 0.13)
    assert winter.mean() < 0.13 * 0.95


def test_solar_clipping_keeps_the_annual_mean() -> None:
    # 0.35 needs a peak above 1 before clipping: the scale must be raised to keep the mean
    cf = solar_cf(40.0, 116.0, YEAR, 8760, 0.35)
    assert cf.max() == 1.0
    assert abs(cf.mean() / 0.35 - 1.0) < 0.01


def test_window_spans_year_end_and_leap_year() -> None:
    start = datetime.date(2024, 12, 31)
    both = solar_cf(40.0, 116.0, start, 48, 0.13)
    assert both.shape == (48,)
    first = solar_cf(40.0, 116.0, start, 24, 0.13)
    second = solar_cf(40.0, 116.0, datetime.date(2025, 1, 1), 24, 0.13)
    np.testing.assert_array_equal(both, np.concatenate([first, second]))
    assert solar_cf(40.0, 116.0, LEAP, 8784, 0.13).mean() == pytest.approx(0.13, rel=1e-6)
    assert solar_cf(40.0, 116.0, YEAR, 0, 0.13).shape == (0,)


def test_wind_year_mean_night_and_season() -> None:
    cf = wind_cf(41.0, YEAR, 8760, 0.24)
    assert abs(cf.mean() / 0.24 - 1.0) < 0.01
    assert cf.min() >= 0.0 and cf.max() <= 1.0
    days = cf.reshape(365, 24)
    assert days[:, 2].mean() > days[:, 14].mean()  # northern inland: windier at night
    march, august = days[59:90].mean(), days[212:243].mean()
    assert march > august  # ASSUMPTION shape: windy spring, calm late summer
    assert wind_cf(41.0, LEAP, 8784, 0.24).mean() == pytest.approx(0.24, rel=1e-6)


@pytest.mark.parametrize("province", ["guangdong", "inner_mongolia", "xinjiang", "shanghai"])
def test_green_share_annual_mean_is_the_hand_sum(province: str) -> None:
    row = next(r for r in _power_rows() if r["province"] == province)
    hand_sum = (
        float(row["solar_share"]) + float(row["wind_share"]) + float(row["other_green_share"])
    )
    green = grid_green_share(province, YEAR, 8760)
    assert green.max() <= 1.0
    assert abs(green.mean() / hand_sum - 1.0) < 0.01


def test_green_share_caps_at_one_in_solar_heavy_qinghai() -> None:
    green = grid_green_share("qinghai", YEAR, 8760)
    assert green.max() == 1.0
    p = province_power("qinghai")
    # the capped noon surplus leaves the province, so the hourly mean falls short of the sum
    assert green.mean() < p.solar_share + p.wind_share + p.other_green_share


@pytest.mark.parametrize("province", _province_ids())
def test_carbon_year_mean_is_the_annual_factor(province: str) -> None:
    annual = 500.0
    carbon = hourly_carbon_g_per_kwh(annual, province, YEAR, 8760)
    assert carbon.min() >= 0.0
    assert abs(carbon.mean() / annual - 1.0) < 0.01
    if province_power(province).solar_share > 0:
        days = carbon.reshape(365, 24)
        assert days[:, 12].mean() < days[:, 0].mean()


def test_carbon_window_of_a_year_from_mid_year_averages_near_the_factor() -> None:
    carbon = hourly_carbon_g_per_kwh(440.3, "guangdong", datetime.date(2024, 7, 1), 8760)
    # two calendar years, each exact: any 8,760-hour window is close to the factor
    assert abs(carbon.mean() / 440.3 - 1.0) < 0.01


def test_tou_guangdong_hand_check_and_bill() -> None:
    m = tou_multipliers("guangdong")
    bands = tou_bands("guangdong")
    assert m.shape == (24,) and len(bands) == 24
    assert bands.count("peak") == 7 and bands.count("flat") == 9 and bands.count("valley") == 8
    # hand: day mean of raw ratios (7 * 1.6 + 9 * 1 + 8 * 0.4) / 24 = 0.975
    assert m[11] == pytest.approx(1.6 / 0.975)
    assert m[9] == pytest.approx(1.0 / 0.975)
    assert m[3] == pytest.approx(0.4 / 0.975)
    assert m.mean() == pytest.approx(1.0, abs=1e-12)
    # bill of 2 kW in 10:00-12:00 and 1 kW otherwise at a day-average price of 1 CNY/kWh:
    # (2*2*1.6 + 5*1.6 + 9*1 + 8*0.4) / 0.975 = 26.6 / 0.975 CNY
    load = np.ones(24)
    load[10:12] = 2.0
    assert float(load @ m) == pytest.approx(26.6 / 0.975)
    # the same bill at Guangdong's C&I energy charges (peak 1.048, flat 0.655, valley 0.262):
    # 4 * 1.048 + 5 * 1.048 + 9 * 0.655 + 8 * 0.262 = 17.423 CNY, with the day-average price of
    # a flat load being 0.655 * 0.975
    assert float(load @ m) * 0.655 * 0.975 == pytest.approx(17.423)


def test_tou_other_schedules() -> None:
    flat = tou_multipliers("flat")
    np.testing.assert_array_equal(flat, np.ones(24))
    default = tou_multipliers("national_default")
    bands = tou_bands("national_default")
    peak = default[[h for h in range(24) if bands[h] == "peak"]]
    valley = default[[h for h in range(24) if bands[h] == "valley"]]
    assert peak.min() / valley.max() >= 3.0 - 1e-9  # the NDRC 1093 minimum spread
    assert default.mean() == pytest.approx(1.0, abs=1e-12)
    for p in _province_ids():
        tou_multipliers(province_power(p).tou)  # every province maps to a known schedule


def test_bad_ids_raise_key_errors_naming_known_ids() -> None:
    with pytest.raises(KeyError, match=r"atlantis.*known:.*guangdong"):
        province_power("atlantis")
    with pytest.raises(KeyError, match=r"atlantis.*known:.*inner_mongolia"):
        grid_green_share("atlantis", YEAR, 24)
    with pytest.raises(KeyError, match=r"atlantis.*known:.*guangdong"):
        hourly_carbon_g_per_kwh(500.0, "atlantis", YEAR, 24)
    with pytest.raises(KeyError, match=r"nope.*known:.*national_default"):
        tou_multipliers("nope")
    with pytest.raises(KeyError, match=r"nope.*known:.*flat"):
        tou_bands("nope")
