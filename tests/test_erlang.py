"""The request engine against queueing theory: M/M/c waits (Erlang C) and Little's law."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from gridsim.regress import erlang_c_theory, load_settings
from gridsim.run import run
from gridsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
MMC = ROOT / "scenarios" / "validation" / "mmc.yaml"
SEEDS = range(10)


def erlang_c(c: int, a: float) -> float:
    """P(wait > 0) for M/M/c with offered load a = lambda/mu, via the Poisson pmf/cdf ratio
    (stable for thousands of servers)."""
    top = stats.poisson.pmf(c, a) * c / (c - a)
    return float(top / (stats.poisson.cdf(c - 1, a) + top))


def mmc_runs(c: int, rho: float, customers: int, seeds: range = SEEDS) -> list[dict[str, float]]:
    """Per seed, after warm-up: mean wait, share that waited, and both sides of Little's law."""
    mean_service_s = 1.0
    rate = rho * c / mean_service_s
    warmup_s = 200.0 / (1 - rho)  # many relaxation times of the queue
    window_s = customers / rate
    interval_s = warmup_s / 4
    out = []
    for seed in seeds:
        scenario = load_scenario(
            MMC,
            sets=[
                f"nodes[solo].pools[slots].slots={c}",
                f"demand.classes[jobs].rate_per_s={rate}",
                f"demand.classes[jobs].service.mean={mean_service_s}",
                f"horizon.duration={window_s + warmup_s}",
                f"horizon.warmup={warmup_s}",
                f"outputs.timeseries_interval={interval_s}",
            ],
            seed=seed,
        )
        result = run(scenario)
        wait = result.summary["wait_s"]
        # Little's law on the waiting line: L_q, the time-average queue length from the
        # engine's series, against lambda x W_q from the requests served in the same window.
        series = result.timeseries
        queue = series[(series["metric"] == "queue_length") & (series["time_s"] >= warmup_s)]
        widths = np.minimum(queue["time_s"] + interval_s, window_s + warmup_s) - queue["time_s"]
        out.append(
            {
                "mean_wait": wait["mean"],
                "p_wait": wait["share_waited"],
                "lq": float(np.average(queue["value"], weights=widths)),
                "lambda_wq": wait["count"] / window_s * wait["mean"],
                "n": wait["count"],
            }
        )
    return out


def ci95(values: list[float]) -> tuple[float, float]:
    mean = float(np.mean(values))
    half = float(
        stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
    )
    return mean, half


CASES = [  # (servers, utilisation, customers per seed): a half-width of about 2 % expected
    (1, 0.5, 150_000),
    (1, 0.9, 600_000),
    (8, 0.5, 600_000),
    (8, 0.9, 1_000_000),
    (64, 0.9, 2_500_000),
]


@pytest.mark.slow
@pytest.mark.parametrize(("c", "rho", "customers"), CASES)
def test_mmc_matches_erlang_c(c: int, rho: float, customers: int) -> None:
    runs = mmc_runs(c, rho, customers)
    p_wait = erlang_c(c, rho * c)
    mean_wait = p_wait / (c - rho * c)  # mean service 1 s
    m, half = ci95([r["mean_wait"] for r in runs])
    assert m - half <= mean_wait <= m + half, (m, half, mean_wait)
    assert half < 0.03 * m, f"half-width {half / m:.1%} of the mean"
    pm, phalf = ci95([r["p_wait"] for r in runs])
    assert pm - phalf <= p_wait <= pm + phalf, (pm, phalf, p_wait)
    assert phalf < 0.03 * pm
    for r in runs:
        assert r["lq"] == pytest.approx(r["lambda_wq"], rel=0.02)


@pytest.mark.slow
def test_mmc_64_servers_half_load_almost_never_waits() -> None:
    """c=64, rho=0.5: Erlang C gives P(wait) = 4.3e-7, so a 3 % interval would need ~1e10
    customers; check instead that waits are as rare as theory says (Poisson bound)."""
    customers = 200_000
    runs = mmc_runs(64, 0.5, customers, seeds=range(3))
    expected = erlang_c(64, 32.0) * customers * 3
    waited = sum(r["p_wait"] * r["n"] for r in runs)
    assert waited <= stats.poisson.ppf(0.999, expected) + 1


