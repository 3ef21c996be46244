"""Co-scheduling policies: how many replicas of each lending pool training may take each hour,
and whether jobs wait for greener or cheaper hours.

A policy is named in ``training.policy``: a built-in below (``gridsim.policies.registry.
BUILTIN_COSCHEDULERS``) or a user class ``module:Class`` built as ``Class(training,
**training.params)``. It implements ``lend`` and sets ``defers_by``; ``gridsim.training.jobs``
does the rest (placement, preemption, checkpoints) the same way for every policy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gridsim.scenario.training_spec import Training
from gridsim.training.lending import replicas_needed

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class CoScheduler:
    """The interface. ``lend`` returns (hours, pools) replicas training may take, from the
    replicas up each hour (``installed``), the pools' hourly peak busy slots in the
    inference-only run (``busy``), their slots per replica and their SLO budget over hold
    (``budget_over_hold``). ``defers_by`` is None (jobs run whenever they have cards),
    ``"carbon"`` or ``"price"`` (jobs run in the lowest hours of that at their node that still
    finish them, ``gridsim.training.jobs``)."""

    name = "base"
    defers_by: str | None = None

    def __init__(self, training: Training, **params: Any) -> None:
        self.training = training
        self.params = params

    def lend(
        self,
        installed: IntArray,
        busy: FloatArray,
        slots_per_replica: IntArray,
        budget_over_hold: FloatArray,
    ) -> IntArray:
        raise NotImplementedError


class InferenceFirst(CoScheduler):
    """Each pool keeps the fewest replicas at which its hour's peak load x (1 + headroom)
    meets its SLO (``gridsim.training.lending.replicas_needed``); the rest may train."""

    name = "inference_first"

    def lend(
        self,
        installed: IntArray,
        busy: FloatArray,
        slots_per_replica: IntArray,
        budget_over_hold: FloatArray,
    ) -> IntArray:
        load = busy * (1.0 + self.training.headroom)
        keep = replicas_needed(load, installed, slots_per_replica, budget_over_hold)
        out: IntArray = installed - keep
        return out


class CarbonAware(InferenceFirst):
    """As inference_first; jobs run in their node's lowest-carbon hours."""

    name = "carbon_aware"
    defers_by = "carbon"


class PriceAware(InferenceFirst):
    """As inference_first; jobs run in their node's cheapest hours (time-of-use)."""

    name = "price_aware"
    defers_by = "price"


class DayNight(CoScheduler):
    """``night_share`` of each pool's replicas trains from ``night_start_hour`` to
    ``night_end_hour`` (China time), whatever inference needs."""

    name = "day_night"

    def lend(
        self,
        installed: IntArray,
        busy: FloatArray,
        slots_per_replica: IntArray,
        budget_over_hold: FloatArray,
    ) -> IntArray:
        t = self.training
        hour_of_day = np.arange(installed.shape[0]) % 24
        a, b = t.night_start_hour, t.night_end_hour
        if a > b:  # the night spans midnight
            night = (hour_of_day >= a) | (hour_of_day < b)
        else:
            night = (hour_of_day >= a) & (hour_of_day < b)
        lend = np.floor(installed * t.night_share + 1e-9).astype(np.int64)
        out: IntArray = np.where(night[:, None], lend, 0)
        return out
