"""Figures and the self-contained report: written, complete, offline, and rendered by a browser."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gridsim as gs
from gridsim.numbers import human_count, human_percent
from gridsim.report import kpis, warnings, write_figures, write_report
from gridsim.run import Result

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MAX_REPORT_BYTES = 5 * 1024 * 1024
# src=/href=/url() pointing anywhere but inside the file (http, https, protocol-relative)
REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//""")

TINY = """
name: tiny-report
description: "A <b>one-node</b> check & an <script>alert('x')</script> attempt"
horizon: {duration: 30min}
regions:
  - {id: here, lat: 30.0, lon: 110.0}
nodes:
  - id: solo
    kind: intelligent_computing
    lat: 31.0
    lon: 112.0
    pools:
      - {id: llm, model: deepseek-v3, accelerator: h20, replicas: 1}
network: {generate: full_mesh}
demand:
  tokens_per_day: 1
  region_weights: equal
  classes:
    - name: chat
      model: deepseek-v3
      rate_per_s: 2.0
      input_tokens: {dist: constant, value: 1000}
      output_tokens: {dist: constant, value: 200}
      slo: {ttft: 2s, e2e: 30s}
outputs: {requests: true}
"""


@pytest.fixture(scope="module")
def baseline() -> Result:
    # a quarter of the hour, its pool sample cut to the pools that fit 1e6 requests (a job
    # pool and an LLM pool): quick, and still a sampled run with tokens
    sets = ["horizon.duration=15min", "demand.sample_pools.max_requests=1e6"]
    return gs.run(gs.load_scenario(ROOT / "scenarios" / "baseline-hour.yaml", sets=sets))


