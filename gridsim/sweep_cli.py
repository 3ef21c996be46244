"""``gridsim sweep`` and ``gridsim regress`` (picked up by ``gridsim.cli``), with what they
show: the ``--axis`` syntax and the sweep's terminal table (its figure, ``sweep.png``, is
drawn by ``gridsim.report.figures.plot_sweep``)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import pandas as pd

    from gridsim.sweep import Axis, Plan, SweepResult

SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a value for every run: dotted.path=value (YAML)"),
]
ScenarioOpt = Annotated[
    str | None,
    typer.Option("--scenario", help="Apply named overrides from the file, comma separated: A,B"),
]
MAX_FAILURES_SHOWN = 10
MAX_MOVED_SHOWN = 60


def register(app: typer.Typer) -> None:
    """Add the commands to the ``gridsim`` app (called by ``gridsim.cli``)."""
    app.command("sweep")(sweep_command)
    app.command("regress")(regress_command)


# --- gridsim sweep ---------------------------------------------------------------------


def sweep_command(
    file: Annotated[Path, typer.Argument(help="Scenario file")],
    axis: Annotated[
        list[str] | None,
        typer.Option(
            "--axis",
            help="Swept values: dotted.path=v1,v2,... (YAML values, as in --set); repeat for "
            "more axes (a full grid). Adds to or overrides the file's sweep.axes",
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            "--seeds", min=1, help="Seeds per point: seed, seed+1, ... (default sweep.seeds or 1)"
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Local worker processes (default: one per CPU)"),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Use a running Dask cluster: tcp://host:port"),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Sweep folder (default results/<scenario>/sweep-<axes>-<hash>)"),
    ] = None,
    set_: SetOpt = None,
    scenario: ScenarioOpt = None,
    figures: Annotated[
        bool, typer.Option("--figures", help="Write each run's figures and report (slower)")
    ] = False,
) -> None:
    """Run a scenario over a grid of values x seeds, in parallel; a re-run resumes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from gridsim.console import err, guard, out
    from gridsim.sweep import default_sweep_dir, plan_sweep, run_sweep, write_figure

    axes = guard(lambda: [parse_axis(a) for a in axis or []])
    names = [n.strip() for n in scenario.split(",") if n.strip()] if scenario else []
    plan = guard(lambda: plan_sweep(file, axes, seeds, names, set_ or [], figures))
    target = out_dir or default_sweep_dir(plan)
    points = len(plan.tasks) // len(plan.seeds)
    out.print(
        f"{plan.name}: {points} point{'s' * (points != 1)} x {len(plan.seeds)} "
        f"seed{'s' * (len(plan.seeds) != 1)} = {_runs(len(plan.tasks))} in {target}",
        highlight=False,
    )
    counts: Counter[str] = Counter()
    bar = Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
    )
    job = bar.add_task("runs", total=len(plan.tasks))

    def seen(record: dict[str, Any]) -> None:
        counts["reused" if record.get("reused") else record["status"]] += 1
        bar.advance(job)

    try:
        with bar:
            result = guard(lambda: run_sweep(plan, target, workers, scheduler, on_result=seen))
    except KeyboardInterrupt:
        err.print("interrupted while starting: finished runs are intact; run again to resume")
        raise typer.Exit(130) from None
    if not result.interrupted:
        write_figure(result, plan)
    _report(result, plan, counts)
    if result.interrupted:
        raise typer.Exit(130)
    if (result.runs["status"] == "failed").any():
        raise typer.Exit(1)


def parse_axis(arg: str) -> Axis:
    """``PATH=V1,V2,...``; each value is YAML; commas inside [], {}, () or quotes stay."""
    import yaml

    from gridsim.sweep import make_axis

    path, sep, raw = arg.partition("=")
    if not sep or not path.strip() or not raw.strip():
        raise ValueError(f"write --axis as dotted.path=v1,v2,... (got {arg!r})")
    labels = [v.strip() for v in _split_top(raw)]
    try:
        values = [yaml.safe_load(v) if v else "" for v in labels]
    except yaml.YAMLError as exc:
        raise ValueError(f"--axis {arg}: a value is not valid YAML: {exc}") from None
    return make_axis(path.strip(), values, labels)


def _split_top(text: str) -> list[str]:
    parts, cur, depth, quote = [], "", 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    return [*parts, cur]


