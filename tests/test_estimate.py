"""Run estimates: request counts against hand calculations and real runs, limits, refusals."""

from __future__ import annotations

import math
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gridsim.demand import DemandModel
from gridsim.estimate import (
    AUTO_REQUEST_MAX,
    Limits,
    RunEstimate,
    RunTooLarge,
    check_run,
    estimate_run,
    expected_requests,
)
from gridsim.run import fidelity_of
from gridsim.run import run as run_scenario
from gridsim.scenario import Scenario, load_scenario, load_scenario_text

ROOT = Path(__file__).resolve().parents[1]
MMC = ROOT / "scenarios" / "validation" / "mmc.yaml"
CROSS = ROOT / "scenarios" / "validation" / "cross_fidelity.yaml"
MONTH_S = 30.436875 * 86400  # a mean Gregorian month, written out by hand

LLM = """
name: llm
fidelity: {fidelity}
horizon: {{start: 2026-03-02, duration: {duration}, resolution: {resolution}}}
regions: [{{id: shanghai}}, {{id: sichuan}}]
nodes:
  - id: yrd
    kind: intelligent_computing
    site: yrd_demo_zone
    pools: [{{id: chat, model: qwen3-32b, accelerator: h100, replicas: 4}}]
network: {{generate: hub_and_spoke}}
demand:
  tokens_per_day: {tokens_per_day}
  sample_fraction: {sample_fraction}
  growth: {growth}
  classes:
    - name: chat
      share: 0.5
      model: qwen3-32b
      input_tokens: {{dist: lognormal, mean: 1000, sigma: 1.0}}
      output_tokens: {{dist: exponential, mean: 300}}
      diurnal: {diurnal}
"""

# The README's "In brief" example (without extends and overrides): ~1e11 requests in a day.
README_EXAMPLE = """
name: my-grid
fidelity: {fidelity}
horizon: {{start: 2026-03-01, duration: {duration}, resolution: {resolution}}}
regions: provinces
nodes:
  - id: guian
    kind: intelligent_computing
    site: guian
    pue: 1.2
    pools:
      - {{id: v3, model: deepseek-v3, accelerator: h20, replicas: 100}}
network: {{generate: hub_and_spoke, route_factor: 1.5}}
demand:
  tokens_per_day: 140e12
  growth: {{law: exponential, rate_per_month: 0.08}}
  classes:
    - name: chat
      share: 1.0
      model: deepseek-v3
      input_tokens: {{dist: lognormal, mean: 1000, sigma: 1.0}}
      output_tokens: {{dist: lognormal, mean: 300, sigma: 0.8}}
      slo: {{ttft: 2s, e2e: 60s}}
"""


def llm(**fields: object) -> Scenario:
    values: dict[str, object] = {
        "fidelity": "auto",
        "duration": "3d",
        "resolution": "5min",
        "tokens_per_day": 1e9,
        "sample_fraction": 1.0,
        "growth": "{law: none}",
        "diurnal": "null",
    }
    values.update(fields)
    return load_scenario_text(LLM.format(**values))


def readme(fidelity: str = "auto", duration: str = "1d", resolution: str = "5min") -> Scenario:
    text = README_EXAMPLE.format(fidelity=fidelity, duration=duration, resolution=resolution)
    return load_scenario_text(text)


@pytest.fixture(autouse=True)
def default_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GRIDSIM_MAX_REQUESTS", "GRIDSIM_MAX_MEMORY_BYTES", "GRIDSIM_MAX_WALL_S"):
        monkeypatch.delenv(var, raising=False)


# --- request counts ---------------------------------------------------------------------------


def test_explicit_rate_without_growth_is_rate_times_duration(minimal_yaml: str) -> None:
    text = minimal_yaml.replace("rate_per_s: 1", "rate_per_s: 2.5").replace("1h", "90min")
    scenario = load_scenario_text(text)
    assert expected_requests(scenario) == pytest.approx(2.5 * 5400, rel=1e-12)
    estimate = estimate_run(scenario)
    assert estimate.requests == pytest.approx(13_500, rel=1e-12)
    assert estimate.ticks == 18 and estimate.cells == 1  # 90 min of 5 min ticks; 1 x 1 x 1


def test_share_class_is_tokens_over_mean_tokens() -> None:
    # 1e9 tokens/day x 0.5 share x 3 days / (1000 + 300 tokens a request)
    assert expected_requests(llm()) == pytest.approx(1e9 * 0.5 * 3 / 1300, rel=0.01)
    # sampled, and shaped by a daily profile that averages 1 over each whole day
    diurnal = "[" + ", ".join(str(1 + h % 5) for h in range(24)) + "]"
    shaped = llm(sample_fraction=0.01, diurnal=diurnal)
    assert expected_requests(shaped) == pytest.approx(1e9 * 0.5 * 3 / 1300 * 0.01, rel=0.01)
    # ... but not over the first six hours (weights 1, 2, 3, 4, 5, 1 of a mean of 2.917)
    six = llm(duration="6h", diurnal=diurnal)
    by_hand = 1e9 * 0.5 / 1300 / 24 * (16 / (70 / 24))
    assert expected_requests(six) == pytest.approx(by_hand, rel=0.01)


