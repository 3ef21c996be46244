"""Request engine, non-preemptive priorities: a pool whose classes come in two or more
priorities serves the waiting request of the lowest priority number first (FCFS within one),
never interrupting one in service; under overload its highest numbers are shed first.

References: Cobham's closed form for M/M/c with non-preemptive priorities (``tests/theory.py``,
``cobham_waits``); the engine's own FCFS path for pools of one priority (the priority path with
one level is FCFS, so forcing it must reproduce FCFS's numbers exactly); the fluid limit of an
overloaded pool for the shed tier; and small hand-worked traces.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import theory as th
from scipy import stats

import gridsim.engine.request as request_engine
from gridsim.run import Result, run
from gridsim.scenario import ScenarioError, load_scenario_text

# One region, one node, one pool of `slots` slots, no network delay; two job classes with
# Poisson arrivals and exponential service of mean 1 s. `high` and `low` name the tiers by what
# their priorities are in most tests (0 and 1); a test may give them other numbers.
TWO_TIERS = """
name: two-tiers
seed: {seed}
fidelity: request
horizon: {{duration: {duration}, warmup: {warmup}}}
regions: [{{id: here, lat: 30.0, lon: 110.0}}]
nodes:
  - id: solo
    kind: data_centre
    lat: 30.0
    lon: 110.0
    region: here
    pools: [{{id: slots, slots: {slots}}}]
network: {{generate: full_mesh, per_hop_ms: 0}}
admission: {admission}
policy: {{name: nearest, on_failure: {on_failure}}}
events: {events}
outputs: {{figures: false, requests: {requests}}}
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - name: high
      kind: job
      priority: {high}
      rate_per_s: {rate_high}
      service: {{dist: {dist}, {service}}}
      slots_per_job: {slots_per_job}
    - name: low
      kind: job
      priority: {low}
      rate_per_s: {rate_low}
      service: {{dist: {dist}, {service}}}
