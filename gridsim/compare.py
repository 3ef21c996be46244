"""Comparing runs: a KPI table (one row per KPI of the registry, one column per run, the
change of each later run against the first, marked better or worse by the KPI's direction) and
overlaid figures. ``gridsim compare RUN_DIR RUN_DIR ... [--label A ...] [--out DIR]``.

A change reads as a relative percentage only when both values are non-zero, of the same sign
and the change is below 1,000 %; otherwise as the absolute difference in the KPI's unit,
scaled for people (``gridsim.numbers``), with shares in percentage points (pp).
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from gridsim import economics, kpis
from gridsim.kpis import Kpi
from gridsim.numbers import MISSING, human_duration_s
from gridsim.output import read_run
from gridsim.report.style import DPI, PARTS, new_figure
from gridsim.run import Result

RELATIVE_LIMIT = 10.0  # a change of 1,000 % or more reads as an absolute difference
# Per-class rows: the headline KPIs a class has (the whole table would repeat every KPI).
CLASS_BLOCK = "by_class"
LABEL_PATHS_SHOWN = 3  # differing scenario settings named in a default label
LABEL_VALUE_CHARS = 24


def run_kpis(result: Result) -> dict[str, Any]:
    """One run's KPI values by key: the registry's national KPIs (headline first), then the
    headline KPIs per class (``by_class.chat.latency_p95_s``)."""
    entries = kpis.entries_for(result.summary)
    national = {e.key: e.value for e in entries if not e.entity_kind}
    out = {name: national[name] for name in kpis.ordered(national)}
    for e in entries:
        if e.entity_kind == CLASS_BLOCK and e.name in kpis.HEADLINE:
            out[e.key] = e.value
    return out


def kpi_of(key: str) -> Kpi:
    """The registry KPI of a table key (``by_class.chat.latency_p95_s`` -> latency_p95_s)."""
    return kpis.REGISTRY[key.rsplit(".", 1)[-1]]


# --- differences -------------------------------------------------------------------------


def change_text(kpi: Kpi, first: Any, other: Any) -> str:
    """How ``other`` differs from ``first``: "+12.3 %" when both are non-zero numbers of the
    same sign and the change is below 1,000 %; else the absolute difference in the KPI's unit
    ("+1.20 s", "-3.2 pp", "+4.00 k requests"); dates differ in time ("+3.0 d")."""
    if first is None or other is None:
        return MISSING
    if kpi.kind == "date":
        delta = _date_s(other) - _date_s(first)
        return "no change" if delta == 0 else _signed(delta, human_duration_s(abs(delta)))
    if not (kpis.is_number(first) and kpis.is_number(other)):
        return "no change" if first == other else "changed"
    a, b = float(first), float(other)
    diff = b - a
    if diff == 0:
        return "no change"
    if a != 0 and b != 0 and (a > 0) == (b > 0) and abs(diff) / abs(a) < RELATIVE_LIMIT:
        return f"{100.0 * diff / abs(a):+.1f} %"
    if kpi.unit == "%":  # a difference of shares is in percentage points, not a relative %
        return _signed(diff, f"{abs(diff) * 100:.1f} pp")
    return _signed(diff, kpis.format_value(kpi, abs(diff)))


def verdict(kpi: Kpi, first: Any, other: Any) -> str:
    """ "better" or "worse" by the KPI's direction; "" when it has none or nothing changed."""
    if kpi.higher_is_better is None or first is None or other is None:
        return ""
    if kpi.kind == "date":
        a, b = _date_s(first), _date_s(other)
    elif kpis.is_number(first) and kpis.is_number(other):
        a, b = float(first), float(other)
    else:
        return ""
    if a == b:
        return ""
    return "better" if (b > a) == kpi.higher_is_better else "worse"


def _signed(diff: float, magnitude: str) -> str:
    return f"{'+' if diff > 0 else '-'}{magnitude}"


def _date_s(text: Any) -> float:
    when = dt.datetime.fromisoformat(str(text))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


# --- the table --------------------------------------------------------------------------


