"""Writing a run's folder safely: claimed before simulating, written whole, never clobbering.

Contents: summary.json, timeseries.parquet (tidy), flows.parquet (served by class, region and
pool), pools.parquet (pool attributes), requests.parquet (when asked for), market_plans.parquet
and market_models.parquet (a token market: per plan and per model, ``gridsim.market.outputs``),
scenario.resolved.yaml (re-runnable as is), manifest.json, and (``outputs.figures``)
figures/*.png and a self-contained report.html.

A user's data is never deleted or replaced:

- the output place is checked and claimed (``claim_out_dir``) *before* the simulation, with an
  exclusive lock file beside it, so two runs can never write the same folder and a bad place
  fails in a second rather than after an hour of simulation;
- the folder is written as a temporary sibling and renamed into place at the end, so nothing
  is left half-written: on any error the temporary folder goes and an existing folder stays;
- ``overwrite`` replaces only a folder that is a gridsim run (its manifest says so) holding
  nothing but what gridsim writes, and never the working folder, a parent of it, the home
  folder, the results root or ``/``;
- what a killed run left behind (a stale lock or temporary folder, named after its process)
  is removed by the next run that writes beside it, and reported.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import secrets
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from gridsim.run import Result
from gridsim.scenario import Scenario
from gridsim.scenario.resolved import dump_resolved

RESULTS_ROOT = Path("results")
RUN_KIND = "gridsim run"  # manifest.json "kind": what marks a folder as gridsim's own
PLAN_KIND = "gridsim plan"  # a plan folder (gridsim.planner.outputs)
# Everything a run or a sweep writes into a run folder; a folder holding anything else is not
# replaced, whatever its manifest says.
RUN_FILES = frozenset(
    {
        "summary.json",
        "timeseries.parquet",
        "flows.parquet",
        "pools.parquet",
        "requests.parquet",
        "scenario.resolved.yaml",
        "manifest.json",
        "report.html",
        "run.json",
        "draws.parquet",  # gridsim run --draws: one row per Monte Carlo draw
        "market_plans.parquet",  # a token market: one row per plan (gridsim.market.outputs)
        "market_models.parquet",  # a token market: one row per model
        # gridsim plan (gridsim.planner.outputs): the plan as a scenario, its build-outs, the
        # plans compared, the capacity-added figure
        "plan.yaml",
        "builds.parquet",
        "builds.csv",
        "comparison.csv",
        "capacity_added.png",
    }
)
_LOCK = ".gridsim-lock"
_TMP = ".gridsim-tmp-"
_OLD = ".gridsim-old-"
# Locks and helper folders name their process as "<host>.<pid>": a sweep folder may be shared
# by machines (a Dask cluster), and only a process on this machine can be known to be gone.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_SUFFIX_BYTES = len(f"..{_TMP}{_HOST}.{2**22}-{'0' * 8}")  # the longest helper name beside a run


class OutputError(ValueError):
    """An output place that cannot or must not be written (a clear message, exit 2)."""


def default_out_dir(
    scenario: Scenario, seed: int, fidelity: str, root: Path = RESULTS_ROOT
) -> Path:
    """A new ``results/<scenario>/<run id>``. The id says when, which engine and seed, which
    resolved scenario (a hash), and ends in a random part, so two runs started in the same
    second never share a folder (the claim is exclusive anyway)."""
    digest = hashlib.sha256(dump_resolved(scenario).encode()).hexdigest()[:8]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{fidelity}-seed{seed}-{digest}-{secrets.token_hex(3)}"
    return root / scenario.name / run_id


def is_gridsim_run(folder: Path) -> bool:
    """Whether ``folder`` is a run folder gridsim wrote (manifest and summary present)."""
    manifest = folder / "manifest.json"
    if folder.is_symlink() or not folder.is_dir() or not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    # Runs written before the "kind" marker carry the version and input hashes.
    ours = isinstance(data, dict) and (
        data.get("kind") in (RUN_KIND, PLAN_KIND) or {"gridsim", "inputs_sha256"} <= data.keys()
    )
    return ours and (folder / "summary.json").is_file()


def foreign_entries(folder: Path) -> list[str]:
    """Names in a run folder that gridsim did not write there (these block --overwrite)."""
    out = []
    for entry in sorted(folder.iterdir()):
        if entry.name == "figures" and entry.is_dir() and not entry.is_symlink():
            out += [f"figures/{f.name}" for f in sorted(entry.iterdir()) if f.suffix != ".png"]
        elif entry.name not in RUN_FILES or entry.is_symlink() or not entry.is_file():
            out.append(entry.name)
    return out


class RunSlot:
    """A claimed output folder: held (by its lock file) until written or released."""

    def __init__(self, target: Path, overwrite: bool, lock: Path, cleaned: list[Path]):
        self.target = target
        self.overwrite = overwrite
        self.cleaned = cleaned  # what killed runs had left here, now removed
        self._lock: Path | None = lock

    def __enter__(self) -> RunSlot:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.unlink(missing_ok=True)
            self._lock = None

    def write(self, result: Result) -> Path:
        """Write ``result`` to a temporary sibling, then put it in place; release the claim."""
        return self.write_with(lambda tmp: _write_contents(result, tmp))

    def write_with(self, fill: Callable[[Path], None]) -> Path:
        """Have ``fill`` write the folder's files into a temporary sibling, then put it in
        place; release the claim. On any error (or Ctrl-C) nothing is left behind."""
        if self._lock is None:
            raise RuntimeError("this output folder was already written or released")
        target = self.target
        tmp = target.parent / f".{target.name}{_TMP}{owner_token()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            fill(tmp)
            _check_place(target, self.overwrite)  # still as it was claimed?
            if target.exists():
                old = target.parent / f".{target.name}{_OLD}{owner_token()}-{secrets.token_hex(4)}"
                target.rename(old)
                try:
                    tmp.rename(target)
                except BaseException:
                    old.rename(target)
                    raise
                shutil.rmtree(old)  # a gridsim run holding only gridsim's files (checked)
            else:
                tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            self.release()
        return target


def claim_out_dir(target: Path, overwrite: bool = False) -> RunSlot:
    """Check ``target`` and claim it for one run before anything is simulated.

    Raises ``OutputError`` (what is wrong and what to do) when the place is not writable, is a
    file, holds a folder that is not to be replaced, or another run is writing it.
    """
    target = Path(os.path.abspath(target))
    _check_place(target, overwrite)
    name_max = _name_max(target.parent)
    if len(target.name.encode()) + _SUFFIX_BYTES > name_max:
        raise OutputError(
            f"{target}: the folder name is {len(target.name.encode())} bytes; names here hold "
            f"at most {name_max - _SUFFIX_BYTES}; choose a shorter --out"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {target.parent}: {exc.strerror}; choose --out") from None
    if not target.parent.is_dir():
        raise OutputError(f"{target.parent} is not a folder; choose another --out")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{target.parent} is not writable; choose another --out")
    lock = target.parent / f".{target.name}{_LOCK}"
    _take_lock(lock, target)
    try:
        cleaned = _clean_leftovers(target)
        _check_place(target, overwrite)  # again, now that no other run can change it
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    return RunSlot(target, overwrite, lock, cleaned)


def write_run(result: Result, out_dir: Path, overwrite: bool = False) -> Path:
    """Claim ``out_dir`` and write ``result`` there (see ``claim_out_dir`` for the rules)."""
    with claim_out_dir(out_dir, overwrite) as slot:
        return slot.write(result)


def _check_place(target: Path, overwrite: bool) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise OutputError(f"{target} exists and is not a folder; choose another --out")
    if not target.exists():
        return
    if not overwrite:
        raise OutputError(
            f"{target} already exists; pass --overwrite to replace a gridsim run folder, "
            "or choose another --out"
        )
    protected = _protected_places()
    if target.resolve() in protected or target.resolve() in Path.cwd().resolve().parents:
        raise OutputError(
            f"{target} is the working folder, a parent of it, the home folder, the results "
            "root or /; --overwrite never replaces those; choose a run folder inside it"
        )
    if not is_gridsim_run(target):
        raise OutputError(
            f"{target} is not a gridsim run folder (no gridsim manifest.json and summary.json); "
            "--overwrite replaces only gridsim's own run folders; choose another --out"
        )
    foreign = foreign_entries(target)
    if foreign:
        listing = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise OutputError(
            f"{target} holds files gridsim did not write ({listing}); move them out first, "
            "or choose another --out"
        )


def _protected_places() -> set[Path]:
    return {
        Path("/"),
        Path.cwd().resolve(),
        Path.home().resolve(),
        RESULTS_ROOT.resolve(),
    }


def _take_lock(lock: Path, target: Path) -> None:
    """Create ``lock`` exclusively (O_EXCL); a lock whose process is gone is taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(lock)
            if owner is None or not _gone(owner):
                who = f"process {owner}" if owner else "unknown process"
                raise OutputError(
                    f"another gridsim run ({who}) is writing {target}; wait for it, or choose "
                    f"another --out (if no run is writing there, remove {lock})"
                ) from None
            lock.unlink(missing_ok=True)  # left by a killed run
            continue
        except OSError as exc:
            raise OutputError(f"cannot write in {lock.parent}: {exc.strerror}") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{owner_token()}\n")
        return
    raise OutputError(f"could not lock {target}; another run keeps claiming it")


