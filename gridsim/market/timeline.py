"""Functions of time for the expansion: model shares (mix points and launches) and plan
price factors, piecewise linear with steps, and their products and exact integrals.

A ``Piecewise`` is linear between knots and flat outside them; two knots at one time make a
step. Products of a piecewise-linear share and a step factor stay piecewise linear, so the
weight schedules written from them are exact.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import numpy.typing as npt

from gridsim.scenario import Scenario
from gridsim.scenario.demand_spec import DemandClass, MixPoint
from gridsim.scenario.events import ModelLaunch

FloatArray = npt.NDArray[np.float64]


# --- piecewise functions of time ---------------------------------------------------------


class Piecewise:
    """A vector-valued function of time, linear between knots and flat outside them; two knots
    at one time make a step (left limit the first, right limit the last)."""

    def __init__(self, times: npt.ArrayLike, values: npt.ArrayLike) -> None:
        self.times = np.asarray(times, dtype=np.float64).reshape(-1)
        self.values = np.asarray(values, dtype=np.float64).reshape(self.times.size, -1)
        self._cum: tuple[FloatArray, FloatArray, FloatArray] | None = None

    def at(self, t_s: npt.ArrayLike, side: str = "right") -> FloatArray:
        """Values just after (``right``) or just before (``left``) each time: (len(t), k)."""
        t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
        n = self.times.size
        if side == "right":  # between the last knot at or before t and the next one
            lo = np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, n - 1)
            hi = np.minimum(lo + 1, n - 1)
        else:  # between the last knot before t and the first at or after it
            hi = np.clip(np.searchsorted(self.times, t, side="left"), 0, n - 1)
            lo = np.maximum(hi - 1, 0)
        width = self.times[hi] - self.times[lo]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(width > 0, (t - self.times[lo]) / width, 0.0)
        if side == "left":
            # before the first knot, or on it: the first knot's value; past the last: the last's
            frac = np.where(t <= self.times[0], 0.0, np.where(t > self.times[-1], 1.0, frac))
        frac = np.clip(frac, 0.0, 1.0)[:, None]
        out: FloatArray = self.values[lo] + (self.values[hi] - self.values[lo]) * frac
        return out

    def right(self, t: float) -> FloatArray:
        """The value just after ``t`` (at ``t`` itself for a continuous function)."""
        out: FloatArray = self.at(t, "right")[0]
        return out

    def integral(self, x_s: npt.ArrayLike) -> FloatArray:
        """The exact integral from a fixed origin (before every knot and 0) to each time:
        (len(x), k); differences of it are integrals over intervals."""
        x = np.atleast_1d(np.asarray(x_s, dtype=np.float64))
        if self._cum is None:  # the integral at each knot, from one knot placed before them
            knots = np.concatenate([[min(float(self.times[0]), 0.0) - 1.0], self.times])
            values = np.vstack([self.values[:1], self.values])
            steps = np.diff(knots)[:, None] * (values[1:] + values[:-1]) / 2
            cum = np.vstack([np.zeros((1, values.shape[1])), np.cumsum(steps, axis=0)])
            self._cum = (knots, values, cum)
        knots, values, cum = self._cum
        k = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, knots.size - 1)
        here = self.at(x, "right")
        out: FloatArray = cum[k] + (x - knots[k])[:, None] * (values[k] + here) / 2
        return out


def combine(times: FloatArray, left: FloatArray, right: FloatArray) -> Piecewise:
    """Knots from each breakpoint's left and right values (two knots where they differ)."""
    step = np.any(left != right, axis=1)
    order = np.argsort(np.concatenate([np.arange(times.size), np.flatnonzero(step)]), kind="stable")
    all_t = np.concatenate([times, times[step]])[order]
    all_v = np.vstack([left, right[step]])[order]
    return Piecewise(all_t, all_v)


def seconds(scenario: Scenario, when: dt.date | float) -> float:
    """An event time as seconds after the horizon start (a date: its midnight)."""
    if isinstance(when, dt.date):
        return (when - scenario.horizon.start).days * 86400.0
    return float(when)


# --- model shares over time ----------------------------------------------------------------


