"""A self-contained report.html: KPIs, warnings, assumptions, figures and tables.

Everything is inline (CSS, figures as base64 PNG data URIs): no scripts and no external
requests, so the file can be mailed on and opened offline. All text is escaped. Every number a
reader sees goes through :mod:`gridsim.numbers` (3.65 T, 213 M CNY, 94.1 %), and the sections a
run's summary may carry (capacity gap, cost against list prices, fleet, uncertainty, network
targets) are drawn only when their block is there.
"""

from __future__ import annotations

import base64
import html
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from gridsim import economics
from gridsim.market.expand import expand
from gridsim.market.outputs import market_map
from gridsim.numbers import (
    MISSING,
    human,
    human_count,
    human_duration_s,
    human_money_cny,
    human_percent,
)
from gridsim.report.market_figures import CAPTIONS as MARKET_CAPTIONS
from gridsim.report.power_figures import CAPTIONS as POWER_CAPTIONS
from gridsim.run import Result
from gridsim.scenario import Scenario

SLA_TARGET = 0.95  # classes below this attainment are flagged
SATURATED = 0.90  # nodes above this mean utilisation are flagged
IN_FLIGHT_WARN = 0.01  # share of arrivals unfinished at the end worth a warning
UNSERVED = (  # where requests that were never served went, as the warnings say it
    ("dropped", "dropped (turned away by admission limits, or no pool to go to)"),
    ("abandoned", "abandoned (gave up waiting: the class's patience ran out)"),
    ("lost", "lost to failures (in a pool that failed, with on_failure: drop)"),
)

CAPTIONS = {
    "demand_capacity": "Demand against SLO capacity by model (Erlangs), with the shortfall "
    "line; request-fidelity runs: tokens served against capacity, national equivalent.",
    "utilization": "Utilisation per node over time.",
    "latency": "Latency by class against the SLOs.",
    "cost_energy": "Cost, revenue and energy by node kind and by region served, national "
    "equivalent per day.",
    "map": "Nodes, demand regions and the flows between them.",
    "fan": "Uncertainty: P10 / P50 / P90 over the Monte Carlo draws.",
    **MARKET_CAPTIONS,
    **POWER_CAPTIONS,
}
MARKET = frozenset(MARKET_CAPTIONS)  # figures drawn in the token market section
POWER = frozenset(POWER_CAPTIONS)  # figures drawn in the training and power section
TOP_MODELS = 15  # rows of the market's models table before "others"
NO_SHORTFALL = "none within the horizon"
SOURCES = "SOURCES.md"  # the project's sources document, at the repository's root

