"""``gridsim.engine.queueing.stationary`` (the flow engine's steady state of a pool under the
admission rules) against the independent references of ``tests/theory.py``; and those references
against each other and against a direct simulation.

The function is deterministic, so the tolerance is tight: 0.5 % relative, or 1e-4 absolute for
probabilities (tiny shares, e.g. a 2000-slot pool at half load almost never waits) and 1e-4 /
(c mu) seconds for waits (the same scale for a wait: waits of c slots are in units of 1 / (c mu)).

The module under test is imported inside each test, so this file collects while it is written.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import theory as th
from scipy import stats

from gridsim.scenario.demand_spec import Constant, Exponential, Lognormal

SERVERS = (1, 8, 100, 2000)
RHOS = (0.5, 0.8, 0.95, 1.2, 2.0)
RULES = ("none", "queue_limit", "max_wait", "patience", "queue_limit+patience")
MEAN_S = 1.0  # mean service time (s)
QUEUE_LIMIT = {1: 3, 8: 4, 100: 10, 2000: 50}  # waiting places
MAX_WAIT_S = {c: 4.0 / c for c in SERVERS}  # 4 s, 0.5 s (as the mmc scenario test), 40 ms, 2 ms
PATIENCE_MEAN_S = 2.0  # exponential patience: twice the mean service (Erlang-A)
RTOL, PROB_ATOL = 5e-3, 1e-4


def queueing() -> Any:
    from gridsim.engine import queueing as q

    return q


def exp_law(mean: float = PATIENCE_MEAN_S) -> Any:
    return queueing().patience_law(Exponential(dist="exponential", mean=mean))


def rule_args(rule: str, c: int) -> dict[str, Any]:
    """Keyword arguments of ``stationary`` (and the patience of the single class) for a rule."""
    return {
        "max_wait_s": MAX_WAIT_S[c] if rule == "max_wait" else None,
        "queue_limit": QUEUE_LIMIT[c] if rule.startswith("queue_limit") else None,
        "patience": [exp_law()] if "patience" in rule else [None],
    }


def reference(rule: str, c: int, a: float, mean_s: float = MEAN_S) -> th.Ref | None:
    """The closed form or chain for one rule; None where no stationary law exists."""
    if rule == "none":
        return th.mmc(c, a, mean_s) if a < c else None
    if rule == "queue_limit":
        return th.mmck(c, a, QUEUE_LIMIT[c], mean_s)
    if rule == "max_wait":
        return th.mmc_max_wait(c, a, MAX_WAIT_S[c] * mean_s, mean_s)
    k = QUEUE_LIMIT[c] if rule.startswith("queue_limit") else None
    return th.birth_death(c, a, mean_s, PATIENCE_MEAN_S * mean_s, k).ref


def solve(
    servers: list[float],
    loads: list[float],
    shares: list[list[float]],
    patience: list[Any],
    mean_s: float = MEAN_S,
    **kwargs: Any,
) -> Any:
    a = np.asarray(loads, np.float64)
    return queueing().stationary(
        servers=np.asarray(servers, np.float64),
        arrival_rps=a / mean_s,
        load=a,
        class_share=np.asarray(shares, np.float64),
        patience=patience,
        **kwargs,
    )


def mean_wait_served(out: Any) -> np.ndarray:
    return (out.wait_values * out.wait_weights).sum(-1) / out.served


def no_wait_share(out: Any, mean_s: float = MEAN_S) -> np.ndarray:
    """Weight of the served's wait points at zero: arrivals that found a free slot."""
    return np.where(out.wait_values <= 1e-12 * mean_s, out.wait_weights, 0.0).sum(-1)


