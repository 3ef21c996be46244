"""The paths production records latencies through, each against an independent computation.

- ``add_grouped`` (the request engine's finished requests into class, region and node
  histograms) against a plain per-group loop of scalar adds, and the quantile contract against
  a weighted quantile computed here with numpy;
- ``add_mixture`` (the flow engine's latency points into mixtures) keeps each mixture's mass,
  mean, minimum and maximum, and equals the histogram of the reweighted points;
- merging (``LogHistogram.__add__``) commutes, associates and equals the histogram of the union;
- ``Recorder.record_flow`` and ``Recorder.finished`` against hand calculations;
- ``wait_points`` against the M/M/c (Erlang C) wait law, written here with scipy.stats.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import sparse, stats

import gridsim as gs
from gridsim.engine.queueing import EXP_POINTS, band_means, wait_points
from gridsim.metrics.histogram import LogHistogram, add_grouped, add_mixture
from gridsim.metrics.recorder import Layout, Recorder

FloatArray = npt.NDArray[np.float64]
MMC = Path(__file__).resolve().parents[1] / "scenarios" / "validation" / "mmc.yaml"
ALPHA = LogHistogram().alpha  # relative accuracy of quantiles (default parameters)
MIN_VALUE = 1e-6  # the default histogram's smallest resolved value: below it, absolute error
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values over the histogram's whole range, log-uniformly, with exact zeros and underflow.
VALUE = st.one_of(
    st.just(0.0),
    st.floats(-9.0, 7.0).map(lambda e: 10.0**e),
)
WEIGHT = st.one_of(st.just(0.0), st.floats(-3.0, 3.0).map(lambda e: 10.0**e))
OVER = st.one_of(VALUE, st.floats(7.0, 9.0).map(lambda e: 10.0**e))  # and some overflow


def weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    """Inverted-CDF rule: the smallest value whose cumulative weight reaches q x total."""
    keep = weights > 0
    v, w = values[keep], weights[keep]
    order = np.argsort(v, kind="stable")
    v, cum = v[order], np.cumsum(w[order])
    i = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(v[min(i, v.size - 1)])


def assert_quantiles_within_alpha(h: LogHistogram, values: FloatArray, weights: FloatArray) -> None:
    """Every quantile within relative ALPHA of the true one (absolute MIN_VALUE below the
    resolved range). The cumulative masses are summed in another order than here, so the
    true quantile is bracketed between q x (1 -+ 1e-9) to absorb rounding at a boundary."""
    for q in (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
        lo = weighted_quantile(values, weights, max(q * (1 - 1e-9), 0.0))
        hi = weighted_quantile(values, weights, min(q * (1 + 1e-9), 1.0))
        est = h.quantile(q)
        assert lo * (1 - ALPHA) - MIN_VALUE <= est <= hi * (1 + ALPHA) + MIN_VALUE, (q, lo, hi)


def assert_same(a: LogHistogram, b: LogHistogram, rel: float = 1e-12) -> None:
    """Equal up to float summation order (bucket masses, count, sum; min/max exact)."""
    assert a.count == pytest.approx(b.count, rel=rel, abs=1e-300)
    assert a.sum == pytest.approx(b.sum, rel=rel, abs=1e-300)
    assert a.overflow == pytest.approx(b.overflow, rel=rel, abs=1e-300)
    scale = max(float(b.count), 1e-300)
    np.testing.assert_allclose(a.counts, b.counts, rtol=rel, atol=rel * scale)
    if b.count > 0:
        assert (a.min, a.max) == (b.min, b.max)
    else:
        assert a.count == 0


# --- add_grouped --------------------------------------------------------------------------------


@FAST
@given(
    values=st.lists(VALUE, min_size=1, max_size=300),
    n_groups=st.integers(1, 5),
    data=st.data(),
)
def test_add_grouped_equals_a_loop_of_scalar_adds(
    values: list[float], n_groups: int, data: st.DataObject
) -> None:
    groups = data.draw(
        st.lists(st.integers(0, n_groups - 1), min_size=len(values), max_size=len(values))
    )
    grouped = [LogHistogram() for _ in range(n_groups)]
    add_grouped(grouped, values, np.ones(len(values)), groups)
    looped = [LogHistogram() for _ in range(n_groups)]
    for v, g in zip(values, groups, strict=True):
        looped[g].add(v)
    for g in range(n_groups):
        assert grouped[g] == looped[g], g
        mine = np.asarray([v for v, k in zip(values, groups, strict=True) if k == g])
        assert grouped[g].count == mine.size
        if mine.size:
            assert grouped[g].sum == pytest.approx(math.fsum(mine), rel=1e-12)
            assert (grouped[g].min, grouped[g].max) == (mine.min(), mine.max())
            assert_quantiles_within_alpha(grouped[g], mine, np.ones(mine.size))


@FAST
@given(
    n=st.integers(1, 200),
    n_groups=st.integers(1, 4),
    data=st.data(),
)
def test_add_grouped_with_weights_against_numpy(n: int, n_groups: int, data: st.DataObject) -> None:
    values = np.asarray(data.draw(st.lists(VALUE, min_size=n, max_size=n)))
    weights = np.asarray(data.draw(st.lists(WEIGHT, min_size=n, max_size=n)))
    groups = np.asarray(data.draw(st.lists(st.integers(0, n_groups - 1), min_size=n, max_size=n)))
    hists = [LogHistogram() for _ in range(n_groups)]
    add_grouped(hists, values, weights, groups)
    for g, h in enumerate(hists):
        v, w = values[groups == g], weights[groups == g]
        reference = LogHistogram()
        reference.add_many(v, w)
        assert_same(h, reference)
        present = w > 0
        if not present.any():
            assert h.count == 0 and math.isnan(h.mean)
            continue
        assert h.count == pytest.approx(math.fsum(w), rel=1e-12)
        assert h.sum == pytest.approx(math.fsum(w * v), rel=1e-12, abs=1e-300)
        assert (h.min, h.max) == (v[present].min(), v[present].max())  # zero weights move neither
        assert_quantiles_within_alpha(h, v, w)


def test_add_grouped_counts_overflow_and_rejects_mixed_parameters() -> None:
    hists = [LogHistogram(), LogHistogram()]
    add_grouped(hists, [5e7, 1.0, 3e7], [2.0, 1.0, 0.5], [0, 0, 1])
    assert hists[0].overflow == 2.0 and hists[1].overflow == 0.5
    assert hists[0].max == 5e7  # the exact maximum, though the value is clamped in its bucket
    with pytest.raises(ValueError, match="same parameters"):
        add_grouped([LogHistogram(), LogHistogram(alpha=0.01)], [1.0, 2.0], [1, 1], [0, 1])
    with pytest.raises(ValueError, match="finite and non-negative"):
        add_grouped(hists, [-1.0], [1.0], [0])


# --- add_mixture --------------------------------------------------------------------------------


@st.composite
def mixtures(draw: st.DrawFn) -> tuple[FloatArray, FloatArray, list[FloatArray]]:
    m = draw(st.integers(1, 4))
    n = draw(st.integers(1, 12))
    values = draw(hnp.arrays(np.float64, (m, n), elements=VALUE))
    weights = draw(hnp.arrays(np.float64, (m, n), elements=WEIGHT))
    mixes = [
        draw(hnp.arrays(np.float64, (draw(st.integers(1, 3)), m), elements=WEIGHT))
        for _ in range(draw(st.integers(1, 3)))
    ]
    return values, weights, mixes


@FAST
@given(case=mixtures())
def test_add_mixture_keeps_mass_mean_and_extremes(
    case: tuple[FloatArray, FloatArray, list[FloatArray]],
) -> None:
    values, weights, mixes = case
    targets = [([LogHistogram() for _ in range(mix.shape[0])], mix) for mix in mixes]
    add_mixture(targets, values, weights)
    for hists, mix in targets:
        for g, h in enumerate(hists):
            mass = math.fsum((mix[g][:, None] * weights).ravel())
            if mass == 0:
                assert h.count == 0
                continue
            total = math.fsum((mix[g][:, None] * weights * values).ravel())
            assert h.count == pytest.approx(mass, rel=1e-12)
            assert h.sum == pytest.approx(total, rel=1e-12, abs=1e-300)
            assert h.mean == pytest.approx(total / mass, rel=1e-12, abs=1e-300)
            used = (mix[g][:, None] > 0) & (weights > 0)
            assert (h.min, h.max) == (values[used].min(), values[used].max())
            # the mixture is the histogram of its components' points, reweighted
            reference = LogHistogram()
            for m in range(values.shape[0]):
                reference.add_many(values[m], weights[m] * mix[g, m])
            assert_same(h, reference, rel=1e-9)
            assert_quantiles_within_alpha(h, values.ravel(), (mix[g][:, None] * weights).ravel())


def test_add_mixture_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="groups, M"):
        add_mixture([([LogHistogram()], np.ones((1, 3)))], np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="one shape"):
        add_mixture([([LogHistogram()], np.ones((1, 2)))], np.ones((2, 4)), np.ones((2, 3)))


@FAST
@given(
    values=hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 10)), elements=OVER),
    data=st.data(),
)
def test_add_mixture_partitions_and_sparse_mixes_are_their_groups_points(
    values: FloatArray, data: st.DataObject
) -> None:
    """A partition (each component whole to one group) and the same mix as a scipy sparse 0/1
    matrix each give a group exactly its components' points, added one component at a time,
    onto histograms that already hold values (the mixture adds to a window of buckets)."""
    m, n = values.shape
    weights = data.draw(hnp.arrays(np.float64, (m, n), elements=WEIGHT))
    n_groups = data.draw(st.integers(1, 4))
    group_of = np.asarray(data.draw(st.lists(st.integers(0, n_groups - 1), min_size=m, max_size=m)))
    prior = data.draw(st.lists(OVER, max_size=5))

    def hists() -> list[LogHistogram]:
        out = [LogHistogram() for _ in range(n_groups)]
        for h in out:
            h.add_many(prior)
        return out

    by_partition, by_matrix, reference = hists(), hists(), hists()
    one_hot = sparse.csr_matrix((np.ones(m), (group_of, np.arange(m))), shape=(n_groups, m))
    add_mixture([(by_partition, group_of), (by_matrix, one_hot)], values, weights)
    for g in range(n_groups):
        for c in np.flatnonzero(group_of == g):
            reference[g].add_many(values[c], weights[c])
        assert_same(by_partition[g], reference[g], rel=1e-9)
        assert_same(by_matrix[g], reference[g], rel=1e-9)


def test_add_mixture_rejects_bad_partitions_and_negative_weights() -> None:
    points = np.ones((2, 3))
    with pytest.raises(ValueError, match="partition"):  # group 1 of a single group
        add_mixture([([LogHistogram()], np.array([0, 1]))], points, points)
    with pytest.raises(ValueError, match="partition"):  # three components, M is 2
        add_mixture([([LogHistogram()], np.array([0, 0, 0]))], points, points)
    with pytest.raises(ValueError, match="non-negative"):
        add_mixture([([LogHistogram()], np.array([[1.0, -0.5]]))], points, points)


# --- merging ------------------------------------------------------------------------------------


POINTS = st.lists(st.tuples(OVER, WEIGHT), max_size=60)


def _hist(points: list[tuple[float, float]]) -> LogHistogram:
    h = LogHistogram()
    h.add_many([v for v, _ in points], [w for _, w in points])
    return h


@FAST
@given(a=POINTS, b=POINTS, c=st.lists(OVER, max_size=60))
def test_merging_commutes_associates_and_is_the_union(
    a: list[tuple[float, float]], b: list[tuple[float, float]], c: list[float]
) -> None:
    ha, hb = _hist(a), _hist(b)
    hc = LogHistogram()
    for v in c:
        hc.add(v)  # the scalar path, part buffered
    before = ha.copy(), hb.copy()
    assert ha + hb == hb + ha
    assert_same((ha + hb) + hc, ha + (hb + hc))  # float addition associates only to rounding
    assert (ha, hb) == before  # + leaves its operands alone
    assert_same(ha + hb, _hist([*a, *b]), rel=1e-12)  # the histogram of the union
    summed = ha.copy()
    summed += hb
    assert summed == ha + hb


def test_merging_needs_the_same_parameters() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        _ = LogHistogram() + LogHistogram(max_value=1e3)


# --- Recorder.record_flow -----------------------------------------------------------------------

TTFT_SLO, E2E_SLO = 1.0, 3.5


def _recorder(fluid: bool, warmup_s: float = 0.0) -> Recorder:
    layout = Layout(
        class_names=("chat",),
        region_ids=("east", "west"),
        node_ids=("n0", "n1"),
        pool_node=(0, 1),
        pool_names=("n0/p", "n1/p"),
        pool_slots=(4, 4),
        ttft_slo_s=(TTFT_SLO,),
        e2e_slo_s=(E2E_SLO,),
    )
    return Recorder(layout, horizon_s=3600.0, warmup_s=warmup_s, interval_s=600.0, fluid=fluid)


def _record_flow(rec: Recorder, keep: bool = True) -> None:
    """One class, regions east and west, pools p0 (node n0) and p1 (node n1).

    east sends 3 to p0 and 1 to p1; west sends 1 to p0. Waits on p0: 0 s or 2 s, two requests
    each; on p1: 0 s for its one request (a 4 s point with no weight). Slot times on p0: 1 s or
    4 s, equally likely; on p1: 2 s. Prefill 0.5 s on p0, 0.1 s on p1."""
    served = np.array([[[3.0, 1.0]], [[1.0, 0.0]]])  # (R, C, P)
    wait_v = np.array([[[0.0, 2.0], [0.0, 4.0]]])  # (C, P, J)
    wait_w = np.array([[[2.0, 2.0], [1.0, 0.0]]])
    service = np.array([[[1.0, 4.0], [2.0, 2.0]]])  # (C, P, K)
    prefill = np.array([[0.5, 0.1]])
    network = np.array([[0.01, 0.02], [0.03, 0.04]])  # (R, P) one way
    tokens = (np.array([100.0]), np.array([10.0]))
    rec.record_flow(served, (wait_v, wait_w), service, prefill, network, keep, tokens)


def test_record_flow_against_a_hand_calculation() -> None:
    rec = _recorder(fluid=True)
    _record_flow(rec)
    # Counters, (C, R, P).
    np.testing.assert_array_equal(rec.served[0], [[3.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(rec.input_served[0], [[300.0, 100.0], [100.0, 0.0]])
    np.testing.assert_array_equal(rec.output_served[0], [[30.0, 10.0], [10.0, 0.0]])
    # Network: p0's served-weighted one-way mean (3 x 10 ms + 1 x 30 ms) / 4 = 15 ms; p1: 20 ms.
    # p0 latency points (weight 1 each): 0.03 + {0, 2} + {1, 4} = 1.03, 4.03, 3.03, 6.03;
    # first tokens: 0.03 + 0.5 + {0, 2} = 0.53 (met), 2.53 (over the 1 s TTFT SLO).
    # Both SLOs met only by (wait 0, slot 1 s): (wait 0, slot 4 s) misses the 3.5 s end-to-end
    # SLO, (wait 2 s, slot 1 s) the TTFT one -> share 1/4.
    # p1: latency 0.04 + 0 + 2 = 2.04, first token 0.14: all met.
    np.testing.assert_allclose(rec.met_slo[0], [[0.75, 1.0], [0.25, 0.0]], rtol=1e-12)
    latency = {g: rec.hists[(g, "latency_s")] for g in ("class", "node", "region")}
    # class: all five requests; mean (1.03 + 4.03 + 3.03 + 6.03 + 2.04) / 5
    h = latency["class"][0]
    assert h.count == pytest.approx(5.0, rel=1e-12)
    assert h.mean == pytest.approx((14.12 + 2.04) / 5, rel=1e-12)
    assert (h.min, h.max) == pytest.approx((1.03, 6.03), rel=1e-12)
    # points 1.03, 2.04, 3.03, 4.03, 6.03, each of weight 1
    for q, want in ((0.1, 1.03), (0.3, 2.04), (0.5, 3.03), (0.7, 4.03), (0.9, 6.03)):
        assert h.quantile(q) == pytest.approx(want, rel=ALPHA), q
    # nodes: n0 holds p0's four, n1 p1's one
    assert latency["node"][0].count == pytest.approx(4.0)
    assert latency["node"][0].mean == pytest.approx(3.53, rel=1e-12)
    assert latency["node"][1].count == pytest.approx(1.0)
    assert latency["node"][1].mean == pytest.approx(2.04, rel=1e-12)
    # regions, by their share of each pool: east 3/4 of p0 and all of p1, west 1/4 of p0
    assert latency["region"][0].count == pytest.approx(4.0, rel=1e-12)
    assert latency["region"][0].sum == pytest.approx(0.75 * 14.12 + 2.04, rel=1e-12)
    assert latency["region"][1].count == pytest.approx(1.0, rel=1e-12)
    assert latency["region"][1].mean == pytest.approx(3.53, rel=1e-12)
    # waits: (2 x 0 + 2 x 2 + 1 x 0) / 5; the 4 s point has no weight and moves no maximum
    wait = rec.hists[("class", "wait_s")][0]
    assert wait.count == pytest.approx(5.0) and wait.mean == pytest.approx(0.8, rel=1e-12)
    assert wait.max == 2.0
    assert rec.hists[("node", "wait_s")][1].max == 0.0
    ttft = rec.hists[("class", "ttft_s")][0]
    assert ttft.mean == pytest.approx((2 * 0.53 + 2 * 2.53 + 0.14) / 5, rel=1e-12)
    # and the summary reads the same figures
    s = rec.summary(np.zeros((1, 2, 2)))
    assert s["requests"]["served"] == 5
    assert s["sla_attainment"] == pytest.approx(2 / 5, rel=1e-12)  # 1 of p0's 4 + p1's 1
    assert s["wait_s"]["share_waited"] == pytest.approx(2 / 5, rel=1e-12)


def test_record_flow_without_keep_counts_but_records_no_latency() -> None:
    rec = _recorder(fluid=True)
    _record_flow(rec, keep=False)
    assert rec.served.sum() == 5.0
    assert all(h.count == 0 for hists in rec.hists.values() for h in hists)
    _record_flow(rec)  # a second block adds to the first
    assert rec.served.sum() == 10.0
    assert rec.hists[("class", "latency_s")][0].count == pytest.approx(5.0)


def test_finished_requests_against_a_hand_calculation() -> None:
    """The request engine's path: Recorder.finished -> add_grouped, by class, region, node."""
    rec = _recorder(fluid=False, warmup_s=10.0)
    col = {
        "class_idx": np.array([0, 0, 0]),
        "region_idx": np.array([0, 1, 1]),
        "pool_idx": np.array([0, 1, 1]),
        "arrival_s": np.array([5.0, 20.0, 30.0]),  # the first arrived during warm-up
        "network_s": np.array([0.1, 0.2, 0.3]),
        "reach_s": np.array([5.1, 20.2, 30.3]),
        "start_s": np.array([6.0, 20.2, 31.3]),
        "first_token_s": np.array([6.5, 20.4, 31.5]),
        "end_s": np.array([7.0, 22.2, 32.3]),
        "input_tokens": np.array([10, 20, 30]),
        "output_tokens": np.array([1, 2, 3]),
        "slots": np.array([1.0, 1.0, 1.0]),
    }
    rec.finished(**col)
    np.testing.assert_array_equal(rec.served[0], [[1, 0], [0, 2]])
    # latency = end + network - arrival: 2.2 (warm-up, left out), 2.4, 2.6; waits 0 and 1 s
    lat = rec.hists[("class", "latency_s")][0]
    assert lat.count == 2 and lat.mean == pytest.approx(2.5, rel=1e-12)
    assert (lat.min, lat.max) == pytest.approx((2.4, 2.6), rel=1e-12)
    assert rec.hists[("node", "latency_s")][0].count == 0
    assert rec.hists[("region", "wait_s")][1].mean == pytest.approx(0.5, rel=1e-12)
    ttft = rec.hists[("node", "ttft_s")][1]  # first token + network - arrival: 0.6 and 1.8
    assert ttft.mean == pytest.approx(1.2, rel=1e-12)
    # busy slot-seconds in the first 600 s interval: 1 + 2 + 1
    assert rec.busy[:, 0] == pytest.approx([1.0, 3.0])


