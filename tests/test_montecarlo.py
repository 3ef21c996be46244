"""Monte Carlo over a scenario's uncertain inputs: ``gridsim run FILE --draws N``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from gridsim.cli import app
from gridsim.montecarlo import (
    BAND_KPIS,
    band,
    censored_percentile,
    draw_values,
    plan_draws,
)
from gridsim.run import run
from gridsim.scenario import ScenarioError, load_scenario, load_scenario_text

RATE = "demand.classes[jobs].rate_per_s"
SLOTS = "nodes[solo].pools[slots].slots"
# One node of 100 slots, jobs of 60 s: 1.67 jobs/s fill it; the rate draws around 1.5/s.
TINY = """
name: tiny
seed: 3
fidelity: flow
horizon: {start: 2026-03-02, duration: 2d, resolution: 1h}
regions:
  - {id: here, lat: 30.0, lon: 110.0}
nodes:
  - id: solo
    kind: data_centre
    lat: 30.0
    lon: 110.0
    region: here
    pools:
      - {id: slots, slots: 100}
network: {generate: full_mesh, per_hop_ms: 0}
demand:
  tokens_per_day: 1.0
  region_weights: equal
  growth: {law: exponential, rate_per_month: 3.0}
  classes:
    - name: jobs
      kind: job
      rate_per_s: 1.5
      service: {dist: exponential, mean: 60}
      slo: {ttft: 1min}
policy: {name: nearest}
outputs: {timeseries_interval: 1h}
"""
UNCERTAINTY = f"""
uncertainty:
  seed: 11
  parameters:
    - {{path: "{RATE}", dist: triangular, low: 1.2, mode: 1.5, high: 1.9, note: "ASSUMPTION"}}
    - {{path: "{SLOTS}", dist: uniform, low: 90, high: 110}}
"""


def _scenario(tmp_path: Path, uncertainty: str = UNCERTAINTY) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY + uncertainty, "utf-8")
    return path


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["run", *args])


# --- (a) the whole command on the Dask path: deterministic, and a re-run resumes ----------


def test_draws_on_dask_are_deterministic_and_resume(tmp_path: Path) -> None:
    file = _scenario(tmp_path)
    tables = []
    for name in ("one", "two"):
        res = _invoke(str(file), "--draws", "2", "--workers", "1", "--out", str(tmp_path / name))
        assert res.exit_code == 0, res.output
        assert "draw 0 (" in res.output and "draw 1 (" in res.output  # progress per draw
        assert "bands over 2 draws (P10 / P50 / P90)" in res.output
        tables.append(pd.read_parquet(tmp_path / name / "draws.parquet"))
    pd.testing.assert_frame_equal(tables[0], tables[1])
    table = tables[0]
    assert list(table["draw"]) == [0, 1] and (table["status"] == "ok").all()
    # Each draw ran the values drawn for it: generator seeded by (11, i), parameters in order.
    for i in (0, 1):
        drawn = np.random.default_rng([11, i])
        rate = drawn.triangular(1.2, 1.5, 1.9)
        slots = round(drawn.uniform(90, 110))  # an integer field: rounded
        assert table.loc[i, RATE] == pytest.approx(rate)
        assert table.loc[i, SLOTS] == slots
        ran = load_scenario(tmp_path / "one" / "draws" / f"draw={i}" / "scenario.resolved.yaml")
        assert ran.demand.classes[0].rate_per_s == pytest.approx(rate)
        assert ran.nodes[0].pools[0].slots == slots
        assert ran.seed == 3  # the scenario's seed: only the parameters differ
    run_dir = tmp_path / "one"
    summary = json.loads((run_dir / "summary.json").read_text())
    block = summary["uncertainty"]
    assert block["draws"] == 2
    assert [p["path"] for p in block["parameters"]] == [RATE, SLOTS]
    assert set(block["bands"]) == {"shortfall_day", "sla_attainment"}  # jobs cost no tokens
    sla = sorted(table["sla_attainment"])
    assert block["bands"]["sla_attainment"]["p50"] == pytest.approx((sla[0] + sla[1]) / 2)
    assert (run_dir / "figures" / "fan.png").stat().st_size > 10_000
    assert not list((run_dir / "draws" / "draw=0").glob("figures"))  # draws draw no figures
    again = _invoke(str(file), "--draws", "2", "--workers", "1", "--out", str(run_dir))
    assert again.exit_code == 0, again.output
    assert "resuming the draws" in again.output and again.output.count("already done") == 2
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "draws.parquet"), table)


# --- (b) the drawn values follow their distributions ----------------------------------------


def test_triangular_draws_follow_the_distribution(tmp_path: Path) -> None:
    scenario = load_scenario(_scenario(tmp_path))
    assert scenario.uncertainty is not None
    params = scenario.uncertainty.parameters
    rates = [draw_values(params, 11, i)[RATE] for i in range(200)]
    # scipy's triangular on [loc, loc + scale] with its mode at loc + c * scale
    law = stats.triang(c=(1.5 - 1.2) / (1.9 - 1.2), loc=1.2, scale=0.7)
    assert stats.kstest(rates, law.cdf).pvalue > 0.01
    assert stats.kstest(rates, stats.uniform(1.2, 0.7).cdf).pvalue < 0.01  # it is not uniform
    slots = [draw_values(params, 11, i)[SLOTS] for i in range(200)]
    assert stats.kstest(slots, stats.uniform(90, 20).cdf).pvalue > 0.01
    # draw i is the same whatever else is drawn, and other seeds give other values
    assert draw_values(params, 11, 7) == draw_values(params, 11, 7)
    assert draw_values(params, 12, 7) != draw_values(params, 11, 7)


def test_lognormal_and_choice_draws(tmp_path: Path) -> None:
    spec = f"""
