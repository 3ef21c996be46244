"""A self-contained report.html: KPIs, warnings, assumptions, figures and tables.

Everything is inline (CSS, figures as base64 PNG data URIs): no scripts and no external
requests, so the file can be mailed on and opened offline. All text is escaped.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from gridsim import economics
from gridsim.run import Result

SLA_TARGET = 0.95  # classes below this attainment are flagged
SATURATED = 0.90  # nodes above this mean utilisation are flagged
IN_FLIGHT_WARN = 0.01  # share of arrivals unfinished at the end worth a warning
UNSERVED = (  # where requests that were never served went, as the warnings say it
    ("dropped", "dropped (turned away by admission limits, or no pool to go to)"),
    ("abandoned", "abandoned (gave up waiting: the class's patience ran out)"),
    ("lost", "lost to failures (in a pool that failed, with on_failure: drop)"),
)

CAPTIONS = {
    "demand_capacity": "Demand against capacity (or tokens served against capacity), national "
    "equivalent.",
    "utilization": "Utilisation per node over time.",
    "latency": "Latency by class against the SLOs.",
    "cost_energy": "Cost, revenue and energy by node kind and by region served, national "
    "equivalent per day.",
    "map": "Nodes, demand regions and the flows between them.",
}

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2733;
background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:32px 0 10px;border-bottom:2px solid
#dde3ea;padding-bottom:4px}.sub{color:#5a6878;font-size:13px;margin:0 0 18px}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.kpi{border:1px solid #dde3ea;border-radius:6px;padding:10px 12px;background:#fbfcfd}
.kpi .v{font-size:21px;font-weight:600}.kpi .l{font-size:12px;color:#5a6878}
.kpi .n{font-size:11px;color:#7a8796}.kpi .u{font-size:13px;font-weight:400}
.warn{background:#fff6e0;border:1px solid #f0c36d;border-radius:6px;padding:8px 14px}
.ok{background:#e9f7ee;border:1px solid #8fd1a5;border-radius:6px;padding:8px 14px}
.warn li,.ok li{margin:3px 0}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 14px;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #e6eaef;text-align:right;white-space:nowrap}
th{background:#eef2f6;font-weight:600}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafbfc}
figure{margin:18px 0}figure img{max-width:100%;height:auto;border:1px solid #e6eaef}
figcaption{font-size:13px;color:#5a6878}.scroll{overflow-x:auto}
.desc{font-size:14px;line-height:1.45}dl{display:grid;grid-template-columns:270px 1fr;
gap:3px 12px;font-size:13.5px}dt{color:#5a6878}dd{margin:0}
"""


def kpis(result: Result, econ: dict[str, Any] | None = None) -> dict[str, Any]:
    """Headline figures of a run (units in the keys); None where undefined."""
    s = result.summary
    e = econ if econ is not None else _economics(result)
    req = s.get("requests", {})
    tok = s.get("tokens", {})
    served_tokens = sum((tok.get(k) or {}).get("served") or 0 for k in ("input", "output"))
    lat, ttft, wait = s.get("latency_s", {}), s.get("ttft_s", {}), s.get("wait_s", {})
    util = s.get("utilization", {})
    return {
        "requests_arrived": req.get("arrived"),
        "requests_served": req.get("served"),
        "requests_dropped": req.get("dropped"),
        "requests_abandoned": req.get("abandoned"),
        "requests_lost": req.get("lost"),
        "requests_in_flight": req.get("in_flight"),
        "requests_simulated": _simulated(s),
        "sample_fraction": float(result.scenario.demand.sample_fraction),
        "tokens_served": served_tokens,
        "sla_attainment": s.get("sla_attainment"),
        "latency_mean_s": lat.get("mean"),
        "latency_p50_s": lat.get("p50"),
        "latency_p95_s": lat.get("p95"),
        "latency_p99_s": lat.get("p99"),
        "ttft_p95_s": ttft.get("p95"),
        "wait_mean_s": wait.get("mean"),
        "utilization_mean": util.get("mean"),
        "utilization_peak": util.get("peak"),
        "energy_kwh": e.get("energy_kwh"),
        "cost_cny": e.get("cost_cny"),
        "revenue_cny": e.get("revenue_cny"),
        "margin_cny": e.get("margin_cny"),
        "carbon_kg": e.get("carbon_kg"),
        "cost_cny_per_m_tokens": e.get("cost_cny_per_m_tokens"),
        "national_energy_mwh_per_day": _div(e.get("national_energy_kwh_per_day"), 1e3),
        "national_cost_cny_per_day": e.get("national_cost_cny_per_day"),
        "national_carbon_t_per_day": e.get("national_carbon_t_per_day"),
        "shortfall_at": _date((s.get("capacity") or {}).get("shortfall_at")),
    }


