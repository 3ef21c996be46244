"""Request fidelity: every request simulated, in a SimPy environment.

A request goes: arrival at its region -> routing (the policy) -> network delay -> admission
(queue limit, maximum wait: dropped) -> patience (abandoned) -> a FCFS queue for a slot of the
chosen pool -> its pool's stages (the grid's service table: one slot held for prefill and
decode, or a prefill slot, the KV transfer and a decode slot at a later station, FCFS there
too) -> completion. Outages are SimPy processes that change the pools at their instants; a
request caught at any station of a failed pool is routed again or lost, counted at the pool it
entered.

Few events per request. Under FCFS a request's start is fixed when it reaches its pool: it
takes the earliest-free slot, ``start = max(reach, earliest free)`` (Kiefer-Wolfowitz), so the
engine keeps each pool's slot free-times in a heap instead of a SimPy resource. Between two
scheduled SimPy events (outages, the end) nothing can change a pool but requests, so the
arrival process handles every arrival before the next event in one tight loop and then yields
a single timeout. Arrivals at a pool (after network delay) and completions wait in one agenda
heap and are applied in time order, lazily, before anything at a later time. At equal times the
order is fixed: scheduled events first, then agenda entries by time and push order, then new
arrivals in the order the demand model sorted them.

Patience (a class's ``patience``): each request draws one, from a stream per class that only the
run's seed and the class name determine, in arrival order. Its wait at the pool it is admitted
to is known on arrival there (the start above), so a request whose wait would pass its patience
abandons at once: it leaves without taking a slot, and the requests behind it are not delayed
(as in Erlang A, M/M/c+M, where abandoning customers leave the queue). A request routed again
after a failure keeps its patience, measured from its arrival at the new pool.

Priority pools. A pool whose servable classes have two or more ``priority`` values (0 is
served first) queues its entry station by priority, non-preemptively: a request taken into
service keeps its slot, and a freed slot takes the waiting request of the lowest priority
number, first come first served within one. Later high-priority arrivals overtake a waiting
low-priority request, so its start is no longer known on arrival and the shortcut above does
not hold there. Such a pool keeps the same slot free-time heap (a slot is free at ``t`` when its
entry is <= ``t``; a busy slot's entry is its request's end), a FIFO of waiting requests per
priority level and their count; a request reaching the pool starts at once on a free slot, else
waits, and each completion there (an agenda entry, as before) starts the best waiting request.
Per event this is O(log slots) for the heap and O(levels) (at most 10) for the queues. The
admission rules act while a request waits, at their instants: ``admission.max_wait`` drops it
and its patience makes it abandon when it has waited that long (a deadline entry in the agenda,
at the earlier of the two; dropped at a tie), and its queued span ends then; ``queue_limit``
counts waiting requests, and an arrival that finds the queue full pushes out the latest waiting
request of the highest priority number above its own (dropped), or is dropped itself when there
is none, so that under overload the highest numbers are shed first. (On the FCFS path a request
whose known wait passes max_wait is dropped on arrival even if its patience would have run out
first; here the wait is not known, so whichever runs out first decides: the sum of dropped and
abandoned requests is the same law.) The later stations of a disaggregated priority pool stay
FCFS: priority orders admission into the pool, after which a request's route runs as any other.
A class taking several slots per request (``slots_per_job``) cannot enter a priority pool (the
engine refuses the scenario). Pools whose classes share one priority take the FCFS path,
unchanged.
"""

from __future__ import annotations

import collections
import gc
import heapq
import itertools
import math
from collections.abc import Generator
from typing import Any

import numpy as np

from gridsim.demand import LengthSampler, stable_hash
from gridsim.engine.base import EngineBase, Progress, RunOutput, recorder_layout
from gridsim.engine.shocks import Shocks
from gridsim.grid import Grid
from gridsim.metrics.recorder import FLUSH_ROWS, Recorder
from gridsim.scenario.errors import Problem, ScenarioError
from gridsim.service import Stage

INF = math.inf
CHUNK_S = 600.0  # arrivals are drawn this many simulated seconds at a time (bounded memory)
PATIENCE_STREAM = 0x9A71  # spawn key of the patience streams: (PATIENCE_STREAM, class hash)

# A request in the engine, a list for speed: indices of its fields (PATIENCE: inf when none).
CLS, REGION, T_ARR, IN_TOK, OUT_TOK, JOB_S, PATIENCE = range(7)
POOL, NET, REACH, START, END, STATE = range(7, 13)
# A request of a pool with later stations carries more fields from its admission on (others
# do not, to stay cheap): where it is in its pool's stages (``gridsim.service``): the station
# it holds or waits for,
# STG (on its way to a later station: that stage; holding a slot: the stage to walk on to when
# it leaves, -1 if none), its waits at later stations, its first token, when it left the entry
# station's slot, and at a later station: when it reached it, started and ends there.
AT, STG, WAITED, FIRST, END0, AT_REACH, AT_START, AT_END = range(13, 21)
N_FIELDS = 21
# Its STATE: on its way to a pool, holding (or queued for) a slot, on its way to a later
# station of its pool, or no longer tracked; at a priority pool, waiting for a slot (its start
# not yet known: START and END are set when it starts).
TRAVEL, ADMITTED, GONE, HOP, WAITING = 0, 1, 2, 3, 4
# An agenda entry that is not a request but a waiting request's deadline (max_wait or patience),
# a list as long as a plain request so that every loop over the agenda can read its STATE:
# [request, dropped (True: max_wait; False: patience), ..., DEADLINE].
DEADLINE = 5
DL_REQ, DL_DROPPED = 0, 1
PRIORITY_LEVELS = 10  # DemandClass.priority is 0..9


