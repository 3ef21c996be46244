"""Capacity KPIs of a flow run: when demand first outgrows capacity, headroom, unserved tokens.

A pool falls short when work is left over at the end of a tick: its queue grows and no SLO can
hold. The shortfall (national, or of a region) is the start of the first stretch of at least
``SUSTAIN_S`` (and one tick) in which over 5 % of the demand (national, or the region's) lands
on pools that fall short. Pools of different models do not stand in for each other, so this
catches one model running out while the grid as a whole has room. The headroom series compares
the work arriving per second (slot-seconds per second, i.e. Erlangs, at the policy's mix) with
all the slots that are up.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridsim.demand import DemandModel
from gridsim.metrics.recorder import Recorder, series_frame
from gridsim.scenario.schema import Scenario

FloatArray = npt.NDArray[np.float64]
SUSTAIN_S = 3600.0
REGION_IMPACT = 0.05


class _Stretch:
    """Finds the start of the first run of ``True`` lasting ``sustain_s``, tick by tick."""

    def __init__(self, sustain_s: float) -> None:
        self.sustain_s = sustain_s
        self.run_start: float | None = None
        self.run_s = 0.0
        self.found: float | None = None

    def feed(self, starts: FloatArray, widths: FloatArray, flags: npt.NDArray[np.bool_]) -> None:
        if self.found is not None:
            return
        if not flags.any():  # the usual case: no stretch starts or goes on
            self.run_start, self.run_s = None, 0.0
            return
        for t, w, flag in zip(starts.tolist(), widths.tolist(), flags.tolist(), strict=True):
            if not flag:
                self.run_start, self.run_s = None, 0.0
                continue
            if self.run_start is None:
                self.run_start = t
            self.run_s += w
            if self.run_s >= self.sustain_s - 1e-9:
                self.found = self.run_start
                return


class CapacityTracker:
    def __init__(self, scenario: Scenario, demand: DemandModel, tick_s: float) -> None:
        self.start = dt.datetime.combine(scenario.horizon.start, dt.time())
        self.regions = tuple(r.id for r in scenario.regions)
        sustain = max(SUSTAIN_S, tick_s)
        self.national = _Stretch(sustain)
        self.by_region = [_Stretch(sustain) for _ in self.regions]
        self.tokens_per_request = demand.mean_input_tokens + demand.mean_output_tokens
        self.rows: list[FloatArray] = []  # per tick: start, width, demand, capacity, tokens/s

    def add(
        self,
        t0: float,
        widths: FloatArray,
        work_rate: FloatArray,
        arrivals: FloatArray,
        impacted: FloatArray,
        impacted_national: FloatArray,
        slots_up: FloatArray,
    ) -> None:
        starts = t0 + np.concatenate([[0.0], np.cumsum(widths)[:-1]])
        demand = work_rate.sum(axis=1)  # Erlangs
        capacity = np.full_like(demand, float(slots_up.sum()))
        self.national.feed(starts, widths, impacted_national > REGION_IMPACT)
        for r, stretch in enumerate(self.by_region):
            stretch.feed(starts, widths, impacted[:, r] > REGION_IMPACT)
        tokens = (arrivals * self.tokens_per_request[None, None, :]).sum(axis=(1, 2)) / widths
        self.rows.append(np.column_stack([starts, widths, demand, capacity, tokens]))

    def series(self, interval_s: float) -> pd.DataFrame:
        """Tidy grid series per interval: demand and capacity (slots and tokens/s), headroom."""
        rows = np.vstack(self.rows) if self.rows else np.zeros((0, 5))
        start, width, demand, capacity, tokens = rows.T
        bins = (start // interval_s).astype(np.intp)
        n = int(bins.max()) + 1 if bins.size else 0
        weight = np.bincount(bins, width, n)

        def mean(x: FloatArray) -> FloatArray:
            with np.errstate(invalid="ignore", divide="ignore"):
                out: FloatArray = np.bincount(bins, x * width, n) / weight
            return out

        d, c, tok = mean(demand), mean(capacity), mean(tokens)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_slot = np.where(d > 0, tok / d, np.nan)  # tokens/s one busy slot yields
            values = {
                "demand_erlangs": d,
                "capacity_slots": c,
                "headroom": np.where(c > 0, 1.0 - d / c, np.nan),
                "demand_tokens_per_s": tok,
                "capacity_tokens_per_s": c * per_slot,
            }
        times = np.arange(n) * interval_s
        frames = [series_frame(times, "grid", "national", m, v) for m, v in values.items()]
        return pd.concat(frames, ignore_index=True)

    def kpis(self, rec: Recorder) -> dict[str, Any]:
        rows = np.vstack(self.rows) if self.rows else np.zeros((0, 5))
        _, width, demand, capacity, _ = rows.T
        with np.errstate(invalid="ignore", divide="ignore"):
            headroom = np.where(capacity > 0, 1.0 - demand / capacity, np.nan)
        demanded = float(rec.input_demanded.sum() + rec.output_demanded.sum())
        served = float(rec.input_served.sum() + rec.output_served.sum())
        return {
            "shortfall_at": self._when(self.national.found),
            "shortfall_at_s": self.national.found,
            "shortfall_by_region": {
                rid: self._when(s.found)
                for rid, s in zip(self.regions, self.by_region, strict=True)
            },
            "headroom": {
                "mean": _finite(np.average(headroom, weights=width) if width.sum() else math.nan),
                "min": _finite(np.nanmin(headroom) if headroom.size else math.nan),
            },
            "unserved_tokens": max(0, round(demanded - served)),
        }

    def _when(self, t_s: float | None) -> str | None:
        return None if t_s is None else (self.start + dt.timedelta(seconds=t_s)).isoformat()


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
