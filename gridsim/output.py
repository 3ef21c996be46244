"""Writing a run's folder, atomically: a temporary folder renamed into place at the end.

Contents: summary.json, timeseries.parquet (tidy), flows.parquet (served by class, region and
pool), pools.parquet (pool attributes), requests.parquet (when asked for),
scenario.resolved.yaml (re-runnable as is), manifest.json, and (``outputs.figures``)
figures/*.png and a self-contained report.html. Nothing is left half-written:
on any error the temporary folder is removed and an existing run folder is untouched.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from gridsim.run import Result
from gridsim.scenario.resolved import dump_resolved


def default_out_dir(result: Result, root: Path = Path("results")) -> Path:
    """A new ``results/<scenario>/<run-id>``: UTC time, seed and a hash of the resolved
    scenario, so runs never collide and the folder name says what produced it."""
    digest = result.manifest.get("inputs_sha256", {}).get("scenario.resolved.yaml", "")[:8]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    base = root / result.scenario.name / f"{stamp}-seed{result.summary['seed']}-{digest}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def write_run(result: Result, out_dir: Path, overwrite: bool = False) -> Path:
    """Write ``result`` to ``out_dir``; refuse to replace an earlier run unless ``overwrite``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds a run; pass --overwrite to replace it, or choose --out"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _dump_json(tmp / "summary.json", result.summary)
        result.timeseries.to_parquet(tmp / "timeseries.parquet", index=False)
        result.flows.to_parquet(tmp / "flows.parquet", index=False)
        result.pools.to_parquet(tmp / "pools.parquet", index=False)
        if result.scenario.outputs.requests:
            result.requests.to_parquet(tmp / "requests.parquet", index=False)
        (tmp / "scenario.resolved.yaml").write_text(dump_resolved(result.scenario), "utf-8")
        _dump_json(tmp / "manifest.json", result.manifest)
        if result.scenario.outputs.figures:
            from gridsim.report import write_figures, write_report

            figures = write_figures(result, tmp / "figures")
            write_report(result, tmp / "report.html", figures)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a run folder is not
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_run(run_dir: Path) -> Result:
    """A run folder back as a Result (for reports and comparisons)."""
    from gridsim.scenario import load_scenario

    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a gridsim run folder (no summary.json)")
    requests = run_dir / "requests.parquet"
    return Result(
        scenario=load_scenario(run_dir / "scenario.resolved.yaml"),
        summary=json.loads((run_dir / "summary.json").read_text("utf-8")),
        timeseries=pd.read_parquet(run_dir / "timeseries.parquet"),
        requests=pd.read_parquet(requests) if requests.exists() else pd.DataFrame(),
        flows=pd.read_parquet(run_dir / "flows.parquet"),
        pools=pd.read_parquet(run_dir / "pools.parquet"),
        manifest=json.loads((run_dir / "manifest.json").read_text("utf-8")),
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n", "utf-8")