@pytest.fixture(scope="module")
def baseline_report(baseline: Result, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("baseline_report")
    figures = write_figures(baseline, out / "figures")
    return write_report(baseline, out / "report.html", figures)


def test_figures_are_written(baseline: Result, tmp_path: Path) -> None:
    paths = write_figures(baseline, tmp_path / "figures")
    names = {p.stem for p in paths}
    assert names == {"demand_capacity", "utilization", "latency", "cost_energy", "map"}
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", p
        assert 5_000 < len(data) < 600_000, (p, len(data))


def test_report_is_complete_and_offline(baseline: Result, baseline_report: Path) -> None:
    text = baseline_report.read_text("utf-8")
    assert baseline_report.stat().st_size < MAX_REPORT_BYTES
    k = kpis(baseline)
    for label in ("requests arrived", "SLA attainment", "latency p95", "utilisation (mean)"):
        assert label in text
    for label in ("energy per day", "cost per day", "carbon per day", "cost per M tokens"):
        assert f"<div class='l'>{label}</div>" in text
    assert f"<div class='v'>{human_count(k['requests_arrived'])}<" in text
    assert f"<div class='v'>{human_percent(k['sla_attainment'])}<" in text
    assert f"<div class='v'>{human_percent(k['utilization_mean'])}<" in text
    assert text.count("src='data:image/png;base64,") == 5
    assert not REMOTE.search(text)
    assert "<script" not in text.lower()
    for section in ("Warnings", "Scenario and assumptions", "By class", "By region", "By node"):
        assert f"<h2>{section}</h2>" in text
    sample = baseline.summary["sample"]  # what was sampled, and how, is in the report
    assert "east_west" in text and "31 / 30 / 62" in text
    assert html.escape(sample["how"], quote=True) in text or sample["how"] in text
    assert all(pool in text for pool in sample["pools"])
    for name in baseline.summary["by_class"]:
        assert f"<td>{name}</td>" in text
    assert "<th>revenue CNY</th>" in text and "<th>revenue CNY per M tokens</th>" in text
    assert not re.search(r"\d,\d{3}", text.split("<h2>Figures</h2>")[0].split("</style>")[1])


def test_warnings_name_the_problems(baseline: Result) -> None:
    found = warnings(baseline)
    for name, block in baseline.summary["by_class"].items():
        flagged = any(w.startswith(f"class {name}:") for w in found)
        sla = block["sla_attainment"]  # None for a class the run did not simulate
        assert flagged == (sla is not None and sla < 0.95)
    for node, block in baseline.summary["by_node"].items():
        flagged = any(w.startswith(f"node {node} is saturated") for w in found)
        assert flagged == ((block["utilization"]["mean"] or 0) > 0.9)


def test_requests_never_served_are_reported_from_the_results(tmp_path: Path) -> None:
    """An overloaded queue (mmc.yaml at 1.2 x its 8 slots) with impatient users and a wait
    limit: abandoned and dropped requests appear in the KPIs, the card of requests not served,
    the warnings and the class table, with the figures of the run (none typed in); a run
    without a count (a folder written before it existed) shows a dash."""
    sets = [
        "demand.classes[jobs].rate_per_s=9.6",
        "demand.classes[jobs].patience={dist: exponential, mean: 2.0}",
        "admission.max_wait=1s",
        "horizon.duration=20min",
        "outputs.figures=false",
    ]
    result = gs.run(gs.load_scenario(ROOT / "scenarios" / "validation" / "mmc.yaml", sets=sets))
    r = result.summary["requests"]
    assert r["abandoned"] > 0 and r["dropped"] > 0
    k = kpis(result)
    assert (k["requests_abandoned"], k["requests_lost"]) == (r["abandoned"], r["lost"])
    text = write_report(result, tmp_path / "report.html", []).read_text("utf-8")
    unserved = r["dropped"] + r["abandoned"] + r["lost"]
    assert "<div class='l'>requests not served</div>" in text
    assert f"<div class='v'>{human_count(unserved)}<" in text
    dropped, abandoned = human_count(r["dropped"]), human_count(r["abandoned"])
    assert f"dropped {dropped} · abandoned {abandoned} · lost 0" in text
    for key, what in (("abandoned", "gave up waiting"), ("dropped", "turned away")):
        share = r[key] / r["arrived"]
        assert f"{human_count(r[key])} requests {key} ({what}" in text
        assert f"{share * 100:.2f} % of arrivals" in text
    assert "<th>abandoned</th>" in text and "<th>lost</th>" in text
    assert f"<td>{abandoned}</td>" in text
    # "jobs" is a job class: the summary has a TTFT for it (0.874 s), the report shows none
    assert result.summary["by_class"]["jobs"]["ttft_s"]["p95"] > 0.5
    jobs_latency = re.search(r"<tr><td>jobs</td>(?:<td>[^<]*</td>){3}<td>([^<]*)</td></tr>", text)
    assert jobs_latency is not None and jobs_latency.group(1) == "— (job)"
    old = {
        name: {**b, "requests": {k: v for k, v in b["requests"].items() if k != "abandoned"}}
        for name, b in result.summary["by_class"].items()
    }
    older = replace(result, summary={**result.summary, "by_class": old})
    assert "<td>—</td>" in write_report(older, tmp_path / "old.html", []).read_text("utf-8")


def test_text_is_escaped_and_flow_series_are_drawn(tmp_path: Path) -> None:
    result = gs.run(gs.load_scenario_text(TINY))
    # what the flow engine adds: national demand/capacity series and a shortfall date
    times = np.arange(0.0, 1800.0, 60.0)
    grid = pd.concat(
        pd.DataFrame(
            {
                "time_s": times,
                "entity_kind": "grid",
                "entity_id": "national",
                "metric": metric,
                "value": values,
            }
        )
        for metric, values in (
            ("demand_tokens_per_s", 1000 + 20 * times / 60),
            ("capacity_tokens_per_s", np.full(len(times), 1400.0)),
        )
    )
    summary = {**result.summary, "capacity": {"shortfall_at": "2026-03-01"}}
    flow_like = replace(
        result, timeseries=pd.concat([result.timeseries, grid], ignore_index=True), summary=summary
    )
    figures = write_figures(flow_like, tmp_path / "figures")
    assert len(figures) == 5
    html = write_report(flow_like, tmp_path / "report.html", figures).read_text("utf-8")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "<script" not in html and "<b>one-node</b>" not in html
    assert "capacity shortfall" in html and "demand outgrows capacity from 2026-03-01" in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(baseline_report: Path, tmp_path: Path) -> None:
    from PIL import Image

    assert CHROMIUM is not None
    shot = tmp_path / "report.png"
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # a remote fetch could not succeed anyway
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    url = baseline_report.resolve().as_uri()
    run = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,2000", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    console = [ln for ln in run.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape == (2000, 1280)
    assert image.std() > 20, "screenshot looks blank"
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "gridsim report: baseline" in dom.stdout
    assert dom.stdout.count("<img") == 5 and "<table>" in dom.stdout


@pytest.fixture(scope="module")
def tiny() -> Result:
    return gs.run(gs.load_scenario_text(TINY))


def _with(result: Result, **blocks: object) -> Result:
    """``result`` with summary blocks replaced or added (a hand-built summary)."""
    return replace(result, summary={**result.summary, **blocks})


def test_simulated_sample_only_when_the_run_sampled(tiny: Result, tmp_path: Path) -> None:
    whole = write_report(tiny, tmp_path / "whole.html", []).read_text("utf-8")
    assert "simulated sample" not in whole  # sample_fraction 1, no sample_pools
    assert "<div class='n'>whole grid</div>" in whole
    demand = tiny.scenario.demand.model_copy(update={"sample_fraction": 0.25})
    sampled = replace(tiny, scenario=tiny.scenario.model_copy(update={"demand": demand}))
    text = write_report(sampled, tmp_path / "sampled.html", []).read_text("utf-8")
    assert "<div class='n'>simulated sample</div>" in text


def test_shortfall_card_reads_the_capacity_block(tiny: Result, tmp_path: Path) -> None:
    """The card's date, text and tooltip come from summary["capacity"] alone."""
    definition = "The first hour from which over 5 % of a model's demand misses its SLO."
    short = _with(
        tiny,
        capacity={
            "shortfall_at": "2026-04-27T20:00:00",
            "shortfall_at_s": 4_824_000.0,
            "shortfall_model": "deepseek-v3",
            "definition": definition,
            "headroom": {"mean": 0.2, "min": -0.05},
        },
    )
    text = write_report(short, tmp_path / "short.html", []).read_text("utf-8")
    card = (
        f"<div class='kpi' title='{definition.replace(chr(39), '&#x27;')}'>"
        "<div class='l'>capacity shortfall</div><div class='v'>2026-04-27</div>"
        "<div class='n'>demand outgrows SLO capacity; deepseek-v3 first</div></div>"
    )
    assert card in text
    assert "demand outgrows capacity from 2026-04-27 (deepseek-v3 first)" in text
    none = _with(
        tiny,
        capacity={"shortfall_at": None, "definition": definition, "headroom": {"min": 0.123}},
    )
    text = write_report(none, tmp_path / "none.html", []).read_text("utf-8")
    assert "<div class='v'>none within the horizon</div>" in text
    assert "<div class='n'>minimum headroom 12.3 %</div>" in text
    assert "never below 12.3 %" in text
    # the request engine reports no capacity: no card
    assert "capacity shortfall" not in write_report(tiny, tmp_path / "r.html", []).read_text(
        "utf-8"
    )


SECTIONS = (
    "Capacity gap",
    "Cost per million tokens against list prices",
    "Where the capacity comes from",
    "Uncertainty",
    "Network targets",
)


def _row(*cells: str) -> str:
    return "<td>" + "</td><td>".join(cells) + "</td>"


def test_sections_render_their_blocks(tiny: Result, tmp_path: Path) -> None:
    """Each new section from a hand-built block; every expected string is worked out by hand
    from the numbers in the dict."""
    bare = {k: v for k, v in tiny.summary.items() if k not in ("fleet", "uncertainty", "topology")}
    bare["economics"] = {k: v for k, v in bare["economics"].items() if k != "by_model"}
    plain = write_report(replace(tiny, summary=bare), tmp_path / "plain.html", [])
    text = plain.read_text("utf-8")
    assert not any(f"<h2>{name}</h2>" in text for name in SECTIONS)  # no block, no section
    capacity = {
        "shortfall_at": "2026-06-01T08:00:00",
        "shortfall_model": "deepseek-v3",
        "definition": "One definition.",
        "headroom": {"mean": 0.1, "min": -0.2},
        "by_model": {
            "deepseek-v3": {
                "shortfall_at": "2026-06-01T08:00:00",
                "peak_demand_erlangs": 25_000.0,
                "slo_capacity_erlangs": 19_300.0,
            },
            "kimi-k2.5": {
                "shortfall_at": None,
                "peak_demand_erlangs": 800.0,
                "slo_capacity_erlangs": 1_200.0,
            },
        },
        "by_hub": {"yrd": {"shortfall_at": "2026-06-01T08:00:00"}, "gd": {"shortfall_at": None}},
        "gap": [
            {
                "hub": "yrd",
                "model": "deepseek-v3",
                "accelerator": "h20",
                "cards_to_add": 1536,
                "replicas_to_add": 96,
                "peak_demand_erlangs": 25_000.0,
                "slo_capacity_erlangs": 19_300.0,
                "peak_at": "2026-09-30T20:00:00",
            },
            {
                "hub": "gd",
                "model": "kimi-k2.5",
                "accelerator": "ascend-910b",
                "cards_to_add": 640,
                "replicas_to_add": 20,
                "peak_demand_erlangs": 900.0,
                "slo_capacity_erlangs": 850.0,
                "peak_at": "2026-12-31T21:00:00",
            },
        ],
        "gap_cards": 2176,
    }
    by_model = {  # 2e8 CNY over 4e15 tokens: 0.05 CNY per M tokens, 2.5 % of a 2 CNY price
        "deepseek-v3": {
            "tokens": 4e15,
            "cost_cny": 2e8,
            "revenue_cny": 8e9,
            "margin_cny": 7.8e9,
            "cost_cny_per_m_tokens": 0.05,
            "list_price_cny_per_m_tokens": 2.0,
        },
        "private-model": {
            "tokens": 1e9,
            "cost_cny": 600.0,
            "revenue_cny": 0.0,
            "margin_cny": -600.0,
            "cost_cny_per_m_tokens": 0.6,
            "list_price_cny_per_m_tokens": None,
        },
    }
    fleet = {
        "inventory": "china-accelerators",
        "case": "central",
        "as_of": "2025-12-31",
        "by_accelerator": {
            "h20": {
                "cards": 1e6,
                "serving_share": 0.6,
                "serving_cards": 6e5,
                "assigned_cards": 5.99e5,
            }
        },
        "pools": [  # 36.45 % of 600 k serving cards: 218,700 cards, 16 a replica: 13,668
            {
                "node": "zhangjiakou",
                "pool": "llm",
                "model": "deepseek-v3",
                "accelerator": "h20",
                "fleet_share": 0.3645,
                "cards": 218_700,
                "cards_per_replica": 16,
                "replicas": 13_668,
            }
        ],
    }
    uncertainty = {
        "draws": 20,
        "parameters": [{"path": "demand.growth.rate_per_month", "dist": "triangular", "low": 0.08}],
        "bands": {
            "shortfall_day": {"p10": 41.5, "p50": 55.0, "p90": None, "unit": "d", "censored": 3},
            "sla_attainment": {"p10": 0.91, "p50": 0.95, "p90": 0.99, "unit": "%", "censored": 0},
        },
    }
    topology = {
        "targets_ms": {"city": 1.0, "region": 5.0, "hub": 20.0},
        "by_region": {
            "henan": {
                "nearest_node": "zhengzhou_airport",
                "nearest_ms": 0.42,
                "city_node": "zhengzhou_airport",
                "city_ms": 0.42,
                "meets_city": True,
                "meets_region": True,
                "meets_hub": True,
            },
            "tibet": {
                "nearest_node": "qingyang",
                "nearest_ms": 23.7,
                "city_node": None,
                "city_ms": None,
                "meets_city": None,
                "meets_region": False,
                "meets_hub": False,
            },
        },
        "regions_meeting": {"city": 1, "region": 1, "hub": 1},
        "regions": 2,
    }
    econ = {**tiny.summary["economics"], "by_model": by_model}
    full = _with(
        tiny,
        capacity=capacity,
        economics=econ,
        fleet=fleet,
        uncertainty=uncertainty,
        topology=topology,
    )
    fan = tmp_path / "figures" / "fan.png"
    fan.parent.mkdir()
    from PIL import Image

    Image.new("RGB", (4, 4), "white").save(fan)
    text = write_report(full, tmp_path / "report.html", []).read_text("utf-8")
    for name in SECTIONS:
        assert f"<h2>{name}</h2>" in text
    # capacity gap: 1,536 + 640 = 2,176 cards; 25,000 and 19,300 erlangs at the peak
    assert "2.18 k in all" in text
    assert _row("1.54 k", "96", "25.0 k", "19.3 k", "2026-09-30 20:00") in text
    assert "<td class='t'>ascend-910b</td>" + _row("640", "20", "900", "850") in text
    assert "<tr><td>kimi-k2.5</td>" + _row("none within the horizon", "800", "1.20 k") in text
    assert "<tr><td>yrd</td><td>2026-06-01 08:00</td></tr>" in text
    assert "<tr><td>gd</td><td>none within the horizon</td></tr>" in text
    # cost against list prices
    assert (
        "<tr><td>deepseek-v3</td>"
        + _row("4.00 P", "200 M", "8.00 G", "7.80 G", "0.0500", "2.00", "2.5 %")
        in text
    )
    assert (
        "<tr><td>private-model</td>" + _row("1.00 G", "600", "0", "-600", "0.600", "—", "—") in text
    )
    # fleet: the trace, then 1 M cards, 60 % serving = 600 k, 599 k in pools
    assert "Inventory china-accelerators, case central, as of 2025-12-31" in text
    assert "SOURCES.md" in text and "../shared" not in text
    assert "<tr><td>h20</td>" + _row("1.00 M", "60.0 %", "600 k", "599 k") in text
    assert "<td class='t'>h20</td>" + _row("36.45 %", "219 k", "16", "13.7 k") in text
    # uncertainty: a censored P90 of the shortfall reads "after the horizon"
    assert "20 draws over demand.growth.rate_per_month (dist triangular, low 0.08)." in text
    assert (
        "<tr><td>shortfall_day</td>" + _row("41.5", "55.0", "after the horizon", "d", "3") in text
    )
    assert "<tr><td>sla_attainment</td>" + _row("91.0 %", "95.0 %", "99.0 %", "%", "0") in text
    uncertainty_html = text.split("<h2>Uncertainty</h2>")[1].split("<h2>")[0]
    assert uncertainty_html.count("src='data:image/png;base64,") == 1  # the fan chart
    assert text.count("src='data:image/png;base64,") == 1  # and not under Figures too
    # network targets: 1 of 2 regions meets each; tibet misses region and hub, henan is fine
    assert "<tr><td>city (within a city)</td>" + _row("1.00", "1", "2") in text
    assert "<tr><td>hub (between hubs)</td>" + _row("20.0", "1", "2") in text
    assert (
        "<tr><td>tibet</td><td class='t'>qingyang</td>" + _row("23.7", "—", "—", "—", "no", "no")
        in text
    )
    assert "<tr><td>henan</td>" not in text


# Measures the page in the browser: the report stays script-free, a copy gets this script.
# It records the page's width against the window's, and every card value, table cell and
# table wrapper whose content is wider than its box (clipped, or scrolled out of sight).
MEASURE = """<script>
window.addEventListener('load', () => {
  const clipped = [];
  for (const el of document.querySelectorAll('.kpi, .kpi .v, .kpi .n, td, th, .scroll')) {
    if (el.scrollWidth > el.clientWidth) {
      clipped.push([el.tagName + '.' + el.className, el.textContent.slice(0, 60),
                    el.scrollWidth, el.clientWidth]);
    }
  }
  const pre = document.createElement('pre');
  pre.id = 'measure';
  pre.style.display = 'none';
  pre.textContent = JSON.stringify({inner: window.innerWidth,
    scroll: document.documentElement.scrollWidth, cells: document.querySelectorAll('td').length,
    cards: document.querySelectorAll('.kpi').length, clipped: clipped});
  document.body.appendChild(pre);
});
</script>"""
LONG = "xinjiang_hami_intelligent_computing_centre_phase_two_extension"


def _measure(report: Path, tmp_path: Path) -> dict[str, object]:
    """Open a copy of ``report`` with MEASURE in headless Chromium at 1,280 px; the numbers."""
    import json

    assert CHROMIUM is not None
    page = tmp_path / f"measured-{report.stem}.html"
    page.write_text(report.read_text("utf-8").replace("</body>", MEASURE + "</body>"), "utf-8")
    run = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,2000",
            "--virtual-time-budget=10000",  # the load event (images decoded) before the dump
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    found = re.search(r"<pre id=\"measure\"[^>]*>(.*?)</pre>", run.stdout, re.S)
    assert found, "the measuring script did not run: " + run.stdout[-500:]
    return dict(json.loads(html.unescape(found.group(1))))


def _largest(tiny: Result, monkeypatch: pytest.MonkeyPatch) -> Result:
    """The largest plausible numbers in every place the report shows one: 1e16 tokens, 1e13
    requests, 40 pools on nodes with long ids, 31 regions, a gap row per pool."""
    import gridsim.economics as econ_module

    big, tokens = 1e13, 1e16
    nodes = [f"{LONG}_{i:02d}" for i in range(40)]
    regions = [f"region_{LONG[:20]}_{i:02d}" for i in range(31)]
    requests = {k: big for k in ("arrived", "served", "dropped", "abandoned", "lost", "in_flight")}
    tok = {k: {"demanded": tokens, "served": tokens} for k in ("input", "output")}
    q = {"mean": 86400.0 * 999, "p50": 86400.0 * 999, "p95": 86400.0 * 999, "p99": 86400.0 * 999}
    block = {
        "requests": requests,
        "tokens": tok,
        "sla_attainment": 0.999,
        "latency_s": q,
        "wait_s": q,
        "ttft_s": q,
        "utilization": {"mean": 0.999, "peak": 1.0},
    }
    econ = {
        **tiny.summary["economics"],
        **{k: -9.99e15 for k in tiny.summary["economics"] if k.endswith(("_cny", "_per_day"))},
        "energy_kwh": 9.99e15,
        "carbon_kg": 9.99e15,
        "assumptions": {"cache_hit_share_by_class": {"chat": 0.5}},
        "by_model": {
            f"model_{LONG}_{i}": {
                "tokens": tokens,
                "cost_cny": -9.99e15,
                "revenue_cny": 9.99e15,
                "margin_cny": -9.99e15,
                "cost_cny_per_m_tokens": 9.99e15,
                "list_price_cny_per_m_tokens": 1e-9,
            }
            for i in range(5)
        },
    }
    when = "2036-12-31T23:00:00"
    capacity = {
        "shortfall_at": when,
        "shortfall_model": f"model_{LONG}",
        "definition": "A definition. " * 30,
        "headroom": {"mean": -0.999, "min": -9.99},
        "by_model": {
            f"model_{LONG}_{i}": {
                "shortfall_at": when,
                "peak_demand_erlangs": big,
                "slo_capacity_erlangs": big,
            }
            for i in range(5)
        },
        "by_hub": {n: {"shortfall_at": when} for n in nodes},
        "gap": [
            {
                "hub": n,
                "model": f"model_{LONG}",
                "accelerator": f"accelerator_{LONG}",
                "cards_to_add": big,
                "replicas_to_add": big,
                "peak_demand_erlangs": big,
                "slo_capacity_erlangs": big,
                "peak_at": when,
            }
            for n in nodes
        ],
        "gap_cards": big * 40,
    }
    fleet = {
        "inventory": LONG,
        "case": LONG,
        "as_of": "2025-12-31",
        "by_accelerator": {
            f"accelerator_{i}_{LONG}": {
                "cards": big,
                "serving_share": 0.999,
                "serving_cards": big,
                "assigned_cards": big,
            }
            for i in range(4)
        },
        "pools": [
            {
                "node": n,
                "pool": f"pool_{LONG}",
                "model": f"model_{LONG}",
                "accelerator": f"accelerator_{LONG}",
                "fleet_share": 0.9999,
                "cards": big,
                "cards_per_replica": 512,
                "replicas": big,
            }
            for n in nodes
        ],
    }
    band = {"p10": -9.99e15, "p50": 9.99e15, "p90": None, "unit": "CNY/M tokens", "censored": 999}
    uncertainty = {
        "draws": 100_000,
        "parameters": [{"path": f"demand.{LONG}", "dist": "triangular", "low": 1e15}] * 6,
        "bands": {f"shortfall_{LONG}_{i}": band for i in range(6)},
    }
    topology = {
        "targets_ms": {"city": 1.0, "region": 5.0, "hub": 20.0},
        "by_region": {
            r: {
                "nearest_node": nodes[0],
                "nearest_ms": 9.99e5,
                "city_node": nodes[1],
                "city_ms": 9.99e5,
                "meets_city": False,
                "meets_region": False,
                "meets_hub": False,
            }
            for r in regions
        },
        "regions_meeting": {"city": 0, "region": 0, "hub": 0},
        "regions": len(regions),
    }
    summary = {
        **tiny.summary,
        "requests": requests,
        "tokens": tok,
        "latency_s": q,
        "by_class": {name: block for name in ("chat", f"class_{LONG}")},
        "by_region": {r: block for r in regions},
        "by_node": {n: block for n in nodes},
        "economics": econ,
        "capacity": capacity,
        "fleet": fleet,
        "uncertainty": uncertainty,
        "topology": topology,
    }
    columns = ("cost_cny", "revenue_cny", "margin_cny", "energy_kwh", "carbon_kg")

    def economics_by(result: Result, by: str, *args: object, **kwargs: object) -> pd.DataFrame:
        ids = list(result.summary[f"by_{by}"])
        frame = pd.DataFrame({by: ids, **{c: -9.99e15 for c in columns}})
        return frame.assign(cost_cny_per_m_tokens=9.99e15, revenue_cny_per_m_tokens=9.99e15)

    monkeypatch.setattr(econ_module, "economics_by", economics_by)
    return replace(tiny, summary=summary)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_fits_1280_px_without_clipping(
    baseline_report: Path, tiny: Result, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The baseline report, and one of the largest plausible numbers and longest ids, at 1,280
    px: no sideways scrolling, and no card value or table cell wider than its box."""
    largest = write_report(_largest(tiny, monkeypatch), tmp_path / "largest.html", [])
    assert "10.0 T" in largest.read_text("utf-8")  # the 1e13 requests, human-scaled
    for report in (baseline_report, largest):
        m = _measure(report, tmp_path)
        assert m["inner"] == 1280, m
        assert m["cards"] and m["cells"], m  # it measured something
        assert m["scroll"] <= m["inner"], f"{report.name} scrolls sideways: {m}"
        assert not m["clipped"], f"{report.name}: clipped {m['clipped'][:5]}"
