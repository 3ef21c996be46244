"""Hour-by-hour power profiles of a Chinese province: solar and wind output, green share, carbon.

Every hourly array has ``hours`` entries; entry ``i`` is the hour that starts ``i`` hours after
``start`` 00:00 China time (Asia/Shanghai, UTC+8, no daylight saving). A horizon may start on
any date and run past a year end: each profile is built and scaled per calendar year (8,760 or
8,784 hours) and the window is cut out of the years it spans.

Method
------
*Solar* (`solar_cf`): pvlib's solar position and its ``simplified_solis`` clear-sky model (no
downloaded data), transposed onto a fixed plane facing south at tilt = latitude (isotropic sky,
``pvlib.irradiance.get_total_irradiance``), sampled at the middle of each hour. The clear-sky
shape is scaled so that the mean over the calendar year equals the province's annual capacity
factor, clipped at 1 (the scale is iterated if clipping bites). The scale belongs to the year,
not to the requested window: a winter window averages below the annual factor. Clear sky puts
the cloud loss into the scale, spread evenly over the year -- the shape is right in hour and
season, not in day-to-day weather.

*Wind* (`wind_cf`): ASSUMPTION, no hourly source was found. A diurnal shape
``1 + a cos(2 pi (h - 2) / 24)`` (maximum at 02:00, as in inland northern China where night
winds are stronger; ``a`` = 0.15 north of 35 N, 0.08 south of it) times a seasonal shape
``1 + 0.25 cos(2 pi (doy - 60) / 365.25)`` (windy late winter and spring, calm late summer),
scaled to the annual factor over the calendar year like solar.

*Grid green share* (`grid_green_share`): ``solar_share * s(h) / s_annual + wind_share * w(h) /
w_annual + other_green_share``, capped at 1, with the province's solar and wind taken at its
capital (``sites.csv``). Over a calendar year it averages to the sum of the three shares unless
the cap bites (noon in a solar-heavy province such as Qinghai, whose surplus is exported).

*Carbon* (`hourly_carbon_g_per_kwh`): fossil plants supply the rest of each hour, so
``I(h) = k (1 - green(h))`` with ``k`` set per calendar year so that the year's hourly mean
equals the province's annual factor. This weighs every hour of the year equally, i.e. treats
demand as flat over the year: the annual factor is itself a ratio of annual totals, provincial
hourly demand is not published, and a data-centre load -- what gridsim prices -- is close to
flat, so the flat weighting is the one under which a flat load's footprint stays exact.

Figures per province are in ``gridsim/catalog/data/power.csv`` with their sources.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

import numpy as np
import pandas as pd
import pvlib

TZ = "Asia/Shanghai"
_DATA = "data"


@dataclass(frozen=True)
class ProvincePower:
    """A province's annual power figures (see power.csv for their sources)."""

    province: str
    solar_cf: float
    wind_cf: float
    solar_share: float
    wind_share: float
    other_green_share: float
    tou: str