def mismatches(out: Any, p: int, k: int, ref: th.Ref, c: int, mean_s: float = MEAN_S) -> list[str]:
    """Every field of pool ``p``, class ``k`` that misses its reference (empty: all agree)."""
    wait_atol = 1e-4 * mean_s / c
    got = {
        "served": (out.served[p, k], ref.served, PROB_ATOL),
        "dropped": (out.dropped[p, k], ref.dropped, PROB_ATOL),
        "abandoned": (out.abandoned[p, k], ref.abandoned, PROB_ATOL),
        "no wait": (no_wait_share(out, mean_s)[p, k], ref.no_wait, PROB_ATOL),
        "mean wait of served": (mean_wait_served(out)[p, k], ref.mean_wait_served, wait_atol),
        "mean time in queue, all": (out.mean_wait_all_s[p, k], ref.mean_wait_all, wait_atol),
    }
    return [
        f"{name}: got {g:.6g}, reference {w:.6g}"
        for name, (g, w, atol) in got.items()
        if not math.isclose(float(g), w, rel_tol=RTOL, abs_tol=atol)
    ]


# --- stationary against the references, every rule ----------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("rho", RHOS)
@pytest.mark.parametrize("c", SERVERS)
def test_stationary_matches_the_reference(c: int, rho: float, rule: str) -> None:
    """One pool, one class: shares, waits of the served, time in queue of all, against M/M/c,
    M/M/c/K, M/M/c+D, Erlang-A and M/M/c/K+M. Unbounded at or above full load: stable=False
    and nan."""
    a = rho * c
    out = solve([c], [a], [[1.0]], **rule_args(rule, c))
    ref = reference(rule, c, a)
    if ref is None:
        assert not out.stable[0]
        for field in ("served", "dropped", "abandoned", "mean_wait_all_s"):
            assert np.isnan(getattr(out, field)[0]).all(), field
        return
    assert out.stable[0]
    problems = mismatches(out, 0, 0, ref, c)
    assert not problems, f"c={c} rho={rho} {rule}: " + "; ".join(problems)


def test_the_three_shares_add_up_and_the_wait_weights_to_the_served() -> None:
    q = queueing()
    for c in SERVERS:
        for rho in RHOS:
            for rule in RULES:
                out = solve([c], [rho * c], [[1.0]], **rule_args(rule, c))
                if not out.stable[0]:
                    continue
                total = out.served + out.dropped + out.abandoned
                assert total[0, 0] == pytest.approx(1.0, abs=1e-9), (c, rho, rule)
                assert out.wait_weights.sum(-1)[0, 0] == pytest.approx(
                    out.served[0, 0], abs=1e-9
                ), (c, rho, rule)
                assert (out.wait_weights >= 0).all() and (out.wait_values >= 0).all()
                assert isinstance(out, q.Outcome)


@pytest.mark.parametrize("rule", RULES)
def test_vectorised_over_pools_equals_one_at_a_time(rule: str) -> None:
    """Twenty pools of every size and load in one call give what twenty calls give (rules that
    take one value for all pools: the maximum wait is the 8-slot pool's)."""
    pairs = [(c, rho * c) for c in SERVERS for rho in RHOS]
    kwargs = rule_args(rule, 8)
    together = solve([c for c, _ in pairs], [a for _, a in pairs], [[1.0]] * len(pairs), **kwargs)
    for p, (c, a) in enumerate(pairs):
        alone = solve([c], [a], [[1.0]], **kwargs)
        assert together.stable[p] == alone.stable[0]
        for field in (
            "served",
            "dropped",
            "abandoned",
            "wait_values",
            "wait_weights",
            "mean_wait_all_s",
        ):
            np.testing.assert_allclose(
                getattr(together, field)[p],
                getattr(alone, field)[0],
                rtol=1e-9,
                atol=1e-15,
                equal_nan=True,
                err_msg=f"{field} of pool {p} (c={c}, a={a})",
            )