# --- band_means -----------------------------------------------------------------------------------


def _band_means_loop(w: list[float], v: list[float], bands: int) -> list[float]:
    """Means of the equal-mass bands of a discrete law, from its quantile function: the band
    [lo, hi) of cumulative mass takes from each point the overlap of [cum_before, cum_after)
    with it."""
    total = sum(w)
    means = []
    for b in range(bands):
        lo, hi = total * b / bands, total * (b + 1) / bands
        moment, cum = 0.0, 0.0
        for wi, vi in zip(w, v, strict=True):
            moment += max(0.0, min(hi, cum + wi) - max(lo, cum)) * vi
            cum += wi
        means.append(moment / (hi - lo) if hi > lo else 0.0)
    return means


def test_band_means_by_hand() -> None:
    """Three points of weight 1 at 0, 3 and 6 s in two bands of 1.5: (1 x 0 + 0.5 x 3) / 1.5 =
    1 s and (0.5 x 3 + 1 x 6) / 1.5 = 5 s."""
    values, weights = band_means(np.array([[1.0, 1.0, 1.0]]), np.array([[0.0, 3.0, 6.0]]), 2)
    np.testing.assert_allclose(values, [[1.0, 5.0]], rtol=1e-15)
    np.testing.assert_allclose(weights, [[1.5, 1.5]], rtol=1e-15)


