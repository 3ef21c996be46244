"""Sweeps: axes (dotted paths, as in ``--set``) x seeds expanded into numbered runs, run on an
embedded Dask ``LocalCluster`` or an existing Dask cluster, written as Hive-style folders.

A sweep folder holds ``sweep.json`` (the plan), ``sweep.parquet`` (one row per run: run,
point, axis values, seed, status, error, wall time, and every numeric national KPI of the
registry, ``gridsim.kpis``), ``summary.csv`` (tidy: per axis
point and KPI, n, mean, sd and the 95 % Student t interval over seeds), ``sweep.png``, and
one run folder per run at ``<axis1>=<v>/<axis2>=<v>/seed=<n>/`` (what ``gridsim run`` writes,
plus ``run.json``). A run is identified by the SHA-256 of its resolved scenario text and seed
(``run.json``'s ``key``): a re-run skips runs whose ``run.json`` matches. Workers write the
run folders (atomically, with ``write_run``); on a remote cluster the sweep folder must be on
a file system the workers share, at the same path.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import logging
import math
import os
import signal
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import yaml

from gridsim import kpis
from gridsim.scenario import ScenarioError, resolve_file, validate
from gridsim.scenario.errors import Mark, Problem
from gridsim.scenario.merging import Layer, Locator, PathError, parse_path, resolve_path, set_path
from gridsim.scenario.resolved import dump_resolved
from gridsim.scenario.schema import SweepSpec


def sweep_kpis() -> tuple[str, ...]:
    """The KPI columns of sweep.parquet: the registry's numeric national KPIs, headline first
    (read at call time, so a KPI added to the registry becomes a column)."""
    names = [k.name for k in kpis.REGISTRY.values() if not k.is_pattern and k.kind == "number"]
    return tuple(kpis.ordered(names))


RESERVED = {"run", "point", "seed", "status", "error", "wall_time_s", "reused", "folder", "key"}


@dataclass(frozen=True)
class Axis:
    """A dotted path and the values it takes; ``labels`` are the values as written."""

    path: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class RunTask:
    """One run of the grid: what a worker needs (the resolved scenario text) and where it goes."""

    run: int
    point: int
    axes: tuple[tuple[str, str], ...]  # (path, label)
    seed: int
    folder: str  # relative to the sweep folder, '/'-separated
    key: str  # sha256 of the resolved scenario text and the seed
    text: str | None  # resolved scenario YAML; None when the point did not validate
    error: str | None = None


@dataclass
class Plan:
    name: str
    axes: list[Axis]
    seeds: list[int]
    tasks: list[RunTask]
    source: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepResult:
    out_dir: Path
    runs: pd.DataFrame  # as sweep.parquet
    summary: pd.DataFrame  # as summary.csv
    interrupted: bool = False


# --- planning --------------------------------------------------------------------------


def make_axis(path: str, values: Sequence[Any], labels: Sequence[str] | None = None) -> Axis:
    """An axis; ``labels`` (folder names) default to the values written as YAML."""
    labels = list(labels) if labels is not None else [_yaml_text(v) for v in values]
    if path in RESERVED or path in kpis.REGISTRY:
        hint = "; use --seeds for seeds" if path == "seed" else ""
        raise ValueError(f"axis {path!r} clashes with a sweep.parquet column{hint}")
    try:
        parse_path(path)
    except PathError as exc:
        raise ValueError(f"axis {path!r}: {exc}") from None
    seen = [lab for lab in labels if labels.count(lab) > 1]
    if seen:
        raise ValueError(f"axis {path!r} lists the value {seen[0]!r} more than once")
    return Axis(path, tuple(values), tuple(labels))


def _yaml_text(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def axes_of(spec: SweepSpec | None, extra: Sequence[Axis] = ()) -> list[Axis]:
    """The scenario's ``sweep.axes``, then ``extra`` (CLI axes): same path replaces, new adds."""
    axes = {p: make_axis(p, v) for p, v in (spec.axes if spec else {}).items()}
    for axis in extra:
        axes[axis.path] = axis
    return list(axes.values())


