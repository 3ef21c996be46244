"""Mergeable log-bucketed histogram (DDSketch-style, fixed gamma) for latencies in seconds.

Bucket ``k`` holds values in ``(g**(k-1), g**k]`` with ``g = (1+alpha)/(1-alpha)`` and reports
``2*g**k/(g+1)``, so every quantile is within relative error ``alpha`` of a true sample. The index
range is fixed by ``[min_value, max_value]``, so memory does not grow with the number of values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # scipy loads only when a mixture is recorded
    from scipy.sparse import sparray, spmatrix

FloatArray = npt.NDArray[np.float64]
SparseMatrix: TypeAlias = "spmatrix | sparray"
# A mixing matrix (groups, M), dense or sparse, or a partition: each component's group (M,).
Mix: TypeAlias = "npt.ArrayLike | SparseMatrix"

_TINY = 1e-300  # stands in for 0 before np.log; anything this small lands in the underflow bucket


@dataclass(frozen=True)
class _Layout:
    """Bucket geometry shared by every histogram with the same parameters."""

    gamma: float
    inv_ln_gamma: float
    offset: int  # array position j holds log-index k = j + offset; j = 0 is the underflow bucket
    nbins: int
    upper: float  # values above the top bucket's upper edge are clamped and counted as overflow
    reps: FloatArray  # representative value per array position (read-only)


@lru_cache(maxsize=16)
def _layout(alpha: float, min_value: float, max_value: float) -> _Layout:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 < min_value < max_value < math.inf:
        raise ValueError(f"need 0 < min_value < max_value < inf, got {min_value}, {max_value}")
    gamma = (1.0 + alpha) / (1.0 - alpha)
    inv = 1.0 / math.log(gamma)
    offset = math.ceil(math.log(min_value) * inv) - 1
    k_max = math.ceil(math.log(max_value) * inv)
    nbins = k_max - offset + 1
    k = np.arange(offset, k_max + 1, dtype=np.float64)
    reps = 2.0 * np.power(gamma, k) / (gamma + 1.0)
    reps[0] = 0.0
    reps.flags.writeable = False
    return _Layout(gamma, inv, offset, nbins, float(gamma**k_max), reps)


def _bucket(
    lay: _Layout, v: FloatArray, hi: float
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_] | None]:
    """Bucket positions of ``v`` (clipped to the range) and, if any can, which overflowed."""
    last = lay.nbins - 1
    idx = np.log(np.maximum(v, _TINY))
    idx *= lay.inv_ln_gamma
    np.ceil(idx, out=idx)
    idx -= lay.offset
    over = idx > last if hi > lay.upper else None
    # Clip in float space: casting inf/huge floats to int is undefined.
    np.clip(idx, 0, last, out=idx)
    return idx.astype(np.intp), over


def add_grouped(
    hists: Sequence[LogHistogram],
    values: npt.ArrayLike,
    weights: npt.ArrayLike,
    groups: npt.ArrayLike,
) -> None:
    """Add ``values`` with ``weights`` to ``hists[groups[i]]``, all in one vectorised pass.

    The histograms must share their parameters. Same result as one ``add_many`` per group.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    g = np.asarray(groups, dtype=np.intp).ravel()
    if not (v.shape == w.shape == g.shape):
        raise ValueError("values, weights and groups must have one shape")
    keep = w > 0.0
    v, w, g = v[keep], w[keep], g[keep]
    if not v.size:
        return
    if not (float(v.min()) >= 0.0 and float(v.max()) < math.inf) or not float(w.max()) < math.inf:
        raise ValueError("values and weights must be finite and non-negative")
    lay = hists[0]._layout
    if any(h._layout is not lay for h in hists):
        raise ValueError("add_grouped needs histograms with the same parameters")
    n = len(hists)
    idx, over = _bucket(lay, v, float(v.max()))
    counts = np.bincount(g * lay.nbins + idx, weights=w, minlength=n * lay.nbins)
    counts = counts.reshape(n, lay.nbins)
    mass = np.bincount(g, weights=w, minlength=n)
    total = np.bincount(g, weights=w * v, minlength=n)
    overflow = (
        np.bincount(g[over], weights=w[over], minlength=n) if over is not None else np.zeros(n)
    )
    lo = np.full(n, math.inf)
    hi = np.full(n, -math.inf)
    np.minimum.at(lo, g, v)
    np.maximum.at(hi, g, v)
    for i in np.flatnonzero(mass > 0).tolist():
        hists[i]._absorb(counts[i], mass[i], total[i], overflow[i], lo[i], hi[i])


