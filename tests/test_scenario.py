"""The scenario language: errors with places, extends, overrides, --set and precedence."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import gridsim as gs
from gridsim.cli import app
from gridsim.scenario import ScenarioError, load_scenario, load_scenario_text
from gridsim.scenario.resolved import dump_resolved
from gridsim.scenario.units import format_duration, parse_date, parse_duration

DATA = Path(__file__).parent / "data"
runner = CliRunner()


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


# --- all problems at once ----------------------------------------------------------------

FIVE = {
    "nodes[0].pools[0].replcas": (19, "did you mean 'replicas'"),
    "nodes[1].pools[0].replicas": (27, "greater than or equal to 0"),
    "nodes[2].pools[0].accelerator": (33, "unknown accelerator 'h1000'"),
    "horizon.duration": (9, "not a duration"),
    "nodes[2].kind": (28, "required field 'kind' is missing"),
}


def test_five_mistakes_python_api_one_exception_with_the_list() -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(DATA / "five_mistakes.yaml")
    problems = {p.dotted: p for p in info.value.problems}
    assert set(problems) == set(FIVE)
    for path, (line, text) in FIVE.items():
        problem = problems[path]
        assert problem.mark is not None and problem.mark.line == line, path
        assert problem.mark.column > 0
        assert text in problem.message or text in str(problem), (path, problem.message)


def test_five_mistakes_cli_exit_2_all_listed_no_traceback() -> None:
    result = runner.invoke(app, ["validate", str(DATA / "five_mistakes.yaml")])
    assert result.exit_code == 2
    text = result.output
    assert "Traceback" not in text
    for path, (line, _) in FIVE.items():
        assert re.search(rf"five_mistakes\.yaml:{line}:\d+: {re.escape(path)}: ", text), path


def test_valid_file_exits_zero() -> None:
    result = runner.invoke(app, ["validate", "scenarios/validation/mmc.yaml"])
    assert result.exit_code == 0, result.output


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "name: x\nhorizon: {duration: 1h\nnodes: []\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    [problem] = info.value.problems
    assert "invalid YAML" in problem.message
    assert problem.mark is not None and problem.mark.line >= 2


def test_duplicate_key_is_an_error(tmp_path: Path, minimal_yaml: str) -> None:
    path = write(tmp_path, "dup.yaml", minimal_yaml + "name: again\n")
    with pytest.raises(ScenarioError, match="duplicate key 'name'"):
        load_scenario(path)


def test_unsafe_yaml_tags_are_refused_not_run(tmp_path: Path, minimal_yaml: str) -> None:
    marker = tmp_path / "pwned"
    text = minimal_yaml.replace(
        "name: tiny", f"name: !!python/object/apply:os.system ['touch {marker}']"
    )
    with pytest.raises(ScenarioError, match="invalid YAML"):
        load_scenario(write(tmp_path, "evil.yaml", text))
    assert not marker.exists()


def test_unknown_policy_and_unservable_class(minimal_yaml: str) -> None:
    text = minimal_yaml + "policy: {name: least_loded}\n"
    with pytest.raises(ScenarioError, match="did you mean 'least_loaded'"):
        load_scenario_text(text)
    text = minimal_yaml.replace("kind: job, rate_per_s: 1", "kind: llm, model: qwen3-32b, share: 1")
    text = text.replace(
        "service: {dist: exponential, mean: 1}",
        "input_tokens: {dist: constant, value: 100}, output_tokens: {dist: constant, value: 10}",
    )
    with pytest.raises(ScenarioError, match="no node can serve class 'jobs'"):
        load_scenario_text(text)


# --- extends, overrides, --set, precedence ---------------------------------------------


@pytest.fixture
def chain(tmp_path: Path, minimal_yaml: str) -> Path:
    (tmp_path / "base").mkdir()
    write(tmp_path / "base", "root.yaml", minimal_yaml + "seed: 1\ndescription: root\n")
    write(
        tmp_path,
        "middle.yaml",
        "extends: base/root.yaml\nseed: 2\nnetwork: {per_hop_ms: 0.5}\n"
        "overrides:\n  slow: {network.per_hop_ms: 3.0}\n",
    )
    return write(
        tmp_path,
        "leaf.yaml",
        "extends: middle.yaml\nname: leaf\n"
        "overrides:\n"
        "  more_slots:\n    nodes[n1].pools[p].slots: 16\n"
        "  bigger:\n    nodes[0].pools[0].slots: 32\n    seed: 9\n",
    )


def test_extends_chain_merges_mappings(chain: Path) -> None:
    s = load_scenario(chain)
    assert s.name == "leaf"  # leaf beats root
    assert s.seed == 2  # middle beats root
    assert s.description == "root"  # inherited
    assert s.network.per_hop_ms == 0.5
    assert s.network.generate == "full_mesh"  # mapping merged, not replaced


def test_overrides_apply_in_order_and_come_from_any_file_of_the_chain(chain: Path) -> None:
    assert load_scenario(chain, ["slow"]).network.per_hop_ms == 3.0
    s = load_scenario(chain, ["more_slots", "bigger"])
    assert s.nodes[0].pools[0].slots == 32 and s.seed == 9
    s = load_scenario(chain, ["bigger", "more_slots"])
    assert s.nodes[0].pools[0].slots == 16


def test_unknown_override_name(chain: Path) -> None:
    with pytest.raises(ScenarioError, match="no override named 'slwo'; did you mean 'slow'"):
        load_scenario(chain, ["slwo"])


def test_set_by_index_id_and_yaml_values(chain: Path) -> None:
    s = load_scenario(
        chain,
        sets=[
            "nodes[n1].pue=1.15",
            "nodes[0].pools[0].slots=7",
            "horizon.duration=2h",
            "demand.classes[jobs].service={dist: constant, value: 3}",
        ],
    )
    assert s.nodes[0].pue == 1.15
    assert s.nodes[0].pools[0].slots == 7
    assert s.horizon.duration == 7200.0
    assert s.demand.classes[0].service is not None
    assert s.demand.classes[0].service.dist == "constant"


def test_precedence_file_then_override_then_set(chain: Path) -> None:
    assert load_scenario(chain).network.per_hop_ms == 0.5
    assert load_scenario(chain, ["slow"]).network.per_hop_ms == 3.0
    s = load_scenario(chain, ["slow"], ["network.per_hop_ms=9"])
    assert s.network.per_hop_ms == 9.0


def test_set_errors_name_the_argument(chain: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(chain, sets=["nodes[nope].pue=1.2"])
    assert "no item 'nope'" in str(info.value) and "--set nodes[nope].pue=1.2" in str(info.value)
    with pytest.raises(ScenarioError) as info:
        load_scenario(chain, sets=["network.per_hop_sm=1"])
    [problem] = info.value.problems
    assert problem.mark is not None and problem.mark.source.startswith("--set")
    assert "did you mean 'per_hop_ms'" in problem.message


def test_extends_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "extends: b.yaml\nname: a\n")
    write(tmp_path, "b.yaml", "extends: c.yaml\n")
    write(tmp_path, "c.yaml", "extends: a.yaml\n")
    with pytest.raises(ScenarioError, match=r"extends cycle a.yaml -> b.yaml -> c.yaml -> a.yaml"):
        load_scenario(tmp_path / "a.yaml")


def test_error_in_parent_points_at_the_parent_file(tmp_path: Path, minimal_yaml: str) -> None:
    write(tmp_path, "base.yaml", minimal_yaml.replace("kind: data_centre", "kind: datacentre"))
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nseed: 3\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(child)
    [problem] = info.value.problems
    assert problem.dotted == "nodes[0].kind"
    assert problem.mark is not None and problem.mark.source.endswith("base.yaml")


# --- catalogue additions, show, schema ---------------------------------------------------


def test_catalog_inline_override_and_include(tmp_path: Path, minimal_yaml: str) -> None:
    write(
        tmp_path,
        "chips.yaml",
        "accelerators:\n  - {id: my-chip, peak_tflops: 500, hbm_gb: 144, "
        "hbm_bandwidth_tb_per_s: 5, tdp_w: 900, price_cny: 200000}\n",
    )
    text = minimal_yaml + (
        "catalog:\n  include: [chips.yaml]\n  accelerators: [{id: h20, price_cny: 99000}]\n"
    )
    path = write(tmp_path, "s.yaml", text)
    s = load_scenario(path)
    cat = gs.scenario.scenario_catalog(s)
    assert cat.accelerators["my-chip"].hbm_gb == 144
    assert cat.accelerators["h20"].price_cny == 99000
    assert cat.accelerators["h20"].hbm_gb == 96  # untouched fields kept


def test_bad_catalog_entry_is_reported_with_its_path(minimal_yaml: str) -> None:
    text = minimal_yaml + "catalog:\n  accelerators: [{id: h20, hbm_gb: -1}]\n"
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text)
    assert [p.dotted for p in info.value.problems] == ["catalog.accelerators[0].hbm_gb"]


def test_show_output_is_rerunnable_as_is(tmp_path: Path, chain: Path) -> None:
    s = load_scenario(chain, ["bigger"], ["horizon.duration=90min"])
    again = load_scenario(write(tmp_path, "resolved.yaml", dump_resolved(s)))
    assert again == s
    result = runner.invoke(app, ["show", str(chain), "--set", "seed=5"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.output)["seed"] == 5


def test_schema_command_writes_json_schema(tmp_path: Path) -> None:
    target = tmp_path / "schema.json"
    result = runner.invoke(app, ["schema", "-o", str(target)])
    assert result.exit_code == 0
    doc = json.loads(target.read_text())
    assert {"name", "horizon", "nodes", "demand"} <= set(doc["properties"])
    assert set(doc["required"]) >= {"name", "horizon", "regions", "nodes", "demand"}


def test_catalog_command_prints_tables() -> None:
    result = runner.invoke(app, ["catalog", "sites", "--kind", "cluster", "--csv"])
    assert result.exit_code == 0
    assert result.output.count("\n") == 11  # header + 10 clusters
    assert runner.invoke(app, ["catalog", "chips"]).exit_code == 2


# --- units -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("30s", 30), ("5min", 300), ("2h", 7200), ("30d", 2_592_000), (12, 12.0)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["5m", "five min", "-3s", "5 minutes", True, None])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_duration_round_trip_and_dates() -> None:
    for seconds in (0.25, 30, 300, 7200, 86400 * 30, 1.5):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
    assert str(parse_date("2026-03")) == "2026-03-01"
    assert str(parse_date("2024-01-15")) == "2024-01-15"
    with pytest.raises(ValueError):
        parse_date("March 2026")


def test_a_layer_that_changes_a_growth_law_replaces_it(tmp_path: Path, minimal_yaml: str) -> None:
    base = minimal_yaml.replace(
        "  tokens_per_day: 1\n",
        "  tokens_per_day: 1\n  growth: {law: exponential, rate_per_month: 0.1}\n",
    )
    write(tmp_path, "base.yaml", base)
    child = write(
        tmp_path,
        "child.yaml",
        "extends: base.yaml\ndemand:\n  growth:\n    law: piecewise\n    points:\n"
        "      - {date: 2024-01, tokens_per_day: 0.1e12}\n"
        "      - {date: 2026-03, tokens_per_day: 140e12}\n",
    )
    growth = load_scenario(child).demand.growth
    assert growth.law == "piecewise"  # not merged with rate_per_month, which would be an error


# --- patience ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patience", "field", "says"),
    [
        ("{dist: exponential, mean: -30}", "patience.mean", "greater than 0"),
        ("{dist: exponential, mean: 0}", "patience.mean", "greater than 0"),
        ("{dist: exponential, mean: .nan}", "patience.mean", "finite number"),
        ("{dist: lognormal, mean: .inf, sigma: 1}", "patience.mean", "finite number"),
        ("{dist: constant, value: -1}", "patience.value", "greater than 0"),
        ("{dist: constant, value: .inf}", "patience.value", "finite number"),
        ("{dist: lognormal, mean: 60, sigma: -1}", "patience.sigma", "greater than 0"),
        ("{dist: weibull, mean: 60}", "patience", "dist"),
        ("-5", "patience", "valid dictionary"),
    ],
)
def test_patience_refuses_bad_values_at_its_field(
    patience: str, field: str, says: str, minimal_yaml: str, tmp_path: Path
) -> None:
    text = minimal_yaml.replace(
        "service: {dist: exponential, mean: 1}}",
        f"service: {{dist: exponential, mean: 1}}, patience: {patience}}}",
    )
    assert "patience" in text
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text)
    [problem] = info.value.problems
    assert problem.dotted == f"demand.classes[0].{field}", problem.dotted
    assert says in problem.message, problem.message
    assert problem.mark is not None and problem.mark.line == 17  # the class line
    result = runner.invoke(app, ["validate", str(write(tmp_path, "bad.yaml", text))])
    assert result.exit_code == 2 and f"demand.classes[0].{field}" in result.output
    assert "Traceback" not in result.output


def test_patience_is_optional_round_trips_and_is_in_the_schema(
    minimal_yaml: str, tmp_path: Path
) -> None:
    sc = load_scenario_text(minimal_yaml)
    assert sc.demand.classes[0].patience is None
    text = minimal_yaml.replace(
        "service: {dist: exponential, mean: 1}}",
        "service: {dist: exponential, mean: 1}, patience: {dist: exponential, mean: 90}}",
    )
    sc = load_scenario_text(text)
    assert sc.demand.classes[0].patience is not None
    assert sc.demand.classes[0].patience.mean == 90
    again = load_scenario_text(dump_resolved(sc))
    assert again.demand.classes[0].patience == sc.demand.classes[0].patience
    out = tmp_path / "schema.json"
    assert runner.invoke(app, ["schema", "-o", str(out)]).exit_code == 0
    doc = json.loads(out.read_text("utf-8"))
    [demand_class] = [d for d in doc["$defs"].values() if "patience" in d.get("properties", {})]
    assert "abandoned" in demand_class["properties"]["patience"]["description"]