def plan_sweep(
    file: str | Path,
    axes: Sequence[Axis] = (),
    seeds: int | None = None,
    scenarios: Sequence[str] = (),
    sets: Sequence[str] = (),
    figures: bool = False,
) -> Plan:
    """Expand the grid: every combination of axis values (the first axis slowest) x seeds
    ``seed, seed+1, ...``. The base scenario must validate (else ``ScenarioError``); a point
    that does not validate becomes failed runs. Per-run figures are off unless ``figures``."""
    sets = [*([] if figures else ["outputs.figures=false"]), *sets]
    base = resolve_file(Path(file), scenarios, sets)
    scenario = validate(copy.deepcopy(base.data), base.locator)
    all_axes = axes_of(scenario.sweep, axes)
    n_seeds = seeds if seeds is not None else (scenario.sweep.seeds if scenario.sweep else 1)
    if n_seeds < 1:
        raise ValueError(f"--seeds must be at least 1 (got {n_seeds})")
    seed_list = [scenario.seed + i for i in range(n_seeds)]
    tasks: list[RunTask] = []
    grid = itertools.product(*(zip(a.values, a.labels, strict=True) for a in all_axes))
    for point, combo in enumerate(grid):
        data = copy.deepcopy(base.data)
        data.pop("sweep", None)  # a run's identity does not depend on the sweep around it
        locator = Locator(list(base.locator.layers))
        try:
            for axis, (value, label) in zip(all_axes, combo, strict=True):
                _apply(data, locator, axis.path, value, label)
            point_scenario, error = validate(data, locator), None
        except Exception as exc:  # any problem with this point is recorded, not fatal
            point_scenario, error = None, _describe(exc)
        labels = tuple((a.path, lab) for a, (_, lab) in zip(all_axes, combo, strict=True))
        for seed in seed_list:
            text = None
            if point_scenario is not None:
                text = dump_resolved(point_scenario.model_copy(update={"seed": seed}))
            key = hashlib.sha256(f"{text or error}\nseed={seed}".encode()).hexdigest()
            folder = "/".join([*(f"{_seg(p)}={_seg(v)}" for p, v in labels), f"seed={seed}"])
            tasks.append(RunTask(len(tasks), point, labels, seed, folder, key, text, error))
    source = {
        "file": str(Path(file).resolve()),
        "scenarios": list(scenarios),
        "sets": list(sets),
        "axes": {a.path: list(a.labels) for a in all_axes},
        "seeds": seed_list,
    }
    return Plan(scenario.name, all_axes, seed_list, tasks, source)


def _apply(data: dict[str, Any], locator: Locator, path: str, value: Any, label: str) -> None:
    mark = Mark(f"--axis {path}={label}")
    try:
        target = resolve_path(data, parse_path(path))
        set_path(data, target, value)
    except PathError as exc:
        raise ScenarioError([Problem((), str(exc), mark)]) from None
    locator.add(Layer({target: mark}, {target: mark}))


def _seg(text: str) -> str:
    """A Hive path segment: URI-escaped (pyarrow decodes it), at most ~120 characters."""
    seg = quote(text, safe="[]._-+,~()")
    if len(seg) > 120:
        seg = f"{seg[:100]}~{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    return seg


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ScenarioError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def default_sweep_dir(plan: Plan, root: Path = Path("results")) -> Path:
    """``results/<scenario>/sweep-<axes>-<hash>``: the same axes give the same folder (so a
    re-run resumes, and added values join it); other axes give another folder."""
    names = [str(parse_path(a.path)[-1]) for a in plan.axes]
    digest = hashlib.sha256(json.dumps([a.path for a in plan.axes]).encode()).hexdigest()[:6]
    slug = "-".join(_seg(n) for n in names)[:40] or "seeds"
    return root / plan.name / f"sweep-{slug}-{digest}"


# --- running ---------------------------------------------------------------------------


def run_one(task: RunTask, root: str) -> dict[str, Any]:
    """Run one task on a worker and write its folder; never raises (a failure is a record)."""
    from gridsim.output import write_run
    from gridsim.run import run
    from gridsim.scenario import load_scenario_text

    started = time.perf_counter()
    record = _record(task, "ok")
    try:
        target = Path(root) / task.folder
        scenario = load_scenario_text(task.text or "", f"{task.folder}/scenario.resolved.yaml")
        result = run(scenario)
        write_run(result, target, overwrite=True)
        record["kpis"] = summary_kpis(result.summary)
        record["wall_time_s"] = round(time.perf_counter() - started, 3)
        _write_atomic(target / "run.json", json.dumps(record, indent=2) + "\n")
    except Exception as exc:
        record.update(status="failed", error=_describe(exc))
        record["wall_time_s"] = round(time.perf_counter() - started, 3)
    return record


def _record(task: RunTask, status: str, error: str | None = None) -> dict[str, Any]:
    fields = {"run": task.run, "point": task.point, "axes": dict(task.axes), "seed": task.seed}
    fields |= {"folder": task.folder, "key": task.key, "status": status, "error": error}
    return fields | {"wall_time_s": None, "reused": False, "kpis": {}}


