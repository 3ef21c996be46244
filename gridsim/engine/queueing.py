"""Queueing formulas for the flow engine: Erlang C, and wait distributions as weighted points."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from gridsim.demand import LengthSampler
from gridsim.engine import mmng
from gridsim.erlang import erlang_c
from gridsim.scenario.demand_spec import Constant, Distribution, Exponential, Lognormal

FloatArray = npt.NDArray[np.float64]
EXP_POINTS = 6  # points of the Erlang C exponential wait tail, one per equal-mass band


def _band_means(n: int) -> FloatArray:
    """Means of Exp(1) within its n equal-probability bands: each point stays inside its band
    and together they keep the law's mean exactly (mid-band quantiles carry only 0.943 of it
    at n = 6). E[X; a < X < b] = (a + 1) e^-a - (b + 1) e^-b."""
    with np.errstate(divide="ignore", invalid="ignore"):
        edges = -np.log1p(-np.arange(n + 1) / n)  # the last edge is infinite
        tail = np.where(np.isinf(edges), 0.0, (edges + 1) * np.exp(-edges))
    out: FloatArray = (tail[:-1] - tail[1:]) * n
    return out


_EXP_BAND_MEANS = _band_means(EXP_POINTS)


def wait_points(
    w_zero: FloatArray,
    w_exp: FloatArray,
    exp_mean: FloatArray,
    w_old: FloatArray,
    old_mean: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Wait values and weights per (class, pool): zero, exponential quantiles, carried-over."""
    exp_vals = _EXP_BAND_MEANS[None, None, :] * exp_mean[:, :, None]
    values = np.concatenate([np.zeros((*w_zero.shape, 1)), exp_vals, old_mean[:, :, None]], axis=2)
    weights = np.concatenate(
        [
            w_zero[:, :, None],
            np.repeat(w_exp[:, :, None] / EXP_POINTS, EXP_POINTS, axis=2),
            w_old[:, :, None],
        ],
        axis=2,
    )
    return values, weights


# --- admission rules: queue limits, a maximum wait and impatient users ----------------------------

WAIT_POINTS = 1 + EXP_POINTS  # a pool's wait law as points: no wait, then equal-mass bands
_UNIFORM_NODES = 160  # quadrature nodes over the patience range ...
_GEOMETRIC_NODES = 96  # ... near zero, where a lightly loaded pool's waits live ...
_PEAK_NODES = 61  # ... and around the most likely wait of an overloaded one
# the nodes over [0, 1] of the range (uniform, geometric) and around the peak (in widths:
# either side of it when overloaded, else the first decay lengths from 0)
_UNIFORM_BASE = np.linspace(0.0, 1.0, _UNIFORM_NODES)
_GEOMETRIC_BASE = np.geomspace(1e-9, 1.0, _GEOMETRIC_NODES)
_PEAK_OFFSETS_OVER = np.linspace(-10.0, 10.0, _PEAK_NODES)
_PEAK_OFFSETS_UNDER = np.linspace(0.0, 30.0, _PEAK_NODES)
_CHAIN_STATES_MAX = 200_000  # queue lengths followed by the finite-buffer chain
NEGLIGIBLE_WAIT_LOG = 40.0
EMPIRICAL_KINKS_MAX = 64  # an empirical patience with at most this many values gets kink nodes


@dataclass(frozen=True)
class PatienceLaw:
    """How long a user waits before leaving: P(patience < x) and where that reaches 1."""

    cdf: Callable[[FloatArray], FloatArray]
    upper_s: float  # cdf(upper_s) >= 1 - 1e-12
    mean_s: float
    kinks_s: tuple[float, ...] = ()  # where the cdf jumps (constant patience)
    # the law as the compiled quadrature reads it (``gridsim.engine.mmng``): its kind and
    # parameters, and the sorted values of an empirical law
    kind: int = mmng.EXPONENTIAL
    params: tuple[float, float] = (1.0, 1.0)
    support: tuple[float, ...] = ()


