"""The ``gridsim`` command line. Bad input exits with code 2 and a message, never a traceback."""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer

from gridsim.console import err, guard, message, out
from gridsim.scenario import ScenarioError, load_scenario

app = typer.Typer(
    name="gridsim",
    help="Simulate a national computing grid: capacity, latency, cost, energy and carbon.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
T = TypeVar("T")
INTERNAL_ERROR = 70  # EX_SOFTWARE: gridsim's own fault, not the input's
LONG_RUN_S = 60.0  # runs estimated longer than this say so before they start
BUG_REPORTS = "the gridsim issue tracker (see the README)"

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a value: dotted.path=value (YAML), e.g. nodes[guian].pue=1.2"
    ),
]
ScenarioOpt = Annotated[
    str | None,
    typer.Option("--scenario", help="Apply named overrides from the file, comma separated: A,B"),
]


def _safe(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap a command: no input, file or resource problem ever ends in a Python traceback.

    Problems with the input or the machine (unreadable files, encodings, nesting too deep,
    memory) exit 2 with a message; anything else is a gridsim bug and says so, exit 70.
    """

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.ClickException):
            raise
        except KeyboardInterrupt:
            err.print("interrupted: nothing was written")
            raise typer.Exit(130) from None
        except ScenarioError as exc:
            err.print(str(exc), markup=False, highlight=False)
            raise typer.Exit(2) from None
        except RecursionError:
            err.print("error: the input is nested too deeply to read; flatten it")
            raise typer.Exit(2) from None
        except MemoryError:
            err.print("error: out of memory; shorten the horizon or coarsen the resolution")
            raise typer.Exit(2) from None
        except (OSError, UnicodeError) as exc:
            err.print(f"error: {message(exc)}", markup=False, highlight=False)
            raise typer.Exit(2) from None
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
            err.print(
                f"internal error: {type(exc).__name__}: {exc}{where}.\n"
                f"This is a bug in gridsim, not in your input. Please report it at {BUG_REPORTS}"
                " with the command line, the scenario and this message.",
                markup=False,
                highlight=False,
            )
            raise typer.Exit(INTERNAL_ERROR) from None

    return command


def _load(file: Path, scenario: str | None, sets: list[str] | None, seed: int | None = None) -> Any:
    names = [n.strip() for n in scenario.split(",") if n.strip()] if scenario else []
    return guard(lambda: load_scenario(file, names, sets or [], seed=seed))


@app.command()
def run(
    file: Path,
    scenario: ScenarioOpt = None,
    set_: SetOpt = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Override the scenario's seed")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Run folder (default results/<scenario>/...)")
    ] = None,
    fidelity: Annotated[
        str | None, typer.Option("--fidelity", help="request | flow (default: the scenario's)")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing gridsim run folder (only one gridsim wrote)")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Run even when the estimate is above the limits")
    ] = False,
) -> None:
    """Run a scenario and write its results folder."""
    from gridsim.output import claim_out_dir, default_out_dir
    from gridsim.run import fidelity_of
    from gridsim.run import run as run_scenario
    from gridsim.topology import check_reachability

    if fidelity not in (None, "auto", "request", "flow"):
        err.print(f"error: --fidelity {fidelity}: choose request, flow or auto")
        raise typer.Exit(2)
    sc = _load(file, scenario, set_, seed)
    problems = check_reachability(sc)  # what validate checks beyond the schema, before anything
    if problems:
        err.print(str(ScenarioError(problems)), markup=False, highlight=False)
        raise typer.Exit(2)
    chosen = guard(lambda: fidelity_of(sc, fidelity))
    guard(lambda: _check_size(sc, chosen, force))
    target = out_dir or default_out_dir(sc, sc.seed, chosen)
    # The output place is checked and claimed before simulating: a bad --out fails now, not
    # after the run, and no other run can write the same folder meanwhile.
    slot = guard(lambda: claim_out_dir(target, overwrite=overwrite))
    for leftover in slot.cleaned:
        err.print(f"removed {leftover}, left by a gridsim run that was killed", markup=False)
    with slot:
        try:
            result = guard(lambda: run_scenario(sc, fidelity=chosen, progress=sys.stderr.isatty()))
            target = guard(lambda: slot.write(result))
        except KeyboardInterrupt:
            err.print("interrupted: nothing was written (a run folder appears only when complete)")
            raise typer.Exit(130) from None
    s = result.summary
    req, lat = s["requests"], s["latency_s"]
    util = s.get("utilization", {}).get("mean")
    lost = f", {req['lost']:,} lost to failures" if req["lost"] else ""
    out.print(
        f"{sc.name}: {req['arrived']:,} requests arrived, {req['served']:,} served, "
        f"{req['dropped']:,} dropped, {req['abandoned']:,} abandoned{lost}, "
        f"{req['in_flight']:,} in flight"
    )
    for warning in s.get("engine_warnings") or []:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    if lat["mean"] is not None:
        out.print(
            f"latency mean {lat['mean']:.3g} s, p95 {lat['p95']:.3g} s; "
            f"SLA attainment {_pct(s['sla_attainment'])}; utilisation {_pct(util)}"
        )
    econ = s.get("economics", {})
    if econ.get("cost_cny_per_m_tokens") is not None:
        out.print(
            f"cost {econ['cost_cny_per_m_tokens']:.3g} CNY per million tokens; "
            f"national {econ.get('national_energy_kwh_per_day', 0) / 1e3:,.0f} MWh/day"
        )
    shortfall = s.get("capacity", {}).get("shortfall_at")
    if shortfall:
        out.print(f"capacity shortfall from {shortfall}")
    out.print(f"results in {target} ({result.manifest['wall_time_s']} s)")
    if (target / "report.html").exists():
        out.print(f"report: {target / 'report.html'}")


def _check_size(sc: Any, fidelity: str, force: bool) -> None:
    """Refuse, before allocating anything, a run estimated beyond the machine's limits."""
    from gridsim.estimate import check_run

    estimate = check_run(sc, fidelity, force=force)
    if force or estimate.wall_s > LONG_RUN_S:
        err.print(f"estimate: {estimate.describe()}", markup=False)


def _print_estimate(sc: Any) -> None:
    """What a run would take, and whether ``gridsim run`` would refuse it without --force."""
    from gridsim.estimate import RunTooLarge, check_run

    try:
        estimate = check_run(sc)
    except RunTooLarge as exc:
        out.print(f"  estimate: {exc.estimate.describe()}", markup=False)
        over = ", ".join(exc.exceeded)
        out.print(f"  gridsim run refuses this without --force (over the limit on {over})")
        return
    out.print(f"  estimate: {estimate.describe()}", markup=False)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (the first is the reference)")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for kpis.csv and the figures")
    ] = Path("results/compare"),
) -> None:
    """Compare runs: a KPI table with differences, and overlaid figures."""
    from gridsim.compare import compare_runs, format_table

    if len(runs) < 2:
        err.print("error: give at least two run folders to compare")
        raise typer.Exit(2)
    table = guard(lambda: compare_runs(runs, out_dir))
    sys.stdout.write(format_table(table) + "\n")
    out.print(f"table and figures in {out_dir}")


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Scenario files")]) -> None:
    """Check scenario files; report every problem with file:line:column and dotted path."""
    from gridsim.topology import check_reachability

    failed = False
    for file in files:
        try:
            scenario = load_scenario(file)
            problems = check_reachability(scenario)
            if problems:
                raise ScenarioError(problems)
        except ScenarioError as exc:
            failed = True
            err.print(f"{file}: invalid", markup=False)
            err.print(str(exc), markup=False, highlight=False)
            continue
        out.print(
            f"{file}: ok ({scenario.name}: {len(scenario.regions)} regions, "
            f"{len(scenario.nodes)} nodes, {len(scenario.demand.classes)} classes)"
        )
        _print_estimate(scenario)
    if failed:
        raise typer.Exit(2)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write")] = None,
) -> None:
    """Write the JSON Schema of scenario files (for editor completion and checks)."""
    from gridsim.scenario.schema import Scenario

    if output is not None and output.is_dir():
        err.print(f"error: {output} is a folder; give a file name, e.g. -o scenario.schema.json")
        raise typer.Exit(2)
    doc = Scenario.model_json_schema(mode="validation")
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = "gridsim scenario"
    text = json.dumps(doc, indent=2, sort_keys=False)
    if output:
        guard(lambda: output.write_text(text + "\n", encoding="utf-8"))
        out.print(f"wrote {output}")
    else:
        sys.stdout.write(text + "\n")


