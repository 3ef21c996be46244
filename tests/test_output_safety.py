"""A user's data is never lost: --overwrite misuse, concurrent runs, bad output places, killed
runs, and a resolved scenario that reproduces its run."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridsim.cli import app
from gridsim.output import OutputError, claim_out_dir, default_out_dir, owner_token
from gridsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
MMC = str(ROOT / "scenarios" / "validation" / "mmc.yaml")
CROSS = str(ROOT / "scenarios" / "validation" / "cross_fidelity.yaml")
QUICK = [
    "--set",
    "horizon.duration=2min",
    "--set",
    "horizon.warmup=0",
    "--set",
    "outputs.figures=false",
]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def user_folder(path: Path) -> dict[str, bytes]:
    path.mkdir(parents=True, exist_ok=True)
    (path / "a").write_text("x\n")
    (path / "notes").mkdir(exist_ok=True)
    (path / "notes" / "b.txt").write_text("keep me\n")
    return snapshot(path)


def snapshot(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(path.rglob("*"))
    }


@pytest.fixture
def no_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A place must be refused before simulating: running at all fails the test."""
    run_module = importlib.import_module("gridsim.run")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the simulation ran before the output place was checked")

    monkeypatch.setattr(run_module, "run", refuse)


def test_overwrite_never_deletes_a_users_folder(tmp_path: Path, no_simulation: None) -> None:
    before = user_folder(tmp_path / "t")
    code, output = invoke("run", MMC, *QUICK, "--out", str(tmp_path / "t"), "--overwrite")
    assert code == 2
    assert "not a gridsim run folder" in output
    assert snapshot(tmp_path / "t") == before


def test_overwrite_of_the_working_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_simulation: None
) -> None:
    before = user_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    for place in (".", "..", str(Path.home()), "results"):
        if place == "results":
            Path("results").mkdir()
        code, output = invoke("run", MMC, *QUICK, "--out", place, "--overwrite")
        assert code == 2, place
        assert "--overwrite never replaces" in output or "not a gridsim run" in output
    assert {k: v for k, v in snapshot(tmp_path).items() if k != "results"} == before


def test_overwrite_replaces_a_run_but_not_a_run_holding_user_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert invoke("run", MMC, *QUICK, "--out", str(out))[0] == 0
    first = json.loads((out / "manifest.json").read_text())
    assert first["kind"] == "gridsim run"
    # Refused without --overwrite, whatever the folder holds.
    code, output = invoke("run", MMC, *QUICK, "--out", str(out))
    assert code == 2 and "already exists" in output
    # A gridsim run folder with nothing else in it is replaced.
    assert invoke("run", MMC, *QUICK, "--seed", "7", "--out", str(out), "--overwrite")[0] == 0
    assert json.loads((out / "summary.json").read_text())["seed"] == 7
    # Once the user has put a file of their own in it, it is theirs: not replaced.
    (out / "my-notes.md").write_text("mine\n")
    before = snapshot(out)
    code, output = invoke("run", MMC, *QUICK, "--out", str(out), "--overwrite")
    assert code == 2 and "my-notes.md" in output
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no lock or temporary left


def test_bad_output_places_fail_before_simulating(tmp_path: Path, no_simulation: None) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x\n")
    long_name = tmp_path / ("n" * 250)
    under_a_file = a_file / "run"
    unwritable = Path("/proc/gridsim-cannot-write-here/run")
    for place, says in (
        (a_file, "not a folder"),
        (long_name, "shorter --out"),
        (under_a_file, "cannot create"),
        (unwritable, "cannot create"),
    ):
        code, output = invoke("run", MMC, *QUICK, "--out", str(place))
        assert code == 2, (place, output)
        assert says in output, output
    assert a_file.read_text() == "x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_claimed_folder_cannot_be_claimed_again(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with claim_out_dir(target), pytest.raises(OutputError, match="another gridsim run"):
        claim_out_dir(target)
    with claim_out_dir(target):  # released: free again
        pass