uncertainty:
  parameters:
    - {{path: "{RATE}", dist: lognormal, median: 1.5, sigma: 0.2}}
    - {{path: policy.name, dist: choice, values: [nearest, least_loaded], weights: [3, 1]}}
"""
    scenario = load_scenario(_scenario(tmp_path, spec))
    assert scenario.uncertainty is not None
    params = scenario.uncertainty.parameters
    draws = [draw_values(params, 5, i) for i in range(400)]
    logs = np.log([d[RATE] for d in draws])
    assert stats.kstest(logs, stats.norm(np.log(1.5), 0.2).cdf).pvalue > 0.01
    nearest = sum(d["policy.name"] == "nearest" for d in draws)
    assert stats.binomtest(nearest, 400, 0.75).pvalue > 0.01


# --- (c) bands with censored shortfalls ------------------------------------------------------


def test_censored_percentiles_by_hand() -> None:
    # ranked: 3, 5, 8, censored, censored; linear between order statistics at q/100 x (n-1)
    days = [3.0, 5.0, None, None, 8.0]
    assert censored_percentile(days, 10) == pytest.approx(3.8)  # 0.4 of the way from 3 to 5
    assert censored_percentile(days, 50) == 8.0  # exactly the third value
    assert censored_percentile(days, 90) is None  # 3.6: among the censored
    assert censored_percentile(days, 70) is None  # 2.8: between 8 and a censored draw
    shortfall = next(k for k in BAND_KPIS if k.name == "shortfall_day")
    got = band(days, shortfall)
    assert (got["p10"], got["p50"], got["p90"], got["censored"]) == (
        pytest.approx(3.8),
        8.0,
        None,
        2,
    )
    sla = next(k for k in BAND_KPIS if k.name == "sla_attainment")
    plain = band([0.9, None, 0.7, 0.8, 0.6], sla)  # a missing SLA is left out, not censored
    assert plain["p50"] == pytest.approx(0.75) and plain["censored"] == 0
    assert plain["p90"] == pytest.approx(0.87)  # 2.7: 0.8 + 0.7 x 0.1
    assert censored_percentile([None, None], 10) is None
    assert censored_percentile([], 50) is None


# --- (d) a draw that raises demand lowers the SLA attainment and the headroom -----------------


def test_more_demand_in_a_draw_moves_the_kpis_down(tmp_path: Path) -> None:
    spec = f"""
uncertainty:
  parameters:
    - {{path: "{RATE}", dist: choice, values: [1.0, 1.9]}}
