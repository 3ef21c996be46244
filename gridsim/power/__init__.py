"""Hourly power profiles per province: solar and wind output, green share, carbon, TOU tariffs."""

from gridsim.power.profiles import (
    ProvincePower,
    grid_green_share,
    hourly_carbon_g_per_kwh,
    province_power,
    solar_cf,
    wind_cf,
)
from gridsim.power.tariffs import tou_bands, tou_multipliers

__all__ = [
    "ProvincePower",
    "grid_green_share",
    "hourly_carbon_g_per_kwh",
    "province_power",
    "solar_cf",
    "tou_bands",
    "tou_multipliers",
    "wind_cf",
]
