"""``gridsim regress``: the committed golden files pass, a changed KPI is caught (exit 1),
tolerances are keyed by KPI registry names, and an old golden file reads with a clear
message."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest
from typer.testing import CliRunner

from gridsim.cli import app
from gridsim.regress import TOLERANCES, Rule, Statistical, compare, load_settings, rule_for

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ROOT / "results" / "baselines"
SETTINGS = BASELINES / "regress.yaml"


def _regress(*args: str, settings: Path = SETTINGS) -> object:
    return CliRunner().invoke(app, ["regress", "--settings", str(settings), *args])


@pytest.fixture(scope="module")
def settings_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed settings with absolute scenario paths and without the tolerances block
    (tolerances now live in gridsim/regress.py, keyed by registry names)."""
    text = SETTINGS.read_text("utf-8").split("\ntolerances:")[0]
    text = text.replace("../../scenarios/", f"{ROOT / 'scenarios'}/")
    path = tmp_path_factory.mktemp("settings") / "regress.yaml"
    path.write_text(text, "utf-8")
    return path


@pytest.fixture(scope="module")
def golden_dir(settings_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mmc's golden file as --update writes it today."""
    folder = tmp_path_factory.mktemp("golden")
    result = _regress("mmc", "--against", str(folder), "--update", settings=settings_file)
    assert result.exit_code == 0, result.output
    return folder


def test_committed_golden_files_pass() -> None:
    result = _regress("--against", str(BASELINES))
    assert result.exit_code == 0, result.output
    assert "baseline:" in result.output and "mmc:" in result.output
    assert "REGRESSION" not in result.output


def test_golden_keys_are_registry_names(golden_dir: Path) -> None:
    golden = json.loads((golden_dir / "mmc.json").read_text())
    assert golden["kpis"]["requests_served"] > 0
    assert "by_class.jobs.latency_p95_s" in golden["kpis"]
    assert not any(k.startswith(("by_region.", "by_node.", "by_pool.")) for k in golden["kpis"])
    assert set(golden["statistical"]) == {
        "requests_served",
        "wait_mean_s",
        "wait_share_waited",
        "latency_mean_s",
        "utilization_mean",
    }
    assert (golden_dir / "mmc.json").stat().st_size < 50_000


def test_changed_kpi_is_a_regression(golden_dir: Path, settings_file: Path, tmp_path: Path) -> None:
    golden = json.loads((golden_dir / "mmc.json").read_text())
    golden["kpis"]["requests_served"] += 1
    golden["kpis"]["latency_p95_s"] *= 1.001
    golden["kpis"]["sla_attainment"] *= 1 + 1e-12  # within the default relative 1e-9
    (tmp_path / "mmc.json").write_text(json.dumps(golden))
    result = _regress("mmc", "--against", str(tmp_path), settings=settings_file)
    assert result.exit_code == 1, result.output
    moved = [line for line in result.output.splitlines() if "REGRESSION" in line]
    assert any("requests_served" in line for line in moved)
    assert any("latency_p95_s" in line for line in moved)
    assert not any("sla_attainment" in line for line in moved)
    assert "2 KPI(s) outside tolerance" in result.output


def test_update_writes_golden_files(golden_dir: Path, settings_file: Path, tmp_path: Path) -> None:
    result = _regress("mmc", "--against", str(tmp_path), "--update", settings=settings_file)
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "mmc.json").read_text())
    assert written["kpis"] == json.loads((golden_dir / "mmc.json").read_text())["kpis"]
    assert _regress("mmc", "--against", str(tmp_path), settings=settings_file).exit_code == 0
    missing = _regress("baseline", "--against", str(tmp_path), settings=settings_file)
    assert missing.exit_code == 2 and "--update" in missing.output


def test_old_golden_file_reads_with_a_clear_message(settings_file: Path, tmp_path: Path) -> None:
    """A golden file from before the registry (dotted summary paths): every KPI reads as gone
    or new, and the line says to rewrite it; no traceback."""
    old = {
        "scenario": "mmc",
        "kpis": {"requests.served": 12946, "latency_s.p95": 4.8},
        "statistical": {"wait_s.mean": {"mean": 0.87, "sd": 0.1, "n": 8}},
        "theory": {"wait_s.mean": 0.8769},
    }
    (tmp_path / "mmc.json").write_text(json.dumps(old))
    result = _regress("mmc", "--against", str(tmp_path), settings=settings_file)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "not KPI registry names (e.g. requests.served)" in result.output
    assert "gridsim regress --update" in result.output


def test_tolerances_are_keyed_by_registry_names() -> None:
    assert rule_for("requests_served", 10).exact
    counts = rule_for("by_class.jobs.latency_count", 10.0)
    # whole request counts stay exact below 1e12; a fluid count may move in its 14th digit
    assert not counts.allows(999_999_999, 1_000_000_000)
    assert counts.allows(1.082469924e11, 1.082469924e11 * (1 + 2e-14))
    assert not counts.allows(1.082469924e11, 1.082469924e11 * (1 + 1e-11))
    assert rule_for("latency_p95_s", 1.0).rel == 1e-6
    assert rule_for("by_class.jobs.wait_p99_s", 1.0).rel == 1e-6
    assert rule_for("cost_cny_per_m_tokens", 1.0).rel == 1e-6
    assert rule_for("sla_attainment", 0.5).rel == 1e-9  # no rule: the default
    assert rule_for("latency_p95_s", 1.0, [Rule(match="latency_p*", rel=0.1)]).rel == 0.1
    assert "sla_attainment" not in TOLERANCES
    loose = Rule(match="*", rel=1e-6, abs=1e-9)
    assert loose.allows(100.0, 100.00005) and not loose.allows(100.0, 100.0002)
    assert loose.allows(1e-246, 2e-151)  # both zero for every purpose
    assert not Rule(match="*", exact=True).allows(3, 4)
    assert not loose.allows("2026-03-02", None)


def test_a_name_not_in_the_registry_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="matches no KPI registry name"):
        Rule(match="latency_s.p95", rel=1e-6)  # a summary path, not a registry name
    with pytest.raises(pydantic.ValidationError, match="not in the KPI registry"):
        Statistical(seeds=[1, 2], kpis=["no_such_kpi"])
    # a dotted summary path of a statistical KPI still reads, as its registry name
    assert Statistical(seeds=[1, 2], kpis=["wait_s.mean"]).kpis == ["wait_mean_s"]
    text = SETTINGS.read_text("utf-8").split("\ntolerances:")[0]
    (tmp_path / "r.yaml").write_text(text + '\ntolerances:\n  - {match: "*.count", exact: true}\n')
    with pytest.raises(ValueError, match=r"r.yaml: tolerances.0.match.*matches no KPI"):
        load_settings(tmp_path / "r.yaml")


def test_statistical_rule(golden_dir: Path, settings_file: Path) -> None:
    settings = load_settings(settings_file)
    golden = json.loads((golden_dir / "mmc.json").read_text())
    now = json.loads(json.dumps(golden))
    stat = now["statistical"]["wait_mean_s"]
    se = stat["sd"] / stat["n"] ** 0.5  # against the closed form: one sample's standard error
    stat["mean"] = golden["theory"]["wait_mean_s"] + 3 * se  # within z = 4: passes
    assert all(c.ok for c in compare(golden, now, settings.tolerances))
    stat["mean"] += 2 * se  # 5 standard errors: fails
    bad = [c for c in compare(golden, now, settings.tolerances) if not c.ok]
    assert [c.kpi for c in bad] == ["wait_mean_s (mean over 8 seeds)"]
