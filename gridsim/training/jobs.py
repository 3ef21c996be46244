"""Training jobs on the cards inference lends, hour by hour: placement, preemption, checkpoints.

A discrete-event schedule in hour steps (the lending changes on the hour; a job that finishes
inside an hour hands its cards back at that instant). Each hour, jobs are served earliest
deadline first (then by release and name):

- **Placement** (once, at its first hour; a job does not migrate): among its nodes, each
  from when its data is there (``release`` + ``data_tb`` over the network's
  ``bandwidth_gbps`` when the node is not its ``origin``), less the cards of the jobs already
  placed there: the one with the most card-hours free until its deadline (then the earliest),
  or, for a policy that defers, the lowest mean carbon intensity (carbon_aware) or
  electricity price (price_aware) over those hours, weighted by the cards free in them,
  preferring nodes whose free card-hours cover ``slack`` x its remaining work.
- **Cards**: whole replicas of the node's lending pools (of its accelerator, if it names
  one), most free first, up to ``max_cards``; it runs only on at least ``min_cards``. A job's
  cards at a node are interchangeable: only their number matters.
- **Preemption**: when fewer cards are free than a running job holds, it stops and loses the
  work since its last checkpoint (checkpoints every ``checkpoint_interval`` from its latest
  start). A job that is not running (re)starts on what is free, if that is at least
  ``min_cards``, in an hour when its node lends no fewer cards than in the hour before: on a
  falling lending (a morning ramp of inference) a restart would be preempted again within
  the hour and lose it all. The rule reads only the past: no forecast.
- **Growth**: when more cards are free, a running job checkpoints and restarts on them at the
  hour (elastic training): nothing is lost.
- **Green hours** (``training.green_hours_only``): a job runs only in hours when its site's
  green share reaches the scenario's target; otherwise it checkpoints and pauses.
- **Deferral** (a policy's ``defers_by``: carbon_aware, price_aware): a job runs in an hour
  only if the hour is among the greenest (cheapest) hours before its deadline whose free
  cards (less those the other jobs at its node hold now) cover ``slack`` x its remaining
  work; otherwise it checkpoints and pauses (nothing lost). Without a deadline the window is
  the horizon; where even all the window's hours fall short, it runs whenever it can. Such a
  job plans from the lending ahead, so it also starts on no more cards than its node lends
  (less those the other jobs there hold now) in every hour up to its first checkpoint; once
  running it is preempted like any other.

Everything here is deterministic: the same lending and jobs give the same schedule.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gridsim.scenario.training_spec import Training, TrainingJob
from gridsim.training.lending import HOUR_S, Lending

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass
class JobState:
    """One job's progress (card-hours) and history."""

    job: TrainingJob
    node: str | None = None
    ready_s: dict[str, float] = field(default_factory=dict)  # node -> when its data is there
    cards: int = 0  # cards held now (0: not running)
    holding: dict[int, int] = field(default_factory=dict)  # lending pool column -> replicas
    work: float = 0.0  # card-hours done, including work not yet checkpointed
    saved: float = 0.0  # card-hours at the last checkpoint
    seg_start_s: float = 0.0  # start of the current run on ``cards`` cards
    seg_work: float = 0.0  # work at that start
    started_s: float | None = None
    finished_s: float | None = None
    preemptions: int = 0
    pauses: int = 0
    resizes: int = 0
    lost_card_hours: float = 0.0
    run_card_hours: float = 0.0  # card-hours run, lost work included

    @property
    def remaining(self) -> float:
        return max(self.job.card_hours - self.work, 0.0)

    @property
    def done(self) -> bool:
        return self.finished_s is not None


@dataclass(frozen=True)
class Segment:
    """A stretch a job ran on a fixed number of cards at one node."""

    job: str
    node: str
    start_s: float
    end_s: float
    cards: int
    ended_by: str  # "preempted" | "paused" | "resized" | "finished" | "horizon"


@dataclass(frozen=True)
class Schedule:
    """The outcome: per job its state, the segments run, and the changes of the replicas each
    lending pool lends (lent replicas are all busy: whole replicas)."""

    jobs: tuple[JobState, ...]
    segments: tuple[Segment, ...]
    changes: tuple[tuple[float, int, int], ...]  # (instant, pool column, change in replicas)