def add_mixture(
    targets: Sequence[tuple[Sequence[LogHistogram], Mix]],
    values: npt.ArrayLike,
    weights: npt.ArrayLike,
) -> None:
    """For each ``(hists, mix)`` in ``targets``, add to ``hists[g]`` the mixture
    ``sum_m mix[g, m] x component m``, where component m is the weighted points
    ``values[m], weights[m]`` (arrays of shape (M, n)).

    ``mix`` is a (groups, M) matrix of non-negative weights, dense or scipy sparse, or a
    partition: a 1-D integer array of length M giving the one group each component goes to
    whole (a matrix of 0s and 1s with one 1 per column; the flow engine's classes, nodes and
    pools). The points are bucketed once; a partition is one bincount of them and a matrix one
    sparse product: the flow engine adds the same latency points to class, node, pool and
    region histograms with different mixing weights.
    """
    from scipy import sparse

    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if v.shape != w.shape or v.ndim != 2:
        raise ValueError("need values and weights of one shape (M, n)")
    if not v.size:
        return
    v_max = float(v.max())
    if not (float(v.min()) >= 0.0 and v_max < math.inf) or not float(w.min()) >= 0:
        raise ValueError("values and weights must be finite and non-negative")
    lay = targets[0][0][0]._layout
    n_comp, n_pts = v.shape
    # Only points with mass count: in the flow engine most (class, pool) components are empty.
    pos = np.flatnonzero(w.ravel() > 0)
    comp = pos // n_pts  # component of each point
    pv, pw = v.ravel()[pos], w.ravel()[pos]
    idx, over = _bucket(lay, pv, v_max)
    # Per component: mass, weighted sum and overflow (columns), and the range of its points.
    comp_sums = np.empty((n_comp, 3))
    comp_sums[:, 0] = _weighted_count(comp, pw, n_comp)
    comp_sums[:, 1] = _weighted_count(comp, pw * pv, n_comp)
    comp_sums[:, 2] = _weighted_count(comp[over], pw[over], n_comp) if over is not None else 0.0
    comp_lo = np.full(n_comp, math.inf)
    comp_hi = np.full(n_comp, -math.inf)
    np.minimum.at(comp_lo, comp, pv)
    np.maximum.at(comp_hi, comp, pv)
    per_comp = None  # the components as a sparse (M, nbins) matrix, built when first needed
    for hists, mix in targets:
        n_groups = len(hists)
        if any(h._layout is not lay for h in hists):
            raise ValueError("add_mixture needs histograms with the same parameters")
        m: Any = mix if sparse.issparse(mix) else np.asarray(mix)
        if m.ndim == 1 and m.dtype.kind in "iu":
            if m.shape != (n_comp,) or not (int(m.min()) >= 0 and int(m.max()) < n_groups):
                raise ValueError("a partition mix gives each of the M components a group index")
            group_of = m.astype(np.intp, copy=False)
            sums = np.stack([_weighted_count(group_of, s, n_groups) for s in comp_sums.T], axis=1)
            lo = np.full(n_groups, math.inf)
            hi = np.full(n_groups, -math.inf)
            np.minimum.at(lo, group_of, comp_lo)
            np.maximum.at(hi, group_of, comp_hi)
            first, stop, base, size = _windows(lay, sums[:, 0], lo, hi)
            # One bincount of the points, each at its group's window, is all the counts.
            point_group = group_of[comp]
            counts = _weighted_count(base[point_group] + idx, pw, size)
        else:
            m_csr = sparse.csr_matrix(m, dtype=np.float64)
            if m_csr.shape != (n_groups, n_comp):
                raise ValueError("mix must be (groups, M), or a partition of the M components")
            if m_csr.nnz and not float(m_csr.data.min()) >= 0.0:
                raise ValueError("mix weights must be non-negative")
            if per_comp is None:
                # Row m holds component m's points as they come: the product adds up points
                # in one bucket, cheaper than sorting every row into canonical form first.
                row_start = np.searchsorted(comp, np.arange(n_comp + 1))
                per_comp = sparse.csr_matrix(
                    (pw, idx, row_start), shape=(n_comp, lay.nbins), copy=True
                )
            sums = np.asarray(m_csr @ comp_sums)
            lo, hi = _group_extremes(m_csr, comp_lo, comp_hi)
            first, stop, _, _ = _windows(lay, sums[:, 0], lo, hi)
            counts = (m_csr @ per_comp).toarray().ravel()
            base = np.arange(n_groups) * lay.nbins  # row g of the dense (groups, nbins)
        _absorb_groups(hists, counts, base, first, stop, sums, lo, hi)