def _done(task: RunTask, root: Path) -> dict[str, Any] | None:
    """The record of a complete earlier run of exactly this task, if there is one."""
    path = root / task.folder / "run.json"
    try:
        record: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("key") != task.key or record.get("status") != "ok":
        return None
    return {**record, "run": task.run, "point": task.point, "reused": True}


@contextmanager
def _client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A client of the cluster at ``scheduler``, or of a new LocalCluster closed at the end."""
    from distributed import Client, LocalCluster

    cluster: Any = None
    client: Any = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="20s")
            client.wait_for_workers(1, timeout=60)
        else:
            with warnings.catch_warnings():  # "port 8787 in use": its HTTP server moves on
                warnings.filterwarnings("ignore", "Port .* is already in use", UserWarning)
                cluster = LocalCluster(
                    n_workers=workers,
                    processes=True,
                    threads_per_worker=1,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            client = Client(cluster)
            client.run(_ignore_ctrl_c)  # Ctrl-C is the driver's: it cancels and closes
    except (OSError, TimeoutError) as exc:
        _close(client, cluster)
        where = f"the Dask scheduler at {scheduler}" if scheduler else "a local Dask cluster"
        raise ValueError(f"cannot use {where}: {exc}") from None
    try:
        yield client
    finally:
        _close(client, cluster)


def _ignore_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _close(*things: Any) -> None:
    for thing in things:
        if thing is not None:
            thing.close()


def run_sweep(
    plan: Plan,
    out_dir: str | Path,
    workers: int | None = None,
    scheduler: str | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run the plan's unfinished tasks (on ``workers`` local processes, default one per CPU,
    or on the cluster at ``scheduler``); write sweep.json, sweep.parquet and summary.csv.
    ``on_result`` sees every run's record as it is known (reused and failed ones first).

    Ctrl-C (``KeyboardInterrupt``) while runs are going cancels what is pending, closes the
    cluster and returns with ``interrupted=True``: finished runs stay, a re-run skips them."""
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    _write_atomic(root / "sweep.json", json.dumps({"name": plan.name, **plan.source}, indent=2))
    records: dict[int, dict[str, Any]] = {}
    pending: list[RunTask] = []
    for task in plan.tasks:
        done = _done(task, root)
        if task.text is None or done is not None:
            records[task.run] = done or _record(task, "failed", task.error)
            if on_result is not None:
                on_result(records[task.run])
        else:
            pending.append(task)
    interrupted = False
    if pending:
        n = max(1, min(workers or os.cpu_count() or 1, len(pending)))
        interrupted = _execute(pending, root, n, scheduler, records, on_result)
    for task in plan.tasks:
        records.setdefault(task.run, _record(task, "cancelled"))
    runs = _runs_table(plan, [records[t.run] for t in plan.tasks])
    _write_atomic(root / "sweep.parquet", runs)
    summary = summarize(runs, [a.path for a in plan.axes])
    summary.to_csv(root / "summary.csv", index=False)
    return SweepResult(root, runs, summary, interrupted)


def _execute(
    pending: list[RunTask],
    root: Path,
    workers: int,
    scheduler: str | None,
    records: dict[int, dict[str, Any]],
    on_result: Callable[[dict[str, Any]], None] | None,
) -> bool:
    """Submit, collect as they finish; True when interrupted."""
    from distributed import as_completed

    with _client(workers, scheduler) as client:
        futures = {
            client.submit(run_one, t, str(root), key=f"gridsim-{t.run}-{t.key[:16]}", pure=False): t
            for t in pending
        }
        try:
            for future in as_completed(futures):
                task = futures[future]
                try:
                    record = future.result()
                except Exception as exc:  # the worker died, or the task could not be sent
                    record = _record(task, "failed", _describe(exc))
                records[task.run] = record
                if on_result is not None:
                    on_result(record)
        except KeyboardInterrupt:
            client.cancel([f for f in futures if f.status != "finished"])
            for future, task in futures.items():  # finished but not yet collected
                if task.run not in records and future.status == "finished":
                    records[task.run] = future.result()
            return True
    return False


