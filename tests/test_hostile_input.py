"""Every defect found by feeding the CLI hostile input is a test: each ends in exit 2 with a
message that says where, never in a traceback, a hang or a run that should not have happened."""

from __future__ import annotations

import builtins
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gridsim.cli import app

ROOT = Path(__file__).resolve().parents[1]
MMC = ROOT / "scenarios" / "validation" / "mmc.yaml"
LOCATED = re.compile(r"\.yaml:\d+:\d+: ")


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not escaped, f"traceback: {result.exception!r}\n{result.output}"
    assert "Traceback" not in result.output
    assert "internal error" not in result.output, result.output
    return result.exit_code, result.output


def mmc(**changes: Any) -> dict[str, Any]:
    """mmc.yaml as data, with dotted-path changes (``a__b`` for ``a.b``)."""
    data = yaml.safe_load(MMC.read_text())
    for key, value in changes.items():
        node = data
        *parents, last = key.split("__")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        node[last] = value
    return data


def write(tmp_path: Path, data: Any, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text)
    return path


# --- non-finite and absurd numbers: validate refuses, at the field --------------------------

JOBS = "demand__classes__0__"
BAD_VALUES = {
    "infinite duration": ({"horizon__duration": ".inf"}, "horizon.duration"),
    "overflowing duration": ({"horizon__duration": "1e400s"}, "horizon.duration"),
    "infinite rate": ({JOBS + "rate_per_s": ".inf"}, "rate_per_s"),
    "zero series interval": ({"outputs": "{timeseries_interval: 0}"}, "timeseries_interval"),
    "infinite service": ({JOBS + "service": "{dist: exponential, mean: .inf}"}, "service"),
    "nan slo": ({JOBS + "slo": "{ttft: .nan}"}, "slo.ttft"),
    "nan max_wait": ({"admission": "{max_wait: .nan}"}, "admission.max_wait"),
    "nan resolution": ({"horizon__resolution": ".nan"}, "horizon.resolution"),
    "nan event time": (
        {"events": "[{kind: node_outage, node: solo, at: .nan}]"},
        "events[0].at",
    ),
    "infinite shock": (
        {"events": "[{kind: demand_shock, at: 10min, factor: .inf}]"},
        "events[0].factor",
    ),
    "nan in a daily profile": ({JOBS + "diurnal": "[.nan" + ", 1" * 23 + "]"}, "diurnal"),
    "infinite hop latency": ({"network__per_hop_ms": ".inf"}, "network.per_hop_ms"),
    "warm-up past the horizon": ({"horizon__warmup": "3h"}, "horizon.warmup"),
    "runaway decline": (
        {"demand__growth": "{law: exponential, rate_per_month: -1e9}"},
        "demand.growth.rate_per_month",
    ),
}


@pytest.mark.parametrize("case", list(BAD_VALUES), ids=list(BAD_VALUES))
def test_non_finite_and_absurd_numbers_are_refused_at_their_field(
    case: str, tmp_path: Path
) -> None:
    changes, field = BAD_VALUES[case]
    text = yaml.safe_dump(mmc(), sort_keys=False)
    for key, raw in changes.items():  # YAML spellings (.inf, .nan) go in as written
        data = yaml.safe_load(text)
        node = data
        *parents, last = key.split("__")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = "@@"
        text = yaml.safe_dump(data, sort_keys=False).replace("'@@'", raw)
    path = write(tmp_path, text)
    for command in (["validate", path], ["run", path, "--out", tmp_path / "out"]):
        code, output = invoke(*command)
        assert code == 2, output
        assert field in output and LOCATED.search(output), output
    assert not (tmp_path / "out").exists()


# --- resource bombs: refused quickly, without allocating ----------------------------------