def _clean_leftovers(target: Path) -> list[Path]:
    """Remove what killed runs left beside ``target`` (any run's, since default run ids are
    new each time): temporary and replaced folders holding only gridsim's files, and locks,
    all named after a process of this machine that is gone."""
    removed = []
    for marker in (_TMP, _OLD):
        for entry in target.parent.glob(f".*{marker}*"):
            owner = entry.name.rpartition(marker)[2].rpartition("-")[0]
            if not _gone(owner) or entry.is_symlink() or not entry.is_dir():
                continue
            if foreign_entries(entry):
                continue  # not only gridsim's files: leave it alone
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    for lock in target.parent.glob(f".*{_LOCK}"):
        held_by = _read_owner(lock)
        if held_by is not None and _gone(held_by):
            lock.unlink(missing_ok=True)
            removed.append(lock)
    return removed


def owner_token(pid: int | None = None) -> str:
    """``<host>.<pid>`` of this process (or of ``pid`` on this machine)."""
    return f"{_HOST}.{os.getpid() if pid is None else pid}"


def _read_owner(lock: Path) -> str | None:
    if lock.is_symlink() or not lock.is_file():
        return None
    return lock.read_text("utf-8", errors="replace").strip() or None


def _gone(owner: str) -> bool:
    """Whether the process ``owner`` names is known to have ended: only this machine's can be."""
    host, _, pid = owner.partition(".")
    if host != _HOST or not pid.isdigit() or len(pid) >= 10:
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's process
    return False


