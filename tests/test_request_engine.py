"""Request engine: conservation, capacity, ordering, determinism, outages, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridsim.cli import app
from gridsim.run import Result, run
from gridsim.scenario import Scenario, ScenarioError, load_scenario, load_scenario_text

TWO_NODES = """
name: two-nodes
seed: {seed}
fidelity: request
horizon: {{duration: {duration}, warmup: 0}}
regions:
  - {{id: east, lat: 31.23, lon: 121.47}}
  - {{id: west, lat: 26.57, lon: 106.71}}
nodes:
  - id: near
    kind: data_centre
    lat: 31.0
    lon: 121.0
    pools: [{{id: p, slots: {slots_a}}}]
  - id: far
    kind: data_centre
    lat: 26.57
    lon: 106.71
    pools: [{{id: p, slots: {slots_b}}}]
network: {{generate: full_mesh, per_hop_ms: 0.5}}
admission: {admission}
policy: {{name: {policy}, on_failure: {on_failure}}}
events: {events}
outputs: {{requests: true, timeseries_interval: 10s}}
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - name: jobs
      kind: job
      rate_per_s: {rate}
      service: {{dist: exponential, mean: {service}}}
      slo: {{e2e: 3s}}
      arrival: {arrival}
"""


def scenario_text(**kw: object) -> str:
    values: dict[str, object] = {
        "seed": 1,
        "duration": "300s",
        "slots_a": 4,
        "slots_b": 4,
        "admission": "{}",
        "policy": "least_loaded",
        "on_failure": "retry",
        "events": "[]",
        "rate": 5.0,
        "service": 1.0,
        "arrival": "{process: poisson}",
    }
    values.update(kw)
    return TWO_NODES.format(**values)


def scenario(**kw: object) -> Scenario:
    return load_scenario_text(scenario_text(**kw))


OUTCOMES = ("served", "dropped", "abandoned", "lost", "in_flight")
BREAKDOWNS = ("by_class", "by_region", "by_node", "by_pool")


def check_accounting(summary: dict[str, Any], whole: bool = True) -> None:
    """Every block: arrived = served + dropped + abandoned + lost + in_flight, all >= 0, and
    (whole counts, request fidelity) each breakdown adds up to the national figures."""
    national = summary["requests"]
    for name, block in [("national", summary), *blocks(summary)]:
        r = block["requests"]
        assert list(r)[: len(OUTCOMES) + 1] == ["arrived", *OUTCOMES], name
        assert r["arrived"] == sum(r[k] for k in OUTCOMES), (name, r)
        assert min(r[k] for k in ("arrived", *OUTCOMES)) >= 0, (name, r)
    for by in BREAKDOWNS if whole else ():
        for key in OUTCOMES:
            total = sum(b["requests"][key] for b in summary[by].values())
            if key == "dropped" and by in ("by_node", "by_pool"):
                assert total <= national[key], by  # no pool to go to: dropped at no node
            else:
                assert total == national[key], (by, key)


def blocks(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{by}.{k}", b) for by in BREAKDOWNS for k, b in summary[by].items()]


def check_invariants(result: Result) -> None:
    s = result.summary
    check_accounting(s)
    req = s["requests"]
    table: pd.DataFrame = result.requests
    assert len(table) == req["served"]
    # every breakdown against the per-request table, a record of its own of each request served
    for column, by in (("node", "by_node"), ("class", "by_class"), ("region", "by_region")):
        counts = table[column].astype(str).value_counts()
        for name, block in s[by].items():
            assert block["requests"]["served"] == counts.get(name, 0), (by, name)
    eps = 1e-9
    assert (table["arrival_s"] <= table["start_s"] + eps).all()
    assert (table["start_s"] <= table["first_token_s"] + eps).all()
    assert (table["first_token_s"] <= table["end_s"] + eps).all()
    assert (table["reach_s"] <= table["start_s"] + eps).all()
    # no pool over capacity at any instant: sweep starts (+1) and ends (-1), ends first at ties
    sc = result.scenario
    slots = {n.id: n.pools[0].slots for n in sc.nodes}
    for node, rows in table.groupby("node", observed=True):
        times = np.concatenate([rows["start_s"], rows["service_end_s"]])
        delta = np.concatenate([np.ones(len(rows)), -np.ones(len(rows))])
        order = np.lexsort((delta, times))
        assert np.cumsum(delta[order]).max() <= slots[str(node)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    slots_a=st.integers(1, 6),
    slots_b=st.integers(1, 6),
    rate=st.floats(0.5, 12.0),
    service=st.floats(0.1, 3.0),
    policy=st.sampled_from(["nearest", "least_loaded", "latency_slo", "cheapest", "greenest"]),
    admission=st.sampled_from(["{}", "{queue_limit: 3}", "{max_wait: 2s}", "{queue_limit: 0}"]),
    arrival=st.sampled_from(["{process: poisson}", "{process: bursty, dispersion: 5}"]),
    outage=st.booleans(),
    on_failure=st.sampled_from(["retry", "drop"]),
    seed=st.integers(0, 1000),
)
def test_invariants_hold(
    slots_a: int,
    slots_b: int,
    rate: float,
    service: float,
    policy: str,
    admission: str,
    arrival: str,
    outage: bool,
    on_failure: str,
    seed: int,
) -> None:
    events = "[{kind: node_outage, node: near, at: 100s, duration: 60s}]" if outage else "[]"
    result = run(
        scenario(
            slots_a=slots_a,
            slots_b=slots_b,
            rate=rate,
            service=service,
            policy=policy,
            admission=admission,
            arrival=arrival,
            events=events,
            on_failure=on_failure,
            seed=seed,
            duration="200s",
        )
    )
    check_invariants(result)


def test_same_seed_same_results_and_other_seed_differs(tmp_path: Path) -> None:
    a, b = run(scenario()), run(scenario())
    assert json.dumps(a.summary) == json.dumps(b.summary)
    pd.testing.assert_frame_equal(a.requests, b.requests)
    pd.testing.assert_frame_equal(a.timeseries, b.timeseries)
    c = run(scenario(seed=2))
    assert c.summary["requests"]["arrived"] != a.summary["requests"]["arrived"]


def test_cli_run_writes_identical_summaries(tmp_path: Path) -> None:
    runner = CliRunner()
    mmc = "scenarios/validation/mmc.yaml"
    for name in ("a", "b"):
        result = runner.invoke(
            app,
            [
                "run",
                mmc,
                "--set",
                "horizon.duration=10min",
                "--set",
                "horizon.warmup=1min",
                "--out",
                str(tmp_path / name),
            ],
        )
        assert result.exit_code == 0, result.output
    first = (tmp_path / "a" / "summary.json").read_bytes()
    assert first == (tmp_path / "b" / "summary.json").read_bytes()
    assert {p.name for p in (tmp_path / "a").iterdir()} >= {
        "summary.json",
        "timeseries.parquet",
        "scenario.resolved.yaml",
        "manifest.json",
    }
    again = runner.invoke(app, ["run", mmc, "--out", str(tmp_path / "a")])
    assert again.exit_code == 2 and "already exists" in again.output
    assert (tmp_path / "a" / "summary.json").read_bytes() == first  # untouched


def test_events_at_the_same_instant_leave_in_a_fixed_order() -> None:
    """An outage at exactly an arrival's time acts first: that arrival sees the node down."""
    base = run(scenario(policy="nearest", rate=2.0))
    table = base.requests
    t_hit = float(table.loc[table["region"] == "east", "arrival_s"].iloc[5])
    events = f"[{{kind: node_outage, node: near, at: {t_hit!r}, duration: 50s}}]"
    hit = run(scenario(policy="nearest", rate=2.0, events=events)).requests
    row = hit[np.isclose(hit["arrival_s"], t_hit)]
    assert list(row["node"]) == ["far"]
    # and twice the same run gives the same order of everything
    again = run(scenario(policy="nearest", rate=2.0, events=events)).requests
    pd.testing.assert_frame_equal(hit, again)


