"""Capacity KPIs of a flow run: the one shortfall definition, by model, hub and region; the
capacity gap (cards to add); headroom and unserved tokens.

**The shortfall** (``SHORTFALL_DEFINITION``, quoted verbatim by the report and the README).
Per model and tick:

- *demand* is the work arriving for the model, in Erlangs: requests/s x the slot-seconds each
  holds, at the policy's routing (``work_rate`` of the flow engine), summed over its pools;
- *SLO capacity* is, summed over the model's pools that are up, the largest offered load at
  which the pool, as an M/M/c queue with its slots and the mean hold of the work it receives
  this tick, still starts 95 % of requests within the strictest TTFT SLO of the classes it
  may serve (Erlang C: P(W > t) = C(c, a) exp(-(c - a) t / h) <= 0.05). A class without a
  TTFT SLO bounds the start by its end-to-end SLO; a pool none of whose classes has an SLO has
  its slots as its SLO capacity (only a queue that grows without bound breaks it).

A pool with several stations (a disaggregated pool: prefill, then decode) counts in its
**entry** station's Erlangs (prefill, where requests arrive and queue for their first token),
and its SLO capacity is set by its **bottleneck** station: the entry load at which the first
of its stations reaches that station's own SLO capacity (each station's load is the entry's
times the ratio of their mean holds). The decode station is held to the same start budget:
its waits delay every token after the first.

A model's shortfall is the start of the first stretch of at least an hour (and a tick) in
which its demand exceeds its SLO capacity; the national shortfall is the earliest model's
(``shortfall_model``). The sum over pools assumes the work of a model can move between its
pools: under a policy that does not move it (``nearest``), one hub can be short while the
model is not, which ``by_hub`` and ``shortfall_by_region`` show. Job pools (no model) count
together as the model ``"jobs"``.

**By hub**: the same, with only the work routed to the hub's pools and their SLO capacity,
model by model; a hub falls short when any of its models does. A node's hub is its catalogue
site's ``hub``, else the node's id.

**By region**: the start of the first stretch (as above) in which a model the region's demand
needs is short nationally, or over 5 % of its requests go to pools loaded beyond their SLO
capacity (or nowhere: every pool down). When spill routing spreads one hub's excess over the
others, every hub fills together and the model runs out nationally at once: then all regions
that need it share the national timestamp, which is the physics of spill, not a default. When
only some hubs fall short (no spill), only the regions routed to them do. Demand with nowhere
to go (every pool that could serve it down) holds no slot, so it counts here but not in any
model's Erlangs.

**Capacity gap**: per hub and model, at the tick where the hub's demand for the model exceeds
its SLO capacity by the most, the fewest replicas of the hub's largest pool of that model
(most slots up then) whose added slots bring the hub's SLO capacity for the model up to that
demand, by the same Erlang C criterion; cards = those replicas x the pool's cards per replica
(all its stations). The work routed to a hub is what the run's policy sent there: under spill
routing it includes other hubs' overflow, so the gap is where to add cards for the routing as
it ran (adding them may pull more work in). Job pools have no cards and are left out.

The ``model`` series (``demand_erlangs``, ``slo_capacity_erlangs``) are the tick values
averaged over the run's series interval: at an interval of an hour or less (runs up to about
two years) the first hour of demand above capacity in them is the shortfall. The grid series
and ``headroom`` compare the work arriving with all the slots that are up (no SLO): a
grid-wide reading, not the shortfall.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from gridsim.engine.queueing import erlang_c
from gridsim.grid import Grid
from gridsim.metrics.recorder import Recorder, series_frame
from gridsim.service import pool_replicas

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SUSTAIN_S = 3600.0  # a shortfall lasts at least this long (and at least one tick)
START_QUANTILE = 0.95  # share of requests that must start within the TTFT SLO
REGION_IMPACT = 0.05  # share of a region's requests at pools beyond their SLO capacity
JOBS = "jobs"  # the model key of job pools
_BISECTIONS = 64  # at most this many steps when solving for the SLO load ...
_TOLERANCE = 1e-13  # ... which stop within this share of the slots
_X_BITS = 20  # t / h is quantised to this many mantissa bits (relative 1e-6) for the cache

SHORTFALL_DEFINITION = (
    "A model runs short from the start of the first stretch of at least one hour in which the "
    "work arriving for it (requests/s x slot-seconds each, in Erlangs, at the policy's routing) "
    "exceeds its SLO capacity: summed over its pools that are up, the largest load at which "
    "each pool, as an M/M/c queue with its slots and the mean hold of its work, still starts "
    "95 % of requests within the strictest TTFT SLO of the classes it serves; the national "
    "shortfall is the first model's."
)


def slo_load(servers: FloatArray, budget_over_hold: FloatArray) -> FloatArray:
    """The largest offered load a (Erlangs) of an M/M/c queue with ``servers`` slots at which
    P(wait > t) = C(c, a) exp(-(c - a) t / h) <= 1 - START_QUANTILE, for ``budget_over_hold``
    x = t / h (inf: no budget, the slots themselves).

    The log tail grows with a and is 0 at a = c; as C <= 1, every a <= c - ln(1 / (1 -
    START_QUANTILE)) / x meets it, which narrows the bracket of a large pool to a few Erlangs
    below c. The root is bracketed and found by regula falsi with the Illinois rule (the end
    kept twice in a row has its value halved, so both ends close in superlinearly: about ten
    steps where halving took forty-five), halving instead where the secant leaves the
    bracket (a lower end at a = 0, where the log tail is -inf); it stops when the bracket is
    within ``_TOLERANCE`` of the slots and returns its lower end, a load that meets the SLO."""
    c = np.asarray(servers, dtype=np.float64)
    x = np.broadcast_to(np.asarray(budget_over_hold, dtype=np.float64), c.shape)
    out = np.where(c > 0, c, 0.0)
    log_tail_max = math.log(1.0 - START_QUANTILE)
    live = (c > 0) & np.isfinite(x)
    if live.any():
        cl, xl = c[live], x[live]

        def excess(a: FloatArray) -> FloatArray:
            """log P(wait > t) over its SLO bound: <= 0 where the load a meets the SLO."""
            with np.errstate(divide="ignore"):
                out_: FloatArray = np.log(erlang_c(cl, a)) - (cl - a) * xl - log_tail_max
            return out_

        with np.errstate(divide="ignore"):
            a_lo = np.maximum(cl + log_tail_max / xl, 0.0)
        a_hi = cl.copy()
        f_lo = excess(a_lo)
        f_hi = np.full(cl.shape, -log_tail_max)  # C(c, c) = 1: log tail 0 at a = c
        kept = np.zeros(cl.shape, dtype=np.int8)  # the end the last step kept: 1 low, -1 high
        tolerance = _TOLERANCE * np.maximum(cl, 1.0)
        for _ in range(_BISECTIONS):
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                secant = a_hi - f_hi * (a_hi - a_lo) / (f_hi - f_lo)
            halve = ~((secant > a_lo) & (secant < a_hi))  # also nan
            mid = np.where(halve, 0.5 * (a_lo + a_hi), secant)
            f_mid = excess(mid)
            ok = f_mid <= 0
            a_lo = np.where(ok, mid, a_lo)
            f_lo = np.where(ok, f_mid, f_lo)
            a_hi = np.where(ok, a_hi, mid)
            f_hi = np.where(ok, f_hi, f_mid)
            # Illinois: the end kept a second time in a row counts half
            f_hi = np.where(ok & (kept == -1), 0.5 * f_hi, f_hi)
            f_lo = np.where(~ok & (kept == 1), 0.5 * f_lo, f_lo)
            kept = np.where(ok, -1, 1).astype(np.int8)
            if (a_hi - a_lo <= tolerance).all():
                break
        out[live] = a_lo
    return out


def _quantise(x: FloatArray) -> FloatArray:
    """t / h rounded to ``_X_BITS`` mantissa bits: loads are cached per (slots, x)."""
    with np.errstate(invalid="ignore"):
        m, e = np.frexp(x)
        out: FloatArray = np.where(
            np.isfinite(x), np.ldexp(np.round(m * 2.0**_X_BITS) / 2.0**_X_BITS, e), x
        )
    return out


def first_stretch(
    starts: FloatArray, widths: FloatArray, flags: BoolArray, sustain_s: float
) -> float | None:
    """Start of the first run of consecutive flagged ticks lasting at least ``sustain_s``."""
    if not flags.any():
        return None
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        if widths[a:b].sum() >= sustain_s - 1e-9:
            return float(starts[a])
    return None


@dataclass
class _Worst:
    """A hub's worst tick for one model: what the capacity gap is computed from."""

    deficit: float = 0.0  # demand - SLO capacity, Erlangs
    t_s: float = 0.0
    demand: float = 0.0
    capacity: float = 0.0
    pool: int = -1  # entry station of the pool to grow
    others: float = 0.0  # SLO capacity of the hub's other pools of the model, Erlangs
    slots: FloatArray | None = None  # the pool's stations: slots up, t / h, hold ratio
    x: FloatArray | None = None
    ratio: FloatArray | None = None