def patience_law(spec: Distribution | None) -> PatienceLaw | None:
    """The law of a class's ``patience:`` (None: the class waits as long as it must)."""
    if spec is None:
        return None
    if isinstance(spec, Exponential):
        m = float(spec.mean)
        return PatienceLaw(
            lambda x: -np.expm1(-np.maximum(x, 0.0) / m), 28.0 * m, m, (), mmng.EXPONENTIAL, (m, m)
        )
    if isinstance(spec, Constant):
        v = float(spec.value)
        return PatienceLaw(lambda x: (x > v).astype(np.float64), v, v, (v,), mmng.CONSTANT, (v, v))
    if isinstance(spec, Lognormal):
        s = float(spec.sigma)
        scale = float(spec.mean) * math.exp(-0.5 * s * s)
        law = stats.lognorm(s, scale=scale)
        upper = float(law.ppf(1 - 1e-12))
        return PatienceLaw(
            lambda x: law.cdf(x), upper, float(spec.mean), (), mmng.LOGNORMAL, (s, scale)
        )
    values = np.sort(np.asarray(LengthSampler(spec, tokens=False).support(), np.float64))
    n = values.size

    def ecdf(x: FloatArray) -> FloatArray:
        out: FloatArray = np.searchsorted(values, x, side="left") / n  # P(patience < x)
        return out

    # the cdf jumps at each distinct value: where there are few, quadrature nodes go there (as
    # at a constant patience); a long trace's many small jumps the uniform nodes resolve
    distinct = np.unique(values)
    kinks = tuple(float(x) for x in distinct) if distinct.size <= EMPIRICAL_KINKS_MAX else ()
    return PatienceLaw(
        ecdf,
        float(values[-1]),
        float(values.mean()),
        kinks,
        mmng.EMPIRICAL,
        (float(n), float(n)),
        tuple(float(x) for x in values),
    )


@dataclass(frozen=True)
class Outcome:
    """What becomes of the requests reaching each pool, per pool and class, in steady state."""

    stable: npt.NDArray[np.bool_]  # (P,) False where no steady state exists (the rest is nan)
    served: FloatArray  # (P, C) share of the class's arrivals that is served
    dropped: FloatArray  # (P, C) turned away: queue limit or maximum wait
    abandoned: FloatArray  # (P, C) left when their patience ran out
    wait_values: FloatArray  # (P, C, J) waits (s) of the served: no wait, then band means
    wait_weights: FloatArray  # (P, C, J) their shares of all arrivals; sum over J = served
    mean_wait_all_s: FloatArray  # (P, C) time in queue over all arrivals (leavers: until they go)