# Cards and tables must fit a 1,280 px window without clipping a number or scrolling sideways
# (tests/test_report.py measures it in Chromium): grid items get min-width 0 (a grid item's
# default min-width is its content's, which is how a long number overflowed its card), long
# values wrap, headers wrap, and ids (first column) may break anywhere.
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2733;
background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px;background:#fff;box-sizing:border-box}
h1{font-size:26px;margin:0 0 4px;overflow-wrap:anywhere}h2{font-size:19px;margin:32px 0 10px;
border-bottom:2px solid #dde3ea;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.sub{color:#5a6878;font-size:13px;margin:0 0 18px;overflow-wrap:anywhere}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.kpi{border:1px solid #dde3ea;border-radius:6px;padding:10px 12px;background:#fbfcfd;
min-width:0;overflow-wrap:anywhere}
.kpi .v{font-size:21px;font-weight:600;overflow-wrap:anywhere}.kpi .l{font-size:12px;
color:#5a6878}.kpi .n{font-size:11px;color:#7a8796}.kpi .u{font-size:13px;font-weight:400}
.kpi[title]{cursor:help}
.warn{background:#fff6e0;border:1px solid #f0c36d;border-radius:6px;padding:8px 14px;
overflow-wrap:anywhere}.ok{background:#e9f7ee;border:1px solid #8fd1a5;border-radius:6px;
padding:8px 14px}.warn li,.ok li{margin:3px 0}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 14px;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #e6eaef;text-align:right}
td{white-space:nowrap}th{background:#eef2f6;font-weight:600;vertical-align:bottom}
td:first-child,th:first-child{text-align:left;white-space:normal;overflow-wrap:anywhere}
td.t{text-align:left;white-space:normal;overflow-wrap:anywhere}
tr:nth-child(even) td{background:#fafbfc}
figure{margin:18px 0}figure img{max-width:100%;height:auto;border:1px solid #e6eaef}
figcaption{font-size:13px;color:#5a6878}.scroll{overflow-x:auto;max-width:100%}
.desc{font-size:14px;line-height:1.45;overflow-wrap:anywhere}dl{display:grid;
grid-template-columns:minmax(0,270px) minmax(0,1fr);gap:3px 12px;font-size:13.5px}
dt{color:#5a6878;overflow-wrap:anywhere}dd{margin:0;overflow-wrap:anywhere}
.trace{font-size:13.5px;line-height:1.5}
"""


# The registry KPIs the report's cards and tables read (paths, units and definitions live in
# gridsim/kpis.py, the one registry).
REPORT_KPIS = (
    "requests_arrived",
    "requests_served",
    "requests_dropped",
    "requests_abandoned",
    "requests_lost",
    "requests_in_flight",
    "tokens_served",
    "sla_attainment",
    "latency_mean_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "ttft_p95_s",
    "wait_mean_s",
    "utilization_mean",
    "utilization_peak",
    "energy_kwh",
    "cost_cny",
    "revenue_cny",
    "margin_cny",
    "carbon_kg",
    "cost_cny_per_m_tokens",
    "national_cost_cny_per_day",
    "national_carbon_t_per_day",
    "national_energy_kwh_per_day",
    "shortfall_at",
)


def kpis(result: Result, econ: dict[str, Any] | None = None) -> dict[str, Any]:
    """Headline figures of a run, by KPI registry name (units in the names); None where
    undefined. ``econ`` stands in for the summary's economics block when given."""
    from gridsim import kpis as registry

    s = result.summary
    view = {**s, "economics": econ if econ is not None else _economics(result)}
    out = {name: registry.value(view, name) for name in REPORT_KPIS}
    out["shortfall_at"] = _date(out["shortfall_at"])
    # report-only figures: what was simulated, and the energy card's unit
    out["requests_simulated"] = _simulated(s)
    out["sample_fraction"] = float(result.scenario.demand.sample_fraction)
    out["national_energy_mwh_per_day"] = _div(out["national_energy_kwh_per_day"], 1e3)
    return out


def warnings(result: Result) -> list[str]:
    """Plain-language problems a planner should see first."""
    s = result.summary
    out = []
    sp = s.get("sample") if isinstance(s.get("sample"), dict) else None
    if sp and sp.get("method") == "pools":
        line = (
            f"pool sample: {len(sp['pools'])} pools simulated at full size "
            f"({', '.join(sp['pools'])}), {human_percent(sp['share_of_demand'], 3)} of the "
            "grid's expected requests "
            f"({human_count(sp['requests_simulated']['arrived'])} simulated). Totals are scaled to "
            "the whole grid class by class; SLA attainment, latency and utilisation are those of "
            "the sampled pools."
        )
        if sp.get("classes_not_simulated"):
            line += f" Not simulated: {', '.join(sp['classes_not_simulated'])}."
        out.append(line)
    out.extend(s.get("notes") or [])
    capacity = _capacity(s)
    shortfall = _date(capacity.get("shortfall_at"))
    if shortfall:  # the same value as the card and the figure's line (summary["capacity"])
        model = capacity.get("shortfall_model")
        out.append(
            f"demand outgrows capacity from {shortfall}" + (f" ({model} first)" if model else "")
        )
    elif (capacity.get("headroom") or {}).get("min") is not None:
        out.append(
            "demand stays within capacity over the whole horizon: the national headroom is "
            f"never below {human_percent(capacity['headroom']['min'])}"
        )
    for name, block in s.get("by_class", {}).items():
        sla = block.get("sla_attainment")
        if sla is not None and sla < SLA_TARGET:
            out.append(
                f"class {name}: SLA attainment {human_percent(sla)} is below "
                f"{human_percent(SLA_TARGET, 0)}"
            )
    for node, block in s.get("by_node", {}).items():
        util = (block.get("utilization") or {}).get("mean")
        if util is not None and util > SATURATED:
            out.append(f"node {node} is saturated: mean utilisation {human_percent(util)}")
    req = s.get("requests", {})
    arrived = req.get("arrived") or 0
    for key, what in UNSERVED:
        n = req.get(key) or 0
        if n:
            share = human_percent(n / max(arrived, 1), 2)
            out.append(f"{human_count(n)} requests {what}: {share} of arrivals")
    flight = req.get("in_flight") or 0
    if arrived and flight / arrived > IN_FLIGHT_WARN:
        out.append(
            f"{human_count(flight)} requests ({human_percent(flight / arrived)}) were unfinished "
            "at the end: long queues, or a horizon short for the slowest classes"
        )
    out.extend(s.get("engine_warnings") or [])  # how the engine computed what it reports
    return out


def write_report(result: Result, path: Path, figures: list[Path]) -> Path:
    """Write the self-contained report for ``result`` to ``path``; return the path.

    A fan chart ``figures/fan.png`` next to ``path`` (written by ``gridsim run --draws``) goes
    into the uncertainty section even when ``figures`` does not list it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fan = path.parent / "figures" / "fan.png"
    if fan.is_file() and all(Path(f).stem != "fan" for f in figures):
        figures = [*figures, fan]
    path.write_text(render(result, figures), "utf-8")
    return path


def render(result: Result, figures: list[Path]) -> str:
    econ = _economics(result)
    sc = result.scenario
    s = result.summary
    k = kpis(result, econ)
    warn = warnings(result)
    head = (
        f"seed {s.get('seed')} · {s.get('fidelity')} fidelity · "
        f"gridsim {result.manifest.get('gridsim', '?')} · "
        f"wall time {human_duration_s(result.manifest.get('wall_time_s'))}"
    )
    fan = [p for p in figures if Path(p).stem == "fan"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>gridsim report: {_e(sc.name)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>gridsim report: {_e(sc.name)}</h1><p class='sub'>{_e(head)}</p>",
        _kpi_cards(result, k, econ),
        "<h2>Warnings</h2>",
        _list(warn, "warn") if warn else _list(["no warnings"], "ok"),
        "<h2>Scenario and assumptions</h2>",
        f"<p class='desc'>{_e(sc.description or 'no description')}</p>",
        _assumptions(result, econ),
        "<h2>Figures</h2>",
        *(
            _figure(p)
            for p in figures
            if Path(p).stem != "fan" and Path(p).stem not in MARKET | POWER
        ),
        _capacity_gap(s),
        _cost_against_list_prices(s),
        _token_market(s, [p for p in figures if Path(p).stem in MARKET]),
        _training_power(s, [p for p in figures if Path(p).stem in POWER]),
        _fleet(s),
        _uncertainty(s, fan),
        _network_targets(s),
        "<h2>By class</h2>",
        _class_table(result, econ),
        "<h2>By region</h2>",
        _region_table(result),
        "<h2>By node</h2>",
        _node_table(result),
        "<p class='sub'>Money, energy and carbon in the tables: "
        + ("simulated sample" if _sampled(result) else "simulated totals")
        + " over the horizon unless marked national (per day; sampled runs scaled by what they "
        "simulated). Pool cost is shared among classes and regions by served tokens.</p>",
        "</main></body></html>",
    ]
    return "\n".join(part for part in parts if part)


# --- sections ----------------------------------------------------------------------------------


def _simulated(summary: dict[str, Any]) -> int | None:
    """Requests a pool-sampled run simulated (its totals are scaled up); None otherwise."""
    sp = summary.get("sample")
    if isinstance(sp, dict) and sp.get("method") == "pools":
        return int((sp.get("requests_simulated") or {}).get("arrived") or 0)
    return None


def _sampled(result: Result) -> bool:
    """Whether the run simulated a sample of the grid (a sample_fraction or a pool sample)."""
    demand = result.scenario.demand
    return float(demand.sample_fraction) < 1 or demand.sample_pools is not None


def _arrived_note(result: Result, k: dict[str, Any]) -> str:
    simulated = k.get("requests_simulated")
    if simulated is not None:
        return f"whole grid (estimate); {human_count(simulated)} simulated"
    return "simulated sample" if _sampled(result) else "whole grid"


@dataclass(frozen=True)
class Card:
    """A headline card: what it shows, and the summary ``path`` its KPI registry entry is
    found by (None for a card that combines several entries); ``title`` overrides the
    registry's tooltip."""

    label: str
    value: str
    unit: str
    note: str
    path: tuple[str, ...] | None = None
    title: str = ""


def _kpi_cards(result: Result, k: dict[str, Any], econ: dict[str, Any]) -> str:
    served = k["requests_served"] or 0
    arrived = k["requests_arrived"] or 0
    dropped, abandoned, lost = (k[f"requests_{key}"] for key in ("dropped", "abandoned", "lost"))
    unserved = sum(v or 0 for v in (dropped, abandoned, lost))
    unserved_note = (
        f"dropped {human_count(dropped)} · abandoned {human_count(abandoned)} · "
        f"lost {human_count(lost)}"
    )
    if arrived:
        unserved_note += f" ({human_percent(unserved / arrived)})"
    # what the run itself computed, beside the national equivalent: a sample when it sampled
    sim = "national; simulated sample" if _sampled(result) else "national; over the horizon"
    sim_energy = f"{sim} {human(k['energy_kwh'], 'kWh')}"
    sim_cost = f"{sim} {human_money_cny(k['cost_cny'])}"
    sim_carbon = f"{sim} {_mass_kg(k['carbon_kg'])}"
    revenue = f"revenue {human_money_cny(econ.get('revenue_cny_per_m_tokens'))}"
    cards: list[Card] = [
        Card(
            "requests arrived",
            human_count(arrived),
            "",
            _arrived_note(result, k),
            ("requests", "arrived"),
        ),
        Card(
            "requests served",
            human_count(served),
            "",
            human_percent(served / arrived) if arrived else "",
            ("requests", "served"),
        ),
        Card("requests not served", human_count(unserved), "", unserved_note),
        Card(
            "SLA attainment",
            human_percent(k["sla_attainment"]),
            "",
            "met every SLO; unserved ones missed",
            ("sla_attainment",),
        ),
        Card(
            "latency p95",
            human_duration_s(k["latency_p95_s"]),
            "",
            f"p50 {human_duration_s(k['latency_p50_s'])}",
            ("latency_s", "p95"),
        ),
        Card(
            "utilisation (mean)",
            human_percent(k["utilization_mean"]),
            "",
            f"peak {human_percent(k['utilization_peak'])}",
            ("utilization", "mean"),
        ),
        Card(
            "energy per day",
            human(k["national_energy_mwh_per_day"], "MWh"),
            "",
            sim_energy,
            ("economics", "national_energy_kwh_per_day"),
        ),
        Card(
            "cost per day",
            human_money_cny(k["national_cost_cny_per_day"]),
            "",
            sim_cost,
            ("economics", "national_cost_cny_per_day"),
        ),
        Card(
            "carbon per day",
            human(k["national_carbon_t_per_day"], "t"),
            "CO₂",
            sim_carbon,
            ("economics", "national_carbon_t_per_day"),
        ),
        Card(
            "cost per M tokens",
            human_money_cny(k["cost_cny_per_m_tokens"]),
            "",
            revenue,
            ("economics", "cost_cny_per_m_tokens"),
        ),
    ]
    shortfall = _shortfall_card(result.summary)
    if shortfall:
        cards.append(shortfall)
    body = "".join(_card(card) for card in cards)
    return f"<div class='kpis'>{body}</div>"


def _shortfall_card(summary: dict[str, Any]) -> Card | None:
    """The capacity shortfall card, from ``summary["capacity"]`` alone: the figure's line,
    the warnings and the tables read the same value, so the four cannot disagree. None when
    the run reports no capacity (the request engine)."""
    cap = _capacity(summary)
    when = _date(cap.get("shortfall_at"))
    path = ("capacity", "shortfall_at")
    definition = str(cap.get("definition") or "")
    if when:
        model = cap.get("shortfall_model")
        note = "demand outgrows SLO capacity" + (f"; {model} first" if model else "")
        return Card("capacity shortfall", when, "", note, path, definition)
    low = (cap.get("headroom") or {}).get("min")
    if low is None:
        return None
    note = f"minimum headroom {human_percent(low)}"
    return Card("capacity shortfall", NO_SHORTFALL, "", note, path, definition)


def _card(card: Card) -> str:
    """One card, its label and tooltip from the KPI registry when it has the card's entry."""
    label, title = card.label, card.title
    entry = _kpi_entry(card.path) if card.path else None
    if entry is not None:
        label = str(getattr(entry, "label", None) or label)
        unit = f" [{entry.unit}]" if getattr(entry, "unit", "") else ""
        title = title or f"{entry.name}{unit}: {entry.definition}"
    tip = f" title='{_e(title)}'" if title else ""
    unit_html = f"<span class='u'> {_e(card.unit)}</span>" if card.unit else ""
    return (
        f"<div class='kpi'{tip}><div class='l'>{_e(label)}</div><div class='v'>"
        f"{_e(card.value)}{unit_html}</div><div class='n'>{_e(card.note)}</div></div>"
    )


def _kpi_entry(path: tuple[str, ...]) -> Any:
    """The KPI registry's entry for a summary path, None without one.

    Imported here, not at the top: the registry (gridsim/kpis.py) may not exist in an older
    checkout, and the report then keeps its own labels.
    """
    try:
        registry = importlib.import_module("gridsim.kpis")
    except ImportError:
        return None
    lookup = getattr(registry, "kpi_for_path", None)
    return lookup(path) if callable(lookup) else None


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
        ("demand volume", _volume(sc)),
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
            ", ".join(f"{name} {h:g}" for name, h in shares.items()) or MISSING,
        )
    )
    body = "".join(f"<dt>{_e(a)}</dt><dd>{_e(b)}</dd>" for a, b in rows)
    note = (
        "Economics assumptions are documented in gridsim/economics.py (job-slot power and "
        "price, amortisation, facility capex per MW [S:dc-capex-per-mw], network price: no "
        "source found); the "
        f"facts they cite, with publication and date, are in {SOURCES}."
    )
    return f"<dl>{body}</dl><p class='sub'>{_e(note)}</p>"


def _volume(sc: Scenario) -> str:
    """National tokens a day at the start: the scenario's, or its market's plans' sum."""
    if sc.demand.tokens_per_day is not None or sc.market is None:
        return f"{human(sc.demand.tokens_per_day, 'tokens')} per day (national, at start)"
    volume = expand(sc)[0].demand.tokens_per_day
    return f"{human(volume, 'tokens')} per day (national, at start; the market's plans)"


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
    # .get: a run written before a count existed (compare reads old folders) shows "—"
    return lambda _id, block, _cost: human_count((block.get("requests") or {}).get(key))


def _sla(_id: str, block: dict[str, Any], _cost: pd.Series[Any] | None) -> str:
    return human_percent(block.get("sla_attainment"))


def _quantile(metric: str, q: str) -> Cell:
    return lambda _id, block, _cost: human_duration_s((block.get(metric) or {}).get(q))


def _token_count(key: str) -> Cell:
    return lambda _id, block, _cost: human_count(_tokens(block, key))


def _cost(column: str) -> Cell:
    """A number from the economics row, scaled (its unit is in the column's head)."""
    return lambda _id, _block, cost: human(None if cost is None else cost.get(column))


def _utilization(key: str) -> Cell:
    return lambda _id, block, _cost: human_percent((block.get("utilization") or {}).get(key))


# The class table is two tables: thirteen columns and more did not fit a page and hid revenue.
CLASS_REQUEST_COLUMNS: tuple[tuple[str, Cell], ...] = (
    ("arrived", _requests("arrived")),
    ("served", _requests("served")),
    ("dropped", _requests("dropped")),
    ("abandoned", _requests("abandoned")),
    ("lost", _requests("lost")),
    ("in flight at the end", _requests("in_flight")),
    ("SLA attainment", _sla),
)
CLASS_LATENCY_COLUMNS: tuple[tuple[str, Cell], ...] = (  # then TTFT, for LLM classes only
    ("latency p50", _quantile("latency_s", "p50")),
    ("latency p95", _quantile("latency_s", "p95")),
    ("latency p99", _quantile("latency_s", "p99")),
)
CLASS_MONEY_COLUMNS: tuple[tuple[str, Cell], ...] = (
    ("tokens served", _token_count("served")),
    ("cost CNY", _cost("cost_cny")),
    ("revenue CNY", _cost("revenue_cny")),
    ("margin CNY", _cost("margin_cny")),
    ("cost CNY per M tokens", _cost("cost_cny_per_m_tokens")),
    ("revenue CNY per M tokens", _cost("revenue_cny_per_m_tokens")),
)
REGION_COLUMNS: tuple[tuple[str, Cell], ...] = (
    ("arrived", _requests("arrived")),
    ("served", _requests("served")),
    ("SLA attainment", _sla),
    ("latency p95", _quantile("latency_s", "p95")),
    ("tokens demanded", _token_count("demanded")),
    ("tokens served", _token_count("served")),
    ("cost CNY", _cost("cost_cny")),
    ("cost CNY per M tokens", _cost("cost_cny_per_m_tokens")),
)
NODE_COLUMNS: tuple[tuple[str, Cell], ...] = (  # after the node's kind
    ("utilisation mean", _utilization("mean")),
    ("utilisation peak", _utilization("peak")),
    ("served", _requests("served")),
    ("latency p95", _quantile("latency_s", "p95")),
    ("energy kWh", _cost("energy_kwh")),
    ("cost CNY", _cost("cost_cny")),
    ("carbon kg", _cost("carbon_kg")),
    ("cost CNY per M tokens", _cost("cost_cny_per_m_tokens")),
)


def _class_table(result: Result, econ: dict[str, Any]) -> str:
    """Requests and SLA; latency (TTFT for LLM classes only: a job has no first token); then
    tokens, cost and revenue."""
    shares = _cache_shares(result, econ)
    kinds = {c.name: c.kind for c in result.scenario.demand.classes}

    # a class split by a market: economics keys its engine classes ("chat/m/paid"), which
    # all bill the class's one share
    for engine, h in list(shares.items()):
        shares.setdefault(engine.split("/")[0], h)

    def cache_hit(name: str, _block: dict[str, Any], _cost: pd.Series[Any] | None) -> str:
        return human_percent(shares.get(name))

    def ttft(name: str, block: dict[str, Any], _cost: pd.Series[Any] | None) -> str:
        if kinds.get(name) == "job":
            return f"{MISSING} (job)"
        return human_duration_s((block.get("ttft_s") or {}).get("p95"))

    latency = (*CLASS_LATENCY_COLUMNS, ("TTFT p95 (LLM classes)", ttft))
    view = _class_groups(result)
    note = ""
    if view is not None:
        note = (
            "<p class='sub'>A token market (or a model mix) runs each class as one engine class "
            "per model and tier; the rows here are the scenario's classes, their engine classes "
            "summed: requests, tokens, cost and revenue added up, SLA attainment pooled over "
            "the requests that ended, latency percentiles the worst engine class's. Revenue "
            "here is at list prices; the token market section has what the plans earn, by "
            "plan, model and tier.</p>"
        )
    return (
        note
        + "<h3>Requests</h3>"
        + _breakdown(result, "class", CLASS_REQUEST_COLUMNS, view=view)
        + "<h3>Latency</h3>"
        + _breakdown(result, "class", latency, view=view)
        + "<h3>Tokens, cost and revenue</h3>"
        + _breakdown(
            result, "class", (*CLASS_MONEY_COLUMNS, ("cache hit share", cache_hit)), view=view
        )
    )


# A class table's rows when the market split classes: (summary block, economics row) per class
ClassView = tuple[dict[str, dict[str, Any]], pd.DataFrame]


def _class_groups(result: Result) -> ClassView | None:
    """The scenario's classes as sums of their engine classes (``market.outputs``), or None
    when no class was split (no market, no model mix)."""
    mmap = market_map(result)
    if mmap is None:
        return None
    groups: dict[str, list[str]] = {}
    for ec in mmap.classes:
        groups.setdefault(ec.base, []).append(ec.name)
    if all(len(members) == 1 for members in groups.values()):
        return None
    by_class = result.summary.get("by_class", {})
    blocks = {
        base: _summed_block([by_class[n] for n in members if n in by_class])
        for base, members in groups.items()
    }
    costs = economics.economics_by(result, "class")
    base_of = {n: base for base, members in groups.items() for n in members}
    costs["class"] = costs["class"].map(lambda n: base_of.get(n, n))
    numeric = [c for c in costs.columns if c != "class"]
    summed = costs.groupby("class", sort=False)[numeric].sum()
    per_m = summed["tokens"].where(summed["tokens"] > 0) / 1e6
    summed["cost_cny_per_m_tokens"] = summed["cost_cny"] / per_m
    summed["revenue_cny_per_m_tokens"] = summed["revenue_cny"] / per_m
    return blocks, summed.reset_index()


def _summed_block(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """One block from engine classes' blocks: counts and tokens added, SLA attainment pooled
    by the requests that ended, each latency statistic the largest (the worst class's)."""
    requests: dict[str, float] = {}
    tokens: dict[str, dict[str, float]] = {"input": {}, "output": {}}
    met = ended = 0.0
    out: dict[str, Any] = {}
    for block in blocks:
        req = block.get("requests") or {}
        for k, v in req.items():
            requests[k] = requests.get(k, 0) + (v or 0)
        for side in tokens:
            for k, v in ((block.get("tokens") or {}).get(side) or {}).items():
                tokens[side][k] = tokens[side].get(k, 0) + (v or 0)
        n = sum(req.get(k) or 0 for k in ("served", "dropped", "abandoned", "lost"))
        if block.get("sla_attainment") is not None:
            met += block["sla_attainment"] * n
            ended += n
        for metric in ("latency_s", "wait_s", "ttft_s"):
            for stat, v in (block.get(metric) or {}).items():
                if isinstance(v, int | float) and stat != "count":
                    worst = (out.setdefault(metric, {})).get(stat)
                    out[metric][stat] = v if worst is None else max(worst, v)
    out |= {
        "requests": requests,
        "tokens": tokens,
        "sla_attainment": met / ended if ended > 0 else None,
    }
    return out


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

    return _breakdown(result, "node", (("kind", kind), *NODE_COLUMNS), text_columns=2)


def _breakdown(
    result: Result,
    by: Literal["class", "region", "node"],
    columns: tuple[tuple[str, Cell], ...],
    text_columns: int = 1,
    view: ClassView | None = None,
) -> str:
    """One row per block of the summary's ``by_<by>`` (or of ``view``: blocks and their
    economics rows): its id, then one cell per column (the first ``text_columns`` of them
    text)."""
    if view is None:
        blocks, table = result.summary.get(f"by_{by}", {}), economics.economics_by(result, by)
    else:
        blocks, table = view
    costs = table.set_index(by)
    rows = []
    for key, block in blocks.items():
        cost: pd.Series[Any] | None = costs.loc[key] if key in costs.index else None
        rows.append([key, *(cell(key, block, cost) for _, cell in columns)])
    return _table([by, *(head for head, _ in columns)], rows, text_columns)


# --- sections drawn only when the summary carries their block ------------------------------


def _capacity_gap(summary: dict[str, Any]) -> str:
    """What runs out, where, and what to add: ``capacity.gap`` by hub and model, then the
    shortfall by model and by hub; empty when the run reports none of them."""
    cap = _capacity(summary)
    gap, by_model, by_hub = cap.get("gap"), cap.get("by_model"), cap.get("by_hub")
    if gap is None and not by_model and not by_hub:
        return ""
    when = _date(cap.get("shortfall_at"))
    model = cap.get("shortfall_model")
    national = (
        f"Nationally, demand outgrows SLO capacity from {when}"
        + (f", {model} first." if model else ".")
        if when
        else f"Nationally, no shortfall: {NO_SHORTFALL}."
    )
    parts = ["<h2>Capacity gap</h2>", f"<p class='desc'>{_e(national)}"]
    if cap.get("definition"):
        parts.append(f" Definition: {_e(cap['definition'])}")
    parts.append("</p>")
    if isinstance(gap, list):
        if gap:
            total = cap.get("gap_cards")
            if total is None:
                total = sum(row.get("cards_to_add") or 0 for row in gap)
            parts.append(
                f"<p class='desc'>Cards to add to hold the SLO through the horizon: "
                f"{_e(human_count(total))} in all.</p>"
            )
            head = [
                "hub",
                "model",
                "accelerator",
                "cards to add",
                "replicas to add",
                "peak demand (erlangs)",
                "SLO capacity at the peak (erlangs)",
                "peak at",
            ]
            rows = [
                [
                    str(row.get("hub", "")),
                    str(row.get("model", "")),
                    str(row.get("accelerator", "")),
                    human_count(row.get("cards_to_add")),
                    human_count(row.get("replicas_to_add")),
                    human(row.get("peak_demand_erlangs")),
                    human(row.get("slo_capacity_erlangs")),
                    _when(row.get("peak_at")),
                ]
                for row in gap
            ]
            parts.append(_table(head, rows, text_columns=3))
        else:
            parts.append(
                "<p class='desc'>No cards to add: every hub and model holds its SLO through "
                "the horizon.</p>"
            )
    if by_model:
        parts.append("<h3>Shortfall by model</h3>")
        head = ["model", "shortfall from", "peak demand (erlangs)", "SLO capacity (erlangs)"]
        rows = [
            [
                str(name),
                _when(block.get("shortfall_at")) if block.get("shortfall_at") else NO_SHORTFALL,
                human(block.get("peak_demand_erlangs")),
                human(block.get("slo_capacity_erlangs")),
            ]
            for name, block in by_model.items()
        ]
        parts.append(_table(head, rows))
    if by_hub:
        parts.append("<h3>Shortfall by hub</h3>")
        rows = [
            [
                str(hub),
                _when(block.get("shortfall_at")) if block.get("shortfall_at") else NO_SHORTFALL,
            ]
            for hub, block in by_hub.items()
        ]
        parts.append(_table(["hub", "shortfall from"], rows))
    return "".join(parts)


def _cost_against_list_prices(summary: dict[str, Any]) -> str:
    """Each model's cost per million tokens beside its list price (``economics.by_model``)."""
    by_model = (summary.get("economics") or {}).get("by_model")
    if not isinstance(by_model, dict) or not by_model:
        return ""
    head = [
        "model",
        "tokens",
        "cost CNY",
        "revenue CNY",
        "margin CNY",
        "cost CNY per M tokens",
        "list price CNY per M tokens",
        "cost as a share of list price",
    ]
    rows = []
    for name, m in by_model.items():
        cost, price = m.get("cost_cny_per_m_tokens"), m.get("list_price_cny_per_m_tokens")
        share = cost / price if cost is not None and price else None
        rows.append(
            [
                str(name),
                human_count(m.get("tokens")),
                human(m.get("cost_cny")),
                human(m.get("revenue_cny")),
                human(m.get("margin_cny")),
                human(cost),
                human(price),
                human_percent(share),
            ]
        )
    note = (
        "List prices are the model's input, cache-hit and output prices blended at this run's "
        "token mix; below 100 % the price covers the cost of serving."
    )
    return (
        "<h2>Cost per million tokens against list prices</h2>"
        + _table(head, rows)
        + f"<p class='sub'>{_e(note)}</p>"
    )


def _token_market(summary: dict[str, Any], figures: list[Path]) -> str:
    """Plans, models and tiers of a token market (``market``, gridsim/market/outputs.py):
    revenue, cost and margin, quota use and breakage, shedding and SLA by tier."""
    market = summary.get("market")
    if not isinstance(market, dict):
        return ""
    plans = market.get("by_plan") or {}
    models = market.get("by_model") or {}
    tiers = market.get("by_tier") or {}
    parts = ["<h2>Token market</h2>", f"<p class='desc'>{_e(_market_prose(market))}</p>"]
    if plans:
        head = ["plan", "billing", "tier", "subscribers", "fee CNY per month", "quota per "
                "month", "used per month", "quota used", "breakage per month", "tokens served",
                "fees CNY", "per-token CNY", "overage CNY", "revenue CNY", "cost CNY",
                "margin CNY"]  # fmt: skip
        rows = [
            [
                str(plan),
                str(p.get("billing") or MISSING),
                str(p.get("tier") or MISSING),
                human_count(p.get("subscribers")),
                human(p.get("fee_cny_per_subscriber_month")),
                human(p.get("quota_tokens_per_subscriber_month")),
                human(p.get("used_tokens_per_subscriber_month")),
                human_percent(p.get("quota_use_share")),
                human(p.get("breakage_tokens_per_subscriber_month")),
                human_count(p.get("served_tokens")),
                *(human(p.get(k)) for k in ("fees_cny", "per_token_cny", "overage_cny")),
                *(human(p.get(k)) for k in ("revenue_cny", "cost_cny", "margin_cny")),
            ]
            for plan, p in plans.items()
        ]
        parts += ["<h3>Plans</h3>", _table(head, rows, text_columns=3)]
        parts.append(
            "<p class='sub'>Per month: per subscriber, in tokens, at the start's prices and "
            "usage (the plans' arithmetic); quota used and breakage are shares and tokens of "
            "the quota paid for. Money and tokens served: over the horizon.</p>"
        )
    if models:
        parts += ["<h3>Models</h3>", _market_models(models)]
    if tiers:
        head = ["tier", "priority", "arrived", "served", "dropped", "abandoned", "shed",
                "shed share", "SLA attainment", "tokens served"]  # fmt: skip
        rows = [
            [
                str(tier),
                human_count(t.get("priority")),
                *(
                    human_count(t.get(f"requests_{k}"))
                    for k in ("arrived", "served", "dropped", "abandoned", "shed")
                ),
                human_percent(t.get("shed_share"), 2),
                human_percent(t.get("sla_attainment")),
                human_count(t.get("tokens_served")),
            ]
            for tier, t in tiers.items()
        ]
        parts += ["<h3>Tiers</h3>", _table(head, rows)]
        parts.append(
            "<p class='sub'>Shed: dropped by admission or abandoned (patience). SLA attainment: "
            "requests that met every SLO over those that ended, pooled over the tier's "
            "classes. Priority 0 is served first (non-preemptive).</p>"
        )
    parts += [_figure(p) for p in figures]
    return "".join(parts)


def _training_power(summary: dict[str, Any], figures: list[Path]) -> str:
    """Training on the cards inference leaves free (``training``) and green power by site
    (``power``): the figures of gridsim/training/outcome.py and gridsim/power/summary.py."""
    training, power = summary.get("training"), summary.get("power")
    if not isinstance(training, dict) and not isinstance(power, dict):
        return ""
    parts = ["<h2>Training and power</h2>"]
    if isinstance(training, dict):
        parts.append(f"<p class='desc'>{_e(_training_prose(summary, training))}</p>")
        head = ["job", "node", "card-hours", "done", "lost", "preemptions", "started",
                "finished", "deadline", "met"]  # fmt: skip
        rows = [
            [
                str(name),
                str(j.get("node") or MISSING),
                human(j.get("card_hours")),
                human(j.get("card_hours_done")),
                human(j.get("card_hours_lost")),
                human_count(j.get("preemptions")),
                *(
                    _dur(j[k]) if j.get(k) is not None else MISSING
                    for k in ("started_at_s", "finished_at_s", "deadline_s")
                ),
                _meets(j.get("met_deadline")),
            ]
            for name, j in (training.get("jobs") or {}).items()
        ]
        parts += ["<h3>Jobs</h3>", _table(head, rows, text_columns=2)]
        parts.append(
            "<p class='sub'>Times after the horizon start. Done: work by the end, lost work "
            "excluded; lost: work since the last checkpoint at each preemption.</p>"
        )
    if isinstance(power, dict):
        target = power.get("green_target_share")
        head = ["site", "electricity kWh", "own renewables kWh", "green share", "meets target"]
        rows = [
            [
                str(node),
                human(b.get("energy_kwh")),
                human(b.get("onsite_kwh")),
                human_percent(b.get("green_share")),
                _meets(b.get("meets_green_target")),
            ]
            for node, b in (power.get("by_node") or {}).items()
        ]
        line = f"Green share of all electricity: {human_percent(power.get('green_share'))}"
        if target is not None:
            line += (
                f" against a target of {human_percent(target)} a site; "
                f"{human_count(power.get('sites_meeting_green_target'))} of "
                f"{human_count(len(rows))} sites meet it"
            )
        line += (
            ". Grid carbon, green share and time-of-use prices hour by hour per province."
            if power.get("hourly")
            else ". One carbon factor and one price per site."
        )
        parts += ["<h3>Green power by site</h3>", f"<p class='sub'>{_e(line)}</p>"]
        parts.append(_table(head, rows))
    parts += [_figure(p) for p in figures]
    return "".join(parts)


def _training_prose(summary: dict[str, Any], t: dict[str, Any]) -> str:
    """One paragraph from the training block's figures."""
    util, util0 = t.get("utilization"), t.get("utilization_inference_only")
    sla, sla0 = summary.get("sla_attainment"), t.get("sla_attainment_inference_only")
    return (
        f"Co-scheduling policy {t.get('policy')}: the fleet lent "
        f"{human(t.get('card_hours_available'), 'card-hours')} to training over the horizon; the "
        f"jobs ran {human(t.get('card_hours_run'), 'card-hours')} and did "
        f"{human(t.get('card_hours_done'), 'card-hours')} of work, losing "
        f"{human(t.get('card_hours_lost'), 'card-hours')} to "
        f"{human_count(t.get('preemptions'))} preemptions; "
        f"{human_count(t.get('jobs_finished'))} of {human_count(len(t.get('jobs') or {}))} jobs "
        f"finished (deadline attainment {human_percent(t.get('deadline_attainment'))}). "
        f"Utilisation of the lending pools' cards: {human_percent(util)} against "
        f"{human_percent(util0)} serving inference alone; SLA attainment "
        f"{human_percent(sla, 2)} against {human_percent(sla0, 2)}. Training drew "
        f"{human(t.get('energy_kwh'), 'kWh')} costing {human_money_cny(t.get('electricity_cny'))} "
        f"and emitting {_mass_kg(t.get('carbon_kg'))}; on cards bought for it the same work "
        f"would have cost {human_money_cny(t.get('dedicated_capex_avoided_cny'))} in capex."
    )


def _market_prose(market: dict[str, Any]) -> str:
    """The market's headline in a sentence or three, every number from the summary."""
    text = (
        f"Over the horizon the plans earned {human_money_cny(market.get('revenue_cny'))} "
        f"(fees {human_money_cny(market.get('fees_cny'))}, per token "
        f"{human_money_cny(market.get('per_token_cny'))}, overage "
        f"{human_money_cny(market.get('overage_cny'))}) against a cost of serving of "
        f"{human_money_cny(market.get('cost_cny'))}: a margin of "
        f"{human_money_cny(market.get('margin_cny'))}, "
        f"{human_money_cny(market.get('national_margin_cny_per_day'))} a day nationally."
    )
    if market.get("breakage_share") is not None:
        text += (
            f" Breakage: {human_percent(market['breakage_share'])} of the quota tokens paid "
            f"for went unused ({human_count(market.get('breakage_tokens'))} tokens)."
        )
    if market.get("throttled_tokens"):
        text += (
            f" {human_count(market['throttled_tokens'])} tokens wanted past a quota or rate "
            "limit were throttled."
        )
    if market.get("free_shed_share") is not None:
        text += (
            f" The free tier shed {human_percent(market['free_shed_share'], 2)} of its requests."
        )
    return text


def _market_models(models: dict[str, Any]) -> str:
    """The top models by tokens served, then the rest summed as "others"."""
    names = sorted(models, key=lambda n: (-(models[n].get("served_tokens") or 0.0), n))
    keys = ("served_tokens", "revenue_cny", "cost_cny", "margin_cny")
    shown = [(n, models[n]) for n in names[:TOP_MODELS]]
    rest = names[TOP_MODELS:]
    if rest:
        summed = {k: sum(models[n].get(k) or 0.0 for n in rest) for k in keys}
        shown.append((f"others ({len(rest)})", summed))
    rows = []
    for name, m in shown:
        tokens = m.get("served_tokens") or 0.0
        per_m = tokens / 1e6 if tokens > 0 else None
        rows.append(
            [
                str(name),
                human_count(tokens),
                *(human(m.get(k)) for k in ("revenue_cny", "cost_cny", "margin_cny")),
                human(_div(m.get("cost_cny"), per_m) if per_m else None),
                human(_div(m.get("revenue_cny"), per_m) if per_m else None),
            ]
        )
    head = ["model", "tokens served", "revenue CNY", "cost CNY", "margin CNY",
            "cost CNY per M tokens", "revenue CNY per M tokens"]  # fmt: skip
    note = (
        "A model's revenue: each plan's per-token and overage revenue shared among the models "
        "it used by the list-price value of their tokens, and its fees by tokens."
    )
    return _table(head, rows) + f"<p class='sub'>{_e(note)}</p>"


def _fleet(summary: dict[str, Any]) -> str:
    """The trace from the fleet inventory to the pool sizes (``fleet``)."""
    fleet = summary.get("fleet")
    if not isinstance(fleet, dict):
        return ""
    trace = (
        f"Inventory {fleet.get('inventory', MISSING)}, case {fleet.get('case', MISSING)}, as of "
        f"{_date(fleet.get('as_of')) or MISSING} → the share of each accelerator that serves "
        "models (the rest trains or does other work) → serving cards → each pool's share of "
        f"them → cards, cards per replica, replicas. Every figure's source is in {SOURCES}."
    )
    parts = ["<h2>Where the capacity comes from</h2>", f"<p class='trace'>{_e(trace)}</p>"]
    by_acc = fleet.get("by_accelerator") or {}
    if by_acc:
        head = ["accelerator", "cards", "serving share", "serving cards", "cards in pools"]
        rows = [
            [
                str(acc),
                human_count(a.get("cards")),
                human_percent(a.get("serving_share")),
                human_count(a.get("serving_cards")),
                human_count(a.get("assigned_cards")),
            ]
            for acc, a in by_acc.items()
        ]
        parts += ["<h3>By accelerator</h3>", _table(head, rows)]
    pools = fleet.get("pools") or []
    if pools:
        head = [
            "node",
            "pool",
            "model",
            "accelerator",
            "share of its accelerator's serving cards",
            "cards",
            "cards per replica",
            "replicas",
        ]
        rows = [
            [
                str(p.get("node", "")),
                str(p.get("pool", "")),
                str(p.get("model", "")),
                str(p.get("accelerator", "")),
                human_percent(p.get("fleet_share"), 2),
                human_count(p.get("cards")),
                human(p.get("cards_per_replica")),
                human_count(p.get("replicas")),
            ]
            for p in pools
        ]
        parts += ["<h3>By pool</h3>", _table(head, rows, text_columns=4)]
    return "".join(parts)


def _uncertainty(summary: dict[str, Any], fan: list[Path]) -> str:
    """P10 / P50 / P90 of the headline KPIs over the Monte Carlo draws (``uncertainty``)."""
    unc = summary.get("uncertainty")
    if not isinstance(unc, dict):
        return ""
    params = [
        str(p.get("path", "?"))
        + " ("
        + ", ".join(f"{k} {v}" for k, v in p.items() if k != "path")
        + ")"
        for p in unc.get("parameters") or []
        if isinstance(p, dict)
    ]
    text = f"{human_count(unc.get('draws'))} draws" + (
        " over " + "; ".join(params) + "." if params else "."
    )
    head = ["KPI", "P10", "P50", "P90", "unit", "draws censored"]
    rows = [
        [
            str(name),
            *(_band(name, band.get(q), band.get("unit", "")) for q in ("p10", "p50", "p90")),
            str(band.get("unit", "")),
            human_count(band.get("censored")),
        ]
        for name, band in (unc.get("bands") or {}).items()
    ]
    note = (
        "A censored draw has no shortfall within the horizon; a percentile that falls among "
        "them reads 'after the horizon'."
    )
    return (
        "<h2>Uncertainty</h2>"
        + f"<p class='desc'>{_e(text)}</p>"
        + _table(head, rows)
        + f"<p class='sub'>{_e(note)}</p>"
        + "".join(_figure(p) for p in fan)
    )


def _band(name: str, value: Any, unit: str) -> str:
    """One percentile of a band: a date as it is, a number in its unit, and a shortfall
    percentile among censored draws (null) as 'after the horizon'."""
    if value is None:
        return "after the horizon" if "shortfall" in name else MISSING
    if isinstance(value, str):
        return _when(value)
    if unit in ("fraction", "share", "ratio", "%"):
        return human_percent(value)
    if unit == "s":
        return human_duration_s(value)
    return human(value)  # the unit is in its own column


def _network_targets(summary: dict[str, Any]) -> str:
    """Regions meeting the 1 / 5 / 20 ms policy targets, and those that do not
    (``topology``)."""
    topo = summary.get("topology")
    if not isinstance(topo, dict):
        return ""
    targets = topo.get("targets_ms") or {}
    meeting = topo.get("regions_meeting") or {}
    regions = topo.get("regions")
    scope = {"city": "within a city", "region": "within a region", "hub": "between hubs"}
    rows = [
        [
            f"{level} ({scope.get(level, level)})",
            human(ms),
            human_count(meeting.get(level)),
            human_count(regions),
        ]
        for level, ms in targets.items()
    ]
    parts = [
        "<h2>Network targets</h2>",
        _table(["target", "latency ms", "regions meeting it", "regions"], rows),
    ]
    by_region = topo.get("by_region") or {}
    failing = {
        region: r
        for region, r in by_region.items()
        if False in (r.get("meets_city"), r.get("meets_region"), r.get("meets_hub"))
    }
    if failing:
        head = [
            "region",
            "nearest node",
            "nearest ms",
            "node in its city",
            "city ms",
            "city target",
            "region target",
            "hub target",
        ]
        rows = [
            [
                str(region),
                str(r.get("nearest_node") or MISSING),
                human(r.get("nearest_ms")),
                str(r.get("city_node") or MISSING),
                human(r.get("city_ms")),
                *(_meets(r.get(f"meets_{level}")) for level in ("city", "region", "hub")),
            ]
            for region, r in failing.items()
        ]
        parts += ["<h3>Regions that miss a target</h3>", _table(head, rows, text_columns=2)]
    elif by_region:
        parts.append("<p class='desc'>Every region meets every target that applies to it.</p>")
    return "".join(parts)


def _meets(flag: Any) -> str:
    """A target met ("yes"), missed ("no"), or not applicable (no site in the city: "—")."""
    return MISSING if flag is None else "yes" if flag else "no"


# --- helpers ---------------------------------------------------------------------------------


def _economics(result: Result) -> dict[str, Any]:
    """The run's economics block when summary.json has one, else computed with defaults."""
    econ = result.summary.get("economics")
    return econ if isinstance(econ, dict) else economics.economics_summary(result)


def _table(head: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    """A table; its first ``text_columns`` columns are text (left-aligned, wrapping), the
    others numbers (right-aligned, kept on one line)."""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='t'>{_e(v)}</td>" if 0 < i < text_columns else f"<td>{_e(v)}</td>"
            for i, v in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
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


def _when(v: Any) -> str:
    """An ISO date-time to the minute ("2026-04-27 20:00"), a date as it is; "—" for none."""
    if not v:
        return MISSING
    text = str(v).replace("T", " ")
    return text[:16]


def _div(v: float | None, d: float) -> float | None:
    return None if v is None else v / d


def _mass_kg(kg: Any) -> str:
    """A mass in kg, in tonnes from a tonne up ("6.04 kg", "14.5 kt")."""
    if isinstance(kg, int | float) and abs(kg) >= 1e3:
        return human(kg / 1e3, "t")
    return human(kg, "kg")


def _capacity(summary: dict[str, Any]) -> dict[str, Any]:
    cap = summary.get("capacity")
    return cap if isinstance(cap, dict) else {}


def _dur(seconds: float) -> str:
    s = float(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size and s % size == 0:
            return f"{s / size:g} {unit}"
    return f"{s:g} s"
