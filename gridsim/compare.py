"""Comparing runs: a KPI table (one row per KPI, one column per run, differences against the
first run) and overlaid figures. ``gridsim compare RUN_DIR RUN_DIR ... --out DIR``."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gridsim import economics
from gridsim.output import read_run
from gridsim.report.html import kpis
from gridsim.report.style import DPI, PARTS, new_figure
from gridsim.run import Result


def run_kpis(result: Result) -> dict[str, float | None]:
    """Numeric KPIs of one run: the headline figures, then per class."""
    k = kpis(result)
    shortfall = k.pop("shortfall_at")
    out: dict[str, float | None] = {key: _float(v) for key, v in k.items()}
    if shortfall:
        start = result.scenario.horizon.start
        out["shortfall_days_from_start"] = float(
            (dt.date.fromisoformat(str(shortfall)[:10]) - start).days
        )
    for name, block in result.summary.get("by_class", {}).items():
        out[f"{name}: sla_attainment"] = _float(block.get("sla_attainment"))
        out[f"{name}: latency_p95_s"] = _float((block.get("latency_s") or {}).get("p95"))
        out[f"{name}: ttft_p95_s"] = _float((block.get("ttft_s") or {}).get("p95"))
    return out


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Unique, short column labels: the folder names (with their parent where they clash)."""
    names = [Path(d).name for d in run_dirs]
    if len(set(names)) < len(names):
        names = [f"{Path(d).parent.name}/{Path(d).name}" for d in run_dirs]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def kpi_table(results: list[Result], labels: list[str]) -> pd.DataFrame:
    """One row per KPI, one column per run, then for each later run its difference from the
    first, absolute (``<run> - <first>``) and relative (``<run> vs <first> (%)``)."""
    per_run = [run_kpis(r) for r in results]
    keys = list(dict.fromkeys(k for d in per_run for k in d))
    table = pd.DataFrame(
        {lab: [d.get(k) for k in keys] for lab, d in zip(labels, per_run, strict=True)},
        index=pd.Index(keys, name="kpi"),
        dtype=float,
    )
    first = labels[0]
    base = table[first]
    for lab in labels[1:]:
        diff = table[lab] - base
        table[f"{lab} - {first}"] = diff
        table[f"{lab} vs {first} (%)"] = 100.0 * diff / base.where(base != 0)
    return table


def compare_runs(run_dirs: list[Path], out_dir: Path) -> pd.DataFrame:
    """Read the runs, write ``kpis.csv`` and comparison figures to ``out_dir``; return the
    KPI table."""
    if len(run_dirs) < 2:
        raise ValueError("give at least two run folders to compare")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    results = [read_run(Path(d)) for d in run_dirs]
    labels = run_labels([Path(d) for d in run_dirs])
    table = kpi_table(results, labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "kpis.csv")
    write_comparison_figures(results, labels, out_dir)
    return table


COMPARE_FILES = frozenset(
    {"kpis.csv", "compare_latency.png", "compare_utilization.png", "compare_cost_energy.png"}
)


