"""The flow engine does not depend on its tick: a scenario's results at its own resolution and at
a tick four times finer agree (SLA attainment within 1 point, mean latency within 5 %, p95 within
10 %, dropped + abandoned within 0.5 % of arrivals); and at any tick no block of the summary
(national, by class, region, node, pool) has a negative count.

``scenarios/baseline.yaml`` is 60 days at 15-minute ticks, run over its full horizon (25-45 s
a run at any of these ticks on the machine these were written on; ~2.5 minutes for its four
runs), so its tests are marked slow; ``scenarios/validation/overload.yaml`` (6 hours, 1-minute
ticks, a peak at rho 1.3) takes a second.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest

import gridsim as gs
from gridsim.scenario import load_scenario
from gridsim.scenario.units import format_duration

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "scenarios" / "baseline.yaml"
OVERLOAD = ROOT / "scenarios" / "validation" / "overload.yaml"
COUNTS = ("arrived", "served", "dropped", "abandoned", "lost", "in_flight")
BLOCKS = ("by_class", "by_region", "by_node", "by_pool")


def flow(path: Path, resolution_s: float | None = None) -> dict[str, Any]:
    """The flow summary at the scenario's own tick, or at ``resolution_s`` (runs are cached:
    the baseline's own tick serves two tests)."""
    if resolution_s is None:
        resolution_s = load_scenario(path).horizon.resolution
    return _flow(path, float(resolution_s))


@cache
def _flow(path: Path, resolution_s: float) -> dict[str, Any]:
    scenario = load_scenario(path, sets=[f"horizon.resolution={resolution_s}"])
    return gs.run(scenario, fidelity="flow").summary


def lost(summary: dict[str, Any]) -> float:
    r = summary["requests"]
    return float(r["dropped"] + r["abandoned"])


def check_convergence(path: Path) -> None:
    resolution = load_scenario(path).horizon.resolution
    coarse, fine = flow(path), flow(path, resolution / 4)
    assert coarse["fidelity"] == fine["fidelity"] == "flow"
    where = f"{path.name} at {format_duration(resolution)} and 1/4 of it"
    sla = (coarse["sla_attainment"], fine["sla_attainment"])
    assert abs(sla[0] - sla[1]) <= 0.01, (where, "sla_attainment", sla)
    for stat, rel in (("mean", 0.05), ("p95", 0.10)):
        got, want = coarse["latency_s"][stat], fine["latency_s"][stat]
        assert got == pytest.approx(want, rel=rel), (where, stat, got, want)
    arrived = fine["requests"]["arrived"]
    assert abs(lost(coarse) - lost(fine)) <= 0.005 * arrived, (where, lost(coarse), lost(fine))


def test_overload_does_not_depend_on_the_tick() -> None:
    """1-minute and 15-second ticks through the peak (a third of the peak's chat abandons)."""
    check_convergence(OVERLOAD)
    assert lost(flow(OVERLOAD)) > 0.05 * flow(OVERLOAD)["requests"]["arrived"]


@pytest.mark.slow
def test_baseline_does_not_depend_on_the_tick() -> None:
    """15-minute and 225-second ticks over the baseline's 60 days."""
    check_convergence(BASELINE)


def negative_terms(summary: dict[str, Any]) -> list[str]:
    """Every count below zero, and every block whose counts do not add up to its arrivals."""
    blocks = [("national", summary)]
    for group in BLOCKS:
        assert group in summary, f"the summary has no {group}"
        blocks += [(f"{group}[{key}]", block) for key, block in summary[group].items()]
    problems = []
    for name, block in blocks:
        r = block["requests"]
        problems += [f"{name}.{k} = {r[k]}" for k in COUNTS if r[k] < 0]
        if sum(r[k] for k in COUNTS[1:]) != r["arrived"]:
            problems.append(f"{name}: {r} does not add up")
    return problems


@pytest.mark.parametrize("path", [OVERLOAD], ids=["overload"])
@pytest.mark.parametrize("resolution_s", [15.0, 60.0, 420.0])
def test_no_negative_count_in_any_block_overload(path: Path, resolution_s: float) -> None:
    problems = negative_terms(flow(path, resolution_s))
    assert not problems, problems


@pytest.mark.slow
@pytest.mark.parametrize("resolution_s", [300.0, 900.0, 3600.0])
def test_no_negative_count_in_any_block_baseline(resolution_s: float) -> None:
    """The baseline at 5-minute, 15-minute (its own) and hourly ticks."""
    problems = negative_terms(flow(BASELINE, resolution_s))
    assert not problems, problems