def stationary(
    servers: FloatArray,
    arrival_rps: FloatArray,
    load: FloatArray,
    class_share: FloatArray,
    patience: Sequence[PatienceLaw | None],
    max_wait_s: float | None = None,
    queue_limit: int | None = None,
    kappa: FloatArray | None = None,
    work_share: FloatArray | None = None,
) -> Outcome:
    """Steady state of FCFS pools under the admission rules, for each pool at once.

    ``servers`` slots; ``arrival_rps`` requests/s; ``load`` offered Erlangs; ``class_share``
    (P, C) the classes' shares of each pool's arrivals; ``patience`` per class; ``kappa`` the
    variability factor ``(ca^2 + cs^2) / 2`` (1: Poisson arrivals, exponential service);
    ``work_share`` (P, C) the classes' shares of the offered work (default: ``class_share``).
    Classes with different slot times weigh in the queue by their work: the offered wait
    grows with the work that stays, so the patience mixture in H is weighted by work (with
    one slot time for all, the textbook M/M/n+G; in overload its fluid limit keeps the work
    that stays equal to the slots, sum_c a_c (1 - G_c(w)) = n).

    - Nothing limits waiting: Erlang C, its wait scaled by ``kappa`` (Allen-Cunneen); no steady
      state at or above full load.
    - A maximum wait or patience (no queue limit): M/M/n+G after Zeltyn & Mandelbaum (2005):
      the offered wait V (what an infinitely patient arrival would wait) has an atom
      ``E / (E + lambda J)`` at 0 and density ``lambda exp(lambda H(x) - n mu x) / (E + lambda J)``
      with ``H(x) = int_0^x (1 - G(u)) du`` over the classes' patience mixture G (a maximum wait
      tau makes everyone "patience <= tau"), ``J`` its integral and ``E`` the Erlang ratio
      ``sum_{k<n} a^k/k! / (a^(n-1)/(n-1)!)``. An arrival of class c is dropped if V > tau,
      abandons if its patience < V, else is served after V. ``kappa`` stretches the wait axis
      (V = kappa Y, Y of the pool with patience read at kappa y), as Allen-Cunneen does.
    - A queue limit: the birth-death chain of M/M/n/K with exponential abandonment at each
      class's mean patience (exact for exponential patience; others by their mean); a maximum
      wait caps the queue at the length whose expected wait is tau.
    """
    n = np.asarray(servers, np.float64)
    lam = np.asarray(arrival_rps, np.float64)
    a = np.asarray(load, np.float64)
    share = np.asarray(class_share, np.float64)
    n_p, n_c = share.shape
    kap = np.ones(n_p) if kappa is None else np.maximum(np.asarray(kappa, np.float64), 1e-9)
    out = _Out(n_p, n_c)
    down = (n <= 0) & (lam > 0)
    out.served[down] = 0.0
    out.dropped[down] = 1.0
    out.weights[down] = 0.0
    busy = (n > 0) & (lam > 0) & (a > 0)
    # Pools whose chance of waiting is below e^-40 (Erlang C bounds it: patience only shortens
    # the queue) keep the default: all served at once.
    with np.errstate(invalid="ignore", divide="ignore"):
        log_wait = np.log(a / np.maximum(n - a, 1e-300)) - _log_erlang_ratio(n, a)
    busy &= ~((a < n) & (log_wait < -NEGLIGIBLE_WAIT_LOG))
    if busy.any():
        idx = np.flatnonzero(busy)
        if queue_limit is not None:
            _finite_buffer(out, idx, n, lam, a, share, patience, max_wait_s, queue_limit)
        elif max_wait_s is None and all(p is None for p in patience):
            _erlang_c(out, idx, n, lam, a, kap)
        else:
            work = share if work_share is None else np.asarray(work_share, np.float64)
            _impatient(out, idx, n, lam, a, share, work, patience, max_wait_s, kap)
    # Shares are differences of probabilities: keep float noise from making one negative
    # (in place over every row: an unstable row's nan stays nan)
    np.maximum(out.weights, 0.0, out=out.weights)
    work = share if work_share is None else np.asarray(work_share, np.float64)
    _within_slots(out, n, a, work, patience)
    return Outcome(
        out.stable,
        out.served,
        out.dropped,
        out.abandoned,
        out.values,
        out.weights,
        out.mean_all,
    )


class _Out:
    def __init__(self, n_p: int, n_c: int) -> None:
        self.stable = np.ones(n_p, dtype=bool)
        self.served = np.ones((n_p, n_c))
        self.dropped = np.zeros((n_p, n_c))
        self.abandoned = np.zeros((n_p, n_c))
        self.values = np.zeros((n_p, n_c, WAIT_POINTS))
        self.weights = np.zeros((n_p, n_c, WAIT_POINTS))
        self.weights[:, :, 0] = 1.0
        self.mean_all = np.zeros((n_p, n_c))

    def unstable(self, idx: npt.NDArray[np.intp]) -> None:
        self.stable[idx] = False
        for arr in (self.served, self.dropped, self.abandoned, self.values, self.weights):
            arr[idx] = np.nan
        self.mean_all[idx] = np.nan

    def exponential_waits(
        self, idx: npt.NDArray[np.intp], p_wait: FloatArray, cond_mean: FloatArray
    ) -> None:
        """Served waits: none with the rest of ``served``, else exponential of ``cond_mean``
        with total weight ``p_wait`` (both (len(idx), C))."""
        self.values[idx, :, 1:] = _EXP_BAND_MEANS[None, None, :] * cond_mean[:, :, None]
        self.weights[idx, :, 1:] = (p_wait / EXP_POINTS)[:, :, None]
        self.weights[idx, :, 0] = self.served[idx] - p_wait


def _within_slots(
    out: _Out,
    n: FloatArray,
    a: FloatArray,
    work: FloatArray,
    patience: Sequence[PatienceLaw | None],
) -> None:
    """A pool serves at most its slots. The laws for several classes are approximations (one
    mean slot time, a work-weighted patience mixture, one abandonment rate in the queue) that
    can overshoot in overload by a fraction of a percent: scale the served down to the slots
    and count the rest as leaving the way the class leaves (abandoned with a patience, else
    dropped)."""
    ok = out.stable & (a > 0) & (n > 0)
    served_work = a * (work * np.where(ok[:, None], out.served, 0.0)).sum(axis=1)
    over = ok & (served_work > n)
    if not over.any():
        return
    f = (n[over] / served_work[over])[:, None]  # (k, 1)
    excess = out.served[over] * (1 - f)
    impatient = np.array([law is not None for law in patience])
    out.served[over] *= f
    out.weights[over] *= f[:, :, None]
    out.abandoned[over] += excess * impatient[None, :]
    out.dropped[over] += excess * ~impatient[None, :]


