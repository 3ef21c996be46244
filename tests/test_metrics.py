"""Tests for gridsim.metrics: LogHistogram."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridsim.metrics import LogHistogram

ALPHA = 0.005
# Bucket placement can be off by one float ulp at an exact bucket edge.
REL = ALPHA * (1 + 1e-9)
MIN_VALUE = 1e-6

values_st = st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=1, max_size=300)
QS = [0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0]


def hist_of(values: list[float] | np.ndarray) -> LogHistogram:
    h = LogHistogram(alpha=ALPHA)
    h.add_many(np.asarray(values, dtype=np.float64))
    return h


def inverted_cdf(sorted_values: np.ndarray, q: float) -> float:
    """Smallest sample x with F(x) >= q, computed as the histogram does (q * n)."""
    n = sorted_values.size
    k = min(max(math.ceil(q * float(n)), 1), n)
    return float(sorted_values[k - 1])


def assert_close(est: float, exact: float) -> None:
    # Values below MIN_VALUE share the underflow bucket: absolute error below MIN_VALUE there.
    assert abs(est - exact) <= REL * exact + (MIN_VALUE if exact < MIN_VALUE * 1.01 else 0.0)


# -- LogHistogram: accuracy ----------------------------------------------------------------


@pytest.mark.parametrize(
    "sample",
    [
        lambda r: r.lognormal(mean=-2.0, sigma=1.5, size=200_000),
        lambda r: r.exponential(scale=0.3, size=200_000),
        lambda r: r.lognormal(mean=3.0, sigma=3.0, size=50_000),
    ],
)
def test_quantiles_within_one_percent_of_numpy(
    sample: Callable[[np.random.Generator], np.ndarray],
) -> None:
    x = sample(np.random.default_rng(7))
    h = LogHistogram()
    h.add_many(x)
    exact = np.quantile(x, QS, method="inverted_cdf")
    est = h.quantiles(QS)
    rel = np.abs(est - exact) / exact
    assert np.all(rel < 0.01)
    assert np.all(rel <= REL)
    assert h.quantile(0.0) == x.min() and h.quantile(1.0) == x.max()


@settings(max_examples=200, deadline=None)
@given(values_st, st.floats(min_value=0.0, max_value=1.0))
def test_quantile_rank_bound(values: list[float], q: float) -> None:
    h = hist_of(values)
    assert_close(h.quantile(q), inverted_cdf(np.sort(values), q))


def test_exact_moments() -> None:
    x = np.random.default_rng(1).exponential(2.0, 10_001)
    h = hist_of(x)
    assert h.count == x.size
    assert math.isclose(h.sum, float(x.sum()), rel_tol=1e-12)
    assert math.isclose(h.mean, float(x.mean()), rel_tol=1e-12)
    assert h.min == x.min() and h.max == x.max()


def test_empty() -> None:
    h = LogHistogram()
    assert h.count == 0
    assert math.isnan(h.quantile(0.5)) and np.isnan(h.quantiles([0.1, 0.9])).all()
    assert math.isnan(h.mean) and math.isnan(h.min) and math.isnan(h.max)
    assert h == LogHistogram()


def test_underflow_and_overflow() -> None:
    h = LogHistogram()
    for v in (0.0, 1e-9, 1e-7, 1.0, 1e9, 2e9):
        h.add(v)
    assert h.quantile(0.0) == 0.0
    assert h.quantile(0.3) <= MIN_VALUE  # underflow bucket reports 0 (clamped to exact min)
    assert h.overflow == 2
    assert h.max == 2e9 and h.quantile(1.0) == 2e9
    assert h.quantile(0.99) <= 2e9


@pytest.mark.parametrize("bad", [-1.0, -1e-300, math.nan, math.inf])
def test_rejects_bad_values(bad: float) -> None:
    h = LogHistogram()
    with pytest.raises(ValueError):
        h.add(bad)
    with pytest.raises(ValueError):
        h.add_many(np.array([1.0, bad]))
    assert h.count == 0  # nothing half-recorded


def test_rejects_bad_arguments() -> None:
    h = hist_of([1.0, 2.0])
    with pytest.raises(ValueError):
        h.quantile(1.5)
    with pytest.raises(ValueError):
        h.quantiles([0.5, math.nan])
    with pytest.raises(ValueError):
        h.merge(LogHistogram(alpha=0.01))
    with pytest.raises(ValueError):
        h.add_many([1.0, 2.0], weights=[1.0])
    with pytest.raises(ValueError):
        h.add_many([1.0], weights=[-1.0])


# -- LogHistogram: add / add_many / weights --------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(values_st)
def test_add_matches_add_many(values: list[float]) -> None:
    h = LogHistogram(alpha=ALPHA)
    for v in values:
        h.add(v)
    assert h == hist_of(values)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1e4), st.integers(0, 5)), min_size=1, max_size=60))
def test_integer_weights_match_repetition(pairs: list[tuple[float, int]]) -> None:
    v = np.array([p[0] for p in pairs])
    w = np.array([p[1] for p in pairs])
    h = LogHistogram()
    h.add_many(v, weights=w.astype(np.float64))
    assert h == hist_of(np.repeat(v, w))


def test_fractional_weights() -> None:
    rng = np.random.default_rng(5)
    v = rng.lognormal(0.0, 1.0, 2000)
    w = rng.uniform(0.0, 3.0, 2000)
    w[::10] = 0.0
    v[::10] = 1e6  # zero-mass values must not move max
    h = LogHistogram()
    h.add_many(v, weights=w)
    assert math.isclose(h.count, float(w.sum()), rel_tol=1e-12)
    assert math.isclose(h.mean, float(v @ w / w.sum()), rel_tol=1e-12)
    assert h.max == v[w > 0].max()
    order = np.argsort(v)
    cum = np.cumsum(w[order])
    for q in QS[1:-1]:
        exact = v[order][np.searchsorted(cum, q * cum[-1], side="left")]
        assert abs(h.quantile(q) - exact) <= REL * exact


# -- LogHistogram: merge, memory -------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(values_st, values_st, values_st)
def test_merge_equals_histogram_of_concatenation(
    a: list[float], b: list[float], c: list[float]
) -> None:
    whole = hist_of(a + b + c)
    ha, hb, hc = hist_of(a), hist_of(b), hist_of(c)
    assert LogHistogram.merged([ha, hb, hc]) == whole
    assert ha + hb + hc == whole
    assert np.array_equal(ha.quantiles(QS), hist_of(a).quantiles(QS))  # operands untouched
    ha.merge(hb)
    ha.merge(hc)
    assert ha == whole
    assert np.array_equal(ha.quantiles(QS), whole.quantiles(QS))
    assert ha.count == whole.count and ha.min == whole.min and ha.max == whole.max


def test_merged_of_nothing_is_empty() -> None:
    assert LogHistogram.merged([]) == LogHistogram()


def test_memory_is_bounded() -> None:
    small = hist_of([1.0])
    big = LogHistogram()
    big.add_many(np.random.default_rng(2).lognormal(0.0, 4.0, 1_000_000))
    assert big.counts.size == small.counts.size
    assert big.counts.size < 4000  # ~3000 buckets span [1e-6, 1e7] s at alpha = 0.005