def _weighted_count(keys: npt.NDArray[np.intp], weights: FloatArray, size: int) -> FloatArray:
    """``np.bincount`` with weights (float64) and exactly ``size`` bins."""
    return np.asarray(np.bincount(keys, weights, size), dtype=np.float64)


def _windows(
    lay: _Layout, mass: FloatArray, lo: FloatArray, hi: FloatArray
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp], int]:
    """Each group's window of buckets, from its minimum's to its maximum's (the bucket index
    grows with the value, so all its points with mass lie there; empty for a group without
    mass), packed one after another: ``first`` and ``stop`` bucket, ``base`` such that bucket
    j of group g is at ``base[g] + j`` in the packed array, and the packed ``size``."""
    has = mass > 0
    ends, _ = _bucket(lay, np.where(has, np.stack((lo, hi)), 0.0), 0.0)
    first, stop = ends[0], np.where(has, ends[1] + 1, ends[0])
    width = stop - first
    offset = np.cumsum(width) - width
    return first, stop, offset - first, int(width.sum())


def _absorb_groups(
    hists: Sequence[LogHistogram],
    counts: FloatArray,
    base: npt.NDArray[np.intp],
    first: npt.NDArray[np.intp],
    stop: npt.NDArray[np.intp],
    sums: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
) -> None:
    """Add to each ``hists[g]`` with mass its buckets ``first[g]`` to ``stop[g]`` (bucket j at
    ``counts[base[g] + j]``), its mass, sum and overflow (``sums[g]``) and its range
    ``lo[g]..hi[g]``. Only its window, not all few thousand buckets: that saves most of the
    time."""
    groups = np.flatnonzero(sums[:, 0] > 0)  # a group with no mass keeps its range untouched
    for g, a, b, at, (mass, total, overflow), g_min, g_max in zip(
        groups.tolist(),
        first[groups].tolist(),
        stop[groups].tolist(),
        base[groups].tolist(),
        sums[groups].tolist(),
        lo[groups].tolist(),
        hi[groups].tolist(),
        strict=True,
    ):
        hists[g]._absorb(counts[at + a : at + b], mass, total, overflow, g_min, g_max, start=a)