def warnings(result: Result) -> list[str]:
    """Plain-language problems a planner should see first."""
    s = result.summary
    out = []
    sp = s.get("sample") if isinstance(s.get("sample"), dict) else None
    if sp and sp.get("method") == "pools":
        line = (
            f"pool sample: {len(sp['pools'])} pools simulated at full size "
            f"({', '.join(sp['pools'])}), {sp['share_of_demand']:.3%} of the grid's expected "
            f"requests ({sp['requests_simulated']['arrived']:,} simulated). Totals are scaled to "
            "the whole grid class by class; SLA attainment, latency and utilisation are those of "
            "the sampled pools."
        )
        if sp.get("classes_not_simulated"):
            line += f" Not simulated: {', '.join(sp['classes_not_simulated'])}."
        out.append(line)
    out.extend(s.get("notes") or [])
    capacity = s.get("capacity") or {}
    shortfall = _date(capacity.get("shortfall_at"))
    if shortfall:
        out.append(f"demand outgrows capacity from {shortfall}")
    elif capacity.get("headroom", {}).get("min") is not None:
        out.append(
            "demand stays within capacity over the whole horizon: the national headroom is "
            f"never below {capacity['headroom']['min']:.1%}"
        )
    for name, block in s.get("by_class", {}).items():
        sla = block.get("sla_attainment")
        if sla is not None and sla < SLA_TARGET:
            out.append(f"class {name}: SLA attainment {sla:.1%} is below {SLA_TARGET:.0%}")
    for node, block in s.get("by_node", {}).items():
        util = (block.get("utilization") or {}).get("mean")
        if util is not None and util > SATURATED:
            out.append(f"node {node} is saturated: mean utilisation {util:.1%}")
    req = s.get("requests", {})
    arrived = req.get("arrived") or 0
    for key, what in UNSERVED:
        n = req.get(key) or 0
        if n:
            out.append(f"{n:,} requests {what}: {n / max(arrived, 1):.2%} of arrivals")
    flight = req.get("in_flight") or 0
    if arrived and flight / arrived > IN_FLIGHT_WARN:
        out.append(
            f"{flight:,} requests ({flight / arrived:.1%}) were unfinished at the end: "
            "long queues, or a horizon short for the slowest classes"
        )
    out.extend(s.get("engine_warnings") or [])  # how the engine computed what it reports
    return out


