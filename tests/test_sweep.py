"""Sweeps: on a Dask LocalCluster and on a separate scheduler + worker, failures recorded,
re-runs resume, Ctrl-C keeps finished runs, and the ``sweep:`` block of a scenario file."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import distributed
import pandas as pd
import pyarrow.dataset as ds
import pytest
from scipy import stats
from typer.testing import CliRunner

import gridsim as gs
from gridsim.cli import app
from gridsim.sweep import plan_sweep, read_table, run_sweep, summarize, sweep
from gridsim.sweep_cli import parse_axis

ROOT = Path(__file__).resolve().parents[1]
MMC = str(ROOT / "scenarios" / "validation" / "mmc.yaml")
TINY = ["--set", "horizon.duration=2min", "--set", "horizon.warmup=0"]
SLOTS = "nodes[solo].pools[slots].slots"


def _sweep(*args: str) -> Any:
    return CliRunner().invoke(app, ["sweep", MMC, *TINY, *args])


@pytest.fixture
def cluster_spy(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Records how LocalCluster is started (and still starts it)."""
    calls: list[dict[str, Any]] = []
    real = distributed.LocalCluster

    def spy(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(distributed, "LocalCluster", spy)
    return calls


def test_sweep_on_local_cluster(tmp_path: Path, cluster_spy: list[dict[str, Any]]) -> None:
    out = tmp_path / "sweep"
    result = _sweep("--axis", f"{SLOTS}=8,9", "--seeds", "2", "--workers", "2", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert cluster_spy == [
        {
            "n_workers": 2,
            "processes": True,
            "threads_per_worker": 1,
            "dashboard_address": None,
            "silence_logs": 40,
        }
    ]
    runs = pd.read_parquet(out / "sweep.parquet")
    assert list(runs["run"]) == [0, 1, 2, 3]
    assert list(runs[SLOTS]) == [8, 8, 9, 9] and list(runs["seed"]) == [1, 2, 1, 2]
    assert set(runs["status"]) == {"ok"} and runs["error"].isna().all()
    assert (runs["wall_time_s"] > 0).all() and (runs["requests_served"] > 0).all()
    for folder in runs["folder"]:
        assert (out / folder / "summary.json").is_file() and (out / folder / "run.json").is_file()
    assert (out / f"{SLOTS}=9" / "seed=2" / "timeseries.parquet").is_file()
    # a worker's run is the run gridsim gives in this process for the same scenario and seed
    sets = ["horizon.duration=2min", "horizon.warmup=0", f"{SLOTS}=9", "outputs.figures=false"]
    direct = gs.run(gs.load_scenario(MMC, sets=sets, seed=2)).summary
    row = runs[(runs[SLOTS] == 9) & (runs["seed"] == 2)].iloc[0]
    assert row["requests_served"] == direct["requests"]["served"]
    assert row["latency_p95_s"] == direct["latency_s"]["p95"]
    # Hive folders read as one table by pyarrow, and by gridsim.sweep.read_table
    files = [str(out / f / "timeseries.parquet") for f in runs["folder"]]
    table = ds.dataset(files, partitioning="hive", partition_base_dir=str(out)).to_table()
    frame = table.to_pandas()
    assert {SLOTS, "seed"} <= set(frame.columns)
    assert set(zip(frame[SLOTS], frame["seed"], strict=True)) == {(8, 1), (8, 2), (9, 1), (9, 2)}
    assert len(read_table(out)) == len(frame)
    summary = pd.read_csv(out / "summary.csv")
    served = summary[summary["kpi"] == "requests_served"]
    assert list(served[SLOTS]) == [8, 9] and list(served["n"]) == [2, 2]
    assert (out / "sweep.png").stat().st_size > 10_000
    assert "requests_served" in result.output and "4 runs: 4 ran" in result.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the Dask scheduler exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"no Dask scheduler on port {port}")


@pytest.fixture
def dask_scheduler(tmp_path: Path) -> Iterator[str]:
    """A ``dask scheduler`` and a ``dask worker`` as separate processes on localhost."""
    dask = Path(sys.executable).parent / "dask"
    if not dask.exists():
        dask = Path(shutil.which("dask") or "dask")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with open(tmp_path / "scheduler.log", "wb") as log:
            cmd = [str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port)]
            procs.append(subprocess.Popen([*cmd, "--no-dashboard"], stdout=log, stderr=log))
        _wait_for_port(port, procs[0])
        with open(tmp_path / "worker.log", "wb") as log:
            cmd = [str(dask), "worker", address, "--host", "127.0.0.1", "--nthreads", "1"]
            cmd += ["--nworkers", "1", "--no-dashboard", "--local-directory", str(tmp_path)]
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=log))
        yield address
    finally:
        for proc in reversed(procs):  # the worker first, while its scheduler is still there
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_sweep_on_external_scheduler(
    tmp_path: Path, dask_scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_local_cluster(**kwargs: Any) -> Any:
        raise AssertionError("--scheduler must not start a LocalCluster")

    monkeypatch.setattr(distributed, "LocalCluster", no_local_cluster)
    out = tmp_path / "sweep"
    result = _sweep("--axis", f"{SLOTS}=6,10", "--scheduler", dask_scheduler, "--out", str(out))
    assert result.exit_code == 0, result.output
    runs = pd.read_parquet(out / "sweep.parquet")
    assert list(runs["status"]) == ["ok", "ok"] and list(runs[SLOTS]) == [6, 10]
    assert (out / f"{SLOTS}=10" / "seed=1" / "summary.json").is_file()
    assert runs["utilization_mean"].iloc[0] > runs["utilization_mean"].iloc[1]


def test_failures_recorded_and_rerun_resumes(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    # -1 slots fails validation (before submission); a policy module that does not exist
    # fails inside the worker; the other runs complete either way
    axes = ["--axis", f"{SLOTS}=8,-1", "--axis", "policy.name=nearest,no_such_module:Policy"]
    first = _sweep(*axes, "--seeds", "2", "--workers", "2", "--out", str(out))
    assert first.exit_code == 1, first.output
    runs = pd.read_parquet(out / "sweep.parquet")
    assert len(runs) == 8
    ok = runs[runs["status"] == "ok"]
    assert list(zip(ok[SLOTS], ok["policy.name"], strict=True)) == [(8, "nearest")] * 2
    failed = runs[runs["status"] == "failed"]
    assert len(failed) == 6 and failed["requests_served"].isna().all()
    invalid = failed[failed[SLOTS] == -1]["error"]
    assert invalid.str.contains("greater than or equal to 1").all()
    assert invalid.str.contains(f"--axis {SLOTS}=-1", regex=False).all()
    broken = failed[(failed[SLOTS] == 8)]["error"]
    assert broken.str.contains("no_such_module").all()
    assert "failed:" in first.output
    stamps = {f: (out / f / "run.json").stat().st_mtime_ns for f in ok["folder"]}

    # again, with one more value: finished runs are reused, failures retried, new ones run
    axes[1] = f"{SLOTS}=8,-1,9"
    second = _sweep(*axes, "--seeds", "2", "--workers", "2", "--out", str(out))
    assert second.exit_code == 1, second.output
    again = pd.read_parquet(out / "sweep.parquet")
    assert len(again) == 12
    reused = again[again["reused"]]
    assert sorted(reused["folder"]) == sorted(stamps)
    assert {f: (out / f / "run.json").stat().st_mtime_ns for f in stamps} == stamps
    new = again[(again[SLOTS] == 9) & (again["policy.name"] == "nearest")]
    assert list(new["status"]) == ["ok", "ok"] and not new["reused"].any()
    assert "2 ran, 2 already done, 8 failed" in second.output


def test_interrupt_keeps_finished_runs(tmp_path: Path) -> None:
    plan = plan_sweep(MMC, [parse_axis(f"{SLOTS}=7,8,9")], seeds=2)  # runs of ~0.3 s
    seen: list[dict[str, Any]] = []

    def ctrl_c(record: dict[str, Any]) -> None:
        seen.append(record)
        raise KeyboardInterrupt

    result = run_sweep(plan, tmp_path, workers=1, on_result=ctrl_c)
    assert result.interrupted and len(seen) == 1
    statuses = pd.read_parquet(tmp_path / "sweep.parquet")["status"]
    assert set(statuses) <= {"ok", "cancelled"} and (statuses == "ok").sum() >= 1
    done = result.runs[result.runs["status"] == "ok"]
    for folder in done["folder"]:
        assert json.loads((tmp_path / folder / "run.json").read_text())["status"] == "ok"
    again = sweep(MMC, {SLOTS: [7, 8, 9]}, seeds=2, out=tmp_path, workers=1)  # the same plan
    assert not again.interrupted and set(again.runs["status"]) == {"ok"}
    assert (tmp_path / "sweep.png").is_file()
    # runs that finished before Ctrl-C are reused (a run the worker was finishing may join them)
    assert set(done["folder"]) <= set(again.runs[again.runs["reused"]]["folder"])
    assert not again.runs["reused"].all()


def test_sweep_block_in_scenario_file(tmp_path: Path) -> None:
    body = (
        f"extends: {MMC}\nhorizon: {{duration: 2min, warmup: 0}}\n"
        f"sweep:\n  axes:\n    {SLOTS}: [4, 8]\n    demand.classes[jobs].rate_per_s: [1, 2]\n"
        "  seeds: 3\n"
    )
    (tmp_path / "swept.yaml").write_text(body)
    plan = plan_sweep(tmp_path / "swept.yaml")
    assert [a.path for a in plan.axes] == [SLOTS, "demand.classes[jobs].rate_per_s"]
    assert plan.seeds == [1, 2, 3] and len(plan.tasks) == 12
    assert plan.tasks[0].folder == f"{SLOTS}=4/demand.classes[jobs].rate_per_s=1/seed=1"
    assert all("sweep:" not in (t.text or "") for t in plan.tasks)
    # CLI axes override the file's (same path) and add to them; --seeds overrides seeds
    cli = plan_sweep(tmp_path / "swept.yaml", [parse_axis(f"{SLOTS}=16"), parse_axis("seed_x=1")])
    assert [a.path for a in cli.axes][::2] == [SLOTS, "seed_x"]
    assert cli.axes[0].values == (16,) and len(cli.tasks) == 1 * 2 * 1 * 3
    # a single run ignores the block
    with_block = gs.run(gs.load_scenario(tmp_path / "swept.yaml")).summary
    plain = gs.run(gs.load_scenario(MMC, sets=["horizon.duration=2min", "horizon.warmup=0"]))
    assert with_block == plain.summary


def test_axis_syntax_and_keys() -> None:
    axis = parse_axis("demand.growth={law: exponential, rate_per_month: 0.1},{law: none}")
    assert axis.values == ({"law": "exponential", "rate_per_month": 0.1}, {"law": "none"})
    assert parse_axis("horizon.duration=2min, 1h").values == ("2min", "1h")
    assert parse_axis("a.b=1,'x,y'").values == (1, "x,y")
    for bad in ("no_equals", "seed=1,2", "a.b=1,1", "=1"):
        with pytest.raises(ValueError):
            parse_axis(bad)
    plan = plan_sweep(
        MMC, [parse_axis("description=a/b=c,d")], sets=["horizon.duration=1min", "horizon.warmup=0"]
    )
    assert [t.folder for t in plan.tasks] == [
        "description=a%2Fb%3Dc/seed=1",
        "description=d/seed=1",
    ]
    assert len({t.key for t in plan.tasks}) == 2


def test_summary_is_students_t_interval() -> None:
    values = [1.0, 2.0, 4.0]
    runs = pd.DataFrame(
        {
            "point": 0,
            "x": 5,
            "status": ["ok", "ok", "ok", "failed"],
            "requests_served": [*values, None],
        }
    )
    for kpi in ("sla_attainment",):
        runs[kpi] = None
    summary = summarize(runs, ["x"])
    assert list(summary["kpi"]) == ["requests_served"]
    row = summary.iloc[0]
    half = stats.t.ppf(0.975, 2) * stats.tstd(values) / math.sqrt(3)
    assert row["n"] == 3 and row["mean"] == pytest.approx(7 / 3)
    assert row["ci95_high"] - row["mean"] == pytest.approx(half)