def kpi_table(results: list[Result], labels: list[str]) -> pd.DataFrame:
    """One row per KPI (index ``kpi``): its unit, each run's value, then for each later run its
    change against the first (``<run> vs <first>``, text) and ``<run> verdict`` (better or
    worse by the registry's direction)."""
    per_run = [run_kpis(r) for r in results]
    keys = list(dict.fromkeys(k for d in per_run for k in d))
    first = labels[0]
    columns: dict[str, list[Any]] = {"unit": [kpi_of(k).unit for k in keys]}
    for lab, d in zip(labels, per_run, strict=True):
        columns[lab] = [d.get(k) for k in keys]
    for lab, d in zip(labels[1:], per_run[1:], strict=True):
        columns[f"{lab} vs {first}"] = [
            change_text(kpi_of(k), per_run[0].get(k), d.get(k)) for k in keys
        ]
        columns[f"{lab} verdict"] = [verdict(kpi_of(k), per_run[0].get(k), d.get(k)) for k in keys]
    return pd.DataFrame(columns, index=pd.Index(keys, name="kpi"), dtype=object)


def format_table(df: pd.DataFrame) -> str:
    """The KPI table as aligned text for a terminal: values scaled for people, each change
    with its verdict."""
    labels = _run_columns(df)
    head = ["kpi", *labels, *(c for c in df.columns if c.endswith(f" vs {labels[0]}"))]
    rows = []
    for key, row in df.iterrows():
        kpi = kpi_of(str(key))
        cells = [str(key), *(kpis.format_value(kpi, row[lab]) for lab in labels)]
        for lab in labels[1:]:
            mark = {"better": " ▲ better", "worse": " ▼ worse"}.get(row[f"{lab} verdict"], "")
            cells.append(f"{row[f'{lab} vs {labels[0]}']}{mark}")
        rows.append(cells)
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *map(line, rows)])


def _run_columns(df: pd.DataFrame) -> list[str]:
    """The runs' value columns of a KPI table (between ``unit`` and the first change)."""
    cols = [str(c) for c in df.columns]
    end = next((i for i, c in enumerate(cols) if c.endswith(" verdict") or " vs " in c), None)
    return cols[1:end] if end is not None else cols[1:]


# --- labels -------------------------------------------------------------------------------


def run_labels(run_dirs: list[Path], given: list[str] | None = None) -> list[str]:
    """Column labels a person reads: ``given`` (``--label``), else each run's scenario name
    with the settings that differ between the runs (from each ``scenario.resolved.yaml``:
    what ``--scenario`` and ``--set`` changed), e.g. ``baseline: policy.name=nearest``; made
    unique with a counter."""
    if given:
        if len(given) != len(run_dirs):
            raise ValueError(
                f"{len(given)} --label for {len(run_dirs)} runs; give one --label per run, "
                "in the order of the runs"
            )
        return _unique([str(g) for g in given])
    flat = [_flat_scenario(Path(d)) for d in run_dirs]
    names = [str(f.get("name") or Path(d).name) for d, f in zip(run_dirs, flat, strict=True)]
    labels = []
    for name, f in zip(names, flat, strict=True):
        # Runs of another scenario are told apart by its name; runs of the same scenario by
        # the settings that differ among them.
        same = [g for n, g in zip(names, flat, strict=True) if n == name]
        paths = list(dict.fromkeys(p for g in same for p in g))
        differ = [
            p
            for p in paths
            if p not in ("name", "description") and len({repr(g.get(p)) for g in same}) > 1
        ]
        parts = [f"{p}={_short_value(f.get(p))}" for p in differ[:LABEL_PATHS_SHOWN]]
        if len(differ) > LABEL_PATHS_SHOWN:
            parts.append(f"+{len(differ) - LABEL_PATHS_SHOWN} more")
        labels.append(f"{name}: {', '.join(parts)}" if parts else name)
    return _unique(labels)


def _flat_scenario(run_dir: Path) -> dict[str, Any]:
    """A run's resolved scenario as dotted paths (list items by their id or name)."""
    path = run_dir / "scenario.resolved.yaml"
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(node, list) and node and all(isinstance(x, dict) for x in node):
            for i, item in enumerate(node):
                ident = item.get("id", item.get("name", i))
                walk(item, f"{prefix}[{ident}]")
        else:
            out[prefix] = node

    walk(data if isinstance(data, dict) else {}, "")
    return out