def write_report(result: Result, path: Path, figures: list[Path]) -> Path:
    """Write the self-contained report for ``result`` to ``path``; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(result, figures), "utf-8")
    return path


def render(result: Result, figures: list[Path]) -> str:
    econ = _economics(result)
    sc = result.scenario
    k = kpis(result, econ)
    warn = warnings(result)
    head = (
        f"seed {result.summary.get('seed')} · {result.summary.get('fidelity')} fidelity · "
        f"gridsim {result.manifest.get('gridsim', '?')} · "
        f"wall time {_num(result.manifest.get('wall_time_s'))} s"
    )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>gridsim report: {_e(sc.name)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>gridsim report: {_e(sc.name)}</h1><p class='sub'>{_e(head)}</p>",
        _kpi_cards(k, econ),
        "<h2>Warnings</h2>",
        _list(warn, "warn") if warn else _list(["no warnings"], "ok"),
        "<h2>Scenario and assumptions</h2>",
        f"<p class='desc'>{_e(sc.description or 'no description')}</p>",
        _assumptions(result, econ),
        "<h2>Figures</h2>",
        *(_figure(p) for p in figures),
        "<h2>By class</h2>",
        _class_table(result, econ),
        "<h2>By region</h2>",
        _region_table(result),
        "<h2>By node</h2>",
        _node_table(result),
        "<p class='sub'>Money, energy and carbon: simulated totals over the horizon unless "
        "marked national (per day; sampled runs scaled by what they simulated). Pool cost is "
        "shared among classes and "
        "regions by served tokens.</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


# --- sections ----------------------------------------------------------------------------------


def _simulated(summary: dict[str, Any]) -> int | None:
    """Requests a pool-sampled run simulated (its totals are scaled up); None otherwise."""
    sp = summary.get("sample")
    if isinstance(sp, dict) and sp.get("method") == "pools":
        return int((sp.get("requests_simulated") or {}).get("arrived") or 0)
    return None


def _arrived_note(k: dict[str, Any]) -> str:
    simulated = k.get("requests_simulated")
    if simulated is not None:
        return f"whole grid (estimate); {_int(simulated)} simulated"
    return "simulated sample" if (k.get("sample_fraction") or 1.0) < 1 else "whole grid"


def _kpi_cards(k: dict[str, Any], econ: dict[str, Any]) -> str:
    served = k["requests_served"] or 0
    arrived = k["requests_arrived"] or 0
    dropped, abandoned, lost = (k[f"requests_{key}"] for key in ("dropped", "abandoned", "lost"))
    unserved = sum(v or 0 for v in (dropped, abandoned, lost))
    unserved_note = f"dropped {_int(dropped)} · abandoned {_int(abandoned)} · lost {_int(lost)}"
    if arrived:
        unserved_note += f" ({_pct(unserved / arrived)})"
    sim = "national; simulated"
    sim_energy = f"{sim} {_num(k['energy_kwh'])} kWh"
    sim_cost = f"{sim} {_num(k['cost_cny'])} CNY"
    sim_carbon = f"{sim} {_num(k['carbon_kg'])} kg"
    revenue = f"revenue {_num(econ.get('revenue_cny_per_m_tokens'))} CNY"
    cards = [  # label, value, unit, note
        ("requests arrived", _int(arrived), "", _arrived_note(k)),
        ("requests served", _int(served), "", _pct(served / arrived) if arrived else ""),
        ("requests not served", _int(unserved), "", unserved_note),
        ("SLA attainment", _pct(k["sla_attainment"]), "", "met every SLO; unserved ones missed"),
        ("latency p95", _secs(k["latency_p95_s"]), "", f"p50 {_secs(k['latency_p50_s'])}"),
        (
            "utilisation (mean)",
            _pct(k["utilization_mean"]),
            "",
            f"peak {_pct(k['utilization_peak'])}",
        ),
        ("energy", _num(k["national_energy_mwh_per_day"]), "MWh/day", sim_energy),
        ("cost", _num(_div(k["national_cost_cny_per_day"], 1e6)), "M CNY/day", sim_cost),
        ("carbon", _num(k["national_carbon_t_per_day"]), "t CO₂/day", sim_carbon),
        ("cost per M tokens", _num(k["cost_cny_per_m_tokens"]), "CNY", revenue),
    ]
    if k["shortfall_at"]:
        cards.append(("capacity shortfall", str(k["shortfall_at"]), "", "demand outgrows capacity"))
    body = "".join(
        f"<div class='kpi'><div class='l'>{_e(label)}</div><div class='v'>{_e(value)}"
        f"<span class='u'> {_e(unit)}</span></div><div class='n'>{_e(note)}</div></div>"
        for label, value, unit, note in cards
    )
    return f"<div class='kpis'>{body}</div>"


def _sampling_rows(result: Result) -> list[tuple[str, str]]:
    """What was simulated of the grid: a pool sample, a sample_fraction, or all of it."""
    sp = result.summary.get("sample")
    if isinstance(sp, dict) and sp.get("method") == "pools":
        return [("sampling", str(sp.get("how", ""))), ("sampling bias", str(sp.get("bias", "")))]
    fraction = result.scenario.demand.sample_fraction
    if fraction < 1:
        return [("sample_fraction", f"{fraction:g} of demand and capacity")]
    return [("sampling", "none: the whole grid")]


def _assumptions(result: Result, econ: dict[str, Any]) -> str:
    sc = result.scenario
    growth = sc.demand.growth.model_dump()
    law = growth.pop("law")
    growth_text = law + (
        " (" + ", ".join(f"{k} {v}" for k, v in growth.items()) + ")" if growth else ""
    )
    n_pools = sum(len(n.pools) for n in sc.nodes)
    policy = sc.policy.name + (f" {sc.policy.params}" if sc.policy.params else "")
    rows = [
        ("scenario", sc.name),
        ("horizon", f"from {sc.horizon.start}, {_dur(sc.horizon.duration)}"),
        ("warm-up / resolution", f"{_dur(sc.horizon.warmup)} / {_dur(sc.horizon.resolution)}"),
        ("fidelity", str(result.summary.get("fidelity", sc.fidelity))),
        *_sampling_rows(result),
        ("policy", policy),
        ("demand volume", f"{_words(sc.demand.tokens_per_day)} tokens/day (national, at start)"),
        ("demand growth", growth_text),
        ("regions / nodes / pools", f"{len(sc.regions)} / {len(sc.nodes)} / {n_pools}"),
        ("classes", ", ".join(c.name for c in sc.demand.classes)),
        ("seed", str(result.summary.get("seed", sc.seed))),
    ]
    for key, value in (econ.get("assumptions") or {}).items():
        if key in ("cache_hit_share", "cache_hit_share_by_class"):
            continue  # one row below
        text = "flat" if value is None else f"{value:g}" if isinstance(value, float) else value
        rows.append((f"economics: {key}", str(text)))
    shares = _cache_shares(result, econ)
    rows.append(
        (
            "economics: cache_hit_share (input billed at the cache-hit price)",
            ", ".join(f"{name} {h:g}" for name, h in shares.items()) or "–",
        )
    )
    body = "".join(f"<dt>{_e(a)}</dt><dd>{_e(b)}</dd>" for a, b in rows)
    note = (
        "Economics assumptions and sources are documented in gridsim/economics.py "
        "(job-slot power and price, amortisation, facility capex per MW from FACTS.md section 9, "
        "network price: no source found)."
    )
    return f"<dl>{body}</dl><p class='sub'>{_e(note)}</p>"


def _figure(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    caption = CAPTIONS.get(Path(path).stem, Path(path).stem)
    return (
        f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


# A table cell of one class, region or node: from its id, its summary block and its economics
# row (None when economics has no row for it).
Cell = Callable[[str, dict[str, Any], "pd.Series[Any] | None"], str]


def _requests(key: str) -> Cell:
    # .get: a run written before a count existed (compare reads old folders) shows "–"
    return lambda _id, block, _cost: _int(block["requests"].get(key))


def _sla(_id: str, block: dict[str, Any], _cost: pd.Series[Any] | None) -> str:
    return _pct(block.get("sla_attainment"))


def _quantile(metric: str, q: str) -> Cell:
    return lambda _id, block, _cost: _secs(block[metric].get(q))


def _token_count(key: str) -> Cell:
    return lambda _id, block, _cost: _int(_tokens(block, key))


def _cost(column: str) -> Cell:
    return lambda _id, _block, cost: _num(None if cost is None else cost[column])


def _utilization(key: str) -> Cell:
    return lambda _id, block, _cost: _pct((block.get("utilization") or {}).get(key))


CLASS_COLUMNS: tuple[tuple[str, Cell], ...] = (
    ("arrived", _requests("arrived")),
    ("served", _requests("served")),
    ("dropped", _requests("dropped")),
    ("abandoned", _requests("abandoned")),
    ("lost", _requests("lost")),
    ("SLA", _sla),
    ("latency p50", _quantile("latency_s", "p50")),
    ("p95", _quantile("latency_s", "p95")),
    ("p99", _quantile("latency_s", "p99")),
    ("TTFT p95", _quantile("ttft_s", "p95")),
    ("tokens served", _token_count("served")),
    ("cost CNY/M tok", _cost("cost_cny_per_m_tokens")),
    ("revenue CNY/M tok", _cost("revenue_cny_per_m_tokens")),
)
REGION_COLUMNS: tuple[tuple[str, Cell], ...] = (
    ("arrived", _requests("arrived")),
    ("served", _requests("served")),
    ("SLA", _sla),
    ("latency p95", _quantile("latency_s", "p95")),
    ("tokens demanded", _token_count("demanded")),
    ("tokens served", _token_count("served")),
    ("cost CNY", _cost("cost_cny")),
    ("cost CNY/M tok", _cost("cost_cny_per_m_tokens")),
)
NODE_COLUMNS: tuple[tuple[str, Cell], ...] = (  # after the node's kind
    ("util mean", _utilization("mean")),
    ("util peak", _utilization("peak")),
    ("served", _requests("served")),
    ("latency p95", _quantile("latency_s", "p95")),
    ("energy kWh", _cost("energy_kwh")),
    ("cost CNY", _cost("cost_cny")),
    ("carbon kg", _cost("carbon_kg")),
    ("cost CNY/M tok", _cost("cost_cny_per_m_tokens")),
)


def _class_table(result: Result, econ: dict[str, Any]) -> str:
    shares = _cache_shares(result, econ)

    def cache_hit(name: str, _block: dict[str, Any], _cost: pd.Series[Any] | None) -> str:
        return _pct(shares.get(name))

    return _breakdown(result, "class", (*CLASS_COLUMNS, ("cache hit", cache_hit)))


def _cache_shares(result: Result, econ: dict[str, Any]) -> dict[str, float]:
    """Each class's share of input tokens billed at the cache-hit price, as economics used it
    (a run written before per-class shares had one share for all classes, 0 by default)."""
    a = econ.get("assumptions") or {}
    by_class = a.get("cache_hit_share_by_class")
    if isinstance(by_class, dict):
        return {str(k): float(v) for k, v in by_class.items()}
    h = a.get("cache_hit_share")
    override = float(h) if isinstance(h, int | float) else None
    return economics.cache_hit_shares(result, economics.Assumptions(cache_hit_share=override))


def _region_table(result: Result) -> str:
    return _breakdown(result, "region", REGION_COLUMNS)


def _node_table(result: Result) -> str:
    kinds = result.pools.groupby("node")["node_kind"].first()

    def kind(node: str, _block: dict[str, Any], _cost: pd.Series[Any] | None) -> str:
        return str(kinds.get(node, "")).replace("_", " ")

    return _breakdown(result, "node", (("kind", kind), *NODE_COLUMNS))


def _breakdown(
    result: Result, by: Literal["class", "region", "node"], columns: tuple[tuple[str, Cell], ...]
) -> str:
    """One row per block of the summary's ``by_<by>``: its id, then one cell per column."""
    costs = economics.economics_by(result, by).set_index(by)
    rows = []
    for key, block in result.summary.get(f"by_{by}", {}).items():
        cost = costs.loc[key] if key in costs.index else None
        rows.append([key, *(cell(key, block, cost) for _, cell in columns)])
    return _table([by, *(head for head, _ in columns)], rows)


