"""Regression checks: baseline scenarios against committed golden KPIs, with a tolerance per
metric (``gridsim regress``).

A settings file (``results/baselines/regress.yaml``) lists the baselines (scenario file,
``--set`` overrides, seed, and optionally a statistical block) and the tolerance rules; the
golden files are ``<against>/<name>.json``. The KPIs are the summary's headline blocks and
``by_class``, flattened to dotted names (``latency_s.p95``, ``by_class.chat.sla_attainment``).

Rules, first match (``fnmatch`` on the dotted name) wins; without a match, integers, strings
and nulls must be equal and floats agree to a relative 1e-9 (runs are deterministic on one
machine). A ``statistical`` block runs the scenario over several seeds and compares the mean
of each listed KPI. Where the block names a closed form (``theory: erlang_c``, for an M/M/c
scenario) the reference is the theory, computed from the scenario itself and recorded in the
golden file: the check passes when ``|mean - theory| <= z * sd / sqrt(n)`` (a z test against
the closed form; z = 4 by default), and the recorded theory must match today's. Other KPIs are
compared with the golden seeds' mean: ``|mean - golden mean| <= z * sqrt(sd^2/n +
sd_golden^2/n)`` (a two-sample z test). On one machine the seeds give the same values; it is
the check that stays meaningful when the random streams change (a numpy upgrade), when the
per-value checks can only say that something moved.
"""

from __future__ import annotations

import fnmatch
import json
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from gridsim.scenario.yamlio import read_yaml

if TYPE_CHECKING:
    from gridsim.scenario import Scenario

BLOCKS = (  # the summary's blocks that are compared (by_region, by_node, by_pool left out)
    "requests",
    "tokens",
    "sla_attainment",
    "latency_s",
    "wait_s",
    "ttft_s",
    "utilization",
    "economics",
    "capacity",
    "by_class",
)
SKIP = {("economics", "by_node_kind"), ("economics", "assumptions")}
MISSING = "<missing>"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rule(_Strict):
    """How close a KPI must stay: ``exact``, or within ``rel`` (relative) or ``abs``."""

    match: str
    exact: bool = False
    rel: float = Field(default=1e-9, ge=0)
    abs: float = Field(default=0.0, ge=0)
    why: str = ""

    def allows(self, golden: Any, now: Any) -> bool:
        if self.exact or not _number(golden) or not _number(now):
            return bool(golden == now)
        return abs(now - golden) <= max(self.abs, self.rel * abs(golden))

    def text(self) -> str:
        if self.exact:
            return "exact"
        return f"rel {self.rel:g}" + (f", abs {self.abs:g}" if self.abs else "")


EXACT = Rule(match="*", exact=True)
DEFAULT_RULE = Rule(match="*", rel=1e-9, abs=1e-12)


def rule_for(kpi: str, golden: Any, rules: Sequence[Rule]) -> Rule:
    """The first rule whose pattern matches; else exact for integers, 1e-9 for floats."""
    for rule in rules:
        if fnmatch.fnmatchcase(kpi, rule.match):
            return rule
    return DEFAULT_RULE if isinstance(golden, float) else EXACT


class Statistical(_Strict):
    seeds: list[int] = Field(min_length=2)
    kpis: list[str] = Field(min_length=1)
    z: float = Field(default=4.0, gt=0)
    theory: Literal["erlang_c"] | None = None  # a closed form to compare the seeds' means with