def _short_value(value: Any) -> str:
    if isinstance(value, str):
        return value if len(value) <= LABEL_VALUE_CHARS else value[: LABEL_VALUE_CHARS - 1] + "…"
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).removesuffix("\n...\n")
    text = text.strip()
    return text if len(text) <= LABEL_VALUE_CHARS else text[: LABEL_VALUE_CHARS - 1] + "…"


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in labels:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


# --- running a comparison -----------------------------------------------------------------


def compare_runs(
    run_dirs: list[Path], out_dir: Path | None = None, labels: list[str] | None = None
) -> pd.DataFrame:
    """Read the runs and return the KPI table; with ``out_dir``, write ``compare.csv``,
    ``compare.html`` and the comparison figures there (a new or empty folder, or an earlier
    comparison's)."""
    if len(run_dirs) < 2:
        raise ValueError("give at least two run folders to compare")
    if out_dir is not None:
        _check_out_dir(Path(out_dir))
    names = run_labels([Path(d) for d in run_dirs], labels)
    results = [read_run(Path(d)) for d in run_dirs]
    table = kpi_table(results, names)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        csv_table(table).to_csv(out_dir / "compare.csv")
        figures = write_comparison_figures(results, names, out_dir)
        (out_dir / "compare.html").write_text(render_html(table, figures), "utf-8")
    return table


def csv_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table for a spreadsheet: the KPI's definition added, values as numbers."""
    out = table.copy()
    out.insert(1, "definition", [kpi_of(str(k)).definition for k in table.index])
    return out


COMPARE_FILES = frozenset(
    {
        "compare.csv",
        "compare.html",
        "kpis.csv",  # what comparisons wrote before compare.csv
        "compare_latency.png",
        "compare_utilization.png",
        "compare_cost_energy.png",
    }
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


# --- compare.html -------------------------------------------------------------------------

HTML_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2733;
background:#f4f6f8}main{max-width:1180px;margin:0 auto;padding:24px 28px 48px;background:#fff;
box-sizing:border-box}h1{font-size:22px}table{border-collapse:collapse;width:100%;
table-layout:fixed;font-size:13px}th,td{padding:4px 6px;border-bottom:1px solid #e6eaef;
text-align:right;overflow-wrap:anywhere}th:first-child,td:first-child{text-align:left;
width:26%}th{background:#eef2f6;vertical-align:bottom}.better{color:#1a7f37}
.worse{color:#b42318}figure{margin:18px 0}img{max-width:100%;height:auto}
p.note{color:#5a6878;font-size:13px}
"""


def render_html(table: pd.DataFrame, figures: list[Path]) -> str:
    """A self-contained page (figures as data URIs, no scripts) that fits 1,280 px: the KPI
    table with each change marked better or worse, then the figures."""
    import base64

    labels = _run_columns(table)
    first = labels[0]
    head = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in ["KPI", *labels, *(f"{lab} vs {first}" for lab in labels[1:])]
    )
    body = []
    for key, row in table.iterrows():
        kpi = kpi_of(str(key))
        cells = [
            f'<td title="{html.escape(kpi.definition)}">{html.escape(str(key))}</td>',
            *(f"<td>{html.escape(kpis.format_value(kpi, row[lab]))}</td>" for lab in labels),
        ]
        for lab in labels[1:]:
            v = str(row[f"{lab} verdict"])
            mark = {"better": " ▲", "worse": " ▼"}.get(v, "")
            cells.append(f'<td class="{v}">{html.escape(str(row[f"{lab} vs {first}"]))}{mark}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    figs = "".join(
        f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode("ascii")}"></figure>'
        for p in figures
    )
    note = (
        f"Changes are against {html.escape(first)}: a relative % when both values are non-zero, "
        "of the same sign and within 1,000 %, else the absolute difference (pp for shares). "
        "▲ better, ▼ worse, by the KPI's direction in the registry (gridsim/kpis.py)."
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>gridsim comparison</title><style>{HTML_CSS}</style></head><body><main>"
        f'<h1>gridsim comparison</h1><p class="note">{note}</p>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"{figs}</main></body></html>\n"
    )


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