# --- helpers ---------------------------------------------------------------------------------


def _economics(result: Result) -> dict[str, Any]:
    """The run's economics block when summary.json has one, else computed with defaults."""
    econ = result.summary.get("economics")
    return econ if isinstance(econ, dict) else economics.economics_summary(result)


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<div class='scroll'><table><tr>{th}</tr>{body}</table></div>"


def _list(items: list[str], cls: str) -> str:
    return f"<ul class='{cls}'>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _tokens(block: dict[str, Any], key: str) -> float | None:
    vals = [((block.get("tokens") or {}).get(k) or {}).get(key) for k in ("input", "output")]
    return None if all(v is None for v in vals) else sum(v or 0 for v in vals)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _date(v: Any) -> str | None:
    """An ISO date or date-time as its date."""
    return str(v)[:10] if v else None


def _div(v: float | None, d: float) -> float | None:
    return None if v is None else v / d


def _bad(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def _num(v: Any) -> str:
    """Three significant figures, thousands separated."""
    if _bad(v):
        return "–"
    x = float(v)
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{digits}f}"


def _int(v: Any) -> str:
    return "–" if _bad(v) else f"{round(float(v)):,}"


def _pct(v: Any) -> str:
    return "–" if _bad(v) else f"{float(v):.1%}"


def _secs(v: Any) -> str:
    if _bad(v):
        return "–"
    x = float(v)
    if x < 1:
        return f"{x * 1e3:.0f} ms"
    return f"{_num(x)} s" if x < 600 else f"{_num(x / 60)} min"


def _dur(seconds: float) -> str:
    s = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size and s % size == 0:
            return f"{s / size:g} {unit}"
    return f"{s:g} s"


def _words(x: float) -> str:
    """1.4e14 -> '140 trillion'."""
    for word, size in (("trillion", 1e12), ("billion", 1e9), ("million", 1e6)):
        if abs(x) >= size:
            return f"{_num(x / size)} {word}"
    return _num(x)