def test_node_outage_moves_demand_and_failed_node_serves_nothing() -> None:
    events = "[{kind: node_outage, node: near, at: 100s, duration: 100s}]"
    result = run(scenario(policy="nearest", events=events, duration="300s"))
    table = result.requests
    east = table[table["region"] == "east"]
    during = east[(east["arrival_s"] > 101) & (east["arrival_s"] < 199)]
    assert set(during["node"]) == {"far"}  # rerouted west
    near = table[table["node"] == "near"]
    running = (near["start_s"] < 200) & (near["service_end_s"] > 100)
    assert not running.any()  # nothing served on the failed node while it was down
    assert during["latency_s"].mean() > east[east["arrival_s"] < 99]["latency_s"].mean()
    check_invariants(result)


def test_outage_with_drop_counts_lost_requests() -> None:
    events = "[{kind: node_outage, node: near, at: 100s}]"
    result = run(scenario(policy="nearest", events=events, on_failure="drop", rate=8.0))
    assert result.summary["requests"]["lost"] > 0
    check_invariants(result)


def test_link_outage_reroutes() -> None:
    sc = scenario(policy="nearest", events="[{kind: link_outage, a: east, b: near, at: 100s}]")
    table = run(sc).requests
    east = table[table["region"] == "east"]
    before = east[east["arrival_s"] < 99]["network_s"].mean()
    after = east[east["arrival_s"] > 101]["network_s"].mean()
    assert after > before  # the detour through another place is longer