def test_band_means_of_many_rows_against_a_loop() -> None:
    """Rows at once (pools x classes, as the flow engine calls it) equal a row-by-row loop:
    zero weights (ties in the cumulative mass, band edges falling exactly on a point's end),
    a point heavier than a band, an empty row, one point; and the same with a tiny negative
    weight in one row (float noise: its cumulative mass then decreases)."""
    rng = np.random.default_rng(11)
    n = 40
    w = rng.exponential(1.0, (3, 5, n)) * (rng.random((3, 5, n)) < 0.7)
    v = np.sort(rng.exponential(10.0, (3, 1, n)), axis=-1)
    w[0, 0] = 0.0  # empty
    w[0, 1] = 0.0
    w[0, 1, 7] = 2.5  # one point: every band is that point
    w[0, 2] = np.r_[np.ones(12), np.zeros(n - 12)]  # edges at whole points (12 / 6 = 2 each)
    w[1, 3, 5] = 40.0  # heavier than a band
    noisy = w.copy()
    noisy[2, 4, 0] = -1e-17
    for case in (w, noisy):
        values, weights = band_means(case, v, EXP_POINTS)
        assert values.shape == weights.shape == (3, 5, EXP_POINTS)
        for i in range(3):
            for k in range(5):
                expect = _band_means_loop(list(case[i, k]), list(v[i, 0]), EXP_POINTS)
                np.testing.assert_allclose(values[i, k], expect, rtol=1e-12, atol=1e-12)
                total = case[i, k].sum()
                np.testing.assert_allclose(weights[i, k], total / EXP_POINTS, rtol=1e-12)
    values, _ = band_means(w, v, EXP_POINTS)
    np.testing.assert_array_equal(values[0, 0], 0.0)
    np.testing.assert_allclose(values[0, 1], v[0, 0, 7], rtol=1e-15)
    np.testing.assert_allclose(values[0, 2], [v[0, 0, 2 * b : 2 * b + 2].mean() for b in range(6)])


