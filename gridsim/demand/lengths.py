"""Request sizes: token lengths (integers) and job service times (seconds) from a Distribution."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from gridsim.demand.traces import load_trace
from gridsim.scenario.schema import Constant, Distribution, Empirical, Exponential, Lognormal

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Far above any real context length; keeps a heavy lognormal tail from overflowing int64.
_MAX_TOKENS = float(2**40)


class LengthSampler:
    """Draws from a scenario ``Distribution``.

    With ``tokens=True`` samples are token counts: rounded to the nearest integer and at least 1
    (int64). With ``tokens=False`` they are float seconds (job service times). ``lognormal`` is
    given by its mean and the std of log(x): ``mu = ln(mean) - sigma**2 / 2``. ``empirical``
    resamples (uniformly, with replacement) a trace file's input or output column.

    ``mean`` is the law's own mean: analytic for lognormal and exponential (rounding to whole
    tokens shifts it by well under a token once the mean is large), exact for constant and
    empirical. Each variate consumes the generator in sequence, so drawing n then m values gives
    the same numbers as drawing n + m at once (chunked generation relies on it).
    """

    def __init__(self, dist: Distribution, tokens: bool = True) -> None:
        self.dist = dist
        self.tokens = tokens
        self._values: FloatArray | IntArray | None = None
        if isinstance(dist, Empirical):
            data = load_trace(dist.trace)
            column = data.input_tokens if dist.field == "input" else data.output_tokens
            self._values = np.maximum(column, 1) if tokens else column.astype(np.float64)

    def support(self) -> FloatArray | IntArray:
        """The values an ``empirical`` law resamples from (its whole trace column)."""
        if self._values is None:
            raise ValueError(f"a {self.dist.dist} law has no finite support to list")
        return self._values

    @property
    def mean(self) -> float:
        dist = self.dist
        if isinstance(dist, Lognormal | Exponential):
            return float(dist.mean)
        if isinstance(dist, Constant):
            return float(self._round(np.array([dist.value]))[0]) if self.tokens else dist.value
        assert self._values is not None
        return float(np.mean(self._values))

    def sample(self, rng: np.random.Generator, n: int) -> IntArray | FloatArray:
        """``n`` draws: int64 token counts (``tokens=True``) or float64 seconds."""
        dist = self.dist
        if isinstance(dist, Empirical):
            assert self._values is not None
            size = self._values.size
            # random() takes one 64-bit draw per value (integers() may buffer 32-bit halves).
            index = (rng.random(n) * size).astype(np.int64)
            np.minimum(index, size - 1, out=index)
            return self._values[index]
        if isinstance(dist, Lognormal):
            mu = math.log(dist.mean) - dist.sigma**2 / 2
            raw = rng.lognormal(mu, dist.sigma, n)
        elif isinstance(dist, Exponential):
            raw = rng.exponential(dist.mean, n)
        else:
            raw = np.full(n, float(dist.value))
        return self._round(raw) if self.tokens else raw

    @staticmethod
    def _round(raw: FloatArray) -> IntArray:
        out: IntArray = np.clip(np.rint(raw), 1.0, _MAX_TOKENS).astype(np.int64)
        return out
