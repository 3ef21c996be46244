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
    draws: Annotated[
        int | None,
        typer.Option(
            "--draws",
            min=1,
            help="Also run N draws of the scenario's uncertainty: block (a Monte Carlo) into "
            "<run folder>/draws and report P10/P50/P90 bands; --out to an earlier such run "
            "resumes its draws",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="--draws: local worker processes (default: one per CPU)"
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="--draws: use a running Dask cluster: tcp://host:port"),
    ] = None,
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
    mc = _plan_draws(
        file, scenario, set_, seed, chosen, sc, draws, workers, scheduler, out_dir, overwrite
    )
    if mc is not None and mc.resume_dir is not None:  # its central run is done: the draws go on
        _run_draws(mc, mc.resume_dir, None)
        return
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
    _print_run_summary(sc.name, result.summary)
    out.print(f"results in {target} ({result.manifest['wall_time_s']} s)")
    if (target / "report.html").exists():
        out.print(f"report: {target / 'report.html'}")
    if mc is not None:
        _run_draws(mc, target, result)


def _plan_draws(
    file: Path,
    scenario: str | None,
    sets: list[str] | None,
    seed: int | None,
    fidelity: str,
    sc: Any,
    draws: int | None,
    workers: int | None,
    scheduler: str | None,
    out_dir: Path | None,
    overwrite: bool,
) -> Any:
    """``run --draws``: every draw planned and validated before anything runs (exit 2)."""
    if draws is None and workers is None and scheduler is None:
        return None  # a plain run does not import the Monte Carlo (nor Dask)
    from gridsim.montecarlo_cli import prepare

    names = [n.strip() for n in scenario.split(",") if n.strip()] if scenario else []
    return prepare(
        file, names, sets or [], seed, fidelity, sc, draws, workers, scheduler, out_dir, overwrite
    )


def _run_draws(mc: Any, run_dir: Path, result: Any) -> None:
    from gridsim.montecarlo_cli import run_and_report

    run_and_report(mc, run_dir, result)


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


def _print_run_summary(name: str, summary: dict[str, Any]) -> None:
    """What a run came to: where its requests went, then the registry's headline KPIs (names,
    units and scaling from ``gridsim.kpis``), one per line."""
    from gridsim import kpis

    req = summary.get("requests") or {}
    terms = ["served", "dropped", "abandoned", *(["lost"] if req.get("lost") else []), "in_flight"]
    counts = {t: kpis.format_value(kpis.REGISTRY[f"requests_{t}"], req.get(t)) for t in terms}
    parts = ", ".join(f"{text.removesuffix(' requests')} {t}" for t, text in counts.items())
    arrived = kpis.format_value(kpis.REGISTRY["requests_arrived"], req.get("arrived"))
    out.print(
        f"{name}: {arrived} arrived: {parts.replace('in_flight', 'in flight')}",
        markup=False,
        highlight=False,
    )
    for warning in summary.get("engine_warnings") or []:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    rows = [
        (n, kpis.format_value(kpis.REGISTRY[n], kpis.value(summary, n)))
        for n in kpis.HEADLINE
        if n != "requests_served" and kpis.value(summary, n) is not None
    ]
    width = max((len(n) for n, _ in rows), default=0)
    for n, text in rows:
        out.print(f"  {n.ljust(width)}  {text}", markup=False, highlight=False)


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (the first is the reference)")],
    labels: Annotated[
        list[str] | None,
        typer.Option(
            "--label", help="A column label per run, in the order of the runs (repeat it)"
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for compare.html, compare.csv and the figures (new, empty, or an "
            "earlier comparison); without it the table is only printed",
        ),
    ] = None,
) -> None:
    """Compare runs: a KPI table with each change marked better or worse, and with --out an
    HTML page, a CSV and overlaid figures."""
    from gridsim.compare import compare_runs, format_table

    if len(runs) < 2:
        err.print("error: give at least two run folders to compare")
        raise typer.Exit(2)
    if labels and len(labels) != len(runs):
        err.print(
            f"error: {len(labels)} --label for {len(runs)} runs; give one --label per run, "
            "in the order of the runs"
        )
        raise typer.Exit(2)
    table = guard(lambda: compare_runs(runs, out_dir, labels))
    sys.stdout.write(format_table(table) + "\n")
    if out_dir is not None:
        out.print(f"compare.html, compare.csv and figures in {out_dir}", markup=False)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="A gridsim run folder")],
    fmt: Annotated[str, typer.Option("--format", help="csv (a folder of tables) | xlsx")] = "csv",
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Where to write (default RUN_DIR/export-csv/ or RUN_DIR/export.xlsx)"
        ),
    ] = None,
) -> None:
    """Export a run for spreadsheets: KPIs with units and definitions, the tables by class,
    region, node and pool, the capacity gap, pools and the hourly time series."""
    from gridsim.export import FORMATS, export_run

    if fmt not in FORMATS:
        err.print(f"error: --format {fmt}: choose {' or '.join(FORMATS)}")
        raise typer.Exit(2)
    written = guard(lambda: export_run(run_dir, fmt, out_path))
    out.print(f"wrote {written}", markup=False, highlight=False)