def test_kappa_one_is_mm_c() -> None:
    """kappa = 1 is exactly M/M/c (and the default); kappa = 2 keeps Erlang C's chance of waiting
    and doubles its mean wait (Allen-Cunneen)."""
    servers = [1, 8, 100, 2000]
    loads = [0.8, 7.6, 95.0, 1900.0]
    default = solve(servers, loads, [[1.0]] * 4, [None])
    ones = solve(servers, loads, [[1.0]] * 4, [None], kappa=np.ones(4))
    twos = solve(servers, loads, [[1.0]] * 4, [None], kappa=np.full(4, 2.0))
    for p, (c, a) in enumerate(zip(servers, loads, strict=True)):
        ref = th.mmc(c, a)
        assert not mismatches(ones, p, 0, ref, c), mismatches(ones, p, 0, ref, c)
        np.testing.assert_allclose(ones.served, default.served, rtol=1e-12)
        np.testing.assert_allclose(mean_wait_served(ones), mean_wait_served(default), rtol=1e-12)
        assert no_wait_share(twos)[p, 0] == pytest.approx(ref.no_wait, rel=RTOL, abs=PROB_ATOL)
        assert mean_wait_served(twos)[p, 0] == pytest.approx(
            2 * ref.mean_wait_served, rel=RTOL, abs=2e-4 / c
        )


# --- several classes on one pool ---------------------------------------------------------------


@pytest.mark.parametrize(("c", "rho"), [(8, 0.8), (8, 1.2), (8, 1.9), (100, 0.95), (100, 1.5)])
@pytest.mark.parametrize("max_wait", [False, True])
def test_a_patient_class_beside_an_impatient_one(c: int, rho: float, max_wait: bool) -> None:
    """Half the arrivals with exponential patience (mean 2 s), half without: the patient class
    never abandons, and both match M/M/c+G with the two laws mixed (with or without the maximum
    wait): the impatient class waits less than the patient one, since it is served only when
    its wait was short."""
    a = rho * c
    d = MAX_WAIT_S[c] if max_wait else None
    out = solve([c], [a], [[0.5, 0.5]], [exp_law(), None], max_wait_s=d)
    assert out.stable[0]
    assert out.abandoned[0, 1] <= 1e-12
    assert out.served[0, 1] + out.dropped[0, 1] == pytest.approx(1.0, abs=1e-9)
    refs = th.mmc_patience(c, a, [th.exponential(PATIENCE_MEAN_S), None], [0.5, 0.5], max_wait=d)
    for k, ref in enumerate(refs):
        problems = mismatches(out, 0, k, ref, c)
        assert not problems, f"class {k}: " + "; ".join(problems)


def test_no_stationary_law_when_the_patient_class_alone_overloads() -> None:
    """Patient half at rho 2.5: it alone offers 1.25 x the slots; without a maximum wait no
    stationary law exists, with one it does."""
    out = solve([8, 8], [20.0, 12.0], [[0.5, 0.5]] * 2, [exp_law(), None])
    assert out.stable.tolist() == [False, True]
    assert np.isnan(out.served[0]).all()
    bounded = solve([8], [20.0], [[0.5, 0.5]], [exp_law(), None], max_wait_s=0.5)
    assert bounded.stable[0]


@pytest.mark.parametrize("rule", ["patience", "queue_limit+patience", "max_wait", "none"])
@pytest.mark.parametrize(("c", "rho"), [(8, 0.8), (8, 1.2), (100, 0.95), (100, 2.0)])
def test_two_classes_of_equal_patience_are_one_class(c: int, rho: float, rule: str) -> None:
    a = rho * c
    kwargs = rule_args(rule, c)
    one = solve([c], [a], [[1.0]], **kwargs)
    if not one.stable[0]:
        return
    kwargs["patience"] = kwargs["patience"] * 2
    if "patience" in rule:
        kwargs["patience"] = [exp_law(), exp_law()]  # two objects with the same law
    two = solve([c], [a], [[0.3, 0.7]], **kwargs)
    assert two.stable[0]
    for k in (0, 1):
        for field in ("served", "dropped", "abandoned", "mean_wait_all_s"):
            assert getattr(two, field)[0, k] == pytest.approx(
                getattr(one, field)[0, 0], rel=1e-6, abs=1e-12
            ), (field, k)
        assert mean_wait_served(two)[0, k] == pytest.approx(
            mean_wait_served(one)[0, 0], rel=1e-6, abs=1e-12
        )