def _log_erlang_ratio(n: FloatArray, a: FloatArray) -> FloatArray:
    """log E, E = sum_{k<n} a^k/k! / (a^(n-1)/(n-1)!), through the Poisson cdf and pmf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pmf = (n - 1) * np.log(a) - a - special.gammaln(n)
        out: FloatArray = np.log(special.gammaincc(n, a)) - log_pmf
    return out


def _erlang_c(
    out: _Out,
    idx: npt.NDArray[np.intp],
    n: FloatArray,
    lam: FloatArray,
    a: FloatArray,
    kap: FloatArray,
) -> None:
    c, ai, li = n[idx], a[idx], lam[idx]
    over = ai >= c
    out.unstable(idx[over])
    ok = ~over
    idx, c, ai, li = idx[ok], c[ok], ai[ok], li[ok]
    p_wait = erlang_c(c, ai)
    mu = li / ai
    cond = kap[idx] / (mu * (c - ai))
    n_c = out.served.shape[1]
    pw = np.repeat(p_wait[:, None], n_c, axis=1)
    out.exponential_waits(idx, pw, np.repeat(cond[:, None], n_c, axis=1))
    out.mean_all[idx] = pw * cond[:, None]


def _impatient(
    out: _Out,
    idx: npt.NDArray[np.intp],
    n: FloatArray,
    lam: FloatArray,
    a: FloatArray,
    share: FloatArray,
    work_share: FloatArray,
    patience: Sequence[PatienceLaw | None],
    tau: float | None,
    kap: FloatArray,
) -> None:
    """M/M/n+G (Zeltyn & Mandelbaum) by quadrature over the offered wait, in y = V / kappa:
    set up here, computed pool by pool by ``gridsim.engine.mmng.mmng_rows`` (compiled)."""
    c_, l_, a_ = n[idx], lam[idx], a[idx]
    s_ = work_share[idx]  # (m, C): the mixture that shapes the queue
    k_ = kap[idx]
    nmu = c_ * l_ / a_  # service rate of a full pool, requests/s
    laws = list(patience)
    n_cls = len(laws)
    patient = np.array([law is None for law in laws])
    q_inf = (s_ * patient[None, :]).sum(axis=1) if tau is None else np.zeros(len(idx))
    # Without a maximum wait the infinitely patient alone may overload the pool: no steady state.
    slope_tail = l_ * q_inf - nmu
    bad = slope_tail >= 0
    out.unstable(idx[bad])
    if bad.all():
        return
    keep = ~bad
    idx = idx[keep]
    c_, l_, a_, s_, k_, nmu, slope_tail = (v[keep] for v in (c_, l_, a_, s_, k_, nmu, slope_tail))
    m = len(idx)
    # Integrate up to the maximum wait (everyone past it is dropped), else to where every
    # impatient class has left (beyond it the offered wait's density falls off linearly).
    upper = max((law.upper_s for law in laws if law is not None), default=0.0)
    x_end = np.full(m, tau if tau is not None else upper)
    y_end = x_end / k_

    # Classes often share a law (several without patience, or one law object): everything
    # per class depends on the class only through its law, so it is computed once per
    # distinct law (``distinct``, axis 1 of the (pool, law) arrays) and spread to the
    # classes (``of_cls``) at the end.
    distinct: list[PatienceLaw | None] = []
    of_cls = np.empty(n_cls, dtype=np.intp)
    for ci, law in enumerate(laws):
        j = next((j for j, d in enumerate(distinct) if d is law), len(distinct))
        if j == len(distinct):
            distinct.append(law)
        of_cls[ci] = j
    n_law = len(distinct)
    impatient_cls = [ci for ci, law in enumerate(laws) if law is not None]
    # Each impatient law's share of the work: the classes' shares summed per law (in class
    # order), so that the mixture is one term per law, not per class.
    impatient_laws = np.array(sorted({int(of_cls[ci]) for ci in impatient_cls}), dtype=np.intp)
    s_law = np.zeros((m, n_law))
    for ci in impatient_cls:
        s_law[:, of_cls[ci]] += s_[:, ci]
    kinds = np.array([mmng.PATIENT if d is None else d.kind for d in distinct], dtype=np.intp)
    pa = np.array([1.0 if d is None else d.params[0] for d in distinct])
    pb = np.array([1.0 if d is None else d.params[1] for d in distinct])
    supports = [np.asarray(() if d is None else d.support, np.float64) for d in distinct]
    offsets = np.zeros(n_law + 1, dtype=np.intp)
    offsets[1:] = np.cumsum([x.size for x in supports])
    support = np.concatenate([np.zeros(0), *supports])
    kinks = np.array([kx for law in laws if law is not None for kx in law.kinks_s], np.float64)
    served = np.empty((m, n_law))
    dropped = np.empty((m, n_law))
    abandoned = np.empty((m, n_law))
    values = np.empty((m, n_law, EXP_POINTS))
    weights = np.empty((m, n_law, EXP_POINTS))
    p0 = np.empty(m)
    mean_all = np.empty((m, n_law))
    mmng.mmng_rows(
        l_,
        nmu,
        k_,
        s_law,
        slope_tail,
        y_end,
        x_end,
        _log_erlang_ratio(c_, a_),
        tau is not None,
        kinds,
        pa,
        pb,
        support,
        offsets,
        impatient_laws,
        kinks,
        _UNIFORM_BASE,
        _GEOMETRIC_BASE,
        _PEAK_OFFSETS_OVER,
        _PEAK_OFFSETS_UNDER,
        served,
        dropped,
        abandoned,
        values,
        weights,
        p0,
        mean_all,
    )
    mmng.spread_to_classes(
        np.asarray(idx, dtype=np.intp),
        of_cls,
        served,
        dropped,
        abandoned,
        values,
        weights,
        p0,
        mean_all,
        out.served,
        out.dropped,
        out.abandoned,
        out.values,
        out.weights,
        out.mean_all,
    )


def band_means(w: FloatArray, v: FloatArray, bands: int) -> tuple[FloatArray, FloatArray]:
    """Points of a discrete law (weights ``w`` (..., N) at increasing values ``v``): the means
    of ``bands`` equal-mass bands, each carrying total / bands (a point split across a band
    edge is shared). Returns values and weights (..., bands)."""
    v = np.broadcast_to(v, w.shape)
    cw = _cumsum0(w)
    cm = _cumsum0(w * v)
    # the total as the cumulative sum ends (not summed another way): the top level is then
    # exactly the last cumulative weight, and no rounding gap lends weight to a point after it
    total = cw[..., -1:]
    levels = total * (np.arange(bands + 1) / bands)  # (..., bands+1)
    # first moment up to each level: the point where the level falls is split linearly
    i = np.clip(_count_below(cw, levels) - 1, 0, w.shape[-1] - 1)
    base_w = np.take_along_axis(cw, i, axis=-1)
    base_m = np.take_along_axis(cm, i, axis=-1)
    v_at = np.take_along_axis(v, i, axis=-1)
    moment = base_m + (levels - base_w) * v_at
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.diff(moment, axis=-1) / np.diff(levels, axis=-1)
    means = np.nan_to_num(means)
    weights = np.repeat(total / bands, bands, axis=-1)
    return means, weights


def _cumsum0(x: FloatArray) -> FloatArray:
    """Cumulative sums along the last axis after a leading 0, written in place (no
    concatenate of zeros)."""
    out = np.empty((*x.shape[:-1], x.shape[-1] + 1))
    out[..., 0] = 0.0
    np.cumsum(x, axis=-1, out=out[..., 1:])
    return out


def _count_below(cw: FloatArray, levels: FloatArray) -> npt.NDArray[np.intp]:
    """How many entries of each row of ``cw`` (..., N) are below each of its ``levels``
    (..., L). Rows of non-negative weights' sums are non-decreasing: a binary search of all
    rows at once (log2(N) steps on (..., L), each row's entries found at an offset in the
    flat array) instead of an (..., L, N) comparison. Rows with a decrease or a nan
    (negative or nan weights) are counted entry by entry."""
    n = cw.shape[-1]
    with np.errstate(invalid="ignore"):
        monotone = bool((cw[..., 1:] >= cw[..., :-1]).all())
    if not monotone:
        out: npt.NDArray[np.intp] = (cw[..., None, :] < levels[..., :, None]).sum(axis=-1)
        return out
    flat = np.ascontiguousarray(cw).reshape(-1)
    start = (np.arange(flat.size // n) * n).reshape((*cw.shape[:-1], 1))
    end = start + n
    pos = np.broadcast_to(start, levels.shape).copy()  # flat[start:pos] are below the level
    step = 1 << (n.bit_length() - 1)
    while step:  # binary lifting: take each power of two (largest first) that stays below
        probe = pos + step
        up = probe <= end
        up &= flat[np.minimum(probe, end) - 1] < levels
        pos += step * up
        step >>= 1
    found: npt.NDArray[np.intp] = pos - start
    return found


def _finite_buffer(
    out: _Out,
    idx: npt.NDArray[np.intp],
    n: FloatArray,
    lam: FloatArray,
    a: FloatArray,
    share: FloatArray,
    patience: Sequence[PatienceLaw | None],
    tau: float | None,
    queue_limit: int,
) -> None:
    """M/M/n/K with exponential abandonment: the birth-death chain of the queue length.

    An arrival finding j waiting is dropped at j = K; else it moves up through j + 1 stages,
    each ended by a service or an abandonment ahead of it (rate n mu + i theta, theta the
    queue's mean abandonment rate) unless its own patience (rate theta_c) runs out first: it
    is served with probability prod_i r_i / (r_i + theta_c) after sum_i 1 / (r_i + theta_c)
    on average given served (competing exponential clocks). Exact for one class."""
    theta_c = np.array([0.0 if law is None else 1.0 / law.mean_s for law in patience])
    for p in idx:
        c, lp, ap = float(n[p]), float(lam[p]), float(a[p])
        nmu = c * lp / ap
        theta = float((share[p] * theta_c).sum())
        q = queue_limit
        if tau is not None:
            q = min(q, math.floor(tau * nmu))
        log_below = _log_erlang_ratio(np.array([c]), np.array([ap]))[0] + math.log(c / ap)
        if theta == 0.0:
            rho = lp / nmu
            if q > _CHAIN_STATES_MAX and rho < 1:
                q = _CHAIN_STATES_MAX  # the geometric tail beyond is negligible
            j = np.arange(q + 1, dtype=np.float64)
            log_r = j * math.log(rho)
        else:
            reach = int(max(0.0, (lp - nmu) / theta) + 40 * math.sqrt(lp / theta) + 1000)
            q = min(q, reach, _CHAIN_STATES_MAX)
            j = np.arange(q + 1, dtype=np.float64)
            log_r = np.concatenate([[0.0], np.cumsum(np.log(lp / (nmu + j[1:] * theta)))])
        top = max(float(log_r.max()), log_below)
        r = np.exp(log_r - top)
        pi = r / (math.exp(log_below - top) + r.sum())  # P(arrival finds n busy, j waiting)
        limited = q == queue_limit or tau is not None
        p_block = float(pi[-1]) if limited else 0.0
        waiting = pi[:-1] if limited else pi  # (J,) states in which an arrival joins
        jj = np.arange(waiting.size, dtype=np.float64)
        stage = nmu + jj * theta  # stage i ends at rate r_i (i = 0 nearest to service)
        for ci, th in enumerate(theta_c):
            rate = stage + th  # r_i + theta_c
            log_keep = np.cumsum(np.log(stage / rate))  # P(served | j waiting ahead)
            keep = np.exp(log_keep)
            time_given = np.cumsum(1.0 / rate)  # E[wait | served, j]
            # E[time in queue | j] = sum_i P(reach stage i) / (r_i + theta_c)
            reach_i = np.exp(np.concatenate([[0.0], log_keep[:-1]]))
            sojourn = np.cumsum(reach_i / rate)
            served_wait = float((waiting * keep).sum())
            ab = float((waiting * (1 - keep)).sum())
            cond = float((waiting * keep * time_given).sum()) / max(served_wait, 1e-300)
            out.served[p, ci] = 1.0 - p_block - ab
            out.dropped[p, ci] = p_block
            out.abandoned[p, ci] = ab
            out.values[p, ci, 1:] = _EXP_BAND_MEANS * cond
            out.weights[p, ci, 1:] = served_wait / EXP_POINTS
            out.weights[p, ci, 0] = 1.0 - p_block - ab - served_wait
            out.mean_all[p, ci] = float((waiting * sojourn).sum())
