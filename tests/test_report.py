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
    for label in ("energy", "cost", "carbon", "cost per M tokens"):
        assert f"<div class='l'>{label}</div>" in text
    assert f"{k['requests_arrived']:,}" in text
    assert f"{k['sla_attainment']:.1%}" in text
    assert f"{k['utilization_mean']:.1%}" in text
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
    assert f"<div class='v'>{unserved:,}" in text
    assert f"dropped {r['dropped']:,} · abandoned {r['abandoned']:,} · lost 0" in text
    for key, what in (("abandoned", "gave up waiting"), ("dropped", "turned away")):
        share = r[key] / r["arrived"]
        assert f"{r[key]:,} requests {key} ({what}" in text
        assert f"{share:.2%} of arrivals" in text
    assert "<th>abandoned</th>" in text and "<th>lost</th>" in text
    assert f"<td>{r['abandoned']:,}</td>" in text
    old = {
        name: {**b, "requests": {k: v for k, v in b["requests"].items() if k != "abandoned"}}
        for name, b in result.summary["by_class"].items()
    }
    older = replace(result, summary={**result.summary, "by_class": old})
    assert "<td>–</td>" in write_report(older, tmp_path / "old.html", []).read_text("utf-8")


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