def launch(
    shares: Piecewise, models: tuple[str, ...], event: ModelLaunch, at_s: float, where: str
) -> Piecewise:
    """``shares`` with the launch added: from ``at_s`` the model's share moves linearly to
    ``event.share`` over ``event.over``; the replaced models give (or take) the difference in
    proportion to their shares at ``at_s``."""
    m = models.index(event.model)
    replaced = event.replaces or [x for x in models if x != event.model]
    unknown = [r for r in replaced if r not in models]
    if unknown or event.model in replaced:
        bad = unknown[0] if unknown else event.model
        raise ValueError(
            f"{where}: replaces {bad!r}, which is not one of the other models of the class "
            f"({[x for x in models if x != event.model]}); fix replaces:"
        )
    now = shares.right(at_s)
    gain = event.share - now[m]
    pool = sum(now[models.index(r)] for r in replaced)
    delta = np.zeros(len(models))
    if gain != 0.0:
        if pool <= 0:
            raise ValueError(
                f"{where}: the models it replaces ({replaced}) have no share at its start to "
                f"give {event.model!r}; launch it later or replace other models"
            )
        delta[m] = gain
        for r in replaced:
            delta[models.index(r)] = -gain * now[models.index(r)] / pool
    over = float(event.over)
    end_s = at_s + over
    times = np.unique(np.concatenate([shares.times, [at_s, end_s]]))

    def ramp(t: float, side: str) -> float:
        if over > 0:
            return min(max((t - at_s) / over, 0.0), 1.0)
        return 1.0 if t > at_s or (t == at_s and side == "right") else 0.0

    left = shares.at(times, "left") + np.array([ramp(t, "left") for t in times])[:, None] * delta
    right = shares.at(times, "right") + np.array([ramp(t, "right") for t in times])[:, None] * delta
    out = combine(times, left, right)
    lowest = float(out.values.min())
    if lowest < -1e-9:
        raise ValueError(
            f"{where}: with the launches before it, a replaced model's share would fall to "
            f"{lowest:g}; lower the launches' shares or name what each replaces"
        )
    np.clip(out.values, 0.0, None, out=out.values)
    return out


def model_shares(scenario: Scenario, cls: DemandClass) -> tuple[tuple[str | None, ...], Piecewise]:
    """The class's models and their shares over time (one column per model).

    ``models:`` are the shares before the first mix point or launch; mix points and launches
    then apply in time order (a mix point before a launch at the same time), each starting from
    the shares the earlier ones left: a mix point is reached linearly from the previous point
    (or the end of a launch), a launch ramps as ``ModelLaunch`` says. Launches may overlap (their
    changes add up); a mix point may not fall inside a launch's ramp.
    """
    if cls.models is None:
        return (cls.model,), Piecewise([0.0], [np.ones(1)])
    models = cls.model_ids
    steps: list[tuple[float, int, int, MixPoint | ModelLaunch]] = []
    for k, mix_point in enumerate(cls.mix or []):
        steps.append((seconds(scenario, mix_point.at), 0, k, mix_point))
    for k, event in enumerate(scenario.events):
        if isinstance(event, ModelLaunch) and cls.name in launch_classes(scenario, event):
            steps.append((seconds(scenario, event.at), 1, k, event))
    steps.sort(key=lambda s: (s[0], s[1], s[2]))
    first = min([0.0] + [s[0] for s in steps])
    start = np.array([cls.models.get(m, 0.0) for m in models])
    shares = Piecewise([first], [start])
    for at_s, _, k, item in steps:
        if isinstance(item, MixPoint):
            later = shares.times[shares.times > at_s]
            if later.size:
                raise ValueError(
                    f"class {cls.name!r}: mix point {k} at {at_s / 86400:g} d falls inside a "
                    f"model launch (which runs to {later.max() / 86400:g} d); move one of them"
                )
            point = np.array([item.models.get(m, 0.0) for m in models])
            shares = Piecewise([*shares.times, at_s], [*shares.values, point])
        else:
            where = f"events[{k}] (model_launch of {item.model!r}) for class {cls.name!r}"
            shares = launch(shares, models, item, at_s, where)
    return models, shares


def launch_classes(scenario: Scenario, event: ModelLaunch) -> list[str]:
    if event.classes is not None:
        return list(event.classes)
    return [
        c.name
        for c in scenario.demand.classes
        if c.models is not None and event.model in c.model_ids
    ]


def step_function(parts: list[tuple[float, list[tuple[float, float]]]]) -> Piecewise:
    """sum(weight x steps) / sum(weight) for parts of (weight, steps (t, value from t on));
    each steps' value is 1 before its first step."""
    total = sum(w for w, _ in parts)
    times = sorted({t for _, steps in parts for t, _ in steps})
    if not times or total <= 0:
        return Piecewise([0.0], [np.ones(1)])

    def value(t: float, side: str) -> float:
        acc = 0.0
        for w, steps in parts:
            v = 1.0
            for s, x in steps:
                if s < t or (s == t and side == "right"):
                    v = x
            acc += w * v
        return acc / total

    at = np.array(times)
    left = np.array([[value(t, "left")] for t in times])
    right = np.array([[value(t, "right")] for t in times])
    return combine(at, left, right)


def product(shares: Piecewise, factor: Piecewise) -> Piecewise:
    """shares(t) x factor(t), one column per model (linear x steps: piecewise linear, exact)."""
    times = np.unique(np.concatenate([shares.times, factor.times]))
    left = shares.at(times, "left") * factor.at(times, "left")
    right = shares.at(times, "right") * factor.at(times, "right")
    return combine(times, left, right)


def points(weights: Piecewise, column: int) -> list[tuple[float, float]]:
    """One column's (t_s, weight) points, without the steps only other columns take."""
    t, v = weights.times, weights.values[:, column]
    keep = np.ones(t.size, dtype=bool)
    keep[1:] = ~((t[1:] == t[:-1]) & (v[1:] == v[:-1]))
    return list(zip(t[keep].tolist(), v[keep].tolist(), strict=True))
