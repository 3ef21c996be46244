"""Estimating a run before it allocates anything, and refusing runs that are too big.

Closed forms only: the demand model's mean rates (share of national tokens over mean tokens a
request, or ``rate_per_s``) times the integral of growth x diurnal/weekly profile on at most 256
intervals; ticks, blocks and time-series rows by the engines' own rules. Nothing proportional
to the horizon is allocated; huge inputs give huge (or infinite) floats, never an error. Demand
shocks and events are left out.

Calibration: ``gridsim run FILE --out /tmp/..`` in a child, 2 cores; CPU s (user + sys, an idle
machine's wall time) and peak RSS by ``/usr/bin/time``, measured (estimated). Request fidelity:
mmc.yaml 51.7k requests 3.1 s 239 MB (3.2 s 242 MB), figures off 1.4 s 204 MB (1.4, 202), 1 h
at 720/s on 800 slots 2.59M 11.9 s 398 MB (13.5, 402); cross_fidelity.yaml 748k 6.4 s 252 MB
(6.2, 243), outputs.requests 7.5 s 462 MB (6.2, 468); baseline-hour.yaml 20k 3.8 s 261 MB (3.3,
264), 2 d at 1e-7 (530k series rows) 8.7 s 419 MB (8.6, 429). Flow: cross_fidelity.yaml 1,440
ticks x 18 cells 3.4 s 245 MB (3.2, 242), 30 d 5.3 s 302 MB (8.3, 291), 5 d at 1 s (432k ticks)
3.8 s 278 MB (47, 285); baseline.yaml 5,760 ticks x 9,610 cells 14.2 s 345 MB (16.0, 347),
figures off 11.2 s 296 MB (13.1, 288), 7 d 6.0 s (5.5), 1 d 4.4 s (3.8); growth-*.yaml (8,760
ticks, 1.66M rows) 23-33 s ~780 MB (24, 790); README example, no figures, 10 y at 1 h 12.2 s.

Fitted (the constants below): start-up 1.2 s, 200 MB; figures 1.8 s, 40 MB; a series row 1 us,
250 B (+4 us, 70 B with figures). Request fidelity: 4 us a request + 0.06 us a pool (measured
3.5-7.4 us), 65 us a region x class stream per 10-minute chunk, 300 B a per-request table row,
~370 B an arrival of the chunk in hand. Flow: 1.6 ms a (class, pool) of service templates; a
block of ticks (an hour, or 1/1000 of the run) 0.3 ms + 0.9 us a cell; a tick 100 us + 0.035 us
a cell, as stepped on its own by a grid under strain (README example: 120 us; a grid with room
to spare runs ticks in bulk at ~1 us, so fine ticks may be overestimated ~10x); 80 B a tick,
2 kB a cell.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from gridsim.demand.growth import DAY_S, HOUR_S, national_tokens_per_day, profile_factor

if TYPE_CHECKING:
    from gridsim.scenario import Scenario
    from gridsim.scenario.schema import DemandClass

FloatArray = npt.NDArray[np.float64]

# `fidelity: auto` simulates every request only up to this many: 2e7 requests take ~1-3 min at
# 3-10 us each, while the flow engine gives the same aggregates in seconds; beyond it the
# per-request detail is not worth the wait (and sampled hours stay well below it).
AUTO_REQUEST_MAX = 2e7
REQUEST_FIDELITY_MAX_S = 86400.0  # `fidelity: auto` simulates every request up to one day
MAX_INTERVALS = 256  # growth x profile integrated on at most this many intervals
WEEK_S = 7 * DAY_S
CHUNK_S = 600.0  # the request engine draws arrivals this many seconds at a time (request.py)

# Calibration (see the module docstring): seconds of CPU and bytes of peak RSS.
WALL_START_S = 1.2  # imports, scenario, grid, writing the folder
WALL_FIGURES_S = 1.8  # figures and report.html
WALL_PER_ROW_S = 1e-6  # a time-series row: recording, the table, parquet
WALL_PER_ROW_FIGURES_S = 4e-6  # ... and drawing it
WALL_PER_REQUEST_S = 4e-6  # request fidelity
WALL_PER_REQUEST_POOL_S = 6e-8  # ... more with more pools to choose from
WALL_PER_STREAM_CHUNK_S = 6.5e-5  # an arrival stream (region x class) drawn for one chunk
WALL_PER_CLASS_POOL_S = 1.6e-3  # flow: service-time templates
WALL_PER_BLOCK_S = 3e-4  # flow: latency recording per block of ticks ...
WALL_PER_BLOCK_CELL_S = 9e-7  # ... and per cell of it
WALL_PER_TICK_S = 1e-4  # flow: a tick stepped on its own (a grid under strain) ...
WALL_PER_TICK_CELL_S = 3.5e-8  # ... and per cell of it
MEM_BASE_B = 200e6  # numpy, pandas, SciPy, SimPy, the catalogue
MEM_FIGURES_B = 40e6
MEM_PER_CELL_B = 2e3  # grid, policy and per-block latency arrays
MEM_PER_ROW_B = 250.0
MEM_PER_ROW_FIGURES_B = 70.0
MEM_PER_REQUEST_ROW_B = 300.0  # outputs.requests: the per-request table
MEM_PER_CHUNK_ARRIVAL_B = 250.0  # request fidelity: one chunk's arrivals as Python rows
CHUNK_PEAK = 1.5  # a busy chunk against the mean one
MEM_PER_TICK_B = 80.0  # flow: capacity rows (5 floats a tick, stacked once at the end)
MEM_BLOCK_ARRAYS = 6  # flow: arrays of block ticks x (regions x classes + classes x pools)


@dataclass(frozen=True)
class RunEstimate:
    fidelity: str  # "request" or "flow": the engine that would run
    requests: float  # expected arrivals over the horizon (shocks and events left out)
    ticks: int  # flow ticks, ceil(duration / resolution)
    cells: int  # flow array cells per tick: regions x classes x pools
    timeseries_rows: int  # rows of the tidy timeseries table (approximately)
    memory_bytes: float  # estimated peak memory
    wall_s: float  # estimated wall time of `gridsim run`

    def describe(self) -> str:
        size = f"about {_count(self.requests)} requests"
        if self.fidelity == "flow":
            size = f"{_count(self.ticks)} ticks x {_count(self.cells)} cells, {size}"
        return (
            f"{self.fidelity} fidelity: {size}, {_bytes(self.memory_bytes)}, "
            f"{_duration(self.wall_s)} of wall time"
        )


def _physical_half() -> float:
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) / 2
    except (AttributeError, ValueError, OSError):
        return float(8 * 2**30)


@dataclass(frozen=True)
class Limits:
    """What a run may take before ``check_run`` refuses it (requests: request fidelity only)."""

    requests: float = 1e9  # ~1-3 h at 3-10 us a request
    memory_bytes: float = _physical_half()  # half the machine's memory (8 GiB if unknown)
    wall_s: float = 2 * 3600.0

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults, overridden by GRIDSIM_MAX_REQUESTS, _MEMORY_BYTES, _WALL_S (inf: none)."""
        default = cls()
        values = {}
        for field, var in _ENV.items():
            text = os.environ.get(var, "").strip()
            if not text:
                values[field] = getattr(default, field)
                continue
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not value > 0:  # also rejects nan
                raise ValueError(f"{var}={text!r}: give a positive number, e.g. {var}=1e9")
            values[field] = value
        return cls(**values)


