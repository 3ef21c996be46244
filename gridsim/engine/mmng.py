"""The M/M/n+G law's quadrature, compiled (numba): ``queueing._impatient`` sets it up.

One pool (row) at a time: the nodes of the offered wait, the patience mixture on them, the
density of the offered wait and its mass per segment, what is served, dropped and abandoned,
the time in queue of all arrivals, and the served's waits as equal-mass band means. Written
as loops over a few hundred nodes per pool, compiled: the same sums as the array form this
replaced (up to the order of float additions), without its hundred temporary arrays a call.

Patience laws are coded ``kinds`` (per distinct law): ``PATIENT`` (never leaves), ``EXPONENTIAL``
(mean ``pa``), ``CONSTANT`` (value ``pa``), ``LOGNORMAL`` (sigma ``pa``, scale ``pb``) and
``EMPIRICAL`` (sorted values ``support[offsets[j]:offsets[j + 1]]``).
"""

from __future__ import annotations

import math
import os
from typing import Any

# The OpenMP threads of the row chunks sleep between calls instead of spinning (libgomp's
# default spins, taking a core from the engine's own thread and from the other processes of a
# sweep). Read when numba first starts its threads; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba
import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

PATIENT, EXPONENTIAL, CONSTANT, LOGNORMAL, EMPIRICAL = -1, 0, 1, 2, 3
_SQRTH = 0.70710678118654752440  # 1 / sqrt(2), as the normal cdf (cephes ndtr) uses it
_LOG2 = math.log(2.0)
# below this many rows a chunk, one thread does them all (starting threads costs more)
ROWS_PER_CHUNK_MIN = 8


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _exponential_cdf(x: float, mean: float) -> float:  # pragma: no cover - compiled
    """P(patience < x) for an exponential patience of ``mean``."""
    return -math.expm1(-max(x, 0.0) / mean)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cdf(  # pragma: no cover - compiled
    kind: int, pa: float, pb: float, support: FloatArray, lo: int, hi: int, x: float
) -> float:
    """P(patience < x) for one law."""
    if kind == EXPONENTIAL:
        return _exponential_cdf(x, pa)
    if kind == CONSTANT:
        return 1.0 if x > pa else 0.0
    if kind == LOGNORMAL:
        if not x > 0.0:
            return 0.0
        # the standard normal cdf of log(x / scale) / sigma, as scipy's ndtr computes it
        z = math.log(x / pb) / pa * _SQRTH
        zz = abs(z)
        if zz < _SQRTH:
            return 0.5 + 0.5 * math.erf(z)
        y = 0.5 * math.erfc(zz)
        return 1.0 - y if z > 0.0 else y
    if kind == EMPIRICAL:
        n = hi - lo
        return np.searchsorted(support[lo:hi], x, side="left") / n
    return 0.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cdf_at(  # pragma: no cover - compiled
    kind: int,
    pa: float,
    pb: float,
    support: FloatArray,
    lo: int,
    hi: int,
    y: FloatArray,
    k: float,
    out: FloatArray,
) -> None:
    """``_cdf`` at each ``y[q] * k`` into ``out`` (as long as ``y`` or ``out``, the shorter):
    the law's kind chosen once, not once a point, the same sums."""
    n = min(y.size, out.size)
    if kind == PATIENT:
        for q in range(n):
            out[q] = 0.0
    elif kind == EXPONENTIAL:
        for q in range(n):
            out[q] = _exponential_cdf(y[q] * k, pa)
    else:
        for q in range(n):
            out[q] = _cdf(kind, pa, pb, support, lo, hi, y[q] * k)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _mix(  # pragma: no cover - compiled
    y: float,
    k: float,
    s_row: FloatArray,
    imp: IntArray,
    kinds: IntArray,
    pa: FloatArray,
    pb: FloatArray,
    support: FloatArray,
    offsets: IntArray,
) -> float:
    """The work-weighted patience mixture G at offered wait y / kappa (impatient laws only,
    in order)."""
    out = 0.0
    for j in imp:
        out += s_row[j] * _cdf(kinds[j], pa[j], pb[j], support, offsets[j], offsets[j + 1], y * k)
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _logaddexp(x: float, y: float) -> float:  # pragma: no cover - compiled
    """numpy's logaddexp."""
    if x == y:
        return x + _LOG2
    d = x - y
    if d > 0:
        return x + math.log1p(math.exp(-d))
    if d <= 0:
        return y + math.log1p(math.exp(d))
    return d  # nan


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _merge_sorted(  # pragma: no cover - compiled
    a: FloatArray, n_a: int, b: FloatArray, n_b: int, out: FloatArray
) -> None:
    """The first ``n_a`` of ``a`` and ``n_b`` of ``b`` (each in order) into ``out``, in order."""
    i = j = q = 0
    while i < n_a and j < n_b:
        if b[j] < a[i]:
            out[q] = b[j]
            j += 1
        else:
            out[q] = a[i]
            i += 1
        q += 1
    while i < n_a:
        out[q] = a[i]
        i += 1
        q += 1
    while j < n_b:
        out[q] = b[j]
        j += 1
        q += 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _rows(  # pragma: no cover - compiled
    lo_row: int,
    hi_row: int,
    lam: FloatArray,
    nmu: FloatArray,
    kap: FloatArray,
    s_law: FloatArray,
    slope_tail: FloatArray,
    y_end: FloatArray,
    x_end: FloatArray,
    log_e: FloatArray,
    bounded: bool,
    kinds: IntArray,
    pa: FloatArray,
    pb: FloatArray,
    support: FloatArray,
    offsets: IntArray,
    imp: IntArray,
    kinks: FloatArray,
    unif_base: FloatArray,
    geom_base: FloatArray,
    off_over: FloatArray,
    off_under: FloatArray,
    served: FloatArray,
    dropped: FloatArray,
    abandoned: FloatArray,
    values: FloatArray,
    weights: FloatArray,
    p0_out: FloatArray,
    mean_all: FloatArray,
) -> None:
    """Rows ``lo_row`` to ``hi_row`` of ``mmng_rows``, with scratch arrays of their own."""
    n_law = kinds.size
    n_un, n_ge, n_pk, n_k = unif_base.size, geom_base.size, off_over.size, kinks.size
    n_nodes = n_un + n_ge + n_pk + 2 * n_k
    n_seg = n_nodes - 1
    bands = values.shape[2]
    y = np.empty(n_nodes)
    y_a = np.empty(n_nodes)  # scratch for the merge of the nodes
    y_b = np.empty(n_nodes)
    gl = np.empty((n_law, n_nodes))
    phi = np.empty(n_nodes)
    e = np.empty(n_nodes)
    dy = np.empty(n_seg)
    seg = np.empty(n_seg)
    mass = np.empty(n_seg)
    y_seg = np.empty(n_seg)
    g_seg = np.empty(n_seg)  # a law's cdf at the segments' mean waits
    frac = np.empty(n_seg)
    after = np.empty(n_seg)
    v = np.empty(n_seg + 1)
    w = np.empty(n_seg + 1)
    cw = np.empty(n_seg + 2)
    cm = np.empty(n_seg + 2)
    moment = np.empty(bands + 1)
    levels = np.empty(bands + 1)
    for i in range(lo_row, hi_row):
        k, ye, lm, nm = kap[i], y_end[i], lam[i], nmu[i]
        s_row = s_law[i]
        # --- where the offered-wait density peaks (G(y*) = 1 - n mu / lambda) and its width
        target = 1.0 - nm / lm
        width = min(1.0 / max(nm - lm, 1e-300), ye)
        peak = 0.0
        if target > 0:
            # how many uniform nodes have G below the target: G is a cdf mixture, so they
            # are the first ones (a binary search for the first at or above it)
            lo_q, hi_q = 0, n_un
            while lo_q < hi_q:
                q = (lo_q + hi_q) // 2
                if _mix(unif_base[q] * ye, k, s_row, imp, kinds, pa, pb, support, offsets) < target:
                    lo_q = q + 1
                else:
                    hi_q = q
            first = min(max(lo_q, 1), n_un - 1)
            lo, hi = unif_base[first - 1] * ye, unif_base[first] * ye
            for _ in range(30):
                mid = 0.5 * (lo + hi)
                if _mix(mid, k, s_row, imp, kinds, pa, pb, support, offsets) < target:
                    lo = mid
                else:
                    hi = mid
            pk = 0.5 * (lo + hi)
            h = max(1e-3 * ye, 1e-12)
            wk = max(ye, 1e-12)
            for _ in range(3):
                up, down = min(pk + h, ye), max(pk - h, 0.0)
                g_up = _mix(up, k, s_row, imp, kinds, pa, pb, support, offsets)
                g_down = _mix(down, k, s_row, imp, kinds, pa, pb, support, offsets)
                dens = (g_up - g_down) / max(up - down, 1e-300)
                if dens > 0:
                    wk = 1.0 / math.sqrt(max(lm * dens, 1e-300))
                wk = min(max(wk, 1e-9 * max(ye, 1e-12)), ye)
                h = max(0.1 * wk, 1e-12)
            peak, width = pk, wk
        # --- nodes: uniform, geometric near 0, around the peak, at kinks (twice): each group
        # is in order already, so they are merged (the array a sort would give, in linear time)
        n_ug = n_un + n_ge
        for q in range(n_un):
            y_a[q] = unif_base[q] * ye
        for q in range(n_ge):
            y[q] = geom_base[q] * ye
        _merge_sorted(y_a, n_un, y, n_ge, y_b)
        offs = off_over if peak > 0 else off_under
        for q in range(n_pk):  # (clipping keeps the peak's nodes in order)
            y_a[q] = min(max(peak + width * offs[q], 0.0), ye)
        _merge_sorted(y_b, n_ug, y_a, n_pk, y)
        if n_k:
            for q in range(n_k):
                y_a[2 * q] = min(kinks[q] / k, ye)
                y_a[2 * q + 1] = min(kinks[q] * (1 + 1e-9) / k, ye)
            y_a[: 2 * n_k].sort()
            _merge_sorted(y, n_ug + n_pk, y_a, 2 * n_k, y_b)
            y[:] = y_b
        for j in range(n_law):
            _cdf_at(kinds[j], pa[j], pb[j], support, offsets[j], offsets[j + 1], y, k, gl[j])
        # --- the log density phi = lambda H(y) - n mu y, H by the trapezoid rule on G
        h_mix = 0.0
        phi[0] = lm * h_mix - nm * y[0]
        top = phi[0]
        g_prev = 0.0
        for j in imp:
            g_prev += s_row[j] * gl[j, 0]
        for q in range(n_seg):
            dy[q] = y[q + 1] - y[q]
            g_next = 0.0
            for j in imp:
                g_next += s_row[j] * gl[j, q + 1]
            h_mix += dy[q] * (1 - 0.5 * (g_next + g_prev))
            g_prev = g_next
            phi[q + 1] = lm * h_mix - nm * y[q + 1]
            top = max(top, phi[q + 1])
        tail_slope = -nm if bounded else slope_tail[i]
        for q in range(n_nodes):
            e[q] = math.exp(phi[q] - top)
        total_seg = 0.0
        for q in range(n_seg):
            d = phi[q + 1] - phi[q]
            if abs(d) < 1e-6:
                seg[q] = dy[q] * 0.5 * (e[q + 1] + e[q])
            else:
                seg[q] = dy[q] * (e[q + 1] - e[q]) / d
            total_seg += seg[q]
        tail = e[n_nodes - 1] / -tail_slope
        log_j = top + math.log(total_seg + tail)
        log_den = _logaddexp(log_e[i], math.log(lm) + log_j)
        p0 = math.exp(log_e[i] - log_den)  # P(V = 0)
        scale = math.exp(math.log(lm) + top - log_den)
        mass_tail = tail * scale
        tail_wait = x_end[i] + k / -tail_slope  # mean wait of the tail (past every patience)
        for q in range(n_seg):
            mass[q] = seg[q] * scale
            # the segment's own mean wait (phi linear on it)
            d = phi[q + 1] - phi[q]
            if abs(d) < 1e-6:
                off = 0.5 * dy[q] * (1 + d / 6)
            else:
                off = dy[q] * (1.0 / -math.expm1(-d) - 1.0 / d)
            y_seg[q] = y[q] + min(max(off, 0.0), dy[q])
            frac[q] = (y_seg[q] - y[q]) / max(dy[q], 1e-300)
            v[q] = y_seg[q] * k
        v[n_seg] = tail_wait
        acc = 0.0
        for q in range(n_seg - 1, -1, -1):  # the mass of the segments after each
            after[q] = acc
            acc += mass[q]
        p0_out[i] = p0
        for j in range(n_law):
            patient = kinds[j] == PATIENT
            stay_sum = 0.0
            leave_sum = 0.0
            mean_j = 0.0
            h_end = 0.0
            _cdf_at(kinds[j], pa[j], pb[j], support, offsets[j], offsets[j + 1], y_seg, k, g_seg)
            for q in range(n_seg):
                g_mid = g_seg[q]
                w[q] = (1.0 - g_mid) * mass[q]
                stay_sum += w[q]
                leave_sum += mass[q] * g_mid
                d_h = ((gl[j, q + 1] + gl[j, q]) * -0.5 + 1.0) * dy[q]
                mean_j += d_h * (after[q] + mass[q] * frac[q])
                h_end += d_h
            w[n_seg] = mass_tail if (patient and not bounded) else 0.0
            srv = p0 + stay_sum
            drp = 0.0
            abd = leave_sum
            mean_j *= k
            if bounded:
                drp += mass_tail
            elif patient:
                srv += mass_tail
                mean_j += mass_tail * tail_wait
            else:
                abd += mass_tail
                mean_j += mass_tail * (h_end * k)
            served[i, j] = srv
            dropped[i, j] = drp
            abandoned[i, j] = abd
            mean_all[i, j] = mean_j
            # --- the served's waits: means of equal-mass bands (a point split at an edge)
            n_w = n_seg + 1
            cw[0] = 0.0
            cm[0] = 0.0
            rising = True
            for q in range(n_w):
                cw[q + 1] = cw[q] + w[q]
                cm[q + 1] = cm[q] + w[q] * v[q]
                rising &= cw[q + 1] >= cw[q]
            total = cw[n_w]
            below = 0
            for b in range(bands + 1):
                level = total * (b / bands)
                # how many cumulative weights are below the level: where they rise (weights
                # not negative or nan) they are the first ones, and the levels rise too
                if rising:
                    while below <= n_w and cw[below] < level:
                        below += 1
                else:
                    below = 0
                    for q in range(n_w + 1):
                        if cw[q] < level:
                            below += 1
                at = min(max(below - 1, 0), n_w - 1)
                levels[b] = level
                moment[b] = cm[at] + (level - cw[at]) * v[at]
            for b in range(bands):
                mean_b = (moment[b + 1] - moment[b]) / (levels[b + 1] - levels[b])
                if math.isnan(mean_b):
                    mean_b = 0.0
                elif math.isinf(mean_b):
                    mean_b = 1.7976931348623157e308 if mean_b > 0 else -1.7976931348623157e308
                values[i, j, b] = mean_b
                weights[i, j, b] = total / bands


@numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _chunks(  # pragma: no cover - compiled
    n_chunks: int,
    lam: FloatArray,
    nmu: FloatArray,
    kap: FloatArray,
    s_law: FloatArray,
    slope_tail: FloatArray,
    y_end: FloatArray,
    x_end: FloatArray,
    log_e: FloatArray,
    bounded: bool,
    kinds: IntArray,
    pa: FloatArray,
    pb: FloatArray,
    support: FloatArray,
    offsets: IntArray,
    imp: IntArray,
    kinks: FloatArray,
    unif_base: FloatArray,
    geom_base: FloatArray,
    off_over: FloatArray,
    off_under: FloatArray,
    served: FloatArray,
    dropped: FloatArray,
    abandoned: FloatArray,
    values: FloatArray,
    weights: FloatArray,
    p0_out: FloatArray,
    mean_all: FloatArray,
) -> None:
    """``mmng_rows`` in ``n_chunks`` chunks of rows, one a thread."""
    m = lam.size
    for c in numba.prange(n_chunks):
        _rows(
            c * m // n_chunks,
            (c + 1) * m // n_chunks,
            lam,
            nmu,
            kap,
            s_law,
            slope_tail,
            y_end,
            x_end,
            log_e,
            bounded,
            kinds,
            pa,
            pb,
            support,
            offsets,
            imp,
            kinks,
            unif_base,
            geom_base,
            off_over,
            off_under,
            served,
            dropped,
            abandoned,
            values,
            weights,
            p0_out,
            mean_all,
        )