def schedule_jobs(
    training: Training,
    lend: Lending,
    horizon_s: float,
    node_ids: tuple[str, ...],
    carbon_g_per_kwh: FloatArray,
    price_cny_per_kwh: FloatArray,
    bandwidth_gbps: float,
    defers_by: str | None = None,
    allowed: npt.NDArray[np.bool_] | None = None,
) -> Schedule:
    """Run ``training.jobs`` on ``lend``'s free replicas. ``carbon_g_per_kwh`` and
    ``price_cny_per_kwh`` are (hours, nodes) in ``node_ids``' order; ``defers_by`` (None,
    "carbon" or "price": the policy's) says which of them jobs wait for low hours of;
    ``allowed`` (hours, nodes), when given, the hours jobs may run at each node (green hours:
    ``training.green_hours_only``)."""
    n_h, n_p = lend.replicas.shape
    ctx = _Context(training, lend, node_ids, carbon_g_per_kwh, price_cny_per_kwh, defers_by)
    states = [JobState(job=j) for j in training.jobs]
    for st in states:
        for node in training.nodes_of(st.job) or sorted({p.node_id for p in lend.pools}):
            move_s = 0.0
            if st.job.origin is not None and node != st.job.origin and st.job.data_tb > 0:
                move_s = st.job.data_tb * 8e12 / (bandwidth_gbps * 1e9)
            st.ready_s[node] = st.job.release + move_s
    order = sorted(
        states,
        key=lambda s: (
            s.job.deadline if s.job.deadline is not None else math.inf,
            s.job.release,
            s.job.name,
        ),
    )
    lent = np.zeros((n_h, n_p), dtype=np.int64)  # replicas lent at the start of each hour
    segments: list[Segment] = []
    changes: list[tuple[float, int, int]] = []
    current = np.zeros(n_p, dtype=np.int64)  # replicas lent right now
    for h in range(n_h):
        t0 = h * HOUR_S
        t1 = min(t0 + HOUR_S, horizon_s)
        avail = lend.replicas[h].copy()
        returns: list[tuple[float, int, int]] = []
        for st in order:
            if st.done or t0 < st.job.release:
                continue
            committed: dict[str, int] = defaultdict(int)  # other jobs' cards, at most
            holding: dict[str, int] = defaultdict(int)  # ... and now
            for other in order:
                if other is not st and other.node is not None and not other.done:
                    committed[other.node] += other.job.max_cards
                    holding[other.node] += other.cards
            if st.node is None:
                st.node = ctx.place(st, h, committed)
                if st.node is None:
                    continue
            if t0 < st.ready_s[st.node]:
                continue
            cols = ctx.columns(st)
            most = st.job.max_cards
            if ctx.defers and not st.cards:  # a planned start: cards free to its checkpoint
                most = min(most, ctx.steady_cards(st, h, holding.get(st.node, 0)))
            take = _take(avail, cols, ctx.cpr, most)
            cards = int((take * ctx.cpr[cols]).sum()) if cols.size else 0
            runs = cards >= st.job.min_cards
            if runs and allowed is not None:
                runs = bool(allowed[h, ctx.node_col[st.node]])
            if runs and ctx.defers:
                runs = ctx.chosen_hour(st, h, holding.get(st.node, 0))
            if st.cards:  # running: keep, grow, pause or be preempted
                if cards < st.cards:
                    _stop(st, t0, "preempted", segments)
                elif not runs:
                    _stop(st, t0, "paused", segments)
                elif cards > st.cards:
                    _stop(st, t0, "resized", segments)
            if runs and not st.cards and ctx.falling(st, h):
                runs = False  # (re)start once the node's free cards stop falling
            if not runs:
                continue
            if not st.cards:
                st.cards, st.seg_start_s, st.seg_work = cards, t0, st.work
                st.started_s = t0 if st.started_s is None else st.started_s
            st.holding = {int(c): int(r) for c, r in zip(cols, take, strict=True) if r}
            end = min(t1, t0 + st.remaining / st.cards * HOUR_S)
            for c, r in st.holding.items():
                avail[c] -= r
                lent[h, c] += r
            st.work += st.cards * (end - t0) / HOUR_S
            st.run_card_hours += st.cards * (end - t0) / HOUR_S
            _checkpoint(st, end)
            if st.remaining <= 1e-9 * st.job.card_hours:
                st.work = st.saved = st.job.card_hours
                st.finished_s = end
                returns += [(end, c, -r) for c, r in st.holding.items()]
                _stop(st, end, "finished", segments)
        for col in np.flatnonzero(lent[h] != current):  # the hour's lending, at its start
            changes.append((t0, int(col), int(lent[h, col] - current[col])))
        current = lent[h].copy()
        for t, c, r in returns:  # jobs that finished inside the hour hand their cards back
            changes.append((t, c, r))
            current[c] += r
    for st in order:
        if st.cards:
            _stop(st, horizon_s, "horizon", segments)
    changes.sort(key=lambda c: (c[0], c[1]))
    return Schedule(tuple(states), tuple(segments), tuple(changes))