def test_concurrent_runs_never_replace_each_other(tmp_path: Path) -> None:
    """Two processes, one --out: exactly one writes the folder; the other says why not."""
    out = tmp_path / "shared"
    command = [sys.executable, "-m", "gridsim.cli", "run", MMC, *QUICK, "--out", str(out)]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    refusal = next(text for code, text in outcomes if code == 2)
    assert "another gridsim run" in refusal or "already exists" in refusal
    assert "Traceback" not in refusal
    assert (out / "summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]


def test_default_folders_of_simultaneous_runs_differ() -> None:
    scenario = load_scenario(MMC)
    names = {default_out_dir(scenario, 1, fidelity).name for fidelity in ("request", "flow")}
    names |= {default_out_dir(scenario, 1, "request").name for _ in range(20)}
    assert len(names) == 22  # same second, same seed, same scenario: still all different
    assert any("-flow-" in n for n in names) and any("-request-" in n for n in names)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_what_a_killed_run_left_is_cleaned_and_reported(tmp_path: Path) -> None:
    pid = owner_token(dead_pid())  # "<host>.<pid>", as gridsim names its process
    out = tmp_path / "run"
    lock = tmp_path / ".run.gridsim-lock"
    lock.write_text(f"{pid}\n")
    leftover = tmp_path / f".run.gridsim-tmp-{pid}-abcd1234"
    leftover.mkdir()
    (leftover / "summary.json").write_text("{}")
    other = tmp_path / f".20260101-000000-flow-seed1-abc.gridsim-tmp-{pid}-0badcafe"
    other.mkdir()  # another run's (default folders get new names each time)
    (other / "manifest.json").write_text("{}")
    users = tmp_path / f".run.gridsim-tmp-{pid}-feedbeef"  # holds a file gridsim never writes
    users.mkdir()
    (users / "thesis.tex").write_text("mine\n")
    code, output = invoke("run", MMC, *QUICK, "--out", str(out))
    assert code == 0, output
    assert "left by a gridsim run that was killed" in output
    assert not leftover.exists() and not lock.exists() and not other.exists()
    assert (users / "thesis.tex").read_text() == "mine\n"


def test_a_live_runs_lock_is_respected(tmp_path: Path, no_simulation: None) -> None:
    (tmp_path / ".run.gridsim-lock").write_text(f"{owner_token(os.getppid())}\n")  # alive
    code, output = invoke("run", MMC, *QUICK, "--out", str(tmp_path / "run"))
    assert code == 2 and "another gridsim run" in output


def test_another_machines_runs_are_never_taken_for_dead(tmp_path: Path) -> None:
    """A sweep folder shared by a cluster: a pid of another host says nothing about this one."""
    elsewhere = f"0badf00d.{dead_pid()}"  # no such process here, but it is another machine's
    assert not owner_token().startswith("0badf00d.")
    (tmp_path / ".run.gridsim-lock").write_text(f"{elsewhere}\n")
    writing = tmp_path / f".other.gridsim-tmp-{elsewhere}-abcd1234"
    writing.mkdir()
    (writing / "summary.json").write_text("{}")
    code, output = invoke("run", MMC, *QUICK, "--out", str(tmp_path / "run"))
    assert code == 2 and "another gridsim run" in output
    code, output = invoke("run", MMC, *QUICK, "--out", str(tmp_path / "free"))
    assert code == 0, output
    assert (writing / "summary.json").exists() and (tmp_path / ".run.gridsim-lock").exists()


def test_resolved_scenario_of_a_flow_run_reproduces_it_byte_for_byte(tmp_path: Path) -> None:
    first = tmp_path / "first"
    args = ["--set", "horizon.duration=6h", "--set", "outputs.figures=false"]
    code, output = invoke(
        "run", CROSS, *args, "--fidelity", "flow", "--seed", "3", "--out", str(first)
    )
    assert code == 0, output
    resolved = (first / "scenario.resolved.yaml").read_text()
    assert "fidelity: flow" in resolved and "seed: 3" in resolved
    again = tmp_path / "again"
    code, output = invoke("run", str(first / "scenario.resolved.yaml"), "--out", str(again))
    assert code == 0, output
    assert (again / "summary.json").read_bytes() == (first / "summary.json").read_bytes()
    summary = json.loads((again / "summary.json").read_text())
    assert summary["fidelity"] == "flow" and summary["seed"] == 3