def erlang_c_exact(c: int, a: Fraction) -> Fraction:
    """Erlang C from its definition, in exact rational arithmetic:
    C = (a^c / c! x c / (c - a)) / (sum_{k < c} a^k / k! + a^c / c! x c / (c - a))."""
    terms = [a**k / math.factorial(k) for k in range(c)]
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(terms) + top)


def erlang_c_by_erlang_b(c: int, a: float) -> float:
    """Erlang C from Erlang B's recursion B(k) = a B(k-1) / (k + a B(k-1)), B(0) = 1 (stable
    in floats for any c): C = c B / (c - a (1 - B))."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return c * b / (c - a * (1 - b))


def test_erlang_c_reference_against_exact_and_recursive_formulas() -> None:
    """The reference the slow tests compare the engine with, checked against two other
    computations: exact fractions for small c, Erlang B's recursion for thousands of servers."""
    # M/M/1: P(wait) = rho. M/M/2 at a = 1: C = 1/3 (textbook).
    assert erlang_c(1, 0.7) == pytest.approx(0.7, rel=1e-12)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-12)
    for c, a in ((1, 0.5), (1, 0.9), (8, 4.0), (8, 7.2), (64, 57.6), (64, 32.0)):
        exact = float(erlang_c_exact(c, Fraction(a)))
        assert erlang_c(c, a) == pytest.approx(exact, rel=1e-9), (c, a)
        assert erlang_c_by_erlang_b(c, a) == pytest.approx(exact, rel=1e-9), (c, a)
    for c, a in ((500, 480.0), (5000, 4900.0), (5000, 4999.0)):
        assert erlang_c(c, a) == pytest.approx(erlang_c_by_erlang_b(c, a), rel=1e-9), (c, a)
    assert erlang_c(64, 32.0) == pytest.approx(4.3e-7, rel=0.05)  # as the 64-server test says


def test_regress_compares_the_mmc_baseline_with_erlang_c() -> None:
    """``gridsim regress``'s closed form for its M/M/c baseline (8 slots, 7.2 jobs/s, mean
    service 1 s, 30 minutes), recorded in the golden file and computed from the scenario, is
    the textbook one, here in exact fractions."""
    golden = json.loads((ROOT / "results" / "baselines" / "mmc.json").read_text("utf-8"))
    settings = load_settings(ROOT / "results" / "baselines" / "regress.yaml")
    baseline = next(b for b in settings.scenarios if b.name == "mmc")
    assert baseline.statistical is not None and baseline.statistical.theory == "erlang_c"
    scenario = load_scenario(settings.base_dir / baseline.file, sets=baseline.set)
    c, a, horizon_s = 8, Fraction(72, 10), 1800
    p_wait = erlang_c_exact(c, a)
    wait = p_wait / (c - a)  # mean service 1 s
    expected = {
        "wait_share_waited": float(p_wait),
        "wait_mean_s": float(wait),
        "latency_mean_s": float(wait + 1),
        "utilization_mean": float(a / c),
        "requests_served": float(a * horizon_s - a * (wait + 1)),  # less those still inside
    }
    assert golden["theory"] == pytest.approx(expected, rel=1e-9)
    assert erlang_c_theory(scenario) == pytest.approx(expected, rel=1e-9)
    for change in ("admission.max_wait=1s", "demand.classes[jobs].rate_per_s=8"):
        with pytest.raises(ValueError, match="M/M/c"):  # no closed form to compare with
            erlang_c_theory(load_scenario(MMC, sets=[change]))


def test_mm8_quick_check() -> None:
    """A fast, looser version of the Erlang C check that always runs."""
    runs = mmc_runs(8, 0.9, 40_000, seeds=range(4))
    mean_wait = erlang_c(8, 7.2) / 0.8
    m = float(np.mean([r["mean_wait"] for r in runs]))
    assert m == pytest.approx(mean_wait, rel=0.15)