def _read_catalog_csv(name: str) -> list[dict[str, str]]:
    text = (resources.files("gridsim.catalog") / _DATA / name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@cache
def _provinces() -> Mapping[str, ProvincePower]:
    table: dict[str, ProvincePower] = {}
    for row in _read_catalog_csv("power.csv"):
        table[row["province"]] = ProvincePower(
            province=row["province"],
            solar_cf=float(row["solar_cf"]),
            wind_cf=float(row["wind_cf"]),
            solar_share=float(row["solar_share"]),
            wind_share=float(row["wind_share"]),
            other_green_share=float(row["other_green_share"]),
            tou=row["tou"],
        )
    return table


@cache
def _capitals() -> Mapping[str, tuple[float, float]]:
    """(lat, lon) of each province's capital, from the sites catalogue."""
    rows = _read_catalog_csv("sites.csv")
    provinces = {r["id"] for r in rows if r["attribute"] == "kind" and r["value"] == "province"}
    coords: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["id"] in provinces and r["attribute"] in ("lat", "lon"):
            coords.setdefault(r["id"], {})[r["attribute"]] = float(r["value"])
    return {p: (c["lat"], c["lon"]) for p, c in coords.items()}


def province_power(province: str) -> ProvincePower:
    """The catalogue figures of a province id (e.g. ``"inner_mongolia"``)."""
    table = _provinces()
    try:
        return table[province]
    except KeyError:
        raise KeyError(f"unknown province {province!r}; known: {sorted(table)}") from None


# --- calendar-year machinery -------------------------------------------------------------


def _year_hours(year: int) -> int:
    return 8784 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 8760


def _window(
    start: datetime.date, hours: int, year_profile: Callable[[int], np.ndarray]
) -> np.ndarray:
    """``hours`` entries of a per-year profile from ``start`` 00:00 on, across year ends."""
    if hours < 0:
        raise ValueError(f"hours must be >= 0, got {hours}")
    offset = (start - datetime.date(start.year, 1, 1)).days * 24
    parts: list[np.ndarray] = []
    need = offset + hours
    year = start.year
    while need > 0:
        profile = year_profile(year)
        parts.append(profile)
        need -= len(profile)
        year += 1
    if not parts:
        return np.zeros(0)
    return np.concatenate(parts)[offset : offset + hours]


def _scale_to_mean(shape: np.ndarray, target: float) -> np.ndarray:
    """``min(1, s * shape)`` with the scale ``s`` chosen so that the mean equals ``target``.

    Clipping at 1 removes energy, so the scale is raised until the clipped mean reaches the
    target (the clipped mean grows monotonically with ``s``).
    """
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"annual capacity factor must lie in [0, 1], got {target}")
    if target == 0.0:
        return np.zeros_like(shape)
    positive = float(np.mean(shape > 0))
    if target > positive:
        raise ValueError(
            f"annual capacity factor {target} exceeds the share of producing hours {positive:.3f}"
        )
    scale = target / float(np.mean(shape))
    out = np.minimum(1.0, scale * shape)
    for _ in range(100):
        mean = float(np.mean(out))
        if abs(mean - target) <= 1e-9 * target:
            break
        scale *= target / mean
        out = np.minimum(1.0, scale * shape)
    return out


# --- solar ---------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _solar_shape(lat: float, lon: float, year: int) -> np.ndarray:
    """Clear-sky plane-of-array irradiance (W/m2), tilt = latitude facing south, per hour."""
    # mid-hour sampling: entry i stands for the hour [i, i+1), so evaluate at i + 30 min
    times = pd.date_range(
        start=pd.Timestamp(year=year, month=1, day=1, hour=0, minute=30, tz=TZ),
        periods=_year_hours(year),
        freq="h",
    )
    site = pvlib.location.Location(latitude=lat, longitude=lon, tz=TZ)
    with warnings.catch_warnings():
        # pvlib 0.16 still calls a DatetimeIndex attribute that pandas has deprecated
        warnings.filterwarnings("ignore", message=".*dayofyear is deprecated.*")
        position = site.get_solarposition(times)
        clear = site.get_clearsky(times, model="simplified_solis", solar_position=position)
    # south-facing in the northern hemisphere, north-facing in the southern one
    azimuth = 180.0 if lat >= 0 else 0.0
    poa = pvlib.irradiance.get_total_irradiance(
        surface_tilt=abs(lat),
        surface_azimuth=azimuth,
        solar_zenith=position["apparent_zenith"],
        solar_azimuth=position["azimuth"],
        dni=clear["dni"],
        ghi=clear["ghi"],
        dhi=clear["dhi"],
    )["poa_global"]
    values = np.nan_to_num(np.asarray(poa, dtype=float), nan=0.0)
    # below the horizon there is no output, whatever the diffuse model says
    values[np.asarray(position["apparent_elevation"]) <= 0.0] = 0.0
    values = np.clip(values, 0.0, None)
    values.setflags(write=False)
    return values


@lru_cache(maxsize=256)
def _solar_year(lat: float, lon: float, year: int, annual_cf: float) -> np.ndarray:
    out = _scale_to_mean(_solar_shape(lat, lon, year), annual_cf)
    out.setflags(write=False)
    return out