# --- wait_points --------------------------------------------------------------------------------


def erlang_c(c: int, a: float) -> float:
    """P(wait > 0) in M/M/c at offered load a (scipy's Poisson pmf and cdf)."""
    top = stats.poisson.pmf(c, a) * c / (c - a)
    return float(top / (stats.poisson.cdf(c - 1, a) + top))


def test_wait_points_are_the_zero_the_exponential_sixths_and_the_carried_wait() -> None:
    """Per (class, pool): no wait (weight w_zero); six points of equal weight for the Erlang C
    exponential tail of mean exp_mean, each inside its own sixth of that law (scipy's
    exponential CDF, so any placement within the sixths passes: mid-quantiles, or conditional
    means that keep the mean); the carried-over requests at their mean age (weight w_old)."""
    rng = np.random.default_rng(5)
    w_zero, w_exp, w_old = (rng.uniform(0, 10, (2, 3)) for _ in range(3))
    exp_mean, old_mean = rng.uniform(0.1, 5, (2, 3)), rng.uniform(0.1, 5, (2, 3))
    values, weights = wait_points(w_zero, w_exp, exp_mean, w_old, old_mean)
    assert values.shape == weights.shape == (2, 3, EXP_POINTS + 2)
    np.testing.assert_allclose(weights.sum(axis=2), w_zero + w_exp + w_old, rtol=1e-12)
    np.testing.assert_array_equal(values[..., 0], 0.0)
    np.testing.assert_array_equal(weights[..., 0], w_zero)
    level = stats.expon.cdf(values[..., 1:-1], scale=exp_mean[..., None])
    sixth = np.arange(EXP_POINTS) / EXP_POINTS
    assert (level >= sixth - 1e-12).all() and (level <= sixth + 1 / EXP_POINTS + 1e-12).all()
    each = np.broadcast_to((w_exp / EXP_POINTS)[..., None], level.shape)
    np.testing.assert_allclose(weights[..., 1:-1], each, rtol=1e-12)
    np.testing.assert_array_equal(values[..., -1], old_mean)
    np.testing.assert_array_equal(weights[..., -1], w_old)