def mmng_rows(*arrays: Any) -> None:
    """Each pool (row) of arrivals/s ``lam``, full-pool service rate ``nmu``, Allen-Cunneen
    factor ``kap``, the impatient laws' work shares ``s_law`` (m, L), the slope of the
    offered wait's log density past the last node when nothing drops (``slope_tail``), its
    range ``y_end`` = ``x_end`` / kappa and log Erlang ratio ``log_e``; ``bounded``: a maximum
    wait of ``x_end`` drops everyone beyond it. Writes per (row, law): ``served``,
    ``dropped``, ``abandoned``, ``mean_all`` (time in queue of all), the served's waits as
    band means ``values`` with ``weights`` (m, L, bands); per row P(no wait) ``p0_out``."""
    # Rows are independent: a few chunks, one a thread, each with scratch arrays of its own
    # (the results do not depend on the number of threads). Few rows: one thread does them
    # all, as starting threads would cost more.
    m = arrays[0].size
    n_chunks = min(numba.get_num_threads(), m // ROWS_PER_CHUNK_MIN)
    if n_chunks > 1:
        _chunks(n_chunks, *arrays)
    else:
        _rows(0, m, *arrays)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def spread_to_classes(  # pragma: no cover - compiled
    rows: IntArray,
    of_cls: IntArray,
    served: FloatArray,
    dropped: FloatArray,
    abandoned: FloatArray,
    values: FloatArray,
    weights: FloatArray,
    p0: FloatArray,
    mean_all: FloatArray,
    out_served: FloatArray,
    out_dropped: FloatArray,
    out_abandoned: FloatArray,
    out_values: FloatArray,
    out_weights: FloatArray,
    out_mean_all: FloatArray,
) -> None:
    """``mmng_rows``' results per (row, law) into the outcome's rows ``rows`` per class (law
    ``of_cls[c]``): P(no wait) first, then the bands. One pass, where fancy-indexed copies of
    each array cost more than the copying itself."""
    n_cls = of_cls.size
    bands = values.shape[2]
    for i in range(rows.size):
        r = rows[i]
        for c in range(n_cls):
            j = of_cls[c]
            out_served[r, c] = served[i, j]
            out_dropped[r, c] = dropped[i, j]
            out_abandoned[r, c] = abandoned[i, j]
            out_mean_all[r, c] = mean_all[i, j]
            out_weights[r, c, 0] = p0[i]
            for b in range(bands):
                out_values[r, c, 1 + b] = values[i, j, b]
                out_weights[r, c, 1 + b] = weights[i, j, b]
