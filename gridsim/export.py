"""A run folder for spreadsheet users (``gridsim export RUN_DIR --format csv|xlsx``).

The same tables either way: ``kpis`` (every KPI of the registry in the summary: name, value,
unit, definition), ``by_class``, ``by_region``, ``by_node``, ``by_pool`` (one row per entity,
one column per KPI), ``capacity_gap`` (when the run has one), ``pools`` and ``timeseries``
(wide: one row per hour, one column per entity and metric). csv writes a folder of
``<table>.csv``; xlsx one workbook with a sheet per table. Nothing that exists is written over:
the folder or workbook is written beside its place and moved in only when the place is free.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from gridsim import kpis
from gridsim.output import read_json as _read_json

FORMATS = ("csv", "xlsx")
ENTITY_TABLES = {"by_class": "class", "by_region": "region", "by_node": "node", "by_pool": "pool"}
HOUR_S = 3600.0
# Unit text for spreadsheets: the registry's "%" is a fraction (0.941), shown as a percentage
# only by gridsim's own formatting; a spreadsheet gets the number as it is.
UNIT_TEXT = {"%": "fraction (1 = 100 %)", "": ""}


def export_run(run_dir: Path, fmt: str, out: Path | None = None) -> Path:
    """Write the run's tables as ``fmt`` (csv: a folder, default ``RUN_DIR/export-csv``; xlsx:
    a workbook, default ``RUN_DIR/export.xlsx``); return where. ``ValueError`` for a folder
    that is not a gridsim run, an unknown format or a place that exists."""
    from gridsim.output import is_gridsim_run

    run_dir = Path(run_dir)
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose {' or '.join(FORMATS)}")
    if not is_gridsim_run(run_dir):
        raise ValueError(
            f"{run_dir} is not a gridsim run folder (no gridsim manifest.json and summary.json); "
            "give the folder gridsim run wrote"
        )
    target = (
        Path(out)
        if out is not None
        else run_dir / ("export-csv" if fmt == "csv" else "export.xlsx")
    )
    if target.exists() or target.is_symlink():
        raise ValueError(
            f"{target} exists; gridsim export never writes over anything: choose another --out "
            "or move it away"
        )
    tables = run_tables(run_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        _write_csv_folder(tables, target)
    else:
        _write_xlsx(tables, target)
    return target


def run_tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """The export's tables, by name, read from a run folder."""
    summary = _read_json(run_dir / "summary.json")
    tables: dict[str, pd.DataFrame] = {"kpis": kpi_table(summary)}
    entries = kpis.entries_for(summary)
    for block, column in ENTITY_TABLES.items():
        tables[block] = entity_table(entries, block, column)
    gap = (summary.get("capacity") or {}).get("gap")
    if isinstance(gap, list) and gap:
        tables["capacity_gap"] = pd.DataFrame(gap)
    pools = run_dir / "pools.parquet"
    tables["pools"] = pd.read_parquet(pools) if pools.is_file() else pd.DataFrame()
    series = run_dir / "timeseries.parquet"
    tidy = pd.read_parquet(series) if series.is_file() else pd.DataFrame()
    tables["timeseries"] = hourly_wide(tidy, _start(run_dir))
    return tables


def kpi_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Every KPI of the summary but the per-class, region, node and pool blocks (their own
    tables): name (an entity's figures prefixed with it), value, unit, definition."""
    rows = [
        {
            "name": e.key,
            "value": e.value,
            "unit": UNIT_TEXT.get(e.unit, e.unit),
            "definition": e.definition,
        }
        for e in kpis.entries_for(summary)
        if e.entity_kind not in ENTITY_TABLES
    ]
    # object: integers stay integers (a count of 163,980,082,006 requests, not 1.6398e11)
    return pd.DataFrame(rows, columns=["name", "value", "unit", "definition"], dtype=object)


def entity_table(entries: list[kpis.Entry], block: str, column: str) -> pd.DataFrame:
    """One row per entity of ``block``, one column per registry KPI (in registry order)."""
    rows: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e.entity_kind == block:
            rows.setdefault(e.entity_id, {column: e.entity_id})[e.name] = e.value
    order = [column, *(n for n in kpis.REGISTRY if any(n in r for r in rows.values()))]
    return pd.DataFrame(list(rows.values()), columns=order)


def hourly_wide(tidy: pd.DataFrame, start: dt.datetime | None) -> pd.DataFrame:
    """The tidy time series, one row per hour and one column per ``<kind> <id>: <metric>``.
    Metrics in seconds (``busy_slot_s``, ``capacity_slot_s``: slot-seconds in an interval) add
    up over the hour; levels (utilisation, queue length, headroom, erlangs) are averaged."""
    if tidy.empty:
        return pd.DataFrame(columns=["time_s", "time"])
    frame = tidy.assign(
        hour_s=(tidy["time_s"] // HOUR_S) * HOUR_S,
        column=tidy["entity_kind"].astype(str)
        + " "
        + tidy["entity_id"].astype(str)
        + ": "
        + tidy["metric"].astype(str),
    )
    summed = frame["metric"].astype(str).str.endswith("_s")
    parts = []
    for adds, group in frame.groupby(summed, sort=False):
        table = group.pivot_table(
            index="hour_s", columns="column", values="value", aggfunc="sum" if adds else "mean"
        )
        parts.append(table)
    wide = pd.concat(parts, axis=1).sort_index()
    wide = wide[sorted(wide.columns, key=str)]
    wide.columns.name = None
    wide.index.name = "time_s"
    wide = wide.reset_index()
    times = (
        [(start + dt.timedelta(seconds=float(s))).isoformat() for s in wide["time_s"]]
        if start is not None
        else [None] * len(wide)
    )
    wide.insert(1, "time", times)
    return wide


def _start(run_dir: Path) -> dt.datetime | None:
    """The horizon's start, from the run's resolved scenario."""
    try:
        data = yaml.safe_load((run_dir / "scenario.resolved.yaml").read_text("utf-8"))
        return dt.datetime.fromisoformat(str(data["horizon"]["start"]))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def _write_csv_folder(tables: dict[str, pd.DataFrame], target: Path) -> None:
    """Write into a temporary sibling, then rename it into place: a folder that appeared
    meanwhile is not written over (the rename fails), and a failed export leaves nothing."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, table in tables.items():
            table.to_csv(tmp / f"{name}.csv", index=False)
        os.rename(tmp, target)  # fails on an existing non-empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_xlsx(tables: dict[str, pd.DataFrame], target: Path) -> None:
    """One sheet per table, written beside the target and linked into place (a link fails
    when the target appeared meanwhile, so nothing is written over)."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".xlsx", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            for sheet, table in tables.items():
                table.to_excel(writer, sheet_name=sheet[:31], index=False)
        os.link(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
