"""Time-weighted levels (queue length, busy slots) with an O(intervals) time series."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class TimeWeighted:
    """A piecewise-constant level: ``update(t, level)`` sets the level from ``t`` on.

    With ``interval_s`` set, the running integral is stored at each interval boundary as time
    passes, so :meth:`resample` needs memory per interval, not per update.
    """

    __slots__ = ("_area", "_edges", "_interval", "_level", "_next_edge", "_peak", "_t", "_t0")

    def __init__(self, t0: float = 0.0, level: float = 0.0, interval_s: float | None = None):
        if interval_s is not None and not 0.0 < interval_s < math.inf:
            raise ValueError(f"interval_s must be positive and finite, got {interval_s}")
        self._t0 = float(t0)
        self._t = self._t0
        self._level = float(level)
        self._peak = self._level
        self._area = 0.0  # integral of the level over [t0, _t]
        self._interval = interval_s
        self._edges: list[float] = []  # integral over [t0, t0 + (i+1)*interval]
        # inf when no interval, so update() tests one comparison either way.
        self._next_edge = math.inf if interval_s is None else self._t0 + interval_s

    def update(self, t: float, level: float) -> None:
        """Set the level to ``level`` from time ``t`` on (``t`` must not go backwards)."""
        if t >= self._next_edge:
            self._close_intervals(t)
        elif t < self._t:
            raise ValueError(f"time went backwards: {t} < {self._t}")
        self._area += self._level * (t - self._t)
        self._t = t
        self._level = level
        if level > self._peak:
            self._peak = level

    def add(self, t: float, delta: float) -> None:
        """Change the level by ``delta`` at time ``t``."""
        self.update(t, self._level + delta)

    def _close_intervals(self, t: float) -> None:
        assert self._interval is not None  # _next_edge is finite only with an interval
        edges = self._edges
        while self._next_edge <= t:
            edge = self._next_edge
            self._area += self._level * (edge - self._t)
            self._t = edge
            edges.append(self._area)
            # Multiply rather than accumulate so edge times do not drift.
            self._next_edge = self._t0 + (len(edges) + 1) * self._interval

    @property
    def level(self) -> float:
        """Current level."""
        return self._level

    @property
    def peak(self) -> float:
        """Highest level seen (including the initial one)."""
        return self._peak

    @property
    def t0(self) -> float:
        """Start time."""
        return self._t0

    @property
    def last_time(self) -> float:
        """Time of the latest update (or interval boundary passed)."""
        return self._t

    def integral(self, t_end: float | None = None) -> float:
        """Integral of the level over ``[t0, t_end]``; ``t_end`` defaults to the last update."""
        t_end = self._check_end(t_end)
        return self._area + self._level * (t_end - self._t)

    def mean(self, t_end: float | None = None) -> float:
        """Time-weighted mean over ``[t0, t_end]``; nan for a zero-length span."""
        t_end = self._check_end(t_end)
        span = t_end - self._t0
        return self.integral(t_end) / span if span > 0 else math.nan

    def resample(
        self, interval_s: float | None = None, t_end: float | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """Interval start times and time-weighted means over ``[t0, t_end]``.

        ``interval_s`` must be a whole multiple of the constructor's (default: equal to it). A
        final partial interval is averaged over its actual length.
        """
        base = self._interval
        if base is None:
            raise ValueError("resample needs TimeWeighted(interval_s=...) at construction")
        k = 1 if interval_s is None else round(interval_s / base)
        if k < 1 or (interval_s is not None and abs(k * base - interval_s) > 1e-9 * interval_s):
            raise ValueError(f"interval_s={interval_s} is not a whole multiple of {base}")
        t_end = self._check_end(t_end)
        t0 = self._t0
        # Boundaries past the last update lie under the current, constant level.
        n = max(len(self._edges), int((t_end - t0) // base))
        while t0 + (n + 1) * base <= t_end:
            n += 1
        while n > len(self._edges) and t0 + n * base > t_end:
            n -= 1
        extra_t = t0 + np.arange(len(self._edges) + 1, n + 1, dtype=np.float64) * base
        cum = np.concatenate(([0.0], self._edges, self._area + self._level * (extra_t - self._t)))
        full = n // k
        coarse = cum[: full * k + 1 : k]
        width = k * base
        means = np.diff(coarse) / width
        # Same arithmetic as the boundary times, so t_end on a boundary leaves no sliver.
        start = t0 + (full * k) * base
        if t_end > start:
            tail = (self.integral(t_end) - coarse[-1]) / (t_end - start)
            means = np.append(means, tail)
        times: FloatArray = t0 + (np.arange(means.size, dtype=np.float64) * k) * base
        return times, means

    def _check_end(self, t_end: float | None) -> float:
        if t_end is None:
            return self._t
        if t_end < self._t:
            raise ValueError(f"t_end={t_end} is before the last update at {self._t}")
        return t_end

    def __repr__(self) -> str:
        return f"TimeWeighted(t={self._t:g}, level={self._level:g}, peak={self._peak:g})"