def _report(result: SweepResult, plan: Plan, counts: Counter[str]) -> None:
    from gridsim.console import err, out

    runs = result.runs
    if not result.summary.empty:
        out.print(summary_table(result.summary, [a.path for a in plan.axes], plan.name))
    failed = runs[runs["status"] == "failed"]
    for row in failed.head(MAX_FAILURES_SHOWN).itertuples():
        err.print(f"failed: {row.folder}: {one_line(str(row.error))}", markup=False)
    if len(failed) > MAX_FAILURES_SHOWN:
        err.print(f"... and {len(failed) - MAX_FAILURES_SHOWN} more (see sweep.parquet)")
    finished = int((runs["status"] != "cancelled").sum())
    line = f"{_runs(len(runs))}: {counts['ok']} ran, {counts['reused']} already done, "
    line += f"{len(failed)} failed"
    if result.interrupted:
        err.print(
            f"interrupted: {finished} of {len(runs)} runs finished and are intact in "
            f"{result.out_dir}; run the same command again to resume",
            markup=False,
        )
    out.print(f"{line}; results in {result.out_dir}", highlight=False, markup=False)


def _runs(n: int) -> str:
    return f"{n} run{'s' * (n != 1)}"


def one_line(error: str) -> str:
    """A run's error on one line (a scenario error's problems, without its header)."""
    lines = [s.strip() for s in error.splitlines() if s.strip()]
    if len(lines) > 1 and lines[0].endswith("in scenario"):
        lines = lines[1:]
    return "; ".join(lines)


def _point_label(row: Any, axes: list[str]) -> str:
    return ", ".join(f"{a.rsplit('.', 1)[-1]}={row[a]}" for a in axes) or "all"


def summary_table(summary: pd.DataFrame, axes: list[str], title: str) -> Any:
    """A rich table: one row per headline KPI of the registry (summary.csv has them all), one
    column per axis point, 'mean ± 95 % half-width' in the KPI's unit."""
    from rich.table import Table

    from gridsim.kpis import REGISTRY, format_value
    from gridsim.sweep import headline_summary

    table = Table(title=f"{title}: mean ± 95 % CI over seeds", header_style="bold")
    table.add_column("kpi")
    points = summary.drop_duplicates("point")
    for _, row in points.iterrows():
        table.add_column(_point_label(row, axes), justify="right", overflow="fold")
    for kpi, group in headline_summary(summary).groupby("kpi", sort=False):
        entry = REGISTRY[str(kpi)]
        cells = []
        for _, row in group.iterrows():
            if row["n"] == 0:
                cells.append("")
                continue
            half = (row["ci95_high"] - row["ci95_low"]) / 2
            text = format_value(entry, row["mean"])
            cells.append(text if math.isnan(half) else f"{text} ± {format_value(entry, half)}")
        table.add_row(str(kpi), *cells)
    return table


# --- gridsim regress -------------------------------------------------------------------


def regress_command(
    scenarios: Annotated[
        list[str] | None,
        typer.Argument(help="Baselines to check, by name or file (default: all in --settings)"),
    ] = None,
    against: Annotated[
        Path, typer.Option("--against", help="Folder of golden files <name>.json")
    ] = Path("results/baselines"),
    settings: Annotated[
        Path,
        typer.Option("--settings", help="Which scenarios, overrides, seeds and tolerances"),
    ] = Path("results/baselines/regress.yaml"),
    update: Annotated[
        bool, typer.Option("--update", help="Rewrite the golden files from this run")
    ] = False,
) -> None:
    """Check baseline scenarios' KPIs against golden files; exit 1 on a regression."""
    from gridsim.console import guard, out
    from gridsim.regress import load_settings, moved_table, regress

    config = guard(lambda: load_settings(settings))
    report = guard(lambda: regress(config, against, scenarios or [], update=update))
    table = moved_table(report.checks)
    if not table.empty:
        _print_moved(table)
    for name, line in report.lines.items():
        out.print(f"{name}: {line}", highlight=False, markup=False)
    if update:
        for path in report.written:
            out.print(f"wrote {path}", highlight=False, markup=False)
    elif report.failed:
        out.print(f"REGRESSION: {report.failed} KPI(s) outside tolerance", style="bold red")
        raise typer.Exit(1)


def _print_moved(table: pd.DataFrame) -> None:
    from rich.table import Table

    from gridsim.console import out

    table = table.sort_values("verdict", key=lambda v: v != "REGRESSION", kind="stable")
    rich_table = Table(title="KPIs that moved", header_style="bold")
    for col in table.columns:
        rich_table.add_column(str(col), overflow="fold")
    for row in table.head(MAX_MOVED_SHOWN).itertuples(index=False):
        rich_table.add_row(*(_cell(v) for v in row))
    out.print(rich_table)
    if len(table) > MAX_MOVED_SHOWN:
        out.print(f"... and {len(table) - MAX_MOVED_SHOWN} more")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)