@pytest.mark.parametrize("max_wait_s", [None, 4.0])
def test_classes_sharing_one_law_object_equal_classes_with_their_own(
    max_wait_s: float | None,
) -> None:
    """The law is computed once per distinct patience object and spread to the classes: five
    classes (two sharing one object, two patient, one other law) in pools from light load to
    overload equal the same classes each with its own object, field by field; and within a
    pool, classes of the same law get the same shares and waits."""
    law_a, law_b = exp_law(2.0), exp_law(0.5)
    shared = [law_a, None, law_a, law_b, None]
    separate = [exp_law(2.0), None, exp_law(2.0), exp_law(0.5), None]
    rng = np.random.default_rng(3)
    shares = rng.dirichlet([3.0, 0.3, 2.0, 1.0, 0.3], size=4)
    kwargs: dict[str, Any] = {"max_wait_s": max_wait_s}
    one = solve([8, 8, 100, 100], [5.0, 12.0, 90.0, 160.0], shares.tolist(), shared, **kwargs)
    own = solve([8, 8, 100, 100], [5.0, 12.0, 90.0, 160.0], shares.tolist(), separate, **kwargs)
    assert one.stable.all()
    fields = ("served", "dropped", "abandoned", "wait_values", "wait_weights", "mean_wait_all_s")
    for field in fields:
        np.testing.assert_allclose(getattr(one, field), getattr(own, field), rtol=1e-12)
        got = getattr(one, field)
        np.testing.assert_array_equal(got[:, 0], got[:, 2], err_msg=field)
        np.testing.assert_array_equal(got[:, 1], got[:, 4], err_msg=field)
    assert (one.abandoned[:, 3] > one.abandoned[:, 0]).all()  # shorter patience leaves more
    np.testing.assert_array_equal(one.abandoned[:, 1], 0.0)  # the patient never abandon


# --- patience laws other than exponential -------------------------------------------------------


def test_patience_law_cdfs() -> None:
    q = queueing()
    assert q.patience_law(None) is None
    x = np.array([0.0, 0.01, 0.3, 1.0, 1.9, 2.1, 5.0, 40.0])
    cases = [
        (Exponential(dist="exponential", mean=2.0), stats.expon(scale=2.0).cdf(x)),
        (Constant(dist="constant", value=2.0), (x > 2.0).astype(float)),
        (
            Lognormal(dist="lognormal", mean=2.0, sigma=0.8),
            stats.lognorm(0.8, scale=2.0 * math.exp(-0.32)).cdf(x),
        ),
    ]
    for spec, want in cases:
        law = q.patience_law(spec)
        np.testing.assert_allclose(law.cdf(x), want, rtol=1e-9, atol=1e-12, err_msg=spec.dist)


@pytest.mark.parametrize(("c", "rho"), [(8, 0.8), (8, 1.2), (100, 0.95), (100, 2.0), (2000, 1.2)])
def test_lognormal_and_constant_patience(c: int, rho: float) -> None:
    """M/M/c+G with lognormal patience (mean 2 s, sigma 1) against the integral reference; and
    constant patience d (everyone leaves after d) is the maximum wait d, with the leavers
    counted abandoned instead of dropped."""
    q = queueing()
    a = rho * c
    logn = q.patience_law(Lognormal(dist="lognormal", mean=2.0, sigma=1.0))
    out = solve([c], [a], [[1.0]], [logn])
    ref = th.mmc_patience(c, a, [th.lognormal(2.0, 1.0)], [1.0])[0]
    assert not mismatches(out, 0, 0, ref, c), mismatches(out, 0, 0, ref, c)
    d = MAX_WAIT_S[c]
    const = solve([c], [a], [[1.0]], [q.patience_law(Constant(dist="constant", value=d))])
    ref = th.mmc_max_wait(c, a, d)
    swapped = th.Ref(
        ref.served,
        0.0,
        ref.dropped,
        ref.mean_wait_served,
        ref.mean_wait_all + d * ref.dropped,
        ref.no_wait,
    )
    assert not mismatches(const, 0, 0, swapped, c), mismatches(const, 0, 0, swapped, c)


