"""Figures and the self-contained report: written, complete, offline, and rendered by a browser."""

from __future__ import annotations

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
    return gs.run(gs.load_scenario(ROOT / "scenarios" / "baseline-hour.yaml"))


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
    assert "east_west" in text and "1e-05" in text and "31 / 30 / 62" in text
    for name in baseline.summary["by_class"]:
        assert f"<td>{name}</td>" in text


def test_warnings_name_the_problems(baseline: Result) -> None:
    found = warnings(baseline)
    for name, block in baseline.summary["by_class"].items():
        flagged = any(w.startswith(f"class {name}:") for w in found)
        assert flagged == (block["sla_attainment"] < 0.95)
    for node, block in baseline.summary["by_node"].items():
        flagged = any(w.startswith(f"node {node} is saturated") for w in found)
        assert flagged == ((block["utilization"]["mean"] or 0) > 0.9)


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
