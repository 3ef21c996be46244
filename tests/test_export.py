"""``gridsim export``: the run's tables for spreadsheets, read back equal to summary.json; it
never writes over anything; ``gridsim --version``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import gridsim as gs
from gridsim.cli import app
from gridsim.output import write_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-hour M/M/c run (request fidelity, hourly rows to export), with a capacity gap
    added to its summary.json as the flow engine writes it."""
    root = tmp_path_factory.mktemp("export")
    scenario = gs.load_scenario(
        Path(__file__).resolve().parents[1] / "scenarios" / "validation" / "mmc.yaml",
        sets=["horizon.duration=3h", "horizon.warmup=0s", "outputs.figures=false"],
    )
    folder = write_run(gs.run(scenario), root / "run")
    summary = json.loads((folder / "summary.json").read_text())
    summary["capacity"] = {
        "gap": [
            {"hub": "yrd", "model": "deepseek-v3", "accelerator": "h20", "cards_to_add": 160},
            {"hub": "gansu", "model": "qwen3", "accelerator": "910b", "cards_to_add": 32},
        ],
        "gap_cards": 192,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def _export(*args: Any) -> Any:
    return CliRunner().invoke(app, ["export", *map(str, args)])


def test_csv_round_trip(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    result = _export(run_dir, "--format", "csv", "--out", out)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    tables = ["kpis", "by_class", "by_region", "by_node", "by_pool", "capacity_gap", "pools"]
    assert names == sorted(f"{t}.csv" for t in [*tables, "timeseries"])
    summary = json.loads((run_dir / "summary.json").read_text())
    table = pd.read_csv(out / "kpis.csv", index_col="name")
    assert list(table.columns) == ["value", "unit", "definition"]
    assert int(table.loc["requests_served", "value"]) == summary["requests"]["served"]
    assert float(table.loc["latency_p95_s", "value"]) == summary["latency_s"]["p95"]
    assert table.loc["latency_p95_s", "unit"] == "s"
    assert table.loc["sla_attainment", "unit"] == "fraction (1 = 100 %)"
    assert int(table.loc["gap_cards", "value"]) == 192
    assert "by_class.jobs.latency_p95_s" not in table.index  # in by_class.csv
    by_class = pd.read_csv(out / "by_class.csv", index_col="class")
    jobs = summary["by_class"]["jobs"]
    assert by_class.loc["jobs", "requests_arrived"] == jobs["requests"]["arrived"]
    assert by_class.loc["jobs", "wait_mean_s"] == pytest.approx(jobs["wait_s"]["mean"], rel=1e-15)
    by_pool = pd.read_csv(out / "by_pool.csv", index_col="pool")
    assert list(by_pool.index) == list(summary["by_pool"])
    gap = pd.read_csv(out / "capacity_gap.csv")
    assert list(gap["cards_to_add"]) == [160, 32] and list(gap["hub"]) == ["yrd", "gansu"]


def test_timeseries_is_hourly_and_wide(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "csv"
    assert _export(run_dir, "--out", out).exit_code == 0
    wide = pd.read_csv(out / "timeseries.csv")
    assert list(wide["time_s"]) == [0.0, 3600.0, 7200.0]
    assert list(wide["time"]) == [
        "2026-03-01T00:00:00",
        "2026-03-01T01:00:00",
        "2026-03-01T02:00:00",
    ]
    tidy = pd.read_parquet(run_dir / "timeseries.parquet")
    util = tidy[(tidy["metric"] == "utilization") & (tidy["entity_id"] == "solo")]
    second_hour = util[(util["time_s"] >= 3600) & (util["time_s"] < 7200)]["value"]
    assert len(second_hour) == 60  # minute samples: a level is their mean over the hour
    assert wide.loc[1, "node solo: utilization"] == pytest.approx(second_hour.mean())
    busy = tidy[(tidy["metric"] == "busy_slot_s") & (tidy["time_s"] < 3600)]["value"]
    pool_busy = [c for c in wide.columns if c.endswith(": busy_slot_s")]
    assert len(pool_busy) == 1  # slot-seconds add up over the hour
    assert wide.loc[0, pool_busy[0]] == pytest.approx(busy.sum())


def test_xlsx_round_trip(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.xlsx"
    assert _export(run_dir, "--format", "xlsx", "--out", out).exit_code == 0
    sheets = pd.read_excel(out, sheet_name=None)
    assert list(sheets) == [
        "kpis",
        "by_class",
        "by_region",
        "by_node",
        "by_pool",
        "capacity_gap",
        "pools",
        "timeseries",
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    kpi = sheets["kpis"].set_index("name")
    assert kpi.loc["requests_arrived", "value"] == summary["requests"]["arrived"]
    assert kpi.loc["utilization_mean", "value"] == pytest.approx(summary["utilization"]["mean"])
    assert list(sheets["timeseries"]["time_s"]) == [0, 3600, 7200]


def test_default_places_and_refusals(run_dir: Path, tmp_path: Path) -> None:
    result = _export(run_dir)
    assert result.exit_code == 0, result.output
    made = run_dir / "export-csv"
    assert (made / "kpis.csv").is_file()
    before = (made / "kpis.csv").read_bytes()
    again = _export(run_dir)  # never writes over what exists
    assert again.exit_code == 2 and "exists" in again.output
    assert (made / "kpis.csv").read_bytes() == before
    mine = tmp_path / "mine.xlsx"
    mine.write_text("a user's file")
    refused = _export(run_dir, "--format", "xlsx", "--out", mine)
    assert refused.exit_code == 2 and "exists" in refused.output
    assert mine.read_text() == "a user's file"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    not_run = _export(tmp_path)
    assert not_run.exit_code == 2 and "not a gridsim run folder" in not_run.output
    bad = _export(run_dir, "--format", "pdf")
    assert bad.exit_code == 2 and "csv or xlsx" in bad.output
    (made / "kpis.csv").unlink()  # the module's run folder as it was for the other tests
    for p in made.iterdir():
        p.unlink()
    made.rmdir()


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"gridsim {gs.__version__}\n"