_ENV = {
    "requests": "GRIDSIM_MAX_REQUESTS",
    "memory_bytes": "GRIDSIM_MAX_MEMORY_BYTES",
    "wall_s": "GRIDSIM_MAX_WALL_S",
}


class RunTooLarge(ValueError):
    """A run whose estimate exceeds a limit; the message says which and the ways on."""

    def __init__(self, estimate: RunEstimate, limits: Limits, exceeded: tuple[str, ...]) -> None:
        self.estimate = estimate
        self.limits = limits
        self.exceeded = exceeded
        over = {
            "requests": f"requests ({_count(estimate.requests)} > {_count(limits.requests)})",
            "memory_bytes": f"memory ({_bytes(estimate.memory_bytes)} > "
            f"{_bytes(limits.memory_bytes)})",
            "wall_s": f"wall time ({_duration(estimate.wall_s)} > {_duration(limits.wall_s)})",
        }
        ways = [
            "a shorter horizon.duration",
            "demand.sample_pools (a few pools simulated at full size)",
            "a smaller demand.sample_fraction",
        ]
        if estimate.fidelity == "request":
            ways.insert(0, "`--fidelity flow` (the same aggregates, without simulating each)")
        else:
            ways.insert(0, "a coarser horizon.resolution or outputs.timeseries_interval")
        ways.append("`--force` to run anyway")
        names = [over[f] for f in exceeded]
        which = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        super().__init__(
            f"run too large: {estimate.describe()}; over the limit on {which} (set by "
            f"{', '.join(_ENV[f] for f in exceeded)}). Ways on: {'; '.join(ways)}"
        )

    def __reduce__(self) -> tuple[Callable[..., RunTooLarge], tuple[object, ...]]:
        return (type(self), (self.estimate, self.limits, self.exceeded))