def _name_max(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return int(os.pathconf(probe, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _write_contents(result: Result, folder: Path) -> None:
    _dump_json(folder / "summary.json", result.summary)
    result.timeseries.to_parquet(folder / "timeseries.parquet", index=False)
    result.flows.to_parquet(folder / "flows.parquet", index=False)
    result.pools.to_parquet(folder / "pools.parquet", index=False)
    if result.scenario.outputs.requests:
        result.requests.to_parquet(folder / "requests.parquet", index=False)
    if "market" in result.summary:  # per plan and per model, as summary.json's market block
        from gridsim.market.outputs import models_table, plans_table

        plans_table(result).to_parquet(folder / "market_plans.parquet", index=False)
        models_table(result).to_parquet(folder / "market_models.parquet", index=False)
    (folder / "scenario.resolved.yaml").write_text(dump_resolved(result.scenario), "utf-8")
    _dump_json(folder / "manifest.json", {"kind": RUN_KIND, **result.manifest})
    if result.scenario.outputs.figures:
        from gridsim.report import write_figures, write_report

        figures = write_figures(result, folder / "figures")
        write_report(result, folder / "report.html", figures)


def read_run(run_dir: Path) -> Result:
    """A run folder back as a Result (for reports and comparisons)."""
    from gridsim.scenario import load_scenario

    run_dir = Path(run_dir)
    if not is_gridsim_run(run_dir):
        raise FileNotFoundError(
            f"{run_dir} is not a gridsim run folder (no gridsim manifest.json and summary.json)"
        )
    summary = read_json(run_dir / "summary.json")
    manifest = read_json(run_dir / "manifest.json")
    requests = run_dir / "requests.parquet"
    return Result(
        scenario=load_scenario(run_dir / "scenario.resolved.yaml"),
        summary=summary,
        timeseries=pd.read_parquet(run_dir / "timeseries.parquet"),
        requests=pd.read_parquet(requests) if requests.exists() else pd.DataFrame(),
        flows=pd.read_parquet(run_dir / "flows.parquet"),
        pools=pd.read_parquet(run_dir / "pools.parquet"),
        manifest=manifest,
    )


def read_json(path: Path) -> dict[str, Any]:
    """A run folder's JSON object (summary.json, manifest.json), or ValueError saying why not."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc}); the run folder is damaged") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n", "utf-8")


__all__ = [
    "PLAN_KIND",
    "OutputError",
    "RunSlot",
    "claim_out_dir",
    "default_out_dir",
    "is_gridsim_run",
    "read_run",
    "write_run",
]
