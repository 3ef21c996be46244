"""How much demand, when and where: the national growth law, region weights, daily profiles.

Everything here is deterministic (no randomness) and vectorised over time.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gridsim.catalog import Catalog
from gridsim.scenario.schema import (
    Demand,
    DemandClass,
    ExponentialGrowth,
    LogisticGrowth,
    NoGrowth,
    PiecewiseGrowth,
    Scenario,
)
from gridsim.scenario.weights import raw_region_weights

FloatArray = npt.NDArray[np.float64]

DAY_S = 86_400.0
HOUR_S = 3_600.0
MONTH_DAYS = 30.436875  # mean Gregorian month: 365.2425 / 12


def national_tokens_per_day(demand: Demand, start: dt.date, t_s: npt.ArrayLike) -> FloatArray:
    """National demand (tokens/day) ``t_s`` seconds after the horizon start (midnight, ``start``).

    - ``none``: ``tokens_per_day`` throughout.
    - ``exponential``: ``tokens_per_day x (1 + rate_per_month) ** months``. The rate compounds
      monthly and is applied smoothly in time (months = days / 30.436875), so demand doubles
      every ``ln 2 / ln(1 + rate)`` months.
    - ``logistic``: ``K / (1 + (K / D0 - 1) exp(-k months))`` with ``D0 = tokens_per_day`` at
      the start, ``K`` the ceiling and ``k = ln(1 + rate_per_month)``, so far below the ceiling
      it grows like the exponential law with the same rate.
    - ``piecewise``: straight lines in log(tokens/day) between the dated points (midnight of each
      date); flat (clamped) before the first and after the last point, so a fitted trend never
      runs on past its data (add a point to extend it). The points alone set the level:
      ``tokens_per_day`` is ignored.
    """
    t = np.asarray(t_s, dtype=np.float64)
    months = t / DAY_S / MONTH_DAYS
    growth = demand.growth
    d0 = demand.tokens_per_day
    if d0 is None:  # a market's scenario: gridsim.market.expand sets it from the plans
        raise ValueError("demand.tokens_per_day is not set: expand the market first")
    if isinstance(growth, NoGrowth):
        return np.full(t.shape, d0)
    if isinstance(growth, ExponentialGrowth):
        if growth.rate_per_month <= -1:
            raise ValueError("exponential growth needs rate_per_month > -1 (e.g. 0.1 for +10 %)")
        out: FloatArray = d0 * np.exp(months * np.log1p(growth.rate_per_month))
        return out
    if isinstance(growth, LogisticGrowth):
        k = np.log1p(growth.rate_per_month)
        ceiling = growth.ceiling_tokens_per_day
        out = ceiling / (1.0 + (ceiling / d0 - 1.0) * np.exp(-k * months))
        return out
    assert isinstance(growth, PiecewiseGrowth)
    points = sorted(growth.points, key=lambda p: p.date)
    at_s = np.array([(p.date - start).days * DAY_S for p in points])
    if np.any(np.diff(at_s) <= 0):
        raise ValueError("piecewise growth points need distinct dates")
    log_level = np.log([p.tokens_per_day for p in points])
    out = np.exp(np.interp(t, at_s, log_level))
    return out


def region_weights(scenario: Scenario, catalog: Catalog) -> FloatArray:
    """Each region's share of national demand, in ``scenario.regions`` order, summing to 1
    (the raw weights of ``raw_region_weights``, normalised)."""
    raw = np.array(raw_region_weights(scenario, catalog))
    out: FloatArray = raw / raw.sum()
    return out


def profile_factor(cls: DemandClass, start: dt.date, t_s: npt.ArrayLike) -> FloatArray:
    """Diurnal x weekly load factor at ``t_s`` (China time: t = 0 is local midnight of ``start``).

    Each weight vector is divided by its mean, so the factor averages exactly 1 over any whole
    week (each day holds all 24 hours). Constant within each clock hour.
    """
    t = np.asarray(t_s, dtype=np.float64)
    out = np.ones(t.shape)
    if cls.diurnal is not None:
        hourly = np.asarray(cls.diurnal, dtype=np.float64)
        hour_of_day = np.floor(t / HOUR_S).astype(np.int64) % 24
        out = out * (hourly / hourly.mean())[hour_of_day]
    if cls.weekly is not None:
        daily = np.asarray(cls.weekly, dtype=np.float64)
        weekday = (start.weekday() + np.floor(t / DAY_S).astype(np.int64)) % 7
        out = out * (daily / daily.mean())[weekday]
    return out


def schedule_weight(cls: DemandClass, hour_start_s: npt.ArrayLike) -> FloatArray:
    """The class's ``weight_schedule`` over each clock hour starting at ``hour_start_s``: its
    mean over the hour (exact for the piecewise-linear schedule, whose integral over the hour
    is taken from the points), so a launch or a price change that falls inside an hour counts
    for the part of the hour it covers. 1 without a schedule."""
    t = np.asarray(hour_start_s, dtype=np.float64)
    if cls.weight_schedule is None:
        return np.ones(t.shape)
    times = np.array([p[0] for p in cls.weight_schedule], dtype=np.float64)
    weights = np.array([p[1] for p in cls.weight_schedule], dtype=np.float64)
    # the integral of the linear interpolant (flat outside the points) up to any time
    knots = np.concatenate([[min(times[0], 0.0) - 1.0], times])
    values = np.concatenate([[weights[0]], weights])
    cum = np.concatenate([[0.0], np.cumsum(np.diff(knots) * (values[1:] + values[:-1]) / 2)])

    def integral(x: FloatArray) -> FloatArray:
        k = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, knots.size - 1)
        after = x - knots[k]
        here = np.interp(x, knots, values)
        out: FloatArray = cum[k] + after * (values[k] + here) / 2
        return out

    out: FloatArray = (integral(t + HOUR_S) - integral(t)) / HOUR_S
    return out


class HourlyIntensity:
    """Each class's arrival-rate shape over time, relative to its rate at the start.

    Constant within each clock hour: ``growth(hour middle) / growth(0) x profile(hour)``, so the
    cumulative intensity is piecewise linear and is inverted exactly when drawing arrival times
    (growth over one hour is tiny, so evaluating it at the middle loses nothing that matters).
    Hours are computed once for the horizon and then appended a week at a time when asked for
    later times; an hour's value never depends on which calls came before.
    """

    _BLOCK_HOURS = 168

    def __init__(
        self, demand: Demand, start: dt.date, classes: Sequence[DemandClass], duration_s: float
    ) -> None:
        self._demand = demand
        self._start = start
        self._classes = tuple(classes)
        self._level0 = float(national_tokens_per_day(demand, start, np.zeros(1))[0])
        self.factor_by_hour = self._hours(0, math.ceil(duration_s / HOUR_S) + 1)
        steps = self.factor_by_hour * HOUR_S
        zeros = np.zeros((len(self._classes), 1))
        self.cum_by_hour: FloatArray = np.hstack([zeros, np.cumsum(steps, axis=1)])

    @property
    def n_hours(self) -> int:
        return int(self.factor_by_hour.shape[1])

    def _hours(self, h0: int, h1: int) -> FloatArray:
        start_s = np.arange(h0, h1, dtype=np.float64) * HOUR_S
        growth = national_tokens_per_day(self._demand, self._start, start_s + HOUR_S / 2)
        growth = growth / self._level0
        rows = [
            growth * profile_factor(c, self._start, start_s) * schedule_weight(c, start_s)
            for c in self._classes
        ]
        return np.array(rows).reshape(len(self._classes), h1 - h0)

    def ensure(self, t_s: float) -> None:
        """Cover every time up to and including ``t_s``."""
        while self.n_hours * HOUR_S <= t_s:
            h0 = self.n_hours
            block = self._hours(h0, h0 + self._BLOCK_HOURS)
            steps = block * HOUR_S
            steps[:, 0] += self.cum_by_hour[:, -1]  # continue the running sum in sequence
            self.factor_by_hour = np.hstack([self.factor_by_hour, block])
            self.cum_by_hour = np.hstack([self.cum_by_hour, np.cumsum(steps, axis=1)])

    def _hour_of(self, t: FloatArray) -> npt.NDArray[np.int64]:
        if t.size and (not np.all(np.isfinite(t)) or t.min() < 0):
            raise ValueError("times must be finite and >= 0 (seconds since the horizon start)")
        if t.size:
            self.ensure(float(t.max()))
        return np.floor(t / HOUR_S).astype(np.int64)

    def factor(self, t_s: npt.ArrayLike) -> FloatArray:
        """Rate factor per class at each time, shape (classes, len(t))."""
        hour = self._hour_of(np.asarray(t_s, dtype=np.float64))  # first: it may add hours
        out: FloatArray = self.factor_by_hour[:, hour]
        return out

    def cumulative(self, t_s: npt.ArrayLike) -> FloatArray:
        """Integral of the factor from 0 to t (seconds), shape (classes, len(t))."""
        t = np.asarray(t_s, dtype=np.float64)
        hour = self._hour_of(t)
        out: FloatArray = (
            self.cum_by_hour[:, hour] + (t - hour * HOUR_S) * self.factor_by_hour[:, hour]
        )
        return out

    def inverse(self, c: int, level: FloatArray) -> FloatArray:
        """Times at which class ``c``'s cumulative factor reaches ``level`` (inf past the end)."""
        cum = self.cum_by_hour[c]
        # side="right" lands on an hour with a positive factor (cum rises across it).
        hour = np.searchsorted(cum, level, side="right") - 1
        inside = hour < self.n_hours
        safe = np.minimum(hour, self.n_hours - 1)
        with np.errstate(divide="ignore", invalid="ignore"):  # only where `inside` is False
            t = safe * HOUR_S + (level - cum[safe]) / self.factor_by_hour[c, safe]
        out: FloatArray = np.where(inside, t, np.inf)
        return out