def _version(show: bool) -> None:
    if show:
        from gridsim import __version__

        sys.stdout.write(f"gridsim {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print gridsim's version and exit"
        ),
    ] = False,
) -> None:
    """Simulate a national computing grid: capacity, latency, cost, energy and carbon."""


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
    kind: Annotated[
        str, typer.Argument(help="accelerators | models | sites | fleet")
    ] = "accelerators",
    site_kind: Annotated[
        str | None,
        typer.Option("--kind", help="sites only: province | cluster | supercomputer | ai_centre"),
    ] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table")] = False,
) -> None:
    """Print a packaged catalogue as a table."""
    from gridsim.catalog import CATALOG_KINDS, builtin_catalog

    if kind == "fleet":  # the inventory has its own shape: cards per period, shares per use
        from gridsim.fleet import inventory_table

        table = inventory_table()
    elif kind not in CATALOG_KINDS:
        choices = ", ".join((*CATALOG_KINDS, "fleet"))
        err.print(f"error: unknown catalogue {kind!r}; choose from {choices}")
        raise typer.Exit(2)
    else:
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
        Path | None,
        typer.Option("--figure", help="Where to save the map (default <name>-topology.png)"),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the summary.json topology block only (a map only with --figure)"
        ),
    ] = False,
) -> None:
    """The policy latency targets per region (1 ms in a city, 5 ms to a node, 20 ms between
    hubs) with the regions that miss each, and a map figure."""
    from gridsim.demand import region_weights
    from gridsim.latency_targets import hub_pairs, target_report, target_table
    from gridsim.report.maps import plot_topology
    from gridsim.topology import build_topology, check_reachability

    if figure is not None:
        _check_figure_path(figure)
    sc = _load(file, scenario, set_)
    problems = check_reachability(sc)
    if problems:
        err.print(str(ScenarioError(problems)), markup=False, highlight=False)
        raise typer.Exit(2)
    topo = build_topology(sc)
    if as_json:
        sys.stdout.write(json.dumps(target_report(topo), indent=2) + "\n")
    else:
        table = target_table(topo)
        title = (
            f"{sc.name}: one-way latency (ms) from each region against the policy targets "
            f"(a city: within {sc.network.metro_km:g} km)"
        )
        _print_frame(_target_frame(table), title=title)
        for line in _target_lines(table, hub_pairs(topo)):
            out.print(line, markup=False, highlight=False)
    if as_json and figure is None:
        return
    path = figure or Path(f"{sc.name}-topology.png")
    weights = region_weights(sc, sc.resolved_catalog)
    shares = dict(zip(topo.region_ids, weights, strict=True))
    guard(lambda: plot_topology(topo, path, region_shares=shares))
    (err if as_json else out).print(f"map saved to {path}", markup=False, highlight=False)


def _ms(value: Any) -> str:
    """A one-way latency for the tables: 0.100, or a dash when there is none (cut off)."""
    return "—" if value is None or value != value or value == float("inf") else f"{value:.3f}"


def _target_frame(table: Any) -> Any:
    """The per-region target table as people read it: ms to three decimals, yes / MISS / —."""
    import pandas as pd

    def flag(v: Any) -> str:
        return "—" if v is None or v != v else ("yes" if v else "MISS")

    return pd.DataFrame(
        {
            "region": table["region"],
            "nearest node": table["nearest_node"].fillna("—"),
            "ms": table["nearest_ms"].map(_ms),
            "5 ms": table["meets_region"].map(flag),
            "node in city": table["city_node"].fillna("—"),
            "city ms": table["city_ms"].map(_ms),
            "1 ms": table["meets_city"].map(flag),
            "nearest cluster": table["hub_cluster"].fillna("—"),
            "cluster ms": table["hub_cluster_ms"].map(_ms),
            "20 ms": table["meets_hub"].map(flag),
        }
    )


def _target_lines(table: Any, pairs: Any) -> list[str]:
    """One line per target: how many regions meet it and which miss it, with their ms."""

    def missing(rows: Any, col: str) -> str:
        return ", ".join(
            f"{r} ({_ms(v)} ms)" for r, v in zip(rows["region"], rows[col], strict=True)
        )

    n = len(table)
    has_city = table["meets_city"].notna()
    city_miss = table[has_city & (table["meets_city"] == False)]  # noqa: E712 (object column)
    no_city = ", ".join(table.loc[~has_city, "region"]) or "none"
    region_miss = table[~table["meets_region"].astype(bool)]
    hub_far = table[~(table["hub_cluster_ms"] <= 20.0)]
    pair_miss = pairs[~pairs["meets_hub"]]
    lines = [
        f"1 ms within a city: {int(has_city.sum()) - len(city_miss)} of {int(has_city.sum())} "
        f"regions with a node in their city meet it; missed by: "
        f"{missing(city_miss, 'city_ms') or 'none'}. No node in the city (not checked): {no_city}.",
        f"5 ms from a region to its nearest node: {n - len(region_miss)} of {n} regions meet it;"
        f" missed by: {missing(region_miss, 'nearest_ms') or 'none'}.",
    ]
    if pairs.empty:
        hubs = "no two national clusters of different hubs in the graph, so no pair to check"
    else:
        slowest = pairs.iloc[0]
        over = ", ".join(
            f"{a}-{b} ({_ms(v)} ms)"
            for a, b, v in zip(pair_miss["a"], pair_miss["b"], pair_miss["latency_ms"], strict=True)
        )
        hubs = (
            f"{len(pairs) - len(pair_miss)} of {len(pairs)} cluster pairs across hubs within it "
            f"(slowest {slowest['a']}-{slowest['b']}, {_ms(slowest['latency_ms'])} ms); "
            f"pairs over it: {over or 'none'}"
        )
    lines.append(
        f"20 ms between hubs: {hubs}. Regions reaching a national cluster within 20 ms: "
        f"{n - len(hub_far)} of {n}; missed by: {missing(hub_far, 'hub_cluster_ms') or 'none'}. "
        f"Regions meeting it (both): {int(table['meets_hub'].sum())} of {n}."
    )
    return lines


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

    for name in ("gridsim.sweep_cli", "gridsim.fit_cli", "gridsim.serving_cli", "gridsim.plan_cli"):
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