@pytest.mark.parametrize("rule", RULES)
def test_times_scale_with_the_mean_service(rule: str) -> None:
    """30-second services, with the maximum wait and patience 30 x longer: the same shares and
    waits 30 x longer (the references are computed in those units, not rescaled)."""
    mean_s = 30.0
    c, a = 8, 9.6
    kwargs = rule_args(rule, c)
    if kwargs["max_wait_s"] is not None:
        kwargs["max_wait_s"] *= mean_s
    if "patience" in rule:
        kwargs["patience"] = [exp_law(PATIENCE_MEAN_S * mean_s)]
    out = solve([c], [a], [[1.0]], mean_s=mean_s, **kwargs)
    ref = reference(rule, c, a, mean_s) if rule != "none" else None
    if ref is None:
        assert not out.stable[0]
        return
    problems = mismatches(out, 0, 0, ref, c, mean_s)
    assert not problems, "; ".join(problems)


# --- the references themselves -----------------------------------------------------------------


def test_erlang_b_two_ways() -> None:
    for c, a in ((1, 0.5), (8, 6.4), (100, 95.0), (2000, 1000.0), (2000, 1900.0), (2000, 4000.0)):
        assert th.erlang_b(c, a) == pytest.approx(th.erlang_b_recursion(c, a), rel=1e-9)
    assert th.erlang_c(1, 0.7) == pytest.approx(0.7, rel=1e-12)  # M/M/1: P(wait) = rho
    assert th.erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-12)


@pytest.mark.parametrize("c", SERVERS)
def test_references_agree_with_each_other(c: int) -> None:
    """Independent routes to the same numbers (to 1e-8): M/M/c/K closed form = its chain;
    the Erlang-A chain's first-step waits = Little's law and theta L_q / lambda = the M/M/c+G
    integral with exponential patience; the M/M/c+D closed form = Boots & Tijms (rho < 1) = the
    M/M/c+G integral with a maximum wait = constant patience; no rule = Erlang C."""
    for rho in RHOS:
        a = rho * c
        k, d = QUEUE_LIMIT[c], MAX_WAIT_S[c]
        close = {"rel": 1e-8, "abs": 1e-14}
        closed, chain = th.mmck(c, a, k), th.birth_death(c, a, k=k).ref
        for field in ("dropped", "mean_wait_served", "mean_wait_all", "no_wait"):
            assert getattr(chain, field) == pytest.approx(getattr(closed, field), **close), field
        for limit in (None, k):
            erlang_a = th.birth_death(c, a, patience_mean=PATIENCE_MEAN_S, k=limit)
            ref = erlang_a.ref
            theta = 1 / PATIENCE_MEAN_S
            assert ref.abandoned == pytest.approx(theta * erlang_a.lq / erlang_a.lam, **close)
            assert ref.mean_wait_all == pytest.approx(erlang_a.lq / erlang_a.lam, **close)
            assert ref.served + ref.dropped + ref.abandoned == pytest.approx(1.0, abs=1e-12)
        integral = th.mmc_patience(c, a, [th.exponential(PATIENCE_MEAN_S)], [1.0])[0]
        chain = th.birth_death(c, a, patience_mean=PATIENCE_MEAN_S).ref
        for field in ("abandoned", "mean_wait_served", "mean_wait_all", "no_wait"):
            assert getattr(integral, field) == pytest.approx(getattr(chain, field), **close)
        closed = th.mmc_max_wait(c, a, d)
        if rho < 1:
            assert closed.dropped == pytest.approx(th.boots_tijms_loss(c, a, d), **close)
            plain = th.mmc_patience(c, a, [None], [1.0])[0]
            assert plain.mean_wait_served == pytest.approx(th.mmc(c, a).mean_wait_served, **close)
        bounded = th.mmc_patience(c, a, [None], [1.0], max_wait=d)[0]
        const = th.mmc_patience(c, a, [th.constant(d)], [1.0])[0]
        for field in ("dropped", "mean_wait_served", "mean_wait_all", "no_wait"):
            assert getattr(bounded, field) == pytest.approx(getattr(closed, field), **close)
        assert const.abandoned == pytest.approx(closed.dropped, **close)
        assert const.mean_wait_served == pytest.approx(closed.mean_wait_served, **close)