def test_exponential_growth_matches_the_integral() -> None:
    r, days = 0.1, 365
    scenario = llm(duration=f"{days}d", growth=f"{{law: exponential, rate_per_month: {r}}}")
    # integral over [0, H] of D0 (1 + r)^(t / month) dt, in requests (D0 per day)
    k = math.log(1 + r) / MONTH_S
    tokens = 1e9 * 0.5 / 86400 * (math.exp(k * days * 86400) - 1) / k
    assert expected_requests(scenario) == pytest.approx(tokens / 1300, rel=0.01)


def test_requests_agree_with_the_demand_models_mean_rates() -> None:
    scenario = load_scenario(CROSS)  # diurnal profile, GDP weights, sampled
    edges = np.linspace(0.0, scenario.horizon.duration, 289)
    rates = DemandModel(scenario).mean_rates(edges)
    exact = float((rates.sum(axis=(1, 2)) * np.diff(edges)).sum())
    assert expected_requests(scenario) == pytest.approx(exact, rel=1e-6)


def test_mmc_estimate_against_a_real_run(tmp_path: Path) -> None:
    scenario = load_scenario(MMC)
    estimate = estimate_run(scenario)
    assert estimate.fidelity == "request"
    assert estimate.requests == pytest.approx(7.2 * 7200, rel=1e-9)
    arrived = run_scenario(scenario).summary["requests"]["arrived"]
    assert estimate.requests == pytest.approx(arrived, rel=0.05)
    # The whole command, as the wall-time estimate means it. Its CPU time is the wall time of
    # an idle machine (and a busy machine only stretches the wall time): the estimate must be
    # within a factor of 3 of both, from below of the CPU time and from above of the wall time.
    command = [sys.executable, "-c", "from gridsim.cli import main; main()"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [*command, "run", str(MMC), "--out", str(tmp_path / "run")],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert cpu / 3 <= estimate.wall_s <= wall * 3, (estimate.wall_s, cpu, wall)
    assert 50e6 < estimate.memory_bytes < 1e9


# --- refusing runs ------------------------------------------------------------------------------


def test_readme_example_at_request_fidelity_is_refused_quickly() -> None:
    scenario = readme("request")
    started = time.perf_counter()
    with pytest.raises(RunTooLarge) as caught:
        check_run(scenario)
    assert time.perf_counter() - started < 2.0
    estimate = caught.value.estimate
    assert estimate.fidelity == "request"
    assert 9e10 < estimate.requests < 1.3e11  # 140e12 tokens / 1300 a request, growing 8 %/month
    message = str(caught.value)
    assert "--fidelity flow" in message and "--force" in message
    assert "requests" in message and "GRIDSIM_MAX_REQUESTS" in message
    assert check_run(scenario, force=True) == estimate
    # at flow fidelity the same day fits
    flow = check_run(scenario, fidelity="flow")
    assert flow.fidelity == "flow" and flow.requests == estimate.requests


def test_run_too_large_survives_pickling() -> None:
    with pytest.raises(RunTooLarge) as caught:
        check_run(readme("request"))
    again = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(again, RunTooLarge) and str(again) == str(caught.value)
    assert again.estimate == caught.value.estimate


def test_limits_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = load_scenario(MMC)
    estimate = check_run(scenario)
    tight = Limits(requests=estimate.requests / 2)
    with pytest.raises(RunTooLarge, match="requests"):
        check_run(scenario, limits=tight)
    monkeypatch.setenv("GRIDSIM_MAX_WALL_S", str(estimate.wall_s / 2))
    with pytest.raises(RunTooLarge, match="GRIDSIM_MAX_WALL_S") as caught:
        check_run(scenario)
    assert caught.value.exceeded == ("wall_s",)
    assert check_run(scenario, force=True) == estimate


def test_auto_fidelity() -> None:
    example = readme("auto")
    assert expected_requests(example) > AUTO_REQUEST_MAX
    assert fidelity_of(example) == "flow"
    assert estimate_run(example).fidelity == "flow"
    assert fidelity_of(example, "request") == "request"
    mmc = load_scenario(MMC, sets=["fidelity=auto"])
    assert fidelity_of(mmc) == "request"
    assert fidelity_of(load_scenario(MMC, sets=["fidelity=auto", "horizon.duration=2d"])) == "flow"


@pytest.mark.parametrize(
    ("fidelity", "duration", "resolution", "over"),
    [
        ("auto", "10y", "1us", {"memory_bytes", "wall_s"}),  # flow: 3e14 ticks
        ("request", "100y", "5min", {"requests", "memory_bytes", "wall_s"}),
        ("flow", "100y", "30s", {"wall_s"}),  # 1e8 ticks of ~100 us each
    ],
)
def test_huge_runs_estimate_and_are_refused(
    fidelity: str, duration: str, resolution: str, over: set[str]
) -> None:
    scenario = readme(fidelity, duration, resolution)
    started = time.perf_counter()
    estimate = estimate_run(scenario)
    assert time.perf_counter() - started < 1.0
    assert estimate.fidelity == ("request" if fidelity == "request" else "flow")
    assert estimate.requests > 1e13 and estimate.wall_s > 2 * 3600
    assert estimate.ticks == math.ceil(scenario.horizon.duration / scenario.horizon.resolution)
    assert "nan" not in estimate.describe() and "inf" not in estimate.describe()
    with pytest.raises(RunTooLarge) as caught:
        check_run(scenario, limits=Limits(requests=1e9, memory_bytes=12e9, wall_s=7200))
    assert set(caught.value.exceeded) == over
    with pytest.raises(RunTooLarge):
        check_run(scenario)  # the machine's own limits


def test_a_century_at_flow_fidelity_is_long_but_bounded() -> None:
    estimate = estimate_run(readme("auto", "100y", "5min"))
    assert estimate.fidelity == "flow"
    assert estimate.ticks == math.ceil(100 * 365.2425 * 288)  # years of 5-minute ticks
    assert estimate.timeseries_rows < 25_000 * 9  # the flow series keep at most 20,000 steps
    assert 600 < estimate.wall_s < 6 * 3600 and estimate.memory_bytes < 4e9


def test_overflowing_demand_comes_out_huge() -> None:
    scenario = llm(duration="100y", resolution="1us")
    demand = scenario.demand.model_copy(update={"tokens_per_day": 1e300})  # past validation
    horizon = scenario.horizon.model_copy(update={"duration": 1e300})
    scenario = scenario.model_copy(update={"demand": demand, "horizon": horizon})
    estimate = estimate_run(scenario, "request")
    assert estimate.requests == math.inf or estimate.requests > 1e300
    assert estimate.memory_bytes > 1e300 and estimate.wall_s > 1e290
    assert estimate.ticks > 10**305
    assert "nan" not in estimate.describe()
    with pytest.raises(RunTooLarge):
        check_run(scenario, "flow")


def test_every_scenario_estimates_fast() -> None:
    paths = sorted((ROOT / "scenarios").rglob("*.yaml"))
    assert len(paths) >= 10
    estimate_run(load_scenario(MMC))  # imports once
    for path in paths:
        scenario = load_scenario(path)
        started = time.perf_counter()
        estimate = estimate_run(scenario)
        assert time.perf_counter() - started < 1.0, path
        assert isinstance(estimate, RunEstimate) and estimate.requests > 0
        assert check_run(scenario) == estimate, path  # the library's own scenarios all fit


# --- limits from the environment ------------------------------------------------------------


def test_limits_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    default = Limits.from_env()
    assert default == Limits()
    assert default.requests > AUTO_REQUEST_MAX and default.wall_s >= 3600
    assert 1e9 < default.memory_bytes < 1e15
    monkeypatch.setenv("GRIDSIM_MAX_REQUESTS", "5e6")
    monkeypatch.setenv("GRIDSIM_MAX_MEMORY_BYTES", "1073741824")
    monkeypatch.setenv("GRIDSIM_MAX_WALL_S", " 60 ")
    assert Limits.from_env() == Limits(requests=5e6, memory_bytes=2**30, wall_s=60.0)
    monkeypatch.setenv("GRIDSIM_MAX_WALL_S", "")
    assert Limits.from_env().wall_s == default.wall_s


@pytest.mark.parametrize("value", ["lots", "-1", "0", "nan", "1e9 bytes"])
@pytest.mark.parametrize(
    "var", ["GRIDSIM_MAX_REQUESTS", "GRIDSIM_MAX_MEMORY_BYTES", "GRIDSIM_MAX_WALL_S"]
)
def test_limits_from_env_rejects_bad_values(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=var):
        Limits.from_env()


def test_describe_reads_as_one_line() -> None:
    estimate = RunEstimate("request", 1.1e11, 288, 31, 3000, 4.1e12, 12 * 86400)
    assert estimate.describe() == (
        "request fidelity: about 1.1e11 requests, 4.1 TB, 12 days of wall time"
    )
    flow = RunEstimate("flow", 3.65e12, 5760, 9610, 272160, 3e8, 15.0)
    assert flow.describe() == (
        "flow fidelity: 5,760 ticks x 9,610 cells, about 3.6e12 requests, 300 MB, 15 s of wall time"
    )