def _check_out_dir(out_dir: Path) -> None:
    """A comparison replaces only an earlier comparison's files, never anything else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file; choose a folder with --out")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in COMPARE_FILES)
        if foreign:
            listing = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise ValueError(
                f"{out_dir} holds files a comparison does not write ({listing}); "
                "choose an empty or new folder with --out"
            )


def format_table(df: pd.DataFrame) -> str:
    """The KPI table as aligned text for a terminal."""
    cols = [str(c) for c in df.columns]
    rows = [
        [str(i), *(_cell(v, str(c)) for c, v in zip(cols, r, strict=True))]
        for i, r in zip(df.index, df.itertuples(index=False), strict=True)
    ]
    head = [str(df.index.name or ""), *cols]
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(head, widths, strict=True))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append(
            "  ".join(
                x.ljust(w) if i == 0 else x.rjust(w)
                for i, (x, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


# --- figures -------------------------------------------------------------------------------------


def write_comparison_figures(results: list[Result], labels: list[str], out_dir: Path) -> list[Path]:
    """Overlaid figures, one PNG each: latency and SLA by class, utilisation per node, cost,
    energy and carbon per run."""
    written = []
    for name, fig in (
        ("compare_latency", _latency(results, labels)),
        ("compare_utilization", _utilization(results, labels)),
        ("compare_cost_energy", _cost_energy(results, labels)),
    ):
        if fig is not None:
            path = Path(out_dir) / f"{name}.png"
            fig.savefig(path, dpi=DPI)
            written.append(path)
    return written


def _latency(results: list[Result], labels: list[str]) -> Figure | None:
    classes = list(dict.fromkeys(c for r in results for c in r.summary.get("by_class", {})))
    if not classes:
        return None
    fig = new_figure(11, 4.6)
    ax_lat, ax_sla = fig.subplots(1, 2)
    pos = np.arange(len(classes))
    width = 0.8 / len(results)
    for i, (r, lab) in enumerate(zip(results, labels, strict=True)):
        by = r.summary.get("by_class", {})
        x = pos - 0.4 + width * (i + 0.5)
        p95 = [((by.get(c) or {}).get("latency_s") or {}).get("p95") for c in classes]
        p50 = [((by.get(c) or {}).get("latency_s") or {}).get("p50") for c in classes]
        sla = [(by.get(c) or {}).get("sla_attainment") for c in classes]
        bars = ax_lat.bar(x, _arr(p95), width, label=f"{lab} p95")
        ax_lat.scatter(
            x, _arr(p50), marker="o", color="k", s=14, zorder=3, label="p50" if i == 0 else None
        )
        ax_sla.bar(x, 100 * _arr(sla), width, label=lab, color=bars.patches[0].get_facecolor())
    slo = {c.name: c.slo.e2e for c in results[0].scenario.demand.classes}
    for j, c in enumerate(classes):
        if slo.get(c) is not None:
            ax_lat.hlines(
                slo[c],
                j - 0.45,
                j + 0.45,
                colors="tab:red",
                lw=2,
                label="SLO (end to end)" if j == 0 else None,
            )
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("end-to-end latency (s, log scale)")
    ax_lat.set_title("Latency p95 (bars) and p50 (dots) by class")
    ax_sla.axhline(95, color="tab:red", lw=1.2, ls="--", label="95 % target")
    low = min(90.0, float(np.nanmin(_sla_values(results, classes)) * 100) - 2)
    ax_sla.set_ylim(low, 100 + (100 - low) * 0.25)
    ax_sla.set_ylabel("SLA attainment (%)")
    ax_sla.set_title("SLA attainment by class")
    for ax in (ax_lat, ax_sla):
        ax.set_xticks(pos, classes)
        ax.grid(alpha=0.3, axis="y")
    ax_lat.legend(fontsize="small", loc="upper left", ncol=2)
    ax_sla.legend(fontsize="small", loc="upper center", ncol=3)
    return fig


def _utilization(results: list[Result], labels: list[str]) -> Figure | None:
    nodes = list(dict.fromkeys(n for r in results for n in r.summary.get("by_node", {})))
    if not nodes:
        return None
    fig = new_figure(10, max(3.5, 1.5 + 0.32 * len(nodes)))
    ax = fig.add_subplot()
    pos = np.arange(len(nodes))
    height = 0.8 / len(results)
    for i, (r, lab) in enumerate(zip(results, labels, strict=True)):
        by = r.summary.get("by_node", {})
        util = [((by.get(n) or {}).get("utilization") or {}).get("mean") for n in nodes]
        ax.barh(pos - 0.4 + height * (i + 0.5), 100 * _arr(util), height, label=lab)
    ax.axvline(90, color="tab:red", ls="--", lw=1.2, label="saturated (90 %)")
    ax.set_yticks(pos, nodes, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 105)
    ax.set_xlabel("mean utilisation (%)")
    ax.set_title("Utilisation per node")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def _cost_energy(results: list[Result], labels: list[str]) -> Figure:
    fig = new_figure(11, 4.2)
    ax_cost, ax_energy, ax_carbon = fig.subplots(1, 3)
    pos = np.arange(len(results))
    bottom = np.zeros(len(results))
    totals = [economics.economics_by(r, "node_kind") for r in results]
    scale = np.array([economics.national_per_day(r) for r in results])
    for col, name, colour in PARTS:
        vals = np.array([t[col].sum() for t in totals]) * scale / 1e6
        if vals.any():
            ax_cost.bar(pos, vals, 0.6, bottom=bottom, label=name, color=colour)
            bottom += vals
    revenue = np.array([t["revenue_cny"].sum() for t in totals]) * scale / 1e6
    ax_cost.scatter(pos, revenue, marker="_", s=900, c="k", lw=2, label="revenue", zorder=3)
    energy = np.array([t["energy_kwh"].sum() for t in totals]) * scale / 1e3
    carbon = np.array([t["carbon_kg"].sum() for t in totals]) * scale / 1e3
    ax_energy.bar(pos, energy, 0.6, color="tab:olive")
    ax_carbon.bar(pos, carbon, 0.6, color="0.4")
    for ax, title, unit in (
        (ax_cost, "Cost and revenue", "million CNY/day"),
        (ax_energy, "Energy", "MWh/day"),
        (ax_carbon, "Carbon", "t CO₂/day"),
    ):
        ax.set_xticks(pos, [_short(lab) for lab in labels], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
    ax_cost.legend(fontsize="small", markerscale=0.4)
    fig.suptitle("Per run, national equivalent per day")
    return fig


# --- helpers ---------------------------------------------------------------------------------


def _float(v: Any) -> float | None:
    if v is None or isinstance(v, str):
        return None
    x = float(v)
    return x if math.isfinite(x) else None


def _arr(values: list[Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _sla_values(results: list[Result], classes: list[str]) -> np.ndarray[Any, Any]:
    vals = [
        (r.summary.get("by_class", {}).get(c) or {}).get("sla_attainment")
        for r in results
        for c in classes
    ]
    arr = _arr(vals)
    return arr if np.isfinite(arr).any() else np.array([1.0])


def _short(label: str, n: int = 28) -> str:
    return label if len(label) <= n else "…" + label[-(n - 1) :]


def _cell(v: Any, column: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    x = float(v)
    if column.endswith("(%)"):
        return f"{x:+.1f} %"
    if x.is_integer() or abs(x) >= 1000:
        return f"{x:,.0f}"
    digits = max(0, 3 - math.floor(math.log10(abs(x))))
    return f"{x:.{digits}f}"