def _group_extremes(
    mix: SparseMatrix, comp_lo: FloatArray, comp_hi: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per group (row of the CSR ``mix``), the smallest ``comp_lo`` and largest ``comp_hi`` over
    the components it mixes with positive weight (inf and -inf for a group with none)."""
    n_groups = mix.shape[0]
    lo = np.full(n_groups, math.inf)
    hi = np.full(n_groups, -math.inf)
    used = mix.data > 0
    lo_vals = np.where(used, comp_lo[mix.indices], math.inf)
    hi_vals = np.where(used, comp_hi[mix.indices], -math.inf)
    # reduceat over each non-empty row's slice: empty rows hold no entries, so the starts of
    # the non-empty rows delimit exactly their slices (the last runs to the end).
    nonempty = np.flatnonzero(np.diff(mix.indptr) > 0)
    if nonempty.size:
        starts = mix.indptr[nonempty]
        lo[nonempty] = np.minimum.reduceat(lo_vals, starts)
        hi[nonempty] = np.maximum.reduceat(hi_vals, starts)
    return lo, hi


class LogHistogram:
    """Histogram of non-negative values with quantiles accurate to relative error ``alpha``.

    ``count``, ``sum``, ``min`` and ``max`` are exact; counts are float64 so the flow engine can
    add fractional masses. Values at or below ``min_value/gamma`` (including 0) share an underflow
    bucket that reports 0 (clamped to the exact ``min``); values above ``max_value`` are clamped
    into the top bucket and tallied in ``overflow``.
    """

    __slots__ = ("_count", "_counts", "_hi", "_key", "_layout", "_lo", "_overflow", "_sum")

    def __init__(self, alpha: float = 0.005, min_value: float = 1e-6, max_value: float = 1e7):
        self._key = (float(alpha), float(min_value), float(max_value))
        self._layout = _layout(*self._key)
        self._counts: FloatArray = np.zeros(self._layout.nbins, dtype=np.float64)
        self._count = 0.0
        self._sum = 0.0
        self._lo = math.inf
        self._hi = -math.inf
        self._overflow = 0.0

    # -- recording -------------------------------------------------------------------------

    def add(self, value: float) -> None:
        """Record one value. Production records arrays (``add_many``, ``add_grouped``,
        ``add_mixture``); this is the reference path tests compare those with."""
        self.add_many((value,))

    def add_many(self, values: npt.ArrayLike, weights: npt.ArrayLike | None = None) -> None:
        """Record an array of values, optionally with non-negative float weights (masses)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if weights is None:
            if v.size:
                self._ingest(v, None)
            return
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.shape != v.shape:
            raise ValueError(f"weights shape {w.shape} != values shape {v.shape}")
        if not w.size:
            return
        if not float(w.min()) >= 0.0 or not float(w.max()) < math.inf:
            raise ValueError("weights must be finite and non-negative")
        keep = w > 0.0
        if not keep.all():  # zero-mass entries must not move min/max
            v, w = v[keep], w[keep]
            if not v.size:
                return
        self._ingest(v, w)

    def _ingest(self, v: FloatArray, w: FloatArray | None) -> None:
        lo = float(v.min())
        hi = float(v.max())
        if not (lo >= 0.0 and hi < math.inf):
            raise ValueError("values must be finite and non-negative")
        lay = self._layout
        idx, over = _bucket(lay, v, hi)
        if over is None:
            overflow = 0.0
        else:
            overflow = float(np.count_nonzero(over)) if w is None else float(w[over].sum())
        counts = np.bincount(idx, weights=w, minlength=lay.nbins)
        if w is None:
            self._absorb(counts, v.size, float(v.sum()), overflow, lo, hi)
        else:
            self._absorb(counts, float(w.sum()), float(v @ w), overflow, lo, hi)

    def _absorb(
        self,
        counts: npt.NDArray[Any],
        mass: float,
        total: float,
        overflow: float,
        lo: float,
        hi: float,
        start: int = 0,
    ) -> None:
        """Add binned mass: bucket counts (from bucket ``start`` on), total mass and sum,
        overflow, and the range."""
        self._counts[start : start + len(counts)] += counts
        self._count += float(mass)
        self._sum += float(total)
        self._overflow += float(overflow)
        self._lo = min(self._lo, float(lo))
        self._hi = max(self._hi, float(hi))

    # -- merging ---------------------------------------------------------------------------

    def merge(self, other: LogHistogram) -> None:
        """Add ``other``'s contents into this histogram (same parameters required)."""
        if other._key != self._key:
            raise ValueError(
                f"cannot merge histograms with parameters {self._key} and {other._key}"
            )
        self._absorb(other._counts, other._count, other._sum, other._overflow, other._lo, other._hi)

    @classmethod
    def merged(cls, hists: Iterable[LogHistogram]) -> LogHistogram:
        """A new histogram holding the union of ``hists`` (default parameters if empty)."""
        it = iter(hists)
        first = next(it, None)
        if first is None:
            return cls()
        out = first.copy()
        for h in it:
            out.merge(h)
        return out

    def copy(self) -> LogHistogram:
        """An independent copy."""
        out = LogHistogram(*self._key)
        out._counts = self._counts.copy()
        out._count, out._sum, out._overflow = self._count, self._sum, self._overflow
        out._lo, out._hi = self._lo, self._hi
        return out

    def __add__(self, other: LogHistogram) -> LogHistogram:
        """A new histogram of both (``merge`` without touching either operand)."""
        out = self.copy()
        out.merge(other)
        return out

    def __iadd__(self, other: LogHistogram) -> LogHistogram:
        self.merge(other)
        return self

    # -- statistics ------------------------------------------------------------------------

    @property
    def count(self) -> float:
        """Total recorded mass (number of values when unweighted)."""
        return self._count

    @property
    def sum(self) -> float:
        """Exact sum of recorded values (weighted)."""
        return self._sum

    @property
    def mean(self) -> float:
        """Exact mean, nan when empty."""
        return self._sum / self._count if self._count > 0 else math.nan

    @property
    def min(self) -> float:
        """Exact minimum, nan when empty."""
        return self._lo if self._count > 0 else math.nan

    @property
    def max(self) -> float:
        """Exact maximum, nan when empty."""
        return self._hi if self._count > 0 else math.nan

    @property
    def overflow(self) -> float:
        """Mass recorded above ``max_value`` (clamped into the top bucket)."""
        return self._overflow

    @property
    def counts(self) -> FloatArray:
        """Per-bucket mass (read-only view; fixed size whatever the number of values)."""
        view = self._counts.view()
        view.flags.writeable = False
        return view

    @property
    def alpha(self) -> float:
        """Relative accuracy guaranteed for quantiles."""
        return self._key[0]

    def quantile(self, q: float) -> float:
        """Value at quantile ``q`` in [0, 1] (inverted-CDF rule); nan when empty."""
        return float(self.quantiles((q,))[0])

    def quantiles(self, qs: Sequence[float] | npt.NDArray[np.float64]) -> FloatArray:
        """Vectorised :meth:`quantile`; q=0 and q=1 give the exact min and max."""
        q = np.asarray(qs, dtype=np.float64)
        if q.size and not (float(q.min()) >= 0.0 and float(q.max()) <= 1.0):
            raise ValueError("quantiles must be in [0, 1]")
        if self._count <= 0:
            return np.full(q.shape, math.nan)
        cum = np.cumsum(self._counts)
        # First bucket whose cumulative mass reaches q*total, as numpy's "inverted_cdf".
        j = np.searchsorted(cum, q * cum[-1], side="left")
        np.minimum(j, self._layout.nbins - 1, out=j)
        out: FloatArray = np.clip(self._layout.reps[j], self._lo, self._hi)
        out[q <= 0.0] = self._lo
        out[q >= 1.0] = self._hi
        return out

    # -- comparison ------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        """Equal buckets, count, min, max and overflow; ``sum`` to 1e-9 relative because float
        addition order differs between merging and adding the same values one by one."""
        if not isinstance(other, LogHistogram):
            return NotImplemented
        return (
            self._key == other._key
            and self._count == other._count
            and self._overflow == other._overflow
            and self._lo == other._lo
            and self._hi == other._hi
            and math.isclose(self._sum, other._sum, rel_tol=1e-9)
            and bool(np.array_equal(self._counts, other._counts))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        if self.count <= 0:
            return f"LogHistogram(alpha={self.alpha}, empty)"
        p50, p99 = self.quantiles((0.5, 0.99))
        return (
            f"LogHistogram(count={self.count:g}, mean={self.mean:.4g}, p50={p50:.4g}, "
            f"p99={p99:.4g}, max={self.max:.4g})"
        )