class CapacityTracker:
    """Fed each block of ticks by the flow engine; ``kpis`` and ``series`` at the end."""

    def __init__(self, grid: Grid, svc_mean: FloatArray, tick_s: float) -> None:
        scenario = grid.scenario
        self.grid = grid
        self.start = dt.datetime.combine(scenario.horizon.start, dt.time())
        self.regions = tuple(r.id for r in scenario.regions)
        self.sustain_s = max(SUSTAIN_S, tick_s)
        demand = grid.demand
        self.tokens_per_request = demand.mean_input_tokens + demand.mean_output_tokens
        pools = grid.pools
        n_p = len(pools)
        self.entry_of = np.asarray(grid.service.entry, dtype=np.intp)
        self.entries = np.flatnonzero(self.entry_of == np.arange(n_p))
        self.later = np.flatnonzero(self.entry_of != np.arange(n_p))
        pos = np.full(n_p, -1, dtype=np.intp)
        pos[self.entries] = np.arange(self.entries.size)
        self.entry_pos = pos[self.entry_of]  # each station's pool, as a column of entries
        self.budget_s, self.hold_static_s = start_budgets_and_holds(grid, svc_mean)
        # models and hubs of the pools (entry stations)
        self.models = sorted({pools[p].model or JOBS for p in self.entries})
        nodes = {n.id: n for n in scenario.nodes}
        sites = grid.catalog.sites

        def hub_of(node_id: str) -> str:
            site = sites.get(nodes[node_id].site or "")
            return site.hub if site is not None and site.hub else node_id

        pool_model = [self.models.index(pools[p].model or JOBS) for p in self.entries]
        keys = [(hub_of(pools[p].node_id), pools[p].model or JOBS) for p in self.entries]
        self.hubs = sorted({h for h, _ in keys})
        self.pairs = sorted(set(keys))
        n_e = self.entries.size
        self.pool_model = np.zeros((n_e, len(self.models)))
        self.pool_model[np.arange(n_e), pool_model] = 1.0
        pair_of = [self.pairs.index(key) for key in keys]
        self.pool_pair = np.zeros((n_e, len(self.pairs)))
        self.pool_pair[np.arange(n_e), pair_of] = 1.0
        self.pair_hub = np.zeros((len(self.pairs), len(self.hubs)))
        for j, (h, _) in enumerate(self.pairs):
            self.pair_hub[j, self.hubs.index(h)] = 1.0
        # the models each class may be served by (a region needs those of its classes)
        entry_serves = np.asarray(grid.serves)[:, self.entries].astype(np.float64)  # (C, E)
        self.class_model = (entry_serves @ self.pool_model) > 0  # (C, M)
        self._cache: dict[tuple[float, float], float] = {}
        self.worst = [_Worst() for _ in self.pairs]
        self.rows: list[FloatArray] = []  # per tick: start, width, demand, capacity, tokens/s
        self.model_rows: list[FloatArray] = []  # per tick: demand (M), SLO capacity (M)
        self.hub_rows: list[BoolArray] = []  # per tick: hub short (H), any of its models
        self.region_rows: list[BoolArray] = []  # per tick: region short (R)

    # --- per block ------------------------------------------------------------------------

    def add(
        self,
        t0: float,
        widths: FloatArray,
        work_rate: FloatArray,
        lam: FloatArray,
        arrivals: FloatArray,
        region_flow: FloatArray,
        slots_up: FloatArray,
    ) -> None:
        """One block of ticks: ``widths`` (T,) s; ``work_rate`` (T, P) Erlangs of new work and
        ``lam`` (T, P) requests/s reaching each station; ``arrivals`` (T, R, C) requests;
        ``region_flow`` (T, R, P) requests sent from each region to each pool (entry
        stations); ``slots_up`` (P,) the slots up through the block (events end blocks)."""
        starts = t0 + np.concatenate([[0.0], np.cumsum(widths)[:-1]])
        tokens = (arrivals * self.tokens_per_request[None, None, :]).sum(axis=(1, 2)) / widths
        all_slots = np.full(widths.shape, float(slots_up.sum()))
        self.rows.append(
            np.column_stack([starts, widths, work_rate.sum(axis=1), all_slots, tokens])
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            hold = np.where(lam > 0, work_rate / lam, self.hold_static_s[None, :])
        hold = np.where(np.isfinite(hold) & (hold > 0), hold, self.hold_static_s[None, :])
        x = _quantise(self.budget_s[None, :] / hold)  # (T, P)
        slots = np.broadcast_to(slots_up[None, :], x.shape)
        k = self._slo_loads(slots, x)  # each station's SLO capacity, its own Erlangs
        # in its entry's Erlangs: a station's load is the entry's x the ratio of their holds
        ratio = hold[:, self.entry_of] / hold
        k_entry = k * ratio
        pool_cap = k_entry[:, self.entries].copy()  # (T, E)
        for s in self.later:
            col = self.entry_pos[s]
            pool_cap[:, col] = np.minimum(pool_cap[:, col], k_entry[:, s])
        pool_demand = work_rate[:, self.entries]
        model_d, model_k = pool_demand @ self.pool_model, pool_cap @ self.pool_model
        pair_d, pair_k = pool_demand @ self.pool_pair, pool_cap @ self.pool_pair
        self.model_rows.append(np.hstack([model_d, model_k]))
        self.hub_rows.append((pair_d > pair_k).astype(np.float64) @ self.pair_hub > 0)
        # regions: a model they need short nationally, or their requests at pools beyond SLO
        model_short = model_d > model_k
        beyond = (pool_demand > pool_cap).astype(np.float64)
        total = arrivals.sum(axis=2)  # (T, R)
        flow = region_flow[:, :, self.entries]
        routed = flow.sum(axis=2)
        hit = np.einsum("trp,tp->tr", flow, beyond) + np.maximum(total - routed, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            hit_share = np.where(total > 0, hit / total, 0.0)
        needs = (arrivals > 0).astype(np.float64) @ self.class_model.astype(np.float64) > 0
        needs_short = (needs & model_short[:, None, :]).any(axis=2)
        self.region_rows.append(needs_short | (hit_share > REGION_IMPACT))
        self._track_worst(starts, pair_d, pair_k, pool_cap, slots_up, x, ratio)

    def _slo_loads(self, slots: FloatArray, x: FloatArray) -> FloatArray:
        """``slo_load`` per (slots, t / h), each distinct pair solved once for the run."""
        # one complex key per pair (slots real, x imaginary): np.unique of a flat complex
        # array sorts far faster than of rows, in the same (slots, x) order
        keys = np.empty(slots.size, dtype=np.complex128)
        keys.real = slots.reshape(-1)
        keys.imag = x.reshape(-1)
        uniq, inverse = np.unique(keys, return_inverse=True)
        pairs = list(zip(uniq.real.tolist(), uniq.imag.tolist(), strict=True))
        cache = self._cache
        missing = [i for i, pair in enumerate(pairs) if pair not in cache]
        if missing:
            solved = slo_load(uniq.real[missing], uniq.imag[missing])
            for i, a in zip(missing, solved.tolist(), strict=True):
                cache[pairs[i]] = a
        values = np.array([cache[pair] for pair in pairs])
        out: FloatArray = values[inverse.reshape(-1)].reshape(slots.shape)
        return out

    def _track_worst(
        self,
        starts: FloatArray,
        pair_d: FloatArray,
        pair_k: FloatArray,
        pool_cap: FloatArray,
        slots_up: FloatArray,
        x: FloatArray,
        ratio: FloatArray,
    ) -> None:
        """Keep, per hub and model, the tick where demand exceeds SLO capacity the most."""
        deficit = pair_d - pair_k
        for j in np.flatnonzero(deficit.max(axis=0) > 0):
            i = int(np.argmax(deficit[:, j]))
            worst = self.worst[j]
            if deficit[i, j] <= worst.deficit:
                continue
            members = np.flatnonzero(self.pool_pair[:, j])
            grow = [e for e in members if self.grid.pools[self.entries[e]].kind == "llm"]
            up = [e for e in grow if slots_up[self.entries[e]] > 0]
            if not up:
                continue
            e = max(up, key=lambda m: (slots_up[self.entries[m]], -m))
            stations = np.flatnonzero(self.entry_pos == e)
            self.worst[j] = _Worst(
                deficit=float(deficit[i, j]),
                t_s=float(starts[i]),
                demand=float(pair_d[i, j]),
                capacity=float(pair_k[i, j]),
                pool=int(self.entries[e]),
                others=float(pair_k[i, j] - pool_cap[i, e]),
                slots=slots_up[stations].astype(np.float64),
                x=x[i, stations].copy(),
                ratio=ratio[i, stations].copy(),
            )

    # --- results ----------------------------------------------------------------------------

    def _stacked(self) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray, BoolArray]:
        n_m, n_h, n_r = len(self.models), len(self.hubs), len(self.regions)
        rows = np.vstack(self.rows) if self.rows else np.zeros((0, 5))
        models = np.vstack(self.model_rows) if self.model_rows else np.zeros((0, 2 * n_m))
        hubs = np.vstack(self.hub_rows) if self.hub_rows else np.zeros((0, n_h), dtype=bool)
        regions = (
            np.vstack(self.region_rows) if self.region_rows else np.zeros((0, n_r), dtype=bool)
        )
        return rows[:, 0], rows[:, 1], models, hubs, regions

    def series(self, interval_s: float) -> pd.DataFrame:
        """Tidy series per interval: the grid's demand and capacity (all slots up, and tokens/s)
        and headroom; per model (entity_kind "model") demand and SLO capacity in Erlangs."""
        rows = np.vstack(self.rows) if self.rows else np.zeros((0, 5))
        start, width, demand, capacity, tokens = rows.T
        bins = (start // interval_s).astype(np.intp)
        n = int(bins.max()) + 1 if bins.size else 0
        weight = np.bincount(bins, width, n)

        def mean(x: FloatArray) -> FloatArray:
            with np.errstate(invalid="ignore", divide="ignore"):
                out: FloatArray = np.bincount(bins, x * width, n) / weight
            return out

        d, c, tok = mean(demand), mean(capacity), mean(tokens)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_slot = np.where(d > 0, tok / d, np.nan)  # tokens/s one busy slot yields
            values = {
                "demand_erlangs": d,
                "capacity_slots": c,
                "headroom": np.where(c > 0, 1.0 - d / c, np.nan),
                "demand_tokens_per_s": tok,
                "capacity_tokens_per_s": c * per_slot,
            }
        times = np.arange(n) * interval_s
        frames = [series_frame(times, "grid", "national", m, v) for m, v in values.items()]
        _, _, models, _, _ = self._stacked()
        n_m = len(self.models)
        for m, model in enumerate(self.models):
            frames.append(series_frame(times, "model", model, "demand_erlangs", mean(models[:, m])))
            frames.append(
                series_frame(
                    times, "model", model, "slo_capacity_erlangs", mean(models[:, n_m + m])
                )
            )
        return pd.concat(frames, ignore_index=True)

    def kpis(self, rec: Recorder) -> dict[str, Any]:
        rows = np.vstack(self.rows) if self.rows else np.zeros((0, 5))
        _, width, demand, capacity, _ = rows.T
        with np.errstate(invalid="ignore", divide="ignore"):
            headroom = np.where(capacity > 0, 1.0 - demand / capacity, np.nan)
        demanded = float(rec.input_demanded.sum() + rec.output_demanded.sum())
        served = float(rec.input_served.sum() + rec.output_served.sum())
        starts, widths, models, hub_short, regions = self._stacked()
        n_m = len(self.models)
        model_d, model_k = models[:, :n_m], models[:, n_m:]
        by_model: dict[str, Any] = {}
        model_at: dict[str, float] = {}
        for m, model in enumerate(self.models):
            at = first_stretch(starts, widths, model_d[:, m] > model_k[:, m], self.sustain_s)
            peak = int(np.argmax(model_d[:, m])) if starts.size else -1
            by_model[model] = {
                "shortfall_at": self._when(at),
                "shortfall_at_s": at,
                "peak_demand_erlangs": float(model_d[peak, m]) if peak >= 0 else 0.0,
                "slo_capacity_erlangs": float(model_k[peak, m]) if peak >= 0 else 0.0,
            }
            if at is not None:
                model_at[model] = at
        first = min(model_at.items(), key=lambda kv: (kv[1], kv[0]), default=None)
        by_hub = {}
        for h, hub in enumerate(self.hubs):
            at = first_stretch(starts, widths, hub_short[:, h], self.sustain_s)
            by_hub[hub] = {"shortfall_at": self._when(at), "shortfall_at_s": at}
        by_region = {
            rid: self._when(first_stretch(starts, widths, regions[:, r], self.sustain_s))
            for r, rid in enumerate(self.regions)
        }
        gap = self._gap()
        at_s = first[1] if first else None
        return {
            "definition": SHORTFALL_DEFINITION,
            "shortfall_at": self._when(at_s),
            "shortfall_at_s": at_s,
            "shortfall_day": None if at_s is None else at_s / 86400.0,
            "shortfall_model": first[0] if first else None,
            "shortfall_by_region": by_region,
            "by_model": by_model,
            "by_hub": by_hub,
            "gap": gap,
            "gap_cards": sum(row["cards_to_add"] for row in gap),
            "headroom": {
                "mean": _finite(np.average(headroom, weights=width) if width.sum() else math.nan),
                # no interval with capacity up (an outage all along): no minimum, no warning
                "min": _finite(
                    float(np.min(up)) if (up := headroom[capacity > 0]).size else math.nan
                ),
            },
            "unserved_tokens": max(0, round(demanded - served)),
        }

    def _gap(self) -> list[dict[str, Any]]:
        """Rows of the capacity gap, the most cards first (only hubs and models short)."""
        out: list[dict[str, Any]] = []
        for (hub, model), worst in zip(self.pairs, self.worst, strict=True):
            if worst.deficit <= 0 or worst.slots is None:
                continue
            replicas, cards = self._replicas_to_add(worst)
            spec = self.grid.pools[worst.pool]
            out.append(
                {
                    "hub": hub,
                    "model": model,
                    "accelerator": spec.accelerator or "",
                    "cards_to_add": cards,
                    "replicas_to_add": replicas,
                    "peak_demand_erlangs": worst.demand,
                    "slo_capacity_erlangs": worst.capacity,
                    "peak_at": self._when(worst.t_s),
                }
            )
        out.sort(key=lambda r: (-r["cards_to_add"], r["hub"], r["model"]))
        return out

    def _replicas_to_add(self, worst: _Worst) -> tuple[int, int]:
        """The fewest replicas of ``worst.pool`` (as the scenario counts them) that bring the
        hub's SLO capacity for the model to its demand at the worst tick, and their cards."""
        assert worst.slots is not None and worst.x is not None and worst.ratio is not None
        slots_now, x, ratio = worst.slots, worst.x, worst.ratio
        grid = self.grid
        stations = [p for p in range(len(grid.pools)) if grid.pools[p].entry == worst.pool]
        specs = [grid.pools[s] for s in stations]
        base = self._declared_replicas(worst.pool)

        def added(n: int) -> tuple[FloatArray, int]:
            """Simulated slots each station gains with n more pool replicas, and the cards."""
            extra = [
                pool_replicas(s.replicas_per_pool_replica, base + n)
                - pool_replicas(s.replicas_per_pool_replica, base)
                for s in specs
            ]
            slots = np.array(
                [e * s.slots_per_replica * s.share for e, s in zip(extra, specs, strict=True)]
            )
            cards = sum(
                e * (s.serving.accelerators_per_replica if s.serving else 0)
                for e, s in zip(extra, specs, strict=True)
            )
            return slots, cards

        def enough(n: int) -> bool:
            slots, _ = added(n)
            k = slo_load(slots_now + slots, x) * ratio
            return worst.others + float(k.min()) >= worst.demand

        hi = 1
        while not enough(hi):
            hi *= 2
            if hi > 2**40:  # cannot happen with a finite demand; guards a bad input
                raise ValueError(f"no replica count of pool {specs[0].name} meets its demand")
        lo = hi // 2  # not enough (or 0)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if enough(mid) else (mid, hi)
        return hi, added(hi)[1]

    def _declared_replicas(self, entry: int) -> int:
        """The scenario's replicas of the pool whose entry station is ``entry``."""
        spec = self.grid.pools[entry]
        node = next(n for n in self.grid.scenario.nodes if n.id == spec.node_id)
        pool = next(p for p in node.pools if p.id == spec.pool_id)
        return int(pool.replicas or 0)

    def _when(self, t_s: float | None) -> str | None:
        return None if t_s is None else (self.start + dt.timedelta(seconds=t_s)).isoformat()


def start_budgets_and_holds(grid: Grid, svc_mean: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per station: the start budget of the classes its pool may serve (the strictest TTFT
    SLO, else end-to-end SLO; inf: none bounds the start), and the hold of the station when
    idle: its classes' mean holds ``svc_mean`` (classes, stations), weighted by national
    request rates (1 s where it holds none)."""
    entry_of = np.asarray(grid.service.entry, dtype=np.intp)
    serves = np.asarray(grid.serves)[:, entry_of]  # (C, P): classes of each station
    classes = grid.scenario.demand.classes
    budgets = np.array([_budget_s(c.slo.ttft, c.slo.e2e) for c in classes])
    budget_s: FloatArray = np.where(serves, budgets[:, None], np.inf).min(axis=0, initial=np.inf)
    rates = grid.demand.mean_rates(np.array([0.0, 3600.0]))[0].sum(axis=0)  # (C,)
    weights = np.where(serves, np.maximum(rates, 1e-300)[:, None], 0.0)
    svc = np.asarray(svc_mean, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        held = (weights * svc).sum(axis=0) / weights.sum(axis=0)
    hold_s: FloatArray = np.where(np.isfinite(held) & (held > 0), held, 1.0)
    return budget_s, hold_s


def _budget_s(ttft_s: float | None, e2e_s: float | None) -> float:
    """The start budget a class's SLO sets: its TTFT, else its end-to-end SLO, else none."""
    if ttft_s is not None:
        return float(ttft_s)
    return float(e2e_s) if e2e_s is not None else math.inf


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def tightest_headroom(timeseries: pd.DataFrame) -> pd.DataFrame:
    """SLO headroom of the tightest model over time, from a run's ``model`` series: 1 - the
    largest demand / SLO capacity of any model (below 0: that model is beyond its SLO capacity,
    and an hour of it is the shortfall). Columns ``time_s``, ``value``; empty without the
    series (request fidelity)."""
    models = timeseries[timeseries["entity_kind"] == "model"]
    wide = models.pivot_table(
        index=["time_s", "entity_id"], columns="metric", values="value", aggfunc="first"
    )
    if wide.empty or not {"demand_erlangs", "slo_capacity_erlangs"} <= set(wide.columns):
        return pd.DataFrame({"time_s": pd.Series(dtype=float), "value": pd.Series(dtype=float)})
    with np.errstate(invalid="ignore", divide="ignore"):
        load = wide["demand_erlangs"] / wide["slo_capacity_erlangs"]
    # a model with demand and no SLO capacity at all is infinitely short
    load = load.where(
        wide["slo_capacity_erlangs"] > 0, np.where(wide["demand_erlangs"] > 0, np.inf, 0.0)
    )
    worst = load.groupby(level="time_s").max()
    return pd.DataFrame(
        {"time_s": worst.index.to_numpy(dtype=float), "value": 1.0 - worst.to_numpy()}
    )
