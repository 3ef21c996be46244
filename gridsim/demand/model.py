"""The demand model of one scenario: rates for the flow engine, arrivals for the request engine."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gridsim.catalog import Catalog
from gridsim.demand.arrivals import Arrivals, RenewalStream, Sizes, TraceStream
from gridsim.demand.growth import DAY_S, HourlyIntensity, national_tokens_per_day, region_weights
from gridsim.demand.lengths import LengthSampler
from gridsim.demand.traces import TraceReplay
from gridsim.scenario import Scenario
from gridsim.scenario.schema import Bursty, DemandClass, TraceArrivals

FloatArray = npt.NDArray[np.float64]


@dataclass
class _Cursor:
    """Streams part-way through one seed's run, so the next chunk continues where this ended."""

    seed: int
    t_s: float
    streams: list[RenewalStream | TraceStream]


class DemandModel:
    """Arrival rates and arrivals per (region, class) for one scenario.

    Rate of an LLM class with a share, in requests/s:
    ``national tokens/day x share x region weight x sample_fraction / (mean input + mean output
    tokens) / 86400``. A class with ``rate_per_s`` (jobs must have one): ``rate_per_s x region
    weight x sample_fraction`` (the fraction samples explicit rates too, as it samples pool
    capacity in the Grid). Both are then shaped by ``HourlyIntensity``: growth relative to the
    start and the diurnal x weekly profile, constant within each clock hour.

    Trace classes are replayed as recorded (x time_scale, looped if asked): no share, rate,
    growth or profile applies; requests get regions by weight, and with sample_fraction < 1 each
    is kept with that probability. Their rates are the trace's counts per ``horizon.resolution``
    cell.

    ``thinning`` (regions x classes, in [0, 1]; the pool sample of ``demand.sample_pools``, see
    ``gridsim.grid``) thins each (region, class) stream further, as sample_fraction thins them
    all: rates x thinning, and a trace request kept with probability sample_fraction x its
    region's thinning. A thinned renewal stream keeps its class's dispersion (as every stream
    does, whatever its rate). Streams thinned to 0 are not drawn at all; the others draw from
    their own generators as always, so the same seed gives the same run.
    """

    def __init__(
        self,
        scenario: Scenario,
        catalog: Catalog | None = None,
        thinning: npt.ArrayLike | None = None,
    ) -> None:
        demand = scenario.demand
        self.scenario = scenario
        self.start = scenario.horizon.start
        self.resolution_s = scenario.horizon.resolution
        self.classes: tuple[DemandClass, ...] = tuple(demand.classes)
        self.class_names = tuple(c.name for c in self.classes)
        self.region_ids = tuple(r.id for r in scenario.regions)
        self.weights = region_weights(scenario, catalog or scenario.resolved_catalog)
        self.sample_fraction = demand.sample_fraction
        shape = (len(self.region_ids), len(self.classes))
        self.thinning: FloatArray | None = None
        """Per (region, class): the share of each stream kept (None: every stream whole)."""
        if thinning is not None:
            thin = np.array(np.broadcast_to(np.asarray(thinning, np.float64), shape))
            if not np.all((thin >= 0) & (thin <= 1)):
                raise ValueError("thinning is a share of each stream: values in [0, 1]")
            self.thinning = thin
        # What each (region, class) stream keeps: sample_fraction x thinning.
        self.keep = np.full(shape, float(self.sample_fraction))
        if self.thinning is not None:
            self.keep *= self.thinning
        self._sizes = [_sizes(c) for c in self.classes]
        self._replays = [
            TraceReplay.from_spec(c.arrival) if isinstance(c.arrival, TraceArrivals) else None
            for c in self.classes
        ]
        self.mean_input_tokens = np.zeros(len(self.classes))
        self.mean_output_tokens = np.zeros(len(self.classes))
        for i, (cls, sizes, replay) in enumerate(
            zip(self.classes, self._sizes, self._replays, strict=True)
        ):
            if cls.kind == "job":
                continue
            if replay is not None:
                self.mean_input_tokens[i] = replay.input_tokens.mean()
                self.mean_output_tokens[i] = replay.output_tokens.mean()
            else:
                assert sizes.inputs is not None and sizes.outputs is not None
                self.mean_input_tokens[i] = sizes.inputs.mean
                self.mean_output_tokens[i] = sizes.outputs.mean
        level0 = float(national_tokens_per_day(demand, self.start, np.zeros(1))[0])
        self.base_rates = np.zeros((len(self.region_ids), len(self.classes)))
        """Requests/s by (region, class) at the start before the profile; traces: pass mean."""
        for i, (cls, replay) in enumerate(zip(self.classes, self._replays, strict=True)):
            if replay is not None:
                national = replay.mean_rate_per_s
            elif cls.rate_per_s is not None:
                national = cls.rate_per_s
            elif cls.kind == "job":
                raise ValueError(f"job class {cls.name!r} needs rate_per_s (jobs carry no tokens)")
            else:
                tokens = self.mean_input_tokens[i] + self.mean_output_tokens[i]
                national = level0 * cls.share / tokens / DAY_S
            self.base_rates[:, i] = national * self.class_weights(i) * self.keep[:, i]
        self.intensity = HourlyIntensity(
            demand, self.start, self.classes, scenario.horizon.duration
        )
        self._cursor: _Cursor | None = None

    def class_weights(self, i: int) -> FloatArray:
        """Class ``i``'s split over the regions (summing to 1): its own ``region_weights``
        (a market's plans' subscribers) where given, else the demand's."""
        own = self.classes[i].region_weights
        if own is None:
            return self.weights
        w = np.array([own.get(r, 0.0) for r in self.region_ids], dtype=np.float64)
        total = w.sum()
        if total <= 0:
            raise ValueError(f"class {self.class_names[i]!r} has region_weights all zero")
        out: FloatArray = w / total
        return out

    # --- expected values (flow engine) --------------------------------------------------

    def class_index(self, cls: DemandClass | str | int) -> int:
        if isinstance(cls, int):
            return cls
        return self.class_names.index(cls if isinstance(cls, str) else cls.name)

    def trace_lengths(self, cls: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Input and output token lengths of a replayed trace class (as recorded)."""
        replay = self._replays[cls]
        if replay is None:
            raise ValueError(f"class {self.class_names[cls]!r} is not replayed from a trace")
        return replay.input_tokens, replay.output_tokens

    def mean_tokens_per_request(self, cls: DemandClass | str | int) -> float:
        """Mean input + output tokens per request (0 for jobs; the trace's mean for traces)."""
        i = self.class_index(cls)
        return float(self.mean_input_tokens[i] + self.mean_output_tokens[i])

    def rates(self, t_s: npt.ArrayLike) -> FloatArray:
        """Arrival rate (requests/s) at each time, shape (len(t), regions, classes).

        The hourly piecewise-constant rate that ``arrivals`` draws from; for trace classes the
        mean over the ``resolution`` cell holding t. For ticks longer than an hour (or not on
        the hour grid) prefer ``mean_rates``.
        """
        t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
        out = self.intensity.factor(t).T[:, None, :] * self.base_rates[None, :, :]
        cell = np.floor(t / self.resolution_s) * self.resolution_s
        self._trace_means(out, cell, cell + self.resolution_s, field=0)
        return out

    def mean_rates(self, edges_s: npt.ArrayLike) -> FloatArray:
        """Mean arrival rate over each interval between consecutive edges: (len-1, R, C)."""
        a, b = _intervals(edges_s)
        cum = self.intensity.cumulative(np.concatenate([a, b]))
        factor = (cum[:, a.size :] - cum[:, : a.size]) / (b - a)
        out = factor.T[:, None, :] * self.base_rates[None, :, :]
        self._trace_means(out, a, b, field=0)
        return out

    def token_rates(self, t_s: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Expected input and output tokens/s at each time, each (len(t), regions, classes)."""
        t = np.atleast_1d(np.asarray(t_s, dtype=np.float64))
        rates = self.rates(t)
        cell = np.floor(t / self.resolution_s) * self.resolution_s
        return self._tokens(rates, cell, cell + self.resolution_s)

    def mean_token_rates(self, edges_s: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Mean input and output tokens/s over each interval between edges: (len-1, R, C)."""
        a, b = _intervals(edges_s)
        return self._tokens(self.mean_rates(edges_s), a, b)

    def _tokens(
        self, rates: FloatArray, a: FloatArray, b: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        inputs = rates * self.mean_input_tokens
        outputs = rates * self.mean_output_tokens
        self._trace_means(inputs, a, b, field=1)
        self._trace_means(outputs, a, b, field=2)
        return inputs, outputs

    def _trace_means(self, out: FloatArray, a: FloatArray, b: FloatArray, field: int) -> None:
        """Fill trace classes' columns with requests (0) or tokens (1, 2) per s over [a, b)."""
        for i, replay in enumerate(self._replays):
            if replay is None:
                continue
            if field and self.classes[i].kind == "job":
                out[:, :, i] = 0.0
                continue
            per_s = (replay.cumulative(b)[field] - replay.cumulative(a)[field]) / (b - a)
            out[:, :, i] = per_s[:, None] * self.weights[None, :] * self.keep[None, :, i]

    # --- arrivals (request engine) ------------------------------------------------------

    def arrivals(self, rng_seed: int, t_start: float, t_end: float) -> Arrivals:
        """All arrivals in ``[t_start, t_end)``, merged in time order.

        Ties keep stream order (classes in scenario order; within a class, regions in order;
        a trace class is one stream), then draw order. Consecutive calls for the same seed
        continue the same streams, so chunks of any length give exactly the arrivals of one
        call over their union; any other call starts the seed's streams afresh (replaying and
        dropping what comes before ``t_start``).
        """
        if not 0 <= t_start <= t_end or not np.isfinite(t_end):
            raise ValueError(f"need 0 <= t_start <= t_end < inf, got [{t_start}, {t_end})")
        cursor = self._cursor
        if cursor is None or cursor.seed != rng_seed or cursor.t_s != t_start:
            cursor = _Cursor(rng_seed, 0.0, self._streams(rng_seed))
            self.intensity.ensure(t_start)
            for stream in cursor.streams:
                if isinstance(stream, RenewalStream):
                    stream.skip_to(t_start)
        self.intensity.ensure(t_end)
        parts = [
            s.step(t_start, t_end) if isinstance(s, TraceStream) else s.step(t_end)
            for s in cursor.streams
        ]
        cursor.t_s = t_end
        self._cursor = cursor
        return Arrivals.merge(parts)

    def iter_arrivals(
        self, rng_seed: int, chunk_s: float, t_start: float = 0.0, t_end: float | None = None
    ) -> Iterator[Arrivals]:
        """Arrivals chunk by chunk up to ``t_end`` (default: the horizon's end)."""
        end = self.scenario.horizon.duration if t_end is None else t_end
        t = t_start
        while t < end:
            stop = min(t + chunk_s, end)
            yield self.arrivals(rng_seed, t, stop)
            t = stop

    def _streams(self, seed: int) -> list[RenewalStream | TraceStream]:
        streams: list[RenewalStream | TraceStream] = []
        for c, cls in enumerate(self.classes):
            replay = self._replays[c]
            if replay is not None:
                streams.append(
                    TraceStream(
                        seed,
                        cls.name,
                        c,
                        replay,
                        self.weights,
                        self.keep[:, c] if self.thinning is not None else self.sample_fraction,
                        self._sizes[c],
                    )
                )
                continue
            dispersion = cls.arrival.dispersion if isinstance(cls.arrival, Bursty) else 1.0
            for r, region in enumerate(self.region_ids):
                if self.thinning is not None and self.thinning[r, c] == 0:
                    continue  # routed nowhere in the pool sample: not simulated
                streams.append(
                    RenewalStream(
                        seed,
                        cls.name,
                        region,
                        c,
                        r,
                        float(self.base_rates[r, c]),
                        dispersion,
                        self._sizes[c],
                        self.intensity,
                    )
                )
        return streams


def _sizes(cls: DemandClass) -> Sizes:
    if cls.kind == "job":
        assert cls.service is not None
        return Sizes(None, None, LengthSampler(cls.service, tokens=False))
    if isinstance(cls.arrival, TraceArrivals):
        return Sizes(None, None, None)  # tokens come from the trace itself
    assert cls.input_tokens is not None and cls.output_tokens is not None
    return Sizes(LengthSampler(cls.input_tokens), LengthSampler(cls.output_tokens), None)


def _intervals(edges_s: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    edges = np.asarray(edges_s, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be at least two increasing times (seconds)")
    return edges[:-1], edges[1:]