def alias_bomb() -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    started = time.perf_counter()
    code, output = invoke("validate", write(tmp_path, alias_bomb()))
    assert code == 2 and "aliases" in output
    assert time.perf_counter() - started < 5


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    code, output = invoke("validate", write(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n"))
    assert code == 2 and "nested" in output


def test_only_regular_files_of_bounded_size_are_read(tmp_path: Path) -> None:
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    for target, says in ((zero, "not a regular file"), ("/dev/zero", "not a scenario file")):
        path = write(tmp_path, {"extends": str(target), **mmc()}, name="child.yaml")
        code, output = invoke("validate", path)
        assert code == 2 and says in output, output
    big = write(tmp_path, "name: x\n" + "# padding\n" * 500_000, name="big.yaml")
    code, output = invoke("validate", big)
    assert code == 2 and "limited to" in output


@pytest.mark.parametrize(
    "sets",
    [
        ["horizon.resolution=1ms", "horizon.duration=10y", "fidelity=flow"],
        ["outputs.timeseries_interval=1us", "horizon.duration=1d"],
        ["horizon.duration=10y", "fidelity=request"],
    ],
    ids=["1ms ticks over 10 years", "1us series", "10 years of requests"],
)
def test_runs_too_big_for_the_machine_are_refused_with_the_estimate(
    sets: list[str], tmp_path: Path
) -> None:
    started = time.perf_counter()
    args = [a for s in sets for a in ("--set", s)]
    code, output = invoke("run", MMC, *args, "--out", tmp_path / "out")
    assert code == 2, output
    assert "run too large" in output and "--force" in output
    assert time.perf_counter() - started < 5
    assert not (tmp_path / "out").exists()


# --- encodings and bytes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, says",
    [
        (b"name: caf\xe9\n", "not UTF-8"),
        ("name: x\n".encode("utf-16"), "UTF-16"),
        (b"name: x\x00y\n", "not allowed"),
    ],
    ids=["latin-1", "utf-16", "nul"],
)
def test_bad_bytes_are_located(raw: bytes, says: str, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(raw)
    code, output = invoke("validate", path)
    assert code == 2 and says in output and LOCATED.search(output), output


def test_catalogue_includes_must_be_yaml_mappings(tmp_path: Path) -> None:
    latin = tmp_path / "extra.yaml"
    latin.write_bytes(b"accelerators:\n  - id: caf\xe9\n")
    listing = tmp_path / "list.yaml"
    listing.write_text("- just\n- a list\n")
    for include, says in (
        (latin, "not UTF-8"),
        ("/etc/passwd", "not a catalogue file"),
        (listing, "holds no mapping"),
    ):
        path = write(tmp_path, {**mmc(), "catalog": {"include": [str(include)]}})
        code, output = invoke("validate", path)
        assert code == 2 and says in output and "catalog.include[0]" in output, output


def test_extends_reads_only_scenario_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("api_password: hunter2\n")
    path = write(tmp_path, {"extends": "secret.txt", **mmc()})
    code, output = invoke("validate", path)
    assert code == 2 and "not a scenario file" in output
    assert "api_password" not in output and "hunter2" not in output


# --- traces named by a scenario: checked by validate, at the field that names them -------


def trace_scenario(tmp_path: Path, trace: Path) -> Path:
    jobs = {
        "name": "chat",
        "model": "qwen3-32b",
        "arrival": {"process": "trace", "path": str(trace)},
    }
    data = yaml.safe_load((ROOT / "scenarios" / "validation" / "cross_fidelity.yaml").read_text())
    data["demand"]["classes"] = [jobs]
    return write(tmp_path, data)


def test_bad_trace_files_are_refused_by_validate(tmp_path: Path) -> None:
    negative = tmp_path / "neg.csv"
    negative.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,-396,109\n"
    )
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{not json\n")
    cases = (
        (tmp_path / "missing.csv", "not found"),
        (tmp_path, "not a regular file"),
        (negative, "negative input token count (data row 2)"),
        (garbage, "not a valid mooncake trace"),
    )
    for trace, says in cases:
        code, output = invoke("validate", trace_scenario(tmp_path, trace))
        assert code == 2, output
        assert says in output and "demand.classes[0].arrival.path" in output, output
        assert LOCATED.search(output), output


# --- places on the command line ---------------------------------------------------------


def test_a_bad_seed_points_at_the_option(tmp_path: Path) -> None:
    code, output = invoke("run", MMC, "--seed", "-5", "--out", tmp_path / "out")
    assert code == 2 and "--seed -5: seed:" in output, output


def test_serving_refuses_non_finite_figures() -> None:
    for value in ("nan", "inf", "-1"):
        code, output = invoke(
            "serving", "--model", "qwen3-32b", "--accelerator", "h20", "--count", "8",
            "--tpot-ms", value, "--json",
        )  # fmt: skip
        assert code == 2 and "--tpot-ms" in output, output
    code, output = invoke(
        "serving", "--model", "qwen3-32b", "--accelerator", "h20", "--count", "8", "--json"
    )
    assert code == 0
    json.loads(output)  # valid JSON (no NaN)


def test_compare_refuses_damaged_runs_and_foreign_folders(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        code, output = invoke(
            "run", MMC, "--set", "horizon.duration=1min", "--set", "horizon.warmup=0",
            "--set", "outputs.figures=false", "--out", tmp_path / name,
        )  # fmt: skip
        assert code == 0, output
        runs.append(tmp_path / name)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine\n")
    code, output = invoke("compare", *runs, "--out", mine)
    assert code == 2 and "thesis.tex" in output
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    (runs[1] / "summary.json").write_text("[1, 2]\n")
    code, output = invoke("compare", *runs, "--out", tmp_path / "cmp")
    assert code == 2 and "expected a JSON object" in output


def test_regress_settings_must_be_a_mapping(tmp_path: Path) -> None:
    scalar = write(tmp_path, "42\n", name="settings.yaml")
    code, output = invoke("regress", "--settings", scalar)
    assert code == 2 and "mapping" in output


def test_topology_and_schema_check_their_output_paths(tmp_path: Path) -> None:
    code, output = invoke("topology", MMC, "--figure", tmp_path / "x.xyz")
    assert code == 2 and "unknown format 'xyz'" in output
    code, output = invoke("schema", "-o", tmp_path)
    assert code == 2 and "is a folder" in output


def test_ctrl_c_while_loading_ends_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    from gridsim import _entry

    real_import = builtins.__import__

    def interrupted(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "gridsim.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "gridsim.cli")
    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as stop:
        _entry.main()
    assert stop.value.code == 130


def test_a_bug_says_it_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that is gridsim's own fault is reported as such (exit 70), not as bad input."""
    import gridsim.scenario.loading as loading

    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("boom")

    monkeypatch.setattr(loading, "resolve_file", broken)
    result = CliRunner().invoke(app, ["validate", str(MMC)])
    assert result.exit_code == 70
    assert "internal error: TypeError: boom" in result.output
    assert "bug in gridsim" in result.output


def test_readme_quotes_the_limits_in_force() -> None:
    from gridsim.estimate import AUTO_REQUEST_MAX, Limits
    from gridsim.scenario.yamlio import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES

    readme = " ".join((ROOT / "README.md").read_text().split())
    limits = Limits()
    for quoted in (
        f"too large ({MAX_FILE_BYTES // 2**20} MiB)",
        f"nested over {MAX_DEPTH} levels",
        f"expand past {MAX_VALUES:,} values",
        f"{limits.requests:.0e} requests".replace("e+0", "e"),
        f"{limits.wall_s / 3600:g} hours",
        f"at most {AUTO_REQUEST_MAX:.0e} expected requests".replace("e+0", "e"),
    ):
        assert quoted in readme, quoted


def test_a_link_outage_naming_no_link_is_refused_before_running(tmp_path: Path) -> None:
    cross = yaml.safe_load((ROOT / "scenarios" / "validation" / "cross_fidelity.yaml").read_text())
    cross["events"] = [{"kind": "link_outage", "a": "shanghai", "b": "yrd", "at": "1h"}]
    path = write(tmp_path, cross)
    for command in (["validate", path], ["run", path, "--out", tmp_path / "out"]):
        code, output = invoke(*command)
        assert code == 2 and "events[0]: no link between 'shanghai' and 'yrd'" in output, output
    assert not (tmp_path / "out").exists()
