"""The admission rules end to end, at both fidelities, against closed forms (``tests/theory.py``).

``scenarios/validation/mmc.yaml``: 8 slots, exponential service of mean 1 s, Poisson arrivals at
6.4/s (rho 0.8) or 9.6/s (rho 1.2), one region, no network delay. Three rules, one at a time:

- ``admission.queue_limit=4``: M/M/8/12, the share dropped;
- ``admission.max_wait=0.5`` (s): M/M/8+D, the share dropped and the mean wait of the served;
- exponential ``patience`` of mean 2 s on the class: Erlang-A (M/M/8+M), the share abandoned
  and the mean wait of the served.

Flow fidelity (1-minute ticks, constant demand: each tick is the pool's steady state) must be
within 3 % of the reference: the acceptance bar. Request fidelity: the reference must lie in the
95 % confidence interval of the mean over 10 seeds x 4 hours (warm-up 10 minutes), family-wise
over the ten request checks of this file (Bonferroni: each interval at 99.5 %, Student t with
9 degrees of freedom), so a right engine fails none of them by chance 95 % of the time; and the
interval must be narrower than 5 % of the reference, or the check would have no power.

Shares are counted over the whole run (``dropped / arrived``; the summary's counters include
the warm-up, whose start from empty biases them by well under 0.1 %); waits are the summary's
``wait_s.mean``, over requests served that arrived after the warm-up.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import theory as th
from scipy import stats

import gridsim as gs
from gridsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
MMC = ROOT / "scenarios" / "validation" / "mmc.yaml"
C = 8
RATES = {0.8: 6.4, 1.2: 9.6}  # rho -> arrivals/s (mean service 1 s)
SEEDS = range(10)
REQUEST_RUN = ["horizon.duration=4h", "horizon.warmup=10min"]
FLOW_RUN = ["horizon.duration=2h", "horizon.warmup=10min", "horizon.resolution=1min"]
FLOW_RTOL = 0.03
CHECKS = 10  # request-fidelity intervals in this file (for the family-wise level)
LEVEL = 1 - 0.05 / CHECKS

# rule -> (--set overrides, reference from the offered load, the quantities compared)
RULES: dict[str, tuple[list[str], Callable[[float], th.Ref], tuple[str, ...]]] = {
    "queue_limit": (["admission.queue_limit=4"], lambda a: th.mmck(C, a, 4), ("dropped",)),
    "max_wait": (
        ["admission.max_wait=0.5"],
        lambda a: th.mmc_max_wait(C, a, 0.5),
        ("dropped", "mean_wait_served"),
    ),
    "patience": (
        ["demand.classes[jobs].patience={dist: exponential, mean: 2}"],
        lambda a: th.birth_death(C, a, patience_mean=2.0).ref,
        ("abandoned", "mean_wait_served"),
    ),
}
CASES = [(rule, rho) for rule in RULES for rho in RATES]


def measured(summary: dict) -> dict[str, float]:
    r = summary["requests"]
    return {
        "dropped": r["dropped"] / r["arrived"],
        "abandoned": r["abandoned"] / r["arrived"],
        "mean_wait_served": summary["wait_s"]["mean"],
    }


def scenario(rule: str, rho: float, extra: list[str], seed: int | None = None) -> gs.Scenario:
    sets = [*RULES[rule][0], f"demand.classes[jobs].rate_per_s={RATES[rho]}", *extra]
    return load_scenario(MMC, sets=sets, seed=seed)


@cache
def request_runs(rule: str, rho: float) -> list[dict[str, float]]:
    return [
        measured(gs.run(scenario(rule, rho, REQUEST_RUN, seed), fidelity="request").summary)
        for seed in SEEDS
    ]


@pytest.mark.parametrize(("rule", "rho"), CASES)
def test_flow_fidelity_matches_the_closed_form(rule: str, rho: float) -> None:
    """Within 3 % of the reference: the acceptance bar of the flow engine."""
    summary = gs.run(scenario(rule, rho, FLOW_RUN), fidelity="flow").summary
    got = measured(summary)
    ref = RULES[rule][1](RATES[rho] * 1.0)
    for field in RULES[rule][2]:
        want = getattr(ref, field)
        assert got[field] == pytest.approx(want, rel=FLOW_RTOL), (field, got[field], want)
    others = {"dropped", "abandoned"} - set(RULES[rule][2])
    for field in others:  # the other way out stays closed
        assert got[field] == 0, field


@pytest.mark.parametrize(("rule", "rho"), CASES)
def test_request_fidelity_matches_the_closed_form(rule: str, rho: float) -> None:
    runs = request_runs(rule, rho)
    ref = RULES[rule][1](RATES[rho] * 1.0)
    t = stats.t.ppf(1 - (1 - LEVEL) / 2, len(runs) - 1)
    for field in RULES[rule][2]:
        values = np.array([r[field] for r in runs])
        mean = float(values.mean())
        half = float(t * values.std(ddof=1) / np.sqrt(len(values)))
        want = getattr(ref, field)
        assert mean - half <= want <= mean + half, f"{field}: {mean:.5f} ± {half:.5f}, {want:.5f}"
        assert half < 0.05 * want, f"{field}: half-width {half / want:.1%} of the reference"
    for field in {"dropped", "abandoned"} - set(RULES[rule][2]):
        assert all(r[field] == 0 for r in runs), field


@pytest.mark.parametrize("warmup", ["1min", "10min"])
def test_flow_warm_up_is_exact(warmup: str) -> None:
    """7-minute ticks and a warm-up that is not a multiple of them: the latency statistics of
    the flow engine count the requests that arrived after the warm-up, rate x (duration -
    warm-up), within 1 %, and the request engine's count (mean of five seeds) within 1 %."""
    sets = [
        "demand.classes[jobs].rate_per_s=6.4",
        "horizon.duration=2h",
        f"horizon.warmup={warmup}",
    ]
    flow = gs.run(load_scenario(MMC, sets=[*sets, "horizon.resolution=7min"]), fidelity="flow")
    warmup_s = flow.scenario.horizon.warmup
    expected = 6.4 * (7200 - warmup_s)
    counts = [
        gs.run(load_scenario(MMC, sets=sets, seed=seed), fidelity="request").summary["latency_s"][
            "count"
        ]
        for seed in range(5)
    ]
    request = float(np.mean(counts))
    got = flow.summary["latency_s"]["count"]
    assert got == pytest.approx(expected, rel=0.01), (got, expected)
    assert got == pytest.approx(request, rel=0.01), (got, request)
    assert request == pytest.approx(expected, rel=0.01)  # the reference itself