def expected_requests(scenario: Scenario) -> float:
    """Expected arrivals over the horizon, all classes and regions, after sample_fraction."""
    from gridsim.demand.growth import schedule_weight
    from gridsim.demand.lengths import LengthSampler
    from gridsim.demand.traces import TraceReplay
    from gridsim.market.expand import expand
    from gridsim.scenario.schema import TraceArrivals

    scenario = expand(scenario)[0]  # a market's plans and model mixes, as the engines see them
    demand = scenario.demand
    horizon = scenario.horizon.duration
    edges = _edges(horizon)
    with np.errstate(all="ignore"):
        level = national_tokens_per_day(demand, scenario.horizon.start, edges)
        mid = national_tokens_per_day(demand, scenario.horizon.start, (edges[:-1] + edges[1:]) / 2)
        level0 = float(national_tokens_per_day(demand, scenario.horizon.start, np.zeros(1))[0])
        growth = (level[:-1] + 4 * mid + level[1:]) / 6 / level0  # Simpson: mean per interval
    total = 0.0
    for cls in demand.classes:
        if isinstance(cls.arrival, TraceArrivals):  # replayed as recorded: no growth or profile
            replay = TraceReplay.from_spec(cls.arrival)
            total += float(replay.cumulative(np.array([horizon]))[0][0])
            continue
        if cls.rate_per_s is not None:
            rate = cls.rate_per_s
        elif cls.kind == "job" or cls.input_tokens is None or cls.output_tokens is None:
            continue  # the run will refuse it (jobs need rate_per_s)
        else:
            tokens = LengthSampler(cls.input_tokens).mean + LengthSampler(cls.output_tokens).mean
            rate = level0 * cls.share / tokens / DAY_S
        weight = np.diff(_profile_cumulative(cls, scenario, edges))
        if (
            cls.weight_schedule is not None
        ):  # launches, mixes, price changes: the hour at the middle
            weight = weight * schedule_weight(cls, (edges[:-1] + edges[1:]) / 2 - HOUR_S / 2)
        with np.errstate(all="ignore"):
            total += rate * float(np.where(weight > 0, growth * weight, 0.0).sum())
    out = total * demand.sample_fraction
    return out if not math.isnan(out) else math.inf


def _edges(horizon: float) -> FloatArray:
    """Hourly up to MAX_INTERVALS hours (as the engines shape demand), else evenly spaced."""
    if not math.isfinite(horizon):
        horizon = sys.float_info.max
    if horizon <= MAX_INTERVALS * HOUR_S:
        inner = np.arange(1, math.ceil(horizon / HOUR_S), dtype=np.float64) * HOUR_S
        return np.concatenate([[0.0], inner[inner < horizon], [horizon]])
    return np.linspace(0.0, horizon, MAX_INTERVALS + 1)


def _profile_cumulative(cls: DemandClass, scenario: Scenario, t: FloatArray) -> FloatArray:
    """Integral of the diurnal x weekly factor from 0 to each t (it repeats every week)."""
    hours = np.arange(168, dtype=np.float64) * HOUR_S
    week = np.concatenate([[0.0], np.cumsum(profile_factor(cls, scenario.horizon.start, hours))])
    week *= HOUR_S
    weeks = np.floor(t / WEEK_S)
    with np.errstate(all="ignore"):
        within = np.clip(t - weeks * WEEK_S, 0.0, WEEK_S)
        out: FloatArray = weeks * week[-1] + np.interp(within, np.append(hours, WEEK_S), week)
    return out


def fidelity_of(scenario: Scenario, override: str | None = None) -> str:
    """The engine that runs: ``override`` or the scenario's fidelity; ``auto`` simulates every
    request only over at most a day and at most ``AUTO_REQUEST_MAX`` expected requests, else
    runs at flow fidelity."""
    choice = override or scenario.fidelity
    if choice == "auto":
        if scenario.horizon.duration > REQUEST_FIDELITY_MAX_S:
            return "flow"
        return "request" if _simulated_requests(scenario) <= AUTO_REQUEST_MAX else "flow"
    return choice


def _simulated_requests(scenario: Scenario) -> float:
    """Requests a request-fidelity run simulates: the whole grid's, or its pool sample's."""
    if scenario.demand.sample_pools is not None:
        from gridsim.grid import sample_requests_expected

        return sample_requests_expected(scenario) or 0.0
    return expected_requests(scenario)