"""


def two_tiers(**kw: Any) -> str:
    values: dict[str, Any] = {
        "seed": 1,
        "duration": "1h",
        "warmup": 0,
        "slots": 4,
        "admission": "{}",
        "events": "[]",
        "requests": "false",
        "high": 0,
        "low": 1,
        "rate_high": 1.6,
        "rate_low": 1.6,
        "dist": "exponential",
        "service": "mean: 1.0",
        "slots_per_job": 1,
        "on_failure": "retry",
    }
    values.update(kw)
    return TWO_TIERS.format(**values)


def run_text(text: str) -> Result:
    return run(load_scenario_text(text))


def with_patience(text: str, law: str) -> str:
    """The scenario with both classes given the patience ``law`` (YAML flow mapping)."""
    return text.replace("      service:", f"      patience: {law}\n      service:")


def by_class(result: Result, name: str) -> dict[str, Any]:
    block: dict[str, Any] = result.summary["by_class"][name]
    return block


def check_accounting(result: Result) -> None:
    """Every request is accounted for, nationally and per class."""
    s = result.summary
    for block in (s, *s["by_class"].values()):
        r = block["requests"]
        parts = ("served", "dropped", "abandoned", "lost", "in_flight")
        assert r["arrived"] == sum(r[k] for k in parts), r
        assert min(r[k] for k in parts) >= 0, r


# --- against Cobham ------------------------------------------------------------------------------


def test_two_tier_waits_match_cobham() -> None:
    """M/M/4 at rho = 0.8, two tiers of equal load (1.6 Erlangs each), non-preemptive:
    Cobham gives W_0 = C / (c mu (1 - s_0)) = 0.5964 / 2.4 = 0.2485 s and W_1 = C / (c mu (1 -
    s_0)(1 - s_1)) = 0.5964 / 0.48 = 1.2426 s (FCFS: 0.7455 s for both). Over 20 seeds of 8 h
    (about 92,000 jobs each, a 10-min warm-up), each tier's mean wait must hold the theory
    within its 95 % confidence interval over the seeds (Student t with 19 degrees of freedom:
    the seeds are independent replications, so their spread is the standard error,
    autocorrelation included). The standard errors must be small (under 2 % of the value) so a
    wrong order of service (FCFS, or the tiers swapped) cannot pass. About 10 s: not marked
    slow, so that every run of the suite checks the discipline against theory."""
    c, loads = 4, [1.6, 1.6]
    ref_high, ref_low = th.cobham_waits(c, loads)
    seeds = range(20)
    high, low, fcfs = [], [], []
    for seed in seeds:
        result = run_text(two_tiers(seed=seed, duration="8h", warmup="10min"))
        high.append(by_class(result, "high")["wait_s"]["mean"])
        low.append(by_class(result, "low")["wait_s"]["mean"])
        fcfs.append(result.summary["wait_s"]["mean"])
    t = float(stats.t.ppf(0.975, len(seeds) - 1))
    ref_all = (ref_high * loads[0] + ref_low * loads[1]) / sum(loads)
    assert ref_all == pytest.approx(th.mmc(c, sum(loads)).mean_wait_served)  # conservation
    for name, values, expected in (
        ("high", high, ref_high),
        ("low", low, ref_low),
        ("all", fcfs, ref_all),  # the order of service moves waits, not their total
    ):
        mean = float(np.mean(values))
        se = float(np.std(values, ddof=1) / np.sqrt(len(values)))
        assert abs(mean - expected) <= t * se, (name, mean, se, expected)
        assert se < 0.02 * expected, (name, se, expected)
    assert max(high) < min(low)  # in every seed the high tier waits less


# --- one priority: the FCFS path, and the priority path with one level is FCFS ------------------


def test_one_priority_level_keeps_the_fcfs_numbers() -> None:
    """Classes that share a priority (any number) take the FCFS path: the same numbers as
    with the default priority 0."""
    default = run_text(two_tiers(high=0, low=0, duration="20min")).summary
    shared = run_text(two_tiers(high=4, low=4, duration="20min")).summary
    assert shared == default
    assert default["requests"]["served"] > 0


OUTAGE = "[{kind: node_outage, node: solo, at: 20min, duration: 5min}]"


@pytest.mark.parametrize(
    ("rates", "admission", "patience", "events"),
    [
        ((1.6, 1.6), "{}", None, OUTAGE),
        ((2.4, 2.4), "{}", None, OUTAGE),
        ((2.4, 2.4), "{queue_limit: 3}", None, OUTAGE),
        ((2.4, 2.4), "{max_wait: 2s}", None, "[]"),
        ((2.4, 2.4), "{}", "{dist: exponential, mean: 2}", "[]"),
    ],
    ids=["rho=0.8", "rho=1.2", "queue_limit", "max_wait", "patience"],
)
def test_priority_path_with_one_level_is_fcfs(
    monkeypatch: pytest.MonkeyPatch,
    rates: tuple[float, float],
    admission: str,
    patience: str | None,
    events: str,
) -> None:
    """Non-preemptive priority with one level is FCFS, so sending the pool through the
    priority path (slots freed by completions, a waiting FIFO, deadlines for max_wait and
    patience, the queue limit counted on the waiting requests) must give the FCFS path's
    numbers exactly: every count, wait and latency, and every request's start. A node outage
    at 20 min (5 min; requests lost) checks the accounting of the requests in service and
    waiting then. (Not with max_wait or patience: the FCFS path drops or abandons a request
    on arrival, knowing its wait, where the priority path keeps it waiting until its deadline,
    so at an outage in between it is lost there, and counted so.)"""
    text = two_tiers(
        high=0,
        low=0,
        rate_high=rates[0],
        rate_low=rates[1],
        duration="40min",
        admission=admission,
        requests="true",
        events=events,
        on_failure="drop",
    )
    if patience is not None:
        text = with_patience(text, patience)
    fcfs = run_text(text)
    monkeypatch.setattr(request_engine, "priority_pools", lambda grid: [True] * len(grid.pools))
    forced = run_text(text)
    assert forced.summary == fcfs.summary
    assert forced.requests["start_s"].tolist() == fcfs.requests["start_s"].tolist()
    r = fcfs.summary["requests"]
    assert r["served"] > 0
    assert (r["lost"] > 0) == (events == OUTAGE)
    if admission != "{}" or patience:
        assert r["dropped"] + r["abandoned"] > 0


def test_an_outage_loses_the_waiting_requests_too() -> None:
    """rho = 1.2 on 4 slots, two tiers, no admission rules: at 20 min the queue holds hundreds.
    The node fails then for 5 min (on_failure: drop): the 4 in service and every waiting
    request are lost (none stays in flight at a dead pool), nothing starts during the outage,
    and service resumes at the restore (on an empty queue: arrivals in the outage had nowhere
    to go)."""
    result = run_text(
        two_tiers(
            rate_high=2.4,
            rate_low=2.4,
            duration="40min",
            requests="true",
            events=OUTAGE,
            on_failure="drop",
        )
    )
    check_accounting(result)
    r = result.summary["requests"]
    start = result.requests["start_s"].to_numpy()
    end = result.requests["service_end_s"].to_numpy()
    arrived_before = int(np.count_nonzero(result.requests["arrival_s"].to_numpy() < 1200.0))
    assert r["lost"] > 100
    # everything that reached the pool before the failure either finished before it or was lost
    assert np.all(end[start < 1200.0] <= 1200.0)
    assert not np.any((start >= 1200.0) & (start < 1500.0))
    assert np.any((start >= 1500.0) & (start < 1510.0))
    # the lost are the requests of the first 20 min that did not finish (4.8 arrive per s)
    assert arrived_before + r["lost"] == pytest.approx(1200 * 4.8, rel=0.05)


# --- the order of service, request by request ----------------------------------------------------


def test_a_free_slot_takes_the_best_waiting_request() -> None:
    """From the per-request table of an M/M/4 at rho = 0.95 with two tiers (no admission
    rules), the three properties that define the discipline:
    - non-preemptive priority: no low-tier request starts while a high-tier request that
      reached the pool before it is still waiting;
    - FCFS within a tier: starts in the order of reaching;
    - work conserving: a request waits only when every slot is busy as it arrives."""
    result = run_text(
        two_tiers(rate_high=1.9, rate_low=1.9, duration="1h", requests="true", slots=4)
    )
    table = result.requests
    reach = table["reach_s"].to_numpy()
    start = table["start_s"].to_numpy()
    end = table["service_end_s"].to_numpy()
    high = (table["class"] == "high").to_numpy()
    assert (start - reach > 0).mean() > 0.5  # a busy pool: most requests wait
    for tier in (high, ~high):
        order = np.argsort(reach[tier], kind="stable")
        assert np.all(np.diff(start[tier][order]) >= 0)
    # For each low start, the high that reached last before it: started by then (the highs
    # start in the order they reach, so it is the one that would start latest).
    h_reach = np.sort(reach[high])
    h_start = np.sort(start[high])
    low_start = start[~high]
    k = np.searchsorted(h_reach, low_start, side="left") - 1
    seen = k >= 0
    assert np.all(h_start[k[seen]] <= low_start[seen])
    # In service at a waiting request's arrival: started at or before, ending after it.
    waited = (start > reach) & (reach < 3600.0 - 60.0)  # ... not near the end: requests in
    # service then may be unfinished, missing from the table (a service over 60 s: e^-60)
    starts, ends = np.sort(start), np.sort(end)
    t = reach[waited]
    busy = np.searchsorted(starts, t, side="right") - np.searchsorted(ends, t, side="right")
    assert np.all(busy == 4)
    check_accounting(result)


# --- overload: the lowest tier is shed first -----------------------------------------------------


@pytest.mark.parametrize("admission", ["{max_wait: 2s}", "{queue_limit: 20}"])
def test_overload_sheds_the_low_tier(admission: str) -> None:
    """40 slots (mean service 1 s), the high tier offering 20 Erlangs and the low tier 40:
    rho = 1.5. With max_wait or a queue limit the pool stays busy and sheds the excess. Fluid
    limit (by hand): the high tier, half the capacity, is served whole; the low tier gets the
    rest, 40 - 20 = 20 jobs/s of its 40/s, so half of it is served and half dropped. Same
    pool with one priority (FCFS): both tiers lose the same share, a third of each
    ((60 - 40) / 60)."""
    text = two_tiers(slots=40, rate_high=20.0, rate_low=40.0, duration="30min", admission=admission)
    result = run_text(text)
    check_accounting(result)
    high, low = by_class(result, "high")["requests"], by_class(result, "low")["requests"]
    assert high["dropped"] == 0 and high["abandoned"] == 0
    assert high["served"] + high["in_flight"] == high["arrived"]
    assert low["dropped"] / low["arrived"] == pytest.approx(0.5, abs=0.02)
    assert low["served"] / low["arrived"] == pytest.approx(0.5, abs=0.02)
    fcfs = run_text(text.replace("priority: 1", "priority: 0"))
    for name in ("high", "low"):
        r = by_class(fcfs, name)["requests"]
        assert r["dropped"] / r["arrived"] == pytest.approx(1 / 3, abs=0.02), name


def test_patience_runs_out_on_the_low_tier() -> None:
    """Same overload, no admission rules, both tiers with exponential patience of mean 10 s:
    the high tier (half the capacity, its waits a fraction of a second) hardly ever abandons;
    the low tier loses about half its arrivals (fluid: 20 of its 40 jobs/s are served)."""
    text = two_tiers(slots=40, rate_high=20.0, rate_low=40.0, duration="30min")
    text = with_patience(text, "{dist: exponential, mean: 10}")
    result = run_text(text)
    check_accounting(result)
    high, low = by_class(result, "high")["requests"], by_class(result, "low")["requests"]
    assert high["abandoned"] / high["arrived"] < 0.005
    assert low["abandoned"] / low["arrived"] == pytest.approx(0.5, abs=0.03)
    assert low["dropped"] == 0


# --- capacity changes ----------------------------------------------------------------------------


def test_build_out_and_retirement_at_a_priority_pool() -> None:
    """rho = 1.2 on 4 slots (a growing queue). Build-out of 2 slots at 20 min: both start
    a waiting request at that very instant. Retirement of 5 slots at 40 min leaves one: from
    then on the requests started after it never overlap (one slot), the work in progress
    finishes, and the waiting requests are not lost."""
    events = (
        "[{kind: build_out, node: solo, pool: slots, slots: 2, at: 20min},"
        " {kind: retirement, node: solo, pool: slots, slots: 5, at: 40min}]"
    )
    result = run_text(
        two_tiers(rate_high=2.4, rate_low=2.4, duration="50min", events=events, requests="true")
    )
    check_accounting(result)
    table = result.requests
    start = table["start_s"].to_numpy()
    end = table["service_end_s"].to_numpy()
    assert np.count_nonzero(start == 1200.0) == 2
    after = np.sort(start[start > 2400.0])
    later = np.argsort(start)[np.sort(start) > 2400.0]
    assert len(after) > 10
    assert np.all(start[later][1:] >= end[later][:-1])
    assert result.summary["requests"]["lost"] == 0
    assert result.summary["requests"]["in_flight"] > 100  # the queue still waits at the end


# --- refusals and determinism --------------------------------------------------------------------


def test_several_slots_per_job_at_a_priority_pool_is_refused() -> None:
    text = two_tiers(slots_per_job=2, duration="1min")
    with pytest.raises(ScenarioError, match="slots_per_job") as err:
        run_text(text)
    assert "'high' takes 2 slots per request" in str(err.value)
    assert "demand.classes[0].slots_per_job" in str(err.value)
    # with one priority the FCFS path takes it
    run_text(two_tiers(slots_per_job=2, low=0, duration="1min"))


def test_same_seed_same_results() -> None:
    text = two_tiers(rate_high=2.4, rate_low=2.4, duration="10min", admission="{max_wait: 3s}")
    a, b = run_text(text), run_text(text)
    assert a.summary == b.summary
    other = run_text(text.replace("seed: 1", "seed: 2"))
    assert other.summary["requests"] != a.summary["requests"]
