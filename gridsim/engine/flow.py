"""Flow fidelity: the grid advanced one tick at a time on arrays (regions x classes x pools).

A SimPy process steps ticks of ``horizon.resolution``; scheduled events (outages, build-outs,
shocks, price changes, policy switches) are SimPy processes that change the arrays at their
instants. Each tick: demand comes in (requests per region and class), the policy's vectorised
allocation splits it over pools, pools serve work (slot-seconds) up to capacity oldest first
(FIFO by cohort), and what is left is carried over and aged; cohorts older than
``admission.max_wait`` are dropped.

Work that does not depend on the previous tick is done for a block of ticks at once: demand
rates, Erlang C waits and the latency histograms. Waiting inside a tick comes from Erlang C
(the Poisson pmf/cdf ratio, stable for thousands of slots) scaled by the Allen-Cunneen factor
``(ca^2 + cs^2) / 2`` for burstiness and service variability; carried-over requests wait their
age. Latency percentiles come from the same mergeable histograms as the request engine: per
block and (class, pool), the wait mixture (no wait, Erlang-C exponential tail, carried-over age)
is combined with quantile points of the class's service-time distribution on that pool.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import numpy.typing as npt
import simpy

from gridsim.demand import LengthSampler
from gridsim.engine.capacity import CapacityTracker
from gridsim.engine.queueing import erlang_c, wait_points
from gridsim.engine.request import RunOutput, _Progress, recorder_layout, run_without_gc
from gridsim.engine.routing import Routing
from gridsim.grid import Grid
from gridsim.metrics.recorder import Recorder
from gridsim.policies.base import FlowState
from gridsim.scenario.schema import Bursty
from gridsim.topology import Topology

FloatArray = npt.NDArray[np.float64]
SERVICE_POINTS = 32  # quantile points of each service-time distribution
BLOCK_S = 3600.0  # ticks are grouped in blocks (at least an hour) for the vectorised work
BLOCKS_PER_RUN = 1000  # ... and at most about this many blocks in a run
MAX_AGES = 120  # carried-over cohorts kept apart; older ones share the last cohort
NICE_INTERVALS_S = (60, 300, 600, 900, 1800, 3600, 7200, 21600, 86400, 7 * 86400)
MAX_SERIES_BINS = 20_000


class FlowEngine:
    def __init__(self, grid: Grid, seed: int, progress: bool = False) -> None:
        sc = grid.scenario
        self.grid = grid
        self.progress = progress
        self.env = simpy.Environment()
        self.dt = sc.horizon.resolution
        self.horizon_s = sc.horizon.duration
        self.n_ticks = math.ceil(self.horizon_s / self.dt - 1e-9)
        self.routing = Routing(grid)
        self.policy = self.routing.policy
        self.demand = grid.demand
        classes = sc.demand.classes
        pools = grid.pools
        n_r, n_c, n_p = len(grid.region_ids), len(classes), len(pools)
        self.shape = (n_r, n_c, n_p)
        self.recorder = Recorder(
            recorder_layout(grid),
            horizon_s=self.horizon_s,
            warmup_s=sc.horizon.warmup,
            interval_s=series_interval(sc.outputs.timeseries_interval, self.dt, self.horizon_s),
            fluid=True,
        )
        self.slots = np.array([p.slots for p in pools], dtype=np.float64)
        self.alive = self.slots > 0
        self.latency = grid.latency_s.copy()
        self.demand_factor = np.ones((n_r, n_c))
        self._service_templates(seed)
        max_wait = sc.admission.max_wait
        self.max_age = math.ceil(max_wait / self.dt) if max_wait is not None else None
        # Requests waiting, by age in ticks: as many ages as the maximum wait needs, else one.
        ages = min(self.max_age, MAX_AGES) if self.max_age is not None else 1
        self.backlog = np.zeros((ages, n_c, n_p))
        self.backlog_any = False
        self.max_conservation_gap = 0.0  # largest relative gap in arrived = served + dropped + ...
        self.max_load = 0.0  # largest busy / capacity of any pool in any tick
        ca2 = [c.arrival.dispersion if isinstance(c.arrival, Bursty) else 1.0 for c in classes]
        self.ca2 = np.asarray(ca2)
        self.capacity = CapacityTracker(sc, self.demand, self.dt)

    # --- set-up -------------------------------------------------------------------------------

    def _service_templates(self, seed: int) -> None:
        """Per (class, pool): mean slot time, its squared CV, and quantile points of its law."""
        grid = self.grid
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x5E2F,)))
        n_c, n_p = len(grid.classes), len(grid.pools)
        q = (np.arange(SERVICE_POINTS) + 0.5) / SERVICE_POINTS
        self.svc_mean = np.zeros((n_c, n_p))
        self.svc_cv2 = np.zeros((n_c, n_p))
        self.svc_points = np.zeros((n_c, n_p, SERVICE_POINTS))
        self.prefill_mean = np.zeros((n_c, n_p))
        prefill = np.array([p.prefill_s_per_prompt_token for p in grid.pools])
        tpot = np.array([p.tpot_s for p in grid.pools])
        for c, cls in enumerate(grid.classes):
            n = 32768
            if cls.kind == "job":
                assert cls.service is not None
                job = np.asarray(LengthSampler(cls.service, tokens=False).sample(rng, n), float)
                samples = np.repeat(job[:, None], n_p, axis=1)
                pre = np.zeros((n, n_p))
            else:
                inp, out = self._lengths(c, rng, n)
                pre = inp[:, None] * prefill[None, :]
                samples = pre + out[:, None] * tpot[None, :]
            # The mean is exact (from the class means, as the policies forecast it); samples
            # only give the shape: squared CV and quantile points, rescaled to that mean.
            exact = self._exact_mean(c, prefill, tpot)
            sample_mean = np.maximum(samples.mean(axis=0), 1e-12)
            self.svc_mean[c] = exact
            self.svc_cv2[c] = samples.var(axis=0) / sample_mean**2
            self.svc_points[c] = (np.quantile(samples, q, axis=0) * (exact / sample_mean)).T
            self.prefill_mean[c] = prefill * self.grid.mean_input_tokens[c]
        self.svc_mean = np.maximum(self.svc_mean, 1e-9)

    def _exact_mean(self, c: int, prefill: FloatArray, tpot: FloatArray) -> FloatArray:
        g = self.grid
        if g.classes[c].kind == "job":
            return np.full(len(g.pools), g.mean_job_s[c])
        out: FloatArray = g.mean_input_tokens[c] * prefill + g.mean_output_tokens[c] * tpot
        return out

    def _lengths(self, c: int, rng: np.random.Generator, n: int) -> tuple[FloatArray, FloatArray]:
        cls = self.grid.classes[c]
        if cls.input_tokens is not None and cls.output_tokens is not None:
            inp = np.asarray(LengthSampler(cls.input_tokens).sample(rng, n), float)
            out = np.asarray(LengthSampler(cls.output_tokens).sample(rng, n), float)
            return inp, out
        inputs, outputs = self.demand.trace_lengths(c)  # a replayed trace: its own lengths
        idx = rng.integers(0, len(inputs), n)
        return inputs[idx].astype(float), outputs[idx].astype(float)

    # --- running ------------------------------------------------------------------------------

    def run(self, events: list[tuple[float, Any]] | None = None) -> RunOutput:
        for t, action in sorted(events or [], key=lambda e: e[0]):
            self.env.process(self._at(t, action))
        self.env.process(self._ticks())
        run_without_gc(self.env, self.n_ticks * self.dt + self.dt / 2)
        return self._finish()

    def _at(self, t: float, action: Any) -> Generator[Any, Any, None]:
        # Changes take effect from the first tick that starts at or after their instant.
        tick = math.ceil(t / self.dt - 1e-9)
        yield self.env.timeout(tick * self.dt)
        action(t)

    def _ticks(self) -> Generator[Any, Any, None]:
        block = max(1, round(max(BLOCK_S, self.horizon_s / BLOCKS_PER_RUN) / self.dt))
        bar = _Progress(self.horizon_s) if self.progress else None
        k0 = 0
        while k0 < self.n_ticks:
            k1 = min(k0 + block, self.n_ticks)
            # Demand for the block at once; events that change it end the block early.
            next_event = self.env.peek()
            if math.isfinite(next_event):
                k1 = max(k0 + 1, min(k1, math.ceil(next_event / self.dt - 1e-9)))
            edges = np.minimum(np.arange(k0, k1 + 1) * self.dt, self.horizon_s)
            rates = self.demand.mean_rates(edges)  # (ticks, R, C) requests/s
            widths = np.diff(edges)
            arrivals = rates * self.demand_factor[None] * widths[:, None, None]
            self._count_arrivals(arrivals)
            self._block(k0, arrivals, widths)
            k0 = k1
            yield self.env.timeout(k1 * self.dt - self.env.now)
            if bar:
                bar.update(min(k1 * self.dt, self.horizon_s))
        if bar:
            bar.close()

    def _count_arrivals(self, arrivals: FloatArray) -> None:
        rec = self.recorder
        per_rc = arrivals.sum(axis=0).T  # (C, R)
        rec.arrived += per_rc
        rec.input_demanded += per_rc * self.demand.mean_input_tokens[:, None]
        rec.output_demanded += per_rc * self.demand.mean_output_tokens[:, None]

    def _block(self, k0: int, arrivals: FloatArray, widths: FloatArray) -> None:
        """Advance the ticks of one block; then record their latencies in one pass.

        While nothing is carried over and the policy's split does not depend on demand, the
        split is the same for every tick, so runs of ticks that fit in capacity are computed
        at once; the first tick that overflows, and every tick while a queue lasts, is
        stepped on its own.
        """
        acc = _Block(arrivals.shape[0], self.shape)
        steady = not getattr(self.policy, "demand_dependent", True)
        i = 0
        while i < acc.n_t:
            if steady and not self.backlog_any:
                i += self._steady(i, arrivals, widths, acc)
                if i >= acc.n_t:
                    break
            self._tick(i, arrivals, widths, acc)
            i += 1
        t0 = k0 * self.dt
        self._record_series(t0, widths, acc.busy, acc.queue_s)
        self.capacity.add(
            t0, widths, acc.work_rate, arrivals, acc.impacted, acc.impacted_national, self.slots_up
        )
        self.recorder.dropped[:, :, : self.shape[2]] += _spread(acc.dropped, acc.routed)
        self._record_latency(t0, acc, widths)
        self._check(acc, widths)

    def _check(self, acc: _Block, widths: FloatArray) -> None:
        """Invariants, kept as figures the tests read: requests are conserved (arrived =
        served + dropped + waiting) and no pool serves more than its slots in any tick."""
        rec = self.recorder
        arrived = float(rec.arrived.sum())
        accounted = float(rec.served.sum() + rec.dropped.sum() + self.backlog.sum())
        self.max_conservation_gap = max(
            self.max_conservation_gap, abs(arrived - accounted) / max(arrived, 1.0)
        )
        cap = self.slots_up[None, :] * widths[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            over = np.where(cap > 0, acc.busy / cap, np.where(acc.busy > 0, np.inf, 0.0))
        self.max_load = max(self.max_load, float(over.max(initial=0.0)))

    @property
    def slots_up(self) -> FloatArray:
        out: FloatArray = self.slots * self.alive
        return out

    def _state(self, demand_rps: FloatArray, dt: float) -> FlowState:
        queued = (self.backlog * self.svc_mean[None]).sum(axis=(0, 1)) / dt
        return FlowState(demand_rps, self.svc_mean, self.slots_up, queued, self.alive)

    def _steady(self, i: int, arrivals: FloatArray, widths: FloatArray, acc: _Block) -> int:
        """Ticks from ``i`` on with one split and room for all; returns how many."""
        shares = self.policy.allocate(self._state(arrivals[i] / widths[i], widths[i]))
        # per class, (ticks x regions) @ (regions x pools): plain matrix products
        new = np.stack([arrivals[i:, :, c] @ shares[:, c, :] for c in range(shares.shape[1])], 1)
        work = np.einsum("tcp,cp->tp", new, self.svc_mean)
        cap = self.slots_up[None, :] * widths[i:, None]
        over = np.flatnonzero((work > cap * (1 + 1e-12)).any(axis=1))
        k = int(over[0]) if over.size else work.shape[0]
        if k == 0:
            return 0
        j = i + k
        acc.routed += arrivals[i:j].sum(axis=0)[:, :, None] * shares
        acc.served_new[i:j] = new[:k]
        acc.lam[i:j] = new[:k].sum(axis=1) / widths[i:j, None]
        acc.work_rate[i:j] = work[:k] / widths[i:j, None]
        acc.busy[i:j] = work[:k]
        return k

    def _tick(self, i: int, arrivals: FloatArray, widths: FloatArray, acc: _Block) -> None:
        """One tick, in general: split, serve oldest first, carry over and age the rest."""
        dt = widths[i]
        svc = self.svc_mean
        shares = self.policy.allocate(self._state(arrivals[i] / dt, dt))
        flow = arrivals[i][:, :, None] * shares  # (R, C, P) requests
        acc.routed += flow
        new = flow.sum(axis=0)  # (C, P)
        new_work = (new * svc).sum(axis=0)
        cap = self.slots_up * dt
        acc.lam[i] = new.sum(axis=0) / dt
        acc.work_rate[i] = new_work / dt
        if not self.backlog_any and (new_work <= cap).all():
            acc.served_new[i] = new
            acc.busy[i] = new_work
            return
        acc.busy[i] = self._fifo(i, new, new_work, cap, acc, dt)
        # A pool is full when work is left over, measured before ageing can drop it (a tick as
        # long as the maximum wait would otherwise hide every queue).
        waiting = self.backlog.sum(axis=(0, 1))
        full = waiting > 0
        acc.queue_s[i] = waiting * dt
        total = flow.sum(axis=(1, 2))
        hit = flow[:, :, full].sum(axis=(1, 2))
        acc.impacted[i] = np.where(total > 0, hit / np.maximum(total, 1e-300), 0.0)
        acc.impacted_national[i] = hit.sum() / total.sum() if total.sum() > 0 else 0.0
        acc.dropped += self._age()
        self.backlog_any = bool(self.backlog.any())

    def _fifo(
        self, i: int, new: FloatArray, new_work: FloatArray, cap: FloatArray, acc: _Block, dt: float
    ) -> FloatArray:
        """Serve carried-over cohorts oldest first, then this tick's arrivals; carry the rest."""
        backlog = self.backlog  # (ages, C, P)
        cohort_work = np.einsum("acp,cp->ap", backlog, self.svc_mean)  # (ages, P)
        order = np.concatenate([cohort_work[::-1], new_work[None]])  # oldest first, then new
        before = np.cumsum(order, axis=0) - order
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(order > 0, np.clip((cap[None] - before) / order, 0.0, 1.0), 1.0)
        served = backlog * frac[-2::-1][:, None, :]  # cohorts back in age order
        acc.served_old += served.sum(axis=0)
        if self.max_age is None:
            # one carried cohort: its wait is the time to drain what was queued, FIFO
            with np.errstate(invalid="ignore", divide="ignore"):
                drain = np.where(cap > 0, cohort_work[0] / cap * dt, 0.0)
            acc.old_wait += served[0] * (drain + 0.5 * dt)[None, :]
        else:
            ages = np.arange(backlog.shape[0], dtype=np.float64)
            acc.old_wait += np.einsum("a,acp->cp", (ages + 0.5) * dt, served)
        acc.served_new[i] = new * frac[-1][None]
        self.backlog = backlog - served
        self.backlog[0] += new - acc.served_new[i]  # the unserved part of this tick waits
        return np.minimum(order.sum(axis=0), cap)

    def _age(self) -> FloatArray:
        """Move cohorts one tick older; drop those past the maximum wait. Returns drops (C, P)."""
        b = self.backlog
        if self.max_age is None:
            return np.zeros(b.shape[1:])  # one cohort, no limit: nothing ages out
        last = b[-1].copy()
        aged = np.empty_like(b)
        aged[1:] = b[:-1]
        aged[0] = 0.0
        dropped = np.zeros(b.shape[1:])
        if b.shape[0] >= self.max_age:
            dropped = last  # the oldest cohort has waited its maximum
        else:
            aged[-1] += last  # cohorts beyond MAX_AGES share the last one
        self.backlog = aged
        return dropped

    # --- changes at event instants -------------------------------------------------------------

    def fail_pool(self, p: int, t: float) -> None:
        """A pool goes down: what waits there is routed again (spread over the other pools
        that serve its class, by slots) or counted lost, as ``policy.on_failure`` says."""
        if not self.alive[p]:
            return
        self.alive[p] = False
        waiting = self.backlog[:, :, p].copy()  # (ages, C)
        self.backlog[:, :, p] = 0.0
        rec = self.recorder
        for c in range(waiting.shape[1]):
            amount = waiting[:, c]
            if not amount.any():
                continue
            others = self.grid.serves[c] & self.alive
            weights = self.slots * others
            if self.grid.scenario.policy.on_failure == "retry" and weights.sum() > 0:
                self.backlog[:, c, :] += amount[:, None] * (weights / weights.sum())[None, :]
                rec.retried += float(amount.sum())
            else:
                rec.lost += float(amount.sum())
                rec.dropped[c, :, p] += amount.sum() * self._region_split(c, p)
        self.backlog_any = bool(self.backlog.any())

    def restore_pool(self, p: int, t: float) -> None:
        self.alive[p] = self.slots[p] > 0

    def add_slots(self, p: int, n: int, t: float) -> None:
        self.slots[p] = max(0.0, self.slots[p] + n)
        if self.slots[p] > 0 and not self.alive[p] and n > 0 and self.grid.pools[p].slots == 0:
            self.alive[p] = True  # a pool built from nothing comes up
        if self.slots[p] == 0:
            self.alive[p] = False

    def set_topology(self, topology: Topology) -> None:
        self.latency = self.routing.reroute(topology).copy()
        self.policy = self.routing.policy

    def set_policy(self, name: str, params: dict[str, Any]) -> None:
        self.policy = self.routing.switch(name, params)

    def set_demand_factor(self, factor: FloatArray) -> None:
        self.demand_factor = factor

    def set_price(self, node_id: str, price_cny_per_kwh: float, t: float) -> None:
        self.recorder.prices.append((t, node_id, price_cny_per_kwh))

    def _region_split(self, c: int, p: int) -> FloatArray:
        served = self.recorder.served[c, :, p]
        total = served.sum()
        n_r = served.shape[0]
        return served / total if total > 0 else np.full(n_r, 1.0 / n_r)

    # --- recording ----------------------------------------------------------------------------

    def _record_series(
        self, t0: float, widths: FloatArray, busy: FloatArray, queued: FloatArray
    ) -> None:
        rec = self.recorder
        starts = t0 + np.concatenate([[0.0], np.cumsum(widths)[:-1]])
        bins = np.minimum((starts // rec.interval_s).astype(np.intp), rec.busy.shape[1] - 1)
        for table, values in ((rec.busy, busy), (rec.queued, queued)):
            np.add.at(table.T, bins, values)
        cap = self.slots * self.alive
        np.add.at(rec.capacity.T, bins, widths[:, None] * cap[None, :])

    def _record_latency(self, t0: float, acc: _Block, widths: FloatArray) -> None:
        """Erlang C for every tick and pool, then the block's latency mixtures into histograms."""
        rec = self.recorder
        lam, routed, served_new = acc.lam, acc.routed, acc.served_new
        served_old, old_wait = acc.served_old, acc.old_wait
        slots = np.maximum(self.slots, 1e-9)
        a = acc.work_rate  # offered load in slots (Erlang), (ticks, P)
        mu = np.where(lam > 0, lam / np.maximum(a, 1e-12), 0.0)  # service rate per slot
        # Demand is constant within each clock hour, so ticks mostly repeat the row before:
        # solve each run of equal rows once.
        changed = np.concatenate([[True], (a[1:] != a[:-1]).any(axis=1)])
        segment = np.cumsum(changed) - 1
        c_wait = erlang_c(slots[None, :], a[changed])[segment]
        with np.errstate(invalid="ignore", divide="ignore"):
            # mean wait of those who wait: 1 / (c mu - lambda); none when idle or saturated
            mean_cond = np.where((a < slots) & (lam > 0), 1.0 / (mu * (slots - a)), 0.0)
        # Allen-Cunneen: scale by (ca^2 + cs^2)/2, per class mix of the pool
        new_c = served_new.sum(axis=0)  # (C, P)
        share = new_c / np.maximum(new_c.sum(axis=0), 1e-12)
        cs2 = (share * self.svc_cv2).sum(axis=0)
        ca2 = (share * self.ca2[:, None]).sum(axis=0)
        mean_cond = mean_cond * (ca2 + cs2) / 2
        # per (class, pool): weights of the three wait components over the block
        w_new = served_new  # (ticks, C, P)
        w_zero = (w_new * (1.0 - c_wait)[:, None, :]).sum(axis=0)
        w_exp = (w_new * c_wait[:, None, :]).sum(axis=0)
        exp_mean = (w_new * (c_wait * mean_cond)[:, None, :]).sum(axis=0) / np.maximum(w_exp, 1e-12)
        old_mean = old_wait / np.maximum(served_old, 1e-12)
        served = w_zero + w_exp + served_old  # (C, P)
        # regional split: served in proportion to what each region routed
        with np.errstate(invalid="ignore", divide="ignore"):
            region_share = np.nan_to_num(routed / routed.sum(axis=0, keepdims=True))
        served_rcp = region_share * served[None]
        rec.record_flow(
            served=served_rcp,
            wait_points=wait_points(w_zero, w_exp, exp_mean, served_old, old_mean),
            service_points=self.svc_points,
            prefill_mean=self.prefill_mean,
            network_s=self.latency,
            keep=t0 >= rec.warmup_s,
            tokens=(self.demand.mean_input_tokens, self.demand.mean_output_tokens),
        )

    def _finish(self) -> RunOutput:
        rec = self.recorder
        in_flight = _spread_cr(self.backlog.sum(axis=0), rec.served)  # (C, R, P)
        rec.capacity_kpis = self.capacity.kpis(rec)
        rec.extra_series.append(self.capacity.series(rec.interval_s))
        summary = rec.summary(in_flight)
        return RunOutput(summary, rec.timeseries(), rec.requests(), rec.flows())


class _Block:
    """What a block of ticks accumulates for the recorder."""

    def __init__(self, n_t: int, shape: tuple[int, int, int]) -> None:
        n_r, n_c, n_p = shape
        self.n_t = n_t
        self.routed = np.zeros((n_r, n_c, n_p))  # requests sent, by region, class and pool
        self.served_new = np.zeros((n_t, n_c, n_p))  # served in the tick they arrived
        self.served_old = np.zeros((n_c, n_p))  # carried over, then served
        self.old_wait = np.zeros((n_c, n_p))  # their summed waits (s)
        self.lam = np.zeros((n_t, n_p))  # requests/s reaching each pool
        self.work_rate = np.zeros((n_t, n_p))  # slot-seconds/s of new work (Erlangs)
        self.busy = np.zeros((n_t, n_p))  # slot-seconds served
        self.queue_s = np.zeros((n_t, n_p))  # request-seconds waiting
        self.impacted = np.zeros((n_t, n_r))  # share of a region's demand meeting a full pool
        self.impacted_national = np.zeros(n_t)  # ... and of all demand
        self.dropped = np.zeros((n_c, n_p))


def series_interval(asked_s: float, tick_s: float, horizon_s: float) -> float:
    """The time-series step: as asked, but at least a tick and few enough bins for long runs."""
    floor = max(asked_s, tick_s, horizon_s / MAX_SERIES_BINS)
    return float(next((n for n in NICE_INTERVALS_S if n >= floor), floor))


def _spread(per_cp: FloatArray, routed: FloatArray) -> FloatArray:
    """A (C, P) quantity as (C, R, P), split over regions in proportion to what they routed."""
    total = routed.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        # where nothing was routed this block (e.g. old queue at a pool now avoided): evenly
        share = np.where(total > 0, routed / total, 1.0 / routed.shape[0])  # (R, C, P)
    return np.transpose(share * per_cp[None], (1, 0, 2))


def _spread_cr(per_cp: FloatArray, served: npt.NDArray[Any]) -> FloatArray:
    """(C, P) in flight at the end as (C, R, P), by each region's share of what was served."""
    total = served.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, served / total, 1.0 / served.shape[1])
    return share * per_cp[:, None, :]
