"""Request engine: conservation, capacity, ordering, determinism, outages, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gridsim.cli import app
from gridsim.run import Result, run
from gridsim.scenario import Scenario, ScenarioError, load_scenario_text

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


def check_invariants(result: Result) -> None:
    s = result.summary
    req = s["requests"]
    assert req["arrived"] == req["served"] + req["dropped"] + req["in_flight"]
    for block in (*s["by_class"].values(), *s["by_region"].values()):
        r = block["requests"]
        assert r["arrived"] == r["served"] + r["dropped"] + r["in_flight"]
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
