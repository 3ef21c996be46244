"""Queueing formulas for the flow engine: Erlang C, and wait distributions as weighted points."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

FloatArray = npt.NDArray[np.float64]
EXP_POINTS = 6  # points of the Erlang C exponential wait tail, one per equal-mass band


def _band_means(n: int) -> FloatArray:
    """Means of Exp(1) within its n equal-probability bands: each point stays inside its band
    and together they keep the law's mean exactly (mid-band quantiles carry only 0.943 of it
    at n = 6). E[X; a < X < b] = (a + 1) e^-a - (b + 1) e^-b."""
    with np.errstate(divide="ignore", invalid="ignore"):
        edges = -np.log1p(-np.arange(n + 1) / n)  # the last edge is infinite
        tail = np.where(np.isinf(edges), 0.0, (edges + 1) * np.exp(-edges))
    out: FloatArray = (tail[:-1] - tail[1:]) * n
    return out


_EXP_BAND_MEANS = _band_means(EXP_POINTS)


def erlang_c(servers: FloatArray, load: FloatArray) -> FloatArray:
    """P(wait > 0) in M/M/c with ``servers`` slots at offered ``load`` (Erlang), via the Poisson
    pmf/cdf ratio in log space (stable for thousands of servers); 1 when load >= servers.
    Non-integer slot counts use the continuous extension through the gamma function."""
    c = np.broadcast_to(servers, load.shape)
    a = np.maximum(load, 1e-300)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        log_pmf = c * np.log(a) - a - special.gammaln(c + 1)
        cdf = special.gammaincc(c, a)  # P(X <= c-1) for Poisson(a), continuous in c
        top = np.exp(log_pmf) * c / (c - a)
        out = top / (cdf + top)
    return np.where(load >= c, 1.0, np.where(load <= 0, 0.0, np.nan_to_num(out, nan=1.0)))


def wait_points(
    w_zero: FloatArray,
    w_exp: FloatArray,
    exp_mean: FloatArray,
    w_old: FloatArray,
    old_mean: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Wait values and weights per (class, pool): zero, exponential quantiles, carried-over."""
    exp_vals = _EXP_BAND_MEANS[None, None, :] * exp_mean[:, :, None]
    values = np.concatenate([np.zeros((*w_zero.shape, 1)), exp_vals, old_mean[:, :, None]], axis=2)
    weights = np.concatenate(
        [
            w_zero[:, :, None],
            np.repeat(w_exp[:, :, None] / EXP_POINTS, EXP_POINTS, axis=2),
            w_old[:, :, None],
        ],
        axis=2,
    )
    return values, weights