@app.command()
def show(
    file: Path,
    scenario: ScenarioOpt = None,
    set_: SetOpt = None,
) -> None:
    """Print the fully resolved scenario (extends, overrides and --set applied) as YAML."""
    from gridsim.scenario.resolved import dump_resolved

    sys.stdout.write(dump_resolved(_load(file, scenario, set_)))


@app.command()
def catalog(
    kind: Annotated[str, typer.Argument(help="accelerators | models | sites")] = "accelerators",
    site_kind: Annotated[
        str | None,
        typer.Option("--kind", help="sites only: province | cluster | supercomputer | ai_centre"),
    ] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table")] = False,
) -> None:
    """Print a packaged catalogue as a table."""
    from gridsim.catalog import CATALOG_KINDS, builtin_catalog

    if kind not in CATALOG_KINDS:
        err.print(f"error: unknown catalogue {kind!r}; choose from {', '.join(CATALOG_KINDS)}")
        raise typer.Exit(2)
    table = builtin_catalog().table(kind)
    if site_kind and kind == "sites":
        table = table[table["kind"] == site_kind].dropna(axis=1, how="all")
    table = table.drop(columns=[c for c in ("source",) if c in table.columns])
    if as_csv:
        sys.stdout.write(table.to_csv())
    else:
        _print_frame(table, title=f"{kind} ({len(table)})")


