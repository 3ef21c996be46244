"""Regression checks: baseline scenarios against committed golden KPIs, with a tolerance per
metric (``gridsim regress``).

A settings file (``results/baselines/regress.yaml``) lists the baselines (scenario file,
``--set`` overrides, seed, and optionally a statistical block) and the tolerance rules; the
golden files are ``<against>/<name>.json``. The KPIs are the KPI registry's
(``gridsim.kpis``) entries in the summary, national and per class, model and hub (not per
region, node, pool or node kind), keyed by registry name (``latency_p95_s``,
``by_class.chat.sla_attainment``).

Tolerances are kept here (``TOLERANCES``), keyed by registry name; a settings file may add
rules before them (``match``: a registry name or an ``fnmatch`` pattern over registry names).
A name that is not in the registry is an error. Without a rule, integers, strings and nulls
must be equal and floats agree to a relative 1e-9 (runs are deterministic on one machine).
A ``statistical`` block runs the scenario over several seeds and compares the mean
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
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gridsim import kpis
from gridsim.scenario.yamlio import read_yaml

if TYPE_CHECKING:
    from gridsim.scenario import Scenario

# Per-entity blocks left out of the golden files: they repeat the national figures for every
# region, node and pool, and would make the golden files large without catching more.
SKIPPED_ENTITIES = frozenset({"by_region", "by_node", "by_pool", "by_node_kind"})
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

    @field_validator("match")
    @classmethod
    def _registry_name(cls, match: str) -> str:
        if not any(fnmatch.fnmatchcase(name, match) for name in kpis.REGISTRY):
            raise ValueError(
                f"{match!r} matches no KPI registry name; tolerances are keyed by registry names "
                "(gridsim/kpis.py), e.g. latency_p95_s or latency_p*"
            )
        return match

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


def _tolerances() -> dict[str, Rule]:
    """Per registry name: how far a KPI may move between numpy versions and CPU paths."""
    loose = {"rel": 1e-6, "abs": 1e-9}  # abs keeps zeros (a wait of 1e-150 s) from failing
    groups: list[tuple[list[str], dict[str, Any], str]] = [
        (
            ["latency_count", "wait_count", "ttft_count"],
            {"rel": 1e-12, "abs": 0.0},
            "counts of requests: whole numbers at request fidelity (1e-12 of fewer than 1e12 is"
            " less than one request: still exact), fluid sums at flow fidelity (the order of a"
            " float sum moves them in the 14th digit)",
        ),
        (
            [
                n
                for n in kpis.REGISTRY
                if n.split("_")[0] in ("latency", "wait", "ttft")
                and n.split("_")[1][:1] == "p"
                and n != "wait_share_waited"
            ],
            loose,
            "percentiles interpolate in log buckets; numpy's log/exp may differ in the last bit "
            "across versions and CPU (SIMD) paths",
        ),
        (
            ["latency_mean_s", "wait_mean_s", "ttft_mean_s"],
            loose,
            "sums over arrays, whose summation order numpy may change between versions",
        ),
        (["utilization_mean", "utilization_peak"], loose, "time-weighted sums over arrays"),
        (["headroom_mean", "headroom_min"], loose, "means and minima over arrays of ratios"),
        (
            [k.name for k in kpis.REGISTRY.values() if k.path[0] == "economics"],
            loose,
            "sums and products of float arrays (numpy reductions)",
        ),
    ]
    out: dict[str, Rule] = {}
    for names, how, why in groups:
        for name in names:
            out.setdefault(name, Rule(match=name, why=why, **how))
    return out


TOLERANCES: dict[str, Rule] = _tolerances()
kpis.check_names(TOLERANCES, "gridsim/regress.py TOLERANCES")  # a stale name fails on import


def kpi_name(key: str) -> str:
    """The registry name in a golden key (``by_class.chat.latency_p95_s`` -> latency_p95_s)."""
    return key.rsplit(".", 1)[-1]


def rule_for(kpi: str, golden: Any, rules: Sequence[Rule] = ()) -> Rule:
    """The first settings rule matching the KPI's registry name, else ``TOLERANCES``; else
    exact for integers, 1e-9 for floats."""
    name = kpi_name(kpi)
    for rule in rules:
        if fnmatch.fnmatchcase(name, rule.match):
            return rule
    if name in TOLERANCES:
        return TOLERANCES[name]
    return DEFAULT_RULE if isinstance(golden, float) else EXACT


class Statistical(_Strict):
    seeds: list[int] = Field(min_length=2)
    kpis: list[str] = Field(min_length=1)
    z: float = Field(default=4.0, gt=0)
    theory: Literal["erlang_c"] | None = None  # a closed form to compare the seeds' means with

    @field_validator("kpis")
    @classmethod
    def _registry_names(cls, names: list[str]) -> list[str]:
        """Registry names; a dotted summary path (``wait_s.mean``, as before the registry) is
        read as the KPI at that path."""
        out = []
        for name in names:
            found = kpis.kpi_for_path(tuple(name.split("."))) if name not in kpis.REGISTRY else None
            out.append(found.name if found is not None and not found.is_pattern else name)
        kpis.check_names(out, "statistical.kpis")
        return out


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
    """The compared KPIs of a summary (the registry's entries), by key: the registry name,
    prefixed with the entity for per-entity figures (``by_class.chat.latency_p95_s``)."""
    return {
        e.key: e.value for e in kpis.entries_for(summary) if e.entity_kind not in SKIPPED_ENTITIES
    }


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
        doc["statistical"] = {}
        for kpi in baseline.statistical.kpis:
            values = [float(s[kpi]) for s in samples if _number(s.get(kpi))]
            if len(values) < 2:  # a mean and sd need two seeds with a value
                raise ValueError(
                    f"{baseline.name}: statistical KPI {kpi} has a value in {len(values)} of "
                    f"{len(samples)} seeds; list KPIs the scenario reports in statistical.kpis"
                )
            doc["statistical"][kpi] = _moments(values)
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
        "requests_served": rate * horizon - rate * (wait + service),
        "wait_mean_s": wait,
        "wait_share_waited": p_wait,
        "latency_mean_s": wait + service,
        "utilization_mean": load / c,
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
        stale = [k for k in golden.get("kpis", {}) if kpi_name(k) not in kpis.REGISTRY]
        if stale:
            line += (
                f"; {len(stale)} golden KPIs are not KPI registry names (e.g. {stale[0]}): "
                "the golden file predates the registry or names a KPI since removed; "
                "rewrite it with gridsim regress --update"
            )
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