def priority_pools(grid: Grid) -> list[bool]:
    """Per pool: whether its servable classes come in two or more priorities (a priority
    pool); pools of one priority keep the FCFS path. (A function of its own so that a test can
    send every pool through the priority path and compare it with FCFS.)"""
    prio = np.array([c.priority for c in grid.scenario.demand.classes], dtype=np.int64)
    serves = grid.serves  # (classes, pools)
    return [len(set(prio[serves[:, p]].tolist())) > 1 for p in range(serves.shape[1])]


def _fresh(req: list[Any]) -> list[Any]:
    """A new record of a request to route again (the old one stays in the agenda, dead)."""
    return [*req[:NET], 0.0, 0.0, 0.0, 0.0, TRAVEL]


def _staged(req: list[Any]) -> bool:
    """Whether the request carries the stage fields (its pool has later stations)."""
    return len(req) > AT


def _coef(route: tuple[Stage, ...]) -> tuple[float, float, float, float, float, bool]:
    s = route[0]
    first = s.first_token_per_input_s or 0.0
    return s.per_input_s, s.per_output_s, s.per_job_s, s.fixed_s, first, len(route) > 1


class RequestEngine(EngineBase):
    """One run over one Grid. ``run()`` returns the summary and tables."""

    def __init__(self, grid: Grid, seed: int, progress: bool = False) -> None:
        super().__init__(grid, progress)
        sc = grid.scenario
        self.seed = seed
        self.retry = sc.policy.on_failure == "retry"
        self.shocks = Shocks(sc, seed)
        classes = sc.demand.classes
        pools = grid.pools
        self.recorder = Recorder(
            recorder_layout(grid),
            horizon_s=self.horizon_s,
            warmup_s=sc.horizon.warmup,
            interval_s=sc.outputs.timeseries_interval,
            keep_requests=sc.outputs.requests,
        )
        n_pools = len(pools)
        # Live pool state. Policies read it through this object (the PoolView protocol):
        # alive, in_system and next_free, never the heaps.
        self.alive = [p.slots > 0 for p in pools]
        self.in_system = [0] * n_pools
        self.free: list[list[float]] = [[0.0] * p.slots for p in pools]  # slot free-time heaps
        self.next_free = [h[0] if h else INF for h in self.free]  # each heap's top
        self.waiting: list[list[float]] = [[] for _ in pools]  # start times, for queue_limit
        self.up_since = [0.0] * n_pools
        # (time, push number, request): a TRAVEL request reaches its pool then, an ADMITTED one
        # finishes; entries of GONE requests are skipped.
        self.agenda: list[tuple[float, int, list[Any]]] = []
        self.pushes = 0
        self.queue_limit = sc.admission.queue_limit
        self.max_wait = sc.admission.max_wait if sc.admission.max_wait is not None else INF
        self.latency = grid.latency_s.tolist()  # nested lists: cheaper to index per request
        # The service table's routes; per (class, pool), for speed, the entry stage's hold
        # coefficients (per input token, per output token, per job second, fixed), its first
        # token (s per input token after the start; 0 for jobs: their first output is their
        # start) and whether stages follow it.
        self.routes = grid.service.routes
        self.entry_coef = [
            [_coef(r) if r else (0.0, 0.0, 0.0, 0.0, 0.0, False) for r in per_pool]
            for per_pool in self.routes
        ]
        self.slots_per_job = [c.slots_per_job for c in classes]
        self.slots_per_job_arr = np.array(self.slots_per_job, dtype=np.float64)
        self.hops: list[tuple[int, float, float, float]] = []  # later stations' spans
        self.done_staged: list[list[Any]] = []  # ... finished staged requests
        self.first_arr = np.array(
            [[c[4] for c in per] for per in self.entry_coef]
        )  # (C, P) first token, s per input token after the start
        # ... plus the entry stage's fixed part when it makes the first token (a pooled pool's
        # model switch comes before the prefill)
        self.first_fixed = [
            [r[0].fixed_s if r and r[0].first_token_per_input_s is not None else 0.0 for r in per]
            for per in self.routes
        ]
        self.first_fixed_arr = np.array(self.first_fixed, dtype=np.float64).reshape(
            self.first_arr.shape
        )
        self.done: list[list[Any]] = []  # finished, waiting to be recorded in bulk
        # (class index, sampler, generator) of each class with a patience; none: nothing drawn
        self.patience = [
            (
                i,
                LengthSampler(c.patience, tokens=False),
                np.random.default_rng(
                    np.random.SeedSequence(seed, spawn_key=(PATIENCE_STREAM, stable_hash(c.name)))
                ),
            )
            for i, c in enumerate(classes)
            if c.patience is not None
        ]
        # Priority pools (see the module docstring): per pool, None (FCFS) or a FIFO of waiting
        # requests per priority level, with the live requests per level (a FIFO keeps requests
        # that left it by a deadline until they reach its front: skipped there).
        self.class_priority = [c.priority for c in classes]
        prio_pools = priority_pools(grid)
        self._refuse_multi_slot(prio_pools)
        self.queues: list[list[collections.deque[list[Any]]] | None] = [
            [collections.deque() for _ in range(PRIORITY_LEVELS)] if is_prio else None
            for is_prio in prio_pools
        ]
        self.is_priority = prio_pools
        self.level_n = [[0] * PRIORITY_LEVELS for _ in pools]
        self.n_waiting = [0] * n_pools  # live waiting requests per pool (0 on the FCFS path)
        # Slot time taken by the requests started at each priority pool (sum, count): the mean
        # hold of the wait estimate that policies read.
        self.hold_sum_s = [0.0] * n_pools
        self.hold_n = [0] * n_pools

    def _refuse_multi_slot(self, prio_pools: list[bool]) -> None:
        """A class of several slots per request at a priority pool is refused: which waiting
        request a freed slot goes to when the best one needs more slots than are free (hold
        the slots back, or let smaller requests pass) is a policy of its own, not built."""
        grid = self.grid
        problems = []
        for i, c in enumerate(grid.scenario.demand.classes):
            if c.slots_per_job == 1:
                continue
            for p in np.flatnonzero(grid.serves[i]).tolist():
                if prio_pools[p]:
                    problems.append(
                        Problem(
                            ("demand", "classes", i, "slots_per_job"),
                            f"class {c.name!r} takes {c.slots_per_job} slots per request, but "
                            f"pool {grid.pools[p].name} serves classes of several priorities, "
                            "and the request engine's priority queues take one slot per "
                            "request: set slots_per_job: 1, give the pool's classes one "
                            "priority, or run at flow fidelity (--fidelity flow)",
                        )
                    )
                    break
        if problems:
            raise ScenarioError(problems)

    # --- the PoolView protocol ---------------------------------------------------------------

    def wait_s(self, pool: int, t: float) -> float:
        """The wait a request reaching ``pool`` at ``t`` would see: exact at a FCFS pool (0 if a
        slot is free), and at a priority pool 0 if a slot is free, else an estimate that
        ignores priorities (see ``_top``)."""
        if not self.alive[pool]:
            return INF
        earliest = self.next_free[pool]
        return earliest - t if earliest > t else 0.0

    def _top(self, p: int) -> None:
        """Keep ``next_free`` (what policies read) in step with pool ``p``'s heap. At a priority
        pool with requests waiting (all slots busy), the estimate of when a slot would be free
        for a newcomer: the earliest end of a busy slot plus the waiting requests' share of the
        slots, each for the pool's mean hold so far (queue ahead / slots x mean hold). It
        ignores the newcomer's priority: policies ask one wait per pool."""
        free = self.free[p]
        top = free[0] if free else INF
        waiting = self.n_waiting[p]
        if waiting:
            top += waiting * self.hold_sum_s[p] / (max(self.hold_n[p], 1) * len(free))
        self.next_free[p] = top

    # --- running -----------------------------------------------------------------------------

    def _before_event(self, t: float) -> None:
        self._advance(t)

    def _main(self) -> Generator[Any, Any, None]:
        return self._arrivals()

    def _arrivals(self) -> Generator[Any, Any, None]:
        env = self.env
        bar = Progress(self.horizon_s) if self.progress else None
        t0 = 0.0
        chunk = 0
        while t0 < self.horizon_s:
            t1 = min(t0 + CHUNK_S, self.horizon_s)
            arr = self.demand.arrivals(self.seed, t0, t1)
            if self.shocks:
                arr = self.shocks.apply(arr, t0, t1, chunk)
            chunk += 1
            self.recorder.arrivals(
                arr.class_idx, arr.region_idx, arr.input_tokens, arr.output_tokens
            )
            times = arr.time_s
            rows = list(
                zip(
                    times.tolist(),
                    arr.class_idx.tolist(),
                    arr.region_idx.tolist(),
                    arr.input_tokens.tolist(),
                    arr.output_tokens.tolist(),
                    arr.service_s.tolist(),
                    self._patience(arr.class_idx)
                    if self.patience
                    else itertools.repeat(INF, len(times)),
                    strict=True,
                )
            )
            i, n = 0, len(rows)
            while i < n:
                # Every arrival before the next scheduled event can be handled now.
                j = int(np.searchsorted(times, env.peek(), side="left"))
                if j > i:
                    self._handle(rows, i, j)
                    i = j
                if i < n:
                    yield env.timeout(max(rows[i][0] - env.now, 0.0))
            if bar:
                bar.update(t1)
            if t1 > env.now:
                yield env.timeout(t1 - env.now)
            t0 = t1
        if bar:
            bar.close()

    def _patience(self, class_idx: np.ndarray) -> list[float]:
        """Patience of each arrival of a chunk (inf for classes without one): per class, the
        next draws of its stream, in arrival order."""
        out = np.full(len(class_idx), INF)
        for i, sampler, rng in self.patience:
            mine = class_idx == i
            n = int(np.count_nonzero(mine))
            if n:
                out[mine] = sampler.sample(rng, n)
        values: list[float] = out.tolist()
        return values

    def _handle(self, rows: list[tuple[Any, ...]], i: int, j: int) -> None:
        """Arrivals ``rows[i:j]``, all before the next scheduled event: route each one."""
        choose = self.policy.choose
        latency = self.latency
        agenda = self.agenda
        drop = self.recorder.drop
        push = heapq.heappush
        for k in range(i, j):
            t, c, r, inp, out, job_s, patience = rows[k]
            if agenda and agenda[0][0] <= t:
                self._advance(t)
            p = choose(self, c, r, t)
            if p < 0:
                drop(c, r, -1)
                continue
            net = latency[r][p]
            req = [c, r, t, inp, out, job_s, patience, p, net, 0.0, 0.0, 0.0, TRAVEL]
            if net > 0:
                self.pushes += 1
                push(agenda, (t + net, self.pushes, req))
            else:
                self._reach(req, t)

    def _route(self, req: list[Any], t: float) -> None:
        """Route a request again (after its pool failed), from its region at time ``t``."""
        c, r = req[CLS], req[REGION]
        p = self.policy.choose(self, c, r, t)
        if p < 0:
            self.recorder.drop(c, r, -1)
            return
        if not self.alive[p]:
            # A policy that sends it to a pool that is down again would bounce it between
            # failed pools at one instant for ever: it is lost there instead.
            self.recorder.lose(c, r, p)
            return
        net = self.latency[r][p]
        self.pushes += 1
        req[POOL], req[NET], req[STATE] = p, net, TRAVEL
        heapq.heappush(self.agenda, (t + net, self.pushes, req))

    def _reach(self, req: list[Any], t: float) -> None:
        """The request reaches its pool at ``t``: admit it and fix its slot, or drop it, or it
        abandons (its wait would pass its patience: it never takes a slot)."""
        p = req[POOL]
        req[REACH] = t
        if not self.alive[p]:
            req[STATE] = GONE
            self._reroute_or_lose(_fresh(req), t)
            return
        if self.queues[p] is not None:
            self._reach_priority(req, p, t)
            return
        c = req[CLS]
        per_in, per_out, per_job, fixed, first, staged = self.entry_coef[c][p]
        if per_job:  # a job: its service time (LLM requests carry none)
            service = fixed + per_job * req[JOB_S]
        else:
            service = fixed + per_in * req[IN_TOK] + per_out * req[OUT_TOK]
        free = self.free[p]
        k = self.slots_per_job[c]
        if k > len(free):  # retirements left the pool fewer slots than the job needs
            req[STATE] = GONE
            self.recorder.drop(req[CLS], req[REGION], p)
            return
        earliest = free[0] if k == 1 else heapq.nsmallest(k, free)[-1]
        start = earliest if earliest > t else t
        if start - t > self.max_wait or (
            self.queue_limit is not None and start > t and self._queued(p, t) >= self.queue_limit
        ):
            req[STATE] = GONE
            self.recorder.drop(req[CLS], req[REGION], p)
            return
        if start - t > req[PATIENCE]:
            req[STATE] = GONE
            self.recorder.abandon(req[CLS], req[REGION], p)
            return
        end = start + service
        if k == 1:
            heapq.heapreplace(free, end)
        else:
            for _ in range(k):
                heapq.heappop(free)
            for _ in range(k):
                heapq.heappush(free, end)
        self.next_free[p] = free[0]
        req[START] = start
        req[END] = end
        req[STATE] = ADMITTED
        self.in_system[p] += 1
        if self.queue_limit is not None and start > t:
            heapq.heappush(self.waiting[p], start)
        if staged:  # AT, STG (next), WAITED, FIRST, END0, AT_REACH, AT_START, AT_END
            ff = self.first_fixed[c][p]
            req.extend((p, 1, 0.0, start + ff + first * req[IN_TOK], end, 0.0, 0.0, 0.0))
        self.pushes += 1
        heapq.heappush(self.agenda, (end, self.pushes, req))

    # --- priority pools ----------------------------------------------------------------------

    def _reach_priority(self, req: list[Any], p: int, t: float) -> None:
        """The request reaches priority pool ``p`` (up) at ``t``: it starts on a free slot, or
        waits in its level's FIFO with a deadline (max_wait or patience), or is dropped (the
        queue is full and holds nothing of a higher priority number to push out)."""
        free = self.free[p]
        if not self.n_waiting[p] and free[0] <= t:
            self.in_system[p] += 1
            self._start(req, p, t)
            self.next_free[p] = free[0]
            return
        c = req[CLS]
        max_wait, patience = self.max_wait, req[PATIENCE]
        # max_wait wins a tie, as on the FCFS path (checked first there)
        dropped = max_wait <= patience
        limit_s = max_wait if dropped else patience
        if limit_s <= 0.0 and free[0] > t:  # may not wait at all: turned away at once
            req[STATE] = GONE
            (self.recorder.drop if dropped else self.recorder.abandon)(c, req[REGION], p)
            return
        level = self.class_priority[c]
        if (
            self.queue_limit is not None
            and free[0] > t
            and self.n_waiting[p] >= self.queue_limit
            and not self._push_out(p, level, t)
        ):
            req[STATE] = GONE
            self.recorder.drop(c, req[REGION], p)
            return
        req[STATE] = WAITING
        queues = self.queues[p]
        assert queues is not None
        queues[level].append(req)
        self.level_n[p][level] += 1
        self.n_waiting[p] += 1
        self.in_system[p] += 1
        if limit_s < INF:
            deadline: list[Any] = [None] * (STATE + 1)
            deadline[DL_REQ], deadline[DL_DROPPED], deadline[STATE] = req, dropped, DEADLINE
            self.pushes += 1
            heapq.heappush(self.agenda, (t + limit_s, self.pushes, deadline))
        if free[0] <= t:  # a slot freed at this very instant (its completion not yet applied)
            self._dispatch(p, t)
        else:
            self._top(p)

    def _start(self, req: list[Any], p: int, t: float) -> None:
        """Start ``req`` at ``t`` on the earliest-free slot of priority pool ``p`` (free at
        ``t``): its end, the slot's new free time, its completion in the agenda."""
        per_in, per_out, per_job, fixed, first, staged = self.entry_coef[req[CLS]][p]
        if per_job:  # a job: its service time (LLM requests carry none)
            service = fixed + per_job * req[JOB_S]
        else:
            service = fixed + per_in * req[IN_TOK] + per_out * req[OUT_TOK]
        end = t + service
        heapq.heapreplace(self.free[p], end)
        self.hold_sum_s[p] += service
        self.hold_n[p] += 1
        req[START] = t
        req[END] = end
        req[STATE] = ADMITTED
        if staged:  # AT, STG (next), WAITED, FIRST, END0, AT_REACH, AT_START, AT_END
            ff = self.first_fixed[req[CLS]][p]
            req.extend((p, 1, 0.0, t + ff + first * req[IN_TOK], end, 0.0, 0.0, 0.0))
        self.pushes += 1
        heapq.heappush(self.agenda, (end, self.pushes, req))

    def _dispatch(self, p: int, t: float) -> None:
        """Free slots of priority pool ``p`` at ``t`` take the best waiting requests."""
        free, levels = self.free[p], self.level_n[p]
        queues = self.queues[p]
        assert queues is not None
        while self.n_waiting[p] and free[0] <= t:
            level = 0
            while not levels[level]:
                level += 1
            queue = queues[level]
            req = queue.popleft()
            while req[STATE] != WAITING:  # left by a deadline: skipped
                req = queue.popleft()
            levels[level] -= 1
            self.n_waiting[p] -= 1
            self._start(req, p, t)
        self._top(p)

    def _unqueue(self, req: list[Any], p: int, t: float) -> None:
        """A waiting request leaves priority pool ``p``'s queue at ``t`` without a slot (its
        queued span ends; its record is GONE, so its FIFO skips it)."""
        req[STATE] = GONE
        level = self.class_priority[req[CLS]]
        self.level_n[p][level] -= 1
        self.n_waiting[p] -= 1
        self.in_system[p] -= 1
        rec = self.recorder
        rec.add_span(rec.queued, p, req[REACH], t)
        queues = self.queues[p]
        assert queues is not None
        queue = queues[level]
        # Requests that left from the front go at once, so a starved level (its requests all
        # dropped at max_wait, never served) keeps no records of the dead.
        while queue and queue[0][STATE] != WAITING:
            queue.popleft()

    def _push_out(self, p: int, level: int, t: float) -> bool:
        """The queue of priority pool ``p`` is full when a request of ``level`` arrives: drop
        the latest waiting request of the highest level above ``level`` to make room (False:
        none, the newcomer is the one turned away)."""
        queues = self.queues[p]
        assert queues is not None
        levels = self.level_n[p]
        for k in range(PRIORITY_LEVELS - 1, level, -1):
            if levels[k]:
                queue = queues[k]
                while queue[-1][STATE] != WAITING:
                    queue.pop()
                victim = queue.pop()
                self._unqueue(victim, p, t)
                self.recorder.drop(victim[CLS], victim[REGION], p)
                return True
        return False

    def _deadline(self, deadline: list[Any], t: float) -> None:
        """A waiting request's max_wait or patience ran out at ``t``: it is dropped or abandons
        (nothing, if it started or left meanwhile)."""
        req = deadline[DL_REQ]
        if req[STATE] != WAITING:
            return
        p = req[POOL]
        self._unqueue(req, p, t)
        rec = self.recorder
        (rec.drop if deadline[DL_DROPPED] else rec.abandon)(req[CLS], req[REGION], p)
        self._top(p)

    def _complete_priority(self, req: list[Any], p: int, t: float) -> None:
        """An agenda completion of a request of priority pool ``p`` at ``t`` (as ``_advance``
        does for FCFS pools), then the freed slot takes the best waiting request."""
        if len(req) > AT:  # a staged request
            if req[STG] >= 0:  # stages ahead
                self._next_stage(req, t)
            else:
                req[STATE] = GONE
                self._left(req)
                self.done_staged.append(req)
        else:
            req[STATE] = GONE
            self.in_system[p] -= 1
            self.done.append(req)
        if self.n_waiting[p]:
            self._dispatch(p, t)
        else:
            free = self.free[p]
            self.next_free[p] = free[0] if free else INF  # as _top with nothing waiting

    def _take_waiting(self, p: int) -> list[list[Any]]:
        """Empty priority pool ``p``'s queue: its live waiting requests, best first."""
        queues = self.queues[p]
        if queues is None or not self.n_waiting[p]:
            return []
        out = [req for queue in queues for req in queue if req[STATE] == WAITING]
        for queue in queues:
            queue.clear()
        self.level_n[p] = [0] * PRIORITY_LEVELS
        self.in_system[p] -= len(out)
        self.n_waiting[p] = 0
        return out

    def _evict_waiting(self, p: int, t: float) -> None:
        """Pool ``p`` failed or was retired at ``t``: its waiting requests (their queued spans
        end) are routed again or lost."""
        rec = self.recorder
        for req in self._take_waiting(p):
            req[STATE] = GONE
            rec.add_span(rec.queued, p, req[REACH], t)
            self._reroute_or_lose(_fresh(req), t)

    def _next_stage(self, req: list[Any], t: float) -> None:
        """The request left its station's slot at ``t`` with stages still ahead."""
        self._left(req)
        self._walk(req, t, req[STG])

    def _walk(self, req: list[Any], t: float, k: int) -> None:
        """From stage ``k`` of its route at ``t``: pass the delays, then wait to reach the next
        station (an agenda entry, so stations see their arrivals in time order), or finish."""
        route = self.routes[req[CLS]][req[POOL]]
        inp, out, job = req[IN_TOK], req[OUT_TOK], req[JOB_S]
        while k < len(route):
            stage = route[k]
            if stage.station is not None:
                req[STATE], req[STG] = HOP, k
                self.pushes += 1
                heapq.heappush(self.agenda, (t, self.pushes, req))
                return
            if stage.first_token_per_input_s is not None:
                req[FIRST] = t + stage.fixed_s + stage.first_token_per_input_s * inp
            t += stage.hold_one(inp, out, job)
            k += 1
        # The route ends in a delay: done at ``t``, holding no slot.
        req[END], req[STATE], req[STG], req[AT] = t, ADMITTED, -1, -1
        self.pushes += 1
        heapq.heappush(self.agenda, (t, self.pushes, req))

    def _hop(self, req: list[Any], t: float) -> None:
        """The request reaches a later station of its pool at ``t``: FCFS for a slot there (no
        admission rules or patience: it was admitted at the pool's entry)."""
        route = self.routes[req[CLS]][req[POOL]]
        stage = route[req[STG]]
        q = stage.station
        assert q is not None
        if not self.alive[q]:
            self._drop_mid_route(req, t)
            return
        free = self.free[q]
        start = free[0] if free[0] > t else t
        end = start + stage.hold_one(req[IN_TOK], req[OUT_TOK], req[JOB_S])
        heapq.heapreplace(free, end)
        self.next_free[q] = free[0]
        self.in_system[q] += 1
        req[AT], req[AT_REACH], req[AT_START], req[AT_END] = q, t, start, end
        req[WAITED] += start - t
        if stage.first_token_per_input_s is not None:
            req[FIRST] = start + stage.fixed_s + stage.first_token_per_input_s * req[IN_TOK]
        req[STATE] = ADMITTED
        if req[STG] + 1 == len(route):
            req[END], req[STG] = end, -1
        else:
            req[STG] += 1
        self.pushes += 1
        heapq.heappush(self.agenda, (end, self.pushes, req))

    def _left(self, req: list[Any]) -> None:
        """The request leaves the slot it held (its station's in-system count; a later
        station's busy and queued span)."""
        at = req[AT]
        if at < 0:
            return
        self.in_system[at] -= 1
        if at != req[POOL]:
            self.hops.append((at, req[AT_REACH], req[AT_START], req[AT_END]))

    def _drop_mid_route(self, req: list[Any], t: float) -> None:
        """A station of its pool failed under or ahead of an admitted request: routed again or
        lost (its entry station's busy time is kept)."""
        rec = self.recorder
        req[STATE] = GONE
        rec.add_span(
            rec.busy, req[POOL], req[START], min(req[END0], t), self.slots_per_job[req[CLS]]
        )
        rec.add_span(rec.queued, req[POOL], req[REACH], min(req[START], t))
        self._reroute_or_lose(_fresh(req), t)

    def _queued(self, p: int, t: float) -> int:
        waiting = self.waiting[p]
        while waiting and waiting[0] <= t:
            heapq.heappop(waiting)
        return len(waiting)

    def _advance(self, t: float) -> None:
        """Apply, in time order, pool arrivals and completions up to and including ``t``."""
        agenda, done, in_system = self.agenda, self.done, self.in_system
        queues = self.queues
        pop = heapq.heappop
        while agenda and agenda[0][0] <= t:
            t_event, _, req = pop(agenda)
            state = req[STATE]
            if state == ADMITTED:
                p = req[POOL]
                if queues[p] is not None:
                    self._complete_priority(req, p, t_event)
                    continue
                if len(req) > AT:  # a staged request
                    if req[STG] >= 0:  # stages ahead
                        self._next_stage(req, t_event)
                        continue
                    req[STATE] = GONE
                    self._left(req)
                    self.done_staged.append(req)
                    continue
                req[STATE] = GONE
                in_system[p] -= 1
                done.append(req)
            elif state == TRAVEL:
                self._reach(req, t_event)
            elif state == HOP:
                self._hop(req, t_event)
            elif state == DEADLINE:
                self._deadline(req, t_event)
        if len(done) + len(self.done_staged) >= FLUSH_ROWS:
            self._flush_done()
            # With the collector paused, the few reference cycles that numpy and pandas make
            # per flush would pile up; collecting the youngest generation here is cheap.
            gc.collect(0)

    def _flush_done(self) -> None:
        """Hand finished requests to the recorder as columns (one vectorised pass each for
        the plain and the staged ones)."""
        self._flush_hops()
        if self.done:
            n = len(self.done)
            # one C pass over the numeric records (fromiter is much cheaper than np.array here)
            flat = np.fromiter(itertools.chain.from_iterable(self.done), np.float64, n * AT)
            self.done = []
            a = flat.reshape(n, AT)
            cls, pool = a[:, CLS].astype(np.intp), a[:, POOL].astype(np.intp)
            first = (
                a[:, START]
                + self.first_fixed_arr[cls, pool]
                + a[:, IN_TOK] * self.first_arr[cls, pool]
            )
            self._finished(a, cls, pool, first, a[:, END], a[:, START] - a[:, REACH])
        if self.done_staged:
            n = len(self.done_staged)
            chain = itertools.chain.from_iterable(self.done_staged)
            a = np.fromiter(chain, np.float64, n * N_FIELDS).reshape(n, N_FIELDS)
            self.done_staged = []
            cls, pool = a[:, CLS].astype(np.intp), a[:, POOL].astype(np.intp)
            wait = a[:, START] - a[:, REACH] + a[:, WAITED]
            self._finished(a, cls, pool, a[:, FIRST], a[:, END0], wait)

    def _finished(
        self,
        a: np.ndarray,
        cls: np.ndarray,
        pool: np.ndarray,
        first: np.ndarray,
        busy_end: np.ndarray,
        wait: np.ndarray,
    ) -> None:
        self.recorder.finished(
            class_idx=cls,
            region_idx=a[:, REGION].astype(np.intp),
            pool_idx=pool,
            arrival_s=a[:, T_ARR],
            network_s=a[:, NET],
            reach_s=a[:, REACH],
            start_s=a[:, START],
            first_token_s=first,
            end_s=a[:, END],
            busy_end_s=busy_end,
            wait_s=wait,
            input_tokens=a[:, IN_TOK].astype(np.int64),
            output_tokens=a[:, OUT_TOK].astype(np.int64),
            slots=self.slots_per_job_arr[cls],
        )

    def _flush_hops(self) -> None:
        """Later stations' busy and queued spans, in bulk."""
        if not self.hops:
            return
        h = np.array(self.hops, dtype=np.float64)
        self.hops = []
        self.recorder.spans(h[:, 0].astype(np.intp), h[:, 1], h[:, 2], h[:, 3])

    def _unfinished(self, pool: int | None = None) -> list[list[Any]]:
        """Admitted requests not yet finished (holding or waiting for a slot of one station),
        in admission order: an admitted request's agenda entry is its completion there."""
        entries = sorted(
            (push, req)
            for _, push, req in self.agenda
            if req[STATE] == ADMITTED
            and (pool is None or (req[AT] if len(req) > AT else req[POOL]) == pool)
        )
        return [req for _, req in entries]

    def _reroute_or_lose(self, req: list[Any], t: float) -> None:
        if self.retry:
            self.recorder.retried += 1
            self._route(req, t)
        else:
            self.recorder.lose(req[CLS], req[REGION], req[POOL])

    # --- outages (called at their instants) --------------------------------------------------

    def fail_pool(self, p: int, t: float) -> None:
        if not self.alive[p]:
            return
        rec = self.recorder
        rec.add_span(rec.capacity, p, self.up_since[p], t, len(self.free[p]))
        self.alive[p] = False
        victims = self._unfinished(p)
        waiting = self._take_waiting(p)  # a priority pool's waiting requests, best first
        self.waiting[p].clear()
        self.in_system[p] = 0
        self.free[p] = [INF] * len(self.free[p])
        self._top(p)
        for req in victims:
            req[STATE] = GONE
            if _staged(req) and req[AT] != req[POOL]:  # a later station: its span, its entry's
                rec.add_span(rec.busy, p, req[AT_START], min(req[AT_END], t))
                rec.add_span(rec.queued, p, req[AT_REACH], min(req[AT_START], t))
                self._drop_mid_route(req, t)
                continue
            k = self.slots_per_job[req[CLS]]
            rec.add_span(
                rec.busy, p, req[START], min(req[END0] if _staged(req) else req[END], t), k
            )
            rec.add_span(rec.queued, p, req[REACH], min(req[START], t))
            # A fresh record: the old one stays in the completion heap, marked dead.
            self._reroute_or_lose(_fresh(req), t)
        for req in waiting:  # after those in service, as they were admitted before them
            req[STATE] = GONE
            rec.add_span(rec.queued, p, req[REACH], t)
            self._reroute_or_lose(_fresh(req), t)

    def restore_pool(self, p: int, t: float) -> None:
        if self.alive[p] or self.grid.pools[p].slots == 0:
            return
        self.alive[p] = True
        self.up_since[p] = t
        self.free[p] = [t] * len(self.free[p])  # the slots it had when it failed
        self._top(p)

    def add_slots(self, p: int, n: int, t: float) -> None:
        """Build-out (n > 0): new slots free from ``t``. Retirement (n < 0): the slots that
        free first are removed as they free; work in progress finishes."""
        free = self.free[p]
        if not self.alive[p] and self.grid.pools[p].slots == 0 and n > 0:
            self.alive[p] = True  # a pool built from nothing
            self.up_since[p] = t
            free.clear()
        rec = self.recorder
        if self.alive[p]:
            rec.add_span(rec.capacity, p, self.up_since[p], t, len(free))
            self.up_since[p] = t
        if n > 0:
            for _ in range(n):
                heapq.heappush(free, t if self.alive[p] else INF)  # a down pool stays down
        elif n < 0:
            free.sort()
            del free[: min(-n, len(free))]
            heapq.heapify(free)
            if not free:  # retired completely
                self.alive[p] = False
                free.append(INF)
        if self.n_waiting[p]:  # a priority pool with requests waiting
            if self.alive[p]:
                self._dispatch(p, t)  # new slots take them at once
            else:
                self._evict_waiting(p, t)  # no slot left to wait for: routed again or lost
        self._top(p)

    def set_demand_factor(self, factor: np.ndarray) -> None:
        """Nothing to do at the instant: shocks shape the arrivals as they are drawn."""

    def _use_latency(self, latency_s: np.ndarray) -> None:
        self.latency = latency_s.tolist()

    # --- the end -----------------------------------------------------------------------------

    def _finish(self) -> RunOutput:
        end = self.horizon_s
        self._advance(end)
        self._flush_done()
        rec = self.recorder
        grid = self.grid
        n_c, n_r, n_p = len(grid.classes), len(grid.region_ids), len(grid.pools)
        # In flight at the end, by class x region x pool: every request still travelling (at the
        # pool it is on its way to, first routed or routed again) or admitted and unfinished.
        # Each live request has one agenda entry; GONE entries are the dead records of requests
        # that were dropped, abandoned, lost or routed again (and counted as such).
        in_flight = np.zeros((n_c, n_r, n_p), dtype=np.int64)
        for _, _, req in self.agenda:
            if req[STATE] == TRAVEL:
                in_flight[req[CLS], req[REGION], req[POOL]] += 1
        for p in range(n_p):
            if self.alive[p]:
                rec.add_span(rec.capacity, p, self.up_since[p], end, len(self.free[p]))
        for _, _, req in self.agenda:
            if req[STATE] not in (ADMITTED, HOP):
                continue
            p = req[POOL]
            in_flight[req[CLS], req[REGION], p] += 1
            k = self.slots_per_job[req[CLS]]
            rec.add_span(rec.busy, p, req[START], min(req[END0 if _staged(req) else END], end), k)
            rec.add_span(rec.queued, p, req[REACH], min(req[START], end))
            if _staged(req) and req[AT] not in (p, -1) and req[STATE] == ADMITTED:  # later
                rec.add_span(rec.busy, req[AT], req[AT_START], min(req[AT_END], end))
                rec.add_span(rec.queued, req[AT], req[AT_REACH], min(req[AT_START], end))
        for p, queues in enumerate(self.queues):  # waiting at a priority pool: no agenda entry
            for queue in queues or ():
                for req in queue:
                    if req[STATE] == WAITING:
                        in_flight[req[CLS], req[REGION], p] += 1
                        rec.add_span(rec.queued, p, req[REACH], end)
        self._flush_hops()
        summary = rec.summary(in_flight)
        summary["engine_warnings"] = self._warnings()
        return RunOutput(summary, rec.timeseries(), rec.requests(), rec.flows())

    def _warnings(self) -> list[str]:
        """A queue still growing at the end with nothing to bound it: said, with when its last
        stretch of waiting began (from the recorder's queued series)."""
        sc = self.grid.scenario
        bounded = sc.admission.max_wait is not None or sc.admission.queue_limit is not None
        if bounded or self.patience:
            return []
        queued = self.recorder.queued  # (pools, intervals) request-seconds waiting
        if queued.shape[1] < 4:
            return []
        width = self.recorder.interval_s
        out = []
        for p in np.flatnonzero(queued[:, -1] > 0):
            series = queued[p] / width  # mean requests waiting per interval
            idle = np.flatnonzero(series <= 0)
            start = int(idle[-1]) + 1 if idle.size else 0
            stretch = series[start:]
            # growing: the last quarter of the stretch holds more than its first quarter
            q = max(1, stretch.size // 4)
            if stretch.size >= 4 and stretch[-q:].mean() > 2 * stretch[:q].mean():
                out.append(
                    f"the queue at {self.grid.pools[p].name} grows without bound from "
                    f"t = {start * width / 86400:.2f} days ({series[-1]:,.0f} requests waiting "
                    "at the end); nothing bounds it: set admission.max_wait, a class's "
                    "patience or admission.queue_limit, or add capacity"
                )
        return out
