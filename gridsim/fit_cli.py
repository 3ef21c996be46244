"""``gridsim fit-trace``: fit a demand class to an LLM serving trace and print it as YAML.

Registered by ``gridsim.cli._register_extensions``; the logic lives in ``gridsim.fit``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer

FORMATS = ("auto", "azure", "mooncake")


def register(app: typer.Typer) -> None:
    """Add the ``fit-trace`` command to the gridsim CLI."""
    app.command("fit-trace")(fit_trace_command)


def fit_trace_command(
    trace: Annotated[Path, typer.Argument(help="Azure CSV or Mooncake JSONL trace file")],
    format: Annotated[
        str, typer.Option("--format", help="auto (by suffix) | azure | mooncake")
    ] = "auto",
    name: Annotated[
        str | None, typer.Option("--name", help="Class name (default: from the file name)")
    ] = None,
    window: Annotated[
        str, typer.Option("--window", help="Count window of the dispersion index, e.g. 1s, 10s")
    ] = "10s",
    empirical: Annotated[
        bool,
        typer.Option("--empirical", help="Lengths resampled from the trace, not lognormal"),
    ] = False,
    cache_blocks: Annotated[
        int | None,
        typer.Option(
            "--cache-blocks",
            min=1,
            help="Capacity of an LRU prefix cache, in blocks (512 tokens each in Mooncake "
            "traces), for the cache-hit share (default: unbounded)",
        ),
    ] = None,
) -> None:
    """Fit a demand class to a trace: token lengths (lognormal: mean and sigma of log),
    request rate, burstiness (index of dispersion), for traces of a day or more the diurnal
    shape and, for traces with block hashes (Mooncake), the prefix-cache hit share. Prints the
    class as YAML to paste under demand.classes."""
    from gridsim.console import guard, out
    from gridsim.demand.traces import TraceFormat
    from gridsim.fit import class_yaml, fit
    from gridsim.scenario.units import parse_duration

    def build() -> str:
        if format not in FORMATS:
            raise ValueError(f"unknown format {format!r}; choose from {', '.join(FORMATS)}")
        if name is not None:
            from gridsim.fit import default_name

            if default_name(name) != name:
                raise ValueError(
                    f"class name {name!r} is not a valid id: use letters, digits, _ . - "
                    f"(e.g. {default_name(name)!r})"
                )
        window_s = parse_duration(window)
        if not trace.is_file():
            raise FileNotFoundError(f"trace file {trace} not found")
        try:
            result = fit(trace, cast(TraceFormat, format), window_s, cache_blocks)
        except ValueError as exc:
            hint = "" if format == "auto" else " (or try --format auto)"
            raise ValueError(f"cannot fit {trace} (format {format}): {exc}{hint}") from None
        return class_yaml(result, name, empirical)

    text = guard(build)
    out.print(text, markup=False, highlight=False, end="")