class Baseline(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    file: str
    set: list[str] = Field(default_factory=list)
    seed: int | None = None
    statistical: Statistical | None = None


class Settings(_Strict):
    scenarios: list[Baseline] = Field(min_length=1)
    tolerances: list[Rule] = Field(default_factory=list)
    base_dir: Path = Path(".")  # where the file was; scenario paths are relative to it


@dataclass(frozen=True)
class Check:
    scenario: str
    kpi: str
    golden: Any
    now: Any
    rule: str
    ok: bool

    @property
    def moved(self) -> bool:
        return bool(self.golden != self.now)


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    lines: dict[str, str] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(not c.ok for c in self.checks)


def load_settings(path: str | Path) -> Settings:
    """Read and check the settings file (errors as ``ValueError`` naming the field)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no regression settings at {path}; pass --settings FILE")
    data = read_yaml(path).data or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: regression settings are a mapping (scenarios:, tolerances:)")
    try:
        return Settings.model_validate({**data, "base_dir": path.resolve().parent})
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"{path}: {problems}") from None


def flatten(summary: dict[str, Any]) -> dict[str, Any]:
    """The compared KPIs of a summary, by dotted name."""
    out: dict[str, Any] = {}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if path in SKIP:
            return
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, str(key)))
        elif not isinstance(node, list):
            out[".".join(path)] = node

    for block in BLOCKS:
        if block in summary:
            walk(summary[block], (block,))
    return out


def measure(baseline: Baseline, base_dir: Path) -> dict[str, Any]:
    """Run a baseline (and its statistical seeds): the golden document it would write."""
    import numpy as np

    from gridsim import __version__
    from gridsim.run import run
    from gridsim.scenario import load_scenario

    scenario = load_scenario(base_dir / baseline.file, sets=baseline.set, seed=baseline.seed)
    doc: dict[str, Any] = {
        "scenario": baseline.name,
        "settings": _settings_of(baseline, scenario.seed),
        "versions": {"gridsim": __version__, "numpy": np.__version__},
        "python": platform.python_version(),
        "kpis": flatten(run(scenario).summary),
    }
    if baseline.statistical is not None:
        samples = [flatten(run(scenario, seed=s).summary) for s in baseline.statistical.seeds]
        doc["statistical"] = {
            kpi: _moments([float(s[kpi]) for s in samples if _number(s.get(kpi))])
            for kpi in baseline.statistical.kpis
        }
        if baseline.statistical.theory == "erlang_c":
            closed = erlang_c_theory(scenario)
            doc["theory"] = {k: v for k, v in closed.items() if k in baseline.statistical.kpis}
    return doc


def erlang_c_theory(scenario: Scenario) -> dict[str, float]:
    """M/M/c closed forms (Erlang C) for a scenario that is one queue: one pool of c slots, one
    job class with Poisson arrivals at lambda (no growth, profile or events) and exponential
    service of mean s, no network delay, no admission limits and no patience (nobody
    abandons). With a = lambda s < c and C = P(wait > 0) (Erlang C): mean wait
    W = C s / (c - a), mean latency W + s, utilisation a / c, and requests served over the
    horizon T: lambda T arrive, less the lambda (W + s) still in the system at the end
    (Little's law, stationary)."""
    import numpy as np

    from gridsim.engine.queueing import erlang_c
    from gridsim.grid import build_grid
    from gridsim.scenario.schema import Exponential, NoGrowth, Poisson

    pools = [pool for node in scenario.nodes for pool in node.pools]
    demand = scenario.demand
    cls = demand.classes[0]
    admission = scenario.admission
    if not (
        len(pools) == 1
        and pools[0].slots
        and len(demand.classes) == 1
        and cls.kind == "job"
        and cls.rate_per_s is not None
        and isinstance(cls.arrival, Poisson)
        and isinstance(cls.service, Exponential)
        and cls.patience is None
        and isinstance(demand.growth, NoGrowth)
        and cls.diurnal is None
        and cls.weekly is None
        and not scenario.events
        and admission.queue_limit is None
        and admission.max_wait is None
        and not build_grid(scenario).latency_s.any()
    ):
        raise ValueError(
            f"{scenario.name}: theory erlang_c needs an M/M/c scenario: one pool, one job class "
            "with Poisson arrivals and exponential service, no growth, profile, events, "
            "admission limits, patience or network delay"
        )
    c = float(pools[0].slots)
    rate = cls.rate_per_s * demand.sample_fraction  # the region weights add up to 1
    service = cls.service.mean
    load = rate * service
    if load >= c:
        raise ValueError(f"{scenario.name}: M/M/c has no steady state at load {load} >= {c}")
    p_wait = float(erlang_c(np.array([c]), np.array([load]))[0])
    wait = p_wait * service / (c - load)
    horizon = scenario.horizon.duration
    return {
        "requests.served": rate * horizon - rate * (wait + service),
        "wait_s.mean": wait,
        "wait_s.share_waited": p_wait,
        "latency_s.mean": wait + service,
        "utilization.mean": load / c,
    }


def _settings_of(baseline: Baseline, seed: int) -> dict[str, Any]:
    stat = baseline.statistical.model_dump() if baseline.statistical else None
    return {"file": baseline.file, "set": list(baseline.set), "seed": seed, "statistical": stat}


def _moments(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = sum(values) / n if n else math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return {"mean": mean, "sd": sd, "n": n}


def compare(golden: dict[str, Any], now: dict[str, Any], rules: Sequence[Rule]) -> list[Check]:
    """Every KPI of ``now`` against ``golden`` (both as ``measure`` returns them)."""
    name = str(now["scenario"])
    checks = []
    if golden.get("settings") != now["settings"]:
        checks.append(
            Check(name, "(settings)", golden.get("settings"), now["settings"], "equal", False)
        )
    old, new = golden.get("kpis", {}), now["kpis"]
    for kpi in list(dict.fromkeys([*old, *new])):
        g, n = old.get(kpi, MISSING), new.get(kpi, MISSING)
        if g is MISSING or n is MISSING:  # a KPI that appeared is news; one that went, a loss
            checks.append(Check(name, kpi, g, n, "present", g is MISSING))
        else:
            rule = rule_for(kpi, g, rules)
            checks.append(Check(name, kpi, g, n, rule.text(), rule.allows(g, n)))
    z = float((now["settings"].get("statistical") or {}).get("z", 4.0))
    theory, recorded = now.get("theory") or {}, golden.get("theory") or {}
    for kpi in list(dict.fromkeys([*recorded, *theory])):  # the closed form as recorded
        g, n = recorded.get(kpi, MISSING), theory.get(kpi, MISSING)
        label = f"{kpi} (theory)"
        if g is MISSING or n is MISSING:
            checks.append(Check(name, label, g, n, "present", g is MISSING))
        else:
            checks.append(Check(name, label, g, n, DEFAULT_RULE.text(), DEFAULT_RULE.allows(g, n)))
    for kpi, cur in (now.get("statistical") or {}).items():
        ref = (golden.get("statistical") or {}).get(kpi)
        earlier = MISSING if ref is None else ref["mean"]
        label = f"{kpi} (mean over {cur['n']} seeds)"
        if kpi in theory:  # a z test against the closed form (the earlier mean is shown)
            se = cur["sd"] / math.sqrt(cur["n"])
            ok = abs(cur["mean"] - theory[kpi]) <= max(z * se, 1e-9 * abs(theory[kpi]))
            text = f"z {z:g} x se {se:.3g} from theory {theory[kpi]:.6g}"
            checks.append(Check(name, label, earlier, cur["mean"], text, ok))
        elif ref is None:
            checks.append(Check(name, label, MISSING, cur["mean"], "present", True))
        else:
            se = math.sqrt(ref["sd"] ** 2 / ref["n"] + cur["sd"] ** 2 / cur["n"])
            ok = abs(cur["mean"] - ref["mean"]) <= max(z * se, 1e-9 * abs(ref["mean"]))
            text = f"z {z:g} x se {se:.3g}"
            checks.append(Check(name, label, ref["mean"], cur["mean"], text, ok))
    return checks


def regress(
    settings: Settings, against: str | Path, names: Sequence[str] = (), update: bool = False
) -> Report:
    """Run the chosen baselines (all by default) and compare them with the golden files in
    ``against``; with ``update``, write the golden files instead (and say what moved)."""
    against = Path(against)
    report = Report()
    for baseline in select(settings, names):
        golden_path = against / f"{baseline.name}.json"
        if not update and not golden_path.is_file():
            raise FileNotFoundError(
                f"no golden file {golden_path}; create it with gridsim regress --update"
            )
        now = measure(baseline, settings.base_dir)
        golden = json.loads(golden_path.read_text("utf-8")) if golden_path.is_file() else {}
        if not isinstance(golden, dict):
            raise ValueError(f"{golden_path}: a golden file is a JSON object; --update rewrites it")
        checks = compare(golden, now, settings.tolerances) if golden else []
        moved = sum(c.moved for c in checks)
        failed = sum(not c.ok for c in checks)
        line = f"{len(now['kpis'])} KPIs, {moved} moved, {failed} outside tolerance"
        old_numpy = (golden.get("versions") or {}).get("numpy")
        if old_numpy and old_numpy != now["versions"]["numpy"]:
            line += f" (golden made with numpy {old_numpy}, now {now['versions']['numpy']})"
        if update:
            against.mkdir(parents=True, exist_ok=True)
            text = json.dumps(now, indent=1, allow_nan=False) + "\n"
            golden_path.write_text(text, "utf-8")
            report.written.append(golden_path)
            checks = [Check(c.scenario, c.kpi, c.golden, c.now, c.rule, True) for c in checks]
        report.checks += checks
        report.lines[baseline.name] = line
    return report


def select(settings: Settings, names: Sequence[str]) -> list[Baseline]:
    """Baselines by name or by scenario file; a file not in the settings runs as it is."""
    if not names:
        return list(settings.scenarios)
    by_file = {(settings.base_dir / b.file).resolve(): b for b in settings.scenarios}
    by_name = {b.name: b for b in settings.scenarios}
    chosen = []
    for name in names:
        path = Path(name).resolve()
        if name in by_name:
            chosen.append(by_name[name])
        elif path in by_file:
            chosen.append(by_file[path])
        elif path.is_file():
            chosen.append(Baseline(name=path.stem, file=str(path)))
        else:
            known = ", ".join(by_name)
            raise ValueError(f"no baseline or scenario file {name!r}; baselines: {known}")
    return chosen


def moved_table(checks: Sequence[Check]) -> pd.DataFrame:
    """What moved (and what broke its tolerance): scenario, kpi, golden, now, change, rule."""
    rows = []
    for c in checks:
        if not (c.moved or not c.ok):
            continue
        change = None
        if _number(c.golden) and _number(c.now) and c.golden:
            change = 100.0 * (c.now - c.golden) / abs(c.golden)
        rows.append(
            {
                "scenario": c.scenario,
                "kpi": c.kpi,
                "golden": _show(c.golden),
                "now": _show(c.now),
                "change (%)": change,
                "tolerance": c.rule,
                "verdict": "ok" if c.ok else "REGRESSION",
            }
        )
    return pd.DataFrame(rows)


def _show(value: Any) -> Any:
    return value if _number(value) or value is None else str(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