@app.command()
def topology(
    file: Path,
    scenario: ScenarioOpt = None,
    set_: SetOpt = None,
    figure: Annotated[
        Path | None, typer.Option("--figure", help="Where to save the map (PNG)")
    ] = None,
) -> None:
    """Latency summary against the policy targets (5 ms, 20 ms), and a map figure."""
    from gridsim.demand import region_weights
    from gridsim.report.maps import plot_topology
    from gridsim.topology import build_topology, check_reachability, latency_summary

    if figure is not None:
        _check_figure_path(figure)
    sc = _load(file, scenario, set_)
    path = figure or Path(f"{sc.name}-topology.png")
    problems = check_reachability(sc)
    if problems:
        err.print(str(ScenarioError(problems)), markup=False, highlight=False)
        raise typer.Exit(2)
    topo = build_topology(sc)
    summary = latency_summary(topo)
    _print_frame(summary, title=f"{sc.name}: one-way latency from each region to compute")
    weights = region_weights(sc, sc.resolved_catalog)
    shares = dict(zip(topo.region_ids, weights, strict=True))
    guard(lambda: plot_topology(topo, path, region_shares=shares))
    out.print(f"map saved to {path}")


def _check_figure_path(path: Path) -> None:
    """A figure file matplotlib can write, in a folder that exists: checked before the work."""
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        known = ", ".join(sorted(formats))
        err.print(f"error: --figure {path}: unknown format {suffix!r}; end the name in {known}")
        raise typer.Exit(2)
    if path.is_dir() or not path.parent.is_dir():
        err.print(f"error: --figure {path}: not a file in an existing folder")
        raise typer.Exit(2)


def _register_extensions() -> None:
    """Commands that live in their own modules (each defines ``register(app)``)."""
    import importlib

    for name in ("gridsim.sweep_cli", "gridsim.fit_cli", "gridsim.serving_cli"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(app)


def _print_frame(frame: Any, title: str) -> None:
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    index_name = frame.index.name
    if index_name:
        table.add_column(str(index_name))
    for col in frame.columns:
        table.add_column(str(col), overflow="fold")
    for idx, row in frame.iterrows():
        cells = [_fmt(v) for v in row.tolist()]
        table.add_row(*([str(idx)] if index_name else []), *cells)
    out.print(table)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _make_safe() -> None:
    """Every registered command, here and in the command modules, behind ``_safe``."""
    for info in app.registered_commands:
        if info.callback is not None and not hasattr(info.callback, "__wrapped__"):
            info.callback = _safe(info.callback)


_register_extensions()  # last: every command is defined before _make_safe wraps them
_make_safe()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