def _mmc_wait_points(c: int, lam: float, mu: float) -> tuple[float, float, FloatArray, FloatArray]:
    """The wait points of n = 1 request of an M/M/c pool, as the flow engine builds them."""
    p_wait = erlang_c(c, lam / mu)
    theta = c * mu - lam  # the conditional wait is exponential with rate c mu - lambda
    values, weights = wait_points(
        np.array([[1 - p_wait]]),
        np.array([[p_wait]]),
        np.array([[1 / theta]]),
        np.zeros((1, 1)),
        np.zeros((1, 1)),
    )
    return p_wait, theta, values[0, 0], weights[0, 0]


@pytest.mark.parametrize(("c", "lam"), [(1, 0.5), (8, 7.2), (64, 60.0), (5000, 4900.0)])
def test_wait_points_follow_the_erlang_c_wait_law(c: int, lam: float) -> None:
    """P(W > 0) is Erlang C, and the points' CDF is within C / 6 of the closed form
    F(t) = 1 - C exp(-(c mu - lambda) t) everywhere (each of the six points stands for a
    sixth of the waiting requests and lies inside it: a step of at most one sixth)."""
    p_wait, theta, values, weights = _mmc_wait_points(c, lam, 1.0)
    assert weights[values > 0].sum() == pytest.approx(p_wait, rel=1e-12)
    assert weights.sum() == pytest.approx(1.0, rel=1e-12)
    order = np.argsort(values, kind="stable")
    v, cum = values[order], np.cumsum(weights[order])
    closed = 1 - p_wait * np.exp(-theta * v)
    left = np.concatenate([[0.0], cum[:-1]])  # the steps' CDF just below each point
    gap = np.maximum(np.abs(cum - closed), np.abs(left - closed))[v > 0]
    assert gap.max() <= p_wait / EXP_POINTS * (1 + 1e-9)
    # each point is its sixth's own mean, so the points keep the mean (the test below)