def _take(avail: IntArray, cols: IntArray, cpr: IntArray, max_cards: int) -> IntArray:
    """Replicas to take from each of ``cols``: most free first (then column order), whole
    replicas, at most ``max_cards`` cards in all."""
    take = np.zeros(cols.size, dtype=np.int64)
    left = max_cards
    for i in sorted(range(cols.size), key=lambda i: (-int(avail[cols[i]] * cpr[cols[i]]), i)):
        c = cols[i]
        r = min(int(avail[c]), left // int(cpr[c]))
        take[i] = max(r, 0)
        left -= take[i] * int(cpr[c])
    return take


def _checkpoint(st: JobState, t: float) -> None:
    """The last checkpoint at or before ``t`` of the current run (every interval from its
    start) saves the work done by then."""
    tau = st.job.checkpoint_interval
    n = math.floor((t - st.seg_start_s) / tau + 1e-9)
    at_work = st.seg_work + st.cards * n * tau / HOUR_S
    st.saved = max(st.saved, min(at_work, st.work))


def _stop(st: JobState, t: float, why: str, segments: list[Segment]) -> None:
    """End the current run at ``t``: a preemption loses the work since the last checkpoint;
    a pause or a resize checkpoints first; a finish or the horizon's end keeps it all."""
    assert st.node is not None
    if why == "preempted":
        lost = st.work - st.saved
        st.lost_card_hours += lost
        st.work = st.saved
        st.preemptions += 1
    else:
        st.saved = st.work
        st.pauses += why == "paused"
        st.resizes += why == "resized"
    segments.append(Segment(st.job.name, st.node, st.seg_start_s, t, st.cards, why))
    st.cards = 0
    st.holding = {}


class _Context:
    """What placement and deferral read: the lending, the nodes' hourly carbon and price."""

    def __init__(
        self,
        training: Training,
        lend: Lending,
        node_ids: tuple[str, ...],
        carbon: FloatArray,
        price: FloatArray,
        defers_by: str | None,
    ) -> None:
        self.training = training
        self.lend = lend
        self.node_col = {n: i for i, n in enumerate(node_ids)}
        self.pool_node = np.array([self.node_col[p.node_id] for p in lend.pools], dtype=np.intp)
        self.cpr = np.array([p.cards_per_replica for p in lend.pools], dtype=np.int64)
        if defers_by not in (None, "carbon", "price"):
            raise ValueError(f"defers_by must be None, 'carbon' or 'price', not {defers_by!r}")
        self.defers = defers_by is not None
        self.intensity = price if defers_by == "price" else carbon
        self.n_h = lend.replicas.shape[0]

    def columns(self, st: JobState, node: str | None = None) -> IntArray:
        """The lending pools a job may use at ``node`` (default: its own)."""
        node = node if node is not None else st.node
        acc = st.job.accelerator
        cols = np.flatnonzero(self.pool_node == self.node_col[str(node)])
        keep = [int(c) for c in cols if acc is None or self.lend.pools[c].accelerator == acc]
        return np.array(keep, dtype=np.intp)

    def capacity(
        self, st: JobState, node: str, first: int, last: int, taken: int = 0
    ) -> FloatArray:
        """Cards the job could run on at ``node`` in hours first..last-1, with ``taken`` cards
        of it held by others (0 in hours with fewer than its min_cards)."""
        cols = self.columns(st, node)
        if not cols.size or last <= first:
            return np.zeros(max(last - first, 0))
        cards = (self.lend.replicas[first:last][:, cols] * self.cpr[cols]).sum(axis=1) - taken
        cards = np.minimum(cards, st.job.max_cards).astype(float)
        out: FloatArray = np.where(cards >= st.job.min_cards, cards, 0.0)
        return out

    def falling(self, st: JobState, h: int) -> bool:
        """Whether the cards lent at the job's node are fewer this hour than the last: a job
        does not (re)start on a falling lending, which would preempt it again within the
        hour (known from the past alone, no forecast)."""
        if h == 0 or st.node is None:
            return False
        cols = self.columns(st)
        now, before = (self.lend.replicas[k, cols] * self.cpr[cols] for k in (h, h - 1))
        return bool(now.sum() < before.sum())

    def steady_cards(self, st: JobState, h: int, taken: int) -> int:
        """The fewest cards the job's node lends (less ``taken``) from hour ``h`` to its first
        checkpoint: a job that plans its hours from the lending starts on no more, so that
        the lending's own dips do not preempt it before its work is saved."""
        assert st.node is not None
        last = min(self.n_h, h + max(1, math.ceil(st.job.checkpoint_interval / HOUR_S - 1e-9)))
        cols = self.columns(st)
        cards = (self.lend.replicas[h:last][:, cols] * self.cpr[cols]).sum(axis=1) - taken
        return int(max(cards.min(), 0)) if cards.size else 0

    def window_end(self, st: JobState) -> int:
        d = st.job.deadline
        return self.n_h if d is None else min(self.n_h, math.ceil(d / HOUR_S - 1e-9))

    def place(self, st: JobState, h: int, committed: dict[str, int]) -> str | None:
        """The node a job goes to, decided at its first hour (see the module docstring).
        ``committed`` holds, per node, the max_cards of the unfinished jobs placed there,
        taken off its free cards so that jobs spread over the nodes."""
        best: tuple[float, ...] | None = None
        choice = None
        last = self.window_end(st)
        for k, (node, ready_s) in enumerate(st.ready_s.items()):
            first = max(h, math.ceil(ready_s / HOUR_S - 1e-9))
            if first >= self.n_h:
                continue
            cap = self.capacity(st, node, first, max(last, first + 1), committed.get(node, 0))
            if cap.sum() <= 0:
                continue
            if self.defers:
                window = self.intensity[first : first + cap.size, self.node_col[node]]
                mean = float((window * cap).sum() / cap.sum())
                finishes = cap.sum() >= st.remaining * self.training.slack
                score: tuple[float, ...] = (0.0 if finishes else 1.0, mean, float(k))
            else:  # the most card-hours it could have by its deadline, the earliest start
                score = (-float(cap.sum()), float(first), float(k))
            if best is None or score < best:
                best, choice = score, node
        return choice

    def chosen_hour(self, st: JobState, h: int, taken: int) -> bool:
        """Whether hour ``h`` is among the job's greenest (cheapest) hours ahead that cover
        ``slack`` x its remaining work, with ``taken`` cards at its node held by the other
        jobs there (or the window cannot cover it: run now)."""
        assert st.node is not None
        last = max(self.window_end(st), h + 1)
        cap = self.capacity(st, st.node, h, last, taken)
        need = st.remaining * self.training.slack
        if cap.sum() < need:
            return True
        value = self.intensity[h:last, self.node_col[st.node]]
        rank = np.lexsort((np.arange(cap.size), value))
        rank = rank[cap[rank] > 0]
        covered = np.cumsum(cap[rank])
        chosen = rank[: int(np.searchsorted(covered, need)) + 1]
        return bool((chosen == 0).any())
