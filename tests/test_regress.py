"""``gridsim regress``: the committed golden files pass, a changed KPI is caught (exit 1),
and the tolerance rules do what results/baselines/regress.yaml says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridsim.cli import app
from gridsim.regress import Rule, compare, load_settings, measure, rule_for

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "results" / "baselines"
SETTINGS = BASELINES / "regress.yaml"


def _regress(*args: str) -> object:
    return CliRunner().invoke(app, ["regress", "--settings", str(SETTINGS), *args])


def test_committed_golden_files_pass() -> None:
    result = _regress("--against", str(BASELINES))
    assert result.exit_code == 0, result.output
    assert "baseline:" in result.output and "mmc:" in result.output
    assert "REGRESSION" not in result.output


def test_changed_kpi_is_a_regression(tmp_path: Path) -> None:
    golden = json.loads((BASELINES / "mmc.json").read_text())
    golden["kpis"]["requests.served"] += 1
    golden["kpis"]["latency_s.p95"] *= 1.001
    golden["kpis"]["sla_attainment"] *= 1 + 1e-12  # within the default relative 1e-9
    (tmp_path / "mmc.json").write_text(json.dumps(golden))
    result = _regress("mmc", "--against", str(tmp_path))
    assert result.exit_code == 1, result.output
    moved = [line for line in result.output.splitlines() if "REGRESSION" in line]
    assert any("requests.served" in line for line in moved)
    assert any("latency_s.p95" in line for line in moved)
    assert not any("sla_attainment" in line for line in moved)
    assert "2 KPI(s) outside tolerance" in result.output


def test_update_writes_golden_files(tmp_path: Path) -> None:
    shutil.copy(BASELINES / "mmc.json", tmp_path / "old.json")
    result = _regress("mmc", "--against", str(tmp_path), "--update")
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "mmc.json").read_text())
    assert written["kpis"] == json.loads((BASELINES / "mmc.json").read_text())["kpis"]
    assert _regress("mmc", "--against", str(tmp_path)).exit_code == 0
    missing = _regress("baseline", "--against", str(tmp_path))
    assert missing.exit_code == 2 and "--update" in missing.output


def test_tolerance_rules() -> None:
    rules = load_settings(SETTINGS).tolerances
    assert rule_for("requests.served", 10, rules).exact
    assert rule_for("by_class.jobs.latency_s.count", 10.0, rules).exact
    assert rule_for("latency_s.p95", 1.0, rules).rel == 1e-6
    assert rule_for("sla_attainment", 0.5, rules).rel == 1e-9
    loose = Rule(match="*", rel=1e-6, abs=1e-9)
    assert loose.allows(100.0, 100.00005) and not loose.allows(100.0, 100.0002)
    assert loose.allows(1e-246, 2e-151)  # both zero for every purpose
    assert not Rule(match="*", exact=True).allows(3, 4)
    assert not loose.allows("2026-03-02", None)


def test_statistical_rule() -> None:
    settings = load_settings(SETTINGS)
    mmc = next(b for b in settings.scenarios if b.name == "mmc")
    assert mmc.statistical is not None
    golden = json.loads((BASELINES / "mmc.json").read_text())
    now = json.loads(json.dumps(golden))
    stat = now["statistical"]["wait_s.mean"]
    se = (2 * stat["sd"] ** 2 / stat["n"]) ** 0.5
    stat["mean"] += 3 * se  # within z = 4 standard errors: passes
    assert all(c.ok for c in compare(golden, now, settings.tolerances))
    stat["mean"] += 2 * se  # 5 standard errors: fails
    bad = [c for c in compare(golden, now, settings.tolerances) if not c.ok]
    assert [c.kpi for c in bad] == ["wait_s.mean (mean over 8 seeds)"]


@pytest.mark.parametrize("name", ["mmc"])
def test_golden_files_are_small_and_reproducible(name: str) -> None:
    settings = load_settings(SETTINGS)
    baseline = next(b for b in settings.scenarios if b.name == name)
    doc = measure(baseline, settings.base_dir)
    golden = json.loads((BASELINES / f"{name}.json").read_text())
    assert doc["kpis"] == golden["kpis"]  # deterministic on one machine
    assert (BASELINES / f"{name}.json").stat().st_size < 50_000
