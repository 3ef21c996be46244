"""Hour by hour, each node's grid carbon intensity, electricity price and green share.

A node draws from its province's grid (its catalogue site's province; a node placed by
coordinates takes the nearest province capital's). With the scenario's ``power:`` block and
``hourly: true``:

- **carbon**: the province's hourly intensity (``gridsim.power.profiles``), scaled to the
  node's own annual factor (its ``carbon_g_per_kwh``, which defaults to the province's): the
  mean over a calendar year is that factor;
- **price**: the node's price x the hour's time-of-use multiplier (``gridsim.power.tariffs``;
  mean 1 over the day, so the node's price is its day-average price under a flat load), from
  ``power.tou`` for the node or its province's schedule;
- **green share** of the grid's electricity: the province's hourly wind, solar and other green
  (hydro, biomass) share;
- **own renewables** (``power.onsite``): the site's solar and wind MW at capacity factors of
  the province's annual figures, shaped at the node's coordinates.

Without the block (or ``hourly: false``) carbon and price are the node's constants and the
green share is the province's annual one. Hour 0 is the horizon's first hour (midnight, China
time, on its start date).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridsim.power.profiles import (
    grid_green_share,
    hourly_carbon_g_per_kwh,
    province_power,
    solar_cf,
    wind_cf,
)
from gridsim.power.tariffs import tou_multipliers
from gridsim.scenario import Scenario

FloatArray = npt.NDArray[np.float64]
HOUR_S = 3600.0


@dataclass(frozen=True)
class NodePower:
    """(hours, nodes) arrays in ``node_ids``' order."""

    node_ids: tuple[str, ...]
    provinces: tuple[str, ...]
    carbon_g_per_kwh: FloatArray
    price_cny_per_kwh: FloatArray
    tou_factor: FloatArray  # the hour's time-of-use multiplier (1 without hourly prices)
    grid_green_share: FloatArray
    onsite_kw: FloatArray  # own renewables' output
    hourly: bool

    @property
    def hours(self) -> int:
        return int(self.carbon_g_per_kwh.shape[0])

    def column(self, node_id: str) -> int:
        return self.node_ids.index(node_id)


def horizon_hours(scenario: Scenario) -> int:
    return max(1, math.ceil(scenario.horizon.duration / HOUR_S - 1e-9))


def node_province(scenario: Scenario, node_id: str) -> str:
    """The province a node draws its power from."""
    catalog = scenario.resolved_catalog
    node = next(n for n in scenario.nodes if n.id == node_id)
    site = catalog.sites.get(node.site or "")
    if site is not None and site.province:
        return site.province
    lat = node.lat if node.lat is not None else (site.lat if site else 0.0)
    lon = node.lon if node.lon is not None else (site.lon if site else 0.0)
    provinces = [s for s in catalog.sites.values() if s.kind == "province"]
    nearest = min(provinces, key=lambda s: (s.lat - lat) ** 2 + (s.lon - lon) ** 2)
    return nearest.id


def node_power(
    scenario: Scenario,
    node_ids: tuple[str, ...],
    carbon_g_per_kwh: dict[str, float],
    price_cny_per_kwh: dict[str, float],
    hours: int | None = None,
) -> NodePower:
    """Hourly carbon, price and green share of ``node_ids`` over ``hours`` (default: the
    horizon's) from the nodes' annual ``carbon_g_per_kwh`` and day-average prices."""
    n_h = horizon_hours(scenario) if hours is None else hours
    power = scenario.power
    hourly = power is not None and power.hourly
    start = scenario.horizon.start
    catalog = scenario.resolved_catalog
    nodes = {n.id: n for n in scenario.nodes}
    provinces = tuple(node_province(scenario, n) for n in node_ids)
    shape = (n_h, len(node_ids))
    carbon, price, factor = np.empty(shape), np.empty(shape), np.ones(shape)
    green, onsite = np.empty(shape), np.zeros(shape)
    hour_of_day = np.arange(n_h) % 24
    own = {s.node: s for s in (power.onsite if power is not None else [])}
    for j, (node_id, prov) in enumerate(zip(node_ids, provinces, strict=True)):
        pp = province_power(prov)
        if hourly:
            carbon[:, j] = hourly_carbon_g_per_kwh(carbon_g_per_kwh[node_id], prov, start, n_h)
            assert power is not None
            tou = tou_multipliers(power.tou.get(node_id, pp.tou))
            factor[:, j] = tou[hour_of_day]
            price[:, j] = price_cny_per_kwh[node_id] * factor[:, j]
            green[:, j] = grid_green_share(prov, start, n_h)
        else:
            carbon[:, j] = carbon_g_per_kwh[node_id]
            price[:, j] = price_cny_per_kwh[node_id]
            green[:, j] = min(1.0, pp.solar_share + pp.wind_share + pp.other_green_share)
        site = own.get(node_id)
        if site is not None:
            node = nodes[node_id]
            place = catalog.sites.get(node.site or "")
            lat = node.lat if node.lat is not None else (place.lat if place else 0.0)
            lon = node.lon if node.lon is not None else (place.lon if place else 0.0)
            if site.solar_mw:
                onsite[:, j] += site.solar_mw * 1e3 * solar_cf(lat, lon, start, n_h, pp.solar_cf)
            if site.wind_mw:
                onsite[:, j] += site.wind_mw * 1e3 * wind_cf(lat, start, n_h, pp.wind_cf)
    return NodePower(node_ids, provinces, carbon, price, factor, green, onsite, hourly)


def interval_means(hourly: FloatArray, time_s: FloatArray, width_s: FloatArray) -> FloatArray:
    """The mean of an hourly series (hours, ...) over each interval [time, time + width):
    rows of ``hourly`` picked by interval, hours weighted by their overlap."""
    n_h = hourly.shape[0]
    cum = np.concatenate([np.zeros((1, *hourly.shape[1:])), np.cumsum(hourly, axis=0)])

    def integral(t: FloatArray) -> FloatArray:
        x = np.clip(t / HOUR_S, 0.0, n_h)
        k = np.minimum(np.floor(x).astype(np.intp), n_h - 1)
        frac = (x - k).reshape(-1, *([1] * (hourly.ndim - 1)))
        out: FloatArray = cum[k] + frac * hourly[k]
        return out

    t0 = np.asarray(time_s, dtype=float)
    t1 = t0 + np.asarray(width_s, dtype=float)
    span = np.maximum((np.minimum(t1, n_h * HOUR_S) - np.minimum(t0, n_h * HOUR_S)) / HOUR_S, 0)
    span = span.reshape(-1, *([1] * (hourly.ndim - 1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: FloatArray = (integral(t1) - integral(t0)) / span
    k0 = np.minimum((t0 // HOUR_S).astype(np.intp), n_h - 1)
    return np.where(span > 0, mean, hourly[k0])
