"""Arrival streams: one random stream per (class, region), or one national stream per trace class.

Every stream owns its generators, seeded from the run seed and stable hashes of its class name
and region id, so adding a region or class leaves the other streams' draws alone. Streams are
stepped forward in time and keep what they drew beyond the step's end, so generating in chunks
gives exactly the same arrivals as generating in one go.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridsim.demand.growth import HourlyIntensity
from gridsim.demand.lengths import LengthSampler
from gridsim.demand.traces import TraceReplay

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]

# Key of a trace class's single stream; not a valid region id, so it cannot collide with one.
NATIONAL = "__national__"
_BATCH = 1_000_000  # bound on values drawn at once when skipping ahead


def stable_hash(name: str) -> int:
    """CRC-32 of the UTF-8 name: the same on every run, machine and Python version."""
    return zlib.crc32(name.encode("utf-8"))


def stream_seed(seed: int, class_name: str, region_id: str) -> np.random.SeedSequence:
    """The seed sequence of one (class, region) stream."""
    return np.random.SeedSequence(seed, spawn_key=(stable_hash(class_name), stable_hash(region_id)))


@dataclass(frozen=True)
class Arrivals:
    """Requests or jobs in time order: one entry per arrival across all streams.

    ``input_tokens``/``output_tokens`` are 0 for job classes; ``service_s`` is NaN for LLM
    classes.
    """

    time_s: FloatArray
    class_idx: Int32Array
    region_idx: Int32Array
    input_tokens: IntArray
    output_tokens: IntArray
    service_s: FloatArray

    def __len__(self) -> int:
        return int(self.time_s.size)

    @classmethod
    def empty(cls) -> Arrivals:
        return cls.concat([])

    @classmethod
    def concat(cls, parts: Sequence[Arrivals]) -> Arrivals:
        """Parts joined end to end (no sorting: for consecutive time chunks)."""

        def join(name: str, dtype: type) -> Any:
            arrays = [getattr(p, name) for p in parts]
            return np.concatenate(arrays) if arrays else np.zeros(0, dtype)

        return cls(
            time_s=join("time_s", np.float64),
            class_idx=join("class_idx", np.int32),
            region_idx=join("region_idx", np.int32),
            input_tokens=join("input_tokens", np.int64),
            output_tokens=join("output_tokens", np.int64),
            service_s=join("service_s", np.float64),
        )

    @classmethod
    def merge(cls, parts: Sequence[Arrivals]) -> Arrivals:
        """Parts interleaved by time; ties keep part order, then order within a part."""
        joined = cls.concat(parts)
        order = np.argsort(joined.time_s, kind="stable")
        return joined.take(order)

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_]) -> Arrivals:
        return Arrivals(
            self.time_s[index],
            self.class_idx[index],
            self.region_idx[index],
            self.input_tokens[index],
            self.output_tokens[index],
            self.service_s[index],
        )

    def to_frame(self) -> pd.DataFrame:
        """A tidy table, one row per arrival."""
        return pd.DataFrame(
            {
                "time_s": self.time_s,
                "class_idx": self.class_idx,
                "region_idx": self.region_idx,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "service_s": self.service_s,
            }
        )


@dataclass(frozen=True)
class Sizes:
    """How a class sizes its arrivals: token lengths (LLM) or service times (jobs)."""

    inputs: LengthSampler | None
    outputs: LengthSampler | None
    service: LengthSampler | None


def _sized(
    times: FloatArray,
    class_idx: int,
    region_idx: int | Int32Array,
    sizes: Sizes,
    rngs: Sequence[np.random.Generator],
) -> Arrivals:
    m = times.size
    if sizes.service is not None:
        inputs = outputs = np.zeros(m, np.int64)
        service = sizes.service.sample(rngs[2], m).astype(np.float64)
    else:
        assert sizes.inputs is not None and sizes.outputs is not None
        inputs = sizes.inputs.sample(rngs[0], m).astype(np.int64)
        outputs = sizes.outputs.sample(rngs[1], m).astype(np.int64)
        service = np.full(m, np.nan)
    return Arrivals(
        time_s=times,
        class_idx=np.full(m, class_idx, np.int32),
        region_idx=np.broadcast_to(np.asarray(region_idx, np.int32), (m,)).copy(),
        input_tokens=inputs,
        output_tokens=outputs,
        service_s=service,
    )


class RenewalStream:
    """Poisson or bursty arrivals of one (class, region), by a time change.

    A unit-rate renewal process is drawn in "operational time" and mapped to clock time through
    the stream's cumulative intensity ``rate x HourlyIntensity.cumulative`` (piecewise linear,
    inverted exactly). Poisson: exponential gaps, so the result is an exact non-homogeneous
    Poisson process for the hourly piecewise-constant rate. Bursty: gamma gaps with squared CV =
    dispersion (the asymptotic index of dispersion of a renewal process's counts), started in
    equilibrium (first gap from the forward-recurrence law) so there is no start-up transient.
    """

    def __init__(
        self,
        seed: int,
        class_name: str,
        region_id: str,
        class_idx: int,
        region_idx: int,
        rate_per_s: float,
        dispersion: float,
        sizes: Sizes,
        intensity: HourlyIntensity,
    ) -> None:
        children = stream_seed(seed, class_name, region_id).spawn(4)
        self._gap_rng, *self._size_rngs = (np.random.default_rng(s) for s in children)
        self._c, self._r = class_idx, region_idx
        self._rate = rate_per_s
        self._dispersion = dispersion
        self._sizes = sizes
        self._intensity = intensity
        self._pending = np.zeros(0)  # operational times drawn but not yet emitted, ascending
        self._last = 0.0  # operational time of the last draw
        self._started = False
        self.t_s = 0.0  # clock time up to which arrivals have been emitted

    def _clock(self, level: FloatArray) -> FloatArray:
        return self._intensity.inverse(self._c, level / self._rate)

    def _gaps(self, n: int) -> FloatArray:
        rng = self._gap_rng
        if self._dispersion == 1.0:
            return rng.standard_exponential(n)
        shape, scale = 1.0 / self._dispersion, self._dispersion  # mean 1, variance dispersion
        if self._started:
            return rng.standard_gamma(shape, n) * scale
        # Forward recurrence time: a uniform share of a length-biased gap, Gamma(shape + 1).
        # Drawn before the batch, so the draw order does not depend on the batch size.
        first = rng.random() * rng.standard_gamma(shape + 1.0) * scale
        return np.concatenate([[first], rng.standard_gamma(shape, n - 1) * scale])

    def step(self, t_end: float) -> Arrivals:
        """Arrivals in ``[self.t_s, t_end)``; then ``self.t_s = t_end``."""
        if self._rate <= 0 or t_end <= self.t_s:
            self.t_s = max(self.t_s, t_end)
            return _sized(np.zeros(0), self._c, self._r, self._sizes, self._size_rngs)
        target = self._rate * float(self._intensity.cumulative([t_end])[self._c, 0])
        while self._pending.size == 0 or self._clock(self._pending[-1:])[0] < t_end:
            need = max(target - self._last, 0.0)
            n = int(need + 6.0 * math.sqrt(self._dispersion * need + 1.0) + 16)
            gaps = self._gaps(n)
            self._started = True
            gaps[0] += self._last  # so the running sum continues exactly in sequence
            drawn = np.cumsum(gaps)
            self._last = float(drawn[-1])
            self._pending = np.concatenate([self._pending, drawn])
        times = self._clock(self._pending)
        now = times < t_end
        self._pending = self._pending[~now]
        self.t_s = t_end
        return _sized(times[now], self._c, self._r, self._sizes, self._size_rngs)

    def skip_to(self, t_s: float) -> None:
        """Draw and drop everything before ``t_s``, about a million arrivals at a time."""
        while self.t_s < t_s:
            if self._rate <= 0:
                self.t_s = t_s
                break
            level = float(self._intensity.cumulative([self.t_s])[self._c, 0])
            ahead = level + _BATCH / self._rate
            stop = float(self._intensity.inverse(self._c, np.array([ahead]))[0])
            self.step(min(t_s, max(stop, self.t_s + 1.0)))


class TraceStream:
    """A trace class replayed once nationally; each request gets a region drawn by weight.

    With ``sample_fraction < 1`` each request is kept with that probability; given per region
    (an array, the pool sample's thinning), with its region's. Draws are made in the order of
    the requests' global index (pass x n + row), so chunks give the same result.
    """

    def __init__(
        self,
        seed: int,
        class_name: str,
        class_idx: int,
        replay: TraceReplay,
        region_weights: FloatArray,
        sample_fraction: float | FloatArray,
        sizes: Sizes,
    ) -> None:
        children = stream_seed(seed, class_name, NATIONAL).spawn(3)
        self._region_rng, self._keep_rng, self._service_rng = (
            np.random.default_rng(s) for s in children
        )
        self._c = class_idx
        self._replay = replay
        self._cum_weights = np.cumsum(region_weights)
        self._last_region = int(np.flatnonzero(region_weights > 0)[-1])
        self._fraction = np.broadcast_to(
            np.asarray(sample_fraction, np.float64), np.shape(region_weights)
        )
        self._thinned = bool(np.any(self._fraction < 1))
        self._sizes = sizes
        self._next = 0  # global index of the next request to draw for

    def _draw(self, m: int) -> tuple[Int32Array, npt.NDArray[np.bool_] | None, FloatArray]:
        u = self._region_rng.random(m)
        found = np.searchsorted(self._cum_weights, u, side="right")
        region = np.minimum(found, self._last_region).astype(np.int32)
        keep = self._keep_rng.random(m) < self._fraction[region] if self._thinned else None
        service = self._sizes.service
        if service is not None:
            seconds = service.sample(self._service_rng, m).astype(np.float64)
        else:
            seconds = np.full(m, np.nan)
        return region, keep, seconds

    def step(self, t_start: float, t_end: float) -> Arrivals:
        """Requests in ``[t_start, t_end)``."""
        index, times = self._replay.window(t_start, t_end)
        if index.size == 0:
            return Arrivals.empty()
        skip = int(index[0]) - self._next
        while skip > 0:  # a cold start part-way: draw and drop the earlier requests' values
            batch = min(skip, _BATCH)
            self._draw(batch)
            skip -= batch
        region, keep, service = self._draw(index.size)
        self._next = int(index[-1]) + 1
        m = index.size
        row = index % len(self._replay)
        job = self._sizes.service is not None
        out = Arrivals(
            time_s=times,
            class_idx=np.full(m, self._c, np.int32),
            region_idx=region,
            input_tokens=np.zeros(m, np.int64) if job else self._replay.input_tokens[row],
            output_tokens=np.zeros(m, np.int64) if job else self._replay.output_tokens[row],
            service_s=service,
        )
        return out if keep is None else out.take(keep)
