"""Comparing two runs of one scenario under different policies."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import gridsim as gs
from gridsim.compare import compare_runs, format_table, run_labels
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
    first, second = "east_west", "nearest"
    diff, pct = f"{second} - {first}", f"{second} vs {first} (%)"
    assert list(table.columns) == [first, second, diff, pct]
    for kpi in ("requests_served", "sla_attainment", "latency_p95_s", "utilization_mean"):
        assert kpi in table.index
    for kpi in ("energy_kwh", "cost_cny", "carbon_kg", "cost_cny_per_m_tokens"):
        assert table.loc[kpi, first] > 0
    assert "chat: latency_p95_s" in table.index
    # same demand (same seed and scenario), different routing
    assert table.loc["requests_arrived", diff] == 0
    assert table.loc["latency_p95_s", first] != table.loc["latency_p95_s", second]
    row = table.loc["latency_p95_s"]
    assert row[diff] == pytest.approx(row[second] - row[first])
    assert row[pct] == pytest.approx(100 * (row[second] - row[first]) / row[first])
    saved = pd.read_csv(out / "kpis.csv", index_col="kpi")
    pd.testing.assert_frame_equal(saved, table, check_names=False)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["compare_cost_energy.png", "compare_latency.png", "compare_utilization.png"]
    assert all((out / p).stat().st_size > 5_000 for p in pngs)
    text = format_table(table)
    lines = text.splitlines()
    assert first in lines[0] and second in lines[0] and pct in lines[0]
    assert len(lines) == len(table) + 2
    assert any(line.startswith("sla_attainment") for line in lines)


def test_compare_needs_two_runs(two_runs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="two"):
        compare_runs(two_runs[:1], tmp_path)


def test_labels_stay_unique() -> None:
    labels = run_labels([Path("a/run"), Path("b/run"), Path("b/run")])
    assert labels == ["a/run", "b/run", "b/run (2)"]
