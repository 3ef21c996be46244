"""LLM serving traces replayed in time (the files are read by ``gridsim.scenario.tracefile``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from gridsim.scenario.schema import TraceArrivals
from gridsim.scenario.tracefile import (
    FloatArray,
    IntArray,
    TraceData,
    TraceFormat,
    load_trace,
    read_trace,
)

__all__ = ["TraceData", "TraceFormat", "TraceReplay", "load_trace", "read_trace"]


@dataclass(frozen=True)
class TraceReplay:
    """A trace's arrivals on the simulation clock: times x time_scale, optionally looped.

    One pass lasts ``pass_s = (span + mean gap) x time_scale``; looping repeats the trace with
    that period, so the gap from the last request of one pass to the first of the next is the
    trace's mean gap. Request ``j`` of pass ``k`` has global index ``k x n + j`` and time
    ``time_s[j] + k x pass_s``. Without looping there is only pass 0.
    """

    time_s: FloatArray
    input_tokens: IntArray
    output_tokens: IntArray
    pass_s: float
    loop: bool

    @classmethod
    def from_spec(cls, spec: TraceArrivals) -> TraceReplay:
        data = load_trace(spec.path, spec.format)
        time_s = data.arrival_s * spec.time_scale
        n = len(data)
        span = float(time_s[-1])
        # A one-request (or all-simultaneous) trace has no mean gap: one scaled second a pass.
        pass_s = span * n / (n - 1) if n > 1 and span > 0 else spec.time_scale
        return cls(time_s, data.input_tokens, data.output_tokens, pass_s, spec.loop)

    @property
    def mean_rate_per_s(self) -> float:
        """Requests per second over one pass."""
        return len(self) / self.pass_s

    def __len__(self) -> int:
        return int(self.time_s.size)

    def window(self, t_start: float, t_end: float) -> tuple[IntArray, FloatArray]:
        """Global indices and times of the requests in ``[t_start, t_end)``, in order."""
        n = len(self)
        passes = range(1)
        if self.loop:
            # One pass either side as a guard against rounding in floor().
            first = max(0, math.floor(t_start / self.pass_s) - 1)
            passes = range(first, math.floor(t_end / self.pass_s) + 2)
        index: list[IntArray] = []
        times: list[FloatArray] = []
        for k in passes:
            shifted = self.time_s + k * self.pass_s if k else self.time_s
            j0, j1 = np.searchsorted(shifted, [t_start, t_end], side="left")
            if j1 > j0:
                index.append(np.arange(k * n + j0, k * n + j1, dtype=np.int64))
                times.append(shifted[j0:j1])
        if not index:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        return np.concatenate(index), np.concatenate(times)

    @cached_property
    def _cum_tokens(self) -> tuple[FloatArray, FloatArray]:
        cum_in = np.concatenate([[0], np.cumsum(self.input_tokens)]).astype(np.float64)
        cum_out = np.concatenate([[0], np.cumsum(self.output_tokens)]).astype(np.float64)
        return cum_in, cum_out

    def cumulative(self, t_s: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Requests, input tokens and output tokens arriving in ``[0, t)``, for each t."""
        t = np.asarray(t_s, dtype=np.float64)
        cum_in, cum_out = self._cum_tokens
        passes = np.zeros(t.shape)
        within = t
        if self.loop:
            passes = np.floor(np.maximum(t, 0.0) / self.pass_s)
            within = t - passes * self.pass_s
        j = np.searchsorted(self.time_s, within, side="left")
        n = len(self)
        return (
            passes * n + j,
            passes * cum_in[-1] + cum_in[j],
            passes * cum_out[-1] + cum_out[j],
        )