def estimate_run(scenario: Scenario, fidelity: str | None = None) -> RunEstimate:
    """Size, memory and wall time of running ``scenario`` (at ``fidelity``: None is the
    scenario's own, ``auto`` resolved by ``fidelity_of``)."""
    from gridsim.engine.flow import BLOCK_S, BLOCKS_PER_RUN, series_interval

    chosen = fidelity_of(scenario, fidelity)
    if chosen not in ("request", "flow"):
        raise ValueError(f"unknown fidelity {chosen!r}; use request or flow")
    horizon = scenario.horizon.duration
    dt = scenario.horizon.resolution
    outputs = scenario.outputs
    regions, classes = len(scenario.regions), len(scenario.demand.classes)
    nodes = len(scenario.nodes)
    pools = sum(len(n.pools) for n in scenario.nodes)
    cells = regions * classes * pools
    requests = _simulated_requests(scenario) if chosen == "request" else expected_requests(scenario)
    ticks = _ceil(horizon / dt - 1e-9)
    if chosen == "flow":
        interval = series_interval(outputs.timeseries_interval, dt, horizon)
        rows = _ceil(horizon / interval) * (2 * nodes + 2 * pools + 5)
    else:
        rows = max(1, _ceil(horizon / outputs.timeseries_interval)) * (2 * nodes + 2 * pools)
    wall = WALL_START_S + rows * WALL_PER_ROW_S
    memory = MEM_BASE_B + cells * MEM_PER_CELL_B + rows * MEM_PER_ROW_B
    if outputs.figures:
        wall += WALL_FIGURES_S + rows * WALL_PER_ROW_FIGURES_S
        memory += MEM_FIGURES_B + rows * MEM_PER_ROW_FIGURES_B
    if chosen == "request":
        wall += requests * (WALL_PER_REQUEST_S + pools * WALL_PER_REQUEST_POOL_S)
        wall += _ceil(horizon / CHUNK_S) * regions * classes * WALL_PER_STREAM_CHUNK_S
        memory += requests * min(1.0, CHUNK_S / horizon) * CHUNK_PEAK * MEM_PER_CHUNK_ARRIVAL_B
        if outputs.requests:
            memory += requests * MEM_PER_REQUEST_ROW_B
    else:
        block = max(1.0, round(max(BLOCK_S, horizon / BLOCKS_PER_RUN) / dt))
        blocks = math.ceil(ticks / block)
        wall += classes * pools * WALL_PER_CLASS_POOL_S
        wall += blocks * (WALL_PER_BLOCK_S + cells * WALL_PER_BLOCK_CELL_S)
        wall += ticks * (WALL_PER_TICK_S + cells * WALL_PER_TICK_CELL_S)
        block_cells = regions * classes + classes * pools
        memory += ticks * MEM_PER_TICK_B + block * block_cells * 8.0 * MEM_BLOCK_ARRAYS
    return RunEstimate(chosen, requests, ticks, cells, rows, float(memory), float(wall))


def check_run(
    scenario: Scenario,
    fidelity: str | None = None,
    force: bool = False,
    limits: Limits | None = None,
) -> RunEstimate:
    """The estimate, or ``RunTooLarge`` if it exceeds ``limits`` (default: from the
    environment) and ``force`` is not given."""
    estimate = estimate_run(scenario, fidelity)
    if force:
        return estimate
    limits = limits or Limits.from_env()
    sizes = {
        "requests": estimate.requests if estimate.fidelity == "request" else 0.0,
        "memory_bytes": estimate.memory_bytes,
        "wall_s": estimate.wall_s,
    }
    exceeded = tuple(name for name, value in sizes.items() if not value <= getattr(limits, name))
    if exceeded:
        raise RunTooLarge(estimate, limits, exceeded)
    return estimate


# --- formatting ----------------------------------------------------------------------------


def _ceil(x: float) -> int:
    if not math.isfinite(x):
        return sys.maxsize
    return int(x) if x >= 2**62 else max(0, math.ceil(x))


def _count(n: float) -> str:
    if not math.isfinite(n):
        return "unbounded"
    if n < 1e6:
        return f"{n:,.0f}"
    mantissa, exponent = f"{n:.2g}".split("e")
    return f"{mantissa}e{int(exponent)}"


_Units = tuple[tuple[str, float, float], ...]  # name, from what value, divided by what
_BYTES: _Units = tuple((f"{u}B", 10.0**e, 10.0**e) for u, e in (("E", 18), ("P", 15), ("T", 12)))
_BYTES += (("GB", 1e9, 1e9), ("MB", 1e6, 1e6), ("kB", 0.0, 1e3))
_YEAR_S = 365.25 * DAY_S
_TIMES: _Units = (("years", _YEAR_S, _YEAR_S), ("days", 2 * DAY_S, DAY_S), ("h", HOUR_S, HOUR_S))
_TIMES += (("min", 60.0, 60.0), ("s", 0.0, 1.0))


def _scaled(x: float, units: _Units) -> str:
    if not math.isfinite(x):
        return "unbounded"
    name, _, size = next(u for u in units if x >= u[1] or u[1] == 0.0)
    value = x / size
    text = f"{value:.1f}" if value < 9.95 else f"{value:.0f}" if value < 1000 else _count(value)
    return f"{text} {name}"


def _bytes(n: float) -> str:
    return _scaled(n, _BYTES) if math.isfinite(n) else "unbounded memory"


def _duration(s: float) -> str:
    return _scaled(s, _TIMES)