def test_queue_limit_and_max_wait_drop() -> None:
    full = run(scenario(rate=20.0, admission="{queue_limit: 2}"))
    assert full.summary["requests"]["dropped"] > 0
    waited = run(scenario(rate=20.0, admission="{max_wait: 1s}"))
    assert waited.summary["requests"]["dropped"] > 0
    assert waited.requests["wait_s"].max() <= 1.0 + 1e-9
    check_invariants(full)
    check_invariants(waited)


def test_unknown_policy_and_unservable_class_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    text = Path("scenarios/validation/mmc.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("name: nearest", "name: nearset"))
    result = runner.invoke(app, ["run", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "did you mean 'nearest'" in result.output
    llm = (
        "kind: llm\n      model: qwen3-32b\n"
        "      input_tokens: {dist: constant, value: 10}\n"
        "      output_tokens: {dist: constant, value: 10}\n"
    )
    bad.write_text(text.replace("kind: job\n", llm))
    result = runner.invoke(app, ["run", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no node can serve class 'jobs'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing written


def test_memory_does_not_grow_with_requests_when_table_off() -> None:
    from gridsim.engine.request import RequestEngine
    from gridsim.grid import build_grid

    text = scenario_text(slots_a=80, slots_b=80, policy="nearest", rate=50.0, duration="400s")
    text = text.replace("requests: true", "requests: false")
    sc = load_scenario_text(text)
    engine = RequestEngine(build_grid(sc), seed=1)
    engine.run()
    rec = engine.recorder
    assert rec.requests().empty
    assert not engine.done  # all handed to the recorder's histograms
    assert len(engine.agenda) < 200  # only requests still in flight are held


def test_bad_policy_module_is_a_clear_error() -> None:
    text = scenario_text(policy="'nosuch:Policy'", duration="10s")
    with pytest.raises(ValueError, match="cannot be loaded"):
        run(load_scenario_text(text))


def test_unknown_node_in_event() -> None:
    with pytest.raises(ScenarioError, match="unknown node 'nowhere'"):
        scenario(events="[{kind: node_outage, node: nowhere, at: 1s}]")


def test_trace_replay_through_the_engine_matches_the_file(traces_dir: Path) -> None:
    """Azure 2023 conversation trace: every request arrives once, token sums exact."""
    path = traces_dir / "azure2023_AzureLLMInferenceTrace_conv.csv"
    raw = pd.read_csv(path)
    text = f"""
name: azure-replay
fidelity: request
horizon: {{duration: 1h}}
regions: [{{id: guangdong}}, {{id: guizhou}}]
nodes:
  - id: guian
    kind: intelligent_computing
    site: guian
    pools: [{{id: chat, model: qwen3-32b, accelerator: h100, replicas: 200}}]
network: {{generate: full_mesh}}
demand:
  tokens_per_day: 1
  classes:
    - name: conv
      model: qwen3-32b
      arrival: {{process: trace, path: {path}, format: azure}}
"""
    result = run(load_scenario_text(text))
    s = result.summary
    assert s["requests"]["arrived"] == len(raw) == 19366
    assert s["tokens"]["input"]["demanded"] == int(raw["ContextTokens"].sum())
    assert s["tokens"]["output"]["demanded"] == int(raw["GeneratedTokens"].sum())
    assert s["requests"]["served"] + s["requests"]["in_flight"] == len(raw)


def test_user_policy_named_module_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy from the scenario's own code, opted into as module:Class."""
    (tmp_path / "my_policies.py").write_text(
        "from gridsim.policies.base import PolicyBase\n"
        "class Farthest(PolicyBase):\n"
        "    name = 'farthest'\n"
        "    def choose(self, view, cls, region, t):\n"
        "        return self.candidates[cls][region][-1]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run(scenario(policy="'my_policies:Farthest'"))
    table = result.requests
    assert set(table.loc[table["region"] == "east", "node"]) == {"far"}
    assert set(table.loc[table["region"] == "west", "node"]) == {"near"}


def test_default_run_folders_never_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    mmc = str(Path(__file__).resolve().parents[1] / "scenarios" / "validation" / "mmc.yaml")
    for _ in range(2):
        result = runner.invoke(
            app, ["run", mmc, "--set", "horizon.duration=1min", "--set", "horizon.warmup=0"]
        )
        assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "results" / "mmc").iterdir())) == 2


def test_interrupted_write_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception (or Ctrl-C) while the folder is written: no folder, no temporary left."""
    import gridsim.report as report
    from gridsim.output import write_run

    result = run(scenario(duration="60s"))

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_report", broken)
    target = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        write_run(result, target)
    assert list(tmp_path.iterdir()) == []


def test_cli_says_so_when_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    run_module = importlib.import_module("gridsim.run")  # the module, not gs.run

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "run", interrupted)
    result = CliRunner().invoke(
        app, ["run", "scenarios/validation/mmc.yaml", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 130
    assert "interrupted: nothing was written" in result.output
    assert not (tmp_path / "out").exists()


# --- patience (abandonment) and where every request went -----------------------------------

MMC = Path(__file__).resolve().parents[1] / "scenarios" / "validation" / "mmc.yaml"
PATIENCE = "demand.classes[jobs].patience={dist: exponential, mean: 2.0}"


def erlang_a(c: int, lam: float, mu: float, theta: float) -> dict[str, float]:
    """M/M/c+M (Erlang A): Poisson arrivals at ``lam``, c servers of rate ``mu``, FCFS, each
    waiting customer abandons at rate ``theta`` (exponential patience of mean 1/theta).

    The number in system is a birth-death chain on n = 0, 1, ...: birth rate lam, death rate
    min(n, c) mu + max(n - c, 0) theta; pi is computed from pi_{n+1} / pi_n = lam / death(n+1)
    and truncated where the terms fall below 1e-16 of the total (the death rate grows with n,
    so the tail is thinner than geometric). Then:

    - P(abandon) = theta E[(N - c)+] / lam (the abandonment flow over the arrival flow);
    - the same from a tagged arrival (PASTA: it sees n with probability pi_n): seeing n >= c it
      has j = n - c customers ahead in the queue. With i ahead, the next event comes at rate
      c mu + i theta (a service ends or one ahead abandons: it moves up) + theta (it abandons
      itself), so it moves up with probability (c mu + i theta) / (c mu + (i + 1) theta), and
      after i = j, j - 1, ..., 0 it is served: P(served | n) = prod_{i=0}^{n-c} (c mu + i theta)
      / (c mu + (i + 1) theta). Each stage lasts Exp(c mu + (i + 1) theta) whichever event ends
      it, so E[wait; served | n] = P(served | n) x sum_{i=0}^{n-c} 1 / (c mu + (i + 1) theta);
      arrivals seeing n < c are served at once;
    - the mean wait of the served: sum_n pi_n E[wait; served | n] / sum_n pi_n P(served | n).
      That is what the engine's ``wait_s`` holds (served requests only).
    """
    p = [1.0]
    total = 1.0
    while len(p) <= c + 1 or p[-1] > 1e-16 * total:
        n = len(p)
        p.append(p[-1] * lam / (min(n, c) * mu + max(n - c, 0) * theta))
        total += p[-1]
    pi = [x / total for x in p]
    p_served = wait_served = 0.0
    for n, q in enumerate(pi):
        prob, mean = 1.0, 0.0
        for i in range(n - c + 1):  # no stage when n < c
            prob *= (c * mu + i * theta) / (c * mu + (i + 1) * theta)
            mean += 1.0 / (c * mu + (i + 1) * theta)
        p_served += q * prob
        wait_served += q * prob * mean
    queue = sum((n - c) * q for n, q in enumerate(pi) if n > c)
    return {
        "p_abandon": theta * queue / lam,
        "p_abandon_tagged": 1.0 - p_served,
        "wait_served": wait_served / p_served,
    }


def test_erlang_a_reference() -> None:
    """The reference itself: its two routes to P(abandon) agree; without abandonment (theta
    -> 0) it is Erlang C; with patient-less customers (theta -> inf) the queue empties."""
    from scipy import stats

    for lam in (3.0, 6.4, 9.6, 16.0):
        ref = erlang_a(8, lam, 1.0, 0.5)
        assert ref["p_abandon"] == pytest.approx(ref["p_abandon_tagged"], rel=1e-9)
    a, c = 7.2, 8  # Erlang C(8, 7.2): mean wait of all (everyone is served) C / (c - a)
    top = stats.poisson.pmf(c, a) * c / (c - a)
    erlang_c = top / (stats.poisson.cdf(c - 1, a) + top)
    near_c = erlang_a(c, a, 1.0, 1e-7)
    assert near_c["wait_served"] == pytest.approx(erlang_c / (c - a), rel=1e-4)
    assert near_c["p_abandon"] < 1e-5
    assert erlang_a(c, a, 1.0, 1e7)["wait_served"] < 1e-6


def test_erlang_c_regression_theory_refuses_a_queue_with_patience() -> None:
    """gridsim regress compares mmc.yaml with Erlang C, which has no abandonment: with a
    patience the scenario is no longer M/M/c, and the closed form is refused."""
    from gridsim.regress import erlang_c_theory

    assert erlang_c_theory(load_scenario(MMC))["utilization_mean"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="patience"):
        erlang_c_theory(load_scenario(MMC, sets=[PATIENCE]))


def engine_erlang_a(rate: float, seeds: range) -> tuple[list[float], list[float]]:
    """Per seed: the share of arrivals that abandoned, and the mean wait of the served."""
    p_abandon, wait = [], []
    for seed in seeds:
        sc = load_scenario(
            MMC,
            sets=[
                f"demand.classes[jobs].rate_per_s={rate}",
                PATIENCE,
                "horizon.duration=4h",
                "horizon.warmup=10min",
                "outputs.figures=false",
            ],
            seed=seed,
        )
        s = run(sc).summary
        r = s["requests"]
        p_abandon.append(r["abandoned"] / r["arrived"])
        wait.append(s["wait_s"]["mean"])
    return p_abandon, wait


@pytest.mark.parametrize("rate", [6.4, 9.6], ids=["rho=0.8", "rho=1.2"])
def test_request_engine_matches_erlang_a(rate: float) -> None:
    """mmc.yaml (c = 8, exponential service of mean 1 s) with exponential patience of mean 2 s
    is M/M/8+M. Over 8 seeds of 4 h (about 92,000 and 138,000 arrivals each), the engine's
    P(abandon) (abandoned / arrived over the whole run: the empty start biases it by ~1e-3
    relative, far below the noise) and the mean wait of the served (after a 10-min warm-up)
    must agree with Erlang A: a t test over the seeds at the 99.9 % level (each seed is an
    independent replication, so their spread gives the standard error, autocorrelation
    included). The standard errors must also be small (under 3 % of the value), so the test
    has the power to see a wrong engine."""
    from scipy import stats

    seeds = range(8)
    ref = erlang_a(8, rate, 1.0, 0.5)
    t = float(stats.t.ppf(0.9995, len(seeds) - 1))
    for values, expected in zip(
        engine_erlang_a(rate, seeds), (ref["p_abandon"], ref["wait_served"]), strict=True
    ):
        mean = float(np.mean(values))
        se = float(np.std(values, ddof=1) / np.sqrt(len(values)))
        assert abs(mean - expected) <= t * se, (mean, se, expected)
        assert se < 0.03 * expected, (se, expected)


def test_abandoned_requests_never_hold_a_slot() -> None:
    """M/M/8+M at rho = 1.2, 1 h: a fifth of arrivals abandon. If they held slots (their
    service added to the pool's free times), served requests would wait behind slots that
    nobody uses. So: every served request that waited started at the very instant a served
    request ended, with all 8 slots held by served requests just before; the pool's busy time
    is the service of the served; and utilisation is what is left of the offered load after
    abandonment: (arrived - dropped - abandoned) x mean service / (c x T), close to Erlang A's
    lam (1 - P(abandon)) / (c mu). The abandoned counts of every breakdown add up."""
    sc = load_scenario(
        MMC,
        sets=[
            "demand.classes[jobs].rate_per_s=9.6",
            PATIENCE,
            "horizon.duration=1h",
            "horizon.warmup=0",
            "outputs.requests=true",
            "outputs.timeseries_interval=5min",
        ],
        seed=3,
    )
    result = run(sc)
    s = result.summary
    r = s["requests"]
    assert r["abandoned"] > 0.15 * r["arrived"]
    check_invariants(result)
    table = result.requests
    ends = np.sort(table["service_end_s"].to_numpy())
    waited = table[table["start_s"] > table["reach_s"]]
    assert len(waited) > 0.3 * len(table)
    starts = waited["start_s"].to_numpy()
    at = np.searchsorted(ends, starts)
    assert (ends[np.minimum(at, len(ends) - 1)] == starts).all()  # a served request just ended
    busy_before = [
        int(((table["start_s"] < u) & (table["service_end_s"] >= u)).sum()) for u in starts[:500]
    ]
    assert min(busy_before) == 8  # ... and all 8 slots were serving until then
    series = result.timeseries
    busy = series.loc[series["metric"] == "busy_slot_s", "value"].sum()
    served_s = float((table["service_end_s"] - table["start_s"]).sum())
    assert served_s <= busy <= served_s + 8 * 60  # + what is in service at the end
    offered = (r["arrived"] - r["dropped"] - r["abandoned"]) * 1.0 / (8 * 3600)
    assert s["utilization"]["mean"] == pytest.approx(offered, rel=0.03)
    theory = 9.6 * (1 - erlang_a(8, 9.6, 1.0, 0.5)["p_abandon"]) / 8
    assert s["utilization"]["mean"] == pytest.approx(theory, rel=0.03)
    for by in BREAKDOWNS:
        assert sum(b["requests"]["abandoned"] for b in s[by].values()) == r["abandoned"], by


def test_every_request_is_accounted_for_in_every_block() -> None:
    """Overload, long network delays (requests still travelling at the end), a wait limit
    (dropped), patience (abandoned), and the near node failing for good with on_failure: drop
    (lost): in the national figures and in every class, region, node and pool block, arrived =
    served + dropped + abandoned + lost + in_flight, all terms >= 0, each term > 0 nationally."""
    from gridsim.engine.events import schedule
    from gridsim.engine.request import STATE, TRAVEL, RequestEngine
    from gridsim.grid import build_grid

    text = scenario_text(
        policy="least_loaded",
        rate=14.0,
        service=1.0,
        slots_a=4,
        slots_b=4,
        on_failure="drop",
        admission="{max_wait: 2s}",
        events="[{kind: node_outage, node: near, at: 150s}]",
        duration="300s",
    )
    text = text.replace("per_hop_ms: 0.5", "per_hop_ms: 400")
    text = text.replace(
        "slo: {e2e: 3s}", "slo: {e2e: 3s}\n      patience: {dist: exponential, mean: 3}"
    )
    text += (
        "    - name: steady\n      kind: job\n      rate_per_s: 1.0\n"
        "      service: {dist: constant, value: 0.5}\n"
    )
    sc = load_scenario_text(text)
    engine = RequestEngine(build_grid(sc), seed=sc.seed)
    out = engine.run(schedule(engine))
    assert any(req[STATE] == TRAVEL for _, _, req in engine.agenda)  # travelling at the end
    s = out.summary
    check_accounting(s)
    r = s["requests"]
    assert min(r[k] for k in OUTCOMES) > 0, r
    assert s["by_class"]["steady"]["requests"]["abandoned"] == 0  # no patience: never abandons
    assert r["lost"] == sum(b["requests"]["lost"] for b in s["by_pool"].values())
    assert s["by_node"]["far"]["requests"]["lost"] == 0  # only the failed node loses requests
    ended = r["served"] + r["dropped"] + r["abandoned"] + r["lost"]
    assert s["sla_attainment"] is not None and s["sla_attainment"] <= r["served"] / ended + 1e-12


def test_patience_that_never_runs_out_changes_nothing_else() -> None:
    """Patience draws come from streams of their own: a patience no wait reaches leaves every
    other result as it was (same arrivals, same routes, same waits)."""
    base = run(scenario(rate=9.0, duration="200s"))
    text = scenario_text(rate=9.0, duration="200s").replace(
        "slo: {e2e: 3s}", "slo: {e2e: 3s}\n      patience: {dist: constant, value: 1e6}"
    )
    patient = run(load_scenario_text(text))
    assert patient.summary["requests"]["abandoned"] == 0
    pd.testing.assert_frame_equal(base.requests, patient.requests)
    assert json.dumps(base.summary["wait_s"]) == json.dumps(patient.summary["wait_s"])


def test_max_wait_drops_before_patience_abandons() -> None:
    """Admission is checked first: a request whose wait would pass admission.max_wait is
    dropped, whatever its patience; only waits within max_wait can end in abandonment. Constant
    patience makes it exact: patience 1 s, max_wait 0.5 s -> nothing abandons; patience 0.5 s,
    max_wait 1 s -> waits over 1 s dropped, waits in (0.5 s, 1 s] abandoned, the served waited
    at most 0.5 s."""

    def with_patience(patience_s: float, max_wait: str) -> Result:
        text = scenario_text(rate=12.0, admission=f"{{max_wait: {max_wait}}}", duration="200s")
        text = text.replace(
            "slo: {e2e: 3s}",
            f"slo: {{e2e: 3s}}\n      patience: {{dist: constant, value: {patience_s}}}",
        )
        return run(load_scenario_text(text))

    patient = with_patience(1.0, "0.5s")
    r = patient.summary["requests"]
    assert r["dropped"] > 0 and r["abandoned"] == 0, r
    hasty = with_patience(0.5, "1s")
    r = hasty.summary["requests"]
    assert r["dropped"] > 0 and r["abandoned"] > 0, r
    assert hasty.requests["wait_s"].max() <= 0.5 + 1e-9
    for result in (patient, hasty):
        check_invariants(result)


# --- the Recorder's accounting (both engines hand it their counts) -------------------------


def _recorder(fluid: bool) -> Any:
    from gridsim.metrics.recorder import Layout, Recorder

    layout = Layout(
        class_names=("chat",),
        region_ids=("east", "west"),
        node_ids=("n0", "n1"),
        pool_node=(0, 0, 1),
        pool_names=("n0/a", "n0/b", "n1/a"),
        pool_slots=(4, 4, 4),
        ttft_slo_s=(1.0,),
        e2e_slo_s=(3.5,),
    )
    return Recorder(layout, horizon_s=3600.0, warmup_s=0.0, interval_s=600.0, fluid=fluid)


def test_fluid_counts_are_floored_and_in_flight_takes_the_fractions() -> None:
    """Expected (fractional) counts: in every block each term becomes its floor or the next
    whole number, so that they add up to the rounded arrivals: the identity holds in whole
    numbers, nothing goes negative, whole terms stay exact. Counts that do not add up are shown
    as they are."""
    rec = _recorder(fluid=True)
    rec.arrived[0] = [9.9, 3.3]
    rec.served[0] = [[2.7, 1.2, 0.9], [0.6, 0.0, 1.3]]
    rec.dropped[0] = [[0.8, 0.0, 0.0, 0.9], [0.0, 0.0, 0.2, 0.0]]  # last column: no pool
    rec.abandoned[0] = [[0.9, 0.9, 0.0], [0.0, 0.0, 0.4]]
    rec.lost[0] = [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    in_flight = np.zeros((1, 2, 3))
    in_flight[0] = [[0.6, 0.0, 0.0], [0.4, 0.0, 0.4]]
    ended = rec.served.sum() + rec.dropped.sum() + rec.abandoned.sum() + rec.lost.sum()
    assert ended + in_flight.sum() == pytest.approx(rec.arrived.sum(), abs=1e-12)
    s = rec.summary(in_flight)
    check_accounting(s, whole=False)  # floors of parts need not add up to the floor of a sum
    r = s["requests"]
    exact = {"served": 6.7, "dropped": 1.9, "abandoned": 2.2, "lost": 1.0, "in_flight": 1.4}
    assert r["arrived"] == 13  # round(13.2)
    for key, value in exact.items():
        assert np.floor(value) <= r[key] <= np.ceil(value), (key, r)
    assert r["lost"] == 1
    assert s["by_region"]["west"]["requests"]["arrived"] == 3  # round(3.3)
    assert s["by_pool"]["n0/b"]["requests"]["lost"] == 1
    # an engine that lost two requests somewhere: the summary does not hide it
    s = rec.summary(in_flight * 0)
    r = s["requests"]
    assert r["arrived"] == 13 and sum(r[k] for k in OUTCOMES) == 12


def test_record_flow_keeps_a_share_of_the_statistics() -> None:
    """keep: the share of a block's served mass after warm-up. Counters take everything, the
    histograms keep x the weights; True and False are 1 and 0; other values are refused."""
    served = np.array([[[3.0, 1.0, 0.0]], [[1.0, 0.0, 0.0]]])  # (R, C, P)
    wait = (np.zeros((1, 3, 2)), np.array([[[2.0, 2.0], [1.0, 0.0], [0.0, 0.0]]]))
    args = (np.ones((1, 3, 2)), np.zeros((1, 3)), np.zeros((2, 3)))
    tokens = (np.array([100.0]), np.array([10.0]))
    for keep, count in ((0.25, 1.25), (True, 5.0), (1.0, 5.0), (False, 0.0), (0.0, 0.0)):
        rec = _recorder(fluid=True)
        rec.record_flow(served, wait, *args, keep=keep, tokens=tokens)
        assert rec.served.sum() == 5.0
        for group in ("class", "node"):
            total = sum(h.count for h in rec.hists[(group, "latency_s")])
            assert total == pytest.approx(count, rel=1e-12), (keep, group)
        assert rec.hists[("pool", "wait_s")][0].count == pytest.approx(4 * float(keep))
    with pytest.raises(ValueError, match="keep"):
        _recorder(fluid=True).record_flow(served, wait, *args, keep=1.5, tokens=tokens)
