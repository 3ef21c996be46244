"""Demand: how many tokens, requests and jobs arrive, when, where and how big.

- ``growth``: the national growth law, region weights, diurnal x weekly profiles, and the
  hourly intensity (rate shape) they make together;
- ``lengths``: token lengths and service times from the scenario's distributions;
- ``traces``: reading Azure / Mooncake traces and replaying them on the simulation clock;
- ``arrivals``: the random streams, one per (class, region) or per trace class;
- ``model``: ``DemandModel``, the rates (flow engine) and arrivals (request engine) of a scenario.

Pure numpy, no SimPy; randomness only from generators seeded by the caller's seed.
"""

from gridsim.demand.arrivals import NATIONAL, Arrivals, stable_hash, stream_seed
from gridsim.demand.growth import (
    MONTH_DAYS,
    HourlyIntensity,
    national_tokens_per_day,
    profile_factor,
    region_weights,
)
from gridsim.demand.lengths import LengthSampler
from gridsim.demand.model import DemandModel
from gridsim.demand.traces import TraceData, TraceReplay, load_trace, read_trace

__all__ = [
    "MONTH_DAYS",
    "NATIONAL",
    "Arrivals",
    "DemandModel",
    "HourlyIntensity",
    "LengthSampler",
    "TraceData",
    "TraceReplay",
    "load_trace",
    "national_tokens_per_day",
    "profile_factor",
    "read_trace",
    "region_weights",
    "stable_hash",
    "stream_seed",
]
