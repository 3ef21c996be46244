"""Erlang C: the chance an arrival waits in M/M/c, for the engines' queueing laws and for
model pooling's sizing (a module of its own so both layers can read it)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

FloatArray = npt.NDArray[np.float64]


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
