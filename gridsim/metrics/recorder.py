"""The Recorder: counters, latency histograms and interval time series for one run.

Memory is bounded by the number of classes, regions, pools and intervals, never by the number
of requests: engines hand over finished requests as columns, at most ``FLUSH_ROWS`` at a time,
binned into histograms in one vectorised pass. Only the optional per-request table grows.

Definitions (each metric once):

- ``latency_s``: end to end, from the request leaving its region to the last token back there
  (network both ways + wait + slot time);
- ``wait_s``: from reaching the pool to starting service;
- ``ttft_s``: from leaving the region to the first token back (network both ways + wait +
  prefill);
- ``sla_attainment``: requests that met every SLO of their class over requests that ended:
  served, dropped, abandoned or lost (a request that never got served misses its SLO);
- ``utilization``: busy slot-seconds over slot-seconds, time-weighted, after warm-up.

Where requests go (``requests`` in every block): each one that ``arrived`` is, at the end,
exactly one of

- ``served``: finished its service;
- ``dropped``: turned away by admission (``admission.queue_limit`` or ``admission.max_wait``),
  or with no pool to go to;
- ``abandoned``: gave up waiting: its wait at its pool would have passed its class's
  ``patience`` draw; it left the queue without taking a slot;
- ``lost``: in (or on its way to) a pool when that pool failed, with ``policy.on_failure:
  drop``;
- ``in_flight``: admitted or travelling, not finished at the end of the horizon.

``arrived = served + dropped + abandoned + lost + in_flight`` in every block. The flow engine's
counts are expected (fractional) numbers; a summary rounds each term down or up (largest
remainders) so that the identity holds in whole numbers, no term is negative and a term that is
whole stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridsim.metrics.histogram import LogHistogram, Mix, add_grouped, add_mixture

FloatArray = npt.NDArray[np.float64]
Pools = npt.NDArray[np.intp]  # pool indices
FLUSH_ROWS = 1 << 16
# Columns of a finished request, in the order the engine appends them.
COLUMNS = (
    "class_idx",
    "region_idx",
    "pool_idx",
    "arrival_s",
    "network_s",
    "reach_s",
    "start_s",
    "first_token_s",
    "end_s",
    "input_tokens",
    "output_tokens",
    "slots",
)
GROUPS = ("class", "region", "node", "pool")
METRICS = ("latency_s", "wait_s", "ttft_s")


@dataclass(frozen=True)
class Layout:
    """The entities a run reports on."""

    class_names: tuple[str, ...]
    region_ids: tuple[str, ...]
    node_ids: tuple[str, ...]
    pool_node: tuple[int, ...]  # node index of each pool
    pool_names: tuple[str, ...]  # "node/pool"
    pool_slots: tuple[int, ...]
    ttft_slo_s: tuple[float, ...]  # per class, inf when none
    e2e_slo_s: tuple[float, ...]


class Recorder:
    def __init__(
        self,
        layout: Layout,
        horizon_s: float,
        warmup_s: float,
        interval_s: float,
        keep_requests: bool = False,
        fluid: bool = False,
        latency_statistics: bool = True,
    ) -> None:
        self.layout = layout
        self.horizon_s = horizon_s
        self.warmup_s = warmup_s
        self.interval_s = interval_s
        self.keep_requests = keep_requests
        # False: record_flow keeps counts, tokens and SLO attainment but no distributions
        self.latency_statistics = latency_statistics
        # The flow engine records expected (fractional) counts; the request engine whole ones.
        self.fluid = fluid
        count = np.float64 if fluid else np.int64
        n_c, n_r, n_n, n_p = (
            len(layout.class_names),
            len(layout.region_ids),
            len(layout.node_ids),
            len(layout.pool_node),
        )
        self.sizes = {"class": n_c, "region": n_r, "node": n_n, "pool": n_p}
        self.hists = {
            (g, m): [LogHistogram() for _ in range(self.sizes[g])] for g in GROUPS for m in METRICS
        }
        # A pool alone on its node has its node's statistics: only pools that share their node
        # are recorded apart (the request engine's hot path skips the rest).
        node_of_pool = np.asarray(layout.pool_node, dtype=np.intp)
        self.pool_shares_node = np.bincount(node_of_pool, minlength=n_n)[node_of_pool] > 1
        # counters by class x region (x pool where it is known)
        self.arrived: npt.NDArray[Any] = np.zeros((n_c, n_r), dtype=count)
        self.input_demanded: npt.NDArray[Any] = np.zeros((n_c, n_r), dtype=count)
        self.output_demanded: npt.NDArray[Any] = np.zeros((n_c, n_r), dtype=count)
        self.served: npt.NDArray[Any] = np.zeros((n_c, n_r, n_p), dtype=count)
        self.met_slo: npt.NDArray[Any] = np.zeros((n_c, n_r, n_p), dtype=count)
        self.input_served: npt.NDArray[Any] = np.zeros((n_c, n_r, n_p), dtype=count)
        self.output_served: npt.NDArray[Any] = np.zeros((n_c, n_r, n_p), dtype=count)
        self.dropped: npt.NDArray[Any] = np.zeros((n_c, n_r, n_p + 1), dtype=count)  # +no pool
        self.abandoned: npt.NDArray[Any] = np.zeros((n_c, n_r, n_p), dtype=count)
        self.lost: npt.NDArray[Any] = np.zeros((n_c, n_r, n_p), dtype=count)
        self.extra_series: list[pd.DataFrame] = []  # engine-specific series (tidy)
        self.prices: list[tuple[float, str, float]] = []  # (time, node, CNY/kWh) from events
        self.capacity_kpis: dict[str, Any] | None = None
        self.retried: float = 0  # times a request was routed again after its pool failed
        n_bins = max(1, int(np.ceil(horizon_s / interval_s)))
        self.busy = np.zeros((n_p, n_bins))  # slot-seconds per interval
        self.queued = np.zeros((n_p, n_bins))  # request-seconds waiting per interval
        self.capacity = np.zeros((n_p, n_bins))  # slot-seconds available per interval
        self._tables: list[pd.DataFrame] = []

    # --- recording (hot path) --------------------------------------------------------------

    def arrivals(
        self,
        cls: npt.NDArray[np.int32],
        region: npt.NDArray[np.int32],
        input_tokens: npt.NDArray[np.int64],
        output_tokens: npt.NDArray[np.int64],
    ) -> None:
        """Count a chunk of arrivals at once."""
        np.add.at(self.arrived, (cls, region), 1)
        np.add.at(self.input_demanded, (cls, region), input_tokens)
        np.add.at(self.output_demanded, (cls, region), output_tokens)

    def drop(self, cls: int, region: int, pool: int) -> None:
        """A request turned away (queue limit, maximum wait, or nowhere to go: pool -1)."""
        self.dropped[cls, region, pool] += 1

    def abandon(self, cls: int, region: int, pool: int) -> None:
        """A request that gave up waiting at ``pool`` (its wait would pass its patience)."""
        self.abandoned[cls, region, pool] += 1

    def lose(self, cls: int, region: int, pool: int) -> None:
        """A request lost with ``pool`` when it failed (``policy.on_failure: drop``)."""
        self.lost[cls, region, pool] += 1

    def add_span(
        self, table: npt.NDArray[np.float64], pool: int, t0: float, t1: float, weight: float = 1.0
    ) -> None:
        """Add ``weight`` x the interval [t0, t1) to a per-interval table (busy, queued, ...)."""
        if t1 <= t0:
            return
        w = self.interval_s
        b0, b1 = int(t0 // w), int(t1 // w)
        last = table.shape[1] - 1
        if b0 == b1:
            if b0 <= last:
                table[pool, b0] += (t1 - t0) * weight
            return
        if b0 <= last:
            table[pool, b0] += ((b0 + 1) * w - t0) * weight
        if b1 > b0 + 1:
            table[pool, b0 + 1 : min(b1, last + 1)] += w * weight
        if b1 <= last:
            table[pool, b1] += (t1 - b1 * w) * weight

    def record_flow(
        self,
        served: npt.NDArray[np.float64],
        wait_points: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
        service_points: npt.NDArray[np.float64],
        prefill_mean: npt.NDArray[np.float64],
        network_s: npt.NDArray[np.float64],
        keep: float,
        tokens: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
        first_token_waits: npt.NDArray[np.float64] | None = None,
    ) -> None:
        """Requests served over a block of ticks, as distributions (the flow engine).

        ``served`` is (regions, classes, pools); ``wait_points`` values and weights are
        (classes, pools, J) and sum to what each (class, pool) served; ``service_points`` are
        K equally likely quantile points of the slot time per (class, pool). Latency points
        are ``2 x network + wait_j + service_k`` (network: the served-weighted mean over
        regions), the first token ``2 x network + wait_j + mean prefill``, or with
        ``first_token_waits`` (C, P, J: the part of each wait point before the first token)
        that part instead of ``wait_j``.

        ``keep`` (0 to 1; True and False count as 1 and 0) is the share of the block's served
        mass that falls after warm-up: the counters take all of ``served``, the histograms
        ``keep`` x its weights, and nothing when ``keep`` is 0.
        """
        keep = float(keep)
        if not 0.0 <= keep <= 1.0:
            raise ValueError(f"keep is a share of the served mass, in [0, 1]; got {keep}")
        served_cp = served.sum(axis=0)  # (C, P)
        if served_cp.sum() <= 0:
            return
        wait_v, wait_w = wait_points
        n_r, n_c, n_p = served.shape
        n_j, k = wait_v.shape[2], service_points.shape[2]
        # Only the (class, pool) pairs with wait mass have latency points: a class is served at
        # few pools (a few % of the pairs on a market of many models). Every other pair meets
        # no SLO share and adds nothing to a histogram, so the work is on the pairs that have
        # mass (A of them, flat index c * P + p, in order: sums over them add the same terms in
        # the same order as over every pair).
        pairs = np.flatnonzero((wait_w != 0).any(axis=2).ravel())
        cls = pairs // n_p
        # np.take: C-ordered (fancy indexing of the last axis is not), so the sum over regions
        # runs region after region as over the whole array
        served_a = np.take(served.reshape(n_r, n_c * n_p), pairs, axis=1)  # (R, A)
        served_tot = served_cp.ravel()[pairs]  # (A,)
        network_a = np.take(network_s, pairs % n_p, axis=1)  # (R, A)
        with np.errstate(invalid="ignore", divide="ignore"):
            net = np.nan_to_num((served_a * network_a).sum(axis=0) / served_tot)  # (A,)
        v_a = wait_v.reshape(-1, n_j)[pairs]  # (A, J)
        w_a = wait_w.reshape(-1, n_j)[pairs]
        svc = service_points.reshape(-1, k)[pairs]  # (A, K)
        lat = (2 * net)[:, None, None] + v_a[:, :, None] + svc[:, None, :]  # (A, J, K)
        # the first token's share of each wait point (staged pools: the entry's wait only)
        before_first = (
            v_a if first_token_waits is None else first_token_waits.reshape(-1, n_j)[pairs]
        )
        ttft = (2 * net + prefill_mean.ravel()[pairs])[:, None] + before_first  # (A, J)
        w = np.repeat(w_a[:, :, None] / k, k, axis=2)  # (A, J, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            # mass per pair sums to 1; equal over the K service points, so divided once per
            # wait point (the same quotients as dividing w)
            norm = np.nan_to_num(w_a / k / served_tot[:, None])  # (A, J)
        ttft_ok = ttft[:, :, None] <= np.asarray(self.layout.ttft_slo_s)[cls][:, None, None]
        e2e_ok = lat <= np.asarray(self.layout.e2e_slo_s)[cls][:, None, None]
        met_share = np.zeros(n_c * n_p)
        met_share[pairs] = (norm[:, :, None] * (ttft_ok & e2e_ok)).sum(axis=(1, 2))
        # The counters change only where something was served (every other term adds 0):
        # those (class, pool) pairs, all regions at once (each pair once: no repeated index).
        got = np.flatnonzero((served != 0).any(axis=0).ravel())
        c_got, p_got = got // n_p, got % n_p
        served_got = np.take(served.reshape(n_r, n_c * n_p), got, axis=1).T  # (S, R)
        self.served[c_got, :, p_got] += served_got
        self.met_slo[c_got, :, p_got] += served_got * met_share[got][:, None]
        self.input_served[c_got, :, p_got] += served_got * tokens[0][c_got][:, None]
        self.output_served[c_got, :, p_got] += served_got * tokens[1][c_got][:, None]
        if keep == 0.0 or not self.latency_statistics or not pairs.size:
            return
        if keep < 1.0:  # only the share after warm-up goes into the statistics
            w = w * keep
            w_a = w_a * keep
        # Each (class, pool) is one mixture component of J x K latency points; classes, nodes
        # and pools take their components whole (partitions, built once per layout), regions
        # mix them by their share of what the pool served.
        from scipy import sparse

        comps = pairs.size
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.nan_to_num(served_a / served_tot[None])  # (R, A)
        # sparse once here, not once per metric inside add_mixture: a region uses few pools
        mixes: dict[str, Mix] = {
            **{g: group_of[pairs] for g, group_of in _flow_mixes(self.layout).items()},
            "region": sparse.csr_matrix(share),
        }
        # Waits and first tokens do not depend on the service point: J points suffice.
        for m, v, wt in (
            ("latency_s", lat, w),
            ("wait_s", v_a, w_a),
            ("ttft_s", ttft, w_a),
        ):
            targets = [(self.hists[(g, m)], mix) for g, mix in mixes.items()]
            add_mixture(targets, np.asarray(v).reshape(comps, -1), wt.reshape(comps, -1))

    def spans(self, station: Pools, reach: FloatArray, start: FloatArray, end: FloatArray) -> None:
        """Requests that held a slot of a later station (not the entry) from ``start`` to
        ``end``, having waited there from ``reach``: its busy and queued time."""
        self._spans(self.busy, station, start, end, np.ones(len(start)))
        self._spans(self.queued, station, reach, start, np.ones(len(start)))

    def _spans(
        self, table: FloatArray, pool: Pools, t0: FloatArray, t1: FloatArray, weight: FloatArray
    ) -> None:
        """``add_span`` for many spans at once (most lie within one interval)."""
        w = self.interval_s
        last = table.shape[1] - 1
        b0 = (t0 // w).astype(np.intp)
        b1 = (t1 // w).astype(np.intp)
        one = (b0 == b1) & (b0 <= last)
        np.add.at(table, (pool[one], b0[one]), (t1 - t0)[one] * weight[one])
        for i in np.flatnonzero(b0 != b1):
            self.add_span(table, int(pool[i]), float(t0[i]), float(t1[i]), float(weight[i]))

    def finished(self, **col: npt.NDArray[Any]) -> None:
        """Finished requests, as arrays named as in ``COLUMNS`` (times in pool time).

        Optional: ``busy_end_s``, when the request left the slot of its pool's entry station
        (default ``end_s``; later stations' spans are the engine's to add with ``spans``), and
        ``wait_s``, its waits at every station (default ``start_s - reach_s``)."""
        cls = col["class_idx"]
        region = col["region_idx"]
        pool = col["pool_idx"]
        net = col["network_s"]
        latency = col["end_s"] + net - col["arrival_s"]
        ttft = col["first_token_s"] + net - col["arrival_s"]
        wait = col["wait_s"] if "wait_s" in col else col["start_s"] - col["reach_s"]
        busy_end = col["busy_end_s"] if "busy_end_s" in col else col["end_s"]
        ttft_slo = np.asarray(self.layout.ttft_slo_s)[cls]
        e2e_slo = np.asarray(self.layout.e2e_slo_s)[cls]
        met = (ttft <= ttft_slo) & (latency <= e2e_slo)
        inp = col["input_tokens"]
        out = col["output_tokens"]
        self._spans(self.busy, pool, col["start_s"], busy_end, col["slots"])
        self._spans(self.queued, pool, col["reach_s"], col["start_s"], np.ones(len(pool)))
        np.add.at(self.served, (cls, region, pool), 1)
        np.add.at(self.met_slo, (cls, region, pool), met)
        np.add.at(self.input_served, (cls, region, pool), inp)
        np.add.at(self.output_served, (cls, region, pool), out)
        # Latency statistics leave out requests that arrived during warm-up.
        keep = col["arrival_s"] >= self.warmup_s
        node = np.asarray(self.layout.pool_node, dtype=np.intp)[pool]
        keys = {"class": cls[keep], "region": region[keep], "node": node[keep]}
        values = {"latency_s": latency[keep], "wait_s": wait[keep], "ttft_s": ttft[keep]}
        ones = np.ones(int(keep.sum()))
        for g, key in keys.items():
            for m, v in values.items():
                add_grouped(self.hists[(g, m)], v, ones, key)
        if self.pool_shares_node.any():
            apart = self.pool_shares_node[pool[keep]]
            for m, v in values.items():
                add_grouped(self.hists[("pool", m)], v[apart], ones[apart], pool[keep][apart])
        if self.keep_requests:
            frame = pd.DataFrame(
                {
                    "class": _labels(cls, self.layout.class_names),
                    "region": _labels(region, self.layout.region_ids),
                    "node": _labels(node, self.layout.node_ids),
                    "pool_idx": pool.astype(np.int32),
                    "arrival_s": col["arrival_s"],
                    "reach_s": col["reach_s"],
                    "start_s": col["start_s"],
                    "service_end_s": col["end_s"],
                    "first_token_s": col["first_token_s"] + net,
                    "end_s": col["end_s"] + net,
                    "network_s": net,
                    "wait_s": wait,
                    "ttft_s": ttft,
                    "latency_s": latency,
                    "input_tokens": inp,
                    "output_tokens": out,
                    "met_slo": met,
                }
            )
            self._tables.append(frame)

    # --- results ---------------------------------------------------------------------------

    def requests(self) -> pd.DataFrame:
        if not self._tables:
            return pd.DataFrame()
        table = pd.concat(self._tables, ignore_index=True)
        return table.sort_values(["arrival_s", "end_s"], kind="stable").reset_index(drop=True)

    def timeseries(self) -> pd.DataFrame:
        """Tidy: time_s (interval start), entity_kind, entity_id, metric, value."""
        n_bins = self.busy.shape[1]
        times = np.arange(n_bins) * self.interval_s
        widths = np.minimum(times + self.interval_s, self.horizon_s) - times
        frames = []
        by_node_busy = self._by_node(self.busy)
        by_node_cap = self._by_node(self.capacity)
        with np.errstate(invalid="ignore", divide="ignore"):
            util = np.where(by_node_cap > 0, by_node_busy / by_node_cap, np.nan)
        queue = self._by_node(self.queued) / widths
        series = [
            ("node", self.layout.node_ids, "utilization", util),
            ("node", self.layout.node_ids, "queue_length", queue),
            ("pool", self.layout.pool_names, "busy_slot_s", self.busy),
            ("pool", self.layout.pool_names, "capacity_slot_s", self.capacity),
        ]
        for kind, ids, metric, table in series:
            for i, entity in enumerate(ids):
                frames.append(series_frame(times, kind, entity, metric, table[i]))
        if self.prices:
            t, node, price = zip(*self.prices, strict=True)
            frames.append(series_frame(t, "node", node, "price_cny_per_kwh", price))
        return pd.concat([*frames, *self.extra_series], ignore_index=True)

    def flows(self) -> pd.DataFrame:
        """Tidy, one row per (class, region, pool) that served anything: requests, tokens and
        requests that met their SLO (what moved from where to where)."""
        c, r, p = np.nonzero(self.served)
        lay = self.layout
        return pd.DataFrame(
            {
                "class": [lay.class_names[i] for i in c],
                "region": [lay.region_ids[i] for i in r],
                "node": [lay.node_ids[lay.pool_node[i]] for i in p],
                "pool": [lay.pool_names[i] for i in p],
                "requests": self.served[c, r, p],
                "met_slo": self.met_slo[c, r, p],
                "input_tokens": self.input_served[c, r, p],
                "output_tokens": self.output_served[c, r, p],
            }
        )

    def _by_node(self, table: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        out = np.zeros((len(self.layout.node_ids), table.shape[1]))
        np.add.at(out, np.asarray(self.layout.pool_node), table)
        return out

    def summary(self, in_flight: npt.NDArray[Any]) -> dict[str, Any]:
        """``in_flight``: class x region x pool, the engine's requests unfinished at the end
        (admitted, or on their way to that pool). The blocks show the engine's counts as they
        are: when they do not add up, ``arrived`` differs from the sum of the rest."""
        lay = self.layout
        node_of_pool = np.asarray(lay.pool_node)
        every = slice(None)
        out = self._block(every, every, every, in_flight, None)
        out["requests"]["retried"] = _count(self.retried)
        if self.capacity_kpis is not None:
            out["capacity"] = self.capacity_kpis
        out["by_class"] = {
            name: self._block(i, every, every, in_flight, ("class", i))
            for i, name in enumerate(lay.class_names)
        }
        out["by_region"] = {
            rid: self._block(every, i, every, in_flight, ("region", i))
            for i, rid in enumerate(lay.region_ids)
        }
        out["by_node"] = {
            nid: self._block(
                every, every, np.flatnonzero(node_of_pool == i), in_flight, ("node", i)
            )
            for i, nid in enumerate(lay.node_ids)
        }
        out["by_pool"] = {
            name: self._block(
                every,
                every,
                np.array([j]),
                in_flight,
                ("pool", j) if self.pool_shares_node[j] else ("node", lay.pool_node[j]),
            )
            for j, name in enumerate(lay.pool_names)
        }
        return out

    def _requests(self, c: Any, r: Any, p: Any, in_flight: npt.NDArray[Any]) -> dict[str, Any]:
        """Where the requests of a block went, in whole numbers (see the module docstring).

        ``p`` a slice: a block of classes and regions, whose arrivals are known; else pool
        indices (a node or pool view), whose ``arrived`` is the sum of the rest. Expected
        (fractional) counts become whole numbers that add up to the rounded arrivals (each one
        its floor or the next number up, by largest remainders), so that the identity holds
        and no term goes negative by rounding; when the engine's exact counts do not add up to
        its arrivals, ``in_flight`` is its own count (rounded) and the identity visibly
        fails."""
        node_view = not isinstance(p, slice)
        dropped_pools = self.dropped[c, r][..., p] if node_view else self.dropped[c, r]
        ended = {
            "served": float(self.served[c, r][..., p].sum()),
            "dropped": float(dropped_pools.sum()),
            "abandoned": float(self.abandoned[c, r][..., p].sum()),
            "lost": float(self.lost[c, r][..., p].sum()),
        }
        flight = float(in_flight[c, r][..., p].sum())
        exact = {**ended, "in_flight": flight}
        total = sum(exact.values())
        if node_view:
            arrived = _count(total)
        else:
            arrived = _count(float(self.arrived[c, r].sum()))
            if abs(total - float(self.arrived[c, r].sum())) > max(1e-6, 1e-9 * abs(total)):
                # the engine lost or invented requests: show it
                counts = {k: _floor(v) for k, v in ended.items()}
                return {
                    "arrived": arrived,
                    **counts,
                    "in_flight": _count(total) - sum(counts.values()),
                }
        return {"arrived": arrived, **_whole(exact, arrived)}

    def _block(
        self,
        c: Any,
        r: Any,
        p: Any,
        in_flight: npt.NDArray[Any],
        hist_key: tuple[str, int] | None,
    ) -> dict[str, Any]:
        node_view = not isinstance(p, slice)
        dropped_pools = self.dropped[c, r][..., p] if node_view else self.dropped[c, r]
        ended = float(
            self.served[c, r][..., p].sum()
            + dropped_pools.sum()
            + self.abandoned[c, r][..., p].sum()
            + self.lost[c, r][..., p].sum()
        )
        met = float(self.met_slo[c, r][..., p].sum())
        block: dict[str, Any] = {
            "requests": self._requests(c, r, p, in_flight),
            "tokens": {
                "input": {
                    "demanded": None if node_view else _count(self.input_demanded[c, r].sum()),
                    "served": _count(self.input_served[c, r][..., p].sum()),
                },
                "output": {
                    "demanded": None if node_view else _count(self.output_demanded[c, r].sum()),
                    "served": _count(self.output_served[c, r][..., p].sum()),
                },
            },
            # served, dropped, abandoned or lost: a request never served misses its SLO
            "sla_attainment": met / ended if ended > 0 else None,
        }
        for m in METRICS:
            if hist_key is None:
                hist = LogHistogram.merged(self.hists[("class", m)])
            else:
                hist = self.hists[(hist_key[0], m)][hist_key[1]]
            block[m] = _stats(hist, m)
        pools = np.arange(self.busy.shape[0])[p] if node_view or hist_key is None else None
        if pools is not None:
            block["utilization"] = self._utilization(np.atleast_1d(pools))
        return block

    def _utilization(self, pools: npt.NDArray[np.intp]) -> dict[str, float | None]:
        first = int(self.warmup_s // self.interval_s)
        busy = self.busy[pools, first:].sum(axis=0)
        cap = self.capacity[pools, first:].sum(axis=0)
        if cap.sum() <= 0:
            return {"mean": None, "peak": None}
        with np.errstate(invalid="ignore", divide="ignore"):
            per_bin = np.where(cap > 0, busy / cap, np.nan)
        return {"mean": float(busy.sum() / cap.sum()), "peak": float(np.nanmax(per_bin))}


def series_frame(
    time_s: Any, entity_kind: str, entity_id: Any, metric: str, value: Any
) -> pd.DataFrame:
    """One block of a tidy time series: the columns every series table has, in their order
    (scalars are repeated over the block's rows)."""
    return pd.DataFrame(
        {
            "time_s": time_s,
            "entity_kind": entity_kind,
            "entity_id": entity_id,
            "metric": metric,
            "value": value,
        }
    )


def _count(value: Any) -> int:
    return round(float(value))


def _floor(value: float) -> int:
    """Whole requests in an expected count: its floor, forgiving float noise just below a whole
    number (2.9999999999996 is 3, never more than 0.001 below), so that exact counts stay
    exact."""
    whole = round(value)
    if abs(value - whole) <= min(1e-3, max(1e-9, abs(value) * 1e-12)):
        return whole
    return math.floor(value)


def _whole(exact: dict[str, float], target: int) -> dict[str, int]:
    """Whole numbers for expected counts that add up to ``target``: each term is its floor, and
    what is left goes one each to the terms with the largest remainders. A term that is zero
    stays zero (a run without outages never shows a lost request), and float drift beyond one
    per term (sums of 1e12 expected requests differ in the last digits) goes to the largest
    term, where it is smallest relative to the count."""
    floors = {k: _floor(v) for k, v in exact.items()}
    left = target - sum(floors.values())
    largest = max(exact, key=lambda k: exact[k])
    live = [k for k in exact if exact[k] > 0.5 and k != largest] + [largest]
    order = sorted(live, key=lambda k: -(exact[k] - floors[k]))
    for k in order[: max(left, 0)]:
        floors[k] += 1
    left -= min(max(left, 0), len(order))
    if left > 0 or (left < 0 and floors[largest] + left >= 0):
        floors[largest] += left
    return floors


def _labels(codes: npt.NDArray[Any], names: tuple[str, ...]) -> pd.Categorical[str]:
    return pd.Categorical.from_codes(codes.astype(np.int64), categories=pd.Index(names))


def _stats(hist: LogHistogram, metric: str) -> dict[str, float | None]:
    """Mean and percentiles after warm-up; for waits also the share that waited at all (more
    than the histogram's underflow, 1 microsecond)."""
    keys = ("mean", "p95") if metric == "ttft_s" else ("mean", "p50", "p95", "p99")
    out: dict[str, float | None] = dict.fromkeys(keys, None)
    out["count"] = hist.count
    if metric == "wait_s":
        out["share_waited"] = None
    if hist.count == 0:
        return out
    out["mean"] = hist.mean
    levels = [float(k[1:]) / 100 for k in keys[1:]]  # "p95" -> 0.95
    for key, value in zip(keys[1:], hist.quantiles(levels), strict=True):
        out[key] = float(value)
    if metric == "wait_s":
        out["share_waited"] = 1.0 - float(hist.counts[0]) / hist.count
    return out


@lru_cache(maxsize=8)
def _flow_mixes(layout: Layout) -> Mapping[str, npt.NDArray[np.intp]]:
    """The mixes of ``record_flow`` that depend on the layout alone, as partitions of the
    (class, pool) components in C-order (component ``c * P + p``): each class, node and pool
    takes its components whole. Built once per layout, not once per block; read-only."""
    n_c, n_p = len(layout.class_names), len(layout.pool_node)
    mixes = {
        "class": np.repeat(np.arange(n_c, dtype=np.intp), n_p),
        "node": np.tile(np.asarray(layout.pool_node, dtype=np.intp), n_c),
        "pool": np.tile(np.arange(n_p, dtype=np.intp), n_c),
    }
    for group_of in mixes.values():
        group_of.flags.writeable = False
    return MappingProxyType(mixes)