def solar_cf(
    lat_deg: float, lon_deg: float, start: datetime.date, hours: int, annual_cf: float
) -> np.ndarray:
    """Hourly capacity factor of utility PV at a site, averaging to ``annual_cf`` per year."""
    lat, lon = round(lat_deg, 2), round(lon_deg, 2)  # cache key: 0.01 deg is ~1 km
    return _window(start, hours, lambda year: _solar_year(lat, lon, year, float(annual_cf)))


# --- wind ----------------------------------------------------------------------------------

# ASSUMPTION (no hourly source): night maximum at 02:00; amplitude larger inland in the north
_WIND_NIGHT_PEAK_HOUR = 2.0
_WIND_DIURNAL_NORTH = 0.15
_WIND_DIURNAL_SOUTH = 0.08
_WIND_NORTH_LAT = 35.0
# ASSUMPTION: seasonal maximum around day 60 (March), minimum in late summer
_WIND_SEASONAL_AMPLITUDE = 0.25
_WIND_SEASONAL_PEAK_DOY = 60.0


@lru_cache(maxsize=256)
def _wind_year(north: bool, year: int, annual_cf: float) -> np.ndarray:
    n = _year_hours(year)
    hour_mid = np.arange(n) + 0.5  # hours since Jan 1 00:00, mid-hour
    hour_of_day = hour_mid % 24.0
    day_of_year = hour_mid / 24.0 + 1.0
    diurnal_amp = _WIND_DIURNAL_NORTH if north else _WIND_DIURNAL_SOUTH
    diurnal = 1.0 + diurnal_amp * np.cos(2 * math.pi * (hour_of_day - _WIND_NIGHT_PEAK_HOUR) / 24)
    seasonal = 1.0 + _WIND_SEASONAL_AMPLITUDE * np.cos(
        2 * math.pi * (day_of_year - _WIND_SEASONAL_PEAK_DOY) / 365.25
    )
    out = _scale_to_mean(diurnal * seasonal, annual_cf)
    out.setflags(write=False)
    return out


def wind_cf(lat_deg: float, start: datetime.date, hours: int, annual_cf: float) -> np.ndarray:
    """Hourly wind capacity factor (ASSUMPTION shapes), averaging to ``annual_cf`` per year."""
    north = lat_deg >= _WIND_NORTH_LAT
    return _window(start, hours, lambda year: _wind_year(north, year, float(annual_cf)))


# --- grid green share and carbon -----------------------------------------------------------


@lru_cache(maxsize=128)
def _green_year(province: str, year: int) -> np.ndarray:
    p = province_power(province)
    lat, lon = _capitals()[province]
    day = datetime.date(year, 1, 1)
    n = _year_hours(year)
    green = np.full(n, p.other_green_share)
    if p.solar_share > 0 and p.solar_cf > 0:
        green += p.solar_share * solar_cf(lat, lon, day, n, p.solar_cf) / p.solar_cf
    if p.wind_share > 0 and p.wind_cf > 0:
        green += p.wind_share * wind_cf(lat, day, n, p.wind_cf) / p.wind_cf
    # an hour cannot be more than all green: the surplus is exported, stored or curtailed
    green = np.minimum(green, 1.0)
    green.setflags(write=False)
    return green


def grid_green_share(province: str, start: datetime.date, hours: int) -> np.ndarray:
    """Hourly share of the province's electricity from wind, solar, hydro and biomass."""
    province_power(province)  # a clear KeyError before any work
    return _window(start, hours, lambda year: _green_year(province, year))


def hourly_carbon_g_per_kwh(
    annual_g_per_kwh: float, province: str, start: datetime.date, hours: int
) -> np.ndarray:
    """Hourly grid carbon intensity whose mean over each calendar year is ``annual_g_per_kwh``."""
    province_power(province)

    def year_profile(year: int) -> np.ndarray:
        fossil = 1.0 - _green_year(province, year)
        mean = float(np.mean(fossil))
        if mean <= 0.0:
            if annual_g_per_kwh == 0.0:
                return np.zeros_like(fossil)
            raise ValueError(
                f"{province}: every hour of {year} is fully green, so no hourly profile can "
                f"average to {annual_g_per_kwh} g/kWh"
            )
        return (annual_g_per_kwh / mean) * fossil

    return _window(start, hours, year_profile)