def sim_check(ref: th.Ref, runs: list[th.SimResult], what: str) -> None:
    """The reference inside the 99.9 % t-interval of the runs' means (one interval per field,
    six fields a case: a chance failure of a right reference is ~0.6 % per case)."""
    rows = [r.ref() for r in runs]
    t = stats.t.ppf(0.9995, len(rows) - 1)
    for field in ("served", "dropped", "abandoned", "mean_wait_served", "mean_wait_all"):
        values = np.array([getattr(r, field) for r in rows])
        mean, half = values.mean(), t * values.std(ddof=1) / math.sqrt(len(values))
        want = getattr(ref, field)
        assert abs(mean - want) <= half + 1e-12, f"{what} {field}: {mean:.5f} ± {half:.5f}, {want}"


SIM_CASES = [  # c = 8, mean service 1 s: (name, load, simulate kwargs, reference)
    ("M/M/8/12", 9.6, {"queue_limit": 4}, lambda a: th.mmck(8, a, 4)),
    ("M/M/8+D", 9.6, {"max_wait": 0.5}, lambda a: th.mmc_max_wait(8, a, 0.5)),
    (
        "Erlang-A",
        9.6,
        {"patience": th.exponential(2.0)},
        lambda a: th.birth_death(8, a, patience_mean=2.0).ref,
    ),
    (
        "M/M/8/12+M",
        9.6,
        {"queue_limit": 4, "patience": th.exponential(2.0)},
        lambda a: th.birth_death(8, a, patience_mean=2.0, k=4).ref,
    ),
    (
        "M/M/8+lognormal",
        9.6,
        {"patience": th.lognormal(2.0, 1.0)},
        lambda a: th.mmc_patience(8, a, [th.lognormal(2.0, 1.0)], [1.0])[0],
    ),
]


@pytest.mark.parametrize(("name", "a", "kwargs", "ref"), SIM_CASES, ids=[s[0] for s in SIM_CASES])
def test_references_against_a_direct_simulation(name: str, a: float, kwargs: Any, ref: Any) -> None:
    """The references (rho = 1.2) against ``theory.simulate``: 20 seeds x 30,000 customers
    (a half-width of ~2 % of the dropped or abandoned share)."""
    runs = [th.simulate(8, a, 30_000, seed, warmup=1_000, **kwargs)[0] for seed in range(20)]
    sim_check(ref(a), runs, name)


@pytest.mark.slow
@pytest.mark.parametrize("a", [6.4, 7.6, 9.6, 16.0])
def test_references_against_a_long_simulation(a: float) -> None:
    """Every family at rho 0.8, 0.95, 1.2, 2, and the mixed classes (exponential patience beside
    none): 10 seeds x 200,000 customers each."""
    for name, _, kwargs, ref in SIM_CASES:
        runs = [th.simulate(8, a, 200_000, seed, warmup=5_000, **kwargs)[0] for seed in range(10)]
        sim_check(ref(a), runs, f"{name} a={a}")
    mix = [(0.5, th.exponential(1.0)), (0.5, None)]
    if a * 0.5 < 8:  # else the patient half alone overloads the pool: no stationary law
        runs = [th.simulate(8, a, 200_000, s, warmup=5_000, classes=mix) for s in range(10)]
        refs = th.mmc_patience(8, a, [law for _, law in mix], [s for s, _ in mix])
        for k in (0, 1):
            sim_check(refs[k], [r[k] for r in runs], f"mixed class {k} a={a}")