"""
    plan = plan_draws(_scenario(tmp_path, spec), 8)
    first = {}
    for task, values in zip(plan.plan.tasks, plan.values, strict=True):
        first.setdefault(values[RATE], task)
    assert set(first) == {1.0, 1.9}
    results = {}
    for rate, task in first.items():
        assert task.text is not None
        results[rate] = run(load_scenario_text(task.text)).summary
    low, high = results[1.0], results[1.9]
    # 1.0 jobs/s of 60 s on 100 slots is 60 % busy; 1.9/s asks 114 % of them
    assert low["sla_attainment"] > 0.99 > high["sla_attainment"]
    assert low["capacity"]["headroom"]["mean"] > 0 > high["capacity"]["headroom"]["mean"]
    assert low["capacity"]["shortfall_at_s"] is None
    assert high["capacity"]["shortfall_at_s"] == 0.0


# --- (e) bad specifications: clear errors, exit 2 ---------------------------------------------


@pytest.mark.parametrize(
    ("param", "where", "says"),
    [
        (
            f'{{path: "{RATE}", dist: triangular, low: 2, mode: 1, high: 3}}',
            "uncertainty.parameters[0]",
            "low <= mode <= high",
        ),
        (
            f'{{path: "{RATE}", dist: uniform, low: 2, mode: 1, high: 3}}',
            "uncertainty.parameters[0]",
            "unknown key 'mode'",
        ),
        (
            '{path: "demand.classes[jobs].rate", dist: uniform, low: 1, high: 2}',
            "uncertainty.parameters[0].path",
            "'demand.classes[jobs].rate' does not address a field",
        ),
        (
            '{path: "nodes[elsewhere].pue", dist: uniform, low: 1, high: 2}',
            "uncertainty.parameters[0].path",
            "no item 'elsewhere' in nodes",
        ),
        (
            '{path: "demand.growth.midpoint", dist: uniform, low: 1, high: 2}',
            "uncertainty.parameters[0].path",
            "demand.growth has no key 'midpoint'",  # an exponential law has no midpoint
        ),
        (
            "{path: seed, dist: uniform, low: 1, high: 2}",
            "uncertainty",
            "seed cannot be drawn",
        ),
        (
            f'{{path: "{RATE}", dist: choice, values: [1, 2], weights: [1]}}',
            "uncertainty.parameters[0]",
            "2 values but 1 weights",
        ),
        (
            f'{{path: "{RATE}", dist: lognormal, median: -1, sigma: 0.2}}',
            "uncertainty.parameters[0]",
            "greater than 0",
        ),
    ],
)
def test_bad_specs_are_clear_errors(tmp_path: Path, param: str, where: str, says: str) -> None:
    file = _scenario(tmp_path, f"uncertainty:\n  parameters:\n    - {param}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(file)
    text = str(info.value)
    assert where in text and says in text, text
    assert "tiny.yaml:" in text  # with the file and line
    res = _invoke(str(file), "--draws", "2", "--out", str(tmp_path / "run"))
    assert res.exit_code == 2 and says in res.output, res.output
    assert not (tmp_path / "run").exists()


def test_a_draw_the_scenario_refuses_stops_before_any_run(tmp_path: Path) -> None:
    spec = f"""
uncertainty:
  parameters:
    - {{path: "{SLOTS}", dist: uniform, low: -10, high: 3}}
"""
    file = _scenario(tmp_path, spec)
    res = _invoke(str(file), "--draws", "3", "--out", str(tmp_path / "run"))
    assert res.exit_code == 2, res.output
    assert "draw 0 (nodes[solo].pools[slots].slots=" in res.output
    assert "narrow the parameter's distribution" in res.output
    assert not (tmp_path / "run").exists()  # nothing simulated, nothing written


def test_draw_options_need_an_uncertainty_block_and_draws(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text(TINY, "utf-8")
    res = _invoke(str(plain), "--draws", "2", "--out", str(tmp_path / "a"))
    assert res.exit_code == 2 and "has no uncertainty: block" in res.output, res.output
    res = _invoke(str(plain), "--workers", "2", "--out", str(tmp_path / "b"))
    assert res.exit_code == 2 and "go with --draws N" in res.output, res.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_draws_skip_latency_distributions_but_not_what_the_bands_read() -> None:
    """Draws run with outputs.latency_statistics false: SLA attainment, the shortfall, the
    request counts and the economics must be exactly those of the full run."""
    import gridsim as gs

    path = Path(__file__).resolve().parents[1] / "scenarios" / "baseline.yaml"
    sets = ["horizon.duration=4d", "horizon.resolution=1h"]
    full = gs.run(gs.load_scenario(path, sets=sets)).summary
    lean = gs.run(gs.load_scenario(path, sets=[*sets, "outputs.latency_statistics=false"])).summary
    assert lean["latency_s"]["count"] == 0 and full["latency_s"]["count"] > 0
    for key in ("sla_attainment", "requests", "capacity", "tokens"):
        assert lean[key] == full[key], key
    assert lean["economics"]["cost_cny_per_m_tokens"] == full["economics"]["cost_cny_per_m_tokens"]