@pytest.mark.parametrize(("c", "lam"), [(1, 0.5), (8, 7.2), (64, 60.0)])
def test_wait_points_keep_the_erlang_c_mean_wait(c: int, lam: float) -> None:
    """Mean wait W_q = C / (c mu - lambda) (textbook M/M/c)."""
    p_wait, theta, values, weights = _mmc_wait_points(c, lam, 1.0)
    assert float(values @ weights) == pytest.approx(p_wait / theta, rel=1e-9)


def test_flow_engine_waits_on_an_mmc_pool_are_erlang_c() -> None:
    """The production path end to end: the M/M/c validation scenario at flow fidelity (8 slots,
    7.2 jobs/s, exponential 1 s): the share that waits is Erlang C exactly, the rest wait 0."""
    scenario = gs.load_scenario(MMC, sets=["horizon.duration=2h"])
    wait = gs.run(scenario, fidelity="flow").summary["wait_s"]
    p_wait = erlang_c(8, 7.2)
    assert wait["share_waited"] == pytest.approx(p_wait, rel=1e-9)
    # Percentiles: where the closed-form CDF 1 - C exp(-0.8 t) is within C / 6 of their level
    # (the points' bound above), plus 1 % for the histogram's relative error and the service
    # cv^2, which the engine estimates from samples (an Allen-Cunneen factor of about 1).
    for q in (0.5, 0.95):
        cdf = 1 - p_wait * math.exp(-0.8 * wait[f"p{round(q * 100)}"])
        assert abs(cdf - q) <= p_wait / EXP_POINTS + 0.01, q
