"""The scenario library: every file validates and runs; the variants do what they say; the
baseline's full report is produced in under two minutes."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import gridsim as gs
from gridsim.cli import app
from gridsim.numbers import human_percent
from gridsim.output import write_run
from gridsim.run import Result, fidelity_of
from gridsim.scenario import resolve_file
from gridsim.scenario.schema import ExponentialGrowth

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
FILES = sorted(SCENARIOS.rglob("*.yaml"))
# Generated market scenarios (scenarios/tools/make_token_market.py) restate the nodes and classes:
# tests/test_token_market.py checks them against their script instead.
VARIANTS = [
    p
    for p in sorted(SCENARIOS.glob("*.yaml"))
    if p.name != "baseline.yaml" and not p.read_text("utf-8").startswith("# GENERATED")
]
QUICK = {"request": "10min", "flow": "2d"}  # horizons of the quick runs, by fidelity
REPORT_BUDGET_S = 120.0


def _id(path: Path) -> str:
    return str(path.relative_to(SCENARIOS))


def _override_names(path: Path) -> list[str]:
    return sorted(resolve_file(path).overrides)


def test_the_library_is_all_there() -> None:
    names = {_id(p) for p in FILES}
    assert {
        "baseline.yaml",
        "baseline-hour.yaml",
        "growth-continued.yaml",
        "growth-saturating.yaml",
        "demand-shock.yaml",
        "east-west.yaml",
        "hub-outage.yaml",
        "green.yaml",
        "validation/mmc.yaml",
        "validation/cross_fidelity.yaml",
        "token-market.yaml",
        "token-market-dedicated.yaml",
    } <= names


def test_every_scenario_validates_on_the_command_line() -> None:
    result = CliRunner().invoke(app, ["validate", *map(str, FILES)])
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok (") == len(FILES)


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_every_named_override_validates(path: Path) -> None:
    for name in _override_names(path):
        scenario = gs.load_scenario(path, [name])
        assert scenario.name, (path, name)


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_every_scenario_runs_in_quick_mode(path: Path, tmp_path: Path) -> None:
    fidelity = fidelity_of(gs.load_scenario(path))
    sets = [f"horizon.duration={QUICK[fidelity]}", "horizon.warmup=0", "outputs.figures=false"]
    scenario = gs.load_scenario(path, sets=sets)
    result = gs.run(scenario)
    assert result.summary["fidelity"] == fidelity
    req = result.summary["requests"]
    assert req["arrived"] > 0 and req["served"] > 0
    terms = ("served", "dropped", "abandoned", "lost", "in_flight")
    assert req["arrived"] == sum(req[k] for k in terms)
    assert min(req[k] for k in terms) >= 0
    out = write_run(result, tmp_path / "run")
    assert (out / "summary.json").is_file() and not (out / "report.html").exists()


@pytest.mark.parametrize("path", VARIANTS, ids=_id)
def test_variants_are_small_files_on_the_baseline(path: Path) -> None:
    text = path.read_text("utf-8")
    data = yaml.safe_load(text)
    assert data["extends"] == "baseline.yaml"
    assert len(text.splitlines()) < 70, "a variant states only what differs from the baseline"
    base = gs.load_scenario(SCENARIOS / "baseline.yaml")
    variant = gs.load_scenario(path)
    assert [n.id for n in variant.nodes] == [n.id for n in base.nodes]
    assert variant.name == path.stem


def test_every_assumption_is_sourced_or_marked() -> None:
    """Numbers in the baseline's node and class blocks carry a comment nearby (a source, F<n>
    for FACTS.md, DERIVED or ASSUMPTION); spot-check the key ones."""
    text = (SCENARIOS / "baseline.yaml").read_text("utf-8")
    for needle in (
        "tokens_per_day: 140e12",
        "NDA head Liu Liehong",
        "fit-trace azure2023_AzureLLMInferenceTrace_conv.csv",
        "fit-trace azure2023_AzureLLMInferenceTrace_code.csv",
        "fit-trace mooncake_conversation_trace.jsonl",
        "ServeGen",
        "price_in_cny_per_m: 4.0",
        "5 ms from a cluster to its region, 20 ms between hubs",
    ):
        assert needle in text, needle
    assert text.count("ASSUMPTION") >= 20 and text.count("DERIVED") >= 5


def test_the_demand_shock_doubles_interactive_demand_for_two_weeks() -> None:
    # From the day before the shock: the shock day's chat arrivals are twice the day before's
    # (apart from a day of growth); batch is untouched.
    sets = [
        "horizon.start=2026-03-15",
        "horizon.duration=2d",
        "horizon.resolution=1h",
        "outputs.figures=false",
    ]
    shocked = gs.run(gs.load_scenario(SCENARIOS / "demand-shock.yaml", sets=sets))
    calm = gs.run(gs.load_scenario(SCENARIOS / "demand-shock.yaml", sets=[*sets, "events=[]"]))
    chat = [r.summary["by_class"]["chat"]["requests"]["arrived"] for r in (shocked, calm)]
    batch = [r.summary["by_class"]["batch"]["requests"]["arrived"] for r in (shocked, calm)]
    assert chat[0] / chat[1] == pytest.approx(1.5, rel=0.01)  # day 1 x1, day 2 x2
    assert batch[0] == pytest.approx(batch[1], rel=1e-9)


def test_the_hub_outage_takes_guian_down_for_a_day() -> None:
    sets = ["horizon.duration=3d", "outputs.figures=false"]
    result = gs.run(gs.load_scenario(SCENARIOS / "hub-outage.yaml", sets=sets))
    ts = result.timeseries
    cap = ts[(ts["entity_kind"] == "pool") & (ts["metric"] == "capacity_slot_s")]
    guian = cap[cap["entity_id"].str.startswith("guian/")].groupby("time_s")["value"].sum()
    day = (guian.index.to_numpy() // 86400).astype(int)
    assert guian[day == 2].sum() == 0 and (guian[day != 2] > 0).all()
    quiet = gs.run(gs.load_scenario(SCENARIOS / "hub-outage.yaml", sets=[*sets, "events=[]"]))
    nearest = quiet.summary

    def unserved(summary: dict[str, Any]) -> int:
        r = summary["requests"]
        return int(r["dropped"] + r["abandoned"] + r["lost"])

    assert unserved(result.summary) >= unserved(nearest)
    # Gui'an's work goes elsewhere on the day it is down: the other nodes are busier then
    # than without the outage, and as busy before it

    def busy_elsewhere(run: Result) -> pd.Series:
        ts = run.timeseries
        b = ts[(ts["entity_kind"] == "pool") & (ts["metric"] == "busy_slot_s")]
        b = b[~b["entity_id"].str.startswith("guian/")]
        return b.groupby((b["time_s"] // 86400).astype(int))["value"].sum()

    down, up = busy_elsewhere(result), busy_elsewhere(quiet)
    assert down[2] > up[2] * (1 + 1e-3)
    assert down[0] == pytest.approx(up[0], rel=1e-9)


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path, float]:
    """The baseline as shipped, run and written once: result, folder, seconds taken."""
    started = time.perf_counter()
    result = gs.run(gs.load_scenario(SCENARIOS / "baseline.yaml"))
    out = write_run(result, tmp_path_factory.mktemp("baseline") / "baseline")
    return result, out, time.perf_counter() - started


def test_the_baseline_full_report_takes_under_two_minutes(
    baseline_run: tuple[Result, Path, float],
) -> None:
    result, out, elapsed = baseline_run
    assert elapsed < REPORT_BUDGET_S, f"baseline run + report took {elapsed:.1f} s"
    assert result.summary["fidelity"] == "flow"
    figures = sorted(p.stem for p in (out / "figures").glob("*.png"))
    assert figures == ["cost_energy", "demand_capacity", "latency", "map", "utilization"]
    html = (out / "report.html").read_text("utf-8")
    assert "gridsim report: baseline" in html and "31 / 30 / 62" in html
    # the report answers "when do we run out" as the summary does, either way
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    shortfall = summary["capacity"]["shortfall_at_s"]
    if shortfall is None:
        headroom = summary["capacity"]["headroom"]["min"]
        assert f"never below {human_percent(headroom)}" in html
    else:
        assert 0 < shortfall < result.scenario.horizon.duration
        assert "demand outgrows capacity from" in html
    econ = summary["economics"]
    assert 0 < econ["cost_cny_per_m_tokens"] < econ["revenue_cny_per_m_tokens"]


def test_the_baseline_national_tokens_per_day_by_hand(
    baseline_run: tuple[Result, Path, float],
) -> None:
    """Tokens a day over the horizon, from the scenario's own inputs: D0 = tokens_per_day at the
    start, growing as exp(k t) with k = ln(1 + rate_per_month) per month of 30.436875 days, split
    over the token classes by share and shaped by each class's diurnal weights / their mean
    (constant within each clock hour). Each hour holds share x D0 x weight x the integral of
    exp(k t) over the hour; summed over the horizon and divided by its days: 156.74e12 for the
    shipped baseline (140e12 at +11.9 % a month over 60 days). Served is that less what the
    run could not serve (its unserved_tokens); economics reports the served figure."""
    result, out, _ = baseline_run
    scenario = result.scenario
    demand, horizon_s = scenario.demand, scenario.horizon.duration
    assert isinstance(demand.growth, ExponentialGrowth) and demand.sample_fraction == 1.0
    k = math.log1p(demand.growth.rate_per_month) / (30.436875 * 86400)  # per second
    hours = np.arange(math.ceil(horizon_s / 3600))
    growth = np.exp(k * hours * 3600) * math.expm1(k * 3600) / k  # integral over each hour
    tokens = 0.0
    for cls in demand.classes:
        if cls.kind == "job":
            continue  # jobs carry no tokens
        weights = np.asarray(cls.diurnal if cls.diurnal is not None else [1.0] * 24)
        profile = (weights / weights.mean())[hours % 24]
        tokens += demand.tokens_per_day * cls.share / 86400 * float(profile @ growth)
    days = horizon_s / 86400
    assert tokens / days == pytest.approx(156.74e12, rel=1e-4)
    summary = json.loads((out / "summary.json").read_text("utf-8"))
    t = summary["tokens"]
    demanded = t["input"]["demanded"] + t["output"]["demanded"]
    assert demanded == pytest.approx(tokens, rel=1e-8)  # the hourly midpoint: (k h)^2/24 ~ 1e-9
    served = t["input"]["served"] + t["output"]["served"]
    assert abs(served - (demanded - summary["capacity"]["unserved_tokens"])) <= 1  # rounding
    national = summary["economics"]["national_tokens_per_day"]
    assert national == pytest.approx(
        (tokens - summary["capacity"]["unserved_tokens"]) / days, rel=1e-8
    )
    assert 0.95 * tokens / days < national <= tokens / days


def test_the_baseline_never_has_a_negative_count(
    baseline_run: tuple[Result, Path, float],
) -> None:
    """Every block of the baseline accounts for its requests: no negative term, and arrived =
    served + dropped + abandoned + lost + in flight (issue 10 found 13 regions negative)."""
    summary = baseline_run[0].summary
    blocks = {
        "": summary,
        **summary["by_class"],
        **summary["by_region"],
        **summary["by_node"],
        **summary["by_pool"],
    }
    terms = ("served", "dropped", "abandoned", "lost", "in_flight")
    negative = {
        name: block["requests"]
        for name, block in blocks.items()
        if min(block["requests"][k] for k in terms) < 0
    }
    assert not negative
    for name, block in blocks.items():
        r = block["requests"]
        assert r["arrived"] == sum(r[k] for k in terms), name


def test_baseline_hour_is_the_baseline_at_request_fidelity() -> None:
    hour = gs.load_scenario(SCENARIOS / "baseline-hour.yaml")
    base = gs.load_scenario(SCENARIOS / "baseline.yaml")
    assert hour.fidelity == "request" and hour.horizon.duration == 3600
    assert hour.demand.sample_fraction == 1.0 and hour.demand.sample_pools is not None
    assert hour.nodes == base.nodes and hour.demand.classes == base.demand.classes
    assert hour.policy == base.policy
