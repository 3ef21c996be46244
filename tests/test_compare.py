"""Comparing two runs of one scenario under different policies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import gridsim as gs
from gridsim.cli import app
from gridsim.compare import change_text, compare_runs, format_table, run_labels, verdict
from gridsim.kpis import HEADLINE, REGISTRY
from gridsim.output import write_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    dirs = []
    for policy in ("east_west", "nearest"):
        scenario = gs.load_scenario(
            ROOT / "scenarios" / "baseline-hour.yaml",
            # the old 1e-5 slice: the same demand under both policies (a pool sample follows
            # each policy's routes), and quick
            sets=[
                f"policy.name={policy}",
                "horizon.duration=15min",
                "demand.sample_pools=null",
                "demand.sample_fraction=1e-5",
            ],
        )
        dirs.append(write_run(gs.run(scenario), root / policy))
    return dirs


def test_compare_runs_table_and_figures(two_runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    table = compare_runs(two_runs, out)
    # labels a person reads: the scenario's name and the setting that differs, not the folder
    first, second = "baseline-hour: policy.name=east_west", "baseline-hour: policy.name=nearest"
    change, verdict = f"{second} vs {first}", f"{second} verdict"
    assert list(table.columns) == ["unit", first, second, change, verdict]
    # headline KPIs first, in the registry's order
    head = [k for k in HEADLINE if k in table.index]
    assert list(table.index[: len(head)]) == head
    for kpi in ("requests_served", "sla_attainment", "latency_p95_s", "utilization_mean"):
        assert kpi in table.index
    for kpi in ("energy_kwh", "cost_cny", "carbon_kg", "cost_cny_per_m_tokens"):
        assert table.loc[kpi, first] > 0
    assert "by_class.chat.latency_p95_s" in table.index
    # same demand (same seed and scenario), different routing
    assert table.loc["requests_arrived", change] == "no change"
    row = table.loc["latency_p95_s"]
    a, b = row[first], row[second]
    assert a != b
    assert row[change] == f"{100 * (b - a) / a:+.1f} %"
    assert row[verdict] == ("worse" if b > a else "better")
    saved = pd.read_csv(out / "compare.csv", index_col="kpi")
    assert saved.loc["latency_p95_s", first] == pytest.approx(a)
    assert saved.loc["latency_p95_s", "definition"].startswith("95th percentile")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["compare_cost_energy.png", "compare_latency.png", "compare_utilization.png"]
    assert all((out / p).stat().st_size > 5_000 for p in pngs)
    page = (out / "compare.html").read_text("utf-8")
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    assert page.count("data:image/png;base64,") == 3 and first in page
    assert "max-width:1180px" in page and "table-layout:fixed" in page  # fits 1,280 px
    text = format_table(table)
    lines = text.splitlines()
    assert first in lines[0] and second in lines[0] and change in lines[0]
    assert len(lines) == len(table) + 2
    assert any(line.startswith("sla_attainment") for line in lines)


def test_compare_needs_two_runs(two_runs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="two"):
        compare_runs(two_runs[:1], tmp_path)


def test_labels_given_or_unique(two_runs: list[Path], tmp_path: Path) -> None:
    assert run_labels(two_runs, ["A", "B"]) == ["A", "B"]
    assert run_labels([*two_runs, two_runs[0]])[2].endswith("policy.name=east_west (2)")
    with pytest.raises(ValueError, match="one --label per run"):
        run_labels(two_runs, ["only one"])
    result = CliRunner().invoke(
        app, ["compare", *map(str, two_runs), "--label", "east", "--label", "near"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split()[:3] == ["kpi", "east", "near"]
    assert "▲ better" in result.output or "▼ worse" in result.output
    bad = CliRunner().invoke(app, ["compare", *map(str, two_runs), "--label", "x"])
    assert bad.exit_code == 2 and "one --label per run" in bad.output


K = REGISTRY


@pytest.mark.parametrize(
    ("name", "first", "other", "text", "mark"),
    [
        ("latency_p95_s", 10.0, 11.0, "+10.0 %", "worse"),  # 1 / 10
        ("sla_attainment", 0.96, 0.95, "-1.0 %", "worse"),  # -0.01 / 0.96 = -1.04 %
        ("requests_dropped", 0, 5, "+5 requests", "worse"),  # from zero: absolute
        ("requests_served", 4, 0, "-4 requests", "worse"),  # to zero: absolute
        ("margin_cny", 100.0, -50.0, "-150 CNY", "worse"),  # sign change: absolute
        ("cost_cny", 1.0, 20.0, "+19.0 CNY", "worse"),  # +1,900 %: absolute
        ("cost_cny", 1.0, 11.0, "+10.0 CNY", "worse"),  # exactly +1,000 % is not below it
        ("cost_cny", 1.0, 10.9, "+990.0 %", "worse"),  # just below
        ("requests_served", 1.0, 3.65e12, "+3.65 T requests", "better"),
        ("sla_attainment", 0.5, 0.0, "-50.0 pp", "worse"),  # shares: percentage points
        ("utilization_mean", 0.3, 0.6, "+100.0 %", ""),  # no direction
        ("shortfall_at", "2026-03-17T00:00:00", "2026-03-20T12:00:00", "+3.5 d", "better"),
        ("latency_p95_s", 2.0, 2.0, "no change", ""),
        ("latency_p95_s", None, 2.0, "—", ""),
    ],
)
def test_change_rules(name: str, first: Any, other: Any, text: str, mark: str) -> None:
    assert change_text(K[name], first, other) == text
    assert verdict(K[name], first, other) == mark