def _runs_table(plan: Plan, records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for rec in records:
        row: dict[str, Any] = {"run": rec["run"], "point": rec["point"]}
        for axis in plan.axes:
            label = rec["axes"][axis.path]
            row[axis.path] = _typed(axis)[axis.labels.index(label)]
        row.update({k: rec.get(k) for k in ("seed", "status", "error", "wall_time_s", "reused")})
        row.update(folder=rec["folder"], key=rec["key"])
        row.update({name: (rec.get("kpis") or {}).get(name) for name in sweep_kpis()})
        rows.append(row)
    table = pd.DataFrame(rows)
    for name in ("wall_time_s", *sweep_kpis()):
        table[name] = pd.to_numeric(table[name], errors="coerce").astype(float)
    table["error"] = table["error"].astype(object).where(table["error"].notna(), None)
    return table


def summary_kpis(summary: dict[str, Any]) -> dict[str, float | None]:
    """The sweep's KPIs (``sweep_kpis()``) of one run's summary.json, as floats (None where
    the run has none)."""
    out: dict[str, float | None] = {}
    for name in sweep_kpis():
        value = kpis.value(summary, name)
        out[name] = float(value) if kpis.is_number(value) else None
    return out


def summarize(runs: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """Tidy: per axis point and KPI, the successful runs' count, mean, sd and 95 % Student t
    interval (``mean +- t(0.975, n-1) sd / sqrt(n)``; NaN when n < 2)."""
    from scipy import stats

    rows = []
    for point, group in runs.groupby("point", sort=True):
        ok = group[group["status"] == "ok"]
        where = {a: group[a].iloc[0] for a in axes}
        for kpi in (k for k in sweep_kpis() if k in runs.columns):
            values = ok[kpi].dropna().to_numpy(dtype=float)
            n = len(values)
            mean = float(values.mean()) if n else math.nan
            sd = float(values.std(ddof=1)) if n > 1 else math.nan
            half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n) if n > 1 else math.nan
            rows.append(
                {"point": point, **where, "kpi": kpi, "n": n, "mean": mean, "sd": sd}
                | {"ci95_low": mean - half, "ci95_high": mean + half}
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    measured = table.groupby("kpi", sort=False)["n"].transform("max") > 0
    return table[measured].reset_index(drop=True)


def _typed(axis: Axis) -> list[Any]:
    """Axis values for tables: numbers when every value is one, else the labels."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in axis.values)
    return list(axis.values) if numeric else list(axis.labels)


def _write_atomic(path: Path, content: str | pd.DataFrame) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(content, str):
        tmp.write_text(content, "utf-8")
    else:
        content.to_parquet(tmp, index=False)
    os.replace(tmp, path)


# --- reading and the one-call API ------------------------------------------------------


def read_table(sweep_dir: str | Path, table: str = "timeseries") -> pd.DataFrame:
    """One run table (``timeseries``, ``flows``, ``pools``, ``requests``) over every
    successful run of a sweep, with ``run``, the axis values and ``seed`` as columns."""
    sweep_dir = Path(sweep_dir)
    runs = pd.read_parquet(sweep_dir / "sweep.parquet")
    drop = {"status", "error", "wall_time_s", "reused", "key", *kpis.REGISTRY}
    frames = []
    for row in runs[runs["status"] == "ok"].to_dict("records"):
        path = sweep_dir / str(row["folder"]) / f"{table}.parquet"
        if path.exists():
            columns = {str(k): v for k, v in row.items() if k not in drop and k != "folder"}
            frames.append(pd.read_parquet(path).assign(**columns))
    if not frames:
        raise FileNotFoundError(f"no {table}.parquet in the successful runs of {sweep_dir}")
    return pd.concat(frames, ignore_index=True)


def sweep(
    file: str | Path,
    axes: dict[str, Sequence[Any]] | None = None,
    seeds: int | None = None,
    out: str | Path | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    scenarios: Sequence[str] = (),
    sets: Sequence[str] = (),
    figures: bool = False,
) -> SweepResult:
    """Plan and run a sweep: ``axes`` maps dotted paths to values (adding to, or replacing,
    the file's ``sweep.axes``), ``seeds`` replications. See ``gridsim sweep``."""
    extra = [make_axis(p, list(v)) for p, v in (axes or {}).items()]
    plan = plan_sweep(file, extra, seeds, scenarios, sets, figures)
    result = run_sweep(plan, Path(out) if out else default_sweep_dir(plan), workers, scheduler)
    if not result.interrupted:
        write_figure(result, plan)
    return result


def write_figure(result: SweepResult, plan: Plan) -> Path | None:
    """``sweep.png`` in the sweep folder (when the sweep has an axis): the headline KPIs the
    sweep measured (all of them would make a figure too tall to read)."""
    from gridsim.report.figures import write_sweep_figure  # matplotlib only for the figure

    return write_sweep_figure(
        headline_summary(result.summary), [a.path for a in plan.axes], plan.name, result.out_dir
    )


def headline_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows of a sweep's summary for the registry's headline KPIs, in headline order."""
    if summary.empty:
        return summary
    head = [k for k in kpis.HEADLINE if k in set(summary["kpi"])]
    rank = {k: i for i, k in enumerate(head)}
    rows = summary[summary["kpi"].isin(head)]
    return rows.sort_values("kpi", key=lambda s: s.map(rank), kind="stable").reset_index(drop=True)