def discrete_patience(values: np.ndarray) -> th.Patience:
    """Patience equally likely to be each of ``values`` (sorted): a trace's empirical law."""
    v = np.sort(np.asarray(values, np.float64))
    n = v.size
    return th.Patience(
        lambda x: float((v > x).sum()) / n,
        lambda x: float(np.minimum(v, x).sum()) / n,
        lambda x: float(v[v <= x].sum()) / n,
        lambda x: np.searchsorted(v, np.asarray(x, np.float64), side="right") / n,
        lambda rng, size: rng.choice(v, size),
        tuple(float(x) for x in v),
    )


@pytest.mark.parametrize(("c", "rho"), [(8, 0.8), (8, 1.2), (100, 2.0)])
def test_empirical_patience(c: int, rho: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """M/M/c+G with patience resampled from a trace (``empirical``, here 40 values from 0.1 s
    to 4 s) against the integral reference over the same discrete law: the compiled
    quadrature's empirical cdf (a search of the sorted values)."""
    from types import SimpleNamespace

    from gridsim.demand import lengths
    from gridsim.scenario.demand_spec import Empirical

    values = np.linspace(0.1, 4.0, 40)
    trace = SimpleNamespace(input_tokens=values, output_tokens=values)
    monkeypatch.setattr(lengths, "load_trace", lambda path: trace)
    q = queueing()
    law = q.patience_law(Empirical(dist="empirical", trace="x.csv", field="input"))
    a = rho * c
    out = solve([c], [a], [[1.0]], [law])
    ref = th.mmc_patience(c, a, [discrete_patience(values)], [1.0])[0]
    assert not mismatches(out, 0, 0, ref, c), mismatches(out, 0, 0, ref, c)


def test_mmng_rows_do_not_depend_on_threads() -> None:
    """The M/M/n+G rows are computed in chunks, one a thread: the outcome of many pools is the
    same, bit for bit, on one thread as on several, and the same as each pool alone."""
    import numba

    rng = np.random.default_rng(7)
    m = 64  # enough rows for several chunks
    servers = rng.integers(2, 200, m).astype(np.float64)
    loads = servers * rng.uniform(0.5, 2.5, m)
    share = rng.dirichlet(np.ones(3), m)
    laws = [exp_law(20.0), exp_law(90.0), None]
    fields = ("served", "dropped", "abandoned", "wait_values", "wait_weights", "mean_wait_all_s")

    def run(n_threads: int) -> Any:
        before = numba.get_num_threads()
        numba.set_num_threads(n_threads)
        try:
            return solve(list(servers), list(loads), share.tolist(), laws, max_wait_s=300.0)
        finally:
            numba.set_num_threads(before)

    one = run(1)
    many = run(numba.config.NUMBA_NUM_THREADS)
    for name in fields:
        np.testing.assert_array_equal(getattr(many, name), getattr(one, name), err_msg=name)
    for i in (0, m // 2, m - 1):  # a pool alone: its own row, whatever the chunk it fell in
        alone = solve([servers[i]], [loads[i]], [share[i].tolist()], laws, max_wait_s=300.0)
        for name in fields:
            np.testing.assert_array_equal(getattr(alone, name)[0], getattr(one, name)[i])


def test_quadrature_nodes_merge_in_order() -> None:
    """The quadrature's node groups (each in order) are merged: the array a sort would give."""
    from gridsim.engine.mmng import _merge_sorted

    rng = np.random.default_rng(3)
    for n_a, n_b in ((0, 5), (5, 0), (160, 96), (7, 61)):
        a = np.sort(rng.uniform(0, 1, n_a))
        shared = min(n_b // 2, n_a)  # some values in both: ties
        b = np.sort(np.concatenate([rng.uniform(0, 1, n_b - shared), a[:shared]]))
        out = np.empty(n_a + n_b)
        _merge_sorted(a, n_a, b, n_b, out)
        np.testing.assert_array_equal(out, np.sort(np.concatenate([a, b])))
