"""Flow fidelity: the grid advanced one tick at a time on arrays (regions x classes x pools).

A SimPy process steps ticks of ``horizon.resolution``; scheduled events (outages, build-outs,
shocks, price changes, policy switches) are SimPy processes that change the arrays at their
instants. Each tick, demand comes in (expected requests per region and class) and the policy's
vectorised allocation splits it over pools. Each pool is then in one of two regimes:

- **steady state**: a pool that can keep up, or whose admission rules bound its queue (a queue
  limit, a maximum wait, users' patience), is at the steady state of its queue for the tick's
  load (``queueing.stationary``: Erlang C; M/M/n+G for a maximum wait and patience; M/M/n/K
  for a queue limit). Each class's arrivals split into served, dropped and abandoned, and the
  served get the steady-state wait law. Nothing is carried to the next tick, so the answer does
  not depend on the tick: a planner's KPIs converge as the tick shrinks.
- **fluid overload**: a pool with nothing to bound its queue and more work than slots (or with
  work still queued from such a stretch) carries a backlog. Work in the queue grows or drains
  linearly within the tick; under FCFS an arrival's wait is the queued work ahead of it over
  the slots, fixed when it arrives (as in the request engine), so the tick's arrivals wait
  uniformly between the queue at its start and at its end. Impatient classes leave at their
  patience law's share of that wait.

A pool with later stations (a disaggregated pool's decode, ``gridsim.service``): the requests
admitted at its entry in a tick reach them in the same tick (the whole route is resolved at
admission, as a request's wait is), and each later station is at its steady state (Erlang C,
no admission rules) or in fluid overload like any pool. Their waits are added to the entry's
(independent stages: the law of the sum), and what is queued there is in flight at the entry.

Accounting is exact at every level: the backlog is kept per region, class and pool, served in
proportion within a pool (FIFO cannot tell the regions of one cohort apart), so for every
region, class, node and pool, arrived = served + dropped + abandoned + lost + in flight, with
no negative term. Requests are counted served, with their latency, when admitted; what is
still queued at the end is taken back out as in flight.

Work that does not depend on the previous tick is done for a stretch of ticks at once:
demand rates, the steady-state laws (once per distinct load: demand is constant within each
clock hour), and the latency histograms (per block of ticks, the block's wait points are
merged into equal-mass bands).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from gridsim.demand import LengthSampler
from gridsim.engine.base import EngineBase, Progress, RunOutput, recorder_layout
from gridsim.engine.capacity import CapacityTracker
from gridsim.engine.queueing import (
    WAIT_POINTS,
    Outcome,
    PatienceLaw,
    band_means,
    patience_law,
    stationary,
)
from gridsim.grid import Grid
from gridsim.metrics.recorder import Recorder
from gridsim.policies.base import FlowState
from gridsim.scenario.schema import Bursty, NodeOutage

FloatArray = npt.NDArray[np.float64]
SERVICE_POINTS = 32  # quantile points of each service-time distribution
BLOCK_S = 3600.0  # ticks are grouped in blocks (at least an hour) for the vectorised work
BLOCKS_PER_RUN = 1000  # ... and at most about this many blocks in a run
WAIT_BANDS = 8  # a block's waits per (class, pool): no wait, then this many equal-mass bands
# a tick's fluid waits are uniform between two values: the means of its equal-mass bands
_UNIFORM_POINTS = (np.arange(WAIT_POINTS - 1) + 0.5) / (WAIT_POINTS - 1)
NICE_INTERVALS_S = (60, 300, 600, 900, 1800, 3600, 7200, 21600, 86400, 7 * 86400)
MAX_SERIES_BINS = 20_000
# a steady stretch takes at most this many (law x region x class x pool) split cells at once
STRETCH_CELLS = 4_000_000
# below this chance of every slot being busy, the earlier priorities keep the decomposition's
# waits (``FlowEngine._nonpreemptive``)
FULL_POOL_MIN = 0.01


class FlowEngine(EngineBase):
    def __init__(self, grid: Grid, seed: int, progress: bool = False) -> None:
        super().__init__(grid, progress)
        sc = grid.scenario
        self.dt = sc.horizon.resolution
        self.n_ticks = math.ceil(self.horizon_s / self.dt - 1e-9)
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
            latency_statistics=sc.outputs.latency_statistics,
        )
        self.slots = np.array([p.slots for p in pools], dtype=np.float64)
        self.alive = self.slots > 0
        self.latency = grid.latency_s.copy()
        self.demand_factor = np.ones((n_r, n_c))
        # Stations after their pool's entry (a disaggregated pool's decode): the requests
        # admitted at the entry in a tick reach them in that tick, and queue there (FCFS, no
        # admission rules: they were admitted at the entry).
        self.entry_of = np.asarray(grid.service.entry, dtype=np.intp)
        self.later = np.flatnonzero(self.entry_of != np.arange(n_p))
        self._service_templates(seed)
        # Admission rules, the same at both fidelities.
        self.max_wait_s = sc.admission.max_wait
        self.queue_limit = sc.admission.queue_limit
        # One law object per distinct patience: the M/M/n+G law works once per distinct law
        # (a market's engine classes share their base class's patience by the dozen)
        laws: dict[str, PatienceLaw | None] = {}
        self.patience = []
        for c in classes:
            spec = getattr(c, "patience", None)
            key = repr(spec)
            if key not in laws:
                laws[key] = patience_law(spec)
            self.patience.append(laws[key])
        self.impatient = np.array([law is not None for law in self.patience])
        # Priorities (0 first, non-preemptive): the classes of each priority, in order, and the
        # pool entries that serve classes of two or more priorities ("mixed"). Only mixed
        # entries take the priority laws; every other station is computed exactly as without
        # them. A disaggregated pool's later stations stay FCFS, as in the request engine:
        # priority orders admission into the pool, not the route after it.
        priority = np.array([int(getattr(c, "priority", 0)) for c in classes], dtype=np.intp)
        self.tiers = [np.flatnonzero(priority == v) for v in np.unique(priority)]
        n_prio = np.array(
            [np.unique(priority[grid.serves[:, p]]).size for p in range(n_p)], dtype=np.intp
        )
        self.mixed = n_prio >= 2
        self.mixed[self.later] = False
        self.starved_ticks = 0  # fluid ticks in which a priority got no slot at some pool
        # Nothing bounds a queue: a pool with more work than slots is in fluid overload.
        self.unbounded = (
            self.max_wait_s is None and self.queue_limit is None and not self.impatient.any()
        )
        # Requests queued in fluid overload, by region, class and pool.
        self.backlog = np.zeros((n_r, n_c, n_p))
        self.backlog_any = False
        self.queued_work = np.zeros(n_p)  # its work by pool, slot-seconds
        self.backlog_since: float | None = None  # when the current queued stretch began
        # requests/s admitted at each pool's entry in the last tick, by region and class: by
        # Little's law, times a station's hold, what is in service there when it fails (kept
        # only when a node can fail: it costs a copy per stepped tick)
        self.admitted_rps = np.zeros((n_r, n_c, n_p))
        self.outages = any(isinstance(e, NodeOutage) for e in sc.events)
        self.overloaded = np.zeros(n_p, dtype=bool)  # pools that have been in fluid overload
        self.max_conservation_gap = 0.0  # largest relative gap in arrived = served + ...
        self.min_term = 0.0  # most negative accounting term seen (0 if none)
        self.max_load = 0.0  # largest busy / capacity of any pool in any tick
        ca2 = [c.arrival.dispersion if isinstance(c.arrival, Bursty) else 1.0 for c in classes]
        self.ca2 = np.asarray(ca2)
        self.capacity = CapacityTracker(grid, self.svc_mean, self.dt)
        self.coarse_ticks = 0  # fluid ticks longer than twice the shortest SLO they serve
        budgets = np.array([min(c.slo.ttft or math.inf, c.slo.e2e or math.inf) for c in classes])
        # per pool, the shortest SLO budget (s) of the classes it may serve (inf: none)
        self.shortest_slo_s = np.where(grid.serves, budgets[:, None], np.inf).min(axis=0)

    # --- set-up -------------------------------------------------------------------------------

    def _service_templates(self, seed: int) -> None:
        """From the grid's service table: per (class, station) the mean hold, its squared CV
        (the steady-state laws); per (class, entry pool) quantile points of the time through
        all its stages and the mean time to the first token (the latency)."""
        grid = self.grid
        table = grid.service
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0x5E2F,)))
        n_c, n_p = len(grid.classes), len(grid.pools)
        q = (np.arange(SERVICE_POINTS) + 0.5) / SERVICE_POINTS
        self.svc_mean = table.station_holds(n_p)  # exact, from the class means
        self.svc_cv2 = np.zeros((n_c, n_p))
        self.svc_points = np.zeros((n_c, n_p, SERVICE_POINTS))
        total_exact, self.prefill_mean = table.arrays(n_p)
        for c, cls in enumerate(grid.classes):
            n = 32768
            if cls.kind == "job":
                assert cls.service is not None
                job = np.asarray(LengthSampler(cls.service, tokens=False).sample(rng, n), float)
                inp = out = np.zeros(n)
            else:
                inp, out = self._lengths(c, rng, n)
                job = np.zeros(n)
            for p, route in enumerate(table.routes[c]):
                if not route:
                    continue
                total = np.zeros(n)
                for stage in route:
                    hold = stage.hold_s(inp, out, job)
                    total += hold
                    if stage.station is not None:
                        m = max(float(hold.mean()), 1e-12)
                        self.svc_cv2[c, stage.station] = float(hold.var()) / m**2
                # The mean is exact (as the policies forecast it); samples give the shape.
                scale = total_exact[c, p] / max(float(total.mean()), 1e-12)
                self.svc_points[c, p] = np.quantile(total, q) * scale
        self.svc_mean = np.maximum(self.svc_mean, 1e-9)

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

    def _until(self) -> float:
        return self.n_ticks * self.dt + self.dt / 2

    def _event_time(self, t: float) -> float:
        # Changes take effect from the first tick that starts at or after their instant.
        return math.ceil(t / self.dt - 1e-9) * self.dt

    def _main(self) -> Generator[Any, Any, None]:
        """The ticks, a block at a time."""
        block = max(1, round(max(BLOCK_S, self.horizon_s / BLOCKS_PER_RUN) / self.dt))
        bar = Progress(self.horizon_s) if self.progress else None
        warmup_s = self.recorder.warmup_s
        # The tick holding the end of the warm-up is a block of its own, kept in part.
        w_tick = math.floor(warmup_s / self.dt + 1e-9)
        k0 = 0
        while k0 < self.n_ticks:
            k1 = min(k0 + block, self.n_ticks)
            if k0 < w_tick:
                k1 = min(k1, w_tick)
            elif k0 == w_tick:
                k1 = k0 + 1
            # Demand for the block at once; events that change it end the block early.
            next_event = self.env.peek()
            if next_event <= self.env.now:  # events at this very instant act before its tick
                yield self.env.timeout(0)
                continue
            if math.isfinite(next_event):
                k1 = max(k0 + 1, min(k1, math.ceil(next_event / self.dt - 1e-9)))
            edges = np.minimum(np.arange(k0, k1 + 1) * self.dt, self.horizon_s)
            rates = self.demand.mean_rates(edges)  # (ticks, R, C) requests/s
            widths = np.diff(edges)
            arrivals = rates * self.demand_factor[None] * widths[:, None, None]
            self._count_arrivals(arrivals)
            kept = np.clip((edges[1:] - warmup_s) / np.maximum(widths, 1e-300), 0.0, 1.0)
            keep = float((kept * widths).sum() / max(widths.sum(), 1e-300))
            self._block(k0, arrivals, widths, keep)
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

    def _block(self, k0: int, arrivals: FloatArray, widths: FloatArray, keep: float) -> None:
        """Advance the ticks of one block; then record their latencies in one pass.

        While nothing is queued in fluid overload and the policy's split does not depend on
        demand, every pool is at its steady state and the split is the same for every tick:
        such stretches are computed at once (one steady-state law per distinct load). A tick in
        which some pool has no steady state, and every tick while a backlog lasts, is stepped
        on its own.
        """
        acc = _Block(arrivals.shape[0], self.shape)
        acc.k0_offset = k0
        static = not getattr(self.policy, "demand_dependent", True)
        i = 0
        while i < acc.n_t:
            if not self.backlog_any:
                # A stretch ends where demand changes (a new clock hour) or some pool has no
                # steady state; only the latter needs the per-tick step.
                k = self._steady(i, arrivals, widths, acc, static)
                if k:
                    i += k
                    continue
            self._tick(i, arrivals, widths, acc)
            i += 1
        t0 = k0 * self.dt
        self._record_series(t0, widths, acc.busy, acc.queue_s)
        self.capacity.add(
            t0, widths, acc.work_rate, acc.lam, arrivals, acc.region_flow, self.slots_up
        )
        rec = self.recorder
        n_p = self.shape[2]
        rec.dropped[:, :, :n_p] += acc.dropped.transpose(1, 0, 2)
        rec.abandoned += acc.abandoned.transpose(1, 0, 2)
        # demand with no pool to go to (every candidate down): dropped, at no pool
        rec.dropped[:, :, n_p] += acc.unrouted.T
        self._record_latency(acc, keep)
        self._check(acc, widths)

    # --- the two regimes ----------------------------------------------------------------------

    def _state(self, demand_rps: FloatArray, dt: float) -> FlowState:
        return FlowState(
            demand_rps, self.svc_mean, self.slots_up, self.queued_work / dt, self.alive
        )

    def _laws(
        self,
        new: FloatArray,
        dt: FloatArray,
        pools: npt.NDArray[np.intp] | None = None,
        admission: bool = True,
    ) -> tuple[Outcome, FloatArray, FloatArray]:
        """Steady-state laws for the pools of several ticks: ``new`` (T, C, P) requests (P: the
        ``pools`` given, else all), ``dt`` (T,) seconds. Returns the outcome over T x P pools,
        arrivals/s and Erlangs. ``admission=False``: no admission rules or patience (later
        stations: their requests were admitted at the entry)."""
        n_t, n_c, n_p = new.shape
        svc = self.svc_mean if pools is None else self.svc_mean[:, pools]
        cv2 = self.svc_cv2 if pools is None else self.svc_cv2[:, pools]
        up = self.slots_up if pools is None else self.slots_up[pools]
        arriving = new.sum(axis=1)  # (T, P)
        lam = arriving / dt[:, None]
        work = np.einsum("tcp,cp->tp", new, svc)
        load = work / dt[:, None]
        share = np.divide(
            new, arriving[:, None, :], out=np.zeros_like(new), where=arriving[:, None, :] > 0
        )
        weighted = new * svc[None]
        by_work = np.divide(
            weighted, work[:, None, :], out=np.zeros_like(new), where=work[:, None, :] > 0
        )
        cs2 = (share * cv2[None]).sum(axis=1)
        ca2 = (share * self.ca2[None, :, None]).sum(axis=1)
        kappa = np.maximum((ca2 + cs2) / 2, 1e-9)
        servers = np.broadcast_to(up[None, :], (n_t, n_p))
        rules = _Rules(
            self.patience if admission else [None] * n_c,
            self.max_wait_s if admission else None,
            self.queue_limit if admission else None,
        )
        mixed = self.mixed if pools is None else self.mixed[pools]
        if not mixed.any():  # one priority per station: exactly the FCFS laws
            outcome = _fcfs_law(servers, lam, load, share, kappa, by_work, rules)
            return outcome, lam, load
        parts: list[tuple[npt.NDArray[np.intp], Outcome]] = []
        plain = np.flatnonzero(~mixed)
        if plain.size:
            law = _fcfs_law(
                servers[:, plain],
                lam[:, plain],
                load[:, plain],
                share[:, :, plain],
                kappa[:, plain],
                by_work[:, :, plain],
                rules,
            )
            parts.append((plain, law))
        m = np.flatnonzero(mixed)
        law = self._priority_law(
            new[:, :, m], dt, svc[:, m], cv2[:, m], servers[:, m], lam[:, m], load[:, m], rules
        )
        parts.append((m, law))
        return _merge(parts, n_t, n_p), lam, load

    def _priority_law(
        self,
        new: FloatArray,
        dt: FloatArray,
        svc: FloatArray,
        cv2: FloatArray,
        servers: FloatArray,
        lam: FloatArray,
        load: FloatArray,
        rules: _Rules,
    ) -> Outcome:
        """Steady state of stations serving several priorities (0 first, non-preemptive):
        ``new`` (T, C, M) requests in ticks of ``dt`` (T,) at M stations; returns the outcome
        over T x M rows, like ``stationary``.

        - Nothing bounds the queue (no maximum wait, queue limit or patience): the pool's
          number in system is that of FCFS (the order of service does not change a
          work-conserving pool's occupancy), so P(wait) is Erlang C at the total load, for
          every priority. Priority only reorders the queue: each priority's wait given it
          waits is Cobham's non-preemptive mean for M/M/c with equal service rates,
          1 / (c mu (1 - s_{k-1})(1 - s_k)) with s_k the load of priorities 0..k over the
          slots (times the pool's Allen-Cunneen factor, as FCFS has it). This is the FCFS law
          with each priority's waits scaled, ``_cobham``: exact for M/M/c, the request
          engine's own law there, and it keeps the total work in queue of FCFS (the
          conservation law). A decomposition (each priority alone on the slots the earlier
          ones leave) would instead put priority 0 on an almost empty pool: it ignores the
          slots that lower priorities hold when a priority-0 request arrives (non-preemptive),
          and underestimates every wait below capacity.
        - Admission rules (maximum wait, patience, queue limit): a priority decomposition.
          Priorities in order 0, 1, ...: priority k sees the pool's slots less the Erlangs
          served of the priorities before it, n_k = n - sum_{j<k} busy_j, and its own
          arrivals, through the same ``stationary`` law with the rules. In overload this is
          the fluid limit of non-preemptive priority: the first priorities take what they
          need, the last ones get what is left and are shed (dropped or abandoned) first.
          A second pass takes from priority k the slots the later priorities hold that turn
          over more slowly than its own work (slow batch under chat: an arrival finding every
          slot busy waits for one of them to free). Then ``_nonpreemptive``: in a pool that
          later priorities keep full, an earlier priority's arrival still waits for a
          departure, which the decomposition does not see (paid chat above free chat at rho
          1.3 abandoned 0.1 % at flow fidelity, 0.6 % at request fidelity); the priorities
          above the last get the pool's chance of being full and Cobham's waits for a slot,
          and the later ones are recomputed on the slots that leaves them.
        """
        n_t, n_c, n_m = new.shape
        unbounded = all(law is None for law in rules.patience)
        if rules.max_wait_s is None and rules.queue_limit is None and unbounded:
            share = _shares(new, new.sum(axis=1))
            work = new * svc[None]
            by_work = _shares(work, work.sum(axis=1))
            kappa = self._kappa(share, cv2)
            fcfs = _fcfs_law(servers, lam, load, share, kappa, by_work, rules)
            return self._cobham(work, servers, load, fcfs)
        n_k = len(self.tiers)
        cut = np.zeros((n_k, n_t, n_m))  # slots of each priority's share it cannot count on
        acc = _Tiers(n_k, n_t, n_m, n_c)
        used = np.full((n_k, n_t, n_m), np.nan)  # the slots each priority's law last had
        for attempt in range(2):
            if attempt == 1:
                # Second pass. Later priorities hold ``held`` slots, freed at ``freed`` a
                # second. Non-preemptive: a priority-k request finding every slot busy waits
                # for one to free, and slow later work (batch beside chat) frees them slowly:
                # as slots of its own they count slot_s[k] x freed; the rest is cut.
                held = np.cumsum(acc.busy[::-1], axis=0)[::-1]
                freed = np.cumsum(acc.rate[::-1], axis=0)[::-1]
                pad = np.zeros((1, n_t, n_m))
                held = np.concatenate([held[1:], pad])
                freed = np.concatenate([freed[1:], pad])
                cut = np.maximum(held - acc.slot_s * freed, 0.0)
                # per tick (a law must not depend on the ticks computed beside it): a tick
                # whose cuts are all negligible keeps its first pass
                needed = (cut > 1e-6 * servers[None]).any(axis=(0, 2))
                if not needed.any():
                    break
                cut[:, ~needed] = 0.0
            busy_before = np.zeros((n_t, n_m))  # Erlangs served of the priorities so far
            for k, tier in enumerate(self.tiers):
                free = servers - busy_before
                # what the earlier priorities fill to rounding is full: no slot left
                free = np.where(free > 1e-9 * servers, free, 0.0) - cut[k]
                # a law depends only on its station's row: the second pass recomputes only
                # the rows whose slots changed (nan never equals: every row the first time)
                rows = free != used[k]
                if rows.any():
                    self._tier_law(acc, k, tier, new, dt, svc, cv2, free, rules, rows)
                    used[k] = free
                busy_before = busy_before + acc.busy[k]
        fixed = self._nonpreemptive(acc, new, dt, svc, cv2, servers, rules)
        if fixed.any():
            # The corrected priorities hold a little less (their leavers): the later ones
            # get those slots (only the rows whose slots changed are recomputed).
            busy_before = np.zeros((n_t, n_m))
            for k, tier in enumerate(self.tiers):
                free = servers - busy_before
                free = np.where(free > 1e-9 * servers, free, 0.0) - cut[k]
                rows = (free != used[k]) & ~fixed[k]
                if rows.any():
                    self._tier_law(acc, k, tier, new, dt, svc, cv2, free, rules, rows)
                    used[k] = np.where(rows, free, used[k])
                busy_before = busy_before + acc.busy[k]
        return acc.outcome()

    def _tier_law(
        self,
        acc: _Tiers,
        k: int,
        tier: npt.NDArray[np.intp],
        new: FloatArray,
        dt: FloatArray,
        svc: FloatArray,
        cv2: FloatArray,
        free: FloatArray,
        rules: _Rules,
        rows: npt.NDArray[np.bool_],
    ) -> None:
        """Priority ``k`` (its classes ``tier``) alone on ``free`` slots (T, M), under the
        rules, into ``acc``, for the (T, M) rows ``rows`` (the others keep what ``acc`` has).

        Only the rows where the priority has arrivals and only its own classes go through
        ``stationary`` (a station serves few of the classes): the rest keep ``_Tiers``'
        defaults, all served at once, as ``stationary`` leaves a station with no arrivals.
        ``stationary`` takes the priority's classes only, all of them, so it sees the same
        patience laws (its quadrature's range and kinks) whichever have arrivals."""
        n_m = new.shape[2]
        new_k = new[:, tier, :]  # (T, K, M)
        arriving = new_k.sum(axis=1)  # (T, M)
        acc.busy[k][rows] = 0.0
        acc.rate[k][rows] = 0.0
        acc.slot_s[k][rows] = 0.0
        acc.p_wait[k][rows] = 0.0
        acc.ok[k][rows] = True
        sel = np.flatnonzero(rows & (arriving > 0))  # rows t-major
        if not sel.size:
            return
        t_i, m_i = np.divmod(sel, n_m)
        n_s = new_k[t_i, :, m_i]  # (S, K)
        svc_s = svc[tier][:, m_i].T
        arr_s = arriving[t_i, m_i]
        work_s = n_s * svc_s
        work_tot = work_s.sum(axis=1)
        load_s = work_tot / dt[t_i]
        lam_s = arr_s / dt[t_i]
        share = n_s / arr_s[:, None]
        by_work = np.divide(
            work_s, work_tot[:, None], out=np.zeros_like(work_s), where=work_tot[:, None] > 0
        )
        # Allen-Cunneen's (ca^2 + cs^2) / 2, as ``_kappa``
        cs2 = (share * cv2[tier][:, m_i].T).sum(axis=1)
        ca2 = (share * self.ca2[tier][None, :]).sum(axis=1)
        kappa = np.maximum((ca2 + cs2) / 2, 1e-9)
        laws = [rules.patience[c] for c in tier]
        free_s = free[t_i, m_i]
        out = stationary(
            free_s,
            lam_s,
            load_s,
            share,
            laws,
            rules.max_wait_s,
            rules.queue_limit,
            kappa,
            by_work,
        )
        o_dropped = out.dropped.copy()
        o_abandoned = out.abandoned.copy()
        o_mean = out.mean_wait_all_s.copy()
        ok = out.stable.copy()
        # No slot left for this priority: ``stationary`` turns its requests away. Without a
        # maximum wait or a queue limit that is right only for the impatient, who leave when
        # their patience runs out (abandoned); a patient class's queue grows without bound
        # (no steady state).
        shut = free_s <= 0
        if shut.any() and rules.max_wait_s is None and rules.queue_limit is None:
            patient = np.array([law is None for law in laws])
            if patient.any():
                ok &= ~(shut & (n_s[:, patient].sum(axis=1) > 0))
            gone = shut[:, None] & ~patient[None, :]
            o_abandoned[gone] = o_dropped[gone]
            o_dropped[gone] = 0.0
            mean_s = np.array([law.mean_s if law is not None else 0.0 for law in laws])
            o_mean = np.where(gone, mean_s[None, :], o_mean)
        # the (S, K) cells of acc's (T, M, C), as flat indices (faster than three index arrays)
        at = ((sel * acc.served.shape[2])[:, None] + tier[None, :]).reshape(-1)
        acc.served.reshape(-1)[at] = out.served.reshape(-1)
        acc.dropped.reshape(-1)[at] = o_dropped.reshape(-1)
        acc.abandoned.reshape(-1)[at] = o_abandoned.reshape(-1)
        acc.values.reshape(-1, WAIT_POINTS)[at] = out.wait_values.reshape(-1, WAIT_POINTS)
        acc.weights.reshape(-1, WAIT_POINTS)[at] = out.wait_weights.reshape(-1, WAIT_POINTS)
        acc.mean_all.reshape(-1)[at] = o_mean.reshape(-1)
        acc.ok[k][t_i, m_i] = ok
        served = np.nan_to_num(out.served)
        acc.busy[k][t_i, m_i] = load_s * (by_work * served).sum(axis=1)
        acc.rate[k][t_i, m_i] = lam_s * (share * served).sum(axis=1)
        acc.slot_s[k][t_i, m_i] = load_s / lam_s
        # an arrival that waits found every slot it may take busy: turned away at once (no
        # slot left) or served after a wait (weights beyond the first point), or leaving
        no_wait = np.nan_to_num(out.wait_weights[:, :, 0])
        # (clipped: the shares' sum is 1 only to rounding, and a weight scaled by a
        # negative -1e-16 is one the histograms refuse)
        acc.p_wait[k][t_i, m_i] = np.clip(1.0 - (share * no_wait).sum(axis=1), 0.0, 1.0)

    def _nonpreemptive(
        self,
        acc: _Tiers,
        new: FloatArray,
        dt: FloatArray,
        svc: FloatArray,
        cv2: FloatArray,
        servers: FloatArray,
        rules: _Rules,
    ) -> npt.NDArray[np.bool_]:
        """Non-preemptive waits of the priorities above the last one, into ``acc`` (the
        decomposition's results); returns the (K, T, M) rows corrected.

        The decomposition puts priority k on the slots the earlier priorities leave and so
        ignores the slots the later ones hold. Non-preemptive, they hold them until they
        finish: when the later priorities keep the pool full, an arrival of priority k finds
        every slot busy as often as an arrival of the last priority does, and waits for one
        to free. So, for each priority k above the last one present at a station:

        - P(wait) = P(every slot busy): the last priority's chance of waiting (its own law,
          on the slots the others leave; 1 when they leave none);
        - given a wait, the queue of priorities 0..k is served by the pool's departures,
          D = n / (mean slot time of what it serves) a second. Cobham's non-preemptive form
          gives its mean, 1 / (D (1 - s_{k-1})(1 - s_k)), s_k the arrivals/s of priorities
          0..k over D (arrivals, not work: each departure takes one request, whatever its
          length; with one slot time for all, as in Cobham, the two are the same). The
          request engine agrees with arrival shares (slow batch ahead of chat: with work
          shares batch's wait would be 14 % too long);
        - the wait's law given a wait is that of an M/M/1+G queue whose arrivals are
          priority k's, with its patience and the maximum wait, served at
          D_k = lambda_k + D (1 - s_{k-1})(1 - s_k): without patience an exponential with
          Cobham's mean; with it, priority k's own leavers thin its queue (``stationary``
          with one slot, its wait scaled by the pool's Allen-Cunneen factor as ``_cobham``
          scales Cobham's). Its waits then give the abandonment (the patience law averaged
          over them) and the drops (the mass beyond the maximum wait).

        A station is corrected for priority k only where this raises k's chance of waiting
        above its decomposition law's and priorities 0..k alone fit (s_k < 1): a priority
        that fills the pool itself is at the fluid limit the decomposition gets right. A
        queue limit is not applied to the corrected priorities: the request engine pushes
        out the last priority's requests to make room for theirs."""
        n_t, _, n_m = new.shape
        n_k = len(self.tiers)
        fixed = np.zeros((n_k, n_t, n_m), dtype=bool)
        if n_k < 2:
            return fixed
        lam_k = np.stack([new[:, tier].sum(axis=1) for tier in self.tiers]) / dt[None, :, None]
        present = lam_k > 0
        # the last priority with arrivals at each station and P(every slot busy) it sees
        last = n_k - 1 - np.argmax(present[::-1], axis=0)
        p_full = np.take_along_axis(acc.p_wait, last[None], axis=0)[0]
        busy = acc.busy.sum(axis=0)
        stable = acc.ok.all(axis=0) & (busy > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            # slots freed a second by a pool that is full, n / (mean slot time of the served)
            freed = np.where(stable, servers * acc.rate.sum(axis=0) / busy, 0.0)
            s = np.where(freed > 0, np.cumsum(lam_k, axis=0) / freed, np.inf)
        for k, tier in enumerate(self.tiers[:-1]):
            s_before = s[k - 1] if k else np.zeros((n_t, n_m))
            rows = stable & present[k] & (k < last) & (s[k] < 1) & (p_full > acc.p_wait[k])
            # a pool full less than 1 % of the time: waits of 1 % x a fraction of a slot
            # time change nothing a planner reads, and each row costs an M/M/1+G law
            rows &= p_full >= FULL_POOL_MIN
            if rows.any():
                # (only the rows' rates are read: elsewhere s may be infinite)
                with np.errstate(invalid="ignore"):
                    gap = np.where(rows, freed * (1 - s_before) * (1 - s[k]), 0.0)
                rate = lam_k[k] + gap
                fixed[k] = self._wait_for_slot(
                    acc, k, tier, new, dt, svc, cv2, rate, p_full, rules, rows
                )
        return fixed

    def _wait_for_slot(
        self,
        acc: _Tiers,
        k: int,
        tier: npt.NDArray[np.intp],
        new: FloatArray,
        dt: FloatArray,
        svc: FloatArray,
        cv2: FloatArray,
        rate: FloatArray,
        p_full: FloatArray,
        rules: _Rules,
        rows: npt.NDArray[np.bool_],
    ) -> npt.NDArray[np.bool_]:
        """Priority ``k`` at the (T, M) ``rows``: it waits with probability ``p_full``, and
        then as in an M/M/1+G queue of its arrivals served at ``rate`` a second (see
        ``_nonpreemptive``); into ``acc``. Returns the rows it changed."""
        n_m = new.shape[2]
        sel = np.flatnonzero(rows)
        t_i, m_i = np.divmod(sel, n_m)
        n_s = new[:, tier, :][t_i, :, m_i]  # (S, K)
        arr_s = n_s.sum(axis=1)
        lam_s = arr_s / dt[t_i]
        work_s = n_s * svc[tier][:, m_i].T
        work_tot = work_s.sum(axis=1)
        share = n_s / arr_s[:, None]
        by_work = np.divide(
            work_s, work_tot[:, None], out=np.zeros_like(work_s), where=work_tot[:, None] > 0
        )
        # the pool's Allen-Cunneen factor, as ``_cobham`` scales Cobham's waits
        every = new[t_i, :, m_i]  # (S, C)
        every = every / every.sum(axis=1, keepdims=True)
        cs2 = (every * cv2[:, m_i].T).sum(axis=1)
        kappa = np.maximum((every @ self.ca2 + cs2) / 2, 1e-9)
        laws = [rules.patience[c] for c in tier]
        one = stationary(
            np.ones(sel.size),
            lam_s,
            lam_s / rate[t_i, m_i],
            share,
            laws,
            rules.max_wait_s,
            None,
            kappa,
            by_work,
        )
        # the M/M/1+G law given a wait, times P(every slot busy)
        no_wait = one.wait_weights[:, :, 0]
        waits = 1.0 - no_wait  # (S, K)
        good = one.stable & (waits > 1e-12).all(axis=1)
        p = p_full[t_i, m_i][:, None]
        scale = np.divide(p, waits, out=np.zeros_like(waits), where=good[:, None])
        served = 1.0 - p + (one.served - no_wait) * scale
        weights = one.wait_weights * scale[:, :, None]
        weights[:, :, 0] = 1.0 - p
        g = good
        at = (t_i[g, None], m_i[g, None], tier[None, :])
        acc.served[at] = served[g]
        acc.dropped[at] = (one.dropped * scale)[g]
        acc.abandoned[at] = (one.abandoned * scale)[g]
        acc.values[at] = one.wait_values[g]
        acc.weights[at] = weights[g]
        acc.mean_all[at] = (one.mean_wait_all_s * scale)[g]
        load_s = work_tot / dt[t_i]
        acc.busy[k][t_i[g], m_i[g]] = (load_s * (by_work * served).sum(axis=1))[g]
        acc.rate[k][t_i[g], m_i[g]] = (lam_s * (share * served).sum(axis=1))[g]
        acc.p_wait[k][t_i[g], m_i[g]] = p[g, 0]
        out = np.zeros_like(rows)
        out[t_i[g], m_i[g]] = True
        return out

    def _kappa(self, share: FloatArray, cv2: FloatArray) -> FloatArray:
        """Allen-Cunneen's (ca^2 + cs^2) / 2 per (tick, station) from the classes' shares of
        the arrivals ``share`` (T, C, M) and their service's squared CV ``cv2`` (C, M)."""
        cs2 = (share * cv2[None]).sum(axis=1)
        ca2 = (share * self.ca2[None, :, None]).sum(axis=1)
        out: FloatArray = np.maximum((ca2 + cs2) / 2, 1e-9)
        return out

    def _cobham(
        self, work: FloatArray, servers: FloatArray, load: FloatArray, fcfs: Outcome
    ) -> Outcome:
        """The FCFS law ``fcfs`` with each priority's waits scaled to Cobham's means: given a
        wait, FCFS waits 1 / (c mu (1 - s)) on average and priority k waits
        1 / (c mu (1 - s_{k-1})(1 - s_k)); ``work`` (T, C, M) the classes' offered work."""
        n_t, n_c, n_m = work.shape
        with np.errstate(invalid="ignore", divide="ignore"):
            s_total = np.where(servers > 0, load / servers, np.inf)
            total = work.sum(axis=1)
            ok = (s_total < 1) & (total > 0)
            factor = np.ones((n_t, n_m, n_c))
            before = np.zeros((n_t, n_m))
            for tier in self.tiers:
                s_k = before + np.where(ok, work[:, tier].sum(axis=1) / total * s_total, 0.0)
                f = (1 - s_total) / ((1 - before) * (1 - s_k))
                factor[:, :, tier] = np.where(ok, f, 1.0)[:, :, None]
                before = s_k
        flat = factor.reshape(n_t * n_m, n_c)
        return Outcome(
            fcfs.stable,
            fcfs.served,
            fcfs.dropped,
            fcfs.abandoned,
            fcfs.wait_values * flat[:, :, None],
            fcfs.wait_weights,
            fcfs.mean_wait_all_s * flat,
        )

    def _steady(
        self, i: int, arrivals: FloatArray, widths: FloatArray, acc: _Block, static: bool
    ) -> int:
        """Ticks from ``i`` on in which every pool is at its steady state; returns how many.

        Nothing is queued, so each tick's split and laws depend on its demand alone, which is
        constant within a clock hour: the rest of the block is taken at once, one split and
        one law per distinct row of demand (the policy's ``allocate_cells`` or
        ``allocate_many`` and ``_laws`` over all of them, which costs far less than one call
        per hour), and kept up to the first tick in which some pool has no steady state. The
        work is on the (region, class, pool) cells the splits use, not on dense arrays."""
        n_r, n_c, n_p = self.shape
        arr = arrivals[i:]
        flat = arr.reshape(arr.shape[0], -1)
        changed = np.concatenate([[True], ~np.atleast_1d(_same_rows(flat[1:], flat[:-1]))])
        firsts = np.flatnonzero(changed)
        # at most STRETCH_CELLS split cells at once (a long block of a large grid)
        n_u = min(firsts.size, max(1, STRETCH_CELLS // max(n_r * n_c * n_p, 1)))
        end = int(firsts[n_u]) if n_u < firsts.size else arr.shape[0]
        arr, firsts = arr[:end], firsts[:n_u]
        row = np.cumsum(changed[:end]) - 1  # each tick's law
        dt_u = widths[i : i + end][firsts]
        state = self._state(arr[0] / dt_u[0], float(dt_u[0]))  # nothing queued: dt is moot
        # The split on the (region, class, pool) cells it sends anything to: a class goes to
        # few of the pools, and dense (ticks, R, C, P) arrays would cost more than the laws.
        if static:
            cells, share_cells = _dense_cells(self.policy.allocate(state)[None])
            law_shares = np.zeros(n_u, dtype=np.intp)
        else:
            rates = arr[firsts] / dt_u[:, None, None]
            allocate_cells = _cells_method(self.policy)
            if allocate_cells is not None:  # the cells the policy may use
                cells, share_cells = allocate_cells(state, rates)
                used = (share_cells != 0).any(axis=0)
                cells, share_cells = cells[used], share_cells[:, used]
            else:
                allocate_many = getattr(self.policy, "allocate_many", None)
                if allocate_many is not None:
                    shares_u = allocate_many(state, rates)
                else:  # a policy written to the protocol alone
                    shares_u = np.stack(
                        [self.policy.allocate(replace(state, demand_rps=d)) for d in rates]
                    )
                cells, share_cells = _dense_cells(shares_u)
            law_shares = np.arange(n_u)
        r_nz, c_nz, p_nz = np.unravel_index(cells, (n_r, n_c, n_p))
        at = (r_nz, c_nz, p_nz)  # distinct cells: plain fancy-index adds
        flow_t = arr[:, r_nz, c_nz] * share_cells[law_shares[row]]  # requests per tick and cell
        # each law's requests per class and pool in a tick (its first): the cells' summed
        # over regions
        cp = c_nz * n_p + p_nz
        new_u = _cell_sums(flow_t[firsts], cp, n_c * n_p).reshape(n_u, n_c, n_p)
        outcome, lam_u, load_u = self._laws(new_u, dt_u)
        stable_law = np.asarray(outcome.stable.reshape(n_u, n_p).all(axis=1))
        later = self.later
        if later.size:
            # what each law admits at a staged pool's entry reaches its later stations
            ent = self.entry_of[later]
            kept = np.nan_to_num(outcome.served.reshape(n_u, n_p, n_c)[:, ent, :])
            new_l = new_u[:, :, ent] * kept.transpose(0, 2, 1)  # (U, C, L)
            out_l, lam_l, load_l = self._laws(new_l, dt_u, later, False)
            stable_law &= np.asarray(out_l.stable.reshape(n_u, later.size).all(axis=1))
        stable = stable_law[row]
        bad = np.flatnonzero(~stable)
        k = int(bad[0]) if bad.size else end
        if k == 0:
            return 0
        j = i + k
        law_t = row[:k]
        flow_t = flow_t[:k]
        shape_u = (n_u, n_p, n_c)
        # The ticks of a law are consecutive: each law's requests per cell over its ticks
        # (n_l laws met in the k ticks), then each outcome share cell by cell.
        n_l = int(law_t[-1]) + 1
        f_law = _law_sums(flow_t, firsts[:n_l], k)  # (n_l, N)
        acc.routed[at] += f_law.sum(axis=0)
        served_c = outcome.served.reshape(shape_u)[:n_l, p_nz, c_nz]  # (n_l, N)
        acc.admitted[at] += (f_law * served_c).sum(axis=0)
        acc.dropped[at] += (f_law * outcome.dropped.reshape(shape_u)[:n_l, p_nz, c_nz]).sum(axis=0)
        acc.abandoned[at] += (f_law * outcome.abandoned.reshape(shape_u)[:n_l, p_nz, c_nz]).sum(
            axis=0
        )
        if self.outages:
            self.admitted_rps = np.zeros(self.shape)
            self.admitted_rps[at] = flow_t[k - 1] * served_c[n_l - 1] / widths[j - 1]
        # demand sent nowhere (every candidate pool down): the share no cell of its region
        # and class took
        left = 1.0 - _cell_sums(share_cells, r_nz * n_c + c_nz, n_r * n_c)  # (U or 1, R x C)
        left = np.where(left > 1e-9, left, 0.0).reshape(-1, n_r, n_c)
        if left.any():
            arr_law = _law_sums(arr, firsts[:n_l], k)  # (n_l, R, C)
            acc.unrouted += (arr_law * left[law_shares[:n_l]]).sum(axis=0)
        acc.lam[i:j] = lam_u[law_t]
        acc.work_rate[i:j] = load_u[law_t]
        # Per tick and pool: slot-seconds served, request-seconds queued, requests from each
        # region. The ticks of a law have the same demand (to the 1e-9 that makes them one
        # law): each is its law's first tick scaled by its own total (the accounting above
        # adds each tick's own requests). Cell by cell once a law, not once a tick.
        f_first = flow_t[firsts[:n_l]]  # (n_l, N)
        total = arr[:k].reshape(k, -1).sum(axis=1)
        first_total = total[firsts[:n_l]][law_t]
        scale = np.divide(total, first_total, out=np.zeros(k), where=first_total > 0)[:, None]
        busy_c = served_c * self.svc_mean[c_nz, p_nz]  # (n_l, N) slot-seconds a request
        acc.busy[i:j] = _cell_sums(f_first * busy_c, p_nz, n_p)[law_t] * scale
        mean_c = outcome.mean_wait_all_s.reshape(shape_u)[:n_l, p_nz, c_nz]
        acc.queue_s[i:j] = _cell_sums(f_first * mean_c, p_nz, n_p)[law_t] * scale
        region_u = _cell_sums(f_first, r_nz * n_p + p_nz, n_r * n_p)  # (n_l, R x P)
        acc.region_flow[i:j] = (region_u[law_t] * scale).reshape(k, n_r, n_p)
        # waits: each distinct law once, weighted by the requests that met it; all the laws'
        # points in one part (C, P, laws, J), a view of the values (the block keeps only the
        # pairs that met a wait)
        per_law = _cell_sums(f_law, cp, n_c * n_p).reshape(n_l, n_c, n_p)
        vals = outcome.wait_values.reshape(n_u, n_p, n_c, WAIT_POINTS)[:n_l]
        wts = outcome.wait_weights.reshape(n_u, n_p, n_c, WAIT_POINTS)[:n_l]
        wts = wts * per_law.transpose(0, 2, 1)[:, :, :, None]
        acc.waits(vals.transpose(2, 1, 0, 3), wts.transpose(2, 1, 0, 3))
        if later.size:
            self._steady_later(i, k, row, new_l, out_l, lam_l, load_l, acc)
        return k

    def _steady_later(
        self,
        i: int,
        k: int,
        row: npt.NDArray[np.intp],
        new_l: FloatArray,
        out: Outcome,
        lam: FloatArray,
        load: FloatArray,
        acc: _Block,
    ) -> None:
        """Later stations over ``k`` steady ticks from ``i``: ``new_l`` (U, C, L) requests per
        distinct law reaching them, ``out`` their laws (no admission rules)."""
        later = self.later
        n_u, n_c, n_l = new_l.shape
        r = row[:k]
        acc.lam[i : i + k, later] = lam[r]
        acc.work_rate[i : i + k, later] = load[r]
        acc.busy[i : i + k, later] = np.einsum("tcl,cl->tl", new_l[r], self.svc_mean[:, later])
        mean_all = out.mean_wait_all_s.reshape(n_u, n_l, n_c)
        acc.queue_s[i : i + k, later] = np.einsum("tcl,tlc->tl", new_l[r], mean_all[r])
        counts = np.bincount(r, minlength=n_u)  # ticks per law
        vals = out.wait_values.reshape(n_u, n_l, n_c, WAIT_POINTS)
        wts = out.wait_weights.reshape(n_u, n_l, n_c, WAIT_POINTS)
        n_p = self.shape[2]
        for u in np.flatnonzero(counts):
            v = np.zeros((n_c, n_p, WAIT_POINTS))
            w = np.zeros((n_c, n_p, WAIT_POINTS))
            v[:, later] = vals[u].transpose(1, 0, 2)
            w[:, later] = wts[u].transpose(1, 0, 2) * (counts[u] * new_l[u])[:, :, None]
            acc.waits(v, w)

    def _tick(self, i: int, arrivals: FloatArray, widths: FloatArray, acc: _Block) -> None:
        """One tick in general: steady-state pools and fluid pools side by side."""
        dt = float(widths[i])
        tracked = self.outages or self.later.size > 0  # this tick's admissions are read
        admitted_before = acc.admitted.copy() if tracked else acc.admitted
        shares = self.policy.allocate(self._state(arrivals[i] / dt, dt))
        flow = arrivals[i][:, :, None] * shares  # (R, C, P) requests
        acc.routed += flow
        acc.unrouted += arrivals[i] * _unrouted(shares)
        new = flow.sum(axis=0)  # (C, P)
        arriving = new.sum(axis=0)
        load = (new * self.svc_mean).sum(axis=0) / dt
        acc.lam[i] = arriving / dt
        acc.work_rate[i] = load
        up = self.slots_up
        full = (load >= up * (1 - 1e-12)) & (load > 0)
        acc.region_flow[i] = flow.sum(axis=1)
        # Queued work, or (nothing bounding the queues) more work than slots: fluid. The rest
        # with arrivals: the steady state of its queue, where one exists.
        fluid = self.queued_work > 0
        if self.unbounded:
            fluid |= full & (up > 0)
        steady = np.flatnonzero(~fluid & (arriving > 0))
        if steady.size:
            outcome, _, _ = self._laws(new[None][:, :, steady], np.array([dt]), steady)
            if not outcome.stable.all():  # patience too short to bound a queue on its own
                fluid[steady[~outcome.stable]] = True
                keep = outcome.stable
                steady = steady[keep]
                outcome = _subset(outcome, keep)
            self._steady_pools(i, steady, outcome, flow, new, acc)
        if fluid.any():
            self._fluid_by_priority(np.flatnonzero(fluid), flow, dt, i, acc)
        if tracked:
            admitted = acc.admitted - admitted_before
            if self.outages:
                self.admitted_rps = admitted / dt
            if self.later.size:
                self._tick_later(i, admitted, dt, acc)
        self.backlog_any = bool(self.queued_work.any())
        t = (i + acc.k0_offset) * self.dt
        if self.backlog_any and self.backlog_since is None:
            self.backlog_since = t
        elif not self.backlog_any:
            self.backlog_since = None

    def _tick_later(self, i: int, admitted: FloatArray, dt: float, acc: _Block) -> None:
        """One tick at the later stations: the requests admitted at their pools' entries this
        tick (``admitted``, R x C x P) reach them, each at its steady state or in fluid
        overload (no admission rules, no patience: admitted requests are served)."""
        later = self.later
        flow = np.zeros_like(admitted)
        flow[:, :, later] = admitted[:, :, self.entry_of[later]]
        new = flow.sum(axis=0)  # (C, P)
        arriving = new[:, later].sum(axis=0)
        load = (new[:, later] * self.svc_mean[:, later]).sum(axis=0) / dt
        acc.lam[i, later] = arriving / dt
        acc.work_rate[i, later] = load
        up = self.slots_up[later]
        fluid = (self.queued_work[later] > 0) | ((load >= up * (1 - 1e-12)) & (load > 0))
        steady = later[~fluid & (arriving > 0)]
        if steady.size:
            outcome, _, _ = self._laws(new[None][:, :, steady], np.array([dt]), steady, False)
            if not outcome.stable.all():
                fluid[np.isin(later, steady[~outcome.stable])] = True
                steady = steady[outcome.stable]
                outcome = _subset(outcome, outcome.stable)
            self._steady_pools(i, steady, outcome, flow, new, acc, entry=False)
        if fluid.any():
            self._fluid_by_priority(later[fluid], flow, dt, i, acc, entry=False)

    def _steady_pools(
        self,
        i: int,
        pools: npt.NDArray[np.intp],
        outcome: Outcome,
        flow: FloatArray,
        new: FloatArray,
        acc: _Block,
        entry: bool = True,
    ) -> None:
        """Pools at their steady state this tick: arrivals split into served, dropped and
        abandoned; the served wait as the law says. Later stations (``entry=False``) count no
        requests: their waits join their pool's."""
        f = flow[:, :, pools]  # (R, C, k)
        served = outcome.served.T  # (C, k)
        if entry:
            acc.admitted[:, :, pools] += f * served[None]
            acc.dropped[:, :, pools] += f * outcome.dropped.T[None]
            if self.impatient.any():
                acc.abandoned[:, :, pools] += f * outcome.abandoned.T[None]
        n_k = new[:, pools]
        acc.busy[i, pools] = (n_k * served * self.svc_mean[:, pools]).sum(axis=0)
        acc.queue_s[i, pools] = (n_k * outcome.mean_wait_all_s.T).sum(axis=0)
        acc.tick_waits(
            i,
            pools,
            outcome.wait_values.transpose(1, 0, 2),
            outcome.wait_weights.transpose(1, 0, 2) * n_k[:, :, None],
        )

    def _fluid_by_priority(
        self,
        pools: npt.NDArray[np.intp],
        flow: FloatArray,
        dt: float,
        i: int,
        acc: _Block,
        entry: bool = True,
    ) -> None:
        """Pools in fluid overload: those serving one priority FCFS (``_fluid``, unchanged),
        the others by priority (``_fluid_priority``)."""
        mixed = self.mixed[pools]
        if not mixed.any():
            self._fluid(pools, flow, dt, i, acc, entry)
            return
        if not mixed.all():
            self._fluid(pools[~mixed], flow, dt, i, acc, entry)
        self._fluid_priority(pools[mixed], flow, dt, i, acc, entry)

    def _fluid_priority(
        self,
        pools: npt.NDArray[np.intp],
        flow: FloatArray,
        dt: float,
        i: int,
        acc: _Block,
        entry: bool = True,
    ) -> None:
        """Pools in fluid overload serving several priorities (0 first, non-preemptive).

        The tick's slot-seconds go to the priorities in order: priority k has what the earlier
        ones leave, a_k = n - (their served work) / dt slots on average over the tick. Its own
        queued work W_k grows or drains linearly in the tick at that rate and its arrival at s
        waits W_k(s) / a_k, fixed on arrival as in ``_fluid`` (the earlier priorities' work,
        queued and arriving, is already taken out of a_k; the later ones' never delays it).
        Impatient classes leave at their patience law's share of their priority's middle wait.
        Within a priority the backlog is served in proportion, as in ``_fluid``. A priority
        left no slot (a_k = 0) is starved: its requests stay queued, their waits are recorded
        as if it had every slot (a lower bound), and ``warnings`` counts such ticks."""
        svc = self.svc_mean[:, pools]  # (C, F)
        n = self.slots_up[pools]
        flows = flow[:, :, pools]  # (R, C, F), a copy
        backlog = self.backlog[:, :, pools]  # a copy, written back at the end
        self.overloaded[pools] = True
        cap = n * dt  # slot-seconds left for the next priority
        queued = np.zeros(pools.size)
        busy = np.zeros(pools.size)
        queue_s = np.zeros(pools.size)
        starved_any = False
        for tier in self.tiers:
            f = flows[:, tier]  # (R, K, F)
            new = f.sum(axis=0)  # (K, F)
            svc_k = svc[tier]
            w0 = np.einsum("rkf,kf->f", backlog[:, tier], svc_k)
            if not new.any() and not w0.any():
                continue
            avail = cap / dt
            starved = avail <= 1e-9 * n
            starved_any |= bool((starved & ((new.sum(axis=0) > 0) | (w0 > 0))).any())
            rate_n = np.where(starved, n, avail)  # a starved priority's waits: a lower bound
            if entry and self.impatient[tier].any():
                w1_all = np.maximum(w0 + (new * svc_k).sum(axis=0) - cap, 0.0)
                mid_wait = np.divide(
                    w0 + w1_all, 2 * avail, out=np.full_like(n, np.inf), where=avail > 0
                )
                leave = np.zeros(new.shape)
                for j, c in enumerate(tier):
                    law = self.patience[c]
                    if law is not None:
                        leave[j] = law.cdf(mid_wait)
                gone = f * leave[None]
                acc.abandoned[:, tier[:, None], pools] += gone
                f = f - gone
                new = f.sum(axis=0)
            if entry:
                acc.admitted[:, tier[:, None], pools] += f
            work = (new * svc_k).sum(axis=0)
            total = w0 + work
            done = np.minimum(total, cap)
            w1 = total - done
            cap = cap - done
            left = np.divide(w1, total, out=np.zeros_like(w1), where=total > 0)
            backlog[:, tier] = (backlog[:, tier] + f) * left[None, None, :]
            queued += w1
            busy += done
            # Waits of this priority's admitted, as in ``_fluid`` at its own rate.
            rate = work / dt - avail
            draining = rate < 0
            s_lin = np.where(draining, np.minimum(w0 / np.where(draining, -rate, 1.0), dt), dt)
            w_end_work = np.maximum(w0 + rate * s_lin, 0.0)
            w_start = np.divide(w0, rate_n, out=np.zeros_like(n), where=rate_n > 0)
            w_end = np.divide(w_end_work, rate_n, out=np.zeros_like(n), where=rate_n > 0)
            lin = s_lin / dt
            values = w_start[:, None] + (w_end - w_start)[:, None] * _UNIFORM_POINTS[None, :]
            acc.fluid_waits_of(i, pools, tier, values, lin, new)
            arriving = new.sum(axis=0)
            mix_svc = np.divide(work, arriving, out=svc_k.mean(axis=0), where=arriving > 0)
            mean_work = 0.5 * (w0 + w_end_work) * lin
            queue_s += mean_work / np.maximum(mix_svc, 1e-12) * dt
        self.backlog[:, :, pools] = backlog
        self.queued_work[pools] = queued
        acc.busy[i, pools] = busy
        acc.queue_s[i, pools] = queue_s
        self.starved_ticks += starved_any
        if dt > 2 * float(self.shortest_slo_s[pools].min(initial=np.inf)):
            self.coarse_ticks += 1

    def _fluid(
        self,
        pools: npt.NDArray[np.intp],
        flow: FloatArray,
        dt: float,
        i: int,
        acc: _Block,
        entry: bool = True,
    ) -> None:
        """Pools in fluid overload: the queue's work W grows (or drains) linearly in the tick;
        an arrival at s waits W(s) / slots, fixed on arrival (FCFS). Later stations
        (``entry=False``): nobody leaves and nothing is counted admitted again."""
        every = pools.size == self.shape[2]
        at: Any = slice(None) if every else pools  # plain views when every pool is fluid
        svc = self.svc_mean[:, at]  # (C, F)
        n = self.slots_up[at]
        w0 = self.queued_work[at].copy()  # a view when every pool is fluid
        f = flow[:, :, at]  # (R, C, F)
        new = f.sum(axis=0)  # (C, F)
        self.overloaded[at] = True
        if entry and self.impatient.any():
            # Impatient classes leave at their patience law's share of the tick's middle wait.
            w1_all = np.maximum(w0 + (new * svc).sum(axis=0) - n * dt, 0.0)
            mid_wait = np.divide(w0 + w1_all, 2 * n, out=np.full_like(n, np.inf), where=n > 0)
            leave = np.zeros(new.shape)
            for c, law in enumerate(self.patience):
                if law is not None:
                    leave[c] = law.cdf(mid_wait)
            gone = f * leave[None]
            acc.abandoned[:, :, at] += gone
            f = f - gone
            new = f.sum(axis=0)
        if entry:
            acc.admitted[:, :, at] += f
        work = (new * svc).sum(axis=0)
        total = w0 + work
        w1 = np.maximum(total - n * dt, 0.0)
        left = np.divide(w1, total, out=np.zeros_like(w1), where=total > 0)
        backlog = self.backlog[:, :, at]
        backlog += f
        backlog *= left[None, None, :]
        if not every:
            self.backlog[:, :, at] = backlog
        self.queued_work[at] = w1
        acc.busy[i, at] = total - w1  # slot-seconds served this tick
        # Waits of this tick's admitted: linear in arrival time from w0/n to where the work
        # reaches zero (if it does within the tick), zero after.
        rate = work / dt - n  # dW/ds while the queue lasts
        draining = rate < 0
        s_lin = np.where(draining, np.minimum(w0 / np.where(draining, -rate, 1.0), dt), dt)
        w_start = np.divide(w0, n, out=np.zeros_like(n), where=n > 0)
        w_end = np.divide(np.maximum(w0 + rate * s_lin, 0.0), n, out=np.zeros_like(n), where=n > 0)
        lin = s_lin / dt
        values = w_start[:, None] + (w_end - w_start)[:, None] * _UNIFORM_POINTS[None, :]
        acc.fluid_waits(i, at, values, lin, new)
        # request-seconds waiting: the mean queue (work / mean slot time) over the tick
        arriving = new.sum(axis=0)
        mix_svc = np.divide(work, arriving, out=svc.mean(axis=0), where=arriving > 0)
        mean_work = 0.5 * (w0 + np.maximum(w0 + rate * s_lin, 0.0)) * lin
        acc.queue_s[i, at] = mean_work / np.maximum(mix_svc, 1e-12) * dt
        if dt > 2 * float(self.shortest_slo_s[at].min(initial=np.inf)):
            self.coarse_ticks += 1

    # --- checks -------------------------------------------------------------------------------

    def _check(self, acc: _Block, widths: FloatArray) -> None:
        """Invariants, kept as figures the tests read: for every region, class and pool,
        arrived = served + dropped + abandoned + lost + in flight with no negative term, and
        no pool serves more than its slots in any tick."""
        rec = self.recorder
        backlog = self._entry_backlog()
        arrived = rec.arrived.sum(axis=1)  # (C,) ... per class and region below
        served = rec.served - backlog.transpose(1, 0, 2)  # (C, R, P) served so far
        terms = (served, rec.dropped, rec.abandoned, np.asarray(rec.lost), backlog)
        self.min_term = min(self.min_term, *(float(np.min(t, initial=0.0)) for t in terms))
        outcome = (
            served.sum(axis=2)
            + rec.dropped.sum(axis=2)
            + rec.abandoned.sum(axis=2)
            + np.asarray(rec.lost).reshape(served.shape).sum(axis=2)
            + backlog.sum(axis=2).T
        )  # (C, R)
        gap = np.abs(rec.arrived - outcome).max(initial=0.0) / max(float(arrived.sum()), 1.0)
        self.max_conservation_gap = max(self.max_conservation_gap, float(gap))
        cap = self.slots_up[None, :] * widths[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            over = np.where(cap > 0, acc.busy / cap, np.where(acc.busy > 0, np.inf, 0.0))
        self.max_load = max(self.max_load, float(over.max(initial=0.0)))

    def _entry_backlog(self) -> FloatArray:
        """The backlog (R, C, P) with what waits at later stations counted at their pool's
        entry, where its requests were admitted."""
        if not self.later.size:
            return self.backlog
        out = self.backlog.copy()
        out[:, :, self.later] = 0.0
        np.add.at(
            out.transpose(2, 0, 1),
            self.entry_of[self.later],
            self.backlog[:, :, self.later].transpose(2, 0, 1),
        )
        return out

    @property
    def slots_up(self) -> FloatArray:
        out: FloatArray = self.slots * self.alive
        return out

    # --- changes at event instants -------------------------------------------------------------

    def fail_pool(self, p: int, t: float) -> None:
        """A pool goes down: what waits there and what is in service there is routed again
        (spread over the other pools that serve its class, by slots) or counted lost, as
        ``policy.on_failure`` says. In service: by Little's law, the last tick's admissions
        at its pool times the station's hold, at most its slots and what its pool has served
        (the request engine loses the requests it holds the same way)."""
        if not self.alive[p]:
            return
        entry = int(self.entry_of[p])  # where they were admitted and are counted
        in_service = self._in_service(p, entry)
        self.alive[p] = False
        waiting = self.backlog[:, :, p] + in_service  # (R, C)
        if not waiting.any():
            return
        self.backlog[:, :, p] = 0.0
        self._unadmit(waiting, entry)
        rec = self.recorder
        retry = self.grid.scenario.policy.on_failure == "retry"
        for c in range(waiting.shape[1]):
            amount = waiting[:, c]
            if not amount.any():
                continue
            weights = self.slots * (self.grid.serves[c] & self.alive)
            if retry and weights.sum() > 0:
                moved = amount[:, None] * (weights / weights.sum())[None, :]  # (R, P)
                self.backlog[:, c, :] += moved
                rec.served[c] += moved  # admitted there now (their wait was recorded at p)
                rec.retried += float(amount.sum())
            else:
                rec.lost[c, :, entry] += amount
        self.queued_work = np.einsum("rcp,cp->p", self.backlog, self.svc_mean)
        self.backlog_any = bool(self.queued_work.any())

    def _in_service(self, p: int, entry: int) -> FloatArray:
        """(R, C) requests holding station ``p``'s slots now (see ``fail_pool``)."""
        if self.slots_up[p] <= 0:
            return np.zeros(self.shape[:2])
        holding = self.admitted_rps[:, :, entry] * self.svc_mean[:, p][None, :]
        total = float(holding.sum())
        if total > self.slots_up[p]:  # in overload every slot is busy
            holding *= self.slots_up[p] / total
        # never more than the pool has counted served and not still queued
        rec = self.recorder
        served = rec.served[:, :, entry].T - self._entry_backlog()[:, :, entry]
        out: FloatArray = np.clip(np.minimum(holding, served), 0.0, None)
        return out

    def _unadmit(self, amount_rc: FloatArray, p: int) -> None:
        """Take requests counted served at pool ``p`` back out (they were still queued)."""
        rec = self.recorder
        amount = amount_rc.T  # (C, R)
        before = rec.served[:, :, p].copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            keep = np.where(before > 0, 1 - amount / before, 0.0)
        rec.served[:, :, p] -= amount
        rec.met_slo[:, :, p] *= keep
        rec.input_served[:, :, p] -= amount * self.demand.mean_input_tokens[:, None]
        rec.output_served[:, :, p] -= amount * self.demand.mean_output_tokens[:, None]

    def restore_pool(self, p: int, t: float) -> None:
        self.alive[p] = self.slots[p] > 0

    def add_slots(self, p: int, n: int, t: float) -> None:
        self.slots[p] = max(0.0, self.slots[p] + n)
        if self.slots[p] > 0 and not self.alive[p] and n > 0 and self.grid.pools[p].slots == 0:
            self.alive[p] = True  # a pool built from nothing comes up
        if self.slots[p] == 0:
            self.alive[p] = False

    def _use_latency(self, latency_s: FloatArray) -> None:
        self.latency = latency_s.copy()

    def set_demand_factor(self, factor: FloatArray) -> None:
        self.demand_factor = factor

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

    def _record_latency(self, acc: _Block, keep: float) -> None:
        """The block's admitted requests with their waits into the counters and histograms."""
        values, weights = acc.wait_law()
        first_waits = None
        if self.later.size:
            values, weights, first_waits = self._through_stations(values, weights)
        self.recorder.record_flow(
            served=acc.admitted,
            wait_points=(values, weights),
            service_points=self.svc_points,
            prefill_mean=self.prefill_mean,
            network_s=self.latency,
            keep=keep,
            tokens=(self.demand.mean_input_tokens, self.demand.mean_output_tokens),
            first_token_waits=first_waits,
        )

    def _through_stations(
        self, values: FloatArray, weights: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Each staged pool's wait law with its later stations' waits added (independent
        stages: the law of the sum, reduced again to equal-mass bands); later stations keep
        none of their own (their requests are counted at the entry). Also, per point, the
        part of the wait before the first token: the entry's (the first token leaves when
        prefill ends), the band mean of that part among the points of each band."""
        out: list[tuple[int, FloatArray, FloatArray, FloatArray]] = []
        n_c, n_p, n_j = values.shape
        for p in np.unique(self.entry_of[self.later]):
            v, w = values[:, p], weights[:, p]  # (C, J)
            u = v  # the entry's part of each point
            for q in self.later[self.entry_of[self.later] == p]:
                total = weights[:, q].sum(axis=1, keepdims=True)
                share = np.divide(
                    weights[:, q], total, out=np.zeros_like(weights[:, q]), where=total > 0
                )
                share[:, 0] += total[:, 0] <= 0  # nothing passed: no wait
                j_q = values.shape[2]
                u = np.repeat(u, j_q, axis=1)
                v = (v[:, :, None] + values[:, q][:, None, :]).reshape(n_c, -1)
                w = (w[:, :, None] * share[:, None, :]).reshape(n_c, -1)
            vr, wr, ur = _reduce_waits(v[:, None, :], w[:, None, :], u[:, None, :])
            out.append((p, vr[:, 0], wr[:, 0], ur[:, 0]))
        j = max([n_j, *(o[1].shape[1] for o in out)])
        pad = np.zeros((n_c, n_p, j - n_j))
        v_all = np.concatenate([values, pad], axis=2)
        w_all = np.concatenate([weights, pad], axis=2)
        u_all = v_all.copy()
        for p, vr, wr, ur in out:
            for arr, part in ((v_all, vr), (w_all, wr), (u_all, ur)):
                arr[:, p] = 0.0
                arr[:, p, : part.shape[1]] = part
        w_all[:, self.later] = 0.0
        return v_all, w_all, u_all

    def warnings(self) -> list[str]:
        """What a reader of this run's numbers must know about how they were computed."""
        out = []
        if self.backlog_any and self.backlog_since is not None:
            names = ", ".join(self.grid.pools[p].name for p in np.flatnonzero(self.overloaded)[:5])
            out.append(
                f"the backlog grows without bound from t = {self.backlog_since / 86400:.2f} days: "
                f"{self.backlog.sum():,.0f} requests still queued at the end (at {names}); "
                "nothing bounds these queues: set admission.max_wait, a class's patience or "
                "admission.queue_limit, or add capacity"
            )
        if self.coarse_ticks:
            out.append(
                f"{self.coarse_ticks:,} ticks of fluid overload were longer than twice the "
                "shortest SLO of their pools: waits in overload are resolved to about half a "
                "tick; use a finer horizon.resolution to resolve them"
            )
        if self.starved_ticks:
            out.append(
                f"in {self.starved_ticks:,} ticks of fluid overload the first priorities took "
                "every slot of a pool: the waits recorded for the priorities after them are "
                "lower bounds (their requests stay queued); add capacity or set "
                "admission.max_wait or a class's patience to shed them"
            )
        return out

    def _finish(self) -> RunOutput:
        rec = self.recorder
        for p in range(self.shape[2]):
            if self.backlog[:, :, p].any():
                self._unadmit(self.backlog[:, :, p], int(self.entry_of[p]))
        in_flight = self._entry_backlog().transpose(1, 0, 2)  # (C, R, P)
        rec.capacity_kpis = self.capacity.kpis(rec)
        rec.extra_series.append(self.capacity.series(rec.interval_s))
        summary = rec.summary(in_flight)
        summary["engine_warnings"] = self.warnings()
        return RunOutput(summary, rec.timeseries(), rec.requests(), rec.flows())


class _Block:
    """What a block of ticks accumulates for the recorder."""

    def __init__(self, n_t: int, shape: tuple[int, int, int]) -> None:
        n_r, n_c, n_p = shape
        self.n_t = n_t
        self.k0_offset = 0
        self.routed = np.zeros((n_r, n_c, n_p))  # requests sent, by region, class and pool
        self.unrouted = np.zeros((n_r, n_c))  # ... and those with nowhere to go
        self.admitted = np.zeros((n_r, n_c, n_p))  # ... of them admitted (served or queued)
        self.dropped = np.zeros((n_r, n_c, n_p))
        self.abandoned = np.zeros((n_r, n_c, n_p))
        self.lam = np.zeros((n_t, n_p))  # requests/s reaching each pool
        self.work_rate = np.zeros((n_t, n_p))  # slot-seconds/s of new work (Erlangs)
        self.busy = np.zeros((n_t, n_p))  # slot-seconds served
        self.queue_s = np.zeros((n_t, n_p))  # request-seconds waiting
        self.region_flow = np.zeros((n_t, n_r, n_p))  # requests from each region to each pool
        self._values: list[FloatArray] = []  # (C, P, J) or (C, P, laws, J) waits
        self._weights: list[FloatArray] = []  # ... and how many requests had them
        # ... of ticks stepped one by one: tick -> its (C, P, J) waits and weights (a tick's
        # own arrays, not one (C, P, ticks x J) pair: a long block steps few of its ticks)
        self._ticks: dict[int, tuple[FloatArray, FloatArray]] = {}
        # (class, pool) pairs that some wait was given weight for (a superset will do)
        self._pairs = np.zeros((n_c, n_p), dtype=bool)

    def waits(self, values: FloatArray, weights: FloatArray) -> None:
        """Wait points of the block's requests: (C, P, J), or (C, P, laws, J) for several
        laws' points at once (law after law, as one call a law would give them)."""
        pairs = _weighted(weights)
        if pairs.ndim == 3:
            pairs = np.asarray(pairs.any(axis=2))
        if pairs.any():
            self._values.append(values)
            self._weights.append(weights)
            self._pairs |= pairs

    def _ticks_arrays(self, i: int) -> tuple[FloatArray, FloatArray]:
        """Tick ``i``'s wait points and weights (C, P, J), zeros until written."""
        arrays = self._ticks.get(i)
        if arrays is None:
            n_c, n_p = self._pairs.shape
            arrays = (np.zeros((n_c, n_p, WAIT_POINTS)), np.zeros((n_c, n_p, WAIT_POINTS)))
            self._ticks[i] = arrays
        return arrays

    def tick_waits(self, i: int, pools: Any, values: FloatArray, weights: FloatArray) -> None:
        """Tick ``i``'s wait points (C, k, J) and their weights for ``pools``."""
        v, w = self._ticks_arrays(i)
        v[:, pools] = values
        w[:, pools] = weights
        self._pairs[:, pools] |= _weighted(weights)

    def fluid_waits(
        self, i: int, pools: Any, values: FloatArray, lin: FloatArray, new: FloatArray
    ) -> None:
        """Tick ``i``'s fluid waits: ``values`` (F, J-1) band means of the uniform part, a
        share ``lin`` (F,) of the ``new`` (C, F) admitted waiting, the rest not."""
        v, w = self._ticks_arrays(i)
        v[:, pools, 0] = 0.0
        v[:, pools, 1:] = values[None]
        w[:, pools, 0] = (1 - lin)[None] * new
        w[:, pools, 1:] = (lin / (WAIT_POINTS - 1))[None, :, None] * new[:, :, None]
        self._pairs[:, pools] |= _weighted(w[:, pools])

    def fluid_waits_of(
        self,
        i: int,
        pools: npt.NDArray[np.intp],
        classes: npt.NDArray[np.intp],
        values: FloatArray,
        lin: FloatArray,
        new: FloatArray,
    ) -> None:
        """``fluid_waits`` for the ``classes`` only (one priority): ``new`` is (K, F)."""
        v, w = self._ticks_arrays(i)
        rows = classes[:, None]
        v[rows, pools, 0] = 0.0
        v[rows, pools, 1:] = values[None]
        w[rows, pools, 0] = (1 - lin)[None] * new
        w[rows, pools, 1:] = (lin / (WAIT_POINTS - 1))[None, :, None] * new[:, :, None]
        self._pairs[rows, pools] |= _weighted(w[rows, pools])

    def wait_law(self) -> tuple[FloatArray, FloatArray]:
        """The block's waits per (class, pool): the no-wait mass, then equal-mass bands."""
        n_c, n_p = self._pairs.shape
        n_pts = sum(part[0, 0].size for part in self._values)
        if self._ticks:  # the stepped ticks' points come last, J a tick, in tick order
            n_pts += self.n_t * WAIT_POINTS
        if not n_pts:
            return np.zeros((n_c, n_p, 1)), np.zeros((n_c, n_p, 1))
        if n_pts <= WAIT_BANDS + 1:
            every = np.arange(n_c * n_p)
            v, w = self._points(every)
            return _reduce_waits(v.reshape(n_c, n_p, -1), w.reshape(n_c, n_p, -1))
        # Only the (class, pool) pairs that met a wait are reduced (a class is served at few
        # pools: a few % of the pairs on a market of many models); the others' bands are
        # zeros, as the reduction of no weight makes them.
        rows = np.flatnonzero(self._pairs.ravel())
        values, weights = _reduce_rows(*self._points(rows))
        return _scatter(values, rows, n_c, n_p), _scatter(weights, rows, n_c, n_p)

    def _points(self, rows: npt.NDArray[np.intp]) -> tuple[FloatArray, FloatArray]:
        """The block's wait points and weights (A, N) of the pairs ``rows`` (flat indices
        c * P + p): each ``waits`` part in turn, then every tick's J points (zeros for a tick
        not stepped: the points' layout is the block's, whichever ticks were stepped)."""
        n_pairs = self._pairs.size
        # indexed by class and pool: a part may be a transposed view (no copy of it first)
        cls, pool = np.divmod(rows, self._pairs.shape[1])
        parts_v = [_by_row(part[cls, pool]) for part in self._values]
        parts_w = [_by_row(part[cls, pool]) for part in self._weights]
        if self._ticks:
            tick_v = np.zeros((rows.size, self.n_t, WAIT_POINTS))
            tick_w = np.zeros((rows.size, self.n_t, WAIT_POINTS))
            for i, (v, w) in self._ticks.items():
                tick_v[:, i] = v.reshape(n_pairs, -1)[rows]
                tick_w[:, i] = w.reshape(n_pairs, -1)[rows]
            parts_v.append(_by_row(tick_v))
            parts_w.append(_by_row(tick_w))
        return np.concatenate(parts_v, axis=1), np.concatenate(parts_w, axis=1)


def _by_row(a: FloatArray) -> FloatArray:
    """``a`` as one row per leading index (``reshape(n, -1)``, which cannot infer the width
    of no rows: a block in which no pair is reachable, e.g. its only link cut)."""
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:], dtype=np.int64)))


@overload
def _reduce_waits(v: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray]: ...
@overload
def _reduce_waits(
    v: FloatArray, w: FloatArray, u: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]: ...
def _reduce_waits(
    v: FloatArray, w: FloatArray, u: FloatArray | None = None
) -> tuple[FloatArray, FloatArray] | tuple[FloatArray, FloatArray, FloatArray]:
    """Wait points (C, P, N) and their weights as the no-wait mass, then equal-mass bands;
    with ``u`` (a second value per point), its mean over the points of each band too."""
    n_c, n_p, n = v.shape
    if n <= WAIT_BANDS + 1:  # few points: kept as they are, the no-wait mass first
        zero = np.where(v <= 0, w, 0.0).sum(axis=2)
        w_pos = np.where(v > 0, w, 0.0)
        head = np.zeros((n_c, n_p, 1))
        values = np.concatenate([head, v], 2)
        weights = np.concatenate([zero[:, :, None], w_pos], 2)
        return (values, weights) if u is None else (values, weights, np.concatenate([head, u], 2))
    # Only the pairs with some weight are sorted and banded: a pair without any has zero bands
    # (band_means of no mass), which is what the scatter leaves.
    rows = np.flatnonzero((w != 0).any(axis=2).ravel())
    flat_v = v.reshape(n_c * n_p, n)[rows]
    flat_w = w.reshape(n_c * n_p, n)[rows]
    if u is None:
        values, weights = _reduce_rows(flat_v, flat_w)
        return _scatter(values, rows, n_c, n_p), _scatter(weights, rows, n_c, n_p)
    values, weights, bands_u = _reduce_rows(flat_v, flat_w, u.reshape(n_c * n_p, n)[rows])
    return (
        _scatter(values, rows, n_c, n_p),
        _scatter(weights, rows, n_c, n_p),
        _scatter(bands_u, rows, n_c, n_p),
    )


@overload
def _reduce_rows(v: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray]: ...
@overload
def _reduce_rows(
    v: FloatArray, w: FloatArray, u: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]: ...
def _reduce_rows(
    v: FloatArray, w: FloatArray, u: FloatArray | None = None
) -> tuple[FloatArray, FloatArray] | tuple[FloatArray, FloatArray, FloatArray]:
    """``_reduce_waits`` of rows of points (A, N), N > ``WAIT_BANDS + 1``: the no-wait mass,
    then ``WAIT_BANDS`` equal-mass bands of the points that waited (A, 1 + WAIT_BANDS)."""
    if not v.shape[0]:  # no pair met a wait
        empty = np.zeros((0, 1 + WAIT_BANDS))
        return (empty, empty.copy()) if u is None else (empty, empty.copy(), empty.copy())
    # the no-wait mass summed over every point as given (the same sum, to the last bit)
    zero = np.where(v <= 0, w, 0.0).sum(axis=1)
    # Points without weight in any row (a block's ticks that steady stretches covered) are
    # left out of the sort: they add exact zeros to the cumulative sums and no band ends on
    # one, so the bands are the same without them.
    cols = (w != 0).any(axis=0)
    if not cols.all():
        v, w = v[:, cols], w[:, cols]
        u = None if u is None else u[:, cols]
    w_pos = np.where(v > 0, w, 0.0)
    head = np.zeros((v.shape[0], 1))
    order = np.argsort(v, axis=1, kind="stable")  # runs of ticks come nearly sorted
    vs = np.take_along_axis(v, order, axis=1)
    ws = np.take_along_axis(w_pos, order, axis=1)
    bands_v, bands_w = band_means(ws, vs, WAIT_BANDS)
    values = np.concatenate([head, bands_v], axis=1)
    weights = np.concatenate([zero[:, None], bands_w], axis=1)
    if u is None:
        return values, weights
    # the same bands (cut by cumulative weight in v's order), averaging u instead
    bands_u, _ = band_means(ws, np.take_along_axis(u, order, axis=1), WAIT_BANDS)
    return values, weights, np.concatenate([head, bands_u], axis=1)


def _weighted(weights: FloatArray) -> npt.NDArray[np.bool_]:
    """Which (class, pool) rows of ``weights`` (..., J) hold some weight (non-zero, or nan).
    One comparison per point index: faster than ``any`` over a short last axis."""
    out = weights[..., 0] != 0
    for j in range(1, weights.shape[-1]):
        out |= weights[..., j] != 0
    return out


def _scatter(rows_out: FloatArray, rows: npt.NDArray[np.intp], n_c: int, n_p: int) -> FloatArray:
    """Rows (A, J) of the pairs ``rows`` (flat indices c * P + p) into a (C, P, J) array of
    zeros."""
    out = np.zeros((n_c * n_p, rows_out.shape[1]))
    out[rows] = rows_out
    return out.reshape(n_c, n_p, -1)


@dataclass(frozen=True)
class _Rules:
    """The admission rules a steady-state law is computed under."""

    patience: list[PatienceLaw | None]  # per class (None: waits as long as it must)
    max_wait_s: float | None
    queue_limit: int | None


def _fcfs_law(
    servers: FloatArray,
    lam: FloatArray,
    load: FloatArray,
    share: FloatArray,
    kappa: FloatArray,
    by_work: FloatArray,
    rules: _Rules,
) -> Outcome:
    """``stationary`` over (T, M) stations: slots, arrivals/s and Erlangs (T, M), the classes'
    shares of arrivals and of work (T, C, M), Allen-Cunneen factors (T, M); rows t-major."""
    n_c = share.shape[1]
    return stationary(
        servers.reshape(-1),
        lam.reshape(-1),
        load.reshape(-1),
        share.transpose(0, 2, 1).reshape(-1, n_c),
        rules.patience,
        rules.max_wait_s,
        rules.queue_limit,
        kappa.reshape(-1),
        by_work.transpose(0, 2, 1).reshape(-1, n_c),
    )


def _shares(part: FloatArray, total: FloatArray) -> FloatArray:
    """``part`` (T, C, M) over its total over classes ``total`` (T, M); 0 where that is 0."""
    out: FloatArray = np.divide(
        part, total[:, None, :], out=np.zeros_like(part), where=total[:, None, :] > 0
    )
    return out


def _merge(parts: list[tuple[npt.NDArray[np.intp], Outcome]], n_t: int, n_p: int) -> Outcome:
    """One outcome over T x P rows from outcomes over T x len(cols) rows of the stations
    ``cols`` (together every station once)."""
    out: dict[str, Any] = {}
    for fld in dataclasses.fields(Outcome):
        first = getattr(parts[0][1], fld.name)
        tail = first.shape[1:]
        arr = np.empty((n_t, n_p, *tail), dtype=first.dtype)
        for cols, outcome in parts:
            arr[:, cols] = getattr(outcome, fld.name).reshape(n_t, cols.size, *tail)
        out[fld.name] = arr.reshape(n_t * n_p, *tail)
    return Outcome(**out)


class _Tiers:
    """The priority decomposition's results over (T, M) stations and C classes, with what
    each priority k served (Erlangs, requests/s) and its mean slot time (s)."""

    def __init__(self, n_k: int, n_t: int, n_m: int, n_c: int) -> None:
        self.served = np.ones((n_t, n_m, n_c))
        self.dropped = np.zeros((n_t, n_m, n_c))
        self.abandoned = np.zeros((n_t, n_m, n_c))
        self.values = np.zeros((n_t, n_m, n_c, WAIT_POINTS))
        self.weights = np.zeros((n_t, n_m, n_c, WAIT_POINTS))
        self.weights[..., 0] = 1.0
        self.mean_all = np.zeros((n_t, n_m, n_c))
        self.ok = np.ones((n_k, n_t, n_m), dtype=bool)  # each priority's law exists
        self.busy = np.zeros((n_k, n_t, n_m))
        self.rate = np.zeros((n_k, n_t, n_m))
        self.slot_s = np.zeros((n_k, n_t, n_m))
        # P(a request of priority k waits): P(every slot busy) as its law sees the pool
        self.p_wait = np.zeros((n_k, n_t, n_m))

    def outcome(self) -> Outcome:
        """As ``stationary`` returns it: rows t-major, nan where no steady state exists."""
        stable = self.ok.all(axis=0)
        bad = ~stable
        for arr in (
            self.served,
            self.dropped,
            self.abandoned,
            self.values,
            self.weights,
            self.mean_all,
        ):
            arr[bad] = np.nan
        n_t, n_m, n_c = self.served.shape
        rows = n_t * n_m
        return Outcome(
            stable.reshape(-1),
            self.served.reshape(rows, n_c),
            self.dropped.reshape(rows, n_c),
            self.abandoned.reshape(rows, n_c),
            self.values.reshape(rows, n_c, -1),
            self.weights.reshape(rows, n_c, -1),
            self.mean_all.reshape(rows, n_c),
        )


def _subset(outcome: Outcome, keep: npt.NDArray[np.bool_]) -> Outcome:
    """The outcome of the pools ``keep`` selects."""
    return Outcome(
        outcome.stable[keep],
        outcome.served[keep],
        outcome.dropped[keep],
        outcome.abandoned[keep],
        outcome.wait_values[keep],
        outcome.wait_weights[keep],
        outcome.mean_wait_all_s[keep],
    )


def _same_rows(rows: FloatArray, ref: FloatArray) -> npt.NDArray[np.bool_]:
    """Rows equal to ``ref`` (broadcast) up to rounding: demand integrated over ticks of one
    clock hour differs in the 13th digit, and each distinct row costs a steady-state law."""
    ref = np.broadcast_to(
        np.reshape(ref, (-1,) if rows.ndim == 1 else (-1, rows.shape[-1])), rows.shape
    )
    scale = np.maximum(np.abs(ref).max(axis=-1, keepdims=True), 1e-300)
    out: npt.NDArray[np.bool_] = (np.abs(rows - ref) <= 1e-9 * scale).all(axis=-1)
    return out


def _cells_method(policy: Any) -> Any:
    """The policy's ``allocate_cells``, if the class that defines its ``allocate`` defines it
    too: a subclass that changes the rule but not this method must not get its parent's
    cells (``allocate_many`` and the dense split are used then)."""
    mro = type(policy).__mro__
    owner = next((k for k in mro if "allocate" in k.__dict__), None)
    if owner is None or "allocate_cells" not in owner.__dict__:
        return None
    return policy.allocate_cells


def _dense_cells(shares: FloatArray) -> tuple[npt.NDArray[np.intp], FloatArray]:
    """The flat (region, class, pool) cells some split of ``shares`` (U, R, C, P) sends
    anything to, in increasing order, and the splits on them (U, N). (A flat search of a
    boolean array: np.nonzero of a float array is much slower.)"""
    flat = shares.reshape(shares.shape[0], -1)
    cells = np.flatnonzero((flat != 0).any(axis=0))
    return cells, flat[:, cells]


def _law_sums(values: FloatArray, firsts: npt.NDArray[np.intp], end: int) -> FloatArray:
    """``values`` (T, ...) summed over each law's ticks: ``firsts[u]`` to the next first (the
    last to ``end``). (``np.add.reduceat`` over the first axis is many times slower.)"""
    out = np.empty((firsts.size, *values.shape[1:]))
    stops = [*firsts[1:].tolist(), end]
    for u, (t0, t1) in enumerate(zip(firsts.tolist(), stops, strict=True)):
        np.sum(values[t0:t1], axis=0, out=out[u])
    return out


def _cell_sums(values: FloatArray, keys: npt.NDArray[np.intp], size: int) -> FloatArray:
    """Each row of ``values`` (T, N) summed by ``keys`` (N,) into (T, size): one bincount for
    every row (cells in order, so each sum adds its terms in cell order)."""
    n_t = values.shape[0]
    flat = (np.arange(n_t)[:, None] * size + keys[None, :]).ravel()
    sums = np.bincount(flat, values.ravel(), n_t * size)
    return np.asarray(sums, dtype=np.float64).reshape(n_t, size)


def _unrouted(shares: FloatArray) -> FloatArray:
    """Share of each region's and class's demand the policy sent nowhere (every pool down)."""
    left = 1.0 - shares.sum(axis=2)
    out: FloatArray = np.where(left > 1e-9, left, 0.0)
    return out


def series_interval(asked_s: float, tick_s: float, horizon_s: float) -> float:
    """The time-series step: as asked, but at least a tick and few enough bins for long runs."""
    floor = max(asked_s, tick_s, horizon_s / MAX_SERIES_BINS)
    return float(next((n for n in NICE_INTERVALS_S if n >= floor), floor))
